/*
 * registry.c - the list of connector types and what all connectors share.
 *
 * Adding a connector type is one file that defines its struct
 * connector_type (config map, actions, functions) and one line in TYPES
 * below (see docs/architecture.md, "Adding a connector"). Keys common to
 * every connector's config are declared in options.c and handled here, so
 * types never see them:
 *   "log_level": "error".."trace"   per-connector verbosity (R5)
 *   "poll_ms":   sources: poll interval
 *   "retry":     {"max_attempts": N, "initial_ms": N, "max_ms": N}
 *   "retention_days": how long messages that entered here are kept (R9;
 *                read by security/retention.c from the stored config)
 *
 * Must never: know a type by name outside TYPES; read a config key that
 * no table declares.
 */
#include "connectors/connector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* "file, sftp, ..." from TYPES into out. */
static void type_names(char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NTYPES && used < n; i++) {
        int w = snprintf(out + used, n - used, "%s%s", i ? ", " : "",
                         TYPES[i]->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* A common key of config, or its declared default (options.c). */
static long long common_int(const json_t *config, const char *key)
{
    const json_t *v = connector_config_get(config, key);
    const struct conn_option *o =
        connector_option_find(connector_common_options(), key);
    if (json_is_integer(v))
        return json_integer_value(v);
    return o && o->def ? strtoll(o->def, NULL, 10) : 0;
}

/* Read the (checked) common keys of config into c (c may be a scratch
 * struct). */
static void common_parse(const json_t *config, struct connector *c)
{
    const json_t *lv = json_object_get(config, "log_level");
    enum log_level l;
    c->log_level = -1;
    if (json_is_string(lv) && log_level_parse(json_string_value(lv), &l) == 0)
        c->log_level = (int)l;
    c->poll_ms = common_int(config, "poll_ms");
    c->retry.max_attempts = (int)common_int(config, "retry.max_attempts");
    c->retry.initial_ms = common_int(config, "retry.initial_ms");
    c->retry.max_ms = common_int(config, "retry.max_ms");
    if (c->retry.max_ms < c->retry.initial_ms)
        c->retry.max_ms = c->retry.initial_ms;
    const json_t *cc = json_object_get(config, "concurrency");
    c->concurrency = json_is_integer(cc) ? (int)json_integer_value(cc)
                   : c->type && c->type->concurrency > 0
                   ? c->type->concurrency : 1;
}

/* A copy of config without the common keys. Caller decrefs. */
static json_t *type_config(const json_t *config)
{
    const struct conn_option *common = connector_common_options();
    json_t *copy = json_copy((json_t *)config);
    for (size_t i = 0; copy && common[i].key; i++)
        if (strchr(common[i].key, '.') == NULL)
            json_object_del(copy, common[i].key);
    return copy;
}

int connector_check(const char *name, const char *type, const json_t *config,
                    struct error *err)
{
    const struct connector_type *t = connector_type_find(type);
    char known[256];
    if (t == NULL) {
        type_names(known, sizeof(known));
        return error_set(err, "connector '%s': unknown type '%s' (known: %s)",
                         name, type, known);
    }
    if (!json_is_object(config))
        return error_set(err, "connector '%s': config must be an object", name);
    json_t *own = type_config(config);
    int rc = connector_common_check(config, err);
    if (rc == 0)
        rc = own ? connector_options_check(t->options, own, err)
                 : error_set(err, "out of memory");
    if (rc == 0 && t->check)
        rc = t->check(own, err);
    json_decref(own);
    if (rc < 0)
        error_prefix(err, "connector '%s' (%s)", name, type);
    return rc;
}

struct connector *connector_new(struct conn_env *env, const char *name,
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
    c->env = env;
    common_parse(config, c);
    if (c->poll_ms == 0)
        c->poll_ms = env ? env->settings->poll_ms : 1000;
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

/* ---- actions --------------------------------------------------------------- */

const struct conn_action *connector_action_find(const struct connector_type *t,
                                                const char *verb)
{
    for (size_t i = 0; t->actions && t->actions[i].verb; i++)
        if (strcmp(t->actions[i].verb, verb) == 0)
            return &t->actions[i];
    return NULL;
}

const struct conn_job_type *connector_job_type(const struct connector_type *t,
                                               const char *kind)
{
    for (size_t i = 0; t->jobs && t->jobs[i].kind; i++)
        if (strcmp(t->jobs[i].kind, kind) == 0)
            return &t->jobs[i];
    return NULL;
}

const struct conn_action *connector_action_any(const char *verb)
{
    const struct conn_action *a = NULL;
    for (size_t i = 0; i < NTYPES && a == NULL; i++)
        a = connector_action_find(TYPES[i], verb);
    return a;
}

enum conn_act_rc connector_action_test(struct conn_action_ctx *x,
                                       struct error *err)
{
    struct connector *c = x->open(x, err);
    enum wh_status st = c ? c->type->test(c, err) : WH_FAIL;
    connector_free(c);
    snprintf(x->audit, sizeof(x->audit), "%s", st == WH_OK ? "ok" : "failed");
    if (st != WH_OK) {
        error_prefix(err, "connection test of %s failed", x->name);
        return CONN_ACT_UNREACHABLE;
    }
    snprintf(x->text, sizeof(x->text), "connection test of %s passed",
             x->name);
    x->result = json_pack("{s:s, s:b, s:s}", "connector", x->name, "ok", 1,
                          "detail", "connection test passed");
    return CONN_ACT_OK;
}
