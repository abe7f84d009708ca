/*
 * test_connector_options.c - the config map of connector types (the
 * isolation issue, step 3): the one generic validator
 * (connector_options_check) over a table that uses every type and flag,
 * the typed getters with their declared defaults, the secret and file
 * keys derived from the table (no second list), the descriptions
 * (connector_types_json: no secret default, every type of the registry)
 * and the JSON Schema of a config.
 */
#include "testutil.h"

#include <sys/stat.h>
#include <unistd.h>

#include "connectors/connector.h"
#include "util/confine.h"

static char ROOT[256], DATA[300], INSIDE[300];

static int setup(void **state)
{
    (void)state;
    test_tmpdir(ROOT, sizeof(ROOT));
    snprintf(DATA, sizeof(DATA), "%s/data", ROOT);
    snprintf(INSIDE, sizeof(INSIDE), "%s/data/in", ROOT);
    if (mkdir(DATA, 0700) != 0 || mkdir(INSIDE, 0700) != 0)
        return -1;
    return confine_configure(DATA, ROOT, NULL) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    confine_reset();
    test_rmtree(ROOT);
    return 0;
}

static int even_valid(const char *key, const json_t *v, struct error *err)
{
    return json_integer_value(v) % 2 == 0 ? 0
           : error_set(err, "%s must be even", key);
}

/* Every type and flag once. */
static const struct conn_option T[] = {
    { "name", CONN_STRING, CONN_REQUIRED, NULL, 0, 8, NULL, NULL,
      "a short name", NULL },
    { "port", CONN_INT, 0, "22", 1, 100, NULL, NULL, "a port", even_valid },
    { "on", CONN_BOOL, 0, "true", 0, 0, NULL, NULL, "a switch", NULL },
    { "mode", CONN_ENUM, 0, "a", 0, 0, "a|b|c", NULL, "a mode", NULL },
    { "url", CONN_URL, CONN_ADVANCED, NULL, 0, 0, NULL, NULL, "a URL", NULL },
    { "headers", CONN_MAP, CONN_SECRET_MEMBERS, NULL, 0, 2, NULL, NULL,
      "headers", NULL },
    { "codes", CONN_LIST, 0, NULL, 1, 3, "int", NULL, "codes", NULL },
    { "password_file", CONN_SECRET, 0, NULL, 0, 0, NULL, NULL, "a secret",
      NULL },
    { "ca", CONN_FILE, 0, NULL, 0, 0, NULL, NULL, "a public file", NULL },
    { "dir", CONN_FOLDER, 0, NULL, 0, 0, NULL, NULL, "a folder", NULL },
    { "auth", CONN_OBJECT, 0, NULL, 0, 0, NULL, NULL, "auth", NULL },
    { "auth.type", CONN_ENUM, CONN_REQUIRED, NULL, 0, 0, "basic|token",
      NULL, "kind", NULL },
    { "auth.user", CONN_STRING, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=basic", "user", NULL },
    { "auth.token_file", CONN_SECRET, CONN_REQUIRED, NULL, 0, 0, NULL,
      "auth.type=token", "token", NULL },
    { "auth.margin", CONN_INT, 0, "60", 0, 600, NULL, "auth.type=token",
      "margin", NULL },
    { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL, NULL },
};

static const struct connector_type FAKE = { .name = "fake",
                                            .summary = "a test type",
                                            .options = T };

/* Check text against T; want: NULL = accepted, else a part of the error. */
static void expect(const char *text, const char *want)
{
    json_error_t je;
    json_t *cfg = json_loads(text, 0, &je);
    struct error err = {0};
    assert_non_null(cfg);
    int rc = connector_options_check(T, cfg, &err);
    json_decref(cfg);
    if (want == NULL) {
        if (rc != 0)
            print_error("%s refused: %s\n", text, err.msg);
        assert_int_equal(rc, 0);
        return;
    }
    if (rc == 0 || strstr(err.msg, want) == NULL)
        print_error("%s: got \"%s\", wanted \"%s\"\n", text,
                    rc ? err.msg : "(accepted)", want);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, want));
}

static void test_iso_options_required_and_unknown(void **state)
{
    (void)state;
    expect("{\"name\":\"x\"}", NULL);
    expect("{}", "needs name (a short name)");
    expect("{\"name\":\"\"}", "needs name (a short name)");
    expect("{\"name\":\"x\",\"colour\":1}", "unknown key \"colour\"");
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"basic\",\"user\":\"u\","
           "\"x\":1}}", "auth: unknown key \"x\"");
    /* the map's members are free names */
    expect("{\"name\":\"x\",\"headers\":{\"X-A\":\"1\"}}", NULL);
}

