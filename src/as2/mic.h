/*
 * mic.h - the AS2 Message Integrity Check (RFC 4130 section 7.3.1, with
 * RFC 5402 section 4 for compression): the digest a receiver returns in
 * the MDN's Received-Content-MIC and the sender compares with its own,
 * written "base64, algorithm" (e.g. "x7c...=, sha-256").
 *
 * Which bytes are digested depends on how the message was wrapped
 * (as2_mic_scope says which MIME entity, and whether with its headers):
 *
 *  - signed (with or without encryption): the signed MIME entity, that is
 *    the first body part of the multipart/signed, headers included,
 *    exactly as transmitted (canonical CRLF). Compressed before signing,
 *    that entity is the application/pkcs7-mime compressed-data part;
 *    signed before compressing, it is the original content entity.
 *  - encrypted or compressed but unsigned: the MIME entity after
 *    decryption and decompression, headers included, canonicalized.
 *  - neither: the content only, without MIME headers.
 *
 * (A message that is only compressed follows the second rule, as RFC 5402
 * says; some implementations, OpenAS2 among them, digest it without
 * headers. A receiver comparing MICs of such a partner may try both.)
 *
 * The MIME parsing itself is the caller's (src/as2/mime*); this module
 * digests what it is given. Streaming: new / update ... / final, or the
 * one-shot helpers. No global state.
 */
#ifndef WHARF_AS2_MIC_H
#define WHARF_AS2_MIC_H

#include <stddef.h>

#include <openssl/bio.h>

#include "as2/cms.h"
#include "util/error.h"

/* Room for "base64(sha-512), sha-512" and its terminator. */
#define AS2_MIC_MAX 128

/* How a received message was wrapped, outermost first. */
enum as2_layer {
    AS2_LAYER_ENCRYPTED = 1,
    AS2_LAYER_SIGNED,
    AS2_LAYER_COMPRESSED,
};

struct as2_mic_scope {
    size_t depth;       /* digest the MIME entity reached after unwrapping
                         * this many layers (for a signed layer, unwrapping
                         * yields the first part of the multipart/signed) */
    int headers;        /* 1: its MIME headers, CRLF CRLF and body;
                         * 0: its body only */
};

/* The scope for layers[0..n) (n may be 0). Refuses a layer given twice. */
int as2_mic_scope(const enum as2_layer *layers, size_t n,
                  struct as2_mic_scope *scope, struct error *err);

/* Algorithm names as written in Disposition-Notification-Options and
 * Received-Content-MIC, RFC 5751 spelling: "sha-1", "sha-256", "sha-384",
 * "sha-512" (the same default as as2_micalg_name in as2_headers.h).
 * Parsing accepts any spelling as2_digest_from_name accepts ("sha1",
 * "SHA256" ...). Static strings; "unknown" out of range. Picking the
 * algorithm from a partner's list is as2_dno_pick_micalg's job. */
const char *as2_mic_alg_name(enum as2_digest d);

/* Streaming MIC. Caller owns the returned object; as2_mic_free it. */
struct as2_mic;
struct as2_mic *as2_mic_new(enum as2_digest d, struct error *err);
/* Digest bytes as they are (bodies, and entities exactly as received). */
int as2_mic_update(struct as2_mic *m, const void *p, size_t n,
                   struct error *err);
/* Digest text with every bare LF turned into CRLF (state is kept across
 * calls, so a CR at the end of one call and an LF at the start of the
 * next stay one line break). For headers or text built with LF only;
 * never for binary bodies. */
int as2_mic_update_canon(struct as2_mic *m, const void *p, size_t n,
                         struct error *err);
/* The algorithm m digests with. */
enum as2_digest as2_mic_alg(const struct as2_mic *m);

/* Take over the state of the digest BIO in chain (BIO_f_md, as
 * as2_cms_digest_new makes) that uses m's algorithm, for a MIC over
 * exactly the bytes that chain digested (a signed entity: the signature's
 * content digest and the MIC are one SHA computation, not two). m must
 * not have been updated. 0, or -1 when chain has no such digest. */
int as2_mic_adopt(struct as2_mic *m, BIO *chain, struct error *err);

/* Write "base64, alg" into out (at least AS2_MIC_MAX bytes). The object
 * cannot be updated afterwards; free it. */
int as2_mic_final(struct as2_mic *m, char *out, size_t outsz,
                  struct error *err);
/* The same, but only the base64 digest (for a writer that spells the
 * algorithm itself, e.g. the partner's preferred "sha256"). */
int as2_mic_final_b64(struct as2_mic *m, char *out, size_t outsz,
                      struct error *err);
void as2_mic_free(struct as2_mic *m);

/* One shot over a buffer, or over everything read from a BIO. */
int as2_mic_compute(enum as2_digest d, const void *p, size_t n, char *out,
                    size_t outsz, struct error *err);
int as2_mic_compute_bio(enum as2_digest d, BIO *in, char *out, size_t outsz,
                        struct error *err);

/* 1 when two MIC strings name the same digest value and algorithm
 * (spaces and algorithm spelling may differ); 0 otherwise, also when
 * either does not parse. */
int as2_mic_equal(const char *a, const char *b);

#endif
