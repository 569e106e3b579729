/*
 * log_redis.c - the log on Redis Streams. Contract in log_redis.h and log.h;
 * log_sqlite.c is the reference and this adapter answers every call the way
 * it does (duplicates by key or by purchase id, mismatches, the earlier
 * entry's seq, exclusive reads, sorted partitions).
 *
 * hiredis speaks the protocol (but for read()'s XRANGE replies, decoded from
 * the socket's bytes by redis_xrange.c); this file builds commands and checks
 * every reply's type and element count before use: a reply of another shape is
 * CATRACA_E_CORRUPT, never a crash. No reply (I/O error, time-out) is
 * CATRACA_E_UNAVAILABLE and drops the connection; the next call reconnects.
 */
#include "log/log_redis.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/logline.h"
#include "log/redis_conn.h"
#include "log/redis_xrange.h"

#define PURCHASES_KEY "catraca:purchases"
#define PARTITIONS_KEY "catraca:partitions"
#define KEY_TEXT_MAX (CATRACA_ID_MAX + 32) /* "catraca:{<event>}:count" */
#define HOST_TEXT_MAX LOG_REDIS_HOST_MAX
#define NUMBER_TEXT_MAX 24 /* a 64-bit integer in decimal, sign, NUL */
#define ITEM_ARGS 7        /* words per item in the script's ARGV */
#define APPEND_HEAD_ARGS 4 /* EVALSHA sha numkeys count */
#define APPEND_ITEMS_MAX 65536
#define COMMAND_ARGS_MAX 8 /* of the fixed-shape commands (command()) */
#define APPEND_SCRIPT_CHUNK "1000" /* ids a HMGET or HSET of the append script names */
/* read()'s buffer for an XRANGE reply: a few socket reads' worth, and always a whole entry. */
#define REPLY_BUFFER_BYTES (256 * 1024)
static_assert(REPLY_BUFFER_BYTES >= REDIS_XRANGE_ENTRY_BYTES_MAX, "a whole entry fits");

/*
 * The append script. ARGV: count, then per item ITEM_ARGS words: event,
 * record, time_ms, purchase id ('0': none), idempotency scope, key ('':
 * none), request hash. Returns per item {result, seq, purchase id}: result 0
 * appended, 1 duplicate, 2 duplicate with another request (log.h's values).
 *
 * Per item, like log_sqlite.c's append_one(): a known idempotency key is a
 * duplicate or a mismatch; else a purchase id already in the log is a
 * duplicate of that entry; else XADD, then the purchase's place and the key
 * are recorded. Items of one call see each other's writes (two items with one
 * key or one purchase id: the second is a duplicate of the first).
 *
 * Redis's cost is per command a script calls, and each write is copied to the
 * AOF: so the purchases' places are read with one HMGET and written with one
 * HSET a call (APPEND_SCRIPT_CHUNK ids at a time: Lua's unpack() has a stack
 * limit), and an event's entry count is read once and written once a call
 * instead of an INCR an entry; the script keeps both in Lua tables meanwhile.
 * Per entry that leaves the XADD (and the key's HGET/HSET when there is one).
 * callgrind of redis-server, 20 000 entries in calls of 10: 61 k -> 49 k
 * instructions an entry (docs/BENCHMARKS.md).
 *
 * A script runs atomically, and Redis refuses its writes for lack of memory
 * only before the first one, so a call appends all its items or none; the
 * only failures midway are a key of the wrong type (someone else wrote it).
 *
 * Redis Cluster: the script touches keys of several events and customers
 * (every catraca:{<event>}:* of the batch, catraca:idem:<scope>,
 * catraca:purchases, catraca:partitions) and passes none as KEYS, which only a
 * single Redis allows. Under Cluster a gateway would group each call's items
 * by slot and the global keys would move under the event's tag: future work,
 * see docs/DEPLOY.md.
 */
