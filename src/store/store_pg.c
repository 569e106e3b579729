/*
 * store_pg.c - the store on PostgreSQL. Contract in store_pg.h and store.h.
 *
 * libpq does the protocol; values go as parameters (never spliced into SQL).
 * Rows of a batch travel as one text array literal per column and are
 * expanded with unnest(), so a batch of thousands of purchases is one
 * statement. Array elements are ids (quoted and escaped) and numbers; ticket
 * codes travel as hex text and are decoded in SQL. Unsigned 64-bit values
 * are stored as bigint with the same bits.
 *
 * commit() first builds every parameter of the batch, so a batch that cannot
 * be encoded fails before anything reaches the server. It then sends the
 * whole batch as one pipeline ending in one Sync. The statements up to a Sync
 * are one implicit transaction: the first failing statement (the fence
 * included) rolls back all of them, and a pipeline abandoned before its Sync
 * (the connection closed) never commits.
 */
#include "store/store_pg.h"

#include <assert.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/logline.h"
#include "store/migrations.h"
#include "store/pg_copy.h"
#include "store/store_rows.h"

#define FENCED_SQLSTATE "CF001"
#define PAGE_ROWS 1000
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
/* One column's array literal in a batch; PostgreSQL takes up to 1 GB per parameter. */
#define ARRAY_BYTES_MAX ((size_t)64 << 20)

enum { ARRIVAL_COLUMNS = 16, UPDATE_COLUMNS = 9, ANSWER_COLUMNS = 8 };

static_assert(ENGINE_STATUS_WAITING == 1, "STATEMENT_LINE_AHEAD counts status = 1");

#define PURCHASE_COLUMNS                                                                           \
    "id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, reason, "  \
    "hold_expires_at_ms, position, tickets, updated_ms, draw_rank, payment_ref"
/* What an audit compares (struct store_decision), in pg_copy.h's order: one binary COPY. */
#define DECISION_COLUMNS                                                                           \
    "id, customer, category, quantity, seq_major, seq_minor, status, reason, "                     \
    "hold_expires_at_ms, tickets, payment_ref IS NOT NULL"
#define EVENT_COLUMNS "spec, state, counts, offset_major, offset_minor, updated_ms, id"

static const char fence_sql[] = "SELECT catraca_fence($1, $2::bigint)";

/* Rows created by the batch: arrival columns are written only here. */
static const char insert_purchases_sql[] =
    "INSERT INTO purchases (" PURCHASE_COLUMNS ") "
    "SELECT id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, "
    "reason, hold, position, decode(tickets, 'hex'), updated, draw_rank, nullif(payment_ref, '') "
    "FROM unnest($1::bigint[], "
    "$2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::bigint[], "
    "$9::smallint[], $10::smallint[], $11::bigint[], $12::int[], $13::text[], $14::bigint[], "
    "$15::int[], $16::text[]) "
    "AS u(id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, "
    "reason, hold, position, tickets, updated, draw_rank, payment_ref) "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, "
    "hold_expires_at_ms = EXCLUDED.hold_expires_at_ms, position = EXCLUDED.position, "
    "tickets = EXCLUDED.tickets, updated_ms = EXCLUDED.updated_ms, "
    "draw_rank = GREATEST(purchases.draw_rank, EXCLUDED.draw_rank), "
    "payment_ref = EXCLUDED.payment_ref";

/* Rows that already exist: only the decision columns change. */
static const char update_purchases_sql[] =
    "UPDATE purchases p SET status = u.status, reason = u.reason, hold_expires_at_ms = u.hold, "
    "position = u.position, tickets = decode(u.tickets, 'hex'), updated_ms = u.updated, "
    "draw_rank = GREATEST(p.draw_rank, u.draw_rank), payment_ref = nullif(u.payment_ref, '') "
    "FROM unnest($1::bigint[], $2::smallint[], $3::smallint[], $4::bigint[], $5::int[], "
    "$6::text[], $7::bigint[], $8::int[], $9::text[]) "
    "AS u(id, status, reason, hold, position, tickets, updated, draw_rank, payment_ref) "
    "WHERE p.id = u.id";

static const char upsert_answers_sql[] =
    "INSERT INTO answers (event, seq_major, seq_minor, purchase_id, type, result, reason, status) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::smallint[], "
    "$6::smallint[], $7::smallint[], $8::smallint[]) "
    "ON CONFLICT (event, seq_major, seq_minor) DO UPDATE SET purchase_id = EXCLUDED.purchase_id, "
    "type = EXCLUDED.type, result = EXCLUDED.result, reason = EXCLUDED.reason, "
    "status = EXCLUDED.status";

static const char upsert_event_sql[] =
    "INSERT INTO events (id, spec, state, counts, offset_major, offset_minor, updated_ms) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, "
    "counts = EXCLUDED.counts, offset_major = EXCLUDED.offset_major, "
    "offset_minor = EXCLUDED.offset_minor, updated_ms = EXCLUDED.updated_ms";

/* The fence created or found the partitions row, so a plain UPDATE always finds it. */
static const char offset_sql[] =
    "UPDATE partitions SET offset_major = $2, offset_minor = $3 WHERE event = $1";
static const char offset_snapshot_sql[] =
    "UPDATE partitions SET offset_major = $2, offset_minor = $3, snapshot = $4, "
    "snapshot_major = $5, snapshot_minor = $6 WHERE event = $1";

enum statement {
    STATEMENT_LOAD,
    STATEMENT_OFFSET_GET,
    STATEMENT_PURCHASE_GET,
    STATEMENT_LINE_AHEAD,
    STATEMENT_DRAWN_AHEAD,
    STATEMENT_ANSWER_GET,
    STATEMENT_EVENT_GET,
    STATEMENT_EVENT_LIST,
    STATEMENT_PURCHASES_FIRST,
    STATEMENT_PURCHASES_AFTER,
    STATEMENT_REFUNDS,
    STATEMENT_COUNT
};

