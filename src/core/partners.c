/*
 * partners.c - the AS2 profile and trading partners of the import/export
 * document (M7): validation without I/O (partners_parse, called by the
 * fuzzed flow_parse) and the import-time reading of certificates and keys
 * (partners_load). See partners.h for the document shape.
 *
 * Owns the rows it adds to a struct store_flow until store_flow_clear. It
 * must never put a private key, a PKCS#12 password or key bytes into an
 * error message or a log line: keys go from the file straight into a
 * struct secret and out only as the vault's sealed blob.
 */
#include "core/partners.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "core/flowfile.h"
#include "core/wharf.h"
#include "net/allow.h"
#include "net/client.h"
#include "store/partner_store.h"
#include "util/fsx.h"
#include "util/secret.h"
#include "vault/vault.h"

#define CERT_FILE_MAX (1024 * 1024)
#define SEAL_PLAIN_MAX (64 * 1024)      /* a password */

/* ---- validation (no I/O) ------------------------------------------------ */

static const char *const SIGN[] = { "sha1", "sha256", "sha384", "sha512",
                                    "none", NULL };
static const char *const ENCRYPT[] = { "aes128-cbc", "aes192-cbc",
    "aes256-cbc", "aes128-gcm", "aes256-gcm", "3des", "none", NULL };
static const char *const MDN[] = { "none", "sync", "async", NULL };
static const char *const TRANSFER[] = { "binary", "base64", NULL };
static const char *const ORDER[] = { "before_sign", "after_sign", NULL };
static const char *const SPELLING[] = { "rfc", "plain", NULL };

static int one_of(const char *v, const char *const *list)
{
    for (size_t i = 0; v && list[i]; i++)
        if (strcmp(v, list[i]) == 0)
            return 1;
    return 0;
}

/* RFC 4130 section 6.2: 1..128 printable ASCII; we also refuse quotes and
 * backslashes (they would need escaping in the header) and edge spaces. */
static int as2_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128 || s[0] == ' ' || s[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return 0;
    return 1;
}

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789._-", s[i]))
            return 0;
    return 1;
}

/* "2027-01-01T00:00:00Z" into ms since the epoch; -1 if malformed. */
static int64_t utc_parse(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (end == NULL || *end != '\0')
        return -1;
    return (int64_t)timegm(&tm) * 1000;
}

static int keys_only(const json_t *o, const char *const *keys,
                     const char *what, struct error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
        if (!one_of(k, keys))
            return error_set(err, "%s: unknown key \"%s\"", what, k);
    return 0;
}

