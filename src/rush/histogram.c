/*
 * histogram.c - log-linear buckets (see histogram.h).
 *
 * A value v >= 2^SUB_BITS is shifted right by `shift` = msb(v) - (SUB_BITS - 1)
 * so that its top SUB_BITS bits, the mantissa, lie in [HALF_COUNT, SUB_COUNT);
 * its bucket is SUB_COUNT + (shift - 1) * HALF_COUNT + (mantissa - HALF_COUNT).
 */
#include "rush/histogram.h"

#include <assert.h>
#include <string.h>

void histogram_init(struct histogram *h)
{
    memset(h, 0, sizeof(*h));
}

uint32_t histogram_bucket_of(uint64_t value)
{
    if (value < HISTOGRAM_SUB_COUNT)
        return (uint32_t)value;
    uint32_t msb = 63u - (uint32_t)__builtin_clzll(value);
    uint32_t shift = msb - (HISTOGRAM_SUB_BITS - 1);
    uint32_t mantissa = (uint32_t)(value >> shift);
    assert(mantissa >= HISTOGRAM_HALF_COUNT && mantissa < HISTOGRAM_SUB_COUNT);
    uint32_t bucket = HISTOGRAM_SUB_COUNT + (shift - 1) * HISTOGRAM_HALF_COUNT +
                      (mantissa - HISTOGRAM_HALF_COUNT);
    assert(bucket < HISTOGRAM_BUCKETS);
    return bucket;
}

uint64_t histogram_bucket_upper(uint32_t bucket)
{
    assert(bucket < HISTOGRAM_BUCKETS);
    if (bucket < HISTOGRAM_SUB_COUNT)
        return bucket;
    uint32_t k = bucket - HISTOGRAM_SUB_COUNT;
    uint32_t shift = k / HISTOGRAM_HALF_COUNT + 1;
    uint64_t mantissa = k % HISTOGRAM_HALF_COUNT + HISTOGRAM_HALF_COUNT;
    /* Unsigned wrap-around gives UINT64_MAX for the very last bucket, as it should. */
    return ((mantissa + 1) << shift) - 1;
}

void histogram_record(struct histogram *h, uint64_t value)
{
    h->buckets[histogram_bucket_of(value)]++;
    h->count++;
    h->sum += value;
    if (value > h->max)
        h->max = value;
}

uint64_t histogram_percentile(const struct histogram *h, double fraction)
{
    if (h->count == 0)
        return 0;
    if (fraction > 1.0)
        fraction = 1.0;
    /* The rank of the wanted value, 1-based: ceil(fraction * count), at least 1. */
    uint64_t rank = (uint64_t)(fraction * (double)h->count);
    if ((double)rank < fraction * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t upper = histogram_bucket_upper(i);
            return upper < h->max ? upper : h->max;
        }
    }
    return h->max;
}
