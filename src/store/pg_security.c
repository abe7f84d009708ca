/*
 * pg_security.c - the PostgreSQL statements of security_store.h (R19 on a
 * cluster, R21): alerts folded by kind and key, the incidents they are
 * escalated into, and the security timeline (security_events, also the
 * notifier's outbox), in the tables of pg.c's migration 2.
 *
 * Owns statement slots 160..207 of pg_internal.h and nothing else. Each
 * state change and its timeline event are one transaction, as on SQLite.
 *
 * Where several nodes share the database (SQLite's BEGIN IMMEDIATE made
 * every writer take turns; PostgreSQL runs read committed):
 *   - store_alert_raise reads "the newest alert of kind and key that may
 *     take this raise" and then folds into it or opens a new one. Two
 *     nodes raising the same alert at once would both find none and open
 *     two. A transaction advisory lock on (kind, key) is taken first
 *     (S_LOCK_KEY: the two-int form, class SEC_LOCK_CLASS, hashtext of
 *     kind and key), so raises of one kind and key take turns and the
 *     second sees what the first committed; store_alert_resolve takes the
 *     same lock, so a raise never folds into an alert being resolved. The
 *     alert found is also locked (FOR UPDATE) against an acknowledgement
 *     or escalation running at the same moment.
 *   - store_alert_transition is one compare-and-set UPDATE (state = from),
 *     which PostgreSQL re-checks on the row's newest version after any
 *     concurrent writer committed: of two nodes moving one alert from the
 *     same state, one wins, the other gets 2.
 *   - store_alert_escalate locks the alert row (FOR UPDATE) before it
 *     reads whether the alert was escalated already, and its UPDATE keeps
 *     the compare-and-set "incident_id IS NULL": an alert is escalated
 *     once, and the loser's investigation is rolled back with it. An
 *     incident escalated into is read FOR SHARE, so closing it waits.
 *   - store_incident_put is one compare-and-set UPDATE on updated_at.
 *   - The timeline's ids come from a sequence: store_sec_events_after is a
 *     read by cursor (the notifier keeps its own cursor); nothing here is
 *     "taken", so there is nothing for two nodes to take twice.
 *
 * Must never: decide policy (src/security/ does); build SQL from data;
 * hold a transaction across calls.
 */
#include "store/pg_security.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 160

enum {
    S_LOCK_KEY, S_ALERT_FIND, S_ALERT_FOLD, S_ALERT_INS, S_EVENT_INS,
    S_ALERT_GET, S_ALERT_LIVE, S_ALERT_RESOLVE, S_ALERT_STATE,
    S_ALERT_EXISTS, S_ALERT_LOCK, S_ALERT_ESCALATE, S_ALERT_LIST,
    S_ALERT_OF_INC, S_ALERT_COUNTS, S_INC_INS, S_INC_GET, S_INC_LIST,
    S_INC_PUT, S_INC_OPEN, S_EV_OF_ALERT, S_EV_OF_INC, S_EV_AFTER,
    S_EV_LAST, S_COUNT
};
_Static_assert(SLOT_BASE + S_COUNT <= 208,
               "pg_security.c owns statement slots 160..207");

/* pg_advisory_xact_lock(int4, int4) class of alert keys ("WhSa"): the
 * two-int form never meets the one-bigint locks of other files. */
#define SEC_LOCK_CLASS "1466454881"

#define ALERT_COLS "id, kind, key, level, state, summary, details, count," \
    " first_at, last_at, updated_at, resolved_at, incident_id"
#define INC_COLS "id, tier, state, title, owner, severity, partners," \
    " messages, notify, created_at, updated_at, incident_at, breach_at," \
    " closed_at"
#define EV_COLS "id, at, alert_id, incident_id, actor, action, level, text"
#define LIVE "('open', 'acknowledged', 'escalated')"

