/*
 * user.c (cli) - `wharf user ...`: people, offline against the data dir
 * (the same auth_ functions the REST API calls), and the first
 * administrator that `wharf init` creates (cli_user_bootstrap).
 *
 *   add NAME --role ROLE        prints a one-time password (changed at first login)
 *   list [--json]
 *   passwd NAME [--must-change] the new password from stdin (policy applies)
 *   role NAME ROLE | disable NAME | enable NAME | delete NAME
 *   logout NAME                 revokes every session of NAME
 *   mfa enroll NAME             prints the otpauth:// URI (for a QR code)
 *   mfa confirm NAME CODE       enables TOTP, prints 10 recovery codes
 *   mfa verify NAME CODE        checks (and uses up) a TOTP or recovery code
 *   mfa recovery NAME           replaces the recovery codes
 *   mfa disable NAME
 * CODE may be "-": read from stdin. Every change is audited (actor "cli").
 *
 * Owns nothing beyond a call. Must never: print a secret except the ones
 * made to be shown once (one-time password, otpauth URI, recovery codes),
 * take a password from the command line (it would show in ps), or echo a
 * password typed on a terminal.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth/auth.h"
#include "cli/cli.h"
#include "core/wharf.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"

static const struct auth_actor CLI_ACTOR = { "cli", NULL };

/* Write a secret to stdout as it is (shown once, on purpose). */
static void print_secret(const char *label, const struct secret *s)
{
    fputs(label, stdout);
    fwrite(secret_data(s), 1, secret_len(s), stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

/* An auth_ result as an exit code, printing err when it failed. */
static int auth_exit(int rc, const struct error *err)
{
    if (rc == AUTH_OK)
        return EXIT_OK;
    return cli_fail("%s", err->msg[0] ? err->msg : "failed");
}

/* ---- reading a password or code from stdin ----------------------------------- */

/* One line from fd 0 (without "\n" or "\r\n") straight into a secret: at
 * most max bytes, else NULL. No stdio buffer holds a copy. */
static struct secret *read_line_secret(size_t max, struct error *err)
{
    struct secret *buf = secret_new(max + 1);
    if (buf == NULL)
        return error_set(err, "out of memory"), NULL;
    unsigned char *p = secret_data_mut(buf);
    size_t n = 0;
    char c;
    ssize_t r;
    while ((r = read(STDIN_FILENO, &c, 1)) == 1 && c != '\n')
        if (n <= max)
            p[n++] = (unsigned char)c;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    struct secret *out = NULL;
    if (r < 0)
        error_set(err, "cannot read stdin");
    else if (n > max)
        error_set(err, "the input line is longer than %zu bytes", max);
    else if ((out = secret_from(p, n)) == NULL)
        error_set(err, "out of memory");
    secret_free(buf);
    return out;
}

/* Read with echo off when stdin is a terminal (prompt on stderr). */
static struct secret *read_hidden(const char *prompt, struct error *err)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fputs(prompt, stderr);
        quiet = old;
        quiet.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    struct secret *s = read_line_secret(AUTH_PASSWORD_MAX, err);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return s;
}

/* The new password: one line of stdin; typed twice on a terminal. */
static struct secret *read_new_password(struct error *err)
{
    struct secret *a = read_hidden("new password: ", err);
    if (a == NULL || !isatty(STDIN_FILENO))
        return a;
    struct secret *b = read_hidden("again: ", err);
    if (b == NULL || !secret_equal(a, b)) {
        if (b != NULL)
            error_set(err, "the two passwords differ");
        secret_free(a);
        a = NULL;
    }
    secret_free(b);
    return a;
}

/* CODE from the command line, or stdin for "-". */
static struct secret *code_arg(const char *arg, struct error *err)
{
    if (strcmp(arg, "-") == 0)
        return read_hidden("code: ", err);
    struct secret *s = secret_from(arg, strlen(arg));
    if (s == NULL)
        error_set(err, "out of memory");
    return s;
}

/* ---- the verbs ------------------------------------------------------------------ */

static int role_arg(const char *name, enum role *r)
{
    if (name == NULL || rbac_role_parse(name, r) < 0)
        return cli_usage(&cmd_user, "ROLE must be admin, operator, auditor or "
                         "viewer");
    return EXIT_OK;
}

static int user_add(struct auth *a, const char *name, const char *role_name)
{
    enum role role;
    struct error err = {0};
    struct secret *otp = NULL;
    if (role_name == NULL)
        return cli_usage(&cmd_user, "add needs --role ROLE");
    if (role_arg(role_name, &role) != EXIT_OK)
        return EXIT_USAGE;
    int rc = auth_user_create(a, &CLI_ACTOR, name, role, NULL, &otp, &err);
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    printf("created user %s (%s)\n", name, rbac_role_name(role));
    print_secret("one-time password: ", otp);
    printf("it is shown only once and must be changed at the first login\n");
    secret_free(otp);
    return EXIT_OK;
}

static json_t *user_json(const struct store_user *u)
{
    char created[32], updated[32];
    time_iso(u->created_at, created, sizeof(created));
    time_iso(u->updated_at, updated, sizeof(updated));
    return json_pack("{s:I, s:s, s:s, s:b, s:b, s:b, s:s, s:s}",
                     "id", (json_int_t)u->id, "name", u->name, "role", u->role,
                     "mfa", u->totp_enabled, "disabled", u->disabled,
                     "must_change_password", u->must_change,
                     "created_at", created, "updated_at", updated);
}

static void user_table(const struct store_user *u, size_t n)
{
    printf("%-24s %-9s %-4s %-9s %s\n", "NAME", "ROLE", "MFA", "STATUS",
           "CREATED");
    for (size_t i = 0; i < n; i++) {
        char created[32];
        time_iso(u[i].created_at, created, sizeof(created));
        printf("%-24s %-9s %-4s %-9s %s\n", u[i].name, u[i].role,
               u[i].totp_enabled ? "on" : "off",
               u[i].disabled ? "disabled"
               : u[i].must_change ? "new-pw" : "active", created);
    }
}

static int user_list(struct auth *a, int json)
{
    struct store_user *u;
    size_t n;
    struct error err = {0};
    if (store_user_list(a->st, &u, &n, &err) < 0)
        return cli_fail("%s", err.msg);
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, user_json(&u[i]));
        char *t = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
    } else {
        user_table(u, n);
    }
    store_users_free(u, n);
    return EXIT_OK;
}

