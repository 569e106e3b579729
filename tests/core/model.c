/*
 * model.c - engine.h's rules, written as directly as they read. Every
 * counter is recomputed from the purchase list when needed.
 */
#include "model.h"

#include <string.h>

void model_init(struct model *m)
{
    memset(m, 0, sizeof(*m));
}

static uint32_t sum(const struct model *m, int category, uint8_t status)
{
    uint32_t total = 0;
    for (size_t i = 0; i < m->count; i++)
        if (m->purchases[i].category == category && m->purchases[i].status == status)
            total += m->purchases[i].quantity;
    return total;
}

void model_counts(const struct model *m, uint32_t c, struct engine_category_counts *out)
{
    memset(out, 0, sizeof(*out));
    out->capacity = m->event.categories[c].capacity;
    out->held = sum(m, (int)c, ENGINE_STATUS_HELD);
    out->sold = sum(m, (int)c, ENGINE_STATUS_CONFIRMED);
    out->available = out->capacity - out->held - out->sold;
    out->waiting_quantity = sum(m, (int)c, ENGINE_STATUS_WAITING);
    for (size_t i = 0; i < m->count; i++)
        if (m->purchases[i].category == (int)c && m->purchases[i].status == ENGINE_STATUS_WAITING)
            out->waiting_count++;
    out->returned = m->returned[c];
    out->available_again_at_ms = m->available_again_at_ms[c];
}

static bool line_is_empty(const struct model *m, int c)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->purchases[i].category == c && m->purchases[i].status == ENGINE_STATUS_WAITING)
            return false;
    return true;
}

/* Tickets returned and offered to the line: any left with nobody waiting are available again. */
static void note_available_again(struct model *m, int c)
{
    struct engine_category_counts counts;
    model_counts(m, (uint32_t)c, &counts);
    if (line_is_empty(m, c) && counts.available > 0)
        m->available_again_at_ms[c] = m->now_ms;
}

static uint32_t customer_tickets(const struct model *m, const char *customer)
{
    uint32_t total = 0;
    for (size_t i = 0; i < m->count; i++) {
        const struct model_purchase *p = &m->purchases[i];
        if (strcmp(p->customer, customer) == 0 &&
            (p->status == ENGINE_STATUS_HELD || p->status == ENGINE_STATUS_CONFIRMED ||
             p->status == ENGINE_STATUS_WAITING))
            total += p->quantity;
    }
    return total;
}

static uint32_t position(const struct model *m, size_t index)
{
    uint32_t place = 1;
    for (size_t i = 0; i < index; i++)
        if (m->purchases[i].category == m->purchases[index].category &&
            m->purchases[i].status == ENGINE_STATUS_WAITING)
            place++;
    return place;
}

static void emit(struct model *m, size_t index, uint8_t type, uint8_t result, uint8_t reason)
{
    const struct model_purchase *p = &m->purchases[index];
    struct engine_outcome *o = &m->out[m->out_count++];
    memset(o, 0, sizeof(*o));
    o->purchase_id = p->id;
    o->customer_key = engine_customer_key(p->customer);
    o->quantity = p->quantity;
    o->category = (uint8_t)(p->category < 0 ? 0 : p->category);
    o->type = type;
    o->status = p->status;
    o->reason = type == ENGINE_OUTCOME_PURCHASE ? p->reason : reason;
    o->result = result;
    o->event_state = m->state;
    if (p->status == ENGINE_STATUS_HELD)
        o->hold_expires_at_ms = p->expires_at_ms;
    if (p->status == ENGINE_STATUS_WAITING)
        o->position = position(m, index);
    if (p->status == ENGINE_STATUS_CONFIRMED) {
        o->ticket_count = (uint8_t)p->quantity;
        for (uint32_t i = 0; i < p->quantity; i++)
            o->ticket_codes[i] = engine_ticket_code(m->event.secret, p->id, i);
    }
}

static void emit_bare(struct model *m, uint8_t type, uint64_t id, uint8_t result, uint8_t reason)
{
    struct engine_outcome *o = &m->out[m->out_count++];
    memset(o, 0, sizeof(*o));
    o->purchase_id = id;
    o->type = type;
    o->result = result;
    o->reason = reason;
    o->event_state = m->state;
}

static uint32_t available(const struct model *m, int c)
{
    struct engine_category_counts counts;
    model_counts(m, (uint32_t)c, &counts);
    return counts.available;
}

