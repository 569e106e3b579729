/*
 * backend.h - the distributed mode's choice of log and bus, in one place.
 *
 * Gateways, workers and audit open their logs and buses here and never name
 * a backend: the options say which one (--redis URL or --kafka BOOTSTRAP,
 * exactly one), and this file is the only one that maps that to an adapter
 * (log_redis.c + bus_redis.c, or log_kafka.c + bus_kafka.c). A new backend
 * is a log adapter that passes tests/log/conformance_log.c, a bus adapter
 * that passes tests/log/conformance_bus.c, and one more case here
 * (docs/DEPLOY.md, "Another log").
 */
#ifndef CATRACA_LOG_BACKEND_H
#define CATRACA_LOG_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "log/bus.h"
#include "log/log.h"

struct backend_options {
    const char *redis_url;          /* "" or NULL: not Redis */
    const char *kafka_bootstrap;    /* "" or NULL: not Kafka; host:port[,host:port...] */
    const char *kafka_topic_prefix; /* topics are named <prefix>...; default "catraca." */
    int kafka_replication_factor;   /* topics this process creates; >= 1 */
    int kafka_min_insync_replicas;  /* topics this process creates; >= 1, <= replication */
    int timeout_ms;                 /* connect, command and acknowledgement time-out, >= 1 */
    int wait_replicas;              /* Redis only: WAIT for this many replicas (0: off) */
    /* Kafka readers: the prefetch of each assigned partition in KiB (queued.max.messages.kbytes),
     * 0 for LOG_KAFKA_PREFETCH_KBYTES. A reader of a whole log (catraca audit) sets a large one:
     * see log_kafka_client_new. */
    int kafka_prefetch_kbytes;
};

/* Exactly one backend set: 0, else CATRACA_E_INVALID with why in message. */
int backend_check(const struct backend_options *options, char *message, size_t message_size);

/* "redis" or "kafka" (for log lines and /metrics labels); the options must pass backend_check. */
const char *backend_name(const struct backend_options *options);

/*
 * A log handle for one thread. read_max bounds one read(); is_appender asks
 * for the append settings (Redis WAIT, Kafka's acks=all producer). 0,
 * CATRACA_E_INVALID or CATRACA_E_NOMEM; never fails because the backend is down.
 */
int backend_open_log(const struct backend_options *options, size_t read_max, bool is_appender,
                     struct catraca_log *out);

/* A bus handle for one thread. Same errors as backend_open_log. */
int backend_open_bus(const struct backend_options *options, struct catraca_bus *out);

#endif
