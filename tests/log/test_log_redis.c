/*
 * The Redis Streams log (src/log/log_redis.c) and the Redis bus
 * (src/log/bus_redis.c) against the conformance suites,
 * on the real redis-server tests/servers.py starts (CATRACA_TEST_REDIS). The
 * suite's handles reach Redis through tests/log/fault_proxy.h, which cuts or
 * stalls their connections on demand; Redis itself keeps running.
 *
 * Capability: CONFORMANCE_ERROR_MAY_HAVE_APPENDED, log_redis.h's dropped
 * reply: when the connection breaks after the script ran, the append
 * happened and the caller sees CATRACA_E_UNAVAILABLE; a retry with the same
 * key or purchase id is a duplicate. A script is atomic, so a failed batch is
 * still all or nothing (no CONFORMANCE_ERROR_MAY_APPEND_PART).
 *
 * What only Redis has (NOSCRIPT, WAIT, replies of the wrong shape, pub/sub) is
 * in tests/log/test_redis.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logline.h"

#include "log/bus_redis.h"
#include "log/conformance_bus.h"
#include "log/conformance_log.h"
#include "log/fault_proxy.h"
#include "log/log_redis.h"

#define TIMEOUT_MS 500

static struct fault_proxy *proxy;
static char proxy_url[64];
static const char *direct_url;

static int redis_open(void *context, size_t read_max, struct catraca_log *out)
{
    (void)context;
    struct log_redis_options options = {
        .url = proxy_url, .timeout_ms = TIMEOUT_MS, .read_max = read_max};
    return log_redis_open(&options, out);
}

static int cut_connections(void *context, enum conformance_cut how)
{
    (void)context;
    conformance_cut_through(proxy, how);
    return 0;
}

static void restore_connections(void *context)
{
    (void)context;
    fault_proxy_set_mode(proxy, FAULT_PROXY_RELAY);
}

static int bus_open(void *context, struct catraca_bus *out)
{
    (void)context;
    struct bus_redis_options options = {.url = proxy_url, .timeout_ms = TIMEOUT_MS};
    return bus_redis_open(&options, out);
}

/* The bus suite's log: straight to Redis, so cutting the bus leaves the log up. */
static int bus_open_log(void *context, struct catraca_log *out)
{
    (void)context;
    struct log_redis_options options = {.url = direct_url, .timeout_ms = 2000, .read_max = 16};
    return log_redis_open(&options, out);
}

static void bus_cut(void *context)
{
    (void)context;
    fault_proxy_set_mode(proxy, FAULT_PROXY_DOWN);
}

/* What the subscription logged (a logline hook, from the subscribing thread). */
static atomic_int resubscribed_lines, outage_lines;

static void count_bus_lines(void *context, const struct logline_record *record)
{
    (void)context;
    if (strcmp(record->component, "bus_redis") != 0)
        return;
    if (strcmp(record->message, "subscribed again") == 0)
        atomic_fetch_add(&resubscribed_lines, 1);
    else
        atomic_fetch_add(&outage_lines, 1);
}

struct subscriber {
    struct catraca_bus bus;
    atomic_int stop, is_subscribed;
};

static void ignore_message(void *context, const uint8_t *message, size_t length)
{
    (void)context, (void)message, (void)length;
}

static void *subscriber_main(void *argument)
{
    struct subscriber *s = argument;
    s->bus.ops->subscribe_commits(s->bus.context, ignore_message, NULL, &s->stop,
                                  &s->is_subscribed);
    return NULL;
}

/* Waits up to 5 s for *flag == want. */
static bool flag_becomes(atomic_int *flag, int want)
{
    for (int i = 0; i < 500 && atomic_load(flag) != want; i++)
        poll(NULL, 0, 10);
    return atomic_load(flag) == want;
}

/*
 * "subscribed again" is logged once Redis confirmed the SUBSCRIBE, not when a connection
 * opens: while connections open but every SUBSCRIBE is cut, the outage goes on (one warning,
 * no "subscribed again"); the line comes once, when a subscription is confirmed.
 */
static void test_resubscribed_is_logged_when_confirmed(void **state)
{
    (void)state;
    struct subscriber s = {0};
    assert_int_equal(bus_open(NULL, &s.bus), 0);
    logline_set_hook(count_bus_lines, NULL, LOGLINE_INFO);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, subscriber_main, &s), 0);
    assert_true(flag_becomes(&s.is_subscribed, 1));
    fault_proxy_set_mode(proxy, FAULT_PROXY_DOWN);
    assert_true(flag_becomes(&s.is_subscribed, 0));
    fault_proxy_set_mode(proxy, FAULT_PROXY_CUT_REQUEST); /* connects, SUBSCRIBE cut */
    poll(NULL, 0, 1500);                                  /* several attempts */
    assert_int_equal(atomic_load(&s.is_subscribed), 0);
    assert_int_equal(atomic_load(&resubscribed_lines), 0);
    assert_int_equal(atomic_load(&outage_lines), 1);
    fault_proxy_set_mode(proxy, FAULT_PROXY_RELAY);
    assert_true(flag_becomes(&s.is_subscribed, 1));
    poll(NULL, 0, 100);
    assert_int_equal(atomic_load(&resubscribed_lines), 1);
    assert_int_equal(atomic_load(&outage_lines), 1);
    atomic_store(&s.stop, 1);
    pthread_join(thread, NULL);
    logline_set_hook(NULL, NULL, LOGLINE_INFO);
    s.bus.ops->close(s.bus.context);
}

/* Each of the suite's cut rounds did cut (the proxy was in the way, not bypassed). */
static void test_cuts_happened(void **state)
{
    (void)state;
    assert_true(fault_proxy_cuts(proxy) >= 4);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the processes do: a dropped connection is an error */
    const char *url = getenv("CATRACA_TEST_REDIS");
    char host[128];
    int port = 0;
    if (url == NULL || sscanf(url, "redis://%127[^:]:%d", host, &port) != 2) {
        fprintf(stderr, "CATRACA_TEST_REDIS is not set: run under python3 tests/servers.py\n");
        return 1;
    }
    if (fault_proxy_start(host, port, 0, &proxy) != 0) {
        perror("fault_proxy_start");
        return 1;
    }
    snprintf(proxy_url, sizeof(proxy_url), "redis://127.0.0.1:%d", fault_proxy_port(proxy));
    struct conformance_target target = {
        .name = "redis",
        .open = redis_open,
        .capabilities = CONFORMANCE_ERROR_MAY_HAVE_APPENDED,
        .append_timeout_ms = TIMEOUT_MS,
        .cut_connections = cut_connections,
        .restore_connections = restore_connections,
    };
    int failed = conformance_log_run(&target);
    direct_url = url;
    struct conformance_bus_target bus_target = {
        .name = "redis",
        .open = bus_open,
        .open_log = bus_open_log,
        .reconnect_ms = 2 * TIMEOUT_MS + 200, /* a time-out, bus_redis.c's back-off */
        .cut_connections = bus_cut,
        .restore_connections = restore_connections,
    };
    failed += conformance_bus_run(&bus_target);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuts_happened),
        cmocka_unit_test(test_resubscribed_is_logged_when_confirmed)};
    failed += cmocka_run_group_tests_name("redis_own", tests, NULL, NULL);
    fault_proxy_stop(proxy);
    return failed;
}
