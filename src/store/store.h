/*
 * store.h - the system of record: events, purchases, answers to commands,
 * and each partition's committed log offset and engine snapshot.
 *
 * An adapter is a struct of function pointers plus a context. Adapters:
 * SQLite (store_sqlite.h, embedded mode, the same file as the log);
 * PostgreSQL (distributed mode, later). A handle is used by one thread at a
 * time; each thread opens its own.
 *
 * Exactly-once: a worker applies log entries after the committed offset and
 * commits their effects together with the new offset in ONE transaction
 * (commit()). After a crash it loads the snapshot, replays the log from the
 * snapshot's offset (the engine is deterministic, so it recomputes the same
 * decisions) and only commits what lies after the committed offset.
 */
#ifndef CATRACA_STORE_STORE_H
#define CATRACA_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "log/log.h"

/*
 * Its category's stock when a purchase row was read or decided: what the purchase's estimate
 * and retry hint are computed from (API.md). Filled for WAITING rows and rows REJECTED
 * line_full (is_known), never stored: the store fills it on read, the worker at the decision.
 */
struct store_line_facts {
    bool is_known;
    uint32_t available, held, sold, returned; /* engine_category_counts */
    int64_t hold_ms;                          /* the event's */
};

/* A purchase as stored and served by GET /v1/purchases/{id}. */
struct store_purchase {
    uint64_t purchase_id;
    char event[CATRACA_ID_MAX + 1];
    /* Set when the row is created (the batch applied its PURCHASE command); on
     * updates of an existing row these are ignored (has_arrival == false). */
    bool has_arrival;
    char customer[CATRACA_ID_MAX + 1];
    char category[CATRACA_ID_MAX + 1];
    uint32_t quantity;
    struct log_seq seq; /* arrival position */
    int64_t created_ms;
    /* The decision, replaced by every update. */
    uint8_t status; /* enum engine_status */
    uint8_t reason; /* enum engine_reason; NONE unless rejected */
    int64_t hold_expires_at_ms;
    uint32_t position;
    /* 0, or the 1-based place a pre-queue draw decided this purchase at: its place in the
     * line among the drawn ones (which all stand ahead of later arrivals). Kept once set. */
    uint32_t draw_rank;
    /* WAITING: tickets wanted ahead in its category's line, computed on read like position. */
    uint32_t ahead;
    /* A late payment (engine.h, CONFIRM after expiry): EXPIRED, is_refund_due, and the
     * payment reference to refund. payment_ref is "" otherwise. */
    bool is_refund_due;
    char payment_ref[CATRACA_ID_MAX + 1];
    struct store_line_facts line;
    uint8_t ticket_count;
    uint64_t ticket_codes[CATRACA_QUANTITY_MAX];
    int64_t updated_ms;
};

/* The engine's answer to a command someone may wait for (confirm, cancel, event changes). */
struct store_answer {
    char event[CATRACA_ID_MAX + 1];
    struct log_seq seq;   /* the command's position */
    uint64_t purchase_id; /* 0 for event commands */
    uint8_t type;         /* enum engine_outcome_type */
    uint8_t result;       /* enum engine_result */
    uint8_t reason;       /* enum engine_reason */
    uint8_t status;       /* the purchase's status after the command */
};

struct store_event {
    struct engine_event_spec spec; /* as first created (secret included: never served) */
    uint8_t state;                 /* enum engine_sale_state now */
    struct engine_category_counts counts[CATRACA_CATEGORIES_MAX];
    struct engine_draw_view draw; /* a scheduled sale's draw (state NONE when not scheduled) */
    struct log_seq offset;        /* last log entry applied */
    int64_t updated_ms;
};

/* One worker batch, committed atomically. */
struct store_batch {
    const char *event;
    uint64_t epoch;                      /* fencing token (distributed mode); 0 in embedded mode */
    struct log_seq offset;               /* the new committed offset */
    const struct store_event *event_row; /* NULL until the event exists */
    const struct store_purchase *purchases; /* created or changed in the batch, one row each */
    size_t purchase_count;
    const struct store_answer *answers;
    size_t answer_count;
    const uint8_t *snapshot; /* NULL: keep the previous snapshot */
    size_t snapshot_length;
    struct log_seq snapshot_offset; /* the offset the snapshot was taken at */
};

/*
 * What `catraca audit` compares of a stored purchase (store_ops.for_each_decision): the
 * fields of struct store_purchase of the same names. customer and category point into the
 * store's row: NUL-terminated, valid during the visit only, and not cut to CATRACA_ID_MAX.
 */
struct store_decision {
    uint64_t purchase_id;
    struct log_seq seq;
    int64_t hold_expires_at_ms;
    const char *customer;
    const char *category;
    uint32_t quantity;
    uint8_t status;
    uint8_t reason;
    uint8_t ticket_count;
    bool is_refund_due;
    uint64_t ticket_codes[CATRACA_QUANTITY_MAX];
};

struct store_ops {
    /* All of batch or nothing. CATRACA_E_FENCED when epoch is stale; CATRACA_E_UNAVAILABLE, _IO. */
    int (*commit)(void *context, const struct store_batch *batch);
    /*
     * Recovery state of a partition: committed offset and the latest snapshot
     * with its offset (*snapshot malloc'ed, caller frees; NULL when none).
     * CATRACA_E_NOTFOUND when nothing was ever committed. snapshot NULL: the offset only
     * (the snapshot is not read; snapshot_length and snapshot_offset are not touched).
     */
    int (*load)(void *context, const char *event, struct log_seq *offset, uint8_t **snapshot,
                size_t *snapshot_length, struct log_seq *snapshot_offset);
    int (*get_purchase)(void *context, uint64_t purchase_id, struct store_purchase *out);
    int (*get_answer)(void *context, const char *event, struct log_seq seq,
                      struct store_answer *out);
    int (*get_event)(void *context, const char *event, struct store_event *out);
    /* Events in id order, starting after `after_id` ("" for the first page). */
    int (*list_events)(void *context, const char *after_id, struct store_event *out, size_t max,
                       size_t *count);
    /* Calls visit for every purchase row of an event, in id order; stops at a non-zero return
     * and returns it. For audits, not the hot path. */
    int (*for_each_purchase)(void *context, const char *event,
                             int (*visit)(void *visit_context, const struct store_purchase *row),
                             void *visit_context);
    /* Optional (NULL: use for_each_purchase): the same rows, in any order (the audit looks
     * each one up by id; PostgreSQL sends them in its table's order), each handed over as only
     * what an audit compares (struct store_decision), read without the rest of the row
     * (catraca audit reads a million rows). */
    int (*for_each_decision)(void *context, const char *event,
                             int (*visit)(void *visit_context, const struct store_decision *row),
                             void *visit_context);
    /* An event's purchases with a refund due, in id order, at most max of them (after the
     * first `skip`); *count says how many were written. Served by an index of its own. */
    int (*list_refunds)(void *context, const char *event, size_t skip, struct store_purchase *out,
                        size_t max, size_t *count);
    void (*close)(void *context);
};

struct catraca_store {
    const struct store_ops *ops;
    void *context;
};

#endif
