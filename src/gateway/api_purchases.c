/*
 * api_purchases.c - the purchase routes (buy, read, long-poll, stream, cancel,
 * confirm) and their answers once the log or the engine has them.
 */
#include <stdatomic.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/error.h"
#include "core/logline.h"
#include "core/siphash.h"
#include "gateway/api_internal.h"

#define STREAM_TIMEOUT_MS 600000 /* an SSE stream lasts at most this long */
#define LONG_POLL_MAX_S 60

/* ---- answers (appender and responder threads) -------------------------------------------- */

/* 202 with the queued purchase, 200 with the first one for a repeated Idempotency-Key, or 422. */
/*
 * A purchase the log did not take: buyers are being turned away, an error (and
 * so a Sentry event). Logged at most once a second, with the number refused
 * since, so that an outage floods neither the log nor Sentry; the line carries
 * the request id of the refusal that wrote it.
 */
static void log_refused(const struct pending *p)
{
    static atomic_int_fast64_t last_logged_ms = -1000000;
    static atomic_uint_fast64_t refused;
    atomic_fetch_add(&refused, 1);
    int64_t now_ms = clock_monotonic_ms(), last_ms = atomic_load(&last_logged_ms);
    if (now_ms - last_ms < 1000 ||
        !atomic_compare_exchange_strong(&last_logged_ms, &last_ms, now_ms))
        return;
    char count[24], previous[LOGLINE_REQUEST_ID_MAX + 1];
    snprintf(count, sizeof(count), "%llu", (unsigned long long)atomic_exchange(&refused, 0));
    snprintf(previous, sizeof(previous), "%s", logline_request_id());
    logline_set_request_id(http_request_id(p->request));
    logline(LOGLINE_ERROR, "api", "purchases refused (503): the log did not take them", "event",
            p->event, "refused", count, "error", catraca_strerror(p->append_error), NULL);
    logline_set_request_id(previous);
}

void api_purchases_answer_appended(struct api *api, struct pending *p)
{
    if (p->append_error != 0) {
        log_refused(p);
        api_pending_finish_error(p, 503, "unavailable",
                                 "the log is unavailable; nothing was accepted");
        return;
    }
    if (p->append.result == LOG_DUPLICATE_MISMATCH) {
        api_pending_finish_error(p, 422, "invalid_request",
                                 "this Idempotency-Key was used with another request");
        return;
    }
    uint64_t id =
        p->append.result == LOG_DUPLICATE ? p->append.existing_purchase_id : p->purchase_id;
    char id_text[API_PURCHASE_ID_TEXT], location[64];
    api_json_purchase_id_format(id, id_text);
    snprintf(location, sizeof(location), "/v1/purchases/%s", id_text);
    const char *headers[] = {"Location", location, NULL};
    char accepted[API_PURCHASE_ACCEPTED_MAX + API_RECEIPT_ROOM];
    int length = api_json_purchase_accepted(accepted, sizeof(accepted), id, p->event, p->category,
                                            p->quantity, p->append.seq);
    assert(length > 0);
    if (p->append.result == LOG_DUPLICATE) {
        /* An idempotent repeat answers the purchase as it is now. */
        struct store_purchase row;
        if (api->responder_store.ops->get_purchase(api->responder_store.context, id, &row) == 0)
            api_pending_finish_cjson(p, 200, api_json_purchase(&row), headers);
        else /* still queued: the same shape as GET of a queued purchase */
            api_pending_finish_cjson(p, 200,
                                     api_json_purchase_queued(id, p->event, p->customer,
                                                              p->category, p->quantity,
                                                              p->append.seq),
                                     headers);
        return;
    }
    if (api->receipts != NULL && api_log_answer_signed(api, p, accepted, location))
        return; /* a signer thread answers, receipt signed */
    if (api->receipts != NULL)
        api_log_add_receipt(api, p, accepted, sizeof(accepted));
    metrics_count(&api->metrics, METRICS_PURCHASES_ACCEPTED);
    api_console_count_accepted(api, clock_monotonic_us() - p->started_us);
    api_pending_finish(p, 202, accepted, headers);
}

