/*
 * engine.h - the decision engine of one partition (one event).
 *
 * A pure, deterministic state machine: commands in, outcomes out. No I/O, no
 * clock, no randomness, no allocation after engine_init(). The same command
 * sequence applied to two engines initialised with the same config yields the
 * same outcomes, byte for byte, always. Time arrives inside each command
 * (now_ms, the log's time) and never goes backwards: the engine's clock is the
 * maximum now_ms seen.
 *
 * The promises, kept after every command (asserted in the engine, always on):
 *
 *  1. No oversell. Per category: available + held + sold == capacity, every
 *     term >= 0. Under the bounded line policy the tickets wanted by the wait
 *     line (waiting_quantity) never exceed available + held; under the
 *     unbounded one, no waiting request wants more than available + held.
 *
 *  2. Arrival order. Per category, a purchase is granted only if no earlier
 *     purchase of that category is waiting. On PURCHASE, in this order:
 *       a. purchase_id seen before           -> the earlier decision repeated
 *                                               (result REPEATED, no change);
 *       b. purchase pool full                -> rejected ENGINE_FULL (not
 *                                               remembered: the pool stays full);
 *       c. purchase_id == 0                  -> rejected INVALID (not remembered);
 *          quantity == 0                     -> rejected INVALID;
 *       d. no event, or state not open       -> rejected SALE_CLOSED;
 *       e. category id unknown               -> rejected UNKNOWN_CATEGORY;
 *       f. new customer, customer pool full  -> rejected ENGINE_FULL;
 *       g. customer's held + confirmed + waiting tickets + quantity
 *          > per_customer_limit              -> rejected LIMIT_EXCEEDED;
 *       h. wait line empty and available >= quantity
 *                                            -> HELD until now + hold_ms;
 *       i. capacity - sold < quantity        -> rejected SOLD_OUT: final and
 *          true, sold tickets never come back, so no later command can serve
 *          this quantity (the only place SOLD_OUT is decided, with rule 3's
 *          sweep, which applies the same test);
 *       j. line policy UNBOUNDED             -> WAITING, position = line length
 *          (the line's bound is the purchase pool: rule b, ENGINE_FULL);
 *          line policy BOUNDED and
 *          available + held - waiting_quantity >= quantity
 *                                            -> WAITING, position = line length;
 *       k. otherwise (BOUNDED)               -> rejected LINE_FULL: the line
 *          already wants every ticket that could come back; tickets may still
 *          return later (a retry may succeed).
 *
 *  3. Holds expire. Before applying any command, the engine advances its clock
 *     to max(clock, now_ms) and expires, one at a time in (expires_at, arrival)
 *     order, every hold with expires_at <= clock: the hold becomes EXPIRED, its
 *     tickets return to available and its category's wait line is served from
 *     the head (each head whose quantity fits in available becomes HELD until
 *     clock + hold_ms) before the next hold expires. A hold is valid while
 *     clock < expires_at; at clock == expires_at it has expired. Expiry costs
 *     O(1) per hold (per category, grant order is expiry order). When returned tickets are left in
 *     available with the line empty, the category's available_again_at_ms
 *     becomes the clock.
 *     When a CONFIRM lowers available + held (= capacity - sold), waiting
 *     requests that can no longer be served are rejected at once:
 *       UNBOUNDED: every waiting request whose quantity exceeds
 *         capacity - sold is rejected SOLD_OUT (the others keep their place).
 *         The line is walked only while capacity - sold < per_customer_limit,
 *         which at most per_customer_limit confirms of a category reach.
 *       BOUNDED: the line is walked from the head with a budget of
 *         available + held; a request whose quantity exceeds what is left of
 *         the budget is rejected (SOLD_OUT when its quantity exceeds
 *         capacity - sold, else LINE_FULL), any other keeps its place and uses
 *         its quantity of the budget. Amortised O(1) per command.
 *     The line is then served from its head, as after an expiry: a rejected
 *     head may have been all that kept the requests behind it waiting.
 *
 *  4. Per-customer limit: held, confirmed and waiting tickets count; expired,
 *     cancelled and rejected ones do not.
 *
 *  CONFIRM {purchase_id, payment_ref}:
 *       unknown purchase                  -> CONFLICT, reason UNKNOWN_PURCHASE;
 *       HELD                              -> CONFIRMED with ticket codes, OK;
 *       CONFIRMED with the same payment_ref -> REPEATED (same tickets);
 *       CONFIRMED with another payment_ref  -> CONFLICT, ALREADY_CONFIRMED;
 *       EXPIRED, no late payment recorded -> OK, reason REFUND_DUE: a late
 *                                            payment; the purchase stays EXPIRED
 *                                            (never a ticket), records the
 *                                            payment_ref and is_refund_due;
 *       EXPIRED, refund due, same payment_ref  -> REPEATED, REFUND_DUE;
 *       EXPIRED, refund due, other payment_ref -> CONFLICT, REFUND_DUE (only the
 *                                            first late payment is recorded);
 *       CANCELLED                         -> CONFLICT, HOLD_CANCELLED;
 *       WAITING / REJECTED                -> CONFLICT, NOT_HELD.
 *  CANCEL {purchase_id, customer}:
 *       unknown purchase                  -> CONFLICT, UNKNOWN_PURCHASE;
 *       customer is not the buyer         -> CONFLICT, NOT_OWNER;
 *       HELD                              -> CANCELLED (tickets return, line served), OK;
 *       WAITING                           -> CANCELLED (leaves the line, which closes
 *                                            up and is served from its head), OK;
 *       CANCELLED                         -> REPEATED;
 *       anything else                     -> CONFLICT, NOT_HELD.
 *  CREATE_EVENT: the first one creates the event (OK, or CONFLICT/INVALID_EVENT
 *       when the spec breaks a limit); later ones are REPEATED when the spec
 *       equals the first (ignoring the secret), else CONFLICT/EVENT_MISMATCH.
 *  SET_STATE: no event -> CONFLICT/NO_EVENT; a state other than OPEN, PAUSED,
 *       CLOSED -> CONFLICT/INVALID. Otherwise OK. Setting CLOSED rejects
 *       every waiting request SALE_CLOSED (categories in index order, each line
 *       from its head). PAUSED and CLOSED refuse new purchases; holds, confirms,
 *       cancels, expiry and the wait line go on in every state.
 *  TICK: only advances the clock.
 *
 *  Scheduled on-sale (spec.opens_at_ms != 0), a fair pre-queue. Let
 *  window = opens_at_ms - prequeue_ms. Until the DRAW, rule d is followed by
 *       d2. now_ms < window                  -> rejected SALE_NOT_OPEN;
 *     and rules h..k are replaced by
 *       h2. now_ms < opens_at_ms             -> PREQUEUED (in the draw);
 *       i2. otherwise                        -> DEFERRED (after the draw, in arrival order).
 *     Both keep their tickets counted for rule g (a customer cannot enter the draw with more
 *     than the limit), are in no line and hold nothing.
 *  DRAW {seed}: no event -> CONFLICT/NO_EVENT; not scheduled or seed != engine_draw_seed
 *       (the event's secret) -> CONFLICT/INVALID; already drawn -> REPEATED; now_ms <
 *       opens_at_ms -> CONFLICT/SALE_NOT_OPEN. Otherwise OK, then every PREQUEUED purchase
 *       is decided by rules g..k (its tickets released first, so g passes as at arrival),
 *       one at a time in ascending order of SHA-256(seed || purchase id text) (the text is
 *       "p_" and the 13 characters of engine_ticket_code_format(purchase_id), as in the
 *       API; the 32-byte digests compare as big-endian numbers), then every DEFERRED one in
 *       arrival order. From then on the pre-queue's entries rank among themselves (their
 *       slots, engine_purchase_view) in the draw's order. The draw is the same in every
 *       state: a purchase decided while the sale is paused or closed is rejected
 *       SALE_CLOSED (rule d applies too).
 *
 *  Strings in commands are read up to their first NUL or the end of their
 *  array, whichever comes first; the engine never reads past an array.
 *  Identifiers compare as those bounded strings.
 *
 *  5. Outcomes. Every command emits, through the sink, first the outcomes of
 *     expiry (EXPIRED, then HELD for each request served), then its own answer
 *     (exactly one ENGINE_OUTCOME_PURCHASE / _CONFIRM / _CANCEL / _EVENT,
 *     none for TICK), then its consequences (SOLD_OUT / LINE_FULL / SALE_CLOSED
 *     rejections of waiting requests, then HELD for requests served after a cancel, a
 *     buyer leaving the line, or a confirm).
 *     engine_outcome_bound() gives how many outcomes the next command can emit.
 *
 * Ticket codes are SipHash-2-4 of (purchase_id, index) keyed by the event's
 * secret: unguessable without the secret, reproducible from the log.
 *
 * Customers are identified inside the engine by a 64-bit SipHash of their id
 * string under a fixed key (engine_customer_key). Two ids colliding would
 * share a quota; the chance is about n^2 / 2^65 for n customers (1e-4 at the
 * 2^26 maximum, 3e-8 at a million).
 */
