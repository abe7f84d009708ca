/*
 * sqlite_security.c - the SQLite statements of security_store.h: alerts,
 * incidents and their timeline (tables of migration 8 in sqlite.c).
 *
 * Owns statement cache slots 200..247 of store_stmt_ext and nothing else.
 * Each state change and its timeline event are one IMMEDIATE transaction.
 * Every statement is a constant string with bound parameters. Must never
 * decide policy (src/security/ does) or build SQL from data.
 * On a PostgreSQL store each entry point hands over to pg_security.c.
 */
#include "store/security_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_security.h"
#include "store/store_internal.h"

enum {
    Q_ALERT_FIND = 200, Q_ALERT_FOLD, Q_ALERT_INS, Q_EVENT_INS, Q_ALERT_GET,
    Q_ALERT_LIVE, Q_ALERT_RESOLVE, Q_ALERT_STATE, Q_ALERT_ESCALATE,
    Q_ALERT_LIST, Q_ALERT_OF_INC, Q_ALERT_COUNTS, Q_INC_INS, Q_INC_GET,
    Q_INC_LIST, Q_INC_PUT, Q_INC_OPEN, Q_EV_OF_ALERT, Q_EV_OF_INC,
    Q_EV_AFTER, Q_EV_LAST, Q_LAST
};
_Static_assert(Q_LAST <= 248 && Q_LAST <= STORE_EXT_SLOTS,
               "sqlite_security.c owns statement slots 200..247");

#define ALERT_COLS "id, kind, key, level, state, summary, details, count," \
    " first_at, last_at, updated_at, resolved_at, incident_id"
#define INC_COLS "id, tier, state, title, owner, severity, partners," \
    " messages, notify, created_at, updated_at, incident_at, breach_at," \
    " closed_at"
#define EV_COLS "id, at, alert_id, incident_id, actor, action, level, text"
#define LIVE "('open', 'acknowledged', 'escalated')"

