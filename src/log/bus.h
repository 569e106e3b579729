/*
 * bus.h - what gateways and workers tell each other beside the log.
 *
 * The log (log.h) holds the commands, ordered and durable. The distributed
 * mode also needs a few signals that are not commands: an instance number
 * for each gateway (so purchase ids never collide), the commits workers
 * announce (so gateways complete parked requests), and "something was
 * appended to event E" (so workers wake instead of polling). Those go
 * through a bus, an adapter with the same shape as a log's: a struct of
 * function pointers and a context. Adapters: Redis (bus_redis.c: INCR and
 * pub/sub) and Kafka (bus_kafka.c: topics of the prefix).
 *
 * Delivery is AT MOST ONCE: a subscriber that is down or slow misses
 * messages. Nothing correct may depend on a message arriving: parked
 * requests fall back on their time-outs and store reads, workers on their
 * poll interval. The bus only makes the common case fast.
 *
 * A handle belongs to one thread. subscribe_commits and wait_appended block
 * the calling thread on a connection of their own until *stop is non-zero
 * (checked at least every BUS_POLL_MS), reconnecting by themselves after
 * errors with a short back-off; *is_subscribed (may be NULL) is 1 while
 * messages can arrive, 0 while the bus is unreachable (readiness reads it).
 */
#ifndef CATRACA_LOG_BUS_H
#define CATRACA_LOG_BUS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BUS_POLL_MS 500 /* the longest a blocked call goes without looking at *stop */
#define BUS_MESSAGE_MAX (1u << 20) /* a longer commit message is refused: CATRACA_E_INVALID */

typedef void (*bus_message_fn)(void *context, const uint8_t *message, size_t length);
typedef void (*bus_event_fn)(void *context, const char *event);

struct bus_ops {
    /*
     * A number no other caller (of any process on this bus) ever got. 0, or
     * CATRACA_E_UNAVAILABLE while the bus is down.
     */
    int (*unique_number)(void *context, uint64_t *out);
    /*
     * Announces a commit (commit_wire.h bytes, binary safe, <= BUS_MESSAGE_MAX)
     * to every subscriber now listening. 0, CATRACA_E_INVALID or
     * CATRACA_E_UNAVAILABLE (the handle reconnects on its next call).
     */
    int (*publish_commit)(void *context, const uint8_t *message, size_t length);
    /*
     * Calls on_message (on this thread; message valid during the call only)
     * for each commit published from now on, until *stop. Returns 0 after a
     * stop; CATRACA_E_INVALID at once for bad options.
     */
    int (*subscribe_commits)(void *context, bus_message_fn on_message, void *callback_context,
                             const atomic_int *stop, atomic_int *is_subscribed);
    /*
     * Calls on_event with each event id appended to from now on (by any
     * gateway's append(); NUL-terminated, valid during the call), until
     * *stop. Returns 0 after a stop; CATRACA_E_INVALID at once for bad options.
     */
    int (*wait_appended)(void *context, bus_event_fn on_event, void *callback_context,
                         const atomic_int *stop, atomic_int *is_subscribed);
    void (*close)(void *context);
};

struct catraca_bus {
    const struct bus_ops *ops;
    void *context;
};

#endif
