/*
 * log.h - Wharf's plain-text diagnostics (R5) that never print a secret (R6).
 *
 * One line per event: time (UTC, ms), level, connector, message id, text.
 *   2026-11-23T11:31:43.123Z INFO  conn=inbox msg=0193... picked up a.edi
 * Written to DATA/logs/wharf.log with size-based rotation (wharf.log.1 ...),
 * and to stderr when enabled (serve in the foreground, the CLI).
 *
 * Levels: error, warning, info, debug, trace; a global level and, per
 * connector, an override given as `conn_level` (-1 = use the global one).
 *
 * Secrets cannot reach a line: they live in struct secret (secret.h) which
 * no format directive accepts, and every formatted line also passes through
 * log_redact(), which masks credentials in URLs, Authorization/Cookie header
 * values and key=value pairs named like secrets (password, token, secret,
 * key, session...). Nothing is ever sent off the machine.
 *
 * Thread-safe: one mutex around formatting the prefix and writing the line.
 */
#ifndef WHARF_LOG_H
#define WHARF_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

enum log_level { LOG_ERROR = 0, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* "error" "warning" (or "warn") "info" "debug" "trace" -> level; 0 on
 * success, -1 for an unknown name. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Start logging to DIR/wharf.log (DIR created if missing, mode 0700; file
 * mode 0600) and, when to_stderr, to stderr too. dir may be NULL: stderr
 * only. Returns 0 or -1 with err set. */
int log_open(const char *dir, enum log_level level, bool to_stderr,
             struct error *err);
void log_close(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_stderr(bool on);

/* Rotate when the file would exceed max_bytes; keep `keep` old files.
 * Defaults: 10 MiB, 5. */
void log_set_rotation(size_t max_bytes, int keep);

/* Open DIR/wharf.log again (after logrotate renamed it: `serve` does this
 * on SIGHUP). The next line goes to the new file; if it cannot be opened
 * the old descriptor stays in use. 0, or -1 with err (also when no log
 * file was open). */
int log_reopen(struct error *err);

/* Would a line at `level` be written, given a connector level (-1 = none)? */
bool log_enabled(enum log_level level, int conn_level);

/* Write one line. connector and msgid may be NULL. The formatted text goes
 * through log_redact() before it is written; newlines in it are escaped so
 * one event is one line. */
void log_write(enum log_level level, int conn_level, const char *connector,
               const char *msgid, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A condition that repeats (a poll failing every second) keyed by `key`
 * ("poll:inbox"): the first call writes its line, with a note that repeats
 * are summarized; later calls are counted and written at most once per
 * repeat interval as "TEXT (repeated N times in the last S s)". Up to
 * LOG_REPEAT_KEYS keys are tracked; beyond that every line is written. */
#define LOG_REPEAT_KEYS 512
void log_repeat(enum log_level level, int conn_level, const char *connector,
                const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The condition `key` ended: when it was repeating, writes "TEXT after N
 * failure(s) in S s", forgets the key and returns 1; else writes nothing
 * and returns 0. */
int log_recovered(enum log_level level, int conn_level, const char *connector,
                  const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* How often a repeating condition is summarized (default 60 s; 0: every
 * time). */
void log_set_repeat_interval(int64_t ms);

/* Mask credentials in s in place (same or shorter length). Exposed for
 * tests and for error texts that quote untrusted input. */
void log_redact(char *s);

#define log_error(...) log_write(LOG_ERROR, -1, NULL, NULL, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARNING, -1, NULL, NULL, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, -1, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, -1, NULL, NULL, __VA_ARGS__)
#define log_trace(...) log_write(LOG_TRACE, -1, NULL, NULL, __VA_ARGS__)

#endif
