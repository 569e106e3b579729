/*
 * random_commands.h - seeded random command streams for the model and
 * snapshot tests. Small capacities and a small customer pool so that
 * sell-outs, wait lines, sweeps, limits and expiries happen all the time.
 */
#ifndef CATRACA_TESTS_RANDOM_COMMANDS_H
#define CATRACA_TESTS_RANDOM_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"

struct random_stream {
    uint64_t state;
    int64_t now_ms;
    uint64_t next_id;
    uint32_t categories;
    int64_t hold_ms;
    struct engine_event_spec spec;
};

static inline uint64_t random_next(struct random_stream *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint32_t random_below(struct random_stream *r, uint32_t n)
{
    return (uint32_t)(random_next(r) % n);
}

/* The seed of a run: CATRACA_SEED if set, else from the clock; printed by the caller. */
static inline uint64_t random_base_seed(void)
{
    const char *text = getenv("CATRACA_SEED");
    if (text != NULL)
        return strtoull(text, NULL, 10);
    return (uint64_t)time(NULL) * 1000003u;
}

static inline void random_stream_init(struct random_stream *r, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    r->state = seed;
    r->now_ms = 1000;
    r->next_id = 1;
    r->categories = 1 + random_below(r, 3);
    r->hold_ms = 1000 * (1 + random_below(r, 5));
    struct engine_event_spec *s = &r->spec;
    snprintf(s->id, sizeof(s->id), "ev%llu", (unsigned long long)(seed % 1000));
    s->hold_ms = r->hold_ms;
    s->per_customer_limit = 1 + random_below(r, 6);
    s->state = ENGINE_STATE_OPEN;
    s->category_count = (uint8_t)r->categories;
    for (uint32_t i = 0; i < CATRACA_SECRET_BYTES; i++)
        s->secret[i] = (uint8_t)random_next(r);
    for (uint32_t i = 0; i < r->categories; i++) {
        snprintf(s->categories[i].id, sizeof(s->categories[i].id), "cat%u", i);
        s->categories[i].capacity = 1 + random_below(r, 40);
        s->categories[i].price_cents = 100 * i;
    }
    s->line_policy = (uint8_t)random_below(r, 2); /* both engine.h rule 2j policies */
}

/* The first command of every stream creates the event. */
static inline void random_create_event(struct random_stream *r, struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_CREATE_EVENT;
    c->now_ms = r->now_ms;
    c->u.create_event = r->spec;
}

static inline uint64_t random_known_id(struct random_stream *r)
{
    if (random_below(r, 20) == 0)
        return r->next_id + 1000; /* unknown */
    uint64_t span = r->next_id - 1 < 60 ? r->next_id - 1 : 60;
    return span == 0 ? 1 : r->next_id - 1 - random_below(r, (uint32_t)span);
}

static inline void random_customer(struct random_stream *r, char *out, size_t size)
{
    snprintf(out, size, "c%u", random_below(r, 12));
}

static inline void random_command(struct random_stream *r, struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    uint32_t dice = random_below(r, 1000);
    uint32_t step = random_below(r, 10);
    r->now_ms += step < 6 ? 0 : step < 9 ? random_below(r, 300) : random_below(r, 3000);
    c->now_ms = random_below(r, 50) == 0 ? r->now_ms - random_below(r, 5000) : r->now_ms;
    if (dice < 520) {
        c->type = ENGINE_COMMAND_PURCHASE;
        bool is_duplicate = random_below(r, 50) == 0 && r->next_id > 1;
        c->u.purchase.purchase_id = is_duplicate ? random_known_id(r) : r->next_id++;
        if (random_below(r, 300) == 0)
            c->u.purchase.purchase_id = 0; /* invalid: rejected, not remembered */
        random_customer(r, c->u.purchase.customer, sizeof(c->u.purchase.customer));
        uint32_t which = random_below(r, 30);
        if (which == 0)
            strcpy(c->u.purchase.category, "nope");
        else
            snprintf(c->u.purchase.category, sizeof(c->u.purchase.category), "cat%u",
                     random_below(r, r->categories));
        c->u.purchase.quantity =
            random_below(r, 25) == 0 ? random_below(r, 12) : 1 + random_below(r, 4);
    } else if (dice < 720) {
        c->type = ENGINE_COMMAND_CONFIRM;
        c->u.confirm.purchase_id = random_known_id(r);
        snprintf(c->u.confirm.payment_ref, sizeof(c->u.confirm.payment_ref), "psp%u",
                 random_below(r, 3));
    } else if (dice < 820) {
        c->type = ENGINE_COMMAND_CANCEL;
        c->u.cancel.purchase_id = random_known_id(r);
        random_customer(r, c->u.cancel.customer, sizeof(c->u.cancel.customer));
    } else if (dice < 980) {
        c->type = ENGINE_COMMAND_TICK;
        /* sometimes land exactly on a multiple of the hold: exact expiries */
        if (random_below(r, 4) == 0)
            r->now_ms = (r->now_ms / r->hold_ms + 1) * r->hold_ms;
        c->now_ms = r->now_ms;
    } else if (dice < 994) {
        c->type = ENGINE_COMMAND_SET_STATE;
        uint32_t pick = random_below(r, 10);
        c->u.set_state.state = pick < 6   ? ENGINE_STATE_OPEN
                               : pick < 8 ? ENGINE_STATE_PAUSED
                               : pick < 9 ? ENGINE_STATE_CLOSED
                                          : 7; /* invalid */
    } else {
        c->type = ENGINE_COMMAND_CREATE_EVENT;
        c->u.create_event = r->spec;
        uint32_t pick = random_below(r, 3);
        if (pick == 1)
            c->u.create_event.categories[0].capacity++; /* a different spec */
        else if (pick == 2)
            c->u.create_event.hold_ms = 0; /* an invalid spec */
    }
}

#endif
