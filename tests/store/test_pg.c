/*
 * The PostgreSQL store adapter on a real server: tests/servers.py starts one
 * and sets CATRACA_TEST_POSTGRES (exit 77, skipped, without it). Each case
 * runs in a schema of its own (search_path in the conninfo), migrated unless
 * the case is about migrating.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "core/error.h"
#include "store/migrations.h"
#include "store/store_pg.h"

#define SKIPPED 77

static char schema[64];
static char conninfo[4096]; /* the server's, confined to `schema` */
static PGconn *admin;       /* the same schema, for SQL the store does not offer */

/* ---- the server and a schema per case ---------------------------------------------------- */

static void append_quoted(char *out, size_t size, const char *key, const char *value)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, size - n, "%s='", key);
    for (const char *c = value; *c != '\0' && n + 4 < size; c++) {
        if (*c == '\'' || *c == '\\')
            out[n++] = '\\';
        out[n++] = *c;
    }
    snprintf(out + n, size - n, "' ");
}

/* The server's conninfo (keywords or URI) as keywords, with `options` (may be NULL). */
static void conninfo_with(char *out, size_t size, const char *options)
{
    char *message = NULL;
    PQconninfoOption *parsed = PQconninfoParse(getenv("CATRACA_TEST_POSTGRES"), &message);
    assert_non_null(parsed);
    out[0] = '\0';
    for (PQconninfoOption *o = parsed; o->keyword != NULL; o++)
        if (o->val != NULL && o->val[0] != '\0' && strcmp(o->keyword, "options") != 0)
            append_quoted(out, size, o->keyword, o->val);
    if (options != NULL)
        append_quoted(out, size, "options", options);
    PQconninfoFree(parsed);
}

static PGresult *sql_result(const char *sql)
{
    PGresult *result = PQexec(admin, sql);
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(admin));
    return result;
}

static void sql(const char *sql_text)
{
    PQclear(sql_result(sql_text));
}

/* The first column of the first row as an integer. */
static int64_t sql_int(const char *sql_text)
{
    PGresult *result = sql_result(sql_text);
    assert_int_equal(PQntuples(result), 1);
    int64_t value = strtoll(PQgetvalue(result, 0, 0), NULL, 10);
    PQclear(result);
    return value;
}

static void sql_text(const char *sql_text, char *out, size_t size)
{
    PGresult *result = sql_result(sql_text);
    assert_int_equal(PQntuples(result), 1);
    snprintf(out, size, "%s", PQgetvalue(result, 0, 0));
    PQclear(result);
}

static int setup_schema(void **state)
{
    (void)state;
    static int cases;
    snprintf(schema, sizeof(schema), "catraca_test_%ld_%d", (long)getpid(), ++cases);
    char options[128];
    snprintf(options, sizeof(options), "-c search_path=%s", schema);
    conninfo_with(conninfo, sizeof(conninfo), options);
    admin = PQconnectdb(conninfo);
    if (PQstatus(admin) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(admin));
    sql("SET client_min_messages = warning"); /* no NOTICE per dropped table */
    char create[128];
    snprintf(create, sizeof(create), "CREATE SCHEMA %s", schema);
    sql(create);
    return 0;
}

static int setup_migrated(void **state)
{
    setup_schema(state);
    assert_int_equal(store_pg_migrate(conninfo, NULL), 0);
    return 0;
}

static int teardown_schema(void **state)
{
    (void)state;
    char drop[128];
    snprintf(drop, sizeof(drop), "DROP SCHEMA %s CASCADE", schema);
    sql(drop);
    PQfinish(admin);
    admin = NULL;
    return 0;
}

static struct catraca_store open_store(void)
{
    struct catraca_store store;
    assert_int_equal(store_pg_open(conninfo, &store), 0);
    return store;
}

/* ---- rows -------------------------------------------------------------------------------- */

static struct store_event event_row(const char *id, struct log_seq offset)
{
    struct store_event e;
    memset(&e, 0, sizeof(e));
    snprintf(e.spec.id, sizeof(e.spec.id), "%s", id);
    snprintf(e.spec.name, sizeof(e.spec.name), "Festival \"day\" \\ one");
    e.spec.hold_ms = 60000;
    e.spec.per_customer_limit = 4;
    e.spec.state = ENGINE_STATE_OPEN;
    e.spec.category_count = 2;
    for (int i = 0; i < CATRACA_SECRET_BYTES; i++)
        e.spec.secret[i] = (uint8_t)(0xf0 + i);
    snprintf(e.spec.categories[0].id, sizeof(e.spec.categories[0].id), "a");
    snprintf(e.spec.categories[0].name, sizeof(e.spec.categories[0].name), "Pista");
    e.spec.categories[0].price_cents = 12345;
    e.spec.categories[0].capacity = 100;
    snprintf(e.spec.categories[1].id, sizeof(e.spec.categories[1].id), "b");
    e.spec.categories[1].capacity = 7;
    e.state = ENGINE_STATE_PAUSED;
    e.counts[0] = (struct engine_category_counts){100, 90, 6, 4, 3, 5, 2, 1700000000123};
    e.counts[1] = (struct engine_category_counts){7, 0, 7, 0, 4294967295u, 1, 0, 0};
    e.offset = offset;
    e.updated_ms = 1712345678901;
    return e;
}

