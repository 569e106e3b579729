/*
 * rush_report.c - rush's checks on its observations, and the report.
 *
 * The checks use only what the server answered rush, and assume rush was the
 * only buyer of its event (its own event, quantity 1 a purchase).
 */
#include "rush/rush_report.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define NEVER INT64_MAX /* "no ticket was ever returned" in the FIFO check */

static double seconds_between(int64_t from_us, int64_t to_us)
{
    return (double)(to_us - from_us) / 1e6;
}

static bool is_accepted(const struct rush_buyer *b)
{
    return b->status >= RUSH_STATUS_QUEUED && b->status <= RUSH_STATUS_REJECTED;
}

static void summarize(const struct rush_run *run, struct rush_report *report)
{
    const uint64_t *n = run->status_counts;
    for (uint8_t s = RUSH_STATUS_QUEUED; s <= RUSH_STATUS_REJECTED; s++)
        report->accepted += n[s];
    for (uint8_t s = RUSH_STATUS_CONFIRMED; s <= RUSH_STATUS_REJECTED; s++)
        report->final_total += n[s];
    for (uint32_t i = 0; i < run->options->buyers; i++)
        if (run->buyers[i].status == RUSH_STATUS_REJECTED)
            report->reasons[run->buyers[i].reason]++;
    report->elapsed_s = seconds_between(run->started_us, run->ended_us);
    int64_t stock_out_us = 0;
    for (uint32_t i = 0; i < run->category_count; i++) {
        int64_t at_us = run->categories[i].stock_out_us;
        stock_out_us = (at_us == 0 || stock_out_us < 0) ? -1
                       : (at_us > stock_out_us)         ? at_us
                                                        : stock_out_us;
    }
    report->sell_out_s = stock_out_us > 0 ? seconds_between(run->started_us, stock_out_us) : -1;
    bool is_all_decided = report->accepted > 0 && run->decided == report->accepted;
    bool is_all_final = report->accepted > 0 && report->final_total == report->accepted;
    report->all_decided_s =
        is_all_decided ? seconds_between(run->started_us, run->last_decided_us) : -1;
    report->all_final_s = is_all_final ? seconds_between(run->started_us, run->last_final_us) : -1;
    double accepting_s = seconds_between(run->started_us, run->last_accepted_us);
    report->accepted_per_s = accepting_s > 0 ? (double)report->accepted / accepting_s : 0;
    report->requests_per_s = report->elapsed_s > 0 ? (double)run->responses / report->elapsed_s : 0;
}

/* ---- check 1: no oversell ------------------------------------------------------------------ */

/*
 * From the event as read back: per category sold <= capacity and
 * sold + held + available == capacity; and rush never saw more purchases
 * confirmed than the event says it sold.
 */
static void check_oversell(const struct rush_run *run, struct rush_check *check)
{
    check->name = "no_oversell";
    check->is_passed = run->has_event_readback;
    snprintf(check->detail, sizeof(check->detail), "%s",
             run->has_event_readback ? "sold <= capacity and sold + held + available == capacity "
                                       "in every category; confirmations seen <= sold"
                                     : "the event could not be read back");
    for (uint32_t i = 0; i < run->category_count && check->is_passed; i++) {
        const struct rush_category *c = &run->categories[i];
        uint64_t total = (uint64_t)c->sold + c->held + c->available;
        if (!c->has_readback)
            snprintf(check->detail, sizeof(check->detail), "%s: missing from the event", c->id);
        else if (c->sold > c->capacity || total != c->capacity)
            snprintf(check->detail, sizeof(check->detail),
                     "%s: sold %u + held %u + available %u against capacity %u", c->id, c->sold,
                     c->held, c->available, c->capacity);
        else if (c->confirmed_seen > c->sold)
            snprintf(check->detail, sizeof(check->detail),
                     "%s: %u purchases were answered confirmed but the event sold %u", c->id,
                     c->confirmed_seen, c->sold);
        else
            continue;
        check->is_passed = false;
    }
}

/* ---- check 2: arrival order ----------------------------------------------------------------- */

