/* libFuzzer: decoding untrusted bytes never crashes, and what decodes re-encodes identically. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct engine_command command, again;
    uint8_t buffer[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    if (codec_command_decode(data, size, &command) == 0) {
        if (codec_command_encode(&command, buffer, sizeof(buffer), &length) != 0)
            abort();
        if (length != size || memcmp(buffer, data, size) != 0)
            abort();
        if (codec_command_decode(buffer, length, &again) != 0)
            abort();
    }
    struct engine_outcome outcome;
    uint8_t out[CATRACA_OUTCOME_ENCODED_MAX];
    if (codec_outcome_decode(data, size, &outcome) == 0) {
        if (codec_outcome_encode(&outcome, out, sizeof(out), &length) != 0)
            abort();
        if (length != size || memcmp(out, data, size) != 0)
            abort();
    }
    return 0;
}
