/*
 * common.c - argument parsing, error printing and data-dir opening shared
 * by every verb. Owns nothing beyond the call.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/wharf.h"
#include "security/alerts.h"
#include "security/detectors.h"
#include "store/node_store.h"
#include "store/store.h"

int cli_fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)        /* one line, always */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "wharf: %s\n", msg);
    return EXIT_FAIL;
}

int cli_usage(const struct cli_cmd *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "wharf %s: %s\nusage: %s", cmd->name, msg, cmd->usage);
    return EXIT_USAGE;
}

/* Index of the option named by arg in opts (matching "--x" or "--x="),
 * or -1. *inline_val is set for "--x=value". */
static int opt_find(const char *const *opts, const char *arg,
                    const char **inline_val)
{
    *inline_val = NULL;
    for (int i = 0; opts && opts[i] && i < CLI_MAX_OPTS; i++) {
        size_t n = strlen(opts[i]);
        int takes = opts[i][n - 1] == '=';
        size_t base = takes ? n - 1 : n;
        if (strncmp(arg, opts[i], base) != 0)
            continue;
        if (arg[base] == '\0')
            return i;
        if (takes && arg[base] == '=') {
            *inline_val = arg + base + 1;
            return i;
        }
    }
    return -1;
}

static int takes_value(const char *opt)
{
    return opt[strlen(opt) - 1] == '=';
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv,
              const char *const *opts, struct cli_args *out)
{
    memset(out, 0, sizeof(*out));
    out->data = getenv("WHARF_DATA") ? getenv("WHARF_DATA") : "./wharf-data";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *iv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: %s", cmd->usage);
            return 1;
        }
        if (!strcmp(a, "--data") || !strncmp(a, "--data=", 7)) {
            if (a[6] == '=')
                out->data = a + 7;
            else if (++i < argc)
                out->data = argv[i];
            else
                return cli_usage(cmd, "--data needs a directory"), -1;
            continue;
        }
        int k = a[0] == '-' && a[1] == '-' ? opt_find(opts, a, &iv) : -2;
        if (k == -1)
            return cli_usage(cmd, "unknown option %s", a), -1;
        if (k >= 0 && takes_value(opts[k])) {
            if (iv == NULL && ++i >= argc)
                return cli_usage(cmd, "%s needs a value", a), -1;
            out->values[k] = iv ? iv : argv[i];
            continue;
        }
        if (k >= 0) {
            out->flags[k] = 1;
            continue;
        }
        if (out->npos == 8)
            return cli_usage(cmd, "too many arguments"), -1;
        out->pos[out->npos++] = a;
    }
    return 0;
}

struct wharf *cli_wharf_open(const char *data, struct error *err)
{
    static const char fix[] = "pass --data DIR, set $WHARF_DATA, or create "
                              "one with `wharf init --data DIR`";
    struct stat sb;
    char conf[4200];
    int found = stat(data, &sb) == 0;
    if (!found && errno == ENOENT) {
        error_set(err, "no Wharf data directory at %s: %s", data, fix);
        return NULL;
    }
    snprintf(conf, sizeof(conf), "%s/wharf.conf", data);
    if (found && S_ISDIR(sb.st_mode) && stat(conf, &sb) < 0 &&
        errno == ENOENT) {
        error_set(err, "%s is not a Wharf data directory (it has no "
                  "wharf.conf): %s", data, fix);
        return NULL;
    }
    return wharf_open(data, err);
}

int cli_open(const char *data, struct wharf **w, struct store **st)
{
    struct error err = {0};
    *st = NULL;
    *w = cli_wharf_open(data, &err);
    if (*w == NULL)
        return cli_fail("%s", err.msg);
    *st = store_open((*w)->db_path, &err);
    if (*st == NULL) {
        wharf_close(*w);
        *w = NULL;
        return cli_fail("%s", err.msg);
    }
    alerts_attach(*w);          /* what this command sees raises alerts */
    return 0;
}

void cli_close(struct wharf *w, struct store *st)
{
    if (st != NULL && alerts_wharf() == w)
        detect_flush(st);       /* integrity failures this command saw */
    if (alerts_wharf() == w)
        alerts_attach(NULL);
    store_close(st);
    wharf_close(w);
}

/* DIR/wharf.lock into path. */
static void lock_path(const char *dir, char *path, size_t n)
{
    snprintf(path, n, "%s/wharf.lock", dir);
}

/* What the lock file says about its holder: "PID VERB". */
static void lock_read_holder(int fd, int *pid, char *verb, size_t n)
{
    char buf[96];
    ssize_t k = pread(fd, buf, sizeof(buf) - 1, 0);
    *pid = 0;
    verb[0] = '\0';
    if (k <= 0)
        return;
    buf[k] = '\0';
    char *end;
    long p = strtol(buf, &end, 10);
    if (end == buf || p <= 0 || p > 0x7fffffff || *end != ' ')
        return;
    *pid = (int)p;
    size_t len = strcspn(end + 1, "\n");
    snprintf(verb, n, "%.*s", (int)len, end + 1);
}

int cli_lock_holder(const char *dir, int *pid, char *verb, size_t n)
{
    char path[4200];
    lock_path(dir, path, sizeof(path));
    *pid = 0;
    verb[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    int held = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0)
        held = errno == EWOULDBLOCK ? 1 : -1;
    if (held == 1)
        lock_read_holder(fd, pid, verb, n);
    close(fd);
    return held;
}

/* The lock is ours: say who holds it, for the next one who asks. */
static void lock_write_holder(int fd, const char *verb)
{
    char buf[96];
    int k = snprintf(buf, sizeof(buf), "%d %s\n", (int)getpid(), verb);
    if (ftruncate(fd, 0) == 0 && k > 0)
        (void)!pwrite(fd, buf, (size_t)k, 0);
}

int cli_lock(const char *dir, const char *verb, int *fd, struct error *err)
{
    char path[4200];
    lock_path(dir, path, sizeof(path));
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno, pid;
        char who[64];
        if (e == EWOULDBLOCK)
            lock_read_holder(*fd, &pid, who, sizeof(who));
        close(*fd);
        *fd = -1;
        if (e != EWOULDBLOCK)
            return error_errno(err, e, "cannot lock %s", path);
        if (pid > 0 && who[0])
            return error_set(err, "another `wharf %s` (pid %d) is running "
                             "on %s", who, pid, dir);
        return error_set(err, "another wharf serve is running on %s", dir);
    }
    lock_write_holder(*fd, verb);
    return 0;
}

const char *cli_node_state(const struct store_node *n, int64_t now)
{
    if (n->stopped_at)
        return "stopped";
    return now - n->seen_at <= 3 * n->beat_ms ? "running" : "silent";
}
