/*
 * partners.h - the local AS2 profile and the trading partners (M7), as the
 * import/export document gives them:
 *
 *   "profile":  {"as2_id":"wharf-a","keys":[{"pkcs12":FILE,
 *                "password_file":FILE} | {"cert":FILE,"key":FILE} |
 *                {"sealed":"<certificate id>"}]}
 *   "partners": [{"name":"b","as2_id":"wharf-b","url":"https://...",
 *                 "certificates":[FILE | {"file":FILE,
 *                                 "use_from":"2027-01-01T00:00:00Z"}],
 *                 "tls_ca":FILE,"sign":"sha256","encrypt":"aes256-cbc",
 *                 "compress":true,"mdn":"sync","mdn_signed":true, ...}]
 *
 * FILE is a form of core/flowfile.h: an absolute path (CLI import only),
 * {"content": PEM} or {"base64": DER/PKCS#12}. What is stored (and what
 * export prints) needs no file: certificates and tls_ca as {"content":
 * PEM}, profile keys as {"sealed": "<certificate id>"} naming the sealed
 * key this data directory holds.
 *
 * Two halves, like flow.c. partners_parse() validates the JSON only (no
 * I/O; it runs inside flow_parse, which is fuzzed) and keeps each section
 * as normalized JSON text. partners_load() is the import-time I/O: it reads
 * the certificate and key files (PEM, DER or PKCS#12), checks that each key
 * matches its certificate, seals private keys with the vault, and fills the
 * certificate rows that store_flow_put writes with the rest of the flow.
 *
 * Keys of a partner beyond the contract (all optional; defaults in
 * brackets): "accept_unsigned" [false], "accept_unencrypted" [false],
 * "allow_sign" [the sign value plus stronger SHA-2], "allow_encrypt" [the
 * encrypt value plus AES], "async_mdn_url", "pin_sha256", "proxy",
 * "sign_pss" [false], "encrypt_oaep" [false], interop switches
 * "transfer_encoding" ("binary" | "base64") [binary], "canonicalize"
 * [false: payloads go byte for byte; true: text line ends become CRLF
 * before signing], "compress_order" ("before_sign" | "after_sign")
 * [before_sign], "compress_level" (zlib's 1 fastest .. 9 smallest) [6],
 * "micalg_spelling" ("rfc" = sha-256 | "plain" = sha256) [rfc],
 * "chunked" [true: a large message is streamed into its POST with chunked
 * transfer encoding; false: packaged whole first, sent with a
 * Content-Length] (connectors/as2.c).
 */
#ifndef WHARF_PARTNERS_H
#define WHARF_PARTNERS_H

#include <jansson.h>

#include "core/flowfile.h"
#include "store/store.h"
#include "util/error.h"

struct wharf;

#define PARTNERS_MAX 1024
#define PARTNER_CERTS_MAX 8
#define PROFILE_KEYS_MAX 8

/* Validate root's "profile" and "partners" (either may be absent) into
 * out->profile (JSON text) and out->partners. No I/O. 0 or -1 with err. */
int partners_parse(const json_t *root, struct store_flow *out,
                   struct error *err);

/* Whether f has a partner called name (for connectors that name one). */
int partners_has(const struct store_flow *f, const char *name);

/* Import time: read every certificate and key f's profile and partners
 * give (origin: the API may not name files), into f->certs (keys sealed by
 * w's vault; {"sealed": ID} keeps the key st holds), and rewrite f->profile
 * and each partner's config in the stored form (see above). 0 or -1 with
 * err naming the file and what is wrong with it (never key bytes). */
int partners_load(struct wharf *w, struct store *st, struct store_flow *f,
                  enum flow_origin origin, struct error *err);

/* ---- listing and adding (CLI and API) ---------------------------------- */
struct store;
struct store_cert;

/* One certificate as JSON: id, owner ("(profile)" or the partner), subject,
 * validity, status (valid | expiring (< 30 days) | expired | not yet
 * valid), days_left, use_from, private_key. Caller decrefs. */
json_t *partners_cert_json(const struct store_cert *c, int64_t now_ms);
/* Every certificate, as a JSON array; NULL with err. */
json_t *partners_certs_json(struct store *st, struct error *err);
/* {"profile":..,"partners":[..]} as imported; NULL with err. */
json_t *partners_list_json(struct store *st, struct error *err);
/* PEM of the certificate whose id starts with id (>= 8 hex characters);
 * malloc'ed, NULL with err. Never a private key. */
char *partners_cert_pem(struct store *st, const char *id, struct error *err);

/* Add a certificate without re-importing the flow: partner != NULL: entry
 * is a certificates[] item of that partner; NULL: entry is a profile.keys[]
 * item (its key is sealed). The entry is appended to the stored JSON too,
 * so an export names it. 0 or -1 with err. */
int partners_cert_import(struct wharf *w, struct store *st,
                         const char *partner, const json_t *entry,
                         enum flow_origin origin, struct error *err);

#endif
