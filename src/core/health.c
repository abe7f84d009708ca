/*
 * health.c - owns the process-wide health state of health.h: the names of
 * the left-out connectors and, per failing source, when its failures
 * began; the failing threshold; and the mirror file it rewrites (temp
 * file, rename: readers never see half a file) when that state changes.
 *
 * Must never: hold its mutex while calling anything but libc, jansson and
 * its own helpers; write the file on every poll (only when the set of
 * problems changes); report an error text (the report is unauthenticated
 * on /healthz: names and times only, the log has the reasons).
 */
#include "core/health.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/id.h"

struct health_failing {
    char *name;
    int64_t since;              /* ms since the epoch, first failed poll */
};

static struct {
    pthread_mutex_t mu;
    char *file;                 /* mirror, or NULL */
    int64_t failing_ms;
    char **left_out;
    size_t nleft;
    struct health_failing *failing;
    size_t nfailing, capfailing;
    json_t *checks;             /* the periodic checks' problems, or NULL */
} health_g = { .mu = PTHREAD_MUTEX_INITIALIZER, .failing_ms = 60000 };

/* ---- the state ------------------------------------------------------------ */

static void health_clear_locked(void)
{
    for (size_t i = 0; i < health_g.nleft; i++)
        free(health_g.left_out[i]);
    free(health_g.left_out);
    health_g.left_out = NULL;
    health_g.nleft = 0;
    for (size_t i = 0; i < health_g.nfailing; i++)
        free(health_g.failing[i].name);
    free(health_g.failing);
    health_g.failing = NULL;
    health_g.nfailing = health_g.capfailing = 0;
    json_decref(health_g.checks);
    health_g.checks = NULL;
}

static json_t *health_state_locked(void)
{
    json_t *left = json_array(), *failing = json_array();
    for (size_t i = 0; i < health_g.nleft; i++)
        json_array_append_new(left, json_string(health_g.left_out[i]));
    for (size_t i = 0; i < health_g.nfailing; i++)
        json_array_append_new(failing, json_pack("{s:s, s:I}", "connector",
            health_g.failing[i].name, "since",
            (json_int_t)health_g.failing[i].since));
    json_t *checks = health_g.checks ? json_deep_copy(health_g.checks)
                                     : json_array();
    return json_pack("{s:i, s:I, s:o, s:o, s:o}", "pid", (int)getpid(),
                     "failing_ms", (json_int_t)health_g.failing_ms,
                     "left_out", left, "failing", failing, "checks", checks);
}

/* Rewrite the mirror: FILE.tmp, then rename. A failure only makes `wharf
 * status` stale; /healthz does not depend on the file. */
static void health_write_locked(void)
{
    if (health_g.file == NULL)
        return;
    json_t *st = health_state_locked();
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL;
    json_decref(st);
    size_t n = strlen(health_g.file) + 5;
    char *tmp = malloc(n);
    if (text && tmp) {
        snprintf(tmp, n, "%s.tmp", health_g.file);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(text);
        int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len;
        if (fd >= 0 && close(fd) != 0)
            ok = 0;
        if (!ok || rename(tmp, health_g.file) != 0)
            unlink(tmp);
    }
    free(tmp);
    free(text);
}

void health_start(const char *file, int64_t failing_ms)
{
    pthread_mutex_lock(&health_g.mu);
    health_clear_locked();
    free(health_g.file);
    health_g.file = file ? strdup(file) : NULL;
    health_g.failing_ms = failing_ms;
    health_write_locked();
    pthread_mutex_unlock(&health_g.mu);
}

void health_stop(void)
{
    pthread_mutex_lock(&health_g.mu);
    health_clear_locked();
    free(health_g.file);
    health_g.file = NULL;
    pthread_mutex_unlock(&health_g.mu);
}

void health_set_failing_ms(int64_t ms)
{
    pthread_mutex_lock(&health_g.mu);
    if (ms != health_g.failing_ms) {
        health_g.failing_ms = ms;
        health_write_locked();
    }
    pthread_mutex_unlock(&health_g.mu);
}

