/* store_sqlite.c - contract in store_sqlite.h and store.h. */
#include "store/store_sqlite.h"
#include "store/store_rows.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/error.h"
#include "core/logline.h"
#include "log/log_sqlite.h"

enum statement {
    STATEMENT_BEGIN,
    STATEMENT_COMMIT,
    STATEMENT_ROLLBACK,
    STATEMENT_EPOCH,
    STATEMENT_EVENT_UPSERT,
    STATEMENT_PURCHASE_INSERT,
    STATEMENT_PURCHASE_UPDATE,
    STATEMENT_ANSWER_UPSERT,
    STATEMENT_OFFSET_UPSERT,
    STATEMENT_SNAPSHOT_UPDATE,
    STATEMENT_LOAD,
    STATEMENT_PURCHASE_GET,
    STATEMENT_ANSWER_GET,
    STATEMENT_EVENT_GET,
    STATEMENT_EVENT_LIST,
    STATEMENT_PURCHASES_OF_EVENT,
    STATEMENT_PURCHASES_OF_ONLY_EVENT,
    STATEMENT_DECISIONS_OF_EVENT,
    STATEMENT_DECISIONS_OF_ONLY_EVENT,
    STATEMENT_OTHER_PARTITIONS,
    STATEMENT_LINE_AHEAD,
    STATEMENT_LINE,
    STATEMENT_DRAWN_AHEAD,
    STATEMENT_BEGIN_READ,
    STATEMENT_OFFSET_GET,
    STATEMENT_REFUNDS,
    STATEMENT_COUNT_OF_STATEMENTS,
};

#define PURCHASE_COLUMNS                                                                           \
    "id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, reason, "  \
    "hold_expires_at_ms, position, tickets, updated_ms, draw_rank, payment_ref"
/* What an audit compares (struct store_decision), in the order of the table's columns. */
#define DECISION_COLUMNS                                                                           \
    "id, customer, category, quantity, seq_major, seq_minor, status, reason, "                    \
    "hold_expires_at_ms, tickets, payment_ref IS NOT NULL"
#define EVENT_COLUMNS "spec, state, counts, offset_major, offset_minor, updated_ms"