/* 64 lowercase hex digits: a certificate id. */
static int cert_id_ok(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static int profile_key_check(const json_t *k, size_t i, struct error *err)
{
    static const char *const KEYS[] = { "pkcs12", "cert", "key",
                                        "password_file", NULL };
    if (!json_is_object(k))
        return error_set(err, "profile.keys[%zu] must be an object", i);
    if (json_object_get(k, "sealed"))
        return json_object_size(k) == 1 && cert_id_ok(flowfile_ref(k)) ? 0
               : error_set(err, "profile.keys[%zu]: \"sealed\" names a "
                           "stored key by its certificate id (64 hex "
                           "digits), alone", i);
    if (keys_only(k, KEYS, "profile.keys", err) < 0)
        return -1;
    const json_t *p12 = json_object_get(k, "pkcs12");
    const json_t *cert = json_object_get(k, "cert"), *key = json_object_get(k, "key");
    const json_t *pw = json_object_get(k, "password_file");
    if (p12 ? (cert || key) : (!cert || !key))
        return error_set(err, "profile.keys[%zu] needs \"pkcs12\" (with "
                         "\"password_file\") or \"cert\" and \"key\"", i);
    if (p12 && !pw)
        return error_set(err, "profile.keys[%zu]: a PKCS#12 file needs "
                         "password_file", i);
    if (flowfile_check("pkcs12", p12, 0, 0, err) < 0 ||
        flowfile_check("cert", cert, 0, 0, err) < 0 ||
        flowfile_check("key", key, 0, 0, err) < 0 ||
        flowfile_check("password_file", pw, 0, 0, err) < 0) {
        error_prefix(err, "profile.keys[%zu]", i);
        return -1;
    }
    return 0;
}

static int profile_check(const json_t *p, struct error *err)
{
    static const char *const KEYS[] = { "as2_id", "keys", NULL };
    if (!json_is_object(p))
        return error_set(err, "profile must be an object");
    if (keys_only(p, KEYS, "profile", err) < 0)
        return -1;
    if (!as2_id_ok(json_string_value(json_object_get(p, "as2_id"))))
        return error_set(err, "profile.as2_id must be 1..128 printable ASCII "
                         "characters without quotes or backslashes");
    const json_t *keys = json_object_get(p, "keys");
    if (!json_is_array(keys) || json_array_size(keys) == 0 ||
        json_array_size(keys) > PROFILE_KEYS_MAX)
        return error_set(err, "profile.keys must list 1..%d keys",
                         PROFILE_KEYS_MAX);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
        if (profile_key_check(k, i, err) < 0)
            return -1;
    return 0;
}

/* The file of a certificates[] entry: the entry itself, or its "file". */
static const json_t *cert_entry_file(const json_t *c)
{
    return json_object_get(c, "file") ? json_object_get(c, "file") : c;
}

static int cert_entry_check(const json_t *c, const char *who, size_t i,
                            struct error *err)
{
    static const char *const KEYS[] = { "file", "use_from", NULL };
    if (flowfile_check("certificate", cert_entry_file(c), 1, 0, NULL) < 0 ||
        (json_object_get(c, "file") &&
         keys_only(c, KEYS, "certificates", NULL) < 0))
        return error_set(err, "partner '%s': certificates[%zu] must be a "
                         "file (an absolute path, {\"content\": PEM} or "
                         "{\"base64\": DER}) or {\"file\": file, "
                         "\"use_from\": \"YYYY-MM-DDTHH:MM:SSZ\"}", who, i);
    const json_t *u = json_object_get(c, "use_from");
    if (u && utc_parse(json_string_value(u)) < 0)
        return error_set(err, "partner '%s': certificates[%zu].use_from must "
                         "look like 2027-01-31T00:00:00Z", who, i);
    return 0;
}

struct enum_key { const char *key; const char *const *values; };

static int partner_enums(const json_t *p, const char *who, struct error *err)
{
    static const struct enum_key E[] = { { "sign", SIGN },
        { "encrypt", ENCRYPT }, { "mdn", MDN },
        { "transfer_encoding", TRANSFER }, { "compress_order", ORDER },
        { "micalg_spelling", SPELLING } };
    for (size_t i = 0; i < sizeof(E) / sizeof(*E); i++) {
        const json_t *v = json_object_get(p, E[i].key);
        if (v && !one_of(json_string_value(v), E[i].values))
            return error_set(err, "partner '%s': %s must be one of the "
                             "documented values", who, E[i].key);
    }
    static const char *const BOOLS[] = { "compress", "mdn_signed",
        "accept_unsigned", "accept_unencrypted", "sign_pss", "encrypt_oaep",
        "canonicalize", "insecure", "allow_plain_mdn_url", "require_mic",
        "chunked", NULL };
    for (size_t i = 0; BOOLS[i]; i++) {
        const json_t *v = json_object_get(p, BOOLS[i]);
        if (v && !json_is_boolean(v))
            return error_set(err, "partner '%s': %s must be true or false",
                             who, BOOLS[i]);
    }
    const json_t *lv = json_object_get(p, "compress_level");
    if (lv && (!json_is_integer(lv) || json_integer_value(lv) < 1 ||
               json_integer_value(lv) > 9))
        return error_set(err, "partner '%s': compress_level must be 1 "
                         "(fastest) to 9 (smallest)", who);
    static const struct enum_key L[] = { { "allow_sign", SIGN },
                                         { "allow_encrypt", ENCRYPT } };
    for (size_t i = 0; i < sizeof(L) / sizeof(*L); i++) {
        const json_t *a = json_object_get(p, L[i].key), *v;
        size_t j;
        if (a && (!json_is_array(a) || json_array_size(a) > 8))
            return error_set(err, "partner '%s': %s must be a list", who,
                             L[i].key);
        json_array_foreach(a, j, v)
            if (!one_of(json_string_value(v), L[i].values))
                return error_set(err, "partner '%s': %s[%zu] is not a known "
                                 "algorithm", who, L[i].key, j);
    }
    return 0;
}

static int partner_urls(const json_t *p, const char *who, struct error *err)
{
    int insecure = json_is_true(json_object_get(p, "insecure"));
    const char *url = json_string_value(json_object_get(p, "url"));
    if (url == NULL || net_client_url_check(url, insecure, err) < 0) {
        if (url == NULL)
            error_set(err, "needs url");
        error_prefix(err, "partner '%s'", who);
        return -1;
    }
    const json_t *am = json_object_get(p, "async_mdn_url");
    if (am && (!json_is_string(am) ||
               net_client_url_check(json_string_value(am), insecure, err) < 0))
        return error_set(err, "partner '%s': async_mdn_url must be an "
                         "absolute https URL", who);
    const json_t *mdn = json_object_get(p, "mdn");
    if (mdn && !strcmp(json_string_value(mdn), "async") && !am)
        return error_set(err, "partner '%s': mdn \"async\" needs "
                         "async_mdn_url (where the partner sends it)", who);
    return 0;
}

static int partner_check(const json_t *p, size_t idx, struct error *err)
{
    static const char *const KEYS[] = { "name", "as2_id", "url",
        "certificates", "tls_ca", "sign", "encrypt", "compress", "mdn",
        "mdn_signed", "accept_unsigned", "accept_unencrypted", "allow_sign",
        "allow_encrypt", "async_mdn_url", "pin_sha256", "proxy", "sign_pss",
        "encrypt_oaep", "transfer_encoding", "canonicalize",
        "compress_order", "micalg_spelling", "insecure",
        "allow_plain_mdn_url", "require_mic", "compress_level", "chunked",
        "allow_from", NULL };
    if (!json_is_object(p))
        return error_set(err, "partners[%zu] must be an object", idx);
    const char *who = json_string_value(json_object_get(p, "name"));
    if (!name_ok(who))
        return error_set(err, "partners[%zu]: name must be 1-64 characters "
                         "of A-Z a-z 0-9 . _ -", idx);
    if (keys_only(p, KEYS, "partner", err) < 0)
        return error_prefix(err, "partner '%s'", who), -1;
    if (!as2_id_ok(json_string_value(json_object_get(p, "as2_id"))))
        return error_set(err, "partner '%s': as2_id must be 1..128 printable "
                         "ASCII characters without quotes or backslashes", who);
    const json_t *certs = json_object_get(p, "certificates"), *c;
    if (!json_is_array(certs) || json_array_size(certs) == 0 ||
        json_array_size(certs) > PARTNER_CERTS_MAX)
        return error_set(err, "partner '%s': certificates must list 1..%d "
                         "files", who, PARTNER_CERTS_MAX);
    size_t i;
    json_array_foreach(certs, i, c)
        if (cert_entry_check(c, who, i, err) < 0)
            return -1;
    if (flowfile_check("tls_ca", json_object_get(p, "tls_ca"), 0, 0, err) < 0)
        return error_prefix(err, "partner '%s'", who), -1;
    static const char *const STRS[] = { "pin_sha256", "proxy", NULL };
    for (i = 0; STRS[i]; i++)
        if (json_object_get(p, STRS[i]) &&
            !json_is_string(json_object_get(p, STRS[i])))
            return error_set(err, "partner '%s': %s must be a string", who,
                             STRS[i]);
    struct net_allow allow;
    if (net_allow_json(&allow, json_object_get(p, "allow_from"), err) < 0)
        return error_prefix(err, "partner '%s'", who), -1;
    return partner_enums(p, who, err) < 0 ? -1 : partner_urls(p, who, err);
}

static int partner_add(const json_t *p, struct store_flow *out,
                       struct error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *id = json_string_value(json_object_get(p, "as2_id"));
    for (size_t i = 0; i < out->npartners; i++) {
        if (!strcmp(out->partners[i].name, name))
            return error_set(err, "partner '%s' is defined twice", name);
        if (!strcmp(out->partners[i].as2_id, id))
            return error_set(err, "partners '%s' and '%s' have the same "
                             "as2_id", out->partners[i].name, name);
    }
    struct store_partner *sp = &out->partners[out->npartners++];
    sp->name = strdup(name);
    sp->as2_id = strdup(id);
    sp->config = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    return (sp->name && sp->as2_id && sp->config) ? 0
           : error_set(err, "out of memory");
}

int partners_parse(const json_t *root, struct store_flow *out,
                   struct error *err)
{
    const json_t *prof = json_object_get(root, "profile");
    const json_t *parts = json_object_get(root, "partners");
    if (prof) {
        if (profile_check(prof, err) < 0)
            return -1;
        if ((out->profile = json_dumps(prof, JSON_COMPACT | JSON_SORT_KEYS))
            == NULL)
            return error_set(err, "out of memory");
    }
    if (parts == NULL)
        return 0;
    if (!json_is_array(parts) || json_array_size(parts) > PARTNERS_MAX)
        return error_set(err, "partners must be a list of at most %d",
                         PARTNERS_MAX);
    out->partners = calloc(json_array_size(parts) + 1, sizeof(*out->partners));
    if (out->partners == NULL)
        return error_set(err, "out of memory");
    size_t i;
    json_t *p;
    json_array_foreach(parts, i, p)
        if (partner_check(p, i, err) < 0 || partner_add(p, out, err) < 0)
            return -1;
    const char *own = prof ? json_string_value(json_object_get(prof, "as2_id"))
                           : NULL;
    for (i = 0; own && i < out->npartners; i++)
        if (strcmp(out->partners[i].as2_id, own) == 0)
            return error_set(err, "partner '%s' has the profile's own as2_id",
                             out->partners[i].name);
    return 0;
}

int partners_has(const struct store_flow *f, const char *name)
{
    for (size_t i = 0; name && i < f->npartners; i++)
        if (strcmp(f->partners[i].name, name) == 0)
            return 1;
    return 0;
}

/* ---- loading (import time) ---------------------------------------------- */

static int64_t asn1_ms(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

/* A certificate from PEM or DER bytes; NULL with err. */
static X509 *cert_parse(const char *what, const unsigned char *buf, size_t len,
                        struct error *err)
{
    BIO *b = BIO_new_mem_buf(buf, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (x == NULL) {
        const unsigned char *p = buf;
        x = d2i_X509(NULL, &p, (long)len);
    }
    BIO_free(b);
    if (x == NULL)
        error_set(err, "%s is not a certificate (PEM or DER)", what);
    return x;
}

/* The certificate a flow file value v gives (flowfile.h); NULL with err. */
static X509 *cert_read(const char *what, const json_t *v,
                       enum flow_origin origin, struct error *err)
{
    struct secret *b = flowfile_read(what, v, origin, 0, CERT_FILE_MAX, err);
    X509 *x = b ? cert_parse(what, secret_data(b), secret_len(b), err) : NULL;
    secret_free(b);
    return x;
}

/* {"content": PEM of x} (new reference), or NULL. */
static json_t *cert_content(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long len;
    json_t *v = NULL;
    if (b && PEM_write_bio_X509(b, x) == 1 &&
        (len = BIO_get_mem_data(b, &data)) > 0)
        v = flowfile_content(data, (size_t)len);
    BIO_free(b);
    return v;
}

/* tls_ca as {"content": PEM}: read now, checked to hold a certificate. */
static json_t *ca_content(const json_t *v, enum flow_origin origin,
                          struct error *err)
{
    struct secret *b = flowfile_read("tls_ca", v, origin, 0, CERT_FILE_MAX,
                                     err);
    X509 *x = b ? cert_parse("tls_ca", secret_data(b), secret_len(b), err)
                : NULL;
    json_t *out = NULL;
    if (x && memmem(secret_data(b), secret_len(b), "-----BEGIN", 10) == NULL)
        error_set(err, "tls_ca must be PEM (a bundle of certificates)");
    else if (x)
        out = flowfile_content((const char *)secret_data(b), secret_len(b));
    X509_free(x);
    secret_free(b);
    return out;
}

/* Fill row c from certificate x (owner and key set by the caller). */
static int cert_row(X509 *x, const char *owner, int64_t use_from,
                    struct store_cert *c, struct error *err)
{
    memset(c, 0, sizeof(*c));
    unsigned char md[32];
    int n = i2d_X509(x, NULL);
    if (n <= 0 || (c->der = malloc((size_t)n)) == NULL)
        return error_set(err, "cannot encode a certificate");
    unsigned char *p = c->der;
    c->der_len = (size_t)i2d_X509(x, &p);
    EVP_Digest(c->der, c->der_len, md, NULL, EVP_sha256(), NULL);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(c->id + 2 * i, 3, "%02x", md[i]);
    char subj[512];
    X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
    c->subject = strdup(subj);
    c->owner = strdup(owner);
    c->not_before = asn1_ms(X509_get0_notBefore(x));
    c->not_after = asn1_ms(X509_get0_notAfter(x));
    c->use_from = use_from;
    return (c->subject && c->owner) ? 0 : error_set(err, "out of memory");
}

static struct store_cert *cert_slot(struct store_flow *f, struct error *err)
{
    struct store_cert *grown = realloc(f->certs, (f->ncerts + 1) *
                                       sizeof(*grown));
    if (grown == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    f->certs = grown;
    memset(&grown[f->ncerts], 0, sizeof(*grown));
    return &grown[f->ncerts++];
}

/* Read certificates[i] of a partner into a row, and write the entry back
 * as the PEM it gave (so an export needs no file). */
static int partner_cert_one(struct store_flow *f, const char *owner,
                            json_t *certs, size_t i, enum flow_origin origin,
                            struct error *err)
{
    json_t *c = json_array_get(certs, i);
    const json_t *u = json_object_get(c, "use_from");
    X509 *x = cert_read("certificate", cert_entry_file(c), origin, err);
    struct store_cert *row = x ? cert_slot(f, err) : NULL;
    int rc = row ? cert_row(x, owner, u ? utc_parse(json_string_value(u)) : 0,
                            row, err) : -1;
    json_t *pem = rc == 0 ? cert_content(x) : NULL;
    X509_free(x);
    if (rc < 0)
        return -1;
    if (pem == NULL)
        return error_set(err, "cannot encode a certificate");
    json_t *entry = u ? json_pack("{s:o, s:O}", "file", pem, "use_from", u)
                      : pem;
    return json_array_set_new(certs, i, entry) == 0 ? 0
           : error_set(err, "out of memory");
}

static int partner_certs_load(struct store_flow *f, struct store_partner *p,
                              enum flow_origin origin, struct error *err)
{
    json_error_t je;
    json_t *cfg = json_loads(p->config, 0, &je);
    json_t *certs = json_object_get(cfg, "certificates");
    int rc = cfg ? 0 : error_set(err, "partner '%s': bad config", p->name);
    for (size_t i = 0; rc == 0 && i < json_array_size(certs); i++)
        rc = partner_cert_one(f, p->name, certs, i, origin, err);
    const json_t *ca = json_object_get(cfg, "tls_ca");
    if (rc == 0 && ca) {
        json_t *pem = ca_content(ca, origin, err);
        rc = pem ? json_object_set_new(cfg, "tls_ca", pem) : -1;
    }
    char *text = rc == 0 ? json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS)
                         : NULL;
    json_decref(cfg);
    if (rc < 0) {
        error_prefix(err, "partner '%s'", p->name);
        return -1;
    }
    if (text == NULL)
        return error_set(err, "out of memory");
    free(p->config);
    p->config = text;
    return 0;
}

/* The key and certificate of one profile entry; 0 or -1 with err. */
static int profile_pair(const json_t *k, enum flow_origin origin,
                        EVP_PKEY **pkey, X509 **x, struct error *err)
{
    const json_t *pwf = json_object_get(k, "password_file");
    struct secret *pw = pwf ? flowfile_read("password_file", pwf, origin, 1,
                                            SEAL_PLAIN_MAX, err) : NULL;
    if (pwf && pw == NULL)
        return -1;
    /* a NUL-terminated copy of the password for OpenSSL */
    struct secret *pz = pw ? secret_new(secret_len(pw) + 1) : NULL;
    if (pz)
        memcpy(secret_data_mut(pz), secret_data(pw), secret_len(pw));
    secret_free(pw);
    const char *pass = pz ? (const char *)secret_data(pz) : NULL;
    const json_t *p12 = json_object_get(k, "pkcs12");
    struct secret *kb = flowfile_read(p12 ? "pkcs12" : "key",
                                      p12 ? p12 : json_object_get(k, "key"),
                                      origin, 0, CERT_FILE_MAX, err);
    const unsigned char *buf = kb ? secret_data(kb) : NULL;
    size_t len = kb ? secret_len(kb) : 0;
    int rc = kb ? 0 : -1;
    if (rc == 0 && p12) {
        const unsigned char *p = buf;
        PKCS12 *pk = d2i_PKCS12(NULL, &p, (long)len);
        if (pk == NULL || PKCS12_parse(pk, pass ? pass : "", pkey, x, NULL) != 1)
            rc = error_set(err, "pkcs12: not a PKCS#12 file or wrong password");
        PKCS12_free(pk);
    } else if (rc == 0) {
        BIO *b = BIO_new_mem_buf(buf, (int)len);
        *pkey = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)pass) : NULL;
        BIO_free(b);
        const unsigned char *p = buf;
        if (*pkey == NULL)
            *pkey = d2i_AutoPrivateKey(NULL, &p, (long)len);
        if (*pkey == NULL)
            rc = error_set(err, "key is not a private key (PEM or DER), or "
                           "its password is wrong");
        else if ((*x = cert_read("cert", json_object_get(k, "cert"), origin,
                                 err)) == NULL)
            rc = -1;
    }
    secret_free(kb);
    secret_free(pz);
    if (rc == 0 && (*pkey == NULL || *x == NULL || X509_check_private_key(*x,
                                                                *pkey) != 1))
        rc = error_set(err, "the private key does not match its certificate");
    return rc;
}

/* Seal pkey (PKCS#8 DER) into row->key with context "profile-key:ID". */
static int key_seal(struct wharf *w, EVP_PKEY *pkey, struct store_cert *row,
                    struct error *err)
{
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(pkey, &der);
    if (n <= 0)
        return error_set(err, "cannot encode the private key");
    struct secret *s = secret_from(der, (size_t)n);
    OPENSSL_clear_free(der, (size_t)n);
    if (s == NULL)
        return error_set(err, "out of memory");
    char ctx[100];
    snprintf(ctx, sizeof(ctx), "profile-key:%s", row->id);
    int rc = vault_seal(w->vault, ctx, s, &row->key, &row->key_len, err);
    secret_free(s);
    return rc;
}

/* Copy the stored profile key whose certificate id is id into a row of f
 * (an import of what export wrote: {"sealed": ID}). */
static int profile_key_keep(struct store *st, struct store_flow *f,
                            const char *id, struct error *err)
{
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, "", 1, &c, &n, err) < 0)
        return -1;
    int rc = error_set(err, "this data directory holds no profile key with "
                       "certificate id %s: give the key again", id);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].id, id) != 0 || c[i].key == NULL)
            continue;
        struct store_cert *row = cert_slot(f, err);
        rc = row ? 0 : -1;
        if (row) {      /* move the row's buffers over */
            *row = c[i];
            memset(&c[i], 0, sizeof(c[i]));
            c[i].owner = NULL;
        }
        break;
    }
    store_certs_free(c, n);
    return rc;
}

