/*
 * engine.c - the decision engine. The contract is engine.h; this file keeps
 * the reasoning.
 *
 * Storage, all allocated by engine_new() and never again:
 *   purchases[]      every purchase ever applied, in arrival order (the slot
 *                    index is the arrival rank, which orders ties in expiry
 *                    and defines each wait line);
 *   purchase_table   open addressing over purchase ids (linear probing; no
 *                    deletions, purchases are never forgotten);
 *   customers        ticket count per customer key, an open-addressing table
 *                    (purchases keep their customer's index: no second probe);
 *   heap             binary min-heap of held purchases by (expires_at, slot);
 *   wait lines       per category, a doubly linked list through the purchase
 *                    slots (a waiting purchase is never in the heap, so the
 *                    links share storage with heap_index).
 */
#include "core/engine.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/codec.h"
#include "core/error.h"
#include "core/siphash.h"
#include "core/wire.h"

#define NIL UINT32_MAX

struct purchase {
    uint64_t id;
    uint64_t customer_key;
    union {
        int64_t expires_at_ms;    /* HELD */
        uint64_t payment_ref_key; /* CONFIRMED: key of the payment reference */
    } when;
    union {
        struct {
            uint32_t prev, next;
        } line;              /* WAITING */
        uint32_t heap_index; /* HELD */
    } link;
    uint32_t quantity;
    uint32_t customer; /* index in customers[] once the customer is known, else NIL */
    uint8_t category;
    uint8_t status;
    uint8_t reason;
    uint8_t is_refund_due; /* EXPIRED, and when.payment_ref_key is the late payment's key */
};

/* An entry of the customer table (open addressing, stored inline: one cache miss a lookup). */
struct customer {
    uint64_t key;
    uint32_t tickets; /* held + confirmed + waiting */
    uint32_t is_used;
};

struct category {
    uint32_t capacity;
    uint32_t available;
    uint32_t held;
    uint32_t sold;
    uint32_t line_head, line_tail;
    uint32_t waiting_count;
    uint32_t waiting_quantity;
    uint32_t returned;             /* tickets of expired or cancelled holds */
    int64_t available_again_at_ms; /* engine.h rule 3; 0 when never */
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
    uint32_t *purchase_table; /* slot + 1; 0 is empty */
    uint32_t purchase_table_mask;

    struct customer *customers; /* the table itself, customer_mask + 1 entries */
    uint32_t customer_count;
    uint32_t customer_mask;

    uint32_t *heap;
    uint32_t heap_count;

    struct engine_stats stats;
    const struct engine_sink *sink; /* during engine_apply only */
};

static const uint8_t customer_hash_key[16] = {'c', 'a', 't', 'r', 'a', 'c', 'a', '-',
                                              'c', 'u', 's', 't', 'o', 'm', 'e', 'r'};

/* ---- hashing and lookup ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/*
 * Purchase ids are chosen by Catraca's gateways, never by buyers: milliseconds
 * in the high bits and a counter in the low bits. Folding instead of mixing
 * keeps consecutive ids in consecutive table slots, so a burst of purchases
 * walks the table through the cache instead of missing it once a purchase
 * (linear probing with dense keys also means no collisions). Customer keys
 * are SipHash values already and are mixed as usual.
 */
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
    return siphash24(customer_hash_key, s, strnlen(s, array_size));
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

/* Returns the table position holding `id`, or the empty position where it would go. */
static uint32_t purchase_table_find(const struct engine *e, uint64_t id)
{
    uint32_t i = purchase_slot_hash(id) & e->purchase_table_mask;
    for (;;) {
        uint32_t entry = e->purchase_table[i];
        if (entry == 0 || e->purchases[entry - 1].id == id)
            return i;
        i = (i + 1) & e->purchase_table_mask;
    }
}

static uint32_t purchase_lookup(const struct engine *e, uint64_t id)
{
    uint32_t entry = e->purchase_table[purchase_table_find(e, id)];
    return entry == 0 ? NIL : entry - 1;
}

