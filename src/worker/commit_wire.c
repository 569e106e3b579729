/* commit_wire.c - contract in commit_wire.h. */
#include "worker/commit_wire.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/wire.h"

/* The smallest encodings, which bound the row counts a message of a given length may claim. */
#define PURCHASE_MIN (8 + 1 + 1 + 1 + 1 + 4 + 16 + 8 + 1 + 1 + 8 + 4 + 1 + 1 + 29 + 1 + 8)
#define ANSWER_MIN (1 + 16 + 8 + 4)

size_t commit_wire_size_max(const struct worker_commit *commit)
{
    return 1 + 1 + CATRACA_ID_MAX + 4 + commit->purchase_count * COMMIT_WIRE_PURCHASE_MAX + 4 +
           commit->answer_count * COMMIT_WIRE_ANSWER_MAX;
}

static void put_seq(struct wire_writer *w, struct log_seq seq)
{
    wire_put_uint(w, seq.major, 8);
    wire_put_uint(w, seq.minor, 8);
}

static struct log_seq get_seq(struct wire_reader *r)
{
    struct log_seq seq;
    seq.major = wire_get_uint(r, 8);
    seq.minor = wire_get_uint(r, 8);
    return seq;
}

static void put_purchase(struct wire_writer *w, const struct store_purchase *p)
{
    wire_put_uint(w, p->purchase_id, 8);
    wire_put_uint(w, p->has_arrival, 1);
    wire_put_string(w, p->event, sizeof(p->event), CATRACA_ID_MAX);
    wire_put_string(w, p->customer, sizeof(p->customer), CATRACA_ID_MAX);
    wire_put_string(w, p->category, sizeof(p->category), CATRACA_ID_MAX);
    wire_put_uint(w, p->quantity, 4);
    put_seq(w, p->seq);
    wire_put_uint(w, (uint64_t)p->created_ms, 8);
    wire_put_uint(w, p->status, 1);
    wire_put_uint(w, p->reason, 1);
    wire_put_uint(w, (uint64_t)p->hold_expires_at_ms, 8);
    wire_put_uint(w, p->position, 4);
    wire_put_uint(w, p->is_refund_due, 1);
    wire_put_string(w, p->payment_ref, sizeof(p->payment_ref), CATRACA_ID_MAX);
    wire_put_uint(w, p->ahead, 4);
    wire_put_uint(w, p->line.is_known, 1);
    wire_put_uint(w, p->line.available, 4);
    wire_put_uint(w, p->line.held, 4);
    wire_put_uint(w, p->line.sold, 4);
    wire_put_uint(w, p->line.returned, 4);
    wire_put_uint(w, (uint64_t)p->line.hold_ms, 8);
    if (p->ticket_count > CATRACA_QUANTITY_MAX && w->error == 0)
        w->error = CATRACA_E_INVALID;
    wire_put_uint(w, p->ticket_count, 1);
    for (uint32_t i = 0; i < p->ticket_count && i < CATRACA_QUANTITY_MAX; i++)
        wire_put_uint(w, p->ticket_codes[i], 8);
    wire_put_uint(w, (uint64_t)p->updated_ms, 8);
}

static void get_purchase(struct wire_reader *r, struct store_purchase *p)
{
    memset(p, 0, sizeof(*p));
    p->purchase_id = wire_get_uint(r, 8);
    uint64_t has_arrival = wire_get_uint(r, 1);
    wire_check(r, has_arrival <= 1);
    p->has_arrival = has_arrival == 1;
    wire_get_string(r, p->event, CATRACA_ID_MAX);
    wire_get_string(r, p->customer, CATRACA_ID_MAX);
    wire_get_string(r, p->category, CATRACA_ID_MAX);
    p->quantity = (uint32_t)wire_get_uint(r, 4);
    p->seq = get_seq(r);
    p->created_ms = (int64_t)wire_get_uint(r, 8);
    p->status = (uint8_t)wire_get_uint(r, 1);
    p->reason = (uint8_t)wire_get_uint(r, 1);
    p->hold_expires_at_ms = (int64_t)wire_get_uint(r, 8);
    p->position = (uint32_t)wire_get_uint(r, 4);
    uint64_t is_refund_due = wire_get_uint(r, 1);
    wire_check(r, is_refund_due <= 1);
    p->is_refund_due = is_refund_due == 1;
    wire_get_string(r, p->payment_ref, CATRACA_ID_MAX);
    p->ahead = (uint32_t)wire_get_uint(r, 4);
    uint64_t is_known = wire_get_uint(r, 1);
    wire_check(r, is_known <= 1);
    p->line.is_known = is_known == 1;
    p->line.available = (uint32_t)wire_get_uint(r, 4);
    p->line.held = (uint32_t)wire_get_uint(r, 4);
    p->line.sold = (uint32_t)wire_get_uint(r, 4);
    p->line.returned = (uint32_t)wire_get_uint(r, 4);
    p->line.hold_ms = (int64_t)wire_get_uint(r, 8);
    p->ticket_count = (uint8_t)wire_get_uint(r, 1);
    wire_check(r, p->ticket_count <= CATRACA_QUANTITY_MAX);
    for (uint32_t i = 0; r->error == 0 && i < p->ticket_count; i++)
        p->ticket_codes[i] = wire_get_uint(r, 8);
    p->updated_ms = (int64_t)wire_get_uint(r, 8);
}

