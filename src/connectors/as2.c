/*
 * as2.c - the as2 connector (M4), destination half: config, open, send.
 * The source half (the /as2 route of the partner listener, inbound MDNs)
 * is as2_recv.c; the protocol itself is src/as2/ (no I/O there).
 *
 * Config: AS2_OPTIONS below (`wharf connector help as2`): "partner" names
 * a partner of the flow document (M7); optional "proxy" (as http),
 * "subject", "content_type", "timeout_ms", "mdn_timeout_s" (asynchronous
 * MDNs: how long to wait before sending again), "mdn_give_up_s" (how long
 * an asynchronous MDN we owe is retried, as2_recv.c), "max_body_bytes"
 * (the largest request the partner may POST to us, as2_recv.c).
 *
 * The AS2 Message-ID of a message is chosen once, from what is stored
 * before the first POST: "<WHARF-MESSAGE-ID@wharf>" (a UUIDv7, unique).
 * Every retry, every resend after mdn_timeout_s, a resend after a restart
 * or `wharf message resend` carry the same one, so a partner that already
 * has the message recognises the duplicate (RFC 4130); the content and so
 * its MIC are the same, the signature and encryption may be new.
 *
 * Sending one message: the payload streams from the vault through
 * as2_package (compress, sign with the newest valid profile key, encrypt
 * for the partner's current certificate, per its settings) into memory
 * when the payload is at most AS2_MEM_BODY_MAX (the packaged body of such
 * a message is at most ~1.4 times that: a few MiB for all the sends in
 * flight), POSTed with its Content-Length through net/client.c (the TLS
 * policy, the partner's CA and pin, proxies). A larger one is streamed
 * into its POST while it is packaged (chunked transfer encoding; see
 * "streaming" below), so the partner unpacks while we package; for a
 * partner with "chunked": false it is packaged into an anonymous
 * O_TMPFILE in the data directory (never linked: gone if the process
 * dies) first and POSTed with its Content-Length. Small messages thus
 * cost no inode each.
 *   - MDN none: a 2xx is the receipt.
 *   - MDN sync: the MDN in the response must verify (signed when the
 *     partner says so), say "processed" for our Message-ID and carry the
 *     MIC we computed; anything else fails the hop with the reason.
 *     An unsigned receipt without a MIC is taken when we asked for an
 *     unsigned one (RFC 4130 makes the MIC optional there), unless the
 *     partner sets require_mic; the receipt then says "unsigned receipt,
 *     no MIC".
 *   - MDN async: before the POST a durable job of the message and hop,
 *     as2.mdn-wait, is added (connectors/env.h: jobs); after a 2xx the
 *     hop waits (WH_AGAIN: no failed attempt, an info event "waiting for
 *     the asynchronous MDN" once) until the job settles it: as2_recv.c
 *     gives it the MDN when it arrives, which is checked the same way
 *     (sent, or failed with the reason); without one within
 *     mdn_timeout_s the hop's attempt failed and the message is sent
 *     again, same Message-ID, by the retry policy, never silently "sent".
 * A TLS failure is a failure, never "sent".
 *
 * Borrows the profile (vault handle keys) and the partner from its
 * environment (c->env->keys); owns the rest of its state.
 * Must never log a payload byte, a key or a credential.
 */
#include "connectors/as2_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>

#include "core/message.h"
#include "util/id.h"
#include "util/secret.h"

#define MDN_RESPONSE_MAX (1024 * 1024)

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- config -------------------------------------------------------------- */

static int one_line_valid(const char *key, const json_t *v, struct error *err)
{
    if (strpbrk(json_string_value(v), "\r\n"))
        return error_set(err, "%s must be a one-line string", key);
    return 0;
}

