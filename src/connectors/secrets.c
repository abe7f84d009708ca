/*
 * secrets.c - the secrets of connectors, sealed by the vault (R15, M5/M6:
 * "secrets are given as files and stored by the vault").
 *
 * A connector type declares, in its option table (connector.h), the config
 * keys that give a secret (CONN_SECRET: "password_file", "auth.token_file",
 * "proxy.credentials_file", ...; a dot walks into a nested object) or a
 * public file (CONN_FILE). Three moments:
 *
 *   import   connector_secrets_seal() reads each named file once and adds
 *            the sealed blob (context "connector:NAME:KEY") to the flow
 *            that store_flow_put writes in the same transaction. The file
 *            may be deleted afterwards; the config keeps its path as a
 *            label, so `flow export` prints paths, never a secret.
 *   open     connector_new() unseals every secret its config names into
 *            the connector (connector_secret() hands them to open());
 *            a secret missing from the store is an error that says to
 *            import the flow again. open() never reads a secret file.
 *   run      connector_state_*() keep what a connector obtains by itself
 *            (OAuth tokens) as "state:NAME" rows, sealed the same way.
 *
 * Owns the unsealed copies hanging off a connector (freed by
 * connector_secrets_free) and nothing else. It must never log, print or
 * put into an error message a byte of a secret.
 */
#include "connectors/connector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/flowfile.h"
#include "core/wharf.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/vault.h"

struct connector_secret_slot {
    char *key;
    struct secret *value;
};

/* Find dotted path key ("auth.password_file") in config: the object that
 * holds it (*parent) and its member name there (*leaf, a suffix of key).
 * A member named like the whole rest wins over a split at a dot, so
 * "headers.X-Api.Key" finds the header "X-Api.Key". The value, or NULL. */
static json_t *config_find(const json_t *config, const char *key,
                           json_t **parent, const char **leaf)
{
    char part[256];
    const json_t *v = config;
    const char *p = key;
    for (;;) {
        if (!json_is_object(v))
            return NULL;
        json_t *whole = json_object_get(v, p);
        if (whole) {
            *parent = (json_t *)v;
            *leaf = p;
            return whole;
        }
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (dot == NULL || n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        p = dot + 1;
    }
}

static json_t *config_get(const json_t *config, const char *key)
{
    json_t *parent;
    const char *leaf;
    return config_find(config, key, &parent, &leaf);
}

/* Replace the value at key (present) with value (stolen). */
static void config_replace(json_t *config, const char *key, json_t *value)
{
    json_t *parent;
    const char *leaf;
    if (config_find(config, key, &parent, &leaf))
        json_object_set_new(parent, leaf, value);
    else
        json_decref(value);
}

int connector_credential_name(const char *name)
{
    static const char *const WORDS[] = { "auth", "token", "secret", "pass",
        "key", "cookie", "session", "credential", "signature", NULL };
    char low[128];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        return 1;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32
                                                           : name[i]);
    for (size_t i = 0; WORDS[i]; i++)
        if (strstr(low, WORDS[i]))
            return 1;
    return 0;
}

static void seal_context(char *out, size_t n, const char *conn, const char *key)
{
    snprintf(out, n, "connector:%s:%s", conn, key);
}

/* Every key of config that holds a sealed value or a file to seal: the
 * type's CONN_SECRET and CONN_FILE options, and the credential-named
 * members of its CONN_SECRET_MEMBERS maps ("headers.X-Api-Key"). Calls
 * fn(key, secret, ud) for each present one; stops at the first non-zero
 * return. */
typedef int (*secret_key_fn)(const char *key, int secret, void *ud);

