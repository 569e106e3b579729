/* stats.c - contract in stats.h. */
#include "gateway/stats.h"

#include <assert.h>
#include <string.h>

#define LATENCY_US_FIRST 10 /* the lower bound of bucket 1 */
#define OCTAVES 20          /* buckets 1..80: 10 us to 10 * 2^20 us (about 10.5 s) */

/* 2^(q/4), q = 0..3: the quarter-octave steps. */
static const double quarter_steps[4] = {1.0, 1.189207115002721, 1.414213562373095,
                                        1.681792830507429};
static const double eighth_step = 1.090507732665258; /* 2^(1/8): a bucket's geometric middle */

static_assert(STATS_LATENCY_BUCKETS == 4 * OCTAVES + 2, "one below, four an octave, one above");

static uint32_t bucket_of(int64_t latency_us)
{
    if (latency_us < LATENCY_US_FIRST)
        return 0;
    uint32_t octave = 0;
    while (octave < OCTAVES && ((int64_t)LATENCY_US_FIRST << (octave + 1)) <= latency_us)
        octave++;
    if (octave == OCTAVES)
        return STATS_LATENCY_BUCKETS - 1;
    double low = (double)((int64_t)LATENCY_US_FIRST << octave);
    uint32_t quarter = 3;
    while (quarter > 0 && (double)latency_us < low * quarter_steps[quarter])
        quarter--;
    return 1 + 4 * octave + quarter;
}

static double bucket_middle_ms(uint32_t bucket)
{
    if (bucket == 0)
        return LATENCY_US_FIRST / 2 / 1000.0;
    if (bucket == STATS_LATENCY_BUCKETS - 1)
        return (double)((int64_t)LATENCY_US_FIRST << OCTAVES) / 1000.0;
    uint32_t octave = (bucket - 1) / 4, quarter = (bucket - 1) % 4;
    double low_us = (double)((int64_t)LATENCY_US_FIRST << octave) * quarter_steps[quarter];
    return low_us * eighth_step / 1000.0;
}

double stats_latency_reported_ms(int64_t latency_us)
{
    return bucket_middle_ms(bucket_of(latency_us));
}

void stats_init(struct stats *stats)
{
    memset(stats, 0, sizeof(*stats));
    pthread_mutex_init(&stats->mutex, NULL);
}

void stats_destroy(struct stats *stats)
{
    pthread_mutex_destroy(&stats->mutex);
}

void stats_count_accepted(struct stats *stats, int64_t latency_us)
{
    atomic_fetch_add(&stats->accepted, 1);
    atomic_fetch_add(&stats->latency_buckets[bucket_of(latency_us)], 1);
}

void stats_count_commit(struct stats *stats, const struct worker_commit *commit)
{
    uint64_t decided = 0, expired = 0, confirmed = 0;
    for (size_t i = 0; i < commit->purchase_count; i++) {
        const struct store_purchase *row = &commit->purchases[i];
        decided += row->has_arrival;
        expired += row->status == ENGINE_STATUS_EXPIRED;
        confirmed += row->status == ENGINE_STATUS_CONFIRMED;
    }
    if (decided > 0)
        atomic_fetch_add(&stats->decided, decided);
    if (expired > 0)
        atomic_fetch_add(&stats->expired, expired);
    if (confirmed > 0)
        atomic_fetch_add(&stats->confirmed, confirmed);
}

/* The latency at quantile q of one interval's counts (nearest rank). */
static double percentile_ms(const uint64_t counts[STATS_LATENCY_BUCKETS], uint64_t total, double q)
{
    assert(total > 0);
    uint64_t rank = (uint64_t)(q * (double)total);
    if ((double)rank < q * (double)total)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < STATS_LATENCY_BUCKETS; i++) {
        seen += counts[i];
        if (seen >= rank)
            return bucket_middle_ms(i);
    }
    return bucket_middle_ms(STATS_LATENCY_BUCKETS - 1);
}

/* now - *previous, and *previous = now: one counter's share of the interval. */
static uint64_t take_delta(atomic_uint_fast64_t *counter, uint64_t *previous)
{
    uint64_t now = atomic_load(counter);
    uint64_t delta = now - *previous;
    *previous = now;
    return delta;
}

void stats_sample(struct stats *stats, int64_t at_ms, uint64_t queue_depth,
                  struct stats_sample *out)
{
    struct stats_sample s = {.at_ms = at_ms, .queue_depth = queue_depth};
    s.accepted = take_delta(&stats->accepted, &stats->previous_accepted);
    s.decided = take_delta(&stats->decided, &stats->previous_decided);
    s.expired = take_delta(&stats->expired, &stats->previous_expired);
    s.confirmed = take_delta(&stats->confirmed, &stats->previous_confirmed);
    uint64_t counts[STATS_LATENCY_BUCKETS], total = 0;
    for (uint32_t i = 0; i < STATS_LATENCY_BUCKETS; i++) {
        counts[i] = take_delta(&stats->latency_buckets[i], &stats->previous_buckets[i]);
        total += counts[i];
    }
    /* The accepted counter and the buckets are two atomics: an accept counted between the two
     * reads lands in the next sample's percentiles, never lost. */
    s.has_latency = total > 0;
    if (s.has_latency) {
        s.accept_p50_ms = percentile_ms(counts, total, 0.50);
        s.accept_p99_ms = percentile_ms(counts, total, 0.99);
    }
    pthread_mutex_lock(&stats->mutex);
    stats->ring[stats->head] = s;
    stats->head = (stats->head + 1) % STATS_SAMPLES_MAX;
    if (stats->count < STATS_SAMPLES_MAX)
        stats->count++;
    pthread_mutex_unlock(&stats->mutex);
    if (out != NULL)
        *out = s;
}

size_t stats_history(struct stats *stats, struct stats_sample *out, size_t max)
{
    pthread_mutex_lock(&stats->mutex);
    size_t count = stats->count < max ? stats->count : max;
    /* the newest `count`, oldest first */
    uint32_t start = (stats->head + STATS_SAMPLES_MAX - (uint32_t)count) % STATS_SAMPLES_MAX;
    for (size_t i = 0; i < count; i++)
        out[i] = stats->ring[(start + i) % STATS_SAMPLES_MAX];
    pthread_mutex_unlock(&stats->mutex);
    return count;
}
