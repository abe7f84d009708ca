/*
 * fuzz_payload.c - libFuzzer target for the vault's payload reader
 * (src/vault/payload.c: payload_open_io, payload_read): with
 * payload_dir = database the header and the sealed segments are rows of
 * payload_segments, which whoever can write to the database can change,
 * so the reader parses untrusted bytes.
 *
 * The first byte picks the mode; PLAN_LEN bytes of io plan follow (a read
 * failing at an offset or not, a short-read pattern, the reader's chunk):
 *   0  the rest is a stored payload (header, then sealed segments), read
 *      for MSGID;
 *   1  size, write chunk, mutations and a fill pattern: a plaintext of that
 *      size is written with payload_create_io into memory, the stored bytes
 *      are mutated (bit flips, truncation, segment swaps, drops and copies,
 *      bytes appended, another message id), then read back;
 *   2  as 1 without mutations: a clean round trip.
 * Every payload is read twice: with whole reads, then through the plan.
 * Oracles beyond the sanitizers: the reader never yields more bytes than
 * the stored bytes could hold; an unchanged payload reads back equal to
 * its plaintext; a changed one (any byte, its length or its message id)
 * fails, having yielded only a prefix of the plaintext; every failure of
 * a read whose io never failed is reported to the integrity hook once;
 * the io is released exactly once per open, never discarded; a finished
 * reader repeats its end or its error; short reads change nothing; a read
 * whose io fails never reports success and, on authentic bytes, is not
 * reported as tampering; the writer commits once and reports the size
 * and SHA-256 of what it was given.
 * Writes nothing but a keystore with a fixed master key (and its lock)
 * in a folder made by mkdtemp under /tmp, once per process (removed at a
 * normal exit; left behind by a crash).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* mkdtemp */
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "vault/vault.h"

#define MSGID "0193a6f2-7c1e-7b3a-9f00-1234567890ab"
#define MSGID_OTHER "0193a6f2-7c1e-7b3a-9f00-ba0987654321"
#define SEG PAYLOAD_SEGMENT
#define HDR VAULT_PAYLOAD_HEADER_LEN
#define SEALED VAULT_PAYLOAD_SEALED_SEGMENT
#define TAG (SEALED - SEG)
#define PATTERN_LEN 8
#define PLAN_LEN (1 + 3 + PATTERN_LEN + 1)
#define MAX_OPS 8

static const char KEYSTORE[] =
    "wharf-keystore 1\n"
    "master 0123456789abcdef "
    "4242424242424242424242424242424242424242424242424242424242424242"
    " active\n";

static struct vault *g_vault;
static int g_alerts;            /* integrity hook calls of the last read */
static const char *g_msgid;     /* the message id of the last read */

/* ---- input -------------------------------------------------------------- */

struct cursor {
    const uint8_t *p;
    size_t n;
};

static unsigned take_u8(struct cursor *c)
{
    if (c->n == 0)
        return 0;
    c->n--;
    return *c->p++;
}

static size_t take_u24(struct cursor *c)
{
    size_t v = take_u8(c);
    v = v << 8 | take_u8(c);
    return v << 8 | take_u8(c);
}

/* How the second read of a payload goes. */
struct plan {
    int fail;                   /* the io fails at fail_at */
    size_t fail_at;             /* an offset, taken modulo stored bytes + 1 */
    unsigned char pattern[PATTERN_LEN];     /* short reads: 0 whole, else b*b */
    size_t chunk;               /* bytes asked of payload_read */
};

static void plan_take(struct cursor *c, struct plan *pl)
{
    pl->fail = take_u8(c) & 1;
    pl->fail_at = take_u24(c);
    for (size_t i = 0; i < PATTERN_LEN; i++)
        pl->pattern[i] = (unsigned char)take_u8(c);
    unsigned b = take_u8(c);
    pl->chunk = b == 0 ? SEG + 1 : (size_t)b * 97;
}