static const char *const SQL_SEC[Q_LAST - 200] = {
    [Q_ALERT_FIND - 200] = "SELECT " ALERT_COLS " FROM alerts"
        " WHERE kind = ?1 AND key = ?2 AND (state = 'open' OR (?3 AND"
        " state IN ('acknowledged', 'escalated'))) ORDER BY id DESC LIMIT 1",
    [Q_ALERT_FOLD - 200] = "UPDATE alerts SET count = count + 1,"
        " last_at = ?2, updated_at = ?2, level = ?3, summary = ?4,"
        " details = ?5 WHERE id = ?1",
    [Q_ALERT_INS - 200] = "INSERT INTO alerts(kind, key, level, state,"
        " summary, details, count, first_at, last_at, updated_at)"
        " VALUES(?1, ?2, ?3, 'open', ?4, ?5, 1, ?6, ?6, ?6)",
    [Q_EVENT_INS - 200] = "INSERT INTO security_events(at, alert_id,"
        " incident_id, actor, action, level, text)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_ALERT_GET - 200] = "SELECT " ALERT_COLS " FROM alerts WHERE id = ?1",
    [Q_ALERT_LIVE - 200] = "SELECT id FROM alerts WHERE kind = ?1 AND"
        " key = ?2 AND state IN " LIVE " ORDER BY id",
    [Q_ALERT_RESOLVE - 200] = "UPDATE alerts SET state = 'resolved',"
        " resolved_at = ?2, updated_at = ?2 WHERE id = ?1 AND state IN "
        LIVE,
    [Q_ALERT_STATE - 200] = "UPDATE alerts SET state = ?2, updated_at = ?3"
        " WHERE id = ?1 AND state = ?4",
    [Q_ALERT_ESCALATE - 200] = "UPDATE alerts SET state = CASE state WHEN"
        " 'resolved' THEN 'resolved' ELSE 'escalated' END, incident_id = ?2,"
        " updated_at = ?3 WHERE id = ?1 AND incident_id IS NULL",
    [Q_ALERT_LIST - 200] = "SELECT " ALERT_COLS " FROM alerts WHERE"
        " (?1 = 'all' OR state = ?1 OR (?1 = 'live' AND state IN " LIVE "))"
        " AND id < ?2 ORDER BY id DESC LIMIT ?3",
    [Q_ALERT_OF_INC - 200] = "SELECT " ALERT_COLS " FROM alerts WHERE"
        " incident_id = ?1 ORDER BY id",
    [Q_ALERT_COUNTS - 200] = "SELECT level, COUNT(*) FROM alerts WHERE"
        " state IN " LIVE " GROUP BY level",
    [Q_INC_INS - 200] = "INSERT INTO incidents(tier, state, title, owner,"
        " partners, messages, created_at, updated_at) VALUES("
        "'investigation', 'open', ?1, ?2, '[]', '[]', ?3, ?3)",
    [Q_INC_GET - 200] = "SELECT " INC_COLS " FROM incidents WHERE id = ?1",
    [Q_INC_LIST - 200] = "SELECT " INC_COLS " FROM incidents WHERE"
        " (?1 = 'all' OR state = ?1) AND id < ?2 ORDER BY id DESC LIMIT ?3",
    [Q_INC_PUT - 200] = "UPDATE incidents SET tier = ?2, state = ?3,"
        " owner = ?4, severity = ?5, partners = ?6, messages = ?7,"
        " notify = ?8, updated_at = ?9, incident_at = ?10, breach_at = ?11,"
        " closed_at = ?12 WHERE id = ?1 AND updated_at = ?13",
    [Q_INC_OPEN - 200] = "SELECT id FROM incidents WHERE id = ?1 AND"
        " state = 'open'",
    [Q_EV_OF_ALERT - 200] = "SELECT " EV_COLS " FROM security_events"
        " WHERE alert_id = ?1 ORDER BY id",
    [Q_EV_OF_INC - 200] = "SELECT " EV_COLS " FROM security_events"
        " WHERE incident_id = ?1 ORDER BY id",
    [Q_EV_AFTER - 200] = "SELECT " EV_COLS " FROM security_events"
        " WHERE id > ?1 ORDER BY id LIMIT ?2",
    [Q_EV_LAST - 200] = "SELECT COALESCE(MAX(id), 0) FROM security_events",
};

static sqlite3_stmt *sec_stmt(struct store *s, int slot, struct error *err)
{
    return store_stmt_ext(s, slot, SQL_SEC[slot - 200], err);
}

static void bind_id(sqlite3_stmt *st, int i, int64_t id)
{
    if (id > 0)
        sqlite3_bind_int64(st, i, id);
    else
        sqlite3_bind_null(st, i);
}

/* ---- rows ------------------------------------------------------------------ */

void store_alert_clear(struct store_alert *a)
{
    if (a == NULL)
        return;
    free(a->kind);
    free(a->key);
    free(a->level);
    free(a->state);
    free(a->summary);
    free(a->details);
    memset(a, 0, sizeof(*a));
}

void store_alerts_free(struct store_alert *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        store_alert_clear(&a[i]);
    free(a);
}

static void alert_row(sqlite3_stmt *st, struct store_alert *a)
{
    a->id = sqlite3_column_int64(st, 0);
    a->kind = store_col_dup(st, 1);
    a->key = store_col_dup(st, 2);
    a->level = store_col_dup(st, 3);
    a->state = store_col_dup(st, 4);
    a->summary = store_col_dup(st, 5);
    a->details = store_col_dup(st, 6);
    a->count = sqlite3_column_int64(st, 7);
    a->first_at = sqlite3_column_int64(st, 8);
    a->last_at = sqlite3_column_int64(st, 9);
    a->updated_at = sqlite3_column_int64(st, 10);
    a->resolved_at = sqlite3_column_int64(st, 11);
    a->incident_id = sqlite3_column_int64(st, 12);
}