static const char append_script[] =
    "local n = tonumber(ARGV[1])\n"
    "local out, counts, events, placed = {}, {}, {}, {}\n"
    "local known = {}\n"
    "local pids = {}\n"
    "for k = 0, n - 1 do\n"
    "  local pid = ARGV[2 + k * 7 + 3]\n"
    "  if pid ~= '0' then pids[#pids + 1] = pid end\n"
    "end\n"
    "for first = 1, #pids, " APPEND_SCRIPT_CHUNK " do\n"
    "  local last = math.min(first + " APPEND_SCRIPT_CHUNK " - 1, #pids)\n"
    "  local found = redis.call('HMGET', 'catraca:purchases', unpack(pids, first, last))\n"
    "  for j = first, last do\n"
    "    if found[j - first + 1] then known[pids[j]] = found[j - first + 1] end\n"
    "  end\n"
    "end\n"
    "for k = 0, n - 1 do\n"
    "  local b = 2 + k * 7\n"
    "  local event, record, t, pid = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]\n"
    "  local scope, key, hash = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]\n"
    "  local row\n"
    "  if key ~= '' then\n"
    "    local seen = redis.call('HGET', 'catraca:idem:' .. scope, key)\n"
    "    if seen then\n"
    "      local h, p, s = string.match(seen, '^(%S+) (%S+) (%S+)$')\n"
    "      row = {h == hash and 1 or 2, s or '', p or ''}\n"
    "    end\n"
    "  end\n"
    "  if not row and pid ~= '0' then\n"
    "    local place = known[pid]\n"
    "    if place then\n"
    "      row = {1, string.match(place, ' (%S+)$') or '', pid}\n"
    "    end\n"
    "  end\n"
    "  if not row then\n"
    "    local c = counts[event]\n"
    "    if not c then\n"
    "      local base = 'catraca:{' .. event .. '}:'\n"
    "      c = {base = base, at = tonumber(redis.call('GET', base .. 'count') or '0')}\n"
    "      counts[event] = c\n"
    "      events[#events + 1] = event\n"
    "    end\n"
    "    c.at = c.at + 1\n"
    "    local id\n"
    "    if pid ~= '0' then\n"
    "      id = redis.call('XADD', c.base .. 'log', '*', 'r', record, 't', t, 'i', c.at, 'p', pid)\n"
    "      local place = event .. ' ' .. id\n"
    "      known[pid] = place\n"
    "      placed[#placed + 1] = pid\n"
    "      placed[#placed + 1] = place\n"
    "    else\n"
    "      id = redis.call('XADD', c.base .. 'log', '*', 'r', record, 't', t, 'i', c.at)\n"
    "    end\n"
    "    if key ~= '' then\n"
    "      redis.call('HSET', 'catraca:idem:' .. scope, key, hash .. ' ' .. pid .. ' ' .. id)\n"
    "    end\n"
    "    row = {0, id, pid}\n"
    "  end\n"
    "  out[k + 1] = row\n"
    "end\n"
    "for first = 1, #placed, 2 * " APPEND_SCRIPT_CHUNK " do\n"
    "  redis.call('HSET', 'catraca:purchases', unpack(placed, first, math.min(first + 2 * " APPEND_SCRIPT_CHUNK " - 1, #placed)))\n"
    "end\n"
    "for _, event in ipairs(events) do\n"
    "  redis.call('SET', counts[event].base .. 'count', counts[event].at)\n"
    "  redis.call('SADD', 'catraca:partitions', event)\n"
    "  redis.call('PUBLISH', '" LOG_REDIS_APPENDED_CHANNEL "', event)\n"
    "end\n"
    "return out\n";

struct log_redis {
    struct log_redis_options options; /* url not kept: host and port are */
    char host[HOST_TEXT_MAX];
    int port;
    char address[HOST_TEXT_MAX + 8]; /* "host:port", for log lines */
    redisContext *redis;             /* NULL: not connected, the next call connects */
    char script_sha[41];             /* "": not loaded on this connection yet */
    bool is_down;                    /* the last connection attempt failed (logged once) */
    uint8_t *records;                /* read(): options.read_max * CATRACA_COMMAND_ENCODED_MAX */
    char *reply_bytes;               /* read(): REPLY_BUFFER_BYTES of an XRANGE reply */
    /* append() argument vectors, grown to the largest call (<= APPEND_ITEMS_MAX items) */
    const char **argv;
    size_t *argv_lengths;
    char (*numbers)[3][NUMBER_TEXT_MAX];
    size_t append_capacity;
};