/* Prepared once per connection, named s<index>. */
static const char *const statement_sql[STATEMENT_COUNT] = {
    [STATEMENT_LOAD] = "SELECT offset_major, offset_minor, snapshot, snapshot_major, "
                       "snapshot_minor FROM partitions WHERE event = $1",
    /* load() without the snapshot (an audit wants the offset only: a snapshot is tens of MB
     * of escaped bytea to unescape). */
    [STATEMENT_OFFSET_GET] = "SELECT offset_major, offset_minor FROM partitions WHERE event = $1",
    [STATEMENT_PURCHASE_GET] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE id = $1",
    [STATEMENT_LINE_AHEAD] = "SELECT count(*), coalesce(sum(quantity), 0) FROM purchases "
                             "WHERE event = $1 AND category = $2 "
                             "AND status = 1 AND (seq_major, seq_minor) < ($3, $4)",
    /* A purchase the pre-queue draw put in line stands behind the drawn ones of smaller rank
     * only (every waiting purchase without a rank arrived after the draw). */
    [STATEMENT_DRAWN_AHEAD] = "SELECT count(*), coalesce(sum(quantity), 0) FROM purchases "
                              "WHERE event = $1 AND category = $2 "
                              "AND draw_rank > 0 AND draw_rank < $3 AND status = 1",
    [STATEMENT_ANSWER_GET] = "SELECT purchase_id, type, result, reason, status FROM answers "
                             "WHERE event = $1 AND seq_major = $2 AND seq_minor = $3",
    [STATEMENT_EVENT_GET] = "SELECT " EVENT_COLUMNS " FROM events WHERE id = $1",
    /* Byte order whatever the database's collation, as in the SQLite store. */
    [STATEMENT_EVENT_LIST] = "SELECT " EVENT_COLUMNS " FROM events WHERE id > $1 COLLATE \"C\" "
                             "ORDER BY id COLLATE \"C\" LIMIT $2",
    /* Keyset pages in id (signed bigint) order; the first page has no lower bound. */
    [STATEMENT_PURCHASES_FIRST] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE event = $1 "
                                  "ORDER BY id LIMIT " STRINGIFY(PAGE_ROWS),
    [STATEMENT_PURCHASES_AFTER] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE event = $1 "
                                  "AND id > $2 ORDER BY id LIMIT " STRINGIFY(PAGE_ROWS),
    [STATEMENT_REFUNDS] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE event = $1 AND "
                          "payment_ref IS NOT NULL ORDER BY id LIMIT $2 OFFSET $3",
};

/* A growable text buffer for an array literal, at most ARRAY_BYTES_MAX. */
struct text {
    char *bytes;
    size_t length, capacity;
    int error; /* the first failure: CATRACA_E_NOMEM or CATRACA_E_TOO_LARGE */
};

struct store_pg {
    char *conninfo;
    PGconn *db; /* NULL, or connected with every statement prepared */
    /* One batch's parameters, built before anything is sent; reused by every commit. */
    struct text arrivals[ARRIVAL_COLUMNS], updates[UPDATE_COLUMNS], answers[ANSWER_COLUMNS];
    size_t arrival_count, update_count;
    uint8_t spec[CATRACA_COMMAND_ENCODED_MAX];
    uint8_t counts[STORE_COUNTS_BYTES_MAX];
    size_t spec_length, counts_length;
};

/* A number as text, for parameters. */
struct number {
    char text[24];
};

static struct number number_of(int64_t value)
{
    struct number n;
    snprintf(n.text, sizeof(n.text), "%" PRId64, value);
    return n;
}

/* ---- text arrays ------------------------------------------------------------------------- */

static void text_append(struct text *t, const char *bytes, size_t length)
{
    if (t->error != 0)
        return;
    if (t->capacity - t->length < length + 1) {
        if (length + 1 > ARRAY_BYTES_MAX - t->length) {
            t->error = CATRACA_E_TOO_LARGE;
            return;
        }
        size_t capacity = t->capacity ? t->capacity : 256;
        while (capacity - t->length < length + 1)
            capacity *= 2;
        capacity = capacity < ARRAY_BYTES_MAX ? capacity : ARRAY_BYTES_MAX;
        char *grown = realloc(t->bytes, capacity);
        if (grown == NULL) {
            t->error = CATRACA_E_NOMEM;
            return;
        }
        t->bytes = grown;
        t->capacity = capacity;
    }
    memcpy(t->bytes + t->length, bytes, length);
    t->length += length;
    t->bytes[t->length] = '\0';
}

static void arrays_open(struct text *columns, int count)
{
    for (int i = 0; i < count; i++) {
        columns[i].length = 0;
        columns[i].error = 0;
        text_append(&columns[i], "{", 1);
    }
}

/* 0, or the first column's failure. */
static int arrays_close(struct text *columns, int count)
{
    int error = 0;
    for (int i = 0; i < count; i++) {
        text_append(&columns[i], "}", 1);
        error = error != 0 ? error : columns[i].error;
    }
    return error;
}

static void array_separator(struct text *t)
{
    if (t->length > 1)
        text_append(t, ",", 1);
}

static void array_int(struct text *t, int64_t value)
{
    struct number n = number_of(value);
    array_separator(t);
    text_append(t, n.text, strlen(n.text));
}

/* A quoted element; '"' and '\' are escaped, so any string is one element. */
static void array_string(struct text *t, const char *value)
{
    array_separator(t);
    text_append(t, "\"", 1);
    for (const char *run = value; *run != '\0';) {
        size_t plain = strcspn(run, "\"\\");
        text_append(t, run, plain);
        run += plain;
        if (*run != '\0') {
            text_append(t, "\\", 1);
            text_append(t, run++, 1);
        }
    }
    text_append(t, "\"", 1);
}

/* The store_rows ticket bytes as hex ("" for none), decoded by decode(..., 'hex'). */
static void array_tickets(struct text *t, const struct store_purchase *p)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t bytes[STORE_TICKETS_BYTES_MAX];
    char text[2 * STORE_TICKETS_BYTES_MAX + 2];
    size_t length = store_tickets_encode(p, bytes);
    text[0] = '"';
    for (size_t i = 0; i < length; i++) {
        text[1 + 2 * i] = hex[bytes[i] >> 4];
        text[2 + 2 * i] = hex[bytes[i] & 15];
    }
    text[1 + 2 * length] = '"';
    array_separator(t);
    text_append(t, text, 2 * length + 2);
}