static const char *const statement_sql[STATEMENT_COUNT_OF_STATEMENTS] = {
    [STATEMENT_BEGIN] = "BEGIN IMMEDIATE",
    [STATEMENT_COMMIT] = "COMMIT",
    [STATEMENT_ROLLBACK] = "ROLLBACK",
    [STATEMENT_EPOCH] = "SELECT epoch FROM partitions WHERE event = ?1",
    [STATEMENT_EVENT_UPSERT] =
        "INSERT INTO events(id, " EVENT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
        "ON CONFLICT(id) DO UPDATE SET state = ?3, counts = ?4, offset_major = ?5, "
        "offset_minor = ?6, updated_ms = ?7",
    [STATEMENT_PURCHASE_INSERT] =
        "INSERT INTO purchases(" PURCHASE_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
        "?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT(id) DO UPDATE SET status = ?9, "
        "reason = ?10, hold_expires_at_ms = ?11, position = ?12, tickets = ?13, "
        "updated_ms = ?14, draw_rank = max(draw_rank, ?15), payment_ref = ?16",
    [STATEMENT_PURCHASE_UPDATE] =
        "UPDATE purchases SET status = ?9, reason = ?10, hold_expires_at_ms = ?11, "
        "position = ?12, tickets = ?13, updated_ms = ?14, draw_rank = max(draw_rank, ?15), "
        "payment_ref = ?16 WHERE id = ?1",
    [STATEMENT_ANSWER_UPSERT] = "INSERT OR REPLACE INTO answers(event, seq_major, seq_minor, "
                                "purchase_id, type, result, reason, status) VALUES (?1, ?2, ?3, "
                                "?4, ?5, ?6, ?7, ?8)",
    [STATEMENT_OFFSET_UPSERT] =
        "INSERT INTO partitions(event, offset_major, offset_minor, epoch) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT(event) DO UPDATE SET offset_major = ?2, offset_minor = ?3, epoch = ?4",
    [STATEMENT_SNAPSHOT_UPDATE] =
        "INSERT INTO snapshots(event, snapshot, offset_major, offset_minor) VALUES (?1, ?2, ?3, "
        "?4) ON CONFLICT(event) DO UPDATE SET snapshot = ?2, offset_major = ?3, offset_minor = ?4",
    [STATEMENT_LOAD] = "SELECT p.offset_major, p.offset_minor, s.snapshot, s.offset_major, "
                       "s.offset_minor FROM partitions p LEFT JOIN snapshots s ON s.event = "
                       "p.event WHERE p.event = ?1",
    [STATEMENT_PURCHASE_GET] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE id = ?1",
    [STATEMENT_ANSWER_GET] = "SELECT purchase_id, type, result, reason, status FROM answers "
                             "WHERE event = ?1 AND seq_major = ?2 AND seq_minor = ?3",
    [STATEMENT_EVENT_GET] = "SELECT " EVENT_COLUMNS " FROM events WHERE id = ?1",
    [STATEMENT_EVENT_LIST] =
        "SELECT " EVENT_COLUMNS " FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
    /* An event's purchases for an audit: the table itself in rowid order (NOT INDEXED), one
     * sequential pass, where the event's index would visit the rows at random and sort them
     * all in a temporary B-tree first (a million rows: 13 times slower, and the sort's memory).
     * With other partitions in the file, only over the event's id range (ids grow with time,
     * so another event's rows fall in it only when their sales overlapped); with none, the
     * whole table, without the two index scans that find the range (each costs more than the
     * pass itself). */
    [STATEMENT_PURCHASES_OF_EVENT] =
        "SELECT " PURCHASE_COLUMNS " FROM purchases NOT INDEXED WHERE id BETWEEN "
        "(SELECT min(id) FROM purchases WHERE event = ?1) AND "
        "(SELECT max(id) FROM purchases WHERE event = ?1) AND event = ?1 ORDER BY id",
    [STATEMENT_PURCHASES_OF_ONLY_EVENT] =
        "SELECT " PURCHASE_COLUMNS " FROM purchases NOT INDEXED WHERE event = ?1 ORDER BY id",
    [STATEMENT_DECISIONS_OF_EVENT] =
        "SELECT " DECISION_COLUMNS " FROM purchases NOT INDEXED WHERE id BETWEEN "
        "(SELECT min(id) FROM purchases WHERE event = ?1) AND "
        "(SELECT max(id) FROM purchases WHERE event = ?1) AND event = ?1 ORDER BY id",
    [STATEMENT_DECISIONS_OF_ONLY_EVENT] =
        "SELECT " DECISION_COLUMNS " FROM purchases NOT INDEXED WHERE event = ?1 ORDER BY id",
    [STATEMENT_OTHER_PARTITIONS] = "SELECT EXISTS (SELECT 1 FROM partitions WHERE event != ?1)",
    [STATEMENT_LINE_AHEAD] = "SELECT count(*), coalesce(sum(quantity), 0) FROM purchases "
                             "WHERE event = ?1 AND category = ?2 AND status = 1 AND seq_major < ?3",
    [STATEMENT_LINE] = "SELECT seq_major, quantity FROM purchases WHERE event = ?1 AND "
                       "category = ?2 AND status = 1 ORDER BY seq_major",
    [STATEMENT_DRAWN_AHEAD] = "SELECT count(*), coalesce(sum(quantity), 0) FROM purchases "
                              "WHERE event = ?1 AND category = ?2 AND draw_rank > 0 "
                              "AND draw_rank < ?3 AND status = 1",
    [STATEMENT_BEGIN_READ] = "BEGIN",
    [STATEMENT_OFFSET_GET] = "SELECT offset_major, offset_minor FROM partitions WHERE event = ?1",
    [STATEMENT_REFUNDS] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE event = ?1 AND "
                          "payment_ref IS NOT NULL ORDER BY id LIMIT ?2 OFFSET ?3",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS events(id TEXT PRIMARY KEY, spec BLOB NOT NULL,"
    " state INTEGER NOT NULL, counts BLOB NOT NULL, offset_major INTEGER NOT NULL,"
    " offset_minor INTEGER NOT NULL, updated_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS purchases(id INTEGER PRIMARY KEY, event TEXT NOT NULL,"
    " customer TEXT NOT NULL, category TEXT NOT NULL, quantity INTEGER NOT NULL,"
    " seq_major INTEGER NOT NULL, seq_minor INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    " status INTEGER NOT NULL, reason INTEGER NOT NULL, hold_expires_at_ms INTEGER NOT NULL,"
    " position INTEGER NOT NULL, tickets BLOB, updated_ms INTEGER NOT NULL,"
    " draw_rank INTEGER NOT NULL DEFAULT 0, payment_ref TEXT);"
    /* No index on (event, status): purchases_in_line starts with event, which is all that
     * listing an event's purchases (audit) needs, and every status change would have updated
     * both (files made before carry it: dropped). */
    "DROP INDEX IF EXISTS purchases_by_event;"
    "CREATE INDEX IF NOT EXISTS purchases_in_line ON purchases(event, category, status, seq_major);"
    "CREATE TABLE IF NOT EXISTS answers(event TEXT NOT NULL, seq_major INTEGER NOT NULL,"
    " seq_minor INTEGER NOT NULL, purchase_id INTEGER, type INTEGER NOT NULL,"
    " result INTEGER NOT NULL, reason INTEGER NOT NULL, status INTEGER NOT NULL,"
    " PRIMARY KEY(event, seq_major, seq_minor)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS partitions(event TEXT PRIMARY KEY, offset_major INTEGER NOT NULL,"
    " offset_minor INTEGER NOT NULL, epoch INTEGER NOT NULL) WITHOUT ROWID;"
    /* Apart from the offset: SQLite rewrites a whole row on any update, and the offset moves
     * every batch while a snapshot (tens of MB) changes every snapshot_every commands. */
    "CREATE TABLE IF NOT EXISTS snapshots(event TEXT PRIMARY KEY, snapshot BLOB NOT NULL,"
    " offset_major INTEGER NOT NULL, offset_minor INTEGER NOT NULL);";

/*
 * Data directories from before late payments lack purchases.payment_ref (NULL unless a
 * refund is due): added once. The refunds index needs the column, so it is made here.
 */
static const char payment_ref_check[] =
    "SELECT count(*) FROM pragma_table_info('purchases') WHERE name = 'payment_ref'";
static const char payment_ref_upgrade[] = "ALTER TABLE purchases ADD COLUMN payment_ref TEXT;";
static const char refunds_index[] = "CREATE INDEX IF NOT EXISTS purchases_refund_due ON "
                                    "purchases(event, id) WHERE payment_ref IS NOT NULL;";

/*
 * Data directories from before the snapshots table kept the snapshot in the
 * partitions row: moved once, under the write lock, whichever connection
 * opens first.
 */
static const char snapshot_upgrade_check[] =
    "SELECT count(*) FROM pragma_table_info('partitions') WHERE name = 'snapshot'";
static const char snapshot_upgrade[] =
    "INSERT OR IGNORE INTO snapshots(event, snapshot, offset_major, offset_minor)"
    " SELECT event, snapshot, snapshot_major, snapshot_minor FROM partitions"
    " WHERE snapshot IS NOT NULL;"
    "ALTER TABLE partitions DROP COLUMN snapshot;"
    "ALTER TABLE partitions DROP COLUMN snapshot_major;"
    "ALTER TABLE partitions DROP COLUMN snapshot_minor;";

/*
 * A category's wait line as read at one committed offset: the seq_major of
 * each waiting purchase, in order. Positions are computed on read (the line
 * moves after a purchase's decision), and counting the purchases ahead costs
 * up to the line's length; but a batch that sends hundreds into a line wakes
 * hundreds of long-polls that read at the same offset. So the second read of
 * a line at one offset keeps it, and later ones binary-search it.
 */
#define LINE_SLOTS 4
#define LINE_MAX (1u << 20) /* longer lines are counted on each read */

struct line {
    char event[CATRACA_ID_MAX + 1];
    char category[CATRACA_ID_MAX + 1];
    struct log_seq offset;
    bool is_counted; /* read once at this offset (counted, not kept) */
    bool is_kept;    /* seqs holds the line at this offset */
    uint64_t *seqs;
    uint64_t *ahead;           /* ahead[i]: tickets wanted by the entries before seqs[i] */
    uint64_t quantity_of_last; /* while reading: the quantity of seqs[count - 1] */
    size_t count, capacity;
};

struct store_sqlite {
    sqlite3 *db;
    sqlite3_stmt *statements[STATEMENT_COUNT_OF_STATEMENTS];
    struct line lines[LINE_SLOTS];
    unsigned next_line; /* the slot reused next (round robin) */
};

static int error_of(int rc)
{
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return CATRACA_E_UNAVAILABLE;
    return rc == SQLITE_NOMEM ? CATRACA_E_NOMEM : CATRACA_E_IO;
}

static sqlite3_stmt *prepared(struct store_sqlite *store, enum statement which)
{
    sqlite3_stmt *s = store->statements[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Steps to the end and resets at once: a statement left open would pin an old snapshot. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : error_of(rc);
}

/* ---- commit ------------------------------------------------------------------------------ */

static int commit_event(struct store_sqlite *store, const struct store_batch *batch)
{
    const struct store_event *event = batch->event_row;
    static _Thread_local uint8_t spec[CATRACA_COMMAND_ENCODED_MAX];
    uint8_t counts[STORE_COUNTS_BYTES_MAX];
    size_t spec_length = 0, counts_length = 0;
    int error = store_spec_encode(&event->spec, spec, &spec_length);
    if (error != 0)
        return error;
    store_counts_encode(event, counts, &counts_length);
    sqlite3_stmt *s = prepared(store, STATEMENT_EVENT_UPSERT);
    sqlite3_bind_text(s, 1, batch->event, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, spec, (int)spec_length, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, event->state);
    sqlite3_bind_blob(s, 4, counts, (int)counts_length, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)event->offset.major);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)event->offset.minor);
    sqlite3_bind_int64(s, 7, event->updated_ms);
    return step_done(s);
}

