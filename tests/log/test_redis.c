/*
 * The Redis Streams log adapter against a real redis-server: the behaviours
 * tests/store/test_sqlite.c checks of the SQLite log (the reference), plus
 * what only a network log has (NOSCRIPT, a server that is down, a dropped
 * connection, WAIT) and replies of the wrong shape; and the Redis bus
 * (bus_redis.h: pub/sub, the append script's wake-up messages). Run under
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
#include "log/bus_redis.h"
#include "log/log_redis.h"

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

/* ---- the contract of log.h, as log_sqlite.c keeps it -------------------------------------- */

static void test_round_trip_binary(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    static uint8_t big[CATRACA_COMMAND_ENCODED_MAX];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    const uint8_t zeros[3] = {0, 0, 0}, mixed[6] = {0xff, 0, 'a', '\r', '\n', 0};
    struct log_append_item items[4] = {
        item("ev", 10, NULL, 0, zeros, sizeof(zeros)),
        item("ev", 0, NULL, 0, mixed, sizeof(mixed)),
        item("ev", UINT64_MAX, NULL, 0, big, sizeof(big)),
        item("ev", 0, NULL, 0, NULL, 0),
    };
    const int64_t times[4] = {1700000000123, -5, INT64_MAX, INT64_MIN};
    for (int i = 0; i < 4; i++)
        items[i].time_ms = times[i];
    assert_int_equal(log.ops->append(log.context, items, 4), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(items[i].result, LOG_APPENDED);
        assert_true(items[i].existing_purchase_id == items[i].purchase_id); /* as SQLite */
        if (i > 0)
            assert_true(log_seq_compare(items[i - 1].seq, items[i].seq) < 0);
    }
    struct log_entry entries[8];
    size_t count = 0;
    assert_int_equal(log.ops->read(log.context, "ev", SEQ_ZERO, entries, 8, &count), 0);
    assert_int_equal(count, 4);
    for (int i = 0; i < 4; i++) {
        assert_seq_equal(entries[i].seq, items[i].seq);
        assert_true(entries[i].time_ms == times[i]);
        assert_int_equal(entries[i].record_length, items[i].record_length);
        if (items[i].record_length > 0)
            assert_memory_equal(entries[i].record, items[i].record, items[i].record_length);
    }
    log.ops->close(log.context);
}

