/*
 * id.c - owns message ids (UUIDv7, RFC 9562) and the clock helpers.
 *
 * Layout: 48-bit big-endian unix ms | version 7 | 12-bit rand_a | variant 10
 * | 62 random bits (RAND_bytes). rand_a is used as a counter (RFC 9562
 * section 6.2, method 1): seeded with 11 random bits at each new ms and
 * incremented for ids in the same ms; on overflow the timestamp is advanced
 * by one ms. So the ids of one process sort strictly ascending, even if the
 * clock steps back. The (ms, counter) state sits behind one mutex.
 *
 * It must never hand out an id built without fresh randomness: when
 * RAND_bytes fails the process aborts rather than risk duplicate ids.
 */
#include "util/id.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t id_last_ms = -1;
static unsigned id_counter;

static void id_random(unsigned char *buf, int n)
{
    if (RAND_bytes(buf, n) != 1) {
        static const char msg[] = "wharf: RAND_bytes failed; cannot create "
                                  "a message id\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        abort();
    }
}

/* The (timestamp, counter) pair for the next id; strictly increasing. */
static void id_next_stamp(unsigned seed, int64_t *ms, unsigned *seq)
{
    int64_t now = time_now_ms();
    pthread_mutex_lock(&id_mu);
    if (now > id_last_ms) {
        id_last_ms = now;
        id_counter = seed & 0x7FF;
    } else if (++id_counter > 0xFFF) {
        id_last_ms++;
        id_counter = seed & 0x7FF;
    }
    *ms = id_last_ms;
    *seq = id_counter;
    pthread_mutex_unlock(&id_mu);
}

static void id_format(const unsigned char b[16], char out[ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0F];
    }
    out[o] = '\0';
}

void id_new(char out[ID_LEN + 1])
{
    unsigned char rnd[10];
    id_random(rnd, (int)sizeof(rnd));
    int64_t ms;
    unsigned seq;
    id_next_stamp(((unsigned)rnd[0] << 8) | rnd[1], &ms, &seq);

    unsigned char b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | ((seq >> 8) & 0x0F));
    b[7] = (unsigned char)(seq & 0xFF);
    b[8] = (unsigned char)(0x80 | (rnd[2] & 0x3F));
    for (int i = 9; i < 16; i++)
        b[i] = rnd[i - 6];
    id_format(b, out);
}

static bool id_is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool id_valid(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < ID_LEN; i++) {
        bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? s[i] != '-' : !id_is_lower_hex(s[i]))
            return false;   /* also stops at an early NUL */
    }
    return s[ID_LEN] == '\0';
}

static int64_t time_clock_ms(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_now_ms(void)
{
    return time_clock_ms(CLOCK_REALTIME);
}

int64_t time_mono_ms(void)
{
    return time_clock_ms(CLOCK_MONOTONIC);
}

struct timespec time_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ms <= 0)
        return ts;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void time_iso(int64_t ms, char *out, unsigned outsz)
{
    if (out == NULL || outsz == 0)
        return;
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        frac += 1000;
        sec -= 1;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL) {
        out[0] = '\0';
        return;
    }
    snprintf(out, outsz, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}
