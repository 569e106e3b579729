/*
 * worker.c - the decision loop. Contract in worker.h.
 *
 * Hand-written because it is the heart of Catraca: its job is the ordering
 * and exactly-once bookkeeping around the engine, which no library does.
 */
#include "worker/worker.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/codec.h"
#include "core/error.h"
#include "core/logline.h"

#define TICK_SPACING_MS 20   /* at most one TICK per partition per this many ms */
#define WORKER_APPLY_BATCH 32 /* log entries decoded, then applied together */
#define DRAW_SPACING_MS 1000 /* and one DRAW per second until the engine applied one */

struct partition {
    char event[CATRACA_ID_MAX + 1];
    struct engine *engine;    /* NULL while not decided here (not recovered, or not held) */
    uint64_t epoch;           /* the lease's fencing token the engine was recovered under */
    struct log_seq applied;   /* last entry applied to the engine */
    struct log_seq committed; /* last entry whose effects are in the store */
    uint64_t commands_since_snapshot;
    int64_t last_tick_ms;
    int64_t last_draw_ms;
    uint64_t holds_expired; /* engine's count at the last commit (under the worker's mutex) */
    uint64_t log_lag;       /* entries after applied, measured each second (under the mutex) */
    bool is_lag_reported;   /* held at the last measure (under the mutex) */
};

/* The effects of one batch, reused from batch to batch (grown, never shrunk). */
struct batch {
    struct store_purchase *purchases;
    size_t purchase_count, purchase_capacity;
    uint32_t *index;   /* purchase id -> row + 1, open addressing */
    size_t index_mask; /* index has index_mask + 1 entries */
    struct store_answer *answers;
    size_t answer_count, answer_capacity;
    /* The command being applied, for the sink (set by begin_command). */
    const struct engine_command *command;
    struct log_seq seq;
    const struct engine_command *commands; /* the engine_apply_batch being applied */
    const struct log_seq *command_seqs;
    const char *event;
    uint32_t draw_rank;          /* purchases decided so far by the DRAW being applied */
    bool is_drawing;             /* the DRAW being applied answered OK: it decides from now */
    const struct engine *engine; /* the partition's, for the line facts of waiting rows */
    int out_of_memory;
    /* Final states reached in this batch: added to the stats once it is committed. */
    uint64_t confirmed, cancelled, rejected_by_reason[WORKER_REASONS_MAX];
};

struct worker {
    struct worker_config config;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool is_woken;
    bool is_stopping;
    struct worker_stats stats; /* under mutex */

    struct partition *partitions;
    uint32_t partition_count;
    struct batch batch;
    struct log_entry *entries;
    /* The entries being applied, decoded: one engine_apply_batch at a time. */
    struct engine_command commands[WORKER_APPLY_BATCH];
    struct log_seq command_seqs[WORKER_APPLY_BATCH];
    uint8_t *snapshot;
    size_t snapshot_capacity;
};

static int64_t wall_clock_ms(void *context)
{
    (void)context;
    return clock_wall_ms();
}

static int64_t worker_now_ms(const struct worker *w)
{
    return w->config.clock_ms(w->config.clock_context);
}

static void log_line(enum logline_level level, const char *event, const char *message, int error)
{
    logline(level, "worker", message, "event", event ? event : "-", "error",
            error != 0 ? catraca_strerror(error) : NULL, NULL);
}

