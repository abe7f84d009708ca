/*
 * sftp.c - the SFTP connector (M5): a folder on a partner's SSH server as a
 * destination (upload), a source (poll and download), or both, through the
 * one transport (net/client.h: net_sftp_*, curl's sftp scheme on libssh2;
 * one session per delivery, one kept between polls).
 *
 * Config: SFTP_OPTIONS below (`wharf connector help sftp`): host, port,
 * user, password_file or key_file (+ key_passphrase_file), host_key_sha256,
 * send_dir, receive_dir, pattern, after, archive_dir, proxy. Without
 * host_key_sha256 the connector opens but every transfer and test fails
 * until the key is confirmed: the action hostkey.capture shows the key the
 * server presents (captured in the key exchange, then refused: no
 * authentication is attempted), hostkey.accept checks it again and stores
 * it (sftp_hostkey.c).
 *
 * Destination: the payload is decrypted straight into curl's read callback
 * and uploaded to send_dir/.NAME.ID.wharf-part (the message id in the temp
 * name makes resuming safe: a partial file is only ever continued by the
 * message that wrote it), then renamed to send_dir/NAME by a POSTQUOTE
 * "rename" in the same session, so the partner never sees a partial file.
 * SFTP's rename never replaces an existing file: a NAME already there is a
 * clear failure, unless it is this very message (same size and SHA-256),
 * delivered by an attempt whose success was not recorded. An interrupted
 * upload is retried by the engine (WH_RETRY); the retry resumes the partial
 * file when its size fits, else starts over.
 *
 * Source: a remote file is taken when its size and time are the same on two
 * polls in a row. Each is streamed into the intake from curl's write
 * callback; only after intake_commit() is it deleted or moved on the server.
 *
 * Secrets (password, proxy credentials) come sealed from the vault
 * (connector_secret), are handed to the transport only as option values
 * and never logged. The private key and its passphrase never come here:
 * the key process holds them and signs for the handshake through the
 * in-process agent (connector_ssh_key, net/ssh_agent.h).
 *
 * Must never: go beyond the key exchange without the host key pin (no
 * authentication, no transfer); write anything but the temp
 * file and its rename in send_dir; delete or move a remote file before the
 * intake committed it; use a proxy from the environment.
 */
#include "connectors/connector.h"
#include "connectors/sftp.h"

#include <errno.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "connectors/proxy.h"
#include "core/intake.h"
#include "net/client.h"
#include "util/secret.h"

#define MAX_TAKE_PER_POLL 1000
#define MAX_LISTING (64u << 20)     /* bytes of a directory listing */
#define MIN_LEFT 300                /* room for a file name after a folder */
#define PATH_MAX_LEN 2048
#define FP_LEN 43                   /* base64 of 32 bytes, unpadded */

struct rfile {
    char *name;
    long long size;
    char time[32];      /* as the server lists it: the stability check */
    int stable;
};

struct sftp_state {
    const char *host, *user, *pattern;
    struct connector_proxy proxy;
    char send_dir[PATH_MAX_LEN], receive_dir[PATH_MAX_LEN];
    char archive_dir[PATH_MAX_LEN];
    long port;
    int archive;
    char fp[FP_LEN + 1];        /* "" until the host key is confirmed */
    struct secret *password;    /* NUL-terminated; NULL without one */
    struct net_sftp_opts net;   /* what the transport needs (borrows) */
    pthread_mutex_t lock;       /* seen, poll session */
    struct rfile *seen;
    size_t nseen;
    struct net_sftp *poll_s;    /* kept between polls: the session is reused */
};

/* ---- config ----------------------------------------------------------------- */

/* "SHA256:base64" as OpenSSH prints it -> the unpadded base64 curl wants. */
static int parse_fingerprint(const char *in, char out[FP_LEN + 1])
{
    if (in == NULL || strncmp(in, "SHA256:", 7) != 0)
        return -1;
    in += 7;
    size_t n = strlen(in);
    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n != FP_LEN)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
            return -1;
    }
    memcpy(out, in, n);
    out[n] = '\0';
    return 0;
}

