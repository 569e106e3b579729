/*
 * wire.h - bounded little-endian writing and reading of byte buffers, shared
 * by the codec (log records) and engine snapshots.
 *
 * A writer or reader carries its first error and ignores every later call, so
 * a format is written as a straight sequence of puts/gets and checked once at
 * the end. A reader never reads past `length`; a failed get yields zeros.
 */
#ifndef CATRACA_CORE_WIRE_H
#define CATRACA_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct wire_writer {
    uint8_t *buffer;
    size_t capacity, length;
    int error; /* CATRACA_E_NOSPACE or CATRACA_E_INVALID once set */
};

struct wire_reader {
    const uint8_t *buffer;
    size_t length, offset;
    int error; /* CATRACA_E_TRUNCATED or CATRACA_E_CORRUPT once set */
};

void wire_put_bytes(struct wire_writer *w, const void *data, size_t size);
void wire_put_uint(struct wire_writer *w, uint64_t value, unsigned bytes);
/* A string from a fixed array: one length byte, the bytes up to the first NUL.
 * CATRACA_E_INVALID when it is longer than limit or has no NUL in array_size. */
void wire_put_string(struct wire_writer *w, const char *s, size_t array_size, size_t limit);

void wire_get_bytes(struct wire_reader *r, void *out, size_t size);
uint64_t wire_get_uint(struct wire_reader *r, unsigned bytes);
/* Into out[limit + 1], NUL-terminated; CATRACA_E_CORRUPT for a longer string or an inner NUL. */
void wire_get_string(struct wire_reader *r, char *out, size_t limit);
/* Sets CATRACA_E_CORRUPT unless condition holds (and no error yet). */
void wire_check(struct wire_reader *r, int condition);

#endif
