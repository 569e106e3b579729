#include "core/siphash.h"

#include <string.h>

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* One 8-byte load (memcpy: any alignment), not eight byte loads: SipHash of a customer id is
 * on the engine's path for every purchase. */
static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The last 0..7 bytes, little-endian, without copying them through a buffer. */
static uint64_t load_le_tail(const uint8_t *p, size_t count)
{
    uint64_t v = 0;
    switch (count) {
    case 7:
        v |= (uint64_t)p[6] << 48;
        /* fall through */
    case 6:
        v |= (uint64_t)p[5] << 40;
        /* fall through */
    case 5:
        v |= (uint64_t)p[4] << 32;
        /* fall through */
    case 4: {
        uint32_t low;
        memcpy(&low, p, sizeof(low));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        low = __builtin_bswap32(low);
#endif
        return v | low;
    }
    case 3:
        v |= (uint64_t)p[2] << 16;
        /* fall through */
    case 2:
        v |= (uint64_t)p[1] << 8;
        /* fall through */
    case 1:
        v |= p[0];
        /* fall through */
    default:
        return v;
    }
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

uint64_t siphash24(const uint8_t key[16], const void *data, size_t length)
{
    const uint8_t *in = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = length - length % 8;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = ((uint64_t)length << 56) | load_le_tail(in + whole, length - whole);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
