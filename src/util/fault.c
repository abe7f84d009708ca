/*
 * fault.c - the kill -9 test hook of fault.h: counts hits of the points that
 * WHARF_FAULT names and sends SIGKILL to this process at the named hit.
 *
 * Owns one small table of hit counters (atomic, per slot of the variable's
 * list). It must never do anything else: no output, no allocation, no
 * effect at all when WHARF_FAULT is unset or names other points.
 */
#include "util/fault.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_SLOTS 8               /* "name:N" entries read from WHARF_FAULT */

static atomic_long fault_hits[FAULT_SLOTS];

/* The count N of entry `name:N` that starts at spec (ends at ',' or NUL),
 * or 0 when the entry names another point or is malformed. */
static long fault_match(const char *spec, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || spec[n] != ':')
        return 0;
    char *end;
    long count = strtol(spec + n + 1, &end, 10);
    if (end == spec + n + 1 || (*end != ',' && *end != '\0') || count < 1)
        return 0;
    return count;
}

void fault_point(const char *name)
{
    const char *spec = getenv("WHARF_FAULT");
    for (int slot = 0; spec != NULL && *spec != '\0' && slot < FAULT_SLOTS;
         slot++) {
        long want = fault_match(spec, name);
        if (want > 0 && atomic_fetch_add(&fault_hits[slot], 1) + 1 == want) {
            kill(getpid(), SIGKILL);    /* delivered before kill returns */
            _exit(128 + SIGKILL);       /* not reached */
        }
        spec = strchr(spec, ',');
        if (spec != NULL)
            spec++;
    }
}
