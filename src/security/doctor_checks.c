/*
 * doctor_checks.c - the posture checks of people, keys, logs and the data
 * dir's upkeep (doctor_internal.h): the server's user, its sandbox and
 * its key process's (read in /proc), administrators' second factor, API
 * tokens, the master key's age, log levels, the audit chain, backups,
 * retention, disk space, metrics access, the folders flows may name, and
 * the installed SECURITY.md.
 *
 * Must never: name a secret or a password hash in what a check found;
 * change anything.
 */
#include "security/doctor_internal.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "connectors/connector.h"
#include "core/wharf.h"
#include "store/auth_store.h"
#include "store/posture_store.h"
#include "store/store.h"
#include "util/id.h"
#include "vault/keyproc.h"
#include "vault/vault.h"

#define DAY_MS 86400000LL

/* ---- the server's user ------------------------------------------------------------ */

/* The second number of a /proc/PID/status text's line fmt ("Uid: %lu
 * %lu": the effective uid) or its first ("Seccomp: %lu"), or -1. */
static long status_field(const char *text, const char *fmt, int nums)
{
    for (const char *line = text; line && *line;) {
        unsigned long a = 0, b = 0;
        if (sscanf(line, fmt, &a, &b) == nums)
            return (long)(nums == 2 ? b : a);
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    return -1;
}

/* /proc/PID/status into buf[0..n), NUL-terminated: 0 or -1. */
static int proc_read(int pid, char *buf, size_t n)
{
    char file[64];
    snprintf(file, sizeof(file), "/proc/%d/status", pid);
    FILE *f = fopen(file, "re");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    if (f)
        fclose(f);
    buf[got] = '\0';
    return got > 0 ? 0 : -1;
}

static long proc_status(int pid, const char *fmt, int nums)
{
    char text[4096];
    return proc_read(pid, text, sizeof(text)) == 0
           ? status_field(text, fmt, nums) : -1;
}

static long proc_euid(int pid)
{
    return proc_status(pid, "Uid: %lu %lu", 2);
}

/* "NAME (uid N)". Inside serve (the API's report) no account lookup:
 * the sandbox hides /etc/passwd, and NSS then loads modules (nss-systemd,
 * libcap) whose system calls its seccomp filter kills the process for. */
static const char *user_name(const struct doctor *d, long uid, char *buf,
                             size_t n)
{
    struct passwd *pw = d->env->in_serve ? NULL : getpwuid((uid_t)uid);
    const char *name = pw ? pw->pw_name : uid == 0 ? "root"
                       : d->env->in_serve ? "the account" : "?";
    snprintf(buf, n, "%s (uid %ld)", name, uid);
    return buf;
}

void doctor_check_user(struct doctor *d)
{
    const char *ctl = "A.8.2 A.8.18";
    const char *who = "wharf serve runs as";
    long uid = -1;
    struct stat sb;
    if (d->env->in_serve) {
        uid = (long)geteuid();
    } else if (d->env->serve_pid > 0) {
        uid = proc_euid(d->env->serve_pid);
    } else if (stat(d->w->dir, &sb) == 0) {
        uid = (long)sb.st_uid;
        who = "wharf serve is not running; it would run as the data "
              "directory's owner,";
    }
    char name[128];
    if (uid < 0)
        doctor_add(d->report, "process.user", DOCTOR_WARN, ctl, "run doctor "
                   "as the user that owns the data directory", "cannot tell "
                   "which user wharf serve runs as");
    else if (uid == 0)
        doctor_add(d->report, "process.user", DOCTOR_WARN, ctl, "run wharf "
                   "serve as a dedicated unprivileged user (the wharf system "
                   "user `make install` creates): chown -R wharf: DIR, set "
                   "user = wharf in wharf.conf (serve started as root then "
                   "drops to it) and restart", "%s %s: a flaw in a parser "
                   "would have every right on the machine", who,
                   user_name(d, uid, name, sizeof(name)));
    else
        doctor_add(d->report, "process.user", DOCTOR_PASS, ctl, "", "%s %s",
                   who, user_name(d, uid, name, sizeof(name)));
}

/* serve's sandbox (core/sandbox.h): wharf.conf's sandbox key and, when
 * serve runs, its seccomp mode (2: a filter) read from /proc. */
void doctor_check_sandbox(struct doctor *d)
{
    const char *ctl = "A.8.2 A.8.9";
    int pid = d->env->in_serve ? (int)getpid() : d->env->serve_pid;
    long mode = pid > 0 ? proc_status(pid, "Seccomp: %lu", 1) : -1;
    if (!d->conf->sandbox)
        doctor_add(d->report, "process.sandbox", DOCTOR_WARN, ctl, "set "
                   "sandbox = on in wharf.conf and restart (off is for "
                   "diagnosing a refused call or file only)", "sandbox = "
                   "off: serve runs without no_new_privs, Landlock or "
                   "seccomp, so a flaw in a parser reaches every file and "
                   "system call of its user");
    else if (pid > 0 && mode >= 0 && mode != 2)
        doctor_add(d->report, "process.sandbox", DOCTOR_WARN, ctl, "restart "
                   "wharf serve (it started before sandbox = on)", "serve "
                   "(pid %d) runs without its seccomp filter", pid);
    else
        doctor_add(d->report, "process.sandbox", DOCTOR_PASS, ctl, "",
                   "sandbox = on: serve runs with no_new_privs, Landlock and "
                   "a seccomp allow-list%s", pid > 0 && mode == 2
                   ? " (seen in /proc)" : "");
}

/* ---- the key processes ------------------------------------------------------------- */

/* The which-th child of serve (pid) named wharf-keys (vault/keyproc.h),
 * or 0. */
static int keys_child(int pid, size_t which)
{
    char path[64], kids[4096], comm[32];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
    FILE *f = fopen(path, "re");
    size_t n = f ? fread(kids, 1, sizeof(kids) - 1, f) : 0;
    if (f)
        fclose(f);
    kids[n] = '\0';
    for (char *p = kids, *end; *p; p = end) {
        long kid = strtol(p, &end, 10);
        if (end == p)
            break;
        snprintf(path, sizeof(path), "/proc/%ld/comm", kid);
        f = fopen(path, "re");
        int named = f && fgets(comm, sizeof(comm), f) &&
                    strcmp(comm, "wharf-keys\n") == 0;
        if (f)
            fclose(f);
        if (named && which-- == 0)
            return (int)kid;
    }
    return 0;
}

/* What the key process's status says against what it should be: its
 * finding into found, or NULL when it is confined. */
static const char *keys_finding(const struct doctor *d, const char *st,
                                int pid, char *found, size_t n)
{
    char name[128];
    long uid = status_field(st, "Uid: %lu %lu", 2);
    long caps = status_field(st, "CapEff: %lx", 1);
    long nnp = status_field(st, "NoNewPrivs: %lu", 1);
    long mode = status_field(st, "Seccomp: %lu", 1);
    if (uid == 0)
        snprintf(found, n, "the key process (pid %d), which holds every "
                 "private key and the keystore, runs as root (uid 0)", pid);
    else if (caps != 0)
        snprintf(found, n, "the key process (pid %d) runs as %s with "
                 "capabilities (CapEff %lx)", pid,
                 user_name(d, uid, name, sizeof(name)), (unsigned long)caps);
    else if (d->conf->sandbox && (nnp != 1 || mode != 2))
        snprintf(found, n, "the key process (pid %d) runs without its "
                 "sandbox (no_new_privs %ld, seccomp mode %ld)", pid, nnp,
                 mode);
    else
        return NULL;
    return found;
}

/* Key process i's /proc status into buf and its pid into *pid: inside
 * serve through the key client's descriptor (serve's Landlock view holds
 * only its own /proc), else found as serve's child. 0, or -1 (also past
 * the last one). */
static int keys_status(const struct doctor *d, size_t i, char *buf, size_t n,
                       int *pid)
{
    *pid = d->env->in_serve ? (int)keyproc_pid(i)
                            : keys_child(d->env->serve_pid, i);
    if (*pid <= 0)
        return -1;
    return d->env->in_serve ? keyproc_status(i, buf, n)
                            : proc_read(*pid, buf, n);
}

/* The key processes as read from /proc: their pids, and the first one's
 * status. */
struct keys_seen {
    int pid[KEYPROC_MAX];
    size_t count;
    char st[4096];
};

/* Every key process's status in turn, each pid into ks (the first one's
 * status too), until the first one that is not confined, whose finding
 * goes into found (*finding). 0, or -1 when none can be read. */
static int keys_read_all(const struct doctor *d, struct keys_seen *ks,
                         const char **finding, char *found, size_t fn)
{
    char other[4096] = "";
    ks->count = 0;
    *finding = NULL;
    for (size_t i = 0; *finding == NULL && i < KEYPROC_MAX; i++) {
        char *st = i ? other : ks->st;
        size_t n = i ? sizeof(other) : sizeof(ks->st);
        if (keys_status(d, i, st, n, &ks->pid[i]) < 0)
            break;
        ks->count++;
        *finding = keys_finding(d, st, ks->pid[i], found, fn);
    }
    return ks->count ? 0 : -1;
}

/* "key process (pid P)" or "N key processes (pids P, Q)": the key
 * processes that run, into buf. */
static void keys_pids(const struct keys_seen *ks, char *buf, size_t n)
{
    size_t off = ks->count > 1
        ? (size_t)snprintf(buf, n, "%zu key processes (pids %d", ks->count,
                           ks->pid[0])
        : (size_t)snprintf(buf, n, "key process (pid %d", ks->pid[0]);
    for (size_t i = 1; i < ks->count && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, ", %d", ks->pid[i]);
    if (off < n)
        snprintf(buf + off, n - off, ")");
}

/* serve's key processes (vault/keyproc.h, core/sandbox.h sandbox_keys):
 * each one's account, capabilities, no_new_privs and seccomp mode read
 * from /proc while serve runs; wharf.conf's sandbox key otherwise. */
void doctor_check_keys(struct doctor *d)
{
    const char *ctl = "A.8.2 A.8.24";
    char found[256], name[128], pids[160];
    const char *finding = NULL;
    struct keys_seen ks;
    int runs = d->env->in_serve || d->env->serve_pid > 0;
    if (runs && keys_read_all(d, &ks, &finding, found, sizeof(found)) < 0)
        doctor_add(d->report, "process.keys", DOCTOR_WARN, ctl, "run doctor "
                   "as serve's user or root; restart wharf serve if it has "
                   "no wharf-keys child", "wharf serve runs, but its key "
                   "process cannot be found or read in /proc");
    else if (runs && finding != NULL)
        doctor_add(d->report, "process.keys", DOCTOR_WARN, ctl, "run wharf "
                   "serve as an unprivileged user (process.user) with "
                   "sandbox = on, and restart it", "%s", found);
    else if (!d->conf->sandbox)
        doctor_add(d->report, "process.keys", DOCTOR_WARN, ctl, "set "
                   "sandbox = on in wharf.conf and restart", "sandbox = off: "
                   "the key process, which holds every private key, runs "
                   "without no_new_privs, Landlock or seccomp");
    else if (!runs)
        doctor_add(d->report, "process.keys", DOCTOR_PASS, ctl, "",
                   "wharf serve is not running; its key process confines "
                   "itself when it starts (sandbox = on)");
    else {
        keys_pids(&ks, pids, sizeof(pids));
        doctor_add(d->report, "process.keys", DOCTOR_PASS, ctl, "",
                   "the %s run%s as %s with no capabilities, "
                   "no_new_privs and a seccomp filter (seen in /proc), and "
                   "a Landlock view without the data dir", pids,
                   ks.count > 1 ? "" : "s",
                   user_name(d, status_field(ks.st, "Uid: %lu %lu", 2), name,
                             sizeof(name)));
    }
}

/* ---- people and programs ----------------------------------------------------------- */

/* The administrators without a second factor into l. */
static int admins_without_mfa(struct doctor *d, struct doctor_list *l,
                              int *admins, struct error *err)
{
    struct store_user *u;
    size_t n;
    if (store_user_list(d->st, &u, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(u[i].role, "admin") != 0 || u[i].disabled)
            continue;
        (*admins)++;
        /* OIDC logins: the second factor is the identity provider's */
        if (!u[i].totp_enabled && u[i].oidc_subject == NULL)
            doctor_list_add(l, "%s", u[i].name);
    }
    store_users_free(u, n);
    return 0;
}

void doctor_check_mfa(struct doctor *d)
{
    const char *ctl = "A.5.17 A.8.5";
    struct error err = {0};
    struct doctor_list l = {0};
    int admins = 0;
    int required = auth_mfa_required(d->st, ROLE_ADMIN, &err);
    if (required == 0)
        doctor_add(d->report, "auth.mfa_policy", DOCTOR_FAIL, ctl, "set "
                   "mfa_required_admin back to true (PUT /api/v1/settings/"
                   "mfa_required_admin)", "administrators may work without a "
                   "second factor (setting mfa_required_admin is false)");
    else
        doctor_add(d->report, "auth.mfa_policy", DOCTOR_PASS, ctl, "",
                   "administrators must use a second factor (TOTP or OIDC)");
    if (admins_without_mfa(d, &l, &admins, &err) < 0)
        doctor_add(d->report, "users.admin_mfa", DOCTOR_FAIL, ctl, "see the "
                   "error", "cannot list users: %s", err.msg);
    else if (l.n)
        doctor_add(d->report, "users.admin_mfa", DOCTOR_FAIL, ctl, "each of "
                   "them enrols TOTP (wharf user mfa enroll NAME, then mfa "
                   "confirm NAME CODE; or POST /api/v1/auth/mfa/enroll), or "
                   "remove the account", "%d of %d administrator(s) without "
                   "a second factor: %s", l.n, admins, l.text);
    else
        doctor_add(d->report, "users.admin_mfa", DOCTOR_PASS, ctl, "", "every "
                   "administrator (%d) has a second factor", admins);
}

void doctor_check_tokens(struct doctor *d)
{
    const char *ctl = "A.5.17 A.5.18 A.8.5";
    struct error err = {0};
    struct store_token *t;
    size_t n;
    struct doctor_list forever = {0}, idle = {0};
    int live = 0;
    if (store_token_list(d->st, &t, &n, &err) < 0) {
        doctor_add(d->report, "tokens.lifetime", DOCTOR_FAIL, ctl, "see the "
                   "error", "cannot list API tokens: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i].revoked_at || (t[i].expires_at && t[i].expires_at <= d->now))
            continue;
        live++;
        if (t[i].expires_at == 0)
            doctor_list_add(&forever, "%s (%s)", t[i].name, t[i].id);
        int64_t last = t[i].last_used_at ? t[i].last_used_at
                                         : t[i].created_at;
        if (d->now - last > 90 * DAY_MS)
            doctor_list_add(&idle, "%s (%s, %s)", t[i].name, t[i].id,
                            t[i].last_used_at ? "last used over 90 days "
                            "ago" : "never used, made over 90 days ago");
    }
    store_tokens_free(t, n);
    if (forever.n)
        doctor_add(d->report, "tokens.expiry", DOCTOR_WARN, ctl, "replace "
                   "each by a token with an expiry (wharf token create ... "
                   "--days 90), then revoke it", "%d API token(s) that never "
                   "expire: %s", forever.n, forever.text);
    else
        doctor_add(d->report, "tokens.expiry", DOCTOR_PASS, ctl, "", "every "
                   "live API token (%d) has an expiry", live);
    if (idle.n)
        doctor_add(d->report, "tokens.unused", DOCTOR_WARN, ctl, "revoke "
                   "the tokens nobody uses (wharf token revoke ID)", "%d API "
                   "token(s) unused for 90 days: %s", idle.n, idle.text);
    else
        doctor_add(d->report, "tokens.unused", DOCTOR_PASS, ctl, "", "no live "
                   "API token has been unused for 90 days");
}

/* ---- keys ----------------------------------------------------------------------------- */

/* The keystore at rest (vault/kms.h): sealed by the KMS wharf.conf
 * names, or text (0600) with no KMS named; a KMS named over a text
 * keystore is a seal forgotten. */
void doctor_check_keystore(struct doctor *d)
{
    const char *ctl = "A.8.24";
    const char *kms = d->conf->kms_command;
    int sealed = d->w->keystore_sealed;
    if (sealed == 1)
        doctor_add(d->report, "keys.keystore", DOCTOR_PASS, ctl, "", "the "
                   "keystore is sealed by the KMS of kms_command (%s): the "
                   "file alone opens nothing", kms[0] ? kms : "?");
    else if (sealed == 0 && kms[0])
        doctor_add(d->report, "keys.keystore", DOCTOR_WARN, ctl, "run wharf "
                   "key kms-seal (serve stopped), or remove kms_command",
                   "kms_command is set (%s) but the keystore holds its keys "
                   "as text", kms);
    else if (sealed == 0)
        doctor_add(d->report, "keys.keystore", DOCTOR_PASS, ctl, "", "the "
                   "keystore holds its keys as text, mode 0600, read only "
                   "by the key process (kms_command can seal it under an "
                   "external KMS)");
    else
        doctor_add(d->report, "keys.keystore", DOCTOR_WARN, ctl, "run doctor "
                   "as the user that owns the data directory", "the "
                   "keystore could not be read");
}

void doctor_check_master_key(struct doctor *d)
{
    const char *ctl = "A.8.24";
    struct error err = {0};
    int64_t at = 0;
    char *action = NULL, when[32];
    int rc = store_audit_newest(d->st, "[\"key.retire\",\"key.rotate\","
                                "\"wharf.init\"]", &at, &action, &err);
    if (rc < 0) {
        doctor_add(d->report, "keys.master_key_age", DOCTOR_WARN, ctl,
                   "see the error", "cannot read the audit trail: %s",
                   err.msg);
        return;
    }
    long long days = rc == 0 ? (long long)((d->now - at) / DAY_MS) : -1;
    time_iso(at, when, sizeof(when));
    int unfinished = vault_key_count(d->w->vault) > 1;
    if (rc == 1)
        doctor_add(d->report, "keys.master_key_age", DOCTOR_WARN, ctl, "rotate "
                   "the master key (wharf key rotate, with serve stopped) to "
                   "start a recorded history", "the audit trail records "
                   "neither the data dir's creation nor a key rotation");
    else if (unfinished)
        doctor_add(d->report, "keys.master_key_age", DOCTOR_WARN, ctl, "run "
                   "wharf key rotate again (serve stopped) to finish it",
                   "a key rotation was interrupted: the keystore still holds "
                   "retired master keys");
    else if (days > 365)
        doctor_add(d->report, "keys.master_key_age", DOCTOR_WARN, ctl, "rotate "
                   "the master key (wharf key rotate, with serve stopped)",
                   "the master key is %lld days old (%s %s); rotate at "
                   "least yearly", days, strcmp(action, "wharf.init") == 0
                   ? "created by wharf init at" : "last rotated at", when);
    else
        doctor_add(d->report, "keys.master_key_age", DOCTOR_PASS, ctl, "",
                   "the master key is %lld day(s) old (%s %s)", days,
                   strcmp(action, "wharf.init") == 0 ? "created by wharf init "
                   "at" : "last rotated at", when);
    free(action);
}

/* ---- logs and the audit trail ---------------------------------------------------------- */

void doctor_check_logging(struct doctor *d)
{
    const char *ctl = "A.8.15 A.8.11";
    struct error err = {0};
    struct store_flow f;
    struct doctor_list l = {0};
    if (d->conf->log_level == LOG_TRACE)
        doctor_list_add(&l, "wharf.conf log_level");
    if (store_flow_get(d->st, &f, &err) == 0) {
        for (size_t i = 0; i < f.nconns; i++) {
            json_t *c = json_loads(f.conns[i].config, 0, NULL);
            const char *lv = json_string_value(json_object_get(c,
                                                               "log_level"));
            if (lv && strcmp(lv, "trace") == 0)
                doctor_list_add(&l, "connector %s", f.conns[i].name);
            json_decref(c);
        }
        store_flow_clear(&f);
    }
    if (l.n)
        doctor_add(d->report, "logging.level", DOCTOR_WARN, ctl, "use info "
                   "(or debug while troubleshooting) in production: trace "
                   "writes every protocol exchange to the log (secrets are "
                   "masked, personal data in messages is not)", "log level "
                   "trace: %s", l.text);
    else
        doctor_add(d->report, "logging.level", DOCTOR_PASS, ctl, "",
                   "log level %s, no connector at trace",
                   log_level_name(d->conf->log_level));
}

void doctor_check_audit(struct doctor *d)
{
    const char *ctl = "A.8.15 A.5.28";
    struct error err = {0};
    struct audit_report r;
    memset(&r, 0, sizeof(r));
    int rc = audit_verify(d->st, d->w->vault, &r, &err);
    if (rc < 0)
        doctor_add(d->report, "audit.chain", DOCTOR_FAIL, ctl, "see the "
                   "error", "the audit trail cannot be verified: %s",
                   err.msg);
    else if (rc == 1)
        doctor_add(d->report, "audit.chain", DOCTOR_FAIL, ctl, "treat it as "
                   "an incident: keep a copy of the data dir, find who could "
                   "write wharf.db, compare with copies of audit.head kept "
                   "elsewhere", "the audit trail is broken at entry %lld: %s",
                   (long long)r.first_bad, r.problem);
    else
        doctor_add(d->report, "audit.chain", DOCTOR_PASS, ctl, "", "the audit "
                   "trail verifies: %lld entries, %lld signed checkpoints",
                   (long long)r.entries, (long long)r.checkpoints);
}

/* ---- backups, retention, disk ------------------------------------------------------------ */

void doctor_check_backup(struct doctor *d)
{
    const char *ctl = "A.8.13";
    struct error err = {0};
    int64_t at = 0;
    char *where = NULL, when[32];
    int rc = store_backup_newest(d->st, &at, &where, &err);
    long long days = (long long)((d->now - at) / DAY_MS);
    time_iso(at, when, sizeof(when));
    if (rc < 0)
        doctor_add(d->report, "backup.age", DOCTOR_WARN, ctl, "see the "
                   "error", "cannot read the backups record: %s", err.msg);
    else if (rc == 1)
        doctor_add(d->report, "backup.age", DOCTOR_WARN, ctl, "take one "
                   "with `wharf backup --to FILE` and keep doing so at least "
                   "weekly (docs/operations.md, Backups and restore)",
                   "no backup recorded");
    else if (days > 7)
        doctor_add(d->report, "backup.age", DOCTOR_WARN, ctl, "back up again "
                   "and keep doing so at least weekly", "the last backup "
                   "finished %lld days ago (%s, %s)", days, when,
                   where ? where : "-");
    else
        doctor_add(d->report, "backup.age", DOCTOR_PASS, ctl, "", "the last "
                   "backup finished at %s (%s)", when, where ? where : "-");
    free(where);
}

/* Whether a connector takes messages in (its retention is theirs). */
static int takes_in(const char *type, const json_t *cfg)
{
    const struct connector_type *t = connector_type_find(type);
    return t && ((t->is_source && t->is_source(cfg)) || t->needs_partner ||
                 t->route_prefix);
}

void doctor_check_retention(struct doctor *d)
{
    const char *ctl = "A.8.10 A.5.34";
    struct error err = {0};
    struct store_flow f;
    struct doctor_list forever = {0};
    int days = d->conf->retention_days;
    if (store_flow_get(d->st, &f, &err) < 0) {
        doctor_add(d->report, "retention.configured", DOCTOR_WARN, ctl, "see "
                   "the error", "cannot read the flow: %s", err.msg);
        return;
    }
    size_t nconns = f.nconns;
    for (size_t i = 0; i < f.nconns; i++) {
        json_t *c = json_loads(f.conns[i].config, 0, NULL);
        json_t *r = json_object_get(c, "retention_days");
        long long k = json_is_integer(r) ? json_integer_value(r) : days;
        if (k == 0 && takes_in(f.conns[i].type, c))
            doctor_list_add(&forever, "%s", f.conns[i].name);
        json_decref(c);
    }
    store_flow_clear(&f);
    if (days == 0 && nconns == 0)
        doctor_add(d->report, "retention.configured", DOCTOR_WARN, ctl, "set "
                   "retention_days in wharf.conf (how long messages are "
                   "kept), and per connector where it differs",
                   "no retention: messages are kept for ever "
                   "(retention_days = 0)");
    else if (forever.n)
        doctor_add(d->report, "retention.configured", DOCTOR_WARN, ctl, "set "
                   "retention_days in wharf.conf or on these connectors",
                   "messages of these connectors are kept for ever: %s",
                   forever.text);
    else if (days == 0)
        doctor_add(d->report, "retention.configured", DOCTOR_PASS, ctl, "",
                   "every connector sets its retention_days");
    else
        doctor_add(d->report, "retention.configured", DOCTOR_PASS, ctl, "",
                   "messages are purged after their connector's retention "
                   "(default %d days)", days);
}

void doctor_check_disk(struct doctor *d)
{
    const char *ctl = "A.8.6";
    struct statvfs sv;
    if (statvfs(d->w->dir, &sv) != 0) {
        doctor_add(d->report, "disk.free", DOCTOR_WARN, ctl, "see the error",
                   "cannot read the free space of %s: %s", d->w->dir,
                   strerror(errno));
        return;
    }
    long long mb = (long long)(((unsigned long long)sv.f_bavail *
                                sv.f_frsize) >> 20);
    long long min = (long long)d->conf->disk_min_free_mb;
    if (mb < min)
        doctor_add(d->report, "disk.free", DOCTOR_WARN, ctl, "free space, "
                   "grow the file system, or purge (wharf message purge)",
                   "%lld MiB free in the data directory's file system, under "
                   "disk_min_free_mb (%lld)", mb, min);
    else
        doctor_add(d->report, "disk.free", DOCTOR_PASS, ctl, "", "%lld MiB "
                   "free in the data directory's file system", mb);
}

void doctor_check_metrics(struct doctor *d)
{
    const char *ctl = "A.5.15 A.8.3";
    if (d->conf->metrics_access == WHARF_METRICS_LOOPBACK)
        doctor_add(d->report, "metrics.access", DOCTOR_WARN, ctl, "set "
                   "metrics_access = token and give the scraper a token with "
                   "metrics.read", "every local process may read /metrics "
                   "without credentials (metrics_access = loopback)");
    else
        doctor_add(d->report, "metrics.access", DOCTOR_PASS, ctl, "",
                   "/metrics needs %s", d->conf->metrics_access ==
                   WHARF_METRICS_OFF ? "nothing: it is off" : "a token or "
                   "session with metrics.read");
}

/* ---- the folders flows may name ----------------------------------------------------------- */

/* Whether root is dir itself or one of its ancestors (lexically). */
static int path_contains(const char *root, const char *dir)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return 1;
    return strncmp(root, dir, n) == 0 && (dir[n] == '\0' || dir[n] == '/');
}

/* A root others may write into (sticky or not: they can still plant new
 * files) goes into open; one around the data dir's parent into wide. */
static void path_check_root(const char *root, const char *parent,
                            struct doctor_list *open,
                            struct doctor_list *wide)
{
    struct stat sb;
    if (stat(root, &sb) == 0 && (sb.st_mode & S_IWOTH))
        doctor_list_add(open, "%s (%04o)", root,
                        (unsigned)(sb.st_mode & 07777));
    if (path_contains(root, parent))
        doctor_list_add(wide, "%s", root);
}

void doctor_check_paths(struct doctor *d)
{
    const char *ctl = "A.8.3 A.5.15";
    char copy[sizeof(d->conf->allowed_paths)], parent[4096];
    char real[PATH_MAX];
    struct doctor_list open = {0}, wide = {0};
    snprintf(parent, sizeof(parent), "%s", realpath(d->w->dir, real)
             ? real : d->w->dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    snprintf(copy, sizeof(copy), "%s", d->conf->allowed_paths);
    char *save = NULL;
    int roots = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",",
                                                               &save)) {
        while (*t == ' ')
            t++;
        if (*t == '\0')
            continue;
        roots++;
        path_check_root(t, parent, &open, &wide);
    }
    if (open.n)
        doctor_add(d->report, "paths.allowed_roots", DOCTOR_FAIL, ctl, "chmod "
                   "o-w each root (any local user could plant files that a "
                   "flow sends to partners)", "world-writable roots in "
                   "allowed_paths: %s", open.text);
    else if (wide.n)
        doctor_add(d->report, "paths.allowed_roots", DOCTOR_WARN, ctl, "name "
                   "only the folders flows need in allowed_paths, not a "
                   "folder around the data directory", "roots of "
                   "allowed_paths that contain the data directory's parent "
                   "%s: %s", parent, wide.text);
    else if (roots)
        doctor_add(d->report, "paths.allowed_roots", DOCTOR_PASS, ctl, "",
                   "%d root(s) in allowed_paths, none world-writable or "
                   "around the data directory", roots);
    else
        doctor_add(d->report, "paths.allowed_roots", DOCTOR_PASS, ctl, "",
                   "allowed_paths is empty: flows may name no folder");
}

/* ---- the installation --------------------------------------------------------------------- */

void doctor_check_security_md(struct doctor *d)
{
    const char *ctl = "A.8.8 A.5.24";
    static const char *const rel[] = { "../share/doc/wharf/SECURITY.md",
                                       "../../SECURITY.md" };
    char exe[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", exe, rel[i]);
            char real[PATH_MAX];
            if (access(path, R_OK) == 0) {
                doctor_add(d->report, "install.security_md", DOCTOR_PASS, ctl,
                           "", "how to report a vulnerability: %s",
                           realpath(path, real) ? real : path);
                return;
            }
        }
    }
    doctor_add(d->report, "install.security_md", DOCTOR_WARN, ctl, "install "
               "Wharf with `make install` (it puts SECURITY.md in "
               "PREFIX/share/doc/wharf)", "no SECURITY.md beside the "
               "installed binary%s%s (how to report a vulnerability, the "
               "response target)", n > 0 ? " in " : "", n > 0 ? exe : "");
}
