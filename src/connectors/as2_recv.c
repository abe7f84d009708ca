/*
 * as2_recv.c - the as2 connector (M4), source half: POST /as2 on the
 * partner listener (core/routes.c routes it here; as2_pick chooses
 * the connector whose partner's AS2 id is the request's AS2-From), and
 * POST /as2/mdn for asynchronous MDNs answering what we sent.
 *
 * A message: the partner's policy (as2.c: as2_policy_make) is applied by
 * as2_unpack while the body streams from the socket through decryption,
 * verification and decompression straight into the intake (encrypted at
 * rest as it arrives, constant memory). Only when unpack returned 0 is the
 * message ended; then its MDN is made (signed), and one commit (one batched
 * sync of the payload + one transaction) stores the message, keeps that
 * MDN with it and queues the asynchronous MDN's job, its next hops free to
 * go on (commit_answer). Only then is it answered: the MDN in the
 * response (sync), or a 200 and the durable job of the message that POSTs
 * the MDN to the sender's Receipt-Delivery-Option and retries it (async:
 * the job as2.mdn-out), or a 200 alone (no MDN asked for). So what went out
 * is on record before it went, and nothing waits for a second commit. The
 * Message-ID is the dedup key, so a replay is answered "processed/warning:
 * duplicate-document" and stored once (the MDN made for it before the
 * commit found it a replay is dropped, and one saying so is made). A
 * refused message (policy, signature, decryption, corruption, truncation)
 * is cancelled: nothing of it is stored; the sender gets the negative MDN
 * it asked for, or an HTTP error.
 *
 * An asynchronous MDN: it must verify with the partner's certificates; it
 * is given to the job that waits for it (as2.c: as2.mdn-wait,
 * found by its Original-Message-ID), which runs at once, checks it against
 * what was sent and settles the waiting hop.
 *
 * Addresses (R2): a partner with allow_from is heard only from those
 * addresses; a request from any other, a message or an MDN, gets 403
 * before its body is read and counts as a refusal (below).
 *
 * Abuse (R22): a body over the connector's max_body_bytes is refused with
 * 413 from its Content-Length before anything is written (a chunked one
 * as soon as it passes the cap; what was written is removed). Every
 * refused request (policy, signature, decryption, garbage, too large, a
 * refused MDN; not a body cut off by the network) counts as a failure of
 * the address toward the defender, which bans it; the refusals are
 * folded into one "refused" record per burst (source, address, reason)
 * with a count, and into one alert (R19, kind as2.refused) per source,
 * address and reason: its opening is the ALERT line.
 *
 * Must never: answer with a positive MDN before intake_commit returned 0;
 * write a byte of a body whose declared length is over the cap; log
 * payload bytes, keys or credentials.
 */
#include "connectors/as2_conn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>

#include "core/intake.h"
#include "net/server.h"
#include "util/fault.h"
#include "util/id.h"
#include "util/secret.h"

#define MDN_IN_MAX (1024 * 1024)
/* Refusals of one source, address and reason this close together are
 * one burst (one record). */
#define BURST_WINDOW_MS (10 * 60 * 1000)

static const char *const REQ_HEADERS[] = {
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
    "MIME-Version", "AS2-Version", "AS2-From", "AS2-To", "Message-ID",
    "Subject", "Disposition-Notification-To",
    "Disposition-Notification-Options", "Receipt-Delivery-Option",
    "EDIINT-Features",
};
#define NREQ_HEADERS (sizeof(REQ_HEADERS) / sizeof(*REQ_HEADERS))

static int request_headers(struct net_request *r, struct mime_headers *h,
                           struct error *err)
{
    mime_headers_init(h);
    for (size_t i = 0; i < NREQ_HEADERS; i++) {
        const char *v = net_req_header(r, REQ_HEADERS[i]);
        if (v && mime_headers_add(h, REQ_HEADERS[i], v, err) < 0)
            return -1;
    }
    return 0;
}

/* /as2, /as2/mdn, or the alias /as2/OUR-AS2-ID (RFC 4130 leaves the
 * path to the receiver; some partners want one per profile). */
static int path_ok(const struct as2_state *s, const char *path)
{
    size_t n = sizeof(AS2_ROUTE) - 1;
    return !strcmp(path, AS2_ROUTE) || !strcmp(path, AS2_MDN_ROUTE) ||
           (!strncmp(path, AS2_ROUTE "/", n + 1) &&
            !strcmp(path + n + 1, s->prof->as2_id));
}

struct connector *as2_pick(struct connector *const *conns, size_t n,
                           struct net_request *req)
{
    char from[AS2_ID_MAX + 1];
    const char *v = net_req_header(req, "AS2-From");
    const char *path = net_req_path(req);
    if (v == NULL || as2_id_parse(v, from, NULL) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const struct as2_state *s = conns[i]->state;
        if (s && strcmp(s->part->as2_id, from) == 0 && path_ok(s, path))
            return conns[i];
    }
    return NULL;
}

/* ---- BIOs over the request body and the intake ------------------------------ */

/* The request body, cut at the connector's cap (a chunked body has no
 * Content-Length to refuse it by). */
