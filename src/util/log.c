/*
 * log.c - owns Wharf's diagnostics log (R5): the global level, the open
 * DIR/wharf.log, its size-based rotation and the optional copy on stderr,
 * all behind one mutex (levels are atomics so log_enabled() takes no lock),
 * and reopening it after an outside rename (SIGHUP). It also owns the
 * table of repeating conditions (log_repeat: one line, then a summary per
 * interval, then "recovered"), and log_redact(), the last line of defence
 * for R6.
 *
 * A line is formatted in fixed stack buffers (never malloc), then redacted,
 * then escaped so that one event is exactly one line; only then, under the
 * mutex, the prefix is added and the line is written with one write(2) on
 * an O_APPEND descriptor, so lines from threads never interleave.
 *
 * It must never write a line that has not been through log_redact(), never
 * send anything off the machine, never call log_write() from the write
 * path itself (its own failures go to stderr; only the log_repeat wrappers
 * call it, holding no lock), and never change errno for its caller.
 */
#include "util/log.h"

#include "util/fsx.h"
#include "util/id.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_TEXT_MAX   8192   /* formatted text, before escaping */
#define LOG_BODY_MAX   8192   /* escaped text, without the newline */
#define LOG_PREFIX_MAX 512    /* time, level, conn=, msg= */
#define LOG_NAME_MAX   160    /* escaped connector name or message id */
#define LOG_CUT_BACK   1024   /* a cut text backs up to a space this far */
#define LOG_KEEP_MAX   999
#define LOG_DIR_MAX    (PATH_MAX - 32)  /* room for "/wharf.log.NNN" */
#define LOG_DEFAULT_MAX_BYTES ((size_t)10 * 1024 * 1024)
#define LOG_DEFAULT_KEEP 5

static struct {
    pthread_mutex_t mu;
    int fd;                 /* DIR/wharf.log, -1 when not open */
    size_t size;            /* bytes in it (as far as this process knows) */
    size_t max_bytes;       /* 0: never rotate */
    int keep;
    bool write_failed;      /* reported once on stderr until a write works */
    char dir[LOG_DIR_MAX];
} log_g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .fd = -1,
    .max_bytes = LOG_DEFAULT_MAX_BYTES,
    .keep = LOG_DEFAULT_KEEP,
};

static atomic_int log_level_g = LOG_INFO;
static atomic_bool log_stderr_g = true;

static const char *const log_names[] = {
    "error", "warning", "info", "debug", "trace"
};
static const char *const log_tags[] = {
    "ERROR", "WARN", "INFO", "DEBUG", "TRACE"
};

/* ------------------------------------------------------------------ */
/* levels                                                              */

int log_level_parse(const char *name, enum log_level *out)
{
    if (name == NULL)
        return -1;
    for (int i = LOG_ERROR; i <= LOG_TRACE; i++) {
        if (strcasecmp(name, log_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warn") == 0) {
        *out = LOG_WARNING;
        return 0;
    }
    return -1;
}

const char *log_level_name(enum log_level level)
{
    if ((int)level < LOG_ERROR || (int)level > LOG_TRACE)
        return "unknown";
    return log_names[level];
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level_g, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level_g);
}

void log_set_stderr(bool on)
{
    atomic_store(&log_stderr_g, on);
}

bool log_enabled(enum log_level level, int conn_level)
{
    int limit = conn_level >= 0 ? conn_level
                                : atomic_load_explicit(&log_level_g,
                                                       memory_order_relaxed);
    return (int)level <= limit;
}

/* ------------------------------------------------------------------ */
/* the file and its rotation                                           */

/* DIR/wharf.log for k == 0, DIR/wharf.log.k otherwise. */
static void log_file_path(const char *dir, int k, char *out, size_t outsz)
{
    if (k == 0)
        snprintf(out, outsz, "%s/wharf.log", dir);
    else
        snprintf(out, outsz, "%s/wharf.log.%d", dir, k);
}

static int log_open_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY,
                0600);
}

static size_t log_write_all(int fd, const char *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    return done;
}

