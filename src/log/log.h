/*
 * log.h - the ordered, durable log of commands: one partition per event.
 *
 * An adapter is a struct of function pointers plus a context (SQLite's
 * sqlite3_vfs style); shared code never names a backend. Adapters: SQLite
 * (log_sqlite.h, embedded mode); Redis Streams (log_redis.h) or Kafka, distributed mode,
 * chosen in backend.h.
 *
 * A handle is used by one thread at a time; each thread opens its own (the
 * SQLite adapter opens a connection per handle; several handles on one file
 * are safe). Group commit is the caller's: hand append() many items at once
 * and they become durable together, with one fsync.
 */
#ifndef CATRACA_LOG_LOG_H
#define CATRACA_LOG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

/*
 * A position in a partition: API.md's "<major>-<minor>" (a Redis stream id's
 * shape). Positions of one partition order by major, then minor. {0,0} is
 * "before the first entry".
 */
struct log_seq {
    uint64_t major;
    uint64_t minor;
};

#define LOG_SEQ_TEXT_MAX 42 /* two 20-digit numbers, '-', NUL */

int log_seq_compare(struct log_seq a, struct log_seq b);
/*
 * The greatest seq below seq ({0,0} for {0,0}): read(after = log_seq_before(s))
 * starts at s itself. Not {major - 1, 0}: a Redis stream holds several entries
 * per millisecond ("<ms>-0", "<ms>-1", ...).
 */
struct log_seq log_seq_before(struct log_seq seq);
void log_seq_format(struct log_seq seq, char out[LOG_SEQ_TEXT_MAX]);
/* Parses "<major>-<minor>"; returns 0 or CATRACA_E_INVALID. */
int log_seq_parse(const char *text, struct log_seq *out);

enum log_append_result {
    LOG_APPENDED = 0,           /* new entry at seq */
    LOG_DUPLICATE = 1,          /* idempotency key seen with the same request: nothing appended */
    LOG_DUPLICATE_MISMATCH = 2, /* idempotency key seen with another request: nothing appended */
};

struct log_append_item {
    /* in */
    const char *event;             /* partition: the event id */
    const uint8_t *record;         /* codec_command_encode() bytes */
    size_t record_length;          /* <= CATRACA_COMMAND_ENCODED_MAX */
    int64_t time_ms;               /* the command's now_ms, kept for reading without decoding */
    uint64_t purchase_id;          /* PURCHASE: its id (find_purchase()); else 0 */
    const char *idempotency_scope; /* the customer, when idempotency_key is set */
    const char *idempotency_key;   /* NULL: no idempotency */
    uint64_t request_hash;         /* tells a retry (same hash) from a conflicting reuse */
    /* out */
    uint8_t result;                /* enum log_append_result */
    struct log_seq seq;            /* the entry's position (for duplicates: the earlier entry's) */
    uint64_t existing_purchase_id; /* duplicates: the purchase the key first created */
};

/* An entry read back. record points into the handle's buffer, valid until its next read. */
struct log_entry {
    struct log_seq seq;
    int64_t time_ms;
    const uint8_t *record;
    size_t record_length;
};

/*
 * What every adapter refuses with CATRACA_E_INVALID before touching its
 * backend (tests/log/conformance_log.c checks it of each): an event id that
 * is not 1..CATRACA_ID_MAX bytes (it becomes part of a key or a topic name,
 * where a longer one would be cut into another event's), a record longer
 * than CATRACA_COMMAND_ENCODED_MAX or a length without a record, an
 * idempotency key that is empty or has no scope. items may be NULL when
 * count is 0.
 */
bool log_event_is_valid(const char *event);
int log_items_check(const struct log_append_item *items, size_t count);

/*
 * log_ops.flags. LOG_FLAG_KEYS_IN_PURCHASE_IDS: the log cannot check an
 * idempotency key atomically with an append across processes (Kafka,
 * log_kafka.h: it answers LOG_DUPLICATE only for keys this process appended)
 * and find_purchase knows only this process's purchases. A gateway over such
 * a log derives a keyed purchase's id from (customer, key, request hash), so
 * a retry on any gateway carries the same id and the engine answers it
 * REPEATED (engine.h 2a), and a GET of a purchase the log does not know waits
 * (parked, bounded: gateway/store_wait.h) for the store before a 404. 0 for
 * SQLite and Redis, which check keys in the append itself.
 */
#define LOG_FLAG_KEYS_IN_PURCHASE_IDS 1u

struct log_ops {
    unsigned flags; /* LOG_FLAG_* */
    /*
     * Appends items in order, atomically and durably: on 0 every item is
     * durable (or a duplicate); on error none was appended. Errors:
     * CATRACA_E_UNAVAILABLE, CATRACA_E_IO, CATRACA_E_INVALID.
     */
    int (*append)(void *context, struct log_append_item *items, size_t count);
    /* Up to max entries of `event` after `after`, in order; *count may be 0. */
    int (*read)(void *context, const char *event, struct log_seq after, struct log_entry *entries,
                size_t max, size_t *count);
    /* Where a purchase's PURCHASE entry is: 0, or CATRACA_E_NOTFOUND. */
    int (*find_purchase)(void *context, uint64_t purchase_id, char event[CATRACA_ID_MAX + 1],
                         struct log_seq *seq);
    /* Entries of `event` after `after` (the queue in front of the worker). */
    int (*count_after)(void *context, const char *event, struct log_seq after, uint64_t *count);
    /* The last entry's position, {0,0} when empty. */
    int (*last_seq)(void *context, const char *event, struct log_seq *seq);
    /* Partitions that have at least one entry; up to max ids. */
    int (*list_partitions)(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max,
                           size_t *count);
    void (*close)(void *context);
};

struct catraca_log {
    const struct log_ops *ops;
    void *context;
};

#endif
