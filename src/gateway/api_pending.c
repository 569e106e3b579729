/*
 * api_pending.c - parked requests: a request that waits for its append, the
 * engine's answer or a purchase's change, and the one responder thread that
 * answers every one of them (or lets its deadline answer). See api_internal.h.
 *
 * References: a pending is freed when its last holder lets go. Holders: the
 * handler that created it, the appender (until on_appended), the waiters
 * registry (until notified or removed), the responder's queue (while queued)
 * and its deadline heap (while armed).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/error.h"
#include "core/logline.h"
#include "gateway/api_internal.h"

#define ANSWER_TIMEOUT_MS 30000 /* a decision not committed by then: 503, retry with GET */
#define DRAIN_ANSWER_GRACE_MS 5000

/* A purchase waiting for its shared limits (distributed mode) before its append. */
struct admission {
    struct appender_request request;
    struct pending *p;
    int challenge_error;
};

/* ---- a parked request's life and inbox --------------------------------------------------- */

struct pending *api_pending_new(struct route_context *c, enum pending_kind kind)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->api = c->api;
    p->request = c->request;
    p->kind = kind;
    p->route = c->route;
    p->started_us = c->started_us;
    atomic_init(&p->references, 1);
    p->waiter.context = p;
    http_retain(c->request);
    return p;
}

void api_pending_release(struct pending *p)
{
    if (atomic_fetch_sub(&p->references, 1) != 1)
        return;
    http_release(p->request);
    free(p->fallback);
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

/* What a request the appender refused (appender_submit's error) is told: nothing was accepted. */
static const char *refusal_message(int error)
{
    return error == CATRACA_E_FULL ? "the log queue is full; nothing was accepted"
                                   : "shutting down; nothing was accepted";
}

/* Answers a parked request the appender refused: 503, counted as a full queue. */
static void finish_refused(struct pending *p, int error)
{
    metrics_count(&p->api->metrics, METRICS_QUEUE_FULL);
    api_pending_finish_error(p, 503, "unavailable", refusal_message(error));
}

static void on_appended(void *context, int error, const struct log_append_item *item)
{
    struct pending *p = context;
    struct api *api = p->api;
    if (p->kind == PENDING_PURCHASE && (error != 0 || item->result != LOG_DUPLICATE)) {
        /* 202, 422 or 503 need no read: answer from here, one thread hop less. */
        p->append_error = error;
        if (error == 0)
            p->append = *item;
        api_purchases_answer_appended(api, p);
        api_pending_release(p); /* the appender's reference */
        return;
    }
    pthread_mutex_lock(&api->queue_mutex);
    p->has_append = true;
    p->append_error = error;
    if (error == 0)
        p->append = *item;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    api_pending_release(p); /* the appender's reference */
}

static bool on_purchase_changed(struct waiter *waiter, const struct store_purchase *row)
{
    struct pending *p = waiter->context;
    struct api *api = p->api;
    if (p->kind == PENDING_LONG_POLL && p->answer_when_not_status >= 0 &&
        (int)row->status == p->answer_when_not_status)
        return true; /* still the status it waits to leave: keep waiting (API.md) */
    pthread_mutex_lock(&api->queue_mutex);
    p->has_row = true;
    p->row = *row;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    bool is_final = engine_status_is_final(row->status);
    bool keep = p->kind == PENDING_STREAM && !is_final;
    if (!keep)
        api_pending_release(p); /* the registry's reference */
    return keep;
}

/* p watches row's purchase: the registry wakes it with on_purchase_changed when the purchase
 * changes (answer_when_not_status: see struct pending). */
static void watch_purchase(struct pending *p, const struct store_purchase *row,
                           int answer_when_not_status)
{
    p->quantity = row->quantity;
    p->append.seq = row->seq;
    snprintf(p->event, sizeof(p->event), "%s", row->event);
    snprintf(p->customer, sizeof(p->customer), "%s", row->customer);
    snprintf(p->category, sizeof(p->category), "%s", row->category);
    p->waiter.purchase_id = row->purchase_id;
    p->waiter.on_purchase = on_purchase_changed;
    p->answer_when_not_status = answer_when_not_status;
}

/* Whether row differs from what p's stream last showed (then it becomes what it shows). */
static bool stream_shows_news(struct pending *p, const struct store_purchase *row)
{
    bool is_news = p->stream_updated_ms == 0 || (int)row->status != p->stream_status ||
                   row->position != p->stream_position ||
                   row->updated_ms > p->stream_updated_ms;
    if (is_news) {
        p->stream_status = (int)row->status;
        p->stream_position = row->position;
        p->stream_updated_ms = row->updated_ms > 0 ? row->updated_ms : 1;
    }
    return is_news;
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
    api_pending_release(p); /* the registry's reference */
}

/* Registers p's waiter (responder or HTTP thread); the registry holds a reference. */
static int pending_register(struct pending *p)
{
    atomic_fetch_add(&p->references, 1);
    int error = waiters_add(&p->api->waiters, &p->waiter);
    if (error != 0)
        api_pending_release(p);
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
        api_pending_release(p);
}

/* ---- deadlines (responder thread) -------------------------------------------------------- */

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
    api_pending_release(p);
}

