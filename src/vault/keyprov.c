/*
 * keyprov.c - "wharfkey", Wharf's OpenSSL 3 provider: EVP_PKEYs that hold
 * only a public key and a vault handle (keyhost.h), so that OpenSSL's own
 * CMS and TLS code sign and decrypt with keys it never sees.
 *
 * Algorithms (all fetched only through our keys: the operations have names
 * no other provider uses, so nothing else ever picks them):
 *   keymgmt "RSA" and "EC": import (our three parameters only), export and
 *     get_params of the public half, match;
 *   signature "WHARF-RSA-SIG" (PKCS#1 v1.5, PSS) and "WHARF-EC-SIG"
 *     (ECDSA): sign a digest, or digest-sign (the digest is computed here,
 *     only the digest crosses over);
 *   asym cipher "WHARF-RSA-ENC": decrypt only (PKCS#1 v1.5, OAEP).
 * The private operations go to keyhost_sign / keyhost_decrypt: the key
 * table of this process or the key process.
 *
 * It owns its key objects (public EVP_PKEY + handle) and operation
 * contexts. It must never hold or accept private key material (import takes
 * only a handle and a public key), and never export anything but the
 * public key.
 */
#include "vault/keyhost.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/log.h"

#define KEYPROV_NAME "wharfkey"
#define KP_PARAM_WHERE "wharf-where"
#define KP_PARAM_HANDLE "wharf-handle"
#define KP_PARAM_SPKI "wharf-spki"

typedef void (*keyprov_fn)(void);

/* A key: the public half and where its private half is. */
struct keyprov_key {
    EVP_PKEY *pub;                  /* owned, public only */
    enum keyhost_where where;
    uint32_t handle;
    int rsa;                        /* 1 RSA, 0 EC */
};

/* ---- keymgmt ------------------------------------------------------------- */

static void *km_new(void *provctx)
{
    (void)provctx;
    return calloc(1, sizeof(struct keyprov_key));
}

static void km_free(void *kd)
{
    struct keyprov_key *k = kd;
    if (k != NULL)
        EVP_PKEY_free(k->pub);
    free(k);
}

static int km_has(const void *kd, int selection)
{
    const struct keyprov_key *k = kd;
    (void)selection;                /* the private half exists, elsewhere */
    return k != NULL && k->pub != NULL;
}

static int km_import(void *kd, int selection, const OSSL_PARAM params[])
{
    struct keyprov_key *k = kd;
    const OSSL_PARAM *w = OSSL_PARAM_locate_const(params, KP_PARAM_WHERE);
    const OSSL_PARAM *h = OSSL_PARAM_locate_const(params, KP_PARAM_HANDLE);
    const OSSL_PARAM *s = OSSL_PARAM_locate_const(params, KP_PARAM_SPKI);
    unsigned int where = 0, handle = 0;
    const void *der = NULL;
    size_t len = 0;
    (void)selection;
    if (k == NULL || k->pub != NULL || w == NULL || h == NULL || s == NULL ||
        !OSSL_PARAM_get_uint(w, &where) || !OSSL_PARAM_get_uint(h, &handle) ||
        !OSSL_PARAM_get_octet_string_ptr(s, &der, &len) || where > 1)
        return 0;                   /* not one of ours: quietly refused */
    const unsigned char *p = der;
    k->pub = d2i_PUBKEY(NULL, &p, (long)len);
    if (k->pub == NULL)
        return 0;
    k->where = (enum keyhost_where)where;
    k->handle = handle;
    k->rsa = EVP_PKEY_is_a(k->pub, "RSA");
    return 1;
}

