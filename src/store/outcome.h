/*
 * outcome.h - what both store backends say about a hop's outcome
 * (outcome.c): the state it puts the hop in, the event's level and text.
 * Included by sqlite.c, pg.c and pg_jobs.c only: one wording for both
 * backends, so a message's history reads the same on either.
 */
#ifndef WHARF_STORE_OUTCOME_H
#define WHARF_STORE_OUTCOME_H

#include <stddef.h>

#include "store/store.h"

/* The hop's new state: sent, retrying (retry or wait) or failed. */
const char *outcome_state(enum hop_result r);
/* The event's level: info, warning (retry) or error. */
const char *outcome_level(enum hop_result r);
/* The event's text into buf (n bytes, cut if longer). */
void outcome_text(const struct store_outcome *o, char *buf, size_t n);

#endif
