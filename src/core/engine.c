/*
 * engine.c - the decision engine. The contract is engine.h; this file keeps
 * the reasoning.
 *
 * Storage, all allocated by engine_new() and never again:
 *   purchases[]      every purchase ever applied, in arrival order (the slot
 *                    index is the arrival rank, which orders ties in expiry
 *                    and defines each wait line);
 *   purchase_table   open addressing over purchase ids (linear probing; no
 *                    deletions, purchases are never forgotten), each entry a
 *                    slot and a fingerprint of the id (purchase_table_entry);
 *   outcome          the outcome being emitted, built in place (outcome_begin);
 *   customers        ticket count per customer key, an open-addressing table
 *                    of 64-byte buckets, 7 keys and their counts each
 *                    (purchases keep their customer's index: no second probe);
 *   expiry chains    per category, a singly linked list of its held purchases
 *                    in grant order, which is (expires_at, slot) order (see
 *                    "Expiry order" below);
 *   wait lines       per category, a doubly linked list through the purchase
 *                    slots (a waiting purchase is never in an expiry chain, so
 *                    the links share storage);
 *   draw_order       scratch for the draw's sort of the pre-queue.
 * A scheduled sale's draw sorts the pre-queue in draw_order, using each entry's
 * `when` for its sort key; then it moves the pre-queue's entries so that their
 * slots follow the draw (the slot is the arrival rank, and the draw decides the
 * pre-queue's ranks).
 *
 * Expiry order. engine.h rule 3 expires holds in (expires_at, slot) order. A
 * hold granted at clock t expires at t + hold_ms, hold_ms is the event's and
 * never changes, and the clock never goes back: so grant order is expires_at
 * order, with ties among holds granted at the same clock. Within one category
 * grant order is also slot order: a hold is granted either to a new arrival
 * (the newest slot, and only when its line is empty) or to the head of its
 * line (the line is in slot order, and everyone in it arrived after any
 * arrival granted while the line was empty); the draw grants in slot order, and
 * nothing is held before it. Across categories the slot order of same-clock
 * grants does not hold (a new arrival in one category, then a line head of
 * another served by a cancel in the same millisecond), so each category keeps
 * its own chain and expiry takes the least (expires_at, slot) of their heads.
 * A hold that is confirmed or cancelled stays in its chain, marked by its
 * status, until it reaches the head, where it is dropped (each one once); the
 * head of every chain is always held, so its time is the next expiry. O(1) per
 * grant, confirm, cancel and expiry, where the binary heap was O(log n) cache
 * misses. engine_validate() checks the order of every chain, and a snapshot
 * whose holds break it is refused.
 */
#include "core/engine.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/codec.h"
#include "core/error.h"
#include "core/sha256.h"
#include "core/siphash.h"
#include "core/wire.h"

#define NIL UINT32_MAX

struct purchase {
    uint64_t id;
    uint64_t customer_key;
    union {
        int64_t expires_at_ms;    /* HELD */
        uint64_t payment_ref_key; /* CONFIRMED: key of the payment reference */
        uint64_t draw_key;        /* PREQUEUED, during the draw: first 8 digest bytes */
        uint64_t draw_target;     /* PREQUEUED, during the draw: the slot it moves to */
    } when;
    union {
        struct {
            uint32_t prev, next;
        } line; /* WAITING */
        struct {
            uint32_t next;
        } expiry; /* HELD, and CONFIRMED/CANCELLED until its chain's head passes it */
    } link;
    uint32_t quantity;
    uint32_t customer; /* index in customers[] once the customer is known, else NIL */
    uint8_t category;
    uint8_t status;
    uint8_t reason;
    uint8_t is_refund_due; /* EXPIRED, and when.payment_ref_key is the late payment's key */
};

/*
 * The customer table: open addressing over entries 0 .. customer_capacity - 1,
 * entry i in bucket i / 7 at position i % 7, probed bucket by bucket from the
 * first entry of the key's home bucket (so a bucket's keys fill it from its
 * first entry, and nothing is ever removed). Seven
 * keys and their ticket counts fill one 64-byte line: one cache miss a lookup,
 * as before, at 9 bytes an entry instead of 16 (key, count, used flag, padded).
 * Key 0 marks an empty entry, so a customer whose key is 0 is stored as
 * CUSTOMER_KEY_FOR_ZERO: the two share a quota, a 2^-64 chance per customer,
 * far below the key collisions engine.h already accepts.
 */
#define CUSTOMER_BUCKET_ENTRIES 7u
#define CUSTOMER_KEY_FOR_ZERO 0x9E3779B97F4A7C15ull
struct customer_bucket {
    uint64_t keys[CUSTOMER_BUCKET_ENTRIES];
    uint8_t tickets[CUSTOMER_BUCKET_ENTRIES]; /* held + confirmed + waiting (+ pre-queued) */
    uint8_t unused;
};
static_assert(sizeof(struct customer_bucket) == 64, "a bucket is one cache line");
static_assert(CATRACA_QUANTITY_MAX <= UINT8_MAX, "a customer's tickets fit in a byte");

struct category {
    uint32_t capacity;
    uint32_t available;
    uint32_t held;
    uint32_t sold;
    uint32_t line_head, line_tail;
    uint32_t waiting_count;
    uint32_t waiting_quantity;
    uint32_t returned;                 /* tickets of expired or cancelled holds */
    int64_t available_again_at_ms;     /* engine.h rule 3; 0 when never */
    uint32_t expiry_head, expiry_tail; /* the expiry chain; its head is always HELD */
    int64_t expiry_head_ms;            /* the head's expires_at (not a cache miss away) */
    uint32_t id_bytes;                 /* strlen of the spec's id, + 1 for its NUL */
};

struct engine {
    struct engine_config config;
    int64_t now_ms;
    uint8_t state;
    struct engine_event_spec event;
    struct category categories[CATRACA_CATEGORIES_MAX];
    uint32_t category_count;

    struct purchase *purchases;
    uint32_t purchase_count;
    uint64_t *purchase_table; /* purchase_table_entry(); 0 is empty */
    uint32_t purchase_table_mask;

    struct customer_bucket *customer_buckets;
    uint32_t customer_count;
    uint32_t customer_capacity; /* entries: CUSTOMER_BUCKET_ENTRIES per bucket */
    uint32_t customer_bucket_count;

    uint32_t held_count;    /* purchases HELD, in the expiry chains */
    int64_t next_expiry_ms; /* least expiry_head_ms; INT64_MAX when nothing is held */
    uint32_t *draw_order;   /* purchases_max entries, used by the draw only */

    /* Scheduled on-sale (engine_draw_state): purchases awaiting the draw are found by their
     * status when it comes, so they need no list; these count them. */
    uint8_t draw_state;
    uint32_t prequeued_count;
    uint32_t deferred_count;

    struct engine_stats stats;
    const struct engine_sink *sink; /* during engine_apply only */
    struct engine_outcome outcome;  /* the one being emitted (see outcome_begin) */
};

static const uint8_t customer_hash_key[16] = {'c', 'a', 't', 'r', 'a', 'c', 'a', '-',
                                              'c', 'u', 's', 't', 'o', 'm', 'e', 'r'};

/* ---- hashing and lookup ------------------------------------------------------------------ */

/*
 * Fibonacci hashing: gateway ids are time-ordered (ms << 22 | tag << 12 |
 * counter), so an xor-fold put every id of a long window into one region of
 * the linear-probing table; the multiply spreads all bits into the top ones.
 * The table is rebuilt from the purchases on snapshot read, so this may change.
 */
static uint32_t purchase_slot_hash(uint64_t id)
{
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32);
}

static uint64_t bounded_string_key(const char *s, size_t array_size)
{
    return siphash24_bounded_string(customer_hash_key, s, array_size);
}

uint64_t engine_customer_key(const char *customer)
{
    return siphash24(customer_hash_key, customer, strlen(customer));
}

static uint32_t table_capacity_for(uint32_t count)
{
    uint32_t capacity = 16;
    while (capacity < 2 * count)
        capacity *= 2;
    return capacity;
}

/*
 * A purchase table entry: slot + 1 in the low 32 bits (0: empty), a fingerprint of the id in
 * the high 32. A probe compares the fingerprint before it reads the purchase's id, so passing
 * an occupied entry costs no read of purchases[] (a cache miss at random, not prefetched: at
 * half load a new id passes one or two such entries). 4 bytes a table entry more, 8.4 bytes a
 * purchase at the table's load (limits: 94 B a purchase).
 */
#define PURCHASE_TABLE_SLOT_BITS 0xFFFFFFFFull

static uint64_t purchase_fingerprint(uint64_t id)
{
    return (uint64_t)((uint32_t)(id >> 32) ^ (uint32_t)id) << 32;
}

static uint64_t purchase_table_entry(uint64_t id, uint32_t slot)
{
    return purchase_fingerprint(id) | ((uint64_t)slot + 1);
}

/* Returns the table position holding `id`, or the empty position where it would go. */
static uint32_t purchase_table_find(const struct engine *e, uint64_t id)
{
    uint64_t fingerprint = purchase_fingerprint(id);
    uint32_t i = purchase_slot_hash(id) & e->purchase_table_mask;
    for (;;) {
        uint64_t entry = e->purchase_table[i];
        if (entry == 0)
            return i;
        if ((entry & ~PURCHASE_TABLE_SLOT_BITS) == fingerprint &&
            e->purchases[(uint32_t)entry - 1].id == id)
            return i;
        i = (i + 1) & e->purchase_table_mask;
    }
}

static uint32_t purchase_lookup(const struct engine *e, uint64_t id)
{
    uint64_t entry = e->purchase_table[purchase_table_find(e, id)];
    return entry == 0 ? NIL : (uint32_t)entry - 1;
}

static uint64_t customer_stored_key(uint64_t key)
{
    return key != 0 ? key : CUSTOMER_KEY_FOR_ZERO;
}

/* The first bucket probed for a stored key. Keys are SipHash values: their top bits are as good
 * as any mix of them, and a multiply maps them onto a bucket count that is no power of 2. */
static uint32_t customer_home_bucket(const struct engine *e, uint64_t stored_key)
{
    return (uint32_t)(((stored_key >> 32) * (uint64_t)e->customer_bucket_count) >> 32);
}

static uint64_t *customer_key_at(const struct engine *e, uint32_t entry)
{
    return &e->customer_buckets[entry / CUSTOMER_BUCKET_ENTRIES]
                .keys[entry % CUSTOMER_BUCKET_ENTRIES];
}

static uint8_t *customer_tickets_at(const struct engine *e, uint32_t entry)
{
    return &e->customer_buckets[entry / CUSTOMER_BUCKET_ENTRIES]
                .tickets[entry % CUSTOMER_BUCKET_ENTRIES];
}

/* Where customer_find_position() found a key or the empty entry where it would go. */
struct customer_position {
    struct customer_bucket *bucket;
    uint32_t at;    /* 0 .. CUSTOMER_BUCKET_ENTRIES - 1 */
    uint32_t entry; /* bucket index * CUSTOMER_BUCKET_ENTRIES + at */
};

