/*
 * audit.c - the tamper-evident audit trail (R18): appending hash-chained
 * entries, signing checkpoints, verifying the whole trail.
 *
 * Entry hash (SHA-256, stored as 64 lowercase hex digits) over this
 * canonical encoding, every field length-prefixed so that no two different
 * entries encode alike ("ab"+"c" != "a"+"bc", NULL != ""):
 *
 *   "wharf-audit-entry v1\n"
 *   seq          8 bytes, big endian
 *   at           8 bytes, big endian (ms since the epoch, two's complement)
 *   actor, address, action, target, detail, prev_hash, each as
 *                0x00 when NULL, else 0x01 || length (4 bytes, big endian)
 *                || the UTF-8 bytes
 *
 * prev_hash is the previous entry's hash; the first entry's is 64 zeros.
 * Entries are numbered 1, 2, 3 ... with no gaps. Every
 * AUDIT_CHECKPOINT_EVERY entries (in the transaction that appends the
 * entry) and whenever audit_checkpoint() is called (serve at start and on
 * a clean stop), the vault's Ed25519 audit key signs the text
 * "wharf-audit-checkpoint v1\n<seq>\n<hash>\n" of the head entry; the
 * signature is stored in audit_checkpoints as 128 hex digits with the key id.
 * In a cluster every node checkpoints at its start and stop: no
 * leadership needed, a head is signed once (under the chain's lock, a head
 * that has a checkpoint is skipped).
 *
 * audit_verify walks every entry in seq order, one page at a time (memory
 * does not grow with the trail), and reports the first problem:
 *   - a gap in seq (a deleted entry): "entry 17: missing ...";
 *   - prev_hash not equal to the previous entry's hash (an entry deleted,
 *     inserted or moved before it, with the rest renumbered);
 *   - a stored hash that does not match the entry's contents (an edit);
 *   - a checkpoint whose signature does not verify with an audit key of
 *     this keystore, or whose signed hash differs from the entry's hash at
 *     that seq (a chain rewritten with freshly computed hashes, which the
 *     hashes alone cannot reveal: only the key can sign);
 *   - a checkpoint beyond the last entry (entries deleted from the end
 *     back past a checkpoint).
 * The hash chain holds no secret, so entries deleted or rewritten after the
 * newest checkpoint would be indistinguishable from an honest tail. The
 * signed head anchor closes that window (anchor.c): after every committed
 * append (and checkpoint) the newest entry's seq and hash are signed into
 * DIR/state/audit.head, outside the table, and verify also reports
 *   - an anchored entry whose hash differs (the tail rewritten);
 *   - a trail that ends before the anchored entry (the newest entries
 *     deleted): "the newest entries were deleted: the signed head anchor
 *     names entry N (hash H), the trail ends at entry M";
 *   - an anchor that is missing (while the trail is not empty), malformed
 *     or not signed by an audit key of this keystore.
 * What remains (see anchor.c and docs/operations.md): entries appended
 * after the anchor was last written (only after a crash between the commit
 * and the anchor write), and an older, genuinely signed anchor file put
 * back by someone who can write the data dir.
 *
 * It owns nothing beyond a call (pages are freed as the walk moves on). It
 * must never put a secret in an entry (callers pass names, ids and hashes
 * only), never update or delete an entry, and never hold key material (the
 * vault signs and verifies).
 */
#include "audit/audit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "audit/audit_anchor.h"
#include "store/audit_store.h"
#include "util/id.h"
#include "vault/vault.h"

#define AUDIT_HASH_HEX 64
#define AUDIT_SIG_HEX (2 * VAULT_SIG_LEN)
#define AUDIT_FIELD_MAX 4096        /* bytes per field of a new entry */
#define AUDIT_PAGE 256              /* entries / checkpoints per read */
#define AUDIT_DOMAIN "wharf-audit-entry v1\n"
#define AUDIT_CP_DOMAIN "wharf-audit-checkpoint v1\n"

