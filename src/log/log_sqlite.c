/* log_sqlite.c - contract in log_sqlite.h and log.h. */
#include "log/log_sqlite.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/logline.h"

enum statement {
    STATEMENT_BEGIN,
    STATEMENT_COMMIT,
    STATEMENT_ROLLBACK,
    STATEMENT_IDEMPOTENCY_FIND,
    STATEMENT_IDEMPOTENCY_ADD,
    STATEMENT_INSERT,
    STATEMENT_PURCHASE_FIND,
    STATEMENT_PARTITION_ADD,
    STATEMENT_ENTRY_DELETE,
    STATEMENT_READ,
    STATEMENT_READ_ONLY_EVENT,
    STATEMENT_OTHER_PARTITIONS,
    STATEMENT_COUNT_AFTER,
    STATEMENT_LAST,
    STATEMENT_PARTITIONS,
    STATEMENT_COUNT_OF_STATEMENTS,
};

static const char *const statement_sql[STATEMENT_COUNT_OF_STATEMENTS] = {
    [STATEMENT_BEGIN] = "BEGIN IMMEDIATE",
    [STATEMENT_COMMIT] = "COMMIT",
    [STATEMENT_ROLLBACK] = "ROLLBACK",
    [STATEMENT_IDEMPOTENCY_FIND] =
        "SELECT request_hash, purchase_id, seq FROM idempotency WHERE scope = ?1 AND key = ?2",
    [STATEMENT_IDEMPOTENCY_ADD] = "INSERT INTO idempotency(scope, key, request_hash, purchase_id, "
                                  "seq) VALUES (?1, ?2, ?3, ?4, ?5)",
    [STATEMENT_INSERT] =
        "INSERT INTO log(event, time_ms, purchase_id, record) VALUES (?1, ?2, ?3, ?4)",
    [STATEMENT_PURCHASE_FIND] = "SELECT seq, event FROM log WHERE purchase_id = ?1",
    [STATEMENT_PARTITION_ADD] = "INSERT OR IGNORE INTO log_partitions(event) VALUES (?1)",
    [STATEMENT_ENTRY_DELETE] = "DELETE FROM log WHERE seq = ?1",
    [STATEMENT_READ] = "SELECT seq, time_ms, record FROM log WHERE event = ?1 AND seq > ?2 "
                       "ORDER BY seq LIMIT ?3",
    /* The same rows when the file holds no other event: walked in the table's own (seq)
     * order, from the first seq after ?2, instead of through log_by_event and a look-up of
     * the table for each entry (a replay of a whole log: a third less work a row). Either plan
     * gives the same rows; the choice is about speed only. */
    [STATEMENT_READ_ONLY_EVENT] = "SELECT seq, time_ms, record FROM log NOT INDEXED WHERE seq > ?2 "
                                  "AND event = ?1 ORDER BY seq LIMIT ?3",
    [STATEMENT_OTHER_PARTITIONS] = "SELECT EXISTS (SELECT 1 FROM log_partitions WHERE event != ?1)",
    [STATEMENT_COUNT_AFTER] = "SELECT count(*) FROM log WHERE event = ?1 AND seq > ?2",
    [STATEMENT_LAST] = "SELECT max(seq) FROM log WHERE event = ?1",
    [STATEMENT_PARTITIONS] = "SELECT event FROM log_partitions ORDER BY event LIMIT ?1",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY AUTOINCREMENT, event TEXT NOT NULL,"
    " time_ms INTEGER NOT NULL, purchase_id INTEGER, record BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS log_by_event ON log(event, seq);"
    "CREATE UNIQUE INDEX IF NOT EXISTS log_by_purchase ON log(purchase_id)"
    " WHERE purchase_id IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS idempotency(scope TEXT NOT NULL, key TEXT NOT NULL,"
    " request_hash INTEGER NOT NULL, purchase_id INTEGER, seq INTEGER NOT NULL,"
    " PRIMARY KEY(scope, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS log_partitions(event TEXT PRIMARY KEY) WITHOUT ROWID;";

struct log_sqlite {
    sqlite3 *db;
    sqlite3_stmt *statements[STATEMENT_COUNT_OF_STATEMENTS];
    size_t read_max;
    uint8_t *records; /* read_max * CATRACA_COMMAND_ENCODED_MAX */
};

static int error_of(int rc)
{
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return CATRACA_E_UNAVAILABLE;
    return rc == SQLITE_NOMEM ? CATRACA_E_NOMEM : CATRACA_E_IO;
}

static sqlite3_stmt *prepared(struct log_sqlite *log, enum statement which)
{
    sqlite3_stmt *s = log->statements[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

static int run(struct log_sqlite *log, enum statement which)
{
    sqlite3_stmt *s = prepared(log, which);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : error_of(rc);
}

/* ---- append ------------------------------------------------------------------------------ */

/* Looks up an idempotency key: 1 when found (item's outputs set), 0 when new, or an error. */
static int idempotency_find(struct log_sqlite *log, struct log_append_item *item)
{
    sqlite3_stmt *s = prepared(log, STATEMENT_IDEMPOTENCY_FIND);
    sqlite3_bind_text(s, 1, item->idempotency_scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item->idempotency_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return error_of(rc);
    uint64_t hash = (uint64_t)sqlite3_column_int64(s, 0);
    item->existing_purchase_id = (uint64_t)sqlite3_column_int64(s, 1);
    item->seq = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 2), 0};
    item->result = hash == item->request_hash ? LOG_DUPLICATE : LOG_DUPLICATE_MISMATCH;
    sqlite3_reset(s);
    return 1;
}

/* A purchase id already in the log: a duplicate append of the same purchase. */
static int purchase_duplicate(struct log_sqlite *log, struct log_append_item *item)
{
    sqlite3_stmt *s = prepared(log, STATEMENT_PURCHASE_FIND);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)item->purchase_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return error_of(rc);
    item->seq = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 0), 0};
    item->existing_purchase_id = item->purchase_id;
    item->result = LOG_DUPLICATE;
    sqlite3_reset(s);
    return 1;
}

