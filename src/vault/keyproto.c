/*
 * keyproto.c - framing and field checks of the key process protocol (see
 * keyproto.h): the one place that says which request types exist and the
 * exact sizes of each of their fields and of their replies.
 *
 * It owns nothing (fields point into the caller's buffer) and must never
 * accept a frame it does not fully understand: unknown types, oversize
 * lengths, missing, extra or out-of-range fields and trailing bytes are all
 * errors. It is the decoder the fuzz target tests/fuzz/fuzz_keyproto.c
 * drives.
 */
#include "vault/keyproto.h"

#include <string.h>
#include <strings.h>

struct kp_range {
    uint32_t min, max;
};

/* One request type: its name, its request fields and its reply fields. */
struct kp_spec {
    const char *name;
    size_t nreq;
    struct kp_range req[KEYPROTO_MAX_FIELDS];
    size_t nrep;
    struct kp_range rep[KEYPROTO_MAX_FIELDS];
};

#define R(a, b) { (a), (b) }
#define CTX R(1, KP_CONTEXT_MAX)
#define BLOB R(KP_BLOB_OVERHEAD, KP_BLOB_OVERHEAD + KP_SECRET_MAX)
#define EXACT(n) R((n), (n))

static const struct kp_spec kp_specs[KP_TYPE_MAX + 1] = {
    [KP_HELLO] = { "hello", 0, {{0, 0}}, 1, { EXACT(KP_KEYID_LEN) } },
    [KP_SEAL] = { "seal", 2, { CTX, R(0, KP_SECRET_MAX) }, 1, { BLOB } },
    [KP_UNSEAL] = { "unseal", 2, { CTX, BLOB }, 1, { R(0, KP_SECRET_MAX) } },
    [KP_WRAP] = { "wrap", 3, { R(1, KP_MSGID_MAX), EXACT(KP_HEADER_LEN),
                               EXACT(KP_DKEY_LEN) },
                  1, { EXACT(KP_HEADER_LEN) } },
    [KP_UNWRAP] = { "unwrap", 2, { R(1, KP_MSGID_MAX),
                                   EXACT(KP_HEADER_LEN) },
                    1, { EXACT(KP_DKEY_LEN) } },
    [KP_AUDIT_SIGN] = { "audit-sign", 1, { R(0, KP_AUDIT_TEXT_MAX) },
                        2, { EXACT(KP_KEYID_LEN), EXACT(KP_AUDIT_SIG_LEN) } },
    [KP_AUDIT_VERIFY] = { "audit-verify", 3,
                          { EXACT(KP_KEYID_LEN), EXACT(KP_AUDIT_SIG_LEN),
                            R(0, KP_AUDIT_TEXT_MAX) }, 0, {{0, 0}} },
    [KP_KEY_LOAD] = { "key-load", 2, { CTX, BLOB },
                      2, { EXACT(KP_HANDLE_LEN), R(1, KP_SPKI_MAX) } },
    [KP_KEY_TLS] = { "key-tls", 1, { R(1, KP_PATH_MAX) },
                     2, { EXACT(KP_HANDLE_LEN), R(1, KP_SPKI_MAX) } },
    [KP_KEY_SIGN] = { "key-sign", 3, { EXACT(KP_HANDLE_LEN),
                                       EXACT(KP_PARAMS_LEN),
                                       R(KP_DIGEST_MIN, KP_DIGEST_MAX) },
                      1, { R(1, KP_SIG_MAX) } },
    [KP_KEY_DECRYPT] = { "key-decrypt", 4, { EXACT(KP_HANDLE_LEN),
                                             EXACT(KP_PARAMS_LEN),
                                             R(0, KP_LABEL_MAX),
                                             R(1, KP_CIPHER_MAX) },
                         1, { R(0, KP_CIPHER_MAX) } },
    [KP_KEY_CLIENT] = { "key-client", 2, { R(1, KP_CONN_NAME_MAX), BLOB },
                        2, { EXACT(KP_HANDLE_LEN), R(1, KP_SPKI_MAX) } },
    [KP_KEY_SSH] = { "key-ssh", 3, { R(1, KP_CONN_NAME_MAX), BLOB,
                                     R(0, KP_BLOB_OVERHEAD + KP_SECRET_MAX) },
                     2, { EXACT(KP_HANDLE_LEN), R(1, KP_SSH_PUB_MAX) } },
    [KP_SSH_SIGN] = { "ssh-sign", 3, { EXACT(KP_HANDLE_LEN), EXACT(4),
                                       R(1, KP_SSH_DATA_MAX) },
                      1, { R(1, KP_SSH_SIG_MAX) } },
};

static const struct kp_spec kp_err_spec = {
    "error", 1, { R(1, ERROR_MSG_MAX) }, 0, {{0, 0}}
};

void keyproto_u32_put(uint32_t v, unsigned char *out)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

