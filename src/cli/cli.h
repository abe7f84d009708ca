/*
 * cli.h - what the command-line verbs share.
 *
 * Contract of every command (docs and tests rely on it): `--help` prints
 * usage and exits 0; success exits 0; a failure prints one clear line
 * "wharf: ..." on stderr and exits 1; a usage error exits 2.
 */
#ifndef WHARF_CLI_H
#define WHARF_CLI_H

#include <stdint.h>

#include "util/error.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct wharf;
struct store;

/* A verb: name, one-line summary, usage text, handler. */
struct cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv);
};

/* Print "wharf: <msg>" on stderr; returns EXIT_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the usage error and the command's usage; returns EXIT_USAGE. */
int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse the options every verb shares: --data DIR (default ./wharf-data or
 * $WHARF_DATA) and --help. Other options are recognized by name in opts
 * ("--json", "--state=", ...): a trailing '=' means it takes a value.
 * Positionals are collected in order. Returns 0, 1 when --help was given
 * (usage printed), -1 on a usage error (printed). */
#define CLI_MAX_OPTS 12          /* entries of opts before its NULL */
struct cli_args {
    const char *data;
    const char *values[CLI_MAX_OPTS];   /* per opts[i] */
    int flags[CLI_MAX_OPTS];
    const char *pos[8];
    int npos;
};
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv,
              const char *const *opts, struct cli_args *out);

/* wharf_open with the CLI's advice when DIR is missing or is not a data
 * directory (--data, $WHARF_DATA, `wharf init`). Caller owns (as
 * wharf_open). */
struct wharf *cli_wharf_open(const char *data, struct error *err);

/* Open the data dir and its store, reporting failures. Returns 0 or
 * EXIT_FAIL after printing. */
int cli_open(const char *data, struct wharf **w, struct store **st);
void cli_close(struct wharf *w, struct store *st);

/* Take DIR/wharf.lock exclusively (serve and key rotate hold it) and write
 * "PID VERB" into it. 0, or -1 with err naming the holder ("another `wharf
 * serve` (pid N) is running on DIR"). *fd is kept open to hold the lock. */
int cli_lock(const char *dir, const char *verb, int *fd, struct error *err);

/* Who holds DIR/wharf.lock: 1 (held; *pid and verb as it wrote them, 0 and
 * "" if not yet written), 0 (nobody), -1 (cannot tell). */
int cli_lock_holder(const char *dir, int *pid, char *verb, size_t n);

struct store_node;
/* A row of `nodes` as `wharf cluster status` names it (common.c):
 * "running" while its last beat is within three beat intervals, "stopped"
 * after a clean stop, "silent" otherwise. */
const char *cli_node_state(const struct store_node *n, int64_t now);

extern const struct cli_cmd cmd_init, cmd_serve, cmd_status, cmd_flow,
    cmd_send, cmd_message, cmd_key, cmd_version;
extern const struct cli_cmd cmd_audit;
extern const struct cli_cmd cmd_user, cmd_token;
extern const struct cli_cmd cmd_api, cmd_oidc, cmd_connector;
extern const struct cli_cmd cmd_partner, cmd_cert;
extern const struct cli_cmd cmd_backup, cmd_restore;
extern const struct cli_cmd cmd_alert, cmd_incident, cmd_notify;
extern const struct cli_cmd cmd_doctor, cmd_inventory, cmd_cluster;
/* Create the first administrator of a new data dir and print its name and
 * one-time password (user.c; called by `wharf init`). EXIT_OK or EXIT_FAIL. */
int cli_user_bootstrap(const char *data);

/* Record a CLI action in the audit trail (actor "cli"; detail printf-style,
 * fmt may be NULL; audit.c). EXIT_OK, or EXIT_FAIL after printing that the
 * action was done but not audited. */
int cli_audit(struct wharf *w, struct store *st, const char *action,
              const char *target, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* SHA-256 (hex) of the stored flow as `wharf flow export` prints it, or
 * "-" when it cannot be read (audit.c). */
void cli_flow_sha256(struct store *st, char out[65]);

#endif
