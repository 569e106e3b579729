/*
 * distributed.c - the distributed mode's commands:
 *
 *   catraca gateway  the HTTP API of `serve`, stateless: appends to the log,
 *                    reads from PostgreSQL, and completes parked requests
 *                    from the commits workers publish on the bus.
 *   catraca worker   decides the partitions whose leases it holds: reads
 *                    the log, commits to PostgreSQL (fenced by epoch), then
 *                    publishes each commit; /healthz, /readyz, /metrics.
 *   catraca migrate  applies the embedded sql/NNN_*.sql migrations.
 *
 * The log and the bus are whatever the options name (--redis or --kafka):
 * this file opens them through log/backend.h and names no backend.
 *
 * GET reads go to PostgreSQL, the system of record, never through a worker:
 * a worker may be busy, failing over or paused, and any number of gateways
 * (or read replicas) can serve reads while workers only decide.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/service.h"
#include "core/error.h"
#include "core/logline.h"
#include "gateway/metrics.h"
#include "log/backend.h"
#include "store/lease.h"
#include "store/store_pg.h"
#include "worker/commit_wire.h"
#include "worker/worker.h"

static int require(const char *value, const char *option, const char *command)
{
    if (value[0] != '\0')
        return 0;
    char flag[64];
    snprintf(flag, sizeof(flag), "--%s is required", option);
    logline(LOGLINE_ERROR, command, flag, NULL);
    return -1;
}

/* Refuses to run against a schema older than this binary (run `catraca migrate`). */
static int check_schema(const struct config *config)
{
    int database_version = 0, binary_version = 0;
    int error = store_pg_schema_version(config->postgres, &database_version, &binary_version);
    if (error != 0) {
        logline(LOGLINE_ERROR, "main", "PostgreSQL is not reachable", "error",
                catraca_strerror(error), NULL);
        return 1;
    }
    if (database_version < binary_version) {
        char database_text[16], binary_text[16];
        snprintf(database_text, sizeof(database_text), "%d", database_version);
        snprintf(binary_text, sizeof(binary_text), "%d", binary_version);
        logline(LOGLINE_ERROR, "main",
                "the database schema is older than this binary: run `catraca migrate --postgres "
                "...` first",
                "schema_version", database_text, "binary_version", binary_text, NULL);
        return 1;
    }
    return 0;
}

struct backend_options distributed_backend_options(const struct config *config)
{
    return (struct backend_options){
        .redis_url = config->redis,
        .kafka_bootstrap = config->kafka,
        .kafka_topic_prefix = config->kafka_topic_prefix,
        .kafka_replication_factor = (int)config->kafka_replication_factor,
        .kafka_min_insync_replicas = (int)config->kafka_min_insync_replicas,
        .timeout_ms = (int)config->log_timeout_ms,
        .wait_replicas = (int)config->wait_replicas,
    };
}

int distributed_check_backend(const struct config *config, const char *command)
{
    struct backend_options options = distributed_backend_options(config);
    char why[256];
    if (backend_check(&options, why, sizeof(why)) == 0)
        return 0;
    logline(LOGLINE_ERROR, command, why, NULL);
    return -1;
}

/* The address the log line at start names: the Redis URL or the Kafka bootstrap list. */
static const char *log_address(const struct config *config)
{
    return config->redis[0] != '\0' ? config->redis : config->kafka;
}

/* ---- gateway ----------------------------------------------------------------------------- */

struct gateway_backend {
    struct backend_options log; /* points into the config */
    const char *postgres;
};

static int gateway_open_log(void *context, bool is_appender, struct catraca_log *out)
{
    const struct gateway_backend *backend = context;
    return backend_open_log(&backend->log, 1, is_appender, out);
}

static int gateway_open_log_reader(void *context, struct catraca_log *out)
{
    const struct gateway_backend *backend = context;
    return backend_open_log(&backend->log, API_LOG_TREE_READ_MAX, false, out);
}

static int gateway_open_store(void *context, struct catraca_store *out)
{
    const struct gateway_backend *backend = context;
    return store_pg_open(backend->postgres, out);
}