static char AUDIT_ZERO_HASH[AUDIT_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* ---- hashing ----------------------------------------------------------- */

static void audit_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

static int audit_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 1 when s is exactly n lowercase hex digits. */
static int audit_is_hex(const char *s, size_t n)
{
    if (s == NULL || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (audit_hexval(s[i]) < 0)
            return 0;
    return 1;
}

static int audit_put_be(EVP_MD_CTX *md, uint64_t v, size_t n)
{
    unsigned char b[8];
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return EVP_DigestUpdate(md, b, n) == 1 ? 0 : -1;
}

static int audit_put_field(EVP_MD_CTX *md, const char *s)
{
    unsigned char tag = s != NULL;
    if (EVP_DigestUpdate(md, &tag, 1) != 1)
        return -1;
    if (s == NULL)
        return 0;
    size_t n = strlen(s);
    if (n > UINT32_MAX || audit_put_be(md, n, 4) != 0)
        return -1;
    return n == 0 || EVP_DigestUpdate(md, s, n) == 1 ? 0 : -1;
}

/* The hash of r (its hash field is ignored) as hex into out. */
static int audit_entry_hash(const struct store_audit_row *r,
                            char out[AUDIT_HASH_HEX + 1], struct error *err)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, AUDIT_DOMAIN, strlen(AUDIT_DOMAIN)) == 1 &&
             audit_put_be(ctx, (uint64_t)r->seq, 8) == 0 &&
             audit_put_be(ctx, (uint64_t)r->at, 8) == 0 &&
             audit_put_field(ctx, r->actor) == 0 &&
             audit_put_field(ctx, r->address) == 0 &&
             audit_put_field(ctx, r->action) == 0 &&
             audit_put_field(ctx, r->target) == 0 &&
             audit_put_field(ctx, r->detail) == 0 &&
             audit_put_field(ctx, r->prev_hash) == 0 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == sizeof(md);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return error_openssl(err, "cannot hash an audit entry");
    audit_hex(md, sizeof(md), out);
    return 0;
}

/* The signed text of a checkpoint into buf; its length, or -1 when the
 * hash is not 64 hex digits. */
static int audit_cp_text(int64_t seq, const char *hash, char *buf,
                         size_t bufsz)
{
    if (!audit_is_hex(hash, AUDIT_HASH_HEX))
        return -1;
    int n = snprintf(buf, bufsz, AUDIT_CP_DOMAIN "%" PRId64 "\n%s\n", seq,
                     hash);
    return n > 0 && (size_t)n < bufsz ? n : -1;
}

/* ---- appending and signing --------------------------------------------- */

struct audit_ctx {
    struct vault *v;
    char hash[AUDIT_HASH_HEX + 1];
    char key_id[VAULT_KEY_ID_LEN + 1];
    char sig[AUDIT_SIG_HEX + 1];
};

/* store_audit_sign_fn: sign cp->seq / cp->hash with the vault. */
static int audit_sign(void *arg, struct store_audit_checkpoint *cp,
                      struct error *err)
{
    struct audit_ctx *c = arg;
    char text[160];
    unsigned char sig[VAULT_SIG_LEN];
    int n = audit_cp_text(cp->seq, cp->hash, text, sizeof(text));
    if (n < 0)
        return error_set(err, "cannot sign audit checkpoint at %" PRId64
                         ": the entry's stored hash is malformed", cp->seq);
    if (vault_audit_sign(c->v, text, (size_t)n, sig, c->key_id, err) != 0) {
        error_prefix(err, "cannot sign audit checkpoint at %" PRId64,
                     cp->seq);
        return -1;
    }
    audit_hex(sig, sizeof(sig), c->sig);
    cp->at = time_now_ms();
    cp->key_id = c->key_id;
    cp->signature = c->sig;
    return 0;
}

/* store_audit_seal_fn: link, hash and maybe checkpoint a new entry. */
static int audit_seal(void *arg, struct store_audit_row *row,
                      struct store_audit_checkpoint *cp, int *checkpoint,
                      struct error *err)
{
    struct audit_ctx *c = arg;
    if (row->prev_hash == NULL)
        row->prev_hash = AUDIT_ZERO_HASH;
    if (audit_entry_hash(row, c->hash, err) != 0)
        return -1;
    row->hash = c->hash;
    if (c->v == NULL || row->seq % AUDIT_CHECKPOINT_EVERY != 0)
        return 0;
    *checkpoint = 1;
    cp->seq = row->seq;
    cp->hash = c->hash;
    return audit_sign(c, cp, err);
}

static int audit_field_ok(const char *name, const char *value, int required,
                          struct error *err)
{
    if (required && (value == NULL || value[0] == '\0'))
        return error_set(err, "audit entry has no %s", name);
    if (value != NULL && strlen(value) > AUDIT_FIELD_MAX)
        return error_set(err, "audit entry %s is longer than %d bytes", name,
                         AUDIT_FIELD_MAX);
    return 0;
}

