/*
 * notify.c - the notifier of notify.h: the outbox walk per channel, the
 * texts of a notification (a subject line, a plain-text mail, a JSON
 * document, a syslog line) and the three channels.
 *
 * Owns the per-channel backoff (in memory) and the cursors (settings).
 * The cursors are shared by the nodes of a cluster, so one node sends:
 * notify_round is called only by the notifier thread that leads
 * STORE_LEAD_NOTIFY (security.c); an entry being sent when that node dies
 * is sent again by the next (at least once, never lost).
 * Outbound connections go through src/net/ only: mail.c (SMTP, TLS
 * required), client.c (the webhook POST: the one TLS policy and proxy
 * rule), syslog.c. Credentials live in struct secret from unsealing to
 * their use and are wiped after.
 *
 * Must never: send anywhere wharf.conf does not name; put a credential,
 * a payload byte or a header of a partner's request in a notification
 * (alerts hold names, ids and reasons only); move a cursor past an entry
 * that was not sent; let a header field carry a line break.
 */
#include "security/notify.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/wharf.h"
#include "net/client.h"
#include "net/mail.h"
#include "net/syslog.h"
#include "security/alerts.h"
#include "security/incidents.h"
#include "security/security_conf.h"
#include "store/security_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/log.h"
#include "util/secret.h"
#include "vault/vault.h"

#define NOTIFY_BATCH 20
#define NOTIFY_BACKOFF_MIN 5000
#define NOTIFY_BACKOFF_MAX 300000
#define NOTIFY_LINE_MAX 900         /* mail lines (RFC 5322: 998) */
#define NOTIFY_BODY_MAX (32 * 1024)

enum channel { CH_EMAIL, CH_WEBHOOK, CH_SYSLOG, CH_COUNT };
static const char *const CH_NAMES[CH_COUNT] = { "email", "webhook",
                                                "syslog" };

static struct {
    pthread_mutex_t mu;
    int64_t next_try[CH_COUNT];
    int64_t backoff[CH_COUNT];
} notify_g = { .mu = PTHREAD_MUTEX_INITIALIZER };

void notify_reset(void)
{
    pthread_mutex_lock(&notify_g.mu);
    memset(notify_g.next_try, 0, sizeof(notify_g.next_try));
    memset(notify_g.backoff, 0, sizeof(notify_g.backoff));
    pthread_mutex_unlock(&notify_g.mu);
}

/* ---- one notification ------------------------------------------------------- */

/* An entry of the timeline with what it is about. */
struct notice {
    const struct store_sec_event *ev;
    struct store_alert alert;       /* id 0 when about no alert */
    struct store_incident inc;      /* id 0 when about no incident */
    char host[256];
    const char *dir;
    char subject[700];
};

static void notice_clear(struct notice *n)
{
    store_alert_clear(&n->alert);
    store_incident_clear(&n->inc);
}