static int remote_dir_ok(const char *key, const char *v, struct error *err)
{
    if (v == NULL)
        return 0;
    if (v[0] != '/')
        return error_set(err, "%s must be an absolute path on the server, "
                         "not '%s'", key, v);
    if (strlen(v) >= PATH_MAX_LEN - MIN_LEFT)
        return error_set(err, "%s is too long", key);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return error_set(err, "%s contains a control character", key);
    return 0;
}

static int host_valid(const char *key, const json_t *v, struct error *err)
{
    const char *host = json_string_value(v);
    if (host[0] == '\0' || strpbrk(host, "/@ \t\r\n"))
        return error_set(err, "needs %s (a host name or address)", key);
    return 0;
}

static int user_valid(const char *key, const json_t *v, struct error *err)
{
    const char *user = json_string_value(v);
    if (user[0] == '\0' || strpbrk(user, ":@/\r\n"))
        return error_set(err, "needs %s (the account on the server)", key);
    return 0;
}

static int fingerprint_valid(const char *key, const json_t *v,
                             struct error *err)
{
    char fpb[FP_LEN + 1];
    if (parse_fingerprint(json_string_value(v), fpb) < 0)
        return error_set(err, "%s must look like SHA256:<43 base64 "
                         "characters>, as ssh-keygen -lf prints it", key);
    return 0;
}

static int dir_valid(const char *key, const json_t *v, struct error *err)
{
    return remote_dir_ok(key, json_string_value(v), err);
}

static int pattern_valid(const char *key, const json_t *v, struct error *err)
{
    const char *pat = json_string_value(v);
    if (pat[0] == '\0' || strchr(pat, '/'))
        return error_set(err, "%s must be a file-name glob without '/'", key);
    return 0;
}

