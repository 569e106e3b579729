/*
 * log_redis.c - the log on Redis Streams. Contract in log_redis.h.
 *
 * hiredis speaks the protocol; this file only builds commands and checks
 * every reply's type and shape before use (a reply of another shape is
 * CATRACA_E_CORRUPT, never a crash).
 */
#include "log/log_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define APPENDED_CHANNEL "catraca:appended"
#define ITEM_ARGS 7
#define APPEND_ITEMS_MAX 65536

/*
 * ARGV: count, then per item: event, record, time_ms, purchase id (0: none),
 * idempotency scope, key ("" : none), request hash. Returns per item
 * {result, seq, purchase id}: 0 appended, 1 duplicate, 2 duplicate with another request.
 */
static const char append_script[] =
    "local n = tonumber(ARGV[1])\n"
    "local out, events = {}, {}\n"
    "for k = 0, n - 1 do\n"
    "  local b = 2 + k * 7\n"
    "  local event, record, t, pid = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]\n"
    "  local scope, key, hash = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6]\n"
    "  local seen = false\n"
    "  if key ~= '' then\n"
    "    seen = redis.call('HGET', 'catraca:idem:' .. scope, key)\n"
    "  end\n"
    "  if seen then\n"
    "    local h, p, s = string.match(seen, '^(%S+) (%S+) (%S+)$')\n"
    "    out[#out + 1] = {h == hash and 1 or 2, s, p}\n"
    "  else\n"
    "    local base = 'catraca:{' .. event .. '}:'\n"
    "    local i = redis.call('INCR', base .. 'count')\n"
    "    local id\n"
    "    if pid ~= '0' then\n"
    "      id = redis.call('XADD', base .. 'log', '*', 'r', record, 't', t, 'i', i, 'p', pid)\n"
    "      redis.call('HSET', 'catraca:purchases', pid, event .. ' ' .. id)\n"
    "    else\n"
    "      id = redis.call('XADD', base .. 'log', '*', 'r', record, 't', t, 'i', i)\n"
    "    end\n"
    "    if key ~= '' then\n"
    "      redis.call('HSET', 'catraca:idem:' .. scope, key, hash .. ' ' .. pid .. ' ' .. id)\n"
    "    end\n"
    "    if not events[event] then\n"
    "      events[event] = true\n"
    "      redis.call('SADD', 'catraca:partitions', event)\n"
    "    end\n"
    "    out[#out + 1] = {0, id, pid}\n"
    "  end\n"
    "end\n"
    "for event in pairs(events) do redis.call('PUBLISH', 'catraca:appended', event) end\n"
    "return out\n";

struct log_redis {
    struct log_redis_options options;
    char host[256];
    int port;
    redisContext *redis;
    char script_sha[41];
    /* read() results: entries point into records */
    struct log_entry *entries;
    uint8_t *records;
    /* append() argument vectors, grown to the largest call */
    const char **argv;
    size_t *argv_lengths;
    char (*numbers)[3][24];
    size_t append_capacity;
};

/* ---- connection -------------------------------------------------------------------------- */

/* "redis://host:port", "redis://host", "host:port" -> parts; -1 when malformed. */
static int parse_url(const char *url, char *host, size_t host_size, int *port)
{
    if (strncmp(url, "redis://", 8) == 0)
        url += 8;
    const char *colon = strrchr(url, ':');
    size_t host_length = colon ? (size_t)(colon - url) : strcspn(url, "/");
    if (host_length == 0 || host_length >= host_size)
        return -1;
    memcpy(host, url, host_length);
    host[host_length] = '\0';
    *port = 6379;
    if (colon != NULL) {
        char *end = NULL;
        long value = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || (*end != '\0' && *end != '/') || value < 1 || value > 65535)
            return -1;
        *port = (int)value;
    }
    return 0;
}