/* ---- the reader's io ---------------------------------------------------- */

struct src {
    const unsigned char *p;
    size_t n, off;
    const unsigned char *pattern;   /* NULL: whole reads */
    size_t step;
    size_t fail_at;                 /* SIZE_MAX: never fails */
    int releases, discards;
};

static ssize_t src_read(void *ctx, void *out, size_t n, struct error *err)
{
    struct src *s = ctx;
    if (s->off >= s->fail_at)
        return error_set(err, "fuzz: the database went away");
    size_t k = s->n - s->off < n ? s->n - s->off : n;
    if (s->fail_at - s->off < k)
        k = s->fail_at - s->off;
    if (s->pattern != NULL) {
        size_t b = s->pattern[s->step++ % PATTERN_LEN];
        if (b != 0 && b * b < k)
            k = b * b;
    }
    if (k > 0)
        memcpy(out, s->p + s->off, k);
    s->off += k;
    return (ssize_t)k;
}

static void src_release(void *ctx, int discard)
{
    struct src *s = ctx;
    s->releases++;
    s->discards += discard != 0;
}

static void count_alert(const char *what, const char *id, const char *problem)
{
    if (strcmp(what, "payload") != 0 || strcmp(id, g_msgid) != 0 ||
        problem[0] == '\0')
        abort();                /* an alert about something else */
    g_alerts++;
}

/* ---- reading -------------------------------------------------------------- */

struct result {
    int rc;                     /* 0 read to its verified end, -1 failed */
    unsigned char *p;           /* the bytes yielded (owned) */
    size_t n;
    int alerts;                 /* integrity hook calls */
    char msg[ERROR_MSG_MAX];    /* the error, when rc is -1 */
};

/* Whether y plaintext bytes fit in n stored bytes (header, a tag for
 * every segment they came from). */
static int fits(size_t y, size_t n)
{
    size_t tags = (y + SEG - 1) / SEG;
    return y <= n && n - y >= HDR + tags * TAG;
}

/* Read r to its end or its error into res (res->p holds stored bytes). */
static int drain(struct payload_reader *r, size_t stored, size_t chunk,
                 struct result *res)
{
    static unsigned char buf[SEG + 1];
    struct error err = {0};
    ssize_t k;
    while ((k = payload_read(r, buf, chunk, &err)) > 0) {
        if ((size_t)k > chunk || !fits(res->n + (size_t)k, stored))
            abort();            /* more than asked, or than was stored */
        memcpy(res->p + res->n, buf, (size_t)k);
        res->n += (size_t)k;
    }
    if (k < 0 && err.msg[0] == '\0')
        abort();                /* an error without a message */
    memcpy(res->msg, err.msg, sizeof(res->msg));
    if (payload_read(r, buf, chunk, &err) != k ||
        strcmp(err.msg, res->msg) != 0)
        abort();                /* the end or the error is not repeated */
    return k < 0 ? -1 : 0;
}

/* Read stored[0..n) for msgid: whole reads when pl is NULL, else as pl
 * says. Checks the io is released once, when the reader is done. */
static void read_payload(const unsigned char *stored, size_t n,
                         const char *msgid, const struct plan *pl,
                         struct result *res)
{
    struct src s = { .p = stored, .n = n, .fail_at = SIZE_MAX };
    struct payload_io io = { .read = src_read, .release = src_release,
                             .ctx = &s };
    struct error err = {0};
    size_t chunk = SEG + 1;
    if (pl != NULL) {
        s.pattern = pl->pattern;
        s.fail_at = pl->fail ? pl->fail_at % (n + 1) : SIZE_MAX;
        chunk = pl->chunk;
    }
    memset(res, 0, sizeof(*res));
    res->p = malloc(n + 1);
    if (res->p == NULL)
        abort();
    g_alerts = 0;
    g_msgid = msgid;
    struct payload_reader *r = payload_open_io(g_vault, &io, msgid, &err);
    if (r == NULL) {
        res->rc = -1;
        if (err.msg[0] == '\0')
            abort();
        memcpy(res->msg, err.msg, sizeof(res->msg));
    } else {
        if (s.releases != 0)
            abort();            /* released while still in use */
        res->rc = drain(r, n, chunk, res);
        payload_close(r);
    }
    if (s.releases != 1 || s.discards != 0)
        abort();
    res->alerts = g_alerts;
}