struct commit_listener {
    struct catraca_bus bus; /* the listener thread's */
    struct api *api;
    pthread_t thread;
    atomic_int is_stopping;
    atomic_uint_fast64_t received, corrupt;
};

static void deliver_commit(void *context, const struct worker_commit *commit)
{
    api_on_commit(context, commit);
}

static void on_commit_message(void *context, const uint8_t *message, size_t length)
{
    struct commit_listener *listener = context;
    atomic_fetch_add(&listener->received, 1);
    if (commit_wire_decode(message, length, deliver_commit, listener->api) != 0)
        atomic_fetch_add(&listener->corrupt, 1);
}

/* Until the stop: while the bus is down, parked requests fall back on their time-outs. */
static void *commit_listener_main(void *argument)
{
    struct commit_listener *listener = argument;
    int error = listener->bus.ops->subscribe_commits(listener->bus.context, on_commit_message,
                                                     listener, &listener->is_stopping, NULL);
    if (error != 0)
        logline(LOGLINE_ERROR, "gateway", "the subscription to commits could not start", "error",
                catraca_strerror(error), NULL);
    return NULL;
}

/*
 * The Redis of the limits every gateway shares: --limits-redis, else the log's own Redis. A
 * Kafka log without --limits-redis leaves them to each gateway: said once at start, since N
 * gateways then let a customer through at N times the rate.
 */
static const char *shared_limits_url(const struct config *config)
{
    if (config->limits_redis[0] != '\0')
        return config->limits_redis;
    if (config->redis[0] != '\0')
        return config->redis;
    logline(LOGLINE_WARN, "gateway",
            "no --limits-redis: the rate limits and spent challenges are this gateway's own, so "
            "N gateways allow each rate N times; give --limits-redis URL to share them",
            NULL);
    return NULL;
}

/* A number no other gateway got, for the purchase ids this one mints; 0 or -1 after a message. */
static int take_instance_tag(const struct backend_options *options, uint32_t *tag)
{
    struct catraca_bus bus;
    uint64_t instance = 0;
    int error = backend_open_bus(options, &bus);
    if (error == 0) {
        error = bus.ops->unique_number(bus.context, &instance);
        bus.ops->close(bus.context);
    }
    if (error != 0) {
        logline(LOGLINE_ERROR, "gateway", "the bus is needed at start (for the instance tag)",
                "bus", backend_name(options), "error", catraca_strerror(error), NULL);
        return -1;
    }
    *tag = (uint32_t)(instance % 1024);
    return 0;
}

/* A gateway that cannot start says which part failed and why (a silent exit 1 was seen in CI). */
static int gateway_start_failed(const char *part, int error)
{
    char text[96];
    snprintf(text, sizeof(text), "%s could not start", part);
    logline(LOGLINE_ERROR, "gateway", text, "error", catraca_strerror(error), NULL);
    return 1;
}

