/* libFuzzer: every request-body parser and the purchase-id parser on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/api_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char message[API_ERROR_MESSAGE_MAX], text[CATRACA_ID_MAX + 1];
    static struct engine_event_spec spec;
    uint8_t state;
    int64_t quantity;
    if (api_json_parse_event(body, size, &spec, message) == 0) {
        if (spec.category_count < 1 || spec.category_count > CATRACA_CATEGORIES_MAX ||
            !api_json_is_id(spec.id) || spec.per_customer_limit > CATRACA_QUANTITY_MAX)
            abort();
    }
    api_json_parse_state(body, size, &state, message);
    if (api_json_parse_purchase(body, size, text, &quantity, message) == 0 &&
        (quantity < 1 || quantity > CATRACA_QUANTITY_MAX || !api_json_is_id(text)))
        abort();
    api_json_parse_confirm(body, size, text, message);
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
