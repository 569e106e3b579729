/*
 * api_internal.h - what the files of the API layer share (SQLite's btreeInt.h
 * beside btree.h): the struct api, a parked request, a routed request, and
 * the few functions one file offers the others. Never included outside
 * src/gateway/api*.c; the public contract is api.h.
 *
 *   api.c            life cycle (start, drain, stop), answers, per-thread handles
 *   api_router.c     the route table: 404, 405 + Allow, HEAD, roles, 415; api_handle
 *   api_pending.c    parked requests, their deadlines, the responder thread
 *   api_events.c     /v1/events routes and the answers to event commands
 *   api_purchases.c  /v1/purchases routes and the answers to purchase commands
 *   api_ops.c        health, readiness, metrics, demo token, challenge
 *   api_pages.c      the buyer's page, the organizer's console, their assets (web/)
 *   api_console.c    what the pages read: config, event and stats streams, decisions
 */
#ifndef CATRACA_GATEWAY_API_INTERNAL_H
#define CATRACA_GATEWAY_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/api.h"
#include "gateway/api_json.h"
#include "gateway/appender.h"
#include "gateway/challenge.h"
#include "gateway/jwt.h"
#include "gateway/limits_batch.h"
#include "gateway/metrics.h"
#include "gateway/ratelimit.h"
#include "gateway/receipts.h"
#include "gateway/signer.h"
#include "gateway/recent.h"
#include "gateway/store_wait.h"
#include "gateway/token_cache.h"
#include "gateway/waiters.h"

#define API_HANDLES_MAX 256
#define API_KNOWN_EVENTS_MAX 64
/* Verified tokens remembered per HTTP thread: about 100 bytes each, 6.5 MB a thread. */
#define API_TOKEN_CACHE_SLOTS 65536
#define API_SEGMENTS_MAX 6
/* Entries of one event's log the receipts' tree holds (about 80 bytes each in memory). */
#define API_RECEIPT_TREE_LEAVES_MAX (UINT64_C(1) << 24)
#define API_RECEIPT_ROOM (RECEIPT_JSON_MAX + 16)
/* 202s waiting for their signature (~1 KiB each); beyond, the appender signs inline. */
#define API_SIGNER_QUEUE_MAX 4096

/* ---- parked requests (api_pending.c) ----------------------------------------------------- */

enum pending_kind {
    PENDING_PURCHASE,  /* waits for the append: 202 / 200 / 422 */
    PENDING_ANSWER,    /* waits for the append, then the engine's answer */
    PENDING_LONG_POLL, /* waits for a purchase's change */
    PENDING_STREAM,    /* SSE: every change until a final status */
    /* A read of a purchase another gateway may have taken (api_purchases.c): waits for the
     * store to know it, then answers (GET), long-polls, or appends the CANCEL or CONFIRM. Also
     * a keyed purchase's retry whose key the first request claimed (--limits-redis over
     * Kafka): 200 with the purchase once committed, else appended when the wait is over. */
    PENDING_STORE_WAIT,
};

/*
 * Over a log whose find_purchase knows only this process's purchases (log.h,
 * LOG_FLAG_KEYS_IN_PURCHASE_IDS), a read of an unknown id that may still be queued on another
 * gateway waits API_STORE_WAIT_MS for the store before its 404, parked (no event loop waits).
 * At most API_STORE_WAITS_MAX (and --max-waiters) wait at once per process (store_wait.h; each
 * holds one struct pending, about 1.2 KiB, for up to its wait): beyond, 503 + Retry-After.
 */
#define API_STORE_WAIT_MS 1000
#define API_STORE_WAITS_MAX 4096

struct admission; /* api_pending.c: a purchase's append, waiting for its shared limits */

