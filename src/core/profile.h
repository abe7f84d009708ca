/*
 * profile.h - the runtime view of the AS2 profile and partners (M7): what
 * the as2 connector needs to send and receive, loaded from the store with
 * the private keys as vault handle keys (they never leave the vault). partners.h is the document half
 * (validation, import); this is the half that uses what was imported.
 *
 * Certificate rollover: a partner has several certificates. All of them
 * verify signatures; for encrypting, profile_partner_send_cert() picks the
 * newest one whose use_from has come (or the newest without a use_from).
 * The profile has several keys; all of them decrypt (the sender may still
 * use the old certificate), profile_sign_key() signs with the newest one
 * that is valid now.
 */
#ifndef WHARF_PROFILE_H
#define WHARF_PROFILE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "util/error.h"

struct wharf;
struct store;

struct profile_key {
    EVP_PKEY *key;              /* owned; a vault handle key (vault/keyop.h):
                                   public half + reference, it signs and
                                   decrypts through the vault */
    X509 *cert;                 /* owned */
    int64_t not_before, not_after;
};

struct profile {
    char *as2_id;               /* owned */
    struct profile_key *keys;   /* owned, newest (not_after) last */
    size_t nkeys;
};

struct partner_cert {
    X509 *cert;                 /* owned */
    int64_t not_before, not_after, use_from;
};

struct partner {
    char *name, *as2_id, *url;  /* owned */
    json_t *config;             /* owned reference: the imported object */
    struct partner_cert *certs; /* owned, oldest first */
    size_t ncerts;
};

/* The local profile; 1 when loaded, 0 when the flow has none, -1 on error.
 * Free with profile_clear. */
int profile_load(struct wharf *w, struct store *st, struct profile *out,
                 struct error *err);
void profile_clear(struct profile *p);

/* The key to sign with at now_ms (newest valid), or NULL. */
const struct profile_key *profile_sign_key(const struct profile *p,
                                           int64_t now_ms);

/* The partner called name (by_as2_id 0) or whose AS2 id is name
 * (by_as2_id 1): 1 when found, 0 when not, -1 on error. Free with
 * partner_clear. */
int partner_load(struct store *st, const char *name, int by_as2_id,
                 struct partner *out, struct error *err);
void partner_clear(struct partner *p);

/* The certificate to encrypt for at now_ms, or NULL. */
X509 *partner_send_cert(const struct partner *p, int64_t now_ms);

/* Config helpers: a string (def when absent) and a boolean of the
 * partner's imported object. */
const char *partner_str(const struct partner *p, const char *key,
                        const char *def);
int partner_bool(const struct partner *p, const char *key, int def);
/* An integer of the partner's object, def when absent. */
long long partner_int(const struct partner *p, const char *key,
                      long long def);

#endif
