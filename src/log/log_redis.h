/*
 * log_redis.h - the log on Redis Streams (distributed mode), with hiredis.
 *
 * One stream per event, key "catraca:{<event>}:log"; the stream id is the
 * entry's seq. Fields: r = record, t = time_ms, i = 1-based index in the
 * stream (for count_after), p = purchase id. append() is ONE Lua script
 * call for all its items (EVALSHA): it checks each idempotency key, XADDs,
 * records the key and the purchase's place, and publishes the events it
 * appended to on "catraca:appended" (workers wake on it). A script is atomic
 * in Redis and, with `appendonly yes` + `appendfsync always`, its effects are
 * fsync'd to the AOF before the reply leaves, so a returned append is
 * durable; with wait_replicas > 0 it is also on that many replicas (WAIT).
 *
 * The script touches keys of several events and customers, so under Redis
 * Cluster a caller would group items by hash slot: see docs/DEPLOY.md.
 *
 * A handle connects lazily and reconnects after any I/O error: every call
 * made while Redis is down returns CATRACA_E_UNAVAILABLE, and the next call
 * after it is back works. Caveat of every network log: when the connection
 * drops after the script ran but before its reply arrived, the caller sees
 * CATRACA_E_UNAVAILABLE for an append that happened; a retry with the same
 * idempotency key returns it (LOG_DUPLICATE) instead of appending twice.
 */
#ifndef CATRACA_LOG_LOG_REDIS_H
#define CATRACA_LOG_LOG_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "log/log.h"

struct log_redis_options {
    const char *url;     /* redis://host:port (or host:port) */
    int timeout_ms;      /* connect and command time-out */
    size_t read_max;     /* entries one read() may return, >= 1 */
    int wait_replicas;   /* 0: no WAIT; else replicas that must acknowledge each append */
    int wait_timeout_ms; /* WAIT's time-out */
};

int log_redis_open(const struct log_redis_options *options, struct catraca_log *out);

/*
 * A number no other caller got (INCR of a counter in Redis): gateways take
 * one at start so the purchase ids they mint never collide.
 */
int log_redis_unique_number(const struct log_redis_options *options, uint64_t *out);

/* PUBLISH on a handle's connection (from log_redis_open's context); binary safe. */
int log_redis_publish(void *log_context, const char *channel, const uint8_t *message,
                      size_t length);

/*
 * Subscribes to channel on a connection of its own and calls on_message for
 * each message until *stop is non-zero (checked at least every poll_ms).
 * Returns 0 after a stop, or CATRACA_E_UNAVAILABLE when the connection could
 * not be made or broke (callers retry after a pause). *is_subscribed (may be
 * NULL) is 1 while the subscription is up.
 */
int log_redis_subscribe(const char *url, const char *channel,
                        void (*on_message)(void *context, const uint8_t *message, size_t length),
                        void *context, volatile int *stop, int poll_ms,
                        volatile int *is_subscribed);

/* log_redis_subscribe to "catraca:appended": on_event gets each event appended to. */
int log_redis_wait_appended(const char *url, int poll_ms,
                            void (*on_event)(void *context, const char *event), void *context,
                            volatile int *stop, volatile int *is_subscribed);

#endif
