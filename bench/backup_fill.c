/*
 * backup_fill.c - fills a data directory for bench/backup_bench.sh (R20):
 * N messages holding TOTAL MiB of payload in all, taken in through the
 * same durable intake a source uses (encrypted payload files, batched
 * sync, one transaction per batch of 256), as received by connector
 * SOURCE and queued for NEXT (the flow must name both; serve is not
 * running). Payload bytes are random per run, the same buffer reused
 * (they are encrypted anyway). Prints `fill_seconds` and `fill_MBps`.
 *
 *   backup_fill DATA N TOTAL_MIB SOURCE NEXT
 *
 * Owns nothing beyond the run; writes only through intake into DATA.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/rand.h>

#include "core/intake.h"
#include "core/wharf.h"
#include "store/store.h"

#define FILL_BATCH 256
#define FILL_CHUNK (1 << 20)

static double fill_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_die(const char *what, const struct error *err)
{
    fprintf(stderr, "backup_fill: %s: %s\n", what, err->msg);
    exit(1);
}

/* One message of size bytes from buf (FILL_CHUNK bytes, reused). */
static void fill_one(struct intake *in, long i, unsigned long long size,
                     const unsigned char *buf)
{
    struct error err = {0};
    char name[64];
    snprintf(name, sizeof(name), "m%07ld.dat", i);
    if (intake_begin(in, name, NULL, &err) != 0)
        fill_die("begin", &err);
    while (size > 0) {
        size_t k = size < FILL_CHUNK ? (size_t)size : FILL_CHUNK;
        if (intake_write(in, buf, k, &err) != 0)
            fill_die("write", &err);
        size -= k;
    }
    if (intake_end(in, &err) != 0)
        fill_die("end", &err);
}

int main(int argc, char **argv)
{
    struct error err = {0};
    if (argc != 6) {
        fprintf(stderr, "usage: backup_fill DATA N TOTAL_MIB SOURCE NEXT\n");
        return 2;
    }
    long n = strtol(argv[2], NULL, 10);
    unsigned long long total = strtoull(argv[3], NULL, 10) << 20;
    if (n < 1)
        return 2;
    unsigned long long each = total / (unsigned long long)n;
    unsigned char *buf = malloc(FILL_CHUNK);
    if (buf == NULL || RAND_bytes(buf, FILL_CHUNK) != 1)
        return 1;
    struct wharf *w = wharf_open(argv[1], &err);
    struct store *st = w ? store_open(w->db_path, &err) : NULL;
    if (st == NULL)
        fill_die("open", &err);
    const char *next[1] = { argv[5] };
    struct intake *in = intake_new(w, st, argv[4], next, 1);
    double t0 = fill_now();
    for (long i = 0; i < n; i++) {
        fill_one(in, i, each, buf);
        if ((i + 1) % FILL_BATCH == 0 || i + 1 == n) {
            if (intake_commit(in, &err) != 0)
                fill_die("commit", &err);
            intake_reset(in);
        }
    }
    double dt = fill_now() - t0;
    printf("fill_seconds %.2f\nfill_MBps %.1f\n", dt,
           (double)each * (double)n / 1e6 / dt);
    intake_free(in);
    store_close(st);
    wharf_close(w);
    free(buf);
    return 0;
}
