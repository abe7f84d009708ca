/*
 * mime.h - MIME (RFC 2045-2049) as AS2 (RFC 4130) uses it: header blocks,
 * structured parameters, Content-Type, multipart splitting (buffered and
 * streaming), Content-Transfer-Encoding decoding, base64 encoding, header
 * folding, multipart/signed and multipart/report envelopes and text
 * canonicalization. Pure functions over caller buffers: no I/O here.
 *
 * Ownership, in one place:
 *   - struct mime_headers, struct mime_params, struct mime_content_type and
 *     struct mime_buf own heap memory; the caller frees them with the
 *     matching *_free (safe on a zeroed or already freed struct).
 *   - Everything else writes into caller-owned buffers whose required size
 *     is stated next to the function (MIME_B64_DECODED_MAX, ...).
 *   - Strings returned by lookups (mime_header_get, mime_param_get) point
 *     into the struct they came from and live as long as it does.
 * Every fallible function returns 0 or -1 and fills err (may be NULL) with
 * one sentence that never quotes more than a character of the input.
 */
#ifndef WHARF_AS2_MIME_H
#define WHARF_AS2_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define MIME_MAX_HEADER_BYTES (64 * 1024) /* one header block, raw bytes */
#define MIME_MAX_HEADERS      200         /* headers in one block */
#define MIME_MAX_PARAMS       32          /* parameters in one value */
#define MIME_MAX_BOUNDARY     70          /* RFC 2046 */
#define MIME_TOKEN_MAX        127         /* type and subtype names */
#define MIME_LINE_FOLD        76          /* fold written headers here */
#define MIME_LINE_MAX         998         /* RFC 5322 hard line limit */
/* A generated boundary: "----=_Wharf_" + 32 hex digits, plus NUL. */
#define MIME_BOUNDARY_BUFSZ   48

/* ---- growable output buffer ---------------------------------------------- */

/* Heap buffer the builders append to. data is NUL-terminated after every
 * successful append (the NUL is not counted in len). Zero-initialize it
 * (or mime_buf_init); the caller owns data and frees it with
 * mime_buf_free. */
struct mime_buf {
    char *data;
    size_t len;
    size_t cap;
};

void mime_buf_init(struct mime_buf *b);
void mime_buf_free(struct mime_buf *b);
int mime_buf_append(struct mime_buf *b, const void *data, size_t len,
                    struct error *err);
int mime_buf_puts(struct mime_buf *b, const char *s, struct error *err);

/* ---- header blocks ---------------------------------------------------------- */

/* One header: name as written (case kept), value unfolded (the line breaks
 * of folding removed, the whitespace after them kept) and trimmed. */
struct mime_header {
    char *name;
    char *value;
};

/* Owns every name and value (one allocation per header) and the array. */
struct mime_headers {
    struct mime_header *h;
    size_t count;
    size_t cap;
    size_t bytes;       /* raw header bytes taken in so far (the limit) */
};

void mime_headers_init(struct mime_headers *hs);
void mime_headers_free(struct mime_headers *hs);

/* Parse one header block at the start of data ("Name: value" lines, CRLF or
 * bare LF, folded continuation lines starting with SP/HTAB) up to and
 * including the empty line that ends it, or to the end of data when there
 * is none. Headers are appended to hs (so several blocks can be merged).
 * *body_off (may be NULL) gets the offset of the first byte after the
 * block. Errors: a line without a colon, a bad header name, a control
 * character or NUL in a value, a continuation before any header, more than
 * MIME_MAX_HEADER_BYTES or MIME_MAX_HEADERS. */
int mime_headers_parse(struct mime_headers *hs, const char *data, size_t len,
                       size_t *body_off, struct error *err);

/* Where the header block at the start of data ends, for callers that
 * collect a streamed part's headers: 1 and *body_off when the empty line
 * is in data, 0 when more data is needed, -1 when MIME_MAX_HEADER_BYTES
 * pass without one. */
int mime_headers_end(const char *data, size_t len, size_t *body_off,
                     struct error *err);

/* Append a header after checking its name (token characters) and value
 * (no CR, LF, NUL or other control character but HTAB). */
int mime_headers_add(struct mime_headers *hs, const char *name,
                     const char *value, struct error *err);

/* First value of name (case-insensitive), or NULL. Points into hs. */
const char *mime_header_get(const struct mime_headers *hs, const char *name);

/* Number of headers called name (case-insensitive). */
size_t mime_header_count(const struct mime_headers *hs, const char *name);

/* *value = the only value of name, NULL when absent; -1 when the header
 * appears more than once (ambiguous: a smuggling vector). */
int mime_header_get_unique(const struct mime_headers *hs, const char *name,
                           const char **value, struct error *err);

/* ---- structured values: "lead; name=value; name="quoted \" value"" ---------- */

struct mime_param {
    char *name;         /* lowercased */
    char *value;        /* quotes removed, backslash escapes resolved */
};

