/*
 * conn_secrets.c - the secrets of connectors, sealed by the vault (R15,
 * M5/M6: "secrets are given as files and stored by the vault"): core's
 * half of connectors/secrets.c.
 *
 * The keys that hold a secret or a public file are the connector type's
 * (connector_secret_keys walks its option table). Two moments:
 *
 *   import   connector_secrets_seal() reads each named file once and adds
 *            the sealed blob (context "connector:NAME:KEY") to the flow
 *            that store_flow_put writes in the same transaction. The file
 *            may be deleted afterwards; the config keeps a reference, so
 *            `flow export` prints references, never a secret. A reference
 *            to a private key (CONN_PRIVATE_KEY) keeps the connector's own
 *            sealed row as it is (it never opens outside the vault).
 *   open     connector_secrets_load() unseals every secret the config
 *            names into the connector (connector_secret_add), before the
 *            type's open(); a secret missing from the store is an error
 *            that says to import the flow again. open() never reads a
 *            secret file. A private key (CONN_PRIVATE_KEY: an http client
 *            certificate key, an SFTP connector's SSH key with its
 *            passphrase) is not unsealed: its sealed blob goes to the
 *            vault, which opens it into its key table (the key process's
 *            under serve) and gives a handle key (connector_key_add) or an
 *            SSH signer (connector_ssh_key_add).
 * What a connector obtains at run time (OAuth tokens) is its state
 * (core/env.c: "state:NAME" rows of the same table, sealed the same way).
 *
 * Owns nothing beyond a call. It must never log, print or put into an
 * error message a byte of a secret.
 */
#include "core/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/connector.h"
#include "core/flowfile.h"
#include "core/wharf.h"
#include "net/ssh_agent.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/keyop.h"
#include "vault/vault.h"

void connector_seal_context(char *out, size_t n, const char *conn,
                            const char *key)
{
    snprintf(out, n, "connector:%s:%s", conn, key);
}

/* Replace the value at key (present) with value (stolen). */
static void config_replace(json_t *config, const char *key, json_t *value)
{
    json_t *parent;
    const char *leaf;
    if (connector_config_member(config, key, &parent, &leaf))
        json_object_set_new(parent, leaf, value);
    else
        json_decref(value);
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
    connector_seal_context(ctx, sizeof(ctx), conn, colon + 1);
    struct secret *s = vault_unseal(j->w->vault, ctx, blob, len, j->err);
    free(blob);
    return s;
}

/* {"sealed": "CONN:KEY"} of a private key (CONN_KEY_PRIVATE): it is
 * never opened outside the vault's key table (the key process refuses to
 * unseal it), so only this connector's own sealed key is kept, as it is. */
static int sealed_keep(struct seal_job *j, const char *key, const char *ref)
{
    char self[300];
    snprintf(self, sizeof(self), "%s:%s", j->conn, key);
    if (strcmp(ref, self) != 0)
        return error_set(j->err, "for %s, \"%s\" is another connector's "
                         "private key, which is never unsealed to be copied: "
                         "give the key file again", key, ref);
    unsigned char *blob = NULL;
    size_t len = 0;
    int found = store_csecret_get(j->st, j->conn, key, &blob, &len, NULL,
                                  j->err);
    if (found == 0)
        error_set(j->err, "for %s, this data directory holds no sealed value "
                  "\"%s\": give the key file again", key, ref);
    if (found <= 0)
        return -1;
    if (secret_append(j->f, j->conn, key, blob, len, j->err) < 0)
        return -1;
    config_replace(j->config, key, flowfile_sealed(self));
    return 0;
}