struct body_src {
    struct net_request *r;
    int64_t cap, read;
    int too_large, cut;
};

static ssize_t body_read(void *ud, void *buf, size_t n, struct error *err)
{
    struct body_src *b = ud;
    ssize_t got = net_body_read(b->r, buf, n);
    if (got > 0 && (b->read += got) > b->cap)
        got = NET_BODY_TOO_LARGE;
    if (got == NET_BODY_TOO_LARGE) {
        b->too_large = 1;
        return error_set(err, "the body is larger than max_body_bytes "
                         "(%lld)", (long long)b->cap);
    }
    if (got < 0) {
        b->cut = 1;
        return error_set(err, "the body could not be read (cut or timed "
                         "out)");
    }
    return got;
}

struct intake_sink {
    struct intake *in;
    struct error *err;
};

static int sink_write(BIO *b, const char *buf, int n)
{
    struct intake_sink *k = BIO_get_data(b);
    if (n <= 0)
        return 0;
    return intake_write(k->in, buf, (size_t)n, k->err) < 0 ? -1 : n;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *sink_meth;
static pthread_once_t sink_once = PTHREAD_ONCE_INIT;

static void sink_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "wharf intake");
    if (m && BIO_meth_set_write(m, sink_write) == 1 &&
        BIO_meth_set_ctrl(m, sink_ctrl) == 1)
        sink_meth = m;
    else
        BIO_meth_free(m);
}

static BIO *intake_bio(struct intake_sink *k)
{
    pthread_once(&sink_once, sink_init);
    BIO *b = sink_meth ? BIO_new(sink_meth) : NULL;
    if (b) {
        BIO_set_data(b, k);
        BIO_set_init(b, 1);
    }
    return b;
}

/* ---- MDNs we send ---------------------------------------------------------------- */

/* The MDN answering info: body into a memory BIO, headers into built. */
static int mdn_build(struct as2_state *s, const struct as2_unpacked *info,
                     enum mdn_error e, const char *warning, BIO *out,
                     struct as2_mdn_built *built, struct error *err)
{
    const struct profile_key *k = profile_sign_key(s->prof,
                                                   (int64_t)time(NULL) * 1000);
    struct as2_signer signer = { 0 };
    if (k) {
        signer.cert = k->cert;
        signer.key = k->key;
        signer.digest = AS2_DIGEST_SHA256;
    }
    struct as2_mdn_opts o = { .reporting_ua = "Wharf", .host = "wharf",
                              .signer = k ? &signer : NULL };
    return as2_mdn_make(&o, info, e, warning, out, built, err);
}

/* "Name: value\r\n" lines of h; malloc'ed (NULL when out of memory). */
static char *header_block(const struct mime_headers *h)
{
    size_t n = 1;
    for (size_t i = 0; i < h->count; i++)
        n += strlen(h->h[i].name) + strlen(h->h[i].value) + 4;
    char *out = malloc(n);
    size_t at = 0;
    for (size_t i = 0; out && i < h->count; i++)
        at += (size_t)snprintf(out + at, n - at, "%s: %s\r\n", h->h[i].name,
                               h->h[i].value);
    if (out)
        out[at] = '\0';
    return out;
}

static void reply_mdn(struct net_request *r, const struct as2_mdn_built *b,
                      BIO *body)
{
    const char *ct = "message/disposition-notification";
    for (size_t i = 0; i < b->headers.count; i++) {
        if (strcasecmp(b->headers.h[i].name, "Content-Type") == 0)
            ct = b->headers.h[i].value;
        else
            net_reply_header(r, b->headers.h[i].name, b->headers.h[i].value);
    }
    char *data = NULL;
    long len = BIO_get_mem_data(body, &data);
    net_reply(r, 200, ct, data, len > 0 ? (size_t)len : 0);
}

struct mem_src {
    const char *p, *start;
    size_t left, len;
};

static int mem_rewind(void *ud)
{
    struct mem_src *m = ud;
    m->p = m->start;
    m->left = m->len;
    return 0;
}

