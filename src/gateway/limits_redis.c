/*
 * limits_redis.c - contract in limits_redis.h. hiredis speaks the protocol;
 * every reply's type and shape is checked before use.
 */
#include "gateway/limits_redis.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/logline.h"
#include "log/log_redis.h"

#define HOST_TEXT_MAX LOG_REDIS_HOST_MAX
#define KEY_PART_MAX 256
#define KEY_TEXT_MAX (KEY_PART_MAX + 32)
#define NUMBER_TEXT_MAX 32
#define SCRIPT_ARGS 10 /* per check */
#define HEAD_ARGS 4    /* EVALSHA sha numkeys count */
/* The script below writes both as numbers. */
_Static_assert(SCRIPT_ARGS == 10, "take_script's stride between checks");
_Static_assert(LIMITS_REDIS_CLAIM_TTL_S == 86400, "take_script's claim expiry");

/*
 * ARGV: the number of checks n, then per check SCRIPT_ARGS words: ip key, ip rate (tokens/ms),
 * ip burst, customer key, its rate, its burst, challenge key, the challenge key's life in
 * seconds, the Idempotency-Key's claim key, the request hash it holds. An empty key skips its
 * step. Returns 2n integers: per check, outcome (enum
 * limits_redis_outcome) and retry_after_ms. Checks of one call see each other's writes, in
 * order. Keys are not passed as KEYS: like the log's append script (log_redis.c) this runs
 * on a single Redis, not Redis Cluster.
 *
 * REPL_NONE: its writes go neither to the AOF nor to replicas. With `appendfsync always` a
 * propagated write would add an fsync to every batch of checks; a bucket or a spent
 * challenge is not worth one. The price: after Redis restarts or fails over, buckets are
 * full again and a challenge spent in the last --challenge-ttl-seconds may be spent once more.
 */
static const char take_script[] =
    "redis.set_repl(redis.REPL_NONE)\n"
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local function take(key, rate, burst)\n"
    "  local saved = redis.call('HMGET', key, 'tokens', 'at')\n"
    "  local tokens, at = tonumber(saved[1]), tonumber(saved[2])\n"
    "  if tokens == nil or at == nil then tokens, at = burst, now end\n"
    "  if now > at then\n"
    "    tokens = math.min(burst, tokens + (now - at) * rate)\n"
    "    at = now\n"
    "  end\n"
    "  local wait = 0\n"
    "  if tokens >= 1 then tokens = tokens - 1 else wait = math.floor((1 - tokens) / rate) + 1 "
    "end\n"
    "  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens),\n"
    "             'at', string.format('%d', at))\n"
    "  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate) + 1000)\n"
    "  return wait\n"
    "end\n"
    "local function check(b)\n"
    "  if ARGV[b] ~= '' then\n"
    "    local wait = take(ARGV[b], tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]))\n"
    "    if wait > 0 then return 1, wait end\n"
    "  end\n"
    "  if ARGV[b + 3] ~= '' then\n"
    "    local wait = take(ARGV[b + 3], tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]))\n"
    "    if wait > 0 then return 2, wait end\n"
    "  end\n"
    "  if ARGV[b + 6] ~= '' then\n"
    "    if not redis.call('SET', ARGV[b + 6], '1', 'NX', 'EX', ARGV[b + 7]) then return 3, 0 end\n"
    "  end\n"
    "  if ARGV[b + 8] ~= '' then\n"
    "    local held = redis.call('GET', ARGV[b + 8])\n"
    "    if held then\n"
    "      if held == ARGV[b + 9] then return 4, 0 end\n"
    "      return 5, 0\n"
    "    end\n"
    "    redis.call('SET', ARGV[b + 8], ARGV[b + 9], 'EX', 86400)\n"
    "  end\n"
    "  return 0, 0\n"
    "end\n"
    "local out = {}\n"
    "for k = 0, tonumber(ARGV[1]) - 1 do\n"
    "  local outcome, wait = check(2 + k * 10)\n"
    "  out[2 * k + 1], out[2 * k + 2] = outcome, wait\n"
    "end\n"
    "return out\n";

