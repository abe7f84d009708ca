/*
 * api_posture.c - the posture report and the asset inventory over the API
 * (R24, R23): GET /api/v1/posture (security/doctor.h, the same report as
 * `wharf doctor --json`; 200 whatever it finds: its checks say PASS, WARN
 * or FAIL) and GET /api/v1/inventory (security/inventory.h, as `wharf
 * inventory --json`), both with permission posture.read (administrators
 * and auditors). Made by serve itself: its own user, its key process.
 *
 * Owns nothing beyond the call. Must never answer with a secret (the
 * report and the inventory hold none).
 */
#include <stdlib.h>

#include "api/api.h"
#include "core/wharf.h"
#include "security/doctor.h"
#include "security/inventory.h"
#include "security/upkeep.h"

int api_posture(struct api_ctx *c)
{
    struct error err = {0};
    struct wharf_conf *conf = malloc(sizeof(*conf));
    if (conf == NULL)
        return api_fail(c, 503, "unavailable", "out of memory");
    upkeep_get_conf(conf);          /* live keys: the published copy */
    struct doctor_env env = { 1, 0, conf };
    json_t *report = doctor_files(c->w->dir);
    int rc = doctor_config(c->w, c->st, &env, report, &err);
    free(conf);
    if (rc < 0) {
        json_decref(report);
        return api_fail(c, 500, "internal", "%s", err.msg);
    }
    return api_ok(c, 200, report);
}

int api_inventory(struct api_ctx *c)
{
    struct error err = {0};
    json_t *inv = inventory_json(c->w, c->st, 1, &err);
    return inv ? api_ok(c, 200, inv)
               : api_fail(c, 500, "internal", "%s", err.msg);
}
