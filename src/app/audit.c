/*
 * audit.c - `catraca audit`: proves every stored decision from the log.
 *
 * For each event, replays its log from the first entry through a fresh engine
 * up to the store's committed offset, checking the invariants after every
 * batch of AUDIT_APPLY_BATCH commands (the engine asserts them after each), then compares every purchase the store recorded (status, reason,
 * quantity, category, customer, arrival position, hold expiry, ticket codes)
 * and every category counter with the replay. Any purchase one side has and
 * the other lacks is a difference too, as is an event one side has and the
 * other lacks. On the first difference it prints both versions (naming the
 * purchase) and exits 1.
 *
 * The log and the store come in as handles (log.h, store.h): this file names
 * no backend. audit_run opens the embedded mode's SQLite files,
 * audit_distributed_run the distributed mode's log (backend_open_log: Redis
 * or Kafka, whichever the options name) and PostgreSQL.
 *
 * Memory, bounded by --max-purchases-per-event and --max-customers-per-event
 * and independent of the log's length: one event at a time, so at most one
 * engine (engine_memory_bytes: about 90 B per purchase and the customer
 * table), plus
 *   per purchase: its arrival position, which the engine does not keep (16 B,
 *     struct log_seq, by slot) and one bit "the store has it";
 *   per stored purchase: its row, packed (struct stored_row, 64 B, and 8 B a ticket code),
 *     read on a thread of its own during the replay; at most purchases_max rows;
 *   per event: nothing more (the engine is freed before the next one);
 *   in all: the event ids (65 B each, up to AUDIT_EVENTS_MAX), the log
 *     handle's read buffer (Kafka: and its prefetch, AUDIT_KAFKA_PREFETCH_KBYTES of
 *     records) and two read-ahead batches of AUDIT_READ_BATCH
 *     entries each (records packed, at most CATRACA_COMMAND_ENCODED_MAX each),
 *     AUDIT_APPLY_BATCH decoded commands, and the store's current row
 *     (PostgreSQL: one row of its COPY, pg_copy.h).
 * Pages of the per-purchase arrays that no purchase reaches are never touched
 * (calloc), so a small event costs little. A DRAW holds the ids of the slots
 * for its duration (8 B per purchase, once per event).
 *
 * What it cannot see: a log and a store rewritten consistently (the receipts
 * and the Merkle tree, audit_tree.c, catch a rewritten log); log entries after
 * the store's committed offset (not decided yet); an entry removed whose
 * command changed nothing (a retry answered REPEATED, a TICK that expired
 * nothing, a purchase refused before it was remembered, engine.h 2b-2c).
 * The customer is compared by the engine's key of it (engine_customer_key, a
 * 64-bit SipHash), and so is a stored category: a stored customer or category
 * replaced by another text with the same key passes, which takes a second
 * preimage of SipHash-2-4 (about 2^64 work).
 */
#include "app/audit.h"
#include "app/service.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/codec.h"
#include "core/error.h"
#include "gateway/api_json.h"
#include "log/log_sqlite.h"
#include "store/store_pg.h"
#include "store/store_sqlite.h"

#define AUDIT_READ_BATCH 4096 /* log entries per read() */
#define AUDIT_EVENTS_MAX 4096 /* events audited in one run */
#define AUDIT_APPLY_BATCH 32  /* commands per engine_apply_batch */
#define AUDIT_CATEGORY_CACHE 4 /* category keys remembered by the store read */
#define AUDIT_KAFKA_PREFETCH_KBYTES (128 * 1024) /* Kafka: one partition's prefetch, 128 MiB */

