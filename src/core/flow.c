/*
 * flow.c - the flow document (parse, validate, import, export) and the
 * runtime flow the engine runs.
 *
 * The document is untrusted input (an operator's file, later an API body):
 * it is size-capped, parsed with duplicate keys rejected, validated in full
 * (every connector's own check included) into rows in memory, and only then
 * written, in one transaction. A failed import changes nothing.
 *
 * Must never: open connectors or touch the file system while validating
 * beyond what a type's check() reads.
 */
#include "core/flow.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <string.h>

#include "connectors/connector.h"
#include "core/env.h"
#include "core/partners.h"
#include "core/wharf.h"
#include "util/log.h"

/* ---- validation helpers ---------------------------------------------------- */

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static ssize_t find_conn(const struct store_flow *f, const char *name)
{
    for (size_t i = 0; i < f->nconns; i++)
        if (strcmp(f->conns[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

/* A type that needs a partner: the config's "partner" names one of the
 * document, and no other connector of the type has it. */
static int partner_ref_check(const char *name, const char *type,
                             const json_t *config, const struct store_flow *f,
                             struct error *err)
{
    const struct connector_type *t = connector_type_find(type);
    if (t == NULL || !t->needs_partner)
        return 0;
    const char *p = json_string_value(json_object_get(config, "partner"));
    if (!partners_has(f, p))
        return error_set(err, "connector '%s': partner '%s' is not in the "
                         "document's partners", name, p ? p : "");
    for (size_t i = 0; i < f->nconns; i++) {
        if (strcmp(f->conns[i].type, type) != 0)
            continue;
        json_error_t je;
        json_t *o = json_loads(f->conns[i].config, 0, &je);
        int same = o && !strcmp(json_string_value(json_object_get(o,
                                "partner")) ?: "", p);
        json_decref(o);
        if (same)
            return error_set(err, "connectors '%s' and '%s' both serve "
                             "partner '%s'", f->conns[i].name, name, p);
    }
    return 0;
}

static int parse_connector(json_t *jc, size_t idx, struct store_flow *out,
                           struct error *err)
{
    const char *name, *type;
    json_t *config = NULL;
    json_error_t je;
    if (json_unpack_ex(jc, &je, JSON_STRICT, "{s:s, s:s, s?o}", "name", &name,
                       "type", &type, "config", &config) < 0)
        return error_set(err, "connectors[%zu]: %s", idx, je.text);
    if (!name_ok(name))
        return error_set(err, "connectors[%zu]: name must be 1-64 characters "
                         "of A-Z a-z 0-9 . _ -", idx);
    if (find_conn(out, name) >= 0)
        return error_set(err, "connector '%s' is defined twice", name);
    if (config != NULL && !json_is_object(config))
        return error_set(err, "connector '%s': config must be an object", name);
    json_t *empty = config ? NULL : json_object();
    int rc = connector_check(name, type, config ? config : empty, err);
    char *text = rc == 0 ? json_dumps(config ? config : empty,
                                      JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(empty);
    if (rc < 0)
        return -1;
    if (partner_ref_check(name, type, config, out, err) < 0) {
        free(text);
        return -1;
    }
    struct store_connector *c = &out->conns[out->nconns];
    c->name = strdup(name);
    c->type = strdup(type);
    c->config = text;
    out->nconns++;
    if (!c->name || !c->type || !c->config)
        return error_set(err, "out of memory");
    return 0;
}

static int parse_link(json_t *jl, size_t idx, struct store_flow *out,
                      struct error *err)
{
    const char *src, *dst;
    if (!json_is_array(jl) || json_array_size(jl) != 2 ||
        !(src = json_string_value(json_array_get(jl, 0))) ||
        !(dst = json_string_value(json_array_get(jl, 1))))
        return error_set(err, "links[%zu] must be [\"from\", \"to\"]", idx);
    ssize_t s = find_conn(out, src), d = find_conn(out, dst);
    if (s < 0 || d < 0)
        return error_set(err, "links[%zu] names unknown connector '%s'", idx,
                         s < 0 ? src : dst);
    if (strcmp(src, dst) == 0)
        return error_set(err, "links[%zu] links '%s' to itself", idx, src);
    const struct connector_type *t = connector_type_find(out->conns[d].type);
    if (t->deliver == NULL && t->deliver_batch == NULL)
        return error_set(err, "links[%zu]: connector '%s' (type %s) cannot "
                         "be a destination", idx, dst, out->conns[d].type);
    for (size_t i = 0; i < out->nlinks; i++)
        if (!strcmp(out->links[i].src, src) && !strcmp(out->links[i].dst, dst))
            return error_set(err, "link %s -> %s is listed twice", src, dst);
    struct store_link *l = &out->links[out->nlinks++];
    l->src = strdup(src);
    l->dst = strdup(dst);
    return (l->src && l->dst) ? 0 : error_set(err, "out of memory");
}

/* Kahn's algorithm: repeatedly remove connectors nothing links into; any
 * left over sit on a cycle. Iterative (no recursion depth to exhaust) and
 * O(connectors x links), bounded by FLOW_MAX_CONNECTORS and FLOW_MAX_LINKS. */
static int check_acyclic(const struct store_flow *f, struct error *err)
{
    size_t *indeg = calloc(f->nconns + 1, sizeof(*indeg));
    size_t *queue = calloc(f->nconns + 1, sizeof(*queue));
    size_t *dst = calloc(f->nlinks + 1, sizeof(*dst));
    size_t *src = calloc(f->nlinks + 1, sizeof(*src));
    size_t head = 0, tail = 0;
    int rc = 0;
    if (!indeg || !queue || !dst || !src) {
        rc = error_set(err, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < f->nlinks; k++) {
        src[k] = (size_t)find_conn(f, f->links[k].src);
        dst[k] = (size_t)find_conn(f, f->links[k].dst);
        indeg[dst[k]]++;
    }
    for (size_t i = 0; i < f->nconns; i++)
        if (indeg[i] == 0)
            queue[tail++] = i;
    while (head < tail) {
        size_t i = queue[head++];
        for (size_t k = 0; k < f->nlinks; k++)
            if (src[k] == i && --indeg[dst[k]] == 0)
                queue[tail++] = dst[k];
    }
    if (tail < f->nconns)
        rc = error_set(err, "links form a cycle: a message would loop forever");
out:
    free(indeg);
    free(queue);
    free(dst);
    free(src);
    return rc;
}

/* A connector that takes messages in must pass them on: without an
 * outgoing link it would take files (and delete them) for nothing. */
static int check_sources_linked(const struct store_flow *f, struct error *err)
{
    for (size_t i = 0; i < f->nconns; i++) {
        const struct connector_type *t = connector_type_find(f->conns[i].type);
        json_error_t je;
        json_t *cfg = t && t->is_source ? json_loads(f->conns[i].config, 0, &je)
                                        : NULL;
        int source = cfg && t->is_source(cfg);
        json_decref(cfg);
        size_t k = 0;
        while (source && k < f->nlinks && strcmp(f->links[k].src,
                                                 f->conns[i].name))
            k++;
        if (source && k == f->nlinks)
            return error_set(err, "connector '%s' takes messages in but has "
                             "no outgoing link: add one to \"links\" (it "
                             "would take and remove files with nowhere to "
                             "send them)", f->conns[i].name);
    }
    return 0;
}

static int parse_doc(json_t *root, struct store_flow *out, struct error *err)
{
    json_t *conns = NULL, *links = NULL, *profile = NULL, *partners = NULL;
    json_error_t je;
    if (json_unpack_ex(root, &je, JSON_STRICT, "{s:o, s?o, s?o, s?o}",
                       "connectors", &conns, "links", &links, "profile",
                       &profile, "partners", &partners) < 0)
        return error_set(err, "flow document: %s", je.text);
    if (partners_parse(root, out, err) < 0)
        return -1;
    if (!json_is_array(conns) || (links && !json_is_array(links)))
        return error_set(err, "flow document: connectors and links must be "
                         "arrays");
    if (json_array_size(conns) > FLOW_MAX_CONNECTORS ||
        (links && json_array_size(links) > FLOW_MAX_LINKS))
        return error_set(err, "flow document: at most %d connectors and %d "
                         "links", FLOW_MAX_CONNECTORS, FLOW_MAX_LINKS);
    out->conns = calloc(json_array_size(conns) + 1, sizeof(*out->conns));
    out->links = calloc((links ? json_array_size(links) : 0) + 1,
                        sizeof(*out->links));
    if (!out->conns || !out->links)
        return error_set(err, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(conns, i, v)
        if (parse_connector(v, i, out, err) < 0)
            return -1;
    json_array_foreach(links, i, v)
        if (parse_link(v, i, out, err) < 0)
            return -1;
    if (check_sources_linked(out, err) < 0)
        return -1;
    return check_acyclic(out, err);
}

int flow_parse(const char *text, size_t len, struct store_flow *out,
               struct error *err)
{
    memset(out, 0, sizeof(*out));
    if (len > FLOW_DOC_MAX)
        return error_set(err, "flow document is larger than %d bytes",
                         FLOW_DOC_MAX);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return error_set(err, "flow document is not valid JSON: line %d "
                         "column %d: %s", je.line, je.column, je.text);
    int rc = parse_doc(root, out, err);
    json_decref(root);
    if (rc < 0)
        store_flow_clear(out);
    return rc;
}

int flow_read_files(struct wharf *w, struct store *st, struct store_flow *f,
                    enum flow_origin origin, struct error *err)
{
    if (connector_secrets_seal(w, st, f, origin, err) < 0)
        return -1;
    return partners_load(w, st, f, origin, err);
}

int flow_import(struct wharf *w, struct store *st, enum flow_origin origin,
                const char *text, size_t len, struct error *err)
{
    struct store_flow f;
    if (flow_parse(text, len, &f, err) < 0)
        return -1;
    int rc = flow_read_files(w, st, &f, origin, err);
    if (rc == 0)
        rc = store_flow_put(st, &f, err);
    store_flow_clear(&f);
    return rc;
}

static json_t *export_doc(const struct store_flow *f, struct error *err)
{
    json_t *root = json_object(), *conns = json_array(), *links = json_array();
    json_error_t pe;
    if (f->profile)
        json_object_set_new(root, "profile", json_loads(f->profile, 0, &pe));
    if (f->npartners > 0) {
        json_t *parts = json_array();
        for (size_t i = 0; i < f->npartners; i++)
            json_array_append_new(parts, json_loads(f->partners[i].config, 0,
                                                    &pe));
        json_object_set_new(root, "partners", parts);
    }
    json_object_set_new(root, "connectors", conns);
    json_object_set_new(root, "links", links);
    for (size_t i = 0; i < f->nconns; i++) {
        json_error_t je;
        json_t *cfg = json_loads(f->conns[i].config, 0, &je);
        if (cfg == NULL) {
            json_decref(root);
            error_set(err, "stored config of '%s' is not JSON", f->conns[i].name);
            return NULL;
        }
        json_array_append_new(conns, json_pack("{s:s, s:s, s:o}", "name",
                              f->conns[i].name, "type", f->conns[i].type,
                              "config", cfg));
    }
    for (size_t i = 0; i < f->nlinks; i++)
        json_array_append_new(links, json_pack("[s, s]", f->links[i].src,
                                               f->links[i].dst));
    return root;
}

char *flow_export(struct store *st, struct error *err)
{
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    json_t *root = export_doc(&f, err);
    store_flow_clear(&f);
    if (root == NULL)
        return NULL;
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL)
        error_set(err, "out of memory");
    return text;
}

/* ---- connector actions ------------------------------------------------------ */

/* The stored row of connector name, moved into *row (clear it with
 * row_clear). 1 found, 0 not (err set), -1 error. */
static int row_find(struct store *st, const char *name,
                    struct store_connector *row, struct error *err)
{
    struct store_flow f;
    memset(row, 0, sizeof(*row));
    if (store_flow_get(st, &f, err) < 0)
        return -1;
    int found = 0;
    for (size_t i = 0; i < f.nconns && !found; i++) {
        if (strcmp(f.conns[i].name, name) != 0)
            continue;
        *row = f.conns[i];
        memset(&f.conns[i], 0, sizeof(f.conns[i]));
        found = 1;
    }
    store_flow_clear(&f);
    if (!found)
        error_set(err, "no connector named '%s'", name);
    return found;
}

static void row_clear(struct store_connector *row)
{
    free(row->name);
    free(row->type);
    free(row->config);
    memset(row, 0, sizeof(*row));
}

/* "test, hostkey.capture" of t into out. */
static void verbs_of(const struct connector_type *t, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; t->actions && t->actions[i].verb && used < n; i++) {
        int w = snprintf(out + used, n - used, "%s%s", i ? ", " : "",
                         t->actions[i].verb);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int flow_action_find(struct store *st, const char *name, const char *verb,
                     const struct conn_action **out, struct error *err)
{
    struct store_connector row;
    char verbs[256];
    *out = NULL;
    int found = row_find(st, name, &row, err);
    if (found <= 0)
        return found < 0 ? CONN_ACT_ERROR : CONN_ACT_NOT_FOUND;
    const struct connector_type *t = connector_type_find(row.type);
    if (t && (*out = connector_action_find(t, verb)) == NULL) {
        verbs_of(t, verbs, sizeof(verbs));
        error_set(err, "connector '%s' (%s) has no action '%s' (it has: %s)",
                  name, row.type, verb, verbs[0] ? verbs : "none");
    } else if (t == NULL) {
        error_set(err, "connector '%s' has an unknown type '%s'", name,
                  row.type);
    }
    row_clear(&row);
    return *out ? CONN_ACT_OK : CONN_ACT_NOT_FOUND;
}

/* What an action's ctx->env points to. */
struct action_env {
    struct wharf *w;
    struct store *st;
    struct store_connector row;
    json_t *config;             /* row.config parsed */
};

/* conn_action_ctx.open: the stored connector, opened as the engine would. */
static struct connector *action_open(struct conn_action_ctx *x,
                                     struct error *err)
{
    struct action_env *e = x->env;
    return connector_new(x->cenv, x->name, x->type, e->config, err);
}

/* conn_action_ctx.config_set: compare-and-set of one key of the stored
 * config, checked as an import checks it. */
static int action_config_set(struct conn_action_ctx *x, const char *key,
                             json_t *value, struct error *err)
{
    struct action_env *e = x->env;
    json_t *cfg = json_copy(e->config);
    char *text = NULL;
    int rc = -1;
    if (cfg == NULL || json_object_set_new(cfg, key, value) < 0)
        error_set(err, "out of memory");
    else if (connector_check(x->name, x->type, cfg, err) == 0 &&
             (text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        error_set(err, "out of memory");
    if (text)
        rc = store_connector_config_set(e->st, x->name, e->row.config, text,
                                        err);
    if (cfg == NULL)
        json_decref(value);
    json_decref(cfg);
    free(text);
    return rc;
}

int flow_action_run(struct wharf *w, struct store *st, const char *name,
                    const struct conn_action *a, const json_t *args,
                    struct conn_action_ctx *x, struct error *err)
{
    struct action_env e = { .w = w, .st = st };
    json_error_t je;
    memset(x, 0, sizeof(*x));
    int found = row_find(st, name, &e.row, err);
    if (found <= 0)
        return found < 0 ? CONN_ACT_ERROR : CONN_ACT_NOT_FOUND;
    e.config = json_loads(e.row.config, 0, &je);
    int rc = CONN_ACT_ERROR;
    x->cenv = e.config ? conn_env_new(w, err) : NULL;
    if (e.config == NULL) {
        error_set(err, "stored config of '%s' is not JSON", name);
    } else if (x->cenv != NULL) {
        x->name = e.row.name;
        x->type = e.row.type;
        x->config = e.config;
        x->args = args;
        x->open = action_open;
        x->config_set = action_config_set;
        x->env = &e;
        rc = a->fn(x, err);
    }
    x->name = x->type = NULL;
    x->config = x->args = NULL;
    x->env = NULL;
    conn_env_free(x->cenv);
    x->cenv = NULL;
    json_decref(e.config);
    row_clear(&e.row);
    return rc;
}

void flow_action_clear(struct conn_action_ctx *x)
{
    json_decref(x->result);
    x->result = NULL;
}

/* ---- the OAuth redirect ----------------------------------------------------- */

struct oauth_row {
    const struct store_connector *row;
    json_t *config;
};

static struct connector *oauth_open(struct conn_oauth_ctx *x,
                                    struct error *err)
{
    struct oauth_row *r = x->priv;
    return connector_new(x->env, r->row->name, r->row->type, r->config, err);
}

int flow_oauth_callback(struct wharf *w, struct store *st, const char *state,
                        const struct secret *code, char *conn, size_t n,
                        struct error *err)
{
    struct store_flow f;
    if (n)
        conn[0] = '\0';
    if (store_flow_get(st, &f, err) < 0)
        return CONN_OAUTH_FAILED;
    struct conn_env *env = conn_env_new(w, err);
    enum conn_oauth_rc rc = env ? CONN_OAUTH_UNKNOWN : CONN_OAUTH_FAILED;
    for (size_t i = 0; i < f.nconns && rc == CONN_OAUTH_UNKNOWN; i++) {
        const struct connector_type *t = connector_type_find(f.conns[i].type);
        json_error_t je;
        struct oauth_row r = { &f.conns[i], NULL };
        if (t == NULL || t->oauth_callback == NULL ||
            (r.config = json_loads(f.conns[i].config, 0, &je)) == NULL)
            continue;
        struct conn_oauth_ctx x = { .name = f.conns[i].name,
            .config = r.config, .env = env, .open = oauth_open, .priv = &r };
        rc = t->oauth_callback(&x, state, code, err);
        if (rc != CONN_OAUTH_UNKNOWN)
            snprintf(conn, n, "%s", f.conns[i].name);
        json_decref(r.config);
    }
    if (rc == CONN_OAUTH_UNKNOWN)
        error_set(err, "no authorization is pending with this state (unknown, "
                  "expired or already used): start it again");
    conn_env_free(env);
    store_flow_clear(&f);
    return rc;
}

int flow_connector_insecure(const char *config_json)
{
    json_error_t je;
    json_t *cfg = json_loads(config_json, 0, &je);
    int insecure = json_is_true(json_object_get(cfg, "insecure"));
    json_decref(cfg);
    return insecure;
}

/* ---- runtime ------------------------------------------------------------------ */

static struct connector *load_one(struct conn_env *env, int64_t generation,
                                  const struct store_connector *sc)
{
    struct error err = {0};
    json_error_t je;
    json_t *cfg = json_loads(sc->config, 0, &je);
    if (cfg == NULL) {
        log_error("connector %s: stored config is not JSON; left out", sc->name);
        return NULL;
    }
    struct connector *c = connector_new(env, sc->name, sc->type, cfg, &err);
    json_decref(cfg);
    if (c == NULL)
        log_error("connector %s left out: %s", sc->name, err.msg);
    else
        log_debug("connector %s (%s) opened for flow generation %lld",
                  sc->name, sc->type, (long long)generation);
    return c;
}

struct flow *flow_load(struct wharf *w, struct store *st, struct error *err)
{
    struct flow *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        error_set(err, "out of memory");
        return NULL;
    }
    if (store_flow_get(st, &f->rows, err) < 0) {
        free(f);
        return NULL;
    }
    f->generation = f->rows.generation;
    atomic_init(&f->refs, 1);
    f->conns = calloc(f->rows.nconns + 1, sizeof(*f->conns));
    if (f->conns == NULL)
        error_set(err, "out of memory");
    f->env = f->conns ? conn_env_new(w, err) : NULL;
    if (f->env == NULL) {
        flow_free(f);
        return NULL;
    }
    for (size_t i = 0; i < f->rows.nconns; i++) {
        struct connector *c = load_one(f->env, f->generation,
                                       &f->rows.conns[i]);
        if (c)
            f->conns[f->nconns++] = c;
    }
    return f;
}

struct flow *flow_hold(struct flow *f)
{
    atomic_fetch_add(&f->refs, 1);
    return f;
}

void flow_free(struct flow *f)
{
    if (f == NULL || atomic_fetch_sub(&f->refs, 1) > 1)
        return;
    if (f->nconns > 0)
        log_debug("flow generation %lld closed: its last user let go of its "
                  "%zu connector(s)", (long long)f->generation, f->nconns);
    for (size_t i = 0; i < f->nconns; i++)
        connector_free(f->conns[i]);
    free(f->conns);
    conn_env_free(f->env);
    store_flow_clear(&f->rows);
    free(f);
}

struct connector *flow_find(const struct flow *f, const char *name)
{
    for (size_t i = 0; i < f->nconns; i++)
        if (strcmp(f->conns[i]->name, name) == 0)
            return f->conns[i];
    return NULL;
}

size_t flow_next(const struct flow *f, const char *from, const char ***out)
{
    size_t n = 0;
    *out = calloc(f->rows.nlinks + 1, sizeof(**out));
    if (*out == NULL)
        return 0;
    for (size_t i = 0; i < f->rows.nlinks; i++)
        if (strcmp(f->rows.links[i].src, from) == 0)
            (*out)[n++] = f->rows.links[i].dst;
    return n;
}
