/*
 * config.h - every option of `catraca serve|gateway|worker|migrate|audit`, its environment
 * variable, default and bound, in one table (printed by --help).
 */
#ifndef CATRACA_APP_CONFIG_H
#define CATRACA_APP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* X(field, option, env, default, min, max, help) for integer options. */
#define CONFIG_INTEGERS(X)                                                                         \
    X(threads, "threads", "CATRACA_THREADS", 2, 1, 64, "HTTP event-loop threads")                  \
    X(connections_max, "max-connections", "CATRACA_MAX_CONNECTIONS", 10000, 1, 1000000,            \
      "open connections; beyond: 503")                                                             \
    X(header_bytes_max, "max-header-bytes", "CATRACA_MAX_HEADER_BYTES", 8192, 1024, 65536,         \
      "request line + headers; beyond: 431")                                                       \
    X(body_bytes_max, "max-body-bytes", "CATRACA_MAX_BODY_BYTES", 65536, 1024, 1048576,            \
      "request body; beyond: 413")                                                                 \
    X(header_timeout_ms, "header-timeout-ms", "CATRACA_HEADER_TIMEOUT_MS", 10000, 100, 600000,     \
      "total time to receive a request's line and headers; then 408 and closed")                   \
    X(body_timeout_ms, "body-timeout-ms", "CATRACA_BODY_TIMEOUT_MS", 10000, 100, 600000,           \
      "total time to receive a body (408), and for a client to read an answer")                    \
    X(idle_timeout_ms, "idle-timeout-ms", "CATRACA_IDLE_TIMEOUT_MS", 60000, 100, 3600000,          \
      "a keep-alive connection idle this long between requests is closed")                         \
    X(waiters_max, "max-waiters", "CATRACA_MAX_WAITERS", 20000, 1, 1000000,                        \
      "parked long-polls, SSE streams and answers; beyond: 503")                                   \
    X(queue_max, "queue-max", "CATRACA_QUEUE_MAX", 20000, 1, 1000000,                              \
      "requests waiting for the log append; beyond: 503")                                          \
    X(append_batch_max, "append-batch-max", "CATRACA_APPEND_BATCH_MAX", 2048, 1, 65536,            \
      "requests per log transaction (group commit)")                                               \
    X(append_threads, "append-threads", "CATRACA_APPEND_THREADS", 0, 0, 16,                        \
      "group commits in flight, each on its own log connection; 0: 1 serve, 4 gateway")            \
    X(worker_batch_max, "worker-batch-max", "CATRACA_WORKER_BATCH_MAX", 4096, 1, 65536,            \
      "log entries per store transaction")                                                         \
    X(snapshot_every, "snapshot-every", "CATRACA_SNAPSHOT_EVERY", 100000, 1, 100000000,            \
      "commands between engine snapshots")                                                         \
    X(events_max, "max-events", "CATRACA_MAX_EVENTS", 64, 1, 4096, "events (partitions)")          \
    X(purchases_max, "max-purchases-per-event", "CATRACA_MAX_PURCHASES_PER_EVENT", 1048576, 16,    \
      67108864, "purchases remembered per event (engine memory ~90 B each)")                       \
    X(customers_max, "max-customers-per-event", "CATRACA_MAX_CUSTOMERS_PER_EVENT", 1048576, 16,    \
      67108864, "distinct customers per event")                                                    \
    X(rate_customer, "rate-customer", "CATRACA_RATE_CUSTOMER", 10, 0, 1000000,                     \
      "purchase requests/s per customer; 0 disables")                                              \
    X(rate_customer_burst, "rate-customer-burst", "CATRACA_RATE_CUSTOMER_BURST", 20, 1, 1000000,   \
      "burst per customer")                                                                        \
    X(rate_ip, "rate-ip", "CATRACA_RATE_IP", 0, 0, 1000000,                                        \
      "requests/s per client IP; 0 disables (off: behind a proxy all share one)")                  \
    X(rate_ip_burst, "rate-ip-burst", "CATRACA_RATE_IP_BURST", 100, 1, 1000000,                    \
      "burst per client IP")                                                                       \
    X(rate_table_max, "rate-table-max", "CATRACA_RATE_TABLE_MAX", 100000, 16, 10000000,            \
      "keys tracked by each rate limiter")                                                         \
    X(challenge_max_number, "challenge-max-number", "CATRACA_CHALLENGE_MAX_NUMBER", 100000, 10,    \
      10000000, "proof-of-work difficulty (ALTCHA maxnumber)")                                     \
    X(challenge_ttl_s, "challenge-ttl-seconds", "CATRACA_CHALLENGE_TTL_SECONDS", 300, 10, 3600,    \
      "challenge validity")                                                                        \
    X(challenge_replay_max, "challenge-replay-max", "CATRACA_CHALLENGE_REPLAY_MAX", 100000, 16,    \
      10000000, "solved challenges remembered against reuse")                                      \
    X(lease_ms, "lease-ms", "CATRACA_LEASE_MS", 5000, 300, 600000,                                 \
      "worker: a partition lease lasts this long unrenewed (failover time)")                       \
    X(redis_timeout_ms, "redis-timeout-ms", "CATRACA_REDIS_TIMEOUT_MS", 2000, 10, 60000,           \
      "distributed: Redis connect and command time-out")                                           \
    X(wait_replicas, "wait-replicas", "CATRACA_WAIT_REPLICAS", 0, 0, 16,                           \
      "distributed: replicas that must have each append before 202 (Redis WAIT); 0 off")

