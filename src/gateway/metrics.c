/* metrics.c - contract in metrics.h. */
#include "gateway/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int statuses[METRICS_STATUSES] = {200, 201, 202, 400, 401, 403, 404, 405,
                                               409, 413, 415, 422, 429, 431, 503};
static const double bucket_ms[METRICS_BUCKETS] = {0.25, 0.5, 1,   2,   5,    10,
                                                  25,   50,  100, 250, 1000, 5000};
static const char *const route_names[METRICS_ROUTE_COUNT] = {
#define METRICS_ROUTE_NAME(name, text) text,
    METRICS_ROUTES(METRICS_ROUTE_NAME)
#undef METRICS_ROUTE_NAME
};

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
}

void metrics_request(struct metrics *m, enum metrics_route route, int status, int64_t latency_us)
{
    int s = 0;
    while (s < METRICS_STATUSES && statuses[s] != status)
        s++;
    atomic_fetch_add(&m->requests[route][s], 1);
    int b = 0;
    while (b < METRICS_BUCKETS && (double)latency_us > bucket_ms[b] * 1000)
        b++;
    atomic_fetch_add(&m->latency_buckets[route][b], 1);
    atomic_fetch_add(&m->latency_us_sum[route], (uint64_t)(latency_us > 0 ? latency_us : 0));
}

void metrics_count(struct metrics *m, enum metrics_counter counter)
{
    atomic_fetch_add(&m->counters[counter], 1);
}

struct text {
    char *data;
    size_t length, capacity;
    int is_broken;
};

static void add(struct text *t, const char *format, ...)
{
    if (t->is_broken)
        return;
    for (;;) {
        va_list args;
        va_start(args, format);
        int n = vsnprintf(t->data + t->length, t->capacity - t->length, format, args);
        va_end(args);
        if (n < 0) {
            t->is_broken = 1;
            return;
        }
        if ((size_t)n < t->capacity - t->length) {
            t->length += (size_t)n;
            return;
        }
        char *bigger = realloc(t->data, t->capacity * 2);
        if (bigger == NULL) {
            t->is_broken = 1;
            return;
        }
        t->data = bigger;
        t->capacity *= 2;
    }
}

static void render_requests(struct text *t, struct metrics *m)
{
    add(t, "# HELP catraca_http_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE catraca_http_requests_total counter\n");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++)
        for (int s = 0; s <= METRICS_STATUSES; s++) {
            uint64_t n = atomic_load(&m->requests[r][s]);
            char status[8];
            if (s == METRICS_STATUSES)
                snprintf(status, sizeof(status), "other");
            else
                snprintf(status, sizeof(status), "%d", statuses[s]);
            if (n > 0 || (s == 0 && r == METRICS_ROUTE_HEALTH))
                add(t, "catraca_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                    route_names[r], status, (unsigned long long)n);
        }
    add(t, "# HELP catraca_http_request_duration_seconds Time to answer, by route.\n"
           "# TYPE catraca_http_request_duration_seconds histogram\n");
    for (int r = 0; r < METRICS_ROUTE_COUNT; r++) {
        uint64_t cumulative = 0;
        for (int b = 0; b < METRICS_BUCKETS; b++) {
            cumulative += atomic_load(&m->latency_buckets[r][b]);
            add(t, "catraca_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                route_names[r], bucket_ms[b] / 1000, (unsigned long long)cumulative);
        }
        cumulative += atomic_load(&m->latency_buckets[r][METRICS_BUCKETS]);
        add(t, "catraca_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
            route_names[r], (unsigned long long)cumulative);
        add(t, "catraca_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
            (double)atomic_load(&m->latency_us_sum[r]) / 1e6);
        add(t, "catraca_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
            (unsigned long long)cumulative);
    }
}

static void metric(struct text *t, const char *name, const char *type, const char *help,
                   double value)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
}

