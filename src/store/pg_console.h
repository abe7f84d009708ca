/*
 * pg_console.h - the PostgreSQL statements of console_store.h (message
 * search, messages per hour), in pg_console.c. Included only by
 * sqlite_console.c and pg_console.c. Behaviour and ownership: as
 * console_store.h says for the store_ function of the same name.
 */
#ifndef WHARF_PG_CONSOLE_H
#define WHARF_PG_CONSOLE_H

#include "store/console_store.h"

struct pg_store;

int pgs_message_search(struct pg_store *p,
                       const struct store_message_query *q,
                       struct store_message **out, size_t *n,
                       struct error *err);
int pgs_message_hourly(struct pg_store *p, int64_t since_ms, int hours,
                       int64_t (*counts)[3], struct error *err);

#endif
