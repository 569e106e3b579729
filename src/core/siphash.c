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

/* The state after the key, before any message word. */
#define SIPHASH_BEGIN(key)                                                                         \
    uint64_t k0 = load_le64(key), k1 = load_le64((key) + 8);                                       \
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;                                                      \
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;                                                      \
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;                                                      \
    uint64_t v3 = 0x7465646279746573ULL ^ k1

/* One message word, two compression rounds. */
#define SIPHASH_COMPRESS(m)                                                                        \
    do {                                                                                           \
        uint64_t word_ = (m);                                                                      \
        v3 ^= word_;                                                                               \
        SIPROUND;                                                                                  \
        SIPROUND;                                                                                  \
        v0 ^= word_;                                                                               \
    } while (0)

/* The last word (length << 56 | the 0..7 trailing bytes) and four finalisation rounds. */
#define SIPHASH_END(length, tail)                                                                  \
    do {                                                                                           \
        SIPHASH_COMPRESS(((uint64_t)(length) << 56) | (tail));                                     \
        v2 ^= 0xff;                                                                                \
        SIPROUND;                                                                                  \
        SIPROUND;                                                                                  \
        SIPROUND;                                                                                  \
        SIPROUND;                                                                                  \
    } while (0)

uint64_t siphash24(const uint8_t key[16], const void *data, size_t length)
{
    const uint8_t *in = data;
    SIPHASH_BEGIN(key);
    size_t whole = length - length % 8;
    for (size_t i = 0; i < whole; i += 8)
        SIPHASH_COMPRESS(load_le64(in + i));
    SIPHASH_END(length, load_le_tail(in + whole, length - whole));
    return v0 ^ v1 ^ v2 ^ v3;
}

#define BYTES_01 0x0101010101010101ULL
#define BYTES_80 0x8080808080808080ULL

/*
 * Each word's end test is the classic "has a zero byte": (w - 0x01..) & ~w & 0x80..
 * marks the lowest zero byte of w exactly (a borrow only runs upwards from a zero
 * byte, so no byte below the first zero is marked); bytes above it may be marked
 * too and are ignored. Words are little-endian, so the lowest byte is the first.
 */
uint64_t siphash24_bounded_string(const uint8_t key[16], const char *s, size_t array_size)
{
    const uint8_t *in = (const uint8_t *)s;
    SIPHASH_BEGIN(key);
    size_t offset = 0, length;
    uint64_t tail;
    for (;; offset += 8) {
        if (offset + 8 > array_size) {
            /* Fewer than 8 bytes of the array left, none of them read yet. */
            size_t bytes = 0;
            while (offset + bytes < array_size && in[offset + bytes] != 0)
                bytes++;
            length = offset + bytes;
            tail = load_le_tail(in + offset, bytes);
            break;
        }
        uint64_t word = load_le64(in + offset);
        uint64_t zeros = (word - BYTES_01) & ~word & BYTES_80;
        if (zeros != 0) {
            /* The lowest mark is bit 8 * bytes + 7, bytes (0..7) the ones before the NUL. */
            uint64_t lowest = zeros & (0 - zeros);
            length = offset + (unsigned)__builtin_ctzll(zeros) / 8;
            tail = word & ((lowest >> 7) - 1);
            break;
        }
        SIPHASH_COMPRESS(word);
    }
    SIPHASH_END(length, tail);
    return v0 ^ v1 ^ v2 ^ v3;
}
