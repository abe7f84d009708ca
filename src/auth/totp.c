/*
 * totp.c - the second factor (R13, R17): TOTP (RFC 6238 over RFC 4226 HOTP,
 * HMAC-SHA-1, 6 digits, 30-second steps, +-1 step accepted) and recovery
 * codes.
 *
 * Owns enrolment (a 160-bit seed sealed by the vault with context
 * "totp:NAME", an otpauth:// URI for the authenticator app, enabled only
 * after a first correct code), the check of a code (a step at or before the
 * last accepted one is refused, atomically in the store, so every code works
 * once), the 10 recovery codes (80 random bits each, shown once, stored as
 * SHA-256 of "wharf-recovery:USER_ID:code", each usable once) and the
 * setting that makes TOTP mandatory (administrators by default).
 *
 * Must never: keep a seed, URI or recovery code outside a struct secret or
 * the vault's sealed blob; log, audit or put one in an error message;
 * accept a code twice.
 */
#include "auth/auth_internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/secret.h"
#include "vault/vault.h"

#define RECOVERY_CHARS 16           /* 80 bits: 16 x 5 */
#define RECOVERY_SHOWN 19           /* xxxx-xxxx-xxxx-xxxx */

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/* Recovery codes use the look-alike-free alphabet of one-time passwords. */
static const char RC_ALPHABET[] = "abcdefghijkmnpqrstuvwxyz23456789";

/* ---- RFC 4226 / 6238 --------------------------------------------------------------- */

uint32_t totp_code(const unsigned char *key, size_t keylen, uint64_t step,
                   int digits)
{
    unsigned char msg[8], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    for (int i = 7; i >= 0; i--, step >>= 8)
        msg[i] = (unsigned char)(step & 0xff);
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), md, &mdlen) ==
            NULL || mdlen < 20)
        return UINT32_MAX;          /* never a valid code */
    unsigned off = md[mdlen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(md[off] & 0x7f) << 24) |
                   ((uint32_t)md[off + 1] << 16) |
                   ((uint32_t)md[off + 2] << 8) | md[off + 3];
    OPENSSL_cleanse(md, sizeof(md));
    uint32_t mod = 1;
    for (int i = 0; i < digits && i < 9; i++)
        mod *= 10;
    return bin % mod;
}

int totp_base32(const unsigned char *in, size_t n, char *out, size_t outsz)
{
    size_t need = (n * 8 + 4) / 5;
    if (outsz < need + 1)
        return -1;
    uint32_t buf = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[k++] = B32[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[k++] = B32[(buf << (5 - bits)) & 31];
    out[k] = '\0';
    return 0;
}

/* ---- the seed ---------------------------------------------------------------------- */

static void seed_context(const char *name, char *ctx, size_t n)
{
    snprintf(ctx, n, "totp:%s", name);
}

static struct secret *seed_open(struct auth *a, const struct store_user *u,
                                struct error *err)
{
    char ctx[AUTH_NAME_MAX + 8];
    if (a->vault == NULL || u->totp_sealed == NULL) {
        error_set(err, "no TOTP seed for %s", u->name);
        return NULL;
    }
    seed_context(u->name, ctx, sizeof(ctx));
    return vault_unseal(a->vault, ctx, u->totp_sealed, u->totp_sealed_len,
                        err);
}

/* "otpauth://totp/Wharf:NAME?secret=B32&issuer=Wharf&..." assembled in a
 * secret (the base32 seed never passes through a format function). */
static struct secret *otpauth_uri(const char *name, const struct secret *seed)
{
    char head[160];
    static const char tail[] = "&issuer=" AUTH_ISSUER
                               "&algorithm=SHA1&digits=6&period=30";
    snprintf(head, sizeof(head), "otpauth://totp/" AUTH_ISSUER ":%s?secret=",
             name);
    size_t hl = strlen(head), bl = (secret_len(seed) * 8 + 4) / 5;
    size_t tl = sizeof(tail) - 1;
    struct secret *uri = secret_new(hl + bl + tl);
    struct secret *b32 = secret_new(bl + 1);
    if (uri && b32 &&
        totp_base32(secret_data(seed), secret_len(seed),
                    (char *)secret_data_mut(b32), bl + 1) == 0) {
        unsigned char *o = secret_data_mut(uri);
        memcpy(o, head, hl);
        memcpy(o + hl, secret_data(b32), bl);
        memcpy(o + hl + bl, tail, tl);
        secret_free(b32);
        return uri;
    }
    secret_free(b32);
    secret_free(uri);
    return NULL;
}

/* ---- checking a code ------------------------------------------------------------------ */

static bool six_digits(const struct secret *code)
{
    const unsigned char *c = secret_data(code);
    if (secret_len(code) != TOTP_DIGITS)
        return false;
    for (int i = 0; i < TOTP_DIGITS; i++)
        if (c[i] < '0' || c[i] > '9')
            return false;
    return true;
}

static uint32_t code_value(const struct secret *code)
{
    uint32_t v = 0;
    for (int i = 0; i < TOTP_DIGITS; i++)
        v = v * 10 + (uint32_t)(secret_data(code)[i] - '0');
    return v;
}

/* The step in now-1..now+1 whose code is `want`, or -1. All three codes
 * are computed whatever matches, and compared without branching early. */
static int64_t matching_step(const struct secret *seed, uint32_t want,
                             int64_t now_ms)
{
    int64_t now = now_ms / 1000 / TOTP_PERIOD, found = -1;
    for (int64_t s = now - TOTP_WINDOW; s <= now + TOTP_WINDOW; s++) {
        uint32_t c = totp_code(secret_data(seed), secret_len(seed),
                               (uint64_t)s, TOTP_DIGITS);
        uint32_t diff = c ^ want;
        found = diff == 0 && found < 0 ? s : found;
    }
    return found;
}

static int totp_check(struct auth *a, const struct store_user *u,
                      const struct secret *code, const char **reason,
                      struct error *err)
{
    struct secret *seed = seed_open(a, u, err);
    if (seed == NULL)
        return AUTH_ERROR;
    int64_t step = matching_step(seed, code_value(code), auth_now(a));
    secret_free(seed);
    if (step < 0) {
        *reason = "wrong code";
        return error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED;
    }
    int rc = store_user_totp_step(a->st, u->id, step, err);
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1) {
        *reason = "reused code";
        return error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED;
    }
    return AUTH_OK;
}

