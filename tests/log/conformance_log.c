/*
 * conformance_log.c - the suite of conformance_log.h. Each case names its
 * events "<run prefix><tag>", so runs against a shared server never see each
 * other's entries; purchase ids and idempotency scopes are per run as well.
 */
#include "conformance_log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "log/fault_proxy.h"

#define READ_MAX 64
#define SEQ_ZERO ((struct log_seq){0, 0})
#define PREFIX_MAX 24
#define PARTITIONS_LIST_MAX 4096 /* a shared server of many runs still fits */

static const struct conformance_target *target;
static char run_prefix[PREFIX_MAX];
static char scope[PREFIX_MAX + 8];
static char other_scope[PREFIX_MAX + 8];
static uint64_t next_purchase;  /* per run: high bits from the clock, never 0 */
static uint64_t next_record;    /* record nonces: unique per run */
static unsigned long long seed; /* the randomized case's */

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* "<run prefix><tag>": an event id of this run. */
static void event_name(char out[CATRACA_ID_MAX + 1], const char *tag)
{
    size_t prefix = strlen(run_prefix), length = strlen(tag);
    assert_true(prefix + length <= CATRACA_ID_MAX);
    memcpy(out, run_prefix, prefix);
    memcpy(out + prefix, tag, length + 1);
}

static uint64_t purchase_id(void)
{
    return next_purchase++;
}

static struct catraca_log open_log(size_t read_max)
{
    struct catraca_log log = {0};
    int error = target->open(target->context, read_max, &log);
    if (error != 0)
        fail_msg("%s: open failed: %d", target->name, error);
    return log;
}

static void close_log(struct catraca_log *log)
{
    if (target->close != NULL)
        target->close(target->context, log);
    else
        log->ops->close(log->context);
    log->ops = NULL;
}

static struct log_append_item item(const char *event, uint64_t purchase, const char *key,
                                   uint64_t hash, const uint8_t *record, size_t length)
{
    return (struct log_append_item){.event = event,
                                    .record = record,
                                    .record_length = length,
                                    .time_ms = 1,
                                    .purchase_id = purchase,
                                    .idempotency_scope = scope,
                                    .idempotency_key = key,
                                    .request_hash = hash};
}

/* 16 bytes no other record of the run has: a nonce, then the index. */
struct unique_record {
    uint8_t bytes[16];
};

static struct unique_record unique_record(void)
{
    struct unique_record r;
    uint64_t nonce = next_record++;
    memcpy(r.bytes, &next_purchase, 8); /* the run's clock bits: records differ across runs */
    memcpy(r.bytes + 8, &nonce, 8);
    return r;
}

static void assert_seq_equal(struct log_seq a, struct log_seq b)
{
    if (log_seq_compare(a, b) != 0)
        fail_msg("seq %" PRIu64 "-%" PRIu64 " != %" PRIu64 "-%" PRIu64, a.major, a.minor, b.major,
                 b.minor);
}

static void assert_seq_before(struct log_seq a, struct log_seq b)
{
    if (log_seq_compare(a, b) >= 0)
        fail_msg("seq %" PRIu64 "-%" PRIu64 " not before %" PRIu64 "-%" PRIu64, a.major, a.minor,
                 b.major, b.minor);
}

static void append_ok(struct catraca_log log, struct log_append_item *items, size_t count)
{
    int error = log.ops->append(log.context, items, count);
    if (error != 0)
        fail_msg("%s: append of %zu items: %d", target->name, count, error);
}

static uint64_t count_after(struct catraca_log log, const char *event, struct log_seq after)
{
    uint64_t count = UINT64_MAX;
    assert_int_equal(log.ops->count_after(log.context, event, after, &count), 0);
    return count;
}

/* An entry copied out of the handle's buffer. */
struct copied_entry {
    struct log_seq seq;
    int64_t time_ms;
    size_t length;
    uint8_t *record;
};

struct copied_entries {
    struct copied_entry *entries;
    size_t count;
};

static void copied_free(struct copied_entries *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->entries[i].record);
    free(c->entries);
    *c = (struct copied_entries){0};
}

/* Every entry of event after `after`, paging by `page`, each page checked in order. */
static struct copied_entries read_all(struct catraca_log log, const char *event,
                                      struct log_seq after, size_t page)
{
    struct copied_entries all = {0};
    struct log_entry entries[READ_MAX];
    size_t count = 0, capacity = 0;
    assert_true(page >= 1 && page <= READ_MAX);
    do {
        count = SIZE_MAX;
        assert_int_equal(log.ops->read(log.context, event, after, entries, page, &count), 0);
        assert_true(count <= page);
        for (size_t i = 0; i < count; i++) {
            assert_seq_before(after, entries[i].seq);
            after = entries[i].seq;
            if (all.count == capacity) {
                capacity = capacity ? capacity * 2 : 64;
                all.entries = realloc(all.entries, capacity * sizeof(*all.entries));
                assert_non_null(all.entries);
            }
            struct copied_entry *c = &all.entries[all.count++];
            c->seq = entries[i].seq;
            c->time_ms = entries[i].time_ms;
            c->length = entries[i].record_length;
            c->record = malloc(c->length ? c->length : 1);
            assert_non_null(c->record);
            if (c->length > 0)
                memcpy(c->record, entries[i].record, c->length);
        }
    } while (count > 0);
    return all;
}

/* How many entries of event carry exactly this record (and where the last one is). */
static size_t occurrences(const struct copied_entries *all, const uint8_t *record, size_t length,
                          struct log_seq *at)
{
    size_t found = 0;
    for (size_t i = 0; i < all->count; i++)
        if (all->entries[i].length == length &&
            (length == 0 || memcmp(all->entries[i].record, record, length) == 0)) {
            found++;
            if (at != NULL)
                *at = all->entries[i].seq;
        }
    return found;
}

static bool partitions_contain(struct catraca_log log, const char *event)
{
    char(*events)[CATRACA_ID_MAX + 1] = calloc(PARTITIONS_LIST_MAX, sizeof(*events));
    assert_non_null(events);
    size_t count = SIZE_MAX;
    assert_int_equal(log.ops->list_partitions(log.context, events, PARTITIONS_LIST_MAX, &count), 0);
    assert_true(count < PARTITIONS_LIST_MAX); /* else "contains" cannot be told */
    bool is_found = false;
    for (size_t i = 0; i < count; i++)
        is_found = is_found || strcmp(events[i], event) == 0;
    free(events);
    return is_found;
}

/* ---- order, paging, durability ------------------------------------------------------------ */

/* Single appends to two events, interleaved: each event reads back in its own order. */
static void test_order_within_partition(void **state)
{
    (void)state;
    enum { APPENDS = 40 };
    struct catraca_log log = open_log(READ_MAX);
    char events[2][CATRACA_ID_MAX + 1];
    event_name(events[0], "order-a");
    event_name(events[1], "order-b");
    struct unique_record records[APPENDS];
    struct log_seq seqs[APPENDS];
    for (size_t i = 0; i < APPENDS; i++) {
        records[i] = unique_record();
        struct log_append_item one =
            item(events[i % 2], 0, NULL, 0, records[i].bytes, sizeof(records[i].bytes));
        one.time_ms = 1000 + (int64_t)i;
        append_ok(log, &one, 1);
        assert_int_equal(one.result, LOG_APPENDED);
        seqs[i] = one.seq;
        if (i >= 2)
            assert_seq_before(seqs[i - 2], seqs[i]); /* seqs of one event only grow */
    }
    for (size_t e = 0; e < 2; e++) {
        struct copied_entries all = read_all(log, events[e], SEQ_ZERO, READ_MAX);
        assert_int_equal(all.count, APPENDS / 2);
        for (size_t i = 0; i < all.count; i++) {
            size_t at = 2 * i + e;
            assert_seq_equal(all.entries[i].seq, seqs[at]);
            assert_true(all.entries[i].time_ms == 1000 + (int64_t)at);
            assert_int_equal(all.entries[i].length, sizeof(records[at].bytes));
            assert_memory_equal(all.entries[i].record, records[at].bytes, all.entries[i].length);
        }
        copied_free(&all);
    }
    close_log(&log);
}