void store_incident_clear(struct store_incident *i)
{
    if (i == NULL)
        return;
    free(i->tier);
    free(i->state);
    free(i->title);
    free(i->owner);
    free(i->severity);
    free(i->partners);
    free(i->messages);
    free(i->notify);
    memset(i, 0, sizeof(*i));
}

void store_incidents_free(struct store_incident *i, size_t n)
{
    for (size_t k = 0; i && k < n; k++)
        store_incident_clear(&i[k]);
    free(i);
}

static void incident_row(sqlite3_stmt *st, struct store_incident *i)
{
    i->id = sqlite3_column_int64(st, 0);
    i->tier = store_col_dup(st, 1);
    i->state = store_col_dup(st, 2);
    i->title = store_col_dup(st, 3);
    i->owner = store_col_dup(st, 4);
    i->severity = store_col_dup(st, 5);
    i->partners = store_col_dup(st, 6);
    i->messages = store_col_dup(st, 7);
    i->notify = store_col_dup(st, 8);
    i->created_at = sqlite3_column_int64(st, 9);
    i->updated_at = sqlite3_column_int64(st, 10);
    i->incident_at = sqlite3_column_int64(st, 11);
    i->breach_at = sqlite3_column_int64(st, 12);
    i->closed_at = sqlite3_column_int64(st, 13);
}

void store_sec_events_free(struct store_sec_event *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].actor);
        free(e[i].action);
        free(e[i].level);
        free(e[i].text);
    }
    free(e);
}

static void event_row(sqlite3_stmt *st, struct store_sec_event *e)
{
    e->id = sqlite3_column_int64(st, 0);
    e->at = sqlite3_column_int64(st, 1);
    e->alert_id = sqlite3_column_int64(st, 2);
    e->incident_id = sqlite3_column_int64(st, 3);
    e->actor = store_col_dup(st, 4);
    e->action = store_col_dup(st, 5);
    e->level = store_col_dup(st, 6);
    e->text = store_col_dup(st, 7);
}

/* Step a bound query into a growing array of rows of size `size`, each
 * filled by fill. */
static int rows_collect(struct store *s, sqlite3_stmt *st, size_t size,
                        void (*fill)(sqlite3_stmt *, void *), void **out,
                        size_t *n, const char *what, struct error *err)
{
    size_t cap = 0;
    char *rows = NULL;
    int rc;
    *out = NULL;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char *p = realloc(rows, ncap * size);
            if (p == NULL) {
                sqlite3_reset(st);
                *out = rows;
                return error_set(err, "out of memory reading %s", what);
            }
            rows = p;
            cap = ncap;
        }
        memset(rows + *n * size, 0, size);
        fill(st, rows + *n * size);
        (*n)++;
    }
    sqlite3_reset(st);
    *out = rows;
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, what);
}

static void fill_alert(sqlite3_stmt *st, void *row)
{
    alert_row(st, row);
}

static void fill_incident(sqlite3_stmt *st, void *row)
{
    incident_row(st, row);
}

static void fill_event(sqlite3_stmt *st, void *row)
{
    event_row(st, row);
}

/* One row of a bound query into *out: 1, 0 when none, -1 with err. */
static int row_one(struct store *s, sqlite3_stmt *st,
                   void (*fill)(sqlite3_stmt *, void *), void *out,
                   const char *what, struct error *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        fill(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, what);
}

/* ---- the timeline ----------------------------------------------------------- */

static int event_add(struct store *s, const struct store_sec_event_new *e,
                     int64_t at, int64_t alert_id, int64_t incident_id,
                     struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_EVENT_INS, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, at);
    bind_id(st, 2, alert_id);
    bind_id(st, 3, incident_id);
    store_bind_text(st, 4, e->actor);
    store_bind_text(st, 5, e->action);
    store_bind_text(st, 6, e->level);
    store_bind_text(st, 7, e->text ? e->text : "");
    return store_step_done(s, st, err, "append to the security timeline");
}

