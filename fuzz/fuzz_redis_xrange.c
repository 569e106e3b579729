/*
 * libFuzzer target for redis_xrange_feed: read() decodes whatever the Redis server (or anything
 * listening on its port) sends back to an XRANGE. Any bytes, fed in pieces of any size (as they
 * arrive from the socket), must be refused or decoded within bounds, to the same entries as
 * when fed whole, and a whole item must never be left unused once the buffer holds it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "log/redis_xrange.h"

#define ENTRIES_MAX 8

static struct log_entry whole_entries[ENTRIES_MAX], piece_entries[ENTRIES_MAX];
static uint8_t whole_records[ENTRIES_MAX * CATRACA_COMMAND_ENCODED_MAX];
static uint8_t piece_records[ENTRIES_MAX * CATRACA_COMMAND_ENCODED_MAX];

/* Feeds data as a reader would: `step` more bytes at a time, unused bytes kept in front. */
static int decode(const char *data, size_t size, size_t step, struct redis_xrange *x,
                  struct log_entry *entries, uint8_t *records)
{
    redis_xrange_begin(x, entries, records, ENTRIES_MAX);
    size_t start = 0, end = 0;
    while (!redis_xrange_is_done(x)) {
        if (end == size && start == end)
            return 1; /* ended before the reply did */
        end = end + step < size ? end + step : size;
        size_t used = 0;
        int error = redis_xrange_feed(x, data + start, end - start, &used);
        if (error != 0)
            return error;
        if (used > end - start)
            abort();
        start += used;
        if (end == size && used == 0 && !redis_xrange_is_done(x))
            return 1; /* incomplete */
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = data[0] % 64 + 1;
    /* A copy of its own so that ASan sees the end of the bytes. */
    char *bytes = malloc(size - 1 ? size - 1 : 1);
    if (bytes == NULL)
        return 0;
    memcpy(bytes, data + 1, size - 1);
    struct redis_xrange whole, pieces;
    int a = decode(bytes, size - 1, size, &whole, whole_entries, whole_records);
    int b = decode(bytes, size - 1, step, &pieces, piece_entries, piece_records);
    if (a != b || whole.count != pieces.count)
        abort();
    for (size_t i = 0; a == 0 && i < whole.count; i++) {
        const struct log_entry *w = &whole_entries[i], *p = &piece_entries[i];
        if (w->record_length > CATRACA_COMMAND_ENCODED_MAX ||
            w->record_length != p->record_length || w->time_ms != p->time_ms ||
            log_seq_compare(w->seq, p->seq) != 0 ||
            memcmp(w->record, p->record, w->record_length) != 0)
            abort();
    }
    free(bytes);
    return 0;
}
