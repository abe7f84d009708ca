/*
 * env.c - the connector environment (connectors/env.h): what a connector
 * gets from the engine instead of the process. One per flow generation
 * (core/flow.c makes it with the flow and frees it with the flow), or per
 * action / OAuth callback that opens a stored connector.
 *
 * Parts: keys (the AS2 profile with vault handle keys, partners with
 * their certificates; loaded once, when first asked for), the transport's
 * configuration (wharf.conf's proxy for the one proxy rule), state
 * (sealed "state:NAME" rows of connector_secrets, and the replay guard),
 * the message history (events, receipts), the settings of wharf.conf a
 * connector may read, and jobs (their functions: core/jobs.c).
 *
 * Owns the loaded profile and partners (until conn_env_free) and the
 * copies of wharf.conf values. Must never hand a connector struct wharf,
 * the vault or a store connection; log or put into an error a byte of a
 * sealed value.
 */
#include "core/env.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env_internal.h"
#include "core/profile.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "store/auth_store.h"
#include "store/partner_store.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/vault.h"

#define REPLAY_PRUNE_MS 60000       /* expired claims are deleted this often */

static struct env_full *full(const struct conn_env *e)
{
    return (struct env_full *)e;
}

struct wharf *conn_env_wharf(const struct conn_env *e)
{
    return e ? full(e)->w : NULL;
}

static void settings_fill(struct conn_settings *s, const struct wharf *w)
{
    s->batch = w->conf.batch;
    s->poll_ms = w->conf.poll_ms;
    snprintf(s->admin_listen, sizeof(s->admin_listen), "%s",
             w->conf.admin_listen);
    s->partner_client_certs = w->conf.partner_client_ca[0] != '\0';
    snprintf(s->scratch_dir, sizeof(s->scratch_dir), "%s", w->payload_dir);
}

struct conn_env *conn_env_new(struct wharf *w, struct error *err)
{
    struct env_full *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return error_set(err, "out of memory"), NULL;
    e->w = w;
    settings_fill(&e->settings, w);
    snprintf(e->net.proxy, sizeof(e->net.proxy), "%s", w->conf.proxy);
    snprintf(e->net.no_proxy, sizeof(e->net.no_proxy), "%s",
             w->conf.no_proxy);
    snprintf(e->net.credentials, sizeof(e->net.credentials), "%s",
             w->conf.proxy_credentials_file);
    pthread_mutex_init(&e->keys.mu, NULL);
    e->keys.e = e->net.e = e->state.e = e->history.e = e->jobs.e = e;
    e->pub.keys = &e->keys;
    e->pub.net = &e->net;
    e->pub.jobs = &e->jobs;
    e->pub.state = &e->state;
    e->pub.history = &e->history;
    e->pub.settings = &e->settings;
    return &e->pub;
}

void conn_env_free(struct conn_env *pub)
{
    if (pub == NULL)
        return;
    struct env_full *e = full(pub);
    if (e->keys.has_profile)
        profile_clear(&e->keys.prof);
    for (size_t i = 0; i < e->keys.nparts; i++) {
        partner_clear(e->keys.parts[i]);
        free(e->keys.parts[i]);
    }
    free(e->keys.parts);
    pthread_mutex_destroy(&e->keys.mu);
    free(e);
}

void conn_env_set_wake(struct conn_env *pub, void (*wake)(void *), void *ud)
{
    full(pub)->jobs.wake = wake;
    full(pub)->jobs.wake_ud = ud;
}

/* ---- keys ------------------------------------------------------------------------ */

int conn_keys_profile(const struct conn_keys *ck, const struct profile **out,
                      struct error *err)
{
    struct conn_keys *k = (struct conn_keys *)ck;
    int rc = 0;
    *out = NULL;
    pthread_mutex_lock(&k->mu);
    if (!k->profile_loaded) {
        struct store *st = wharf_store(k->e->w, err);
        rc = st ? profile_load(k->e->w, st, &k->prof, err) : -1;
        if (rc >= 0) {
            k->profile_loaded = 1;
            k->has_profile = rc;
        }
    }
    if (rc >= 0 && k->has_profile)
        *out = &k->prof;
    pthread_mutex_unlock(&k->mu);
    return rc < 0 ? -1 : *out != NULL;
}