struct audit {
    const struct catraca_log *log;
    const struct catraca_store *store;
    struct engine *engine;
    struct log_entry *entries; /* AUDIT_READ_BATCH of them */
    const char *event;
    /* By engine slot (arrival rank): where the purchase arrived, which the engine does not
     * keep. 16 B per purchase. */
    struct log_seq *arrival_seqs;
    uint64_t *is_stored; /* by engine slot, one bit: the store has this purchase */
    uint64_t commands, purchases_checked;
    uint32_t purchases_max; /* the engine's pool: more stored rows than this is a difference */
    /* Decoded entries not applied yet (AUDIT_APPLY_BATCH of each), flush_pending. */
    struct engine_command *pending;
    const struct log_entry *pending_entries[AUDIT_APPLY_BATCH];
    size_t pending_count;
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

/*
 * Applies a DRAW that decides the pre-queue: its entries take new slots (the draw's order),
 * and arrival_seqs must follow them. The ids of the slots before the draw are kept for the
 * moment of the draw only (8 B per purchase, once per event).
 */
static int apply_draw(struct audit *a, const struct log_entry *entry,
                      const struct engine_command *command, const struct engine_sink *sink)
{
    uint32_t count = engine_purchase_count(a->engine);
    uint64_t *ids = malloc(((size_t)count + 1) * sizeof(*ids));
    struct log_seq *seqs = malloc(((size_t)count + 1) * sizeof(*seqs));
    if (ids == NULL || seqs == NULL) {
        free(ids);
        free(seqs);
        return CATRACA_E_NOMEM;
    }
    struct engine_purchase_view view;
    for (uint32_t slot = 0; slot < count; slot++)
        ids[slot] = engine_purchase_at(a->engine, slot, &view) == 0 ? view.purchase_id : 0;
    struct engine_draw_view before, after;
    engine_draw_state(a->engine, &before);
    engine_apply(a->engine, command, sink);
    engine_draw_state(a->engine, &after);
    if (before.state != after.state && after.state == ENGINE_DRAW_DONE) {
        memcpy(seqs, a->arrival_seqs, (size_t)count * sizeof(*seqs));
        for (uint32_t slot = 0; slot < count; slot++)
            if (ids[slot] != 0 && engine_purchase(a->engine, ids[slot], &view) == 0 &&
                view.slot < count)
                a->arrival_seqs[view.slot] = seqs[slot];
        printf("event %s: pre-queue draw at entry %" PRIu64 " decided %u purchases\n", a->event,
               entry->seq.major, before.prequeued + before.deferred);
    }
    free(ids);
    free(seqs);
    return 0;
}

/*
 * The log read ahead on a thread of its own: while the engine applies one batch of entries,
 * the next is read (SQLite or the network, about half of a replay's time). Two batches in
 * flight, each AUDIT_READ_BATCH entries whose records are copied out of the handle's buffer
 * (valid until its next read) into the batch's own, packed one after the other. The log
 * handle belongs to the reader thread until read_ahead_stop.
 */
struct read_batch {
    struct log_entry entries[AUDIT_READ_BATCH];
    uint8_t *records; /* AUDIT_READ_BATCH * CATRACA_COMMAND_ENCODED_MAX bytes, touched as used */
    size_t count;
    int error;
    bool is_full; /* written by the reader, not yet taken by the replay */
    bool is_last; /* nothing after this batch: the end, an error, or past `committed` */
};

struct read_ahead {
    const struct catraca_log *log;
    struct log_entry *handle_entries; /* the read() buffer, AUDIT_READ_BATCH of them */
    const char *event;
    struct log_seq committed;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool is_stopping; /* the replay stopped early: the reader ends after its current read */
    struct read_batch batches[2];
};

static void *read_ahead_run(void *context)
{
    struct read_ahead *r = context;
    struct log_seq after = {0, 0};
    for (size_t turn = 0;; turn++) {
        struct read_batch *b = &r->batches[turn % 2];
        pthread_mutex_lock(&r->lock);
        while (b->is_full && !r->is_stopping)
            pthread_cond_wait(&r->changed, &r->lock);
        bool is_stopping = r->is_stopping;
        pthread_mutex_unlock(&r->lock);
        if (is_stopping)
            return NULL;
        size_t count = 0, used = 0;
        b->error = r->log->ops->read(r->log->context, r->event, after, r->handle_entries,
                                     AUDIT_READ_BATCH, &count);
        b->count = b->error == 0 ? count : 0;
        for (size_t i = 0; i < b->count; i++) {
            const struct log_entry *e = &r->handle_entries[i];
            size_t length = e->record_length <= CATRACA_COMMAND_ENCODED_MAX ? e->record_length : 0;
            memcpy(b->records + used, e->record, length);
            b->entries[i] = (struct log_entry){.seq = e->seq,
                                               .time_ms = e->time_ms,
                                               .record = b->records + used,
                                               .record_length = length};
            used += length;
        }
        if (b->count > 0)
            after = b->entries[b->count - 1].seq;
        b->is_last = b->error != 0 || b->count == 0 || log_seq_compare(after, r->committed) >= 0;
        pthread_mutex_lock(&r->lock);
        b->is_full = true;
        pthread_cond_broadcast(&r->changed);
        pthread_mutex_unlock(&r->lock);
        if (b->is_last)
            return NULL;
    }
}

static int read_ahead_start(struct read_ahead *r, struct audit *a, struct log_seq committed)
{
    *r = (struct read_ahead){
        .log = a->log, .handle_entries = a->entries, .event = a->event, .committed = committed};
    for (int i = 0; i < 2; i++) {
        r->batches[i].records = malloc((size_t)AUDIT_READ_BATCH * CATRACA_COMMAND_ENCODED_MAX);
        if (r->batches[i].records == NULL) {
            free(r->batches[0].records);
            return CATRACA_E_NOMEM;
        }
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->changed, NULL);
    if (pthread_create(&r->thread, NULL, read_ahead_run, r) != 0) {
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->changed);
        free(r->batches[0].records);
        free(r->batches[1].records);
        return CATRACA_E_NOMEM;
    }
    return 0;
}