/* ---- replies ----------------------------------------------------------------------------- */

static int parse_u64_reply(const redisReply *reply, uint64_t *out)
{
    return redis_reply_is_string(reply) ? redis_text_u64(reply->str, reply->len, out)
                                        : CATRACA_E_CORRUPT;
}

static int parse_seq(const redisReply *reply, struct log_seq *out)
{
    return redis_reply_is_string(reply) ? redis_text_seq(reply->str, reply->len, out)
                                        : CATRACA_E_CORRUPT;
}

/* ---- connection -------------------------------------------------------------------------- */

int log_redis_parse_url(const char *url, char host[LOG_REDIS_HOST_MAX], int *port)
{
    if (url == NULL)
        return CATRACA_E_INVALID;
    if (strncmp(url, "redis://", 8) == 0)
        url += 8;
    size_t authority = strcspn(url, "/");
    const char *path = url + authority;
    if (path[0] != '\0' && strcmp(path, "/") != 0 && strcmp(path, "/0") != 0)
        return CATRACA_E_INVALID;
    const char *colon = memchr(url, ':', authority);
    size_t host_length = colon ? (size_t)(colon - url) : authority;
    if (host_length == 0 || host_length >= HOST_TEXT_MAX || memchr(url, '@', authority))
        return CATRACA_E_INVALID;
    memcpy(host, url, host_length);
    host[host_length] = '\0';
    *port = 6379;
    if (colon == NULL)
        return 0;
    uint64_t value = 0;
    size_t digits = authority - host_length - 1;
    if (redis_text_u64(colon + 1, digits, &value) != 0 || value < 1 || value > 65535)
        return CATRACA_E_INVALID;
    *port = (int)value;
    return 0;
}

static void disconnect(struct log_redis *log)
{
    if (log->redis != NULL)
        redisFree(log->redis);
    log->redis = NULL;
    log->script_sha[0] = '\0';
}

/*
 * Commands wait timeout_ms for their reply; an append with WAIT also waits
 * for the replicas, so its socket time-out covers WAIT's own.
 */
static int command_timeout_ms(const struct log_redis_options *options)
{
    return options->timeout_ms + (options->wait_replicas > 0 ? options->wait_timeout_ms : 0);
}

static int ensure_connected(struct log_redis *log)
{
    if (log->redis != NULL && redis_conn_is_closed_by_server(log->redis)) {
        logline(LOGLINE_INFO, "log_redis", "the connection was closed by Redis; reconnecting",
                "address", log->address, NULL);
        disconnect(log);
    }
    if (log->redis != NULL)
        return 0;
    char why[128];
    log->redis = redis_conn_open(log->host, log->port, log->options.timeout_ms,
                                 command_timeout_ms(&log->options), why);
    if (log->redis == NULL) {
        if (!log->is_down)
            logline(LOGLINE_WARN, "log_redis", "Redis unavailable", "address", log->address,
                    "error", why, NULL);
        log->is_down = true;
        return CATRACA_E_UNAVAILABLE;
    }
    if (log->is_down)
        logline(LOGLINE_INFO, "log_redis", "Redis reconnected", "address", log->address, NULL);
    log->is_down = false;
    return 0;
}

/* Runs a command; NULL after an I/O error or time-out, and the connection is dropped. */
static redisReply *command_argv(struct log_redis *log, int argc, const char **argv,
                                const size_t *lengths)
{
    if (ensure_connected(log) != 0)
        return NULL;
    redisReply *reply = redisCommandArgv(log->redis, argc, argv, lengths);
    if (reply == NULL) {
        logline(LOGLINE_WARN, "log_redis", "Redis command failed", "command", argv[0], "error",
                log->redis->errstr, NULL);
        disconnect(log);
    }
    return reply;
}

/* A command of at most COMMAND_ARGS_MAX NUL-terminated words. */
static redisReply *command(struct log_redis *log, int argc, const char **argv)
{
    size_t lengths[COMMAND_ARGS_MAX];
    if (argc < 1 || argc > COMMAND_ARGS_MAX)
        return NULL;
    for (int i = 0; i < argc; i++)
        lengths[i] = strlen(argv[i]);
    return command_argv(log, argc, argv, lengths);
}