static void test_iso_options_types(void **state)
{
    (void)state;
    expect("{\"name\":5}", "name must be a string");
    expect("{\"name\":\"too-long-name\"}", "name must be at most 8");
    expect("{\"name\":\"a\\nb\"}", "name must be one line");
    expect("{\"name\":\"x\",\"port\":\"22\"}", "port must be 1..100");
    expect("{\"name\":\"x\",\"port\":101}", "port must be 1..100");
    expect("{\"name\":\"x\",\"port\":0}", "port must be 1..100");
    expect("{\"name\":\"x\",\"port\":2.5}", "port must be 1..100");
    expect("{\"name\":\"x\",\"port\":3}", "port must be even");    /* valid() */
    expect("{\"name\":\"x\",\"port\":100}", NULL);
    expect("{\"name\":\"x\",\"on\":\"yes\"}", "on must be true or false");
    expect("{\"name\":\"x\",\"mode\":\"d\"}",
           "mode must be \"a\", \"b\" or \"c\", not \"d\"");
    expect("{\"name\":\"x\",\"mode\":\"c\"}", NULL);
    expect("{\"name\":\"x\",\"url\":\"no url\"}", "url must be a URL");
    expect("{\"name\":\"x\",\"url\":\"https://h/p\"}", NULL);
    expect("{\"name\":\"x\",\"headers\":[]}", "headers must be an object");
    expect("{\"name\":\"x\",\"headers\":{\"A\":\"1\",\"B\":\"2\",\"C\":\"3\"}}",
           "headers: at most 2 members");
    expect("{\"name\":\"x\",\"headers\":{\"A\":1}}",
           "headers.A needs a one-line string value");
    /* a credential-named member may be a secret form, others may not */
    expect("{\"name\":\"x\",\"headers\":{\"X-Api-Key\":{\"content\":\"k\"}}}",
           NULL);
    expect("{\"name\":\"x\",\"headers\":{\"X-Plain\":{\"content\":\"k\"}}}",
           "headers.X-Plain needs a one-line string value");
    expect("{\"name\":\"x\",\"codes\":[]}", "codes must be a list of 1..3");
    expect("{\"name\":\"x\",\"codes\":[1,2,3,4]}", "codes must be a list");
    expect("{\"name\":\"x\",\"codes\":[\"1\"]}", "codes must be a list of "
           "integers");
    expect("{\"name\":\"x\",\"codes\":[200,201]}", NULL);
    expect("{\"name\":\"x\",\"password_file\":{\"content\":\"s\"}}", NULL);
    expect("{\"name\":\"x\",\"password_file\":{\"nope\":1}}", "password_file");
    expect("{\"name\":\"x\",\"ca\":5}", "ca");
    expect("{\"name\":\"x\",\"auth\":\"basic\"}", "auth: must be an object");
}

static void test_iso_options_folder_confined(void **state)
{
    (void)state;
    char text[800];
    snprintf(text, sizeof(text), "{\"name\":\"x\",\"dir\":\"%s\"}", ROOT);
    expect(text, NULL);
    snprintf(text, sizeof(text), "{\"name\":\"x\",\"dir\":\"%s\"}", INSIDE);
    expect(text, "inside the data directory");
    expect("{\"name\":\"x\",\"dir\":\"relative/dir\"}",
           "dir must be an absolute path");
    expect("{\"name\":\"x\",\"dir\":7}", "dir must be a string");
}

static void test_iso_options_conditions(void **state)
{
    (void)state;
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"basic\",\"user\":\"u\"}}",
           NULL);
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"token\",\"token_file\":"
           "{\"content\":\"t\"},\"margin\":5}}", NULL);
    /* required only where its condition holds */
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"basic\"}}",
           "needs auth.user");
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"token\"}}",
           "needs auth.token_file");
    /* a key of another mode is refused, naming the condition */
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"basic\",\"user\":\"u\","
           "\"margin\":5}}",
           "auth.margin does not apply when auth.type is \"basic\"");
    expect("{\"name\":\"x\",\"auth\":{\"type\":\"oops\"}}",
           "auth.type must be \"basic\" or \"token\"");
    expect("{\"name\":\"x\",\"auth\":{}}", "needs auth.type");
}

