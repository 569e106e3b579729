/*
 * libFuzzer: the input decoded as a command and as an outcome. Decoding never reads past the
 * input (libFuzzer hands over an exact-size buffer, ASan watches); a failed decode leaves *out
 * zeroed; whatever decodes re-encodes to the very same bytes and decodes again to the same value,
 * except that a record of an older format re-encodes as CODEC_VERSION: its version byte differs
 * and a CREATE_EVENT's spec gains what the newer formats append (codec.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes format CODEC_VERSION adds to a CREATE_EVENT spec of format `version`. */
static size_t spec_growth(uint8_t version)
{
    return version == 1 ? 1 + 16 : version == 2 ? 16 : 0; /* line policy, schedule */
}

/*
 * codec_command_decode_fields gives the same answer as codec_command_decode and, on success,
 * the same type, time and fields of the type (strings up to their NUL), whatever *out held.
 */
static void check_fields_decoder(const uint8_t *data, size_t size, int error,
                                 const struct engine_command *full)
{
    static struct engine_command fields;
    memset(&fields, 0x5a, sizeof(fields));
    if (codec_command_decode_fields(data, size, &fields) != error)
        abort();
    if (error != 0 || fields.type != full->type || fields.now_ms != full->now_ms)
        return;
    const void *a = &fields.u, *b = &full->u;
    size_t n = 0;
    switch (full->type) {
    case ENGINE_COMMAND_PURCHASE:
        if (fields.u.purchase.purchase_id != full->u.purchase.purchase_id ||
            strcmp(fields.u.purchase.customer, full->u.purchase.customer) != 0 ||
            strcmp(fields.u.purchase.category, full->u.purchase.category) != 0 ||
            fields.u.purchase.quantity != full->u.purchase.quantity)
            abort();
        break;
    case ENGINE_COMMAND_CONFIRM:
        if (fields.u.confirm.purchase_id != full->u.confirm.purchase_id ||
            strcmp(fields.u.confirm.payment_ref, full->u.confirm.payment_ref) != 0)
            abort();
        break;
    case ENGINE_COMMAND_CANCEL:
        if (fields.u.cancel.purchase_id != full->u.cancel.purchase_id ||
            strcmp(fields.u.cancel.customer, full->u.cancel.customer) != 0)
            abort();
        break;
    case ENGINE_COMMAND_SET_STATE:
        n = sizeof(full->u.set_state);
        break;
    case ENGINE_COMMAND_TICK:
        break;
    default: /* CREATE_EVENT, DRAW: the full decoder itself */
        n = sizeof(full->u);
    }
    if (n != 0 && memcmp(a, b, n) != 0)
        abort();
}

static void check_command(const uint8_t *data, size_t size)
{
    static struct engine_command command, again;
    static const struct engine_command zero;
    static uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    int error = codec_command_decode(data, size, &command);
    check_fields_decoder(data, size, error, &command);
    if (error != 0) {
        if (memcmp(&command, &zero, sizeof(zero)) != 0)
            abort();
        return;
    }
    if (codec_command_encode(&command, buffer, sizeof(buffer), &length) != 0)
        abort();
    size_t growth = command.type == ENGINE_COMMAND_CREATE_EVENT ? spec_growth(data[0]) : 0;
    if (buffer[0] != CODEC_VERSION || length != size + growth ||
        memcmp(buffer + 1, data + 1, size - 1) != 0)
        abort();
    if (codec_command_decode(buffer, length, &again) != 0)
        abort();
    if (memcmp(&again, &command, sizeof(command)) != 0)
        abort();
}

static void check_outcome(const uint8_t *data, size_t size)
{
    static struct engine_outcome outcome, again;
    static const struct engine_outcome zero;
    uint8_t buffer[CATRACA_OUTCOME_ENCODED_MAX];
    size_t length = 0;
    if (codec_outcome_decode(data, size, &outcome) != 0) {
        if (memcmp(&outcome, &zero, sizeof(zero)) != 0)
            abort();
        return;
    }
    if (codec_outcome_encode(&outcome, buffer, sizeof(buffer), &length) != 0)
        abort();
    if (buffer[0] != CODEC_VERSION || length != size || memcmp(buffer + 1, data + 1, size - 1) != 0)
        abort();
    if (codec_outcome_decode(buffer, length, &again) != 0)
        abort();
    if (memcmp(&again, &outcome, sizeof(outcome)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_command(data, size);
    check_outcome(data, size);
    return 0;
}