static void test_read_paging(void **state)
{
    (void)state;
    enum { APPENDS = 20, HANDLE_READ_MAX = 8 };
    struct catraca_log log = open_log(HANDLE_READ_MAX);
    char event[CATRACA_ID_MAX + 1], nobody[CATRACA_ID_MAX + 1];
    event_name(event, "paging");
    event_name(nobody, "paging-nobody");
    struct log_seq seqs[APPENDS];
    struct unique_record records[APPENDS];
    for (size_t i = 0; i < APPENDS; i++) {
        records[i] = unique_record();
        struct log_append_item one =
            item(event, 0, NULL, 0, records[i].bytes, sizeof(records[i].bytes));
        append_ok(log, &one, 1);
        seqs[i] = one.seq;
    }
    /* Pages of 1, 3 and the handle's bound: each starts right after the last one read. */
    const size_t pages[] = {1, 3, HANDLE_READ_MAX};
    for (size_t p = 0; p < 3; p++) {
        struct copied_entries all = read_all(log, event, SEQ_ZERO, pages[p]);
        assert_int_equal(all.count, APPENDS);
        for (size_t i = 0; i < APPENDS; i++) {
            assert_seq_equal(all.entries[i].seq, seqs[i]);
            assert_memory_equal(all.entries[i].record, records[i].bytes, 16);
        }
        copied_free(&all);
    }
    struct log_entry entries[READ_MAX];
    size_t count = 0;
    /* max beyond read_max is clipped to it; 0 reads nothing; an unknown event is empty. */
    assert_int_equal(log.ops->read(log.context, event, SEQ_ZERO, entries, READ_MAX, &count), 0);
    assert_int_equal(count, HANDLE_READ_MAX);
    assert_int_equal(log.ops->read(log.context, event, SEQ_ZERO, entries, 0, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(log.ops->read(log.context, nobody, SEQ_ZERO, entries, 8, &count), 0);
    assert_int_equal(count, 0);
    /* after = log_seq_before(s) starts at s itself; after the last entry: nothing. */
    for (size_t i = 0; i < APPENDS; i += 7) {
        assert_int_equal(
            log.ops->read(log.context, event, log_seq_before(seqs[i]), entries, 2, &count), 0);
        assert_true(count >= 1);
        assert_seq_equal(entries[0].seq, seqs[i]);
        assert_memory_equal(entries[0].record, records[i].bytes, 16);
    }
    assert_int_equal(log.ops->read(log.context, event, seqs[APPENDS - 1], entries, 8, &count), 0);
    assert_int_equal(count, 0);
    struct log_seq beyond = {seqs[APPENDS - 1].major + 1, 0};
    assert_int_equal(log.ops->read(log.context, event, beyond, entries, 8, &count), 0);
    assert_int_equal(count, 0);
    close_log(&log);
}

/* What a handle appended reads back, whole, on a handle opened after it closed. */
static void test_durability_across_reopen(void **state)
{
    (void)state;
    enum { APPENDS = 30 };
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "durable");
    struct unique_record records[APPENDS];
    struct log_append_item items[APPENDS];
    char keys[APPENDS][32];
    uint64_t first_purchase = next_purchase;
    struct catraca_log log = open_log(READ_MAX);
    for (size_t i = 0; i < APPENDS; i++) {
        records[i] = unique_record();
        snprintf(keys[i], sizeof(keys[i]), "dk%zu", i);
        items[i] = item(event, purchase_id(), keys[i], i, records[i].bytes, 16);
        items[i].time_ms = -(int64_t)i;
    }
    append_ok(log, items, 10); /* a batch, then single appends */
    for (size_t i = 10; i < APPENDS; i++)
        append_ok(log, &items[i], 1);
    close_log(&log);

    log = open_log(READ_MAX);
    struct copied_entries all = read_all(log, event, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, APPENDS);
    for (size_t i = 0; i < APPENDS; i++) {
        assert_seq_equal(all.entries[i].seq, items[i].seq);
        assert_true(all.entries[i].time_ms == -(int64_t)i);
        assert_memory_equal(all.entries[i].record, records[i].bytes, 16);
    }
    copied_free(&all);
    struct log_seq last;
    assert_int_equal(log.ops->last_seq(log.context, event, &last), 0);
    assert_seq_equal(last, items[APPENDS - 1].seq);
    assert_true(count_after(log, event, SEQ_ZERO) == APPENDS);
    char found[CATRACA_ID_MAX + 1];
    struct log_seq at;
    assert_int_equal(log.ops->find_purchase(log.context, first_purchase + 3, found, &at), 0);
    assert_string_equal(found, event);
    assert_seq_equal(at, items[3].seq);
    assert_true(partitions_contain(log, event));
    /* The keys outlive the handle: a retry after the reopen is a duplicate. */
    struct log_append_item retry = item(event, purchase_id(), keys[5], 5, records[5].bytes, 16);
    append_ok(log, &retry, 1);
    assert_int_equal(retry.result, LOG_DUPLICATE);
    assert_seq_equal(retry.seq, items[5].seq);
    assert_true(retry.existing_purchase_id == first_purchase + 5);
    assert_true(count_after(log, event, SEQ_ZERO) == APPENDS);
    close_log(&log);
}

/* Appends through several handles, alternating: seqs grow in the order the appends returned. */
static void test_seq_monotonic_across_handles(void **state)
{
    (void)state;
    enum { HANDLES = 3, APPENDS = 30 };
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "monotonic");
    struct catraca_log logs[HANDLES];
    for (size_t h = 0; h < HANDLES; h++)
        logs[h] = open_log(READ_MAX);
    struct log_seq seqs[APPENDS];
    struct unique_record records[APPENDS];
    for (size_t i = 0; i < APPENDS; i++) {
        records[i] = unique_record();
        struct log_append_item one = item(event, 0, NULL, 0, records[i].bytes, 16);
        append_ok(logs[i % HANDLES], &one, 1);
        seqs[i] = one.seq;
        if (i > 0)
            assert_seq_before(seqs[i - 1], seqs[i]);
        struct log_seq last;
        assert_int_equal(logs[(i + 1) % HANDLES].ops->last_seq(logs[(i + 1) % HANDLES].context,
                                                               event, &last),
                         0);
        assert_seq_equal(last, seqs[i]); /* another handle sees it at once */
    }
    for (size_t h = 0; h < HANDLES; h++) {
        struct copied_entries all = read_all(logs[h], event, SEQ_ZERO, 7);
        assert_int_equal(all.count, APPENDS);
        for (size_t i = 0; i < APPENDS; i++) {
            assert_seq_equal(all.entries[i].seq, seqs[i]);
            assert_memory_equal(all.entries[i].record, records[i].bytes, 16);
        }
        copied_free(&all);
        close_log(&logs[h]);
    }
}

struct appender_thread {
    pthread_t thread;
    const char *event;
    size_t appends;
    struct log_seq *seqs;
    struct unique_record *records;
    int error;
};

static void *appender_main(void *argument)
{
    struct appender_thread *a = argument;
    struct catraca_log log = {0};
    a->error = target->open(target->context, READ_MAX, &log);
    for (size_t i = 0; a->error == 0 && i < a->appends; i++) {
        struct log_append_item one = {.event = a->event,
                                      .record = a->records[i].bytes,
                                      .record_length = 16,
                                      .time_ms = 7};
        a->error = log.ops->append(log.context, &one, 1);
        a->seqs[i] = one.seq;
    }
    if (log.ops != NULL)
        close_log(&log);
    return NULL;
}

/* Threads with a handle each append to one event at once: one total order, nothing lost. */
static void test_concurrent_appenders(void **state)
{
    (void)state;
    enum { THREADS = 4, APPENDS = 40 };
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "concurrent");
    static struct appender_thread threads[THREADS];
    static struct log_seq seqs[THREADS][APPENDS];
    static struct unique_record records[THREADS][APPENDS];
    for (size_t t = 0; t < THREADS; t++) {
        for (size_t i = 0; i < APPENDS; i++)
            records[t][i] = unique_record();
        threads[t] = (struct appender_thread){
            .event = event, .appends = APPENDS, .seqs = seqs[t], .records = records[t]};
    }
    for (size_t t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t].thread, NULL, appender_main, &threads[t]), 0);
    for (size_t t = 0; t < THREADS; t++)
        pthread_join(threads[t].thread, NULL);
    for (size_t t = 0; t < THREADS; t++) {
        if (threads[t].error != 0)
            fail_msg("%s: appender thread %zu: %d", target->name, t, threads[t].error);
        for (size_t i = 1; i < APPENDS; i++)
            assert_seq_before(seqs[t][i - 1], seqs[t][i]);
    }
    struct catraca_log log = open_log(READ_MAX);
    struct copied_entries all = read_all(log, event, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, THREADS * APPENDS);
    for (size_t t = 0; t < THREADS; t++)
        for (size_t i = 0; i < APPENDS; i++) {
            struct log_seq at = SEQ_ZERO;
            assert_int_equal(occurrences(&all, records[t][i].bytes, 16, &at), 1);
            assert_seq_equal(at, seqs[t][i]);
        }
    copied_free(&all);
    assert_true(count_after(log, event, SEQ_ZERO) == THREADS * APPENDS);
    close_log(&log);
}