/* A parked request. Only the responder thread answers it; others fill its inbox. */
struct pending {
    struct api *api;
    struct http_request *request;
    enum pending_kind kind;
    enum metrics_route route;
    int64_t started_us;
    atomic_int references;
    struct waiter waiter;
    /* request facts */
    uint8_t command_type;
    char event[CATRACA_ID_MAX + 1];
    uint64_t purchase_id;
    char customer[CATRACA_ID_MAX + 1];
    char category[CATRACA_ID_MAX + 1];
    uint32_t quantity;
    int64_t wait_ms; /* long-polls and streams: armed by the responder on first sight */
    /* A long-poll with ?status=S: the status (enum engine_status) a change must leave, so a
     * notification that leaves it as it was (a commit this gateway had already read from the
     * store, delivered late) does not answer early; -1: any notification answers. Set before
     * the waiter is registered, read-only after. */
    int answer_when_not_status;
    /* PENDING_STREAM: the state its last event showed; a notification of that same state (a
     * commit read from the store before its notification arrived) is not a change (API.md:
     * one event a change). */
    int stream_status;
    uint32_t stream_position;
    int64_t stream_updated_ms;
    /* A store-wait (PENDING_STORE_WAIT): what the request does once the store knows the
     * purchase; p->customer is the caller. Set before parking, read-only after. */
    uint8_t resume_command; /* 0: GET; ENGINE_COMMAND_CANCEL, _CONFIRM or _PURCHASE */
    bool resume_as_stream;  /* GET of the purchase's SSE stream (resume_command 0) */
    int64_t resume_wait_ms; /* GET ?wait=N, in ms: long-poll this long once found; 0: none */
    char resume_status[24]; /* GET ?status=S, or "" */
    bool is_caller_staff;   /* the caller may read another customer's purchase */
    /* A keyed purchase's retry (resume_command ENGINE_COMMAND_PURCHASE): its append, made if
     * the store does not know the purchase when the wait is over. Owned; freed with p. */
    struct admission *fallback;
    /* inbox: under api->queue_mutex */
    bool is_queued;
    struct pending *queue_next;
    bool has_append, has_row, has_answer;
    int append_error;
    struct log_append_item append;
    struct store_purchase row;
    struct store_answer answer;
    bool is_abandoned;      /* the client left (http_on_abandon) */
    bool has_store_verdict; /* the store-wait's read: store_error (0 with has_row) */
    int store_error;
    bool is_store_wait_over; /* resolved: a late store read must not touch the inbox */
    bool has_abandon_hook;   /* set once, before the hook can run */
    /* responder thread only */
    bool is_done;
    bool is_registered;
    int64_t deadline_ms;
    uint32_t heap_index;
};

/* ---- the service ------------------------------------------------------------------------- */

struct thread_handles {
    struct api *api;
    struct catraca_log log;
    struct catraca_store store;
    /* Events seen by this thread: they are never deleted and their limits never change,
     * so purchases skip a store read per request. */
    struct {
        char id[CATRACA_ID_MAX + 1];
        uint32_t per_customer_limit;
    } known[API_KNOWN_EVENTS_MAX];
    uint32_t known_count;
    struct token_cache tokens; /* bearer tokens this thread verified */
};

struct api {
    struct api_config config;
    struct appender *appender;
    /* set after start, read by other threads */
    _Atomic(struct worker *) worker;
    _Atomic(struct http_server *) http;
    struct waiters waiters;
    struct ratelimit customer_limit, ip_limit;
    struct limits_batch *limits_batch; /* distributed: shared limits in Redis; else NULL */
    struct challenge challenge;
    struct metrics metrics;
    atomic_uint_fast64_t purchase_counter;
    uint8_t purchase_id_key[16];   /* SipHash key of derived purchase ids (api_purchases.c) */
    struct recent recent;          /* slots == NULL: off */
    struct store_wait *store_wait; /* NULL unless the log knows only its own purchases */
    struct receipts *receipts;     /* NULL: off */
    struct signer *signer;         /* with receipts: signs them off the appender thread */
    struct console *console;       /* api_console.c's: streams, stats, decisions */
    struct rehearsal *rehearsal;   /* api_rehearse.c's: the demo's rush child */