static void put_answer(struct wire_writer *w, const struct store_answer *a)
{
    wire_put_string(w, a->event, sizeof(a->event), CATRACA_ID_MAX);
    put_seq(w, a->seq);
    wire_put_uint(w, a->purchase_id, 8);
    wire_put_uint(w, a->type, 1);
    wire_put_uint(w, a->result, 1);
    wire_put_uint(w, a->reason, 1);
    wire_put_uint(w, a->status, 1);
}

static void get_answer(struct wire_reader *r, struct store_answer *a)
{
    memset(a, 0, sizeof(*a));
    wire_get_string(r, a->event, CATRACA_ID_MAX);
    a->seq = get_seq(r);
    a->purchase_id = wire_get_uint(r, 8);
    a->type = (uint8_t)wire_get_uint(r, 1);
    a->result = (uint8_t)wire_get_uint(r, 1);
    a->reason = (uint8_t)wire_get_uint(r, 1);
    a->status = (uint8_t)wire_get_uint(r, 1);
}

int commit_wire_encode(const struct worker_commit *commit, uint8_t *buffer, size_t capacity,
                       size_t *length)
{
    struct wire_writer w = {.buffer = buffer, .capacity = capacity};
    wire_put_uint(&w, COMMIT_WIRE_VERSION, 1);
    wire_put_string(&w, commit->event, CATRACA_ID_MAX + 1, CATRACA_ID_MAX);
    if (commit->purchase_count > UINT32_MAX || commit->answer_count > UINT32_MAX)
        return CATRACA_E_INVALID;
    wire_put_uint(&w, commit->purchase_count, 4);
    for (size_t i = 0; i < commit->purchase_count; i++)
        put_purchase(&w, &commit->purchases[i]);
    wire_put_uint(&w, commit->answer_count, 4);
    for (size_t i = 0; i < commit->answer_count; i++)
        put_answer(&w, &commit->answers[i]);
    *length = w.length;
    return w.error;
}

int commit_wire_decode(const uint8_t *message, size_t length,
                       void (*visit)(void *context, const struct worker_commit *commit),
                       void *context)
{
    struct wire_reader r = {.buffer = message, .length = length};
    char event[CATRACA_ID_MAX + 1];
    if (wire_get_uint(&r, 1) != COMMIT_WIRE_VERSION)
        return r.error != 0 ? r.error : CATRACA_E_VERSION;
    wire_get_string(&r, event, CATRACA_ID_MAX);
    size_t purchase_count = (size_t)wire_get_uint(&r, 4);
    /* A count the remaining bytes cannot hold is corrupt: never allocate for it. */
    wire_check(&r, purchase_count <= (length - r.offset) / PURCHASE_MIN);
    struct store_purchase *purchases =
        r.error == 0 && purchase_count > 0 ? malloc(purchase_count * sizeof(*purchases)) : NULL;
    if (purchase_count > 0 && r.error == 0 && purchases == NULL)
        return CATRACA_E_NOMEM;
    for (size_t i = 0; r.error == 0 && i < purchase_count; i++)
        get_purchase(&r, &purchases[i]);
    size_t answer_count = (size_t)wire_get_uint(&r, 4);
    wire_check(&r, answer_count <= (length - r.offset) / ANSWER_MIN);
    struct store_answer *answers =
        r.error == 0 && answer_count > 0 ? malloc(answer_count * sizeof(*answers)) : NULL;
    int error = answer_count > 0 && r.error == 0 && answers == NULL ? CATRACA_E_NOMEM : 0;
    for (size_t i = 0; error == 0 && r.error == 0 && i < answer_count; i++)
        get_answer(&r, &answers[i]);
    wire_check(&r, r.offset == length);
    if (error == 0)
        error = r.error;
    if (error == 0) {
        struct worker_commit commit = {.event = event,
                                       .purchases = purchases,
                                       .purchase_count = purchase_count,
                                       .answers = answers,
                                       .answer_count = answer_count};
        visit(context, &commit);
    }
    free(purchases);
    free(answers);
    return error;
}