/* Confirm and cancel: the engine's answer, with the purchase as the store has it now. */
void api_purchases_answer(struct api *api, struct pending *p)
{
    struct store_purchase row;
    /* The answer and the row were committed together: the store has the row. */
    if (api->responder_store.ops->get_purchase(api->responder_store.context, p->purchase_id,
                                               &row) != 0) {
        api_pending_finish_error(p, 404, "not_found", "no such purchase");
        return;
    }
    const struct store_answer *a = &p->answer;
    if (a->type == ENGINE_OUTCOME_CONFIRM && a->reason == ENGINE_REASON_REFUND_DUE) {
        /*
         * A late payment: recorded (or recorded before), never a ticket. The code stays API.md's
         * "conflict" (version 1 answers an expired hold so); "reason" and the purchase's
         * refund_due and payment_ref name the refund.
         */
        cJSON *json = cJSON_CreateObject();
        cJSON *error = cJSON_AddObjectToObject(json, "error");
        cJSON_AddStringToObject(error, "code", "conflict");
        cJSON_AddStringToObject(error, "reason", "refund_due");
        cJSON_AddStringToObject(
            error, "message",
            a->result == ENGINE_RESULT_CONFLICT
                ? "the hold expired before this payment; another payment is already recorded "
                  "for refund, this one was not"
                : "the hold expired before this payment: no ticket; refund payment_ref");
        cJSON_AddItemToObject(json, "purchase", api_json_purchase(&row));
        api_pending_finish_cjson(p, 409, json, NULL);
        return;
    }
    if (a->result != ENGINE_RESULT_CONFLICT) {
        api_pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
        return;
    }
    if (a->reason == ENGINE_REASON_UNKNOWN_PURCHASE) {
        api_pending_finish_error(p, 404, "not_found", "no such purchase");
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(json, "error");
    cJSON_AddStringToObject(error, "code", "conflict");
    char message[96];
    snprintf(message, sizeof(message), "the hold is not valid: %s", engine_reason_name(a->reason));
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddItemToObject(json, "purchase", api_json_purchase(&row));
    api_pending_finish_cjson(p, 409, json, NULL);
}

void api_purchases_answer_current(struct api *api, struct pending *p)
{
    struct store_purchase row;
    if (api->responder_store.ops->get_purchase(api->responder_store.context, p->purchase_id,
                                               &row) == 0) {
        api_pending_finish_cjson(p, 200, api_json_purchase(&row), NULL);
        return;
    }
    cJSON *json = api_json_purchase_queued(p->purchase_id, p->event, p->customer, p->category,
                                           p->quantity, p->append.seq);
    api_pending_finish_cjson(p, 200, json, NULL);
}

/* ---- routes ------------------------------------------------------------------------------ */

/* An event's per-customer limit, from the thread's cache or the store; false once answered. */
static bool find_event_limit(struct route_context *c, const char *id, uint32_t *limit)
{
    struct thread_handles *h = api_handles_of(c->api);
    for (uint32_t i = 0; h != NULL && i < h->known_count; i++) {
        if (strcmp(h->known[i].id, id) == 0) {
            *limit = h->known[i].per_customer_limit;
            return true;
        }
    }
    struct store_event event;
    if (!api_events_read(c, id, &event))
        return false;
    *limit = event.spec.per_customer_limit;
    if (h != NULL && h->known_count < API_KNOWN_EVENTS_MAX) {
        snprintf(h->known[h->known_count].id, sizeof(h->known[0].id), "%s", id);
        h->known[h->known_count++].per_customer_limit = *limit;
    }
    return true;
}

static uint64_t next_purchase_id(struct api *api)
{
    /*
     * Time-ordered and unique across restarts and gateways: milliseconds, the
     * gateway's instance tag (10 bits), then a counter (4096 a ms per gateway).
     */
    uint64_t counter = atomic_fetch_add(&api->purchase_counter, 1);
    return ((uint64_t)clock_wall_ms() << 22) | ((uint64_t)(api->config.instance_tag & 1023) << 12) |
           (counter & 4095);
}

void api_purchases_init(struct api *api)
{
    static const char purpose[] = "catraca derived purchase ids v1";
    uint8_t digest[32];
    unsigned length = 0;
    memset(api->purchase_id_key, 0, sizeof(api->purchase_id_key));
    if (api->config.jwt_secret != NULL && api->config.jwt_secret_length > 0 &&
        HMAC(EVP_sha256(), api->config.jwt_secret, (int)api->config.jwt_secret_length,
             (const unsigned char *)purpose, sizeof(purpose) - 1, digest, &length) != NULL)
        memcpy(api->purchase_id_key, digest, sizeof(api->purchase_id_key));
}

/*
 * The id of a keyed purchase over a log that cannot check keys atomically
 * (log.h, LOG_FLAG_KEYS_IN_PURCHASE_IDS): SipHash of (customer, key, request
 * hash) under a key derived from the JWT secret all gateways share, so a
 * retry on any gateway carries the same id (the engine answers it REPEATED)
 * and nobody without the secret can aim at another customer's id. Bit 63 is
 * set: minted ids (ms << 22 | tag << 12 | counter) keep it clear until 2039,
 * so the two kinds never meet before then; after, a meeting is a 2^-63 chance.
 */
static uint64_t derived_purchase_id(const struct api *api, const char *customer, const char *key,
                                    uint64_t request_hash)
{
    uint8_t text[2 * (CATRACA_ID_MAX + 1) + 8];
    size_t customer_length = strnlen(customer, CATRACA_ID_MAX),
           key_length = strnlen(key, CATRACA_ID_MAX), n = 0;
    memcpy(text + n, customer, customer_length);
    n += customer_length;
    text[n++] = '\0';
    memcpy(text + n, key, key_length);
    n += key_length;
    text[n++] = '\0';
    for (int i = 0; i < 8; i++)
        text[n++] = (uint8_t)(request_hash >> (8 * i));
    return siphash24(api->purchase_id_key, text, n) | (1ULL << 63);
}

/* Whether this thread's log wants keyed purchase ids derived (log.h). */
static bool is_keys_in_ids(struct api *api)
{
    struct thread_handles *h = api_handles_of(api);
    return h != NULL && h->log.ops != NULL &&
           (h->log.ops->flags & LOG_FLAG_KEYS_IN_PURCHASE_IDS) != 0;
}

/*
 * A keyed purchase with a derived id that a worker already committed (in the
 * recent table, or the store): a repeat, answered 200 with the purchase as it
 * is now (API.md) instead of appending it again. True once answered. A repeat
 * not committed yet is appended again under the same id (the engine answers
 * it REPEATED) and answered 202 with the same id: docs/DEPLOY.md, "Kafka".
 */
static bool answers_committed_repeat(struct route_context *c, uint64_t id)
{
    struct store_purchase row;
    struct thread_handles *h = api_handles_of(c->api);
    bool is_known = (c->api->recent.slots != NULL && recent_find(&c->api->recent, id, &row)) ||
                    (h != NULL && h->store.ops->get_purchase(h->store.context, id, &row) == 0);
    if (!is_known)
        return false;
    char id_text[API_PURCHASE_ID_TEXT], location[64], text[API_PURCHASE_TEXT_MAX];
    api_json_purchase_id_format(id, id_text);
    snprintf(location, sizeof(location), "/v1/purchases/%s", id_text);
    const char *headers[] = {"Location", location, NULL};
    if (api_json_purchase_text(&row, text, sizeof(text)) <= 0)
        return false;
    api_reply_json(c, 200, text, headers);
    return true;
}

static uint64_t hash_request(const char *event, const char *category, int64_t quantity)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = event; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *s = category; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return (h ^ (uint64_t)quantity) * 1099511628211ULL;
}

