/*
 * secrets.c - the secrets a connector holds once opened (R15, M5/M6:
 * "secrets are given as files and stored by the vault"), and which keys
 * of a config hold one.
 *
 * A connector type declares, in its option table (connector.h), the config
 * keys that give a secret (CONN_SECRET: "password_file", "auth.token_file",
 * "proxy.credentials_file", ...; a dot walks into a nested object) or a
 * public file (CONN_FILE), and maps whose credential-named members are
 * secrets (CONN_SECRET_MEMBERS). connector_secret_keys() walks them: core
 * seals each at flow import and unseals each into the connector's slots
 * (connector_secret_add) before open() (core/conn_secrets.c); open() reads
 * them with connector_secret(). A CONN_PRIVATE_KEY secret (an http client
 * certificate key, an SFTP connector's SSH key and its passphrase) is
 * never unsealed here: core asks the vault for a handle key
 * (connector_key_add; open() reads it with connector_key()) or an SSH
 * signer (connector_ssh_key_add; connector_ssh_key()).
 *
 * Owns the unsealed copies and handle keys hanging off a connector (freed
 * by connector_secrets_free) and nothing else. It must never log, print or
 * put into an error message a byte of a secret; it never reaches the store
 * or the vault (core does).
 */
#include "connectors/connector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "net/ssh_agent.h"
#include "util/secret.h"

struct connector_secret_slot {
    char *key;
    struct secret *value;       /* or NULL for a handle key: */
    EVP_PKEY *pkey;
    struct net_ssh_signer *ssh; /* or an SSH user key */
};

json_t *connector_config_member(const json_t *config, const char *key,
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
    return connector_config_member(config, key, &parent, &leaf);
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

static int secret_members(const struct conn_option *o, const json_t *config,
                          connector_secret_key_fn fn, void *ud)
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

int connector_secret_keys(const struct connector_type *t, const json_t *config,
                          connector_secret_key_fn fn, void *ud)
{
    int rc = 0;
    for (size_t k = 0; rc == 0 && t->options && t->options[k].key; k++) {
        const struct conn_option *o = &t->options[k];
        if (o->flags & CONN_SECRET_MEMBERS)
            rc = secret_members(o, config, fn, ud);
        else if ((o->type == CONN_SECRET || o->type == CONN_FILE) &&
                 config_get(config, o->key))
            rc = fn(o->key, o->type != CONN_SECRET ? 0
                    : (o->flags & CONN_PRIVATE_KEY) ? CONN_KEY_PRIVATE
                    : CONN_KEY_SECRET, ud);
    }
    return rc;
}

static void ssh_key_free(struct net_ssh_signer *s)
{
    if (s != NULL && s->release != NULL)
        s->release(s->ctx);
    free(s);
}

/* Add a slot for key holding value, pkey or ssh (taken, also on
 * failure). */
static int slot_add(struct connector *c, const char *key,
                    struct secret *value, EVP_PKEY *pkey,
                    struct net_ssh_signer *ssh, struct error *err)
{
    struct connector_secret_slot *grown = realloc(c->secrets,
                                                  (c->nsecrets + 1) *
                                                  sizeof(*grown));
    char *k = strdup(key);
    if (grown == NULL || k == NULL) {
        if (grown)
            c->secrets = grown;
        free(k);
        secret_free(value);
        EVP_PKEY_free(pkey);
        ssh_key_free(ssh);
        return error_set(err, "out of memory");
    }
    c->secrets = grown;
    c->secrets[c->nsecrets].key = k;
    c->secrets[c->nsecrets].value = value;
    c->secrets[c->nsecrets].pkey = pkey;
    c->secrets[c->nsecrets].ssh = ssh;
    c->nsecrets++;
    return 0;
}

int connector_secret_add(struct connector *c, const char *key,
                         struct secret *value, struct error *err)
{
    return slot_add(c, key, value, NULL, NULL, err);
}

int connector_key_add(struct connector *c, const char *key, EVP_PKEY *pkey,
                      struct error *err)
{
    return slot_add(c, key, NULL, pkey, NULL, err);
}

int connector_ssh_key_add(struct connector *c, const char *key,
                          struct net_ssh_signer *s, struct error *err)
{
    return slot_add(c, key, NULL, NULL, s, err);
}

void connector_secrets_free(struct connector *c)
{
    for (size_t i = 0; i < c->nsecrets; i++) {
        free(c->secrets[i].key);
        secret_free(c->secrets[i].value);
        EVP_PKEY_free(c->secrets[i].pkey);
        ssh_key_free(c->secrets[i].ssh);
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

EVP_PKEY *connector_key(const struct connector *c, const char *key)
{
    for (size_t i = 0; i < c->nsecrets; i++)
        if (strcmp(c->secrets[i].key, key) == 0)
            return c->secrets[i].pkey;
    return NULL;
}

const struct net_ssh_signer *connector_ssh_key(const struct connector *c,
                                               const char *key)
{
    for (size_t i = 0; i < c->nsecrets; i++)
        if (strcmp(c->secrets[i].key, key) == 0)
            return c->secrets[i].ssh;
    return NULL;
}

int connector_secret_ok(const char *key, const json_t *v, int required,
                        struct error *err)
{
    return flowfile_check(key, v, required, 1, err);
}