/* The logger's own trouble goes to stderr, never through log_write. */
static void log_complain(const char *what, const char *path, int errnum)
{
    char msg[PATH_MAX + 256];
    int n = snprintf(msg, sizeof(msg), "wharf: log: %s %s: %s\n", what, path,
                     strerror(errnum));
    if (n > 0)
        log_write_all(STDERR_FILENO, msg,
                      (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

/* wharf.log.(keep-1) -> wharf.log.keep ... wharf.log -> wharf.log.1. */
static int log_shift_files(void)
{
    char from[PATH_MAX], to[PATH_MAX];
    if (log_g.keep == 0) {
        log_file_path(log_g.dir, 0, from, sizeof(from));
        if (unlink(from) != 0 && errno != ENOENT) {
            log_complain("cannot remove", from, errno);
            return -1;
        }
        return 0;
    }
    for (int k = log_g.keep; k >= 1; k--) {
        log_file_path(log_g.dir, k - 1, from, sizeof(from));
        log_file_path(log_g.dir, k, to, sizeof(to));
        if (rename(from, to) != 0 && errno != ENOENT) {
            log_complain("cannot rotate", from, errno);
            return -1;
        }
    }
    return 0;
}

/* Called with the mutex held. On any failure the current descriptor stays
 * in use (no line is lost) and the next attempt waits for another
 * max_bytes, so a broken directory does not cost renames on every line. */
static void log_rotate_locked(void)
{
    char path[PATH_MAX];
    log_g.size = 0;
    if (log_shift_files() != 0)
        return;
    log_file_path(log_g.dir, 0, path, sizeof(path));
    int fd = log_open_file(path);
    if (fd < 0) {
        log_complain("cannot reopen", path, errno);
        return;
    }
    close(log_g.fd);
    log_g.fd = fd;
}

int log_open(const char *dir, enum log_level level, bool to_stderr,
             struct error *err)
{
    log_set_level(level);
    log_set_stderr(to_stderr);
    if (dir == NULL) {
        log_close();
        return 0;
    }
    size_t dlen = strlen(dir);
    if (dlen >= LOG_DIR_MAX)
        return error_set(err, "log directory %s: path is too long", dir);
    if (fsx_mkdir_p(dir, 0700, err) != 0)
        return -1;
    char path[PATH_MAX];
    log_file_path(dir, 0, path, sizeof(path));
    int fd = log_open_file(path);
    struct stat st;
    if (fd < 0)
        return error_errno(err, errno, "cannot open log file %s", path);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return error_errno(err, e, "cannot stat log file %s", path);
    }
    pthread_mutex_lock(&log_g.mu);
    if (log_g.fd >= 0)
        close(log_g.fd);
    log_g.fd = fd;
    log_g.size = (size_t)st.st_size;
    log_g.write_failed = false;
    memcpy(log_g.dir, dir, dlen + 1);
    pthread_mutex_unlock(&log_g.mu);
    return 0;
}

void log_close(void)
{
    pthread_mutex_lock(&log_g.mu);
    if (log_g.fd >= 0)
        close(log_g.fd);
    log_g.fd = -1;
    log_g.size = 0;
    log_g.dir[0] = '\0';
    pthread_mutex_unlock(&log_g.mu);
}

void log_set_rotation(size_t max_bytes, int keep)
{
    if (keep < 0)
        keep = 0;
    if (keep > LOG_KEEP_MAX)
        keep = LOG_KEEP_MAX;
    pthread_mutex_lock(&log_g.mu);
    log_g.max_bytes = max_bytes;
    log_g.keep = keep;
    pthread_mutex_unlock(&log_g.mu);
}

int log_reopen(struct error *err)
{
    char path[PATH_MAX];
    struct stat st;
    pthread_mutex_lock(&log_g.mu);
    if (log_g.fd < 0 || log_g.dir[0] == '\0') {
        pthread_mutex_unlock(&log_g.mu);
        return error_set(err, "no log file is open");
    }
    log_file_path(log_g.dir, 0, path, sizeof(path));
    int fd = log_open_file(path);
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        pthread_mutex_unlock(&log_g.mu);
        return error_errno(err, e, "cannot reopen log file %s (still "
                           "writing to the old one)", path);
    }
    close(log_g.fd);
    log_g.fd = fd;
    log_g.size = (size_t)st.st_size;
    log_g.write_failed = false;
    pthread_mutex_unlock(&log_g.mu);
    return 0;
}

/* ------------------------------------------------------------------ */
/* formatting a line                                                   */

static bool log_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

/* text holds len bytes (its buffer len + 1): end it with "...", backing up
 * to a space when one is near so that no partial token survives the cut (a
 * URL cut before its '@' would otherwise escape redaction). */
static void log_cut(char *text, size_t len)
{
    size_t end = len - 3;
    size_t lim = end > LOG_CUT_BACK ? end - LOG_CUT_BACK : 0;
    for (size_t i = end; i > lim; i--) {
        if (log_is_space(text[i - 1])) {
            end = i;
            break;
        }
    }
    memcpy(text + end, "...", 4);
}

__attribute__((format(printf, 3, 0)))
static void log_format_text(char *text, size_t size, const char *fmt,
                            va_list ap)
{
    int n = vsnprintf(text, size, fmt, ap);
    if (n < 0)
        snprintf(text, size, "(log text could not be formatted)");
    else if ((size_t)n >= size)
        log_cut(text, size - 1);
}

/* Escape src into dst (at most cap bytes, no NUL): control characters
 * become \n \r \t or \xNN. If src does not fit, the output ends in "...".
 * Returns the length written. */
static size_t log_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char e[4];
        size_t k = 2;
        e[0] = '\\';
        if (*p == '\n')
            e[1] = 'n';
        else if (*p == '\r')
            e[1] = 'r';
        else if (*p == '\t')
            e[1] = 't';
        else if (*p < 0x20 || *p == 0x7f) {
            e[1] = 'x';
            e[2] = hex[*p >> 4];
            e[3] = hex[*p & 0x0f];
            k = 4;
        } else {
            e[0] = (char)*p;
            k = 1;
        }
        if (o + k + 3 > cap) {
            memcpy(dst + o, "...", 3);
            return o + 3;
        }
        memcpy(dst + o, e, k);
        o += k;
    }
    return o;
}