int gateway_run(const struct config *config)
{
    char host[64];
    uint16_t port = 0;
    uint8_t secret[JWT_SECRET_MAX];
    size_t secret_length = 0;
    service_warn_public_demo(config);
    if (distributed_check_backend(config, "gateway") != 0 ||
        require(config->postgres, "postgres", "gateway") != 0 ||
        config_split_listen(config->listen, host, &port) != 0 ||
        service_choose_secret(config, secret, &secret_length) != 0)
        return 2;
    if (check_schema(config) != 0)
        return 1;
    service_block_stop_signals(); /* before the first thread */
    struct gateway_backend gateway = {.log = distributed_backend_options(config),
                                      .postgres = config->postgres};
    struct api_backend backend = {.open_log = gateway_open_log,
                                  .open_store = gateway_open_store,
                                  .open_log_reader = gateway_open_log_reader,
                                  .context = &gateway};
    struct api_config api_config;
    service_api_config(config, &backend, secret, secret_length, &api_config);
    api_config.listen_host = host;
    if (api_config.append_threads == 0) /* a network log takes the appends of all clients */
        api_config.append_threads = 4;  /* together: several group commits in flight */
    /* N gateways allow each rate once, and spend each challenge once, between them. */
    api_config.shared_limits_redis_url = shared_limits_url(config);
    api_config.shared_limits_timeout_ms = (int)config->log_timeout_ms;
    if (take_instance_tag(&gateway.log, &api_config.instance_tag) != 0)
        return 1;
    struct api *api = NULL;
    int error = api_start(&api_config, &api);
    if (error != 0)
        return gateway_start_failed("the purchase API", error);
    struct commit_listener listener = {.api = api};
    error = backend_open_bus(&gateway.log, &listener.bus);
    if (error == 0 && pthread_create(&listener.thread, NULL, commit_listener_main, &listener) != 0)
        error = CATRACA_E_NOMEM;
    if (error != 0)
        return gateway_start_failed("the commit listener", error);
    struct http_config http_config;
    struct http_server *http = NULL;
    service_http_config(config, host, port, api_handle, api, &http_config);
    if (http_start(&http_config, &http) != 0) /* it says why (bind, threads) */
        return gateway_start_failed("the HTTP server", CATRACA_E_UNAVAILABLE);
    api_set_http(api, http);
    char message[160], instance_text[16];
    service_listening_message(config, host, http_port(http), message, sizeof(message));
    snprintf(instance_text, sizeof(instance_text), "%u", api_config.instance_tag);
    logline(LOGLINE_INFO, "gateway", message, "log", backend_name(&gateway.log), "log_address",
            log_address(config), "instance", instance_text, NULL);
    service_wait_for_stop();
    logline(LOGLINE_INFO, "gateway", "stopping", NULL);
    http_quiesce(http);
    api_drain(api);
    http_stop(http);
    atomic_store_explicit(&listener.is_stopping, 1, memory_order_release); /* read by its thread */
    pthread_join(listener.thread, NULL);
    listener.bus.ops->close(listener.bus.context);
    api_stop(api);
    logline(LOGLINE_INFO, "gateway", "stopped", NULL);
    return 0;
}

/* ---- worker ------------------------------------------------------------------------------ */

struct worker_process {
    const struct config *config;
    struct backend_options backend; /* points into the config */
    struct worker *worker;
    struct lease *lease;
    struct catraca_bus publisher; /* the worker thread's, for publishing commits */
    struct catraca_bus waker_bus; /* the waker thread's */
    uint8_t *message;
    size_t message_capacity;
    pthread_t waker;
    atomic_int is_stopping;
    atomic_uint_fast64_t publish_failures;
    atomic_int is_subscribed; /* to appends: the bus is reachable */
};

static void ownership_offer(void *context, const char (*events)[CATRACA_ID_MAX + 1], size_t count)
{
    lease_offer(context, events, count);
}

static bool ownership_holds(void *context, const char *event, uint64_t *epoch)
{
    return lease_holds(context, event, epoch);
}

static void ownership_lost(void *context, const char *event, uint64_t epoch)
{
    lease_lost(context, event, epoch);
}

/* On the worker thread after each commit: tell every gateway what changed. */
static void publish_commit(void *context, const struct worker_commit *commit)
{
    struct worker_process *process = context;
    size_t needed = commit_wire_size_max(commit), length = 0;
    if (needed > process->message_capacity) {
        uint8_t *grown = realloc(process->message, needed);
        if (grown == NULL) {
            atomic_fetch_add(&process->publish_failures, 1);
            return;
        }
        process->message = grown;
        process->message_capacity = needed;
    }
    if (commit_wire_encode(commit, process->message, process->message_capacity, &length) != 0 ||
        process->publisher.ops->publish_commit(process->publisher.context, process->message,
                                               length) != 0)
        atomic_fetch_add(&process->publish_failures, 1);
}

static void wake_on_append(void *context, const char *event)
{
    (void)event;
    struct worker_process *process = context;
    if (process->worker != NULL)
        worker_wake(process->worker);
}

/* Wakes the worker when a gateway appended, instead of polling the log; until the stop. */
static void *waker_main(void *argument)
{
    struct worker_process *process = argument;
    int error =
        process->waker_bus.ops->wait_appended(process->waker_bus.context, wake_on_append, process,
                                              &process->is_stopping, &process->is_subscribed);
    if (error != 0)
        logline(LOGLINE_ERROR, "worker", "the wake-up on appends could not start", "error",
                catraca_strerror(error), NULL);
    return NULL;
}

