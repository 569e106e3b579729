/* api.c - API.md on top of http.h; contract in api.h. */
#include "gateway/api.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/error.h"
#include "gateway/api_json.h"
#include "gateway/appender.h"
#include "gateway/challenge.h"
#include "gateway/jwt.h"
#include "gateway/metrics.h"
#include "gateway/ratelimit.h"
#include "gateway/waiters.h"

#define ANSWER_TIMEOUT_MS 30000  /* a decision not committed by then: 503, retry with GET */
#define STREAM_TIMEOUT_MS 600000 /* an SSE stream lasts at most this long */
#define LONG_POLL_MAX_S 60
#define EVENTS_PAGE_MAX 4096
#define HANDLES_MAX 256

enum pending_kind {
    PENDING_PURCHASE,  /* waits for the append: 202 / 200 / 422 */
    PENDING_ANSWER,    /* waits for the append, then the engine's answer */
    PENDING_LONG_POLL, /* waits for a purchase's change */
    PENDING_STREAM,    /* SSE: every change until a final status */
};

/* A parked request. Only the responder thread answers it; others fill its inbox. */
struct pending {
    struct api *api;
    struct http_request *request;
    enum pending_kind kind;
    enum metrics_route route;
    int64_t started_us;
    atomic_int references;
    struct waiter waiter;
    /* request facts */
    uint8_t command_type;
    char event[CATRACA_ID_MAX + 1];
    uint64_t purchase_id;
    char customer[CATRACA_ID_MAX + 1];
    char category[CATRACA_ID_MAX + 1];
    uint32_t quantity;
    int64_t wait_ms; /* long-polls and streams: armed by the responder on first sight */
    /* inbox: under api->queue_mutex */
    bool is_queued;
    struct pending *queue_next;
    bool has_append, has_row, has_answer;
    int append_error;
    struct log_append_item append;
    struct store_purchase row;
    struct store_answer answer;
    /* responder thread only */
    bool is_done;
    bool is_registered;
    int64_t deadline_ms;
    uint32_t heap_index;
};

#define KNOWN_EVENTS_MAX 64

struct thread_handles {
    struct api *api;
    struct catraca_log log;
    struct catraca_store store;
    /* Events seen by this thread: they are never deleted and their limits never change,
     * so purchases skip a store read per request. */
    struct {
        char id[CATRACA_ID_MAX + 1];
        uint32_t per_customer_limit;
    } known[KNOWN_EVENTS_MAX];
    uint32_t known_count;
};

struct api {
    struct api_config config;
    struct appender *appender;
    /* set after start, read by other threads */
    _Atomic(struct worker *) worker;
    _Atomic(struct http_server *) http;
    struct waiters waiters;
    struct ratelimit customer_limit, ip_limit;
    struct challenge challenge;
    struct metrics metrics;
    atomic_uint_fast64_t purchase_counter;

    pthread_mutex_t handles_mutex;
    struct thread_handles *handles[HANDLES_MAX];
    uint32_t handle_count;

    /* responder */
    pthread_t responder;
    pthread_mutex_t queue_mutex;
    pthread_cond_t queue_wake;
    struct pending *queue_head, *queue_tail;
    bool is_stopping;
    struct pending **heap; /* by deadline; responder thread only */
    uint32_t heap_count, heap_capacity;
    struct catraca_store responder_store;
    /* stopping (api_drain): handlers refuse, the responder answers what is parked */
    atomic_bool is_draining;
    int64_t drain_started_ms; /* under queue_mutex */
    bool is_rekeyed;          /* responder only */
    atomic_uint parked_count; /* heap + queue, published by the responder */
};

#define DRAIN_ANSWER_GRACE_MS 5000

static _Thread_local struct thread_handles *my_handles;

/* ---- small helpers ----------------------------------------------------------------------- */

static void reply_json(struct api *api, struct http_request *request, enum metrics_route route,
                       int64_t started_us, int status, const char *json, const char *const *headers)
{
    http_respond_json(request, status, json, headers);
    metrics_request(&api->metrics, route, status, clock_monotonic_us() - started_us);
}

static void reply_error(struct api *api, struct http_request *request, enum metrics_route route,
                        int64_t started_us, int status, const char *code, const char *message,
                        const char *const *headers)
{
    http_respond_error(request, status, code, message, headers);
    metrics_request(&api->metrics, route, status, clock_monotonic_us() - started_us);
}

static void reply_cjson(struct api *api, struct http_request *request, enum metrics_route route,
                        int64_t started_us, int status, cJSON *json, const char *const *headers)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        reply_error(api, request, route, started_us, 503, "unavailable", "out of memory", NULL);
        return;
    }
    reply_json(api, request, route, started_us, status, text, headers);
    free(text);
}

/* The calling HTTP thread's read handles, opened on first use. */
static struct thread_handles *handles_of(struct api *api)
{
    if (my_handles != NULL && my_handles->api == api)
        return my_handles;
    struct thread_handles *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->api = api;
    const struct api_backend *backend = &api->config.backend;
    if (backend->open_log(backend->context, false, &h->log) != 0) {
        free(h);
        return NULL;
    }
    if (backend->open_store(backend->context, &h->store) != 0) {
        h->log.ops->close(h->log.context);
        free(h);
        return NULL;
    }
    pthread_mutex_lock(&api->handles_mutex);
    bool has_room = api->handle_count < HANDLES_MAX;
    if (has_room)
        api->handles[api->handle_count++] = h;
    pthread_mutex_unlock(&api->handles_mutex);
    if (!has_room) {
        h->store.ops->close(h->store.context);
        h->log.ops->close(h->log.context);
        free(h);
        return NULL;
    }
    my_handles = h;
    return h;
}

/* ---- authentication and limits ----------------------------------------------------------- */

struct caller {
    struct jwt_claims claims;
};

/* Verifies the bearer token; answers 401 itself and returns false when it is not valid. */
static bool authenticate(struct api *api, struct http_request *request, enum metrics_route route,
                         int64_t started_us, struct caller *caller)
{
    const char *header = http_header(request, "Authorization");
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0) {
        reply_error(api, request, route, started_us, 401, "unauthorized", "missing bearer token",
                    NULL);
        return false;
    }
    int error = jwt_verify(api->config.jwt_secret, api->config.jwt_secret_length, header + 7,
                           clock_wall_ms() / 1000, &caller->claims);
    if (error != 0) {
        metrics_count(&api->metrics, METRICS_AUTH_FAILURES);
        reply_error(api, request, route, started_us, 401, "unauthorized", jwt_strerror(error),
                    NULL);
        return false;
    }
    return true;
}

static bool require_role(struct api *api, struct http_request *request, enum metrics_route route,
                         int64_t started_us, const struct caller *caller, int role_a, int role_b)
{
    if (caller->claims.role == role_a || caller->claims.role == role_b)
        return true;
    reply_error(api, request, route, started_us, 403, "forbidden",
                "this token's role may not do that", NULL);
    return false;
}

static bool rate_limited(struct api *api, struct http_request *request, enum metrics_route route,
                         int64_t started_us, struct ratelimit *limiter, const char *key)
{
    int64_t retry_ms = 0;
    if (limiter->slots == NULL || ratelimit_take(limiter, key, clock_wall_ms(), &retry_ms))
        return false;
    char seconds[24];
    snprintf(seconds, sizeof(seconds), "%lld", (long long)((retry_ms + 999) / 1000));
    const char *headers[] = {"Retry-After", seconds, NULL};
    metrics_count(&api->metrics, METRICS_RATE_LIMITED);
    reply_error(api, request, route, started_us, 429, "rate_limited",
                "too many requests; retry after the given seconds", headers);
    return true;
}