struct limits_redis {
    char host[HOST_TEXT_MAX];
    int port;
    int timeout_ms;
    redisContext *redis; /* NULL: not connected; the next call connects */
    char script_sha[41]; /* "": not loaded on this connection yet */
    bool is_down;        /* the last attempt failed (logged once per outage) */
    /* take_many()'s argument vectors, for LIMITS_REDIS_BATCH_MAX checks */
    const char *argv[HEAD_ARGS + LIMITS_REDIS_BATCH_MAX * SCRIPT_ARGS];
    size_t argv_lengths[HEAD_ARGS + LIMITS_REDIS_BATCH_MAX * SCRIPT_ARGS];
    char keys[LIMITS_REDIS_BATCH_MAX][4][KEY_TEXT_MAX];
    char numbers[LIMITS_REDIS_BATCH_MAX][6][NUMBER_TEXT_MAX];
    char count_text[NUMBER_TEXT_MAX];
};

int limits_redis_open(const char *url, int timeout_ms, struct limits_redis **out)
{
    if (timeout_ms < 1)
        return CATRACA_E_INVALID;
    struct limits_redis *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CATRACA_E_NOMEM;
    if (log_redis_parse_url(url, l->host, &l->port) != 0) {
        free(l);
        return CATRACA_E_INVALID;
    }
    l->timeout_ms = timeout_ms;
    *out = l;
    return 0;
}

static void disconnect(struct limits_redis *l)
{
    if (l->redis != NULL)
        redisFree(l->redis);
    l->redis = NULL;
    l->script_sha[0] = '\0';
}

void limits_redis_close(struct limits_redis *l)
{
    if (l == NULL)
        return;
    disconnect(l);
    free(l);
}

static int ensure_connected(struct limits_redis *l)
{
    if (l->redis != NULL)
        return 0;
    struct timeval timeout = {.tv_sec = l->timeout_ms / 1000,
                              .tv_usec = (l->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(l->host, l->port, timeout);
    if (c == NULL || c->err != 0 || redisSetTimeout(c, timeout) != REDIS_OK) {
        if (!l->is_down)
            logline(LOGLINE_WARN, "limits_redis", "Redis unreachable", "error",
                    c != NULL ? c->errstr : "out of memory", NULL);
        l->is_down = true;
        if (c != NULL)
            redisFree(c);
        return CATRACA_E_UNAVAILABLE;
    }
    l->is_down = false;
    l->redis = c;
    return 0;
}

/* A command on the connection; NULL (and the connection dropped) when no reply came. */
static redisReply *command_argv(struct limits_redis *l, int argc, const char **argv,
                                const size_t *lengths)
{
    if (ensure_connected(l) != 0)
        return NULL;
    redisReply *reply = redisCommandArgv(l->redis, argc, argv, lengths);
    if (reply == NULL)
        disconnect(l);
    return reply;
}

static int load_script(struct limits_redis *l)
{
    const char *argv[] = {"SCRIPT", "LOAD", take_script};
    size_t lengths[] = {6, 4, sizeof(take_script) - 1};
    redisReply *reply = command_argv(l, 3, argv, lengths);
    int error = reply == NULL || reply->type == REDIS_REPLY_ERROR       ? CATRACA_E_UNAVAILABLE
                : reply->type != REDIS_REPLY_STRING || reply->len != 40 ? CATRACA_E_CORRUPT
                                                                        : 0;
    if (error == 0)
        memcpy(l->script_sha, reply->str, 41);
    freeReplyObject(reply);
    return error;
}

static bool is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

static redisReply *run_script(struct limits_redis *l, size_t argc)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (l->script_sha[0] == '\0' && load_script(l) != 0)
            return NULL;
        l->argv[1] = l->script_sha;
        l->argv_lengths[1] = 40;
        redisReply *reply = command_argv(l, (int)argc, l->argv, l->argv_lengths);
        if (!is_noscript(reply))
            return reply;
        freeReplyObject(reply); /* Redis restarted or SCRIPT FLUSH: load it again, once */
        l->script_sha[0] = '\0';
    }
    return NULL;
}

static bool is_key_part(const char *part)
{
    return part == NULL || strnlen(part, KEY_PART_MAX + 1) <= KEY_PART_MAX;
}

static void set_arg(struct limits_redis *l, size_t at, const char *text)
{
    l->argv[at] = text;
    l->argv_lengths[at] = strlen(text);
}