/* ---- batches ------------------------------------------------------------------------------ */

/* One call, 1000 items over two events: all appended, each event in order; again: duplicates. */
static void test_batch_across_two_events(void **state)
{
    (void)state;
    enum { ITEMS = 1000 };
    struct catraca_log log = open_log(READ_MAX);
    char events[2][CATRACA_ID_MAX + 1];
    event_name(events[0], "batch-a");
    event_name(events[1], "batch-b");
    static struct log_append_item items[ITEMS], again[ITEMS];
    static struct unique_record records[ITEMS];
    static char keys[ITEMS][32];
    uint64_t first_purchase = next_purchase;
    for (size_t i = 0; i < ITEMS; i++) {
        records[i] = unique_record();
        snprintf(keys[i], sizeof(keys[i]), "bk%zu", i);
        items[i] = item(events[i % 2], purchase_id(), i % 3 ? keys[i] : NULL, i, records[i].bytes,
                        16);
    }
    append_ok(log, items, ITEMS);
    for (size_t i = 0; i < ITEMS; i++) {
        assert_int_equal(items[i].result, LOG_APPENDED);
        assert_true(items[i].existing_purchase_id == first_purchase + i);
        if (i >= 2)
            assert_seq_before(items[i - 2].seq, items[i].seq);
    }
    for (size_t e = 0; e < 2; e++) {
        assert_true(count_after(log, events[e], SEQ_ZERO) == ITEMS / 2);
        struct copied_entries all = read_all(log, events[e], SEQ_ZERO, READ_MAX);
        assert_int_equal(all.count, ITEMS / 2);
        for (size_t i = 0; i < all.count; i++) {
            assert_seq_equal(all.entries[i].seq, items[2 * i + e].seq);
            assert_memory_equal(all.entries[i].record, records[2 * i + e].bytes, 16);
        }
        copied_free(&all);
        struct log_seq last;
        assert_int_equal(log.ops->last_seq(log.context, events[e], &last), 0);
        assert_seq_equal(last, items[ITEMS - 2 + e].seq);
    }
    /* The whole batch again: every item a duplicate of itself, nothing appended. */
    memcpy(again, items, sizeof(again));
    append_ok(log, again, ITEMS);
    for (size_t i = 0; i < ITEMS; i++) {
        assert_int_equal(again[i].result, LOG_DUPLICATE);
        assert_seq_equal(again[i].seq, items[i].seq);
        assert_true(again[i].existing_purchase_id == first_purchase + i);
    }
    assert_true(count_after(log, events[0], SEQ_ZERO) == ITEMS / 2);
    assert_true(count_after(log, events[1], SEQ_ZERO) == ITEMS / 2);
    close_log(&log);
}

/* A batch with one invalid item appends none of its items, wherever the invalid one is. */
static void test_invalid_batch_appends_nothing(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1], second[CATRACA_ID_MAX + 1];
    event_name(event, "atomic");
    event_name(second, "atomic-second");
    static uint8_t big[CATRACA_COMMAND_ENCODED_MAX + 1];
    char long_id[CATRACA_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    struct unique_record good = unique_record();
    for (int invalid = 0; invalid < 5; invalid++) {
        for (size_t at = 0; at < 3; at++) {
            struct log_append_item items[3];
            for (size_t i = 0; i < 3; i++)
                items[i] = item(i == 1 ? second : event, purchase_id(), NULL, 0, good.bytes, 16);
            struct log_append_item *bad = &items[at];
            switch (invalid) {
            case 0: /* a record over the bound */
                bad->record = big;
                bad->record_length = sizeof(big);
                break;
            case 1: /* a key without its scope */
                bad->idempotency_key = "k";
                bad->idempotency_scope = NULL;
                break;
            case 2: /* an event id over the bound */
                bad->event = long_id;
                break;
            case 3: /* no event id */
                bad->event = "";
                break;
            default: /* a length without its record */
                bad->record = NULL;
                break;
            }
            int error = log.ops->append(log.context, items, 3);
            if (error != CATRACA_E_INVALID)
                fail_msg("%s: invalid item %d at %zu: append returned %d", target->name, invalid,
                         at, error);
        }
    }
    assert_true(count_after(log, event, SEQ_ZERO) == 0);
    assert_true(count_after(log, second, SEQ_ZERO) == 0);
    struct log_seq last = {7, 7};
    assert_int_equal(log.ops->last_seq(log.context, event, &last), 0);
    assert_seq_equal(last, SEQ_ZERO);
    assert_false(partitions_contain(log, event));
    assert_false(partitions_contain(log, second));
    assert_int_equal(log.ops->append(log.context, NULL, 0), 0); /* nothing to do */
    /* The handle still appends. */
    struct log_append_item one = item(event, purchase_id(), NULL, 0, good.bytes, 16);
    append_ok(log, &one, 1);
    assert_true(count_after(log, event, SEQ_ZERO) == 1);
    close_log(&log);
}

/* ---- idempotency, find_purchase, counts, partitions --------------------------------------- */

static void test_idempotency(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1], other[CATRACA_ID_MAX + 1];
    event_name(event, "idem");
    event_name(other, "idem-other");
    uint8_t record[] = {1, 2, 3};
    uint64_t p = next_purchase;
    next_purchase += 100;
    struct log_append_item items[4] = {
        item(event, p + 10, "k1", 111, record, 3), item(event, p + 11, NULL, 0, record, 2),
        item(other, p + 12, NULL, 0, record, 1), item(event, 0, "k2", 5, record, 3)};
    append_ok(log, items, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(items[i].result, LOG_APPENDED);
    assert_true(items[0].existing_purchase_id == p + 10); /* an appended item's own id */
    struct log_append_item again[4] = {
        item(event, p + 20, "k1", 111, record, 3), item(event, p + 21, "k1", 222, record, 3),
        item(event, p + 11, NULL, 0, record, 2), item(event, 0, "k2", 5, record, 3)};
    append_ok(log, again, 4);
    assert_int_equal(again[0].result, LOG_DUPLICATE); /* a retry: a new purchase id, the key */
    assert_seq_equal(again[0].seq, items[0].seq);
    assert_true(again[0].existing_purchase_id == p + 10);
    assert_int_equal(again[1].result, LOG_DUPLICATE_MISMATCH); /* the key, another request */
    assert_seq_equal(again[1].seq, items[0].seq);
    assert_true(again[1].existing_purchase_id == p + 10);
    assert_int_equal(again[2].result, LOG_DUPLICATE); /* the same purchase id appended twice */
    assert_seq_equal(again[2].seq, items[1].seq);
    assert_true(again[2].existing_purchase_id == p + 11);
    assert_int_equal(again[3].result, LOG_DUPLICATE); /* a keyed entry that is no purchase */
    assert_seq_equal(again[3].seq, items[3].seq);
    assert_true(again[3].existing_purchase_id == 0);
    assert_true(count_after(log, event, SEQ_ZERO) == 3); /* nothing appended for duplicates */
    char found[CATRACA_ID_MAX + 1];
    struct log_seq at;
    assert_int_equal(log.ops->find_purchase(log.context, p + 20, found, &at), CATRACA_E_NOTFOUND);
    /* One key twice in one call: the second is a duplicate of the first; scopes differ. */
    struct log_append_item batch[3] = {item(event, p + 30, "k3", 7, record, 3),
                                       item(event, p + 31, "k3", 7, record, 3),
                                       item(event, p + 32, "k3", 7, record, 3)};
    batch[2].idempotency_scope = other_scope;
    append_ok(log, batch, 3);
    assert_int_equal(batch[0].result, LOG_APPENDED);
    assert_int_equal(batch[1].result, LOG_DUPLICATE);
    assert_seq_equal(batch[1].seq, batch[0].seq);
    assert_true(batch[1].existing_purchase_id == p + 30);
    assert_int_equal(batch[2].result, LOG_APPENDED);
    assert_true(count_after(log, event, SEQ_ZERO) == 5);
    /* Another handle knows the keys too. */
    struct catraca_log second = open_log(READ_MAX);
    struct log_append_item retry = item(event, p + 40, "k1", 111, record, 3);
    append_ok(second, &retry, 1);
    assert_int_equal(retry.result, LOG_DUPLICATE);
    assert_seq_equal(retry.seq, items[0].seq);
    close_log(&second);
    close_log(&log);
}

/*
 * A call far larger than a group commit usually is (the Redis script reads and writes purchase
 * ids in chunks of 1 000): ids repeated within the call, across chunk borders, are duplicates of
 * their first entry; everything else is appended once, in order, and findable afterwards.
 */
