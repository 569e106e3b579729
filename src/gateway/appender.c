/* appender.c - group commit; contract in appender.h. */
#include "gateway/appender.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

/*
 * A queue slot keeps small records inline; every command but CREATE_EVENT
 * (rare, admin only) fits. A deep queue costs its depth in small slots, not
 * in 4 KiB worst cases, and the hot path never allocates.
 */
#define SLOT_RECORD_INLINE 256

struct slot {
    char event[CATRACA_ID_MAX + 1];
    char idempotency_scope[CATRACA_ID_MAX + 1];
    char idempotency_key[CATRACA_ID_MAX + 1];
    int64_t time_ms;
    uint64_t purchase_id;
    uint64_t request_hash;
    void (*done)(void *context, int error, const struct log_append_item *item);
    void *context;
    size_t record_length;
    uint8_t *record_heap; /* records longer than SLOT_RECORD_INLINE */
    uint8_t record_inline[SLOT_RECORD_INLINE];
};

/* One appender thread's own state. */
struct appender_thread {
    struct appender *appender;
    struct catraca_log log;
    pthread_t thread;
    bool is_started;
    atomic_bool is_healthy; /* the last append or probe reached the log */
    struct slot *taken;     /* batch_max */
    struct log_append_item *items;
};

struct appender {
    struct appender_config config;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty;
    bool is_stopping;
    bool is_refusing;   /* draining: no new requests */
    uint32_t appending; /* batches between take and answer */
    pthread_cond_t idle;
    struct slot *ring; /* queue_max slots */
    uint32_t head, count;
    struct appender_stats stats;
    struct appender_thread threads[APPENDER_THREADS_MAX];
};

static const uint8_t *slot_record(const struct slot *slot)
{
    return slot->record_heap ? slot->record_heap : slot->record_inline;
}

int appender_submit(struct appender *a, const struct appender_request *request)
{
    if (request->record_length == 0 || request->record_length > CATRACA_COMMAND_ENCODED_MAX)
        return CATRACA_E_INVALID;
    uint8_t *heap = NULL;
    if (request->record_length > SLOT_RECORD_INLINE) {
        heap = malloc(request->record_length);
        if (heap == NULL)
            return CATRACA_E_NOMEM;
        memcpy(heap, request->record, request->record_length);
    }
    pthread_mutex_lock(&a->mutex);
    int error = 0;
    if (a->is_stopping || a->is_refusing) {
        error = CATRACA_E_UNAVAILABLE;
    } else if (a->count == a->config.queue_max) {
        a->stats.rejected_full++;
        error = CATRACA_E_FULL;
    } else {
        struct slot *slot = &a->ring[(a->head + a->count) % a->config.queue_max];
        memcpy(slot->event, request->event, sizeof(slot->event));
        memcpy(slot->idempotency_scope, request->idempotency_scope,
               sizeof(slot->idempotency_scope));
        memcpy(slot->idempotency_key, request->idempotency_key, sizeof(slot->idempotency_key));
        slot->time_ms = request->time_ms;
        slot->purchase_id = request->purchase_id;
        slot->request_hash = request->request_hash;
        slot->done = request->done;
        slot->context = request->context;
        slot->record_length = request->record_length;
        slot->record_heap = heap;
        if (heap == NULL)
            memcpy(slot->record_inline, request->record, request->record_length);
        heap = NULL;
        a->count++;
        pthread_cond_signal(&a->not_empty);
    }
    pthread_mutex_unlock(&a->mutex);
    free(heap);
    return error;
}

static uint64_t elapsed_us(const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (uint64_t)((end.tv_sec - start->tv_sec) * 1000000 +
                      (end.tv_nsec - start->tv_nsec) / 1000);
}

/* An append's or a probe's outcome: only "no answer" makes a thread unhealthy. */
static void note_health(struct appender_thread *t, int error)
{
    atomic_store(&t->is_healthy, error != CATRACA_E_UNAVAILABLE && error != CATRACA_E_IO);
}

/* An idle thread's question to its log (it also reconnects a connection the server closed). */
static void probe(struct appender_thread *t)
{
    struct log_seq seq;
    note_health(t, t->log.ops->last_seq(t->log.context, "-", &seq));
}

static void deadline_after_ms(struct timespec *deadline, uint32_t ms)
{
    clock_gettime(CLOCK_REALTIME, deadline);
    deadline->tv_sec += ms / 1000;
    deadline->tv_nsec += (long)(ms % 1000) * 1000000;
    if (deadline->tv_nsec >= 1000000000) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000;
    }
}

/*
 * Takes up to batch_max requests off the ring; returns how many (0 only when
 * stopping). Idle for probe_interval_ms, the thread probes its log meanwhile.
 */
static uint32_t take_batch(struct appender_thread *t, struct slot *out)
{
    struct appender *a = t->appender;
    pthread_mutex_lock(&a->mutex);
    while (a->count == 0 && !a->is_stopping) {
        if (a->config.probe_interval_ms == 0) {
            pthread_cond_wait(&a->not_empty, &a->mutex);
            continue;
        }
        struct timespec deadline;
        deadline_after_ms(&deadline, a->config.probe_interval_ms);
        if (pthread_cond_timedwait(&a->not_empty, &a->mutex, &deadline) == 0 || a->count > 0 ||
            a->is_stopping)
            continue;
        pthread_mutex_unlock(&a->mutex); /* the probe waits for the log: not under the lock */
        probe(t);
        pthread_mutex_lock(&a->mutex);
    }
    uint32_t taken = a->count < a->config.batch_max ? a->count : a->config.batch_max;
    for (uint32_t i = 0; i < taken; i++) {
        const struct slot *slot = &a->ring[(a->head + i) % a->config.queue_max];
        /* Copy only the used part of the inline record. */
        memcpy(&out[i], slot, offsetof(struct slot, record_inline));
        if (slot->record_heap == NULL)
            memcpy(out[i].record_inline, slot->record_inline, slot->record_length);
    }
    a->head = (a->head + taken) % a->config.queue_max;
    a->count -= taken;
    a->appending += taken > 0;
    pthread_mutex_unlock(&a->mutex);
    return taken;
}

