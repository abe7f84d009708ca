/*
 * fuzz_flow.c - libFuzzer target for the flow document loader (flow_parse):
 * the JSON an operator imports with `wharf flow import` and, later, an API
 * body. Untrusted input, so it must never crash, leak or hang.
 *
 * Oracles beyond the sanitizers: a rejected document always comes with an
 * error message and leaves the rows empty; an accepted one has links only
 * between its own connectors, and its normalized form (rows written back
 * as a document) parses again to the same rows.
 *
 * The file type's check() opens its folders, which must lie under the
 * allowed roots (util/confine.h): the target allows /tmp (with an empty
 * data dir of its own inside), so seeds use /tmp. Must never write
 * anything but that empty folder.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/flow.h"
#include "util/confine.h"

static char data_dir[] = "/tmp/wharf-fuzz-flow-XXXXXX";

static void data_dir_remove(void)
{
    rmdir(data_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (mkdtemp(data_dir) == NULL || confine_configure(data_dir, "/tmp",
                                                       NULL) < 0)
        abort();
    atexit(data_dir_remove);
    return 0;
}

static int conn_index(const struct store_flow *f, const char *name)
{
    for (size_t i = 0; i < f->nconns; i++)
        if (strcmp(f->conns[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The rows as a flow document again (what flow_export writes). */
static char *rows_to_doc(const struct store_flow *f)
{
    json_t *root = json_object(), *conns = json_array(), *links = json_array();
    json_object_set_new(root, "connectors", conns);
    json_object_set_new(root, "links", links);
    for (size_t i = 0; i < f->nconns; i++) {
        json_t *cfg = json_loads(f->conns[i].config, 0, NULL);
        if (cfg == NULL)
            abort();    /* a normalized config must be JSON */
        json_array_append_new(conns, json_pack("{s:s, s:s, s:o}", "name",
                              f->conns[i].name, "type", f->conns[i].type,
                              "config", cfg));
    }
    for (size_t i = 0; i < f->nlinks; i++)
        json_array_append_new(links, json_pack("[s, s]", f->links[i].src,
                                               f->links[i].dst));
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static int rows_equal(const struct store_flow *a, const struct store_flow *b)
{
    if (a->nconns != b->nconns || a->nlinks != b->nlinks)
        return 0;
    for (size_t i = 0; i < a->nconns; i++)
        if (strcmp(a->conns[i].name, b->conns[i].name) ||
            strcmp(a->conns[i].type, b->conns[i].type) ||
            strcmp(a->conns[i].config, b->conns[i].config))
            return 0;
    for (size_t i = 0; i < a->nlinks; i++)
        if (strcmp(a->links[i].src, b->links[i].src) ||
            strcmp(a->links[i].dst, b->links[i].dst))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct store_flow f;
    struct error err = {0};
    if (flow_parse((const char *)data, size, &f, &err) < 0) {
        if (err.msg[0] == '\0' || f.nconns != 0 || f.nlinks != 0 ||
            f.conns != NULL || f.links != NULL)
            abort();
        store_flow_clear(&f);
        return 0;
    }
    for (size_t i = 0; i < f.nlinks; i++)
        if (conn_index(&f, f.links[i].src) < 0 ||
            conn_index(&f, f.links[i].dst) < 0 ||
            strcmp(f.links[i].src, f.links[i].dst) == 0)
            abort();
    char *doc = rows_to_doc(&f);
    if (doc != NULL) {
        struct store_flow g;
        struct error err2 = {0};
        if (flow_parse(doc, strlen(doc), &g, &err2) < 0 || !rows_equal(&f, &g))
            abort();    /* normalized form must round-trip */
        store_flow_clear(&g);
        free(doc);
    }
    store_flow_clear(&f);
    return 0;
}
