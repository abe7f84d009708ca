/*
 * sshkey.c - sshkey.h: SSH user keys (the SFTP connector's private key)
 * read from OpenSSH's openssh-key-v1 text or from PEM, their public blob in
 * SSH wire form, and SSH signatures (RFC 4253, 5656, 8332, 8709).
 *
 * It owns what one call allocates: the decoded key file (wiped before it
 * is freed), the BIGNUMs of private values (secure, cleared), OpenSSL's
 * parameter lists (freed with their secure block wiped), and the buffers it
 * hands to its caller (public blob, signature). It must never put key
 * bytes (text, decoded or numbers) in an error message, never read past
 * the length an untrusted field gives, never accept a key whose parts do
 * not belong together, and never do I/O: the key process calls it.
 */
#include "vault/sshkey.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#define OPENSSH_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define OPENSSH_END "-----END OPENSSH PRIVATE KEY-----"
#define OPENSSH_MAGIC "openssh-key-v1"      /* and its NUL */
#define OPENSSH_BLOCK 8                     /* cipher "none" pads to 8 */
#define RSA_BITS_MIN 2048
#define RSA_BITS_MAX 16384                  /* OpenSSH's own limit */
#define MPINT_MAX (RSA_BITS_MAX / 8 + 1)    /* bytes, with a sign byte */
#define ED25519_LEN 32
#define EC_FIELD_MAX 66                     /* P-521 */

#define ENCRYPTED_HINT_PKCS8                                                \
    "the OpenSSH private key is encrypted with a passphrase, which Wharf "  \
    "does not read in this format: convert a copy with `ssh-keygen -p -m "  \
    "PKCS8 -f KEY` (it keeps the passphrase, in a form Wharf reads) and "   \
    "give that file with its passphrase"
#define ENCRYPTED_HINT_ED25519                                              \
    "the OpenSSH private key is encrypted with a passphrase, which Wharf "  \
    "does not read in this format, the only one ssh-keygen writes Ed25519 " \
    "keys in: remove the passphrase from a copy with `ssh-keygen -p -N '' " \
    "-f KEY` and give that file (Wharf seals it)"

enum kind { KIND_NONE, KIND_ED25519, KIND_RSA, KIND_EC };

/* The ECDSA curves of RFC 5656 that Wharf takes. */
struct curve {
    const char *type;           /* SSH key type and signature name */
    const char *ssh_name;       /* the curve in the blob */
    const char *group;          /* OpenSSL group name */
    int nid;
    size_t field;               /* bytes of a coordinate */
    const EVP_MD *(*md)(void);
};

static const struct curve curves[] = {
    { "ecdsa-sha2-nistp256", "nistp256", "P-256", NID_X9_62_prime256v1, 32,
      EVP_sha256 },
    { "ecdsa-sha2-nistp384", "nistp384", "P-384", NID_secp384r1, 48,
      EVP_sha384 },
    { "ecdsa-sha2-nistp521", "nistp521", "P-521", NID_secp521r1, 66,
      EVP_sha512 },
};
#define NCURVES (sizeof(curves) / sizeof(curves[0]))

/* ---- SSH wire format: a reader over untrusted bytes --------------------- */

struct rd {
    const unsigned char *p;
    size_t n;                   /* bytes left */
};

static int get_u32(struct rd *r, uint32_t *v)
{
    if (r->n < 4)
        return -1;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
         (uint32_t)r->p[2] << 8 | (uint32_t)r->p[3];
    r->p += 4;
    r->n -= 4;
    return 0;
}

static int get_string(struct rd *r, const unsigned char **s, size_t *n)
{
    uint32_t len;
    if (get_u32(r, &len) != 0 || len > r->n)
        return -1;
    *s = r->p;
    *n = len;
    r->p += len;
    r->n -= len;
    return 0;
}

/* A non-negative mpint into a secure BIGNUM (*bn NULL on failure). Leading
 * zero bytes are taken, as OpenSSH does. */
