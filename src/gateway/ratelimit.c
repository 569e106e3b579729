/* ratelimit.c - contract in ratelimit.h. */
#include "gateway/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define PROBE 4

static uint64_t hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = key; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ULL;
    return h | 1; /* 0 marks an empty slot */
}

int ratelimit_init(struct ratelimit *l, uint32_t keys_max, double rate_per_s, double burst)
{
    memset(l, 0, sizeof(*l));
    l->rate_per_ms = rate_per_s / 1000.0;
    l->burst = burst;
    if (rate_per_s <= 0)
        return 0;
    l->slot_count = 64;
    while (l->slot_count < keys_max)
        l->slot_count *= 2;
    l->slots = calloc(l->slot_count, sizeof(*l->slots));
    if (l->slots == NULL)
        return CATRACA_E_NOMEM;
    for (int i = 0; i < 64; i++)
        pthread_mutex_init(&l->locks[i], NULL);
    return 0;
}

void ratelimit_destroy(struct ratelimit *l)
{
    if (l->slots == NULL)
        return;
    for (int i = 0; i < 64; i++)
        pthread_mutex_destroy(&l->locks[i]);
    free(l->slots);
    l->slots = NULL;
}

/* The probe window of a key never crosses a lock stripe boundary (aligned groups of PROBE). */
static struct ratelimit_slot *find_slot(struct ratelimit *l, uint64_t hash, uint32_t first)
{
    struct ratelimit_slot *window = &l->slots[first], *victim = NULL;
    for (uint32_t i = 0; i < PROBE; i++)
        if (window[i].key_hash == hash)
            return &window[i];
    for (uint32_t i = 0; i < PROBE; i++) {
        if (window[i].key_hash == 0) {
            victim = &window[i];
            break;
        }
        if (victim == NULL || window[i].touched_ms < victim->touched_ms)
            victim = &window[i];
    }
    victim->key_hash = hash;
    victim->tokens = l->burst;
    victim->touched_ms = INT64_MIN;
    return victim;
}

bool ratelimit_take(struct ratelimit *l, const char *key, int64_t now_ms, int64_t *retry_after_ms)
{
    if (l->slots == NULL)
        return true;
    uint64_t hash = hash_key(key);
    uint32_t first = (uint32_t)(hash >> 20) & (l->slot_count - 1) & ~(uint32_t)(PROBE - 1);
    pthread_mutex_t *lock = &l->locks[(first / PROBE) % 64];
    pthread_mutex_lock(lock);
    struct ratelimit_slot *slot = find_slot(l, hash, first);
    if (slot->touched_ms != INT64_MIN && now_ms > slot->touched_ms) {
        slot->tokens += (double)(now_ms - slot->touched_ms) * l->rate_per_ms;
        if (slot->tokens > l->burst)
            slot->tokens = l->burst;
    }
    if (slot->touched_ms == INT64_MIN || now_ms > slot->touched_ms)
        slot->touched_ms = now_ms;
    bool is_allowed = slot->tokens >= 1.0;
    if (is_allowed)
        slot->tokens -= 1.0;
    else
        *retry_after_ms = (int64_t)((1.0 - slot->tokens) / l->rate_per_ms) + 1;
    pthread_mutex_unlock(lock);
    return is_allowed;
}