/* Records the item's idempotency key; 1 when the key was used before (nothing recorded). */
static int idempotency_add(struct log_sqlite *log, const struct log_append_item *item)
{
    sqlite3_stmt *s = prepared(log, STATEMENT_IDEMPOTENCY_ADD);
    sqlite3_bind_text(s, 1, item->idempotency_scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)item->request_hash);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)item->purchase_id);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)item->seq.major);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rc == SQLITE_CONSTRAINT ? 1 : error_of(rc);
}

/*
 * Appends one item. New ids and keys are the common case, so the inserts come
 * first and the unique indexes recognise a repeat: a purchase id already in
 * the log (a retried append) or an idempotency key already used (the same
 * customer's retry); only then is the earlier entry looked up, and an entry
 * just inserted for a used key is deleted again (its seq stays unused: seqs
 * order, they need not be contiguous). All inside the batch's transaction.
 * The partition is registered once per run of items of one event
 * (*registered is the event last registered in this transaction).
 */
static int append_one(struct log_sqlite *log, struct log_append_item *item,
                      const char **registered)
{
    int found = 0;
    sqlite3_stmt *s = prepared(log, STATEMENT_INSERT);
    sqlite3_bind_text(s, 1, item->event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, item->time_ms);
    if (item->purchase_id != 0)
        sqlite3_bind_int64(s, 3, (sqlite3_int64)item->purchase_id);
    if (item->record_length == 0) /* a NULL blob would be SQL NULL, refused by NOT NULL */
        sqlite3_bind_zeroblob(s, 4, 0);
    else
        sqlite3_bind_blob(s, 4, item->record, (int)item->record_length, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT && item->purchase_id != 0) {
        found = purchase_duplicate(log, item); /* the statement alone was undone */
        return found < 0 ? found : found == 1 ? 0 : CATRACA_E_IO;
    }
    if (rc != SQLITE_DONE)
        return error_of(rc);
    item->seq = (struct log_seq){(uint64_t)sqlite3_last_insert_rowid(log->db), 0};
    if (item->idempotency_key != NULL) {
        found = idempotency_add(log, item);
        if (found < 0)
            return found;
        if (found == 1) {
            s = prepared(log, STATEMENT_ENTRY_DELETE);
            sqlite3_bind_int64(s, 1, (sqlite3_int64)item->seq.major);
            rc = sqlite3_step(s);
            sqlite3_reset(s);
            if (rc != SQLITE_DONE)
                return error_of(rc);
            found = idempotency_find(log, item);
            return found < 0 ? found : found == 1 ? 0 : CATRACA_E_IO;
        }
    }
    item->result = LOG_APPENDED;
    item->existing_purchase_id = item->purchase_id;
    if (*registered == NULL || strcmp(*registered, item->event) != 0) {
        s = prepared(log, STATEMENT_PARTITION_ADD);
        sqlite3_bind_text(s, 1, item->event, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        sqlite3_reset(s);
        if (rc != SQLITE_DONE)
            return error_of(rc);
        *registered = item->event;
    }
    return 0;
}

static int log_sqlite_append(void *context, struct log_append_item *items, size_t count)
{
    struct log_sqlite *log = context;
    int error = log_items_check(items, count); /* before BEGIN: an invalid batch touches nothing */
    if (error != 0 || count == 0)
        return error;
    error = run(log, STATEMENT_BEGIN);
    if (error != 0)
        return error;
    const char *registered = NULL;
    for (size_t i = 0; i < count && error == 0; i++)
        error = append_one(log, &items[i], &registered);
    if (error == 0)
        error = run(log, STATEMENT_COMMIT);
    if (error != 0)
        run(log, STATEMENT_ROLLBACK);
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

static int log_sqlite_read(void *context, const char *event, struct log_seq after,
                           struct log_entry *entries, size_t max, size_t *count)
{
    struct log_sqlite *log = context;
    *count = 0;
    if (!log_event_is_valid(event))
        return CATRACA_E_INVALID;
    if (max > log->read_max)
        max = log->read_max;
    sqlite3_stmt *s = prepared(log, STATEMENT_OTHER_PARTITIONS);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    bool has_others = sqlite3_step(s) != SQLITE_ROW || sqlite3_column_int(s, 0) != 0;
    sqlite3_reset(s);
    s = prepared(log, has_others ? STATEMENT_READ : STATEMENT_READ_ONLY_EVENT);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)after.major);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)max);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int length = sqlite3_column_bytes(s, 2);
        if (length < 0 || (size_t)length > CATRACA_COMMAND_ENCODED_MAX)
            length = 0; /* refused by the decoder later, counted as corrupt */
        uint8_t *record = log->records + *count * CATRACA_COMMAND_ENCODED_MAX;
        if (length > 0)
            memcpy(record, sqlite3_column_blob(s, 2), (size_t)length);
        entries[*count] = (struct log_entry){
            .seq = {(uint64_t)sqlite3_column_int64(s, 0), 0},
            .time_ms = sqlite3_column_int64(s, 1),
            .record = record,
            .record_length = (size_t)length,
        };
        (*count)++;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : error_of(rc);
}

