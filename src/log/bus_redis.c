/*
 * bus_redis.c - the bus on Redis. Contract in bus_redis.h and bus.h.
 *
 * Every reply's type is checked before use (a reply of another shape is
 * CATRACA_E_CORRUPT or skipped, never a crash). No reply (I/O error,
 * time-out) is CATRACA_E_UNAVAILABLE and drops the connection.
 */
#include "log/bus_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/limits.h"
#include "core/logline.h"
#include "log/log_redis.h"
#include "log/redis_conn.h"

#define INSTANCES_KEY "catraca:instances"
#define COMMITS_CHANNEL "catraca:commits"
#define RECONNECT_BACKOFF_MS 200 /* a subscription's pause between connection attempts */

struct bus_redis {
    char host[LOG_REDIS_HOST_MAX];
    int port;
    char address[LOG_REDIS_HOST_MAX + 8]; /* "host:port", for log lines */
    int timeout_ms;
    redisContext *redis; /* unique_number and publish_commit; NULL: the next call connects */
    bool is_down;        /* the last connection attempt failed (logged once) */
};

static bool is_set(const atomic_int *flag)
{
    return atomic_load_explicit(flag, memory_order_acquire) != 0;
}

static void set_flag(atomic_int *flag, int value)
{
    if (flag != NULL)
        atomic_store_explicit(flag, value, memory_order_release);
}

static bool is_word(const redisReply *reply, const char *word)
{
    size_t length = strlen(word);
    return redis_reply_is_string(reply) && reply->len == length && memcmp(reply->str, word, length) == 0;
}

/* ---- the handle's own connection --------------------------------------------------------- */

static void disconnect(struct bus_redis *bus)
{
    if (bus->redis != NULL)
        redisFree(bus->redis);
    bus->redis = NULL;
}

static int ensure_connected(struct bus_redis *bus)
{
    if (bus->redis != NULL && redis_conn_is_closed_by_server(bus->redis))
        disconnect(bus);
    if (bus->redis != NULL)
        return 0;
    char why[128];
    bus->redis = redis_conn_open(bus->host, bus->port, bus->timeout_ms, bus->timeout_ms, why);
    if (bus->redis == NULL) {
        if (!bus->is_down)
            logline(LOGLINE_WARN, "bus_redis", "the bus (Redis) is unavailable", "address",
                    bus->address, "error", why, NULL);
        bus->is_down = true;
        return CATRACA_E_UNAVAILABLE;
    }
    bus->is_down = false;
    return 0;
}

/* Runs a command; NULL after an I/O error or time-out, and the connection is dropped. */
static redisReply *command_argv(struct bus_redis *bus, int argc, const char **argv,
                                const size_t *lengths)
{
    if (ensure_connected(bus) != 0)
        return NULL;
    redisReply *reply = redisCommandArgv(bus->redis, argc, argv, lengths);
    if (reply == NULL) {
        logline(LOGLINE_WARN, "bus_redis", "Redis command failed", "command", argv[0], "error",
                bus->redis->errstr, NULL);
        disconnect(bus);
    }
    return reply;
}

static int redis_unique_number(void *context, uint64_t *out)
{
    struct bus_redis *bus = context;
    const char *argv[] = {"INCR", INSTANCES_KEY};
    size_t lengths[] = {4, strlen(INSTANCES_KEY)};
    redisReply *reply = command_argv(bus, 2, argv, lengths);
    int error = redis_reply_check(reply, REDIS_REPLY_INTEGER, "bus_redis");
    if (error == 0 && reply->integer <= 0)
        error = CATRACA_E_CORRUPT;
    if (error == 0)
        *out = (uint64_t)reply->integer;
    freeReplyObject(reply);
    return error;
}