/* Why a challenge was refused, by -enum challenge_error. */
static const char *const challenge_reasons[] = {
    "", "malformed", "not signed by this server", "wrong solution", "expired", "already used"};

static void reply_challenge_refused(struct route_context *c, int error)
{
    char message[64];
    snprintf(message, sizeof(message), "challenge refused: %s", challenge_reasons[-error]);
    api_reply_error(c, 403, "challenge_failed", message, NULL);
}

/* With --challenge on, a purchase carries a solved ALTCHA challenge; false once answered. */
static bool proof_of_work_passes(struct route_context *c)
{
    const char *payload = http_header(c->request, "X-Challenge");
    if (payload == NULL) {
        api_reply_error(c, 403, "challenge_required",
                        "solve GET /v1/challenge and send it in X-Challenge", NULL);
        return false;
    }
    int error = challenge_verify(&c->api->challenge, payload, clock_wall_ms() / 1000);
    if (error == CHALLENGE_E_BUSY) {
        api_reply_error(c, 503, "unavailable", "too many challenges in flight; retry shortly",
                        NULL);
        return false;
    }
    if (error != 0) {
        reply_challenge_refused(c, error);
        return false;
    }
    return true;
}

/*
 * API.md: 1-64 characters, each printable ASCII other than space (0x21-0x7E). A control character
 * is refused, never dropped or cut at: two different keys must not become one.
 */
static bool is_idempotency_key(const char *key)
{
    size_t length = strnlen(key, CATRACA_ID_MAX + 1);
    if (length < 1 || length > CATRACA_ID_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)key[i];
        if (byte < 0x21 || byte > 0x7e)
            return false;
    }
    return true;
}