static bool health_listed(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return true;
    return false;
}

static bool health_same_left_out(const char *const *names, size_t n)
{
    if (n != health_g.nleft)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], health_g.left_out[i]) != 0)
            return false;
    return true;
}

void health_left_out(const char *const *names, size_t n)
{
    pthread_mutex_lock(&health_g.mu);
    if (health_same_left_out(names, n)) {
        pthread_mutex_unlock(&health_g.mu);
        return;
    }
    for (size_t i = 0; i < health_g.nleft; i++)
        free(health_g.left_out[i]);
    free(health_g.left_out);
    health_g.nleft = 0;
    health_g.left_out = calloc(n + 1, sizeof(*health_g.left_out));
    for (size_t i = 0; health_g.left_out && i < n; i++)
        if ((health_g.left_out[health_g.nleft] = strdup(names[i])) != NULL)
            health_g.nleft++;
    health_write_locked();
    pthread_mutex_unlock(&health_g.mu);
}

void health_running(const char *const *names, size_t n)
{
    pthread_mutex_lock(&health_g.mu);
    size_t k = 0;
    for (size_t i = 0; i < health_g.nfailing; i++) {
        if (health_listed(names, n, health_g.failing[i].name))
            health_g.failing[k++] = health_g.failing[i];
        else
            free(health_g.failing[i].name);
    }
    bool changed = k != health_g.nfailing;
    health_g.nfailing = k;
    if (changed)
        health_write_locked();
    pthread_mutex_unlock(&health_g.mu);
}