static int redis_publish_commit(void *context, const uint8_t *message, size_t length)
{
    struct bus_redis *bus = context;
    if ((message == NULL && length != 0) || length > BUS_MESSAGE_MAX)
        return CATRACA_E_INVALID;
    const char *argv[] = {"PUBLISH", COMMITS_CHANNEL, length ? (const char *)message : ""};
    size_t lengths[] = {7, strlen(COMMITS_CHANNEL), length};
    redisReply *reply = command_argv(bus, 3, argv, lengths);
    int error = redis_reply_check(reply, REDIS_REPLY_INTEGER, "bus_redis");
    freeReplyObject(reply);
    return error;
}

/* ---- subscriptions ----------------------------------------------------------------------- */

/*
 * Waits for the next reply for at most BUS_POLL_MS. A hiredis read time-out
 * would leave the context unusable, so readiness is polled first: 1 with a
 * reply, 0 on time-out, -1 on a broken connection.
 */
static int next_reply(redisContext *c, redisReply **reply)
{
    *reply = NULL;
    if (redisGetReplyFromReader(c, (void **)reply) != REDIS_OK)
        return -1;
    if (*reply != NULL)
        return 1;
    struct pollfd fd = {.fd = c->fd, .events = POLLIN};
    int ready = poll(&fd, 1, BUS_POLL_MS);
    if (ready < 0)
        return errno == EINTR ? 0 : -1;
    if (ready == 0)
        return 0;
    if (redisBufferRead(c) != REDIS_OK || redisGetReplyFromReader(c, (void **)reply) != REDIS_OK)
        return -1;
    return *reply != NULL ? 1 : 0;
}

struct subscription {
    const struct bus_redis *bus;
    const char *channel;
    bus_message_fn on_message;
    void *context;
    const atomic_int *stop;
    atomic_int *is_subscribed;
};

/* ["message", channel, payload] to on_message; anything else (confirmations) is skipped. */
static void deliver(const struct subscription *s, const redisReply *reply)
{
    const redisReply *payload = redis_reply_element(reply, 2, REDIS_REPLY_STRING);
    if (payload != NULL && reply->elements == 3 && redis_reply_is_string(payload) &&
        is_word(redis_reply_element(reply, 0, REDIS_REPLY_STRING), "message"))
        s->on_message(s->context, (const uint8_t *)(payload->len ? payload->str : ""),
                      payload->len);
}

/*
 * SUBSCRIBE on c, then deliver until *stop: 0, or CATRACA_E_UNAVAILABLE when it broke. The
 * return from an outage (*is_down) is logged, and *is_down cleared, only once Redis confirmed
 * the subscription: a connection that opens and then fails to subscribe is still the outage.
 */
static int subscribed_loop(redisContext *c, const struct subscription *s, bool *is_down)
{
    const char *argv[] = {"SUBSCRIBE", s->channel};
    size_t lengths[] = {9, strlen(s->channel)};
    redisReply *reply = redisCommandArgv(c, 2, argv, lengths);
    int error =
        is_word(redis_reply_element(reply, 0, REDIS_REPLY_STRING), "subscribe") ? 0 : CATRACA_E_UNAVAILABLE;
    freeReplyObject(reply);
    set_flag(s->is_subscribed, error == 0);
    if (error == 0 && *is_down)
        logline(LOGLINE_INFO, "bus_redis", "subscribed again", "channel", s->channel, NULL);
    if (error == 0)
        *is_down = false;
    while (error == 0 && !is_set(s->stop)) {
        int got = next_reply(c, &reply);
        if (got < 0)
            error = CATRACA_E_UNAVAILABLE;
        else if (got > 0)
            deliver(s, reply);
        freeReplyObject(reply);
    }
    set_flag(s->is_subscribed, 0);
    return error;
}

/* Sleeps about ms in slices of at most BUS_POLL_MS, returning early once *stop is set. */
static void backoff(int ms, const atomic_int *stop)
{
    for (int slept = 0; slept < ms && !is_set(stop); slept += BUS_POLL_MS)
        poll(NULL, 0, ms - slept < BUS_POLL_MS ? ms - slept : BUS_POLL_MS);
}

/*
 * Subscribes until *stop, again after each failure. The connection's time-outs
 * are at most BUS_POLL_MS, so that a stop is seen in time even while Redis is
 * unreachable. An outage is logged once, and the return from it.
 */