static int secret_members(const struct conn_option *o, const json_t *config,
                          secret_key_fn fn, void *ud)
{
    const char *m;
    json_t *v;
    json_object_foreach((json_t *)connector_config_get(config, o->key), m, v) {
        char key[300];
        snprintf(key, sizeof(key), "%s.%s", o->key, m);
        int rc = connector_credential_name(m) ? fn(key, 1, ud) : 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int secret_keys(const struct connector_type *t, const json_t *config,
                       secret_key_fn fn, void *ud)
{
    int rc = 0;
    for (size_t k = 0; rc == 0 && t->options && t->options[k].key; k++) {
        const struct conn_option *o = &t->options[k];
        if (o->flags & CONN_SECRET_MEMBERS)
            rc = secret_members(o, config, fn, ud);
        else if ((o->type == CONN_SECRET || o->type == CONN_FILE) &&
                 config_get(config, o->key))
            rc = fn(o->key, o->type == CONN_SECRET, ud);
    }
    return rc;
}

/* One secret being sealed at import. */
struct seal_job {
    struct wharf *w;
    struct store *st;
    struct store_flow *f;
    const char *conn;
    json_t *config;
    enum flow_origin origin;
    struct error *err;
};

/* Append (conn, key, blob) to f->secrets; the blob is taken. */
static int secret_append(struct store_flow *f, const char *conn,
                         const char *key, unsigned char *blob, size_t len,
                         struct error *err)
{
    struct store_secret *grown = realloc(f->secrets, (f->nsecrets + 1) *
                                         sizeof(*grown));
    if (grown == NULL) {
        free(blob);
        return error_set(err, "out of memory");
    }
    f->secrets = grown;
    struct store_secret *s = &f->secrets[f->nsecrets++];
    memset(s, 0, sizeof(*s));
    s->connector = strdup(conn);
    s->name = strdup(key);
    s->blob = blob;
    s->len = len;
    return (s->connector && s->name) ? 0 : error_set(err, "out of memory");
}

/* The plaintext of {"sealed": "CONN:KEY"}: the value this data dir holds. */
static struct secret *sealed_get(struct seal_job *j, const char *key,
                                 const char *ref)
{
    char conn[128];
    const char *colon = strchr(ref, ':');
    size_t n = colon ? (size_t)(colon - ref) : 0;
    unsigned char *blob = NULL;
    size_t len = 0;
    int found = 0;
    if (colon && n < sizeof(conn)) {
        memcpy(conn, ref, n);
        conn[n] = '\0';
        found = store_csecret_get(j->st, conn, colon + 1, &blob, &len, NULL,
                                  j->err);
    }
    if (found <= 0) {
        if (found == 0)
            error_set(j->err, "for %s, this data directory holds no sealed value "
                      "\"%s\" (flow export names the values of the data "
                      "directory it ran on): give the secret again", key, ref);
        return NULL;
    }
    char ctx[300];
    seal_context(ctx, sizeof(ctx), conn, colon + 1);
    struct secret *s = vault_unseal(j->w->vault, ctx, blob, len, j->err);
    free(blob);
    return s;
}

static int seal_key(const char *key, int secret, void *ud)
{
    struct seal_job *j = ud;
    json_t *v = config_get(j->config, key);
    json_t *content = json_is_string(v) && strncmp(key, "headers.", 8) == 0
                    ? json_pack("{s:O}", "content", v) : json_incref(v);
    const char *ref = flowfile_ref(content);
    struct secret *plain = ref ? sealed_get(j, key, ref)
                         : flowfile_read(key, content, j->origin, secret,
                                         SECRET_SEAL_MAX, j->err);
    json_decref(content);
    if (plain == NULL)
        return -1;
    char ctx[300], newref[300];
    seal_context(ctx, sizeof(ctx), j->conn, key);
    unsigned char *blob = NULL;
    size_t len = 0;
    int rc = vault_seal(j->w->vault, ctx, plain, &blob, &len, j->err);
    secret_free(plain);
    if (rc < 0 || secret_append(j->f, j->conn, key, blob, len, j->err) < 0)
        return -1;
    snprintf(newref, sizeof(newref), "%s:%s", j->conn, key);
    config_replace(j->config, key, flowfile_sealed(newref));
    return 0;
}

static int seal_connector(struct seal_job *j, struct store_connector *sc,
                          const struct connector_type *t)
{
    json_error_t je;
    j->conn = sc->name;
    j->config = json_loads(sc->config, 0, &je);
    if (j->config == NULL)
        return error_set(j->err, "config of '%s' is not JSON", sc->name);
    int rc = secret_keys(t, j->config, seal_key, j);
    char *text = rc == 0 ? json_dumps(j->config, JSON_COMPACT | JSON_SORT_KEYS)
                         : NULL;
    json_decref(j->config);
    if (rc != 0)
        return error_prefix(j->err, "connector '%s'", sc->name), -1;
    if (text == NULL)
        return error_set(j->err, "out of memory");
    free(sc->config);
    sc->config = text;
    return 0;
}

int connector_secrets_seal(struct wharf *w, struct store *st,
                           struct store_flow *f, enum flow_origin origin,
                           struct error *err)
{
    struct seal_job j = { .w = w, .st = st, .f = f, .origin = origin,
                          .err = err };
    for (size_t i = 0; i < f->nconns; i++) {
        const struct connector_type *t = connector_type_find(f->conns[i].type);
        if (t && seal_connector(&j, &f->conns[i], t) < 0)
            return -1;
    }
    return 0;
}

/* Unseal the row (conn, name) with the context of key: NULL with err when
 * absent or unopenable. */
static struct secret *unseal_row(struct wharf *w, struct store *st,
                                 const char *conn, const char *name,
                                 const char *key, int64_t *expires_at,
                                 int *found, struct error *err)
{
    unsigned char *blob = NULL;
    size_t len = 0;
    *found = store_csecret_get(st, conn, name, &blob, &len, expires_at, err);
    if (*found <= 0)
        return NULL;
    char ctx[300];
    seal_context(ctx, sizeof(ctx), conn, key);
    struct secret *s = vault_unseal(w->vault, ctx, blob, len, err);
    free(blob);
    return s;
}

struct load_job {
    struct connector *c;
    struct store *st;
    size_t cap;
    struct error *err;
};

static int load_key(const char *key, int secret, void *ud)
{
    (void)secret;
    struct load_job *j = ud;
    struct connector *c = j->c;
    if (c->nsecrets == j->cap) {
        size_t nc = j->cap ? j->cap * 2 : 8;
        void *p = realloc(c->secrets, nc * sizeof(*c->secrets));
        if (p == NULL)
            return error_set(j->err, "out of memory");
        c->secrets = p;
        j->cap = nc;
    }
    int found = 0;
    struct connector_secret_slot *slot = &c->secrets[c->nsecrets++];
    slot->key = strdup(key);
    slot->value = unseal_row(c->wharf, j->st, c->name, key, key, NULL, &found,
                             j->err);
    if (found == 0)
        return error_set(j->err, "secret %s is not in the vault: import the "
                         "flow again with the secret", key);
    return (slot->value == NULL || slot->key == NULL) ? -1 : 0;
}

int connector_secrets_load(struct connector *c, const json_t *config,
                           struct error *err)
{
    if (c->wharf == NULL)
        return 0;
    struct load_job j = { .c = c, .err = err };
    struct store *st = store_open(c->wharf->db_path, err);
    if (st == NULL)
        return -1;
    j.st = st;
    int rc = secret_keys(c->type, config, load_key, &j);
    store_close(st);
    return rc == 0 ? 0 : -1;
}

void connector_secrets_free(struct connector *c)
{
    for (size_t i = 0; i < c->nsecrets; i++) {
        free(c->secrets[i].key);
        secret_free(c->secrets[i].value);
    }
    free(c->secrets);
    c->secrets = NULL;
    c->nsecrets = 0;
}

const struct secret *connector_secret(const struct connector *c,
                                      const char *key)
{
    for (size_t i = 0; i < c->nsecrets; i++)
        if (strcmp(c->secrets[i].key, key) == 0)
            return c->secrets[i].value;
    return NULL;
}

int connector_secret_ok(const char *key, const json_t *v, int required,
                        struct error *err)
{
    return flowfile_check(key, v, required, 1, err);
}

int connector_secret_memfile(const struct secret *s, char *path, size_t n,
                             struct error *err)
{
    int fd = memfd_create("wharf-secret", MFD_CLOEXEC);
    if (fd < 0)
        return error_errno(err, errno, "cannot create an in-memory file");
    size_t off = 0, len = secret_len(s);
    while (off < len) {
        ssize_t w = write(fd, secret_data(s) + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return error_errno(err, errno, "cannot fill an in-memory file");
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1) {
        close(fd);
        return error_errno(err, errno, "cannot fill an in-memory file");
    }
    snprintf(path, n, "/proc/self/fd/%d", fd);
    return fd;
}

/* ---- state a connector obtains itself ------------------------------------ */

static void state_name(char *out, size_t n, const char *name)
{
    snprintf(out, n, "state:%s", name);
}

int connector_state_get(struct wharf *w, const char *conn, const char *name,
                        struct secret **out, int64_t *expires_at,
                        struct error *err)
{
    char row[128];
    state_name(row, sizeof(row), name);
    *out = NULL;
    struct store *st = wharf_store(w, err);
    if (st == NULL)
        return -1;
    int found = 0;
    *out = unseal_row(w, st, conn, row, row, expires_at, &found, err);
    if (found < 0 || (found == 1 && *out == NULL))
        return -1;
    return found;
}

int connector_state_put(struct wharf *w, const char *conn, const char *name,
                        const struct secret *value, int64_t expires_at,
                        struct error *err)
{
    char row[128], ctx[300];
    state_name(row, sizeof(row), name);
    seal_context(ctx, sizeof(ctx), conn, row);
    unsigned char *blob = NULL;
    size_t len = 0;
    if (vault_seal(w->vault, ctx, value, &blob, &len, err) < 0)
        return -1;
    struct store *st = wharf_store(w, err);
    int rc = st ? store_csecret_put(st, conn, row, blob, len, expires_at, err)
                : -1;
    free(blob);
    return rc;
}

int connector_state_drop(struct wharf *w, const char *conn, const char *name,
                         struct error *err)
{
    char row[128];
    state_name(row, sizeof(row), name);
    struct store *st = wharf_store(w, err);
    int rc = st ? store_csecret_del(st, conn, row, err) : -1;
    return rc;
}

int connector_state_names(struct wharf *w, const char *conn,
                          const char *prefix, char ***names, size_t *n,
                          struct error *err)
{
    char row[128];
    state_name(row, sizeof(row), prefix);
    struct store *st = wharf_store(w, err);
    if (st == NULL || store_csecret_names(st, conn, row, names, n, err) < 0)
        return -1;
    size_t skip = strlen("state:");
    for (size_t i = 0; i < *n; i++)      /* hand back names without "state:" */
        memmove((*names)[i], (*names)[i] + skip, strlen((*names)[i]) - skip + 1);
    return 0;
}
