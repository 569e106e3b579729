/*
 * Unit tests of the scheduled on-sale (engine.h, "Scheduled on-sale"): the pre-queue window,
 * the draw's order, deferred arrivals, snapshots taken mid-window, the codec of the new fields,
 * and the engine's SHA-256 against OpenSSL's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/sha256.h"

#define OUTCOMES_MAX 256
#define OPENS_AT_MS 100000
#define PREQUEUE_MS 10000
#define WINDOW_MS (OPENS_AT_MS - PREQUEUE_MS)

static const uint8_t event_secret[16] = "0123456789abcdef";

struct collected {
    struct engine_outcome items[OUTCOMES_MAX];
    size_t count;
};

static void collect(void *context, const struct engine_outcome *outcome)
{
    struct collected *c = context;
    assert_true(c->count < OUTCOMES_MAX);
    c->items[c->count++] = *outcome;
}

static struct engine *engine_make(void)
{
    struct engine_config config = {.purchases_max = 128, .customers_max = 128};
    struct engine *e;
    assert_int_equal(engine_new(&config, &e), 0);
    return e;
}

static void apply(struct engine *e, struct engine_command *c, struct collected *out)
{
    struct engine_sink sink = {.emit = collect, .context = out};
    out->count = 0;
    assert_int_equal(engine_apply(e, c, &sink), 0);
    assert_int_equal(engine_validate(e), 0);
}

static void schedule_spec(struct engine_event_spec *s, uint32_t capacity, uint32_t limit)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->id, "ev");
    strcpy(s->name, "Scheduled");
    s->hold_ms = 60000;
    s->per_customer_limit = limit;
    s->state = ENGINE_STATE_OPEN;
    s->category_count = 1;
    memcpy(s->secret, event_secret, sizeof(event_secret));
    strcpy(s->categories[0].id, "a");
    s->categories[0].capacity = capacity;
    s->opens_at_ms = OPENS_AT_MS;
    s->prequeue_ms = PREQUEUE_MS;
}

static void create_scheduled(struct engine *e, uint32_t capacity, uint32_t limit)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 1000};
    schedule_spec(&c.u.create_event, capacity, limit);
    struct collected out;
    apply(e, &c, &out);
    assert_int_equal(out.count, 1);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_OK);
}

static struct engine_outcome buy(struct engine *e, int64_t now_ms, uint64_t id,
                                 const char *customer, uint32_t quantity)
{
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = now_ms};
    c.u.purchase.purchase_id = id;
    snprintf(c.u.purchase.customer, sizeof(c.u.purchase.customer), "%s", customer);
    strcpy(c.u.purchase.category, "a");
    c.u.purchase.quantity = quantity;
    struct collected out;
    apply(e, &c, &out);
    assert_int_equal(out.count, 1);
    return out.items[0];
}

static void draw(struct engine *e, int64_t now_ms, const uint8_t *seed, struct collected *out)
{
    struct engine_command c = {.type = ENGINE_COMMAND_DRAW, .now_ms = now_ms};
    memcpy(c.u.draw.seed, seed, CATRACA_DRAW_SEED_BYTES);
    apply(e, &c, out);
}

/* The seed as a reader of the docs computes it: SHA-256("catraca-draw-seed-v1" || secret). */
static void expected_seed(uint8_t seed[32])
{
    uint8_t input[20 + 16];
    memcpy(input, "catraca-draw-seed-v1", 20);
    memcpy(input + 20, event_secret, 16);
    SHA256(input, sizeof(input), seed);
}

/* The draw key as docs/DESIGN.md states it, computed with OpenSSL. */
static void draw_key(const uint8_t seed[32], uint64_t id, uint8_t key[32])
{
    uint8_t input[32 + 15];
    char text[14];
    engine_ticket_code_format(id, text);
    memcpy(input, seed, 32);
    memcpy(input + 32, "p_", 2);
    memcpy(input + 34, text, 13);
    SHA256(input, sizeof(input), key);
}

static const uint8_t *sort_seed;

static int by_draw_key(const void *a, const void *b)
{
    uint8_t ka[32], kb[32];
    draw_key(sort_seed, *(const uint64_t *)a, ka);
    draw_key(sort_seed, *(const uint64_t *)b, kb);
    return memcmp(ka, kb, 32);
}