static audit_observer_fn audit_observer;

void audit_set_observer(audit_observer_fn fn)
{
    audit_observer = fn;
}

int audit_append(struct store *st, struct vault *v,
                 const struct audit_event *e, struct error *err)
{
    if (e == NULL || audit_field_ok("actor", e->actor, 1, err) != 0 ||
        audit_field_ok("action", e->action, 1, err) != 0 ||
        audit_field_ok("address", e->address, 0, err) != 0 ||
        audit_field_ok("target", e->target, 0, err) != 0 ||
        audit_field_ok("detail", e->detail, 0, err) != 0)
        return e == NULL ? error_set(err, "no audit event") : -1;
    struct audit_ctx c = { .v = v };
    struct store_audit_row row = {
        .at = time_now_ms(), .actor = (char *)e->actor,
        .address = (char *)e->address, .action = (char *)e->action,
        .target = (char *)e->target, .detail = (char *)e->detail,
    };
    if (store_audit_append(st, &row, audit_seal, &c, err) != 0) {
        error_prefix(err, "audit trail: cannot record %s", e->action);
        return -1;
    }
    audit_anchor_update(st, v);     /* after the commit: it never leads */
    if (audit_observer != NULL)
        audit_observer(st, e);
    return 0;
}

int audit_checkpoint(struct store *st, struct vault *v, struct error *err)
{
    if (v == NULL)
        return error_set(err, "audit checkpoint needs the keystore");
    struct audit_ctx c = { .v = v };
    if (store_audit_checkpoint_head(st, audit_sign, &c, err) < 0)
        return -1;
    audit_anchor_update(st, v);     /* e.g. a data dir from before anchors */
    return 0;
}

/* ---- verifying --------------------------------------------------------- */

/* The walk: one page of entries and one of checkpoints at a time. */
struct audit_walk {
    struct store *st;
    struct vault *v;
    struct audit_report *r;
    struct store_audit_row *rows;
    size_t nrows, irow;
    struct store_audit_checkpoint *cps;
    size_t ncps, icp;
    int cps_drained;            /* last checkpoint read returned nothing */
    int64_t row_after, cp_after;
    int64_t expect;             /* seq the next entry must have */
    char prev[AUDIT_HASH_HEX + 1];  /* hash of entry expect - 1 */
    int64_t good_cp;            /* seq of the last checkpoint that verified */
    int anchor_state;           /* enum audit_anchor_state; -1: no file path */
    struct audit_anchor anchor; /* when AUDIT_ANCHOR_OK */
    char anchor_path[4200];
    char anchor_problem[ERROR_MSG_MAX];
};

static int audit_report_bad(struct audit_walk *w, int64_t seq,
                            const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first problem; returns 1 (broken). */
static int audit_report_bad(struct audit_walk *w, int64_t seq,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->r->problem, sizeof(w->r->problem), fmt, ap);
    va_end(ap);
    w->r->first_bad = seq > 0 ? seq : 1;
    return 1;
}

/* The next entry into *row (owned by the walk): 1, 0 at the end, -1. */
static int audit_next_row(struct audit_walk *w, struct store_audit_row **row,
                          struct error *err)
{
    if (w->irow == w->nrows) {
        store_audit_rows_free(w->rows, w->nrows);
        w->rows = NULL;
        w->nrows = w->irow = 0;
        if (store_audit_list(w->st, w->row_after, AUDIT_PAGE, &w->rows,
                             &w->nrows, err) != 0)
            return -1;
        if (w->nrows == 0)
            return 0;
        w->row_after = w->rows[w->nrows - 1].seq;
        w->cps_drained = 0;     /* newer checkpoints may exist by now */
    }
    *row = &w->rows[w->irow++];
    return 1;
}

/* The next unconsumed checkpoint into *cp (owned by the walk): 1, 0 when
 * there is none, -1. */
static int audit_peek_cp(struct audit_walk *w,
                         struct store_audit_checkpoint **cp,
                         struct error *err)
{
    if (w->icp == w->ncps) {
        if (w->cps_drained)
            return 0;
        store_audit_checkpoints_free(w->cps, w->ncps);
        w->cps = NULL;
        w->ncps = w->icp = 0;
        if (store_audit_checkpoints(w->st, w->cp_after, AUDIT_PAGE, &w->cps,
                                    &w->ncps, err) != 0)
            return -1;
        if (w->ncps == 0) {
            w->cps_drained = 1;
            return 0;
        }
        w->cp_after = w->cps[w->ncps - 1].seq;
    }
    *cp = &w->cps[w->icp];
    return 1;
}

