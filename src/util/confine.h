/*
 * confine.h - the folders and files a flow may name (R14, R15, R22).
 *
 * Whoever may import a flow (an operator, through the API) names paths:
 * the folders of file connectors, and, from the CLI only, files to read
 * secrets from. Those paths are an attack surface: a flow must never read
 * the keystore, plant files anywhere the server's user can write, or
 * delete files outside the folders the organisation meant for exchange.
 *
 * So every path a flow names must lie under one of the roots an
 * administrator lists in wharf.conf (`allowed_paths`), never inside the
 * data directory, and it is resolved without following any symlink
 * beneath its root (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or
 * a component-by-component O_NOFOLLOW walk where openat2 is missing).
 *
 * The policy is per process (one process serves one data directory, see
 * core/wharf.h): wharf_open() sets it from wharf.conf; until then no path
 * is allowed. Thread-safe: readers share a lock with a reload.
 */
#ifndef WHARF_CONFINE_H
#define WHARF_CONFINE_H

#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

#define CONFINE_ROOTS_MAX 16

/* Set the policy: data_dir (must exist) and allowed, a comma-separated
 * list of absolute folders (may be empty: no path is allowed). Refuses a
 * root that does not exist, is not a folder, or lies inside the data
 * directory. On error the previous policy stays. */
int confine_configure(const char *data_dir, const char *allowed,
                      struct error *err);

/* Forget the policy (no path is allowed). */
void confine_reset(void);

/* Check path without touching the file system: absolute, no "." or ".."
 * segments, under a root, not inside the data directory. what names the
 * setting in the error ("receive_dir"). 0 or -1 with err. */
int confine_check(const char *what, const char *path, struct error *err);

/* Open path (checked as above) relative to its root without following a
 * symlink anywhere beneath the root. flags as for open(2) (O_CLOEXEC and
 * O_NOFOLLOW are added); mode for O_CREAT. Returns the fd or -1 with err. */
int confine_open(const char *what, const char *path, int flags, mode_t mode,
                 struct error *err);

/* Open a folder (O_RDONLY | O_DIRECTORY) the same way. */
int confine_open_dir(const char *what, const char *path, struct error *err);

/* Whether path lies inside the data directory (lexically, and after
 * resolving it where it exists). 1 yes, 0 no. For files a caller may read
 * outside the roots (the CLI's secret files). */
int confine_in_data_dir(const char *path);

#endif