static void metric(FILE *out, const char *name, const char *type, const char *help, uint64_t value)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
            (unsigned long long)value);
}

/*
 * Ready: PostgreSQL answers the lease keeper, the bus delivers appends (the subscription) and
 * the log answers reads (the worker's last discovery round). /readyz and catraca_ready both
 * ask this; *why (may be NULL) says what is missing.
 */
static bool worker_is_ready(struct worker_process *process, const char **why)
{
    struct lease_stats l;
    struct worker_stats w;
    lease_stats(process->lease, &l);
    worker_stats(process->worker, &w);
    bool is_subscribed = atomic_load_explicit(&process->is_subscribed, memory_order_acquire) != 0;
    const char *missing = !l.is_connected       ? "PostgreSQL is not reachable"
                          : !w.is_log_reachable ? "the log is not reachable"
                          : !is_subscribed      ? "the bus is not reachable"
                                                : NULL;
    if (why != NULL)
        *why = missing;
    return missing == NULL;
}

static char *worker_metrics(struct worker_process *process, size_t *length)
{
    struct worker_stats w;
    struct lease_stats l;
    worker_stats(process->worker, &w);
    lease_stats(process->lease, &l);
    size_t lag_max = process->config->events_max;
    struct worker_lag *lags = calloc(lag_max, sizeof(*lags));
    size_t lag_count = lags != NULL ? worker_lags(process->worker, lags, lag_max) : 0;
    char *worker_part = lags != NULL ? metrics_render_worker(&w, lags, lag_count) : NULL;
    free(lags);
    char *text = NULL;
    FILE *out = worker_part != NULL ? open_memstream(&text, length) : NULL;
    if (out == NULL) {
        free(worker_part);
        return NULL;
    }
    fputs(worker_part, out);
    free(worker_part);
    metric(out, "catraca_lease_acquired_total", "counter", "Partition leases taken.", l.acquired);
    metric(out, "catraca_lease_lost_total", "counter", "Leases lost, fenced or given back.",
           l.lost);
    metric(out, "catraca_lease_round_errors_total", "counter", "Lease rounds that failed.",
           l.round_errors);
    metric(out, "catraca_lease_live_workers", "gauge", "Live workers seen.", l.live_workers);
    metric(out, "catraca_commit_publish_failures_total", "counter",
           "Commits not published to gateways.", atomic_load(&process->publish_failures));
    metric(out, "catraca_ready", "gauge", "1 while /readyz answers 200.",
           worker_is_ready(process, NULL) ? 1 : 0);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static void worker_http(void *context, struct http_request *request)
{
    struct worker_process *process = context;
    const char *path = http_path(request);
    if (strcmp(http_method(request), "GET") != 0) {
        http_respond_error(request, 405, "invalid_request", "only GET here", NULL);
    } else if (strcmp(path, "/healthz") == 0) {
        http_respond_json(request, 200, "{\"status\":\"ok\"}", NULL);
    } else if (strcmp(path, "/readyz") == 0) {
        const char *why = NULL;
        if (worker_is_ready(process, &why))
            http_respond_json(request, 200, "{\"status\":\"ready\"}", NULL);
        else
            http_respond_error(request, 503, "unavailable", why, NULL);
    } else if (strcmp(path, "/metrics") == 0) {
        size_t length = 0;
        char *text = worker_metrics(process, &length);
        if (text == NULL)
            http_respond_error(request, 503, "unavailable", "out of memory", NULL);
        else
            http_respond(request, 200, "text/plain; version=0.0.4", text, length, NULL);
        free(text);
    } else {
        http_respond_error(request, 404, "not_found", "a worker serves /healthz, /readyz, /metrics",
                           NULL);
    }
}

static void default_worker_id(char *out, size_t size)
{
    char host[48] = "worker";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    for (char *c = host; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '-' || *c == '_'))
            *c = '-';
    snprintf(out, size, "%s-%ld", host, (long)getpid());
}

