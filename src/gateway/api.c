/*
 * api.c - the API layer's life cycle (start, drain, stop), its answers and each
 * HTTP thread's read handles; contract in api.h, the other files of the layer
 * in api_internal.h.
 */
#include "gateway/api.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/logline.h"
#include "gateway/api_internal.h"

#define DRAIN_APPEND_WAIT_MS 10000
/* How soon an idle appender notices its log went or came back (/readyz, reconnects). */
#define APPEND_PROBE_INTERVAL_MS 250

static _Thread_local struct thread_handles *my_handles;

/* ---- answers ----------------------------------------------------------------------------- */

void api_reply(struct route_context *c, int status, const char *content_type, const char *body,
               size_t length, const char *const *headers)
{
    http_respond(c->request, status, content_type, body, length, headers);
    metrics_request(&c->api->metrics, c->route, status, clock_monotonic_us() - c->started_us);
}

void api_reply_json(struct route_context *c, int status, const char *json,
                    const char *const *headers)
{
    http_respond_json(c->request, status, json, headers);
    metrics_request(&c->api->metrics, c->route, status, clock_monotonic_us() - c->started_us);
}

void api_reply_error(struct route_context *c, int status, const char *code, const char *message,
                     const char *const *headers)
{
    http_respond_error(c->request, status, code, message, headers);
    metrics_request(&c->api->metrics, c->route, status, clock_monotonic_us() - c->started_us);
}

void api_reply_cjson(struct route_context *c, int status, cJSON *json, const char *const *headers)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    api_reply_json(c, status, text, headers);
    free(text);
}

/* ---- per-thread handles ------------------------------------------------------------------ */

