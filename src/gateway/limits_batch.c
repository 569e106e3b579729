/* limits_batch.c - contract in limits_batch.h. */
#include "gateway/limits_batch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/limits.h"
#include "gateway/client_address.h"

/* A claim's text: "<customer length>:<customer>:<key>", each at most CATRACA_ID_MAX. */
#define LIMITS_BATCH_CLAIM_TEXT_MAX (2 * CATRACA_ID_MAX + 8)

struct queued_check {
    struct limits_redis_check check; /* its strings point into the fields below when set */
    char ip[CLIENT_ADDRESS_TEXT_MAX];
    char customer[CATRACA_ID_MAX + 1];
    char challenge[65];
    char claim[LIMITS_BATCH_CLAIM_TEXT_MAX];
    void *context;
};

struct limits_batch {
    struct limits_redis *redis;
    limits_batch_done done;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty, idle;
    struct queued_check *ring; /* queue_max slots */
    uint32_t capacity, head, count;
    bool is_busy;     /* a batch is being decided */
    bool is_stopping; /* under mutex */
    /* the batch thread's own copies */
    struct queued_check taken[LIMITS_REDIS_BATCH_MAX];
    struct limits_redis_check checks[LIMITS_REDIS_BATCH_MAX];
    enum limits_redis_outcome outcomes[LIMITS_REDIS_BATCH_MAX];
    int64_t retry_after_ms[LIMITS_REDIS_BATCH_MAX];
};

static bool copy_text(char *out, size_t size, const char *text, const char **pointer)
{
    if (text == NULL) {
        *pointer = NULL;
        return true;
    }
    size_t length = strnlen(text, size);
    if (length == size)
        return false;
    memcpy(out, text, length + 1);
    *pointer = out;
    return true;
}

/* The check's pointers, at the slot's own copies (a slot may have moved since it was set). */
static struct limits_redis_check check_of(const struct queued_check *q)
{
    struct limits_redis_check check = q->check;
    check.ip = q->check.ip != NULL ? q->ip : NULL;
    check.customer = q->check.customer != NULL ? q->customer : NULL;
    check.challenge = q->check.challenge != NULL ? q->challenge : NULL;
    check.claim = q->check.claim != NULL ? q->claim : NULL;
    return check;
}

static void *batch_main(void *argument)
{
    struct limits_batch *b = argument;
    for (;;) {
        pthread_mutex_lock(&b->mutex);
        while (b->count == 0 && !b->is_stopping)
            pthread_cond_wait(&b->not_empty, &b->mutex);
        if (b->count == 0 && b->is_stopping) {
            pthread_mutex_unlock(&b->mutex);
            return NULL;
        }
        size_t n = b->count < LIMITS_REDIS_BATCH_MAX ? b->count : LIMITS_REDIS_BATCH_MAX;
        for (size_t i = 0; i < n; i++)
            b->taken[i] = b->ring[(b->head + i) % b->capacity];
        b->head = (uint32_t)((b->head + n) % b->capacity);
        b->count -= (uint32_t)n;
        b->is_busy = true;
        bool is_stopping = b->is_stopping;
        pthread_mutex_unlock(&b->mutex);

        for (size_t i = 0; i < n; i++)
            b->checks[i] = check_of(&b->taken[i]);
        int error = is_stopping ? CATRACA_E_UNAVAILABLE
                                : limits_redis_take_many(b->redis, b->checks, n, b->outcomes,
                                                         b->retry_after_ms);
        for (size_t i = 0; i < n; i++)
            b->done(b->taken[i].context, error, error == 0 ? b->outcomes[i] : LIMITS_REDIS_ALLOWED,
                    error == 0 ? b->retry_after_ms[i] : 0);

        pthread_mutex_lock(&b->mutex);
        b->is_busy = false;
        if (b->count == 0)
            pthread_cond_broadcast(&b->idle);
        pthread_mutex_unlock(&b->mutex);
    }
}

int limits_batch_start(const char *redis_url, int timeout_ms, uint32_t queue_max,
                       limits_batch_done done, struct limits_batch **out)
{
    if (queue_max < 1 || done == NULL)
        return CATRACA_E_INVALID;
    struct limits_batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return CATRACA_E_NOMEM;
    b->ring = calloc(queue_max, sizeof(*b->ring));
    int error = b->ring == NULL ? CATRACA_E_NOMEM : 0;
    if (error == 0)
        error = limits_redis_open(redis_url, timeout_ms, &b->redis);
    if (error != 0) {
        free(b->ring);
        free(b);
        return error;
    }
    b->capacity = queue_max;
    b->done = done;
    pthread_mutex_init(&b->mutex, NULL);
    pthread_cond_init(&b->not_empty, NULL);
    pthread_cond_init(&b->idle, NULL);
    if (pthread_create(&b->thread, NULL, batch_main, b) != 0) {
        limits_redis_close(b->redis);
        free(b->ring);
        free(b);
        return CATRACA_E_NOMEM;
    }
    *out = b;
    return 0;
}

int limits_batch_submit(struct limits_batch *b, const struct limits_redis_check *check,
                        void *context)
{
    struct queued_check q = {.check = *check, .context = context};
    if (!copy_text(q.ip, sizeof(q.ip), check->ip, &q.check.ip) ||
        !copy_text(q.customer, sizeof(q.customer), check->customer, &q.check.customer) ||
        !copy_text(q.challenge, sizeof(q.challenge), check->challenge, &q.check.challenge) ||
        !copy_text(q.claim, sizeof(q.claim), check->claim, &q.check.claim))
        return CATRACA_E_INVALID;
    pthread_mutex_lock(&b->mutex);
    int error = b->is_stopping            ? CATRACA_E_UNAVAILABLE
                : b->count == b->capacity ? CATRACA_E_FULL
                                          : 0;
    if (error == 0) {
        b->ring[(b->head + b->count) % b->capacity] = q;
        b->count++;
        pthread_cond_signal(&b->not_empty);
    }
    pthread_mutex_unlock(&b->mutex);
    return error;
}

int limits_batch_drain(struct limits_batch *b, uint32_t timeout_ms)
{
    struct timespec deadline = clock_deadline_after_ms(CLOCK_REALTIME, timeout_ms);
    int error = 0;
    pthread_mutex_lock(&b->mutex);
    while ((b->count > 0 || b->is_busy) && error == 0)
        if (pthread_cond_timedwait(&b->idle, &b->mutex, &deadline) != 0)
            error = CATRACA_E_TIMEOUT;
    pthread_mutex_unlock(&b->mutex);
    return error;
}

void limits_batch_stop(struct limits_batch *b)
{
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->mutex);
    b->is_stopping = true;
    pthread_cond_signal(&b->not_empty);
    pthread_mutex_unlock(&b->mutex);
    pthread_join(b->thread, NULL); /* it answers what is queued with CATRACA_E_UNAVAILABLE */
    pthread_mutex_destroy(&b->mutex);
    pthread_cond_destroy(&b->not_empty);
    pthread_cond_destroy(&b->idle);
    limits_redis_close(b->redis);
    free(b->ring);
    free(b);
}