static void render_categories(struct text *t, const struct store_event *events, size_t count)
{
    static const char *const names[] = {"available", "held", "sold", "waiting", "capacity"};
    static const char *const helps[] = {"Tickets available", "Tickets held", "Tickets sold",
                                        "Requests in the wait line", "Tickets on sale in all"};
    for (int k = 0; k < 5; k++) {
        add(t,
            "# HELP catraca_category_%s %s, per category.\n"
            "# TYPE catraca_category_%s gauge\n",
            names[k], helps[k], names[k]);
        for (size_t e = 0; e < count; e++)
            for (uint32_t c = 0; c < events[e].spec.category_count; c++) {
                const struct engine_category_counts *n = &events[e].counts[c];
                uint32_t values[] = {n->available, n->held, n->sold, n->waiting_count, n->capacity};
                add(t, "catraca_category_%s{event=\"%s\",category=\"%s\"} %u\n", names[k],
                    events[e].spec.id, events[e].spec.categories[c].id, values[k]);
            }
    }
}

/* Which build answers: a constant 1 labelled with the version (the Prometheus convention). */
static void render_build_info(struct text *t)
{
    add(t,
        "# HELP catraca_build_info The version of this process.\n"
        "# TYPE catraca_build_info gauge\ncatraca_build_info{version=\"%s\"} 1\n",
        CATRACA_VERSION);
}

/* The worker's part: counters, and the log lag of each partition it decides. */
static void render_worker(struct text *t, const struct worker_stats *w,
                          const struct worker_lag *lags, size_t lag_count)
{
    metric(t, "catraca_worker_batches_total", "counter", "Store transactions committed.",
           (double)w->batches);
    metric(t, "catraca_worker_commands_total", "counter", "Log entries decided.",
           (double)w->commands);
    metric(t, "catraca_worker_commit_seconds_total", "counter", "Time in store commits.",
           (double)w->commit_latency_us_total / 1e6);
    metric(t, "catraca_worker_commit_seconds_max", "gauge", "Longest store commit.",
           (double)w->commit_latency_us_max / 1e6);
    metric(t, "catraca_worker_batch_commands_max", "gauge", "Largest batch.",
           (double)w->batch_commands_max);
    metric(t, "catraca_worker_commit_errors_total", "counter", "Failed store commits.",
           (double)w->commit_errors);
    metric(t, "catraca_worker_ticks_total", "counter", "TICKs appended for expiry.",
           (double)w->ticks_appended);
    metric(t, "catraca_holds_expired_total", "counter", "Holds expired (engine).",
           (double)w->holds_expired);
    metric(t, "catraca_invariant_violations_total", "counter",
           "Engine consistency checks that failed (must stay 0).", (double)w->invariant_violations);
    metric(t, "catraca_worker_commit_epoch_conflicts_total", "counter",
           "Commits refused: another worker holds the partition (fenced).",
           (double)w->fenced_commits);
    metric(t, "catraca_worker_partitions_held", "gauge", "Partitions decided here.",
           (double)w->partitions_held);
    metric(t, "catraca_purchases_confirmed_total", "counter",
           "Purchases confirmed (paid), decided here.", (double)w->confirmed);
    metric(t, "catraca_purchases_cancelled_total", "counter",
           "Purchases cancelled by their buyer, decided here.", (double)w->cancelled);
    add(t, "# HELP catraca_purchases_rejected_total Purchases rejected, decided here, by "
           "reason.\n# TYPE catraca_purchases_rejected_total counter\n");
    for (int i = 1; i < WORKER_REASONS_MAX; i++) {
        const char *reason = engine_reason_name((uint8_t)i);
        if (reason != NULL && strcmp(reason, "unknown") != 0 &&
            (w->rejected_by_reason[i] > 0 || i <= ENGINE_REASON_INVALID))
            add(t, "catraca_purchases_rejected_total{reason=\"%s\"} %llu\n", reason,
                (unsigned long long)w->rejected_by_reason[i]);
    }
    add(t, "# HELP catraca_worker_log_lag_entries Log entries not decided yet, per partition "
           "decided here.\n# TYPE catraca_worker_log_lag_entries gauge\n");
    for (size_t i = 0; i < lag_count; i++)
        add(t, "catraca_worker_log_lag_entries{event=\"%s\"} %llu\n", lags[i].event,
            (unsigned long long)lags[i].entries);
}

