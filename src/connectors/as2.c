/*
 * as2.c - the as2 connector (M4), destination half: config, open, send.
 * The source half (the /as2 route of the partner listener, inbound MDNs)
 * is as2_recv.c; the protocol itself is src/as2/ (no I/O there).
 *
 * Config: AS2_OPTIONS below (`wharf connector help as2`): "partner" names
 * a partner of the flow document (M7); optional "proxy" (as http),
 * "subject", "content_type", "timeout_ms", "mdn_timeout_s" (asynchronous
 * MDNs: how long to wait before sending again), "max_body_bytes" (the
 * largest request the partner may POST to us, as2_recv.c).
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
 * for the partner's current certificate, per its settings) into an
 * anonymous O_TMPFILE in the data directory (never linked: gone if the
 * process dies), which is POSTed with its Content-Length through
 * net/client.c (the TLS policy, the partner's CA and pin, proxies).
 *   - MDN none: a 2xx is the receipt.
 *   - MDN sync: the MDN in the response must verify (signed when the
 *     partner says so), say "processed" for our Message-ID and carry the
 *     MIC we computed; anything else fails the hop with the reason.
 *     An unsigned receipt without a MIC is taken when we asked for an
 *     unsigned one (RFC 4130 makes the MIC optional there), unless the
 *     partner sets require_mic; the receipt then says "unsigned receipt,
 *     no MIC".
 *   - MDN async: after a 2xx the hop waits (WH_AGAIN: no failed attempt,
 *     an info event "waiting for the asynchronous MDN" once) until
 *     as2_recv.c has stored the MDN (and woken the hop), which is then
 *     checked the same way; without one within mdn_timeout_s the attempt
 *     failed (WH_RETRY) and the message is sent again, same Message-ID,
 *     by the retry policy, never silently "sent".
 * A TLS failure is a failure, never "sent".
 *
 * Owns the unsealed profile keys and partner certificates of its state.
 * Must never log a payload byte, a key or a credential.
 */
#include "connectors/as2_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/message.h"
#include "core/wharf.h"
#include "security/alerts.h"
#include "store/partner_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"
#include "vault/vault.h"

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
    profile_clear(&s->prof);
    partner_clear(&s->part);
    secret_free(s->ca_pem);
    connector_proxy_close(&s->proxy);
    free(s);
    c->state = NULL;
}

static int load_parties(struct connector *c, struct as2_state *s,
                        struct error *err)
{
    const char *name = conn_str(c, "partner");
    struct store *st = store_open(c->wharf->db_path, err);
    if (st == NULL)
        return -1;
    int rc = profile_load(c->wharf, st, &s->prof, err);
    if (rc == 0)
        rc = error_set(err, "the flow document has no AS2 profile");
    if (rc > 0) {
        rc = partner_load(st, name, 0, &s->part, err);
        if (rc == 0)
            rc = error_set(err, "no partner named '%s'", name);
    }
    store_close(st);
    return rc > 0 ? 0 : -1;
}

static enum wh_status as2_open(struct connector *c, struct error *err)
{
    struct as2_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return error_set(err, "out of memory"), WH_FAIL;
    c->state = s;
    if (c->wharf == NULL || load_parties(c, s, err) < 0 ||
        connector_proxy_open(c, &s->proxy, err) < 0) {
        as2_close(c);
        return WH_FAIL;
    }
    s->mdn_timeout_ms = conn_int(c, "mdn_timeout_s") * 1000;
    s->max_body = conn_int(c, "max_body_bytes");
    /* poll() only retries queued MDNs: not as often as a folder */
    if (c->poll_ms == c->wharf->conf.poll_ms && c->poll_ms < 5000)
        c->poll_ms = 5000;      /* unless the connector set its own */
    s->opts.timeout_ms = (long)conn_int(c, "timeout_ms");
    /* tls_ca: {"content": PEM} since import reads it (a path: older
     * imports, read by libcurl) */
    const char *ca = json_string_value(json_object_get(json_object_get(
                         s->part.config, "tls_ca"), "content"));
    if (ca && (s->ca_pem = secret_from(ca, strlen(ca))) == NULL) {
        error_set(err, "out of memory");
        as2_close(c);
        return WH_FAIL;
    }
    s->opts.ca_pem = s->ca_pem;
    s->opts.ca_file = partner_str(&s->part, "tls_ca", NULL);
    s->opts.pin_sha256 = partner_str(&s->part, "pin_sha256", NULL);
    s->opts.insecure = partner_bool(&s->part, "insecure", 0);
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
};