static const OSSL_PARAM km_import_list[] = {
    OSSL_PARAM_uint(KP_PARAM_WHERE, NULL),
    OSSL_PARAM_uint(KP_PARAM_HANDLE, NULL),
    OSSL_PARAM_octet_string(KP_PARAM_SPKI, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *km_import_types(int selection)
{
    (void)selection;
    return km_import_list;
}

static int km_export(void *kd, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    struct keyprov_key *k = kd;
    OSSL_PARAM *params = NULL;
    if (k == NULL || k->pub == NULL ||
        (selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY |
                      OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS)) == 0)
        return 0;                   /* the private half never leaves */
    if (EVP_PKEY_todata(k->pub, EVP_PKEY_PUBLIC_KEY, &params) != 1)
        return 0;
    int rc = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return rc;
}

static const OSSL_PARAM km_rsa_types[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM km_ec_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *km_rsa_export_types(int selection)
{
    (void)selection;
    return km_rsa_types;
}

static const OSSL_PARAM *km_ec_export_types(int selection)
{
    (void)selection;
    return km_ec_types;
}

/* Everything about the key (size, bits, group, default digest...) is
 * answered by its public half. */
static int km_get_params(void *kd, OSSL_PARAM params[])
{
    struct keyprov_key *k = kd;
    return k != NULL && k->pub != NULL &&
           EVP_PKEY_get_params(k->pub, params) == 1;
}

static const OSSL_PARAM km_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                           NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
    (void)provctx;
    return km_gettable;
}

static int km_match(const void *a, const void *b, int selection)
{
    const struct keyprov_key *x = a, *y = b;
    (void)selection;
    return x->pub != NULL && y->pub != NULL && EVP_PKEY_eq(x->pub, y->pub);
}

static const char *km_rsa_opname(int op)
{
    return op == OSSL_OP_SIGNATURE ? "WHARF-RSA-SIG"
         : op == OSSL_OP_ASYM_CIPHER ? "WHARF-RSA-ENC" : NULL;
}

static const char *km_ec_opname(int op)
{
    return op == OSSL_OP_SIGNATURE ? "WHARF-EC-SIG" : NULL;
}

#define KM_COMMON                                                          \
    { OSSL_FUNC_KEYMGMT_NEW, (keyprov_fn)km_new },                         \
    { OSSL_FUNC_KEYMGMT_FREE, (keyprov_fn)km_free },                       \
    { OSSL_FUNC_KEYMGMT_HAS, (keyprov_fn)km_has },                         \
    { OSSL_FUNC_KEYMGMT_MATCH, (keyprov_fn)km_match },                     \
    { OSSL_FUNC_KEYMGMT_IMPORT, (keyprov_fn)km_import },                   \
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (keyprov_fn)km_import_types },       \
    { OSSL_FUNC_KEYMGMT_EXPORT, (keyprov_fn)km_export },                   \
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (keyprov_fn)km_get_params },           \
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (keyprov_fn)km_gettable_params }

static const OSSL_DISPATCH km_rsa_fns[] = {
    KM_COMMON,
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (keyprov_fn)km_rsa_export_types },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (keyprov_fn)km_rsa_opname },
    { 0, NULL }
};

static const OSSL_DISPATCH km_ec_fns[] = {
    KM_COMMON,
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (keyprov_fn)km_ec_export_types },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (keyprov_fn)km_ec_opname },
    { 0, NULL }
};

/* ---- parameters shared by signature and asym cipher ---------------------- */

/* An operation context: the key, the four numbers of keyproto_params, the
 * OAEP label and (digest-sign) the running digest. */
struct keyprov_op {
    struct keyprov_key *key;        /* borrowed from the EVP_PKEY */
    struct keyproto_params p;
    int saltlen_max;                /* PSS salt "max"/"auto": computed */
    unsigned char *label;           /* owned */
    size_t llen;
    EVP_MD_CTX *md;                 /* owned, digest-sign only */
};

static void *op_new(void *provctx, const char *propq)
{
    (void)provctx;
    (void)propq;
    struct keyprov_op *o = calloc(1, sizeof(*o));
    if (o != NULL)
        o->p.saltlen = -1;
    return o;
}

static void op_free(void *ctx)
{
    struct keyprov_op *o = ctx;
    if (o == NULL)
        return;
    EVP_MD_CTX_free(o->md);
    OPENSSL_clear_free(o->label, o->llen);
    free(o);
}

static void *op_dup(void *ctx)
{
    const struct keyprov_op *o = ctx;
    struct keyprov_op *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    *d = *o;
    d->label = NULL;
    d->md = NULL;
    if ((o->llen > 0 && (d->label = OPENSSL_memdup(o->label,
                                                   o->llen)) == NULL) ||
        (o->md != NULL && ((d->md = EVP_MD_CTX_new()) == NULL ||
                           EVP_MD_CTX_copy_ex(d->md, o->md) != 1))) {
        op_free(d);
        return NULL;
    }
    return d;
}

