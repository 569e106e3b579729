/*
 * libFuzzer: arbitrary command sequences into the engine, the way the worker applies them (every
 * command through the codec first). Ids come from a small set so duplicates, confirms and cancels
 * meet real purchases; pools are small so exhaustion is explored. After every command
 * engine_validate() must pass and every category must balance; every outcome must fit the bound
 * and survive the codec. Half-way through, the engine is snapshotted into a second one: from then
 * on both must emit the same outcomes, byte for byte, and end in the same state.
 *
 * Input: four bytes of event spec (the first's top bit: a scheduled sale opening at 2 to 4.5 s
 * after a 1 s pre-queue window), then four bytes per command:
 *   op  bits 0-2 kind (7: a DRAW if b is odd, with a wrong seed if b & 2; else not a
 *       command), bits 3-6 quantity (mod 13), bit 7 time goes back
 *   a   purchase id (mod 48; 0 is invalid)
 *   b   customer (low 4 bits), category (high 4 bits: a, b or unknown), payment ref
 *   t   clock step: none below 128, else 40 ms per step above it
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct engine_config config = {.purchases_max = 256, .customers_max = 64};

struct input {
    const uint8_t *data;
    size_t size, offset;
};

static uint8_t next(struct input *in)
{
    return in->offset < in->size ? in->data[in->offset++] : 0;
}

static bool outcome_same(const struct engine_outcome *a, const struct engine_outcome *b)
{
    return a->purchase_id == b->purchase_id && a->customer_key == b->customer_key &&
           a->hold_expires_at_ms == b->hold_expires_at_ms && a->position == b->position &&
           a->quantity == b->quantity && a->category == b->category && a->type == b->type &&
           a->status == b->status && a->reason == b->reason && a->result == b->result &&
           a->event_state == b->event_state && a->ticket_count == b->ticket_count &&
           memcmp(a->ticket_codes, b->ticket_codes, 8u * a->ticket_count) == 0;
}

/* The outcomes of one engine: how many, and an FNV-1a hash of their encodings. */
struct digest {
    uint64_t hash, count;
};

/* Every outcome the engine emits can be stored and read back; its encoding joins the digest. */
static void collect(void *context, const struct engine_outcome *outcome)
{
    struct digest *digest = context;
    uint8_t record[CATRACA_OUTCOME_ENCODED_MAX];
    size_t length = 0;
    struct engine_outcome back;
    if (codec_outcome_encode(outcome, record, sizeof(record), &length) != 0)
        abort();
    if (codec_outcome_decode(record, length, &back) != 0 || !outcome_same(outcome, &back))
        abort();
    for (size_t i = 0; i < length; i++)
        digest->hash = (digest->hash ^ record[i]) * 1099511628211ULL;
    digest->count++;
}

static void check(const struct engine *engine, int64_t *clock_ms)
{
    if (engine_validate(engine) != 0)
        abort();
    for (uint32_t i = 0; i < engine_category_count(engine); i++) {
        struct engine_category_counts c;
        if (engine_category_counts(engine, i, &c) != 0)
            abort();
        if ((uint64_t)c.available + c.held + c.sold != c.capacity)
            abort();
        if ((uint64_t)c.waiting_quantity > (uint64_t)c.available + c.held)
            abort();
    }
    if (engine_now_ms(engine) < *clock_ms)
        abort();
    *clock_ms = engine_now_ms(engine);
}

/*
 * Applies c as the worker would (encoded, decoded, applied); the outcomes join the digest and
 * must number at most engine_outcome_bound(), and at least one unless c is a TICK.
 */
static void apply(struct engine *engine, const struct engine_command *c, struct digest *digest)
{
    static struct engine_command decoded;
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    uint64_t count = digest->count, bound = engine_outcome_bound(engine);
    struct engine_sink sink = {.emit = collect, .context = digest};
    if (c->type < ENGINE_COMMAND_CREATE_EVENT || c->type > ENGINE_COMMAND_LAST) {
        if (engine_apply(engine, c, &sink) != CATRACA_E_INVALID || digest->count != count)
            abort();
        return;
    }
    if (codec_command_encode(c, record, sizeof(record), &length) != 0)
        abort();
    if (codec_command_decode(record, length, &decoded) != 0)
        abort();
    if (engine_apply(engine, &decoded, &sink) != 0)
        abort();
    count = digest->count - count;
    if (count > bound || (c->type != ENGINE_COMMAND_TICK && count == 0))
        abort();
}

static void create_event(struct input *in, struct engine_event_spec *s)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->id, "ev");
    strcpy(s->name, "Fuzz");
    uint8_t hold = next(in);
    s->hold_ms = 1000 + 100 * (hold % 50);
    if (hold & 0x80) {
        s->opens_at_ms = 2000 + 40 * (hold & 0x3f);
        s->prequeue_ms = 1000;
    }
    s->per_customer_limit = 1 + next(in) % CATRACA_QUANTITY_MAX;
    s->state = ENGINE_STATE_OPEN;
    s->category_count = 2;
    memcpy(s->secret, "fuzz-secret-key!", sizeof(s->secret));
    strcpy(s->categories[0].id, "a");
    strcpy(s->categories[1].id, "b");
    s->categories[0].capacity = 1 + next(in) % 50;
    s->categories[1].capacity = 1 + next(in) % 50;
    s->categories[1].price_cents = 2500;
}

