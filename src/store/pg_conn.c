/*
 * pg_conn.c - the PostgreSQL backend's plumbing (pg_internal.h): running a
 * statement on one connection (prepared once per connection and slot),
 * its parameters, transactions, reading row values, reconnecting, and
 * what a store URL may say (store_url_check: no password, TLS that
 * verifies a database not on this machine).
 *
 * A connection that broke (the server restarted, or failed over to a
 * replica with target_session_attrs=read-write) is made again before the
 * next statement that is not inside a transaction; inside one, the
 * transaction is lost and the caller gets the error (its work was not
 * committed, so nothing acknowledged is lost).
 *
 * Must never: build SQL from data; put a parameter's value in an error.
 */
#include "store/pg_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/fault.h"
#include "util/log.h"
#include "util/secret.h"

#include <pthread.h>

/* store_password_set's copy, NUL-terminated for libpq. */
static pthread_mutex_t pw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secret *pw_held;

int store_password_set(const struct secret *pw, struct error *err)
{
    struct secret *copy = NULL;
    if (pw != NULL) {
        copy = secret_new(secret_len(pw) + 1);
        if (copy == NULL)
            return error_set(err, "out of memory");
        memcpy(secret_data_mut(copy), secret_data(pw), secret_len(pw));
    }
    pthread_mutex_lock(&pw_lock);
    struct secret *old = pw_held;
    pw_held = copy;
    pthread_mutex_unlock(&pw_lock);
    secret_free(old);
    return 0;
}

/* A server that stops answering (a network partition, a host gone
 * without a FIN) fails the connection within about a minute instead of
 * hanging a query until TCP gives up (up to 15 min): TCP keepalives after
 * 30 s idle, and unacknowledged data given up after 60 s. These come
 * before dbname, so a store URL that names them wins. */