/* ---- recovery codes ------------------------------------------------------------------- */

/* Hash of a normalized code (16 chars of RC_ALPHABET) for user_id. */
static void recovery_hash(int64_t user_id, const char *norm,
                          char out[STORE_HASH_HEX + 1])
{
    char buf[64 + RECOVERY_CHARS];
    int n = snprintf(buf, sizeof(buf), "wharf-recovery:%lld:",
                     (long long)user_id);
    memcpy(buf + n, norm, RECOVERY_CHARS);
    auth_sha256_hex(buf, (size_t)n + RECOVERY_CHARS, out);
    OPENSSL_cleanse(buf, sizeof(buf));
}

/* Ten new codes for user: *shown gets them one per line, hashes[] their
 * hashes. */
static int recovery_make(int64_t user_id, struct secret **shown,
                         char hashes[][STORE_HASH_HEX + 1], struct error *err)
{
    unsigned char rnd[AUTH_RECOVERY_CODES * RECOVERY_CHARS];
    *shown = secret_new(AUTH_RECOVERY_CODES * (RECOVERY_SHOWN + 1) - 1);
    if (*shown == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        secret_free(*shown);
        *shown = NULL;
        return error_openssl(err, "random recovery codes"), AUTH_ERROR;
    }
    char *o = (char *)secret_data_mut(*shown);
    for (int c = 0; c < AUTH_RECOVERY_CODES; c++) {
        char norm[RECOVERY_CHARS];
        for (int i = 0; i < RECOVERY_CHARS; i++) {
            norm[i] = RC_ALPHABET[rnd[c * RECOVERY_CHARS + i] & 31];
            if (i > 0 && i % 4 == 0)
                *o++ = '-';
            *o++ = norm[i];
        }
        if (c + 1 < AUTH_RECOVERY_CODES)
            *o++ = '\n';
        recovery_hash(user_id, norm, hashes[c]);
        OPENSSL_cleanse(norm, sizeof(norm));
    }
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return AUTH_OK;
}

static int recovery_new(struct auth *a, int64_t user_id,
                        struct secret **shown, struct error *err)
{
    char hashes[AUTH_RECOVERY_CODES][STORE_HASH_HEX + 1];
    const char *ptrs[AUTH_RECOVERY_CODES];
    if (recovery_make(user_id, shown, hashes, err) != AUTH_OK)
        return AUTH_ERROR;
    for (int i = 0; i < AUTH_RECOVERY_CODES; i++)
        ptrs[i] = hashes[i];
    if (store_recovery_replace(a->st, user_id, ptrs, AUTH_RECOVERY_CODES,
                               auth_now(a), err) < 0) {
        secret_free(*shown);
        *shown = NULL;
        return AUTH_ERROR;
    }
    return AUTH_OK;
}

