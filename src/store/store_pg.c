/*
 * store_pg.c - the store on PostgreSQL. Contract in store_pg.h and store.h.
 *
 * libpq does the protocol; values go as parameters (never spliced into SQL).
 * Rows of a batch travel as one text array per column and are expanded with
 * unnest(), so a batch of thousands of purchases is one statement. Array
 * elements are ids ([A-Za-z0-9._-], quoted anyway) and numbers; ticket codes
 * travel as hex text and are decoded in SQL.
 */
#include "store/store_pg.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "store/migrations.h"
#include "store/store_rows.h"

#define FENCED_SQLSTATE "CF001"
#define PAGE_ROWS 1000

#define PURCHASE_COLUMNS                                                                           \
    "id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, reason, "  \
    "hold_expires_at_ms, position, tickets, updated_ms"
#define EVENT_COLUMNS "spec, state, counts, offset_major, offset_minor, updated_ms, id"

static const char insert_purchases_sql[] =
    "INSERT INTO purchases (" PURCHASE_COLUMNS ") "
    "SELECT id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, "
    "reason, hold, position, decode(tickets, 'hex'), updated FROM unnest($1::bigint[], "
    "$2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::bigint[], "
    "$9::smallint[], $10::smallint[], $11::bigint[], $12::int[], $13::text[], $14::bigint[]) "
    "AS u(id, event, customer, category, quantity, seq_major, seq_minor, created_ms, status, "
    "reason, hold, position, tickets, updated) "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, "
    "hold_expires_at_ms = EXCLUDED.hold_expires_at_ms, position = EXCLUDED.position, "
    "tickets = EXCLUDED.tickets, updated_ms = EXCLUDED.updated_ms";

static const char update_purchases_sql[] =
    "UPDATE purchases p SET status = u.status, reason = u.reason, hold_expires_at_ms = u.hold, "
    "position = u.position, tickets = decode(u.tickets, 'hex'), updated_ms = u.updated "
    "FROM unnest($1::bigint[], $2::smallint[], $3::smallint[], $4::bigint[], $5::int[], "
    "$6::text[], $7::bigint[]) AS u(id, status, reason, hold, position, tickets, updated) "
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

enum statement {
    STATEMENT_LOAD,
    STATEMENT_PURCHASE_GET,
    STATEMENT_LINE_AHEAD,
    STATEMENT_ANSWER_GET,
    STATEMENT_EVENT_GET,
    STATEMENT_EVENT_LIST,
    STATEMENT_PURCHASES_PAGE,
    STATEMENT_COUNT
};

static const char *const statement_sql[STATEMENT_COUNT] = {
    [STATEMENT_LOAD] = "SELECT offset_major, offset_minor, snapshot, snapshot_major, "
                       "snapshot_minor FROM partitions WHERE event = $1",
    [STATEMENT_PURCHASE_GET] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE id = $1",
    [STATEMENT_LINE_AHEAD] = "SELECT count(*) FROM purchases WHERE event = $1 AND category = $2 "
                             "AND status = 1 AND (seq_major, seq_minor) < ($3, $4)",
    [STATEMENT_ANSWER_GET] = "SELECT purchase_id, type, result, reason, status FROM answers "
                             "WHERE event = $1 AND seq_major = $2 AND seq_minor = $3",
    [STATEMENT_EVENT_GET] = "SELECT " EVENT_COLUMNS " FROM events WHERE id = $1",
    [STATEMENT_EVENT_LIST] =
        "SELECT " EVENT_COLUMNS " FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    [STATEMENT_PURCHASES_PAGE] = "SELECT " PURCHASE_COLUMNS " FROM purchases WHERE event = $1 "
                                 "AND id > $2 ORDER BY id LIMIT 1000",
};

/* A growable text buffer for array literals. */
struct text {
    char *bytes;
    size_t length, capacity;
    bool is_failed;
};

struct store_pg {
    char *conninfo;
    PGconn *db;
    bool is_prepared;
    struct text columns[14]; /* one array literal per column of a batch statement */
};

/* ---- text arrays ------------------------------------------------------------------------- */

