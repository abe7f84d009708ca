/*
 * as2_headers.h - the AS2 header rules of RFC 4130 section 6 (and 7.3):
 * AS2-From / AS2-To names, AS2-Version, Message-ID, the MIC algorithm
 * names, Disposition-Notification-Options, Receipt-Delivery-Option, and a
 * reader that pulls all of them out of a request's headers.
 *
 * Ownership: nothing here allocates. Results go into fixed-size fields of
 * the caller's structs or into caller buffers whose size is stated. Every
 * fallible function returns 0 or -1 and fills err (may be NULL); error
 * text never quotes more than one character of the input.
 */
#ifndef WHARF_AS2_HEADERS_H
#define WHARF_AS2_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "as2/mime.h"
#include "util/error.h"

#define AS2_ID_MAX      128     /* characters of an AS2 name, unquoted */
/* Buffer for a formatted (possibly quoted, escaped) AS2 name + NUL. */
#define AS2_ID_FMT_MAX  (2 * AS2_ID_MAX + 3)
#define AS2_MSGID_MAX   998     /* a Message-ID, angle brackets included */
#define AS2_URL_MAX     2048    /* Receipt-Delivery-Option URL */
#define AS2_DNO_MAX_MICALGS 8

/* ---- AS2-From / AS2-To ------------------------------------------------------- */

/* 0 when id is 1..128 printable ASCII characters (space allowed). */
int as2_id_check(const char *id, struct error *err);

/* True when id must be sent quoted: it holds a space, a DQUOTE or a
 * backslash (the characters an unquoted AS2 name cannot carry). */
bool as2_id_needs_quotes(const char *id);

/* Parse a header value in either form: plain (leading/trailing whitespace
 * ignored) or DQUOTE-quoted with backslash escapes. Control characters,
 * an unterminated quote, text after the closing quote and names outside
 * 1..128 printable ASCII characters are errors. */
int as2_id_parse(const char *value, char out[AS2_ID_MAX + 1],
                 struct error *err);

/* Format id for a header: as is, or quoted with '"' and '\' escaped when
 * as2_id_needs_quotes. out must hold AS2_ID_FMT_MAX bytes. */
int as2_id_format(const char *id, char out[AS2_ID_FMT_MAX], struct error *err);

/* ---- AS2-Version ------------------------------------------------------------- */

/* "1.0", "1.1", "1.2" ...: DIGITS "." DIGITS (1 to 3 digits each). */
int as2_version_parse(const char *value, int *major, int *minor,
                      struct error *err);

/* ---- Message-ID ---------------------------------------------------------------- */

/* A new id "<" 32 random hex digits "@" host ">" into out (cap bytes, at
 * least 100). host is reduced to letters, digits, '.', '-', '_' (others
 * become '-', cut to 64); NULL or empty gives "wharf". */
int as2_message_id_new(char *out, size_t cap, const char *host,
                       struct error *err);

/* Validate (after trimming whitespace) the form <left@right>: at most 998
 * characters, printable ASCII without spaces, exactly one pair of angle
 * brackets, a non-empty left and right around an '@'. Copies the trimmed
 * id into out (cap bytes; AS2_MSGID_MAX + 1 always suffices). */
int as2_message_id_parse(const char *value, char *out, size_t cap,
                         struct error *err);

/* ---- MIC algorithms ---------------------------------------------------------------- */

enum as2_micalg {
    AS2_MICALG_UNKNOWN = 0,
    AS2_MICALG_MD5,         /* known, always refused */
    AS2_MICALG_SHA1,        /* accepted only where a partner allows it */
    AS2_MICALG_SHA256,
    AS2_MICALG_SHA384,
    AS2_MICALG_SHA512
};

/* sha1, sha-1, sha256, sha-256, sha384, sha-384, sha512, sha-512, md5
 * (case-insensitive; name need not be NUL-terminated). */
