/*
 * Unit test of the worker loop over an in-memory log and store (fakes are
 * fine here: the worker is the code that sits on top of them; the SQLite
 * adapters have their own tests and the system tests use the real thing).
 *
 * What must hold: every log entry takes effect exactly once across commit
 * failures and restarts (recovery from snapshot + replay), outcomes match a
 * plain engine fed the same log, and holds expire without traffic (the
 * worker appends TICKs).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/codec.h"
#include "core/error.h"
#include "worker/commit_wire.h"
#include "worker/worker.h"

#define ENTRIES_MAX 4096
#define ROWS_MAX 4096

/* ---- in-memory log ------------------------------------------------------------------------ */

struct memory_log {
    pthread_mutex_t mutex;
    char event[CATRACA_ID_MAX + 1];
    uint8_t records[ENTRIES_MAX][256];
    size_t lengths[ENTRIES_MAX];
    int64_t times[ENTRIES_MAX];
    size_t count;
    size_t readable; /* read() stops here when non-zero: entries the worker cannot reach yet */
};

static int mlog_append(void *context, struct log_append_item *items, size_t count)
{
    struct memory_log *log = context;
    pthread_mutex_lock(&log->mutex);
    for (size_t i = 0; i < count; i++) {
        assert_true(log->count < ENTRIES_MAX && items[i].record_length <= 256);
        memcpy(log->records[log->count], items[i].record, items[i].record_length);
        log->lengths[log->count] = items[i].record_length;
        log->times[log->count] = items[i].time_ms;
        log->count++;
        items[i].result = LOG_APPENDED;
        items[i].seq = (struct log_seq){log->count, 0};
    }
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

static int mlog_read(void *context, const char *event, struct log_seq after,
                     struct log_entry *entries, size_t max, size_t *count)
{
    struct memory_log *log = context;
    (void)event;
    pthread_mutex_lock(&log->mutex);
    *count = 0;
    size_t end = log->readable != 0 && log->readable < log->count ? log->readable : log->count;
    for (size_t i = after.major; i < end && *count < max; i++) {
        entries[*count] = (struct log_entry){.seq = {i + 1, 0},
                                             .time_ms = log->times[i],
                                             .record = log->records[i],
                                             .record_length = log->lengths[i]};
        (*count)++;
    }
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

static int mlog_count_after(void *context, const char *event, struct log_seq after, uint64_t *count)
{
    struct memory_log *log = context;
    (void)event;
    pthread_mutex_lock(&log->mutex);
    *count = log->count > after.major ? log->count - after.major : 0;
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

static int mlog_list(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max, size_t *count)
{
    struct memory_log *log = context;
    pthread_mutex_lock(&log->mutex);
    *count = log->count > 0 && max > 0 ? 1 : 0;
    if (*count)
        strcpy(events[0], log->event);
    pthread_mutex_unlock(&log->mutex);
    return 0;
}

static void noop_close(void *context)
{
    (void)context;
}

static const struct log_ops memory_log_ops = {.append = mlog_append,
                                              .read = mlog_read,
                                              .count_after = mlog_count_after,
                                              .list_partitions = mlog_list,
                                              .close = noop_close};

/* ---- in-memory store ---------------------------------------------------------------------- */

struct memory_store {
    pthread_mutex_t mutex;
    struct log_seq offset;
    uint8_t *snapshot;
    size_t snapshot_length;
    struct log_seq snapshot_offset;
    struct store_purchase rows[ROWS_MAX];
    size_t row_count;
    uint64_t arrivals;  /* rows created with has_arrival: must equal purchases, never more */
    int fail_countdown; /* the n-th commit fails (0 = never) */
    uint64_t commits;
    uint64_t epoch;      /* the partition's current epoch; a commit under another is fenced */
    uint64_t last_epoch; /* the epoch of the last commit that went through */
    uint64_t fenced;     /* commits refused */
};

static int mstore_commit(void *context, const struct store_batch *batch)
{
    struct memory_store *s = context;
    pthread_mutex_lock(&s->mutex);
    if (s->fail_countdown > 0 && --s->fail_countdown == 0) {
        pthread_mutex_unlock(&s->mutex);
        return CATRACA_E_IO;
    }
    if (batch->epoch != s->epoch) {
        s->fenced++;
        pthread_mutex_unlock(&s->mutex);
        return CATRACA_E_FENCED;
    }
    s->last_epoch = batch->epoch;
    for (size_t i = 0; i < batch->purchase_count; i++) {
        const struct store_purchase *p = &batch->purchases[i];
        size_t row = 0;
        while (row < s->row_count && s->rows[row].purchase_id != p->purchase_id)
            row++;
        if (row == s->row_count) {
            assert_true(p->has_arrival);
            assert_true(s->row_count < ROWS_MAX);
            s->rows[s->row_count++] = *p;
            s->arrivals++;
        } else {
            assert_false(p->has_arrival); /* an arrival applied twice would be a double effect */
            struct store_purchase *r = &s->rows[row];
            r->status = p->status;
            r->reason = p->reason;
            r->hold_expires_at_ms = p->hold_expires_at_ms;
            r->ticket_count = p->ticket_count;
            if (p->draw_rank > r->draw_rank) /* store.h: kept once set */
                r->draw_rank = p->draw_rank;
        }
    }
    s->offset = batch->offset;
    if (batch->snapshot != NULL) {
        free(s->snapshot);
        s->snapshot = malloc(batch->snapshot_length);
        memcpy(s->snapshot, batch->snapshot, batch->snapshot_length);
        s->snapshot_length = batch->snapshot_length;
        s->snapshot_offset = batch->snapshot_offset;
    }
    s->commits++;
    pthread_mutex_unlock(&s->mutex);
    return 0;
}

static int mstore_load(void *context, const char *event, struct log_seq *offset, uint8_t **snapshot,
                       size_t *snapshot_length, struct log_seq *snapshot_offset)
{
    struct memory_store *s = context;
    (void)event;
    pthread_mutex_lock(&s->mutex);
    *offset = s->offset;
    *snapshot = NULL;
    if (s->snapshot != NULL) {
        *snapshot = malloc(s->snapshot_length);
        memcpy(*snapshot, s->snapshot, s->snapshot_length);
        *snapshot_length = s->snapshot_length;
        *snapshot_offset = s->snapshot_offset;
    }
    int error = s->commits == 0 ? CATRACA_E_NOTFOUND : 0;
    pthread_mutex_unlock(&s->mutex);
    return error;
}

static const struct store_ops memory_store_ops = {
    .commit = mstore_commit, .load = mstore_load, .close = noop_close};

/* ---- helpers ------------------------------------------------------------------------------ */

static struct memory_log the_log;
static struct memory_store the_store;
static int64_t fake_now_ms;

static int64_t fake_clock(void *context)
{
    (void)context;
    return __atomic_load_n(&fake_now_ms, __ATOMIC_SEQ_CST);
}

static void append_command(const struct engine_command *command)
{
    uint8_t record[CATRACA_COMMAND_ENCODED_MAX];
    size_t length = 0;
    assert_int_equal(codec_command_encode(command, record, sizeof(record), &length), 0);
    struct log_append_item item = {
        .event = "ev", .record = record, .record_length = length, .time_ms = command->now_ms};
    assert_int_equal(mlog_append(&the_log, &item, 1), 0);
}

static void append_event(uint32_t capacity, int64_t hold_ms)
{
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 1000};
    strcpy(c.u.create_event.id, "ev");
    c.u.create_event.hold_ms = hold_ms;
    c.u.create_event.per_customer_limit = 4;
    c.u.create_event.state = ENGINE_STATE_OPEN;
    c.u.create_event.category_count = 1;
    strcpy(c.u.create_event.categories[0].id, "a");
    c.u.create_event.categories[0].capacity = capacity;
    append_command(&c);
}

static void append_purchase(uint64_t id, int64_t now_ms)
{
    struct engine_command c = {.type = ENGINE_COMMAND_PURCHASE, .now_ms = now_ms};
    c.u.purchase.purchase_id = id;
    snprintf(c.u.purchase.customer, sizeof(c.u.purchase.customer), "c%llu", (unsigned long long)id);
    strcpy(c.u.purchase.category, "a");
    c.u.purchase.quantity = 1;
    append_command(&c);
}

/* A lease keeper's answers, set by the test. */
struct fake_ownership {
    bool is_held;
    uint64_t epoch;
    int lost_calls;
    size_t offered;
};
static struct fake_ownership the_ownership;

static void fake_offer(void *context, const char (*events)[CATRACA_ID_MAX + 1], size_t count)
{
    struct fake_ownership *o = context;
    assert_true(count == 0 || strcmp(events[0], "ev") == 0);
    __atomic_store_n(&o->offered, count, __ATOMIC_SEQ_CST);
}

static bool fake_holds(void *context, const char *event, uint64_t *epoch)
{
    struct fake_ownership *o = context;
    assert_string_equal(event, "ev");
    *epoch = __atomic_load_n(&o->epoch, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&o->is_held, __ATOMIC_SEQ_CST);
}

static void fake_lost(void *context, const char *event, uint64_t epoch)
{
    struct fake_ownership *o = context;
    assert_string_equal(event, "ev");
    assert_int_equal(epoch, __atomic_load_n(&o->epoch, __ATOMIC_SEQ_CST));
    __atomic_add_fetch(&o->lost_calls, 1, __ATOMIC_SEQ_CST);
}

static struct worker *start_owned(uint32_t batch_max, uint32_t snapshot_every, bool is_owned)
{
    struct worker_config config = {
        .log = {.ops = &memory_log_ops, .context = &the_log},
        .store = {.ops = &memory_store_ops, .context = &the_store},
        .engine = {.purchases_max = 8192, .customers_max = 8192},
        .batch_max = batch_max,
        .snapshot_every = snapshot_every,
        .partitions_max = 4,
        .idle_poll_ms = 5,
        .clock_ms = fake_clock,
    };
    if (is_owned)
        config.ownership = (struct worker_ownership){
            .offer = fake_offer, .holds = fake_holds, .lost = fake_lost, .context = &the_ownership};
    struct worker *worker = NULL;
    assert_int_equal(worker_start(&config, &worker), 0);
    return worker;
}

static struct worker *start(uint32_t batch_max, uint32_t snapshot_every)
{
    return start_owned(batch_max, snapshot_every, false);
}

static uint64_t store_field(const uint64_t *field)
{
    pthread_mutex_lock(&the_store.mutex);
    uint64_t value = *field;
    pthread_mutex_unlock(&the_store.mutex);
    return value;
}

/* Waits (bounded: about 10 s, for a loaded machine) until the store has committed everything in
 * the log. */
static void wait_caught_up(void)
{
    for (int i = 0; i < 5000; i++) {
        pthread_mutex_lock(&the_log.mutex);
        size_t count = the_log.count;
        pthread_mutex_unlock(&the_log.mutex);
        pthread_mutex_lock(&the_store.mutex);
        bool is_caught_up = the_store.offset.major == count;
        pthread_mutex_unlock(&the_store.mutex);
        if (is_caught_up)
            return;
        usleep(2000);
    }
    fail_msg("worker did not catch up with the log");
}

static uint8_t status_of(uint64_t id);

static const struct store_purchase *row_of(uint64_t id)
{
    for (size_t i = 0; i < the_store.row_count; i++)
        if (the_store.rows[i].purchase_id == id)
            return &the_store.rows[i];
    return NULL;
}

static uint8_t status_of(uint64_t id)
{
    pthread_mutex_lock(&the_store.mutex);
    const struct store_purchase *p = row_of(id);
    uint8_t status = p ? p->status : ENGINE_STATUS_NONE;
    pthread_mutex_unlock(&the_store.mutex);
    return status;
}

static int setup(void **state)
{
    (void)state;
    memset(&the_log, 0, sizeof(the_log));
    strcpy(the_log.event, "ev");
    pthread_mutex_init(&the_log.mutex, NULL);
    free(the_store.snapshot);
    memset(&the_store, 0, sizeof(the_store));
    pthread_mutex_init(&the_store.mutex, NULL);
    fake_now_ms = 1000;
    memset(&the_ownership, 0, sizeof(the_ownership));
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_decides_in_order_exactly_once(void **state)
{
    (void)state;
    append_event(10, 60000);
    for (uint64_t id = 1; id <= 30; id++)
        append_purchase(id, 1000 + (int64_t)id);
    struct worker *worker = start(7, 1000);
    wait_caught_up();
    worker_stop(worker);
    assert_int_equal(the_store.arrivals, 30);
    for (uint64_t id = 1; id <= 30; id++) {
        const struct store_purchase *p = row_of(id);
        assert_non_null(p);
        /* capacity 10: the first ten hold, the next ten wait, the rest can never be served */
        uint8_t expected = id <= 10   ? ENGINE_STATUS_HELD
                           : id <= 20 ? ENGINE_STATUS_WAITING
                                      : ENGINE_STATUS_REJECTED;
        assert_int_equal(p->status, expected);
        assert_int_equal(p->seq.major, id + 1);
    }
}

static void test_commit_failure_and_restart_apply_each_entry_once(void **state)
{
    (void)state;
    append_event(50, 60000);
    for (uint64_t id = 1; id <= 40; id++)
        append_purchase(id, 1000 + (int64_t)id);
    the_store.fail_countdown = 3; /* the third commit fails: the worker must rebuild */
    struct worker *worker = start(5, 4);
    wait_caught_up();
    worker_stop(worker);
    assert_int_equal(the_store.arrivals, 40);
    /* Restart on the same log and store (snapshot + replay), then more traffic. */
    for (uint64_t id = 41; id <= 60; id++)
        append_purchase(id, 2000 + (int64_t)id);
    worker = start(5, 4);
    wait_caught_up();
    worker_stop(worker);
    assert_int_equal(the_store.arrivals, 60);
    size_t held = 0;
    for (size_t i = 0; i < the_store.row_count; i++)
        held += the_store.rows[i].status == ENGINE_STATUS_HELD;
    assert_int_equal(held, 50);
}

static void test_holds_expire_without_traffic(void **state)
{
    (void)state;
    append_event(1, 2000);
    append_purchase(1, 1000);
    append_purchase(2, 1001);
    struct worker *worker = start(16, 1000);
    wait_caught_up();
    assert_int_equal(row_of(1)->status, ENGINE_STATUS_HELD);
    assert_int_equal(row_of(2)->status, ENGINE_STATUS_WAITING);
    __atomic_store_n(&fake_now_ms, 3000, __ATOMIC_SEQ_CST); /* the hold is due */
    for (int i = 0; i < 1000 && status_of(1) != ENGINE_STATUS_EXPIRED; i++) {
        worker_wake(worker);
        usleep(2000);
    }
    wait_caught_up();
    worker_stop(worker);
    assert_int_equal(row_of(1)->status, ENGINE_STATUS_EXPIRED);
    assert_int_equal(row_of(2)->status, ENGINE_STATUS_HELD);
    struct engine_command tick;
    assert_int_equal(codec_command_decode(the_log.records[3], the_log.lengths[3], &tick), 0);
    assert_int_equal(tick.type, ENGINE_COMMAND_TICK);
}

/*
 * A scheduled sale: no DRAW before opens_at; once the clock passes it, exactly one DRAW with
 * the event's seed (none more once it is applied, however long the worker runs), and the
 * pre-queue's rows carry the draw's ranks 1..n.
 */
static void test_draws_once_when_the_sale_opens(void **state)
{
    (void)state;
    struct engine_command c = {.type = ENGINE_COMMAND_CREATE_EVENT, .now_ms = 1000};
    strcpy(c.u.create_event.id, "ev");
    c.u.create_event.hold_ms = 60000;
    c.u.create_event.per_customer_limit = 4;
    c.u.create_event.state = ENGINE_STATE_OPEN;
    c.u.create_event.category_count = 1;
    memcpy(c.u.create_event.secret, "worker-secret-16", 16);
    strcpy(c.u.create_event.categories[0].id, "a");
    c.u.create_event.categories[0].capacity = 2;
    c.u.create_event.opens_at_ms = 5000;
    c.u.create_event.prequeue_ms = 2000;
    append_command(&c);
    for (uint64_t id = 1; id <= 5; id++)
        append_purchase(id, 3500 + (int64_t)id);
    struct worker *worker = start(16, 1000);
    wait_caught_up();
    assert_int_equal(status_of(1), ENGINE_STATUS_PREQUEUED);
    __atomic_store_n(&fake_now_ms, 4999, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 20; i++) {
        worker_wake(worker);
        usleep(2000);
    }
    pthread_mutex_lock(&the_log.mutex);
    assert_int_equal(the_log.count, 6); /* not yet: no entry appended */
    pthread_mutex_unlock(&the_log.mutex);
    __atomic_store_n(&fake_now_ms, 5000, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 1000 && status_of(1) == ENGINE_STATUS_PREQUEUED; i++) {
        worker_wake(worker);
        usleep(2000);
    }
    wait_caught_up();
    __atomic_store_n(&fake_now_ms, 9000, __ATOMIC_SEQ_CST); /* long after: nothing more */
    for (int i = 0; i < 20; i++) {
        worker_wake(worker);
        usleep(2000);
    }
    wait_caught_up();
    worker_stop(worker);
    size_t draws = 0;
    uint8_t seed[CATRACA_DRAW_SEED_BYTES];
    engine_draw_seed(c.u.create_event.secret, seed);
    for (size_t i = 0; i < the_log.count; i++) {
        struct engine_command entry;
        assert_int_equal(codec_command_decode(the_log.records[i], the_log.lengths[i], &entry), 0);
        if (entry.type != ENGINE_COMMAND_DRAW)
            continue;
        draws++;
        assert_memory_equal(entry.u.draw.seed, seed, sizeof(seed));
        assert_true(entry.now_ms >= 5000);
    }
    assert_int_equal(draws, 1);
    uint32_t ranks_seen = 0, held = 0;
    for (uint64_t id = 1; id <= 5; id++) {
        const struct store_purchase *row = row_of(id);
        assert_true(row->draw_rank >= 1 && row->draw_rank <= 5);
        ranks_seen |= 1u << row->draw_rank;
        held += row->status == ENGINE_STATUS_HELD;
        if (row->status == ENGINE_STATUS_HELD)
            assert_true(row->draw_rank <= 2); /* the draw's first two hold the two tickets */
    }
    assert_int_equal(ranks_seen, 0x3e);
    assert_int_equal(held, 2);
}

/*
 * Distributed mode: the worker decides only while it holds the lease, carries
 * the epoch into every commit, and steps down when a commit is fenced (a
 * paused worker woke up after another took over); taken again under a new
 * epoch, it rebuilds from the store and applies each entry exactly once.
 */
static void test_decides_only_under_a_held_lease_and_steps_down_when_fenced(void **state)
{
    (void)state;
    append_event(100, 60000);
    for (uint64_t id = 1; id <= 10; id++)
        append_purchase(id, 1000 + (int64_t)id);
    struct worker *worker = start_owned(4, 3, true);
    for (int i = 0; i < 20; i++) {
        worker_wake(worker);
        usleep(2000);
    }
    assert_int_equal(store_field(&the_store.commits), 0); /* not held: nothing decided */
    assert_true(__atomic_load_n(&the_ownership.offered, __ATOMIC_SEQ_CST) == 1);

    the_store.epoch = 1; /* only the test thread writes it while no commit can pass */
    __atomic_store_n(&the_ownership.epoch, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&the_ownership.is_held, true, __ATOMIC_SEQ_CST);
    worker_wake(worker);
    wait_caught_up();
    assert_int_equal(store_field(&the_store.arrivals), 10);
    assert_int_equal(store_field(&the_store.last_epoch), 1);

    /* Another worker takes over (epoch 2) while this one still believes it holds epoch 1. */
    pthread_mutex_lock(&the_store.mutex);
    the_store.epoch = 2;
    struct log_seq before = the_store.offset;
    pthread_mutex_unlock(&the_store.mutex);
    for (uint64_t id = 11; id <= 15; id++)
        append_purchase(id, 2000 + (int64_t)id);
    for (int i = 0; i < 1000 && __atomic_load_n(&the_ownership.lost_calls, __ATOMIC_SEQ_CST) == 0;
         i++) {
        worker_wake(worker);
        usleep(2000);
    }
    assert_true(__atomic_load_n(&the_ownership.lost_calls, __ATOMIC_SEQ_CST) >= 1);
    struct worker_stats stats;
    worker_stats(worker, &stats);
    assert_true(stats.fenced_commits >= 1);
    pthread_mutex_lock(&the_store.mutex);
    assert_int_equal(the_store.offset.major, before.major); /* the fenced batch left no trace */
    assert_int_equal(the_store.arrivals, 10);
    pthread_mutex_unlock(&the_store.mutex);

    /* The lease comes back under epoch 2: rebuild from the store, decide the rest once. */
    __atomic_store_n(&the_ownership.epoch, 2, __ATOMIC_SEQ_CST);
    worker_wake(worker);
    wait_caught_up();
    worker_stop(worker);
    assert_int_equal(the_store.arrivals, 15);
    assert_int_equal(the_store.last_epoch, 2);
    for (uint64_t id = 1; id <= 15; id++)
        assert_int_equal(row_of(id)->status, ENGINE_STATUS_HELD);
}

/*
 * Advances the fake clock a second, wakes the worker a few times, then waits (bounded: about
 * 4 s, for a loaded machine) until its report shows `count` partitions, the first with `entries`
 * behind. Returns what the report shows then.
 */
static size_t lags_after_a_second(struct worker *worker, struct worker_lag *lags, size_t count,
                                  uint64_t entries)
{
    __atomic_add_fetch(&fake_now_ms, 1000, __ATOMIC_SEQ_CST);
    size_t shown = 0;
    for (int i = 0; i < 2000; i++) {
        worker_wake(worker);
        usleep(2000);
        shown = worker_lags(worker, lags, 4);
        if (i >= 20 && shown == count && (count == 0 || lags[0].entries == entries))
            break;
    }
    return shown;
}

static void test_reports_the_log_lag_of_partitions_decided_here(void **state)
{
    (void)state;
    append_event(100, 60000);
    for (uint64_t id = 1; id <= 10; id++)
        append_purchase(id, 1000 + (int64_t)id);
    struct worker *worker = start_owned(4, 100, true);
    struct worker_lag lags[4];
    assert_int_equal(lags_after_a_second(worker, lags, 0, 0), 0); /* not held: not reported */
    the_store.epoch = 1; /* only the test thread writes it while no commit can pass */
    __atomic_store_n(&the_ownership.epoch, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&the_ownership.is_held, true, __ATOMIC_SEQ_CST);
    worker_wake(worker);
    wait_caught_up();
    assert_int_equal(lags_after_a_second(worker, lags, 1, 0), 1);
    assert_string_equal(lags[0].event, "ev");
    assert_int_equal(lags[0].entries, 0);
    pthread_mutex_lock(&the_log.mutex);
    the_log.readable = the_log.count; /* 7 more entries the worker cannot read yet */
    pthread_mutex_unlock(&the_log.mutex);
    for (uint64_t id = 11; id <= 17; id++)
        append_purchase(id, 2000 + (int64_t)id);
    assert_int_equal(lags_after_a_second(worker, lags, 1, 7), 1);
    assert_int_equal(lags[0].entries, 7);
    pthread_mutex_lock(&the_log.mutex);
    the_log.readable = 0;
    pthread_mutex_unlock(&the_log.mutex);
    worker_wake(worker);
    wait_caught_up();
    assert_int_equal(lags_after_a_second(worker, lags, 1, 0), 1);
    assert_int_equal(lags[0].entries, 0);
    __atomic_store_n(&the_ownership.is_held, false, __ATOMIC_SEQ_CST); /* the lease moved */
    assert_int_equal(lags_after_a_second(worker, lags, 0, 0), 0);
    worker_stop(worker);
}

/* A commit message carries the late payment and the line facts of each row (format 2). */
static struct store_purchase decoded_row;
static size_t decoded_rows;

static void keep_first_row(void *context, const struct worker_commit *commit)
{
    (void)context;
    decoded_rows = commit->purchase_count;
    if (commit->purchase_count > 0)
        decoded_row = commit->purchases[0];
}

static void test_commit_wire_carries_refunds_and_line_facts(void **state)
{
    (void)state;
    struct store_purchase row = {.purchase_id = 42,
                                 .quantity = 3,
                                 .status = ENGINE_STATUS_EXPIRED,
                                 .is_refund_due = true,
                                 .ahead = 17,
                                 .line = {.is_known = true,
                                          .available = 1,
                                          .held = 2,
                                          .sold = 3,
                                          .returned = 4,
                                          .hold_ms = 600000}};
    strcpy(row.event, "ev");
    strcpy(row.payment_ref, "psp_late");
    struct worker_commit commit = {.event = "ev", .purchases = &row, .purchase_count = 1};
    static uint8_t buffer[4096];
    size_t length = 0;
    assert_true(commit_wire_size_max(&commit) <= sizeof(buffer));
    assert_int_equal(commit_wire_encode(&commit, buffer, sizeof(buffer), &length), 0);
    assert_int_equal(commit_wire_decode(buffer, length, keep_first_row, NULL), 0);
    assert_int_equal(decoded_rows, 1);
    assert_true(decoded_row.is_refund_due);
    assert_string_equal(decoded_row.payment_ref, "psp_late");
    assert_int_equal(decoded_row.ahead, 17);
    assert_true(decoded_row.line.is_known && decoded_row.line.returned == 4);
    assert_int_equal(decoded_row.line.hold_ms, 600000);
    for (size_t cut = 0; cut < length; cut++)
        assert_int_not_equal(commit_wire_decode(buffer, cut, keep_first_row, NULL), 0);
    buffer[0] = 1; /* the format before refunds */
    assert_int_equal(commit_wire_decode(buffer, length, keep_first_row, NULL), CATRACA_E_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_decides_in_order_exactly_once, setup),
        cmocka_unit_test(test_commit_wire_carries_refunds_and_line_facts),
        cmocka_unit_test_setup(test_commit_failure_and_restart_apply_each_entry_once, setup),
        cmocka_unit_test_setup(test_holds_expire_without_traffic, setup),
        cmocka_unit_test_setup(test_draws_once_when_the_sale_opens, setup),
        cmocka_unit_test_setup(test_reports_the_log_lag_of_partitions_decided_here, setup),
        cmocka_unit_test_setup(test_decides_only_under_a_held_lease_and_steps_down_when_fenced,
                               setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