static void test_read_after_and_max(void **state)
{
    (void)state;
    struct catraca_log log = open_with(url, 8, 0);
    struct log_seq seqs[20];
    for (uint8_t i = 0; i < 20; i++) {
        struct log_append_item one = item("ev", 0, NULL, 0, &i, 1);
        assert_int_equal(log.ops->append(log.context, &one, 1), 0);
        seqs[i] = one.seq;
    }
    struct log_entry entries[32];
    size_t count = 0, seen = 0;
    struct log_seq after = SEQ_ZERO;
    /* Pages of 3: each starts right after the last one read (exclusive), in order. */
    do {
        assert_int_equal(log.ops->read(log.context, "ev", after, entries, 3, &count), 0);
        assert_true(count <= 3);
        for (size_t i = 0; i < count; i++) {
            assert_seq_equal(entries[i].seq, seqs[seen]);
            assert_int_equal(entries[i].record[0], seen);
            seen++;
        }
        if (count > 0)
            after = entries[count - 1].seq;
    } while (count > 0);
    assert_int_equal(seen, 20);
    /* max beyond read_max is clipped to it; 0 reads nothing; an unknown event is empty. */
    assert_int_equal(log.ops->read(log.context, "ev", SEQ_ZERO, entries, 32, &count), 0);
    assert_int_equal(count, 8);
    assert_int_equal(log.ops->read(log.context, "ev", SEQ_ZERO, entries, 0, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(log.ops->read(log.context, "nobody", SEQ_ZERO, entries, 8, &count), 0);
    assert_int_equal(count, 0);
    /* Positions that are no entry's: before the first, after the last. */
    assert_int_equal(log.ops->read(log.context, "ev", (struct log_seq){1, 0}, entries, 1, &count),
                     0);
    assert_int_equal(count, 1);
    assert_seq_equal(entries[0].seq, seqs[0]);
    struct log_seq beyond = {seqs[19].major + 1, 0};
    assert_int_equal(log.ops->read(log.context, "ev", beyond, entries, 8, &count), 0);
    assert_int_equal(count, 0);
    log.ops->close(log.context);
}

static void test_idempotency(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[] = {1, 2, 3};
    struct log_append_item items[4] = {
        item("ev", 10, "k1", 111, record, 3), item("ev", 11, NULL, 0, record, 2),
        item("other", 12, NULL, 0, record, 1), item("ev", 0, "k2", 5, record, 3)};
    assert_int_equal(log.ops->append(log.context, items, 4), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(items[i].result, LOG_APPENDED);
    struct log_append_item again[4] = {
        item("ev", 20, "k1", 111, record, 3), item("ev", 21, "k1", 222, record, 3),
        item("ev", 11, NULL, 0, record, 2), item("ev", 0, "k2", 5, record, 3)};
    assert_int_equal(log.ops->append(log.context, again, 4), 0);
    assert_int_equal(again[0].result, LOG_DUPLICATE);
    assert_seq_equal(again[0].seq, items[0].seq);
    assert_true(again[0].existing_purchase_id == 10);
    assert_int_equal(again[1].result, LOG_DUPLICATE_MISMATCH);
    assert_seq_equal(again[1].seq, items[0].seq);
    assert_true(again[1].existing_purchase_id == 10);
    assert_int_equal(again[2].result, LOG_DUPLICATE); /* the same purchase id appended twice */
    assert_seq_equal(again[2].seq, items[1].seq);
    assert_true(again[2].existing_purchase_id == 11);
    assert_int_equal(again[3].result, LOG_DUPLICATE); /* a keyed entry that is no purchase */
    assert_seq_equal(again[3].seq, items[3].seq);
    assert_true(again[3].existing_purchase_id == 0);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 3); /* nothing appended for duplicates */
    /* One key twice in one call: the second is a duplicate of the first; other scopes differ. */
    struct log_append_item batch[3] = {item("ev", 30, "k3", 7, record, 3),
                                       item("ev", 31, "k3", 7, record, 3),
                                       item("ev", 32, "k3", 7, record, 3)};
    batch[2].idempotency_scope = "c2";
    assert_int_equal(log.ops->append(log.context, batch, 3), 0);
    assert_int_equal(batch[0].result, LOG_APPENDED);
    assert_int_equal(batch[1].result, LOG_DUPLICATE);
    assert_seq_equal(batch[1].seq, batch[0].seq);
    assert_true(batch[1].existing_purchase_id == 30);
    assert_int_equal(batch[2].result, LOG_APPENDED);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 5);
    log.ops->close(log.context);
}

static void test_failed_batch_appends_nothing(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[8] = {0};
    struct log_append_item items[2] = {
        item("ev", 1, NULL, 0, record, 8),
        item("ev", 2, NULL, 0, record, CATRACA_COMMAND_ENCODED_MAX + 1)};
    assert_int_equal(log.ops->append(log.context, items, 2), CATRACA_E_INVALID);
    items[1] = item("ev", 2, "k", 0, record, 8);
    items[1].idempotency_scope = NULL; /* a key needs its scope */
    assert_int_equal(log.ops->append(log.context, items, 2), CATRACA_E_INVALID);
    char long_id[CATRACA_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    items[1] = item(long_id, 2, NULL, 0, record, 8);
    assert_int_equal(log.ops->append(log.context, items, 2), CATRACA_E_INVALID);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 0);
    size_t count = 9;
    char events[4][CATRACA_ID_MAX + 1];
    assert_int_equal(log.ops->list_partitions(log.context, events, 4, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(log.ops->append(log.context, NULL, 0), 0);
    struct log_entry entries[1];
    assert_int_equal(log.ops->read(log.context, long_id, SEQ_ZERO, entries, 1, &count),
                     CATRACA_E_INVALID);
    log.ops->close(log.context);
}

/* One call, 1000 items over two events: one script, all appended, each event in order. */
static void test_batch_across_two_events(void **state)
{
    (void)state;
    enum { ITEMS = 1000 };
    struct catraca_log log = open_log();
    static struct log_append_item items[ITEMS];
    static uint8_t records[ITEMS][2];
    static char keys[ITEMS][16];
    for (size_t i = 0; i < ITEMS; i++) {
        records[i][0] = (uint8_t)(i >> 8);
        records[i][1] = (uint8_t)i;
        snprintf(keys[i], sizeof(keys[i]), "key-%zu", i);
        items[i] = item(i % 2 ? "b" : "a", i + 1, i % 3 ? keys[i] : NULL, i, records[i], 2);
    }
    assert_int_equal(log.ops->append(log.context, items, ITEMS), 0);
    for (size_t i = 0; i < ITEMS; i++)
        assert_int_equal(items[i].result, LOG_APPENDED);
    for (size_t e = 0; e < 2; e++) {
        const char *event = e ? "b" : "a";
        struct log_entry entries[READ_MAX];
        struct log_seq after = SEQ_ZERO;
        size_t count = 0, next = e;
        assert_true(count_after(log, event, SEQ_ZERO) == ITEMS / 2);
        do {
            assert_int_equal(log.ops->read(log.context, event, after, entries, READ_MAX, &count),
                             0);
            for (size_t i = 0; i < count; i++, next += 2) {
                assert_seq_equal(entries[i].seq, items[next].seq);
                assert_memory_equal(entries[i].record, records[next], 2);
            }
            if (count > 0)
                after = entries[count - 1].seq;
        } while (count > 0);
        assert_int_equal(next, ITEMS + e);
        struct log_seq last;
        assert_int_equal(log.ops->last_seq(log.context, event, &last), 0);
        assert_seq_equal(last, items[ITEMS - 2 + e].seq);
    }
    /* The whole batch again: every item a duplicate of itself, nothing appended. */
    static struct log_append_item again[ITEMS];
    memcpy(again, items, sizeof(again));
    assert_int_equal(log.ops->append(log.context, again, ITEMS), 0);
    for (size_t i = 0; i < ITEMS; i++) {
        assert_int_equal(again[i].result, LOG_DUPLICATE);
        assert_seq_equal(again[i].seq, items[i].seq);
        assert_true(again[i].existing_purchase_id == i + 1);
    }
    assert_true(count_after(log, "a", SEQ_ZERO) == ITEMS / 2);
    log.ops->close(log.context);
}

static void test_find_purchase(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[] = {9};
    struct log_append_item items[3] = {item("ev one", 5, NULL, 0, record, 1),
                                       item("other", UINT64_MAX, NULL, 0, record, 1),
                                       item("other", 0, NULL, 0, record, 1)};
    assert_int_equal(log.ops->append(log.context, items, 3), 0);
    char event[CATRACA_ID_MAX + 1];
    struct log_seq seq;
    assert_int_equal(log.ops->find_purchase(log.context, 5, event, &seq), 0);
    assert_string_equal(event, "ev one");
    assert_seq_equal(seq, items[0].seq);
    assert_int_equal(log.ops->find_purchase(log.context, UINT64_MAX, event, &seq), 0);
    assert_string_equal(event, "other");
    assert_seq_equal(seq, items[1].seq);
    assert_int_equal(log.ops->find_purchase(log.context, 99, event, &seq), CATRACA_E_NOTFOUND);
    log.ops->close(log.context);
}

static void test_count_after_and_last_seq(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    struct log_seq last = {7, 7};
    assert_int_equal(log.ops->last_seq(log.context, "ev", &last), 0);
    assert_seq_equal(last, SEQ_ZERO);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 0);
    uint8_t record[] = {1};
    struct log_append_item items[5];
    for (int i = 0; i < 5; i++)
        items[i] = item("ev", 0, NULL, 0, record, 1);
    assert_int_equal(log.ops->append(log.context, items, 5), 0);
    assert_true(count_after(log, "ev", SEQ_ZERO) == 5);
    for (uint64_t i = 0; i < 5; i++)
        assert_true(count_after(log, "ev", items[i].seq) == 4 - i);
    /* Positions that are no entry's: before the first, after the last. */
    assert_true(count_after(log, "ev", (struct log_seq){1, 0}) == 5);
    assert_true(count_after(log, "ev", (struct log_seq){items[4].seq.major + 1000, 0}) == 0);
    assert_int_equal(log.ops->last_seq(log.context, "ev", &last), 0);
    assert_seq_equal(last, items[4].seq);
    log.ops->close(log.context);
}

static void test_list_partitions(void **state)
{
    (void)state;
    struct catraca_log log = open_log();
    uint8_t record[] = {1};
    const char *ids[] = {"e4", "e1", "e3", "e0", "e2"};
    struct log_append_item items[5];
    for (int i = 0; i < 5; i++)
        items[i] = item(ids[i], 0, NULL, 0, record, 1);
    items[2].idempotency_key = "k";
    assert_int_equal(log.ops->append(log.context, items, 5), 0);
    /* A duplicate appends nothing, so it makes no partition. */
    struct log_append_item duplicate = item("z", 0, "k", 0, record, 1);
    assert_int_equal(log.ops->append(log.context, &duplicate, 1), 0);
    assert_int_equal(duplicate.result, LOG_DUPLICATE);
    char events[8][CATRACA_ID_MAX + 1];
    size_t count = 0;
    assert_int_equal(log.ops->list_partitions(log.context, events, 8, &count), 0);
    assert_int_equal(count, 5);
    for (size_t i = 0; i < 5; i++) {
        char expected[4];
        snprintf(expected, sizeof(expected), "e%zu", i);
        assert_string_equal(events[i], expected);
    }
    /* Bounded: the smallest ids, sorted (SQLite's ORDER BY event LIMIT max). */
    assert_int_equal(log.ops->list_partitions(log.context, events, 3, &count), 0);
    assert_int_equal(count, 3);
    assert_string_equal(events[0], "e0");
    assert_string_equal(events[2], "e2");
    assert_int_equal(log.ops->list_partitions(log.context, events, 0, &count), 0);
    assert_int_equal(count, 0);
    log.ops->close(log.context);
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
    struct catraca_log log = open_with(closed, READ_MAX, 0); /* opening needs no server */
    uint8_t record[] = {1};
    struct log_append_item one = item("ev", 1, "k1", 1, record, 1);
    struct log_entry entries[2];
    size_t count = 9;
    uint64_t number = 0;
    char event[CATRACA_ID_MAX + 1], events[2][CATRACA_ID_MAX + 1];
    struct log_seq seq;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(log.ops->append(log.context, &one, 1), CATRACA_E_UNAVAILABLE);
        assert_int_equal(log.ops->read(log.context, "ev", SEQ_ZERO, entries, 2, &count),
                         CATRACA_E_UNAVAILABLE);
        assert_int_equal(count, 0);
        assert_int_equal(log.ops->find_purchase(log.context, 1, event, &seq),
                         CATRACA_E_UNAVAILABLE);
        assert_int_equal(log.ops->count_after(log.context, "ev", SEQ_ZERO, &number),
                         CATRACA_E_UNAVAILABLE);
        assert_int_equal(log.ops->last_seq(log.context, "ev", &seq), CATRACA_E_UNAVAILABLE);
        assert_int_equal(log.ops->list_partitions(log.context, events, 2, &count),
                         CATRACA_E_UNAVAILABLE);
    }
    log.ops->close(log.context);
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
    admin_run(4, (const char *[]){"HSET", "catraca:purchases", "7", "nospace"});
    admin_run(4, (const char *[]){"HSET", "catraca:purchases", "8", "ev 1-x"});
    admin_run(4, (const char *[]){"HSET", "catraca:idem:c1", "bad", "garbage"});
    admin_run(3, (const char *[]){"SET", "catraca:{noindex}:count", "-3"});
    struct catraca_log log = open_log();
    struct log_entry entries[4];
    size_t count = 9;
    const char *bad_streams[] = {"big", "norecord", "badtime", "noindex"};
    for (size_t i = 0; i < 4; i++) {
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
    uint8_t message[16];
    size_t length;
    char events[4][CATRACA_ID_MAX + 1];
};

static void on_message(void *context, const uint8_t *message, size_t length)
{
    struct listener *l = context;
    l->length = length < sizeof(l->message) ? length : sizeof(l->message);
    memcpy(l->message, message, l->length);
    atomic_fetch_add(&l->received, 1);
    atomic_store(&l->stop, 1);
}

static void *subscriber_main(void *argument)
{
    struct listener *l = argument;
    l->result =
        l->bus.ops->subscribe_commits(l->bus.context, on_message, l, &l->stop, &l->is_subscribed);
    return NULL;
}

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

static void test_publish_subscribe(void **state)
{
    (void)state;
    static struct listener l;
    listener_reset(&l);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, subscriber_main, &l), 0);
    wait_subscribed(&l);
    struct catraca_bus bus = open_bus_at(url);
    const uint8_t message[5] = {0, 1, 0, 255, 0};
    assert_int_equal(bus.ops->publish_commit(bus.context, message, 5), 0);
    pthread_join(thread, NULL);
    assert_int_equal(l.result, 0);
    assert_int_equal(atomic_load(&l.received), 1);
    assert_int_equal(l.length, 5);
    assert_memory_equal(l.message, message, 5);
    assert_false(atomic_load(&l.is_subscribed));
    l.bus.ops->close(l.bus.context);
    /* Bounds: a message over BUS_MESSAGE_MAX is refused, and nothing needs a subscriber. */
    static uint8_t big[BUS_MESSAGE_MAX + 1];
    assert_int_equal(bus.ops->publish_commit(bus.context, big, sizeof(big)), CATRACA_E_INVALID);
    assert_int_equal(bus.ops->publish_commit(bus.context, NULL, 1), CATRACA_E_INVALID);
    assert_int_equal(bus.ops->publish_commit(bus.context, big, BUS_MESSAGE_MAX), 0);
    /* Instance numbers: each call a new one. */
    uint64_t first = 0, second = 0;
    assert_int_equal(bus.ops->unique_number(bus.context, &first), 0);
    assert_int_equal(bus.ops->unique_number(bus.context, &second), 0);
    assert_true(second > first && first > 0);
    bus.ops->close(bus.context);
}

