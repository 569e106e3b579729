/* store_rows.c - contract in store_rows.h. */
#include "store/store_rows.h"

#include "core/codec.h"
#include <string.h>

#include "core/error.h"

int store_spec_encode(const struct engine_event_spec *spec, uint8_t *out, size_t *length)
{
    struct engine_command command = {.type = ENGINE_COMMAND_CREATE_EVENT};
    command.u.create_event = *spec;
    return codec_command_encode(&command, out, CATRACA_COMMAND_ENCODED_MAX, length);
}

int store_spec_decode(const uint8_t *in, size_t length, struct engine_event_spec *out)
{
    struct engine_command command;
    if (in == NULL || codec_command_decode(in, length, &command) != 0 ||
        command.type != ENGINE_COMMAND_CREATE_EVENT)
        return CATRACA_E_CORRUPT;
    *out = command.u.create_event;
    return 0;
}

static void put_le(uint8_t *out, size_t *n, uint64_t value, int bytes)
{
    for (int b = 0; b < bytes; b++)
        out[(*n)++] = (uint8_t)(value >> (8 * b));
}

static uint64_t get_le(const uint8_t *in, int bytes)
{
    uint64_t value = 0;
    for (int b = bytes - 1; b >= 0; b--)
        value = value << 8 | in[b];
    return value;
}

void store_counts_encode(const struct store_event *event, uint8_t *out, size_t *length)
{
    size_t n = 0;
    for (uint32_t i = 0; i < event->spec.category_count && i < CATRACA_CATEGORIES_MAX; i++) {
        const struct engine_category_counts *c = &event->counts[i];
        uint32_t values[7] = {c->capacity,      c->available,        c->held,    c->sold,
                              c->waiting_count, c->waiting_quantity, c->returned};
        for (int v = 0; v < 7; v++)
            put_le(out, &n, values[v], 4);
        put_le(out, &n, (uint64_t)c->available_again_at_ms, 8);
    }
    if (event->draw.state != ENGINE_DRAW_NONE) {
        put_le(out, &n, event->draw.state, 1);
        put_le(out, &n, event->draw.prequeued, 4);
        put_le(out, &n, event->draw.deferred, 4);
    }
    *length = n;
}

void store_counts_decode(const uint8_t *in, size_t length, struct store_event *event)
{
    /* Rows written before the line policy hold 24 bytes a category (no returned tickets,
     * no available_again_at) and no draw. */
    size_t categories = event->spec.category_count;
    size_t record = categories > 0 && (length == categories * STORE_COUNTS_RECORD_BYTES ||
                                       length == categories * STORE_COUNTS_RECORD_BYTES +
                                                     STORE_COUNTS_DRAW_BYTES)
                        ? STORE_COUNTS_RECORD_BYTES
                        : STORE_COUNTS_RECORD_BYTES_V1;
    for (uint32_t i = 0; i < event->spec.category_count && (i + 1) * record <= length; i++) {
        const uint8_t *p = in + i * record;
        struct engine_category_counts *c = &event->counts[i];
        *c = (struct engine_category_counts){
            .capacity = (uint32_t)get_le(p, 4),
            .available = (uint32_t)get_le(p + 4, 4),
            .held = (uint32_t)get_le(p + 8, 4),
            .sold = (uint32_t)get_le(p + 12, 4),
            .waiting_count = (uint32_t)get_le(p + 16, 4),
            .waiting_quantity = (uint32_t)get_le(p + 20, 4),
        };
        if (record == STORE_COUNTS_RECORD_BYTES) {
            c->returned = (uint32_t)get_le(p + 24, 4);
            c->available_again_at_ms = (int64_t)get_le(p + 28, 8);
        }
    }
    /* A scheduled sale's draw follows the categories (absent for any other sale). */
    size_t draw_at = categories * record;
    event->draw = (struct engine_draw_view){.state = ENGINE_DRAW_NONE};
    if (record != STORE_COUNTS_RECORD_BYTES || length != draw_at + STORE_COUNTS_DRAW_BYTES ||
        in[draw_at] > ENGINE_DRAW_DONE)
        return;
    event->draw = (struct engine_draw_view){.state = in[draw_at],
                                            .prequeued = (uint32_t)get_le(in + draw_at + 1, 4),
                                            .deferred = (uint32_t)get_le(in + draw_at + 5, 4)};
}

bool store_row_needs_line_facts(const struct store_purchase *p)
{
    return p->status == ENGINE_STATUS_WAITING ||
           (p->status == ENGINE_STATUS_REJECTED && p->reason == ENGINE_REASON_LINE_FULL);
}

void store_line_facts_fill(const struct store_event *event, struct store_purchase *p)
{
    for (uint32_t i = 0; i < event->spec.category_count && i < CATRACA_CATEGORIES_MAX; i++) {
        if (strcmp(event->spec.categories[i].id, p->category) != 0)
            continue;
        const struct engine_category_counts *c = &event->counts[i];
        p->line = (struct store_line_facts){.is_known = true,
                                            .available = c->available,
                                            .held = c->held,
                                            .sold = c->sold,
                                            .returned = c->returned,
                                            .hold_ms = event->spec.hold_ms};
        return;
    }
}

size_t store_tickets_encode(const struct store_purchase *purchase, uint8_t *out)
{
    uint32_t count = purchase->ticket_count <= CATRACA_QUANTITY_MAX ? purchase->ticket_count : 0;
    for (uint32_t i = 0; i < count; i++)
        for (int b = 0; b < 8; b++)
            out[i * 8 + (uint32_t)b] = (uint8_t)(purchase->ticket_codes[i] >> (8 * b));
    return count * 8;
}

uint8_t store_tickets_decode_codes(const uint8_t *in, size_t length, uint64_t *codes)
{
    uint8_t count = (uint8_t)(length / 8 <= CATRACA_QUANTITY_MAX ? length / 8 : 0);
    for (uint32_t i = 0; i < count; i++) {
        codes[i] = 0;
        for (int b = 7; b >= 0; b--)
            codes[i] = (codes[i] << 8) | in[i * 8 + (uint32_t)b];
    }
    return count;
}

void store_tickets_decode(const uint8_t *in, size_t length, struct store_purchase *purchase)
{
    purchase->ticket_count = store_tickets_decode_codes(in, length, purchase->ticket_codes);
}
