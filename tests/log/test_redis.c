/*
 * What only the Redis adapters have, against a real redis-server: NOSCRIPT,
 * an idle connection the server dropped, WAIT, options, replies of the wrong
 * shape, and the Redis bus (bus_redis.h). What every log must do is
 * tests/log/conformance_log.c's, run on Redis by tests/log/test_log_redis.c:
 * nothing is tested twice. Run under
 * tests/servers.py, which starts Redis and sets CATRACA_TEST_REDIS; every
 * case starts from FLUSHALL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "log/backend.h"
#include "log/bus_redis.h"
#include "log/log_redis.h"
#include "log/redis_xrange.h"

#define READ_MAX 64
#define SEQ_ZERO ((struct log_seq){0, 0})

static const char *url;
static redisContext *admin; /* the test's own connection: flushes, faults, corrupt data */

/* ---- helpers ----------------------------------------------------------------------------- */

static redisReply *admin_argv(int argc, const char **argv, const size_t *lengths)
{
    redisReply *reply = redisCommandArgv(admin, argc, argv, lengths);
    assert_non_null(reply);
    assert_int_not_equal(reply->type, REDIS_REPLY_ERROR);
    return reply;
}

/* Runs a command of NUL-terminated words on the admin connection. */
static void admin_run(int argc, const char **argv)
{
    size_t lengths[12];
    assert_true(argc <= 12);
    for (int i = 0; i < argc; i++)
        lengths[i] = strlen(argv[i]);
    freeReplyObject(admin_argv(argc, argv, lengths));
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as the processes do: a dropped connection is an error, not death */
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

static int flush(void **state)
{
    (void)state;
    admin_run(1, (const char *[]){"FLUSHALL"});
    return 0;
}

static struct catraca_log open_with(const char *at, size_t read_max, int wait_replicas)
{
    struct log_redis_options options = {.url = at,
                                        .timeout_ms = 2000,
                                        .read_max = read_max,
                                        .wait_replicas = wait_replicas,
                                        .wait_timeout_ms = 50};
    struct catraca_log log;
    assert_int_equal(log_redis_open(&options, &log), 0);
    return log;
}

static struct catraca_log open_log(void)
{
    return open_with(url, READ_MAX, 0);
}

static struct catraca_bus open_bus_at(const char *at)
{
    struct bus_redis_options options = {.url = at, .timeout_ms = 500};
    struct catraca_bus bus;
    assert_int_equal(bus_redis_open(&options, &bus), 0);
    return bus;
}

static struct log_append_item item(const char *event, uint64_t purchase_id, const char *key,
                                   uint64_t hash, const uint8_t *record, size_t length)
{
    return (struct log_append_item){.event = event,
                                    .record = record,
                                    .record_length = length,
                                    .time_ms = 1,
                                    .purchase_id = purchase_id,
                                    .idempotency_scope = "c1",
                                    .idempotency_key = key,
                                    .request_hash = hash};
}

static uint64_t count_after(struct catraca_log log, const char *event, struct log_seq after)
{
    uint64_t count = UINT64_MAX;
    assert_int_equal(log.ops->count_after(log.context, event, after, &count), 0);
    return count;
}

static void assert_seq_equal(struct log_seq a, struct log_seq b)
{
    assert_int_equal(log_seq_compare(a, b), 0);
}

/* A port nothing listens on: bound by the kernel, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    close(fd);
    return ntohs(address.sin_port);
}

/* ---- what only the network log has ------------------------------------------------------- */

static void test_noscript_recovery(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[] = {1};
    struct log_append_item one = item("ev", 1, "k1", 1, record, 1);
    assert_int_equal(log.ops->append(log.context, &one, 1), 0);
    admin_run(2, (const char *[]){"SCRIPT", "FLUSH"});
    struct log_append_item two = item("ev", 2, "k2", 2, record, 1);
    assert_int_equal(log.ops->append(log.context, &two, 1), 0);
    assert_int_equal(two.result, LOG_APPENDED);
    assert_true(log_seq_compare(one.seq, two.seq) < 0);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 2);
    log.ops->close(log.context);
}

static void never_called(void *context, const uint8_t *message, size_t length)
{
    (void)context;
    (void)message;
    (void)length;
    fail();
}

struct down_subscriber {
    struct catraca_bus bus;
    atomic_int stop, is_subscribed;
    int result;
};

static void *down_subscriber_main(void *argument)
{
    struct down_subscriber *d = argument;
    d->result = d->bus.ops->subscribe_commits(d->bus.context, never_called, NULL, &d->stop,
                                              &d->is_subscribed);
    return NULL;
}