/* Returns the index holding `key`, or the empty index where it would go. */
static uint32_t customer_find(const struct engine *e, uint64_t key)
{
    uint32_t i = (uint32_t)mix64(key) & e->customer_mask;
    while (e->customers[i].is_used && e->customers[i].key != key)
        i = (i + 1) & e->customer_mask;
    return i;
}

static uint32_t customer_lookup(const struct engine *e, uint64_t key)
{
    uint32_t i = customer_find(e, key);
    return e->customers[i].is_used ? i : NIL;
}

/* Adds a customer; the caller checked the pool has room and the key is new. */
static uint32_t customer_add(struct engine *e, uint64_t key)
{
    assert(e->customer_count < e->config.customers_max);
    uint32_t i = customer_find(e, key);
    assert(!e->customers[i].is_used);
    e->customers[i] = (struct customer){.key = key, .tickets = 0, .is_used = 1};
    e->customer_count++;
    return i;
}

static void customer_release(struct engine *e, const struct purchase *p)
{
    struct customer *c = &e->customers[p->customer];
    assert(p->customer != NIL && c->is_used && c->key == p->customer_key);
    assert(c->tickets >= p->quantity);
    c->tickets -= p->quantity;
}

/* ---- timer heap over held purchases ------------------------------------------------------ */

static bool heap_less(const struct engine *e, uint32_t a, uint32_t b)
{
    const struct purchase *pa = &e->purchases[a], *pb = &e->purchases[b];
    if (pa->when.expires_at_ms != pb->when.expires_at_ms)
        return pa->when.expires_at_ms < pb->when.expires_at_ms;
    return a < b;
}

static void heap_set(struct engine *e, uint32_t index, uint32_t slot)
{
    e->heap[index] = slot;
    e->purchases[slot].link.heap_index = index;
}

static void heap_sift_up(struct engine *e, uint32_t index)
{
    uint32_t slot = e->heap[index];
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (!heap_less(e, slot, e->heap[parent]))
            break;
        heap_set(e, index, e->heap[parent]);
        index = parent;
    }
    heap_set(e, index, slot);
}

static void heap_sift_down(struct engine *e, uint32_t index)
{
    uint32_t slot = e->heap[index];
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= e->heap_count)
            break;
        if (child + 1 < e->heap_count && heap_less(e, e->heap[child + 1], e->heap[child]))
            child++;
        if (!heap_less(e, e->heap[child], slot))
            break;
        heap_set(e, index, e->heap[child]);
        index = child;
    }
    heap_set(e, index, slot);
}

static void heap_push(struct engine *e, uint32_t slot)
{
    assert(e->heap_count < e->config.purchases_max);
    e->heap[e->heap_count] = slot;
    heap_sift_up(e, e->heap_count++);
}

static void heap_remove(struct engine *e, uint32_t slot)
{
    uint32_t index = e->purchases[slot].link.heap_index;
    assert(index < e->heap_count && e->heap[index] == slot);
    uint32_t last = e->heap[--e->heap_count];
    if (index == e->heap_count)
        return;
    heap_set(e, index, last);
    heap_sift_down(e, index);
    heap_sift_up(e, e->purchases[last].link.heap_index);
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

static void emit(struct engine *e, uint32_t slot, uint8_t type, uint8_t result, uint8_t reason)
{
    const struct purchase *p = &e->purchases[slot];
    struct engine_outcome o;
    memset(&o, 0, sizeof(o));
    o.purchase_id = p->id;
    o.customer_key = p->customer_key;
    o.quantity = p->quantity;
    o.category = p->category;
    o.type = type;
    o.status = p->status;
    o.reason = type == ENGINE_OUTCOME_PURCHASE ? p->reason : reason;
    o.result = result;
    o.event_state = e->state;
    if (p->status == ENGINE_STATUS_HELD)
        o.hold_expires_at_ms = p->when.expires_at_ms;
    if (p->status == ENGINE_STATUS_WAITING)
        o.position = line_position(e, slot);
    if (p->status == ENGINE_STATUS_CONFIRMED) {
        assert(p->quantity <= CATRACA_QUANTITY_MAX);
        o.ticket_count = (uint8_t)p->quantity;
        for (uint32_t i = 0; i < p->quantity; i++)
            o.ticket_codes[i] = engine_ticket_code(e->event.secret, p->id, i);
    }
    e->sink->emit(e->sink->context, &o);
}

/* An answer about no purchase at all (unknown id) or about the event. */
static void emit_bare(struct engine *e, uint8_t type, uint64_t purchase_id, uint8_t result,
                      uint8_t reason)
{
    struct engine_outcome o;
    memset(&o, 0, sizeof(o));
    o.purchase_id = purchase_id;
    o.type = type;
    o.result = result;
    o.reason = reason;
    o.event_state = e->state;
    e->sink->emit(e->sink->context, &o);
}

/* ---- state changes ----------------------------------------------------------------------- */

static void assert_category(const struct engine *e, uint32_t index)
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
    heap_push(e, slot);
    e->stats.holds_granted++;
}

