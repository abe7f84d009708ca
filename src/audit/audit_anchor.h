/*
 * audit_anchor.h - the signed head anchor of the audit trail (R18), shared
 * by audit.c (which moves it after every append and checks it in verify)
 * and anchor.c (which reads, checks and writes it). Nothing outside
 * src/audit/ (and its tests: tests/unit/test_audit.c,
 * tests/fuzz/fuzz_audit_anchor.c) includes this file.
 *
 * The anchor is a small file outside the table it protects,
 * DIR/state/audit.head beside the database (in state/: serve's sandbox,
 * core/sandbox.h, lets it write nowhere in DIR itself), naming the newest
 * entry (seq and hash) with an
 * Ed25519 signature by the vault's audit key; see anchor.c for the format
 * and what it can and cannot prove.
 */
#ifndef WHARF_AUDIT_ANCHOR_H
#define WHARF_AUDIT_ANCHOR_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "util/error.h"
#include "vault/vault.h"

struct store;

#define AUDIT_ANCHOR_FILE AUDIT_HEAD_FILE
#define AUDIT_ANCHOR_OLD AUDIT_HEAD_OLD      /* DIR/audit.head before state/ */

struct audit_anchor {
    int64_t seq;                        /* the anchored entry */
    char hash[65];                      /* its hash, 64 lowercase hex */
    char key_id[VAULT_KEY_ID_LEN + 1];  /* the audit key that signed */
    char sig[2 * VAULT_SIG_LEN + 1];    /* the signature, hex */
};

enum audit_anchor_state {
    AUDIT_ANCHOR_NONE = 0,      /* no anchor file */
    AUDIT_ANCHOR_OK = 1,        /* read, well-formed, signature verified */
    AUDIT_ANCHOR_BAD = 2,       /* malformed or its signature fails */
};

/* The anchor path of st's database (DIR/state/audit.head) into out. -1
 * when the database has no file (nothing to anchor beside). */
int audit_anchor_path(struct store *st, char *out, size_t n);

/* Before the anchor at path is read or written: create its folder if
 * missing (given to the data dir's owner when root creates it, as SQLite
 * does with its journals) and move the DIR/audit.head of an older data
 * dir there when path has none. Best effort: a failure shows when the
 * anchor is read or written. */
void audit_anchor_place(const char *path);

/* Parse an anchor file's bytes data[0..len) into a (no signature check):
 * 0, or -1 unless they are exactly the canonical form of anchor.c.
 * Exposed for the fuzzer (tests/fuzz/fuzz_audit_anchor.c). */
int audit_anchor_parse(const char *data, size_t len, struct audit_anchor *a);

/* Read the anchor at path and check it with v. Returns an
 * audit_anchor_state (for AUDIT_ANCHOR_BAD, why in problem[0..n)), or -1
 * with err when it cannot be read. */
int audit_anchor_load(struct vault *v, const char *path,
                      struct audit_anchor *a, char *problem, size_t n,
                      struct error *err);

/* After a committed append or checkpoint: move the anchor to the trail's
 * head, under DIR/state/audit.head.lock. It is never moved away from an anchor
 * that is invalid or whose entry is no longer in the trail (that anchor is
 * the evidence `audit verify` reports). Failures are logged, not returned:
 * the entry is committed, and an anchor that lags is allowed. */
void audit_anchor_update(struct store *st, struct vault *v);

#endif
