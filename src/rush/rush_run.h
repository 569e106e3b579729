/*
 * rush_run.h - what one rehearsal observed: every buyer's purchase as rush saw it
 * in the server's answers, counters, latency histograms and the event as read
 * back at the end. The driver (rush.c) fills it; the report (rush_report.c)
 * reads it, checks it and prints it. Sized once from the options; no pointer in
 * it is owned by anyone but the driver.
 */
#ifndef CATRACA_RUSH_RUN_H
#define CATRACA_RUSH_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/limits.h"
#include "rush/histogram.h"
#include "rush/rush_options.h"

/* A purchase's status as last seen; ordered as in API.md, then rush's own. */
enum rush_status {
    RUSH_STATUS_UNSENT = 0, /* the purchase request was not answered 202 (yet) */
    RUSH_STATUS_QUEUED,
    RUSH_STATUS_WAITING,
    RUSH_STATUS_HELD,
    RUSH_STATUS_CONFIRMED,
    RUSH_STATUS_EXPIRED,
    RUSH_STATUS_CANCELLED,
    RUSH_STATUS_REJECTED,
    RUSH_STATUS_REFUSED, /* the purchase request was answered 4xx: never accepted */
    RUSH_STATUS_COUNT,
};

enum rush_reason {
    RUSH_REASON_NONE = 0,
    RUSH_REASON_SOLD_OUT,
    RUSH_REASON_LIMIT_EXCEEDED,
    RUSH_REASON_SALE_CLOSED,
    RUSH_REASON_UNKNOWN_CATEGORY,
    RUSH_REASON_ENGINE_FULL,
    RUSH_REASON_INVALID,
    RUSH_REASON_LINE_FULL,
    RUSH_REASON_OTHER,
    RUSH_REASON_COUNT,
};

enum rush_buyer_flag {
    RUSH_BUYER_DECIDED = 1, /* a status other than queued was seen */
    RUSH_BUYER_GRANTED = 2, /* held at some point (held, confirmed, expired or cancelled seen) */
    RUSH_BUYER_ACTED = 4,   /* its confirm or cancel was sent */
    RUSH_BUYER_LOST = 8,    /* rush gave up following it (errors); not final */
    RUSH_BUYER_SHORT_POLL = 16, /* its next poll is a plain read (waiting: see rush.c) */
};

#define RUSH_TIME_UNKNOWN INT64_MIN

/* One buyer, customer b<index>, one purchase of quantity 1. */
struct rush_buyer {
    char purchase_id[24]; /* "p_…" once accepted */
    uint64_t seq_major;   /* seq "<a>-<b>" */
    uint64_t seq_minor;
    int64_t first_sent_us;   /* first purchase request sent (monotonic clock) */
    int64_t accepted_us;     /* 202 received */
    int64_t grant_ms;        /* server clock: hold_expires_at - hold; or RUSH_TIME_UNKNOWN */
    int64_t hold_expires_ms; /* server clock, last seen; or RUSH_TIME_UNKNOWN */
    int64_t due_us;          /* when its timer fires (while in the timer heap) */
    uint32_t next;           /* link in one of the driver's queues */
    uint16_t refused_http;   /* RUSH_STATUS_REFUSED: the HTTP status */
    uint8_t category;
    uint8_t status; /* enum rush_status */
    uint8_t reason; /* enum rush_reason, when rejected */
    uint8_t step;   /* the driver's next step for it */
    uint8_t attempts;
    uint8_t flags; /* enum rush_buyer_flag */
};

struct rush_category {
    char id[16]; /* "c<index>" */
    uint32_t capacity_asked;
    uint32_t confirmed_seen; /* purchases rush saw confirmed */
    int64_t stock_out_us;    /* first waiting or sold_out decision seen; 0 never */
    /* GET /v1/events/{id} at the end. */
    bool has_readback;
    uint32_t capacity, available, held, sold, waiting;
};

struct rush_run {
    const struct rush_options *options;
    struct rush_buyer *buyers; /* options->buyers of them */
    uint32_t category_count;
    struct rush_category categories[CATRACA_CATEGORIES_MAX];
    int64_t hold_ms; /* the event's, as the server answered */
    bool has_event_readback;
    uint64_t queue_pending; /* the event's queue.pending at the end */

    uint64_t status_counts[RUSH_STATUS_COUNT]; /* live: buyers per status */
    uint64_t decided;                          /* accepted purchases with a decision seen */
    uint64_t requests_sent;
    uint64_t responses;
    uint64_t responses_5xx;
    uint64_t responses_429;
    uint64_t responses_503;
    uint64_t transport_errors; /* resets, refused connections, malformed answers */
    uint64_t retries;
    uint64_t confirm_conflicts; /* 409 on confirm: the hold ended before the payment */
    uint64_t cancel_conflicts;

    /* Monotonic microseconds; 0 = never. */
    int64_t started_us; /* the first purchase request */
    int64_t last_accepted_us;
    int64_t last_decided_us;
    int64_t last_final_us;
    int64_t ended_us;
    bool is_deadline_hit;

    /*
     * Purchase -> 202. At --rate from the purchase's scheduled send (started_us + index / rate),
     * so time rush spent behind its schedule (no free connection, the --demo token, retries)
     * counts: no coordinated omission. In an opening bell, from its first send.
     */
    struct histogram accept_latency_us;
    struct histogram send_lag_us;         /* --rate: scheduled send -> first request sent */
    struct histogram decision_latency_us; /* 202 -> first status other than queued */
};

const char *rush_status_name(uint8_t status);
const char *rush_reason_name(uint8_t reason);

#endif
