/*
 * fuzz_sshkey.c - libFuzzer target for the SSH user key reader
 * (src/vault/sshkey.c): the text of an uploaded SFTP key file, which the
 * key process parses (openssh-key-v1 with its own wire-format reader, or
 * PEM through OpenSSL).
 *
 * Input: the key file's text, as is (the seed corpus tests/fuzz/corpus/
 * sshkey/ holds throwaway keys of each type made by ssh-keygen). No
 * passphrase is given: an encrypted PEM key stops before its KDF, whose
 * cost the file sets. Oracles beyond the sanitizers: a refusal leaves no
 * key and says why; an accepted key gives a public blob and a signature
 * (RSA flags from the input's last byte), each a well-formed SSH blob
 * starting with a type name and read to its end, the signature's name
 * being the blob's type (or an rsa-sha2 one for ssh-rsa) and an Ed25519
 * signature 64 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vault/sshkey.h"

struct rd {
    const unsigned char *p;
    size_t n;
};

static int get_string(struct rd *r, const unsigned char **s, size_t *n)
{
    if (r->n < 4)
        return -1;
    uint32_t len = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 |
                   (uint32_t)r->p[2] << 8 | (uint32_t)r->p[3];
    if (len > r->n - 4)
        return -1;
    *s = r->p + 4;
    *n = len;
    r->p += 4 + len;
    r->n -= 4 + len;
    return 0;
}

static int is(const unsigned char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* The signature: string name + string blob, nothing after; its name fits
 * the key's type. */
static void check_sig(const unsigned char *type, size_t tn,
                      const unsigned char *sig, size_t sn)
{
    struct rd r = { sig, sn };
    const unsigned char *name, *blob;
    size_t nn, bn;
    if (get_string(&r, &name, &nn) != 0 || get_string(&r, &blob, &bn) != 0 ||
        r.n != 0 || bn == 0)
        abort();
    if (is(type, tn, "ssh-rsa")) {
        if (!is(name, nn, "ssh-rsa") && !is(name, nn, "rsa-sha2-256") &&
            !is(name, nn, "rsa-sha2-512"))
            abort();
    } else if (nn != tn || memcmp(name, type, tn) != 0) {
        abort();
    }
    if (is(type, tn, "ssh-ed25519") && bn != 64)
        abort();
}

static void use_key(EVP_PKEY *k, uint32_t flags)
{
    static const unsigned char data[] = "fuzz";
    struct error err = {0};
    unsigned char *blob = NULL, *sig = NULL;
    size_t bn = 0, sn = 0;
    const unsigned char *type;
    size_t tn;
    if (sshkey_public_blob(k, &blob, &bn, &err) != 0 ||
        sshkey_sign(k, flags, data, sizeof(data) - 1, &sig, &sn, &err) != 0)
        abort();
    struct rd r = { blob, bn };
    if (get_string(&r, &type, &tn) != 0 || tn == 0)
        abort();
    check_sig(type, tn, sig, sn);
    free(blob);
    free(sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct error err = {0};
    static char unset;
    EVP_PKEY *k = (EVP_PKEY *)&unset;   /* sshkey_parse must set it */
    if (sshkey_parse(data, size, NULL, &k, &err) != 0) {
        if (k != NULL || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (k == NULL)
        abort();
    use_key(k, size > 0 ? data[size - 1] : 0);
    EVP_PKEY_free(k);
    return 0;
}
