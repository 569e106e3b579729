/*
 * The command and outcome codec (codec.h): round trips field by field, the exact v1 bytes,
 * every truncation and every short output buffer, corrupt records, and seeded random records
 * and mutations. Records are decoded from heap copies of their exact size and encoded into
 * buffers of the exact capacity, so ASan (make test) sees any access past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/codec.h"
#include "core/error.h"
#include "random_commands.h"

/* ---- comparing --------------------------------------------------------------------------- */

static void assert_spec_equal(const struct engine_event_spec *a, const struct engine_event_spec *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_true(a->hold_ms == b->hold_ms);
    assert_int_equal(a->per_customer_limit, b->per_customer_limit);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->category_count, b->category_count);
    assert_memory_equal(a->secret, b->secret, sizeof(a->secret));
    assert_int_equal(a->line_policy, b->line_policy);
    assert_true(a->opens_at_ms == b->opens_at_ms && a->prequeue_ms == b->prequeue_ms);
    for (uint32_t i = 0; i < a->category_count; i++) {
        assert_string_equal(a->categories[i].id, b->categories[i].id);
        assert_string_equal(a->categories[i].name, b->categories[i].name);
        assert_true(a->categories[i].price_cents == b->categories[i].price_cents);
        assert_int_equal(a->categories[i].capacity, b->categories[i].capacity);
    }
}

/* `back` was decoded from the encoding of `c`. */
static void assert_command_equal(const struct engine_command *c, const struct engine_command *back)
{
    assert_int_equal(back->type, c->type);
    assert_true(back->now_ms == c->now_ms);
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT: {
        assert_spec_equal(&c->u.create_event, &back->u.create_event);
        static const struct engine_category_spec zero;
        for (uint32_t i = c->u.create_event.category_count; i < CATRACA_CATEGORIES_MAX; i++)
            assert_memory_equal(&back->u.create_event.categories[i], &zero, sizeof(zero));
        break;
    }
    case ENGINE_COMMAND_SET_STATE:
        assert_int_equal(back->u.set_state.state, c->u.set_state.state);
        break;
    case ENGINE_COMMAND_PURCHASE:
        assert_true(back->u.purchase.purchase_id == c->u.purchase.purchase_id);
        assert_string_equal(back->u.purchase.customer, c->u.purchase.customer);
        assert_string_equal(back->u.purchase.category, c->u.purchase.category);
        assert_int_equal(back->u.purchase.quantity, c->u.purchase.quantity);
        break;
    case ENGINE_COMMAND_CONFIRM:
        assert_true(back->u.confirm.purchase_id == c->u.confirm.purchase_id);
        assert_string_equal(back->u.confirm.payment_ref, c->u.confirm.payment_ref);
        break;
    case ENGINE_COMMAND_CANCEL:
        assert_true(back->u.cancel.purchase_id == c->u.cancel.purchase_id);
        assert_string_equal(back->u.cancel.customer, c->u.cancel.customer);
        break;
    case ENGINE_COMMAND_DRAW:
        assert_memory_equal(back->u.draw.seed, c->u.draw.seed, sizeof(c->u.draw.seed));
        break;
    default:
        assert_int_equal(c->type, ENGINE_COMMAND_TICK);
    }
}

static void assert_outcome_equal(const struct engine_outcome *o, const struct engine_outcome *back)
{
    assert_true(back->purchase_id == o->purchase_id);
    assert_true(back->customer_key == o->customer_key);
    assert_true(back->hold_expires_at_ms == o->hold_expires_at_ms);
    assert_int_equal(back->position, o->position);
    assert_int_equal(back->quantity, o->quantity);
    assert_int_equal(back->category, o->category);
    assert_int_equal(back->type, o->type);
    assert_int_equal(back->status, o->status);
    assert_int_equal(back->reason, o->reason);
    assert_int_equal(back->result, o->result);
    assert_int_equal(back->event_state, o->event_state);
    assert_int_equal(back->ticket_count, o->ticket_count);
    assert_memory_equal(back->ticket_codes, o->ticket_codes, 8u * o->ticket_count);
    for (uint32_t i = o->ticket_count; i < CATRACA_QUANTITY_MAX; i++)
        assert_true(back->ticket_codes[i] == 0);
}

/* ---- decoding and encoding with exact bounds ---------------------------------------------- */

static const struct engine_command zero_command;
static const struct engine_outcome zero_outcome;

