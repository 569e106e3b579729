/*
 * rush.c - `catraca rush` (see rush.h): set-up, the event loop, every buyer's
 * state machine, tear-down.
 *
 * Where a buyer is, at any moment, is exactly one of: not sent yet (index >=
 * next_unsent), in one of three queues, in the timer heap, in flight on one
 * connection, or done (final, refused or lost). The queues are intrusive lists
 * through rush_buyer.next and the heap holds at most one entry a buyer, so every
 * queue is bounded by the number of buyers and nothing is allocated after set-up.
 *
 * When a connection is free it takes, in this order: a due action (a retry, a
 * payment, a cancellation), a long-poll for a purchase still queued (its first
 * decision, so decision latency is measured promptly), a long-poll for a waiting
 * or expiring purchase, a new purchase (at --rate if given). Long-polls park on
 * the server, so at most 3/4 of the connections carry them, and follow-ups at
 * most half of those: new purchases and payments always find a connection, and
 * an opening bell of new purchases never starves the follow-ups.
 *
 * A waiting purchase is followed by plain reads, not long-polls: an unbounded line
 * holds most buyers for a long time, and a long-poll each would take every follow-up
 * connection for minutes while granted buyers go unseen and their holds expire
 * unpaid. A buyer at place p in line reads again after WAITING_RECHECK_MS_PER_PLACE
 * * p (at least WAITING_RECHECK_MS_MIN, at most half a hold): the head is watched
 * closely, the tail rarely, and a grant is seen well before its hold runs out.
 */
#include "rush/rush.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "gateway/jwt.h"
#include "rush/histogram.h"
#include "rush/rush_http.h"
#include "rush/rush_options.h"
#include "rush/rush_report.h"
#include "rush/rush_run.h"

#define NO_BUYER UINT32_MAX
#define LONG_POLL_WAIT_S 30
#define WAITING_RECHECK_MS_MIN 100
#define WAITING_RECHECK_MS_PER_PLACE 2
#define SETUP_TIMEOUT_MS 30000
#define SETUP_RETRY_MS 3000 /* set-up requests retry on failed connections this long */
#define RETRY_BASE_US 25000
#define RETRY_MAX_US 2000000
#define ATTEMPTS_MAX 30 /* answers that cannot succeed by retrying (404, 403): then lost */
#define EPOLL_EVENTS_MAX 512
#define TOKEN_MAX 1024 /* jwt_sign() wants at least this much room */
#define REOPEN_INTERVAL_US 20000
#define REOPEN_BACKOFF_US 200000
#define WAKE_MAX_MS 50

/*
 * What a connection carries. REQUEST_NONE (0, as rush_connection_init() leaves it) exactly
 * while no request of ours is outstanding on it: send_request() sets the kind, request_done()
 * clears it, so the connections with a kind are the ones r->in_flight counts.
 */
enum request_kind {
    REQUEST_NONE = 0,
    REQUEST_TOKEN_FOR_PURCHASE, /* --demo: the buyer's token, then the purchase */
    REQUEST_PURCHASE,
    REQUEST_POLL,
    REQUEST_CONFIRM,
    REQUEST_TOKEN_FOR_CANCEL, /* --demo: the buyer's token, then the cancellation */
    REQUEST_CANCEL,
};

enum step { STEP_PURCHASE = 1, STEP_POLL, STEP_CONFIRM, STEP_CANCEL };
enum plan { PLAN_CONFIRM, PLAN_CANCEL, PLAN_EXPIRE };

struct queue {
    uint32_t head, tail, count;
};

struct timer {
    int64_t due_us;
    uint32_t buyer;
};

struct rush {
    struct rush_options options;
    struct rush_run run;
    struct rush_server_address server;
    int epoll_fd;
    struct rush_connection *connections;
    uint32_t connection_count;
    uint32_t *idle; /* stack of connection indexes believed IDLE */
    bool *is_in_idle;
    uint32_t idle_count;
    uint32_t closed_count;
    int64_t next_reopen_us;
    struct queue ready;   /* due actions: purchase retries, payments, cancellations */
    struct queue first;   /* accepted, still queued: long-poll for the first decision */
    struct queue follow;  /* waiting, or a hold left to expire: long-poll for the next change */
    struct timer *timers; /* min-heap on due_us, one entry a buyer at most */
    uint32_t timer_count;
    uint32_t next_unsent;
    uint32_t in_flight, long_polls, follow_polls, long_polls_max, follow_polls_max;
    uint64_t unfinished; /* buyers not final, refused or lost */
    char admin_token[TOKEN_MAX];
    char payments_token[TOKEN_MAX];
    char key_prefix[32]; /* Idempotency-Key: <prefix><buyer>, unique per event */
    int64_t token_expires_s;
    int64_t deadline_us;
    bool is_tty;
    int64_t next_progress_us;
    int64_t progress_at_us;
    uint64_t progress_responses;
};

/* ---- clocks, randomness, names ------------------------------------------------------------- */

/* SplitMix64's finaliser: every buyer's choices depend on (seed, buyer) only, not on timing. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t buyer_random(const struct rush *r, uint32_t buyer, uint64_t salt)
{
    return mix64(mix64(r->options.seed) ^ ((uint64_t)buyer << 8 | salt));
}

/* At --rate: when buyer's purchase is due; buyers go out in index order on this schedule. */
static int64_t scheduled_us(const struct rush *r, uint32_t buyer)
{
    assert(r->options.rate_per_s > 0);
    return r->run.started_us + (int64_t)((double)buyer * 1e6 / r->options.rate_per_s);
}

/*
 * Where accept latency starts (rush_run.h): at --rate the scheduled send, so a rush that fell
 * behind (every connection busy, the --demo token first, retries) cannot hide the wait; in an
 * opening bell, when everyone is due at once, the purchase's first send.
 */
static int64_t accept_from_us(const struct rush *r, uint32_t buyer)
{
    return r->options.rate_per_s > 0 ? scheduled_us(r, buyer) : r->run.buyers[buyer].first_sent_us;
}

static enum plan buyer_plan(const struct rush *r, uint32_t buyer)
{
    double u = (double)(buyer_random(r, buyer, 1) >> 11) * 0x1.0p-53;
    if (u < r->options.confirm_fraction)
        return PLAN_CONFIRM;
    if (u < r->options.confirm_fraction + r->options.cancel_fraction)
        return PLAN_CANCEL;
    return PLAN_EXPIRE;
}

static int64_t buyer_pay_delay_us(const struct rush *r, uint32_t buyer)
{
    uint64_t span = (uint64_t)(r->options.pay_delay_ms_max - r->options.pay_delay_ms_min) + 1;
    return ((int64_t)r->options.pay_delay_ms_min + (int64_t)(buyer_random(r, buyer, 2) % span)) *
           1000;
}

static const char *const status_names[RUSH_STATUS_COUNT] = {"unsent",    "queued",    "waiting",
                                                            "held",      "confirmed", "expired",
                                                            "cancelled", "rejected",  "refused"};
static const char *const reason_names[RUSH_REASON_COUNT] = {
    "none",        "sold_out", "limit_exceeded", "sale_closed", "unknown_category",
    "engine_full", "invalid",  "line_full",      "other"};

