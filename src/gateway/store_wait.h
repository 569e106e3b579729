/*
 * store_wait.h - requests waiting for the store to know a purchase, re-checked
 * off the event loops.
 *
 * Over a log whose find_purchase knows only this process's purchases (log.h,
 * LOG_FLAG_KEYS_IN_PURCHASE_IDS), a read of an id this gateway never took may
 * name a purchase another gateway accepted a moment ago: the store has it
 * within a worker's batch. The request is parked (its HTTP loop goes on) and
 * submitted here with its purchase id; a commit notification usually wakes it
 * first, but the bus is at most once (log/bus.h), so this module's one thread
 * reads the store once for each entry when its wait is over and reports what
 * it found. Every entry waits the same wait_ms, so a FIFO is also deadline
 * order: one ring of capacity entries (24 bytes each), allocated at start.
 *
 * The thread owns the store handle it is given (closed by store_wait_stop).
 * done runs on that thread, once per submitted entry, and must be quick (post
 * to the request's own queue).
 */
#ifndef CATRACA_GATEWAY_STORE_WAIT_H
#define CATRACA_GATEWAY_STORE_WAIT_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

struct store_wait;

/*
 * error: 0 (row is the purchase), CATRACA_E_NOTFOUND (the store does not know
 * it after the wait), CATRACA_E_UNAVAILABLE (the store failed, or stopping),
 * or CATRACA_E_TIMEOUT when is_settled said no read was needed (row NULL
 * unless error is 0).
 */
typedef void (*store_wait_done_fn)(void *context, int error, const struct store_purchase *row);
/* True when the entry's request needs no store read any more (answered meanwhile). */
typedef bool (*store_wait_is_settled_fn)(void *context);

struct store_wait_config {
    struct catraca_store store; /* owned by the module from start */
    uint32_t capacity;          /* entries waiting at once; beyond, submit is refused */
    int64_t wait_ms;            /* each entry's wait before its store read */
    store_wait_done_fn done;
    store_wait_is_settled_fn is_settled; /* may be NULL: always read */
};

/* 0, CATRACA_E_INVALID (capacity 0, no done) or CATRACA_E_NOMEM. */
int store_wait_start(const struct store_wait_config *config, struct store_wait **out);
/* 0, or CATRACA_E_FULL when capacity entries wait (or the module is stopping). */
int store_wait_submit(struct store_wait *wait, uint64_t purchase_id, void *context);
/* Entries waiting now (submitted, done not yet called). */
uint32_t store_wait_count(struct store_wait *wait);
/* Calls done(CATRACA_E_UNAVAILABLE) for every entry still waiting, joins the thread, closes the
 * store, frees. NULL is a no-op. */
void store_wait_stop(struct store_wait *wait);

#endif