static const struct conn_option AS2_OPTIONS[] = {
    { "partner", CONN_STRING, CONN_REQUIRED, NULL, 0, 0, NULL, NULL,
      "the name of a partner of the flow document", NULL },
    { "subject", CONN_STRING, 0, NULL, 0, 200, NULL, NULL,
      "the Subject header of messages sent", one_line_valid },
    { "content_type", CONN_STRING, 0, NULL, 0, 200, NULL, NULL,
      "the Content-Type of payloads sent (default application/octet-"
      "stream)", one_line_valid },
    { "timeout_ms", CONN_INT, CONN_ADVANCED, NULL, 1000, 86400000, NULL,
      NULL, "one POST, with its synchronous MDN (default 600000)", NULL },
    { "mdn_timeout_s", CONN_INT, CONN_ADVANCED, "600", 1, 7 * 86400, NULL,
      NULL, "asynchronous MDNs: how long to wait before sending again",
      NULL },
    { "mdn_give_up_s", CONN_INT, CONN_ADVANCED, "604800", 10, 30 * 86400,
      NULL, NULL, "asynchronous MDNs we owe the partner: retried this long, "
      "then given up (a resend of the message sends it again)", NULL },
    { "max_body_bytes", CONN_INT, CONN_ADVANCED, "1073741824", 1024,
      AS2_MAX_BODY, NULL, NULL, "the largest request the partner may POST "
      "to us", NULL },
    CONN_PROXY_OPTIONS,
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

static const struct conn_action AS2_ACTIONS[] = {
    CONN_ACTION_TEST,
    { NULL, NULL, 0, NULL, NULL, NULL, NULL },
};

static void as2_close(struct connector *c)
{
    struct as2_state *s = c->state;
    if (s == NULL)
        return;
    secret_free(s->ca_pem);
    connector_proxy_close(&s->proxy);
    free(s);
    c->state = NULL;
}

/* Our profile and the partner, from the environment's keys. */
static int load_parties(struct connector *c, struct as2_state *s,
                        struct error *err)
{
    const char *name = conn_str(c, "partner");
    int rc = conn_keys_profile(c->env->keys, &s->prof, err);
    if (rc == 0)
        rc = error_set(err, "the flow document has no AS2 profile");
    if (rc > 0) {
        rc = conn_keys_partner(c->env->keys, name, &s->part, err);
        if (rc == 0)
            rc = error_set(err, "no partner named '%s'", name);
    }
    return rc > 0 ? 0 : -1;
}

static enum wh_status as2_open(struct connector *c, struct error *err)
{
    struct as2_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return error_set(err, "out of memory"), WH_FAIL;
    c->state = s;
    if (c->env == NULL) {
        error_set(err, "needs a data directory (its profile and partners)");
        as2_close(c);
        return WH_FAIL;
    }
    if (load_parties(c, s, err) < 0 ||
        connector_proxy_open(c, &s->proxy, err) < 0) {
        as2_close(c);
        return WH_FAIL;
    }
    s->mdn_timeout_ms = conn_int(c, "mdn_timeout_s") * 1000;
    s->mdn_give_up_ms = conn_int(c, "mdn_give_up_s") * 1000;
    s->max_body = conn_int(c, "max_body_bytes");
    if (net_allow_json(&s->allow, json_object_get(s->part->config,
                                                  "allow_from"), err) < 0) {
        error_prefix(err, "partner '%s'", s->part->name);
        as2_close(c);
        return WH_FAIL;
    }
    s->opts.timeout_ms = (long)conn_int(c, "timeout_ms");
    /* tls_ca: {"content": PEM} since import reads it (a path: older
     * imports, read by libcurl) */
    const char *ca = json_string_value(json_object_get(json_object_get(
                         s->part->config, "tls_ca"), "content"));
    if (ca && (s->ca_pem = secret_from(ca, strlen(ca))) == NULL) {
        error_set(err, "out of memory");
        as2_close(c);
        return WH_FAIL;
    }
    s->opts.ca_pem = s->ca_pem;
    s->opts.ca_file = partner_str(s->part, "tls_ca", NULL);
    s->opts.pin_sha256 = partner_str(s->part, "pin_sha256", NULL);
    s->opts.insecure = partner_bool(s->part, "insecure", 0);
    s->opts.proxy = s->proxy.use.url;
    s->opts.no_proxy = s->proxy.use.no_proxy;
    s->opts.proxy_auth = s->proxy.use.auth;
    s->opts.max_response = MDN_RESPONSE_MAX;
    return WH_OK;
}

/* ---- BIO adaptors ----------------------------------------------------------- */

struct reader_bio {
    as2_read_fn fn;
    void *ud;
    struct error *err;
    int failed;
};

static int reader_read(BIO *b, char *buf, int n)
{
    struct reader_bio *r = BIO_get_data(b);
    if (r->failed || n <= 0)
        return r->failed ? -1 : 0;
    ssize_t got = r->fn(r->ud, buf, (size_t)n, r->err);
    if (got < 0)
        r->failed = 1;
    return got < 0 ? -1 : (int)got;
}

static long reader_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int reader_destroy(BIO *b)
{
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *reader_meth;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void reader_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "wharf reader");
    if (m && BIO_meth_set_read(m, reader_read) == 1 &&
        BIO_meth_set_ctrl(m, reader_ctrl) == 1 &&
        BIO_meth_set_destroy(m, reader_destroy) == 1)
        reader_meth = m;
    else
        BIO_meth_free(m);
}

BIO *as2_bio_reader(as2_read_fn fn, void *ud, struct error *err)
{
    pthread_once(&reader_once, reader_init);
    struct reader_bio *r = calloc(1, sizeof(*r));
    BIO *b = reader_meth && r ? BIO_new(reader_meth) : NULL;
    if (b == NULL) {
        free(r);
        error_set(err, "out of memory");
        return NULL;
    }
    r->fn = fn;
    r->ud = ud;
    r->err = err;
    BIO_set_data(b, r);
    BIO_set_init(b, 1);
    return b;
}

/* The message's payload as read by the BIO (checked against its size). */
struct payload_src {
    struct payload_reader *r;
    int64_t left;
    int failed;                     /* err says why */
    struct error err;
};

static ssize_t payload_src_read(void *ud, void *buf, size_t n,
                                struct error *err)
{
    struct payload_src *p = ud;
    ssize_t got = message_payload_read(p->r, buf, n, err);
    if (got > 0 && (p->left -= got) < 0)
        got = error_set(err, "the payload is longer than its recorded size");
    if (got == 0 && p->left != 0)
        got = error_set(err, "the payload is shorter than its recorded size");
    p->failed |= got < 0;
    return got;
}

/* ---- policy ------------------------------------------------------------------ */

unsigned as2_partner_digests(const struct partner *p)
{
    const json_t *a = json_object_get(p->config, "allow_sign"), *v;
    size_t i;
    unsigned bits = 0;
    json_array_foreach(a, i, v) {
        enum as2_digest d = as2_digest_from_name(json_string_value(v));
        if (d != AS2_DIGEST_NONE)
            bits |= AS2_DIGEST_BIT(d);
    }
    if (a == NULL) {        /* the configured one and stronger SHA-2 */
        enum as2_digest d = as2_digest_from_name(partner_str(p, "sign",
                                                             "sha256"));
        bits = AS2_DIGEST_BIT(AS2_DIGEST_SHA256) |
               AS2_DIGEST_BIT(AS2_DIGEST_SHA384) |
               AS2_DIGEST_BIT(AS2_DIGEST_SHA512);
        if (d != AS2_DIGEST_NONE)
            bits |= AS2_DIGEST_BIT(d);
    }
    return bits;
}

