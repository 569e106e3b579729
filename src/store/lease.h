/*
 * lease.h - partition ownership for the distributed mode: leases with a
 * fencing token, kept in PostgreSQL's `partitions` table (sql/001_init.sql).
 *
 * A lease keeper runs one thread per worker process. Every lease_ms / 3 it
 * heartbeats the `workers` table, renews the leases it holds, and takes free
 * or expired partitions (bumping their epoch) until it holds its fair share,
 * ceil(partitions / live workers); it gives back partitions beyond that share
 * so a worker that joins gets some. Partitions come from lease_offer() (the
 * worker's view of the log).
 *
 * Safety does not rest on clocks: every batch commit checks the epoch in the
 * same transaction (catraca_fence), so a worker that paused past its lease
 * can never commit. lease_holds() answers false as soon as the lease may have
 * run out by the local monotonic clock (measured from before the renewal was
 * sent), so such a worker steps down without even trying.
 */
#ifndef CATRACA_STORE_LEASE_H
#define CATRACA_STORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

struct lease_config {
    const char *conninfo;    /* PostgreSQL, as libpq takes it */
    const char *worker_id;   /* unique per process */
    uint32_t lease_ms;       /* a lease lasts this long after each renewal, >= 300 */
    uint32_t partitions_max; /* partitions tracked, >= 1 */
};

struct lease_stats {
    uint64_t acquired;     /* leases taken (each bumped an epoch) */
    uint64_t lost;         /* leases that ran out, were fenced, or given back */
    uint64_t round_errors; /* rounds that failed to reach PostgreSQL */
    uint32_t held;         /* held now */
    uint32_t live_workers; /* at the last round */
    bool is_connected;     /* the last round reached PostgreSQL */
};

struct lease;

/* Starts the keeper thread (it connects, and reconnects, on its own). 0 or CATRACA_E_*. */
int lease_start(const struct lease_config *config, struct lease **out);
/* The partitions that exist; keeps the last list. Any thread. */
void lease_offer(struct lease *lease, const char (*events)[CATRACA_ID_MAX + 1], size_t count);
/* Held now (by the local clock), and its epoch. Any thread; a mutex and a scan. */
bool lease_holds(struct lease *lease, const char *event, uint64_t *epoch);
/* A commit under epoch was fenced: drop the lease at once. */
void lease_lost(struct lease *lease, const char *event, uint64_t epoch);
/* Gives back every lease (others take over at once), stops the thread, frees. */
void lease_stop(struct lease *lease);
void lease_stats(struct lease *lease, struct lease_stats *out);

#endif