/* ---- connection -------------------------------------------------------------------------- */

/* One line: what failed, and the first line of libpq's message (never the conninfo). */
static void log_error(PGconn *db, const char *what)
{
    char message[512];
    snprintf(message, sizeof(message), "%s", db ? PQerrorMessage(db) : "no connection");
    message[strcspn(message, "\n")] = '\0';
    logline(LOGLINE_WARN, "store_pg", what, "error", message, NULL);
}

/* Closes the connection (the next call connects again); returns CATRACA_E_UNAVAILABLE. */
static int drop_connection(struct store_pg *store, const char *why)
{
    if (why != NULL)
        log_error(store->db, why);
    PQfinish(store->db);
    store->db = NULL;
    return CATRACA_E_UNAVAILABLE;
}

static int connect_db(struct store_pg *store)
{
    store->db = PQconnectdb(store->conninfo);
    if (store->db == NULL)
        return CATRACA_E_NOMEM;
    if (PQstatus(store->db) != CONNECTION_OK)
        return drop_connection(store, "connect");
    return 0;
}

static int prepare_all(struct store_pg *store)
{
    for (int i = 0; i < STATEMENT_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        PGresult *result = PQprepare(store->db, name, statement_sql[i], 0, NULL);
        bool is_ok = PQresultStatus(result) == PGRES_COMMAND_OK;
        PQclear(result);
        if (!is_ok) {
            bool is_up = PQstatus(store->db) == CONNECTION_OK;
            drop_connection(store, "prepare"); /* a retry prepares everything again */
            return is_up ? CATRACA_E_IO : CATRACA_E_UNAVAILABLE;
        }
    }
    return 0;
}

/*
 * Whether the server closed an idle connection (a restart, an administrator):
 * readable bytes while idle are read, and a connection libpq then finds broken
 * is replaced before a statement is sent on it and fails the request behind it.
 * A notice read this way leaves the connection as it was.
 */
static bool is_closed_by_server(PGconn *db)
{
    struct pollfd fd = {.fd = PQsocket(db), .events = POLLIN | POLLRDHUP};
    if (fd.fd < 0 || poll(&fd, 1, 0) <= 0)
        return fd.fd < 0;
    PQconsumeInput(db);
    return PQstatus(db) != CONNECTION_OK;
}

/* A usable connection: the current one if it is idle, else a new one, prepared. */
static int ensure_connected(struct store_pg *store)
{
    if (store->db != NULL && PQstatus(store->db) == CONNECTION_OK &&
        PQtransactionStatus(store->db) == PQTRANS_IDLE && is_closed_by_server(store->db))
        drop_connection(store, "the server closed the connection");
    if (store->db != NULL && PQstatus(store->db) == CONNECTION_OK &&
        PQtransactionStatus(store->db) == PQTRANS_IDLE &&
        PQpipelineStatus(store->db) == PQ_PIPELINE_OFF)
        return 0;
    if (store->db != NULL)
        drop_connection(store, NULL);
    int error = connect_db(store);
    return error != 0 ? error : prepare_all(store);
}

/*
 * Maps a failed result: fenced, unavailable (the connection is gone or the
 * server is shutting down; the connection is dropped) or I/O (a statement
 * failed on a healthy connection, which stays usable).
 */
static int error_of(struct store_pg *store, const PGresult *result)
{
    const char *state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && strcmp(state, FENCED_SQLSTATE) == 0)
        return CATRACA_E_FENCED;
    if (PQstatus(store->db) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0)
        return drop_connection(store, "statement");
    log_error(store->db, "statement");
    return CATRACA_E_IO;
}

/* result_format: 0 text, 1 binary (PostgreSQL's send format of each column's type). */
static PGresult *run_prepared_once(struct store_pg *store, enum statement which, int count,
                                   const char *const *values, int result_format, int *error)
{
    *error = ensure_connected(store);
    if (*error != 0)
        return NULL;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)which);
    PGresult *result = PQexecPrepared(store->db, name, count, values, NULL, NULL, result_format);
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        *error = error_of(store, result);
        PQclear(result);
        return NULL;
    }
    return result;
}

/*
 * Runs a prepared read; NULL with *error set when it failed. A read that
 * found its connection broken (PostgreSQL restarted since) is tried once
 * more on a new one: reads are safe to repeat.
 */
static PGresult *run_prepared_as(struct store_pg *store, enum statement which, int count,
                                 const char *const *values, int result_format, int *error)
{
    bool was_connected = store->db != NULL;
    PGresult *result = run_prepared_once(store, which, count, values, result_format, error);
    if (result == NULL && *error == CATRACA_E_UNAVAILABLE && was_connected)
        result = run_prepared_once(store, which, count, values, result_format, error);
    return result;
}

static PGresult *run_prepared(struct store_pg *store, enum statement which, int count,
                              const char *const *values, int *error)
{
    return run_prepared_as(store, which, count, values, 0, error);
}

/* ---- commit: building the parameters ----------------------------------------------------- */

static void add_arrival(struct text *c, const struct store_purchase *p)
{
    array_int(&c[0], (int64_t)p->purchase_id);
    array_string(&c[1], p->event);
    array_string(&c[2], p->customer);
    array_string(&c[3], p->category);
    array_int(&c[4], p->quantity);
    array_int(&c[5], (int64_t)p->seq.major);
    array_int(&c[6], (int64_t)p->seq.minor);
    array_int(&c[7], p->created_ms);
    array_int(&c[8], p->status);
    array_int(&c[9], p->reason);
    array_int(&c[10], p->hold_expires_at_ms);
    array_int(&c[11], p->position);
    array_tickets(&c[12], p);
    array_int(&c[13], p->updated_ms);
    array_int(&c[14], p->draw_rank);
    array_string(&c[15], p->is_refund_due ? p->payment_ref : ""); /* "" is NULL */
}

static void add_update(struct text *c, const struct store_purchase *p)
{
    array_int(&c[0], (int64_t)p->purchase_id);
    array_int(&c[1], p->status);
    array_int(&c[2], p->reason);
    array_int(&c[3], p->hold_expires_at_ms);
    array_int(&c[4], p->position);
    array_tickets(&c[5], p);
    array_int(&c[6], p->updated_ms);
    array_int(&c[7], p->draw_rank);
    array_string(&c[8], p->is_refund_due ? p->payment_ref : ""); /* "" is NULL */
}

