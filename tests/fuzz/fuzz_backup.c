/*
 * fuzz_backup.c - libFuzzer target for the backup container reader
 * (src/core/backup_format.c): `wharf backup verify` and `wharf restore`
 * read files that travel off-site, and whoever holds a backup public key
 * can make segments that authenticate, so the records behind them are
 * attacker-controlled too.
 *
 * The first byte picks what the rest is:
 *   0  a whole container, read with a fixed content key;
 *   1  the plaintext of the segment stream (records), wrapped in authentic
 *      segments by the writer's raw hook, then read;
 *   2  the header JSON alone (backup_info_parse);
 *   3  a program for the writer: entries (kind, name, size, bytes) it
 *      accepts are written and must read back identical.
 * Oracles beyond the sanitizers: no entry yields more bytes than its
 * declared size; an entry that ends has yielded exactly its size; every
 * name read is a safe one; a container read to its end has a trailer
 * whose counts equal what was read; mode 3 round-trips. Must never
 * write anything but a memfd.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/backup_format.h"

static const unsigned char KEY[BACKUP_KEY_LEN] = { 0x42 };
static const unsigned char SIG[BACKUP_SIG_LEN] = { 0 };

struct mem {
    const unsigned char *p;
    size_t n, off;
};

static ssize_t mem_read(void *ctx, void *out, size_t n, struct error *err)
{
    struct mem *m = ctx;
    (void)err;
    size_t k = m->n - m->off < n ? m->n - m->off : n;
    memcpy(out, m->p + m->off, k);
    m->off += k;
    return (ssize_t)k;
}

static void info_fill(struct backup_info *i)
{
    memset(i, 0, sizeof(*i));
    memcpy(i->backup_id, "01a24319-b9e9-72d2-b40f-6a90b2e2196e",
           ID_LEN + 1);
    memcpy(i->node, "fuzz", 5);
    memcpy(i->wharf_version, "0", 2);
    memcpy(i->store, "sqlite", 7);
    i->schema_version = 1;
    i->recipient = BACKUP_TO_MASTER_KEY;
    memcpy(i->master_key_id, "0123456789abcdef", 17);
}

/* What a read saw, for the mode 3 comparison. */
struct seen {
    size_t entries;
    uint64_t bytes;
    unsigned char digest;       /* a cheap fold of every byte and name */
};

static void fold(struct seen *s, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        s->digest = (unsigned char)(s->digest * 31 + c[i]);
}

static int read_container(const unsigned char *p, size_t n, struct seen *s)
{
    struct mem m = { p, n, 0 };
    struct error err = {0};
    unsigned char buf[5000];
    memset(s, 0, sizeof(*s));
    struct backup_reader *r = backup_reader_open(mem_read, &m, &err);
    if (r == NULL)
        return -1;
    backup_reader_key(r, KEY);
    struct backup_entry e;
    int rc;
    while ((rc = backup_reader_next(r, &e, &err)) == 1) {
        if (!backup_name_ok(e.name))
            abort();
        fold(s, e.name, strlen(e.name));
        uint64_t got = 0;
        ssize_t k;
        while ((k = backup_reader_data(r, buf, sizeof(buf), &err)) > 0) {
            got += (uint64_t)k;
            if (got > e.size)
                abort();
            fold(s, buf, (size_t)k);
        }
        if (k < 0) {
            rc = -1;
            break;
        }
        if (got != e.size)
            abort();
        s->entries++;
        s->bytes += got;
    }
    if (rc == 0) {
        const struct backup_trailer *t = backup_reader_trailer(r);
        if (t == NULL || t->entries != s->entries || t->bytes != s->bytes)
            abort();
    }
    backup_reader_free(r);
    return rc;
}

/* A memfd's bytes into a malloc'ed buffer. */
static unsigned char *drain(int fd, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    if (p != NULL && pread(fd, p, n, 0) != (ssize_t)n) {
        free(p);
        p = NULL;
    }
    return p;
}

static void mode_raw(const uint8_t *d, size_t n)
{
    struct backup_info i;
    struct error err = {0};
    struct seen s;
    info_fill(&i);
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return;
    struct backup_writer *w = backup_writer_open(fd, &i,
                                                 (const void *)"k", 1, KEY,
                                                 &err);
    if (w != NULL && backup_writer_raw(w, d, n, 1, &err) == 0) {
        size_t len = (size_t)backup_writer_bytes(w);
        unsigned char *p = drain(fd, len);
        if (p != NULL)
            read_container(p, len, &s);
        free(p);
    }
    backup_writer_free(w);
    close(fd);
}

/* One entry of a mode 3 program: kind, name length, name, size (2 bytes),
 * then up to size bytes (fewer when the input ends: refused at end). */
static int program_step(struct backup_writer *w, const uint8_t **d,
                        size_t *n, struct seen *ws)
{
    struct error err = {0};
    char name[64];
    if (*n < 4)
        return 1;
    enum backup_entry_kind kind = (*d)[0] & 1 ? BACKUP_ENTRY_MISSING
                                              : BACKUP_ENTRY_FILE;
    size_t nl = (*d)[1] % 40;
    if (*n < 2 + nl + 2)
        return 1;
    memcpy(name, *d + 2, nl);
    name[nl] = '\0';
    size_t size = (size_t)(*d)[2 + nl] << 8 | (*d)[3 + nl];
    *d += 4 + nl;
    *n -= 4 + nl;
    if (kind == BACKUP_ENTRY_MISSING)
        size = 0;
    if (size > *n || strlen(name) != nl)
        return 1;
    if (backup_writer_begin(w, kind, name, size, &err) != 0)
        return backup_name_ok(name) ? -1 : 0;   /* refused names only */
    if (backup_writer_data(w, *d, size, &err) != 0 ||
        backup_writer_end(w, &err) != 0)
        return -1;
    fold(ws, name, nl);
    fold(ws, *d, size);
    ws->entries++;
    ws->bytes += size;
    *d += size;
    *n -= size;
    return 0;
}

static void mode_program(const uint8_t *d, size_t n)
{
    struct backup_info i;
    struct error err = {0};
    struct seen s, ws = {0};
    info_fill(&i);
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return;
    struct backup_writer *w = backup_writer_open(fd, &i,
                                                 (const void *)"k", 1, KEY,
                                                 &err);
    int rc = w == NULL ? 1 : 0;
    while (rc == 0)
        rc = program_step(w, &d, &n, &ws);
    if (rc < 0)
        abort();                /* the writer refused its own input */
    if (w != NULL && backup_writer_finish(w, "0123456789abcdef", SIG,
                                          &err) == 0) {
        size_t len = (size_t)backup_writer_bytes(w);
        unsigned char *p = drain(fd, len);
        if (p != NULL && (read_container(p, len, &s) != 0 ||
                          s.entries != ws.entries || s.bytes != ws.bytes ||
                          s.digest != ws.digest))
            abort();            /* what the writer wrote must read back */
        free(p);
    }
    backup_writer_free(w);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct seen s;
    struct backup_info info;
    struct error err = {0};
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0:
        read_container(data + 1, size - 1, &s);
        break;
    case 1:
        mode_raw(data + 1, size - 1);
        break;
    case 2:
        backup_info_parse((const char *)data + 1, size - 1, &info, &err);
        break;
    default:
        mode_program(data + 1, size - 1);
        break;
    }
    return 0;
}
