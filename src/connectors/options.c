/*
 * options.c - the config map of connector types (struct conn_option,
 * connector.h): the one generic validator, the typed getters open() reads
 * its settings with (declared defaults applied), and the descriptions
 * printed from the tables (`wharf connector help`, GET /api/v1/
 * connector-types, the OpenAPI config schemas).
 *
 * Validation of an object against a table, in this order (a CONN_ENUM
 * with a valid() lets it decide, for aliases):
 *   1. unknown keys: every member (and every member of a declared object)
 *      must be declared, whatever its condition;
 *   2. each option in table order: skipped when its parent object is
 *      absent (or, for a proxy, given as a string); a key whose `when`
 *      does not hold must be absent; a required key must be present; a
 *      present value must have the declared type, enum value, range or
 *      size (a required string must not be empty); then the option's own
 *      valid().
 *
 * Owns nothing beyond the JSON it returns. Must never read a file, open a
 * connection or print a config value of a secret key (a table holds no
 * secret: secret keys have no default).
 */
#include "connectors/connector.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/proxy.h"
#include "util/confine.h"

#define KEY_MAX 256

static const char *const TYPE_NAMES[] = {
    [CONN_STRING] = "string", [CONN_INT] = "int", [CONN_BOOL] = "bool",
    [CONN_ENUM] = "enum", [CONN_URL] = "url", [CONN_OBJECT] = "object",
    [CONN_MAP] = "map", [CONN_LIST] = "list", [CONN_SECRET] = "secret",
    [CONN_FILE] = "file", [CONN_FOLDER] = "folder", [CONN_PROXY] = "proxy",
};

/* ---- the common keys ------------------------------------------------------ */

/* log_level takes log_level_parse's aliases too ("warn"). */
static int log_level_valid(const char *key, const json_t *v,
                           struct error *err)
{
    enum log_level l;
    if (!json_is_string(v) || log_level_parse(json_string_value(v), &l) < 0)
        return error_set(err, "%s must be error, warning, info, debug or "
                         "trace", key);
    return 0;
}