static ssize_t mem_read(void *ud, void *buf, size_t n, struct error *e)
{
    struct mem_src *m = ud;
    (void)e;
    if (n > m->left)
        n = m->left;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

static void lines_free(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

/* Whether an MDN may go to url: https, or plain http when the partner
 * allows it (allow_plain_mdn_url, or the whole partner is insecure). */
static int mdn_url_allowed(const struct as2_state *s, const char *url)
{
    return strncasecmp(url, "http://", 7) != 0 || s->opts.insecure ||
           partner_bool(s->part, "allow_plain_mdn_url", 0);
}

/* One POST of an MDN (hdrs: "Name: value" list) to url. */
static enum wh_status mdn_post(struct connector *c, const char *url,
                               char **hdrs, const char *data, size_t len,
                               struct error *err)
{
    struct as2_state *s = c->state;
    struct mem_src m = { data, data, len, len };
    struct net_client_req req = { .method = "POST", .url = url,
        .headers = (const char *const *)hdrs, .body_len = (int64_t)len,
        .read = mem_read, .read_ud = &m, .rewind = mem_rewind,
        .write = net_client_discard };
    struct net_client_resp resp;
    struct net_client_opts o = s->opts;
    o.insecure = mdn_url_allowed(s, url);     /* https stays verified */
    enum wh_status st = net_client_request(&o, &req, &resp, err);
    if (st == WH_OK && (resp.status < 200 || resp.status > 299)) {
        st = net_client_status_class(resp.status);
        error_set(err, "HTTP %ld", resp.status);
    }
    net_client_resp_free(&resp);
    return st;
}

/* ---- asynchronous MDNs we owe: the job as2.mdn-out -----------------------------
 * Data: the MDN's Message-ID "\n" URL "\n" header block NUL body, kept in
 * the clear (AS2_JOBS_IN_CLEAR: the same bytes are its "sent" receipt).
 * The job is added before the message is released; the engine runs it at
 * once and retries it by the kind's policy (as2.c: AS2_JOBS) for
 * mdn_give_up_s (a week by default); a resend of the message queues a
 * given-up one again. A plain-HTTP URL the partner may not use is said
 * once (an event and an ALERT line); the job then waits quietly until
 * allow_plain_mdn_url is set (a new flow generation) or it gives up. */

#define MDN_PLAIN_LOOK_MS 5000      /* how often a refused URL is looked at */

/* "Name: value\r\n" lines of a header block as a NULL-terminated list. */
static char **block_lines(const char *hb)
{
    size_t n = 0;
    for (const char *q = hb; (q = strstr(q, "\r\n")) != NULL; q += 2)
        n++;
    char **out = calloc(n + 1, sizeof(char *));
    const char *at = hb;
    for (size_t i = 0; out && i < n; i++) {
        const char *e = strstr(at, "\r\n");
        if (e == at)
            break;
        out[i] = strndup(at, (size_t)(e - at));
        at = e + 2;
    }
    return out;
}

/* The parts of an as2.mdn-out job's data (pointers into it; mdn_id and
 * url malloc'ed). -1 when it is malformed. */
struct mdn_out {
    char *mdn_id, *url;
    const char *hb, *body;
    size_t len;
};

static int mdn_out_parse(const struct secret *data, struct mdn_out *o)
{
    memset(o, 0, sizeof(*o));
    const char *p = data ? (const char *)secret_data(data) : NULL;
    size_t n = data ? secret_len(data) : 0;
    const char *nl1 = p ? memchr(p, '\n', n) : NULL;
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', n - (size_t)(nl1 + 1 - p))
                          : NULL;
    if (nl2 == NULL)
        return -1;
    o->hb = nl2 + 1;
    size_t hl = strnlen(o->hb, n - (size_t)(o->hb - p));
    if (o->hb + hl >= p + n)
        return -1;
    o->body = o->hb + hl + 1;
    o->len = n - (size_t)(o->body - p);
    o->mdn_id = strndup(p, (size_t)(nl1 - p));
    o->url = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    return o->mdn_id && o->url ? 0 : -1;
}

/* The URL is plain HTTP and the partner may not use it: said once, then
 * the job waits quietly (no attempt) and looks again. */
static enum wh_status mdn_out_plain(struct connector *c, struct conn_job *j,
                                    const struct mdn_out *o)
{
    struct as2_state *s = c->state;
    j->again_at = time_now_ms() + MDN_PLAIN_LOOK_MS;
    if (j->waits > 0) {
        conn_log(c, LOG_DEBUG, j->message_id, "asynchronous MDN to %s not "
                 "sent yet: plain-HTTP URL, not allowed for partner %s",
                 o->url, s->part->name);
        return WH_AGAIN;
    }
    snprintf(j->note, sizeof(j->note), "asynchronous MDN %.150s not sent: "
             "partner %s asked for it at the plain-HTTP URL %.200s; it stays "
             "queued until the partner's allow_plain_mdn_url is true (or for "
             "%lld s: mdn_give_up_s)", o->mdn_id, s->part->name, o->url,
             (long long)((j->give_up_at - j->created_at) / 1000));
    j->note_level = "warning";
    conn_alert(c->env->history, "as2.mdn_plain", c->name,
               CONN_ALERT_WARNING, j->note, j->message_id);
    return WH_AGAIN;
}

enum wh_status as2_mdn_out_run(struct connector *c, struct conn_job *j)
{
    struct mdn_out o;
    if (mdn_out_parse(j->data, &o) < 0) {
        free(o.mdn_id);
        free(o.url);
        return error_set(&j->err, "the queued MDN is malformed"), WH_FAIL;
    }
    enum wh_status st;
    char **hdrs = NULL;
    if (!mdn_url_allowed(c->state, o.url)) {
        st = mdn_out_plain(c, j, &o);
    } else if ((hdrs = block_lines(o.hb)) == NULL) {
        error_set(&j->err, "out of memory");
        st = WH_RETRY;
    } else if ((st = mdn_post(c, o.url, hdrs, o.body, o.len,
                              &j->err)) == WH_OK) {
        conn_log(c, LOG_INFO, j->message_id, "queued asynchronous MDN sent "
                 "to %s", o.url);
        snprintf(j->note, sizeof(j->note), "asynchronous MDN %.150s sent to "
                 "%.200s", o.mdn_id, o.url);
    } else {
        /* whatever failed may be fixed on either side: kept, retried */
        conn_log(c, LOG_WARNING, j->message_id, "asynchronous MDN to %s not "
                 "sent yet (kept, tried again later): %s", o.url, j->err.msg);
        st = WH_RETRY;
    }
    lines_free(hdrs);
    free(o.mdn_id);
    free(o.url);
    return st;
}

/* R19: an MDN we owe that could not even be queued. */
static void mdn_unqueued_alert(struct connector *c, const char *mdn_id,
                               const struct error *err)
{
    char summary[400];
    snprintf(summary, sizeof(summary), "asynchronous MDN %.200s cannot be "
             "queued", mdn_id);
    conn_alert(c->env->history, "as2.mdn_out", c->name, CONN_ALERT_CRITICAL,
               summary, err->msg);
}

/* An MDN that went out, for the release to keep with its message in the
 * same transaction (malloc'ed parts; mdn_kept_free), and the job that
 * sends it when it is asynchronous, queued in that transaction too. */
struct mdn_kept {
    char *hb, *mdn_id;
    unsigned char *body;
    size_t len;
    int has_job;
    struct conn_job_ready job;
    char note[500];             /* the job's note */
};

/* An asynchronous MDN: a job of message msgid (the one the MDN answers,
 * or the record of its refusal), added before the message is released
 * (defer not NULL: made ready in *defer, for the release to add); the
 * engine sends it and retries it. */
static void mdn_async(struct connector *c, const char *msgid, const char *url,
                      const struct as2_mdn_built *b, const char *hb,
                      BIO *body, struct mdn_kept *defer)
{
    struct error err = {0};
    char *data = NULL;
    long len = BIO_get_mem_data(body, &data);
    size_t il = strlen(b->message_id), ul = strlen(url);
    size_t hl = hb ? strlen(hb) : 0;
    struct secret *v = hb && msgid ? secret_new(il + 1 + ul + 1 + hl + 1 +
                                                (size_t)len) : NULL;
    char note[500];
    if (v != NULL) {
        unsigned char *p = secret_data_mut(v);
        memcpy(p, b->message_id, il);
        p[il] = '\n';
        memcpy(p + il + 1, url, ul);
        p[il + 1 + ul] = '\n';
        memcpy(p + il + 1 + ul + 1, hb, hl + 1);
        memcpy(p + il + 1 + ul + 1 + hl + 1, data, (size_t)len);
    }
    defer = msgid ? defer : NULL;
    char *n = defer ? defer->note : note;
    snprintf(n, sizeof(note), "asynchronous MDN %.150s queued for %.200s",
             b->message_id, url);
    struct conn_job_new job = { .conn = c->name, .kind = AS2_JOB_MDN_OUT,
        .message_id = msgid, .data = v, .in_clear = AS2_JOBS_IN_CLEAR,
        .give_up_ms = ((struct as2_state *)c->state)->mdn_give_up_ms,
        .note = n };
    int rc = v == NULL ? error_set(&err, msgid ? "out of memory" : "the "
                                   "message could not be recorded")
           : defer ? conn_job_prepare(c->env->jobs, &job, &defer->job, &err)
           : conn_job_add(c->env->jobs, &job, &err);
    if (rc < 0)
        mdn_unqueued_alert(c, b->message_id, &err);
    else if (defer)
        defer->has_job = 1;
    secret_free(v);
}

static void mdn_kept_free(struct mdn_kept *k)
{
    free(k->hb);
    free(k->mdn_id);
    free(k->body);
    conn_job_ready_clear(&k->job);
    memset(k, 0, sizeof(*k));
}

/* Hand the MDN to *k (taking hb): 0, or -1 (out of memory: nothing
 * taken). */
static int mdn_kept_take(struct mdn_kept *k, char **hb, const char *mdn_id,
                         const char *body, size_t len)
{
    k->mdn_id = mdn_id ? strdup(mdn_id) : NULL;
    k->body = malloc(len ? len : 1);
    if ((mdn_id && k->mdn_id == NULL) || k->body == NULL) {
        free(k->mdn_id);
        free(k->body);
        k->mdn_id = NULL;
        k->body = NULL;
        return -1;
    }
    memcpy(k->body, body, len);
    k->len = len;
    k->hb = *hb;
    *hb = NULL;
    return 0;
}

/* What answers a request, made before it is sent: an MDN, or a text. */
struct reply {
    int status;                 /* 0: the MDN in b and body */
    const char *text;           /* else the text (or error) with status */
    struct as2_mdn_built b;
    BIO *body;
};

static void reply_free(struct reply *rp)
{
    as2_mdn_built_free(&rp->b);
    BIO_free(rp->body);
    memset(rp, 0, sizeof(*rp));
}

/* Make the answer to info into *rp: the MDN (or an HTTP error when none
 * was asked for, http_error and why; 200 when none). msgid: the message
 * (or refusal record) it is about, "" when there is none; keep: whether
 * the MDN is kept with it (not for the later refusals of a burst): at
 * once, or, with defer, handed to *defer (with the asynchronous MDN's
 * job) for the commit that keeps it. */
static void reply_make(struct connector *c, const char *msgid, int keep,
                       const struct as2_unpacked *info, enum mdn_error e,
                       const char *warning, int http_error, const char *why,
                       struct reply *rp, struct mdn_kept *defer)
{
    struct as2_state *s = c->state;
    struct error err = {0};
    memset(rp, 0, sizeof(*rp));
    if (!info->req.mdn_requested) {
        rp->status = http_error ? http_error : 200;
        rp->text = http_error ? why : "received\n";
        return;
    }
    rp->body = BIO_new(BIO_s_mem());
    if (rp->body == NULL ||
        mdn_build(s, info, e, warning, rp->body, &rp->b, &err) < 0) {
        conn_log(c, LOG_ERROR, NULL, "cannot build the MDN for %s: %s",
                 info->req.message_id, err.msg);
        rp->status = 500;
        rp->text = "cannot build the MDN";
        return;
    }
    char *hb = header_block(&rp->b.headers);
    if (info->req.mdn_async) {
        rp->status = 200;
        rp->text = "received\n";
        mdn_async(c, msgid[0] ? msgid : NULL, info->req.receipt_url, &rp->b,
                  hb, rp->body, defer);
    }
    char *data = NULL;
    long len = BIO_get_mem_data(rp->body, &data);
    if (hb && msgid[0] && keep && defer != NULL &&
        mdn_kept_take(defer, &hb, rp->b.message_id, data, (size_t)len) < 0)
        conn_log(c, LOG_ERROR, msgid, "the MDN %s is not kept: out of "
                 "memory", rp->b.message_id);
    else if (hb && msgid[0] && keep && defer == NULL)
        as2_receipt_keep(c, msgid, "sent", hb, data, (size_t)len,
                         rp->b.message_id, info->req.message_id);
    free(hb);
}

static void reply_send(struct net_request *r, struct reply *rp)
{
    if (rp->status == 0)
        reply_mdn(r, &rp->b, rp->body);
    else if (rp->status == 200)
        net_reply(r, 200, "text/plain", rp->text, strlen(rp->text));
    else
        net_reply_error(r, rp->status, rp->status == 500 ? "internal"
                        : "refused", "%s", rp->text);
    reply_free(rp);
}

/* Answer info at once (see reply_make). */
static void answer(struct connector *c, struct http_exchange *x,
                   const char *msgid, int keep,
                   const struct as2_unpacked *info,
                   enum mdn_error e, const char *warning, int http_error,
                   const char *why, struct mdn_kept *defer)
{
    struct reply rp;
    reply_make(c, msgid, keep, info, e, warning, http_error, why, &rp,
               defer);
    reply_send(x->req, &rp);
}

/* Unpack the body into the intake; 0 when it ended (not committed yet:
 * commit_answer), -1 with info->mdn_error and err set (src says whether
 * the body was too large or cut off), -2 when it could not be stored. */
static int take_message(struct connector *c, struct http_exchange *x,
                        const struct mime_headers *h,
                        struct as2_unpacked *info, struct body_src *src,
                        struct error *err)
{
    struct as2_state *s = c->state;
    struct as2_policy pol;
    char key[AS2_MSGID_MAX + 8];
    const char *mid = net_req_header(x->req, "Message-ID");
    snprintf(key, sizeof(key), "as2:%s", mid ? mid : "");
    if (as2_policy_make(s, &pol, err) < 0)
        return -1;
    struct intake_sink k = { .in = x->in, .err = err };
    BIO *body = as2_bio_reader(body_read, src, err);
    BIO *out = body ? intake_bio(&k) : NULL;
    int rc = -1;
    if (out && intake_begin(x->in, NULL, key, err) == 0) {
        rc = as2_unpack(&pol, h, body, out, info, err);
        if (rc == 0)
            rc = intake_set_filename(x->in, info->filename[0]
                                     ? info->filename : NULL, err);
        if (rc == 0)
            rc = intake_end(x->in, err);
        else
            intake_cancel(x->in);
    } else if (out) {
        rc = -2;
    }
    BIO_free(body);
    BIO_free(out);
    as2_policy_clear(&pol);
    return rc;
}

/* ---- asynchronous MDNs arriving ----------------------------------------------------- */

/* The MDN verified: give it (header block, NUL, body) to the job of
 * ours that waits for it (as2.c: as2.mdn-wait), which checks it against
 * what was sent and settles the hop. 1 given, 0 nothing waits for it,
 * -1 err. */
static int mdn_deliver(struct connector *c, const struct mime_headers *h,
                       const char *body, size_t len, const char *original_id,
                       struct error *err)
{
    char msgid[ID_LEN + 1];
    if (as2_message_id_wharf(original_id, msgid) < 0)
        return 0;               /* not one of ours */
    size_t hl = 0;
    for (size_t i = 0; i < h->count; i++)
        hl += strlen(h->h[i].name) + strlen(h->h[i].value) + 4;
    struct secret *keep = secret_new(hl + 3 + len);
    if (keep == NULL)
        return error_set(err, "out of memory");
    char *p = (char *)secret_data_mut(keep);
    size_t at = 0;
    for (size_t i = 0; i < h->count; i++)
        at += (size_t)snprintf(p + at, hl + 3 - at, "%s: %s\r\n",
                               h->h[i].name, h->h[i].value);
    at += (size_t)snprintf(p + at, 3, "\r\n");
    p[at] = '\0';
    memcpy(p + at + 1, body, len);
    int rc = conn_job_input(c->env->jobs, c->name, msgid, AS2_JOB_MDN_WAIT,
                            keep, AS2_JOBS_IN_CLEAR, err);
    secret_free(keep);
    return rc;
}

/* Verify an MDN POSTed to /as2/mdn: only the partner's (signed) MDN is
 * taken. 0 and *got, or -1 with err. */
static int mdn_verify(struct as2_state *s, const struct mime_headers *h,
                      const char *body, size_t len,
                      struct as2_mdn_received *got, struct error *err)
{
    X509 **certs = calloc(s->part->ncerts + 1, sizeof(*certs));
    for (size_t i = 0; certs && i < s->part->ncerts; i++)
        certs[i] = s->part->certs[i].cert;
    struct as2_mdn_read_opts o = { .partner = s->part->name, .certs = certs,
        .ncerts = s->part->ncerts, .digests = as2_partner_digests(s->part),
        .require_signed = partner_bool(s->part, "mdn_signed", 1) };
    BIO *b = BIO_new_mem_buf(body, (int)len);
    int rc = certs && b ? as2_mdn_read(&o, h, b, got, err)
                        : error_set(err, "out of memory");
    BIO_free(b);
    free(certs);
    return rc;
}

static void mdn_in(struct connector *c, struct http_exchange *x)
{
    struct net_request *r = x->req;
    struct as2_state *s = c->state;
    struct error err = {0};
    char *body = NULL;
    size_t len = 0;
    struct mime_headers h;
    struct as2_mdn_received got;
    if (request_headers(r, &h, &err) < 0 ||
        net_body_read_all(r, &body, &len, NULL, &err) < 0) {
        mime_headers_free(&h);
        net_reply_error(r, 400, "bad_request", "%s", err.msg);
        return;
    }
    memset(&got, 0, sizeof(got));
    int rc = mdn_verify(s, &h, body, len, &got, &err);
    if (rc < 0) {
        net_req_auth_failure(r);
        char summary[400], key[300];
        snprintf(summary, sizeof(summary), "refused an asynchronous MDN from "
                 "%s (%s)", s->part->name, net_req_address(r));
        snprintf(key, sizeof(key), "%s %s mdn", c->name, net_req_address(r));
        conn_alert(c->env->history, "as2.refused", key, CONN_ALERT_WARNING,
                   summary, err.msg);
        net_reply_error(r, 400, "refused", "%s", err.msg);
    } else if ((rc = mdn_deliver(c, &h, body, len,
                                 got.mdn.original_message_id, &err)) < 0) {
        conn_log(c, LOG_ERROR, NULL, "asynchronous MDN for %s from %s not "
                 "kept: %s", got.mdn.original_message_id, s->part->name,
                 err.msg);
        net_reply_error(r, 503, "unavailable", "cannot keep the MDN now; "
                        "send it again later");
    } else {
        conn_log(c, LOG_INFO, NULL, rc ? "asynchronous MDN for %s from %s "
                 "kept" : "asynchronous MDN for %s from %s: no message "
                 "waits for it (not used)", got.mdn.original_message_id,
                 s->part->name);
        net_reply(r, 200, "text/plain", "received\n", 9);
    }
    free(body);
    mime_headers_free(&h);
}

/* ---- the route ------------------------------------------------------------------------ */

/* A replay answered: the MDN that went out kept with the stored message
 * id (and the asynchronous MDN's job queued) in one transaction, which
 * also releases its next hops if a node (of a version that held them
 * until its MDN went out) left them held (kept->hb NULL: none, or kept
 * already); if that fails, the MDN is kept alone and the release tried
 * again alone. */
static void release(struct connector *c, struct intake *in, const char *id,
                    const struct as2_unpacked *info,
                    const struct mdn_kept *kept)
{
    struct error err = {0};
    struct conn_receipt r = { .msgid = id, .direction = "sent",
        .headers = kept->hb, .body = kept->body, .len = kept->len,
        .mdn_id = kept->mdn_id, .original_id = info->req.message_id };
    const char *why = !info->req.mdn_requested ? "released (no MDN asked for)"
                      : info->req.mdn_async ? "released: its asynchronous "
                        "MDN is queued durably (sent, or retried)"
                      : "released: its MDN went out in the response";
    const struct conn_job_ready *job = kept->has_job ? &kept->job : NULL;
    if ((kept->hb != NULL || job != NULL) &&
        intake_release(in, id, why, kept->hb ? &r : NULL, job, &err) == 0)
        return;
    if (job != NULL && conn_job_add_ready(job, &err) < 0)
        mdn_unqueued_alert(c, kept->mdn_id ? kept->mdn_id : "-", &err);
    if (kept->hb != NULL)
        as2_receipt_keep(c, id, "sent", kept->hb, kept->body, kept->len,
                         kept->mdn_id, info->req.message_id);
    if (intake_release(in, id, why, NULL, NULL, &err) < 0)
        conn_log(c, LOG_ERROR, id, "cannot release the message (it is "
                 "released once its hold is stale, after ten leases): %s",
                 err.msg);
}

/* 1 for the refusals of a burst that get an ALERT line: the first, the
 * 10th, the 100th, ... (the record keeps the count of all). */
static int alert_due(int64_t count)
{
    while (count >= 10 && count % 10 == 0)
        count /= 10;
    return count == 1;
}

/* A refused request: a failure of its address for the defender, and a
 * "refused" record (what = the reason's class, text its event) folded
 * into its burst, with an ALERT line when due. id gets the record (""
 * when it could not be written); returns the burst's count (0: none). */
static int64_t refusal(struct connector *c, struct http_exchange *x,
                       const char *what, const char *text, int blame,
                       char id[ID_LEN + 1])
{
    struct net_request *r = x->req;
    struct error err = {0};
    int64_t count = 0;
    struct intake_refusal rec = {
        .address = net_req_address(r), .reason = what, .text = text,
        .window_ms = BURST_WINDOW_MS };
    if (blame)
        net_req_auth_failure(r);
    if (intake_refused(x->in, &rec, id, &count, &err) < 0) {
        id[0] = '\0';
        conn_log(c, LOG_ERROR, NULL, "cannot record a refused message: %s",
                 err.msg);
    }
    /* one alert per source, address and reason: a new burst opens it
     * (an ALERT line), the rest of the burst and later bursts fold */
    char key[300];
    snprintf(key, sizeof(key), "%s %s %s", c->name, rec.address, what);
    conn_alert(c->env->history, "as2.refused", key, CONN_ALERT_WARNING, text,
               id[0] ? id : NULL);
    if (count > 1 && alert_due(count))
        conn_log(c, LOG_WARNING, id, "%lld refusals from %s (%s) since the "
                 "first, the last one: %s", (long long)count, rec.address,
                 what, text);
    else if (count > 1)
        conn_log(c, LOG_DEBUG, id, "%s", text);
    return count;
}

/* A refused message: counted for the defender (unless its body was cut
 * off: the network's fault as likely as the sender's), recorded (folded
 * into its burst) with the reason, an ALERT line when due; nothing of the
 * payload is kept. id: the record ("" when it could not be written);
 * returns 1 for the first of its burst (0 for a later one: the MDN
 * answering it is then not kept). */
static int refused(struct connector *c, struct http_exchange *x,
                   const struct as2_unpacked *info, const char *why,
                   int cut, char id[ID_LEN + 1])
{
    struct as2_state *s = c->state;
    char text[900];
    const char *mid = info->req.message_id[0] ? info->req.message_id : "-";
    const char *what = info->unsupported_micalg ? "unsupported MIC-algorithms"
                       : mdn_error_name(info->mdn_error);
    snprintf(text, sizeof(text), "AS2 message %s from %s (%s) refused (%s): "
             "%s", mid, s->part->name, net_req_address(x->req), what, why);
    return refusal(c, x, what, text, !cut, id) <= 1;
}

/* A request whose body is over the connector's cap: 413, before a byte of
 * it is written (from its Content-Length) or as soon as it passes the cap
 * (chunked: the part written is gone with the cancelled intake). */
static void too_large(struct connector *c, struct http_exchange *x,
                      int64_t declared)
{
    struct as2_state *s = c->state;
    struct net_request *r = x->req;
    char text[600], id[ID_LEN + 1];
    const char *mid = net_req_header(r, "Message-ID");
    snprintf(text, sizeof(text), "AS2 message %.200s from %s (%s) refused "
             "(too large): the body%s is over max_body_bytes (%lld)",
             mid ? mid : "-", s->part->name, net_req_address(r),
             declared >= 0 ? " announced" : "", (long long)s->max_body);
    refusal(c, x, "too-large", text, 1, id);
    net_reply_error(r, 413, "too_large", "request body is larger than %lld "
                    "bytes (the partner's max_body_bytes)",
                    (long long)s->max_body);
}

/* A request from an address outside the partner's allow_from (R2): 403
 * before anything of it is read, counted for the defender and recorded
 * as a refusal like any other. 1 when refused. */
static int not_allowed(struct connector *c, struct http_exchange *x)
{
    struct as2_state *s = c->state;
    struct net_request *r = x->req;
    if (net_allow_has_text(&s->allow, net_req_address(r)))
        return 0;
    char text[600], id[ID_LEN + 1];
    const char *mid = net_req_header(r, "Message-ID");
    snprintf(text, sizeof(text), "AS2 %s %.200s from %s (%s) refused (address "
             "not allowed): not in the partner's allow_from",
             strcmp(net_req_path(r), AS2_MDN_ROUTE) == 0 ? "MDN"
             : "message", mid ? mid : "-", s->part->name,
             net_req_address(r));
    refusal(c, x, "address-not-allowed", text, 1, id);
    net_reply_error(r, 403, "forbidden", "this address may not send as "
                    "%s", s->part->name);
    return 1;
}

/* The event of a message stored with what answers it (kept: its MDN was
 * made and goes into the commit). */
static const char *kept_why(const struct as2_unpacked *info, int kept)
{
    return !info->req.mdn_requested ? "no MDN asked for"
           : !kept ? "its MDN could not be made: the sender was answered "
             "with an error (it sends the message again, a duplicate)"
           : info->req.mdn_async ? "its asynchronous MDN queued durably "
             "in the commit that stored it (sent, or retried)"
           : "its MDN kept in the commit that stored it, then sent in the "
             "response";
}

/* The message ended: its MDN is made first, then one commit stores the
 * message with that MDN (kept) and the asynchronous MDN's job, its next
 * hops free to go on; only then is it answered. A replay (a duplicate,
 * which the commit finds) is answered anew "duplicate-document", that MDN
 * kept with the stored message. 0, or -2 when it could not be stored
 * (nothing answered; err). */
static int commit_answer(struct connector *c, struct http_exchange *x,
                         const struct as2_unpacked *info, struct error *err)
{
    struct as2_state *s = c->state;
    const char *id = intake_id(x->in, 0);
    struct mdn_kept kept = {0};
    struct reply rp;
    reply_make(c, id, 1, info, MDN_ERROR_NONE, NULL, 0, NULL, &rp, &kept);
    struct conn_receipt r = { .msgid = id, .direction = "sent",
        .headers = kept.hb, .body = kept.body, .len = kept.len,
        .mdn_id = kept.mdn_id, .original_id = info->req.message_id };
    intake_keep(x->in, kept.hb ? &r : NULL, kept.has_job ? &kept.job : NULL,
                kept_why(info, kept.hb != NULL || kept.has_job));
    int rc = intake_commit(x->in, err) < 0 ? -2 : 0;
    const char *stored = rc == 0 ? intake_duplicate(x->in, 0) : NULL;
    if (rc == 0)
        conn_log(c, LOG_INFO, id, "AS2 message %s from %s stored%s (%llu "
                 "bytes)", info->req.message_id, s->part->name,
                 stored ? " before: a duplicate" : "",
                 (unsigned long long)info->payload_bytes);
    if (rc == 0 && stored == NULL) {
        fault_point("as2.stored");          /* test hook: util/fault.h */
        reply_send(x->req, &rp);
        fault_point("as2.answered");
    } else {
        reply_free(&rp);
    }
    mdn_kept_free(&kept);
    if (stored != NULL) {
        struct mdn_kept again = {0};
        answer(c, x, stored, 1, info, MDN_ERROR_NONE, "duplicate-document",
               0, NULL, &again);
        release(c, x->in, stored, info, &again);
        mdn_kept_free(&again);
    }
    return rc;
}

enum wh_status as2_route(struct connector *c, struct http_exchange *x)
{
    struct net_request *r = x->req;
    struct as2_state *s = c->state;
    if (not_allowed(c, x))
        return WH_OK;
    if (strcmp(net_req_path(r), AS2_MDN_ROUTE) == 0) {
        mdn_in(c, x);
        return WH_OK;
    }
    int64_t declared = net_req_body_length(r);
    if (declared > s->max_body) {
        too_large(c, x, declared);
        return WH_OK;
    }
    struct error err = {0};
    struct mime_headers h;
    struct as2_unpacked info;
    struct body_src src = { .r = r, .cap = s->max_body };
    memset(&info, 0, sizeof(info));
    int rc = request_headers(r, &h, &err);
    if (rc == 0)
        rc = take_message(c, x, &h, &info, &src, &err);
    mime_headers_free(&h);
    if (rc == -1 && src.too_large) {
        too_large(c, x, -1);
        return WH_OK;
    }
    if (rc == 0)
        rc = commit_answer(c, x, &info, &err);
    if (rc == -2) {         /* could not store: the sender tries again */
        conn_log(c, LOG_ERROR, NULL, "AS2 message %s from %s not stored: %s",
                 info.req.message_id, s->part->name, err.msg);
        net_reply_error(r, 503, "unavailable", "cannot store the message "
                        "now; send it again later");
        return WH_OK;
    }
    if (rc < 0) {
        if (info.mdn_error == MDN_ERROR_NONE && !info.unsupported_micalg)
            info.mdn_error = MDN_ERROR_UNEXPECTED_PROCESSING_ERROR;
        char id[ID_LEN + 1] = "";
        if (src.cut)        /* the cause, not what unpack made of it */
            error_set(&err, "the body could not be read (cut off or timed "
                      "out before its end)");
        int first = refused(c, x, &info, err.msg, src.cut, id);
        answer(c, x, id, first, &info, info.mdn_error, NULL, 400, err.msg,
               NULL);
    }
    return WH_OK;
}