/* Numbering, link and hash of one entry. 0 good, 1 broken, -1 error. */
static int audit_check_entry(struct audit_walk *w,
                             const struct store_audit_row *row,
                             struct error *err)
{
    int64_t s = row->seq;
    char want[AUDIT_HASH_HEX + 1];
    if (s > w->expect && w->expect == 1)
        return audit_report_bad(w, 1, "entry 1: missing (the trail starts "
                                "at entry %" PRId64 "; deleted?)", s);
    if (s > w->expect)
        return audit_report_bad(w, w->expect, "entry %" PRId64 ": missing "
                                "(entry %" PRId64 " is followed by entry %"
                                PRId64 "; deleted?)", w->expect,
                                w->expect - 1, s);
    if (s < w->expect)
        return audit_report_bad(w, w->expect, "entry %" PRId64 ": an entry "
                                "numbered %" PRId64 " comes before it "
                                "(inserted?)", w->expect, s);
    const char *prev = s == 1 ? AUDIT_ZERO_HASH : w->prev;
    if (row->prev_hash == NULL || strcmp(row->prev_hash, prev) != 0)
        return audit_report_bad(w, s, "entry %" PRId64 ": previous-hash link "
                                "broken (deleted, inserted or reordered entry "
                                "before it?)", s);
    if (row->has_nul)
        return audit_report_bad(w, s, "entry %" PRId64 ": a field holds a "
                                "NUL byte (edited?)", s);
    if (audit_entry_hash(row, want, err) != 0)
        return -1;
    if (row->hash == NULL || strcmp(row->hash, want) != 0)
        return audit_report_bad(w, s, "entry %" PRId64 ": hash does not "
                                "match its contents (edited?)", s);
    if (w->anchor_state == AUDIT_ANCHOR_OK && s == w->anchor.seq &&
        strcmp(want, w->anchor.hash) != 0)
        return audit_report_bad(w, s, "entry %" PRId64 ": its hash differs "
                                "from the one the signed head anchor names "
                                "(the newest entries rewritten?)", s);
    memcpy(w->prev, want, sizeof(w->prev));
    w->expect = s + 1;
    w->r->entries++;
    return 0;
}

/* One checkpoint at the entry row (same seq, already checked). */
static int audit_check_cp(struct audit_walk *w,
                          const struct store_audit_checkpoint *cp,
                          const struct store_audit_row *row)
{
    char text[160];
    unsigned char sig[VAULT_SIG_LEN];
    struct error e = {0};
    int64_t s = cp->seq;
    int n = audit_cp_text(s, cp->hash, text, sizeof(text));
    if (n < 0)
        return audit_report_bad(w, s, "checkpoint at %" PRId64 ": its signed "
                                "hash is malformed (edited?)", s);
    if (!audit_is_hex(cp->signature, AUDIT_SIG_HEX))
        return audit_report_bad(w, s, "checkpoint at %" PRId64 ": signature "
                                "is malformed (not %d hex digits)", s,
                                AUDIT_SIG_HEX);
    for (size_t i = 0; i < VAULT_SIG_LEN; i++)   /* digits checked above */
        sig[i] = (unsigned char)((unsigned)audit_hexval(cp->signature[2 * i])
                                     << 4 |
                                 (unsigned)audit_hexval(
                                     cp->signature[2 * i + 1]));
    if (vault_audit_verify(w->v, cp->key_id, text, (size_t)n, sig, &e) != 0)
        return audit_report_bad(w, s, "checkpoint at %" PRId64 ": %s", s,
                                e.msg);
    if (strcmp(cp->hash, row->hash) != 0) {
        if (w->good_cp > 0)
            return audit_report_bad(w, s, "checkpoint at %" PRId64 ": the "
                                    "signed hash differs from entry %" PRId64
                                    "'s hash (entries after the checkpoint "
                                    "at %" PRId64 " rewritten?)", s, s,
                                    w->good_cp);
        return audit_report_bad(w, s, "checkpoint at %" PRId64 ": the signed "
                                "hash differs from entry %" PRId64 "'s hash "
                                "(entries up to it rewritten?)", s, s);
    }
    w->good_cp = s;
    w->r->checkpoints++;
    return 0;
}