static void reply_rate_limited(struct route_context *c, int64_t retry_ms)
{
    char seconds[24];
    snprintf(seconds, sizeof(seconds), "%lld", (long long)((retry_ms + 999) / 1000));
    const char *headers[] = {"Retry-After", seconds, NULL};
    metrics_count(&c->api->metrics, METRICS_RATE_LIMITED);
    api_reply_error(c, 429, "rate_limited", "too many requests; retry after the given seconds",
                    headers);
}

/* True when key is over its rate (then answered 429). */
static bool is_rate_limited(struct route_context *c, struct ratelimit *limiter, const char *key)
{
    int64_t retry_ms = 0;
    if (limiter->slots == NULL || ratelimit_take(limiter, key, clock_wall_ms(), &retry_ms))
        return false;
    reply_rate_limited(c, retry_ms);
    return true;
}

/* The client address the per-IP limit counts: the TCP peer, or behind --trusted-proxy the
 * rightmost untrusted X-Forwarded-For hop (gateway/client_address.h). */
static void client_address_of(struct route_context *c, char out[CLIENT_ADDRESS_TEXT_MAX])
{
    const char *forwarded[CLIENT_ADDRESS_HOPS_MAX];
    size_t count = 0;
    if (c->api->config.trusted_proxies.count > 0)
        while (count < CLIENT_ADDRESS_HOPS_MAX &&
               (forwarded[count] =
                    http_header_nth(c->request, "X-Forwarded-For", (uint32_t)count)) != NULL)
            count++;
    client_address_pick(&c->api->config.trusted_proxies, http_client_ip(c->request), forwarded,
                        count, out);
}

/*
 * Distributed mode: the address's and the customer's buckets and the challenge's spending
 * happen in Redis, for many purchases in one script call (gateway/limits_batch.h), so N
 * gateways allow a rate once and a challenge is spent once across them. This fills the
 * check; the challenge itself is verified here (signature, solution, expiry) and spent
 * there only when the buckets allowed the purchase: a 429 comes before a 403, as on the
 * in-process path. Returns the challenge_error api_pending_submit_limited takes.
 */
static int shared_check_of(struct route_context *c, const char *address,
                           struct limits_redis_check *check, char challenge_hex[65])
{
    struct api *api = c->api;
    int64_t expires_s = 0, now_s = clock_wall_ms() / 1000;
    int challenge_error = 0;
    if (api->config.is_challenge_on) {
        const char *payload = http_header(c->request, "X-Challenge");
        challenge_error = payload == NULL ? API_CHALLENGE_MISSING
                                          : challenge_check(&api->challenge, payload, now_s,
                                                            challenge_hex, &expires_s);
    }
    *check = (struct limits_redis_check){
        .ip = api->config.rate_ip_per_s > 0 ? address : NULL,
        .ip_rate_per_s = api->config.rate_ip_per_s,
        .ip_burst = api->config.rate_ip_burst,
        .customer = api->config.rate_customer_per_s > 0 ? c->claims.subject : NULL,
        .customer_rate_per_s = api->config.rate_customer_per_s,
        .customer_burst = api->config.rate_customer_burst,
        .challenge = api->config.is_challenge_on && challenge_error == 0 ? challenge_hex : NULL,
        .challenge_ttl_s = expires_s > now_s ? expires_s - now_s : 0,
    };
    return challenge_error;
}

bool api_purchases_admit(struct api *api, struct pending *p, int error,
                         enum limits_redis_outcome outcome, int64_t retry_after_ms,
                         int challenge_error)
{
    if (error != 0) {
        /* Fail closed: a purchase let through unchecked could exceed a limit N gateways share
         * (and when the limits share the log's Redis, nothing could be appended anyway). */
        metrics_count(&api->metrics, METRICS_LIMITS_UNAVAILABLE);
        api_pending_finish_error(p, 503, "unavailable",
                                 "the shared rate limits are unavailable; retry shortly");
        return false;
    }
    if (outcome == LIMITS_REDIS_IP_LIMITED || outcome == LIMITS_REDIS_CUSTOMER_LIMITED) {
        char seconds[24];
        snprintf(seconds, sizeof(seconds), "%lld", (long long)((retry_after_ms + 999) / 1000));
        const char *headers[] = {"Retry-After", seconds, NULL};
        metrics_count(&api->metrics, METRICS_RATE_LIMITED);
        char *json =
            api_json_error("rate_limited", "too many requests; retry after the given seconds");
        api_pending_finish(p, 429, json ? json : "{}", headers);
        free(json);
        return false;
    }
    if (outcome == LIMITS_REDIS_KEY_MISMATCH) {
        api_pending_finish_error(p, 422, "invalid_request",
                                 "this Idempotency-Key was used with another request");
        return false;
    }
    if (challenge_error == API_CHALLENGE_MISSING) {
        api_pending_finish_error(p, 403, "challenge_required",
                                 "solve GET /v1/challenge and send it in X-Challenge");
        return false;
    }
    if (challenge_error != 0 || outcome == LIMITS_REDIS_REPLAYED) {
        char message[64];
        snprintf(
            message, sizeof(message), "challenge refused: %s",
            challenge_reasons[-(challenge_error != 0 ? challenge_error : CHALLENGE_E_REPLAYED)]);
        api_pending_finish_error(p, 403, "challenge_failed", message);
        return false;
    }
    return true;
}

