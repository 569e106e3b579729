/*
 * libFuzzer: arbitrary command sequences into the engine. The input is read
 * as small commands (ids from a small set so duplicates, confirms and cancels
 * meet real purchases); after every command the invariants must hold and
 * engine_validate() must pass. Pool sizes are tiny so exhaustion is explored.
 * Half-way through, the engine is snapshotted into a second one and both must
 * then emit the same outcomes, byte for byte, to the end.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *data;
    size_t size, offset;
};

static uint8_t next(struct input *in)
{
    return in->offset < in->size ? in->data[in->offset++] : 0;
}

struct digest {
    uint64_t hash;
    uint64_t count;
};

/* Folds every outcome into a running FNV-1a hash, so two engines can be compared cheaply. */
static void fold(void *context, const struct engine_outcome *outcome)
{
    struct digest *d = context;
    if (outcome->ticket_count > CATRACA_QUANTITY_MAX)
        abort();
    const uint8_t *bytes = (const uint8_t *)outcome;
    for (size_t i = 0; i < sizeof(*outcome); i++)
        d->hash = (d->hash ^ bytes[i]) * 1099511628211ULL;
    d->count++;
}

static struct engine *restored_copy(const struct engine_config *config, const struct engine *from)
{
    static uint8_t buffer[1 << 16];
    size_t length = 0;
    struct engine *copy = NULL;
    if (engine_snapshot_size(from) > sizeof(buffer) ||
        engine_snapshot_write(from, buffer, sizeof(buffer), &length) != 0 ||
        engine_new(config, &copy) != 0 || engine_snapshot_read(copy, buffer, length) != 0)
        abort();
    return copy;
}

static void check(const struct engine *engine)
{
    if (engine_validate(engine) != 0)
        abort();
    for (uint32_t i = 0; i < engine_category_count(engine); i++) {
        struct engine_category_counts c;
        engine_category_counts(engine, i, &c);
        if ((uint64_t)c.available + c.held + c.sold != c.capacity)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {.data = data, .size = size};
    struct engine_config config = {.purchases_max = 256, .customers_max = 64};
    struct engine *engine = NULL;
    if (engine_new(&config, &engine) != 0)
        abort();
    static struct engine_command c;
    struct digest main_digest = {1469598103934665603ULL, 0}, copy_digest = main_digest;
    struct engine_sink sink = {.emit = fold, .context = &main_digest};
    struct engine_sink copy_sink = {.emit = fold, .context = &copy_digest};
    struct engine *copy = NULL;
    memset(&c, 0, sizeof(c));
    c.type = ENGINE_COMMAND_CREATE_EVENT;
    strcpy(c.u.create_event.id, "ev");
    c.u.create_event.hold_ms = 1000 + 100 * (next(&in) % 50);
    c.u.create_event.per_customer_limit = 1 + next(&in) % CATRACA_QUANTITY_MAX;
    c.u.create_event.state = ENGINE_STATE_OPEN;
    c.u.create_event.category_count = 2;
    strcpy(c.u.create_event.categories[0].id, "a");
    strcpy(c.u.create_event.categories[1].id, "b");
    c.u.create_event.categories[0].capacity = 1 + next(&in) % 50;
    c.u.create_event.categories[1].capacity = 1 + next(&in) % 50;
    engine_apply(engine, &c, &sink);
    int64_t now_ms = 0;
    while (in.offset < in.size) {
        if (copy == NULL && in.offset >= in.size / 2) {
            copy = restored_copy(&config, engine);
            main_digest = copy_digest;
        }
        uint8_t op = next(&in), a = next(&in), b = next(&in);
        memset(&c, 0, sizeof(c));
        now_ms += (op & 0x80) ? 100 * (a & 0x3f) : 0;
        c.now_ms = (op & 0x40) ? now_ms - a : now_ms;
        c.type = (uint8_t)(1 + op % 7); /* 7 is not a command: must be refused */
        uint64_t id = (uint64_t)(a % 48);
        snprintf(c.u.purchase.customer, sizeof(c.u.purchase.customer), "c%u", b % 16);
        switch (c.type) {
        case ENGINE_COMMAND_CREATE_EVENT:
            c.type = ENGINE_COMMAND_SET_STATE; /* re-creation is covered by unit tests */
            c.u.set_state.state = b % 5;
            break;
        case ENGINE_COMMAND_SET_STATE:
            c.u.set_state.state = (uint8_t)(1 + (b % 4 == 3 ? 0 : b % 2)); /* mostly open */
            break;
        case ENGINE_COMMAND_PURCHASE:
            c.u.purchase.purchase_id = id;
            strcpy(c.u.purchase.category, (b & 0x40) ? "b" : (b & 0x20) ? "zz" : "a");
            c.u.purchase.quantity = (b >> 2) % 13;
            break;
        case ENGINE_COMMAND_CONFIRM:
            c.u.confirm.purchase_id = id;
            snprintf(c.u.confirm.payment_ref, sizeof(c.u.confirm.payment_ref), "p%u", b % 3);
            break;
        case ENGINE_COMMAND_CANCEL:
            c.u.cancel.purchase_id = id;
            break;
        default:
            break;
        }
        int error = engine_apply(engine, &c, &sink);
        if (error != 0 && c.type <= ENGINE_COMMAND_TICK)
            abort();
        check(engine);
        if (copy != NULL && engine_apply(copy, &c, &copy_sink) != error)
            abort();
        if (copy != NULL &&
            (main_digest.hash != copy_digest.hash || main_digest.count != copy_digest.count))
            abort(); /* the restored engine decided differently */
    }
    engine_free(copy);
    engine_free(engine);
    return 0;
}
