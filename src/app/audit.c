/*
 * audit.c - `catraca audit --data DIR`: proves every stored decision from the log.
 *
 * For each event, replays its log from the first entry through a fresh engine
 * up to the store's committed offset, checking the invariants after every
 * command, then compares every purchase the store recorded (status, reason,
 * quantity, category, customer, arrival position, hold expiry, ticket codes)
 * and every category counter with the replay. Any purchase one side has and
 * the other lacks is a difference too. On the first difference it prints both
 * versions and exits 1.
 */
#include "app/audit.h"
#include "app/service.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/codec.h"
#include "core/error.h"
#include "gateway/api_json.h"
#include "log/log_sqlite.h"
#include "store/store_sqlite.h"

#define READ_BATCH 4096

struct audit {
    struct catraca_log log;
    struct catraca_store store;
    struct engine *engine;
    const char *event;
    /* arrival facts the engine does not keep, from the PURCHASE commands */
    struct arrival {
        uint64_t purchase_id;
        struct log_seq seq;
        char customer[CATRACA_ID_MAX + 1];
    } * arrivals;
    size_t arrival_count;
    uint8_t *is_stored; /* by engine slot: the store has this purchase */
    uint64_t commands, purchases_checked;
    int differences;
};

static void ignore(void *context, const struct engine_outcome *outcome)
{
    (void)context;
    (void)outcome;
}

/* engine.h promise 1: the stock adds up; a bounded line never wants more than could return. */
static bool invariants_hold(const struct engine *engine)
{
    const struct engine_event_spec *spec = engine_event(engine);
    bool is_bounded = spec != NULL && spec->line_policy == ENGINE_LINE_BOUNDED;
    for (uint32_t i = 0; i < engine_category_count(engine); i++) {
        struct engine_category_counts c;
        engine_category_counts(engine, i, &c);
        if ((uint64_t)c.available + c.held + c.sold != c.capacity ||
            (is_bounded && c.waiting_quantity > (uint64_t)c.available + c.held))
            return false;
    }
    return true;
}

/* Called when a PURCHASE took a new slot in the engine: arrivals[slot] describes it. */
static void remember_arrival(struct audit *a, const struct engine_command *c, struct log_seq seq)
{
    struct arrival *r = &a->arrivals[a->arrival_count++];
    r->purchase_id = c->u.purchase.purchase_id;
    r->seq = seq;
    snprintf(r->customer, sizeof(r->customer), "%s", c->u.purchase.customer);
}

/* Replays the log up to `committed`; returns 0 or an error (printed). */
static int replay(struct audit *a, struct log_seq committed, struct log_entry *entries)
{
    struct engine_sink sink = {.emit = ignore};
    struct engine_command command;
    struct log_seq after = {0, 0};
    for (;;) {
        size_t count = 0;
        int error = a->log.ops->read(a->log.context, a->event, after, entries, READ_BATCH, &count);
        if (error != 0)
            return error;
        for (size_t i = 0; i < count; i++) {
            if (log_seq_compare(entries[i].seq, committed) > 0)
                return 0;
            after = entries[i].seq;
            if (codec_command_decode(entries[i].record, entries[i].record_length, &command) != 0) {
                printf("DIFFERENCE event %s: log entry %" PRIu64 " cannot be decoded\n", a->event,
                       entries[i].seq.major);
                a->differences++;
                continue;
            }
            uint32_t remembered = engine_purchase_count(a->engine);
            engine_apply(a->engine, &command, &sink);
            a->commands++;
            if (!invariants_hold(a->engine)) {
                printf("DIFFERENCE event %s: invariant broken after entry %" PRIu64 "\n", a->event,
                       entries[i].seq.major);
                return CATRACA_E_CORRUPT;
            }
            if (engine_purchase_count(a->engine) > remembered)
                remember_arrival(a, &command, entries[i].seq);
        }
        if (count == 0)
            return 0;
    }
}

static void print_row(const char *who, const struct store_purchase *p)
{
    char id[API_PURCHASE_ID_TEXT], seq[LOG_SEQ_TEXT_MAX];
    api_json_purchase_id_format(p->purchase_id, id);
    log_seq_format(p->seq, seq);
    printf(
        "  %-7s %s status=%s reason=%s quantity=%u category=%s customer=%s seq=%s expires=%" PRId64
        " tickets=",
        who, id, engine_status_name(p->status), p->reason ? engine_reason_name(p->reason) : "-",
        p->quantity, p->category, p->customer, seq, p->hold_expires_at_ms);
    for (uint32_t i = 0; i < p->ticket_count; i++) {
        char code[14];
        engine_ticket_code_format(p->ticket_codes[i], code);
        printf("%s%s", i ? "," : "", code);
    }
    printf("\n");
}

