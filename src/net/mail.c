/*
 * mail.c - the SMTP client of notifications (mail.h), on libcurl.
 *
 * Owns the curl options of a mail transfer: TLS required (smtps://, or
 * STARTTLS with CURLUSESSL_ALL), verification always on, TLS 1.2+ with
 * the suites of tls.h, the proxy rule of net/client.c, AUTH from a struct
 * secret, the message streamed from memory. Must never turn verification
 * off, send a byte before TLS is up, enable CURLOPT_VERBOSE (it would
 * print the AUTH exchange), or put the message or a credential into an
 * error. The login reaches curl only through setopt from a struct secret;
 * curl keeps its own copy until the handle is cleaned up (freed without
 * wiping: the limit net/client.c notes too).
 */
#include "net/mail.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/client.h"
#include "net/tls.h"
#include "util/secret.h"

#define MAIL_TIMEOUT_MS 30000L
#define MAIL_CONNECT_MS 10000L

static pthread_once_t mail_once = PTHREAD_ONCE_INIT;
static int mail_ready;

static void mail_init_once(void)
{
    mail_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

struct mail_src {
    const char *p;
    size_t left;
};

static size_t mail_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct mail_src *s = ud;
    size_t n = size * nitems;
    if (n > s->left)
        n = s->left;
    memcpy(buf, s->p, n);
    s->p += n;
    s->left -= n;
    return n;
}

/* user and password of "user:password" as two C strings in one secret
 * ("user\0password\0"); *pass points into it. NULL when malformed. */
static struct secret *mail_login(const struct secret *login, const char **pass)
{
    size_t n = secret_len(login);
    const unsigned char *d = secret_data(login);
    const unsigned char *colon = memchr(d, ':', n);
    if (colon == NULL || colon == d || memchr(d, '\0', n) != NULL)
        return NULL;
    struct secret *t = secret_new(n + 1);
    if (t == NULL)
        return NULL;
    unsigned char *o = secret_data_mut(t);
    memcpy(o, d, n);
    o[colon - d] = '\0';
    *pass = (const char *)o + (colon - d) + 1;
    return t;
}

static CURLcode mail_setup(CURL *c, const struct net_mail *m,
                           struct curl_slist *rcpt, struct mail_src *src,
                           const struct secret *up, const char *pass,
                           char *ebuf)
{
    CURLcode rc = CURLE_OK;
#define OPT(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    OPT(CURLOPT_URL, m->url);
    OPT(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    OPT(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    OPT(CURLOPT_SSL_VERIFYPEER, 1L);
    OPT(CURLOPT_SSL_VERIFYHOST, 2L);
    OPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    OPT(CURLOPT_SSL_CIPHER_LIST, TLS_CIPHERS_12);
    OPT(CURLOPT_TLS13_CIPHERS, TLS_SUITES_13);
    OPT(CURLOPT_SSL_EC_CURVES, TLS_GROUPS);
    if (m->ca_file)
        OPT(CURLOPT_CAINFO, m->ca_file);
    if (rc == CURLE_OK)
        rc = (CURLcode)net_client_proxy_setopt(c, m->proxy);
    if (up) {
        OPT(CURLOPT_USERNAME, (const char *)secret_data(up));
        OPT(CURLOPT_PASSWORD, pass);
    }
    OPT(CURLOPT_MAIL_FROM, m->from);
    OPT(CURLOPT_MAIL_RCPT, rcpt);
    OPT(CURLOPT_UPLOAD, 1L);
    OPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
    OPT(CURLOPT_READFUNCTION, mail_read);
    OPT(CURLOPT_READDATA, src);
    OPT(CURLOPT_NOSIGNAL, 1L);
    OPT(CURLOPT_CONNECTTIMEOUT_MS, MAIL_CONNECT_MS);
    OPT(CURLOPT_TIMEOUT_MS, m->timeout_ms > 0 ? m->timeout_ms
                                              : MAIL_TIMEOUT_MS);
    OPT(CURLOPT_ERRORBUFFER, ebuf);
    OPT(CURLOPT_VERBOSE, 0L);
#undef OPT
    return rc;
}

/* One sentence for a failed transfer: the stage, never the message. */
static int mail_failed(CURL *c, CURLcode rc, const struct net_mail *m,
                       const char *ebuf, struct error *err)
{
    const char *detail = ebuf[0] ? ebuf : curl_easy_strerror(rc);
    long v = 0;
    switch (rc) {
    case CURLE_USE_SSL_FAILED:
        return error_set(err, "mail to %s: the server does not offer "
                         "STARTTLS (TLS is required; use smtps:// or a "
                         "server with STARTTLS)", m->url);
    case CURLE_PEER_FAILED_VERIFICATION:
        curl_easy_getinfo(c, CURLINFO_SSL_VERIFYRESULT, &v);
        return error_set(err, "mail to %s: TLS: the server's certificate is "
                         "not trusted (verify result %ld; notify_ca_file?): "
                         "%s", m->url, v, detail);
    case CURLE_LOGIN_DENIED:
        return error_set(err, "mail to %s: the server refused the login "
                         "(`wharf notify credentials email FILE`)", m->url);
    case CURLE_COULDNT_CONNECT:
        return error_set(err, "mail to %s: TCP connect failed: %s", m->url,
                         detail);
    case CURLE_OPERATION_TIMEDOUT:
        return error_set(err, "mail to %s: timeout: %s", m->url, detail);
    default:
        return error_set(err, "mail to %s failed: %s", m->url, detail);
    }
}

int net_mail_send(const struct net_mail *m, struct error *err)
{
    struct curl_slist *rcpt = NULL;
    for (size_t i = 0; m->to && m->to[i]; i++) {
        struct curl_slist *t = curl_slist_append(rcpt, m->to[i]);
        if (t == NULL) {
            curl_slist_free_all(rcpt);
            return error_set(err, "out of memory");
        }
        rcpt = t;
    }
    if (rcpt == NULL)
        return error_set(err, "mail to %s: no recipient", m->url);
    pthread_once(&mail_once, mail_init_once);
    if (!mail_ready) {
        curl_slist_free_all(rcpt);
        return error_set(err, "cannot initialize libcurl");
    }
    const char *pass = NULL;
    struct secret *up = m->login ? mail_login(m->login, &pass) : NULL;
    CURL *c = curl_easy_init();
    int rc = 0;
    if (m->login && up == NULL)
        rc = error_set(err, "mail to %s: the sealed credentials are not "
                       "user:password", m->url);
    else if (c == NULL)
        rc = error_set(err, "cannot initialize libcurl");
    if (rc == 0) {
        char ebuf[CURL_ERROR_SIZE] = "";
        struct mail_src src = { m->data, m->len };
        CURLcode cc = mail_setup(c, m, rcpt, &src, up, pass, ebuf);
        if (cc != CURLE_OK)
            rc = error_set(err, "mail to %s: cannot set up the transfer: %s",
                           m->url, curl_easy_strerror(cc));
        else if ((cc = curl_easy_perform(c)) != CURLE_OK)
            rc = mail_failed(c, cc, m, ebuf, err);
    }
    curl_easy_cleanup(c);
    curl_slist_free_all(rcpt);
    secret_free(up);
    return rc;
}