/* Owns value and every name/value string. */
struct mime_params {
    char *value;        /* the part before the first ';', trimmed */
    struct mime_param p[MIME_MAX_PARAMS];
    size_t count;
};

/* Parse a structured header value. Parameter names are tokens compared
 * without case; values are tokens or quoted-strings; a repeated name, an
 * unterminated quote or more than MIME_MAX_PARAMS are errors. Empty
 * parameters (";;", a trailing ';') are ignored. */
int mime_params_parse(const char *s, struct mime_params *out,
                      struct error *err);
void mime_params_free(struct mime_params *p);

/* Value of parameter name (case-insensitive), or NULL. Points into p. */
const char *mime_param_get(const struct mime_params *p, const char *name);

/* ---- Content-Type ---------------------------------------------------------------- */

struct mime_content_type {
    char type[MIME_TOKEN_MAX + 1];      /* lowercased, e.g. "multipart" */
    char subtype[MIME_TOKEN_MAX + 1];   /* lowercased, e.g. "signed" */
    struct mime_params params;          /* owned: mime_content_type_free */
};

int mime_content_type_parse(const char *value, struct mime_content_type *ct,
                            struct error *err);
void mime_content_type_free(struct mime_content_type *ct);
bool mime_content_type_is(const struct mime_content_type *ct,
                          const char *type, const char *subtype);

/* ---- multipart ------------------------------------------------------------------- */

/* 0 when b is a usable boundary: 1..70 printable ASCII characters, not
 * ending in a space. */
int mime_boundary_check(const char *b, struct error *err);

/* A part as a range of the original bytes: its headers, the empty line and
 * its body, without the line break that precedes the next delimiter. */
struct mime_part_range {
    size_t off;
    size_t len;
};

/* Split a multipart body (the bytes after the entity's header block).
 * A delimiter is a line "--boundary" followed by optional spaces/tabs and
 * CRLF or LF; the close delimiter is a line starting "--boundary--".
 * Anything before the first delimiter (preamble) and after the close
 * delimiter (epilogue) is ignored. A line that starts with "--boundary"
 * but is not a valid delimiter is an error (RFC 2046 forbids it in
 * content), as are no parts, a missing close delimiter and more than
 * max_parts parts. The parts go to the caller's array. */
int mime_multipart_split(const char *data, size_t len, const char *boundary,
                         struct mime_part_range *parts, size_t max_parts,
                         size_t *nparts, struct error *err);

/* Streaming splitter with exactly the semantics of mime_multipart_split,
 * fed chunks of any size. It calls part_begin (index from 0, offset of the
 * part's first byte in the stream), part_data (possibly many times, never
 * with len 0) and part_end for each part; a callback returning -1 (with
 * err filled) stops the splitter. Memory is constant: the only buffered
 * bytes are a possible delimiter prefix (at most boundary length + 4).
 * The struct holds no heap memory and needs no free. */
struct mime_splitter_cb {
    int (*part_begin)(void *ctx, size_t index, uint64_t offset,
                      struct error *err);
    int (*part_data)(void *ctx, const char *data, size_t len,
                     struct error *err);
    int (*part_end)(void *ctx, struct error *err);
};

struct mime_splitter {
    const struct mime_splitter_cb *cb;
    void *ctx;
    char dash[MIME_MAX_BOUNDARY + 3];   /* "--" boundary */
    size_t dlen;
    int phase;                          /* preamble, part, epilogue, failed */
    int st;                             /* scanner state */
    char hold[MIME_MAX_BOUNDARY + 4];   /* [CR] LF + matched "--boundary" */
    size_t hold_len;
    size_t k;                           /* bytes of dash matched */
    size_t nparts;
    uint64_t offset;                    /* stream offset of the next byte */
};

int mime_splitter_init(struct mime_splitter *s, const char *boundary,
                       const struct mime_splitter_cb *cb, void *ctx,
                       struct error *err);
int mime_splitter_feed(struct mime_splitter *s, const char *data, size_t len,
                       struct error *err);
/* End of input: 0 when the close delimiter was seen, else -1. */
int mime_splitter_finish(struct mime_splitter *s, struct error *err);

/* ---- Content-Transfer-Encoding ---------------------------------------------------- */

enum mime_cte {
    MIME_CTE_7BIT = 0,
    MIME_CTE_8BIT,
    MIME_CTE_BINARY,
    MIME_CTE_BASE64,
    MIME_CTE_QP
};

/* Map a Content-Transfer-Encoding value (NULL or empty: 7bit). Unknown
 * encodings are an error. */
int mime_cte_parse(const char *value, enum mime_cte *out, struct error *err);

/* Output sizes: base64 decoding never yields more than this for len input
 * bytes (plus up to 3 carried over from an earlier chunk). */
#define MIME_B64_DECODED_MAX(len) ((((len) + 3) / 4) * 3)