static int start_worker_parts(struct worker_process *process, const char *worker_id)
{
    const struct config *config = process->config;
    struct lease_config lease = {.conninfo = config->postgres,
                                 .worker_id = worker_id,
                                 .lease_ms = (uint32_t)config->lease_ms,
                                 .partitions_max = (uint32_t)config->events_max};
    struct worker_config worker;
    service_worker_config(config, publish_commit, process, &worker);
    int error = lease_start(&lease, &process->lease);
    if (error == 0)
        error = backend_open_log(&process->backend, worker.batch_max, false, &worker.log);
    if (error == 0)
        error = backend_open_bus(&process->backend, &process->publisher);
    if (error == 0)
        error = backend_open_bus(&process->backend, &process->waker_bus);
    if (error == 0)
        error = store_pg_open(config->postgres, &worker.store);
    worker.ownership = (struct worker_ownership){.offer = ownership_offer,
                                                 .holds = ownership_holds,
                                                 .lost = ownership_lost,
                                                 .context = process->lease};
    if (error == 0)
        error = worker_start(&worker, &process->worker);
    if (error == 0 && pthread_create(&process->waker, NULL, waker_main, process) != 0)
        error = CATRACA_E_NOMEM;
    return error;
}

int worker_run(const struct config *config)
{
    char host[64], worker_id[CATRACA_ID_MAX + 1];
    uint16_t port = 0;
    if (distributed_check_backend(config, "worker") != 0 ||
        require(config->postgres, "postgres", "worker") != 0 ||
        config_split_listen(config->listen, host, &port) != 0)
        return 2;
    if (check_schema(config) != 0)
        return 1;
    service_block_stop_signals(); /* before the first thread */
    if (config->worker_id[0] != '\0')
        snprintf(worker_id, sizeof(worker_id), "%.*s", CATRACA_ID_MAX, config->worker_id);
    else
        default_worker_id(worker_id, sizeof(worker_id));
    struct worker_process process = {.config = config,
                                     .backend = distributed_backend_options(config)};
    int error = start_worker_parts(&process, worker_id);
    if (error != 0) {
        logline(LOGLINE_ERROR, "worker", "the worker could not start", "error",
                catraca_strerror(error), NULL);
        return 1;
    }
    struct http_config http_config;
    struct http_server *http = NULL;
    service_http_config(config, host, port, worker_http, &process, &http_config);
    if (http_start(&http_config, &http) != 0) {
        logline(LOGLINE_ERROR, "worker", "the metrics server could not start", "listen",
                config->listen, NULL);
        return 1;
    }
    char message[160], lease_text[24];
    snprintf(message, sizeof(message), "deciding; metrics on http://%s%s%s:%u",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", http_port(http));
    snprintf(lease_text, sizeof(lease_text), "%lld", (long long)config->lease_ms);
    logline(LOGLINE_INFO, "worker", message, "worker", worker_id, "lease_ms", lease_text, "log",
            backend_name(&process.backend), "log_address", log_address(config), NULL);
    service_wait_for_stop();
    logline(LOGLINE_INFO, "worker", "stopping", "worker", worker_id, NULL);
    http_stop(http);
    atomic_store_explicit(&process.is_stopping, 1, memory_order_release); /* read by the waker */
    pthread_join(process.waker, NULL);
    process.waker_bus.ops->close(process.waker_bus.context);
    worker_stop(process.worker); /* finishes the commit in flight */
    lease_stop(process.lease);   /* then gives the partitions back at once */
    process.publisher.ops->close(process.publisher.context);
    free(process.message);
    logline(LOGLINE_INFO, "worker", "stopped", "worker", worker_id, NULL);
    return 0;
}

/* ---- migrate ----------------------------------------------------------------------------- */

int migrate_run(const struct config *config)
{
    if (require(config->postgres, "postgres", "migrate") != 0)
        return 2;
    int error = store_pg_migrate(config->postgres, stdout);
    if (error != 0) {
        logline(LOGLINE_ERROR, "migrate", "failed", "error", catraca_strerror(error), NULL);
        return 1;
    }
    return 0;
}
