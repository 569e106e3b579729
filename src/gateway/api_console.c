/*
 * api_console.c - what the buyer page and the organizer's console read
 * beyond the sale itself: GET /v1/config, the live event view
 * (GET /v1/events/{event}/stream), this process's last five minutes
 * (GET /v1/stats, /v1/stats/stream) and an event's recent decisions
 * (GET /v1/events/{event}/decisions).
 *
 * One console thread keeps the streams going, with store and log handles of
 * its own: every 100 ms it re-reads each watched event that a commit touched
 * (at most every 500 ms) or that it has not read for a second (the queue's
 * depth moves with appends, which no commit announces; a gateway's commit
 * feed may lose a message), and sends the view to each of the event's
 * streams whose last message differs, at most one every 500 ms per stream.
 * One read serves every stream of an event. Once a second it takes a stats
 * sample and sends it to the stats streams.
 *
 * Bounds: each stream takes a --max-waiters slot (beyond: 503), events with
 * streams are at most --max-events, the HTTP layer bounds a stream's unsent
 * bytes (64 KiB) and ends a stream its client does not read. A stream lives
 * until its client leaves (the abandon hook frees it) or the server drains.
 *
 * Locks: console->mutex, then an HTTP loop's mutex (http_stream_*), never the
 * other way: the abandon hook runs without the loop's mutex.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "gateway/api_internal.h"
#include "gateway/decisions.h"
#include "gateway/stats.h"

#define CONSOLE_TICK_MS 100
#define STREAM_INTERVAL_MS 500 /* at most one event view a stream, this often */
#define STREAM_REREAD_MS 1000  /* an event with streams is read at least this often */
#define DECISIONS_LIMIT_DEFAULT 50
#define DECISIONS_LIMIT_MAX 200

struct watcher {
    struct console *console;
    struct http_request *request;
    struct console_group *group;
    struct watcher *next, *prev;
    uint64_t last_hash;     /* event streams: the view last sent */
    int64_t last_sent_ms;   /* event streams: when (never before that view was read) */
    int64_t last_sample_ms; /* stats streams: the newest sample sent */
};

/* The streams of one event (or the stats streams). */
struct console_group {
    char event[CATRACA_ID_MAX + 1]; /* "" when the group is free */
    struct watcher *watchers;
    uint32_t count;
    bool is_dirty;   /* a commit touched the event since the last read */
    int64_t read_ms; /* when the view was last read */
    char *text;      /* the view as last read, NULL before */
    int64_t text_ms; /* when the read of text began */
    uint64_t hash;
};

struct console {
    struct api *api;
    struct stats stats;
    struct decisions decisions;
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool is_stopping; /* under mutex */
    struct console_group *groups;
    uint32_t groups_max;
    struct console_group stats_group;
    atomic_uint watcher_count;
    /* the console thread's */
    struct catraca_store store;
    struct catraca_log log;
    struct store_event *events; /* groups_max of them, for the queue depth */
    int64_t next_sample_ms;
};

static uint64_t text_hash(const char *text)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *c = text; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ULL;
    return h;
}

/* ---- streams ----------------------------------------------------------------------------- */

/* Unlinks and frees w and gives its slot back. Locked; w's abandon hook is disarmed. */
static void watcher_free_locked(struct console *k, struct watcher *w)
{
    struct console_group *g = w->group;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        g->watchers = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    if (--g->count == 0 && g != &k->stats_group) {
        g->event[0] = '\0';
        free(g->text);
        g->text = NULL;
    }
    http_release(w->request);
    waiters_unreserve(&k->api->waiters);
    atomic_fetch_sub(&k->watcher_count, 1);
    free(w);
}

/* The HTTP loop, when a stream's client left. */
static void on_watcher_abandoned(void *context)
{
    struct watcher *w = context;
    struct console *k = w->console;
    pthread_mutex_lock(&k->mutex);
    watcher_free_locked(k, w);
    pthread_mutex_unlock(&k->mutex);
}