int store_sec_events_of(struct store *s, int64_t alert_id,
                        int64_t incident_id, struct store_sec_event **out,
                        size_t *n, struct error *err)
{
    if (store_pg(s))
        return pgs_sec_events_of(store_pg(s), alert_id, incident_id, out, n,
                                 err);
    sqlite3_stmt *st = sec_stmt(s, alert_id > 0 ? Q_EV_OF_ALERT : Q_EV_OF_INC,
                                err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, alert_id > 0 ? alert_id : incident_id);
    return rows_collect(s, st, sizeof(**out), fill_event, (void **)out, n,
                        "the security timeline", err);
}

int store_sec_events_after(struct store *s, int64_t after, size_t limit,
                           struct store_sec_event **out, size_t *n,
                           struct error *err)
{
    if (store_pg(s))
        return pgs_sec_events_after(store_pg(s), after, limit, out, n, err);
    sqlite3_stmt *st = sec_stmt(s, Q_EV_AFTER, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    return rows_collect(s, st, sizeof(**out), fill_event, (void **)out, n,
                        "the security timeline", err);
}

int store_sec_event_last(struct store *s, int64_t *id, struct error *err)
{
    if (store_pg(s))
        return pgs_sec_event_last(store_pg(s), id, err);
    sqlite3_stmt *st = sec_stmt(s, Q_EV_LAST, err);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : store_db_error(s, err, "the timeline");
}

/* ---- alerts ------------------------------------------------------------------- */

static int alert_get_tx(struct store *s, int64_t id, struct store_alert *out,
                        struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_GET, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    return row_one(s, st, fill_alert, out, "read an alert", err);
}

int store_alert_get(struct store *s, int64_t id, struct store_alert *out,
                    struct error *err)
{
    if (store_pg(s))
        return pgs_alert_get(store_pg(s), id, out, err);
    memset(out, 0, sizeof(*out));
    return alert_get_tx(s, id, out, err);
}

/* Inside the transaction: fold into found (already read). */
static int alert_fold(struct store *s, const struct store_alert_raise *r,
                      const struct store_alert *found, struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_FOLD, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, found->id);
    sqlite3_bind_int64(st, 2, r->at);
    store_bind_text(st, 3, r->level);
    store_bind_text(st, 4, r->summary);
    store_bind_text(st, 5, r->details);
    if (store_step_done(s, st, err, "fold an alert") < 0)
        return -1;
    int changed = strcmp(found->level, r->level) != 0 ||
                  (r->summary_is_state && strcmp(found->summary,
                                                 r->summary) != 0);
    if (!changed)
        return STORE_ALERT_FOLDED;
    struct store_sec_event_new e = { "system", "changed", r->level,
                                     r->summary, 0, 0 };
    if (event_add(s, &e, r->at, found->id, found->incident_id, err) < 0)
        return -1;
    return STORE_ALERT_CHANGED;
}

/* Inside the transaction: a new alert; *id gets it. */
static int alert_open(struct store *s, const struct store_alert_raise *r,
                      int64_t *id, struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, r->kind);
    store_bind_text(st, 2, r->key);
    store_bind_text(st, 3, r->level);
    store_bind_text(st, 4, r->summary);
    store_bind_text(st, 5, r->details);
    sqlite3_bind_int64(st, 6, r->at);
    if (store_step_done(s, st, err, "open an alert") < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(store_db(s));
    struct store_sec_event_new e = { "system", "opened", r->level,
                                     r->summary, 0, 0 };
    if (event_add(s, &e, r->at, *id, 0, err) < 0)
        return -1;
    return STORE_ALERT_OPENED;
}

