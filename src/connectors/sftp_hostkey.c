/*
 * sftp_hostkey.c - first-use capture and explicit confirmation of an SFTP
 * partner's host key (M5): the sftp type's actions hostkey.capture and
 * hostkey.accept (`wharf connector NAME hostkey.capture`, GET/POST
 * /api/v1/connectors/{name}/actions/hostkey.capture|accept).
 *
 * Capture opens the stored connector (through the dispatcher's open) and
 * takes the key its server presents (sftp_hostkey_capture: refused in the
 * key exchange, so no authentication is attempted). Accept captures it
 * again, requires exactly the fingerprint the operator confirmed, and only
 * then stores it as host_key_sha256 through the dispatcher's config_set
 * (compare-and-set on the stored config: the flow generation moves and a
 * running server reopens its connectors).
 *
 * Must never: store a fingerprint nobody confirmed, or one the server
 * does not present at that moment; change anything of the connector but
 * host_key_sha256 (its sealed secrets, links and other keys stay).
 */
#include "connectors/sftp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hostkey {
    struct sftp_key key;        /* what the server presents now */
    char confirmed[64];         /* its stored host_key_sha256, "" if none */
    char server[300];           /* "HOST:PORT" */
};

/* Open the connector of x and capture its server's key into out. */
static enum conn_act_rc capture(struct conn_action_ctx *x, struct hostkey *out,
                                struct error *err)
{
    memset(out, 0, sizeof(*out));
    const char *pin = json_string_value(json_object_get(x->config,
                                                        "host_key_sha256"));
    if (pin == NULL ||
        sftp_fingerprint_norm(pin, out->confirmed, sizeof(out->confirmed)) < 0)
        out->confirmed[0] = '\0';
    struct connector *c = x->open(x, err);
    if (c == NULL)
        return CONN_ACT_ERROR;
    enum wh_status st = sftp_hostkey_capture(c, &out->key, out->server,
                                             sizeof(out->server), err);
    connector_free(c);
    return st == WH_OK ? CONN_ACT_OK : CONN_ACT_UNREACHABLE;
}

static json_t *hostkey_json(const char *name, const struct hostkey *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:b}", "connector", name,
                     "server", k->server, "type", k->key.type,
                     "fingerprint", k->key.fingerprint, "confirmed",
                     k->confirmed[0] ? k->confirmed : NULL, "matches",
                     k->confirmed[0] && !strcmp(k->confirmed,
                                                k->key.fingerprint));
}

enum conn_act_rc sftp_hostkey_show(struct conn_action_ctx *x,
                                   struct error *err)
{
    struct hostkey k;
    enum conn_act_rc rc = capture(x, &k, err);
    if (rc != CONN_ACT_OK)
        return error_prefix(err, "cannot get the host key of %s", x->name),
               rc;
    x->result = hostkey_json(x->name, &k);
    int n = snprintf(x->text, sizeof(x->text), "%s: %s presents this %s host "
                     "key:\n  %s\n", x->name, k.server, k.key.type,
                     k.key.fingerprint);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof(x->text) ? (size_t)n
                                                          : sizeof(x->text) - 1;
    if (k.confirmed[0] && strcmp(k.confirmed, k.key.fingerprint) != 0) {
        snprintf(x->code, sizeof(x->code), "host_key_mismatch");
        error_set(err, "host key of %s changed: it presents %s, not the "
                  "confirmed %s; if the partner really changed it, compare "
                  "the new one with them, then run: wharf connector %s "
                  "hostkey.accept %s", k.server, k.key.fingerprint,
                  k.confirmed, x->name, k.key.fingerprint);
        return CONN_ACT_REFUSED;
    }
    if (k.confirmed[0])
        snprintf(x->text + used, sizeof(x->text) - used, "This is the "
                 "confirmed host key (host_key_sha256).");
    else
        snprintf(x->text + used, sizeof(x->text) - used, "Not confirmed yet. "
                 "Compare it with the fingerprint your partner gives you\n"
                 "over another channel (phone, signed mail). If they are the "
                 "same, confirm it:\n  wharf connector %s hostkey.accept %s",
                 x->name, k.key.fingerprint);
    return CONN_ACT_OK;
}

/* The fingerprint argument, normalized into want. */
static enum conn_act_rc wanted(const struct conn_action_ctx *x, char *want,
                               size_t n, struct error *err)
{
    const char *fp = json_string_value(json_object_get(x->args,
                                                       "fingerprint"));
    if (fp == NULL)
        return error_set(err, "send the fingerprint confirmed with the "
                         "partner: {\"fingerprint\": \"SHA256:...\"}"),
               CONN_ACT_INVALID;
    if (sftp_fingerprint_norm(fp, want, n) < 0)
        return error_set(err, "the fingerprint to accept must look like "
                         "SHA256:<43 base64 characters>, as ssh-keygen -lf "
                         "prints it"), CONN_ACT_INVALID;
    return CONN_ACT_OK;
}

/* Store want as host_key_sha256 (k: what was captured). */
static enum conn_act_rc store_pin(struct conn_action_ctx *x,
                                  const struct hostkey *k, const char *want,
                                  struct error *err)
{
    json_t *v = json_string(want);
    int set = v ? x->config_set(x, "host_key_sha256", v, err)
                : error_set(err, "out of memory");
    if (set < 0)
        return CONN_ACT_ERROR;
    if (set == 1) {
        snprintf(x->code, sizeof(x->code), "conflict");
        return error_set(err, "connector '%s' was changed or removed "
                         "meanwhile: nothing stored; run the command again",
                         x->name), CONN_ACT_REFUSED;
    }
    snprintf(x->audit, sizeof(x->audit), "%s %s (before: %s)", k->server,
             want, k->confirmed[0] ? k->confirmed : "none");
    snprintf(x->text, sizeof(x->text), "host key %s of %s confirmed for %s "
             "and stored as its host_key_sha256\n(a running server picks it "
             "up within a second)", want, k->server, x->name);
    return CONN_ACT_OK;
}

enum conn_act_rc sftp_hostkey_accept(struct conn_action_ctx *x,
                                     struct error *err)
{
    char want[64];
    struct hostkey k;
    enum conn_act_rc rc = wanted(x, want, sizeof(want), err);
    if (rc == CONN_ACT_OK)
        rc = capture(x, &k, err);
    if (rc == CONN_ACT_OK && strcmp(k.key.fingerprint, want) != 0) {
        error_set(err, "%s presents %s, not %s: nothing stored (compare "
                  "the fingerprint with the partner again)", k.server,
                  k.key.fingerprint, want);
        snprintf(x->audit, sizeof(x->audit), "refused: %s", err->msg);
        snprintf(x->code, sizeof(x->code), "host_key_mismatch");
        rc = CONN_ACT_REFUSED;
    }
    if (rc == CONN_ACT_OK)
        rc = store_pin(x, &k, want, err);
    if (rc == CONN_ACT_OK) {
        snprintf(k.confirmed, sizeof(k.confirmed), "%s", want);
        x->result = hostkey_json(x->name, &k);
    }
    if (rc != CONN_ACT_OK)
        error_prefix(err, "host key of %s not accepted", x->name);
    return rc;
}
