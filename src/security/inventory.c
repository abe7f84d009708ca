/*
 * inventory.c - the asset inventory of inventory.h (R23): connectors,
 * endpoints, partners, certificates, keys, users and tokens of one data
 * dir, as JSON and CSV.
 *
 * Knows no connector type by name: a connector's endpoints come from its
 * type's table (folders: CONN_FOLDER options; URLs: url options; SSH:
 * host/port of a type that pins host keys; AS2: its partner's URL; routes
 * on the partner listener). Owns the JSON it returns. Must never put a
 * key's or a secret's bytes, a password hash or a token in it.
 */
#include "security/inventory.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connectors/connector.h"
#include "core/wharf.h"
#include "net/client.h"
#include "net/server.h"
#include "store/auth_store.h"
#include "store/partner_store.h"
#include "store/secret_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/strbuf.h"
#include "vault/vault.h"

#define DAY_MS 86400000LL

static json_t *iso(int64_t ms)
{
    char t[32];
    if (ms <= 0)
        return json_null();
    time_iso(ms, t, sizeof(t));
    return json_string(t);
}

/* ---- endpoints --------------------------------------------------------------------- */

static void endpoint_url(json_t *eps, const char *owner, const char *url)
{
    char scheme[16], host[256];
    int port = 0;
    struct error err = {0};
    if (net_url_parts(url, scheme, sizeof(scheme), host, sizeof(host), &port,
                      &err) < 0)
        return;
    json_array_append_new(eps, json_pack("{s:s, s:s, s:s, s:i, s:b, s:b}",
        "owner", owner, "protocol", scheme, "host", host, "port", port,
        "tls", strcmp(scheme, "https") == 0, "encrypted",
        strcmp(scheme, "https") == 0));
}

static void endpoint_listener(json_t *eps, const char *which,
                              const char *spec, const char *client_ca)
{
    char host[64], owner[64];
    int port = 0;
    struct error err = {0};
    if (net_listen_parse(spec, host, sizeof(host), &port, &err) < 0)
        return;
    snprintf(owner, sizeof(owner), "listener:%s", which);
    json_array_append_new(eps, json_pack("{s:s, s:s, s:s, s:i, s:b, s:b, "
        "s:b}", "owner", owner, "protocol", "https", "host", host, "port",
        port, "tls", 1, "encrypted", 1, "mutual_tls", client_ca[0] != 0));
}

/* The endpoints of one connector, from its type's table. */
static void endpoints_of(json_t *eps, const struct connector_type *t,
                         const char *name, const json_t *cfg)
{
    char owner[300];
    snprintf(owner, sizeof(owner), "connector:%s", name);
    for (const struct conn_option *o = t->options; o && o->key; o++) {
        const json_t *v = connector_config_get(cfg, o->key);
        if (!json_is_string(v))
            continue;
        if (o->type == CONN_FOLDER)
            json_array_append_new(eps, json_pack("{s:s, s:s, s:s, s:s}",
                "owner", owner, "protocol", "file", "path",
                json_string_value(v), "use", o->key));
        else if (o->type == CONN_URL && strchr(o->key, '.') == NULL)
            endpoint_url(eps, owner, json_string_value(v));
    }
    const json_t *host = json_object_get(cfg, "host");
    if (json_is_string(host) &&
        connector_option_find(t->options, "host_key_sha256")) {
        const json_t *port = json_object_get(cfg, "port");
        json_array_append_new(eps, json_pack("{s:s, s:s, s:s, s:I, s:b, "
            "s:b, s:b}", "owner", owner, "protocol", t->name, "host",
            json_string_value(host), "port", json_is_integer(port)
            ? json_integer_value(port) : (json_int_t)22, "tls", 0,
            "encrypted", 1, "host_key_pinned", json_is_string(
                json_object_get(cfg, "host_key_sha256"))));
    }
    if (t->route_prefix)
        json_array_append_new(eps, json_pack("{s:s, s:s, s:s, s:b, s:b}",
            "owner", owner, "protocol", "https", "path", t->route_prefix,
            "tls", 1, "encrypted", 1));
}

/* ---- connectors and partners -------------------------------------------------------- */

static const char *direction(const struct connector_type *t,
                             const json_t *cfg)
{
    int in = (t->is_source && t->is_source(cfg)) || t->needs_partner;
    int out = t->deliver != NULL && (!in || t->needs_partner);
    return in && out ? "both" : in ? "in" : "out";
}

