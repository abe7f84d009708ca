/*
 * cms.h - the cryptographic message layer of AS2 (RFC 4130, 5402): CMS
 * SignedData (detached for multipart/signed, or attached), EnvelopedData
 * and AuthEnvelopedData (RFC 5083/5084, AES-GCM), and CompressedData
 * (RFC 3274, zlib; built here because Debian's OpenSSL has no zlib).
 *
 * Pure code: it reads the caller's input BIO and writes the caller's
 * output BIO, nothing else. MIME is not handled here: inputs and outputs
 * are the DER/BER structures and the raw content bytes.
 *
 * Everything streams with constant memory, in both directions: signing,
 * encrypting and compressing write BER with indefinite lengths and the
 * content as chunks; verifying an attached signature, decrypting and
 * decompressing parse the outer BER here and hand OpenSSL only the small
 * parts around the content (recipients, certificates, signer infos, at
 * most AS2_CMS_HEAD_MAX bytes), streaming the content through.
 *
 * Streaming has one consequence callers must respect: output is written
 * before the end of the input proves it authentic (a signature, a GCM tag
 * and the CBC padding come after the content). Only a return of 0 makes
 * the output good; on -1 the caller discards everything written to out.
 *
 * Input BIOs must be blocking and signal the end of data by returning 0
 * from BIO_read (a BIO_s_mem must have BIO_set_mem_eof_return(b, 0); a
 * BIO_new_mem_buf already does). Output BIOs must be blocking.
 *
 * Ownership: keys and certificates (EVP_PKEY *, X509 *) are always
 * borrowed from the caller (the partner/profile store supplies them) and
 * never freed or kept here. No function keeps state between calls.
 * Errors fill struct error with one sentence that never contains payload
 * or key bytes.
 */
#ifndef WHARF_AS2_CMS_H
#define WHARF_AS2_CMS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "util/error.h"

/* Most bytes of structure kept in memory outside the streamed content
 * (recipient infos, certificates, CRLs, signer infos). */
#define AS2_CMS_HEAD_MAX (1024 * 1024)
/* Largest detached signature accepted by as2_cms_verify_detached. */
#define AS2_CMS_SIG_MAX AS2_CMS_HEAD_MAX

enum as2_digest {
    AS2_DIGEST_NONE = 0,
    AS2_DIGEST_SHA1,            /* only when a partner is configured for it */
    AS2_DIGEST_SHA256,
    AS2_DIGEST_SHA384,
    AS2_DIGEST_SHA512,
};

enum as2_sig_padding {
    AS2_SIG_PKCS1 = 0,          /* RSA PKCS#1 v1.5 (default) */
    AS2_SIG_PSS,                /* RSASSA-PSS, salt = digest length, MGF1 = digest */
};

enum as2_cipher {
    AS2_CIPHER_NONE = 0,
    AS2_CIPHER_3DES,            /* des-ede3-cbc: only when configured */
    AS2_CIPHER_AES128_CBC,
    AS2_CIPHER_AES192_CBC,
    AS2_CIPHER_AES256_CBC,
    AS2_CIPHER_AES128_GCM,      /* AuthEnvelopedData */
    AS2_CIPHER_AES192_GCM,
    AS2_CIPHER_AES256_GCM,
};

enum as2_key_transport {
    AS2_KT_RSA_PKCS1 = 0,       /* RSA PKCS#1 v1.5 (default) */
    AS2_KT_RSA_OAEP,            /* RSAES-OAEP, SHA-1 and MGF1-SHA-1 (RFC 3560 default) */
    AS2_KT_RSA_OAEP_SHA256,     /* RSAES-OAEP, SHA-256 and MGF1-SHA-256 */
};

/* Bit sets of allowed algorithms for the policy fields below. */
#define AS2_DIGEST_BIT(d) (1u << (unsigned)(d))
#define AS2_CIPHER_BIT(c) (1u << (unsigned)(c))

/* Names for logs and configuration: "sha256", "aes-256-gcm", "des-ede3-cbc",
 * "rsa-oaep". Static strings; "unknown" for values out of range. */
const char *as2_digest_name(enum as2_digest d);
const char *as2_cipher_name(enum as2_cipher c);
const char *as2_key_transport_name(enum as2_key_transport k);
/* Parse a configuration name, case-insensitive: "sha256", "sha-256",
 * "SHA256" ...; "aes-256-cbc", "aes256-cbc", "3des", "des-ede3-cbc" ...
 * AS2_DIGEST_NONE / AS2_CIPHER_NONE when unknown. */
enum as2_digest as2_digest_from_name(const char *name);
enum as2_cipher as2_cipher_from_name(const char *name);

/* What a DER/BER buffer starting with a ContentInfo holds (needs only the
 * first ~24 bytes): for sniffing a received body. */
enum as2_cms_type {
    AS2_CMS_UNKNOWN = 0,
    AS2_CMS_DATA,
    AS2_CMS_SIGNED,
    AS2_CMS_ENVELOPED,
    AS2_CMS_AUTH_ENVELOPED,
    AS2_CMS_COMPRESSED,
};
enum as2_cms_type as2_cms_type_of(const unsigned char *p, size_t n);

/* ---- signing ---- */

struct as2_signer {
    X509 *cert;                 /* borrowed; included in the SignedData */
    EVP_PKEY *key;              /* borrowed; the private key of cert */
    enum as2_digest digest;
    enum as2_sig_padding padding;
};

/* Detached signature over everything read from content (read once, in
 * chunks): writes the DER of the SignedData, without the content, to
 * sig_out (the body of an application/pkcs7-signature part). Signed
 * attributes: content type, signing time, message digest. */
