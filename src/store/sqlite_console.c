/*
 * sqlite_console.c - the SQLite statements of console_store.h: message
 * search with keyset paging, messages per hour by outcome.
 *
 * Owns statement cache slots 192..199 of store_stmt_ext and nothing else.
 * Every filter is a bound parameter of one constant statement ("?N IS
 * NULL OR ..."); LIKE patterns are escaped here, so a user's % or _ is a
 * character, not a wildcard. Must never build SQL from data.
 * On a PostgreSQL store each entry point hands over to pg_console.c.
 */
#include "store/console_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_console.h"
#include "store/store_internal.h"

enum { C_SEARCH = 192, C_HOURLY, C_LAST };
_Static_assert(C_LAST <= 200, "sqlite_console.c owns slots 192..199");

static const char SQL_SEARCH[] =
    "SELECT id, created_at, updated_at, source, filename, size, sha256,"
    " state, payload_path, dedup_key FROM messages m"
    " WHERE (?1 IS NULL OR m.id < ?1)"
    " AND (?2 IS NULL OR m.state = ?2)"
    " AND (?3 IS NULL OR m.created_at >= ?3)"
    " AND (?4 IS NULL OR m.created_at < ?4)"
    " AND (?5 IS NULL OR m.source = ?5 OR EXISTS (SELECT 1 FROM hops h"
    "      WHERE h.message_id = m.id AND h.connector = ?5))"
    " AND (?6 IS NULL OR m.source IN (SELECT value FROM json_each(?6))"
    "      OR EXISTS (SELECT 1 FROM hops h WHERE h.message_id = m.id"
    "      AND h.connector IN (SELECT value FROM json_each(?6))))"
    " AND (?7 IS NULL OR m.id LIKE ?8 ESCAPE '\\'"
    "      OR m.filename LIKE ?7 ESCAPE '\\'"
    "      OR EXISTS (SELECT 1 FROM receipts r WHERE r.message_id = m.id"
    "      AND (r.as2_message_id LIKE ?7 ESCAPE '\\'"
    "      OR r.original_message_id LIKE ?7 ESCAPE '\\'))"
    "      OR (?9 IS NOT NULL AND (m.source IN (SELECT value FROM"
    "      json_each(?9)) OR EXISTS (SELECT 1 FROM hops h WHERE"
    "      h.message_id = m.id AND h.connector IN (SELECT value FROM"
    "      json_each(?9))))))"
    " ORDER BY m.id DESC LIMIT ?10";

static const char SQL_HOURLY[] =
    "SELECT (updated_at - ?1) / 3600000, state, count(*) FROM messages"
    " WHERE updated_at >= ?1 AND state IN ('sent', 'failed', 'refused')"
    " GROUP BY 1, 2";

/* "%text%" (contains) or "text%" (prefix) with \ % _ escaped. Caller
 * frees; NULL when out of memory. */
static char *like_pattern(const char *text, int contains)
{
    size_t n = strlen(text);
    char *p = malloc(2 * n + 3), *o = p;
    if (p == NULL)
        return NULL;
    if (contains)
        *o++ = '%';
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\\' || text[i] == '%' || text[i] == '_')
            *o++ = '\\';
        *o++ = text[i];
    }
    *o++ = '%';
    *o = '\0';
    return p;
}

static void bind_opt_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v && *v)
        store_bind_text(st, i, v);
}

static void bind_opt_ms(sqlite3_stmt *st, int i, int64_t v)
{
    if (v > 0)
        sqlite3_bind_int64(st, i, v);
}

static int read_rows(struct store *s, sqlite3_stmt *st,
                     struct store_message **out, size_t *n, struct error *err)
{
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            void *p = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(**out));
            if (p == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        struct store_message *m = &(*out)[(*n)++];
        memset(m, 0, sizeof(*m));
        const unsigned char *id = sqlite3_column_text(st, 0);
        strncpy(m->id, id ? (const char *)id : "", sizeof(m->id) - 1);
        m->created_at = sqlite3_column_int64(st, 1);
        m->updated_at = sqlite3_column_int64(st, 2);
        m->source = store_col_dup(st, 3);
        m->filename = store_col_dup(st, 4);
        m->size = sqlite3_column_int64(st, 5);
        m->sha256 = store_col_dup(st, 6);
        m->state = store_col_dup(st, 7);
        m->payload_path = store_col_dup(st, 8);
        m->dedup_key = store_col_dup(st, 9);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        store_messages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return store_db_error(s, err, "search messages");
    }
    return 0;
}

int store_message_search(struct store *s, const struct store_message_query *q,
                         struct store_message **out, size_t *n,
                         struct error *err)
{
    if (store_pg(s))
        return pgs_message_search(store_pg(s), q, out, n, err);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = store_stmt_ext(s, C_SEARCH, SQL_SEARCH, err);
    if (st == NULL)
        return -1;
    char *contains = NULL, *prefix = NULL;
    if (q->text && *q->text &&
        ((contains = like_pattern(q->text, 1)) == NULL ||
         (prefix = like_pattern(q->id_text && *q->id_text ? q->id_text
                                                          : q->text, 0))
             == NULL)) {
        free(contains);
        return error_set(err, "out of memory");
    }
    bind_opt_text(st, 1, q->before_id);
    bind_opt_text(st, 2, q->state);
    bind_opt_ms(st, 3, q->since_ms);
    bind_opt_ms(st, 4, q->until_ms);
    bind_opt_text(st, 5, q->connector);
    bind_opt_text(st, 6, q->connectors_json);
    bind_opt_text(st, 7, contains);
    bind_opt_text(st, 8, prefix);
    bind_opt_text(st, 9, q->text_connectors_json);
    sqlite3_bind_int64(st, 10, q->limit > 0 ? q->limit : 100);
    int rc = read_rows(s, st, out, n, err);
    free(contains);
    free(prefix);
    return rc;
}

int store_message_hourly(struct store *s, int64_t since_ms, int hours,
                         int64_t (*counts)[3], struct error *err)
{
    if (store_pg(s))
        return pgs_message_hourly(store_pg(s), since_ms, hours, counts,
                                  err);
    memset(counts, 0, (size_t)hours * sizeof(*counts));
    sqlite3_stmt *st = store_stmt_ext(s, C_HOURLY, SQL_HOURLY, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, since_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t h = sqlite3_column_int64(st, 0);
        const char *state = (const char *)sqlite3_column_text(st, 1);
        int k = !state ? -1 : !strcmp(state, "sent") ? 0
              : !strcmp(state, "failed") ? 1 : 2;
        if (h >= 0 && h < hours && k >= 0)
            counts[h][k] += sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0
                             : store_db_error(s, err, "count messages per hour");
}