/* Probes bucket after bucket from the key's home bucket, each from its first entry: the home
 * bucket is the one line prefetch_tables() loads, and no division is needed a step. */
static inline __attribute__((always_inline)) struct customer_position
customer_find_position(const struct engine *e, uint64_t stored)
{
    uint32_t bucket = customer_home_bucket(e, stored);
    for (;;) {
        struct customer_bucket *b = &e->customer_buckets[bucket];
        for (uint32_t at = 0; at < CUSTOMER_BUCKET_ENTRIES; at++)
            if (b->keys[at] == 0 || b->keys[at] == stored)
                return (struct customer_position){
                    .bucket = b, .at = at, .entry = bucket * CUSTOMER_BUCKET_ENTRIES + at};
        bucket = bucket + 1 == e->customer_bucket_count ? 0 : bucket + 1;
    }
}

/* Returns the entry holding `key`, or the empty entry where it would go. */
static uint32_t customer_find(const struct engine *e, uint64_t key)
{
    return customer_find_position(e, customer_stored_key(key)).entry;
}

static uint32_t customer_lookup(const struct engine *e, uint64_t key)
{
    uint32_t i = customer_find(e, key);
    return *customer_key_at(e, i) != 0 ? i : NIL;
}

/* Adds a customer at `i`, the empty entry customer_find(key) returned; the caller checked the
 * pool has room. */
static uint32_t customer_add_at(struct engine *e, uint32_t i, uint64_t key)
{
    assert(e->customer_count < e->config.customers_max);
    assert(*customer_key_at(e, i) == 0);
    *customer_key_at(e, i) = customer_stored_key(key);
    *customer_tickets_at(e, i) = 0;
    e->customer_count++;
    return i;
}

/* Statuses whose tickets count against the customer's limit (rule 4, and the pre-queue). */
static bool holds_quota(uint8_t status)
{
    return status == ENGINE_STATUS_HELD || status == ENGINE_STATUS_CONFIRMED ||
           status == ENGINE_STATUS_WAITING || status == ENGINE_STATUS_PREQUEUED ||
           status == ENGINE_STATUS_DEFERRED;
}

static void customer_release(struct engine *e, const struct purchase *p)
{
    assert(p->customer != NIL &&
           *customer_key_at(e, p->customer) == customer_stored_key(p->customer_key));
    uint8_t *tickets = customer_tickets_at(e, p->customer);
    assert(*tickets >= p->quantity);
    *tickets = (uint8_t)(*tickets - p->quantity);
}

/* ---- expiry chains over held purchases (see "Expiry order" at the top) ------------------- */

static void expiry_note_heads(struct engine *e)
{
    int64_t next = INT64_MAX;
    for (uint32_t i = 0; i < e->category_count; i++)
        if (e->categories[i].expiry_head != NIL && e->categories[i].expiry_head_ms < next)
            next = e->categories[i].expiry_head_ms;
    e->next_expiry_ms = next;
}

/* A hold just granted (or restored, in slot order) goes to the tail of its category's chain. */
static void expiry_append(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    assert(p->status == ENGINE_STATUS_HELD);
    p->link.expiry.next = NIL;
    if (c->expiry_head == NIL) {
        c->expiry_head = slot;
        c->expiry_head_ms = p->when.expires_at_ms;
        if (p->when.expires_at_ms < e->next_expiry_ms)
            e->next_expiry_ms = p->when.expires_at_ms;
    } else {
        /* Grant order is slot order within a category (the proof is at the top). */
        assert(c->expiry_tail < slot);
        e->purchases[c->expiry_tail].link.expiry.next = slot;
    }
    c->expiry_tail = slot;
    e->held_count++;
}

/*
 * A hold that stopped being HELD (expired, cancelled, confirmed). It stays chained unless it
 * is the head; a head that is no longer held is dropped with every such one after it.
 */
static void expiry_forget(struct engine *e, uint32_t slot)
{
    struct category *c = &e->categories[e->purchases[slot].category];
    assert(e->purchases[slot].status != ENGINE_STATUS_HELD && e->held_count > 0);
    e->held_count--;
    if (c->expiry_head != slot)
        return;
    uint32_t head = slot;
    while (head != NIL && e->purchases[head].status != ENGINE_STATUS_HELD)
        head = e->purchases[head].link.expiry.next;
    c->expiry_head = head;
    if (head == NIL)
        c->expiry_tail = NIL;
    else
        c->expiry_head_ms = e->purchases[head].when.expires_at_ms;
    expiry_note_heads(e);
}

/* The category whose chain's head expires first, ties by slot (engine.h rule 3). */
static uint32_t expiry_first_category(const struct engine *e)
{
    uint32_t best = NIL;
    for (uint32_t i = 0; i < e->category_count; i++) {
        const struct category *c = &e->categories[i];
        if (c->expiry_head == NIL)
            continue;
        if (best == NIL || c->expiry_head_ms < e->categories[best].expiry_head_ms ||
            (c->expiry_head_ms == e->categories[best].expiry_head_ms &&
             c->expiry_head < e->categories[best].expiry_head))
            best = i;
    }
    return best;
}

/* ---- wait lines -------------------------------------------------------------------------- */

static void line_append(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    p->link.line.prev = c->line_tail;
    p->link.line.next = NIL;
    if (c->line_tail == NIL)
        c->line_head = slot;
    else
        e->purchases[c->line_tail].link.line.next = slot;
    c->line_tail = slot;
    c->waiting_count++;
    c->waiting_quantity += p->quantity;
}

static void line_remove(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    uint32_t prev = p->link.line.prev, next = p->link.line.next;
    if (prev == NIL)
        c->line_head = next;
    else
        e->purchases[prev].link.line.next = next;
    if (next == NIL)
        c->line_tail = prev;
    else
        e->purchases[next].link.line.prev = prev;
    assert(c->waiting_count > 0 && c->waiting_quantity >= p->quantity);
    c->waiting_count--;
    c->waiting_quantity -= p->quantity;
}

/*
 * 1-based place of a waiting purchase. Walks from both ends at once, so the
 * cost is O(min(place, line length - place)); only repeated and refused
 * answers about a waiting purchase need it (new arrivals take the tail).
 */
static uint32_t line_position(const struct engine *e, uint32_t slot)
{
    const struct category *c = &e->categories[e->purchases[slot].category];
    uint32_t from_head = c->line_head, from_tail = c->line_tail;
    for (uint32_t steps = 0; steps < c->waiting_count; steps++) {
        if (from_head == slot)
            return steps + 1;
        if (from_tail == slot)
            return c->waiting_count - steps;
        from_head = e->purchases[from_head].link.line.next;
        from_tail = e->purchases[from_tail].link.line.prev;
    }
    assert(false && "waiting purchase not in its line");
    return 0;
}

/* ---- outcomes ---------------------------------------------------------------------------- */

/*
 * Every outcome is built in engine->outcome and handed to the sink from there. Its codes past
 * ticket_count are always 0 (the engine is allocated zeroed and outcome_send clears the codes
 * an outcome carried), and every other field is written for each outcome, so it is never
 * zeroed whole: an outcome's 120 bytes cost what its ~40 bytes of fields cost.
 */
static_assert(sizeof(struct engine_outcome) ==
                      offsetof(struct engine_outcome, ticket_codes) +
                          sizeof(((struct engine_outcome *)0)->ticket_codes) &&
                  offsetof(struct engine_outcome, ticket_codes) ==
                      offsetof(struct engine_outcome, reserved) + 1,
              "no padding in an outcome: outcome_begin writes every byte before the codes");

static struct engine_outcome *outcome_begin(struct engine *e, uint8_t type, uint64_t purchase_id,
                                            uint8_t result, uint8_t reason)
{
    struct engine_outcome *o = &e->outcome;
    assert(o->ticket_count == 0 && o->reserved == 0);
    o->purchase_id = purchase_id;
    o->customer_key = 0;
    o->hold_expires_at_ms = 0;
    o->position = 0;
    o->quantity = 0;
    o->category = 0;
    o->type = type;
    o->status = ENGINE_STATUS_NONE;
    o->reason = reason;
    o->result = result;
    o->event_state = e->state;
    return o;
}

static void outcome_send(struct engine *e)
{
    struct engine_outcome *o = &e->outcome;
    e->sink->emit(e->sink->context, o);
    if (o->ticket_count > 0) {
        memset(o->ticket_codes, 0, o->ticket_count * sizeof(o->ticket_codes[0]));
        o->ticket_count = 0;
    }
}

static void emit(struct engine *e, uint32_t slot, uint8_t type, uint8_t result, uint8_t reason)
{
    const struct purchase *p = &e->purchases[slot];
    struct engine_outcome *o =
        outcome_begin(e, type, p->id, result, type == ENGINE_OUTCOME_PURCHASE ? p->reason : reason);
    o->customer_key = p->customer_key;
    o->quantity = p->quantity;
    o->category = p->category;
    o->status = p->status;
    if (p->status == ENGINE_STATUS_HELD)
        o->hold_expires_at_ms = p->when.expires_at_ms;
    if (p->status == ENGINE_STATUS_WAITING)
        o->position = line_position(e, slot);
    if (p->status == ENGINE_STATUS_CONFIRMED) {
        assert(p->quantity <= CATRACA_QUANTITY_MAX);
        o->ticket_count = (uint8_t)p->quantity;
        for (uint32_t i = 0; i < p->quantity; i++)
            o->ticket_codes[i] = engine_ticket_code(e->event.secret, p->id, i);
    }
    outcome_send(e);
}

/* An answer about no purchase at all (unknown id) or about the event. */
static void emit_bare(struct engine *e, uint8_t type, uint64_t purchase_id, uint8_t result,
                      uint8_t reason)
{
    outcome_begin(e, type, purchase_id, result, reason);
    outcome_send(e);
}

/* ---- state changes ----------------------------------------------------------------------- */

/* Inlined: called after every purchase, and its loads are of lines the caller just used. */
static inline __attribute__((always_inline)) void assert_category(const struct engine *e,
                                                                  uint32_t index)
{
    const struct category *c = &e->categories[index];
    assert((uint64_t)c->available + c->held + c->sold == c->capacity);
    assert(e->event.line_policy != ENGINE_LINE_BOUNDED ||
           c->waiting_quantity <= (uint64_t)c->available + c->held);
    assert((c->waiting_count == 0) == (c->line_head == NIL));
    /* Nobody waits for tickets that are there: the head of a line never fits. */
    assert(c->line_head == NIL || e->purchases[c->line_head].quantity > c->available);
    (void)c;
}

static void hold_grant(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    assert(c->available >= p->quantity);
    c->available -= p->quantity;
    c->held += p->quantity;
    p->status = ENGINE_STATUS_HELD;
    p->when.expires_at_ms = e->now_ms + e->event.hold_ms;
    expiry_append(e, slot);
    e->stats.holds_granted++;
}

