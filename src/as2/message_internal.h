/*
 * message_internal.h - what src/as2/message_*.c share and nobody else
 * uses: a BIO that calls functions (the pull and push adaptors the
 * streams are built from), bounded pipes between a stage thread and its
 * consumer, the record of the first real failure among the threads of
 * one call, small streaming codecs (base64 with CRLF lines, the
 * Content-Transfer-Encoding decoders, a header-block reader), and the
 * micalg-to-digest mapping.
 *
 * Ownership: a struct msg_stage owns its pipe and thread until
 * msg_stage_finish; adaptor structs are the caller's (usually on its
 * stack) and must outlive the BIOs made from them; a BIO from
 * msg_bio_new owns only its small dispatch record.
 */
#ifndef WHARF_AS2_MESSAGE_INTERNAL_H
#define WHARF_AS2_MESSAGE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>

#include "as2/as2_headers.h"
#include "as2/cms.h"
#include "as2/mdn.h"
#include "as2/mime.h"
#include "util/error.h"

#define MSG_CHUNK 16384                 /* bytes moved per step */
#define MSG_PIPE_CAP (64 * 1024)        /* bytes buffered between threads */

/* ---- function BIOs ---- */

/* read: >0 bytes, 0 at the end, -1 on error. write: len, or -1. */
typedef int (*msg_read_fn)(void *ctx, char *buf, int len);
typedef int (*msg_write_fn)(void *ctx, const char *buf, int len);

/* A blocking source/sink BIO calling r or w (either may be NULL) with
 * ctx, which it borrows. BIO_free it. NULL when out of memory. */
BIO *msg_bio_new(msg_read_fn r, msg_write_fn w, void *ctx);

/* Write all n bytes to out; -1 with err filled as "cannot write WHAT". */
int msg_write(BIO *out, const void *p, size_t n, const char *what,
              struct error *err);
/* Read up to cap bytes: >0, 0 at the end, -1 with err filled. */
long msg_read(BIO *in, void *buf, size_t cap, struct error *err);

/* ---- failures across threads ---- */

/* The cause of a failed call: the first failure that was not merely a
 * consequence of another thread's (a pipe closed by a failed peer), the
 * one nearest the outside of the message (lowest rank) when several
 * threads failed on their own. */
struct msg_fail {
    pthread_mutex_t mu;
    bool set;
    size_t rank;
    enum mdn_error code;
    struct error err;
};

void msg_fail_init(struct msg_fail *f);
void msg_fail_destroy(struct msg_fail *f);
/* Record e (with the MDN error code it maps to) unless this thread only
 * failed because a pipe peer did, or a cause of lower rank is recorded.
 * Always returns -1. */
int msg_fail(struct msg_fail *f, size_t rank, enum mdn_error code,
             const struct error *e);
/* The same without looking at this thread's pipes, for a stage's result
 * read after the join (the caller checked the stage's own flag). */
int msg_fail_record(struct msg_fail *f, size_t rank, enum mdn_error code,
                    const struct error *e);
/* 1 when the calling thread saw a pipe fail because of its peer. */
bool msg_aborted(void);
void msg_aborted_reset(void);

/* ---- stages: a function run in its own thread, writing into a pipe ---- */

typedef int (*msg_stage_fn)(void *arg, BIO *out, struct error *err);

struct msg_pipe;

struct msg_stage {
    pthread_t th;
    bool started;
    struct msg_pipe *pipe;
    BIO *w;                 /* the writing end, given to fn */
    BIO *r;                 /* the reading end, for the consumer */
    msg_stage_fn fn;
    void *arg;
    int rc;                 /* fn's result, valid after finish */
    bool aborted;           /* fn failed because the consumer went away */
    struct error err;       /* fn's error */
};

/* Start fn(arg, out, err) in a new thread; read its output from s->r.
 * On -1 nothing runs and s needs no finish. */
int msg_stage_start(struct msg_stage *s, msg_stage_fn fn, void *arg,
                    struct error *err);
/* Close the reading end (a writer still running then fails), join the
 * thread and free the pipe. Returns the stage's rc. Safe on a stage that
 * never started. */
int msg_stage_finish(struct msg_stage *s);

/* ---- codecs ---- */

/* Pull adaptor: base64 (76-character lines, each ending in CRLF) of what
 * is read from in. */
struct msg_b64enc {
    BIO *in;
    unsigned char carry[57];
    size_t ncarry;
    bool eof;
    char out[(MSG_CHUNK / 57 + 2) * 78];
    size_t off, len;
    struct error err;
};
BIO *msg_b64enc_bio(struct msg_b64enc *e, BIO *in);

/* Pull adaptor: what is read from in, with the Content-Transfer-Encoding
 * cte undone (base64 and quoted-printable decoded; others unchanged).
 * Errors go to err (the BIO read returns -1). */
#define MSG_QP_LINE_MAX (MIME_LINE_MAX + 2)
struct msg_decoder {
    BIO *in;
    enum mime_cte cte;
    struct mime_b64 b64;
    bool eof;
    char raw[MSG_CHUNK];
    unsigned char out[MIME_B64_DECODED_MAX(MSG_CHUNK) + 4];
    size_t off, len;
    char line[MSG_QP_LINE_MAX];     /* quoted-printable: the current line */
    size_t nline;
    struct error err;
    bool failed;
};
BIO *msg_decoder_bio(struct msg_decoder *d, BIO *in, enum mime_cte cte);

/* Pull adaptor: the bytes of buf (borrowed) first, then in. */
struct msg_prefix {
    const unsigned char *buf;
    size_t off, len;
    BIO *in;
};
BIO *msg_prefix_bio(struct msg_prefix *p, const void *buf, size_t len,
                    BIO *in);

/* Read a MIME header block from the start of in (at most
 * MIME_MAX_HEADER_BYTES): parsed into hs (initialized by the caller);
 * *raw (heap, caller frees) gets the raw bytes read, of which the first
 * *hdr_len are the header block with its empty line and the rest
 * (*raw_len - *hdr_len) are the first body bytes. A stream that ends
 * inside the header block is an error. */
int msg_read_headers(BIO *in, struct mime_headers *hs, unsigned char **raw,
                     size_t *raw_len, size_t *hdr_len, struct error *err);

/* The DER signature carried by an application/pkcs7-signature entity
 * (its header block, then its body in any transfer encoding). *der is
 * heap memory the caller frees. */
int msg_sig_part_der(const char *entity, size_t len, unsigned char **der,
                     size_t *dlen, struct error *err);

/* ---- algorithm names ---- */

/* The digest a micalg names; AS2_DIGEST_NONE when none we support. */
enum as2_digest msg_digest_of(enum as2_micalg a);

#endif
