/*
 * bench/draw.c - the pre-queue draw alone: how long the DRAW command holds the engine.
 *
 * Workload: one scheduled event (one category, tickets = 10 % of the pre-queue, limit 1),
 * `buyers` purchases in the pre-queue window (one ticket each, gateway-shaped time-ordered
 * ids), then the DRAW: SHA-256 of every entry, the sort, the slots moved to the draw's order
 * and every entry decided (10 % held, 10 % waiting, the rest sold out). Each run fills a fresh
 * engine; only the DRAW is timed. The median of `runs` is reported, with the time to fill.
 *
 * Usage: bench_draw [buyers] [runs]. Defaults: 1 000 000 buyers, 5 runs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"

#define OPENS_AT_MS 1000000
#define PREQUEUE_MS 600000

static void ignore(void *context, const struct engine_outcome *outcome)
{
    (void)context;
    (void)outcome;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fills a fresh engine's pre-queue with `buyers` purchases; returns the seconds it took. */
static double fill(struct engine *engine, uint32_t buyers, const struct engine_sink *sink)
{
    static struct engine_command c;
    memset(&c, 0, sizeof(c));
    c.type = ENGINE_COMMAND_CREATE_EVENT;
    c.now_ms = 1;
    struct engine_event_spec *s = &c.u.create_event;
    strcpy(s->id, "bench");
    s->hold_ms = 600000;
    s->per_customer_limit = 1;
    s->state = ENGINE_STATE_OPEN;
    s->category_count = 1;
    memcpy(s->secret, "bench-draw-key!!", 16);
    strcpy(s->categories[0].id, "pista");
    s->categories[0].capacity = buyers / 10 > 0 ? buyers / 10 : 1;
    s->opens_at_ms = OPENS_AT_MS;
    s->prequeue_ms = PREQUEUE_MS;
    engine_apply(engine, &c, sink);
    double start = seconds_now();
    for (uint32_t i = 0; i < buyers; i++) {
        memset(&c, 0, sizeof(c));
        c.type = ENGINE_COMMAND_PURCHASE;
        c.now_ms = OPENS_AT_MS - PREQUEUE_MS + (int64_t)i * (PREQUEUE_MS - 1) / buyers;
        c.u.purchase.purchase_id = ((uint64_t)c.now_ms << 22) | (i & 0x3fffff);
        snprintf(c.u.purchase.customer, sizeof(c.u.purchase.customer), "c%u", i);
        strcpy(c.u.purchase.category, "pista");
        c.u.purchase.quantity = 1;
        engine_apply(engine, &c, sink);
    }
    return seconds_now() - start;
}

int main(int argc, char **argv)
{
    uint32_t buyers = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (buyers < 1 || runs < 1 || runs > 99)
        return 2;
    struct engine_config config = {.purchases_max = buyers, .customers_max = buyers};
    struct engine_sink sink = {.emit = ignore};
    double draws[99], fills[99];
    for (int run = 0; run < runs; run++) {
        struct engine *engine = NULL;
        if (engine_new(&config, &engine) != 0)
            return 1;
        fills[run] = fill(engine, buyers, &sink);
        struct engine_command draw = {.type = ENGINE_COMMAND_DRAW, .now_ms = OPENS_AT_MS};
        engine_draw_seed(engine_event(engine)->secret, draw.u.draw.seed);
        double start = seconds_now();
        engine_apply(engine, &draw, &sink);
        draws[run] = seconds_now() - start;
        struct engine_draw_view view;
        engine_draw_state(engine, &view);
        if (view.state != ENGINE_DRAW_DONE || engine_validate(engine) != 0)
            return 1;
        engine_free(engine);
    }
    qsort(draws, (size_t)runs, sizeof(double), compare_double);
    qsort(fills, (size_t)runs, sizeof(double), compare_double);
    double draw_s = draws[runs / 2];
    printf("pre-queue of %u: DRAW %.3f s (%.0f ns an entry), filling it %.3f s, median of %d\n",
           buyers, draw_s, draw_s * 1e9 / buyers, fills[runs / 2], runs);
    printf("{\"bench\":\"draw\",\"buyers\":%u,\"draw_s\":%.4f,\"ns_per_entry\":%.0f,"
           "\"fill_s\":%.4f,\"runs\":%d}\n",
           buyers, draw_s, draw_s * 1e9 / buyers, fills[runs / 2], runs);
    return 0;
}
