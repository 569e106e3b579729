/*
 * bench/engine.c - the decision engine alone, on one core, on a festival day.
 *
 * Workload: one event, two categories (80 000 + 20 000 tickets), 1 000 000
 * buyers asking for 1-4 tickets, arriving over 50 s of log time; 60 % of the
 * holds are confirmed and 10 % cancelled after a payment delay, the rest
 * expire (hold 60 s); 1 % of purchases are appended twice; a TICK every
 * 100 ms of log time. The stream depends on the engine's answers (a hold is
 * paid only once granted), so it is first recorded by a simulation run, then
 * replayed into fresh engines: RUNS times untimed-per-command for throughput
 * (in batches through engine_apply_batch, and one command at a time),
 * RUNS times with a clock read around every command for the latency
 * distribution. Medians are reported.
 *
 * Purchase ids are shaped as the gateways mint them (src/gateway/api_purchases.c,
 * next_purchase_id): wall-clock milliseconds << 22 | instance tag << 12 | a
 * running 12-bit counter, here two gateways taking buyers in turn. Consecutive
 * ids would hide what such ids do to the engine's hash table (docs/BENCHMARKS.md).
 *
 * Usage: bench_engine [buyers] [runs]. CATRACA_SEED=n changes the stream.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"

#define TICKETS_PISTA 80000u
#define TICKETS_PREMIUM 20000u
#define HOLD_MS 60000
#define ARRIVAL_SPAN_MS 50000
#define LATENCY_BUCKETS_NS 100000
/* The log's milliseconds at time 0 of the stream: 2026-12-01T18:00:00Z. */
#define EPOCH_MS 1796148000000LL
#define GATEWAYS 2u

struct recorded {
    int64_t now_ms;
    uint64_t purchase_id;
    uint32_t customer;
    uint8_t type;
    uint8_t category;
    uint8_t quantity;
};

struct stream {
    struct recorded *items;
    size_t count, capacity;
};

/* A pending payment decision (confirm or cancel) scheduled by the simulation. */
struct action {
    int64_t at_ms;
    uint64_t purchase_id;
    uint32_t customer;
    uint8_t type;
};

struct action_heap {
    struct action *items;
    size_t count, capacity;
};

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

static void *checked_realloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL) {
        fprintf(stderr, "bench_engine: out of memory\n");
        exit(1);
    }
    return q;
}

static void stream_push(struct stream *s, struct recorded r)
{
    if (s->count == s->capacity) {
        s->capacity = s->capacity ? 2 * s->capacity : 1 << 20;
        s->items = checked_realloc(s->items, s->capacity * sizeof(*s->items));
    }
    s->items[s->count++] = r;
}

static void heap_push(struct action_heap *h, struct action a)
{
    if (h->count == h->capacity) {
        h->capacity = h->capacity ? 2 * h->capacity : 1 << 16;
        h->items = checked_realloc(h->items, h->capacity * sizeof(*h->items));
    }
    size_t i = h->count++;
    while (i > 0 && h->items[(i - 1) / 2].at_ms > a.at_ms) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = a;
}

static struct action heap_pop(struct action_heap *h)
{
    struct action top = h->items[0], last = h->items[--h->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->count)
            break;
        if (child + 1 < h->count && h->items[child + 1].at_ms < h->items[child].at_ms)
            child++;
        if (h->items[child].at_ms >= last.at_ms)
            break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->count > 0)
        h->items[i] = last;
    return top;
}

/* "00" "01" .. "99": two digits a step. */
static const char digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";

/*
 * prefix + n as 10 zero-padded decimal digits and a NUL. Two digits a step, the prefix's length
 * known at the call: the timed loop rebuilds every command, and a worker's decoding only copies
 * strings out of a log record, so this should cost about as little (snprintf, then a digit a
 * step with strlen and memcpy calls, cost more than the engine's customer hash).
 */
static inline void format_id(char *out, const char *prefix, size_t prefix_length, uint64_t n)
{
    memcpy(out, prefix, prefix_length);
    char *digits = out + prefix_length;
    for (int i = 8; i >= 0; i -= 2) {
        memcpy(digits + i, &digit_pairs[2 * (n % 100)], 2);
        n /= 100;
    }
    digits[10] = '\0';
}