void api_purchases_create(struct route_context *c)
{
    struct api *api = c->api;
    char address[CLIENT_ADDRESS_TEXT_MAX] = "";
    bool is_ip_limited = api->config.rate_ip_per_s > 0; /* off by default: skip the address */
    if (is_ip_limited)
        client_address_of(c, address);
    bool is_shared = api->limits_batch != NULL; /* distributed: decided with the append */
    if (!is_shared && ((is_ip_limited && is_rate_limited(c, &api->ip_limit, address)) ||
                       is_rate_limited(c, &api->customer_limit, c->claims.subject)))
        return;
    if (!is_shared && api->config.is_challenge_on && !proof_of_work_passes(c))
        return;
    const char *key = http_header(c->request, "Idempotency-Key");
    if (key != NULL && !is_idempotency_key(key)) {
        api_reply_error(c, 400, "invalid_request",
                        "Idempotency-Key must be 1-64 printable ASCII characters, no spaces", NULL);
        return;
    }
    uint32_t limit = 0;
    if (!find_event_limit(c, c->segments[2], &limit))
        return;
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    int64_t quantity = 0;
    if (api_json_parse_purchase(body, length, command.u.purchase.category, &quantity, message) !=
        0) {
        api_reply_error(c, 400, "invalid_request", message, NULL);
        return;
    }
    if (quantity > limit) {
        api_reply_error(c, 400, "invalid_request",
                        "quantity is above the event's per_customer_limit", NULL);
        return;
    }
    uint64_t hash = hash_request(c->segments[2], command.u.purchase.category, quantity);
    uint64_t derived_id = key != NULL && is_keys_in_ids(api)
                              ? derived_purchase_id(api, c->claims.subject, key, hash)
                              : 0;
    if (derived_id != 0 && answers_committed_repeat(c, derived_id))
        return;
    struct pending *p = api_pending_new(c, PENDING_PURCHASE);
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    command.u.purchase.purchase_id = derived_id != 0 ? derived_id : next_purchase_id(api);
    command.u.purchase.quantity = (uint32_t)quantity;
    snprintf(command.u.purchase.customer, sizeof(command.u.purchase.customer), "%s",
             c->claims.subject);
    p->purchase_id = command.u.purchase.purchase_id;
    p->quantity = (uint32_t)quantity;
    snprintf(p->event, sizeof(p->event), "%s", c->segments[2]);
    snprintf(p->customer, sizeof(p->customer), "%s", c->claims.subject);
    snprintf(p->category, sizeof(p->category), "%s", command.u.purchase.category);
    struct limits_redis_check check = {0};
    char challenge_hex[65];
    int challenge_error = is_shared ? shared_check_of(c, address, &check, challenge_hex) : 0;
    char claim[2 * CATRACA_ID_MAX + 8];
    if (is_shared && derived_id != 0 && challenge_error == 0) {
        /* Claimed in the shared Redis, so that any gateway answers a retry like the first:
         * limits_redis.h, step 4 (a purchase refused before it claims nothing). */
        snprintf(claim, sizeof(claim), "%zu:%s:%s", strlen(c->claims.subject), c->claims.subject,
                 key);
        check.claim = claim;
        check.claim_hash = hash;
    }
    bool has_check = check.ip != NULL || check.customer != NULL || challenge_error != 0 ||
                     check.challenge != NULL || check.claim != NULL; /* else none is on */
    if (has_check)
        api_pending_submit_limited(c, p, &command, key, hash, &check, challenge_error);
    else
        api_pending_submit(c, p, &command, key, hash);
}

