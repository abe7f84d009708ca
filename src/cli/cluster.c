/*
 * cluster.c (cli) - `wharf cluster status [--json]`: the nodes that serve
 * this data dir's database (R21): each running `wharf serve` beats into
 * the `nodes` table (core/engine.c), so on PostgreSQL every node of the
 * cluster shows, on SQLite the one node. Reads only; owns nothing beyond
 * the call (status).
 *
 * A node is "running" while its last beat is within three beat intervals,
 * "stopped" after a clean stop, and "silent" otherwise (killed, or cut off
 * from the database: its leases run out and other nodes take its work).
 *
 * `wharf cluster password --from FILE`: the database's password sealed
 * into this node's data dir (core/dbpass.h) once it was shown to work.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/dbpass.h"
#include "core/wharf.h"
#include "store/node_store.h"
#include "store/store.h"
#include "util/id.h"
#include "util/secret.h"

static json_t *nodes_json(const struct store_node *n, size_t count,
                          int64_t now)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < count; i++)
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
            "id", n[i].id, "state", cli_node_state(&n[i], now),
            "address", n[i].address, "version", n[i].version,
            "started_at", (json_int_t)n[i].started_at,
            "last_heartbeat", (json_int_t)n[i].seen_at,
            "seconds_since_heartbeat", (json_int_t)((now - n[i].seen_at) / 1000),
            "leases", (json_int_t)n[i].leases));
    return arr;
}

static void nodes_print(const struct wharf *w, const struct store_node *n,
                        size_t count, int64_t now)
{
    printf("store: %s (%zu node%s)\n", wharf_store_shared(w)
           ? "postgresql" : "sqlite", count, count == 1 ? "" : "s");
    for (size_t i = 0; i < count; i++)
        printf("  %-28s %-8s %-6s leases=%-5lld heartbeat %llds ago  %s\n",
               n[i].id, cli_node_state(&n[i], now), n[i].version,
               (long long)n[i].leases,
               (long long)((now - n[i].seen_at) / 1000), n[i].address);
}

static int cluster_status(const char *data, int json)
{
    struct wharf *w;
    struct store *st;
    if (cli_open(data, &w, &st) != 0)
        return EXIT_FAIL;
    struct store_node *n = NULL;
    size_t count = 0;
    struct error err = {0};
    int rc = store_nodes(st, &n, &count, &err) < 0
             ? cli_fail("%s", err.msg) : EXIT_OK;
    int64_t now = time_now_ms();
    if (rc == EXIT_OK && json) {
        json_t *o = json_pack("{s:s, s:o}", "store", wharf_store_shared(w)
                              ? "postgresql" : "sqlite", "nodes",
                              nodes_json(n, count, now));
        char *t = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else if (rc == EXIT_OK) {
        nodes_print(w, n, count, now);
    }
    store_nodes_free(n, count);
    cli_close(w, st);
    return rc;
}

/* The new password works (a connection with it), then it is sealed into
 * the data dir: a wrong one is refused before anything is written. */
static int cluster_password(const char *data, const char *from)
{
    struct error err = {0};
    struct secret *pw = dbpass_read_file(from, &err);
    if (pw == NULL)
        return cli_fail("--from: %s", err.msg);
    struct wharf *w = wharf_open(data, &err);
    struct store *st = NULL;
    int rc = w == NULL ? -1
           : !wharf_store_shared(w)
           ? error_set(&err, "%s keeps its data in SQLite: there is no "
                       "database password", data)
           : store_password_set(pw, &err);
    if (rc == 0 && (st = store_open(w->db_path, &err)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = dbpass_save(w->vault, w->dir, pw, &err);
    secret_free(pw);
    if (rc < 0) {
        store_close(st);
        wharf_close(w);
        return cli_fail("%s (nothing was changed)", err.msg);
    }
    printf("the store password is sealed in %s/" DBPASS_FILE "\n", data);
    rc = cli_audit(w, st, "store.password", DBPASS_FILE, NULL);
    cli_close(w, st);
    return rc;
}

static int cluster_run(int argc, char **argv)
{
    static const char *const opts[] = { "--json", "--from=", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_cluster, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.npos == 1 && strcmp(a.pos[0], "password") == 0 && a.values[1])
        return cluster_password(a.data, a.values[1]);
    if (a.npos != 1 || strcmp(a.pos[0], "status") != 0)
        return cli_usage(&cmd_cluster, "expected: wharf cluster status, or "
                         "wharf cluster password --from FILE");
    return cluster_status(a.data, a.flags[0]);
}

const struct cli_cmd cmd_cluster = {
    "cluster", "the nodes serving this database: id, state, leases",
    "wharf cluster status [--data DIR] [--json]\n"
    "  Every node that serves this data dir's database (on PostgreSQL the\n"
    "  nodes of the cluster; on SQLite this one): its id (host/pid), state\n"
    "  (running: beat within three intervals; stopped: stopped cleanly;\n"
    "  silent: killed or cut off, its leases run out and other nodes take\n"
    "  its work), version, listeners, seconds since its last heartbeat and\n"
    "  the hops and jobs it holds leased.\n"
    "wharf cluster password [--data DIR] --from FILE\n"
    "  Seal the database's password (the first line of FILE, mode 0600)\n"
    "  into DIR/state/store-password with the master key, once a\n"
    "  connection with it succeeded (a wrong one changes nothing). Every\n"
    "  node keeps its own copy; restart serve to use it.\n",
    cluster_run,
};