static int get_mpint(struct rd *r, BIGNUM **bn)
{
    const unsigned char *s;
    size_t n;
    *bn = NULL;
    if (get_string(r, &s, &n) != 0 || n > MPINT_MAX ||
        (n > 0 && (s[0] & 0x80) != 0))
        return -1;
    *bn = BN_secure_new();
    if (*bn == NULL || BN_bin2bn(s, (int)n, *bn) == NULL) {
        BN_clear_free(*bn);
        *bn = NULL;
        return -1;
    }
    BN_set_flags(*bn, BN_FLG_CONSTTIME);
    return 0;
}

static int string_is(const unsigned char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* ---- SSH wire format: a growing writer (public bytes only) -------------- */

struct wr {
    unsigned char *p;
    size_t n, cap;
    int bad;                    /* out of memory: the rest is dropped */
};

static void put_bytes(struct wr *w, const void *p, size_t n)
{
    if (w->bad || n == 0)
        return;
    if (n > w->cap - w->n) {
        size_t cap = w->cap > 0 ? w->cap : 256;
        while (cap - w->n < n && cap <= SIZE_MAX / 2)
            cap *= 2;
        unsigned char *q = cap - w->n >= n ? realloc(w->p, cap) : NULL;
        if (q == NULL) {
            w->bad = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->n, p, n);
    w->n += n;
}

static void put_u32(struct wr *w, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    put_bytes(w, b, 4);
}

static void put_string(struct wr *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        w->bad = 1;
        return;
    }
    put_u32(w, (uint32_t)n);
    put_bytes(w, p, n);
}

static void put_cstring(struct wr *w, const char *s)
{
    put_string(w, s, strlen(s));
}

/* RFC 4251 5: big endian, a 0x00 first when the top bit is set, zero is
 * empty. Only for public values (n, e, r, s): the buffer is not wiped. */
static void put_mpint(struct wr *w, const BIGNUM *bn)
{
    unsigned char buf[MPINT_MAX + 1];
    int nb = BN_num_bytes(bn);
    if (BN_is_negative(bn) || nb < 0 || (size_t)nb > MPINT_MAX) {
        w->bad = 1;
        return;
    }
    buf[0] = 0;
    BN_bn2bin(bn, buf + 1);
    size_t skip = nb > 0 && (buf[1] & 0x80) != 0 ? 0 : 1;
    put_string(w, buf + skip, (size_t)nb + 1 - skip);
}

/* Hands w's bytes to the caller when rc is 0 and nothing failed. */
static int wr_done(struct wr *w, int rc, unsigned char **out, size_t *len,
                   struct error *err)
{
    if (rc == 0 && w->bad)
        rc = error_set(err, "out of memory building an SSH blob");
    if (rc != 0) {
        free(w->p);
        return -1;
    }
    *out = w->p;
    *len = w->n;
    return 0;
}

/* ---- what a key is -------------------------------------------------------- */

static const struct curve *curve_of_group(const char *name)
{
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    for (size_t i = 0; i < NCURVES; i++)
        if (curves[i].nid == nid && nid != NID_undef)
            return &curves[i];
    return NULL;
}

static enum kind key_kind(EVP_PKEY *k, const struct curve **c)
{
    char group[64];
    size_t n = 0;
    *c = NULL;
    if (k == NULL)
        return KIND_NONE;
    if (EVP_PKEY_is_a(k, "ED25519"))
        return KIND_ED25519;
    if (EVP_PKEY_is_a(k, "RSA"))
        return KIND_RSA;
    if (!EVP_PKEY_is_a(k, "EC") ||
        EVP_PKEY_get_group_name(k, group, sizeof(group), &n) != 1)
        return KIND_NONE;
    *c = curve_of_group(group);
    return *c != NULL ? KIND_EC : KIND_NONE;
}

/* The key is of a type and size Wharf takes, and its private and public
 * parts belong together. */
static int key_check(EVP_PKEY *k, struct error *err)
{
    const struct curve *c;
    enum kind kind = key_kind(k, &c);
    if (kind == KIND_NONE)
        return error_set(err, "unsupported key type: Wharf takes Ed25519, "
                         "RSA (2048 bits or more) and ECDSA P-256, P-384 "
                         "or P-521 keys");
    int bits = EVP_PKEY_get_bits(k);
    if (kind == KIND_RSA && bits < RSA_BITS_MIN)
        return error_set(err, "an RSA key of %d bits is too weak: Wharf "
                         "takes %d bits or more", bits, RSA_BITS_MIN);
    if (kind == KIND_RSA && bits > RSA_BITS_MAX)
        return error_set(err, "an RSA key of %d bits is larger than the "
                         "%d bits SSH allows", bits, RSA_BITS_MAX);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
    int ok = ctx != NULL && EVP_PKEY_pairwise_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok)
        return error_openssl(err, "the private key's parts do not belong "
                             "together (a damaged key)");
    return 0;
}

