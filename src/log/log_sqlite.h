/*
 * log_sqlite.h - the log in a SQLite database (embedded mode): WAL, one
 * transaction per append() call (group commit), synchronous=FULL by default
 * so a returned append survives power loss; NORMAL survives a process crash
 * only. A position is {rowid, 0}: rowids grow, so positions order the log.
 */
#ifndef CATRACA_LOG_LOG_SQLITE_H
#define CATRACA_LOG_LOG_SQLITE_H

#include <stdbool.h>

#include "log/log.h"

struct log_sqlite_options {
    bool is_synchronous_full; /* true: fsync every commit */
    int busy_timeout_ms;      /* waiting for another writer; then CATRACA_E_UNAVAILABLE */
    size_t read_max;          /* entries one read() may return (sizes the record buffer) */
};

typedef struct sqlite3 sqlite3;

/*
 * A connection with the project's settings (WAL, synchronous, busy timeout);
 * the SQLite store opens its connections the same way, on the same file.
 */
int catraca_sqlite_connect(const char *path, bool is_synchronous_full, int busy_timeout_ms,
                           sqlite3 **out);

/* Opens (and creates) the database at path. 0, CATRACA_E_IO or CATRACA_E_NOMEM. */
int log_sqlite_open(const char *path, const struct log_sqlite_options *options,
                    struct catraca_log *out);

#endif
