/*
 * env_internal.h - the parts of the connector environment as core sees
 * them (core/env.c, core/jobs.c). Connectors see only connectors/env.h,
 * where these structs are opaque.
 */
#ifndef WHARF_ENV_INTERNAL_H
#define WHARF_ENV_INTERNAL_H

#include <pthread.h>

#include "connectors/env.h"
#include "core/profile.h"

struct wharf;
struct env_full;

struct conn_keys {
    struct env_full *e;
    pthread_mutex_t mu;
    int profile_loaded, has_profile;    /* under mu */
    struct profile prof;
    struct partner **parts;             /* loaded when first asked for */
    size_t nparts;
};

struct conn_transport {
    struct env_full *e;
    char proxy[512], no_proxy[1024], credentials[1024];
};

struct conn_state {
    struct env_full *e;
};

struct conn_history {
    struct env_full *e;
};

struct conn_jobs {
    struct env_full *e;
    void (*wake)(void *);
    void *wake_ud;
};

struct env_full {
    struct conn_env pub;        /* first: a struct conn_env * is this */
    struct wharf *w;
    struct conn_settings settings;
    struct conn_keys keys;
    struct conn_transport net;
    struct conn_state state;
    struct conn_history history;
    struct conn_jobs jobs;
};

#endif