/* Serve the line of category c from its head while the head fits. */
static void serve(struct model *m, int c)
{
    for (size_t i = 0; i < m->count; i++) {
        struct model_purchase *p = &m->purchases[i];
        if (p->category != c || p->status != ENGINE_STATUS_WAITING)
            continue;
        if (p->quantity > available(m, c))
            return; /* the head blocks everyone behind it */
        p->status = ENGINE_STATUS_HELD;
        p->expires_at_ms = m->now_ms + m->event.hold_ms;
        emit(m, i, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, 0);
    }
}

static void advance(struct model *m, int64_t now_ms)
{
    if (now_ms > m->now_ms)
        m->now_ms = now_ms;
    for (;;) {
        size_t due = m->count;
        for (size_t i = 0; i < m->count; i++) {
            const struct model_purchase *p = &m->purchases[i];
            if (p->status == ENGINE_STATUS_HELD && p->expires_at_ms <= m->now_ms &&
                (due == m->count || p->expires_at_ms < m->purchases[due].expires_at_ms))
                due = i;
        }
        if (due == m->count)
            return;
        m->purchases[due].status = ENGINE_STATUS_EXPIRED;
        m->returned[m->purchases[due].category] += m->purchases[due].quantity;
        emit(m, due, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, 0);
        serve(m, m->purchases[due].category);
        note_available_again(m, m->purchases[due].category);
    }
}

static bool spec_valid(const struct engine_event_spec *s)
{
    if (s->id[0] == 0 || s->hold_ms < CATRACA_HOLD_MS_MIN || s->hold_ms > CATRACA_HOLD_MS_MAX ||
        s->per_customer_limit < 1 || s->per_customer_limit > CATRACA_QUANTITY_MAX ||
        s->state < ENGINE_STATE_OPEN || s->state > ENGINE_STATE_CLOSED || s->category_count < 1 ||
        s->category_count > CATRACA_CATEGORIES_MAX || s->line_policy > ENGINE_LINE_UNBOUNDED)
        return false;
    for (int i = 0; i < s->category_count; i++) {
        if (s->categories[i].id[0] == 0 || s->categories[i].capacity < 1 ||
            s->categories[i].capacity > CATRACA_CAPACITY_MAX || s->categories[i].price_cents < 0)
            return false;
        for (int j = 0; j < i; j++)
            if (strcmp(s->categories[i].id, s->categories[j].id) == 0)
                return false;
    }
    return true;
}

static bool spec_same(const struct engine_event_spec *a, const struct engine_event_spec *b)
{
    if (strcmp(a->id, b->id) || strcmp(a->name, b->name) || a->hold_ms != b->hold_ms ||
        a->per_customer_limit != b->per_customer_limit || a->state != b->state ||
        a->category_count != b->category_count || a->line_policy != b->line_policy)
        return false;
    for (int i = 0; i < a->category_count; i++)
        if (strcmp(a->categories[i].id, b->categories[i].id) ||
            strcmp(a->categories[i].name, b->categories[i].name) ||
            a->categories[i].price_cents != b->categories[i].price_cents ||
            a->categories[i].capacity != b->categories[i].capacity)
            return false;
    return true;
}

static void create_event(struct model *m, const struct engine_event_spec *s)
{
    if (m->state != ENGINE_STATE_NONE) {
        bool same = spec_valid(s) && spec_same(&m->event, s);
        emit_bare(m, ENGINE_OUTCOME_EVENT, 0,
                  same ? ENGINE_RESULT_REPEATED : ENGINE_RESULT_CONFLICT,
                  same ? 0 : ENGINE_REASON_EVENT_MISMATCH);
    } else if (!spec_valid(s)) {
        emit_bare(m, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_INVALID_EVENT);
    } else {
        m->event = *s;
        m->state = s->state;
        emit_bare(m, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_OK, 0);
    }
}

static void set_state(struct model *m, uint8_t state)
{
    if (m->state == ENGINE_STATE_NONE) {
        emit_bare(m, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_NO_EVENT);
        return;
    }
    if (state < ENGINE_STATE_OPEN || state > ENGINE_STATE_CLOSED) {
        emit_bare(m, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_CONFLICT, ENGINE_REASON_INVALID);
        return;
    }
    m->state = state;
    emit_bare(m, ENGINE_OUTCOME_EVENT, 0, ENGINE_RESULT_OK, 0);
    if (state != ENGINE_STATE_CLOSED)
        return;
    for (int c = 0; c < m->event.category_count; c++)
        for (size_t i = 0; i < m->count; i++)
            if (m->purchases[i].category == c && m->purchases[i].status == ENGINE_STATUS_WAITING) {
                m->purchases[i].status = ENGINE_STATUS_REJECTED;
                m->purchases[i].reason = ENGINE_REASON_SALE_CLOSED;
                emit(m, i, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, 0);
            }
}

