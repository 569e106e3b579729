/* codec.c - the wire format of commands and outcomes; contract in codec.h. */
#include "core/codec.h"

#include <stdbool.h>
#include <string.h>

#include "core/error.h"

struct writer {
    uint8_t *buffer;
    size_t capacity, length;
    int error;
};

static void put_bytes(struct writer *w, const void *data, size_t size)
{
    if (w->error != 0)
        return;
    if (w->capacity - w->length < size) {
        w->error = CATRACA_E_NOSPACE;
        return;
    }
    memcpy(w->buffer + w->length, data, size);
    w->length += size;
}

static void put_uint(struct writer *w, uint64_t value, unsigned bytes)
{
    uint8_t le[8];
    for (unsigned i = 0; i < bytes; i++)
        le[i] = (uint8_t)(value >> (8 * i));
    put_bytes(w, le, bytes);
}

/* A string from a fixed array: its length up to the first NUL, at most `limit`. */
static void put_string(struct writer *w, const char *s, size_t array_size, size_t limit)
{
    size_t length = strnlen(s, array_size);
    if (length > limit || length == array_size) {
        if (w->error == 0)
            w->error = CATRACA_E_INVALID;
        return;
    }
    put_uint(w, length, 1);
    put_bytes(w, s, length);
}

struct reader {
    const uint8_t *buffer;
    size_t length, offset;
    int error;
};

static void get_bytes(struct reader *r, void *out, size_t size)
{
    if (r->error == 0 && r->length - r->offset < size)
        r->error = CATRACA_E_TRUNCATED;
    if (r->error != 0)
        return;
    memcpy(out, r->buffer + r->offset, size);
    r->offset += size;
}

static uint64_t get_uint(struct reader *r, unsigned bytes)
{
    uint8_t le[8] = {0};
    get_bytes(r, le, bytes);
    uint64_t value = 0;
    for (unsigned i = bytes; i > 0; i--)
        value = (value << 8) | le[i - 1];
    return value;
}

static void get_string(struct reader *r, char *out, size_t limit)
{
    size_t length = (size_t)get_uint(r, 1);
    if (r->error != 0)
        return;
    if (length > limit) {
        r->error = CATRACA_E_CORRUPT;
        return;
    }
    get_bytes(r, out, length);
    if (r->error == 0 && memchr(out, '\0', length) != NULL)
        r->error = CATRACA_E_CORRUPT;
    if (r->error == 0)
        out[length] = '\0';
}

static void corrupt_unless(struct reader *r, bool condition)
{
    if (r->error == 0 && !condition)
        r->error = CATRACA_E_CORRUPT;
}

/* ---- commands ---------------------------------------------------------------------------- */

static void put_event_spec(struct writer *w, const struct engine_event_spec *s)
{
    if (s->category_count < 1 || s->category_count > CATRACA_CATEGORIES_MAX) {
        w->error = CATRACA_E_INVALID;
        return;
    }
    put_string(w, s->id, sizeof(s->id), CATRACA_ID_MAX);
    put_string(w, s->name, sizeof(s->name), CATRACA_NAME_MAX);
    put_uint(w, (uint64_t)s->hold_ms, 8);
    put_uint(w, s->per_customer_limit, 4);
    put_uint(w, s->state, 1);
    put_uint(w, s->category_count, 1);
    put_bytes(w, s->secret, sizeof(s->secret));
    for (uint32_t i = 0; i < s->category_count; i++) {
        const struct engine_category_spec *c = &s->categories[i];
        put_string(w, c->id, sizeof(c->id), CATRACA_ID_MAX);
        put_string(w, c->name, sizeof(c->name), CATRACA_NAME_MAX);
        put_uint(w, (uint64_t)c->price_cents, 8);
        put_uint(w, c->capacity, 4);
    }
}