/* ---- batch rows -------------------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int batch_grow_index(struct batch *b)
{
    size_t size = b->index_mask + 1;
    if (b->index != NULL && b->purchase_count * 2 < size)
        return 0;
    size_t new_size = size < 1024 ? 1024 : size * 2;
    uint32_t *index = calloc(new_size, sizeof(uint32_t));
    if (index == NULL)
        return CATRACA_E_NOMEM;
    free(b->index);
    b->index = index;
    b->index_mask = new_size - 1;
    for (size_t row = 0; row < b->purchase_count; row++) {
        size_t i = mix(b->purchases[row].purchase_id) & b->index_mask;
        while (b->index[i] != 0)
            i = (i + 1) & b->index_mask;
        b->index[i] = (uint32_t)row + 1;
    }
    return 0;
}

/* The batch's row for a purchase, created empty when new; NULL when out of memory. */
static struct store_purchase *batch_row(struct batch *b, uint64_t purchase_id, bool *is_new)
{
    if (batch_grow_index(b) != 0)
        return NULL;
    size_t i = mix(purchase_id) & b->index_mask;
    while (b->index[i] != 0) {
        struct store_purchase *row = &b->purchases[b->index[i] - 1];
        if (row->purchase_id == purchase_id) {
            *is_new = false;
            return row;
        }
        i = (i + 1) & b->index_mask;
    }
    if (b->purchase_count == b->purchase_capacity) {
        size_t capacity = b->purchase_capacity ? 2 * b->purchase_capacity : 256;
        struct store_purchase *rows = realloc(b->purchases, capacity * sizeof(*rows));
        if (rows == NULL)
            return NULL;
        b->purchases = rows;
        b->purchase_capacity = capacity;
    }
    struct store_purchase *row = &b->purchases[b->purchase_count];
    memset(row, 0, sizeof(*row));
    row->purchase_id = purchase_id;
    b->index[i] = (uint32_t)++b->purchase_count;
    *is_new = true;
    return row;
}

static void batch_reset(struct batch *b)
{
    if (b->purchase_count > 0)
        memset(b->index, 0, (b->index_mask + 1) * sizeof(uint32_t));
    b->purchase_count = 0;
    b->answer_count = 0;
    b->out_of_memory = 0;
    b->confirmed = b->cancelled = 0;
    memset(b->rejected_by_reason, 0, sizeof(b->rejected_by_reason));
}

static void batch_add_answer(struct batch *b, const struct engine_outcome *o)
{
    if (b->answer_count == b->answer_capacity) {
        size_t capacity = b->answer_capacity ? 2 * b->answer_capacity : 64;
        struct store_answer *answers = realloc(b->answers, capacity * sizeof(*answers));
        if (answers == NULL) {
            b->out_of_memory = 1;
            return;
        }
        b->answers = answers;
        b->answer_capacity = capacity;
    }
    struct store_answer *a = &b->answers[b->answer_count++];
    memset(a, 0, sizeof(*a));
    snprintf(a->event, sizeof(a->event), "%s", b->event);
    a->seq = b->seq;
    a->purchase_id = o->purchase_id;
    a->type = o->type;
    a->result = o->result;
    a->reason = o->reason;
    a->status = o->status;
}

static void fill_arrival(struct store_purchase *row, const struct engine_command *c,
                         struct log_seq seq, const char *event)
{
    row->has_arrival = true;
    snprintf(row->event, sizeof(row->event), "%s", event);
    snprintf(row->customer, sizeof(row->customer), "%.*s", CATRACA_ID_MAX, c->u.purchase.customer);
    snprintf(row->category, sizeof(row->category), "%.*s", CATRACA_ID_MAX, c->u.purchase.category);
    row->quantity = c->u.purchase.quantity;
    row->seq = seq;
    row->created_ms = c->now_ms;
}

/*
 * Line facts (store.h) at the decision, for a row that waits or was turned away line_full. A
 * purchase becomes WAITING only when it is decided (on arrival, or at a pre-queue draw, which
 * emits each entry as it decides it), at the tail: the tickets wanted ahead of it are the
 * line's less its own.
 */
static void fill_line_facts(const struct batch *b, const struct engine_outcome *o,
                            struct store_purchase *row)
{
    row->line.is_known = false;
    row->ahead = 0;
    struct engine_category_counts counts;
    bool is_line_row =
        row->status == ENGINE_STATUS_WAITING ||
        (row->status == ENGINE_STATUS_REJECTED && row->reason == ENGINE_REASON_LINE_FULL);
    if (!is_line_row || b->engine == NULL ||
        engine_category_counts(b->engine, o->category, &counts) != 0)
        return;
    row->line = (struct store_line_facts){.is_known = true,
                                          .available = counts.available,
                                          .held = counts.held,
                                          .sold = counts.sold,
                                          .returned = counts.returned,
                                          .hold_ms = engine_event(b->engine)->hold_ms};
    if (row->status == ENGINE_STATUS_WAITING)
        row->ahead = counts.waiting_quantity - o->quantity;
}