static int user_passwd(struct auth *a, const char *name, int must_change)
{
    struct error err = {0};
    struct store_user u;
    int rc = auth_user_get(a, name, &u, &err);
    store_user_clear(&u);
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    struct secret *pw = read_new_password(&err);
    if (pw == NULL)
        return cli_fail("%s", err.msg);
    rc = auth_user_password(a, &CLI_ACTOR, name, NULL, pw, must_change, NULL,
                            &err);
    secret_free(pw);
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    printf("password of %s changed%s; their sessions were ended\n", name,
           must_change ? " (to be changed at the next login)" : "");
    return EXIT_OK;
}

static int user_simple(struct auth *a, const char *verb, const char *name,
                       const char *arg)
{
    struct error err = {0};
    enum role role;
    int rc, count = 0;
    if (strcmp(verb, "role") == 0) {
        if (arg == NULL)
            return cli_usage(&cmd_user, "role needs NAME and ROLE");
        if (role_arg(arg, &role) != EXIT_OK)
            return EXIT_USAGE;
        rc = auth_user_set_role(a, &CLI_ACTOR, name, role, &err);
    } else if (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0) {
        rc = auth_user_set_disabled(a, &CLI_ACTOR, name, verb[0] == 'd', &err);
    } else if (strcmp(verb, "delete") == 0) {
        rc = auth_user_delete(a, &CLI_ACTOR, name, &err);
    } else {
        rc = auth_session_revoke_user(a, &CLI_ACTOR, name, NULL, &count, &err);
    }
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    if (strcmp(verb, "role") == 0)
        printf("%s is now %s\n", name, rbac_role_name(role));
    else if (strcmp(verb, "logout") == 0)
        printf("ended %d session(s) of %s\n", count, name);
    else
        printf("%s %sd\n", name, verb);
    return EXIT_OK;
}

/* ---- mfa ------------------------------------------------------------------------ */

static int mfa_verify(struct auth *a, const char *name,
                      const struct secret *code)
{
    struct error err = {0};
    struct store_user u;
    int rc = auth_user_get(a, name, &u, &err), recovery = 0;
    const char *why = NULL;
    if (rc == AUTH_OK)
        rc = auth_mfa_check(a, &CLI_ACTOR, &u, code, &recovery, &why, &err);
    store_user_clear(&u);
    if (rc == AUTH_DENIED)
        return cli_fail("code refused (%s)", why ? why : "wrong code");
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    printf("accepted (%s)\n", recovery ? "recovery code, now used up"
                                       : "TOTP code");
    return EXIT_OK;
}

static int mfa_with_code(struct auth *a, const char *verb, const char *name,
                         const char *code_text)
{
    struct error err = {0};
    struct secret *codes = NULL;
    if (code_text == NULL)
        return cli_usage(&cmd_user, "mfa %s needs NAME and CODE", verb);
    struct secret *code = code_arg(code_text, &err);
    if (code == NULL)
        return cli_fail("%s", err.msg);
    int rc;
    if (strcmp(verb, "verify") == 0) {
        rc = mfa_verify(a, name, code);
        secret_free(code);
        return rc;
    }
    rc = auth_totp_confirm(a, &CLI_ACTOR, name, code, &codes, &err);
    secret_free(code);
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    printf("TOTP enabled for %s\nrecovery codes (shown only once; each works "
           "once):\n", name);
    print_secret("", codes);
    secret_free(codes);
    return EXIT_OK;
}