static void test_unavailable_server(void **state)
{
    (void)state;
    char closed[64];
    snprintf(closed, sizeof(closed), "redis://127.0.0.1:%d", closed_port());
    uint8_t record[] = {1};
    uint64_t number = 0;
    struct catraca_bus bus = open_bus_at(closed); /* opening needs no server either */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(bus.ops->unique_number(bus.context, &number), CATRACA_E_UNAVAILABLE);
        assert_int_equal(bus.ops->publish_commit(bus.context, record, 1), CATRACA_E_UNAVAILABLE);
    }
    /* A subscription keeps trying, never subscribed, and still returns 0 soon after a stop. */
    static struct down_subscriber d;
    d.bus = bus;
    atomic_store(&d.stop, 0);
    atomic_store(&d.is_subscribed, 1);
    d.result = 1;
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, down_subscriber_main, &d), 0);
    poll(NULL, 0, 700);
    assert_int_equal(atomic_load(&d.is_subscribed), 0);
    atomic_store(&d.stop, 1);
    pthread_join(thread, NULL);
    assert_int_equal(d.result, 0);
    bus.ops->close(bus.context);
}

/*
 * A connection the server closed while idle (Redis restarted, CLIENT KILL) is
 * noticed before the next command is written to it: that command goes out on a
 * new connection and succeeds, instead of failing on the dead one.
 */
