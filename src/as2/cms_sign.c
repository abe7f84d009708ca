/*
 * cms_sign.c - CMS SignedData for AS2: detached signatures (the
 * application/pkcs7-signature part of multipart/signed) and attached
 * (opaque) SignedData, signed with RSA PKCS#1 v1.5 or RSASSA-PSS, and
 * their verification against a partner's own certificates.
 *
 * Everything streams: signing digests the content through a BIO chain
 * and writes BER with indefinite lengths; verifying an attached
 * SignedData parses the outer BER here (cms.c's reader), digests the
 * content while copying it out, and hands OpenSSL a detached stub with
 * the signer infos only. Detached signatures go through the same reader.
 * The certificates a message carries are parsed only when a signer is
 * not found among the partner's by its identifier (see "the SignedData
 * handed to OpenSSL" below).
 *
 * It owns what one call allocates. It must never accept a signer that is
 * not one of the partner's configured certificates (no trust store, no
 * chain building: AS2 certificates are self-signed and pinned), never
 * verify with a certificate carried in the message instead of the
 * partner's, and never name anything but certificate subjects, issuers
 * and algorithms in an error.
 */
#include "as2/cms_internal.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#define MD_MAX 8                    /* digest algorithms followed at once */

/* ---- signing ---- */

static int sign_check(const struct as2_signer *s, struct error *err)
{
    if (s == NULL || s->cert == NULL || s->key == NULL)
        return error_set(err, "cannot sign: no signing certificate or key");
    if (cms_digest_md(s->digest) == NULL)
        return error_set(err, "cannot sign: unsupported digest algorithm");
    if (s->padding == AS2_SIG_PSS && EVP_PKEY_get_base_id(s->key) !=
        EVP_PKEY_RSA)
        return error_set(err, "cannot sign: RSASSA-PSS needs an RSA key");
    if (X509_check_private_key(s->cert, s->key) != 1) {
        char subj[200];
        cms_subject(s->cert, subj, sizeof(subj));
        ERR_clear_error();
        return error_set(err, "cannot sign: the signing key does not belong "
                         "to the certificate %s", subj);
    }
    return 0;
}

/* RSASSA-PSS on the signer's key context. OpenSSL 3.0 fills in the
 * signatureAlgorithm only when it signs, but a streamed SignedData is
 * encoded once before that (the part ahead of the content), which fails
 * on the empty identifier ("illegal zero content"; the openssl command
 * fails the same way with -stream). A placeholder id-RSASSA-PSS lets that
 * first encoding through; signing replaces it with the real parameters. */
static int sign_pss(CMS_SignerInfo *si, const EVP_MD *md)
{
    EVP_PKEY_CTX *pctx = CMS_SignerInfo_get0_pkey_ctx(si);
    X509_ALGOR *alg = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &alg);
    return pctx != NULL && alg != NULL &&
           EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) > 0 &&
           X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsassaPss), V_ASN1_UNDEF,
                           NULL) == 1;
}

/* A SignedData with one signer, not yet finalized. Caller frees. */
static CMS_ContentInfo *sign_new(const struct as2_signer *s, unsigned flags,
                                 struct error *err)
{
    if (sign_check(s, err) != 0)
        return NULL;
    const EVP_MD *md = cms_digest_md(s->digest);
    int pss = s->padding == AS2_SIG_PSS;
    flags |= CMS_BINARY | CMS_PARTIAL;
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
    CMS_SignerInfo *si = cms == NULL ? NULL :
        CMS_add1_signer(cms, s->cert, s->key, md,
                        flags | CMS_NOSMIMECAP | (pss ? CMS_KEY_PARAM : 0));
    if (si == NULL || (pss && !sign_pss(si, md))) {
        CMS_ContentInfo_free(cms);
        error_openssl(err, "cannot prepare the signature");
        return NULL;
    }
    return cms;
}

