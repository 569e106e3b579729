/*
 * bus_kafka.c - the bus on Apache Kafka. Contract in bus_kafka.h and bus.h.
 */
#include "log/bus_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/logline.h"
#include "log/log_kafka.h"

struct bus_kafka {
    struct backend_options options; /* strings point at the copies below */
    char bootstrap[LOG_KAFKA_BOOTSTRAP_MAX];
    char prefix[LOG_KAFKA_PREFIX_MAX + 1];
    rd_kafka_t *producer; /* NULL: made on the next call that produces */
    /* unique_number's record: its report */
    bool is_reported;
    int64_t reported_offset;
    rd_kafka_resp_err_t reported_error;
    unsigned failed_publishes; /* publish_commit reports that failed since the last call */
};

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void sys_topic(const struct bus_kafka *bus, const char *name, char out[LOG_KAFKA_TOPIC_MAX])
{
    snprintf(out, LOG_KAFKA_TOPIC_MAX, "%ssys.%s", bus->prefix, name);
}

#define TAG_INSTANCE ((void *)1)
#define UNIQUE_RETRY_PAUSE_MS 100
#define TAG_COMMIT ((void *)2)

static void on_delivery(rd_kafka_t *client, const rd_kafka_message_t *message, void *opaque)
{
    (void)client;
    struct bus_kafka *bus = opaque;
    if (message->_private == TAG_INSTANCE) {
        bus->is_reported = true;
        bus->reported_offset = message->offset;
        bus->reported_error = message->err;
    } else if (message->_private == TAG_COMMIT && message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        bus->failed_publishes++;
    }
}

static int producer_ready(struct bus_kafka *bus, const char *topic)
{
    if (bus->producer == NULL)
        bus->producer = log_kafka_client_new(&bus->options, true, on_delivery, bus);
    if (bus->producer == NULL)
        return CATRACA_E_UNAVAILABLE;
    const char *names[] = {topic};
    return log_kafka_ensure_topics(bus->producer, &bus->options, names, 1);
}