static struct store_purchase arrival(uint64_t id, const char *event, const char *category,
                                     struct log_seq seq, uint8_t status)
{
    struct store_purchase p;
    memset(&p, 0, sizeof(p));
    p.purchase_id = id;
    snprintf(p.event, sizeof(p.event), "%s", event);
    p.has_arrival = true;
    snprintf(p.customer, sizeof(p.customer), "customer-%" PRIu64, id);
    snprintf(p.category, sizeof(p.category), "%s", category);
    p.quantity = 2;
    p.seq = seq;
    p.created_ms = 1712345600000 + (int64_t)seq.major;
    p.status = status;
    p.updated_ms = p.created_ms + 1;
    return p;
}

static struct store_batch batch_of(const char *event, uint64_t epoch, struct log_seq offset)
{
    return (struct store_batch){.event = event, .epoch = epoch, .offset = offset};
}

static void assert_purchase_equal(const struct store_purchase *want,
                                  const struct store_purchase *got)
{
    assert_true(got->purchase_id == want->purchase_id);
    assert_string_equal(got->event, want->event);
    assert_true(got->has_arrival);
    assert_string_equal(got->customer, want->customer);
    assert_string_equal(got->category, want->category);
    assert_int_equal(got->quantity, want->quantity);
    assert_true(got->seq.major == want->seq.major && got->seq.minor == want->seq.minor);
    assert_int_equal(got->created_ms, want->created_ms);
    assert_int_equal(got->status, want->status);
    assert_int_equal(got->reason, want->reason);
    assert_int_equal(got->hold_expires_at_ms, want->hold_expires_at_ms);
    assert_int_equal(got->position, want->position);
    assert_int_equal(got->ticket_count, want->ticket_count);
    for (int i = 0; i < want->ticket_count; i++)
        assert_true(got->ticket_codes[i] == want->ticket_codes[i]);
    assert_int_equal(got->updated_ms, want->updated_ms);
    assert_int_equal(got->is_refund_due, want->is_refund_due);
    assert_string_equal(got->payment_ref, want->payment_ref);
}

static void assert_event_equal(const struct store_event *want, const struct store_event *got)
{
    const struct engine_event_spec *w = &want->spec, *g = &got->spec;
    assert_string_equal(g->id, w->id);
    assert_string_equal(g->name, w->name);
    assert_int_equal(g->hold_ms, w->hold_ms);
    assert_int_equal(g->per_customer_limit, w->per_customer_limit);
    assert_int_equal(g->state, w->state);
    assert_int_equal(g->category_count, w->category_count);
    assert_memory_equal(g->secret, w->secret, CATRACA_SECRET_BYTES);
    for (int i = 0; i < w->category_count; i++) {
        assert_string_equal(g->categories[i].id, w->categories[i].id);
        assert_string_equal(g->categories[i].name, w->categories[i].name);
        assert_int_equal(g->categories[i].price_cents, w->categories[i].price_cents);
        assert_int_equal(g->categories[i].capacity, w->categories[i].capacity);
        assert_memory_equal(&got->counts[i], &want->counts[i], sizeof(want->counts[i]));
    }
    assert_int_equal(got->state, want->state);
    assert_true(got->offset.major == want->offset.major && got->offset.minor == want->offset.minor);
    assert_int_equal(got->updated_ms, want->updated_ms);
}

static struct log_seq offset_of(struct catraca_store *store, const char *event)
{
    struct log_seq offset = {0, 0}, snapshot_offset;
    uint8_t *snapshot = NULL;
    size_t length = 0;
    assert_int_equal(
        store->ops->load(store->context, event, &offset, &snapshot, &length, &snapshot_offset), 0);
    free(snapshot);
    return offset;
}

/* ---- migrations and opening -------------------------------------------------------------- */

static char *migrate_report(int *error)
{
    char *text = NULL;
    size_t length = 0;
    FILE *report = open_memstream(&text, &length);
    assert_non_null(report);
    *error = store_pg_migrate(conninfo, report);
    fclose(report);
    return text;
}

