/*
 * message.h - a whole AS2 message (RFC 4130, RFC 5402) on top of mime.h,
 * cms.h, mic.h, as2_headers.h and mdn.h: a payload packaged into the HTTP
 * headers and body to POST (as2_package), a received HTTP request turned
 * back into its payload under a partner's policy (as2_unpack), and the
 * MDN that answers it (as2_mdn_make) or that a partner sent back
 * (as2_mdn_read, as2_mdn_check).
 *
 * Pure code over the caller's BIOs: no sockets, no files, no database.
 * Payload and body BIOs may be file or memory BIOs; they must be blocking
 * and signal the end of data with BIO_read returning 0 (a BIO_s_mem needs
 * BIO_set_mem_eof_return(b, 0); BIO_new_mem_buf already does that).
 *
 * Streaming. Payloads of any size go through in constant memory (under a
 * megabyte per message, whatever the size): every layer (content
 * entity, compression, multipart/signed, encryption, and back) is a
 * stream stage. Where two stream stages of cms.h follow each other (for
 * example compress then encrypt, or decrypt then decompress), each runs
 * in a short-lived thread of this call connected to the next by a
 * bounded in-memory pipe; every thread is joined before the call
 * returns, and the caller's BIOs are each used by one thread at a time.
 * Keys and certificates are only read.
 *
 * Ownership: keys and certificates (EVP_PKEY *, X509 *) are borrowed from
 * the caller and never kept. struct as2_packaged and struct as2_mdn_built
 * own their headers (free them with as2_packaged_free /
 * as2_mdn_built_free); every other result is plain data in the caller's
 * struct. Strings in option structs are borrowed for the call only.
 * Functions return 0 or -1 and fill err (may be NULL) with one sentence
 * that never holds payload bytes or key material.
 */
#ifndef WHARF_AS2_MESSAGE_H
#define WHARF_AS2_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "as2/as2_headers.h"
#include "as2/cms.h"
#include "as2/mdn.h"
#include "as2/mic.h"
#include "as2/mime.h"
#include "util/error.h"

#define AS2_FILENAME_MAX 255        /* bytes of a sanitized filename */
#define AS2_CTYPE_MAX 256           /* bytes of a payload Content-Type */
/* A received payload (and anything decompressed) larger than this is
 * refused unless the policy sets its own limit. */
#define AS2_UNPACK_MAX_DEFAULT (4ull << 30)
/* A received MDN body larger than this is refused by default. */
#define AS2_MDN_MAX_DEFAULT (1024 * 1024)

/* ---- sending ----------------------------------------------------------------- */

enum as2_compress {
    AS2_COMPRESS_NONE = 0,
    AS2_COMPRESS_BEFORE_SIGNING,    /* RFC 5402: compressed-data inside the
                                     * multipart/signed */
    AS2_COMPRESS_AFTER_SIGNING,     /* the multipart/signed compressed */
};

enum as2_transfer {
    AS2_TRANSFER_BINARY = 0,
    AS2_TRANSFER_BASE64,            /* 76-character lines, CRLF */
};

enum as2_mdn_mode {
    AS2_MDN_NONE = 0,
    AS2_MDN_SYNC,                   /* in the HTTP response */
    AS2_MDN_ASYNC,                  /* POSTed later to receipt_url */
};

struct as2_package_opts {
    const char *from, *to;          /* AS2-From, AS2-To (required) */
    const char *message_id;         /* "<...@...>"; NULL: a new one */
    const char *host;               /* right side of new Message-IDs */
    const char *subject;            /* NULL: no Subject */
    const char *filename;           /* NULL: no Content-Disposition; else
                                     * sanitized like a received one */
    const char *content_type;       /* NULL: application/octet-stream */

