/*
 * audit.h - `catraca audit`: replay every event's log through the engine and
 * compare every stored decision with the replay (see audit.c).
 */
#ifndef CATRACA_APP_AUDIT_H
#define CATRACA_APP_AUDIT_H

#include <stdint.h>

#include "core/engine.h"

/* Embedded mode: the database in data/. Returns the exit code: 0 clean, 1 differences, 2 error. */
int audit_run(const char *data, uint32_t purchases_max, uint32_t customers_max);

#endif
