/*
 * config.h - every option of `catraca serve|gateway|worker|migrate|audit`, its environment
 * variable, default and bound, in one table (printed by --help).
 */
#ifndef CATRACA_APP_CONFIG_H
#define CATRACA_APP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gateway/jwt_secret.h"

/* The commands, as bits: an option lists those that read it. A command accepts only its own
 * options as flags (a flag it would ignore is a mistake to report); it ignores the variables
 * and --config keys of other commands, so that one environment or file can serve them all. */
enum config_command {
    CMD_SERVE = 1 << 0,
    CMD_GATEWAY = 1 << 1,
    CMD_WORKER = 1 << 2,
    CMD_MIGRATE = 1 << 3,
    CMD_AUDIT = 1 << 4,
    CMD_TOKEN = 1 << 5,
};
#define CMD_API (CMD_SERVE | CMD_GATEWAY)                    /* serve HTTP and the API */
#define CMD_LISTENERS (CMD_SERVE | CMD_GATEWAY | CMD_WORKER) /* serve HTTP */
#define CMD_DECIDERS (CMD_SERVE | CMD_WORKER)                /* run the engine */
#define CMD_SECRET_READERS (CMD_SERVE | CMD_GATEWAY | CMD_TOKEN)
#define CMD_LOGGERS (CMD_SERVE | CMD_GATEWAY | CMD_WORKER | CMD_MIGRATE) /* log lines, Sentry */
#define CMD_DISTRIBUTED (CMD_GATEWAY | CMD_WORKER | CMD_AUDIT) /* read a distributed log */