static void stream_key(const char *event, char out[KEY_TEXT_MAX])
{
    snprintf(out, KEY_TEXT_MAX, "catraca:{%s}:log", event);
}

static void counter_key(const char *event, char out[KEY_TEXT_MAX])
{
    snprintf(out, KEY_TEXT_MAX, "catraca:{%s}:count", event);
}

/* ---- append ------------------------------------------------------------------------------ */

static int load_script(struct log_redis *log)
{
    const char *argv[] = {"SCRIPT", "LOAD", append_script};
    redisReply *reply = command(log, 3, argv);
    int error = redis_reply_check(reply, REDIS_REPLY_STRING, "log_redis");
    if (error == 0 && (reply->len != 40 || reply->str == NULL))
        error = CATRACA_E_CORRUPT;
    if (error == 0) {
        memcpy(log->script_sha, reply->str, 40);
        log->script_sha[40] = '\0';
    }
    freeReplyObject(reply);
    return error;
}

/* The vectors for a call of count items; they only grow, up to APPEND_ITEMS_MAX items. */
static int grow_append(struct log_redis *log, size_t count)
{
    if (count <= log->append_capacity)
        return 0;
    size_t args = APPEND_HEAD_ARGS + count * ITEM_ARGS;
    const char **argv = realloc(log->argv, args * sizeof(*argv));
    if (argv != NULL)
        log->argv = argv;
    size_t *lengths = realloc(log->argv_lengths, args * sizeof(*lengths));
    if (lengths != NULL)
        log->argv_lengths = lengths;
    char(*numbers)[3][NUMBER_TEXT_MAX] = realloc(log->numbers, count * sizeof(*numbers));
    if (numbers != NULL)
        log->numbers = numbers;
    if (argv == NULL || lengths == NULL || numbers == NULL)
        return CATRACA_E_NOMEM;
    log->append_capacity = count;
    return 0;
}

static void set_arg(struct log_redis *log, size_t at, const char *value, size_t length)
{
    log->argv[at] = value;
    log->argv_lengths[at] = length;
}

static void set_text_arg(struct log_redis *log, size_t at, const char *value)
{
    set_arg(log, at, value, strlen(value));
}

/* EVALSHA sha 0 count, then ITEM_ARGS words per item (the script's ARGV). */
static void build_append(struct log_redis *log, const struct log_append_item *items, size_t count,
                         const char *count_text)
{
    set_text_arg(log, 0, "EVALSHA");
    set_text_arg(log, 1, log->script_sha);
    set_text_arg(log, 2, "0");
    set_text_arg(log, 3, count_text);
    for (size_t i = 0; i < count; i++) {
        const struct log_append_item *item = &items[i];
        size_t at = APPEND_HEAD_ARGS + i * ITEM_ARGS;
        char(*numbers)[NUMBER_TEXT_MAX] = log->numbers[i];
        snprintf(numbers[0], NUMBER_TEXT_MAX, "%lld", (long long)item->time_ms);
        snprintf(numbers[1], NUMBER_TEXT_MAX, "%llu", (unsigned long long)item->purchase_id);
        snprintf(numbers[2], NUMBER_TEXT_MAX, "%llu", (unsigned long long)item->request_hash);
        bool has_key = item->idempotency_key != NULL;
        set_text_arg(log, at, item->event);
        set_arg(log, at + 1, item->record_length ? (const char *)item->record : "",
                item->record_length);
        set_text_arg(log, at + 2, numbers[0]);
        set_text_arg(log, at + 3, numbers[1]);
        set_text_arg(log, at + 4, has_key ? item->idempotency_scope : "");
        set_text_arg(log, at + 5, has_key ? item->idempotency_key : "");
        set_text_arg(log, at + 6, numbers[2]);
    }
}

/* What every adapter refuses (log_items_check), and more items than one script call takes. */
static int items_check(const struct log_append_item *items, size_t count)
{
    return count > APPEND_ITEMS_MAX ? CATRACA_E_INVALID : log_items_check(items, count);
}

