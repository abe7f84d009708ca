/*
 * secrets.c - the secrets of connectors, sealed by the vault (R15, M5/M6:
 * "secrets are given as files and stored by the vault").
 *
 * A connector type lists, in connector_type.secrets, the config keys that
 * name a secret file ("password_file", "auth.token_file", "proxy.
 * credentials_file", ...; a dot walks into a nested object). Three moments:
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

#include "core/wharf.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/vault.h"

struct connector_secret_slot {
    char *key;
    struct secret *value;
};

/* The string at dotted path key ("auth.password_file") in config, or NULL. */
static const char *config_path(const json_t *config, const char *key)
{
    char part[64];
    const json_t *v = config;
    const char *p = key;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part) || !json_is_object(v))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        if (dot == NULL)
            return json_is_string(v) ? json_string_value(v) : NULL;
        p = dot + 1;
    }
}

static void seal_context(char *out, size_t n, const char *conn, const char *key)
{
    snprintf(out, n, "connector:%s:%s", conn, key);
}

/* Read, seal and append one secret file to f->secrets. */
static int seal_one(struct vault *v, struct store_flow *f, const char *conn,
                    const char *key, const char *path, struct error *err)
{
    struct secret *plain = secret_from_file(path, err);
    if (plain == NULL)
        return -1;
    char ctx[300];
    seal_context(ctx, sizeof(ctx), conn, key);
    unsigned char *blob = NULL;
    size_t len = 0;
    int rc = vault_seal(v, ctx, plain, &blob, &len, err);
    secret_free(plain);
    if (rc < 0)
        return -1;
    struct store_secret *grown = realloc(f->secrets, (f->nsecrets + 1) *
                                         sizeof(*grown));
    if (grown == NULL) {
        free(blob);
        return error_set(err, "out of memory");
    }
    f->secrets = grown;
    struct store_secret *s = &f->secrets[f->nsecrets];
    memset(s, 0, sizeof(*s));
    s->connector = strdup(conn);
    s->name = strdup(key);
    s->blob = blob;
    s->len = len;
    f->nsecrets++;
    if (s->connector == NULL || s->name == NULL)
        return error_set(err, "out of memory");
    return 0;
}

int connector_secrets_seal(struct wharf *w, struct store_flow *f,
                           struct error *err)
{
    for (size_t i = 0; i < f->nconns; i++) {
        const struct store_connector *sc = &f->conns[i];
        const struct connector_type *t = connector_type_find(sc->type);
        if (t == NULL || t->secrets == NULL)
            continue;
        json_error_t je;
        json_t *cfg = json_loads(sc->config, 0, &je);
        int rc = cfg ? 0 : error_set(err, "config of '%s' is not JSON",
                                     sc->name);
        for (size_t k = 0; rc == 0 && t->secrets[k]; k++) {
            const char *path = config_path(cfg, t->secrets[k]);
            if (path && seal_one(w->vault, f, sc->name, t->secrets[k], path,
                                 err) < 0) {
                error_prefix(err, "connector '%s': %s", sc->name,
                             t->secrets[k]);
                rc = -1;
            }
        }
        json_decref(cfg);
        if (rc < 0)
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

int connector_secrets_load(struct connector *c, const json_t *config,
                           struct error *err)
{
    const char *const *keys = c->type->secrets;
    size_t n = 0;
    while (keys && keys[n])
        n++;
    if (n == 0 || c->wharf == NULL)
        return 0;
    c->secrets = calloc(n, sizeof(*c->secrets));
    struct store *st = c->secrets ? store_open(c->wharf->db_path, err) : NULL;
    if (st == NULL)
        return c->secrets ? -1 : error_set(err, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (config_path(config, keys[i]) == NULL)
            continue;
        int found = 0;
        struct connector_secret_slot *slot = &c->secrets[c->nsecrets];
        slot->value = unseal_row(c->wharf, st, c->name, keys[i], keys[i],
                                 NULL, &found, err);
        slot->key = strdup(keys[i]);
        c->nsecrets++;
        if (found == 0)
            rc = error_set(err, "secret %s is not in the vault: import the "
                           "flow again (it reads the file then)", keys[i]);
        else if (slot->value == NULL || slot->key == NULL)
            rc = -1;
    }
    store_close(st);
    return rc;
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

int connector_secret_ok(const char *key, const char *path, int required,
                        struct error *err)
{
    if (path == NULL)
        return required ? error_set(err, "needs %s", key) : 0;
    if (path[0] != '/')
        return error_set(err, "%s must be an absolute path, not '%s'", key,
                         path);
    return 0;
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