/* Decodes a heap copy of exactly `length` bytes; on error *out must be all zeros. */
static int decode_command_exact(const uint8_t *record, size_t length, struct engine_command *out)
{
    uint8_t *exact = malloc(length ? length : 1);
    assert_non_null(exact);
    memcpy(exact, record, length);
    memset(out, 0xa5, sizeof(*out));
    int error = codec_command_decode(exact, length, out);
    /* codec_command_decode_fields: the same answer and the same fields of the type, whatever
     * *out held before (here 0x5a everywhere). */
    static struct engine_command fields;
    memset(&fields, 0x5a, sizeof(fields));
    assert_int_equal(codec_command_decode_fields(exact, length, &fields), error);
    free(exact);
    if (error != 0) {
        assert_memory_equal(out, &zero_command, sizeof(*out));
        assert_memory_equal(&fields, &zero_command, sizeof(fields));
    } else {
        assert_command_equal(out, &fields);
    }
    return error;
}

static int decode_outcome_exact(const uint8_t *record, size_t length, struct engine_outcome *out)
{
    uint8_t *exact = malloc(length ? length : 1);
    assert_non_null(exact);
    memcpy(exact, record, length);
    memset(out, 0xa5, sizeof(*out));
    int error = codec_outcome_decode(exact, length, out);
    free(exact);
    if (error != 0)
        assert_memory_equal(out, &zero_outcome, sizeof(*out));
    return error;
}

static int encode_command_exact(const struct engine_command *c, size_t capacity)
{
    uint8_t *buffer = malloc(capacity ? capacity : 1);
    assert_non_null(buffer);
    size_t length = 0;
    int error = codec_command_encode(c, buffer, capacity, &length);
    free(buffer);
    return error;
}

static int encode_outcome_exact(const struct engine_outcome *o, size_t capacity)
{
    uint8_t *buffer = malloc(capacity ? capacity : 1);
    assert_non_null(buffer);
    size_t length = 0;
    int error = codec_outcome_encode(o, buffer, capacity, &length);
    free(buffer);
    return error;
}

static size_t encode_command(const struct engine_command *c, uint8_t *buffer)
{
    size_t length = 0;
    assert_int_equal(codec_command_encode(c, buffer, CATRACA_COMMAND_ENCODED_MAX, &length), 0);
    assert_in_range(length, 10, CATRACA_COMMAND_ENCODED_MAX);
    return length;
}

static size_t encode_outcome(const struct engine_outcome *o, uint8_t *buffer)
{
    size_t length = 0;
    assert_int_equal(codec_outcome_encode(o, buffer, CATRACA_OUTCOME_ENCODED_MAX, &length), 0);
    assert_int_equal(length, 40 + 8u * o->ticket_count);
    return length;
}

/*
 * The whole contract for one valid command: it round-trips, the encoding is the only one (a
 * re-encode gives the same bytes), and with `is_thorough` every shorter input is TRUNCATED and
 * every smaller output buffer is NOSPACE. One trailing byte is always CORRUPT.
 */
static void check_command(const struct engine_command *c, bool is_thorough)
{
    static uint8_t record[CATRACA_COMMAND_ENCODED_MAX + 1], again[CATRACA_COMMAND_ENCODED_MAX];
    static struct engine_command back;
    size_t length = encode_command(c, record);
    assert_int_equal(decode_command_exact(record, length, &back), 0);
    assert_command_equal(c, &back);
    assert_int_equal(encode_command(&back, again), length);
    assert_memory_equal(record, again, length);
    record[length] = 0;
    assert_int_equal(decode_command_exact(record, length + 1, &back), CATRACA_E_CORRUPT);
    assert_int_equal(encode_command_exact(c, length), 0);
    assert_int_equal(encode_command_exact(c, length - 1), CATRACA_E_NOSPACE);
    for (size_t cut = 0; is_thorough && cut < length; cut++) {
        assert_int_equal(decode_command_exact(record, cut, &back), CATRACA_E_TRUNCATED);
        assert_int_equal(encode_command_exact(c, cut), CATRACA_E_NOSPACE);
    }
}

static void check_outcome(const struct engine_outcome *o)
{
    uint8_t record[CATRACA_OUTCOME_ENCODED_MAX + 1], again[CATRACA_OUTCOME_ENCODED_MAX];
    struct engine_outcome back;
    size_t length = encode_outcome(o, record);
    assert_int_equal(decode_outcome_exact(record, length, &back), 0);
    assert_outcome_equal(o, &back);
    assert_int_equal(encode_outcome(&back, again), length);
    assert_memory_equal(record, again, length);
    record[length] = 0;
    assert_int_equal(decode_outcome_exact(record, length + 1, &back), CATRACA_E_CORRUPT);
    assert_int_equal(encode_outcome_exact(o, length), 0);
    for (size_t cut = 0; cut < length; cut++) {
        assert_int_equal(decode_outcome_exact(record, cut, &back), CATRACA_E_TRUNCATED);
        assert_int_equal(encode_outcome_exact(o, cut), CATRACA_E_NOSPACE);
    }
}

/* ---- fixed records ----------------------------------------------------------------------- */

static void fill(char *s, char c, size_t length)
{
    memset(s, c, length);
    s[length] = '\0';
}

