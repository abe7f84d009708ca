/*
 * outcome.c - the state, level and text of a hop's outcome (outcome.h),
 * shared by the SQLite and PostgreSQL backends. Owns nothing; never
 * touches a database.
 */
#include "store/outcome.h"

#include <stdio.h>

const char *outcome_state(enum hop_result r)
{
    return r == HOP_SENT ? "sent" : r == HOP_RETRY || r == HOP_WAIT
           ? "retrying" : "failed";
}

const char *outcome_level(enum hop_result r)
{
    return r == HOP_SENT || r == HOP_WAIT ? "info"
           : r == HOP_RETRY ? "warning" : "error";
}

void outcome_text(const struct store_outcome *o, char *buf, size_t n)
{
    if (o->result == HOP_SENT)
        snprintf(buf, n, "sent by %s (attempt %d)%s%s", o->connector,
                 o->attempts, o->receipt ? ": " : "",
                 o->receipt ? o->receipt : "");
    else if (o->result == HOP_RETRY)
        snprintf(buf, n, "attempt %d by %s failed, will retry: %s",
                 o->attempts, o->connector, o->error ? o->error : "-");
    else if (o->result == HOP_WAIT)
        snprintf(buf, n, "%s: %s", o->connector, o->receipt);
    else
        snprintf(buf, n, "failed at %s after %d attempt(s): %s",
                 o->connector, o->attempts, o->error ? o->error : "-");
}