/* Tickets of a hold go back to stock (expiry or cancel). */
static void hold_release(struct engine *e, uint32_t slot, uint8_t status)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    assert(p->status == ENGINE_STATUS_HELD && c->held >= p->quantity);
    c->held -= p->quantity;
    c->available += p->quantity;
    c->returned += p->quantity;
    p->status = status;
    expiry_forget(e, slot);
    customer_release(e, p);
}

/* After returned tickets were offered to the line: any left over with nobody waiting are
 * "available again" (engine.h rule 3). */
static void note_available_again(struct engine *e, uint32_t category)
{
    struct category *c = &e->categories[category];
    if (c->line_head == NIL && c->available > 0)
        c->available_again_at_ms = e->now_ms;
}

/* Grants holds to the head of a line while its quantity fits in available. */
static void line_serve(struct engine *e, uint32_t category)
{
    struct category *c = &e->categories[category];
    while (c->line_head != NIL && e->purchases[c->line_head].quantity <= c->available) {
        uint32_t slot = c->line_head;
        line_remove(e, slot);
        hold_grant(e, slot);
        emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    }
    assert_category(e, category);
}

static void line_reject(struct engine *e, uint32_t slot, uint8_t reason)
{
    struct purchase *p = &e->purchases[slot];
    line_remove(e, slot);
    p->status = ENGINE_STATUS_REJECTED;
    p->reason = reason;
    customer_release(e, p);
    e->stats.rejected++;
    emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
}

/*
 * After available + held dropped (a confirm), rejects waiting requests that
 * can no longer be served. Walking from the head with budget B = available +
 * held, a request is kept iff its quantity fits what is left of B. Every
 * request whose cumulative end (its quantity plus all ahead of it) is within
 * B keeps its place untouched, so the walk starts at the first request whose
 * end exceeds B, found from the tail. From there the leftover budget is below
 * that request's quantity (<= CATRACA_QUANTITY_MAX), so at most that many
 * later requests are kept; all the others walked are rejected, each once.
 */
static void line_sweep_bounded(struct engine *e, uint32_t category)
{
    struct category *c = &e->categories[category];
    uint64_t budget_total = (uint64_t)c->available + c->held;
    if (c->waiting_quantity <= budget_total)
        return;
    uint64_t end = c->waiting_quantity;
    uint32_t first = NIL;
    for (uint32_t slot = c->line_tail; slot != NIL && end > budget_total;
         slot = e->purchases[slot].link.line.prev) {
        first = slot;
        end -= e->purchases[slot].quantity;
    }
    uint64_t budget = budget_total - end;
    for (uint32_t slot = first; slot != NIL;) {
        uint32_t next = e->purchases[slot].link.line.next;
        if (e->purchases[slot].quantity > budget)
            line_reject(e, slot,
                        e->purchases[slot].quantity > budget_total ? ENGINE_REASON_SOLD_OUT
                                                                   : ENGINE_REASON_LINE_FULL);
        else
            budget -= e->purchases[slot].quantity;
        slot = next;
    }
    /* Not assert_category: the new head may fit until the caller serves the line. */
}

/*
 * The unbounded line after a confirm: rejects SOLD_OUT every waiting request
 * wanting more than capacity - sold (= available + held), keeping the others in
 * place. Only a quantity above that bound can be rejected, and quantities are at
 * most per_customer_limit: the walk happens only while capacity - sold is below
 * it, which at most per_customer_limit confirms of a category reach (each lowers
 * it by at least one).
 */
static void line_sweep_unbounded(struct engine *e, uint32_t category)
{
    struct category *c = &e->categories[category];
    uint64_t servable = (uint64_t)c->available + c->held;
    if (servable >= e->event.per_customer_limit)
        return;
    for (uint32_t slot = c->line_head; slot != NIL;) {
        uint32_t next = e->purchases[slot].link.line.next;
        if (e->purchases[slot].quantity > servable)
            line_reject(e, slot, ENGINE_REASON_SOLD_OUT);
        slot = next;
    }
}

/* engine.h rule 3: after a confirm, drops the waiting requests the policy can no longer keep. */
static void line_sweep(struct engine *e, uint32_t category)
{
    if (e->event.line_policy == ENGINE_LINE_UNBOUNDED)
        line_sweep_unbounded(e, category);
    else
        line_sweep_bounded(e, category);
}

/* Advances the clock and expires every due hold, serving its line each time. */
static void clock_advance(struct engine *e, int64_t now_ms)
{
    if (now_ms > e->now_ms)
        e->now_ms = now_ms;
    while (e->next_expiry_ms <= e->now_ms) {
        uint32_t slot = e->categories[expiry_first_category(e)].expiry_head;
        hold_release(e, slot, ENGINE_STATUS_EXPIRED);
        e->stats.holds_expired++;
        emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
        line_serve(e, e->purchases[slot].category);
        note_available_again(e, e->purchases[slot].category);
    }
}

/* ---- commands ---------------------------------------------------------------------------- */

static bool string_is_valid(const char *s, size_t array_size, bool may_be_empty)
{
    size_t length = strnlen(s, array_size);
    return length < array_size && (may_be_empty || length > 0);
}

/* ---- scheduled on-sale: the pre-queue and its draw ------------------------------------- */

static bool schedule_is_valid(const struct engine_event_spec *spec)
{
    if (spec->opens_at_ms == 0)
        return spec->prequeue_ms == 0;
    return spec->prequeue_ms >= 0 && spec->prequeue_ms <= CATRACA_PREQUEUE_MS_MAX &&
           spec->opens_at_ms > spec->prequeue_ms;
}

/* Rule d2 of engine.h: before the pre-queue window opens nobody may enter. */
static bool schedule_refuses(const struct engine *e)
{
    return e->draw_state == ENGINE_DRAW_PENDING &&
           e->now_ms < e->event.opens_at_ms - e->event.prequeue_ms;
}

/* Rules h2, i2 of engine.h: until the draw, an admitted purchase waits for it. */
static bool prequeue_admit(struct engine *e, uint32_t slot)
{
    if (e->draw_state != ENGINE_DRAW_PENDING)
        return false;
    struct purchase *p = &e->purchases[slot];
    if (e->now_ms < e->event.opens_at_ms) {
        p->status = ENGINE_STATUS_PREQUEUED;
        e->prequeued_count++;
    } else {
        p->status = ENGINE_STATUS_DEFERRED;
        e->deferred_count++;
    }
    return true;
}

void engine_draw_seed(const uint8_t secret[CATRACA_SECRET_BYTES],
                      uint8_t seed[CATRACA_DRAW_SEED_BYTES])
{
    static const char label[] = "catraca-draw-seed-v1";
    sha256_two(label, sizeof(label) - 1, secret, CATRACA_SECRET_BYTES, seed);
}

void engine_draw_commitment(const uint8_t seed[CATRACA_DRAW_SEED_BYTES],
                            uint8_t commitment[CATRACA_DRAW_SEED_BYTES])
{
    sha256_two(seed, CATRACA_DRAW_SEED_BYTES, NULL, 0, commitment);
}

/* SHA-256(seed || "p_" + the purchase id's 13 characters): the draw's sort key. */
static void draw_digest(const uint8_t seed[CATRACA_DRAW_SEED_BYTES], uint64_t purchase_id,
                        uint8_t digest[SHA256_BYTES])
{
    char text[16] = "p_";
    engine_ticket_code_format(purchase_id, text + 2);
    sha256_two(seed, CATRACA_DRAW_SEED_BYTES, text, 15, digest);
}

/* Digest order, compared in full only when the 8-byte prefixes tie; then arrival order. */
static bool draw_less(const struct engine *e, const uint8_t *seed, uint32_t a, uint32_t b)
{
    const struct purchase *pa = &e->purchases[a], *pb = &e->purchases[b];
    if (pa->when.draw_key != pb->when.draw_key)
        return pa->when.draw_key < pb->when.draw_key;
    uint8_t digest_a[SHA256_BYTES], digest_b[SHA256_BYTES];
    draw_digest(seed, pa->id, digest_a);
    draw_digest(seed, pb->id, digest_b);
    int order = memcmp(digest_a, digest_b, SHA256_BYTES);
    return order != 0 ? order < 0 : a < b;
}

static void draw_sift_down(const struct engine *e, const uint8_t *seed, uint32_t *slots,
                           uint32_t count, uint32_t index)
{
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= count)
            return;
        if (child + 1 < count && draw_less(e, seed, slots[child], slots[child + 1]))
            child++;
        if (!draw_less(e, seed, slots[index], slots[child]))
            return;
        uint32_t swap = slots[index];
        slots[index] = slots[child];
        slots[child] = swap;
        index = child;
    }
}

/* Heapsort: in place, O(n log n), no recursion and no allocation (engine rules). */
static void draw_sort(const struct engine *e, const uint8_t *seed, uint32_t *slots, uint32_t count)
{
    for (uint32_t i = count / 2; i-- > 0;)
        draw_sift_down(e, seed, slots, count, i);
    for (uint32_t end = count; end-- > 1;) {
        uint32_t swap = slots[0];
        slots[0] = slots[end];
        slots[end] = swap;
        draw_sift_down(e, seed, slots, end, 0);
    }
}

static uint8_t purchase_decide(struct engine *e, uint32_t slot);

/* Decides a purchase that waited for the draw, as if it arrived now (rules d, g..j). */
static void draw_decide(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    assert(p->status == ENGINE_STATUS_PREQUEUED || p->status == ENGINE_STATUS_DEFERRED);
    customer_release(e, p);
    p->status = ENGINE_STATUS_REJECTED;
    uint8_t reason =
        e->state == ENGINE_STATE_OPEN ? purchase_decide(e, slot) : ENGINE_REASON_SALE_CLOSED;
    if (reason != ENGINE_REASON_NONE) {
        p->status = ENGINE_STATUS_REJECTED;
        p->reason = reason;
        e->stats.rejected++;
    }
    emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    assert_category(e, p->category);
}

/*
 * Gives the pre-queue's entries the draw's order as their arrival rank: the i-th entry drawn
 * moves to the i-th smallest slot the pre-queue occupies. Every rule that orders by slot (wait
 * lines, ties in expiry, snapshots rebuilding lines) then follows the draw with no exception.
 * order[] holds the drawn slots; each entry's `when` carries its target slot, and the
 * permutation is done in place by following its cycles (O(n) swaps, no memory).
 */
