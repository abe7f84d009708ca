/*
 * cpus.h - how many CPUs this process may run on: the count of its
 * affinity mask (what taskset, a cpuset or a container's cpuset leaves
 * it), else the CPUs online. What sizes the work that runs side by side
 * for speed (the key processes, the parallel deflate). A CPU quota
 * (cgroup cpu.max) is not read: it limits time, not where threads run.
 */
#ifndef WHARF_CPUS_H
#define WHARF_CPUS_H

#include <stddef.h>

/* At least 1. Call it from the thread whose mask counts (the affinity is
 * per thread; threads inherit it from the one that starts them). */
size_t cpus_usable(void);

#endif
