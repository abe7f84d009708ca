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
 * Owns nothing beyond the call. Must never print a key or a secret (only key
 * ids and names of objects).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/rotate.h"
#include "core/wharf.h"
#include "store/store.h"
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

static int key_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_key, argc, argv, NULL, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos != 1 || strcmp(a.pos[0], "rotate") != 0)
        return cli_usage(&cmd_key, "expected 'rotate'");
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
    else
        rc = rotate(w, st);
    if (lockfd >= 0)
        close(lockfd);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_key = {
    "key", "rotate the master key",
    "wharf key rotate [--data DIR]\n"
    "  Creates a new master key, re-wraps every payload's data key (payloads\n"
    "  are not rewritten) and every sealed secret (profile keys, connector\n"
    "  secrets, OAuth tokens, TOTP seeds, the OIDC client secret) with it,\n"
    "  then retires the old keys. Safe to interrupt: run it again and it\n"
    "  finishes the interrupted rotation. Stop wharf serve first.\n",
    key_run,
};
