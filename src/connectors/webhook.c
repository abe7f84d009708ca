/*
 * webhook.c - the webhook source connector (M6): a partner POSTs a payload
 * to https://PARTNER_LISTENER/webhook/NAME and it becomes a message.
 *
 * Config: WEBHOOK_OPTIONS below (`wharf connector help webhook`): path
 * (default: the connector's name) and auth (required), one of
 *     basic {user, password_file}, bearer {token_file},
 *     hmac {secret_file, header, timestamp_header, max_skew_s}:
 *        signature = hex(HMAC-SHA256(secret, timestamp "." body)), an
 *        optional "sha256=" prefix accepted; the timestamp is Unix seconds
 *        within max_skew_s of now; a signature already accepted within the
 *        window is refused (replay), also after a restart: each accepted
 *        (connector, signature) is kept in the database until its window
 *        ends (the environment's claim-once guard, conn_state_claim),
 *        claimed before the body is stored and released if it is not;
 *        the signature is also the request's
 *        intake source key, so a replay that slips through the crash
 *        window between the commit and the claim's "done" is recognized
 *        as a duplicate and stored once
 *     client_cert {subjects}: needs partner_client_ca in wharf.conf (the
 *        listener verifies the chain); the subject must be in the list
 *
 * allow_from (optional): the only IPv4 addresses or networks partners may
 * POST from (net/allow.h); any other gets 403 before its credentials are
 * looked at, and counts as a failure of the address (the defender).
 *
 * A request: credentials are checked (before the body is read, except for
 * HMAC which covers the body), the body streams into the intake (encrypted
 * as it arrives, constant memory), intake_commit makes it durable, and only
 * then the answer is 200 {"id": message id}. Wrong or missing credentials:
 * 401 and net_req_auth_failure (the defender may ban the address).
 *
 * Routing: core/routes.c serves POST /webhook (route_prefix) on the
 * partner listener and asks webhook_pick which connector's path matches.
 * Secret files are sealed by the vault at flow import (connector_secret).
 *
 * Must never: answer 2xx before intake_commit returned 0; log a header
 * value, credential or body; compare a credential in variable time.
 */
#include "connectors/connector.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "connectors/webhook_auth.h"
#include "core/intake.h"
#include "net/allow.h"
#include "net/server.h"
#include "util/id.h"
#include "util/log.h"
#include "util/secret.h"

#define WEBHOOK_PREFIX "/webhook"
#define WEBHOOK_MAX_BODY (1024LL * 1024 * 1024)
#define MAX_SUBJECTS 64

enum auth_type { AUTH_BASIC, AUTH_BEARER, AUTH_HMAC, AUTH_CERT };

struct webhook_state {
    char path[65];
    enum auth_type auth;
    struct secret *secret;      /* "user:password", token or HMAC key */
    const char *sig_header, *ts_header;
    long long max_skew;
    const char *subjects[MAX_SUBJECTS];
    size_t nsubjects;
    struct net_allow allow;     /* allow_from: who may POST */
};

/* ---- config --------------------------------------------------------------- */

static int name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static const char *path_name(const char *path)
{
    if (path && strncmp(path, WEBHOOK_PREFIX "/", sizeof(WEBHOOK_PREFIX)) == 0)
        return path + sizeof(WEBHOOK_PREFIX);
    return path;
}

static int path_valid(const char *key, const json_t *v, struct error *err)
{
    if (!name_ok(path_name(json_string_value(v))))
        return error_set(err, "%s must be NAME or /webhook/NAME with NAME of "
                         "[A-Za-z0-9._-]{1,64}", key);
    return 0;
}

static int user_valid(const char *key, const json_t *v, struct error *err)
{
    const char *user = json_string_value(v);
    if (user[0] == '\0' || strchr(user, ':'))
        return error_set(err, "%s must be a user name without ':'", key);
    return 0;
}

static int allow_valid(const char *key, const json_t *v, struct error *err)
{
    struct net_allow a;
    if (net_allow_json(&a, v, err) < 0)
        return error_prefix(err, "%s", key), -1;
    return 0;
}