#ifndef CATRACA_CORE_ENGINE_H
#define CATRACA_CORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

enum engine_command_type {
    ENGINE_COMMAND_CREATE_EVENT = 1,
    ENGINE_COMMAND_SET_STATE = 2,
    ENGINE_COMMAND_PURCHASE = 3,
    ENGINE_COMMAND_CONFIRM = 4,
    ENGINE_COMMAND_CANCEL = 5,
    ENGINE_COMMAND_TICK = 6,
    ENGINE_COMMAND_DRAW = 7, /* the pre-queue draw; see "Scheduled on-sale" above */
};
#define ENGINE_COMMAND_LAST ENGINE_COMMAND_DRAW

enum engine_sale_state {
    ENGINE_STATE_NONE = 0, /* no event created yet */
    ENGINE_STATE_OPEN = 1,
    ENGINE_STATE_PAUSED = 2,
    ENGINE_STATE_CLOSED = 3,
};

enum engine_status {
    ENGINE_STATUS_NONE = 0, /* no such purchase (only in CONFIRM/CANCEL answers) */
    ENGINE_STATUS_WAITING = 1,
    ENGINE_STATUS_HELD = 2,
    ENGINE_STATUS_CONFIRMED = 3,
    ENGINE_STATUS_EXPIRED = 4,
    ENGINE_STATUS_CANCELLED = 5,
    ENGINE_STATUS_REJECTED = 6,
    /* Undecided until the draw (both are "queued" in the API): */
    ENGINE_STATUS_PREQUEUED = 7, /* arrived in the pre-queue window: ordered by the draw */
    ENGINE_STATUS_DEFERRED = 8,  /* arrived after opens_at, before the draw: after it, FIFO */
};
#define ENGINE_STATUS_LAST ENGINE_STATUS_DEFERRED