static int compare_arrival(const void *a, const void *b, void *context)
{
    const struct rush_buyer *buyers = context;
    const struct rush_buyer *x = &buyers[*(const uint32_t *)a], *y = &buyers[*(const uint32_t *)b];
    if (x->category != y->category)
        return x->category < y->category ? -1 : 1;
    if (x->seq_major != y->seq_major)
        return x->seq_major < y->seq_major ? -1 : 1;
    if (x->seq_minor != y->seq_minor)
        return x->seq_minor < y->seq_minor ? -1 : 1;
    return 0;
}

/* The earliest the server clock can have been when b's hold ended (expired or cancelled). */
static int64_t release_lower_bound_ms(const struct rush_buyer *b)
{
    if (b->status == RUSH_STATUS_EXPIRED && b->hold_expires_ms != RUSH_TIME_UNKNOWN)
        return b->hold_expires_ms; /* a hold is valid while clock < hold_expires_at */
    if (b->status == RUSH_STATUS_CANCELLED && b->grant_ms != RUSH_TIME_UNKNOWN)
        return b->grant_ms; /* cancelled after it was granted */
    return INT64_MIN;       /* unknown: assume as early as can be */
}

struct fifo_scan {
    int64_t last_grant_ms; /* (a) the latest grant time so far in arrival order */
    uint32_t last_grant_buyer;
    int64_t first_release_ms; /* (b) earliest release among earlier purchases, or NEVER */
    int64_t required_ms;      /* (b) a later grant needs a release no later than... */
    uint32_t required_by;     /* ...because of this sold_out rejection */
    bool has_required;
};

static void describe(char *out, size_t size, const struct rush_buyer *buyers, const char *what,
                     uint32_t later, uint32_t earlier)
{
    snprintf(out, size, "c%u: b%u (seq %llu-%llu) %s b%u (seq %llu-%llu)", buyers[later].category,
             later, (unsigned long long)buyers[later].seq_major,
             (unsigned long long)buyers[later].seq_minor, what, earlier,
             (unsigned long long)buyers[earlier].seq_major,
             (unsigned long long)buyers[earlier].seq_minor);
}

/* One purchase in arrival order; false (and check->detail) on a violation. */
static bool fifo_step(const struct rush_buyer *buyers, uint32_t i, struct fifo_scan *scan,
                      struct rush_check *check)
{
    const struct rush_buyer *b = &buyers[i];
    bool is_granted = (b->flags & RUSH_BUYER_GRANTED) != 0;
    if (is_granted && b->grant_ms != RUSH_TIME_UNKNOWN) {
        if (b->grant_ms < scan->last_grant_ms) {
            describe(check->detail, sizeof(check->detail), buyers,
                     "was granted a hold before the earlier", i, scan->last_grant_buyer);
            return false;
        }
        scan->last_grant_ms = b->grant_ms;
        scan->last_grant_buyer = i;
    }
    if (is_granted && scan->has_required &&
        (scan->required_ms == NEVER ||
         (b->grant_ms != RUSH_TIME_UNKNOWN && b->grant_ms < scan->required_ms))) {
        describe(check->detail, sizeof(check->detail), buyers,
                 "was granted, with no ticket returned by then, after sold_out or line_full for "
                 "the earlier",
                 i, scan->required_by);
        return false;
    }
    if (b->status == RUSH_STATUS_REJECTED && b->reason == RUSH_REASON_SOLD_OUT) {
        /* Every ticket sold: no later purchase of the category can ever be granted. */
        scan->has_required = true;
        scan->required_ms = NEVER;
        scan->required_by = i;
    }
    if (b->status == RUSH_STATUS_REJECTED && b->reason == RUSH_REASON_LINE_FULL &&
        (!scan->has_required || scan->first_release_ms > scan->required_ms)) {
        scan->has_required = true;
        scan->required_ms = scan->first_release_ms;
        scan->required_by = i;
    }
    if (b->status == RUSH_STATUS_EXPIRED || b->status == RUSH_STATUS_CANCELLED) {
        int64_t released_ms = release_lower_bound_ms(b);
        if (released_ms < scan->first_release_ms)
            scan->first_release_ms = released_ms;
    }
    return true;
}

