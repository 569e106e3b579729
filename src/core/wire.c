/* wire.c - contract in wire.h. */
#include "core/wire.h"

#include <string.h>

#include "core/error.h"

void wire_put_bytes(struct wire_writer *w, const void *data, size_t size)
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

void wire_put_uint(struct wire_writer *w, uint64_t value, unsigned bytes)
{
    uint8_t le[8];
    for (unsigned i = 0; i < bytes; i++)
        le[i] = (uint8_t)(value >> (8 * i));
    wire_put_bytes(w, le, bytes);
}

void wire_put_string(struct wire_writer *w, const char *s, size_t array_size, size_t limit)
{
    size_t length = strnlen(s, array_size);
    if (length > limit || length == array_size) {
        if (w->error == 0)
            w->error = CATRACA_E_INVALID;
        return;
    }
    wire_put_uint(w, length, 1);
    wire_put_bytes(w, s, length);
}

void wire_get_bytes(struct wire_reader *r, void *out, size_t size)
{
    if (r->error == 0 && r->length - r->offset < size)
        r->error = CATRACA_E_TRUNCATED;
    if (r->error != 0) {
        memset(out, 0, size);
        return;
    }
    memcpy(out, r->buffer + r->offset, size);
    r->offset += size;
}

uint64_t wire_get_uint(struct wire_reader *r, unsigned bytes)
{
    uint8_t le[8];
    wire_get_bytes(r, le, bytes);
    uint64_t value = 0;
    for (unsigned i = bytes; i > 0; i--)
        value = (value << 8) | le[i - 1];
    return value;
}

void wire_get_string(struct wire_reader *r, char *out, size_t limit)
{
    size_t length = (size_t)wire_get_uint(r, 1);
    out[0] = '\0';
    if (r->error != 0)
        return;
    if (length > limit) {
        r->error = CATRACA_E_CORRUPT;
        return;
    }
    wire_get_bytes(r, out, length);
    if (r->error == 0 && memchr(out, '\0', length) != NULL)
        r->error = CATRACA_E_CORRUPT;
    out[r->error == 0 ? length : 0] = '\0';
}

void wire_check(struct wire_reader *r, int condition)
{
    if (r->error == 0 && !condition)
        r->error = CATRACA_E_CORRUPT;
}