/* Where a scheduled on-sale stands (engine_draw_state). */
enum engine_draw_state {
    ENGINE_DRAW_NONE = 0,    /* no opens_at: the sale is not scheduled */
    ENGINE_DRAW_PENDING = 1, /* scheduled, the draw has not happened */
    ENGINE_DRAW_DONE = 2,    /* the draw happened; the sale runs as any other */
};

enum engine_reason {
    ENGINE_REASON_NONE = 0,
    /* Why a purchase was rejected (its final reason). */
    ENGINE_REASON_SOLD_OUT = 1,
    ENGINE_REASON_LIMIT_EXCEEDED = 2,
    ENGINE_REASON_SALE_CLOSED = 3,
    ENGINE_REASON_UNKNOWN_CATEGORY = 4,
    ENGINE_REASON_ENGINE_FULL = 5,
    ENGINE_REASON_INVALID = 6,
    /* Why a CONFIRM, CANCEL, CREATE_EVENT or SET_STATE was refused. */
    ENGINE_REASON_UNKNOWN_PURCHASE = 7,
    ENGINE_REASON_HOLD_EXPIRED = 8,
    ENGINE_REASON_HOLD_CANCELLED = 9,
    ENGINE_REASON_NOT_HELD = 10,
    ENGINE_REASON_ALREADY_CONFIRMED = 11,
    ENGINE_REASON_NOT_OWNER = 12,
    ENGINE_REASON_NO_EVENT = 13,
    ENGINE_REASON_EVENT_MISMATCH = 14,
    ENGINE_REASON_INVALID_EVENT = 15,
    /* Rejected only because the bounded line wants every ticket that could come back. */
    ENGINE_REASON_LINE_FULL = 16,
    /* A CONFIRM after the hold expired: payment recorded, to be refunded, never a ticket. */
    ENGINE_REASON_REFUND_DUE = 17,
    /* A purchase before the pre-queue window of a scheduled sale (final, like the others);
     * also why a DRAW before opens_at is refused. */
    ENGINE_REASON_SALE_NOT_OPEN = 18,
};
#define ENGINE_REASON_LAST ENGINE_REASON_SALE_NOT_OPEN

/* How long a category's wait line may grow (engine.h rule 2j), chosen per event. */
enum engine_line_policy {
    /* The line holds at most the tickets that could come back (available + held);
     * beyond, LINE_FULL. The zero value: specs written before the policy existed. */
    ENGINE_LINE_BOUNDED = 0,
    /* The line keeps every request that could still be served (quantity <=
     * capacity - sold), up to the purchase pool. */
    ENGINE_LINE_UNBOUNDED = 1,
};