static unsigned cipher_bits(const struct partner *p)
{
    const json_t *a = json_object_get(p->config, "allow_encrypt"), *v;
    size_t i;
    unsigned bits = 0;
    json_array_foreach(a, i, v) {
        enum as2_cipher c = as2_cipher_from_name(json_string_value(v));
        if (c != AS2_CIPHER_NONE)
            bits |= AS2_CIPHER_BIT(c);
    }
    if (a == NULL) {        /* the configured one and every AES */
        enum as2_cipher c = as2_cipher_from_name(partner_str(p, "encrypt",
                                                             "aes256-cbc"));
        for (int k = AS2_CIPHER_AES128_CBC; k <= AS2_CIPHER_AES256_GCM; k++)
            bits |= AS2_CIPHER_BIT(k);
        if (c != AS2_CIPHER_NONE)
            bits |= AS2_CIPHER_BIT(c);
    }
    return bits;
}

int as2_policy_make(const struct as2_state *s, struct as2_policy *pol,
                    struct error *err)
{
    memset(pol, 0, sizeof(*pol));
    struct as2_key *keys = calloc(s->prof->nkeys + 1, sizeof(*keys));
    X509 **certs = calloc(s->part->ncerts + 1, sizeof(*certs));
    if (keys == NULL || certs == NULL) {
        free(keys);
        free(certs);
        return error_set(err, "out of memory");
    }
    /* newest key first: a sender mostly uses our current certificate */
    for (size_t i = 0; i < s->prof->nkeys; i++) {
        keys[i].key = s->prof->keys[s->prof->nkeys - 1 - i].key;
        keys[i].cert = s->prof->keys[s->prof->nkeys - 1 - i].cert;
    }
    for (size_t i = 0; i < s->part->ncerts; i++)
        certs[i] = s->part->certs[i].cert;
    const char *sign = partner_str(s->part, "sign", "sha256");
    const char *enc = partner_str(s->part, "encrypt", "aes256-cbc");
    pol->partner = s->part->name;
    pol->our_id = s->prof->as2_id;
    pol->partner_id = s->part->as2_id;
    pol->keys = keys;
    pol->nkeys = s->prof->nkeys;
    pol->certs = certs;
    pol->ncerts = s->part->ncerts;
    pol->require_signed = strcmp(sign, "none") != 0 &&
                          !partner_bool(s->part, "accept_unsigned", 0);
    pol->require_encrypted = strcmp(enc, "none") != 0 &&
                             !partner_bool(s->part, "accept_unencrypted", 0);
    pol->digests = as2_partner_digests(s->part);
    pol->ciphers = cipher_bits(s->part);
    return 0;
}

void as2_policy_clear(struct as2_policy *pol)
{
    free((void *)pol->keys);
    free((void *)pol->certs);
    memset(pol, 0, sizeof(*pol));
}

/* ---- MDNs received -------------------------------------------------------------- */

void as2_receipt_keep(struct connector *c, const char *msgid,
                      const char *direction, const char *headers,
                      const void *body, size_t len, const char *mdn_id,
                      const char *original_id)
{
    struct error err = {0};
    struct conn_receipt r = { .msgid = msgid, .direction = direction,
        .headers = headers, .body = body, .len = len, .mdn_id = mdn_id,
        .original_id = original_id };
    if (conn_receipt_keep(c->env->history, &r, &err) < 0)
        conn_log(c, LOG_ERROR, msgid, "cannot keep the MDN %s: %s",
                 mdn_id ? mdn_id : "-", err.msg);
}

/* Hold the MDN received for the outcome's transaction (as2_mdn_confirm),
 * or keep it at once when it cannot be held. */
static void mdn_received_keep(struct connector *c, const char *msgid,
                              const char *headers, const char *body,
                              size_t len, const char *mdn_id,
                              const char *original_id,
                              struct conn_held **held)
{
    struct conn_receipt r = { .msgid = msgid, .direction = "received",
        .headers = headers, .body = body, .len = len, .mdn_id = mdn_id,
        .original_id = original_id };
    conn_held_free(*held);
    if ((*held = conn_receipt_hold(&r)) == NULL)
        as2_receipt_keep(c, msgid, "received", headers, body, len, mdn_id,
                         original_id);
}

enum wh_status as2_mdn_confirm(struct connector *c, const char *msgid,
                               const char *headers, const char *body,
                               size_t len, const char *message_id,
                               const char *mic, char *receipt, size_t rsz,
                               struct conn_held **held, struct error *err)
{
    struct as2_state *s = c->state;
    struct mime_headers h;
    mime_headers_init(&h);
    size_t off = 0;
    struct as2_mdn_received r;
    memset(&r, 0, sizeof(r));
    X509 **certs = calloc(s->part->ncerts + 1, sizeof(*certs));
    BIO *b = certs ? BIO_new_mem_buf(body ? body : "", (int)len) : NULL;
    enum wh_status st = WH_FAIL;
    for (size_t i = 0; certs && i < s->part->ncerts; i++)
        certs[i] = s->part->certs[i].cert;
    int want_signed = partner_bool(s->part, "mdn_signed", 1);
    struct as2_mdn_read_opts o = {
        .partner = s->part->name, .certs = certs, .ncerts = s->part->ncerts,
        .digests = as2_partner_digests(s->part),
        .require_signed = want_signed,
    };
    /* RFC 4130: only a signed receipt must carry the MIC */
    bool mic_optional = !want_signed &&
                        !partner_bool(s->part, "require_mic", 0);
    if (b == NULL)
        error_set(err, "out of memory");
    else if (mime_headers_parse(&h, headers ? headers : "\r\n",
                                headers ? strlen(headers) : 2, &off, err) < 0)
        error_prefix(err, "the MDN's headers");
    else if (as2_mdn_read(&o, &h, b, &r, err) < 0)
        error_prefix(err, "the MDN from %s", s->part->name);
    else if (as2_mdn_check(&r, message_id, mic, mic_optional, err) == 0) {
        if (r.mdn.has_mic)
            snprintf(receipt, rsz, "MDN processed%s, MIC %s", r.is_signed
                     ? " (signed)" : "", r.mic);
        else
            snprintf(receipt, rsz, "MDN processed (unsigned receipt, no "
                     "MIC)");
        st = WH_OK;
    }
    if (st != WH_OK) {         /* R19: negative MDNs, until a good one */
        char summary[600];
        snprintf(summary, sizeof(summary), "the MDN from %s does not confirm "
                 "%.200s: %.300s", s->part->name, message_id, err->msg);
        conn_alert(c->env->history, "as2.mdn", c->name, CONN_ALERT_WARNING,
                   summary, msgid);
    } else {
        conn_alert_clear(c->env->history, "as2.mdn", c->name);
        conn_alert_clear(c->env->history, "as2.mdn_missing", c->name);
    }
    if (body && len > 0)
        mdn_received_keep(c, msgid, headers, body, len,
                          r.message_id[0] ? r.message_id : NULL, message_id,
                          held);
    BIO_free(b);
    free(certs);
    mime_headers_free(&h);
    return st;
}

