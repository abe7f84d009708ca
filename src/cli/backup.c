/*
 * backup.c (cli) - `wharf backup`, `wharf backup verify`, `wharf backup
 * list` and `wharf restore` (R20), thin callers of core/backup.h.
 *
 * `wharf backup` runs beside `wharf serve` (it takes no wharf.lock; the
 * keystore lock shared, like every command): each run is recorded in the
 * backups table (ok or failed, for the posture report) and in the audit
 * trail (backup.create / backup.failed). `restore` records backup.restore
 * in the restored data dir's own trail once that trail verified.
 *
 * Owns nothing beyond the call. Must never print a key or a secret: only
 * paths, ids, key ids, counts and hashes.
 */
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/backup.h"
#include "core/dbpass.h"
#include "core/wharf.h"
#include "store/backup_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/kms.h"

enum { O_TO, O_RECIPIENT, O_KEYSTORE, O_KEY, O_JSON, O_LIMIT, O_FROM,
       O_STORE, O_PAYLOAD_DIR, O_STORE_PASSWORD, O_KMS };

static const char *const BACKUP_OPTS[] = {
    "--to=", "--recipient=", "--keystore=", "--key=", "--json", "--limit=",
    NULL,
};
static const char *const RESTORE_OPTS[] = {
    "--to=", "--recipient=", "--keystore=", "--key=", "--json", "--limit=",
    "--from=", "--store=", "--payload-dir=", "--store-password-file=",
    "--kms-command=", NULL,
};

static const char *kind_name(enum backup_recipient r)
{
    return r == BACKUP_TO_PUBLIC_KEY ? "public-key" : "master-key";
}

static void say_recipient(const struct backup_info *i)
{
    if (i->recipient == BACKUP_TO_PUBLIC_KEY)
        printf("  for backup key %s (public key SHA-256 %s): only its "
               "private key opens it\n", i->subject, i->spki_sha256);
    else
        printf("  sealed with master key %s: opening it needs a copy of the "
               "keystore that holds it\n", i->master_key_id);
}

/* ---- wharf backup --to FILE ------------------------------------------------ */

static void backup_record(struct wharf *w, struct store *st,
                          const struct backup_result *r, int ok,
                          const char *error)
{
    struct error err = {0};
    struct store_backup_row row = {
        .started_at = r->started_at, .finished_at = r->finished_at,
        .ok = ok, .location = r->path[0] ? r->path : NULL,
        .bytes = (int64_t)r->bytes, .kind = kind_name(r->info.recipient),
        .backup_id = r->info.backup_id, .messages = r->info.messages,
        .payloads = r->info.payloads, .missing = r->missing,
        .sha256 = ok ? r->sha256 : NULL, .error = error,
    };
    if (store_backup_record(st, &row, &err) != 0)
        cli_fail("the backup run could not be recorded: %s", err.msg);
    if (ok)
        cli_audit(w, st, "backup.create", r->path, "id=%s kind=%s "
                  "messages=%" PRId64 " payloads=%" PRId64 " missing=%"
                  PRId64 " bytes=%" PRIu64 " sha256=%s", r->info.backup_id,
                  kind_name(r->info.recipient), r->info.messages,
                  r->info.payloads, r->missing, r->bytes, r->sha256);
    else
        cli_audit(w, st, "backup.failed", r->path[0] ? r->path : "-",
                  "id=%s", r->info.backup_id);
}

