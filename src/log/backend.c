/*
 * backend.c - contract in backend.h: the one file that maps the options to a
 * log adapter and a bus adapter.
 *
 * Kafka is optional at build time: CMake defines CATRACA_HAVE_KAFKA when it
 * builds log_kafka.c and bus_kafka.c (librdkafka). Without it --kafka is
 * refused at start with a clear message, never half-run.
 */
#include "log/backend.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "log/bus_redis.h"
#include "log/log_redis.h"

#ifdef CATRACA_HAVE_KAFKA
#include "log/bus_kafka.h"
#include "log/log_kafka.h"
#endif

#define KAFKA_SETTING_MAX 16 /* replication factor and min.insync.replicas: 1..16 */

static bool is_given(const char *value)
{
    return value != NULL && value[0] != '\0';
}

static bool is_redis(const struct backend_options *options)
{
    return is_given(options->redis_url);
}

#ifdef CATRACA_HAVE_KAFKA
/* Kafka's topic names: [A-Za-z0-9._-] (the prefix is the start of every topic's name). */
static bool is_topic_prefix(const char *prefix)
{
    if (prefix == NULL || strlen(prefix) > 100)
        return false;
    for (const char *at = prefix; *at != '\0'; at++)
        if (!((*at >= 'a' && *at <= 'z') || (*at >= 'A' && *at <= 'Z') ||
              (*at >= '0' && *at <= '9') || *at == '.' || *at == '_' || *at == '-'))
            return false;
    return true;
}

/* host:port[,host:port...], each part with a host and a port of 1..65535. */
static bool is_bootstrap(const char *bootstrap)
{
    for (const char *at = bootstrap;;) {
        size_t length = strcspn(at, ",");
        const char *colon = NULL;
        for (size_t i = 0; i < length; i++)
            if (at[i] == ':')
                colon = at + i;
        size_t digits = colon != NULL ? (size_t)(at + length - colon - 1) : 0;
        if (colon == NULL || colon == at || digits == 0 || digits > 5)
            return false;
        long port = 0;
        for (size_t i = 1; i <= digits; i++) {
            if (colon[i] < '0' || colon[i] > '9')
                return false;
            port = port * 10 + (colon[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
        if (at[length] == '\0')
            return true;
        at += length + 1;
    }
}
#endif

static int refuse(char *message, size_t message_size, const char *why)
{
    if (message != NULL && message_size > 0)
        snprintf(message, message_size, "%s", why);
    return CATRACA_E_INVALID;
}

int backend_check(const struct backend_options *options, char *message, size_t message_size)
{
    if (options == NULL)
        return refuse(message, message_size, "no options");
    bool has_redis = is_redis(options), has_kafka = is_given(options->kafka_bootstrap);
    if (has_redis && has_kafka)
        return refuse(message, message_size,
                      "give one log: --redis URL or --kafka BOOTSTRAP, not both");
    if (!has_redis && !has_kafka)
        return refuse(message, message_size,
                      "--redis is required (redis://host:port), or --kafka BOOTSTRAP "
                      "(host:port[,host:port...]) for a Kafka log: exactly one");
    if (options->timeout_ms < 1)
        return refuse(message, message_size, "--log-timeout-ms must be at least 1");
    if (has_redis) {
        char host[LOG_REDIS_HOST_MAX];
        int port = 0;
        if (log_redis_parse_url(options->redis_url, host, &port) != 0)
            return refuse(message, message_size,
                          "--redis must be redis://host[:port][/0] or host[:port] (database 0, "
                          "no password)");
        if (options->wait_replicas < 0)
            return refuse(message, message_size, "--wait-replicas must be 0 or more");
        return 0;
    }
#ifndef CATRACA_HAVE_KAFKA
    return refuse(message, message_size, "this binary was built without Kafka");
#else
    if (!is_bootstrap(options->kafka_bootstrap))
        return refuse(message, message_size,
                      "--kafka must be host:port[,host:port...] (the bootstrap brokers)");
    if (!is_topic_prefix(options->kafka_topic_prefix))
        return refuse(message, message_size,
                      "--kafka-topic-prefix may hold letters, digits, '.', '_' and '-' only "
                      "(at most 100)");
    if (options->kafka_replication_factor < 1 ||
        options->kafka_replication_factor > KAFKA_SETTING_MAX ||
        options->kafka_min_insync_replicas < 1 ||
        options->kafka_min_insync_replicas > options->kafka_replication_factor)
        return refuse(message, message_size,
                      "--kafka-min-insync-replicas must be from 1 to --kafka-replication-factor "
                      "(1..16)");
    if (options->wait_replicas != 0)
        return refuse(message, message_size,
                      "--wait-replicas is Redis's WAIT; with --kafka, "
                      "--kafka-min-insync-replicas says how many replicas a 202 waits for");
    return 0;
#endif
}

const char *backend_name(const struct backend_options *options)
{
    return is_redis(options) ? "redis" : "kafka";
}

int backend_open_log(const struct backend_options *options, size_t read_max, bool is_appender,
                     struct catraca_log *out)
{
    if (backend_check(options, NULL, 0) != 0)
        return CATRACA_E_INVALID;
    if (is_redis(options)) {
        struct log_redis_options redis = {
            .url = options->redis_url,
            .timeout_ms = options->timeout_ms,
            .read_max = read_max,
            .wait_replicas = is_appender ? options->wait_replicas : 0,
            .wait_timeout_ms = options->timeout_ms,
        };
        return log_redis_open(&redis, out);
    }
#ifdef CATRACA_HAVE_KAFKA
    return log_kafka_open(options, read_max, is_appender, out);
#else
    return CATRACA_E_INVALID;
#endif
}

int backend_open_bus(const struct backend_options *options, struct catraca_bus *out)
{
    if (backend_check(options, NULL, 0) != 0)
        return CATRACA_E_INVALID;
    if (is_redis(options)) {
        struct bus_redis_options redis = {.url = options->redis_url,
                                          .timeout_ms = options->timeout_ms};
        return bus_redis_open(&redis, out);
    }
#ifdef CATRACA_HAVE_KAFKA
    return bus_kafka_open(options, out);
#else
    return CATRACA_E_INVALID;
#endif
}
