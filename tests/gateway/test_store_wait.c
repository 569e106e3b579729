/* Reads waiting for the store (gateway/store_wait.h): one read each when the wait is over,
 * none for a settled one, a bounded ring, and every entry answered once, even at stop. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/error.h"
#include "gateway/store_wait.h"

/* A store that knows the purchases whose id is even, and counts its reads. */
struct fake_store {
    atomic_int reads;
    atomic_int is_closed;
    atomic_int is_failing;
};

static int fake_get_purchase(void *context, uint64_t id, struct store_purchase *out)
{
    struct fake_store *store = context;
    atomic_fetch_add(&store->reads, 1);
    if (atomic_load(&store->is_failing))
        return CATRACA_E_IO;
    if (id % 2 != 0)
        return CATRACA_E_NOTFOUND;
    memset(out, 0, sizeof(*out));
    out->purchase_id = id;
    out->has_arrival = true;
    return 0;
}

static void fake_close(void *context)
{
    struct fake_store *store = context;
    atomic_store(&store->is_closed, 1);
}

static const struct store_ops fake_ops = {.get_purchase = fake_get_purchase, .close = fake_close};

/* One waiting request: what done said, and when. */
struct waiting {
    atomic_int calls;
    int error;
    uint64_t found_id;
    int64_t done_ms;
    atomic_bool is_settled;
};

static void on_done(void *context, int error, const struct store_purchase *row)
{
    struct waiting *w = context;
    w->error = error;
    w->found_id = row != NULL ? row->purchase_id : 0;
    w->done_ms = clock_monotonic_ms();
    atomic_fetch_add(&w->calls, 1);
}

static bool is_settled(void *context)
{
    struct waiting *w = context;
    return atomic_load(&w->is_settled);
}

static void wait_for_calls(struct waiting *w, int count)
{
    for (int i = 0; i < 500 && atomic_load(&w[count - 1].calls) == 0; i++) {
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static struct store_wait *start(struct fake_store *store, uint32_t capacity, int64_t wait_ms)
{
    struct store_wait_config config = {.store = {&fake_ops, store},
                                       .capacity = capacity,
                                       .wait_ms = wait_ms,
                                       .done = on_done,
                                       .is_settled = is_settled};
    struct store_wait *wait = NULL;
    assert_int_equal(store_wait_start(&config, &wait), 0);
    return wait;
}

static void test_one_read_each_after_the_wait(void **state)
{
    (void)state;
    struct fake_store store = {0};
    struct store_wait *wait = start(&store, 8, 200);
    struct waiting w[3] = {0};
    int64_t submitted_ms = clock_monotonic_ms();
    assert_int_equal(store_wait_submit(wait, 4, &w[0]), 0); /* known */
    assert_int_equal(store_wait_submit(wait, 5, &w[1]), 0); /* unknown */
    atomic_store(&w[2].is_settled, true);                   /* answered meanwhile: no read */
    assert_int_equal(store_wait_submit(wait, 6, &w[2]), 0);
    assert_int_equal(store_wait_count(wait), 3);
    wait_for_calls(w, 3);
    assert_int_equal(w[0].error, 0);
    assert_int_equal(w[0].found_id, 4);
    assert_int_equal(w[1].error, CATRACA_E_NOTFOUND);
    assert_int_equal(w[2].error, CATRACA_E_TIMEOUT);
    assert_int_equal(atomic_load(&store.reads), 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&w[i].calls), 1);
        assert_true(w[i].done_ms - submitted_ms >= 200); /* not before the wait is over */
        assert_true(w[i].done_ms - submitted_ms < 2000);
    }
    assert_int_equal(store_wait_count(wait), 0);
    store_wait_stop(wait);
    assert_true(atomic_load(&store.is_closed));
}

static void test_bounded_and_answered_at_stop(void **state)
{
    (void)state;
    struct fake_store store = {0};
    struct store_wait *wait = start(&store, 4, 60000);
    struct waiting w[5] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_wait_submit(wait, (uint64_t)i, &w[i]), 0);
    assert_int_equal(store_wait_submit(wait, 9, &w[4]), CATRACA_E_FULL);
    assert_int_equal(store_wait_count(wait), 4);
    store_wait_stop(wait); /* long before the wait is over: each answered, unread */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&w[i].calls), 1);
        assert_int_equal(w[i].error, CATRACA_E_UNAVAILABLE);
    }
    assert_int_equal(atomic_load(&w[4].calls), 0);
    assert_int_equal(atomic_load(&store.reads), 0);
}

static void test_store_failure_and_ring_reuse(void **state)
{
    (void)state;
    struct fake_store store = {0};
    struct store_wait *wait = start(&store, 2, 20);
    atomic_store(&store.is_failing, 1);
    struct waiting failed[2] = {0};
    assert_int_equal(store_wait_submit(wait, 2, &failed[0]), 0);
    assert_int_equal(store_wait_submit(wait, 4, &failed[1]), 0);
    wait_for_calls(failed, 2);
    assert_int_equal(failed[0].error, CATRACA_E_UNAVAILABLE);
    assert_int_equal(failed[1].error, CATRACA_E_UNAVAILABLE);
    atomic_store(&store.is_failing, 0);
    /* The ring wraps: many more entries than slots, a few at a time. */
    for (int round = 0; round < 20; round++) {
        struct waiting w[2] = {0};
        assert_int_equal(store_wait_submit(wait, (uint64_t)(2 * round), &w[0]), 0);
        assert_int_equal(store_wait_submit(wait, (uint64_t)(2 * round + 1), &w[1]), 0);
        wait_for_calls(w, 2);
        for (int i = 0; i < 50 && store_wait_count(wait) > 0; i++) {
            struct timespec pause = {0, 1000000L};
            nanosleep(&pause, NULL);
        }
        assert_int_equal(w[0].error, 0);
        assert_int_equal(w[0].found_id, (uint64_t)(2 * round));
        assert_int_equal(w[1].error, CATRACA_E_NOTFOUND);
    }
    store_wait_stop(wait);
    store_wait_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_read_each_after_the_wait),
        cmocka_unit_test(test_bounded_and_answered_at_stop),
        cmocka_unit_test(test_store_failure_and_ring_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