static void test_migrate_twice_and_versions(void **state)
{
    (void)state;
    int database = -1, binary = -1;
    assert_int_equal(store_pg_schema_version(conninfo, &database, &binary), 0);
    assert_int_equal(database, 0);
    assert_int_equal(binary, migrations[migration_count - 1].version);
    struct catraca_store store;
    assert_int_equal(store_pg_open(conninfo, &store), CATRACA_E_VERSION);
    int error = -1;
    char *report = migrate_report(&error);
    assert_int_equal(error, 0);
    assert_non_null(strstr(report, "applied 001_init.sql\n"));
    free(report);
    assert_int_equal(sql_int("SELECT count(*) FROM catraca_migrations"), (int64_t)migration_count);
    report = migrate_report(&error); /* a no-op */
    assert_int_equal(error, 0);
    assert_null(strstr(report, "applied "));
    free(report);
    assert_int_equal(sql_int("SELECT count(*) FROM catraca_migrations"), (int64_t)migration_count);
    assert_int_equal(store_pg_schema_version(conninfo, &database, &binary), 0);
    assert_int_equal(database, binary);
    store = open_store();
    store.ops->close(store.context);
}

struct migrate_thread {
    pthread_t thread;
    int error;
    char *report;
};

static void *migrate_main(void *argument)
{
    struct migrate_thread *t = argument;
    t->report = migrate_report(&t->error);
    return NULL;
}

static void test_concurrent_migrates_apply_each_once(void **state)
{
    (void)state;
    struct migrate_thread threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i].thread, NULL, migrate_main, &threads[i]), 0);
    size_t applied = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i].thread, NULL);
        assert_int_equal(threads[i].error, 0);
        for (const char *at = threads[i].report; (at = strstr(at, "applied ")) != NULL; at++)
            applied++;
        free(threads[i].report);
    }
    assert_int_equal(applied, migration_count);
    assert_int_equal(sql_int("SELECT count(*) FROM catraca_migrations"), (int64_t)migration_count);
}

static void test_unreachable_server(void **state)
{
    (void)state;
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t length = sizeof(address);
    assert_int_equal(bind(probe, (struct sockaddr *)&address, length), 0);
    assert_int_equal(getsockname(probe, (struct sockaddr *)&address, &length), 0);
    close(probe); /* nothing listens on that port now */
    char nowhere[128];
    snprintf(nowhere, sizeof(nowhere), "host=127.0.0.1 port=%u dbname=x connect_timeout=2",
             (unsigned)ntohs(address.sin_port));
    struct catraca_store store;
    int database = 0, binary = 0;
    assert_int_equal(store_pg_open(nowhere, &store), 0); /* lazy: every call tries again */
    struct store_event e;
    assert_int_equal(store.ops->get_event(store.context, "ev", &e), CATRACA_E_UNAVAILABLE);
    struct log_seq offset, snapshot_offset;
    uint8_t *snapshot = NULL;
    size_t snapshot_length = 0;
    assert_int_equal(store.ops->load(store.context, "ev", &offset, &snapshot, &snapshot_length,
                                     &snapshot_offset),
                     CATRACA_E_UNAVAILABLE);
    store.ops->close(store.context);
    assert_int_equal(store_pg_migrate(nowhere, NULL), CATRACA_E_UNAVAILABLE);
    assert_int_equal(store_pg_schema_version(nowhere, &database, &binary), CATRACA_E_UNAVAILABLE);
}

/* ---- commit and read back ---------------------------------------------------------------- */

