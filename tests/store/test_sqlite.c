/*
 * The SQLite store adapter (and log.c's positions) on a real database file in a temporary
 * directory. The SQLite log adapter is tests/log/test_log_sqlite.c's: the conformance suite.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/codec.h"
#include "core/error.h"
#include "log/log_sqlite.h"
#include "store/store_sqlite.h"

static char directory[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(directory, sizeof(directory), "/tmp/catraca-sqlite-XXXXXX");
    assert_non_null(mkdtemp(directory));
    snprintf(path, sizeof(path), "%s/test.db", directory);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char command[160];
    snprintf(command, sizeof(command), "rm -rf %s", directory);
    return system(command) == 0 ? 0 : -1;
}

static void test_seq_text(void **state)
{
    (void)state;
    struct log_seq seq;
    char text[LOG_SEQ_TEXT_MAX];
    assert_int_equal(log_seq_parse("12-3", &seq), 0);
    assert_true(seq.major == 12 && seq.minor == 3);
    log_seq_format((struct log_seq){UINT64_MAX, UINT64_MAX}, text);
    assert_int_equal(log_seq_parse(text, &seq), 0);
    assert_true(seq.major == UINT64_MAX);
    const char *bad[] = {
        "", "1", "-1", "1-", "a-1", "1-2-3", "+1-2", " 1-2", "18446744073709551616-0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(log_seq_parse(bad[i], &seq), CATRACA_E_INVALID);
    assert_true(log_seq_compare((struct log_seq){1, 9}, (struct log_seq){2, 0}) < 0);
    assert_true(log_seq_compare((struct log_seq){2, 1}, (struct log_seq){2, 0}) > 0);
}

static void test_store_commit_load_fence(void **state)
{
    (void)state;
    struct catraca_store store;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    struct log_seq offset, snapshot_offset;
    uint8_t *snapshot = NULL;
    size_t length = 0;
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset),
        CATRACA_E_NOTFOUND);
    struct store_event event = {.state = ENGINE_STATE_OPEN, .offset = {5, 0}};
    strcpy(event.spec.id, "ev");
    event.spec.hold_ms = 1000;
    event.spec.per_customer_limit = 2;
    event.spec.state = ENGINE_STATE_OPEN;
    event.spec.category_count = 1;
    strcpy(event.spec.categories[0].id, "a");
    event.spec.categories[0].capacity = 9;
    event.counts[0] = (struct engine_category_counts){9, 7, 2, 0, 1, 1, 3, 1234567};
    struct store_purchase row = {.purchase_id = 77,
                                 .has_arrival = true,
                                 .quantity = 2,
                                 .seq = {3, 0},
                                 .status = ENGINE_STATUS_HELD,
                                 .hold_expires_at_ms = 4000,
                                 .ticket_count = 0};
    strcpy(row.event, "ev");
    strcpy(row.customer, "c1");
    strcpy(row.category, "a");
    struct store_answer answer = {.seq = {5, 0},
                                  .purchase_id = 77,
                                  .type = ENGINE_OUTCOME_CONFIRM,
                                  .result = ENGINE_RESULT_CONFLICT,
                                  .reason = 8,
                                  .status = 4};
    strcpy(answer.event, "ev");
    uint8_t blob[] = {9, 8, 7};
    struct store_batch batch = {.event = "ev",
                                .epoch = 3,
                                .offset = {5, 0},
                                .event_row = &event,
                                .purchases = &row,
                                .purchase_count = 1,
                                .answers = &answer,
                                .answer_count = 1,
                                .snapshot = blob,
                                .snapshot_length = 3,
                                .snapshot_offset = {4, 0}};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    /* an update keeps the arrival fields */
    struct store_purchase update = {.purchase_id = 77,
                                    .status = ENGINE_STATUS_CONFIRMED,
                                    .ticket_count = 2,
                                    .ticket_codes = {1, 0xffffffffffffffffULL}};
    batch = (struct store_batch){
        .event = "ev", .epoch = 3, .offset = {6, 0}, .purchases = &update, .purchase_count = 1};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    struct store_purchase got;
    assert_int_equal(store.ops->get_purchase(store.context, 77, &got), 0);
    assert_string_equal(got.customer, "c1");
    assert_int_equal(got.status, ENGINE_STATUS_CONFIRMED);
    assert_true(got.ticket_codes[1] == 0xffffffffffffffffULL && got.seq.major == 3);
    /* a stale epoch is fenced and writes nothing */
    batch.epoch = 2;
    batch.offset = (struct log_seq){99, 0};
    assert_int_equal(store.ops->commit(store.context, &batch), CATRACA_E_FENCED);
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset), 0);
    assert_true(offset.major == 6 && length == 3 && snapshot[2] == 7 && snapshot_offset.major == 4);
    free(snapshot);
    struct store_answer a;
    assert_int_equal(store.ops->get_answer(store.context, "ev", (struct log_seq){5, 0}, &a), 0);
    assert_int_equal(a.reason, 8);
    struct store_event e;
    assert_int_equal(store.ops->get_event(store.context, "ev", &e), 0);
    assert_int_equal(e.counts[0].held, 2);
    size_t count = 0;
    assert_int_equal(store.ops->list_events(store.context, "", &e, 1, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(store.ops->list_events(store.context, "ev", &e, 1, &count), 0);
    assert_int_equal(count, 0);
    store.ops->close(store.context);
}

/* A data directory from before the snapshots table: the snapshot moves out of partitions. */
static void test_store_upgrades_old_partitions(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE partitions(event TEXT PRIMARY KEY, offset_major INTEGER NOT "
                     "NULL, offset_minor INTEGER NOT NULL, epoch INTEGER NOT NULL, snapshot "
                     "BLOB, snapshot_major INTEGER, snapshot_minor INTEGER) WITHOUT ROWID;"
                     "INSERT INTO partitions VALUES ('ev', 9, 0, 2, x'010203', 7, 1),"
                     " ('other', 3, 0, 1, NULL, NULL, NULL);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct catraca_store store, second;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    assert_int_equal(store_sqlite_open(path, true, 2000, &second), 0); /* upgrades once only */
    struct log_seq offset, snapshot_offset;
    uint8_t *snapshot = NULL;
    size_t length = 0;
    assert_int_equal(
        store.ops->load(store.context, "ev", &offset, &snapshot, &length, &snapshot_offset), 0);
    assert_true(offset.major == 9 && length == 3 && snapshot[2] == 3);
    assert_true(snapshot_offset.major == 7 && snapshot_offset.minor == 1);
    free(snapshot);
    snapshot = NULL;
    assert_int_equal(
        second.ops->load(second.context, "other", &offset, &snapshot, &length, &snapshot_offset),
        0);
    assert_true(offset.major == 3 && snapshot == NULL);
    /* the epoch survived: a stale writer is still fenced */
    struct store_batch batch = {.event = "ev", .epoch = 1, .offset = {10, 0}};
    assert_int_equal(store.ops->commit(store.context, &batch), CATRACA_E_FENCED);
    store.ops->close(store.context);
    second.ops->close(second.context);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM pragma_table_info('partitions') "
                                        "WHERE name LIKE 'snapshot%'",
                                        -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* Positions move with the line; reads at one offset (counted, then kept) agree with a count. */
static void test_store_line_positions(void **state)
{
    (void)state;
    struct catraca_store store;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    struct store_purchase rows[6];
    for (int i = 0; i < 6; i++) {
        rows[i] = (struct store_purchase){.purchase_id = 100 + (uint64_t)i,
                                          .has_arrival = true,
                                          .quantity = 1 + (uint32_t)i % 3,
                                          .seq = {10 + (uint64_t)i, 0},
                                          .status = ENGINE_STATUS_WAITING};
        strcpy(rows[i].event, "ev");
        snprintf(rows[i].customer, sizeof(rows[i].customer), "c%d", i);
        strcpy(rows[i].category, i == 3 ? "b" : "a"); /* another line in between */
    }
    struct store_batch batch = {
        .event = "ev", .epoch = 0, .offset = {20, 0}, .purchases = rows, .purchase_count = 6};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    static const uint32_t expected[6] = {1, 2, 3, 1, 4, 5};
    static const uint32_t ahead[6] = {0, 1, 3, 0, 6, 8}; /* tickets wanted ahead */
    for (int round = 0; round < 3; round++) /* a count, then the kept line, then a search */
        for (int i = 0; i < 6; i++) {
            struct store_purchase got;
            assert_int_equal(store.ops->get_purchase(store.context, 100 + (uint64_t)i, &got), 0);
            assert_int_equal(got.position, expected[i]);
            assert_int_equal(got.ahead, ahead[i]);
        }
    /* The head is served and the third leaves: everyone behind moves up. */
    struct store_purchase updates[2] = {
        {.purchase_id = 100, .status = ENGINE_STATUS_HELD, .hold_expires_at_ms = 5},
        {.purchase_id = 102, .status = ENGINE_STATUS_REJECTED, .reason = 1}};
    batch = (struct store_batch){
        .event = "ev", .epoch = 0, .offset = {21, 0}, .purchases = updates, .purchase_count = 2};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    static const uint32_t moved[6] = {0, 1, 0, 1, 2, 3};
    static const uint32_t moved_ahead[6] = {0, 0, 0, 0, 2, 4};
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 6; i++) {
            struct store_purchase got;
            assert_int_equal(store.ops->get_purchase(store.context, 100 + (uint64_t)i, &got), 0);
            if (moved[i] != 0) {
                assert_int_equal(got.position, moved[i]);
                assert_int_equal(got.ahead, moved_ahead[i]);
            } else
                assert_int_not_equal(got.status, ENGINE_STATUS_WAITING);
        }
    store.ops->close(store.context);
}

/*
 * A draw's line: ranked purchases stand by rank (not seq), a later arrival behind them all, the
 * rank survives an update without one, and files from before draw_rank are upgraded.
 */
static void test_store_drawn_positions(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE purchases(id INTEGER PRIMARY KEY, event TEXT NOT NULL,"
                     " customer TEXT NOT NULL, category TEXT NOT NULL, quantity INTEGER NOT NULL,"
                     " seq_major INTEGER NOT NULL, seq_minor INTEGER NOT NULL, created_ms INTEGER"
                     " NOT NULL, status INTEGER NOT NULL, reason INTEGER NOT NULL,"
                     " hold_expires_at_ms INTEGER NOT NULL, position INTEGER NOT NULL, tickets"
                     " BLOB, updated_ms INTEGER NOT NULL);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct catraca_store store;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    struct store_purchase rows[4];
    static const uint32_t ranks[4] = {3, 1, 2, 0}; /* seq order 10, 11, 12, then 13 */
    for (int i = 0; i < 4; i++) {
        rows[i] = (struct store_purchase){.purchase_id = 200 + (uint64_t)i,
                                          .has_arrival = true,
                                          .quantity = 1 + (uint32_t)i,
                                          .seq = {10 + (uint64_t)i, 0},
                                          .status = ENGINE_STATUS_WAITING,
                                          .draw_rank = ranks[i]};
        strcpy(rows[i].event, "ev");
        strcpy(rows[i].category, "a");
        snprintf(rows[i].customer, sizeof(rows[i].customer), "c%d", i);
    }
    struct store_batch batch = {
        .event = "ev", .epoch = 0, .offset = {20, 0}, .purchases = rows, .purchase_count = 4};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    static const uint32_t expected[4] = {3, 1, 2, 4};
    /* Tickets ahead follow the draw too: quantities 1..4 in seq order, ranks 3, 1, 2. */
    static const uint32_t expected_ahead[4] = {2 + 3, 0, 2, 1 + 2 + 3};
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 4; i++) {
            struct store_purchase got;
            assert_int_equal(store.ops->get_purchase(store.context, 200 + (uint64_t)i, &got), 0);
            assert_int_equal(got.position, expected[i]);
            assert_int_equal(got.ahead, expected_ahead[i]);
            assert_int_equal(got.draw_rank, ranks[i]);
        }
    /* Rank 1 is served; an update without a rank keeps the one recorded. */
    struct store_purchase updates[1] = {
        {.purchase_id = 201, .status = ENGINE_STATUS_HELD, .hold_expires_at_ms = 5}};
    batch = (struct store_batch){
        .event = "ev", .epoch = 0, .offset = {21, 0}, .purchases = updates, .purchase_count = 1};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    static const uint32_t moved[4] = {2, 0, 1, 3};
    for (int i = 0; i < 4; i++) {
        struct store_purchase got;
        assert_int_equal(store.ops->get_purchase(store.context, 200 + (uint64_t)i, &got), 0);
        assert_int_equal(got.draw_rank, ranks[i]);
        if (moved[i] != 0)
            assert_int_equal(got.position, moved[i]);
    }
    store.ops->close(store.context);
}

/* Late payments: the reference is kept, listed as a refund; waiting rows read their line facts. */
static void test_store_refunds_and_line_facts(void **state)
{
    (void)state;
    struct catraca_store store;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    struct store_event event = {.state = ENGINE_STATE_OPEN, .offset = {5, 0}};
    strcpy(event.spec.id, "ev");
    event.spec.hold_ms = 30000;
    event.spec.per_customer_limit = 2;
    event.spec.state = ENGINE_STATE_OPEN;
    event.spec.category_count = 1;
    event.spec.line_policy = ENGINE_LINE_UNBOUNDED;
    strcpy(event.spec.categories[0].id, "a");
    event.spec.categories[0].capacity = 9;
    event.counts[0] = (struct engine_category_counts){9, 0, 4, 5, 1, 1, 7, 1234567};
    struct store_purchase rows[3];
    for (int i = 0; i < 3; i++) {
        rows[i] = (struct store_purchase){.purchase_id = 200 + (uint64_t)i,
                                          .has_arrival = true,
                                          .quantity = 1,
                                          .seq = {1 + (uint64_t)i, 0},
                                          .status = ENGINE_STATUS_EXPIRED};
        strcpy(rows[i].event, "ev");
        snprintf(rows[i].customer, sizeof(rows[i].customer), "c%d", i);
        strcpy(rows[i].category, "a");
    }
    rows[1].is_refund_due = true;
    strcpy(rows[1].payment_ref, "psp_late");
    rows[2].status = ENGINE_STATUS_WAITING;
    struct store_batch batch = {.event = "ev",
                                .offset = {5, 0},
                                .event_row = &event,
                                .purchases = rows,
                                .purchase_count = 3};
    assert_int_equal(store.ops->commit(store.context, &batch), 0);
    struct store_purchase got[4];
    size_t count = 0;
    assert_int_equal(store.ops->list_refunds(store.context, "ev", 0, got, 4, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(got[0].purchase_id, 201);
    assert_true(got[0].is_refund_due);
    assert_string_equal(got[0].payment_ref, "psp_late");
    assert_int_equal(store.ops->list_refunds(store.context, "ev", 1, got, 4, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(store.ops->get_purchase(store.context, 200, &got[0]), 0);
    assert_false(got[0].is_refund_due);
    assert_string_equal(got[0].payment_ref, "");
    assert_false(got[0].line.is_known); /* expired: no line facts */
    assert_int_equal(store.ops->get_purchase(store.context, 202, &got[0]), 0);
    assert_true(got[0].line.is_known);
    assert_true(got[0].line.held == 4 && got[0].line.sold == 5 && got[0].line.returned == 7);
    assert_int_equal(got[0].line.hold_ms, 30000);
    struct store_event e;
    assert_int_equal(store.ops->get_event(store.context, "ev", &e), 0);
    assert_int_equal(e.spec.line_policy, ENGINE_LINE_UNBOUNDED);
    assert_int_equal(e.counts[0].available_again_at_ms, 1234567);
    store.ops->close(store.context);
}

/* A data directory from before late payments: purchases gains payment_ref, rows keep theirs. */
static void test_store_adds_payment_ref(void **state)
{
    (void)state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE purchases(id INTEGER PRIMARY KEY, event TEXT NOT NULL,"
                     " customer TEXT NOT NULL, category TEXT NOT NULL, quantity INTEGER NOT NULL,"
                     " seq_major INTEGER NOT NULL, seq_minor INTEGER NOT NULL, created_ms INTEGER"
                     " NOT NULL, status INTEGER NOT NULL, reason INTEGER NOT NULL,"
                     " hold_expires_at_ms INTEGER NOT NULL, position INTEGER NOT NULL, tickets"
                     " BLOB, updated_ms INTEGER NOT NULL);"
                     "INSERT INTO purchases VALUES (5, 'ev', 'c', 'a', 1, 1, 0, 0, 4, 0, 0, 0,"
                     " NULL, 0);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct catraca_store store, second;
    assert_int_equal(store_sqlite_open(path, true, 2000, &store), 0);
    assert_int_equal(store_sqlite_open(path, true, 2000, &second), 0); /* upgrades once only */
    struct store_purchase got;
    assert_int_equal(store.ops->get_purchase(store.context, 5, &got), 0);
    assert_int_equal(got.status, ENGINE_STATUS_EXPIRED);
    assert_false(got.is_refund_due);
    store.ops->close(store.context);
    second.ops->close(second.context);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_text),
        cmocka_unit_test_setup_teardown(test_store_commit_load_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_upgrades_old_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_line_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_drawn_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_refunds_and_line_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_adds_payment_ref, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