static void test_large_batch_with_duplicates_inside(void **state)
{
    (void)state;
    enum { COUNT = 2500 };
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "large");
    static struct log_append_item items[COUNT];
    static struct unique_record records[COUNT];
    static const size_t repeats[][2] = {{1200, 10}, {2499, 2100}, {1000, 999}, {2000, 1999}};
    uint64_t first_id = next_purchase;
    for (size_t i = 0; i < COUNT; i++) {
        records[i] = unique_record();
        items[i] = item(event, purchase_id(), NULL, 0, records[i].bytes, 16);
    }
    for (size_t r = 0; r < sizeof(repeats) / sizeof(repeats[0]); r++)
        items[repeats[r][0]].purchase_id = items[repeats[r][1]].purchase_id;
    append_ok(log, items, COUNT);
    size_t appended = 0;
    struct log_seq last = SEQ_ZERO;
    for (size_t i = 0; i < COUNT; i++) {
        size_t original = i;
        for (size_t r = 0; r < sizeof(repeats) / sizeof(repeats[0]); r++)
            if (repeats[r][0] == i)
                original = repeats[r][1];
        if (original != i) {
            assert_int_equal(items[i].result, LOG_DUPLICATE);
            assert_seq_equal(items[i].seq, items[original].seq);
            assert_true(items[i].existing_purchase_id == items[original].purchase_id);
        } else {
            assert_int_equal(items[i].result, LOG_APPENDED);
            assert_true(log_seq_compare(items[i].seq, last) > 0); /* in the call's order */
            last = items[i].seq;
            appended++;
        }
    }
    assert_true(count_after(log, event, SEQ_ZERO) == appended);
    struct copied_entries all = read_all(log, event, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, appended);
    for (size_t i = 0, at = 0; i < COUNT; i++)
        if (items[i].result == LOG_APPENDED) {
            assert_seq_equal(all.entries[at].seq, items[i].seq);
            assert_memory_equal(all.entries[at].record, records[i].bytes, 16);
            at++;
        }
    copied_free(&all);
    /* Every id the call placed is known to later calls, whichever chunk wrote it. */
    char found[CATRACA_ID_MAX + 1];
    struct log_seq at;
    for (size_t i = 0; i < COUNT; i += 499) {
        assert_int_equal(log.ops->find_purchase(log.context, items[i].purchase_id, found, &at), 0);
        assert_string_equal(found, event);
        assert_seq_equal(at, items[i].seq);
    }
    struct log_append_item again[2] = {
        item(event, items[2498].purchase_id, NULL, 0, records[0].bytes, 16),
        item(event, first_id + 999, NULL, 0, records[1].bytes, 16)};
    append_ok(log, again, 2);
    assert_int_equal(again[0].result, LOG_DUPLICATE);
    assert_seq_equal(again[0].seq, items[2498].seq);
    assert_int_equal(again[1].result, LOG_DUPLICATE);
    assert_seq_equal(again[1].seq, items[999].seq);
    assert_true(count_after(log, event, SEQ_ZERO) == appended);
    close_log(&log);
}

static void test_find_purchase(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1], other[CATRACA_ID_MAX + 1];
    event_name(event, "find.one_x");
    event_name(other, "find-other");
    uint8_t record[] = {9};
    uint64_t high = next_purchase | (UINT64_C(1) << 63); /* no signed-integer surprise */
    uint64_t low = purchase_id();
    struct log_append_item items[3] = {item(event, low, NULL, 0, record, 1),
                                       item(other, high, NULL, 0, record, 1),
                                       item(other, 0, NULL, 0, record, 1)};
    append_ok(log, items, 3);
    char found[CATRACA_ID_MAX + 1];
    struct log_seq at;
    assert_int_equal(log.ops->find_purchase(log.context, low, found, &at), 0);
    assert_string_equal(found, event);
    assert_seq_equal(at, items[0].seq);
    assert_int_equal(log.ops->find_purchase(log.context, high, found, &at), 0);
    assert_string_equal(found, other);
    assert_seq_equal(at, items[1].seq);
    assert_int_equal(log.ops->find_purchase(log.context, purchase_id(), found, &at),
                     CATRACA_E_NOTFOUND);
    close_log(&log);
}

static void test_count_after_and_last_seq(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "counts");
    struct log_seq last = {7, 7};
    assert_int_equal(log.ops->last_seq(log.context, event, &last), 0);
    assert_seq_equal(last, SEQ_ZERO);
    assert_true(count_after(log, event, SEQ_ZERO) == 0);
    uint8_t record[] = {1};
    struct log_append_item items[5];
    for (int i = 0; i < 5; i++)
        items[i] = item(event, 0, NULL, 0, record, 1);
    append_ok(log, items, 5);
    assert_true(count_after(log, event, SEQ_ZERO) == 5);
    for (uint64_t i = 0; i < 5; i++) {
        assert_true(count_after(log, event, items[i].seq) == 4 - i);
        assert_true(count_after(log, event, log_seq_before(items[i].seq)) == 5 - i);
    }
    assert_true(count_after(log, event, (struct log_seq){items[4].seq.major + 1000, 0}) == 0);
    assert_int_equal(log.ops->last_seq(log.context, event, &last), 0);
    assert_seq_equal(last, items[4].seq);
    close_log(&log);
}

static void test_list_partitions(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    uint8_t record[] = {1};
    const char *tags[] = {"parts4", "parts1", "parts3", "parts0", "parts2"};
    char ids[5][CATRACA_ID_MAX + 1], duplicate_id[CATRACA_ID_MAX + 1];
    struct log_append_item items[5];
    for (int i = 0; i < 5; i++) {
        event_name(ids[i], tags[i]);
        items[i] = item(ids[i], 0, NULL, 0, record, 1);
    }
    items[2].idempotency_key = "pk";
    append_ok(log, items, 5);
    for (int i = 0; i < 5; i++)
        assert_true(partitions_contain(log, ids[i]));
    /* A duplicate appends nothing, so it makes no partition. */
    event_name(duplicate_id, "parts-duplicate");
    struct log_append_item duplicate = item(duplicate_id, 0, "pk", 0, record, 1);
    append_ok(log, &duplicate, 1);
    assert_int_equal(duplicate.result, LOG_DUPLICATE);
    assert_false(partitions_contain(log, duplicate_id));
    /* Sorted, and bounded: the first max ids of the full list (SQLite's ORDER BY ... LIMIT). */
    char(*all)[CATRACA_ID_MAX + 1] = calloc(PARTITIONS_LIST_MAX, sizeof(*all));
    char some[3][CATRACA_ID_MAX + 1];
    assert_non_null(all);
    size_t count = 0, some_count = SIZE_MAX;
    assert_int_equal(log.ops->list_partitions(log.context, all, PARTITIONS_LIST_MAX, &count), 0);
    assert_true(count >= 5);
    for (size_t i = 1; i < count; i++)
        assert_true(strcmp(all[i - 1], all[i]) < 0);
    assert_int_equal(log.ops->list_partitions(log.context, some, 3, &some_count), 0);
    assert_int_equal(some_count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(some[i], all[i]);
    assert_int_equal(log.ops->list_partitions(log.context, some, 0, &some_count), 0);
    assert_int_equal(some_count, 0);
    free(all);
    close_log(&log);
}

/* ---- records and bounds ------------------------------------------------------------------- */

static void test_binary_records(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "binary");
    static uint8_t big[CATRACA_COMMAND_ENCODED_MAX];
    struct unique_record head = unique_record();
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7 + head.bytes[i % 16]);
    uint8_t zeros[3] = {0, 0, 0}, mixed[8] = {0xff, 0, 'a', '\r', '\n', 0, '$', '*'};
    struct log_append_item items[5] = {
        item(event, purchase_id(), NULL, 0, zeros, sizeof(zeros)),
        item(event, 0, NULL, 0, mixed, sizeof(mixed)),
        item(event, purchase_id(), NULL, 0, big, sizeof(big)),
        item(event, 0, NULL, 0, NULL, 0),
        item(event, 0, NULL, 0, head.bytes, 16),
    };
    const int64_t times[5] = {1700000000123, -5, INT64_MAX, INT64_MIN, 0};
    for (int i = 0; i < 5; i++)
        items[i].time_ms = times[i];
    append_ok(log, items, 5);
    struct copied_entries all = read_all(log, event, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(items[i].result, LOG_APPENDED);
        assert_seq_equal(all.entries[i].seq, items[i].seq);
        assert_true(all.entries[i].time_ms == times[i]);
        assert_int_equal(all.entries[i].length, items[i].record_length);
        if (items[i].record_length > 0)
            assert_memory_equal(all.entries[i].record, items[i].record, items[i].record_length);
    }
    copied_free(&all);
    close_log(&log);
}