static redisContext *connect_to(const char *host, int port, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL)
        return NULL;
    if (c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void disconnect(struct log_redis *log)
{
    if (log->redis != NULL)
        redisFree(log->redis);
    log->redis = NULL;
    log->script_sha[0] = '\0';
}

static int ensure_connected(struct log_redis *log)
{
    if (log->redis != NULL)
        return 0;
    log->redis = connect_to(log->host, log->port, log->options.timeout_ms);
    return log->redis != NULL ? 0 : CATRACA_E_UNAVAILABLE;
}

/* Runs a command; NULL after an I/O error (and the connection is dropped for the next call). */
static redisReply *command_argv(struct log_redis *log, int argc, const char **argv,
                                const size_t *lengths)
{
    if (ensure_connected(log) != 0)
        return NULL;
    redisReply *reply = redisCommandArgv(log->redis, argc, argv, lengths);
    if (reply == NULL)
        disconnect(log);
    return reply;
}

static redisReply *command(struct log_redis *log, int argc, const char **argv)
{
    size_t lengths[8];
    for (int i = 0; i < argc; i++)
        lengths[i] = strlen(argv[i]);
    return command_argv(log, argc, argv, lengths);
}

/* 0 for a reply of the wanted type; CATRACA_E_UNAVAILABLE for no reply; else CORRUPT. */
static int reply_check(const redisReply *reply, int type)
{
    if (reply == NULL)
        return CATRACA_E_UNAVAILABLE;
    if (reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "level=warn component=log_redis msg=\"%.*s\"\n", (int)reply->len,
                reply->str);
        /* A Redis refusing writes (loading, out of memory, read-only) is unavailable. */
        return CATRACA_E_UNAVAILABLE;
    }
    return reply->type == type ? 0 : CATRACA_E_CORRUPT;
}

static void stream_key(const char *event, char out[CATRACA_ID_MAX + 32])
{
    snprintf(out, CATRACA_ID_MAX + 32, "catraca:{%s}:log", event);
}

static void format_seq(struct log_seq seq, char out[LOG_SEQ_TEXT_MAX])
{
    log_seq_format(seq, out);
}

static int parse_seq(const redisReply *reply, struct log_seq *out)
{
    char text[LOG_SEQ_TEXT_MAX];
    if (reply->type != REDIS_REPLY_STRING || reply->len >= sizeof(text))
        return CATRACA_E_CORRUPT;
    memcpy(text, reply->str, reply->len);
    text[reply->len] = '\0';
    return log_seq_parse(text, out) == 0 ? 0 : CATRACA_E_CORRUPT;
}

static int parse_u64(const char *text, size_t length, uint64_t *out)
{
    char buffer[24];
    if (length == 0 || length >= sizeof(buffer))
        return CATRACA_E_CORRUPT;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(buffer, &end, 10);
    if (errno != 0 || *end != '\0' || buffer[0] == '-')
        return CATRACA_E_CORRUPT;
    *out = value;
    return 0;
}

/* ---- append ------------------------------------------------------------------------------ */

static int load_script(struct log_redis *log)
{
    const char *argv[] = {"SCRIPT", "LOAD", append_script};
    redisReply *reply = command(log, 3, argv);
    int error = reply_check(reply, REDIS_REPLY_STRING);
    if (error == 0 && reply->len == 40)
        memcpy(log->script_sha, reply->str, 41);
    else if (error == 0)
        error = CATRACA_E_CORRUPT;
    freeReplyObject(reply);
    return error;
}