static long find(const struct model *m, uint64_t id)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->purchases[i].id == id)
            return (long)i;
    return -1;
}

static int category_index(const struct model *m, const char *id)
{
    for (int i = 0; i < m->event.category_count; i++)
        if (strcmp(m->event.categories[i].id, id) == 0)
            return i;
    return -1;
}

static uint8_t decide(struct model *m, struct model_purchase *p)
{
    if (p->quantity == 0)
        return ENGINE_REASON_INVALID;
    if (m->state != ENGINE_STATE_OPEN)
        return ENGINE_REASON_SALE_CLOSED;
    if (p->category < 0)
        return ENGINE_REASON_UNKNOWN_CATEGORY;
    if (customer_tickets(m, p->customer) + p->quantity > m->event.per_customer_limit)
        return ENGINE_REASON_LIMIT_EXCEEDED;
    struct engine_category_counts c;
    model_counts(m, (uint32_t)p->category, &c);
    if (c.waiting_count == 0 && c.available >= p->quantity) {
        p->status = ENGINE_STATUS_HELD;
        p->expires_at_ms = m->now_ms + m->event.hold_ms;
    } else if ((int64_t)c.available + c.held < p->quantity) {
        return ENGINE_REASON_SOLD_OUT; /* capacity - sold: no later command can serve it */
    } else if (m->event.line_policy == ENGINE_LINE_UNBOUNDED ||
               (int64_t)c.available + c.held - c.waiting_quantity >= p->quantity) {
        p->status = ENGINE_STATUS_WAITING;
    } else {
        return ENGINE_REASON_LINE_FULL;
    }
    return 0;
}

static void purchase(struct model *m, const struct engine_command *c)
{
    long existing = find(m, c->u.purchase.purchase_id);
    if (existing >= 0) {
        emit(m, (size_t)existing, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_REPEATED, 0);
        return;
    }
    if (c->u.purchase.purchase_id == 0) {
        struct engine_outcome *o = &m->out[m->out_count++];
        memset(o, 0, sizeof(*o));
        o->customer_key = engine_customer_key(c->u.purchase.customer);
        o->quantity = c->u.purchase.quantity;
        o->type = ENGINE_OUTCOME_PURCHASE;
        o->status = ENGINE_STATUS_REJECTED;
        o->reason = ENGINE_REASON_INVALID;
        o->event_state = m->state;
        return;
    }
    struct model_purchase *p = &m->purchases[m->count++];
    memset(p, 0, sizeof(*p));
    p->id = c->u.purchase.purchase_id;
    strcpy(p->customer, c->u.purchase.customer);
    p->quantity = c->u.purchase.quantity;
    p->category = m->state == ENGINE_STATE_NONE ? -1 : category_index(m, c->u.purchase.category);
    p->reason = decide(m, p);
    if (p->reason != 0)
        p->status = ENGINE_STATUS_REJECTED; /* counted nowhere: counts look at status */
    emit(m, m->count - 1, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, 0);
}

/*
 * After a confirm: walk the line from the head. Unbounded: reject what exceeds
 * capacity - sold. Bounded: with budget available + held, reject what exceeds
 * what is left of it (SOLD_OUT when it exceeds capacity - sold, else LINE_FULL).
 */
static void sweep(struct model *m, int c)
{
    struct engine_category_counts counts;
    model_counts(m, (uint32_t)c, &counts);
    uint32_t servable = counts.available + counts.held;
    uint32_t budget = m->event.line_policy == ENGINE_LINE_UNBOUNDED ? UINT32_MAX : servable;
    for (size_t i = 0; i < m->count; i++) {
        struct model_purchase *p = &m->purchases[i];
        if (p->category != c || p->status != ENGINE_STATUS_WAITING)
            continue;
        if (p->quantity > servable || p->quantity > budget) {
            p->status = ENGINE_STATUS_REJECTED;
            p->reason = p->quantity > servable ? ENGINE_REASON_SOLD_OUT : ENGINE_REASON_LINE_FULL;
            emit(m, i, ENGINE_OUTCOME_PURCHASE, ENGINE_RESULT_OK, 0);
        } else {
            budget -= p->quantity;
        }
    }
}