/*
 * Over a log whose find_purchase knows only this process's purchases (log.h),
 * a read of an unknown id waits up to API_STORE_WAIT_MS for the store (a
 * worker commits a purchase within its batch interval) before the 404,
 * parked: api_pending_park_store_wait, woken by the commit's notification or
 * settled by one store read off the event loops when the wait is over. Only
 * ids that can be queued wait: derived ones (bit 63), and minted ones of the
 * last API_PURCHASE_QUEUED_MAX_MS (the id carries its milliseconds); an older
 * or made-up minted id is a 404 at once. Anyone can name a derived-looking id:
 * at most API_STORE_WAITS_MAX wait at once, and one beyond is answered 503
 * with Retry-After: 1 (it may still be queued), never a 404 it cannot be sure of.
 */
#define API_PURCHASE_QUEUED_MAX_MS 60000
#define FIND_PURCHASE_WAIT_FOR_STORE 1 /* find_purchase: not answered, park a store-wait */

static bool is_possibly_queued(uint64_t id)
{
    if (id >> 63)
        return true;
    int64_t minted_ms = (int64_t)(id >> 22), now_ms = clock_wall_ms();
    return minted_ms <= now_ms + 1000 && now_ms - minted_ms <= API_PURCHASE_QUEUED_MAX_MS;
}

/*
 * Finds a purchase in the store, or as still queued in the log. 0, -1 once answered, or
 * FIND_PURCHASE_WAIT_FOR_STORE (nothing answered; out->purchase_id is the id to wait for).
 */
static int find_purchase(struct route_context *c, uint64_t id, struct store_purchase *out)
{
    struct thread_handles *h = api_handles_of(c->api);
    if (h == NULL) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return -1;
    }
    if (c->api->recent.slots != NULL && recent_find(&c->api->recent, id, out))
        return 0;
    int error = h->store.ops->get_purchase(h->store.context, id, out);
    if (error == 0)
        return 0;
    char event[CATRACA_ID_MAX + 1];
    struct log_seq seq;
    if (error == CATRACA_E_NOTFOUND)
        error = h->log.ops->find_purchase(h->log.context, id, event, &seq);
    if (error == CATRACA_E_NOTFOUND && (h->log.ops->flags & LOG_FLAG_KEYS_IN_PURCHASE_IDS) &&
        is_possibly_queued(id)) {
        /* Accepted by another gateway? This log knows only its own process's purchases. */
        memset(out, 0, sizeof(*out));
        out->purchase_id = id;
        return FIND_PURCHASE_WAIT_FOR_STORE;
    }
    struct log_entry entry;
    size_t count = 0;
    struct engine_command command;
    if (error == 0)
        error = h->log.ops->read(h->log.context, event, log_seq_before(seq), &entry, 1, &count);
    /* The entry must be this purchase's own: never answer with a neighbour's customer. */
    if (error == 0 &&
        (count != 1 || log_seq_compare(entry.seq, seq) != 0 ||
         codec_command_decode(entry.record, entry.record_length, &command) != 0 ||
         command.type != ENGINE_COMMAND_PURCHASE || command.u.purchase.purchase_id != id))
        error = CATRACA_E_CORRUPT;
    if (error == CATRACA_E_NOTFOUND) {
        api_reply_error(c, 404, "not_found", "no such purchase", NULL);
        return -1;
    }
    if (error != 0) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->purchase_id = id;
    snprintf(out->event, sizeof(out->event), "%s", event);
    snprintf(out->customer, sizeof(out->customer), "%s", command.u.purchase.customer);
    snprintf(out->category, sizeof(out->category), "%s", command.u.purchase.category);
    out->quantity = command.u.purchase.quantity;
    out->seq = seq;
    out->status = ENGINE_STATUS_NONE; /* queued */
    return 0;
}

cJSON *api_purchases_json(const struct store_purchase *row)
{
    if (row->status == ENGINE_STATUS_NONE)
        return api_json_purchase_queued(row->purchase_id, row->event, row->customer, row->category,
                                        row->quantity, row->seq);
    return api_json_purchase(row);
}

/* The caller may see row's purchase (cancel: owner only). */
static bool is_visible(const struct store_purchase *row, const char *caller, bool is_caller_staff,
                       bool is_owner_only)
{
    bool is_owner = strcmp(row->customer, caller) == 0;
    return is_owner || (!is_owner_only && is_caller_staff);
}

/*
 * The purchase named by the path, visible to the caller: 0, -1 once answered, or
 * FIND_PURCHASE_WAIT_FOR_STORE (row->purchase_id: the id to park a store-wait for).
 */