static int alert_raise_tx(struct store *s, const struct store_alert_raise *r,
                          int64_t *id, struct error *err)
{
    struct store_alert found;
    memset(&found, 0, sizeof(found));
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_FIND, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, r->kind);
    store_bind_text(st, 2, r->key);
    sqlite3_bind_int(st, 3, r->fold_acked ? 1 : 0);
    int rc = row_one(s, st, fill_alert, &found, "find an alert", err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return alert_open(s, r, id, err);
    *id = found.id;
    rc = found.level && found.summary ? alert_fold(s, r, &found, err)
                                      : error_set(err, "out of memory");
    store_alert_clear(&found);
    return rc;
}

int store_alert_raise(struct store *s, const struct store_alert_raise *r,
                      struct store_alert *out, struct error *err)
{
    if (store_pg(s))
        return pgs_alert_raise(store_pg(s), r, out, err);
    int64_t id = 0;
    memset(out, 0, sizeof(*out));
    if (store_tx_begin(s, err) < 0)
        return -1;
    int rc = alert_raise_tx(s, r, &id, err);
    if (rc < 0 || alert_get_tx(s, id, out, err) != 1) {
        store_alert_clear(out);
        if (err && err->msg[0] == '\0')
            error_set(err, "the alert just written is gone");
        return store_tx_fail(s);
    }
    if (store_tx_commit(s, err) < 0) {
        store_alert_clear(out);
        return store_tx_fail(s);
    }
    return rc;
}

/* Inside the transaction: the ids of the live alerts of kind and key. */
static int alert_live_ids(struct store *s, const char *kind, const char *key,
                          int64_t ids[], size_t max, size_t *n,
                          struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_LIVE, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, kind);
    store_bind_text(st, 2, key);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE
           ? 0 : store_db_error(s, err, "find live alerts");
}

static int alert_resolve_tx(struct store *s, const char *kind,
                            const char *key, const char *text, int64_t at,
                            int64_t *last, struct error *err)
{
    int64_t ids[64];
    size_t n = 0;
    if (alert_live_ids(s, kind, key, ids, 64, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct store_alert a;
        sqlite3_stmt *st = sec_stmt(s, Q_ALERT_RESOLVE, err);
        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, ids[i]);
        sqlite3_bind_int64(st, 2, at);
        if (store_step_done(s, st, err, "resolve an alert") < 0 ||
            store_alert_get(s, ids[i], &a, err) != 1)
            return -1;
        struct store_sec_event_new e = { "system", "resolved", a.level,
                                         text, 0, 0 };
        int rc = event_add(s, &e, at, a.id, a.incident_id, err);
        store_alert_clear(&a);
        if (rc < 0)
            return -1;
        *last = ids[i];
    }
    return (int)n;
}

int store_alert_resolve(struct store *s, const char *kind, const char *key,
                        const char *text, int64_t at, struct store_alert *out,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_alert_resolve(store_pg(s), kind, key, text, at, out, err);
    int64_t last = 0, ids[1];
    size_t live = 0;
    if (out)
        memset(out, 0, sizeof(*out));
    /* the common case, nothing live: a read, no write lock taken */
    if (alert_live_ids(s, kind, key, ids, 1, &live, err) < 0)
        return -1;
    if (live == 0)
        return 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    int n = alert_resolve_tx(s, kind, key, text, at, &last, err);
    if (n < 0)
        return store_tx_fail(s);
    if (store_tx_commit(s, err) < 0)
        return store_tx_fail(s);
    if (n > 0 && out && store_alert_get(s, last, out, err) < 0)
        return -1;
    return n;
}

int store_alert_list(struct store *s, const char *state, int64_t before,
                     size_t limit, struct store_alert **out, size_t *n,
                     struct error *err)
{
    if (store_pg(s))
        return pgs_alert_list(store_pg(s), state, before, limit, out, n, err);
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_LIST, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, state ? state : "all");
    sqlite3_bind_int64(st, 2, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return rows_collect(s, st, sizeof(**out), fill_alert, (void **)out, n,
                        "the alerts", err);
}