/*
 * FIFO per category. With quantity 1 the engine promises (engine.h, rule 2 and 3):
 * a purchase is granted only when no earlier purchase of its category is waiting,
 * the wait line is served from its head, and a confirmation that shrinks the
 * stock rejects the line from its tail. Two consequences can be checked from the
 * answers alone, scanning each category's accepted purchases in seq order:
 *
 *  (a) Grants come in arrival order. A grant's server time is hold_expires_at -
 *      hold_seconds; the engine's clock never goes back, and when a later
 *      purchase Y is granted every earlier X was already granted or rejected
 *      (else X would still be waiting ahead of Y). So among granted purchases,
 *      grant times never decrease with seq.
 *
 *  (b) No grant after a sold_out (capacity - sold < 1: every ticket is sold, for good);
 *      no grant after a line_full, unless a ticket came back. When X is rejected
 *      line_full, available + held equals the waiters ahead of X (all of them
 *      earlier than X; a tail trim drops everyone behind X too), so every ticket
 *      still in play is spoken for by an earlier purchase. A confirmation removes
 *      a ticket and a waiter; a release hands the ticket to the next earlier
 *      waiter. A ticket can reach anyone after X only once a hold granted after
 *      X's rejection, which went to an earlier purchase, is released again. So a
 *      later Y granted at time g needs an earlier-than-X purchase that ended
 *      expired or cancelled at or before g. Rush knows a lower bound of each
 *      release time (hold_expires_at for an expiry, the grant for a cancellation,
 *      minus infinity when it never saw the hold), and requires it to be <= g.
 *      Without expiries or cancellations this is the plain rule "the granted
 *      purchases form a prefix of the seq order, line_full ones come after".
 *
 * Rejections for other reasons (limit_exceeded, ...) take no ticket and are
 * skipped, as are grants whose time rush never saw (only (b) applies to them).
 */
static int check_fifo(const struct rush_run *run, struct rush_check *check)
{
    check->name = "fifo";
    check->is_passed = true;
    uint32_t *order = malloc(sizeof(uint32_t) * (run->options->buyers + 1u));
    if (order == NULL)
        return -1;
    uint32_t count = 0;
    for (uint32_t i = 0; i < run->options->buyers; i++)
        if (is_accepted(&run->buyers[i]))
            order[count++] = i;
    qsort_r(order, count, sizeof(uint32_t), compare_arrival, (void *)run->buyers);
    uint64_t grants = 0, sold_out = 0;
    struct fifo_scan scan = {0};
    for (uint32_t k = 0; k < count && check->is_passed; k++) {
        const struct rush_buyer *b = &run->buyers[order[k]];
        if (k == 0 || b->category != run->buyers[order[k - 1]].category)
            scan = (struct fifo_scan){.last_grant_ms = INT64_MIN, .first_release_ms = NEVER};
        check->is_passed = fifo_step(run->buyers, order[k], &scan, check);
        grants += (b->flags & RUSH_BUYER_GRANTED) != 0;
        sold_out += b->status == RUSH_STATUS_REJECTED && b->reason == RUSH_REASON_SOLD_OUT;
    }
    free(order);
    if (check->is_passed)
        snprintf(check->detail, sizeof(check->detail),
                 "%llu grants in arrival order; %llu sold_out rejections followed by no grant, "
                 "line_full ones only by grants of returned tickets",
                 (unsigned long long)grants, (unsigned long long)sold_out);
    return 0;
}

/* ---- checks 3 and 4 ------------------------------------------------------------------------ */

static void check_all_final(const struct rush_run *run, const struct rush_report *report,
                            struct rush_check *check)
{
    const uint64_t *n = run->status_counts;
    check->name = "all_final";
    check->is_passed = report->final_total == report->accepted;
    snprintf(check->detail, sizeof(check->detail),
             "%llu of %llu accepted purchases final; not final: queued %llu waiting %llu held "
             "%llu%s",
             (unsigned long long)report->final_total, (unsigned long long)report->accepted,
             (unsigned long long)n[RUSH_STATUS_QUEUED], (unsigned long long)n[RUSH_STATUS_WAITING],
             (unsigned long long)n[RUSH_STATUS_HELD],
             run->is_deadline_hit ? " (--max-seconds ran out)" : "");
}

