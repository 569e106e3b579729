/* api_json.c - contract in api_json.h. */
#include "gateway/api_json.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

static const char base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

bool api_json_is_id(const char *text)
{
    size_t length = strnlen(text, CATRACA_ID_MAX + 1);
    if (length < 1 || length > CATRACA_ID_MAX)
        return false;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        bool is_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '_' || c == '-';
        if (!is_ok)
            return false;
    }
    return true;
}

void api_json_purchase_id_format(uint64_t id, char out[API_PURCHASE_ID_TEXT])
{
    out[0] = 'p';
    out[1] = '_';
    engine_ticket_code_format(id, out + 2); /* the same 13-character base32 */
}

int api_json_purchase_id_parse(const char *text, uint64_t *id)
{
    if (strnlen(text, API_PURCHASE_ID_TEXT) != API_PURCHASE_ID_TEXT - 1 || text[0] != 'p' ||
        text[1] != '_')
        return CATRACA_E_INVALID;
    uint64_t value = 0;
    for (int i = 2; i < API_PURCHASE_ID_TEXT - 1; i++) {
        const char *digit = strchr(base32, text[i]);
        if (digit == NULL || text[i] == '\0')
            return CATRACA_E_INVALID;
        if (i == 2 && digit - base32 > 15)
            return CATRACA_E_INVALID; /* 13 x 5 bits = 65: the first digit carries 4 */
        value = (value << 5) | (uint64_t)(digit - base32);
    }
    if (value == 0)
        return CATRACA_E_INVALID;
    *id = value;
    return 0;
}

void api_json_time_format(int64_t ms, char out[32])
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    size_t n = strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000 + 1000) % 1000);
}

static int fail(char message[API_ERROR_MESSAGE_MAX], const char *text)
{
    snprintf(message, API_ERROR_MESSAGE_MAX, "%s", text);
    return CATRACA_E_INVALID;
}

