/*
 * alert.c (cli) - `wharf alert`, `wharf incident` and `wharf notify`: the
 * incident ladder of R19 from the command line (the same functions as
 * /api/v1/alerts and /api/v1/incidents: security/incidents.h) and the
 * notification channels' credentials and test.
 *
 * The CLI acts as "cli" (the audit trail's actor for every verb); each
 * transition needs its reason (--reason, --notes, --note). Output: a
 * table or key: value lines, or with --json the same documents the API
 * returns.
 *
 * Owns nothing beyond a call. Must never print a credential (`notify
 * credentials` reads a file and prints only what it sealed it as).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/wharf.h"
#include "security/incidents.h"
#include "security/notify.h"
#include "store/store.h"

static const struct sec_actor CLI_ACTOR = { "cli", NULL };

/* Print doc as JSON; takes it. */
static int print_json(json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (text == NULL)
        return cli_fail("out of memory");
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static long long jint(const json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static void print_timeline(const json_t *doc)
{
    size_t i;
    json_t *e;
    printf("timeline:\n");
    json_array_foreach(json_object_get(doc, "timeline"), i, e) {
        printf("  %s  %-12s  %-9s  %s: %s\n", jstr(e, "time"),
               jstr(e, "action"), jstr(e, "level"), jstr(e, "actor"),
               jstr(e, "text"));
    }
}

static void print_alert(const json_t *a)
{
    printf("alert:      %lld\n", jint(a, "id"));
    printf("level:      %s\n", jstr(a, "level"));
    printf("state:      %s\n", jstr(a, "state"));
    printf("summary:    %s\n", jstr(a, "summary"));
    printf("rule:       %s\n", jstr(a, "kind"));
    printf("about:      %s\n", jstr(a, "key"));
    printf("details:    %s\n", jstr(a, "details"));
    printf("count:      %lld (first seen %s, last seen %s)\n",
           jint(a, "count"), jstr(a, "first_seen"), jstr(a, "last_seen"));
    if (json_integer_value(json_object_get(a, "incident")) > 0)
        printf("incident:   %lld\n", jint(a, "incident"));
    if (json_object_get(a, "timeline"))
        print_timeline(a);
}

static void print_list_text(const json_t *arr, const char *what)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        printf("%s: %s\n", what, json_string_value(v));
    }
}

static void print_incident(const json_t *inc)
{
    printf("incident:   %lld\n", jint(inc, "id"));
    printf("tier:       %s\n", jstr(inc, "tier"));
    printf("state:      %s\n", jstr(inc, "state"));
    printf("title:      %s\n", jstr(inc, "title"));
    printf("owner:      %s\n", jstr(inc, "owner"));
    printf("severity:   %s\n", jstr(inc, "severity"));
    printf("created:    %s\n", jstr(inc, "created"));
    print_list_text(json_object_get(inc, "partners"), "partner   ");
    print_list_text(json_object_get(inc, "messages"), "message   ");
    const json_t *b = json_object_get(inc, "breach");
    if (b) {
        printf("breach:     since %s; notify by %s (%lld h left%s)\n",
               jstr(b, "since"), jstr(b, "deadline"), jint(b, "hours_left"),
               json_is_true(json_object_get(b, "overdue")) ? ", OVERDUE"
                                                           : "");
        printf("tell:       %s\n", jstr(b, "notify"));
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(inc, "alerts"), i, a) {
        printf("alert:      %lld %s %s: %s\n", jint(a, "id"),
               jstr(a, "level"), jstr(a, "state"), jstr(a, "summary"));
    }
    if (json_object_get(inc, "timeline"))
        print_timeline(inc);
}

/* SEC_* result to an exit code (the message is in err). */
static int sec_exit(int rc, const struct error *err)
{
    if (rc == SEC_OK)
        return EXIT_OK;
    return cli_fail("%s", err->msg);
}

static int parse_limit(const struct cli_cmd *cmd, const char *v, long *out)
{
    char *end;
    errno = 0;
    *out = v ? strtol(v, &end, 10) : 100;
    if (v && (errno || *end || end == v || *out < 1 || *out > 100000))
        return cli_usage(cmd, "--limit must be 1..100000");
    return 0;
}