/* Tickets of a hold go back to stock (expiry or cancel). */
static void hold_release(struct engine *e, uint32_t slot, uint8_t status)
{
    struct purchase *p = &e->purchases[slot];
    struct category *c = &e->categories[p->category];
    assert(p->status == ENGINE_STATUS_HELD && c->held >= p->quantity);
    heap_remove(e, slot);
    c->held -= p->quantity;
    c->available += p->quantity;
    c->returned += p->quantity;
    p->status = status;
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
    while (e->heap_count > 0 && e->purchases[e->heap[0]].when.expires_at_ms <= e->now_ms) {
        uint32_t slot = e->heap[0];
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
    return true;
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
    return true;
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
    e->category_count = spec->category_count;
    for (uint32_t i = 0; i < e->category_count; i++) {
        e->categories[i] = (struct category){
            .capacity = spec->categories[i].capacity,
            .available = spec->categories[i].capacity,
            .line_head = NIL,
            .line_tail = NIL,
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

static uint32_t category_find(const struct engine *e, const char *id, size_t array_size)
{
    size_t length = strnlen(id, array_size);
    for (uint32_t i = 0; i < e->category_count; i++) {
        if (strlen(e->event.categories[i].id) == length &&
            memcmp(e->event.categories[i].id, id, length) == 0)
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
    uint32_t customer = customer_lookup(e, p->customer_key);
    if (customer == NIL) {
        if (e->customer_count == e->config.customers_max)
            return ENGINE_REASON_ENGINE_FULL;
        customer = customer_add(e, p->customer_key);
    }
    p->customer = customer;
    if ((uint64_t)e->customers[customer].tickets + p->quantity > e->event.per_customer_limit)
        return ENGINE_REASON_LIMIT_EXCEEDED;
    if (c->line_head == NIL && c->available >= p->quantity) {
        hold_grant(e, slot);
    } else {
        uint8_t refusal = line_admission(e, c, p->quantity);
        if (refusal != ENGINE_REASON_NONE)
            return refusal;
        p->status = ENGINE_STATUS_WAITING;
        line_append(e, slot);
    }
    e->customers[customer].tickets += p->quantity;
    return ENGINE_REASON_NONE;
}

static void command_purchase(struct engine *e, const struct engine_command *command)
{
    uint64_t id = command->u.purchase.purchase_id;
    uint32_t existing = purchase_lookup(e, id);
    if (existing != NIL) {
        e->stats.repeated++;
        emit(e, existing, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_REPEATED, ENGINE_REASON_NONE);
        return;
    }
    struct purchase candidate = {
        .id = id,
        .customer_key =
            bounded_string_key(command->u.purchase.customer, sizeof(command->u.purchase.customer)),
        .quantity = command->u.purchase.quantity,
        .customer = NIL,
        .status = ENGINE_STATUS_REJECTED,
    };
    if (e->purchase_count == e->config.purchases_max || id == 0) {
        /*
         * Not remembered: a duplicate meets the same full pool (it never
         * empties) or the same invalid id, and so the same answer.
         */
        struct engine_outcome o;
        memset(&o, 0, sizeof(o));
        o.purchase_id = id;
        o.customer_key = candidate.customer_key;
        o.quantity = candidate.quantity;
        o.type = ENGINE_OUTCOME_PURCHASE;
        o.status = ENGINE_STATUS_REJECTED;
        o.reason = id == 0 ? ENGINE_REASON_INVALID : ENGINE_REASON_ENGINE_FULL;
        o.event_state = e->state;
        e->stats.rejected++;
        e->sink->emit(e->sink->context, &o);
        return;
    }
    uint32_t slot = e->purchase_count++;
    uint32_t category = 0;
    candidate.reason = purchase_precheck(e, command, &category);
    candidate.category = (uint8_t)category;
    e->purchases[slot] = candidate;
    e->purchase_table[purchase_table_find(e, id)] = slot + 1;
    e->stats.purchases++;
    if (candidate.reason == ENGINE_REASON_NONE)
        e->purchases[slot].reason = purchase_decide(e, slot);
    if (e->purchases[slot].reason != ENGINE_REASON_NONE) {
        e->purchases[slot].status = ENGINE_STATUS_REJECTED;
        e->stats.rejected++;
    }
    emit(e, slot, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, ENGINE_REASON_NONE);
    if (candidate.reason == ENGINE_REASON_NONE)
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
    heap_remove(e, slot);
    c->held -= p->quantity;
    c->sold += p->quantity;
    p->status = ENGINE_STATUS_CONFIRMED;
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

static void command_cancel(struct engine *e, const struct engine_command *command)
{
    uint32_t slot = purchase_lookup(e, command->u.cancel.purchase_id);
    if (slot == NIL) {
        emit_bare(e, ENGINE_OUTCOME_CANCEL, command->u.cancel.purchase_id, ENGINE_RESULT_CONFLICT,
                  ENGINE_REASON_UNKNOWN_PURCHASE);
        return;
    }
    struct purchase *p = &e->purchases[slot];
    uint64_t customer_key =
        bounded_string_key(command->u.cancel.customer, sizeof(command->u.cancel.customer));
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

void engine_prefetch(const struct engine *engine, const struct engine_command *command)
{
    uint64_t id = 0, customer_key = 0;
    switch (command->type) {
    case ENGINE_COMMAND_PURCHASE:
        id = command->u.purchase.purchase_id;
        customer_key =
            bounded_string_key(command->u.purchase.customer, sizeof(command->u.purchase.customer));
        __builtin_prefetch(
            &engine->customers[(uint32_t)mix64(customer_key) & engine->customer_mask]);
        break;
    case ENGINE_COMMAND_CONFIRM:
        id = command->u.confirm.purchase_id;
        break;
    case ENGINE_COMMAND_CANCEL:
        id = command->u.cancel.purchase_id;
        break;
    default:
        return;
    }
    __builtin_prefetch(
        &engine->purchase_table[purchase_slot_hash(id) & engine->purchase_table_mask]);
}

int engine_apply(struct engine *engine, const struct engine_command *command,
                 const struct engine_sink *sink)
{
    if (engine == NULL || command == NULL || sink == NULL || sink->emit == NULL)
        return CATRACA_E_INVALID;
    if (command->type < ENGINE_COMMAND_CREATE_EVENT || command->type > ENGINE_COMMAND_TICK)
        return CATRACA_E_INVALID;
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
        command_purchase(engine, command);
        break;
    case ENGINE_COMMAND_CONFIRM:
        command_confirm(engine, command);
        break;
    case ENGINE_COMMAND_CANCEL:
        command_cancel(engine, command);
        break;
    default:
        break; /* TICK: the clock advanced above */
    }
    engine->sink = NULL;
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
    return sizeof(uint32_t) * ((size_t)e->purchase_table_mask + 1);
}

static size_t customers_bytes(const struct engine *e)
{
    return sizeof(struct customer) * ((size_t)e->customer_mask + 1);
}

static size_t heap_bytes(const struct engine *e)
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
        memset(e->customers, 0, customers_bytes(e));
    e->purchase_count = 0;
    e->customer_count = 0;
    e->heap_count = 0;
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
    uint32_t customer_table_size = table_capacity_for(config->customers_max);
    e->purchase_table_mask = purchase_table_size - 1;
    e->customer_mask = customer_table_size - 1;
    e->purchases = pool_alloc(purchases_bytes(e));
    e->purchase_table = pool_alloc(purchase_table_bytes(e));
    e->customers = pool_alloc(customers_bytes(e));
    e->heap = pool_alloc(heap_bytes(e));
    if (e->purchases == NULL || e->purchase_table == NULL || e->customers == NULL ||
        e->heap == NULL) {
        engine_free(e);
        return CATRACA_E_NOMEM;
    }
    if (config->is_prefaulted) {
        memset(e->purchases, 0, purchases_bytes(e));
        memset(e->purchase_table, 0, purchase_table_bytes(e));
        memset(e->customers, 0, customers_bytes(e));
        memset(e->heap, 0, heap_bytes(e));
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
    pool_free(engine->customers, customers_bytes(engine));
    pool_free(engine->heap, heap_bytes(engine));
    free(engine);
}

uint64_t engine_outcome_bound(const struct engine *engine)
{
    uint64_t waiting = 0;
    for (uint32_t i = 0; i < engine->category_count; i++)
        waiting += engine->categories[i].waiting_count;
    return 1 + (uint64_t)engine->heap_count + waiting;
}

int64_t engine_now_ms(const struct engine *engine)
{
    return engine->now_ms;
}

int64_t engine_next_expiry_ms(const struct engine *engine)
{
    return engine->heap_count ? engine->purchases[engine->heap[0]].when.expires_at_ms : INT64_MAX;
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
    return sizeof(*engine) + sizeof(struct purchase) * engine->config.purchases_max +
           sizeof(uint32_t) * ((size_t)engine->purchase_table_mask + 1) +
           sizeof(struct customer) * ((size_t)engine->customer_mask + 1) +
           sizeof(uint32_t) * engine->config.purchases_max;
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

static int validate_heap(const struct engine *e)
{
    for (uint32_t i = 0; i < e->heap_count; i++) {
        uint32_t slot = e->heap[i];
        CHECK(slot < e->purchase_count);
        CHECK(e->purchases[slot].status == ENGINE_STATUS_HELD);
        CHECK(e->purchases[slot].link.heap_index == i);
        CHECK(e->purchases[slot].when.expires_at_ms > e->now_ms);
        CHECK(i == 0 || !heap_less(e, slot, e->heap[(i - 1) / 2]));
    }
    return 0;
}

static int validate_purchases(const struct engine *e)
{
    uint64_t held[CATRACA_CATEGORIES_MAX] = {0}, sold[CATRACA_CATEGORIES_MAX] = {0};
    uint32_t held_count = 0;
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        const struct purchase *p = &e->purchases[slot];
        CHECK(p->status >= ENGINE_STATUS_WAITING && p->status <= ENGINE_STATUS_REJECTED);
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
    CHECK(held_count == e->heap_count);
    for (uint32_t i = 0; i < e->category_count; i++) {
        const struct category *c = &e->categories[i];
        CHECK(c->capacity == e->event.categories[i].capacity);
        CHECK(held[i] == c->held && sold[i] == c->sold);
        CHECK((uint64_t)c->available + c->held + c->sold == c->capacity);
    }
    return 0;
}

static int validate_customers(const struct engine *e)
{
    uint64_t total_customers = 0, total_purchases = 0;
    uint32_t used = 0;
    for (uint32_t i = 0; i <= e->customer_mask; i++) {
        const struct customer *c = &e->customers[i];
        if (!c->is_used)
            continue;
        CHECK(customer_lookup(e, c->key) == i);
        CHECK(c->tickets <= e->event.per_customer_limit);
        total_customers += c->tickets;
        used++;
    }
    CHECK(used == e->customer_count);
    for (uint32_t slot = 0; slot < e->purchase_count; slot++) {
        const struct purchase *p = &e->purchases[slot];
        if (p->status == ENGINE_STATUS_HELD || p->status == ENGINE_STATUS_CONFIRMED ||
            p->status == ENGINE_STATUS_WAITING) {
            CHECK(p->customer <= e->customer_mask && e->customers[p->customer].is_used &&
                  e->customers[p->customer].key == p->customer_key);
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
        error = validate_heap(e);
    if (error == 0)
        error = validate_purchases(e);
    if (error == 0)
        error = validate_customers(e);
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
    static const char *const names[] = {"queued",  "waiting",   "held",    "confirmed",
                                        "expired", "cancelled", "rejected"};
    return status < sizeof(names) / sizeof(names[0]) ? names[status] : "unknown";
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
                                        "refund_due"};
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
 * Format 2, little-endian: magic, version, clock, state, the event spec (codec
 * format 2), per category its returned tickets and available_again_at_ms (which
 * no purchase records), stats, every customer key in slot order, then every
 * purchase in slot order, each ending with its is_refund_due byte. Format 1
 * (codec format 1 spec, no category part, no refund byte) is still read: a
 * partition restarted by a newer binary keeps its snapshot.
 * Lines, heap, hash tables, category counters and customers' ticket counts
 * are rebuilt on read: they follow from the purchases (a line is its
 * category's waiting purchases in arrival order), so a snapshot cannot carry
 * them inconsistently.
 */
#define SNAPSHOT_MAGIC 0x53525443u /* "CTRS" */
#define SNAPSHOT_VERSION 2u
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
        for (uint32_t i = 0; i < engine->category_count; i++) {
            wire_put_uint(&w, engine->categories[i].returned, 4);
            wire_put_uint(&w, (uint64_t)engine->categories[i].available_again_at_ms, 8);
        }
    }
    const uint64_t *stats = (const uint64_t *)&engine->stats;
    for (size_t i = 0; i < sizeof(engine->stats) / sizeof(uint64_t); i++)
        wire_put_uint(&w, stats[i], 8);
    wire_put_uint(&w, engine->customer_count, 4);
    for (uint32_t i = 0; i <= engine->customer_mask; i++)
        if (engine->customers[i].is_used)
            wire_put_uint(&w, engine->customers[i].key, 8);
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
    codec_event_spec_get_version(r, spec, version >= 2 ? 2 : 1);
    if (r->error != 0)
        return r->error;
    if (!event_spec_is_valid(spec))
        return CATRACA_E_CORRUPT;
    e->category_count = spec->category_count;
    for (uint32_t i = 0; i < e->category_count; i++)
        e->categories[i] = (struct category){
            .capacity = spec->categories[i].capacity, .line_head = NIL, .line_tail = NIL};
    for (uint32_t i = 0; i < e->category_count && version >= 2; i++) {
        e->categories[i].returned = (uint32_t)wire_get_uint(r, 4);
        e->categories[i].available_again_at_ms = (int64_t)wire_get_uint(r, 8);
    }
    return r->error;
}

/* Places one restored purchase in the tables, lines and heap, and counts its tickets. */
static int snapshot_place_purchase(struct engine *e, uint32_t slot)
{
    struct purchase *p = &e->purchases[slot];
    CHECK(p->status >= ENGINE_STATUS_WAITING && p->status <= ENGINE_STATUS_REJECTED);
    CHECK(p->id != 0 && purchase_lookup(e, p->id) == NIL);
    e->purchase_table[purchase_table_find(e, p->id)] = slot + 1;
    if (p->status == ENGINE_STATUS_REJECTED)
        return 0;
    CHECK(p->category < e->category_count);
    CHECK(p->quantity >= 1 && p->quantity <= e->event.per_customer_limit);
    uint32_t customer = customer_lookup(e, p->customer_key);
    CHECK(customer != NIL);
    p->customer = customer;
    struct category *c = &e->categories[p->category];
    if (p->status == ENGINE_STATUS_WAITING || p->status == ENGINE_STATUS_HELD ||
        p->status == ENGINE_STATUS_CONFIRMED) {
        CHECK(e->customers[customer].tickets + p->quantity <= e->event.per_customer_limit);
        e->customers[customer].tickets += p->quantity;
    }
    if (p->status == ENGINE_STATUS_WAITING)
        line_append(e, slot);
    if (p->status == ENGINE_STATUS_HELD) {
        CHECK(p->when.expires_at_ms > e->now_ms);
        CHECK((uint64_t)c->held + c->sold + p->quantity <= c->capacity);
        c->held += p->quantity;
        heap_push(e, slot);
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
            CHECK(customer_lookup(e, key) == NIL);
            customer_add(e, key);
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