static ssize_t health_failing_index(const char *name)
{
    for (size_t i = 0; i < health_g.nfailing; i++)
        if (strcmp(health_g.failing[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

/* With the mutex held: record that name started failing. */
static void health_add_failing_locked(const char *name)
{
    if (health_g.nfailing == health_g.capfailing) {
        size_t cap = health_g.capfailing ? 2 * health_g.capfailing : 8;
        void *p = realloc(health_g.failing, cap * sizeof(*health_g.failing));
        if (p == NULL)
            return;
        health_g.failing = p;
        health_g.capfailing = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return;
    health_g.failing[health_g.nfailing].name = copy;
    health_g.failing[health_g.nfailing++].since = time_now_ms();
    health_write_locked();
}

void health_poll(const char *name, bool ok)
{
    pthread_mutex_lock(&health_g.mu);
    ssize_t i = health_failing_index(name);
    if (!ok && i < 0) {
        health_add_failing_locked(name);
    } else if (ok && i >= 0) {
        free(health_g.failing[i].name);
        health_g.failing[i] = health_g.failing[--health_g.nfailing];
        health_write_locked();
    }
    pthread_mutex_unlock(&health_g.mu);
}

/* The since of problem (kind, name) in the current checks, or 0. */
static int64_t health_check_since_locked(const char *kind, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(health_g.checks, i, v) {
        const char *k = json_string_value(json_object_get(v, "problem"));
        const char *n = json_string_value(json_object_get(v, "name"));
        if (k && n && strcmp(k, kind) == 0 && strcmp(n, name) == 0)
            return json_integer_value(json_object_get(v, "since"));
    }
    return 0;
}

/* The kinds, names and texts of two check lists are the same. */
static bool health_checks_equal(const json_t *a, const json_t *b)
{
    if (json_array_size(a) != json_array_size(b))
        return false;
    for (size_t i = 0; i < json_array_size(a); i++) {
        static const char *const keys[] = { "problem", "name", "text" };
        for (int k = 0; k < 3; k++) {
            const char *x = json_string_value(json_object_get(
                json_array_get(a, i), keys[k]));
            const char *y = json_string_value(json_object_get(
                json_array_get(b, i), keys[k]));
            if (!x || !y || strcmp(x, y) != 0)
                return false;
        }
    }
    return true;
}

void health_checks(const json_t *problems)
{
    json_t *next = json_array();
    int64_t now = time_now_ms();
    size_t i;
    json_t *v;
    pthread_mutex_lock(&health_g.mu);
    json_array_foreach(problems, i, v) {
        const char *kind = json_string_value(json_object_get(v, "problem"));
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *text = json_string_value(json_object_get(v, "text"));
        if (!kind || !name || !text)
            continue;
        int64_t since = health_check_since_locked(kind, name);
        json_array_append_new(next, json_pack("{s:s, s:s, s:s, s:I}",
            "problem", kind, "name", name, "text", text, "since",
            (json_int_t)(since ? since : now)));
    }
    bool same = health_g.checks ? health_checks_equal(next, health_g.checks)
                                : json_array_size(next) == 0;
    json_decref(health_g.checks);
    health_g.checks = next;
    if (!same)
        health_write_locked();
    pthread_mutex_unlock(&health_g.mu);
}

json_t *health_state(void)
{
    pthread_mutex_lock(&health_g.mu);
    json_t *st = health_state_locked();
    pthread_mutex_unlock(&health_g.mu);
    return st;
}

/* ---- the report --------------------------------------------------------------- */

static void health_add_left_out(json_t *problems, const char *name)
{
    char text[512];
    snprintf(text, sizeof(text), "connector %s could not be opened and is "
             "left out (the log says why; fix it, then import the flow "
             "again or restart)", name);
    json_array_append_new(problems, json_pack("{s:s, s:s, s:s}", "connector",
                          name, "problem", "left_out", "text", text));
}

static void health_add_failing(json_t *problems, const char *name,
                               int64_t since, int64_t now)
{
    char iso[32], text[512];
    long long secs = (long long)((now - since) / 1000);
    time_iso(since, iso, sizeof(iso));
    snprintf(text, sizeof(text), "source %s: every poll has failed for %lld "
             "s, since %s (the log says why)", name, secs, iso);
    json_array_append_new(problems, json_pack("{s:s, s:s, s:s, s:I, s:s}",
                          "connector", name, "problem", "poll_failing",
                          "since", iso, "seconds", (json_int_t)secs,
                          "text", text));
}

json_t *health_report(const json_t *state, int64_t now_ms, int *healthy)
{
    json_t *problems = json_array();
    const json_t *left = json_object_get(state, "left_out");
    const json_t *failing = json_object_get(state, "failing");
    json_int_t failing_ms = json_integer_value(
        json_object_get(state, "failing_ms"));
    int valid = json_is_array(left) && json_is_array(failing);
    size_t i;
    json_t *v;
    json_array_foreach(left, i, v) {
        if (json_is_string(v))
            health_add_left_out(problems, json_string_value(v));
    }
    json_array_foreach(failing, i, v) {
        const char *name = json_string_value(json_object_get(v, "connector"));
        json_int_t since = json_integer_value(json_object_get(v, "since"));
        if (name && now_ms - since >= failing_ms)
            health_add_failing(problems, name, since, now_ms);
    }
    json_array_foreach(json_object_get(state, "checks"), i, v) {
        const char *kind = json_string_value(json_object_get(v, "problem"));
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *text = json_string_value(json_object_get(v, "text"));
        char iso[32];
        time_iso(json_integer_value(json_object_get(v, "since")), iso,
                 sizeof(iso));
        if (kind && name && text)
            json_array_append_new(problems, json_pack("{s:s, s:s, s:s, s:s}",
                "problem", kind, "name", name, "since", iso, "text", text));
    }
    if (!valid)
        json_array_append_new(problems, json_pack("{s:s, s:s}", "problem",
            "unreadable", "text", "the health state of the running server "
            "cannot be read"));
    *healthy = json_array_size(problems) == 0;
    if (*healthy) {         /* what /healthz always answered when ok */
        json_decref(problems);
        return json_pack("{s:s}", "status", "ok");
    }
    return json_pack("{s:s, s:o}", "status", "unhealthy", "problems",
                     problems);
}
