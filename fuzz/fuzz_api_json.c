/*
 * libFuzzer: every request-body parser and the purchase-id parser on arbitrary bytes. Whatever
 * a parser accepts holds no NUL nor control character (json_oracle.h), is within limits.h, and
 * reads back the same after cJSON prints it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_oracle.h"
#include "gateway/api_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t characters(const char *text)
{
    size_t count = 0;
    for (; *text != '\0'; text++)
        count += ((unsigned char)*text & 0xC0) != 0x80;
    return count;
}

/* A strictly read object prints to text that reads strictly again (cJSON agrees with the scan). */
static void check_object(const uint8_t *data, size_t size)
{
    cJSON *root = api_json_parse_object((const char *)data, size);
    if (root == NULL)
        return;
    if (json_oracle_has_control(data, size))
        abort();
    char *text = cJSON_PrintUnformatted(root);
    cJSON *again = text != NULL ? api_json_parse_object(text, strlen(text)) : NULL;
    if (text != NULL && again == NULL)
        abort();
    cJSON_Delete(again);
    free(text);
    cJSON_Delete(root);
}

static void check_event(const char *body, size_t size, bool has_control)
{
    static struct engine_event_spec spec;
    char message[API_ERROR_MESSAGE_MAX];
    if (api_json_parse_event(body, size, &spec, message) != 0)
        return;
    if (has_control || spec.category_count < 1 || spec.category_count > CATRACA_CATEGORIES_MAX ||
        !api_json_is_id(spec.id) || spec.per_customer_limit > CATRACA_QUANTITY_MAX ||
        characters(spec.name) > API_NAME_CHARACTERS_MAX)
        abort();
    for (uint32_t i = 0; i < spec.category_count; i++)
        if (!api_json_is_id(spec.categories[i].id) ||
            characters(spec.categories[i].name) > API_NAME_CHARACTERS_MAX ||
            spec.categories[i].price_cents < 0 || spec.categories[i].price_cents > INT64_C(1) << 50)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    bool has_control = json_oracle_has_control(data, size);
    char message[API_ERROR_MESSAGE_MAX], text[CATRACA_ID_MAX + 1];
    uint8_t state;
    int64_t quantity;
    check_object(data, size);
    check_event(body, size, has_control);
    if (api_json_parse_state(body, size, &state, message) == 0 && has_control)
        abort();
    if (api_json_parse_purchase(body, size, text, &quantity, message) == 0 &&
        (has_control || quantity < 1 || quantity > CATRACA_QUANTITY_MAX || !api_json_is_id(text)))
        abort();
    if (api_json_parse_confirm(body, size, text, message) == 0 &&
        (has_control || !api_json_is_id(text)))
        abort();
    char id[API_PURCHASE_ID_TEXT + 1];
    size_t n = size < API_PURCHASE_ID_TEXT ? size : API_PURCHASE_ID_TEXT;
    memcpy(id, data, n);
    id[n] = '\0';
    uint64_t value;
    if (api_json_purchase_id_parse(id, &value) == 0) {
        char back[API_PURCHASE_ID_TEXT];
        api_json_purchase_id_format(value, back);
        if (strcmp(back, id) != 0)
            abort();
    }
    return 0;
}