/* s with every byte that is not printable ASCII replaced (header-safe). */
static void notify_ascii(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

static int notice_load(struct wharf *w, struct store *st,
                       const struct store_sec_event *ev, struct notice *n,
                       struct error *err)
{
    memset(n, 0, sizeof(*n));
    n->ev = ev;
    n->dir = w->dir;
    if (gethostname(n->host, sizeof(n->host) - 1) != 0)
        snprintf(n->host, sizeof(n->host), "localhost");
    if (ev->alert_id > 0 && store_alert_get(st, ev->alert_id, &n->alert,
                                            err) < 0)
        return -1;
    if (ev->incident_id > 0 && store_incident_get(st, ev->incident_id,
                                                  &n->inc, err) < 0)
        return -1;
    const char *lv = ev->level ? ev->level : "info";
    if (n->alert.id > 0)
        snprintf(n->subject, sizeof(n->subject), "[wharf %s] alert %lld %s: "
                 "%s", lv, (long long)n->alert.id, ev->action,
                 n->alert.summary ? n->alert.summary : "");
    else if (n->inc.id > 0)
        snprintf(n->subject, sizeof(n->subject), "[wharf %s] incident %lld "
                 "(%s) %s: %s", lv, (long long)n->inc.id,
                 n->inc.tier ? n->inc.tier : "", ev->action,
                 n->inc.title ? n->inc.title : "");
    else
        snprintf(n->subject, sizeof(n->subject), "[wharf %s] %s: %s", lv,
                 ev->action, ev->text ? ev->text : "");
    notify_ascii(n->subject);
    return 0;
}

/* ---- texts ------------------------------------------------------------------- */

struct body {
    char *p;
    size_t len;
    int full;
};

/* Append one line (cut into NOTIFY_LINE_MAX pieces), CRLF-terminated. */
static void body_line(struct body *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void body_line(struct body *b, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    for (char *q = line; *q; q++)
        if (*q == '\r' || *q == '\n')
            *q = ' ';
    size_t n = strlen(line), off = 0;
    do {
        size_t take = n - off > NOTIFY_LINE_MAX ? NOTIFY_LINE_MAX : n - off;
        if (b->len + take + 3 > NOTIFY_BODY_MAX) {
            b->full = 1;
            return;
        }
        memcpy(b->p + b->len, line + off, take);
        b->len += take;
        memcpy(b->p + b->len, "\r\n", 3);
        b->len += 2;
        off += take;
    } while (off < n);
}

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void body_alert(struct body *b, const struct store_alert *a)
{
    char first[32], last[32];
    time_iso(a->first_at, first, sizeof(first));
    time_iso(a->last_at, last, sizeof(last));
    body_line(b, "Alert %lld (%s, %s)", (long long)a->id, or_dash(a->level),
              or_dash(a->state));
    body_line(b, "  summary:  %s", or_dash(a->summary));
    body_line(b, "  rule:     %s", or_dash(a->kind));
    body_line(b, "  about:    %s", or_dash(a->key));
    body_line(b, "  details:  %s", or_dash(a->details));
    body_line(b, "  seen:     %lld time(s), first %s, last %s",
              (long long)a->count, first, last);
    if (a->incident_id > 0)
        body_line(b, "  incident: %lld", (long long)a->incident_id);
}

static void body_incident(struct body *b, const struct store_incident *i)
{
    body_line(b, "Incident %lld (%s, %s; severity %s; owner %s)",
              (long long)i->id, or_dash(i->tier), or_dash(i->state),
              or_dash(i->severity), or_dash(i->owner));
    body_line(b, "  title:    %s", or_dash(i->title));
    body_line(b, "  partners: %s", or_dash(i->partners));
    body_line(b, "  messages: %s", or_dash(i->messages));
    if (i->breach_at > 0) {
        char since[32], deadline[32];
        time_iso(i->breach_at, since, sizeof(since));
        time_iso(i->breach_at + SEC_BREACH_CLOCK_MS, deadline,
                 sizeof(deadline));
        body_line(b, "  BREACH:   the 72-hour notification clock started %s; "
                  "deadline %s", since, deadline);
        body_line(b, "  tell:     %s", or_dash(i->notify));
    }
}

static void mail_headers(struct body *b, const struct notice *n,
                         const struct security_conf *c)
{
    char date[64], mid[64], hex[17];
    unsigned char rnd[8];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0, sizeof(rnd));
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    snprintf(mid, sizeof(mid), "<wharf.%lld.%s@wharf>",
             (long long)n->ev->id, hex);
    body_line(b, "From: %s", c->email_from);
    body_line(b, "To: %s", c->email_to);
    body_line(b, "Subject: %s", n->subject);
    body_line(b, "Date: %s", date);
    body_line(b, "Message-ID: %s", mid);
    body_line(b, "MIME-Version: 1.0");
    body_line(b, "Content-Type: text/plain; charset=utf-8");
    body_line(b, "Content-Transfer-Encoding: 8bit");
    body_line(b, "Auto-Submitted: auto-generated");
    body_line(b, "%s", "");
}

/* The plain-text mail of n (headers and body). Caller frees. */
static char *notify_mail_text(const struct notice *n,
                              const struct security_conf *c, size_t *len)
{
    struct body b = { malloc(NOTIFY_BODY_MAX), 0, 0 };
    if (b.p == NULL)
        return NULL;
    char when[32];
    time_iso(n->ev->at, when, sizeof(when));
    mail_headers(&b, n, c);
    body_line(&b, "Wharf on %s (data dir %s): a security notification.",
              n->host, n->dir);
    body_line(&b, "%s", "");
    body_line(&b, "%s at %s by %s: %s", or_dash(n->ev->action), when,
              or_dash(n->ev->actor), or_dash(n->ev->text));
    body_line(&b, "%s", "");
    if (n->alert.id > 0)
        body_alert(&b, &n->alert);
    if (n->inc.id > 0)
        body_incident(&b, &n->inc);
    body_line(&b, "%s", "");
    if (n->alert.id > 0)
        body_line(&b, "Next: `wharf alert show %lld`; `wharf alert ack %lld "
                  "--reason TEXT` or `wharf alert escalate %lld --owner NAME "
                  "--notes TEXT` (docs/operations.md, Incident handling).",
                  (long long)n->alert.id, (long long)n->alert.id,
                  (long long)n->alert.id);
    else if (n->inc.id > 0)
        body_line(&b, "Next: `wharf incident show %lld` (docs/operations.md, "
                  "Incident handling).", (long long)n->inc.id);
    *len = b.len;
    return b.p;
}

/* The JSON document of n (webhook). Caller frees. */
static char *notify_json_text(const struct notice *n)
{
    char when[32];
    time_iso(n->ev->at, when, sizeof(when));
    json_t *doc = json_pack("{s:{s:s, s:s}, s:{s:I, s:s, s:s, s:s, s:s, "
        "s:s}, s:s}", "wharf", "host", n->host, "data_dir", n->dir,
        "event", "id", (json_int_t)n->ev->id, "time", when,
        "actor", or_dash(n->ev->actor), "action", or_dash(n->ev->action),
        "level", or_dash(n->ev->level), "text", n->ev->text ? n->ev->text : "",
        "subject", n->subject);
    if (doc && n->alert.id > 0)
        json_object_set_new(doc, "alert", sec_alert_json(&n->alert));
    if (doc && n->inc.id > 0)
        json_object_set_new(doc, "incident",
                            sec_incident_json(&n->inc, time_now_ms()));
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

/* ---- credentials ---------------------------------------------------------------- */

static struct secret *notify_unseal(struct wharf *w, struct store *st,
                                    const char *setting, const char *context,
                                    struct error *err)
{
    char *hex = NULL;
    if (store_setting_get(st, setting, &hex, err) < 0)
        return NULL;
    if (hex == NULL)
        return NULL;
    long n = 0;
    unsigned char *blob = OPENSSL_hexstr2buf(hex, &n);
    free(hex);
    struct secret *s = blob ? vault_unseal(w->vault, context, blob,
                                           (size_t)n, err)
                            : (error_set(err, "setting %s is not a sealed "
                                         "value", setting), NULL);
    OPENSSL_free(blob);
    return s;
}

int notify_credentials_set(struct wharf *w, struct store *st,
                           const char *channel, const char *file,
                           struct error *err)
{
    int email = strcmp(channel, "email") == 0;
    if (!email && strcmp(channel, "webhook") != 0)
        return error_set(err, "credentials are for email or webhook, not "
                         "'%s'", channel);
    struct secret *s = secret_from_file(file, err);
    if (s == NULL)
        return -1;
    size_t n = secret_len(s);
    const unsigned char *d = secret_data(s);
    int rc = 0;
    if (email && (memchr(d, ':', n) == NULL || d[0] == ':'))
        rc = error_set(err, "%s must hold user:password on one line", file);
    else if (!email && n < 16)
        rc = error_set(err, "%s must hold an HMAC key of 16 bytes or more",
                       file);
    unsigned char *blob = NULL;
    size_t blen = 0;
    char *hex = NULL;
    if (rc == 0 && vault_seal(w->vault, email ? NOTIFY_EMAIL_CONTEXT
                              : NOTIFY_WEBHOOK_CONTEXT, s, &blob, &blen,
                              err) < 0)
        rc = -1;
    if (rc == 0 && (hex = malloc(2 * blen + 1)) == NULL)
        rc = error_set(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < blen; i++)
        snprintf(hex + 2 * i, 3, "%02x", blob[i]);
    if (rc == 0)
        rc = store_setting_set(st, email ? NOTIFY_EMAIL_SETTING
                               : NOTIFY_WEBHOOK_SETTING, hex, err);
    free(hex);
    free(blob);
    secret_free(s);
    return rc;
}

/* ---- the channels ---------------------------------------------------------------- */

/* Split a comma list into a NULL-terminated array of pointers into buf. */
static size_t notify_split(char *buf, const char **out, size_t max)
{
    size_t n = 0;
    for (char *p = buf, *save = NULL, *t; n + 1 < max &&
         (t = strtok_r(p, ",", &save)) != NULL; p = NULL)
        out[n++] = t;
    out[n] = NULL;
    return n;
}

static int notify_email(struct wharf *w, struct store *st,
                        const struct security_conf *c,
                        const struct notice *n, struct error *err)
{
    char to[sizeof(c->email_to)];
    const char *rcpt[64];
    snprintf(to, sizeof(to), "%s", c->email_to);
    notify_split(to, rcpt, 64);
    size_t len = 0;
    char *text = notify_mail_text(n, c, &len);
    struct error e2 = {0};
    struct secret *login = notify_unseal(w, st, NOTIFY_EMAIL_SETTING,
                                         NOTIFY_EMAIL_CONTEXT, &e2);
    struct net_proxy px;
    struct secret *pauth = NULL;
    const struct net_proxy *proxy = wharf_proxy(w, &px, &pauth, err);
    int rc;
    if (text == NULL)
        rc = error_set(err, "out of memory");
    else if (login == NULL && e2.msg[0])
        rc = error_set(err, "the mail credentials: %s", e2.msg);
    else if (w->conf.proxy[0] && proxy == NULL)
        rc = -1;
    else {
        struct net_mail m = { .url = c->email_url, .from = c->email_from,
            .to = rcpt, .login = login,
            .ca_file = c->ca_file[0] ? c->ca_file : NULL, .proxy = proxy,
            .data = text, .len = len };
        rc = net_mail_send(&m, err);
    }
    secret_free(login);
    secret_free(pauth);
    free(text);
    return rc;
}

static ssize_t notify_read_mem(void *ud, void *buf, size_t n,
                               struct error *err)
{
    (void)err;
    struct body *b = ud;
    size_t take = b->len < n ? b->len : n;
    memcpy(buf, b->p, take);
    b->p += take;
    b->len -= take;
    return (ssize_t)take;
}

/* hex(HMAC-SHA256(key, ts "." body)) into sig[65]. */
static int notify_sign(const struct secret *key, const char *ts,
                       const char *body, size_t len, char sig[65])
{
    size_t tl = strlen(ts);
    unsigned char *msg = malloc(tl + 1 + len), md[32];
    unsigned int mdlen = 0;
    if (msg == NULL)
        return -1;
    memcpy(msg, ts, tl);
    msg[tl] = '.';
    memcpy(msg + tl + 1, body, len);
    int ok = HMAC(EVP_sha256(), secret_data(key), (int)secret_len(key), msg,
                  tl + 1 + len, md, &mdlen) != NULL && mdlen == 32;
    free(msg);
    for (unsigned i = 0; ok && i < 32; i++)
        snprintf(sig + 2 * i, 3, "%02x", md[i]);
    return ok ? 0 : -1;
}

/* POST json to the webhook of c, signed with key (X-Timestamp,
 * X-Signature). */
static int webhook_post(struct wharf *w, const struct security_conf *c,
                        const struct secret *key, const char *json,
                        struct error *err)
{
    char ts[24], sig[65], hts[48], hsig[96];
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    if (notify_sign(key, ts, json, strlen(json), sig) < 0)
        return error_set(err, "cannot sign the webhook");
    snprintf(hts, sizeof(hts), "X-Timestamp: %s", ts);
    snprintf(hsig, sizeof(hsig), "X-Signature: %s", sig);
    const char *hdrs[] = { "Content-Type: application/json", hts, hsig,
                           NULL };
    struct body src = { (char *)json, strlen(json), 0 };
    struct net_proxy px;
    struct secret *pauth = NULL;
    const struct net_proxy *proxy = wharf_proxy(w, &px, &pauth, err);
    if (w->conf.proxy[0] && proxy == NULL)
        return -1;
    struct net_client_opts o = {
        .ca_file = c->ca_file[0] ? c->ca_file : NULL,
        .proxy = proxy ? proxy->url : NULL,
        .proxy_auth = proxy ? proxy->auth : NULL,
        .no_proxy = proxy ? proxy->no_proxy : NULL,
        .timeout_ms = 30000,
    };
    struct net_client_req req = { .method = "POST", .url = c->webhook_url,
        .headers = hdrs, .body_len = (int64_t)src.len,
        .read = notify_read_mem, .read_ud = &src };
    struct net_client_resp resp;
    memset(&resp, 0, sizeof(resp));
    int rc = net_client_request(&o, &req, &resp, err) == WH_OK ? 0 : -1;
    if (rc == 0 && (resp.status < 200 || resp.status > 299))
        rc = error_set(err, "webhook %s answered HTTP %ld", c->webhook_url,
                       resp.status);
    net_client_resp_free(&resp);
    secret_free(pauth);
    return rc;
}

static int notify_webhook(struct wharf *w, struct store *st,
                          const struct security_conf *c,
                          const struct notice *n, struct error *err)
{
    struct error e2 = {0};
    struct secret *key = notify_unseal(w, st, NOTIFY_WEBHOOK_SETTING,
                                       NOTIFY_WEBHOOK_CONTEXT, &e2);
    if (key == NULL)
        return error_set(err, "the webhook has no HMAC key%s%s (run `wharf "
                         "notify credentials webhook FILE`)",
                         e2.msg[0] ? ": " : "", e2.msg);
    char *json = notify_json_text(n);
    int rc = json ? webhook_post(w, c, key, json, err)
                  : error_set(err, "out of memory");
    secret_free(key);
    free(json);
    return rc;
}

/* RFC 5424 severity of a level name. */
static int notify_severity(const char *level)
{
    if (level && strcmp(level, "critical") == 0)
        return 2;
    if (level && strcmp(level, "warning") == 0)
        return 4;
    return 6;
}

static int notify_syslog(const struct security_conf *c,
                         const struct notice *n, struct error *err)
{
    char line[2048], when[32], msgid[33], text[1200];
    time_iso(n->ev->at, when, sizeof(when));
    snprintf(msgid, sizeof(msgid), "%s.%s", n->alert.id > 0 ? "alert"
             : n->inc.id > 0 ? "incident" : "wharf", or_dash(n->ev->action));
    notify_ascii(msgid);
    for (char *p = msgid; *p; p++)
        if (*p == ' ')
            *p = '_';
    snprintf(text, sizeof(text), "%s (by %s: %s)", n->subject,
             or_dash(n->ev->actor), or_dash(n->ev->text));
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    /* facility 10 (authpriv): security messages, not world-readable */
    int len = snprintf(line, sizeof(line), "<%d>1 %s %s wharf %d %s - %s",
                       10 * 8 + notify_severity(n->ev->level), when,
                       n->host[0] ? n->host : "-", (int)getpid(), msgid,
                       text);
    if (len < 0)
        return error_set(err, "cannot format the syslog line");
    if ((size_t)len >= sizeof(line))
        len = (int)sizeof(line) - 1;
    return net_syslog_send(c->syslog, c->ca_file[0] ? c->ca_file : NULL,
                           line, (size_t)len, 5000, err);
}

static int notify_send(struct wharf *w, struct store *st,
                       const struct security_conf *c, enum channel ch,
                       const struct notice *n, struct error *err)
{
    switch (ch) {
    case CH_EMAIL: return notify_email(w, st, c, n, err);
    case CH_WEBHOOK: return notify_webhook(w, st, c, n, err);
    default: return notify_syslog(c, n, err);
    }
}

/* ---- the outbox ------------------------------------------------------------------- */

static int channel_on(const struct security_conf *c, enum channel ch)
{
    switch (ch) {
    case CH_EMAIL: return c->email_url[0] != '\0';
    case CH_WEBHOOK: return c->webhook_url[0] != '\0';
    default: return c->syslog[0] != '\0';
    }
}

static int channel_level(const struct security_conf *c, enum channel ch)
{
    return ch == CH_EMAIL ? c->email_level
           : ch == CH_WEBHOOK ? c->webhook_level : c->syslog_level;
}

/* The channel's cursor; a channel seen for the first time starts at the
 * newest entry. -1 with err. */
static int cursor_get(struct store *st, enum channel ch, int64_t *cur,
                      struct error *err)
{
    char key[48], *v = NULL;
    snprintf(key, sizeof(key), "notify_cursor_%s", CH_NAMES[ch]);
    if (store_setting_get(st, key, &v, err) < 0)
        return -1;
    if (v != NULL) {
        *cur = strtoll(v, NULL, 10);
        free(v);
        return 0;
    }
    char num[24];
    if (store_sec_event_last(st, cur, err) < 0)
        return -1;
    snprintf(num, sizeof(num), "%lld", (long long)*cur);
    return store_setting_set(st, key, num, err);
}

static int cursor_set(struct store *st, enum channel ch, int64_t cur,
                      struct error *err)
{
    char key[48], num[24];
    snprintf(key, sizeof(key), "notify_cursor_%s", CH_NAMES[ch]);
    snprintf(num, sizeof(num), "%lld", (long long)cur);
    return store_setting_set(st, key, num, err);
}

static void channel_failed(enum channel ch, int64_t now, const char *why)
{
    char key[32];
    pthread_mutex_lock(&notify_g.mu);
    int64_t b = notify_g.backoff[ch] ? 2 * notify_g.backoff[ch]
                                     : NOTIFY_BACKOFF_MIN;
    notify_g.backoff[ch] = b > NOTIFY_BACKOFF_MAX ? NOTIFY_BACKOFF_MAX : b;
    notify_g.next_try[ch] = now + notify_g.backoff[ch];
    pthread_mutex_unlock(&notify_g.mu);
    snprintf(key, sizeof(key), "notify:%s", CH_NAMES[ch]);
    log_repeat(LOG_WARNING, -1, NULL, key, "notification by %s failed (tried "
               "again later, nothing is lost): %s", CH_NAMES[ch], why);
}

static void channel_worked(enum channel ch)
{
    char key[32];
    pthread_mutex_lock(&notify_g.mu);
    notify_g.backoff[ch] = 0;
    notify_g.next_try[ch] = 0;
    pthread_mutex_unlock(&notify_g.mu);
    snprintf(key, sizeof(key), "notify:%s", CH_NAMES[ch]);
    log_recovered(LOG_INFO, -1, NULL, key, "notification by %s works again",
                  CH_NAMES[ch]);
}

/* Send what waits for ch; the number sent. */
static int channel_round(struct wharf *w, struct store *st,
                         const struct security_conf *c, enum channel ch,
                         int64_t now)
{
    struct error err = {0};
    int64_t cur = 0;
    struct store_sec_event *ev = NULL;
    size_t n = 0;
    int sent = 0;
    pthread_mutex_lock(&notify_g.mu);
    int waiting = now < notify_g.next_try[ch];
    pthread_mutex_unlock(&notify_g.mu);
    if (waiting || cursor_get(st, ch, &cur, &err) < 0 ||
        store_sec_events_after(st, cur, NOTIFY_BATCH, &ev, &n, &err) < 0) {
        if (err.msg[0])
            log_repeat(LOG_WARNING, -1, NULL, "notify:outbox", "notifications:"
                       " %s", err.msg);
        store_sec_events_free(ev, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        enum alert_level lv = ALERT_INFO;
        alert_level_parse(ev[i].level, &lv);
        if ((int)lv >= channel_level(c, ch)) {
            struct notice note;
            int rc = notice_load(w, st, &ev[i], &note, &err);
            if (rc == 0)
                rc = notify_send(w, st, c, ch, &note, &err);
            notice_clear(&note);
            if (rc < 0) {
                channel_failed(ch, now, err.msg);
                break;
            }
            channel_worked(ch);
            sent++;
        }
        if (cursor_set(st, ch, ev[i].id, &err) < 0) {
            log_error("notifications: cannot move the %s cursor: %s",
                      CH_NAMES[ch], err.msg);
            break;
        }
    }
    store_sec_events_free(ev, n);
    return sent;
}

void notify_start_cursors(struct store *st, const struct security_conf *c)
{
    struct error err = {0};
    int64_t cur;
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (channel_on(c, (enum channel)ch) &&
            cursor_get(st, (enum channel)ch, &cur, &err) < 0)
            log_error("notifications by %s: %s", CH_NAMES[ch], err.msg);
}

int notify_round(struct wharf *w, struct store *st,
                 const struct security_conf *c, int64_t now_ms)
{
    int sent = 0;
    for (int ch = 0; ch < CH_COUNT; ch++)
        if (channel_on(c, (enum channel)ch))
            sent += channel_round(w, st, c, (enum channel)ch, now_ms);
    return sent;
}

int notify_test(struct wharf *w, struct store *st,
                const struct security_conf *c, const char *channel,
                struct error *err)
{
    int ch = -1;
    for (int i = 0; i < CH_COUNT; i++)
        if (strcmp(CH_NAMES[i], channel) == 0)
            ch = i;
    if (ch < 0)
        return error_set(err, "channel must be email, webhook or syslog, not "
                         "'%s'", channel);
    if (!channel_on(c, (enum channel)ch))
        return error_set(err, "%s is not configured in wharf.conf (see "
                         "docs/operations.md, Notifications)", channel);
    struct store_sec_event ev = { .id = 0, .at = time_now_ms(),
        .actor = (char *)"cli", .action = (char *)"test",
        .level = (char *)"info",
        .text = (char *)"a test notification from `wharf notify test`" };
    struct notice note;
    int rc = notice_load(w, st, &ev, &note, err);
    if (rc == 0)
        rc = notify_send(w, st, c, (enum channel)ch, &note, err);
    notice_clear(&note);
    return rc;
}