/* One message per event a call appended to, however many items it had there. */
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
    /* A stop without messages returns within the poll interval. */
    listener_reset(&l);
    assert_int_equal(pthread_create(&thread, NULL, waiter_main, &l), 0);
    wait_subscribed(&l);
    atomic_store(&l.stop, 1);
    pthread_join(thread, NULL);
    assert_int_equal(l.result, 0);
    assert_int_equal(atomic_load(&l.received), 0);
    l.bus.ops->close(l.bus.context);
    log.ops->close(log.context);
}

/* The subscription dropped by the server: the waiter subscribes again by itself. */
static void test_wait_appended_resubscribes(void **state)
{
    (void)state;
    static struct listener l;
    listener_reset(&l);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, waiter_main, &l), 0);
    wait_subscribed(&l);
    admin_run(4, (const char *[]){"CLIENT", "KILL", "TYPE", "pubsub"});
    struct catraca_log log = open_log();
    uint8_t record[] = {1};
    /* Messages published while it is away are lost (pub/sub): append until one arrives. */
    for (int i = 0; i < 100 && atomic_load(&l.received) == 0; i++) {
        struct log_append_item one = item("ev", 0, NULL, 0, record, 1);
        assert_int_equal(log.ops->append(log.context, &one, 1), 0);
        poll(NULL, 0, 50);
    }
    assert_true(atomic_load(&l.received) > 0);
    assert_string_equal(l.events[0], "ev");
    atomic_store(&l.stop, 1);
    pthread_join(thread, NULL);
    assert_int_equal(l.result, 0);
    l.bus.ops->close(l.bus.context);
    log.ops->close(log.context);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip_binary, flush),
        cmocka_unit_test_setup(test_read_after_and_max, flush),
        cmocka_unit_test_setup(test_idempotency, flush),
        cmocka_unit_test_setup(test_failed_batch_appends_nothing, flush),
        cmocka_unit_test_setup(test_batch_across_two_events, flush),
        cmocka_unit_test_setup(test_find_purchase, flush),
        cmocka_unit_test_setup(test_count_after_and_last_seq, flush),
        cmocka_unit_test_setup(test_list_partitions, flush),
        cmocka_unit_test_setup(test_noscript_recovery, flush),
        cmocka_unit_test_setup(test_unavailable_server, flush),
        cmocka_unit_test_setup(test_reconnect_after_dropped_connection, flush),
        cmocka_unit_test_setup(test_wait_replicas, flush),
        cmocka_unit_test_setup(test_options, flush),
        cmocka_unit_test_setup(test_corrupt_data, flush),
        cmocka_unit_test_setup(test_publish_subscribe, flush),
        cmocka_unit_test_setup(test_wait_appended, flush),
        cmocka_unit_test_setup(test_wait_appended_resubscribes, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