/* The keyproto_md of a digest name (any of OpenSSL's names for it). */
static uint32_t op_md_of(const char *name)
{
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    uint32_t r = KP_MD_NONE;
    if (md != NULL) {
        switch (EVP_MD_get_type(md)) {
        case NID_sha1: r = KP_MD_SHA1; break;
        case NID_sha224: r = KP_MD_SHA224; break;
        case NID_sha256: r = KP_MD_SHA256; break;
        case NID_sha384: r = KP_MD_SHA384; break;
        case NID_sha512: r = KP_MD_SHA512; break;
        default: break;
        }
    }
    EVP_MD_free(md);
    return r;
}

static int op_set_md(const OSSL_PARAM *p, uint32_t *out)
{
    const char *name = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
        return 0;
    *out = op_md_of(name);
    return *out != KP_MD_NONE;
}

static const struct {
    const char *name;
    uint32_t pad;
    int rsa;                        /* OpenSSL's number */
} op_pads[] = {
    { OSSL_PKEY_RSA_PAD_MODE_PKCSV15, KP_PAD_PKCS1, 1 },
    { OSSL_PKEY_RSA_PAD_MODE_PSS, KP_PAD_PSS, 6 },
    { OSSL_PKEY_RSA_PAD_MODE_OAEP, KP_PAD_OAEP, 4 },
};

static int op_set_pad(const OSSL_PARAM *p, uint32_t *out)
{
    int n = 0;
    const char *name = NULL;
    for (size_t i = 0; i < sizeof(op_pads) / sizeof(op_pads[0]); i++) {
        if ((p->data_type == OSSL_PARAM_INTEGER &&
             OSSL_PARAM_get_int(p, &n) && n == op_pads[i].rsa) ||
            (p->data_type == OSSL_PARAM_UTF8_STRING &&
             OSSL_PARAM_get_utf8_string_ptr(p, &name) &&
             strcmp(name, op_pads[i].name) == 0)) {
            *out = op_pads[i].pad;
            return 1;
        }
    }
    return 0;
}

static int op_get_pad(OSSL_PARAM *p, uint32_t pad)
{
    for (size_t i = 0; i < sizeof(op_pads) / sizeof(op_pads[0]); i++)
        if (op_pads[i].pad == pad)
            return p->data_type == OSSL_PARAM_INTEGER
                   ? OSSL_PARAM_set_int(p, op_pads[i].rsa)
                   : OSSL_PARAM_set_utf8_string(p, op_pads[i].name);
    return 1;                       /* ECDSA: no padding to report */
}

/* A decimal salt length (0..KP_SIG_MAX) into *out. */
static int op_salt_number(const char *s, int32_t *out)
{
    char *end = NULL;
    long n = strtol(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || n > KP_SIG_MAX)
        return 0;
    *out = (int32_t)n;
    return 1;
}

/* PSS salt length: a number, or "digest" (-1), "max" / "auto". */
static int op_set_saltlen(struct keyprov_op *o, const OSSL_PARAM *p)
{
    int n = 0;
    const char *s = NULL;
    o->saltlen_max = 0;
    if (p->data_type == OSSL_PARAM_INTEGER)
        return OSSL_PARAM_get_int(p, &n) && n >= -3 &&
               ((n >= -1 ? (o->p.saltlen = n) : (o->saltlen_max = 1)), 1);
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
        return 0;
    if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0)
        o->p.saltlen = -1;
    else if (strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0 ||
             strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0)
        o->saltlen_max = 1;
    else
        return op_salt_number(s, &o->p.saltlen);
    return 1;
}

static int op_get_saltlen(const struct keyprov_op *o, OSSL_PARAM *p)
{
    int n = o->saltlen_max ? -3 : o->p.saltlen;
    if (p->data_type == OSSL_PARAM_INTEGER)
        return OSSL_PARAM_set_int(p, n);
    char buf[16];
    const char *s = n == -1 ? OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST
                  : n == -3 ? OSSL_PKEY_RSA_PSS_SALT_LEN_MAX : NULL;
    if (s == NULL) {
        snprintf(buf, sizeof(buf), "%d", n);
        s = buf;
    }
    return OSSL_PARAM_set_utf8_string(p, s);
}

static int op_get_md(OSSL_PARAM *p, uint32_t md)
{
    const char *name = keyproto_md_name(md);
    return name == NULL || OSSL_PARAM_set_utf8_string(p, name);
}

