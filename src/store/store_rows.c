/* store_rows.c - contract in store_rows.h. */
#include "store/store_rows.h"

#include "core/codec.h"
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

void store_counts_encode(const struct store_event *event, uint8_t *out, size_t *length)
{
    size_t n = 0;
    for (uint32_t i = 0; i < event->spec.category_count && i < CATRACA_CATEGORIES_MAX; i++) {
        const struct engine_category_counts *c = &event->counts[i];
        uint32_t values[6] = {c->capacity, c->available,     c->held,
                              c->sold,     c->waiting_count, c->waiting_quantity};
        for (int v = 0; v < 6; v++)
            for (int b = 0; b < 4; b++)
                out[n++] = (uint8_t)(values[v] >> (8 * b));
    }
    if (event->draw.state != ENGINE_DRAW_NONE) {
        uint32_t values[2] = {event->draw.prequeued, event->draw.deferred};
        out[n++] = event->draw.state;
        for (int v = 0; v < 2; v++)
            for (int b = 0; b < 4; b++)
                out[n++] = (uint8_t)(values[v] >> (8 * b));
    }
    *length = n;
}

void store_counts_decode(const uint8_t *in, size_t length, struct store_event *event)
{
    for (uint32_t i = 0; i < event->spec.category_count && (i + 1) * 24 <= length; i++) {
        uint32_t values[6];
        for (int v = 0; v < 6; v++) {
            const uint8_t *p = in + i * 24 + (size_t)v * 4;
            values[v] =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        }
        event->counts[i] = (struct engine_category_counts){values[0], values[1], values[2],
                                                           values[3], values[4], values[5]};
    }
    size_t draw_at = (size_t)event->spec.category_count * 24;
    event->draw = (struct engine_draw_view){.state = ENGINE_DRAW_NONE};
    if (length < draw_at + STORE_COUNTS_DRAW_BYTES || in[draw_at] > ENGINE_DRAW_DONE)
        return;
    uint32_t values[2];
    for (int v = 0; v < 2; v++) {
        const uint8_t *p = in + draw_at + 1 + (size_t)v * 4;
        values[v] =
            (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    event->draw = (struct engine_draw_view){
        .state = in[draw_at], .prequeued = values[0], .deferred = values[1]};
}

size_t store_tickets_encode(const struct store_purchase *purchase, uint8_t *out)
{
    uint32_t count = purchase->ticket_count <= CATRACA_QUANTITY_MAX ? purchase->ticket_count : 0;
    for (uint32_t i = 0; i < count; i++)
        for (int b = 0; b < 8; b++)
            out[i * 8 + (uint32_t)b] = (uint8_t)(purchase->ticket_codes[i] >> (8 * b));
    return count * 8;
}

void store_tickets_decode(const uint8_t *in, size_t length, struct store_purchase *purchase)
{
    purchase->ticket_count = (uint8_t)(length / 8 <= CATRACA_QUANTITY_MAX ? length / 8 : 0);
    for (uint32_t i = 0; i < purchase->ticket_count; i++) {
        purchase->ticket_codes[i] = 0;
        for (int b = 7; b >= 0; b--)
            purchase->ticket_codes[i] = (purchase->ticket_codes[i] << 8) | in[i * 8 + (uint32_t)b];
    }
}