static const struct conn_option SFTP_OPTIONS[] = {
    { "host", CONN_STRING, CONN_REQUIRED, NULL, 0, 255, NULL, NULL,
      "a host name or address", host_valid },
    { "port", CONN_INT, 0, "22", 1, 65535, NULL, NULL,
      "the server's SSH port", NULL },
    { "user", CONN_STRING, CONN_REQUIRED, NULL, 0, 255, NULL, NULL,
      "the account on the server", user_valid },
    { "password_file", CONN_SECRET, 0, NULL, 0, 0, NULL, NULL,
      "the account's password (this or key_file)", NULL },
    { "key_file", CONN_SECRET, CONN_PRIVATE_KEY, NULL, 0, 0, NULL, NULL,
      "a private key for the account (this or password_file): Ed25519, "
      "RSA or ECDSA, as ssh-keygen writes it (an OpenSSH key without a "
      "passphrase, or PEM/PKCS#8); it is used only inside the key process",
      NULL },
    { "key_passphrase_file", CONN_SECRET, CONN_PRIVATE_KEY, NULL, 0, 0, NULL,
      NULL, "the passphrase of key_file, if it has one (a PEM or PKCS#8 "
      "key; an OpenSSH-format key must have none, the vault seals it)",
      NULL },
    { "host_key_sha256", CONN_STRING, 0, NULL, 0, 0, NULL, NULL,
      "the server's confirmed host key, \"SHA256:...\" as ssh-keygen -lf "
      "prints it; without it nothing goes beyond the key exchange (actions "
      "hostkey.capture, hostkey.accept)", fingerprint_valid },
    { "send_dir", CONN_STRING, 0, NULL, 0, 0, NULL, NULL,
      "destination: upload here (an absolute path on the server)",
      dir_valid },
    { "receive_dir", CONN_STRING, 0, NULL, 0, 0, NULL, NULL,
      "source: poll this folder on the server (an absolute path)",
      dir_valid },
    { "pattern", CONN_STRING, 0, "*", 0, 0, NULL, NULL,
      "source: take only names matching this glob (fnmatch)",
      pattern_valid },
    { "after", CONN_ENUM, 0, "delete", 0, 0, "delete|archive", NULL,
      "source: what to do with a remote file once its message is stored",
      NULL },
    { "archive_dir", CONN_STRING, 0, NULL, 0, 0, NULL, NULL,
      "source, after \"archive\": move taken files here (on the server)",
      dir_valid },
    CONN_PROXY_OPTIONS,
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

/* What SFTP_OPTIONS cannot say. */
static int sftp_check(const json_t *cfg, struct error *err)
{
#define J(k) json_object_get(cfg, k)
    if (J("password_file") == NULL && J("key_file") == NULL)
        return error_set(err, "needs password_file or key_file");
    if (J("key_passphrase_file") && J("key_file") == NULL)
        return error_set(err, "key_passphrase_file needs key_file");
    if (J("send_dir") == NULL && J("receive_dir") == NULL)
        return error_set(err, "needs receive_dir (source), send_dir "
                         "(destination) or both");
    const char *after = json_string_value(J("after"));
    if (after && !strcmp(after, "archive") && J("archive_dir") == NULL)
        return error_set(err, "after \"archive\" needs archive_dir");
#undef J
    return 0;
}

/* path without trailing slashes ("/" stays "/") into out */
static void dir_copy(char *out, size_t n, const char *path)
{
    snprintf(out, n, "%s", path ? path : "");
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
}

/* A copy of the connector's secret `key` plus a NUL, for curl's string
 * options; NULL (err set) when out of memory. */
static struct secret *secret_cstr(const struct connector *c, const char *key,
                                  struct error *err)
{
    const struct secret *raw = connector_secret(c, key);
    struct secret *s = raw ? secret_new(secret_len(raw) + 1) : NULL;
    if (s != NULL)
        memcpy(secret_data_mut(s), secret_data(raw), secret_len(raw));
    else
        error_set(err, "secret %s is missing or out of memory", key);
    return s;
}

static void sftp_close(struct connector *c)
{
    struct sftp_state *s = c->state;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nseen; i++)
        free(s->seen[i].name);
    free(s->seen);
    net_sftp_close(s->poll_s);
    secret_free(s->password);
    connector_proxy_close(&s->proxy);
    pthread_mutex_destroy(&s->lock);
    free(s);
    c->state = NULL;
}

static enum wh_status sftp_open(struct connector *c, struct error *err)
{
    struct sftp_state *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        error_set(err, "out of memory");
        return WH_FAIL;
    }
    pthread_mutex_init(&s->lock, NULL);
    c->state = s;
    s->host = conn_str(c, "host");
    s->user = conn_str(c, "user");
    s->pattern = conn_str(c, "pattern");
    s->port = (long)conn_int(c, "port");
    if (conn_str(c, "send_dir"))
        dir_copy(s->send_dir, sizeof(s->send_dir), conn_str(c, "send_dir"));
    if (conn_str(c, "receive_dir"))
        dir_copy(s->receive_dir, sizeof(s->receive_dir),
                 conn_str(c, "receive_dir"));
    if (conn_str(c, "archive_dir"))
        dir_copy(s->archive_dir, sizeof(s->archive_dir),
                 conn_str(c, "archive_dir"));
    s->archive = !strcmp(conn_str(c, "after"), "archive");
    if (conn_str(c, "host_key_sha256"))
        parse_fingerprint(conn_str(c, "host_key_sha256"), s->fp);
    if (connector_proxy_open(c, &s->proxy, err) < 0)
        goto fail;
    if (connector_secret(c, "password_file") &&
        (s->password = secret_cstr(c, "password_file", err)) == NULL)
        goto fail;
    s->net = (struct net_sftp_opts){ .host = s->host, .port = s->port,
        .user = s->user, .host_key_sha256 = s->fp[0] ? s->fp : NULL,
        .key = connector_ssh_key(c, "key_file"),
        .password = s->password, .proxy = s->proxy.use };
    return WH_OK;