static void draw_reorder(struct engine *e, const uint32_t *order, uint32_t count)
{
    uint32_t rank = 0;
    for (uint32_t slot = 0; slot < e->purchase_count && rank < count; slot++)
        if (e->purchases[slot].status == ENGINE_STATUS_PREQUEUED)
            e->purchases[order[rank++]].when.draw_target = slot;
    assert(rank == count);
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        if (e->purchases[slot].status != ENGINE_STATUS_PREQUEUED)
            continue;
        while (e->purchases[slot].when.draw_target != slot) {
            uint32_t target = (uint32_t)e->purchases[slot].when.draw_target;
            assert(target < e->purchase_count);
            /* The table stays exact after every swap, so each lookup finds its id. */
            uint32_t at_slot = purchase_table_find(e, e->purchases[slot].id);
            uint32_t at_target = purchase_table_find(e, e->purchases[target].id);
            struct purchase swap = e->purchases[target];
            e->purchases[target] = e->purchases[slot];
            e->purchases[slot] = swap;
            e->purchase_table[at_slot] =
                (e->purchase_table[at_slot] & ~PURCHASE_TABLE_SLOT_BITS) | ((uint64_t)target + 1);
            e->purchase_table[at_target] =
                (e->purchase_table[at_target] & ~PURCHASE_TABLE_SLOT_BITS) | ((uint64_t)slot + 1);
        }
    }
}

/*
 * Orders the pre-queue by the seed, then decides every entry in slot order: the pre-queue in
 * the draw's order, then the deferred (all arrived after it) in arrival order.
 */
static void draw_run(struct engine *e, const uint8_t *seed)
{
    assert(e->held_count == 0); /* nothing is held before the draw */
    uint32_t *order = e->draw_order, count = 0;
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        struct purchase *p = &e->purchases[slot];
        if (p->status != ENGINE_STATUS_PREQUEUED)
            continue;
        uint8_t digest[SHA256_BYTES];
        draw_digest(seed, p->id, digest);
        p->when.draw_key = 0;
        for (int i = 0; i < 8; i++)
            p->when.draw_key = p->when.draw_key << 8 | digest[i];
        order[count++] = slot;
    }
    assert(count == e->prequeued_count);
    draw_sort(e, seed, order, count);
    draw_reorder(e, order, count);
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        uint8_t status = e->purchases[slot].status;
        if (status == ENGINE_STATUS_PREQUEUED || status == ENGINE_STATUS_DEFERRED)
            draw_decide(e, slot);
    }
    e->prequeued_count = 0;
    e->deferred_count = 0;
}

static void command_draw(struct engine *e, const uint8_t seed[CATRACA_DRAW_SEED_BYTES])
{
    uint8_t expected[CATRACA_DRAW_SEED_BYTES];
    if (e->state != ENGINE_STATE_NONE)
        engine_draw_seed(e->event.secret, expected);
    uint8_t reason = ENGINE_REASON_NONE;
    if (e->state == ENGINE_STATE_NONE)
        reason = ENGINE_REASON_NO_EVENT;
    else if (e->draw_state == ENGINE_DRAW_NONE || memcmp(seed, expected, sizeof(expected)) != 0)
        reason = ENGINE_REASON_INVALID;
    else if (e->draw_state == ENGINE_DRAW_PENDING && e->now_ms < e->event.opens_at_ms)
        reason = ENGINE_REASON_SALE_NOT_OPEN;
    if (reason != ENGINE_REASON_NONE) {
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, reason);
        return;
    }
    if (e->draw_state == ENGINE_DRAW_DONE) {
        e->stats.repeated++;
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_REPEATED, ENGINE_REASON_NONE);
        return;
    }
    e->draw_state = ENGINE_DRAW_DONE;
    emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    draw_run(e, seed);
}

void engine_draw_state(const struct engine *engine, struct engine_draw_view *out)
{
    *out = (struct engine_draw_view){.state = engine->draw_state,
                                     .prequeued = engine->prequeued_count,
                                     .deferred = engine->deferred_count};
}

/* ---- commands (continued) ---------------------------------------------------------------- */

static bool event_spec_is_valid(const struct engine_event_spec *spec)
{
    if (!string_is_valid(spec->id, sizeof(spec->id), false) ||
        !string_is_valid(spec->name, sizeof(spec->name), true))
        return false;
    if (spec->hold_ms < CATRACA_HOLD_MS_MIN || spec->hold_ms > CATRACA_HOLD_MS_MAX)
        return false;
    if (spec->per_customer_limit < 1 || spec->per_customer_limit > CATRACA_QUANTITY_MAX)
        return false;
    if (spec->state < ENGINE_STATE_OPEN || spec->state > ENGINE_STATE_CLOSED)
        return false;
    if (spec->category_count < 1 || spec->category_count > CATRACA_CATEGORIES_MAX)
        return false;
    if (spec->line_policy > ENGINE_LINE_UNBOUNDED)
        return false;
    for (uint32_t i = 0; i < spec->category_count; i++) {
        const struct engine_category_spec *c = &spec->categories[i];
        if (!string_is_valid(c->id, sizeof(c->id), false) ||
            !string_is_valid(c->name, sizeof(c->name), true))
            return false;
        if (c->capacity < 1 || c->capacity > CATRACA_CAPACITY_MAX || c->price_cents < 0)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(c->id, spec->categories[j].id) == 0)
                return false;
    }
    return schedule_is_valid(spec);
}

/* Equal specs, ignoring the secret; both are valid (terminated strings). */
static bool event_spec_equal(const struct engine_event_spec *a, const struct engine_event_spec *b)
{
    if (strcmp(a->id, b->id) != 0 || strcmp(a->name, b->name) != 0 || a->hold_ms != b->hold_ms ||
        a->per_customer_limit != b->per_customer_limit || a->state != b->state ||
        a->category_count != b->category_count || a->line_policy != b->line_policy)
        return false;
    for (uint32_t i = 0; i < a->category_count; i++) {
        const struct engine_category_spec *ca = &a->categories[i], *cb = &b->categories[i];
        if (strcmp(ca->id, cb->id) != 0 || strcmp(ca->name, cb->name) != 0 ||
            ca->price_cents != cb->price_cents || ca->capacity != cb->capacity)
            return false;
    }
    return a->opens_at_ms == b->opens_at_ms && a->prequeue_ms == b->prequeue_ms;
}

static void command_create_event(struct engine *e, const struct engine_event_spec *spec)
{
    bool is_valid = event_spec_is_valid(spec);
    if (e->state != ENGINE_STATE_NONE) {
        bool is_same = is_valid && event_spec_equal(&e->event, spec);
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0,
                  is_same ? ENGINE_RESULT_REPEATED : ENGINE_RESULT_CONFLICT,
                  is_same ? ENGINE_REASON_NONE : ENGINE_REASON_EVENT_MISMATCH);
        return;
    }
    if (!is_valid) {
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_INVALID_EVENT);
        return;
    }
    e->event = *spec;
    e->state = spec->state;
    e->draw_state = spec->opens_at_ms != 0 ? ENGINE_DRAW_PENDING : ENGINE_DRAW_NONE;
    e->category_count = spec->category_count;
    for (uint32_t i = 0; i < e->category_count; i++) {
        e->categories[i] = (struct category){
            .capacity = spec->categories[i].capacity,
            .id_bytes = (uint32_t)strlen(spec->categories[i].id) + 1,
            .available = spec->categories[i].capacity,
            .line_head = NIL,
            .line_tail = NIL,
            .expiry_head = NIL,
            .expiry_tail = NIL,
        };
    }
    emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
}

static void command_set_state(struct engine *e, uint8_t state)
{
    if (e->state == ENGINE_STATE_NONE) {
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_NO_EVENT);
        return;
    }
    if (state < ENGINE_STATE_OPEN || state > ENGINE_STATE_CLOSED) {
        emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_INVALID);
        return;
    }
    e->state = state;
    emit_bare(e, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    if (state != ENGINE_STATE_CLOSED)
        return;
    for (uint32_t i = 0; i < e->category_count; i++) {
        while (e->categories[i].line_head != NIL)
            line_reject(e, e->categories[i].line_head, ENGINE_REASON_SALE_CLOSED);
        assert_category(e, i);
    }
}

/*
 * memcmp(a, b, length) == 0, where both arrays hold at least array_size >= length bytes: whole
 * 8-byte words, then the last bytes as one word masked when a word still fits in the arrays.
 */
static bool bytes_equal(const char *a, const char *b, size_t length, size_t array_size)
{
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word_a, word_b;
        memcpy(&word_a, a + i, 8);
        memcpy(&word_b, b + i, 8);
        if (word_a != word_b)
            return false;
    }
    if (i == length)
        return true;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (i + 8 <= array_size) {
        uint64_t word_a, word_b;
        memcpy(&word_a, a + i, 8);
        memcpy(&word_b, b + i, 8);
        return ((word_a ^ word_b) & (~0ULL >> (64 - 8 * (length - i)))) == 0;
    }
#endif
    return memcmp(a + i, b + i, length - i) == 0;
}

/* The category whose id equals the bounded string `id`: a category id's bytes and its NUL
 * (id_bytes) compared with as many bytes of `id`, with no strnlen of `id` (an id filling its
 * whole array has no NUL and matches no category, whose ids are shorter than the array). */
static uint32_t category_find(const struct engine *e, const char *id, size_t array_size)
{
    static_assert(sizeof(e->event.categories[0].id) == CATRACA_ID_MAX + 1, "ids are alike");
    for (uint32_t i = 0; i < e->category_count; i++) {
        size_t length = e->categories[i].id_bytes;
        if (length <= array_size &&
            bytes_equal(e->event.categories[i].id, id, length,
                        array_size < CATRACA_ID_MAX + 1 ? array_size : CATRACA_ID_MAX + 1))
            return i;
    }
    return NIL;
}

/* Rules b..f of engine.h: a reason the purchase is refused before stock is looked at. */
static uint8_t purchase_precheck(const struct engine *e, const struct engine_command *command,
                                 uint32_t *category)
{
    uint32_t found =
        category_find(e, command->u.purchase.category, sizeof(command->u.purchase.category));
    if (found != NIL)
        *category = found;
    if (command->u.purchase.quantity == 0)
        return ENGINE_REASON_INVALID;
    if (e->state != ENGINE_STATE_OPEN)
        return ENGINE_REASON_SALE_CLOSED;
    if (schedule_refuses(e))
        return ENGINE_REASON_SALE_NOT_OPEN;
    if (found == NIL)
        return ENGINE_REASON_UNKNOWN_CATEGORY;
    return ENGINE_REASON_NONE;
}

/*
 * engine.h rules 2i..2k for a request that cannot be held now: NONE when it may
 * wait, SOLD_OUT when capacity - sold (available + held) is below its quantity,
 * LINE_FULL when a bounded line already wants every ticket that could come back.
 */
static uint8_t line_admission(const struct engine *e, const struct category *c, uint32_t quantity)
{
    uint64_t servable = (uint64_t)c->available + c->held;
    if (servable < quantity)
        return ENGINE_REASON_SOLD_OUT;
    if (e->event.line_policy == ENGINE_LINE_UNBOUNDED)
        return ENGINE_REASON_NONE;
    if (servable - c->waiting_quantity >= quantity)
        return ENGINE_REASON_NONE;
    return ENGINE_REASON_LINE_FULL;
}

