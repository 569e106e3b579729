/*
 * limits_batch.h - group commit for the shared limits (gateway/limits_redis.h): HTTP threads
 * submit checks into a bounded queue and go on serving; one thread takes up to
 * LIMITS_REDIS_BATCH_MAX of them at a time, decides them all with ONE script call, and calls
 * each check's `done` on that thread, in submission order.
 *
 * Why a thread of its own: a check made on the HTTP thread would hold that thread's event
 * loop for a round trip to a Redis that also fsyncs the log's appends, and each HTTP thread
 * would then take one purchase per round trip (measured: accepted purchases/s fell from
 * about 6 000 to 1 000-2 500 on the 2-core bench machine; docs/BENCHMARKS.md).
 *
 * Bounds: queue_max checks wait; beyond, limits_batch_submit() returns CATRACA_E_FULL at once.
 * Stopping answers every check still queued with CATRACA_E_UNAVAILABLE.
 */
#ifndef CATRACA_GATEWAY_LIMITS_BATCH_H
#define CATRACA_GATEWAY_LIMITS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/limits_redis.h"

/* error 0 and outcome/retry_after_ms, or CATRACA_E_UNAVAILABLE (Redis did not answer, or
 * stopping) / CATRACA_E_CORRUPT; on the batch thread. */
typedef void (*limits_batch_done)(void *context, int error, enum limits_redis_outcome outcome,
                                  int64_t retry_after_ms);

struct limits_batch;

/* 0, CATRACA_E_INVALID (bad URL or bounds) or CATRACA_E_NOMEM. Redis may be down. */
int limits_batch_start(const char *redis_url, int timeout_ms, uint32_t queue_max,
                       limits_batch_done done, struct limits_batch **out);
/* Copies the check (its strings too): 0, CATRACA_E_FULL, or CATRACA_E_INVALID (a string too
 * long). Any thread. */
int limits_batch_submit(struct limits_batch *batch, const struct limits_redis_check *check,
                        void *context);
/* Waits, at most timeout_ms, until nothing is queued or in flight: 0 or CATRACA_E_TIMEOUT. */
int limits_batch_drain(struct limits_batch *batch, uint32_t timeout_ms);
/* Answers what is queued (CATRACA_E_UNAVAILABLE), stops the thread, frees. NULL: nothing. */
void limits_batch_stop(struct limits_batch *batch);

#endif
