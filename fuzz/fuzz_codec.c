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

static void check_command(const uint8_t *data, size_t size)
{
    static struct engine_command command, again;
    static const struct engine_command zero;
    static uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    if (codec_command_decode(data, size, &command) != 0) {
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
