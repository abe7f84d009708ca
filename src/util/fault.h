/*
 * fault.h - a TEST HOOK for deterministic crashes (kill -9 at a named
 * point), used by the end-to-end tests of crash safety (e.g. key rotation,
 * tests/e2e/test_r15_key_rotation.py). Not a feature: operators never set
 * it.
 *
 * When the environment variable WHARF_FAULT names a point and a count,
 * "NAME:N" (several separated by commas: "a.b:1,c.d:3"), the Nth call of
 * fault_point("NAME") in the process kills the process with SIGKILL: no
 * cleanup, no flush, no atexit handler, exactly like `kill -9` from outside
 * at that instant. Without WHARF_FAULT (or for other names) fault_point
 * does nothing but read the variable. The points are named where they are
 * called ("rotate.key_added", ...), and the callers document them.
 *
 * An entry "NAME:N:ERR" (ERR one of EIO, ENOSPC, EDQUOT, EROFS) instead
 * makes the Nth call of fault_fail("NAME") return that errno, once: an
 * I/O error the caller must handle as if the system call had failed. The
 * points of the durable layers:
 *   payload.write   a write of an encrypted payload file (vault)
 *   fsx.sync        fsx_sync_fds (the batched sync of intake and delivery)
 *   fsx.sync_dir    fsx_fsync_dir
 *   file.write      the file destination's write of a message
 *   file.rename     the file destination's rename into place
 *   store.intake    the commit of an intake batch (as SQLITE_IOERR/FULL)
 *   store.intake_lost  the same commit succeeds but is reported failed,
 *                   as when PostgreSQL's connection is lost before
 *                   COMMIT's answer (the caller cannot tell)
 *   store.finish    the commit of delivery outcomes (idem)
 * and beyond them:
 *   net.loop.admin, net.loop.partner   a turn of a listener's event loop
 *                   (as if epoll_wait failed: the listener stops, and
 *                   /healthz must say so)
 *
 * Kill points (fault_point) besides key rotation's:
 *   retention.shred before a purged message's payload file is shredded
 *                   (its rows are gone, the file is listed in purge_pending)
 *   as2.stored      an AS2 message and its MDN committed, the MDN not sent
 *   as2.answered    the same, just after its MDN (or 200) was sent
 */
#ifndef WHARF_FAULT_H
#define WHARF_FAULT_H

/* Count one hit of the named point; SIGKILL the process at the Nth hit
 * when WHARF_FAULT says "name:N". Thread-safe. */
void fault_point(const char *name);

/* Count one hit of the named point; at the Nth hit, when WHARF_FAULT says
 * "name:N:ERR", return ERR's errno (once); else 0. Thread-safe. */
int fault_fail(const char *name);

#endif