static const struct conn_option COMMON[] = {
    { "log_level", CONN_ENUM, 0, NULL, 0, 0, "error|warning|info|debug|trace",
      NULL, "this connector's log verbosity (default: wharf.conf's "
      "log_level)", log_level_valid },
    { "poll_ms", CONN_INT, CONN_ADVANCED, NULL, 10, 3600000, NULL, NULL,
      "sources: how often to look for new messages (default: wharf.conf's "
      "poll_ms)", NULL },
    { "retry", CONN_OBJECT, CONN_ADVANCED, NULL, 0, 0, NULL, NULL,
      "the retry schedule of deliveries (exponential backoff with jitter)",
      NULL },
    { "retry.max_attempts", CONN_INT, CONN_ADVANCED, "10", 1, 1000, NULL,
      NULL, "then the hop is failed (resend it from the API or CLI)", NULL },
    { "retry.initial_ms", CONN_INT, CONN_ADVANCED, "1000", 1, 86400000, NULL,
      NULL, "the first backoff", NULL },
    { "retry.max_ms", CONN_INT, CONN_ADVANCED, "600000", 1, 7 * 86400000LL,
      NULL, NULL, "the longest backoff", NULL },
    { "concurrency", CONN_INT, CONN_ADVANCED, NULL, 1, 64, NULL, NULL,
      "destinations: how many messages of one batch are delivered at once "
      "(default: as2 and http 8, others 1); above 1, messages to this "
      "connector may arrive in another order than they came in", NULL },
    { "retention_days", CONN_INT, CONN_ADVANCED, NULL, 0, 36500, NULL, NULL,
      "days a message that entered here is kept before a purge deletes it "
      "(default: wharf.conf's retention_days; 0: for ever)", NULL },
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

const struct conn_option *connector_common_options(void)
{
    return COMMON;
}

/* ---- looking things up ---------------------------------------------------- */

const struct conn_option *connector_option_find(const struct conn_option *t,
                                                const char *key)
{
    for (size_t i = 0; t && t[i].key; i++)
        if (strcmp(t[i].key, key) == 0)
            return &t[i];
    return NULL;
}

/* A member named like the whole rest wins over a split at a dot, so
 * "headers.X-Api.Key" finds the header "X-Api.Key". */
const json_t *connector_config_get(const json_t *config, const char *key)
{
    char part[KEY_MAX];
    const json_t *v = config;
    const char *p = key;
    for (;;) {
        if (!json_is_object(v))
            return NULL;
        const json_t *whole = json_object_get(v, p);
        if (whole)
            return whole;
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

/* The object that holds key's value ("auth" for "auth.user"): config
 * itself for a plain key; NULL when the parent is absent or no object. */
static const json_t *parent_of(const json_t *config, const char *key)
{
    const char *dot = strrchr(key, '.');
    char up[KEY_MAX];
    if (dot == NULL)
        return config;
    if ((size_t)(dot - key) >= sizeof(up))
        return NULL;
    memcpy(up, key, (size_t)(dot - key));
    up[dot - key] = '\0';
    const json_t *p = connector_config_get(config, up);
    return json_is_object(p) ? p : NULL;
}

int connector_option_sealed(const struct connector_type *t, const char *key)
{
    const struct conn_option *o = connector_option_find(t->options, key);
    if (o == NULL) {
        /* a credential member of a map: "headers.X-Api-Key" */
        const char *dot = strchr(key, '.');
        char up[KEY_MAX];
        if (dot == NULL || (size_t)(dot - key) >= sizeof(up))
            return 0;
        memcpy(up, key, (size_t)(dot - key));
        up[dot - key] = '\0';
        o = connector_option_find(t->options, up);
        return o && (o->flags & CONN_SECRET_MEMBERS) &&
               connector_credential_name(dot + 1) ? 1 : 0;
    }
    return o->type == CONN_SECRET ? 1 : o->type == CONN_FILE ? 2 : 0;
}

/* ---- conditions ----------------------------------------------------------- */

/* The value of the option a condition names, as text ("" when absent). */
static void cond_value(const json_t *config, const char *key, char *out,
                       size_t n)
{
    const json_t *v = connector_config_get(config, key);
    if (json_is_string(v))
        snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_boolean(v))
        snprintf(out, n, "%s", json_is_true(v) ? "true" : "false");
    else if (json_is_integer(v))
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else
        out[0] = '\0';
}

/* Does word appear in "a|b|c"? */
static int in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Does o's condition hold in config? *key and *got say what was seen. */
static int cond_holds(const struct conn_option *o, const json_t *config,
                      char *key, char *got, size_t n)
{
    if (o->when == NULL)
        return 1;
    const char *eq = strchr(o->when, '=');
    size_t kl = eq ? (size_t)(eq - o->when) : strlen(o->when);
    if (kl >= n)
        kl = n - 1;
    memcpy(key, o->when, kl);
    key[kl] = '\0';
    cond_value(config, key, got, n);
    return eq && in_list(eq + 1, got);
}

/* ---- the validator -------------------------------------------------------- */

/* "\"a\", \"b\" or \"c\"" of an enum's values into out. */
static void enum_words(const char *values, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = values; p && *p && used + 1 < n;) {
        const char *bar = strchr(p, '|');
        int len = bar ? (int)(bar - p) : (int)strlen(p);
        const char *sep = used == 0 ? "" : bar ? ", " : " or ";
        int w = snprintf(out + used, n - used, "%s\"%.*s\"", sep, len, p);
        if (w < 0 || (size_t)w >= n - used)
            break;
        used += (size_t)w;
        p = bar ? bar + 1 : NULL;
    }
}

/* A one-line string: no control characters. */
static int one_line(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

static int check_enum(const struct conn_option *o, const json_t *v,
                      struct error *err)
{
    char words[512];
    if (json_is_string(v) && in_list(o->values, json_string_value(v)))
        return 0;
    enum_words(o->values, words, sizeof(words));
    if (!json_is_string(v))
        return error_set(err, "%s must be %s", o->key, words);
    return error_set(err, "%s must be %s, not \"%.64s\"", o->key, words,
                     json_string_value(v));
}

static int check_list(const struct conn_option *o, const json_t *v,
                      struct error *err)
{
    int ints = o->values && strcmp(o->values, "int") == 0;
    const char *what = ints ? "integers" : "strings";
    size_t n = json_array_size(v);
    if (!json_is_array(v) || (long long)n < o->min ||
        (o->max && (long long)n > o->max))
        return error_set(err, "%s must be a list of %lld..%lld %s", o->key,
                         o->min, o->max, what);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (ints ? !json_is_integer(x) : !json_is_string(x))
            return error_set(err, "%s must be a list of %s", o->key, what);
    }
    return 0;
}

static int check_map(const struct conn_option *o, const json_t *v,
                     struct error *err)
{
    if (!json_is_object(v))
        return error_set(err, "%s must be an object", o->key);
    if (o->max && (long long)json_object_size(v) > o->max)
        return error_set(err, "%s: at most %lld members", o->key, o->max);
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        int secret = (o->flags & CONN_SECRET_MEMBERS) &&
                     connector_credential_name(k);
        char key[KEY_MAX + 64];
        snprintf(key, sizeof(key), "%s.%s", o->key, k);
        if (secret && !json_is_string(x)) {
            if (connector_secret_ok(key, x, 1, err) < 0)     /* a form */
                return -1;
        } else if (!json_is_string(x) || !one_line(json_string_value(x))) {
            return error_set(err, "%s needs a one-line string value", key);
        }
    }
    return 0;
}

