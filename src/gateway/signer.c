/* signer.c - receipts signed off the appender thread; contract in signer.h. */
#include "gateway/signer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

/* Jobs one thread takes at a time: its answers wake each HTTP loop once. */
#define SIGNER_BATCH_MAX 64

struct job {
    struct receipt receipt;
    int error; /* receipt_sign()'s */
    size_t payload_length;
    _Alignas(max_align_t) uint8_t payload[SIGNER_PAYLOAD_MAX];
};

struct signer {
    struct signer_config config;
    pthread_mutex_t mutex;
    pthread_cond_t not_empty, idle;
    struct job *ring; /* queue_max */
    uint32_t head, count, busy;
    bool is_stopping;
    pthread_t threads[SIGNER_THREADS_MAX];
    uint32_t started;
};

static void *signer_main(void *argument)
{
    struct signer *s = argument;
    struct job taken[SIGNER_BATCH_MAX]; /* ~45 KiB of the thread's stack */
    for (;;) {
        pthread_mutex_lock(&s->mutex);
        while (s->count == 0 && !s->is_stopping)
            pthread_cond_wait(&s->not_empty, &s->mutex);
        uint32_t n = 0;
        while (n < SIGNER_BATCH_MAX && s->count > 0) {
            taken[n++] = s->ring[s->head];
            s->head = (s->head + 1) % s->config.queue_max;
            s->count--;
        }
        s->busy += n > 0;
        bool is_done = n == 0 && s->is_stopping;
        pthread_mutex_unlock(&s->mutex);
        if (is_done)
            break;
        for (uint32_t i = 0; i < n; i++)
            taken[i].error = receipt_sign(&taken[i].receipt, s->config.key);
        if (s->config.before_batch != NULL)
            s->config.before_batch();
        for (uint32_t i = 0; i < n; i++)
            s->config.done(taken[i].payload, &taken[i].receipt, taken[i].error);
        if (s->config.after_batch != NULL)
            s->config.after_batch();
        pthread_mutex_lock(&s->mutex);
        s->busy--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mutex);
    }
    return NULL;
}

int signer_start(const struct signer_config *config, struct signer **out)
{
    if (config->key == NULL || config->done == NULL || config->threads < 1 ||
        config->threads > SIGNER_THREADS_MAX || config->queue_max < 1)
        return CATRACA_E_INVALID;
    struct signer *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CATRACA_E_NOMEM;
    s->config = *config;
    s->ring = calloc(config->queue_max, sizeof(*s->ring));
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->not_empty, NULL);
    pthread_cond_init(&s->idle, NULL);
    for (uint32_t i = 0; s->ring != NULL && i < config->threads; i++) {
        if (pthread_create(&s->threads[i], NULL, signer_main, s) != 0)
            break;
        s->started++;
    }
    if (s->ring == NULL || s->started < config->threads) {
        signer_stop(s);
        return CATRACA_E_NOMEM;
    }
    *out = s;
    return 0;
}

int signer_submit(struct signer *s, const struct receipt *receipt, const void *payload,
                  size_t payload_length)
{
    if (payload_length > SIGNER_PAYLOAD_MAX)
        return CATRACA_E_INVALID;
    pthread_mutex_lock(&s->mutex);
    int error = 0;
    if (s->is_stopping) {
        error = CATRACA_E_UNAVAILABLE;
    } else if (s->count == s->config.queue_max) {
        error = CATRACA_E_FULL;
    } else {
        struct job *job = &s->ring[(s->head + s->count) % s->config.queue_max];
        job->receipt = *receipt;
        job->payload_length = payload_length;
        memcpy(job->payload, payload, payload_length);
        s->count++;
        pthread_cond_signal(&s->not_empty);
    }
    pthread_mutex_unlock(&s->mutex);
    return error;
}

int signer_drain(struct signer *s, uint32_t timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    int error = 0;
    pthread_mutex_lock(&s->mutex);
    while ((s->count > 0 || s->busy > 0) && error == 0)
        if (pthread_cond_timedwait(&s->idle, &s->mutex, &deadline) != 0)
            error = CATRACA_E_TIMEOUT;
    pthread_mutex_unlock(&s->mutex);
    return error;
}

void signer_stop(struct signer *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mutex);
    s->is_stopping = true; /* the threads empty the queue before they leave */
    pthread_cond_broadcast(&s->not_empty);
    pthread_mutex_unlock(&s->mutex);
    for (uint32_t i = 0; i < s->started; i++)
        pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->not_empty);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mutex);
    free(s->ring);
    free(s);
}
