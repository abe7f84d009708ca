/*
 * profile.c - the runtime view of the AS2 profile and partners: reads the
 * rows that flow import (core/partners.c) wrote, decodes certificates and
 * gets the profile's private keys from the vault as handle keys
 * (vault/keyop.h), and picks the key or certificate to use at a given time
 * (rollover). See profile.h.
 *
 * Owns the structures it fills until profile_clear / partner_clear. It
 * must never see a private key: the sealed key goes to the vault, which
 * keeps it and answers with a handle key (public half + reference).
 */
#include "core/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/wharf.h"
#include "store/partner_store.h"
#include "store/store.h"
#include "util/secret.h"
#include "vault/keyop.h"
#include "vault/vault.h"

static X509 *der_cert(const struct store_cert *c)
{
    const unsigned char *p = c->der;
    return d2i_X509(NULL, &p, (long)c->der_len);
}

/* The certificate's private key as a vault handle key: the vault (the
 * key process under serve) opens the sealed key; we get the public half
 * and a handle. */
static EVP_PKEY *unseal_key(struct wharf *w, const struct store_cert *c,
                            struct error *err)
{
    char ctx[100];
    snprintf(ctx, sizeof(ctx), "profile-key:%s", c->id);
    EVP_PKEY *k = vault_key_load(w->vault, ctx, c->key, c->key_len, err);
    if (k == NULL)
        error_prefix(err, "the sealed key of certificate %.16s", c->id);
    return k;
}

/* The profile JSON's as2_id, malloc'ed; NULL if none or on error. */
static char *profile_id(struct store *st, int *none, struct error *err)
{
    struct store_flow f;
    *none = 0;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    char *id = NULL;
    json_error_t je;
    json_t *j = f.profile ? json_loads(f.profile, 0, &je) : NULL;
    if (j == NULL)
        *none = f.profile == NULL;
    else if ((id = strdup(json_string_value(json_object_get(j, "as2_id"))
                          ?: "")) == NULL)
        error_set(err, "out of memory");
    json_decref(j);
    store_flow_clear(&f);
    return id;
}

int profile_load(struct wharf *w, struct store *st, struct profile *out,
                 struct error *err)
{
    memset(out, 0, sizeof(*out));
    int none = 0;
    if ((out->as2_id = profile_id(st, &none, err)) == NULL)
        return none ? 0 : -1;
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, "", 1, &c, &n, err) < 0) {
        profile_clear(out);
        return -1;
    }
    out->keys = calloc(n + 1, sizeof(*out->keys));
    int rc = out->keys ? 1 : error_set(err, "out of memory");
    for (size_t i = 0; rc == 1 && i < n; i++) {
        struct profile_key *k = &out->keys[out->nkeys];
        k->cert = der_cert(&c[i]);
        k->key = c[i].key ? unseal_key(w, &c[i], err) : NULL;
        k->not_before = c[i].not_before;
        k->not_after = c[i].not_after;
        out->nkeys++;
        if (k->cert == NULL || k->key == NULL)
            rc = k->cert ? -1 : error_set(err, "stored certificate %.16s "
                                          "cannot be read", c[i].id);
    }
    store_certs_free(c, n);
    if (rc < 0)
        profile_clear(out);
    return rc;
}

void profile_clear(struct profile *p)
{
    for (size_t i = 0; p->keys && i < p->nkeys; i++) {
        EVP_PKEY_free(p->keys[i].key);
        X509_free(p->keys[i].cert);
    }
    free(p->keys);
    free(p->as2_id);
    memset(p, 0, sizeof(*p));
}

const struct profile_key *profile_sign_key(const struct profile *p,
                                           int64_t now_ms)
{
    const struct profile_key *best = NULL;
    for (size_t i = 0; i < p->nkeys; i++) {
        const struct profile_key *k = &p->keys[i];
        if (k->not_before <= now_ms && now_ms <= k->not_after &&
            (best == NULL || k->not_after >= best->not_after))
            best = k;
    }
    return best;
}

/* ---- partners ---------------------------------------------------------------- */

static int partner_fill(struct store *st, const struct store_partner *sp,
                        struct partner *out, struct error *err)
{
    json_error_t je;
    out->name = strdup(sp->name);
    out->as2_id = strdup(sp->as2_id);
    out->config = json_loads(sp->config, 0, &je);
    const char *url = json_string_value(json_object_get(out->config, "url"));
    out->url = url ? strdup(url) : NULL;
    if (!out->name || !out->as2_id || !out->config || !out->url)
        return error_set(err, "partner '%s' cannot be read", sp->name);
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, sp->name, 0, &c, &n, err) < 0)
        return -1;
    out->certs = calloc(n + 1, sizeof(*out->certs));
    int rc = out->certs ? 0 : error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct partner_cert *pc = &out->certs[out->ncerts++];
        pc->cert = der_cert(&c[i]);
        pc->not_before = c[i].not_before;
        pc->not_after = c[i].not_after;
        pc->use_from = c[i].use_from;
        if (pc->cert == NULL)
            rc = error_set(err, "stored certificate %.16s cannot be read",
                           c[i].id);
    }
    store_certs_free(c, n);
    return rc;
}

int partner_load(struct store *st, const char *name, int by_as2_id,
                 struct partner *out, struct error *err)
{
    memset(out, 0, sizeof(*out));
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < f.npartners && rc == 0; i++) {
        const char *key = by_as2_id ? f.partners[i].as2_id : f.partners[i].name;
        if (strcmp(key, name) == 0)
            rc = partner_fill(st, &f.partners[i], out, err) < 0 ? -1 : 1;
    }
    store_flow_clear(&f);
    if (rc < 0)
        partner_clear(out);
    return rc;
}

void partner_clear(struct partner *p)
{
    for (size_t i = 0; p->certs && i < p->ncerts; i++)
        X509_free(p->certs[i].cert);
    free(p->certs);
    free(p->name);
    free(p->as2_id);
    free(p->url);
    json_decref(p->config);
    memset(p, 0, sizeof(*p));
}

X509 *partner_send_cert(const struct partner *p, int64_t now_ms)
{
    const struct partner_cert *best = NULL;
    for (size_t i = 0; i < p->ncerts; i++) {
        const struct partner_cert *c = &p->certs[i];
        if (c->use_from > now_ms || now_ms > c->not_after ||
            now_ms < c->not_before)
            continue;
        if (best == NULL || c->use_from > best->use_from ||
            (c->use_from == best->use_from && c->not_after > best->not_after))
            best = c;
    }
    return best ? best->cert : NULL;
}

const char *partner_str(const struct partner *p, const char *key,
                        const char *def)
{
    const char *v = json_string_value(json_object_get(p->config, key));
    return v ? v : def;
}

int partner_bool(const struct partner *p, const char *key, int def)
{
    const json_t *v = json_object_get(p->config, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

long long partner_int(const struct partner *p, const char *key,
                      long long def)
{
    const json_t *v = json_object_get(p->config, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}