/* ---- building keys from their numbers ------------------------------------ */

/* A key of algorithm alg from the parameters pushed on b. */
static int key_fromdata(const char *alg, OSSL_PARAM_BLD *b, EVP_PKEY **k,
                        struct error *err)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
    EVP_PKEY_CTX *ctx = params != NULL ?
        EVP_PKEY_CTX_new_from_name(NULL, alg, NULL) : NULL;
    int ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
             EVP_PKEY_fromdata(ctx, k, EVP_PKEY_KEYPAIR, params) == 1;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);    /* wipes its secure block */
    if (!ok)
        return error_openssl(err, "cannot build the private key from its "
                             "numbers");
    return 0;
}

/* dmp1 = d mod (p-1), dmq1 = d mod (q-1), constant time. The caller frees
 * both, also on failure. */
static int rsa_crt(const BIGNUM *d, const BIGNUM *p, const BIGNUM *q,
                   BIGNUM **dmp1, BIGNUM **dmq1)
{
    BN_CTX *ctx = BN_CTX_secure_new();
    BIGNUM *aux = BN_secure_new();
    *dmp1 = BN_secure_new();
    *dmq1 = BN_secure_new();
    int ok = ctx != NULL && aux != NULL && *dmp1 != NULL && *dmq1 != NULL;
    if (ok)
        BN_set_flags(aux, BN_FLG_CONSTTIME);
    ok = ok && BN_sub(aux, p, BN_value_one()) &&
         BN_mod(*dmp1, d, aux, ctx) && BN_sub(aux, q, BN_value_one()) &&
         BN_mod(*dmq1, d, aux, ctx);
    BN_clear_free(aux);
    BN_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* v: n, e, d, iqmp, p, q (openssh-key-v1's order). */
static int rsa_build(BIGNUM *const v[6], EVP_PKEY **k, struct error *err)
{
    BIGNUM *dmp1 = NULL, *dmq1 = NULL;
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    int ok = b != NULL && rsa_crt(v[2], v[4], v[5], &dmp1, &dmq1) == 0 &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, v[0]) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, v[1]) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_D, v[2]) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_FACTOR1, v[4]) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_FACTOR2, v[5]) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, v[3]);
    int rc = ok ? key_fromdata("RSA", b, k, err) :
        error_openssl(err, "cannot take the RSA key's numbers");
    OSSL_PARAM_BLD_free(b);
    BN_clear_free(dmp1);
    BN_clear_free(dmq1);
    return rc;
}

static int ec_build(const struct curve *c, const unsigned char *q, size_t qn,
                    const BIGNUM *d, EVP_PKEY **k, struct error *err)
{
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    int ok = b != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME,
                                        c->group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, q, qn) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_PRIV_KEY, d);
    int rc = ok ? key_fromdata("EC", b, k, err) :
        error_openssl(err, "cannot take the ECDSA key's numbers");
    OSSL_PARAM_BLD_free(b);
    return rc;
}

/* ---- openssh-key-v1: the key fields of the private section --------------- */

