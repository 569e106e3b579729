/* redis_conn.c - hiredis connections and replies, shared by log_redis.c and bus_redis.c. */
#include "log/redis_conn.h"

#include <poll.h>
#include <stdio.h>

#include "core/error.h"
#include "core/logline.h"

static struct timeval timeval_of(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

redisContext *redis_conn_open(const char *host, int port, int connect_ms, int command_ms,
                              char errstr[128])
{
    redisContext *c = redisConnectWithTimeout(host, port, timeval_of(connect_ms));
    if (c == NULL) {
        snprintf(errstr, 128, "out of memory");
        return NULL;
    }
    if (c->err == 0 && redisSetTimeout(c, timeval_of(command_ms)) == REDIS_OK)
        return c;
    snprintf(errstr, 128, "%s", c->err != 0 ? c->errstr : "setting the time-out failed");
    redisFree(c);
    return NULL;
}

bool redis_conn_is_closed_by_server(const redisContext *c)
{
    struct pollfd fd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    return poll(&fd, 1, 0) > 0;
}

bool redis_reply_is_string(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_STRING &&
           (reply->str != NULL || !reply->len);
}

const redisReply *redis_reply_element(const redisReply *array, size_t i, int type)
{
    if (array == NULL || array->type != REDIS_REPLY_ARRAY || i >= array->elements ||
        array->element == NULL || array->element[i] == NULL || array->element[i]->type != type)
        return NULL;
    return array->element[i];
}

int redis_reply_check(const redisReply *reply, int type, const char *component)
{
    if (reply == NULL)
        return CATRACA_E_UNAVAILABLE;
    if (reply->type == REDIS_REPLY_ERROR) {
        char text[201];
        snprintf(text, sizeof(text), "%.*s", reply->len < 200 ? (int)reply->len : 200,
                 reply->str ? reply->str : "");
        logline(LOGLINE_WARN, component, "Redis refused a command", "error", text, NULL);
        return CATRACA_E_UNAVAILABLE;
    }
    return reply->type == type ? 0 : CATRACA_E_CORRUPT;
}
