/* Unit tests of the engine's rules (engine.h), one scenario each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/siphash.h"

#define OUTCOMES_MAX 256

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

struct fixture {
    struct engine *engine;
    struct collected out;
    int64_t now_ms;
};

static struct fixture *fixture_new(uint32_t purchases_max, uint32_t customers_max)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    struct engine_config config = {.purchases_max = purchases_max, .customers_max = customers_max};
    assert_int_equal(engine_new(&config, &f.engine), 0);
    f.now_ms = 1000;
    return &f;
}

static void run(struct fixture *f, struct engine_command *command)
{
    struct engine_sink sink = {.emit = collect, .context = &f->out};
    f->out.count = 0;
    if (command->now_ms == 0)
        command->now_ms = f->now_ms;
    assert_int_equal(engine_apply(f->engine, command, &sink), 0);
    assert_int_equal(engine_validate(f->engine), 0);
}

/* Creates "ev" with categories "a" (capacity_a) and "b" (capacity_b, 0 = absent), under the
 * given line policy. */
static void create_event_with_policy(struct fixture *f, uint32_t capacity_a, uint32_t capacity_b,
                                     uint32_t limit, int64_t hold_ms, uint8_t line_policy)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT};
    struct engine_event_spec *s = &c.u.create_event;
    strcpy(s->id, "ev");
    strcpy(s->name, "Event");
    s->hold_ms = hold_ms;
    s->per_customer_limit = limit;
    s->state = ENGINE_STATE_OPEN;
    s->category_count = capacity_b ? 2 : 1;
    memcpy(s->secret, "0123456789abcdef", 16);
    strcpy(s->categories[0].id, "a");
    s->categories[0].capacity = capacity_a;
    s->categories[0].price_cents = 100;
    strcpy(s->categories[1].id, "b");
    s->categories[1].capacity = capacity_b;
    s->line_policy = line_policy;
    run(f, &c);
    assert_int_equal(f->out.count, 1);
    assert_int_equal(f->out.items[0].type, ENGINE_OUTCOME_EVENT);
    assert_int_equal(f->out.items[0].result, ENGINE_RESULT_OK);
}

/* The bounded line (engine.h rule 2j), the policy of specs from before line policies. */
static void create_event(struct fixture *f, uint32_t capacity_a, uint32_t capacity_b,
                         uint32_t limit, int64_t hold_ms)
{
    create_event_with_policy(f, capacity_a, capacity_b, limit, hold_ms, ENGINE_LINE_BOUNDED);
}

static const struct engine_outcome *purchase(struct fixture *f, uint64_t id, const char *customer,
                                             const char *category, uint32_t quantity)
{
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE};
    c.u.purchase.purchase_id = id;
    strcpy(c.u.purchase.customer, customer);
    strcpy(c.u.purchase.category, category);
    c.u.purchase.quantity = quantity;
    run(f, &c);
    for (size_t i = 0; i < f->out.count; i++)
        if (f->out.items[i].purchase_id == id && f->out.items[i].type == ENGINE_OUTCOME_PURCHASE)
            return &f->out.items[i];
    fail_msg("no outcome for purchase %llu", (unsigned long long)id);
    return NULL;
}

static const struct engine_outcome *confirm(struct fixture *f, uint64_t id, const char *ref)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CONFIRM};
    c.u.confirm.purchase_id = id;
    strcpy(c.u.confirm.payment_ref, ref);
    run(f, &c);
    for (size_t i = 0; i < f->out.count; i++)
        if (f->out.items[i].type == ENGINE_OUTCOME_CONFIRM)
            return &f->out.items[i];
    fail_msg("no confirm answer");
    return NULL;
}

static const struct engine_outcome *cancel(struct fixture *f, uint64_t id, const char *customer)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CANCEL};
    c.u.cancel.purchase_id = id;
    strcpy(c.u.cancel.customer, customer);
    run(f, &c);
    for (size_t i = 0; i < f->out.count; i++)
        if (f->out.items[i].type == ENGINE_OUTCOME_CANCEL)
            return &f->out.items[i];
    fail_msg("no cancel answer");
    return NULL;
}

static void tick(struct fixture *f, int64_t now_ms)
{
    struct engine_command c = {.type = ENGINE_COMMAND_TICK, .now_ms = now_ms};
    f->now_ms = now_ms;
    run(f, &c);
}

static void set_state(struct fixture *f, uint8_t state)
{
    struct engine_command c = {.type = ENGINE_COMMAND_SET_STATE};
    c.u.set_state.state = state;
    run(f, &c);
}

static uint8_t status_of(struct fixture *f, uint64_t id)
{
    struct engine_purchase_view view;
    assert_int_equal(engine_purchase(f->engine, id, &view), 0);
    return view.status;
}

static struct engine_category_counts counts(struct fixture *f, uint32_t category)
{
    struct engine_category_counts c;
    assert_int_equal(engine_category_counts(f->engine, category, &c), 0);
    return c;
}

static void teardown_engine(struct fixture *f)
{
    engine_free(f->engine);
}

static void test_hold_then_line_full_then_sold_out(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 0, 4, 60000);
    const struct engine_outcome *o = purchase(f, 1, "c1", "a", 2);
    assert_int_equal(o->status, ENGINE_STATUS_HELD);
    assert_int_equal(o->hold_expires_at_ms, 1000 + 60000);
    o = purchase(f, 2, "c2", "a", 1);
    assert_int_equal(o->status, ENGINE_STATUS_HELD);
    o = purchase(f, 3, "c3", "a", 1);
    /* Could be served if a hold returns: waits. */
    assert_int_equal(o->status, ENGINE_STATUS_WAITING);
    assert_int_equal(o->position, 1);
    o = purchase(f, 4, "c4", "a", 3);
    /* 3 held - 1 waiting = 2 for the bounded line, 3 wanted: the line is full, but all 3
     * could still come back: not sold out. */
    assert_int_equal(o->status, ENGINE_STATUS_REJECTED);
    assert_int_equal(o->reason, ENGINE_REASON_LINE_FULL);
    struct engine_category_counts c = counts(f, 0);
    assert_int_equal(c.available, 0);
    assert_int_equal(c.held, 3);
    assert_int_equal(c.waiting_count, 1);
    confirm(f, 1, "pay1"); /* 2 sold: capacity - sold = 1 */
    o = purchase(f, 5, "c5", "a", 2);
    assert_int_equal(o->reason, ENGINE_REASON_SOLD_OUT); /* never again 2 */
    teardown_engine(f);
}

static void test_quantity_larger_than_capacity(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 2, 0, 4, 60000);
    const struct engine_outcome *o = purchase(f, 1, "c1", "a", 3);
    assert_int_equal(o->status, ENGINE_STATUS_REJECTED);
    assert_int_equal(o->reason, ENGINE_REASON_SOLD_OUT);
    assert_int_equal(counts(f, 0).available, 2);
    teardown_engine(f);
}