/* The code as typed, lower-cased, '-' and spaces dropped, into norm.
 * false when it is not 16 characters of the alphabet. */
static bool recovery_normalize(const struct secret *code,
                               char norm[RECOVERY_CHARS])
{
    const unsigned char *c = secret_data(code);
    size_t k = 0;
    for (size_t i = 0; i < secret_len(code); i++) {
        unsigned char ch = c[i];
        if (ch == '-' || ch == ' ')
            continue;
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch + 32);
        if (k == RECOVERY_CHARS || strchr(RC_ALPHABET, ch) == NULL || !ch)
            return false;
        norm[k++] = (char)ch;
    }
    return k == RECOVERY_CHARS;
}

static int recovery_check(struct auth *a, const struct auth_actor *who,
                          const struct store_user *u,
                          const struct secret *code, const char **reason,
                          struct error *err)
{
    char norm[RECOVERY_CHARS], hash[STORE_HASH_HEX + 1];
    bool ok = recovery_normalize(code, norm);
    if (ok)
        recovery_hash(u->id, norm, hash);
    OPENSSL_cleanse(norm, sizeof(norm));
    int rc = ok ? store_recovery_consume(a->st, u->id, hash, auth_now(a),
                                         err) : 1;
    if (rc < 0)
        return AUTH_ERROR;
    if (rc == 1) {
        *reason = ok ? "wrong or used recovery code" : "malformed code";
        return error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED;
    }
    char detail[64];
    snprintf(detail, sizeof(detail), "codes_left=%lld",
             (long long)store_recovery_left(a->st, u->id, NULL));
    return auth_audit(a, who, "mfa.recovery_used", u->name, detail, err);
}

int auth_mfa_check(struct auth *a, const struct auth_actor *who,
                   const struct store_user *u, const struct secret *code,
                   int *used_recovery, const char **reason, struct error *err)
{
    const char *why = NULL;
    int recovery = code != NULL && !six_digits(code);
    int rc;
    if (!u->totp_enabled) {
        why = "TOTP not enabled";
        rc = (error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED);
    } else if (code == NULL || secret_len(code) == 0) {
        why = "no code";
        rc = (error_set(err, AUTH_MSG_LOGIN), AUTH_DENIED);
    } else {
        rc = recovery ? recovery_check(a, who, u, code, &why, err)
                      : totp_check(a, u, code, &why, err);
    }
    if (used_recovery)
        *used_recovery = rc == AUTH_OK && recovery;
    if (reason)
        *reason = why;
    return rc;
}

/* ---- enrolment ---------------------------------------------------------------------------- */

static int enroll_store(struct auth *a, const struct store_user *u,
                        const struct secret *seed, struct error *err)
{
    char ctx[AUTH_NAME_MAX + 8];
    unsigned char *blob = NULL;
    size_t len = 0;
    seed_context(u->name, ctx, sizeof(ctx));
    if (vault_seal(a->vault, ctx, seed, &blob, &len, err) < 0)
        return AUTH_ERROR;
    int rc = store_user_set_totp(a->st, u->id, blob, len, auth_now(a), err);
    free(blob);
    if (rc != 0)
        return rc < 0 ? AUTH_ERROR
                      : (error_set(err, "no such user: %s", u->name),
                         AUTH_NOT_FOUND);
    if (store_recovery_clear(a->st, u->id, err) < 0)
        return AUTH_ERROR;
    return AUTH_OK;
}

static int enroll_user(struct auth *a, const struct store_user *u,
                       struct secret **uri, struct error *err)
{
    if (u->totp_enabled)
        return error_set(err, "TOTP is already enabled for %s: disable it "
                         "first", u->name), AUTH_CONFLICT;
    if (a->vault == NULL)
        return error_set(err, "internal: TOTP enrolment needs the vault"),
               AUTH_ERROR;
    struct secret *seed = secret_new(TOTP_SECRET_LEN);
    if (seed == NULL || RAND_bytes(secret_data_mut(seed), TOTP_SECRET_LEN) != 1) {
        secret_free(seed);
        return error_openssl(err, "random TOTP seed"), AUTH_ERROR;
    }
    int rc = enroll_store(a, u, seed, err);
    if (rc == AUTH_OK && (*uri = otpauth_uri(u->name, seed)) == NULL)
        rc = (error_set(err, "out of memory"), AUTH_ERROR);
    secret_free(seed);
    return rc;
}