static const char *const SQL_SEC[S_COUNT] = {
    [S_LOCK_KEY] = "SELECT pg_advisory_xact_lock(" SEC_LOCK_CLASS ","
        " hashtext($1::text || chr(10) || $2::text))",
    [S_ALERT_FIND] = "SELECT " ALERT_COLS " FROM alerts"
        " WHERE kind = $1 AND key = $2 AND (state = 'open' OR ($3::int <> 0"
        " AND state IN ('acknowledged', 'escalated'))) ORDER BY id DESC"
        " LIMIT 1 FOR UPDATE",
    [S_ALERT_FOLD] = "UPDATE alerts SET count = count + 1,"
        " last_at = $2, updated_at = $2, level = $3, summary = $4,"
        " details = $5 WHERE id = $1",
    [S_ALERT_INS] = "INSERT INTO alerts(kind, key, level, state,"
        " summary, details, count, first_at, last_at, updated_at)"
        " VALUES($1, $2, $3, 'open', $4, $5, 1, $6, $6, $6) RETURNING id",
    [S_EVENT_INS] = "INSERT INTO security_events(at, alert_id,"
        " incident_id, actor, action, level, text)"
        " VALUES($1, $2, $3, $4, $5, $6, $7)",
    [S_ALERT_GET] = "SELECT " ALERT_COLS " FROM alerts WHERE id = $1",
    [S_ALERT_LIVE] = "SELECT id FROM alerts WHERE kind = $1 AND"
        " key = $2 AND state IN " LIVE " LIMIT 1",
    /* every live alert of kind and key, resolved in one statement (the
     * rows are locked and re-checked), oldest first */
    [S_ALERT_RESOLVE] = "WITH r AS (UPDATE alerts SET state = 'resolved',"
        " resolved_at = $3, updated_at = $3 WHERE kind = $1 AND key = $2"
        " AND state IN " LIVE " RETURNING id, level, incident_id)"
        " SELECT id, level, incident_id FROM r ORDER BY id",
    [S_ALERT_STATE] = "UPDATE alerts SET state = $2, updated_at = $3"
        " WHERE id = $1 AND state = $4 RETURNING incident_id",
    [S_ALERT_EXISTS] = "SELECT 1 FROM alerts WHERE id = $1",
    [S_ALERT_LOCK] = "SELECT incident_id FROM alerts WHERE id = $1"
        " FOR UPDATE",
    [S_ALERT_ESCALATE] = "UPDATE alerts SET state = CASE state WHEN"
        " 'resolved' THEN 'resolved' ELSE 'escalated' END, incident_id = $2,"
        " updated_at = $3 WHERE id = $1 AND incident_id IS NULL",
    [S_ALERT_LIST] = "SELECT " ALERT_COLS " FROM alerts WHERE"
        " ($1::text = 'all' OR state = $1::text OR ($1::text = 'live'"
        " AND state IN " LIVE ")) AND id < $2 ORDER BY id DESC LIMIT $3",
    [S_ALERT_OF_INC] = "SELECT " ALERT_COLS " FROM alerts WHERE"
        " incident_id = $1 ORDER BY id",
    [S_ALERT_COUNTS] = "SELECT level, COUNT(*) FROM alerts WHERE"
        " state IN " LIVE " GROUP BY level",
    [S_INC_INS] = "INSERT INTO incidents(tier, state, title, owner,"
        " partners, messages, created_at, updated_at) VALUES("
        "'investigation', 'open', $1, $2, '[]', '[]', $3, $3) RETURNING id",
    [S_INC_GET] = "SELECT " INC_COLS " FROM incidents WHERE id = $1",
    [S_INC_LIST] = "SELECT " INC_COLS " FROM incidents WHERE"
        " ($1::text = 'all' OR state = $1::text) AND id < $2"
        " ORDER BY id DESC LIMIT $3",
    [S_INC_PUT] = "UPDATE incidents SET tier = $2, state = $3,"
        " owner = $4, severity = $5, partners = $6, messages = $7,"
        " notify = $8, updated_at = $9, incident_at = $10, breach_at = $11,"
        " closed_at = $12 WHERE id = $1 AND updated_at = $13",
    [S_INC_OPEN] = "SELECT id FROM incidents WHERE id = $1 AND"
        " state = 'open' FOR SHARE",
    [S_EV_OF_ALERT] = "SELECT " EV_COLS " FROM security_events"
        " WHERE alert_id = $1 ORDER BY id",
    [S_EV_OF_INC] = "SELECT " EV_COLS " FROM security_events"
        " WHERE incident_id = $1 ORDER BY id",
    [S_EV_AFTER] = "SELECT " EV_COLS " FROM security_events"
        " WHERE id > $1 ORDER BY id LIMIT $2",
    [S_EV_LAST] = "SELECT COALESCE(MAX(id), 0) FROM security_events",
};

