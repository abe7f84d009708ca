/*
 * status.c (cli) - `wharf status [--json]`: whether a `wharf serve` runs on
 * the data dir (the holder of DIR/wharf.lock and its pid) and the same
 * report its GET /healthz gives, computed by core/health.h from the state
 * the server mirrors to DIR/state/health.json. Reads only; owns nothing
 * beyond the call. Must never report a stale file as the state of a running
 * server (the file must carry the lock holder's pid).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/health.h"
#include "core/wharf.h"
#include "util/fsx.h"
#include "util/id.h"

#define STATUS_FILE_MAX (16 * 1024 * 1024)

/* The running serve's pid, or 0 after printing why there is none. */
static int status_serve_pid(const struct wharf *w)
{
    int pid = 0;
    char verb[64];
    int held = cli_lock_holder(w->dir, &pid, verb, sizeof(verb));
    if (held < 0)
        cli_fail("cannot tell whether wharf serve runs on %s (the lock file "
                 "cannot be read)", w->dir);
    else if (held == 0)
        cli_fail("wharf serve is not running on %s (start it with `wharf "
                 "serve --data %s`)", w->dir, w->dir);
    else if (pid <= 0 || strcmp(verb, "serve") != 0)
        cli_fail("wharf serve is not running on %s: `wharf %s` (pid %d) "
                 "holds it", w->dir, verb[0] ? verb : "?", pid);
    else
        return pid;
    return 0;
}

/* The health state pid wrote, or NULL after printing why not. */
static json_t *status_state(const struct wharf *w, int pid)
{
    char path[4200];
    char *text = NULL;
    size_t len = 0;
    struct error err = {0};
    json_t *state = NULL;
    if (wharf_path(w, "state/health.json", path, sizeof(path)) == 0 &&
        fsx_read_all(path, STATUS_FILE_MAX, &text, &len, &err) == 0)
        state = json_loadb(text, len, 0, NULL);
    free(text);
    if (state != NULL &&
        json_integer_value(json_object_get(state, "pid")) == pid)
        return state;
    json_decref(state);
    cli_fail("wharf serve (pid %d) on %s has not written a health report "
             "yet (%s); try again in a moment", pid, w->dir,
             err.msg[0] ? err.msg : "starting");
    return NULL;
}

static void status_print(const struct wharf *w, int pid, json_t *report,
                         int json)
{
    if (json) {
        json_object_set_new(report, "pid", json_integer(pid));
        json_object_set_new(report, "data", json_string(w->dir));
        char *t = json_dumps(report, JSON_INDENT(2));
        printf("%s\n", t ? t : "{}");
        free(t);
        return;
    }
    printf("wharf serve (pid %d) on %s: %s\n", pid, w->dir,
           json_string_value(json_object_get(report, "status")));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(report, "problems"), i, p) {
        printf("  %s\n", json_string_value(json_object_get(p, "text")));
    }
}

static int status_show(const struct wharf *w, int json)
{
    int pid = status_serve_pid(w);
    if (pid == 0)
        return EXIT_FAIL;
    json_t *state = status_state(w, pid);
    if (state == NULL)
        return EXIT_FAIL;
    int healthy = 0;
    json_t *report = health_report(state, time_now_ms(), &healthy);
    json_decref(state);
    size_t n = json_array_size(json_object_get(report, "problems"));
    status_print(w, pid, report, json);
    json_decref(report);
    if (healthy)
        return EXIT_OK;
    return cli_fail("unhealthy: %zu problem%s (see above and the log)", n,
                    n == 1 ? "" : "s");
}

static int status_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_status, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_status, "unexpected argument %s", a.pos[0]);
    struct error err = {0};
    struct wharf *w = cli_wharf_open(a.data, &err);
    if (w == NULL)
        return cli_fail("%s", err.msg);
    int rc = status_show(w, a.flags[0]);
    wharf_close(w);
    return rc;
}

const struct cli_cmd cmd_status = {
    "status", "is wharf serve running, and healthy (as /healthz says)?",
    "wharf status [--data DIR] [--json]\n"
    "  Says whether `wharf serve` runs on DIR (and its pid), then what its\n"
    "  /healthz reports: ok, or each problem (a connector left out because\n"
    "  it could not be opened, a source whose polls have all failed for\n"
    "  health_failing_seconds). Exit 0 when running and healthy, else 1.\n",
    status_run,
};