    pthread_mutex_t handles_mutex;
    struct thread_handles *handles[API_HANDLES_MAX];
    uint32_t handle_count;

    /* responder */
    pthread_t responder;
    pthread_mutex_t queue_mutex;
    pthread_cond_t queue_wake;
    struct pending *queue_head, *queue_tail;
    bool is_stopping;
    struct pending **heap; /* by deadline; responder thread only */
    uint32_t heap_count, heap_capacity;
    struct catraca_store responder_store;
    /* stopping (api_drain): handlers refuse, the responder answers what is parked */
    atomic_bool is_draining;
    int64_t drain_started_ms; /* under queue_mutex */
    bool is_rekeyed;          /* responder only */
    atomic_uint parked_count; /* heap + queue, published by the responder */
};

/* One request on its way through a handler (an HTTP thread's stack). */
struct route_context {
    struct api *api;
    struct http_request *request;
    enum metrics_route route;
    int64_t started_us;
    const char *segments[API_SEGMENTS_MAX];
    size_t segment_count;
    struct jwt_claims claims; /* the caller, once authenticated (routes that need a token) */
};

/* ---- answers and handles (api.c) --------------------------------------------------------- */

/* Each answers c's request now and counts it under c->route in /metrics. */
void api_reply(struct route_context *c, int status, const char *content_type, const char *body,
               size_t length, const char *const *headers);
void api_reply_json(struct route_context *c, int status, const char *json,
                    const char *const *headers);
void api_reply_error(struct route_context *c, int status, const char *code, const char *message,
                     const char *const *headers);
/* Takes ownership of json. */
void api_reply_cjson(struct route_context *c, int status, cJSON *json, const char *const *headers);
/* The calling HTTP thread's read handles, opened on first use; NULL when they cannot be. */
struct thread_handles *api_handles_of(struct api *api);

/* ---- the router (api_router.c) ----------------------------------------------------------- */

/* True when the route table is well formed (known methods, patterns from the root, labels in
 * range, no row hidden by an earlier one). api_start asserts it. */
bool api_router_validate(void);

/* ---- parked requests (api_pending.c) ----------------------------------------------------- */

/* A parked request for c (one reference, the caller's), or NULL when out of memory. */
struct pending *api_pending_new(struct route_context *c, enum pending_kind kind);
void api_pending_release(struct pending *p);
/*
 * Appends command to the event's log on behalf of p, parks c's request until the
 * answer, and lets go of the caller's reference to p. Answers 400 or 503 itself.
 */
void api_pending_submit(struct route_context *c, struct pending *p,
                        const struct engine_command *command, const char *idempotency_key,
                        uint64_t request_hash);
/* A challenge_error for a purchase that carried no X-Challenge (challenge.h's are < 0). */
#define API_CHALLENGE_MISSING 1
/*
 * api_pending_submit for a purchase whose shared limits (distributed mode) are still to be
 * taken: check goes to api->limits_batch, and only what it allows goes on to the appender.
 * challenge_error: 0, API_CHALLENGE_MISSING, or the enum challenge_error the gateway found.
 */
void api_pending_submit_limited(struct route_context *c, struct pending *p,
                                const struct engine_command *command, const char *idempotency_key,
                                uint64_t request_hash, const struct limits_redis_check *check,
                                int challenge_error);
/* The limits batch's done callback (api_start passes it to limits_batch_start). */
void api_pending_on_limits(void *context, int error, enum limits_redis_outcome outcome,
                           int64_t retry_after_ms);
/* Parks c's request (long-poll or SSE) until row's purchase changes or wait_ms pass. */
void api_pending_park_for_changes(struct route_context *c, const struct store_purchase *row,
                                  enum pending_kind kind, int64_t wait_ms,
                                  int answer_when_not_status);