static PGresult *run(struct pg_store *p, int i, const struct pg_args *a,
                     const char *what, struct error *err)
{
    return pg_run(p, SLOT_BASE + i, SQL_SEC[i], a, what, err);
}

static int run_done(struct pg_store *p, int i, const struct pg_args *a,
                    const char *what, int64_t *changed, struct error *err)
{
    return pg_run_done(p, SLOT_BASE + i, SQL_SEC[i], a, what, changed, err);
}

/* An id or a time that 0 means "none" of: SQL NULL then. */
static void arg_opt(struct pg_args *a, int64_t v)
{
    if (v > 0)
        pg_arg_int(a, v);
    else
        pg_arg_text(a, NULL);
}

/* ---- rows ------------------------------------------------------------------ */

static void alert_row(const PGresult *r, int i, void *row)
{
    struct store_alert *a = row;
    a->id = pg_val_int(r, i, 0);
    a->kind = pg_val_dup(r, i, 1);
    a->key = pg_val_dup(r, i, 2);
    a->level = pg_val_dup(r, i, 3);
    a->state = pg_val_dup(r, i, 4);
    a->summary = pg_val_dup(r, i, 5);
    a->details = pg_val_dup(r, i, 6);
    a->count = pg_val_int(r, i, 7);
    a->first_at = pg_val_int(r, i, 8);
    a->last_at = pg_val_int(r, i, 9);
    a->updated_at = pg_val_int(r, i, 10);
    a->resolved_at = pg_val_int(r, i, 11);
    a->incident_id = pg_val_int(r, i, 12);
}

static void incident_row(const PGresult *r, int k, void *row)
{
    struct store_incident *i = row;
    i->id = pg_val_int(r, k, 0);
    i->tier = pg_val_dup(r, k, 1);
    i->state = pg_val_dup(r, k, 2);
    i->title = pg_val_dup(r, k, 3);
    i->owner = pg_val_dup(r, k, 4);
    i->severity = pg_val_dup(r, k, 5);
    i->partners = pg_val_dup(r, k, 6);
    i->messages = pg_val_dup(r, k, 7);
    i->notify = pg_val_dup(r, k, 8);
    i->created_at = pg_val_int(r, k, 9);
    i->updated_at = pg_val_int(r, k, 10);
    i->incident_at = pg_val_int(r, k, 11);
    i->breach_at = pg_val_int(r, k, 12);
    i->closed_at = pg_val_int(r, k, 13);
}

static void event_row(const PGresult *r, int i, void *row)
{
    struct store_sec_event *e = row;
    e->id = pg_val_int(r, i, 0);
    e->at = pg_val_int(r, i, 1);
    e->alert_id = pg_val_int(r, i, 2);
    e->incident_id = pg_val_int(r, i, 3);
    e->actor = pg_val_dup(r, i, 4);
    e->action = pg_val_dup(r, i, 5);
    e->level = pg_val_dup(r, i, 6);
    e->text = pg_val_dup(r, i, 7);
}

/* The rows of r (NULL: the statement failed, err set) into a malloc'ed
 * array of rows of `size` bytes, each filled by fill; r is cleared. */
static int rows_collect(PGresult *r, size_t size,
                        void (*fill)(const PGresult *, int, void *),
                        void **out, size_t *n, const char *what,
                        struct error *err)
{
    *out = NULL;
    *n = 0;
    if (r == NULL)
        return -1;
    int rows = PQntuples(r);
    if (rows > 0) {
        char *buf = calloc((size_t)rows, size);
        if (buf == NULL) {
            PQclear(r);
            return error_set(err, "out of memory reading %s", what);
        }
        for (int i = 0; i < rows; i++)
            fill(r, i, buf + (size_t)i * size);
        *out = buf;
        *n = (size_t)rows;
    }
    PQclear(r);
    return 0;
}