const char *rush_status_name(uint8_t status)
{
    return status < RUSH_STATUS_COUNT ? status_names[status] : "?";
}

const char *rush_reason_name(uint8_t reason)
{
    return reason < RUSH_REASON_COUNT ? reason_names[reason] : "?";
}

static uint8_t status_parse(const char *name)
{
    for (uint8_t s = RUSH_STATUS_QUEUED; s <= RUSH_STATUS_REJECTED; s++)
        if (strcmp(name, status_names[s]) == 0)
            return s;
    return RUSH_STATUS_UNSENT;
}

static uint8_t reason_parse(const char *name)
{
    for (uint8_t r = RUSH_REASON_SOLD_OUT; r < RUSH_REASON_OTHER; r++)
        if (strcmp(name, reason_names[r]) == 0)
            return r;
    return RUSH_REASON_OTHER;
}

static bool is_final_status(uint8_t status)
{
    return status >= RUSH_STATUS_CONFIRMED && status <= RUSH_STATUS_REJECTED;
}

/* ---- queues and timers --------------------------------------------------------------------- */

static void queue_push(struct rush *r, struct queue *q, uint32_t buyer)
{
    r->run.buyers[buyer].next = NO_BUYER;
    if (q->count == 0)
        q->head = buyer;
    else
        r->run.buyers[q->tail].next = buyer;
    q->tail = buyer;
    q->count++;
}

static uint32_t queue_pop(struct rush *r, struct queue *q)
{
    if (q->count == 0)
        return NO_BUYER;
    uint32_t buyer = q->head;
    q->head = r->run.buyers[buyer].next;
    q->count--;
    return buyer;
}

static void timer_swap(struct rush *r, uint32_t a, uint32_t b)
{
    struct timer t = r->timers[a];
    r->timers[a] = r->timers[b];
    r->timers[b] = t;
}

