/*
 * api_log.c - what a buyer or an auditor needs to check a receipt
 * (gateway/receipts.h): the public key, each event's signed tree head, and
 * inclusion and consistency proofs (RFC 9162), all without customers'
 * identities: an entry appears only as its leaf hash.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"
#include "gateway/api_internal.h"

#define HEX_TEXT (2 * MERKLE_HASH_BYTES + 1)
#define QUERY_INTEGER_MAX UINT64_C(9007199254740992) /* 2^53: exact in a JSON number */

/* Says so on stderr: the first time, then once every 1000 (past the tree's bound every 202
 * lacks one, and the log must not grow with the sale). */
static void log_missing_receipt(const char *event, int error)
{
    static atomic_uint_fast64_t missing;
    uint64_t count = atomic_fetch_add(&missing, 1) + 1;
    if (count % 1000 == 1)
        fprintf(stderr,
                "level=warn component=receipts event=%s msg=\"no receipt: %s\" missing=%llu\n",
                event, catraca_strerror(error), (unsigned long long)count);
}

void api_log_add_receipt(struct api *api, const struct pending *p, char *json, size_t size)
{
    size_t length = strlen(json);
    if (length < 2 || json[length - 1] != '}' || size - length < API_RECEIPT_ROOM)
        return;
    struct receipt receipt;
    char text[RECEIPT_JSON_MAX] = "null";
    int error = receipts_issue(api->receipts, &p->append, &receipt);
    if (error == 0 && receipt_format_json(&receipt, text, sizeof(text)) < 0)
        error = CATRACA_E_NOSPACE;
    if (error != 0) {
        /* The purchase is in the log already: it is accepted, only its receipt is missing. */
        snprintf(text, sizeof(text), "null");
        log_missing_receipt(p->event, error);
    }
    snprintf(json + length - 1, size - length + 1, ",\"receipt\":%s}", text);
}

/* What a signer job carries: the 202 being built. */
struct signed_answer {
    struct api *api;
    struct pending *p; /* one reference, released once answered */
    char location[64];
    char json[API_PURCHASE_ACCEPTED_MAX];
};
static_assert(sizeof(struct signed_answer) <= SIGNER_PAYLOAD_MAX, "a 202 fits a signer job");

bool api_log_answer_signed(struct api *api, struct pending *p, const char *json,
                           const char *location)
{
    struct signed_answer answer = {.api = api, .p = p};
    struct receipt receipt;
    if (strlen(json) >= sizeof(answer.json) || strlen(location) >= sizeof(answer.location) ||
        receipts_place(api->receipts, &p->append, &receipt) != 0)
        return false;
    memcpy(answer.json, json, strlen(json) + 1);
    memcpy(answer.location, location, strlen(location) + 1);
    atomic_fetch_add(&p->references, 1); /* the signer's */
    if (signer_submit(api->signer, &receipt, &answer, sizeof(answer)) == 0)
        return true;
    api_pending_release(p);
    return false; /* full or stopping: the caller signs inline */
}

void api_log_on_signed(void *payload, const struct receipt *receipt, int error)
{
    struct signed_answer *answer = payload;
    char text[API_PURCHASE_ACCEPTED_MAX + API_RECEIPT_ROOM], receipt_json[RECEIPT_JSON_MAX];
    if (error != 0 || receipt_format_json(receipt, receipt_json, sizeof(receipt_json)) < 0)
        snprintf(receipt_json, sizeof(receipt_json), "null");
    size_t length = strlen(answer->json);
    snprintf(text, sizeof(text), "%.*s,\"receipt\":%s}", (int)(length - 1), answer->json,
             receipt_json);
    const char *headers[] = {"Location", answer->location, NULL};
    metrics_count(&answer->api->metrics, METRICS_PURCHASES_ACCEPTED);
    api_console_count_accepted(answer->api, clock_monotonic_us() - answer->p->started_us);
    api_pending_finish(answer->p, 202, text, headers);
    api_pending_release(answer->p);
}

/* False (answered 404) when receipts are off or the event is unknown. */
static bool log_is_published(struct route_context *c)
{
    if (c->api->receipts == NULL) {
        api_reply_error(c, 404, "not_found", "receipts are off on this server", NULL);
        return false;
    }
    struct store_event event;
    return api_events_read(c, c->segments[2], &event);
}

/* A query integer in 0..2^53 (absent: `absent`); false once answered 400. */
static bool query_integer(struct route_context *c, const char *name, uint64_t absent, uint64_t *out)
{
    const char *text = http_query(c->request, name);
    *out = absent;
    if (text == NULL)
        return true;
    uint64_t value = 0;
    size_t length = strlen(text);
    bool is_valid = length >= 1 && length <= 16;
    for (size_t i = 0; is_valid && i < length; i++) {
        is_valid = text[i] >= '0' && text[i] <= '9';
        value = value * 10 + (uint64_t)(text[i] - '0');
    }
    if (!is_valid || value > QUERY_INTEGER_MAX) {
        char message[96];
        snprintf(message, sizeof(message), "%s must be a whole number", name);
        api_reply_error(c, 400, "invalid_request", message, NULL);
        return false;
    }
    *out = value;
    return true;
}

static bool reply_unavailable(struct route_context *c, int error)
{
    if (error == CATRACA_E_UNAVAILABLE || error == CATRACA_E_NOMEM) {
        api_reply_error(c, 503, "unavailable", "the log cannot be read now", NULL);
        return true;
    }
    return false;
}

static cJSON *path_json(const merkle_hash *path, size_t count)
{
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < count; i++) {
        char hex[HEX_TEXT];
        log_tree_hex(path[i], hex);
        cJSON_AddItemToArray(list, cJSON_CreateString(hex));
    }
    return list;
}

