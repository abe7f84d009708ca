/*
 * doctor.c - the posture report of doctor.h: the report itself, the
 * checks of the data dir's files (by stat, before anything is opened),
 * the order of the other checks (doctor_checks.c, doctor_net.c) and the
 * text and HTML forms of the report.
 *
 * Owns the report it builds (handed to the caller). Must never: open or
 * read a secret (modes only), print anything but what a check found, or
 * change a file.
 */
#include "security/doctor_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/wharf.h"
#include "util/id.h"
#include "util/strbuf.h"

/* ---- building the report ------------------------------------------------------ */

static const char *const STATUS_NAME[] = { "PASS", "WARN", "FAIL" };

void doctor_add(json_t *report, const char *id, enum doctor_status s,
                const char *controls, const char *action,
                const char *found_fmt, ...)
{
    char found[1024], copy[256];
    va_list ap;
    va_start(ap, found_fmt);
    vsnprintf(found, sizeof(found), found_fmt, ap);
    va_end(ap);
    json_t *ctl = json_array();
    snprintf(copy, sizeof(copy), "%s", controls);
    char *save = NULL;
    for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ",
                                                               &save))
        json_array_append_new(ctl, json_string(t));
    json_array_append_new(json_object_get(report, "checks"), json_pack(
        "{s:s, s:s, s:s, s:s, s:o}", "id", id, "status", STATUS_NAME[s],
        "found", found, "action", s == DOCTOR_PASS ? "" : action,
        "controls", ctl));
}

void doctor_list_add(struct doctor_list *l, const char *fmt, ...)
{
    char item[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item, sizeof(item), fmt, ap);
    va_end(ap);
    size_t len = strlen(l->text);
    if (len + strlen(item) + 8 >= sizeof(l->text)) {
        if (!strstr(l->text, ", ..."))
            snprintf(l->text + len, sizeof(l->text) - len, ", ...");
    } else {
        snprintf(l->text + len, sizeof(l->text) - len, "%s%s",
                 l->n ? ", " : "", item);
    }
    l->n++;
}

void doctor_open_failed(json_t *report, const char *why)
{
    doctor_add(report, "data.open", DOCTOR_FAIL, "A.8.3 A.5.15",
               "fix what the FAIL checks above say, then run wharf doctor "
               "again: the other checks need the data directory open",
               "the data directory cannot be opened: %s", why);
}

int doctor_failed(const json_t *report)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "status")),
                   "FAIL") == 0)
            return 1;
    }
    return 0;
}

/* ---- the files (modes only) ----------------------------------------------------- */

/* The mode of dir/rel, or -1 (errno set). */
static int mode_of(const char *dir, const char *rel, char *path, size_t n)
{
    struct stat sb;
    snprintf(path, n, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    if (stat(path, &sb) < 0)
        return -1;
    return (int)(sb.st_mode & 07777);
}

static void files_data_dir(json_t *report, const char *dir)
{
    char path[4200];
    int m = mode_of(dir, "", path, sizeof(path));
    if (m < 0)
        doctor_add(report, "files.data_dir_mode", DOCTOR_FAIL, "A.8.3 A.5.15",
                   "pass the data directory with --data", "%s: %s", path,
                   strerror(errno));
    else if (m & 077)
        doctor_add(report, "files.data_dir_mode", DOCTOR_FAIL, "A.8.3 A.5.15",
                   "run: chmod 700 DIR (serve refuses to start until then)",
                   "the data directory %s has mode %04o: group or others "
                   "can reach the keystore's folder", path, (unsigned)m);
    else
        doctor_add(report, "files.data_dir_mode", DOCTOR_PASS, "A.8.3 A.5.15",
                   "", "the data directory %s has mode %04o", path,
                   (unsigned)m);
}

static void files_keystore(json_t *report, const char *dir)
{
    char path[4200];
    int m = mode_of(dir, "keystore", path, sizeof(path));
    if (m < 0 || (m & 077))
        doctor_add(report, "files.keystore_mode", DOCTOR_FAIL,
                   "A.8.24 A.8.3", "run: chmod 600 DIR/keystore, and treat "
                   "the master key as exposed: rotate it (wharf key rotate)",
                   m < 0 ? "the keystore %s is missing" : "the keystore %s "
                   "(the master keys) has mode %04o", path, (unsigned)m);
    else
        doctor_add(report, "files.keystore_mode", DOCTOR_PASS,
                   "A.8.24 A.8.3", "", "the keystore %s has mode %04o",
                   path, (unsigned)m);
}

static void files_secrets(json_t *report, const char *dir)
{
    static const char *const rel[] = { "wharf.conf", "wharf.db",
                                       "tls/key.pem", "state/audit.head" };
    struct doctor_list bad = {0};
    char path[4200];
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        int m = mode_of(dir, rel[i], path, sizeof(path));
        if (m >= 0 && (m & 077))
            doctor_list_add(&bad, "%s (%04o)", rel[i], (unsigned)m);
    }
    if (bad.n)
        doctor_add(report, "files.private_modes", DOCTOR_FAIL, "A.8.3 A.5.15",
                   "run: chmod 600 on each (the database holds sealed "
                   "secrets and password hashes)", "readable by group or "
                   "others: %s", bad.text);
    else
        doctor_add(report, "files.private_modes", DOCTOR_PASS, "A.8.3 A.5.15",
                   "", "wharf.conf, wharf.db, the listeners' default key and "
                   "the audit anchor are private to their owner");
}

