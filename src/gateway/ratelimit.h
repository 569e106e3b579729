/*
 * ratelimit.h - token buckets per key (a customer, a client IP), in a table
 * of fixed size: memory never grows, whatever the number of keys.
 *
 * A key lives in one of PROBE slots after its hash; a new key takes an empty
 * slot, else the slot touched longest ago (its bucket has refilled the most,
 * so forgetting it costs that client the least). Time is passed in. Safe
 * from several threads (striped locks). rate 0 disables the limiter.
 */
#ifndef CATRACA_GATEWAY_RATELIMIT_H
#define CATRACA_GATEWAY_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit_slot {
    uint64_t key_hash;
    int64_t touched_ms;
    double tokens;
};

struct ratelimit {
    struct ratelimit_slot *slots;
    uint32_t slot_count; /* a power of two */
    pthread_mutex_t locks[64];
    double rate_per_ms, burst;
};

int ratelimit_init(struct ratelimit *limiter, uint32_t keys_max, double rate_per_s, double burst);
void ratelimit_destroy(struct ratelimit *limiter);
/* Takes one token: true when allowed; else *retry_after_ms says when one will be there. */
bool ratelimit_take(struct ratelimit *limiter, const char *key, int64_t now_ms,
                    int64_t *retry_after_ms);

#endif