static void test_iso_options_defaults_through_getters(void **state)
{
    (void)state;
    json_error_t je;
    struct connector c = { .type = &FAKE, .name = "c" };
    c.config = json_loads("{\"name\":\"x\",\"auth\":{\"type\":\"token\"}}",
                          0, &je);
    assert_int_equal(conn_int(&c, "port"), 22);
    assert_int_equal(conn_bool(&c, "on"), 1);
    assert_string_equal(conn_str(&c, "mode"), "a");
    assert_string_equal(conn_str(&c, "name"), "x");
    assert_int_equal(conn_int(&c, "auth.margin"), 60);
    assert_null(conn_str(&c, "url"));
    assert_null(conn_get(&c, "codes"));
    assert_null(conn_str(&c, "undeclared"));    /* a bug, logged */
    json_decref(c.config);
    c.config = json_loads("{\"name\":\"x\",\"port\":8,\"on\":false,\"mode\":"
                          "\"b\",\"auth\":{\"type\":\"token\",\"margin\":0}}",
                          0, &je);
    assert_int_equal(conn_int(&c, "port"), 8);
    assert_int_equal(conn_bool(&c, "on"), 0);
    assert_string_equal(conn_str(&c, "mode"), "b");
    assert_int_equal(conn_int(&c, "auth.margin"), 0);
    json_decref(c.config);
    /* the common keys' defaults come from their table too */
    const struct conn_option *r = connector_option_find(
        connector_common_options(), "retry.max_attempts");
    assert_non_null(r);
    assert_string_equal(r->def, "10");
}

static void test_iso_options_secret_keys_from_the_table(void **state)
{
    (void)state;
    assert_int_equal(connector_option_sealed(&FAKE, "password_file"), 1);
    assert_int_equal(connector_option_sealed(&FAKE, "auth.token_file"), 1);
    assert_int_equal(connector_option_sealed(&FAKE, "ca"), 2);
    assert_int_equal(connector_option_sealed(&FAKE, "name"), 0);
    assert_int_equal(connector_option_sealed(&FAKE, "headers.X-Api-Key"), 1);
    assert_int_equal(connector_option_sealed(&FAKE, "headers.X-Plain"), 0);
    /* the real types: what the old .secrets/.files lists said */
    const struct connector_type *http = connector_type_find("http");
    const struct connector_type *sftp = connector_type_find("sftp");
    assert_int_equal(connector_option_sealed(http, "auth.password_file"), 1);
    assert_int_equal(connector_option_sealed(http, "auth.key"), 1);
    assert_int_equal(connector_option_sealed(http, "auth.cert"), 2);
    assert_int_equal(connector_option_sealed(http, "tls_ca"), 2);
    assert_int_equal(connector_option_sealed(http, "proxy.credentials_file"),
                     1);
    assert_int_equal(connector_option_sealed(http, "headers.Authorization"),
                     1);
    assert_int_equal(connector_option_sealed(sftp, "key_passphrase_file"), 1);
    assert_int_equal(connector_option_sealed(sftp, "host"), 0);
}

static void test_iso_types_json_and_schema(void **state)
{
    (void)state;
    json_t *all = connector_types_json();
    const struct connector_type *const *types;
    size_t n = connector_types(&types);
    assert_int_equal(json_array_size(json_object_get(all, "types")), n);
    size_t i, k;
    json_t *t, *o;
    json_array_foreach(json_object_get(all, "types"), i, t) {
        assert_string_equal(json_string_value(json_object_get(t, "name")),
                            types[i]->name);
        json_array_foreach(json_object_get(t, "options"), k, o) {
            /* a secret has no default to show */
            if (json_is_true(json_object_get(o, "secret")))
                assert_null(json_object_get(o, "default"));
        }
        assert_true(json_array_size(json_object_get(t, "actions")) >= 1);
    }
    json_decref(all);
    json_t *s = connector_config_schema(&FAKE);
    json_t *props = json_object_get(s, "properties");
    assert_true(json_is_false(json_object_get(s, "additionalProperties")));
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(props, "port"), "default")), 22);
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(props, "port"), "maximum")), 100);
    json_t *auth = json_object_get(props, "auth");
    assert_non_null(json_object_get(json_object_get(auth, "properties"),
                                    "token_file"));
    /* required where no condition: auth.type yes, auth.user no */
    assert_string_equal(json_string_value(json_array_get(
        json_object_get(auth, "required"), 0)), "type");
    assert_int_equal(json_array_size(json_object_get(auth, "required")), 1);
    assert_non_null(json_object_get(props, "retry"));    /* common keys */
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iso_options_required_and_unknown),
        cmocka_unit_test(test_iso_options_types),
        cmocka_unit_test(test_iso_options_folder_confined),
        cmocka_unit_test(test_iso_options_conditions),
        cmocka_unit_test(test_iso_options_defaults_through_getters),
        cmocka_unit_test(test_iso_options_secret_keys_from_the_table),
        cmocka_unit_test(test_iso_types_json_and_schema),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