static void test_window_and_draw_order(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    create_scheduled(e, 3, 1);
    struct engine_outcome o = buy(e, WINDOW_MS - 1, 1, "early", 1);
    assert_int_equal(o.status, ENGINE_STATUS_REJECTED);
    assert_int_equal(o.reason, ENGINE_REASON_SALE_NOT_OPEN);
    uint64_t ids[12];
    for (uint64_t i = 0; i < 12; i++) {
        ids[i] = 1000 + i * 7919;
        char customer[16];
        snprintf(customer, sizeof(customer), "c%llu", (unsigned long long)i);
        o = buy(e, WINDOW_MS + (int64_t)i * 100, ids[i], customer, 1);
        assert_int_equal(o.status, ENGINE_STATUS_PREQUEUED);
        assert_int_equal(o.result, ENGINE_RESULT_OK);
    }
    /* A repeat is the same answer; the limit counts pre-queued tickets. */
    o = buy(e, WINDOW_MS + 2000, ids[0], "c0", 1);
    assert_int_equal(o.result, ENGINE_RESULT_REPEATED);
    assert_int_equal(o.status, ENGINE_STATUS_PREQUEUED);
    o = buy(e, WINDOW_MS + 2000, 99, "c0", 1);
    assert_int_equal(o.reason, ENGINE_REASON_LIMIT_EXCEEDED);
    struct engine_draw_view view;
    engine_draw_state(e, &view);
    assert_int_equal(view.state, ENGINE_DRAW_PENDING);
    assert_int_equal(view.prequeued, 12);

    uint8_t seed[32], wrong[32];
    expected_seed(seed);
    uint8_t seed_engine[32];
    engine_draw_seed(event_secret, seed_engine);
    assert_memory_equal(seed, seed_engine, 32);
    struct collected out;
    draw(e, OPENS_AT_MS - 1, seed, &out); /* too early */
    assert_int_equal(out.count, 1);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_SALE_NOT_OPEN);

    /* Arrivals after opens_at, before the draw: deferred, after the whole pre-queue. */
    o = buy(e, OPENS_AT_MS, 500, "late1", 1);
    assert_int_equal(o.status, ENGINE_STATUS_DEFERRED);
    o = buy(e, OPENS_AT_MS + 1, 400, "late2", 1);
    assert_int_equal(o.status, ENGINE_STATUS_DEFERRED);

    memcpy(wrong, seed, 32);
    wrong[0] ^= 1;
    draw(e, OPENS_AT_MS + 2, wrong, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_INVALID);

    draw(e, OPENS_AT_MS + 2, seed, &out);
    assert_int_equal(out.count, 1 + 12 + 2);
    assert_int_equal(out.items[0].type, ENGINE_OUTCOME_EVENT);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_OK);
    uint64_t expected[12];
    memcpy(expected, ids, sizeof(ids));
    sort_seed = seed;
    qsort(expected, 12, sizeof(expected[0]), by_draw_key);
    /* Decided one at a time in draw order: 3 holds, then a line of 3 (held stock), then no. */
    for (size_t i = 0; i < 12; i++) {
        const struct engine_outcome *d = &out.items[1 + i];
        assert_int_equal(d->purchase_id, expected[i]);
        uint8_t status =
            i < 3 ? ENGINE_STATUS_HELD : (i < 6 ? ENGINE_STATUS_WAITING : ENGINE_STATUS_REJECTED);
        assert_int_equal(d->status, status);
        if (status == ENGINE_STATUS_WAITING)
            assert_int_equal(d->position, i - 2);
        /* The honest line: tickets could still come back (nothing is sold), the line is full. */
        if (status == ENGINE_STATUS_REJECTED)
            assert_int_equal(d->reason, ENGINE_REASON_LINE_FULL);
    }
    /* The draw's order is now the pre-queue's arrival rank (slot). */
    for (size_t i = 1; i < 12; i++) {
        struct engine_purchase_view before, after;
        assert_int_equal(engine_purchase(e, expected[i - 1], &before), 0);
        assert_int_equal(engine_purchase(e, expected[i], &after), 0);
        assert_true(before.slot < after.slot);
    }
    assert_int_equal(out.items[13].purchase_id, 500);
    assert_int_equal(out.items[14].purchase_id, 400);
    engine_draw_state(e, &view);
    assert_int_equal(view.state, ENGINE_DRAW_DONE);
    assert_int_equal(view.prequeued + view.deferred, 0);

    /* Exactly once: a second DRAW is a repeat and changes nothing. */
    draw(e, OPENS_AT_MS + 3, seed, &out);
    assert_int_equal(out.count, 1);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_REPEATED);
    /* After the draw the sale runs as any other: 3 held, 3 waiting, the bounded line full. */
    o = buy(e, OPENS_AT_MS + 4, 600, "after", 1);
    assert_int_equal(o.status, ENGINE_STATUS_REJECTED);
    assert_int_equal(o.reason, ENGINE_REASON_LINE_FULL);
    engine_free(e);
}