static int commit_purchase(struct store_sqlite *store, const struct store_purchase *p)
{
    sqlite3_stmt *s =
        prepared(store, p->has_arrival ? STATEMENT_PURCHASE_INSERT : STATEMENT_PURCHASE_UPDATE);
    uint8_t tickets[STORE_TICKETS_BYTES_MAX];
    size_t tickets_length = store_tickets_encode(p, tickets);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)p->purchase_id);
    if (p->has_arrival) {
        sqlite3_bind_text(s, 2, p->event, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, p->customer, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, p->category, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, p->quantity);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)p->seq.major);
        sqlite3_bind_int64(s, 7, (sqlite3_int64)p->seq.minor);
        sqlite3_bind_int64(s, 8, p->created_ms);
    }
    sqlite3_bind_int(s, 9, p->status);
    sqlite3_bind_int(s, 10, p->reason);
    sqlite3_bind_int64(s, 11, p->hold_expires_at_ms);
    sqlite3_bind_int64(s, 12, p->position);
    sqlite3_bind_blob(s, 13, tickets, (int)tickets_length, SQLITE_STATIC);
    sqlite3_bind_int64(s, 14, p->updated_ms);
    sqlite3_bind_int64(s, 15, p->draw_rank);
    if (p->is_refund_due)
        sqlite3_bind_text(s, 16, p->payment_ref, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 16);
    return step_done(s);
}