/* Read, check and seal one profile key into a new row of f; *id gets its
 * certificate id. */
static int profile_key_read(struct wharf *w, struct store_flow *f,
                            const json_t *k, enum flow_origin origin,
                            char id[65], struct error *err)
{
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    struct store_cert *row = NULL;
    int rc = profile_pair(k, origin, &pkey, &x, err);
    if (rc == 0 && (row = cert_slot(f, err)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = cert_row(x, "", 0, row, err);
    if (rc == 0)
        rc = key_seal(w, pkey, row, err);
    if (rc == 0)
        memcpy(id, row->id, 65);
    EVP_PKEY_free(pkey);
    X509_free(x);
    return rc;
}

static int profile_load(struct wharf *w, struct store *st,
                        struct store_flow *f, enum flow_origin origin,
                        struct error *err)
{
    json_error_t je;
    json_t *prof = json_loads(f->profile, 0, &je);
    json_t *keys = json_object_get(prof, "keys");
    int rc = prof ? 0 : error_set(err, "profile: bad JSON");
    for (size_t i = 0; rc == 0 && i < json_array_size(keys); i++) {
        json_t *k = json_array_get(keys, i);
        char id[65];
        const char *ref = flowfile_ref(k);
        rc = ref ? profile_key_keep(st, f, ref, err)
                 : profile_key_read(w, f, k, origin, id, err);
        if (rc == 0 && !ref)
            rc = json_array_set_new(keys, i, flowfile_sealed(id));
        if (rc < 0)
            error_prefix(err, "profile.keys[%zu]", i);
    }
    char *text = rc == 0 ? json_dumps(prof, JSON_COMPACT | JSON_SORT_KEYS)
                         : NULL;
    json_decref(prof);
    if (rc == 0 && text == NULL)
        rc = error_set(err, "out of memory");
    if (rc == 0) {
        free(f->profile);
        f->profile = text;
    }
    return rc;
}

int partners_load(struct wharf *w, struct store *st, struct store_flow *f,
                  enum flow_origin origin, struct error *err)
{
    if (f->profile && profile_load(w, st, f, origin, err) < 0)
        return -1;
    for (size_t i = 0; i < f->npartners; i++)
        if (partner_certs_load(f, &f->partners[i], origin, err) < 0)
            return -1;
    return 0;
}

/* ---- listing and adding (CLI and API share these) ------------------------ */

static void utc_format(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *partners_cert_json(const struct store_cert *c, int64_t now_ms)
{
    char nb[32], na[32], uf[32] = "";
    utc_format(c->not_before, nb, sizeof(nb));
    utc_format(c->not_after, na, sizeof(na));
    if (c->use_from)
        utc_format(c->use_from, uf, sizeof(uf));
    const char *status = now_ms > c->not_after ? "expired"
                       : now_ms < c->not_before ? "not yet valid"
                       : c->not_after - now_ms < 30LL * 86400000 ? "expiring"
                       : "valid";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s, s:b, s:I}",
        "id", c->id, "owner", c->owner[0] ? c->owner : "(profile)",
        "subject", c->subject, "not_before", nb, "not_after", na,
        "use_from", uf[0] ? uf : NULL, "status", status,
        "private_key", c->key != NULL || c->owner[0] == '\0',
        "days_left", (json_int_t)((c->not_after - now_ms) / 86400000));
}

json_t *partners_certs_json(struct store *st, struct error *err)
{
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, NULL, 0, &c, &n, err) < 0)
        return NULL;
    json_t *arr = json_array();
    int64_t now = (int64_t)time(NULL) * 1000;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, partners_cert_json(&c[i], now));
    store_certs_free(c, n);
    return arr;
}

