/*
 * flowfile.c - reading the files a flow document gives (see flowfile.h).
 *
 * Owns nothing beyond a call: what it reads goes straight into a struct
 * secret the caller owns. Its errors say "for KEY, ..." rather than
 * "KEY: ...": the API passes errors through log_redact, which masks what
 * follows a secret-named key and a colon. Must never: read a file for an API caller; read
 * a file inside the data directory, a FIFO, a device or a symlink; put a
 * byte of what it read into an error message.
 */
#include "core/flowfile.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/confine.h"
#include "util/secret.h"

enum flowfile_kind flowfile_kind(const json_t *v)
{
    if (v == NULL)
        return FLOWFILE_NONE;
    if (json_is_string(v))
        return json_string_value(v)[0] == '/' ? FLOWFILE_PATH : FLOWFILE_BAD;
    if (!json_is_object(v) || json_object_size(v) != 1)
        return FLOWFILE_BAD;
    if (json_is_string(json_object_get(v, "content")))
        return FLOWFILE_CONTENT;
    if (json_is_string(json_object_get(v, "base64")))
        return FLOWFILE_BASE64;
    if (json_is_string(json_object_get(v, "sealed")))
        return FLOWFILE_SEALED;
    return FLOWFILE_BAD;
}

int flowfile_check(const char *what, const json_t *v, int required,
                   int sealed_ok, struct error *err)
{
    enum flowfile_kind k = flowfile_kind(v);
    if (k == FLOWFILE_NONE)
        return required ? error_set(err, "needs %s", what) : 0;
    if (k == FLOWFILE_BAD || (k == FLOWFILE_SEALED && !sealed_ok))
        return error_set(err, "%s must be an absolute file path (flow import "
                         "from the CLI only), {\"content\": \"...\"} or "
                         "{\"base64\": \"...\"}%s", what, sealed_ok
                         ? ", or {\"sealed\": \"...\"} as flow export "
                           "writes it" : "");
    return 0;
}

const char *flowfile_ref(const json_t *v)
{
    return json_string_value(json_object_get(v, "sealed"));
}

json_t *flowfile_sealed(const char *ref)
{
    return json_pack("{s:s}", "sealed", ref);
}

json_t *flowfile_content(const char *text, size_t len)
{
    return json_pack("{s:s%}", "content", text, len);
}

/* A regular file of at most max bytes, read without blocking on a FIFO. */
static struct secret *read_plain(const char *what, const char *path,
                                 size_t max, struct error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat sb;
    struct secret *s = NULL;
    if (fd < 0) {
        error_errno(err, errno, "for %s, cannot open %s", what, path);
        return NULL;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
        error_set(err, "for %s, %s is not a regular file", what, path);
    else if ((size_t)sb.st_size > max)
        error_set(err, "for %s, %s is larger than %zu bytes", what, path, max);
    else if ((s = secret_new((size_t)sb.st_size)) == NULL)
        error_set(err, "out of memory");
    size_t got = 0;
    while (s && got < secret_len(s)) {
        ssize_t n = read(fd, secret_data_mut(s) + got, secret_len(s) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            error_errno(err, n < 0 ? errno : EIO, "for %s, cannot read %s", what,
                        path);
            secret_free(s);
            s = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    return s;
}

static struct secret *read_path(const char *what, const char *path,
                                enum flow_origin origin, int secret,
                                size_t max, struct error *err)
{
    if (origin == FLOW_FROM_API) {
        error_set(err, "for %s, the API does not read files on the server; send "
                  "the content instead: {\"content\": \"...\"} (text) or "
                  "{\"base64\": \"...\"} (binary)", what);
        return NULL;
    }
    if (confine_in_data_dir(path)) {
        error_set(err, "for %s, %s lies inside the data directory, which no "
                  "flow may name", what, path);
        return NULL;
    }
    struct secret *s = secret ? secret_from_file(path, err)
                              : read_plain(what, path, max, err);
    if (s && secret_len(s) > max) {
        error_set(err, "for %s, %s is larger than %zu bytes", what, path, max);
        secret_free(s);
        return NULL;
    }
    if (s == NULL && secret)
        error_prefix(err, "for %s", what);
    return s;
}

static struct secret *decode_base64(const char *what, const char *b64,
                                    size_t max, struct error *err)
{
    size_t n = strlen(b64);
    if (n / 4 * 3 > max + 3) {
        error_set(err, "for %s, the content is larger than %zu bytes", what, max);
        return NULL;
    }
    struct secret *s = secret_new(n / 4 * 3 + 3);
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int out = 0, fin = 0, ok = s && ctx;
    if (ok) {
        EVP_DecodeInit(ctx);
        ok = EVP_DecodeUpdate(ctx, secret_data_mut(s), &out,
                              (const unsigned char *)b64, (int)n) >= 0 &&
             EVP_DecodeFinal(ctx, secret_data_mut(s) + out, &fin) == 1;
    }
    EVP_ENCODE_CTX_free(ctx);
    if (!ok || (size_t)(out + fin) > max || out + fin == 0) {
        error_set(err, "for %s, \"base64\" is not valid base64 content", what);
        secret_free(s);
        return NULL;
    }
    struct secret *exact = secret_from(secret_data(s), (size_t)(out + fin));
    secret_free(s);
    return exact;
}

/* 1 when s is empty or only white space. */
static int blank(const struct secret *s)
{
    const unsigned char *p = secret_data(s);
    for (size_t i = 0; i < secret_len(s); i++)
        if (p[i] == '\0' || !strchr(" \t\r\n\v\f", p[i]))
            return 0;
    return 1;
}

struct secret *flowfile_read(const char *what, const json_t *v,
                             enum flow_origin origin, int secret, size_t max,
                             struct error *err)
{
    struct secret *s = NULL;
    const char *text;
    switch (flowfile_kind(v)) {
    case FLOWFILE_PATH:
        return read_path(what, json_string_value(v), origin, secret, max, err);
    case FLOWFILE_CONTENT:
        text = json_string_value(json_object_get(v, "content"));
        if (strlen(text) > max)
            error_set(err, "for %s, the content is larger than %zu bytes", what,
                      max);
        else if ((s = secret_from(text, strlen(text))) == NULL)
            error_set(err, "out of memory");
        break;
    case FLOWFILE_BASE64:
        s = decode_base64(what, json_string_value(json_object_get(v, "base64")),
                          max, err);
        break;
    default:
        flowfile_check(what, v, 1, 0, err);
        return NULL;
    }
    if (s && blank(s)) {
        error_set(err, "%s is empty (or only white space)", what);
        secret_free(s);
        s = NULL;
    }
    return s;
}
