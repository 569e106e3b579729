/*
 * sha256.h - SHA-256 (FIPS 180-4), one-shot over up to two byte strings.
 *
 * Written here from the standard because the engine may depend on libc only
 * and the pre-queue draw must be recomputable by anyone with a stock SHA-256
 * (Python's hashlib, `sha256sum`): the engine orders the draw by
 * SHA-256(seed || purchase id text). Tested against the FIPS examples and
 * against OpenSSL in tests/core/test_engine.c.
 */
#ifndef CATRACA_CORE_SHA256_H
#define CATRACA_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

/* out = SHA-256(a || b); either part may be empty (NULL with length 0). */
void sha256_two(const void *a, size_t a_length, const void *b, size_t b_length,
                uint8_t out[SHA256_BYTES]);

#endif
