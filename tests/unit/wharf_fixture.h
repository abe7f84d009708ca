/*
 * wharf_fixture.h - a real data dir for unit tests that need one: made by
 * wharf_init under a fresh temp dir, opened, with a store connection of
 * its own. The fixture owns the wharf and the store until
 * wharf_fixture_close, which also removes the temp dir;
 * wharf_fixture_setup/_teardown allocate and free one as cmocka state.
 */
#ifndef WHARF_TEST_WHARF_FIXTURE_H
#define WHARF_TEST_WHARF_FIXTURE_H

#include "testutil.h"

#include "core/wharf.h"
#include "store/store.h"

struct wharf_fixture {
    char dir[256], data[300];       /* the temp dir; dir/data, the data dir */
    struct wharf *w;
    struct store *st;
};

/* Fails the test when any step fails. */
static inline void wharf_fixture_open(struct wharf_fixture *x)
{
    test_tmpdir(x->dir, sizeof(x->dir));
    snprintf(x->data, sizeof(x->data), "%s/data", x->dir);
    struct error err = {0};
    if (wharf_init(x->data, NULL, &err) != 0 ||
        (x->w = wharf_open(x->data, &err)) == NULL ||
        (x->st = store_open(x->w->db_path, &err)) == NULL)
        fail_msg("data dir %s: %s", x->data, err.msg);
}

static inline void wharf_fixture_close(struct wharf_fixture *x)
{
    store_close(x->st);
    wharf_close(x->w);
    test_rmtree(x->dir);
}

/* cmocka setup and teardown for a test whose state is the fixture. */
static inline int wharf_fixture_setup(void **state)
{
    struct wharf_fixture *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    wharf_fixture_open(x);
    *state = x;
    return 0;
}

static inline int wharf_fixture_teardown(void **state)
{
    wharf_fixture_close(*state);
    free(*state);
    return 0;
}

#endif