/* The engine's sink: folds outcomes into one row per purchase plus the answers. */
static void collect_outcome(void *context, const struct engine_outcome *o)
{
    struct batch *b = context;
    const struct engine_command *c = b->command;
    if (o->type != ENGINE_OUTCOME_PURCHASE)
        batch_add_answer(b, o);
    if (c->type == ENGINE_COMMAND_DRAW && o->type == ENGINE_OUTCOME_EVENT)
        b->is_drawing = o->result == ENGINE_RESULT_OK;
    /* Refused or repeated commands change nothing; answers about no purchase neither. */
    if (o->result != ENGINE_RESULT_OK || o->purchase_id == 0 || o->status == ENGINE_STATUS_NONE)
        return;
    /* A final state is entered once, by exactly one OK outcome (engine.h). */
    if (o->status == ENGINE_STATUS_CONFIRMED)
        b->confirmed++;
    else if (o->status == ENGINE_STATUS_CANCELLED)
        b->cancelled++;
    else if (o->status == ENGINE_STATUS_REJECTED)
        b->rejected_by_reason[o->reason < WORKER_REASONS_MAX ? o->reason : 0]++;
    bool is_new = false;
    struct store_purchase *row = batch_row(b, o->purchase_id, &is_new);
    if (row == NULL) {
        b->out_of_memory = 1;
        return;
    }
    if (is_new)
        snprintf(row->event, sizeof(row->event), "%s", b->event);
    bool is_arrival = c->type == ENGINE_COMMAND_PURCHASE && o->type == ENGINE_OUTCOME_PURCHASE &&
                      c->u.purchase.purchase_id == o->purchase_id;
    if (is_arrival)
        fill_arrival(row, c, b->seq, b->event);
    row->status = o->status;
    row->reason = o->status == ENGINE_STATUS_REJECTED ? o->reason : ENGINE_REASON_NONE;
    row->hold_expires_at_ms = o->hold_expires_at_ms;
    row->position = o->position;
    if (o->type == ENGINE_OUTCOME_CONFIRM && o->reason == ENGINE_REASON_REFUND_DUE &&
        c->type == ENGINE_COMMAND_CONFIRM) {
        row->is_refund_due = true; /* the first late payment: recorded with its reference */
        snprintf(row->payment_ref, sizeof(row->payment_ref), "%.*s", CATRACA_ID_MAX,
                 c->u.confirm.payment_ref);
    }
    fill_line_facts(b, o, row);
    row->ticket_count = o->ticket_count;
    memcpy(row->ticket_codes, o->ticket_codes, sizeof(row->ticket_codes));
    row->updated_ms = c->now_ms;
    /* A draw emits its purchases in the order it decides them, after its own answer: their
     * places among the drawn. Expiries before the answer (a repeated DRAW's) are not drawn. */
    if (b->is_drawing && o->type == ENGINE_OUTCOME_PURCHASE)
        row->draw_rank = ++b->draw_rank;
}

static void discard_outcome(void *context, const struct engine_outcome *o)
{
    (void)context;
    (void)o;
}

/* engine_apply_batch is about to apply commands[index]: what collect_outcome needs of it. */
static void begin_command(void *context, size_t index)
{
    struct batch *b = context;
    b->command = &b->commands[index];
    b->seq = b->command_seqs[index];
    b->draw_rank = 0;
    b->is_drawing = false;
}

/* ---- partitions -------------------------------------------------------------------------- */

static struct partition *partition_find(struct worker *w, const char *event)
{
    for (uint32_t i = 0; i < w->partition_count; i++)
        if (strcmp(w->partitions[i].event, event) == 0)
            return &w->partitions[i];
    return NULL;
}

static void fill_event_row(const struct partition *p, struct store_event *row, int64_t now_ms)
{
    memset(row, 0, sizeof(*row));
    row->spec = *engine_event(p->engine);
    row->state = engine_state(p->engine);
    for (uint32_t i = 0; i < engine_category_count(p->engine); i++)
        engine_category_counts(p->engine, i, &row->counts[i]);
    engine_draw_state(p->engine, &row->draw);
    row->offset = p->applied;
    row->updated_ms = now_ms;
}