struct thread_handles *api_handles_of(struct api *api)
{
    if (my_handles != NULL && my_handles->api == api)
        return my_handles;
    struct thread_handles *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->api = api;
    const struct api_backend *backend = &api->config.backend;
    if (backend->open_log(backend->context, false, &h->log) != 0)
        goto err_free;
    if (backend->open_store(backend->context, &h->store) != 0)
        goto err_close_log;
    if (token_cache_init(&h->tokens, API_TOKEN_CACHE_SLOTS) != 0)
        goto err_close_store;
    pthread_mutex_lock(&api->handles_mutex);
    bool has_room = api->handle_count < API_HANDLES_MAX;
    if (has_room)
        api->handles[api->handle_count++] = h;
    pthread_mutex_unlock(&api->handles_mutex);
    if (!has_room)
        goto err_destroy_tokens;
    my_handles = h;
    return h;

err_destroy_tokens:
    token_cache_destroy(&h->tokens);
err_close_store:
    h->store.ops->close(h->store.context);
err_close_log:
    h->log.ops->close(h->log.context);
err_free:
    free(h);
    return NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */

void api_on_commit(void *context, const struct worker_commit *commit)
{
    struct api *api = context;
    if (api->recent.slots != NULL)
        recent_update(&api->recent, commit); /* before the waiters: they may read it */
    waiters_notify(&api->waiters, commit);
    api_console_on_commit(api, commit);
}

/* A batch's answers wake each HTTP loop once (http_defer_wakeups). */
static void hold_wakeups(void *context)
{
    (void)context;
    http_defer_wakeups();
}

static void flush_wakeups(void *context)
{
    (void)context;
    http_flush_wakeups();
}

static void wake_worker(void *context)
{
    struct api *api = context;
    struct worker *worker = atomic_load(&api->worker);
    if (worker != NULL)
        worker_wake(worker);
}

static int open_receipts_log(void *context, struct catraca_log *out)
{
    const struct api_backend *backend = context;
    if (backend->open_log_reader != NULL)
        return backend->open_log_reader(backend->context, out);
    return backend->open_log(backend->context, false, out);
}

static int start_receipts(struct api *api)
{
    EVP_PKEY *key =
        receipt_key_load(api->config.receipt_key_path, api->config.may_create_receipt_key);
    if (key == NULL)
        return CATRACA_E_INVALID;
    struct receipts_config config = {.key = key,
                                     .events_max = api->config.events_max,
                                     .leaves_max = api->config.receipt_leaves_max > 0
                                                       ? api->config.receipt_leaves_max
                                                       : API_RECEIPT_TREE_LEAVES_MAX,
                                     .open_log = open_receipts_log,
                                     .context = &api->config.backend};
    int error = receipts_start(&config, &api->receipts);
    if (error != 0) {
        EVP_PKEY_free(key);
        return error;
    }
    uint32_t threads =
        api->config.threads < SIGNER_THREADS_MAX ? api->config.threads : SIGNER_THREADS_MAX;
    struct signer_config signer = {.key = receipts_signing_key(api->receipts),
                                   .threads = threads > 0 ? threads : 1,
                                   .queue_max = api->config.queue_max < API_SIGNER_QUEUE_MAX
                                                    ? api->config.queue_max
                                                    : API_SIGNER_QUEUE_MAX,
                                   .done = api_log_on_signed,
                                   .before_batch = http_defer_wakeups,
                                   .after_batch = http_flush_wakeups};
    return signer_start(&signer, &api->signer);
}

/*
 * Reads of purchases another gateway may have taken wait here (api_pending_park_store_wait): at
 * most API_STORE_WAITS_MAX, and no more than --max-waiters (each is a parked request waiting for
 * a commit, like a long-poll).
 */
static int start_store_wait(struct api *api)
{
    uint32_t capacity = api->config.waiters_max < API_STORE_WAITS_MAX ? api->config.waiters_max
                                                                      : API_STORE_WAITS_MAX;
    struct store_wait_config config = {.capacity = capacity,
                                       .wait_ms = API_STORE_WAIT_MS,
                                       .done = api_pending_on_store_checked,
                                       .is_settled = api_pending_is_store_wait_over};
    int error = api->config.backend.open_store(api->config.backend.context, &config.store);
    if (error != 0)
        return error;
    error = store_wait_start(&config, &api->store_wait);
    if (error != 0)
        config.store.ops->close(config.store.context);
    return error;
}

int api_start(const struct api_config *config, struct api **out)
{
    assert(api_router_validate());
    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return CATRACA_E_NOMEM;
    api->config = *config;
    api_purchases_init(api);
    pthread_mutex_init(&api->handles_mutex, NULL);
    pthread_mutex_init(&api->queue_mutex, NULL);
    pthread_cond_init(&api->queue_wake, NULL);
    metrics_init(&api->metrics);
    struct appender_config appender = {.queue_max = config->queue_max,
                                       .batch_max = config->append_batch_max,
                                       .threads = config->append_threads,
                                       .after_append = wake_worker,
                                       .after_append_context = api,
                                       .before_answers = hold_wakeups,
                                       .after_answers = flush_wakeups,
                                       .probe_interval_ms = APPEND_PROBE_INTERVAL_MS};
    if (appender.threads < 1 || appender.threads > APPENDER_THREADS_MAX)
        return CATRACA_E_INVALID;
    int error = waiters_init(&api->waiters, config->waiters_max);
    if (error == 0 && config->recent_purchases_max > 0)
        error = recent_init(&api->recent, config->recent_purchases_max);
    if (error == 0)
        error = ratelimit_init(&api->customer_limit, config->rate_keys_max,
                               config->rate_customer_per_s, config->rate_customer_burst);
    if (error == 0)
        error = ratelimit_init(&api->ip_limit, config->rate_keys_max, config->rate_ip_per_s,
                               config->rate_ip_burst);
    if (error == 0 && config->is_challenge_on)
        error = challenge_init(&api->challenge, config->challenge_max_number,
                               config->challenge_ttl_s, config->challenge_replay_max);
    if (error == 0 && config->is_challenge_on)
        challenge_share_key(&api->challenge, config->jwt_secret, config->jwt_secret_length);
    if (error == 0 && config->shared_limits_redis_url != NULL)
        error =
            limits_batch_start(config->shared_limits_redis_url, config->shared_limits_timeout_ms,
                               config->queue_max, api_pending_on_limits, &api->limits_batch);
    if (error == 0 && config->receipt_key_path != NULL)
        error = start_receipts(api);
    for (uint32_t i = 0; error == 0 && i < appender.threads; i++)
        error = config->backend.open_log(config->backend.context, true, &appender.logs[i]);
    if (error == 0 && (appender.logs[0].ops->flags & LOG_FLAG_KEYS_IN_PURCHASE_IDS))
        error = start_store_wait(api);
    if (error == 0)
        error = appender_start(&appender, &api->appender);
    if (error == 0)
        error = config->backend.open_store(config->backend.context, &api->responder_store);
    if (error == 0 && pthread_create(&api->responder, NULL, api_pending_responder_main, api) != 0)
        error = CATRACA_E_NOMEM;
    if (error == 0)
        error = api_console_start(api);
    if (error != 0) {
        logline(LOGLINE_ERROR, "api", "the API could not start", "error", catraca_strerror(error),
                NULL);
        return error; /* the process exits; nothing to unwind for a long-lived service */
    }
    *out = api;
    return 0;
}

void api_set_worker(struct api *api, struct worker *worker)
{
    atomic_store(&api->worker, worker);
}

void api_set_http(struct api *api, struct http_server *server)
{
    atomic_store(&api->http, server);
}

void api_drain(struct api *api)
{
    atomic_store(&api->is_draining, true);
    api_console_drain(api); /* its streams end now, like the responder's */
    /* Checks in flight go on to the appender (or are answered) before it drains. */
    if (api->limits_batch != NULL &&
        limits_batch_drain(api->limits_batch, DRAIN_APPEND_WAIT_MS) != 0)
        logline(LOGLINE_WARN, "api", "shared limit checks still pending after 10 s", NULL);
    if (appender_drain(api->appender, DRAIN_APPEND_WAIT_MS) != 0)
        logline(LOGLINE_WARN, "api", "log appends still pending after 10 s", NULL);
    if (api->signer != NULL && signer_drain(api->signer, DRAIN_APPEND_WAIT_MS) != 0)
        logline(LOGLINE_WARN, "api", "receipts still unsigned after 10 s", NULL);
    pthread_mutex_lock(&api->queue_mutex);
    api->drain_started_ms = clock_wall_ms();
    pthread_cond_signal(&api->queue_wake);
    pthread_mutex_unlock(&api->queue_mutex);
    for (int i = 0; i < 1000; i++) {
        struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&api->queue_mutex);
        pthread_cond_signal(&api->queue_wake);
        pthread_mutex_unlock(&api->queue_mutex);
        bool has_store_waits = api->store_wait != NULL && store_wait_count(api->store_wait) > 0;
        if (atomic_load(&api->parked_count) == 0 && !has_store_waits && i >= 1)
            break;
    }
}

