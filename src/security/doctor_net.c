/*
 * doctor_net.c - the posture checks of what faces the network
 * (doctor_internal.h): the listeners (bound beyond loopback without mutual
 * TLS, a self-signed certificate there), connectors and partners sending
 * in plain text or with weak algorithms, SFTP servers without a pinned
 * host key, and certificates expired or near expiry.
 *
 * Knows no connector type by name: a connector "sends in plain text" when
 * its config sets insecure or holds an http:// URL, and "has no pinned
 * host key" when its type declares host_key_sha256 and the config does
 * not set it. Must never: contact anything; print a secret.
 */
#include "security/doctor_internal.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/connector.h"
#include "core/wharf.h"
#include "net/server.h"
#include "net/syslog.h"
#include "security/upkeep.h"
#include "store/partner_store.h"
#include "store/store.h"
#include "util/id.h"

#define DAY_MS 86400000LL

/* ---- listeners --------------------------------------------------------------------- */

static int loopback(const char *spec)
{
    char host[64];
    int port;
    struct error err = {0};
    return net_listen_parse(spec, host, sizeof(host), &port, &err) == 0 &&
           strncmp(host, "127.", 4) == 0;
}

static void listener_check(struct doctor *d, const char *which,
                           const char *spec, const char *client_ca,
                           const char *allow_from)
{
    const char *ctl = "A.8.20 A.8.22 A.8.5";
    char id[64];
    snprintf(id, sizeof(id), "listeners.%s", which);
    if (loopback(spec))
        doctor_add(d->report, id, DOCTOR_PASS, ctl, "", "the %s listener "
                   "listens on loopback only (%s)", which, spec);
    else if (client_ca[0])
        doctor_add(d->report, id, DOCTOR_PASS, ctl, "", "the %s listener "
                   "(%s) is reachable beyond this machine and requires "
                   "client certificates (mutual TLS, %s_client_ca)", which,
                   spec, which);
    else if (allow_from[0])
        doctor_add(d->report, id, DOCTOR_PASS, ctl, "", "the %s listener "
                   "(%s) is reachable beyond this machine from the addresses "
                   "of %s_allow_from only (%s)", which, spec, which,
                   allow_from);
    else {
        char action[300];   /* the action is text, not a format */
        snprintf(action, sizeof(action), "require client certificates "
                 "(wharf.conf %s_client_ca) or let only known addresses "
                 "reach it (wharf.conf %s_allow_from, or a firewall), or "
                 "bind it to 127.0.0.1 behind a proxy that does", which,
                 which);
        doctor_add(d->report, id, DOCTOR_WARN, ctl, action, "the %s listener "
                   "(%s) is reachable beyond this machine without mutual TLS "
                   "or an allow-list", which, spec);
    }
}

/* Path of wharf.conf's tls_cert. */
static void listener_cert_path(const struct wharf *w, char *out, size_t n)
{
    if (w->conf.tls_cert[0] == '/')
        snprintf(out, n, "%s", w->conf.tls_cert);
    else
        wharf_path(w, w->conf.tls_cert, out, n);
}

/* 1 when the PEM certificate at path is self-signed, 0 not, -1 unreadable. */
static int self_signed(const char *path)
{
    FILE *f = fopen(path, "re");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    int rc = x ? X509_NAME_cmp(X509_get_subject_name(x),
                               X509_get_issuer_name(x)) == 0 : -1;
    X509_free(x);
    return rc;
}

void doctor_check_listeners(struct doctor *d)
{
    const struct wharf_conf *c = d->conf;
    listener_check(d, "admin", c->admin_listen, c->admin_client_ca,
                   c->admin_allow_from);
    listener_check(d, "partner", c->partner_listen, c->partner_client_ca,
                   c->partner_allow_from);
    char path[4200];
    listener_cert_path(d->w, path, sizeof(path));
    int exposed = !loopback(c->admin_listen) || !loopback(c->partner_listen);
    if (exposed && self_signed(path) == 1)
        doctor_add(d->report, "listeners.certificate", DOCTOR_WARN,
                   "A.8.24 A.8.20", "install a certificate from a CA the "
                   "partners and browsers trust (tls_cert, tls_key)", "a "
                   "listener reachable beyond this machine presents a "
                   "self-signed certificate (%s)", path);
    else
        doctor_add(d->report, "listeners.certificate", DOCTOR_PASS,
                   "A.8.24 A.8.20", "", exposed ? "the listeners' certificate "
                   "is issued by a CA" : "the listeners are reachable from "
                   "this machine only");
}

