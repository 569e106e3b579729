/*
 * The shared limits' script on a real redis-server (tests/servers.py starts it): bucket
 * arithmetic, the order inside one batch, challenges spent once, keys that expire,
 * NOSCRIPT, and a Redis that is down (gateway/limits_redis.h).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "core/error.h"
#include "gateway/limits_redis.h"

static const char *url;
static redisContext *admin;

static long long admin_integer(const char *format, const char *argument)
{
    redisReply *reply = redisCommand(admin, format, argument);
    assert_non_null(reply);
    long long value = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -999;
    freeReplyObject(reply);
    return value;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    url = getenv("CATRACA_TEST_REDIS");
    if (url == NULL) {
        fprintf(stderr, "CATRACA_TEST_REDIS is not set: run under python3 tests/servers.py\n");
        return -1;
    }
    char host[128];
    int port = 0;
    if (sscanf(url, "redis://%127[^:]:%d", host, &port) != 2)
        return -1;
    admin = redisConnect(host, port);
    return admin != NULL && admin->err == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    redisFree(admin);
    return 0;
}

static struct limits_redis_check customer_check(const char *customer, double rate, double burst)
{
    return (struct limits_redis_check){
        .customer = customer, .customer_rate_per_s = rate, .customer_burst = burst};
}

static void test_a_bucket_allows_its_burst_then_says_when(void **state)
{
    (void)state;
    struct limits_redis *limits = NULL;
    assert_int_equal(limits_redis_open(url, 2000, &limits), 0);
    struct limits_redis_check check = customer_check("burst-3", 0.5, 3);
    enum limits_redis_outcome outcome;
    int64_t retry_ms = -1;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry_ms), 0);
        assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    }
    assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry_ms), 0);
    assert_int_equal(outcome, LIMITS_REDIS_CUSTOMER_LIMITED);
    assert_in_range(retry_ms, 1500, 2001); /* a token every 2 s, one may be partly back */
    /* The key lives until the bucket is full again, plus a second. */
    long long ttl = admin_integer("PTTL %s", "catraca:rate:customer:burst-3");
    assert_in_range(ttl, 1, 7001);
    limits_redis_close(limits);
}

static void test_one_batch_is_decided_in_order(void **state)
{
    (void)state;
    struct limits_redis *limits = NULL;
    assert_int_equal(limits_redis_open(url, 2000, &limits), 0);
    struct limits_redis_check checks[6];
    for (int i = 0; i < 5; i++)
        checks[i] = customer_check("in-order", 0.001, 2);
    /* An address over its limit spends nothing of the customer's bucket after it. */
    checks[5] = (struct limits_redis_check){.ip = "203.0.113.9",
                                            .ip_rate_per_s = 0.001,
                                            .ip_burst = 1,
                                            .customer = "other",
                                            .customer_rate_per_s = 0.001,
                                            .customer_burst = 1};
    enum limits_redis_outcome outcomes[6];
    int64_t retry[6];
    assert_int_equal(limits_redis_take_many(limits, checks, 6, outcomes, retry), 0);
    enum limits_redis_outcome expected[] = {
        LIMITS_REDIS_ALLOWED,          LIMITS_REDIS_ALLOWED,          LIMITS_REDIS_CUSTOMER_LIMITED,
        LIMITS_REDIS_CUSTOMER_LIMITED, LIMITS_REDIS_CUSTOMER_LIMITED, LIMITS_REDIS_ALLOWED};
    for (int i = 0; i < 6; i++)
        assert_int_equal(outcomes[i], expected[i]);
    assert_int_equal(limits_redis_take_many(limits, &checks[5], 1, outcomes, retry), 0);
    assert_int_equal(outcomes[0], LIMITS_REDIS_IP_LIMITED);
    /* "other" kept its token: the address refused first. */
    struct limits_redis_check other = customer_check("other", 0.001, 1);
    assert_int_equal(limits_redis_take(limits, &other, &outcomes[0], &retry[0]), 0);
    assert_int_equal(outcomes[0], LIMITS_REDIS_CUSTOMER_LIMITED);
    limits_redis_close(limits);
}