int as2_cms_sign_detached(const struct as2_signer *s, BIO *content,
                          BIO *sig_out, struct error *err)
{
    return as2_cms_sign_detached_tap(s, content, sig_out, NULL, NULL, err);
}

int as2_cms_sign_detached_tap(const struct as2_signer *s, BIO *content,
                              BIO *sig_out,
                              int (*digested)(void *arg, BIO *chain,
                                              struct error *err),
                              void *arg, struct error *err)
{
    CMS_ContentInfo *cms = sign_new(s, CMS_DETACHED, err);
    if (cms == NULL)
        return -1;
    BIO *chain = CMS_dataInit(cms, NULL);
    int rc = chain == NULL ? error_openssl(err, "cannot start the signature")
                           : 0;
    if (rc == 0)
        rc = cms_pump(content, chain, "cannot digest the content", err);
    if (rc == 0 && digested != NULL)
        rc = digested(arg, chain, err);
    if (rc == 0 && CMS_dataFinal(cms, chain) != 1)
        rc = error_openssl(err, "cannot sign");
    if (rc == 0 && i2d_CMS_bio(sig_out, cms) != 1)
        rc = error_openssl(err, "cannot write the signature");
    BIO_free_all(chain);
    CMS_ContentInfo_free(cms);
    return rc;
}

/* Stream in through a BIO_new_CMS chain on out, then finalize. */
static int cms_stream_out(CMS_ContentInfo *cms, BIO *in, BIO *out,
                          const char *what, struct error *err)
{
    BIO *top = BIO_new_CMS(out, cms);
    if (top == NULL)
        return error_openssl(err, what);
    int rc = cms_pump(in, top, what, err);
    if (rc == 0 && BIO_flush(top) <= 0)
        rc = error_openssl(err, what);
    cms_free_upto(top, out);
    return rc;
}

int as2_cms_sign_attached(const struct as2_signer *s, BIO *content,
                          BIO *out, struct error *err)
{
    CMS_ContentInfo *cms = sign_new(s, CMS_STREAM, err);
    if (cms == NULL)
        return -1;
    int rc = cms_stream_out(cms, content, out, "cannot write the signed "
                            "message", err);
    CMS_ContentInfo_free(cms);
    return rc;
}

/* ---- digest chain (content is written into it) ---- */

/* Add a digest BIO for nid on top of *chain unless one is there or the
 * digest is not one we accept. */
static int md_add(BIO **chain, int nid, int *seen, int *nseen)
{
    if (cms_digest_from_nid(nid) == AS2_DIGEST_NONE)
        return 0;
    for (int i = 0; i < *nseen; i++)
        if (seen[i] == nid)
            return 0;
    if (*nseen >= MD_MAX)
        return 0;
    BIO *md = BIO_new(BIO_f_md());
    if (md == NULL || BIO_set_md(md, EVP_get_digestbynid(nid)) <= 0) {
        BIO_free(md);
        return -1;
    }
    *chain = BIO_push(md, *chain);
    seen[(*nseen)++] = nid;
    return 0;
}

static BIO *md_chain(const int *nids, int n, struct error *err)
{
    int seen[MD_MAX], nseen = 0;
    BIO *chain = BIO_new(BIO_s_null());
    for (int i = 0; chain != NULL && i < n; i++)
        if (md_add(&chain, nids[i], seen, &nseen) != 0) {
            BIO_free_all(chain);
            chain = NULL;
        }
    if (chain == NULL)
        error_openssl(err, "cannot set up the digests");
    return chain;
}

/* ---- signer checks ---- */

static const char *partner_of(const struct as2_trust *t)
{
    return t->partner != NULL ? t->partner : "(unnamed)";
}

/* Describe a signer that is not in the message: its issuer. */
static void sid_text(CMS_SignerInfo *si, char *buf, size_t n)
{
    ASN1_OCTET_STRING *keyid = NULL;
    X509_NAME *issuer = NULL;
    ASN1_INTEGER *serial = NULL;
    char name[200];
    snprintf(buf, n, "(not included in the message)");
    if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) != 1 ||
        issuer == NULL)
        return;
    cms_name(issuer, name, sizeof(name));
    snprintf(buf, n, "issued by %s (not included in the message)", name);
}