static int commit_answer(struct store_sqlite *store, const struct store_answer *a)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_ANSWER_UPSERT);
    sqlite3_bind_text(s, 1, a->event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)a->seq.major);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)a->seq.minor);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)a->purchase_id);
    sqlite3_bind_int(s, 5, a->type);
    sqlite3_bind_int(s, 6, a->result);
    sqlite3_bind_int(s, 7, a->reason);
    sqlite3_bind_int(s, 8, a->status);
    return step_done(s);
}

/* A newer owner bumped the epoch: this writer is fenced off. */
static int check_epoch(struct store_sqlite *store, const struct store_batch *batch)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_EPOCH);
    sqlite3_bind_text(s, 1, batch->event, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    bool is_fenced = rc == SQLITE_ROW && (uint64_t)sqlite3_column_int64(s, 0) > batch->epoch;
    sqlite3_reset(s);
    if (is_fenced)
        return CATRACA_E_FENCED;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : error_of(rc);
}

static int commit_offset(struct store_sqlite *store, const struct store_batch *batch)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_OFFSET_UPSERT);
    sqlite3_bind_text(s, 1, batch->event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)batch->offset.major);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)batch->offset.minor);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)batch->epoch);
    int error = step_done(s);
    if (error != 0 || batch->snapshot == NULL)
        return error;
    s = prepared(store, STATEMENT_SNAPSHOT_UPDATE);
    sqlite3_bind_text(s, 1, batch->event, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, batch->snapshot, (int)batch->snapshot_length, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)batch->snapshot_offset.major);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)batch->snapshot_offset.minor);
    return step_done(s);
}

static int has_old_partitions(sqlite3 *db, bool *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, snapshot_upgrade_check, -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW && sqlite3_column_int(s, 0) > 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : error_of(rc);
}

/*
 * Files from before scheduled sales have no draw_rank: added once (ADD COLUMN with a default
 * rewrites nothing). The index holds only a draw's purchases, so other status changes skip it.
 */
static const char draw_rank_check[] =
    "SELECT count(*) FROM pragma_table_info('purchases') WHERE name = 'draw_rank'";
static const char draw_rank_upgrade[] =
    "ALTER TABLE purchases ADD COLUMN draw_rank INTEGER NOT NULL DEFAULT 0";
static const char draw_rank_index[] = "CREATE INDEX IF NOT EXISTS purchases_drawn ON "
                                      "purchases(event, category, draw_rank) WHERE draw_rank > 0";

static int count_of(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : CATRACA_E_IO;
}