static int check_string(const struct conn_option *o, const json_t *v,
                        struct error *err)
{
    if (!json_is_string(v))
        return error_set(err, "%s must be a string", o->key);
    const char *s = json_string_value(v);
    if (o->max && (long long)strlen(s) > o->max)
        return error_set(err, "%s must be at most %lld characters", o->key,
                         o->max);
    if (!one_line(s))
        return error_set(err, "%s must be one line", o->key);
    return 0;
}

static int check_url(const struct conn_option *o, const json_t *v,
                     struct error *err)
{
    const char *s = json_string_value(v);
    if (s == NULL || strstr(s, "://") == NULL || strpbrk(s, " \t") ||
        !one_line(s) || strlen(s) > 2048)
        return error_set(err, "%s must be a URL (scheme://host...) without "
                         "blanks", o->key);
    return 0;
}

/* The value's type, enum, range and size. */
static int check_value(const struct conn_option *o, const json_t *v,
                       struct error *err)
{
    switch (o->type) {
    case CONN_STRING:
        return check_string(o, v, err);
    case CONN_INT:
        if (!json_is_integer(v) || json_integer_value(v) < o->min ||
            json_integer_value(v) > o->max)
            return error_set(err, "%s must be %lld..%lld", o->key, o->min,
                             o->max);
        return 0;
    case CONN_BOOL:
        return json_is_boolean(v) ? 0
               : error_set(err, "%s must be true or false", o->key);
    case CONN_ENUM:     /* with valid(): it decides (aliases) */
        return o->valid ? 0 : check_enum(o, v, err);
    case CONN_URL:
        return check_url(o, v, err);
    case CONN_OBJECT:
        return json_is_object(v) ? 0
               : error_set(err, "%s: must be an object", o->key);
    case CONN_MAP:
        return check_map(o, v, err);
    case CONN_LIST:
        return check_list(o, v, err);
    case CONN_SECRET:
    case CONN_FILE:
        return connector_secret_ok(o->key, v, 0, err);
    case CONN_FOLDER:
        if (!json_is_string(v))
            return error_set(err, "%s must be a string", o->key);
        return confine_check(o->key, json_string_value(v), err);
    case CONN_PROXY:
        return json_is_string(v) || json_is_object(v) ? 0
               : error_set(err, "%s must be a URL, \"direct\" or an object "
                           "{\"url\", \"credentials_file\", \"no_proxy\"}",
                           o->key);
    }
    return error_set(err, "%s: undeclared type", o->key);
}

