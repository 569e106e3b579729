/*
 * metrics.h - counters and histograms for /metrics (Prometheus text
 * format 0.0.4). Lock-free counters; rendering reads them with the
 * appender's, worker's and HTTP server's own figures and the store's
 * per-category counts.
 */
#ifndef CATRACA_GATEWAY_METRICS_H
#define CATRACA_GATEWAY_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/appender.h"
#include "gateway/http.h"
#include "store/store.h"
#include "worker/worker.h"

#define METRICS_ROUTES(X)                                                                          \
    X(HOME, "home")                                                                                \
    X(HEALTH, "health")                                                                            \
    X(METRICS, "metrics")                                                                          \
    X(EVENTS, "events")                                                                            \
    X(EVENT, "event")                                                                              \
    X(EVENT_STATE, "event_state")                                                                  \
    X(PURCHASE_CREATE, "purchase_create")                                                          \
    X(PURCHASE, "purchase")                                                                        \
    X(PURCHASE_EVENTS, "purchase_events")                                                          \
    X(PURCHASE_CANCEL, "purchase_cancel")                                                          \
    X(PURCHASE_CONFIRM, "purchase_confirm")                                                        \
    X(DEMO, "demo_token")                                                                          \
    X(CONFIG, "config")                                                                            \
    X(EVENT_STREAM, "event_stream")                                                                \
    X(EVENT_DECISIONS, "event_decisions")                                                          \
    X(STATS, "stats")                                                                              \
    X(REHEARSE, "rehearse")                                                                        \
    X(OTHER, "other")

enum metrics_route {
#define METRICS_ROUTE_ENUM(name, text) METRICS_ROUTE_##name,
    METRICS_ROUTES(METRICS_ROUTE_ENUM)
#undef METRICS_ROUTE_ENUM
        METRICS_ROUTE_COUNT
};

enum metrics_counter {
    METRICS_PURCHASES_ACCEPTED,
    METRICS_RATE_LIMITED,
    METRICS_AUTH_FAILURES,
    METRICS_QUEUE_FULL,
    METRICS_COUNTER_COUNT
};

#define METRICS_STATUSES 15 /* 200 201 202 400 401 403 404 405 409 413 415 422 429 431 503, else   \
                             */
#define METRICS_BUCKETS 12

struct metrics {
    atomic_uint_fast64_t requests[METRICS_ROUTE_COUNT][METRICS_STATUSES + 1];
    atomic_uint_fast64_t latency_buckets[METRICS_ROUTE_COUNT][METRICS_BUCKETS + 1];
    atomic_uint_fast64_t latency_us_sum[METRICS_ROUTE_COUNT];
    atomic_uint_fast64_t counters[METRICS_COUNTER_COUNT];
};

void metrics_init(struct metrics *metrics);
void metrics_request(struct metrics *metrics, enum metrics_route route, int status,
                     int64_t latency_us);
void metrics_count(struct metrics *metrics, enum metrics_counter counter);
/* The whole exposition as a malloc'ed string (NULL when out of memory). */
char *metrics_render(struct metrics *metrics, const struct appender_stats *appender,
                     const struct worker_stats *worker, const struct worker_lag *lags,
                     size_t lag_count, const struct http_stats *http, uint32_t waiters,
                     const struct store_event *events, size_t event_count);
/* The worker's part alone (catraca worker's /metrics); NULL when out of memory. */
char *metrics_render_worker(const struct worker_stats *worker, const struct worker_lag *lags,
                            size_t lag_count);

#endif