/* The largest event the format carries: every string at its limit, 16 categories. */
static void largest_create_event(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_CREATE_EVENT;
    c->now_ms = INT64_MAX;
    struct engine_event_spec *s = &c->u.create_event;
    fill(s->id, 'e', CATRACA_ID_MAX);
    fill(s->name, 'n', CATRACA_NAME_MAX);
    s->hold_ms = CATRACA_HOLD_MS_MAX;
    s->per_customer_limit = CATRACA_QUANTITY_MAX;
    s->state = ENGINE_STATE_CLOSED;
    s->category_count = CATRACA_CATEGORIES_MAX;
    s->line_policy = ENGINE_LINE_UNBOUNDED;
    s->opens_at_ms = INT64_MAX; /* the codec carries any schedule; the engine judges it */
    s->prequeue_ms = CATRACA_PREQUEUE_MS_MAX;
    memset(s->secret, 0xab, sizeof(s->secret));
    for (int i = 0; i < CATRACA_CATEGORIES_MAX; i++) {
        fill(s->categories[i].id, (char)('a' + i), CATRACA_ID_MAX);
        fill(s->categories[i].name, (char)('A' + i), CATRACA_NAME_MAX);
        s->categories[i].capacity = CATRACA_CAPACITY_MAX;
        s->categories[i].price_cents = INT64_MAX - i;
    }
}

static void small_create_event(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_CREATE_EVENT;
    c->now_ms = 1;
    strcpy(c->u.create_event.id, "ev");
    c->u.create_event.hold_ms = 60000;
    c->u.create_event.per_customer_limit = 4;
    c->u.create_event.state = ENGINE_STATE_OPEN;
    c->u.create_event.category_count = 1;
    strcpy(c->u.create_event.categories[0].id, "a");
    c->u.create_event.categories[0].capacity = 10;
}

static void max_purchase(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_PURCHASE;
    c->now_ms = INT64_MIN;
    c->u.purchase.purchase_id = UINT64_MAX;
    fill(c->u.purchase.customer, 'c', CATRACA_ID_MAX);
    fill(c->u.purchase.category, 'k', CATRACA_ID_MAX);
    c->u.purchase.quantity = UINT32_MAX;
}

static void max_confirm(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_CONFIRM;
    c->now_ms = -1;
    c->u.confirm.purchase_id = 1;
    fill(c->u.confirm.payment_ref, 'p', CATRACA_ID_MAX);
}

static void max_outcome(struct engine_outcome *o)
{
    *o = (struct engine_outcome){.purchase_id = UINT64_MAX,
                                 .customer_key = 0x1234567890abcdefULL,
                                 .hold_expires_at_ms = INT64_MIN,
                                 .position = UINT32_MAX,
                                 .quantity = CATRACA_QUANTITY_MAX,
                                 .category = CATRACA_CATEGORIES_MAX - 1,
                                 .type = ENGINE_OUTCOME_CONFIRM,
                                 .status = ENGINE_STATUS_CONFIRMED,
                                 .reason = ENGINE_REASON_INVALID_EVENT,
                                 .result = ENGINE_RESULT_CONFLICT,
                                 .event_state = ENGINE_STATE_CLOSED,
                                 .ticket_count = CATRACA_QUANTITY_MAX};
    for (int i = 0; i < CATRACA_QUANTITY_MAX; i++)
        o->ticket_codes[i] = UINT64_C(0x1111111111111111) * (uint64_t)(i + 1);
}

static void test_every_command_type(void **state)
{
    (void)state;
    struct engine_command c;
    small_create_event(&c);
    check_command(&c, true);
    largest_create_event(&c);
    check_command(&c, true);
    assert_int_equal(encode_command(&c, (uint8_t[CATRACA_COMMAND_ENCODED_MAX]){0}),
                     10 + 1 + 64 + 1 + 128 + 8 + 4 + 1 + 1 + 16 + 16 * (1 + 64 + 1 + 128 + 8 + 4) +
                         1 + 16); /* the line policy, the schedule */
    max_purchase(&c);
    check_command(&c, true);
    c.u.purchase.customer[0] = c.u.purchase.category[0] = '\0'; /* empty strings travel too */
    c.u.purchase.quantity = 0;
    check_command(&c, true);
    max_confirm(&c);
    check_command(&c, true);
    c = (struct engine_command){.type = ENGINE_COMMAND_CANCEL, .now_ms = 7};
    c.u.cancel.purchase_id = 42;
    fill(c.u.cancel.customer, 'z', CATRACA_ID_MAX);
    check_command(&c, true);
    for (unsigned s = 0; s < 256; s += 85) { /* SET_STATE carries any state: the engine answers */
        c = (struct engine_command){.type = ENGINE_COMMAND_SET_STATE, .now_ms = 8};
        c.u.set_state.state = (uint8_t)s;
        check_command(&c, true);
    }
    c = (struct engine_command){.type = ENGINE_COMMAND_TICK, .now_ms = 9};
    check_command(&c, true);
}

