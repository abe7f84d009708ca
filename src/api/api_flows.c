/*
 * api_flows.c - connectors, the flow document and settings. Flow import
 * goes through the same flow_parse validation as `wharf flow import` and
 * is audited with the hash of the document before and after.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/flow.h"
#include "store/store.h"
#include "util/log.h"

int api_connectors(struct api_ctx *c)
{
    struct error err = {0};
    struct store_flow f;
    if (store_flow_get(c->st, &f, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *arr = json_array();
    for (size_t i = 0; i < f.nconns; i++) {
        json_error_t je;
        json_t *cfg = json_loads(f.conns[i].config, 0, &je);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o*}", "name",
                              f.conns[i].name, "type", f.conns[i].type,
                              "config", cfg));
    }
    json_t *links = json_array();   /* the graph's edges, for the console */
    for (size_t i = 0; i < f.nlinks; i++)
        json_array_append_new(links, json_pack("[s, s]", f.links[i].src,
                                               f.links[i].dst));
    store_flow_clear(&f);
    return api_ok(c, 200, json_pack("{s:o, s:o}", "connectors", arr,
                                    "links", links));
}

int api_connector_get(struct api_ctx *c)
{
    struct error err = {0};
    struct store_flow f;
    if (store_flow_get(c->st, &f, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *found = NULL;
    for (size_t i = 0; i < f.nconns && !found; i++) {
        if (strcmp(f.conns[i].name, c->param[0]) != 0)
            continue;
        json_error_t je;
        json_t *links = json_array();
        for (size_t k = 0; k < f.nlinks; k++)
            if (!strcmp(f.links[k].src, c->param[0]))
                json_array_append_new(links, json_string(f.links[k].dst));
        found = json_pack("{s:s, s:s, s:o*, s:o}", "name", f.conns[i].name,
                          "type", f.conns[i].type, "config",
                          json_loads(f.conns[i].config, 0, &je), "next", links);
    }
    store_flow_clear(&f);
    return found ? api_ok(c, 200, found)
                 : api_fail(c, 404, "not_found", "no such connector");
}

/* hex SHA-256 of text into out[65]. */
static void sha256_hex(const char *text, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int api_flow_export(struct api_ctx *c)
{
    struct error err = {0};
    char *text = flow_export(c->st, &err);
    if (text == NULL)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    free(text);
    api_audit(c, "flow.export", NULL, NULL);
    return doc ? api_ok(c, 200, doc)
               : api_fail(c, 500, "internal", "stored flow is not JSON");
}

int api_flow_import(struct api_ctx *c)
{
    struct error err = {0};
    char before[65] = "-", after[65] = "-", detail[200];
    if (c->body == NULL)
        return api_fail(c, 400, "invalid", "send the flow document as the body");
    char *text = json_dumps(c->body, JSON_COMPACT);
    char *old = flow_export(c->st, NULL);
    if (old)
        sha256_hex(old, before);
    free(old);
    int rc = text ? flow_import(c->w, c->st, FLOW_FROM_API, text,
                                strlen(text), &err)
                  : error_set(&err, "out of memory");
    free(text);
    if (rc < 0) {
        /* the validation names the key or connector at fault; a URL with
         * credentials or a secret-named value is masked like in the log */
        log_redact(err.msg);
        /* refusals are audited: they may be attempts to reach files */
        api_audit(c, "flow.import.refused", NULL, err.msg);
        return api_fail(c, 400, "invalid_flow", "%s", err.msg);
    }
    char *now = flow_export(c->st, NULL);
    if (now)
        sha256_hex(now, after);
    free(now);
    snprintf(detail, sizeof(detail), "before sha256 %s after sha256 %s",
             before, after);
    api_audit(c, "flow.import", NULL, detail);
    return api_ok(c, 200, json_pack("{s:s, s:I}", "status", "imported",
                  "generation", (json_int_t)store_flow_generation(c->st, NULL)));
}

/* ---- settings --------------------------------------------------------------------- */

struct setting_rule {
    const char *key;
    const char *pattern;    /* "bool", "minutes", "forms" */
};

static const struct setting_rule SETTINGS[] = {
    { "mfa_required_admin", "bool" },
    { "mfa_required_all", "bool" },
    { "session_idle_minutes", "minutes" },
    { "session_absolute_minutes", "minutes" },
    { "auth_forms", "forms" },
    { "client_cert_roles", "cert-roles" },
};

static int setting_valid(const struct setting_rule *r, const char *v)
{
    if (!strcmp(r->pattern, "bool"))
        return !strcmp(v, "true") || !strcmp(v, "false");
    if (!strcmp(r->pattern, "minutes")) {
        char *end;
        long x = strtol(v, &end, 10);
        return *v && !*end && x >= 1 && x <= 7 * 24 * 60;
    }
    if (!strcmp(r->pattern, "cert-roles")) {
        json_error_t je;
        json_t *m = json_loads(v, 0, &je);
        const char *k;
        json_t *role;
        enum role x;
        int ok = json_is_object(m);
        json_object_foreach(m, k, role)
            ok = ok && json_is_string(role) &&
                 rbac_role_parse(json_string_value(role), &x) == 0;
        json_decref(m);
        return ok;
    }
    static const char *const forms[] = { "password", "token", "oidc",
                                         "client_cert" };
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < 4 && strcmp(t, forms[i]))
            i++;
        if (i == 4)
            return 0;
    }
    return strlen(v) > 0 && strlen(v) < sizeof(buf);
}

int api_settings(struct api_ctx *c)
{
    struct error err = {0};
    char **k, **v;
    size_t n;
    if (store_settings_list(c->st, &k, &v, &n, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    json_t *obj = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(obj, k[i], json_string(v[i]));
    store_settings_free(k, v, n);
    return api_ok(c, 200, json_pack("{s:o}", "settings", obj));
}

int api_setting_put(struct api_ctx *c)
{
    struct error err = {0};
    const char *key = c->param[0], *value = api_body_str(c, "value");
    const struct setting_rule *r = NULL;
    for (size_t i = 0; i < sizeof(SETTINGS) / sizeof(*SETTINGS) && !r; i++)
        if (!strcmp(SETTINGS[i].key, key))
            r = &SETTINGS[i];
    if (r == NULL)
        return api_fail(c, 404, "not_found", "no setting '%s' can be changed "
                        "here", key);
    if (value == NULL || !setting_valid(r, value))
        return api_fail(c, 400, "invalid", "%s takes a %s value: send "
                        "{\"value\": \"...\"}", key, r->pattern);
    if (store_setting_set(c->st, key, value, &err) < 0)
        return api_fail(c, 500, "internal", "%s", err.msg);
    char detail[300];
    snprintf(detail, sizeof(detail), "%s = %s", key, value);
    api_audit(c, "settings.change", key, detail);
    return api_ok(c, 200, json_pack("{s:s, s:s}", "key", key, "value", value));
}