/* ---- wharf alert ------------------------------------------------------------ */

enum { A_JSON, A_STATE, A_LIMIT, A_REASON, A_OWNER, A_NOTES, A_INCIDENT };

static int alert_list_cmd(struct store *st, const struct cli_args *a)
{
    struct error err = {0};
    json_t *doc = NULL;
    long limit;
    if (parse_limit(&cmd_alert, a->values[A_LIMIT], &limit) != 0)
        return EXIT_USAGE;
    int rc = sec_alert_list(st, a->values[A_STATE], (size_t)limit, &doc,
                            &err);
    if (rc != SEC_OK)
        return sec_exit(rc, &err);
    if (a->flags[A_JSON])
        return print_json(doc);
    size_t i;
    json_t *v;
    printf("%6s  %-8s  %-12s  %-20s  %5s  %-24s  %s\n", "ID", "LEVEL",
           "STATE", "RULE", "COUNT", "LAST SEEN", "SUMMARY");
    json_array_foreach(json_object_get(doc, "alerts"), i, v) {
        printf("%6lld  %-8s  %-12s  %-20s  %5lld  %-24s  %s\n",
               jint(v, "id"), jstr(v, "level"), jstr(v, "state"),
               jstr(v, "kind"), jint(v, "count"), jstr(v, "last_seen"),
               jstr(v, "summary"));
    }
    json_decref(doc);
    return EXIT_OK;
}

static int alert_do(struct wharf *w, struct store *st, const char *verb,
                    int64_t id, const struct cli_args *a)
{
    struct error err = {0};
    json_t *doc = NULL;
    int rc, incident = 0;
    if (!strcmp(verb, "show")) {
        rc = sec_alert_show(st, id, &doc, &err);
    } else if (!strcmp(verb, "ack")) {
        rc = sec_alert_ack(st, w->vault, &CLI_ACTOR, id, a->values[A_REASON],
                           &doc, &err);
    } else {
        struct sec_escalation e = { a->values[A_OWNER], a->values[A_NOTES],
                                    0 };
        if (a->values[A_INCIDENT] &&
            sec_id_parse(a->values[A_INCIDENT], &e.into) < 0)
            return cli_usage(&cmd_alert, "--incident must be an incident "
                             "number");
        rc = sec_alert_escalate(st, w->vault, &CLI_ACTOR, id, &e, &doc, &err);
        incident = 1;
    }
    if (rc != SEC_OK)
        return sec_exit(rc, &err);
    if (a->flags[A_JSON])
        return print_json(doc);
    if (incident)
        print_incident(doc);
    else
        print_alert(doc);
    json_decref(doc);
    return EXIT_OK;
}

static int alert_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--state=", "--limit=",
        "--reason=", "--owner=", "--notes=", "--incident=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_alert, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    const char *verb = a.npos > 0 ? a.pos[0] : "";
    int list = !strcmp(verb, "list");
    int one = !strcmp(verb, "show") || !strcmp(verb, "ack") ||
              !strcmp(verb, "escalate");
    int64_t id = 0;
    if (!list && !one)
        return cli_usage(&cmd_alert, "expected list, show, ack or escalate");
    if ((list && a.npos != 1) || (one && a.npos != 2))
        return cli_usage(&cmd_alert, list ? "list takes no argument"
                         : "%s takes one alert number", verb);
    if (one && sec_id_parse(a.pos[1], &id) < 0)
        return cli_usage(&cmd_alert, "'%s' is not an alert number",
                         a.pos[1]);
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = list ? alert_list_cmd(st, &a) : alert_do(w, st, verb, id, &a);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_alert = {
    "alert", "list, show, acknowledge or escalate security alerts",
    "wharf alert list [--data DIR] [--state STATE] [--limit N] [--json]\n"
    "       wharf alert show ID [--data DIR] [--json]\n"
    "       wharf alert ack ID --reason TEXT [--data DIR] [--json]\n"
    "       wharf alert escalate ID --owner NAME --notes TEXT [--incident N]\n"
    "                             [--data DIR] [--json]\n"
    "  STATE: live (open, acknowledged or escalated; the default), open,\n"
    "  acknowledged, escalated, resolved or all. ack: someone is on it\n"
    "  (an open alert only). escalate: opens an investigation with that\n"
    "  owner (or joins open incident N); then `wharf incident`. Every\n"
    "  transition is audited with its reason.\n",
    alert_run,
};