static void test_round_trip_of_every_field(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct store_event event = event_row("ev", (struct log_seq){1712345678901, 3});
    struct store_purchase rows[2] = {
        arrival(0x8000000000000001ULL, "ev", "a", (struct log_seq){1712345678900, 9},
                ENGINE_STATUS_HELD),
        arrival(UINT64_MAX, "ev", "b", (struct log_seq){UINT64_MAX, UINT64_MAX},
                ENGINE_STATUS_CONFIRMED),
    };
    rows[0].hold_expires_at_ms = INT64_MAX;
    rows[0].quantity = 10;
    rows[0].status = ENGINE_STATUS_EXPIRED; /* a late payment, to refund */
    rows[0].is_refund_due = true;
    snprintf(rows[0].payment_ref, sizeof(rows[0].payment_ref), "psp_'\"{late},");
    rows[1].reason = 3;
    rows[1].position = 2000000000u; /* positions are bounded by purchases_max, far below */
    rows[1].created_ms = INT64_MIN;
    rows[1].ticket_count = 3;
    rows[1].ticket_codes[0] = 1;
    rows[1].ticket_codes[1] = UINT64_MAX;
    rows[1].ticket_codes[2] = 0x8000000000000000ULL;
    struct store_answer answer = {.seq = {1712345678901, 3},
                                  .purchase_id = 0x8000000000000001ULL,
                                  .type = ENGINE_OUTCOME_CONFIRM,
                                  .result = ENGINE_RESULT_CONFLICT,
                                  .reason = 8,
                                  .status = ENGINE_STATUS_EXPIRED};
    snprintf(answer.event, sizeof(answer.event), "ev");
    struct store_batch batch = batch_of("ev", 0, event.offset);
    batch.event_row = &event;
    batch.purchases = rows;
    batch.purchase_count = 2;
    batch.answers = &answer;
    batch.answer_count = 1;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);

    struct store_purchase got;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store.ops->get_purchase(store.context, rows[i].purchase_id, &got), 0);
        assert_purchase_equal(&rows[i], &got);
    }
    assert_int_equal(store.ops->get_purchase(store.context, 5, &got), CATRACA_E_NOTFOUND);
    /* the same bits as bigint, and the tickets in the store_rows byte format */
    assert_int_equal(sql_int("SELECT count(*) FROM purchases WHERE id IN (-1, "
                             "-9223372036854775807)"),
                     2);
    char hex[128];
    sql_text("SELECT encode(tickets, 'hex') FROM purchases WHERE id = -1", hex, sizeof(hex));
    assert_string_equal(hex, "0100000000000000ffffffffffffffff0000000000000080");
    sql_text("SELECT coalesce(encode(tickets, 'hex'), 'null') FROM purchases WHERE id = "
             "-9223372036854775807",
             hex, sizeof(hex));
    assert_string_equal(hex, "");

    struct store_purchase refunds[3];
    size_t count = 0;
    assert_int_equal(store.ops->list_refunds(store.context, "ev", 0, refunds, 3, &count), 0);
    assert_int_equal(count, 1);
    assert_purchase_equal(&rows[0], &refunds[0]);
    assert_int_equal(store.ops->list_refunds(store.context, "other", 0, refunds, 3, &count), 0);
    assert_int_equal(count, 0);

    struct store_answer a;
    assert_int_equal(store.ops->get_answer(store.context, "ev", answer.seq, &a), 0);
    assert_string_equal(a.event, "ev");
    assert_true(a.seq.major == answer.seq.major && a.seq.minor == answer.seq.minor);
    assert_true(a.purchase_id == answer.purchase_id);
    assert_int_equal(a.type, answer.type);
    assert_int_equal(a.result, answer.result);
    assert_int_equal(a.reason, answer.reason);
    assert_int_equal(a.status, answer.status);
    assert_int_equal(store.ops->get_answer(store.context, "ev", (struct log_seq){1, 0}, &a),
                     CATRACA_E_NOTFOUND);

    struct store_event e;
    assert_int_equal(store.ops->get_event(store.context, "ev", &e), 0);
    assert_event_equal(&event, &e);
    assert_int_equal(store.ops->get_event(store.context, "nope", &e), CATRACA_E_NOTFOUND);
    struct log_seq offset = offset_of(&store, "ev");
    assert_true(offset.major == event.offset.major && offset.minor == 3);
    store.ops->close(store.context);
}

static void test_recommit_is_idempotent_and_updates_keep_arrival(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct store_purchase row =
        arrival(77, "ev", "a", (struct log_seq){3, 0}, ENGINE_STATUS_WAITING);
    row.position = 1;
    struct store_batch batch = batch_of("ev", 0, (struct log_seq){3, 0});
    batch.purchases = &row;
    batch.purchase_count = 1;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    assert_int_equal(store.ops->commit(store.context, &batch), 0); /* replayed after a crash */
    assert_int_equal(sql_int("SELECT count(*) FROM purchases"), 1);

    struct store_purchase update;
    memset(&update, 0, sizeof(update));
    update.purchase_id = 77;
    snprintf(update.customer, sizeof(update.customer), "someone-else"); /* ignored */
    update.status = ENGINE_STATUS_CONFIRMED;
    update.ticket_count = 2;
    update.ticket_codes[0] = 0xdeadbeefcafef00dULL;
    update.ticket_codes[1] = 42;
    update.updated_ms = 9999;
    struct store_purchase unknown = update;
    unknown.purchase_id = 78; /* an update of a row that does not exist creates nothing */
    struct store_purchase updates[2] = {update, unknown};
    batch = batch_of("ev", 0, (struct log_seq){4, 0});
    batch.purchases = updates;
    batch.purchase_count = 2;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(store.ops->commit(store.context, &batch), 0);
        struct store_purchase got;
        assert_int_equal(store.ops->get_purchase(store.context, 77, &got), 0);
        struct store_purchase want = row;
        want.status = ENGINE_STATUS_CONFIRMED;
        want.position = 0;
        want.ticket_count = 2;
        want.ticket_codes[0] = update.ticket_codes[0];
        want.ticket_codes[1] = 42;
        want.updated_ms = 9999;
        assert_purchase_equal(&want, &got);
        assert_int_equal(store.ops->get_purchase(store.context, 78, &got), CATRACA_E_NOTFOUND);
    }
    /* an arrival re-committed after its update changes the decision, never the arrival */
    row.status = ENGINE_STATUS_HELD;
    snprintf(row.customer, sizeof(row.customer), "changed");
    batch = batch_of("ev", 0, (struct log_seq){5, 0});
    batch.purchases = &row;
    batch.purchase_count = 1;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    struct store_purchase got;
    assert_int_equal(store.ops->get_purchase(store.context, 77, &got), 0);
    assert_string_equal(got.customer, "customer-77");
    assert_int_equal(got.status, ENGINE_STATUS_HELD);
    assert_int_equal(got.ticket_count, 0);
    store.ops->close(store.context);
}

