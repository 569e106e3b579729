/*
 * limits_redis.h - the purchase limits every gateway of a distributed
 * deployment shares, kept in Redis: the per-customer and per-IP token buckets
 * and the set of proof-of-work challenges already spent.
 *
 * Checks go to Redis in batches, ONE EVALSHA for up to LIMITS_REDIS_BATCH_MAX
 * of them (the script is loaded once per connection with SCRIPT LOAD, and
 * loaded again and retried once after NOSCRIPT, when Redis restarted or its
 * script cache was flushed); gateway/limits_batch.h gathers them off the HTTP
 * threads. For each check, in order, the script atomically:
 *   1. takes a token from the client address's bucket, if one is named;
 *   2. then from the customer's bucket, if one is named;
 *   3. then, when both allowed, spends the challenge: SET NX with an expiry;
 *   4. then claims the Idempotency-Key, if one is named (a keyed purchase over a
 *      log that cannot check keys itself: Kafka, log.h's LOG_FLAG_KEYS_IN_PURCHASE_IDS):
 *      a key nobody claimed is set to the request's hash for LIMITS_REDIS_CLAIM_TTL_S;
 *      one claimed with the same hash is LIMITS_REDIS_KEY_REPEATED (the first request's
 *      retry, on any gateway), with another hash LIMITS_REDIS_KEY_MISMATCH.
 * It stops at the first refusal, so a refused step spends nothing after it
 * (the order of the in-process limiter: address, customer, then the
 * challenge). Time is Redis's own (TIME): gateways with skewed clocks still
 * fill one bucket at one rate.
 *
 * Keys: "catraca:rate:ip:<address>", "catraca:rate:customer:<subject>" (hashes
 * {tokens, at_ms}; each expires once its bucket would be full again, so an
 * idle key costs nothing after burst/rate seconds) and
 * "catraca:challenge:<challenge hex>" (expires with the challenge plus
 * LIMITS_REDIS_SKEW_S, the allowance for clocks of gateways that disagree) and
 * "catraca:key:<claim>" (the request hash in hex, for LIMITS_REDIS_CLAIM_TTL_S).
 * Memory in Redis is bounded by the keys of clients active in the last
 * burst/rate seconds, the challenges solved in the last TTL and the keys claimed
 * in the last LIMITS_REDIS_CLAIM_TTL_S (about 150 bytes each). These writes
 * are neither in the AOF nor on replicas (no fsync per purchase for them):
 * after Redis restarts or fails over, buckets start full and a challenge
 * spent before may be spent once more within its TTL, and a key's claim is
 * forgotten (its retries are then appended again, as without claims: the
 * derived purchase id still makes them one purchase).
 *
 * Why not in the append's round trip: purchases are group-committed by the
 * appender through the generic log interface (log.h, shared with SQLite; its
 * Redis script is log_redis.c's), which would have to learn per-item
 * refusals with a retry time; and a limited purchase should be answered 429
 * without taking a place in the append queue. So the limits are a group
 * commit of their own: one round trip per batch, before the append's.
 *
 * A handle is used by one thread at a time. It connects lazily, and after any
 * I/O error or time-out drops its connection and reconnects on the next call;
 * while Redis is down every check returns CATRACA_E_UNAVAILABLE (the caller
 * fails closed: 503).
 */
#ifndef CATRACA_GATEWAY_LIMITS_REDIS_H
#define CATRACA_GATEWAY_LIMITS_REDIS_H

#include <stddef.h>
#include <stdint.h>

/* Checks per script call (limits_redis_take_many). */
#define LIMITS_REDIS_BATCH_MAX 512
/* A challenge's key outlives its expiry by this much: gateways' clocks may disagree. */
#define LIMITS_REDIS_SKEW_S 30
/* An Idempotency-Key's claim lasts this long: a day of retries. */
#define LIMITS_REDIS_CLAIM_TTL_S 86400

struct limits_redis_check {
    const char *ip; /* NULL: no per-IP limit */
    double ip_rate_per_s, ip_burst;
    const char *customer; /* NULL: no per-customer limit */
    double customer_rate_per_s, customer_burst;
    const char *challenge;   /* NULL: none; else its 64 hex digits, spent once */
    int64_t challenge_ttl_s; /* seconds the challenge stays valid from now, >= 0 */
    /* NULL: no key; else the customer and the Idempotency-Key as one text that tells every
     * (customer, key) pair apart (api_purchases.c writes "<customer length>:<customer>:<key>"),
     * and the request's hash the claim holds. */
    const char *claim;
    uint64_t claim_hash;
};

enum limits_redis_outcome {
    LIMITS_REDIS_ALLOWED = 0,
    LIMITS_REDIS_IP_LIMITED = 1,
    LIMITS_REDIS_CUSTOMER_LIMITED = 2,
    LIMITS_REDIS_REPLAYED = 3,     /* the challenge was spent before (on any gateway) */
    LIMITS_REDIS_KEY_REPEATED = 4, /* the key was claimed before, by the same request */
    LIMITS_REDIS_KEY_MISMATCH = 5, /* the key was claimed before, by another request */
};

struct limits_redis;

/* A handle (connected on first use): 0, CATRACA_E_INVALID (bad URL) or CATRACA_E_NOMEM. */
int limits_redis_open(const char *url, int timeout_ms, struct limits_redis **out);
void limits_redis_close(struct limits_redis *limits);
/*
 * One check: 0 with *outcome set (and *retry_after_ms when limited), else
 * CATRACA_E_UNAVAILABLE (Redis down, slow or refusing), CATRACA_E_INVALID (a key
 * longer than 256 bytes) or CATRACA_E_CORRUPT (a reply of another shape).
 */
int limits_redis_take(struct limits_redis *limits, const struct limits_redis_check *check,
                      enum limits_redis_outcome *outcome, int64_t *retry_after_ms);
/*
 * count (1..LIMITS_REDIS_BATCH_MAX) checks in ONE script call, in order (a check sees the
 * tokens the ones before it took): outcomes[i] and retry_after_ms[i] for each, or an error
 * for all, as limits_redis_take.
 */
int limits_redis_take_many(struct limits_redis *limits, const struct limits_redis_check *checks,
                           size_t count, enum limits_redis_outcome *outcomes,
                           int64_t *retry_after_ms);

#endif
