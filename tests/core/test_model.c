/*
 * The model-based randomized test (TigerBeetle's VOPR spirit): the engine
 * and the reference model (model.c) receive the same random command streams;
 * every outcome and every category counter must match after every command.
 *
 * A second engine gets the same stream through engine_apply_batch(), in batches
 * of random sizes: its outcomes must be byte for byte those of engine_apply().
 *
 * Prints its base seed; CATRACA_SEED=n reproduces a run and
 * CATRACA_MODEL_COMMANDS=n changes how many commands it checks (default 1 M).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "model.h"
#include "random_commands.h"

struct collected {
    struct engine_outcome items[MODEL_OUTCOMES_MAX];
    size_t count;
};

static void collect(void *context, const struct engine_outcome *outcome)
{
    struct collected *c = context;
    assert_true(c->count < MODEL_OUTCOMES_MAX);
    c->items[c->count++] = *outcome;
}

/* The outcomes of a batched engine, folded into one FNV-1a hash (compared per batch). */
struct folded {
    uint64_t hash;
    size_t count;
};

static void fold_bytes(struct folded *f, const void *bytes, size_t length)
{
    const uint8_t *b = bytes;
    for (size_t i = 0; i < length; i++)
        f->hash = (f->hash ^ b[i]) * 1099511628211ULL;
    f->count++;
}

static void fold(void *context, const struct engine_outcome *outcome)
{
    fold_bytes(context, outcome, sizeof(*outcome));
}

#define BATCH_MAX 24

static void print_outcome(const char *who, const struct engine_outcome *o)
{
    fprintf(stderr,
            "  %s: type %u purchase %llu status %u reason %u result %u category %u qty %u "
            "expires %lld position %u tickets %u state %u\n",
            who, o->type, (unsigned long long)o->purchase_id, o->status, o->reason, o->result,
            o->category, o->quantity, (long long)o->hold_expires_at_ms, o->position,
            o->ticket_count, o->event_state);
}

static void report_mismatch(uint64_t seed, size_t index, const struct engine_command *c,
                            const struct collected *engine_out, const struct model *model)
{
    fprintf(stderr, "MISMATCH seed %llu command %zu type %u now %lld\n", (unsigned long long)seed,
            index, c->type, (long long)c->now_ms);
    for (size_t i = 0; i < engine_out->count; i++)
        print_outcome("engine", &engine_out->items[i]);
    for (size_t i = 0; i < model->out_count; i++)
        print_outcome("model ", &model->out[i]);
}

/* Runs one stream; returns the number of commands checked. */
static size_t run_stream(uint64_t seed, size_t length)
{
    static struct model model;
    static struct collected out;
    struct random_stream stream;
    struct engine_command command;
    struct engine *engine = NULL;
    struct engine_config config = {.purchases_max = MODEL_PURCHASES_MAX, .customers_max = 1024};
    assert_int_equal(engine_new(&config, &engine), 0);
    struct engine_sink sink = {.emit = collect, .context = &out};
    /* The batched twin: commands wait in `pending` until a batch of batch_size is full. */
    static struct engine_command pending[BATCH_MAX];
    size_t pending_count = 0, batch_size = 1 + seed % BATCH_MAX;
    struct folded expected = {.hash = 1469598103934665603ULL}, got = expected;
    struct engine *batched = NULL;
    assert_int_equal(engine_new(&config, &batched), 0);
    struct engine_sink batched_sink = {.emit = fold, .context = &got};
    model_init(&model);
    random_stream_init(&stream, seed);
    for (size_t i = 0; i < length; i++) {
        /* One stream in ten meets commands before its event exists. */
        size_t create_at = seed % 10 == 0 ? 5 : 0;
        if (i == create_at)
            random_create_event(&stream, &command);
        else
            random_command(&stream, &command);
        out.count = 0;
        assert_int_equal(engine_apply(engine, &command, &sink), 0);
        model_apply(&model, &command);
        bool is_same = out.count == model.out_count;
        for (size_t k = 0; is_same && k < out.count; k++)
            is_same = memcmp(&out.items[k], &model.out[k], sizeof(out.items[k])) == 0;
        if (!is_same) {
            report_mismatch(seed, i, &command, &out, &model);
            fail_msg("engine and model disagree (seed %llu, command %zu)", (unsigned long long)seed,
                     i);
        }
        for (uint32_t c = 0; c < engine_category_count(engine); c++) {
            struct engine_category_counts a, b;
            engine_category_counts(engine, c, &a);
            model_counts(&model, c, &b);
            if (memcmp(&a, &b, sizeof(a)) != 0)
                fail_msg("counters differ (seed %llu, command %zu, category %u)",
                         (unsigned long long)seed, i, c);
        }
        if (i % 64 == 0 && engine_validate(engine) != 0)
            fail_msg("engine_validate failed (seed %llu, command %zu)", (unsigned long long)seed,
                     i);
        for (size_t k = 0; k < out.count; k++)
            fold_bytes(&expected, &out.items[k], sizeof(out.items[k]));
        pending[pending_count++] = command;
        if (pending_count == batch_size || i + 1 == length) {
            assert_int_equal(engine_apply_batch(batched, pending, pending_count, &batched_sink), 0);
            if (got.hash != expected.hash || got.count != expected.count)
                fail_msg("engine_apply_batch differs from engine_apply (seed %llu, batch ending "
                         "at command %zu, size %zu)",
                         (unsigned long long)seed, i, pending_count);
            pending_count = 0;
            batch_size = 1 + (batch_size * 7 + i) % BATCH_MAX;
        }
    }
    assert_int_equal(engine_validate(engine), 0);
    assert_int_equal(engine_validate(batched), 0);
    engine_free(engine);
    engine_free(batched);
    return length;
}

static void test_engine_matches_model(void **state)
{
    (void)state;
    uint64_t base = random_base_seed();
    const char *target_text = getenv("CATRACA_MODEL_COMMANDS");
    size_t target = target_text ? (size_t)strtoull(target_text, NULL, 10) : 1000000;
    struct random_stream lengths;
    random_stream_init(&lengths, base ^ 0x5eed);
    printf("model test: base seed %llu (CATRACA_SEED=%llu reproduces)\n", (unsigned long long)base,
           (unsigned long long)base);
    size_t total = 0, seeds = 0;
    while (total < target) {
        size_t length = 100 + random_below(&lengths, 900);
        total += run_stream(base + seeds, length);
        seeds++;
    }
    printf("model test: %zu commands checked, %zu seeds, base seed %llu\n", total, seeds,
           (unsigned long long)base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_matches_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
