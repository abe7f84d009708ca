/*
 * console.c - serves the web console (M8): the files of web/, compiled
 * into the binary (scripts/embed-web.pl -> build/gen/web_assets.c), on the
 * admin listener, each with the console's security headers (R12, R13).
 * The console is a client of the REST API; everything it shows or changes
 * goes through /api/v1 and its checks.
 *
 * Must never: read a file from disk; answer on the partner listener;
 * serve anything but the compiled-in files; send a response without the
 * security headers.
 */
#include "web/console.h"

#include <string.h>

#include "net/server.h"
#include "web/assets.h"

static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

void console_headers(struct net_request *r)
{
    net_reply_header(r, "Content-Security-Policy", CSP);
    net_reply_header(r, "X-Frame-Options", "DENY");
    net_reply_header(r, "Referrer-Policy", "no-referrer");
    net_reply_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    net_reply_header(r, "Cross-Origin-Resource-Policy", "same-origin");
}

/* The compiled-in file at path ("/" is index.html), or NULL. */
static const struct web_asset *console_find(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < web_nassets; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}

static int console_serve(struct net_request *r, void *user_data)
{
    (void)user_data;
    console_headers(r);
    if (strcmp(net_req_method(r), "GET") != 0)
        return net_reply_error(r, 405, "method_not_allowed",
                               "the console only answers GET");
    const struct web_asset *a = console_find(net_req_path(r));
    if (a == NULL)
        return net_reply_error(r, 404, "not_found", "no such page: the "
                               "console starts at /");
    return net_reply(r, 200, a->content_type, a->data, a->len);
}

int console_register(struct net_server *s, struct error *err)
{
    if (net_route(net_listener(s, NET_ADMIN), "*", "/", console_serve,
                  NULL) < 0)
        return error_set(err, "cannot register the console at /");
    return 0;
}