static void add_answer(struct text *c, const struct store_answer *a)
{
    array_string(&c[0], a->event);
    array_int(&c[1], (int64_t)a->seq.major);
    array_int(&c[2], (int64_t)a->seq.minor);
    array_int(&c[3], (int64_t)a->purchase_id);
    array_int(&c[4], a->type);
    array_int(&c[5], a->result);
    array_int(&c[6], a->reason);
    array_int(&c[7], a->status);
}

/* Every parameter of the batch into the store's buffers: 0, or an error and nothing sent. */
static int build_batch(struct store_pg *store, const struct store_batch *batch)
{
    if (batch->event_row != NULL) {
        int error = store_spec_encode(&batch->event_row->spec, store->spec, &store->spec_length);
        if (error != 0)
            return error;
        store_counts_encode(batch->event_row, store->counts, &store->counts_length);
    }
    arrays_open(store->arrivals, ARRIVAL_COLUMNS);
    arrays_open(store->updates, UPDATE_COLUMNS);
    arrays_open(store->answers, ANSWER_COLUMNS);
    store->arrival_count = store->update_count = 0;
    for (size_t i = 0; i < batch->purchase_count; i++) {
        const struct store_purchase *p = &batch->purchases[i];
        if (p->has_arrival) {
            add_arrival(store->arrivals, p);
            store->arrival_count++;
        } else {
            add_update(store->updates, p);
            store->update_count++;
        }
    }
    for (size_t i = 0; i < batch->answer_count; i++)
        add_answer(store->answers, &batch->answers[i]);
    int error = arrays_close(store->arrivals, ARRIVAL_COLUMNS);
    if (error == 0)
        error = arrays_close(store->updates, UPDATE_COLUMNS);
    return error != 0 ? error : arrays_close(store->answers, ANSWER_COLUMNS);
}

/* ---- commit: the pipeline ---------------------------------------------------------------- */

/* Queues one statement (libpq copies the values); false when libpq could not. */
static bool send(struct store_pg *store, const char *sql, int count, const char *const *values,
                 const int *lengths, const int *formats)
{
    return PQsendQueryParams(store->db, sql, count, NULL, values, lengths, formats, 0) == 1;
}

static bool send_columns(struct store_pg *store, const char *sql, const struct text *columns,
                         int count)
{
    const char *values[ARRIVAL_COLUMNS];
    for (int i = 0; i < count; i++)
        values[i] = columns[i].bytes;
    return send(store, sql, count, values, NULL, NULL);
}

static bool send_event(struct store_pg *store, const struct store_batch *batch)
{
    const struct store_event *event = batch->event_row;
    struct number state = number_of(event->state);
    struct number major = number_of((int64_t)event->offset.major);
    struct number minor = number_of((int64_t)event->offset.minor);
    struct number updated = number_of(event->updated_ms);
    const char *values[] = {batch->event, (const char *)store->spec,
                            state.text,   (const char *)store->counts,
                            major.text,   minor.text,
                            updated.text};
    int lengths[] = {0, (int)store->spec_length, 0, (int)store->counts_length, 0, 0, 0};
    int formats[] = {0, 1, 0, 1, 0, 0, 0};
    return send(store, upsert_event_sql, 7, values, lengths, formats);
}

static bool send_offset(struct store_pg *store, const struct store_batch *batch)
{
    struct number major = number_of((int64_t)batch->offset.major);
    struct number minor = number_of((int64_t)batch->offset.minor);
    if (batch->snapshot == NULL) {
        const char *values[] = {batch->event, major.text, minor.text};
        return send(store, offset_sql, 3, values, NULL, NULL);
    }
    struct number snapshot_major = number_of((int64_t)batch->snapshot_offset.major);
    struct number snapshot_minor = number_of((int64_t)batch->snapshot_offset.minor);
    const char *values[] = {batch->event,        major.text,
                            minor.text,          (const char *)batch->snapshot,
                            snapshot_major.text, snapshot_minor.text};
    int lengths[] = {0, 0, 0, (int)batch->snapshot_length, 0, 0};
    int formats[] = {0, 0, 0, 1, 0, 0};
    return send(store, offset_snapshot_sql, 6, values, lengths, formats);
}

/* Queues the batch's statements, the fence first; returns how many, or -1. */
static int send_batch(struct store_pg *store, const struct store_batch *batch)
{
    struct number epoch = number_of((int64_t)batch->epoch);
    const char *fence[] = {batch->event, epoch.text};
    bool is_ok = send(store, fence_sql, 2, fence, NULL, NULL);
    int sent = 1;
    if (is_ok && batch->event_row != NULL) {
        is_ok = send_event(store, batch);
        sent++;
    }
    if (is_ok && store->arrival_count > 0) {
        is_ok = send_columns(store, insert_purchases_sql, store->arrivals, ARRIVAL_COLUMNS);
        sent++;
    }
    if (is_ok && store->update_count > 0) {
        is_ok = send_columns(store, update_purchases_sql, store->updates, UPDATE_COLUMNS);
        sent++;
    }
    if (is_ok && batch->answer_count > 0) {
        is_ok = send_columns(store, upsert_answers_sql, store->answers, ANSWER_COLUMNS);
        sent++;
    }
    if (is_ok) {
        is_ok = send_offset(store, batch);
        sent++;
    }
    return is_ok ? sent : -1;
}

/*
 * Reads every result up to the pipeline's Sync; the first failure decides the
 * error. Each statement's results end with a NULL, so more than `expected`
 * NULLs without the Sync means the connection is not what it should be.
 */