/* {result, seq, purchase id} per item, in order. */
static int read_append_results(const redisReply *reply, struct log_append_item *items, size_t count)
{
    if (reply->elements != count)
        return CATRACA_E_CORRUPT;
    for (size_t i = 0; i < count; i++) {
        const redisReply *row = redis_reply_element(reply, i, REDIS_REPLY_ARRAY);
        const redisReply *result = redis_reply_element(row, 0, REDIS_REPLY_INTEGER);
        uint64_t purchase_id = 0;
        struct log_seq seq;
        if (row == NULL || row->elements != 3 || result == NULL || result->integer < 0 ||
            result->integer > LOG_DUPLICATE_MISMATCH || parse_seq(row->element[1], &seq) != 0 ||
            parse_u64_reply(row->element[2], &purchase_id) != 0)
            return CATRACA_E_CORRUPT;
        items[i].result = (uint8_t)result->integer;
        items[i].seq = seq;
        /* As log_sqlite.c: an appended item's own id, a duplicate's first purchase. */
        items[i].existing_purchase_id = purchase_id;
    }
    return 0;
}

static int wait_for_replicas(struct log_redis *log)
{
    if (log->options.wait_replicas <= 0)
        return 0;
    char replicas[NUMBER_TEXT_MAX], timeout[NUMBER_TEXT_MAX];
    snprintf(replicas, sizeof(replicas), "%d", log->options.wait_replicas);
    snprintf(timeout, sizeof(timeout), "%d", log->options.wait_timeout_ms);
    const char *argv[] = {"WAIT", replicas, timeout};
    redisReply *reply = command(log, 3, argv);
    int error = redis_reply_check(reply, REDIS_REPLY_INTEGER, "log_redis");
    if (error == 0 && reply->integer < log->options.wait_replicas) {
        char acknowledged[24], wanted[24];
        snprintf(acknowledged, sizeof(acknowledged), "%lld", (long long)reply->integer);
        snprintf(wanted, sizeof(wanted), "%d", log->options.wait_replicas);
        logline(LOGLINE_WARN, "log_redis", "WAIT: too few replicas acknowledged", "acknowledged",
                acknowledged, "wanted", wanted, NULL);
        error = CATRACA_E_UNAVAILABLE;
    }
    freeReplyObject(reply);
    return error;
}

static bool is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
           reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* EVALSHA, and once more after loading the script when Redis forgot it (restart, flush). */
static redisReply *run_append_script(struct log_redis *log, const struct log_append_item *items,
                                     size_t count, int *error)
{
    char count_text[NUMBER_TEXT_MAX];
    snprintf(count_text, sizeof(count_text), "%zu", count);
    *error = ensure_connected(log);
    for (int attempt = 0; *error == 0 && attempt < 2; attempt++) {
        if (log->script_sha[0] == '\0' && (*error = load_script(log)) != 0)
            return NULL;
        build_append(log, items, count, count_text);
        redisReply *reply = command_argv(log, (int)(APPEND_HEAD_ARGS + count * ITEM_ARGS),
                                         log->argv, log->argv_lengths);
        if (!is_noscript(reply))
            return reply;
        /* NOSCRIPT: nothing ran. */
        freeReplyObject(reply);
        log->script_sha[0] = '\0';
    }
    if (*error == 0)
        *error = CATRACA_E_UNAVAILABLE;
    return NULL;
}