static void timer_add(struct rush *r, uint32_t buyer, int64_t due_us)
{
    assert(r->timer_count < r->options.buyers);
    uint32_t i = r->timer_count++;
    r->timers[i] = (struct timer){.due_us = due_us, .buyer = buyer};
    while (i > 0 && r->timers[(i - 1) / 2].due_us > r->timers[i].due_us) {
        timer_swap(r, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static uint32_t timer_pop(struct rush *r)
{
    uint32_t buyer = r->timers[0].buyer;
    r->timers[0] = r->timers[--r->timer_count];
    for (uint32_t i = 0;;) {
        uint32_t smallest = i, left = 2 * i + 1, right = 2 * i + 2;
        if (left < r->timer_count && r->timers[left].due_us < r->timers[smallest].due_us)
            smallest = left;
        if (right < r->timer_count && r->timers[right].due_us < r->timers[smallest].due_us)
            smallest = right;
        if (smallest == i)
            break;
        timer_swap(r, i, smallest);
        i = smallest;
    }
    return buyer;
}

/* A follow-up long-poll goes where its status says: first decision, or later changes. */
static void queue_poll(struct rush *r, uint32_t buyer)
{
    bool is_queued = r->run.buyers[buyer].status == RUSH_STATUS_QUEUED;
    queue_push(r, is_queued ? &r->first : &r->follow, buyer);
}

static void fire_timers(struct rush *r, int64_t now_us)
{
    while (r->timer_count > 0 && r->timers[0].due_us <= now_us) {
        uint32_t buyer = timer_pop(r);
        bool is_short = (r->run.buyers[buyer].flags & RUSH_BUYER_SHORT_POLL) != 0;
        if (r->run.buyers[buyer].step == STEP_POLL && !is_short)
            queue_poll(r, buyer);
        else
            queue_push(r, &r->ready, buyer);
    }
}

static void schedule(struct rush *r, uint32_t buyer, uint8_t step, int64_t due_us)
{
    r->run.buyers[buyer].step = step;
    timer_add(r, buyer, due_us);
}

/* Retry `step` later: after Retry-After when the server gave one, else with backoff. */
static void retry_later(struct rush *r, uint32_t buyer, uint8_t step, uint32_t retry_after_s)
{
    struct rush_buyer *b = &r->run.buyers[buyer];
    int64_t delay_us = RETRY_BASE_US << (b->attempts < 7 ? b->attempts : 7);
    if (delay_us > RETRY_MAX_US)
        delay_us = RETRY_MAX_US;
    if (retry_after_s > 0)
        delay_us = (int64_t)retry_after_s * 1000000;
    if (b->attempts < UINT8_MAX)
        b->attempts++;
    r->run.retries++;
    schedule(r, buyer, step, clock_monotonic_us() + delay_us);
}

/* ---- a buyer's status ---------------------------------------------------------------------- */

static void finish_buyer(struct rush *r)
{
    assert(r->unfinished > 0);
    r->unfinished--;
}

static void set_status(struct rush *r, struct rush_buyer *b, uint8_t status)
{
    r->run.status_counts[b->status]--;
    r->run.status_counts[status]++;
    b->status = status;
}

/* Gives up on a buyer after answers that retrying cannot change. */
static void lose_buyer(struct rush *r, uint32_t buyer, int http_status)
{
    struct rush_buyer *b = &r->run.buyers[buyer];
    fprintf(stderr, "catraca rush: b%u: giving up after HTTP %d\n", buyer, http_status);
    if (b->status == RUSH_STATUS_UNSENT) {
        set_status(r, b, RUSH_STATUS_REFUSED);
        b->refused_http = (uint16_t)http_status;
    } else {
        b->flags |= RUSH_BUYER_LOST;
    }
    finish_buyer(r);
}

struct purchase_view {
    const char *id;
    const char *seq;
    uint8_t status;
    uint8_t reason;
    int64_t hold_expires_ms; /* RUSH_TIME_UNKNOWN when absent */
    uint32_t position;       /* waiting: place in line; 0 when absent */
};

static int64_t time_parse_ms(const char *text)
{
    struct tm tm = {0};
    int milliseconds = 0;
    if (sscanf(text, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &milliseconds) != 7)
        return RUSH_TIME_UNKNOWN;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + milliseconds;
}

/* Reads a purchase object of API.md. False when it is not one. */
static bool purchase_parse(const cJSON *json, struct purchase_view *out)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(json, "id");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(json, "seq");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(json, "status");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(json, "reason");
    const cJSON *expires = cJSON_GetObjectItemCaseSensitive(json, "hold_expires_at");
    if (!cJSON_IsString(id) || !cJSON_IsString(seq) || !cJSON_IsString(status))
        return false;
    out->id = id->valuestring;
    out->seq = seq->valuestring;
    out->status = status_parse(status->valuestring);
    out->reason = cJSON_IsString(reason) ? reason_parse(reason->valuestring) : RUSH_REASON_NONE;
    out->hold_expires_ms =
        cJSON_IsString(expires) ? time_parse_ms(expires->valuestring) : RUSH_TIME_UNKNOWN;
    const cJSON *position = cJSON_GetObjectItemCaseSensitive(json, "position");
    out->position =
        cJSON_IsNumber(position) && position->valuedouble >= 0 && position->valuedouble < 4e9
            ? (uint32_t)position->valuedouble
            : 0;
    return out->status != RUSH_STATUS_UNSENT &&
           strlen(out->id) < sizeof(((struct rush_buyer *)0)->purchase_id);
}

/* The first decision: latency, and the moment a category ran out of stock. */
static void note_first_decision(struct rush *r, struct rush_buyer *b, const struct purchase_view *p,
                                int64_t now_us)
{
    b->flags |= RUSH_BUYER_DECIDED;
    r->run.decided++;
    r->run.last_decided_us = now_us;
    histogram_record(&r->run.decision_latency_us, (uint64_t)(now_us - b->accepted_us));
    struct rush_category *category = &r->run.categories[b->category];
    bool is_out_of_stock =
        p->status == RUSH_STATUS_WAITING ||
        (p->status == RUSH_STATUS_REJECTED &&
         (p->reason == RUSH_REASON_SOLD_OUT || p->reason == RUSH_REASON_LINE_FULL));
    if (is_out_of_stock && category->stock_out_us == 0)
        category->stock_out_us = now_us;
}

/* After a hold is seen: pay, cancel or let it expire, as the buyer's plan says. */
static void plan_hold(struct rush *r, uint32_t buyer, int64_t now_us)
{
    struct rush_buyer *b = &r->run.buyers[buyer];
    enum plan plan = buyer_plan(r, buyer);
    if ((b->flags & RUSH_BUYER_ACTED) == 0 && plan != PLAN_EXPIRE) {
        schedule(r, buyer, plan == PLAN_CONFIRM ? STEP_CONFIRM : STEP_CANCEL,
                 now_us + buyer_pay_delay_us(r, buyer));
        return;
    }
    /* Look again when it should have expired (at most a hold from now: clocks may differ). */
    int64_t remaining_ms = b->hold_expires_ms == RUSH_TIME_UNKNOWN
                               ? r->run.hold_ms
                               : b->hold_expires_ms - clock_wall_ms();
    if (remaining_ms > r->run.hold_ms)
        remaining_ms = r->run.hold_ms;
    if (remaining_ms < 0)
        remaining_ms = 0;
    schedule(r, buyer, STEP_POLL, now_us + remaining_ms * 1000);
}

/* A waiting buyer reads its purchase again later, the later the farther back it is (above). */
static void recheck_waiting(struct rush *r, uint32_t buyer, uint32_t position, int64_t now_us)
{
    int64_t delay_ms = (int64_t)position * WAITING_RECHECK_MS_PER_PLACE;
    if (delay_ms < WAITING_RECHECK_MS_MIN)
        delay_ms = WAITING_RECHECK_MS_MIN;
    if (delay_ms > r->run.hold_ms / 2)
        delay_ms = r->run.hold_ms / 2 > WAITING_RECHECK_MS_MIN ? r->run.hold_ms / 2
                                                               : WAITING_RECHECK_MS_MIN;
    r->run.buyers[buyer].flags |= RUSH_BUYER_SHORT_POLL;
    schedule(r, buyer, STEP_POLL, now_us + delay_ms * 1000);
}

/* What the server said about a buyer's purchase: record it and choose the next step. */
static void observe(struct rush *r, uint32_t buyer, const struct purchase_view *p)
{
    struct rush_buyer *b = &r->run.buyers[buyer];
    int64_t now_us = clock_monotonic_us();
    b->attempts = 0;
    b->flags &= (uint8_t)~RUSH_BUYER_SHORT_POLL;
    if (p->status != RUSH_STATUS_QUEUED && (b->flags & RUSH_BUYER_DECIDED) == 0)
        note_first_decision(r, b, p, now_us);
    if (p->status >= RUSH_STATUS_HELD && p->status <= RUSH_STATUS_CANCELLED)
        b->flags |= RUSH_BUYER_GRANTED;
    if (p->status == RUSH_STATUS_HELD && p->hold_expires_ms != RUSH_TIME_UNKNOWN) {
        b->hold_expires_ms = p->hold_expires_ms;
        if (b->grant_ms == RUSH_TIME_UNKNOWN)
            b->grant_ms = p->hold_expires_ms - r->run.hold_ms;
    }
    if (p->status == RUSH_STATUS_CONFIRMED && b->status != RUSH_STATUS_CONFIRMED)
        r->run.categories[b->category].confirmed_seen++;
    b->reason = p->status == RUSH_STATUS_REJECTED ? p->reason : RUSH_REASON_NONE;
    set_status(r, b, p->status);
    if (is_final_status(p->status)) {
        finish_buyer(r);
        r->run.last_final_us = now_us;
    } else if (p->status == RUSH_STATUS_HELD)
        plan_hold(r, buyer, now_us);
    else if (p->status == RUSH_STATUS_WAITING)
        recheck_waiting(r, buyer, p->position, now_us);
    else
        queue_poll(r, buyer);
}

/* ---- requests ------------------------------------------------------------------------------ */

static int mint_token(const struct rush *r, const char *subject, const char *role,
                      char out[TOKEN_MAX])
{
    return jwt_sign(r->options.secret, r->options.secret_length, subject, role, r->token_expires_s,
                    out, TOKEN_MAX) < 0
               ? -1
               : 0;
}

static int format_demo_token(struct rush *r, struct rush_connection *c, const char *customer,
                             const char *role)
{
    char body[160];
    snprintf(body, sizeof(body), "{\"customer\":\"%s\",\"role\":\"%s\"}", customer, role);
    return rush_connection_format(c, &r->server, "POST", "/v1/demo/token", NULL, NULL, NULL, body);
}

static int format_purchase(struct rush *r, struct rush_connection *c, uint32_t buyer,
                           const char *token)
{
    char path[128], key[48], body[96];
    snprintf(path, sizeof(path), "/v1/events/%s/purchases", r->options.event);
    snprintf(key, sizeof(key), "%s%u", r->key_prefix, buyer);
    snprintf(body, sizeof(body), "{\"category\":\"%s\",\"quantity\":1}",
             r->run.categories[r->run.buyers[buyer].category].id);
    return rush_connection_format(c, &r->server, "POST", path, token, "Idempotency-Key", key, body);
}

static int format_cancel(struct rush *r, struct rush_connection *c, uint32_t buyer,
                         const char *token)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/purchases/%s", r->run.buyers[buyer].purchase_id);
    return rush_connection_format(c, &r->server, "DELETE", path, token, NULL, NULL, NULL);
}

/*
 * Formats the request for a buyer's step into c->out and says which kind it is; with --demo a
 * purchase or a cancel first fetches a token. 0, or -1 when it does not fit (*kind unset).
 */
static int format_step(struct rush *r, struct rush_connection *c, uint32_t buyer, uint8_t step,
                       uint8_t *kind)
{
    const struct rush_buyer *b = &r->run.buyers[buyer];
    char customer[16], token[TOKEN_MAX], path[128], body[96];
    snprintf(customer, sizeof(customer), "b%u", buyer);
    bool needs_buyer_token = step == STEP_PURCHASE || step == STEP_CANCEL;
    if (needs_buyer_token && r->options.is_demo) {
        *kind = step == STEP_PURCHASE ? REQUEST_TOKEN_FOR_PURCHASE : REQUEST_TOKEN_FOR_CANCEL;
        return format_demo_token(r, c, customer, "buyer");
    }
    if (needs_buyer_token && mint_token(r, customer, "buyer", token) != 0)
        return -1;
    switch (step) {
    case STEP_PURCHASE:
        *kind = REQUEST_PURCHASE;
        return format_purchase(r, c, buyer, token);
    case STEP_CANCEL:
        *kind = REQUEST_CANCEL;
        return format_cancel(r, c, buyer, token);
    case STEP_CONFIRM:
        *kind = REQUEST_CONFIRM;
        snprintf(path, sizeof(path), "/v1/purchases/%s/confirm", b->purchase_id);
        snprintf(body, sizeof(body), "{\"payment_ref\":\"rush-%s\"}", b->purchase_id);
        return rush_connection_format(c, &r->server, "POST", path, r->payments_token, NULL, NULL,
                                      body);
    default:
        *kind = REQUEST_POLL;
        snprintf(path, sizeof(path), "/v1/purchases/%s?wait=%d&status=%s", b->purchase_id,
                 (b->flags & RUSH_BUYER_SHORT_POLL) ? 0 : LONG_POLL_WAIT_S,
                 rush_status_name(b->status));
        return rush_connection_format(c, &r->server, "GET", path, r->payments_token, NULL, NULL,
                                      NULL);
    }
}

static uint8_t step_of(uint8_t kind)
{
    switch (kind) {
    case REQUEST_TOKEN_FOR_PURCHASE:
    case REQUEST_PURCHASE:
        return STEP_PURCHASE;
    case REQUEST_CONFIRM:
        return STEP_CONFIRM;
    case REQUEST_TOKEN_FOR_CANCEL:
    case REQUEST_CANCEL:
        return STEP_CANCEL;
    default:
        return STEP_POLL;
    }
}

static void idle_push(struct rush *r, struct rush_connection *c)
{
    if (c->state == RUSH_CONNECTION_IDLE && !r->is_in_idle[c->index]) {
        r->is_in_idle[c->index] = true;
        r->idle[r->idle_count++] = c->index;
    }
}

/* The connection last listed as idle; NULL when none. Listed ones may have closed since. */
static struct rush_connection *idle_pop(struct rush *r)
{
    if (r->idle_count == 0)
        return NULL;
    uint32_t index = r->idle[--r->idle_count];
    r->is_in_idle[index] = false;
    return &r->connections[index];
}

/* Takes a request's bookkeeping off a connection: its answer came, or it failed. */
static uint32_t request_done(struct rush *r, struct rush_connection *c)
{
    uint32_t buyer = c->buyer;
    assert(c->kind != REQUEST_NONE);
    assert(buyer < r->options.buyers);
    assert(r->in_flight > 0);
    r->in_flight--;
    if (c->is_long_poll) {
        r->long_polls--;
        if (r->run.buyers[buyer].status != RUSH_STATUS_QUEUED)
            r->follow_polls--;
    }
    c->buyer = NO_BUYER;
    c->kind = REQUEST_NONE;
    c->is_long_poll = false;
    return buyer;
}

/*
 * c is CLOSED now; its request, if any, is tried again later. An idle connection the server
 * closed (its keep-alive time-out) is no error, also one that never carried a request: at a
 * modest --rate the idle stack's bottom connections wait longer than the server keeps them.
 */
static void on_connection_lost(struct rush *r, struct rush_connection *c, bool was_connecting)
{
    bool has_request = c->kind != REQUEST_NONE;
    r->closed_count++;
    if (has_request || was_connecting)
        r->run.transport_errors++;
    if (was_connecting) /* refused: the server is not (yet) there */
        r->next_reopen_us = clock_monotonic_us() + REOPEN_BACKOFF_US;
    if (has_request) {
        uint8_t kind = c->kind;
        uint32_t buyer = request_done(r, c);
        retry_later(r, buyer, step_of(kind), 0);
    }
}

/* Sends c->out, a request of this kind for buyer, which the caller formatted. */
static void send_request(struct rush *r, struct rush_connection *c, uint32_t buyer, uint8_t kind)
{
    assert(c->kind == REQUEST_NONE);
    assert(kind != REQUEST_NONE);
    int64_t now_us = clock_monotonic_us();
    c->kind = kind;
    c->buyer = buyer;
    c->sent_us = now_us;
    c->is_long_poll =
        c->kind == REQUEST_POLL && (r->run.buyers[buyer].flags & RUSH_BUYER_SHORT_POLL) == 0;
    r->in_flight++;
    r->run.requests_sent++;
    if (c->is_long_poll) {
        r->long_polls++;
        if (r->run.buyers[buyer].status != RUSH_STATUS_QUEUED)
            r->follow_polls++;
    }
    if (c->kind == REQUEST_PURCHASE && r->run.buyers[buyer].first_sent_us == 0)
        r->run.buyers[buyer].first_sent_us = now_us;
    if (rush_connection_send(c, r->epoll_fd) == RUSH_IO_ERROR)
        on_connection_lost(r, c, false);
}

static void start_step(struct rush *r, struct rush_connection *c, uint32_t buyer, uint8_t step)
{
    uint8_t kind = REQUEST_NONE;
    if (format_step(r, c, buyer, step, &kind) != 0) {
        fprintf(stderr, "catraca rush: b%u: the request does not fit; giving up\n", buyer);
        lose_buyer(r, buyer, 0);
        idle_push(r, c);
        return;
    }
    send_request(r, c, buyer, kind);
}

/* ---- answers ------------------------------------------------------------------------------- */

static bool is_retryable(int http_status)
{
    return http_status == 429 || http_status >= 500;
}

/* An answer that is neither the expected one nor retryable: retry a few times, then lose. */
static void on_unexpected(struct rush *r, uint32_t buyer, uint8_t step, int http_status)
{
    if (r->run.buyers[buyer].attempts >= ATTEMPTS_MAX)
        lose_buyer(r, buyer, http_status);
    else
        retry_later(r, buyer, step, 0);
}

static void seq_parse(struct rush_buyer *b, const char *seq)
{
    char *end = NULL;
    b->seq_major = strtoull(seq, &end, 10);
    b->seq_minor = (end && *end == '-') ? strtoull(end + 1, NULL, 10) : 0;
}

static void on_purchase_answer(struct rush *r, struct rush_connection *c, uint32_t buyer,
                               const cJSON *json)
{
    struct rush_buyer *b = &r->run.buyers[buyer];
    struct purchase_view p;
    if (c->status == 202 || c->status == 200) {
        if (!purchase_parse(json, &p)) {
            on_unexpected(r, buyer, STEP_PURCHASE, c->status);
            return;
        }
        int64_t now_us = clock_monotonic_us();
        snprintf(b->purchase_id, sizeof(b->purchase_id), "%s", p.id);
        seq_parse(b, p.seq);
        b->accepted_us = now_us;
        r->run.last_accepted_us = now_us;
        histogram_record(&r->run.accept_latency_us, (uint64_t)(now_us - accept_from_us(r, buyer)));
        set_status(r, b, RUSH_STATUS_QUEUED);
        observe(r, buyer, &p);
    } else if (is_retryable(c->status)) {
        retry_later(r, buyer, STEP_PURCHASE, c->retry_after_s);
    } else {
        set_status(r, b, RUSH_STATUS_REFUSED);
        b->refused_http = (uint16_t)c->status;
        finish_buyer(r);
    }
}

/* 200 with the purchase, or (confirm and cancel) 409 with it under "purchase". */
static void on_purchase_state(struct rush *r, const struct rush_connection *c, uint8_t kind,
                              uint32_t buyer, const cJSON *json)
{
    uint8_t step = step_of(kind);
    if (c->status == 409 && step != STEP_POLL) {
        if (step == STEP_CONFIRM)
            r->run.confirm_conflicts++;
        else
            r->run.cancel_conflicts++;
        json = cJSON_GetObjectItemCaseSensitive(json, "purchase");
    }
    struct purchase_view p;
    if ((c->status == 200 || c->status == 409) && purchase_parse(json, &p)) {
        if (step != STEP_POLL)
            r->run.buyers[buyer].flags |= RUSH_BUYER_ACTED;
        observe(r, buyer, &p);
    } else if (is_retryable(c->status)) {
        retry_later(r, buyer, step, c->retry_after_s);
    } else {
        on_unexpected(r, buyer, step, c->status);
    }
}

/* --demo: the buyer's token arrived; its purchase or cancel goes out on the same connection. */
static void on_token_answer(struct rush *r, struct rush_connection *c, uint8_t kind, uint32_t buyer,
                            const cJSON *json)
{
    uint8_t step = step_of(kind);
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "token");
    if (c->status != 200 || !cJSON_IsString(token) || strlen(token->valuestring) >= TOKEN_MAX) {
        if (is_retryable(c->status))
            retry_later(r, buyer, step, c->retry_after_s);
        else
            on_unexpected(r, buyer, step, c->status);
        return;
    }
    if (c->state != RUSH_CONNECTION_IDLE) { /* the server closed it: fetch again later */
        retry_later(r, buyer, step, 0);
        return;
    }
    int error = step == STEP_PURCHASE ? format_purchase(r, c, buyer, token->valuestring)
                                      : format_cancel(r, c, buyer, token->valuestring);
    if (error != 0)
        lose_buyer(r, buyer, 0);
    else
        send_request(r, c, buyer, step == STEP_PURCHASE ? REQUEST_PURCHASE : REQUEST_CANCEL);
}