/* The replay's version of a purchase, in the store's shape. */
static bool replayed_row(const struct audit *a, uint64_t id, struct store_purchase *out)
{
    struct engine_purchase_view view;
    if (engine_purchase(a->engine, id, &view) != 0 || view.slot >= a->arrival_count)
        return false;
    const struct arrival *arrival = &a->arrivals[view.slot];
    const struct engine_event_spec *spec = engine_event(a->engine);
    memset(out, 0, sizeof(*out));
    out->purchase_id = id;
    out->status = view.status;
    out->reason = view.status == ENGINE_STATUS_REJECTED ? view.reason : 0;
    out->quantity = view.quantity;
    out->seq = arrival->seq;
    snprintf(out->customer, sizeof(out->customer), "%s", arrival->customer);
    snprintf(out->category, sizeof(out->category), "%s",
             spec && view.category < spec->category_count ? spec->categories[view.category].id
                                                          : "");
    out->hold_expires_at_ms = view.hold_expires_at_ms;
    out->is_refund_due = view.is_refund_due;
    if (view.status == ENGINE_STATUS_CONFIRMED) {
        out->ticket_count = (uint8_t)view.quantity;
        for (uint32_t i = 0; i < view.quantity; i++)
            out->ticket_codes[i] = engine_ticket_code(spec->secret, id, i);
    }
    return true;
}

static bool rows_agree(const struct store_purchase *stored, const struct store_purchase *replayed)
{
    bool same = stored->status == replayed->status && stored->reason == replayed->reason &&
                stored->quantity == replayed->quantity &&
                log_seq_compare(stored->seq, replayed->seq) == 0 &&
                strcmp(stored->customer, replayed->customer) == 0 &&
                stored->ticket_count == replayed->ticket_count &&
                stored->is_refund_due == replayed->is_refund_due &&
                (replayed->status != ENGINE_STATUS_HELD ||
                 stored->hold_expires_at_ms == replayed->hold_expires_at_ms);
    /* The category of a rejected unknown-category purchase is what the buyer sent. */
    if (same && replayed->category[0] != '\0')
        same = strcmp(stored->category, replayed->category) == 0;
    for (uint32_t i = 0; same && i < stored->ticket_count; i++)
        same = stored->ticket_codes[i] == replayed->ticket_codes[i];
    return same;
}

static int compare_row(void *context, const struct store_purchase *stored)
{
    struct audit *a = context;
    struct store_purchase replayed;
    a->purchases_checked++;
    if (!replayed_row(a, stored->purchase_id, &replayed)) {
        printf("DIFFERENCE event %s: the store has a purchase the log never decided\n", a->event);
        print_row("store", stored);
        a->differences++;
        return 1;
    }
    struct engine_purchase_view view;
    if (engine_purchase(a->engine, stored->purchase_id, &view) == 0)
        a->is_stored[view.slot] = 1;
    if (!rows_agree(stored, &replayed)) {
        printf("DIFFERENCE event %s: stored outcome differs from the replay\n", a->event);
        print_row("store", stored);
        print_row("replay", &replayed);
        a->differences++;
        return 1;
    }
    return 0;
}

static int compare_counts(struct audit *a, const struct store_event *stored)
{
    for (uint32_t i = 0; i < engine_category_count(a->engine); i++) {
        struct engine_category_counts c;
        engine_category_counts(a->engine, i, &c);
        const struct engine_category_counts *s = &stored->counts[i];
        if (c.available != s->available || c.held != s->held || c.sold != s->sold) {
            printf("DIFFERENCE event %s category %s: store available/held/sold %u/%u/%u, replay "
                   "%u/%u/%u\n",
                   a->event, stored->spec.categories[i].id, s->available, s->held, s->sold,
                   c.available, c.held, c.sold);
            a->differences++;
            return 1;
        }
    }
    return 0;
}