static int read_results(struct store_pg *store, int expected)
{
    int error = 0, nulls = 0;
    for (;;) {
        PGresult *result = PQgetResult(store->db);
        if (result == NULL) {
            if (PQstatus(store->db) == CONNECTION_OK && ++nulls <= expected)
                continue;
            int lost = drop_connection(store, "pipeline read");
            return error != 0 ? error : lost;
        }
        ExecStatusType status = PQresultStatus(result);
        if (status == PGRES_PIPELINE_SYNC) {
            PQclear(result);
            return error;
        }
        if (error == 0 && status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            error = status == PGRES_PIPELINE_ABORTED ? CATRACA_E_IO : error_of(store, result);
        PQclear(result);
        if (store->db == NULL)
            return error;
    }
}

static int store_pg_commit(void *context, const struct store_batch *batch)
{
    struct store_pg *store = context;
    int error = build_batch(store, batch);
    if (error == 0)
        error = ensure_connected(store);
    if (error != 0)
        return error;
    if (PQenterPipelineMode(store->db) != 1)
        return drop_connection(store, "pipeline mode");
    int expected = send_batch(store, batch);
    /* Without its Sync the server never commits the batch: drop the half-sent pipeline. */
    if (expected < 0 || PQpipelineSync(store->db) != 1)
        return drop_connection(store, "pipeline send");
    error = read_results(store, expected);
    if (store->db != NULL && PQexitPipelineMode(store->db) != 1)
        drop_connection(store, "pipeline exit");
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

static int64_t column_int(const PGresult *result, int row, int column)
{
    return strtoll(PQgetvalue(result, row, column), NULL, 10);
}

/* *out from PQunescapeBytea: release with PQfreemem. */
static int unescape_bytea(const char *text, uint8_t **out, size_t *length)
{
    *out = PQunescapeBytea((const unsigned char *)text, length);
    return *out != NULL ? 0 : CATRACA_E_NOMEM;
}

/* Column `column` of row 0 as a malloc'ed copy; NULL and 0 for SQL NULL or no bytes. */
static int copy_bytea(const PGresult *result, int column, uint8_t **out, size_t *length)
{
    *out = NULL;
    *length = 0;
    if (PQgetisnull(result, 0, column))
        return 0;
    uint8_t *escaped = NULL;
    size_t escaped_length = 0;
    int error = unescape_bytea(PQgetvalue(result, 0, column), &escaped, &escaped_length);
    if (error == 0 && escaped_length > 0) {
        *out = malloc(escaped_length);
        if (*out != NULL) {
            memcpy(*out, escaped, escaped_length);
            *length = escaped_length;
        } else {
            error = CATRACA_E_NOMEM;
        }
    }
    PQfreemem(escaped);
    return error;
}

static int store_pg_load(void *context, const char *event, struct log_seq *offset,
                         uint8_t **snapshot, size_t *snapshot_length,
                         struct log_seq *snapshot_offset)
{
    struct store_pg *store = context;
    const char *values[] = {event};
    int error = 0;
    if (snapshot != NULL) {
        *snapshot = NULL;
        *snapshot_length = 0;
    }
    PGresult *result = run_prepared(store, snapshot != NULL ? STATEMENT_LOAD : STATEMENT_OFFSET_GET,
                                    1, values, &error);
    if (result == NULL)
        return error;
    if (PQntuples(result) == 0) {
        PQclear(result);
        return CATRACA_E_NOTFOUND;
    }
    *offset =
        (struct log_seq){(uint64_t)column_int(result, 0, 0), (uint64_t)column_int(result, 0, 1)};
    if (snapshot != NULL)
        error = copy_bytea(result, 2, snapshot, snapshot_length);
    if (error == 0 && snapshot != NULL && *snapshot != NULL)
        *snapshot_offset = (struct log_seq){(uint64_t)column_int(result, 0, 3),
                                            (uint64_t)column_int(result, 0, 4)};
    PQclear(result);
    return error;
}

static void copy_text(char *out, size_t size, const char *text)
{
    snprintf(out, size, "%s", text);
}

/* Reads the PURCHASE_COLUMNS of a row. */
static int purchase_from_row(const PGresult *result, int row, struct store_purchase *out)
{
    memset(out, 0, sizeof(*out));
    out->purchase_id = (uint64_t)column_int(result, row, 0);
    out->has_arrival = true;
    copy_text(out->event, sizeof(out->event), PQgetvalue(result, row, 1));
    copy_text(out->customer, sizeof(out->customer), PQgetvalue(result, row, 2));
    copy_text(out->category, sizeof(out->category), PQgetvalue(result, row, 3));
    out->quantity = (uint32_t)column_int(result, row, 4);
    out->seq = (struct log_seq){(uint64_t)column_int(result, row, 5),
                                (uint64_t)column_int(result, row, 6)};
    out->created_ms = column_int(result, row, 7);
    out->status = (uint8_t)column_int(result, row, 8);
    out->reason = (uint8_t)column_int(result, row, 9);
    out->hold_expires_at_ms = column_int(result, row, 10);
    out->position = (uint32_t)column_int(result, row, 11);
    if (!PQgetisnull(result, row, 12)) {
        uint8_t *tickets = NULL;
        size_t length = 0;
        if (unescape_bytea(PQgetvalue(result, row, 12), &tickets, &length) != 0)
            return CATRACA_E_NOMEM;
        store_tickets_decode(tickets, length, out);
        PQfreemem(tickets);
    }
    out->updated_ms = column_int(result, row, 13);
    out->draw_rank = (uint32_t)column_int(result, row, 14);
    out->is_refund_due = !PQgetisnull(result, row, 15);
    if (out->is_refund_due)
        copy_text(out->payment_ref, sizeof(out->payment_ref), PQgetvalue(result, row, 15));
    return 0;
}

/*
 * A waiting purchase's place now: the stored position was exact when it was
 * decided, but the line moves. Lines are in arrival order, so the place is one
 * more than the waiting purchases of its category with a smaller seq; except
 * for a purchase a pre-queue draw put in line, which stands behind the drawn
 * ones of smaller draw_rank only. The tickets ahead are the same rows' quantities.
 */
static int line_position(struct store_pg *store, struct store_purchase *p)
{
    struct number major = number_of((int64_t)p->seq.major);
    struct number minor = number_of((int64_t)p->seq.minor);
    struct number rank = number_of(p->draw_rank);
    const char *values[] = {p->event, p->category, major.text, minor.text};
    const char *drawn_values[] = {p->event, p->category, rank.text};
    int error = 0;
    PGresult *result = p->draw_rank > 0
                           ? run_prepared(store, STATEMENT_DRAWN_AHEAD, 3, drawn_values, &error)
                           : run_prepared(store, STATEMENT_LINE_AHEAD, 4, values, &error);
    if (result == NULL)
        return error;
    p->position = (uint32_t)column_int(result, 0, 0) + 1;
    p->ahead = (uint32_t)column_int(result, 0, 1);
    PQclear(result);
    return 0;
}

static int store_pg_get_event(void *context, const char *event, struct store_event *out);

/* The category's stock now, for the purchase's estimate or retry hint (store.h). */
static int line_facts(struct store_pg *store, struct store_purchase *p)
{
    struct store_event event;
    int error = store_pg_get_event(store, p->event, &event);
    if (error == 0)
        store_line_facts_fill(&event, p);
    return error == CATRACA_E_NOTFOUND ? 0 : error;
}

static int store_pg_get_purchase(void *context, uint64_t purchase_id, struct store_purchase *out)
{
    struct store_pg *store = context;
    struct number id = number_of((int64_t)purchase_id);
    const char *values[] = {id.text};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_PURCHASE_GET, 1, values, &error);
    if (result == NULL)
        return error;
    error = PQntuples(result) == 1 ? purchase_from_row(result, 0, out) : CATRACA_E_NOTFOUND;
    PQclear(result);
    if (error == 0 && out->status == ENGINE_STATUS_WAITING)
        error = line_position(store, out);
    if (error == 0 && store_row_needs_line_facts(out))
        error = line_facts(store, out);
    return error;
}

static int store_pg_get_answer(void *context, const char *event, struct log_seq seq,
                               struct store_answer *out)
{
    struct store_pg *store = context;
    struct number major = number_of((int64_t)seq.major);
    struct number minor = number_of((int64_t)seq.minor);
    const char *values[] = {event, major.text, minor.text};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_ANSWER_GET, 3, values, &error);
    if (result == NULL)
        return error;
    if (PQntuples(result) == 1) {
        memset(out, 0, sizeof(*out));
        copy_text(out->event, sizeof(out->event), event);
        out->seq = seq;
        out->purchase_id = (uint64_t)column_int(result, 0, 0);
        out->type = (uint8_t)column_int(result, 0, 1);
        out->result = (uint8_t)column_int(result, 0, 2);
        out->reason = (uint8_t)column_int(result, 0, 3);
        out->status = (uint8_t)column_int(result, 0, 4);
    } else {
        error = CATRACA_E_NOTFOUND;
    }
    PQclear(result);
    return error;
}

