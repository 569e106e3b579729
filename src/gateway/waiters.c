/* waiters.c - contract in waiters.h. */
#include "gateway/waiters.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint64_t answer_key(const char *event, struct log_seq seq)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over the event id */
    for (const char *c = event; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ULL;
    return mix(h ^ mix(seq.major) ^ (seq.minor << 1));
}

static uint32_t bucket_of(const struct waiters *w, const struct waiter *waiter)
{
    uint64_t key = waiter->purchase_id != 0 ? mix(waiter->purchase_id)
                                            : answer_key(waiter->event, waiter->seq);
    return (uint32_t)(key % w->bucket_count);
}

int waiters_init(struct waiters *w, uint32_t count_max)
{
    memset(w, 0, sizeof(*w));
    w->bucket_count = count_max < 64 ? 64 : count_max;
    w->count_max = count_max;
    w->buckets = calloc(w->bucket_count, sizeof(*w->buckets));
    if (w->buckets == NULL)
        return CATRACA_E_NOMEM;
    pthread_mutex_init(&w->mutex, NULL);
    return 0;
}

void waiters_destroy(struct waiters *w)
{
    free(w->buckets);
    pthread_mutex_destroy(&w->mutex);
}

int waiters_add(struct waiters *w, struct waiter *waiter)
{
    pthread_mutex_lock(&w->mutex);
    int error = 0;
    if (w->count == w->count_max) {
        error = CATRACA_E_FULL;
    } else {
        waiter->bucket = bucket_of(w, waiter);
        waiter->prev = NULL;
        waiter->next = w->buckets[waiter->bucket];
        if (waiter->next != NULL)
            waiter->next->prev = waiter;
        w->buckets[waiter->bucket] = waiter;
        waiter->is_registered = true;
        w->count++;
    }
    pthread_mutex_unlock(&w->mutex);
    return error;
}

static void unlink_waiter(struct waiters *w, struct waiter *waiter)
{
    if (waiter->prev != NULL)
        waiter->prev->next = waiter->next;
    else
        w->buckets[waiter->bucket] = waiter->next;
    if (waiter->next != NULL)
        waiter->next->prev = waiter->prev;
    waiter->is_registered = false;
    w->count--;
}

bool waiters_remove(struct waiters *w, struct waiter *waiter)
{
    pthread_mutex_lock(&w->mutex);
    bool was_registered = waiter->is_registered;
    if (was_registered)
        unlink_waiter(w, waiter);
    pthread_mutex_unlock(&w->mutex);
    return was_registered;
}

uint32_t waiters_count(struct waiters *w)
{
    pthread_mutex_lock(&w->mutex);
    uint32_t count = w->count;
    pthread_mutex_unlock(&w->mutex);
    return count;
}

int waiters_reserve(struct waiters *w)
{
    pthread_mutex_lock(&w->mutex);
    int error = w->count == w->count_max ? CATRACA_E_FULL : 0;
    if (error == 0)
        w->count++;
    pthread_mutex_unlock(&w->mutex);
    return error;
}

void waiters_unreserve(struct waiters *w)
{
    pthread_mutex_lock(&w->mutex);
    w->count--;
    pthread_mutex_unlock(&w->mutex);
}

static void notify_purchase(struct waiters *w, const struct store_purchase *p)
{
    uint32_t bucket = (uint32_t)(mix(p->purchase_id) % w->bucket_count);
    for (struct waiter *waiter = w->buckets[bucket], *next; waiter != NULL; waiter = next) {
        next = waiter->next;
        if (waiter->purchase_id != p->purchase_id || waiter->on_purchase == NULL)
            continue;
        if (!waiter->on_purchase(waiter, p))
            unlink_waiter(w, waiter);
    }
}

static const struct store_purchase *find_row(const struct worker_commit *commit, uint64_t id)
{
    for (size_t i = 0; i < commit->purchase_count; i++)
        if (commit->purchases[i].purchase_id == id)
            return &commit->purchases[i];
    return NULL;
}

static void notify_answer(struct waiters *w, const struct worker_commit *commit,
                          const struct store_answer *a)
{
    uint32_t bucket = (uint32_t)(answer_key(a->event, a->seq) % w->bucket_count);
    for (struct waiter *waiter = w->buckets[bucket], *next; waiter != NULL; waiter = next) {
        next = waiter->next;
        if (waiter->purchase_id != 0 || log_seq_compare(waiter->seq, a->seq) != 0 ||
            strcmp(waiter->event, a->event) != 0 || waiter->on_answer == NULL)
            continue;
        waiter->on_answer(waiter, a, a->purchase_id ? find_row(commit, a->purchase_id) : NULL);
        unlink_waiter(w, waiter);
    }
}

void waiters_notify(struct waiters *w, const struct worker_commit *commit)
{
    pthread_mutex_lock(&w->mutex);
    if (w->count > 0) {
        for (size_t i = 0; i < commit->purchase_count; i++)
            notify_purchase(w, &commit->purchases[i]);
        for (size_t i = 0; i < commit->answer_count; i++)
            notify_answer(w, commit, &commit->answers[i]);
    }
    pthread_mutex_unlock(&w->mutex);
}