static void check_all_accepted(const struct rush_run *run, const struct rush_report *report,
                               struct rush_check *check)
{
    const uint64_t *n = run->status_counts;
    uint16_t example = 0;
    for (uint32_t i = 0; i < run->options->buyers && example == 0; i++)
        example = run->buyers[i].refused_http;
    check->name = "all_accepted";
    check->is_passed = report->accepted == run->options->buyers;
    snprintf(check->detail, sizeof(check->detail),
             "%llu of %u purchases accepted; refused %llu (e.g. HTTP %u), never answered %llu",
             (unsigned long long)report->accepted, run->options->buyers,
             (unsigned long long)n[RUSH_STATUS_REFUSED], example,
             (unsigned long long)n[RUSH_STATUS_UNSENT]);
}

/* ---- check 5: sold_out is true ------------------------------------------------------------ */

/*
 * engine.h rule 2i: sold_out means capacity - sold < quantity, and sold never goes down. With
 * quantity 1, a category whose buyer was told sold_out must end with every ticket sold. Rush
 * counts the tickets left (capacity - sold at the end) in such categories: buyers were told
 * "sold out" while those tickets were there, or came back to nobody.
 */
static void check_honest_sold_out(const struct rush_run *run, struct rush_report *report,
                                  struct rush_check *check)
{
    uint64_t sold_out[CATRACA_CATEGORIES_MAX] = {0}, line_full[CATRACA_CATEGORIES_MAX] = {0};
    for (uint32_t i = 0; i < run->options->buyers; i++) {
        const struct rush_buyer *b = &run->buyers[i];
        if (b->status != RUSH_STATUS_REJECTED || b->category >= CATRACA_CATEGORIES_MAX)
            continue;
        sold_out[b->category] += b->reason == RUSH_REASON_SOLD_OUT;
        line_full[b->category] += b->reason == RUSH_REASON_LINE_FULL;
    }
    check->name = "honest_sold_out";
    check->is_passed = run->has_event_readback;
    for (uint32_t i = 0; i < run->category_count; i++) {
        const struct rush_category *c = &run->categories[i];
        uint64_t unsold = c->has_readback && c->capacity >= c->sold ? c->capacity - c->sold : 0;
        if (sold_out[i] > 0)
            report->unsold_while_sold_out += unsold;
        if (line_full[i] > 0)
            report->unsold_while_line_full += unsold;
    }
    check->is_passed = check->is_passed && report->unsold_while_sold_out == 0;
    snprintf(check->detail, sizeof(check->detail),
             "%llu tickets unsold while buyers were told sold_out%s; %llu unsold while buyers "
             "were told line_full",
             (unsigned long long)report->unsold_while_sold_out,
             run->has_event_readback ? "" : " (the event was not read back)",
             (unsigned long long)report->unsold_while_line_full);
}

int rush_report_check(const struct rush_run *run, struct rush_report *report)
{
    memset(report, 0, sizeof(*report));
    summarize(run, report);
    check_oversell(run, &report->checks[RUSH_CHECK_NO_OVERSELL]);
    if (check_fifo(run, &report->checks[RUSH_CHECK_FIFO]) != 0)
        return -1;
    check_all_final(run, report, &report->checks[RUSH_CHECK_ALL_FINAL]);
    check_all_accepted(run, report, &report->checks[RUSH_CHECK_ALL_ACCEPTED]);
    check_honest_sold_out(run, report, &report->checks[RUSH_CHECK_HONEST_SOLD_OUT]);
    report->is_passed = true;
    for (int i = 0; i < RUSH_CHECK_COUNT; i++)
        report->is_passed = report->is_passed && report->checks[i].is_passed;
    return 0;
}

/* ---- text ---------------------------------------------------------------------------------- */

static void print_seconds(FILE *out, const char *label, double seconds)
{
    if (seconds < 0)
        fprintf(out, "  %s -", label);
    else
        fprintf(out, "  %s %.2f s", label, seconds);
}