int as2_cms_sign_detached(const struct as2_signer *s, BIO *content,
                          BIO *sig_out, struct error *err);
/* as2_cms_sign_detached, and once the content is digested (before the
 * signature is made) digested(arg, chain, err) is called with the BIO
 * chain that digested it (BIO_f_md, the signer's algorithm): so a MIC
 * over the same bytes can take that digest instead of computing its own
 * (as2_mic_adopt). A non-zero return stops the signature. */
int as2_cms_sign_detached_tap(const struct as2_signer *s, BIO *content,
                              BIO *sig_out,
                              int (*digested)(void *arg, BIO *chain,
                                              struct error *err),
                              void *arg, struct error *err);

/* Attached (opaque) SignedData holding everything read from content:
 * streamed BER to out (indefinite lengths, content in chunks). */
int as2_cms_sign_attached(const struct as2_signer *s, BIO *content,
                          BIO *out, struct error *err);

/* ---- verifying ---- */

/* Whom a signature must come from. There is no trust store: AS2 partners
 * use self-signed certificates, so the signer's certificate must equal
 * (same DER, or same public key) one of the partner's certificates. */
struct as2_trust {
    X509 *const *certs;         /* borrowed: the partner's certificates */
    size_t ncerts;
    const char *partner;        /* for error text; may be NULL */
    unsigned digests;           /* allowed AS2_DIGEST_BITs; 0: any */
};

struct as2_verified {
    enum as2_digest digest;     /* the weakest digest any signer used */
    int pss;                    /* 1 when a signer used RSASSA-PSS */
    size_t cert_index;          /* trust->certs[i] that signed (first signer) */
    int nsigners;               /* all of them verified */
    char signer[256];           /* subject of the signer (RFC 2253) */
};

/* Verify a detached signature (DER, at most AS2_CMS_SIG_MAX bytes) over
 * the bytes read from content (streamed, read to its end). info may be
 * NULL. 0 when every signer is one of trust's certificates and verifies. */
int as2_cms_verify_detached(const struct as2_trust *trust,
                            const unsigned char *sig, size_t siglen,
                            BIO *content, struct as2_verified *info,
                            struct error *err);

/* The same in two steps, for a content that arrives before its signature
 * (a received multipart/signed, streamed): as2_cms_digest_new gives a
 * sink BIO that only digests what is written into it, with every
 * algorithm in digests (AS2_DIGEST_BITs; 0: all supported); the caller
 * writes the content into it as it goes by, then hands the signature to
 * as2_cms_verify_digested. A signer whose digest algorithm was not
 * computed fails with a sentence saying so. The caller owns the BIO
 * (BIO_free_all); it can be used for one verification. */
BIO *as2_cms_digest_new(unsigned digests, struct error *err);
int as2_cms_verify_digested(const struct as2_trust *trust,
                            const unsigned char *sig, size_t siglen,
                            BIO *digested, struct as2_verified *info,
                            struct error *err);

/* Verify an attached SignedData read from in (DER or BER, streamed) and
 * write its content to content_out as it goes (discard it on -1). */
int as2_cms_verify_attached(const struct as2_trust *trust, BIO *in,
                            BIO *content_out, struct as2_verified *info,
                            struct error *err);

/* ---- encrypting ---- */

struct as2_encrypt_opts {
    enum as2_cipher cipher;     /* GCM ciphers give AuthEnvelopedData */
    enum as2_key_transport kt;
    X509 *const *recipients;    /* borrowed; one or more */
    size_t nrecipients;
};

/* Encrypt everything read from in to out as streamed BER. */
int as2_cms_encrypt(const struct as2_encrypt_opts *o, BIO *in, BIO *out,
                    struct error *err);

/* ---- decrypting ---- */

/* One of our decryption keys and its certificate (both borrowed). Several
 * are given during a certificate rollover. */
struct as2_key {
    EVP_PKEY *key;
    X509 *cert;
};

struct as2_decrypt_opts {
    const struct as2_key *keys;
    size_t nkeys;
    unsigned ciphers;           /* allowed AS2_CIPHER_BITs; 0: any. A
                                 * refused cipher fails before any
                                 * private-key operation. */
};

struct as2_decrypted {
    enum as2_cipher cipher;     /* content-encryption algorithm */
    enum as2_key_transport kt;  /* how the content key was wrapped for us */
    size_t key_index;           /* opts->keys[i] that decrypted */
};

/* Decrypt an EnvelopedData or AuthEnvelopedData read from in (DER or BER,
 * streamed) and write the plaintext to out. The recipient info matching
 * each key's certificate is tried in order. info may be NULL. */
int as2_cms_decrypt(const struct as2_decrypt_opts *o, BIO *in, BIO *out,
                    struct as2_decrypted *info, struct error *err);

/* ---- compressing (RFC 3274, zlib) ---- */

/* The compressor's block: an input longer than this is deflated in
 * blocks side by side (one zlib stream all the same; cms_zlib.c). */
#define AS2_CMS_ZBLOCK (512 * 1024)

/* Compress everything read from in into a CompressedData ContentInfo on
 * out (BER, indefinite lengths, chunks). level: zlib 0-9, or -1 for 6.
 * Uses up to as many threads as the machine has cores (at most 4), at
 * the caller's priority. */
int as2_cms_compress(BIO *in, BIO *out, int level, struct error *err);

/* Read a CompressedData (definite or indefinite lengths) from in and
 * write the inflated content to out, refusing to write more than max_out
 * bytes (a compression bomb fails with a clear error). written (may be
 * NULL) receives the byte count. */
int as2_cms_decompress(BIO *in, BIO *out, uint64_t max_out,
                       uint64_t *written, struct error *err);

#endif