static void test_reconnect_after_dropped_connection(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[] = {1};
    struct log_append_item one = item("ev", 1, NULL, 0, record, 1);
    assert_int_equal(log.ops->append(log.context, &one, 1), 0);
    admin_run(6, (const char *[]){"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    usleep(100 * 1000); /* Redis closes killed clients asynchronously: let the FIN arrive */
    struct log_seq last;
    assert_int_equal(log.ops->last_seq(log.context, "ev", &last), 0);
    assert_seq_equal(last, one.seq);
    admin_run(6, (const char *[]){"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    usleep(100 * 1000);
    struct log_append_item two = item("ev", 2, NULL, 0, record, 1);
    assert_int_equal(log.ops->append(log.context, &two, 1), 0);
    assert_int_equal(two.result, LOG_APPENDED);
    log.ops->close(log.context);
}

/* No replica acknowledges: the append is unavailable, yet happened; a retry is a duplicate. */
static void test_wait_replicas(void **state)
{
    (void)state;
    struct catraca_log waiting = open_with(url, READ_MAX, 1);
    uint8_t record[] = {1};
    struct log_append_item one = item("ev", 1, "k1", 1, record, 1);
    assert_int_equal(waiting.ops->append(waiting.context, &one, 1), CATRACA_E_UNAVAILABLE);
    waiting.ops->close(waiting.context);
    struct catraca_log log = open_log();
    struct log_append_item retry = item("ev", 1, "k1", 1, record, 1);
    assert_int_equal(log.ops->append(log.context, &retry, 1), 0);
    assert_int_equal(retry.result, LOG_DUPLICATE);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 1);
    log.ops->close(log.context);
}

static void test_options(void **state)
{
    (void)state;
    char port_only[64];
    snprintf(port_only, sizeof(port_only), "%s/0", url + strlen("redis://"));
    struct catraca_log log = open_with(port_only, 1, 0); /* no scheme, database 0 */
    struct log_seq last;
    assert_int_equal(log.ops->last_seq(log.context, "ev", &last), 0);
    log.ops->close(log.context);
    const char *bad_urls[] = {"",        "redis://",        "redis://:1",    "redis://h:0",
                              "h:65536", "redis://u:p@h:1", "redis://h:1/2", "h:1x",
                              "h:-1"};
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        struct log_redis_options options = {.url = bad_urls[i], .timeout_ms = 100, .read_max = 1};
        assert_int_equal(log_redis_open(&options, &log), CATRACA_E_INVALID);
    }
    struct log_redis_options options = {.url = url, .timeout_ms = 100, .read_max = 0};
    assert_int_equal(log_redis_open(&options, &log), CATRACA_E_INVALID);
    options = (struct log_redis_options){.url = url, .timeout_ms = 0, .read_max = 1};
    assert_int_equal(log_redis_open(&options, &log), CATRACA_E_INVALID);
    options = (struct log_redis_options){
        .url = url, .timeout_ms = 100, .read_max = 1, .wait_replicas = 1, .wait_timeout_ms = 0};
    assert_int_equal(log_redis_open(&options, &log), CATRACA_E_INVALID);
}

/* ---- replies of the wrong shape: CATRACA_E_CORRUPT, never a crash ------------------------ */

static void test_corrupt_data(void **state)
{
    (void)state;
    static char big[CATRACA_COMMAND_ENCODED_MAX + 1];
    memset(big, 'r', sizeof(big));
    const char *too_big[] = {"XADD", "catraca:{big}:log", "*", "r", big, "t", "1", "i", "1"};
    size_t lengths[9];
    for (int i = 0; i < 9; i++)
        lengths[i] = i == 4 ? sizeof(big) : strlen(too_big[i]); /* big has no NUL */
    freeReplyObject(admin_argv(9, too_big, lengths));
    admin_run(7, (const char *[]){"XADD", "catraca:{norecord}:log", "*", "t", "1", "i", "1"});
    admin_run(
        9, (const char *[]){"XADD", "catraca:{badtime}:log", "*", "r", "x", "t", "1.5", "i", "1"});
    admin_run(5, (const char *[]){"XADD", "catraca:{noindex}:log", "*", "r", "x"});
    /* A field no append writes, longer than any value read() takes (redis_xrange.h). */
    static char huge[REDIS_XRANGE_VALUE_BYTES_MAX + 1];
    memset(huge, 'z', sizeof(huge));
    const char *huge_field[] = {"XADD", "catraca:{hugefield}:log", "*", "r", "x", "t", "1", "z",
                                huge};
    for (int i = 0; i < 9; i++)
        lengths[i] = i == 8 ? sizeof(huge) : strlen(huge_field[i]);
    freeReplyObject(admin_argv(9, huge_field, lengths));
    admin_run(4, (const char *[]){"HSET", "catraca:purchases", "7", "nospace"});
    admin_run(4, (const char *[]){"HSET", "catraca:purchases", "8", "ev 1-x"});
    admin_run(4, (const char *[]){"HSET", "catraca:idem:c1", "bad", "garbage"});
    admin_run(3, (const char *[]){"SET", "catraca:{noindex}:count", "-3"});
    struct catraca_log log = open_log();
    struct log_entry entries[4];
    size_t count = 9;
    /* Each refusal leaves the connection mid-reply (dropped): the next call reconnects. */
    const char *bad_streams[] = {"big", "norecord", "badtime", "noindex", "hugefield"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(log.ops->read(log.context, bad_streams[i], SEQ_ZERO, entries, 4, &count),
                         CATRACA_E_CORRUPT);
        assert_int_equal(count, 0);
    }
    struct log_seq seq;
    assert_int_equal(log.ops->last_seq(log.context, "noindex", &seq), 0);
    uint64_t number = 0;
    assert_int_equal(log.ops->count_after(log.context, "noindex", seq, &number),
                     CATRACA_E_CORRUPT); /* the entry has no `i` */
    assert_int_equal(log.ops->count_after(log.context, "noindex", SEQ_ZERO, &number),
                     CATRACA_E_CORRUPT); /* the counter is no count */
    char event[CATRACA_ID_MAX + 1];
    assert_int_equal(log.ops->find_purchase(log.context, 7, event, &seq), CATRACA_E_CORRUPT);
    assert_int_equal(log.ops->find_purchase(log.context, 8, event, &seq), CATRACA_E_CORRUPT);
    uint8_t record[] = {1};
    struct log_append_item keyed = item("ev", 0, "bad", 1, record, 1);
    assert_int_equal(log.ops->append(log.context, &keyed, 1), CATRACA_E_CORRUPT);
    char long_member[CATRACA_ID_MAX + 2];
    memset(long_member, 'm', sizeof(long_member) - 1);
    long_member[sizeof(long_member) - 1] = '\0';
    /* A set member no append could have written is skipped; the real ids are listed. */
    admin_run(4, (const char *[]){"SADD", "catraca:partitions", long_member, "ok"});
    char events[2][CATRACA_ID_MAX + 1];
    assert_int_equal(log.ops->list_partitions(log.context, events, 2, &count), 0);
    assert_int_equal(count, 1);
    assert_string_equal(events[0], "ok");
    /* A key of another type: Redis answers an error, the handle stays usable. */
    admin_run(3, (const char *[]){"SET", "catraca:{wrongtype}:log", "x"});
    assert_int_not_equal(log.ops->read(log.context, "wrongtype", SEQ_ZERO, entries, 4, &count), 0);
    assert_int_equal(log.ops->last_seq(log.context, "nobody", &seq), 0);
    log.ops->close(log.context);
}

/* ---- pub/sub ----------------------------------------------------------------------------- */

struct listener {
    struct catraca_bus bus;
    atomic_int stop, is_subscribed;
    int result;
    atomic_int received;
    char events[4][CATRACA_ID_MAX + 1];
};

static void on_event(void *context, const char *event)
{
    struct listener *l = context;
    int at = atomic_load(&l->received);
    if (at < 4)
        snprintf(l->events[at], sizeof(l->events[at]), "%s", event);
    if (atomic_fetch_add(&l->received, 1) + 1 == 2)
        atomic_store(&l->stop, 1);
}

static void *waiter_main(void *argument)
{
    struct listener *l = argument;
    l->result = l->bus.ops->wait_appended(l->bus.context, on_event, l, &l->stop, &l->is_subscribed);
    return NULL;
}

/* A listener with a bus handle of its own (a handle belongs to one thread). */
static void listener_reset(struct listener *l)
{
    memset(l, 0, sizeof(*l));
    l->bus = open_bus_at(url);
    l->result = 1;
}

static void wait_subscribed(struct listener *l)
{
    for (int i = 0; i < 500 && !atomic_load(&l->is_subscribed); i++)
        poll(NULL, 0, 10);
    assert_true(atomic_load(&l->is_subscribed));
}

/*
 * One message per event a call appended to, however many items it had there
 * (the script publishes once per event: a rush does not flood the workers).
 * That each event is reported at all is the bus suite's (conformance_bus.c).
 */
static void test_wait_appended(void **state)
{
    (void)state;
    static struct listener l;
    listener_reset(&l);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, waiter_main, &l), 0);
    wait_subscribed(&l);
    struct catraca_log log = open_log();
    uint8_t record[] = {1};
    struct log_append_item items[5] = {
        item("ev1", 0, NULL, 0, record, 1), item("ev2", 0, NULL, 0, record, 1),
        item("ev1", 0, NULL, 0, record, 1), item("ev2", 0, NULL, 0, record, 1),
        item("ev1", 0, NULL, 0, record, 1)};
    assert_int_equal(log.ops->append(log.context, items, 5), 0);
    pthread_join(thread, NULL);
    assert_int_equal(l.result, 0);
    assert_int_equal(atomic_load(&l.received), 2);
    assert_true((strcmp(l.events[0], "ev1") == 0 && strcmp(l.events[1], "ev2") == 0) ||
                (strcmp(l.events[0], "ev2") == 0 && strcmp(l.events[1], "ev1") == 0));
    l.bus.ops->close(l.bus.context);
    log.ops->close(log.context);
}