static void test_answers_are_replaced(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct store_answer answers[2] = {
        {.seq = {10, 0}, .type = ENGINE_OUTCOME_EVENT, .result = ENGINE_RESULT_OK},
        {.seq = {10, 1}, .purchase_id = 5, .type = ENGINE_OUTCOME_CANCEL, .status = 5},
    };
    snprintf(answers[0].event, sizeof(answers[0].event), "ev");
    snprintf(answers[1].event, sizeof(answers[1].event), "ev");
    struct store_batch batch = batch_of("ev", 0, (struct log_seq){10, 1});
    batch.answers = answers;
    batch.answer_count = 2;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    answers[1].result = ENGINE_RESULT_REPEATED;
    answers[1].reason = 9;
    batch.answers = &answers[1];
    batch.answer_count = 1;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    struct store_answer a;
    assert_int_equal(store.ops->get_answer(store.context, "ev", (struct log_seq){10, 0}, &a), 0);
    assert_true(a.purchase_id == 0 && a.type == ENGINE_OUTCOME_EVENT);
    assert_int_equal(store.ops->get_answer(store.context, "ev", (struct log_seq){10, 1}, &a), 0);
    assert_true(a.purchase_id == 5 && a.result == ENGINE_RESULT_REPEATED && a.reason == 9);
    assert_int_equal(store.ops->get_answer(store.context, "other", (struct log_seq){10, 1}, &a),
                     CATRACA_E_NOTFOUND);
    assert_int_equal(sql_int("SELECT count(*) FROM answers"), 2);
    store.ops->close(store.context);
}

static void test_events_list_in_byte_order_by_pages(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    const char *ids[] = {"c_3", "a", "c.2", "B", "c-1"}; /* byte order: B a c-1 c.2 c_3 */
    for (int i = 0; i < 5; i++) {
        struct store_event event = event_row(ids[i], (struct log_seq){(uint64_t)i + 1, 0});
        struct store_batch batch = batch_of(ids[i], 0, event.offset);
        batch.event_row = &event;
        assert_int_equal(store.ops->commit(store.context, &batch), 0);
    }
    const char *pages[][2] = {{"B", "a"}, {"c-1", "c.2"}, {"c_3", NULL}};
    char after[CATRACA_ID_MAX + 1] = "";
    struct store_event out[2];
    for (int page = 0; page < 3; page++) {
        size_t count = 9;
        assert_int_equal(store.ops->list_events(store.context, after, out, 2, &count), 0);
        assert_int_equal(count, page < 2 ? 2 : 1);
        for (size_t i = 0; i < count; i++)
            assert_string_equal(out[i].spec.id, pages[page][i]);
        snprintf(after, sizeof(after), "%s", out[count - 1].spec.id);
    }
    size_t count = 9;
    assert_int_equal(store.ops->list_events(store.context, after, out, 2, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(store.ops->list_events(store.context, "", out, 1, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(out[0].counts[1].waiting_count, 4294967295u);
    store.ops->close(store.context);
}

static void test_load_with_and_without_snapshot(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct log_seq offset, snapshot_offset = {0, 0};
    uint8_t *snapshot = NULL;
    size_t length = 0;
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset),
        CATRACA_E_NOTFOUND);
    struct store_batch batch = batch_of("ev", 0, (struct log_seq){5, 1});
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset), 0);
    assert_true(offset.major == 5 && offset.minor == 1 && snapshot == NULL && length == 0);

    size_t big_length = 3 << 20;
    uint8_t *big = malloc(big_length);
    assert_non_null(big);
    for (size_t i = 0; i < big_length; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13); /* every byte value, \0 and '\\' included */
    batch = batch_of("ev", 0, (struct log_seq){9, 0});
    batch.snapshot = big;
    batch.snapshot_length = big_length;
    batch.snapshot_offset = (struct log_seq){8, 2};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    batch = batch_of("ev", 0, (struct log_seq){12, 0}); /* keeps the snapshot */
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset), 0);
    assert_true(offset.major == 12 && snapshot_offset.major == 8 && snapshot_offset.minor == 2);
    assert_int_equal(length, big_length);
    assert_memory_equal(snapshot, big, big_length);
    free(snapshot);
    free(big);
    store.ops->close(store.context);
}

