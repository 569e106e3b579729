/*
 * bus_kafka.h - the bus (bus.h) on Apache Kafka, with librdkafka.
 *
 * Three topics of the prefix, one partition each, made with the Admin API on
 * first use (the options' replication factor and min.insync.replicas, as
 * log_kafka.c makes event topics):
 *   - "<prefix>sys.instances": unique_number produces a record there (acks=all,
 *     idempotent) and answers its offset: offsets of one partition are never
 *     handed out twice, across processes and restarts (as long as the topic is
 *     not deleted - its retention is the broker's default; a record's removal
 *     does not reuse its offset).
 *   - "<prefix>sys.commits": publish_commit produces there (not awaited: a
 *     failed delivery is reported by the next call as CATRACA_E_UNAVAILABLE);
 *     subscribe_commits consumes from the end.
 *   - "<prefix>sys.appended": after a successful append, log_kafka.c's
 *     process-wide announcer produces one message per event appended to: the
 *     event id, a NUL, and the event's new end (8 bytes big-endian),
 *     fire-and-forget; the first after a quiet moment at once, then at most
 *     one batch every LOG_KAFKA_ANNOUNCE_SPACING_MS with each event's latest
 *     end (so a busy gateway does not double its produce requests for
 *     wake-ups);
 *     wait_appended consumes from the end, notes the end for this process's
 *     reads (log_kafka_note_end) and calls on_event with the id.
 * Consumers have no group and commit nothing (manual assign at the end):
 * a subscriber that is down misses what was published meanwhile, the
 * at-most-once of bus.h.
 *
 * Bounds: a commit message up to BUS_MESSAGE_MAX (the topics' max.message.bytes
 * leave room for it), unique_number waits at most BUS_KAFKA_UNIQUE_MS (or
 * timeout_ms if longer), blocked
 * calls look at *stop every BUS_POLL_MS, reconnect after errors with a
 * back-off of BUS_KAFKA_BACKOFF_MS, and check the brokers at least every
 * BUS_KAFKA_CHECK_MS (*is_subscribed).
 */
#ifndef CATRACA_LOG_BUS_KAFKA_H
#define CATRACA_LOG_BUS_KAFKA_H

#include "log/backend.h"
#include "log/bus.h"

#define BUS_KAFKA_BACKOFF_MS 200
/* unique_number keeps trying this long (or timeout_ms if longer): a gateway asks at start,
 * maybe while a cluster starts with it and the topic has no leader yet */
#define BUS_KAFKA_UNIQUE_MS 15000
#define BUS_KAFKA_CHECK_MS 2000

/* A handle in *out (close with out->ops->close): 0, CATRACA_E_INVALID or CATRACA_E_NOMEM;
 * never fails because the brokers are down. */
int bus_kafka_open(const struct backend_options *options, struct catraca_bus *out);

#endif
