/*
 * api_connectors_hostkey.c - the host key of an sftp connector (M5):
 *   GET  /api/v1/connectors/{name}/hostkey   the key its server presents
 *        (captured in the key exchange, no authentication) and the one
 *        confirmed, if any;
 *   POST /api/v1/connectors/{name}/hostkey   {"accept": "SHA256:..."}:
 *        the operator confirmed that fingerprint with the partner; stored
 *        as host_key_sha256 when the server still presents it (audited).
 * The same functions as `wharf connector hostkey` (connectors/sftp.h).
 * Must never store a fingerprint the caller did not send.
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "connectors/sftp.h"

/* A result that is not SFTP_HOSTKEY_OK as the API's answer. */
static int hostkey_fail(struct api_ctx *c, int rc, const struct error *err)
{
    switch (rc) {
    case SFTP_HOSTKEY_NOT_FOUND:
        return api_fail(c, 404, "not_found", "%s", err->msg);
    case SFTP_HOSTKEY_NOT_SFTP:
    case SFTP_HOSTKEY_INVALID:
        return api_fail(c, 400, "invalid", "%s", err->msg);
    case SFTP_HOSTKEY_UNREACHABLE:
        return api_fail(c, 502, "unreachable", "%s", err->msg);
    case SFTP_HOSTKEY_MISMATCH:
        return api_fail(c, 409, "host_key_mismatch", "%s", err->msg);
    case SFTP_HOSTKEY_CHANGED:
        return api_fail(c, 409, "conflict", "%s", err->msg);
    default:
        return api_fail(c, 500, "internal", "%s", err->msg);
    }
}

static json_t *hostkey_json(const char *name, const struct sftp_hostkey *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s?, s:b}", "connector", name,
                     "server", k->server, "type", k->key.type,
                     "fingerprint", k->key.fingerprint, "confirmed",
                     k->confirmed[0] ? k->confirmed : NULL, "matches",
                     k->confirmed[0] && !strcmp(k->confirmed,
                                                k->key.fingerprint));
}

int api_connector_hostkey_get(struct api_ctx *c)
{
    struct error err = {0};
    struct sftp_hostkey k;
    int rc = sftp_hostkey_show(c->w, c->st, c->param[0], &k, &err);
    if (rc != SFTP_HOSTKEY_OK && rc != SFTP_HOSTKEY_MISMATCH)
        return hostkey_fail(c, rc, &err);
    json_t *body = hostkey_json(c->param[0], &k);
    if (rc == SFTP_HOSTKEY_MISMATCH)
        json_object_set_new(body, "detail", json_string(err.msg));
    return api_ok(c, 200, body);
}

int api_connector_hostkey_accept(struct api_ctx *c)
{
    struct error err = {0};
    struct sftp_hostkey k;
    char detail[400];
    const char *fp = api_body_str(c, "accept");
    if (fp == NULL)
        return api_fail(c, 400, "invalid", "send {\"accept\": \"SHA256:...\"}"
                        ", the fingerprint confirmed with the partner");
    int rc = sftp_hostkey_accept(c->w, c->st, c->param[0], fp, &k, &err);
    if (rc == SFTP_HOSTKEY_MISMATCH) {
        snprintf(detail, sizeof(detail), "refused: %s", err.msg);
        api_audit(c, "connector.hostkey.accept", c->param[0], detail);
    }
    if (rc != SFTP_HOSTKEY_OK)
        return hostkey_fail(c, rc, &err);
    snprintf(detail, sizeof(detail), "%s %s (before: %s)", k.server,
             k.key.fingerprint, k.confirmed[0] ? k.confirmed : "none");
    api_audit(c, "connector.hostkey.accept", c->param[0], detail);
    snprintf(k.confirmed, sizeof(k.confirmed), "%s", k.key.fingerprint);
    return api_ok(c, 200, hostkey_json(c->param[0], &k));
}
