/*
 * appender.h - group commit in front of the log.
 *
 * HTTP threads submit append requests into a bounded queue; an appender
 * thread takes up to batch_max of them at a time and appends them with ONE
 * log append (one transaction, one fsync), then calls each request's `done`
 * on the appender thread. A request is answered 202 only from `done` with
 * error 0: nothing is acknowledged before it is durable.
 *
 * With threads > 1, that many batches are in flight at once, each thread on a
 * log handle of its own: for a network log (Redis, Kafka), whose servers
 * persist the appends of all their clients together, so waiting for one round trip no
 * longer caps the rate. Requests of two batches in flight at once were all
 * unanswered when their batches were taken, so the log order between them is
 * their arrival order; within a batch, queue order is kept.
 *
 * Bounds: the queue holds queue_max requests; beyond it appender_submit()
 * returns CATRACA_E_FULL at once (the caller answers 503, nothing accepted).
 *
 * Health: a thread idle for probe_interval_ms asks its log a cheap question
 * (last_seq of the event "-", which never exists), so that a log that went
 * away is noticed without traffic, and a log that came back is reconnected
 * to before the next request needs it. appender_is_healthy() says whether
 * every thread's last append or probe succeeded: /readyz reports it.
 */
#ifndef CATRACA_GATEWAY_APPENDER_H
#define CATRACA_GATEWAY_APPENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

#include "log/log.h"

struct appender_request {
    char event[CATRACA_ID_MAX + 1];
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t record_length;
    int64_t time_ms;
    uint64_t purchase_id;
    char idempotency_scope[CATRACA_ID_MAX + 1];
    char idempotency_key[CATRACA_ID_MAX + 1]; /* "" for none */
    uint64_t request_hash;
    /*
     * Called once on the appender thread: error 0 and item->result/seq on
     * success; CATRACA_E_UNAVAILABLE / _IO when the log failed (nothing was
     * appended), CATRACA_E_UNAVAILABLE when stopping.
     */
    void (*done)(void *context, int error, const struct log_append_item *item);
    void *context;
};

struct appender_stats {
    uint64_t batches;
    uint64_t appended;
    uint64_t failed;
    uint64_t rejected_full;
    uint64_t pending;
    uint64_t batch_max_seen;
    uint64_t append_latency_us_total;
    uint64_t append_latency_us_max;
};

#define APPENDER_THREADS_MAX 16

struct appender_config {
    /* logs[i] for appender thread i only; closed by appender_stop() */
    struct catraca_log logs[APPENDER_THREADS_MAX];
    uint32_t threads;       /* 1..APPENDER_THREADS_MAX */
    uint32_t queue_max;     /* >= 1 */
    uint32_t batch_max;     /* >= 1 */
    /* Called on the appender thread after each successful append (e.g. worker_wake). */
    void (*after_append)(void *context);
    void *after_append_context;
    /* Called on the appender thread around the done callbacks of one batch (both or neither;
     * NULL: none), e.g. to wake each HTTP loop once per batch instead of once per answer. */
    void (*before_answers)(void *context);
    void (*after_answers)(void *context);
    uint32_t probe_interval_ms; /* 0: never probe (then health follows the appends only) */
};

struct appender;

int appender_start(const struct appender_config *config, struct appender **out);
/* Copies *request into the queue: 0, CATRACA_E_FULL, CATRACA_E_INVALID (too long). Any thread. */
int appender_submit(struct appender *appender, const struct appender_request *request);
/*
 * Refuses new requests (CATRACA_E_UNAVAILABLE) and waits, at most timeout_ms,
 * until everything queued was appended and answered. 0 or CATRACA_E_TIMEOUT.
 */
int appender_drain(struct appender *appender, uint32_t timeout_ms);
/* Appends what is queued, answers it, stops the thread, closes the log, frees. */
void appender_stop(struct appender *appender);
void appender_stats(struct appender *appender, struct appender_stats *out);
/* True when every thread's last append or probe reached the log. Any thread. */
bool appender_is_healthy(struct appender *appender);

#endif