/* Step 1 of the top comment over object obj at prefix ("" at the top). */
static int unknown_keys(const struct conn_option *t, const json_t *obj,
                        const char *prefix, int strict, struct error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        char key[KEY_MAX];
        if (snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "",
                     k) >= (int)sizeof(key))
            return error_set(err, "unknown key \"%.64s...\"", key);
        const struct conn_option *o = connector_option_find(t, key);
        if (o == NULL && strict)
            return prefix[0] ? error_set(err, "%s: unknown key \"%s\"",
                                         prefix, k)
                             : error_set(err, "unknown key \"%s\"", key);
        if (o && json_is_object(v) &&
            (o->type == CONN_OBJECT || o->type == CONN_PROXY) &&
            unknown_keys(t, v, key, 1, err) < 0)
            return -1;
    }
    return 0;
}

/* Step 2 of the top comment for one option. */
static int check_option(const struct conn_option *o, const json_t *config,
                        struct error *err)
{
    const json_t *parent = parent_of(config, o->key);
    if (parent == NULL)
        return 0;
    const char *leaf = strrchr(o->key, '.');
    const json_t *v = json_object_get(parent, leaf ? leaf + 1 : o->key);
    char ckey[KEY_MAX], got[KEY_MAX];
    if (!cond_holds(o, config, ckey, got, sizeof(got))) {
        if (v == NULL)
            return 0;
        return got[0] ? error_set(err, "%s does not apply when %s is \"%s\"",
                                  o->key, ckey, got)
                      : error_set(err, "%s does not apply without %s",
                                  o->key, ckey);
    }
    int empty = json_is_string(v) && json_string_value(v)[0] == '\0';
    if (v == NULL || ((o->flags & CONN_REQUIRED) && empty))
        return (o->flags & CONN_REQUIRED)
               ? error_set(err, "needs %s (%s)", o->key, o->help) : 0;
    if (check_value(o, v, err) < 0)
        return -1;
    return o->valid ? o->valid(o->key, v, err) : 0;
}

static int options_walk(const struct conn_option *t, const json_t *config,
                        int strict, struct error *err)
{
    if (!json_is_object(config))
        return error_set(err, "config must be an object");
    if (unknown_keys(t, config, "", strict, err) < 0)
        return -1;
    for (size_t i = 0; t && t[i].key; i++)
        if (check_option(&t[i], config, err) < 0)
            return -1;
    return 0;
}

int connector_options_check(const struct conn_option *table,
                            const json_t *config, struct error *err)
{
    return options_walk(table, config, 1, err);
}

int connector_common_check(const json_t *config, struct error *err)
{
    return options_walk(COMMON, config, 0, err);
}

/* ---- typed getters -------------------------------------------------------- */

/* The declared option key of c's type (or a common key). */
static const struct conn_option *declared(const struct connector *c,
                                          const char *key)
{
    const struct conn_option *o = connector_option_find(c->type->options,
                                                        key);
    if (o == NULL)
        o = connector_option_find(COMMON, key);
    if (o == NULL)
        log_write(LOG_ERROR, -1, c->name, NULL, "bug: connector type %s reads "
                  "the undeclared config key %s", c->type->name, key);
    return o;
}

const json_t *conn_get(const struct connector *c, const char *key)
{
    return declared(c, key) ? connector_config_get(c->config, key) : NULL;
}

const char *conn_str(const struct connector *c, const char *key)
{
    const struct conn_option *o = declared(c, key);
    const json_t *v = o ? connector_config_get(c->config, key) : NULL;
    if (json_is_string(v))
        return json_string_value(v);
    return o ? o->def : NULL;
}