static void text_append(struct text *t, const char *bytes, size_t length)
{
    if (t->is_failed)
        return;
    if (t->capacity - t->length < length + 1) {
        size_t capacity = t->capacity ? t->capacity : 256;
        while (capacity - t->length < length + 1)
            capacity *= 2;
        char *grown = realloc(t->bytes, capacity);
        if (grown == NULL) {
            t->is_failed = true;
            return;
        }
        t->bytes = grown;
        t->capacity = capacity;
    }
    memcpy(t->bytes + t->length, bytes, length);
    t->length += length;
    t->bytes[t->length] = '\0';
}

static void array_open(struct text *t)
{
    t->length = 0;
    t->is_failed = false;
    text_append(t, "{", 1);
}

static void array_separator(struct text *t)
{
    if (t->length > 1)
        text_append(t, ",", 1);
}

static void array_int(struct text *t, int64_t value)
{
    char number[24];
    int length = snprintf(number, sizeof(number), "%lld", (long long)value);
    array_separator(t);
    text_append(t, number, (size_t)length);
}

static void array_string(struct text *t, const char *value)
{
    array_separator(t);
    text_append(t, "\"", 1);
    text_append(t, value, strlen(value));
    text_append(t, "\"", 1);
}

static void array_tickets(struct text *t, const struct store_purchase *p)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t bytes[STORE_TICKETS_BYTES_MAX];
    char text[2 * STORE_TICKETS_BYTES_MAX];
    size_t length = store_tickets_encode(p, bytes);
    for (size_t i = 0; i < length; i++) {
        text[2 * i] = hex[bytes[i] >> 4];
        text[2 * i + 1] = hex[bytes[i] & 15];
    }
    array_separator(t);
    text_append(t, "\"", 1);
    text_append(t, text, 2 * length);
    text_append(t, "\"", 1);
}

static bool arrays_close(struct text *columns, int count)
{
    bool is_ok = true;
    for (int i = 0; i < count; i++) {
        text_append(&columns[i], "}", 1);
        is_ok = is_ok && !columns[i].is_failed;
    }
    return is_ok;
}

/* ---- connection -------------------------------------------------------------------------- */

static void log_error(PGconn *db, const char *what)
{
    const char *message = db ? PQerrorMessage(db) : "no connection";
    fprintf(stderr, "level=warn component=store_pg msg=\"%s: %.*s\"\n", what,
            (int)strcspn(message, "\n"), message);
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
            log_error(store->db, "prepare");
            return PQstatus(store->db) == CONNECTION_OK ? CATRACA_E_IO : CATRACA_E_UNAVAILABLE;
        }
    }
    store->is_prepared = true;
    return 0;
}

static int ensure_connected(struct store_pg *store)
{
    if (store->db != NULL && PQstatus(store->db) == CONNECTION_OK && store->is_prepared)
        return 0;
    if (store->db != NULL)
        PQfinish(store->db);
    store->is_prepared = false;
    store->db = PQconnectdb(store->conninfo);
    if (PQstatus(store->db) != CONNECTION_OK) {
        log_error(store->db, "connect");
        PQfinish(store->db);
        store->db = NULL;
        return CATRACA_E_UNAVAILABLE;
    }
    return prepare_all(store);
}

/* Maps a failed result: fenced, unavailable (connection gone) or I/O. */
static int error_of(struct store_pg *store, const PGresult *result)
{
    const char *state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && strcmp(state, FENCED_SQLSTATE) == 0)
        return CATRACA_E_FENCED;
    log_error(store->db, "statement");
    if (PQstatus(store->db) != CONNECTION_OK || state == NULL || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0) {
        PQfinish(store->db);
        store->db = NULL;
        return CATRACA_E_UNAVAILABLE;
    }
    return CATRACA_E_IO;
}

static PGresult *run_prepared_once(struct store_pg *store, enum statement which, int count,
                                   const char *const *values, int *error);

/*
 * Runs a prepared read; NULL with *error set when it failed. A read that
 * found its connection broken (PostgreSQL restarted since) is tried once
 * more on a new one: reads are safe to repeat.
 */
static PGresult *run_prepared(struct store_pg *store, enum statement which, int count,
                              const char *const *values, int *error)
{
    bool was_connected = store->db != NULL;
    PGresult *result = run_prepared_once(store, which, count, values, error);
    if (result == NULL && *error == CATRACA_E_UNAVAILABLE && was_connected)
        result = run_prepared_once(store, which, count, values, error);
    return result;
}

