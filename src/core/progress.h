/*
 * progress.h - transfers in flight (M8 dashboard): bytes done of bytes
 * total for every hop that moves bytes, as it moves them.
 *
 * One process-wide table under a mutex, PROGRESS_MAX slots. A transfer
 * belongs to the thread that began it (the engine's worker for a
 * delivery, the listener or poller thread for an intake): the thread's
 * current transfer is what progress_add / progress_set count, so code
 * that moves bytes (a copy loop, libcurl's progress callback) needs no
 * handle. When the table is full a transfer is simply not shown.
 */
#ifndef WHARF_PROGRESS_H
#define WHARF_PROGRESS_H

#include <stdint.h>

#include <jansson.h>

#define PROGRESS_MAX 64

/* Begin a transfer of message msgid at connector (strings copied):
 * direction "send" or "receive", total bytes or -1 when unknown. It
 * becomes this thread's current transfer (replacing one not ended). */
void progress_begin(const char *msgid, const char *connector,
                    const char *direction, int64_t total);
/* n more bytes of this thread's current transfer (none: nothing). */
void progress_add(int64_t n);
/* Bytes done and total (total <= 0: keep the known one) of this
 * thread's current transfer, as libcurl reports them. */
void progress_set(int64_t done, int64_t total);
/* libcurl's counts (its XFERINFOFUNCTION's): a send counts what went up
 * (and its total), a receive takes only the total down (its bytes are
 * counted by whoever writes them). */
void progress_curl(int64_t dltotal, int64_t dlnow, int64_t ultotal,
                   int64_t ulnow);
/* This thread's current transfer is over. */
void progress_end(void);

/* The transfers in flight, oldest first, new reference (caller owns):
 * [{"message_id","connector","direction","bytes_done","bytes_total"
 * (null when unknown),"started_at","updated_at" (ms since the epoch),
 * "rate_bps"}]. */
json_t *progress_json(void);

#endif
