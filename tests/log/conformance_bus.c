/*
 * conformance_bus.c - the suite of conformance_bus.h. Subscribers run on
 * threads of their own, each with its own handle (a handle belongs to one
 * thread); they count only what carries this run's nonce (commit messages)
 * or prefix (event ids), so a shared server's other traffic does not count.
 */
#include "conformance_bus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#define NONCE_BYTES 8
#define KEPT_MAX 8        /* messages a listener copies */
#define EVENTS_KEPT_MAX 16 /* event ids a listener copies */
#define WAIT_MS 10000     /* the longest a case waits for a message that must come */

static const struct conformance_bus_target *target;
static uint8_t nonce[NONCE_BYTES];
static char run_prefix[24];

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static struct catraca_bus open_bus(void)
{
    struct catraca_bus bus = {0};
    int error = target->open(target->context, &bus);
    if (error != 0)
        fail_msg("%s: bus open failed: %d", target->name, error);
    return bus;
}

static void close_bus(struct catraca_bus *bus)
{
    if (target->close != NULL)
        target->close(target->context, bus);
    else
        bus->ops->close(bus->context);
    bus->ops = NULL;
}

/* ---- listeners ---------------------------------------------------------------------------- */

struct listener {
    struct catraca_bus bus;
    pthread_t thread;
    bool is_waiter; /* wait_appended; else subscribe_commits */
    atomic_int stop, is_subscribed;
    int result;
    pthread_mutex_t mutex;
    size_t received; /* this run's messages or events, under mutex */
    uint8_t *messages[KEPT_MAX];
    size_t lengths[KEPT_MAX];
    char events[EVENTS_KEPT_MAX][CATRACA_ID_MAX + 1];
};

static void on_message(void *context, const uint8_t *message, size_t length)
{
    struct listener *l = context;
    if (length < NONCE_BYTES || memcmp(message, nonce, NONCE_BYTES) != 0)
        return; /* another run's, or another process's */
    pthread_mutex_lock(&l->mutex);
    if (l->received < KEPT_MAX) {
        l->messages[l->received] = malloc(length);
        if (l->messages[l->received] != NULL)
            memcpy(l->messages[l->received], message, length);
        l->lengths[l->received] = length;
    }
    l->received++;
    pthread_mutex_unlock(&l->mutex);
}

static void on_event(void *context, const char *event)
{
    struct listener *l = context;
    if (strncmp(event, run_prefix, strlen(run_prefix)) != 0)
        return;
    pthread_mutex_lock(&l->mutex);
    if (l->received < EVENTS_KEPT_MAX)
        snprintf(l->events[l->received], CATRACA_ID_MAX + 1, "%s", event);
    l->received++;
    pthread_mutex_unlock(&l->mutex);
}

static void *listener_main(void *argument)
{
    struct listener *l = argument;
    if (l->is_waiter)
        l->result =
            l->bus.ops->wait_appended(l->bus.context, on_event, l, &l->stop, &l->is_subscribed);
    else
        l->result = l->bus.ops->subscribe_commits(l->bus.context, on_message, l, &l->stop,
                                                  &l->is_subscribed);
    return NULL;
}

static size_t received(struct listener *l)
{
    pthread_mutex_lock(&l->mutex);
    size_t n = l->received;
    pthread_mutex_unlock(&l->mutex);
    return n;
}

/* Waits up to ms for *is_subscribed to equal want; whether it did. */
static bool wait_subscribed(struct listener *l, int want, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    while (atomic_load(&l->is_subscribed) != want && now_ms() < deadline)
        poll(NULL, 0, 10);
    return atomic_load(&l->is_subscribed) == want;
}

static bool wait_received(struct listener *l, size_t want, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    while (received(l) < want && now_ms() < deadline)
        poll(NULL, 0, 10);
    return received(l) >= want;
}

/* Starts its thread; does not wait for the subscription. */
static void listener_launch(struct listener *l, bool is_waiter)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mutex, NULL);
    l->is_waiter = is_waiter;
    l->result = 1;
    l->bus = open_bus();
    assert_int_equal(pthread_create(&l->thread, NULL, listener_main, l), 0);
}

static void listener_start(struct listener *l, bool is_waiter)
{
    listener_launch(l, is_waiter);
    if (!wait_subscribed(l, 1, WAIT_MS))
        fail_msg("%s: %s never subscribed", target->name,
                 is_waiter ? "wait_appended" : "subscribe_commits");
}

