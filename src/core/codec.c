/* codec.c - the wire format of commands and outcomes; contract in codec.h. */
#include "core/codec.h"

#include <stdbool.h>
#include <string.h>

#include "core/error.h"
#include "core/wire.h"

/*
 * What the decoders check beyond lengths, in one place so that the encoders refuse exactly what
 * the decoders would: a record that encodes always decodes (a log must never hold a record its
 * replay refuses). Values the engine answers for itself (a SET_STATE state, a hold_ms, a
 * quantity) are carried as they are.
 */
static bool event_spec_is_encodable(const struct engine_event_spec *s)
{
    return s->category_count >= 1 && s->category_count <= CATRACA_CATEGORIES_MAX &&
           s->state >= ENGINE_STATE_OPEN && s->state <= ENGINE_STATE_CLOSED &&
           s->line_policy <= ENGINE_LINE_UNBOUNDED;
}

static bool outcome_is_encodable(const struct engine_outcome *o)
{
    return o->type >= ENGINE_OUTCOME_PURCHASE && o->type <= ENGINE_OUTCOME_EVENT &&
           o->status <= ENGINE_STATUS_LAST && o->reason <= ENGINE_REASON_LAST &&
           o->result <= ENGINE_RESULT_CONFLICT && o->event_state <= ENGINE_STATE_CLOSED &&
           o->ticket_count <= CATRACA_QUANTITY_MAX;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* Only the first category_count categories are written; the rest of the array is not read. */
/* Version 2 appends the line policy to the spec (version 1 specs are BOUNDED, the zero value). */
static void codec_line_policy_put(struct wire_writer *w, const struct engine_event_spec *s)
{
    wire_put_uint(w, s->line_policy, 1);
}

static void codec_line_policy_get(struct wire_reader *r, struct engine_event_spec *s)
{
    s->line_policy = (uint8_t)wire_get_uint(r, 1);
    wire_check(r, s->line_policy <= ENGINE_LINE_UNBOUNDED);
}

/*
 * Version 3 appends the schedule after the line policy, always (0, 0 for a sale that is not
 * scheduled): versions 1 and 2 read as not scheduled, the zero value. Whether the pair is a
 * valid schedule is the engine's answer (INVALID_EVENT), not the codec's.
 */
static void codec_schedule_put(struct wire_writer *w, const struct engine_event_spec *s)
{
    wire_put_uint(w, (uint64_t)s->opens_at_ms, 8);
    wire_put_uint(w, (uint64_t)s->prequeue_ms, 8);
}

static void codec_schedule_get(struct wire_reader *r, struct engine_event_spec *s)
{
    s->opens_at_ms = (int64_t)wire_get_uint(r, 8);
    s->prequeue_ms = (int64_t)wire_get_uint(r, 8);
}

void codec_event_spec_put(struct wire_writer *w, const struct engine_event_spec *s)
{
    if (!event_spec_is_encodable(s)) {
        if (w->error == 0)
            w->error = CATRACA_E_INVALID;
        return;
    }
    wire_put_string(w, s->id, sizeof(s->id), CATRACA_ID_MAX);
    wire_put_string(w, s->name, sizeof(s->name), CATRACA_NAME_MAX);
    wire_put_uint(w, (uint64_t)s->hold_ms, 8);
    wire_put_uint(w, s->per_customer_limit, 4);
    wire_put_uint(w, s->state, 1);
    wire_put_uint(w, s->category_count, 1);
    wire_put_bytes(w, s->secret, sizeof(s->secret));
    for (uint32_t i = 0; i < s->category_count; i++) {
        const struct engine_category_spec *c = &s->categories[i];
        wire_put_string(w, c->id, sizeof(c->id), CATRACA_ID_MAX);
        wire_put_string(w, c->name, sizeof(c->name), CATRACA_NAME_MAX);
        wire_put_uint(w, (uint64_t)c->price_cents, 8);
        wire_put_uint(w, c->capacity, 4);
    }
    codec_line_policy_put(w, s);
    codec_schedule_put(w, s);
}

void codec_event_spec_get(struct wire_reader *r, struct engine_event_spec *s)
{
    codec_event_spec_get_version(r, s, CODEC_VERSION);
}

void codec_event_spec_get_version(struct wire_reader *r, struct engine_event_spec *s,
                                  uint8_t version)
{
    wire_get_string(r, s->id, CATRACA_ID_MAX);
    wire_get_string(r, s->name, CATRACA_NAME_MAX);
    s->hold_ms = (int64_t)wire_get_uint(r, 8);
    s->per_customer_limit = (uint32_t)wire_get_uint(r, 4);
    s->state = (uint8_t)wire_get_uint(r, 1);
    s->category_count = (uint8_t)wire_get_uint(r, 1);
    wire_check(r, event_spec_is_encodable(s));
    wire_get_bytes(r, s->secret, sizeof(s->secret));
    for (uint32_t i = 0; i < s->category_count && r->error == 0; i++) {
        struct engine_category_spec *c = &s->categories[i];
        wire_get_string(r, c->id, CATRACA_ID_MAX);
        wire_get_string(r, c->name, CATRACA_NAME_MAX);
        c->price_cents = (int64_t)wire_get_uint(r, 8);
        c->capacity = (uint32_t)wire_get_uint(r, 4);
    }
    s->line_policy = ENGINE_LINE_BOUNDED;
    if (version >= 2 && r->error == 0)
        codec_line_policy_get(r, s);
    s->opens_at_ms = 0;
    s->prequeue_ms = 0;
    if (version >= 3 && r->error == 0)
        codec_schedule_get(r, s);
}

int codec_command_encode(const struct engine_command *c, uint8_t *buffer, size_t capacity,
                         size_t *length)
{
    struct wire_writer w = {.buffer = buffer, .capacity = capacity};
    wire_put_uint(&w, CODEC_VERSION, 1);
    wire_put_uint(&w, c->type, 1);
    wire_put_uint(&w, (uint64_t)c->now_ms, 8);
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        codec_event_spec_put(&w, &c->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        wire_put_uint(&w, c->u.set_state.state, 1);
        break;
    case ENGINE_COMMAND_PURCHASE:
        wire_put_uint(&w, c->u.purchase.purchase_id, 8);
        wire_put_string(&w, c->u.purchase.customer, sizeof(c->u.purchase.customer), CATRACA_ID_MAX);
        wire_put_string(&w, c->u.purchase.category, sizeof(c->u.purchase.category), CATRACA_ID_MAX);
        wire_put_uint(&w, c->u.purchase.quantity, 4);
        break;
    case ENGINE_COMMAND_CONFIRM:
        wire_put_uint(&w, c->u.confirm.purchase_id, 8);
        wire_put_string(&w, c->u.confirm.payment_ref, sizeof(c->u.confirm.payment_ref),
                        CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_CANCEL:
        wire_put_uint(&w, c->u.cancel.purchase_id, 8);
        wire_put_string(&w, c->u.cancel.customer, sizeof(c->u.cancel.customer), CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    case ENGINE_COMMAND_DRAW:
        wire_put_bytes(&w, c->u.draw.seed, sizeof(c->u.draw.seed));
        break;
    default:
        return CATRACA_E_INVALID;
    }
    if (w.error != 0)
        return w.error;
    *length = w.length;
    return 0;
}

static void get_command_body(struct wire_reader *r, struct engine_command *c, uint8_t version)
{
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        codec_event_spec_get_version(r, &c->u.create_event, version);
        break;
    case ENGINE_COMMAND_SET_STATE:
        c->u.set_state.state = (uint8_t)wire_get_uint(r, 1);
        break;
    case ENGINE_COMMAND_PURCHASE:
        c->u.purchase.purchase_id = wire_get_uint(r, 8);
        wire_get_string(r, c->u.purchase.customer, CATRACA_ID_MAX);
        wire_get_string(r, c->u.purchase.category, CATRACA_ID_MAX);
        c->u.purchase.quantity = (uint32_t)wire_get_uint(r, 4);
        break;
    case ENGINE_COMMAND_CONFIRM:
        c->u.confirm.purchase_id = wire_get_uint(r, 8);
        wire_get_string(r, c->u.confirm.payment_ref, CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_CANCEL:
        c->u.cancel.purchase_id = wire_get_uint(r, 8);
        wire_get_string(r, c->u.cancel.customer, CATRACA_ID_MAX);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    case ENGINE_COMMAND_DRAW:
        wire_get_bytes(r, c->u.draw.seed, sizeof(c->u.draw.seed));
        break;
    default:
        wire_check(r, false);
    }
}

/* Common tail of both decoders: version checked first, no trailing bytes, *out zeroed on error. */
static int finish(struct wire_reader *r, void *out, size_t size)
{
    if (r->error == 0 && r->offset != r->length)
        r->error = CATRACA_E_CORRUPT;
    if (r->error != 0)
        memset(out, 0, size);
    return r->error;
}

/* Reads the version byte: every version from CODEC_VERSION_OLDEST on is read (logs outlive
 * binaries); 0 when the record is refused. */
static uint8_t get_version(struct wire_reader *r)
{
    uint64_t version = wire_get_uint(r, 1);
    if (r->error == 0 && (version < CODEC_VERSION_OLDEST || version > CODEC_VERSION))
        r->error = CATRACA_E_VERSION;
    return r->error == 0 ? (uint8_t)version : 0;
}

int codec_command_decode(const uint8_t *buffer, size_t length, struct engine_command *out)
{
    struct wire_reader r = {.buffer = buffer, .length = length};
    memset(out, 0, sizeof(*out));
    uint8_t version = get_version(&r);
    if (version != 0) {
        out->type = (uint8_t)wire_get_uint(&r, 1);
        out->now_ms = (int64_t)wire_get_uint(&r, 8);
        if (r.error == 0)
            get_command_body(&r, out, version);
    }
    return finish(&r, out, sizeof(*out));
}

/* A little-endian unsigned integer of `bytes` bytes at in. */
static uint64_t get_le(const uint8_t *in, unsigned bytes)
{
    uint64_t value = 0;
    for (unsigned i = bytes; i > 0; i--)
        value = (value << 8) | in[i - 1];
    return value;
}

/* A string of the format (length byte, bytes without NUL, at most CATRACA_ID_MAX) at *offset
 * into out[CATRACA_ID_MAX + 1]; false when the record does not hold a valid one. */
static bool get_id_string(const uint8_t *buffer, size_t length, size_t *offset, char *out)
{
    if (*offset >= length)
        return false;
    size_t n = buffer[*offset];
    if (n > CATRACA_ID_MAX || length - *offset - 1 < n ||
        memchr(buffer + *offset + 1, '\0', n) != NULL)
        return false;
    memcpy(out, buffer + *offset + 1, n);
    out[n] = '\0';
    *offset += 1 + n;
    return true;
}

int codec_command_decode_fields(const uint8_t *buffer, size_t length, struct engine_command *out)
{
    size_t at = 10; /* version, type, now_ms */
    bool is_read = buffer != NULL && length >= at && buffer[0] >= CODEC_VERSION_OLDEST &&
                   buffer[0] <= CODEC_VERSION;
    uint8_t type = is_read ? buffer[1] : 0;
    switch (type) {
    case ENGINE_COMMAND_SET_STATE:
        is_read = length - at >= 1;
        if (is_read)
            out->u.set_state.state = buffer[at++];
        break;
    case ENGINE_COMMAND_PURCHASE:
        is_read = length - at >= 8;
        if (is_read) {
            out->u.purchase.purchase_id = get_le(buffer + at, 8);
            at += 8;
        }
        is_read = is_read && get_id_string(buffer, length, &at, out->u.purchase.customer) &&
                  get_id_string(buffer, length, &at, out->u.purchase.category) &&
                  length - at >= 4;
        if (is_read) {
            out->u.purchase.quantity = (uint32_t)get_le(buffer + at, 4);
            at += 4;
        }
        break;
    case ENGINE_COMMAND_CONFIRM:
        is_read = length - at >= 8;
        if (is_read) {
            out->u.confirm.purchase_id = get_le(buffer + at, 8);
            at += 8;
        }
        is_read = is_read && get_id_string(buffer, length, &at, out->u.confirm.payment_ref);
        break;
    case ENGINE_COMMAND_CANCEL:
        is_read = length - at >= 8;
        if (is_read) {
            out->u.cancel.purchase_id = get_le(buffer + at, 8);
            at += 8;
        }
        is_read = is_read && get_id_string(buffer, length, &at, out->u.cancel.customer);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    default:
        is_read = false;
    }
    if (!is_read || at != length)
        return codec_command_decode(buffer, length, out);
    out->type = type;
    out->now_ms = (int64_t)get_le(buffer + 2, 8);
    return 0;
}

/* ---- outcomes ---------------------------------------------------------------------------- */

int codec_outcome_encode(const struct engine_outcome *o, uint8_t *buffer, size_t capacity,
                         size_t *length)
{
    if (!outcome_is_encodable(o))
        return CATRACA_E_INVALID;
    struct wire_writer w = {.buffer = buffer, .capacity = capacity};
    wire_put_uint(&w, CODEC_VERSION, 1);
    wire_put_uint(&w, o->type, 1);
    wire_put_uint(&w, o->purchase_id, 8);
    wire_put_uint(&w, o->customer_key, 8);
    wire_put_uint(&w, (uint64_t)o->hold_expires_at_ms, 8);
    wire_put_uint(&w, o->position, 4);
    wire_put_uint(&w, o->quantity, 4);
    wire_put_uint(&w, o->category, 1);
    wire_put_uint(&w, o->status, 1);
    wire_put_uint(&w, o->reason, 1);
    wire_put_uint(&w, o->result, 1);
    wire_put_uint(&w, o->event_state, 1);
    wire_put_uint(&w, o->ticket_count, 1);
    for (uint32_t i = 0; i < o->ticket_count; i++)
        wire_put_uint(&w, o->ticket_codes[i], 8);
    if (w.error != 0)
        return w.error;
    *length = w.length;
    return 0;
}

int codec_outcome_decode(const uint8_t *buffer, size_t length, struct engine_outcome *out)
{
    struct wire_reader r = {.buffer = buffer, .length = length};
    memset(out, 0, sizeof(*out));
    if (get_version(&r) != 0) {
        out->type = (uint8_t)wire_get_uint(&r, 1);
        out->purchase_id = wire_get_uint(&r, 8);
        out->customer_key = wire_get_uint(&r, 8);
        out->hold_expires_at_ms = (int64_t)wire_get_uint(&r, 8);
        out->position = (uint32_t)wire_get_uint(&r, 4);
        out->quantity = (uint32_t)wire_get_uint(&r, 4);
        out->category = (uint8_t)wire_get_uint(&r, 1);
        out->status = (uint8_t)wire_get_uint(&r, 1);
        out->reason = (uint8_t)wire_get_uint(&r, 1);
        out->result = (uint8_t)wire_get_uint(&r, 1);
        out->event_state = (uint8_t)wire_get_uint(&r, 1);
        out->ticket_count = (uint8_t)wire_get_uint(&r, 1);
        wire_check(&r, outcome_is_encodable(out));
        for (uint32_t i = 0; i < out->ticket_count && r.error == 0; i++)
            out->ticket_codes[i] = wire_get_uint(&r, 8);
    }
    return finish(&r, out, sizeof(*out));
}
