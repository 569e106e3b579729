/*
 * waiters.h - requests parked until the worker commits something they wait
 * for: a purchase's change (long-poll, SSE) or the answer to a command
 * (confirm, cancel, event changes), without a thread per waiter.
 *
 * The caller owns each struct waiter (it lives in the parked request's
 * context) and must remove it before freeing it. Callbacks run on the
 * committing thread with the registry locked: they must be quick (post a
 * completion to the request's own loop) and must not call back into the
 * registry. A purchase waiter stays registered after a notification when its
 * callback returns true (SSE streams), and is removed otherwise.
 */
#ifndef CATRACA_GATEWAY_WAITERS_H
#define CATRACA_GATEWAY_WAITERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "worker/worker.h"

struct waiter {
    /* set by the caller */
    uint64_t purchase_id;           /* wait for this purchase's changes, or 0 */
    char event[CATRACA_ID_MAX + 1]; /* with seq: wait for the answer to this command */
    struct log_seq seq;
    bool (*on_purchase)(struct waiter *waiter, const struct store_purchase *purchase);
    void (*on_answer)(struct waiter *waiter, const struct store_answer *answer,
                      const struct store_purchase *purchase /* NULL if unchanged */);
    void *context;
    /* owned by the registry */
    struct waiter *next, *prev;
    uint32_t bucket;
    bool is_registered;
};

struct waiters {
    pthread_mutex_t mutex;
    struct waiter **buckets;
    uint32_t bucket_count;
    uint32_t count, count_max;
};

int waiters_init(struct waiters *waiters, uint32_t count_max);
void waiters_destroy(struct waiters *waiters);
/* 0, or CATRACA_E_FULL when count_max waiters are parked. */
int waiters_add(struct waiters *waiters, struct waiter *waiter);
/* True when this call removed it; false when a notification already had. */
bool waiters_remove(struct waiters *waiters, struct waiter *waiter);
uint32_t waiters_count(struct waiters *waiters);
/* A slot counted against count_max without a waiter (a stream its own module wakes): 0, or
 * CATRACA_E_FULL. Each reservation is given back once with waiters_unreserve. */
int waiters_reserve(struct waiters *waiters);
void waiters_unreserve(struct waiters *waiters);
/* Wakes every waiter concerned by a committed batch (worker's on_commit). */
void waiters_notify(struct waiters *waiters, const struct worker_commit *commit);

#endif
