/*
 * syncgroup.h - group commit: threads that each need the same file made
 * durable share one sync of it.
 *
 * A thread that has written (a directory entry, a database log frame) and
 * must not go on before it is on stable storage calls sync_group_wait()
 * with the group of that file. If no other thread is syncing the file, it
 * syncs it itself (its callback); otherwise it waits, and the next sync,
 * which starts after its call, covers it and every other thread that came
 * meanwhile: N concurrent callers cost about two syncs, not N. A caller
 * returns only once a sync that started after its call succeeded, so the
 * guarantee is the same as its own fsync's.
 *
 * A failed sync is sticky: on Linux a failed fsync may drop the dirty
 * pages it could not write and a later fsync then succeeds, so once one
 * sync of a file failed, every caller not covered by an earlier success
 * fails too, until the process restarts (as PostgreSQL does).
 *
 * The group also hands out the file's writer turn (sync_group_turn), so
 * that a writer holds the file's lock only while it writes, not while it
 * syncs: it takes the turn, writes, gives the turn back, then waits for
 * its sync with the others.
 *
 * Groups are found by the file's device and inode (any fd or path of the
 * same file gives the same group), made on first use and kept until the
 * process exits (a few dozen bytes each). Thread-safe.
 */
#ifndef WHARF_SYNCGROUP_H
#define WHARF_SYNCGROUP_H

#include <sys/types.h>

#include "util/error.h"

struct sync_group;

/* The group of the file on device dev with inode ino. NULL: out of
 * memory (the caller then syncs alone). Never freed by the caller. */
struct sync_group *sync_group_of(dev_t dev, ino_t ino);

/* Sync the group's file: 0 once a sync that started after this call
 * succeeded. sync(arg) is the caller's own way of syncing the file (run
 * only when this thread leads the round; returns 0 or an errno value).
 * -1 with err when the sync covering this call failed, or one before it
 * did (sticky). what names the file in the error. */
int sync_group_wait(struct sync_group *g, int (*sync)(void *arg), void *arg,
                    const char *what, struct error *err);

/* The file's writer turn, for threads that write it one at a time (a
 * SQLite database's write lock): they queue here, and the next is woken
 * the moment the turn is given back, instead of polling in SQLite's busy
 * handler (which sleeps 1, 2, 5, ... 100 ms between tries). 0, or -1
 * with err after timeout_ms. */
int sync_group_turn(struct sync_group *g, int timeout_ms, const char *what,
                    struct error *err);
void sync_group_turn_end(struct sync_group *g);

/* Tickets taken so far (calls of sync_group_wait): for tests. */
unsigned long long sync_group_tickets(struct sync_group *g);

#endif