static PGresult *run_prepared_once(struct store_pg *store, enum statement which, int count,
                                   const char *const *values, int *error)
{
    *error = ensure_connected(store);
    if (*error != 0)
        return NULL;
    char name[16];
    snprintf(name, sizeof(name), "s%d", (int)which);
    PGresult *result = PQexecPrepared(store->db, name, count, values, NULL, NULL, 0);
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        *error = error_of(store, result);
        PQclear(result);
        return NULL;
    }
    return result;
}

/* ---- commit ------------------------------------------------------------------------------ */

static int64_t column_int(const PGresult *result, int row, int column)
{
    return strtoll(PQgetvalue(result, row, column), NULL, 10);
}

static bool send(struct store_pg *store, const char *sql, int count, const char *const *values,
                 const int *lengths, const int *formats)
{
    return PQsendQueryParams(store->db, sql, count, NULL, values, lengths, formats, 0) == 1;
}

static bool send_arrays(struct store_pg *store, const char *sql, int count)
{
    if (!arrays_close(store->columns, count)) /* may move the buffers: take pointers after */
        return false;
    const char *values[14];
    for (int i = 0; i < count; i++)
        values[i] = store->columns[i].bytes;
    return send(store, sql, count, values, NULL, NULL);
}

static bool send_arrivals(struct store_pg *store, const struct store_batch *batch)
{
    struct text *c = store->columns;
    for (int i = 0; i < 14; i++)
        array_open(&c[i]);
    for (size_t i = 0; i < batch->purchase_count; i++) {
        const struct store_purchase *p = &batch->purchases[i];
        if (!p->has_arrival)
            continue;
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
    }
    return send_arrays(store, insert_purchases_sql, 14);
}

static bool send_updates(struct store_pg *store, const struct store_batch *batch)
{
    struct text *c = store->columns;
    for (int i = 0; i < 7; i++)
        array_open(&c[i]);
    for (size_t i = 0; i < batch->purchase_count; i++) {
        const struct store_purchase *p = &batch->purchases[i];
        if (p->has_arrival)
            continue;
        array_int(&c[0], (int64_t)p->purchase_id);
        array_int(&c[1], p->status);
        array_int(&c[2], p->reason);
        array_int(&c[3], p->hold_expires_at_ms);
        array_int(&c[4], p->position);
        array_tickets(&c[5], p);
        array_int(&c[6], p->updated_ms);
    }
    return send_arrays(store, update_purchases_sql, 7);
}

static bool send_answers(struct store_pg *store, const struct store_batch *batch)
{
    struct text *c = store->columns;
    for (int i = 0; i < 8; i++)
        array_open(&c[i]);
    for (size_t i = 0; i < batch->answer_count; i++) {
        const struct store_answer *a = &batch->answers[i];
        array_string(&c[0], a->event);
        array_int(&c[1], (int64_t)a->seq.major);
        array_int(&c[2], (int64_t)a->seq.minor);
        array_int(&c[3], (int64_t)a->purchase_id);
        array_int(&c[4], a->type);
        array_int(&c[5], a->result);
        array_int(&c[6], a->reason);
        array_int(&c[7], a->status);
    }
    return send_arrays(store, upsert_answers_sql, 8);
}

static bool send_event(struct store_pg *store, const struct store_batch *batch)
{
    const struct store_event *event = batch->event_row;
    static _Thread_local uint8_t spec[CATRACA_COMMAND_ENCODED_MAX];
    uint8_t counts[STORE_COUNTS_BYTES_MAX];
    size_t spec_length = 0, counts_length = 0;
    if (store_spec_encode(&event->spec, spec, &spec_length) != 0)
        return false;
    store_counts_encode(event, counts, &counts_length);
    char state[8], major[24], minor[24], updated[24];
    snprintf(state, sizeof(state), "%d", event->state);
    snprintf(major, sizeof(major), "%lld", (long long)event->offset.major);
    snprintf(minor, sizeof(minor), "%lld", (long long)event->offset.minor);
    snprintf(updated, sizeof(updated), "%lld", (long long)event->updated_ms);
    const char *values[] = {
        batch->event, (const char *)spec, state, (const char *)counts, major, minor, updated};
    int lengths[] = {0, (int)spec_length, 0, (int)counts_length, 0, 0, 0};
    int formats[] = {0, 1, 0, 1, 0, 0, 0};
    return send(store, upsert_event_sql, 7, values, lengths, formats);
}

