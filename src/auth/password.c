/*
 * password.c - password storage (R16) and the password policy.
 *
 * Owns the Argon2id parameters (auth.h: 64 MiB, 3 passes, 1 lane, 16-byte
 * random salt, 32-byte tag; OWASP's minimum today is 19 MiB / 2 passes),
 * the standard encoded form that is stored ("$argon2id$v=19$m=65536,t=3,
 * p=1$salt$tag"), the policy every new password passes, the bundled list
 * of common passwords (common_passwords.inc) and one-time passwords; and
 * the process-wide limit on concurrent Argon2id computations (each holds
 * 64 MiB: without a limit, wrong logins from a few addresses add up to
 * gigabytes, R22), a counting semaphore whose waiters give up after a
 * short wait.
 *
 * Must never: store or compare a password in any other form than Argon2id;
 * copy a password outside a struct secret (lower-cased copies for the
 * policy live in one too, and are wiped); name the password in an error;
 * run Argon2id without holding a slot.
 */
#include "auth/auth.h"

#include <argon2.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/id.h"
#include "util/secret.h"

#include "auth/common_passwords.inc"

#define NCOMMON (sizeof(COMMON_PASSWORDS) / sizeof(COMMON_PASSWORDS[0]))

bool auth_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* ---- the policy -------------------------------------------------------------- */