static void print_latency(FILE *out, const char *label, const struct histogram *h)
{
    fprintf(out, "         %-8s p50 %.2f ms  p99 %.2f ms  p999 %.2f ms  max %.2f ms  (%llu)\n",
            label, (double)histogram_percentile(h, 0.5) / 1000,
            (double)histogram_percentile(h, 0.99) / 1000,
            (double)histogram_percentile(h, 0.999) / 1000, (double)h->max / 1000,
            (unsigned long long)h->count);
}

static void print_outcomes(const struct rush_run *run, const struct rush_report *report, FILE *out)
{
    const uint64_t *n = run->status_counts;
    fprintf(
        out,
        "final    confirmed %llu  expired %llu  cancelled %llu  rejected %llu  not final "
        "%llu\n",
        (unsigned long long)n[RUSH_STATUS_CONFIRMED], (unsigned long long)n[RUSH_STATUS_EXPIRED],
        (unsigned long long)n[RUSH_STATUS_CANCELLED], (unsigned long long)n[RUSH_STATUS_REJECTED],
        (unsigned long long)(report->accepted - report->final_total));
    fprintf(out, "rejected");
    for (uint8_t r = RUSH_REASON_SOLD_OUT; r < RUSH_REASON_COUNT; r++)
        if (report->reasons[r] > 0)
            fprintf(out, "  %s %llu", rush_reason_name(r), (unsigned long long)report->reasons[r]);
    fprintf(out, "%s\n", report->final_total > 0 && n[RUSH_STATUS_REJECTED] == 0 ? "  none" : "");
    fprintf(out,
            "http     5xx %llu (503 %llu)  429 %llu  retries %llu  transport errors %llu  "
            "409 on confirm %llu, on cancel %llu\n",
            (unsigned long long)run->responses_5xx, (unsigned long long)run->responses_503,
            (unsigned long long)run->responses_429, (unsigned long long)run->retries,
            (unsigned long long)run->transport_errors, (unsigned long long)run->confirm_conflicts,
            (unsigned long long)run->cancel_conflicts);
    fprintf(out, "category capacity     sold     held  available  waiting  confirmed seen\n");
    for (uint32_t i = 0; i < run->category_count; i++) {
        const struct rush_category *c = &run->categories[i];
        if (c->has_readback)
            fprintf(out, "  %-6s %8u %8u %8u %10u %8u %15u\n", c->id, c->capacity, c->sold, c->held,
                    c->available, c->waiting, c->confirmed_seen);
        else
            fprintf(out, "  %-6s %8u (not read back)%30u\n", c->id, c->capacity_asked,
                    c->confirmed_seen);
    }
}