static ssize_t payload_src_read(void *ud, void *buf, size_t n,
                                struct error *err)
{
    struct payload_src *p = ud;
    ssize_t got = payload_read(p->r, buf, n, err);
    if (got > 0 && (p->left -= got) < 0)
        return error_set(err, "the payload is longer than its recorded size");
    if (got == 0 && p->left != 0)
        return error_set(err, "the payload is shorter than its recorded size");
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
    struct as2_key *keys = calloc(s->prof.nkeys + 1, sizeof(*keys));
    X509 **certs = calloc(s->part.ncerts + 1, sizeof(*certs));
    if (keys == NULL || certs == NULL) {
        free(keys);
        free(certs);
        return error_set(err, "out of memory");
    }
    /* newest key first: a sender mostly uses our current certificate */
    for (size_t i = 0; i < s->prof.nkeys; i++) {
        keys[i].key = s->prof.keys[s->prof.nkeys - 1 - i].key;
        keys[i].cert = s->prof.keys[s->prof.nkeys - 1 - i].cert;
    }
    for (size_t i = 0; i < s->part.ncerts; i++)
        certs[i] = s->part.certs[i].cert;
    const char *sign = partner_str(&s->part, "sign", "sha256");
    const char *enc = partner_str(&s->part, "encrypt", "aes256-cbc");
    pol->partner = s->part.name;
    pol->our_id = s->prof.as2_id;
    pol->partner_id = s->part.as2_id;
    pol->keys = keys;
    pol->nkeys = s->prof.nkeys;
    pol->certs = certs;
    pol->ncerts = s->part.ncerts;
    pol->require_signed = strcmp(sign, "none") != 0 &&
                          !partner_bool(&s->part, "accept_unsigned", 0);
    pol->require_encrypted = strcmp(enc, "none") != 0 &&
                             !partner_bool(&s->part, "accept_unencrypted", 0);
    pol->digests = as2_partner_digests(&s->part);
    pol->ciphers = cipher_bits(&s->part);
    return 0;
}

void as2_policy_clear(struct as2_policy *pol)
{
    free((void *)pol->keys);
    free((void *)pol->certs);
    memset(pol, 0, sizeof(*pol));
}

/* ---- MDNs received -------------------------------------------------------------- */

void as2_receipt_keep(struct connector *c, struct store *use,
                      const char *msgid,
                      const char *direction, const char *headers,
                      const void *body, size_t len, const char *mdn_id,
                      const char *original_id)
{
    struct error err = {0};
    struct store_receipt r = {
        .message_id = (char *)msgid, .direction = (char *)direction,
        .at = now_ms(), .as2_message_id = (char *)mdn_id,
        .original_message_id = (char *)original_id,
        .headers = (char *)(headers ? headers : ""),
        .body = (unsigned char *)body, .len = len,
    };
    struct store *st = use ? use : wharf_store(c->wharf, &err);
    if (st == NULL || store_receipt_add(st, &r, &err) < 0)
        conn_log(c, LOG_ERROR, msgid, "cannot keep the MDN %s: %s",
                 mdn_id ? mdn_id : "-", err.msg);
}

enum wh_status as2_mdn_confirm(struct connector *c, const char *msgid,
                               const char *headers, const char *body,
                               size_t len, const char *message_id,
                               const char *mic, char *receipt, size_t rsz,
                               struct error *err)
{
    struct as2_state *s = c->state;
    struct mime_headers h;
    mime_headers_init(&h);
    size_t off = 0;
    struct as2_mdn_received r;
    memset(&r, 0, sizeof(r));
    X509 **certs = calloc(s->part.ncerts + 1, sizeof(*certs));
    BIO *b = certs ? BIO_new_mem_buf(body ? body : "", (int)len) : NULL;
    enum wh_status st = WH_FAIL;
    for (size_t i = 0; certs && i < s->part.ncerts; i++)
        certs[i] = s->part.certs[i].cert;
    int want_signed = partner_bool(&s->part, "mdn_signed", 1);
    struct as2_mdn_read_opts o = {
        .partner = s->part.name, .certs = certs, .ncerts = s->part.ncerts,
        .digests = as2_partner_digests(&s->part),
        .require_signed = want_signed,
    };
    /* RFC 4130: only a signed receipt must carry the MIC */
    bool mic_optional = !want_signed &&
                        !partner_bool(&s->part, "require_mic", 0);
    if (b == NULL)
        error_set(err, "out of memory");
    else if (mime_headers_parse(&h, headers ? headers : "\r\n",
                                headers ? strlen(headers) : 2, &off, err) < 0)
        error_prefix(err, "the MDN's headers");
    else if (as2_mdn_read(&o, &h, b, &r, err) < 0)
        error_prefix(err, "the MDN from %s", s->part.name);
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
                 "%.200s: %.300s", s->part.name, message_id, err->msg);
        alert_raise("as2.mdn", c->name, ALERT_WARNING, summary, msgid);
    } else {
        alert_clear("as2.mdn", c->name);
        alert_clear("as2.mdn_missing", c->name);
    }
    if (body && len > 0)
        as2_receipt_keep(c, NULL, msgid, "received", headers, body, len,
                         r.message_id[0] ? r.message_id : NULL,
                         message_id);
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
    int fd;                     /* the packaged body (O_TMPFILE) */
    char **hdrs;                /* "Name: value" list, NULL-terminated */
};