static void test_expiry_at_exactly_expires_at(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 1, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    tick(f, 1000 + 4999);
    assert_int_equal(status_of(f, 1), ENGINE_STATUS_HELD);
    tick(f, 1000 + 5000);
    assert_int_equal(f->out.count, 1);
    assert_int_equal(f->out.items[0].status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(counts(f, 0).available, 1);
    teardown_engine(f);
}

static void test_confirm_racing_expiry_same_millisecond(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 2, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    purchase(f, 2, "c2", "a", 1);
    f->now_ms = 1000 + 4999;
    const struct engine_outcome *o = confirm(f, 1, "pay1");
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(o->status, ENGINE_STATUS_CONFIRMED);
    /* The same millisecond as the expiry: expiry is applied first. */
    f->now_ms = 1000 + 5000;
    o = confirm(f, 2, "pay2");
    assert_int_equal(f->out.items[0].status, ENGINE_STATUS_EXPIRED);
    /* A late payment: recorded as a refund due, never a ticket. */
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(o->status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(o->reason, ENGINE_REASON_REFUND_DUE);
    assert_int_equal(o->ticket_count, 0);
    struct engine_category_counts c = counts(f, 0);
    assert_int_equal(c.sold, 1);
    assert_int_equal(c.available, 1);
    teardown_engine(f);
}

static void test_waiting_four_behind_one(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 5, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 4); /* held 4 */
    purchase(f, 2, "c2", "a", 1); /* held 1 */
    const struct engine_outcome *o = purchase(f, 3, "c3", "a", 1);
    assert_int_equal(o->status, ENGINE_STATUS_WAITING);
    o = purchase(f, 4, "c4", "a", 4);
    assert_int_equal(o->status, ENGINE_STATUS_WAITING); /* 5 - 1 ahead >= 4 */
    assert_int_equal(o->position, 2);
    o = purchase(f, 5, "c5", "a", 1);
    assert_int_equal(o->status, ENGINE_STATUS_REJECTED); /* 5 - 5 ahead < 1 */
    /* c2's single ticket returns: the head (1) is served, the 4 keeps waiting. */
    o = cancel(f, 2, "c2");
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_HELD);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_WAITING);
    /* c1's four return at expiry; the waiting 4 gets them, in order. */
    tick(f, 1000 + 5000);
    assert_int_equal(status_of(f, 1), ENGINE_STATUS_EXPIRED);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_HELD);
    teardown_engine(f);
}

static void test_strict_order_head_blocks(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 4, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 2);
    purchase(f, 2, "c2", "a", 2);
    purchase(f, 3, "c3", "a", 3); /* waits: 4 >= 3 */
    const struct engine_outcome *o = purchase(f, 4, "c4", "a", 1);
    assert_int_equal(o->status, ENGINE_STATUS_WAITING); /* 4 - 3 >= 1 */
    cancel(f, 1, "c1"); /* 2 available: the head wants 3, nobody jumps it */
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_WAITING);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_WAITING);
    assert_int_equal(counts(f, 0).available, 2);
    cancel(f, 2, "c2");
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_HELD);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_HELD);
    teardown_engine(f);
}

static void test_confirm_rejects_impossible_waiters(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 5, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 4);
    purchase(f, 2, "c2", "a", 1);
    purchase(f, 3, "c3", "a", 1); /* waiting, needs 1 of 5 */
    purchase(f, 4, "c4", "a", 4); /* waiting, 1 + 4 <= 5 */
    confirm(f, 2, "pay");         /* budget 4: 1 kept, 4 no longer fits */
    assert_int_equal(f->out.count, 2);
    assert_int_equal(f->out.items[1].purchase_id, 4);
    assert_int_equal(f->out.items[1].status, ENGINE_STATUS_REJECTED);
    /* capacity - sold = 4: four could still come back, the bounded line has no room. */
    assert_int_equal(f->out.items[1].reason, ENGINE_REASON_LINE_FULL);
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_WAITING);
    teardown_engine(f);
}

static void test_sweep_keeps_small_request_behind_rejected_big_one(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 6, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 4);
    purchase(f, 2, "c2", "a", 2);
    purchase(f, 3, "c3", "a", 1); /* waiting: ahead 0 */
    purchase(f, 4, "c4", "a", 4); /* waiting: 6 - 1 >= 4 */
    purchase(f, 5, "c6", "a", 1); /* waiting: 6 - 5 >= 1 */
    confirm(f, 2, "pay");         /* budget 4: keep 1, reject the 4, keep the last 1 */
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_WAITING);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_REJECTED);
    assert_int_equal(status_of(f, 5), ENGINE_STATUS_WAITING);
    assert_int_equal(counts(f, 0).waiting_quantity, 2);
    teardown_engine(f);
}

/* Found by the audit system test: a head rejected by a sweep left a request that fits waiting
 * forever when no hold was left to expire. */
static void test_sweep_then_serve_the_new_head(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 2); /* held 2, available 1 */
    purchase(f, 2, "c2", "a", 1); /* held 1, available 0 */
    purchase(f, 3, "c3", "a", 2); /* waiting: 3 - 0 >= 2 */
    purchase(f, 4, "c4", "a", 1); /* waiting: 3 - 2 >= 1 */
    cancel(f, 2, "c2");           /* available 1: the head wants 2, nobody jumps it */
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_WAITING);
    confirm(f, 1, "pay"); /* budget 1: the 2 is rejected, the 1 behind it now fits */
    assert_int_equal(status_of(f, 3), ENGINE_STATUS_REJECTED);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_HELD);
    assert_int_equal(f->out.count, 3); /* confirm answer, rejection, hold */
    assert_int_equal(f->out.items[2].purchase_id, 4);
    teardown_engine(f);
}

static void test_per_customer_limit(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 100, 100, 4, 5000);
    assert_int_equal(purchase(f, 1, "c1", "a", 3)->status, ENGINE_STATUS_HELD);
    const struct engine_outcome *o = purchase(f, 2, "c1", "b", 2);
    assert_int_equal(o->status, ENGINE_STATUS_REJECTED);
    assert_int_equal(o->reason, ENGINE_REASON_LIMIT_EXCEEDED);
    assert_int_equal(purchase(f, 3, "c1", "b", 1)->status, ENGINE_STATUS_HELD);
    assert_int_equal(purchase(f, 4, "c2", "a", 5)->reason, ENGINE_REASON_LIMIT_EXCEEDED);
    /* Expired and cancelled tickets free the quota. */
    cancel(f, 3, "c1");
    assert_int_equal(purchase(f, 5, "c1", "b", 1)->status, ENGINE_STATUS_HELD);
    tick(f, 1000 + 5000);
    assert_int_equal(purchase(f, 6, "c1", "a", 4)->status, ENGINE_STATUS_HELD);
    teardown_engine(f);
}