json_t *doctor_files(const char *dir)
{
    json_t *report = json_pack("{s:[]}", "checks");
    files_data_dir(report, dir);
    files_keystore(report, dir);
    files_secrets(report, dir);
    return report;
}

/* ---- the rest, in the order an auditor reads them ------------------------------ */

int doctor_config(struct wharf *w, struct store *st,
                  const struct doctor_env *env, json_t *report,
                  struct error *err)
{
    (void)err;
    struct doctor d = { report, w, env->conf ? env->conf : &w->conf, st, env,
                        time_now_ms() };
    doctor_check_user(&d);
    doctor_check_sandbox(&d);
    doctor_check_keys(&d);
    doctor_check_listeners(&d);
    doctor_check_connectors(&d);
    doctor_check_host_keys(&d);
    doctor_check_partners(&d);
    doctor_check_mfa(&d);
    doctor_check_tokens(&d);
    doctor_check_certificates(&d);
    doctor_check_keystore(&d);
    doctor_check_master_key(&d);
    doctor_check_logging(&d);
    doctor_check_audit(&d);
    doctor_check_backup(&d);
    doctor_check_retention(&d);
    doctor_check_disk(&d);
    doctor_check_metrics(&d);
    doctor_check_paths(&d);
    doctor_check_security_md(&d);
    return 0;
}

/* ---- text and HTML ----------------------------------------------------------------- */

static void sb_html(struct strbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': strbuf_str(b, "&amp;"); break;
        case '<': strbuf_str(b, "&lt;"); break;
        case '>': strbuf_str(b, "&gt;"); break;
        case '"': strbuf_str(b, "&quot;"); break;
        case '\'': strbuf_str(b, "&#39;"); break;
        default: strbuf_add(b, s, 1);
        }
    }
}

static const char *field(const json_t *c, const char *k)
{
    const char *v = json_string_value(json_object_get(c, k));
    return v ? v : "";
}

/* "A.8.24 A.8.3" of a check's controls. */
static void controls_text(const json_t *c, char *out, size_t n)
{
    size_t i, len = 0;
    json_t *v;
    out[0] = '\0';
    json_array_foreach(json_object_get(c, "controls"), i, v) {
        int k = snprintf(out + len, n - len, "%s%s", i ? " " : "",
                         json_string_value(v));
        if (k < 0 || (size_t)k >= n - len)
            break;
        len += (size_t)k;
    }
}

static void summary_counts(const json_t *report, int count[3])
{
    size_t i;
    json_t *c;
    count[0] = count[1] = count[2] = 0;
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        for (int s = 0; s < 3; s++)
            count[s] += strcmp(field(c, "status"), STATUS_NAME[s]) == 0;
    }
}

char *doctor_text(const json_t *report)
{
    struct strbuf b = {0};
    size_t i;
    json_t *c;
    int count[3];
    char line[2048], ctl[256];
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        controls_text(c, ctl, sizeof(ctl));
        snprintf(line, sizeof(line), "%s  %-28s %s\n", field(c, "status"),
                 field(c, "id"), field(c, "found"));
        strbuf_str(&b, line);
        if (field(c, "action")[0]) {
            snprintf(line, sizeof(line), "      -> %s\n", field(c, "action"));
            strbuf_str(&b, line);
        }
        snprintf(line, sizeof(line), "      ISO/IEC 27001:2022 Annex A: %s\n",
                 ctl);
        strbuf_str(&b, line);
    }
    summary_counts(report, count);
    snprintf(line, sizeof(line), "\n%d PASS, %d WARN, %d FAIL\n", count[0],
             count[1], count[2]);
    strbuf_str(&b, line);
    return strbuf_take(&b);
}

static void html_row(struct strbuf *b, const json_t *c)
{
    char ctl[256];
    controls_text(c, ctl, sizeof(ctl));
    strbuf_str(b, "<tr class=\"");
    sb_html(b, field(c, "status"));
    strbuf_str(b, "\"><td>");
    sb_html(b, field(c, "status"));
    strbuf_str(b, "</td><td><code>");
    sb_html(b, field(c, "id"));
    strbuf_str(b, "</code></td><td>");
    sb_html(b, field(c, "found"));
    strbuf_str(b, "</td><td>");
    sb_html(b, field(c, "action"));
    strbuf_str(b, "</td><td>");
    sb_html(b, ctl);
    strbuf_str(b, "</td></tr>\n");
}

char *doctor_html(const json_t *report, const char *title)
{
    struct strbuf b = {0};
    int count[3];
    char line[256];
    size_t i;
    json_t *c;
    strbuf_str(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
               "<title>Wharf posture report: ");
    sb_html(&b, title);
    strbuf_str(&b, "</title><style>body{font-family:sans-serif}"
               "table{border-collapse:collapse}td,th{border:1px solid #999;"
               "padding:4px;vertical-align:top}.FAIL td:first-child{"
               "background:#f99}.WARN td:first-child{background:#fd8}"
               ".PASS td:first-child{background:#9d9}</style></head><body>\n"
               "<h1>Wharf posture report</h1>\n<p>");
    sb_html(&b, title);
    summary_counts(report, count);
    snprintf(line, sizeof(line), ": %d PASS, %d WARN, %d FAIL</p>\n",
             count[0], count[1], count[2]);
    strbuf_str(&b, line);
    strbuf_str(&b, "<table><tr><th>status</th><th>check</th><th>found</th>"
               "<th>what to do</th><th>ISO/IEC 27001:2022 Annex A</th></tr>\n");
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        html_row(&b, c);
    }
    strbuf_str(&b, "</table></body></html>\n");
    return strbuf_take(&b);
}
