/*
 * doctor.h - the posture report (R24): `wharf doctor` and GET
 * /api/v1/posture check the running configuration of a data dir against
 * Wharf's requirements and say, per check, PASS, WARN or FAIL, what was
 * found, what to do, and the ISO/IEC 27001:2022 Annex A controls the check
 * gives evidence for. docs/operations.md ("wharf doctor") lists every
 * check with its controls.
 *
 * The report: {"checks":[{"id":"files.data_dir_mode","status":"PASS",
 * "found":"...","action":"...","controls":["A.8.3","A.5.15"]}, ...]}
 * (exactly these members; action "" when there is nothing to do).
 *
 * Reads only (the data dir, wharf.conf as w->conf holds it, the database,
 * the listeners' certificate, /proc for the server's and its key
 * process's user and confinement); never prints a secret, a payload or a
 * password hash.
 */
#ifndef WHARF_SECURITY_DOCTOR_H
#define WHARF_SECURITY_DOCTOR_H

#include <jansson.h>

#include "util/error.h"

struct wharf;
struct wharf_conf;
struct store;

/* Who runs the report. */
struct doctor_env {
    int in_serve;       /* 1: made by wharf serve itself (the API) */
    int serve_pid;      /* else: the running serve's pid, 0 when none */
    /* the configuration in effect; NULL: w->conf (a thread of serve other
     * than the main one passes its published copy, upkeep_get_conf) */
    const struct wharf_conf *conf;
};

/* A new report with the checks of the data dir's files (modes of the data
 * dir, keystore, wharf.conf, database and listener key), which need no
 * open data dir: `wharf doctor` runs them first, so a data dir that
 * refuses to open (too open modes) still gets its report. New reference. */
json_t *doctor_files(const char *dir);

/* Every other check, appended to report (from doctor_files). w and st
 * are open. 0, or -1 with err (what was checked stays in report). */
int doctor_config(struct wharf *w, struct store *st,
                  const struct doctor_env *env, json_t *report,
                  struct error *err);

/* Add a FAIL "data.open" check: the data dir could not be opened (why),
 * so the other checks did not run. */
void doctor_open_failed(json_t *report, const char *why);

/* 1 when a check of report FAILs, else 0 (the exit code of `wharf
 * doctor`). */
int doctor_failed(const json_t *report);

/* The report as text (one block per check) or as one HTML page; malloc'ed,
 * caller frees; NULL when out of memory. */
char *doctor_text(const json_t *report);
char *doctor_html(const json_t *report, const char *title);

#endif
