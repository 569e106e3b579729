/* recent.c - contract in recent.h. */
#include "gateway/recent.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/error.h"

int recent_init(struct recent *recent, uint32_t slots_max)
{
    memset(recent, 0, sizeof(*recent));
    if (slots_max == 0)
        return CATRACA_E_INVALID;
    recent->slots = calloc(slots_max, sizeof(*recent->slots));
    if (recent->slots == NULL)
        return CATRACA_E_NOMEM;
    recent->slots_max = slots_max;
    for (int i = 0; i < RECENT_STRIPES; i++)
        pthread_mutex_init(&recent->stripes[i], NULL);
    return 0;
}

void recent_destroy(struct recent *recent)
{
    if (recent->slots == NULL)
        return;
    for (int i = 0; i < RECENT_STRIPES; i++)
        pthread_mutex_destroy(&recent->stripes[i]);
    free(recent->slots);
    recent->slots = NULL;
}

static uint32_t slot_index(const struct recent *recent, uint64_t purchase_id)
{
    uint64_t x = purchase_id * 0x9e3779b97f4a7c15ULL; /* ids are time-ordered: spread them */
    return (uint32_t)((x >> 17) % recent->slots_max);
}

static pthread_mutex_t *stripe_of(struct recent *recent, uint32_t index)
{
    return &recent->stripes[index % RECENT_STRIPES];
}

/* A row of a purchase created in an earlier batch carries its decision only: merged into the
 * entry when the entry is that purchase; otherwise the purchase is simply not remembered. */
static void record(struct recent *recent, const char *event, const struct store_purchase *row)
{
    uint32_t index = slot_index(recent, row->purchase_id);
    struct store_purchase *slot = &recent->slots[index];
    pthread_mutex_lock(stripe_of(recent, index));
    if (row->has_arrival) {
        *slot = *row;
        if (slot->event[0] == '\0')
            strncpy(slot->event, event, sizeof(slot->event) - 1);
    } else if (slot->purchase_id == row->purchase_id) {
        slot->status = row->status;
        slot->reason = row->reason;
        slot->hold_expires_at_ms = row->hold_expires_at_ms;
        slot->position = row->position;
        slot->is_refund_due = row->is_refund_due;
        slot->line = row->line;
        slot->ahead = row->ahead;
        memcpy(slot->payment_ref, row->payment_ref, sizeof(slot->payment_ref));
        slot->ticket_count = row->ticket_count;
        memcpy(slot->ticket_codes, row->ticket_codes, sizeof(slot->ticket_codes));
        slot->updated_ms = row->updated_ms;
    }
    assert(slot->purchase_id == 0 || slot->has_arrival);
    pthread_mutex_unlock(stripe_of(recent, index));
}

void recent_update(struct recent *recent, const struct worker_commit *commit)
{
    for (size_t i = 0; i < commit->purchase_count; i++)
        if (commit->purchases[i].purchase_id != 0)
            record(recent, commit->event, &commit->purchases[i]);
}

bool recent_find(struct recent *recent, uint64_t purchase_id, struct store_purchase *out)
{
    if (purchase_id == 0)
        return false;
    uint32_t index = slot_index(recent, purchase_id);
    const struct store_purchase *slot = &recent->slots[index];
    pthread_mutex_lock(stripe_of(recent, index));
    bool is_hit = slot->purchase_id == purchase_id && slot->status != ENGINE_STATUS_WAITING &&
                  slot->status != ENGINE_STATUS_NONE;
    if (is_hit)
        *out = *slot;
    pthread_mutex_unlock(stripe_of(recent, index));
    return is_hit;
}