static void test_every_outcome_type(void **state)
{
    (void)state;
    struct engine_outcome o;
    max_outcome(&o);
    check_outcome(&o);
    for (uint8_t type = ENGINE_OUTCOME_PURCHASE; type <= ENGINE_OUTCOME_EVENT; type++) {
        o = (struct engine_outcome){.type = type, .purchase_id = type, .position = 2};
        check_outcome(&o);
        o.ticket_count = 1;
        o.ticket_codes[0] = UINT64_MAX;
        check_outcome(&o);
    }
}

/* Categories past category_count are neither written nor read back, whatever they hold. */
static void test_only_counted_categories_travel(void **state)
{
    (void)state;
    struct engine_command c;
    largest_create_event(&c);
    c.u.create_event.category_count = 3;
    memset(&c.u.create_event.categories[3], 0xff, 13 * sizeof(struct engine_category_spec));
    check_command(&c, true);
}

/* Format v3 pinned byte for byte: little-endian, declaration order, length-prefixed strings. */
static void test_exact_bytes(void **state)
{
    (void)state;
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = 0x0102030405060708};
    c.u.purchase.purchase_id = 0x1122334455667788ULL;
    strcpy(c.u.purchase.customer, "c1");
    strcpy(c.u.purchase.category, "a");
    c.u.purchase.quantity = 0x0a0b0c0d;
    /* clang-format off */
    static const uint8_t purchase[] = {
        3, 3,                                           /* version, type */
        8, 7, 6, 5, 4, 3, 2, 1,                         /* now_ms */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* purchase_id */
        2, 'c', '1',                                    /* customer */
        1, 'a',                                         /* category */
        0x0d, 0x0c, 0x0b, 0x0a,                         /* quantity */
    };
    /* clang-format on */
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    assert_int_equal(encode_command(&c, record), sizeof(purchase));
    assert_memory_equal(record, purchase, sizeof(purchase));

    struct engine_outcome o = {.purchase_id = 1,
                               .customer_key = 2,
                               .hold_expires_at_ms = 3,
                               .position = 4,
                               .quantity = 5,
                               .category = 6,
                               .type = ENGINE_OUTCOME_PURCHASE,
                               .status = ENGINE_STATUS_HELD,
                               .reason = ENGINE_REASON_NONE,
                               .result = ENGINE_RESULT_REPEATED,
                               .event_state = ENGINE_STATE_PAUSED,
                               .ticket_count = 1,
                               .ticket_codes = {0xff}};
    /* clang-format off */
    static const uint8_t outcome[] = {
        3, 1,                   /* version, type */
        1, 0, 0, 0, 0, 0, 0, 0, /* purchase_id */
        2, 0, 0, 0, 0, 0, 0, 0, /* customer_key */
        3, 0, 0, 0, 0, 0, 0, 0, /* hold_expires_at_ms */
        4, 0, 0, 0,             /* position */
        5, 0, 0, 0,             /* quantity */
        6, 2, 0, 1, 2,          /* category, status, reason, result, event_state */
        1,                      /* ticket_count */
        0xff, 0, 0, 0, 0, 0, 0, 0,
    };
    /* clang-format on */
    assert_int_equal(encode_outcome(&o, record), sizeof(outcome));
    assert_memory_equal(record, outcome, sizeof(outcome));
}

/* ---- corrupt records --------------------------------------------------------------------- */

static void expect_command(const uint8_t *record, size_t length, int error)
{
    struct engine_command back;
    assert_int_equal(decode_command_exact(record, length, &back), error);
}

static void expect_outcome(const uint8_t *record, size_t length, int error)
{
    struct engine_outcome back;
    assert_int_equal(decode_outcome_exact(record, length, &back), error);
}

/* A copy of the record with byte `at` set to `value`, decoded. */
static void expect_patched(const uint8_t *record, size_t length, size_t at, uint8_t value,
                           int error, bool is_outcome)
{
    uint8_t copy[CATRACA_COMMAND_ENCODED_MAX];
    memcpy(copy, record, length);
    copy[at] = value;
    if (is_outcome)
        expect_outcome(copy, length, error);
    else
        expect_command(copy, length, error);
}

/* The string whose length byte is at `at` made one byte longer than it is. */
static void expect_longer_string(const uint8_t *record, size_t length, size_t at, int error)
{
    uint8_t copy[CATRACA_COMMAND_ENCODED_MAX + 1];
    size_t end = at + 1 + record[at];
    memcpy(copy, record, end);
    copy[at]++;
    copy[end] = 'x';
    memcpy(copy + end + 1, record + end, length - end);
    expect_command(copy, length + 1, error);
}