static bool is_json_whitespace(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_control(uint32_t c)
{
    return c < 0x20 || c == 0x7F;
}

/* The length of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0. */
static size_t utf8_sequence_length(const unsigned char *s, size_t available)
{
    assert(available >= 1);
    unsigned char c = s[0], low = 0x80, high = 0xBF;
    size_t length = 0;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        length = 3;
        low = c == 0xE0 ? 0xA0 : low;   /* overlong */
        high = c == 0xED ? 0x9F : high; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        length = 4;
        low = c == 0xF0 ? 0x90 : low;   /* overlong */
        high = c == 0xF4 ? 0x8F : high; /* above U+10FFFF */
    } else {
        return 0; /* a continuation byte, 0xC0 or 0xC1 (overlong), or 0xF5..0xFF */
    }
    if (available < length || s[1] < low || s[1] > high)
        return 0;
    for (size_t i = 2; i < length; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return length;
}

/* The code unit of "\uXXXX" at s, or -1. */
static int32_t utf16_escape(const unsigned char *s, size_t available)
{
    if (available < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    int32_t unit = 0;
    for (size_t i = 2; i < 6; i++) {
        unsigned char c = s[i];
        int32_t digit = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
        if (digit < 0)
            return -1;
        unit = unit * 16 + digit;
    }
    return unit;
}

/* The length of the escape at s (a backslash), or 0 when it is refused. */
static size_t escape_length(const unsigned char *s, size_t available)
{
    if (available >= 2 && (s[1] == '"' || s[1] == '\\' || s[1] == '/'))
        return 2;
    int32_t unit = utf16_escape(s, available); /* \b \f \n \r \t: control characters */
    if (unit < 0 || is_control((uint32_t)unit) || (unit >= 0xDC00 && unit <= 0xDFFF))
        return 0;
    if (unit < 0xD800 || unit > 0xDBFF)
        return 6;
    int32_t low = utf16_escape(s + 6, available - 6); /* a high surrogate needs a low one */
    return low >= 0xDC00 && low <= 0xDFFF ? 12 : 0;
}

/*
 * Checks the bytes before cJSON reads them, since its strings are C strings (a decoded
 * \u0000 ends them) and it takes any byte below 0x21 for whitespace. Strings begin and end
 * where cJSON's do: at a quote not escaped by a backslash.
 */
static bool is_json_text_clean(const unsigned char *s, size_t length)
{
    bool is_in_string = false;
    size_t i = 0;
    while (i < length) {
        unsigned char c = s[i];
        size_t step = 1;
        if (c == '"')
            is_in_string = !is_in_string;
        else if (is_in_string && c == '\\')
            step = escape_length(s + i, length - i);
        else if (is_in_string && c >= 0x80)
            step = utf8_sequence_length(s + i, length - i);
        else if (is_control(c) && (is_in_string || !is_json_whitespace(c)))
            step = 0;
        else if (!is_in_string && c >= 0x80)
            step = 0; /* outside strings JSON is ASCII (a byte order mark too) */
        if (step == 0)
            return false;
        i += step;
    }
    assert(i == length); /* no step reads past the text */
    return !is_in_string;
}

cJSON *api_json_parse_object(const char *text, size_t length)
{
    assert(text != NULL);
    if (!is_json_text_clean((const unsigned char *)text, length))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, length, &end, false);
    if (root == NULL)
        return NULL;
    while (end < text + length && is_json_whitespace((unsigned char)*end))
        end++;
    if (end != text + length || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

bool api_json_member(const cJSON *object, const char *name, const cJSON **item)
{
    assert(cJSON_IsObject(object));
    *item = NULL;
    for (const cJSON *child = object->child; child != NULL; child = child->next) {
        if (child->string == NULL || strcmp(child->string, name) != 0)
            continue;
        if (*item != NULL) {
            *item = NULL;
            return false;
        }
        *item = child;
    }
    return true;
}

/*
 * The accessors below leave *out alone when an optional member is absent (the caller set the
 * default) and return false when it is given twice, of the wrong type or out of bounds.
 */

/* A JSON integer in [min, max]: numbers with a fraction or out of range are refused. */
static bool get_integer(const cJSON *object, const char *name, bool is_required, int64_t min,
                        int64_t max, int64_t *out)
{
    const cJSON *item = NULL;
    if (!api_json_member(object, name, &item))
        return false;
    if (item == NULL)
        return !is_required;
    if (!cJSON_IsNumber(item))
        return false;
    double value = item->valuedouble;
    if (value < (double)min || value > (double)max || value != (double)(int64_t)value)
        return false;
    *out = (int64_t)value;
    return true;
}

/* A required API.md id. */
static bool get_id(const cJSON *object, const char *name, char out[CATRACA_ID_MAX + 1])
{
    const cJSON *item = NULL;
    if (!api_json_member(object, name, &item) || !cJSON_IsString(item) ||
        !api_json_is_id(item->valuestring))
        return false;
    snprintf(out, CATRACA_ID_MAX + 1, "%s", item->valuestring);
    return true;
}

/* An optional name of at most API_NAME_CHARACTERS_MAX characters (code points). */
static bool get_name(const cJSON *object, const char *name, char out[CATRACA_NAME_MAX + 1])
{
    const cJSON *item = NULL;
    if (!api_json_member(object, name, &item))
        return false;
    if (item == NULL)
        return true;
    if (!cJSON_IsString(item))
        return false;
    /* api_json_parse_object let only valid UTF-8 through: count the bytes that start one. */
    size_t characters = 0, bytes = 0;
    for (; item->valuestring[bytes] != '\0'; bytes++)
        characters += ((unsigned char)item->valuestring[bytes] & 0xC0) != 0x80;
    if (characters > API_NAME_CHARACTERS_MAX)
        return false;
    assert(bytes <= CATRACA_NAME_MAX);
    memcpy(out, item->valuestring, bytes + 1);
    return true;
}

/* An optional "state": open, paused or closed. */
static bool get_state(const cJSON *object, bool is_required, uint8_t *state)
{
    const cJSON *item = NULL;
    if (!api_json_member(object, "state", &item))
        return false;
    if (item == NULL)
        return !is_required;
    return cJSON_IsString(item) && engine_state_parse(item->valuestring, state) == 0;
}

/* An optional "line_policy": unbounded (the default: every request that could still be served
 * waits) or bounded (engine.h rule 2j). */
static bool get_line_policy(const cJSON *object, uint8_t *policy)
{
    const cJSON *item = NULL;
    *policy = ENGINE_LINE_UNBOUNDED;
    if (!api_json_member(object, "line_policy", &item))
        return false;
    if (item == NULL)
        return true;
    return cJSON_IsString(item) && engine_line_policy_parse(item->valuestring, policy) == 0;
}

#define STRINGIFY(x) #x
#define TEXT(x) STRINGIFY(x)

static int parse_categories(const cJSON *root, struct engine_event_spec *out,
                            char message[API_ERROR_MESSAGE_MAX])
{
    const cJSON *categories = NULL;
    if (!api_json_member(root, "categories", &categories) || !cJSON_IsArray(categories))
        return fail(message, "categories must be an array of 1 to 16 categories");
    int count = cJSON_GetArraySize(categories);
    if (count < 1 || count > CATRACA_CATEGORIES_MAX)
        return fail(message, "categories must be an array of 1 to 16 categories");
    out->category_count = (uint8_t)count;
    const cJSON *c = categories->child;
    for (int i = 0; i < count; i++, c = c->next) {
        struct engine_category_spec *spec = &out->categories[i];
        int64_t capacity = 0, price = 0;
        if (!cJSON_IsObject(c) || !get_id(c, "id", spec->id))
            return fail(message, "each category needs an id of 1-64 characters [A-Za-z0-9._-]");
        if (!get_name(c, "name", spec->name))
            return fail(message, "category name must be a string of at most " TEXT(
                                     API_NAME_CHARACTERS_MAX) " characters");
        if (!get_integer(c, "capacity", true, 1, CATRACA_CAPACITY_MAX, &capacity))
            return fail(message, "category capacity must be an integer from 1 to 10000000");
        if (!get_integer(c, "price_cents", false, 0, INT64_C(1) << 50, &price))
            return fail(message, "price_cents must be an integer from 0 to 2^50");
        spec->capacity = (uint32_t)capacity;
        spec->price_cents = price;
        for (int j = 0; j < i; j++)
            if (strcmp(out->categories[j].id, spec->id) == 0)
                return fail(message, "category ids must be distinct");
    }
    return 0;
}

int api_json_parse_event(const char *body, size_t length, struct engine_event_spec *out,
                         char message[API_ERROR_MESSAGE_MAX])
{
    memset(out, 0, sizeof(*out));
    cJSON *root = api_json_parse_object(body, length);
    if (root == NULL)
        return fail(message, "body must be a JSON object");
    int error = 0;
    int64_t hold_seconds = 600, limit = 4;
    out->state = ENGINE_STATE_OPEN;
    if (!get_id(root, "id", out->id))
        error = fail(message, "id must be 1-64 characters [A-Za-z0-9._-]");
    else if (!get_name(root, "name", out->name))
        error =
            fail(message,
                 "name must be a string of at most " TEXT(API_NAME_CHARACTERS_MAX) " characters");
    else if (!get_integer(root, "hold_seconds", false, CATRACA_HOLD_MS_MIN / 1000,
                          CATRACA_HOLD_MS_MAX / 1000, &hold_seconds))
        error = fail(message, "hold_seconds must be an integer from 1 to 86400");
    else if (!get_integer(root, "per_customer_limit", false, 1, CATRACA_QUANTITY_MAX, &limit))
        error = fail(message, "per_customer_limit must be an integer from 1 to 10");
    else if (!get_state(root, false, &out->state))
        error = fail(message, "state must be open, paused or closed");
    else if (!get_line_policy(root, &out->line_policy))
        error = fail(message, "line_policy must be unbounded or bounded");
    else
        error = parse_categories(root, out, message);
    out->hold_ms = hold_seconds * 1000;
    out->per_customer_limit = (uint32_t)limit;
    cJSON_Delete(root);
    return error;
}

int api_json_parse_state(const char *body, size_t length, uint8_t *state,
                         char message[API_ERROR_MESSAGE_MAX])
{
    cJSON *root = api_json_parse_object(body, length);
    if (root == NULL)
        return fail(message, "body must be a JSON object");
    int error = 0;
    if (!get_state(root, true, state))
        error = fail(message, "state must be open, paused or closed");
    cJSON_Delete(root);
    return error;
}

int api_json_parse_purchase(const char *body, size_t length, char category[CATRACA_ID_MAX + 1],
                            int64_t *quantity, char message[API_ERROR_MESSAGE_MAX])
{
    cJSON *root = api_json_parse_object(body, length);
    if (root == NULL)
        return fail(message, "body must be a JSON object");
    int error = 0;
    if (!get_id(root, "category", category))
        error = fail(message, "category must be 1-64 characters [A-Za-z0-9._-]");
    else if (!get_integer(root, "quantity", true, 1, CATRACA_QUANTITY_MAX, quantity))
        error = fail(message, "quantity must be an integer from 1 to the event's limit");
    cJSON_Delete(root);
    return error;
}

int api_json_parse_confirm(const char *body, size_t length, char payment_ref[CATRACA_ID_MAX + 1],
                           char message[API_ERROR_MESSAGE_MAX])
{
    cJSON *root = api_json_parse_object(body, length);
    if (root == NULL)
        return fail(message, "body must be a JSON object");
    int error = 0;
    if (!get_id(root, "payment_ref", payment_ref))
        error = fail(message, "payment_ref must be 1-64 characters [A-Za-z0-9._-]");
    cJSON_Delete(root);
    return error;
}

cJSON *api_json_event(const struct store_event *event, uint64_t pending)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", event->spec.id);
    cJSON_AddStringToObject(root, "name", event->spec.name);
    cJSON_AddStringToObject(root, "state", engine_state_name(event->state));
    cJSON_AddNumberToObject(root, "hold_seconds", (double)(event->spec.hold_ms / 1000));
    cJSON_AddNumberToObject(root, "per_customer_limit", event->spec.per_customer_limit);
    cJSON_AddStringToObject(root, "line_policy", engine_line_policy_name(event->spec.line_policy));
    cJSON *categories = cJSON_AddArrayToObject(root, "categories");
    for (uint32_t i = 0; i < event->spec.category_count; i++) {
        const struct engine_category_spec *spec = &event->spec.categories[i];
        const struct engine_category_counts *counts = &event->counts[i];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "id", spec->id);
        cJSON_AddStringToObject(c, "name", spec->name);
        cJSON_AddNumberToObject(c, "price_cents", (double)spec->price_cents);
        cJSON_AddNumberToObject(c, "capacity", spec->capacity);
        cJSON_AddNumberToObject(c, "available", counts->available);
        cJSON_AddNumberToObject(c, "held", counts->held);
        cJSON_AddNumberToObject(c, "sold", counts->sold);
        cJSON_AddNumberToObject(c, "waiting", counts->waiting_count);
        /* Absent until it happens: version 1's category object is unchanged until then. */
        if (counts->available_again_at_ms > 0) {
            char when[32];
            api_json_time_format(counts->available_again_at_ms, when);
            cJSON_AddStringToObject(c, "available_again_at", when);
        }
        cJSON_AddItemToArray(categories, c);
    }
    cJSON *queue = cJSON_AddObjectToObject(root, "queue");
    cJSON_AddNumberToObject(queue, "pending", (double)pending);
    return root;
}

static cJSON *purchase_common(uint64_t purchase_id, const char *event, const char *customer,
                              const char *category, uint32_t quantity, struct log_seq seq)
{
    char id[API_PURCHASE_ID_TEXT], seq_text[LOG_SEQ_TEXT_MAX];
    api_json_purchase_id_format(purchase_id, id);
    log_seq_format(seq, seq_text);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "event", event);
    cJSON_AddStringToObject(root, "category", category);
    cJSON_AddNumberToObject(root, "quantity", quantity);
    cJSON_AddStringToObject(root, "customer", customer);
    cJSON_AddStringToObject(root, "seq", seq_text);
    return root;
}