static void test_a_challenge_is_spent_once(void **state)
{
    (void)state;
    struct limits_redis *a = NULL, *b = NULL; /* two gateways */
    assert_int_equal(limits_redis_open(url, 2000, &a), 0);
    assert_int_equal(limits_redis_open(url, 2000, &b), 0);
    const char *hex = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
    struct limits_redis_check check = {.challenge = hex, .challenge_ttl_s = 100};
    enum limits_redis_outcome outcome;
    int64_t retry;
    assert_int_equal(limits_redis_take(a, &check, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    assert_int_equal(limits_redis_take(b, &check, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_REPLAYED);
    char key[128];
    snprintf(key, sizeof(key), "catraca:challenge:%s", hex);
    assert_in_range(admin_integer("TTL %s", key), 100, 100 + LIMITS_REDIS_SKEW_S);
    /* A limited purchase does not spend its challenge. */
    const char *fresh = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";
    struct limits_redis_check limited = {.customer = "no-tokens",
                                         .customer_rate_per_s = 0.001,
                                         .customer_burst = 1,
                                         .challenge = fresh,
                                         .challenge_ttl_s = 100};
    assert_int_equal(limits_redis_take(a, &limited, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    limited.challenge = "cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33";
    assert_int_equal(limits_redis_take(a, &limited, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_CUSTOMER_LIMITED);
    assert_int_equal(admin_integer("EXISTS %s", "catraca:challenge:cc33cc33cc33cc33cc33cc33cc33"
                                                "cc33cc33cc33cc33cc33cc33cc33cc33cc33cc33"),
                     0);
    limits_redis_close(a);
    limits_redis_close(b);
}

/* An Idempotency-Key is claimed once, by its first request, for every gateway; a limited
 * purchase claims nothing; two claims in one batch see each other. */
static void test_a_key_is_claimed_by_its_first_request(void **state)
{
    (void)state;
    struct limits_redis *a = NULL, *b = NULL; /* two gateways */
    assert_int_equal(limits_redis_open(url, 2000, &a), 0);
    assert_int_equal(limits_redis_open(url, 2000, &b), 0);
    struct limits_redis_check first = {.claim = "5:alice:k1", .claim_hash = 0x1234};
    enum limits_redis_outcome outcome;
    int64_t retry;
    assert_int_equal(limits_redis_take(a, &first, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    assert_int_equal(limits_redis_take(b, &first, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_KEY_REPEATED);
    struct limits_redis_check other = {.claim = "5:alice:k1", .claim_hash = 0x5678};
    assert_int_equal(limits_redis_take(b, &other, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_KEY_MISMATCH);
    assert_in_range(admin_integer("TTL %s", "catraca:key:5:alice:k1"), LIMITS_REDIS_CLAIM_TTL_S - 5,
                    LIMITS_REDIS_CLAIM_TTL_S);
    /* Another customer's key of the same name is another claim. */
    struct limits_redis_check bob = {.claim = "3:bob:k1", .claim_hash = 0x5678};
    assert_int_equal(limits_redis_take(a, &bob, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    /* Limited: nothing claimed. */
    struct limits_redis_check limited = {.customer = "no-tokens-claim",
                                         .customer_rate_per_s = 0.001,
                                         .customer_burst = 1,
                                         .claim = "5:carol:k9",
                                         .claim_hash = 1};
    assert_int_equal(limits_redis_take(a, &limited, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    limited.claim = "5:carol:k10";
    assert_int_equal(limits_redis_take(a, &limited, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_CUSTOMER_LIMITED);
    assert_int_equal(admin_integer("EXISTS %s", "catraca:key:5:carol:k10"), 0);
    /* One batch: the second of two identical requests is the repeat, a third the mismatch. */
    struct limits_redis_check batch[3] = {{.claim = "4:dave:k", .claim_hash = 7},
                                          {.claim = "4:dave:k", .claim_hash = 7},
                                          {.claim = "4:dave:k", .claim_hash = 8}};
    enum limits_redis_outcome outcomes[3];
    int64_t retries[3];
    assert_int_equal(limits_redis_take_many(a, batch, 3, outcomes, retries), 0);
    assert_int_equal(outcomes[0], LIMITS_REDIS_ALLOWED);
    assert_int_equal(outcomes[1], LIMITS_REDIS_KEY_REPEATED);
    assert_int_equal(outcomes[2], LIMITS_REDIS_KEY_MISMATCH);
    limits_redis_close(a);
    limits_redis_close(b);
}

static void test_noscript_reloads(void **state)
{
    (void)state;
    struct limits_redis *limits = NULL;
    assert_int_equal(limits_redis_open(url, 2000, &limits), 0);
    struct limits_redis_check check = customer_check("flush", 100, 100);
    enum limits_redis_outcome outcome;
    int64_t retry;
    assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry), 0);
    freeReplyObject(redisCommand(admin, "SCRIPT FLUSH"));
    assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry), 0);
    assert_int_equal(outcome, LIMITS_REDIS_ALLOWED);
    limits_redis_close(limits);
}

static void test_bounds_and_a_redis_that_is_down(void **state)
{
    (void)state;
    struct limits_redis *limits = NULL;
    assert_int_equal(limits_redis_open("redis://127.0.0.1:1", 200, &limits), 0);
    struct limits_redis_check check = customer_check("down", 1, 1);
    enum limits_redis_outcome outcome;
    int64_t retry;
    assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry), CATRACA_E_UNAVAILABLE);
    char long_key[300];
    memset(long_key, 'x', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    check.customer = long_key;
    assert_int_equal(limits_redis_take(limits, &check, &outcome, &retry), CATRACA_E_INVALID);
    assert_int_equal(limits_redis_take_many(limits, &check, 0, &outcome, &retry),
                     CATRACA_E_INVALID);
    assert_int_equal(
        limits_redis_take_many(limits, &check, LIMITS_REDIS_BATCH_MAX + 1, &outcome, &retry),
        CATRACA_E_INVALID);
    limits_redis_close(limits);
    assert_int_equal(limits_redis_open("redis://host/1", 200, &limits), CATRACA_E_INVALID);
    assert_int_equal(limits_redis_open("redis://host:99999", 200, &limits), CATRACA_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_bucket_allows_its_burst_then_says_when),
        cmocka_unit_test(test_one_batch_is_decided_in_order),
        cmocka_unit_test(test_a_challenge_is_spent_once),
        cmocka_unit_test(test_a_key_is_claimed_by_its_first_request),
        cmocka_unit_test(test_noscript_reloads),
        cmocka_unit_test(test_bounds_and_a_redis_that_is_down),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