static void test_bounds(void **state)
{
    (void)state;
    struct catraca_log log = open_log(READ_MAX);
    char longest[CATRACA_ID_MAX + 1], too_long[CATRACA_ID_MAX + 2];
    event_name(longest, "bounds-");
    size_t used = strlen(longest);
    memset(longest + used, 'x', CATRACA_ID_MAX - used);
    longest[CATRACA_ID_MAX] = '\0';
    memcpy(too_long, longest, CATRACA_ID_MAX);
    too_long[CATRACA_ID_MAX] = 'x';
    too_long[CATRACA_ID_MAX + 1] = '\0';
    /* The longest id is an event like any other. */
    struct unique_record record = unique_record();
    struct log_append_item one = item(longest, purchase_id(), "bk", 1, record.bytes, 16);
    append_ok(log, &one, 1);
    struct copied_entries all = read_all(log, longest, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, 1);
    copied_free(&all);
    char found[CATRACA_ID_MAX + 1];
    struct log_seq at;
    assert_int_equal(log.ops->find_purchase(log.context, one.purchase_id, found, &at), 0);
    assert_string_equal(found, longest);
    assert_true(partitions_contain(log, longest));
    /* One byte more is refused, by every call that takes an event id. */
    struct log_append_item refused = item(too_long, purchase_id(), NULL, 0, record.bytes, 16);
    assert_int_equal(log.ops->append(log.context, &refused, 1), CATRACA_E_INVALID);
    struct log_entry entries[2];
    size_t count = 9;
    uint64_t number = 9;
    assert_int_equal(log.ops->read(log.context, too_long, SEQ_ZERO, entries, 2, &count),
                     CATRACA_E_INVALID);
    assert_int_equal(log.ops->count_after(log.context, too_long, SEQ_ZERO, &number),
                     CATRACA_E_INVALID);
    assert_int_equal(log.ops->last_seq(log.context, too_long, &at), CATRACA_E_INVALID);
    assert_int_equal(log.ops->read(log.context, "", SEQ_ZERO, entries, 2, &count),
                     CATRACA_E_INVALID);
    assert_int_equal(log.ops->find_purchase(log.context, refused.purchase_id, found, &at),
                     CATRACA_E_NOTFOUND);
    close_log(&log);
}

/* ---- fencing ------------------------------------------------------------------------------ */

/*
 * What fencing (src/store/lease*.c, src/worker/worker.c) needs of the log: a
 * worker that takes a partition over under a new epoch loads the committed
 * seq from the store and reads the log from there. It must get exactly the
 * entries its predecessor got after that seq, in the same order, with the
 * same seqs, whatever was appended meanwhile through other handles; and
 * reading a range again gives the same entries (a fenced worker's batch is
 * re-decided from the log, not from its memory).
 */
static void test_fencing_reread_from_stored_seq(void **state)
{
    (void)state;
    enum { FIRST = 12, LATER = 18, PAGE = 5 };
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "fencing");
    struct catraca_log writers[2] = {open_log(READ_MAX), open_log(READ_MAX)};
    struct catraca_log old_worker = open_log(PAGE);
    struct unique_record records[FIRST + LATER];
    for (size_t i = 0; i < FIRST; i++) {
        records[i] = unique_record();
        struct log_append_item one = item(event, purchase_id(), NULL, 0, records[i].bytes, 16);
        append_ok(writers[i % 2], &one, 1);
    }
    /* The old worker decides one batch, "commits" its last seq, and is paused. */
    struct log_entry entries[PAGE];
    size_t count = 0;
    assert_int_equal(old_worker.ops->read(old_worker.context, event, SEQ_ZERO, entries, PAGE,
                                          &count),
                     0);
    assert_int_equal(count, PAGE);
    struct log_seq committed = entries[PAGE - 1].seq;
    struct copied_entries before = read_all(old_worker, event, committed, PAGE);
    for (size_t i = FIRST; i < FIRST + LATER; i++) {
        records[i] = unique_record();
        struct log_append_item one = item(event, purchase_id(), NULL, 0, records[i].bytes, 16);
        append_ok(writers[i % 2], &one, 1);
    }
    /* The new worker (a new handle, next epoch) reads from the committed seq. */
    struct catraca_log new_worker = open_log(3);
    struct copied_entries taken_over = read_all(new_worker, event, committed, 3);
    assert_int_equal(taken_over.count, FIRST + LATER - PAGE);
    assert_true(count_after(new_worker, event, committed) == FIRST + LATER - PAGE);
    for (size_t i = 0; i < taken_over.count; i++) {
        assert_memory_equal(taken_over.entries[i].record, records[PAGE + i].bytes, 16);
        if (i < before.count) { /* what the old worker saw after the seq is unchanged */
            assert_seq_equal(taken_over.entries[i].seq, before.entries[i].seq);
            assert_memory_equal(before.entries[i].record, records[PAGE + i].bytes, 16);
        }
    }
    assert_int_equal(before.count, FIRST - PAGE);
    /* The old worker, woken, re-reads the same range and gets the same entries. */
    struct copied_entries again = read_all(old_worker, event, committed, PAGE);
    assert_int_equal(again.count, taken_over.count);
    for (size_t i = 0; i < again.count; i++) {
        assert_seq_equal(again.entries[i].seq, taken_over.entries[i].seq);
        assert_memory_equal(again.entries[i].record, taken_over.entries[i].record, 16);
    }
    /* And the committed entry itself is where it was. */
    assert_int_equal(new_worker.ops->read(new_worker.context, event, log_seq_before(committed),
                                          entries, 1, &count),
                     0);
    assert_int_equal(count, 1);
    assert_seq_equal(entries[0].seq, committed);
    assert_memory_equal(entries[0].record, records[PAGE - 1].bytes, 16);
    copied_free(&before);
    copied_free(&taken_over);
    copied_free(&again);
    close_log(&new_worker);
    close_log(&old_worker);
    close_log(&writers[0]);
    close_log(&writers[1]);
}

/* ---- randomized: a model of the log against the adapter ----------------------------------- */

#define MODEL_KEY_MAX 48

struct model_key {
    char key[MODEL_KEY_MAX];
    uint64_t hash, purchase;
    struct log_seq seq;
};

struct model_purchase {
    uint64_t id;
    const char *key; /* the key it was appended with, or NULL */
    uint64_t hash;
    struct log_seq seq;
    size_t event;
};

struct model_entry {
    struct unique_record record;
    struct log_seq seq;
};

/* Deterministic from the seed: splitmix64. */
static uint64_t random_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/*
 * Random batches through three handles over three events, with retried
 * purchases (the same id and key), retried keys (a new purchase id, as a
 * gateway's retry has) and reused keys with another request. The model
 * predicts every result; the log must read back exactly the model's entries.
 */