static int upgrade_draw_rank(sqlite3 *db)
{
    int64_t count = 0;
    int error = count_of(db, draw_rank_check, &count);
    if (error != 0 || count > 0)
        return error == 0 && sqlite3_exec(db, draw_rank_index, NULL, NULL, NULL) != SQLITE_OK
                   ? CATRACA_E_IO
                   : error;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return CATRACA_E_IO;
    error = count_of(db, draw_rank_check, &count); /* another connection may have been first */
    if (error == 0 && count == 0 &&
        sqlite3_exec(db, draw_rank_upgrade, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error == 0 && sqlite3_exec(db, draw_rank_index, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error != 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return error;
}

/* Adds purchases.payment_ref when missing (under the write lock: one connection does it). */
static int upgrade_payment_ref(sqlite3 *db)
{
    int count = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db, payment_ref_check, -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        count = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        sqlite3_finalize(s);
        if (count != 0)
            break;
        if (attempt == 0 && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
            return CATRACA_E_IO;
    }
    int error = count < 0 ? CATRACA_E_IO : 0;
    if (error == 0 && count == 0 &&
        sqlite3_exec(db, payment_ref_upgrade, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, error == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    if (error == 0 && sqlite3_exec(db, refunds_index, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    return error;
}

static int upgrade_schema(sqlite3 *db)
{
    int draw_error = upgrade_draw_rank(db);
    if (draw_error != 0)
        return draw_error;
    bool is_old = false;
    int error = upgrade_payment_ref(db);
    if (error != 0)
        return error;
    error = has_old_partitions(db, &is_old);
    if (error != 0 || !is_old)
        return error;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return CATRACA_E_IO;
    error = has_old_partitions(db, &is_old); /* another connection may have been first */
    if (error == 0 && is_old && sqlite3_exec(db, snapshot_upgrade, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error != 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return error;
}

static int store_sqlite_commit(void *context, const struct store_batch *batch)
{
    struct store_sqlite *store = context;
    int error = step_done(prepared(store, STATEMENT_BEGIN));
    if (error != 0)
        return error;
    error = check_epoch(store, batch);
    if (error == 0 && batch->event_row != NULL)
        error = commit_event(store, batch);
    for (size_t i = 0; error == 0 && i < batch->purchase_count; i++)
        error = commit_purchase(store, &batch->purchases[i]);
    for (size_t i = 0; error == 0 && i < batch->answer_count; i++)
        error = commit_answer(store, &batch->answers[i]);
    if (error == 0)
        error = commit_offset(store, batch);
    if (error == 0)
        error = step_done(prepared(store, STATEMENT_COMMIT));
    if (error != 0)
        step_done(prepared(store, STATEMENT_ROLLBACK));
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

static int store_sqlite_load(void *context, const char *event, struct log_seq *offset,
                             uint8_t **snapshot, size_t *snapshot_length,
                             struct log_seq *snapshot_offset)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_LOAD);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    if (snapshot != NULL)
        *snapshot = NULL;
    int rc = sqlite3_step(s);
    int error = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CATRACA_E_NOTFOUND : error_of(rc);
    if (error == 0) {
        *offset = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 0),
                                   (uint64_t)sqlite3_column_int64(s, 1)};
        int length = snapshot != NULL ? sqlite3_column_bytes(s, 2) : 0;
        if (length > 0) {
            *snapshot = malloc((size_t)length);
            if (*snapshot == NULL) {
                error = CATRACA_E_NOMEM;
            } else {
                memcpy(*snapshot, sqlite3_column_blob(s, 2), (size_t)length);
                *snapshot_length = (size_t)length;
                *snapshot_offset = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 3),
                                                    (uint64_t)sqlite3_column_int64(s, 4)};
            }
        }
    }
    sqlite3_reset(s);
    return error;
}

/* A column's text, cut to size - 1 bytes (snprintf's result, without its cost per row). */
static void copy_text(char *out, size_t size, const unsigned char *text)
{
    size_t length = text ? strnlen((const char *)text, size - 1) : 0;
    if (length > 0)
        memcpy(out, text, length);
    out[length] = '\0';
}

static void purchase_from_row(sqlite3_stmt *s, struct store_purchase *out);
static int line_position(struct store_sqlite *store, struct store_purchase *p);
static int event_from_row(sqlite3_stmt *s, struct store_event *out);

/* The category's stock now, for the purchase's estimate or retry hint (store.h). */
static int line_facts(struct store_sqlite *store, struct store_purchase *p)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_EVENT_GET);
    sqlite3_bind_text(s, 1, p->event, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    struct store_event event;
    int error = rc == SQLITE_ROW ? event_from_row(s, &event) : rc == SQLITE_DONE ? 0 : error_of(rc);
    if (rc == SQLITE_ROW && error == 0)
        store_line_facts_fill(&event, p);
    sqlite3_reset(s);
    return error;
}

static int store_sqlite_get_purchase(void *context, uint64_t purchase_id,
                                     struct store_purchase *out)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_PURCHASE_GET);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)purchase_id);
    int rc = sqlite3_step(s);
    int error = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CATRACA_E_NOTFOUND : error_of(rc);
    if (error == 0)
        purchase_from_row(s, out);
    sqlite3_reset(s);
    if (error == 0 && out->status == ENGINE_STATUS_WAITING)
        error = line_position(store, out);
    if (error == 0 && store_row_needs_line_facts(out))
        error = line_facts(store, out);
    return error;
}

/* The waiting purchases of the category that arrived before seq_major. */
static int line_count_ahead(struct store_sqlite *store, const struct store_purchase *p,
                            uint64_t *out, uint64_t *tickets)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_LINE_AHEAD);
    sqlite3_bind_text(s, 1, p->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->category, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)p->seq.major);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = (uint64_t)sqlite3_column_int64(s, 0);
        *tickets = (uint64_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : error_of(rc);
}

/*
 * A purchase the pre-queue draw put in line stands behind the drawn ones of smaller rank only
 * (every waiting purchase without a rank arrived after the draw): its position and the
 * tickets ahead count those, in the draw's order, never in arrival (seq) order. Not kept like a
 * line: a draw's line is read by its buyers once, at the draw.
 */