static void command_from(const struct recorded *r, struct engine_command *c)
{
    c->type = r->type;
    c->now_ms = r->now_ms;
    switch (r->type) {
    case ENGINE_COMMAND_PURCHASE:
        c->u.purchase.purchase_id = r->purchase_id;
        format_id(c->u.purchase.customer, "c", 1, r->customer);
        if (r->category)
            memcpy(c->u.purchase.category, "premium", sizeof("premium"));
        else
            memcpy(c->u.purchase.category, "pista", sizeof("pista"));
        c->u.purchase.quantity = r->quantity;
        break;
    case ENGINE_COMMAND_CONFIRM:
        c->u.confirm.purchase_id = r->purchase_id;
        format_id(c->u.confirm.payment_ref, "psp_", 4, r->purchase_id);
        break;
    case ENGINE_COMMAND_CANCEL:
        c->u.cancel.purchase_id = r->purchase_id;
        format_id(c->u.cancel.customer, "c", 1, r->customer);
        break;
    default:
        break;
    }
}

static void make_event(struct engine_command *c)
{
    memset(c, 0, sizeof(*c));
    c->type = ENGINE_COMMAND_CREATE_EVENT;
    struct engine_event_spec *s = &c->u.create_event;
    strcpy(s->id, "rir-2026-d1");
    strcpy(s->name, "Rock in Rio 2026 - day 1");
    s->hold_ms = HOLD_MS;
    s->per_customer_limit = 4;
    s->state = ENGINE_STATE_OPEN;
    s->category_count = 2;
    memcpy(s->secret, "bench-secret-key", 16);
    strcpy(s->categories[0].id, "pista");
    s->categories[0].capacity = TICKETS_PISTA;
    strcpy(s->categories[1].id, "premium");
    s->categories[1].capacity = TICKETS_PREMIUM;
}

/* Purchase id -> buyer, for the simulation (open addressing; ids are never 0). */
struct buyer_map {
    uint64_t *ids;
    uint32_t *buyers;
    uint32_t mask;
};

static struct buyer_map buyer_map_new(uint32_t buyers)
{
    uint32_t capacity = 16;
    while (capacity < 2 * buyers)
        capacity *= 2;
    struct buyer_map m = {.ids = calloc(capacity, sizeof(uint64_t)),
                          .buyers = calloc(capacity, sizeof(uint32_t)),
                          .mask = capacity - 1};
    if (m.ids == NULL || m.buyers == NULL) {
        fprintf(stderr, "bench_engine: out of memory\n");
        exit(1);
    }
    return m;
}

