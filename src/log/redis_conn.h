/*
 * redis_conn.h - what the Redis log (log_redis.c) and the Redis bus
 * (bus_redis.c) both do with a hiredis connection and its replies: one copy.
 */
#ifndef CATRACA_LOG_REDIS_CONN_H
#define CATRACA_LOG_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

/* A connection with a connect and a command time-out; NULL (why in errstr) on failure. */
redisContext *redis_conn_open(const char *host, int port, int connect_ms, int command_ms,
                              char errstr[128]);

/*
 * Whether an idle connection was closed by the server (Redis restarted, or
 * dropped us). Between commands no reply is ever outstanding, so anything
 * readable is the end of the stream or a reset. Checked before each command
 * (one poll(2), no wait): a command written to a dead connection would fail
 * without Redis ever seeing it, and the request behind it would get a 503
 * although Redis is back.
 */
bool redis_conn_is_closed_by_server(const redisContext *c);

/* A bulk string reply (its str may be NULL only when empty). */
bool redis_reply_is_string(const redisReply *reply);

/* The i-th element of an array reply when it exists and has the wanted type; else NULL. */
const redisReply *redis_reply_element(const redisReply *array, size_t i, int type);

/*
 * 0 for a reply of the wanted type; CATRACA_E_UNAVAILABLE for none or an
 * error reply (Redis loading its AOF, out of memory, a read-only replica:
 * logged as component's warning); else CATRACA_E_CORRUPT.
 */
int redis_reply_check(const redisReply *reply, int type, const char *component);

#endif