/* The next batch in log order (waits for it). */
static struct read_batch *read_ahead_take(struct read_ahead *r, size_t turn)
{
    struct read_batch *b = &r->batches[turn % 2];
    pthread_mutex_lock(&r->lock);
    while (!b->is_full)
        pthread_cond_wait(&r->changed, &r->lock);
    pthread_mutex_unlock(&r->lock);
    return b;
}

/* The replay is done with a batch: the reader may fill it again. */
static void read_ahead_give_back(struct read_ahead *r, struct read_batch *b)
{
    pthread_mutex_lock(&r->lock);
    b->is_full = false;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

static void read_ahead_stop(struct read_ahead *r)
{
    pthread_mutex_lock(&r->lock);
    r->is_stopping = true;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->changed);
    free(r->batches[0].records);
    free(r->batches[1].records);
}

/*
 * The store read on a thread of its own, while the log is replayed: the rows of the event,
 * packed (struct stored_row, 64 B each, and 8 B per ticket code), compared with the replay
 * once it is done. The replay, the log's read ahead and this read then share the two cores
 * instead of following one another (the store pass was as long as the replay). The store
 * handle belongs to this thread until store_read_join. At most purchases_max rows are kept:
 * one more is a purchase the replay cannot have decided (the engine holds no more), a
 * difference reported after the replay.
 *
 * The customer and the category are kept as engine_customer_key() of their text: the replay
 * keeps the customer only as that key, and a category replaced by another text with the same
 * 64-bit SipHash passes (the second preimage of the file comment). The full row is read again
 * from the store to print a difference.
 */
struct stored_row {
    uint64_t purchase_id;
    struct log_seq seq;
    int64_t hold_expires_at_ms;
    uint64_t customer_key;
    uint64_t category_key;
    uint32_t tickets_at; /* its ticket_count codes start at store_read.codes[tickets_at] */
    uint32_t quantity;
    uint8_t status, reason, ticket_count;
    bool is_refund_due;
};

struct store_read {
    const struct catraca_store *store;
    const char *event;
    uint32_t rows_max;
    pthread_t thread;
    _Atomic bool is_stopping; /* the replay failed: stop reading */
    struct stored_row *rows;
    size_t count, capacity;
    uint64_t *codes;
    size_t code_count, code_capacity;
    /* The last AUDIT_CATEGORY_CACHE category texts seen and their keys: a sale has a few
     * categories, so most rows skip the SipHash (7 % of a store pass without this). */
    struct {
        char text[CATRACA_ID_MAX + 1];
        uint64_t key;
    } categories[AUDIT_CATEGORY_CACHE];
    size_t category_count;
    bool is_over;       /* the store has more than rows_max rows of the event */
    bool is_short;      /* out of memory while packing */
    int error;          /* the store's, or 0 */
};

/* engine_customer_key(category), remembered for the next rows of the same category. */
static uint64_t category_key_of(struct store_read *r, const char *category)
{
    size_t cached = r->category_count < AUDIT_CATEGORY_CACHE ? r->category_count
                                                             : AUDIT_CATEGORY_CACHE;
    for (size_t i = 0; i < cached; i++)
        if (strcmp(category, r->categories[i].text) == 0)
            return r->categories[i].key;
    uint64_t key = engine_customer_key(category);
    if (strlen(category) <= CATRACA_ID_MAX) {
        size_t at = r->category_count++ % AUDIT_CATEGORY_CACHE;
        strcpy(r->categories[at].text, category);
        r->categories[at].key = key;
    }
    return key;
}

