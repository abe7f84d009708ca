/*
 * key.c (cli) - `wharf key rotate`: master key rotation (R15) by the
 * crash-safe protocol at the top of src/vault/keystore.c, done by
 * core/rotate.c: a new master key, every payload header and every sealed
 * value re-wrapped under it, then the old keys retired. A keystore that
 * still holds retired keys is an unfinished rotation (killed, or stopped by
 * an object that could not be re-wrapped): running the command again
 * finishes it, and says so.
 *
 * It refuses to run while `wharf serve` holds DIR/wharf.lock (naming its
 * pid) or while any other wharf process has the keystore open, because such
 * a process keeps the keystore in memory and could seal new secrets under a
 * key the rotation retires. Both the start and the end are audited.
 *
 * On a store shared by a cluster (PostgreSQL, R21) every node holds its own
 * copy of the keystore, in memory while it serves: a node left running
 * could not open what the rotation re-wraps. So it also refuses, naming
 * them and auditing "key.rotate.refused", while any node of the `nodes`
 * table is "running" as `wharf cluster status` says (a beat within three
 * intervals). A node that stopped cleanly, or went silent, does not count
 * (it re-reads its keystore file when started: the runbook copies the new
 * one first), nor does a row naming this host and a process that is gone
 * (this data dir's own serve killed moments ago, whose row still looks
 * fresh for up to three beats). Once the new key is active it is recorded
 * as the cluster's (ROTATE_CLUSTER_KEY), so a node started later with its
 * old copy of the keystore is refused by serve rather than failing on
 * every re-wrapped value.
 *
 * `wharf key kms-seal` and `kms-unseal` (R15, vault/kms.h): the keystore
 * written again sealed by wharf.conf's kms_command, or back as text; under
 * the same locks and refusals as a rotation (another process holding the
 * keystore keeps its copy in memory, so nothing is lost either way), and
 * audited ("key.kms_seal", "key.kms_unseal").
 *
 * Owns nothing beyond the call. Must never print a key or a secret (only key
 * ids and names of objects).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/rotate.h"
#include "core/wharf.h"
#include "store/node_store.h"
#include "store/store.h"
#include "util/id.h"
#include "vault/vault.h"

/* rotate_report.problem: one stderr line per object left as it was. */
static void key_problem(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "wharf: %s\n", msg);
}

/* wharf.lock is held (err names the holder and its pid): a serve must be
 * stopped first; another rotation must be let finish. */
static int key_refuse_lock(const struct wharf *w, const struct error *err)
{
    int pid = 0;
    char verb[64] = "";
    if (cli_lock_holder(w->dir, &pid, verb, sizeof(verb)) == 1 &&
        strcmp(verb, "key rotate") == 0)
        return cli_fail("%s: let it finish", err->msg);
    return cli_fail("%s: stop it, run `wharf key rotate` again, then start "
                    "serve (a running server keeps the keystore in memory "
                    "and would seal new secrets under the key being "
                    "retired)", err->msg);
}

/* ---- the other nodes of a cluster (R21) -------------------------------------- */

/* True when node id ("host/pid", core/engine.c) names this host and a
 * process that does not exist: whatever its last beat says, it runs no
 * more. */
