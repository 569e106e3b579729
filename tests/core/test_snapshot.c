/*
 * Snapshot -> restore -> continue gives the same outcomes as never stopping
 * (randomized; CATRACA_SEED=n reproduces), and a damaged snapshot is refused
 * cleanly or, if accepted, is a consistent state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/error.h"
#include "model.h"
#include "random_commands.h"

#define OUT_MAX 8192

struct collected {
    struct engine_outcome items[OUT_MAX];
    size_t count;
};

static void collect(void *context, const struct engine_outcome *outcome)
{
    struct collected *c = context;
    assert_true(c->count < OUT_MAX);
    c->items[c->count++] = *outcome;
}

static const struct engine_config config = {.purchases_max = 4096, .customers_max = 1024};

static struct engine *restored_copy(const struct engine *engine)
{
    size_t capacity = engine_snapshot_size(engine), length = 0;
    uint8_t *buffer = malloc(capacity);
    assert_non_null(buffer);
    assert_int_equal(engine_snapshot_write(engine, buffer, capacity, &length), 0);
    struct engine *copy = NULL;
    assert_int_equal(engine_new(&config, &copy), 0);
    assert_int_equal(engine_snapshot_read(copy, buffer, length), 0);
    assert_int_equal(engine_validate(copy), 0);
    free(buffer);
    return copy;
}

static void test_restore_then_continue_matches(void **state)
{
    (void)state;
    static struct collected a, b;
    uint64_t base = random_base_seed();
    printf("snapshot test: base seed %llu\n", (unsigned long long)base);
    size_t total = 0;
    for (uint64_t seed = base; seed < base + 300; seed++) {
        struct random_stream stream;
        random_stream_init(&stream, seed);
        struct engine *original = NULL, *copy = NULL;
        assert_int_equal(engine_new(&config, &original), 0);
        struct engine_sink sink_a = {.emit = collect, .context = &a};
        struct engine_sink sink_b = {.emit = collect, .context = &b};
        struct engine_command command;
        size_t length = 200 + random_below(&stream, 800);
        size_t cut = random_below(&stream, (uint32_t)length);
        for (size_t i = 0; i < length; i++) {
            if (i == 0)
                random_create_event(&stream, &command);
            else
                random_command(&stream, &command);
            if (i == cut)
                copy = restored_copy(original);
            a.count = b.count = 0;
            engine_apply(original, &command, &sink_a);
            if (copy == NULL)
                continue;
            engine_apply(copy, &command, &sink_b);
            assert_int_equal(a.count, b.count);
            if (a.count > 0 && memcmp(a.items, b.items, a.count * sizeof(a.items[0])) != 0)
                fail_msg("restored engine diverged (seed %llu, command %zu, cut %zu)",
                         (unsigned long long)seed, i, cut);
            total++;
        }
        assert_int_equal(engine_validate(copy), 0);
        engine_free(original);
        engine_free(copy);
    }
    printf("snapshot test: %zu commands compared after restore\n", total);
}

static void test_damaged_snapshots(void **state)
{
    (void)state;
    uint64_t seed = random_base_seed() ^ 0xdead;
    struct random_stream stream;
    random_stream_init(&stream, seed);
    struct engine *engine = NULL, *target = NULL;
    assert_int_equal(engine_new(&config, &engine), 0);
    assert_int_equal(engine_new(&config, &target), 0);
    static struct collected sink_out;
    struct engine_sink sink = {.emit = collect, .context = &sink_out};
    struct engine_command command;
    random_create_event(&stream, &command);
    engine_apply(engine, &command, &sink);
    for (int i = 0; i < 300; i++) {
        sink_out.count = 0;
        random_command(&stream, &command);
        engine_apply(engine, &command, &sink);
    }
    size_t capacity = engine_snapshot_size(engine), length = 0;
    uint8_t *buffer = malloc(capacity), *damaged = malloc(capacity);
    assert_int_equal(engine_snapshot_write(engine, buffer, capacity, &length), 0);
    assert_int_equal(engine_snapshot_write(engine, buffer, length - 1, &length), CATRACA_E_NOSPACE);
    assert_int_equal(engine_snapshot_write(engine, buffer, capacity, &length), 0);
    for (size_t cut = 0; cut < length; cut++)
        assert_true(engine_snapshot_read(target, buffer, cut) < 0);
    for (int round = 0; round < 2000; round++) {
        memcpy(damaged, buffer, length);
        int flips = 1 + (int)random_below(&stream, 3);
        for (int f = 0; f < flips; f++)
            damaged[random_below(&stream, (uint32_t)length)] ^=
                (uint8_t)(1 + random_below(&stream, 255));
        if (engine_snapshot_read(target, damaged, length) == 0)
            assert_int_equal(engine_validate(target), 0);
        else
            assert_int_equal(engine_state(target), ENGINE_STATE_NONE);
    }
    buffer[4] = 3; /* a version from the future */
    assert_int_equal(engine_snapshot_read(target, buffer, length), CATRACA_E_VERSION);
    free(buffer);
    free(damaged);
    engine_free(engine);
    engine_free(target);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restore_then_continue_matches),
        cmocka_unit_test(test_damaged_snapshots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