static int redis_append(void *context, struct log_append_item *items, size_t count)
{
    struct log_redis *log = context;
    int error = items_check(items, count);
    if (error != 0 || count == 0)
        return error;
    if ((error = grow_append(log, count)) != 0)
        return error;
    redisReply *reply = run_append_script(log, items, count, &error);
    if (error == 0)
        error = redis_reply_check(reply, REDIS_REPLY_ARRAY, "log_redis");
    if (error == 0)
        error = read_append_results(reply, items, count);
    freeReplyObject(reply);
    if (error == 0)
        error = wait_for_replicas(log);
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

/*
 * Sends a command through hiredis and takes its reply off the socket itself, decoded by
 * redis_xrange.c as the bytes arrive (hiredis' reader is bypassed: no reply objects). The
 * socket's time-out (redis_conn_open) bounds each read. Anything but a whole reply leaves the
 * connection mid-reply: it is dropped.
 */
static int xrange_exchange(struct log_redis *log, int argc, const char **argv,
                           struct redis_xrange *x)
{
    redisContext *c = log->redis;
    int done = 0;
    /* Nothing may wait in hiredis' reader: the reply is read from the socket, not from it. */
    if (c->reader->len != c->reader->pos || redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK)
        goto unavailable;
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            goto unavailable;
    size_t held = 0;
    for (;;) {
        size_t used = 0;
        if (redis_xrange_feed(x, log->reply_bytes, held, &used) != 0) {
            logline(LOGLINE_WARN, "log_redis", "an XRANGE reply is not a stream's entries",
                    "address", log->address, NULL);
            disconnect(log);
            return CATRACA_E_CORRUPT;
        }
        memmove(log->reply_bytes, log->reply_bytes + used, held - used);
        held -= used;
        if (redis_xrange_is_done(x)) {
            if (held == 0)
                return 0;
            goto unavailable; /* bytes after the reply: the exchange is out of step */
        }
        if (held == REPLY_BUFFER_BYTES) {
            disconnect(log); /* cannot happen: a whole entry fits (static_assert above) */
            return CATRACA_E_CORRUPT;
        }
        ssize_t n = read(c->fd, log->reply_bytes + held, REPLY_BUFFER_BYTES - held);
        if (n > 0)
            held += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            goto unavailable; /* closed, an error, or the time-out */
    }
unavailable:
    logline(LOGLINE_WARN, "log_redis", "Redis command failed", "command", argv[0], "error",
            c->err ? c->errstr : "no reply", NULL);
    disconnect(log);
    return CATRACA_E_UNAVAILABLE;
}

static int redis_read(void *context, const char *event, struct log_seq after,
                      struct log_entry *entries, size_t max, size_t *count)
{
    struct log_redis *log = context;
    *count = 0;
    if (!log_event_is_valid(event))
        return CATRACA_E_INVALID;
    if (max > log->options.read_max)
        max = log->options.read_max;
    if (max == 0)
        return 0; /* XRANGE would take COUNT 0 as "no limit" */
    char key[KEY_TEXT_MAX], start[LOG_SEQ_TEXT_MAX + 1] = "-", max_text[NUMBER_TEXT_MAX];
    stream_key(event, key);
    if (after.major != 0 || after.minor != 0) {
        start[0] = '('; /* exclusive (Redis >= 6.2) */
        log_seq_format(after, start + 1);
    }
    snprintf(max_text, sizeof(max_text), "%zu", max);
    const char *argv[] = {"XRANGE", key, start, "+", "COUNT", max_text};
    if (ensure_connected(log) != 0)
        return CATRACA_E_UNAVAILABLE;
    struct redis_xrange x;
    redis_xrange_begin(&x, entries, log->records, max);
    int error = xrange_exchange(log, 6, argv, &x);
    if (error == 0 && x.is_error) {
        logline(LOGLINE_WARN, "log_redis", "Redis refused a command", "error", x.error_text, NULL);
        error = CATRACA_E_UNAVAILABLE;
    }
    if (error == 0)
        *count = x.count;
    return error;
}

/* "<event> <seq>", as the script writes it; the seq is after the last space. */
static int parse_place(const redisReply *reply, char event[CATRACA_ID_MAX + 1], struct log_seq *seq)
{
    if (!redis_reply_is_string(reply) || reply->len == 0)
        return CATRACA_E_CORRUPT;
    const char *space = memrchr(reply->str, ' ', reply->len);
    size_t event_length = space ? (size_t)(space - reply->str) : 0;
    if (event_length == 0 || event_length > CATRACA_ID_MAX ||
        memchr(reply->str, '\0', event_length) != NULL)
        return CATRACA_E_CORRUPT;
    if (redis_text_seq(space + 1, reply->len - event_length - 1, seq) != 0)
        return CATRACA_E_CORRUPT;
    memcpy(event, reply->str, event_length);
    event[event_length] = '\0';
    return 0;
}

static int redis_find_purchase(void *context, uint64_t purchase_id, char event[CATRACA_ID_MAX + 1],
                               struct log_seq *seq)
{
    struct log_redis *log = context;
    char id[NUMBER_TEXT_MAX];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)purchase_id);
    const char *argv[] = {"HGET", PURCHASES_KEY, id};
    redisReply *reply = command(log, 3, argv);
    int error = reply != NULL && reply->type == REDIS_REPLY_NIL
                    ? CATRACA_E_NOTFOUND
                    : redis_reply_check(reply, REDIS_REPLY_STRING, "log_redis");
    if (error == 0)
        error = parse_place(reply, event, seq);
    freeReplyObject(reply);
    return error;
}