/* Stops it; returns how long the call took to return after *stop. */
static uint64_t listener_stop(struct listener *l)
{
    uint64_t started = now_ms();
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    uint64_t took = now_ms() - started;
    assert_int_equal(l->result, 0);
    assert_int_equal(atomic_load(&l->is_subscribed), 0); /* nothing arrives any more */
    close_bus(&l->bus);
    for (size_t i = 0; i < KEPT_MAX; i++)
        free(l->messages[i]);
    pthread_mutex_destroy(&l->mutex);
    return took;
}

/* ---- unique numbers ----------------------------------------------------------------------- */

enum { NUMBER_THREADS = 4, NUMBERS_PER_THREAD = 25 };

struct numbers_thread {
    pthread_t thread;
    uint64_t numbers[NUMBERS_PER_THREAD];
    int error;
};

static void *numbers_main(void *argument)
{
    struct numbers_thread *t = argument;
    struct catraca_bus bus = {0};
    t->error = target->open(target->context, &bus);
    for (size_t i = 0; t->error == 0 && i < NUMBERS_PER_THREAD; i++)
        t->error = bus.ops->unique_number(bus.context, &t->numbers[i]);
    if (bus.ops != NULL)
        close_bus(&bus);
    return NULL;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_unique_numbers(void **state)
{
    (void)state;
    enum { OWN = 20, TOTAL = NUMBER_THREADS * NUMBERS_PER_THREAD + OWN };
    static struct numbers_thread threads[NUMBER_THREADS];
    uint64_t all[TOTAL];
    size_t count = 0;
    for (size_t t = 0; t < NUMBER_THREADS; t++)
        assert_int_equal(pthread_create(&threads[t].thread, NULL, numbers_main, &threads[t]), 0);
    struct catraca_bus buses[2] = {open_bus(), open_bus()}; /* two handles on this thread */
    for (size_t i = 0; i < OWN; i++)
        assert_int_equal(buses[i % 2].ops->unique_number(buses[i % 2].context, &all[count++]), 0);
    for (size_t t = 0; t < NUMBER_THREADS; t++) {
        pthread_join(threads[t].thread, NULL);
        if (threads[t].error != 0)
            fail_msg("%s: unique_number on thread %zu: %d", target->name, t, threads[t].error);
        memcpy(all + count, threads[t].numbers, sizeof(threads[t].numbers));
        count += NUMBERS_PER_THREAD;
    }
    qsort(all, count, sizeof(all[0]), compare_u64);
    for (size_t i = 1; i < count; i++)
        if (all[i - 1] == all[i])
            fail_msg("%s: unique_number gave %llu twice", target->name,
                     (unsigned long long)all[i]);
    close_bus(&buses[0]);
    close_bus(&buses[1]);
}

/* ---- commits ------------------------------------------------------------------------------ */

static void test_publish_reaches_subscriber(void **state)
{
    (void)state;
    static struct listener l;
    listener_start(&l, false);
    struct catraca_bus bus = open_bus();
    /* Binary: the nonce, then 0 bytes and every value around them. */
    uint8_t small[NONCE_BYTES + 6];
    memcpy(small, nonce, NONCE_BYTES);
    memcpy(small + NONCE_BYTES, (const uint8_t[]){0, 1, 0, 255, '\r', 0}, 6);
    uint8_t *largest = malloc(BUS_MESSAGE_MAX + 1);
    assert_non_null(largest);
    for (size_t i = 0; i < BUS_MESSAGE_MAX + 1; i++)
        largest[i] = (uint8_t)(i * 131 + (i >> 9));
    memcpy(largest, nonce, NONCE_BYTES);
    assert_int_equal(bus.ops->publish_commit(bus.context, small, sizeof(small)), 0);
    assert_int_equal(bus.ops->publish_commit(bus.context, largest, BUS_MESSAGE_MAX), 0);
    /* One byte over the bound, or a length without a message: refused, nothing sent. */
    assert_int_equal(bus.ops->publish_commit(bus.context, largest, BUS_MESSAGE_MAX + 1),
                     CATRACA_E_INVALID);
    assert_int_equal(bus.ops->publish_commit(bus.context, NULL, 1), CATRACA_E_INVALID);
    if (!wait_received(&l, 2, WAIT_MS))
        fail_msg("%s: %zu of 2 commits reached the subscriber", target->name, received(&l));
    poll(NULL, 0, 200); /* nothing more comes (the refused ones) */
    assert_int_equal(received(&l), 2);
    /* In the order published, whole. */
    assert_int_equal(l.lengths[0], sizeof(small));
    assert_memory_equal(l.messages[0], small, sizeof(small));
    assert_int_equal(l.lengths[1], BUS_MESSAGE_MAX);
    assert_true(l.messages[1] != NULL && memcmp(l.messages[1], largest, BUS_MESSAGE_MAX) == 0);
    free(largest);
    listener_stop(&l);
    close_bus(&bus);
}

/* Two subscribers both get every commit (every gateway parks requests). */
static void test_publish_reaches_every_subscriber(void **state)
{
    (void)state;
    static struct listener first, second;
    listener_start(&first, false);
    listener_start(&second, false);
    struct catraca_bus bus = open_bus();
    for (uint8_t i = 0; i < 5; i++) {
        uint8_t message[NONCE_BYTES + 1];
        memcpy(message, nonce, NONCE_BYTES);
        message[NONCE_BYTES] = i;
        assert_int_equal(bus.ops->publish_commit(bus.context, message, sizeof(message)), 0);
    }
    assert_true(wait_received(&first, 5, WAIT_MS));
    assert_true(wait_received(&second, 5, WAIT_MS));
    for (uint8_t i = 0; i < 5; i++) {
        assert_int_equal(first.messages[i][NONCE_BYTES], i);
        assert_int_equal(second.messages[i][NONCE_BYTES], i);
    }
    listener_stop(&first);
    listener_stop(&second);
    close_bus(&bus);
}

/* ---- appends ------------------------------------------------------------------------------ */

static bool has_event(struct listener *l, const char *event)
{
    pthread_mutex_lock(&l->mutex);
    bool is_found = false;
    for (size_t i = 0; i < l->received && i < EVENTS_KEPT_MAX; i++)
        is_found = is_found || strcmp(l->events[i], event) == 0;
    pthread_mutex_unlock(&l->mutex);
    return is_found;
}

static void append_to(struct catraca_log log, const char *const *events, size_t count)
{
    uint8_t record[] = {1};
    struct log_append_item items[8];
    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++)
        items[i] = (struct log_append_item){
            .event = events[i], .record = record, .record_length = 1, .time_ms = 1};
    int error = log.ops->append(log.context, items, count);
    if (error != 0)
        fail_msg("%s: log append for wait_appended: %d", target->name, error);
}