/* The event's group, taken when free; NULL when every group is in use. Locked. */
static struct console_group *group_for_locked(struct console *k, const char *event)
{
    struct console_group *free_group = NULL;
    for (uint32_t i = 0; i < k->groups_max; i++) {
        if (strcmp(k->groups[i].event, event) == 0)
            return &k->groups[i];
        if (free_group == NULL && k->groups[i].event[0] == '\0')
            free_group = &k->groups[i];
    }
    if (free_group != NULL) {
        snprintf(free_group->event, sizeof(free_group->event), "%s", event);
        free_group->read_ms = clock_wall_ms();
        free_group->is_dirty = false;
    }
    return free_group;
}

/*
 * Starts c's stream with first as its first message, in the event's group (event NULL: the
 * stats streams). Answers 503 itself when no slot, group or parking place is left.
 */
static void stream_open(struct route_context *c, const char *event, const char *first,
                        int64_t last_sample_ms)
{
    struct api *api = c->api;
    struct console *k = api->console;
    if (strcmp(http_method(c->request), "HEAD") == 0) {
        /* The headers alone: a HEAD stream is over as it starts, so nothing is registered. */
        if (http_stream_start(c->request) != 0)
            api_reply_error(c, 503, "unavailable", "too many streams are open", NULL);
        else
            metrics_request(&api->metrics, c->route, 200, clock_monotonic_us() - c->started_us);
        return;
    }
    if (waiters_reserve(&api->waiters) != 0) {
        api_reply_error(c, 503, "unavailable",
                        "too many streams and long-polls are open (--max-waiters)", NULL);
        return;
    }
    struct watcher *w = calloc(1, sizeof(*w));
    pthread_mutex_lock(&k->mutex);
    struct console_group *g = w == NULL || k->is_stopping ? NULL
                              : event == NULL             ? &k->stats_group
                                                          : group_for_locked(k, event);
    if (g == NULL || http_stream_start(c->request) != 0) {
        if (g != NULL && g->count == 0 && g != &k->stats_group)
            g->event[0] = '\0';
        pthread_mutex_unlock(&k->mutex);
        free(w);
        waiters_unreserve(&api->waiters);
        api_reply_error(c, 503, "unavailable", "too many streams are open; retry shortly", NULL);
        return;
    }
    http_stream_push(c->request, first);
    metrics_request(&api->metrics, c->route, 200, clock_monotonic_us() - c->started_us);
    http_retain(c->request);
    *w = (struct watcher){.console = k,
                          .request = c->request,
                          .group = g,
                          .next = g->watchers,
                          .last_hash = text_hash(first),
                          .last_sent_ms = clock_wall_ms(),
                          .last_sample_ms = last_sample_ms};
    if (g->watchers != NULL)
        g->watchers->prev = w;
    g->watchers = w;
    g->count++;
    g->is_dirty = true; /* the group's text may be older than this first message */
    atomic_fetch_add(&k->watcher_count, 1);
    /* The handler runs on the request's loop: its client cannot be found gone before this. */
    http_on_abandon(c->request, on_watcher_abandoned, w);
    pthread_mutex_unlock(&k->mutex);
}

/* Ends every stream whose hook it can disarm (the others' hooks are running and free them). */
static void streams_end_all_locked(struct console *k)
{
    for (uint32_t i = 0; i <= k->groups_max; i++) {
        struct console_group *g = i < k->groups_max ? &k->groups[i] : &k->stats_group;
        for (struct watcher *w = g->watchers, *next; w != NULL; w = next) {
            next = w->next;
            if (!http_abandon_cancel(w->request))
                continue;
            http_stream_end(w->request);
            watcher_free_locked(k, w);
        }
    }
}

/* ---- the console thread ------------------------------------------------------------------ */