/* ---- wharf incident ------------------------------------------------------- */

enum { I_JSON, I_STATE, I_NOTE, I_TIER, I_OWNER, I_SEVERITY, I_PARTNERS,
       I_MESSAGES };

static int incident_list_cmd(struct store *st, const struct cli_args *a)
{
    struct error err = {0};
    json_t *doc = NULL;
    int rc = sec_incident_list(st, a->values[I_STATE], 1000, &doc, &err);
    if (rc != SEC_OK)
        return sec_exit(rc, &err);
    if (a->flags[I_JSON])
        return print_json(doc);
    size_t i;
    json_t *v;
    printf("%6s  %-13s  %-6s  %-8s  %-16s  %-24s  %s\n", "ID", "TIER",
           "STATE", "SEVERITY", "OWNER", "CREATED", "TITLE");
    json_array_foreach(json_object_get(doc, "incidents"), i, v) {
        printf("%6lld  %-13s  %-6s  %-8s  %-16s  %-24s  %s\n",
               jint(v, "id"), jstr(v, "tier"), jstr(v, "state"),
               jstr(v, "severity"), jstr(v, "owner"), jstr(v, "created"),
               jstr(v, "title"));
    }
    json_decref(doc);
    return EXIT_OK;
}

static int incident_update_cmd(struct wharf *w, struct store *st, int64_t id,
                               const struct cli_args *a, json_t **doc,
                               struct error *err)
{
    json_t *partners = NULL, *messages = NULL;
    if ((a->values[I_PARTNERS] &&
         (partners = sec_list_parse(a->values[I_PARTNERS], err)) == NULL) ||
        (a->values[I_MESSAGES] &&
         (messages = sec_list_parse(a->values[I_MESSAGES], err)) == NULL)) {
        json_decref(partners);
        return SEC_INVALID;
    }
    struct sec_incident_change ch = {
        .tier = a->values[I_TIER], .owner = a->values[I_OWNER],
        .severity = a->values[I_SEVERITY], .partners = partners,
        .messages = messages, .notify = NULL, .note = a->values[I_NOTE],
    };
    int rc = sec_incident_update(st, w->vault, &CLI_ACTOR, id, &ch, doc,
                                 err);
    json_decref(partners);
    json_decref(messages);
    return rc;
}

static int incident_do(struct wharf *w, struct store *st, const char *verb,
                       int64_t id, const struct cli_args *a,
                       const char *notify)
{
    struct error err = {0};
    json_t *doc = NULL;
    int rc;
    if (!strcmp(verb, "show")) {
        rc = sec_incident_show(st, id, &doc, &err);
    } else if (!strcmp(verb, "close")) {
        rc = sec_incident_close(st, w->vault, &CLI_ACTOR, id,
                                a->values[I_NOTE], &doc, &err);
    } else if (notify != NULL) {
        struct sec_incident_change ch = { .notify = notify,
                                          .note = a->values[I_NOTE] };
        rc = sec_incident_update(st, w->vault, &CLI_ACTOR, id, &ch, &doc,
                                 &err);
    } else {
        rc = incident_update_cmd(w, st, id, a, &doc, &err);
    }
    if (rc != SEC_OK)
        return sec_exit(rc, &err);
    if (a->flags[I_JSON])
        return print_json(doc);
    print_incident(doc);
    json_decref(doc);
    return EXIT_OK;
}

