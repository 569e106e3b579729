/* Recently decided purchases in memory: the last committed state, never a waiting one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/engine.h"
#include "gateway/recent.h"

static struct store_purchase arrival(uint64_t id, uint8_t status)
{
    struct store_purchase p = {.purchase_id = id, .has_arrival = true, .quantity = 2,
                               .status = status};
    snprintf(p.customer, sizeof(p.customer), "c%llu", (unsigned long long)id);
    snprintf(p.category, sizeof(p.category), "pista");
    return p;
}

static void commit_rows(struct recent *recent, const struct store_purchase *rows, size_t count)
{
    struct worker_commit commit = {.event = "ev", .purchases = rows, .purchase_count = count};
    recent_update(recent, &commit);
}

static void test_last_committed_state(void **state)
{
    (void)state;
    struct recent recent;
    assert_int_equal(recent_init(&recent, 1024), 0);
    struct store_purchase got, rows[2] = {arrival(7, ENGINE_STATUS_HELD),
                                          arrival(8, ENGINE_STATUS_WAITING)};
    commit_rows(&recent, rows, 2);
    assert_true(recent_find(&recent, 7, &got));
    assert_int_equal(got.status, ENGINE_STATUS_HELD);
    assert_string_equal(got.event, "ev"); /* filled from the commit */
    assert_string_equal(got.customer, "c7");
    /* Waiting: its place in line moves, so it is read from the store. */
    assert_false(recent_find(&recent, 8, &got));
    /* A later batch's decision only: merged into the entry, arrival facts kept. */
    struct store_purchase decision = {.purchase_id = 7, .status = ENGINE_STATUS_CONFIRMED,
                                      .ticket_count = 2, .ticket_codes = {11, 12}};
    commit_rows(&recent, &decision, 1);
    assert_true(recent_find(&recent, 7, &got));
    assert_int_equal(got.status, ENGINE_STATUS_CONFIRMED);
    assert_int_equal(got.ticket_codes[1], 12);
    assert_string_equal(got.customer, "c7");
    /* A decision of a purchase not remembered is not invented. */
    decision.purchase_id = 99;
    commit_rows(&recent, &decision, 1);
    assert_false(recent_find(&recent, 99, &got));
    assert_false(recent_find(&recent, 0, &got));
    recent_destroy(&recent);
}

static void test_bounded_and_never_confused(void **state)
{
    (void)state;
    struct recent recent;
    assert_int_equal(recent_init(&recent, 4), 0);
    for (uint64_t id = 1; id <= 1000; id++) {
        struct store_purchase row = arrival(id, ENGINE_STATUS_EXPIRED);
        commit_rows(&recent, &row, 1);
    }
    int hits = 0;
    for (uint64_t id = 1; id <= 1000; id++) {
        struct store_purchase got;
        if (recent_find(&recent, id, &got)) {
            hits++;
            assert_int_equal(got.purchase_id, id);
        }
    }
    assert_true(hits >= 1 && hits <= 4);
    recent_destroy(&recent);
    struct recent off;
    assert_int_not_equal(recent_init(&off, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_committed_state),
        cmocka_unit_test(test_bounded_and_never_confused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
