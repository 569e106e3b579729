/*
 * log_kafka.h - the log on Apache Kafka (distributed mode), with librdkafka.
 *
 * MAPPING (docs/DEPLOY.md, "Kafka"). One topic per event, with ONE partition,
 * named "<prefix>event.<enc(event)>". enc keeps [A-Za-z0-9] and writes '.' as
 * "-d", '_' as "-u" and '-' as "--": Kafka refuses two topics whose names
 * differ only by '.' vs '_' (they collide in its metric names), and the
 * encoded name has neither, so events "a.b" and "a_b" get two topics; the
 * encoding is reversible (list_partitions decodes it). Why one topic per
 * event, not one topic with a partition per event or events hashed over a
 * few partitions:
 *   - an event's order is exactly a partition's order, and a partition holds
 *     one event only, so an entry's offset is its index in the event's log:
 *     seq = {offset + 1, 0} ({0,0} is before offset 0), count_after is
 *     "high watermark - after.major" and last_seq is "high watermark" - no
 *     scan, no side counter, exact;
 *   - a worker fetches only the events it leases (a shared partition would
 *     make every worker read every event's traffic and skip most of it);
 *   - an event's retention and replication are its own topic's settings;
 *   - a topic is made on first use, so a new event needs no repartitioning.
 * The price is one topic per event (Kafka handles tens of thousands of
 * partitions per cluster; a sale has a handful of events) and one partition
 * leader per event (throughput of one event is one partition's: measured in
 * docs/BENCHMARKS.md).
 *
 * Topics are created on first append with the Admin API (CreateTopics) with
 * the options' replication factor and min.insync.replicas; "already exists"
 * is success. Nothing relies on the broker's auto.create.topics.enable. An
 * entry's value is the record; headers "t" (time_ms) and "p" (purchase id,
 * purchases only), 8 bytes big-endian each, and "k" (keyed items: a 128-bit
 * fingerprint of scope and key, 16 bytes). No message key: one partition.
 *
 * DURABILITY. The producer is idempotent (enable.idempotence=true, acks=all):
 * append() returns 0 only after EVERY item's delivery report succeeded, i.e.
 * the partition's leader and every in-sync replica have it, and there are at
 * least min.insync.replicas of them (else the broker refuses: NOT_ENOUGH_
 * REPLICAS, and the append is CATRACA_E_UNAVAILABLE). A gateway answers 202
 * only on that. Items of one call go out together (one batch per partition)
 * but Kafka has no atomic write across partitions without transactions: when
 * any item fails, the call returns CATRACA_E_UNAVAILABLE and items already
 * delivered STAY in the log - the same caveat as log_redis.h's dropped reply;
 * a retry carries the same purchase id (derived from the idempotency key for
 * keyed purchases, gateway/api_pending.c) and the engine answers it REPEATED.
 * Delivery is bounded by timeout_ms (message.timeout.ms); undelivered items
 * are purged before the call returns, so this client sends nothing of a
 * failed call later - but a broker that stalled may still write a request it
 * had read (measured: tests/log/test_log_kafka.c). Such items are remembered
 * as doubtful (LOG_KAFKA_DOUBTFUL_MAX per process): a retry of one in this
 * process first looks for it in its topic (headers "p" and "k", from the
 * topic's end as this process knew it, at most LOG_KAFKA_SCAN_MAX entries)
 * and answers LOG_DUPLICATE when it is there. Such a retry's append() reads
 * the topic on the same handle: entries of an earlier read() are then no
 * longer valid.
 *
 * IDEMPOTENCY. Kafka cannot check a key atomically with an append. The
 * adapter answers LOG_DUPLICATE / LOG_DUPLICATE_MISMATCH for keys and
 * purchase ids appended by THIS PROCESS (a bounded process-wide table, oldest
 * forgotten first: LOG_KAFKA_KEYS_MAX entries); every other retry is appended
 * again and made harmless by the derived purchase id (log.h,
 * LOG_FLAG_KEYS_IN_PURCHASE_IDS). find_purchase knows only purchases this
 * process appended (LOG_KAFKA_PURCHASES_MAX, oldest forgotten first); else
 * CATRACA_E_NOTFOUND, and the gateway waits for the store.
 *
 * READS. No consumer group, no offset commit, no auto-commit: a handle's
 * consumer starts each event's partition at the exact offset asked for
 * (read's after.major) with librdkafka's simple consumer (consume_start: a
 * manual assignment that needs no group.id - librdkafka 2.0.2's assign()
 * refuses to run without one and then waits for a group coordinator, which
 * would make reads depend on __consumer_offsets) and the worker keeps its
 * position in PostgreSQL with its outcomes. A handle keeps up to LOG_KAFKA_READ_PARTITIONS_MAX
 * partitions assigned (least recently read dropped first), each on a queue of
 * its own that librdkafka prefetches into. A read that is caught up (nothing
 * queued, and the high watermark - cached from fetch responses, or this
 * process's own appends - says nothing is beyond `after`) returns 0 entries AT
 * ONCE; a read behind the watermark waits at most timeout_ms for the fetch.
 * An offset the brokers no longer have (retention deleted it) is
 * CATRACA_E_CORRUPT, never a silent skip (auto.offset.reset=error).
 *
 * ERRORS. Brokers down or unreachable within timeout_ms: CATRACA_E_UNAVAILABLE
 * (opening never fails for that; handles reconnect by themselves). A topic
 * that does not exist reads as an empty event. Bounds: event ids up to
 * CATRACA_ID_MAX bytes, records up to CATRACA_COMMAND_ENCODED_MAX (longer
 * read back: CATRACA_E_CORRUPT), read() up to read_max entries, append() up
 * to LOG_KAFKA_APPEND_ITEMS_MAX items, list_partitions up to its max, the
 * producer's queue at LOG_KAFKA_QUEUE_MESSAGES_MAX messages and
 * LOG_KAFKA_QUEUE_KBYTES_MAX KiB, each assigned partition's prefetch at
 * LOG_KAFKA_PREFETCH_KBYTES KiB (or the options' kafka_prefetch_kbytes).
 */