/* ---- parked requests --------------------------------------------------------------------- */

static struct pending *pending_new(struct api *api, struct http_request *request,
                                   enum pending_kind kind, enum metrics_route route,
                                   int64_t started_us)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->api = api;
    p->request = request;
    p->kind = kind;
    p->route = route;
    p->started_us = started_us;
    atomic_init(&p->references, 1);
    p->waiter.context = p;
    http_retain(request);
    return p;
}

static void pending_release(struct pending *p)
{
    if (atomic_fetch_sub(&p->references, 1) != 1)
        return;
    http_release(p->request);
    free(p);
}

/* Puts p in the responder's queue (once), with whatever its inbox now holds. Locked by caller. */
static void enqueue_locked(struct api *api, struct pending *p)
{
    if (p->is_queued)
        return;
    p->is_queued = true;
    atomic_fetch_add(&p->references, 1);
    p->queue_next = NULL;
    if (api->queue_tail != NULL)
        api->queue_tail->queue_next = p;
    else
        api->queue_head = p;
    api->queue_tail = p;
    pthread_cond_signal(&api->queue_wake);
}

static void respond_purchase_appended(struct api *api, struct pending *p);

static void on_appended(void *context, int error, const struct log_append_item *item)
{
    struct pending *p = context;
    struct api *api = p->api;
    if (p->kind == PENDING_PURCHASE && (error != 0 || item->result != LOG_DUPLICATE)) {
        /* 202, 422 or 503 need no read: answer from here, one thread hop less. */
        p->append_error = error;
        if (error == 0)
            p->append = *item;
        respond_purchase_appended(api, p);
        pending_release(p); /* the appender's reference */
        return;
    }
    pthread_mutex_lock(&api->queue_mutex);
    p->has_append = true;
    p->append_error = error;
    if (error == 0)
        p->append = *item;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    pending_release(p); /* the appender's reference */
}

static bool on_purchase_changed(struct waiter *waiter, const struct store_purchase *row)
{
    struct pending *p = waiter->context;
    struct api *api = p->api;
    pthread_mutex_lock(&api->queue_mutex);
    p->has_row = true;
    p->row = *row;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    bool is_final = row->status >= ENGINE_STATUS_CONFIRMED;
    bool keep = p->kind == PENDING_STREAM && !is_final;
    if (!keep)
        pending_release(p); /* the registry's reference */
    return keep;
}

static void on_answer(struct waiter *waiter, const struct store_answer *answer,
                      const struct store_purchase *row)
{
    struct pending *p = waiter->context;
    struct api *api = p->api;
    pthread_mutex_lock(&api->queue_mutex);
    p->has_answer = true;
    p->answer = *answer;
    if (row != NULL) {
        p->has_row = true;
        p->row = *row;
    }
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    pending_release(p); /* the registry's reference */
}

/* Registers p's waiter (responder or HTTP thread); the registry holds a reference. */
static int pending_register(struct pending *p)
{
    atomic_fetch_add(&p->references, 1);
    int error = waiters_add(&p->api->waiters, &p->waiter);
    if (error != 0)
        pending_release(p);
    else
        p->is_registered = true;
    return error;
}

/* Unregisters; drops the registry's reference if the registry still held it. */
static void pending_unregister(struct pending *p)
{
    if (!p->is_registered)
        return;
    p->is_registered = false;
    if (waiters_remove(&p->api->waiters, &p->waiter))
        pending_release(p);
}

static void heap_swap(struct api *api, uint32_t a, uint32_t b)
{
    struct pending *t = api->heap[a];
    api->heap[a] = api->heap[b];
    api->heap[b] = t;
    api->heap[a]->heap_index = a;
    api->heap[b]->heap_index = b;
}

static void heap_fix(struct api *api, uint32_t i)
{
    while (i > 0 && api->heap[(i - 1) / 2]->deadline_ms > api->heap[i]->deadline_ms) {
        heap_swap(api, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        uint32_t smallest = i, left = 2 * i + 1, right = 2 * i + 2;
        if (left < api->heap_count &&
            api->heap[left]->deadline_ms < api->heap[smallest]->deadline_ms)
            smallest = left;
        if (right < api->heap_count &&
            api->heap[right]->deadline_ms < api->heap[smallest]->deadline_ms)
            smallest = right;
        if (smallest == i)
            return;
        heap_swap(api, i, smallest);
        i = smallest;
    }
}

/* Responder thread: arms p's deadline (the heap holds a reference). */
static void deadline_arm(struct api *api, struct pending *p, int64_t deadline_ms)
{
    if (api->heap_count == api->heap_capacity) {
        uint32_t capacity = api->heap_capacity ? 2 * api->heap_capacity : 256;
        struct pending **heap = realloc(api->heap, capacity * sizeof(*heap));
        if (heap == NULL)
            return; /* no deadline: the answer still comes with the decision */
        api->heap = heap;
        api->heap_capacity = capacity;
    }
    atomic_fetch_add(&p->references, 1);
    p->deadline_ms = deadline_ms;
    p->heap_index = api->heap_count;
    api->heap[api->heap_count++] = p;
    heap_fix(api, p->heap_index);
}

static void deadline_disarm(struct api *api, struct pending *p)
{
    if (p->deadline_ms == 0)
        return;
    uint32_t i = p->heap_index;
    p->deadline_ms = 0;
    api->heap_count--;
    if (i != api->heap_count) {
        api->heap[i] = api->heap[api->heap_count];
        api->heap[i]->heap_index = i;
        heap_fix(api, i);
    }
    pending_release(p);
}

/* Responder thread: answers p and lets go of it. */
static void pending_finish(struct pending *p, int status, const char *json,
                           const char *const *headers)
{
    struct api *api = p->api;
    if (p->is_done)
        return;
    p->is_done = true;
    pending_unregister(p);
    deadline_disarm(api, p);
    if (p->kind == PENDING_STREAM) {
        http_stream_end(p->request);
    } else {
        http_complete(p->request, status, "application/json", json, strlen(json), headers);
        metrics_request(&api->metrics, p->route, status, clock_monotonic_us() - p->started_us);
    }
}

static void pending_finish_error(struct pending *p, int status, const char *code,
                                 const char *message)
{
    char *json = api_json_error(code, message);
    pending_finish(p, status, json ? json : "{}", NULL);
    free(json);
}

static void pending_finish_cjson(struct pending *p, int status, cJSON *json,
                                 const char *const *headers)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        pending_finish_error(p, 503, "unavailable", "out of memory");
        return;
    }
    pending_finish(p, status, text, headers);
    free(text);
}

/* ---- responder: purchases accepted ------------------------------------------------------- */

