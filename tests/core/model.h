/*
 * model.h - the reference model of engine.h's contract, for the randomized
 * test: plain arrays and linear scans, no heap, no hash tables. Slow and
 * obviously right; valid only while the engine's pools never fill.
 */
#ifndef CATRACA_TESTS_MODEL_H
#define CATRACA_TESTS_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"

#define MODEL_PURCHASES_MAX 4096
#define MODEL_OUTCOMES_MAX (MODEL_PURCHASES_MAX + 4)

struct model_purchase {
    uint64_t id;
    char customer[CATRACA_ID_MAX + 1];
    int category;
    uint32_t quantity;
    uint8_t status, reason;
    int64_t expires_at_ms;
    char payment_ref[CATRACA_ID_MAX + 1]; /* CONFIRMED, or EXPIRED with a refund due */
    bool is_refund_due;
};

struct model {
    int64_t now_ms;
    uint8_t state;
    struct engine_event_spec event;
    uint32_t sold[CATRACA_CATEGORIES_MAX];
    uint32_t returned[CATRACA_CATEGORIES_MAX];
    int64_t available_again_at_ms[CATRACA_CATEGORIES_MAX];
    struct model_purchase purchases[MODEL_PURCHASES_MAX]; /* arrival order */
    size_t count;
    struct engine_outcome out[MODEL_OUTCOMES_MAX];
    size_t out_count;
};

void model_init(struct model *m);
/* Applies a command; the outcomes are m->out[0 .. m->out_count). */
void model_apply(struct model *m, const struct engine_command *command);
void model_counts(const struct model *m, uint32_t category, struct engine_category_counts *out);

#endif