enum as2_micalg as2_micalg_from_name(const char *name, size_t len);

/* The name to send: RFC 5751/8551 spelling ("sha-256") or, for partners
 * that want it, without the hyphen ("sha256"). NULL for UNKNOWN. Static
 * strings. */
const char *as2_micalg_name(enum as2_micalg alg, bool no_hyphen);

/* MD5 and unknown algorithms are refused; SHA-1 only when allow_sha1. */
bool as2_micalg_acceptable(enum as2_micalg alg, bool allow_sha1);

/* ---- Disposition-Notification-Options (RFC 4130 7.3) ----------------------------- */

enum as2_importance {
    AS2_IMPORTANCE_ABSENT = 0,  /* parameter not present */
    AS2_IMPORTANCE_OPTIONAL,
    AS2_IMPORTANCE_REQUIRED
};

struct as2_dno {
    enum as2_importance protocol_importance;  /* signed-receipt-protocol */
    bool protocol_pkcs7;                      /* pkcs7-signature listed */
    enum as2_importance micalg_importance;    /* signed-receipt-micalg */
    enum as2_micalg micalgs[AS2_DNO_MAX_MICALGS];  /* known names, in order */
    size_t n_micalgs;
    size_t n_unknown_micalgs;                 /* names we do not know */
};

/* Parse "signed-receipt-protocol=optional, pkcs7-signature;
 * signed-receipt-micalg=optional, sha-256, sha1". Unknown parameters are
 * ignored; a repeated parameter, a missing '=', an importance other than
 * required/optional or a parameter without a value are errors. */
int as2_dno_parse(const char *value, struct as2_dno *out, struct error *err);

/* The partner asked for a signed receipt (pkcs7-signature). */
bool as2_dno_wants_signed(const struct as2_dno *d);

/* The MIC algorithm to answer with: the first acceptable one of the
 * partner's list; SHA-256 when there is no list or when none is acceptable
 * but the list is only optional; -1 (the MDN then says "failed/failure:
 * unsupported MIC-algorithms") when none is acceptable and it is
 * required. */
int as2_dno_pick_micalg(const struct as2_dno *d, bool allow_sha1,
                        enum as2_micalg *out, struct error *err);

/* The header value to send asking for a signed receipt with these
 * algorithms (at least one), e.g. "signed-receipt-protocol=optional,
 * pkcs7-signature; signed-receipt-micalg=optional, sha-256". */
int as2_dno_format(char *out, size_t cap, const enum as2_micalg *algs,
                   size_t n, bool no_hyphen, struct error *err);

/* ---- Receipt-Delivery-Option --------------------------------------------------------- */

/* The async MDN URL: trimmed, an absolute http:// or https:// URL with a
 * non-empty host, printable ASCII without spaces, at most AS2_URL_MAX
 * characters. Copied into out (cap bytes). */
int as2_receipt_url_parse(const char *value, char *out, size_t cap,
                          struct error *err);

/* ---- a whole request ------------------------------------------------------------------- */

struct as2_request {
    char from[AS2_ID_MAX + 1];
    char to[AS2_ID_MAX + 1];
    char message_id[AS2_MSGID_MAX + 1];
    int version_major, version_minor;   /* 1.0 when AS2-Version is absent */
    bool mdn_requested;                 /* Disposition-Notification-To set */
    bool mdn_async;                     /* ... with Receipt-Delivery-Option */
    char receipt_url[AS2_URL_MAX + 1];
    bool has_dno;
    struct as2_dno dno;
};

/* Read and check the AS2 headers of a received message: AS2-From, AS2-To
 * and Message-ID are required; each of these, AS2-Version,
 * Disposition-Notification-To/-Options and Receipt-Delivery-Option must
 * appear at most once. On error, the fields read before the failure stay
 * filled (enough to address an error MDN). */
int as2_request_read(const struct mime_headers *h, struct as2_request *out,
                     struct error *err);

#endif