/* ---- sending ---------------------------------------------------------------------- */

/* Everything one send needs, released by send_done. */
struct send {
    char message_id[ID_LEN + 16];   /* "<WHARF-ID@wharf>": see the top */
    struct as2_package_opts po;
    struct as2_signer signer;
    struct as2_packaged res;
    enum as2_micalg micalg;
    int fd;                     /* the packaged body (O_TMPFILE), or -1 */
    BIO *mem;                   /* or it, in memory (small messages) */
    size_t mem_off;             /* bytes of mem the POST has read */
    char **hdrs;                /* "Name: value" list, NULL-terminated */
    /* or streamed while it is packaged (stream_start): the packaging
     * thread writes into a pipe the POST reads */
    int streamed;
    struct connector *c;
    struct delivery *d;
    int pipe_r, pipe_w;         /* -1 when closed */
    pthread_t th;
    int th_started, th_joined;
    int pkg_rc;                 /* the thread's as2_package_body result */
    struct error pkg_err;
    int pkg_failed;             /* the POST was aborted for it */
    int body_done;              /* the whole body went to the POST */
    int wait_added;             /* async: the wait exists (wait_add) */
    int wait_failed;            /* async: the wait could not be added */
    struct error wait_err;
};

static void stream_stop(struct send *sd);

static void send_done(struct send *sd)
{
    stream_stop(sd);
    as2_packaged_free(&sd->res);
    if (sd->fd >= 0)
        close(sd->fd);
    BIO_free(sd->mem);
    for (size_t i = 0; sd->hdrs && sd->hdrs[i]; i++)
        free(sd->hdrs[i]);
    free(sd->hdrs);
}

static enum as2_compress compress_mode(const struct partner *p)
{
    if (!partner_bool(p, "compress", 0))
        return AS2_COMPRESS_NONE;
    return strcmp(partner_str(p, "compress_order", "before_sign"),
                  "after_sign") == 0 ? AS2_COMPRESS_AFTER_SIGNING
                                     : AS2_COMPRESS_BEFORE_SIGNING;
}

/* Fill the package options from the partner's settings at now. */
static int send_opts(struct connector *c, const struct message *m,
                     struct send *sd, struct error *err)
{
    struct as2_state *s = c->state;
    const struct partner *p = s->part;
    int64_t now = now_ms();
    struct as2_package_opts *o = &sd->po;
    enum as2_digest dg = as2_digest_from_name(partner_str(p, "sign", "sha256"));
    enum as2_cipher ci = as2_cipher_from_name(partner_str(p, "encrypt",
                                                          "aes256-cbc"));
    o->from = s->prof->as2_id;
    o->to = p->as2_id;
    o->host = "wharf";
    as2_message_id_of(m->id, sd->message_id, sizeof(sd->message_id));
    o->message_id = sd->message_id;
    o->subject = str(c->config, "subject");
    o->filename = m->filename;
    o->content_type = str(c->config, "content_type");
    if (dg != AS2_DIGEST_NONE) {
        const struct profile_key *k = profile_sign_key(s->prof, now);
        if (k == NULL)
            return error_set(err, "no profile key is valid now to sign with");
        sd->signer = (struct as2_signer){ .cert = k->cert, .key = k->key,
            .digest = dg, .padding = partner_bool(p, "sign_pss", 0)
                                     ? AS2_SIG_PSS : AS2_SIG_PKCS1 };
        o->signer = &sd->signer;
    }
    if (ci != AS2_CIPHER_NONE) {
        if ((o->recipient = partner_send_cert(p, now)) == NULL)
            return error_set(err, "partner %s has no certificate valid now "
                             "to encrypt for", p->name);
        o->cipher = ci;
        o->kt = partner_bool(p, "encrypt_oaep", 0) ? AS2_KT_RSA_OAEP
                                                   : AS2_KT_RSA_PKCS1;
    }
    o->compress = compress_mode(p);
    o->compress_level = (int)partner_int(p, "compress_level", 0);
    o->transfer = strcmp(partner_str(p, "transfer_encoding", "binary"),
                         "base64") == 0 ? AS2_TRANSFER_BASE64
                                        : AS2_TRANSFER_BINARY;
    o->canonicalize = partner_bool(p, "canonicalize", 0);
    o->micalg_no_hyphen = strcmp(partner_str(p, "micalg_spelling", "rfc"),
                                 "plain") == 0;
    const char *mdn = partner_str(p, "mdn", "sync");
    o->mdn = !strcmp(mdn, "none") ? AS2_MDN_NONE : !strcmp(mdn, "async")
             ? AS2_MDN_ASYNC : AS2_MDN_SYNC;
    o->receipt_url = partner_str(p, "async_mdn_url", NULL);
    o->mdn_signed = partner_bool(p, "mdn_signed", 1);
    return 0;
}