/* Reads the EVENT_COLUMNS of a row. */
static int event_from_row(const PGresult *result, int row, struct store_event *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t *spec = NULL, *counts = NULL;
    size_t spec_length = 0, counts_length = 0;
    int error = unescape_bytea(PQgetvalue(result, row, 0), &spec, &spec_length);
    if (error == 0)
        error = unescape_bytea(PQgetvalue(result, row, 2), &counts, &counts_length);
    if (error == 0)
        error = store_spec_decode(spec, spec_length, &out->spec);
    if (error == 0) {
        out->state = (uint8_t)column_int(result, row, 1);
        store_counts_decode(counts, counts_length, out);
        out->offset = (struct log_seq){(uint64_t)column_int(result, row, 3),
                                       (uint64_t)column_int(result, row, 4)};
        out->updated_ms = column_int(result, row, 5);
    }
    PQfreemem(spec);
    PQfreemem(counts);
    return error;
}

static int store_pg_get_event(void *context, const char *event, struct store_event *out)
{
    struct store_pg *store = context;
    const char *values[] = {event};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_EVENT_GET, 1, values, &error);
    if (result == NULL)
        return error;
    error = PQntuples(result) == 1 ? event_from_row(result, 0, out) : CATRACA_E_NOTFOUND;
    PQclear(result);
    return error;
}

static int store_pg_list_events(void *context, const char *after_id, struct store_event *out,
                                size_t max, size_t *count)
{
    struct store_pg *store = context;
    struct number limit = number_of(max < INT64_MAX ? (int64_t)max : INT64_MAX);
    const char *values[] = {after_id, limit.text};
    int error = 0;
    *count = 0;
    PGresult *result = run_prepared(store, STATEMENT_EVENT_LIST, 2, values, &error);
    if (result == NULL)
        return error;
    for (int row = 0; error == 0 && row < PQntuples(result) && (size_t)row < max; row++)
        error = event_from_row(result, row, &out[(*count)++]);
    PQclear(result);
    return error;
}

/*
 * Pages through the event's rows by id (keyset): `first`, then `after` the last id seen, up to
 * page_rows rows in memory at a time (the statements' LIMIT), calling each_row per row until it
 * returns non-zero. Column 0 is the id.
 */
static int for_each_page_of_event(struct store_pg *store, const char *event, enum statement first,
                                  enum statement after, int page_rows,
                                  int (*each_row)(const PGresult *result, int row, void *context),
                                  void *context)
{
    struct number last = {""};
    for (bool is_first = true;; is_first = false) {
        const char *values[] = {event, last.text};
        int error = 0;
        PGresult *result =
            run_prepared(store, is_first ? first : after, is_first ? 1 : 2, values, &error);
        if (result == NULL)
            return error;
        int rows = PQntuples(result);
        for (int i = 0; error == 0 && i < rows; i++)
            error = each_row(result, i, context);
        if (rows > 0)
            copy_text(last.text, sizeof(last.text), PQgetvalue(result, rows - 1, 0));
        PQclear(result);
        if (error != 0 || rows < page_rows)
            return error;
    }
}

struct purchase_visit {
    int (*visit)(void *, const struct store_purchase *);
    void *context;
};

static int visit_purchase_row(const PGresult *result, int row, void *context)
{
    const struct purchase_visit *v = context;
    struct store_purchase purchase;
    int error = purchase_from_row(result, row, &purchase);
    return error != 0 ? error : v->visit(v->context, &purchase);
}

static int store_pg_for_each_purchase(void *context, const char *event,
                                      int (*visit)(void *, const struct store_purchase *),
                                      void *visit_context)
{
    struct purchase_visit v = {visit, visit_context};
    return for_each_page_of_event(context, event, STATEMENT_PURCHASES_FIRST,
                                  STATEMENT_PURCHASES_AFTER, PAGE_ROWS, visit_purchase_row, &v);
}

