/*
 * test_allow.c - address allow-lists (R2, net/allow.h): addresses and
 * CIDR networks parsed strictly (no IPv6, names, ranges, octal, short
 * forms, host bits, prefixes past 32, more than NET_ALLOW_MAX entries),
 * each error naming the entry; matching at the network's edges; an empty
 * list allows every address; JSON arrays as the flow document writes them.
 */
#include "testutil.h"

#include <arpa/inet.h>

#include "net/allow.h"

static uint32_t ip(const char *s)
{
    struct in_addr in;
    assert_int_equal(inet_pton(AF_INET, s, &in), 1);
    return ntohl(in.s_addr);
}

static void test_r02_allow_list_matches_networks_and_addresses(void **st)
{
    (void)st;
    struct net_allow a;
    struct error err = {0};
    assert_int_equal(net_allow_parse(&a, " 192.0.2.0/24, 198.51.100.7 "
                                     "10.0.0.0/8", &err), 0);
    assert_int_equal(a.n, 3);
    assert_true(net_allow_has(&a, ip("192.0.2.0")));
    assert_true(net_allow_has(&a, ip("192.0.2.255")));
    assert_false(net_allow_has(&a, ip("192.0.3.0")));
    assert_false(net_allow_has(&a, ip("192.0.1.255")));
    assert_true(net_allow_has(&a, ip("198.51.100.7")));
    assert_false(net_allow_has(&a, ip("198.51.100.8")));
    assert_true(net_allow_has(&a, ip("10.255.0.1")));
    assert_false(net_allow_has(&a, ip("11.0.0.1")));
    assert_true(net_allow_has_text(&a, "10.1.2.3"));
    assert_false(net_allow_has_text(&a, "127.0.0.1"));
    assert_false(net_allow_has_text(&a, "not an address"));
    assert_false(net_allow_has_text(&a, NULL));
    /* /0 is every address; /32 one */
    assert_int_equal(net_allow_parse(&a, "0.0.0.0/0", &err), 0);
    assert_true(net_allow_has(&a, ip("203.0.113.9")));
    assert_int_equal(net_allow_parse(&a, "203.0.113.9/32", &err), 0);
    assert_true(net_allow_has(&a, ip("203.0.113.9")));
    assert_false(net_allow_has(&a, ip("203.0.113.8")));
}

static void test_r02_empty_allow_list_allows_every_address(void **st)
{
    (void)st;
    struct net_allow a;
    struct error err = {0};
    assert_int_equal(net_allow_parse(&a, "", &err), 0);
    assert_int_equal(a.n, 0);
    assert_true(net_allow_has(&a, ip("203.0.113.9")));
    assert_true(net_allow_has_text(&a, "203.0.113.9"));
    assert_int_equal(net_allow_parse(&a, NULL, &err), 0);
    assert_int_equal(net_allow_parse(&a, " , ", &err), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(net_allow_json(&a, NULL, &err), 0);
    assert_int_equal(a.n, 0);
}

static void refused(const char *list, const char *says)
{
    struct net_allow a;
    struct error err = {0};
    assert_int_equal(net_allow_parse(&a, list, &err), -1);
    assert_int_equal(a.n, 0);
    if (strstr(err.msg, says) == NULL)
        fail_msg("%s: \"%s\" does not say \"%s\"", list, err.msg, says);
}

static void test_r02_allow_list_entries_parsed_strictly(void **st)
{
    (void)st;
    refused("192.0.2.1/24", "host bits set (the network is 192.0.2.0/24)");
    refused("10.0.0.0/33", "\"10.0.0.0/33\" is not an IPv4");
    refused("10.0.0.0/", "is not an IPv4");
    refused("10.0.0.0/+8", "is not an IPv4");
    refused("10.0.0.0/008", "is not an IPv4");
    refused("2001:db8::/32", "IPv6 is not accepted");
    refused("::ffff:10.0.0.1", "IPv6 is not accepted");
    refused("partner.example", "\"partner.example\" is not an IPv4");
    refused("10.0.0.1-10.0.0.9", "is not an IPv4");
    refused("010.0.0.1", "is not an IPv4");       /* octal in inet_aton */
    refused("10.1", "is not an IPv4");            /* a short form */
    refused("192.0.2.0/24, 300.0.0.1", "\"300.0.0.1\"");
    char long_entry[200];
    memset(long_entry, '1', sizeof(long_entry) - 1);
    long_entry[sizeof(long_entry) - 1] = '\0';
    refused(long_entry, "is not an IPv4");
    /* at most NET_ALLOW_MAX entries */
    char many[NET_ALLOW_MAX * 16 + 32] = "";
    for (int i = 0; i <= NET_ALLOW_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many),
                 "10.0.%d.%d,", i / 256, i % 256);
    refused(many, "at most 64 entries");
}

static void test_r02_allow_list_from_json(void **st)
{
    (void)st;
    struct net_allow a;
    struct error err = {0};
    json_t *ok = json_pack("[s,s]", "192.0.2.0/25", "198.51.100.7");
    assert_int_equal(net_allow_json(&a, ok, &err), 0);
    assert_int_equal(a.n, 2);
    assert_true(net_allow_has(&a, ip("192.0.2.127")));
    assert_false(net_allow_has(&a, ip("192.0.2.128")));
    json_decref(ok);
    json_t *bad = json_pack("[s,i]", "192.0.2.0/25", 7);
    assert_int_equal(net_allow_json(&a, bad, &err), -1);
    assert_non_null(strstr(err.msg, "allow_from[1] must be a string"));
    assert_int_equal(a.n, 0);
    json_decref(bad);
    json_t *str = json_string("192.0.2.0/24");
    assert_int_equal(net_allow_json(&a, str, &err), -1);
    assert_non_null(strstr(err.msg, "must be a list"));
    json_decref(str);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_r02_allow_list_matches_networks_and_addresses),
        cmocka_unit_test(test_r02_empty_allow_list_allows_every_address),
        cmocka_unit_test(test_r02_allow_list_entries_parsed_strictly),
        cmocka_unit_test(test_r02_allow_list_from_json),
    };
    return cmocka_run_group_tests_name("allow", tests, NULL, NULL);
}
