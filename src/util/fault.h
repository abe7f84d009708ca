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
 */
#ifndef WHARF_FAULT_H
#define WHARF_FAULT_H

/* Count one hit of the named point; SIGKILL the process at the Nth hit
 * when WHARF_FAULT says "name:N". Thread-safe. */
void fault_point(const char *name);

#endif