#ifndef CATRACA_LOG_LOG_KAFKA_H
#define CATRACA_LOG_LOG_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "log/backend.h"
#include "log/log.h"

#define LOG_KAFKA_APPEND_ITEMS_MAX 65536
#define LOG_KAFKA_QUEUE_MESSAGES_MAX 131072 /* queue.buffering.max.messages */
#define LOG_KAFKA_QUEUE_KBYTES_MAX 262144   /* queue.buffering.max.kbytes: 256 MiB */
#define LOG_KAFKA_READ_PARTITIONS_MAX 1024  /* partitions one handle keeps assigned */
/*
 * A read that finds nothing new answers "caught up" from what the fetches
 * said, without a round trip; once a partition has heard nothing from its
 * leader for this long, such a read asks the leader (bounded) first, so a
 * broker gone away is reported (CATRACA_E_UNAVAILABLE: a worker's readiness)
 * instead of an endless "nothing new".
 */
#define LOG_KAFKA_READ_LIVENESS_MS 2000
/*
 * sys.appended announcements (bus_kafka.h): a process sends its first batch
 * after a quiet moment at once, then at most one batch per this many ms, each
 * appended event once with its latest end. A sleeping worker learns of new
 * entries at most this much later; a busy gateway's produce requests are not
 * doubled by wake-ups.
 */
#define LOG_KAFKA_ANNOUNCE_SPACING_MS 20
#define LOG_KAFKA_PREFETCH_KBYTES 16384     /* queued.max.messages.kbytes, per partition */
#define LOG_KAFKA_KEYS_MAX (1u << 18)       /* idempotency keys remembered per process */
#define LOG_KAFKA_PURCHASES_MAX (1u << 18)  /* purchase places remembered per process */
#define LOG_KAFKA_DOUBTFUL_MAX 1024        /* items of failed appends looked up on retry */
#define LOG_KAFKA_SCAN_MAX 100000          /* entries such a look-up reads at most */
#define LOG_KAFKA_TOPICS_MAX 4096           /* topics known to exist, per process (then forgotten) */
#define LOG_KAFKA_PREFIX_MAX 100            /* a topic prefix; names stay < Kafka's 249 */
#define LOG_KAFKA_BOOTSTRAP_MAX 1024
/* "<prefix>event." + the encoding (at most 2 bytes per id byte) + NUL */
#define LOG_KAFKA_TOPIC_MAX (LOG_KAFKA_PREFIX_MAX + 6 + 2 * CATRACA_ID_MAX + 1)

/*
 * A handle in *out (close with out->ops->close). read_max bounds one read();
 * is_appender only documents intent (the producer is made on first append).
 * 0, CATRACA_E_INVALID (bad options) or CATRACA_E_NOMEM; never fails because
 * the brokers are down.
 */
int log_kafka_open(const struct backend_options *options, size_t read_max, bool is_appender,
                   struct catraca_log *out);

/* ---- shared with bus_kafka.c ------------------------------------------------------------- */

/* The options a Kafka handle needs, checked: 0 or CATRACA_E_INVALID. */
int log_kafka_options_check(const struct backend_options *options);

/* "<prefix>event.<enc(event)>": 0, or CATRACA_E_INVALID (bad id or too long). */
int log_kafka_event_topic(const char *prefix, const char *event, char out[LOG_KAFKA_TOPIC_MAX]);
/* The event of such a topic: 0, or CATRACA_E_INVALID when topic is not one. */
int log_kafka_topic_event(const char *prefix, const char *topic, char event[CATRACA_ID_MAX + 1]);