/* The `i` field of a stream entry (its 1-based index in the stream). */
static int entry_index(const redisReply *entry, uint64_t *index)
{
    const redisReply *fields = redis_reply_element(entry, 1, REDIS_REPLY_ARRAY);
    if (fields == NULL || entry->elements != 2 || fields->elements % 2 != 0)
        return CATRACA_E_CORRUPT;
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        const redisReply *name = redis_reply_element(fields, f, REDIS_REPLY_STRING);
        if (redis_reply_is_string(name) && name->len == 1 && name->str[0] == 'i')
            return parse_u64_reply(fields->element[f + 1], index);
    }
    return CATRACA_E_CORRUPT;
}

/*
 * Entries up to and including `at`: the index of the last entry at or before
 * it (XREVRANGE at - COUNT 1), 0 when there is none. Exact even when `at` is
 * not an entry's position.
 */
static int entries_through(struct log_redis *log, const char *event, struct log_seq at,
                           uint64_t *index)
{
    char key[KEY_TEXT_MAX], end[LOG_SEQ_TEXT_MAX];
    stream_key(event, key);
    log_seq_format(at, end);
    const char *argv[] = {"XREVRANGE", key, end, "-", "COUNT", "1"};
    redisReply *reply = command(log, 6, argv);
    int error = redis_reply_check(reply, REDIS_REPLY_ARRAY, "log_redis");
    *index = 0;
    if (error == 0 && reply->elements > 1)
        error = CATRACA_E_CORRUPT;
    if (error == 0 && reply->elements == 1)
        error = entry_index(reply->element[0], index);
    freeReplyObject(reply);
    return error;
}

/* The number of entries ever appended to event (its counter; absent: 0). */
static int entries_total(struct log_redis *log, const char *event, uint64_t *total)
{
    char key[KEY_TEXT_MAX];
    counter_key(event, key);
    const char *argv[] = {"GET", key};
    redisReply *reply = command(log, 2, argv);
    int error = 0;
    *total = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_NIL)
        error = redis_reply_check(reply, REDIS_REPLY_STRING, "log_redis");
    if (error == 0 && reply->type == REDIS_REPLY_STRING)
        error = parse_u64_reply(reply, total);
    freeReplyObject(reply);
    return error;
}

static int redis_count_after(void *context, const char *event, struct log_seq after,
                             uint64_t *count)
{
    struct log_redis *log = context;
    uint64_t through = 0, total = 0;
    *count = 0;
    if (!log_event_is_valid(event))
        return CATRACA_E_INVALID;
    int error = 0;
    if (after.major != 0 || after.minor != 0)
        error = entries_through(log, event, after, &through);
    /* The counter after the index: appends in between only make it larger. */
    if (error == 0)
        error = entries_total(log, event, &total);
    if (error == 0 && total < through)
        error = CATRACA_E_CORRUPT;
    if (error == 0)
        *count = total - through;
    return error;
}

static int redis_last_seq(void *context, const char *event, struct log_seq *seq)
{
    struct log_redis *log = context;
    *seq = (struct log_seq){0, 0};
    if (!log_event_is_valid(event))
        return CATRACA_E_INVALID;
    char key[KEY_TEXT_MAX];
    stream_key(event, key);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *reply = command(log, 6, argv);
    int error = redis_reply_check(reply, REDIS_REPLY_ARRAY, "log_redis");
    if (error == 0 && reply->elements > 1)
        error = CATRACA_E_CORRUPT;
    if (error == 0 && reply->elements == 1) {
        const redisReply *entry = redis_reply_element(reply, 0, REDIS_REPLY_ARRAY);
        error = entry != NULL && entry->elements == 2 ? parse_seq(entry->element[0], seq)
                                                      : CATRACA_E_CORRUPT;
    }
    freeReplyObject(reply);
    return error;
}

