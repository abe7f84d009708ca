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

/* Would a line at `level` be written, given a connector level (-1 = none)? */
bool log_enabled(enum log_level level, int conn_level);

/* Write one line. connector and msgid may be NULL. The formatted text goes
 * through log_redact() before it is written; newlines in it are escaped so
 * one event is one line. */
void log_write(enum log_level level, int conn_level, const char *connector,
               const char *msgid, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Mask credentials in s in place (same or shorter length). Exposed for
 * tests and for error texts that quote untrusted input. */
void log_redact(char *s);

#define log_error(...) log_write(LOG_ERROR, -1, NULL, NULL, __VA_ARGS__)
#define log_warn(...)  log_write(LOG_WARNING, -1, NULL, NULL, __VA_ARGS__)
#define log_info(...)  log_write(LOG_INFO, -1, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_write(LOG_DEBUG, -1, NULL, NULL, __VA_ARGS__)
#define log_trace(...) log_write(LOG_TRACE, -1, NULL, NULL, __VA_ARGS__)

#endif