/* ---- answers (responder thread) ---------------------------------------------------------- */

/* The loop thread, when the client of a parked long-poll or stream left: finish it now, so its
 * waiter slot and deadline go at once rather than at the deadline. */
static void on_abandoned(void *context)
{
    struct pending *p = context;
    struct api *api = p->api;
    pthread_mutex_lock(&api->queue_mutex);
    p->is_abandoned = true;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    api_pending_release(p); /* the hook's reference */
}

/* Arms the abandon hook of a parked long-poll or stream; it holds a reference to p. */
static void abandon_hook_arm(struct pending *p)
{
    atomic_fetch_add(&p->references, 1);
    p->has_abandon_hook = true;
    http_on_abandon(p->request, on_abandoned, p);
}

void api_pending_finish(struct pending *p, int status, const char *json, const char *const *headers)
{
    struct api *api = p->api;
    if (p->is_done)
        return;
    p->is_done = true;
    if (p->has_abandon_hook && http_abandon_cancel(p->request))
        api_pending_release(p); /* the hook's reference: it will never run */
    pending_unregister(p);
    deadline_disarm(api, p);
    if (p->kind == PENDING_STREAM) {
        http_stream_end(p->request);
    } else {
        http_complete(p->request, status, "application/json", json, strlen(json), headers);
        metrics_request(&api->metrics, p->route, status, clock_monotonic_us() - p->started_us);
    }
}

void api_pending_finish_error(struct pending *p, int status, const char *code, const char *message)
{
    char *json = api_json_error(code, message);
    api_pending_finish(p, status, json ? json : "{}", NULL);
    free(json);
}

void api_pending_finish_cjson(struct pending *p, int status, cJSON *json,
                              const char *const *headers)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text == NULL) {
        api_pending_finish_error(p, 503, "unavailable", "out of memory");
        return;
    }
    api_pending_finish(p, status, text, headers);
    free(text);
}

/* ---- the responder thread ---------------------------------------------------------------- */