void api_stop(struct api *api)
{
    limits_batch_stop(api->limits_batch); /* before the appender it submits to */
    appender_stop(api->appender);
    signer_stop(api->signer); /* after the appender: it answers what the last commit handed over */
    /* Before the responder: the reads still waiting are answered 503 through it. */
    store_wait_stop(api->store_wait);
    pthread_mutex_lock(&api->queue_mutex);
    api->is_stopping = true;
    pthread_cond_signal(&api->queue_wake);
    pthread_mutex_unlock(&api->queue_mutex);
    pthread_join(api->responder, NULL);
    api_console_stop(api);
    api->responder_store.ops->close(api->responder_store.context);
    for (uint32_t i = 0; i < api->handle_count; i++) {
        api->handles[i]->store.ops->close(api->handles[i]->store.context);
        api->handles[i]->log.ops->close(api->handles[i]->log.context);
        token_cache_destroy(&api->handles[i]->tokens);
        free(api->handles[i]);
    }
    challenge_destroy(&api->challenge);
    ratelimit_destroy(&api->customer_limit);
    ratelimit_destroy(&api->ip_limit);
    waiters_destroy(&api->waiters);
    recent_destroy(&api->recent);
    receipts_stop(api->receipts);
    free(api->heap);
    free(api);
}
