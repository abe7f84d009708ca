/*
 * qr.c - the QR code of a secret text (the TOTP enrolment's otpauth URI)
 * as an SVG data URI: libqrencode encodes, this file only draws the dark
 * modules as rectangles (one per horizontal run) and base64-encodes the
 * SVG with OpenSSL.
 *
 * Must never: keep, log or return the text or the picture other than in
 * the struct secret handed to the caller; every intermediate buffer is
 * wiped before it is freed.
 */
#include "web/qr.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/secret.h"

#define QR_QUIET 4          /* modules of white border (the standard's) */
#define QR_MAX_TEXT 1024

struct qr_buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void qr_add(struct qr_buf *b, const char *text)
{
    size_t n = strlen(text);
    if (b->failed || b->len + n + 1 > b->cap) {
        b->failed = 1;
        return;
    }
    memcpy(b->p + b->len, text, n + 1);
    b->len += n;
}

/* The SVG text of code into b. */
static void qr_svg(const QRcode *code, struct qr_buf *b)
{
    char tmp[200];
    int w = code->width, side = w + 2 * QR_QUIET;
    snprintf(tmp, sizeof(tmp), "<svg xmlns=\"http://www.w3.org/2000/svg\" "
             "viewBox=\"0 0 %d %d\" shape-rendering=\"crispEdges\"><rect "
             "width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" "
             "d=\"", side, side, side, side);
    qr_add(b, tmp);
    for (int y = 0; y < w; y++) {
        for (int x = 0; x < w; x++) {
            if (!(code->data[y * w + x] & 1))
                continue;
            int run = 1;
            while (x + run < w && (code->data[y * w + x + run] & 1))
                run++;
            snprintf(tmp, sizeof(tmp), "M%d %dh%dv1h-%dz", x + QR_QUIET,
                     y + QR_QUIET, run, run);
            qr_add(b, tmp);
            x += run - 1;
        }
    }
    qr_add(b, "\"/></svg>");
    OPENSSL_cleanse(tmp, sizeof(tmp));
}

/* base64 of b after head, as a secret; NULL when out of memory. */
static struct secret *qr_encode(const struct qr_buf *b, const char *head)
{
    size_t hl = strlen(head), need = hl + 4 * ((b->len + 2) / 3) + 1;
    unsigned char *o = malloc(need);
    if (o == NULL)
        return NULL;
    memcpy(o, head, hl);
    int n = EVP_EncodeBlock(o + hl, (const unsigned char *)b->p, (int)b->len);
    struct secret *out = n < 0 ? NULL : secret_from(o, hl + (size_t)n);
    OPENSSL_cleanse(o, need);
    free(o);
    return out;
}

struct secret *web_qr_data_uri(const struct secret *text, struct error *err)
{
    size_t tl = secret_len(text);
    if (tl == 0 || tl > QR_MAX_TEXT)
        return error_set(err, "nothing to draw as a QR code"), NULL;
    char *z = malloc(tl + 1);
    if (z == NULL)
        return error_set(err, "out of memory"), NULL;
    memcpy(z, secret_data(text), tl);
    z[tl] = '\0';
    QRcode *code = QRcode_encodeString(z, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    OPENSSL_cleanse(z, tl);
    free(z);
    if (code == NULL)
        return error_set(err, "cannot encode the QR code"), NULL;
    size_t modules = (size_t)code->width * (size_t)code->width;
    struct qr_buf b = { .cap = 256 + modules * 24 };
    b.p = malloc(b.cap);
    b.failed = b.p == NULL;
    if (b.p)
        qr_svg(code, &b);
    OPENSSL_cleanse(code->data, modules);
    QRcode_free(code);
    struct secret *out = b.failed ? NULL
                                  : qr_encode(&b, "data:image/svg+xml;base64,");
    if (b.p) {
        OPENSSL_cleanse(b.p, b.cap);
        free(b.p);
    }
    if (out == NULL)
        error_set(err, "cannot draw the QR code");
    return out;
}

const char *web_qr_lib_version(void)
{
    return QRcode_APIVersionString();
}