/* Streaming base64 decoder (state across chunks; no heap). Whitespace (SP,
 * HTAB, CR, LF) is skipped anywhere; any other character outside the
 * alphabet, a misplaced '=' and data after the padding are errors. A final
 * group of 2 or 3 characters without padding is accepted. */
struct mime_b64 {
    char q[4];          /* the group being collected */
    unsigned nq;
    bool ended;         /* padding seen: only whitespace may follow */
    uint64_t pos;       /* input offset, for error messages */
};

void mime_b64_init(struct mime_b64 *d);
/* out must hold MIME_B64_DECODED_MAX(len) bytes; *outlen gets the count. */
int mime_b64_update(struct mime_b64 *d, const char *in, size_t len,
                    unsigned char *out, size_t *outlen, struct error *err);
/* Flush an unpadded final group: out must hold 3 bytes. */
int mime_b64_final(struct mime_b64 *d, unsigned char *out, size_t *outlen,
                   struct error *err);

/* Whole-buffer base64 decode (init + update + final). out must hold
 * MIME_B64_DECODED_MAX(len) bytes. */
int mime_base64_decode(const char *in, size_t len, unsigned char *out,
                       size_t *outlen, struct error *err);

/* Quoted-printable decode: "=XX" (either case), soft line breaks ("=" at
 * the end of a line, trailing whitespace allowed), trailing whitespace of
 * each line dropped, hard line breaks kept as written (CRLF or LF). out
 * must hold len bytes. A malformed '=' is an error. */
int mime_qp_decode(const char *in, size_t len, unsigned char *out,
                   size_t *outlen, struct error *err);

/* Decode a body by its transfer encoding into a new heap buffer (*out,
 * caller frees; NUL-terminated for convenience, not counted in *outlen).
 * 7bit, 8bit and binary are copied unchanged. */
int mime_decode_alloc(enum mime_cte cte, const char *in, size_t len,
                      unsigned char **out, size_t *outlen, struct error *err);

/* Base64 with 76-character lines, each ending in CRLF (the last too; empty
 * input gives empty output). */
size_t mime_base64_encoded_len(size_t n);
/* out must hold mime_base64_encoded_len(n) + 1 bytes; NUL-terminated.
 * Returns the length written (without the NUL). */
size_t mime_base64_encode(const unsigned char *in, size_t n, char *out);
int mime_buf_base64(struct mime_buf *b, const unsigned char *in, size_t n,
                    struct error *err);

/* ---- writing ----------------------------------------------------------------------- */

/* Append "Name: value" CRLF, folded before whitespace so that lines stay
 * within 76 characters where the value allows it (never beyond 998: a
 * longer unbreakable run is an error). The name must be a token and the
 * value free of CR, LF, NUL and control characters other than HTAB.
 * Unfolding the result gives back the value exactly. */
int mime_header_write(struct mime_buf *b, const char *name, const char *value,
                      struct error *err);

/* A fresh random boundary (OpenSSL RAND_bytes) into out. */
int mime_boundary_new(char out[MIME_BOUNDARY_BUFSZ], struct error *err);

/* Content-Type values:
 *   multipart/signed; protocol="application/pkcs7-signature";
 *       micalg=MICALG; boundary="B"
 *   multipart/report; report-type=disposition-notification; boundary="B"
 * written into out (cap bytes); -1 when out is too small. */
int mime_signed_content_type(char *out, size_t cap, const char *micalg,
                             const char *boundary, struct error *err);
int mime_report_content_type(char *out, size_t cap, const char *boundary,
                             struct error *err);

/* multipart/signed body in pieces so the signed part can be streamed:
 * begin writes the first delimiter; the caller then writes the signed
 * entity (headers + body, exactly the bytes that were signed); end writes
 * CRLF, the delimiter, the application/pkcs7-signature part (base64 of the
 * DER signature) and the close delimiter. */
int mime_signed_begin(struct mime_buf *b, const char *boundary,
                      struct error *err);
int mime_signed_end(struct mime_buf *b, const char *boundary,
                    const unsigned char *sig, size_t siglen,
                    struct error *err);
/* The same in one call for an entity held in memory. */
int mime_build_signed(struct mime_buf *b, const char *boundary,
                      const char *entity, size_t entity_len,
                      const unsigned char *sig, size_t siglen,
                      struct error *err);

/* A whole multipart body from complete entities (headers + body each). */
struct mime_entity {
    const char *data;
    size_t len;
};
int mime_build_multipart(struct mime_buf *b, const char *boundary,
                         const struct mime_entity *parts, size_t n,
                         struct error *err);

/* ---- canonical text ------------------------------------------------------------------- */

/* Streaming canonicalization to CRLF line ends: CRLF stays, a bare LF or a
 * bare CR becomes CRLF. A CRLF split across chunks is handled. No heap. */
struct mime_canon {
    bool last_cr;
};

void mime_canon_init(struct mime_canon *c);
/* out must hold 2 * len bytes; returns the number written. */
size_t mime_canon_update(struct mime_canon *c, const char *in, size_t len,
                         char *out);

#endif