static int store_read_pack(void *context, const struct store_decision *p)
{
    struct store_read *r = context;
    if (r->is_stopping)
        return 1;
    if (r->count == r->rows_max) {
        r->is_over = true;
        return 1;
    }
    if (r->count == r->capacity) {
        size_t capacity = r->capacity ? r->capacity * 2 : 65536;
        if (capacity > r->rows_max)
            capacity = r->rows_max;
        struct stored_row *rows = realloc(r->rows, capacity * sizeof(*rows));
        if (rows == NULL) {
            r->is_short = true;
            return 1;
        }
        r->rows = rows;
        r->capacity = capacity;
    }
    uint32_t ticket_count = p->ticket_count <= CATRACA_QUANTITY_MAX ? p->ticket_count : 0;
    if (r->code_count + ticket_count > r->code_capacity) {
        size_t capacity = r->code_capacity ? r->code_capacity * 2 : 65536;
        uint64_t *codes = realloc(r->codes, capacity * sizeof(*codes));
        if (codes == NULL) {
            r->is_short = true;
            return 1;
        }
        r->codes = codes;
        r->code_capacity = capacity;
    }
    if (ticket_count > 0)
        memcpy(r->codes + r->code_count, p->ticket_codes, ticket_count * sizeof(*r->codes));
    r->rows[r->count++] = (struct stored_row){.purchase_id = p->purchase_id,
                                              .seq = p->seq,
                                              .hold_expires_at_ms = p->hold_expires_at_ms,
                                              .customer_key = engine_customer_key(p->customer),
                                              .category_key = category_key_of(r, p->category),
                                              .tickets_at = (uint32_t)r->code_count,
                                              .quantity = p->quantity,
                                              .status = p->status,
                                              .reason = p->reason,
                                              .ticket_count = (uint8_t)p->ticket_count,
                                              .is_refund_due = p->is_refund_due};
    r->code_count += ticket_count;
    return 0;
}

/* A store without for_each_decision: its full rows, narrowed. */
static int store_read_pack_purchase(void *context, const struct store_purchase *p)
{
    struct store_decision d = {.purchase_id = p->purchase_id,
                               .seq = p->seq,
                               .hold_expires_at_ms = p->hold_expires_at_ms,
                               .customer = p->customer,
                               .category = p->category,
                               .quantity = p->quantity,
                               .status = p->status,
                               .reason = p->reason,
                               .ticket_count = p->ticket_count,
                               .is_refund_due = p->is_refund_due};
    memcpy(d.ticket_codes, p->ticket_codes, sizeof(d.ticket_codes));
    return store_read_pack(context, &d);
}

static void *store_read_run(void *context)
{
    struct store_read *r = context;
    const struct store_ops *ops = r->store->ops;
    int visited =
        ops->for_each_decision != NULL
            ? ops->for_each_decision(r->store->context, r->event, store_read_pack, r)
            : ops->for_each_purchase(r->store->context, r->event, store_read_pack_purchase, r);
    r->error = visited == 1 ? 0 : visited; /* 1: store_read_pack stopped it (flags say why) */
    return NULL;
}

static int store_read_start(struct store_read *r, struct audit *a)
{
    *r = (struct store_read){.store = a->store, .event = a->event, .rows_max = a->purchases_max};
    return pthread_create(&r->thread, NULL, store_read_run, r) == 0 ? 0 : CATRACA_E_NOMEM;
}

static void store_read_join(struct store_read *r)
{
    pthread_join(r->thread, NULL);
}

static void store_read_free(struct store_read *r)
{
    free(r->rows);
    free(r->codes);
}

/* Checks the invariants after `entry`; CATRACA_E_CORRUPT (printed) when broken. */
static int check_invariants(struct audit *a, const struct log_entry *entry)
{
    if (invariants_hold(a->engine))
        return 0;
    printf("DIFFERENCE event %s: invariant broken after entry %" PRIu64 "-%" PRIu64 "\n",
           a->event, entry->seq.major, entry->seq.minor);
    return CATRACA_E_CORRUPT;
}

/*
 * Applies the pending commands with engine_apply_batch (the customer keys computed once, the
 * engine's tables loaded a few commands ahead: a million purchases do not fit in any cache),
 * then checks the invariants (after the batch: the engine asserts them after each command
 * itself) and gives the purchases the batch remembered their arrival positions. Those took
 * the next slots in the order of their commands; a PURCHASE that was not remembered (a
 * repeated id, a full pool, id 0) shares its id with no new slot, so walking the batch's
 * PURCHASEs alongside the new slots pairs each slot with its entry.
 */
static int flush_pending(struct audit *a, const struct engine_sink *sink)
{
    size_t count = a->pending_count;
    if (count == 0)
        return 0;
    a->pending_count = 0;
    uint32_t remembered = engine_purchase_count(a->engine);
    if (engine_apply_batch(a->engine, a->pending, count, sink) != 0)
        return CATRACA_E_INVALID; /* decoded commands always have a valid type */
    a->commands += count;
    int error = check_invariants(a, a->pending_entries[count - 1]);
    uint32_t now_remembered = engine_purchase_count(a->engine);
    size_t k = 0;
    for (uint32_t slot = remembered; error == 0 && slot < now_remembered; slot++, k++) {
        struct engine_purchase_view view;
        engine_purchase_at(a->engine, slot, &view);
        while (k < count && (a->pending[k].type != ENGINE_COMMAND_PURCHASE ||
                             a->pending[k].u.purchase.purchase_id != view.purchase_id))
            k++;
        if (k == count) {
            printf("audit: slot %" PRIu32 " matches no PURCHASE of its batch\n", slot);
            return CATRACA_E_CORRUPT;
        }
        a->arrival_seqs[slot] = a->pending_entries[k]->seq;
    }
    return error;
}