static bool key_node_gone_here(const char *id)
{
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    const char *slash = strrchr(id, '/');
    if (slash == NULL || (size_t)(slash - id) != strlen(host) ||
        strncmp(id, host, (size_t)(slash - id)) != 0)
        return false;
    char *end = NULL;
    long pid = strtol(slash + 1, &end, 10);
    return end != slash + 1 && *end == '\0' && pid > 0 &&
           kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* The ids of the nodes running on this database, ", "-separated, into
 * live[0..n) ("" when none). 0, or -1 with err. */
static int key_live_nodes(struct store *st, char *live, size_t n,
                          struct error *err)
{
    struct store_node *nodes = NULL;
    size_t count = 0, len = 0;
    if (store_nodes(st, &nodes, &count, err) < 0)
        return -1;
    int64_t now = time_now_ms();
    live[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (strcmp(cli_node_state(&nodes[i], now), "running") != 0 ||
            key_node_gone_here(nodes[i].id))
            continue;
        int k = snprintf(live + len, n - len, "%s%s", len ? ", " : "",
                         nodes[i].id);
        if (k < 0 || (size_t)k >= n - len)
            break;                      /* the names that fit */
        len += (size_t)k;
    }
    store_nodes_free(nodes, count);
    return 0;
}

/* On a shared store: EXIT_OK when no node runs; otherwise the refusal,
 * audited. */
static int key_refuse_live_nodes(struct wharf *w, struct store *st)
{
    char live[1024];
    struct error err = {0};
    if (!wharf_store_shared(w))
        return EXIT_OK;
    if (key_live_nodes(st, live, sizeof(live), &err) < 0)
        return cli_fail("cannot tell which nodes run: %s", err.msg);
    if (live[0] == '\0')
        return EXIT_OK;
    cli_audit(w, st, "key.rotate.refused", "-", "running=%s", live);
    return cli_fail("node(s) %s are running on this database (a heartbeat "
                    "within three intervals, see `wharf cluster status`): "
                    "each holds a copy of the keystore in memory and could "
                    "not open what the rotation re-wraps. Stop every node, "
                    "run `wharf key rotate` on one, copy its keystore (mode "
                    "0600) over every other node's, then start them (a "
                    "killed node counts as running until it is silent, "
                    "three heartbeats after its last)", live);
}

static void key_say_start(const struct rotate_report *r)
{
    if (r->resumed)
        printf("finishing an interrupted rotation: master key %s is active; "
               "re-wrapping what still uses %s\n", r->active, r->old);
    else
        printf("new master key %s is active; re-wrapping what uses %s\n",
               r->active, r->old);
    fflush(stdout);
}

static int rotate(struct wharf *w, struct store *st)
{
    struct error err = {0};
    struct rotate_report r = { .problem = key_problem };
    if (rotate_begin(w, &r, &err) < 0)
        return cli_fail("%s", err.msg);
    key_say_start(&r);
    if (wharf_store_shared(w) &&
        store_setting_set(st, ROTATE_CLUSTER_KEY, r.active, &err) < 0)
        return cli_fail("%s (new key %s is active; run `wharf key rotate` "
                        "again to finish)", err.msg, r.active);
    int arc = cli_audit(w, st, "key.rotate", r.active, "%sold=%s new=%s",
                        r.resumed ? "resumed " : "", r.old, r.active);
    if (rotate_rewrap(w, st, &r, &err) < 0)
        return cli_fail("%s (new key %s is active, old key(s) kept; run "
                        "`wharf key rotate` again to finish)", err.msg,
                        r.active);
    if (rotate_finish(w, &r, &err) < 0)
        return cli_fail("%s", err.msg);
    printf("re-wrapped %ld payload(s) (%ld already current) and %ld sealed "
           "value(s) (%ld already current); retired %s; master key %s is "
           "active\n", r.payloads, r.payloads_current, r.sealed,
           r.sealed_current, r.old, r.active);
    int frc = cli_audit(w, st, "key.retire", r.active, "retired=%s "
                        "payloads=%ld sealed=%ld", r.old, r.payloads,
                        r.sealed);
    return arc != EXIT_OK ? arc : frc;
}

/* The keystore sealed by the KMS (seal 1) or written as text (0). */
static int kms_reseal(struct wharf *w, struct store *st, int seal)
{
    struct error err = {0};
    if (seal && !w->conf.kms_command[0])
        return cli_fail("set kms_command in %s first (the program that "
                        "wraps the keystore's key)", w->conf_path);
    if (vault_rewrite(w->vault, w->keystore_path, seal, &err) < 0)
        return cli_fail("%s", err.msg);
    printf("the keystore %s is %s\n", w->keystore_path, seal
           ? "sealed by the KMS: kms_command must answer for every start"
           : "written as text again (mode 0600): remove kms_command");
    return cli_audit(w, st, seal ? "key.kms_seal" : "key.kms_unseal",
                     vault_active_id(w->vault), "kms_command=%s",
                     w->conf.kms_command);
}

static int key_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_key, argc, argv, NULL, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int verb = a.npos != 1 ? -1 : !strcmp(a.pos[0], "rotate") ? 0
               : !strcmp(a.pos[0], "kms-seal") ? 1
               : !strcmp(a.pos[0], "kms-unseal") ? 2 : -1;
    if (verb < 0)
        return cli_usage(&cmd_key, "expected rotate, kms-seal or "
                         "kms-unseal");
    struct wharf *w;
    struct store *st;
    struct error err = {0};
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int lockfd = -1, rc;
    if (cli_lock(w->dir, "key rotate", &lockfd, &err) < 0)
        rc = key_refuse_lock(w, &err);
    else if (vault_lock_exclusive(w->vault, &err) < 0)
        rc = cli_fail("%s", err.msg);
    else if ((rc = key_refuse_live_nodes(w, st)) == EXIT_OK)
        rc = verb == 0 ? rotate(w, st) : kms_reseal(w, st, verb == 1);
    if (lockfd >= 0)
        close(lockfd);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_key = {
    "key", "rotate the master key; seal the keystore by a KMS",
    "wharf key rotate [--data DIR]\n"
    "wharf key kms-seal [--data DIR]\n"
    "wharf key kms-unseal [--data DIR]\n"
    "  Creates a new master key, re-wraps every payload's data key (payloads\n"
    "  are not rewritten) and every sealed secret (profile keys, connector\n"
    "  secrets, OAuth tokens, TOTP seeds, the OIDC client secret) with it,\n"
    "  then retires the old keys. Safe to interrupt: run it again and it\n"
    "  finishes the interrupted rotation. Stop wharf serve first; on a\n"
    "  PostgreSQL store stop every node of the cluster (it refuses, naming\n"
    "  them, while any runs), then copy this keystore to the others.\n"
    "  kms-seal writes the keystore sealed under a key that wharf.conf's\n"
    "  kms_command wraps (an external KMS: every start then asks it);\n"
    "  kms-unseal writes it back as text. Same refusals as rotate.\n",
    key_run,
};
