/*
 * client_sftp.c - the one transport's SFTP (net/client.h, "SFTP"): curl's
 * sftp scheme (libssh2) for the SFTP connector.
 *
 * Owns every curl option of an SFTP operation: the URL (the server path
 * percent-encoded), the pinned host key (its SHA-256) or, without one, a
 * key callback that refuses every key; public-key authentication through
 * the in-process agent (net/ssh_agent.h: armed for the handshake) and
 * password authentication; the proxy (net_client_proxy_setopt: the one rule) and
 * the progress of transfers; timeouts; the quote commands (rename, rm)
 * with their arguments quoted; and the translation of curl's failures
 * into one sentence naming the stage plus WH_RETRY / WH_FAIL.
 *
 * Must never: go beyond the key exchange without the pinned key (no
 * authentication, no transfer); take a proxy from the environment; enable
 * CURLOPT_VERBOSE; put a credential into an error or log line; read more
 * of a listing than its cap.
 */
#include "net/client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/client_internal.h"
#include "net/url.h"
#include "util/secret.h"

#define SFTP_PATH_MAX 2048
#define SFTP_CONNECT_S 30L
#define SFTP_LOW_SPEED_S 60L        /* under 1 byte/s this long: timeout */
#define SFTP_FP_LEN 43              /* base64 of 32 bytes, unpadded */

struct net_sftp {
    const struct net_sftp_opts *o;
    CURL *h;
    enum net_sftp_fail failed;
    int armed;                      /* holds the agent (net/ssh_agent.h) */
    char ebuf[CURL_ERROR_SIZE];
    char url[3 * SFTP_PATH_MAX + 300];
};

struct net_sftp *net_sftp_open(const struct net_sftp_opts *o,
                               struct error *err)
{
    if (!net_curl_ready())
        return error_set(err, "libcurl could not be initialized"), NULL;
    struct net_sftp *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->h = curl_easy_init()) == NULL) {
        free(s);
        return error_set(err, "out of memory"), NULL;
    }
    s->o = o;
    return s;
}

void net_sftp_close(struct net_sftp *s)
{
    if (s == NULL)
        return;
    curl_easy_cleanup(s->h);
    free(s);
}

enum net_sftp_fail net_sftp_failed(const struct net_sftp *s)
{
    return s->failed;
}

/* ---- paths ------------------------------------------------------------------------ */

