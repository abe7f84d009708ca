/*
 * rotate.c - master key rotation (R15): steps 1 to 4 of the protocol at the
 * top of src/vault/keystore.c over one data directory: the keystore, every
 * payload file of the messages table, and every sealed value of the
 * database (sealed_store.h lists profile keys, connector secrets and state,
 * TOTP seeds, the data of jobs; the OIDC client secret and the credentials
 * of notifications are settings).
 *
 * Each sealed value is opened with the context its owner sealed it for and
 * sealed again under the active key (vault_reseal): the contexts are those
 * of core/partners.c and core/profile.c ("profile-key:ID"),
 * core/conn_secrets.c and core/env.c ("connector:NAME:ROW"), core/jobs.c
 * ("job:ID:data", "job:ID:input"; a job value its kind keeps in the
 * clear, core/jobs.h, is left as it is), auth/totp.c ("totp:USER"),
 * cli/oidc.c + api/api_oidc.c ("oidc:client_secret") and
 * security/notify.c ("notify:email", "notify:webhook"); and one file,
 * the data dir's sealed store password (core/dbpass.c, "store:password").
 * The payloads are re-wrapped where they are kept (core/payloads.h: a
 * file's header, or the header row of payload_dir = database). A context that
 * did not match would fail to open, be counted as failed, and keep the old
 * key: rotation never makes a value unreadable.
 *
 * Owns nothing beyond a call (listed rows are freed batch by batch). It
 * must never put a secret in a problem message or an error (names, ids and
 * key ids only), drop a key while anything failed, or write a value that
 * changed since it was listed (the store compares before it writes).
 */
#include "core/rotate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/dbpass.h"
#include "core/jobs.h"
#include "core/payloads.h"
#include "core/wharf.h"
#include "store/sealed_store.h"
#include "store/store.h"
#include "util/fault.h"

#define ROTATE_BATCH 32                 /* sealed values per transaction */
/* Settings that hold a sealed value as hex, with their seal contexts:
 * the OIDC client secret (cli/oidc.c, api/api_oidc.c) and the
 * credentials of notifications (security/notify.c). */
static const struct { const char *key, *context; } ROTATE_SETTINGS[] = {
    { "oidc_client_secret", "oidc:client_secret" },
    { "notify_email_credentials", "notify:email" },
    { "notify_webhook_secret", "notify:webhook" },
};

struct rotate_walk {
    struct wharf *w;
    struct rotate_report *r;
    long wanted;                        /* re-sealed in the current batch */
};