static int snapshot_take(struct worker *w, struct partition *p, size_t *length)
{
    size_t needed = engine_snapshot_size(p->engine);
    if (needed > w->snapshot_capacity) {
        uint8_t *buffer = realloc(w->snapshot, needed);
        if (buffer == NULL)
            return CATRACA_E_NOMEM;
        w->snapshot = buffer;
        w->snapshot_capacity = needed;
    }
    return engine_snapshot_write(p->engine, w->snapshot, w->snapshot_capacity, length);
}

/* Applies the decoded commands[0 .. count - 1] in one engine_apply_batch (their customer keys
 * computed once, the engine's tables loaded a few commands ahead). */
static void partition_apply_decoded(struct worker *w, struct partition *p, size_t count,
                                    bool is_replay)
{
    if (count == 0)
        return;
    struct batch *b = &w->batch;
    b->commands = w->commands;
    b->command_seqs = w->command_seqs;
    b->event = p->event;
    b->engine = p->engine;
    struct engine_sink sink = {.emit = is_replay ? discard_outcome : collect_outcome,
                               .context = b,
                               .begin_command = is_replay ? NULL : begin_command};
    int error = engine_apply_batch(p->engine, w->commands, count, &sink);
    assert(error == 0); /* decoded commands always have a valid type */
    (void)error;
    p->commands_since_snapshot += count;
}

/*
 * Applies log entries; commits when `is_replay` is false. Entries are decoded (only the fields
 * of their type: codec_command_decode_fields) WORKER_APPLY_BATCH at a time, then applied
 * together. Returns 0 or CATRACA_E_NOMEM.
 */
static int partition_apply_entries(struct worker *w, struct partition *p, size_t count,
                                   bool is_replay)
{
    struct batch *b = &w->batch;
    size_t decoded = 0;
    for (size_t i = 0; i < count; i++) {
        const struct log_entry *entry = &w->entries[i];
        if (codec_command_decode_fields(entry->record, entry->record_length,
                                        &w->commands[decoded]) != 0) {
            pthread_mutex_lock(&w->mutex);
            w->stats.corrupt_records++;
            pthread_mutex_unlock(&w->mutex);
            log_line(LOGLINE_ERROR, p->event, "undecodable log record skipped", CATRACA_E_CORRUPT);
            continue;
        }
        w->command_seqs[decoded++] = entry->seq;
        if (decoded == WORKER_APPLY_BATCH) {
            partition_apply_decoded(w, p, decoded, is_replay);
            decoded = 0;
        }
    }
    partition_apply_decoded(w, p, decoded, is_replay);
    if (count > 0)
        p->applied = w->entries[count - 1].seq;
    return b->out_of_memory ? CATRACA_E_NOMEM : 0;
}