PGconn *pg_connect(const char *url)
{
    const char *keys[] = { "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "dbname", "password", NULL };
    const char *vals[] = { "1", "30", "10", "3", "60000", url, NULL, NULL };
    enum { PW = 6 };
    struct secret *pw = NULL;       /* a copy: no lock held while connecting */
    pthread_mutex_lock(&pw_lock);
    if (pw_held != NULL)
        pw = secret_from(secret_data(pw_held), secret_len(pw_held));
    pthread_mutex_unlock(&pw_lock);
    if (pw != NULL)
        vals[PW] = (const char *)secret_data(pw);
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    secret_free(pw);
    return c;
}

/* The server's notices (warnings about a failover, a cancelled wait for
 * a replica) go to Wharf's log, not to stderr. */
static void pg_notice(void *arg, const char *msg)
{
    (void)arg;
    log_warn("database: %.*s", (int)strcspn(msg, "\n"), msg);
}

void pg_notices_to_log(PGconn *c)
{
    PQsetNoticeProcessor(c, pg_notice, NULL);
}

void pg_arg_text(struct pg_args *a, const char *s)
{
    a->v[a->n] = s;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

void pg_arg_int(struct pg_args *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", (long long)x);
    pg_arg_text(a, a->num[a->n]);
}

void pg_arg_blob(struct pg_args *a, const void *b, size_t len)
{
    a->v[a->n] = b ? (const char *)b : NULL;
    a->len[a->n] = (int)len;
    a->fmt[a->n++] = 1;
}

int pg_db_error(struct pg_store *p, struct error *err, const char *what,
                const PGresult *r)
{
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (msg == NULL || *msg == '\0')
        msg = PQerrorMessage(p->conn);
    int len = (int)strcspn(msg, "\n");
    return error_set(err, "database %s: %s: %.*s", p->name, what, len, msg);
}

static int conn_ok(struct pg_store *p, struct error *err)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        return 0;
    if (p->in_tx)
        return pg_db_error(p, err, "connection lost in a transaction", NULL);
    PQreset(p->conn);
    memset(p->prepared, 0, sizeof(p->prepared));
    p->leads = 0;           /* session locks went with the connection */
    if (PQstatus(p->conn) != CONNECTION_OK)
        return pg_db_error(p, err, "reconnect", NULL);
    return 0;
}

PGresult *pg_run(struct pg_store *p, int slot, const char *sql,
                 const struct pg_args *a, const char *what,
                 struct error *err)
{
    char name[16];
    if (slot < 0 || slot >= PG_SLOTS) {
        error_set(err, "internal: statement slot %d out of range", slot);
        return NULL;
    }
    snprintf(name, sizeof(name), "w%d", slot);
    if (conn_ok(p, err) < 0)
        return NULL;
    if (!p->prepared[slot]) {
        PGresult *r = PQprepare(p->conn, name, sql, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            pg_db_error(p, err, "prepare", r);
        PQclear(r);
        if (!ok)
            return NULL;
        p->prepared[slot] = true;
    }
    PGresult *r = PQexecPrepared(p->conn, name, a ? a->n : 0,
                                 a ? a->v : NULL, a ? a->len : NULL,
                                 a ? a->fmt : NULL, a ? a->binary_rows : 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_db_error(p, err, what, r);
        PQclear(r);
        return NULL;
    }
    return r;
}

int pg_run_done(struct pg_store *p, int slot, const char *sql,
                const struct pg_args *a, const char *what, int64_t *changed,
                struct error *err)
{
    PGresult *r = pg_run(p, slot, sql, a, what, err);
    if (r == NULL)
        return -1;
    if (changed)
        *changed = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

int pg_exec(struct pg_store *p, const char *cmd, struct error *err)
{
    if (conn_ok(p, err) < 0)
        return -1;
    PGresult *r = PQexec(p->conn, cmd);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = pg_db_error(p, err, "run a command", r);
    PQclear(r);
    return rc;
}

int pg_tx_begin(struct pg_store *p, struct error *err)
{
    if (pg_exec(p, "BEGIN", err) < 0)
        return -1;
    p->in_tx = true;
    return 0;
}

int pg_tx_fail(struct pg_store *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK)
        pg_exec(p, "ROLLBACK", NULL);
    p->in_tx = false;
    return -1;
}

int pg_tx_end(struct pg_store *p, struct error *err)
{
    int rc = pg_exec(p, "COMMIT", err);
    p->in_tx = false;
    return rc < 0 ? pg_tx_fail(p) : 0;
}

char *pg_val_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int64_t pg_val_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0
           : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

void pg_val_id(const PGresult *r, int row, int col, char out[ID_LEN + 1])
{
    snprintf(out, ID_LEN + 1, "%s", PQgetvalue(r, row, col));
}

unsigned char *pg_val_blob(const PGresult *r, int row, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea(
        (const unsigned char *)PQgetvalue(r, row, col), &n);
    if (raw == NULL)
        return NULL;
    unsigned char *out = malloc(n ? n : 1);
    if (out) {
        memcpy(out, raw, n);
        *len = n;
    }
    PQfreemem(raw);
    return out;
}

int pg_injected_io_error(const char *point, struct error *err)
{
    int e = fault_fail(point);
    if (e == 0)
        return 0;
    error_set(err, "cannot commit: %s (injected)", e == ENOSPC
              ? "could not extend file: No space left on device"
              : "could not write: Input/output error");
    return 1;
}

int pg_injected_lost_commit(const char *point, struct error *err)
{
    if (fault_fail(point) == 0)
        return 0;
    error_set(err, "cannot commit: server closed the connection "
              "unexpectedly (injected after the commit)");
    return 1;
}

int store_url_files(const char *url, int (*fn)(const char *path, void *arg),
                    void *arg)
{
    static const char *const files[] = { "sslrootcert", "sslcert", "sslkey",
                                         "sslcrl", "passfile" };
    if (!pgs_is_url(url))
        return 0;
    const char *env = getenv("PGPASSFILE");
    int rc = env && env[0] ? fn(env, arg) : 0;
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    for (PQconninfoOption *o = opts; rc == 0 && o && o->keyword; o++)
        for (size_t i = 0; rc == 0 && i < sizeof(files) / sizeof(files[0]);
             i++)
            if (strcmp(o->keyword, files[i]) == 0 && o->val && o->val[0])
                rc = fn(o->val, arg);
    PQconninfoFree(opts);
    return rc;
}

/* ---- what a store URL may say (store_url_check) ------------------------- */

/* host[0..n) is this machine: a socket folder, localhost, 127.x.y.z, ::1
 * (an empty host: libpq's default socket). */
static bool pg_host_local(const char *h, size_t n)
{
    char buf[256];
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    struct in_addr a4;
    return n == 0 || buf[0] == '/' || strcmp(buf, "localhost") == 0 ||
           strcmp(buf, "::1") == 0 || strcmp(buf, "[::1]") == 0 ||
           (inet_pton(AF_INET, buf, &a4) == 1 &&
            (ntohl(a4.s_addr) >> 24) == 127);
}

/* The first host of the comma-separated list that is not this machine,
 * into out; 0 when every one is. */
static int pg_remote_host(const char *hosts, char *out, size_t outsz)
{
    const char *p = hosts ? hosts : "";
    for (;;) {
        size_t n = strcspn(p, ",");
        if (!pg_host_local(p, n)) {
            snprintf(out, outsz, "%.*s", (int)(n < 200 ? n : 200), p);
            return 1;
        }
        if (p[n] == '\0')
            return 0;
        p += n + 1;
    }
}

static const char *pg_opt(PQconninfoOption *opts, const char *key,
                          const char *env)
{
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val && o->val[0])
            return o->val;
    const char *e = env ? getenv(env) : NULL;
    return e && e[0] ? e : NULL;
}

static int pg_url_rules(PQconninfoOption *opts, struct error *err)
{
    if (pg_opt(opts, "password", NULL))
        return error_set(err, "store: the URL holds a password; put it in "
                         "pgpass in the data directory (libpq's passfile "
                         "format, mode 0600) instead");
    const char *min = pg_opt(opts, "ssl_min_protocol_version", NULL);
    if (min && (strcmp(min, "TLSv1") == 0 || strcmp(min, "TLSv1.1") == 0))
        return error_set(err, "store: ssl_min_protocol_version %s is below "
                         "TLS 1.2 (leave it out, or TLSv1.2 / TLSv1.3)", min);
    char host[256];
    if (!pg_remote_host(pg_opt(opts, "host", "PGHOST"), host, sizeof(host)))
        return 0;
    const char *mode = pg_opt(opts, "sslmode", "PGSSLMODE");
    if (mode && strcmp(mode, "verify-full") == 0)
        return 0;
    return error_set(err, "store: the database host %s is not on this "
                     "machine, so the URL must ask for TLS that verifies it: "
                     "sslmode=verify-full and sslrootcert=FILE (the CA of "
                     "the server's certificate), not sslmode=%s", host,
                     mode ? mode : "(unset: libpq would try TLS without "
                     "checking the server)");
}

int store_url_check(const char *url, struct error *err)
{
    if (!pgs_is_url(url))
        return 0;
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (opts == NULL) {
        /* libpq names the part it could not read, never a password */
        error_set(err, "store: not a PostgreSQL URL libpq can read: %.*s",
                  msg ? (int)strcspn(msg, "\n") : 13,
                  msg ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    int rc = pg_url_rules(opts, err);
    PQconninfoFree(opts);
    return rc;
}

void store_pg_lib_version(char *buf, size_t n)
{
    int v = PQlibVersion();         /* 150010: 15.10 (since 10) */
    snprintf(buf, n, "%d.%d", v / 10000, v % 10000);
}
