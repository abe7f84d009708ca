/*
 * fuzz_cms.c - libFuzzer target for the streaming BER readers of the CMS
 * layer (src/as2/cms*.c): arbitrary bytes go to as2_cms_decrypt,
 * as2_cms_verify_attached and as2_cms_decompress (the paths that parse
 * the outer structure themselves and hand OpenSSL only small stubs), to
 * the detached verifiers (as the signature, read by the same BER reader
 * into a stub without its certificates, then with them when no signer
 * matches by identifier) and to as2_cms_type_of. The
 * keys are the fixed test keys of fuzz_as2_keys.h (1024-bit RSA made for
 * the fuzz targets only).
 *
 * Besides the sanitizers it checks (abort() on violation): decompression
 * never writes more than its limit, and every refusal fills the error.
 * Seeds: tests/fuzz/corpus/cms/ (DER made with these keys).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "as2/cms.h"
#include "fuzz_as2_keys.h"

#define MAX_OUT (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    load_as2_keys();
    return 0;
}

/* Run one reader over data; out is a fresh memory BIO. */
static void one(int which, const uint8_t *data, size_t size)
{
    BIO *in = BIO_new_mem_buf(data, (int)size);
    BIO *out = BIO_new(BIO_s_mem());
    struct error err = {0};
    int rc = 0;
    if (in == NULL || out == NULL)
        goto done;
    if (which == 0) {
        struct as2_key keys[] = {{bob_key, bob_cert}};
        struct as2_decrypt_opts o = {keys, 1, 0};
        struct as2_decrypted d;
        rc = as2_cms_decrypt(&o, in, out, &d, &err);
    } else if (which == 1) {
        X509 *certs[] = {alice_cert};
        struct as2_trust t = {certs, 1, "alice", 0};
        struct as2_verified v;
        rc = as2_cms_verify_attached(&t, in, out, &v, &err);
    } else {
        uint64_t written = 0;
        rc = as2_cms_decompress(in, out, MAX_OUT, &written, &err);
        if (written > MAX_OUT || BIO_ctrl_pending(out) > MAX_OUT)
            abort();
    }
    if (rc != 0 && err.msg[0] == '\0')
        abort();
done:
    BIO_free(in);
    BIO_free(out);
    ERR_clear_error();
}

static void detached(const uint8_t *data, size_t size)
{
    static const char content[] = "Content-Type: text/plain\r\n\r\nhello";
    X509 *certs[] = {alice_cert};
    struct as2_trust t = {certs, 1, "alice", 0};
    struct error err = {0};
    BIO *c = BIO_new_mem_buf(content, (int)sizeof(content) - 1);
    if (c != NULL && as2_cms_verify_detached(&t, data, size, c, NULL,
                                             &err) == 0)
        abort();                /* nobody signed "hello" with alice's key */
    BIO_free(c);
    BIO *dg = as2_cms_digest_new(0, &err);
    if (dg != NULL) {
        BIO_write(dg, content, (int)sizeof(content) - 1);
        if (as2_cms_verify_digested(&t, data, size, dg, NULL, &err) == 0)
            abort();
        BIO_free_all(dg);
    }
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    (void)as2_cms_type_of(data, size);
    for (int i = 0; i < 3; i++)
        one(i, data, size);
    detached(data, size);
    return 0;
}
