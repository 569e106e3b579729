/*
 * conformance_log.h - what every log adapter (src/log/log.h) must do, as one
 * suite that runs against any of them: SQLite (test_log_sqlite.c), Redis
 * (test_log_redis.c), Kafka (test_log_kafka.c).
 *
 * It checks: order within a partition; read(after, max) paging; durability
 * (what was appended reads back on a handle opened after the first closed);
 * seqs that only grow, across handles and threads; batch appends (many items,
 * several events, in order, atomic: one invalid item appends nothing);
 * idempotency (a key's retry is LOG_DUPLICATE with the earlier seq and
 * purchase, a key with another request hash LOG_DUPLICATE_MISMATCH, a
 * purchase id already in the log a duplicate); find_purchase, count_after,
 * last_seq, list_partitions; binary records and time_ms extremes; bounds
 * (event ids of 1..CATRACA_ID_MAX bytes, records up to
 * CATRACA_COMMAND_ENCODED_MAX); what fencing needs of the log (a worker that
 * takes a partition over under a new epoch re-reads from the stored seq and
 * gets exactly the entries its predecessor got); and faults, when the target
 * can inject them: each must be an error from append (never 0) and its items
 * must not read back.
 *
 * ---- Adding a target (a new backend, or Kafka) ------------------------------
 * 1. Fill a struct conformance_target: open() returns a NEW handle on the
 *    SAME log each call (the suite opens several at once, closes and reopens
 *    them, and uses one per thread); a server may be shared with other runs:
 *    the suite names every event, idempotency scope and purchase id after a
 *    prefix unique to the run, and never needs a flush (list_partitions is
 *    checked for "contains", and for a bounded list against the full one).
 * 2. Set capabilities only where the backend legitimately differs (below;
 *    say why in the target).
 * 3. Fault hooks are optional: NULL skips that fault's case (cmocka prints it
 *    as skipped). A network target puts tests/log/fault_proxy.h between its
 *    handles and the server and maps cut_connections() to the proxy's modes.
 * 4. main() calls conformance_log_run(&target) (exit status: failed cases),
 *    then the backend's own cases; link tests/log/conformance_log.c (the
 *    CMake library catraca_conformance) and register the executable in
 *    CMakeLists.txt (network backends under tests/servers.py).
 *
 * Idempotency is checked as one process sees it: every handle of a run lives
 * in the test process. That is all Kafka promises too (CONTRACT17.md: keys are
 * recognised by a process-wide table, since Kafka cannot check a key
 * atomically across processes); across processes it is the backend's own test.
 *
 * Randomized cases print their seed; CATRACA_SEED=<n> reproduces a run.
 */
#ifndef CATRACA_TESTS_LOG_CONFORMANCE_LOG_H
#define CATRACA_TESTS_LOG_CONFORMANCE_LOG_H

#include <stddef.h>

#include "log/log.h"

/* Where a backend may legitimately differ from SQLite, the reference. Keep these few. */
enum conformance_capability {
    /*
     * An append that returned an error may still have happened: the server
     * applied it and the reply was lost (log_redis.h's dropped-reply caveat,
     * Kafka's delivery-report time-out). The suite then accepts a failed
     * append's items reading back EXACTLY once, and checks that retrying the
     * same items (same keys and purchase ids) answers LOG_DUPLICATE with the
     * seq they read back at, never a second entry.
     */
    CONFORMANCE_ERROR_MAY_HAVE_APPENDED = 1u << 0,
    /*
     * ...and only part of a failed batch may be in the log (Kafka: one topic
     * per event and no transactions, so items of other events already
     * acknowledged stay). Without it a failed batch is all or nothing.
     */
    CONFORMANCE_ERROR_MAY_APPEND_PART = 1u << 1,
    /*
     * find_purchase answers from what this process appended, without asking
     * the server (Kafka cannot look a purchase up: log_kafka.h), so while the
     * server is down it answers as when it is up (CATRACA_E_NOTFOUND for a
     * purchase it never appended) instead of CATRACA_E_UNAVAILABLE.
     */
    CONFORMANCE_FIND_IS_LOCAL = 1u << 2,
};

/* How cut_connections() breaks the way to the server (fault_proxy.h's modes). */
enum conformance_cut {
    CONFORMANCE_CUT_REQUEST, /* connections close as the request is sent: the server never sees it */
    CONFORMANCE_CUT_REPLY,   /* the server gets the request; the connection closes before the reply */
    CONFORMANCE_CUT_STALL,   /* nothing moves, connections stay open: the time-out must fire */
    CONFORMANCE_CUT_DOWN,    /* every connection closes and new ones are refused */
};

struct conformance_target {
    const char *name; /* "sqlite", "redis", "kafka": in messages */
    void *context;    /* passed to every callback */
    /*
     * A new handle on the target's log (the same log on every call), whose
     * read() returns up to read_max entries (the suite asks for 1..64). 0, or
     * an error (the case fails).
     */
    int (*open)(void *context, size_t read_max, struct catraca_log *out);
    /* Closes a handle from open(); NULL: log->ops->close(log->context). */
    void (*close)(void *context, struct catraca_log *log);
    unsigned capabilities; /* enum conformance_capability bits */
    /*
     * The longest an append may take when the server stalls (the adapter's
     * time-out plus its retries); the stall case fails when append takes more
     * than twice this plus a second. 0 when cut_connections is NULL.
     */
    int append_timeout_ms;

    /* ---- faults: each may be NULL (that case is skipped) ----------------------------------- */
    /* The next append's COMMIT fails (SQLite: a commit hook turns it into a ROLLBACK). */
    void (*fail_next_commit)(void *context);
    /* The next append's fsync fails (SQLite: a VFS whose xSync fails once). */
    void (*fail_next_sync)(void *context);
    /*
     * From now until restore_connections(), the way to the server breaks as
     * `how` says, for every handle. 0, or -1 when the target cannot do that
     * kind (that round is skipped).
     */
    int (*cut_connections)(void *context, enum conformance_cut how);
    void (*restore_connections)(void *context);
};

struct fault_proxy;
/* Sets proxy (tests/log/fault_proxy.h) to the mode that breaks the way to the server as `how`
 * says: what a network target's cut_connections does. */
void conformance_cut_through(struct fault_proxy *proxy, enum conformance_cut how);

/*
 * Runs every case against target (a cmocka group named after it). Returns the
 * number of failed cases (0: conformant). Not reentrant: one run at a time.
 */
int conformance_log_run(const struct conformance_target *target);

#endif
