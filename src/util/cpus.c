/*
 * cpus.c - the CPUs this process may run on (see cpus.h).
 */
#include "util/cpus.h"

#include <sched.h>
#include <unistd.h>

size_t cpus_usable(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (size_t)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);     /* over 1,024 CPUs */
    return n < 1 ? 1 : (size_t)n;
}