/* Ends a COPY TO STDOUT early: asks the server to cancel it, then reads and drops what it still
 * sends until its (cancelled) end, so that the connection is idle again for the next
 * statement. The bytes drained are bounded by what was in flight when the cancel arrived. */
static void copy_abandon(struct store_pg *store)
{
    PGcancel *cancel = PQgetCancel(store->db);
    char why[256];
    if (cancel != NULL) {
        PQcancel(cancel, why, sizeof(why));
        PQfreeCancel(cancel);
    }
    char *message = NULL;
    while (PQgetCopyData(store->db, &message, 0) > 0)
        PQfreemem(message);
    PGresult *result;
    while ((result = PQgetResult(store->db)) != NULL)
        PQclear(result);
}

/*
 * The event's rows as what an audit compares: one `COPY (SELECT DECISION_COLUMNS ...) TO
 * STDOUT (FORMAT binary)`, decoded by pg_copy.c, in the table's order (the audit looks each
 * row up by id). One statement, one snapshot, no pages: the server scans the event's rows
 * once, where keyset pages of 10 000 rows descended the index again for each page and libpq
 * built a result of eleven values a row (1.5 k of the 2.9 k instructions a row in the audit's
 * store thread). Memory: one row at a time (PQgetCopyData hands over one CopyData message, one
 * tuple; the socket holds the server back). COPY takes no parameters: the event id goes in as
 * a literal quoted by PQescapeLiteral. A visitor's stop cancels the COPY (copy_abandon).
 */
/* Starts the COPY of store_pg_for_each_decision: 0 once the server is sending its data. */
static int copy_start(struct store_pg *store, const char *event)
{
    int error = ensure_connected(store);
    if (error != 0)
        return error;
    char *literal = PQescapeLiteral(store->db, event, strlen(event));
    if (literal == NULL)
        return drop_connection(store, "quote the event id");
    static const char head[] = "COPY (SELECT " DECISION_COLUMNS " FROM purchases WHERE event = ";
    static const char tail[] = ") TO STDOUT (FORMAT binary)";
    size_t literal_length = strlen(literal);
    char *sql = malloc(sizeof(head) + literal_length + sizeof(tail));
    if (sql == NULL) {
        PQfreemem(literal);
        return CATRACA_E_NOMEM;
    }
    memcpy(sql, head, sizeof(head) - 1);
    memcpy(sql + sizeof(head) - 1, literal, literal_length);
    memcpy(sql + sizeof(head) - 1 + literal_length, tail, sizeof(tail));
    PQfreemem(literal);
    PGresult *result = PQexec(store->db, sql);
    free(sql);
    if (PQresultStatus(result) != PGRES_COPY_OUT)
        error = error_of(store, result);
    PQclear(result);
    return error;
}

static int store_pg_for_each_decision(void *context, const char *event,
                                      int (*visit)(void *, const struct store_decision *),
                                      void *visit_context)
{
    struct store_pg *store = context;
    /* A connection found broken (PostgreSQL restarted since) is replaced once, as for the
     * other reads: nothing was visited yet. */
    bool was_connected = store->db != NULL;
    int error = copy_start(store, event);
    if (error == CATRACA_E_UNAVAILABLE && was_connected)
        error = copy_start(store, event);
    if (error != 0)
        return error;
    PGresult *result;
    struct pg_copy_decoder decoder = {0};
    int stop = 0;
    for (;;) {
        char *message = NULL;
        int length = PQgetCopyData(store->db, &message, 0);
        if (length < 0)
            break; /* -1 the end, -2 a failure: the result below says which */
        stop =
            pg_copy_decisions(&decoder, (uint8_t *)message, (size_t)length, visit, visit_context);
        PQfreemem(message);
        if (stop != 0) {
            copy_abandon(store);
            return stop; /* the visitor's, or CATRACA_E_CORRUPT */
        }
    }
    result = PQgetResult(store->db);
    if (PQresultStatus(result) != PGRES_COMMAND_OK)
        error = error_of(store, result);
    else if (!decoder.is_ended)
        error = CATRACA_E_CORRUPT; /* the data ended without its end marker */
    PQclear(result);
    while (store->db != NULL && (result = PQgetResult(store->db)) != NULL)
        PQclear(result);
    return error;
}

static int store_pg_list_refunds(void *context, const char *event, size_t skip,
                                 struct store_purchase *out, size_t max, size_t *count)
{
    struct store_pg *store = context;
    struct number limit = number_of((int64_t)max), offset = number_of((int64_t)skip);
    const char *values[] = {event, limit.text, offset.text};
    int error = 0;
    *count = 0;
    PGresult *result = run_prepared(store, STATEMENT_REFUNDS, 3, values, &error);
    if (result == NULL)
        return error;
    for (int row = 0; error == 0 && row < PQntuples(result) && (size_t)row < max; row++)
        error = purchase_from_row(result, row, &out[(*count)++]);
    PQclear(result);
    return error;
}

static void store_pg_close(void *context)
{
    struct store_pg *store = context;
    PQfinish(store->db);
    for (int i = 0; i < ARRIVAL_COLUMNS; i++)
        free(store->arrivals[i].bytes);
    for (int i = 0; i < UPDATE_COLUMNS; i++)
        free(store->updates[i].bytes);
    for (int i = 0; i < ANSWER_COLUMNS; i++)
        free(store->answers[i].bytes);
    free(store->conninfo);
    free(store);
}

static const struct store_ops store_pg_ops = {
    .commit = store_pg_commit,
    .load = store_pg_load,
    .get_purchase = store_pg_get_purchase,
    .get_answer = store_pg_get_answer,
    .get_event = store_pg_get_event,
    .list_events = store_pg_list_events,
    .for_each_purchase = store_pg_for_each_purchase,
    .for_each_decision = store_pg_for_each_decision,
    .list_refunds = store_pg_list_refunds,
    .close = store_pg_close,
};

/* ---- schema versions --------------------------------------------------------------------- */

static int binary_version_of(void)
{
    return migration_count > 0 ? migrations[migration_count - 1].version : 0;
}

