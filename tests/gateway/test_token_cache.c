/* The verified-token cache: hits only for the exact token, never past its expiry, bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/token_cache.h"

static struct jwt_claims claims_of(const char *subject, int role, int64_t expires_s)
{
    struct jwt_claims claims = {.role = role, .expires_s = expires_s};
    snprintf(claims.subject, sizeof(claims.subject), "%s", subject);
    return claims;
}

static bool find(struct token_cache *cache, const char *token, int64_t now_s,
                 struct jwt_claims *claims)
{
    struct token_cache_key key;
    return token_cache_find(cache, token, now_s, claims, &key);
}

static void add(struct token_cache *cache, const char *token, const struct jwt_claims *claims)
{
    struct token_cache_key key;
    struct jwt_claims ignored;
    token_cache_find(cache, token, 0, &ignored, &key);
    token_cache_add(cache, &key, claims);
}

static void test_hit_miss_and_expiry(void **state)
{
    (void)state;
    struct token_cache cache;
    assert_int_equal(token_cache_init(&cache, 64), 0);
    struct jwt_claims got, alice = claims_of("alice", JWT_ROLE_BUYER, 1000);
    assert_false(find(&cache, "aaa.bbb.ccc", 10, &got));
    add(&cache, "aaa.bbb.ccc", &alice);
    assert_true(find(&cache, "aaa.bbb.ccc", 999, &got));
    assert_string_equal(got.subject, "alice");
    assert_int_equal(got.expires_s, 1000);
    /* A token that differs in one byte, or is a prefix, is another token. */
    assert_false(find(&cache, "aaa.bbb.ccd", 10, &got));
    assert_false(find(&cache, "aaa.bbb.cc", 10, &got));
    /* Expired at exp: verified again (and refused) by the caller. */
    assert_false(find(&cache, "aaa.bbb.ccc", 1000, &got));
    token_cache_destroy(&cache);
}

static void test_bounded_and_never_confused(void **state)
{
    (void)state;
    struct token_cache cache;
    assert_int_equal(token_cache_init(&cache, 8), 0);
    char token[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(token, sizeof(token), "t.%d.s", i);
        struct jwt_claims claims = claims_of(token, JWT_ROLE_BUYER, 5000);
        add(&cache, token, &claims);
    }
    /* Eight slots remember at most eight tokens; whatever hits carries its own claims. */
    int hits = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(token, sizeof(token), "t.%d.s", i);
        struct jwt_claims got;
        if (find(&cache, token, 1, &got)) {
            hits++;
            assert_string_equal(got.subject, token);
        }
    }
    assert_true(hits >= 1 && hits <= 8);
    /* Too long to cache: never stored, never found. */
    static char long_token[TOKEN_CACHE_TOKEN_MAX + 2];
    memset(long_token, 'x', sizeof(long_token) - 1);
    long_token[sizeof(long_token) - 1] = '\0';
    struct jwt_claims claims = claims_of("bob", JWT_ROLE_ADMIN, 5000), got;
    add(&cache, long_token, &claims);
    assert_false(find(&cache, long_token, 1, &got));
    token_cache_destroy(&cache);
    struct token_cache empty;
    assert_int_not_equal(token_cache_init(&empty, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_miss_and_expiry),
        cmocka_unit_test(test_bounded_and_never_confused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