static int damaged(struct error *err, const char *what)
{
    return error_set(err, "the OpenSSH private key is damaged: %s", what);
}

static int openssh_ed25519(struct rd *r, EVP_PKEY **k, struct error *err)
{
    const unsigned char *pub, *priv;
    unsigned char derived[ED25519_LEN];
    size_t pn, sn, dn = sizeof(derived);
    if (get_string(r, &pub, &pn) != 0 || get_string(r, &priv, &sn) != 0)
        return damaged(err, "its Ed25519 fields are cut short");
    if (pn != ED25519_LEN || sn != 2 * ED25519_LEN ||
        memcmp(priv + ED25519_LEN, pub, ED25519_LEN) != 0)
        return damaged(err, "its Ed25519 fields have the wrong size or "
                       "disagree");
    *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv,
                                      ED25519_LEN);
    if (*k == NULL)
        return error_openssl(err, "cannot build the Ed25519 key");
    if (EVP_PKEY_get_raw_public_key(*k, derived, &dn) != 1 ||
        dn != ED25519_LEN || memcmp(derived, pub, ED25519_LEN) != 0)
        return damaged(err, "its Ed25519 private key does not give its "
                       "public key");
    return 0;
}

static int openssh_rsa(struct rd *r, EVP_PKEY **k, struct error *err)
{
    BIGNUM *v[6] = { NULL };    /* n, e, d, iqmp, p, q */
    int rc = 0;
    for (size_t i = 0; i < 6 && rc == 0; i++)
        if (get_mpint(r, &v[i]) != 0)
            rc = damaged(err, "its RSA numbers are cut short or negative");
    if (rc == 0 && BN_num_bits(v[0]) < RSA_BITS_MIN)
        rc = error_set(err, "an RSA key of %d bits is too weak: Wharf "
                       "takes %d bits or more", BN_num_bits(v[0]),
                       RSA_BITS_MIN);
    if (rc == 0)
        rc = rsa_build(v, k, err);
    for (size_t i = 0; i < 6; i++)
        BN_clear_free(v[i]);
    return rc;
}

static int openssh_ecdsa(struct rd *r, const struct curve *c, EVP_PKEY **k,
                         struct error *err)
{
    const unsigned char *name, *q;
    size_t nn, qn;
    BIGNUM *d = NULL;
    int rc;
    if (get_string(r, &name, &nn) != 0 || get_string(r, &q, &qn) != 0 ||
        get_mpint(r, &d) != 0)
        rc = damaged(err, "its ECDSA fields are cut short");
    else if (!string_is(name, nn, c->ssh_name))
        rc = damaged(err, "its ECDSA curve is not the one its type names");
    else if (qn != 1 + 2 * c->field || q[0] != 0x04)
        rc = damaged(err, "its ECDSA public key is not an uncompressed "
                     "point of its curve");
    else
        rc = ec_build(c, q, qn, d, k, err);
    BN_clear_free(d);
    return rc;
}

static int openssh_key_fields(struct rd *r, const unsigned char *type,
                              size_t tn, EVP_PKEY **k, struct error *err)
{
    if (string_is(type, tn, "ssh-ed25519"))
        return openssh_ed25519(r, k, err);
    if (string_is(type, tn, "ssh-rsa"))
        return openssh_rsa(r, k, err);
    for (size_t i = 0; i < NCURVES; i++)
        if (string_is(type, tn, curves[i].type))
            return openssh_ecdsa(r, &curves[i], k, err);
    return error_set(err, "unsupported OpenSSH key type: Wharf takes "
                     "ssh-ed25519, ssh-rsa and ecdsa-sha2-nistp256/384/521 "
                     "keys");
}

/* ---- openssh-key-v1: the private section and the whole ------------------- */