/* The highest version recorded in catraca_migrations; 0 when the table does not exist. */
static int database_version(PGconn *db, int *version)
{
    *version = 0;
    PGresult *result = PQexec(db, "SELECT to_regclass('catraca_migrations') IS NOT NULL");
    bool is_ok = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1;
    bool has_table = is_ok && strcmp(PQgetvalue(result, 0, 0), "t") == 0;
    PQclear(result);
    if (!is_ok)
        return PQstatus(db) == CONNECTION_OK ? CATRACA_E_IO : CATRACA_E_UNAVAILABLE;
    if (!has_table)
        return 0;
    result = PQexec(db, "SELECT coalesce(max(version), 0) FROM catraca_migrations");
    is_ok = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1;
    if (is_ok)
        *version = atoi(PQgetvalue(result, 0, 0));
    PQclear(result);
    return is_ok ? 0 : CATRACA_E_IO;
}

/* CATRACA_E_VERSION when the database lacks migrations this binary has. */
static int check_schema(PGconn *db)
{
    int version = 0;
    int error = database_version(db, &version);
    if (error == 0 && version < binary_version_of()) {
        char database_text[16], binary_text[16];
        snprintf(database_text, sizeof(database_text), "%d", version);
        snprintf(binary_text, sizeof(binary_text), "%d", binary_version_of());
        logline(LOGLINE_ERROR, "store_pg",
                "the database schema is older than this binary: run "
                "catraca migrate",
                "schema_version", database_text, "binary_version", binary_text, NULL);
        error = CATRACA_E_VERSION;
    }
    return error;
}

int store_pg_open(const char *conninfo, struct catraca_store *out)
{
    struct store_pg *store = calloc(1, sizeof(*store));
    if (store == NULL)
        return CATRACA_E_NOMEM;
    store->conninfo = strdup(conninfo);
    int error = store->conninfo != NULL ? connect_db(store) : CATRACA_E_NOMEM;
    if (error == 0)
        error = check_schema(store->db);
    if (error == 0)
        error = prepare_all(store);
    /*
     * Unreachable now is not a failure: a gateway keeps accepting purchases
     * (they only need the log) while PostgreSQL restarts, and every call
     * connects again. A reachable database on an old schema is refused.
     */
    if (error != 0 && error != CATRACA_E_UNAVAILABLE) {
        store_pg_close(store);
        return error;
    }
    *out = (struct catraca_store){.ops = &store_pg_ops, .context = store};
    return 0;
}

int store_pg_schema_version(const char *conninfo, int *database_version_out, int *binary_version)
{
    *binary_version = binary_version_of();
    *database_version_out = 0;
    PGconn *db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        log_error(db, "connect");
        PQfinish(db);
        return CATRACA_E_UNAVAILABLE;
    }
    int error = database_version(db, database_version_out);
    PQfinish(db);
    return error;
}

/* ---- migrations -------------------------------------------------------------------------- */

static bool exec_ok(PGconn *db, const char *sql)
{
    PGresult *result = PQexec(db, sql);
    ExecStatusType status = PQresultStatus(result);
    PQclear(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        log_error(db, "migrate");
        return false;
    }
    return true;
}

/* Whether catraca_migrations records version m (inside the migration's transaction). */
static int is_applied(PGconn *db, const struct migration *m, bool *out)
{
    struct number version = number_of(m->version);
    const char *values[] = {version.text};
    PGresult *result = PQexecParams(db, "SELECT 1 FROM catraca_migrations WHERE version = $1", 1,
                                    NULL, values, NULL, NULL, 0);
    bool is_ok = PQresultStatus(result) == PGRES_TUPLES_OK;
    *out = is_ok && PQntuples(result) > 0;
    PQclear(result);
    if (!is_ok)
        log_error(db, "migrate");
    return is_ok ? 0 : CATRACA_E_IO;
}

static bool record_migration(PGconn *db, const struct migration *m)
{
    struct number version = number_of(m->version);
    const char *values[] = {version.text, m->name};
    PGresult *result =
        PQexecParams(db, "INSERT INTO catraca_migrations (version, name) VALUES ($1, $2)", 2, NULL,
                     values, NULL, NULL, 0);
    bool is_ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    if (!is_ok)
        log_error(db, "migrate");
    return is_ok;
}

/*
 * One migration in one transaction. The advisory lock (held to the end of the
 * transaction) serializes concurrent migrates, including the creation of the
 * bookkeeping table; under it, a migration another migrate applied meanwhile
 * is seen and skipped.
 */
static int apply_migration(PGconn *db, const struct migration *m, FILE *report)
{
    bool is_done = false;
    bool is_ok = exec_ok(db, "BEGIN") &&
                 exec_ok(db, "SELECT pg_advisory_xact_lock(7215)") && /* catraca migrate's key */
                 exec_ok(db, "CREATE TABLE IF NOT EXISTS catraca_migrations (version integer "
                             "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
                             "DEFAULT now())") &&
                 is_applied(db, m, &is_done) == 0;
    if (is_ok && !is_done)
        is_ok = exec_ok(db, (const char *)m->sql) && record_migration(db, m);
    if (!is_ok || !exec_ok(db, "COMMIT")) {
        PQclear(PQexec(db, "ROLLBACK"));
        return PQstatus(db) == CONNECTION_OK ? CATRACA_E_IO : CATRACA_E_UNAVAILABLE;
    }
    if (!is_done && report != NULL)
        fprintf(report, "catraca migrate: applied %s\n", m->name);
    return 0;
}

int store_pg_migrate(const char *conninfo, FILE *report)
{
    PGconn *db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        log_error(db, "connect");
        PQfinish(db);
        return CATRACA_E_UNAVAILABLE;
    }
    /* NOTICEs such as "relation already exists, skipping" are not news. */
    int error = exec_ok(db, "SET client_min_messages = warning") ? 0 : CATRACA_E_IO;
    for (size_t i = 0; error == 0 && i < migration_count; i++)
        error = apply_migration(db, &migrations[i], report);
    if (error == 0 && report != NULL)
        fprintf(report, "catraca migrate: every migration up to version %d is applied\n",
                binary_version_of());
    PQfinish(db);
    return error;
}
