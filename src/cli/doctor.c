/*
 * doctor.c (cli) - `wharf doctor [--json|--html]`: the posture report of
 * security/doctor.h (R24) for an auditor: every check with PASS, WARN or
 * FAIL, what it found, what to do and the ISO/IEC 27001:2022 Annex A
 * controls. The file checks run first (by stat), so a data dir that
 * refuses to open still gets a report. Exit 0 when nothing FAILs, else 1.
 * Reads only; owns nothing beyond the call.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/wharf.h"
#include "security/doctor.h"
#include "store/store.h"

static int doctor_print(const json_t *report, const char *dir, int json,
                        int html)
{
    char *out = json ? json_dumps(report, JSON_INDENT(2))
                : html ? doctor_html(report, dir) : doctor_text(report);
    if (out == NULL)
        return cli_fail("out of memory");
    fputs(out, stdout);
    if (json)
        fputc('\n', stdout);
    free(out);
    return doctor_failed(report) ? EXIT_FAIL : EXIT_OK;
}

/* The configuration checks; 0, or the report got the open failure. */
static void doctor_open_and_check(const char *data, json_t *report)
{
    struct error err = {0};
    struct wharf *w = cli_wharf_open(data, &err);
    struct store *st = w ? store_open(w->db_path, &err) : NULL;
    if (st == NULL) {
        doctor_open_failed(report, err.msg);
        wharf_close(w);
        return;
    }
    int pid = 0;
    char verb[64];
    struct doctor_env env = { 0, 0, NULL };
    if (cli_lock_holder(w->dir, &pid, verb, sizeof(verb)) == 1 &&
        strcmp(verb, "serve") == 0)
        env.serve_pid = pid;
    if (doctor_config(w, st, &env, report, &err) < 0)
        doctor_open_failed(report, err.msg);
    store_close(st);
    wharf_close(w);
}

static int doctor_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--html", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_doctor, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos > 0)
        return cli_usage(&cmd_doctor, "unexpected argument %s", a.pos[0]);
    if (a.flags[0] && a.flags[1])
        return cli_usage(&cmd_doctor, "--json or --html, not both");
    json_t *report = doctor_files(a.data);
    doctor_open_and_check(a.data, report);
    int rc = doctor_print(report, a.data, a.flags[0], a.flags[1]);
    json_decref(report);
    return rc;
}

const struct cli_cmd cmd_doctor = {
    "doctor", "the posture report: checks mapped to ISO 27001 Annex A",
    "wharf doctor [--data DIR] [--json | --html]\n"
    "  Checks the data dir and its configuration against Wharf's security\n"
    "  requirements: file modes, the server's user, listeners reachable\n"
    "  beyond this machine without mutual TLS, plain-text connectors, SSH\n"
    "  host keys, administrators without a second factor, API tokens\n"
    "  without expiry or unused, certificates near expiry, the master key's\n"
    "  age, log levels, the audit chain, backups, retention, disk space,\n"
    "  metrics access, allowed_paths, SECURITY.md. Each check says PASS,\n"
    "  WARN or FAIL, what it found, what to do and the ISO/IEC 27001:2022\n"
    "  Annex A controls it gives evidence for. --json prints\n"
    "  {\"checks\":[{\"id\",\"status\",\"found\",\"action\",\"controls\"}]};\n"
    "  --html one page. Exit 0 when nothing FAILs, else 1.\n",
    doctor_run,
};