/* The sftp:// URL of server path into out. -1 if it will not fit. */
static int sftp_url(const struct net_sftp_opts *o, const char *path,
                    char *out, size_t n)
{
    unsigned char enc[3 * SFTP_PATH_MAX + 1];
    size_t len = strlen(path), j = 0;
    if (len > SFTP_PATH_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {     /* '/' stays a separator */
        if (path[i] == '/')
            enc[j++] = '/';
        else
            j += net_url_encode((const unsigned char *)path + i, 1, enc + j);
    }
    enc[j] = '\0';
    int v6 = strchr(o->host, ':') != NULL;
    int w = snprintf(out, n, "sftp://%s%s%s:%ld%s", v6 ? "[" : "", o->host,
                     v6 ? "]" : "", o->port, (const char *)enc);
    return w > 0 && (size_t)w < n ? 0 : -1;
}

/* A path as a quoted argument of a quote command ("a \"b\""). */
static int quote_path(char *out, size_t n, const char *path)
{
    size_t o = 0;
    if (n < 3)
        return -1;
    out[o++] = '"';
    for (const char *p = path; *p; p++) {
        if (o + 4 > n)
            return -1;
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
    return 0;
}

/* "CMD "a" ["b"]" as a one-element list, or NULL. */
static struct curl_slist *quote_cmd(const char *cmd, const char *a,
                                    const char *b)
{
    char qa[2 * SFTP_PATH_MAX + 4], qb[2 * SFTP_PATH_MAX + 4];
    char line[4 * SFTP_PATH_MAX + 32];
    if (quote_path(qa, sizeof(qa), a) < 0 ||
        (b && quote_path(qb, sizeof(qb), b) < 0))
        return NULL;
    snprintf(line, sizeof(line), "%s %s%s%s", cmd, qa, b ? " " : "",
             b ? qb : "");
    return curl_slist_append(NULL, line);
}

/* ---- the options of every operation ------------------------------------------------- */

/* A host key callback that refuses every key (libcurl goes no further
 * than the key exchange). */
static int refuse_key(void *ud, int type, const char *key, size_t len)
{
    (void)ud;
    (void)type;
    (void)key;
    (void)len;
    return CURLKHMATCH_MISMATCH;
}

/* CURLOPT_PREREQFUNCTION: the SSH handshake (or the reuse of its
 * connection) is over: the agent goes to the next connector. */
static int agent_done(void *ud, char *ip, char *local, int port, int lport)
{
    struct net_sftp *s = ud;
    (void)ip;
    (void)local;
    (void)port;
    (void)lport;
    if (s->armed) {
        net_ssh_agent_disarm();
        s->armed = 0;
    }
    return CURL_PREREQFUNC_OK;
}

/* curl_easy_perform, with the connector's key offered by the agent for
 * the handshake when it authenticates with a key. */
static CURLcode sftp_perform(struct net_sftp *s)
{
    struct error err = {0};
    if (s->o->key) {
        if (net_ssh_agent_arm(s->o->key, &err) != 0) {
            snprintf(s->ebuf, sizeof(s->ebuf), "%s", err.msg);
            return CURLE_LOGIN_DENIED;
        }
        s->armed = 1;
    }
    CURLcode rc = curl_easy_perform(s->h);
    if (s->armed) {                 /* failed before the request */
        net_ssh_agent_disarm();
        s->armed = 0;
    }
    return rc;
}

/* Reset the handle and set what every operation on path shares. */
static int setup(struct net_sftp *s, const char *path, struct error *err)
{
    const struct net_sftp_opts *o = s->o;
    CURL *h = s->h;
    curl_easy_reset(h);
    s->ebuf[0] = '\0';
    s->failed = NET_SFTP_OK;
    if (sftp_url(o, path, s->url, sizeof(s->url)) < 0)
        return error_set(err, "path %s is too long", path);
    CURLcode rc = CURLE_OK;
#define OPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    OPT(CURLOPT_URL, s->url);
    OPT(CURLOPT_PROTOCOLS_STR, "sftp");
    OPT(CURLOPT_ERRORBUFFER, s->ebuf);
    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_VERBOSE, 0L);
    OPT(CURLOPT_USERNAME, o->user);
    if (o->host_key_sha256)
        OPT(CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, o->host_key_sha256);
    else
        OPT(CURLOPT_SSH_HOSTKEYFUNCTION, refuse_key);
    long auth = 0;
    if (o->key) {
        auth |= CURLSSH_AUTH_AGENT;     /* ours: net/ssh_agent.h */
        OPT(CURLOPT_PREREQFUNCTION, agent_done);
        OPT(CURLOPT_PREREQDATA, s);
    }
    if (o->password) {
        auth |= CURLSSH_AUTH_PASSWORD | CURLSSH_AUTH_KEYBOARD;
        OPT(CURLOPT_PASSWORD, (const char *)secret_data(o->password));
    }
    OPT(CURLOPT_SSH_AUTH_TYPES, auth);
    OPT(CURLOPT_CONNECTTIMEOUT, SFTP_CONNECT_S);
    OPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
    OPT(CURLOPT_LOW_SPEED_TIME, SFTP_LOW_SPEED_S);
#undef OPT
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_proxy_setopt(h, &o->proxy);
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_progress_setopt(h);
    if (rc != CURLE_OK)
        return error_set(err, "cannot set up the SFTP request: %s",
                         curl_easy_strerror(rc));
    return 0;
}

/* What a failed curl call means; fills err and s->failed. what: the
 * operation ("cannot list"), path: the server path it was about. */
static enum wh_status classify(struct net_sftp *s, CURLcode rc,
                               const char *what, const char *path,
                               struct error *err)
{
    const struct net_sftp_opts *o = s->o;
    const char *detail = s->ebuf[0] ? s->ebuf : curl_easy_strerror(rc);
    char target[300];
    enum wh_status st;
    s->failed = NET_SFTP_OTHER;
    snprintf(target, sizeof(target), "%s:%ld", o->host, o->port);
    if (net_client_proxy_failed(s->h, rc, &o->proxy, target, s->ebuf, &st,
                                err)) {
        error_prefix(err, "%s", what);
        return st;
    }
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION: {
        const char *r = strstr(s->ebuf, "Remote ");
        int n = 0;
        if (r) {
            r += 7;
            while (r[n] && r[n] != ' ' && r[n] != '=')
                n++;
        }
        error_set(err, "host key of %s:%ld does not match host_key_sha256 "
                  "(the server presents SHA256:%.*s, not the confirmed "
                  "SHA256:%s; if the partner really changed it, confirm "
                  "the new one with them, then run `wharf connector "
                  "NAME hostkey.accept SHA256:...`)", o->host, o->port, n,
                  r ? r : "", o->host_key_sha256 ? o->host_key_sha256 : "");
        return WH_FAIL;
    }
    case CURLE_LOGIN_DENIED:
        error_set(err, "authentication failed for %s at %s:%ld", o->user,
                  o->host, o->port);
        return WH_FAIL;
    case CURLE_REMOTE_ACCESS_DENIED:
        error_set(err, "%s: permission denied on %s at %s:%ld", what, path,
                  o->host, o->port);
        return WH_FAIL;
    case CURLE_REMOTE_FILE_NOT_FOUND:
        s->failed = NET_SFTP_NOT_FOUND;
        error_set(err, "%s: %s not found on %s:%ld", what, path, o->host,
                  o->port);
        return WH_FAIL;
    default:
        break;
    }
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_COULDNT_RESOLVE_PROXY)
        error_set(err, "%s: cannot connect to %s:%ld%s%s: %s", what, o->host,
                  o->port, o->proxy.url ? " through proxy " : "",
                  o->proxy.url ? o->proxy.url : "", detail);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        error_set(err, "%s: timed out talking to %s:%ld: %s", what, o->host,
                  o->port, detail);
    else
        error_set(err, "%s %s on %s:%ld: %s", what, path, o->host, o->port,
                  detail);
    return WH_RETRY;
}