/* The index of the partner certificate that is si's signer, or -1. */
static long signer_match(const struct as2_trust *t, CMS_SignerInfo *si,
                         X509 *embedded)
{
    for (size_t i = 0; i < t->ncerts; i++) {
        X509 *c = t->certs[i];
        if (embedded != NULL
            ? (X509_cmp(embedded, c) == 0 ||
               EVP_PKEY_eq(X509_get0_pubkey(embedded),
                           X509_get0_pubkey(c)) == 1)
            : CMS_SignerInfo_cert_cmp(si, c) == 0)
            return (long)i;
    }
    return -1;
}

/* Identity and algorithm policy of one signer; sets the signer
 * certificate to the partner's. */
static int signer_check(const struct as2_trust *t, CMS_SignerInfo *si,
                        struct as2_verified *v, struct error *err)
{
    X509 *embedded = NULL;
    X509_ALGOR *dig = NULL, *sig = NULL;
    char who[256];
    CMS_SignerInfo_get0_algs(si, NULL, &embedded, &dig, &sig);
    long idx = signer_match(t, si, embedded);
    if (embedded != NULL)
        cms_subject(embedded, who, sizeof(who));
    else
        sid_text(si, who, sizeof(who));
    if (idx < 0)
        return error_set(err, "signature verification failed: signer "
                         "certificate %s is not a certificate of partner %s",
                         who, partner_of(t));
    int nid = OBJ_obj2nid(dig->algorithm);
    enum as2_digest d = cms_digest_from_nid(nid);
    if (d == AS2_DIGEST_NONE)
        return error_set(err, "signature verification failed: unsupported "
                         "digest algorithm %s", OBJ_nid2sn(nid));
    if (t->digests != 0 && (t->digests & AS2_DIGEST_BIT(d)) == 0)
        return error_set(err, "signature refused: digest %s is not allowed "
                         "for partner %s", as2_digest_name(d), partner_of(t));
    CMS_SignerInfo_set1_signer_cert(si, t->certs[idx]);
    if (v->nsigners == 0) {
        v->cert_index = (size_t)idx;
        cms_subject(t->certs[idx], v->signer, sizeof(v->signer));
    }
    if (v->digest == AS2_DIGEST_NONE || d < v->digest)
        v->digest = d;
    if (OBJ_obj2nid(sig->algorithm) == NID_rsassaPss)
        v->pss = 1;
    v->nsigners++;
    return 0;
}

static int signers_check(const struct as2_trust *t, CMS_ContentInfo *cms,
                         struct as2_verified *v, struct error *err)
{
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    int n = sk_CMS_SignerInfo_num(sis);
    memset(v, 0, sizeof(*v));
    if (n <= 0)
        return error_set(err, "signature verification failed: the message "
                         "has no signer");
    if (CMS_set1_signers_certs(cms, NULL, 0) < 0)
        ERR_clear_error();  /* unmatched signers are named below */
    for (int i = 0; i < n; i++)
        if (signer_check(t, sk_CMS_SignerInfo_value(sis, i), v, err) != 0)
            return -1;
    return 0;
}

/* The cryptographic checks of every signer, after the content went
 * through chain. */
static int signers_verify(CMS_ContentInfo *cms, BIO *chain,
                          struct error *err)
{
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);
        if (CMS_signed_get_attr_count(si) >= 0 &&
            CMS_SignerInfo_verify(si) != 1)
            return error_openssl(err, "signature verification failed: the "
                                 "signature does not verify with the "
                                 "partner's certificate");
        if (CMS_SignerInfo_verify_content(si, chain) != 1)
            return error_openssl(err, "signature verification failed: the "
                                 "content does not match the signature "
                                 "(modified in transit?)");
    }
    return 0;
}

