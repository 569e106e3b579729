/* store_wait.c - contract in store_wait.h. */
#include "gateway/store_wait.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"

struct entry {
    uint64_t purchase_id;
    void *context;
    int64_t deadline_ms; /* clock_monotonic_ms */
};

struct store_wait {
    struct store_wait_config config;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC */
    struct entry *ring;  /* config.capacity entries */
    uint32_t head, count;
    bool is_stopping;
};

/* Sleeps on wait->wake until deadline_ms (monotonic) at most; mutex held. */
static void sleep_until_locked(struct store_wait *wait, int64_t deadline_ms)
{
    struct timespec until = {.tv_sec = deadline_ms / 1000,
                             .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
    pthread_cond_timedwait(&wait->wake, &wait->mutex, &until);
}

static void *store_wait_main(void *argument)
{
    struct store_wait *wait = argument;
    pthread_mutex_lock(&wait->mutex);
    for (;;) {
        if (wait->is_stopping)
            break;
        if (wait->count == 0) {
            pthread_cond_wait(&wait->wake, &wait->mutex);
            continue;
        }
        struct entry due = wait->ring[wait->head];
        if (due.deadline_ms > clock_monotonic_ms()) {
            sleep_until_locked(wait, due.deadline_ms);
            continue;
        }
        /* Taken off the ring only after done: store_wait_count covers the read in flight. */
        pthread_mutex_unlock(&wait->mutex);
        struct store_purchase row;
        int error = CATRACA_E_TIMEOUT;
        if (wait->config.is_settled == NULL || !wait->config.is_settled(due.context)) {
            error = wait->config.store.ops->get_purchase(wait->config.store.context,
                                                         due.purchase_id, &row);
            if (error != 0 && error != CATRACA_E_NOTFOUND)
                error = CATRACA_E_UNAVAILABLE;
        }
        wait->config.done(due.context, error, error == 0 ? &row : NULL);
        pthread_mutex_lock(&wait->mutex);
        wait->head = (wait->head + 1) % wait->config.capacity;
        wait->count--;
    }
    pthread_mutex_unlock(&wait->mutex);
    return NULL;
}

int store_wait_start(const struct store_wait_config *config, struct store_wait **out)
{
    if (config->capacity == 0 || config->done == NULL || config->store.ops == NULL)
        return CATRACA_E_INVALID;
    struct store_wait *wait = calloc(1, sizeof(*wait));
    if (wait == NULL)
        return CATRACA_E_NOMEM;
    wait->config = *config;
    wait->ring = calloc(config->capacity, sizeof(*wait->ring));
    if (wait->ring == NULL)
        goto err_free_wait;
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&wait->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&wait->mutex, NULL);
    if (pthread_create(&wait->thread, NULL, store_wait_main, wait) != 0)
        goto err_destroy_sync;
    *out = wait;
    return 0;
err_destroy_sync:
    pthread_cond_destroy(&wait->wake);
    pthread_mutex_destroy(&wait->mutex);
    free(wait->ring);
err_free_wait:
    free(wait);
    return CATRACA_E_NOMEM;
}

int store_wait_submit(struct store_wait *wait, uint64_t purchase_id, void *context)
{
    int64_t deadline_ms = clock_monotonic_ms() + wait->config.wait_ms;
    pthread_mutex_lock(&wait->mutex);
    int error = 0;
    if (wait->is_stopping || wait->count == wait->config.capacity) {
        error = CATRACA_E_FULL;
    } else {
        uint32_t tail = (wait->head + wait->count) % wait->config.capacity;
        wait->ring[tail] = (struct entry){purchase_id, context, deadline_ms};
        if (wait->count++ == 0)
            pthread_cond_signal(&wait->wake);
    }
    pthread_mutex_unlock(&wait->mutex);
    return error;
}

uint32_t store_wait_count(struct store_wait *wait)
{
    pthread_mutex_lock(&wait->mutex);
    uint32_t count = wait->count;
    pthread_mutex_unlock(&wait->mutex);
    return count;
}

void store_wait_stop(struct store_wait *wait)
{
    if (wait == NULL)
        return;
    pthread_mutex_lock(&wait->mutex);
    wait->is_stopping = true;
    pthread_cond_signal(&wait->wake);
    pthread_mutex_unlock(&wait->mutex);
    pthread_join(wait->thread, NULL);
    /* The thread is gone: whatever is left never had its read. */
    for (; wait->count > 0; wait->count--) {
        wait->config.done(wait->ring[wait->head].context, CATRACA_E_UNAVAILABLE, NULL);
        wait->head = (wait->head + 1) % wait->config.capacity;
    }
    wait->config.store.ops->close(wait->config.store.context);
    pthread_cond_destroy(&wait->wake);
    pthread_mutex_destroy(&wait->mutex);
    free(wait->ring);
    free(wait);
}