static void count_answer(struct rush *r, int http_status)
{
    r->run.responses++;
    if (http_status >= 500)
        r->run.responses_5xx++;
    if (http_status == 503)
        r->run.responses_503++;
    if (http_status == 429)
        r->run.responses_429++;
}

static void on_answer(struct rush *r, struct rush_connection *c)
{
    count_answer(r, c->status);
    uint8_t kind = c->kind;
    uint32_t buyer = request_done(r, c);
    cJSON *json = cJSON_ParseWithLength(c->body, c->body_length);
    if (kind == REQUEST_PURCHASE)
        on_purchase_answer(r, c, buyer, json);
    else if (kind == REQUEST_TOKEN_FOR_PURCHASE || kind == REQUEST_TOKEN_FOR_CANCEL)
        on_token_answer(r, c, kind, buyer, json);
    else
        on_purchase_state(r, c, kind, buyer, json);
    cJSON_Delete(json);
    if (c->kind == REQUEST_NONE) /* not already carrying the purchase or cancel a token was for */
        idle_push(r, c);
}

static void on_event(struct rush *r, uint32_t index, uint32_t events)
{
    struct rush_connection *c = &r->connections[index];
    bool was_connecting = c->state == RUSH_CONNECTION_CONNECTING;
    enum rush_io io = rush_connection_on_event(c, r->epoll_fd, events);
    if (io == RUSH_IO_CONNECTED) {
        idle_push(r, c);
    } else if (io == RUSH_IO_RESPONSE) {
        bool is_closed = c->state == RUSH_CONNECTION_CLOSED; /* "Connection: close" */
        on_answer(r, c);
        if (is_closed)
            r->closed_count++;
    } else if (io == RUSH_IO_ERROR) {
        on_connection_lost(r, c, was_connecting);
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void reopen_connections(struct rush *r, int64_t now_us)
{
    if (r->closed_count == 0 || now_us < r->next_reopen_us)
        return;
    r->next_reopen_us = now_us + REOPEN_INTERVAL_US;
    for (uint32_t i = 0; i < r->connection_count && r->closed_count > 0; i++) {
        struct rush_connection *c = &r->connections[i];
        if (c->state != RUSH_CONNECTION_CLOSED)
            continue;
        if (rush_connection_open(c, &r->server, r->epoll_fd) != 0)
            break; /* out of descriptors, or no network: later */
        r->closed_count--;
        idle_push(r, c);
    }
}

static bool may_send_new(const struct rush *r, int64_t now_us)
{
    if (r->next_unsent >= r->options.buyers)
        return false;
    return r->options.rate_per_s <= 0 || now_us >= scheduled_us(r, r->next_unsent);
}

/* The next piece of work for a free connection, in priority order; NO_BUYER when none. */
static uint32_t next_work(struct rush *r, int64_t now_us, uint8_t *step)
{
    bool has_long_poll_room = r->long_polls < r->long_polls_max;
    if (r->ready.count > 0) {
        uint32_t buyer = queue_pop(r, &r->ready);
        *step = r->run.buyers[buyer].step;
        return buyer;
    }
    *step = STEP_POLL;
    if (r->first.count > 0 && has_long_poll_room)
        return queue_pop(r, &r->first);
    if (r->follow.count > 0 && has_long_poll_room && r->follow_polls < r->follow_polls_max)
        return queue_pop(r, &r->follow);
    if (may_send_new(r, now_us)) {
        *step = STEP_PURCHASE;
        if (r->options.rate_per_s > 0)
            histogram_record(&r->run.send_lag_us,
                             (uint64_t)(clock_monotonic_us() - scheduled_us(r, r->next_unsent)));
        return r->next_unsent++;
    }
    return NO_BUYER;
}

static void dispatch(struct rush *r, int64_t now_us)
{
    while (r->idle_count > 0) {
        struct rush_connection *c = &r->connections[r->idle[r->idle_count - 1]];
        if (c->state != RUSH_CONNECTION_IDLE) { /* closed since it was listed */
            idle_pop(r);
            continue;
        }
        uint8_t step = 0;
        uint32_t buyer = next_work(r, now_us, &step);
        if (buyer == NO_BUYER)
            return;
        idle_pop(r);
        start_step(r, c, buyer, step);
    }
}

static uint64_t accepted_count(const struct rush_run *run)
{
    uint64_t total = 0;
    for (uint8_t s = RUSH_STATUS_QUEUED; s <= RUSH_STATUS_REJECTED; s++)
        total += run->status_counts[s];
    return total;
}

/*
 * The counters against the connections they count: each one carries a request of ours
 * exactly when it has a kind, and then it is busy. O(connections): run with each progress
 * line, in builds with assertions.
 */
static void connections_validate(const struct rush *r)
{
#ifndef NDEBUG
    uint32_t carrying = 0, long_polls = 0;
    for (uint32_t i = 0; i < r->connection_count; i++) {
        const struct rush_connection *c = &r->connections[i];
        assert(c->kind == REQUEST_NONE || c->state == RUSH_CONNECTION_BUSY);
        assert(c->kind != REQUEST_NONE || !c->is_long_poll);
        carrying += c->kind != REQUEST_NONE;
        long_polls += c->is_long_poll;
    }
    assert(carrying == r->in_flight);
    assert(long_polls == r->long_polls);
    assert(r->follow_polls <= r->long_polls);
#else
    (void)r;
#endif
}

static void progress(struct rush *r, int64_t now_us, bool is_last)
{
    if (now_us < r->next_progress_us && !is_last)
        return;
    connections_validate(r);
    const uint64_t *n = r->run.status_counts;
    double interval_s = (double)(now_us - r->progress_at_us) / 1e6;
    double rate =
        interval_s > 0 ? (double)(r->run.responses - r->progress_responses) / interval_s : 0;
    fprintf(stderr,
            "%srush %6.1fs sent %u accepted %llu queued %llu waiting %llu held %llu sold %llu "
            "rejected %llu final %llu | %.0f req/s%s",
            r->is_tty ? "\r" : "", (double)(now_us - r->run.started_us) / 1e6, r->next_unsent,
            (unsigned long long)accepted_count(&r->run), (unsigned long long)n[RUSH_STATUS_QUEUED],
            (unsigned long long)n[RUSH_STATUS_WAITING], (unsigned long long)n[RUSH_STATUS_HELD],
            (unsigned long long)n[RUSH_STATUS_CONFIRMED],
            (unsigned long long)n[RUSH_STATUS_REJECTED],
            (unsigned long long)(n[RUSH_STATUS_CONFIRMED] + n[RUSH_STATUS_EXPIRED] +
                                 n[RUSH_STATUS_CANCELLED] + n[RUSH_STATUS_REJECTED]),
            rate, r->is_tty ? (is_last ? "\033[K\n" : "\033[K") : "\n");
    r->progress_at_us = now_us;
    r->progress_responses = r->run.responses;
    r->next_progress_us = now_us + (r->is_tty ? 1000000 : 2000000);
}

static int wake_timeout_ms(const struct rush *r, int64_t now_us)
{
    int64_t wake_us = now_us + WAKE_MAX_MS * 1000;
    if (r->timer_count > 0 && r->timers[0].due_us < wake_us)
        wake_us = r->timers[0].due_us;
    if (r->ready.count > 0 && r->idle_count > 0)
        wake_us = now_us;
    if (r->options.rate_per_s > 0 && r->next_unsent < r->options.buyers) {
        int64_t slot_us = scheduled_us(r, r->next_unsent);
        if (slot_us < wake_us)
            wake_us = slot_us;
    }
    return wake_us <= now_us ? 0 : (int)((wake_us - now_us + 999) / 1000);
}

static void run_loop(struct rush *r)
{
    struct epoll_event events[EPOLL_EVENTS_MAX];
    for (;;) {
        int64_t now_us = clock_monotonic_us();
        if (r->next_unsent >= r->options.buyers && r->unfinished == 0)
            break;
        if (now_us >= r->deadline_us) {
            r->run.is_deadline_hit = true;
            break;
        }
        fire_timers(r, now_us);
        reopen_connections(r, now_us);
        dispatch(r, now_us);
        progress(r, now_us, false);
        int n = epoll_wait(r->epoll_fd, events, EPOLL_EVENTS_MAX, wake_timeout_ms(r, now_us));
        for (int i = 0; i < n; i++)
            on_event(r, events[i].data.u32, events[i].events);
    }
    r->run.ended_us = clock_monotonic_us();
    progress(r, r->run.ended_us, true);
}

/* ---- set-up and tear-down ------------------------------------------------------------------ */

/* One blocking request on a private connection; the answer's JSON (caller frees) or NULL. */
static cJSON *request_sync(struct rush *r, struct rush_connection *c, const char *method,
                           const char *path, const char *token, const char *body, int *status)
{
    *status = 0;
    if (rush_connection_format(c, &r->server, method, path, token, NULL, NULL, body) != 0)
        return NULL;
    /*
     * A kept-alive connection may have been closed by the server meanwhile, or the server
     * may be (re)starting: new connections, for SETUP_RETRY_MS at most.
     */
    enum rush_io io = rush_connection_roundtrip(c, &r->server, SETUP_TIMEOUT_MS);
    for (int64_t waited_ms = 0; io != RUSH_IO_RESPONSE && waited_ms < SETUP_RETRY_MS;
         waited_ms += 200) {
        usleep(200 * 1000);
        io = rush_connection_roundtrip(c, &r->server, SETUP_TIMEOUT_MS);
    }
    if (io != RUSH_IO_RESPONSE) {
        fprintf(stderr, "catraca rush: %s %s: no answer from %s\n", method, path, r->options.url);
        return NULL;
    }
    *status = c->status;
    return cJSON_ParseWithLength(c->body, c->body_length);
}

static int fetch_demo_token(struct rush *r, struct rush_connection *c, const char *customer,
                            const char *role, char out[TOKEN_MAX])
{
    char body[160];
    int status = 0;
    snprintf(body, sizeof(body), "{\"customer\":\"%s\",\"role\":\"%s\"}", customer, role);
    cJSON *json = request_sync(r, c, "POST", "/v1/demo/token", NULL, body, &status);
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(json, "token");
    int result = -1;
    if (status == 200 && cJSON_IsString(token) && strlen(token->valuestring) < TOKEN_MAX) {
        memcpy(out, token->valuestring, strlen(token->valuestring) + 1);
        result = 0;
    } else if (json != NULL || status != 0) {
        fprintf(stderr,
                "catraca rush: POST /v1/demo/token answered %d (is the server in --demo?)\n",
                status);
    }
    cJSON_Delete(json);
    return result;
}

static int make_staff_tokens(struct rush *r, struct rush_connection *c)
{
    if (!r->options.is_demo)
        return mint_token(r, "rush-admin", "admin", r->admin_token) != 0 ||
                       mint_token(r, "rush-payments", "payments", r->payments_token) != 0
                   ? -1
                   : 0;
    if (fetch_demo_token(r, c, "rush-admin", "admin", r->admin_token) != 0 ||
        fetch_demo_token(r, c, "rush-payments", "payments", r->payments_token) != 0)
        return -1;
    return 0;
}

static void event_body(const struct rush *r, char *out, size_t size)
{
    const struct rush_options *o = &r->options;
    int n = snprintf(out, size,
                     "{\"id\":\"%s\",\"name\":\"catraca rush, seed %llu\",\"hold_seconds\":%u,"
                     "\"per_customer_limit\":%u,\"state\":\"open\",%s%s%s\"categories\":[",
                     o->event, (unsigned long long)o->seed, o->hold_seconds, o->per_customer_limit,
                     o->line_policy[0] ? "\"line_policy\":\"" : "", o->line_policy,
                     o->line_policy[0] ? "\"," : "");
    for (uint32_t i = 0; i < r->run.category_count && n > 0 && (size_t)n < size; i++)
        n += snprintf(out + n, size - (size_t)n,
                      "%s{\"id\":\"%s\",\"name\":\"Category %u\",\"price_cents\":%u,"
                      "\"capacity\":%u}",
                      i ? "," : "", r->run.categories[i].id, i, 1000 * (i + 1),
                      r->run.categories[i].capacity_asked);
    if (n > 0 && (size_t)n < size)
        snprintf(out + n, size - (size_t)n, "]}");
}

static int create_event(struct rush *r, struct rush_connection *c)
{
    char body[2400];
    event_body(r, body, sizeof(body));
    int status = 0;
    cJSON *json = request_sync(r, c, "POST", "/v1/events", r->admin_token, body, &status);
    const cJSON *hold = cJSON_GetObjectItemCaseSensitive(json, "hold_seconds");
    int result = -1;
    if ((status == 201 || status == 200) && cJSON_IsNumber(hold)) {
        r->run.hold_ms = (int64_t)hold->valuedouble * 1000;
        result = 0;
        if (status == 200)
            fprintf(stderr,
                    "catraca rush: event %s already existed with this definition; its "
                    "earlier purchases are answered again (same Idempotency-Keys)\n",
                    r->options.event);
    } else if (status == 409) {
        fprintf(stderr,
                "catraca rush: event %s exists with another definition: choose "
                "another --event or --seed\n",
                r->options.event);
    } else if (status != 0) {
        fprintf(stderr, "catraca rush: POST /v1/events answered %d: %s\n", status, c->body);
    }
    cJSON_Delete(json);
    return result;
}

static void read_back_category(struct rush *r, const cJSON *item)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
    for (uint32_t i = 0; cJSON_IsString(id) && i < r->run.category_count; i++) {
        struct rush_category *category = &r->run.categories[i];
        if (strcmp(category->id, id->valuestring) != 0)
            continue;
        const char *names[] = {"capacity", "available", "held", "sold", "waiting"};
        uint32_t *fields[] = {&category->capacity, &category->available, &category->held,
                              &category->sold, &category->waiting};
        category->has_readback = true;
        for (size_t f = 0; f < 5; f++) {
            const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, names[f]);
            category->has_readback = category->has_readback && cJSON_IsNumber(value);
            *fields[f] = cJSON_IsNumber(value) ? (uint32_t)value->valuedouble : 0;
        }
    }
}