static int op_set_params(void *ctx, const OSSL_PARAM params[])
{
    struct keyprov_op *o = ctx;
    const OSSL_PARAM *p;
    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) &&
        !op_set_md(p, &o->p.md))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) &&
        !op_set_pad(p, &o->p.pad))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params,
                                     OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) &&
        !op_set_saltlen(o, p))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params,
                                     OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) &&
        !op_set_md(p, &o->p.mgf1))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params,
                                     OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL))) {
        void *label = NULL;
        size_t n = 0;
        if (!OSSL_PARAM_get_octet_string(p, &label, 0, &n) ||
            n > KP_LABEL_MAX) {
            OPENSSL_free(label);
            return 0;
        }
        OPENSSL_clear_free(o->label, o->llen);
        o->label = label;
        o->llen = n;
    }
    return 1;
}

/* The AlgorithmIdentifier of o's signature (CMS and X.509 ask for it): the
 * default provider's answer for a verification with the same settings on
 * the public half. */
static int op_get_aid(const struct keyprov_op *o, OSSL_PARAM *p)
{
    const EVP_MD *md = EVP_get_digestbyname(keyproto_md_name(o->p.md)
                                            ?: "SHA256");
    const EVP_MD *mgf1 = o->p.mgf1
        ? EVP_get_digestbyname(keyproto_md_name(o->p.mgf1)) : md;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(o->key->pub, NULL);
    int ok = c != NULL && EVP_PKEY_verify_init(c) == 1 && md != NULL &&
             EVP_PKEY_CTX_set_signature_md(c, md) == 1;
    if (ok && o->p.pad == KP_PAD_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(c, o->saltlen_max ? -3
                                              : o->p.saltlen) == 1 &&
             mgf1 != NULL && EVP_PKEY_CTX_set_rsa_mgf1_md(c, mgf1) == 1;
    unsigned char aid[256];
    OSSL_PARAM q[2] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid,
                                sizeof(aid)),
        OSSL_PARAM_END
    };
    ok = ok && EVP_PKEY_CTX_get_params(c, q) == 1 &&
         OSSL_PARAM_modified(&q[0]) &&
         OSSL_PARAM_set_octet_string(p, aid, q[0].return_size) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

static int op_get_params(void *ctx, OSSL_PARAM params[])
{
    struct keyprov_op *o = ctx;
    OSSL_PARAM *p;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) &&
        !op_get_md(p, o->p.md))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) &&
        !op_get_pad(p, o->p.pad))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) &&
        !op_get_saltlen(o, p))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) &&
        !op_get_md(p, o->p.mgf1 ? o->p.mgf1 : o->p.md))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) &&
        !OSSL_PARAM_set_octet_ptr(p, o->label, o->llen))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) &&
        !op_get_aid(o, p))
        return 0;
    return 1;
}

static const OSSL_PARAM op_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM op_gettable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *op_gettable_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return op_gettable;
}

static const OSSL_PARAM *op_settable_params(void *ctx, void *provctx)
{
    (void)ctx;
    (void)provctx;
    return op_settable;
}

/* A key operation failed: log why (OpenSSL's callers only see "failed"). */
static int op_fail(const struct error *err)
{
    log_error("vault key operation: %s", err->msg);
    ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s", err->msg);
    return 0;
}

/* ---- signature ----------------------------------------------------------- */

static int sig_init(void *ctx, void *kd, const OSSL_PARAM params[])
{
    struct keyprov_op *o = ctx;
    o->key = kd;
    o->p.pad = o->key->rsa ? KP_PAD_PKCS1 : KP_PAD_NONE;
    return op_set_params(ctx, params);
}

/* Sign the digest tbs with o's key. */
static int sig_do(struct keyprov_op *o, unsigned char *sig, size_t *siglen,
                  size_t sigsize, const unsigned char *tbs, size_t n)
{
    size_t max = (size_t)EVP_PKEY_get_size(o->key->pub);
    if (sig == NULL) {
        *siglen = max;
        return 1;
    }
    struct keyproto_params p = o->p;
    if (o->saltlen_max)             /* RSA-PSS: the largest salt that fits */
        p.saltlen = (int32_t)(max - keyproto_md_size(p.md) - 2 -
                              ((EVP_PKEY_get_bits(o->key->pub) & 7) == 1));
    unsigned char buf[KP_SIG_MAX];
    size_t len = 0;
    struct error err = {0};
    if (keyhost_sign(o->key->where, o->key->handle, &p, tbs, n, buf, &len,
                     &err) != 0)
        return op_fail(&err);
    if (len > sigsize)
        return 0;
    memcpy(sig, buf, len);
    *siglen = len;
    return 1;
}