static void test_random_against_model(void **state)
{
    (void)state;
    enum { ROUNDS = 150, BATCH_MAX = 8, EVENTS = 3, HANDLES = 3 };
    enum { ENTRIES_MAX = ROUNDS * BATCH_MAX };
    uint64_t random = seed;
    printf("[ conformance ] %s: random model, seed %llu (CATRACA_SEED reproduces)\n",
           target->name, seed);
    char events[EVENTS][CATRACA_ID_MAX + 1];
    for (size_t e = 0; e < EVENTS; e++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "random%zu", e);
        event_name(events[e], tag);
    }
    struct catraca_log logs[HANDLES];
    for (size_t h = 0; h < HANDLES; h++)
        logs[h] = open_log(READ_MAX);
    static struct model_key keys[ENTRIES_MAX];
    static struct model_purchase purchases[ENTRIES_MAX];
    static struct model_entry entries[EVENTS][ENTRIES_MAX];
    size_t key_count = 0, purchase_count = 0, entry_count[EVENTS] = {0};
    for (size_t round = 0; round < ROUNDS; round++) {
        struct log_append_item batch[BATCH_MAX];
        struct unique_record records[BATCH_MAX];
        char batch_keys[BATCH_MAX][MODEL_KEY_MAX];
        size_t batch_events[BATCH_MAX];
        /* The expected result per item, computed as the log must (key first, then id). */
        uint8_t expected[BATCH_MAX];
        struct log_seq expected_seq[BATCH_MAX];
        size_t expected_key[BATCH_MAX], expected_purchase[BATCH_MAX];
        size_t n = 1 + random_next(&random) % BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            size_t e = random_next(&random) % EVENTS;
            records[i] = unique_record();
            uint64_t purchase = random_next(&random) % 5 == 0 ? 0 : purchase_id();
            const char *key = NULL;
            uint64_t hash = random_next(&random) % 4;
            uint64_t kind = random_next(&random) % 10;
            batch_keys[i][0] = '\0';
            if (kind < 2 && purchase_count > 0) { /* an exact retry of an earlier purchase */
                struct model_purchase *p = &purchases[random_next(&random) % purchase_count];
                purchase = p->id;
                key = p->key;
                hash = p->hash;
                e = p->event;
            } else if (kind < 4 && key_count > 0) { /* a key again: a retry or a reuse */
                struct model_key *k = &keys[random_next(&random) % key_count];
                snprintf(batch_keys[i], sizeof(batch_keys[i]), "%s", k->key);
                key = batch_keys[i];
            } else if (kind < 7) { /* a new key */
                snprintf(batch_keys[i], sizeof(batch_keys[i]), "rk%zu-%zu", round, i);
                key = batch_keys[i];
            }
            batch[i] = item(events[e], purchase, key, hash, records[i].bytes, 16);
            batch_events[i] = e;
            /* predict */
            size_t found_key = SIZE_MAX, found_purchase = SIZE_MAX;
            for (size_t k = 0; key != NULL && k < key_count; k++)
                if (strcmp(keys[k].key, key) == 0)
                    found_key = k;
            for (size_t p = 0; purchase != 0 && p < purchase_count; p++)
                if (purchases[p].id == purchase)
                    found_purchase = p;
            expected_key[i] = found_key;
            expected_purchase[i] = found_purchase;
            if (found_key != SIZE_MAX) {
                expected[i] = keys[found_key].hash == hash ? LOG_DUPLICATE : LOG_DUPLICATE_MISMATCH;
                expected_seq[i] = keys[found_key].seq;
            } else if (found_purchase != SIZE_MAX) {
                expected[i] = LOG_DUPLICATE;
                expected_seq[i] = purchases[found_purchase].seq;
            } else {
                expected[i] = LOG_APPENDED;
                expected_seq[i] = SEQ_ZERO; /* known after the call */
                /* Items later in this batch see this one: provisional entries, seq filled below. */
                if (key != NULL) {
                    struct model_key *k = &keys[key_count++];
                    assert_true(strlen(key) < sizeof(k->key));
                    memcpy(k->key, key, strlen(key) + 1);
                    k->hash = hash;
                    k->purchase = purchase;
                    k->seq = SEQ_ZERO;
                    expected_key[i] = key_count - 1;
                }
                if (purchase != 0) {
                    struct model_purchase *p = &purchases[purchase_count++];
                    p->id = purchase;
                    p->key = NULL;
                    p->hash = hash;
                    p->event = e;
                    p->seq = SEQ_ZERO;
                    expected_purchase[i] = purchase_count - 1;
                }
            }
        }
        append_ok(logs[random_next(&random) % HANDLES], batch, n);
        for (size_t i = 0; i < n; i++) {
            if (batch[i].result != expected[i])
                fail_msg("seed %llu round %zu item %zu: result %d, expected %d", seed, round, i,
                         batch[i].result, expected[i]);
            if (expected[i] != LOG_APPENDED) {
                /* A duplicate of an item earlier in this batch: its seq is known now. */
                struct log_seq want = expected_seq[i];
                if (want.major == 0 && want.minor == 0)
                    want = expected_key[i] != SIZE_MAX ? keys[expected_key[i]].seq
                                                       : purchases[expected_purchase[i]].seq;
                assert_seq_equal(batch[i].seq, want);
                continue;
            }
            size_t e = batch_events[i];
            entries[e][entry_count[e]++] = (struct model_entry){records[i], batch[i].seq};
            if (expected_key[i] != SIZE_MAX)
                keys[expected_key[i]].seq = batch[i].seq;
            if (expected_purchase[i] != SIZE_MAX) {
                purchases[expected_purchase[i]].seq = batch[i].seq;
                purchases[expected_purchase[i]].key =
                    batch[i].idempotency_key ? keys[expected_key[i]].key : NULL;
            }
        }
    }
    for (size_t e = 0; e < EVENTS; e++) {
        struct copied_entries all =
            read_all(logs[e % HANDLES], events[e], SEQ_ZERO, 1 + (size_t)e * 20);
        if (all.count != entry_count[e])
            fail_msg("seed %llu event %zu: %zu entries, model %zu", seed, e, all.count,
                     entry_count[e]);
        for (size_t i = 0; i < all.count; i++) {
            assert_seq_equal(all.entries[i].seq, entries[e][i].seq);
            assert_memory_equal(all.entries[i].record, entries[e][i].record.bytes, 16);
        }
        copied_free(&all);
        assert_true(count_after(logs[0], events[e], SEQ_ZERO) == entry_count[e]);
    }
    for (size_t p = 0; p < purchase_count; p++) {
        char found[CATRACA_ID_MAX + 1];
        struct log_seq at;
        assert_int_equal(logs[1].ops->find_purchase(logs[1].context, purchases[p].id, found, &at),
                         0);
        assert_string_equal(found, events[purchases[p].event]);
        assert_seq_equal(at, purchases[p].seq);
    }
    for (size_t h = 0; h < HANDLES; h++)
        close_log(&logs[h]);
}

/* ---- faults -------------------------------------------------------------------------------- */

typedef int (*arm_fn)(void);

static int arm_commit(void)
{
    if (target->fail_next_commit == NULL)
        return -1;
    target->fail_next_commit(target->context);
    return 0;
}

static int arm_sync(void)
{
    if (target->fail_next_sync == NULL)
        return -1;
    target->fail_next_sync(target->context);
    return 0;
}

static enum conformance_cut cut_how;

static int arm_cut(void)
{
    if (target->cut_connections == NULL || target->restore_connections == NULL)
        return -1;
    return target->cut_connections(target->context, cut_how);
}

/*
 * One append under a fault: a batch of three items over two events, each
 * with a purchase id, two with keys. The append must fail with
 * CATRACA_E_UNAVAILABLE or CATRACA_E_IO (what the gateway answers 503 for),
 * never 0, within the target's time-out; its items must not read back
 * (unless the target declares the dropped-reply caveat: then each reads back
 * at most once, and all or none unless it may append part). Then, with the
 * fault gone, the same handle retries the same items: the ones in the log
 * are LOG_DUPLICATE at the seq they read back at, the rest LOG_APPENDED, and
 * every item is in the log exactly once.
 */