/*
 * Takes one log entry: decoded (only the fields of its type, codec_command_decode_fields, not
 * the 3.7 KB of a whole command) into the pending batch, applied when the batch is full. A
 * DRAW is applied alone (it reorders the slots). 0, or an error that ends the replay
 * (printed). The entry must stay valid until flush_pending.
 */
static int apply_entry(struct audit *a, const struct log_entry *entry,
                       const struct engine_sink *sink)
{
    struct engine_command *command = &a->pending[a->pending_count];
    if (codec_command_decode_fields(entry->record, entry->record_length, command) != 0) {
        printf("DIFFERENCE event %s: log entry %" PRIu64 "-%" PRIu64 " cannot be decoded\n",
               a->event, entry->seq.major, entry->seq.minor);
        a->differences++;
        return 0;
    }
    if (command->type != ENGINE_COMMAND_DRAW) {
        a->pending_entries[a->pending_count++] = entry;
        return a->pending_count == AUDIT_APPLY_BATCH ? flush_pending(a, sink) : 0;
    }
    /* The DRAW sits after the pending commands, which flush_pending leaves as they are. */
    int error = flush_pending(a, sink);
    if (error == 0)
        error = apply_draw(a, entry, command, sink);
    if (error != 0)
        return error;
    a->commands++;
    return check_invariants(a, entry);
}

/* Replays the log up to `committed`; returns 0 or an error (printed). */
static int replay(struct audit *a, struct log_seq committed)
{
    struct engine_sink sink = {.emit = ignore};
    struct read_ahead reader;
    int error = read_ahead_start(&reader, a, committed);
    if (error != 0)
        return error;
    bool is_done = false;
    for (size_t turn = 0; !is_done; turn++) {
        struct read_batch *b = read_ahead_take(&reader, turn);
        error = b->error;
        for (size_t i = 0; error == 0 && i < b->count; i++) {
            if (log_seq_compare(b->entries[i].seq, committed) > 0)
                break;
            error = apply_entry(a, &b->entries[i], &sink);
        }
        if (error == 0)
            error = flush_pending(a, &sink); /* before the batch's entries are given back */
        a->pending_count = 0;
        is_done = error != 0 || b->is_last;
        read_ahead_give_back(&reader, b);
    }
    read_ahead_stop(&reader);
    return error;
}