static void append_batch(struct appender_thread *t, uint32_t count)
{
    struct appender *a = t->appender;
    for (uint32_t i = 0; i < count; i++) {
        const struct slot *s = &t->taken[i];
        t->items[i] = (struct log_append_item){
            .event = s->event,
            .record = slot_record(s),
            .record_length = s->record_length,
            .time_ms = s->time_ms,
            .purchase_id = s->purchase_id,
            .idempotency_scope = s->idempotency_scope,
            .idempotency_key = s->idempotency_key[0] ? s->idempotency_key : NULL,
            .request_hash = s->request_hash,
        };
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int error = t->log.ops->append(t->log.context, t->items, count);
    uint64_t latency_us = elapsed_us(&start);
    note_health(t, error);
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
    if (a->config.before_answers != NULL)
        a->config.before_answers(a->config.after_append_context);
    for (uint32_t i = 0; i < count; i++) {
        t->taken[i].done(t->taken[i].context, error, &t->items[i]);
        free(t->taken[i].record_heap);
    }
    if (a->config.after_answers != NULL)
        a->config.after_answers(a->config.after_append_context);
}

static void *appender_main(void *argument)
{
    struct appender_thread *t = argument;
    struct appender *a = t->appender;
    for (;;) {
        uint32_t count = take_batch(t, t->taken);
        if (count == 0)
            break;
        append_batch(t, count);
        pthread_mutex_lock(&a->mutex);
        a->appending--;
        pthread_cond_broadcast(&a->idle);
        pthread_mutex_unlock(&a->mutex);
    }
    return NULL;
}

/* Joins the started threads, closes every log, frees (a failed start, or a stop). */
static void appender_free(struct appender *a)
{
    pthread_mutex_lock(&a->mutex);
    a->is_stopping = true;
    pthread_cond_broadcast(&a->not_empty);
    pthread_mutex_unlock(&a->mutex);
    for (uint32_t i = 0; i < a->config.threads; i++) {
        struct appender_thread *t = &a->threads[i];
        if (t->is_started)
            pthread_join(t->thread, NULL);
        t->log.ops->close(t->log.context);
        free(t->taken);
        free(t->items);
    }
    pthread_cond_destroy(&a->not_empty);
    pthread_cond_destroy(&a->idle);
    pthread_mutex_destroy(&a->mutex);
    free(a->ring);
    free(a);
}

int appender_start(const struct appender_config *config, struct appender **out)
{
    if (config->queue_max < 1 || config->batch_max < 1 || config->threads < 1 ||
        config->threads > APPENDER_THREADS_MAX)
        return CATRACA_E_INVALID;
    for (uint32_t i = 0; i < config->threads; i++)
        if (config->logs[i].ops == NULL)
            return CATRACA_E_INVALID;
    struct appender *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return CATRACA_E_NOMEM;
    a->config = *config;
    pthread_mutex_init(&a->mutex, NULL);
    pthread_cond_init(&a->not_empty, NULL);
    pthread_cond_init(&a->idle, NULL);
    a->ring = calloc(config->queue_max, sizeof(*a->ring));
    bool is_ok = a->ring != NULL;
    for (uint32_t i = 0; i < config->threads; i++) {
        struct appender_thread *t = &a->threads[i];
        t->appender = a;
        t->log = config->logs[i];
        atomic_init(&t->is_healthy, true);
        t->taken = calloc(config->batch_max, sizeof(*t->taken));
        t->items = calloc(config->batch_max, sizeof(*t->items));
        is_ok = is_ok && t->taken != NULL && t->items != NULL;
    }
    for (uint32_t i = 0; is_ok && i < config->threads; i++) {
        struct appender_thread *t = &a->threads[i];
        t->is_started = pthread_create(&t->thread, NULL, appender_main, t) == 0;
        is_ok = t->is_started;
    }
    if (!is_ok) {
        appender_free(a);
        return CATRACA_E_NOMEM;
    }
    *out = a;
    return 0;
}

void appender_stop(struct appender *a)
{
    if (a != NULL)
        appender_free(a);
}

int appender_drain(struct appender *a, uint32_t timeout_ms)
{
    struct timespec deadline;
    deadline_after_ms(&deadline, timeout_ms);
    pthread_mutex_lock(&a->mutex);
    a->is_refusing = true;
    int error = 0;
    while ((a->count > 0 || a->appending > 0) && error == 0)
        if (pthread_cond_timedwait(&a->idle, &a->mutex, &deadline) != 0)
            error = CATRACA_E_TIMEOUT;
    pthread_mutex_unlock(&a->mutex);
    return error;
}

void appender_stats(struct appender *a, struct appender_stats *out)
{
    pthread_mutex_lock(&a->mutex);
    *out = a->stats;
    out->pending = a->count;
    pthread_mutex_unlock(&a->mutex);
}

bool appender_is_healthy(struct appender *a)
{
    for (uint32_t i = 0; i < a->config.threads; i++)
        if (!atomic_load(&a->threads[i].is_healthy))
            return false;
    return true;
}