static void test_duplicate_purchase_repeats(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 1, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    const struct engine_outcome *o = purchase(f, 1, "c1", "a", 1);
    assert_int_equal(o->result, ENGINE_RESULT_REPEATED);
    assert_int_equal(o->status, ENGINE_STATUS_HELD);
    assert_int_equal(counts(f, 0).held, 1);
    assert_int_equal(engine_purchase_count(f->engine), 1);
    teardown_engine(f);
}

static void test_confirm_answers(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 2);
    const struct engine_outcome *o = confirm(f, 1, "psp_1");
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(o->ticket_count, 2);
    uint64_t code0 = o->ticket_codes[0], code1 = o->ticket_codes[1];
    assert_true(code0 != code1);
    o = confirm(f, 1, "psp_1");
    assert_int_equal(o->result, ENGINE_RESULT_REPEATED);
    assert_true(o->ticket_codes[0] == code0 && o->ticket_codes[1] == code1);
    o = confirm(f, 1, "psp_2");
    assert_int_equal(o->result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(o->reason, ENGINE_REASON_ALREADY_CONFIRMED);
    o = confirm(f, 99, "psp_1");
    assert_int_equal(o->reason, ENGINE_REASON_UNKNOWN_PURCHASE);
    purchase(f, 2, "c2", "a", 1);
    cancel(f, 2, "c2");
    assert_int_equal(confirm(f, 2, "p")->reason, ENGINE_REASON_HOLD_CANCELLED);
    assert_int_equal(counts(f, 0).sold, 2);
    teardown_engine(f);
}

static void test_cancel_answers(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event_with_policy(f, 1, 0, 4, 5000, ENGINE_LINE_UNBOUNDED);
    purchase(f, 1, "c1", "a", 1);
    purchase(f, 2, "c2", "a", 1); /* waiting */
    purchase(f, 3, "c3", "a", 1); /* waiting */
    assert_int_equal(cancel(f, 1, "intruder")->reason, ENGINE_REASON_NOT_OWNER);
    assert_int_equal(cancel(f, 3, "c3")->result, ENGINE_RESULT_OK); /* leaves the line */
    assert_int_equal(cancel(f, 3, "c3")->result, ENGINE_RESULT_REPEATED);
    assert_int_equal(counts(f, 0).waiting_count, 1);
    const struct engine_outcome *o = cancel(f, 1, "c1");
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(o->status, ENGINE_STATUS_CANCELLED);
    assert_int_equal(f->out.count, 2); /* the answer, then the waiting one served */
    assert_int_equal(f->out.items[1].purchase_id, 2);
    assert_int_equal(f->out.items[1].status, ENGINE_STATUS_HELD);
    assert_int_equal(cancel(f, 1, "c1")->result, ENGINE_RESULT_REPEATED);
    teardown_engine(f);
}

static void test_sale_states(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    assert_int_equal(purchase(f, 1, "c1", "a", 1)->reason, ENGINE_REASON_SALE_CLOSED);
    create_event(f, 1, 0, 4, 5000);
    assert_int_equal(purchase(f, 2, "c1", "zz", 1)->reason, ENGINE_REASON_UNKNOWN_CATEGORY);
    purchase(f, 3, "c1", "a", 1);
    purchase(f, 4, "c2", "a", 1); /* waiting */
    set_state(f, ENGINE_STATE_PAUSED);
    assert_int_equal(purchase(f, 5, "c3", "a", 1)->reason, ENGINE_REASON_SALE_CLOSED);
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_WAITING);
    set_state(f, ENGINE_STATE_CLOSED);
    assert_int_equal(f->out.count, 2);
    assert_int_equal(f->out.items[1].purchase_id, 4);
    assert_int_equal(f->out.items[1].reason, ENGINE_REASON_SALE_CLOSED);
    /* A hold survives the close and can still be paid. */
    assert_int_equal(confirm(f, 3, "pay")->result, ENGINE_RESULT_OK);
    set_state(f, ENGINE_STATE_OPEN);
    assert_int_equal(purchase(f, 6, "c3", "a", 1)->reason, ENGINE_REASON_SOLD_OUT);
    teardown_engine(f);
}

static void test_create_event_repeat_and_conflict(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 5, 0, 4, 5000);
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT};
    c.u.create_event = *engine_event(f->engine);
    memset(c.u.create_event.secret, 7, sizeof(c.u.create_event.secret));
    run(f, &c);
    assert_int_equal(f->out.items[0].result, ENGINE_RESULT_REPEATED);
    c.u.create_event.categories[0].capacity = 6;
    c.now_ms = 0;
    run(f, &c);
    assert_int_equal(f->out.items[0].result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(f->out.items[0].reason, ENGINE_REASON_EVENT_MISMATCH);
    assert_int_equal(counts(f, 0).capacity, 5);
    teardown_engine(f);
}

static void test_invalid_event_spec(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT};
    strcpy(c.u.create_event.id, "ev");
    c.u.create_event.hold_ms = 5000;
    c.u.create_event.per_customer_limit = 4;
    c.u.create_event.state = ENGINE_STATE_OPEN;
    c.u.create_event.category_count = 2;
    strcpy(c.u.create_event.categories[0].id, "a");
    strcpy(c.u.create_event.categories[1].id, "a"); /* duplicate id */
    c.u.create_event.categories[0].capacity = 1;
    c.u.create_event.categories[1].capacity = 1;
    run(f, &c);
    assert_int_equal(f->out.items[0].reason, ENGINE_REASON_INVALID_EVENT);
    assert_int_equal(engine_state(f->engine), ENGINE_STATE_NONE);
    teardown_engine(f);
}

static void test_pool_exhaustion(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(3, 2);
    create_event(f, 100, 0, 4, 5000);
    assert_int_equal(purchase(f, 1, "c1", "a", 1)->status, ENGINE_STATUS_HELD);
    assert_int_equal(purchase(f, 2, "c2", "a", 1)->status, ENGINE_STATUS_HELD);
    /* Third customer: the customer pool (2) is full. */
    assert_int_equal(purchase(f, 3, "c3", "a", 1)->reason, ENGINE_REASON_ENGINE_FULL);
    /* Fourth purchase: the purchase pool (3) is full, and stays so for a duplicate. */
    assert_int_equal(purchase(f, 4, "c1", "a", 1)->reason, ENGINE_REASON_ENGINE_FULL);
    assert_int_equal(purchase(f, 4, "c1", "a", 1)->reason, ENGINE_REASON_ENGINE_FULL);
    assert_int_equal(counts(f, 0).held, 2);
    teardown_engine(f);
}

static void test_time_never_goes_backwards(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 1, 0, 4, 5000);
    tick(f, 50000);
    f->now_ms = 10;
    const struct engine_outcome *o = purchase(f, 1, "c1", "a", 1);
    assert_int_equal(o->hold_expires_at_ms, 50000 + 5000);
    assert_int_equal(engine_now_ms(f->engine), 50000);
    teardown_engine(f);
}