void rush_report_print(const struct rush_run *run, const struct rush_report *report, FILE *out)
{
    const struct rush_options *o = run->options;
    fprintf(out,
            "catraca rush: event %s at %s, %u buyers, %u tickets in %u categories, seed %llu\n",
            o->event, o->url, o->buyers, o->tickets, o->categories, (unsigned long long)o->seed);
    fprintf(out,
            "  %u connections, %s, confirm %.2f cancel %.2f, pay delay %u-%u ms, hold %lld s, "
            "line %s\n",
            o->connections, o->rate_per_s > 0 ? "paced by --rate" : "opening bell",
            o->confirm_fraction, o->cancel_fraction, o->pay_delay_ms_min, o->pay_delay_ms_max,
            (long long)(run->hold_ms / 1000), o->line_policy[0] ? o->line_policy : "default");
    fprintf(out, "time   ");
    print_seconds(out, "sell-out", report->sell_out_s);
    print_seconds(out, "all decided", report->all_decided_s);
    print_seconds(out, "all final", report->all_final_s);
    fprintf(out, "  (ran %.2f s)\n", report->elapsed_s);
    fprintf(out, "rate     accepted %llu (%.0f/s)  requests %llu (%.0f/s)\n",
            (unsigned long long)report->accepted, report->accepted_per_s,
            (unsigned long long)run->responses, report->requests_per_s);
    bool is_paced = o->rate_per_s > 0;
    fprintf(out, "latency  accept: %s -> 202; decision: 202 -> first status not queued%s\n",
            is_paced ? "scheduled send" : "first send",
            is_paced ? "; send lag: scheduled -> sent" : "");
    print_latency(out, "accept", &run->accept_latency_us);
    print_latency(out, "decision", &run->decision_latency_us);
    if (is_paced)
        print_latency(out, "send lag", &run->send_lag_us);
    print_outcomes(run, report, out);
    for (int i = 0; i < RUSH_CHECK_COUNT; i++)
        fprintf(out, "check    %-13s %s  %s\n", report->checks[i].name,
                report->checks[i].is_passed ? "PASS" : "FAIL", report->checks[i].detail);
    fprintf(out, "result   %s\n", report->is_passed ? "PASS" : "FAIL");
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static void add_seconds(cJSON *json, const char *name, double seconds)
{
    if (seconds < 0)
        cJSON_AddNullToObject(json, name);
    else
        cJSON_AddNumberToObject(json, name, seconds);
}

static void add_latency(cJSON *json, const char *name, const struct histogram *h)
{
    cJSON *item = cJSON_AddObjectToObject(json, name);
    cJSON_AddNumberToObject(item, "count", (double)h->count);
    cJSON_AddNumberToObject(item, "p50_ms", (double)histogram_percentile(h, 0.5) / 1000);
    cJSON_AddNumberToObject(item, "p99_ms", (double)histogram_percentile(h, 0.99) / 1000);
    cJSON_AddNumberToObject(item, "p999_ms", (double)histogram_percentile(h, 0.999) / 1000);
    cJSON_AddNumberToObject(item, "max_ms", (double)h->max / 1000);
}

static void add_options(cJSON *json, const struct rush_run *run)
{
    const struct rush_options *o = run->options;
    cJSON_AddStringToObject(json, "url", o->url);
    cJSON_AddStringToObject(json, "event", o->event);
    cJSON_AddNumberToObject(json, "seed", (double)o->seed);
    cJSON_AddNumberToObject(json, "buyers", o->buyers);
    cJSON_AddNumberToObject(json, "tickets", o->tickets);
    cJSON_AddNumberToObject(json, "categories", o->categories);
    cJSON_AddNumberToObject(json, "connections", o->connections);
    cJSON_AddNumberToObject(json, "rate", o->rate_per_s);
    cJSON_AddNumberToObject(json, "confirm", o->confirm_fraction);
    cJSON_AddNumberToObject(json, "cancel", o->cancel_fraction);
    cJSON_AddNumberToObject(json, "pay_delay_ms_min", o->pay_delay_ms_min);
    cJSON_AddNumberToObject(json, "pay_delay_ms_max", o->pay_delay_ms_max);
    cJSON_AddNumberToObject(json, "hold_seconds", (double)(run->hold_ms / 1000));
    cJSON_AddStringToObject(json, "line_policy", o->line_policy[0] ? o->line_policy : "default");
}

static void add_counts(cJSON *json, const struct rush_run *run, const struct rush_report *report)
{
    cJSON *final = cJSON_AddObjectToObject(json, "final");
    for (uint8_t s = RUSH_STATUS_CONFIRMED; s <= RUSH_STATUS_REJECTED; s++)
        cJSON_AddNumberToObject(final, rush_status_name(s), (double)run->status_counts[s]);
    cJSON *not_final = cJSON_AddObjectToObject(json, "not_final");
    for (uint8_t s = RUSH_STATUS_QUEUED; s <= RUSH_STATUS_HELD; s++)
        cJSON_AddNumberToObject(not_final, rush_status_name(s), (double)run->status_counts[s]);
    cJSON *reasons = cJSON_AddObjectToObject(json, "rejected");
    for (uint8_t r = RUSH_REASON_SOLD_OUT; r < RUSH_REASON_COUNT; r++)
        cJSON_AddNumberToObject(reasons, rush_reason_name(r), (double)report->reasons[r]);
    cJSON_AddNumberToObject(json, "unsold_while_sold_out", (double)report->unsold_while_sold_out);
    cJSON_AddNumberToObject(json, "unsold_while_line_full", (double)report->unsold_while_line_full);
    cJSON_AddNumberToObject(json, "refused", (double)run->status_counts[RUSH_STATUS_REFUSED]);
    cJSON_AddNumberToObject(json, "unsent", (double)run->status_counts[RUSH_STATUS_UNSENT]);
    cJSON *http = cJSON_AddObjectToObject(json, "http");
    cJSON_AddNumberToObject(http, "responses", (double)run->responses);
    cJSON_AddNumberToObject(http, "5xx", (double)run->responses_5xx);
    cJSON_AddNumberToObject(http, "503", (double)run->responses_503);
    cJSON_AddNumberToObject(http, "429", (double)run->responses_429);
    cJSON_AddNumberToObject(http, "retries", (double)run->retries);
    cJSON_AddNumberToObject(http, "transport_errors", (double)run->transport_errors);
    cJSON_AddNumberToObject(http, "confirm_conflicts", (double)run->confirm_conflicts);
    cJSON_AddNumberToObject(http, "cancel_conflicts", (double)run->cancel_conflicts);
}

static void add_categories(cJSON *json, const struct rush_run *run)
{
    cJSON *categories = cJSON_AddArrayToObject(json, "categories");
    for (uint32_t i = 0; i < run->category_count; i++) {
        const struct rush_category *c = &run->categories[i];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "id", c->id);
        cJSON_AddBoolToObject(item, "read_back", c->has_readback);
        cJSON_AddNumberToObject(item, "capacity",
                                c->has_readback ? c->capacity : c->capacity_asked);
        cJSON_AddNumberToObject(item, "sold", c->sold);
        cJSON_AddNumberToObject(item, "held", c->held);
        cJSON_AddNumberToObject(item, "available", c->available);
        cJSON_AddNumberToObject(item, "waiting", c->waiting);
        cJSON_AddNumberToObject(item, "confirmed_seen", c->confirmed_seen);
        cJSON_AddItemToArray(categories, item);
    }
}

