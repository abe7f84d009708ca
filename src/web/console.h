/*
 * console.h - the web console (M8): the files of web/ served by `wharf
 * serve` from the admin listener, as a client of the REST API (api.h).
 */
#ifndef WHARF_WEB_CONSOLE_H
#define WHARF_WEB_CONSOLE_H

#include "util/error.h"

struct net_server;
struct net_request;

/* Serve the console under / on the admin listener of s (never on the
 * partner listener): GET of a compiled-in file, "/" being index.html;
 * anything else 404 (405 for other methods). Before net_server_start.
 * 0, or -1 with err. */
int console_register(struct net_server *s, struct error *err);

/* Add the console's security headers to a response not yet sent:
 * Content-Security-Policy (scripts, styles and connections only from this
 * origin, no inline script or eval, frame-ancestors 'none'),
 * X-Frame-Options DENY, Referrer-Policy no-referrer,
 * Cross-Origin-Opener-Policy and -Resource-Policy same-origin. (The server
 * adds HSTS, nosniff and Cache-Control: no-store to every response.) The
 * API adds them to its answers too. */
void console_headers(struct net_request *r);

#endif