static void fault_round(const char *name, arm_fn arm, bool is_restored, bool is_warm)
{
    char events[2][CATRACA_ID_MAX + 1], warm[CATRACA_ID_MAX + 1], tag[48];
    snprintf(tag, sizeof(tag), "fault-%.24s-a", name);
    event_name(events[0], tag);
    snprintf(tag, sizeof(tag), "fault-%.24s-b", name);
    event_name(events[1], tag);
    snprintf(tag, sizeof(tag), "fault-%.24s-warm", name);
    event_name(warm, tag);
    struct catraca_log log = open_log(READ_MAX);
    /* Warm: connected, scripts loaded, tables made; the fault hits the append itself. With
     * is_warm, the two events of the append have an entry already (Kafka: their topics exist,
     * so the fault hits the produce, not the topic's creation). */
    size_t warm_entries = is_warm ? 1 : 0;
    struct unique_record warm_records[2] = {unique_record(), unique_record()};
    struct log_append_item warm_items[2] = {
        item(is_warm ? events[0] : warm, purchase_id(), NULL, 0, warm_records[0].bytes, 16),
        item(is_warm ? events[1] : warm, purchase_id(), NULL, 0, warm_records[1].bytes, 16),
    };
    append_ok(log, warm_items, is_warm ? 2 : 1);

    struct unique_record records[3] = {unique_record(), unique_record(), unique_record()};
    char keys[2][64];
    snprintf(keys[0], sizeof(keys[0]), "%.32s-k0", name);
    snprintf(keys[1], sizeof(keys[1]), "%.32s-k2", name);
    struct log_append_item items[3] = {
        item(events[0], purchase_id(), keys[0], 1, records[0].bytes, 16),
        item(events[1], purchase_id(), NULL, 0, records[1].bytes, 16),
        item(events[0], purchase_id(), keys[1], 2, records[2].bytes, 16),
    };
    if (arm() != 0) {
        close_log(&log);
        printf("[ conformance ] %s: no %s fault: skipped\n", target->name, name);
        skip();
    }
    uint64_t started = now_ms();
    int error = log.ops->append(log.context, items, 3);
    uint64_t took = now_ms() - started;
    if (is_restored)
        target->restore_connections(target->context);
    if (error == 0)
        fail_msg("%s: append under the %s fault returned 0 (a 202 for nothing durable)",
                 target->name, name);
    if (error != CATRACA_E_UNAVAILABLE && error != CATRACA_E_IO)
        fail_msg("%s: append under the %s fault returned %d, not UNAVAILABLE or IO",
                 target->name, name, error);
    if (target->append_timeout_ms > 0 &&
        took > 2 * (uint64_t)target->append_timeout_ms + 1000)
        fail_msg("%s: append under the %s fault took %llu ms (time-out %d ms)", target->name,
                 name, (unsigned long long)took, target->append_timeout_ms);

    /* What reads back, on a fresh handle. */
    struct catraca_log reader = open_log(READ_MAX);
    struct copied_entries all[2] = {read_all(reader, events[0], SEQ_ZERO, READ_MAX),
                                    read_all(reader, events[1], SEQ_ZERO, READ_MAX)};
    size_t in_log = 0;
    struct log_seq found_at[3] = {SEQ_ZERO, SEQ_ZERO, SEQ_ZERO};
    bool is_in_log[3];
    for (size_t i = 0; i < 3; i++) {
        size_t n = occurrences(&all[i == 1], records[i].bytes, 16, &found_at[i]);
        if (n > 1)
            fail_msg("%s: an item of the failed append (%s) reads back %zu times", target->name,
                     name, n);
        is_in_log[i] = n == 1;
        in_log += n;
    }
    if (in_log > 0 && !(target->capabilities & CONFORMANCE_ERROR_MAY_HAVE_APPENDED))
        fail_msg("%s: %zu items of the append that failed (%s) read back", target->name, in_log,
                 name);
    if (in_log > 0 && in_log < 3 && !(target->capabilities & CONFORMANCE_ERROR_MAY_APPEND_PART))
        fail_msg("%s: part of a failed batch (%zu of 3) is in the log (%s)", target->name, in_log,
                 name);
    if (in_log == 0) {
        char found[CATRACA_ID_MAX + 1];
        struct log_seq at;
        assert_int_equal(reader.ops->find_purchase(reader.context, items[1].purchase_id, found,
                                                   &at),
                         CATRACA_E_NOTFOUND);
        if (!is_warm)
            assert_false(partitions_contain(reader, events[1]));
    }
    printf("[ conformance ] %s: %s fault%s: append %d after %llu ms, %zu of 3 items in the "
           "log\n",
           target->name, name, is_warm ? " (events written before)" : "", error,
           (unsigned long long)took, in_log);
    copied_free(&all[0]);
    copied_free(&all[1]);

    /* The retry, on the handle that failed (it must recover by itself). */
    struct log_append_item retry[3];
    memcpy(retry, items, sizeof(retry));
    append_ok(log, retry, 3);
    for (size_t i = 0; i < 3; i++) {
        if (is_in_log[i]) {
            assert_int_equal(retry[i].result, LOG_DUPLICATE);
            assert_seq_equal(retry[i].seq, found_at[i]);
        } else {
            assert_int_equal(retry[i].result, LOG_APPENDED);
        }
        assert_true(retry[i].existing_purchase_id == items[i].purchase_id);
    }
    all[0] = read_all(reader, events[0], SEQ_ZERO, READ_MAX);
    all[1] = read_all(reader, events[1], SEQ_ZERO, READ_MAX);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(occurrences(&all[i == 1], records[i].bytes, 16, NULL), 1);
    assert_int_equal(all[0].count, 2 + warm_entries);
    assert_int_equal(all[1].count, 1 + warm_entries);
    copied_free(&all[0]);
    copied_free(&all[1]);
    close_log(&reader);
    close_log(&log);
}

static void test_fault_commit(void **state)
{
    (void)state;
    fault_round("commit", arm_commit, false, false);
}

static void test_fault_commit_warm(void **state)
{
    (void)state;
    fault_round("commit-w", arm_commit, false, true);
}

static void test_fault_sync(void **state)
{
    (void)state;
    fault_round("sync", arm_sync, false, false);
}

static void test_fault_sync_warm(void **state)
{
    (void)state;
    fault_round("sync-w", arm_sync, false, true);
}

static void test_fault_cut_request(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_REQUEST;
    fault_round("cut-request", arm_cut, true, false);
}

static void test_fault_cut_request_warm(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_REQUEST;
    fault_round("cut-request-w", arm_cut, true, true);
}

static void test_fault_cut_reply(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_REPLY;
    fault_round("cut-reply", arm_cut, true, false);
}

static void test_fault_cut_reply_warm(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_REPLY;
    fault_round("cut-reply-w", arm_cut, true, true);
}

static void test_fault_stall(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_STALL;
    fault_round("stall", arm_cut, true, false);
}

static void test_fault_stall_warm(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_STALL;
    fault_round("stall-w", arm_cut, true, true);
}

static void test_fault_down(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_DOWN;
    fault_round("down", arm_cut, true, false);
}

static void test_fault_down_warm(void **state)
{
    (void)state;
    cut_how = CONFORMANCE_CUT_DOWN;
    fault_round("down-w", arm_cut, true, true);
}

/*
 * A handle that is connected (it appended, read and counted, so it knows the
 * server) when the server goes down: every call still returns within the
 * target's time-out, count_after and last_seq with CATRACA_E_UNAVAILABLE (a
 * stale answer would let a worker or a probe believe the log is up), a
 * caught-up read with UNAVAILABLE within DOWN_READ_PATIENCE_MS, and the
 * handle works again after. (Kafka: librdkafka's own watermark query retried
 * for as long as the broker stayed unreachable: log_kafka_query_watermarks.)
 */
/* How long a caught-up read may keep answering "nothing new" after the server went away
 * (LOG_KAFKA_READ_LIVENESS_MS: without a round trip it cannot know), before UNAVAILABLE. */
#define DOWN_READ_PATIENCE_MS 4000

struct down_calls {
    struct catraca_log log;
    const char *event;
    struct log_seq after; /* the event's last entry: a read after it is caught up */
    int read_error;
    uint64_t read_took;
    pthread_mutex_t mutex;
    pthread_cond_t done;
    bool is_done;
    int count_error, last_error;
    uint64_t count_took, last_took;
};

static void *down_calls_main(void *argument)
{
    struct down_calls *calls = argument;
    uint64_t number = 0;
    struct log_seq at;
    uint64_t started = now_ms();
    int count_error = calls->log.ops->count_after(calls->log.context, calls->event, SEQ_ZERO,
                                                  &number);
    uint64_t count_took = now_ms() - started;
    started = now_ms();
    int last_error = calls->log.ops->last_seq(calls->log.context, calls->event, &at);
    uint64_t last_took = now_ms() - started;
    /* A caught-up read: "nothing new" for a while is allowed, then it must say UNAVAILABLE. */
    struct log_entry entries[2];
    size_t count = 0;
    int read_error = 0;
    started = now_ms();
    while (read_error == 0 && now_ms() - started < DOWN_READ_PATIENCE_MS) {
        read_error = calls->log.ops->read(calls->log.context, calls->event, calls->after, entries,
                                          2, &count);
        if (read_error == 0 && count > 0)
            read_error = 1; /* an entry that is not there */
        if (read_error == 0)
            poll(NULL, 0, 50);
    }
    uint64_t read_took = now_ms() - started;
    pthread_mutex_lock(&calls->mutex);
    calls->read_error = read_error;
    calls->read_took = read_took;
    calls->count_error = count_error;
    calls->last_error = last_error;
    calls->count_took = count_took;
    calls->last_took = last_took;
    calls->is_done = true;
    pthread_cond_signal(&calls->done);
    pthread_mutex_unlock(&calls->mutex);
    return NULL;
}

static bool wait_down_calls(struct down_calls *calls, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    pthread_mutex_lock(&calls->mutex);
    while (!calls->is_done && now_ms() < deadline) {
        pthread_mutex_unlock(&calls->mutex);
        poll(NULL, 0, 10);
        pthread_mutex_lock(&calls->mutex);
    }
    bool is_done = calls->is_done;
    pthread_mutex_unlock(&calls->mutex);
    return is_done;
}