/* The customer of the PURCHASE entry at seq, read back from the log (for printing only). */
static void customer_at(struct audit *a, struct log_seq seq, char out[CATRACA_ID_MAX + 1])
{
    size_t count = 0;
    struct engine_command command;
    snprintf(out, CATRACA_ID_MAX + 1, "?");
    if (a->log->ops->read(a->log->context, a->event, log_seq_before(seq), a->entries, 1, &count) ==
            0 &&
        count == 1 && log_seq_compare(a->entries[0].seq, seq) == 0 &&
        codec_command_decode(a->entries[0].record, a->entries[0].record_length, &command) == 0 &&
        command.type == ENGINE_COMMAND_PURCHASE)
        snprintf(out, CATRACA_ID_MAX + 1, "%s", command.u.purchase.customer);
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

/* The category id of a replayed purchase ("" when the buyer sent an unknown one). */
static const char *category_of(const struct audit *a, const struct engine_purchase_view *view)
{
    const struct engine_event_spec *spec = engine_event(a->engine);
    return spec && view->category < spec->category_count ? spec->categories[view->category].id : "";
}

/* The replay's version of a purchase, in the store's shape (for printing a difference). */
static void replayed_row(struct audit *a, const struct engine_purchase_view *view,
                         struct store_purchase *out)
{
    const struct engine_event_spec *spec = engine_event(a->engine);
    memset(out, 0, sizeof(*out));
    out->purchase_id = view->purchase_id;
    out->status = view->status;
    out->reason = view->status == ENGINE_STATUS_REJECTED ? view->reason : 0;
    out->quantity = view->quantity;
    out->seq = a->arrival_seqs[view->slot];
    customer_at(a, out->seq, out->customer);
    snprintf(out->category, sizeof(out->category), "%s", category_of(a, view));
    out->hold_expires_at_ms = view->hold_expires_at_ms;
    out->is_refund_due = view->is_refund_due;
    if (view->status == ENGINE_STATUS_CONFIRMED) {
        out->ticket_count = (uint8_t)view->quantity;
        for (uint32_t i = 0; i < view->quantity; i++)
            out->ticket_codes[i] = engine_ticket_code(spec->secret, view->purchase_id, i);
    }
}

/* Whether a stored row says what the replay decided; no copy of the replay's row is made.
 * category_keys: engine_customer_key() of each replayed category's id. */
static bool row_agrees(const struct audit *a, const struct store_read *r,
                       const struct stored_row *stored, const struct engine_purchase_view *view,
                       const uint64_t *category_keys)
{
    uint8_t reason = view->status == ENGINE_STATUS_REJECTED ? view->reason : 0;
    uint32_t ticket_count = view->status == ENGINE_STATUS_CONFIRMED ? view->quantity : 0;
    bool same = stored->status == view->status && stored->reason == reason &&
                stored->quantity == view->quantity &&
                log_seq_compare(stored->seq, a->arrival_seqs[view->slot]) == 0 &&
                stored->ticket_count == ticket_count &&
                stored->is_refund_due == view->is_refund_due &&
                (view->status != ENGINE_STATUS_HELD ||
                 stored->hold_expires_at_ms == view->hold_expires_at_ms) &&
                stored->customer_key == view->customer_key;
    /* The category of a rejected unknown-category purchase is what the buyer sent. */
    if (same && category_of(a, view)[0] != '\0')
        same = stored->category_key == category_keys[view->category];
    const struct engine_event_spec *spec = engine_event(a->engine);
    /* Codes only when the counts agree (then the arena holds this row's). */
    const uint64_t *codes = same && ticket_count > 0 ? r->codes + stored->tickets_at : NULL;
    for (uint32_t i = 0; same && i < ticket_count; i++)
        same = codes[i] == engine_ticket_code(spec->secret, view->purchase_id, i);
    return same;
}

/* The stored row again, in full, to print it (the packed one keeps keys, not texts). */
static void print_stored(struct audit *a, const struct stored_row *stored)
{
    struct store_purchase row;
    if (a->store->ops->get_purchase(a->store->context, stored->purchase_id, &row) == 0 &&
        strcmp(row.event, a->event) == 0) {
        print_row("store", &row);
        return;
    }
    memset(&row, 0, sizeof(row));
    row.purchase_id = stored->purchase_id;
    row.status = stored->status;
    row.reason = stored->reason;
    row.quantity = stored->quantity;
    row.seq = stored->seq;
    row.hold_expires_at_ms = stored->hold_expires_at_ms;
    snprintf(row.customer, sizeof(row.customer), "?");
    snprintf(row.category, sizeof(row.category), "?");
    print_row("store", &row);
}

/* Compares the packed rows with the replay, in the store's (id) order; stops at the first
 * difference. */
static void compare_rows(struct audit *a, const struct store_read *r)
{
    uint64_t category_keys[CATRACA_CATEGORIES_MAX] = {0};
    const struct engine_event_spec *spec = engine_event(a->engine);
    for (uint32_t i = 0; spec != NULL && i < spec->category_count; i++)
        category_keys[i] = engine_customer_key(spec->categories[i].id);
    uint32_t count = engine_purchase_count(a->engine);
    for (size_t i = 0; i < r->count; i++) {
        const struct stored_row *stored = &r->rows[i];
        struct engine_purchase_view view;
        a->purchases_checked++;
        if (engine_purchase(a->engine, stored->purchase_id, &view) != 0 || view.slot >= count) {
            printf("DIFFERENCE event %s: the store has a purchase the log never decided\n",
                   a->event);
            print_stored(a, stored);
            a->differences++;
            return;
        }
        a->is_stored[view.slot / 64] |= UINT64_C(1) << (view.slot % 64);
        if (!row_agrees(a, r, stored, &view, category_keys)) {
            struct store_purchase replayed;
            replayed_row(a, &view, &replayed);
            printf("DIFFERENCE event %s: stored outcome differs from the replay\n", a->event);
            print_stored(a, stored);
            print_row("replay", &replayed);
            a->differences++;
            return;
        }
    }
    if (r->is_over) {
        printf("DIFFERENCE event %s: the store has more purchases than the replay can hold "
               "(--max-purchases-per-event %" PRIu32 "): some the log never decided\n",
               a->event, a->purchases_max);
        a->differences++;
    }
}

static int compare_counts(struct audit *a, const struct store_event *stored)
{
    struct engine_draw_view draw;
    engine_draw_state(a->engine, &draw);
    if (draw.state != stored->draw.state || draw.prequeued != stored->draw.prequeued ||
        draw.deferred != stored->draw.deferred) {
        printf("DIFFERENCE event %s: store draw state %u (%u pre-queued, %u deferred), replay %u "
               "(%u, %u)\n",
               a->event, stored->draw.state, stored->draw.prequeued, stored->draw.deferred,
               draw.state, draw.prequeued, draw.deferred);
        a->differences++;
        return 1;
    }
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
    uint32_t count = engine_purchase_count(a->engine);
    for (uint32_t slot = 0; slot < count; slot++) {
        if ((a->is_stored[slot / 64] >> (slot % 64)) & 1 ||
            engine_purchase_at(a->engine, slot, &view) != 0)
            continue;
        char id[API_PURCHASE_ID_TEXT];
        api_json_purchase_id_format(view.purchase_id, id);
        printf("DIFFERENCE event %s: purchase %s decided by the replay (%s) is not in the store\n",
               a->event, id, engine_status_name(view.status));
        a->differences++;
        return;
    }
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void print_summary(struct audit *a, const struct store_event *stored, double replay_s,
                          double compare_s)
{
    printf("event %s: %" PRIu64 " commands replayed, %" PRIu64 " purchases checked", a->event,
           a->commands, a->purchases_checked);
    for (uint32_t i = 0; i < engine_category_count(a->engine); i++) {
        struct engine_category_counts c;
        engine_category_counts(a->engine, i, &c);
        printf(", %s sold %u/%u", stored->spec.categories[i].id, c.sold, c.capacity);
    }
    printf(" (replay %.3f s, store compared in %.3f s)\n", replay_s, compare_s);
}

static int audit_event(struct audit *a, const char *event, const struct engine_config *config)
{
    struct store_event stored;
    struct log_seq committed;
    a->event = event;
    a->commands = a->purchases_checked = 0;
    /* The committed offset only: the replay starts from the first entry, not a snapshot. */
    int error = a->store->ops->load(a->store->context, event, &committed, NULL, NULL, NULL);
    if (error == CATRACA_E_NOTFOUND) {
        printf("event %s: nothing decided yet\n", event);
        return 0;
    }
    if (error == 0)
        error = a->store->ops->get_event(a->store->context, event, &stored);
    if (error == 0)
        error = engine_new(config, &a->engine);
    struct timespec started, replayed;
    clock_gettime(CLOCK_MONOTONIC, &started);
    struct store_read rows;
    bool is_reading = false;
    if (error == 0) {
        error = store_read_start(&rows, a);
        is_reading = error == 0;
    }
    if (error == 0)
        error = replay(a, committed);
    if (is_reading) {
        if (error != 0)
            rows.is_stopping = true;
        store_read_join(&rows);
        if (error == 0)
            error = rows.is_short ? CATRACA_E_NOMEM : rows.error;
    }
    clock_gettime(CLOCK_MONOTONIC, &replayed);
    /* The rows first: a difference there names the purchase; the counters after. */
    if (error == 0) {
        uint32_t count = engine_purchase_count(a->engine);
        memset(a->is_stored, 0, ((size_t)count + 63) / 64 * sizeof(*a->is_stored));
        compare_rows(a, &rows);
        if (a->differences == 0)
            find_missing(a);
    }
    if (is_reading)
        store_read_free(&rows);
    if (error == 0 && a->differences == 0)
        compare_counts(a, &stored);
    if (error == 0)
        print_summary(a, &stored, seconds_since(&started) - seconds_since(&replayed),
                      seconds_since(&replayed));
    engine_free(a->engine);
    a->engine = NULL;
    return error;
}

typedef char event_id[CATRACA_ID_MAX + 1];

/* The events of the log, then those only the store knows (a log that lost a whole event). */
static int list_events(const struct catraca_log *log, const struct catraca_store *store,
                       event_id *events, size_t *count)
{
    int error = log->ops->list_partitions(log->context, events, AUDIT_EVENTS_MAX, count);
    size_t from_log = *count;
    char after[CATRACA_ID_MAX + 1] = "";
    struct store_event *page = malloc(16 * sizeof(*page));
    if (page == NULL)
        return CATRACA_E_NOMEM;
    for (size_t got = 16; error == 0 && got == 16;) {
        error = store->ops->list_events(store->context, after, page, 16, &got);
        for (size_t i = 0; error == 0 && i < got; i++) {
            bool is_known = false;
            for (size_t j = 0; j < from_log && !is_known; j++)
                is_known = strcmp(events[j], page[i].spec.id) == 0;
            if (!is_known && *count < AUDIT_EVENTS_MAX)
                snprintf(events[(*count)++], sizeof(events[0]), "%s", page[i].spec.id);
            snprintf(after, sizeof(after), "%s", page[i].spec.id);
        }
    }
    free(page);
    return error;
}

int audit_log_and_store(const struct catraca_log *log, const struct catraca_store *store,
                        const struct engine_config *config)
{
    struct audit a = {.log = log, .store = store, .purchases_max = config->purchases_max};
    a.entries = calloc(AUDIT_READ_BATCH, sizeof(*a.entries));
    a.pending = calloc(AUDIT_APPLY_BATCH, sizeof(*a.pending));
    a.arrival_seqs = calloc(config->purchases_max, sizeof(*a.arrival_seqs));
    a.is_stored = calloc(((size_t)config->purchases_max + 63) / 64, sizeof(*a.is_stored));
    event_id *events = calloc(AUDIT_EVENTS_MAX, sizeof(*events));
    if (a.entries == NULL || a.pending == NULL || a.arrival_seqs == NULL || a.is_stored == NULL ||
        events == NULL) {
        fprintf(stderr, "catraca audit: out of memory\n");
        free(a.entries);
        free(a.pending);
        free(a.arrival_seqs);
        free(a.is_stored);
        free(events);
        return 2;
    }
    struct timespec start, end, cpu_start, cpu_end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_start);
    size_t count = 0;
    int error = list_events(log, store, events, &count);
    uint64_t total = 0;
    for (size_t i = 0; error == 0 && i < count && a.differences == 0; i++) {
        error = audit_event(&a, events[i], config);
        total += a.commands;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_end);
    double seconds =
        (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
    double cpu_seconds = (double)(cpu_end.tv_sec - cpu_start.tv_sec) +
                         (double)(cpu_end.tv_nsec - cpu_start.tv_nsec) / 1e9;
    if (error != 0)
        printf("audit failed: %s\n", catraca_strerror(error));
    /* The CPU time beside the wall time: on a shared machine the first measures the audit,
     * the second also its neighbours. */
    printf("audit: %zu events, %" PRIu64 " commands in %.3f s (%.0f commands/s): %s (%.3f s of "
           "CPU)\n",
           count, total, seconds, seconds > 0 ? (double)total / seconds : 0.0,
           error == 0 && a.differences == 0 ? "CLEAN" : "DIFFERENCES FOUND", cpu_seconds);
    free(events);
    free(a.entries);
    free(a.pending);
    free(a.arrival_seqs);
    free(a.is_stored);
    if (error != 0 && error != CATRACA_E_CORRUPT)
        return 2;
    return error == 0 && a.differences == 0 ? 0 : 1;
}

int audit_run(const char *data, uint32_t purchases_max, uint32_t customers_max)
{
    /* The audit reads each file once from end to end: through SQLite's bounded page cache, not
     * a memory map (the handles' default, for servers that reread the hot end), whose pages
     * would stay in this process's memory to the size of the files. Before any connection. */
    if (sqlite3_shutdown() == SQLITE_OK)
        sqlite3_config(SQLITE_CONFIG_MMAP_SIZE, (sqlite3_int64)0, (sqlite3_int64)0);
    struct sqlite_paths paths;
    sqlite_paths_of(data, &paths);
    struct catraca_log log;
    struct catraca_store store;
    struct log_sqlite_options options = {
        .is_synchronous_full = false, .busy_timeout_ms = 5000, .read_max = AUDIT_READ_BATCH};
    if (log_sqlite_open(paths.log, &options, &log) != 0) {
        fprintf(stderr, "catraca audit: cannot open %s\n", paths.log);
        return 2;
    }
    if (store_sqlite_open(paths.store, false, 5000, &store) != 0) {
        fprintf(stderr, "catraca audit: cannot open the store %s\n", paths.store);
        log.ops->close(log.context);
        return 2;
    }
    struct engine_config config = {.purchases_max = purchases_max, .customers_max = customers_max};
    int result = audit_log_and_store(&log, &store, &config);
    log.ops->close(log.context);
    store.ops->close(store.context);
    return result;
}

int audit_distributed_run(const struct backend_options *backend, const char *postgres,
                          uint32_t purchases_max, uint32_t customers_max)
{
    struct catraca_log log;
    struct catraca_store store;
    /* One partition read from end to end: a large prefetch (backend.h), so that Kafka's
     * fetches keep ahead of the replay instead of pausing a second every MiB. */
    struct backend_options reader = *backend;
    reader.kafka_prefetch_kbytes = AUDIT_KAFKA_PREFETCH_KBYTES;
    int error = backend_open_log(&reader, AUDIT_READ_BATCH, false, &log);
    if (error != 0) {
        fprintf(stderr, "catraca audit: cannot use the %s log: %s\n", backend_name(backend),
                catraca_strerror(error));
        return 2;
    }
    error = store_pg_open(postgres, &store);
    if (error != 0) {
        fprintf(stderr, "catraca audit: cannot open the store (--postgres): %s\n",
                catraca_strerror(error));
        log.ops->close(log.context);
        return 2;
    }
    struct engine_config config = {.purchases_max = purchases_max, .customers_max = customers_max};
    int result = audit_log_and_store(&log, &store, &config);
    log.ops->close(log.context);
    store.ops->close(store.context);
    return result;
}
