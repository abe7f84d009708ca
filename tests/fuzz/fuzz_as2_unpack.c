/*
 * fuzz_as2_unpack.c - libFuzzer target for as2_unpack (src/as2/message*.c):
 * a whole received AS2 request, the input being its HTTP header block,
 * an empty line and the body. AS2-From, AS2-To and Message-ID are added
 * when the input lacks them, so mutations reach the body. The policy
 * holds fixed test keys (fuzz_as2_keys.h: 1024-bit RSA made for the fuzz
 * targets only, so private-key operations stay cheap), allows every
 * algorithm and bounds the payload at 1 MiB.
 *
 * Besides the sanitizers it checks (abort() on violation):
 *   - success: a MIC, the payload byte count equal to what was written and
 *     within the limit, at most three layers, a filename without '/',
 *     '\\' or control characters, and an MDN that can be built (signed
 *     with the test key when the sender asked for it);
 *   - failure: a named RFC 4130 MDN error (or the unsupported-MIC-algorithm
 *     failure), no MIC, and an error sentence.
 * Seeds: tests/fuzz/corpus/as2_unpack/ (messages packaged with these keys).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "as2/message.h"
#include "fuzz_as2_keys.h"

#define MAX_PAYLOAD (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    load_as2_keys();
    return 0;
}

static void check_success(const struct as2_unpacked *info, BIO *payload)
{
    char *p;
    long n = BIO_get_mem_data(payload, &p);
    if (info->mic[0] == '\0' || n < 0 || (uint64_t)n != info->payload_bytes ||
        info->payload_bytes > MAX_PAYLOAD || info->nlayers > 3 ||
        info->mdn_error != MDN_ERROR_NONE)
        abort();
    for (const char *q = info->filename; *q; q++)
        if (*q == '/' || *q == '\\' || (unsigned char)*q < 0x20)
            abort();
    struct as2_signer s = {bob_cert, bob_key, AS2_DIGEST_SHA256,
                           AS2_SIG_PKCS1};
    struct as2_mdn_opts mo = {NULL, "fuzz", &s, NULL};
    struct as2_mdn_built built;
    struct error err;
    BIO *out = BIO_new(BIO_s_mem());
    if (out == NULL)
        return;
    if (as2_mdn_make(&mo, info, MDN_ERROR_NONE, NULL, out, &built,
                     &err) != 0)
        abort();
    as2_mdn_built_free(&built);
    BIO_free(out);
}

static void check_failure(const struct as2_unpacked *info,
                          const struct error *err)
{
    if (info->mic[0] != '\0' || err->msg[0] == '\0')
        abort();
    if (info->unsupported_micalg ? info->mdn_error != MDN_ERROR_NONE
                                 : mdn_error_name(info->mdn_error) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mime_headers h;
    size_t off = 0;
    mime_headers_init(&h);
    if (mime_headers_parse(&h, (const char *)data, size, &off, NULL) != 0) {
        mime_headers_free(&h);
        return 0;
    }
    if (mime_header_get(&h, "AS2-From") == NULL)
        mime_headers_add(&h, "AS2-From", "alice", NULL);
    if (mime_header_get(&h, "AS2-To") == NULL)
        mime_headers_add(&h, "AS2-To", "bob", NULL);
    if (mime_header_get(&h, "Message-ID") == NULL)
        mime_headers_add(&h, "Message-ID", "<fuzz@wharf>", NULL);

    struct as2_key keys[] = {{bob_key, bob_cert}};
    X509 *certs[] = {alice_cert};
    struct as2_policy pol = {0};
    pol.partner = "alice";
    pol.keys = keys;
    pol.nkeys = 1;
    pol.certs = certs;
    pol.ncerts = 1;
    pol.digests = AS2_DIGEST_BIT(AS2_DIGEST_SHA1) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA256) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA384) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA512);
    pol.ciphers = 0xffu;
    pol.max_size = MAX_PAYLOAD;

    BIO *body = BIO_new_mem_buf(data + off, (int)(size - off));
    BIO *payload = BIO_new(BIO_s_mem());
    if (body != NULL && payload != NULL) {
        struct as2_unpacked info;
        struct error err = {0};
        if (as2_unpack(&pol, &h, body, payload, &info, &err) == 0)
            check_success(&info, payload);
        else
            check_failure(&info, &err);
    }
    BIO_free(body);
    BIO_free(payload);
    mime_headers_free(&h);
    ERR_clear_error();
    return 0;
}