/* X(field, option, env, default, min, max, commands, help) for integer options. */
#define CONFIG_INTEGERS(X)                                                                         \
    X(threads, "threads", "CATRACA_THREADS", 2, 1, 64, CMD_LISTENERS, "HTTP event-loop threads")   \
    X(connections_max, "max-connections", "CATRACA_MAX_CONNECTIONS", 10000, 1, 1000000,            \
      CMD_LISTENERS, "open connections; beyond: 503")                                              \
    X(header_bytes_max, "max-header-bytes", "CATRACA_MAX_HEADER_BYTES", 8192, 1024, 65536,         \
      CMD_LISTENERS, "request line + headers; beyond: 431")                                        \
    X(body_bytes_max, "max-body-bytes", "CATRACA_MAX_BODY_BYTES", 65536, 1024, 1048576,            \
      CMD_LISTENERS, "request body; beyond: 413")                                                  \
    X(header_timeout_ms, "header-timeout-ms", "CATRACA_HEADER_TIMEOUT_MS", 10000, 100, 600000,     \
      CMD_LISTENERS, "total time to receive a request's line and headers; then 408 and closed")    \
    X(body_timeout_ms, "body-timeout-ms", "CATRACA_BODY_TIMEOUT_MS", 10000, 100, 600000,           \
      CMD_LISTENERS, "total time to receive a body (408), and for a client to read an answer")     \
    X(idle_timeout_ms, "idle-timeout-ms", "CATRACA_IDLE_TIMEOUT_MS", 60000, 100, 3600000,          \
      CMD_LISTENERS, "a keep-alive connection idle this long between requests is closed")          \
    X(waiters_max, "max-waiters", "CATRACA_MAX_WAITERS", 20000, 1, 1000000, CMD_API,               \
      "parked long-polls, SSE streams and answers; beyond: 503")                                   \
    X(queue_max, "queue-max", "CATRACA_QUEUE_MAX", 20000, 1, 1000000, CMD_API,                     \
      "requests waiting for the log append; beyond: 503")                                          \
    X(append_batch_max, "append-batch-max", "CATRACA_APPEND_BATCH_MAX", 2048, 1, 65536, CMD_API,   \
      "requests per log transaction (group commit)")                                               \
    X(append_threads, "append-threads", "CATRACA_APPEND_THREADS", 0, 0, 16, CMD_API,               \
      "group commits in flight, each on its own log connection; 0: 1 serve, 4 gateway")            \
    X(worker_batch_max, "worker-batch-max", "CATRACA_WORKER_BATCH_MAX", 4096, 1, 65536,            \
      CMD_DECIDERS, "log entries per store transaction")                                           \
    X(snapshot_every, "snapshot-every", "CATRACA_SNAPSHOT_EVERY", 100000, 1, 100000000,            \
      CMD_DECIDERS, "commands between engine snapshots")                                           \
    X(events_max, "max-events", "CATRACA_MAX_EVENTS", 64, 1, 4096, CMD_LISTENERS,                  \
      "events (partitions)")                                                                       \
    X(purchases_max, "max-purchases-per-event", "CATRACA_MAX_PURCHASES_PER_EVENT", 1048576, 16,    \
      67108864, CMD_DECIDERS | CMD_AUDIT,                                                          \
      "purchases remembered per event (engine memory ~90 B each)")                                 \
    X(customers_max, "max-customers-per-event", "CATRACA_MAX_CUSTOMERS_PER_EVENT", 1048576, 16,    \
      67108864, CMD_DECIDERS | CMD_AUDIT, "distinct customers per event")                          \
    X(rate_customer, "rate-customer", "CATRACA_RATE_CUSTOMER", 10, 0, 1000000, CMD_API,            \
      "purchase requests/s per customer; 0 disables")                                              \
    X(rate_customer_burst, "rate-customer-burst", "CATRACA_RATE_CUSTOMER_BURST", 20, 1, 1000000,   \
      CMD_API, "burst per customer")                                                               \
    X(rate_ip, "rate-ip", "CATRACA_RATE_IP", 0, 0, 1000000, CMD_API,                               \
      "requests/s per client IP; 0 disables (off: behind a proxy all share one)")                  \
    X(rate_ip_burst, "rate-ip-burst", "CATRACA_RATE_IP_BURST", 100, 1, 1000000, CMD_API,           \
      "burst per client IP")                                                                       \
    X(rate_table_max, "rate-table-max", "CATRACA_RATE_TABLE_MAX", 100000, 16, 10000000, CMD_API,   \
      "keys tracked by each rate limiter")                                                         \
    X(challenge_max_number, "challenge-max-number", "CATRACA_CHALLENGE_MAX_NUMBER", 100000, 10,    \
      10000000, CMD_API, "proof-of-work difficulty (ALTCHA maxnumber)")                            \
    X(challenge_ttl_s, "challenge-ttl-seconds", "CATRACA_CHALLENGE_TTL_SECONDS", 300, 10, 3600,    \
      CMD_API, "challenge validity")                                                               \
    X(challenge_replay_max, "challenge-replay-max", "CATRACA_CHALLENGE_REPLAY_MAX", 100000, 16,    \
      10000000, CMD_API, "solved challenges remembered against reuse")                             \
    X(lease_ms, "lease-ms", "CATRACA_LEASE_MS", 5000, 300, 600000, CMD_WORKER,                     \
      "worker: a partition lease lasts this long unrenewed (failover time)")                       \
    X(log_timeout_ms, "log-timeout-ms", "CATRACA_LOG_TIMEOUT_MS", 2000, 10, 60000,                 \
      CMD_GATEWAY | CMD_WORKER | CMD_AUDIT,                                                        \
      "distributed: the log's and the bus's connect, command and acknowledgement time-out (old "   \
      "name, still read: --redis-timeout-ms, CATRACA_REDIS_TIMEOUT_MS)")                           \
    X(wait_replicas, "wait-replicas", "CATRACA_WAIT_REPLICAS", 0, 0, 16, CMD_GATEWAY,              \
      "distributed, Redis only: replicas that must have each append before 202 (WAIT); 0 off")     \
    X(kafka_replication_factor, "kafka-replication-factor", "CATRACA_KAFKA_REPLICATION_FACTOR", 3, \
      1, 16, CMD_GATEWAY | CMD_WORKER, "Kafka: replicas of each topic this process creates")       \
    X(kafka_min_insync_replicas, "kafka-min-insync-replicas", "CATRACA_KAFKA_MIN_INSYNC_REPLICAS", \
      2, 1, 16, CMD_GATEWAY | CMD_WORKER,                                                          \
      "Kafka: min.insync.replicas of the topics it creates: replicas that must have each append "  \
      "before 202 (<= --kafka-replication-factor)")