static uint8_t purchase_decide(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    uint64_t stored = customer_stored_key(p->customer_key);
    struct customer_position customer = customer_find_position(e, stored);
    if (customer.bucket->keys[customer.at] == 0) {
        if (e->customer_count == e->config.customers_max)
            return ENGINE_REASON_ENGINE_FULL;
        assert(customer.bucket->tickets[customer.at] == 0);
        customer.bucket->keys[customer.at] = stored;
        e->customer_count++;
    }
    p->customer = customer.entry;
    uint8_t *tickets = &customer.bucket->tickets[customer.at];
    if ((uint64_t)*tickets + p->quantity > e->event.per_customer_limit)
        return ENGINE_REASON_LIMIT_EXCEEDED;
    if (prequeue_admit(e, slot)) {
        *tickets = (uint8_t)(*tickets + p->quantity);
        return ENGINE_REASON_NONE;
    }
    if (c->line_head == NIL && c->available >= p->quantity) {
        hold_grant(e, slot);
    } else {
        uint8_t refusal = line_admission(e, c, p->quantity);
        if (refusal != ENGINE_REASON_NONE)
            return refusal;
        p->status = ENGINE_STATUS_WAITING;
        line_append(e, slot);
    }
    *tickets = (uint8_t)(*tickets + p->quantity);
    return ENGINE_REASON_NONE;
}

/* customer_key: command_customer_key(command), computed once per command by the caller. */
static void command_purchase(struct engine *e, const struct engine_command *command,
                             uint64_t customer_key)
{
    uint64_t id = command->u.purchase.purchase_id;
    /* One probe: the position found is where a new purchase goes (nothing below changes the
     * table before the insert). */
    uint32_t at = purchase_table_find(e, id);
    if (e->purchase_table[at] != 0) {
        e->stats.repeated++;
        emit(e, (uint32_t)e->purchase_table[at] - 1, ENGINE_OUTCOME_PURCHASE,
             ENGINE_RESULT_REPEATED, ENGINE_REASON_NONE);
        return;
    }
    uint32_t quantity = command->u.purchase.quantity;
    if (e->purchase_count == e->config.purchases_max || id == 0) {
        /*
         * Not remembered: a duplicate meets the same full pool (it never
         * empties) or the same invalid id, and so the same answer.
         */
        struct engine_outcome *o =
            outcome_begin(e, ENGINE_OUTCOME_PURCHASE, id, ENGINE_RESULT_OK,
                          id == 0 ? ENGINE_REASON_INVALID : ENGINE_REASON_ENGINE_FULL);
        o->customer_key = customer_key;
        o->quantity = quantity;
        o->status = ENGINE_STATUS_REJECTED;
        e->stats.rejected++;
        outcome_send(e);
        return;
    }
    uint32_t slot = e->purchase_count++;
    uint32_t category = 0;
    uint8_t precheck = purchase_precheck(e, command, &category);
    /* Every field written in place (a struct built on the stack and copied cost twice). */
    struct purchase *p = &e->purchases[slot];
    p->id = id;
    p->customer_key = customer_key;
    p->when.payment_ref_key = 0;
    p->link.line.prev = 0;
    p->link.line.next = 0;
    p->quantity = quantity;
    p->customer = NIL;
    p->category = (uint8_t)category;
    p->status = ENGINE_STATUS_REJECTED;
    p->reason = precheck;
    p->is_refund_due = 0;
    e->purchase_table[at] = purchase_table_entry(id, slot);
    e->stats.purchases++;
    if (precheck == ENGINE_REASON_NONE)
        p->reason = purchase_decide(e, slot);
    if (p->reason != ENGINE_REASON_NONE) {
        p->status = ENGINE_STATUS_REJECTED;
        e->stats.rejected++;
    }
    emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    if (precheck == ENGINE_REASON_NONE)
        assert_category(e, category);
}

static uint8_t refusal_reason(uint8_t status)
{
    switch (status) {
    case ENGINE_STATUS_EXPIRED:
        return ENGINE_REASON_HOLD_EXPIRED;
    case ENGINE_STATUS_CANCELLED:
        return ENGINE_REASON_HOLD_CANCELLED;
    case ENGINE_STATUS_CONFIRMED:
        return ENGINE_REASON_ALREADY_CONFIRMED;
    default:
        return ENGINE_REASON_NOT_HELD;
    }
}

/*
 * A payment for a hold that expired (engine.h, CONFIRM): recorded once, never a
 * ticket. The tickets went back to stock at expiry and may be someone else's.
 */
static void confirm_late(struct engine *e, uint32_t slot, uint64_t ref_key)
{
    struct purchase *p = &e->purchases[slot];
    if (!p->is_refund_due) {
        p->is_refund_due = 1;
        p->when.payment_ref_key = ref_key;
        emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_OK, ENGINE_REASON_REFUND_DUE);
    } else if (p->when.payment_ref_key == ref_key) {
        e->stats.repeated++;
        emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_REPEATED, ENGINE_REASON_REFUND_DUE);
    } else {
        emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_CONFLICT, ENGINE_REASON_REFUND_DUE);
    }
}

static void command_confirm(struct engine *e, const struct engine_command *command)
{
    uint32_t slot = purchase_lookup(e, command->u.confirm.purchase_id);
    if (slot == NIL) {
        emit_bare(e, ENGINE_OUTCOME_CONFIRM, command->u.confirm.purchase_id, ENGINE_RESULT_CONFLICT,
                  ENGINE_REASON_UNKNOWN_PURCHASE);
        return;
    }
    struct purchase *p = &e->purchases[slot];
    uint64_t ref_key =
        bounded_string_key(command->u.confirm.payment_ref, sizeof(command->u.confirm.payment_ref));
    if (p->status == ENGINE_STATUS_CONFIRMED && p->when.payment_ref_key == ref_key) {
        e->stats.repeated++;
        emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_REPEATED, ENGINE_REASON_NONE);
        return;
    }
    if (p->status == ENGINE_STATUS_EXPIRED) {
        confirm_late(e, slot, ref_key);
        return;
    }
    if (p->status != ENGINE_STATUS_HELD) {
        emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_CONFLICT, refusal_reason(p->status));
        return;
    }
    struct category *c = &e->categories[p->category];
    c->held -= p->quantity;
    c->sold += p->quantity;
    p->status = ENGINE_STATUS_CONFIRMED;
    expiry_forget(e, slot);
    p->when.payment_ref_key = ref_key;
    e->stats.confirmed++;
    emit(e, slot, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    line_sweep(e, p->category);
    /* The sweep may have removed a head that did not fit: the next one may fit now. */
    line_serve(e, p->category);
}

/*
 * A waiting buyer leaves the line (engine.h, CANCEL): the line closes up, and a
 * head that left may have been all that kept smaller requests behind it waiting.
 */
