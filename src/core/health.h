/*
 * health.h - what the running `wharf serve` knows is wrong, for GET
 * /healthz and `wharf status` (R18).
 *
 * Problems known today:
 *   - a connector of the stored flow that could not be opened, so it was
 *     left out (its hops wait, a source of it never polls);
 *   - a source whose polls have all failed for at least failing_ms
 *     (wharf.conf health_failing_seconds).
 * One process-wide state under a mutex, fed by the engine. serve mirrors
 * it to a file (DIR/state/health.json) whenever the set of left-out or failing
 * connectors changes, so that `wharf status` in another process computes
 * the same report from it: health_report() is the one function both use.
 */
#ifndef WHARF_HEALTH_H
#define WHARF_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Forget everything; from now on mirror the state to file (NULL: no
 * file) and call a source unhealthy after failing_ms of failed polls. */
void health_start(const char *file, int64_t failing_ms);
/* Forget everything and stop writing the file. */
void health_stop(void);
void health_set_failing_ms(int64_t ms);

/* The connectors of the stored flow that are left out now (replaces the
 * previous list). */
void health_left_out(const char *const *names, size_t n);
/* The connectors running now: failing records of any other are dropped. */
void health_running(const char *const *names, size_t n);
/* One poll of source name failed (ok false) or worked. */
void health_poll(const char *name, bool ok);

/* The state (what the file holds), new reference, caller owns:
 * {"pid":N,"failing_ms":N,"left_out":["name",...],
 *  "failing":[{"connector":"name","since":MS_SINCE_EPOCH},...]} */
json_t *health_state(void);

/* The report of a state at now_ms (ms since the epoch), new reference,
 * caller owns: {"status":"ok"} when there is no problem (*healthy 1),
 * else {"status":"unhealthy","problems":[{"connector":..,
 * "problem":"left_out"|"poll_failing","since":ISO,"seconds":N,"text":..}]}
 * (since and seconds for poll_failing only; *healthy 0). A malformed state
 * counts as unhealthy. */
json_t *health_report(const json_t *state, int64_t now_ms, int *healthy);

#endif
