/*
 * key.c (cli) - `wharf key rotate`: a new master key, every payload's data
 * key re-wrapped under it (headers only; payload bytes untouched), then the
 * old keys retired. Refuses to run while `wharf serve` holds the data dir,
 * because the server keeps the keystore in memory.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/log.h"
#include "vault/vault.h"

struct rewrap {
    struct wharf *w;
    long done, current, failed;
};

static int rewrap_one(const struct store_message *m, void *arg)
{
    struct rewrap *r = arg;
    struct error err = {0};
    char path[4300];
    if (wharf_path(r->w, m->payload_path, path, sizeof(path)) < 0)
        return 0;
    if (access(path, F_OK) < 0)
        return 0;           /* erased or purged: nothing to re-wrap */
    int rc = payload_rewrap(r->w->vault, path, m->id, &err);
    if (rc < 0) {
        fprintf(stderr, "wharf: %s\n", err.msg);
        r->failed++;
    } else {
        *(rc ? &r->done : &r->current) += 1;
    }
    return 0;
}

static int rotate(struct wharf *w, struct store *st)
{
    struct error err = {0};
    struct rewrap r = { .w = w };
    char old_id[VAULT_KEY_ID_LEN + 1];
    snprintf(old_id, sizeof(old_id), "%s", vault_active_id(w->vault));
    if (vault_rotate(w->vault, w->keystore_path, &err) < 0)
        return cli_fail("%s", err.msg);
    int arc = cli_audit(w, st, "key.rotate", vault_active_id(w->vault),
                        "old=%s new=%s", old_id, vault_active_id(w->vault));
    if (store_message_each(st, rewrap_one, &r, &err) < 0)
        return cli_fail("%s (new key %s is active; run rotate again)", err.msg,
                        vault_active_id(w->vault));
    if (r.failed)
        return cli_fail("%ld payload(s) could not be re-wrapped; old keys "
                        "kept so they stay readable", r.failed);
    if (vault_retire_old(w->vault, w->keystore_path, &err) < 0)
        return cli_fail("%s", err.msg);
    printf("master key %s is active; re-wrapped %ld payload(s), %ld already "
           "current; old keys retired\n", vault_active_id(w->vault), r.done,
           r.current);
    return arc;
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
        rc = cli_fail("%s: stop it before rotating keys", err.msg);
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
    "  Creates a new master key, re-wraps every payload's data key with it\n"
    "  (payloads are not rewritten) and retires the old keys. Stop wharf\n"
    "  serve first.\n",
    key_run,
};