/* The view of event as GET /v1/events/{event} writes it; malloc'ed, NULL when out of memory. */
static char *event_text(const struct store_event *event, struct catraca_log *log)
{
    uint64_t pending = 0;
    log->ops->count_after(log->context, event->spec.id, event->offset, &pending);
    cJSON *json = api_json_event(event, pending);
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

/* The same, read from the store; NULL when unreadable. */
static char *view_text(struct catraca_store *store, struct catraca_log *log, const char *event_id)
{
    struct store_event event;
    if (store->ops->get_event(store->context, event_id, &event) != 0)
        return NULL;
    return event_text(&event, log);
}

/* Milliseconds to the microsecond: the histogram is not finer than that. */
static double rounded_ms(double ms)
{
    return (double)(int64_t)(ms * 1000 + 0.5) / 1000;
}

static cJSON *sample_json(const struct stats_sample *s)
{
    char at[32];
    api_json_time_format(s->at_ms, at);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "at", at);
    cJSON_AddNumberToObject(json, "accepted", (double)s->accepted);
    cJSON_AddNumberToObject(json, "decided", (double)s->decided);
    cJSON_AddNumberToObject(json, "queue_depth", (double)s->queue_depth);
    if (s->has_latency) {
        cJSON_AddNumberToObject(json, "accept_p50_ms", rounded_ms(s->accept_p50_ms));
        cJSON_AddNumberToObject(json, "accept_p99_ms", rounded_ms(s->accept_p99_ms));
    } else {
        cJSON_AddNullToObject(json, "accept_p50_ms");
        cJSON_AddNullToObject(json, "accept_p99_ms");
    }
    cJSON_AddNumberToObject(json, "expired", (double)s->expired);
    cJSON_AddNumberToObject(json, "confirmed", (double)s->confirmed);
    return json;
}

/* {"interval_ms":1000,"samples":[...]} as a malloc'ed string, or NULL. */
static char *samples_text(const struct stats_sample *samples, size_t count)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "interval_ms", STATS_INTERVAL_MS);
    cJSON *list = cJSON_AddArrayToObject(json, "samples");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, sample_json(&samples[i]));
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

/* Log entries not decided yet, over every event (the store's offset against the log). */
static uint64_t queue_depth(struct console *k)
{
    size_t count = 0;
    uint64_t depth = 0;
    if (k->store.ops->list_events(k->store.context, "", k->events, k->groups_max, &count) != 0)
        return 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t pending = 0;
        if (k->log.ops->count_after(k->log.context, k->events[i].spec.id, k->events[i].offset,
                                    &pending) == 0)
            depth += pending;
    }
    return depth;
}

static void take_sample(struct console *k, int64_t at_ms)
{
    struct stats_sample sample;
    stats_sample(&k->stats, at_ms, queue_depth(k), &sample);
    pthread_mutex_lock(&k->mutex);
    char *text = k->stats_group.count > 0 ? samples_text(&sample, 1) : NULL;
    for (struct watcher *w = k->stats_group.watchers; text != NULL && w != NULL; w = w->next) {
        if (w->last_sample_ms >= sample.at_ms)
            continue; /* its history already held this one */
        http_stream_push(w->request, text);
        w->last_sample_ms = sample.at_ms;
    }
    pthread_mutex_unlock(&k->mutex);
    free(text);
}