/* GET /v1/events/{id} after the run: what the server says was sold. */
static void read_back_event(struct rush *r, struct rush_connection *c)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/events/%s", r->options.event);
    int status = 0;
    cJSON *json = request_sync(r, c, "GET", path, NULL, NULL, &status);
    const cJSON *categories = cJSON_GetObjectItemCaseSensitive(json, "categories");
    const cJSON *queue = cJSON_GetObjectItemCaseSensitive(json, "queue");
    const cJSON *pending = cJSON_GetObjectItemCaseSensitive(queue, "pending");
    const cJSON *item = NULL;
    if (status == 200 && cJSON_IsArray(categories)) {
        r->run.has_event_readback = true;
        cJSON_ArrayForEach(item, categories) read_back_category(r, item);
        r->run.queue_pending = cJSON_IsNumber(pending) ? (uint64_t)pending->valuedouble : 0;
    }
    cJSON_Delete(json);
}

/* FNV-1a of the event id: Idempotency-Keys are scoped per customer, not per event. */
static void make_key_prefix(struct rush *r)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const char *p = r->options.event; *p; p++)
        hash = (hash ^ (uint8_t)*p) * 0x100000001b3ull;
    snprintf(r->key_prefix, sizeof(r->key_prefix), "rush-%016llx-", (unsigned long long)hash);
}

