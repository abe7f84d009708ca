/*
 * cms_internal.h - what the src/as2/cms*.c files share and nobody else
 * uses: a streaming BER reader (definite and indefinite lengths, content
 * octets handed out in chunks so no content is ever held whole), a small
 * bounded DER writer for the "stub" structures handed to OpenSSL, and the
 * input/output pumps and algorithm tables.
 *
 * Ownership: a struct cbuf owns its bytes (cbuf_free); a struct ber owns
 * nothing but its fixed read buffer (the BIO is the caller's).
 */
#ifndef WHARF_AS2_CMS_INTERNAL_H
#define WHARF_AS2_CMS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "as2/cms.h"
#include "util/error.h"

#define CMS_CHUNK 16384             /* bytes read or written per step */
#define CMS_DEPTH_MAX 24            /* nesting of BER elements we follow */

/* Identifier octets (low tag numbers) used by the parsers. */
#define BER_INT 0x02
#define BER_OCTETS 0x04
#define BER_NULL 0x05
#define BER_OID 0x06
#define BER_SEQ 0x30
#define BER_SET 0x31
#define BER_OCTETS_C 0x24           /* constructed OCTET STRING */
#define BER_CTX0_P 0x80             /* [0] IMPLICIT, primitive */
#define BER_CTX0 0xA0               /* [0], constructed */
#define BER_CTX1 0xA1
#define BER_CTX2 0xA2

/* ---- bounded growable buffer (DER writer) ---- */

struct cbuf {
    unsigned char *p;
    size_t len, cap, max;           /* max: refuse to grow beyond */
};

int cbuf_put(struct cbuf *b, const void *p, size_t n);
/* Wrap bytes [from, len) in a definite-length DER header with identifier
 * id (the bytes move right; the header is written at from). */
int cbuf_wrap(struct cbuf *b, size_t from, unsigned char id);
void cbuf_free(struct cbuf *b);

/* ---- streaming BER reader ---- */

struct ber {
    BIO *in;                        /* borrowed */
    const char *what;               /* "encrypted message": for error text */
    struct error *err;
    uint64_t off;                   /* input offset of buf[pos] */
    size_t pos, len;
    unsigned char buf[CMS_CHUNK];
};

struct ber_tlv {
    unsigned char id;               /* first identifier octet */
    int cons, indef;
    uint64_t len;                   /* content length (definite only) */
    uint64_t end;                   /* offset after the content (definite) */
    unsigned char hdr[16];          /* the header octets as read */
    size_t hdrlen;
};

void ber_init(struct ber *b, BIO *in, const char *what, struct error *err);
/* Read the next element's header, which must be id (0: any). parent
 * (NULL at top level) bounds it. 0, or -1 with err set. */
int ber_next(struct ber *b, const struct ber_tlv *parent,
             struct ber_tlv *t, unsigned char id, const char *name);
/* The identifier octet of parent's next child without consuming it; 0 at
 * the end of parent; -1 on error. */
int ber_peek(struct ber *b, const struct ber_tlv *parent);
/* Consume the end of t: nothing left for a definite length, the
 * end-of-contents octets for an indefinite one. */
int ber_close(struct ber *b, const struct ber_tlv *t, const char *name);
/* Append t's whole encoding (header already read) to out. */
int ber_capture(struct ber *b, const struct ber_tlv *t, struct cbuf *out);
/* Read and drop t's content (header already read). */
int ber_skip(struct ber *b, const struct ber_tlv *t);
/* Read a small primitive's content (at most cap bytes) into dst. */
int ber_small(struct ber *b, const struct ber_tlv *t, unsigned char *dst,
              size_t cap, size_t *n, const char *name);

typedef int (*ber_sink)(void *ctx, const unsigned char *p, size_t n,
                        struct error *err);
/* Stream the content octets of an OCTET STRING t (primitive, or
 * constructed from OCTET STRING segments) to sink in chunks. */
int ber_octets(struct ber *b, const struct ber_tlv *t, ber_sink sink,
               void *ctx);

/* Capture the next child of parent, which must be id (0: any). */
int ber_take(struct ber *b, const struct ber_tlv *parent, unsigned char id,
             struct cbuf *out, const char *name);
/* When parent's next child is id, capture it and return 1; else 0. */
int ber_take_opt(struct ber *b, const struct ber_tlv *parent,
                 unsigned char id, struct cbuf *out, const char *name);
/* Read the next child (an OID) and return its NID (NID_undef when
 * unknown); raw, when not NULL, receives its encoding. -1 on error. */
int ber_oid(struct ber *b, const struct ber_tlv *parent, struct cbuf *raw,
            const char *name);
/* Open the [0] eContent of an EncapsulatedContentInfo eci: its header
 * into wrap, the OCTET STRING inside into os (content not yet read).
 * absent is the whole error sentence for an eci without content. */
int ber_econtent(struct ber *b, const struct ber_tlv *eci,
                 struct ber_tlv *wrap, struct ber_tlv *os,
                 const char *absent);

/* ---- helpers ---- */

/* Write all n bytes to out, or fail with a sentence naming what. */
int cms_write(BIO *out, const void *p, size_t n, const char *what,
              struct error *err);
/* Read up to cap bytes from in: >0 bytes, 0 at the end, -1 on error. */
long cms_read(BIO *in, unsigned char *buf, size_t cap, struct error *err);
/* Copy in to out until in ends. */
int cms_pump(BIO *in, BIO *out, const char *what, struct error *err);
/* Free a BIO chain from top down to (not including) stop. */
void cms_free_upto(BIO *top, BIO *stop);
/* A sink writing to a BIO (ctx is the BIO). */
int cms_sink_bio(void *ctx, const unsigned char *p, size_t n,
                 struct error *err);
/* A name, or the subject of c, as RFC 2253 text (control bytes
 * replaced) into buf; "(unknown)" when NULL. */
void cms_name(X509_NAME *name, char *buf, size_t n);
void cms_subject(X509 *c, char *buf, size_t n);

const EVP_MD *cms_digest_md(enum as2_digest d);
enum as2_digest cms_digest_from_nid(int nid);
const EVP_CIPHER *cms_cipher_evp(enum as2_cipher c);
enum as2_cipher cms_cipher_from_nid(int nid);

#endif