/*
 * Makes sure topics exist (one partition each, the options' replication and
 * min.insync.replicas), with the Admin API on client, within
 * options->timeout_ms. A process-wide table remembers topics already made.
 * 0, or CATRACA_E_UNAVAILABLE.
 */
int log_kafka_ensure_topics(rd_kafka_t *client, const struct backend_options *options,
                            const char *const *topics, size_t count);

/*
 * A new client of type
 * RD_KAFKA_PRODUCER (is_producer) or RD_KAFKA_CONSUMER with the settings
 * every Catraca handle shares (bootstrap, time-outs, bounds); idempotent
 * acks=all for producers, delivery reports to on_delivery (an
 * rd_kafka_conf_set_dr_msg_cb callback, may be NULL) with opaque as the
 * client's opaque; no group, no auto-commit for consumers. NULL on failure
 * (logged).
 */
rd_kafka_t *log_kafka_client_new(const struct backend_options *options, bool is_producer,
                                 void (*on_delivery)(rd_kafka_t *client,
                                                     const rd_kafka_message_t *message,
                                                     void *opaque),
                                 void *opaque);

/*
 * A partition's watermarks (low: first offset kept, high: last offset + 1),
 * within timeout_ms (plus half a second for the reply to arrive). librdkafka's own
 * rd_kafka_query_watermark_offsets is not bounded: while the leader's
 * connection keeps failing (a broker killed or cut off), it retries past its
 * time-out for as long as the broker's state keeps changing (every reconnect
 * attempt), i.e. until the broker is back (librdkafka 2.0.2 through master,
 * rd_kafka_query_wmark_offsets_resp_cb). So the call runs on a thread of its
 * own, on a client of its own (*querier, made on first use), and the caller
 * waits at most the time-out: a call that outlives it takes the client with
 * it (destroyed when the call returns) and *querier is made again next time.
 * At most LOG_KAFKA_ABANDONED_QUERIES_MAX such calls per process live on;
 * beyond that queries fail at once. 0; CATRACA_E_NOTFOUND (the client knows
 * no such topic or partition); else CATRACA_E_UNAVAILABLE.
 */
#define LOG_KAFKA_ABANDONED_QUERIES_MAX 16
int log_kafka_query_watermarks(const struct backend_options *options, rd_kafka_t **querier,
                               const char *topic, int timeout_ms, int64_t *low, int64_t *high);

/*
 * Tearing clients down, bounded. librdkafka 2.0.2's rd_kafka_consume_stop
 * waits for the client's main thread with no time-out (RD_POLL_INFINITE),
 * and rd_kafka_destroy joins the client's threads, which end only once
 * nothing references their brokers. Neither should take long; should one
 * ever hang (a librdkafka bug, a machine starved of CPU), a read, a close or
 * a bus subscription must not hang with it. So they run on a thread of
 * their own and the caller waits at most timeout_ms +
 * LOG_KAFKA_TEARDOWN_MARGIN_MS: a teardown that outlives that is logged (one
 * line saying what it was) and finishes in the background, freeing what it
 * was given; a log handle whose partition stop outlived it gives its whole
 * consumer up that way and reads with a new one.
 *
 * log_kafka_teardown: stops partition 0 of handle (when is_fetching; handle
 * may be NULL), destroys handle, then client (may be NULL). 0, or
 * CATRACA_E_UNAVAILABLE when it outlived the bound (still going on).
 */
#define LOG_KAFKA_TEARDOWN_MARGIN_MS 5000
/* While this many teardowns are still stuck in the background, no new client is made (each
 * would leave a thread and its client behind if librdkafka kept hanging): the caller gets
 * the failure it gets for a client that cannot be made (CATRACA_E_UNAVAILABLE, a 503). */
#define LOG_KAFKA_ABANDONED_TEARDOWNS_MAX 16
int log_kafka_teardown(rd_kafka_t *client, rd_kafka_topic_t *handle, bool is_fetching,
                       int timeout_ms, const char *what);
/* Tests only (NULL otherwise): called first on every teardown's thread, to stall it. */
extern void (*_Atomic log_kafka_teardown_stall)(void);

/*
 * The end (last offset + 1) of topic as this process knows it without asking
 * a broker: from its own appends and from sys.appended announcements (0: none
 * known). A read behind it waits (bounded) for the fetch instead of
 * answering "caught up".
 */
int64_t log_kafka_appended_high(const char *topic);
/* Notes an announced end of event's topic (bus_kafka.c). 0, or CATRACA_E_INVALID. */
int log_kafka_note_end(const char *prefix, const char *event, int64_t end);

#endif