static int load_visible_purchase(struct route_context *c, bool is_owner_only,
                                 struct store_purchase *row)
{
    uint64_t id = 0;
    if (api_json_purchase_id_parse(c->segments[2], &id) != 0) {
        api_reply_error(c, 404, "not_found", "no such purchase", NULL);
        return -1;
    }
    int found = find_purchase(c, id, row);
    if (found != 0)
        return found;
    if (!is_visible(row, c->claims.subject, c->claims.role != JWT_ROLE_BUYER, is_owner_only)) {
        api_reply_error(c, 403, "forbidden", "this purchase belongs to another customer", NULL);
        return -1;
    }
    return 0;
}

void api_purchases_get(struct route_context *c)
{
    struct store_purchase row;
    int found = load_visible_purchase(c, false, &row);
    if (found < 0)
        return;
    const char *wait = http_query(c->request, "wait");
    const char *status = http_query(c->request, "status");
    long wait_s = 0;
    if (wait != NULL) {
        char *end = NULL;
        wait_s = strtol(wait, &end, 10);
        if (end == wait || *end != '\0' || wait_s < 0) {
            api_reply_error(c, 400, "invalid_request", "wait must be a number of seconds", NULL);
            return;
        }
        if (wait_s > LONG_POLL_MAX_S)
            wait_s = LONG_POLL_MAX_S;
    }
    if (found == FIND_PURCHASE_WAIT_FOR_STORE) {
        api_pending_park_store_wait(c, row.purchase_id, 0, wait_s * 1000, status, false);
        return;
    }
    const char *current = engine_status_name(row.status);
    bool is_final = engine_status_is_final(row.status);
    if (wait_s == 0 || is_final || (status != NULL && strcmp(status, current) != 0)) {
        char text[API_PURCHASE_TEXT_MAX];
        int length = row.status == ENGINE_STATUS_NONE
                         ? -1
                         : api_json_purchase_text(&row, text, sizeof(text));
        if (length > 0)
            api_reply_json(c, 200, text, NULL);
        else
            api_reply_cjson(c, 200, api_purchases_json(&row), NULL);
        return;
    }
    api_pending_park_for_changes(c, &row, PENDING_LONG_POLL, wait_s * 1000,
                                 status != NULL ? (int)row.status : -1);
}

void api_purchases_stream(struct route_context *c)
{
    struct store_purchase row;
    int found = load_visible_purchase(c, false, &row);
    if (found < 0)
        return;
    bool is_head = strcmp(http_method(c->request), "HEAD") == 0;
    if (found == FIND_PURCHASE_WAIT_FOR_STORE && is_head) {
        /* Nothing to wait for: a HEAD has no events. (Its GET waits, below.) */
        static const char *const retry[] = {"Retry-After", "1", NULL};
        api_reply_error(c, 503, "unavailable",
                        "this purchase may still be queued on another gateway; retry shortly",
                        retry);
        return;
    }
    if (found == FIND_PURCHASE_WAIT_FOR_STORE) {
        /* Taken by another gateway a moment ago (Kafka): the stream starts once the store
         * knows the purchase (http_stream_start_parked), or the wait ends in a 404. */
        api_pending_park_store_wait(c, row.purchase_id, 0, STREAM_TIMEOUT_MS, NULL, true);
        return;
    }
    if (is_head) {
        /* The stream's headers, not a stream: nothing would ever be sent on it, and a chunked
         * answer to HEAD gets an end-of-stream chunk from some HTTP libraries (MHD). */
        static const char *const headers[] = {"Cache-Control", "no-cache", NULL};
        api_reply(c, 200, "text/event-stream", "", 0, headers);
        return;
    }
    api_pending_park_for_changes(c, &row, PENDING_STREAM, STREAM_TIMEOUT_MS, -1);
}

/*
 * The CANCEL (by caller) or CONFIRM (with the request's payment_ref) of row's purchase: 0, or -1
 * with message (a 400's).
 */
static int purchase_command_of(uint8_t type, struct http_request *request,
                               const struct store_purchase *row, const char *caller,
                               struct engine_command *command, char message[API_ERROR_MESSAGE_MAX])
{
    *command = (struct engine_command){.type = type, .now_ms = clock_wall_ms()};
    if (type == ENGINE_COMMAND_CONFIRM) {
        size_t length = 0;
        const char *body = http_body(request, &length);
        if (api_json_parse_confirm(body, length, command->u.confirm.payment_ref, message) != 0)
            return -1;
        command->u.confirm.purchase_id = row->purchase_id;
    } else {
        command->u.cancel.purchase_id = row->purchase_id;
        snprintf(command->u.cancel.customer, sizeof(command->u.cancel.customer), "%s", caller);
    }
    return 0;
}