int auth_totp_enroll(struct auth *a, const struct auth_actor *who,
                     const char *name, struct secret **uri, struct error *err)
{
    struct store_user u;
    *uri = NULL;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK)
        rc = enroll_user(a, &u, uri, err);
    if (rc == AUTH_OK)
        rc = auth_audit(a, who, "mfa.enroll_start", name, NULL, err);
    if (rc != AUTH_OK) {
        secret_free(*uri);
        *uri = NULL;
    }
    store_user_clear(&u);
    return rc;
}

static int confirm_user(struct auth *a, const struct store_user *u,
                        const struct secret *code, struct secret **codes,
                        const char **why, struct error *err)
{
    if (u->totp_enabled)
        return error_set(err, "TOTP is already enabled for %s", u->name),
               AUTH_CONFLICT;
    if (u->totp_sealed == NULL)
        return error_set(err, "no TOTP enrolment in progress for %s: enroll "
                         "first", u->name), AUTH_CONFLICT;
    if (code == NULL || !six_digits(code)) {
        *why = "malformed code";
        return error_set(err, "the code must be the %d digits the "
                         "authenticator shows", TOTP_DIGITS), AUTH_DENIED;
    }
    int rc = totp_check(a, u, code, why, err);
    if (rc == AUTH_DENIED)  /* the user is enrolling: say what went wrong */
        error_set(err, "%s: check the authenticator app and its clock",
                  *why ? *why : "wrong code");
    if (rc != AUTH_OK)
        return rc;
    int st = store_user_enable_totp(a->st, u->id, auth_now(a), err);
    if (st != 0)
        return st < 0 ? AUTH_ERROR
                      : (error_set(err, "the TOTP enrolment of %s changed "
                                   "meanwhile", u->name), AUTH_CONFLICT);
    return recovery_new(a, u->id, codes, err);
}

int auth_totp_confirm(struct auth *a, const struct auth_actor *who,
                      const char *name, const struct secret *code,
                      struct secret **codes, struct error *err)
{
    struct store_user u;
    const char *why = NULL;
    *codes = NULL;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK)
        rc = confirm_user(a, &u, code, codes, &why, err);
    if (rc == AUTH_OK)
        rc = auth_audit(a, who, "mfa.enroll", name, "recovery_codes=10", err);
    else if (rc == AUTH_DENIED) {
        struct error e2 = {0};
        auth_audit(a, who, "mfa.enroll_failure", name, why, &e2);
    }
    if (rc != AUTH_OK) {
        secret_free(*codes);
        *codes = NULL;
    }
    store_user_clear(&u);
    return rc;
}

int auth_totp_disable(struct auth *a, const struct auth_actor *who,
                      const char *name, struct error *err)
{
    struct store_user u;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK && u.totp_sealed == NULL && !u.totp_enabled)
        rc = (error_set(err, "TOTP is not enabled for %s", name),
              AUTH_CONFLICT);
    if (rc == AUTH_OK &&
        (store_user_set_totp(a->st, u.id, NULL, 0, auth_now(a), err) < 0 ||
         store_recovery_clear(a->st, u.id, err) < 0))
        rc = AUTH_ERROR;
    if (rc == AUTH_OK)
        rc = auth_audit(a, who, "mfa.disable", name, NULL, err);
    store_user_clear(&u);
    return rc;
}

int auth_recovery_regenerate(struct auth *a, const struct auth_actor *who,
                             const char *name, struct secret **codes,
                             struct error *err)
{
    struct store_user u;
    *codes = NULL;
    int rc = auth_user_load(a, name, &u, err);
    if (rc == AUTH_OK && !u.totp_enabled)
        rc = (error_set(err, "TOTP is not enabled for %s", name),
              AUTH_CONFLICT);
    if (rc == AUTH_OK)
        rc = recovery_new(a, u.id, codes, err);
    if (rc == AUTH_OK)
        rc = auth_audit(a, who, "mfa.recovery_regenerate", name,
                        "recovery_codes=10", err);
    if (rc != AUTH_OK) {
        secret_free(*codes);
        *codes = NULL;
    }
    store_user_clear(&u);
    return rc;
}

int auth_mfa_required(struct store *st, enum role role, struct error *err)
{
    int all = auth_setting_bool(st, "mfa_required_all", 0, 1, err);
    if (all != 0)
        return all;
    if (role != ROLE_ADMIN)
        return 0;
    return auth_setting_bool(st, "mfa_required_admin", 1, 1, err);
}