static int grow_append(struct log_redis *log, size_t count)
{
    if (count <= log->append_capacity)
        return 0;
    size_t args = 4 + count * ITEM_ARGS; /* EVALSHA sha 0 count, then the items */
    const char **argv = realloc(log->argv, args * sizeof(*argv));
    if (argv != NULL)
        log->argv = argv;
    size_t *lengths = realloc(log->argv_lengths, args * sizeof(*lengths));
    if (lengths != NULL)
        log->argv_lengths = lengths;
    char(*numbers)[3][24] = realloc(log->numbers, count * sizeof(*numbers));
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

/* EVALSHA sha 0 count item... */
static void build_append(struct log_redis *log, struct log_append_item *items, size_t count,
                         char *count_text)
{
    set_arg(log, 0, "EVALSHA", 7);
    set_arg(log, 1, log->script_sha, 40);
    set_arg(log, 2, "0", 1);
    set_arg(log, 3, count_text, strlen(count_text));
    for (size_t i = 0; i < count; i++) {
        const struct log_append_item *item = &items[i];
        size_t at = 4 + i * ITEM_ARGS;
        char(*numbers)[24] = log->numbers[i];
        snprintf(numbers[0], 24, "%lld", (long long)item->time_ms);
        snprintf(numbers[1], 24, "%llu", (unsigned long long)item->purchase_id);
        snprintf(numbers[2], 24, "%llu", (unsigned long long)item->request_hash);
        bool has_key = item->idempotency_key != NULL && item->idempotency_scope != NULL;
        set_arg(log, at, item->event, strlen(item->event));
        set_arg(log, at + 1, (const char *)item->record, item->record_length);
        set_arg(log, at + 2, numbers[0], strlen(numbers[0]));
        set_arg(log, at + 3, numbers[1], strlen(numbers[1]));
        set_arg(log, at + 4, has_key ? item->idempotency_scope : "",
                has_key ? strlen(item->idempotency_scope) : 0);
        set_arg(log, at + 5, has_key ? item->idempotency_key : "",
                has_key ? strlen(item->idempotency_key) : 0);
        set_arg(log, at + 6, numbers[2], strlen(numbers[2]));
    }
}

static int read_append_results(const redisReply *reply, struct log_append_item *items, size_t count)
{
    if (reply->elements != count)
        return CATRACA_E_CORRUPT;
    for (size_t i = 0; i < count; i++) {
        const redisReply *row = reply->element[i];
        if (row->type != REDIS_REPLY_ARRAY || row->elements != 3 ||
            row->element[0]->type != REDIS_REPLY_INTEGER || row->element[0]->integer < 0 ||
            row->element[0]->integer > LOG_DUPLICATE_MISMATCH ||
            row->element[2]->type != REDIS_REPLY_STRING)
            return CATRACA_E_CORRUPT;
        uint64_t purchase_id = 0;
        if (parse_seq(row->element[1], &items[i].seq) != 0 ||
            parse_u64(row->element[2]->str, row->element[2]->len, &purchase_id) != 0)
            return CATRACA_E_CORRUPT;
        items[i].result = (uint8_t)row->element[0]->integer;
        items[i].existing_purchase_id = items[i].result == LOG_APPENDED ? 0 : purchase_id;
    }
    return 0;
}

static int wait_for_replicas(struct log_redis *log)
{
    if (log->options.wait_replicas <= 0)
        return 0;
    char replicas[16], timeout[16];
    snprintf(replicas, sizeof(replicas), "%d", log->options.wait_replicas);
    snprintf(timeout, sizeof(timeout), "%d", log->options.wait_timeout_ms);
    const char *argv[] = {"WAIT", replicas, timeout};
    redisReply *reply = command(log, 3, argv);
    int error = reply_check(reply, REDIS_REPLY_INTEGER);
    if (error == 0 && reply->integer < log->options.wait_replicas)
        error = CATRACA_E_UNAVAILABLE;
    freeReplyObject(reply);
    return error;
}

static int redis_append(void *context, struct log_append_item *items, size_t count)
{
    struct log_redis *log = context;
    if (count == 0)
        return 0;
    if (count > APPEND_ITEMS_MAX)
        return CATRACA_E_INVALID;
    for (size_t i = 0; i < count; i++)
        if (items[i].record_length > CATRACA_COMMAND_ENCODED_MAX || items[i].event == NULL)
            return CATRACA_E_INVALID;
    int error = grow_append(log, count);
    if (error == 0 && ensure_connected(log) != 0)
        error = CATRACA_E_UNAVAILABLE;
    if (error == 0 && log->script_sha[0] == '\0')
        error = load_script(log);
    if (error != 0)
        return error;
    char count_text[24];
    snprintf(count_text, sizeof(count_text), "%zu", count);
    redisReply *reply = NULL;
    for (int attempt = 0; attempt < 2; attempt++) {
        build_append(log, items, count, count_text);
        reply = command_argv(log, (int)(4 + count * ITEM_ARGS), log->argv, log->argv_lengths);
        bool is_noscript = reply != NULL && reply->type == REDIS_REPLY_ERROR &&
                           strncmp(reply->str, "NOSCRIPT", 8) == 0;
        if (!is_noscript)
            break;
        /* A restarted or flushed Redis forgot the script: nothing ran; load it and retry. */
        freeReplyObject(reply);
        reply = NULL;
        if ((error = load_script(log)) != 0)
            return error;
    }
    error = reply_check(reply, REDIS_REPLY_ARRAY);
    if (error == 0)
        error = read_append_results(reply, items, count);
    freeReplyObject(reply);
    if (error == 0)
        error = wait_for_replicas(log);
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

/* One XRANGE entry: [id, [field, value, ...]] -> entries[at]. */
static int parse_entry(struct log_redis *log, const redisReply *entry, size_t at)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[1]->type != REDIS_REPLY_ARRAY || entry->element[1]->elements % 2 != 0)
        return CATRACA_E_CORRUPT;
    struct log_entry *out = &log->entries[at];
    memset(out, 0, sizeof(*out));
    if (parse_seq(entry->element[0], &out->seq) != 0)
        return CATRACA_E_CORRUPT;
    const redisReply *fields = entry->element[1];
    bool has_record = false;
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        const redisReply *name = fields->element[f], *value = fields->element[f + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING || name->len != 1)
            return CATRACA_E_CORRUPT;
        if (name->str[0] == 'r') {
            if (value->len > CATRACA_COMMAND_ENCODED_MAX)
                return CATRACA_E_CORRUPT;
            uint8_t *record = log->records + at * CATRACA_COMMAND_ENCODED_MAX;
            memcpy(record, value->str, value->len);
            out->record = record;
            out->record_length = value->len;
            has_record = true;
        } else if (name->str[0] == 't') {
            uint64_t time_ms = 0;
            if (parse_u64(value->str, value->len, &time_ms) != 0)
                return CATRACA_E_CORRUPT;
            out->time_ms = (int64_t)time_ms;
        }
    }
    return has_record ? 0 : CATRACA_E_CORRUPT;
}