/* An unlinked file in dir for one packaged body: O_TMPFILE, or where the
 * file system lacks it, a mkstemp file unlinked at once. -1 with errno. */
static int body_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR &&
                    errno != EINVAL))
        return fd;
    char path[4300];
    snprintf(path, sizeof(path), "%s/.as2-body-XXXXXX", dir);
    if ((fd = mkostemp(path, O_CLOEXEC)) >= 0 && unlink(path) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Payloads up to this size are packaged in memory (the top of this file). */
#define AS2_MEM_BODY_MAX (256 * 1024)

/* Where the packaged body of m goes: sd->mem (owned by sd), or a new BIO
 * (the caller frees it) on sd->fd, an unlinked file in the scratch
 * directory. NULL with err. */
static BIO *send_sink(struct connector *c, const struct message *m,
                      struct send *sd, struct error *err)
{
    if (m->size <= AS2_MEM_BODY_MAX) {
        if ((sd->mem = BIO_new(BIO_s_mem())) == NULL)
            error_set(err, "out of memory");
        return sd->mem;
    }
    const char *dir = c->env->settings->scratch_dir;
    if ((sd->fd = body_file(dir)) < 0) {
        error_errno(err, errno, "cannot create a temporary file in %s", dir);
        return NULL;
    }
    BIO *out = BIO_new_fd(sd->fd, BIO_NOCLOSE);
    if (out == NULL)
        error_set(err, "out of memory");
    return out;
}

/* The body of m (headers in sd->res: as2_package_begin) into out. A
 * payload that cannot be read (the vault's integrity check) is the
 * reason given, not the packaging's consequence of it. */
static int package_body(struct send *sd, const struct message *m, BIO *out,
                        struct error *err)
{
    struct payload_src src = { .r = message_payload_open(m, err),
                               .left = m->size };
    BIO *in = src.r ? as2_bio_reader(payload_src_read, &src, &src.err)
                    : NULL;
    if (src.r && in == NULL)
        *err = src.err;
    int rc = in ? as2_package_body(&sd->po, in, out, &sd->res, err) : -1;
    if (rc != 0 && src.failed) {
        *err = src.err;
        error_prefix(err, "cannot read the payload");
    }
    if (rc == 0 && BIO_flush(out) != 1)
        rc = error_set(err, "cannot write the packaged message");
    BIO_free(in);
    if (src.r)
        message_payload_close(src.r);
    return rc;
}

/* Package m into sd->mem or sd->fd (send_sink), ready to be read. */
static int send_package(struct connector *c, const struct message *m,
                        struct send *sd, struct error *err)
{
    BIO *out = send_sink(c, m, sd, err);
    if (out == NULL)
        return -1;
    int rc = as2_package_begin(&sd->po, &sd->res, err);
    if (rc == 0)
        rc = package_body(sd, m, out, err);
    if (out != sd->mem)
        BIO_free(out);
    if (rc == 0 && sd->fd >= 0 && lseek(sd->fd, 0, SEEK_SET) != 0)
        rc = error_errno(err, errno, "cannot rewind the packaged message");
    return rc;
}

/* ---- streaming the packaged body into the POST ----------------------------
 * A message over AS2_MEM_BODY_MAX whose partner allows it (partner key
 * "chunked", default true) is not packaged into a file first: its headers
 * come from as2_package_begin, then a thread of its own runs
 * as2_package_body into a pipe (bounded: the kernel's pipe buffer) while
 * the POST reads the other end and sends it chunked, so the partner
 * decrypts and verifies while we still compress, sign and encrypt. The
 * body ends (the final 0-chunk) only once the thread succeeded; when it
 * fails, the POST is aborted before that end and the hop fails with the
 * packaging error, as a failure of send_package does. */

#define AS2_PIPE_BYTES (1024 * 1024)
#define AS2_WRITE_BYTES (128 * 1024)

/* The packaging thread's sink: the pipe behind a write buffer. The CMS
 * layers write each piece they make (an OCTET STRING's header, a
 * cipher's output) on its own; unbuffered, each piece was a write(2)
 * taking the pipe's lock against the POST's reads (docs/performance.md,
 * "The packaged body into the pipe in large writes"). */
static BIO *stream_sink(int fd)
{
    BIO *f = BIO_new_fd(fd, BIO_NOCLOSE);
    BIO *b = f ? BIO_new(BIO_f_buffer()) : NULL;
    if (b == NULL || BIO_set_write_buffer_size(b, AS2_WRITE_BYTES) != 1) {
        BIO_free(b);
        BIO_free(f);
        return NULL;
    }
    return BIO_push(b, f);
}

static void *stream_main(void *arg)
{
    struct send *sd = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);       /* a POST gone away gives EPIPE */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    BIO *out = stream_sink(sd->pipe_w);
    int rc = out ? package_body(sd, sd->d->msg, out, &sd->pkg_err)
                 : error_set(&sd->pkg_err, "out of memory");
    BIO_free_all(out);
    close(sd->pipe_w);              /* the reader's end of the body */
    sd->pipe_w = -1;
    sd->pkg_rc = rc;
    return NULL;
}

/* The pipe and the packaging thread; the headers are in sd->res. */
static int stream_start(struct connector *c, struct delivery *d,
                        struct send *sd, struct error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return error_errno(err, errno, "cannot make a pipe");
    (void)fcntl(fds[1], F_SETPIPE_SZ, AS2_PIPE_BYTES);  /* or the default */
    sd->pipe_r = fds[0];
    sd->pipe_w = fds[1];
    sd->c = c;
    sd->d = d;
    sd->streamed = 1;
    int e = pthread_create(&sd->th, NULL, stream_main, sd);
    if (e != 0) {
        close(sd->pipe_w);
        sd->pipe_w = -1;
        return error_errno(err, e, "cannot start the packaging thread");
    }
    sd->th_started = 1;
    return 0;
}