static void test_bad_version_and_type(void **state)
{
    (void)state;
    struct engine_command c;
    max_purchase(&c);
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = encode_command(&c, record);
    static const uint8_t versions[] = {0, CODEC_VERSION + 1, 255},
                         types[] = {0, ENGINE_COMMAND_LAST + 1, 255};
    for (size_t i = 0; i < sizeof(versions); i++) {
        expect_patched(record, length, 0, versions[i], CATRACA_E_VERSION, false);
        expect_patched(record, 1, 0, versions[i], CATRACA_E_VERSION, false);
        expect_patched(record, length, 1, types[i], CATRACA_E_CORRUPT, false);
    }
    struct engine_outcome o;
    max_outcome(&o);
    length = encode_outcome(&o, record);
    for (size_t i = 0; i < sizeof(versions); i++)
        expect_patched(record, length, 0, versions[i], CATRACA_E_VERSION, true);
    expect_patched(record, length, 1, 0, CATRACA_E_CORRUPT, true);
    expect_patched(record, length, 1, ENGINE_OUTCOME_EVENT + 1, CATRACA_E_CORRUPT, true);
}

/*
 * Older records still decode (logs outlive binaries): format 2 (before schedules) reads as not
 * scheduled, format 1 (before the line policy too) as BOUNDED. A CREATE_EVENT's spec ends with
 * the policy byte, then opens_at_ms and prequeue_ms (8 bytes each, always written in format 3).
 */
static void test_older_versions_still_read(void **state)
{
    (void)state;
    struct engine_command c;
    small_create_event(&c);
    c.u.create_event.line_policy = ENGINE_LINE_UNBOUNDED;
    c.u.create_event.opens_at_ms = 0x0102030405060708;
    c.u.create_event.prequeue_ms = 0x1122334455;
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = encode_command(&c, record);
    assert_int_equal(record[0], 3);
    /* clang-format off */
    static const uint8_t tail[] = {
        ENGINE_LINE_UNBOUNDED,                          /* line policy */
        8, 7, 6, 5, 4, 3, 2, 1,                         /* opens_at_ms */
        0x55, 0x44, 0x33, 0x22, 0x11, 0, 0, 0,          /* prequeue_ms */
    };
    /* clang-format on */
    assert_memory_equal(record + length - sizeof(tail), tail, sizeof(tail));
    expect_patched(record, length, length - 17, ENGINE_LINE_UNBOUNDED + 1, CATRACA_E_CORRUPT,
                   false);
    struct engine_command back;
    record[0] = 2; /* format 2: the spec ends with the policy */
    assert_int_equal(decode_command_exact(record, length - 16, &back), 0);
    assert_int_equal(back.u.create_event.line_policy, ENGINE_LINE_UNBOUNDED);
    assert_int_equal(back.u.create_event.opens_at_ms, 0);
    assert_int_equal(back.u.create_event.prequeue_ms, 0);
    assert_string_equal(back.u.create_event.id, c.u.create_event.id);
    expect_command(record, length, CATRACA_E_CORRUPT); /* v2 has no schedule: 16 over */
    record[0] = 1;                                     /* format 1: not even the policy */
    assert_int_equal(decode_command_exact(record, length - 17, &back), 0);
    assert_int_equal(back.u.create_event.line_policy, ENGINE_LINE_BOUNDED);
    assert_int_equal(back.u.create_event.opens_at_ms, 0);
    assert_string_equal(back.u.create_event.id, c.u.create_event.id);
    expect_command(record, length - 16, CATRACA_E_CORRUPT); /* v1 has no policy byte: one over */
    max_purchase(&c);
    for (uint8_t version = 1; version <= 2; version++) {
        length = encode_command(&c, record);
        record[0] = version;
        assert_int_equal(decode_command_exact(record, length, &back), 0);
        assert_int_equal(back.u.purchase.quantity, c.u.purchase.quantity);
    }
}