int store_alerts_of_incident(struct store *s, int64_t incident,
                             struct store_alert **out, size_t *n,
                             struct error *err)
{
    if (store_pg(s))
        return pgs_alerts_of_incident(store_pg(s), incident, out, n, err);
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_OF_INC, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, incident);
    return rows_collect(s, st, sizeof(**out), fill_alert, (void **)out, n,
                        "the alerts of an incident", err);
}

int store_alert_counts(struct store *s, int64_t counts[3], struct error *err)
{
    if (store_pg(s))
        return pgs_alert_counts(store_pg(s), counts, err);
    static const char *const levels[3] = { "info", "warning", "critical" };
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_COUNTS, err);
    if (st == NULL)
        return -1;
    int rc;
    counts[0] = counts[1] = counts[2] = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *lv = (const char *)sqlite3_column_text(st, 0);
        for (int i = 0; lv && i < 3; i++)
            if (strcmp(lv, levels[i]) == 0)
                counts[i] = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "count alerts");
}

static int alert_transition_tx(struct store *s, int64_t id, const char *from,
                               const char *to, int64_t at,
                               const struct store_sec_event_new *ev,
                               struct error *err)
{
    struct store_alert a;
    int rc = store_alert_get(s, id, &a, err);
    if (rc <= 0)
        return rc;
    int64_t incident = a.incident_id;
    store_alert_clear(&a);
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_STATE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    store_bind_text(st, 2, to);
    sqlite3_bind_int64(st, 3, at);
    store_bind_text(st, 4, from);
    if (store_step_done(s, st, err, "change an alert") < 0)
        return -1;
    if (sqlite3_changes(store_db(s)) != 1)
        return 2;
    return event_add(s, ev, at, id, incident, err) < 0 ? -1 : 1;
}

