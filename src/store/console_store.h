/*
 * console_store.h - what the console's views read (M8): messages found by
 * text, state, connector, partner and time, paged by key (the id of the
 * last row seen, never an offset, so page 1,000 costs what page 1 does),
 * and messages per hour by outcome for the dashboard.
 */
#ifndef WHARF_CONSOLE_STORE_H
#define WHARF_CONSOLE_STORE_H

#include <stdint.h>

#include "store/store.h"

/* A search; NULL / 0 members do not filter. Strings are borrowed. */
struct store_message_query {
    const char *before_id;      /* only ids below this (the next page) */
    const char *state;
    const char *connector;      /* its source or one of its hops */
    const char *connectors_json;    /* a JSON array of connector names:
                                       source or a hop among them (partner) */
    const char *text;           /* file name part, AS2 Message-ID part
                                   of a receipt */
    const char *id_text;        /* message id prefix */
    const char *text_connectors_json;   /* and messages of these connectors
                                           (partners matching the text) */
    int64_t since_ms, until_ms; /* created_at in [since, until) */
    int64_t limit;
};

/* Newest first (by id, which is time-ordered). *out malloc'ed: free
 * with store_messages_free(*out, *n). 0 or -1 with err. */
int store_message_search(struct store *s, const struct store_message_query *q,
                         struct store_message **out, size_t *n,
                         struct error *err);

/* Messages that reached sent, failed or refused in each of `hours` hours
 * from since_ms (by their last change): counts[i][0..2] = sent, failed,
 * refused of hour i. 0 or -1 with err. */
int store_message_hourly(struct store *s, int64_t since_ms, int hours,
                         int64_t (*counts)[3], struct error *err);

#endif
