/*
 * id.h - message ids (UUIDv7: 48-bit ms timestamp + 74 random bits) and time.
 * Ids sort by creation time, so listings and payload folders stay ordered.
 */
#ifndef WHARF_ID_H
#define WHARF_ID_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define ID_LEN 36   /* xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx */

/* Fill out with a new lowercase UUIDv7 (randomness from RAND_bytes). */
void id_new(char out[ID_LEN + 1]);

/* True when s is a well-formed lowercase UUID of any version. */
bool id_valid(const char *s);

/* Milliseconds since the epoch (CLOCK_REALTIME) and monotonic ms. */
int64_t time_now_ms(void);
int64_t time_mono_ms(void);
/* The CLOCK_REALTIME time ms from now (ms <= 0: now), the clock of
 * pthread_cond_timedwait and pthread_mutex_timedlock. */
struct timespec time_deadline(int64_t ms);

/* "2026-11-23T11:31:43.123Z" into out (at least 25 bytes). */
void time_iso(int64_t ms, char *out, unsigned outsz);

#endif