static void test_wait_appended_fires(void **state)
{
    (void)state;
    static struct listener l;
    listener_start(&l, true);
    struct catraca_log log = {0};
    assert_int_equal(target->open_log(target->context, &log), 0);
    char one[CATRACA_ID_MAX + 1], two[CATRACA_ID_MAX + 1];
    snprintf(one, sizeof(one), "%swake-one", run_prefix);
    snprintf(two, sizeof(two), "%swake-two", run_prefix);
    /* One call, items of two events: each event is reported. */
    append_to(log, (const char *const[]){one, two, one, two, one}, 5);
    uint64_t deadline = now_ms() + WAIT_MS;
    while ((!has_event(&l, one) || !has_event(&l, two)) && now_ms() < deadline)
        poll(NULL, 0, 10);
    if (!has_event(&l, one) || !has_event(&l, two))
        fail_msg("%s: wait_appended did not report both events of an append", target->name);
    log.ops->close(log.context);
    listener_stop(&l);
}

/* ---- stop --------------------------------------------------------------------------------- */

static void test_stop_returns_promptly(void **state)
{
    (void)state;
    for (int is_waiter = 0; is_waiter < 2; is_waiter++) {
        static struct listener l;
        listener_start(&l, is_waiter);
        poll(NULL, 0, 50);
        uint64_t took = listener_stop(&l);
        if (took > BUS_POLL_MS + 1000)
            fail_msg("%s: %s took %llu ms to return after a stop (BUS_POLL_MS %d)", target->name,
                     is_waiter ? "wait_appended" : "subscribe_commits", (unsigned long long)took,
                     BUS_POLL_MS);
    }
}

/* ---- the bus cut and back ----------------------------------------------------------------- */