static int user_mfa(struct auth *a, const struct cli_args *args)
{
    if (args->npos < 3)
        return cli_usage(&cmd_user, "mfa needs enroll|confirm|verify|recovery|"
                         "disable and NAME");
    const char *verb = args->pos[1], *name = args->pos[2];
    struct error err = {0};
    struct secret *out = NULL;
    int rc;
    if (!strcmp(verb, "confirm") || !strcmp(verb, "verify"))
        return mfa_with_code(a, verb, name, args->npos > 3 ? args->pos[3]
                                                           : NULL);
    if (strcmp(verb, "enroll") == 0)
        rc = auth_totp_enroll(a, &CLI_ACTOR, name, &out, &err);
    else if (strcmp(verb, "recovery") == 0)
        rc = auth_recovery_regenerate(a, &CLI_ACTOR, name, &out, &err);
    else if (strcmp(verb, "disable") == 0)
        rc = auth_totp_disable(a, &CLI_ACTOR, name, &err);
    else
        return cli_usage(&cmd_user, "unknown mfa command '%s'", verb);
    if (rc != AUTH_OK)
        return auth_exit(rc, &err);
    if (strcmp(verb, "enroll") == 0) {
        print_secret("", out);
        printf("scan it (or type the secret) into an authenticator app, then "
               "run: wharf user mfa confirm %s CODE\n", name);
    } else if (strcmp(verb, "recovery") == 0) {
        printf("new recovery codes for %s (shown only once; the old ones no "
               "longer work):\n", name);
        print_secret("", out);
    } else {
        printf("TOTP disabled for %s\n", name);
    }
    secret_free(out);
    return EXIT_OK;
}

/* ---- dispatch ---------------------------------------------------------------------- */

static int user_dispatch(struct auth *a, const struct cli_args *args)
{
    const char *verb = args->pos[0];
    const char *name = args->npos > 1 ? args->pos[1] : NULL;
    if (strcmp(verb, "list") == 0)
        return user_list(a, args->flags[1]);
    if (strcmp(verb, "mfa") == 0)
        return user_mfa(a, args);
    if (name == NULL)
        return cli_usage(&cmd_user, "%s needs a user NAME", verb);
    if (strcmp(verb, "add") == 0)
        return user_add(a, name, args->values[0]);
    if (strcmp(verb, "passwd") == 0)
        return user_passwd(a, name, args->flags[2]);
    if (!strcmp(verb, "role") || !strcmp(verb, "disable") ||
        !strcmp(verb, "enable") || !strcmp(verb, "delete") ||
        !strcmp(verb, "logout"))
        return user_simple(a, verb, name, args->npos > 2 ? args->pos[2]
                                                         : NULL);
    return cli_usage(&cmd_user, "unknown command '%s'", verb);
}

static int user_run(int argc, char **argv)
{
    static const char *const opts[] = { "--role=", "--json", "--must-change",
                                        NULL };
    struct cli_args args;
    int p = cli_parse(&cmd_user, argc, argv, opts, &args);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (args.npos == 0)
        return cli_usage(&cmd_user, "expected a command");
    struct wharf *w;
    struct store *st;
    if (cli_open(args.data, &w, &st) != 0)
        return EXIT_FAIL;
    log_set_stderr(false);      /* the audit trail records; stdout answers */
    struct auth a;
    auth_init(&a, st, w->vault);
    int rc = user_dispatch(&a, &args);
    cli_close(w, st);
    return rc;
}

int cli_user_bootstrap(const char *data)
{
    struct wharf *w;
    struct store *st;
    struct error err = {0};
    struct secret *otp = NULL;
    if (cli_open(data, &w, &st) != 0)
        return EXIT_FAIL;
    struct auth a;
    auth_init(&a, st, w->vault);
    log_set_stderr(false);      /* the audit trail records it */
    int rc = auth_user_bootstrap(&a, &otp, &err);
    cli_close(w, st);
    if (rc != AUTH_OK)
        return cli_fail("cannot create the first administrator: %s", err.msg);
    printf("administrator: %s\n", AUTH_FIRST_ADMIN);
    print_secret("one-time password: ", otp);
    printf("it is shown only once and must be changed at the first login\n");
    secret_free(otp);
    return EXIT_OK;
}

const struct cli_cmd cmd_user = {
    "user", "manage people: add, list, passwd, role, disable, mfa",
    "wharf user COMMAND [--data DIR] ...\n"
    "  add NAME --role ROLE      create a user; prints a one-time password\n"
    "                            that must be changed at the first login\n"
    "  list [--json]             every user with role, MFA and status\n"
    "  passwd NAME [--must-change]  set the password read from stdin\n"
    "  role NAME ROLE            ROLE: admin, operator, auditor, viewer\n"
    "  disable NAME | enable NAME | delete NAME\n"
    "  logout NAME               end every session of NAME\n"
    "  mfa enroll NAME           start TOTP enrolment: prints the otpauth URI\n"
    "  mfa confirm NAME CODE     finish it with a first code; prints 10\n"
    "                            recovery codes\n"
    "  mfa verify NAME CODE      check a TOTP or recovery code (uses it up)\n"
    "  mfa recovery NAME         replace the recovery codes\n"
    "  mfa disable NAME          turn TOTP off (and drop recovery codes)\n"
    "  CODE \"-\" reads the code from stdin. Works offline on the data dir;\n"
    "  every change is written to the audit trail.\n",
    user_run,
};