static void test_bad_strings(void **state)
{
    (void)state;
    struct engine_command c;
    max_purchase(&c);
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = encode_command(&c, record);
    size_t customer_at = 2 + 8 + 8, category_at = customer_at + 1 + CATRACA_ID_MAX;
    expect_longer_string(record, length, customer_at, CATRACA_E_CORRUPT);
    expect_longer_string(record, length, category_at, CATRACA_E_CORRUPT);
    expect_patched(record, length, customer_at, 255, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, customer_at + 1, 0, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, customer_at + 30, 0, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, category_at + CATRACA_ID_MAX, 0, CATRACA_E_CORRUPT, false);

    largest_create_event(&c);
    length = encode_command(&c, record);
    size_t name_at = 2 + 8 + 1 + CATRACA_ID_MAX;
    expect_longer_string(record, length, name_at, CATRACA_E_CORRUPT);
    expect_patched(record, length, name_at + CATRACA_NAME_MAX, 0, CATRACA_E_CORRUPT, false);
    /* before it: the schedule, the policy, price and capacity */
    size_t last_name_at = length - 16 - 1 - 12 - 1 - CATRACA_NAME_MAX;
    expect_longer_string(record, length, last_name_at, CATRACA_E_CORRUPT);
    expect_patched(record, length, last_name_at + 5, 0, CATRACA_E_CORRUPT, false);
    /* A length byte one short shifts every later field and leaves a byte over. */
    expect_patched(record, length, last_name_at, CATRACA_NAME_MAX - 1, CATRACA_E_CORRUPT, false);
    max_confirm(&c);
    length = encode_command(&c, record);
    expect_patched(record, length, 18, CATRACA_ID_MAX - 1, CATRACA_E_CORRUPT, false);
    expect_command(record, length - 1, CATRACA_E_TRUNCATED);
}

static void test_bad_event_spec(void **state)
{
    (void)state;
    struct engine_command c;
    small_create_event(&c);
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = encode_command(&c, record);
    /* version, type, now(8), id(1+2), name(1), hold(8), limit(4), then state and count */
    size_t state_at = 2 + 8 + 3 + 1 + 8 + 4, count_at = state_at + 1;
    expect_patched(record, length, count_at, 0, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, count_at, CATRACA_CATEGORIES_MAX + 1, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, count_at, 255, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, count_at, 2, CATRACA_E_TRUNCATED, false);
    expect_patched(record, length, state_at, ENGINE_STATE_NONE, CATRACA_E_CORRUPT, false);
    expect_patched(record, length, state_at, ENGINE_STATE_CLOSED + 1, CATRACA_E_CORRUPT, false);

    c.u.create_event.category_count = 2;
    strcpy(c.u.create_event.categories[1].id, "b");
    length = encode_command(&c, record);
    expect_patched(record, length, count_at, 1, CATRACA_E_CORRUPT, false); /* trailing category */
}

static void test_bad_outcome_fields(void **state)
{
    (void)state;
    struct engine_outcome o;
    max_outcome(&o);
    uint8_t record[CATRACA_OUTCOME_ENCODED_MAX];
    size_t length = encode_outcome(&o, record);
    size_t status_at = 2 + 8 + 8 + 8 + 4 + 4 + 1;
    expect_patched(record, length, status_at, ENGINE_STATUS_LAST + 1, CATRACA_E_CORRUPT, true);
    expect_patched(record, length, status_at + 1, ENGINE_REASON_LAST + 1, CATRACA_E_CORRUPT, true);
    expect_patched(record, length, status_at + 2, ENGINE_RESULT_CONFLICT + 1, CATRACA_E_CORRUPT,
                   true);
    expect_patched(record, length, status_at + 3, ENGINE_STATE_CLOSED + 1, CATRACA_E_CORRUPT, true);
    expect_patched(record, length, status_at + 4, CATRACA_QUANTITY_MAX + 1, CATRACA_E_CORRUPT,
                   true);
    expect_patched(record, length, status_at + 4, CATRACA_QUANTITY_MAX - 1, CATRACA_E_CORRUPT,
                   true); /* one ticket code left over */
    expect_outcome(record, length - 1, CATRACA_E_TRUNCATED);
}

/* The encoders refuse exactly what the decoders would, so every logged record replays. */
static void test_encode_refuses_what_decode_would(void **state)
{
    (void)state;
    struct engine_command c;
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    max_purchase(&c);
    c.u.purchase.customer[CATRACA_ID_MAX] = 'c'; /* unterminated: 65 bytes */
    assert_int_equal(codec_command_encode(&c, record, sizeof(record), &length), CATRACA_E_INVALID);
    max_confirm(&c);
    c.u.confirm.payment_ref[CATRACA_ID_MAX] = 'p';
    assert_int_equal(codec_command_encode(&c, record, sizeof(record), &length), CATRACA_E_INVALID);
    static const uint8_t types[] = {0, ENGINE_COMMAND_LAST + 1, 255};
    for (size_t i = 0; i < sizeof(types); i++) {
        c.type = types[i];
        assert_int_equal(encode_command_exact(&c, sizeof(record)), CATRACA_E_INVALID);
    }
    static const uint8_t counts[] = {0, CATRACA_CATEGORIES_MAX + 1, 255};
    for (size_t i = 0; i < sizeof(counts); i++) {
        largest_create_event(&c);
        c.u.create_event.category_count = counts[i];
        assert_int_equal(encode_command_exact(&c, sizeof(record)), CATRACA_E_INVALID);
    }
    c.u.create_event.category_count = 1;
    c.u.create_event.state = ENGINE_STATE_NONE;
    assert_int_equal(encode_command_exact(&c, sizeof(record)), CATRACA_E_INVALID);
    c.u.create_event.state = ENGINE_STATE_CLOSED + 1;
    assert_int_equal(encode_command_exact(&c, sizeof(record)), CATRACA_E_INVALID);
    largest_create_event(&c);
    c.u.create_event.categories[15].name[CATRACA_NAME_MAX] = 'x';
    assert_int_equal(encode_command_exact(&c, sizeof(record)), CATRACA_E_INVALID);

    struct engine_outcome o;
    uint8_t *fields[] = {&o.type, &o.status, &o.reason, &o.result, &o.event_state, &o.ticket_count};
    static const uint8_t bad[] = {ENGINE_OUTCOME_EVENT + 1, ENGINE_STATUS_LAST + 1,
                                  ENGINE_REASON_LAST + 1,   ENGINE_RESULT_CONFLICT + 1,
                                  ENGINE_STATE_CLOSED + 1,  CATRACA_QUANTITY_MAX + 1};
    for (size_t i = 0; i < sizeof(bad); i++) {
        max_outcome(&o);
        *fields[i] = bad[i];
        assert_int_equal(encode_outcome_exact(&o, CATRACA_OUTCOME_ENCODED_MAX), CATRACA_E_INVALID);
    }
    max_outcome(&o);
    o.type = 0;
    assert_int_equal(encode_outcome_exact(&o, CATRACA_OUTCOME_ENCODED_MAX), CATRACA_E_INVALID);
}