/* Every purchase the replay decided must be stored (marked while comparing the rows). */
static void find_missing(struct audit *a)
{
    struct engine_purchase_view view;
    for (uint32_t slot = 0; slot < engine_purchase_count(a->engine); slot++) {
        if (a->is_stored[slot] || engine_purchase_at(a->engine, slot, &view) != 0)
            continue;
        char id[API_PURCHASE_ID_TEXT];
        api_json_purchase_id_format(view.purchase_id, id);
        printf("DIFFERENCE event %s: purchase %s decided by the replay (%s) is not in the store\n",
               a->event, id, engine_status_name(view.status));
        a->differences++;
        return;
    }
}

static void print_summary(struct audit *a, const struct store_event *stored)
{
    printf("event %s: %" PRIu64 " commands replayed, %" PRIu64 " purchases checked", a->event,
           a->commands, a->purchases_checked);
    for (uint32_t i = 0; i < engine_category_count(a->engine); i++) {
        struct engine_category_counts c;
        engine_category_counts(a->engine, i, &c);
        printf(", %s sold %u/%u", stored->spec.categories[i].id, c.sold, c.capacity);
    }
    printf("\n");
}

static int audit_event(struct audit *a, const char *event, const struct engine_config *config,
                       struct log_entry *entries)
{
    struct store_event stored;
    struct log_seq committed, snapshot_offset;
    uint8_t *snapshot = NULL;
    size_t snapshot_length = 0;
    a->event = event;
    a->commands = a->purchases_checked = 0;
    a->arrival_count = 0;
    memset(a->is_stored, 0, config->purchases_max);
    int error = a->store.ops->load(a->store.context, event, &committed, &snapshot, &snapshot_length,
                                   &snapshot_offset);
    free(snapshot);
    if (error == CATRACA_E_NOTFOUND) {
        printf("event %s: nothing decided yet\n", event);
        return 0;
    }
    if (error == 0)
        error = a->store.ops->get_event(a->store.context, event, &stored);
    if (error == 0)
        error = engine_new(config, &a->engine);
    if (error == 0)
        error = replay(a, committed, entries);
    if (error == 0 && compare_counts(a, &stored) == 0 &&
        a->store.ops->for_each_purchase(a->store.context, event, compare_row, a) == 0)
        find_missing(a);
    if (error == 0)
        print_summary(a, &stored);
    engine_free(a->engine);
    a->engine = NULL;
    return error;
}

int audit_run(const char *data, uint32_t purchases_max, uint32_t customers_max)
{
    struct sqlite_paths paths;
    sqlite_paths_of(data, &paths);
    struct audit a = {0};
    struct log_sqlite_options options = {
        .is_synchronous_full = false, .busy_timeout_ms = 5000, .read_max = READ_BATCH};
    struct engine_config config = {.purchases_max = purchases_max, .customers_max = customers_max};
    struct log_entry *entries = calloc(READ_BATCH, sizeof(*entries));
    a.arrivals = calloc(purchases_max, sizeof(*a.arrivals));
    a.is_stored = calloc(purchases_max, 1);
    if (entries == NULL || a.arrivals == NULL || a.is_stored == NULL ||
        log_sqlite_open(paths.log, &options, &a.log) != 0) {
        fprintf(stderr, "catraca audit: cannot open %s\n", paths.log);
        return 2;
    }
    if (store_sqlite_open(paths.store, false, 5000, &a.store) != 0) {
        fprintf(stderr, "catraca audit: cannot open the store %s\n", paths.store);
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    char(*events)[CATRACA_ID_MAX + 1] = calloc(4096, sizeof(*events));
    size_t count = 0;
    int error = a.log.ops->list_partitions(a.log.context, events, 4096, &count);
    uint64_t total = 0;
    for (size_t i = 0; error == 0 && i < count && a.differences == 0; i++) {
        error = audit_event(&a, events[i], &config, entries);
        total += a.commands;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds =
        (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    if (error != 0)
        printf("audit failed: %s\n", catraca_strerror(error));
    printf("audit: %zu events, %" PRIu64 " commands in %.3f s (%.0f commands/s): %s\n", count,
           total, seconds, seconds > 0 ? (double)total / seconds : 0.0,
           error == 0 && a.differences == 0 ? "CLEAN" : "DIFFERENCES FOUND");
    free(events);
    free(entries);
    free(a.arrivals);
    free(a.is_stored);
    a.log.ops->close(a.log.context);
    a.store.ops->close(a.store.context);
    return error == 0 && a.differences == 0 ? 0 : 1;
}