static int sig_sign(void *ctx, unsigned char *sig, size_t *siglen,
                    size_t sigsize, const unsigned char *tbs, size_t n)
{
    return sig_do(ctx, sig, siglen, sigsize, tbs, n);
}

static int sig_dinit(void *ctx, const char *mdname, void *kd,
                     const OSSL_PARAM params[])
{
    struct keyprov_op *o = ctx;
    if (!sig_init(ctx, kd, params))
        return 0;
    if (mdname != NULL && mdname[0] != '\0')
        o->p.md = op_md_of(mdname);
    if (o->p.md == KP_MD_NONE)
        o->p.md = KP_MD_SHA256;
    const char *name = keyproto_md_name(o->p.md);
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    EVP_MD_CTX_free(o->md);
    o->md = EVP_MD_CTX_new();
    int ok = md != NULL && o->md != NULL &&
             EVP_DigestInit_ex2(o->md, md, NULL) == 1;
    EVP_MD_free(md);
    return ok;
}

static int sig_dupdate(void *ctx, const unsigned char *data, size_t n)
{
    struct keyprov_op *o = ctx;
    return o->md != NULL && EVP_DigestUpdate(o->md, data, n) == 1;
}

static int sig_dfinal(void *ctx, unsigned char *sig, size_t *siglen,
                      size_t sigsize)
{
    struct keyprov_op *o = ctx;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (sig == NULL)
        return sig_do(o, NULL, siglen, sigsize, NULL, 0);
    if (o->md == NULL || EVP_DigestFinal_ex(o->md, d, &n) != 1)
        return 0;
    return sig_do(o, sig, siglen, sigsize, d, n);
}

static const OSSL_DISPATCH sig_fns[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (keyprov_fn)op_new },
    { OSSL_FUNC_SIGNATURE_FREECTX, (keyprov_fn)op_free },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (keyprov_fn)op_dup },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (keyprov_fn)sig_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (keyprov_fn)sig_sign },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (keyprov_fn)sig_dinit },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (keyprov_fn)sig_dupdate },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (keyprov_fn)sig_dfinal },
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (keyprov_fn)op_set_params },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
      (keyprov_fn)op_settable_params },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (keyprov_fn)op_get_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (keyprov_fn)op_gettable_params },
    { 0, NULL }
};

/* ---- asym cipher (decrypt only) ----------------------------------------- */

static int enc_dinit(void *ctx, void *kd, const OSSL_PARAM params[])
{
    struct keyprov_op *o = ctx;
    o->key = kd;
    o->p.pad = KP_PAD_PKCS1;
    o->p.md = KP_MD_NONE;
    return o->key->rsa && op_set_params(ctx, params);
}

static int enc_decrypt(void *ctx, unsigned char *out, size_t *outlen,
                       size_t outsize, const unsigned char *in, size_t n)
{
    struct keyprov_op *o = ctx;
    size_t max = (size_t)EVP_PKEY_get_size(o->key->pub);
    if (out == NULL) {
        *outlen = max;
        return 1;
    }
    unsigned char buf[KP_CIPHER_MAX];
    size_t len = 0;
    struct error err = {0};
    if (n == 0 || n > KP_CIPHER_MAX)
        return 0;
    if (keyhost_decrypt(o->key->where, o->key->handle, &o->p, o->label,
                        o->llen, in, n, buf, &len, &err) != 0) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return op_fail(&err);
    }
    int ok = len <= outsize;
    if (ok) {
        memcpy(out, buf, len);
        *outlen = len;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok;
}

