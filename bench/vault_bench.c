/*
 * vault_bench.c - throughput of encrypted payload files (R15).
 *
 * Writes N MiB (argument, default 256) through payload_write/payload_finish
 * to a file in a fresh directory under $TMPDIR (no fsync in the timed part:
 * the fd is taken with fd_out and closed unsynced), then reads it back with
 * payload_read. Prints `vault_write_MBps`, `vault_read_MBps` (MB = 10^6
 * bytes, plaintext) and `peak_rss_kib`, which stays flat whatever N is.
 * Owns and removes its temp directory; never touches anything else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "vault/vault.h"

#define BENCH_CHUNK (1 << 20)
#define BENCH_MSGID "0193a6f2-7c1e-7b3a-9f00-00000000bec4"

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_die(const char *what, const struct error *err)
{
    fprintf(stderr, "vault_bench: %s: %s\n", what, err->msg);
    exit(1);
}

int main(int argc, char **argv)
{
    unsigned long mib = 256;
    char *end = NULL;
    errno = 0;
    if (argc > 1 && ((mib = strtoul(argv[1], &end, 10)) == 0 || *end != '\0' ||
                     errno != 0 || mib > 1024 * 1024)) {
        fprintf(stderr, "usage: vault_bench [MiB, default 256]\n");
        return 2;
    }
    const char *base = getenv("TMPDIR");
    char dir[1024], ks[1100], file[1100];
    snprintf(dir, sizeof(dir), "%s/wharf-bench-XXXXXX", base ? base : "/tmp");
    struct error err = {0};
    unsigned char *buf = malloc(BENCH_CHUNK);
    if (mkdtemp(dir) == NULL || buf == NULL ||
        RAND_bytes(buf, BENCH_CHUNK) != 1) {
        fprintf(stderr, "vault_bench: cannot set up %s\n", dir);
        return 1;
    }
    snprintf(ks, sizeof(ks), "%s/keystore", dir);
    snprintf(file, sizeof(file), "%s/payload", dir);
    struct vault *v = vault_create(ks, &err) == 0 ? vault_open(ks, &err) : NULL;
    if (v == NULL)
        bench_die("keystore", &err);

    double t0 = bench_now();
    struct payload_writer *w = payload_create(v, file, BENCH_MSGID, &err);
    for (unsigned long i = 0; w != NULL && i < mib; i++)
        if (payload_write(w, buf, BENCH_CHUNK, &err) != 0)
            bench_die("write", &err);
    struct payload_info info;
    int fd = -1;
    if (w == NULL || payload_finish(w, &info, &fd, &err) != 0)
        bench_die("write", &err);
    double t1 = bench_now();
    close(fd);

    struct payload_reader *r = payload_open(v, file, BENCH_MSGID, &err);
    unsigned long long total = 0;
    ssize_t n = r == NULL ? -1 : 0;
    while (r != NULL && (n = payload_read(r, buf, BENCH_CHUNK, &err)) > 0)
        total += (unsigned long long)n;
    if (n < 0 || total != info.size)
        bench_die("read", &err);
    double t2 = bench_now();

    payload_close(r);
    vault_close(v);
    unlink(file);
    unlink(ks);
    rmdir(dir);
    free(buf);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("vault_write_MBps %.1f\n", (double)info.size / 1e6 / (t1 - t0));
    printf("vault_read_MBps %.1f\n", (double)total / 1e6 / (t2 - t1));
    printf("peak_rss_kib %ld\n", ru.ru_maxrss);
    return 0;
}
