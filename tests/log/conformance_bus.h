/*
 * conformance_bus.h - what every bus adapter (src/log/bus.h) must do, as one
 * suite run against each: Redis (test_log_redis.c), Kafka (test_log_kafka.c).
 *
 * It checks: unique_number never repeats, across handles and threads;
 * publish_commit reaches a subscriber that was subscribed before it, binary
 * safe (0 bytes inside) up to BUS_MESSAGE_MAX bytes, and refuses one byte
 * more; wait_appended reports each event a log append wrote to; both blocking
 * calls return 0 within about BUS_POLL_MS of *stop; and, when the target can
 * cut its connections, *is_subscribed goes to 0 while the bus is unreachable
 * and back to 1 after (the subscription comes back by itself), while
 * unique_number and publish_commit answer CATRACA_E_UNAVAILABLE and a
 * subscription started meanwhile still returns promptly after *stop.
 *
 * Delivery is at most once (bus.h): the suite waits for messages only when a
 * subscriber was subscribed before they were sent and nothing was cut. A
 * server may be shared with other runs: the suite only counts messages and
 * events that carry its run's prefix.
 *
 * Adding a target: fill struct conformance_bus_target (open() gives a new
 * handle on the same bus each call; open_log() a log handle on the same
 * backend, whose append() must wake wait_appended), leave the fault hooks
 * NULL if the backend cannot be cut (the cut case is then skipped), and call
 * conformance_bus_run() from main() (link the catraca_conformance library).
 */
#ifndef CATRACA_TESTS_LOG_CONFORMANCE_BUS_H
#define CATRACA_TESTS_LOG_CONFORMANCE_BUS_H

#include <stdbool.h>

#include "log/bus.h"
#include "log/log.h"

struct conformance_bus_target {
    const char *name; /* "redis", "kafka": in messages */
    void *context;    /* passed to every callback */
    /* A new handle on the target's bus. 0, or an error (the case fails). */
    int (*open)(void *context, struct catraca_bus *out);
    /* Closes a handle from open(); NULL: bus->ops->close(bus->context). */
    void (*close)(void *context, struct catraca_bus *bus);
    /* A log handle (read_max >= 1) on the same backend; closed with its ops->close. */
    int (*open_log)(void *context, struct catraca_log *out);
    /*
     * The longest the bus takes to notice a broken connection and to make a
     * new one (its time-outs and back-off): the cut case waits up to 5 s
     * more than this for *is_subscribed to change.
     */
    int reconnect_ms;
    /*
     * publish_commit only queues the message and returns 0; a publish that
     * then fails is reported (CATRACA_E_UNAVAILABLE) by a later call, once the
     * backend has given up on it, at most reconnect_ms later (Kafka: a delivery
     * report; the worker publishes after each commit and must not wait on
     * the broker for a notification that is at most once anyway). The cut
     * case then checks that a second publish, reconnect_ms after the first,
     * fails. Without it every publish while cut must fail itself.
     */
    bool is_publish_queued;

    /* ---- faults: both NULL or both set --------------------------------------------------- */
    /* Every bus connection (not the log's) breaks, and new ones are refused, until restore. */
    void (*cut_connections)(void *context);
    void (*restore_connections)(void *context);
};

/* Runs every case against target. Returns the number of failed cases. Not reentrant. */
int conformance_bus_run(const struct conformance_bus_target *target);

#endif