static void add_connectors(json_t *inv, const struct store_flow *f)
{
    json_t *conns = json_object_get(inv, "connectors");
    json_t *eps = json_object_get(inv, "endpoints");
    for (size_t i = 0; i < f->nconns; i++) {
        json_t *cfg = json_loads(f->conns[i].config, 0, NULL);
        const struct connector_type *t = connector_type_find(f->conns[i].type);
        const json_t *p = json_object_get(cfg, "partner");
        const json_t *r = json_object_get(cfg, "retention_days");
        json_array_append_new(conns, json_pack("{s:s, s:s, s:s, s:O*, s:O*}",
            "name", f->conns[i].name, "type", f->conns[i].type, "direction",
            t ? direction(t, cfg) : "?", "partner", p, "retention_days", r));
        if (t)
            endpoints_of(eps, t, f->conns[i].name, cfg);
        json_decref(cfg);
    }
}

static void add_partners(json_t *inv, const struct store_flow *f)
{
    json_t *parts = json_object_get(inv, "partners");
    json_t *eps = json_object_get(inv, "endpoints");
    for (size_t i = 0; i < f->npartners; i++) {
        json_t *cfg = json_loads(f->partners[i].config, 0, NULL);
        const char *url = json_string_value(json_object_get(cfg, "url"));
        json_t *names = json_array();
        for (size_t k = 0; k < f->nconns; k++) {
            json_t *c = json_loads(f->conns[k].config, 0, NULL);
            const char *p = json_string_value(json_object_get(c, "partner"));
            if (p && strcmp(p, f->partners[i].name) == 0)
                json_array_append_new(names, json_string(f->conns[k].name));
            json_decref(c);
        }
        json_array_append_new(parts, json_pack("{s:s, s:s, s:s*, s:o}",
            "name", f->partners[i].name, "as2_id", f->partners[i].as2_id,
            "url", url, "connectors", names));
        char owner[300];
        snprintf(owner, sizeof(owner), "partner:%s", f->partners[i].name);
        if (url)
            endpoint_url(eps, owner, url);
        json_decref(cfg);
    }
}

/* ---- certificates ------------------------------------------------------------------ */

static void name_text(X509_NAME *n, char *out, size_t len)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, n, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB)
        >= 0) {
        int k = BIO_read(b, out, (int)len - 1);
        out[k > 0 ? k : 0] = '\0';
    }
    BIO_free(b);
}

static int64_t asn1_ms(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    return ASN1_TIME_to_tm(t, &tm) == 1 ? (int64_t)timegm(&tm) * 1000 : 0;
}

static const char *cert_status(int64_t not_after, int64_t now)
{
    return not_after <= now ? "expired"
           : not_after - now < 30 * DAY_MS ? "expiring" : "valid";
}

/* One certificate as an inventory row. */
static json_t *cert_row(X509 *x, const char *owner, const char *use,
                        int64_t now)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char subject[512], issuer[512], hex[2 * EVP_MAX_MD_SIZE + 1];
    name_text(X509_get_subject_name(x), subject, sizeof(subject));
    name_text(X509_get_issuer_name(x), issuer, sizeof(issuer));
    X509_digest(x, EVP_sha256(), md, &mdlen);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * mdlen] = '\0';
    int64_t nb = asn1_ms(X509_get0_notBefore(x));
    int64_t na = asn1_ms(X509_get0_notAfter(x));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "owner",
                     owner, "use", use, "subject", subject, "issuer", issuer,
                     "sha256", hex, "not_before", iso(nb), "not_after",
                     iso(na), "status", cert_status(na, now));
}

/* The certificates of a PEM file (a CA bundle may hold several). */
static void add_cert_file(json_t *certs, const char *path, const char *owner,
                          const char *use, int64_t now)
{
    FILE *f = fopen(path, "re");
    X509 *x;
    while (f && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        json_array_append_new(certs, cert_row(x, owner, use, now));
        X509_free(x);
    }
    if (f)
        fclose(f);
}

static void conf_path(const struct wharf *w, const char *p, char *out,
                      size_t n)
{
    if (p[0] == '/')
        snprintf(out, n, "%s", p);
    else
        wharf_path(w, p, out, n);
}