/* ---- backend.h: the options pick Redis, and refuse what they cannot run ------------------ */

static void test_backend(void **state)
{
    (void)state;
    struct backend_options options = {.redis_url = url, .timeout_ms = 2000};
    char why[256] = "";
    assert_int_equal(backend_check(&options, why, sizeof(why)), 0);
    assert_string_equal(backend_name(&options), "redis");
    struct catraca_log log;
    struct catraca_bus bus;
    assert_int_equal(backend_open_log(&options, READ_MAX, true, &log), 0);
    assert_int_equal(backend_open_bus(&options, &bus), 0);
    uint8_t record[] = {7};
    struct log_append_item one = item("ev", 1, NULL, 0, record, 1);
    assert_int_equal(log.ops->append(log.context, &one, 1), 0);
    uint64_t number = 0;
    assert_int_equal(bus.ops->unique_number(bus.context, &number), 0);
    assert_true(number > 0);
    bus.ops->close(bus.context);
    log.ops->close(log.context);
    struct {
        struct backend_options options;
        const char *why;
    } refused[] = {
        {{.timeout_ms = 2000}, "--redis is required"},
        {{.redis_url = "", .kafka_bootstrap = "", .timeout_ms = 2000}, "--redis is required"},
        {{.redis_url = url, .kafka_bootstrap = "127.0.0.1:9092", .timeout_ms = 2000}, "not both"},
        {{.redis_url = "redis://h:1/2", .timeout_ms = 2000}, "--redis must be"},
        {{.redis_url = url, .timeout_ms = 0}, "--log-timeout-ms"},
#ifndef CATRACA_HAVE_KAFKA
        {{.kafka_bootstrap = "127.0.0.1:9092",
          .kafka_topic_prefix = "catraca.",
          .kafka_replication_factor = 1,
          .kafka_min_insync_replicas = 1,
          .timeout_ms = 2000},
         "this binary was built without Kafka"},
#endif
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        why[0] = '\0';
        assert_int_equal(backend_check(&refused[i].options, why, sizeof(why)), CATRACA_E_INVALID);
        assert_non_null(strstr(why, refused[i].why));
        assert_int_equal(backend_open_log(&refused[i].options, 1, false, &log), CATRACA_E_INVALID);
        assert_int_equal(backend_open_bus(&refused[i].options, &bus), CATRACA_E_INVALID);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_noscript_recovery, flush),
        cmocka_unit_test_setup(test_unavailable_server, flush),
        cmocka_unit_test_setup(test_reconnect_after_dropped_connection, flush),
        cmocka_unit_test_setup(test_wait_replicas, flush),
        cmocka_unit_test_setup(test_options, flush),
        cmocka_unit_test_setup(test_corrupt_data, flush),
        cmocka_unit_test_setup(test_wait_appended, flush),
        cmocka_unit_test_setup(test_backend, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
