/*
 * status.h - the one status enum shared by every layer of Wharf.
 *
 * Connectors, the engine and the store all answer with these values so a
 * result can travel up without translation. A connector never retries on its
 * own: it says WH_RETRY and the engine owns the schedule.
 */
#ifndef WHARF_STATUS_H
#define WHARF_STATUS_H

enum wh_status {
    WH_OK = 0,      /* done */
    WH_AGAIN,       /* would block: call again later, nothing failed */
    WH_RETRY,       /* transient failure: the engine reschedules */
    WH_FAIL,        /* permanent failure: retrying will not help */
    WH_DECLINED     /* nothing to do */
};

const char *wh_status_name(enum wh_status s);

#endif