/* Check i's SCRIPT_ARGS words, at argv[HEAD_ARGS + i * SCRIPT_ARGS]. */
static void build_check(struct limits_redis *l, size_t i, const struct limits_redis_check *check)
{
    char(*keys)[KEY_TEXT_MAX] = l->keys[i];
    char(*numbers)[NUMBER_TEXT_MAX] = l->numbers[i];
    memset(keys, 0, sizeof(l->keys[i]));
    memset(numbers, 0, sizeof(l->numbers[i]));
    if (check->ip != NULL) {
        snprintf(keys[0], KEY_TEXT_MAX, "catraca:rate:ip:%s", check->ip);
        snprintf(numbers[0], NUMBER_TEXT_MAX, "%.17g", check->ip_rate_per_s / 1000.0);
        snprintf(numbers[1], NUMBER_TEXT_MAX, "%.17g", check->ip_burst);
    }
    if (check->customer != NULL) {
        snprintf(keys[1], KEY_TEXT_MAX, "catraca:rate:customer:%s", check->customer);
        snprintf(numbers[2], NUMBER_TEXT_MAX, "%.17g", check->customer_rate_per_s / 1000.0);
        snprintf(numbers[3], NUMBER_TEXT_MAX, "%.17g", check->customer_burst);
    }
    if (check->challenge != NULL) {
        snprintf(keys[2], KEY_TEXT_MAX, "catraca:challenge:%s", check->challenge);
        snprintf(numbers[4], NUMBER_TEXT_MAX, "%lld",
                 (long long)(check->challenge_ttl_s + LIMITS_REDIS_SKEW_S));
    }
    if (check->claim != NULL) {
        snprintf(keys[3], KEY_TEXT_MAX, "catraca:key:%s", check->claim);
        snprintf(numbers[5], NUMBER_TEXT_MAX, "%016llx", (unsigned long long)check->claim_hash);
    }
    const char *words[SCRIPT_ARGS] = {keys[0],    numbers[0], numbers[1], keys[1], numbers[2],
                                      numbers[3], keys[2],    numbers[4], keys[3], numbers[5]};
    for (size_t w = 0; w < SCRIPT_ARGS; w++)
        set_arg(l, HEAD_ARGS + i * SCRIPT_ARGS + w, words[w]);
}

int limits_redis_take_many(struct limits_redis *l, const struct limits_redis_check *checks,
                           size_t count, enum limits_redis_outcome *outcomes,
                           int64_t *retry_after_ms)
{
    if (count < 1 || count > LIMITS_REDIS_BATCH_MAX)
        return CATRACA_E_INVALID;
    for (size_t i = 0; i < count; i++)
        if (!is_key_part(checks[i].ip) || !is_key_part(checks[i].customer) ||
            !is_key_part(checks[i].challenge) || !is_key_part(checks[i].claim) ||
            checks[i].challenge_ttl_s < 0)
            return CATRACA_E_INVALID;
    set_arg(l, 0, "EVALSHA");
    set_arg(l, 2, "0");
    snprintf(l->count_text, sizeof(l->count_text), "%zu", count);
    set_arg(l, 3, l->count_text);
    for (size_t i = 0; i < count; i++)
        build_check(l, i, &checks[i]);
    redisReply *reply = run_script(l, HEAD_ARGS + count * SCRIPT_ARGS);
    int error = 0;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply != NULL) /* loading its AOF, out of memory, a key of another type */
            logline(LOGLINE_WARN, "limits_redis", "the limits script failed", "error",
                    reply->str != NULL ? reply->str : "", NULL);
        error = CATRACA_E_UNAVAILABLE;
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 * count) {
        error = CATRACA_E_CORRUPT;
    }
    for (size_t i = 0; error == 0 && i < count; i++) {
        const redisReply *outcome = reply->element[2 * i], *wait = reply->element[2 * i + 1];
        if (outcome->type != REDIS_REPLY_INTEGER || wait->type != REDIS_REPLY_INTEGER ||
            outcome->integer < LIMITS_REDIS_ALLOWED ||
            outcome->integer > LIMITS_REDIS_KEY_MISMATCH) {
            error = CATRACA_E_CORRUPT;
            break;
        }
        outcomes[i] = (enum limits_redis_outcome)outcome->integer;
        retry_after_ms[i] = wait->integer;
    }
    freeReplyObject(reply);
    return error;
}

int limits_redis_take(struct limits_redis *l, const struct limits_redis_check *check,
                      enum limits_redis_outcome *outcome, int64_t *retry_after_ms)
{
    return limits_redis_take_many(l, check, 1, outcome, retry_after_ms);
}