static int subscribe_until_stop(const struct subscription *s)
{
    int timeout_ms = s->bus->timeout_ms < BUS_POLL_MS ? s->bus->timeout_ms : BUS_POLL_MS;
    bool is_down = false;
    set_flag(s->is_subscribed, 0);
    while (!is_set(s->stop)) {
        char why[128] = "";
        redisContext *c = redis_conn_open(s->bus->host, s->bus->port, timeout_ms, timeout_ms, why);
        int error = CATRACA_E_UNAVAILABLE;
        if (c != NULL) {
            error = subscribed_loop(c, s, &is_down);
            redisFree(c);
        }
        if (error != 0 && !is_set(s->stop)) {
            if (!is_down)
                logline(LOGLINE_WARN, "bus_redis", "the bus (Redis) is unavailable; resubscribing",
                        "channel", s->channel, "address", s->bus->address, "error",
                        why[0] ? why : "the subscription broke", NULL);
            is_down = true;
            backoff(RECONNECT_BACKOFF_MS, s->stop);
        }
    }
    set_flag(s->is_subscribed, 0);
    return 0;
}

static int redis_subscribe_commits(void *context, bus_message_fn on_message, void *callback_context,
                                   const atomic_int *stop, atomic_int *is_subscribed)
{
    if (on_message == NULL || stop == NULL)
        return CATRACA_E_INVALID;
    struct subscription s = {.bus = context,
                             .channel = COMMITS_CHANNEL,
                             .on_message = on_message,
                             .context = callback_context,
                             .stop = stop,
                             .is_subscribed = is_subscribed};
    return subscribe_until_stop(&s);
}

struct appended_listener {
    bus_event_fn on_event;
    void *context;
};

static void on_appended(void *context, const uint8_t *message, size_t length)
{
    const struct appended_listener *listener = context;
    char event[CATRACA_ID_MAX + 1];
    if (length == 0 || length > CATRACA_ID_MAX || memchr(message, '\0', length) != NULL)
        return; /* not an event id the append script could have published */
    memcpy(event, message, length);
    event[length] = '\0';
    listener->on_event(listener->context, event);
}

static int redis_wait_appended(void *context, bus_event_fn on_event, void *callback_context,
                               const atomic_int *stop, atomic_int *is_subscribed)
{
    if (on_event == NULL || stop == NULL)
        return CATRACA_E_INVALID;
    struct appended_listener listener = {.on_event = on_event, .context = callback_context};
    struct subscription s = {.bus = context,
                             .channel = LOG_REDIS_APPENDED_CHANNEL,
                             .on_message = on_appended,
                             .context = &listener,
                             .stop = stop,
                             .is_subscribed = is_subscribed};
    return subscribe_until_stop(&s);
}

static void redis_close(void *context)
{
    struct bus_redis *bus = context;
    disconnect(bus);
    free(bus);
}

static const struct bus_ops redis_bus_ops = {
    .unique_number = redis_unique_number,
    .publish_commit = redis_publish_commit,
    .subscribe_commits = redis_subscribe_commits,
    .wait_appended = redis_wait_appended,
    .close = redis_close,
};

int bus_redis_open(const struct bus_redis_options *options, struct catraca_bus *out)
{
    if (options == NULL || out == NULL || options->timeout_ms < 1 ||
        options->timeout_ms > INT32_MAX / 2)
        return CATRACA_E_INVALID;
    struct bus_redis *bus = calloc(1, sizeof(*bus));
    if (bus == NULL)
        return CATRACA_E_NOMEM;
    if (log_redis_parse_url(options->url, bus->host, &bus->port) != 0) {
        free(bus);
        return CATRACA_E_INVALID;
    }
    snprintf(bus->address, sizeof(bus->address), "%s:%d", bus->host, bus->port);
    bus->timeout_ms = options->timeout_ms;
    *out = (struct catraca_bus){.ops = &redis_bus_ops, .context = bus};
    return 0;
}