/* ---- random records ---------------------------------------------------------------------- */

/* xorshift64*: the codec's own stream, every field over its whole range. */
static uint64_t xorshift_state;

static uint64_t xorshift(void)
{
    xorshift_state ^= xorshift_state >> 12;
    xorshift_state ^= xorshift_state << 25;
    xorshift_state ^= xorshift_state >> 27;
    return xorshift_state * 0x2545f4914f6cdd1dULL;
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(xorshift() >> 32) % n;
}

static uint64_t seed_codec_stream(const char *test)
{
    uint64_t seed = random_base_seed();
    printf("%s: seed %llu (CATRACA_SEED=%llu reproduces)\n", test, (unsigned long long)seed,
           (unsigned long long)seed);
    xorshift_state = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
    return seed;
}

/* Empty, full or in between; any byte but NUL. */
static void random_string(char *out, size_t limit)
{
    uint32_t pick = below(4);
    size_t length = pick == 0 ? 0 : pick == 1 ? limit : below((uint32_t)limit + 1);
    for (size_t i = 0; i < length; i++)
        out[i] = (char)(1 + below(255));
    out[length] = '\0';
}

static void random_spec(struct engine_event_spec *s)
{
    random_string(s->id, CATRACA_ID_MAX);
    random_string(s->name, CATRACA_NAME_MAX);
    s->hold_ms = (int64_t)xorshift();
    s->per_customer_limit = (uint32_t)xorshift();
    s->state = (uint8_t)(ENGINE_STATE_OPEN + below(3));
    s->category_count = (uint8_t)(1 + below(CATRACA_CATEGORIES_MAX));
    for (size_t i = 0; i < sizeof(s->secret); i++)
        s->secret[i] = (uint8_t)xorshift();
    for (uint32_t i = 0; i < CATRACA_CATEGORIES_MAX; i++) {
        struct engine_category_spec *k = &s->categories[i];
        if (i >= s->category_count) { /* garbage the encoder must not look at */
            memset(k, (int)(1 + below(255)), sizeof(*k));
            continue;
        }
        random_string(k->id, CATRACA_ID_MAX);
        random_string(k->name, CATRACA_NAME_MAX);
        k->price_cents = (int64_t)xorshift();
        k->capacity = (uint32_t)xorshift();
    }
}

