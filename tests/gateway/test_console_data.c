/* The console's bounded data: the stats ring and its latency histogram, the decisions rings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/engine.h"
#include "gateway/decisions.h"
#include "gateway/stats.h"

static void test_latency_reported_within_nine_percent(void **state)
{
    (void)state;
    for (int64_t us = 10; us < 10 * 1000 * 1000; us = us * 11 / 10 + 1) {
        double reported = stats_latency_reported_ms(us), real = (double)us / 1000;
        assert_true(reported >= real * 0.91 && reported <= real * 1.10);
    }
    assert_true(stats_latency_reported_ms(3) < 0.01);              /* below the first bucket */
    assert_true(stats_latency_reported_ms(3600000000LL) >= 10000); /* an hour: the last one */
}

static void test_samples_are_deltas_and_percentiles(void **state)
{
    (void)state;
    struct stats *stats = malloc(sizeof(*stats));
    stats_init(stats);
    struct stats_sample s;
    stats_sample(stats, 1000, 7, &s);
    assert_int_equal(s.accepted, 0);
    assert_false(s.has_latency);
    for (int i = 0; i < 98; i++)
        stats_count_accepted(stats, 1000); /* 1 ms */
    stats_count_accepted(stats, 100000);   /* 100 ms */
    stats_count_accepted(stats, 100000);
    struct store_purchase rows[3] = {
        {.purchase_id = 1, .has_arrival = true, .status = ENGINE_STATUS_HELD},
        {.purchase_id = 2, .status = ENGINE_STATUS_EXPIRED},
        {.purchase_id = 3, .status = ENGINE_STATUS_CONFIRMED}};
    struct worker_commit commit = {.event = "ev", .purchases = rows, .purchase_count = 3};
    stats_count_commit(stats, &commit);
    stats_sample(stats, 2000, 3, &s);
    assert_int_equal(s.accepted, 100);
    assert_int_equal(s.decided, 1);
    assert_int_equal(s.expired, 1);
    assert_int_equal(s.confirmed, 1);
    assert_int_equal(s.queue_depth, 3);
    assert_true(s.has_latency);
    assert_true(s.accept_p50_ms > 0.9 && s.accept_p50_ms < 1.1);
    assert_true(s.accept_p99_ms > 90 && s.accept_p99_ms < 110); /* rank 99 of 100 */
    stats_sample(stats, 3000, 0, &s);
    assert_int_equal(s.accepted, 0); /* counted once, in its own second */
    stats_destroy(stats);
    free(stats);
}

static void test_the_ring_keeps_the_last_300_oldest_first(void **state)
{
    (void)state;
    struct stats *stats = malloc(sizeof(*stats));
    stats_init(stats);
    struct stats_sample *out = calloc(STATS_SAMPLES_MAX + 10, sizeof(*out));
    for (int64_t i = 1; i <= 1000; i++)
        stats_sample(stats, i * 1000, 0, NULL);
    assert_int_equal(stats_history(stats, out, STATS_SAMPLES_MAX + 10), STATS_SAMPLES_MAX);
    assert_int_equal(out[0].at_ms, 701 * 1000);
    assert_int_equal(out[STATS_SAMPLES_MAX - 1].at_ms, 1000 * 1000);
    assert_int_equal(stats_history(stats, out, 2), 2);
    assert_int_equal(out[1].at_ms, 1000 * 1000); /* the newest two */
    free(out);
    stats_destroy(stats);
    free(stats);
}

static struct store_purchase row(uint64_t id, bool has_arrival, uint8_t status, int64_t at_ms)
{
    struct store_purchase p = {.purchase_id = id,
                               .has_arrival = has_arrival,
                               .status = status,
                               .quantity = 1,
                               .updated_ms = at_ms};
    if (has_arrival) {
        snprintf(p.customer, sizeof(p.customer), "c%llu", (unsigned long long)id);
        snprintf(p.category, sizeof(p.category), "pista");
    }
    return p;
}

static void test_decisions_bounded_newest_first_and_completed(void **state)
{
    (void)state;
    struct decisions d;
    assert_int_equal(decisions_init(&d, 2), 0);
    struct store_purchase rows[2];
    for (uint64_t id = 1; id <= 300; id++) {
        rows[0] = row(id, true, ENGINE_STATUS_HELD, (int64_t)id);
        struct worker_commit commit = {.event = "ev", .purchases = rows, .purchase_count = 1};
        decisions_record(&d, &commit);
    }
    rows[0] = row(300, false, ENGINE_STATUS_EXPIRED, 1000);
    rows[1] = row(5, false, ENGINE_STATUS_EXPIRED, 1000); /* its arrival left the ring */
    struct worker_commit commit = {.event = "ev", .purchases = rows, .purchase_count = 2};
    decisions_record(&d, &commit);
    struct decision *out = calloc(DECISIONS_PER_EVENT + 5, sizeof(*out));
    size_t count = decisions_recent(&d, "ev", out, DECISIONS_PER_EVENT + 5);
    assert_int_equal(count, DECISIONS_PER_EVENT);
    assert_int_equal(out[0].purchase_id, 5);
    assert_int_equal(out[1].purchase_id, 300);
    assert_int_equal(out[2].purchase_id, 300);
    assert_int_equal(out[DECISIONS_PER_EVENT - 1].purchase_id, 300 - DECISIONS_PER_EVENT + 3);
    assert_int_equal(decisions_complete(out, count), 1); /* 5: for the store to complete */
    assert_true(out[1].has_facts);
    assert_string_equal(out[1].customer, "c300");
    assert_int_equal(out[1].status, ENGINE_STATUS_EXPIRED);
    assert_false(out[0].has_facts);
    assert_int_equal(decisions_recent(&d, "other", out, 10), 0);
    /* at most events_max events keep decisions */
    const char *events[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        struct worker_commit more = {.event = events[i], .purchases = rows, .purchase_count = 1};
        decisions_record(&d, &more);
    }
    assert_int_equal(decisions_recent(&d, "a", out, 10), 1);
    assert_int_equal(decisions_recent(&d, "b", out, 10), 0);
    /* one batch larger than the ring: its last rows, newest first */
    struct store_purchase *batch = calloc(500, sizeof(*batch));
    for (uint64_t id = 1; id <= 500; id++)
        batch[id - 1] = row(1000 + id, true, ENGINE_STATUS_HELD, 5);
    struct worker_commit big = {.event = "a", .purchases = batch, .purchase_count = 500};
    decisions_record(&d, &big);
    assert_int_equal(decisions_recent(&d, "a", out, DECISIONS_PER_EVENT), DECISIONS_PER_EVENT);
    assert_int_equal(out[0].purchase_id, 1500);
    assert_int_equal(out[DECISIONS_PER_EVENT - 1].purchase_id, 1500 - DECISIONS_PER_EVENT + 1);
    free(batch);
    free(out);
    decisions_destroy(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_reported_within_nine_percent),
        cmocka_unit_test(test_samples_are_deltas_and_percentiles),
        cmocka_unit_test(test_the_ring_keeps_the_last_300_oldest_first),
        cmocka_unit_test(test_decisions_bounded_newest_first_and_completed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