static bool send_offset(struct store_pg *store, const struct store_batch *batch)
{
    char major[24], minor[24], snapshot_major[24], snapshot_minor[24];
    snprintf(major, sizeof(major), "%lld", (long long)batch->offset.major);
    snprintf(minor, sizeof(minor), "%lld", (long long)batch->offset.minor);
    if (batch->snapshot == NULL) {
        const char *values[] = {batch->event, major, minor};
        return send(store,
                    "UPDATE partitions SET offset_major = $2, offset_minor = $3 WHERE event = $1",
                    3, values, NULL, NULL);
    }
    snprintf(snapshot_major, sizeof(snapshot_major), "%lld",
             (long long)batch->snapshot_offset.major);
    snprintf(snapshot_minor, sizeof(snapshot_minor), "%lld",
             (long long)batch->snapshot_offset.minor);
    const char *values[] = {batch->event,   major,         minor, (const char *)batch->snapshot,
                            snapshot_major, snapshot_minor};
    int lengths[] = {0, 0, 0, (int)batch->snapshot_length, 0, 0};
    int formats[] = {0, 0, 0, 1, 0, 0};
    return send(store,
                "UPDATE partitions SET offset_major = $2, offset_minor = $3, snapshot = $4, "
                "snapshot_major = $5, snapshot_minor = $6 WHERE event = $1",
                6, values, lengths, formats);
}

/* Sends the batch's statements into the pipeline; returns how many, or -1. */
static int send_batch(struct store_pg *store, const struct store_batch *batch)
{
    char epoch[24];
    snprintf(epoch, sizeof(epoch), "%lld", (long long)batch->epoch);
    const char *fence[] = {batch->event, epoch};
    int sent = 0;
    bool has_arrivals = false, has_updates = false;
    for (size_t i = 0; i < batch->purchase_count; i++) {
        has_arrivals = has_arrivals || batch->purchases[i].has_arrival;
        has_updates = has_updates || !batch->purchases[i].has_arrival;
    }
    if (!send(store, "SELECT catraca_fence($1, $2::bigint)", 2, fence, NULL, NULL))
        return -1;
    sent++;
    if (batch->event_row != NULL && (sent++, !send_event(store, batch)))
        return -1;
    if (has_arrivals && (sent++, !send_arrivals(store, batch)))
        return -1;
    if (has_updates && (sent++, !send_updates(store, batch)))
        return -1;
    if (batch->answer_count > 0 && (sent++, !send_answers(store, batch)))
        return -1;
    if (!send_offset(store, batch))
        return -1;
    return sent + 1;
}

/* Reads every result up to the pipeline's sync; the first failure decides the error. */
static int read_results(struct store_pg *store, int expected)
{
    int error = 0;
    for (int i = 0; i < expected; i++) {
        PGresult *result = PQgetResult(store->db);
        if (result == NULL) {
            error = error != 0 ? error : CATRACA_E_UNAVAILABLE;
            break;
        }
        ExecStatusType status = PQresultStatus(result);
        if (error == 0 && status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            error = status == PGRES_PIPELINE_ABORTED ? CATRACA_E_IO : error_of(store, result);
        PQclear(result);
        if (store->db == NULL)
            return error;
        PQclear(PQgetResult(store->db)); /* the NULL that ends each query's results */
    }
    PGresult *sync = PQgetResult(store->db);
    if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC && error == 0)
        error = error_of(store, sync);
    PQclear(sync);
    return error;
}

static int store_pg_commit(void *context, const struct store_batch *batch)
{
    struct store_pg *store = context;
    int error = ensure_connected(store);
    if (error != 0)
        return error;
    if (PQenterPipelineMode(store->db) != 1)
        return error_of(store, NULL);
    /* No BEGIN: the statements up to the sync are one implicit transaction; any error
     * (the fence included) rolls back all of it. */
    int expected = send_batch(store, batch);
    if (expected < 0 || PQpipelineSync(store->db) != 1) {
        log_error(store->db, "pipeline send");
        PQfinish(store->db); /* a half-sent pipeline: start over on a fresh connection */
        store->db = NULL;
        return CATRACA_E_UNAVAILABLE;
    }
    error = read_results(store, expected);
    if (store->db != NULL && PQexitPipelineMode(store->db) != 1) {
        PQfinish(store->db);
        store->db = NULL;
    }
    return error;
}