/* One command from four input bytes (see the top of the file). */
static void read_command(struct input *in, const struct engine_event_spec *spec, int64_t *now_ms,
                         struct engine_command *c)
{
    uint8_t op = next(in), a = next(in), b = next(in), t = next(in);
    memset(c, 0, sizeof(*c));
    *now_ms += t < 128 ? 0 : 40 * (t - 128);
    c->now_ms = (op & 0x80) ? *now_ms - t : *now_ms;
    static const char *const categories[16] = {"a", "a", "a", "a", "a", "a", "a",  "b",
                                               "b", "b", "b", "b", "b", "b", "zz", ""};
    switch (op & 7) {
    case 0: /* the same spec again (REPEATED), or another one (EVENT_MISMATCH) */
        c->type = ENGINE_COMMAND_CREATE_EVENT;
        c->u.create_event = *spec;
        c->u.create_event.categories[b & 1].capacity += (b >> 1) & 1;
        break;
    case 1: /* mostly open; sometimes paused, closed or an invalid state */
        c->type = ENGINE_COMMAND_SET_STATE;
        c->u.set_state.state = (uint8_t)(b < 160 ? ENGINE_STATE_OPEN : b < 208 ? b % 4 : b % 8);
        break;
    case 2:
    case 3:
        c->type = ENGINE_COMMAND_PURCHASE;
        c->u.purchase.purchase_id = a % 48;
        snprintf(c->u.purchase.customer, sizeof(c->u.purchase.customer), "c%u", b % 16u);
        strcpy(c->u.purchase.category, categories[b >> 4]);
        c->u.purchase.quantity = (uint32_t)((op >> 3) & 15) % 13;
        break;
    case 4:
        c->type = ENGINE_COMMAND_CONFIRM;
        c->u.confirm.purchase_id = a % 48;
        snprintf(c->u.confirm.payment_ref, sizeof(c->u.confirm.payment_ref), "p%u", b % 3u);
        break;
    case 5:
        c->type = ENGINE_COMMAND_CANCEL;
        c->u.cancel.purchase_id = a % 48;
        snprintf(c->u.cancel.customer, sizeof(c->u.cancel.customer), "c%u", b % 16u);
        break;
    case 6:
        c->type = ENGINE_COMMAND_TICK;
        break;
    default:
        if ((b & 1) == 0) {
            c->type = ENGINE_COMMAND_LAST + 1; /* not a command: refused, nothing changes */
            break;
        }
        c->type = ENGINE_COMMAND_DRAW;
        engine_draw_seed(spec->secret, c->u.draw.seed);
        c->u.draw.seed[0] ^= (uint8_t)(b & 2);
    }
}

/* The engine's snapshot; the caller frees it. */
static uint8_t *snapshot(const struct engine *engine, size_t *length)
{
    size_t capacity = engine_snapshot_size(engine);
    uint8_t *buffer = malloc(capacity);
    if (buffer == NULL || engine_snapshot_write(engine, buffer, capacity, length) != 0)
        abort();
    return buffer;
}

/* A second engine restored from engine's snapshot; it validates and writes the same snapshot. */
static struct engine *restored_copy(const struct engine *engine)
{
    size_t length = 0, again_length = 0;
    uint8_t *buffer = snapshot(engine, &length);
    struct engine *copy = NULL;
    if (engine_new(&config, &copy) != 0 || engine_snapshot_read(copy, buffer, length) != 0)
        abort();
    if (engine_validate(copy) != 0)
        abort();
    uint8_t *again = snapshot(copy, &again_length);
    if (again_length != length || memcmp(buffer, again, length) != 0)
        abort();
    free(again);
    free(buffer);
    return copy;
}

/* Two engines that were fed the same commands are in the same state. */
static void check_same_state(const struct engine *engine, const struct engine *copy)
{
    size_t length = 0, copy_length = 0;
    uint8_t *buffer = snapshot(engine, &length), *copy_buffer = snapshot(copy, &copy_length);
    if (engine_validate(copy) != 0)
        abort();
    if (copy_length != length || memcmp(buffer, copy_buffer, length) != 0)
        abort();
    free(copy_buffer);
    free(buffer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {.data = data, .size = size};
    struct engine *engine = NULL, *copy = NULL;
    if (engine_new(&config, &engine) != 0)
        abort();
    static struct engine_command c;
    static struct engine_event_spec spec;
    create_event(&in, &spec);
    memset(&c, 0, sizeof(c));
    c.type = ENGINE_COMMAND_CREATE_EVENT;
    c.u.create_event = spec;
    int64_t now_ms = 0, clock_ms = 0;
    struct digest digest = {.hash = 1469598103934665603ULL}, copy_digest = digest;
    apply(engine, &c, &digest);
    if (engine_state(engine) != ENGINE_STATE_OPEN)
        abort();
    check(engine, &clock_ms);
    while (in.offset < in.size) {
        if (copy == NULL && in.offset >= in.size / 2) {
            copy = restored_copy(engine);
            copy_digest = digest;
        }
        read_command(&in, &spec, &now_ms, &c);
        apply(engine, &c, &digest);
        check(engine, &clock_ms);
        if (copy == NULL)
            continue;
        apply(copy, &c, &copy_digest);
        if (copy_digest.hash != digest.hash || copy_digest.count != digest.count)
            abort(); /* the restored engine decided differently */
    }
    if (copy != NULL)
        check_same_state(engine, copy);
    engine_free(copy);
    engine_free(engine);
    return 0;
}