static int partition_commit(struct worker *w, struct partition *p, size_t command_count)
{
    struct batch *b = &w->batch;
    struct store_event event_row;
    int64_t now_ms = worker_now_ms(w);
    bool has_event = engine_event(p->engine) != NULL;
    if (has_event)
        fill_event_row(p, &event_row, now_ms);
    struct store_batch batch = {
        .event = p->event,
        .epoch = p->epoch,
        .offset = p->applied,
        .event_row = has_event ? &event_row : NULL,
        .purchases = b->purchases,
        .purchase_count = b->purchase_count,
        .answers = b->answers,
        .answer_count = b->answer_count,
    };
    size_t snapshot_length = 0;
    bool is_snapshot_due = p->commands_since_snapshot >= w->config.snapshot_every;
    if (is_snapshot_due && engine_validate(p->engine) != 0) {
        /* Never reached while the engine keeps its promises; if it is, say so loudly. */
        pthread_mutex_lock(&w->mutex);
        w->stats.invariant_violations++;
        pthread_mutex_unlock(&w->mutex);
        log_line(LOGLINE_ERROR, p->event, "engine_validate failed: invariant violation",
                 CATRACA_E_CORRUPT);
    }
    if (is_snapshot_due && snapshot_take(w, p, &snapshot_length) == 0) {
        batch.snapshot = w->snapshot;
        batch.snapshot_length = snapshot_length;
        batch.snapshot_offset = p->applied;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int error = w->config.store.ops->commit(w->config.store.context, &batch);
    clock_gettime(CLOCK_MONOTONIC, &end);
    uint64_t latency_us =
        (uint64_t)((end.tv_sec - start.tv_sec) * 1000000 + (end.tv_nsec - start.tv_nsec) / 1000);
    struct engine_stats engine_counts;
    engine_stats(p->engine, &engine_counts);
    pthread_mutex_lock(&w->mutex);
    if (error == 0) {
        p->holds_expired = engine_counts.holds_expired;
        w->stats.batches++;
        w->stats.commands += command_count;
        w->stats.commit_latency_us_total += latency_us;
        if (latency_us > w->stats.commit_latency_us_max)
            w->stats.commit_latency_us_max = latency_us;
        if (command_count > w->stats.batch_commands_max)
            w->stats.batch_commands_max = command_count;
        w->stats.confirmed += b->confirmed;
        w->stats.cancelled += b->cancelled;
        for (int i = 0; i < WORKER_REASONS_MAX; i++)
            w->stats.rejected_by_reason[i] += b->rejected_by_reason[i];
    } else if (error == CATRACA_E_FENCED) {
        w->stats.fenced_commits++;
    } else {
        w->stats.commit_errors++;
    }
    pthread_mutex_unlock(&w->mutex);
    if (error != 0)
        return error;
    p->committed = p->applied;
    if (batch.snapshot != NULL)
        p->commands_since_snapshot = 0;
    if (w->config.on_commit != NULL) {
        struct worker_commit commit = {
            .event = p->event,
            .event_row = batch.event_row,
            .purchases = b->purchases,
            .purchase_count = b->purchase_count,
            .answers = b->answers,
            .answer_count = b->answer_count,
        };
        w->config.on_commit(w->config.on_commit_context, &commit);
    }
    return 0;
}

/*
 * Builds a partition's engine from the store: the snapshot, then the log
 * from the snapshot's offset up to the committed offset, applied silently.
 */
static int partition_recover_into(struct worker *w, struct partition *p);

/*
 * On failure the partition is left with no engine, so the next step recovers
 * again: a half-built engine (empty, or part-replayed) must never decide, or
 * it would commit an offset past entries it never applied.
 */
static int partition_recover(struct worker *w, struct partition *p)
{
    int error = partition_recover_into(w, p);
    if (error != 0) {
        engine_free(p->engine);
        p->engine = NULL;
    }
    return error;
}

static int partition_recover_into(struct worker *w, struct partition *p)
{
    struct log_seq committed = {0, 0}, snapshot_offset = {0, 0};
    uint8_t *snapshot = NULL;
    size_t snapshot_length = 0;
    engine_free(p->engine);
    p->engine = NULL;
    int error = engine_new(&w->config.engine, &p->engine);
    if (error != 0)
        return error;
    error = w->config.store.ops->load(w->config.store.context, p->event, &committed, &snapshot,
                                      &snapshot_length, &snapshot_offset);
    if (error == CATRACA_E_NOTFOUND)
        error = 0;
    if (error == 0 && snapshot != NULL)
        error = engine_snapshot_read(p->engine, snapshot, snapshot_length);
    free(snapshot);
    if (error != 0)
        return error;
    p->applied = snapshot != NULL ? snapshot_offset : (struct log_seq){0, 0};
    p->committed = committed;
    p->commands_since_snapshot = 0;
    while (log_seq_compare(p->applied, committed) < 0) {
        size_t count = 0;
        error = w->config.log.ops->read(w->config.log.context, p->event, p->applied, w->entries,
                                        w->config.batch_max, &count);
        if (error != 0)
            return error;
        while (count > 0 && log_seq_compare(w->entries[count - 1].seq, committed) > 0)
            count--;
        if (count == 0)
            break;
        partition_apply_entries(w, p, count, true);
    }
    return engine_validate(p->engine) == 0 ? 0 : CATRACA_E_CORRUPT;
}

/* Whether this worker may decide the partition now, and under which epoch. */
static bool partition_is_held(const struct worker *w, const struct partition *p, uint64_t *epoch)
{
    *epoch = 0;
    if (w->config.ownership.holds == NULL)
        return true;
    return w->config.ownership.holds(w->config.ownership.context, p->event, epoch);
}

/* Stops deciding a partition: its state is rebuilt from the store if it is held again. */
static void partition_drop(struct partition *p, const char *why)
{
    if (p->engine == NULL)
        return;
    log_line(LOGLINE_INFO, p->event, why, 0);
    engine_free(p->engine);
    p->engine = NULL;
}

static int partitions_discover(struct worker *w)
{
    size_t max = w->config.partitions_max, count = 0;
    char(*events)[CATRACA_ID_MAX + 1] = calloc(max, sizeof(*events));
    if (events == NULL)
        return CATRACA_E_NOMEM;
    int error = w->config.log.ops->list_partitions(w->config.log.context, events, max, &count);
    pthread_mutex_lock(&w->mutex);
    w->stats.is_log_reachable = error == 0;
    pthread_mutex_unlock(&w->mutex);
    if (error == 0 && w->config.ownership.offer != NULL)
        w->config.ownership.offer(w->config.ownership.context,
                                  (const char(*)[CATRACA_ID_MAX + 1]) events, count);
    for (size_t i = 0; error == 0 && i < count; i++) {
        if (partition_find(w, events[i]) != NULL)
            continue;
        if (w->partition_count == w->config.partitions_max)
            break;
        struct partition *p = &w->partitions[w->partition_count];
        memset(p, 0, sizeof(*p));
        snprintf(p->event, sizeof(p->event), "%s", events[i]);
        if (!partition_is_held(w, p, &p->epoch)) {
            /* Known, not ours (yet): partition_step recovers it if the lease comes. */
            pthread_mutex_lock(&w->mutex);
            w->partition_count++;
            pthread_mutex_unlock(&w->mutex);
            continue;
        }
        error = partition_recover(w, p);
        if (error != 0) {
            engine_free(p->engine);
            p->engine = NULL;
            log_line(LOGLINE_ERROR, events[i], "partition recovery failed", error);
            break;
        }
        pthread_mutex_lock(&w->mutex);
        w->partition_count++;
        pthread_mutex_unlock(&w->mutex);
    }
    free(events);
    return error;
}

/* One batch of one partition. Returns entries processed (>= 0) or an error. */
static int partition_step(struct worker *w, struct partition *p)
{
    uint64_t epoch = 0;
    if (!partition_is_held(w, p, &epoch)) {
        partition_drop(p, "lease not held: stepping down");
        return 0;
    }
    if (p->engine != NULL && epoch != p->epoch) /* lost and taken back: others decided since */
        partition_drop(p, "lease taken again under a new epoch: recovering");
    p->epoch = epoch;
    if (p->engine == NULL) {
        int recover_error = partition_recover(w, p);
        if (recover_error != 0)
            return recover_error;
    }
    size_t count = 0;
    int error = w->config.log.ops->read(w->config.log.context, p->event, p->applied, w->entries,
                                        w->config.batch_max, &count);
    if (error != 0 || count == 0)
        return error;
    batch_reset(&w->batch);
    error = partition_apply_entries(w, p, count, false);
    if (error == 0)
        error = partition_commit(w, p, count);
    if (error == CATRACA_E_FENCED) {
        if (w->config.ownership.lost != NULL)
            w->config.ownership.lost(w->config.ownership.context, p->event, p->epoch);
        partition_drop(p, "commit fenced: another worker owns the partition; stepping down");
        return error;
    }
    if (error != 0) {
        /* The engine ran ahead of the store: rebuild it from what is committed. */
        log_line(LOGLINE_WARN, p->event, "commit failed, recovering partition", error);
        int recover_error = partition_recover(w, p);
        if (recover_error != 0) {
            log_line(LOGLINE_ERROR, p->event, "recovery failed, will retry", recover_error);
            engine_free(p->engine);
            p->engine = NULL;
        }
        return error;
    }
    return (int)count;
}

/* When a scheduled sale's draw is due (INT64_MAX: none pending). */
static int64_t draw_due_ms(const struct engine *engine)
{
    struct engine_draw_view draw;
    engine_draw_state(engine, &draw);
    const struct engine_event_spec *spec = engine_event(engine);
    return draw.state == ENGINE_DRAW_PENDING && spec != NULL ? spec->opens_at_ms : INT64_MAX;
}

/* When the partition needs a log entry although nobody writes: a hold expiring, or a draw. */
static int64_t partition_due_ms(const struct engine *engine)
{
    int64_t expiry_ms = engine_next_expiry_ms(engine), draw_ms = draw_due_ms(engine);
    return draw_ms < expiry_ms ? draw_ms : expiry_ms;
}

/*
 * Appends a TICK when the partition's earliest hold is due by the wall clock, or the DRAW
 * (which reveals the seed) once a scheduled sale's opens_at has passed. A DRAW appended twice
 * (this worker before it applied the first, or a successor that recovered after a crash) is
 * answered REPEATED by the engine: the draw happens once, at the first DRAW in the log.
 */
static void partition_tick(struct worker *w, struct partition *p, int64_t now_ms)
{
    int64_t due_ms = partition_due_ms(p->engine);
    if (due_ms > now_ms || now_ms - p->last_tick_ms < TICK_SPACING_MS)
        return;
    struct engine_command tick = {.type = ENGINE_COMMAND_TICK, .now_ms = now_ms};
    bool is_draw = draw_due_ms(p->engine) <= now_ms;
    if (is_draw && now_ms - p->last_draw_ms < DRAW_SPACING_MS)
        return;
    if (is_draw) {
        tick.type = ENGINE_COMMAND_DRAW;
        engine_draw_seed(engine_event(p->engine)->secret, tick.u.draw.seed);
    }
    uint8_t record[64];
    size_t length = 0;
    if (codec_command_encode(&tick, record, sizeof(record), &length) != 0)
        return;
    struct log_append_item item = {
        .event = p->event, .record = record, .record_length = length, .time_ms = now_ms};
    int error = w->config.log.ops->append(w->config.log.context, &item, 1);
    if (error != 0) {
        log_line(LOGLINE_WARN, p->event, is_draw ? "DRAW append failed" : "TICK append failed", error);
        return;
    }
    if (is_draw)
        log_line(LOGLINE_INFO, p->event, "pre-queue draw appended (the seed is revealed)", 0);
    p->last_tick_ms = now_ms;
    if (is_draw)
        p->last_draw_ms = now_ms;
    pthread_mutex_lock(&w->mutex);
    w->stats.ticks_appended++;
    pthread_mutex_unlock(&w->mutex);
}

/* How long the loop may sleep: until the next hold is due, at most idle_poll_ms. */
static int64_t sleep_ms(const struct worker *w, int64_t now_ms)
{
    int64_t sleep = w->config.idle_poll_ms;
    for (uint32_t i = 0; i < w->partition_count; i++) {
        if (w->partitions[i].engine == NULL)
            continue;
        int64_t due = partition_due_ms(w->partitions[i].engine);
        due = due == INT64_MAX ? INT64_MAX : due - now_ms;
        if (due < sleep)
            sleep = due < 1 ? 1 : due;
    }
    return sleep;
}

/* Once a second: how far each partition decided here is behind the end of its log. */
static void partitions_measure_lag(struct worker *w)
{
    for (uint32_t i = 0; i < w->partition_count; i++) {
        struct partition *p = &w->partitions[i];
        uint64_t lag = 0;
        bool is_held = p->engine != NULL;
        bool is_measured = is_held && w->config.log.ops->count_after(
                                          w->config.log.context, p->event, p->applied, &lag) == 0;
        pthread_mutex_lock(&w->mutex);
        p->is_lag_reported = is_held;
        if (is_measured) /* else the last measure stands */
            p->log_lag = lag;
        pthread_mutex_unlock(&w->mutex);
    }
}

static void *worker_main(void *argument)
{
    struct worker *w = argument;
    int64_t last_discovery_ms = 0, last_lag_ms = 0;
    for (;;) {
        pthread_mutex_lock(&w->mutex);
        bool is_stopping = w->is_stopping, is_woken = w->is_woken;
        w->is_woken = false;
        pthread_mutex_unlock(&w->mutex);
        int64_t now_ms = worker_now_ms(w);
        if ((is_woken && now_ms - last_discovery_ms >= 50) || now_ms - last_discovery_ms >= 1000) {
            partitions_discover(w);
            last_discovery_ms = now_ms;
        }
        bool has_work = false;
        uint64_t held = 0;
        for (uint32_t i = 0; i < w->partition_count; i++) {
            if (partition_step(w, &w->partitions[i]) > 0)
                has_work = true;
            if (w->partitions[i].engine != NULL)
                partition_tick(w, &w->partitions[i], worker_now_ms(w));
            held += w->partitions[i].engine != NULL;
        }
        pthread_mutex_lock(&w->mutex);
        w->stats.partitions_held = held;
        pthread_mutex_unlock(&w->mutex);
        if (now_ms - last_lag_ms >= 1000) { /* after the steps: a dropped partition is gone */
            partitions_measure_lag(w);
            last_lag_ms = now_ms;
        }
        if (is_stopping && !has_work)
            break;
        if (has_work)
            continue;
        pthread_mutex_lock(&w->mutex);
        if (!w->is_woken && !w->is_stopping) {
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            int64_t ns = deadline.tv_nsec + sleep_ms(w, worker_now_ms(w)) * 1000000;
            deadline.tv_sec += ns / 1000000000;
            deadline.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&w->wake, &w->mutex, &deadline);
        }
        pthread_mutex_unlock(&w->mutex);
    }
    return NULL;
}

