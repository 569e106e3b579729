/*
 * api.h - API.md's endpoints on top of http.h: authentication, limits,
 * validation, group-committed appends, and the answers that wait for the
 * worker (confirm, cancel, event changes, long-polls, SSE).
 *
 * Threads: HTTP threads run the handlers (each with its own read handles on
 * the database, opened on first use); the appender thread appends; one
 * responder thread finishes every parked request (it owns a store handle
 * for the reads those answers need, and the time-outs); the worker's commit
 * callback (api_on_commit) only copies what changed into parked requests.
 */
#ifndef CATRACA_GATEWAY_API_H
#define CATRACA_GATEWAY_API_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/client_address.h"
#include "gateway/http.h"
#include "worker/worker.h"

/*
 * Where the log and the store are. Each call opens a handle for one thread's
 * exclusive use (HTTP threads, the appender, the responder); the API closes
 * them at api_stop(). Embedded mode: SQLite handles on one file; distributed
 * mode: connections to its log (log/backend.h: Redis or Kafka) and PostgreSQL.
 */
struct api_backend {
    int (*open_log)(void *context, bool is_appender, struct catraca_log *out);
    int (*open_store)(void *context, struct catraca_store *out);
    /* The receipts' reader of whole runs of entries (read_max API_LOG_TREE_READ_MAX); NULL:
     * open_log(context, false, out). */
    int (*open_log_reader)(void *context, struct catraca_log *out);
    void *context;
};

/* Entries the receipts' reader asks the log for at once (gateway/receipts.c). */
#define API_LOG_TREE_READ_MAX 512

struct api_config {
    struct api_backend backend;
    uint32_t instance_tag; /* 0..1023, distinct per live gateway: part of every purchase id */
    const uint8_t *jwt_secret;
    size_t jwt_secret_length;
    bool is_demo;
    bool is_demo_public; /* demo on a non-loopback address (--demo-public): said on every page */
    uint32_t waiters_max;
    uint32_t queue_max;
    uint32_t append_batch_max;
    uint32_t append_threads; /* 1..APPENDER_THREADS_MAX: group commits in flight */
    double rate_customer_per_s, rate_customer_burst;
    double rate_ip_per_s, rate_ip_burst;
    uint32_t rate_keys_max;
    uint32_t events_max;
    uint32_t threads; /* HTTP threads (for the read-handle table) */
    bool is_challenge_on;
    uint32_t challenge_max_number;
    int64_t challenge_ttl_s;
    uint32_t challenge_replay_max;
    /* Purchases whose last committed state is kept in memory for reads (gateway/recent.h); 0
     * off. Only where every commit reaches api_on_commit (the embedded service). */
    uint32_t recent_purchases_max;
    /*
     * Distributed mode: the rate limits and the spent challenges live in this Redis
     * (--limits-redis, by default the log's own Redis), shared by every gateway
     * (gateway/limits_redis.h); NULL keeps them in this process. While that Redis does not
     * answer, purchases are refused 503 (fail closed).
     */
    const char *shared_limits_redis_url;
    int shared_limits_timeout_ms;
    /*
     * Peers whose X-Forwarded-For is believed for the client address the per-IP limit sees
     * (gateway/client_address.h); empty: none, the TCP peer is the client.
     */
    struct client_address_trust trusted_proxies;
    /* Signed receipts and the log's Merkle tree (gateway/receipts.h): the Ed25519 key in PEM;
     * NULL: off (202s carry no receipt, the /v1/events/{event}/log routes answer 404). The
     * file is created when absent if may_create_receipt_key. */
    const char *receipt_key_path;
    bool may_create_receipt_key;
    /* Entries of one event's log its tree holds (~80 bytes each in memory); 0: 2^24. Past it,
     * 202s carry "receipt": null. */
    uint64_t receipt_leaves_max;
    /* GET /v1/config: the buyer page's payment hand-off (a URL with {id}; NULL: none) and the
     * binary's version. Both must outlive the API. */
    const char *payment_url;
    const char *version;
    /* Where this server listens (POST /v1/demo/rehearse runs rush against it; NULL: never). */
    const char *listen_host;
    bool is_tls;
};

struct api;

int api_start(const struct api_config *config, struct api **out);
/* Connects the worker (after it started; its wake-up follows each append). */
void api_set_worker(struct api *api, struct worker *worker);
/* For http_config.handler. */
void api_handle(void *api, struct http_request *request);
/* For worker_config.on_commit, or the gateway's subscription to commits published by workers
 * in other processes. */
void api_on_commit(void *api, const struct worker_commit *commit);
/*
 * First step of stopping: new requests get 503, everything queued is appended
 * and answered, parked long-polls and streams are answered now and answers
 * still waiting for the worker get a few seconds. Bounded in time.
 */
void api_drain(struct api *api);
/* After the HTTP server stopped: stops the appender and the responder, closes handles, frees. */
void api_stop(struct api *api);
/* Attaches the HTTP server, for its counters in /metrics. */
void api_set_http(struct api *api, struct http_server *server);

#endif
