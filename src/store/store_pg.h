/*
 * store_pg.h - the store on PostgreSQL (distributed mode), with libpq.
 *
 * commit() is one implicit transaction sent as one pipeline (libpq pipeline
 * mode): fence check, event row, all purchase rows as arrays (unnest), the
 * answers, the offset and, now and then, the snapshot; one round trip and
 * one fsync per batch, never a transaction per purchase. catraca_fence
 * locks the partition row and refuses a stale epoch, so the batch of a
 * worker that lost its lease rolls back whole (CATRACA_E_FENCED).
 *
 * A handle reconnects after a broken connection: calls made while PostgreSQL
 * is down return CATRACA_E_UNAVAILABLE, and the first call after it is back
 * works. A commit whose connection broke at the very end may or may not have
 * committed; the worker then reloads the committed offset, which tells.
 */
#ifndef CATRACA_STORE_STORE_PG_H
#define CATRACA_STORE_STORE_PG_H

#include <stdio.h>

#include "store/store.h"

/* 0 even when PostgreSQL is unreachable now (each call connects again); CATRACA_E_NOMEM. */
int store_pg_open(const char *conninfo, struct catraca_store *out);
/*
 * Applies the embedded migrations the database lacks, in order, each in its
 * own transaction under an advisory lock (two migrates at once are safe).
 * Reports one line per migration to report (may be NULL).
 */
int store_pg_migrate(const char *conninfo, FILE *report);
/* The version the database is at (0: never migrated) and the one this binary needs. */
int store_pg_schema_version(const char *conninfo, int *database_version, int *binary_version);

#endif