static const struct conn_option WEBHOOK_OPTIONS[] = {
    { "path", CONN_STRING, 0, NULL, 0, 0, NULL, NULL,
      "NAME or /webhook/NAME: partners POST to https://PARTNER_LISTENER/"
      "webhook/NAME (default: the connector's name)", path_valid },
    { "auth", CONN_OBJECT, CONN_REQUIRED, NULL, 0, 0, NULL, NULL,
      "how partners authenticate: basic, bearer, hmac or client_cert", NULL },
    { "auth.type", CONN_ENUM, CONN_REQUIRED, NULL, 0, 0,
      "basic|bearer|hmac|client_cert", NULL, "the kind of credentials",
      NULL },
    { "auth.user", CONN_STRING, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=basic", "the user name partners send", user_valid },
    { "auth.password_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=basic", "the password partners send", NULL },
    { "auth.token_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=bearer", "the bearer token partners send", NULL },
    { "auth.secret_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=hmac", "the HMAC-SHA256 key: signature = hex(HMAC(key, "
      "timestamp \".\" body))", NULL },
    { "auth.header", CONN_STRING, 0, "X-Signature", 0, 0, NULL,
      "auth.type=hmac", "the header carrying the signature", NULL },
    { "auth.timestamp_header", CONN_STRING, 0, "X-Timestamp", 0, 0, NULL,
      "auth.type=hmac", "the header carrying the Unix time signed", NULL },
    { "auth.max_skew_s", CONN_INT, CONN_ADVANCED, "300", 1, 3600, NULL,
      "auth.type=hmac", "how far the timestamp may be from now (and how "
      "long a signature is remembered against replays)", NULL },
    { "auth.subjects", CONN_LIST, CONN_REQUIRED, NULL, 1, MAX_SUBJECTS,
      "string", "auth.type=client_cert", "the certificate subjects allowed "
      "(\"CN=..,O=..\"); needs partner_client_ca in wharf.conf", NULL },
    { "allow_from", CONN_LIST, 0, NULL, 1, NET_ALLOW_MAX, "string", NULL,
      "the only addresses partners may POST from: IPv4 addresses or "
      "networks (192.0.2.0/24); unset: any", allow_valid },
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

static void webhook_close(struct connector *c)
{
    struct webhook_state *ws = c->state;
    if (ws == NULL)
        return;
    secret_free(ws->secret);
    free(ws);
    c->state = NULL;
}

static enum wh_status webhook_open(struct connector *c, struct error *err)
{
    struct webhook_state *ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        return error_set(err, "out of memory"), WH_FAIL;
    c->state = ws;
    const char *type = conn_str(c, "auth.type");
    const char *p = conn_str(c, "path");
    snprintf(ws->path, sizeof(ws->path), "%s", p ? path_name(p) : c->name);
    if (net_allow_json(&ws->allow, conn_get(c, "allow_from"), err) < 0)
        goto fail;
    if (strcmp(type, "basic") == 0) {
        ws->auth = AUTH_BASIC;
        const struct secret *pw = connector_secret(c, "auth.password_file");
        const char *user = conn_str(c, "auth.user");
        size_t ul = strlen(user);
        ws->secret = secret_new(ul + 1 + secret_len(pw));
        if (ws->secret) {
            unsigned char *d = secret_data_mut(ws->secret);
            memcpy(d, user, ul);
            d[ul] = ':';
            memcpy(d + ul + 1, secret_data(pw), secret_len(pw));
        }
        if (ws->secret == NULL) {
            error_set(err, "out of memory");
            goto fail;
        }
    } else if (strcmp(type, "bearer") == 0 || strcmp(type, "hmac") == 0) {
        int hmac = type[0] == 'h';
        ws->auth = hmac ? AUTH_HMAC : AUTH_BEARER;
        const struct secret *sec = connector_secret(c, hmac
                                        ? "auth.secret_file" : "auth.token_file");
        ws->secret = secret_from(secret_data(sec), secret_len(sec));
        if (ws->secret == NULL) {
            error_set(err, "out of memory");
            goto fail;
        }
        ws->sig_header = conn_str(c, "auth.header");
        ws->ts_header = conn_str(c, "auth.timestamp_header");
        ws->max_skew = conn_int(c, "auth.max_skew_s");
    } else {
        ws->auth = AUTH_CERT;
        size_t i;
        json_t *v;
        json_array_foreach(conn_get(c, "auth.subjects"), i, v) {
            ws->subjects[ws->nsubjects++] = json_string_value(v);
        }
    }
    return WH_OK;
fail:
    webhook_close(c);
    return WH_FAIL;
}

static enum wh_status webhook_test(struct connector *c, struct error *err)
{
    struct webhook_state *ws = c->state;
    if (ws->auth == AUTH_CERT && c->env &&
        !c->env->settings->partner_client_certs)
        return error_set(err, "auth client_cert needs partner_client_ca in "
                         "wharf.conf"), WH_FAIL;
    return WH_OK;
}

/* ---- signatures seen (the environment's claim-once guard) ------------------- */

/* Claim hc's signature for connector c: 0 claimed, 1 a replay, -1 the
 * database failed. */
static int replay_claim(struct connector *c, struct webhook_state *ws,
                        const char sig[65], long long ts)
{
    struct error err = {0};
    if (c->env == NULL)
        return -1;
    int rc = conn_state_claim(c->env->state, c->name, sig,
                              (ts + ws->max_skew + 1) * 1000LL, &err);
    if (rc < 0)
        conn_log(c, LOG_ERROR, NULL, "cannot record a signature: %s",
                 err.msg);
    return rc;
}

/* The claimed request was stored (done) or not (released). */
static void replay_settle(struct connector *c, const char sig[65], int done)
{
    struct error err = {0};
    if (c->env == NULL ||
        conn_state_settle(c->env->state, c->name, sig, done, &err) < 0)
        conn_log(c, LOG_WARNING, NULL, "signature claim not %s: %s",
                 done ? "recorded" : "released", err.msg);
}

/* ---- the request ---------------------------------------------------------- */

static enum wh_status refuse(struct net_request *r, const char *why)
{
    net_req_auth_failure(r);
    net_reply_header(r, "WWW-Authenticate", "Basic realm=\"wharf\"");
    net_reply_error(r, 401, "unauthorized", "%s", why);
    return WH_OK;
}

/* Check credentials that do not depend on the body. 0 ok, -1 refused. */
static int auth_head(struct webhook_state *ws, struct net_request *r,
                     const char **why)
{
    const char *h = net_req_header(r, "Authorization");
    if (ws->auth == AUTH_CERT) {
        const char *subj = net_req_client_subject(r);
        *why = "a client certificate with an allowed subject is required";
        for (size_t i = 0; subj && i < ws->nsubjects; i++)
            if (strcmp(subj, ws->subjects[i]) == 0)
                return 0;
        return -1;
    }
    if (ws->auth == AUTH_HMAC)
        return 0;
    *why = "missing or wrong credentials";
    struct secret *got = webhook_credential(h, ws->auth == AUTH_BASIC);
    int ok = got && secret_equal(got, ws->secret);
    secret_free(got);
    return ok ? 0 : -1;
}

struct hmac_check {
    EVP_MAC_CTX *ctx;
    char sig[65];               /* the lower-case hex the partner sent */
    long long ts;
    int claimed;                /* the signature is claimed in the store */
    char source_key[72];        /* "hmac " + sig: the intake's dedup key */
};

/* Timestamp in the window, signature well-formed; the MAC started over
 * "timestamp." . 0 or -1 with *why. */
static int hmac_start(struct webhook_state *ws, struct net_request *r,
                      struct hmac_check *hc, const char **why)
{
    const char *ts = net_req_header(r, ws->ts_header);
    const char *sig = net_req_header(r, ws->sig_header);
    *why = "missing or wrong signature";
    if (ts == NULL || webhook_signature(sig, hc->sig) < 0)
        return -1;
    snprintf(hc->source_key, sizeof(hc->source_key), "hmac %s", hc->sig);
    if (webhook_timestamp(ts, (long long)time(NULL), ws->max_skew,
                          &hc->ts) < 0) {
        *why = "timestamp missing or outside the allowed window";
        return -1;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    hc->ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (hc->ctx == NULL ||
        !EVP_MAC_init(hc->ctx, secret_data(ws->secret),
                      secret_len(ws->secret), params) ||
        !EVP_MAC_update(hc->ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(hc->ctx, (const unsigned char *)".", 1)) {
        *why = "internal error";
        return -2;
    }
    return 0;
}

/* After the body: the MAC matches and was not seen before (claimed). */
static int hmac_finish(struct connector *c, struct webhook_state *ws,
                       struct hmac_check *hc, const char **why)
{
    unsigned char md[32];
    size_t mdlen = 0;
    char hex[65];
    *why = "missing or wrong signature";
    if (!EVP_MAC_final(hc->ctx, md, &mdlen, sizeof(md)) || mdlen != 32)
        return -1;
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (CRYPTO_memcmp(hex, hc->sig, 64) != 0)
        return -1;
    int rc = replay_claim(c, ws, hc->sig, hc->ts);
    if (rc == 1)
        *why = "this signature was already used (replay)";
    if (rc < 0)
        *why = "cannot check the signature for a replay now; retry later";
    hc->claimed = rc == 0;
    return rc == 0 ? 0 : (rc < 0 ? -2 : -1);
}

/* The file name the partner gave (X-Wharf-Filename or X-Filename). */
static const char *req_filename(struct net_request *r, char *out, size_t n)
{
    const char *f = net_req_header(r, "X-Wharf-Filename");
    if (f == NULL)
        f = net_req_header(r, "X-Filename");
    if (f == NULL || f[0] == '\0' || f[0] == '.' || strchr(f, '/') ||
        strlen(f) >= n)
        return NULL;
    snprintf(out, n, "%s", f);
    return out;
}

static enum wh_status webhook_route(struct connector *c,
                                    struct http_exchange *x)
{
    struct webhook_state *ws = c->state;
    struct net_request *r = x->req;
    const char *why = NULL;
    struct hmac_check hc = {0};
    if (!net_allow_has_text(&ws->allow, net_req_address(r))) {
        conn_log(c, LOG_WARNING, NULL, "refused a request from %s: not in "
                 "allow_from", net_req_address(r));
        net_req_auth_failure(r);
        return net_reply_error(r, 403, "forbidden", "this address may not "
                               "post here"), WH_OK;
    }
    if (auth_head(ws, r, &why) < 0) {
        conn_log(c, LOG_WARNING, NULL, "refused a request from %s: %s",
                 net_req_address(r), why);
        return refuse(r, why);
    }
    if (ws->auth == AUTH_HMAC) {
        int rc = hmac_start(ws, r, &hc, &why);
        if (rc < 0) {
            EVP_MAC_CTX_free(hc.ctx);
            if (rc == -2)
                return net_reply_error(r, 500, "internal", "HMAC"), WH_OK;
            conn_log(c, LOG_WARNING, NULL, "refused a request from %s: %s",
                     net_req_address(r), why);
            return refuse(r, why);
        }
    }
    struct error err = {0};
    char fname[256];
    unsigned char *buf = malloc(MESSAGE_PAYLOAD_CHUNK);
    int status = 500;
    const char *code = "internal";
    if (buf == NULL ||
        intake_begin(x->in, req_filename(r, fname, sizeof(fname)),
                     hc.ctx ? hc.source_key : NULL, &err) < 0) {
        free(buf);
        EVP_MAC_CTX_free(hc.ctx);
        return net_reply_error(r, 503, "unavailable", "cannot store the "
                               "message now"), WH_OK;
    }
    ssize_t got;
    int failed = 0;
    while ((got = net_body_read(r, buf, MESSAGE_PAYLOAD_CHUNK)) > 0) {
        if ((hc.ctx && !EVP_MAC_update(hc.ctx, buf, (size_t)got)) ||
            intake_write(x->in, buf, (size_t)got, &err) < 0) {
            failed = 1;
            status = 503;
            code = "unavailable";
            break;
        }
    }
    free(buf);
    if (!failed && got < 0) {
        failed = 1;
        status = got == NET_BODY_TOO_LARGE ? 413 : 400;
        code = got == NET_BODY_TOO_LARGE ? "too_large" : "bad_request";
        error_set(&err, got == NET_BODY_TOO_LARGE ? "body too large"
                  : "cannot read the body");
    }
    if (!failed && hc.ctx) {
        int rc = hmac_finish(c, ws, &hc, &why);
        if (rc < 0) {
            intake_cancel(x->in);
            EVP_MAC_CTX_free(hc.ctx);
            conn_log(c, LOG_WARNING, NULL, "refused a request from %s: %s",
                     net_req_address(r), why);
            if (rc == -2)
                return net_reply_error(r, 503, "unavailable", "%s", why), WH_OK;
            return refuse(r, why);
        }
    }
    EVP_MAC_CTX_free(hc.ctx);
    if (failed) {
        intake_cancel(x->in);
        conn_log(c, LOG_WARNING, NULL, "request from %s not stored: %s",
                 net_req_address(r), err.msg);
        return net_reply_error(r, status, code, "%s", err.msg), WH_OK;
    }
    if (intake_end(x->in, &err) < 0 || intake_commit(x->in, &err) < 0) {
        if (hc.claimed)
            replay_settle(c, hc.sig, 0);
        conn_log(c, LOG_ERROR, NULL, "cannot store a webhook message: %s",
                 err.msg);
        return net_reply_error(r, 503, "unavailable", "cannot store the "
                               "message now"), WH_OK;
    }
    if (hc.claimed)
        replay_settle(c, hc.sig, 1);
    const char *dup = intake_count(x->in) ? intake_duplicate(x->in, 0) : NULL;
    const char *id = dup ? dup : intake_id(x->in, 0);
    conn_log(c, LOG_INFO, id, "received %s from %s", dup ? "a duplicate"
             : "a message", net_req_address(r));
    json_t *body = json_pack("{s:s}", "id", id);
    net_reply_json(r, 200, body);
    json_decref(body);
    return WH_OK;
}

/* POST /webhook/NAME goes to the webhook whose path is NAME. */
static struct connector *webhook_pick(struct connector *const *conns,
                                      size_t n, struct net_request *req)
{
    const char *name = net_req_path(req) + sizeof(WEBHOOK_PREFIX) - 1;
    if (*name != '/' || !name_ok(name + 1))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct webhook_state *ws = conns[i]->state;
        if (strcmp(ws->path, name + 1) == 0)
            return conns[i];
    }
    return NULL;
}

static int webhook_is_source(const json_t *cfg)
{
    (void)cfg;
    return 1;       /* everything it receives goes on */
}

static const struct conn_action WEBHOOK_ACTIONS[] = {
    CONN_ACTION_TEST,
    { NULL, NULL, 0, NULL, NULL, NULL, NULL },
};

const struct connector_type connector_webhook = {
    .name = "webhook",
    .summary = "partners POST payloads to https://PARTNER_LISTENER/webhook/"
               "NAME (M6)",
    .options = WEBHOOK_OPTIONS,
    .actions = WEBHOOK_ACTIONS,
    .is_source = webhook_is_source,
    .open = webhook_open,
    .route = webhook_route,
    .route_prefix = WEBHOOK_PREFIX,
    .route_max_body = WEBHOOK_MAX_BODY,
    .route_pick = webhook_pick,
    .test = webhook_test,
    .close = webhook_close,
};