char *metrics_render_worker(const struct worker_stats *worker, const struct worker_lag *lags,
                            size_t lag_count)
{
    struct text t = {.data = malloc(4096), .capacity = 4096};
    if (t.data == NULL)
        return NULL;
    render_build_info(&t);
    render_worker(&t, worker, lags, lag_count);
    if (t.is_broken) {
        free(t.data);
        return NULL;
    }
    return t.data;
}

char *metrics_render(struct metrics *m, const struct appender_stats *a,
                     const struct worker_stats *w, const struct worker_lag *lags, size_t lag_count,
                     const struct http_stats *h, uint32_t waiters, const struct store_event *events,
                     size_t event_count)
{
    struct text t = {.data = malloc(16384), .capacity = 16384};
    if (t.data == NULL)
        return NULL;
    render_build_info(&t);
    render_requests(&t, m);
    metric(&t, "catraca_purchases_accepted_total", "counter", "Purchases answered 202.",
           (double)atomic_load(&m->counters[METRICS_PURCHASES_ACCEPTED]));
    metric(&t, "catraca_rate_limited_total", "counter", "Requests answered 429.",
           (double)atomic_load(&m->counters[METRICS_RATE_LIMITED]));
    metric(&t, "catraca_auth_failures_total", "counter", "Requests with a refused token.",
           (double)atomic_load(&m->counters[METRICS_AUTH_FAILURES]));
    metric(&t, "catraca_append_queue_full_total", "counter", "Requests refused: log queue full.",
           (double)atomic_load(&m->counters[METRICS_QUEUE_FULL]));
    metric(&t, "catraca_shared_limits_unavailable_total", "counter",
           "Purchases refused 503: the shared limits' Redis did not answer (distributed).",
           (double)atomic_load(&m->counters[METRICS_LIMITS_UNAVAILABLE]));
    metric(&t, "catraca_append_queue_pending", "gauge", "Requests waiting for the log append.",
           (double)a->pending);
    metric(&t, "catraca_log_append_batches_total", "counter", "Group commits into the log.",
           (double)a->batches);
    metric(&t, "catraca_log_appended_total", "counter", "Commands appended.", (double)a->appended);
    metric(&t, "catraca_log_append_failures_total", "counter", "Commands whose append failed.",
           (double)a->failed);
    metric(&t, "catraca_log_append_seconds_total", "counter", "Time in log appends.",
           (double)a->append_latency_us_total / 1e6);
    metric(&t, "catraca_log_append_seconds_max", "gauge", "Longest log append.",
           (double)a->append_latency_us_max / 1e6);
    metric(&t, "catraca_log_append_batch_max", "gauge", "Largest group commit.",
           (double)a->batch_max_seen);
    render_worker(&t, w, lags, lag_count);
    metric(&t, "catraca_http_connections_open", "gauge", "Open connections.",
           (double)h->connections_open);
    metric(&t, "catraca_http_connections_refused_total", "counter", "Connections answered 503.",
           (double)h->connections_refused);
    metric(&t, "catraca_http_parked_requests", "gauge", "Long-polls, streams and answers parked.",
           (double)h->deferred);
    metric(&t, "catraca_http_oversized_bodies_total", "counter", "Bodies refused with 413.",
           (double)h->oversized_bodies);
    metric(&t, "catraca_http_malformed_requests_total", "counter",
           "Requests the HTTP layer refused (400, 414, 417, 431, 501, 505).",
           (double)h->malformed_requests);
    metric(&t, "catraca_http_timeouts_total", "counter",
           "Connections cut at a deadline (headers, body, or an answer not read).",
           (double)h->timeouts);
    metric(&t, "catraca_waiters", "gauge", "Parked requests waiting for a decision.",
           (double)waiters);
    render_categories(&t, events, event_count);
    if (t.is_broken) {
        free(t.data);
        return NULL;
    }
    return t.data;
}