static void rotate_problem(struct rotate_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rotate_problem(struct rotate_report *r, const char *fmt, ...)
{
    char msg[ERROR_MSG_MAX + 200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->problem != NULL)
        r->problem(r->arg, msg);
}

/* ---- step 1 ----------------------------------------------------------------- */

/* r->old: every key id of the vault but the active one. */
static void rotate_old_ids(const struct vault *v, struct rotate_report *r)
{
    size_t len = 0;
    r->old[0] = '\0';
    for (size_t i = 0; i < vault_key_count(v); i++) {
        const char *id = vault_key_id(v, i);
        if (strcmp(id, vault_active_id(v)) == 0 ||
            len + VAULT_KEY_ID_LEN + 2 > sizeof(r->old))
            continue;
        len += (size_t)snprintf(r->old + len, sizeof(r->old) - len, "%s%s",
                                len ? " " : "", id);
    }
}

int rotate_begin(struct wharf *w, struct rotate_report *r, struct error *err)
{
    r->resumed = vault_key_count(w->vault) > 1;
    if (!r->resumed) {
        if (vault_rotate(w->vault, w->keystore_path, err) < 0)
            return -1;
        fault_point("rotate.key_added");
    }
    snprintf(r->active, sizeof(r->active), "%s", vault_active_id(w->vault));
    rotate_old_ids(w->vault, r);
    return 0;
}

/* ---- step 2: payload headers -------------------------------------------------- */

static int rotate_payload(const struct store_message *m, void *arg)
{
    struct rotate_walk *k = arg;
    struct error err = {0};
    int rc = wharf_payload_rewrap(k->w, m->payload_path, m->id, &err);
    if (rc == 2)
        return 0;               /* erased or purged: nothing to re-wrap */
    if (rc < 0) {
        k->r->payloads_failed++;
        rotate_problem(k->r, "%s", err.msg);
    } else if (rc == 1) {
        k->r->payloads++;
        fault_point("rotate.payload");
    } else {
        k->r->payloads_current++;
    }
    return 0;
}

/* ---- step 3: sealed values ---------------------------------------------------- */

/* The context row was sealed with (see the top of this file). */
static void rotate_context(const struct store_sealed *row, char *out,
                           size_t n)
{
    switch (row->kind) {
    case STORE_SEALED_PROFILE_KEY:
        snprintf(out, n, "profile-key:%s", row->name);
        break;
    case STORE_SEALED_CONNECTOR:
        snprintf(out, n, "connector:%s:%s", row->owner, row->name);
        break;
    case STORE_SEALED_JOB_DATA:
        snprintf(out, n, "job:%s:data", row->name);
        break;
    case STORE_SEALED_JOB_INPUT:
        snprintf(out, n, "job:%s:input", row->name);
        break;
    default:
        snprintf(out, n, "totp:%s", row->owner);
        break;
    }
}

/* store_sealed_fn: re-seal one value; a value that does not open is
 * counted, told and left as it is. */
static int rotate_reseal(void *arg, const struct store_sealed *row,
                         unsigned char **blob, size_t *len,
                         struct error *err)
{
    struct rotate_walk *k = arg;
    struct error e = {0};
    char ctx[600];
    (void)err;
    if ((row->kind == STORE_SEALED_JOB_DATA ||
         row->kind == STORE_SEALED_JOB_INPUT) &&
        jobs_value_clear(row->blob, row->len))
        return 0;               /* a job's value kept in the clear */
    rotate_context(row, ctx, sizeof(ctx));
    int rc = vault_reseal(k->w->vault, ctx, row->blob, row->len, blob, len,
                          &e);
    if (rc < 0) {
        k->r->sealed_failed++;
        rotate_problem(k->r, "%s", e.msg);
        return 0;
    }
    if (rc == 0) {
        k->r->sealed_current++;
        return 0;
    }
    k->wanted++;
    fault_point("rotate.sealed");
    return 1;
}

/* Re-seal rows[0..n) in batches, each one committed transaction. */
static int rotate_rows(struct store *st, struct rotate_walk *k,
                       const struct store_sealed *rows, size_t n,
                       struct error *err)
{
    for (size_t i = 0; i < n; i += ROTATE_BATCH) {
        size_t m = n - i < ROTATE_BATCH ? n - i : ROTATE_BATCH, done = 0;
        k->wanted = 0;
        if (store_sealed_rewrite(st, rows + i, m, rotate_reseal, k, &done,
                                 err) < 0)
            return -1;
        k->r->sealed += (long)done;
        if ((long)done < k->wanted) {
            k->r->sealed_failed += k->wanted - (long)done;
            rotate_problem(k->r, "%ld sealed value(s) changed while being "
                           "re-sealed; they were left as they are",
                           k->wanted - (long)done);
        }
    }
    return 0;
}

static int rotate_kind(struct store *st, struct rotate_walk *k,
                       enum store_sealed_kind kind, struct error *err)
{
    struct store_sealed *rows = NULL;
    size_t n = 0;
    if (store_sealed_list(st, kind, &rows, &n, err) < 0)
        return -1;
    int rc = rotate_rows(st, k, rows, n, err);
    store_sealed_free(rows, n);
    return rc;
}

/* Hex text of blob[0..n) (lowercase, as cli/oidc.c writes it); caller
 * frees. */
static char *rotate_hex(const unsigned char *blob, size_t n)
{
    char *hex = malloc(2 * n + 1);
    for (size_t i = 0; hex != NULL && i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", blob[i]);
    if (hex != NULL)
        hex[2 * n] = '\0';
    return hex;
}

/* Re-seal the blob held as hex text in hex; the new hex into *out. 1,
 * 0 when already current, -1 (err) when it does not open. */
static int rotate_reseal_hex(struct vault *v, const char *key,
                             const char *context, const char *hex,
                             char **out, struct error *err)
{
    long n = 0;
    unsigned char *blob = OPENSSL_hexstr2buf(hex, &n);
    unsigned char *fresh = NULL;
    size_t flen = 0;
    *out = NULL;
    int rc = blob == NULL ? error_set(err, "setting %s is not a sealed "
                                      "value (bad hex)", key)
        : vault_reseal(v, context, blob, (size_t)n, &fresh, &flen, err);
    if (rc == 1 && (*out = rotate_hex(fresh, flen)) == NULL)
        rc = error_set(err, "out of memory");
    OPENSSL_free(blob);
    free(fresh);
    return rc;
}

/* A setting holding a sealed blob as hex (ROTATE_SETTINGS[i]). */
static int rotate_setting(struct store *st, struct rotate_walk *k, size_t i,
                          struct error *err)
{
    char *hex = NULL, *fresh = NULL;
    struct error e = {0};
    if (store_setting_get(st, ROTATE_SETTINGS[i].key, &hex, err) < 0)
        return -1;
    if (hex == NULL)
        return 0;                       /* not configured */
    int rc = rotate_reseal_hex(k->w->vault, ROTATE_SETTINGS[i].key,
                               ROTATE_SETTINGS[i].context, hex, &fresh, &e);
    free(hex);
    if (rc <= 0) {
        if (rc < 0)
            rotate_problem(k->r, "%s", e.msg);
        *(rc < 0 ? &k->r->sealed_failed : &k->r->sealed_current) += 1;
        return 0;
    }
    fault_point("rotate.sealed");
    rc = store_setting_set(st, ROTATE_SETTINGS[i].key, fresh, err);
    free(fresh);
    if (rc < 0)
        return -1;
    k->r->sealed++;
    return 0;
}

/* The data dir's sealed store password (core/dbpass.h), a file. */
static void rotate_store_password(struct rotate_walk *k)
{
    struct error e = {0};
    int rc = dbpass_reseal(k->w->vault, k->w->dir, &e);
    if (rc < 0) {
        k->r->sealed_failed++;
        rotate_problem(k->r, "%s", e.msg);
    } else if (rc == 1) {
        k->r->sealed++;
        fault_point("rotate.sealed");
    }
}

int rotate_rewrap(struct wharf *w, struct store *st, struct rotate_report *r,
                  struct error *err)
{
    struct rotate_walk k = { .w = w, .r = r };
    if (store_message_each(st, rotate_payload, &k, err) < 0)
        return -1;
    for (int kind = 0; kind < STORE_SEALED_KINDS; kind++)
        if (rotate_kind(st, &k, (enum store_sealed_kind)kind, err) < 0)
            return -1;
    for (size_t i = 0; i < sizeof(ROTATE_SETTINGS) / sizeof(ROTATE_SETTINGS[0]);
         i++)
        if (rotate_setting(st, &k, i, err) < 0)
            return -1;
    rotate_store_password(&k);
    return 0;
}

/* ---- step 4 ---------------------------------------------------------------- */

int rotate_finish(struct wharf *w, struct rotate_report *r, struct error *err)
{
    if (r->payloads_failed > 0 || r->sealed_failed > 0)
        return error_set(err, "%ld payload(s) and %ld sealed value(s) "
                         "(named above) could not be re-wrapped; old key(s) "
                         "%s kept so that they stay readable. Restore or "
                         "erase those payloads (POST /api/v1/messages/ID/"
                         "erase) and replace those secrets (import the flow "
                         "again, enrol TOTP again), then run `wharf key "
                         "rotate` again to finish", r->payloads_failed,
                         r->sealed_failed, r->old[0] ? r->old : "-");
    fault_point("rotate.retire");
    return vault_retire_old(w->vault, w->keystore_path, err);
}