static void raise_descriptor_limit(uint32_t wanted)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted)
        return;
    limit.rlim_cur = wanted < limit.rlim_max ? wanted : limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
}

/* Allocates everything the run needs, once. 0 or -1. */
static int rush_allocate(struct rush *r)
{
    uint32_t n = r->options.connections;
    r->connection_count = n;
    r->connections = calloc(n, sizeof(*r->connections));
    r->idle = calloc(n, sizeof(*r->idle));
    r->is_in_idle = calloc(n, sizeof(*r->is_in_idle));
    r->run.buyers =
        calloc(r->options.is_healthz_only ? 1 : r->options.buyers, sizeof(*r->run.buyers));
    r->timers = calloc(r->options.is_healthz_only ? 1 : r->options.buyers, sizeof(*r->timers));
    if (!r->connections || !r->idle || !r->is_in_idle || !r->run.buyers || !r->timers)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        rush_connection_init(&r->connections[i], i);
    raise_descriptor_limit(n + 64);
    r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    return r->epoll_fd < 0 ? -1 : 0;
}

static void rush_free(struct rush *r)
{
    for (uint32_t i = 0; r->connections && i < r->connection_count; i++)
        rush_connection_close(&r->connections[i], r->epoll_fd);
    if (r->epoll_fd >= 0)
        close(r->epoll_fd);
    free(r->connections);
    free(r->idle);
    free(r->is_in_idle);
    free(r->run.buyers);
    free(r->timers);
}