static void line_leave(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    line_remove(e, slot);
    p->status = ENGINE_STATUS_CANCELLED;
    customer_release(e, p);
    emit(e, slot, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    line_serve(e, p->category);
}

/* customer_key: command_customer_key(command), computed once per command by the caller. */
static void command_cancel(struct engine *e, const struct engine_command *command,
                           uint64_t customer_key)
{
    uint32_t slot = purchase_lookup(e, command->u.cancel.purchase_id);
    if (slot == NIL) {
        emit_bare(e, ENGINE_OUTCOME_CANCEL, command->u.cancel.purchase_id, ENGINE_RESULT_CONFLICT,
                  ENGINE_REASON_UNKNOWN_PURCHASE);
        return;
    }
    struct purchase *p = &e->purchases[slot];
    if (customer_key != p->customer_key) {
        emit(e, slot, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_CONFLICT, ENGINE_REASON_NOT_OWNER);
        return;
    }
    if (p->status == ENGINE_STATUS_CANCELLED) {
        e->stats.repeated++;
        emit(e, slot, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_REPEATED, ENGINE_REASON_NONE);
        return;
    }
    if (p->status == ENGINE_STATUS_WAITING) {
        line_leave(e, slot);
        return;
    }
    if (p->status != ENGINE_STATUS_HELD) {
        emit(e, slot, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_CONFLICT, refusal_reason(p->status));
        return;
    }
    hold_release(e, slot, ENGINE_STATUS_CANCELLED);
    e->stats.holds_cancelled++;
    emit(e, slot, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    line_serve(e, p->category);
    note_available_again(e, p->category);
}

/* The customer key a PURCHASE or CANCEL needs (SipHash of its customer id); 0 for the others. */
static uint64_t command_customer_key(const struct engine_command *command)
{
    switch (command->type) {
    case ENGINE_COMMAND_PURCHASE:
        return bounded_string_key(command->u.purchase.customer,
                                  sizeof(command->u.purchase.customer));
    case ENGINE_COMMAND_CANCEL:
        return bounded_string_key(command->u.cancel.customer, sizeof(command->u.cancel.customer));
    default:
        return 0;
    }
}

static uint64_t command_purchase_id(const struct engine_command *command)
{
    switch (command->type) {
    case ENGINE_COMMAND_PURCHASE:
        return command->u.purchase.purchase_id;
    case ENGINE_COMMAND_CONFIRM:
        return command->u.confirm.purchase_id;
    case ENGINE_COMMAND_CANCEL:
        return command->u.cancel.purchase_id;
    default:
        return 0;
    }
}

/* Starts loading the purchase table's home entry and, for a purchase, the customer's bucket. */
static void prefetch_tables(const struct engine *e, const struct engine_command *command,
                            uint64_t customer_key)
{
    uint64_t id = command_purchase_id(command);
    if (id == 0)
        return;
    __builtin_prefetch(&e->purchase_table[purchase_slot_hash(id) & e->purchase_table_mask]);
    if (command->type == ENGINE_COMMAND_PURCHASE) {
        __builtin_prefetch(
            &e->customer_buckets[customer_home_bucket(e, customer_stored_key(customer_key))]);
    }
}

/*
 * For a CONFIRM or CANCEL whose table entry prefetch_tables() loaded earlier: starts loading
 * the purchase it names (the entry at the home position; a purchase further down the probe
 * sequence is simply not prefetched). Reads state, changes none.
 */
static void prefetch_purchase(const struct engine *e, const struct engine_command *command)
{
    if (command->type != ENGINE_COMMAND_CONFIRM && command->type != ENGINE_COMMAND_CANCEL)
        return;
    uint64_t id = command_purchase_id(command);
    uint64_t entry = e->purchase_table[purchase_slot_hash(id) & e->purchase_table_mask];
    if (entry != 0 && (entry & ~PURCHASE_TABLE_SLOT_BITS) == purchase_fingerprint(id))
        __builtin_prefetch(&e->purchases[(uint32_t)entry - 1]);
}

void engine_prefetch(const struct engine *engine, const struct engine_command *command)
{
    prefetch_tables(engine, command, command_customer_key(command));
}

static bool command_is_valid(const struct engine_command *command)
{
    return command != NULL && command->type >= ENGINE_COMMAND_CREATE_EVENT &&
           command->type <= ENGINE_COMMAND_LAST;
}

static void apply_one(struct engine *engine, const struct engine_command *command,
                      uint64_t customer_key, const struct engine_sink *sink)
{
    engine->sink = sink;
    engine->stats.commands++;
    clock_advance(engine, command->now_ms);
    switch (command->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        command_create_event(engine, &command->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        command_set_state(engine, command->u.set_state.state);
        break;
    case ENGINE_COMMAND_PURCHASE:
        command_purchase(engine, command, customer_key);
        break;
    case ENGINE_COMMAND_CONFIRM:
        command_confirm(engine, command);
        break;
    case ENGINE_COMMAND_CANCEL:
        command_cancel(engine, command, customer_key);
        break;
    case ENGINE_COMMAND_DRAW:
        command_draw(engine, command->u.draw.seed);
        break;
    default:
        break; /* TICK: the clock advanced above */
    }
    engine->sink = NULL;
}

int engine_apply(struct engine *engine, const struct engine_command *command,
                 const struct engine_sink *sink)
{
    if (engine == NULL || sink == NULL || sink->emit == NULL || !command_is_valid(command))
        return CATRACA_E_INVALID;
    apply_one(engine, command, command_customer_key(command), sink);
    return 0;
}

/*
 * How far ahead engine_apply_batch() works: the customer key and the table
 * entries of command i + BATCH_AHEAD, the purchase of command i + BATCH_AHEAD / 2
 * (its table entry loaded by then), while command i is applied. Eight covers a
 * memory latency at ~100 ns a command; the key ring is a power of two above it.
 */
#define BATCH_AHEAD 8u
#define BATCH_RING 16u
static_assert(BATCH_AHEAD < BATCH_RING && (BATCH_RING & (BATCH_RING - 1)) == 0, "ring");

int engine_apply_batch(struct engine *engine, const struct engine_command *commands, size_t count,
                       const struct engine_sink *sink)
{
    if (engine == NULL || sink == NULL || sink->emit == NULL || (commands == NULL && count > 0))
        return CATRACA_E_INVALID;
    for (size_t i = 0; i < count; i++)
        if (!command_is_valid(&commands[i]))
            return CATRACA_E_INVALID;
    uint64_t keys[BATCH_RING];
    for (size_t i = 0; i < count && i < BATCH_AHEAD; i++) {
        keys[i] = command_customer_key(&commands[i]);
        prefetch_tables(engine, &commands[i], keys[i]);
    }
    for (size_t i = 0; i < count; i++) {
        size_t ahead = i + BATCH_AHEAD;
        if (ahead < count) {
            keys[ahead % BATCH_RING] = command_customer_key(&commands[ahead]);
            prefetch_tables(engine, &commands[ahead], keys[ahead % BATCH_RING]);
        }
        if (i + BATCH_AHEAD / 2 < count)
            prefetch_purchase(engine, &commands[i + BATCH_AHEAD / 2]);
        if (sink->begin_command != NULL)
            sink->begin_command(sink->context, i);
        apply_one(engine, &commands[i], keys[i % BATCH_RING], sink);
    }
    return 0;
}

/* ---- set-up and queries ------------------------------------------------------------------ */

/*
 * Pools are large and probed at random. They come from anonymous mappings:
 * zero pages the kernel commits only when touched (an event mostly empty costs
 * little), with transparent huge pages requested, which cut the TLB misses
 * that otherwise cost as much as the cache misses. The hint may be ignored.
 */
#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer the pools come from its allocator, so overruns are caught. */
static void *pool_alloc(size_t size)
{
    return calloc(1, size);
}

static void pool_free(void *p, size_t size)
{
    (void)size;
    free(p);
}
#else
static void *pool_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, size, MADV_HUGEPAGE);
    return p;
}

static void pool_free(void *p, size_t size)
{
    if (p != NULL)
        munmap(p, size);
}
#endif

static size_t purchases_bytes(const struct engine *e)
{
    return sizeof(struct purchase) * e->config.purchases_max;
}

static size_t purchase_table_bytes(const struct engine *e)
{
    return sizeof(uint64_t) * ((size_t)e->purchase_table_mask + 1);
}

static size_t customers_bytes(const struct engine *e)
{
    return sizeof(struct customer_bucket) *
           ((size_t)e->customer_capacity / CUSTOMER_BUCKET_ENTRIES);
}

static size_t draw_order_bytes(const struct engine *e)
{
    return sizeof(uint32_t) * e->config.purchases_max;
}

static void engine_reset(struct engine *e)
{
    e->now_ms = 0;
    e->state = ENGINE_STATE_NONE;
    memset(&e->event, 0, sizeof(e->event));
    memset(e->categories, 0, sizeof(e->categories));
    e->category_count = 0;
    /* The tables are zero from the mapping until something was inserted. */
    if (e->purchase_count > 0)
        memset(e->purchase_table, 0, purchase_table_bytes(e));
    if (e->customer_count > 0)
        memset(e->customer_buckets, 0, customers_bytes(e));
    e->purchase_count = 0;
    e->customer_count = 0;
    e->held_count = 0;
    e->next_expiry_ms = INT64_MAX;
    e->draw_state = ENGINE_DRAW_NONE;
    e->prequeued_count = 0;
    e->deferred_count = 0;
    memset(&e->stats, 0, sizeof(e->stats));
}

int engine_new(const struct engine_config *config, struct engine **out)
{
    if (config == NULL || out == NULL || config->purchases_max < 1 ||
        config->purchases_max > CATRACA_PURCHASES_MAX || config->customers_max < 1 ||
        config->customers_max > CATRACA_CUSTOMERS_MAX)
        return CATRACA_E_INVALID;
    struct engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return CATRACA_E_NOMEM;
    e->config = *config;
    uint32_t purchase_table_size = table_capacity_for(config->purchases_max);
    e->purchase_table_mask = purchase_table_size - 1;
    /* At most half the entries used, as in the purchase table: short probe sequences. */
    uint64_t customer_buckets =
        (2 * (uint64_t)config->customers_max + CUSTOMER_BUCKET_ENTRIES - 1) /
        CUSTOMER_BUCKET_ENTRIES;
    e->customer_bucket_count = (uint32_t)customer_buckets;
    e->customer_capacity = (uint32_t)(customer_buckets * CUSTOMER_BUCKET_ENTRIES);
    e->purchases = pool_alloc(purchases_bytes(e));
    e->purchase_table = pool_alloc(purchase_table_bytes(e));
    e->customer_buckets = pool_alloc(customers_bytes(e));
    e->draw_order = pool_alloc(draw_order_bytes(e));
    if (e->purchases == NULL || e->purchase_table == NULL || e->customer_buckets == NULL ||
        e->draw_order == NULL) {
        engine_free(e);
        return CATRACA_E_NOMEM;
    }
    if (config->is_prefaulted) {
        memset(e->purchases, 0, purchases_bytes(e));
        memset(e->purchase_table, 0, purchase_table_bytes(e));
        memset(e->customer_buckets, 0, customers_bytes(e));
        memset(e->draw_order, 0, draw_order_bytes(e));
    }
    engine_reset(e);
    *out = e;
    return 0;
}

void engine_free(struct engine *engine)
{
    if (engine == NULL)
        return;
    pool_free(engine->purchases, purchases_bytes(engine));
    pool_free(engine->purchase_table, purchase_table_bytes(engine));
    pool_free(engine->customer_buckets, customers_bytes(engine));
    pool_free(engine->draw_order, draw_order_bytes(engine));
    free(engine);
}

uint64_t engine_outcome_bound(const struct engine *engine)
{
    uint64_t waiting = 0;
    for (uint32_t i = 0; i < engine->category_count; i++)
        waiting += engine->categories[i].waiting_count;
    return 1 + (uint64_t)engine->held_count + waiting + engine->prequeued_count +
           engine->deferred_count;
}

int64_t engine_now_ms(const struct engine *engine)
{
    return engine->now_ms;
}

int64_t engine_next_expiry_ms(const struct engine *engine)
{
    return engine->next_expiry_ms;
}

uint8_t engine_state(const struct engine *engine)
{
    return engine->state;
}

const struct engine_event_spec *engine_event(const struct engine *engine)
{
    return engine->state == ENGINE_STATE_NONE ? NULL : &engine->event;
}

uint32_t engine_category_count(const struct engine *engine)
{
    return engine->category_count;
}

int engine_category_counts(const struct engine *engine, uint32_t category,
                           struct engine_category_counts *out)
{
    if (category >= engine->category_count)
        return CATRACA_E_INVALID;
    const struct category *c = &engine->categories[category];
    memset(out, 0, sizeof(*out)); /* padding too: callers compare counts with memcmp */
    out->capacity = c->capacity;
    out->available = c->available;
    out->held = c->held;
    out->sold = c->sold;
    out->waiting_count = c->waiting_count;
    out->waiting_quantity = c->waiting_quantity;
    out->returned = c->returned;
    out->available_again_at_ms = c->available_again_at_ms;
    return 0;
}

void engine_stats(const struct engine *engine, struct engine_stats *out)
{
    *out = engine->stats;
}

int engine_purchase(const struct engine *engine, uint64_t purchase_id,
                    struct engine_purchase_view *out)
{
    uint32_t slot = purchase_lookup(engine, purchase_id);
    if (slot == NIL)
        return CATRACA_E_NOTFOUND;
    const struct purchase *p = &engine->purchases[slot];
    *out = (struct engine_purchase_view){
        .purchase_id = p->id,
        .slot = slot,
        .customer_key = p->customer_key,
        .hold_expires_at_ms = p->status == ENGINE_STATUS_HELD ? p->when.expires_at_ms : 0,
        .quantity = p->quantity,
        .category = p->category,
        .status = p->status,
        .reason = p->reason,
        .is_refund_due = p->is_refund_due != 0,
    };
    return 0;
}

int engine_line_ahead(const struct engine *engine, uint64_t purchase_id, uint32_t *ahead)
{
    uint32_t slot = purchase_lookup(engine, purchase_id);
    if (slot == NIL)
        return CATRACA_E_NOTFOUND;
    const struct purchase *p = &engine->purchases[slot];
    if (p->status != ENGINE_STATUS_WAITING)
        return CATRACA_E_INVALID;
    uint32_t total = 0;
    for (uint32_t s = engine->categories[p->category].line_head; s != slot;
         s = engine->purchases[s].link.line.next)
        total += engine->purchases[s].quantity;
    *ahead = total;
    return 0;
}

int engine_purchase_at(const struct engine *engine, uint32_t slot, struct engine_purchase_view *out)
{
    if (slot >= engine->purchase_count)
        return CATRACA_E_NOTFOUND;
    return engine_purchase(engine, engine->purchases[slot].id, out);
}

size_t engine_memory_bytes(const struct engine *engine)
{
    return sizeof(*engine) + purchases_bytes(engine) + purchase_table_bytes(engine) +
           customers_bytes(engine) + draw_order_bytes(engine);
}

uint32_t engine_purchase_count(const struct engine *engine)
{
    return engine->purchase_count;
}

/* ---- validation -------------------------------------------------------------------------- */

#define CHECK(condition)                                                                           \
    do {                                                                                           \
        if (!(condition))                                                                          \
            return CATRACA_E_CORRUPT;                                                              \
    } while (0)

static int validate_lines(const struct engine *e)
{
    for (uint32_t i = 0; i < e->category_count; i++) {
        const struct category *c = &e->categories[i];
        uint32_t count = 0, previous = NIL;
        uint64_t quantity = 0;
        for (uint32_t slot = c->line_head; slot != NIL; slot = e->purchases[slot].link.line.next) {
            const struct purchase *p = &e->purchases[slot];
            CHECK(slot < e->purchase_count && count < e->purchase_count);
            CHECK(p->status == ENGINE_STATUS_WAITING && p->category == i);
            CHECK(p->link.line.prev == previous && (previous == NIL || previous < slot));
            quantity += p->quantity;
            count++;
            previous = slot;
        }
        CHECK(previous == c->line_tail);
        CHECK(c->line_head == NIL || e->purchases[c->line_head].quantity > c->available);
        CHECK(count == c->waiting_count && quantity == c->waiting_quantity);
        if (e->event.line_policy == ENGINE_LINE_BOUNDED)
            CHECK(quantity <= (uint64_t)c->available + c->held);
        for (uint32_t slot = c->line_head; slot != NIL; slot = e->purchases[slot].link.line.next)
            CHECK(e->purchases[slot].quantity <= (uint64_t)c->available + c->held);
    }
    return 0;
}

/*
 * Every chain: slots ascending, its held purchases' expiries non-decreasing (so the chain is
 * in (expires_at, slot) order), the others confirmed or cancelled, a held head. Together with
 * validate_purchases' count, every held purchase is in its category's chain.
 */
static int validate_expiry(const struct engine *e)
{
    uint32_t chained = 0;
    int64_t next = INT64_MAX;
    for (uint32_t i = 0; i < e->category_count; i++) {
        const struct category *c = &e->categories[i];
        CHECK((c->expiry_head == NIL) == (c->expiry_tail == NIL));
        if (c->expiry_head != NIL) {
            CHECK(c->expiry_head < e->purchase_count);
            CHECK(e->purchases[c->expiry_head].status == ENGINE_STATUS_HELD);
            CHECK(e->purchases[c->expiry_head].when.expires_at_ms == c->expiry_head_ms);
            if (c->expiry_head_ms < next)
                next = c->expiry_head_ms;
        }
        uint32_t previous = NIL;
        int64_t previous_ms = INT64_MIN;
        for (uint32_t slot = c->expiry_head; slot != NIL;
             slot = e->purchases[slot].link.expiry.next) {
            const struct purchase *p = &e->purchases[slot];
            CHECK(slot < e->purchase_count && (previous == NIL || previous < slot));
            CHECK(p->category == i);
            if (p->status == ENGINE_STATUS_HELD) {
                CHECK(p->when.expires_at_ms >= previous_ms && p->when.expires_at_ms > e->now_ms);
                previous_ms = p->when.expires_at_ms;
                chained++;
            } else {
                CHECK(p->status == ENGINE_STATUS_CONFIRMED || p->status == ENGINE_STATUS_CANCELLED);
            }
            previous = slot;
        }
        CHECK(previous == c->expiry_tail);
    }
    CHECK(chained == e->held_count && next == e->next_expiry_ms);
    return 0;
}

static int validate_purchases(const struct engine *e)
{
    uint64_t held[CATRACA_CATEGORIES_MAX] = {0}, sold[CATRACA_CATEGORIES_MAX] = {0};
    uint32_t held_count = 0;
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        const struct purchase *p = &e->purchases[slot];
        CHECK(p->status >= ENGINE_STATUS_WAITING && p->status <= ENGINE_STATUS_LAST);
        CHECK(purchase_lookup(e, p->id) == slot);
        CHECK((p->status == ENGINE_STATUS_REJECTED) == (p->reason != ENGINE_REASON_NONE));
        CHECK(p->is_refund_due <= 1 && (!p->is_refund_due || p->status == ENGINE_STATUS_EXPIRED));
        if (p->status == ENGINE_STATUS_REJECTED)
            continue;
        CHECK(p->category < e->category_count && p->quantity >= 1 &&
              p->quantity <= e->event.per_customer_limit);
        CHECK(customer_lookup(e, p->customer_key) != NIL);
        if (p->status == ENGINE_STATUS_HELD) {
            held[p->category] += p->quantity;
            held_count++;
        }
        if (p->status == ENGINE_STATUS_CONFIRMED)
            sold[p->category] += p->quantity;
    }
    CHECK(held_count == e->held_count);
    for (uint32_t i = 0; i < e->category_count; i++) {
        const struct category *c = &e->categories[i];
        CHECK(c->capacity == e->event.categories[i].capacity);
        CHECK(held[i] == c->held && sold[i] == c->sold);
        CHECK((uint64_t)c->available + c->held + c->sold == c->capacity);
    }
    return 0;
}