static uint8_t refusal(uint8_t status)
{
    return status == ENGINE_STATUS_EXPIRED     ? ENGINE_REASON_HOLD_EXPIRED
           : status == ENGINE_STATUS_CANCELLED ? ENGINE_REASON_HOLD_CANCELLED
           : status == ENGINE_STATUS_CONFIRMED ? ENGINE_REASON_ALREADY_CONFIRMED
                                               : ENGINE_REASON_NOT_HELD;
}

static void confirm(struct model *m, const struct engine_command *c)
{
    long i = find(m, c->u.confirm.purchase_id);
    if (i < 0) {
        emit_bare(m, ENGINE_OUTCOME_CONFIRM, c->u.confirm.purchase_id, ENGINE_RESULT_CONFLICT,
                  ENGINE_REASON_UNKNOWN_PURCHASE);
        return;
    }
    struct model_purchase *p = &m->purchases[i];
    if (p->status == ENGINE_STATUS_CONFIRMED &&
        strcmp(p->payment_ref, c->u.confirm.payment_ref) == 0) {
        emit(m, (size_t)i, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_REPEATED, 0);
    } else if (p->status == ENGINE_STATUS_EXPIRED && !p->is_refund_due) {
        p->is_refund_due = true; /* a late payment: recorded, never a ticket */
        strcpy(p->payment_ref, c->u.confirm.payment_ref);
        emit(m, (size_t)i, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_OK, ENGINE_REASON_REFUND_DUE);
    } else if (p->status == ENGINE_STATUS_EXPIRED) {
        bool is_same = strcmp(p->payment_ref, c->u.confirm.payment_ref) == 0;
        emit(m, (size_t)i, ENGINE_OUTCOME_CONFIRM,
             is_same ? ENGINE_RESULT_REPEATED : ENGINE_RESULT_CONFLICT, ENGINE_REASON_REFUND_DUE);
    } else if (p->status != ENGINE_STATUS_HELD) {
        emit(m, (size_t)i, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_CONFLICT, refusal(p->status));
    } else {
        p->status = ENGINE_STATUS_CONFIRMED;
        strcpy(p->payment_ref, c->u.confirm.payment_ref);
        emit(m, (size_t)i, ENGINE_OUTCOME_CONFIRM, ENGINE_RESULT_OK, 0);
        sweep(m, p->category);
        serve(m, p->category);
    }
}

static void cancel(struct model *m, const struct engine_command *c)
{
    long i = find(m, c->u.cancel.purchase_id);
    if (i < 0) {
        emit_bare(m, ENGINE_OUTCOME_CANCEL, c->u.cancel.purchase_id, ENGINE_RESULT_CONFLICT,
                  ENGINE_REASON_UNKNOWN_PURCHASE);
        return;
    }
    struct model_purchase *p = &m->purchases[i];
    if (strcmp(p->customer, c->u.cancel.customer) != 0) {
        emit(m, (size_t)i, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_CONFLICT, ENGINE_REASON_NOT_OWNER);
    } else if (p->status == ENGINE_STATUS_CANCELLED) {
        emit(m, (size_t)i, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_REPEATED, 0);
    } else if (p->status == ENGINE_STATUS_WAITING) {
        p->status = ENGINE_STATUS_CANCELLED; /* leaves the line; those behind move up */
        emit(m, (size_t)i, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_OK, 0);
        serve(m, p->category);
    } else if (p->status != ENGINE_STATUS_HELD) {
        emit(m, (size_t)i, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_CONFLICT, refusal(p->status));
    } else {
        p->status = ENGINE_STATUS_CANCELLED;
        m->returned[p->category] += p->quantity;
        emit(m, (size_t)i, ENGINE_OUTCOME_CANCEL, ENGINE_RESULT_OK, 0);
        serve(m, p->category);
        note_available_again(m, p->category);
    }
}

void model_apply(struct model *m, const struct engine_command *c)
{
    m->out_count = 0;
    advance(m, c->now_ms);
    switch (c->type) {
    case ENGINE_COMMAND_CREATE_EVENT:
        create_event(m, &c->u.create_event);
        break;
    case ENGINE_COMMAND_SET_STATE:
        set_state(m, c->u.set_state.state);
        break;
    case ENGINE_COMMAND_PURCHASE:
        purchase(m, c);
        break;
    case ENGINE_COMMAND_CONFIRM:
        confirm(m, c);
        break;
    case ENGINE_COMMAND_CANCEL:
        cancel(m, c);
        break;
    default:
        break;
    }
}
