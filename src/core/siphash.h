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

#endif