/* Before the draw nothing is decided but rejections; after it nothing awaits a draw. */
static int validate_draw(const struct engine *e)
{
    uint32_t prequeued = 0, deferred = 0, decided = 0;
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        uint8_t status = e->purchases[slot].status;
        prequeued += status == ENGINE_STATUS_PREQUEUED;
        deferred += status == ENGINE_STATUS_DEFERRED;
        decided += status == ENGINE_STATUS_WAITING || status == ENGINE_STATUS_HELD ||
                   status == ENGINE_STATUS_CONFIRMED;
    }
    CHECK(e->draw_state <= ENGINE_DRAW_DONE);
    CHECK(prequeued == e->prequeued_count && deferred == e->deferred_count);
    CHECK(e->draw_state == ENGINE_DRAW_PENDING || prequeued + deferred == 0);
    CHECK(e->draw_state != ENGINE_DRAW_PENDING || decided == 0);
    CHECK((e->draw_state == ENGINE_DRAW_NONE) == (e->event.opens_at_ms == 0));
    return 0;
}

static int validate_customers(const struct engine *e)
{
    uint64_t total_customers = 0, total_purchases = 0;
    uint32_t used = 0;
    for (uint32_t i = 0; i < e->customer_capacity; i++) {
        uint64_t key = *customer_key_at(e, i);
        if (key == 0) {
            CHECK(*customer_tickets_at(e, i) == 0);
            continue;
        }
        CHECK(customer_lookup(e, key) == i);
        CHECK(*customer_tickets_at(e, i) <= e->event.per_customer_limit);
        total_customers += *customer_tickets_at(e, i);
        used++;
    }
    CHECK(used == e->customer_count);
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        const struct purchase *p = &e->purchases[slot];
        if (holds_quota(p->status)) {
            CHECK(p->customer < e->customer_capacity &&
                  *customer_key_at(e, p->customer) == customer_stored_key(p->customer_key));
            total_purchases += p->quantity;
        }
    }
    CHECK(total_customers == total_purchases);
    return 0;
}

int engine_validate(const struct engine *engine)
{
    const struct engine *e = engine;
    CHECK(e->purchase_count <= e->config.purchases_max);
    CHECK(e->customer_count <= e->config.customers_max);
    CHECK(e->state <= ENGINE_STATE_CLOSED);
    CHECK((e->state == ENGINE_STATE_NONE) == (e->category_count == 0));
    int error = validate_lines(e);
    if (error == 0)
        error = validate_expiry(e);
    if (error == 0)
        error = validate_purchases(e);
    if (error == 0)
        error = validate_customers(e);
    if (error == 0)
        error = validate_draw(e);
    return error;
}

/* ---- names and ticket codes -------------------------------------------------------------- */

uint64_t engine_ticket_code(const uint8_t secret[CATRACA_SECRET_BYTES], uint64_t purchase_id,
                            uint32_t index)
{
    uint8_t message[12];
    for (int i = 0; i < 8; i++)
        message[i] = (uint8_t)(purchase_id >> (8 * i));
    for (int i = 0; i < 4; i++)
        message[8 + i] = (uint8_t)(index >> (8 * i));
    return siphash24(secret, message, sizeof(message));
}

void engine_ticket_code_format(uint64_t code, char out[14])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    for (int i = 12; i >= 0; i--) {
        out[i] = alphabet[code & 31];
        code >>= 5;
    }
    out[13] = '\0';
}

const char *engine_status_name(uint8_t status)
{
    /* PREQUEUED and DEFERRED are undecided, so "queued" too (the API adds "prequeue"). */
    static const char *const names[] = {"queued",    "waiting",  "held",   "confirmed", "expired",
                                        "cancelled", "rejected", "queued", "queued"};
    return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
}

bool engine_status_is_final(uint8_t status)
{
    return status >= ENGINE_STATUS_CONFIRMED && status <= ENGINE_STATUS_REJECTED;
}

const char *engine_reason_name(uint8_t reason)
{
    static const char *const names[] = {NULL,
                                        "sold_out",
                                        "limit_exceeded",
                                        "sale_closed",
                                        "unknown_category",
                                        "engine_full",
                                        "invalid",
                                        "unknown_purchase",
                                        "hold_expired",
                                        "hold_cancelled",
                                        "not_held",
                                        "already_confirmed",
                                        "not_owner",
                                        "no_event",
                                        "event_mismatch",
                                        "invalid_event",
                                        "line_full",
                                        "refund_due",
                                        "sale_not_open"};
    static_assert(sizeof(names) / sizeof(names[0]) == ENGINE_REASON_LAST + 1,
                  "a name for every reason");
    return reason < sizeof(names) / sizeof(names[0]) ? names[reason] : "unknown";
}

static const char *const line_policy_names[] = {"bounded", "unbounded"};

const char *engine_line_policy_name(uint8_t policy)
{
    return policy <= ENGINE_LINE_UNBOUNDED ? line_policy_names[policy] : "unknown";
}

int engine_line_policy_parse(const char *name, uint8_t *policy)
{
    for (uint8_t i = ENGINE_LINE_BOUNDED; i <= ENGINE_LINE_UNBOUNDED; i++) {
        if (strcmp(name, line_policy_names[i]) == 0) {
            *policy = i;
            return 0;
        }
    }
    return CATRACA_E_INVALID;
}

static const char *const state_names[] = {"none", "open", "paused", "closed"};

const char *engine_state_name(uint8_t state)
{
    return state <= ENGINE_STATE_CLOSED ? state_names[state] : "unknown";
}

int engine_state_parse(const char *name, uint8_t *state)
{
    for (uint8_t i = ENGINE_STATE_OPEN; i <= ENGINE_STATE_CLOSED; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *state = i;
            return 0;
        }
    }
    return CATRACA_E_INVALID;
}

/* ---- snapshot ---------------------------------------------------------------------------- */

