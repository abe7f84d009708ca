/*
 * cms_env.c - CMS EnvelopedData (AES-CBC, 3DES) and AuthEnvelopedData
 * (AES-GCM, RFC 5083/5084) for AS2: encrypt to one or more recipient
 * certificates with RSA PKCS#1 v1.5 or RSA-OAEP key transport, and
 * decrypt with one of several keys (certificate rollover).
 *
 * Both directions stream. Encrypting writes BER through BIO_new_CMS.
 * Decrypting parses the outer BER here, hands OpenSSL a stub without the
 * encryptedContent (it is OPTIONAL) so it can unwrap the content key, then
 * writes the ciphertext chunks into OpenSSL's cipher BIO, which writes the
 * plaintext to the caller. For GCM the tag (mac) follows the content, so
 * it is set on the cipher context once read, before the final check.
 *
 * It owns what one call allocates. It must never let the caller take
 * output as good before the final padding/tag check passed (the return
 * code says so), never use a private key on a message whose cipher the
 * policy refuses, and never put key or payload bytes in an error.
 */
#include "as2/cms_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#define TAG_MAX 16

/* ---- encrypt ---- */

static int recipient_add(CMS_ContentInfo *cms, X509 *r,
                         enum as2_key_transport kt, struct error *err)
{
    int oaep = kt != AS2_KT_RSA_PKCS1;
    char subj[200];
    if (oaep && EVP_PKEY_get_base_id(X509_get0_pubkey(r)) != EVP_PKEY_RSA) {
        cms_subject(r, subj, sizeof(subj));
        return error_set(err, "cannot encrypt: RSA-OAEP needs an RSA key, "
                         "and certificate %s has none", subj);
    }
    CMS_RecipientInfo *ri = CMS_add1_recipient_cert(
        cms, r, CMS_BINARY | (oaep ? CMS_KEY_PARAM : 0));
    EVP_PKEY_CTX *pctx = ri != NULL && oaep
                         ? CMS_RecipientInfo_get0_pkey_ctx(ri) : NULL;
    int ok = ri != NULL;
    if (ok && oaep)
        ok = pctx != NULL &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) > 0;
    if (ok && kt == AS2_KT_RSA_OAEP_SHA256)
        ok = EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0;
    if (!ok) {
        cms_subject(r, subj, sizeof(subj));
        error_openssl(err, "cannot encrypt for a recipient");
        error_prefix(err, "recipient %s", subj);
        return -1;
    }
    return 0;
}

int as2_cms_encrypt(const struct as2_encrypt_opts *o, BIO *in, BIO *out,
                    struct error *err)
{
    const EVP_CIPHER *cipher = o != NULL ? cms_cipher_evp(o->cipher) : NULL;
    if (cipher == NULL)
        return error_set(err, "cannot encrypt: unsupported cipher");
    if (o->recipients == NULL || o->nrecipients == 0)
        return error_set(err, "cannot encrypt: no recipient certificate");
    if (o->kt > AS2_KT_RSA_OAEP_SHA256)
        return error_set(err, "cannot encrypt: unsupported key transport");
    CMS_ContentInfo *cms = CMS_encrypt(NULL, NULL, cipher, CMS_BINARY |
                                       CMS_PARTIAL | CMS_STREAM);
    if (cms == NULL)
        return error_openssl(err, "cannot prepare the encryption");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < o->nrecipients; i++)
        rc = o->recipients[i] == NULL
             ? error_set(err, "cannot encrypt: recipient %zu is missing", i)
             : recipient_add(cms, o->recipients[i], o->kt, err);
    if (rc == 0) {
        BIO *top = BIO_new_CMS(out, cms);
        rc = top == NULL ? error_openssl(err, "cannot start the encryption")
                         : cms_pump(in, top, "cannot encrypt", err);
        if (rc == 0 && BIO_flush(top) <= 0)
            rc = error_openssl(err, "cannot finish the encryption");
        cms_free_upto(top, out);
    }
    CMS_ContentInfo_free(cms);
    return rc;
}

/* ---- decrypt: parsing ---- */