/* The comment, then padding 1, 2, 3, ... up to the block size. */
static int openssh_trailer(struct rd *r, struct error *err)
{
    const unsigned char *comment;
    size_t cn;
    if (get_string(r, &comment, &cn) != 0)
        return damaged(err, "its comment is cut short");
    if (r->n >= OPENSSH_BLOCK)
        return damaged(err, "bytes follow its private key");
    for (size_t i = 0; i < r->n; i++)
        if (r->p[i] != (unsigned char)(i + 1))
            return damaged(err, "its padding is wrong");
    return 0;
}

/* The key's public blob is the file's public key, byte for byte. */
static int openssh_matches(EVP_PKEY *k, const unsigned char *pub,
                           size_t pubn, struct error *err)
{
    unsigned char *blob = NULL;
    size_t n = 0;
    if (sshkey_public_blob(k, &blob, &n, err) != 0)
        return -1;
    int same = n == pubn && memcmp(blob, pub, n) == 0;
    free(blob);
    if (!same)
        return damaged(err, "its private key does not match its public key");
    return 0;
}

static int openssh_private(const unsigned char *sec, size_t n,
                           const unsigned char *pub, size_t pubn,
                           EVP_PKEY **k, struct error *err)
{
    struct rd r = { sec, n };
    const unsigned char *type;
    size_t tn;
    uint32_t check1, check2;
    if (n % OPENSSH_BLOCK != 0)
        return damaged(err, "its private section is not whole blocks");
    if (get_u32(&r, &check1) != 0 || get_u32(&r, &check2) != 0 ||
        get_string(&r, &type, &tn) != 0)
        return damaged(err, "its private section is cut short");
    if (check1 != check2)
        return damaged(err, "its check numbers differ");
    if (openssh_key_fields(&r, type, tn, k, err) != 0 ||
        openssh_trailer(&r, err) != 0 ||
        openssh_matches(*k, pub, pubn, err) != 0) {
        EVP_PKEY_free(*k);
        *k = NULL;
        return -1;
    }
    return 0;
}

/* An encrypted key: how to make it readable, by its type (its public key
 * is in clear). r is after the cipher and KDF names. */
static int openssh_encrypted(struct rd r, struct error *err)
{
    const unsigned char *opts, *pub, *type = NULL;
    size_t on, pn, tn = 0;
    uint32_t nkeys;
    if (get_string(&r, &opts, &on) == 0 && get_u32(&r, &nkeys) == 0 &&
        get_string(&r, &pub, &pn) == 0) {
        struct rd p = { pub, pn };
        if (get_string(&p, &type, &tn) != 0)
            type = NULL;
    }
    if (type != NULL && string_is(type, tn, "ssh-ed25519"))
        return error_set(err, ENCRYPTED_HINT_ED25519);
    return error_set(err, ENCRYPTED_HINT_PKCS8);
}

/* The binary of openssh-key-v1 (OpenSSH's PROTOCOL.key). */
static int openssh_decode(const unsigned char *bin, size_t n, EVP_PKEY **k,
                          struct error *err)
{
    static const char magic[] = OPENSSH_MAGIC;     /* sizeof: with its NUL */
    const unsigned char *cipher, *kdf, *kdfopts, *pub, *sec;
    size_t cn, kn, on, pn, sn;
    uint32_t nkeys;
    if (n < sizeof(magic) || memcmp(bin, magic, sizeof(magic)) != 0)
        return damaged(err, "it does not start with openssh-key-v1");
    struct rd r = { bin + sizeof(magic), n - sizeof(magic) };
    if (get_string(&r, &cipher, &cn) != 0 || get_string(&r, &kdf, &kn) != 0)
        return damaged(err, "its header is cut short");
    if (!string_is(cipher, cn, "none") || !string_is(kdf, kn, "none"))
        return openssh_encrypted(r, err);
    if (get_string(&r, &kdfopts, &on) != 0 || get_u32(&r, &nkeys) != 0)
        return damaged(err, "its header is cut short");
    if (on != 0)
        return damaged(err, "it has KDF options without a KDF");
    if (nkeys != 1)
        return error_set(err, "the OpenSSH key file holds %u keys: Wharf "
                         "takes a file with one", (unsigned)nkeys);
    if (get_string(&r, &pub, &pn) != 0 || get_string(&r, &sec, &sn) != 0)
        return damaged(err, "it is cut short");
    if (r.n != 0)
        return damaged(err, "bytes follow its private section");
    return openssh_private(sec, sn, pub, pn, k, err);
}

