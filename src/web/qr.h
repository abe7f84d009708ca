/*
 * qr.h - QR codes for the console, drawn on the server with Debian's
 * libqrencode: the TOTP enrolment's otpauth URI becomes a picture without
 * any outside service (R1) or JavaScript encoder.
 */
#ifndef WHARF_WEB_QR_H
#define WHARF_WEB_QR_H

#include "util/error.h"

struct secret;

/* text as a QR code (error correction M) in an SVG image, as a
 * "data:image/svg+xml;base64,..." URI for an <img src>. The picture
 * carries the text, so it is a secret like it: caller owns and frees it
 * with secret_free. NULL with err. */
struct secret *web_qr_data_uri(const struct secret *text, struct error *err);

/* libqrencode's version, as it says at run time (R10). */
const char *web_qr_lib_version(void);

#endif