/*
 * Format 3, little-endian: magic, version, clock, state, the event spec (codec
 * format 3: with its line policy and schedule), the draw state (one byte), per
 * category its returned tickets and available_again_at_ms (which no purchase
 * records), stats, every customer key in slot order, then every purchase in
 * slot order, each ending with its is_refund_due byte. Older formats are still
 * read, so a partition restarted by a newer binary keeps its snapshot: format 2
 * is format 3 with a codec format 2 spec (not scheduled) and no draw state
 * byte; format 1 has a codec format 1 spec, no category part and no refund
 * byte.
 * Lines, expiry chains, hash tables, category counters and customers' ticket counts
 * are rebuilt on read: they follow from the purchases (a line is its
 * category's waiting purchases in arrival order), so a snapshot cannot carry
 * them inconsistently.
 */
#define SNAPSHOT_MAGIC 0x53525443u /* "CTRS" */
#define SNAPSHOT_VERSION 3u
#define SNAPSHOT_VERSION_OLDEST 1u
#define SNAPSHOT_PURCHASE_BYTES 32u
#define SNAPSHOT_CUSTOMER_BYTES 8u
#define SNAPSHOT_FIXED_BYTES 8192u
static_assert(sizeof(struct engine_stats) % sizeof(uint64_t) == 0, "stats are all uint64_t");

size_t engine_snapshot_size(const struct engine *engine)
{
    return SNAPSHOT_FIXED_BYTES + (size_t)engine->purchase_count * SNAPSHOT_PURCHASE_BYTES +
           (size_t)engine->customer_count * SNAPSHOT_CUSTOMER_BYTES;
}

int engine_snapshot_write(const struct engine *engine, uint8_t *buffer, size_t capacity,
                          size_t *length)
{
    struct wire_writer w = {.buffer = buffer, .capacity = capacity};
    wire_put_uint(&w, SNAPSHOT_MAGIC, 4);
    wire_put_uint(&w, SNAPSHOT_VERSION, 4);
    wire_put_uint(&w, (uint64_t)engine->now_ms, 8);
    wire_put_uint(&w, engine->state, 1);
    if (engine->state != ENGINE_STATE_NONE) {
        codec_event_spec_put(&w, &engine->event);
        wire_put_uint(&w, engine->draw_state, 1);
        for (uint32_t i = 0; i < engine->category_count; i++) {
            wire_put_uint(&w, engine->categories[i].returned, 4);
            wire_put_uint(&w, (uint64_t)engine->categories[i].available_again_at_ms, 8);
        }
    }
    const uint64_t *stats = (const uint64_t *)&engine->stats;
    for (size_t i = 0; i < sizeof(engine->stats) / sizeof(uint64_t); i++)
        wire_put_uint(&w, stats[i], 8);
    wire_put_uint(&w, engine->customer_count, 4);
    /* The stored key: a customer whose key is 0 reads back as the same entry. */
    for (uint32_t i = 0; i < engine->customer_capacity; i++)
        if (*customer_key_at(engine, i) != 0)
            wire_put_uint(&w, *customer_key_at(engine, i), 8);
    wire_put_uint(&w, engine->purchase_count, 4);
    for (uint32_t slot = 0; slot < engine->purchase_count; slot++) {
        const struct purchase *p = &engine->purchases[slot];
        wire_put_uint(&w, p->id, 8);
        wire_put_uint(&w, p->customer_key, 8);
        wire_put_uint(&w, p->when.payment_ref_key, 8); /* or expires_at_ms: the same 8 bytes */
        wire_put_uint(&w, p->quantity, 4);
        wire_put_uint(&w, p->category, 1);
        wire_put_uint(&w, p->status, 1);
        wire_put_uint(&w, p->reason, 1);
        wire_put_uint(&w, p->is_refund_due, 1);
    }
    if (w.error != 0)
        return w.error;
    *length = w.length;
    return 0;
}

static int snapshot_read_event(struct engine *e, struct wire_reader *r, uint32_t version)
{
    struct engine_event_spec *spec = &e->event;
    /* Snapshot formats 1..3 carry specs of codec formats 1..3. */
    codec_event_spec_get_version(r, spec, (uint8_t)version);
    if (version >= 3)
        e->draw_state = (uint8_t)wire_get_uint(r, 1);
    if (r->error != 0)
        return r->error;
    if (!event_spec_is_valid(spec))
        return CATRACA_E_CORRUPT;
    e->category_count = spec->category_count;
    for (uint32_t i = 0; i < e->category_count; i++)
        e->categories[i] =
            (struct category){.capacity = spec->categories[i].capacity,
                              .id_bytes = (uint32_t)strlen(spec->categories[i].id) + 1,
                              .line_head = NIL,
                              .line_tail = NIL,
                              .expiry_head = NIL,
                              .expiry_tail = NIL};
    for (uint32_t i = 0; i < e->category_count && version >= 2; i++) {
        e->categories[i].returned = (uint32_t)wire_get_uint(r, 4);
        e->categories[i].available_again_at_ms = (int64_t)wire_get_uint(r, 8);
    }
    return r->error;
}

/* Places one restored purchase in the tables, lines and expiry chains, and counts its tickets. */
static int snapshot_place_purchase(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    CHECK(p->status >= ENGINE_STATUS_WAITING && p->status <= ENGINE_STATUS_LAST);
    CHECK(p->id != 0 && purchase_lookup(e, p->id) == NIL);
    e->purchase_table[purchase_table_find(e, p->id)] = purchase_table_entry(p->id, slot);
    if (p->status == ENGINE_STATUS_REJECTED)
        return 0;
    CHECK(p->category < e->category_count);
    CHECK(p->quantity >= 1 && p->quantity <= e->event.per_customer_limit);
    uint32_t customer = customer_lookup(e, p->customer_key);
    CHECK(customer != NIL);
    p->customer = customer;
    struct category *c = &e->categories[p->category];
    if (holds_quota(p->status)) {
        uint8_t *tickets = customer_tickets_at(e, customer);
        CHECK((uint64_t)*tickets + p->quantity <= e->event.per_customer_limit);
        *tickets = (uint8_t)(*tickets + p->quantity);
    }
    e->prequeued_count += p->status == ENGINE_STATUS_PREQUEUED;
    e->deferred_count += p->status == ENGINE_STATUS_DEFERRED;
    if (p->status == ENGINE_STATUS_WAITING)
        line_append(e, slot);
    if (p->status == ENGINE_STATUS_HELD) {
        CHECK(p->when.expires_at_ms > e->now_ms);
        CHECK((uint64_t)c->held + c->sold + p->quantity <= c->capacity);
        /* Restored in slot order, a category's holds must expire in it ("Expiry order"). */
        CHECK(c->expiry_tail == NIL ||
              e->purchases[c->expiry_tail].when.expires_at_ms <= p->when.expires_at_ms);
        c->held += p->quantity;
        expiry_append(e, slot);
    }
    if (p->status == ENGINE_STATUS_CONFIRMED) {
        CHECK((uint64_t)c->held + c->sold + p->quantity <= c->capacity);
        c->sold += p->quantity;
    }
    return 0;
}

static int snapshot_read_customers(struct engine *e, struct wire_reader *r)
{
    uint32_t customer_count = (uint32_t)wire_get_uint(r, 4);
    if (r->error == 0 && customer_count > e->config.customers_max)
        return CATRACA_E_TOO_LARGE;
    for (uint32_t slot = 0; slot < customer_count && r->error == 0; slot++) {
        uint64_t key = wire_get_uint(r, 8);
        if (r->error == 0) {
            uint32_t entry = customer_find(e, key);
            CHECK(*customer_key_at(e, entry) == 0);
            customer_add_at(e, entry, key);
        }
    }
    return r->error;
}

static int snapshot_read_purchases(struct engine *e, struct wire_reader *r, uint32_t version)
{
    uint32_t purchase_count = (uint32_t)wire_get_uint(r, 4);
    if (r->error == 0 && purchase_count > e->config.purchases_max)
        return CATRACA_E_TOO_LARGE;
    for (uint32_t slot = 0; slot < purchase_count && r->error == 0; slot++) {
        struct purchase *p = &e->purchases[slot];
        *p = (struct purchase){0};
        p->id = wire_get_uint(r, 8);
        p->customer_key = wire_get_uint(r, 8);
        p->when.payment_ref_key = wire_get_uint(r, 8);
        p->customer = NIL;
        p->quantity = (uint32_t)wire_get_uint(r, 4);
        p->category = (uint8_t)wire_get_uint(r, 1);
        p->status = (uint8_t)wire_get_uint(r, 1);
        p->reason = (uint8_t)wire_get_uint(r, 1);
        if (version >= 2)
            p->is_refund_due = (uint8_t)wire_get_uint(r, 1);
        if (r->error != 0)
            break;
        CHECK(p->is_refund_due <= 1 && (!p->is_refund_due || p->status == ENGINE_STATUS_EXPIRED));
        e->purchase_count = slot + 1;
        int error = snapshot_place_purchase(e, slot);
        if (error != 0)
            return error;
    }
    return r->error;
}

static int snapshot_read_body(struct engine *e, struct wire_reader *r)
{
    uint32_t magic = (uint32_t)wire_get_uint(r, 4);
    uint32_t version = (uint32_t)wire_get_uint(r, 4);
    if (r->error != 0)
        return r->error;
    CHECK(magic == SNAPSHOT_MAGIC);
    if (version < SNAPSHOT_VERSION_OLDEST || version > SNAPSHOT_VERSION)
        return CATRACA_E_VERSION;
    e->now_ms = (int64_t)wire_get_uint(r, 8);
    e->state = (uint8_t)wire_get_uint(r, 1);
    if (r->error != 0)
        return r->error;
    CHECK(e->state <= ENGINE_STATE_CLOSED);
    if (e->state != ENGINE_STATE_NONE) {
        int error = snapshot_read_event(e, r, version);
        if (error != 0)
            return error;
    }
    uint64_t *stats = (uint64_t *)&e->stats;
    for (size_t i = 0; i < sizeof(e->stats) / sizeof(uint64_t); i++)
        stats[i] = wire_get_uint(r, 8);
    int error = snapshot_read_customers(e, r);
    if (error == 0)
        error = snapshot_read_purchases(e, r, version);
    if (error != 0)
        return error;
    CHECK(r->offset == r->length);
    for (uint32_t i = 0; i < e->category_count; i++)
        e->categories[i].available =
            e->categories[i].capacity - e->categories[i].held - e->categories[i].sold;
    return engine_validate(e);
}

int engine_snapshot_read(struct engine *engine, const uint8_t *buffer, size_t length)
{
    if (engine == NULL || (buffer == NULL && length > 0))
        return CATRACA_E_INVALID;
    engine_reset(engine);
    struct wire_reader r = {.buffer = buffer, .length = length};
    int error = snapshot_read_body(engine, &r);
    if (error != 0)
        engine_reset(engine);
    return error;
}