/* ---- reads ------------------------------------------------------------------------------- */

static int unescape_bytea(const char *text, uint8_t **out, size_t *length)
{
    *out = PQunescapeBytea((const unsigned char *)text, length);
    return *out != NULL ? 0 : CATRACA_E_NOMEM;
}

static int store_pg_load(void *context, const char *event, struct log_seq *offset,
                         uint8_t **snapshot, size_t *snapshot_length,
                         struct log_seq *snapshot_offset)
{
    struct store_pg *store = context;
    const char *values[] = {event};
    int error = 0;
    *snapshot = NULL;
    PGresult *result = run_prepared(store, STATEMENT_LOAD, 1, values, &error);
    if (result == NULL)
        return error;
    if (PQntuples(result) == 0) {
        PQclear(result);
        return CATRACA_E_NOTFOUND;
    }
    *offset =
        (struct log_seq){(uint64_t)column_int(result, 0, 0), (uint64_t)column_int(result, 0, 1)};
    if (!PQgetisnull(result, 0, 2)) {
        uint8_t *escaped = NULL;
        size_t length = 0;
        error = unescape_bytea(PQgetvalue(result, 0, 2), &escaped, &length);
        if (error == 0) {
            /* PQunescapeBytea's memory must go back through PQfreemem: copy to malloc'ed. */
            *snapshot = malloc(length > 0 ? length : 1);
            if (*snapshot == NULL)
                error = CATRACA_E_NOMEM;
            else
                memcpy(*snapshot, escaped, length);
            PQfreemem(escaped);
            *snapshot_length = length;
            *snapshot_offset = (struct log_seq){(uint64_t)column_int(result, 0, 3),
                                                (uint64_t)column_int(result, 0, 4)};
        }
    }
    PQclear(result);
    return error;
}

static void copy_text(char *out, size_t size, const char *text)
{
    snprintf(out, size, "%s", text);
}

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
    return 0;
}

/*
 * A waiting purchase's place now: one more than the waiting purchases of its
 * category that arrived earlier (the stored position was exact when decided).
 */
static int line_position(struct store_pg *store, struct store_purchase *p)
{
    char major[24], minor[24];
    snprintf(major, sizeof(major), "%lld", (long long)p->seq.major);
    snprintf(minor, sizeof(minor), "%lld", (long long)p->seq.minor);
    const char *values[] = {p->event, p->category, major, minor};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_LINE_AHEAD, 4, values, &error);
    if (result == NULL)
        return error;
    p->position = (uint32_t)column_int(result, 0, 0) + 1;
    PQclear(result);
    return 0;
}

static int store_pg_get_purchase(void *context, uint64_t purchase_id, struct store_purchase *out)
{
    struct store_pg *store = context;
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)purchase_id);
    const char *values[] = {id};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_PURCHASE_GET, 1, values, &error);
    if (result == NULL)
        return error;
    error = PQntuples(result) == 1 ? purchase_from_row(result, 0, out) : CATRACA_E_NOTFOUND;
    PQclear(result);
    if (error == 0 && out->status == ENGINE_STATUS_WAITING)
        error = line_position(store, out);
    return error;
}

