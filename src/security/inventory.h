/*
 * inventory.h - the asset inventory (R23): `wharf inventory` and GET
 * /api/v1/inventory list what this installation holds and talks to:
 *
 *   connectors    name, type, direction (in, out, both), partner, retention
 *   endpoints     the listeners and every place a connector reaches or
 *                 serves: protocol, host, port, TLS or not (folders: path)
 *   partners      name, AS2 id, URL, their connectors
 *   certificates  owner, use, subject, issuer, SHA-256 fingerprint (of the
 *                 DER, as `openssl x509 -fingerprint -sha256` prints it but
 *                 lower case without colons), validity, status; the
 *                 listeners' own certificate and client CA files included
 *   keys          master keys, the audit signing key, the listeners' TLS
 *                 key, AS2 profile keys, connector secrets: what and where
 *                 (never a key's bytes)
 *   users         name, role, second factor (totp, oidc, none), disabled
 *   tokens        API tokens: name, role, owner, expiry, last use
 *
 * Each section is a JSON array of objects; inventory_csv flattens them into
 * one table (a "kind" column, then fixed columns). Reads only.
 */
#ifndef WHARF_SECURITY_INVENTORY_H
#define WHARF_SECURITY_INVENTORY_H

#include <jansson.h>

#include "util/error.h"

struct wharf;
struct store;

/* The inventory of w, new reference; NULL with err. in_serve: made by
 * serve (its keys are in the key process). */
json_t *inventory_json(struct wharf *w, struct store *st, int in_serve,
                       struct error *err);

/* The inventory as CSV (RFC 4180: a header line, CRLF line ends, fields
 * with a comma, quote or line break quoted). malloc'ed; NULL when out of
 * memory. */
char *inventory_csv(const json_t *inv);

#endif