uint32_t keyproto_u32_get(const unsigned char *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
           (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

void keyproto_hdr_put(const struct keyproto_hdr *h, unsigned char *out)
{
    keyproto_u32_put(h->type, out);
    keyproto_u32_put(h->len, out + 4);
    keyproto_u32_put((uint32_t)(h->id >> 32), out + 8);
    keyproto_u32_put((uint32_t)h->id, out + 12);
}

int keyproto_hdr_get(const unsigned char *in, int reply,
                     struct keyproto_hdr *h, struct error *err)
{
    h->type = keyproto_u32_get(in);
    h->len = keyproto_u32_get(in + 4);
    h->id = (uint64_t)keyproto_u32_get(in + 8) << 32 |
            keyproto_u32_get(in + 12);
    int known = reply ? (h->type == KP_OK || h->type == KP_ERR)
                      : (h->type >= KP_HELLO && h->type <= KP_TYPE_MAX);
    if (!known)
        return error_set(err, "key process protocol: unknown %s type %u",
                         reply ? "reply" : "request", (unsigned)h->type);
    if (h->len > KEYPROTO_BODY_MAX)
        return error_set(err, "key process protocol: frame of %u bytes is "
                         "over the limit of %d", (unsigned)h->len,
                         KEYPROTO_BODY_MAX);
    return 0;
}

/* Split body into exactly n fields within the ranges r[]. */
static int kp_fields(const char *name, const struct kp_range *r, size_t n,
                     const unsigned char *body, size_t len,
                     struct keyproto_field *f, struct error *err)
{
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (len - off < 4)
            return error_set(err, "key process protocol: %s: field %zu is "
                             "missing", name, i + 1);
        uint32_t flen = keyproto_u32_get(body + off);
        off += 4;
        if (flen < r[i].min || flen > r[i].max || flen > len - off)
            return error_set(err, "key process protocol: %s: field %zu has "
                             "a bad length (%u bytes)", name, i + 1,
                             (unsigned)flen);
        f[i].p = body + off;
        f[i].n = flen;
        off += flen;
    }
    if (off != len)
        return error_set(err, "key process protocol: %s: %zu bytes after "
                         "the last field", name, len - off);
    return 0;
}

int keyproto_parse(uint32_t type, int reply, const unsigned char *body,
                   size_t len, struct keyproto_field *f, size_t *nf,
                   struct error *err)
{
    *nf = 0;
    if (len > KEYPROTO_BODY_MAX || (len > 0 && body == NULL))
        return error_set(err, "key process protocol: frame too large");
    const struct kp_spec *s = NULL;
    if (reply == 2)
        s = &kp_err_spec;
    else if (type >= KP_HELLO && type <= KP_TYPE_MAX)
        s = &kp_specs[type];
    if (s == NULL)
        return error_set(err, "key process protocol: unknown type %u",
                         (unsigned)type);
    size_t n = reply == 1 ? s->nrep : s->nreq;
    const struct kp_range *r = reply == 1 ? s->rep : s->req;
    if (kp_fields(s->name, r, n, body, len, f, err) != 0)
        return -1;
    *nf = n;
    return 0;
}

int keyproto_put(unsigned char *buf, size_t cap, size_t *off, const void *p,
                 size_t n)
{
    if (*off > cap || cap - *off < 4 || cap - *off - 4 < n || n > UINT32_MAX)
        return -1;
    keyproto_u32_put((uint32_t)n, buf + *off);
    if (n > 0)
        memcpy(buf + *off + 4, p, n);
    *off += 4 + n;
    return 0;
}

void keyproto_params_put(const struct keyproto_params *p, unsigned char *out)
{
    keyproto_u32_put(p->md, out);
    keyproto_u32_put(p->pad, out + 4);
    keyproto_u32_put((uint32_t)p->saltlen, out + 8);
    keyproto_u32_put(p->mgf1, out + 12);
}

int keyproto_params_get(const unsigned char *in, struct keyproto_params *p,
                        struct error *err)
{
    p->md = keyproto_u32_get(in);
    p->pad = keyproto_u32_get(in + 4);
    p->saltlen = (int32_t)keyproto_u32_get(in + 8);
    p->mgf1 = keyproto_u32_get(in + 12);
    if (p->md > KP_MD_MAX || p->mgf1 > KP_MD_MAX || p->pad > KP_PAD_MAX)
        return error_set(err, "key process protocol: unknown digest or "
                         "padding in a key operation");
    if (p->saltlen < -1 || p->saltlen > KP_SIG_MAX)
        return error_set(err, "key process protocol: bad PSS salt length");
    return 0;
}

static const struct {
    const char *name;
    size_t size;
} kp_mds[KP_MD_MAX + 1] = {
    [KP_MD_NONE] = { NULL, 0 },     [KP_MD_SHA1] = { "SHA1", 20 },
    [KP_MD_SHA224] = { "SHA224", 28 }, [KP_MD_SHA256] = { "SHA256", 32 },
    [KP_MD_SHA384] = { "SHA384", 48 }, [KP_MD_SHA512] = { "SHA512", 64 },
};

const char *keyproto_md_name(uint32_t md)
{
    return md <= KP_MD_MAX ? kp_mds[md].name : NULL;
}

size_t keyproto_md_size(uint32_t md)
{
    return md <= KP_MD_MAX ? kp_mds[md].size : 0;
}

uint32_t keyproto_md_from_name(const char *name)
{
    static const struct {
        const char *alias;
        uint32_t md;
    } aliases[] = {
        { "SHA-1", KP_MD_SHA1 }, { "SHA2-224", KP_MD_SHA224 },
        { "SHA-224", KP_MD_SHA224 }, { "SHA2-256", KP_MD_SHA256 },
        { "SHA-256", KP_MD_SHA256 }, { "SHA2-384", KP_MD_SHA384 },
        { "SHA-384", KP_MD_SHA384 }, { "SHA2-512", KP_MD_SHA512 },
        { "SHA-512", KP_MD_SHA512 },
    };
    if (name == NULL)
        return KP_MD_NONE;
    for (uint32_t i = 1; i <= KP_MD_MAX; i++)
        if (strcasecmp(name, kp_mds[i].name) == 0)
            return i;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].md;
    return KP_MD_NONE;
}