static void init_buyers_and_categories(struct rush *r)
{
    const struct rush_options *o = &r->options;
    r->run.options = &r->options;
    r->run.category_count = o->categories;
    for (uint32_t i = 0; i < o->categories; i++) {
        snprintf(r->run.categories[i].id, sizeof(r->run.categories[i].id), "c%u", i);
        r->run.categories[i].capacity_asked =
            o->tickets / o->categories + (i < o->tickets % o->categories ? 1 : 0);
    }
    for (uint32_t i = 0; i < o->buyers; i++) {
        struct rush_buyer *b = &r->run.buyers[i];
        b->category = (uint8_t)(i % o->categories);
        b->grant_ms = RUSH_TIME_UNKNOWN;
        b->hold_expires_ms = RUSH_TIME_UNKNOWN;
        b->next = NO_BUYER;
    }
    r->run.status_counts[RUSH_STATUS_UNSENT] = o->buyers;
    r->unfinished = o->buyers;
    histogram_init(&r->run.accept_latency_us);
    histogram_init(&r->run.send_lag_us);
    histogram_init(&r->run.decision_latency_us);
}

/* Opens every connection and waits (up to 10 s) until at least one is up. */
static int open_connections(struct rush *r)
{
    for (uint32_t i = 0; i < r->connection_count; i++) {
        struct rush_connection *c = &r->connections[i];
        if (rush_connection_open(c, &r->server, r->epoll_fd) != 0)
            r->closed_count++;
        else
            idle_push(r, c);
    }
    struct epoll_event events[EPOLL_EVENTS_MAX];
    int64_t deadline_us = clock_monotonic_us() + 10000000;
    while (r->idle_count == 0 && clock_monotonic_us() < deadline_us) {
        int n = epoll_wait(r->epoll_fd, events, EPOLL_EVENTS_MAX, 100);
        for (int i = 0; i < n; i++)
            on_event(r, events[i].data.u32, events[i].events);
        reopen_connections(r, clock_monotonic_us());
    }
    return r->idle_count > 0 ? 0 : -1;
}