/* X(field, option, env, default, commands, help) for string options. */
#define CONFIG_STRINGS(X)                                                                          \
    X(listen, "listen", "CATRACA_LISTEN", "127.0.0.1:8080", CMD_LISTENERS,                         \
      "ip:port or [ipv6]:port")                                                                    \
    X(data, "data", "CATRACA_DATA", "./var", CMD_SERVE | CMD_AUDIT,                                \
      "directory of the SQLite database")                                                          \
    X(jwt_secret, "jwt-secret", "CATRACA_JWT_SECRET", "", CMD_SECRET_READERS,                      \
      "HS256 secret, >= 32 bytes (openssl rand -base64 48); visible in ps: prefer the variable "   \
      "or --jwt-secret-file")                                                                      \
    X(jwt_secret_file, "jwt-secret-file", "CATRACA_JWT_SECRET_FILE", "", CMD_SECRET_READERS,       \
      "file holding the HS256 secret (one trailing newline ignored)")                              \
    X(sync, "sync", "CATRACA_SYNC", "full", CMD_SERVE,                                             \
      "SQLite synchronous: full (fsync each commit), normal")                                      \
    X(challenge, "challenge", "CATRACA_CHALLENGE", "off", CMD_API,                                 \
      "proof-of-work on purchases: on, off")                                                       \
    X(demo, "demo", "CATRACA_DEMO", "off", CMD_API,                                                \
      "demo token endpoint and pages, with a random secret of its own: on, off")                   \
    X(demo_public, "demo-public", "CATRACA_DEMO_PUBLIC", "off", CMD_API,                           \
      "let --demo listen on a non-loopback address (anyone there can mint admin tokens): on, off") \
    X(cors_origin, "cors-origin", "CATRACA_CORS_ORIGIN", "", CMD_API,                              \
      "browser origins allowed to call the API, exact, comma-separated: https://shop.example")     \
    X(redis, "redis", "CATRACA_REDIS", "", CMD_DISTRIBUTED,                                        \
      "distributed: the log (and bus) on Redis, redis://host:port; or --kafka")                    \
    X(kafka, "kafka", "CATRACA_KAFKA", "", CMD_DISTRIBUTED,                                        \
      "distributed: the log (and bus) on Kafka, host:port[,host:port...]; or --redis")             \
    X(kafka_topic_prefix, "kafka-topic-prefix", "CATRACA_KAFKA_TOPIC_PREFIX", "catraca.",          \
      CMD_DISTRIBUTED, "Kafka: the start of every topic's name")                                   \
    X(limits_redis, "limits-redis", "CATRACA_LIMITS_REDIS", "", CMD_GATEWAY,                       \
      "distributed: the Redis holding the rate limits and spent challenges all gateways share; "   \
      "default --redis; with --kafka and none, each gateway keeps its own")                        \
    X(postgres, "postgres", "CATRACA_POSTGRES", "", CMD_DISTRIBUTED | CMD_MIGRATE,                 \
      "distributed: the store, libpq conninfo")                                                    \
    X(worker_id, "worker-id", "CATRACA_WORKER_ID", "", CMD_WORKER,                                 \
      "worker: unique name (default host-pid)")                                                    \
    X(tls_cert, "tls-cert", "CATRACA_TLS_CERT", "", CMD_LISTENERS,                                 \
      "HTTPS: certificate chain, PEM (with --tls-key)")                                            \
    X(tls_key, "tls-key", "CATRACA_TLS_KEY", "", CMD_LISTENERS,                                    \
      "HTTPS: private key, PEM (with --tls-cert)")                                                 \
    X(trusted_proxy, "trusted-proxy", "CATRACA_TRUSTED_PROXY", "", CMD_API,                        \
      "proxies (IPs, CIDRs, comma-separated) whose X-Forwarded-For --rate-ip believes")            \
    X(payment_url, "payment-url", "CATRACA_PAYMENT_URL", "", CMD_API,                              \
      "buyer page: pay a hold at this http(s) URL; {id} becomes the purchase id")                  \
    X(log_format, "log-format", "CATRACA_LOG_FORMAT", "logfmt", CMD_LOGGERS,                       \
      "log lines on stderr: logfmt, json")                                                         \
    X(access_log, "access-log", "CATRACA_ACCESS_LOG", "off", CMD_LISTENERS,                        \
      "one log line per HTTP request: on, off")                                                    \
    X(sentry_dsn, "sentry-dsn", "CATRACA_SENTRY_DSN", "", CMD_LOGGERS,                             \
      "send errors and crashes to Sentry: http(s)://key@host[:port]/project")                      \
    X(sentry_environment, "sentry-environment", "CATRACA_SENTRY_ENVIRONMENT", "production",        \
      CMD_LOGGERS, "Sentry: the environment events are tagged with")                               \
    X(sentry_spool, "sentry-spool", "CATRACA_SENTRY_SPOOL", "", CMD_LOGGERS,                       \
      "Sentry: file a crash report is written to, sent at next start (default: in --data)")        \
    X(receipts, "receipts", "CATRACA_RECEIPTS", "on", CMD_API,                                     \
      "signed receipts on every 202 and the log's Merkle tree: on, off")                           \
    X(receipt_key, "receipt-key", "CATRACA_RECEIPT_KEY", "", CMD_API | CMD_AUDIT,                  \
      "Ed25519 key (PEM) signing receipts (audit: checking them); default DATA/receipt-key.pem, "  \
      "made if absent; gateways of one system share one file")

