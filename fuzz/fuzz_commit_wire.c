/*
 * libFuzzer target for commit_wire_decode: a gateway decodes whatever arrives
 * on the Redis channel. Any bytes must be refused or decoded within bounds;
 * a decoded message must encode back to exactly the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/commit_wire.h"

struct input {
    const uint8_t *data;
    size_t size;
};

static void reencode(void *context, const struct worker_commit *commit)
{
    const struct input *in = context;
    size_t capacity = commit_wire_size_max(commit), length = 0;
    uint8_t *buffer = malloc(capacity);
    if (buffer == NULL)
        return;
    if (commit_wire_encode(commit, buffer, capacity, &length) != 0 || length != in->size ||
        memcmp(buffer, in->data, length) != 0)
        abort();
    free(buffer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    commit_wire_decode(data, size, reencode, &in);
    return 0;
}