/* The whole read of a payload: a failure is an integrity failure, told
 * to the hook exactly once; success tells it nothing. */
static void check_whole(const struct result *ref)
{
    if (ref->alerts != (ref->rc != 0 ? 1 : 0))
        abort();
}

/* The planned read against the whole read of the same bytes. */
static void check_planned(const struct result *ref, const struct result *got,
                          const struct plan *pl)
{
    if (got->n > ref->n || (got->n > 0 && memcmp(got->p, ref->p, got->n)))
        abort();                /* not a prefix of what whole reads gave */
    if (pl->fail) {             /* at or before the end: always reached */
        if (got->rc == 0)
            abort();            /* the io failed, the read succeeded */
        if (ref->rc == 0 && got->alerts != 0)
            abort();            /* an I/O error reported as tampering */
        return;
    }
    if (got->rc != ref->rc || got->n != ref->n ||
        got->alerts != ref->alerts || strcmp(got->msg, ref->msg) != 0)
        abort();                /* short reads changed the result */
}

/* Read stored bytes twice (whole, then planned) and check both; the
 * whole read's result is left in ref. */
static void read_both(const unsigned char *stored, size_t n, const char *msgid,
                      const struct plan *pl, struct result *ref)
{
    struct result got;
    read_payload(stored, n, msgid, NULL, ref);
    check_whole(ref);
    read_payload(stored, n, msgid, pl, &got);
    check_planned(ref, &got, pl);
    free(got.p);
}

/* ---- writing -------------------------------------------------------------- */

struct sink {
    unsigned char *p;           /* owned */
    size_t n, cap;
    int commits, releases, discards;
};

static int sink_write(void *ctx, const void *p, size_t n, struct error *err)
{
    struct sink *s = ctx;
    if (s->n + n > s->cap) {
        size_t cap = (s->n + n) * 2;
        unsigned char *q = realloc(s->p, cap);
        if (q == NULL)
            return error_set(err, "fuzz: out of memory");
        s->p = q;
        s->cap = cap;
    }
    if (n > 0)
        memcpy(s->p + s->n, p, n);
    s->n += n;
    return 0;
}

static int sink_commit(void *ctx, struct error *err)
{
    struct sink *s = ctx;
    (void)err;
    s->commits++;
    return 0;
}

static void sink_release(void *ctx, int discard)
{
    struct sink *s = ctx;
    s->releases++;
    s->discards += discard != 0;
}