enum engine_result {
    ENGINE_RESULT_OK = 0,       /* the command took effect */
    ENGINE_RESULT_REPEATED = 1, /* a duplicate: the earlier answer, nothing changed */
    ENGINE_RESULT_CONFLICT = 2, /* refused; reason says why, nothing changed */
};

enum engine_outcome_type {
    ENGINE_OUTCOME_PURCHASE = 1, /* a purchase's new state (answer or consequence) */
    ENGINE_OUTCOME_CONFIRM = 2,  /* the answer to a CONFIRM */
    ENGINE_OUTCOME_CANCEL = 3,   /* the answer to a CANCEL */
    ENGINE_OUTCOME_EVENT = 4,    /* the answer to CREATE_EVENT, SET_STATE or DRAW */
};

struct engine_category_spec {
    char id[CATRACA_ID_MAX + 1];     /* NUL-terminated, 1..64 bytes */
    char name[CATRACA_NAME_MAX + 1]; /* NUL-terminated, 0..128 bytes */
    int64_t price_cents;             /* >= 0 */
    uint32_t capacity;               /* 1..CATRACA_CAPACITY_MAX */
};

struct engine_event_spec {
    char id[CATRACA_ID_MAX + 1];
    char name[CATRACA_NAME_MAX + 1];
    int64_t hold_ms;             /* CATRACA_HOLD_MS_MIN..CATRACA_HOLD_MS_MAX */
    uint32_t per_customer_limit; /* 1..CATRACA_QUANTITY_MAX */
    uint8_t state;               /* enum engine_sale_state, OPEN..CLOSED */
    uint8_t category_count;      /* 1..CATRACA_CATEGORIES_MAX, ids distinct */
    uint8_t line_policy;         /* enum engine_line_policy */
    uint8_t secret[CATRACA_SECRET_BYTES];
    struct engine_category_spec categories[CATRACA_CATEGORIES_MAX];
    /* Scheduled on-sale: 0 = none (prequeue_ms is then 0). Otherwise the sale opens at
     * opens_at_ms (epoch ms, > prequeue_ms) after a pre-queue window of prequeue_ms
     * (0..CATRACA_PREQUEUE_MS_MAX) that starts at opens_at_ms - prequeue_ms. */
    int64_t opens_at_ms;
    int64_t prequeue_ms;
};

struct engine_command {
    uint8_t type;   /* enum engine_command_type */
    int64_t now_ms; /* the log's time for this command */
    union {
        struct engine_event_spec create_event;
        struct {
            uint8_t state; /* OPEN, PAUSED or CLOSED */
        } set_state;
        struct {
            uint64_t purchase_id; /* != 0, unique per event (chosen by the gateway) */
            char customer[CATRACA_ID_MAX + 1];
            char category[CATRACA_ID_MAX + 1];
            uint32_t quantity;
        } purchase;
        struct {
            uint64_t purchase_id;
            char payment_ref[CATRACA_ID_MAX + 1];
        } confirm;
        struct {
            uint64_t purchase_id;
            char customer[CATRACA_ID_MAX + 1];
        } cancel;
        struct {
            uint8_t seed[CATRACA_DRAW_SEED_BYTES]; /* engine_draw_seed() of the event */
        } draw;
    } u;
};

/*
 * One decision. For PURCHASE/CONFIRM/CANCEL outcomes, the purchase's state
 * after the command (status, hold expiry, position, tickets). For EVENT
 * outcomes, purchase fields are 0 and event_state holds the sale state.
 */
struct engine_outcome {
    uint64_t purchase_id;
    uint64_t customer_key;      /* engine_customer_key() of the buyer */
    int64_t hold_expires_at_ms; /* HELD: when the hold ends; otherwise 0 */
    uint32_t position;          /* WAITING: 1-based place in line at this moment; else 0 */
    uint32_t quantity;
    uint8_t category; /* category index (0 when the category id is unknown) */
    uint8_t type;     /* enum engine_outcome_type */
    uint8_t status;   /* enum engine_status */
    uint8_t reason;   /* enum engine_reason */
    uint8_t result;   /* enum engine_result */
    uint8_t event_state;
    uint8_t ticket_count; /* CONFIRMED: quantity; else 0 */
    uint8_t reserved;     /* always 0: names the byte that would be padding, so that every
                           * byte of an outcome is defined and two engines' outcomes compare
                           * with memcmp */
    uint64_t ticket_codes[CATRACA_QUANTITY_MAX]; /* [ticket_count ..] are 0 */
};

