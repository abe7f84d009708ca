/*
 * api_console.c - what the web console needs beyond the resources'
 * own routes: how one may sign in (public: the login page shows an OIDC
 * button only when single sign-on is configured), and the caller's
 * permissions and idle timeout with "who am I" (api_me_extra), so the
 * console shows only actions the server would allow. The server checks
 * every call anyway (api.c); nothing here grants anything.
 *
 * Must never: tell an unauthenticated caller anything about accounts;
 * return a setting's secret value.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "store/store.h"

int api_auth_methods(struct api_ctx *c)
{
    struct error err = {0};
    char *issuer = NULL;
    int oidc = store_setting_get(c->st, "oidc_issuer", &issuer, &err) == 0 &&
               issuer && issuer[0] &&
               auth_form_allowed(c->st, "oidc", &err) == 1;
    int password = auth_form_allowed(c->st, "password", &err) == 1;
    free(issuer);
    return api_ok(c, 200, json_pack("{s:b, s:b}", "password", password,
                                    "oidc", oidc));
}

void api_me_extra(struct api_ctx *c, json_t *me)
{
    json_t *perms = json_array();
    for (int p = 0; p < PERM_COUNT; p++)
        if (rbac_allows(c->who.role, (enum perm)p))
            json_array_append_new(perms, json_string(rbac_perm_name(
                (enum perm)p)));
    json_object_set_new(me, "permissions", perms);
    json_object_set_new(me, "idle_seconds",
                        json_integer((json_int_t)(c->auth.idle_ms / 1000)));
}