static void test_expiry_order_and_outcome_order(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 2, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    f->now_ms = 1500;
    purchase(f, 2, "c2", "a", 1);
    purchase(f, 3, "c3", "a", 1); /* waiting */
    purchase(f, 4, "c4", "a", 1); /* waiting */
    f->now_ms = 10000;
    purchase(f, 5, "c5", "a", 1);
    /* expire 1, serve 3, expire 2, serve 4, then the purchase's own answer */
    uint64_t ids[] = {1, 3, 2, 4, 5};
    uint8_t statuses[] = {ENGINE_STATUS_EXPIRED, ENGINE_STATUS_HELD, ENGINE_STATUS_EXPIRED,
                          ENGINE_STATUS_HELD, ENGINE_STATUS_WAITING};
    assert_int_equal(f->out.count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(f->out.items[i].purchase_id, ids[i]);
        assert_int_equal(f->out.items[i].status, statuses[i]);
    }
    teardown_engine(f);
}

/*
 * Expiry goes by (expires_at, slot) even when grant order differs across categories: here b's
 * new arrival (slot 2) is granted before a's waiting buyer (slot 1) is served by a cancel in
 * the same millisecond. Both holds end at 1500 + 5000; slot 1 must expire first. (A single
 * grant-ordered list would expire slot 2 first: engine.c, "Expiry order".)
 */
static void test_expiry_ties_across_categories_go_by_slot(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 1, 1, 4, 5000);
    purchase(f, 10, "c1", "a", 1);                                                  /* slot 0 */
    assert_int_equal(purchase(f, 11, "c2", "a", 1)->status, ENGINE_STATUS_WAITING); /* slot 1 */
    f->now_ms = 1500;
    assert_int_equal(purchase(f, 12, "c3", "b", 1)->status, ENGINE_STATUS_HELD); /* slot 2 */
    cancel(f, 10, "c1");
    assert_int_equal(status_of(f, 11), ENGINE_STATUS_HELD);
    assert_int_equal(engine_next_expiry_ms(f->engine), 6500);
    tick(f, 6500);
    assert_int_equal(f->out.count, 2);
    assert_int_equal(f->out.items[0].purchase_id, 11);
    assert_int_equal(f->out.items[0].status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(f->out.items[1].purchase_id, 12);
    assert_int_equal(f->out.items[1].status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(engine_next_expiry_ms(f->engine), INT64_MAX);
    teardown_engine(f);
}

/* Confirmed and cancelled holds leave their chain when its head passes them; the next expiry
 * is always a held purchase's. */
static void test_next_expiry_skips_confirmed_and_cancelled(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 10, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    f->now_ms = 1100;
    purchase(f, 2, "c2", "a", 1);
    f->now_ms = 1200;
    purchase(f, 3, "c3", "a", 1);
    f->now_ms = 1300;
    purchase(f, 4, "c4", "a", 1);
    confirm(f, 2, "pay-2");
    assert_int_equal(engine_next_expiry_ms(f->engine), 6000);
    cancel(f, 3, "c3");
    confirm(f, 1, "pay-1");
    assert_int_equal(engine_next_expiry_ms(f->engine), 6300);
    assert_int_equal(engine_outcome_bound(f->engine), 2);
    tick(f, 6299);
    assert_int_equal(f->out.count, 0);
    tick(f, 6300);
    assert_int_equal(f->out.count, 1);
    assert_int_equal(f->out.items[0].purchase_id, 4);
    assert_int_equal(engine_next_expiry_ms(f->engine), INT64_MAX);
    teardown_engine(f);
}

/* A snapshot whose holds of one category do not expire in slot order cannot come from an
 * engine (grant order is slot order there): it is refused, not restored into a wrong chain. */
static void test_snapshot_with_holds_out_of_order_is_refused(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1); /* expires 6000 */
    f->now_ms = 1500;
    purchase(f, 2, "c2", "a", 1); /* expires 6500 */
    static uint8_t buffer[65536];
    size_t length = 0;
    assert_int_equal(engine_snapshot_write(f->engine, buffer, sizeof(buffer), &length), 0);
    struct engine *copy;
    struct engine_config config = {.purchases_max = 64, .customers_max = 64};
    assert_int_equal(engine_new(&config, &copy), 0);
    assert_int_equal(engine_snapshot_read(copy, buffer, length), 0);
    /* The last purchase record (32 bytes): id, customer key, then its expiry. */
    uint8_t *expires = buffer + length - 32 + 16;
    uint64_t earlier = 5900;
    for (int i = 0; i < 8; i++)
        expires[i] = (uint8_t)(earlier >> (8 * i));
    assert_int_equal(engine_snapshot_read(copy, buffer, length), CATRACA_E_CORRUPT);
    assert_int_equal(engine_state(copy), ENGINE_STATE_NONE);
    engine_free(copy);
    teardown_engine(f);
}

/* engine_apply_batch: arguments checked before anything is applied. */
static void test_apply_batch_refuses_bad_batches_whole(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(8, 8);
    create_event(f, 3, 0, 4, 5000);
    struct engine_command batch[2] = {{.type = ENGINE_COMMAND_PURCHASE, .now_ms = 1000},
                                      {.type = 99, .now_ms = 1000}};
    batch[0].u.purchase.purchase_id = 1;
    strcpy(batch[0].u.purchase.customer, "c1");
    strcpy(batch[0].u.purchase.category, "a");
    batch[0].u.purchase.quantity = 1;
    struct engine_sink sink = {.emit = collect, .context = &f->out};
    f->out.count = 0;
    assert_int_equal(engine_apply_batch(f->engine, batch, 2, &sink), CATRACA_E_INVALID);
    assert_int_equal(f->out.count, 0);
    assert_int_equal(engine_purchase_count(f->engine), 0);
    assert_int_equal(engine_apply_batch(f->engine, NULL, 1, &sink), CATRACA_E_INVALID);
    assert_int_equal(engine_apply_batch(f->engine, NULL, 0, &sink), 0);
    assert_int_equal(engine_apply_batch(f->engine, batch, 1, &sink), 0);
    assert_int_equal(f->out.count, 1);
    assert_int_equal(f->out.items[0].status, ENGINE_STATUS_HELD);
    teardown_engine(f);
}

/* What a sink with begin_command saw: for each outcome, the index it was told before it. */
struct indexed {
    struct collected out;
    size_t current, begun;
    size_t index_of[OUTCOMES_MAX];
};

static void indexed_begin(void *context, size_t index)
{
    struct indexed *x = context;
    assert_int_equal(index, x->begun); /* each command once, in order */
    x->begun++;
    x->current = index;
}

static void indexed_collect(void *context, const struct engine_outcome *outcome)
{
    struct indexed *x = context;
    x->index_of[x->out.count] = x->current;
    collect(&x->out, outcome);
}

/*
 * engine_apply_batch tells the sink which command comes next (the worker names each outcome's
 * command and seq by it): an expiry the clock of command i causes is emitted after
 * begin_command(i), before command i's own outcome.
 */
