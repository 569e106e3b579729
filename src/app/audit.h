/*
 * audit.h - `catraca audit`: replay every event's log through the engine and
 * compare every stored decision with the replay (see audit.c).
 *
 * Every entry point prints its findings on stdout and returns the exit code:
 * 0 clean, 1 a difference (named on a line starting "DIFFERENCE"), 2 the log
 * or the store could not be read.
 */
#ifndef CATRACA_APP_AUDIT_H
#define CATRACA_APP_AUDIT_H

#include <stdint.h>

#include "core/engine.h"
#include "log/backend.h"
#include "log/log.h"
#include "store/store.h"

/* Audits every event of log (and every event only store knows) against store, one event at
 * a time with an engine of config's size. The handles stay open (the caller's). */
int audit_log_and_store(const struct catraca_log *log, const struct catraca_store *store,
                        const struct engine_config *config);

/* Embedded mode: the database in data/. */
int audit_run(const char *data, uint32_t purchases_max, uint32_t customers_max);

/* Distributed mode: the log backend's options (backend.h) name the log the gateways appended
 * to, postgres (a libpq conninfo) the store the workers wrote. */
int audit_distributed_run(const struct backend_options *backend, const char *postgres,
                          uint32_t purchases_max, uint32_t customers_max);

#endif