static void sha256_hex(const unsigned char *p, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        abort();
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* plain[0..n) written for MSGID in chunk-sized calls into s; the writer
 * must accept it all and report what it was given. */
static void write_payload(const unsigned char *plain, size_t n, size_t chunk,
                          struct sink *s)
{
    struct payload_io io = { .write = sink_write, .commit = sink_commit,
                             .release = sink_release, .ctx = s };
    struct error err = {0};
    struct payload_info info;
    char hex[65];
    struct payload_writer *w = payload_create_io(g_vault, &io, MSGID, &err);
    if (w == NULL)
        abort();
    for (size_t off = 0; off < n; off += chunk)
        if (payload_write(w, plain + off, n - off < chunk ? n - off : chunk,
                          &err) != 0)
            abort();
    int fd = 0;
    if (payload_finish(w, &info, &fd, &err) != 0)
        abort();
    size_t segs = n == 0 ? 1 : (n + SEG - 1) / SEG;
    sha256_hex(plain, n, hex);
    if (fd != -1 || s->commits != 1 || s->releases != 1 || s->discards != 0 ||
        info.size != n || strcmp(info.sha256, hex) != 0 ||
        s->n != HDR + n + segs * TAG)
        abort();
}

/* ---- mutations -------------------------------------------------------------- */

static size_t seg_count(size_t n)
{
    return n <= HDR ? 0 : (n - HDR + SEALED - 1) / SEALED;
}

static size_t seg_len(size_t n, size_t k)
{
    size_t off = HDR + k * SEALED;
    return n - off < SEALED ? n - off : SEALED;
}

/* s's header followed by its segments in the given order (indices may
 * repeat or be left out). */
static void rebuild(struct sink *s, const size_t *order, size_t count)
{
    size_t total = HDR;
    for (size_t i = 0; i < count; i++)
        total += seg_len(s->n, order[i]);
    unsigned char *p = malloc(total);
    if (p == NULL)
        abort();
    memcpy(p, s->p, HDR);
    size_t at = HDR;
    for (size_t i = 0; i < count; i++) {
        size_t len = seg_len(s->n, order[i]);
        memcpy(p + at, s->p + HDR + order[i] * SEALED, len);
        at += len;
    }
    free(s->p);
    s->p = p;
    s->n = s->cap = total;
}

/* Swap (op 0), drop (1) or duplicate (2) segments a and b of s. */
static void reorder(struct sink *s, int op, size_t a, size_t b)
{
    size_t ns = seg_count(s->n), order[MAX_OPS + 8], count = 0;
    if (ns == 0 || ns + 1 > sizeof(order) / sizeof(order[0]))
        return;
    a %= ns;
    b %= ns;
    for (size_t i = 0; i < ns; i++) {
        size_t k = op == 0 && i == a ? b : op == 0 && i == b ? a : i;
        if (op == 1 && i == a)
            continue;
        order[count++] = k;
        if (op == 2 && i == a)
            order[count++] = k;
    }
    rebuild(s, order, count);
}

static void append(struct sink *s, size_t len, unsigned char byte)
{
    unsigned char bytes[64];
    struct error err = {0};
    memset(bytes, byte, len);
    if (sink_write(s, bytes, len, &err) != 0)
        abort();
}

/* One mutation (4 input bytes) of s; *other_id set: read it for another
 * message id. */
static void mutate(struct sink *s, struct cursor *c, int *other_id)
{
    unsigned kind = take_u8(c);
    size_t arg = take_u24(c);
    switch (kind & 7) {         /* the bits above: a bit, or a flag */
    case 0: case 7:
        if (s->n > 0)
            s->p[arg % s->n] ^= (unsigned char)(1u << (kind >> 3 & 7));
        break;
    case 1:
        if (kind & 8)
            s->n -= arg % 64 + 1 < s->n ? arg % 64 + 1 : s->n;
        else if (s->n > 0)
            s->n = arg % s->n;
        break;
    case 2: case 3: case 4:
        reorder(s, (int)(kind & 7) - 2, arg & 0xff, arg >> 8 & 0xff);
        break;
    case 5:
        append(s, arg % 64 + 1, (unsigned char)(arg >> 8));
        break;
    default:
        *other_id = 1;
        break;
    }
}

/* ---- modes -------------------------------------------------------------- */

static void mode_stored(struct cursor *c, const struct plan *pl)
{
    struct result ref;
    read_both(c->p, c->n, MSGID, pl, &ref);
    free(ref.p);
}

/* The plaintext of modes 1 and 2: a size near a segment boundary (0 to 3
 * segments and -32768..32767 bytes), filled from the rest of the input. */
static unsigned char *plaintext(struct cursor *c, size_t *n)
{
    size_t segs = take_u8(c) % 4;
    long delta = (long)(take_u8(c) << 8 | take_u8(c)) - 32768;
    long size = (long)(segs * SEG) + delta;
    *n = size < 0 ? 0 : (size_t)size;
    return malloc(*n + 1);
}

static void fill(unsigned char *p, size_t n, const struct cursor *c)
{
    for (size_t i = 0; i < n; i++)
        p[i] = c->n > 0 ? c->p[i % c->n] : (unsigned char)i;
}

static void mode_written(struct cursor *c, const struct plan *pl, int mutations)
{
    size_t n;
    struct sink s = {0};
    struct result ref;
    int other_id = 0;
    unsigned char *plain = plaintext(c, &n);
    unsigned b = take_u8(c);
    size_t chunk = b == 0 ? n + 1 : (size_t)b * 1021;
    unsigned ops = mutations ? take_u8(c) % (MAX_OPS + 1) : 0;
    const uint8_t *opbytes = c->p;
    if (plain == NULL)
        abort();
    for (unsigned i = 0; i < ops; i++)     /* the fill starts after them */
        take_u24(c), take_u8(c);
    fill(plain, n, c);
    write_payload(plain, n, chunk, &s);
    size_t orig_n = s.n;
    unsigned char *orig = malloc(orig_n);
    if (orig == NULL)
        abort();
    memcpy(orig, s.p, orig_n);
    struct cursor oc = { opbytes, (size_t)(c->p - opbytes) };
    for (unsigned i = 0; i < ops; i++)
        mutate(&s, &oc, &other_id);
    int changed = other_id || s.n != orig_n ||
                  memcmp(s.p, orig, orig_n) != 0;
    read_both(s.p, s.n, other_id ? MSGID_OTHER : MSGID, pl, &ref);
    if (!changed && (ref.rc != 0 || ref.n != n ||
                     (n > 0 && memcmp(ref.p, plain, n) != 0)))
        abort();                /* an authentic payload does not read back */
    if (changed && ref.rc == 0)
        abort();                /* a changed payload was accepted */
    if (ref.n > n || (ref.n > 0 && memcmp(ref.p, plain, ref.n) != 0))
        abort();                /* bytes that are not the plaintext's */
    free(ref.p);
    free(orig);
    free(s.p);
    free(plain);
}

/* ---- libFuzzer -------------------------------------------------------------- */

static char g_dir[] = "/tmp/wharf-fuzz-payload-XXXXXX";

/* At exit: the vault closed, its folder removed. */
static void vault_remove(void)
{
    char path[64];
    vault_close(g_vault);
    snprintf(path, sizeof(path), "%s/keystore", g_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/keystore.lock", g_dir);
    unlink(path);
    rmdir(g_dir);
}

/* A keystore holding KEYSTORE in a new folder under /tmp, opened. */
static struct vault *vault_fixed(void)
{
    char path[64];
    struct error err = {0};
    if (mkdtemp(g_dir) == NULL)
        return NULL;
    snprintf(path, sizeof(path), "%s/keystore", g_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    ssize_t w = write(fd, KEYSTORE, sizeof(KEYSTORE) - 1);
    close(fd);
    if (w != (ssize_t)sizeof(KEYSTORE) - 1)
        return NULL;
    struct vault *v = vault_open(path, &err);
    if (v == NULL)
        fprintf(stderr, "fuzz_payload: %s\n", err.msg);
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_vault = vault_fixed();
    if (g_vault == NULL) {
        fprintf(stderr, "fuzz_payload: cannot make a vault under /tmp\n");
        abort();
    }
    vault_set_integrity_hook(count_alert);
    atexit(vault_remove);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor c = { data, size };
    struct plan pl;
    if (size < 1 + PLAN_LEN)
        return 0;
    unsigned mode = take_u8(&c) % 3;
    plan_take(&c, &pl);
    if (mode == 0)
        mode_stored(&c, &pl);
    else
        mode_written(&c, &pl, mode == 1);
    return 0;
}