/* After the append: wait for the engine's answer (registered first, then checked). */
static void answer_appended(struct api *api, struct pending *p)
{
    if (p->append_error != 0) {
        api_pending_finish_error(p, 503, "unavailable",
                                 "the log is unavailable; nothing was accepted");
        return;
    }
    snprintf(p->waiter.event, sizeof(p->waiter.event), "%s", p->event);
    p->waiter.seq = p->append.seq;
    p->waiter.on_answer = on_answer;
    if (pending_register(p) != 0) {
        api_pending_finish_error(p, 503, "unavailable", "too many requests are waiting");
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

/* Sends a purchase as one SSE event; takes ownership of json. */
static void stream_json(struct http_request *request, cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (text != NULL)
        http_stream_push(request, text);
    free(text);
}

/*
 * A keyed purchase's retry that waited for its first request (park_repeat) without the store
 * knowing the purchase: appended as it would have been without the claim (its derived id
 * makes the two one purchase; the engine answers the second REPEATED) and answered 202.
 */
static void append_fallback(struct api *api, struct pending *p)
{
    /* A purchase is answered on the appender's thread, so no other thread may answer it: the
     * abandon hook goes first. Already run (or running): the client left, nothing to send. */
    if (p->has_abandon_hook) {
        if (!http_abandon_cancel(p->request)) {
            api_pending_finish(p, 200, "", NULL);
            return;
        }
        p->has_abandon_hook = false;
        api_pending_release(p); /* the hook's reference: it will never run */
    }
    p->kind = PENDING_PURCHASE;
    p->waiter.purchase_id = 0;
    p->waiter.on_purchase = NULL;
    atomic_fetch_add(&p->references, 1); /* the appender's; the request is copied */
    int submitted = appender_submit(api->appender, &p->fallback->request);
    if (submitted == 0)
        return;
    api_pending_release(p); /* the appender's, never taken */
    finish_refused(p, submitted);
}

/* Responder thread: a store-wait's notification (row), store read (verdict) or abandon. */
static void store_wait_process(struct api *api, struct pending *p, bool is_abandoned,
                               const struct store_purchase *row, bool has_store_verdict,
                               int store_error)
{
    if (p->is_done)
        return;
    if (is_abandoned) {
        api_pending_finish(p, 200, "", NULL);
        return;
    }
    if (row == NULL && !has_store_verdict) /* nothing yet */
        return;
    pending_unregister(p); /* a read found it, or the wait is over: no notification wanted */
    if (row != NULL) {
        api_purchases_resume(api, p, row);
    } else if (p->resume_command == ENGINE_COMMAND_PURCHASE) {
        append_fallback(api, p); /* the first may never have been appended */
    } else if (store_error == CATRACA_E_NOTFOUND) {
        api_pending_finish_error(p, 404, "not_found", "no such purchase");
    } else {
        static const char *const retry[] = {"Retry-After", "1", NULL};
        char *json = api_json_error("unavailable", "the store is unavailable");
        api_pending_finish(p, 503, json ? json : "{}", retry);
        free(json);
    }
}

/* Responder thread: handles what arrived in p's inbox. */
static void pending_process(struct api *api, struct pending *p)
{
    pthread_mutex_lock(&api->queue_mutex);
    bool has_append = p->has_append, has_row = p->has_row, is_abandoned = p->is_abandoned;
    bool has_store_verdict = p->has_store_verdict;
    int store_error = p->store_error;
    struct store_purchase row = p->row;
    p->has_append = false;
    if (p->kind != PENDING_ANSWER)
        p->has_row = false;
    if (p->kind == PENDING_STORE_WAIT && (has_row || has_store_verdict || is_abandoned))
        p->is_store_wait_over = true; /* before p can become a long-poll: see on_store_checked */
    pthread_mutex_unlock(&api->queue_mutex);
    if (p->kind == PENDING_STORE_WAIT) {
        store_wait_process(api, p, is_abandoned, has_row ? &row : NULL, has_store_verdict,
                           store_error);
        return;
    }
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
    if (is_abandoned) { /* nobody to answer: let go of the slot and the deadline */
        api_pending_finish(p, 200, "", NULL);
        return;
    }
    if (p->wait_ms > 0 && p->deadline_ms == 0)
        deadline_arm(api, p, clock_wall_ms() + p->wait_ms);
    if (has_append && p->kind == PENDING_PURCHASE)
        api_purchases_answer_appended(api, p);
    else if (has_append)
        answer_appended(api, p);
    if (p->is_done)
        return;
    if (p->kind == PENDING_ANSWER && p->has_answer) {
        if (p->command_type == ENGINE_COMMAND_CREATE_EVENT ||
            p->command_type == ENGINE_COMMAND_SET_STATE)
            api_events_answer(api, p);
        else
            api_purchases_answer(api, p);
    } else if (p->kind == PENDING_LONG_POLL && has_row) {
        char text[API_PURCHASE_TEXT_MAX];
        if (api_json_purchase_text(&row, text, sizeof(text)) > 0)
            api_pending_finish(p, 200, text, NULL);
        else
            api_pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
    } else if (p->kind == PENDING_STREAM && has_row) {
        if (stream_shows_news(p, &row))
            stream_json(p->request, api_json_purchase(&row));
        if (engine_status_is_final(row.status))
            api_pending_finish(p, 200, "", NULL);
    }
}

static void pending_expire(struct api *api, struct pending *p)
{
    if (p->kind == PENDING_LONG_POLL)
        api_purchases_answer_current(api, p);
    else if (p->kind == PENDING_STREAM)
        api_pending_finish(p, 200, "", NULL);
    else
        api_pending_finish_error(p, 503, "unavailable",
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

void *api_pending_responder_main(void *argument)
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
            logline_set_request_id(http_request_id(p->request)); /* on the lines it causes */
            pending_process(api, p);
            logline_set_request_id(NULL);
            if (drain_started_ms != 0 && p->wait_ms > 0 && p->deadline_ms > 1 && !p->is_done) {
                /* parked while draining: answer it with the rest */
                api->is_rekeyed = false;
            }
            api_pending_release(p); /* the queue's reference (last: p may go with it) */
        }
        while (api->heap_count > 0 &&
               (api->heap[0]->deadline_ms <= clock_wall_ms() || is_stopping)) {
            struct pending *due = api->heap[0];
            atomic_fetch_add(&due->references, 1);
            logline_set_request_id(http_request_id(due->request));
            pending_expire(api, due);
            logline_set_request_id(NULL);
            deadline_disarm(api, due); /* no-op when api_pending_finish disarmed it */
            api_pending_release(due);
        }
        pthread_mutex_lock(&api->queue_mutex);
        atomic_store(&api->parked_count, api->heap_count + (api->queue_head != NULL));
        pthread_mutex_unlock(&api->queue_mutex);
        if (is_stopping)
            break;
    }
    return NULL;
}

/* ---- parking (HTTP threads) -------------------------------------------------------------- */

static bool on_store_wait_found(struct waiter *waiter, const struct store_purchase *row);

/*
 * The limits batch's thread: p is a keyed purchase whose key its first request claimed, with
 * the same request, on any gateway (limits_redis.h, --limits-redis over Kafka), and not
 * committed when p was received. Answered like the first: parked until the commit names the
 * purchase (200 with it, api_purchases_resume), or appended when the store-wait is over
 * (append_fallback), or at once when every store-wait slot is taken. Takes a.
 */
static void park_repeat(struct api *api, struct pending *p, struct admission *a)
{
    p->fallback = a;
    p->resume_command = ENGINE_COMMAND_PURCHASE;
    p->answer_when_not_status = -1;
    p->waiter.purchase_id = p->purchase_id;
    p->waiter.on_purchase = on_store_wait_found;
    p->kind = PENDING_STORE_WAIT;
    atomic_fetch_add(&p->references, 1); /* the ring's */
    if (api->store_wait == NULL || store_wait_submit(api->store_wait, p->purchase_id, p) != 0) {
        api_pending_release(p); /* the ring's, never taken */
        append_fallback(api, p);
        return;
    }
    abandon_hook_arm(p);
    (void)pending_register(p); /* full: the ring's read decides alone */
}

void api_pending_on_limits(void *context, int error, enum limits_redis_outcome outcome,
                           int64_t retry_after_ms)
{
    struct admission *a = context;
    struct pending *p = a->p;
    struct api *api = p->api;
    if (error == 0 && outcome == LIMITS_REDIS_KEY_REPEATED && a->challenge_error == 0) {
        park_repeat(api, p, a);
    } else if (api_purchases_admit(api, p, error, outcome, retry_after_ms, a->challenge_error)) {
        int submitted = appender_submit(api->appender, &a->request); /* copies it */
        free(a);
        if (submitted == 0)
            return; /* the limits batch's reference is the appender's now */
        finish_refused(p, submitted);
    } else {
        free(a);
    }
    api_pending_release(p); /* the limits batch's reference */
}

static int submit_to_limits(struct api *api, const struct appender_request *r, struct pending *p,
                            const struct limits_redis_check *check, int challenge_error)
{
    struct admission *a = malloc(sizeof(*a));
    if (a == NULL)
        return CATRACA_E_NOMEM;
    a->request = *r;
    a->p = p;
    a->challenge_error = challenge_error;
    int error = limits_batch_submit(api->limits_batch, check, a);
    if (error != 0)
        free(a);
    return error;
}

/* The appender's request for p's command: 0, or CATRACA_E_INVALID when it cannot be encoded. */
static int append_request_of(struct pending *p, const struct engine_command *command,
                             const char *idempotency_key, uint64_t request_hash,
                             struct appender_request *r)
{
    memset(r, 0, offsetof(struct appender_request, record));
    snprintf(r->event, sizeof(r->event), "%s", p->event);
    if (codec_command_encode(command, r->record, sizeof(r->record), &r->record_length) != 0)
        return CATRACA_E_INVALID;
    r->time_ms = command->now_ms;
    r->purchase_id = command->type == ENGINE_COMMAND_PURCHASE ? p->purchase_id : 0;
    snprintf(r->idempotency_scope, sizeof(r->idempotency_scope), "%s", p->customer);
    snprintf(r->idempotency_key, sizeof(r->idempotency_key), "%s",
             idempotency_key ? idempotency_key : "");
    r->request_hash = request_hash;
    r->done = on_appended;
    r->context = p;
    return 0;
}

void api_pending_submit(struct route_context *c, struct pending *p,
                        const struct engine_command *command, const char *idempotency_key,
                        uint64_t request_hash)
{
    api_pending_submit_limited(c, p, command, idempotency_key, request_hash, NULL, 0);
}

void api_pending_submit_limited(struct route_context *c, struct pending *p,
                                const struct engine_command *command, const char *idempotency_key,
                                uint64_t request_hash, const struct limits_redis_check *check,
                                int challenge_error)
{
    struct appender_request r;
    if (append_request_of(p, command, idempotency_key, request_hash, &r) != 0) {
        api_reply_error(c, 400, "invalid_request", "the request cannot be encoded", NULL);
        api_pending_release(p);
        return;
    }
    if (http_defer(c->request) != 0) {
        api_reply_error(c, 503, "unavailable", "too many requests are waiting; retry shortly",
                        NULL);
        api_pending_release(p);
        return;
    }
    atomic_fetch_add(&p->references, 1); /* the appender's (first the limits batch's) */
    int error = check == NULL ? appender_submit(c->api->appender, &r)
                              : submit_to_limits(c->api, &r, p, check, challenge_error);
    if (error != 0) {
        api_pending_release(p); /* the appender's, never taken */
        metrics_count(&c->api->metrics, METRICS_QUEUE_FULL);
        char *json = api_json_error("unavailable", refusal_message(error));
        http_complete(c->request, 503, "application/json", json, strlen(json), NULL);
        metrics_request(&c->api->metrics, c->route, 503, clock_monotonic_us() - c->started_us);
        free(json);
    }
    api_pending_release(p); /* the handler's */
}

/* A started stream's first event, the state now (counted as its 200); whether that state is
 * final (then nothing more can follow). */
static bool stream_first_event(struct api *api, struct pending *p, const struct store_purchase *row)
{
    stream_shows_news(p, row);
    stream_json(p->request, api_purchases_json(row));
    metrics_request(&api->metrics, p->route, 200, clock_monotonic_us() - p->started_us);
    return engine_status_is_final(row->status);
}

void api_pending_park_for_changes(struct route_context *c, const struct store_purchase *row,
                                  enum pending_kind kind, int64_t wait_ms,
                                  int answer_when_not_status)
{
    struct pending *p = api_pending_new(c, kind);
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->purchase_id = row->purchase_id;
    watch_purchase(p, row, answer_when_not_status);
    p->wait_ms = wait_ms;
    int parked = kind == PENDING_STREAM ? http_stream_start(c->request) : http_defer(c->request);
    if (parked != 0) {
        api_reply_error(c, 503, "unavailable", "too many requests are waiting; retry shortly",
                        NULL);
        api_pending_release(p);
        return;
    }
    if (kind == PENDING_STREAM) {
        if (stream_first_event(c->api, p, row)) { /* final: it can never change again */
            http_stream_end(c->request);
            api_pending_release(p);
            return;
        }
    }
    /* Armed before anything can finish p: the responder may see p as soon as it is registered. */
    abandon_hook_arm(p);
    /* Registered before the re-check below, so no change can slip between the two. */
    if (pending_register(p) != 0) {
        if (http_abandon_cancel(c->request))
            api_pending_release(p); /* the hook's reference */
        static const char busy[] = "{\"error\":{\"code\":\"unavailable\","
                                   "\"message\":\"too many requests are waiting\"}}";
        if (kind == PENDING_STREAM) {
            http_stream_end(c->request);
        } else {
            http_complete(c->request, 503, "application/json", busy, sizeof(busy) - 1, NULL);
            metrics_request(&c->api->metrics, c->route, 503, clock_monotonic_us() - c->started_us);
        }
        api_pending_release(p);
        return;
    }
    struct store_purchase now;
    struct thread_handles *h = api_handles_of(c->api);
    bool is_recent =
        c->api->recent.slots != NULL && recent_find(&c->api->recent, row->purchase_id, &now);
    bool has_changed = (is_recent || (h != NULL && h->store.ops->get_purchase(
                                                       h->store.context, row->purchase_id,
                                                       &now) == 0)) &&
                       now.status != row->status;
    pthread_mutex_lock(&c->api->queue_mutex);
    if (has_changed) {
        p->has_row = true;
        p->row = now;
    }
    enqueue_locked(c->api, p); /* the responder arms the deadline */
    pthread_mutex_unlock(&c->api->queue_mutex);
    api_pending_release(p);
}

/* ---- store-waits (api_purchases.c's reads of purchases another gateway may have taken) --- */

/* A commit named the purchase: resume with its row. Only a row with the purchase's arrival
 * (its first commit) carries the facts an answer needs; a later change of a purchase committed
 * before this wait began leaves it to the store read. */
static bool on_store_wait_found(struct waiter *waiter, const struct store_purchase *row)
{
    struct pending *p = waiter->context;
    struct api *api = p->api;
    if (!row->has_arrival)
        return true;
    pthread_mutex_lock(&api->queue_mutex);
    p->has_row = true;
    p->row = *row;
    enqueue_locked(api, p);
    pthread_mutex_unlock(&api->queue_mutex);
    api_pending_release(p); /* the registry's reference */
    return false;
}

bool api_pending_is_store_wait_over(void *context)
{
    struct pending *p = context;
    pthread_mutex_lock(&p->api->queue_mutex);
    bool is_over = p->is_store_wait_over;
    pthread_mutex_unlock(&p->api->queue_mutex);
    return is_over;
}

void api_pending_on_store_checked(void *context, int error, const struct store_purchase *row)
{
    struct pending *p = context;
    struct api *api = p->api;
    pthread_mutex_lock(&api->queue_mutex);
    /* Once resolved, p may be a long-poll or an append: a row in its inbox would answer it. */
    if (!p->is_store_wait_over && error != CATRACA_E_TIMEOUT) {
        p->has_store_verdict = true;
        p->store_error = error;
        if (error == 0) {
            p->has_row = true;
            p->row = *row;
        }
        enqueue_locked(api, p);
    }
    pthread_mutex_unlock(&api->queue_mutex);
    api_pending_release(p); /* the store-wait's reference */
}

static void reply_store_waits_full(struct route_context *c)
{
    static const char *const retry[] = {"Retry-After", "1", NULL};
    api_reply_error(c, 503, "unavailable",
                    "too many reads of purchases that may be queued on another gateway are "
                    "waiting; retry shortly",
                    retry);
}

void api_pending_park_store_wait(struct route_context *c, uint64_t purchase_id,
                                 uint8_t resume_command, int64_t resume_wait_ms,
                                 const char *resume_status, bool is_stream)
{
    struct api *api = c->api;
    struct pending *p = api->store_wait != NULL ? api_pending_new(c, PENDING_STORE_WAIT) : NULL;
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return;
    }
    p->purchase_id = purchase_id;
    p->resume_command = resume_command;
    p->resume_wait_ms = resume_wait_ms;
    p->resume_as_stream = is_stream;
    snprintf(p->resume_status, sizeof(p->resume_status), "%s", resume_status ? resume_status : "");
    snprintf(p->customer, sizeof(p->customer), "%s", c->claims.subject);
    p->is_caller_staff = c->claims.role != JWT_ROLE_BUYER;
    p->answer_when_not_status = -1;
    p->waiter.purchase_id = purchase_id;
    p->waiter.on_purchase = on_store_wait_found;
    /* The slot first: beyond the bound nothing else is taken. The ring's reference. */
    atomic_fetch_add(&p->references, 1);
    if (store_wait_submit(api->store_wait, purchase_id, p) != 0) {
        api_pending_release(p); /* the ring's, never taken */
        api_pending_release(p);
        reply_store_waits_full(c);
        return;
    }
    if (http_defer(c->request) != 0) {
        pthread_mutex_lock(&api->queue_mutex);
        p->is_store_wait_over = true; /* the ring's read, when it comes, is dropped */
        pthread_mutex_unlock(&api->queue_mutex);
        api_reply_error(c, 503, "unavailable", "too many requests are waiting; retry shortly",
                        NULL);
        api_pending_release(p);
        return;
    }
    abandon_hook_arm(p);
    /* Registered after the store read that missed it: a commit in between is found by the
     * ring's read at the end of the wait. A full registry leaves it to that read alone. */
    (void)pending_register(p);
    api_pending_release(p); /* the handler's */
}

