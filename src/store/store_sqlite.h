/*
 * store_sqlite.h - the store in the same SQLite file as the log (embedded
 * mode). Purchases are relational rows (status, hold expiry, tickets); each
 * commit() is one transaction holding outcomes, the partition's offset and,
 * now and then, the engine snapshot. Epochs are checked as in the
 * distributed store, so the fencing contract is the same.
 */
#ifndef CATRACA_STORE_STORE_SQLITE_H
#define CATRACA_STORE_STORE_SQLITE_H

#include <stdbool.h>

#include "store/store.h"

int store_sqlite_open(const char *path, bool is_synchronous_full, int busy_timeout_ms,
                      struct catraca_store *out);

#endif
