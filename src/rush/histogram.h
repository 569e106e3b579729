/*
 * histogram.h - a latency histogram in fixed memory, HdrHistogram-style.
 *
 * Values (any unit; rush records microseconds) fall into log-linear buckets:
 * exact below 2^HISTOGRAM_SUB_BITS, then 2^(HISTOGRAM_SUB_BITS - 1) buckets per
 * power of two, so a bucket is at most 1/64 (1.6 %) wide relative to its values.
 * Recording is O(1) and never allocates; a million values cost what ten do.
 * Percentiles are the upper bound of the bucket holding that rank, so they never
 * understate a latency.
 */
#ifndef CATRACA_RUSH_HISTOGRAM_H
#define CATRACA_RUSH_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_SUB_BITS 7
#define HISTOGRAM_SUB_COUNT (1u << HISTOGRAM_SUB_BITS)
#define HISTOGRAM_HALF_COUNT (HISTOGRAM_SUB_COUNT / 2)
/* Shifts 1..(64 - HISTOGRAM_SUB_BITS) each add HISTOGRAM_HALF_COUNT buckets. */
#define HISTOGRAM_BUCKETS (HISTOGRAM_SUB_COUNT + (64 - HISTOGRAM_SUB_BITS) * HISTOGRAM_HALF_COUNT)

struct histogram {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t buckets[HISTOGRAM_BUCKETS];
};

/* Empties h (the caller owns the storage). */
void histogram_init(struct histogram *h);
void histogram_record(struct histogram *h, uint64_t value);
/*
 * The smallest bucket upper bound at or above which lies `fraction` (0..1] of the
 * values, clamped to the maximum recorded; 0 when nothing was recorded.
 */
uint64_t histogram_percentile(const struct histogram *h, double fraction);
/* Bucket index of a value, and the largest value that bucket holds (exposed for tests). */
uint32_t histogram_bucket_of(uint64_t value);
uint64_t histogram_bucket_upper(uint32_t bucket);

#endif