    const struct as2_signer *signer;    /* NULL: unsigned. Its digest is
                                         * the micalg, its padding PSS or
                                         * PKCS#1 v1.5 */
    enum as2_cipher cipher;         /* AS2_CIPHER_NONE: not encrypted */
    enum as2_key_transport kt;      /* RSA PKCS#1 v1.5 or OAEP */
    X509 *recipient;                /* the partner's encryption certificate */
    enum as2_compress compress;     /* unsigned: BEFORE and AFTER agree */
    int compress_level;             /* zlib 1 (fastest) .. 9 (smallest);
                                     * 0: zlib's default (6) */
    enum as2_transfer transfer;     /* of the innermost (payload) entity */
    bool canonicalize;              /* payload line ends to CRLF (text) */
    bool micalg_no_hyphen;          /* spell "sha256", not "sha-256" */

    enum as2_mdn_mode mdn;
    const char *mdn_to;             /* Disposition-Notification-To; NULL:
                                     * the from id */
    const char *receipt_url;        /* AS2_MDN_ASYNC: where to send it */
    bool mdn_signed;                /* ask for a signed receipt */
    /* MIC algorithms offered for the receipt, preferred first; NULL or
     * none: the signing digest, or SHA-256 when unsigned. The MIC
     * computed here uses the first. */
    const enum as2_micalg *mdn_micalgs;
    size_t n_mdn_micalgs;
    const char *ediint_features;    /* NULL: no EDIINT-Features header */
};

struct as2_packaged {
    /* The HTTP request headers to send, in order: Content-Type (with
     * smime-type/boundary/protocol/micalg as they apply),
     * Content-Transfer-Encoding, MIME-Version, AS2-Version, AS2-From,
     * AS2-To, Message-ID, Subject, Disposition-Notification-To,
     * Disposition-Notification-Options, Receipt-Delivery-Option,
     * EDIINT-Features (the optional ones only when set). Owned. */
    struct mime_headers headers;
    char message_id[AS2_MSGID_MAX + 1];
    /* The MIC the receiver must return: "base64, sha-256" (spelled as the
     * options say), over the scope mic.h gives for the layers used. */
    char mic[AS2_MIC_MAX];
    enum as2_digest mic_digest;
    uint64_t payload_bytes;         /* read from the payload BIO */
    uint64_t body_bytes;            /* written to out */
    /* The multipart/signed boundary the headers name (signed messages),
     * chosen by as2_package_begin for as2_package_body. */
    char boundary[MIME_BOUNDARY_BUFSZ];
};

/* Package everything read from payload (read once, to its end) into the
 * HTTP body written to out, and fill res (zeroed first; free it with
 * as2_packaged_free even on failure). Layers, innermost first: the
 * content entity (Content-Type, Content-Transfer-Encoding, Content-
 * Disposition), compression before signing, multipart/signed (detached
 * signature), compression after signing, encryption; the outermost
 * entity's headers become HTTP headers. On -1, what was written to out is
 * garbage. */
int as2_package(const struct as2_package_opts *o, BIO *payload, BIO *out,
                struct as2_packaged *res, struct error *err);

/* as2_package in two steps, for a caller that sends the HTTP headers
 * before the body is complete (a streamed, chunked POST): the headers
 * depend on the options only, never on the body. as2_package_begin
 * zeroes res and fills its headers, message_id, mic_digest and boundary
 * (every option is checked here); as2_package_body then writes the body
 * the headers describe to out and fills mic, payload_bytes and
 * body_bytes (it touches nothing else of res, so another thread may read
 * the headers meanwhile). as2_package is the two in a row: the bytes sent
 * are the same either way. */
int as2_package_begin(const struct as2_package_opts *o,
                      struct as2_packaged *res, struct error *err);
int as2_package_body(const struct as2_package_opts *o, BIO *payload,
                     BIO *out, struct as2_packaged *res, struct error *err);
void as2_packaged_free(struct as2_packaged *res);

/* ---- receiving ------------------------------------------------------------------ */

/* One partner's rules for what it sends us. The caller finds the partner
 * first (as2_request_read gives AS2-From/AS2-To from the headers). */
