/*
 * stats.h - this process's last five minutes, one sample a second, for the
 * organizer's console (GET /v1/stats): purchases accepted, decided, expired
 * and confirmed in each second, the log's depth at its end, and the accept
 * latency's median and 99th percentile within it.
 *
 * Memory is fixed at init: STATS_SAMPLES_MAX samples in a ring and one
 * latency histogram of STATS_LATENCY_BUCKETS counters, logarithmic from
 * 10 us to about 10 s, four buckets an octave (a percentile is reported as
 * its bucket's geometric middle: within 9 % of the true value). Counting is
 * lock-free (atomics) from any thread; one thread takes the samples
 * (stats_sample), each the difference of the cumulative counters since the
 * previous one; readers copy the ring under its mutex.
 */
#ifndef CATRACA_GATEWAY_STATS_H
#define CATRACA_GATEWAY_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/worker.h"

#define STATS_SAMPLES_MAX 300
#define STATS_INTERVAL_MS 1000
#define STATS_LATENCY_BUCKETS 82 /* 80 of 1/4 octave from 10 us, one below, one above */

struct stats_sample {
    int64_t at_ms; /* the end of the second it covers */
    uint64_t accepted, decided, expired, confirmed;
    uint64_t queue_depth; /* log entries not decided yet, over every event, at at_ms */
    bool has_latency;     /* false: nothing accepted in that second (percentiles null) */
    double accept_p50_ms, accept_p99_ms;
};

struct stats {
    /* cumulative, any thread */
    atomic_uint_fast64_t accepted, decided, expired, confirmed;
    atomic_uint_fast64_t latency_buckets[STATS_LATENCY_BUCKETS];
    /* the sampling thread's: the cumulative values at the previous sample */
    uint64_t previous_accepted, previous_decided, previous_expired, previous_confirmed;
    uint64_t previous_buckets[STATS_LATENCY_BUCKETS];
    /* the ring, under mutex */
    pthread_mutex_t mutex;
    struct stats_sample ring[STATS_SAMPLES_MAX];
    uint32_t head, count; /* head: where the next sample goes */
};

void stats_init(struct stats *stats);
void stats_destroy(struct stats *stats);
/* A purchase answered 202, latency_us after its request arrived. Any thread. */
void stats_count_accepted(struct stats *stats, int64_t latency_us);
/* What one committed batch decided: first decisions, expiries, confirmations. Any thread. */
void stats_count_commit(struct stats *stats, const struct worker_commit *commit);
/* One thread: closes the interval ending at at_ms into a sample, appends it (dropping the
 * oldest beyond STATS_SAMPLES_MAX) and copies it to *out when out is not NULL. */
void stats_sample(struct stats *stats, int64_t at_ms, uint64_t queue_depth,
                  struct stats_sample *out);
/* The last samples, oldest first: up to max into out; returns how many. */
size_t stats_history(struct stats *stats, struct stats_sample *out, size_t max);
/* The value a latency of latency_us is reported as (its bucket's middle), in ms. For tests. */
double stats_latency_reported_ms(int64_t latency_us);

#endif
