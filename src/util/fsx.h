/*
 * fsx.h - durable file-system operations.
 *
 * The house rule for durable writes: temp file, fsync, rename, fsync the
 * directory. Batches share syncs: fsx_sync_fds() makes many written files
 * durable with as few device flushes as possible (syncfs(2) on the file
 * system for large batches, fdatasync per file for small ones) and never
 * skips a sync. Every function returns 0 or -1 with err set (path named).
 */
#ifndef WHARF_FSX_H
#define WHARF_FSX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/error.h"

/* fsync the directory at path. */
int fsx_fsync_dir(const char *path, struct error *err);

/* Make the data of every fd durable (the fds stay open). n may be 0. */
int fsx_sync_fds(const int *fds, size_t n, struct error *err);

/* Write data to path atomically and durably: path.tmp-XXXX, fsync,
 * rename over path, fsync the directory. mode applies to the new file. */
int fsx_write_atomic(const char *path, const void *data, size_t len,
                     mode_t mode, struct error *err);

/* Remove everything under dir, never following a symbolic link nor
 * entering another file system, and dir itself when self: for undoing
 * what a command made moments ago. Best effort: what cannot be removed
 * stays. */
void fsx_remove_tree(const char *dir, bool self);

/* mkdir -p with mode for every created component. */
int fsx_mkdir_p(const char *path, mode_t mode, struct error *err);

/* Read a whole file of at most max bytes. *out is malloc'ed and
 * NUL-terminated (caller frees); *len excludes the NUL. */
int fsx_read_all(const char *path, size_t max, char **out, size_t *len,
                 struct error *err);

/* The directory part of path into out (like dirname, never modifies path). */
int fsx_dirname(const char *path, char *out, size_t outsz);

#endif
