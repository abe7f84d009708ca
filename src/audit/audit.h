/*
 * audit.h - the tamper-evident audit trail (R18).
 *
 * An append-only table; each entry holds the SHA-256 of the previous entry
 * (a hash chain over every field); every AUDIT_CHECKPOINT_EVERY entries, and
 * when audit_checkpoint() is called, the chain head is signed with the
 * keystore's Ed25519 audit key. `wharf audit verify` walks the chain and the
 * checkpoints and reports the first entry where it breaks.
 *
 * Every security-relevant action calls audit_append: logins (success and
 * failure, with address), logouts, MFA changes, bans, user/token/role
 * changes, connector and flow changes (who, what, a hash of before and
 * after), key rotation, payload downloads, resends, erasures, exports.
 * Details never contain a secret.
 */
#ifndef WHARF_AUDIT_H
#define WHARF_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

struct store;
struct vault;

#define AUDIT_CHECKPOINT_EVERY 64

/* Where the signed head anchor lives, relative to the data dir (the one
 * name: audit_anchor.h uses it; a backup carries and restores it), and
 * where data dirs made before state/ had it (moved on the next use). */
#define AUDIT_HEAD_FILE "state/audit.head"
#define AUDIT_HEAD_OLD "audit.head"

/* The bytes of a head anchor file naming entry (seq, hash), signed with
 * v's audit key, into buf[0..n) (*len: their length). A backup of a
 * PostgreSQL store anchors its snapshot's newest entry with it
 * (core/backup.c). 0, or -1 with err. */
int audit_anchor_sign(struct vault *v, int64_t seq, const char *hash,
                      char *buf, size_t n, size_t *len, struct error *err);

struct audit_event {
    const char *actor;      /* "user:alice", "token:ID", "cli", "system" */
    const char *address;    /* client address, or NULL */
    const char *action;     /* dotted name: "login.failure", "flow.import" ... */
    const char *target;     /* what it acted on, or NULL */
    const char *detail;     /* one line of context (no secrets), or NULL */
};

/* Append e (one transaction: read the head, insert, maybe checkpoint).
 * v may be NULL only in tests that do not checkpoint. */
int audit_append(struct store *st, struct vault *v,
                 const struct audit_event *e, struct error *err);

/* Called after every committed append, with the store it was written
 * through (no transaction open) and the entry: security/ turns bans,
 * locked logins and configuration changes into alerts (R19). Set once
 * before threads start; NULL: none. It must not fail the append. */
typedef void (*audit_observer_fn)(struct store *st, const struct audit_event *e);
void audit_set_observer(audit_observer_fn fn);

/* A node of a cluster: the trail of the PostgreSQL store at store_url is
 * anchored in this node's data dir, dir/state/audit.head (a SQLite
 * store's anchor is beside its database file, always). Each node's anchor
 * names the head as it read it after its own latest append or checkpoint:
 * it may lag the shared chain, never lead it. wharf_open calls it for a
 * shared store, wharf_close forgets it (NULL, NULL); one data dir per
 * process at a time, set before threads start. */
void audit_set_node_dir(const char *store_url, const char *dir);

/* Sign the current chain head now (if not already signed). */
int audit_checkpoint(struct store *st, struct vault *v, struct error *err);

struct audit_report {
    int64_t entries;        /* entries checked */
    int64_t checkpoints;    /* checkpoints checked */
    int64_t first_bad;      /* seq of the first bad entry, 0 when intact */
    char problem[512];      /* what is wrong there */
};

/* Verify the whole chain and every checkpoint. Returns 0 when intact, 1 when
 * broken (report says where and why), -1 on error. */
int audit_verify(struct store *st, struct vault *v, struct audit_report *r,
                 struct error *err);

#endif