static int drawn_position(struct store_sqlite *store, struct store_purchase *p)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_DRAWN_AHEAD);
    sqlite3_bind_text(s, 1, p->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, p->category, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, p->draw_rank);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        p->position = (uint32_t)sqlite3_column_int64(s, 0) + 1;
        p->ahead = (uint32_t)sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : error_of(rc);
}

static int line_offset(struct store_sqlite *store, const char *event, struct log_seq *out)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_OFFSET_GET);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *out = (struct log_seq){0, 0};
    if (rc == SQLITE_ROW)
        *out = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 0),
                                (uint64_t)sqlite3_column_int64(s, 1)};
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : error_of(rc);
}

/* Reads the whole line into l; on failure (or a line past LINE_MAX) l is not kept. */
static int line_keep(struct store_sqlite *store, struct line *l)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_LINE);
    sqlite3_bind_text(s, 1, l->event, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, l->category, -1, SQLITE_STATIC);
    l->count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && l->count < LINE_MAX) {
        if (l->count == l->capacity) {
            size_t capacity = l->capacity ? 2 * l->capacity : 1024;
            uint64_t *seqs = realloc(l->seqs, capacity * sizeof(*seqs));
            if (seqs != NULL)
                l->seqs = seqs;
            uint64_t *ahead = realloc(l->ahead, capacity * sizeof(*ahead));
            if (ahead != NULL)
                l->ahead = ahead;
            if (seqs == NULL || ahead == NULL)
                break;
            l->capacity = capacity;
        }
        l->ahead[l->count] = l->count == 0 ? 0 : l->ahead[l->count - 1] + l->quantity_of_last;
        l->quantity_of_last = (uint64_t)sqlite3_column_int64(s, 1);
        l->seqs[l->count++] = (uint64_t)sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    l->is_kept = rc == SQLITE_DONE;
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : error_of(rc);
}

static struct line *line_slot(struct store_sqlite *store, const struct store_purchase *p)
{
    for (unsigned i = 0; i < LINE_SLOTS; i++) {
        struct line *l = &store->lines[i];
        if ((l->is_counted || l->is_kept) && strcmp(l->event, p->event) == 0 &&
            strcmp(l->category, p->category) == 0)
            return l;
    }
    struct line *l = &store->lines[store->next_line++ % LINE_SLOTS];
    snprintf(l->event, sizeof(l->event), "%s", p->event);
    snprintf(l->category, sizeof(l->category), "%s", p->category);
    l->is_counted = l->is_kept = false;
    return l;
}

/* Entries of the kept line below seq_major (lower bound). */
static uint64_t line_rank(const struct line *l, uint64_t seq_major)
{
    size_t low = 0, high = l->count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (l->seqs[middle] < seq_major)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

/*
 * A waiting purchase's place now: one more than the waiting purchases of its
 * category that arrived earlier (lines are in arrival order). The offset and
 * the line are read in one read transaction, so a kept line is the line at
 * that offset.
 */
static int line_position(struct store_sqlite *store, struct store_purchase *p)
{
    if (p->draw_rank > 0)
        return drawn_position(store, p);
    int error = step_done(prepared(store, STATEMENT_BEGIN_READ));
    if (error != 0)
        return error;
    struct log_seq offset;
    error = line_offset(store, p->event, &offset);
    struct line *l = line_slot(store, p);
    bool is_same = l->offset.major == offset.major && l->offset.minor == offset.minor;
    uint64_t ahead = 0, tickets = 0;
    if (error == 0 && is_same && l->is_kept) {
        ahead = line_rank(l, p->seq.major);
    } else if (error == 0 && is_same && l->is_counted) { /* the second read: keep the line */
        error = line_keep(store, l);
        if (error == 0 && l->is_kept)
            ahead = line_rank(l, p->seq.major);
        else if (error == 0)
            error = line_count_ahead(store, p, &ahead, &tickets);
    } else if (error == 0) {
        l->offset = offset;
        l->is_kept = false;
        l->is_counted = true;
        error = line_count_ahead(store, p, &ahead, &tickets);
    }
    if (error == 0 && l->is_kept && is_same)
        tickets = ahead < l->count ? l->ahead[ahead]
                  : l->count > 0   ? l->ahead[l->count - 1] + l->quantity_of_last
                                   : 0;
    step_done(prepared(store, STATEMENT_COMMIT));
    if (error == 0) {
        p->position = (uint32_t)(ahead + 1);
        p->ahead = (uint32_t)tickets;
    }
    return error;
}

/* Reads the PURCHASE_COLUMNS of the current row. */
static void purchase_from_row(sqlite3_stmt *s, struct store_purchase *out)
{
    memset(out, 0, sizeof(*out));
    out->purchase_id = (uint64_t)sqlite3_column_int64(s, 0);
    out->has_arrival = true;
    copy_text(out->event, sizeof(out->event), sqlite3_column_text(s, 1));
    copy_text(out->customer, sizeof(out->customer), sqlite3_column_text(s, 2));
    copy_text(out->category, sizeof(out->category), sqlite3_column_text(s, 3));
    out->quantity = (uint32_t)sqlite3_column_int64(s, 4);
    out->seq = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 5),
                                (uint64_t)sqlite3_column_int64(s, 6)};
    out->created_ms = sqlite3_column_int64(s, 7);
    out->status = (uint8_t)sqlite3_column_int(s, 8);
    out->reason = (uint8_t)sqlite3_column_int(s, 9);
    out->hold_expires_at_ms = sqlite3_column_int64(s, 10);
    out->position = (uint32_t)sqlite3_column_int64(s, 11);
    store_tickets_decode(sqlite3_column_blob(s, 12), (size_t)sqlite3_column_bytes(s, 12), out);
    out->updated_ms = sqlite3_column_int64(s, 13);
    out->draw_rank = (uint32_t)sqlite3_column_int64(s, 14);
    const unsigned char *payment_ref = sqlite3_column_text(s, 15);
    out->is_refund_due = payment_ref != NULL;
    copy_text(out->payment_ref, sizeof(out->payment_ref), payment_ref);
}