long long conn_int(const struct connector *c, const char *key)
{
    const struct conn_option *o = declared(c, key);
    const json_t *v = o ? connector_config_get(c->config, key) : NULL;
    if (json_is_integer(v))
        return json_integer_value(v);
    return o && o->def ? strtoll(o->def, NULL, 10) : 0;
}

int conn_bool(const struct connector *c, const char *key)
{
    const struct conn_option *o = declared(c, key);
    const json_t *v = o ? connector_config_get(c->config, key) : NULL;
    if (json_is_boolean(v))
        return json_is_true(v);
    return o && o->def && strcmp(o->def, "true") == 0;
}

/* ---- descriptions --------------------------------------------------------- */

/* The default of o as JSON (new reference), or NULL. */
static json_t *default_json(const struct conn_option *o)
{
    if (o->def == NULL)
        return NULL;
    if (o->type == CONN_INT)
        return json_integer(strtoll(o->def, NULL, 10));
    if (o->type == CONN_BOOL)
        return json_boolean(strcmp(o->def, "true") == 0);
    return json_string(o->def);
}

/* "a|b" as ["a", "b"]. */
static json_t *words_json(const char *list)
{
    json_t *a = json_array();
    for (const char *p = list; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, len));
        p = bar ? bar + 1 : NULL;
    }
    return a;
}

static json_t *when_json(const char *when)
{
    const char *eq = when ? strchr(when, '=') : NULL;
    if (eq == NULL)
        return NULL;
    return json_pack("{s:s%, s:o}", "key", when, (size_t)(eq - when),
                     "values", words_json(eq + 1));
}

static json_t *option_json(const struct conn_option *o)
{
    json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:b, s:s}", "key", o->key,
        "type", TYPE_NAMES[o->type], "required", !!(o->flags & CONN_REQUIRED),
        "secret", o->type == CONN_SECRET || (o->flags & CONN_SECRET_MEMBERS),
        "advanced", !!(o->flags & CONN_ADVANCED), "help", o->help);
    json_t *d = default_json(o), *w = when_json(o->when);
    if (d)
        json_object_set_new(j, "default", d);
    if (w)
        json_object_set_new(j, "when", w);
    if (o->type == CONN_ENUM)
        json_object_set_new(j, "values", words_json(o->values));
    if (o->type == CONN_INT) {
        json_object_set_new(j, "min", json_integer(o->min));
        json_object_set_new(j, "max", json_integer(o->max));
    }
    if (o->type == CONN_LIST) {
        json_object_set_new(j, "items", json_string(o->values));
        json_object_set_new(j, "min_items", json_integer(o->min));
        json_object_set_new(j, "max_items", json_integer(o->max));
    }
    if ((o->type == CONN_STRING || o->type == CONN_MAP) && o->max)
        json_object_set_new(j, o->type == CONN_MAP ? "max_members"
                            : "max_length", json_integer(o->max));
    return j;
}

static json_t *options_json(const struct conn_option *t)
{
    json_t *a = json_array();
    for (size_t i = 0; t && t[i].key; i++)
        json_array_append_new(a, option_json(&t[i]));
    return a;
}

static json_t *actions_json(const struct conn_action *a)
{
    json_t *arr = json_array();
    for (size_t i = 0; a && a[i].verb; i++) {
        json_t *params = json_array();
        for (size_t k = 0; a[i].params && a[i].params[k]; k++)
            json_array_append_new(params, json_string(a[i].params[k]));
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:o, s:s}",
            "verb", a[i].verb, "permission", a[i].permission, "read_only",
            a[i].read_only, "params", params, "summary", a[i].summary));
    }
    return arr;
}