static int add_certificates(json_t *inv, struct wharf *w, struct store *st,
                            struct error *err)
{
    json_t *certs = json_object_get(inv, "certificates");
    int64_t now = time_now_ms();
    char path[4200];
    conf_path(w, w->conf.tls_cert, path, sizeof(path));
    add_cert_file(certs, path, "listener", "the admin and partner "
                  "listeners' TLS certificate", now);
    if (w->conf.admin_client_ca[0])
        add_cert_file(certs, w->conf.admin_client_ca, "listener:admin",
                      "CA of the admin listener's client certificates", now);
    if (w->conf.partner_client_ca[0])
        add_cert_file(certs, w->conf.partner_client_ca, "listener:partner",
                      "CA of the partner listener's client certificates",
                      now);
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, NULL, 1, &c, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = c[i].der;
        X509 *x = d2i_X509(NULL, &p, (long)c[i].der_len);
        int mine = c[i].owner[0] == '\0';
        if (x)
            json_array_append_new(certs, cert_row(x, mine ? "(profile)"
                : c[i].owner, mine ? "the AS2 profile: signs, decrypts"
                : "the partner's AS2 certificate: verifies, encrypts to it",
                now));
        X509_free(x);
    }
    store_certs_free(c, n);
    return 0;
}

/* ---- keys ---------------------------------------------------------------------------- */

static void key_row(json_t *keys, const char *kind, const char *id,
                    const char *owner, const char *use, const char *where)
{
    json_array_append_new(keys, json_pack("{s:s, s:s*, s:s, s:s, s:s}",
        "kind", kind, "id", id, "owner", owner, "use", use, "where", where));
}

static void add_vault_keys(json_t *keys, struct wharf *w, int in_serve)
{
    const char *where = in_serve ? "DIR/keystore, held by the key process"
                                 : "DIR/keystore (mode 0600)";
    const char *active = vault_active_id(w->vault);
    key_row(keys, "master", active, "wharf", "active master key: wraps "
            "payload data keys and seals secrets (AES-256-GCM)", where);
    for (size_t i = 0; i < vault_key_count(w->vault); i++) {
        const char *id = vault_key_id(w->vault, i);
        if (id && active && strcmp(id, active) != 0)
            key_row(keys, "master", id, "wharf", "retired master key (an "
                    "unfinished rotation)", where);
    }
    key_row(keys, "audit-signing", NULL, "wharf", "signs audit checkpoints "
            "and the head anchor (Ed25519)", where);
    char path[4200];
    conf_path(w, w->conf.tls_key, path, sizeof(path));
    key_row(keys, "tls", NULL, "listener", "the listeners' TLS private key",
            path);
}

