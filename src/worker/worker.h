/*
 * worker.h - the loop that decides: read a batch from the log after the
 * committed offset -> engine -> commit outcomes and the new offset in one
 * store transaction -> tell the gateway (on_commit).
 *
 * One worker thread owns every partition it serves (embedded mode: all of
 * them). Each partition has its own engine. After a crash, start-up restores
 * each engine from the store's snapshot and replays the log from the
 * snapshot's offset; entries up to the committed offset are applied without
 * committing again (the engine is deterministic: same decisions), so every
 * entry takes effect exactly once.
 *
 * Expiry needs no traffic: when the earliest hold of a partition is due by
 * the wall clock, the worker appends a TICK to that partition's log, so that
 * time, too, is in the log and replays identically.
 */
#ifndef CATRACA_WORKER_WORKER_H
#define CATRACA_WORKER_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "log/log.h"
#include "store/store.h"

/* What one committed batch changed; pointers valid during the callback only. */
struct worker_commit {
    const char *event;
    const struct store_event *event_row; /* NULL until the event exists */
    const struct store_purchase *purchases;
    size_t purchase_count;
    const struct store_answer *answers;
    size_t answer_count;
};

#define WORKER_REASONS_MAX 32 /* > every enum engine_reason value */

struct worker_stats {
    uint64_t batches;
    uint64_t commands;
    uint64_t commit_errors;
    uint64_t corrupt_records;
    uint64_t ticks_appended;
    uint64_t invariant_violations; /* engine_validate() failures, checked at each snapshot */
    uint64_t holds_expired;
    uint64_t commit_latency_us_total;
    uint64_t commit_latency_us_max;
    uint64_t batch_commands_max;
    uint64_t fenced_commits;  /* commits refused because another worker took the partition */
    uint64_t partitions_held; /* partitions this worker decides now */
    /* Purchases that reached a final state in batches committed here (never replays). */
    uint64_t confirmed;
    uint64_t cancelled;
    uint64_t rejected_by_reason[WORKER_REASONS_MAX]; /* index: enum engine_reason */
    bool is_log_reachable;    /* the last discovery round (about a second ago) read the log */
};

/*
 * Who may decide which partition (distributed mode). NULL functions: this
 * worker owns every partition under epoch 0 (embedded mode).
 *
 * offer: the partitions found in the log, each discovery round (at least once
 * a second), so the owner of the leases can claim free ones.
 * holds: whether this worker holds the partition's lease now, and under which
 * epoch (the fencing token every commit carries). Called before every batch;
 * must be cheap and must answer false once the lease may have run out.
 * lost: a commit was fenced (another worker took over); forget the lease.
 * Called on the worker thread.
 */
struct worker_ownership {
    void (*offer)(void *context, const char (*events)[CATRACA_ID_MAX + 1], size_t count);
    bool (*holds)(void *context, const char *event, uint64_t *epoch);
    void (*lost)(void *context, const char *event, uint64_t epoch);
    void *context;
};

struct worker_config {
    /* Handles for the worker thread's exclusive use; closed by worker_stop(). */
    struct catraca_log log;
    struct catraca_store store;
    struct engine_config engine; /* pools of each partition's engine */
    uint32_t batch_max;          /* log entries per transaction, >= 1 */
    uint32_t snapshot_every;     /* commands between snapshots, >= 1 */
    uint32_t partitions_max;     /* events served, >= 1 */
    uint32_t idle_poll_ms;       /* longest sleep without a wake-up */
    /* Called on the worker thread after each commit. */
    void (*on_commit)(void *context, const struct worker_commit *commit);
    void *on_commit_context;
    struct worker_ownership ownership;
    /* Wall clock in ms for TICKs (tests may inject one); NULL = CLOCK_REALTIME. */
    int64_t (*clock_ms)(void *context);
    void *clock_context;
};

struct worker;

/*
 * Recovers every partition found in the log, then starts the thread.
 * Returns 0, CATRACA_E_INVALID, CATRACA_E_NOMEM, or the store/log error that
 * made recovery impossible.
 */
int worker_start(const struct worker_config *config, struct worker **out);
/* New entries may be in the log: wake the loop. Any thread. */
void worker_wake(struct worker *worker);
/* Finishes the batch in flight, stops the thread, closes the handles, frees. */
void worker_stop(struct worker *worker);
/* A consistent copy of the counters. Any thread. */
void worker_stats(struct worker *worker, struct worker_stats *out);

struct worker_lag {
    char event[CATRACA_ID_MAX + 1];
    uint64_t entries; /* log entries not decided yet */
};
/*
 * The log lag of each partition decided here, measured at most about a second
 * ago: up to max of them in out; returns how many. Any thread.
 */
size_t worker_lags(struct worker *worker, struct worker_lag *out, size_t max);

#endif