static void test_cut_and_back(void **state)
{
    (void)state;
    if (target->cut_connections == NULL || target->restore_connections == NULL) {
        printf("[ conformance ] %s: the bus cannot be cut: skipped\n", target->name);
        skip();
    }
    static struct listener subscriber, waiter;
    listener_start(&subscriber, false);
    listener_start(&waiter, true);
    struct catraca_bus bus = open_bus();
    uint64_t number = 0;
    assert_int_equal(bus.ops->unique_number(bus.context, &number), 0); /* connected */
    uint64_t patience = (uint64_t)target->reconnect_ms + 5000;

    target->cut_connections(target->context);
    bool is_subscriber_down = wait_subscribed(&subscriber, 0, patience);
    bool is_waiter_down = wait_subscribed(&waiter, 0, patience);
    uint8_t message[NONCE_BYTES + 1];
    memcpy(message, nonce, NONCE_BYTES);
    message[NONCE_BYTES] = 'x';
    int number_error = bus.ops->unique_number(bus.context, &number);
    int publish_error = bus.ops->publish_commit(bus.context, message, sizeof(message));
    if (target->is_publish_queued && publish_error == 0) {
        /* Queued: its failure must surface on a later call, once the bus gave up on it. */
        poll(NULL, 0, target->reconnect_ms);
        publish_error = bus.ops->publish_commit(bus.context, message, sizeof(message));
    }
    /* A subscription started while the bus is down keeps trying, and still stops in time. */
    static struct listener late;
    listener_launch(&late, false);
    poll(NULL, 0, 300); /* still down a while: nobody may claim to be subscribed */
    bool is_still_down = atomic_load(&subscriber.is_subscribed) == 0 &&
                         atomic_load(&waiter.is_subscribed) == 0 &&
                         atomic_load(&late.is_subscribed) == 0;
    uint64_t late_stop_ms = listener_stop(&late);
    target->restore_connections(target->context);
    if (late_stop_ms > BUS_POLL_MS + 1000)
        fail_msg("%s: a subscription to a bus that is down took %llu ms to stop", target->name,
                 (unsigned long long)late_stop_ms);
    if (!is_subscriber_down || !is_waiter_down || !is_still_down)
        fail_msg("%s: is_subscribed stayed 1 while the bus was cut (commits %d, appends %d)",
                 target->name, is_subscriber_down, is_waiter_down);
    assert_int_equal(number_error, CATRACA_E_UNAVAILABLE);
    assert_int_equal(publish_error, CATRACA_E_UNAVAILABLE);

    /* Back by themselves. */
    if (!wait_subscribed(&subscriber, 1, patience) || !wait_subscribed(&waiter, 1, patience))
        fail_msg("%s: a subscription did not come back after the cut", target->name);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (received(&subscriber) == 0 && now_ms() < deadline) {
        int error = bus.ops->publish_commit(bus.context, message, sizeof(message));
        /* a queued publish's failure from the cut may surface here, once */
        if (error != 0 && !(target->is_publish_queued && error == CATRACA_E_UNAVAILABLE))
            fail_msg("%s: publish_commit after the cut returned %d", target->name, error);
        poll(NULL, 0, 50);
    }
    assert_true(received(&subscriber) > 0);
    struct catraca_log log = {0};
    assert_int_equal(target->open_log(target->context, &log), 0);
    char event[CATRACA_ID_MAX + 1];
    snprintf(event, sizeof(event), "%sback", run_prefix);
    while (!has_event(&waiter, event) && now_ms() < deadline) {
        append_to(log, (const char *const[]){event}, 1);
        poll(NULL, 0, 50);
    }
    assert_true(has_event(&waiter, event));
    assert_int_equal(bus.ops->unique_number(bus.context, &number), 0);
    log.ops->close(log.context);
    listener_stop(&subscriber);
    listener_stop(&waiter);
    close_bus(&bus);
}

int conformance_bus_run(const struct conformance_bus_target *run_target)
{
    target = run_target;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t clock_bits = ((uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000) ^
                          ((uint64_t)getpid() << 40);
    memcpy(nonce, &clock_bits, NONCE_BYTES);
    snprintf(run_prefix, sizeof(run_prefix), "b%012llx-",
             (unsigned long long)(clock_bits & UINT64_C(0xffffffffffff)));
    printf("[ conformance ] %s bus: events %s*\n", target->name, run_prefix);
    char name[64];
    snprintf(name, sizeof(name), "%s_bus", target->name);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unique_numbers),
        cmocka_unit_test(test_publish_reaches_subscriber),
        cmocka_unit_test(test_publish_reaches_every_subscriber),
        cmocka_unit_test(test_wait_appended_fires),
        cmocka_unit_test(test_stop_returns_promptly),
        cmocka_unit_test(test_cut_and_back),
    };
    return _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
}
