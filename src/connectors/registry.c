/*
 * registry.c - the list of connector types and what all connectors share.
 *
 * Adding a connector type is one line in TYPES below. Keys common to every
 * connector's config are handled here, so types never see them:
 *   "log_level": "error".."trace"   per-connector verbosity (R5)
 *   "poll_ms":   sources: poll interval
 *   "retry":     {"max_attempts": N, "initial_ms": N, "max_ms": N}
 */
#include "connectors/connector.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/wharf.h"
#include "util/confine.h"

extern const struct connector_type connector_file;
extern const struct connector_type connector_sftp;
extern const struct connector_type connector_http;
extern const struct connector_type connector_webhook;
extern const struct connector_type connector_as2;

static const struct connector_type *const TYPES[] = {
    &connector_file,
    &connector_sftp,
    &connector_http,
    &connector_webhook,
    &connector_as2,
};
#define NTYPES (sizeof(TYPES) / sizeof(TYPES[0]))

static const char *const COMMON_KEYS[] = { "log_level", "poll_ms", "retry" };

const struct connector_type *connector_type_find(const char *name)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(TYPES[i]->name, name) == 0)
            return TYPES[i];
    return NULL;
}

size_t connector_types(const struct connector_type *const **out)
{
    *out = TYPES;
    return NTYPES;
}

const char *connector_type_names(void)
{
    return "file, sftp, http, webhook, as2";
}

static int json_int_in(const json_t *v, long long min, long long max,
                       long long *out)
{
    if (!json_is_integer(v))
        return -1;
    long long x = json_integer_value(v);
    if (x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

static int retry_parse(const json_t *r, struct retry_policy *p,
                       struct error *err)
{
    p->max_attempts = 10;
    p->initial_ms = 1000;
    p->max_ms = 600000;
    if (r == NULL)
        return 0;
    json_t *ma = NULL, *im = NULL, *mx = NULL;
    json_error_t je;
    long long x;
    if (json_unpack_ex((json_t *)r, &je, JSON_STRICT, "{s?o, s?o, s?o}",
                       "max_attempts", &ma, "initial_ms", &im, "max_ms",
                       &mx) < 0)
        return error_set(err, "retry: %s", je.text);
    if (ma && json_int_in(ma, 1, 1000, &x) < 0)
        return error_set(err, "retry.max_attempts must be 1..1000");
    if (ma) p->max_attempts = (int)x;
    if (im && json_int_in(im, 1, 86400000, &x) < 0)
        return error_set(err, "retry.initial_ms must be 1..86400000");
    if (im) p->initial_ms = x;
    if (mx && json_int_in(mx, 1, 7 * 86400000LL, &x) < 0)
        return error_set(err, "retry.max_ms must be 1..604800000");
    if (mx) p->max_ms = x;
    if (p->max_ms < p->initial_ms)
        p->max_ms = p->initial_ms;
    return 0;
}

/* Parse the common keys of config into c (c may be a scratch struct). */
static int common_parse(const json_t *config, struct connector *c,
                        struct error *err)
{
    const json_t *lv = json_object_get(config, "log_level");
    const json_t *pm = json_object_get(config, "poll_ms");
    long long x;
    c->log_level = -1;
    c->poll_ms = 0;
    if (lv) {
        enum log_level l;
        if (!json_is_string(lv) || log_level_parse(json_string_value(lv), &l) < 0)
            return error_set(err, "log_level must be error, warning, info, "
                             "debug or trace");
        c->log_level = (int)l;
    }
    if (pm) {
        if (json_int_in(pm, 10, 3600000, &x) < 0)
            return error_set(err, "poll_ms must be 10..3600000");
        c->poll_ms = x;
    }
    return retry_parse(json_object_get(config, "retry"), &c->retry, err);
}

/* A copy of config without the common keys. Caller decrefs. */
static json_t *type_config(const json_t *config)
{
    json_t *copy = json_copy((json_t *)config);
    for (size_t i = 0; copy && i < sizeof(COMMON_KEYS) / sizeof(*COMMON_KEYS); i++)
        json_object_del(copy, COMMON_KEYS[i]);
    return copy;
}

/* Every folder key of t that config names must be allowed (confine.h). */
static int folders_check(const struct connector_type *t, const json_t *config,
                         struct error *err)
{
    for (size_t i = 0; t->folders && t->folders[i]; i++) {
        const json_t *v = json_object_get(config, t->folders[i]);
        if (v == NULL)
            continue;
        if (!json_is_string(v))
            return error_set(err, "%s must be a string", t->folders[i]);
        if (confine_check(t->folders[i], json_string_value(v), err) < 0)
            return -1;
    }
    return 0;
}

int connector_check(const char *name, const char *type, const json_t *config,
                    struct error *err)
{
    const struct connector_type *t = connector_type_find(type);
    if (t == NULL)
        return error_set(err, "connector '%s': unknown type '%s' (known: %s)",
                         name, type, connector_type_names());
    if (!json_is_object(config))
        return error_set(err, "connector '%s': config must be an object", name);
    struct connector scratch;
    memset(&scratch, 0, sizeof(scratch));
    json_t *own = type_config(config);
    int rc = common_parse(config, &scratch, err);
    if (rc == 0 && own)
        rc = folders_check(t, own, err);
    if (rc == 0)
        rc = own ? t->check(own, err) : error_set(err, "out of memory");
    json_decref(own);
    if (rc < 0)
        error_prefix(err, "connector '%s' (%s)", name, type);
    return rc;
}

struct connector *connector_new(struct wharf *w, const char *name,
                                const char *type, json_t *config,
                                struct error *err)
{
    if (connector_check(name, type, config, err) < 0)
        return NULL;
    struct connector *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->name = strdup(name)) == NULL) {
        free(c);
        error_set(err, "out of memory");
        return NULL;
    }
    c->type = connector_type_find(type);
    c->wharf = w;
    common_parse(config, c, err);
    if (c->poll_ms == 0)
        c->poll_ms = w ? w->conf.poll_ms : 1000;
    c->config = type_config(config);
    if (connector_secrets_load(c, c->config, err) < 0 ||
        c->type->open(c, err) != WH_OK) {
        error_prefix(err, "connector '%s'", name);
        connector_free(c);
        return NULL;
    }
    return c;
}

void connector_free(struct connector *c)
{
    if (c == NULL)
        return;
    if (c->state && c->type->close)
        c->type->close(c);
    connector_secrets_free(c);
    json_decref(c->config);
    free(c->name);
    free(c);
}

int connector_keys_only(const json_t *o, const char *const *keys, size_t n,
                        const char *what, struct error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        size_t i = 0;
        while (i < n && strcmp(k, keys[i]) != 0)
            i++;
        if (i == n)
            return error_set(err, "%s: unknown key \"%s\"", what, k);
    }
    return 0;
}