/* One row of r (NULL: failed) into *out: 1, 0 when none, -1. */
static int row_one(PGresult *r, void (*fill)(const PGresult *, int, void *),
                   void *out)
{
    if (r == NULL)
        return -1;
    int rc = PQntuples(r) > 0;
    if (rc)
        fill(r, 0, out);
    PQclear(r);
    return rc;
}

/* ---- the timeline ----------------------------------------------------------- */

static int event_add(struct pg_store *p, const struct store_sec_event_new *e,
                     int64_t at, int64_t alert_id, int64_t incident_id,
                     struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, at);
    arg_opt(&a, alert_id);
    arg_opt(&a, incident_id);
    pg_arg_text(&a, e->actor);
    pg_arg_text(&a, e->action);
    pg_arg_text(&a, e->level);
    pg_arg_text(&a, e->text ? e->text : "");
    return run_done(p, S_EVENT_INS, &a, "append to the security timeline",
                    NULL, err);
}

int pgs_sec_events_of(struct pg_store *p, int64_t alert_id,
                      int64_t incident_id, struct store_sec_event **out,
                      size_t *n, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, alert_id > 0 ? alert_id : incident_id);
    PGresult *r = run(p, alert_id > 0 ? S_EV_OF_ALERT : S_EV_OF_INC, &a,
                      "the security timeline", err);
    return rows_collect(r, sizeof(**out), event_row, (void **)out, n,
                        "the security timeline", err);
}

int pgs_sec_events_after(struct pg_store *p, int64_t after, size_t limit,
                         struct store_sec_event **out, size_t *n,
                         struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, after);
    pg_arg_int(&a, (int64_t)limit);
    PGresult *r = run(p, S_EV_AFTER, &a, "the security timeline", err);
    return rows_collect(r, sizeof(**out), event_row, (void **)out, n,
                        "the security timeline", err);
}

int pgs_sec_event_last(struct pg_store *p, int64_t *id, struct error *err)
{
    *id = 0;
    PGresult *r = run(p, S_EV_LAST, NULL, "the timeline", err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1)
        *id = pg_val_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* ---- alerts ------------------------------------------------------------------- */

int pgs_alert_get(struct pg_store *p, int64_t id, struct store_alert *out,
                  struct error *err)
{
    struct pg_args a = {0};
    memset(out, 0, sizeof(*out));
    pg_arg_int(&a, id);
    return row_one(run(p, S_ALERT_GET, &a, "read an alert", err), alert_row,
                   out);
}

/* Inside the transaction: raises of kind and key take turns. */
static int lock_key(struct pg_store *p, const char *kind, const char *key,
                    struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, kind);
    pg_arg_text(&a, key);
    return run_done(p, S_LOCK_KEY, &a, "lock an alert key", NULL, err);
}

/* Inside the transaction: fold into found (already read and locked). */
static int alert_fold(struct pg_store *p, const struct store_alert_raise *r,
                      const struct store_alert *found, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, found->id);
    pg_arg_int(&a, r->at);
    pg_arg_text(&a, r->level);
    pg_arg_text(&a, r->summary);
    pg_arg_text(&a, r->details);
    if (run_done(p, S_ALERT_FOLD, &a, "fold an alert", NULL, err) < 0)
        return -1;
    int changed = strcmp(found->level, r->level) != 0 ||
                  (r->summary_is_state && strcmp(found->summary,
                                                 r->summary) != 0);
    if (!changed)
        return STORE_ALERT_FOLDED;
    struct store_sec_event_new e = { "system", "changed", r->level,
                                     r->summary, 0, 0 };
    if (event_add(p, &e, r->at, found->id, found->incident_id, err) < 0)
        return -1;
    return STORE_ALERT_CHANGED;
}

/* Inside the transaction: a new alert; *id gets it. */
static int alert_open(struct pg_store *p, const struct store_alert_raise *r,
                      int64_t *id, struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, r->kind);
    pg_arg_text(&a, r->key);
    pg_arg_text(&a, r->level);
    pg_arg_text(&a, r->summary);
    pg_arg_text(&a, r->details);
    pg_arg_int(&a, r->at);
    PGresult *res = run(p, S_ALERT_INS, &a, "open an alert", err);
    if (res == NULL)
        return -1;
    *id = PQntuples(res) == 1 ? pg_val_int(res, 0, 0) : 0;
    PQclear(res);
    struct store_sec_event_new e = { "system", "opened", r->level,
                                     r->summary, 0, 0 };
    if (event_add(p, &e, r->at, *id, 0, err) < 0)
        return -1;
    return STORE_ALERT_OPENED;
}