/*
 * Parks c's read of purchase_id (resume_command 0: GET, with ?wait= in ms and ?status= or
 * NULL, or its SSE stream when is_stream, for resume_wait_ms; or ENGINE_COMMAND_CANCEL /
 * _CONFIRM) until the store knows it: a commit notification or the store read after
 * API_STORE_WAIT_MS resumes it with api_purchases_resume, else 404.
 * Answers 503 + Retry-After itself when every slot is taken.
 */
void api_pending_park_store_wait(struct route_context *c, uint64_t purchase_id,
                                 uint8_t resume_command, int64_t resume_wait_ms,
                                 const char *resume_status, bool is_stream);
/* Responder thread, for api_purchases_resume: p goes on as a long-poll of row for
 * p->resume_wait_ms; answer_when_not_status as api_pending_park_for_changes's. */
void api_pending_long_poll_from(struct api *api, struct pending *p,
                                const struct store_purchase *row, int answer_when_not_status);
/* Responder thread, for api_purchases_resume: p becomes row's SSE stream (its first event: row)
 * for p->resume_wait_ms, as api_pending_park_for_changes's streams. */
void api_pending_stream_from(struct api *api, struct pending *p, const struct store_purchase *row);
/* Responder thread, for api_purchases_resume: appends command (CANCEL or CONFIRM of
 * p->purchase_id in p->event) and answers like api_pending_submit's. */
void api_pending_resubmit(struct api *api, struct pending *p, const struct engine_command *command);
/* The store-wait module's done callback and is_settled (api_start passes them). */
void api_pending_on_store_checked(void *context, int error, const struct store_purchase *row);
bool api_pending_is_store_wait_over(void *context);
/* Answers p (once) and lets go of it: on the responder thread, or on the appender's for a
 * purchase, which never registers a waiter or arms a deadline. */
void api_pending_finish(struct pending *p, int status, const char *json,
                        const char *const *headers);
void api_pending_finish_error(struct pending *p, int status, const char *code, const char *message);
/* Takes ownership of json. */
void api_pending_finish_cjson(struct pending *p, int status, cJSON *json,
                              const char *const *headers);
/* The responder thread's body (pthread_create from api_start). */
void *api_pending_responder_main(void *api);

/* ---- routes and their answers (api_events.c, api_purchases.c, api_ops.c) ----------------- */

/*
 * Handlers (the route table's): each answers c's request exactly once, now or by parking it.
 * The router has already checked the path (ids in c->segments are ids), the token and role
 * (c->claims) and the body's media type.
 */

/* The event named id, or false once answered (404, or 503 when the store does not answer). */
bool api_events_read(struct route_context *c, const char *id, struct store_event *event);
void api_events_list(struct route_context *c);
void api_events_get(struct route_context *c);
void api_events_create(struct route_context *c);
void api_events_set_state(struct route_context *c);
/* Responder thread: the engine answered p's CREATE_EVENT or SET_STATE. */
void api_events_answer(struct api *api, struct pending *p);

void api_purchases_create(struct route_context *c);
/* Keys derived purchase ids from the JWT secret (every gateway of a sale shares it). */
void api_purchases_init(struct api *api);
void api_purchases_get(struct route_context *c);
void api_purchases_stream(struct route_context *c);
void api_purchases_cancel(struct route_context *c);
void api_purchases_confirm(struct route_context *c);
/* The oldest API_REFUNDS_MAX refunds due of an event, and "more" when there are others. */
#define API_REFUNDS_MAX 1000
void api_purchases_refunds(struct route_context *c);
/* A purchase as API.md shows it, queued (not decided yet) or decided. */
cJSON *api_purchases_json(const struct store_purchase *row);
/* The limits batch decided p's shared limits (its thread): true when p may be appended; else
 * p was answered (503, 429 or 403). */