static void backup_say(const struct backup_result *r, int json)
{
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s}",
                              "path", r->path, "backup_id",
                              r->info.backup_id, "messages",
                              (json_int_t)r->info.messages, "payloads",
                              (json_int_t)r->info.payloads, "missing",
                              (json_int_t)r->missing, "bytes",
                              (json_int_t)r->bytes, "sha256", r->sha256,
                              "kind", kind_name(r->info.recipient));
        char *t = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
        return;
    }
    printf("backup written: %s\n  id %s, %" PRId64 " messages, %" PRId64
           " payload files (%" PRId64 " gone before they were copied), %"
           PRIu64 " bytes\n", r->path, r->info.backup_id, r->info.messages,
           r->info.payloads, r->missing, r->bytes);
    say_recipient(&r->info);
    printf("  sha256 %s\n", r->sha256);
    if (r->outside > 0)
        printf("note: wharf.conf names %d file(s) outside the data dir "
               "(tls_cert, tls_key, client CAs): they are not in the "
               "backup; keep copies of them\n", r->outside);
}

static int backup_take(const struct cli_args *a)
{
    struct wharf *w;
    struct store *st;
    struct backup_opts o = { .to = a->values[O_TO],
                             .recipient = a->values[O_RECIPIENT] };
    struct backup_result r;
    struct error err = {0};
    if (cli_open(a->data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = backup_create(w, &o, &r, &err);
    backup_record(w, st, &r, rc == 0, rc == 0 ? NULL : err.msg);
    cli_close(w, st);
    if (rc != 0)
        return cli_fail("backup failed (nothing was left at the target): "
                        "%s", err.msg);
    backup_say(&r, a->flags[O_JSON]);
    return EXIT_OK;
}

/* ---- wharf backup verify FILE ----------------------------------------------- */

/* The keys given, else the keystore of --data DIR when it has one. */
static void backup_keys_from(const struct cli_args *a, struct backup_keys *k,
                             char *buf, size_t n)
{
    struct stat sb;
    k->keystore = a->values[O_KEYSTORE];
    k->key = a->values[O_KEY];
    if (k->keystore == NULL && k->key == NULL &&
        (size_t)snprintf(buf, n, "%s/keystore", a->data) < n &&
        stat(buf, &sb) == 0)
        k->keystore = buf;
}

static void report_json(const char *file, const struct backup_report *r)
{
    char created[32];
    time_iso(r->info.created_ms, created, sizeof(created));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
        " s:s}", "file", file, "backup_id", r->info.backup_id, "created",
        created, "node", r->info.node, "wharf", r->info.wharf_version,
        "kind", kind_name(r->info.recipient), "messages",
        (json_int_t)r->info.messages, "entries", (json_int_t)r->entries,
        "files", (json_int_t)r->files, "payloads", (json_int_t)r->payloads,
        "missing", (json_int_t)r->missing, "shredded",
        (json_int_t)r->shredded, "bytes", (json_int_t)r->bytes, "signer",
        r->signer);
    char *t = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    printf("%s\n", t ? t : "{}");
    free(t);
    json_decref(o);
}

static void report_text(const char *what, const char *file,
                        const struct backup_report *r)
{
    char created[32];
    time_iso(r->info.created_ms, created, sizeof(created));
    printf("%s: %s\n  id %s, taken %s on %s by wharf %s\n  %" PRId64
           " messages; %" PRIu64 " entries: %" PRIu64 " files, %" PRId64
           " payload files (%" PRId64 " gone before they were copied), %"
           PRIu64 " bytes\n  signed by audit key %s\n", what, file,
           r->info.backup_id, created, r->info.node, r->info.wharf_version,
           r->info.messages, r->entries, r->files, r->payloads, r->missing,
           r->bytes, r->signer);
    say_recipient(&r->info);
}

static int backup_check(const struct cli_args *a)
{
    char ks[PATH_MAX];
    struct backup_keys k;
    struct backup_report r;
    struct error err = {0};
    if (a->npos != 2)
        return cli_usage(&cmd_backup, "verify takes one FILE");
    backup_keys_from(a, &k, ks, sizeof(ks));
    if (backup_verify(a->pos[1], &k, &r, &err) != 0)
        return cli_fail("backup %s refused: %s", a->pos[1], err.msg);
    if (a->flags[O_JSON])
        report_json(a->pos[1], &r);
    else
        report_text("backup intact", a->pos[1], &r);
    return EXIT_OK;
}

/* ---- wharf backup list -------------------------------------------------------- */

static int backup_list(const struct cli_args *a)
{
    long limit = a->values[O_LIMIT] ? strtol(a->values[O_LIMIT], NULL, 10)
                                    : 20;
    if (limit < 1 || limit > 100000)
        return cli_usage(&cmd_backup, "--limit must be 1..100000");
    struct wharf *w;
    struct store *st;
    struct store_backup_item *it;
    size_t n;
    struct error err = {0};
    if (cli_open(a->data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = store_backup_list(st, (size_t)limit, &it, &n, &err);
    cli_close(w, st);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    printf("%-24s  %-6s  %-10s  %12s  %s\n", "FINISHED", "RESULT", "KIND",
           "BYTES", "FILE");
    for (size_t i = 0; i < n; i++) {
        char t[32];
        time_iso(it[i].finished_at, t, sizeof(t));
        printf("%-24s  %-6s  %-10s  %12" PRId64 "  %s\n", t,
               it[i].ok ? "ok" : "failed", it[i].kind ? it[i].kind : "-",
               it[i].bytes, it[i].location ? it[i].location : "-");
    }
    store_backup_items_free(it, n);
    return EXIT_OK;
}

static int backup_run(int argc, char **argv)
{
    struct cli_args a;
    int p = cli_parse(&cmd_backup, argc, argv, BACKUP_OPTS, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    int verify = a.npos >= 1 && strcmp(a.pos[0], "verify") == 0;
    int list = a.npos == 1 && strcmp(a.pos[0], "list") == 0;
    if ((verify || list) && (a.values[O_TO] || a.values[O_RECIPIENT]))
        return cli_usage(&cmd_backup, "--to and --recipient are for taking "
                         "a backup");
    if (list && (a.values[O_KEYSTORE] || a.values[O_KEY]))
        return cli_usage(&cmd_backup, "list takes no --keystore or --key");
    if (verify)
        return backup_check(&a);
    if (list)
        return backup_list(&a);
    if (a.npos != 0)
        return cli_usage(&cmd_backup, "expected --to FILE, 'verify FILE' "
                         "or 'list'");
    if (a.values[O_TO] == NULL)
        return cli_usage(&cmd_backup, "--to FILE is required");
    if (a.values[O_KEYSTORE] || a.values[O_KEY])
        return cli_usage(&cmd_backup, "--keystore and --key are for verify");
    return backup_take(&a);
}

const struct cli_cmd cmd_backup = {
    "backup", "take, verify or list online encrypted backups",
    "wharf backup --to FILE [--data DIR] [--recipient CERT] [--json]\n"
    "       wharf backup verify FILE [--keystore FILE | --key KEY] [--json]\n"
    "       wharf backup list [--data DIR] [--limit N]\n"
    "  Takes a consistent backup while serve runs: the database snapshot,\n"
    "  the payload files it references, wharf.conf, the audit anchor and\n"
    "  the TLS files, encrypted and signed in one file (never overwritten).\n"
    "  Without --recipient it is sealed with the master key: keep a copy\n"
    "  of the keystore to open it. With --recipient CERT (a PEM certificate\n"
    "  of an RSA or EC backup key) it carries the keystore encrypted to\n"
    "  that key: only the private key opens it. verify reads it end to end\n"
    "  without writing anything (the keystore of --data DIR by default).\n",
    backup_run,
};

/* ---- wharf restore --from FILE --data DIR --------------------------------------- */

static int restore_audit(const char *dir, const char *file,
                         const struct backup_report *r)
{
    struct wharf *w;
    struct store *st;
    char abs[PATH_MAX];
    if (realpath(file, abs) == NULL)
        snprintf(abs, sizeof(abs), "%s", file);
    if (cli_open(dir, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = cli_audit(w, st, "backup.restore", abs, "id=%s node=%s "
                       "messages=%" PRId64 " missing=%" PRId64
                       " sessions_ended=%" PRId64, r->info.backup_id,
                       r->info.node, r->info.messages, r->missing,
                       r->sessions_ended);
    cli_close(w, st);
    return rc;
}

static int data_given(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--data") || !strncmp(argv[i], "--data=", 7))
            return 1;
    return 0;
}

static int restore_run(int argc, char **argv)
{
    struct cli_args a;
    struct backup_keys k;
    struct backup_report r;
    struct error err = {0};
    int p = cli_parse(&cmd_restore, argc, argv, RESTORE_OPTS, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.values[O_FROM] == NULL || !data_given(argc, argv) || a.npos != 0)
        return cli_usage(&cmd_restore, "--from FILE and --data DIR are "
                         "required");
    if (a.values[O_TO] || a.values[O_RECIPIENT] || a.values[O_LIMIT])
        return cli_usage(&cmd_restore, "only --keystore or --key go with "
                         "--from and --data");
    k.keystore = a.values[O_KEYSTORE];
    k.key = a.values[O_KEY];
    if (a.values[O_KMS] != NULL && kms_check(a.values[O_KMS], &err) < 0)
        return cli_fail("--kms-command: %s", err.msg);
    kms_set(a.values[O_KMS]);       /* opens a sealed --keystore, seals */
    struct backup_target t = { .store = a.values[O_STORE],
                               .payload_dir = a.values[O_PAYLOAD_DIR] };
    struct secret *pw = NULL;
    if (a.values[O_STORE_PASSWORD] != NULL &&
        (pw = dbpass_read_file(a.values[O_STORE_PASSWORD], &err)) == NULL)
        return cli_fail("--store-password-file: %s", err.msg);
    t.store_password = pw;
    int rc = backup_restore(a.values[O_FROM], a.data, &k, &t, &r, &err);
    secret_free(pw);
    if (rc != 0)
        return cli_fail("restore failed: %s", err.msg);
    if (restore_audit(a.data, a.values[O_FROM], &r) != EXIT_OK)
        return EXIT_FAIL;
    if (a.flags[O_JSON]) {
        report_json(a.values[O_FROM], &r);
        return EXIT_OK;
    }
    report_text("restored", a.values[O_FROM], &r);
    printf("  into %s: audit trail intact (%" PRId64 " entries); %" PRId64
           " session(s) ended (sign in again); review the API tokens; start "
           "it with `wharf serve --data %s`\n", a.data, r.audit_entries,
           r.sessions_ended, a.data);
    return EXIT_OK;
}

const struct cli_cmd cmd_restore = {
    "restore", "rebuild a data directory from a backup",
    "wharf restore --from FILE --data DIR [--keystore FILE | --key KEY]\n"
    "              [--store postgresql://...] [--payload-dir DIR|database]\n"
    "              [--store-password-file F] [--kms-command PATH]\n"
    "  DIR must be new or empty. A backup sealed with the master key needs\n"
    "  --keystore (a copy of the keystore that holds that key); one for a\n"
    "  backup key needs --key (its PEM private key). Everything is checked\n"
    "  (segments, entries, signature, payload headers) before the keystore\n"
    "  is written last; a refused backup leaves DIR as it was. The restored\n"
    "  database is checked and its audit trail verified. A backup of either\n"
    "  store restores into SQLite (DIR/wharf.db) or, with --store URL, into\n"
    "  an empty PostgreSQL database (one holding Wharf rows is refused);\n"
    "  --payload-dir puts the payloads in that folder (new or empty, e.g.\n"
    "  the cluster's shared one) instead of DIR/payloads; --payload-dir\n"
    "  database (with --store) puts them in the database's rows;\n"
    "  --kms-command (R15) opens a --keystore sealed by that KMS and\n"
    "  writes DIR's keystore sealed by it too (else as text);\n"
    "  --store-password-file gives that database's password (sealed into\n"
    "  DIR/state/store-password; a backup holds none).\n",
    restore_run,
};