static void respond_purchase_appended(struct api *api, struct pending *p)
{
    if (p->append_error != 0) {
        pending_finish_error(p, 503, "unavailable", "the log is unavailable; nothing was accepted");
        return;
    }
    if (p->append.result == LOG_DUPLICATE_MISMATCH) {
        pending_finish_error(p, 422, "invalid_request",
                             "this Idempotency-Key was used with another request");
        return;
    }
    uint64_t id =
        p->append.result == LOG_DUPLICATE ? p->append.existing_purchase_id : p->purchase_id;
    char id_text[API_PURCHASE_ID_TEXT], location[64];
    api_json_purchase_id_format(id, id_text);
    snprintf(location, sizeof(location), "/v1/purchases/%s", id_text);
    const char *headers[] = {"Location", location, NULL};
    cJSON *json = api_json_purchase_queued(id, p->event, p->customer, p->category, p->quantity,
                                           p->append.seq);
    cJSON_DeleteItemFromObject(json, "customer");
    cJSON_DeleteItemFromObject(json, "reason");
    cJSON_DeleteItemFromObject(json, "hold_expires_at");
    cJSON_DeleteItemFromObject(json, "position");
    cJSON_DeleteItemFromObject(json, "tickets");
    if (p->append.result == LOG_DUPLICATE) {
        struct store_purchase row;
        if (api->responder_store.ops->get_purchase(api->responder_store.context, id, &row) == 0) {
            cJSON_Delete(json);
            json = api_json_purchase(&row);
        }
        pending_finish_cjson(p, 200, json, headers);
        return;
    }
    metrics_count(&api->metrics, METRICS_PURCHASES_ACCEPTED);
    pending_finish_cjson(p, 202, json, headers);
}

/* ---- responder: answers of the engine ---------------------------------------------------- */

static void respond_event_answer(struct api *api, struct pending *p)
{
    const struct store_answer *a = &p->answer;
    if (a->result == ENGINE_RESULT_CONFLICT) {
        bool is_invalid =
            a->reason == ENGINE_REASON_INVALID_EVENT || a->reason == ENGINE_REASON_INVALID;
        pending_finish_error(p, is_invalid ? 400 : 409, is_invalid ? "invalid_request" : "conflict",
                             is_invalid ? "the event is not valid"
                                        : "an event with this id and another definition exists");
        return;
    }
    struct store_event event;
    if (api->responder_store.ops->get_event(api->responder_store.context, p->event, &event) != 0) {
        pending_finish_error(p, 503, "unavailable", "the event could not be read");
        return;
    }
    bool is_created =
        p->command_type == ENGINE_COMMAND_CREATE_EVENT && a->result == ENGINE_RESULT_OK;
    if (a->result == ENGINE_RESULT_OK)
        fprintf(stderr, "level=info component=api event=%s by=%s msg=\"%s\" state=%s\n", p->event,
                p->customer, is_created ? "event created" : "sale state changed",
                engine_state_name(event.state));
    pending_finish_cjson(p, is_created ? 201 : 200, api_json_event(&event, 0), NULL);
}

static void respond_purchase_answer(struct api *api, struct pending *p)
{
    struct store_purchase row;
    /* The answer and the row were committed together: the store has the row. */
    if (api->responder_store.ops->get_purchase(api->responder_store.context, p->purchase_id,
                                               &row) != 0) {
        pending_finish_error(p, 404, "not_found", "no such purchase");
        return;
    }
    const struct store_answer *a = &p->answer;
    if (a->result != ENGINE_RESULT_CONFLICT) {
        pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
        return;
    }
    if (a->reason == ENGINE_REASON_UNKNOWN_PURCHASE) {
        pending_finish_error(p, 404, "not_found", "no such purchase");
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(json, "error");
    cJSON_AddStringToObject(error, "code", "conflict");
    char message[96];
    snprintf(message, sizeof(message), "the hold is not valid: %s", engine_reason_name(a->reason));
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddItemToObject(json, "purchase", api_json_purchase(&row));
    pending_finish_cjson(p, 409, json, NULL);
}

/* After the append: wait for the engine's answer (registered first, then checked). */
static void answer_appended(struct api *api, struct pending *p)
{
    if (p->append_error != 0) {
        pending_finish_error(p, 503, "unavailable", "the log is unavailable; nothing was accepted");
        return;
    }
    snprintf(p->waiter.event, sizeof(p->waiter.event), "%s", p->event);
    p->waiter.seq = p->append.seq;
    p->waiter.on_answer = on_answer;
    if (pending_register(p) != 0) {
        pending_finish_error(p, 503, "unavailable", "too many requests are waiting");
        return;
    }
    deadline_arm(api, p, clock_wall_ms() + ANSWER_TIMEOUT_MS);
    struct store_answer answer;
    if (api->responder_store.ops->get_answer(api->responder_store.context, p->event, p->append.seq,
                                             &answer) == 0) {
        p->answer = answer;
        p->has_answer = true;
    }
}

/* ---- responder: long-polls and streams ---------------------------------------------------- */

/* Sends a purchase as one SSE event; takes ownership of json. */
static void stream_json(struct http_request *request, cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text != NULL)
        http_stream_push(request, text);
    free(text);
}

static void respond_current(struct api *api, struct pending *p)
{
    struct store_purchase row;
    if (api->responder_store.ops->get_purchase(api->responder_store.context, p->purchase_id,
                                               &row) == 0) {
        pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
        return;
    }
    cJSON *json = api_json_purchase_queued(p->purchase_id, p->event, p->customer, p->category,
                                           p->quantity, p->append.seq);
    pending_finish_cjson(p, 200, json, NULL);
}

/* Responder thread: handles what arrived in p's inbox. */
static void pending_process(struct api *api, struct pending *p)
{
    pthread_mutex_lock(&api->queue_mutex);
    bool has_append = p->has_append, has_row = p->has_row;
    struct store_purchase row = p->row;
    p->has_append = false;
    if (p->kind != PENDING_ANSWER)
        p->has_row = false;
    pthread_mutex_unlock(&api->queue_mutex);
    if (has_row && !row.has_arrival) {
        /* A change of an earlier batch's purchase carries its decision only. */
        row.has_arrival = true;
        snprintf(row.event, sizeof(row.event), "%s", p->event);
        snprintf(row.customer, sizeof(row.customer), "%s", p->customer);
        snprintf(row.category, sizeof(row.category), "%s", p->category);
        row.quantity = p->quantity;
        row.seq = p->append.seq;
    }
    if (p->is_done)
        return;
    if (p->wait_ms > 0 && p->deadline_ms == 0)
        deadline_arm(api, p, clock_wall_ms() + p->wait_ms);
    if (has_append && p->kind == PENDING_PURCHASE)
        respond_purchase_appended(api, p);
    else if (has_append)
        answer_appended(api, p);
    if (p->is_done)
        return;
    if (p->kind == PENDING_ANSWER && p->has_answer) {
        if (p->command_type == ENGINE_COMMAND_CREATE_EVENT ||
            p->command_type == ENGINE_COMMAND_SET_STATE)
            respond_event_answer(api, p);
        else
            respond_purchase_answer(api, p);
    } else if (p->kind == PENDING_LONG_POLL && has_row) {
        pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
    } else if (p->kind == PENDING_STREAM && has_row) {
        stream_json(p->request, api_json_purchase(&row));
        if (row.status >= ENGINE_STATUS_CONFIRMED)
            pending_finish(p, 200, "", NULL);
    }
}

static void pending_expire(struct api *api, struct pending *p)
{
    if (p->kind == PENDING_LONG_POLL)
        respond_current(api, p);
    else if (p->kind == PENDING_STREAM)
        pending_finish(p, 200, "", NULL);
    else
        pending_finish_error(p, 503, "unavailable",
                             "accepted but not decided in time; read the result with GET");
}

/*
 * Stopping: long-polls and streams are answered now (current state, end of
 * stream); answers still waiting for the worker get a short grace.
 */