int store_alert_transition(struct store *s, int64_t id, const char *from,
                           const char *to, int64_t at,
                           const struct store_sec_event_new *ev,
                           struct error *err)
{
    if (store_pg(s))
        return pgs_alert_transition(store_pg(s), id, from, to, at, ev, err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    int rc = alert_transition_tx(s, id, from, to, at, ev, err);
    if (rc != 1) {
        store_tx_fail(s);
        return rc;
    }
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 1;
}

/* ---- incidents ---------------------------------------------------------------- */

static int incident_is_open(struct store *s, int64_t id, struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_INC_OPEN, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 1;
    return rc == SQLITE_DONE ? 0 : store_db_error(s, err, "read incidents");
}

static int incident_new(struct store *s, const char *title, const char *owner,
                        int64_t at, int64_t *id, struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_INC_INS, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, title);
    store_bind_text(st, 2, owner);
    sqlite3_bind_int64(st, 3, at);
    if (store_step_done(s, st, err, "open an investigation") < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(store_db(s));
    return 0;
}

static int alert_escalate_tx(struct store *s, int64_t alert_id, int64_t into,
                             const char *title, const char *owner,
                             int64_t at, const struct store_sec_event_new *ev,
                             size_t nev, int64_t *incident, struct error *err)
{
    struct store_alert a;
    int rc = store_alert_get(s, alert_id, &a, err);
    if (rc <= 0)
        return rc;
    int64_t had = a.incident_id;
    store_alert_clear(&a);
    if (had > 0)
        return 2;
    if (into > 0 && (rc = incident_is_open(s, into, err)) <= 0)
        return rc < 0 ? -1 : 3;
    if (into > 0)
        *incident = into;
    else if (incident_new(s, title, owner, at, incident, err) < 0)
        return -1;
    sqlite3_stmt *st = sec_stmt(s, Q_ALERT_ESCALATE, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, alert_id);
    sqlite3_bind_int64(st, 2, *incident);
    sqlite3_bind_int64(st, 3, at);
    if (store_step_done(s, st, err, "escalate an alert") < 0)
        return -1;
    if (sqlite3_changes(store_db(s)) != 1)
        return 2;
    for (size_t i = 0; i < nev; i++)
        if (event_add(s, &ev[i], at, ev[i].alert_id ? alert_id : 0,
                      *incident, err) < 0)
            return -1;
    return 1;
}

int store_alert_escalate(struct store *s, int64_t alert_id, int64_t into,
                         const char *title, const char *owner, int64_t at,
                         const struct store_sec_event_new *ev, size_t nev,
                         int64_t *incident, struct error *err)
{
    if (store_pg(s))
        return pgs_alert_escalate(store_pg(s), alert_id, into, title, owner,
                                  at, ev, nev, incident, err);
    *incident = 0;
    if (store_tx_begin(s, err) < 0)
        return -1;
    int rc = alert_escalate_tx(s, alert_id, into, title, owner, at, ev, nev,
                               incident, err);
    if (rc != 1) {
        store_tx_fail(s);
        return rc;
    }
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 1;
}

int store_incident_get(struct store *s, int64_t id,
                       struct store_incident *out, struct error *err)
{
    if (store_pg(s))
        return pgs_incident_get(store_pg(s), id, out, err);
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = sec_stmt(s, Q_INC_GET, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    return row_one(s, st, fill_incident, out, "read an incident", err);
}

int store_incident_list(struct store *s, const char *state, int64_t before,
                        size_t limit, struct store_incident **out, size_t *n,
                        struct error *err)
{
    if (store_pg(s))
        return pgs_incident_list(store_pg(s), state, before, limit, out, n,
                                 err);
    sqlite3_stmt *st = sec_stmt(s, Q_INC_LIST, err);
    if (st == NULL)
        return -1;
    store_bind_text(st, 1, state ? state : "all");
    sqlite3_bind_int64(st, 2, before > 0 ? before : INT64_MAX);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return rows_collect(s, st, sizeof(**out), fill_incident, (void **)out, n,
                        "the incidents", err);
}

static void bind_time(sqlite3_stmt *st, int i, int64_t t)
{
    if (t > 0)
        sqlite3_bind_int64(st, i, t);
    else
        sqlite3_bind_null(st, i);
}

static int incident_put_tx(struct store *s, const struct store_incident *inc,
                           int64_t expect_updated,
                           const struct store_sec_event_new *ev, size_t nev,
                           struct error *err)
{
    sqlite3_stmt *st = sec_stmt(s, Q_INC_PUT, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, inc->id);
    store_bind_text(st, 2, inc->tier);
    store_bind_text(st, 3, inc->state);
    store_bind_text(st, 4, inc->owner);
    store_bind_text(st, 5, inc->severity);
    store_bind_text(st, 6, inc->partners ? inc->partners : "[]");
    store_bind_text(st, 7, inc->messages ? inc->messages : "[]");
    store_bind_text(st, 8, inc->notify);
    sqlite3_bind_int64(st, 9, inc->updated_at);
    bind_time(st, 10, inc->incident_at);
    bind_time(st, 11, inc->breach_at);
    bind_time(st, 12, inc->closed_at);
    sqlite3_bind_int64(st, 13, expect_updated);
    if (store_step_done(s, st, err, "change an incident") < 0)
        return -1;
    if (sqlite3_changes(store_db(s)) != 1)
        return 0;
    for (size_t i = 0; i < nev; i++)
        if (event_add(s, &ev[i], inc->updated_at, 0, inc->id, err) < 0)
            return -1;
    return 1;
}

int store_incident_put(struct store *s, const struct store_incident *inc,
                       int64_t expect_updated,
                       const struct store_sec_event_new *ev, size_t nev,
                       struct error *err)
{
    if (store_pg(s))
        return pgs_incident_put(store_pg(s), inc, expect_updated, ev, nev,
                                err);
    if (store_tx_begin(s, err) < 0)
        return -1;
    int rc = incident_put_tx(s, inc, expect_updated, ev, nev, err);
    if (rc != 1) {
        store_tx_fail(s);
        return rc;
    }
    return store_tx_commit(s, err) < 0 ? store_tx_fail(s) : 1;
}
