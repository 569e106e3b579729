/*
 * store_pg.h - the store on PostgreSQL (distributed mode), with libpq.
 *
 * commit() is one transaction sent as one pipeline (libpq pipeline mode):
 * fence check, event row, all purchase rows as arrays (unnest), the answers,
 * the offset and, now and then, the snapshot; one round trip and one fsync
 * per batch, never a transaction per purchase. catraca_fence (sql/001)
 * locks the partition row and refuses a stale epoch, so the batch of a
 * worker that lost its lease rolls back whole (CATRACA_E_FENCED). Any other
 * failure rolls the whole batch back too: CATRACA_E_IO when a statement
 * failed (the connection stays usable), CATRACA_E_TOO_LARGE or
 * CATRACA_E_NOMEM when the batch could not be encoded (nothing was sent).
 *
 * A handle reconnects after a broken connection: calls made while PostgreSQL
 * is down return CATRACA_E_UNAVAILABLE, and the first call after it is back
 * works (a read finding its connection broken retries once at once). A
 * commit whose connection broke at the very end may or may not have
 * committed; the worker then reloads the committed offset, which tells.
 *
 * One handle per thread, as store.h says; the schema is the embedded
 * sql/NNN_*.sql migrations (migrations.h), applied by store_pg_migrate.
 */
#ifndef CATRACA_STORE_STORE_PG_H
#define CATRACA_STORE_STORE_PG_H

#include <stdio.h>

#include "store/store.h"

/*
 * Opens a handle on conninfo (as libpq takes it). 0 also when PostgreSQL is
 * unreachable now (each call connects again and returns CATRACA_E_UNAVAILABLE
 * until it is back); CATRACA_E_VERSION when a reachable database lacks
 * migrations this binary has (run `catraca migrate`); CATRACA_E_NOMEM.
 */
int store_pg_open(const char *conninfo, struct catraca_store *out);
/*
 * Applies the embedded migrations the database lacks, in version order, each
 * in its own transaction under pg_advisory_xact_lock (two migrates at once
 * are safe), recording each in catraca_migrations (created if missing).
 * Writes one line per migration applied, then one summary line, to report
 * (may be NULL). 0, CATRACA_E_UNAVAILABLE, or CATRACA_E_IO (nothing of the
 * failing migration stays).
 */
int store_pg_migrate(const char *conninfo, FILE *report);
/* The version the database is at (0: never migrated) and the one this binary needs. */
int store_pg_schema_version(const char *conninfo, int *database_version, int *binary_version);

#endif
