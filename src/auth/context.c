/*
 * context.c - what the files of src/auth/ share: the struct auth context
 * (clock, session timeouts from settings), audit entries, hashing of
 * secrets, random tokens, boolean settings and the R4 switch of allowed
 * authentication forms.
 *
 * Must never: put a secret's bytes anywhere but another struct secret or a
 * hash function; write a secret to the audit trail or the log.
 */
#include "auth/auth_internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "store/store.h"
#include "util/log.h"
#include "util/secret.h"

void auth_init(struct auth *a, struct store *st, struct vault *v)
{
    memset(a, 0, sizeof(*a));
    a->st = st;
    a->vault = v;
    a->idle_ms = AUTH_IDLE_DEFAULT_MS;
    a->absolute_ms = AUTH_ABSOLUTE_DEFAULT_MS;
    a->throttle_after = AUTH_THROTTLE_AFTER;
    a->throttle_window_ms = AUTH_THROTTLE_WINDOW_MS;
    a->throttle_lock_ms = AUTH_THROTTLE_LOCK_MS;
}

int64_t auth_now(const struct auth *a)
{
    return a->now_ms > 0 ? a->now_ms : time_now_ms();
}

/* A setting in minutes within [1, max]; absent leaves *ms alone. */
static int minutes_setting(struct store *st, const char *key, long max,
                           int64_t *ms, struct error *err)
{
    char *v = NULL;
    if (store_setting_get(st, key, &v, err) < 0)
        return AUTH_ERROR;
    if (v == NULL)
        return AUTH_OK;
    char *end;
    long m = strtol(v, &end, 10);
    int bad = end == v || *end != '\0' || m < 1 || m > max;
    free(v);
    if (bad)
        return error_set(err, "setting %s must be a whole number of minutes "
                         "from 1 to %ld", key, max), AUTH_INVALID;
    *ms = (int64_t)m * 60000;
    return AUTH_OK;
}

int auth_load_settings(struct auth *a, struct error *err)
{
    int rc = minutes_setting(a->st, "session_idle_minutes", 24 * 60,
                             &a->idle_ms, err);
    if (rc == AUTH_OK)
        rc = minutes_setting(a->st, "session_absolute_minutes", 30 * 24 * 60,
                             &a->absolute_ms, err);
    return rc;
}

int auth_setting_bool(struct store *st, const char *key, int dflt,
                      int unreadable, struct error *err)
{
    char *v = NULL;
    if (store_setting_get(st, key, &v, err) < 0)
        return -1;
    if (v == NULL)
        return dflt;
    int r = unreadable;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcasecmp(v, "on") || !strcmp(v, "1"))
        r = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off") || !strcmp(v, "0"))
        r = 0;
    free(v);
    return r;
}

int auth_form_allowed(struct store *st, const char *form, struct error *err)
{
    char *v = NULL;
    if (store_setting_get(st, "auth_forms", &v, err) < 0)
        return -1;
    if (v == NULL)
        return 1;
    int found = 0;
    size_t n = strlen(form);
    for (char *p = v; *p && !found;) {
        p += strspn(p, " ,");
        size_t k = strcspn(p, " ,");
        found = k == n && strncmp(p, form, n) == 0;
        p += k;
    }
    free(v);
    return found;
}

int auth_audit(struct auth *a, const struct auth_actor *who,
               const char *action, const char *target, const char *detail,
               struct error *err)
{
    struct audit_event e = {
        .actor = who && who->name ? who->name : "system",
        .address = who ? who->address : NULL,
        .action = action,
        .target = target,
        .detail = detail,
    };
    log_info("%s %s by %s%s%s", action, target ? target : "-", e.actor,
             e.address ? " from " : "", e.address ? e.address : "");
    return audit_append(a->st, a->vault, &e, err) < 0 ? AUTH_ERROR : AUTH_OK;
}

void auth_sha256_hex(const void *p, size_t n, char out[STORE_HASH_HEX + 1])
{
    static const char HEX[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(p, n, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = HEX[md[i] >> 4];
        out[2 * i + 1] = HEX[md[i] & 15];
    }
    out[STORE_HASH_HEX] = '\0';
}

void auth_secret_hash(const struct secret *s, char out[STORE_HASH_HEX + 1])
{
    auth_sha256_hex(secret_data(s), secret_len(s), out);
}

/* Unpadded base64url of raw into a new secret after prefix. */
static struct secret *b64url(const char *prefix, const struct secret *raw)
{
    size_t plen = strlen(prefix), n = secret_len(raw);
    struct secret *tmp = secret_new(plen + 4 * ((n + 2) / 3) + 1);
    if (tmp == NULL)
        return NULL;
    unsigned char *t = secret_data_mut(tmp);
    memcpy(t, prefix, plen);
    int k = EVP_EncodeBlock(t + plen, secret_data(raw), (int)n);
    while (k > 0 && t[plen + (size_t)k - 1] == '=')
        k--;
    for (int i = 0; i < k; i++)
        t[plen + (size_t)i] = t[plen + (size_t)i] == '+' ? '-'
                            : t[plen + (size_t)i] == '/' ? '_'
                            : t[plen + (size_t)i];
    struct secret *out = secret_from(t, plen + (size_t)k);
    secret_free(tmp);
    return out;
}

struct secret *auth_random_token(const char *prefix, size_t nbytes,
                                 struct error *err)
{
    struct secret *raw = secret_new(nbytes), *out = NULL;
    if (raw == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    if (RAND_bytes(secret_data_mut(raw), (int)nbytes) != 1)
        error_openssl(err, "random bytes");
    else if ((out = b64url(prefix, raw)) == NULL)
        error_set(err, "out of memory");
    secret_free(raw);
    return out;
}

int auth_user_load(struct auth *a, const char *name, struct store_user *out,
                   struct error *err)
{
    if (!auth_name_valid(name)) {
        memset(out, 0, sizeof(*out));
        return error_set(err, "no such user (user names are 1 to 64 of "
                         "a-z 0-9 . _ -)"), AUTH_NOT_FOUND;
    }
    int rc = store_user_get_by_name(a->st, name, out, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1)
        return error_set(err, "no such user: %s", name), AUTH_NOT_FOUND;
    return AUTH_OK;
}

int auth_user_get(struct auth *a, const char *name, struct store_user *out,
                  struct error *err)
{
    return auth_user_load(a, name, out, err);
}

void auth_principal_deny(struct auth_principal *p)
{
    memset(p, 0, sizeof(*p));
    p->role = ROLE_COUNT;
}

void auth_principal_user(struct auth_principal *p, const struct store_user *u)
{
    p->user_id = u->id;
    snprintf(p->user, sizeof(p->user), "%s", u->name ? u->name : "");
    snprintf(p->name, sizeof(p->name), "%s", u->name ? u->name : "");
    snprintf(p->actor, sizeof(p->actor), "user:%s", p->name);
    if (u->role == NULL || rbac_role_parse(u->role, &p->role) < 0)
        p->role = ROLE_COUNT;       /* unknown: rbac_allows denies all */
    p->must_change = u->must_change;
}

bool auth_principal_limited(const struct auth_principal *p)
{
    if (p->kind == AUTH_KIND_TOKEN)
        return false;
    return p->must_change || (p->mfa_required && !p->mfa_done);
}