static int incident_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--state=", "--note=",
        "--tier=", "--owner=", "--severity=", "--partners=", "--messages=",
        NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_incident, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    const char *verb = a.npos > 0 ? a.pos[0] : "";
    int list = !strcmp(verb, "list");
    int tell = !strcmp(verb, "notify");
    int one = !strcmp(verb, "show") || !strcmp(verb, "update") ||
              !strcmp(verb, "close") || tell;
    int64_t id = 0;
    if (!list && !one)
        return cli_usage(&cmd_incident, "expected list, show, update, "
                         "notify or close");
    if ((list && a.npos != 1) || (one && !tell && a.npos != 2) ||
        (tell && a.npos != 3))
        return cli_usage(&cmd_incident, list ? "list takes no argument"
                         : tell ? "notify takes an incident number and who "
                                  "must be told"
                         : "%s takes one incident number", verb);
    if (one && sec_id_parse(a.pos[1], &id) < 0)
        return cli_usage(&cmd_incident, "'%s' is not an incident number",
                         a.pos[1]);
    if (!strcmp(verb, "close") && a.values[I_NOTE] == NULL)
        return cli_usage(&cmd_incident, "close needs --note (the reason)");
    struct wharf *w;
    struct store *st;
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = list ? incident_list_cmd(st, &a)
                  : incident_do(w, st, verb, id, &a, tell ? a.pos[2] : NULL);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_incident = {
    "incident", "show, update and close investigations, incidents, breaches",
    "wharf incident list [--data DIR] [--state open|closed|all] [--json]\n"
    "       wharf incident show ID [--data DIR] [--json]\n"
    "       wharf incident update ID --note TEXT [--tier incident|breach]\n"
    "             [--owner NAME] [--severity low|medium|high|critical]\n"
    "             [--partners A,B] [--messages ID,ID] [--data DIR] [--json]\n"
    "       wharf incident notify ID WHO --note TEXT [--data DIR] [--json]\n"
    "       wharf incident close ID --note TEXT [--data DIR] [--json]\n"
    "  An investigation (from `wharf alert escalate`) becomes an incident\n"
    "  (a severity is required) and an incident a breach: tiers only go up.\n"
    "  A breach starts the GDPR 72-hour notification clock; `notify` says\n"
    "  who must be told (default: the supervisory authority, the affected\n"
    "  partners, the data subjects when the risk is high). --partners and\n"
    "  --messages replace the lists. Every change is audited with its note.\n",
    incident_run,
};

/* ---- wharf notify ------------------------------------------------------------ */

static int notify_run(int argc, char **argv)
{
    static const char *const opts[] = { NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_notify, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    const char *verb = a.npos > 0 ? a.pos[0] : "";
    int creds = !strcmp(verb, "credentials"), test = !strcmp(verb, "test");
    if ((!creds && !test) || (creds && a.npos != 3) || (test && a.npos != 2))
        return cli_usage(&cmd_notify, "expected `credentials CHANNEL FILE` "
                         "or `test CHANNEL`");
    struct wharf *w;
    struct store *st;
    struct error err = {0};
    if (cli_open(a.data, &w, &st) != 0)
        return EXIT_FAIL;
    int rc = EXIT_OK;
    if (creds && notify_credentials_set(w, st, a.pos[1], a.pos[2], &err) < 0)
        rc = cli_fail("%s", err.msg);
    else if (creds)
        rc = cli_audit(w, st, "notify.credentials", a.pos[1], "sealed from "
                       "%s", a.pos[2]);
    else if (notify_test(w, st, &w->conf.security, a.pos[1], &err) < 0)
        rc = cli_fail("%s", err.msg);
    if (rc == EXIT_OK)
        fprintf(stderr, creds ? "the %s credentials are sealed in the "
                "database; you may delete the file now\n"
                : "a test notification went to %s\n", a.pos[1]);
    cli_close(w, st);
    return rc;
}

const struct cli_cmd cmd_notify = {
    "notify", "set the credentials of a notification channel, or test one",
    "wharf notify credentials email|webhook FILE [--data DIR]\n"
    "       wharf notify test email|webhook|syslog [--data DIR]\n"
    "  credentials seals FILE (mode 0600; email: user:password, webhook:\n"
    "  the HMAC-SHA256 key, 16 bytes or more) with the vault into the\n"
    "  database. test sends a test notification now (wharf.conf's notify_*\n"
    "  settings; docs/operations.md, Notifications).\n",
    notify_run,
};