static void rekey_for_drain(struct api *api, int64_t drain_started_ms)
{
    if (api->is_rekeyed || drain_started_ms == 0)
        return;
    api->is_rekeyed = true;
    for (uint32_t i = 0; i < api->heap_count; i++) {
        struct pending *p = api->heap[i];
        int64_t grace = drain_started_ms + DRAIN_ANSWER_GRACE_MS;
        p->deadline_ms = p->kind != PENDING_ANSWER ? 1
                         : p->deadline_ms < grace  ? p->deadline_ms
                                                   : grace;
    }
    for (uint32_t i = api->heap_count; i > 0; i--)
        heap_fix(api, i - 1);
}

static void *responder_main(void *argument)
{
    struct api *api = argument;
    for (;;) {
        pthread_mutex_lock(&api->queue_mutex);
        int64_t drain_started_ms = api->drain_started_ms;
        pthread_mutex_unlock(&api->queue_mutex);
        rekey_for_drain(api, drain_started_ms);
        pthread_mutex_lock(&api->queue_mutex);
        while (api->queue_head == NULL && !api->is_stopping &&
               !(api->drain_started_ms != 0 && !api->is_rekeyed)) {
            if (api->heap_count == 0) {
                pthread_cond_wait(&api->queue_wake, &api->queue_mutex);
                continue;
            }
            int64_t wait_ms = api->heap[0]->deadline_ms - clock_wall_ms();
            if (wait_ms <= 0)
                break;
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            int64_t ns = deadline.tv_nsec + wait_ms * 1000000;
            deadline.tv_sec += ns / 1000000000;
            deadline.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&api->queue_wake, &api->queue_mutex, &deadline);
        }
        struct pending *p = api->queue_head;
        if (p != NULL) {
            api->queue_head = p->queue_next;
            if (api->queue_head == NULL)
                api->queue_tail = NULL;
            p->is_queued = false;
        }
        bool is_stopping = api->is_stopping && p == NULL;
        pthread_mutex_unlock(&api->queue_mutex);
        if (p != NULL) {
            pending_process(api, p);
            pending_release(p); /* the queue's reference */
            if (drain_started_ms != 0 && p->wait_ms > 0 && p->deadline_ms > 1 && !p->is_done) {
                /* parked while draining: answer it with the rest */
                api->is_rekeyed = false;
            }
        }
        while (api->heap_count > 0 &&
               (api->heap[0]->deadline_ms <= clock_wall_ms() || is_stopping)) {
            struct pending *due = api->heap[0];
            atomic_fetch_add(&due->references, 1);
            pending_expire(api, due);
            deadline_disarm(api, due); /* no-op when pending_finish disarmed it */
            pending_release(due);
        }
        pthread_mutex_lock(&api->queue_mutex);
        atomic_store(&api->parked_count, api->heap_count + (api->queue_head != NULL));
        pthread_mutex_unlock(&api->queue_mutex);
        if (is_stopping)
            break;
    }
    return NULL;
}

/* ---- handlers ---------------------------------------------------------------------------- */

struct route_context {
    struct api *api;
    struct http_request *request;
    enum metrics_route route;
    int64_t started_us;
    const char *segments[6];
    size_t segment_count;
};

#define REPLY_ERROR(c, status, code, message)                                                      \
    reply_error((c)->api, (c)->request, (c)->route, (c)->started_us, status, code, message, NULL)

/* Submits an encoded command for p; answers 503 itself when the queue is full. */
static void submit(struct route_context *c, struct pending *p, const struct engine_command *command,
                   const char *idempotency_key, uint64_t request_hash)
{
    struct appender_request r;
    memset(&r, 0, offsetof(struct appender_request, record));
    snprintf(r.event, sizeof(r.event), "%s", p->event);
    if (codec_command_encode(command, r.record, sizeof(r.record), &r.record_length) != 0) {
        REPLY_ERROR(c, 400, "invalid_request", "the request cannot be encoded");
        pending_release(p);
        return;
    }
    r.time_ms = command->now_ms;
    r.purchase_id = command->type == ENGINE_COMMAND_PURCHASE ? p->purchase_id : 0;
    snprintf(r.idempotency_scope, sizeof(r.idempotency_scope), "%s", p->customer);
    snprintf(r.idempotency_key, sizeof(r.idempotency_key), "%s",
             idempotency_key ? idempotency_key : "");
    r.request_hash = request_hash;
    r.done = on_appended;
    r.context = p;
    if (http_defer(c->request) != 0) {
        REPLY_ERROR(c, 503, "unavailable", "too many requests are waiting; retry shortly");
        pending_release(p);
        return;
    }
    atomic_fetch_add(&p->references, 1); /* the appender's */
    int error = appender_submit(c->api->appender, &r);
    if (error != 0) {
        pending_release(p); /* the appender's, never taken */
        metrics_count(&c->api->metrics, METRICS_QUEUE_FULL);
        char *json = api_json_error(
            "unavailable", error == CATRACA_E_FULL ? "the log queue is full; nothing was accepted"
                                                   : "shutting down; nothing was accepted");
        http_complete(c->request, 503, "application/json", json, strlen(json), NULL);
        metrics_request(&c->api->metrics, c->route, 503, clock_monotonic_us() - c->started_us);
        free(json);
    }
    pending_release(p); /* the handler's */
}

static bool read_event(struct route_context *c, const char *id, struct store_event *event)
{
    struct thread_handles *h = handles_of(c->api);
    if (h == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "the store is unavailable");
        return false;
    }
    int error = api_json_is_id(id) ? h->store.ops->get_event(h->store.context, id, event)
                                   : CATRACA_E_NOTFOUND;
    if (error == CATRACA_E_NOTFOUND)
        REPLY_ERROR(c, 404, "not_found", "no such event");
    else if (error != 0)
        REPLY_ERROR(c, 503, "unavailable", "the store is unavailable");
    return error == 0;
}

static uint64_t pending_count(struct api *api, const struct store_event *event)
{
    struct thread_handles *h = handles_of(api);
    uint64_t count = 0;
    if (h != NULL)
        h->log.ops->count_after(h->log.context, event->spec.id, event->offset, &count);
    return count;
}

static void handle_event_get(struct route_context *c)
{
    struct store_event event;
    if (read_event(c, c->segments[2], &event))
        reply_cjson(c->api, c->request, c->route, c->started_us, 200,
                    api_json_event(&event, pending_count(c->api, &event)), NULL);
}

static void handle_events_list(struct route_context *c)
{
    struct thread_handles *h = handles_of(c->api);
    size_t max =
        c->api->config.events_max < EVENTS_PAGE_MAX ? c->api->config.events_max : EVENTS_PAGE_MAX;
    struct store_event *events = calloc(max, sizeof(*events));
    size_t count = 0;
    if (h == NULL || events == NULL ||
        h->store.ops->list_events(h->store.context, "", events, max, &count) != 0) {
        free(events);
        REPLY_ERROR(c, 503, "unavailable", "the store is unavailable");
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(json, "events");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, api_json_event(&events[i], pending_count(c->api, &events[i])));
    free(events);
    reply_cjson(c->api, c->request, c->route, c->started_us, 200, json, NULL);
}