/* ---- fencing and failures ---------------------------------------------------------------- */

/* A batch touching every table: an event row, a purchase, an answer, the offset. */
struct full_batch {
    struct store_event event;
    struct store_purchase purchase;
    struct store_answer answer;
    struct store_batch batch;
};

static void full_batch_init(struct full_batch *f, uint64_t epoch, uint64_t seq)
{
    f->event = event_row("ev", (struct log_seq){seq, 0});
    f->purchase = arrival(seq, "ev", "a", (struct log_seq){seq, 0}, ENGINE_STATUS_HELD);
    f->answer = (struct store_answer){.seq = {seq, 0}, .purchase_id = seq};
    snprintf(f->answer.event, sizeof(f->answer.event), "ev");
    f->batch = batch_of("ev", epoch, (struct log_seq){seq, 0});
    f->batch.event_row = &f->event;
    f->batch.purchases = &f->purchase;
    f->batch.purchase_count = 1;
    f->batch.answers = &f->answer;
    f->batch.answer_count = 1;
}

/* Nothing of the batch for seq is in the store, and the offset is still `offset`. */
static void assert_not_written(struct catraca_store *store, uint64_t seq, uint64_t offset)
{
    struct store_purchase p;
    struct store_answer a;
    struct store_event e;
    assert_int_equal(store->ops->get_purchase(store->context, seq, &p), CATRACA_E_NOTFOUND);
    assert_int_equal(store->ops->get_answer(store->context, "ev", (struct log_seq){seq, 0}, &a),
                     CATRACA_E_NOTFOUND);
    assert_int_equal(offset_of(store, "ev").major, offset);
    assert_int_equal(store->ops->get_event(store->context, "ev", &e), 0);
    assert_int_equal(e.offset.major, offset);
}

static void test_fencing(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct full_batch f;
    full_batch_init(&f, 3, 1); /* no partitions row and a non-zero epoch: nobody leased it */
    assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_FENCED);
    assert_int_equal(sql_int("SELECT count(*) FROM partitions"), 0);
    full_batch_init(&f, 0, 1); /* epoch 0 on a fresh partition: no leases in use */
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    sql("UPDATE partitions SET epoch = 5 WHERE event = 'ev'");
    for (uint64_t stale = 0; stale < 7; stale += stale == 4 ? 2 : 1) {
        full_batch_init(&f, stale, 20 + stale);
        assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_FENCED);
        assert_not_written(&store, 20 + stale, 1);
    }
    full_batch_init(&f, 5, 30);
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    struct store_purchase p;
    assert_int_equal(store.ops->get_purchase(store.context, 30, &p), 0);
    assert_int_equal(offset_of(&store, "ev").major, 30);
    assert_int_equal(sql_int("SELECT epoch FROM partitions WHERE event = 'ev'"), 5);
    store.ops->close(store.context);
}

static void test_failed_statement_rolls_back_the_batch(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct full_batch f;
    full_batch_init(&f, 0, 1);
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    /* The purchases insert fails (a quantity beyond integer) after the fence and the event
     * row went through, before the answers and the offset. */
    struct store_purchase rows[2];
    full_batch_init(&f, 0, 2);
    rows[0] = f.purchase;
    rows[1] = arrival(3, "ev", "a", (struct log_seq){3, 0}, ENGINE_STATUS_HELD);
    rows[1].quantity = UINT32_MAX;
    f.batch.purchases = rows;
    f.batch.purchase_count = 2;
    assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_IO);
    assert_not_written(&store, 2, 1);
    /* an update failing the same way, on a batch without an event row */
    struct store_purchase update = rows[0];
    update.has_arrival = false;
    update.purchase_id = 1;
    update.position = UINT32_MAX;
    full_batch_init(&f, 0, 4);
    f.batch.event_row = NULL;
    f.batch.purchases = &update;
    assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_IO);
    assert_not_written(&store, 4, 1);
    /* a partition that did not exist is not created by a batch that failed */
    full_batch_init(&f, 0, 5);
    f.batch.event = "fresh";
    f.batch.purchases = rows;
    f.batch.purchase_count = 2;
    assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_IO);
    assert_int_equal(sql_int("SELECT count(*) FROM partitions WHERE event = 'fresh'"), 0);
    /* the connection is still usable */
    full_batch_init(&f, 0, 6);
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    assert_int_equal(offset_of(&store, "ev").major, 6);
    store.ops->close(store.context);
}