static cJSON *report_json(const struct rush_run *run, const struct rush_report *report)
{
    cJSON *json = cJSON_CreateObject();
    add_options(json, run);
    cJSON_AddNumberToObject(json, "elapsed_s", report->elapsed_s);
    add_seconds(json, "sell_out_s", report->sell_out_s);
    add_seconds(json, "all_decided_s", report->all_decided_s);
    add_seconds(json, "all_final_s", report->all_final_s);
    cJSON_AddBoolToObject(json, "deadline_hit", run->is_deadline_hit);
    cJSON_AddNumberToObject(json, "accepted", (double)report->accepted);
    cJSON_AddNumberToObject(json, "accepted_per_s", report->accepted_per_s);
    cJSON_AddNumberToObject(json, "requests_per_s", report->requests_per_s);
    bool is_paced = run->options->rate_per_s > 0;
    cJSON *latency = cJSON_AddObjectToObject(json, "latency");
    add_latency(latency, "accept", &run->accept_latency_us);
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(latency, "accept"), "from",
                            is_paced ? "scheduled" : "sent");
    add_latency(latency, "decision", &run->decision_latency_us);
    if (is_paced)
        add_latency(latency, "send_lag", &run->send_lag_us);
    add_counts(json, run, report);
    add_categories(json, run);
    cJSON_AddNumberToObject(json, "queue_pending", (double)run->queue_pending);
    cJSON *checks = cJSON_AddObjectToObject(json, "checks");
    for (int i = 0; i < RUSH_CHECK_COUNT; i++) {
        cJSON *check = cJSON_AddObjectToObject(checks, report->checks[i].name);
        cJSON_AddBoolToObject(check, "pass", report->checks[i].is_passed);
        cJSON_AddStringToObject(check, "detail", report->checks[i].detail);
    }
    cJSON_AddBoolToObject(json, "pass", report->is_passed);
    return json;
}

int rush_report_write_json(const struct rush_run *run, const struct rush_report *report,
                           const char *path)
{
    cJSON *json = report_json(run, report);
    char *text = json ? cJSON_Print(json) : NULL;
    cJSON_Delete(json);
    FILE *file = text ? fopen(path, "w") : NULL;
    bool is_written = file != NULL && fputs(text, file) >= 0 && fputc('\n', file) != EOF;
    if (file != NULL && fclose(file) != 0)
        is_written = false;
    free(text);
    if (!is_written)
        fprintf(stderr, "catraca rush: cannot write %s\n", path);
    return is_written ? 0 : -1;
}