static int trust_check(const struct as2_trust *t, struct error *err)
{
    if (t == NULL || t->certs == NULL || t->ncerts == 0)
        return error_set(err, "cannot verify the signature: no certificate "
                         "is configured for the partner");
    for (size_t i = 0; i < t->ncerts; i++)
        if (t->certs[i] == NULL)
            return error_set(err, "cannot verify the signature: partner "
                             "certificate %zu is missing", i);
    return 0;
}

/* ---- the SignedData handed to OpenSSL ----
 *
 * A signature is read with cms.c's BER reader into parts, and OpenSSL gets
 * a "stub" rebuilt from them (DER lengths around the captured elements).
 * The certificates the message carries are held apart: OpenSSL 3.0
 * builds a key decoder for every certificate it parses (about 0.3 ms,
 * more than the RSA verification), and a pinned partner's signer is
 * found by its identifier (issuer and serial, or key id) among the
 * partner's own certificates. Only when some signer is not found that way
 * is the stub parsed again with the certificates: a renewed certificate
 * with the same key matches by key, and a stranger is named in the error
 * by the subject of the certificate it sent. */

struct sd_parts {
    struct cbuf ctype;          /* the ContentInfo's content type (OID) */
    struct cbuf head;           /* version, digestAlgorithms, encapContentInfo */
    struct cbuf certs;          /* [0] certificates, or empty */
    struct cbuf tail;           /* [1] crls, signerInfos */
};

static void sd_parts_init(struct sd_parts *p)
{
    memset(p, 0, sizeof(*p));
    p->ctype.max = p->head.max = p->certs.max = p->tail.max =
        AS2_CMS_HEAD_MAX;
}

static void sd_parts_free(struct sd_parts *p)
{
    cbuf_free(&p->ctype);
    cbuf_free(&p->head);
    cbuf_free(&p->certs);
    cbuf_free(&p->tail);
}

static CMS_ContentInfo *signed_from_der(const unsigned char *der, size_t len,
                                        struct error *err)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (cms == NULL) {
        error_openssl(err, "signature verification failed: the signature is "
                      "not a CMS structure");
        return NULL;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        CMS_ContentInfo_free(cms);
        error_set(err, "signature verification failed: the signature is not "
                  "a SignedData");
        return NULL;
    }
    return cms;
}

/* The ContentInfo of p, with the certificates when certs. */
static CMS_ContentInfo *stub_open(const struct sd_parts *p, int certs,
                                  struct error *err)
{
    struct cbuf s = {.max = AS2_CMS_HEAD_MAX};
    CMS_ContentInfo *cms = NULL;
    size_t from = p->ctype.len;
    if (cbuf_put(&s, p->ctype.p, p->ctype.len) != 0 ||
        cbuf_put(&s, p->head.p, p->head.len) != 0 ||
        (certs && cbuf_put(&s, p->certs.p, p->certs.len) != 0) ||
        cbuf_put(&s, p->tail.p, p->tail.len) != 0 ||
        cbuf_wrap(&s, from, BER_SEQ) != 0 ||
        cbuf_wrap(&s, from, BER_CTX0) != 0 || cbuf_wrap(&s, 0, BER_SEQ) != 0)
        error_set(err, "signature verification failed: the signature's "
                  "parts exceed %d bytes (or memory ran out)",
                  AS2_CMS_HEAD_MAX);
    else
        cms = signed_from_der(s.p, s.len, err);
    cbuf_free(&s);
    return cms;
}

/* OpenSSL's view of p, its signers checked against the partner's
 * certificates (v filled); without the message's certificates unless a
 * signer needs them. NULL with err set. Caller frees. */