static void test_commit_after_the_connection_was_lost(void **state)
{
    (void)state;
    char victim[sizeof(conninfo) + 64];
    snprintf(victim, sizeof(victim), "%s application_name=catraca_test_victim", conninfo);
    struct catraca_store store;
    assert_int_equal(store_pg_open(victim, &store), 0);
    struct full_batch f;
    full_batch_init(&f, 0, 1);
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    const char *kill = "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                       "WHERE application_name = 'catraca_test_victim'";
    assert_int_equal(sql_int(kill), 1);
    struct store_event e; /* a read reconnects at once */
    assert_int_equal(store.ops->get_event(store.context, "ev", &e), 0);
    assert_int_equal(sql_int(kill), 1);
    full_batch_init(&f, 0, 2); /* a commit says so, and the next one reconnects */
    assert_int_equal(store.ops->commit(store.context, &f.batch), CATRACA_E_UNAVAILABLE);
    assert_not_written(&store, 2, 1);
    assert_int_equal(store.ops->commit(store.context, &f.batch), 0);
    assert_int_equal(offset_of(&store, "ev").major, 2);
    store.ops->close(store.context);
}

/* ---- positions and scans ----------------------------------------------------------------- */

static uint32_t position_of(struct catraca_store *store, uint64_t id)
{
    struct store_purchase p;
    assert_int_equal(store->ops->get_purchase(store->context, id, &p), 0);
    return p.position;
}