json_t *partners_list_json(struct store *st, struct error *err)
{
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    json_t *out = json_object(), *arr = json_array();
    json_error_t je;
    if (f.profile)
        json_object_set_new(out, "profile", json_loads(f.profile, 0, &je));
    for (size_t i = 0; i < f.npartners; i++)
        json_array_append_new(arr, json_loads(f.partners[i].config, 0, &je));
    json_object_set_new(out, "partners", arr);
    store_flow_clear(&f);
    return out;
}

char *partners_cert_pem(struct store *st, const char *id, struct error *err)
{
    struct store_cert *c;
    size_t n, hits = 0, at = 0;
    if (strlen(id) < 8)
        return error_set(err, "give at least 8 characters of the id"), NULL;
    if (store_certs_list(st, NULL, 0, &c, &n, err) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(c[i].id, id, strlen(id)) == 0) {
            hits++;
            at = i;
        }
    char *pem = NULL;
    if (hits != 1) {
        error_set(err, hits ? "id %s is ambiguous" : "no certificate %s", id);
    } else {
        const unsigned char *p = c[at].der;
        X509 *x = d2i_X509(NULL, &p, (long)c[at].der_len);
        BIO *b = BIO_new(BIO_s_mem());
        char *data;
        long len;
        if (x && b && PEM_write_bio_X509(b, x) == 1 &&
            (len = BIO_get_mem_data(b, &data)) > 0 &&
            (pem = strndup(data, (size_t)len)) == NULL)
            error_set(err, "out of memory");
        if (pem == NULL && err && err->msg[0] == '\0')
            error_set(err, "stored certificate %s cannot be encoded", id);
        BIO_free(b);
        X509_free(x);
    }
    store_certs_free(c, n);
    return pem;
}

