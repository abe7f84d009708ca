/*
 * api_partners.c - the AS2 profile, partners and certificates over the API
 * (M7): GET /api/v1/partners, GET /api/v1/certificates (with expiry),
 * GET /api/v1/certificates/{id} (PEM), and POST
 * /api/v1/partners/{name}/certificates (a partner's new certificate during
 * a rollover, PEM in the body; kept in the partner's stored config as
 * {"content": PEM}, so an export carries it). Same core/partners.c
 * functions as `wharf partner` and `wharf cert`. Must never answer with a
 * private key, never read or write a file for its caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/partners.h"
#include "core/wharf.h"
#include "net/server.h"

#define PEM_MAX (64 * 1024)

int api_partners(struct api_ctx *c)
{
    struct error err = {0};
    json_t *all = partners_list_json(c->st, &err);
    return all ? api_ok(c, 200, all)
               : api_fail(c, 500, "internal", "%s", err.msg);
}

int api_certificates(struct api_ctx *c)
{
    struct error err = {0};
    json_t *arr = partners_certs_json(c->st, &err);
    return arr ? api_ok(c, 200, json_pack("{s:o}", "certificates", arr))
               : api_fail(c, 500, "internal", "%s", err.msg);
}

int api_certificate_get(struct api_ctx *c)
{
    struct error err = {0};
    char *pem = partners_cert_pem(c->st, c->param[0], &err);
    if (pem == NULL)
        return api_fail(c, 404, "not_found", "%s", err.msg);
    int rc = net_reply(c->req, 200, "application/x-pem-file", pem,
                       strlen(pem));
    free(pem);
    return rc;
}

int api_partner_cert_add(struct api_ctx *c)
{
    const char *pem = api_body_str(c, "pem");
    const char *use_from = api_body_str(c, "use_from");
    if (pem == NULL || strlen(pem) > PEM_MAX ||
        strstr(pem, "-----BEGIN CERTIFICATE-----") == NULL ||
        strstr(pem, "PRIVATE KEY") != NULL)
        return api_fail(c, 400, "invalid", "send {\"pem\": a PEM certificate "
                        "(no private key), \"use_from\": optional "
                        "2027-01-31T00:00:00Z}");
    struct error err = {0};
    json_t *file = flowfile_content(pem, strlen(pem));
    json_t *e = use_from ? json_pack("{s:o, s:s}", "file", file, "use_from",
                                     use_from) : file;
    int rc = partners_cert_import(c->w, c->st, c->param[0], e, FLOW_FROM_API,
                                  &err);
    json_decref(e);
    if (rc < 0) {
        int missing = strncmp(err.msg, "no partner", 10) == 0;
        return api_fail(c, missing ? 404 : 400, missing ? "not_found"
                        : "invalid", "%s", err.msg);
    }
    api_audit(c, "cert.import", c->param[0], use_from);
    return api_ok(c, 201, json_pack("{s:s}", "status", "imported"));
}