static const OSSL_DISPATCH enc_fns[] = {
    { OSSL_FUNC_ASYM_CIPHER_NEWCTX, (keyprov_fn)op_new },
    { OSSL_FUNC_ASYM_CIPHER_FREECTX, (keyprov_fn)op_free },
    { OSSL_FUNC_ASYM_CIPHER_DUPCTX, (keyprov_fn)op_dup },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (keyprov_fn)enc_dinit },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT, (keyprov_fn)enc_decrypt },
    { OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (keyprov_fn)op_set_params },
    { OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS,
      (keyprov_fn)op_settable_params },
    { OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (keyprov_fn)op_get_params },
    { OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS,
      (keyprov_fn)op_gettable_params },
    { 0, NULL }
};

/* ---- the provider ------------------------------------------------------ */

#define KP_PROPS "provider=" KEYPROV_NAME

static const OSSL_ALGORITHM keyprov_keymgmt[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", KP_PROPS, km_rsa_fns,
      "an RSA key held by the Wharf vault" },
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", KP_PROPS, km_ec_fns,
      "an EC key held by the Wharf vault" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM keyprov_signature[] = {
    { "WHARF-RSA-SIG", KP_PROPS, sig_fns, NULL },
    { "WHARF-EC-SIG", KP_PROPS, sig_fns, NULL },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM keyprov_asym[] = {
    { "WHARF-RSA-ENC", KP_PROPS, enc_fns, NULL },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM *keyprov_query(void *provctx, int op,
                                           int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    return op == OSSL_OP_KEYMGMT ? keyprov_keymgmt
         : op == OSSL_OP_SIGNATURE ? keyprov_signature
         : op == OSSL_OP_ASYM_CIPHER ? keyprov_asym : NULL;
}

static const OSSL_DISPATCH keyprov_dispatch[] = {
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (keyprov_fn)keyprov_query },
    { 0, NULL }
};

static int keyprov_init(const OSSL_CORE_HANDLE *handle,
                        const OSSL_DISPATCH *in, const OSSL_DISPATCH **out,
                        void **provctx)
{
    (void)in;
    *out = keyprov_dispatch;
    *provctx = (void *)handle;
    return 1;
}

static pthread_once_t keyprov_once = PTHREAD_ONCE_INIT;
static OSSL_PROVIDER *keyprov_prov;     /* our reference, dropped at exit */
static int keyprov_loaded;

static void keyprov_unload(void)
{
    OSSL_PROVIDER_unload(keyprov_prov);
    keyprov_prov = NULL;
}

/* Register and load the provider, keeping the default one (fallback). The
 * reference is dropped at exit, before OpenSSL's own cleanup (atexit runs
 * in reverse order) frees the provider store. */
static void keyprov_load(void)
{
    if (OSSL_PROVIDER_add_builtin(NULL, KEYPROV_NAME, keyprov_init) == 1)
        keyprov_prov = OSSL_PROVIDER_try_load(NULL, KEYPROV_NAME, 1);
    keyprov_loaded = keyprov_prov != NULL;
    if (keyprov_loaded)
        atexit(keyprov_unload);
}

EVP_PKEY *keyprov_pkey(enum keyhost_where where, uint32_t handle,
                       const unsigned char *spki, size_t spkilen,
                       struct error *err)
{
    pthread_once(&keyprov_once, keyprov_load);
    const unsigned char *p = spki;
    EVP_PKEY *pub = keyprov_loaded ? d2i_PUBKEY(NULL, &p, (long)spkilen)
                                   : NULL;
    const char *type = pub == NULL ? NULL
                     : EVP_PKEY_is_a(pub, "RSA") ? "RSA"
                     : EVP_PKEY_is_a(pub, "EC") ? "EC" : NULL;
    EVP_PKEY_free(pub);
    if (type == NULL) {
        error_openssl(err, keyprov_loaded ? "the vault holds a key of a type "
                      "Wharf cannot use (RSA and EC keys only)"
                      : "cannot load the vault's OpenSSL provider");
        return NULL;
    }
    unsigned int w = (unsigned int)where, h = handle;
    OSSL_PARAM params[] = {
        OSSL_PARAM_uint(KP_PARAM_WHERE, &w),
        OSSL_PARAM_uint(KP_PARAM_HANDLE, &h),
        OSSL_PARAM_octet_string(KP_PARAM_SPKI, (void *)spki, spkilen),
        OSSL_PARAM_END
    };
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, KP_PROPS);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) != 1)
        error_openssl(err, "cannot make a key handle");
    EVP_PKEY_CTX_free(ctx);
    return k;
}