/* Append entry (stolen) to the array `key` of the JSON object text; NULL
 * on error. */
static char *config_append(const char *text, const char *key, json_t *entry)
{
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    json_t *a = json_object_get(o, key);
    char *out = NULL;
    if (json_is_array(a) && json_array_append_new(a, entry) == 0)
        out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    else
        json_decref(entry);
    json_decref(o);
    return out;
}

static int import_partner_cert(struct store *st, const struct store_flow *f,
                               const char *partner, const json_t *entry,
                               enum flow_origin origin, struct error *err)
{
    const struct store_partner *p = NULL;
    for (size_t i = 0; i < f->npartners; i++)
        if (strcmp(f->partners[i].name, partner) == 0)
            p = &f->partners[i];
    if (p == NULL)
        return error_set(err, "no partner named '%s'", partner);
    if (cert_entry_check(entry, partner, 0, err) < 0)
        return -1;
    const json_t *u = json_object_get(entry, "use_from");
    X509 *x = cert_read("certificate", cert_entry_file(entry), origin, err);
    struct store_cert row;
    int rc = x ? cert_row(x, partner, u ? utc_parse(json_string_value(u)) : 0,
                          &row, err) : -1;
    json_t *pem = rc == 0 ? cert_content(x) : NULL;
    X509_free(x);
    if (rc < 0)
        return -1;
    json_t *e = pem && u ? json_pack("{s:o, s:O}", "file", pem, "use_from", u)
                         : pem;
    char *cfg = e ? config_append(p->config, "certificates", e) : NULL;
    rc = cfg ? store_cert_add(st, &row, cfg, err)
             : error_set(err, "out of memory");
    free(cfg);
    store_cert_clear(&row);
    return rc;
}

