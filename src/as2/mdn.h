/*
 * mdn.h - Message Disposition Notifications for AS2 (RFC 3798/8098 as
 * profiled by RFC 4130 section 7): building the multipart/report that
 * answers a message (text part + message/disposition-notification part)
 * and parsing one that a partner sent back.
 *
 * Ownership: struct mdn is plain data (fixed-size strings, no heap); the
 * builders append to the caller's struct mime_buf (mime.h), which the
 * caller frees. Signing and verifying the MDN (multipart/signed around the
 * report) is the caller's business: the parser takes the report with any
 * signature already removed. Functions return 0 or -1 and fill err.
 */
#ifndef WHARF_AS2_MDN_H
#define WHARF_AS2_MDN_H

#include <stdbool.h>
#include <stddef.h>

#include "as2/as2_headers.h"
#include "as2/mime.h"
#include "util/error.h"

/* Reporting-UA longer than this is cut; a longer disposition description
 * is an error (cutting it could change what it says). */
#define MDN_TEXT_MAX 1024
#define MDN_MIC_MAX  128    /* base64 digest characters (SHA-512: 88) */
#define MDN_MAX_PARTS 16    /* parts of a multipart/report we look at */

/* RFC 4130 7.4.3 failure descriptions (free text after "failure:"). */
#define MDN_FAILURE_UNSUPPORTED_FORMAT "unsupported format"
#define MDN_FAILURE_UNSUPPORTED_MICALG "unsupported MIC-algorithms"

enum mdn_type {
    MDN_TYPE_PROCESSED = 0,
    MDN_TYPE_FAILED,
    MDN_TYPE_OTHER          /* displayed, deleted, ... (not AS2) */
};

enum mdn_modifier {
    MDN_MOD_NONE = 0,
    MDN_MOD_ERROR,
    MDN_MOD_WARNING,
    MDN_MOD_FAILURE,
    MDN_MOD_OTHER           /* the whole modifier text is in description */
};

/* The "processed/error:" values of RFC 4130 7.4.3. */
enum mdn_error {
    MDN_ERROR_NONE = 0,
    MDN_ERROR_AUTHENTICATION_FAILED,
    MDN_ERROR_DECOMPRESSION_FAILED,
    MDN_ERROR_DECRYPTION_FAILED,
    MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY,
    MDN_ERROR_INTEGRITY_CHECK_FAILED,
    MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
    MDN_ERROR_OTHER         /* an error text we do not know */
};

/* One MDN, as built or as parsed. Empty strings mean "absent". */
struct mdn {
    char reporting_ua[MDN_TEXT_MAX];
    char original_recipient[AS2_ID_MAX + 1];    /* "rfc822; ID" -> ID */
    char final_recipient[AS2_ID_MAX + 1];
    char original_message_id[AS2_MSGID_MAX + 1];
    bool manual_action;     /* false: automatic-action */
    bool sent_manually;     /* false: MDN-sent-automatically */
    enum mdn_type type;
    enum mdn_modifier modifier;
    enum mdn_error error;   /* set with MDN_MOD_ERROR */
    char description[MDN_TEXT_MAX];  /* text after "error:", "warning:" ... */
    bool has_mic;
    char mic[MDN_MIC_MAX + 1];       /* base64 digest */
    enum as2_micalg mic_alg;
    char mic_alg_name[32];           /* as received (parse only) */
};

/* "decryption-failed" etc.; NULL for NONE and OTHER. Static strings. */
const char *mdn_error_name(enum mdn_error e);
/* Case-insensitive; MDN_ERROR_OTHER for text we do not know, NONE for "". */
enum mdn_error mdn_error_from_name(const char *s);

/* processed, with no modifier or only a warning. */
bool mdn_is_success(const struct mdn *m);

/* The message/disposition-notification entity (its headers, the empty line
 * and the fields) appended to out. Needs final_recipient,
 * original_message_id; the Disposition text comes from type, modifier and
 * description (for MDN_MOD_ERROR with an empty description, the name of
 * error). The MIC algorithm is spelled "sha-256", or "sha256" when
 * micalg_no_hyphen. */
int mdn_build_notification(struct mime_buf *out, const struct mdn *m,
                           bool micalg_no_hyphen, struct error *err);

/* The multipart/report body (no headers of its own: its Content-Type is
 * mime_report_content_type(boundary)): a text/plain part (text, or a
 * default sentence when NULL; line ends canonicalized to CRLF) and the
 * notification. */
int mdn_build_report(struct mime_buf *out, const char *boundary,
                     const struct mdn *m, const char *text,
                     bool micalg_no_hyphen, struct error *err);

/* The same as a whole entity: a Content-Type header, the empty line and
 * the report body; this is what gets signed for a signed MDN. */
int mdn_build_entity(struct mime_buf *out, const char *boundary,
                     const struct mdn *m, const char *text,
                     bool micalg_no_hyphen, struct error *err);

/* Parse a received MDN body whose Content-Type value is content_type:
 * multipart/report (report-type disposition-notification, or none) with
 * exactly one message/disposition-notification part, or a bare
 * message/disposition-notification. Fields are header-like (folding
 * allowed); unknown fields are ignored; Disposition is required; a
 * repeated Disposition, Final-Recipient, Original-Recipient,
 * Original-Message-ID or Received-Content-MIC is an error. */
int mdn_parse(const char *content_type, const char *body, size_t len,
              struct mdn *out, struct error *err);

/* The same for a whole entity (its header block, then the body), e.g. the
 * first part of a signed MDN. */
int mdn_parse_entity(const char *entity, size_t len, struct mdn *out,
                     struct error *err);

#endif