static int alert_raise_tx(struct pg_store *p,
                          const struct store_alert_raise *r, int64_t *id,
                          struct error *err)
{
    struct store_alert found;
    memset(&found, 0, sizeof(found));
    if (lock_key(p, r->kind, r->key, err) < 0)
        return -1;
    struct pg_args a = {0};
    pg_arg_text(&a, r->kind);
    pg_arg_text(&a, r->key);
    pg_arg_int(&a, r->fold_acked ? 1 : 0);
    int rc = row_one(run(p, S_ALERT_FIND, &a, "find an alert", err),
                     alert_row, &found);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return alert_open(p, r, id, err);
    *id = found.id;
    rc = found.level && found.summary ? alert_fold(p, r, &found, err)
                                      : error_set(err, "out of memory");
    store_alert_clear(&found);
    return rc;
}

int pgs_alert_raise(struct pg_store *p, const struct store_alert_raise *r,
                    struct store_alert *out, struct error *err)
{
    int64_t id = 0;
    memset(out, 0, sizeof(*out));
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = alert_raise_tx(p, r, &id, err);
    if (rc < 0 || pgs_alert_get(p, id, out, err) != 1) {
        store_alert_clear(out);
        if (err && err->msg[0] == '\0')
            error_set(err, "the alert just written is gone");
        return pg_tx_fail(p);
    }
    if (pg_tx_end(p, err) < 0) {
        store_alert_clear(out);
        return -1;
    }
    return rc;
}

static int alert_resolve_tx(struct pg_store *p, const char *kind,
                            const char *key, const char *text, int64_t at,
                            int64_t *last, struct error *err)
{
    if (lock_key(p, kind, key, err) < 0)
        return -1;
    struct pg_args a = {0};
    pg_arg_text(&a, kind);
    pg_arg_text(&a, key);
    pg_arg_int(&a, at);
    PGresult *r = run(p, S_ALERT_RESOLVE, &a, "resolve alerts", err);
    if (r == NULL)
        return -1;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        struct store_sec_event_new e = { "system", "resolved",
                                         PQgetvalue(r, i, 1), text, 0, 0 };
        if (event_add(p, &e, at, pg_val_int(r, i, 0), pg_val_int(r, i, 2),
                      err) < 0) {
            PQclear(r);
            return -1;
        }
        *last = pg_val_int(r, i, 0);
    }
    PQclear(r);
    return n;
}

int pgs_alert_resolve(struct pg_store *p, const char *kind, const char *key,
                      const char *text, int64_t at, struct store_alert *out,
                      struct error *err)
{
    int64_t last = 0;
    if (out)
        memset(out, 0, sizeof(*out));
    /* the common case, nothing live: a read, no lock taken */
    struct pg_args a = {0};
    pg_arg_text(&a, kind);
    pg_arg_text(&a, key);
    PGresult *r = run(p, S_ALERT_LIVE, &a, "find live alerts", err);
    if (r == NULL)
        return -1;
    int live = PQntuples(r);
    PQclear(r);
    if (live == 0)
        return 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int n = alert_resolve_tx(p, kind, key, text, at, &last, err);
    if (n < 0)
        return pg_tx_fail(p);
    if (pg_tx_end(p, err) < 0)
        return -1;
    if (n > 0 && out && pgs_alert_get(p, last, out, err) < 0)
        return -1;
    return n;
}

int pgs_alert_list(struct pg_store *p, const char *state, int64_t before,
                   size_t limit, struct store_alert **out, size_t *n,
                   struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, state ? state : "all");
    pg_arg_int(&a, before > 0 ? before : INT64_MAX);
    pg_arg_int(&a, (int64_t)limit);
    PGresult *r = run(p, S_ALERT_LIST, &a, "the alerts", err);
    return rows_collect(r, sizeof(**out), alert_row, (void **)out, n,
                        "the alerts", err);
}

