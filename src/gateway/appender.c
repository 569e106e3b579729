/* appender.c - group commit; contract in appender.h. */
#include "gateway/appender.h"

#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

struct appender {
    struct appender_config config;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    bool is_stopping;
    struct appender_request *ring; /* queue_max entries */
    uint32_t head, count;
    struct appender_stats stats;
    /* appender thread only */
    struct appender_request *taken;
    struct log_append_item *items;
};

/*
 * Copies a request without its unused record tail: a slot's pages are touched
 * only as far as the record goes (about 150 bytes for a purchase, 4 KiB at
 * most for a CREATE_EVENT), so a deep queue of purchases stays small in RSS.
 */
static void request_copy(struct appender_request *to, const struct appender_request *from)
{
    memcpy(to->event, from->event, sizeof(to->event));
    memcpy(to->record, from->record, from->record_length);
    to->record_length = from->record_length;
    to->time_ms = from->time_ms;
    to->purchase_id = from->purchase_id;
    memcpy(to->idempotency_scope, from->idempotency_scope, sizeof(to->idempotency_scope));
    memcpy(to->idempotency_key, from->idempotency_key, sizeof(to->idempotency_key));
    to->request_hash = from->request_hash;
    to->done = from->done;
    to->context = from->context;
}

int appender_submit(struct appender *a, const struct appender_request *request)
{
    if (request->record_length == 0 || request->record_length > CATRACA_COMMAND_ENCODED_MAX)
        return CATRACA_E_INVALID;
    pthread_mutex_lock(&a->mutex);
    int error = 0;
    if (a->is_stopping) {
        error = CATRACA_E_UNAVAILABLE;
    } else if (a->count == a->config.queue_max) {
        a->stats.rejected_full++;
        error = CATRACA_E_FULL;
    } else {
        uint32_t tail = (a->head + a->count) % a->config.queue_max;
        request_copy(&a->ring[tail], request);
        a->count++;
        pthread_cond_signal(&a->not_empty);
    }
    pthread_mutex_unlock(&a->mutex);
    return error;
}

static uint64_t elapsed_us(const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (uint64_t)((end.tv_sec - start->tv_sec) * 1000000 +
                      (end.tv_nsec - start->tv_nsec) / 1000);
}

/* Takes up to batch_max requests off the ring; returns how many (0 only when stopping). */
static uint32_t take_batch(struct appender *a)
{
    pthread_mutex_lock(&a->mutex);
    while (a->count == 0 && !a->is_stopping)
        pthread_cond_wait(&a->not_empty, &a->mutex);
    uint32_t taken = a->count < a->config.batch_max ? a->count : a->config.batch_max;
    for (uint32_t i = 0; i < taken; i++)
        request_copy(&a->taken[i], &a->ring[(a->head + i) % a->config.queue_max]);
    a->head = (a->head + taken) % a->config.queue_max;
    a->count -= taken;
    pthread_mutex_unlock(&a->mutex);
    return taken;
}

static void append_batch(struct appender *a, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        const struct appender_request *r = &a->taken[i];
        a->items[i] = (struct log_append_item){
            .event = r->event,
            .record = r->record,
            .record_length = r->record_length,
            .time_ms = r->time_ms,
            .purchase_id = r->purchase_id,
            .idempotency_scope = r->idempotency_scope,
            .idempotency_key = r->idempotency_key[0] ? r->idempotency_key : NULL,
            .request_hash = r->request_hash,
        };
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int error = a->config.log.ops->append(a->config.log.context, a->items, count);
    uint64_t latency_us = elapsed_us(&start);
    pthread_mutex_lock(&a->mutex);
    a->stats.batches++;
    if (error == 0)
        a->stats.appended += count;
    else
        a->stats.failed += count;
    if (count > a->stats.batch_max_seen)
        a->stats.batch_max_seen = count;
    a->stats.append_latency_us_total += latency_us;
    if (latency_us > a->stats.append_latency_us_max)
        a->stats.append_latency_us_max = latency_us;
    pthread_mutex_unlock(&a->mutex);
    if (error == 0 && a->config.after_append != NULL)
        a->config.after_append(a->config.after_append_context);
    for (uint32_t i = 0; i < count; i++)
        a->taken[i].done(a->taken[i].context, error, &a->items[i]);
}

static void *appender_main(void *argument)
{
    struct appender *a = argument;
    for (;;) {
        uint32_t count = take_batch(a);
        if (count == 0)
            break;
        append_batch(a, count);
    }
    return NULL;
}

int appender_start(const struct appender_config *config, struct appender **out)
{
    if (config->queue_max < 1 || config->batch_max < 1 || config->log.ops == NULL)
        return CATRACA_E_INVALID;
    struct appender *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CATRACA_E_NOMEM;
    a->config = *config;
    pthread_mutex_init(&a->mutex, NULL);
    pthread_cond_init(&a->not_empty, NULL);
    a->ring = calloc(config->queue_max, sizeof(*a->ring));
    a->taken = calloc(config->batch_max, sizeof(*a->taken));
    a->items = calloc(config->batch_max, sizeof(*a->items));
    if (a->ring == NULL || a->taken == NULL || a->items == NULL ||
        pthread_create(&a->thread, NULL, appender_main, a) != 0) {
        free(a->ring);
        free(a->taken);
        free(a->items);
        free(a);
        return CATRACA_E_NOMEM;
    }
    *out = a;
    return 0;
}

void appender_stop(struct appender *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mutex);
    a->is_stopping = true;
    pthread_cond_signal(&a->not_empty);
    pthread_mutex_unlock(&a->mutex);
    pthread_join(a->thread, NULL);
    a->config.log.ops->close(a->config.log.context);
    pthread_cond_destroy(&a->not_empty);
    pthread_mutex_destroy(&a->mutex);
    free(a->ring);
    free(a->taken);
    free(a->items);
    free(a);
}

void appender_stats(struct appender *a, struct appender_stats *out)
{
    pthread_mutex_lock(&a->mutex);
    *out = a->stats;
    out->pending = a->count;
    pthread_mutex_unlock(&a->mutex);
}