/*
 * Keeps events[0..*count) the smallest ids seen so far, sorted, at most max:
 * what log_sqlite.c's "ORDER BY event LIMIT max" returns.
 */
static void keep_smallest(char (*events)[CATRACA_ID_MAX + 1], size_t max, size_t *count,
                          const char *id)
{
    size_t at = *count;
    while (at > 0 && strcmp(events[at - 1], id) > 0)
        at--;
    if (at >= max)
        return;
    size_t kept = *count < max ? *count : max - 1; /* entries that stay, the last one dropped */
    memmove(events[at + 1], events[at], (kept - at) * sizeof(*events));
    snprintf(events[at], CATRACA_ID_MAX + 1, "%s", id);
    if (*count < max)
        (*count)++;
}

static int redis_list_partitions(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max,
                                 size_t *count)
{
    struct log_redis *log = context;
    const char *argv[] = {"SMEMBERS", PARTITIONS_KEY};
    redisReply *reply = command(log, 2, argv);
    int error = redis_reply_check(reply, REDIS_REPLY_ARRAY, "log_redis");
    *count = 0;
    for (size_t i = 0; error == 0 && max > 0 && i < reply->elements; i++) {
        const redisReply *member = redis_reply_element(reply, i, REDIS_REPLY_STRING);
        char id[CATRACA_ID_MAX + 1];
        if (!redis_reply_is_string(member)) {
            error = CATRACA_E_CORRUPT;
            break;
        }
        if (member->len == 0 || member->len > CATRACA_ID_MAX ||
            memchr(member->str, '\0', member->len) != NULL) {
            /* Not an event id the script could have written: someone else's, and refusing
             * the whole list would stop workers from finding the real partitions. */
            logline(LOGLINE_WARN, "log_redis", "a member is no event id", "key", PARTITIONS_KEY,
                    NULL);
            continue;
        }
        memcpy(id, member->str, member->len);
        id[member->len] = '\0';
        keep_smallest(events, max, count, id);
    }
    if (error != 0)
        *count = 0;
    freeReplyObject(reply);
    return error;
}

static void redis_close(void *context)
{
    struct log_redis *log = context;
    disconnect(log);
    free(log->records);
    free(log->reply_bytes);
    free(log->argv);
    free(log->argv_lengths);
    free(log->numbers);
    free(log);
}

static const struct log_ops redis_ops = {
    .append = redis_append,
    .read = redis_read,
    .find_purchase = redis_find_purchase,
    .count_after = redis_count_after,
    .last_seq = redis_last_seq,
    .list_partitions = redis_list_partitions,
    .close = redis_close,
};

static bool are_options_valid(const struct log_redis_options *options)
{
    return options != NULL && options->url != NULL && options->read_max >= 1 &&
           options->read_max <= SIZE_MAX / CATRACA_COMMAND_ENCODED_MAX &&
           options->timeout_ms >= 1 && options->wait_replicas >= 0 &&
           (options->wait_replicas == 0 || options->wait_timeout_ms >= 1) &&
           options->timeout_ms <= INT32_MAX / 2 && options->wait_timeout_ms <= INT32_MAX / 2;
}

int log_redis_open(const struct log_redis_options *options, struct catraca_log *out)
{
    if (!are_options_valid(options))
        return CATRACA_E_INVALID;
    struct log_redis *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return CATRACA_E_NOMEM;
    log->options = *options;
    log->options.url = NULL;
    if (log_redis_parse_url(options->url, log->host, &log->port) != 0) {
        free(log);
        return CATRACA_E_INVALID;
    }
    snprintf(log->address, sizeof(log->address), "%s:%d", log->host, log->port);
    log->records = malloc(options->read_max * CATRACA_COMMAND_ENCODED_MAX);
    log->reply_bytes = malloc(REPLY_BUFFER_BYTES);
    if (log->records == NULL || log->reply_bytes == NULL) {
        redis_close(log);
        return CATRACA_E_NOMEM;
    }
    ensure_connected(log); /* a Redis that is down now is retried on each call */
    *out = (struct catraca_log){.ops = &redis_ops, .context = log};
    return 0;
}