/* ---- life cycle -------------------------------------------------------------------------- */

static void worker_free(struct worker *w)
{
    for (uint32_t i = 0; i < w->partition_count; i++)
        engine_free(w->partitions[i].engine);
    free(w->partitions);
    free(w->entries);
    free(w->snapshot);
    free(w->batch.purchases);
    free(w->batch.index);
    free(w->batch.answers);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mutex);
    free(w);
}

int worker_start(const struct worker_config *config, struct worker **out)
{
    if (config->batch_max < 1 || config->snapshot_every < 1 || config->partitions_max < 1 ||
        config->log.ops == NULL || config->store.ops == NULL)
        return CATRACA_E_INVALID;
    struct worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CATRACA_E_NOMEM;
    w->config = *config;
    if (w->config.clock_ms == NULL)
        w->config.clock_ms = wall_clock_ms;
    if (w->config.idle_poll_ms == 0)
        w->config.idle_poll_ms = 100;
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->wake, NULL);
    w->partitions = calloc(config->partitions_max, sizeof(*w->partitions));
    w->entries = calloc(config->batch_max, sizeof(*w->entries));
    int error = (w->partitions == NULL || w->entries == NULL) ? CATRACA_E_NOMEM : 0;
    if (error == 0)
        error = partitions_discover(w);
    if (error == 0 && pthread_create(&w->thread, NULL, worker_main, w) != 0)
        error = CATRACA_E_NOMEM;
    if (error != 0) {
        worker_free(w);
        return error;
    }
    *out = w;
    return 0;
}