static uint32_t buyer_map_position(const struct buyer_map *m, uint64_t id)
{
    uint32_t i = (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & m->mask;
    while (m->ids[i] != 0 && m->ids[i] != id)
        i = (i + 1) & m->mask;
    return i;
}

/* The id gateway `buyer % GATEWAYS` mints for a purchase at arrival_ms. */
static uint64_t gateway_purchase_id(uint32_t buyer, int64_t arrival_ms, uint32_t *counters)
{
    uint32_t gateway = buyer % GATEWAYS;
    uint32_t counter = counters[gateway]++;
    return (uint64_t)(EPOCH_MS + arrival_ms) << 22 | (uint64_t)(gateway + 1) << 12 |
           (counter & 4095u);
}

/* The simulation's view of answers: schedule a payment decision for every new hold. */
struct simulation {
    struct action_heap *actions;
    const struct buyer_map *customer_of; /* purchase id -> customer */
};

/* FNV-1a over every outcome of the recording run: two engines that decide the stream alike
 * print the same value (the determinism check between builds). */
static uint64_t outcomes_hash = 1469598103934665603ULL;

static void on_outcome(void *context, const struct engine_outcome *o)
{
    struct simulation *sim = context;
    const uint8_t *bytes = (const uint8_t *)o;
    for (size_t i = 0; i < sizeof(*o); i++)
        outcomes_hash = (outcomes_hash ^ bytes[i]) * 1099511628211ULL;
    if (o->type != ENGINE_OUTCOME_PURCHASE || o->status != ENGINE_STATUS_HELD ||
        o->result != ENGINE_RESULT_OK)
        return;
    uint32_t dice = rng_below(100);
    int64_t granted_ms = o->hold_expires_at_ms - HOLD_MS;
    uint32_t at = buyer_map_position(sim->customer_of, o->purchase_id);
    struct action a = {.purchase_id = o->purchase_id, .customer = sim->customer_of->buyers[at]};
    if (dice < 60) {
        a.type = ENGINE_COMMAND_CONFIRM;
        a.at_ms = granted_ms + 5000 + rng_below(40000);
    } else if (dice < 70) {
        a.type = ENGINE_COMMAND_CANCEL;
        a.at_ms = granted_ms + 2000 + rng_below(20000);
    } else {
        return; /* left to expire */
    }
    heap_push(sim->actions, a);
}

static struct engine *engine_for(uint32_t buyers)
{
    struct engine_config config = {
        .purchases_max = buyers + 16, .customers_max = buyers + 16, .is_prefaulted = true};
    struct engine *engine;
    if (engine_new(&config, &engine) != 0) {
        fprintf(stderr, "bench_engine: engine_new failed\n");
        exit(1);
    }
    return engine;
}

static struct stream record_stream(uint32_t buyers)
{
    struct stream s = {0};
    struct action_heap actions = {0};
    struct buyer_map customer_of = buyer_map_new(buyers);
    uint32_t counters[GATEWAYS] = {0};
    struct simulation sim = {.actions = &actions, .customer_of = &customer_of};
    struct engine_sink sink = {.emit = on_outcome, .context = &sim};
    struct engine *engine = engine_for(buyers);
    struct engine_command *command = calloc(1, sizeof(*command));
    make_event(command);
    engine_apply(engine, command, &sink);

    int64_t next_tick_ms = 100, end_ms = ARRIVAL_SPAN_MS + HOLD_MS + 60000;
    uint32_t next_buyer = 0;
    for (;;) {
        int64_t arrival_ms = (int64_t)next_buyer * ARRIVAL_SPAN_MS / buyers;
        int64_t action_ms = actions.count ? actions.items[0].at_ms : INT64_MAX;
        struct recorded r = {0};
        if (next_buyer < buyers && arrival_ms <= action_ms && arrival_ms <= next_tick_ms) {
            uint32_t buyer = next_buyer++;
            uint64_t id = gateway_purchase_id(buyer, arrival_ms, counters);
            uint32_t at = buyer_map_position(&customer_of, id);
            customer_of.ids[at] = id;
            customer_of.buyers[at] = buyer;
            r = (struct recorded){.type = ENGINE_COMMAND_PURCHASE,
                                  .now_ms = arrival_ms,
                                  .purchase_id = id,
                                  .customer = buyer,
                                  .category = rng_below(5) == 0,
                                  .quantity = (uint8_t)(1 + rng_below(4))};
        } else if (action_ms <= next_tick_ms) {
            struct action a = heap_pop(&actions);
            r = (struct recorded){.type = a.type,
                                  .now_ms = a.at_ms,
                                  .purchase_id = a.purchase_id,
                                  .customer = a.customer};
        } else if (next_tick_ms <= end_ms) {
            r = (struct recorded){.type = ENGINE_COMMAND_TICK, .now_ms = next_tick_ms};
            next_tick_ms += 100;
        } else {
            break;
        }
        stream_push(&s, r);
        command_from(&r, command);
        engine_apply(engine, command, &sink);
        if (r.type == ENGINE_COMMAND_PURCHASE && rng_below(100) == 0) {
            stream_push(&s, r); /* the duplicate append */
            engine_apply(engine, command, &sink);
        }
    }
    engine_free(engine);
    free(command);
    free(actions.items);
    free(customer_of.ids);
    free(customer_of.buyers);
    return s;
}

static void ignore(void *context, const struct engine_outcome *o)
{
    (void)o;
    (*(uint64_t *)context)++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: on a shared machine, the time it was not descheduled. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Commands per CPU-second of the last replay_throughput (beside its wall-clock rate). */
static double last_cpu_rate;

/*
 * Commands are rebuilt from the compact record inside the timed loop, as a
 * worker decodes them. Batched (is_batched), the loop decodes BATCH commands at
 * a time and hands them to engine_apply_batch(), as a worker holding a batch
 * from the log would: the engine works a few commands ahead (customer keys,
 * table prefetches). Otherwise each command goes to engine_apply() alone.
 */
#define BATCH 64

static double replay_throughput(const struct stream *s, uint32_t buyers, bool is_batched,
                                uint64_t *outcomes)
{
    struct engine *engine = engine_for(buyers);
    struct engine_command *batch = calloc(BATCH, sizeof(*batch));
    struct engine_sink sink = {.emit = ignore, .context = outcomes};
    make_event(&batch[0]);
    engine_apply(engine, &batch[0], &sink);
    double start = now_s(), start_cpu = cpu_s();
    if (is_batched) {
        for (size_t i = 0; i < s->count; i += BATCH) {
            size_t count = s->count - i < BATCH ? s->count - i : BATCH;
            for (size_t j = 0; j < count; j++)
                command_from(&s->items[i + j], &batch[j]);
            engine_apply_batch(engine, batch, count, &sink);
        }
    } else {
        for (size_t i = 0; i < s->count; i++) {
            command_from(&s->items[i], &batch[0]);
            engine_apply(engine, &batch[0], &sink);
        }
    }
    double elapsed = now_s() - start;
    last_cpu_rate = (double)s->count / (cpu_s() - start_cpu);
    if (engine_validate(engine) != 0) {
        fprintf(stderr, "bench_engine: engine_validate failed\n");
        exit(1);
    }
    engine_free(engine);
    free(batch);
    return (double)s->count / elapsed;
}

static void replay_latency(const struct stream *s, uint32_t buyers, uint32_t *histogram)
{
    struct engine *engine = engine_for(buyers);
    struct engine_command *command = calloc(1, sizeof(*command));
    uint64_t outcomes = 0;
    struct engine_sink sink = {.emit = ignore, .context = &outcomes};
    make_event(command);
    engine_apply(engine, command, &sink);
    for (size_t i = 0; i < s->count; i++) {
        command_from(&s->items[i], command);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        engine_apply(engine, command, &sink);
        clock_gettime(CLOCK_MONOTONIC, &b);
        int64_t ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
        histogram[ns < LATENCY_BUCKETS_NS ? ns : LATENCY_BUCKETS_NS - 1]++;
    }
    engine_free(engine);
    free(command);
}

static uint32_t percentile(const uint32_t *histogram, uint64_t total, double fraction)
{
    uint64_t target = (uint64_t)((double)total * fraction), seen = 0;
    for (uint32_t ns = 0; ns < LATENCY_BUCKETS_NS; ns++) {
        seen += histogram[ns];
        if (seen > target)
            return ns;
    }
    return LATENCY_BUCKETS_NS;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    uint32_t buyers = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1000000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (buyers < 1 || buyers > 20000000 || runs < 1 || runs > 50) {
        fprintf(stderr, "usage: bench_engine [buyers 1..20000000] [runs 1..50]\n");
        return 2;
    }
    const char *seed_text = getenv("CATRACA_SEED");
    uint64_t seed = seed_text ? strtoull(seed_text, NULL, 10) : 20261124;
    rng_state = seed;
    struct stream s = record_stream(buyers);

    double rates[50], rates_plain[50], rates_cpu[50];
    uint32_t p50s[50], p99s[50];
    uint64_t outcomes = 0;
    uint32_t *histogram = checked_realloc(NULL, LATENCY_BUCKETS_NS * sizeof(uint32_t));
    for (int run = 0; run < runs; run++) {
        outcomes = 0;
        rates_plain[run] = replay_throughput(&s, buyers, false, &outcomes);
        outcomes = 0;
        rates[run] = replay_throughput(&s, buyers, true, &outcomes);
        rates_cpu[run] = last_cpu_rate;
        memset(histogram, 0, LATENCY_BUCKETS_NS * sizeof(uint32_t));
        replay_latency(&s, buyers, histogram);
        p50s[run] = percentile(histogram, s.count, 0.50);
        p99s[run] = percentile(histogram, s.count, 0.99);
    }
    qsort(rates, (size_t)runs, sizeof(double), compare_double);
    qsort(rates_plain, (size_t)runs, sizeof(double), compare_double);
    qsort(rates_cpu, (size_t)runs, sizeof(double), compare_double);
    qsort(p50s, (size_t)runs, sizeof(uint32_t), compare_u32);
    qsort(p99s, (size_t)runs, sizeof(uint32_t), compare_u32);

    struct engine *engine = engine_for(buyers);
    double bytes_per_purchase = (double)engine_memory_bytes(engine) / (buyers + 16);
    engine_free(engine);

    printf("engine bench: %u buyers, %zu commands, %llu outcomes, seed %llu, %d runs\n", buyers,
           s.count, (unsigned long long)outcomes, (unsigned long long)seed, runs);
    printf("  %-34s %014llx\n", "outcomes hash (recording run)", (unsigned long long)outcomes_hash);
    printf("  %-34s %14.0f\n", "commands/s (median, one core)", rates[runs / 2]);
    printf("  %-34s %14.0f .. %.0f\n", "commands/s (min .. max)", rates[0], rates[runs - 1]);
    printf("  %-34s %14.0f\n", "commands per CPU-second (median)", rates_cpu[runs / 2]);
    printf("  %-34s %14.0f\n", "commands/s, one at a time (median)", rates_plain[runs / 2]);
    printf("  %-34s %14u\n", "ns per command p50 (median)", p50s[runs / 2]);
    printf("  %-34s %14u\n", "ns per command p99 (median)", p99s[runs / 2]);
    printf("  %-34s %14.1f\n", "engine bytes per purchase", bytes_per_purchase);
    printf("{\"bench\":\"engine\",\"commands_per_s\":%.0f,\"ns_p50\":%u,\"ns_p99\":%u,"
           "\"bytes_per_purchase\":%.0f,\"commands_per_s_no_prefetch\":%.0f,\"commands\":%zu,"
           "\"commands_per_cpu_s\":%.0f,\"runs\":%d,\"seed\":%llu}\n",
           rates[runs / 2], p50s[runs / 2], p99s[runs / 2], bytes_per_purchase,
           rates_plain[runs / 2], s.count, rates_cpu[runs / 2], runs, (unsigned long long)seed);
    free(histogram);
    free(s.items);
    return 0;
}