/* ---- listing and download --------------------------------------------------------- */

struct listing {
    char *p;
    size_t n, cap, max;
    int too_large;
};

static size_t listing_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct listing *b = ud;
    size_t n = size * nmemb;
    if (n > b->max - b->n) {
        b->too_large = 1;
        return 0;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->n + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

enum wh_status net_sftp_list(struct net_sftp *s, const char *dir,
                             size_t max, char **text, size_t *len,
                             struct error *err)
{
    char path[SFTP_PATH_MAX + 2];
    struct listing b = { .max = max };
    *text = NULL;
    *len = 0;
    snprintf(path, sizeof(path), "%s%s", dir, strcmp(dir, "/") ? "/" : "");
    if (setup(s, path, err) < 0)
        return WH_FAIL;
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, listing_write);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &b);
    CURLcode rc = sftp_perform(s);
    if (rc == CURLE_OK && b.p == NULL && (b.p = strdup("")) == NULL)
        rc = CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK) {
        free(b.p);
        if (b.too_large)
            return error_set(err, "cannot list %s on %s:%ld: the listing is "
                             "larger than %zu bytes", dir, s->o->host,
                             s->o->port, max), WH_FAIL;
        return classify(s, rc, "cannot list", dir, err);
    }
    *text = b.p;
    *len = b.n;
    return WH_OK;
}