/* Re-reads the watched events that are due, then sends each stream what it has not seen. */
static void refresh_events(struct console *k, int64_t now_ms, char (*due)[CATRACA_ID_MAX + 1])
{
    uint32_t due_count = 0;
    pthread_mutex_lock(&k->mutex);
    for (uint32_t i = 0; i < k->groups_max; i++) {
        struct console_group *g = &k->groups[i];
        int64_t since = now_ms - g->read_ms;
        if (g->count == 0 || since < STREAM_INTERVAL_MS ||
            (!g->is_dirty && since < STREAM_REREAD_MS))
            continue;
        g->is_dirty = false;
        g->read_ms = now_ms;
        memcpy(due[due_count++], g->event, sizeof(g->event));
    }
    pthread_mutex_unlock(&k->mutex);
    for (uint32_t i = 0; i < due_count; i++) {
        char *text = view_text(&k->store, &k->log, due[i]);
        if (text == NULL)
            continue;
        pthread_mutex_lock(&k->mutex);
        struct console_group *g = NULL;
        for (uint32_t j = 0; j < k->groups_max && g == NULL; j++)
            if (k->groups[j].count > 0 && strcmp(k->groups[j].event, due[i]) == 0)
                g = &k->groups[j];
        if (g != NULL) {
            free(g->text);
            g->text = text;
            g->text_ms = now_ms;
            g->hash = text_hash(text);
            text = NULL;
        }
        pthread_mutex_unlock(&k->mutex);
        free(text);
    }
    pthread_mutex_lock(&k->mutex);
    for (uint32_t i = 0; i < k->groups_max; i++) {
        struct console_group *g = &k->groups[i];
        for (struct watcher *w = g->watchers; g->text != NULL && w != NULL; w = w->next) {
            /* Not what it has, not older than what it has (a stream that joined after the read
             * got a fresher first message), and not within 500 ms of its last one. */
            if (w->last_hash == g->hash || g->text_ms < w->last_sent_ms ||
                now_ms - w->last_sent_ms < STREAM_INTERVAL_MS)
                continue;
            if (http_stream_push(w->request, g->text)) {
                w->last_hash = g->hash;
                w->last_sent_ms = now_ms;
            }
        }
    }
    pthread_mutex_unlock(&k->mutex);
}

static void *console_main(void *argument)
{
    struct console *k = argument;
    char(*due)[CATRACA_ID_MAX + 1] = calloc(k->groups_max, sizeof(*due));
    k->next_sample_ms = (clock_wall_ms() / STATS_INTERVAL_MS + 1) * STATS_INTERVAL_MS;
    for (;;) {
        pthread_mutex_lock(&k->mutex);
        if (!k->is_stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            long ns = until.tv_nsec + CONSOLE_TICK_MS * 1000000L;
            until.tv_sec += ns / 1000000000L;
            until.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&k->wake, &k->mutex, &until);
        }
        bool is_stopping = k->is_stopping;
        pthread_mutex_unlock(&k->mutex);
        if (is_stopping)
            break;
        int64_t now_ms = clock_wall_ms();
        if (now_ms >= k->next_sample_ms) {
            take_sample(k, now_ms / STATS_INTERVAL_MS * STATS_INTERVAL_MS);
            k->next_sample_ms = (now_ms / STATS_INTERVAL_MS + 1) * STATS_INTERVAL_MS;
        }
        if (due != NULL && atomic_load(&k->watcher_count) > 0)
            refresh_events(k, now_ms, due);
        api_rehearse_reap(k->api, now_ms);
    }
    free(due);
    return NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */

int api_console_start(struct api *api)
{
    struct console *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CATRACA_E_NOMEM;
    k->api = api;
    k->groups_max = api->config.events_max;
    stats_init(&k->stats);
    pthread_mutex_init(&k->mutex, NULL);
    pthread_cond_init(&k->wake, NULL);
    k->groups = calloc(k->groups_max, sizeof(*k->groups));
    k->events = calloc(k->groups_max, sizeof(*k->events));
    int error = k->groups != NULL && k->events != NULL ? 0 : CATRACA_E_NOMEM;
    if (error == 0)
        error = decisions_init(&k->decisions, k->groups_max);
    if (error == 0)
        error = api_rehearse_init(api);
    const struct api_backend *backend = &api->config.backend;
    if (error == 0)
        error = backend->open_store(backend->context, &k->store);
    if (error == 0 && (error = backend->open_log(backend->context, false, &k->log)) != 0)
        k->store.ops->close(k->store.context);
    if (error == 0 && pthread_create(&k->thread, NULL, console_main, k) != 0) {
        k->log.ops->close(k->log.context);
        k->store.ops->close(k->store.context);
        error = CATRACA_E_NOMEM;
    }
    if (error != 0) {
        api_rehearse_free(api);
        decisions_destroy(&k->decisions);
        free(k->events);
        free(k->groups);
        free(k);
        return error;
    }
    k->has_thread = true;
    api->console = k;
    return 0;
}