struct as2_policy {
    const char *partner;            /* name for error text; may be NULL */
    const char *our_id;             /* expected AS2-To; NULL: not checked */
    const char *partner_id;         /* expected AS2-From; NULL: not checked */
    const struct as2_key *keys;     /* our decryption keys (several during
                                     * a rollover), tried in order */
    size_t nkeys;
    X509 *const *certs;             /* the partner's signing certificates */
    size_t ncerts;
    bool require_signed;
    bool require_encrypted;         /* encryption must be the outer layer */
    unsigned digests;               /* AS2_DIGEST_BITs allowed for
                                     * signatures and the MIC; 0: SHA-256,
                                     * SHA-384, SHA-512 */
    unsigned ciphers;               /* AS2_CIPHER_BITs; 0: the AES ones */
    uint64_t max_size;              /* payload bytes, also the bound on
                                     * decompression; 0: the default */
};

struct as2_unpacked {
    struct as2_request req;         /* AS2-From/To, Message-ID, the MDN
                                     * request (sync/async, URL, options);
                                     * filled as far as it could be read */
    enum as2_layer layers[3];       /* outermost first */
    size_t nlayers;
    bool is_signed, is_encrypted, is_compressed;
    struct as2_verified sig;        /* signer: digest, PSS, cert index */
    struct as2_decrypted dec;       /* cipher, key transport, key index */
    bool oaep;                      /* dec.kt is one of the OAEP ones */
    char filename[AS2_FILENAME_MAX + 1];    /* sanitized, may be "" */
    char content_type[AS2_CTYPE_MAX];       /* of the payload entity */
    uint64_t payload_bytes;

    /* The receipt: MIC "base64, alg" with alg spelled as the sender asked
     * (its signed-receipt-micalg), the algorithm, whether a signed
     * receipt was asked for, and the micalg to sign it with. */
    char mic[AS2_MIC_MAX];
    enum as2_micalg mic_alg;
    char mic_alg_name[16];          /* the sender's spelling */
    bool mdn_signed;

    /* On -1: what the negative MDN says. mdn_error is the RFC 4130
     * "processed/error:" value; with unsupported_micalg (mdn_error then
     * MDN_ERROR_NONE) it is "failed/failure: unsupported MIC-algorithms"
     * instead. MDN_ERROR_NONE on success. */
    enum mdn_error mdn_error;
    bool unsupported_micalg;
};

/* Unpack a received AS2 request: h are its HTTP headers, body its body
 * (read to the end). The payload (the innermost entity's body with its
 * Content-Transfer-Encoding undone) is written to payload; info is
 * zeroed and filled.
 *
 * The caller's duty: the payload is written while the message streams,
 * before the end of the body proves it authentic (the signature of a
 * multipart/signed, a GCM tag and CBC padding come after the content).
 * Only a return of 0 makes it good: on -1 the caller discards everything
 * written to payload, answers with a negative MDN (info->mdn_error or
 * info->unsupported_micalg) and stores nothing.
 *
 * Memory stays constant: a multipart/signed is verified in one pass, the
 * signed entity digested while it streams to payload and the signature
 * part checked at the end (as2_cms_verify_digested); the MIC is computed
 * on the same pass. When an inner entity fails, the encryption or
 * compression around it is still read to its end, so that its own
 * verdict (a bad tag, padding or zlib stream) is the one reported; body
 * is read to its end on success, not always on failure.
 *
 * Policy refusals (each -1 with info->mdn_error):
 *   unsigned when signing is required, unencrypted when encryption is
 *   required, a digest or cipher the policy does not allow, a required
 *   MIC algorithm list with nothing acceptable: insufficient-message-
 *   security (or unsupported_micalg); decryption failures (no key of
 *   ours, tampering, padding/tag): decryption-failed; a signer not among
 *   the partner's certificates or a bad signature: authentication-failed;
 *   content not matching the signature: integrity-check-failed;
 *   corrupt or oversized compressed data: decompression-failed; anything
 *   else (malformed MIME, unexpected Content-Type, a layer given twice,
 *   a payload over max_size, write errors): unexpected-processing-error. */
int as2_unpack(const struct as2_policy *pol, const struct mime_headers *h,
               BIO *body, BIO *payload, struct as2_unpacked *info,
               struct error *err);

/* Reduce a received filename to its last path component without control
 * characters, quotes or backslashes, at most AS2_FILENAME_MAX bytes; ""
 * for nothing usable ("", ".", ".."). */