static int redis_read(void *context, const char *event, struct log_seq after,
                      struct log_entry *entries, size_t max, size_t *count)
{
    struct log_redis *log = context;
    *count = 0;
    if (max > log->options.read_max)
        max = log->options.read_max;
    char key[CATRACA_ID_MAX + 32], start[LOG_SEQ_TEXT_MAX + 1] = "-", max_text[24];
    stream_key(event, key);
    if (after.major != 0 || after.minor != 0) {
        start[0] = '('; /* exclusive */
        format_seq(after, start + 1);
    }
    snprintf(max_text, sizeof(max_text), "%zu", max);
    const char *argv[] = {"XRANGE", key, start, "+", "COUNT", max_text};
    redisReply *reply = command(log, 6, argv);
    int error = reply_check(reply, REDIS_REPLY_ARRAY);
    if (error == 0 && reply->elements > max)
        error = CATRACA_E_CORRUPT;
    for (size_t i = 0; error == 0 && i < reply->elements; i++)
        error = parse_entry(log, reply->element[i], i);
    if (error == 0) {
        memcpy(entries, log->entries, reply->elements * sizeof(*entries));
        *count = reply->elements;
    }
    freeReplyObject(reply);
    return error;
}

static int redis_find_purchase(void *context, uint64_t purchase_id, char event[CATRACA_ID_MAX + 1],
                               struct log_seq *seq)
{
    struct log_redis *log = context;
    char id[24];
    snprintf(id, sizeof(id), "%llu", (unsigned long long)purchase_id);
    const char *argv[] = {"HGET", "catraca:purchases", id};
    redisReply *reply = command(log, 3, argv);
    if (reply != NULL && reply->type == REDIS_REPLY_NIL) {
        freeReplyObject(reply);
        return CATRACA_E_NOTFOUND;
    }
    int error = reply_check(reply, REDIS_REPLY_STRING);
    if (error == 0) {
        char text[CATRACA_ID_MAX + LOG_SEQ_TEXT_MAX + 2];
        const char *space = memchr(reply->str, ' ', reply->len);
        size_t event_length = space ? (size_t)(space - reply->str) : 0;
        size_t seq_length = space ? reply->len - event_length - 1 : 0;
        if (space == NULL || event_length == 0 || event_length > CATRACA_ID_MAX ||
            seq_length >= LOG_SEQ_TEXT_MAX) {
            error = CATRACA_E_CORRUPT;
        } else {
            memcpy(event, reply->str, event_length);
            event[event_length] = '\0';
            memcpy(text, space + 1, seq_length);
            text[seq_length] = '\0';
            error = log_seq_parse(text, seq) == 0 ? 0 : CATRACA_E_CORRUPT;
        }
    }
    freeReplyObject(reply);
    return error;
}