int api_json_purchase_accepted(char *out, size_t size, uint64_t purchase_id, const char *event,
                               const char *category, uint32_t quantity, struct log_seq seq)
{
    assert(api_json_is_id(event) && api_json_is_id(category));
    char id[API_PURCHASE_ID_TEXT], seq_text[LOG_SEQ_TEXT_MAX];
    api_json_purchase_id_format(purchase_id, id);
    log_seq_format(seq, seq_text);
    int n = snprintf(out, size,
                     "{\"id\":\"%s\",\"event\":\"%s\",\"category\":\"%s\",\"quantity\":%u,"
                     "\"seq\":\"%s\",\"status\":\"queued\"}",
                     id, event, category, quantity, seq_text);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/*
 * API.md's estimate for a waiting purchase, from its line facts (store.h): with A available,
 * H held, S sold and R returned tickets in its category, T tickets wanted ahead of it and Q its
 * own quantity:
 *   r      = (R + 1) / (R + S + 2)   the share of held tickets seen coming back (Laplace's rule:
 *                                     one half before anything was decided);
 *   E      = A + H * r / (1 - r)      the tickets expected to reach the line (a held ticket comes
 *                                     back with chance r, then again with chance r ...);
 *   chance = min(1, E / (T + Q)), rounded to hundredths; 0 when Q > A + H (never servable);
 *   wait   = ceil(hold_seconds * (T + Q - A) / (H * r)) seconds: held tickets come back at
 *            about H * r a hold period; null when nothing is held (none can come back) or
 *            the chance is 0.
 * A rough guide computed from counters, not a promise: buyers ahead may leave, pay or not.
 */
void api_json_estimate(const struct store_purchase *p, struct api_estimate *out)
{
    memset(out, 0, sizeof(*out));
    if (p->status != ENGINE_STATUS_WAITING || !p->line.is_known)
        return;
    out->is_known = true;
    const struct store_line_facts *l = &p->line;
    double need = (double)p->ahead + p->quantity;
    double servable = (double)l->available + l->held;
    double r = ((double)l->returned + 1) / ((double)l->returned + l->sold + 2);
    double expected = l->available + l->held * r / (1 - r);
    double chance = p->quantity > servable ? 0 : expected / need;
    out->chance = round((chance > 1 ? 1 : chance) * 100) / 100;
    double rate = l->held * r; /* tickets back per hold period */
    if (out->chance <= 0 || rate <= 0)
        return;
    double missing = need - l->available;
    out->has_wait = true;
    out->wait_seconds =
        missing <= 0 ? 0 : (int64_t)ceil((double)(l->hold_ms / 1000) * missing / rate);
}

/* API.md's retry hint of a purchase turned away line_full: a hold period, by which every hold
 * standing now has been paid or has come back. -1 for any other purchase. */
static int64_t retry_after_seconds(const struct store_purchase *p)
{
    if (p->status != ENGINE_STATUS_REJECTED || p->reason != ENGINE_REASON_LINE_FULL)
        return -1;
    return p->line.is_known && p->line.hold_ms >= 1000 ? p->line.hold_ms / 1000 : 60;
}

int api_json_purchase_text(const struct store_purchase *p, char *out, size_t size)
{
    if (!api_json_is_id(p->event) || !api_json_is_id(p->category) || !api_json_is_id(p->customer))
        return -1;
    char id[API_PURCHASE_ID_TEXT], seq_text[LOG_SEQ_TEXT_MAX],
        reason[40] = "null", expires[40] = "null", position[16] = "null";
    api_json_purchase_id_format(p->purchase_id, id);
    log_seq_format(p->seq, seq_text);
    const char *reason_name =
        p->status == ENGINE_STATUS_REJECTED ? engine_reason_name(p->reason) : NULL;
    if (reason_name != NULL)
        snprintf(reason, sizeof(reason), "\"%s\"", reason_name);
    if (p->status == ENGINE_STATUS_HELD) {
        char when[32];
        api_json_time_format(p->hold_expires_at_ms, when);
        snprintf(expires, sizeof(expires), "\"%s\"", when);
    }
    char ahead[16] = "null", estimate[96] = "null", retry[24] = "null", payment_ref[80] = "null";
    if (p->status == ENGINE_STATUS_WAITING) {
        snprintf(position, sizeof(position), "%u", p->position);
        snprintf(ahead, sizeof(ahead), "%u", p->ahead);
    }
    struct api_estimate e;
    api_json_estimate(p, &e);
    if (e.is_known) {
        char wait[24] = "null";
        if (e.has_wait)
            snprintf(wait, sizeof(wait), "%lld", (long long)e.wait_seconds);
        snprintf(estimate, sizeof(estimate), "{\"chance\":%1.15g,\"wait_seconds\":%s}", e.chance,
                 wait);
    }
    int64_t retry_s = retry_after_seconds(p);
    if (retry_s >= 0)
        snprintf(retry, sizeof(retry), "%lld", (long long)retry_s);
    if (p->is_refund_due) {
        if (!api_json_is_id(p->payment_ref))
            return -1;
        snprintf(payment_ref, sizeof(payment_ref), "\"%s\"", p->payment_ref);
    }
    int n = snprintf(out, size,
                     "{\"id\":\"%s\",\"event\":\"%s\",\"category\":\"%s\",\"quantity\":%u,"
                     "\"customer\":\"%s\",\"seq\":\"%s\",\"status\":\"%s\",\"reason\":%s,"
                     "\"hold_expires_at\":%s,\"position\":%s,\"ahead\":%s,\"estimate\":%s,"
                     "\"retry_after_seconds\":%s,\"refund_due\":%s,\"payment_ref\":%s,"
                     "\"tickets\":[",
                     id, p->event, p->category, p->quantity, p->customer, seq_text,
                     engine_status_name(p->status), reason, expires, position, ahead, estimate,
                     retry, p->is_refund_due ? "true" : "false", payment_ref);
    for (uint32_t i = 0;
         n > 0 && (size_t)n < size && i < p->ticket_count && i < CATRACA_QUANTITY_MAX; i++) {
        char code[14];
        engine_ticket_code_format(p->ticket_codes[i], code);
        n += snprintf(out + n, size - (size_t)n, "%s{\"code\":\"%s\"}", i > 0 ? "," : "", code);
    }
    if (n > 0 && (size_t)n < size)
        n += snprintf(out + n, size - (size_t)n, "]}");
    return n < 0 || (size_t)n >= size ? -1 : n;
}

cJSON *api_json_purchase_queued(uint64_t purchase_id, const char *event, const char *customer,
                                const char *category, uint32_t quantity, struct log_seq seq)
{
    cJSON *root = purchase_common(purchase_id, event, customer, category, quantity, seq);
    cJSON_AddStringToObject(root, "status", "queued");
    cJSON_AddNullToObject(root, "reason");
    cJSON_AddNullToObject(root, "hold_expires_at");
    cJSON_AddNullToObject(root, "position");
    cJSON_AddNullToObject(root, "ahead");
    cJSON_AddNullToObject(root, "estimate");
    cJSON_AddNullToObject(root, "retry_after_seconds");
    cJSON_AddFalseToObject(root, "refund_due");
    cJSON_AddNullToObject(root, "payment_ref");
    cJSON_AddArrayToObject(root, "tickets");
    return root;
}

cJSON *api_json_purchase(const struct store_purchase *p)
{
    cJSON *root =
        purchase_common(p->purchase_id, p->event, p->customer, p->category, p->quantity, p->seq);
    cJSON_AddStringToObject(root, "status", engine_status_name(p->status));
    const char *reason = p->status == ENGINE_STATUS_REJECTED ? engine_reason_name(p->reason) : NULL;
    if (reason != NULL)
        cJSON_AddStringToObject(root, "reason", reason);
    else
        cJSON_AddNullToObject(root, "reason");
    if (p->status == ENGINE_STATUS_HELD) {
        char when[32];
        api_json_time_format(p->hold_expires_at_ms, when);
        cJSON_AddStringToObject(root, "hold_expires_at", when);
    } else {
        cJSON_AddNullToObject(root, "hold_expires_at");
    }
    if (p->status == ENGINE_STATUS_WAITING) {
        cJSON_AddNumberToObject(root, "position", p->position);
        cJSON_AddNumberToObject(root, "ahead", p->ahead);
    } else {
        cJSON_AddNullToObject(root, "position");
        cJSON_AddNullToObject(root, "ahead");
    }
    struct api_estimate e;
    api_json_estimate(p, &e);
    if (e.is_known) {
        cJSON *estimate = cJSON_AddObjectToObject(root, "estimate");
        cJSON_AddNumberToObject(estimate, "chance", e.chance);
        if (e.has_wait)
            cJSON_AddNumberToObject(estimate, "wait_seconds", (double)e.wait_seconds);
        else
            cJSON_AddNullToObject(estimate, "wait_seconds");
    } else {
        cJSON_AddNullToObject(root, "estimate");
    }
    int64_t retry_s = retry_after_seconds(p);
    if (retry_s >= 0)
        cJSON_AddNumberToObject(root, "retry_after_seconds", (double)retry_s);
    else
        cJSON_AddNullToObject(root, "retry_after_seconds");
    cJSON_AddBoolToObject(root, "refund_due", p->is_refund_due);
    if (p->is_refund_due)
        cJSON_AddStringToObject(root, "payment_ref", p->payment_ref);
    else
        cJSON_AddNullToObject(root, "payment_ref");
    cJSON *tickets = cJSON_AddArrayToObject(root, "tickets");
    for (uint32_t i = 0; i < p->ticket_count && i < CATRACA_QUANTITY_MAX; i++) {
        char code[14];
        engine_ticket_code_format(p->ticket_codes[i], code);
        cJSON *ticket = cJSON_CreateObject();
        cJSON_AddStringToObject(ticket, "code", code);
        cJSON_AddItemToArray(tickets, ticket);
    }
    return root;
}

char *api_json_error(const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(error, "code", code);
    cJSON_AddStringToObject(error, "message", message);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}