/* ---- openssh-key-v1: the text around it ---------------------------------- */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int all_space(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_space(p[i]))
            return 0;
    return 1;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    return c == '/' ? 63 : -1;
}

/* Strict base64 (whitespace skipped, '=' only to end the last quad) into
 * out, which has room for n bytes. */
static int b64_decode(const unsigned char *s, size_t n, unsigned char *out,
                      size_t *outlen)
{
    uint32_t acc = 0;
    size_t q = 0, o = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_space(s[i]))
            continue;
        int v = s[i] == '=' ? 0 : b64_value(s[i]);
        if (v < 0 || (pad > 0 && s[i] != '=') || (s[i] == '=' && q < 2))
            return -1;
        pad += s[i] == '=';
        acc = acc << 6 | (uint32_t)v;
        if (++q < 4)
            continue;
        out[o++] = (unsigned char)(acc >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(acc >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)acc;
        q = 0;
        acc = 0;
    }
    *outlen = o;
    return q == 0 ? 0 : -1;
}

/* The base64 between the armor lines; only whitespace around them. */
static int openssh_body(const unsigned char *t, size_t n,
                        const unsigned char **body, size_t *bn)
{
    size_t lb = strlen(OPENSSH_BEGIN), le = strlen(OPENSSH_END);
    const unsigned char *begin = memmem(t, n, OPENSSH_BEGIN, lb);
    if (begin == NULL || !all_space(t, (size_t)(begin - t)))
        return -1;
    const unsigned char *p = begin + lb;
    const unsigned char *end = memmem(p, n - (size_t)(p - t), OPENSSH_END, le);
    if (end == NULL || end == p || (*p != '\n' && *p != '\r') ||
        end[-1] != '\n')
        return -1;
    const unsigned char *after = end + le;
    if (!all_space(after, n - (size_t)(after - t)))
        return -1;
    *body = p;
    *bn = (size_t)(end - p);
    return 0;
}

static int openssh_parse(const unsigned char *text, size_t len, EVP_PKEY **k,
                         struct error *err)
{
    const unsigned char *body;
    size_t n, binlen = 0;
    if (openssh_body(text, len, &body, &n) != 0)
        return error_set(err, "the OpenSSH private key's BEGIN and END "
                         "lines are damaged, or text surrounds them");
    unsigned char *bin = malloc(n);
    if (bin == NULL)
        return error_set(err, "out of memory reading a private key");
    int rc = b64_decode(body, n, bin, &binlen) != 0 ?
        damaged(err, "it is not valid base64") :
        openssh_decode(bin, binlen, k, err);
    OPENSSL_cleanse(bin, n);
    free(bin);
    return rc;
}

/* ---- PEM ------------------------------------------------------------------- */

/* Hands OpenSSL the passphrase; none (-1) rather than a terminal prompt. */
static int pem_pass(char *buf, int size, int rwflag, void *u)
{
    const struct secret *pass = u;
    (void)rwflag;
    if (pass == NULL || size < 0 || secret_len(pass) > (size_t)size)
        return -1;
    memcpy(buf, secret_data(pass), secret_len(pass));
    return (int)secret_len(pass);
}

static int has(const unsigned char *t, size_t n, const char *s)
{
    return memmem(t, n, s, strlen(s)) != NULL;
}