/* Every checkpoint up to row's seq. 0 good, 1 broken, -1 error. */
static int audit_check_cps(struct audit_walk *w,
                           const struct store_audit_row *row,
                           struct error *err)
{
    struct store_audit_checkpoint *cp;
    int rc;
    while ((rc = audit_peek_cp(w, &cp, err)) == 1 && cp->seq <= row->seq) {
        if (cp->seq < row->seq)
            return audit_report_bad(w, cp->seq, "checkpoint at %" PRId64
                                    ": there is no entry %" PRId64
                                    " (checkpoint inserted?)", cp->seq,
                                    cp->seq);
        if (audit_check_cp(w, cp, row) != 0)
            return 1;
        w->icp++;
    }
    return rc < 0 ? -1 : 0;
}

/* The trail ended: a checkpoint beyond it means entries were removed from
 * the end, unless new ones arrived meanwhile. 0 done, 1 broken, 2 more
 * entries to walk (*row set), -1 error. */
static int audit_check_end(struct audit_walk *w, struct store_audit_row **row,
                           struct error *err)
{
    struct store_audit_checkpoint *cp;
    w->cps_drained = 0;
    int rc = audit_peek_cp(w, &cp, err);
    if (rc <= 0)
        return rc;
    rc = audit_next_row(w, row, err);
    if (rc != 0)
        return rc < 0 ? -1 : 2;
    audit_report_bad(w, w->expect, "entry %" PRId64 ": missing (the trail "
                     "ends at entry %" PRId64 " but a checkpoint signs entry %"
                     PRId64 "; newest entries deleted?)", w->expect,
                     w->expect - 1, cp->seq);
    return 1;
}

/* The whole trail was walked (entries 1 .. expect - 1): does it reach the
 * entry the head anchor names? 0 intact, 1 broken. */
static int audit_check_anchor(struct audit_walk *w)
{
    int64_t last = w->expect - 1;
    if (w->anchor_state == AUDIT_ANCHOR_NONE && last > 0)
        return audit_report_bad(w, w->expect, "the signed head anchor %s is "
                                "missing (deleted?), so the newest entries "
                                "cannot be vouched for; a data dir made before "
                                "Wharf kept an anchor gets one at the next "
                                "audited action or serve start",
                                w->anchor_path);
    if (w->anchor_state == AUDIT_ANCHOR_BAD)
        return audit_report_bad(w, w->expect, "the signed head anchor %s "
                                "does not verify (replaced or edited?): %s",
                                w->anchor_path, w->anchor_problem);
    if (w->anchor_state == AUDIT_ANCHOR_OK && w->anchor.seq > last)
        return audit_report_bad(w, w->expect, "entry %" PRId64 ": missing "
                                "(the newest entries were deleted: the signed "
                                "head anchor names entry %" PRId64 " (hash "
                                "%s), the trail ends at entry %" PRId64 ")",
                                w->expect, w->anchor.seq, w->anchor.hash,
                                last);
    return 0;
}

static int audit_walk(struct audit_walk *w, struct error *err)
{
    struct store_audit_row *row = NULL;
    for (;;) {
        int rc = audit_next_row(w, &row, err);
        if (rc < 0)
            return -1;
        if (rc == 0 && (rc = audit_check_end(w, &row, err)) != 2)
            return rc == 0 ? audit_check_anchor(w) : rc;
        if ((rc = audit_check_entry(w, row, err)) != 0 ||
            (rc = audit_check_cps(w, row, err)) != 0)
            return rc;
    }
}

int audit_verify(struct store *st, struct vault *v, struct audit_report *r,
                 struct error *err)
{
    memset(r, 0, sizeof(*r));
    if (v == NULL)
        return error_set(err, "audit verify needs the keystore");
    struct audit_walk w = {
        .st = st, .v = v, .r = r, .row_after = INT64_MIN,
        .cp_after = INT64_MIN, .expect = 1, .anchor_state = -1,
    };
    /* the anchor first: read before the walk, it cannot name an entry the
     * walk will not see (it never leads the committed trail) */
    if (audit_anchor_path(st, w.anchor_path, sizeof(w.anchor_path)) == 0) {
        audit_anchor_place(w.anchor_path);
        w.anchor_state = audit_anchor_load(v, w.anchor_path, &w.anchor,
                                           w.anchor_problem,
                                           sizeof(w.anchor_problem), err);
        if (w.anchor_state < 0)
            return -1;
    }
    int rc = audit_walk(&w, err);
    store_audit_rows_free(w.rows, w.nrows);
    store_audit_checkpoints_free(w.cps, w.ncps);
    return rc;
}
