/*
 * bus_redis.h - the bus (bus.h) on Redis, with hiredis.
 *
 * unique_number is INCR of "catraca:instances"; commits go over pub/sub on
 * "catraca:commits"; wait_appended subscribes to LOG_REDIS_APPENDED_CHANNEL,
 * on which log_redis.c's append script publishes each event it appended to
 * (in the same atomic script as the XADD, so a message never announces an
 * entry that is not in the stream).
 *
 * A handle's own connection (unique_number, publish_commit) connects lazily
 * and reconnects after an I/O error or time-out, like log_redis.c's: calls
 * made while Redis is down return CATRACA_E_UNAVAILABLE, the next call after
 * it is back works. subscribe_commits and wait_appended open a connection of
 * their own for as long as they run.
 */
#ifndef CATRACA_LOG_BUS_REDIS_H
#define CATRACA_LOG_BUS_REDIS_H

#include "log/bus.h"

struct bus_redis_options {
    const char *url; /* as log_redis_parse_url() reads it; not kept */
    int timeout_ms;  /* connect and command time-out of the handle's own connection, >= 1 */
};

/*
 * A handle in *out (close with out->ops->close). 0, CATRACA_E_INVALID (bad
 * options or URL) or CATRACA_E_NOMEM; never fails because Redis is down.
 */
int bus_redis_open(const struct bus_redis_options *options, struct catraca_bus *out);

#endif