/* X(field, option, env, default, help) for string options. */
#define CONFIG_STRINGS(X)                                                                          \
    X(listen, "listen", "CATRACA_LISTEN", "127.0.0.1:8080", "ip:port or [ipv6]:port")          \
    X(data, "data", "CATRACA_DATA", "./var", "directory of the SQLite database")                   \
    X(jwt_secret, "jwt-secret", "CATRACA_JWT_SECRET", "", "HS256 secret (demo: random if empty)")  \
    X(sync, "sync", "CATRACA_SYNC", "full",                                                        \
      "SQLite synchronous: full (fsync each commit), normal")                                      \
    X(challenge, "challenge", "CATRACA_CHALLENGE", "off", "proof-of-work on purchases: on, off")   \
    X(demo, "demo", "CATRACA_DEMO", "off", "demo token endpoint and pages: on, off")               \
    X(redis, "redis", "CATRACA_REDIS", "", "distributed: the log, redis://host:port")              \
    X(postgres, "postgres", "CATRACA_POSTGRES", "", "distributed: the store, libpq conninfo")      \
    X(worker_id, "worker-id", "CATRACA_WORKER_ID", "", "worker: unique name (default host-pid)")    \
    X(tls_cert, "tls-cert", "CATRACA_TLS_CERT", "", "HTTPS: certificate chain, PEM (with --tls-key)") \
    X(tls_key, "tls-key", "CATRACA_TLS_KEY", "", "HTTPS: private key, PEM (with --tls-cert)")      \
    X(receipts, "receipts", "CATRACA_RECEIPTS", "on",                                              \
      "signed receipts on every 202 and the log's Merkle tree: on, off")                           \
    X(receipt_key, "receipt-key", "CATRACA_RECEIPT_KEY", "",                                       \
      "Ed25519 key (PEM) signing receipts; default DATA/receipt-key.pem, made if absent; "         \
      "gateways of one system share one file")

struct config {
#define CONFIG_INTEGER_FIELD(field, option, env, def, min, max, help) int64_t field;
    CONFIG_INTEGERS(CONFIG_INTEGER_FIELD)
#undef CONFIG_INTEGER_FIELD
#define CONFIG_STRING_FIELD(field, option, env, def, help) char field[256];
    CONFIG_STRINGS(CONFIG_STRING_FIELD)
#undef CONFIG_STRING_FIELD
    bool is_demo;
    bool is_challenge_on;
    bool is_receipts_on;
};

/*
 * Defaults, then environment, then argv (from index `first`). "--demo" alone
 * means "--demo on". Returns 0, 1 when --help was printed, or -1 after
 * printing a clear error to stderr.
 */
int config_parse(struct config *config, int argc, char **argv, int first);
/* Every option; command names the subcommand in the usage line. */
void config_print_help(FILE *out, const char *command);

#endif