static void test_apply_batch_names_each_outcomes_command(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(8, 8);
    create_event(f, 1, 0, 4, 5000); /* one ticket, holds of 5 s */
    struct engine_command batch[3] = {{.type = ENGINE_COMMAND_PURCHASE, .now_ms = 1000},
                                      {.type = ENGINE_COMMAND_TICK, .now_ms = 2000},
                                      {.type = ENGINE_COMMAND_PURCHASE, .now_ms = 7000}};
    for (int i = 0; i < 3; i += 2) {
        batch[i].u.purchase.purchase_id = (uint64_t)i + 1;
        snprintf(batch[i].u.purchase.customer, sizeof(batch[i].u.purchase.customer), "c%d", i);
        strcpy(batch[i].u.purchase.category, "a");
        batch[i].u.purchase.quantity = 1;
    }
    static struct indexed x;
    memset(&x, 0, sizeof(x));
    struct engine_sink sink = {
        .emit = indexed_collect, .context = &x, .begin_command = indexed_begin};
    assert_int_equal(engine_apply_batch(f->engine, batch, 3, &sink), 0);
    assert_int_equal(x.begun, 3);
    /* purchase 1 held; at 7000 its hold (until 6000) expires, then purchase 3 is held */
    assert_int_equal(x.out.count, 3);
    assert_int_equal(x.out.items[0].purchase_id, 1);
    assert_int_equal(x.index_of[0], 0);
    assert_int_equal(x.out.items[1].purchase_id, 1);
    assert_int_equal(x.out.items[1].status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(x.index_of[1], 2);
    assert_int_equal(x.out.items[2].purchase_id, 3);
    assert_int_equal(x.out.items[2].status, ENGINE_STATUS_HELD);
    assert_int_equal(x.index_of[2], 2);
    /* engine_apply does not call it */
    struct engine_command one = {.type = ENGINE_COMMAND_TICK, .now_ms = 8000};
    assert_int_equal(engine_apply(f->engine, &one, &sink), 0);
    assert_int_equal(x.begun, 3);
    teardown_engine(f);
}

/*
 * Older snapshots still restore, made here from a format 3 one: format 2 (before schedules) by
 * dropping the spec's schedule (its last 16 bytes) and the draw state byte; format 1 (before
 * line policies and refunds too) by dropping as well the spec's policy byte, the categories'
 * part and every purchase's refund byte.
 */
static void test_snapshot_formats_1_and_2_still_read(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 2, 4, 5000);
    purchase(f, 1, "c1", "a", 2);
    purchase(f, 2, "c2", "a", 1);
    purchase(f, 3, "c3", "a", 1);
    confirm(f, 1, "pay");
    static uint8_t v3[65536], v2[65536], v1[65536];
    size_t length = 0;
    assert_int_equal(engine_snapshot_write(f->engine, v3, sizeof(v3), &length), 0);
    assert_int_equal(v3[4], 3);
    struct engine_command spec = {.type = ENGINE_COMMAND_CREATE_EVENT};
    spec.u.create_event = *engine_event(f->engine);
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t record_length = 0;
    assert_int_equal(codec_command_encode(&spec, record, sizeof(record), &record_length), 0);
    size_t spec_at = 4 + 4 + 8 + 1, spec_v3 = record_length - 10;
    size_t schedule_at = spec_at + spec_v3 - 16;
    /* Format 2: no schedule, no draw state byte. */
    memcpy(v2, v3, schedule_at);
    memcpy(v2 + schedule_at, v3 + schedule_at + 17, length - schedule_at - 17);
    size_t n2 = length - 17;
    v2[4] = 2;
    /* Format 1: nor the policy byte, the categories' part, the refund bytes. */
    size_t n = 0, at = 0;
    memcpy(v1, v3, schedule_at - 1); /* the spec without its policy byte */
    n = at = schedule_at - 1;
    at += 1 + 16 + 1 + 2 * 12; /* policy, schedule, draw state, two categories' part */
    size_t stats_and_customers = sizeof(struct engine_stats) + 4 + 3 * 8;
    memcpy(v1 + n, v3 + at, stats_and_customers + 4);
    n += stats_and_customers + 4;
    at += stats_and_customers + 4;
    for (uint32_t i = 0; i < 3; i++, at += 32, n += 31)
        memcpy(v1 + n, v3 + at, 31);
    assert_int_equal(at, length);
    v1[4] = 1;
    struct engine *copy;
    struct engine_config config = {.purchases_max = 64, .customers_max = 64};
    assert_int_equal(engine_new(&config, &copy), 0);
    assert_int_equal(engine_snapshot_read(copy, v2, n2), 0);
    assert_int_equal(engine_validate(copy), 0);
    assert_int_equal(engine_event(copy)->line_policy, engine_event(f->engine)->line_policy);
    assert_int_equal(engine_event(copy)->opens_at_ms, 0);
    assert_int_equal(engine_purchase_count(copy), 3);
    assert_int_equal(engine_snapshot_read(copy, v2, n2 - 1), CATRACA_E_TRUNCATED);
    assert_int_equal(engine_snapshot_read(copy, v1, n), 0);
    assert_int_equal(engine_validate(copy), 0);
    assert_int_equal(engine_event(copy)->line_policy, ENGINE_LINE_BOUNDED);
    assert_int_equal(engine_purchase_count(copy), 3);
    assert_int_equal(engine_snapshot_read(copy, v1, n - 1), CATRACA_E_TRUNCATED);
    engine_free(copy);
    teardown_engine(f);
}

static void test_snapshot_round_trip_and_rejects_garbage(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 3, 2, 4, 5000);
    purchase(f, 1, "c1", "a", 2);
    purchase(f, 2, "c2", "a", 1);
    purchase(f, 3, "c3", "a", 1);
    confirm(f, 1, "pay");
    static uint8_t buffer[65536];
    size_t length = 0;
    assert_true(engine_snapshot_size(f->engine) <= sizeof(buffer));
    assert_int_equal(engine_snapshot_write(f->engine, buffer, sizeof(buffer), &length), 0);
    struct engine *copy;
    struct engine_config config = {.purchases_max = 64, .customers_max = 64};
    assert_int_equal(engine_new(&config, &copy), 0);
    assert_int_equal(engine_snapshot_read(copy, buffer, length), 0);
    assert_int_equal(engine_validate(copy), 0);
    struct engine_category_counts a, b;
    engine_category_counts(copy, 0, &a);
    engine_category_counts(f->engine, 0, &b);
    assert_memory_equal(&a, &b, sizeof(a));
    for (size_t cut = 0; cut < length; cut++)
        assert_true(engine_snapshot_read(copy, buffer, cut) < 0);
    buffer[4] = 9;
    assert_int_equal(engine_snapshot_read(copy, buffer, length), CATRACA_E_VERSION);
    assert_int_equal(engine_state(copy), ENGINE_STATE_NONE);
    struct engine_config small = {.purchases_max = 2, .customers_max = 64};
    struct engine *tiny;
    assert_int_equal(engine_new(&small, &tiny), 0);
    buffer[4] = 3; /* the version written */
    assert_int_equal(engine_snapshot_read(tiny, buffer, length), CATRACA_E_TOO_LARGE);
    engine_free(tiny);
    engine_free(copy);
    teardown_engine(f);
}