/* Receives every outcome in order. The pointer is valid during the call only. */
struct engine_sink {
    void (*emit)(void *context, const struct engine_outcome *outcome);
    void *context;
    /* Optional (NULL: not called). engine_apply_batch() calls it with i before it applies
     * commands[i], so a sink can tell which command the outcomes that follow answer;
     * engine_apply() does not call it. */
    void (*begin_command)(void *context, size_t index);
};

struct engine_config {
    uint32_t purchases_max; /* purchases remembered per event (every one, for idempotency) */
    uint32_t customers_max; /* distinct customers per event */
    /* Touch every pool page at engine_new (no page fault ever on the hot path); false lets
     * the kernel commit pages as purchases arrive (many events, each mostly empty). */
    bool is_prefaulted;
};

struct engine_category_counts {
    uint32_t capacity;
    uint32_t available;
    uint32_t held;
    uint32_t sold;
    uint32_t waiting_count;    /* requests in the wait line */
    uint32_t waiting_quantity; /* tickets they ask for */
    uint32_t returned;         /* tickets of holds that expired or were cancelled, ever */
    /* The last time returned tickets were left in available with the line empty
     * ("tickets are available again"); 0 when never. */
    int64_t available_again_at_ms;
};

struct engine_stats {
    uint64_t commands;
    uint64_t purchases;
    uint64_t holds_granted;
    uint64_t holds_expired;
    uint64_t holds_cancelled;
    uint64_t confirmed;
    uint64_t rejected;
    uint64_t repeated;
};

struct engine_purchase_view {
    uint64_t purchase_id;
    /* Arrival rank among the purchases this engine remembers (a pre-queue's entries take
     * the draw's order among themselves when it happens). */
    uint32_t slot;
    uint64_t customer_key;
    int64_t hold_expires_at_ms;
    uint32_t quantity;
    uint8_t category;
    uint8_t status;
    uint8_t reason;
    bool is_refund_due; /* EXPIRED and a late CONFIRM was recorded */
};

struct engine; /* opaque; see engine.c */

/*
 * Allocates the pools for config (the only allocation the engine makes).
 * Returns 0, CATRACA_E_INVALID for a config outside limits.h, or
 * CATRACA_E_NOMEM. On success *out is owned by the caller: engine_free().
 */
int engine_new(const struct engine_config *config, struct engine **out);
void engine_free(struct engine *engine);

/*
 * Applies one command; every outcome goes to sink in order. Returns 0, or
 * CATRACA_E_INVALID for an unknown command type or NULL argument (nothing
 * changes). Anything else in a command, however wrong, yields outcomes.
 */
int engine_apply(struct engine *engine, const struct engine_command *command,
                 const struct engine_sink *sink);

/*
 * A hint with no effect on state: starts loading the table entries a later
 * engine_apply(command) will probe. A caller holding a batch calls it a few
 * commands ahead, so cache misses overlap instead of queueing.
 */
void engine_prefetch(const struct engine *engine, const struct engine_command *command);

/*
 * Applies commands[0 .. count - 1] in order, exactly as engine_apply() on each
 * would (same outcomes, same state), working a few commands ahead: each
 * command's customer key is computed once and the table entries it will probe
 * are loaded while earlier commands are applied. The way to apply a batch read
 * from the log. Returns 0, or CATRACA_E_INVALID (a NULL argument or any command
 * of an unknown type: then nothing is applied).
 */
int engine_apply_batch(struct engine *engine, const struct engine_command *commands, size_t count,
                       const struct engine_sink *sink);

/* The most outcomes the next command can emit (for sizing the sink's buffer). */
uint64_t engine_outcome_bound(const struct engine *engine);

int64_t engine_now_ms(const struct engine *engine);
/* When the earliest hold expires; INT64_MAX when nothing is held. */
int64_t engine_next_expiry_ms(const struct engine *engine);
/* ENGINE_STATE_NONE until an event is created. */
uint8_t engine_state(const struct engine *engine);
/* NULL until an event is created; the spec of the first CREATE_EVENT. */
const struct engine_event_spec *engine_event(const struct engine *engine);
uint32_t engine_category_count(const struct engine *engine);
/* Returns 0 or CATRACA_E_INVALID for an index out of range. */
int engine_category_counts(const struct engine *engine, uint32_t category,
                           struct engine_category_counts *out);