static int log_sqlite_find_purchase(void *context, uint64_t purchase_id,
                                    char event[CATRACA_ID_MAX + 1], struct log_seq *seq)
{
    struct log_sqlite *log = context;
    sqlite3_stmt *s = prepared(log, STATEMENT_PURCHASE_FIND);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)purchase_id);
    int rc = sqlite3_step(s);
    int error = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CATRACA_E_NOTFOUND : error_of(rc);
    if (error == 0) {
        *seq = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 0), 0};
        snprintf(event, CATRACA_ID_MAX + 1, "%s", (const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_reset(s);
    return error;
}

static int single_integer(struct log_sqlite *log, enum statement which, const char *event,
                          const struct log_seq *after, int64_t *out)
{
    if (!log_event_is_valid(event))
        return CATRACA_E_INVALID;
    sqlite3_stmt *s = prepared(log, which);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    if (after != NULL)
        sqlite3_bind_int64(s, 2, (sqlite3_int64)after->major);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : error_of(rc);
}

static int log_sqlite_count_after(void *context, const char *event, struct log_seq after,
                                  uint64_t *count)
{
    int64_t value = 0;
    int error = single_integer(context, STATEMENT_COUNT_AFTER, event, &after, &value);
    *count = (uint64_t)value;
    return error;
}

static int log_sqlite_last_seq(void *context, const char *event, struct log_seq *seq)
{
    int64_t value = 0;
    int error = single_integer(context, STATEMENT_LAST, event, NULL, &value);
    *seq = (struct log_seq){(uint64_t)value, 0};
    return error;
}

static int log_sqlite_list_partitions(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max,
                                      size_t *count)
{
    struct log_sqlite *log = context;
    sqlite3_stmt *s = prepared(log, STATEMENT_PARTITIONS);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)max);
    *count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *count < max)
        snprintf(events[(*count)++], CATRACA_ID_MAX + 1, "%s",
                 (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : error_of(rc);
}

static void log_sqlite_close(void *context)
{
    struct log_sqlite *log = context;
    for (int i = 0; i < STATEMENT_COUNT_OF_STATEMENTS; i++)
        sqlite3_finalize(log->statements[i]);
    sqlite3_close(log->db);
    free(log->records);
    free(log);
}

static const struct log_ops log_sqlite_ops = {
    .append = log_sqlite_append,
    .read = log_sqlite_read,
    .find_purchase = log_sqlite_find_purchase,
    .count_after = log_sqlite_count_after,
    .last_seq = log_sqlite_last_seq,
    .list_partitions = log_sqlite_list_partitions,
    .close = log_sqlite_close,
};

int catraca_sqlite_connect(const char *path, bool is_synchronous_full, int busy_timeout_ms,
                           sqlite3 **out)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db, busy_timeout_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    /* Reads through a memory map instead of a pread() per page (the worker follows the log
     * as it grows), and a page cache that holds the hot end of the log and the indexes. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA mmap_size=1073741824; PRAGMA cache_size=-16384", NULL, NULL,
                          NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(
            db, is_synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL,
            NULL, NULL);
    if (rc != SQLITE_OK) {
        logline(LOGLINE_ERROR, "sqlite", "cannot open the database", "path", path, "error",
                db ? sqlite3_errmsg(db) : "out of memory", NULL);
        sqlite3_close(db);
        return CATRACA_E_IO;
    }
    *out = db;
    return 0;
}

int log_sqlite_open(const char *path, const struct log_sqlite_options *options,
                    struct catraca_log *out)
{
    struct log_sqlite *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return CATRACA_E_NOMEM;
    log->read_max = options->read_max ? options->read_max : 1;
    log->records = malloc(log->read_max * CATRACA_COMMAND_ENCODED_MAX);
    int error = log->records ? 0 : CATRACA_E_NOMEM;
    if (error == 0)
        error = catraca_sqlite_connect(path, options->is_synchronous_full, options->busy_timeout_ms,
                                       &log->db);
    if (error == 0 && sqlite3_exec(log->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    for (int i = 0; error == 0 && i < STATEMENT_COUNT_OF_STATEMENTS; i++)
        if (sqlite3_prepare_v3(log->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &log->statements[i], NULL) != SQLITE_OK)
            error = CATRACA_E_IO;
    if (error != 0) {
        if (log->db != NULL)
            logline(LOGLINE_ERROR, "log_sqlite", "cannot prepare the log", "error",
                    sqlite3_errmsg(log->db), NULL);
        log_sqlite_close(log);
        return error;
    }
    *out = (struct catraca_log){.ops = &log_sqlite_ops, .context = log};
    return 0;
}