/* The number of events (partitions) is bounded: a new id beyond it is refused. */
static bool has_room_for_event(struct route_context *c, const char *id)
{
    struct thread_handles *h = handles_of(c->api);
    uint32_t max = c->api->config.events_max;
    char(*ids)[CATRACA_ID_MAX + 1] = calloc(max, sizeof(*ids));
    size_t count = 0;
    if (h == NULL || ids == NULL || h->log.ops->list_partitions(h->log.context, ids, max, &count)) {
        free(ids);
        REPLY_ERROR(c, 503, "unavailable", "the log is unavailable");
        return false;
    }
    bool is_known = false;
    for (size_t i = 0; i < count && !is_known; i++)
        is_known = strcmp(ids[i], id) == 0;
    free(ids);
    if (!is_known && count >= max) {
        REPLY_ERROR(c, 503, "unavailable", "the maximum number of events is reached");
        return false;
    }
    return true;
}

static void handle_event_create(struct route_context *c, const struct caller *caller)
{
    if (!require_role(c->api, c->request, c->route, c->started_us, caller, JWT_ROLE_ADMIN, -1))
        return;
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_CREATE_EVENT,
                                     .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    if (api_json_parse_event(body, length, &command.u.create_event, message) != 0) {
        REPLY_ERROR(c, 400, "invalid_request", message);
        return;
    }
    if (!has_room_for_event(c, command.u.create_event.id))
        return;
    RAND_bytes(command.u.create_event.secret, sizeof(command.u.create_event.secret));
    struct pending *p = pending_new(c->api, c->request, PENDING_ANSWER, c->route, c->started_us);
    if (p == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    p->command_type = ENGINE_COMMAND_CREATE_EVENT;
    snprintf(p->event, sizeof(p->event), "%s", command.u.create_event.id);
    snprintf(p->customer, sizeof(p->customer), "%s", caller->claims.subject);
    submit(c, p, &command, NULL, 0);
}

static void handle_event_state(struct route_context *c, const struct caller *caller)
{
    if (!require_role(c->api, c->request, c->route, c->started_us, caller, JWT_ROLE_ADMIN, -1))
        return;
    struct store_event event;
    if (!read_event(c, c->segments[2], &event))
        return;
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_SET_STATE, .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    if (api_json_parse_state(body, length, &command.u.set_state.state, message) != 0) {
        REPLY_ERROR(c, 400, "invalid_request", message);
        return;
    }
    struct pending *p = pending_new(c->api, c->request, PENDING_ANSWER, c->route, c->started_us);
    if (p == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    p->command_type = ENGINE_COMMAND_SET_STATE;
    snprintf(p->event, sizeof(p->event), "%s", event.spec.id);
    snprintf(p->customer, sizeof(p->customer), "%s", caller->claims.subject);
    submit(c, p, &command, NULL, 0);
}

/* An event's per-customer limit, from the thread's cache or the store; false once answered. */
static bool find_event_limit(struct route_context *c, const char *id, uint32_t *limit)
{
    struct thread_handles *h = handles_of(c->api);
    for (uint32_t i = 0; h != NULL && i < h->known_count; i++) {
        if (strcmp(h->known[i].id, id) == 0) {
            *limit = h->known[i].per_customer_limit;
            return true;
        }
    }
    struct store_event event;
    if (!read_event(c, id, &event))
        return false;
    *limit = event.spec.per_customer_limit;
    if (h != NULL && h->known_count < KNOWN_EVENTS_MAX) {
        snprintf(h->known[h->known_count].id, sizeof(h->known[0].id), "%s", id);
        h->known[h->known_count++].per_customer_limit = *limit;
    }
    return true;
}

static uint64_t next_purchase_id(struct api *api)
{
    /*
     * Time-ordered and unique across restarts and gateways: milliseconds, the
     * gateway's instance tag (10 bits), then a counter (4096 a ms per gateway).
     */
    uint64_t counter = atomic_fetch_add(&api->purchase_counter, 1);
    return ((uint64_t)clock_wall_ms() << 22) | ((uint64_t)(api->config.instance_tag & 1023) << 12) |
           (counter & 4095);
}

static uint64_t hash_request(const char *event, const char *category, int64_t quantity)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = event; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *s = category; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (h ^ (uint64_t)quantity) * 1099511628211ULL;
}

/* With --challenge on, a purchase carries a solved ALTCHA challenge; false once answered. */
static bool proof_of_work_passes(struct route_context *c)
{
    const char *payload = http_header(c->request, "X-Challenge");
    if (payload == NULL) {
        REPLY_ERROR(c, 403, "challenge_required",
                    "solve GET /v1/challenge and send it in X-Challenge");
        return false;
    }
    int error = challenge_verify(&c->api->challenge, payload, clock_wall_ms() / 1000);
    if (error == CHALLENGE_E_BUSY) {
        REPLY_ERROR(c, 503, "unavailable", "too many challenges in flight; retry shortly");
        return false;
    }
    if (error != 0) {
        static const char *const reasons[] = {
            "",        "malformed",   "not signed by this server", "wrong solution",
            "expired", "already used"};
        char message[64];
        snprintf(message, sizeof(message), "challenge refused: %s", reasons[-error]);
        REPLY_ERROR(c, 403, "challenge_failed", message);
        return false;
    }
    return true;
}

static void handle_purchase_create(struct route_context *c, const struct caller *caller)
{
    struct api *api = c->api;
    bool is_ip_limited = api->ip_limit.slots != NULL; /* off by default: skip the address text */
    if ((is_ip_limited && rate_limited(api, c->request, c->route, c->started_us, &api->ip_limit,
                                       http_client_ip(c->request))) ||
        rate_limited(api, c->request, c->route, c->started_us, &api->customer_limit,
                     caller->claims.subject))
        return;
    if (api->config.is_challenge_on && !proof_of_work_passes(c))
        return;
    const char *key = http_header(c->request, "Idempotency-Key");
    if (key != NULL && (strlen(key) < 1 || strlen(key) > CATRACA_ID_MAX)) {
        REPLY_ERROR(c, 400, "invalid_request", "Idempotency-Key must be 1-64 characters");
        return;
    }
    uint32_t limit = 0;
    if (!find_event_limit(c, c->segments[2], &limit))
        return;
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    int64_t quantity = 0;
    if (api_json_parse_purchase(body, length, command.u.purchase.category, &quantity, message) !=
        0) {
        REPLY_ERROR(c, 400, "invalid_request", message);
        return;
    }
    if (quantity > limit) {
        REPLY_ERROR(c, 400, "invalid_request", "quantity is above the event's per_customer_limit");
        return;
    }
    struct pending *p = pending_new(api, c->request, PENDING_PURCHASE, c->route, c->started_us);
    if (p == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    command.u.purchase.purchase_id = next_purchase_id(api);
    command.u.purchase.quantity = (uint32_t)quantity;
    snprintf(command.u.purchase.customer, sizeof(command.u.purchase.customer), "%s",
             caller->claims.subject);
    p->purchase_id = command.u.purchase.purchase_id;
    p->quantity = (uint32_t)quantity;
    snprintf(p->event, sizeof(p->event), "%s", c->segments[2]);
    snprintf(p->customer, sizeof(p->customer), "%s", caller->claims.subject);
    snprintf(p->category, sizeof(p->category), "%s", command.u.purchase.category);
    submit(c, p, &command, key, hash_request(p->event, p->category, quantity));
}

/* Finds a purchase in the store, or as still queued in the log. 0, or an answered error. */
static int find_purchase(struct route_context *c, uint64_t id, struct store_purchase *out)
{
    struct thread_handles *h = handles_of(c->api);
    if (h == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "the store is unavailable");
        return -1;
    }
    int error = h->store.ops->get_purchase(h->store.context, id, out);
    if (error == 0)
        return 0;
    char event[CATRACA_ID_MAX + 1];
    struct log_seq seq;
    if (error == CATRACA_E_NOTFOUND)
        error = h->log.ops->find_purchase(h->log.context, id, event, &seq);
    struct log_entry entry;
    size_t count = 0;
    struct engine_command command;
    if (error == 0)
        error = h->log.ops->read(h->log.context, event, log_seq_before(seq), &entry, 1, &count);
    /* The entry must be this purchase's own: never answer with a neighbour's customer. */
    if (error == 0 &&
        (count != 1 || log_seq_compare(entry.seq, seq) != 0 ||
         codec_command_decode(entry.record, entry.record_length, &command) != 0 ||
         command.type != ENGINE_COMMAND_PURCHASE || command.u.purchase.purchase_id != id))
        error = CATRACA_E_CORRUPT;
    if (error == CATRACA_E_NOTFOUND) {
        REPLY_ERROR(c, 404, "not_found", "no such purchase");
        return -1;
    }
    if (error != 0) {
        REPLY_ERROR(c, 503, "unavailable", "the store is unavailable");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->purchase_id = id;
    snprintf(out->event, sizeof(out->event), "%s", event);
    snprintf(out->customer, sizeof(out->customer), "%s", command.u.purchase.customer);
    snprintf(out->category, sizeof(out->category), "%s", command.u.purchase.category);
    out->quantity = command.u.purchase.quantity;
    out->seq = seq;
    out->status = ENGINE_STATUS_NONE; /* queued */
    return 0;
}

static cJSON *purchase_json(const struct store_purchase *row)
{
    if (row->status == ENGINE_STATUS_NONE)
        return api_json_purchase_queued(row->purchase_id, row->event, row->customer, row->category,
                                        row->quantity, row->seq);
    return api_json_purchase(row);
}

/* The purchase named by the path, visible to the caller: 0, or an answered error. */
static int load_visible_purchase(struct route_context *c, const struct caller *caller,
                                 bool is_owner_only, struct store_purchase *row)
{
    uint64_t id = 0;
    if (api_json_purchase_id_parse(c->segments[2], &id) != 0) {
        REPLY_ERROR(c, 404, "not_found", "no such purchase");
        return -1;
    }
    if (find_purchase(c, id, row) != 0)
        return -1;
    bool is_owner = strcmp(row->customer, caller->claims.subject) == 0;
    bool is_staff = caller->claims.role != JWT_ROLE_BUYER;
    if (!is_owner && (is_owner_only || !is_staff)) {
        REPLY_ERROR(c, 403, "forbidden", "this purchase belongs to another customer");
        return -1;
    }
    return 0;
}

static void park_for_changes(struct route_context *c, const struct store_purchase *row,
                             enum pending_kind kind, int64_t wait_ms)
{
    struct pending *p = pending_new(c->api, c->request, kind, c->route, c->started_us);
    if (p == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    p->purchase_id = row->purchase_id;
    p->quantity = row->quantity;
    p->append.seq = row->seq;
    snprintf(p->event, sizeof(p->event), "%s", row->event);
    snprintf(p->customer, sizeof(p->customer), "%s", row->customer);
    snprintf(p->category, sizeof(p->category), "%s", row->category);
    p->waiter.purchase_id = row->purchase_id;
    p->waiter.on_purchase = on_purchase_changed;
    p->wait_ms = wait_ms;
    int parked = kind == PENDING_STREAM ? http_stream_start(c->request) : http_defer(c->request);
    if (parked != 0) {
        REPLY_ERROR(c, 503, "unavailable", "too many requests are waiting; retry shortly");
        pending_release(p);
        return;
    }
    if (kind == PENDING_STREAM) {
        stream_json(c->request, purchase_json(row));
        metrics_request(&c->api->metrics, c->route, 200, clock_monotonic_us() - c->started_us);
    }
    /* Registered before the re-check below, so no change can slip between the two. */
    if (pending_register(p) != 0) {
        if (kind == PENDING_STREAM)
            http_stream_end(c->request);
        else
            http_complete(c->request, 503, "application/json",
                          "{\"error\":{\"code\":\"unavailable\","
                          "\"message\":\"too many requests are waiting\"}}",
                          79, NULL);
        pending_release(p);
        return;
    }
    struct store_purchase now;
    struct thread_handles *h = handles_of(c->api);
    bool has_changed = h != NULL &&
                       h->store.ops->get_purchase(h->store.context, row->purchase_id, &now) == 0 &&
                       now.status != row->status;
    pthread_mutex_lock(&c->api->queue_mutex);
    if (has_changed) {
        p->has_row = true;
        p->row = now;
    }
    enqueue_locked(c->api, p); /* the responder arms the deadline */
    pthread_mutex_unlock(&c->api->queue_mutex);
    pending_release(p);
}

static void handle_purchase_get(struct route_context *c, const struct caller *caller)
{
    struct store_purchase row;
    if (load_visible_purchase(c, caller, false, &row) != 0)
        return;
    const char *wait = http_query(c->request, "wait");
    const char *status = http_query(c->request, "status");
    long wait_s = 0;
    if (wait != NULL) {
        char *end = NULL;
        wait_s = strtol(wait, &end, 10);
        if (end == wait || *end != '\0' || wait_s < 0) {
            REPLY_ERROR(c, 400, "invalid_request", "wait must be a number of seconds");
            return;
        }
        if (wait_s > LONG_POLL_MAX_S)
            wait_s = LONG_POLL_MAX_S;
    }
    const char *current = engine_status_name(row.status);
    bool is_final = row.status >= ENGINE_STATUS_CONFIRMED;
    if (wait_s == 0 || is_final || (status != NULL && strcmp(status, current) != 0)) {
        reply_cjson(c->api, c->request, c->route, c->started_us, 200, purchase_json(&row), NULL);
        return;
    }
    park_for_changes(c, &row, PENDING_LONG_POLL, wait_s * 1000);
}

static void handle_purchase_events(struct route_context *c, const struct caller *caller)
{
    struct store_purchase row;
    if (load_visible_purchase(c, caller, false, &row) != 0)
        return;
    park_for_changes(c, &row, PENDING_STREAM, STREAM_TIMEOUT_MS);
}

static void handle_purchase_command(struct route_context *c, const struct caller *caller,
                                    uint8_t type)
{
    struct store_purchase row;
    if (type == ENGINE_COMMAND_CONFIRM && !require_role(c->api, c->request, c->route, c->started_us,
                                                        caller, JWT_ROLE_PAYMENTS, JWT_ROLE_ADMIN))
        return;
    if (load_visible_purchase(c, caller, type == ENGINE_COMMAND_CANCEL, &row) != 0)
        return;
    struct engine_command command = {.type = type, .now_ms = clock_wall_ms()};
    if (type == ENGINE_COMMAND_CONFIRM) {
        size_t length = 0;
        const char *body = http_body(c->request, &length);
        char message[API_ERROR_MESSAGE_MAX];
        if (api_json_parse_confirm(body, length, command.u.confirm.payment_ref, message) != 0) {
            REPLY_ERROR(c, 400, "invalid_request", message);
            return;
        }
        command.u.confirm.purchase_id = row.purchase_id;
    } else {
        command.u.cancel.purchase_id = row.purchase_id;
        snprintf(command.u.cancel.customer, sizeof(command.u.cancel.customer), "%s",
                 caller->claims.subject);
    }
    struct pending *p = pending_new(c->api, c->request, PENDING_ANSWER, c->route, c->started_us);
    if (p == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    p->command_type = type;
    p->purchase_id = row.purchase_id;
    snprintf(p->event, sizeof(p->event), "%s", row.event);
    snprintf(p->customer, sizeof(p->customer), "%s", caller->claims.subject);
    submit(c, p, &command, NULL, 0);
}

static void handle_demo_token(struct route_context *c)
{
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    cJSON *root = cJSON_ParseWithLength(body, length);
    const cJSON *customer = cJSON_GetObjectItemCaseSensitive(root, "customer");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(root, "role");
    const char *role_name = cJSON_IsString(role) ? role->valuestring : "buyer";
    bool is_role_ok = strcmp(role_name, "buyer") == 0 || strcmp(role_name, "payments") == 0 ||
                      strcmp(role_name, "admin") == 0;
    if (!cJSON_IsString(customer) || !api_json_is_id(customer->valuestring) || !is_role_ok ||
        (role != NULL && !cJSON_IsString(role))) {
        cJSON_Delete(root);
        REPLY_ERROR(c, 400, "invalid_request",
                    "customer must be an id and role buyer, payments or admin");
        return;
    }
    char token[2048];
    int n =
        jwt_sign(c->api->config.jwt_secret, c->api->config.jwt_secret_length, customer->valuestring,
                 role_name, clock_wall_ms() / 1000 + 24 * 3600, token, sizeof(token));
    cJSON_Delete(root);
    if (n < 0) {
        REPLY_ERROR(c, 503, "unavailable", "token could not be signed");
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "token", token);
    reply_cjson(c->api, c->request, c->route, c->started_us, 200, json, NULL);
}

static void handle_readyz(struct route_context *c)
{
    struct thread_handles *h = handles_of(c->api);
    struct store_event event;
    int error =
        h == NULL ? CATRACA_E_UNAVAILABLE : h->store.ops->get_event(h->store.context, "-", &event);
    struct log_seq seq;
    if (error == CATRACA_E_NOTFOUND)
        error = h->log.ops->last_seq(h->log.context, "-", &seq);
    if (error != 0)
        REPLY_ERROR(c, 503, "unavailable", "the log or the store does not answer");
    else
        reply_json(c->api, c->request, c->route, c->started_us, 200, "{\"status\":\"ready\"}",
                   NULL);
}

static void handle_metrics(struct route_context *c)
{
    struct api *api = c->api;
    struct appender_stats appender;
    struct worker_stats worker = {0};
    struct http_stats http = {0};
    appender_stats(api->appender, &appender);
    struct worker *worker_now = atomic_load(&api->worker);
    struct http_server *http_now = atomic_load(&api->http);
    struct worker_lag *lags = calloc(api->config.events_max, sizeof(*lags));
    size_t lag_count = 0;
    if (worker_now != NULL)
        worker_stats(worker_now, &worker);
    if (worker_now != NULL && lags != NULL)
        lag_count = worker_lags(worker_now, lags, api->config.events_max);
    if (http_now != NULL)
        http_stats(http_now, &http);
    struct thread_handles *h = handles_of(api);
    struct store_event *events = calloc(api->config.events_max, sizeof(*events));
    size_t count = 0;
    if (h != NULL && events != NULL)
        h->store.ops->list_events(h->store.context, "", events, api->config.events_max, &count);
    char *text = metrics_render(&api->metrics, &appender, &worker, lags, lag_count, &http,
                                waiters_count(&api->waiters), events, count);
    free(events);
    free(lags);
    if (text == NULL) {
        REPLY_ERROR(c, 503, "unavailable", "out of memory");
        return;
    }
    http_respond(c->request, 200, "text/plain; version=0.0.4", text, strlen(text), NULL);
    metrics_request(&api->metrics, c->route, 200, clock_monotonic_us() - c->started_us);
    free(text);
}

static const char home_page[] =
    "<!doctype html><meta charset=utf-8><title>Catraca</title>"
    "<style>body{font:16px/1.5 system-ui;max-width:46em;margin:2em auto;padding:0 1em}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto}</style>"
    "<h1>Catraca</h1><p>The ticket on-sale engine is running. Try a sale from a terminal "
    "(demo mode):</p><pre>"
    "ADMIN=$(curl -s -XPOST localhost:8080/v1/demo/token -d "
    "'{\"customer\":\"ops\",\"role\":\"admin\"}' | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')\n"
    "curl -s -XPOST localhost:8080/v1/events -H \"Authorization: Bearer $ADMIN\" -d "
    "'{\"id\":\"demo\",\"name\":\"Demo "
    "night\",\"hold_seconds\":120,\"categories\":[{\"id\":\"pista\",\"capacity\":100,\"price_"
    "cents\":5000}]}'\n"
    "curl -s -XPOST localhost:8080/v1/events/demo/purchases -H \"Authorization: Bearer $ADMIN\" -d "
    "'{\"category\":\"pista\",\"quantity\":2}'</pre>"
    "<p>Then <code>GET /v1/purchases/{id}?wait=30</code>, <code>GET /v1/events/demo</code>, "
    "<code>/metrics</code>. The contract is API.md; openapi.yaml in the repository.</p>";

/* Splits the path into at most 6 segments; false when there are more. */
static bool split_path(const char *path, char *buffer, size_t size, struct route_context *c)
{
    snprintf(buffer, size, "%s", path);
    c->segment_count = 0;
    for (char *save = NULL, *s = strtok_r(buffer, "/", &save); s != NULL;
         s = strtok_r(NULL, "/", &save)) {
        if (c->segment_count == 6)
            return false;
        c->segments[c->segment_count++] = s;
    }
    return true;
}

static bool is(const struct route_context *c, size_t count, const char *a, const char *b,
               const char *d)
{
    if (c->segment_count != count)
        return false;
    const char *want[] = {a, b, NULL, d};
    for (size_t i = 0; i < count && i < 4; i++)
        if (want[i] != NULL && strcmp(c->segments[i], want[i]) != 0)
            return false;
    return true;
}

/* Routes needing no token. True when handled. */
static bool route_public(struct route_context *c, const char *method)
{
    bool is_get = strcmp(method, "GET") == 0;
    if (is_get && c->segment_count == 0) {
        c->route = METRICS_ROUTE_HOME;
        http_respond(c->request, 200, "text/html; charset=utf-8", home_page, sizeof(home_page) - 1,
                     NULL);
        return true;
    }
    if (is_get && is(c, 1, "healthz", NULL, NULL)) {
        c->route = METRICS_ROUTE_HEALTH;
        reply_json(c->api, c->request, c->route, c->started_us, 200, "{\"status\":\"ok\"}", NULL);
    } else if (is_get && is(c, 1, "readyz", NULL, NULL)) {
        c->route = METRICS_ROUTE_HEALTH;
        handle_readyz(c);
    } else if (is_get && is(c, 1, "metrics", NULL, NULL)) {
        c->route = METRICS_ROUTE_METRICS;
        handle_metrics(c);
    } else if (is_get && is(c, 2, "v1", "events", NULL)) {
        c->route = METRICS_ROUTE_EVENTS;
        handle_events_list(c);
    } else if (is_get && c->segment_count == 3 && is(c, 3, "v1", "events", NULL)) {
        c->route = METRICS_ROUTE_EVENT;
        handle_event_get(c);
    } else if (is_get && is(c, 2, "v1", "challenge", NULL) && c->api->config.is_challenge_on) {
        c->route = METRICS_ROUTE_OTHER;
        cJSON *json = challenge_create(&c->api->challenge, clock_wall_ms() / 1000);
        if (json == NULL)
            REPLY_ERROR(c, 503, "unavailable", "no randomness for a challenge");
        else
            reply_cjson(c->api, c->request, c->route, c->started_us, 200, json, NULL);
    } else if (strcmp(method, "POST") == 0 && is(c, 3, "v1", "demo", NULL) &&
               strcmp(c->segments[2], "token") == 0 && c->api->config.is_demo) {
        c->route = METRICS_ROUTE_DEMO;
        handle_demo_token(c);
    } else {
        return false;
    }
    return true;
}

/* 405 for a known path with another method, else 404. */
static void route_unknown(struct route_context *c)
{
    bool is_known = is(c, 2, "v1", "events", NULL) || is(c, 3, "v1", "events", NULL) ||
                    is(c, 4, "v1", "events", "state") || is(c, 4, "v1", "events", "purchases") ||
                    is(c, 3, "v1", "purchases", NULL) || is(c, 4, "v1", "purchases", "events") ||
                    is(c, 4, "v1", "purchases", "confirm");
    c->route = METRICS_ROUTE_OTHER;
    if (is_known)
        REPLY_ERROR(c, 405, "invalid_request", "method not allowed on this path");
    else
        REPLY_ERROR(c, 404, "not_found", "no such path");
}

void api_handle(void *context, struct http_request *request)
{
    struct api *api = context;
    struct route_context c = {.api = api,
                              .request = request,
                              .route = METRICS_ROUTE_OTHER,
                              .started_us = clock_monotonic_us()};
    if (atomic_load(&api->is_draining)) {
        static const char *const headers[] = {"Connection", "close", "Retry-After", "1", NULL};
        reply_error(api, request, c.route, c.started_us, 503, "unavailable",
                    "the server is stopping; retry shortly", headers);
        return;
    }
    char buffer[512];
    const char *path = http_path(request), *method = http_method(request);
    if (strlen(path) >= sizeof(buffer) || !split_path(path, buffer, sizeof(buffer), &c)) {
        REPLY_ERROR(&c, 404, "not_found", "no such path");
        return;
    }
    if (route_public(&c, method))
        return;
    bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0;
    bool is_delete = strcmp(method, "DELETE") == 0;
    struct {
        bool matches;
        enum metrics_route route;
    } routes[] = {
        {is_post && is(&c, 2, "v1", "events", NULL), METRICS_ROUTE_EVENTS},
        {is_post && is(&c, 4, "v1", "events", "state"), METRICS_ROUTE_EVENT_STATE},
        {is_post && is(&c, 4, "v1", "events", "purchases"), METRICS_ROUTE_PURCHASE_CREATE},
        {is_get && is(&c, 3, "v1", "purchases", NULL), METRICS_ROUTE_PURCHASE},
        {is_get && is(&c, 4, "v1", "purchases", "events"), METRICS_ROUTE_PURCHASE_EVENTS},
        {is_delete && is(&c, 3, "v1", "purchases", NULL), METRICS_ROUTE_PURCHASE_CANCEL},
        {is_post && is(&c, 4, "v1", "purchases", "confirm"), METRICS_ROUTE_PURCHASE_CONFIRM},
    };
    size_t which = 0, count = sizeof(routes) / sizeof(routes[0]);
    while (which < count && !routes[which].matches)
        which++;
    if (which == count) {
        route_unknown(&c);
        return;
    }
    c.route = routes[which].route;
    struct caller caller;
    if (!authenticate(api, request, c.route, c.started_us, &caller))
        return;
    switch (which) {
    case 0:
        handle_event_create(&c, &caller);
        break;
    case 1:
        handle_event_state(&c, &caller);
        break;
    case 2:
        handle_purchase_create(&c, &caller);
        break;
    case 3:
        handle_purchase_get(&c, &caller);
        break;
    case 4:
        handle_purchase_events(&c, &caller);
        break;
    case 5:
        handle_purchase_command(&c, &caller, ENGINE_COMMAND_CANCEL);
        break;
    default:
        handle_purchase_command(&c, &caller, ENGINE_COMMAND_CONFIRM);
        break;
    }
}

/* ---- life cycle -------------------------------------------------------------------------- */

void api_on_commit(void *context, const struct worker_commit *commit)
{
    struct api *api = context;
    waiters_notify(&api->waiters, commit);
}

static void wake_worker(void *context)
{
    struct api *api = context;
    struct worker *worker = atomic_load(&api->worker);
    if (worker != NULL)
        worker_wake(worker);
}

int api_start(const struct api_config *config, struct api **out)
{
    struct api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return CATRACA_E_NOMEM;
    api->config = *config;
    pthread_mutex_init(&api->handles_mutex, NULL);
    pthread_mutex_init(&api->queue_mutex, NULL);
    pthread_cond_init(&api->queue_wake, NULL);
    metrics_init(&api->metrics);
    struct appender_config appender = {.queue_max = config->queue_max,
                                       .batch_max = config->append_batch_max,
                                       .threads = config->append_threads,
                                       .after_append = wake_worker,
                                       .after_append_context = api};
    if (appender.threads < 1 || appender.threads > APPENDER_THREADS_MAX)
        return CATRACA_E_INVALID;
    int error = waiters_init(&api->waiters, config->waiters_max);
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
    for (uint32_t i = 0; error == 0 && i < appender.threads; i++)
        error = config->backend.open_log(config->backend.context, true, &appender.logs[i]);
    if (error == 0)
        error = appender_start(&appender, &api->appender);
    if (error == 0)
        error = config->backend.open_store(config->backend.context, &api->responder_store);
    if (error == 0 && pthread_create(&api->responder, NULL, responder_main, api) != 0)
        error = CATRACA_E_NOMEM;
    if (error != 0) {
        fprintf(stderr, "catraca: api start failed: %s\n", catraca_strerror(error));
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
    if (appender_drain(api->appender, 10000) != 0)
        fprintf(stderr, "level=warn component=api msg=\"log appends still pending after 10 s\"\n");
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
        if (atomic_load(&api->parked_count) == 0 && i >= 1)
            break;
    }
}

void api_stop(struct api *api)
{
    appender_stop(api->appender);
    pthread_mutex_lock(&api->queue_mutex);
    api->is_stopping = true;
    pthread_cond_signal(&api->queue_wake);
    pthread_mutex_unlock(&api->queue_mutex);
    pthread_join(api->responder, NULL);
    api->responder_store.ops->close(api->responder_store.context);
    for (uint32_t i = 0; i < api->handle_count; i++) {
        api->handles[i]->store.ops->close(api->handles[i]->store.context);
        api->handles[i]->log.ops->close(api->handles[i]->log.context);
        free(api->handles[i]);
    }
    challenge_destroy(&api->challenge);
    ratelimit_destroy(&api->customer_limit);
    ratelimit_destroy(&api->ip_limit);
    waiters_destroy(&api->waiters);
    free(api->heap);
    free(api);
}