static int pem_parse(const unsigned char *text, size_t len,
                     const struct secret *pass, EVP_PKEY **k,
                     struct error *err)
{
    int encrypted = has(text, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
                    has(text, len, "Proc-Type: 4,ENCRYPTED");
    BIO *b = BIO_new_mem_buf(text, (int)len);
    *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, pem_pass, (void *)pass)
                   : NULL;
    BIO_free(b);
    if (*k != NULL)
        return 0;
    if (!encrypted && has(text, len, "-----BEGIN "))
        return error_openssl(err, "cannot read the PEM private key");
    ERR_clear_error();
    if (!encrypted)
        return error_set(err, "not a private key Wharf reads: it takes "
                         "OpenSSH key files and PEM (PKCS#8, RSA or EC) "
                         "private keys");
    if (pass == NULL)
        return error_set(err, "the private key is encrypted: give its "
                         "passphrase");
    return error_set(err, "cannot open the encrypted private key: a wrong "
                     "passphrase, or a damaged file");
}

/* ---- sshkey_parse ------------------------------------------------------------ */

int sshkey_parse(const unsigned char *text, size_t len,
                 const struct secret *pass, EVP_PKEY **out, struct error *err)
{
    *out = NULL;
    if (text == NULL || all_space(text, len))
        return error_set(err, "the private key is empty");
    if (len > SSHKEY_TEXT_MAX)
        return error_set(err, "the private key file is larger than %d bytes",
                         SSHKEY_TEXT_MAX);
    EVP_PKEY *k = NULL;
    int rc = has(text, len, OPENSSH_BEGIN) ? openssh_parse(text, len, &k, err)
                                           : pem_parse(text, len, pass, &k,
                                                       err);
    if (rc == 0)
        rc = key_check(k, err);
    if (rc != 0) {
        EVP_PKEY_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

/* ---- sshkey_public_blob ------------------------------------------------------ */

static int blob_ed25519(EVP_PKEY *k, struct wr *w, struct error *err)
{
    unsigned char pub[ED25519_LEN];
    size_t n = sizeof(pub);
    if (EVP_PKEY_get_raw_public_key(k, pub, &n) != 1 || n != ED25519_LEN)
        return error_openssl(err, "cannot get the Ed25519 public key");
    put_cstring(w, "ssh-ed25519");
    put_string(w, pub, n);
    return 0;
}

static int blob_rsa(EVP_PKEY *k, struct wr *w, struct error *err)
{
    BIGNUM *n = NULL, *e = NULL;
    int ok = EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
             EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) == 1;
    if (ok) {
        put_cstring(w, "ssh-rsa");
        put_mpint(w, e);
        put_mpint(w, n);
    }
    BN_free(n);
    BN_free(e);
    return ok ? 0 : error_openssl(err, "cannot get the RSA public key");
}

static int blob_ec(EVP_PKEY *k, const struct curve *c, struct wr *w,
                   struct error *err)
{
    unsigned char q[1 + 2 * EC_FIELD_MAX];
    BIGNUM *x = NULL, *y = NULL;
    int f = (int)c->field;
    int ok = EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
             EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1 &&
             BN_bn2binpad(x, q + 1, f) == f &&
             BN_bn2binpad(y, q + 1 + f, f) == f;
    BN_free(x);
    BN_free(y);
    if (!ok)
        return error_openssl(err, "cannot get the ECDSA public key");
    q[0] = 0x04;
    put_cstring(w, c->type);
    put_cstring(w, c->ssh_name);
    put_string(w, q, 1 + 2 * c->field);
    return 0;
}

int sshkey_public_blob(EVP_PKEY *k, unsigned char **blob, size_t *len,
                       struct error *err)
{
    struct wr w = { 0 };
    const struct curve *c;
    int rc;
    *blob = NULL;
    *len = 0;
    switch (key_kind(k, &c)) {
    case KIND_ED25519: rc = blob_ed25519(k, &w, err); break;
    case KIND_RSA: rc = blob_rsa(k, &w, err); break;
    case KIND_EC: rc = blob_ec(k, c, &w, err); break;
    default: rc = error_set(err, "not a key type SSH uses here"); break;
    }
    return wr_done(&w, rc, blob, len, err);
}

/* ---- sshkey_sign ------------------------------------------------------------- */

/* OpenSSL's signature of data by k with md (NULL for Ed25519) into a new
 * buffer. */
static int digest_sign(EVP_PKEY *k, const EVP_MD *md,
                       const unsigned char *data, size_t len,
                       unsigned char **out, size_t *outlen, struct error *err)
{
    static const unsigned char none[1];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t n = 0;
    if (data == NULL)
        data = none;
    *out = NULL;
    int ok = ctx != NULL &&
             EVP_DigestSignInit(ctx, NULL, md, NULL, k) == 1 &&
             EVP_DigestSign(ctx, NULL, &n, data, len) == 1 &&
             (*out = malloc(n > 0 ? n : 1)) != NULL &&
             EVP_DigestSign(ctx, *out, &n, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        free(*out);
        *out = NULL;
        return error_openssl(err, "cannot sign for SSH");
    }
    *outlen = n;
    return 0;
}

static int sign_ed25519(EVP_PKEY *k, const unsigned char *data, size_t len,
                        struct wr *w, struct error *err)
{
    unsigned char *raw;
    size_t n;
    if (digest_sign(k, NULL, data, len, &raw, &n, err) != 0)
        return -1;
    put_cstring(w, "ssh-ed25519");
    put_string(w, raw, n);
    free(raw);
    return 0;
}

static int sign_rsa(EVP_PKEY *k, uint32_t flags, const unsigned char *data,
                    size_t len, struct wr *w, struct error *err)
{
    const char *name = "ssh-rsa";
    const EVP_MD *md = EVP_sha1();
    unsigned char *raw;
    size_t n;
    if (flags & SSHKEY_RSA_SHA2_512) {
        name = "rsa-sha2-512";
        md = EVP_sha512();
    } else if (flags & SSHKEY_RSA_SHA2_256) {
        name = "rsa-sha2-256";
        md = EVP_sha256();
    }
    if (digest_sign(k, md, data, len, &raw, &n, err) != 0)
        return -1;
    put_cstring(w, name);
    put_string(w, raw, n);
    free(raw);
    return 0;
}

/* DER ECDSA-Sig-Value into mpint r + mpint s (RFC 5656 3.1.2). */
static int ecdsa_blob(const unsigned char *der, size_t n, struct wr *blob,
                      struct error *err)
{
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)n);
    if (sig == NULL)
        return error_openssl(err, "cannot read OpenSSL's ECDSA signature");
    ECDSA_SIG_get0(sig, &r, &s);
    put_mpint(blob, r);
    put_mpint(blob, s);
    ECDSA_SIG_free(sig);
    return 0;
}