void api_console_drain(struct api *api)
{
    struct console *k = api->console;
    if (k == NULL)
        return;
    pthread_mutex_lock(&k->mutex);
    k->is_stopping = true;
    pthread_cond_signal(&k->wake);
    streams_end_all_locked(k);
    pthread_mutex_unlock(&k->mutex);
    if (k->has_thread)
        pthread_join(k->thread, NULL);
    k->has_thread = false;
    api_rehearse_stop(api);
}

void api_console_stop(struct api *api)
{
    struct console *k = api->console;
    if (k == NULL)
        return;
    api_console_drain(api);
    /* The HTTP server has stopped: no hook runs any more; what is left is the console's. */
    pthread_mutex_lock(&k->mutex);
    for (uint32_t i = 0; i <= k->groups_max; i++) {
        struct console_group *g = i < k->groups_max ? &k->groups[i] : &k->stats_group;
        while (g->watchers != NULL)
            watcher_free_locked(k, g->watchers);
        free(g->text);
    }
    pthread_mutex_unlock(&k->mutex);
    k->log.ops->close(k->log.context);
    k->store.ops->close(k->store.context);
    decisions_destroy(&k->decisions);
    stats_destroy(&k->stats);
    api_rehearse_free(api);
    free(k->events);
    free(k->groups);
    free(k);
    api->console = NULL;
}

void api_console_on_commit(struct api *api, const struct worker_commit *commit)
{
    struct console *k = api->console;
    if (k == NULL)
        return;
    stats_count_commit(&k->stats, commit);
    decisions_record(&k->decisions, commit);
    if (atomic_load(&k->watcher_count) == 0)
        return;
    pthread_mutex_lock(&k->mutex);
    for (uint32_t i = 0; i < k->groups_max; i++)
        if (k->groups[i].count > 0 && strcmp(k->groups[i].event, commit->event) == 0)
            k->groups[i].is_dirty = true;
    pthread_mutex_unlock(&k->mutex);
}

void api_console_count_accepted(struct api *api, int64_t latency_us)
{
    if (api->console != NULL)
        stats_count_accepted(&api->console->stats, latency_us);
}

/* ---- routes ------------------------------------------------------------------------------ */

void api_console_config(struct route_context *c)
{
    const struct api_config *config = &c->api->config;
    cJSON *json = cJSON_CreateObject();
    cJSON_AddBoolToObject(json, "demo", config->is_demo);
    cJSON_AddBoolToObject(json, "demo_public", config->is_demo_public);
    cJSON_AddBoolToObject(json, "challenge", config->is_challenge_on);
    if (config->payment_url != NULL)
        cJSON_AddStringToObject(json, "payment_url", config->payment_url);
    else
        cJSON_AddNullToObject(json, "payment_url");
    cJSON_AddStringToObject(json, "version", config->version != NULL ? config->version : "");
    api_reply_cjson(c, 200, json, NULL);
}

void api_console_event_stream(struct route_context *c)
{
    struct thread_handles *h = api_handles_of(c->api);
    if (h == NULL) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return;
    }
    struct store_event event;
    if (!api_events_read(c, c->segments[2], &event))
        return;
    char *first = event_text(&event, &h->log);
    if (first == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    stream_open(c, event.spec.id, first, 0);
    free(first);
}

/* The whole history as one message, and the newest sample's time. */
static char *history_text(struct console *k, int64_t *newest_ms)
{
    struct stats_sample *samples = calloc(STATS_SAMPLES_MAX, sizeof(*samples));
    if (samples == NULL)
        return NULL;
    size_t count = stats_history(&k->stats, samples, STATS_SAMPLES_MAX);
    *newest_ms = count > 0 ? samples[count - 1].at_ms : 0;
    char *text = samples_text(samples, count);
    free(samples);
    return text;
}