static void send_done(struct send *sd)
{
    as2_packaged_free(&sd->res);
    if (sd->fd >= 0)
        close(sd->fd);
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
    const struct partner *p = &s->part;
    int64_t now = now_ms();
    struct as2_package_opts *o = &sd->po;
    enum as2_digest dg = as2_digest_from_name(partner_str(p, "sign", "sha256"));
    enum as2_cipher ci = as2_cipher_from_name(partner_str(p, "encrypt",
                                                          "aes256-cbc"));
    o->from = s->prof.as2_id;
    o->to = p->as2_id;
    o->host = "wharf";
    as2_message_id_of(m->id, sd->message_id, sizeof(sd->message_id));
    o->message_id = sd->message_id;
    o->subject = str(c->config, "subject");
    o->filename = m->filename;
    o->content_type = str(c->config, "content_type");
    if (dg != AS2_DIGEST_NONE) {
        const struct profile_key *k = profile_sign_key(&s->prof, now);
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

/* Package m into sd->fd (an unlinked file in the data directory). */
static int send_package(struct connector *c, const struct message *m,
                        struct send *sd, struct error *err)
{
    char dir[4200];
    if (wharf_path(c->wharf, "payloads", dir, sizeof(dir)) < 0)
        return error_set(err, "data directory path too long");
    if ((sd->fd = body_file(dir)) < 0)
        return error_errno(err, errno, "cannot create a temporary file in %s",
                           dir);
    struct payload_src src = { .r = message_payload_open(m, err),
                               .left = m->size };
    if (src.r == NULL)
        return -1;
    BIO *in = as2_bio_reader(payload_src_read, &src, err);
    BIO *out = BIO_new_fd(sd->fd, BIO_NOCLOSE);
    int rc = in && out ? as2_package(&sd->po, in, out, &sd->res, err) : -1;
    if (rc == 0 && BIO_flush(out) != 1)
        rc = error_set(err, "cannot write the packaged message");
    BIO_free(in);
    BIO_free(out);
    payload_close(src.r);
    if (rc == 0 && lseek(sd->fd, 0, SEEK_SET) != 0)
        rc = error_errno(err, errno, "cannot rewind the packaged message");
    return rc;
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

static ssize_t fd_read(void *ud, void *buf, size_t n, struct error *err)
{
    ssize_t got = read(*(int *)ud, buf, n);
    if (got < 0)
        return error_errno(err, errno, "cannot read the packaged message");
    return got;
}

/* A pending asynchronous MDN: "message-id mic-string" and a deadline. */
static int pending_put(struct connector *c, const struct message *m,
                       const struct send *sd, struct error *err)
{
    struct as2_state *s = c->state;
    char name[128], val[AS2_MSGID_MAX + AS2_MIC_MAX + 4];
    as2_state_pending(name, sizeof(name), m->id);
    int n = snprintf(val, sizeof(val), "%s\n%s", sd->res.message_id,
                     sd->res.mic);
    struct secret *v = secret_from(val, (size_t)n);
    int rc = v ? connector_state_put(c->wharf, c->name, name, v,
                                     now_ms() + s->mdn_timeout_ms, err)
               : error_set(err, "out of memory");
    secret_free(v);
    return rc;
}

/* When a hop waiting for an asynchronous MDN looks again: the MDN's
 * arrival wakes it at once (as2_recv.c), so this is the fallback for an
 * MDN that came in before the hop was committed as waiting: soon at
 * first, then less often (half the time waited so far, 1 s to 60 s), and
 * at the deadline at the latest. */
static int64_t pending_next_look(const struct as2_state *s, int64_t deadline)
{
    int64_t now = now_ms(), waited = now - (deadline - s->mdn_timeout_ms);
    int64_t step = waited / 2;
    if (step < 1000)
        step = 1000;
    if (step > 60000)
        step = 60000;
    return now + step < deadline ? now + step : deadline + 1;
}

static enum wh_status send_once(struct connector *c, struct delivery *d)
{
    struct as2_state *s = c->state;
    struct send sd;
    memset(&sd, 0, sizeof(sd));
    sd.fd = -1;
    enum wh_status st = WH_FAIL;
    if (send_opts(c, d->msg, &sd, &d->err) < 0 ||
        send_package(c, d->msg, &sd, &d->err) < 0 ||
        send_headers(&sd, &d->err) < 0) {
        send_done(&sd);
        return WH_FAIL;
    }
    struct net_client_req req = {
        .method = "POST", .url = s->part.url,
        .headers = (const char *const *)sd.hdrs,
        .body_len = (int64_t)sd.res.body_bytes, .read = fd_read,
        .read_ud = &sd.fd,
    };
    struct net_client_resp resp;
    conn_log(c, LOG_DEBUG, d->msg->id, "AS2 %s to %s (%llu bytes)",
             sd.res.message_id, s->part.url,
             (unsigned long long)sd.res.body_bytes);
    st = net_client_request(&s->opts, &req, &resp, &d->err);
    if (st == WH_OK && (resp.status < 200 || resp.status > 299)) {
        st = net_client_status_class(resp.status);
        error_set(&d->err, "HTTP %ld from %s", resp.status, s->part.url);
    } else if (st == WH_OK && sd.po.mdn == AS2_MDN_SYNC) {
        st = as2_mdn_confirm(c, d->msg->id, resp.headers, resp.body,
                             resp.len, sd.res.message_id, sd.res.mic, d->receipt,
                             sizeof(d->receipt), &d->err);
    } else if (st == WH_OK && sd.po.mdn == AS2_MDN_ASYNC) {
        /* not a failed attempt: the hop waits for the MDN */
        st = pending_put(c, d->msg, &sd, &d->err) == 0 ? WH_AGAIN : WH_RETRY;
        d->again_at = pending_next_look(s, now_ms() + s->mdn_timeout_ms);
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld: sent as %.120s; "
                 "waiting for the asynchronous MDN (sent again after %lld s "
                 "without one)", resp.status, sd.res.message_id,
                 (long long)(s->mdn_timeout_ms / 1000));
    } else if (st == WH_OK) {
        snprintf(d->receipt, sizeof(d->receipt), "HTTP %ld, %.200s (no MDN "
                 "requested)", resp.status, sd.res.message_id);
    }
    net_client_resp_free(&resp);
    send_done(&sd);
    return st;
}

/* An asynchronous MDN this message waits for: WH_OK/WH_FAIL once it came,
 * WH_AGAIN while waiting, WH_RETRY when none came within mdn_timeout_s
 * (an attempt that failed: the next one sends again); -1 (returned as
 * WH_DEFER below) when there is none pending (then send). */
#define WH_DEFER ((enum wh_status)-1)

static enum wh_status pending_check(struct connector *c, struct delivery *d)
{
    struct as2_state *s = c->state;
    char name[128], arrived[128];
    struct secret *v = NULL, *mdn = NULL;
    int64_t deadline = 0;
    as2_state_pending(name, sizeof(name), d->msg->id);
    int rc = connector_state_get(c->wharf, c->name, name, &v, &deadline,
                                 &d->err);
    if (rc <= 0)
        return rc < 0 ? WH_RETRY : WH_DEFER;
    char *val = strndup((const char *)secret_data(v), secret_len(v));
    secret_free(v);
    char *nl = val ? strchr(val, '\n') : NULL;
    if (nl == NULL) {
        free(val);
        connector_state_drop(c->wharf, c->name, name, NULL);
        return WH_DEFER;
    }
    *nl = '\0';
    as2_state_arrived(arrived, sizeof(arrived), val);
    rc = connector_state_get(c->wharf, c->name, arrived, &mdn, NULL, &d->err);
    enum wh_status st = WH_RETRY;
    if (rc == 1) {
        /* stored as the header block, a NUL, then the body */
        const char *raw = (const char *)secret_data(mdn);
        size_t hl = strnlen(raw, secret_len(mdn));
        st = hl < secret_len(mdn)
             ? as2_mdn_confirm(c, d->msg->id, raw, raw + hl + 1,
                               secret_len(mdn) - hl - 1, val, nl + 1, d->receipt, sizeof(d->receipt),
                               &d->err)
             : (error_set(&d->err, "stored MDN is malformed"), WH_FAIL);
        connector_state_drop(c->wharf, c->name, arrived, NULL);
        connector_state_drop(c->wharf, c->name, name, NULL);
    } else if (rc == 0 && now_ms() > deadline) {
        connector_state_drop(c->wharf, c->name, name, NULL);
        error_set(&d->err, "no asynchronous MDN for %s within %lld s: it "
                  "is sent again (same Message-ID)", val,
                  (long long)(s->mdn_timeout_ms / 1000));
        char summary[600];      /* R19: missing MDNs, until a good one */
        snprintf(summary, sizeof(summary), "no MDN from %s: %.400s",
                 s->part.name, d->err.msg);
        alert_raise("as2.mdn_missing", c->name, ALERT_WARNING, summary,
                    d->msg->id);
    } else if (rc == 0) {
        st = WH_AGAIN;          /* no event, no attempt: still waiting */
        d->again_at = pending_next_look(s, deadline);
    }
    secret_free(mdn);
    free(val);
    return st;
}

static enum wh_status as2_deliver(struct connector *c, struct delivery *d)
{
    struct as2_state *s = c->state;
    d->receipt[0] = '\0';
    /* only a partner set to async MDNs can have one pending (a message
     * left waiting when the setting changed is sent again: no loss) */
    enum wh_status st = strcmp(partner_str(&s->part, "mdn", "sync"), "async")
                        ? WH_DEFER : pending_check(c, d);
    if (st == WH_DEFER) {
        error_clear(&d->err);
        st = send_once(c, d);
    }
    return d->status = st;
}

/* Not a poller of new messages (partners POST them): retries the
 * asynchronous MDNs still queued. */
static enum wh_status as2_poll(struct connector *c, struct intake *in,
                               struct error *err)
{
    (void)in;
    (void)err;
    as2_mdn_retry(c);
    return WH_OK;
}

static enum wh_status as2_test(struct connector *c, struct error *err)
{
    struct as2_state *s = c->state;
    struct net_client_req req = { .method = "HEAD", .url = s->part.url,
                                  .body_len = -1 };
    struct net_client_resp resp;
    enum wh_status st = net_client_request(&s->opts, &req, &resp, err);
    net_client_resp_free(&resp);
    if (st == WH_OK && profile_sign_key(&s->prof, now_ms()) == NULL)
        return error_set(err, "no profile key is valid now"), WH_FAIL;
    if (st == WH_OK && partner_send_cert(&s->part, now_ms()) == NULL)
        return error_set(err, "partner %s has no certificate valid now",
                         s->part.name), WH_FAIL;
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

void as2_state_pending(char *out, size_t n, const char *msgid)
{
    snprintf(out, n, "as2.pending.%s", msgid);
}

void as2_state_arrived(char *out, size_t n, const char *as2_msgid)
{
    unsigned char md[32];
    EVP_Digest(as2_msgid, strlen(as2_msgid), md, NULL, EVP_sha256(), NULL);
    int k = snprintf(out, n, "as2.mdn.");
    for (size_t i = 0; i < 16 && (size_t)k + 2 < n; i++)
        k += snprintf(out + k, n - (size_t)k, "%02x", md[i]);
}

const struct connector_type connector_as2 = {
    .name = "as2",
    .summary = "AS2 (RFC 4130) with a partner of the flow document: signed, "
               "encrypted, receipts (M4)",
    .options = AS2_OPTIONS,
    .actions = AS2_ACTIONS,
    .needs_partner = 1,
    .ends_path = 1,
    .open = as2_open,
    .poll = as2_poll,
    .deliver = as2_deliver,
    .route = as2_route,
    .route_prefix = AS2_ROUTE,
    .route_max_body = AS2_MAX_BODY,
    .route_pick = as2_pick,
    .test = as2_test,
    .close = as2_close,
};
