/* Which client address the per-IP limit sees behind trusted proxies (gateway/client_address.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/client_address.h"

static struct client_address_trust trust_of(const char *list)
{
    struct client_address_trust trust;
    char why[160];
    assert_int_equal(client_address_trust_parse(list, &trust, why), 0);
    return trust;
}

static void assert_pick(const char *list, const char *peer, const char *const *forwarded,
                        size_t count, const char *expected)
{
    struct client_address_trust trust = trust_of(list);
    char out[CLIENT_ADDRESS_TEXT_MAX];
    client_address_pick(&trust, peer, forwarded, count, out);
    assert_string_equal(out, expected);
}

static void test_parse_lists(void **state)
{
    (void)state;
    struct client_address_trust trust = trust_of("10.0.0.0/8, 127.0.0.1 ::1,fd00::/8");
    assert_int_equal(trust.count, 4);
    assert_true(client_address_is_trusted(&trust, "10.200.3.4"));
    assert_false(client_address_is_trusted(&trust, "11.0.0.1"));
    assert_true(client_address_is_trusted(&trust, "127.0.0.1"));
    assert_false(client_address_is_trusted(&trust, "127.0.0.2"));
    assert_true(client_address_is_trusted(&trust, "::1"));
    assert_true(client_address_is_trusted(&trust, "fd12:3456::1"));
    assert_false(client_address_is_trusted(&trust, "fe80::1"));
    assert_true(client_address_is_trusted(&trust, "::ffff:10.1.1.1")); /* dual-stack view */
    assert_false(client_address_is_trusted(&trust, "not an address"));
    assert_int_equal(trust_of("").count, 0);
    assert_int_equal(trust_of(" , ").count, 0);
    assert_true(client_address_is_trusted(&(struct client_address_trust){0}, "1.2.3.4") == false);
    assert_int_equal(trust_of("0.0.0.0/0").count, 1);
    assert_true(client_address_is_trusted(
        &(struct client_address_trust[]){trust_of("10.0.0.0/9")}[0], "10.127.255.255"));
    assert_false(client_address_is_trusted(
        &(struct client_address_trust[]){trust_of("10.0.0.0/9")}[0], "10.128.0.0"));
}

static void test_refuse_bad_lists(void **state)
{
    (void)state;
    static const char *const bad[] = {"1.2.3.4/33", "::1/129",      "1.2.3",       "10.0.0.0/",
                                      "10.0.0.0/x", "host.example", "1.2.3.4/8/8", "1.2.3.4/0008"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client_address_trust trust;
        char why[160] = "";
        assert_int_equal(client_address_trust_parse(bad[i], &trust, why), -1);
        assert_non_null(strstr(why, "--trusted-proxy"));
    }
    char many[33 * 12] = "";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "10.0.0.%d,", i);
    struct client_address_trust trust;
    char why[160];
    assert_int_equal(client_address_trust_parse(many, &trust, why), -1);
}

static void test_untrusted_peer_is_the_client(void **state)
{
    (void)state;
    const char *forged[] = {"9.9.9.9"};
    assert_pick("", "203.0.113.7", forged, 1, "203.0.113.7");           /* no list: never */
    assert_pick("10.0.0.0/8", "203.0.113.7", forged, 1, "203.0.113.7"); /* peer not a proxy */
    assert_pick("10.0.0.0/8", "10.0.0.2", NULL, 0, "10.0.0.2");         /* a proxy, no header */
}

static void test_rightmost_untrusted_hop(void **state)
{
    (void)state;
    /* The client forged "1.1.1.1"; the proxy appended the real address. */
    const char *one[] = {"1.1.1.1, 198.51.100.9"};
    assert_pick("10.0.0.0/8", "10.0.0.2", one, 1, "198.51.100.9");
    /* Two proxies, both trusted: the entry before them. */
    const char *chain[] = {"1.1.1.1, 198.51.100.9, 10.0.0.5"};
    assert_pick("10.0.0.0/8", "10.0.0.2", chain, 1, "198.51.100.9");
    /* Several fields are one list, in order (HAProxy adds its own field). */
    const char *fields[] = {"1.1.1.1", "198.51.100.9"};
    assert_pick("10.0.0.0/8", "10.0.0.2", fields, 2, "198.51.100.9");
    /* Every hop trusted: the leftmost. */
    const char *internal[] = {"10.9.9.9,10.0.0.5"};
    assert_pick("10.0.0.0/8", "10.0.0.2", internal, 1, "10.9.9.9");
    /* Garbage from the nearest proxy stops the walk at that proxy. */
    const char *garbage[] = {"198.51.100.9, unknown"};
    assert_pick("10.0.0.0/8", "10.0.0.2", garbage, 1, "10.0.0.2");
    /* Spaces, tabs and empty elements say nothing. */
    const char *spaced[] = {" 1.1.1.1 ,\t2001:db8::7 ,, "};
    assert_pick("10.0.0.0/8", "10.0.0.2", spaced, 1, "2001:db8::7");
    /* IPv4-mapped peers and hops read as IPv4. */
    const char *mapped[] = {"::ffff:198.51.100.9"};
    assert_pick("127.0.0.1", "::ffff:127.0.0.1", mapped, 1, "198.51.100.9");
}

static void test_hops_are_bounded(void **state)
{
    (void)state;
    static char value[CLIENT_ADDRESS_HOPS_MAX * 12 + 64];
    value[0] = '\0';
    strcat(value, "198.51.100.9");
    for (int i = 0; i < CLIENT_ADDRESS_HOPS_MAX + 5; i++)
        strcat(value, ",10.0.0.1");
    const char *forwarded[] = {value};
    /* Beyond the bound the walk stops at a trusted hop; it never reaches the forged left. */
    assert_pick("10.0.0.0/8", "10.0.0.2", forwarded, 1, "10.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_lists),
        cmocka_unit_test(test_refuse_bad_lists),
        cmocka_unit_test(test_untrusted_peer_is_the_client),
        cmocka_unit_test(test_rightmost_untrusted_hop),
        cmocka_unit_test(test_hops_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