/* Wait for the packaging thread: its result. */
static int stream_join(struct send *sd)
{
    if (sd->th_started && !sd->th_joined) {
        pthread_join(sd->th, NULL);
        sd->th_joined = 1;
    }
    return sd->th_started ? sd->pkg_rc : -1;
}

/* After the POST: the thread, if it still writes, fails on the closed
 * pipe and ends. */
static void stream_stop(struct send *sd)
{
    if (!sd->streamed)
        return;
    if (sd->pipe_r >= 0)
        close(sd->pipe_r);
    sd->pipe_r = -1;
    stream_join(sd);
    if (sd->pipe_w >= 0)
        close(sd->pipe_w);
    sd->pipe_w = -1;
}

static int wait_add(struct connector *c, const struct delivery *d,
                    const struct send *sd, struct error *err);

/* The POST's body: what the thread writes; at its end, the body is
 * complete only when the thread succeeded (-1 aborts the POST: no final
 * 0-chunk). An asynchronous MDN's wait is added then, once the MIC is
 * known and before the partner has the whole message. */
static ssize_t stream_read(struct send *sd, void *buf, size_t n,
                           struct error *err)
{
    ssize_t got;
    do {
        got = read(sd->pipe_r, buf, n);
    } while (got < 0 && errno == EINTR);
    if (got != 0)
        return got > 0 ? got : error_errno(err, errno, "cannot read the "
                                           "packaged message");
    if (stream_join(sd) != 0) {
        sd->pkg_failed = 1;
        *err = sd->pkg_err;
        return -1;
    }
    if (sd->po.mdn == AS2_MDN_ASYNC &&
        wait_add(sd->c, sd->d, sd, &sd->wait_err) < 0) {
        sd->wait_failed = 1;
        *err = sd->wait_err;
        return -1;
    }
    sd->wait_added = sd->po.mdn == AS2_MDN_ASYNC;
    sd->body_done = 1;
    return 0;
}

/* Stream m into its POST rather than package it first? */
static int stream_wanted(const struct as2_state *s, const struct message *m)
{
    return m->size > AS2_MEM_BODY_MAX && partner_bool(s->part, "chunked", 1);
}

static int send_headers(struct send *sd, struct error *err)
{
    const struct mime_headers *h = &sd->res.headers;
    sd->hdrs = calloc(h->count + 2, sizeof(char *));
    if (sd->hdrs == NULL)
        return error_set(err, "out of memory");
    for (size_t i = 0; i < h->count; i++) {
        size_t n = strlen(h->h[i].name) + strlen(h->h[i].value) + 3;
        if ((sd->hdrs[i] = malloc(n)) == NULL)
            return error_set(err, "out of memory");
        snprintf(sd->hdrs[i], n, "%s: %s", h->h[i].name, h->h[i].value);
    }
    /* no "Expect: 100-continue" round trip */
    sd->hdrs[h->count] = strdup("Expect:");
    return sd->hdrs[h->count] ? 0 : error_set(err, "out of memory");
}

static ssize_t body_read(void *ud, void *buf, size_t n, struct error *err)
{
    struct send *sd = ud;
    if (sd->streamed)
        return stream_read(sd, buf, n, err);
    if (sd->mem) {
        char *p = NULL;
        long len = BIO_get_mem_data(sd->mem, &p);
        size_t left = len > 0 && (size_t)len > sd->mem_off
                      ? (size_t)len - sd->mem_off : 0;
        if (n > left)
            n = left;
        memcpy(buf, p + sd->mem_off, n);
        sd->mem_off += n;
        return (ssize_t)n;
    }
    ssize_t got = read(sd->fd, buf, n);
    if (got < 0)
        return error_errno(err, errno, "cannot read the packaged message");
    return got;
}

/* The POST starts the packaged body over (net_client_req.rewind): not
 * for a body streamed while it is packaged. */