struct down {
    net_client_write_fn write;
    void *ud;
    struct error *err;
    int failed;
};

static size_t down_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct down *d = ud;
    size_t n = size * nmemb;
    if (d->write(d->ud, data, n, d->err) < 0) {
        d->failed = 1;
        return 0;
    }
    return n;
}

enum wh_status net_sftp_get(struct net_sftp *s, const char *path,
                            net_client_write_fn write, void *ud,
                            struct error *err)
{
    struct down d = { write, ud, err, 0 };
    if (setup(s, path, err) < 0)
        return WH_FAIL;
    curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, down_write);
    curl_easy_setopt(s->h, CURLOPT_WRITEDATA, &d);
    CURLcode rc = sftp_perform(s);
    if (rc == CURLE_OK)
        return WH_OK;
    if (d.failed) {
        s->failed = NET_SFTP_WRITE;
        return WH_RETRY;            /* err: the write function's */
    }
    return classify(s, rc, "cannot download", path, err);
}

/* ---- upload ------------------------------------------------------------------------- */

struct up {
    const struct net_sftp_upload *u;
    struct error *err;
    int failed;
};

static size_t up_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct up *p = ud;
    ssize_t got = p->u->read(p->u->ud, buf, size * nitems, p->err);
    if (got < 0) {
        p->failed = 1;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got;
}

static int up_seek(void *ud, curl_off_t offset, int origin)
{
    struct up *p = ud;
    if (origin != SEEK_SET || offset < 0 || p->u->seek == NULL)
        return CURL_SEEKFUNC_CANTSEEK;
    if (p->u->seek(p->u->ud, (int64_t)offset, p->err) < 0) {
        p->failed = 1;
        return CURL_SEEKFUNC_FAIL;
    }
    return CURL_SEEKFUNC_OK;
}

enum wh_status net_sftp_put(struct net_sftp *s,
                            const struct net_sftp_upload *u,
                            struct error *err)
{
    struct up p = { u, err, 0 };
    struct curl_slist *post = u->rename_to ? quote_cmd("rename", u->path,
                                                       u->rename_to) : NULL;
    if (u->rename_to && post == NULL)
        return error_set(err, "path %s is too long", u->rename_to), WH_FAIL;
    if (setup(s, u->path, err) < 0) {
        curl_slist_free_all(post);
        return WH_FAIL;
    }
    CURL *h = s->h;
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, up_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &p);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, up_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &p);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u->size);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    if (post)
        curl_easy_setopt(h, CURLOPT_POSTQUOTE, post);
    if (u->resume_from > 0)
        curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE,
                         (curl_off_t)u->resume_from);
    CURLcode rc = sftp_perform(s);
    curl_slist_free_all(post);
    if (rc == CURLE_OK)
        return WH_OK;
    if (p.failed) {
        s->failed = NET_SFTP_READ;
        return WH_FAIL;             /* err: the read function's */
    }
    if (rc == CURLE_QUOTE_ERROR) {  /* uploaded; the rename was refused */
        s->failed = NET_SFTP_QUOTE;
        return error_set(err, "cannot rename %s to %s on %s:%ld: %s",
                         u->path, u->rename_to, s->o->host, s->o->port,
                         s->ebuf), WH_RETRY;
    }
    return classify(s, rc, "cannot upload", u->path, err);
}

/* ---- rename, remove ----------------------------------------------------------------- */