static int import_profile_key(struct wharf *w, struct store *st,
                              const struct store_flow *f, const json_t *entry,
                              enum flow_origin origin, struct error *err)
{
    if (f->profile == NULL)
        return error_set(err, "there is no profile yet: import a flow "
                         "document with \"profile\" first");
    if (profile_key_check(entry, 0, err) < 0)
        return -1;
    if (flowfile_ref(entry))
        return error_set(err, "give the key itself, not a sealed reference");
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    struct store_cert row;
    memset(&row, 0, sizeof(row));
    int rc = profile_pair(entry, origin, &pkey, &x, err);
    if (rc == 0)
        rc = cert_row(x, "", 0, &row, err);
    if (rc == 0)
        rc = key_seal(w, pkey, &row, err);
    EVP_PKEY_free(pkey);
    X509_free(x);
    char *cfg = rc == 0 ? config_append(f->profile, "keys",
                                        flowfile_sealed(row.id)) : NULL;
    if (rc == 0)
        rc = cfg ? store_cert_add(st, &row, cfg, err)
                 : error_set(err, "out of memory");
    free(cfg);
    store_cert_clear(&row);
    return rc;
}

int partners_cert_import(struct wharf *w, struct store *st,
                         const char *partner, const json_t *entry,
                         enum flow_origin origin, struct error *err)
{
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return -1;
    int rc = partner ? import_partner_cert(st, &f, partner, entry, origin, err)
                     : import_profile_key(w, st, &f, entry, origin, err);
    store_flow_clear(&f);
    return rc;
}