/* Bigger quantities and the deferred ones: a later arrival never goes before the pre-queue. */
static void test_deferred_after_prequeue_in_arrival_order(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    create_scheduled(e, 40, 4);
    for (uint64_t i = 1; i <= 5; i++) {
        char customer[8] = {'p', (char)('0' + i), 0};
        assert_int_equal(buy(e, WINDOW_MS + (int64_t)i, i, customer, 2).status,
                         ENGINE_STATUS_PREQUEUED);
    }
    for (uint64_t i = 6; i <= 9; i++) {
        char customer[8] = {'d', (char)('0' + i), 0};
        assert_int_equal(buy(e, OPENS_AT_MS + (int64_t)i, i * 1000003, customer, 3).status,
                         ENGINE_STATUS_DEFERRED);
    }
    uint8_t seed[32];
    engine_draw_seed(event_secret, seed);
    struct collected out;
    draw(e, OPENS_AT_MS + 50, seed, &out);
    assert_int_equal(out.count, 1 + 9);
    for (size_t i = 1; i <= 5; i++)
        assert_true(out.items[i].purchase_id <= 5);
    for (size_t i = 6; i <= 9; i++)
        assert_int_equal(out.items[i].purchase_id, i * 1000003);
    for (size_t i = 1; i <= 9; i++)
        assert_int_equal(out.items[i].status, ENGINE_STATUS_HELD);
    struct engine_category_counts counts;
    engine_category_counts(e, 0, &counts);
    assert_int_equal(counts.held, 5 * 2 + 4 * 3);
    engine_free(e);
}

/* A sale closed before opening: the draw still runs, and rejects every entry SALE_CLOSED. */
static void test_closed_before_draw(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    create_scheduled(e, 10, 2);
    buy(e, WINDOW_MS, 1, "a", 2);
    struct engine_command c = {.type = ENGINE_COMMAND_SET_STATE, .now_ms = WINDOW_MS + 1};
    c.u.set_state.state = ENGINE_STATE_CLOSED;
    struct collected out;
    apply(e, &c, &out);
    uint8_t seed[32];
    engine_draw_seed(event_secret, seed);
    draw(e, OPENS_AT_MS, seed, &out);
    assert_int_equal(out.count, 2);
    assert_int_equal(out.items[1].status, ENGINE_STATUS_REJECTED);
    assert_int_equal(out.items[1].reason, ENGINE_REASON_SALE_CLOSED);
    engine_free(e);
}

static void test_draw_refused_without_schedule(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    uint8_t seed[32];
    engine_draw_seed(event_secret, seed);
    struct collected out;
    draw(e, 5, seed, &out);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_NO_EVENT);
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 10};
    schedule_spec(&c.u.create_event, 5, 1);
    c.u.create_event.opens_at_ms = 0;
    c.u.create_event.prequeue_ms = 0;
    apply(e, &c, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_OK);
    draw(e, 20, seed, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_INVALID);
    /* An unscheduled sale is open at once, as before. */
    assert_int_equal(buy(e, 30, 7, "z", 1).status, ENGINE_STATUS_HELD);
    engine_free(e);
}