struct env {
    struct ber b;
    struct cbuf stub;               /* the ContentInfo without content */
    struct ber_tlv ci, c0, ed, eci; /* open elements */
    int auth;                       /* AuthEnvelopedData */
    enum as2_cipher cipher;
};

/* The content-encryption AlgorithmIdentifier captured at from. */
static int env_cipher(struct env *e, size_t from, unsigned allowed)
{
    const unsigned char *p = e->stub.p + from;
    X509_ALGOR *alg = d2i_X509_ALGOR(NULL, &p, (long)(e->stub.len - from));
    int nid = alg != NULL ? OBJ_obj2nid(alg->algorithm) : NID_undef;
    X509_ALGOR_free(alg);
    ERR_clear_error();
    e->cipher = cms_cipher_from_nid(nid);
    int gcm = e->cipher >= AS2_CIPHER_AES128_GCM;
    if (e->cipher == AS2_CIPHER_NONE || gcm != e->auth)
        return error_set(e->b.err, "decryption refused: unsupported content "
                         "encryption algorithm %s", nid == NID_undef
                         ? "(unknown)" : OBJ_nid2sn(nid));
    if (allowed != 0 && (allowed & AS2_CIPHER_BIT(e->cipher)) == 0)
        return error_set(e->b.err, "decryption refused: the message is "
                         "encrypted with %s, which the partner's policy does "
                         "not allow", as2_cipher_name(e->cipher));
    return 0;
}

/* Read up to the encrypted content; leave the stub in e->stub. */
static int env_head(struct env *e, unsigned allowed)
{
    struct ber *b = &e->b;
    if (ber_next(b, NULL, &e->ci, BER_SEQ, "ContentInfo") != 0)
        return -1;
    int nid = ber_oid(b, &e->ci, &e->stub, "content type");
    if (nid < 0)
        return -1;
    if (nid != NID_pkcs7_enveloped && nid != NID_id_smime_ct_authEnvelopedData)
        return error_set(b->err, "decryption failed: the message is not an "
                         "EnvelopedData or AuthEnvelopedData");
    e->auth = nid == NID_id_smime_ct_authEnvelopedData;
    size_t from0 = e->stub.len;
    if (ber_next(b, &e->ci, &e->c0, BER_CTX0, "content") != 0 ||
        ber_next(b, &e->c0, &e->ed, BER_SEQ, "EnvelopedData") != 0 ||
        ber_take(b, &e->ed, BER_INT, &e->stub, "version") != 0 ||
        ber_take_opt(b, &e->ed, BER_CTX0, &e->stub, "originator info") < 0 ||
        ber_take(b, &e->ed, BER_SET, &e->stub, "recipient infos") != 0 ||
        ber_next(b, &e->ed, &e->eci, BER_SEQ, "encrypted content info") != 0)
        return -1;
    size_t from_eci = e->stub.len;
    if (ber_oid(b, &e->eci, &e->stub, "content type") < 0)
        return -1;
    size_t from_alg = e->stub.len;
    if (ber_take(b, &e->eci, BER_SEQ, &e->stub, "content encryption "
                 "algorithm") != 0 || env_cipher(e, from_alg, allowed) != 0)
        return -1;
    static const unsigned char no_mac[2] = {BER_OCTETS, 0};
    if (cbuf_wrap(&e->stub, from_eci, BER_SEQ) != 0 ||
        (e->auth && cbuf_put(&e->stub, no_mac, sizeof(no_mac)) != 0) ||
        cbuf_wrap(&e->stub, from0, BER_SEQ) != 0 ||
        cbuf_wrap(&e->stub, from0, BER_CTX0) != 0 ||
        cbuf_wrap(&e->stub, 0, BER_SEQ) != 0)
        return error_set(b->err, "out of memory reading %s", b->what);
    return 0;
}