static enum wh_status quote(struct net_sftp *s, struct curl_slist *cmd,
                            const char *what, const char *path,
                            struct error *err)
{
    if (cmd == NULL)
        return error_set(err, "path %s is too long", path), WH_FAIL;
    enum wh_status st = WH_FAIL;
    if (setup(s, "/", err) == 0) {
        curl_easy_setopt(s->h, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(s->h, CURLOPT_QUOTE, cmd);
        CURLcode rc = sftp_perform(s);
        if (rc == CURLE_OK) {
            st = WH_OK;
        } else if (rc == CURLE_QUOTE_ERROR) {
            s->failed = NET_SFTP_QUOTE;
            error_set(err, "cannot %s %s on %s: %s", what, path, s->o->host,
                      s->ebuf[0] ? s->ebuf : curl_easy_strerror(rc));
            st = WH_RETRY;
        } else {
            char w[32];
            snprintf(w, sizeof(w), "cannot %s", what);
            st = classify(s, rc, w, path, err);
        }
    }
    curl_slist_free_all(cmd);
    return st;
}

enum wh_status net_sftp_rename(struct net_sftp *s, const char *from,
                               const char *to, struct error *err)
{
    return quote(s, quote_cmd("rename", from, to), "rename", from, err);
}

enum wh_status net_sftp_remove(struct net_sftp *s, const char *path,
                               struct error *err)
{
    return quote(s, quote_cmd("rm", path, NULL), "delete", path, err);
}

/* ---- the host key -------------------------------------------------------------------- */

struct captured {
    int got, type;
    char fp[SFTP_FP_LEN + 1];
};

/* CURLOPT_SSH_HOSTKEYFUNCTION: note the key (its SHA-256 as OpenSSH
 * prints it) and refuse it, so that libcurl stops after the key exchange
 * and never authenticates. */
static int capture_key(void *ud, int type, const char *key, size_t len)
{
    struct captured *k = ud;
    unsigned char md[32], b64[48];
    if (EVP_Digest(key, len, md, NULL, EVP_sha256(), NULL) == 1) {
        EVP_EncodeBlock(b64, md, sizeof(md));
        memcpy(k->fp, b64, SFTP_FP_LEN);
        k->fp[SFTP_FP_LEN] = '\0';
        k->type = type;
        k->got = 1;
    }
    return CURLKHMATCH_MISMATCH;
}

static const char *key_type_name(int type)
{
    switch (type) {
    case CURLKHTYPE_RSA:
        return "RSA";
    case CURLKHTYPE_DSS:
        return "DSA";
    case CURLKHTYPE_ECDSA:
        return "ECDSA";
    case CURLKHTYPE_ED25519:
        return "ED25519";
    default:
        return "UNKNOWN";
    }
}

enum wh_status net_sftp_hostkey(const struct net_sftp_opts *o, char type[16],
                                char fp[44], struct error *err)
{
    struct captured k = {0};
    struct net_sftp *s = net_sftp_open(o, err);
    if (s == NULL)
        return WH_RETRY;
    enum wh_status st = WH_OK;
    CURL *h = s->h;
    CURLcode rc = sftp_url(o, "/", s->url, sizeof(s->url)) == 0 ? CURLE_OK
                  : CURLE_URL_MALFORMAT;
#define OPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    OPT(CURLOPT_URL, s->url);
    OPT(CURLOPT_PROTOCOLS_STR, "sftp");
    OPT(CURLOPT_ERRORBUFFER, s->ebuf);
    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_CONNECTTIMEOUT, SFTP_CONNECT_S);
    OPT(CURLOPT_SSH_AUTH_TYPES, (long)CURLSSH_AUTH_NONE);
    OPT(CURLOPT_SSH_HOSTKEYFUNCTION, capture_key);
    OPT(CURLOPT_SSH_HOSTKEYDATA, &k);
#undef OPT
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_proxy_setopt(h, &o->proxy);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);
    if (k.got) {
        snprintf(type, 16, "%s", key_type_name(k.type));
        snprintf(fp, 44, "%s", k.fp);
    } else if (rc == CURLE_OK || rc == CURLE_PEER_FAILED_VERIFICATION) {
        error_set(err, "%s:%ld presented no host key", o->host, o->port);
        st = WH_RETRY;
    } else {
        st = classify(s, rc, "cannot get the host key", "/", err);
    }
    net_sftp_close(s);
    return st;
}