static void test_schedule_must_be_valid(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 10};
    struct collected out;
    schedule_spec(&c.u.create_event, 5, 1);
    c.u.create_event.prequeue_ms = OPENS_AT_MS; /* the window would start at 0 */
    apply(e, &c, &out);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_INVALID_EVENT);
    c.u.create_event.prequeue_ms = CATRACA_PREQUEUE_MS_MAX + 1;
    c.u.create_event.opens_at_ms = 2 * CATRACA_PREQUEUE_MS_MAX;
    apply(e, &c, &out);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_INVALID_EVENT);
    c.u.create_event.opens_at_ms = 0;
    c.u.create_event.prequeue_ms = 5;
    apply(e, &c, &out);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_INVALID_EVENT);
    /* A repeat must carry the same schedule. */
    schedule_spec(&c.u.create_event, 5, 1);
    apply(e, &c, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_OK);
    apply(e, &c, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_REPEATED);
    c.u.create_event.opens_at_ms++;
    apply(e, &c, &out);
    assert_int_equal(out.items[0].reason, ENGINE_REASON_EVENT_MISMATCH);
    engine_free(e);
}

/* A snapshot taken mid-window restores the pre-queue: both engines draw the same. */
static void test_snapshot_mid_window(void **state)
{
    (void)state;
    struct engine *a = engine_make(), *b = engine_make();
    create_scheduled(a, 4, 2);
    for (uint64_t i = 1; i <= 10; i++) {
        char customer[8] = {'c', (char)('0' + i % 10), 0};
        buy(a, WINDOW_MS + (int64_t)i, i * 65537, customer, 1 + (uint32_t)(i % 2));
    }
    buy(a, OPENS_AT_MS + 1, 77, "late", 1);
    size_t capacity = engine_snapshot_size(a), length = 0;
    uint8_t *buffer = malloc(capacity);
    assert_int_equal(engine_snapshot_write(a, buffer, capacity, &length), 0);
    assert_int_equal(engine_snapshot_read(b, buffer, length), 0);
    struct engine_draw_view va, vb;
    engine_draw_state(a, &va);
    engine_draw_state(b, &vb);
    assert_int_equal(va.state, vb.state);
    assert_int_equal(va.prequeued, vb.prequeued);
    assert_int_equal(va.deferred, vb.deferred);
    assert_int_equal(vb.prequeued, 10);
    assert_int_equal(vb.deferred, 1);
    uint8_t seed[32];
    engine_draw_seed(event_secret, seed);
    static struct collected out_a, out_b;
    draw(a, OPENS_AT_MS + 5, seed, &out_a);
    draw(b, OPENS_AT_MS + 5, seed, &out_b);
    assert_int_equal(out_a.count, out_b.count);
    assert_memory_equal(out_a.items, out_b.items, out_a.count * sizeof(out_a.items[0]));
    /* And after the draw: the state is the same, the draw is done in the copy too. */
    assert_int_equal(engine_snapshot_write(b, buffer, capacity, &length), 0);
    assert_int_equal(engine_snapshot_read(a, buffer, length), 0);
    draw(a, OPENS_AT_MS + 6, seed, &out_a);
    assert_int_equal(out_a.items[0].result, ENGINE_RESULT_REPEATED);
    /* The line restored from the snapshot is the drawn line: the same places. */
    for (size_t i = 1; i < out_b.count; i++) {
        struct engine_purchase_view va_p, vb_p;
        assert_int_equal(engine_purchase(a, out_b.items[i].purchase_id, &va_p), 0);
        assert_int_equal(engine_purchase(b, out_b.items[i].purchase_id, &vb_p), 0);
        assert_int_equal(va_p.slot, vb_p.slot);
        assert_int_equal(va_p.status, vb_p.status);
    }
    struct engine_category_counts ca, cb;
    engine_category_counts(a, 0, &ca);
    engine_category_counts(b, 0, &cb);
    assert_int_equal(ca.waiting_count, cb.waiting_count);
    assert_true(cb.waiting_count > 0);
    /* A cancel serves the same head in both. */
    for (size_t i = 1; i < out_b.count; i++) {
        if (out_b.items[i].status != ENGINE_STATUS_HELD)
            continue;
        struct engine_command c = {.type = ENGINE_COMMAND_CANCEL, .now_ms = OPENS_AT_MS + 7};
        struct engine_purchase_view held;
        engine_purchase(b, out_b.items[i].purchase_id, &held);
        c.u.cancel.purchase_id = held.purchase_id;
        for (uint64_t k = 1; k <= 10; k++)
            if (k * 65537 == held.purchase_id)
                snprintf(c.u.cancel.customer, sizeof(c.u.cancel.customer), "c%c",
                         (char)('0' + k % 10));
        apply(a, &c, &out_a);
        apply(b, &c, &out_b);
        assert_int_equal(out_a.count, out_b.count);
        assert_memory_equal(out_a.items, out_b.items, out_a.count * sizeof(out_a.items[0]));
        break;
    }
    free(buffer);
    engine_free(a);
    engine_free(b);
}

