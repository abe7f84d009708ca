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
#include <unistd.h>

#include "core/wharf.h"
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
    for (int i = 0; opts && opts[i]; i++) {
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

int cli_open(const char *data, struct wharf **w, struct store **st)
{
    struct error err = {0};
    *st = NULL;
    *w = wharf_open(data, &err);
    if (*w == NULL)
        return cli_fail("%s", err.msg);
    *st = store_open((*w)->db_path, &err);
    if (*st == NULL) {
        wharf_close(*w);
        *w = NULL;
        return cli_fail("%s", err.msg);
    }
    return 0;
}

void cli_close(struct wharf *w, struct store *st)
{
    store_close(st);
    wharf_close(w);
}

int cli_lock(const char *dir, int *fd, struct error *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/wharf.lock", dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return error_errno(err, errno, "cannot open %s", path);
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(*fd);
        *fd = -1;
        if (e == EWOULDBLOCK) {
            error_set(err, "another wharf serve is running on %s", dir);
            if (err != NULL)
                err->code = EWOULDBLOCK;
            return -1;
        }
        return error_errno(err, e, "cannot lock %s", path);
    }
    /* the holder's pid, for the messages of those it keeps out */
    if (ftruncate(*fd, 0) == 0)
        dprintf(*fd, "%ld\n", (long)getpid());
    return 0;
}