/* Escape a connector name or message id into a NUL-terminated buffer. */
static const char *log_escape_name(const char *src, char *buf, size_t bufsz)
{
    if (src == NULL)
        return NULL;
    size_t n = log_escape(buf, bufsz - 1, src);
    buf[n] = '\0';
    return buf;
}

static size_t log_prefix(char *out, size_t outsz, enum log_level level,
                         const char *conn, const char *msgid)
{
    char ts[32];
    time_iso(time_now_ms(), ts, sizeof(ts));
    int lv = (int)level < LOG_ERROR ? LOG_ERROR
             : (int)level > LOG_TRACE ? LOG_TRACE : (int)level;
    int n = snprintf(out, outsz, "%s %-5s %s%s%s%s%s%s", ts, log_tags[lv],
                     conn ? "conn=" : "", conn ? conn : "", conn ? " " : "",
                     msgid ? "msg=" : "", msgid ? msgid : "",
                     msgid ? " " : "");
    if (n < 0)
        return 0;
    return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

/* With the mutex held: rotate if needed, then write to the file. */
static void log_to_file_locked(const char *line, size_t len)
{
    if (log_g.fd < 0)
        return;
    if (log_g.max_bytes > 0 && log_g.size > 0 &&
        log_g.size + len > log_g.max_bytes)
        log_rotate_locked();
    size_t done = log_write_all(log_g.fd, line, len);
    log_g.size += done;
    if (done == len) {
        log_g.write_failed = false;
    } else if (!log_g.write_failed) {
        log_g.write_failed = true;
        log_complain("cannot write to the log file in", log_g.dir, errno);
    }
}

/* body has LOG_PREFIX_MAX free bytes in front of it (see log_write). */
static void log_emit(enum log_level level, const char *conn,
                     const char *msgid, char *body, size_t blen)
{
    char pre[LOG_PREFIX_MAX];
    pthread_mutex_lock(&log_g.mu);
    size_t plen = log_prefix(pre, sizeof(pre), level, conn, msgid);
    char *line = body - plen;
    memcpy(line, pre, plen);
    log_to_file_locked(line, plen + blen);
    if (atomic_load(&log_stderr_g))
        log_write_all(STDERR_FILENO, line, plen + blen);
    pthread_mutex_unlock(&log_g.mu);
}

void log_write(enum log_level level, int conn_level, const char *connector,
               const char *msgid, const char *fmt, ...)
{
    if (!log_enabled(level, conn_level) || fmt == NULL)
        return;
    int saved_errno = errno;
    char text[LOG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    log_format_text(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_redact(text);

    char conn_buf[LOG_NAME_MAX], msg_buf[LOG_NAME_MAX];
    const char *conn = log_escape_name(connector, conn_buf, sizeof(conn_buf));
    const char *mid = log_escape_name(msgid, msg_buf, sizeof(msg_buf));

    char line[LOG_PREFIX_MAX + LOG_BODY_MAX + 1];
    char *body = line + LOG_PREFIX_MAX;
    size_t blen = log_escape(body, LOG_BODY_MAX, text);
    body[blen++] = '\n';
    log_emit(level, conn, mid, body, blen);
    errno = saved_errno;
}

/* ------------------------------------------------------------------ */
/* repeated conditions                                                 */
/*
 * A small table of keys under its own mutex (never held while a line is
 * written). A slot is free when its key is "". Times are monotonic.
 */

#define LOG_KEY_MAX 128

struct log_rep {
    char key[LOG_KEY_MAX];
    int64_t since_ms;       /* first occurrence */
    int64_t last_ms;        /* last line written */
    long total;             /* occurrences since the first */
    long unwritten;         /* occurrences since the last line written */
};

static struct {
    pthread_mutex_t mu;
    struct log_rep e[LOG_REPEAT_KEYS];
} log_rep_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

static _Atomic int64_t log_rep_interval_g = 60000;

enum log_rep_verdict { REP_UNTRACKED, REP_FIRST, REP_SUMMARY, REP_QUIET };

void log_set_repeat_interval(int64_t ms)
{
    atomic_store(&log_rep_interval_g, ms < 0 ? 0 : ms);
}

/* With log_rep_g.mu held: the slot of key, or NULL. */
static struct log_rep *log_rep_find(const char *key)
{
    for (int i = 0; i < LOG_REPEAT_KEYS; i++)
        if (log_rep_g.e[i].key[0] && strcmp(log_rep_g.e[i].key, key) == 0)
            return &log_rep_g.e[i];
    return NULL;
}

/* Count one occurrence of key at now; *n and *span_ms describe what the
 * summary line covers. */
static enum log_rep_verdict log_rep_count(const char *key, int64_t now,
                                          long *n, int64_t *span_ms)
{
    if (key == NULL || key[0] == '\0' || strlen(key) >= LOG_KEY_MAX)
        return REP_UNTRACKED;
    enum log_rep_verdict v = REP_QUIET;
    pthread_mutex_lock(&log_rep_g.mu);
    struct log_rep *r = log_rep_find(key);
    if (r == NULL) {
        for (int i = 0; r == NULL && i < LOG_REPEAT_KEYS; i++)
            if (log_rep_g.e[i].key[0] == '\0')
                r = &log_rep_g.e[i];
        if (r == NULL) {
            pthread_mutex_unlock(&log_rep_g.mu);
            return REP_UNTRACKED;
        }
        snprintf(r->key, sizeof(r->key), "%s", key);
        r->since_ms = r->last_ms = now;
        r->total = 1;
        r->unwritten = 0;
        v = REP_FIRST;
    } else {
        r->total++;
        r->unwritten++;
        if (now - r->last_ms >= atomic_load(&log_rep_interval_g)) {
            v = REP_SUMMARY;
            *n = r->unwritten;
            *span_ms = now - r->last_ms;
            r->unwritten = 0;
            r->last_ms = now;
        }
    }
    pthread_mutex_unlock(&log_rep_g.mu);
    return v;
}

static long long log_secs(int64_t ms)
{
    return (long long)((ms + 500) / 1000);
}

void log_repeat(enum log_level level, int conn_level, const char *connector,
                const char *key, const char *fmt, ...)
{
    if (fmt == NULL)
        return;
    int saved_errno = errno;
    char text[LOG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    log_format_text(text, sizeof(text), fmt, ap);
    va_end(ap);
    long n = 0;
    int64_t span = 0;
    switch (log_rep_count(key, time_mono_ms(), &n, &span)) {
    case REP_FIRST:
        log_write(level, conn_level, connector, NULL, "%s (repeats are "
                  "counted and summarized every %lld s)", text,
                  log_secs(atomic_load(&log_rep_interval_g)));
        break;
    case REP_SUMMARY:
        log_write(level, conn_level, connector, NULL, "%s (repeated %ld "
                  "times in the last %lld s)", text, n, log_secs(span));
        break;
    case REP_UNTRACKED:
        log_write(level, conn_level, connector, NULL, "%s", text);
        break;
    case REP_QUIET:
        break;
    }
    errno = saved_errno;
}

int log_recovered(enum log_level level, int conn_level, const char *connector,
                  const char *key, const char *fmt, ...)
{
    if (key == NULL || key[0] == '\0' || fmt == NULL)
        return 0;
    int saved_errno = errno;
    pthread_mutex_lock(&log_rep_g.mu);
    struct log_rep *r = log_rep_find(key);
    long total = r ? r->total : 0;
    int64_t span = r ? time_mono_ms() - r->since_ms : 0;
    if (r)
        memset(r, 0, sizeof(*r));
    pthread_mutex_unlock(&log_rep_g.mu);
    if (total == 0)
        return 0;
    char text[LOG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    log_format_text(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_write(level, conn_level, connector, NULL, "%s after %ld failure%s "
              "in %lld s", text, total, total == 1 ? "" : "s",
              log_secs(span));
    errno = saved_errno;
    return 1;
}

/* ------------------------------------------------------------------ */
/* redaction (R6)                                                      */
/*
 * One left-to-right pass with a read index r and a write index w <= r over
 * the same buffer: text is copied from r to w, masked spans are replaced by
 * "***" (or fewer '*' for shorter values), so the result is never longer.
 * Every scan stops at NUL and every byte is looked at a bounded number of
 * times, so the cost is linear in the length of s.
 */

struct redact {
    char *s;
    size_t r;   /* next byte to read */
    size_t w;   /* next byte to write */
};

#define REDACT_NONE ((size_t)-1)

/* Copy input up to (not including) index end to the output. */
static void redact_copy(struct redact *x, size_t end)
{
    size_t n = end - x->r;
    if (x->w != x->r)
        memmove(x->s + x->w, x->s + x->r, n);
    x->w += n;
    x->r = end;
}

/* Replace input [r, end) with at most three '*'. */
static void redact_mask(struct redact *x, size_t end)
{
    size_t n = end - x->r, m = n < 3 ? n : 3;
    memset(x->s + x->w, '*', m);
    x->w += m;
    x->r = end;
}

/* Copy up to start, mask start..end. */
static void redact_span(struct redact *x, size_t start, size_t end)
{
    redact_copy(x, start);
    redact_mask(x, end);
}

static char redact_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Lower case, and '-' counts as '_' ("X-Api-Key" ~ "x_api_key"). */
static char redact_norm(char c)
{
    c = redact_lower(c);
    return c == '-' ? '_' : c;
}

static bool redact_is_keych(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static bool redact_is_hspace(char c)
{
    return c == ' ' || c == '\t';
}

/* Does k[at .. at+strlen(word)) equal word (normalized)? */
static bool redact_word_at(const char *k, size_t n, size_t at, const char *word)
{
    size_t i = 0;
    for (; word[i] != '\0'; i++)
        if (at + i >= n || redact_norm(k[at + i]) != word[i])
            return false;
    return true;
}

static bool redact_contains(const char *k, size_t n, const char *word)
{
    size_t m = strlen(word);
    for (size_t at = 0; at + m <= n; at++)
        if (redact_word_at(k, n, at, word))
            return true;
    return false;
}

static bool redact_ends_with(const char *k, size_t n, const char *word)
{
    size_t m = strlen(word);
    return n >= m && redact_word_at(k, n, n - m, word);
}

enum redact_kind { REDACT_PLAIN, REDACT_VALUE, REDACT_HEADER };

/* Is the key k (n bytes) named like a secret? HEADER: an HTTP credential
 * header whose value, after ':', runs to the end of the line. */
static enum redact_kind redact_key_kind(const char *k, size_t n)
{
    static const char *const words[] = {
        "password", "passwd", "passphrase", "secret", "token", "apikey",
        "api_key", "session", "private_key", "credential", "authorization",
        "cookie",
    };
    if (redact_ends_with(k, n, "authorization") ||
        redact_ends_with(k, n, "cookie"))
        return REDACT_HEADER;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (redact_contains(k, n, words[i]))
            return REDACT_VALUE;
    if (redact_ends_with(k, n, "_key") ||
        (n == 3 && redact_word_at(k, n, 0, "key")))
        return REDACT_VALUE;
    return REDACT_PLAIN;
}

/* How a key was separated from its value. "key: value" (a blank after the
 * colon) is the header or YAML shape, whose value runs to the end of line. */
enum redact_sep { REDACT_EQUALS, REDACT_COLON, REDACT_COLON_BLANK };

/* After a key ending at t: an optional closing quote (" ' or \"), blanks,
 * '=' or ':', blanks. Returns the index of the value or REDACT_NONE. */
static size_t redact_after_key(const char *s, size_t t, enum redact_sep *sep)
{
    size_t p = t;
    if (s[p] == '\\' && s[p + 1] == '"')
        p += 2;
    else if (s[p] == '"' || s[p] == '\'')
        p++;
    while (redact_is_hspace(s[p]))
        p++;
    if (s[p] != '=' && s[p] != ':')
        return REDACT_NONE;
    bool colon = s[p++] == ':';
    *sep = !colon ? REDACT_EQUALS
           : redact_is_hspace(s[p]) ? REDACT_COLON_BLANK : REDACT_COLON;
    while (redact_is_hspace(s[p]))
        p++;
    return p;
}

static bool redact_is_eol(char c)
{
    return c == '\0' || c == '\n' || c == '\r';
}

/* A quoted value starting after the quote q at index p: up to the closing
 * quote (backslash escapes skipped) or the end of the line. */
static size_t redact_quoted_end(const char *s, size_t p, char q)
{
    while (s[p] != q && !redact_is_eol(s[p])) {
        if (s[p] == '\\' && s[p + 1] != '\0' && s[p + 1] != '\n')
            p++;
        p++;
    }
    return p;
}

/* A value quoted with \" (JSON inside a JSON string): up to the next \". */
static size_t redact_escquoted_end(const char *s, size_t p)
{
    while (!redact_is_eol(s[p]) && !(s[p] == '\\' && s[p + 1] == '"'))
        p++;
    return p;
}

/* An unquoted value: up to a blank, '&' (query strings) or a quote. */
static size_t redact_bare_end(const char *s, size_t p)
{
    while (s[p] != '\0' && !log_is_space(s[p]) && s[p] != '&' &&
           s[p] != '"' && s[p] != '\'')
        p++;
    return p;
}

/* In "Authorization: Basic xyz" keep the scheme name: it tells a reader
 * which kind of credential was sent and reveals nothing. Returns where the
 * masked part starts. */
static size_t redact_skip_scheme(const char *s, size_t v)
{
    static const char *const schemes[] = {
        "basic", "bearer", "digest", "negotiate", "ntlm", "hoba", "mutual",
        "aws4_hmac_sha256",
    };
    size_t t = v;
    while (redact_is_keych(s[t]))
        t++;
    if (!redact_is_hspace(s[t]))
        return v;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (t - v == strlen(schemes[i]) &&
            redact_word_at(s + v, t - v, 0, schemes[i])) {
            while (redact_is_hspace(s[t]))
                t++;
            return t;
        }
    }
    return v;
}

/* Does a secret-named key with its separator stand where a bare value was
 * expected ("api_key= password: x")? Then returns the end of that key and
 * sets *kind to its kind; else REDACT_NONE. */
static size_t redact_nested_key(const char *s, size_t v,
                                enum redact_kind *kind)
{
    size_t t = v;
    while (redact_is_keych(s[t]))
        t++;
    if (t == v)
        return REDACT_NONE;
    enum redact_kind k = redact_key_kind(s + v, t - v);
    enum redact_sep sep;
    if (k == REDACT_PLAIN || redact_after_key(s, t, &sep) == REDACT_NONE)
        return REDACT_NONE;
    *kind = k;
    return t;
}

/* Mask the value that starts at v: a quoted string, the rest of the line
 * (credential headers, "key: value"), or one bare word. A bare value that
 * is itself a secret-named key is masked up to its separator only, with
 * *kind updated, so that the caller masks its value next. */
static void redact_value(struct redact *x, size_t v, enum redact_kind *kind,
                         enum redact_sep sep)
{
    bool header = *kind == REDACT_HEADER && sep != REDACT_EQUALS;
    const char *s = x->s;
    if (s[v] == '\\' && s[v + 1] == '"') {
        redact_span(x, v + 2, redact_escquoted_end(s, v + 2));
    } else if (s[v] == '"' || s[v] == '\'') {
        redact_span(x, v + 1, redact_quoted_end(s, v + 1, s[v]));
    } else if (header || sep == REDACT_COLON_BLANK) {
        size_t start = header ? redact_skip_scheme(s, v) : v;
        size_t end = start;
        while (!redact_is_eol(s[end]))
            end++;
        redact_span(x, start, end);
    } else {
        size_t t = redact_nested_key(s, v, kind);
        redact_span(x, v, t != REDACT_NONE ? t : redact_bare_end(s, v));
    }
}

/* At the start of a key-like token. A masked value followed by a
 * separator was itself a key (Cookie: "token":"x"), so its value is masked
 * too; every round consumes a separator, so this stays linear. */
static void redact_key(struct redact *x)
{
    const char *s = x->s;
    size_t t = x->r;
    while (redact_is_keych(s[t]))
        t++;
    enum redact_kind kind = redact_key_kind(s + x->r, t - x->r);
    enum redact_sep sep = REDACT_EQUALS;
    size_t v = kind == REDACT_PLAIN ? REDACT_NONE
                                    : redact_after_key(s, t, &sep);
    if (v == REDACT_NONE) {
        redact_copy(x, t);
        return;
    }
    while (v != REDACT_NONE) {
        redact_value(x, v, &kind, sep);
        v = redact_after_key(s, x->r, &sep);
    }
}

static bool redact_is_url_end(char c)
{
    return c == '\0' || log_is_space(c) || c == '/' || c == '?' ||
           c == '#' || c == '"' || c == '\'' || c == '<' || c == '>' ||
           c == '\\';
}

/* At "://": in scheme://user:pass@host mask pass (up to the last '@' of
 * the authority, as unencoded '@' in passwords happen). */
static void redact_url(struct redact *x)
{
    const char *s = x->s;
    size_t p = x->r + 3, colon = REDACT_NONE, at = REDACT_NONE;
    for (; !redact_is_url_end(s[p]); p++) {
        if (s[p] == ':' && colon == REDACT_NONE && at == REDACT_NONE)
            colon = p;
        else if (s[p] == '@')
            at = p;
    }
    if (colon != REDACT_NONE && at != REDACT_NONE)
        redact_span(x, colon + 1, at);
    else
        redact_copy(x, x->r + 3);
}

static size_t redact_find(const char *s, size_t p, const char *word)
{
    size_t m = strlen(word);
    for (; s[p] != '\0'; p++)
        if (strncmp(s + p, word, m) == 0)
            return p;
    return p;
}

/* At "-----BEGIN ": the body of a PEM private key is masked up to its
 * "-----END" (or the end of the text). */
static void redact_pem(struct redact *x)
{
    const char *s = x->s;
    size_t label = x->r + 11, p = label;
    while (!redact_is_eol(s[p]) && strncmp(s + p, "-----", 5) != 0)
        p++;
    bool is_key = false;
    for (size_t i = label; i + 11 <= p && !is_key; i++)
        is_key = strncmp(s + i, "PRIVATE KEY", 11) == 0;
    if (!is_key || strncmp(s + p, "-----", 5) != 0) {
        redact_copy(x, label);
        return;
    }
    size_t body = p + 5;
    redact_span(x, body, redact_find(s, body, "-----END"));
}

void log_redact(char *s)
{
    if (s == NULL)
        return;
    struct redact x = { s, 0, 0 };
    while (s[x.r] != '\0') {
        const char *p = s + x.r;
        if (p[0] == '-' && strncmp(p, "-----BEGIN ", 11) == 0)
            redact_pem(&x);
        else if (redact_is_keych(p[0]))
            redact_key(&x);
        else if (p[0] == ':' && p[1] == '/' && p[2] == '/')
            redact_url(&x);
        else
            redact_copy(&x, x.r + 1);
    }
    s[x.w] = '\0';
}