fail:
    sftp_close(c);
    return WH_FAIL;
}

/* ---- listing -------------------------------------------------------------------- */

static void rfiles_free(struct rfile *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

int sftp_parse_entry(char *line, long long *size, char *tm, size_t tmn,
                     char **name)
{
    char *f[8];
    char *p = line;
    if (line[0] != '-')
        return -1;
    for (int i = 0; i < 8; i++) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return -1;
        f[i] = p;
        while (*p && *p != ' ')
            p++;
        if (*p == '\0')
            return -1;
        *p++ = '\0';
    }
    char *end;
    errno = 0;
    *size = strtoll(f[4], &end, 10);
    if (errno || *end || *size < 0)
        return -1;
    snprintf(tm, tmn, "%s %s %s", f[5], f[6], f[7]);
    *name = p;
    /* The partner's server names the file: never a path, never "." or
     * "..", never a control character (it goes into rename/rm commands). */
    if (*p == '\0' || strchr(p, '/') || !strcmp(p, ".") || !strcmp(p, ".."))
        return -1;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return -1;
    return 0;
}

/* The regular files in dir (server path), listed in session ss. */
static enum wh_status list_dir(struct net_sftp *ss, const char *dir,
                               struct rfile **out, size_t *nout,
                               struct error *err)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    *nout = 0;
    enum wh_status st = net_sftp_list(ss, dir, MAX_LISTING, &text, &len,
                                      err);
    if (st != WH_OK)
        return st;
    size_t cap = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[ll - 1] = '\0';
        struct rfile r = {0};
        char *name;
        if (sftp_parse_entry(line, &r.size, r.time, sizeof(r.time),
                             &name) == 0) {
            if (*nout == cap) {
                cap = cap ? cap * 2 : 32;
                void *np = realloc(*out, cap * sizeof(**out));
                if (np == NULL) {
                    st = WH_RETRY;
                    break;
                }
                *out = np;
            }
            if ((r.name = strdup(name)) == NULL) {
                st = WH_RETRY;
                break;
            }
            (*out)[(*nout)++] = r;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    if (st != WH_OK) {
        rfiles_free(*out, *nout);
        *out = NULL;
        *nout = 0;
        error_set(err, "out of memory");
    }
    return st;
}

static const struct rfile *rfile_find(const struct rfile *v, size_t n,
                                      const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].name, name))
            return &v[i];
    return NULL;
}

/* ---- the host key ----------------------------------------------------------------- */

/* Without a confirmed host key nothing goes beyond the key exchange: 1
 * (err set) when the key is not confirmed yet. */
static int unconfirmed(const struct connector *c, const struct sftp_state *s,
                       struct error *err)
{
    if (s->fp[0])
        return 0;
    error_set(err, "host key of %s:%ld not confirmed: run `wharf connector "
              "%s hostkey.capture`", s->host, s->port, c->name);
    return 1;
}

int sftp_fingerprint_norm(const char *in, char *out, size_t n)
{
    char b64[FP_LEN + 1];
    if (parse_fingerprint(in, b64) < 0)
        return -1;
    snprintf(out, n, "SHA256:%s", b64);
    return 0;
}

enum wh_status sftp_hostkey_capture(struct connector *c, struct sftp_key *out,
                                    char *server, size_t n, struct error *err)
{
    struct sftp_state *s = c->state;
    char fp[44];
    snprintf(server, n, "%s:%ld", s->host, s->port);
    enum wh_status st = net_sftp_hostkey(&s->net, out->type, fp, err);
    if (st == WH_OK)
        snprintf(out->fingerprint, sizeof(out->fingerprint), "SHA256:%s",
                 fp);
    return st;
}

/* ---- destination ----------------------------------------------------------------- */

/* A safe file name for the message: its own name without any folder part
 * or control characters, else the message id. */