static CMS_ContentInfo *sd_checked(const struct as2_trust *t,
                                   const struct sd_parts *p,
                                   struct as2_verified *v, struct error *err)
{
    CMS_ContentInfo *cms = stub_open(p, 0, err);
    if (cms == NULL)
        return NULL;
    if (!CMS_is_detached(cms)) {
        CMS_ContentInfo_free(cms);
        error_set(err, "signature verification failed: the signature "
                  "carries its own content where a detached signature was "
                  "expected");
        return NULL;
    }
    if (signers_check(t, cms, v, err) == 0)
        return cms;
    CMS_ContentInfo_free(cms);
    if (p->certs.len == 0)
        return NULL;
    cms = stub_open(p, 1, err);
    if (cms != NULL && signers_check(t, cms, v, err) != 0) {
        CMS_ContentInfo_free(cms);
        cms = NULL;
    }
    return cms;
}

/* Open ContentInfo and SignedData (ci, c0, sd), keeping the content type
 * and the version in p. */
static int sd_open(struct ber *b, struct ber_tlv tlv[3], struct sd_parts *p)
{
    if (ber_next(b, NULL, &tlv[0], BER_SEQ, "ContentInfo") != 0)
        return -1;
    int nid = ber_oid(b, &tlv[0], &p->ctype, "content type");
    if (nid < 0)
        return -1;
    if (nid != NID_pkcs7_signed)
        return error_set(b->err, "signature verification failed: %s is not "
                         "a SignedData", b->what);
    if (ber_next(b, &tlv[0], &tlv[1], BER_CTX0, "content") != 0 ||
        ber_next(b, &tlv[1], &tlv[2], BER_SEQ, "SignedData") != 0)
        return -1;
    return ber_take(b, &tlv[2], BER_INT, &p->head, "version");
}

/* What follows encapContentInfo, then the ends of what sd_open opened. */
static int sd_rest(struct ber *b, const struct ber_tlv tlv[3],
                   struct sd_parts *p)
{
    if (ber_take_opt(b, &tlv[2], BER_CTX0, &p->certs, "certificates") < 0 ||
        ber_take_opt(b, &tlv[2], BER_CTX1, &p->tail, "CRLs") < 0 ||
        ber_take(b, &tlv[2], BER_SET, &p->tail, "signer infos") != 0 ||
        ber_close(b, &tlv[2], "SignedData") != 0 ||
        ber_close(b, &tlv[1], "content") != 0 ||
        ber_close(b, &tlv[0], "ContentInfo") != 0)
        return -1;
    return 0;
}

/* ---- detached ---- */

/* A detached signature read into parts: encapContentInfo kept whole. */
static int sd_detached(struct ber *b, struct sd_parts *p)
{
    struct ber_tlv tlv[3];
    if (sd_open(b, tlv, p) != 0 ||
        ber_take(b, &tlv[2], BER_SET, &p->head, "digest algorithms") != 0 ||
        ber_take(b, &tlv[2], BER_SEQ, &p->head,
                 "encapsulated content info") != 0)
        return -1;
    return sd_rest(b, tlv, p);
}

/* The NID of si's digest algorithm. */
static int si_digest_nid(CMS_SignerInfo *si)
{
    X509_ALGOR *dig = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
    return OBJ_obj2nid(dig->algorithm);
}

static BIO *md_chain_of(CMS_ContentInfo *cms, struct error *err)
{
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    int nids[MD_MAX], n = 0;
    for (int i = 0; i < sk_CMS_SignerInfo_num(sis) && n < MD_MAX; i++)
        nids[n++] = si_digest_nid(sk_CMS_SignerInfo_value(sis, i));
    return md_chain(nids, n, err);
}

/* A detached signature sig whose signers are the partner's (v filled);
 * NULL with err set. Caller frees. */
static CMS_ContentInfo *detached_open(const struct as2_trust *trust,
                                      const unsigned char *sig, size_t siglen,
                                      struct as2_verified *v,
                                      struct error *err)
{
    if (sig == NULL || siglen == 0 || siglen > AS2_CMS_SIG_MAX) {
        error_set(err, "signature verification failed: the signature is "
                  "empty or larger than %d bytes", AS2_CMS_SIG_MAX);
        return NULL;
    }
    BIO *in = BIO_new_mem_buf(sig, (int)siglen);
    struct ber *b = malloc(sizeof(*b));
    struct sd_parts p;
    CMS_ContentInfo *cms = NULL;
    sd_parts_init(&p);
    if (in == NULL || b == NULL) {
        error_set(err, "out of memory verifying a signature");
    } else {
        ber_init(b, in, "the signature", err);
        if (sd_detached(b, &p) == 0)
            cms = sd_checked(trust, &p, v, err);
    }
    sd_parts_free(&p);
    free(b);
    BIO_free(in);
    return cms;
}