static int seal_key(const char *key, int secret, void *ud)
{
    struct seal_job *j = ud;
    json_t *parent;
    const char *leaf;
    json_t *v = connector_config_member(j->config, key, &parent, &leaf);
    json_t *content = json_is_string(v) && strncmp(key, "headers.", 8) == 0
                    ? json_pack("{s:O}", "content", v) : json_incref(v);
    const char *ref = flowfile_ref(content);
    if (ref && secret == CONN_KEY_PRIVATE) {
        int rc = sealed_keep(j, key, ref);
        json_decref(content);
        return rc;
    }
    struct secret *plain = ref ? sealed_get(j, key, ref)
                         : flowfile_read(key, content, j->origin, secret,
                                         SECRET_SEAL_MAX, j->err);
    json_decref(content);
    if (plain == NULL)
        return -1;
    char ctx[300], newref[300];
    connector_seal_context(ctx, sizeof(ctx), j->conn, key);
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
    int rc = connector_secret_keys(t, j->config, seal_key, j);
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

/* ---- open ------------------------------------------------------------------ */

struct load_job {
    struct connector *c;
    struct wharf *w;
    struct store *st;
    struct error *err;
};

/* vault_ssh_key as a net_ssh_signer (net/ssh_agent.h). */
static int ssh_sign(void *ctx, uint32_t flags, const unsigned char *data,
                    size_t n, unsigned char **sig, size_t *siglen,
                    struct error *err)
{
    return vault_ssh_sign(ctx, flags, data, n, sig, siglen, err);
}

static void ssh_release(void *ctx)
{
    vault_ssh_key_free(ctx);
}

/* The SSH user key of an SFTP connector ("key_file", blob taken) with its
 * passphrase ("key_passphrase_file", when sealed too): both go to the
 * vault, which gives a signer. */
static int load_ssh(struct load_job *j, const char *key, unsigned char *blob,
                    size_t len)
{
    unsigned char *pass = NULL;
    size_t plen = 0;
    int rc = store_csecret_get(j->st, j->c->name, "key_passphrase_file",
                               &pass, &plen, NULL, j->err) < 0 ? -1 : 0;
    struct vault_ssh_key *k = rc == 0
        ? vault_ssh_key(j->w->vault, j->c->name, blob, len, pass, plen,
                        j->err) : NULL;
    free(blob);
    free(pass);
    struct net_ssh_signer *s = k ? calloc(1, sizeof(*s)) : NULL;
    if (s == NULL) {
        vault_ssh_key_free(k);
        return k ? error_set(j->err, "out of memory") : -1;
    }
    s->pub = vault_ssh_key_public(k, &s->publen);
    s->sign = ssh_sign;
    s->release = ssh_release;
    s->ctx = k;
    return connector_ssh_key_add(j->c, key, s, j->err);
}

/* A private key option: a handle key or an SSH signer from the vault (the
 * sealed blob is taken). A passphrase goes with its key. */
static int load_private(struct load_job *j, const char *key,
                        unsigned char *blob, size_t len)
{
    if (strcmp(key, "key_passphrase_file") == 0) {
        free(blob);
        return 0;                   /* load_ssh takes it with key_file */
    }
    if (strcmp(key, "key_file") == 0)
        return load_ssh(j, key, blob, len);
    if (strcmp(key, "auth.key") != 0) {
        free(blob);
        return error_set(j->err, "%s: only auth.key and key_file open as "
                         "private keys", key);
    }
    EVP_PKEY *k = vault_client_key(j->w->vault, j->c->name, blob, len,
                                   j->err);
    free(blob);
    if (k == NULL)
        return -1;
    return connector_key_add(j->c, key, k, j->err);
}

static int load_key(const char *key, int secret, void *ud)
{
    struct load_job *j = ud;
    unsigned char *blob = NULL;
    size_t len = 0;
    int found = store_csecret_get(j->st, j->c->name, key, &blob, &len, NULL,
                                  j->err);
    if (found == 0)
        return error_set(j->err, "secret %s is not in the vault: import the "
                         "flow again with the secret", key);
    if (found < 0)
        return -1;
    if (secret == CONN_KEY_PRIVATE)
        return load_private(j, key, blob, len);
    char ctx[300];
    connector_seal_context(ctx, sizeof(ctx), j->c->name, key);
    struct secret *s = vault_unseal(j->w->vault, ctx, blob, len, j->err);
    free(blob);
    if (s == NULL)
        return -1;
    return connector_secret_add(j->c, key, s, j->err);
}

int connector_secrets_load(struct connector *c, const json_t *config,
                           struct error *err)
{
    struct wharf *w = c->env ? conn_env_wharf(c->env) : NULL;
    if (w == NULL)
        return 0;       /* a check without a data dir (tests) */
    struct load_job j = { .c = c, .w = w, .err = err };
    j.st = wharf_store(w, err);
    if (j.st == NULL)
        return -1;
    return connector_secret_keys(c->type, config, load_key, &j) == 0 ? 0 : -1;
}