/* Cancel (the owner only) or confirm (payments or admin), through the event's log. */
static void purchase_command(struct route_context *c, uint8_t type)
{
    struct store_purchase row;
    int found = load_visible_purchase(c, type == ENGINE_COMMAND_CANCEL, &row);
    if (found == FIND_PURCHASE_WAIT_FOR_STORE)
        api_pending_park_store_wait(c, row.purchase_id, type, 0, NULL, false);
    if (found != 0)
        return;
    struct engine_command command;
    char message[API_ERROR_MESSAGE_MAX];
    if (purchase_command_of(type, c->request, &row, c->claims.subject, &command, message) != 0) {
        api_reply_error(c, 400, "invalid_request", message, NULL);
        return;
    }
    struct pending *p = api_pending_new(c, PENDING_ANSWER);
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->command_type = type;
    p->purchase_id = row.purchase_id;
    snprintf(p->event, sizeof(p->event), "%s", row.event);
    snprintf(p->customer, sizeof(p->customer), "%s", c->claims.subject);
    api_pending_submit(c, p, &command, NULL, 0);
}

void api_purchases_resume(struct api *api, struct pending *p, const struct store_purchase *row)
{
    uint8_t type = p->resume_command;
    if (!is_visible(row, p->customer, p->is_caller_staff, type == ENGINE_COMMAND_CANCEL)) {
        api_pending_finish_error(p, 403, "forbidden", "this purchase belongs to another customer");
        return;
    }
    if (type == 0 && p->resume_as_stream) { /* GET .../events, as api_purchases_stream's */
        api_pending_stream_from(api, p, row);
        return;
    }
    if (type == 0) { /* GET, as api_purchases_get answers a purchase it found at once */
        const char *current = engine_status_name(row->status);
        if (p->resume_wait_ms == 0 || engine_status_is_final(row->status) ||
            (p->resume_status[0] != '\0' && strcmp(p->resume_status, current) != 0)) {
            api_pending_finish_cjson(p, 200, api_purchases_json(row), NULL);
            return;
        }
        api_pending_long_poll_from(api, p, row, p->resume_status[0] ? (int)row->status : -1);
        return;
    }
    if (type == ENGINE_COMMAND_PURCHASE) { /* a retry: as api_purchases_answer_appended's */
        char id_text[API_PURCHASE_ID_TEXT], location[64];
        api_json_purchase_id_format(row->purchase_id, id_text);
        snprintf(location, sizeof(location), "/v1/purchases/%s", id_text);
        const char *headers[] = {"Location", location, NULL};
        api_pending_finish_cjson(p, 200, api_json_purchase(row), headers);
        return;
    }
    struct engine_command command;
    char message[API_ERROR_MESSAGE_MAX];
    if (purchase_command_of(type, p->request, row, p->customer, &command, message) != 0) {
        api_pending_finish_error(p, 400, "invalid_request", message);
        return;
    }
    snprintf(p->event, sizeof(p->event), "%s", row->event);
    api_pending_resubmit(api, p, &command);
}

/* GET /v1/events/{event}/refunds: purchases whose payment came after the hold expired. */
void api_purchases_refunds(struct route_context *c)
{
    struct store_event event;
    if (!api_events_read(c, c->segments[2], &event))
        return;
    struct thread_handles *h = api_handles_of(c->api);
    struct store_purchase *rows = calloc(API_REFUNDS_MAX + 1, sizeof(*rows));
    size_t count = 0;
    if (h == NULL || rows == NULL || h->store.ops->list_refunds == NULL ||
        h->store.ops->list_refunds(h->store.context, event.spec.id, 0, rows, API_REFUNDS_MAX + 1,
                                   &count) != 0) {
        free(rows);
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(json, "purchases");
    for (size_t i = 0; i < count && i < API_REFUNDS_MAX; i++)
        cJSON_AddItemToArray(list, api_json_purchase(&rows[i]));
    cJSON_AddBoolToObject(json, "more", count > API_REFUNDS_MAX);
    free(rows);
    api_reply_cjson(c, 200, json, NULL);
}

void api_purchases_cancel(struct route_context *c)
{
    purchase_command(c, ENGINE_COMMAND_CANCEL);
}

void api_purchases_confirm(struct route_context *c)
{
    purchase_command(c, ENGINE_COMMAND_CONFIRM);
}
