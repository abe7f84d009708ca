/*
 * pg_console.c - the PostgreSQL statements of console_store.h (M8 on a
 * cluster, R21): message search with keyset paging, messages per hour by
 * outcome.
 *
 * Owns statement slots 208..215 of pg_internal.h and nothing else. Read
 * only: nothing here takes a lock or writes.
 *
 * As on SQLite, every filter is a parameter of one constant statement
 * ("$N::type IS NULL OR ..."). What differs:
 *   - json_each(?) -> json_array_elements_text($N::json);
 *   - SQLite's LIKE ignores ASCII case, PostgreSQL's does not: the text
 *     filters use ILIKE (ids are COLLATE "C", so there it folds ASCII only,
 *     as SQLite; a file name in the database's collation may also fold
 *     non-ASCII letters, which SQLite does not);
 *   - LIKE patterns are escaped here as in sqlite_console.c, so a user's
 *     % or _ is a character, not a wildcard (ESCAPE '\').
 *
 * Must never: build SQL from data; write.
 */
#include "store/pg_console.h"

#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

#define SLOT_BASE 208

enum { C_SEARCH, C_HOURLY, C_COUNT };
_Static_assert(SLOT_BASE + C_COUNT <= 216,
               "pg_console.c owns statement slots 208..215");

/* $1 before_id, $2 state, $3 since, $4 until, $5 connector, $6 connectors
 * (JSON), $7 contains-pattern, $8 id prefix pattern, $9 connectors of the
 * text (JSON), $10 limit */
static const char *const SQL_CONSOLE[C_COUNT] = {
    [C_SEARCH] =
        "SELECT id, created_at, updated_at, source, filename, size, sha256,"
        " state, payload_path, dedup_key FROM messages m"
        " WHERE ($1::text IS NULL OR m.id < $1::text)"
        " AND ($2::text IS NULL OR m.state = $2::text)"
        " AND ($3::bigint IS NULL OR m.created_at >= $3::bigint)"
        " AND ($4::bigint IS NULL OR m.created_at < $4::bigint)"
        " AND ($5::text IS NULL OR m.source = $5::text OR EXISTS (SELECT 1"
        "      FROM hops h WHERE h.message_id = m.id"
        "      AND h.connector = $5::text))"
        " AND ($6::text IS NULL OR m.source IN (SELECT"
        "      json_array_elements_text($6::json))"
        "      OR EXISTS (SELECT 1 FROM hops h WHERE h.message_id = m.id"
        "      AND h.connector IN (SELECT"
        "      json_array_elements_text($6::json))))"
        " AND ($7::text IS NULL OR m.id ILIKE $8::text ESCAPE '\\'"
        "      OR m.filename ILIKE $7::text ESCAPE '\\'"
        "      OR EXISTS (SELECT 1 FROM receipts r WHERE r.message_id = m.id"
        "      AND (r.as2_message_id ILIKE $7::text ESCAPE '\\'"
        "      OR r.original_message_id ILIKE $7::text ESCAPE '\\'))"
        "      OR ($9::text IS NOT NULL AND (m.source IN (SELECT"
        "      json_array_elements_text($9::json)) OR EXISTS (SELECT 1"
        "      FROM hops h WHERE h.message_id = m.id AND h.connector IN"
        "      (SELECT json_array_elements_text($9::json))))))"
        " ORDER BY m.id DESC LIMIT $10",
    [C_HOURLY] =
        "SELECT (updated_at - $1::bigint) / 3600000, state, COUNT(*)"
        " FROM messages WHERE updated_at >= $1::bigint"
        " AND state IN ('sent', 'failed', 'refused') GROUP BY 1, 2",
};

/* "%text%" (contains) or "text%" (prefix) with \ % _ escaped, as
 * sqlite_console.c makes it. Caller frees; NULL when out of memory. */
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

/* An empty or absent filter is SQL NULL (does not filter). */
static void arg_opt_text(struct pg_args *a, const char *v)
{
    pg_arg_text(a, v && *v ? v : NULL);
}

static void arg_opt_ms(struct pg_args *a, int64_t v)
{
    if (v > 0)
        pg_arg_int(a, v);
    else
        pg_arg_text(a, NULL);
}

static int message_rows(const PGresult *r, struct store_message **out,
                        size_t *n, struct error *err)
{
    int rows = PQntuples(r);
    *out = calloc((size_t)rows + 1, sizeof(**out));
    if (*out == NULL)
        return error_set(err, "out of memory");
    for (int i = 0; i < rows; i++) {
        struct store_message *m = &(*out)[(*n)++];
        pg_val_id(r, i, 0, m->id);
        m->created_at = pg_val_int(r, i, 1);
        m->updated_at = pg_val_int(r, i, 2);
        m->source = pg_val_dup(r, i, 3);
        m->filename = pg_val_dup(r, i, 4);
        m->size = pg_val_int(r, i, 5);
        m->sha256 = pg_val_dup(r, i, 6);
        m->state = pg_val_dup(r, i, 7);
        m->payload_path = pg_val_dup(r, i, 8);
        m->dedup_key = pg_val_dup(r, i, 9);
    }
    return 0;
}

int pgs_message_search(struct pg_store *p,
                       const struct store_message_query *q,
                       struct store_message **out, size_t *n,
                       struct error *err)
{
    *out = NULL;
    *n = 0;
    char *contains = NULL, *prefix = NULL;
    if (q->text && *q->text &&
        ((contains = like_pattern(q->text, 1)) == NULL ||
         (prefix = like_pattern(q->id_text && *q->id_text ? q->id_text
                                                          : q->text, 0))
             == NULL)) {
        free(contains);
        return error_set(err, "out of memory");
    }
    struct pg_args a = {0};
    arg_opt_text(&a, q->before_id);
    arg_opt_text(&a, q->state);
    arg_opt_ms(&a, q->since_ms);
    arg_opt_ms(&a, q->until_ms);
    arg_opt_text(&a, q->connector);
    arg_opt_text(&a, q->connectors_json);
    arg_opt_text(&a, contains);
    arg_opt_text(&a, prefix);
    arg_opt_text(&a, q->text_connectors_json);
    pg_arg_int(&a, q->limit > 0 ? q->limit : 100);
    PGresult *r = pg_run(p, SLOT_BASE + C_SEARCH, SQL_CONSOLE[C_SEARCH], &a,
                         "search messages", err);
    free(contains);
    free(prefix);
    if (r == NULL)
        return -1;
    int rc = message_rows(r, out, n, err);
    PQclear(r);
    return rc;
}

int pgs_message_hourly(struct pg_store *p, int64_t since_ms, int hours,
                       int64_t (*counts)[3], struct error *err)
{
    memset(counts, 0, (size_t)hours * sizeof(*counts));
    struct pg_args a = {0};
    pg_arg_int(&a, since_ms);
    PGresult *r = pg_run(p, SLOT_BASE + C_HOURLY, SQL_CONSOLE[C_HOURLY], &a,
                         "count messages per hour", err);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t h = pg_val_int(r, i, 0);
        const char *state = PQgetvalue(r, i, 1);
        int k = !strcmp(state, "sent") ? 0 : !strcmp(state, "failed") ? 1 : 2;
        if (h >= 0 && h < hours)
            counts[h][k] += pg_val_int(r, i, 2);
    }
    PQclear(r);
    return 0;
}