/* ---- --healthz-only ------------------------------------------------------------------------ */

static void healthz_send(struct rush *r, struct rush_connection *c, const char *request,
                         uint32_t length)
{
    rush_connection_set_request(c, request, length);
    c->sent_us = clock_monotonic_us();
    if (rush_connection_send(c, r->epoll_fd) == RUSH_IO_ERROR)
        r->closed_count++;
}

static int run_healthz(struct rush *r)
{
    char request[256];
    int length = snprintf(request, sizeof(request), "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n",
                          r->server.host_header);
    struct histogram latency_us;
    histogram_init(&latency_us);
    uint64_t answers = 0, failures = 0;
    struct epoll_event events[EPOLL_EVENTS_MAX];
    if (open_connections(r) != 0) {
        fprintf(stderr, "catraca rush: cannot connect to %s\n", r->options.url);
        return RUSH_EXIT_NOT_RUN;
    }
    int64_t started_us = clock_monotonic_us();
    int64_t end_us = started_us + (int64_t)r->options.healthz_seconds * 1000000;
    for (struct rush_connection *c = idle_pop(r); c != NULL; c = idle_pop(r))
        healthz_send(r, c, request, (uint32_t)length);
    for (int64_t now_us = started_us; now_us < end_us; now_us = clock_monotonic_us()) {
        int n = epoll_wait(r->epoll_fd, events, EPOLL_EVENTS_MAX, 10);
        for (int i = 0; i < n; i++) {
            struct rush_connection *c = &r->connections[events[i].data.u32];
            enum rush_io io = rush_connection_on_event(c, r->epoll_fd, events[i].events);
            if (io == RUSH_IO_RESPONSE) {
                answers += c->status == 200;
                failures += c->status != 200;
                histogram_record(&latency_us, (uint64_t)(clock_monotonic_us() - c->sent_us));
            }
            if (io == RUSH_IO_ERROR) {
                failures++;
                r->closed_count++;
            }
            if (io == RUSH_IO_RESPONSE || io == RUSH_IO_CONNECTED)
                idle_push(r, c);
        }
        if (r->closed_count > 0 && now_us >= r->next_reopen_us)
            reopen_connections(r, now_us);
        /* Every answer read first, then every request sent: fewer wake-ups on both sides. */
        for (struct rush_connection *c = idle_pop(r); c != NULL; c = idle_pop(r))
            if (c->state == RUSH_CONNECTION_IDLE)
                healthz_send(r, c, request, (uint32_t)length);
    }
    double seconds = (double)(clock_monotonic_us() - started_us) / 1e6;
    printf("healthz: %llu answers in %.2f s = %.0f req/s over %u connections, %llu failures, "
           "latency p50 %.3f ms p99 %.3f ms\n",
           (unsigned long long)answers, seconds, (double)answers / seconds, r->connection_count,
           (unsigned long long)failures, (double)histogram_percentile(&latency_us, 0.5) / 1000,
           (double)histogram_percentile(&latency_us, 0.99) / 1000);
    printf("{\"healthz_requests_per_s\":%.0f,\"answers\":%llu,\"failures\":%llu,\"seconds\":%.3f,"
           "\"connections\":%u}\n",
           (double)answers / seconds, (unsigned long long)answers, (unsigned long long)failures,
           seconds, r->connection_count);
    return failures == 0 ? RUSH_EXIT_PASSED : RUSH_EXIT_FAILED;
}

/* ---- the rehearsal ------------------------------------------------------------------------- */

static int report(struct rush *r)
{
    struct rush_report report;
    if (rush_report_check(&r->run, &report) != 0) {
        fprintf(stderr, "catraca rush: out of memory for the checks\n");
        return RUSH_EXIT_NOT_RUN;
    }
    rush_report_print(&r->run, &report, stdout);
    fflush(stdout);
    if (r->options.json_path[0] != '\0' &&
        rush_report_write_json(&r->run, &report, r->options.json_path) != 0)
        return RUSH_EXIT_NOT_RUN;
    return report.is_passed ? RUSH_EXIT_PASSED : RUSH_EXIT_FAILED;
}

static int run_rehearsal(struct rush *r)
{
    struct rush_connection setup;
    rush_connection_init(&setup, 0);
    r->token_expires_s = clock_wall_ms() / 1000 + r->options.max_seconds + 3600;
    init_buyers_and_categories(r);
    make_key_prefix(r);
    int error = make_staff_tokens(r, &setup) != 0 || create_event(r, &setup) != 0;
    rush_connection_close(&setup, -1); /* it would sit idle through the run */
    if (error)
        return RUSH_EXIT_NOT_RUN;
    if (open_connections(r) != 0) {
        fprintf(stderr, "catraca rush: cannot connect to %s\n", r->options.url);
        return RUSH_EXIT_NOT_RUN;
    }
    fprintf(stderr, "catraca rush: event %s, %u buyers, %u tickets, seed %llu\n", r->options.event,
            r->options.buyers, r->options.tickets, (unsigned long long)r->options.seed);
    r->run.started_us = clock_monotonic_us();
    r->progress_at_us = r->run.started_us;
    r->next_progress_us = r->run.started_us + (r->is_tty ? 1000000 : 2000000);
    r->deadline_us = r->run.started_us + (int64_t)r->options.max_seconds * 1000000;
    run_loop(r);
    for (uint32_t i = 0; i < r->connection_count; i++) /* abandon what is still parked */
        rush_connection_close(&r->connections[i], r->epoll_fd);
    read_back_event(r, &setup);
    rush_connection_close(&setup, -1);
    return report(r);
}

int rush_main(int argc, char **argv)
{
    static struct rush r; /* large: histograms, options; one per process */
    memset(&r, 0, sizeof(r));
    r.epoll_fd = -1;
    int parsed = rush_options_parse(&r.options, argc, argv);
    if (parsed != 0)
        return parsed > 0 ? RUSH_EXIT_PASSED : RUSH_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN);
    r.is_tty = isatty(STDERR_FILENO) == 1;
    r.long_polls_max = r.options.connections * 3 / 4 > 0 ? r.options.connections * 3 / 4 : 1;
    r.follow_polls_max = r.long_polls_max / 2 > 0 ? r.long_polls_max / 2 : 1;
    int result = RUSH_EXIT_NOT_RUN;
    if (rush_http_resolve(r.options.host, r.options.port, &r.server) != 0)
        return RUSH_EXIT_NOT_RUN;
    if (rush_allocate(&r) != 0)
        fprintf(stderr, "catraca rush: out of memory or descriptors for %u buyers\n",
                r.options.buyers);
    else
        result = r.options.is_healthz_only ? run_healthz(&r) : run_rehearsal(&r);
    rush_free(&r);
    return result;
}