/* After the content: attributes, the GCM tag, the closing markers. */
static int env_tail(struct env *e, EVP_CIPHER_CTX *ctx)
{
    struct ber *b = &e->b;
    struct ber_tlv t;
    if (ber_close(b, &e->eci, "encrypted content info") != 0)
        return -1;
    if (e->auth) {
        int p = ber_peek(b, &e->ed);
        if (p < 0)
            return -1;
        if (p == BER_CTX1)
            return error_set(b->err, "decryption refused: authenticated "
                             "attributes are not supported");
        unsigned char tag[TAG_MAX];
        size_t n;
        if (ber_next(b, &e->ed, &t, BER_OCTETS, "authentication tag") != 0 ||
            ber_small(b, &t, tag, sizeof(tag), &n, "authentication tag") != 0)
            return -1;
        if (n < 12 || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, (int)n,
                                          tag) <= 0)
            return error_set(b->err, "decryption failed: the authentication "
                             "tag is invalid");
    }
    unsigned char attrs = e->auth ? BER_CTX2 : BER_CTX1;
    int p = ber_peek(b, &e->ed);
    if (p < 0)
        return -1;
    if (p == attrs && (ber_next(b, &e->ed, &t, attrs, "attributes") != 0 ||
                       ber_skip(b, &t) != 0))
        return -1;
    if (ber_close(b, &e->ed, "EnvelopedData") != 0 ||
        ber_close(b, &e->c0, "content") != 0)
        return -1;
    return ber_close(b, &e->ci, "ContentInfo");
}

/* ---- decrypt: keys ---- */

static enum as2_key_transport kt_of(CMS_RecipientInfo *ri)
{
    X509_ALGOR *alg = NULL;
    if (CMS_RecipientInfo_ktri_get0_algs(ri, NULL, NULL, &alg) != 1 ||
        alg == NULL || OBJ_obj2nid(alg->algorithm) != NID_rsaesOaep)
        return AS2_KT_RSA_PKCS1;
    const ASN1_STRING *seq = alg->parameter != NULL &&
        alg->parameter->type == V_ASN1_SEQUENCE
        ? alg->parameter->value.sequence : NULL;
    const unsigned char *p = seq != NULL ? seq->data : NULL;
    RSA_OAEP_PARAMS *op = p != NULL
        ? d2i_RSA_OAEP_PARAMS(NULL, &p, seq->length) : NULL;
    int sha256 = op != NULL && op->hashFunc != NULL &&
                 OBJ_obj2nid(op->hashFunc->algorithm) == NID_sha256;
    RSA_OAEP_PARAMS_free(op);
    ERR_clear_error();
    return sha256 ? AS2_KT_RSA_OAEP_SHA256 : AS2_KT_RSA_OAEP;
}

static CMS_RecipientInfo *ri_for(CMS_ContentInfo *cms, X509 *cert)
{
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
    for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
        CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
        if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS &&
            CMS_RecipientInfo_ktri_cert_cmp(ri, cert) == 0)
            return ri;
    }
    return NULL;
}

/* Name the recipients of a message that is for none of our keys. */
static int no_recipient(CMS_ContentInfo *cms, size_t nkeys, struct error *err)
{
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
    char who[256] = "(no key transport recipient)";
    X509_NAME *issuer = NULL;
    ASN1_INTEGER *serial = NULL;
    for (int i = 0; i < sk_CMS_RecipientInfo_num(ris); i++) {
        CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
        if (CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS &&
            CMS_RecipientInfo_ktri_get0_signer_id(ri, NULL, &issuer,
                                                  &serial) == 1 &&
            issuer != NULL) {
            cms_name(issuer, who, sizeof(who));
            break;
        }
    }
    return error_set(err, "decryption failed: the message is not encrypted "
                     "for any of our %zu certificate(s) (it is for a "
                     "certificate issued by %s)", nkeys, who);
}

/* Unwrap the content key with the first key whose certificate is a
 * recipient. */
static int env_key(CMS_ContentInfo *cms, const struct as2_decrypt_opts *o,
                   struct as2_decrypted *d, struct error *err)
{
    for (size_t i = 0; i < o->nkeys; i++) {
        CMS_RecipientInfo *ri = ri_for(cms, o->keys[i].cert);
        if (ri == NULL)
            continue;
        d->key_index = i;
        d->kt = kt_of(ri);
        if (CMS_decrypt_set1_pkey_and_peer(cms, o->keys[i].key,
                                           o->keys[i].cert, NULL) == 1)
            return 0;
        char subj[200];
        cms_subject(o->keys[i].cert, subj, sizeof(subj));
        error_openssl(err, "decryption failed: the content key could not be "
                      "unwrapped");
        error_prefix(err, "key %zu (certificate %s)", i, subj);
        return -1;
    }
    return no_recipient(cms, o->nkeys, err);
}