/* Where an option's value came from; a higher source overrides a lower one. */
enum config_source {
    CONFIG_FROM_DEFAULT = 0,
    CONFIG_FROM_FILE = 1,        /* --config FILE */
    CONFIG_FROM_ENVIRONMENT = 2, /* CATRACA_* */
    CONFIG_FROM_FLAG = 3,        /* --option */
};

enum config_option {
#define CONFIG_INTEGER_ID(field, option, env, def, min, max, commands, help) CONFIG_OPTION_##field,
    CONFIG_INTEGERS(CONFIG_INTEGER_ID)
#undef CONFIG_INTEGER_ID
#define CONFIG_STRING_ID(field, option, env, def, commands, help) CONFIG_OPTION_##field,
        CONFIG_STRINGS(CONFIG_STRING_ID)
#undef CONFIG_STRING_ID
            CONFIG_OPTION_COUNT
};

struct config {
#define CONFIG_INTEGER_FIELD(field, option, env, def, min, max, commands, help) int64_t field;
    CONFIG_INTEGERS(CONFIG_INTEGER_FIELD)
#undef CONFIG_INTEGER_FIELD
#define CONFIG_STRING_FIELD(field, option, env, def, commands, help) char field[256];
    CONFIG_STRINGS(CONFIG_STRING_FIELD)
#undef CONFIG_STRING_FIELD
    uint8_t sources[CONFIG_OPTION_COUNT]; /* enum config_source of each option */
    bool is_demo;
    bool is_demo_public;
    bool is_challenge_on;
    bool is_access_log;
    bool is_receipts_on;
    /* The HS256 secret the command uses (serve and gateway outside demo mode, token): from
     * --jwt-secret or --jwt-secret-file, whichever has the higher source; checked by
     * jwt_secret_weakness(). Empty otherwise (demo mode draws its own). */
    uint8_t secret[JWT_SECRET_MAX];
    size_t secret_length;
};

/*
 * Defaults, then the --config file (KEY=VALUE lines, KEY a CATRACA_* variable), then the
 * environment, then argv (from index `first`), for `command` (one enum config_command bit;
 * `name` is its name in messages). "--demo" alone means "--demo on". Then the rules between
 * options, and the secret (read from its file, refused when weak). Returns 0, 1 when --help was
 * printed, or -1 after a clear error on stderr (the caller exits 2).
 */
int config_parse(struct config *config, int argc, char **argv, int first, unsigned command,
                 const char *name);
/* "host:port" or "[ipv6]:port" -> parts; 0, or -1 after a message. */
int config_split_listen(const char *listen, char host[64], uint16_t *port);

/* The parts of config_parse, for tests and the fuzzer: every default; then the text of a
 * --config file (NUL-terminated, modified in place; path names it in messages), 0 or -1 after
 * a message. */
void config_set_defaults(struct config *config);
int config_apply_text(struct config *config, char *text, const char *path, unsigned command);

/* The options `command` reads, each with its variable, default and bound. */
void config_print_help(FILE *out, unsigned command, const char *name);
/* The same without the usage line (for a command that adds options of its own). */
void config_print_options(FILE *out, unsigned command);

#endif