int as2_cms_verify_detached(const struct as2_trust *trust,
                            const unsigned char *sig, size_t siglen,
                            BIO *content, struct as2_verified *info,
                            struct error *err)
{
    struct as2_verified v;
    if (trust_check(trust, err) != 0)
        return -1;
    CMS_ContentInfo *cms = detached_open(trust, sig, siglen, &v, err);
    if (cms == NULL)
        return -1;
    BIO *chain = md_chain_of(cms, err);
    int rc = chain == NULL ? -1 : 0;
    if (rc == 0)
        rc = cms_pump(content, chain, "cannot digest the content", err);
    if (rc == 0)
        rc = signers_verify(cms, chain, err);
    BIO_free_all(chain);
    CMS_ContentInfo_free(cms);
    if (rc == 0 && info != NULL)
        *info = v;
    return rc;
}

/* ---- detached, content first (two steps) ---- */

BIO *as2_cms_digest_new(unsigned digests, struct error *err)
{
    static const enum as2_digest all[] = {
        AS2_DIGEST_SHA1, AS2_DIGEST_SHA256, AS2_DIGEST_SHA384,
        AS2_DIGEST_SHA512,
    };
    int nids[MD_MAX], n = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (digests == 0 || (digests & AS2_DIGEST_BIT(all[i])) != 0)
            nids[n++] = EVP_MD_get_type(cms_digest_md(all[i]));
    if (n == 0) {
        error_set(err, "cannot verify: no supported digest algorithm is "
                  "allowed");
        return NULL;
    }
    return md_chain(nids, n, err);
}

/* Every signer's digest algorithm has a digest BIO in chain. */
static int chain_has_digests(CMS_ContentInfo *cms, BIO *chain,
                             struct error *err)
{
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
        int nid = si_digest_nid(sk_CMS_SignerInfo_value(sis, i)), found = 0;
        for (BIO *b = BIO_find_type(chain, BIO_TYPE_MD); b != NULL && !found;
             b = BIO_find_type(BIO_next(b), BIO_TYPE_MD)) {
            const EVP_MD *md = NULL;
            found = BIO_get_md(b, &md) > 0 && md != NULL &&
                    EVP_MD_get_type(md) == nid;
        }
        if (!found)
            return error_set(err, "signature verification failed: the "
                             "signer used %s, which was not computed over the "
                             "content (the announced micalg differs?)",
                             OBJ_nid2sn(nid));
    }
    return 0;
}

int as2_cms_verify_digested(const struct as2_trust *trust,
                            const unsigned char *sig, size_t siglen,
                            BIO *digested, struct as2_verified *info,
                            struct error *err)
{
    struct as2_verified v;
    if (trust_check(trust, err) != 0)
        return -1;
    if (digested == NULL)
        return error_set(err, "signature verification failed: no digest of "
                         "the content");
    CMS_ContentInfo *cms = detached_open(trust, sig, siglen, &v, err);
    if (cms == NULL)
        return -1;
    int rc = chain_has_digests(cms, digested, err);
    if (rc == 0)
        rc = signers_verify(cms, digested, err);
    CMS_ContentInfo_free(cms);
    if (rc == 0 && info != NULL)
        *info = v;
    return rc;
}

/* ---- attached, streamed ---- */

struct tee {
    BIO *chain, *out;
};

static int tee_sink(void *ctx, const unsigned char *p, size_t n,
                    struct error *err)
{
    struct tee *t = ctx;
    if (cms_write(t->chain, p, n, "cannot digest the content", err) != 0)
        return -1;
    return cms_write(t->out, p, n, "cannot write the content", err);
}

