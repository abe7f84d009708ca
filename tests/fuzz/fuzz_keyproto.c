/*
 * fuzz_keyproto.c - libFuzzer target for the key process's request decoder
 * (src/vault/keyproto.c): the header check and the exact field lists that
 * the key process (keysrv.c) applies to every frame from the
 * network-facing process, which it must assume compromised.
 *
 * Input: a frame as it arrives (16-byte header, then the body). Oracles
 * beyond the sanitizers: an accepted header names a known request type and
 * a length within KEYPROTO_BODY_MAX; an accepted body has exactly the
 * fields of its type, each inside the body, and re-encoding them gives the
 * body byte for byte (no second spelling of a request); an accepted params
 * field names only known digests and paddings; an accepted key-client
 * request (an http connector's client certificate key) has a connector
 * name of 1 to KP_CONN_NAME_MAX bytes and a blob no shorter than a sealed
 * value. Replies are decoded the same way (the client's side).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vault/keyproto.h"

static void fuzz_reencode(const unsigned char *body, size_t len,
                          const struct keyproto_field *f, size_t nf)
{
    static unsigned char out[KEYPROTO_BODY_MAX];
    size_t off = 0;
    for (size_t i = 0; i < nf; i++) {
        if (f[i].p < body || f[i].p + f[i].n > body + len)
            abort();
        if (keyproto_put(out, sizeof(out), &off, f[i].p, f[i].n) != 0)
            abort();
    }
    if (off != len || (len > 0 && memcmp(out, body, len) != 0))
        abort();
}

static void fuzz_body(uint32_t type, int reply, const unsigned char *body,
                      size_t len)
{
    struct keyproto_field f[KEYPROTO_MAX_FIELDS];
    size_t nf = 0;
    struct error err = {0};
    if (keyproto_parse(type, reply, body, len, f, &nf, &err) != 0)
        return;
    fuzz_reencode(body, len, f, nf);
    if (reply == 0 && type == KP_KEY_CLIENT &&
        (nf != 2 || f[0].n < 1 || f[0].n > KP_CONN_NAME_MAX ||
         f[1].n < KP_BLOB_OVERHEAD))
        abort();
    if (reply == 1 && type == KP_KEY_CLIENT && (nf != 2 ||
                                                f[0].n != KP_HANDLE_LEN))
        abort();
    if (reply == 0 && (type == KP_KEY_SIGN || type == KP_KEY_DECRYPT)) {
        struct keyproto_params p;
        if (f[1].n != KP_PARAMS_LEN)
            abort();
        if (keyproto_params_get(f[1].p, &p, &err) == 0 &&
            (p.md > KP_MD_MAX || p.mgf1 > KP_MD_MAX || p.pad > KP_PAD_MAX))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct keyproto_hdr h;
    struct error err = {0};
    if (size < KEYPROTO_HDR_LEN)
        return 0;
    const unsigned char *body = data + KEYPROTO_HDR_LEN;
    size_t len = size - KEYPROTO_HDR_LEN;
    if (keyproto_hdr_get(data, 0, &h, &err) == 0) {
        if (h.type < KP_HELLO || h.type > KP_TYPE_MAX ||
            h.len > KEYPROTO_BODY_MAX)
            abort();
        fuzz_body(h.type, 0, body, len < h.len ? len : h.len);
    }
    if (keyproto_hdr_get(data, 1, &h, &err) == 0) {
        uint32_t req = data[size - 1] % (KP_TYPE_MAX + 1);
        fuzz_body(req, h.type == KP_ERR ? 2 : 1, body, len);
    }
    return 0;
}