int pgs_alerts_of_incident(struct pg_store *p, int64_t incident,
                           struct store_alert **out, size_t *n,
                           struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, incident);
    PGresult *r = run(p, S_ALERT_OF_INC, &a, "the alerts of an incident",
                      err);
    return rows_collect(r, sizeof(**out), alert_row, (void **)out, n,
                        "the alerts of an incident", err);
}

int pgs_alert_counts(struct pg_store *p, int64_t counts[3], struct error *err)
{
    static const char *const levels[3] = { "info", "warning", "critical" };
    counts[0] = counts[1] = counts[2] = 0;
    PGresult *r = run(p, S_ALERT_COUNTS, NULL, "count alerts", err);
    if (r == NULL)
        return -1;
    for (int k = 0; k < PQntuples(r); k++)
        for (int i = 0; i < 3; i++)
            if (strcmp(PQgetvalue(r, k, 0), levels[i]) == 0)
                counts[i] = pg_val_int(r, k, 1);
    PQclear(r);
    return 0;
}

static int alert_transition_tx(struct pg_store *p, int64_t id,
                               const char *from, const char *to, int64_t at,
                               const struct store_sec_event_new *ev,
                               struct error *err)
{
    struct pg_args a = {0};
    pg_arg_int(&a, id);
    pg_arg_text(&a, to);
    pg_arg_int(&a, at);
    pg_arg_text(&a, from);
    /* compare-and-set: of two nodes moving the alert from `from`, the
     * second finds it moved (the row is re-checked after the first) */
    PGresult *r = run(p, S_ALERT_STATE, &a, "change an alert", err);
    if (r == NULL)
        return -1;
    int done = PQntuples(r) == 1;
    int64_t incident = done ? pg_val_int(r, 0, 0) : 0;
    PQclear(r);
    if (done)
        return event_add(p, ev, at, id, incident, err) < 0 ? -1 : 1;
    struct pg_args b = {0};
    pg_arg_int(&b, id);
    r = run(p, S_ALERT_EXISTS, &b, "read an alert", err);
    if (r == NULL)
        return -1;
    int exists = PQntuples(r) > 0;
    PQclear(r);
    return exists ? 2 : 0;
}

int pgs_alert_transition(struct pg_store *p, int64_t id, const char *from,
                         const char *to, int64_t at,
                         const struct store_sec_event_new *ev,
                         struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = alert_transition_tx(p, id, from, to, at, ev, err);
    if (rc != 1) {
        pg_tx_fail(p);
        return rc;
    }
    return pg_tx_end(p, err) < 0 ? -1 : 1;
}

/* ---- incidents ---------------------------------------------------------------- */