static void test_ticket_code_format(void **state)
{
    (void)state;
    char text[14];
    engine_ticket_code_format(0, text);
    assert_string_equal(text, "0000000000000");
    engine_ticket_code_format(UINT64_MAX, text);
    assert_string_equal(text, "FZZZZZZZZZZZZ");
    uint8_t secret[CATRACA_SECRET_BYTES] = {0};
    assert_true(engine_ticket_code(secret, 1, 0) != engine_ticket_code(secret, 1, 1));
    secret[0] = 1;
    assert_true(engine_ticket_code(secret, 1, 0) == engine_ticket_code(secret, 1, 0));
}

/* The reference vector of the SipHash paper (appendix A): key 00..0f, message 00..0e. */
static void test_siphash_reference_vector(void **state)
{
    (void)state;
    uint8_t key[16], message[15];
    for (uint8_t i = 0; i < 16; i++)
        key[i] = i;
    for (uint8_t i = 0; i < 15; i++)
        message[i] = i;
    assert_true(siphash24(key, message, sizeof(message)) == 0xa129ca6149be45e5ULL);
    /* The paper's vectors for lengths 0..15 (key 00..0f, message 00..len-1): every tail
     * length the word-at-a-time loads handle, with and without a whole word before it. */
    static const uint64_t expected[16] = {
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
        0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
        0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL, 0x7a5dbbc594ddb9f3ULL, 0xf4b32f46226bada7ULL,
        0x751e8fbc860ee5fbULL, 0x14ea5627c0843d90ULL, 0xf723ca908e7af2eeULL, 0xa129ca6149be45e5ULL,
    };
    uint8_t unaligned[17];
    for (size_t length = 0; length < 16; length++) {
        assert_true(siphash24(key, message, length) == expected[length]);
        memcpy(unaligned + 1, message, length);
        assert_true(siphash24(key, unaligned + 1, length) == expected[length]);
    }
}

/* A purchase of one ticket whose category array holds `length` bytes of `text`, a NUL when
 * length < the array, then 0xff to the end (bytes a word-at-a-time compare reads and must
 * ignore); the reason of the answer. */
static uint8_t purchase_category_bytes(struct fixture *f, uint64_t id, const char *text,
                                       size_t length)
{
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE};
    c.u.purchase.purchase_id = id;
    strcpy(c.u.purchase.customer, "buyer");
    memset(c.u.purchase.category, 0xff, sizeof(c.u.purchase.category));
    memcpy(c.u.purchase.category, text, length);
    if (length < sizeof(c.u.purchase.category))
        c.u.purchase.category[length] = '\0';
    c.u.purchase.quantity = 1;
    run(f, &c);
    assert_int_equal(f->out.count, 1);
    if (f->out.items[0].reason == ENGINE_REASON_NONE)
        assert_int_equal(f->out.items[0].status, ENGINE_STATUS_HELD);
    return f->out.items[0].reason == ENGINE_REASON_NONE ? (uint8_t)(100 + f->out.items[0].category)
                                                        : f->out.items[0].reason;
}

/*
 * Category ids of every length 1..64 are found by exactly their bytes and NUL: two ids that
 * differ only in their last byte, a prefix and an extension of them, and a full array with no
 * NUL (the category is compared by words, with no strnlen of the command's id).
 */
static void test_category_ids_of_every_length(void **state)
{
    (void)state;
    char text[CATRACA_ID_MAX + 2];
    memset(text, 'k', sizeof(text));
    for (size_t length = 1; length <= CATRACA_ID_MAX; length++) {
        struct fixture *f = fixture_new(16, 16);
        struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT};
        struct engine_event_spec *s = &c.u.create_event;
        strcpy(s->id, "ev");
        s->hold_ms = 60000;
        s->per_customer_limit = 10;
        s->state = ENGINE_STATE_OPEN;
        s->category_count = 2;
        memset(s->categories[0].id, 'k', length);
        memset(s->categories[1].id, 'k', length - 1);
        s->categories[1].id[length - 1] = 'j';
        s->categories[0].capacity = s->categories[1].capacity = 100;
        run(f, &c);
        assert_int_equal(f->out.items[0].result, ENGINE_RESULT_OK);
        uint64_t id = 1;
        assert_int_equal(purchase_category_bytes(f, id++, text, length), 100);
        char other[CATRACA_ID_MAX + 1];
        memcpy(other, text, length);
        other[length - 1] = 'j';
        assert_int_equal(purchase_category_bytes(f, id++, other, length), 101);
        assert_int_equal(purchase_category_bytes(f, id++, text, length - 1),
                         ENGINE_REASON_UNKNOWN_CATEGORY);
        assert_int_equal(purchase_category_bytes(f, id++, text, length + 1),
                         ENGINE_REASON_UNKNOWN_CATEGORY);
        assert_int_equal(purchase_category_bytes(f, id++, text, CATRACA_ID_MAX + 1),
                         ENGINE_REASON_UNKNOWN_CATEGORY);
        engine_free(f->engine);
    }
}

/*
 * The one-pass SipHash of a bounded string equals SipHash of its strnlen bytes for every array
 * size and every length, with the bytes around the NUL chosen to trip a word-at-a-time end
 * test (0x01 and 0x80 next to it, 0xff after it), at every alignment of the array.
 */