static int sign_ec(EVP_PKEY *k, const struct curve *c,
                   const unsigned char *data, size_t len, struct wr *w,
                   struct error *err)
{
    struct wr blob = { 0 };
    unsigned char *der;
    size_t n;
    if (digest_sign(k, c->md(), data, len, &der, &n, err) != 0)
        return -1;
    int rc = ecdsa_blob(der, n, &blob, err);
    free(der);
    if (rc == 0 && blob.bad)
        rc = error_set(err, "out of memory building an SSH signature");
    if (rc == 0) {
        put_cstring(w, c->type);
        put_string(w, blob.p, blob.n);
    }
    free(blob.p);
    return rc;
}

int sshkey_sign(EVP_PKEY *k, uint32_t flags, const unsigned char *data,
                size_t len, unsigned char **sig, size_t *siglen,
                struct error *err)
{
    struct wr w = { 0 };
    const struct curve *c;
    int rc;
    *sig = NULL;
    *siglen = 0;
    if (data == NULL && len != 0)
        return error_set(err, "no data to sign");
    switch (key_kind(k, &c)) {
    case KIND_ED25519: rc = sign_ed25519(k, data, len, &w, err); break;
    case KIND_RSA: rc = sign_rsa(k, flags, data, len, &w, err); break;
    case KIND_EC: rc = sign_ec(k, c, data, len, &w, err); break;
    default: rc = error_set(err, "not a key type SSH uses here"); break;
    }
    return wr_done(&w, rc, sig, siglen, err);
}