static void test_position_of_waiting_purchases(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    struct store_purchase rows[] = {
        arrival(1, "ev", "a", (struct log_seq){1, 0}, ENGINE_STATUS_WAITING),
        arrival(2, "ev", "a", (struct log_seq){2, 0}, ENGINE_STATUS_HELD),
        arrival(3, "ev", "a", (struct log_seq){3, 0}, ENGINE_STATUS_WAITING),
        arrival(4, "ev", "a", (struct log_seq){3, 1}, ENGINE_STATUS_WAITING),
        arrival(5, "ev", "a", (struct log_seq){4, 0}, ENGINE_STATUS_WAITING),
        arrival(6, "ev", "b", (struct log_seq){2, 5}, ENGINE_STATUS_WAITING),
        arrival(7, "other", "a", (struct log_seq){0, 1}, ENGINE_STATUS_WAITING),
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        rows[i].position = 99; /* as decided back then: the line has moved since */
    rows[1].position = 7;
    rows[0].quantity = 3;
    rows[2].quantity = 1;
    struct store_batch batch = batch_of("ev", 0, (struct log_seq){4, 0});
    batch.purchases = rows;
    batch.purchase_count = sizeof(rows) / sizeof(rows[0]);
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    uint32_t want[] = {1, 7, 2, 3, 4, 1, 1};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        assert_int_equal(position_of(&store, i + 1), want[i]);
    struct store_purchase p;
    assert_int_equal(store.ops->get_purchase(store.context, 5, &p), 0);
    assert_int_equal(p.ahead, 3 + 1 + 2); /* tickets wanted by 1, 3 and 4 (2 is held) */
    struct store_purchase granted = rows[0];
    granted.has_arrival = false;
    granted.status = ENGINE_STATUS_HELD;
    granted.position = 0;
    batch = batch_of("ev", 0, (struct log_seq){5, 0});
    batch.purchases = &granted;
    batch.purchase_count = 1;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    assert_int_equal(position_of(&store, 1), 0);
    assert_int_equal(position_of(&store, 3), 1);
    assert_int_equal(position_of(&store, 5), 3);
    store.ops->close(store.context);
}

struct visits {
    size_t count, stop_at;
    int64_t last_id;
    bool is_ordered, is_right_event;
};

static int visit(void *context, const struct store_purchase *row)
{
    struct visits *v = context;
    int64_t id = (int64_t)row->purchase_id;
    v->is_ordered = v->is_ordered && (v->count == 0 || id > v->last_id);
    v->is_right_event = v->is_right_event && strcmp(row->event, "ev") == 0 &&
                        row->seq.major == (uint64_t)id * 3 && row->has_arrival;
    v->last_id = id;
    return ++v->count == v->stop_at ? 42 : 0;
}

static int64_t elapsed_us(const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (end.tv_sec - start->tv_sec) * 1000000 + (end.tv_nsec - start->tv_nsec) / 1000;
}

static void test_for_each_purchase_pages_through_every_row(void **state)
{
    (void)state;
    struct catraca_store store = open_store();
    enum { ROWS = 2600, BATCH = 1000 };
    struct store_purchase *rows = calloc(BATCH, sizeof(*rows));
    assert_non_null(rows);
    int64_t slowest_us = 0;
    for (int first = 0; first < ROWS; first += BATCH) {
        size_t count = ROWS - first < BATCH ? (size_t)(ROWS - first) : BATCH;
        for (size_t i = 0; i < count; i++) {
            /* ids on both sides of zero as bigint; INT64_MIN's bits included */
            int64_t id = (int64_t)(first + (int)i) - ROWS / 2;
            if (first + (int)i == 0)
                id = INT64_MIN / 3;
            rows[i] = arrival((uint64_t)id, "ev", "a", (struct log_seq){(uint64_t)id * 3, 0},
                              ENGINE_STATUS_REJECTED);
            rows[i].ticket_count = (uint8_t)(i % 3);
            rows[i].ticket_codes[0] = (uint64_t)id;
        }
        struct store_batch batch = batch_of("ev", 0, (struct log_seq){(uint64_t)first, 0});
        batch.purchases = rows;
        batch.purchase_count = count;
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        assert_int_equal(store.ops->commit(store.context, &batch), 0);
        int64_t us = elapsed_us(&start);
        slowest_us = us > slowest_us ? us : slowest_us;
    }
    printf("commit of %d new purchases in one batch: %" PRId64 " us at most\n", BATCH, slowest_us);
    struct store_purchase other = arrival(INT64_MAX, "other", "a", (struct log_seq){1, 0}, 1);
    struct store_purchase edge = /* INT64_MIN's bits: the smallest key, before any page */
        arrival(0x8000000000000000ULL, "ev", "a", (struct log_seq){0x8000000000000000ULL, 0},
                ENGINE_STATUS_HELD);
    struct store_purchase more[2] = {other, edge};
    struct store_batch batch = batch_of("ev", 0, (struct log_seq){ROWS, 0});
    batch.purchases = more;
    batch.purchase_count = 2;
    assert_int_equal(store.ops->commit(store.context, &batch), 0);

    struct visits v = {.is_ordered = true, .is_right_event = true};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(store.ops->for_each_purchase(store.context, "ev", visit, &v), 0);
    printf("for_each_purchase over %zu rows: %" PRId64 " us\n", v.count, elapsed_us(&start));
    assert_int_equal(v.count, ROWS + 1);
    assert_true(v.is_ordered && v.is_right_event);
    v = (struct visits){.stop_at = 1500, .is_ordered = true, .is_right_event = true};
    assert_int_equal(store.ops->for_each_purchase(store.context, "ev", visit, &v), 42);
    assert_int_equal(v.count, 1500);
    v = (struct visits){.is_ordered = true, .is_right_event = true};
    assert_int_equal(store.ops->for_each_purchase(store.context, "none", visit, &v), 0);
    assert_int_equal(v.count, 0);
    free(rows);
    store.ops->close(store.context);
}

int main(void)
{
    if (getenv("CATRACA_TEST_POSTGRES") == NULL) {
        fprintf(stderr, "test_pg: CATRACA_TEST_POSTGRES is not set (run it under "
                        "tests/servers.py): skipped\n");
        return SKIPPED;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_twice_and_versions, setup_schema,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_concurrent_migrates_apply_each_once, setup_schema,
                                        teardown_schema),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test_setup_teardown(test_round_trip_of_every_field, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_recommit_is_idempotent_and_updates_keep_arrival,
                                        setup_migrated, teardown_schema),
        cmocka_unit_test_setup_teardown(test_answers_are_replaced, setup_migrated, teardown_schema),
        cmocka_unit_test_setup_teardown(test_events_list_in_byte_order_by_pages, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_load_with_and_without_snapshot, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_fencing, setup_migrated, teardown_schema),
        cmocka_unit_test_setup_teardown(test_failed_statement_rolls_back_the_batch, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_commit_after_the_connection_was_lost, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_position_of_waiting_purchases, setup_migrated,
                                        teardown_schema),
        cmocka_unit_test_setup_teardown(test_for_each_purchase_pages_through_every_row,
                                        setup_migrated, teardown_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
