/*
 * rotate.h - master key rotation of a data directory (R15), the work behind
 * `wharf key rotate`: the crash-safe protocol written at the top of
 * src/vault/keystore.c, step by step, so the command can report and audit
 * between the steps.
 *
 *   rotate_begin   step 1: a new active master key (or, when the keystore
 *                  still holds retired keys, the unfinished rotation is
 *                  taken up again under its active key);
 *   rotate_rewrap  steps 2 and 3: every payload header and every sealed
 *                  value of the database under the active key;
 *   rotate_finish  step 4: the retired keys dropped, only if nothing failed.
 *
 * The caller must hold the data dir's wharf.lock (no serve) and the vault's
 * exclusive keystore lock (vault_lock_exclusive: no other process has the
 * keystore in memory) for the whole rotation.
 *
 * Test hook (util/fault.h): the points "rotate.key_added" (after step 1 is
 * durable), "rotate.payload" (after each re-wrapped payload header),
 * "rotate.sealed" (after each re-sealed value, before its batch commits) and
 * "rotate.retire" (before step 4) let the crash tests kill -9 a rotation
 * anywhere.
 */
#ifndef WHARF_ROTATE_H
#define WHARF_ROTATE_H

#include "util/error.h"
#include "vault/vault.h"

struct wharf;
struct store;

#define ROTATE_IDS_MAX 1200         /* room for every key id, space-separated */
/* The setting naming the master key a cluster moved to at its last
 * rotation (PostgreSQL only, written by `wharf key rotate` once the new
 * key is active): `wharf serve` refuses a keystore whose active key is
 * another (an old copy, not replaced after a rotation on another node). */
#define ROTATE_CLUSTER_KEY "master_key_active"

struct rotate_report {
    /* set by the caller: told about each object that cannot be re-wrapped
     * (one sentence naming it, never a secret); may be NULL */
    void (*problem)(void *arg, const char *msg);
    void *arg;
    /* filled by the steps */
    int resumed;                        /* 1: an unfinished rotation */
    char active[VAULT_KEY_ID_LEN + 1];  /* the key everything ends under */
    char old[ROTATE_IDS_MAX];           /* the other keys, space-separated */
    long payloads, payloads_current, payloads_failed;
    long sealed, sealed_current, sealed_failed;
};

/* Step 1 (or the detection of an unfinished rotation). Fills resumed,
 * active and old. */
int rotate_begin(struct wharf *w, struct rotate_report *r, struct error *err);

/* Steps 2 and 3 through st. Per-object failures are counted and told to
 * r->problem; -1 only when the walk itself fails (err set). */
int rotate_rewrap(struct wharf *w, struct store *st, struct rotate_report *r,
                  struct error *err);

/* Step 4, unless a payload or sealed value failed (then the old keys stay,
 * so nothing becomes unreadable, and err says so). */
int rotate_finish(struct wharf *w, struct rotate_report *r, struct error *err);

#endif