static void get_event_spec(struct reader *r, struct engine_event_spec *s)
{
    get_string(r, s->id, CATRACA_ID_MAX);
    get_string(r, s->name, CATRACA_NAME_MAX);
    s->hold_ms = (int64_t)get_uint(r, 8);
    s->per_customer_limit = (uint32_t)get_uint(r, 4);
    s->state = (uint8_t)get_uint(r, 1);
    s->category_count = (uint8_t)get_uint(r, 1);
    corrupt_unless(r, s->category_count >= 1 && s->category_count <= CATRACA_CATEGORIES_MAX);
    corrupt_unless(r, s->state >= ENGINE_STATE_OPEN && s->state <= ENGINE_STATE_CLOSED);
    get_bytes(r, s->secret, sizeof(s->secret));
    for (uint32_t i = 0; i < s->category_count && r->error == 0; i++) {
        struct engine_category_spec *c = &s->categories[i];
        get_string(r, c->id, CATRACA_ID_MAX);
        get_string(r, c->name, CATRACA_NAME_MAX);
        c->price_cents = (int64_t)get_uint(r, 8);
        c->capacity = (uint32_t)get_uint(r, 4);
    }
}

int codec_command_encode(const struct engine_command *c, uint8_t *buffer, size_t capacity,
                         size_t *length)
{
    struct writer w = {.buffer = buffer, .capacity = capacity};
    put_uint(&w, CODEC_VERSION, 1);
    put_uint(&w, c->type, 1);
    put_uint(&w, (uint64_t)c->now_ms, 8);
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        put_event_spec(&w, &c->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        put_uint(&w, c->u.set_state.state, 1);
        break;
    case ENGINE_COMMAND_PURCHASE:
        put_uint(&w, c->u.purchase.purchase_id, 8);
        put_string(&w, c->u.purchase.customer, sizeof(c->u.purchase.customer), CATRACA_ID_MAX);
        put_string(&w, c->u.purchase.category, sizeof(c->u.purchase.category), CATRACA_ID_MAX);
        put_uint(&w, c->u.purchase.quantity, 4);
        break;
    case ENGINE_COMMAND_CONFIRM:
        put_uint(&w, c->u.confirm.purchase_id, 8);
        put_string(&w, c->u.confirm.payment_ref, sizeof(c->u.confirm.payment_ref),
                   CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_CANCEL:
        put_uint(&w, c->u.cancel.purchase_id, 8);
        put_string(&w, c->u.cancel.customer, sizeof(c->u.cancel.customer), CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    default:
        return CATRACA_E_INVALID;
    }
    if (w.error != 0)
        return w.error;
    *length = w.length;
    return 0;
}

static void get_command_body(struct reader *r, struct engine_command *c)
{
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        get_event_spec(r, &c->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        c->u.set_state.state = (uint8_t)get_uint(r, 1);
        break;
    case ENGINE_COMMAND_PURCHASE:
        c->u.purchase.purchase_id = get_uint(r, 8);
        get_string(r, c->u.purchase.customer, CATRACA_ID_MAX);
        get_string(r, c->u.purchase.category, CATRACA_ID_MAX);
        c->u.purchase.quantity = (uint32_t)get_uint(r, 4);
        break;
    case ENGINE_COMMAND_CONFIRM:
        c->u.confirm.purchase_id = get_uint(r, 8);
        get_string(r, c->u.confirm.payment_ref, CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_CANCEL:
        c->u.cancel.purchase_id = get_uint(r, 8);
        get_string(r, c->u.cancel.customer, CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    default:
        corrupt_unless(r, false);
    }
}

/* Common tail of both decoders: version checked first, no trailing bytes, *out zeroed on error. */
static int finish(struct reader *r, void *out, size_t size)
{
    if (r->error == 0 && r->offset != r->length)
        r->error = CATRACA_E_CORRUPT;
    if (r->error != 0)
        memset(out, 0, size);
    return r->error;
}

static bool get_version(struct reader *r)
{
    uint64_t version = get_uint(r, 1);
    if (r->error == 0 && version != CODEC_VERSION)
        r->error = CATRACA_E_VERSION;
    return r->error == 0;
}

int codec_command_decode(const uint8_t *buffer, size_t length, struct engine_command *out)
{
    struct reader r = {.buffer = buffer, .length = length};
    memset(out, 0, sizeof(*out));
    if (get_version(&r)) {
        out->type = (uint8_t)get_uint(&r, 1);
        out->now_ms = (int64_t)get_uint(&r, 8);
        if (r.error == 0)
            get_command_body(&r, out);
    }
    return finish(&r, out, sizeof(*out));
}

/* ---- outcomes ---------------------------------------------------------------------------- */

int codec_outcome_encode(const struct engine_outcome *o, uint8_t *buffer, size_t capacity,
                         size_t *length)
{
    if (o->type < ENGINE_OUTCOME_PURCHASE || o->type > ENGINE_OUTCOME_EVENT ||
        o->ticket_count > CATRACA_QUANTITY_MAX)
        return CATRACA_E_INVALID;
    struct writer w = {.buffer = buffer, .capacity = capacity};
    put_uint(&w, CODEC_VERSION, 1);
    put_uint(&w, o->type, 1);
    put_uint(&w, o->purchase_id, 8);
    put_uint(&w, o->customer_key, 8);
    put_uint(&w, (uint64_t)o->hold_expires_at_ms, 8);
    put_uint(&w, o->position, 4);
    put_uint(&w, o->quantity, 4);
    put_uint(&w, o->category, 1);
    put_uint(&w, o->status, 1);
    put_uint(&w, o->reason, 1);
    put_uint(&w, o->result, 1);
    put_uint(&w, o->event_state, 1);
    put_uint(&w, o->ticket_count, 1);
    for (uint32_t i = 0; i < o->ticket_count; i++)
        put_uint(&w, o->ticket_codes[i], 8);
    if (w.error != 0)
        return w.error;
    *length = w.length;
    return 0;
}

int codec_outcome_decode(const uint8_t *buffer, size_t length, struct engine_outcome *out)
{
    struct reader r = {.buffer = buffer, .length = length};
    memset(out, 0, sizeof(*out));
    if (get_version(&r)) {
        out->type = (uint8_t)get_uint(&r, 1);
        out->purchase_id = get_uint(&r, 8);
        out->customer_key = get_uint(&r, 8);
        out->hold_expires_at_ms = (int64_t)get_uint(&r, 8);
        out->position = (uint32_t)get_uint(&r, 4);
        out->quantity = (uint32_t)get_uint(&r, 4);
        out->category = (uint8_t)get_uint(&r, 1);
        out->status = (uint8_t)get_uint(&r, 1);
        out->reason = (uint8_t)get_uint(&r, 1);
        out->result = (uint8_t)get_uint(&r, 1);
        out->event_state = (uint8_t)get_uint(&r, 1);
        out->ticket_count = (uint8_t)get_uint(&r, 1);
        corrupt_unless(&r, out->type >= ENGINE_OUTCOME_PURCHASE &&
                               out->type <= ENGINE_OUTCOME_EVENT);
        corrupt_unless(&r, out->status <= ENGINE_STATUS_REJECTED);
        corrupt_unless(&r, out->reason <= ENGINE_REASON_INVALID_EVENT);
        corrupt_unless(&r, out->result <= ENGINE_RESULT_CONFLICT);
        corrupt_unless(&r, out->event_state <= ENGINE_STATE_CLOSED);
        corrupt_unless(&r, out->ticket_count <= CATRACA_QUANTITY_MAX);
        for (uint32_t i = 0; i < out->ticket_count && r.error == 0; i++)
            out->ticket_codes[i] = get_uint(&r, 8);
    }
    return finish(&r, out, sizeof(*out));
}