static int alert_escalate_tx(struct pg_store *p, int64_t alert_id,
                             int64_t into, const char *title,
                             const char *owner, int64_t at,
                             const struct store_sec_event_new *ev,
                             size_t nev, int64_t *incident,
                             struct error *err)
{
    /* the alert row is locked before "escalated already?" is read: of two
     * nodes escalating it at once, the second waits, then reads the
     * first's incident and gets 2 */
    struct pg_args a = {0};
    pg_arg_int(&a, alert_id);
    PGresult *r = run(p, S_ALERT_LOCK, &a, "read an alert", err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    int64_t had = found ? pg_val_int(r, 0, 0) : 0;
    PQclear(r);
    if (!found)
        return 0;
    if (had > 0)
        return 2;
    if (into > 0) {
        /* FOR SHARE: the incident cannot be closed until this commits */
        struct pg_args b = {0};
        pg_arg_int(&b, into);
        r = run(p, S_INC_OPEN, &b, "read incidents", err);
        if (r == NULL)
            return -1;
        int open = PQntuples(r) == 1;
        PQclear(r);
        if (!open)
            return 3;
        *incident = into;
    } else {
        struct pg_args b = {0};
        pg_arg_text(&b, title);
        pg_arg_text(&b, owner);
        pg_arg_int(&b, at);
        r = run(p, S_INC_INS, &b, "open an investigation", err);
        if (r == NULL)
            return -1;
        *incident = PQntuples(r) == 1 ? pg_val_int(r, 0, 0) : 0;
        PQclear(r);
    }
    struct pg_args c = {0};
    int64_t changed = 0;
    pg_arg_int(&c, alert_id);
    pg_arg_int(&c, *incident);
    pg_arg_int(&c, at);
    if (run_done(p, S_ALERT_ESCALATE, &c, "escalate an alert", &changed,
                 err) < 0)
        return -1;
    if (changed != 1)
        return 2;
    for (size_t i = 0; i < nev; i++)
        if (event_add(p, &ev[i], at, ev[i].alert_id ? alert_id : 0,
                      *incident, err) < 0)
            return -1;
    return 1;
}

int pgs_alert_escalate(struct pg_store *p, int64_t alert_id, int64_t into,
                       const char *title, const char *owner, int64_t at,
                       const struct store_sec_event_new *ev, size_t nev,
                       int64_t *incident, struct error *err)
{
    *incident = 0;
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = alert_escalate_tx(p, alert_id, into, title, owner, at, ev, nev,
                               incident, err);
    if (rc != 1) {
        pg_tx_fail(p);
        *incident = 0;
        return rc;
    }
    if (pg_tx_end(p, err) < 0) {
        *incident = 0;
        return -1;
    }
    return 1;
}

int pgs_incident_get(struct pg_store *p, int64_t id,
                     struct store_incident *out, struct error *err)
{
    struct pg_args a = {0};
    memset(out, 0, sizeof(*out));
    pg_arg_int(&a, id);
    return row_one(run(p, S_INC_GET, &a, "read an incident", err),
                   incident_row, out);
}

int pgs_incident_list(struct pg_store *p, const char *state, int64_t before,
                      size_t limit, struct store_incident **out, size_t *n,
                      struct error *err)
{
    struct pg_args a = {0};
    pg_arg_text(&a, state ? state : "all");
    pg_arg_int(&a, before > 0 ? before : INT64_MAX);
    pg_arg_int(&a, (int64_t)limit);
    PGresult *r = run(p, S_INC_LIST, &a, "the incidents", err);
    return rows_collect(r, sizeof(**out), incident_row, (void **)out, n,
                        "the incidents", err);
}

static int incident_put_tx(struct pg_store *p,
                           const struct store_incident *inc,
                           int64_t expect_updated,
                           const struct store_sec_event_new *ev, size_t nev,
                           struct error *err)
{
    struct pg_args a = {0};
    int64_t changed = 0;
    pg_arg_int(&a, inc->id);
    pg_arg_text(&a, inc->tier);
    pg_arg_text(&a, inc->state);
    pg_arg_text(&a, inc->owner);
    pg_arg_text(&a, inc->severity);
    pg_arg_text(&a, inc->partners ? inc->partners : "[]");
    pg_arg_text(&a, inc->messages ? inc->messages : "[]");
    pg_arg_text(&a, inc->notify);
    pg_arg_int(&a, inc->updated_at);
    arg_opt(&a, inc->incident_at);
    arg_opt(&a, inc->breach_at);
    arg_opt(&a, inc->closed_at);
    pg_arg_int(&a, expect_updated);
    /* compare-and-set on updated_at: of two nodes writing from the same
     * read, the second's row is re-checked after the first committed and
     * no longer matches */
    if (run_done(p, S_INC_PUT, &a, "change an incident", &changed, err) < 0)
        return -1;
    if (changed != 1)
        return 0;
    for (size_t i = 0; i < nev; i++)
        if (event_add(p, &ev[i], inc->updated_at, 0, inc->id, err) < 0)
            return -1;
    return 1;
}

int pgs_incident_put(struct pg_store *p, const struct store_incident *inc,
                     int64_t expect_updated,
                     const struct store_sec_event_new *ev, size_t nev,
                     struct error *err)
{
    if (pg_tx_begin(p, err) < 0)
        return -1;
    int rc = incident_put_tx(p, inc, expect_updated, ev, nev, err);
    if (rc != 1) {
        pg_tx_fail(p);
        return rc;
    }
    return pg_tx_end(p, err) < 0 ? -1 : 1;
}