/* ---- decrypt: content ---- */

static int env_content(struct env *e, BIO *cbio)
{
    struct ber_tlv t;
    int p = ber_peek(&e->b, &e->eci);
    if (p < 0)
        return -1;
    if (p != BER_CTX0_P && p != BER_CTX0)
        return error_set(e->b.err, "decryption failed: the message carries "
                         "no encrypted content");
    if (ber_next(&e->b, &e->eci, &t, 0, "encrypted content") != 0)
        return -1;
    return ber_octets(&e->b, &t, cms_sink_bio, cbio);
}

static int env_finish(struct env *e, BIO *cbio)
{
    EVP_CIPHER_CTX *ctx = NULL;
    BIO_get_cipher_ctx(cbio, &ctx);
    if (ctx == NULL)
        return error_set(e->b.err, "decryption failed: no cipher context");
    if (env_tail(e, ctx) != 0)
        return -1;
    if (BIO_flush(cbio) <= 0 || BIO_get_cipher_status(cbio) <= 0) {
        ERR_clear_error();
        return error_set(e->b.err, e->auth
                         ? "decryption failed: the authentication tag does "
                           "not match (the message was modified or the key "
                           "is wrong)"
                         : "decryption failed: bad padding at the end of the "
                           "content (the message was modified or the key is "
                           "wrong)");
    }
    return 0;
}

static int decrypt_check(const struct as2_decrypt_opts *o, struct error *err)
{
    if (o == NULL || o->keys == NULL || o->nkeys == 0)
        return error_set(err, "cannot decrypt: no decryption key");
    for (size_t i = 0; i < o->nkeys; i++) {
        if (o->keys[i].key == NULL || o->keys[i].cert == NULL)
            return error_set(err, "cannot decrypt: key %zu has no key or no "
                             "certificate", i);
        if (X509_check_private_key(o->keys[i].cert, o->keys[i].key) != 1) {
            char subj[200];
            cms_subject(o->keys[i].cert, subj, sizeof(subj));
            ERR_clear_error();
            return error_set(err, "cannot decrypt: key %zu does not belong "
                             "to its certificate %s", i, subj);
        }
    }
    return 0;
}

static int env_run(struct env *e, const struct as2_decrypt_opts *o, BIO *out,
                   struct as2_decrypted *d, struct error *err)
{
    if (env_head(e, o->ciphers) != 0)
        return -1;
    const unsigned char *p = e->stub.p;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)e->stub.len);
    if (cms == NULL)
        return error_openssl(err, "decryption failed: the recipient "
                             "information is malformed");
    d->cipher = e->cipher;
    BIO *cbio = NULL;
    int rc = env_key(cms, o, d, err);
    if (rc == 0 && (cbio = CMS_dataInit(cms, out)) == NULL)
        rc = error_openssl(err, "decryption failed: cannot start the cipher");
    if (rc == 0)
        rc = env_content(e, cbio);
    if (rc == 0)
        rc = env_finish(e, cbio);
    cms_free_upto(cbio, out);
    CMS_ContentInfo_free(cms);
    return rc;
}

int as2_cms_decrypt(const struct as2_decrypt_opts *o, BIO *in, BIO *out,
                    struct as2_decrypted *info, struct error *err)
{
    if (decrypt_check(o, err) != 0)
        return -1;
    struct env *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return error_set(err, "out of memory decrypting a message");
    ber_init(&e->b, in, "the encrypted message", err);
    e->stub.max = AS2_CMS_HEAD_MAX;
    struct as2_decrypted d = {0};
    int rc = env_run(e, o, out, &d, err);
    cbuf_free(&e->stub);
    free(e);
    if (rc == 0 && info != NULL)
        *info = d;
    return rc;
}
