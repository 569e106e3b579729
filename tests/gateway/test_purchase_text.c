/* The purchase written as text is the same JSON as the cJSON tree, for every status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "core/engine.h"
#include "gateway/api_json.h"

static void test_same_as_the_tree(void **state)
{
    (void)state;
    unsigned seed =
        (unsigned)strtoul(getenv("CATRACA_SEED") ? getenv("CATRACA_SEED") : "42", NULL, 10);
    printf("test_purchase_text: seed %u (CATRACA_SEED=%u reproduces)\n", seed, seed);
    srand(seed);
    for (int round = 0; round < 2000; round++) {
        struct store_purchase p = {.purchase_id = ((uint64_t)rand() << 22) | (uint64_t)rand(),
                                   .has_arrival = true,
                                   .quantity = (uint32_t)(1 + rand() % 4),
                                   .seq = {(uint64_t)rand(), (uint64_t)(rand() % 3)},
                                   .status = (uint8_t)(1 + rand() % 6),
                                   .reason = (uint8_t)(rand() % 4),
                                   .hold_expires_at_ms = 1700000000000LL + rand(),
                                   .position = (uint32_t)rand() % 100000,
                                   .ticket_count = (uint8_t)(rand() % (CATRACA_QUANTITY_MAX + 1))};
        for (int i = 0; i < CATRACA_QUANTITY_MAX; i++)
            p.ticket_codes[i] = ((uint64_t)rand() << 32) ^ (uint64_t)rand();
        if (p.reason == 3)
            p.reason = ENGINE_REASON_LINE_FULL; /* the rejection with a retry hint */
        p.ahead = (uint32_t)rand() % 100000;
        if (rand() % 4 != 0) /* the line facts behind the estimate, sometimes unknown */
            p.line = (struct store_line_facts){.is_known = true,
                                               .available = (uint32_t)rand() % 5,
                                               .held = (uint32_t)rand() % 3000,
                                               .sold = (uint32_t)rand() % 3000,
                                               .returned = (uint32_t)rand() % 3000,
                                               .hold_ms = 1000 * (1 + rand() % 900)};
        if (p.status == ENGINE_STATUS_EXPIRED && rand() % 2 == 0) {
            p.is_refund_due = true;
            snprintf(p.payment_ref, sizeof(p.payment_ref), "psp_%d", rand());
        }
        snprintf(p.event, sizeof(p.event), "ev-%d.x_%d", rand() % 100, round);
        snprintf(p.customer, sizeof(p.customer), "c%d", rand());
        snprintf(p.category, sizeof(p.category), "cat%d", rand() % 16);
        char text[API_PURCHASE_TEXT_MAX];
        int n = api_json_purchase_text(&p, text, sizeof(text));
        assert_true(n > 0);
        assert_int_equal((size_t)n, strlen(text));
        cJSON *parsed = cJSON_Parse(text), *tree = api_json_purchase(&p);
        assert_non_null(parsed);
        if (!cJSON_Compare(parsed, tree, 1)) {
            char *expected = cJSON_PrintUnformatted(tree);
            fprintf(stderr, "text: %s\ntree: %s\n", text, expected);
            free(expected);
        }
        assert_true(cJSON_Compare(parsed, tree, 1));
        cJSON_Delete(parsed);
        cJSON_Delete(tree);
        assert_int_equal(api_json_purchase_text(&p, text, 64), -1); /* too small: refused */
    }
    /* A customer that is not an id would need escaping: the tree is used instead. */
    struct store_purchase odd = {.purchase_id = 1, .status = ENGINE_STATUS_HELD};
    snprintf(odd.event, sizeof(odd.event), "ev");
    snprintf(odd.category, sizeof(odd.category), "pista");
    snprintf(odd.customer, sizeof(odd.customer), "a\"b");
    char text[API_PURCHASE_TEXT_MAX];
    assert_int_equal(api_json_purchase_text(&odd, text, sizeof(text)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_as_the_tree)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