bool api_purchases_admit(struct api *api, struct pending *p, int error,
                         enum limits_redis_outcome outcome, int64_t retry_after_ms,
                         int challenge_error);
/* p's purchase reached the log (appender or responder thread): 202, 200 or 422. */
void api_purchases_answer_appended(struct api *api, struct pending *p);
/* Responder thread: the engine answered p's CONFIRM or CANCEL. */
void api_purchases_answer(struct api *api, struct pending *p);
/* Responder thread: p's store-wait found row; answers p (403, 200, 200 with a Location for a
 * purchase's retry) or goes on with it. */
void api_purchases_resume(struct api *api, struct pending *p, const struct store_purchase *row);
/* Responder thread: p's long-poll ran out of time; answers the purchase as it is now. */
void api_purchases_answer_current(struct api *api, struct pending *p);

/* The pages (api_pages.c): `/` and `/e/{event}`, `/admin`, `/assets/{asset}`, `/favicon.ico`. */
void api_pages_buyer(struct route_context *c);
void api_pages_admin(struct route_context *c);
void api_pages_asset(struct route_context *c);
void api_pages_favicon(struct route_context *c);
/* api_log.c: the receipt key and the log's signed heads and proofs (gateway/receipts.h). */
void api_log_public_key(struct route_context *c);
void api_log_head(struct route_context *c);
void api_log_inclusion(struct route_context *c);
void api_log_consistency(struct route_context *c);
/* Adds `"receipt":{...}` (null when none could be issued) to the JSON object text json (size
 * bytes of room, API_RECEIPT_ROOM more than the object needs) for p's appended purchase.
 * Appender thread, inside the append's callback (p->append's record is still valid). */
void api_log_add_receipt(struct api *api, const struct pending *p, char *json, size_t size);
/* Hands p's 202 (json: the purchase, location: its Location) to the signer, which answers it
 * with the signed receipt; false when it could not (then answer with api_log_add_receipt). */
bool api_log_answer_signed(struct api *api, struct pending *p, const char *json,
                           const char *location);
/* The signer's done callback (signer.h). */
void api_log_on_signed(void *payload, const struct receipt *receipt, int error);

void api_ops_healthz(struct route_context *c);
void api_ops_readyz(struct route_context *c);
void api_ops_metrics(struct route_context *c);
void api_ops_demo_token(struct route_context *c);
void api_ops_challenge(struct route_context *c);

/* ---- what the pages read (api_console.c) -------------------------------------------------- */

struct console;
/* Sets api->console and starts its thread (own store and log handles). 0 or an error. */
int api_console_start(struct api *api);
/* Ends every stream and stops the thread (api_drain). */
void api_console_drain(struct api *api);
/* After the HTTP server stopped: frees what is left. */
void api_console_stop(struct api *api);
/* api_on_commit: counts, recent decisions, and which event streams must be re-read. */
void api_console_on_commit(struct api *api, const struct worker_commit *commit);
/* A purchase answered 202, latency_us after its request arrived. */
void api_console_count_accepted(struct api *api, int64_t latency_us);
void api_console_config(struct route_context *c);
void api_console_event_stream(struct route_context *c);
void api_console_stats(struct route_context *c);
void api_console_stats_stream(struct route_context *c);
void api_console_decisions(struct route_context *c);

/* ---- the demo's rehearsal (api_rehearse.c) ----------------------------------------------- */

struct rehearsal;
/* Sets api->rehearsal; 0 or CATRACA_E_NOMEM. */
int api_rehearse_init(struct api *api);
/* The console thread, each tick: reaps the child, kills one that overstayed. */
void api_rehearse_reap(struct api *api, int64_t now_ms);
/* Kills a running child and waits for it (bounded). */
void api_rehearse_stop(struct api *api);
void api_rehearse_free(struct api *api);
void api_rehearse_start(struct route_context *c);
void api_rehearse_status(struct route_context *c);

#endif