/* The draw's order of ids, as docs/DESIGN.md states it (OpenSSL, not the engine's SHA-256). */
static void draw_order(const uint8_t seed[32], uint64_t *ids, size_t count)
{
    sort_seed = seed;
    qsort(ids, count, sizeof(ids[0]), by_draw_key);
}

static void confirm(struct engine *e, int64_t now_ms, uint64_t id, struct collected *out)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CONFIRM, .now_ms = now_ms};
    c.u.confirm.purchase_id = id;
    strcpy(c.u.confirm.payment_ref, "psp");
    apply(e, &c, out);
}

/*
 * A scheduled sale with a bounded line (the honest line, engine.h rules 2h..2k): the draw
 * decides each pre-queued purchase by those rules in the draw's order. Capacity 4, limit 5:
 * a quantity of 5 can never be served (sold_out at the draw, nothing sold yet); the others are
 * held while stock lasts, then wait while the line wants no more than could come back
 * (available + held), then line_full. Tickets ahead follow the draw, not arrival.
 */
static void test_draw_under_the_bounded_line(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    create_scheduled(e, 4, 5);
    enum { N = 10 };
    uint64_t ids[N];
    uint32_t quantity_of[N];
    for (uint64_t i = 0; i < N; i++) {
        ids[i] = 7000 + i * 104729;
        quantity_of[i] = i == 4 ? 5 : 1 + (uint32_t)(i % 2);
        char customer[16];
        snprintf(customer, sizeof(customer), "b%llu", (unsigned long long)i);
        struct engine_outcome o = buy(e, WINDOW_MS + (int64_t)i, ids[i], customer, quantity_of[i]);
        assert_int_equal(o.status, ENGINE_STATUS_PREQUEUED);
    }
    uint8_t seed[32];
    expected_seed(seed);
    uint64_t order[N];
    memcpy(order, ids, sizeof(ids));
    draw_order(seed, order, N);
    struct collected out;
    draw(e, OPENS_AT_MS, seed, &out);
    assert_int_equal(out.count, 1 + N);
    /* The rules, applied by hand in the draw's order. */
    uint32_t available = 4, held = 0, waiting = 0, waiting_count = 0;
    size_t sold_out = 0, line_full = 0, waiters = 0;
    for (size_t k = 0; k < N; k++) {
        const struct engine_outcome *d = &out.items[1 + k];
        assert_int_equal(d->purchase_id, order[k]);
        uint32_t q = d->quantity;
        if (waiting_count == 0 && available >= q) {
            assert_int_equal(d->status, ENGINE_STATUS_HELD);
            available -= q;
            held += q;
        } else if (available + held < q) {
            assert_int_equal(d->status, ENGINE_STATUS_REJECTED);
            assert_int_equal(d->reason, ENGINE_REASON_SOLD_OUT);
            sold_out++;
        } else if (available + held - waiting >= q) {
            assert_int_equal(d->status, ENGINE_STATUS_WAITING);
            assert_int_equal(d->position, ++waiting_count);
            uint32_t ahead = 0;
            assert_int_equal(engine_line_ahead(e, d->purchase_id, &ahead), 0);
            assert_int_equal(ahead, waiting);
            waiting += q;
            waiters++;
        } else {
            assert_int_equal(d->status, ENGINE_STATUS_REJECTED);
            assert_int_equal(d->reason, ENGINE_REASON_LINE_FULL);
            line_full++;
        }
    }
    assert_int_equal(sold_out, 1); /* the quantity of 5, wherever it was drawn */
    assert_true(waiters > 0 && line_full > 0);
    struct engine_category_counts counts;
    assert_int_equal(engine_category_counts(e, 0, &counts), 0);
    assert_int_equal(counts.waiting_quantity, waiting);
    assert_int_equal(counts.held, held);
    engine_free(e);
}