static int store_pg_get_answer(void *context, const char *event, struct log_seq seq,
                               struct store_answer *out)
{
    struct store_pg *store = context;
    char major[24], minor[24];
    snprintf(major, sizeof(major), "%lld", (long long)seq.major);
    snprintf(minor, sizeof(minor), "%lld", (long long)seq.minor);
    const char *values[] = {event, major, minor};
    int error = 0;
    PGresult *result = run_prepared(store, STATEMENT_ANSWER_GET, 3, values, &error);
    if (result == NULL)
        return error;
    if (PQntuples(result) == 1) {
        memset(out, 0, sizeof(*out));
        snprintf(out->event, sizeof(out->event), "%s", event);
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
    char limit[24];
    snprintf(limit, sizeof(limit), "%zu", max);
    const char *values[] = {after_id, limit};
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

/* Pages through the event's purchases by id (keyset), PAGE_ROWS at a time. */
static int store_pg_for_each_purchase(void *context, const char *event,
                                      int (*visit)(void *, const struct store_purchase *),
                                      void *visit_context)
{
    struct store_pg *store = context;
    char after[24];
    snprintf(after, sizeof(after), "%lld", (long long)INT64_MIN);
    for (;;) {
        const char *values[] = {event, after};
        int error = 0;
        PGresult *result = run_prepared(store, STATEMENT_PURCHASES_PAGE, 2, values, &error);
        if (result == NULL)
            return error;
        int rows = PQntuples(result);
        struct store_purchase row;
        for (int i = 0; error == 0 && i < rows; i++) {
            error = purchase_from_row(result, i, &row);
            if (error == 0)
                error = visit(visit_context, &row);
        }
        if (rows > 0)
            snprintf(after, sizeof(after), "%s", PQgetvalue(result, rows - 1, 0));
        PQclear(result);
        if (error != 0 || rows < PAGE_ROWS)
            return error;
    }
}

static void store_pg_close(void *context)
{
    struct store_pg *store = context;
    PQfinish(store->db);
    for (int i = 0; i < 14; i++)
        free(store->columns[i].bytes);
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
    .close = store_pg_close,
};

int store_pg_open(const char *conninfo, struct catraca_store *out)
{
    struct store_pg *store = calloc(1, sizeof(*store));
    if (store == NULL)
        return CATRACA_E_NOMEM;
    store->conninfo = strdup(conninfo);
    if (store->conninfo == NULL) {
        free(store);
        return CATRACA_E_NOMEM;
    }
    int error = ensure_connected(store);
    if (error != 0 && error != CATRACA_E_UNAVAILABLE) {
        store_pg_close(store);
        return error;
    }
    *out = (struct catraca_store){.ops = &store_pg_ops, .context = store};
    return 0; /* unreachable now is fine: every call connects again */
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

static int database_version(PGconn *db, int *version)
{
    PGresult *result = PQexec(db, "SELECT to_regclass('catraca_migrations') IS NOT NULL");
    bool has_table = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1 &&
                     strcmp(PQgetvalue(result, 0, 0), "t") == 0;
    bool is_ok = PQresultStatus(result) == PGRES_TUPLES_OK;
    PQclear(result);
    *version = 0;
    if (!is_ok)
        return CATRACA_E_IO;
    if (!has_table)
        return 0;
    result = PQexec(db, "SELECT coalesce(max(version), 0) FROM catraca_migrations");
    is_ok = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1;
    if (is_ok)
        *version = atoi(PQgetvalue(result, 0, 0));
    PQclear(result);
    return is_ok ? 0 : CATRACA_E_IO;
}

static int apply_migration(PGconn *db, const struct migration *m, FILE *report)
{
    char record[256];
    snprintf(record, sizeof(record),
             "INSERT INTO catraca_migrations (version, name) VALUES (%d, '%s')", m->version,
             m->name); /* both from the build (cmake/embed_sql.cmake checks the names) */
    int version = 0;
    if (!exec_ok(db, "BEGIN") || !exec_ok(db, "SELECT pg_advisory_xact_lock(7215)") ||
        database_version(db, &version) != 0) {
        exec_ok(db, "ROLLBACK");
        return CATRACA_E_IO;
    }
    if (version >= m->version) /* another migrate got there first */
        return exec_ok(db, "ROLLBACK") ? 0 : CATRACA_E_IO;
    if (!exec_ok(db, (const char *)m->sql) || !exec_ok(db, record) || !exec_ok(db, "COMMIT")) {
        exec_ok(db, "ROLLBACK");
        return CATRACA_E_IO;
    }
    if (report != NULL)
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
    int error = exec_ok(db, "SET client_min_messages = warning") &&
                        exec_ok(db, "CREATE TABLE IF NOT EXISTS catraca_migrations (version "
                                    "integer PRIMARY KEY, name text NOT NULL, applied_at "
                                    "timestamptz NOT NULL DEFAULT now())")
                    ? 0
                    : CATRACA_E_IO;
    int version = 0;
    if (error == 0)
        error = database_version(db, &version);
    for (size_t i = 0; error == 0 && i < migration_count; i++)
        if (migrations[i].version > version)
            error = apply_migration(db, &migrations[i], report);
    if (error == 0 && report != NULL)
        fprintf(report, "catraca migrate: the schema is at version %d\n",
                migration_count ? migrations[migration_count - 1].version : 0);
    PQfinish(db);
    return error;
}

int store_pg_schema_version(const char *conninfo, int *database_version_out, int *binary_version)
{
    *binary_version = migration_count ? migrations[migration_count - 1].version : 0;
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