/*
 * Steps through the event's rows with `of_event`, or with `of_only_event` (one pass over the
 * table in rowid order) when no other partition shares the file, calling each_row per row
 * until it returns non-zero.
 */
static int for_each_row_of_event(struct store_sqlite *store, const char *event,
                                 enum statement of_event, enum statement of_only_event,
                                 int (*each_row)(sqlite3_stmt *s, void *context), void *context)
{
    sqlite3_stmt *s = prepared(store, STATEMENT_OTHER_PARTITIONS);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    bool has_others = rc != SQLITE_ROW || sqlite3_column_int(s, 0) != 0;
    sqlite3_reset(s);
    s = prepared(store, has_others ? of_event : of_only_event);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    int result = 0;
    while (result == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
        result = each_row(s, context);
    if (result == 0 && rc != SQLITE_DONE)
        result = error_of(rc);
    sqlite3_reset(s);
    return result;
}

struct purchase_visit {
    int (*visit)(void *, const struct store_purchase *);
    void *context;
};

static int visit_purchase_row(sqlite3_stmt *s, void *context)
{
    const struct purchase_visit *v = context;
    struct store_purchase row;
    purchase_from_row(s, &row);
    return v->visit(v->context, &row);
}

static int store_sqlite_for_each_purchase(void *context, const char *event,
                                          int (*visit)(void *, const struct store_purchase *),
                                          void *visit_context)
{
    struct purchase_visit v = {visit, visit_context};
    return for_each_row_of_event(context, event, STATEMENT_PURCHASES_OF_EVENT,
                                 STATEMENT_PURCHASES_OF_ONLY_EVENT, visit_purchase_row, &v);
}

/* The row's DECISION_COLUMNS; customer and category point into the statement's row. */
static void decision_from_row(sqlite3_stmt *s, struct store_decision *out)
{
    const char *customer = (const char *)sqlite3_column_text(s, 1);
    const char *category = (const char *)sqlite3_column_text(s, 2);
    out->purchase_id = (uint64_t)sqlite3_column_int64(s, 0);
    out->customer = customer ? customer : "";
    out->category = category ? category : "";
    out->quantity = (uint32_t)sqlite3_column_int64(s, 3);
    out->seq = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 4),
                                (uint64_t)sqlite3_column_int64(s, 5)};
    out->status = (uint8_t)sqlite3_column_int(s, 6);
    out->reason = (uint8_t)sqlite3_column_int(s, 7);
    out->hold_expires_at_ms = sqlite3_column_int64(s, 8);
    out->ticket_count = store_tickets_decode_codes(sqlite3_column_blob(s, 9),
                                                   (size_t)sqlite3_column_bytes(s, 9),
                                                   out->ticket_codes);
    out->is_refund_due = sqlite3_column_int(s, 10) != 0;
}

struct decision_visit {
    int (*visit)(void *, const struct store_decision *);
    void *context;
};

static int visit_decision_row(sqlite3_stmt *s, void *context)
{
    const struct decision_visit *v = context;
    struct store_decision row;
    decision_from_row(s, &row);
    return v->visit(v->context, &row);
}

static int store_sqlite_for_each_decision(void *context, const char *event,
                                          int (*visit)(void *, const struct store_decision *),
                                          void *visit_context)
{
    struct decision_visit v = {visit, visit_context};
    return for_each_row_of_event(context, event, STATEMENT_DECISIONS_OF_EVENT,
                                 STATEMENT_DECISIONS_OF_ONLY_EVENT, visit_decision_row, &v);
}