/* The `i` field of the entry at seq; 0 when there is none. */
static int index_at(struct log_redis *log, const char *key, struct log_seq seq, uint64_t *index)
{
    char at[LOG_SEQ_TEXT_MAX];
    format_seq(seq, at);
    const char *argv[] = {"XRANGE", key, at, at};
    redisReply *reply = command(log, 4, argv);
    int error = reply_check(reply, REDIS_REPLY_ARRAY);
    *index = 0;
    if (error == 0 && reply->elements == 1) {
        const redisReply *entry = reply->element[0];
        error = entry->type == REDIS_REPLY_ARRAY && entry->elements == 2 &&
                        entry->element[1]->type == REDIS_REPLY_ARRAY
                    ? 0
                    : CATRACA_E_CORRUPT;
        const redisReply *fields = error == 0 ? entry->element[1] : NULL;
        for (size_t f = 0; error == 0 && f + 1 < fields->elements; f += 2) {
            const redisReply *name = fields->element[f], *value = fields->element[f + 1];
            if (name->type == REDIS_REPLY_STRING && name->len == 1 && name->str[0] == 'i' &&
                value->type == REDIS_REPLY_STRING)
                error = parse_u64(value->str, value->len, index);
        }
    }
    freeReplyObject(reply);
    return error;
}

static int redis_count_after(void *context, const char *event, struct log_seq after,
                             uint64_t *count)
{
    struct log_redis *log = context;
    char key[CATRACA_ID_MAX + 32], counter[CATRACA_ID_MAX + 32];
    stream_key(event, key);
    snprintf(counter, sizeof(counter), "catraca:{%s}:count", event);
    const char *argv[] = {"GET", counter};
    redisReply *reply = command(log, 2, argv);
    uint64_t total = 0, index = 0;
    int error = reply == NULL ? CATRACA_E_UNAVAILABLE : 0;
    if (error == 0 && reply->type == REDIS_REPLY_STRING)
        error = parse_u64(reply->str, reply->len, &total);
    else if (error == 0 && reply->type != REDIS_REPLY_NIL)
        error = reply_check(reply, REDIS_REPLY_STRING);
    freeReplyObject(reply);
    if (error == 0 && (after.major != 0 || after.minor != 0))
        error = index_at(log, key, after, &index);
    *count = error == 0 && total > index ? total - index : 0;
    return error;
}