static void target_name(const struct message *m, char *out, size_t n)
{
    const char *f = m->filename ? m->filename : "";
    const char *slash = strrchr(f, '/');
    if (slash)
        f = slash + 1;
    int ok = f[0] != '\0' && f[0] != '.' && strlen(f) < 200;
    for (const char *p = f; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 && *p != 0x7f && *p != '\\';
    snprintf(out, n, "%s", ok ? f : m->id);
}

struct upload {
    struct payload_reader *r;
    const struct message *m;
    unsigned char *skip;    /* scratch for seeking */
};

static ssize_t up_read(void *ud, void *buf, size_t n, struct error *err)
{
    struct upload *u = ud;
    return message_payload_read(u->r, buf, n, err);
}

/* Resume: position the (fresh) reader offset decrypted bytes in. */
static int up_seek(void *ud, int64_t offset, struct error *err)
{
    struct upload *u = ud;
    while (offset > 0) {
        size_t want = offset > MESSAGE_PAYLOAD_CHUNK ? MESSAGE_PAYLOAD_CHUNK
                                                     : (size_t)offset;
        ssize_t got = message_payload_read(u->r, u->skip, want, err);
        if (got <= 0)
            return got < 0 ? -1 : error_set(err, "the payload ended before "
                                            "the resume point");
        offset -= got;
    }
    return 0;
}

static int hash_write(void *ud, const void *data, size_t n,
                      struct error *err)
{
    (void)err;
    EVP_DigestUpdate(ud, data, n);
    return 0;
}

/* 1 when the remote file at path has the message's SHA-256. */
static int remote_same(struct net_sftp *ss, const char *path,
                       const struct message *m)
{
    struct error err = {0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int len = 0;
    char hex[65];
    if (ctx == NULL || m->sha256 == NULL ||
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return 0;
    }
    enum wh_status st = net_sftp_get(ss, path, hash_write, ctx, &err);
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (st != WH_OK)
        return 0;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return strcmp(hex, m->sha256) == 0;
}

/* The upload's rename was refused: NAME appeared meanwhile (a clear
 * failure) or something else went wrong (tried again). */
static enum wh_status rename_refused(struct sftp_state *s,
                                     struct net_sftp *ss, const char *name,
                                     const char *final, struct delivery *d)
{
    struct rfile *now = NULL;
    size_t nnow = 0;
    struct error e2 = {0};
    int taken = list_dir(ss, s->send_dir, &now, &nnow, &e2) == WH_OK &&
                rfile_find(now, nnow, name) != NULL;
    rfiles_free(now, nnow);
    if (!taken)
        return WH_RETRY;        /* d->err: the transport's */
    error_set(&d->err, "%s appeared on %s:%ld during the upload (not "
              "replaced)", final, s->host, s->port);
    return WH_FAIL;
}

static enum wh_status deliver_on(struct connector *c, struct sftp_state *s,
                                 struct net_sftp *ss, struct delivery *d)
{
    const struct message *m = d->msg;
    char name[256], part[320], final[PATH_MAX_LEN + 300];
    char tmp[PATH_MAX_LEN + 400];
    struct rfile *files = NULL;
    size_t nfiles = 0;
    target_name(m, name, sizeof(name));
    snprintf(part, sizeof(part), ".%s.%s.wharf-part", name, m->id);
    snprintf(final, sizeof(final), "%s/%s", s->send_dir, name);
    snprintf(tmp, sizeof(tmp), "%s/%s", s->send_dir, part);

    enum wh_status st = list_dir(ss, s->send_dir, &files, &nfiles, &d->err);
    if (st != WH_OK)
        return st;
    const struct rfile *there = rfile_find(files, nfiles, name);
    const struct rfile *partial = rfile_find(files, nfiles, part);
    long long have = partial ? partial->size : 0;
    int exists = there != NULL, same_size = there && there->size == m->size;
    rfiles_free(files, nfiles);
    if (exists) {
        if (same_size && remote_same(ss, final, m)) {
            snprintf(d->receipt, sizeof(d->receipt), "already present as "
                     "%.200s on %.40s", final, s->host);
            return WH_OK;
        }
        error_set(&d->err, "%s already exists on %s:%ld (not replaced)",
                  final, s->host, s->port);
        return WH_FAIL;
    }
    if (have > m->size)
        have = 0;       /* not ours to continue: start over */

    struct upload u = { .m = m };
    u.r = message_payload_open(m, &d->err);
    u.skip = u.r ? malloc(MESSAGE_PAYLOAD_CHUNK) : NULL;
    if (u.r == NULL || u.skip == NULL) {
        if (u.r != NULL)
            error_set(&d->err, "out of memory");
        message_payload_close(u.r);
        return u.r == NULL ? WH_FAIL : WH_RETRY;
    }
    if (have > 0)
        conn_log(c, LOG_INFO, m->id, "resuming the upload of %s at byte %lld "
                 "of %lld", tmp, have, (long long)m->size);
    struct net_sftp_upload up = { .path = tmp, .size = m->size,
        .resume_from = have, .read = up_read, .seek = up_seek, .ud = &u,
        .rename_to = final };
    st = net_sftp_put(ss, &up, &d->err);
    if (st == WH_OK) {
        snprintf(d->receipt, sizeof(d->receipt), "uploaded to %.200s on %.40s",
                 final, s->host);
        conn_log(c, LOG_DEBUG, m->id, "uploaded %s to %s:%ld", final,
                 s->host, s->port);
    } else if (net_sftp_failed(ss) == NET_SFTP_READ) {
        st = WH_FAIL;   /* the stored payload is bad: err says why */
    } else if (net_sftp_failed(ss) == NET_SFTP_QUOTE) {
        st = rename_refused(s, ss, name, final, d);
    }
    message_payload_close(u.r);
    free(u.skip);
    return st;
}

static enum wh_status sftp_deliver(struct connector *c, struct delivery *d)
{
    struct sftp_state *s = c->state;
    if (s->send_dir[0] == '\0') {
        error_set(&d->err, "connector has no send_dir");
        return d->status = WH_FAIL;
    }
    if (unconfirmed(c, s, &d->err))
        return d->status = WH_RETRY;    /* goes once the key is confirmed */
    struct net_sftp *ss = net_sftp_open(&s->net, &d->err);
    if (ss == NULL)
        return d->status = WH_RETRY;
    d->status = deliver_on(c, s, ss, d);
    net_sftp_close(ss);
    return d->status;
}

/* ---- source ------------------------------------------------------------------------ */

struct down {
    struct intake *in;
    long long got;
};

static int down_write(void *ud, const void *data, size_t n, struct error *err)
{
    struct down *dn = ud;
    if (intake_write(dn->in, data, n, err) < 0)
        return -1;
    dn->got += (long long)n;
    return 0;
}

/* Download one stable file into the intake. 1 added, 0 skipped (changed
 * or vanished), -1 error (err set, *st says how bad). */
static int take_one(struct connector *c, struct sftp_state *s,
                    struct net_sftp *ss, struct intake *in, struct rfile *f,
                    enum wh_status *st, struct error *err)
{
    char path[PATH_MAX_LEN + 300], key[600];
    snprintf(path, sizeof(path), "%s/%s", s->receive_dir, f->name);
    snprintf(key, sizeof(key), "%s|%lld|%s", f->name, f->size, f->time);
    if (intake_begin(in, f->name, key, err) < 0) {
        *st = WH_RETRY;
        return -1;
    }
    struct down dn = { .in = in };
    enum wh_status got = net_sftp_get(ss, path, down_write, &dn, err);
    if (got == WH_OK && dn.got == f->size)
        return intake_end(in, err) < 0 ? (*st = WH_RETRY, -1) : 1;
    intake_cancel(in);
    f->stable = 0;
    if (got == WH_OK || net_sftp_failed(ss) == NET_SFTP_NOT_FOUND) {
        error_clear(err);
        conn_log(c, LOG_DEBUG, NULL, "%s changed or vanished; not taken yet",
                 path);
        return 0;
    }
    *st = net_sftp_failed(ss) == NET_SFTP_WRITE ? WH_RETRY : got;
    return -1;
}

/* Delete or archive a committed remote file. */
static void acknowledge(struct connector *c, struct sftp_state *s,
                        struct net_sftp *ss, const char *name, const char *id)
{
    char path[PATH_MAX_LEN + 300], dest[PATH_MAX_LEN + 400];
    struct error err = {0};
    snprintf(path, sizeof(path), "%s/%s", s->receive_dir, name);
    for (int k = 0; k < (s->archive ? 2 : 1); k++) {
        enum wh_status st;
        error_clear(&err);
        if (s->archive) {
            if (k == 0)
                snprintf(dest, sizeof(dest), "%s/%s", s->archive_dir, name);
            else
                snprintf(dest, sizeof(dest), "%s/%s.%s", s->archive_dir, name,
                         id);
            st = net_sftp_rename(ss, path, dest, &err);
        } else {
            st = net_sftp_remove(ss, path, &err);
        }
        if (st == WH_OK)
            return;
        int refused = net_sftp_failed(ss) == NET_SFTP_QUOTE;
        /* an archived name already there: the second try adds the id */
        if (k == 1 || !s->archive || !refused)
            conn_log(c, LOG_ERROR, id, "stored, but cannot %s it: %s",
                     s->archive ? "archive" : "delete", err.msg);
        if (!refused)
            return;
    }
}

static enum wh_status commit_and_ack(struct connector *c, struct sftp_state *s,
                                     struct net_sftp *ss, struct intake *in,
                                     struct error *err)
{
    if (intake_count(in) == 0)
        return WH_OK;
    if (intake_commit(in, err) < 0) {
        intake_reset(in);
        return WH_RETRY;
    }
    for (size_t i = 0; i < intake_count(in); i++) {
        const char *dup = intake_duplicate(in, i);
        const char *id = dup ? dup : intake_id(in, i);
        conn_log(c, dup ? LOG_INFO : LOG_DEBUG, id, dup
                 ? "%s is a duplicate of stored message %s; not stored again"
                 : "picked up %s", intake_filename(in, i), id);
        acknowledge(c, s, ss, intake_filename(in, i), id);
    }
    intake_reset(in);
    return WH_OK;
}

static enum wh_status poll_locked(struct connector *c, struct sftp_state *s,
                                  struct intake *in, struct error *err)
{
    struct rfile *now = NULL;
    size_t n = 0, keep = 0, taken = 0;
    if (s->poll_s == NULL &&
        (s->poll_s = net_sftp_open(&s->net, err)) == NULL)
        return WH_RETRY;
    struct net_sftp *ss = s->poll_s;
    enum wh_status st = list_dir(ss, s->receive_dir, &now, &n, err);
    if (st != WH_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        if (now[i].name[0] == '.' || fnmatch(s->pattern, now[i].name, 0)) {
            free(now[i].name);
            continue;
        }
        const struct rfile *before = rfile_find(s->seen, s->nseen, now[i].name);
        now[i].stable = before && before->size == now[i].size &&
                        !strcmp(before->time, now[i].time);
        now[keep++] = now[i];
    }
    rfiles_free(s->seen, s->nseen);
    s->seen = now;
    s->nseen = keep;
    int batch = c->env ? c->env->settings->batch : 256, inbatch = 0;
    for (size_t i = 0; i < s->nseen && taken < MAX_TAKE_PER_POLL; i++) {
        if (!s->seen[i].stable)
            continue;
        int rc = take_one(c, s, ss, in, &s->seen[i], &st, err);
        if (rc < 0 && st == WH_FAIL) {
            /* this file only (e.g. not readable): the others still come */
            conn_log(c, LOG_ERROR, NULL, "%s", err->msg);
            st = WH_OK;
            continue;
        }
        if (rc < 0)
            break;
        taken += (size_t)rc;
        inbatch += rc;
        if (inbatch >= batch) {
            if (commit_and_ack(c, s, ss, in, err) != WH_OK)
                return WH_RETRY;
            inbatch = 0;
        }
    }
    /* What was read completely is kept even when a later file failed. */
    struct error cerr = {0};
    if (commit_and_ack(c, s, ss, in, &cerr) != WH_OK) {
        *err = cerr;
        return WH_RETRY;
    }
    if (st != WH_OK)
        return st;
    return taken ? WH_OK : WH_DECLINED;
}

static enum wh_status sftp_poll(struct connector *c, struct intake *in,
                                struct error *err)
{
    struct sftp_state *s = c->state;
    if (s->receive_dir[0] == '\0')
        return WH_DECLINED;
    if (unconfirmed(c, s, err))
        return WH_RETRY;
    pthread_mutex_lock(&s->lock);
    enum wh_status st = poll_locked(c, s, in, err);
    if (st != WH_OK && st != WH_DECLINED && s->poll_s) {
        net_sftp_close(s->poll_s);      /* a fresh session next time */
        s->poll_s = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* ---- test connection ------------------------------------------------------------------ */

static enum wh_status sftp_test(struct connector *c, struct error *err)
{
    struct sftp_state *s = c->state;
    const char *dirs[3] = { s->send_dir, s->receive_dir,
                            s->archive ? s->archive_dir : "" };
    const char *keys[3] = { "send_dir", "receive_dir", "archive_dir" };
    if (unconfirmed(c, s, err))
        return WH_FAIL;
    struct net_sftp *ss = net_sftp_open(&s->net, err);
    enum wh_status st = WH_OK;
    if (ss == NULL)
        return WH_RETRY;
    for (int i = 0; i < 3 && st == WH_OK; i++) {
        struct rfile *v = NULL;
        size_t n = 0;
        if (dirs[i][0] == '\0')
            continue;
        st = list_dir(ss, dirs[i], &v, &n, err);
        rfiles_free(v, n);
        if (st != WH_OK)
            error_prefix(err, "%s", keys[i]);
        else
            conn_log(c, LOG_INFO, NULL, "test: %s %s on %s:%ld is listable "
                     "(%zu file(s))", keys[i], dirs[i], s->host, s->port, n);
    }
    net_sftp_close(ss);
    return st;
}

static int sftp_is_source(const json_t *cfg)
{
    return json_object_get(cfg, "receive_dir") != NULL;
}

static const char *const ACCEPT_PARAMS[] = { "fingerprint", NULL };

static const struct conn_action SFTP_ACTIONS[] = {
    CONN_ACTION_TEST,
    { "hostkey.capture", "connector.test", 1, NULL, NULL,
      "the host key the server presents (captured in the key exchange, no "
      "authentication) and the confirmed one", sftp_hostkey_show },
    { "hostkey.accept", "flow.write", 0, "connector.hostkey.accept",
      ACCEPT_PARAMS, "store the fingerprint confirmed with the partner as "
      "host_key_sha256, if the server presents exactly that key",
      sftp_hostkey_accept },
    { NULL, NULL, 0, NULL, NULL, NULL, NULL },
};

const struct connector_type connector_sftp = {
    .name = "sftp",
    .summary = "a folder on a partner's SSH server: upload, poll and "
               "download (M5)",
    .options = SFTP_OPTIONS,
    .actions = SFTP_ACTIONS,
    .is_source = sftp_is_source,
    .check = sftp_check,
    .open = sftp_open,
    .poll = sftp_poll,
    .deliver = sftp_deliver,
    .test = sftp_test,
    .close = sftp_close,
};