static int store_sqlite_get_answer(void *context, const char *event, struct log_seq seq,
                                   struct store_answer *out)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_ANSWER_GET);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)seq.major);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)seq.minor);
    int rc = sqlite3_step(s);
    int error = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? CATRACA_E_NOTFOUND : error_of(rc);
    if (error == 0) {
        memset(out, 0, sizeof(*out));
        snprintf(out->event, sizeof(out->event), "%s", event);
        out->seq = seq;
        out->purchase_id = (uint64_t)sqlite3_column_int64(s, 0);
        out->type = (uint8_t)sqlite3_column_int(s, 1);
        out->result = (uint8_t)sqlite3_column_int(s, 2);
        out->reason = (uint8_t)sqlite3_column_int(s, 3);
        out->status = (uint8_t)sqlite3_column_int(s, 4);
    }
    sqlite3_reset(s);
    return error;
}

/* Reads the event columns of the current row (EVENT_COLUMNS order). */
static int event_from_row(sqlite3_stmt *s, struct store_event *out)
{
    memset(out, 0, sizeof(*out));
    if (store_spec_decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0),
                          &out->spec) != 0)
        return CATRACA_E_CORRUPT;
    out->state = (uint8_t)sqlite3_column_int(s, 1);
    store_counts_decode(sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2), out);
    out->offset = (struct log_seq){(uint64_t)sqlite3_column_int64(s, 3),
                                   (uint64_t)sqlite3_column_int64(s, 4)};
    out->updated_ms = sqlite3_column_int64(s, 5);
    return 0;
}

static int store_sqlite_get_event(void *context, const char *event, struct store_event *out)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_EVENT_GET);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int error = rc == SQLITE_ROW    ? event_from_row(s, out)
                : rc == SQLITE_DONE ? CATRACA_E_NOTFOUND
                                    : error_of(rc);
    sqlite3_reset(s);
    return error;
}

static int store_sqlite_list_events(void *context, const char *after_id, struct store_event *out,
                                    size_t max, size_t *count)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_EVENT_LIST);
    sqlite3_bind_text(s, 1, after_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    *count = 0;
    int rc, error = 0;
    while (error == 0 && *count < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
        error = event_from_row(s, &out[(*count)++]);
    if (error == 0 && *count < max && rc != SQLITE_DONE)
        error = error_of(rc);
    sqlite3_reset(s);
    return error;
}

static int store_sqlite_list_refunds(void *context, const char *event, size_t skip,
                                     struct store_purchase *out, size_t max, size_t *count)
{
    struct store_sqlite *store = context;
    sqlite3_stmt *s = prepared(store, STATEMENT_REFUNDS);
    sqlite3_bind_text(s, 1, event, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)skip);
    *count = 0;
    int rc = SQLITE_DONE;
    while (*count < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
        purchase_from_row(s, &out[(*count)++]);
    int error = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : error_of(rc);
    sqlite3_reset(s);
    return error;
}

static void store_sqlite_close(void *context)
{
    struct store_sqlite *store = context;
    for (int i = 0; i < STATEMENT_COUNT_OF_STATEMENTS; i++)
        sqlite3_finalize(store->statements[i]);
    for (unsigned i = 0; i < LINE_SLOTS; i++) {
        free(store->lines[i].seqs);
        free(store->lines[i].ahead);
    }
    sqlite3_close(store->db);
    free(store);
}

static const struct store_ops store_sqlite_ops = {
    .commit = store_sqlite_commit,
    .load = store_sqlite_load,
    .get_purchase = store_sqlite_get_purchase,
    .get_answer = store_sqlite_get_answer,
    .get_event = store_sqlite_get_event,
    .list_events = store_sqlite_list_events,
    .for_each_purchase = store_sqlite_for_each_purchase,
    .for_each_decision = store_sqlite_for_each_decision,
    .list_refunds = store_sqlite_list_refunds,
    .close = store_sqlite_close,
};

int store_sqlite_open(const char *path, bool is_synchronous_full, int busy_timeout_ms,
                      struct catraca_store *out)
{
    struct store_sqlite *store = calloc(1, sizeof(*store));
    if (store == NULL)
        return CATRACA_E_NOMEM;
    int error = catraca_sqlite_connect(path, is_synchronous_full, busy_timeout_ms, &store->db);
    if (error == 0 && sqlite3_exec(store->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        error = CATRACA_E_IO;
    if (error == 0)
        error = upgrade_schema(store->db);
    for (int i = 0; error == 0 && i < STATEMENT_COUNT_OF_STATEMENTS; i++)
        if (sqlite3_prepare_v3(store->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->statements[i], NULL) != SQLITE_OK)
            error = CATRACA_E_IO;
    if (error != 0) {
        if (store->db != NULL)
            logline(LOGLINE_ERROR, "store_sqlite", "cannot prepare the store", "error",
                    sqlite3_errmsg(store->db), NULL);
        store_sqlite_close(store);
        return error;
    }
    *out = (struct catraca_store){.ops = &store_sqlite_ops, .context = store};
    return 0;
}