static int add_stored_keys(json_t *keys, struct store *st,
                           const struct store_flow *f, struct error *err)
{
    struct store_cert *c;
    size_t n;
    if (store_certs_list(st, "", 1, &c, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char id[17];
        snprintf(id, sizeof(id), "%.16s", c[i].id);
        if (c[i].key_len)
            key_row(keys, "as2-profile", id, "(profile)", "AS2 signing and "
                    "decryption key of the certificate with this "
                    "fingerprint", "wharf.db, sealed by the vault");
    }
    store_certs_free(c, n);
    for (size_t i = 0; i < f->nconns; i++) {
        char **names = NULL;
        size_t k = 0;
        if (store_csecret_names(st, f->conns[i].name, "", &names, &k,
                                err) < 0)
            return -1;
        for (size_t j = 0; j < k; j++) {
            key_row(keys, "connector-secret", names[j], f->conns[i].name,
                    strncmp(names[j], "state:", 6) == 0 ? "obtained by the "
                    "connector (e.g. OAuth tokens)" : "a secret or file of "
                    "the connector's config", "wharf.db, sealed by the "
                    "vault");
            free(names[j]);
        }
        free(names);
    }
    return 0;
}

/* ---- people and programs ----------------------------------------------------------------- */

static int add_users(json_t *inv, struct store *st, struct error *err)
{
    struct store_user *u;
    size_t n;
    if (store_user_list(st, &u, &n, err) < 0)
        return -1;
    json_t *users = json_object_get(inv, "users");
    for (size_t i = 0; i < n; i++)
        json_array_append_new(users, json_pack("{s:s, s:s, s:s, s:b}",
            "name", u[i].name, "role", u[i].role, "mfa", u[i].totp_enabled
            ? "totp" : u[i].oidc_subject ? "oidc" : "none", "disabled",
            u[i].disabled != 0));
    store_users_free(u, n);
    struct store_token *t;
    if (store_token_list(st, &t, &n, err) < 0)
        return -1;
    json_t *tokens = json_object_get(inv, "tokens");
    for (size_t i = 0; i < n; i++)
        if (!t[i].revoked_at)
            json_array_append_new(tokens, json_pack("{s:s, s:s, s:s, s:s*, "
                "s:o, s:o}", "id", t[i].id, "name", t[i].name, "role",
                t[i].role, "owner", t[i].owner, "expires",
                iso(t[i].expires_at), "last_used", iso(t[i].last_used_at)));
    store_tokens_free(t, n);
    return 0;
}

json_t *inventory_json(struct wharf *w, struct store *st, int in_serve,
                       struct error *err)
{
    struct store_flow f;
    if (store_flow_get(st, &f, err) < 0)
        return NULL;
    json_t *inv = json_pack("{s:[], s:[], s:[], s:[], s:[], s:[], s:[]}",
                            "connectors", "endpoints", "partners",
                            "certificates", "keys", "users", "tokens");
    json_t *eps = json_object_get(inv, "endpoints");
    endpoint_listener(eps, "admin", w->conf.admin_listen,
                      w->conf.admin_client_ca);
    endpoint_listener(eps, "partner", w->conf.partner_listen,
                      w->conf.partner_client_ca);
    add_connectors(inv, &f);
    add_partners(inv, &f);
    add_vault_keys(json_object_get(inv, "keys"), w, in_serve);
    int rc = add_certificates(inv, w, st, err);
    if (rc == 0)
        rc = add_stored_keys(json_object_get(inv, "keys"), st, &f, err);
    if (rc == 0)
        rc = add_users(inv, st, err);
    store_flow_clear(&f);
    if (rc < 0) {
        json_decref(inv);
        return NULL;
    }
    return inv;
}

/* ---- CSV --------------------------------------------------------------------------------- */

static const char *const CSV_COLS[] = {
    "kind", "name", "owner", "type", "direction", "role", "use", "protocol",
    "host", "port", "path", "tls", "encrypted", "mutual_tls", "subject",
    "issuer", "sha256", "not_before", "not_after", "status", "mfa",
    "disabled", "partner", "as2_id", "url", "id", "where", "expires",
    "last_used", NULL,
};

/* One field, quoted when it holds a comma, a quote or a line break. */
static void csv_field(struct strbuf *b, const char *v)
{
    if (strpbrk(v, ",\"\r\n") == NULL) {
        strbuf_add(b, v, strlen(v));
        return;
    }
    strbuf_add(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"')
            strbuf_add(b, "\"\"", 2);
        else
            strbuf_add(b, p, 1);
    }
    strbuf_add(b, "\"", 1);
}

/* A JSON value as CSV text: strings as they are, numbers, true/false,
 * arrays joined by ';'. */
static void csv_value(const json_t *v, char *out, size_t n)
{
    out[0] = '\0';
    if (json_is_string(v)) {
        snprintf(out, n, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(out, n, "%lld", (long long)json_integer_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, n, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        size_t i, len = 0;
        json_t *x;
        json_array_foreach(v, i, x) {
            int k = snprintf(out + len, n - len, "%s%s", i ? ";" : "",
                             json_string_value(x) ? json_string_value(x)
                                                  : "");
            if (k < 0 || (size_t)k >= n - len)
                break;
            len += (size_t)k;
        }
    }
}

static void csv_row(struct strbuf *b, const char *kind, const json_t *o)
{
    char val[1024];
    for (int c = 0; CSV_COLS[c]; c++) {
        if (c)
            strbuf_add(b, ",", 1);
        if (c == 0)
            snprintf(val, sizeof(val), "%s", kind);
        else
            csv_value(json_object_get(o, CSV_COLS[c]), val, sizeof(val));
        csv_field(b, val);
    }
    strbuf_add(b, "\r\n", 2);
}

char *inventory_csv(const json_t *inv)
{
    static const char *const sections[][2] = {
        { "connectors", "connector" }, { "endpoints", "endpoint" },
        { "partners", "partner" }, { "certificates", "certificate" },
        { "keys", "key" }, { "users", "user" }, { "tokens", "token" },
    };
    struct strbuf b = {0};
    for (int c = 0; CSV_COLS[c]; c++) {
        if (c)
            strbuf_add(&b, ",", 1);
        strbuf_add(&b, CSV_COLS[c], strlen(CSV_COLS[c]));
    }
    strbuf_add(&b, "\r\n", 2);
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(inv, sections[s][0]), i, o) {
            csv_row(&b, sections[s][1], o);
        }
    }
    return strbuf_take(&b);
}