static void test_siphash_bounded_string(void **state)
{
    (void)state;
    static const uint8_t tricky[] = {0x01, 0x80, 0xff, 0x7f, 0x81, 'c', 0x02, 0xfe};
    uint8_t key[16];
    for (uint8_t i = 0; i < 16; i++)
        key[i] = (uint8_t)(i * 7 + 3);
    char storage[CATRACA_ID_MAX + 16];
    uint32_t mix = 12345;
    for (size_t array_size = 1; array_size <= CATRACA_ID_MAX + 9; array_size++) {
        for (size_t length = 0; length <= array_size; length++) {
            for (size_t align = 0; align < 4; align++) {
                char *s = storage + align;
                for (size_t i = 0; i < array_size; i++) {
                    mix = mix * 1103515245u + 12345u;
                    uint8_t byte = tricky[(mix >> 16) % sizeof(tricky)];
                    s[i] = (char)(i < length ? byte : (i == length ? 0 : 0xff));
                }
                assert_true(siphash24_bounded_string(key, s, array_size) ==
                            siphash24(key, s, length));
            }
        }
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct engine *e;
    struct engine_config bad = {.purchases_max = 0, .customers_max = 1};
    assert_int_equal(engine_new(&bad, &e), CATRACA_E_INVALID);
    struct fixture *f = fixture_new(4, 4);
    struct engine_command c = {.type = 99};
    struct engine_sink sink = {.emit = collect, .context = &f->out};
    assert_int_equal(engine_apply(f->engine, &c, &sink), CATRACA_E_INVALID);
    assert_int_equal(engine_outcome_bound(f->engine), 1);
    teardown_engine(f);
}

/* A later, smaller request that would fit never passes a waiting one (both policies). */
static void test_mixed_quantities_smaller_request_waits_its_turn(void **state)
{
    (void)state;
    for (uint8_t policy = ENGINE_LINE_BOUNDED; policy <= ENGINE_LINE_UNBOUNDED; policy++) {
        struct fixture *f = fixture_new(64, 64);
        create_event_with_policy(f, 5, 0, 4, 5000, policy);
        assert_int_equal(purchase(f, 1, "c1", "a", 4)->status, ENGINE_STATUS_HELD);
        assert_int_equal(purchase(f, 2, "c2", "a", 3)->status, ENGINE_STATUS_WAITING);
        /* One ticket is available and c3 wants one: c2 is ahead, so c3 waits. */
        assert_int_equal(counts(f, 0).available, 1);
        const struct engine_outcome *o = purchase(f, 3, "c3", "a", 1);
        assert_int_equal(o->status, ENGINE_STATUS_WAITING);
        assert_int_equal(o->position, 2);
        uint32_t ahead = 99;
        assert_int_equal(engine_line_ahead(f->engine, 3, &ahead), 0);
        assert_int_equal(ahead, 3);
        assert_int_equal(engine_line_ahead(f->engine, 1, &ahead), CATRACA_E_INVALID);
        assert_int_equal(engine_line_ahead(f->engine, 77, &ahead), CATRACA_E_NOTFOUND);
        tick(f, 1000 + 5000); /* c1's four return: c2 then c3, in order */
        assert_int_equal(f->out.count, 3);
        assert_int_equal(f->out.items[1].purchase_id, 2);
        assert_int_equal(f->out.items[1].status, ENGINE_STATUS_HELD);
        assert_int_equal(f->out.items[2].purchase_id, 3);
        assert_int_equal(f->out.items[2].status, ENGINE_STATUS_HELD);
        teardown_engine(f);
    }
}

/* Unbounded: every request that could still be served waits; bounded: LINE_FULL past the
 * tickets that could return. SOLD_OUT only when capacity - sold is below the quantity. */
static void test_line_policies(void **state)
{
    (void)state;
    for (uint8_t policy = ENGINE_LINE_BOUNDED; policy <= ENGINE_LINE_UNBOUNDED; policy++) {
        struct fixture *f = fixture_new(64, 64);
        create_event_with_policy(f, 2, 0, 1, 5000, policy);
        purchase(f, 1, "c1", "a", 1);
        purchase(f, 2, "c2", "a", 1);
        char customer[8];
        for (uint64_t id = 3; id <= 12; id++) {
            snprintf(customer, sizeof(customer), "c%llu", (unsigned long long)id);
            const struct engine_outcome *o = purchase(f, id, customer, "a", 1);
            bool is_kept = policy == ENGINE_LINE_UNBOUNDED || id <= 4;
            assert_int_equal(o->status, is_kept ? ENGINE_STATUS_WAITING : ENGINE_STATUS_REJECTED);
            if (!is_kept)
                assert_int_equal(o->reason, ENGINE_REASON_LINE_FULL);
        }
        /* Every hold expires unpaid, twice over: the tickets go down the line. */
        tick(f, 1000 + 5000);
        assert_int_equal(status_of(f, 3), ENGINE_STATUS_HELD);
        assert_int_equal(status_of(f, 4), ENGINE_STATUS_HELD);
        tick(f, 1000 + 10000);
        if (policy == ENGINE_LINE_UNBOUNDED) {
            assert_int_equal(status_of(f, 5), ENGINE_STATUS_HELD);
            assert_int_equal(status_of(f, 6), ENGINE_STATUS_HELD);
            confirm(f, 5, "p5");
            confirm(f, 6, "p6");
            /* Sold out for real: the rest of the line is told so, and newcomers too. */
            assert_int_equal(counts(f, 0).sold, 2);
            assert_int_equal(status_of(f, 12), ENGINE_STATUS_REJECTED);
            assert_int_equal(purchase(f, 13, "c13", "a", 1)->reason, ENGINE_REASON_SOLD_OUT);
        } else {
            assert_int_equal(counts(f, 0).available, 2); /* nobody left to serve */
            assert_int_equal(counts(f, 0).available_again_at_ms, 1000 + 10000);
        }
        teardown_engine(f);
    }
}

/* The unbounded line after a confirm: only what can never be served is SOLD_OUT. */
static void test_unbounded_sweep_rejects_only_the_impossible(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event_with_policy(f, 3, 0, 3, 5000, ENGINE_LINE_UNBOUNDED);
    purchase(f, 1, "c1", "a", 2);
    assert_int_equal(purchase(f, 2, "c2", "a", 3)->status, ENGINE_STATUS_WAITING);
    assert_int_equal(purchase(f, 3, "c3", "a", 1)->status, ENGINE_STATUS_WAITING);
    assert_int_equal(purchase(f, 4, "c4", "a", 2)->status, ENGINE_STATUS_WAITING);
    confirm(f, 1, "pay"); /* capacity - sold = 1 */
    assert_int_equal(f->out.count, 4);
    assert_int_equal(f->out.items[1].purchase_id, 2);
    assert_int_equal(f->out.items[1].reason, ENGINE_REASON_SOLD_OUT);
    assert_int_equal(f->out.items[2].purchase_id, 4);
    assert_int_equal(f->out.items[2].reason, ENGINE_REASON_SOLD_OUT);
    assert_int_equal(f->out.items[3].purchase_id, 3); /* now the head, and it fits */
    assert_int_equal(f->out.items[3].status, ENGINE_STATUS_HELD);
    teardown_engine(f);
}

/* A waiting buyer leaves: the line closes up and a smaller request behind may be served. */
static void test_leaving_the_line(void **state)
{
    (void)state;
    for (uint8_t policy = ENGINE_LINE_BOUNDED; policy <= ENGINE_LINE_UNBOUNDED; policy++) {
        struct fixture *f = fixture_new(64, 64);
        create_event_with_policy(f, 4, 0, 4, 5000, policy);
        purchase(f, 1, "c1", "a", 3);
        assert_int_equal(purchase(f, 2, "c2", "a", 2)->status, ENGINE_STATUS_WAITING);
        assert_int_equal(purchase(f, 3, "c3", "a", 1)->status, ENGINE_STATUS_WAITING);
        assert_int_equal(cancel(f, 3, "c2")->reason, ENGINE_REASON_NOT_OWNER);
        const struct engine_outcome *o = cancel(f, 2, "c2");
        assert_int_equal(o->result, ENGINE_RESULT_OK);
        assert_int_equal(o->status, ENGINE_STATUS_CANCELLED);
        assert_int_equal(f->out.count, 2);
        assert_int_equal(f->out.items[1].purchase_id, 3);
        assert_int_equal(f->out.items[1].status, ENGINE_STATUS_HELD);
        struct engine_category_counts c = counts(f, 0);
        assert_int_equal(c.waiting_count, 0);
        assert_int_equal(c.returned, 0); /* nobody held c2's tickets: none returned */
        /* c2 may buy again: its waiting tickets no longer count against the limit. */
        assert_int_equal(purchase(f, 4, "c2", "a", 4)->status, ENGINE_STATUS_WAITING);
        assert_int_equal(cancel(f, 2, "c2")->result, ENGINE_RESULT_REPEATED);
        teardown_engine(f);
    }
}

/* A payment after the hold expired: refund due, recorded once, never a ticket. */
static void test_late_payment_is_refund_due(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event(f, 1, 0, 4, 5000);
    purchase(f, 1, "c1", "a", 1);
    tick(f, 1000 + 5000);
    assert_int_equal(counts(f, 0).available_again_at_ms, 1000 + 5000);
    assert_int_equal(counts(f, 0).returned, 1);
    purchase(f, 2, "c2", "a", 1); /* the returned ticket is someone else's now */
    const struct engine_outcome *o = confirm(f, 1, "late");
    assert_int_equal(o->result, ENGINE_RESULT_OK);
    assert_int_equal(o->status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(o->reason, ENGINE_REASON_REFUND_DUE);
    assert_int_equal(o->ticket_count, 0);
    assert_int_equal(f->out.count, 1);
    struct engine_purchase_view view;
    assert_int_equal(engine_purchase(f->engine, 1, &view), 0);
    assert_true(view.is_refund_due);
    assert_int_equal(view.status, ENGINE_STATUS_EXPIRED);
    o = confirm(f, 1, "late");
    assert_int_equal(o->result, ENGINE_RESULT_REPEATED);
    assert_int_equal(o->reason, ENGINE_REASON_REFUND_DUE);
    o = confirm(f, 1, "other");
    assert_int_equal(o->result, ENGINE_RESULT_CONFLICT);
    assert_int_equal(o->reason, ENGINE_REASON_REFUND_DUE);
    struct engine_category_counts c = counts(f, 0);
    assert_int_equal(c.sold, 0);
    assert_int_equal(c.held, 1);
    /* The refund survives a snapshot. */
    static uint8_t buffer[16384];
    size_t length = 0;
    assert_int_equal(engine_snapshot_write(f->engine, buffer, sizeof(buffer), &length), 0);
    struct engine *copy;
    struct engine_config config = {.purchases_max = 64, .customers_max = 64};
    assert_int_equal(engine_new(&config, &copy), 0);
    assert_int_equal(engine_snapshot_read(copy, buffer, length), 0);
    assert_int_equal(engine_purchase(copy, 1, &view), 0);
    assert_true(view.is_refund_due);
    struct engine_category_counts restored;
    engine_category_counts(copy, 0, &restored);
    assert_memory_equal(&restored, &c, sizeof(c));
    engine_free(copy);
    teardown_engine(f);
}

/* "Available again" is stamped only when returned tickets are left with nobody waiting. */
static void test_available_again_at(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(64, 64);
    create_event_with_policy(f, 2, 0, 4, 5000, ENGINE_LINE_UNBOUNDED);
    purchase(f, 1, "c1", "a", 2);
    purchase(f, 2, "c2", "a", 1); /* waits */
    tick(f, 1000 + 5000);         /* c2 takes one, one left with an empty line */
    assert_int_equal(status_of(f, 2), ENGINE_STATUS_HELD);
    assert_int_equal(counts(f, 0).available_again_at_ms, 1000 + 5000);
    purchase(f, 3, "c3", "a", 1); /* takes the last available */
    purchase(f, 4, "c4", "a", 1); /* waits */
    f->now_ms = 7000;
    cancel(f, 3, "c3"); /* goes to c4: nothing available again */
    assert_int_equal(status_of(f, 4), ENGINE_STATUS_HELD);
    assert_int_equal(counts(f, 0).available_again_at_ms, 1000 + 5000);
    f->now_ms = 8000;
    cancel(f, 4, "c4");
    assert_int_equal(counts(f, 0).available_again_at_ms, 8000);
    assert_int_equal(counts(f, 0).returned, 4);
    teardown_engine(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_then_line_full_then_sold_out),
        cmocka_unit_test(test_mixed_quantities_smaller_request_waits_its_turn),
        cmocka_unit_test(test_line_policies),
        cmocka_unit_test(test_unbounded_sweep_rejects_only_the_impossible),
        cmocka_unit_test(test_leaving_the_line),
        cmocka_unit_test(test_late_payment_is_refund_due),
        cmocka_unit_test(test_available_again_at),
        cmocka_unit_test(test_quantity_larger_than_capacity),
        cmocka_unit_test(test_expiry_at_exactly_expires_at),
        cmocka_unit_test(test_confirm_racing_expiry_same_millisecond),
        cmocka_unit_test(test_waiting_four_behind_one),
        cmocka_unit_test(test_strict_order_head_blocks),
        cmocka_unit_test(test_confirm_rejects_impossible_waiters),
        cmocka_unit_test(test_sweep_keeps_small_request_behind_rejected_big_one),
        cmocka_unit_test(test_sweep_then_serve_the_new_head),
        cmocka_unit_test(test_per_customer_limit),
        cmocka_unit_test(test_duplicate_purchase_repeats),
        cmocka_unit_test(test_confirm_answers),
        cmocka_unit_test(test_cancel_answers),
        cmocka_unit_test(test_sale_states),
        cmocka_unit_test(test_create_event_repeat_and_conflict),
        cmocka_unit_test(test_invalid_event_spec),
        cmocka_unit_test(test_pool_exhaustion),
        cmocka_unit_test(test_time_never_goes_backwards),
        cmocka_unit_test(test_expiry_order_and_outcome_order),
        cmocka_unit_test(test_expiry_ties_across_categories_go_by_slot),
        cmocka_unit_test(test_next_expiry_skips_confirmed_and_cancelled),
        cmocka_unit_test(test_snapshot_with_holds_out_of_order_is_refused),
        cmocka_unit_test(test_apply_batch_refuses_bad_batches_whole),
        cmocka_unit_test(test_apply_batch_names_each_outcomes_command),
        cmocka_unit_test(test_snapshot_round_trip_and_rejects_garbage),
        cmocka_unit_test(test_snapshot_formats_1_and_2_still_read),
        cmocka_unit_test(test_ticket_code_format),
        cmocka_unit_test(test_siphash_reference_vector),
        cmocka_unit_test(test_siphash_bounded_string),
        cmocka_unit_test(test_category_ids_of_every_length),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