static int kafka_unique_number(void *context, uint64_t *out)
{
    struct bus_kafka *bus = context;
    char topic[LOG_KAFKA_TOPIC_MAX];
    sys_topic(bus, "instances", topic);
    /* message.timeout.ms is timeout_ms: each report (success or failure) comes by then.
     * Every failure is tried again for up to BUS_KAFKA_UNIQUE_MS, since a gateway asks once,
     * at start, maybe while its cluster starts too: no partition leader yet, the producer id
     * still loading, or a broker whose metadata does not show the topic made a moment ago
     * (then librdkafka refuses the produce at once: seen right after the topic's creation on
     * a loaded 3-broker cluster). */
    int budget_ms = bus->options.timeout_ms > BUS_KAFKA_UNIQUE_MS ? bus->options.timeout_ms
                                                                 : BUS_KAFKA_UNIQUE_MS;
    int64_t deadline = monotonic_ms() + budget_ms + 1000;
    char first_failure[128] = "";
    for (int attempt = 1;; attempt++) {
        const char *why = "the topic could not be made or checked";
        if (producer_ready(bus, topic) == 0) {
            bus->is_reported = false;
            rd_kafka_resp_err_t refused = rd_kafka_producev(
                bus->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_VALUE((void *)"i", 1), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE(TAG_INSTANCE), RD_KAFKA_V_END);
            if (refused == RD_KAFKA_RESP_ERR_NO_ERROR) {
                while (!bus->is_reported && monotonic_ms() < deadline)
                    rd_kafka_poll(bus->producer, 20);
                if (!bus->is_reported) {
                    /* not waiting for the broker threads (a blocking purge has no bound):
                     * a number handed out late is only skipped */
                    rd_kafka_purge(bus->producer, RD_KAFKA_PURGE_F_QUEUE |
                                                      RD_KAFKA_PURGE_F_INFLIGHT |
                                                      RD_KAFKA_PURGE_F_NON_BLOCKING);
                    rd_kafka_flush(bus->producer, 1000);
                    logline(LOGLINE_WARN, "bus_kafka", "no instance number: no delivery report",
                            "topic", topic, NULL);
                    return CATRACA_E_UNAVAILABLE;
                }
                if (bus->reported_error == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    bus->reported_offset >= 0) {
                    *out = (uint64_t)bus->reported_offset;
                    if (attempt > 1) { /* what a start on a young cluster went through */
                        char attempts[16];
                        snprintf(attempts, sizeof(attempts), "%d", attempt);
                        logline(LOGLINE_INFO, "bus_kafka", "instance number taken after retries",
                                "attempts", attempts, "first_error", first_failure, NULL);
                    }
                    return 0;
                }
                why = rd_kafka_err2str(bus->reported_error);
            } else {
                why = rd_kafka_err2str(refused);
            }
        }
        if (first_failure[0] == '\0')
            snprintf(first_failure, sizeof(first_failure), "%s", why);
        if (monotonic_ms() + UNIQUE_RETRY_PAUSE_MS >= deadline) {
            logline(LOGLINE_WARN, "bus_kafka", "no instance number", "topic", topic, "error",
                    why, NULL);
            return CATRACA_E_UNAVAILABLE;
        }
        struct timespec pause = {0, UNIQUE_RETRY_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static int kafka_publish_commit(void *context, const uint8_t *message, size_t length)
{
    struct bus_kafka *bus = context;
    if (length > BUS_MESSAGE_MAX || (message == NULL && length > 0))
        return CATRACA_E_INVALID;
    char topic[LOG_KAFKA_TOPIC_MAX];
    sys_topic(bus, "commits", topic);
    int error = producer_ready(bus, topic);
    if (error != 0)
        return error;
    rd_kafka_poll(bus->producer, 0); /* reports of earlier publishes */
    unsigned failed = bus->failed_publishes;
    bus->failed_publishes = 0;
    if (rd_kafka_producev(bus->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                          RD_KAFKA_V_VALUE((void *)message, length),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(TAG_COMMIT),
                          RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return CATRACA_E_UNAVAILABLE;
    return failed > 0 ? CATRACA_E_UNAVAILABLE : 0;
}

/* ---- subscriptions ------------------------------------------------------------------------- */

struct subscription {
    struct bus_kafka *bus;
    const char *topic;
    bus_message_fn on_message; /* sys.commits */
    bus_event_fn on_event;     /* sys.appended */
    void *callback_context;
    const atomic_int *stop;
    atomic_int *is_subscribed;
};

static void set_subscribed(const struct subscription *s, int value)
{
    if (s->is_subscribed != NULL)
        atomic_store(s->is_subscribed, value);
}

static void deliver(const struct subscription *s, const rd_kafka_message_t *message)
{
    if (s->on_message != NULL) {
        s->on_message(s->callback_context, message->payload, message->len);
        return;
    }
    /* "<event>\0<end: 8 bytes big-endian>" (log_kafka.c's announce_appended); a bare event
     * id is taken too. Anything else is ignored. */
    char event[CATRACA_ID_MAX + 1];
    const uint8_t *bytes = message->payload;
    size_t length = bytes != NULL ? strnlen((const char *)bytes, message->len) : 0;
    if (length == 0 || length > CATRACA_ID_MAX)
        return;
    memcpy(event, bytes, length);
    event[length] = '\0';
    if (length + 1 + 8 == message->len) {
        uint64_t end = 0;
        for (size_t i = 0; i < 8; i++)
            end = end << 8 | bytes[length + 1 + i];
        if (end <= INT64_MAX)
            log_kafka_note_end(s->bus->prefix, event, (int64_t)end);
    } else if (length != message->len) {
        return;
    }
    s->on_event(s->callback_context, event);
}

static bool is_stopped(const struct subscription *s)
{
    return atomic_load(s->stop) != 0;
}

/* One connection's life: returns when stopped (0) or when it should be made again. */
static int subscribe_once(const struct subscription *s)
{
    rd_kafka_t *consumer = log_kafka_client_new(&s->bus->options, false, NULL, NULL);
    if (consumer == NULL)
        return CATRACA_E_UNAVAILABLE;
    const char *names[] = {s->topic};
    int error = log_kafka_ensure_topics(consumer, &s->bus->options, names, 1);
    int64_t low = 0, high = 0;
    rd_kafka_t *querier = NULL; /* log_kafka_query_watermarks: bounded, unlike librdkafka's */
    if (error == 0 &&
        log_kafka_query_watermarks(&s->bus->options, &querier, s->topic,
                                   s->bus->options.timeout_ms, &low, &high) != 0)
        error = CATRACA_E_UNAVAILABLE;
    /* From the end, with the simple consumer: no group, nothing committed (log_kafka.c). */
    rd_kafka_topic_t *handle = error == 0 ? rd_kafka_topic_new(consumer, s->topic, NULL) : NULL;
    if (error == 0 && (handle == NULL || rd_kafka_consume_start(handle, 0, high) != 0))
        error = CATRACA_E_UNAVAILABLE;
    bool is_started = error == 0;
    set_subscribed(s, error == 0);
    int64_t checked_at = monotonic_ms();
    while (error == 0 && !is_stopped(s)) {
        rd_kafka_message_t *message = rd_kafka_consume(handle, 0, BUS_POLL_MS);
        if (message != NULL) {
            if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                deliver(s, message);
            else if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
                error = CATRACA_E_UNAVAILABLE; /* the topic was truncated: start again at its end */
            rd_kafka_message_destroy(message);
        }
        if (monotonic_ms() - checked_at >= BUS_KAFKA_CHECK_MS) {
            /* Readiness: can the partition's leader be reached now? */
            int timeout = s->bus->options.timeout_ms < BUS_POLL_MS ? s->bus->options.timeout_ms
                                                                   : BUS_POLL_MS;
            set_subscribed(s, log_kafka_query_watermarks(&s->bus->options, &querier, s->topic,
                                                         timeout, &low, &high) == 0);
            checked_at = monotonic_ms();
        }
    }
    set_subscribed(s, 0);
    /* bounded (log_kafka_teardown): a stuck stop or destroy must not keep a stop waiting */
    if (querier != NULL)
        log_kafka_teardown(querier, NULL, false, s->bus->options.timeout_ms,
                           "destroying a bus subscription's watermark client");
    log_kafka_teardown(consumer, handle, is_started, s->bus->options.timeout_ms,
                       "closing a bus subscription's consumer");
    return is_stopped(s) ? 0 : error;
}

static void backoff(const struct subscription *s)
{
    int64_t until = monotonic_ms() + BUS_KAFKA_BACKOFF_MS;
    while (!is_stopped(s) && monotonic_ms() < until) {
        struct timespec pause = {0, 20 * 1000000L};
        nanosleep(&pause, NULL);
    }
}

static int subscribe_loop(const struct subscription *s)
{
    if (s->stop == NULL)
        return CATRACA_E_INVALID;
    while (!is_stopped(s)) {
        if (subscribe_once(s) != 0 && !is_stopped(s)) {
            logline(LOGLINE_WARN, "bus_kafka", "subscription down, reconnecting", "topic",
                    s->topic, NULL);
            backoff(s);
        }
    }
    set_subscribed(s, 0);
    return 0;
}

static int kafka_subscribe_commits(void *context, bus_message_fn on_message, void *callback_context,
                                   const atomic_int *stop, atomic_int *is_subscribed)
{
    struct bus_kafka *bus = context;
    char topic[LOG_KAFKA_TOPIC_MAX];
    sys_topic(bus, "commits", topic);
    if (on_message == NULL)
        return CATRACA_E_INVALID;
    struct subscription s = {bus, topic, on_message, NULL, callback_context, stop, is_subscribed};
    return subscribe_loop(&s);
}

static int kafka_wait_appended(void *context, bus_event_fn on_event, void *callback_context,
                               const atomic_int *stop, atomic_int *is_subscribed)
{
    struct bus_kafka *bus = context;
    char topic[LOG_KAFKA_TOPIC_MAX];
    sys_topic(bus, "appended", topic);
    if (on_event == NULL)
        return CATRACA_E_INVALID;
    struct subscription s = {bus, topic, NULL, on_event, callback_context, stop, is_subscribed};
    return subscribe_loop(&s);
}

static void kafka_close(void *context)
{
    struct bus_kafka *bus = context;
    if (bus == NULL)
        return;
    if (bus->producer != NULL) {
        rd_kafka_flush(bus->producer, bus->options.timeout_ms); /* commits still queued */
        rd_kafka_purge(bus->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                          RD_KAFKA_PURGE_F_NON_BLOCKING); /* no unbounded wait */
        rd_kafka_flush(bus->producer, 1000);
        log_kafka_teardown(bus->producer, NULL, false, bus->options.timeout_ms,
                           "destroying a bus producer");
    }
    free(bus);
}

static const struct bus_ops kafka_bus_ops = {
    .unique_number = kafka_unique_number,
    .publish_commit = kafka_publish_commit,
    .subscribe_commits = kafka_subscribe_commits,
    .wait_appended = kafka_wait_appended,
    .close = kafka_close,
};

int bus_kafka_open(const struct backend_options *options, struct catraca_bus *out)
{
    if (out == NULL || log_kafka_options_check(options) != 0)
        return CATRACA_E_INVALID;
    struct bus_kafka *bus = calloc(1, sizeof(*bus));
    if (bus == NULL)
        return CATRACA_E_NOMEM;
    bus->options = *options;
    snprintf(bus->bootstrap, sizeof(bus->bootstrap), "%s", options->kafka_bootstrap);
    snprintf(bus->prefix, sizeof(bus->prefix), "%s", options->kafka_topic_prefix);
    bus->options.kafka_bootstrap = bus->bootstrap;
    bus->options.kafka_topic_prefix = bus->prefix;
    bus->options.redis_url = NULL;
    *out = (struct catraca_bus){&kafka_bus_ops, bus};
    return 0;
}