static int cmp_str(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

/* s is a NUL-terminated lower-case copy. */
static bool is_common(const char *s)
{
    return *s && bsearch(s, COMMON_PASSWORDS, NCOMMON,
                         sizeof(COMMON_PASSWORDS[0]), cmp_str) != NULL;
}

static bool is_decoration(unsigned char c)
{
    return isdigit(c) || ispunct(c) || c == ' ';
}

/* The common word inside: leading and trailing digits/symbols stripped
 * ("!Summer2024!" -> "summer"), in place. */
static char *strip_decoration(char *s)
{
    while (*s && is_decoration((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_decoration((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* s (length n) is k >= 2 copies of a unit that is short (<= 4) or itself
 * common ("abababababab", "passwordpassword"). */
static bool is_repetition(const char *s, size_t n)
{
    for (size_t unit = 1; unit <= n / 2; unit++) {
        if (n % unit != 0)
            continue;
        size_t i = unit;
        while (i < n && s[i] == s[i - unit])
            i++;
        if (i < n)
            continue;
        if (unit <= 4)
            return true;
        char buf[AUTH_PASSWORD_MAX / 2 + 1];
        memcpy(buf, s, unit);
        buf[unit] = '\0';
        bool common = is_common(buf);
        OPENSSL_cleanse(buf, unit);
        if (common)
            return true;
    }
    return false;
}

/* Every character one more (or one less) than the one before: "abcdef...",
 * "3456789012..." (digits wrap), "zyxw...". */
static bool is_sequence(const char *s, size_t n)
{
    for (int dir = -1; dir <= 1; dir += 2) {
        size_t i = 1;
        for (; i < n; i++) {
            int d = (unsigned char)s[i] - (unsigned char)s[i - 1];
            int wrap = isdigit((unsigned char)s[i]) &&
                       isdigit((unsigned char)s[i - 1]) && d == -9 * dir;
            if (d != dir && !wrap)
                break;
        }
        if (i == n)
            return true;
    }
    return false;
}

static size_t utf8_chars(const unsigned char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += (p[i] & 0xC0) != 0x80;
    return c;
}

/* The checks on the lower-cased copy low (length n). */
static int policy_lower(const char *name, char *low, size_t n,
                        struct error *err)
{
    if (name && *name && strcmp(low, name) == 0)
        return error_set(err, "the password must not be the user name"),
               AUTH_INVALID;
    if (name && strlen(name) >= 3 && strstr(low, name) != NULL)
        return error_set(err, "the password must not contain the user name"),
               AUTH_INVALID;
    if (is_repetition(low, n) || is_sequence(low, n))
        return error_set(err, "the password is a repeated pattern or a "
                         "sequence: choose a longer, less regular one"),
               AUTH_INVALID;
    if (is_common(low) || is_common(strip_decoration(low)))
        return error_set(err, "the password is in the list of common "
                         "passwords: choose another"), AUTH_INVALID;
    return AUTH_OK;
}

int auth_password_policy(const char *name, const struct secret *pw,
                         struct error *err)
{
    size_t n = secret_len(pw);
    const unsigned char *p = secret_data(pw);
    if (pw == NULL || utf8_chars(p, n) < AUTH_PASSWORD_MIN)
        return error_set(err, "the password must have at least %d "
                         "characters", AUTH_PASSWORD_MIN), AUTH_INVALID;
    if (n > AUTH_PASSWORD_MAX)
        return error_set(err, "the password must have at most %d bytes",
                         AUTH_PASSWORD_MAX), AUTH_INVALID;
    if (memchr(p, '\0', n) != NULL || memchr(p, '\n', n) != NULL)
        return error_set(err, "the password must not contain NUL or "
                         "newline characters"), AUTH_INVALID;
    struct secret *low = secret_from(p, n);
    if (low == NULL)
        return error_set(err, "out of memory"), AUTH_ERROR;
    char *l = (char *)secret_data_mut(low);
    for (size_t i = 0; i < n; i++)
        l[i] = (char)tolower((unsigned char)l[i]);
    int rc = policy_lower(name, l, n, err);
    secret_free(low);
    return rc;
}

/* ---- slots: how many Argon2id computations run at once ----------------------------- */

static pthread_mutex_t slot_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static int slot_max = AUTH_PASSWORD_SLOTS, slot_used, slot_wait_ms =
    AUTH_PASSWORD_WAIT_MS;

void auth_password_limit(int slots, int wait_ms)
{
    pthread_mutex_lock(&slot_mu);
    slot_max = slots > 0 ? slots : 1;
    slot_wait_ms = wait_ms > 0 ? wait_ms : 0;
    pthread_cond_broadcast(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
}

/* The realtime clock wait_ms from now (pthread_cond_timedwait's clock). */
static struct timespec slot_deadline(int wait_ms)
{
    return time_deadline(wait_ms);
}

int auth_password_slot_take(void)
{
    pthread_mutex_lock(&slot_mu);
    struct timespec until = slot_deadline(slot_wait_ms);
    int timed_out = 0;
    while (slot_used >= slot_max && !timed_out)
        timed_out = pthread_cond_timedwait(&slot_cv, &slot_mu, &until) != 0 &&
                    slot_used >= slot_max;
    if (!timed_out)
        slot_used++;
    pthread_mutex_unlock(&slot_mu);
    return timed_out ? -1 : 0;
}

void auth_password_slot_give(void)
{
    pthread_mutex_lock(&slot_mu);
    if (slot_used > 0)
        slot_used--;
    pthread_cond_signal(&slot_cv);
    pthread_mutex_unlock(&slot_mu);
}

/* ---- Argon2id ------------------------------------------------------------------ */

int auth_password_hash(const struct secret *pw, char **encoded,
                       struct error *err)
{
    unsigned char salt[AUTH_ARGON2_SALT];
    *encoded = NULL;
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return error_openssl(err, "random salt"), AUTH_ERROR;
    size_t len = argon2_encodedlen(AUTH_ARGON2_T, AUTH_ARGON2_M_KIB,
                                   AUTH_ARGON2_P, AUTH_ARGON2_SALT,
                                   AUTH_ARGON2_TAG, Argon2_id);
    char *enc = calloc(1, len + 1);
    if (enc == NULL)
        return error_set(err, "out of memory"), AUTH_ERROR;
    if (auth_password_slot_take() < 0) {
        free(enc);
        return error_set(err, "too many password checks at once: try again "
                         "in a second"), AUTH_BUSY;
    }
    int rc = argon2id_hash_encoded(AUTH_ARGON2_T, AUTH_ARGON2_M_KIB,
                                   AUTH_ARGON2_P, secret_data(pw),
                                   secret_len(pw), salt, sizeof(salt),
                                   AUTH_ARGON2_TAG, enc, len + 1);
    auth_password_slot_give();
    if (rc != ARGON2_OK) {
        free(enc);
        return error_set(err, "Argon2id hashing failed: %s",
                         argon2_error_message(rc)), AUTH_ERROR;
    }
    *encoded = enc;
    return AUTH_OK;
}

int auth_password_verify(const char *encoded, const struct secret *pw)
{
    if (encoded == NULL || pw == NULL ||
        strncmp(encoded, "$argon2id$", 10) != 0)
        return 0;
    if (auth_password_slot_take() < 0)
        return -1;
    int ok = argon2id_verify(encoded, secret_data(pw), secret_len(pw)) ==
             ARGON2_OK;
    auth_password_slot_give();
    return ok;
}

/* ---- one-time passwords ---------------------------------------------------------- */

/* 32 symbols, no look-alikes (no l, o, 0, 1): 5 bits per character. */
static const char OTP_ALPHABET[] = "abcdefghijkmnpqrstuvwxyz23456789";

struct secret *auth_password_generate(void)
{
    unsigned char rnd[20];
    struct secret *s = secret_new(23);      /* xxxxx-xxxxx-xxxxx-xxxxx */
    if (s == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        secret_free(s);
        return NULL;
    }
    char *o = (char *)secret_data_mut(s);
    for (int i = 0, k = 0; i < 20; i++) {
        if (i > 0 && i % 5 == 0)
            o[k++] = '-';
        o[k++] = OTP_ALPHABET[rnd[i] & 31];
    }
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return s;
}
