/*
 * as2_conn.h - what the two halves of the as2 connector share:
 * connectors/as2.c (config, open, send: destination) and
 * connectors/as2_recv.c (the /as2 route: source, inbound MDNs).
 * Private to those two files.
 */
#ifndef WHARF_AS2_CONN_H
#define WHARF_AS2_CONN_H

#include <openssl/bio.h>

#include "as2/message.h"
#include "connectors/connector.h"
#include "connectors/proxy.h"
#include "core/profile.h"
#include "net/allow.h"
#include "net/client.h"
#include "util/id.h"

#define AS2_ROUTE "/as2"
#define AS2_MDN_ROUTE "/as2/mdn"
/* The route's cap (the listener refuses more from Content-Length) and
 * the default of a connector's own max_body_bytes (as2_recv.c). */
#define AS2_MAX_BODY (8LL * 1024 * 1024 * 1024)
#define AS2_DEFAULT_BODY (1LL * 1024 * 1024 * 1024)

struct as2_state {
    const struct profile *prof;     /* our AS2 id and keys (vault handles),
                                       the environment's (c->env->keys) */
    const struct partner *part;     /* the partner of this connector: the
                                       environment's */
    struct connector_proxy proxy;
    struct net_client_opts opts;    /* towards the partner's URL */
    struct secret *ca_pem;          /* the partner's tls_ca (PEM), owned */
    int64_t mdn_timeout_ms;         /* async MDN: then send again */
    int64_t mdn_give_up_ms;         /* an async MDN we owe: retried so long */
    int64_t max_body;               /* what the partner may POST us */
    struct net_allow allow;         /* the partner's allow_from */
};

/* A BIO that reads through fn(ud, buf, n, err) until it returns 0; the
 * first error is kept in *err. Free with BIO_free. */
typedef ssize_t (*as2_read_fn)(void *ud, void *buf, size_t n,
                               struct error *err);
BIO *as2_bio_reader(as2_read_fn fn, void *ud, struct error *err);

/* Policy of the partner for what it sends us (certificates, algorithms,
 * keys of our profile). keys/certs are malloc'ed arrays borrowing from s:
 * free them with as2_policy_clear. */
int as2_policy_make(const struct as2_state *s, struct as2_policy *pol,
                    struct error *err);
void as2_policy_clear(struct as2_policy *pol);
/* The AS2_DIGEST_BITs p may sign with (messages and MDNs). */
unsigned as2_partner_digests(const struct partner *p);

/* Read an MDN and check it confirms message_id with mic. WH_OK, or
 * WH_FAIL with the reason (a negative MDN, a MIC mismatch, a bad or
 * missing signature). The MDN is kept as the message's receipt either
 * way: *held gets it, for the outcome's transaction to keep
 * (conn_receipt_hold), or, when that cannot be had, it is kept at once. */
struct conn_held;
enum wh_status as2_mdn_confirm(struct connector *c, const char *msgid,
                               const char *headers, const char *body,
                               size_t len, const char *message_id,
                               const char *mic, char *receipt, size_t rsz,
                               struct conn_held **held, struct error *err);

/* Keep a raw MDN with Wharf message msgid (the non-repudiation record):
 * direction "sent" or "received"; headers as "Name: value\r\n" lines.
 * Failures are logged, not returned (the exchange already happened). */
void as2_receipt_keep(struct connector *c, const char *msgid,
                      const char *direction, const char *headers,
                      const void *body, size_t len, const char *mdn_id,
                      const char *original_id);

/* The source half (as2_recv.c). */
enum wh_status as2_route(struct connector *c, struct http_exchange *x);
struct connector *as2_pick(struct connector *const *conns, size_t n,
                           struct net_request *req);

/* The durable jobs of the as2 connector (connectors/env.h): an
 * asynchronous MDN we owe a partner (as2_recv.c), and the wait for one a
 * partner owes us (as2.c). */
#define AS2_JOB_MDN_OUT "as2.mdn-out"
#define AS2_JOB_MDN_WAIT "as2.mdn-wait"
/* Both kinds keep their data and input in the clear (connector.h:
 * struct conn_job_type.in_clear; as2.c's job table says why). */
#define AS2_JOBS_IN_CLEAR 1
enum wh_status as2_mdn_out_run(struct connector *c, struct conn_job *j);

/* The AS2 Message-ID of Wharf message msgid ("<ID@wharf>": the same for
 * every attempt, see as2.c), and back: the Wharf id of one of ours into
 * out, 0; -1 when as2_id is not one of ours. */
void as2_message_id_of(const char *msgid, char *out, size_t n);
int as2_message_id_wharf(const char *as2_id, char out[ID_LEN + 1]);

#endif