static void test_down_under_a_connected_handle(void **state)
{
    (void)state;
    if (target->cut_connections == NULL || target->restore_connections == NULL) {
        printf("[ conformance ] %s: cannot take the server down: skipped\n", target->name);
        skip();
    }
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "down-connected");
    struct catraca_log log = open_log(READ_MAX);
    struct unique_record record = unique_record();
    struct log_append_item one = item(event, purchase_id(), NULL, 0, record.bytes, 16);
    append_ok(log, &one, 1);
    struct copied_entries all = read_all(log, event, SEQ_ZERO, READ_MAX);
    assert_int_equal(all.count, 1);
    copied_free(&all);
    assert_true(count_after(log, event, SEQ_ZERO) == 1);
    if (target->cut_connections(target->context, CONFORMANCE_CUT_DOWN) != 0) {
        close_log(&log);
        printf("[ conformance ] %s: cannot take the server down: skipped\n", target->name);
        skip();
    }
    uint64_t bound = 2 * (uint64_t)(target->append_timeout_ms > 0 ? target->append_timeout_ms
                                                                   : 2000) +
                     1000;
    /* The calls run on a thread of their own: one that hangs fails the case when the bound
     * passes (the server comes back then, so that the call can end), not at ctest's time-out. */
    struct down_calls calls = {.log = log, .event = event, .after = one.seq};
    pthread_mutex_init(&calls.mutex, NULL);
    pthread_cond_init(&calls.done, NULL);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, down_calls_main, &calls), 0);
    bool is_done = wait_down_calls(&calls, 2 * bound + DOWN_READ_PATIENCE_MS);
    target->restore_connections(target->context);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&calls.done);
    pthread_mutex_destroy(&calls.mutex);
    if (!is_done)
        fail_msg("%s: count_after, last_seq or read did not return within %llu ms of the "
                 "server going down (it returned once it was back)",
                 target->name, (unsigned long long)(2 * bound + DOWN_READ_PATIENCE_MS));
    int count_error = calls.count_error, last_error = calls.last_error;
    uint64_t count_took = calls.count_took, last_took = calls.last_took, number = 0;
    printf("[ conformance ] %s: down under a connected handle: count_after %d in %llu ms, "
           "last_seq %d in %llu ms, a caught-up read %d after %llu ms\n",
           target->name, count_error, (unsigned long long)count_took, last_error,
           (unsigned long long)last_took, calls.read_error, (unsigned long long)calls.read_took);
    if (count_took > bound || last_took > bound)
        fail_msg("%s: a call to a server that is down took %llu / %llu ms (bound %llu)",
                 target->name, (unsigned long long)count_took, (unsigned long long)last_took,
                 (unsigned long long)bound);
    assert_int_equal(count_error, CATRACA_E_UNAVAILABLE);
    assert_int_equal(last_error, CATRACA_E_UNAVAILABLE);
    if (calls.read_error != CATRACA_E_UNAVAILABLE)
        fail_msg("%s: a caught-up read while the server was down answered %d for %llu ms, "
                 "never UNAVAILABLE (a worker would report itself ready)",
                 target->name, calls.read_error, (unsigned long long)calls.read_took);
    /* Back: the same handle answers again (its time-outs and reconnects allowing). */
    uint64_t deadline = now_ms() + 20000;
    while (log.ops->count_after(log.context, event, SEQ_ZERO, &number) != 0 &&
           now_ms() < deadline)
        poll(NULL, 0, 100);
    assert_true(number == 1);
    close_log(&log);
}

/* While the server is down every call is an error, and the handle works again after. */
static void test_down_then_back(void **state)
{
    (void)state;
    if (target->cut_connections == NULL || target->restore_connections == NULL ||
        target->cut_connections(target->context, CONFORMANCE_CUT_DOWN) != 0) {
        printf("[ conformance ] %s: cannot take the server down: skipped\n", target->name);
        skip();
    }
    char event[CATRACA_ID_MAX + 1];
    event_name(event, "down");
    struct catraca_log log = open_log(READ_MAX); /* opening needs no server */
    struct unique_record record = unique_record();
    struct log_append_item one = item(event, purchase_id(), "dk", 1, record.bytes, 16);
    struct log_entry entries[2];
    size_t count = 9;
    uint64_t number = 0;
    char found[CATRACA_ID_MAX + 1], events[2][CATRACA_ID_MAX + 1];
    struct log_seq at;
    int errors[6] = {
        log.ops->append(log.context, &one, 1),
        log.ops->read(log.context, event, SEQ_ZERO, entries, 2, &count),
        log.ops->find_purchase(log.context, one.purchase_id, found, &at),
        log.ops->count_after(log.context, event, SEQ_ZERO, &number),
        log.ops->last_seq(log.context, event, &at),
        log.ops->list_partitions(log.context, events, 2, &count),
    };
    target->restore_connections(target->context);
    static const char *const calls[6] = {"append",    "read",     "find_purchase",
                                         "count_after", "last_seq", "list_partitions"};
    bool is_failed = false;
    for (int i = 0; i < 6; i++) {
        int expected = i == 2 && (target->capabilities & CONFORMANCE_FIND_IS_LOCAL)
                           ? CATRACA_E_NOTFOUND /* it never appended that purchase */
                           : CATRACA_E_UNAVAILABLE;
        if (errors[i] != expected) {
            print_error("%s: %s while the server is down returned %d, not %d\n", target->name,
                        calls[i], errors[i], expected);
            is_failed = true;
        }
    }
    if (is_failed)
        fail();
    append_ok(log, &one, 1);
    assert_int_equal(one.result, LOG_APPENDED);
    assert_true(count_after(log, event, SEQ_ZERO) == 1);
    close_log(&log);
}

void conformance_cut_through(struct fault_proxy *proxy, enum conformance_cut how)
{
    static const enum fault_proxy_mode modes[] = {
        [CONFORMANCE_CUT_REQUEST] = FAULT_PROXY_CUT_REQUEST,
        [CONFORMANCE_CUT_REPLY] = FAULT_PROXY_CUT_REPLY,
        [CONFORMANCE_CUT_STALL] = FAULT_PROXY_STALL,
        [CONFORMANCE_CUT_DOWN] = FAULT_PROXY_DOWN,
    };
    fault_proxy_set_mode(proxy, modes[how]);
}

/* ---- the run ------------------------------------------------------------------------------ */

int conformance_log_run(const struct conformance_target *run_target)
{
    target = run_target;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t clock_bits = ((uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000) ^
                          ((uint64_t)getpid() << 40);
    /* Event ids are [A-Za-z0-9._-]: a letter, 12 hex digits of clock and pid, a dash. */
    snprintf(run_prefix, sizeof(run_prefix), "c%012llx-",
             (unsigned long long)(clock_bits & UINT64_C(0xffffffffffff)));
    snprintf(scope, sizeof(scope), "%sbuyer", run_prefix);
    snprintf(other_scope, sizeof(other_scope), "%sother", run_prefix);
    /* Purchase ids of this run: bits 62..24 from the clock, 24 bits of counter. */
    next_purchase = ((clock_bits & UINT64_C(0x7fffffffff)) << 24) | 1;
    next_record = 1;
    const char *seed_text = getenv("CATRACA_SEED");
    seed = seed_text != NULL ? strtoull(seed_text, NULL, 10) : (unsigned long long)clock_bits;
    printf("[ conformance ] %s: events %s*, seed %llu\n", target->name, run_prefix, seed);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_within_partition),
        cmocka_unit_test(test_read_paging),
        cmocka_unit_test(test_durability_across_reopen),
        cmocka_unit_test(test_seq_monotonic_across_handles),
        cmocka_unit_test(test_concurrent_appenders),
        cmocka_unit_test(test_batch_across_two_events),
        cmocka_unit_test(test_invalid_batch_appends_nothing),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_large_batch_with_duplicates_inside),
        cmocka_unit_test(test_find_purchase),
        cmocka_unit_test(test_count_after_and_last_seq),
        cmocka_unit_test(test_list_partitions),
        cmocka_unit_test(test_binary_records),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_fencing_reread_from_stored_seq),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_fault_commit),
        cmocka_unit_test(test_fault_commit_warm),
        cmocka_unit_test(test_fault_sync),
        cmocka_unit_test(test_fault_sync_warm),
        cmocka_unit_test(test_fault_cut_request),
        cmocka_unit_test(test_fault_cut_request_warm),
        cmocka_unit_test(test_fault_cut_reply),
        cmocka_unit_test(test_fault_cut_reply_warm),
        cmocka_unit_test(test_fault_stall),
        cmocka_unit_test(test_fault_stall_warm),
        cmocka_unit_test(test_fault_down),
        cmocka_unit_test(test_fault_down_warm),
        cmocka_unit_test(test_down_then_back),
        cmocka_unit_test(test_down_under_a_connected_handle),
    };
    return _cmocka_run_group_tests(target->name, tests, sizeof(tests) / sizeof(tests[0]), NULL,
                                   NULL);
}