void worker_wake(struct worker *worker)
{
    pthread_mutex_lock(&worker->mutex);
    worker->is_woken = true;
    pthread_cond_signal(&worker->wake);
    pthread_mutex_unlock(&worker->mutex);
}

void worker_stop(struct worker *worker)
{
    if (worker == NULL)
        return;
    pthread_mutex_lock(&worker->mutex);
    worker->is_stopping = true;
    pthread_cond_signal(&worker->wake);
    pthread_mutex_unlock(&worker->mutex);
    pthread_join(worker->thread, NULL);
    worker->config.log.ops->close(worker->config.log.context);
    worker->config.store.ops->close(worker->config.store.context);
    worker_free(worker);
}

size_t worker_lags(struct worker *worker, struct worker_lag *out, size_t max)
{
    size_t count = 0;
    pthread_mutex_lock(&worker->mutex);
    for (uint32_t i = 0; i < worker->partition_count && count < max; i++) {
        const struct partition *p = &worker->partitions[i];
        if (!p->is_lag_reported)
            continue;
        snprintf(out[count].event, sizeof(out[count].event), "%s", p->event);
        out[count++].entries = p->log_lag;
    }
    pthread_mutex_unlock(&worker->mutex);
    return count;
}

void worker_stats(struct worker *worker, struct worker_stats *out)
{
    pthread_mutex_lock(&worker->mutex);
    *out = worker->stats;
    out->holds_expired = 0;
    for (uint32_t i = 0; i < worker->partition_count; i++)
        out->holds_expired += worker->partitions[i].holds_expired;
    pthread_mutex_unlock(&worker->mutex);
}