/* ---- connectors and partners ------------------------------------------------------------ */

/* Whether a config (any depth) says insecure or holds an http:// URL. */
static int plain_text(const json_t *v)
{
    if (json_is_string(v))
        return strncmp(json_string_value(v), "http://", 7) == 0;
    const char *k;
    json_t *m;
    size_t i;
    if (json_is_object(v)) {
        if (json_is_true(json_object_get(v, "insecure")))
            return 1;
        json_object_foreach((json_t *)v, k, m) {
            if (strcmp(k, "proxy") != 0 && plain_text(m))
                return 1;
        }
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, m) {
            if (plain_text(m))
                return 1;
        }
    }
    return 0;
}

void doctor_check_connectors(struct doctor *d)
{
    const char *ctl = "A.8.24 A.5.14 A.8.20";
    struct error err = {0};
    struct store_flow f;
    struct doctor_list l = {0};
    if (store_flow_get(d->st, &f, &err) < 0) {
        doctor_add(d->report, "connectors.plaintext", DOCTOR_WARN, ctl, "see "
                   "the error", "cannot read the flow: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < f.nconns; i++) {
        json_t *c = json_loads(f.conns[i].config, 0, NULL);
        if (plain_text(c))
            doctor_list_add(&l, "connector %s", f.conns[i].name);
        json_decref(c);
    }
    for (size_t i = 0; i < f.npartners; i++) {
        json_t *c = json_loads(f.partners[i].config, 0, NULL);
        if (plain_text(c) || json_is_true(json_object_get(
                                 c, "allow_plain_mdn_url")))
            doctor_list_add(&l, "partner %s", f.partners[i].name);
        json_decref(c);
    }
    size_t n = f.nconns + f.npartners;
    store_flow_clear(&f);
    if (net_syslog_plain(d->conf->security.syslog))
        doctor_list_add(&l, "notify_syslog %s", d->conf->security.syslog);
    if (l.n)
        doctor_add(d->report, "connectors.plaintext", DOCTOR_WARN, ctl,
                   "use https:// (and drop insecure / allow_plain_mdn_url) "
                   "wherever the partner offers TLS, and tls:// for a syslog "
                   "collector on another machine", "sending without TLS: %s",
                   l.text);
    else
        doctor_add(d->report, "connectors.plaintext", DOCTOR_PASS, ctl, "",
                   "none of %zu connector(s) and partner(s) sends in plain "
                   "text%s", n, d->conf->security.syslog[0]
                   ? ", nor do the syslog notifications" : "");
}

void doctor_check_host_keys(struct doctor *d)
{
    const char *ctl = "A.8.21 A.5.14";
    struct error err = {0};
    struct store_flow f;
    struct doctor_list l = {0};
    if (store_flow_get(d->st, &f, &err) < 0)
        return;
    for (size_t i = 0; i < f.nconns; i++) {
        const struct connector_type *t = connector_type_find(f.conns[i].type);
        if (t == NULL || !connector_option_find(t->options,
                                                "host_key_sha256"))
            continue;
        json_t *c = json_loads(f.conns[i].config, 0, NULL);
        if (!json_is_string(json_object_get(c, "host_key_sha256")))
            doctor_list_add(&l, "%s", f.conns[i].name);
        json_decref(c);
    }
    store_flow_clear(&f);
    if (l.n)
        doctor_add(d->report, "connectors.host_keys", DOCTOR_WARN, ctl,
                   "confirm each server's key with the partner, then `wharf "
                   "connector NAME hostkey.capture` and `hostkey.accept "
                   "SHA256:...` (until then these connectors transfer "
                   "nothing)", "SSH servers without a pinned host key: %s",
                   l.text);
    else
        doctor_add(d->report, "connectors.host_keys", DOCTOR_PASS, ctl, "",
                   "every SSH server's host key is pinned");
}

/* Why partner config c is weak, into l. */
static void partner_weak(const char *name, const json_t *c,
                         struct doctor_list *l)
{
    const char *sign = json_string_value(json_object_get(c, "sign"));
    const char *enc = json_string_value(json_object_get(c, "encrypt"));
    if (sign && (!strcmp(sign, "sha1") || !strcmp(sign, "none")))
        doctor_list_add(l, "%s signs with %s", name, sign);
    if (enc && (!strcmp(enc, "3des") || !strcmp(enc, "none")))
        doctor_list_add(l, "%s encrypts with %s", name, enc);
    if (json_is_true(json_object_get(c, "accept_unsigned")))
        doctor_list_add(l, "%s may send unsigned", name);
    if (json_is_true(json_object_get(c, "accept_unencrypted")))
        doctor_list_add(l, "%s may send unencrypted", name);
}

void doctor_check_partners(struct doctor *d)
{
    const char *ctl = "A.8.24 A.5.14";
    struct error err = {0};
    struct store_flow f;
    struct doctor_list l = {0};
    if (store_flow_get(d->st, &f, &err) < 0)
        return;
    for (size_t i = 0; i < f.npartners; i++) {
        json_t *c = json_loads(f.partners[i].config, 0, NULL);
        partner_weak(f.partners[i].name, c, &l);
        json_decref(c);
    }
    size_t n = f.npartners;
    store_flow_clear(&f);
    if (l.n)
        doctor_add(d->report, "partners.algorithms", DOCTOR_WARN, ctl, "agree "
                   "on SHA-256 signatures and AES encryption with these "
                   "partners, then change their settings", "weak or missing "
                   "AS2 protection: %s", l.text);
    else
        doctor_add(d->report, "partners.algorithms", DOCTOR_PASS, ctl, "",
                   "%zu partner(s), all signing and encrypting with current "
                   "algorithms", n);
}

/* ---- certificates ---------------------------------------------------------------------- */

/* An owner's newest certificate (c is the last of its owner) against now. */
static void cert_judge(struct doctor *d, const char *what, int64_t not_after,
                       struct doctor_list *expired, struct doctor_list *soon)
{
    char iso[32];
    time_iso(not_after, iso, sizeof(iso));
    if (not_after <= d->now)
        doctor_list_add(expired, "%s (expired %s)", what, iso);
    else if (not_after - d->now < 30 * DAY_MS)
        doctor_list_add(soon, "%s (expires %s)", what, iso);
}

void doctor_check_certificates(struct doctor *d)
{
    const char *ctl = "A.8.24 A.5.9";
    struct error err = {0};
    struct store_cert *c = NULL;
    size_t n = 0;
    struct doctor_list expired = {0}, soon = {0};
    char path[4200], what[300];
    listener_cert_path(d->w, path, sizeof(path));
    int64_t until = upkeep_cert_file_expiry(path, &err);
    if (until > 0)
        cert_judge(d, "the listeners' certificate", until, &expired, &soon);
    if (store_certs_list(d->st, NULL, 0, &c, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && strcmp(c[i + 1].owner, c[i].owner) == 0)
                continue;           /* an older one: its successor counts */
            snprintf(what, sizeof(what), "%s%s %.16s", c[i].owner[0]
                     ? "partner " : "the AS2 profile", c[i].owner, c[i].id);
            cert_judge(d, what, c[i].not_after, &expired, &soon);
        }
        store_certs_free(c, n);
    }
    if (expired.n)
        doctor_add(d->report, "certificates.expiry", DOCTOR_FAIL, ctl,
                   "import a new certificate (wharf cert import) or install "
                   "a new tls_cert and restart", "expired: %s%s%s",
                   expired.text, soon.n ? "; within 30 days: " : "",
                   soon.n ? soon.text : "");
    else if (soon.n)
        doctor_add(d->report, "certificates.expiry", DOCTOR_WARN, ctl, "get "
                   "the successors now (wharf cert import --use-from for a "
                   "rollover)", "expiring within 30 days: %s", soon.text);
    else
        doctor_add(d->report, "certificates.expiry", DOCTOR_PASS, ctl, "",
                   "the listeners' certificate and %zu stored certificate(s): "
                   "none expires within 30 days", n);
}