/* Parse digestAlgorithms (the SET captured at stub->p + from) into a
 * chain: read as the SEQUENCE OF that X509_ALGORS decodes. */
static BIO *md_chain_der(const struct cbuf *stub, size_t from,
                         struct error *err)
{
    size_t n = stub->len - from;
    unsigned char *copy = malloc(n);
    X509_ALGORS *algs = NULL;
    if (copy != NULL) {
        memcpy(copy, stub->p + from, n);
        copy[0] = BER_SEQ;
        const unsigned char *p = copy;
        algs = d2i_X509_ALGORS(NULL, &p, (long)n);
        free(copy);
    }
    if (algs == NULL) {
        error_openssl(err, "signature verification failed: the digest "
                      "algorithms are malformed");
        return NULL;
    }
    int nids[MD_MAX], k = 0;
    for (int i = 0; i < sk_X509_ALGOR_num(algs) && k < MD_MAX; i++)
        nids[k++] = OBJ_obj2nid(sk_X509_ALGOR_value(algs, i)->algorithm);
    sk_X509_ALGOR_pop_free(algs, X509_ALGOR_free);
    return md_chain(nids, k, err);
}

/* encapContentInfo: keep eContentType in head, stream eContent. */
static int sd_content(struct ber *b, const struct ber_tlv *sd,
                      struct cbuf *head, struct tee *tee)
{
    struct ber_tlv eci, wrap, os;
    size_t from = head->len;
    if (ber_next(b, sd, &eci, BER_SEQ, "encapsulated content info") != 0 ||
        ber_oid(b, &eci, head, "content type") < 0)
        return -1;
    if (cbuf_wrap(head, from, BER_SEQ) != 0)
        return error_set(b->err, "out of memory reading %s", b->what);
    if (ber_econtent(b, &eci, &wrap, &os, "signature verification failed: "
                     "the signed message carries no content") != 0)
        return -1;
    if (ber_octets(b, &os, tee_sink, tee) != 0 ||
        ber_close(b, &wrap, "content") != 0)
        return -1;
    return ber_close(b, &eci, "encapsulated content info");
}

/* Read the whole SignedData into parts for a detached stub, streaming
 * the content through tee. */
static int sd_parse(struct ber *b, struct sd_parts *p, struct tee *tee,
                    BIO *out)
{
    struct ber_tlv tlv[3];
    if (sd_open(b, tlv, p) != 0)
        return -1;
    size_t from_algs = p->head.len;
    if (ber_take(b, &tlv[2], BER_SET, &p->head, "digest algorithms") != 0 ||
        (tee->chain = md_chain_der(&p->head, from_algs, b->err)) == NULL)
        return -1;
    tee->out = out;
    if (sd_content(b, &tlv[2], &p->head, tee) != 0)
        return -1;
    return sd_rest(b, tlv, p);
}

int as2_cms_verify_attached(const struct as2_trust *trust, BIO *in,
                            BIO *content_out, struct as2_verified *info,
                            struct error *err)
{
    struct as2_verified v;
    if (trust_check(trust, err) != 0)
        return -1;
    struct ber *b = malloc(sizeof(*b));
    if (b == NULL)
        return error_set(err, "out of memory verifying a signed message");
    ber_init(b, in, "the signed message", err);
    struct sd_parts p;
    struct tee tee = {0};
    CMS_ContentInfo *cms = NULL;
    sd_parts_init(&p);
    int rc = sd_parse(b, &p, &tee, content_out);
    if (rc == 0 && (cms = sd_checked(trust, &p, &v, err)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = signers_verify(cms, tee.chain, err);
    CMS_ContentInfo_free(cms);
    BIO_free_all(tee.chain);
    sd_parts_free(&p);
    free(b);
    if (rc == 0 && info != NULL)
        *info = v;
    return rc;
}