void api_console_stats(struct route_context *c)
{
    int64_t newest_ms = 0;
    char *text = history_text(c->api->console, &newest_ms);
    if (text == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    api_reply_json(c, 200, text, NULL);
    free(text);
}

void api_console_stats_stream(struct route_context *c)
{
    int64_t newest_ms = 0;
    char *text = history_text(c->api->console, &newest_ms);
    if (text == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    stream_open(c, NULL, text, newest_ms);
    free(text);
}

/* ?limit: absent -> the default; 1..DECISIONS_LIMIT_MAX; else -1. */
static int decisions_limit(const struct route_context *c)
{
    const char *text = http_query(c->request, "limit");
    if (text == NULL)
        return DECISIONS_LIMIT_DEFAULT;
    int value = 0;
    for (const char *at = text; *at != '\0'; at++) {
        if (*at < '0' || *at > '9' || value > DECISIONS_LIMIT_MAX)
            return -1;
        value = value * 10 + (*at - '0');
    }
    return text[0] != '\0' && value >= 1 && value <= DECISIONS_LIMIT_MAX ? value : -1;
}

static cJSON *decision_json(const struct decision *d)
{
    char id[API_PURCHASE_ID_TEXT], seq[LOG_SEQ_TEXT_MAX], at[32];
    api_json_purchase_id_format(d->purchase_id, id);
    api_json_time_format(d->at_ms, at);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", id);
    if (d->has_facts) {
        log_seq_format(d->seq, seq);
        cJSON_AddStringToObject(json, "customer", d->customer);
        cJSON_AddStringToObject(json, "category", d->category);
        cJSON_AddNumberToObject(json, "quantity", d->quantity);
    } else {
        cJSON_AddNullToObject(json, "customer");
        cJSON_AddNullToObject(json, "category");
        cJSON_AddNullToObject(json, "quantity");
    }
    cJSON_AddStringToObject(json, "status", engine_status_name(d->status));
    const char *reason = d->status == ENGINE_STATUS_REJECTED ? engine_reason_name(d->reason) : NULL;
    if (reason != NULL)
        cJSON_AddStringToObject(json, "reason", reason);
    else
        cJSON_AddNullToObject(json, "reason");
    if (d->has_facts)
        cJSON_AddStringToObject(json, "seq", seq);
    else
        cJSON_AddNullToObject(json, "seq");
    cJSON_AddStringToObject(json, "at", at);
    return json;
}

void api_console_decisions(struct route_context *c)
{
    int limit = decisions_limit(c);
    if (limit < 0) {
        api_reply_error(c, 400, "invalid_request", "limit must be a whole number from 1 to 200",
                        NULL);
        return;
    }
    struct store_event event;
    if (!api_events_read(c, c->segments[2], &event))
        return;
    struct decision *list = calloc((size_t)limit, sizeof(*list));
    if (list == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    struct console *k = c->api->console;
    size_t count = decisions_recent(&k->decisions, event.spec.id, list, (size_t)limit);
    /* A later change of a purchase whose arrival left the ring: its facts from the store (at
     * most `limit` reads, only for those). */
    struct thread_handles *h = decisions_complete(list, count) > 0 ? api_handles_of(c->api) : NULL;
    for (size_t i = 0; h != NULL && i < count; i++) {
        struct store_purchase row;
        if (list[i].has_facts ||
            h->store.ops->get_purchase(h->store.context, list[i].purchase_id, &row) != 0)
            continue;
        memcpy(list[i].customer, row.customer, sizeof(list[i].customer));
        memcpy(list[i].category, row.category, sizeof(list[i].category));
        list[i].quantity = row.quantity;
        list[i].seq = row.seq;
        list[i].has_facts = true;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *array = cJSON_AddArrayToObject(json, "decisions");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(array, decision_json(&list[i]));
    free(list);
    api_reply_cjson(c, 200, json, NULL);
}