void api_log_public_key(struct route_context *c)
{
    if (c->api->receipts == NULL) {
        api_reply_error(c, 404, "not_found", "receipts are off on this server", NULL);
        return;
    }
    uint8_t raw[RECEIPT_PUBLIC_KEY_BYTES];
    receipts_public_key(c->api->receipts, raw);
    char base64[RECEIPT_BASE64_MAX], pem[256] = "";
    receipt_base64(raw, sizeof(raw), base64);
    EVP_PKEY *public_key = receipt_key_from_public(raw, sizeof(raw));
    BIO *bio = BIO_new(BIO_s_mem());
    if (public_key != NULL && bio != NULL && PEM_write_bio_PUBKEY(bio, public_key) == 1) {
        int length = BIO_read(bio, pem, (int)sizeof(pem) - 1);
        pem[length > 0 ? length : 0] = '\0';
    }
    BIO_free(bio);
    EVP_PKEY_free(public_key);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "algorithm", "Ed25519");
    cJSON_AddStringToObject(json, "public_key", base64);
    cJSON_AddStringToObject(json, "public_key_pem", pem);
    api_reply_cjson(c, 200, json, NULL);
}

void api_log_head(struct route_context *c)
{
    if (!log_is_published(c))
        return;
    struct tree_head head;
    int error = receipts_head(c->api->receipts, c->segments[2], &head);
    char text[RECEIPT_JSON_MAX];
    if (reply_unavailable(c, error))
        return;
    if (error != 0 || tree_head_format_json(&head, text, sizeof(text)) < 0) {
        api_reply_error(c, 503, "unavailable", "the head cannot be signed now", NULL);
        return;
    }
    api_reply_json(c, 200, text, NULL);
}

void api_log_inclusion(struct route_context *c)
{
    if (!log_is_published(c))
        return;
    const char *seq_text = http_query(c->request, "seq"),
               *leaf_text = http_query(c->request, "leaf");
    struct log_seq seq = {0, 0};
    merkle_hash leaf = {0};
    if ((seq_text == NULL) == (leaf_text == NULL) ||
        (seq_text != NULL && log_seq_parse(seq_text, &seq) != 0) ||
        (leaf_text != NULL && log_tree_hex_parse(leaf_text, leaf) != 0)) {
        api_reply_error(c, 400, "invalid_request",
                        "give either seq (\"major-minor\") or leaf (64 hex digits)", NULL);
        return;
    }
    uint64_t tree_size = 0;
    if (!query_integer(c, "tree_size", UINT64_MAX, &tree_size))
        return;
    /* receipts_inclusion() reads tree_size 0 as "the current size": a given 0 is out of range. */
    if (tree_size == 0) {
        api_reply_error(c, 400, "invalid_request",
                        "tree_size must cover the entry and be at most the log's size", NULL);
        return;
    }
    if (tree_size == UINT64_MAX)
        tree_size = 0;
    struct receipts_inclusion *proof = malloc(sizeof(*proof));
    if (proof == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    int error = receipts_inclusion(c->api->receipts, c->segments[2], seq_text != NULL, seq, leaf,
                                   tree_size, proof);
    if (error == CATRACA_E_NOTFOUND) {
        api_reply_error(c, 404, "not_found", "no such entry in this event's log", NULL);
    } else if (error == CATRACA_E_INVALID) {
        api_reply_error(c, 400, "invalid_request",
                        "tree_size must cover the entry and be at most the log's size", NULL);
    } else if (!reply_unavailable(c, error)) {
        char seq_out[LOG_SEQ_TEXT_MAX], leaf_hex[HEX_TEXT];
        log_seq_format(proof->seq, seq_out);
        log_tree_hex(proof->leaf, leaf_hex);
        cJSON *json = cJSON_CreateObject();
        cJSON_AddStringToObject(json, "event", c->segments[2]);
        cJSON_AddNumberToObject(json, "leaf_index", (double)proof->leaf_index);
        cJSON_AddStringToObject(json, "seq", seq_out);
        cJSON_AddNumberToObject(json, "tree_size", (double)proof->tree_size);
        cJSON_AddStringToObject(json, "leaf", leaf_hex);
        cJSON_AddItemToObject(json, "path", path_json(proof->path, proof->count));
        api_reply_cjson(c, 200, json, NULL);
    }
    free(proof);
}

void api_log_consistency(struct route_context *c)
{
    if (!log_is_published(c))
        return;
    uint64_t first = 0, second = 0, second_used = 0;
    if (!query_integer(c, "first", 0, &first) || !query_integer(c, "second", UINT64_MAX, &second))
        return;
    /* receipts_consistency() reads second 0 as "the current size": a given 0 is out of range. */
    if (second == 0) {
        api_reply_error(c, 400, "invalid_request", "need 1 <= first <= second <= the log's size",
                        NULL);
        return;
    }
    if (second == UINT64_MAX)
        second = 0;
    merkle_hash path[MERKLE_PROOF_MAX];
    size_t count = 0;
    int error = receipts_consistency(c->api->receipts, c->segments[2], first, second, &second_used,
                                     path, &count);
    if (error == CATRACA_E_INVALID) {
        api_reply_error(c, 400, "invalid_request", "need 1 <= first <= second <= the log's size",
                        NULL);
        return;
    }
    if (reply_unavailable(c, error))
        return;
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "event", c->segments[2]);
    cJSON_AddNumberToObject(json, "first", (double)first);
    cJSON_AddNumberToObject(json, "second", (double)second_used);
    cJSON_AddItemToObject(json, "path", path_json(path, count));
    api_reply_cjson(c, 200, json, NULL);
}
