/*
 * fault.c - the test hooks of fault.h: counts hits of the points that
 * WHARF_FAULT names and, at the named hit, sends SIGKILL to this process
 * (fault_point) or returns an errno (fault_fail).
 *
 * Owns one small table of hit counters (atomic, per slot of the variable's
 * list). It must never do anything else: no output, no allocation, no
 * effect at all when WHARF_FAULT is unset or names other points.
 */
#include "util/fault.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAULT_SLOTS 8               /* "name:N" entries read from WHARF_FAULT */

static atomic_long fault_hits[FAULT_SLOTS];

/* The errno an entry's ":ERR" names (p at the ':'), or 0. */
static int fault_errno(const char *p)
{
    static const struct { const char *name; int e; } E[] = {
        { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
        { "EROFS", EROFS } };
    for (size_t i = 0; i < sizeof(E) / sizeof(E[0]); i++) {
        size_t n = strlen(E[i].name);
        if (strncmp(p + 1, E[i].name, n) == 0 &&
            (p[1 + n] == ',' || p[1 + n] == '\0'))
            return E[i].e;
    }
    return 0;
}

/* The count N of entry `name:N[:ERR]` that starts at spec (ends at ',' or
 * NUL), or 0 when the entry names another point, is malformed, or has
 * (want_errno) or lacks (!want_errno) an ERR; *e gets ERR's errno. */
static long fault_match(const char *spec, const char *name, int want_errno,
                        int *e)
{
    size_t n = strlen(name);
    if (strncmp(spec, name, n) != 0 || spec[n] != ':')
        return 0;
    char *end;
    long count = strtol(spec + n + 1, &end, 10);
    if (end == spec + n + 1 || count < 1)
        return 0;
    *e = *end == ':' ? fault_errno(end) : 0;
    if (want_errno ? *e == 0 : (*end != ',' && *end != '\0'))
        return 0;
    return count;
}

/* The slot of WHARF_FAULT's entry for name whose Nth hit this is, or -1;
 * *e as in fault_match. */
static int fault_hit(const char *name, int want_errno, int *e)
{
    const char *spec = getenv("WHARF_FAULT");
    for (int slot = 0; spec != NULL && *spec != '\0' && slot < FAULT_SLOTS;
         slot++) {
        long want = fault_match(spec, name, want_errno, e);
        if (want > 0 && atomic_fetch_add(&fault_hits[slot], 1) + 1 == want)
            return slot;
        spec = strchr(spec, ',');
        if (spec != NULL)
            spec++;
    }
    return -1;
}

void fault_point(const char *name)
{
    int e;
    if (fault_hit(name, 0, &e) >= 0) {
        kill(getpid(), SIGKILL);        /* delivered before kill returns */
        _exit(128 + SIGKILL);           /* not reached */
    }
}

int fault_fail(const char *name)
{
    int e = 0;
    return fault_hit(name, 1, &e) >= 0 ? e : 0;
}
