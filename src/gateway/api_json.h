/*
 * api_json.h - API.md's JSON bodies <-> the engine's and the store's structs.
 * Parsing with cJSON; every input is bounded and validated here, at the edge,
 * so the engine only meets values within limits.h.
 */
#ifndef CATRACA_GATEWAY_API_JSON_H
#define CATRACA_GATEWAY_API_JSON_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/engine.h"
#include "store/store.h"

#define API_PURCHASE_ID_TEXT 16 /* "p_" + 13 characters + NUL */
#define API_ERROR_MESSAGE_MAX 160

/*
 * Names (an event's and a category's "name"): optional, 0 to 32 characters, counted as JSON
 * Schema's maxLength counts them (Unicode code points: U+00E9 and U+1F3B8 are one each), with no
 * control character (see api_json_parse_object). The engine stores a name as bytes of UTF-8,
 * at most CATRACA_NAME_MAX = 128; a character takes at most 4, so every accepted name fits and
 * openapi.yaml can say exactly what the server does: {type: string, maxLength: 32}.
 * (More characters need more bytes, and CATRACA_COMMAND_ENCODED_MAX grows with them.)
 */
#define API_NAME_CHARACTERS_MAX 32
static_assert(API_NAME_CHARACTERS_MAX * 4 <= CATRACA_NAME_MAX,
              "the longest name in the longest UTF-8 fits the engine's bytes");

/* True for API.md ids: 1..64 characters of [A-Za-z0-9._-]. */
bool api_json_is_id(const char *text);

/*
 * The one reading of JSON from outside (request bodies, a JWT's header and claims). Refused,
 * never truncated nor resolved by guessing:
 * - anything but exactly one JSON object with nothing but JSON whitespace (space, tab, CR,
 *   LF) around it: no trailing text, no second value, no byte order mark;
 * - a string (member names too) holding invalid UTF-8 (overlong forms, surrogates, above
 *   U+10FFFF, cut short, lone surrogate escapes) or a control character, U+0000-U+001F or
 *   U+007F, raw or escaped (\u0000, \n, \t ...): cJSON would decode \u0000 into a C string,
 *   which ends there, so "pista\u0000x" would read as "pista".
 * Returns the tree (the caller deletes it), or NULL.
 */
cJSON *api_json_parse_object(const char *text, size_t length);
/*
 * The member `name` of object (case-sensitive) in *item, NULL when absent. False (and NULL)
 * when two members have that name: cJSON would read the first, other parsers the last (RFC 8259
 * section 4; RFC 7519 section 4 asks a JWT reader to refuse them), so it is refused, not read.
 */
bool api_json_member(const cJSON *object, const char *name, const cJSON **item);

void api_json_purchase_id_format(uint64_t id, char out[API_PURCHASE_ID_TEXT]);
/* 0, or CATRACA_E_INVALID (then it is no purchase of ours). */
int api_json_purchase_id_parse(const char *text, uint64_t *id);

/* RFC 3339 UTC with milliseconds: "2026-11-24T23:41:00.000Z". */
void api_json_time_format(int64_t ms, char out[32]);

/*
 * POST /v1/events body -> spec (secret left zero: the caller fills it).
 * Returns 0, or CATRACA_E_INVALID with a message for the 400 answer.
 */
int api_json_parse_event(const char *body, size_t length, struct engine_event_spec *out,
                         char message[API_ERROR_MESSAGE_MAX]);
/* {"state":"paused"} -> ENGINE_STATE_*; 0 or CATRACA_E_INVALID. */
int api_json_parse_state(const char *body, size_t length, uint8_t *state,
                         char message[API_ERROR_MESSAGE_MAX]);
/* {"category":"pista","quantity":2}; quantity checked against 1..limit by the caller. */
int api_json_parse_purchase(const char *body, size_t length, char category[CATRACA_ID_MAX + 1],
                            int64_t *quantity, char message[API_ERROR_MESSAGE_MAX]);
/* {"payment_ref":"psp_123"} */
int api_json_parse_confirm(const char *body, size_t length, char payment_ref[CATRACA_ID_MAX + 1],
                           char message[API_ERROR_MESSAGE_MAX]);

/* Representations (caller owns the cJSON tree). */
cJSON *api_json_event(const struct store_event *event, uint64_t pending);
cJSON *api_json_purchase(const struct store_purchase *purchase);
/* A purchase in the log that no batch has decided yet. */
cJSON *api_json_purchase_queued(uint64_t purchase_id, const char *event, const char *customer,
                                const char *category, uint32_t quantity, struct log_seq seq);
/*
 * The 202 body of an accepted purchase, {"id","event","category","quantity","seq","status":
 * "queued"}, written into out without a cJSON tree (it is every purchase's answer). event and
 * category are ids (api_json_is_id: nothing to escape). Returns the length, or -1 when out is
 * too small (API_PURCHASE_ACCEPTED_MAX always suffices).
 */
#define API_PURCHASE_ACCEPTED_MAX 320
/*
 * api_json_purchase's text, written into out without a cJSON tree (every status read and
 * long-poll answer). Returns the length, or -1 when out is too small (API_PURCHASE_TEXT_MAX
 * suffices) or a string would need escaping (it cannot: ids only; then use the tree).
 */
#define API_PURCHASE_TEXT_MAX 1024
int api_json_purchase_text(const struct store_purchase *purchase, char *out, size_t size);
int api_json_purchase_accepted(char *out, size_t size, uint64_t purchase_id, const char *event,
                               const char *category, uint32_t quantity, struct log_seq seq);
/* A waiting purchase's estimate (API.md; the formula is at api_json_estimate in api_json.c). */
struct api_estimate {
    bool is_known; /* a waiting purchase whose line facts are known */
    double chance; /* 0..1, hundredths */
    bool has_wait;
    int64_t wait_seconds;
};
void api_json_estimate(const struct store_purchase *purchase, struct api_estimate *out);

/* {"error":{"code":..., "message":...}} as a malloc'ed string. */
char *api_json_error(const char *code, const char *message);

#endif