/* The cached partner called name, loading it when new; under k->mu. */
static int partner_cached(struct conn_keys *k, const char *name,
                          const struct partner **out, struct error *err)
{
    for (size_t i = 0; i < k->nparts; i++)
        if (strcmp(k->parts[i]->name, name) == 0)
            return *out = k->parts[i], 1;
    struct store *st = wharf_store(k->e->w, err);
    struct partner *p = st ? calloc(1, sizeof(*p)) : NULL;
    struct partner **grown = p ? realloc(k->parts, (k->nparts + 1) *
                                         sizeof(*grown)) : NULL;
    if (grown == NULL) {
        free(p);
        return st ? error_set(err, "out of memory") : -1;
    }
    k->parts = grown;
    int rc = partner_load(st, name, 0, p, err);
    if (rc <= 0) {
        free(p);
        return rc;
    }
    k->parts[k->nparts++] = p;
    *out = p;
    return 1;
}

int conn_keys_partner(const struct conn_keys *ck, const char *name,
                      const struct partner **out, struct error *err)
{
    struct conn_keys *k = (struct conn_keys *)ck;
    *out = NULL;
    pthread_mutex_lock(&k->mu);
    int rc = partner_cached(k, name, out, err);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

/* ---- the transport --------------------------------------------------------------- */

int conn_net_proxy(const struct conn_transport *t, const struct net_proxy *own,
                   struct net_proxy *out, enum net_proxy_from *from,
                   struct secret **auth, struct error *err)
{
    struct net_proxy global = {0};
    *auth = NULL;
    if (t->proxy[0]) {
        global.url = t->proxy;
        global.no_proxy = t->no_proxy[0] ? t->no_proxy : NULL;
    }
    *from = net_client_proxy_pick(own, &global, out);
    if (*from != NET_PROXY_GLOBAL || t->credentials[0] == '\0')
        return 0;
    *auth = net_client_proxy_auth_read(t->credentials, "proxy_credentials_file "
                                       "of wharf.conf", err);
    if (*auth == NULL)
        return -1;
    out->auth = *auth;
    return 0;
}

/* ---- state ------------------------------------------------------------------------- */

static void state_row(char *out, size_t n, const char *name)
{
    snprintf(out, n, "state:%s", name);
}

int conn_state_get(struct conn_state *s, const char *conn, const char *name,
                   struct secret **out, int64_t *expires_at,
                   struct error *err)
{
    char row[160], ctx[300];
    unsigned char *blob = NULL;
    size_t len = 0;
    *out = NULL;
    state_row(row, sizeof(row), name);
    struct store *st = wharf_store(s->e->w, err);
    int found = st ? store_csecret_get(st, conn, row, &blob, &len, expires_at,
                                       err) : -1;
    if (found <= 0)
        return found;
    connector_seal_context(ctx, sizeof(ctx), conn, row);
    *out = vault_unseal(s->e->w->vault, ctx, blob, len, err);
    free(blob);
    return *out ? 1 : -1;
}

int conn_state_put(struct conn_state *s, const char *conn, const char *name,
                   const struct secret *value, int64_t expires_at,
                   struct error *err)
{
    char row[160], ctx[300];
    state_row(row, sizeof(row), name);
    connector_seal_context(ctx, sizeof(ctx), conn, row);
    unsigned char *blob = NULL;
    size_t len = 0;
    if (vault_seal(s->e->w->vault, ctx, value, &blob, &len, err) < 0)
        return -1;
    struct store *st = wharf_store(s->e->w, err);
    int rc = st ? store_csecret_put(st, conn, row, blob, len, expires_at, err)
                : -1;
    free(blob);
    return rc;
}

int conn_state_drop(struct conn_state *s, const char *conn, const char *name,
                    struct error *err)
{
    char row[160];
    state_row(row, sizeof(row), name);
    struct store *st = wharf_store(s->e->w, err);
    return st ? store_csecret_del(st, conn, row, err) : -1;
}

int conn_state_names(struct conn_state *s, const char *conn,
                     const char *prefix, char ***names, size_t *n,
                     struct error *err)
{
    char row[160];
    state_row(row, sizeof(row), prefix);
    struct store *st = wharf_store(s->e->w, err);
    if (st == NULL || store_csecret_names(st, conn, row, names, n, err) < 0)
        return -1;
    size_t skip = strlen("state:");
    for (size_t i = 0; i < *n; i++)      /* names without "state:" */
        memmove((*names)[i], (*names)[i] + skip,
                strlen((*names)[i]) - skip + 1);
    return 0;
}

/* The replay guard: claims of a process that died are void (a new run id
 * per process); expired claims are pruned at most once a minute. */
static pthread_mutex_t replay_lock = PTHREAD_MUTEX_INITIALIZER;
static char replay_run[ID_LEN + 1];
static int64_t replay_pruned_at;

static void replay_run_id(char out[ID_LEN + 1])
{
    pthread_mutex_lock(&replay_lock);
    if (replay_run[0] == '\0')
        id_new(replay_run);
    memcpy(out, replay_run, ID_LEN + 1);
    pthread_mutex_unlock(&replay_lock);
}

static void replay_prune(struct store *st, int64_t now)
{
    pthread_mutex_lock(&replay_lock);
    int due = now - replay_pruned_at >= REPLAY_PRUNE_MS;
    if (due)
        replay_pruned_at = now;
    pthread_mutex_unlock(&replay_lock);
    struct error err = {0};
    if (due && store_replay_prune(st, now, &err) < 0)
        log_warn("expired claims not pruned: %s", err.msg);
}

int conn_state_claim(struct conn_state *s, const char *conn, const char *key,
                     int64_t until, struct error *err)
{
    char run[ID_LEN + 1];
    struct store *st = wharf_store(s->e->w, err);
    if (st == NULL)
        return -1;
    int64_t now = time_now_ms();
    replay_prune(st, now);
    replay_run_id(run);
    return store_replay_claim(st, conn, key, until, run, now, err);
}

int conn_state_settle(struct conn_state *s, const char *conn, const char *key,
                      int done, struct error *err)
{
    char run[ID_LEN + 1];
    struct store *st = wharf_store(s->e->w, err);
    if (st == NULL)
        return -1;
    replay_run_id(run);
    return done ? store_replay_done(st, conn, key, err)
                : store_replay_release(st, conn, key, run, err);
}

/* ---- history ------------------------------------------------------------------------ */

int conn_event(struct conn_history *h, const char *msgid, int64_t hop_id,
               const char *level, const char *text, struct error *err)
{
    struct store *st = wharf_store(h->e->w, err);
    return st ? store_event_add(st, msgid, hop_id, level, text, err) : -1;
}

void conn_receipt_row(const struct conn_receipt *r, struct store_receipt *row)
{
    *row = (struct store_receipt){
        .message_id = (char *)r->msgid, .direction = (char *)r->direction,
        .at = time_now_ms(), .as2_message_id = (char *)r->mdn_id,
        .original_message_id = (char *)r->original_id,
        .headers = (char *)(r->headers ? r->headers : ""),
        .body = (unsigned char *)r->body, .len = r->len,
    };
}

struct conn_held {
    struct store_receipt row;   /* its strings and body owned */
};

static char *dup_or_null(const char *s, int *oom)
{
    char *d = s ? strdup(s) : NULL;
    *oom |= s != NULL && d == NULL;
    return d;
}

struct conn_held *conn_receipt_hold(const struct conn_receipt *r)
{
    struct conn_held *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    int oom = 0;
    struct store_receipt *w = &h->row;
    w->at = time_now_ms();
    w->message_id = dup_or_null(r->msgid, &oom);
    w->direction = dup_or_null(r->direction, &oom);
    w->as2_message_id = dup_or_null(r->mdn_id, &oom);
    w->original_message_id = dup_or_null(r->original_id, &oom);
    w->headers = dup_or_null(r->headers ? r->headers : "", &oom);
    w->body = malloc(r->len ? r->len : 1);
    if (oom || w->body == NULL) {
        conn_held_free(h);
        return NULL;
    }
    memcpy(w->body, r->body, r->len);
    w->len = r->len;
    return h;
}

void conn_held_free(struct conn_held *h)
{
    if (h == NULL)
        return;
    free(h->row.message_id);
    free(h->row.direction);
    free(h->row.as2_message_id);
    free(h->row.original_message_id);
    free(h->row.headers);
    free(h->row.body);
    free(h);
}

const struct store_receipt *conn_held_row(const struct conn_held *h)
{
    return h ? &h->row : NULL;
}

int conn_receipt_keep(struct conn_history *h, const struct conn_receipt *r,
                      struct error *err)
{
    struct store_receipt row;
    conn_receipt_row(r, &row);
    struct store *st = wharf_store(h->e->w, err);
    return st ? store_receipt_add(st, &row, err) : -1;
}

/* The process's alerts (security/alerts.h: the data dir serve or the CLI
 * attached); h names whose they are, for the shape of the environment. */
void conn_alert(struct conn_history *h, const char *kind, const char *key,
                enum conn_alert_level level, const char *summary,
                const char *details)
{
    static const enum alert_level map[] = {
        [CONN_ALERT_INFO] = ALERT_INFO, [CONN_ALERT_WARNING] = ALERT_WARNING,
        [CONN_ALERT_CRITICAL] = ALERT_CRITICAL,
    };
    (void)h;
    alert_raise(kind, key, (unsigned)level <= CONN_ALERT_CRITICAL
                ? map[level] : ALERT_WARNING, summary, details);
}

void conn_alert_clear(struct conn_history *h, const char *kind,
                      const char *key)
{
    (void)h;
    alert_clear(kind, key);
}
