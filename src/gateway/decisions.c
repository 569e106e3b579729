/* decisions.c - contract in decisions.h. */
#include "gateway/decisions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

struct decision_ring {
    char event[CATRACA_ID_MAX + 1];
    uint32_t head, count; /* head: where the next entry goes */
    struct decision entries[DECISIONS_PER_EVENT];
};

int decisions_init(struct decisions *d, uint32_t events_max)
{
    memset(d, 0, sizeof(*d));
    d->rings = calloc(events_max, sizeof(*d->rings));
    if (d->rings == NULL)
        return CATRACA_E_NOMEM;
    d->rings_max = events_max;
    pthread_mutex_init(&d->mutex, NULL);
    return 0;
}

void decisions_destroy(struct decisions *d)
{
    if (d->rings == NULL)
        return;
    for (uint32_t i = 0; i < d->ring_count; i++)
        free(d->rings[i]);
    free(d->rings);
    d->rings = NULL;
    pthread_mutex_destroy(&d->mutex);
}

/* The event's ring, created when is_create; NULL when absent or beyond rings_max. Locked. */
static struct decision_ring *ring_of(struct decisions *d, const char *event, bool is_create)
{
    for (uint32_t i = 0; i < d->ring_count; i++)
        if (strcmp(d->rings[i]->event, event) == 0)
            return d->rings[i];
    if (!is_create || d->ring_count == d->rings_max)
        return NULL;
    struct decision_ring *ring = calloc(1, sizeof(*ring));
    if (ring == NULL)
        return NULL;
    snprintf(ring->event, sizeof(ring->event), "%s", event);
    d->rings[d->ring_count++] = ring;
    return ring;
}

void decisions_record(struct decisions *d, const struct worker_commit *commit)
{
    if (commit->purchase_count == 0)
        return;
    pthread_mutex_lock(&d->mutex);
    struct decision_ring *ring = ring_of(d, commit->event, true);
    /* A batch of thousands keeps its last DECISIONS_PER_EVENT rows: the others would only be
     * written over, on the worker's thread. */
    size_t first = commit->purchase_count > DECISIONS_PER_EVENT
                       ? commit->purchase_count - DECISIONS_PER_EVENT
                       : 0;
    for (size_t i = first; ring != NULL && i < commit->purchase_count; i++) {
        const struct store_purchase *row = &commit->purchases[i];
        struct decision *e = &ring->entries[ring->head];
        memset(e, 0, sizeof(*e));
        e->purchase_id = row->purchase_id;
        e->has_facts = row->has_arrival;
        if (row->has_arrival) {
            memcpy(e->customer, row->customer, sizeof(e->customer));
            memcpy(e->category, row->category, sizeof(e->category));
            e->quantity = row->quantity;
            e->seq = row->seq;
        }
        e->status = row->status;
        e->reason = row->reason;
        e->at_ms = row->updated_ms;
        ring->head = (ring->head + 1) % DECISIONS_PER_EVENT;
        if (ring->count < DECISIONS_PER_EVENT)
            ring->count++;
    }
    pthread_mutex_unlock(&d->mutex);
}

size_t decisions_recent(struct decisions *d, const char *event, struct decision *out, size_t max)
{
    pthread_mutex_lock(&d->mutex);
    const struct decision_ring *ring = ring_of(d, event, false);
    size_t count = 0;
    for (; ring != NULL && count < ring->count && count < max; count++) {
        uint32_t at =
            (ring->head + DECISIONS_PER_EVENT - 1 - (uint32_t)count) % DECISIONS_PER_EVENT;
        out[count] = ring->entries[at];
    }
    pthread_mutex_unlock(&d->mutex);
    return count;
}

size_t decisions_complete(struct decision *out, size_t count)
{
    size_t missing = 0;
    for (size_t i = 0; i < count; i++) {
        if (out[i].has_facts)
            continue;
        /* older entries follow newer ones: the purchase's arrival, if kept, is further on */
        for (size_t j = i + 1; j < count && !out[i].has_facts; j++) {
            if (out[j].purchase_id != out[i].purchase_id || !out[j].has_facts)
                continue;
            memcpy(out[i].customer, out[j].customer, sizeof(out[i].customer));
            memcpy(out[i].category, out[j].category, sizeof(out[i].category));
            out[i].quantity = out[j].quantity;
            out[i].seq = out[j].seq;
            out[i].has_facts = true;
        }
        missing += !out[i].has_facts;
    }
    return missing;
}