static int body_rewind(void *ud)
{
    struct send *sd = ud;
    if (sd->streamed)
        return -1;
    sd->mem_off = 0;
    return sd->mem || lseek(sd->fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

/* ---- asynchronous MDNs: the job that waits -----------------------------------
 * A send that asks for an asynchronous MDN adds the job "as2.mdn-wait"
 * (data "MESSAGE-ID\nMIC", in the clear: AS2_JOBS_IN_CLEAR) before the
 * POST: it waits until the MDN arrives (as2_recv.c gives it to the job)
 * or mdn_timeout_s passed; the hop waits meanwhile (WH_AGAIN, no
 * attempt counted). The job settles the hop: sent (the MDN confirms),
 * failed (it does not), or a failed attempt when none came (the hop sends
 * again, same Message-ID, by the retry policy). */

/* The hop looks again this long after the deadline at the latest: the
 * job settles it first unless the job was lost with its server. */
#define AS2_WAIT_SLACK_MS 60000

static int wait_add(struct connector *c, const struct delivery *d,
                    const struct send *sd, struct error *err)
{
    struct as2_state *s = c->state;
    char val[AS2_MSGID_MAX + AS2_MIC_MAX + 4];
    int n = snprintf(val, sizeof(val), "%s\n%s", sd->res.message_id,
                     sd->res.mic);
    struct secret *v = secret_from(val, (size_t)n);
    struct conn_job_new job = { .conn = c->name, .kind = AS2_JOB_MDN_WAIT,
        .message_id = d->msg->id, .hop_id = d->hop_id, .data = v,
        .in_clear = AS2_JOBS_IN_CLEAR, .waiting = 1,
        .give_up_ms = s->mdn_timeout_ms };
    int rc = v ? conn_job_add(c->env->jobs, &job, err)
               : error_set(err, "out of memory");
    secret_free(v);
    return rc;
}

static void wait_cancel(struct connector *c, const struct delivery *d)
{
    struct error err = {0};
    if (conn_job_cancel(c->env->jobs, c->name, d->msg->id, AS2_JOB_MDN_WAIT,
                        &err) < 0)
        conn_log(c, LOG_WARNING, d->msg->id, "cannot drop the wait for an "
                 "asynchronous MDN (it gives up by itself): %s", err.msg);
}

/* Post the packaged message; st: what came of it (the hop's answer). */
static enum wh_status send_post(struct connector *c, struct delivery *d,
                                struct send *sd)
{
    struct as2_state *s = c->state;
    struct net_client_req req = {
        .method = "POST", .url = s->part->url,
        .headers = (const char *const *)sd->hdrs,
        .body_len = sd->streamed ? NET_CLIENT_BODY_STREAMED
                                 : (int64_t)sd->res.body_bytes,
        .read = body_read,
        .read_ud = sd,
        .rewind = body_rewind,
        /* only a synchronous MDN is read (up to MDN_RESPONSE_MAX) */
        .write = sd->po.mdn == AS2_MDN_SYNC ? NULL : net_client_discard,
    };
    struct net_client_resp resp;
    if (sd->streamed)
        conn_log(c, LOG_DEBUG, d->msg->id, "AS2 %s to %s (streamed as it "
                 "is packaged, chunked)", sd->res.message_id, s->part->url);
    else
        conn_log(c, LOG_DEBUG, d->msg->id, "AS2 %s to %s (%llu bytes)",
                 sd->res.message_id, s->part->url,
                 (unsigned long long)sd->res.body_bytes);
    enum wh_status st = net_client_request(&s->opts, &req, &resp, &d->err);
    if (sd->streamed && !sd->body_done)
        stream_stop(sd);            /* cut off: the thread ends on EPIPE */
    int early = st == WH_OK && sd->streamed && !sd->body_done;
    if (sd->pkg_failed) {           /* as when send_package fails */
        st = WH_FAIL;
        d->err = sd->pkg_err;
    } else if (sd->wait_failed) {
        st = WH_RETRY;
        d->err = sd->wait_err;
    } else if (early && resp.status >= 200 && resp.status <= 299) {
        /* a 2xx before the end of the body: not a delivery */
        st = WH_RETRY;
        error_set(&d->err, "HTTP %ld from %s before the whole message was "
                  "sent", resp.status, s->part->url);
    } else if (st == WH_OK && (resp.status < 200 || resp.status > 299)) {
        st = net_client_status_class(resp.status);
        error_set(&d->err, "HTTP %ld from %s", resp.status, s->part->url);
    } else if (st == WH_OK && sd->po.mdn == AS2_MDN_SYNC) {
        st = as2_mdn_confirm(c, d->msg->id, resp.headers, resp.body,
                             resp.len, sd->res.message_id, sd->res.mic,
                             d->receipt, sizeof(d->receipt), &d->held,
                             &d->err);
    } else if (st == WH_OK && sd->po.mdn == AS2_MDN_ASYNC) {
        /* not a failed attempt: the hop waits for the MDN (its job) */
        st = WH_AGAIN;
        d->again_at = now_ms() + s->mdn_timeout_ms + AS2_WAIT_SLACK_MS;
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld: sent as %.120s; "
                 "waiting for the asynchronous MDN (sent again after %lld s "
                 "without one)", resp.status, sd->res.message_id,
                 (long long)(s->mdn_timeout_ms / 1000));
    } else if (st == WH_OK) {
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld, %.200s (no MDN "
                 "requested)", resp.status, sd->res.message_id);
    }
    net_client_resp_free(&resp);
    return st;
}

static enum wh_status send_once(struct connector *c, struct delivery *d)
{
    struct send sd;
    memset(&sd, 0, sizeof(sd));
    sd.fd = -1;
    sd.pipe_r = sd.pipe_w = -1;
    int stream = stream_wanted(c->state, d->msg);
    if (send_opts(c, d->msg, &sd, &d->err) < 0 ||
        (stream ? as2_package_begin(&sd.po, &sd.res, &d->err)
                : send_package(c, d->msg, &sd, &d->err)) < 0 ||
        send_headers(&sd, &d->err) < 0 ||
        (stream && stream_start(c, d, &sd, &d->err) < 0)) {
        send_done(&sd);
        return WH_FAIL;
    }
    /* the wait exists before the partner can answer it (streamed: added
     * at the end of the body, stream_read) */
    int async = sd.po.mdn == AS2_MDN_ASYNC;
    if (async && !stream && wait_add(c, d, &sd, &d->err) < 0) {
        send_done(&sd);
        return WH_RETRY;
    }
    sd.wait_added = async && !stream;
    enum wh_status st = send_post(c, d, &sd);
    if (sd.wait_added && st != WH_AGAIN)
        wait_cancel(c, d);
    send_done(&sd);
    return st;
}

static enum wh_status as2_deliver(struct connector *c, struct delivery *d)
{
    struct as2_state *s = c->state;
    d->receipt[0] = '\0';
    /* a wait still open (a restart, a hop that looked again early): the
     * job settles the hop; nothing is sent meanwhile */
    int waiting = strcmp(partner_str(s->part, "mdn", "sync"), "async") ? 0
                  : conn_job_active(c->env->jobs, c->name, d->msg->id,
                                    AS2_JOB_MDN_WAIT, &d->err);
    if (waiting < 0)
        return d->status = WH_RETRY;
    if (waiting) {
        d->again_at = now_ms() + s->mdn_timeout_ms + AS2_WAIT_SLACK_MS;
        return d->status = WH_AGAIN;
    }
    error_clear(&d->err);
    return d->status = send_once(c, d);
}

/* R19: a missing MDN is an alert until a good one clears it. */
static void as2_mdn_missing_alert(struct connector *c, const char *msgid,
                                  const char *why)
{
    struct as2_state *s = c->state;
    char summary[600];
    snprintf(summary, sizeof(summary), "no MDN from %s: %.400s",
             s->part->name, why);
    conn_alert(c->env->history, "as2.mdn_missing", c->name,
               CONN_ALERT_WARNING, summary, msgid);
}

/* The job as2.mdn-wait: the MDN arrived (j->input: the header block, a
 * NUL, the body) and settles the hop; or none came by the deadline: the
 * hop's attempt failed and it sends again. */
static enum wh_status as2_mdn_wait_run(struct connector *c, struct conn_job *j)
{
    const char *raw = j->data ? (const char *)secret_data(j->data) : NULL;
    const char *nl = raw ? memchr(raw, '\n', secret_len(j->data)) : NULL;
    char *mid = nl ? strndup(raw, (size_t)(nl - raw)) : NULL;
    char *mic = nl ? strndup(nl + 1, secret_len(j->data) -
                             (size_t)(nl + 1 - raw)) : NULL;
    enum wh_status st = WH_OK;
    if (mid == NULL || mic == NULL) {
        j->hop = CONN_JOB_HOP_RETRY;
        st = WH_FAIL;
        error_set(&j->err, "the wait for the asynchronous MDN is unreadable: "
                  "the message is sent again");
    } else if (j->input == NULL) {
        j->hop = CONN_JOB_HOP_RETRY;
        st = WH_FAIL;
        error_set(&j->err, "no asynchronous MDN for %s within %lld s: it is "
                  "sent again (same Message-ID)", mid,
                  (long long)((j->give_up_at - j->created_at) / 1000));
        as2_mdn_missing_alert(c, j->message_id, j->err.msg);
    } else {
        const char *in = (const char *)secret_data(j->input);
        size_t len = secret_len(j->input), hl = strnlen(in, len);
        enum wh_status ok = hl < len
            ? as2_mdn_confirm(c, j->message_id, in, in + hl + 1,
                              len - hl - 1, mid, mic, j->receipt,
                              sizeof(j->receipt), &j->held, &j->err)
            : (error_set(&j->err, "the stored MDN is malformed"), WH_FAIL);
        j->hop = ok == WH_OK ? CONN_JOB_HOP_SENT : CONN_JOB_HOP_FAILED;
        snprintf(j->note, sizeof(j->note), "asynchronous MDN for %.150s: %s",
                 mid, ok == WH_OK ? j->receipt : j->err.msg);
    }
    free(mid);
    free(mic);
    return st;
}

static enum wh_status as2_test(struct connector *c, struct error *err)
{
    struct as2_state *s = c->state;
    struct net_client_req req = { .method = "HEAD", .url = s->part->url,
                                  .body_len = -1 };
    struct net_client_resp resp;
    enum wh_status st = net_client_request(&s->opts, &req, &resp, err);
    net_client_resp_free(&resp);
    if (st == WH_OK && profile_sign_key(s->prof, now_ms()) == NULL)
        return error_set(err, "no profile key is valid now"), WH_FAIL;
    if (st == WH_OK && partner_send_cert(s->part, now_ms()) == NULL)
        return error_set(err, "partner %s has no certificate valid now",
                         s->part->name), WH_FAIL;
    return st;
}

void as2_message_id_of(const char *msgid, char *out, size_t n)
{
    snprintf(out, n, "<%s@wharf>", msgid);
}

int as2_message_id_wharf(const char *as2_id, char out[ID_LEN + 1])
{
    const char *p = as2_id[0] == '<' ? as2_id + 1 : as2_id;
    if (strlen(p) < ID_LEN + 1 || p[ID_LEN] != '@')
        return -1;
    memcpy(out, p, ID_LEN);
    out[ID_LEN] = '\0';
    return id_valid(out) ? 0 : -1;
}

static const struct conn_job_type AS2_JOBS[] = {
    /* both in the clear (AS2_JOBS_IN_CLEAR): an MDN, its URL, a
     * Message-ID and a MIC, which the receipts and events keep so too */
    { AS2_JOB_MDN_OUT, "send an asynchronous MDN we owe the partner "
      "(retried for mdn_give_up_s)", { 0, 5000, 300000 }, as2_mdn_out_run,
      "as2.mdn_out", AS2_JOBS_IN_CLEAR },
    /* its timeout raises as2.mdn_missing itself (as2_mdn_missing_alert) */
    { AS2_JOB_MDN_WAIT, "wait for the partner's asynchronous MDN until "
      "mdn_timeout_s (then the message is sent again)", { 1, 1000, 1000 },
      as2_mdn_wait_run, NULL, AS2_JOBS_IN_CLEAR },
    { NULL, NULL, { 0, 0, 0 }, NULL, NULL, 0 },
};

const struct connector_type connector_as2 = {
    .name = "as2",
    .summary = "AS2 (RFC 4130) with a partner of the flow document: signed, "
               "encrypted, receipts (M4)",
    .options = AS2_OPTIONS,
    .actions = AS2_ACTIONS,
    .jobs = AS2_JOBS,
    .needs_partner = 1,
    .ends_path = 1,
    .concurrency = 8,           /* POSTs in flight: each waits for its MDN */
    .open = as2_open,
    .deliver = as2_deliver,
    .route = as2_route,
    .route_prefix = AS2_ROUTE,
    .route_max_body = AS2_MAX_BODY,
    .route_pick = as2_pick,
    .test = as2_test,
    .close = as2_close,
};