/*
 * The unbounded line at the draw: every request that could be served waits, in the draw's
 * order. Then confirms lower capacity - sold and the line is swept SOLD_OUT (engine.h rule 3),
 * never a request that could still be served.
 */
static void test_draw_under_the_unbounded_line(void **state)
{
    (void)state;
    struct engine *e = engine_make();
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 1000};
    schedule_spec(&c.u.create_event, 3, 2);
    c.u.create_event.line_policy = ENGINE_LINE_UNBOUNDED;
    struct collected out;
    apply(e, &c, &out);
    assert_int_equal(out.items[0].result, ENGINE_RESULT_OK);
    enum { N = 8 };
    uint64_t ids[N];
    for (uint64_t i = 0; i < N; i++) {
        ids[i] = 300 + i * 31337;
        char customer[16];
        snprintf(customer, sizeof(customer), "u%llu", (unsigned long long)i);
        assert_int_equal(buy(e, WINDOW_MS + 5, ids[i], customer, 1 + (uint32_t)(i % 2)).status,
                         ENGINE_STATUS_PREQUEUED);
    }
    uint8_t seed[32];
    expected_seed(seed);
    uint64_t order[N];
    memcpy(order, ids, sizeof(ids));
    draw_order(seed, order, N);
    draw(e, OPENS_AT_MS + 1, seed, &out);
    assert_int_equal(out.count, 1 + N);
    uint32_t available = 3, ahead_expected = 0, place = 0;
    bool is_line = false;
    for (size_t k = 0; k < N; k++) {
        const struct engine_outcome *d = &out.items[1 + k];
        assert_int_equal(d->purchase_id, order[k]);
        if (!is_line && available >= d->quantity) {
            assert_int_equal(d->status, ENGINE_STATUS_HELD);
            available -= d->quantity;
            continue;
        }
        is_line = true; /* nobody passes the head: the rest wait, none is turned away */
        assert_int_equal(d->status, ENGINE_STATUS_WAITING);
        assert_int_equal(d->position, ++place);
        uint32_t ahead = 0;
        assert_int_equal(engine_line_ahead(e, d->purchase_id, &ahead), 0);
        assert_int_equal(ahead, ahead_expected);
        ahead_expected += d->quantity;
    }
    /* Every hold paid: nothing can come back, so each waiting request is sold_out. */
    for (size_t k = 0; k < N; k++) {
        struct engine_purchase_view view;
        assert_int_equal(engine_purchase(e, order[k], &view), 0);
        if (view.status == ENGINE_STATUS_HELD)
            confirm(e, OPENS_AT_MS + 2, order[k], &out);
    }
    struct engine_category_counts counts;
    assert_int_equal(engine_category_counts(e, 0, &counts), 0);
    assert_int_equal(counts.waiting_count, 0);
    for (size_t k = 0; k < N; k++) {
        struct engine_purchase_view view;
        assert_int_equal(engine_purchase(e, order[k], &view), 0);
        assert_true(
            view.status == ENGINE_STATUS_CONFIRMED ||
            (view.status == ENGINE_STATUS_REJECTED && view.reason == ENGINE_REASON_SOLD_OUT) ||
            (counts.available >= view.quantity && view.status == ENGINE_STATUS_HELD));
    }
    engine_free(e);
}

/*
 * A format-2 snapshot (before schedules) still reads: format 3 without the spec's schedule (its
 * last 16 bytes) and the draw state byte after it.
 */