static int redis_last_seq(void *context, const char *event, struct log_seq *seq)
{
    struct log_redis *log = context;
    char key[CATRACA_ID_MAX + 32];
    stream_key(event, key);
    const char *argv[] = {"XREVRANGE", key, "+", "-", "COUNT", "1"};
    redisReply *reply = command(log, 6, argv);
    int error = reply_check(reply, REDIS_REPLY_ARRAY);
    *seq = (struct log_seq){0, 0};
    if (error == 0 && reply->elements == 1) {
        const redisReply *entry = reply->element[0];
        error = entry->type == REDIS_REPLY_ARRAY && entry->elements == 2
                    ? parse_seq(entry->element[0], seq)
                    : CATRACA_E_CORRUPT;
    }
    freeReplyObject(reply);
    return error;
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int redis_list_partitions(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max,
                                 size_t *count)
{
    struct log_redis *log = context;
    const char *argv[] = {"SMEMBERS", "catraca:partitions"};
    redisReply *reply = command(log, 2, argv);
    int error = reply_check(reply, REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; error == 0 && i < reply->elements && n < max; i++) {
        const redisReply *member = reply->element[i];
        if (member->type != REDIS_REPLY_STRING || member->len == 0 || member->len > CATRACA_ID_MAX)
            continue; /* not an event id we could have written: ignore, never overflow */
        memcpy(events[n], member->str, member->len);
        events[n][member->len] = '\0';
        n++;
    }
    freeReplyObject(reply);
    qsort(events, n, sizeof(*events), compare_ids);
    *count = error == 0 ? n : 0;
    return error;
}

static void redis_close(void *context)
{
    struct log_redis *log = context;
    disconnect(log);
    free(log->entries);
    free(log->records);
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

int log_redis_open(const struct log_redis_options *options, struct catraca_log *out)
{
    if (options->url == NULL || options->read_max < 1 || options->timeout_ms < 1)
        return CATRACA_E_INVALID;
    struct log_redis *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return CATRACA_E_NOMEM;
    log->options = *options;
    log->options.url = NULL; /* not kept: host and port are */
    if (parse_url(options->url, log->host, sizeof(log->host), &log->port) != 0) {
        free(log);
        return CATRACA_E_INVALID;
    }
    log->entries = calloc(options->read_max, sizeof(*log->entries));
    log->records = malloc(options->read_max * CATRACA_COMMAND_ENCODED_MAX);
    if (log->entries == NULL || log->records == NULL) {
        redis_close(log);
        return CATRACA_E_NOMEM;
    }
    ensure_connected(log); /* lazily: a Redis that is down now is retried on each call */
    *out = (struct catraca_log){.ops = &redis_ops, .context = log};
    return 0;
}

int log_redis_unique_number(const struct log_redis_options *options, uint64_t *out)
{
    struct catraca_log handle;
    int error = log_redis_open(options, &handle);
    if (error != 0)
        return error;
    const char *argv[] = {"INCR", "catraca:instances"};
    redisReply *reply = command(handle.context, 2, argv);
    error = reply_check(reply, REDIS_REPLY_INTEGER);
    if (error == 0)
        *out = (uint64_t)reply->integer;
    freeReplyObject(reply);
    redis_close(handle.context);
    return error;
}

int log_redis_publish(void *log_context, const char *channel, const uint8_t *message, size_t length)
{
    struct log_redis *log = log_context;
    const char *argv[] = {"PUBLISH", channel, (const char *)message};
    size_t lengths[] = {7, strlen(channel), length};
    redisReply *reply = command_argv(log, 3, argv, lengths);
    int error = reply_check(reply, REDIS_REPLY_INTEGER);
    freeReplyObject(reply);
    return error;
}

/* ---- subscriptions ----------------------------------------------------------------------- */

/*
 * Waits for the next reply for at most poll_ms. hiredis' own read time-out
 * would leave the context unusable, so readiness is polled first: 1 with a
 * reply, 0 on time-out, -1 on a broken connection.
 */
static int next_reply(redisContext *c, int poll_ms, redisReply **reply)
{
    *reply = NULL;
    if (redisGetReplyFromReader(c, (void **)reply) != REDIS_OK)
        return -1;
    if (*reply != NULL)
        return 1;
    struct pollfd fd = {.fd = c->fd, .events = POLLIN};
    int ready = poll(&fd, 1, poll_ms);
    if (ready < 0)
        return errno == EINTR ? 0 : -1;
    if (ready == 0)
        return 0;
    if (redisBufferRead(c) != REDIS_OK || redisGetReplyFromReader(c, (void **)reply) != REDIS_OK)
        return -1;
    return *reply != NULL ? 1 : 0;
}

int log_redis_subscribe(const char *url, const char *channel,
                        void (*on_message)(void *context, const uint8_t *message, size_t length),
                        void *context, volatile int *stop, int poll_ms, volatile int *is_subscribed)
{
    char host[256];
    int port = 0;
    if (parse_url(url, host, sizeof(host), &port) != 0)
        return CATRACA_E_INVALID;
    redisContext *c = connect_to(host, port, poll_ms > 0 ? poll_ms : 1000);
    if (c == NULL)
        return CATRACA_E_UNAVAILABLE;
    redisReply *reply = redisCommand(c, "SUBSCRIBE %s", channel);
    int error = reply != NULL && reply->type == REDIS_REPLY_ARRAY ? 0 : CATRACA_E_UNAVAILABLE;
    freeReplyObject(reply);
    if (is_subscribed != NULL)
        *is_subscribed = error == 0;
    while (error == 0 && !*stop) {
        int got = next_reply(c, poll_ms, &reply);
        if (got < 0) {
            error = CATRACA_E_UNAVAILABLE;
        } else if (got > 0) {
            /* ["message", channel, payload]; anything else (confirmations) is skipped. */
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
                reply->element[0]->type == REDIS_REPLY_STRING &&
                strcmp(reply->element[0]->str, "message") == 0 &&
                reply->element[2]->type == REDIS_REPLY_STRING)
                on_message(context, (const uint8_t *)reply->element[2]->str,
                           reply->element[2]->len);
            freeReplyObject(reply);
        }
    }
    redisFree(c);
    if (is_subscribed != NULL)
        *is_subscribed = 0;
    return error;
}

struct appended_listener {
    void (*on_event)(void *context, const char *event);
    void *context;
};

static void on_appended(void *context, const uint8_t *message, size_t length)
{
    const struct appended_listener *listener = context;
    char event[CATRACA_ID_MAX + 1];
    if (length == 0 || length > CATRACA_ID_MAX)
        return;
    memcpy(event, message, length);
    event[length] = '\0';
    listener->on_event(listener->context, event);
}

int log_redis_wait_appended(const char *url, int poll_ms,
                            void (*on_event)(void *context, const char *event), void *context,
                            volatile int *stop, volatile int *is_subscribed)
{
    struct appended_listener listener = {.on_event = on_event, .context = context};
    return log_redis_subscribe(url, APPENDED_CHANNEL, on_appended, &listener, stop, poll_ms,
                               is_subscribed);
}