void api_pending_long_poll_from(struct api *api, struct pending *p,
                                const struct store_purchase *row, int answer_when_not_status)
{
    p->kind = PENDING_LONG_POLL;
    watch_purchase(p, row, answer_when_not_status);
    p->wait_ms = p->resume_wait_ms;
    if (pending_register(p) != 0) {
        api_pending_finish_error(p, 503, "unavailable", "too many requests are waiting");
        return;
    }
    deadline_arm(api, p, clock_wall_ms() + p->wait_ms);
}

void api_pending_stream_from(struct api *api, struct pending *p, const struct store_purchase *row)
{
    /* Parked as a store-wait, so nothing was answered: the stream's head goes out now. */
    if (http_stream_start_parked(p->request) != 0) {
        api_pending_finish(p, 200, "", NULL); /* the client left, or the server is stopping */
        return;
    }
    p->kind = PENDING_STREAM;
    watch_purchase(p, row, -1);
    p->wait_ms = p->resume_wait_ms;
    if (stream_first_event(api, p, row)) {
        api_pending_finish(p, 200, "", NULL);
        return;
    }
    if (pending_register(p) != 0) {
        api_pending_finish(p, 200, "", NULL); /* ends the stream: too many are waiting */
        return;
    }
    deadline_arm(api, p, clock_wall_ms() + p->wait_ms);
    /* The store-wait stopped watching before this registration: a change in between would
     * be lost to a stream that lasts minutes. One read closes the gap (as
     * api_pending_park_for_changes's re-check does); a change found goes through the inbox. */
    struct store_purchase now;
    if (api->responder_store.ops->get_purchase(api->responder_store.context, row->purchase_id,
                                               &now) == 0 &&
        now.status != row->status) {
        pthread_mutex_lock(&api->queue_mutex);
        p->has_row = true;
        p->row = now;
        enqueue_locked(api, p);
        pthread_mutex_unlock(&api->queue_mutex);
    }
}

void api_pending_resubmit(struct api *api, struct pending *p, const struct engine_command *command)
{
    p->kind = PENDING_ANSWER;
    p->command_type = command->type;
    p->waiter.purchase_id = 0; /* an answer's waiter: event and seq, set once appended */
    p->waiter.on_purchase = NULL;
    struct appender_request r;
    if (append_request_of(p, command, NULL, 0, &r) != 0) {
        api_pending_finish_error(p, 400, "invalid_request", "the request cannot be encoded");
        return;
    }
    atomic_fetch_add(&p->references, 1); /* the appender's */
    int error = appender_submit(api->appender, &r);
    if (error != 0) {
        api_pending_release(p); /* the appender's, never taken */
        finish_refused(p, error);
    }
}
