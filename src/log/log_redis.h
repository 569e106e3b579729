/*
 * log_redis.h - the log on Redis Streams (distributed mode), with hiredis.
 *
 * One stream per event, key "catraca:{<event>}:log" (the {} hash tag keeps an
 * event's keys in one Redis Cluster slot); the stream entry id is the entry's
 * seq. Fields: r = record, t = time_ms, i = 1-based index in the stream (from
 * the counter "catraca:{<event>}:count", for count_after), p = purchase id.
 * Also: "catraca:idem:<scope>" (idempotency key -> "<hash> <purchase id>
 * <seq>"), "catraca:purchases" (purchase id -> "<event> <seq>"),
 * "catraca:partitions" (a set of event ids).
 *
 * append() is ONE Lua script call for all its items (EVALSHA, reloaded after
 * NOSCRIPT): it checks each idempotency key and purchase id, XADDs, records
 * the key and the purchase's place, and publishes each event it appended to
 * on LOG_REDIS_APPENDED_CHANNEL (workers wake on it: bus_redis.h). Results
 * match log_sqlite.c's: an appended item's existing_purchase_id is its own
 * purchase id; a duplicate's seq and existing_purchase_id are the earlier
 * entry's.
 *
 * Durability is the server's: a script is atomic, and with `appendonly yes` +
 * `appendfsync always` its effects are fsync'd to the AOF before the reply
 * leaves, so a returned append is durable; with wait_replicas > 0 it is also
 * on that many replicas (WAIT), else the append returns CATRACA_E_UNAVAILABLE
 * (it did happen on the primary: a retry with the same key is a duplicate).
 * The script names keys of several events and customers, so it runs on a
 * single Redis only; Redis Cluster is future work (docs/DEPLOY.md).
 *
 * A handle is used by one thread at a time. It connects lazily and
 * reconnects after any I/O error or time-out: every call made while Redis is
 * down returns CATRACA_E_UNAVAILABLE, and the next call after it is back
 * works; opening succeeds while Redis is down. A reply error (Redis loading
 * its AOF, out of memory, read-only) is CATRACA_E_UNAVAILABLE too; a reply of
 * an unexpected shape is CATRACA_E_CORRUPT. Caveat of every network log: when
 * the connection drops after the script ran but before its reply arrived, the
 * caller sees CATRACA_E_UNAVAILABLE for an append that happened; a retry with
 * the same idempotency key (or purchase id) returns it as LOG_DUPLICATE
 * instead of appending twice.
 *
 * Bounds: event ids up to CATRACA_ID_MAX bytes (longer: CATRACA_E_INVALID),
 * records up to CATRACA_COMMAND_ENCODED_MAX (a longer one read back:
 * CATRACA_E_CORRUPT), read() up to read_max entries, append() up to 65536
 * items per call.
 */
#ifndef CATRACA_LOG_LOG_REDIS_H
#define CATRACA_LOG_LOG_REDIS_H

#include <stddef.h>
#include "log/log.h"

struct log_redis_options {
    const char *url;     /* redis://host[:port][/0] or host[:port]; port 6379 by default;
                            database 0, no password (a private network); not kept */
    int timeout_ms;      /* connect and command time-out, >= 1 */
    size_t read_max;     /* entries one read() may return, >= 1 (sizes the record buffer) */
    int wait_replicas;   /* 0: no WAIT; else replicas that must acknowledge each append */
    int wait_timeout_ms; /* WAIT's time-out, >= 1 when wait_replicas > 0 */
};

/*
 * A handle in *out (close with out->ops->close). 0, CATRACA_E_INVALID (bad
 * options or URL) or CATRACA_E_NOMEM; never fails because Redis is down.
 */
int log_redis_open(const struct log_redis_options *options, struct catraca_log *out);

/*
 * The Redis address of --redis: "redis://host:port", "redis://host", "host:port" or "host",
 * each optionally followed by "/" or "/0" (database 0 is the only one: SELECT is never sent).
 * Port 6379 when none. 0, or CATRACA_E_INVALID. Shared by every Catraca Redis connection.
 */
#define LOG_REDIS_HOST_MAX 256
int log_redis_parse_url(const char *url, char host[LOG_REDIS_HOST_MAX], int *port);

/*
 * The pub/sub channel the append script publishes each appended-to event id
 * on (in the script, so atomically with its XADDs); bus_redis.c's
 * wait_appended subscribes to it.
 */
#define LOG_REDIS_APPENDED_CHANNEL "catraca:appended"

#endif