static void random_codec_command(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = (uint8_t)(1 + below(ENGINE_COMMAND_TICK));
    c->now_ms = (int64_t)xorshift();
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        random_spec(&c->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        c->u.set_state.state = (uint8_t)xorshift();
        break;
    case ENGINE_COMMAND_PURCHASE:
        c->u.purchase.purchase_id = xorshift();
        random_string(c->u.purchase.customer, CATRACA_ID_MAX);
        random_string(c->u.purchase.category, CATRACA_ID_MAX);
        c->u.purchase.quantity = (uint32_t)xorshift();
        break;
    case ENGINE_COMMAND_CONFIRM:
        c->u.confirm.purchase_id = xorshift();
        random_string(c->u.confirm.payment_ref, CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_CANCEL:
        c->u.cancel.purchase_id = xorshift();
        random_string(c->u.cancel.customer, CATRACA_ID_MAX);
        break;
    default:
        break;
    }
}

static void random_codec_outcome(struct engine_outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->purchase_id = xorshift();
    o->customer_key = xorshift();
    o->hold_expires_at_ms = (int64_t)xorshift();
    o->position = (uint32_t)xorshift();
    o->quantity = (uint32_t)xorshift();
    o->category = (uint8_t)xorshift();
    o->type = (uint8_t)(ENGINE_OUTCOME_PURCHASE + below(ENGINE_OUTCOME_EVENT));
    o->status = (uint8_t)below(ENGINE_STATUS_LAST + 1);
    o->reason = (uint8_t)below(ENGINE_REASON_LAST + 1);
    o->result = (uint8_t)below(ENGINE_RESULT_CONFLICT + 1);
    o->event_state = (uint8_t)below(ENGINE_STATE_CLOSED + 1);
    o->ticket_count = (uint8_t)below(CATRACA_QUANTITY_MAX + 1);
    for (uint32_t i = 0; i < o->ticket_count; i++)
        o->ticket_codes[i] = xorshift();
}

static void test_random_round_trip(void **state)
{
    (void)state;
    seed_codec_stream("codec random round trip");
    struct engine_command c;
    for (int i = 0; i < 3000; i++) {
        random_codec_command(&c);
        check_command(&c, i % 25 == 0);
    }
    struct engine_outcome o;
    for (int i = 0; i < 300; i++) {
        random_codec_outcome(&o);
        check_outcome(&o);
    }
}

/* The engine-shaped streams of the model tests (invalid states, unknown ids) travel too. */
static void test_random_engine_stream_round_trip(void **state)
{
    (void)state;
    uint64_t seed = random_base_seed();
    printf("codec engine stream: seed %llu\n", (unsigned long long)seed);
    struct random_stream stream;
    random_stream_init(&stream, seed);
    struct engine_command c;
    random_create_event(&stream, &c);
    check_command(&c, true);
    for (int i = 0; i < 3000; i++) {
        random_command(&stream, &c);
        check_command(&c, false);
    }
}

/* A mutated record either fails with *out zeroed, or decodes to what re-encodes to it (a
 * format 1 or 2 record re-encodes as format 3: only its version byte differs, and a spec gains
 * at its end the policy byte (format 1) and the schedule's 16 bytes (formats 1 and 2)). */
static void check_mutant(uint8_t *record, size_t length)
{
    static struct engine_command command;
    static uint8_t again[CATRACA_COMMAND_ENCODED_MAX];
    size_t again_length = 0;
    int error = decode_command_exact(record, length, &command);
    if (error == 0) {
        assert_int_equal(codec_command_encode(&command, again, sizeof(again), &again_length), 0);
        size_t grown = record[0] == 1 ? 17 : record[0] == 2 ? 16 : 0;
        assert_int_equal(again_length,
                         length + (command.type == ENGINE_COMMAND_CREATE_EVENT ? grown : 0));
        assert_memory_equal(again + 1, record + 1, length - 1);
    } else {
        assert_true(error == CATRACA_E_TRUNCATED || error == CATRACA_E_VERSION ||
                    error == CATRACA_E_CORRUPT);
    }
    struct engine_outcome outcome;
    error = decode_outcome_exact(record, length, &outcome);
    if (error == 0) {
        assert_int_equal(codec_outcome_encode(&outcome, again, sizeof(again), &again_length), 0);
        assert_int_equal(again_length, length);
        assert_memory_equal(again + 1, record + 1, length - 1);
    }
}

static void test_random_mutations(void **state)
{
    (void)state;
    seed_codec_stream("codec random mutations");
    static uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    for (int i = 0; i < 20000; i++) {
        size_t length;
        if (below(4) == 0) {
            struct engine_outcome o;
            random_codec_outcome(&o);
            length = encode_outcome(&o, record);
        } else {
            struct engine_command c;
            random_codec_command(&c);
            length = encode_command(&c, record);
        }
        for (uint32_t flips = 1 + below(3); flips > 0; flips--) {
            uint8_t *at = &record[below((uint32_t)length)];
            *at = below(2) ? (uint8_t)xorshift() : (uint8_t)(below(2) ? *at + 1 : *at - 1);
        }
        check_mutant(record, below(8) == 0 ? below((uint32_t)length + 1) : length);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_command_type),
        cmocka_unit_test(test_every_outcome_type),
        cmocka_unit_test(test_only_counted_categories_travel),
        cmocka_unit_test(test_exact_bytes),
        cmocka_unit_test(test_older_versions_still_read),
        cmocka_unit_test(test_bad_version_and_type),
        cmocka_unit_test(test_bad_strings),
        cmocka_unit_test(test_bad_event_spec),
        cmocka_unit_test(test_bad_outcome_fields),
        cmocka_unit_test(test_encode_refuses_what_decode_would),
        cmocka_unit_test(test_random_round_trip),
        cmocka_unit_test(test_random_engine_stream_round_trip),
        cmocka_unit_test(test_random_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