void engine_stats(const struct engine *engine, struct engine_stats *out);
/* Returns 0, or CATRACA_E_NOTFOUND. */
int engine_purchase(const struct engine *engine, uint64_t purchase_id,
                    struct engine_purchase_view *out);
/* The purchase in arrival slot `slot` (0 .. engine_purchase_count() - 1): 0 or CATRACA_E_NOTFOUND.
 */
int engine_purchase_at(const struct engine *engine, uint32_t slot,
                       struct engine_purchase_view *out);
/*
 * Tickets wanted ahead of a WAITING purchase in its category's line (the sum of
 * the quantities of the earlier waiting requests). O(place in line). 0, or
 * CATRACA_E_NOTFOUND (unknown purchase) or CATRACA_E_INVALID (not waiting).
 */
int engine_line_ahead(const struct engine *engine, uint64_t purchase_id, uint32_t *ahead);
/* "bounded" / "unbounded", and back: 0 or CATRACA_E_INVALID. */
const char *engine_line_policy_name(uint8_t policy);
int engine_line_policy_parse(const char *name, uint8_t *policy);
/* Bytes the engine allocated (pools and tables). */
size_t engine_memory_bytes(const struct engine *engine);
/* Purchases currently in a pool slot (every purchase ever applied). */
uint32_t engine_purchase_count(const struct engine *engine);

/*
 * Full consistency check, O(everything): recounts every category from the
 * purchases, checks the expiry chains, the wait lines, the hash tables and the
 * customers' counts. Returns 0 or CATRACA_E_CORRUPT. For tests and debugging.
 */
int engine_validate(const struct engine *engine);

/*
 * Snapshot of the whole state. engine_snapshot_size() is an upper bound for
 * the buffer. engine_snapshot_write() returns 0 and the length written, or
 * CATRACA_E_NOSPACE. engine_snapshot_read() replaces the state of an engine
 * (whose config must be large enough) with a snapshot; it validates every
 * byte and returns 0, CATRACA_E_VERSION, CATRACA_E_TRUNCATED,
 * CATRACA_E_CORRUPT or CATRACA_E_TOO_LARGE. On error the engine is left empty
 * (as after engine_new), never half-restored.
 */
size_t engine_snapshot_size(const struct engine *engine);
int engine_snapshot_write(const struct engine *engine, uint8_t *buffer, size_t capacity,
                          size_t *length);
int engine_snapshot_read(struct engine *engine, const uint8_t *buffer, size_t length);

/* The scheduled sale's state; prequeued/deferred count purchases awaiting the draw. */
struct engine_draw_view {
    uint8_t state; /* enum engine_draw_state */
    uint32_t prequeued;
    uint32_t deferred;
};
void engine_draw_state(const struct engine *engine, struct engine_draw_view *out);

/*
 * The draw's seed, SHA-256("catraca-draw-seed-v1" || secret): secret until the DRAW reveals
 * it (knowing it does not reveal the secret behind ticket codes). Its commitment, published
 * from the event's creation on, is SHA-256(seed).
 */
void engine_draw_seed(const uint8_t secret[CATRACA_SECRET_BYTES],
                      uint8_t seed[CATRACA_DRAW_SEED_BYTES]);
void engine_draw_commitment(const uint8_t seed[CATRACA_DRAW_SEED_BYTES],
                            uint8_t commitment[CATRACA_DRAW_SEED_BYTES]);

/* The engine's identity for a customer id string (SipHash-2-4, fixed key). */
uint64_t engine_customer_key(const char *customer);
/* Ticket code number `index` (0-based) of a purchase under an event secret. */
uint64_t engine_ticket_code(const uint8_t secret[CATRACA_SECRET_BYTES], uint64_t purchase_id,
                            uint32_t index);
/* Writes a ticket code as 13 Crockford base32 characters and a NUL. */
void engine_ticket_code_format(uint64_t code, char out[14]);

const char *engine_status_name(uint8_t status); /* "held", ... as in API.md */
/* CONFIRMED, EXPIRED, CANCELLED or REJECTED: it never changes again. */
bool engine_status_is_final(uint8_t status);
const char *engine_reason_name(uint8_t reason); /* "sold_out", ...; NULL for NONE */
const char *engine_state_name(uint8_t state);   /* "open", "paused", "closed" */
int engine_state_parse(const char *name, uint8_t *state);

#endif