json_t *connector_types_json(void)
{
    const struct connector_type *const *types;
    size_t n = connector_types(&types);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:o}",
            "name", types[i]->name, "summary", types[i]->summary,
            "options", options_json(types[i]->options),
            "actions", actions_json(types[i]->actions)));
    return json_pack("{s:o, s:o}", "types", arr, "common",
                     options_json(COMMON));
}

/* ---- JSON Schema ---------------------------------------------------------- */

static json_t *schema_of(const struct conn_option *o)
{
    json_t *s = json_object();
    switch (o->type) {
    case CONN_INT:
        json_object_set_new(s, "type", json_string("integer"));
        json_object_set_new(s, "minimum", json_integer(o->min));
        json_object_set_new(s, "maximum", json_integer(o->max));
        break;
    case CONN_BOOL:
        json_object_set_new(s, "type", json_string("boolean"));
        break;
    case CONN_ENUM:
        json_object_set_new(s, "enum", words_json(o->values));
        break;
    case CONN_OBJECT:
    case CONN_PROXY:
        json_object_set_new(s, "type", o->type == CONN_OBJECT
                            ? json_string("object")
                            : json_pack("[s, s]", "string", "object"));
        json_object_set_new(s, "properties", json_object());
        json_object_set_new(s, "additionalProperties", json_false());
        break;
    case CONN_MAP:
        json_object_set_new(s, "type", json_string("object"));
        break;
    case CONN_LIST:
        json_object_set_new(s, "type", json_string("array"));
        json_object_set_new(s, "items", json_pack("{s:s}", "type",
            strcmp(o->values, "int") == 0 ? "integer" : "string"));
        json_object_set_new(s, "minItems", json_integer(o->min));
        json_object_set_new(s, "maxItems", json_integer(o->max));
        break;
    case CONN_SECRET:
    case CONN_FILE:     /* a path, {"content"}, {"base64"} or {"sealed"} */
        json_object_set_new(s, "type", json_pack("[s, s]", "string",
                                                 "object"));
        break;
    default:            /* string, url, folder */
        json_object_set_new(s, "type", json_string("string"));
        if (o->type == CONN_STRING && o->max)
            json_object_set_new(s, "maxLength", json_integer(o->max));
    }
    json_t *d = default_json(o);
    if (d)
        json_object_set_new(s, "default", d);
    json_object_set_new(s, "description", json_string(o->help));
    if (o->type == CONN_SECRET || (o->flags & CONN_SECRET_MEMBERS))
        json_object_set_new(s, "writeOnly", json_true());
    return s;
}

/* The schema node of the object that holds key ("auth" for "auth.user"). */
static json_t *schema_parent(json_t *root, const char *key)
{
    char part[KEY_MAX];
    json_t *node = root;
    const char *p = key;
    const char *dot;
    while ((dot = strchr(p, '.')) != NULL) {
        size_t n = (size_t)(dot - p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        node = json_object_get(json_object_get(node, "properties"), part);
        p = dot + 1;
    }
    return node;
}

static void schema_add(json_t *root, const struct conn_option *t)
{
    for (size_t i = 0; t && t[i].key; i++) {
        json_t *parent = schema_parent(root, t[i].key);
        const char *leaf = strrchr(t[i].key, '.');
        leaf = leaf ? leaf + 1 : t[i].key;
        if (parent == NULL)
            continue;
        json_object_set_new(json_object_get(parent, "properties"), leaf,
                            schema_of(&t[i]));
        if ((t[i].flags & CONN_REQUIRED) && t[i].when == NULL) {
            if (json_object_get(parent, "required") == NULL)
                json_object_set_new(parent, "required", json_array());
            json_array_append_new(json_object_get(parent, "required"),
                                  json_string(leaf));
        }
    }
}

json_t *connector_config_schema(const struct connector_type *t)
{
    json_t *root = json_pack("{s:s, s:o, s:b, s:s}", "type", "object",
                             "properties", json_object(),
                             "additionalProperties", 0, "description",
                             t->summary);
    schema_add(root, COMMON);
    schema_add(root, t->options);
    return root;
}
