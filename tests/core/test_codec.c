/* The command and outcome codec: round trips, truncation, corruption (codec.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/codec.h"
#include "core/error.h"
#include "random_commands.h"

static void assert_round_trip(const struct engine_command *c)
{
    uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    struct engine_command back;
    assert_int_equal(codec_command_encode(c, buffer, sizeof(buffer), &length), 0);
    assert_int_equal(codec_command_decode(buffer, length, &back), 0);
    uint8_t again[CATRACA_COMMAND_ENCODED_MAX];
    size_t again_length = 0;
    assert_int_equal(codec_command_encode(&back, again, sizeof(again), &again_length), 0);
    assert_int_equal(length, again_length);
    assert_memory_equal(buffer, again, length);
    assert_int_equal(back.type, c->type);
    assert_true(back.now_ms == c->now_ms);
    /* Every truncation is refused without reading past the end (ASan watches). */
    for (size_t cut = 0; cut < length; cut++) {
        uint8_t *exact = malloc(cut ? cut : 1);
        memcpy(exact, buffer, cut);
        assert_int_equal(codec_command_decode(exact, cut, &back), CATRACA_E_TRUNCATED);
        assert_int_equal(back.type, 0);
        free(exact);
    }
    buffer[length] = 0;
    assert_int_equal(codec_command_decode(buffer, length + 1, &back), CATRACA_E_CORRUPT);
    assert_int_equal(codec_command_encode(c, buffer, length - 1, &again_length), CATRACA_E_NOSPACE);
}

static void test_largest_create_event(void **state)
{
    (void)state;
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 123456789};
    struct engine_event_spec *s = &c.u.create_event;
    memset(s->id, 'e', CATRACA_ID_MAX);
    memset(s->name, 'n', CATRACA_NAME_MAX);
    s->hold_ms = 600000;
    s->per_customer_limit = 4;
    s->state = ENGINE_STATE_PAUSED;
    s->category_count = CATRACA_CATEGORIES_MAX;
    memset(s->secret, 0xab, sizeof(s->secret));
    for (int i = 0; i < CATRACA_CATEGORIES_MAX; i++) {
        memset(s->categories[i].id, 'a' + i, CATRACA_ID_MAX);
        memset(s->categories[i].name, 'N', CATRACA_NAME_MAX);
        s->categories[i].capacity = CATRACA_CAPACITY_MAX;
        s->categories[i].price_cents = 149500;
    }
    assert_round_trip(&c);
    s->category_count = 0;
    uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length;
    assert_int_equal(codec_command_encode(&c, buffer, sizeof(buffer), &length), CATRACA_E_INVALID);
}

static void test_random_commands_round_trip(void **state)
{
    (void)state;
    uint64_t seed = random_base_seed();
    printf("codec test: seed %llu\n", (unsigned long long)seed);
    struct random_stream stream;
    random_stream_init(&stream, seed);
    struct engine_command c;
    random_create_event(&stream, &c);
    assert_round_trip(&c);
    for (int i = 0; i < 3000; i++) {
        random_command(&stream, &c);
        assert_round_trip(&c);
    }
}

static void test_corrupt_commands(void **state)
{
    (void)state;
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = 5};
    c.u.purchase.purchase_id = 77;
    strcpy(c.u.purchase.customer, "c42");
    strcpy(c.u.purchase.category, "pista");
    c.u.purchase.quantity = 2;
    uint8_t buffer[256];
    size_t length = 0;
    assert_int_equal(codec_command_encode(&c, buffer, sizeof(buffer), &length), 0);
    struct engine_command back;
    uint8_t copy[256];
    memcpy(copy, buffer, length);
    copy[0] = 2;
    assert_int_equal(codec_command_decode(copy, length, &back), CATRACA_E_VERSION);
    memcpy(copy, buffer, length);
    copy[1] = 99;
    assert_int_equal(codec_command_decode(copy, length, &back), CATRACA_E_CORRUPT);
    memcpy(copy, buffer, length);
    copy[2 + 8 + 8 + 1] = '\0'; /* NUL inside the customer string */
    assert_int_equal(codec_command_decode(copy, length, &back), CATRACA_E_CORRUPT);
    memcpy(copy, buffer, length);
    copy[2 + 8 + 8] = 200; /* string length beyond the limit */
    assert_int_equal(codec_command_decode(copy, length, &back), CATRACA_E_CORRUPT);
    memset(c.u.purchase.customer, 'x', sizeof(c.u.purchase.customer)); /* unterminated */
    assert_int_equal(codec_command_encode(&c, buffer, sizeof(buffer), &length), CATRACA_E_INVALID);
    c.type = 42;
    assert_int_equal(codec_command_encode(&c, buffer, sizeof(buffer), &length), CATRACA_E_INVALID);
}

static void test_bad_category_count(void **state)
{
    (void)state;
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT};
    strcpy(c.u.create_event.id, "ev");
    c.u.create_event.category_count = 1;
    c.u.create_event.state = ENGINE_STATE_OPEN;
    strcpy(c.u.create_event.categories[0].id, "a");
    uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    assert_int_equal(codec_command_encode(&c, buffer, sizeof(buffer), &length), 0);
    /* version, type, now(8), id(1+2), name(1), hold(8), limit(4), state(1), count */
    size_t count_at = 2 + 8 + 3 + 1 + 8 + 4 + 1;
    struct engine_command back;
    buffer[count_at] = 0;
    assert_int_equal(codec_command_decode(buffer, length, &back), CATRACA_E_CORRUPT);
    buffer[count_at] = 17;
    assert_true(codec_command_decode(buffer, length, &back) < 0);
}

static void test_outcome_round_trip(void **state)
{
    (void)state;
    struct engine_outcome o = {.purchase_id = 9,
                               .customer_key = 0x1234567890abcdefULL,
                               .hold_expires_at_ms = 77,
                               .position = 3,
                               .quantity = 10,
                               .category = 2,
                               .type = ENGINE_OUTCOME_CONFIRM,
                               .status = ENGINE_STATUS_CONFIRMED,
                               .result = ENGINE_RESULT_OK,
                               .event_state = ENGINE_STATE_OPEN,
                               .ticket_count = 10};
    for (int i = 0; i < 10; i++)
        o.ticket_codes[i] = 0x1111111111111111ULL * (uint64_t)i;
    uint8_t buffer[CATRACA_OUTCOME_ENCODED_MAX];
    size_t length = 0;
    struct engine_outcome back;
    assert_int_equal(codec_outcome_encode(&o, buffer, sizeof(buffer), &length), 0);
    assert_int_equal(codec_outcome_decode(buffer, length, &back), 0);
    assert_memory_equal(&o, &back, sizeof(o));
    for (size_t cut = 0; cut < length; cut++)
        assert_int_equal(codec_outcome_decode(buffer, cut, &back), CATRACA_E_TRUNCATED);
    buffer[length - 8 * 10 - 1] = 11; /* ticket_count beyond the maximum */
    assert_int_equal(codec_outcome_decode(buffer, length, &back) < 0, 1);
    o.ticket_count = 11;
    assert_int_equal(codec_outcome_encode(&o, buffer, sizeof(buffer), &length), CATRACA_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_largest_create_event),
        cmocka_unit_test(test_random_commands_round_trip),
        cmocka_unit_test(test_corrupt_commands),
        cmocka_unit_test(test_bad_category_count),
        cmocka_unit_test(test_outcome_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