void as2_filename_sanitize(const char *in, char out[AS2_FILENAME_MAX + 1]);

/* ---- MDNs ------------------------------------------------------------------------- */

struct as2_mdn_opts {
    const char *reporting_ua;       /* NULL: "Wharf" */
    const char *host;               /* right side of the MDN's Message-ID */
    /* Our profile key and certificate to sign with when the sender asked
     * for a signed receipt; NULL: never signed. Its digest is replaced by
     * the negotiated micalg. */
    const struct as2_signer *signer;
    const char *text;               /* the human-readable part; NULL: a
                                     * default sentence */
};

struct as2_mdn_built {
    struct mime_headers headers;    /* HTTP headers of the MDN; owned */
    char message_id[AS2_MSGID_MAX + 1];
    bool is_signed;
};

/* The MDN answering msg (as filled by as2_unpack, also on failure):
 * error MDN_ERROR_NONE says "processed" (with "processed/warning: TEXT"
 * when warning is set, e.g. "duplicate-document") and carries msg->mic;
 * any other error says "processed/error: NAME" and carries no MIC;
 * msg->unsupported_micalg says "failed/failure: unsupported
 * MIC-algorithms". Signed (multipart/signed around the multipart/report,
 * with the sender's micalg spelling) when msg->mdn_signed and o->signer;
 * otherwise the multipart/report itself. The body goes to out, the HTTP
 * headers (Content-Type, MIME-Version, AS2-Version, AS2-From (our id),
 * AS2-To, Message-ID, Subject) to res (zeroed first; free with
 * as2_mdn_built_free even on failure). */
int as2_mdn_make(const struct as2_mdn_opts *o, const struct as2_unpacked *msg,
                 enum mdn_error error, const char *warning, BIO *out,
                 struct as2_mdn_built *res, struct error *err);
void as2_mdn_built_free(struct as2_mdn_built *res);

struct as2_mdn_read_opts {
    const char *partner;            /* for error text; may be NULL */
    X509 *const *certs;             /* the partner's certificates */
    size_t ncerts;
    unsigned digests;               /* AS2_DIGEST_BITs; 0: SHA-256/384/512 */
    bool require_signed;
    size_t max_size;                /* 0: AS2_MDN_MAX_DEFAULT */
};

struct as2_mdn_received {
    struct mdn mdn;                 /* disposition, Original-Message-ID ... */
    bool is_signed;                 /* signed, and the signature verified */
    struct as2_verified sig;
    /* Received-Content-MIC as "base64, alg" for as2_mic_equal; "" when
     * the MDN has none. */
    char mic[AS2_MIC_MAX];
    /* The MDN's own AS2 headers, "" when absent. */
    char from[AS2_ID_MAX + 1], to[AS2_ID_MAX + 1];
    char message_id[AS2_MSGID_MAX + 1];
};

/* Read an MDN (h: its HTTP headers, the sync response's or the async
 * request's; body read to its end, at most max_size bytes): a
 * multipart/signed whose signature must verify with one of the partner's
 * certificates, or an unsigned multipart/report (refused when
 * require_signed). out is zeroed and filled. */
int as2_mdn_read(const struct as2_mdn_read_opts *o, const struct mime_headers *h,
                 BIO *body, struct as2_mdn_received *out, struct error *err);

/* 0 when r confirms the delivery of the message message_id whose MIC was
 * mic (NULL: not compared): "processed" (a warning allowed), the same
 * Original-Message-ID (angle brackets optional), and a
 * Received-Content-MIC equal to mic (as2_mic_equal: either algorithm
 * spelling); -1 with the reason otherwise (the partner's error
 * included). mic_optional: an unsigned receipt may carry no MIC at all
 * (RFC 4130 requires one only in signed receipts; the caller then knows
 * by !r->mdn.has_mic); a MIC that is there must still match, and a
 * signed receipt always needs one. */
int as2_mdn_check(const struct as2_mdn_received *r, const char *message_id,
                  const char *mic, bool mic_optional, struct error *err);

#endif
