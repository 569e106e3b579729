/*
 * siphash.h - SipHash-2-4 (Aumasson & Bernstein, 2012), a keyed 64-bit hash.
 *
 * Written here from the paper because the engine may depend on libc only and
 * needs a keyed hash for ticket codes and customer keys; not for secrets that
 * need more than 64 bits.
 */
#ifndef CATRACA_CORE_SIPHASH_H
#define CATRACA_CORE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const uint8_t key[16], const void *data, size_t length);

/*
 * siphash24(key, s, strnlen(s, array_size)), in one pass: the bounded string is
 * read a word at a time and its end found in the word (no strnlen first). Reads
 * whole 8-byte words of the array beyond the NUL (never beyond array_size) and
 * ignores them, so the bytes after the NUL need not be initialised.
 */
uint64_t siphash24_bounded_string(const uint8_t key[16], const char *s, size_t array_size);

#endif