static void test_snapshot_format_2_still_reads(void **state)
{
    (void)state;
    struct engine *a = engine_make(), *b = engine_make();
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 10};
    schedule_spec(&c.u.create_event, 5, 1);
    c.u.create_event.opens_at_ms = 0;
    c.u.create_event.prequeue_ms = 0;
    c.u.create_event.line_policy = ENGINE_LINE_UNBOUNDED;
    struct collected out;
    apply(a, &c, &out);
    buy(a, 20, 5, "x", 1);
    size_t capacity = engine_snapshot_size(a), length = 0;
    uint8_t *buffer = malloc(capacity);
    assert_int_equal(engine_snapshot_write(a, buffer, capacity, &length), 0);
    assert_int_equal(buffer[4], 3);
    uint8_t spec_bytes[CATRACA_COMMAND_ENCODED_MAX];
    struct wire_writer w = {.buffer = spec_bytes, .capacity = sizeof(spec_bytes)};
    codec_event_spec_put(&w, engine_event(a));
    size_t schedule_at = 17 + w.length - 16; /* magic, version, clock, state, spec */
    assert_int_equal(buffer[schedule_at - 1], ENGINE_LINE_UNBOUNDED); /* the policy before it */
    memmove(buffer + schedule_at, buffer + schedule_at + 17, length - schedule_at - 17);
    buffer[4] = 2;
    assert_int_equal(engine_snapshot_read(b, buffer, length - 17), 0);
    struct engine_purchase_view view;
    assert_int_equal(engine_purchase(b, 5, &view), 0);
    assert_int_equal(view.status, ENGINE_STATUS_HELD);
    assert_int_equal(engine_event(b)->line_policy, ENGINE_LINE_UNBOUNDED);
    assert_int_equal(engine_event(b)->opens_at_ms, 0);
    struct engine_draw_view draw_view;
    engine_draw_state(b, &draw_view);
    assert_int_equal(draw_view.state, ENGINE_DRAW_NONE);
    free(buffer);
    engine_free(a);
    engine_free(b);
}

static void test_codec_schedule_and_draw(void **state)
{
    (void)state;
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0, plain_length = 0;
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 3}, back;
    schedule_spec(&c.u.create_event, 5, 1);
    c.u.create_event.line_policy = ENGINE_LINE_UNBOUNDED;
    assert_int_equal(codec_command_encode(&c, record, sizeof(record), &length), 0);
    assert_int_equal(codec_command_decode(record, length, &back), 0);
    assert_int_equal(back.u.create_event.opens_at_ms, OPENS_AT_MS);
    assert_int_equal(back.u.create_event.prequeue_ms, PREQUEUE_MS);
    assert_int_equal(back.u.create_event.line_policy, ENGINE_LINE_UNBOUNDED);
    assert_int_equal(codec_command_decode(record, length - 1, &back), CATRACA_E_TRUNCATED);
    /* Format 3 always carries the schedule: zeros when the sale is not scheduled. */
    c.u.create_event.opens_at_ms = 0;
    c.u.create_event.prequeue_ms = 0;
    assert_int_equal(codec_command_encode(&c, record, sizeof(record), &plain_length), 0);
    assert_int_equal(plain_length, length);
    assert_int_equal(codec_command_decode(record, length, &back), 0);
    assert_int_equal(back.u.create_event.opens_at_ms, 0);

    struct engine_command d = {.type = ENGINE_COMMAND_DRAW, .now_ms = 9};
    for (int i = 0; i < 32; i++)
        d.u.draw.seed[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(codec_command_encode(&d, record, sizeof(record), &length), 0);
    assert_int_equal(length, 1 + 1 + 8 + 32);
    assert_int_equal(codec_command_decode(record, length, &back), 0);
    assert_memory_equal(back.u.draw.seed, d.u.draw.seed, 32);
    assert_int_equal(codec_command_decode(record, length - 1, &back), CATRACA_E_TRUNCATED);
}

static void test_sha256_matches_openssl(void **state)
{
    (void)state;
    uint8_t ours[32], theirs[32];
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    sha256_two("a", 1, "bc", 2, ours);
    assert_memory_equal(ours, abc, 32);
    uint8_t data[300];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 131 + 7);
    for (size_t length = 0; length <= sizeof(data); length++) {
        size_t split = length / 3;
        sha256_two(data, split, data + split, length - split, ours);
        SHA256(data, length, theirs);
        assert_memory_equal(ours, theirs, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_and_draw_order),
        cmocka_unit_test(test_deferred_after_prequeue_in_arrival_order),
        cmocka_unit_test(test_closed_before_draw),
        cmocka_unit_test(test_draw_refused_without_schedule),
        cmocka_unit_test(test_schedule_must_be_valid),
        cmocka_unit_test(test_snapshot_mid_window),
        cmocka_unit_test(test_snapshot_format_2_still_reads),
        cmocka_unit_test(test_draw_under_the_bounded_line),
        cmocka_unit_test(test_draw_under_the_unbounded_line),
        cmocka_unit_test(test_codec_schedule_and_draw),
        cmocka_unit_test(test_sha256_matches_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
