/*
 * lease_pg.c - partition leases in PostgreSQL. Contract in lease.h.
 *
 * Every statement is a single auto-committed one, so a round never holds a
 * lock across round trips; acquisition is one UPDATE with SKIP LOCKED, so two
 * workers racing for the same free partition never both get it (the loser's
 * UPDATE matches nothing).
 */
#include "store/lease.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/logline.h"

struct held_lease {
    char event[CATRACA_ID_MAX + 1];
    uint64_t epoch;
    int64_t deadline_ms; /* monotonic: held until then unless renewed */
};

struct lease {
    struct lease_config config;
    char worker_id[CATRACA_ID_MAX * 2 + 1];
    char conninfo[1024];
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool is_stopping;
    /* under mutex */
    struct held_lease *held;
    uint32_t held_count;
    char (*offered)[CATRACA_ID_MAX + 1];
    size_t offered_count;
    bool is_offer_new;
    struct lease_stats stats;
    /* keeper thread only */
    PGconn *db;
};

static void log_line(enum logline_level level, const char *event, const char *message,
                     uint64_t epoch)
{
    char epoch_text[24];
    snprintf(epoch_text, sizeof(epoch_text), "%llu", (unsigned long long)epoch);
    logline(level, "lease", message, "event", event ? event : "-", "epoch", epoch_text, NULL);
}

/* ---- the held table (under mutex) -------------------------------------------------------- */

static struct held_lease *held_find(struct lease *l, const char *event)
{
    for (uint32_t i = 0; i < l->held_count; i++)
        if (strcmp(l->held[i].event, event) == 0)
            return &l->held[i];
    return NULL;
}

static void held_remove(struct lease *l, struct held_lease *h)
{
    *h = l->held[--l->held_count];
    l->stats.lost++;
}

static void held_set(struct lease *l, const char *event, uint64_t epoch, int64_t deadline_ms)
{
    struct held_lease *h = held_find(l, event);
    if (h == NULL) {
        if (l->held_count == l->config.partitions_max)
            return;
        h = &l->held[l->held_count++];
        snprintf(h->event, sizeof(h->event), "%s", event);
        l->stats.acquired++;
        log_line(LOGLINE_INFO, event, "lease acquired", epoch);
    }
    h->epoch = epoch;
    h->deadline_ms = deadline_ms;
}

/* ---- statements -------------------------------------------------------------------------- */

static PGresult *run(struct lease *l, const char *sql, int count, const char *const *values)
{
    PGresult *result = PQexecParams(l->db, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        char message[512];
        snprintf(message, sizeof(message), "%s", PQerrorMessage(l->db));
        message[strcspn(message, "\n")] = '\0'; /* libpq's first line says it */
        logline(LOGLINE_WARN, "lease", "statement failed", "error", message, NULL);
        PQclear(result);
        return NULL;
    }
    return result;
}

static bool run_ok(struct lease *l, const char *sql, int count, const char *const *values)
{
    PGresult *result = run(l, sql, count, values);
    PQclear(result);
    return result != NULL;
}

/* A Postgres text[] literal of ids (ids are [A-Za-z0-9._-]: nothing to quote). */
static char *ids_array(char (*ids)[CATRACA_ID_MAX + 1], size_t count)
{
    char *text = malloc(count * (CATRACA_ID_MAX + 1) + 3);
    if (text == NULL)
        return NULL;
    size_t n = 0;
    text[n++] = '{';
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            text[n++] = ',';
        size_t length = strlen(ids[i]);
        memcpy(text + n, ids[i], length);
        n += length;
    }
    text[n++] = '}';
    text[n] = '\0';
    return text;
}

static bool register_partitions(struct lease *l)
{
    pthread_mutex_lock(&l->mutex);
    char *array = l->is_offer_new ? ids_array(l->offered, l->offered_count) : NULL;
    l->is_offer_new = false;
    pthread_mutex_unlock(&l->mutex);
    if (array == NULL)
        return true;
    const char *values[] = {array};
    bool is_ok = run_ok(l,
                        "INSERT INTO partitions (event) SELECT unnest($1::text[]) "
                        "ON CONFLICT (event) DO NOTHING",
                        1, values);
    if (!is_ok) {
        pthread_mutex_lock(&l->mutex);
        l->is_offer_new = true; /* try again next round */
        pthread_mutex_unlock(&l->mutex);
    }
    free(array);
    return is_ok;
}

/* Renews every lease still ours; those not returned were lost. */
static bool renew(struct lease *l, const char *lease_ms, int64_t sent_ms)
{
    const char *values[] = {l->worker_id, lease_ms};
    PGresult *result = run(l,
                           "UPDATE partitions SET lease_until = now() + $2::bigint * "
                           "interval '1 millisecond' WHERE owner = $1 RETURNING event, epoch",
                           2, values);
    if (result == NULL)
        return false;
    pthread_mutex_lock(&l->mutex);
    for (uint32_t i = 0; i < l->held_count;) {
        bool is_renewed = false;
        for (int row = 0; row < PQntuples(result) && !is_renewed; row++)
            is_renewed = strcmp(PQgetvalue(result, row, 0), l->held[i].event) == 0 &&
                         strtoull(PQgetvalue(result, row, 1), NULL, 10) == l->held[i].epoch;
        if (is_renewed) {
            l->held[i++].deadline_ms = sent_ms + l->config.lease_ms;
        } else {
            log_line(LOGLINE_WARN, l->held[i].event, "lease lost", l->held[i].epoch);
            held_remove(l, &l->held[i]);
        }
    }
    pthread_mutex_unlock(&l->mutex);
    PQclear(result);
    return true;
}

/* ceil(partitions / live workers); 0 when it cannot be read. */
static uint32_t fair_share(struct lease *l, const char *lease_ms)
{
    const char *values[] = {lease_ms};
    PGresult *result = run(l,
                           "SELECT (SELECT count(*) FROM partitions), (SELECT count(*) FROM "
                           "workers WHERE seen_at > now() - $1::bigint * interval '1 millisecond')",
                           1, values);
    if (result == NULL)
        return 0;
    uint64_t partitions = strtoull(PQgetvalue(result, 0, 0), NULL, 10);
    uint64_t live = strtoull(PQgetvalue(result, 0, 1), NULL, 10);
    PQclear(result);
    if (live == 0)
        live = 1;
    pthread_mutex_lock(&l->mutex);
    l->stats.live_workers = (uint32_t)live;
    pthread_mutex_unlock(&l->mutex);
    return (uint32_t)((partitions + live - 1) / live);
}

/* Takes one free or expired partition; false when there is none (or on error). */
static bool acquire_one(struct lease *l, const char *lease_ms, int64_t sent_ms)
{
    const char *values[] = {l->worker_id, lease_ms};
    PGresult *result = run(
        l,
        "UPDATE partitions SET owner = $1, epoch = epoch + 1, lease_until = now() + $2::bigint * "
        "interval '1 millisecond' WHERE event = (SELECT event FROM partitions WHERE owner IS NULL "
        "OR lease_until IS NULL OR lease_until < now() ORDER BY event LIMIT 1 FOR UPDATE SKIP "
        "LOCKED) AND (owner IS NULL OR lease_until IS NULL OR lease_until < now()) "
        "RETURNING event, epoch",
        2, values);
    if (result == NULL)
        return false;
    bool is_acquired = PQntuples(result) == 1;
    if (is_acquired) {
        pthread_mutex_lock(&l->mutex);
        held_set(l, PQgetvalue(result, 0, 0), strtoull(PQgetvalue(result, 0, 1), NULL, 10),
                 sent_ms + l->config.lease_ms);
        pthread_mutex_unlock(&l->mutex);
    }
    PQclear(result);
    return is_acquired;
}

/* Gives back one lease (the last held) so a newcomer can take it. */
static void give_back_one(struct lease *l)
{
    char event[CATRACA_ID_MAX + 1], epoch[24];
    pthread_mutex_lock(&l->mutex);
    if (l->held_count == 0) {
        pthread_mutex_unlock(&l->mutex);
        return;
    }
    struct held_lease *h = &l->held[l->held_count - 1];
    snprintf(event, sizeof(event), "%s", h->event);
    snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)h->epoch);
    log_line(LOGLINE_INFO, event, "lease given back (more than a fair share)", h->epoch);
    held_remove(l, h); /* first locally: the worker stops deciding before anyone can take it */
    pthread_mutex_unlock(&l->mutex);
    const char *values[] = {event, l->worker_id, epoch};
    run_ok(l,
           "UPDATE partitions SET owner = NULL, lease_until = NULL "
           "WHERE event = $1 AND owner = $2 AND epoch = $3::bigint",
           3, values);
}

/* One round of heartbeat, renewal and balancing. False when PostgreSQL failed. */
static bool keeper_round(struct lease *l)
{
    if (l->db == NULL || PQstatus(l->db) != CONNECTION_OK) {
        PQfinish(l->db);
        l->db = PQconnectdb(l->conninfo);
        if (PQstatus(l->db) != CONNECTION_OK)
            return false;
    }
    char lease_ms[16];
    snprintf(lease_ms, sizeof(lease_ms), "%u", l->config.lease_ms);
    int64_t sent_ms = clock_monotonic_ms();
    const char *heartbeat[] = {l->worker_id};
    if (!run_ok(l,
                "INSERT INTO workers (id, seen_at) VALUES ($1, now()) "
                "ON CONFLICT (id) DO UPDATE SET seen_at = now()",
                1, heartbeat) ||
        !register_partitions(l) || !renew(l, lease_ms, sent_ms))
        return false;
    uint32_t share = fair_share(l, lease_ms);
    pthread_mutex_lock(&l->mutex);
    uint32_t held = l->held_count;
    pthread_mutex_unlock(&l->mutex);
    while (held < share && held < l->config.partitions_max && acquire_one(l, lease_ms, sent_ms))
        held++;
    if (share > 0 && held > share)
        give_back_one(l); /* one a round: shares settle without a stampede */
    return true;
}

static void *keeper_main(void *argument)
{
    struct lease *l = argument;
    pthread_mutex_lock(&l->mutex);
    while (!l->is_stopping) {
        pthread_mutex_unlock(&l->mutex);
        bool is_ok = keeper_round(l);
        pthread_mutex_lock(&l->mutex);
        l->stats.is_connected = is_ok;
        l->stats.round_errors += !is_ok;
        l->stats.held = l->held_count;
        if (l->is_stopping)
            break;
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        int64_t ns = deadline.tv_nsec + (int64_t)(l->config.lease_ms / 3) * 1000000;
        deadline.tv_sec += ns / 1000000000;
        deadline.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&l->wake, &l->mutex, &deadline);
    }
    pthread_mutex_unlock(&l->mutex);
    return NULL;
}

/* ---- interface --------------------------------------------------------------------------- */

int lease_start(const struct lease_config *config, struct lease **out)
{
    if (config->lease_ms < 300 || config->partitions_max < 1 || config->worker_id == NULL ||
        config->worker_id[0] == '\0' || strlen(config->worker_id) > CATRACA_ID_MAX * 2 ||
        config->conninfo == NULL || strlen(config->conninfo) >= 1024)
        return CATRACA_E_INVALID;
    struct lease *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CATRACA_E_NOMEM;
    l->config = *config;
    snprintf(l->worker_id, sizeof(l->worker_id), "%s", config->worker_id);
    snprintf(l->conninfo, sizeof(l->conninfo), "%s", config->conninfo);
    l->held = calloc(config->partitions_max, sizeof(*l->held));
    l->offered = calloc(config->partitions_max, sizeof(*l->offered));
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->wake, NULL);
    if (l->held == NULL || l->offered == NULL ||
        pthread_create(&l->thread, NULL, keeper_main, l) != 0) {
        free(l->held);
        free(l->offered);
        free(l);
        return CATRACA_E_NOMEM;
    }
    *out = l;
    return 0;
}

void lease_offer(struct lease *l, const char (*events)[CATRACA_ID_MAX + 1], size_t count)
{
    if (count > l->config.partitions_max)
        count = l->config.partitions_max;
    pthread_mutex_lock(&l->mutex);
    bool is_same = count == l->offered_count;
    for (size_t i = 0; is_same && i < count; i++)
        is_same = strcmp(l->offered[i], events[i]) == 0;
    if (!is_same) {
        memcpy(l->offered, events, count * sizeof(*events));
        l->offered_count = count;
        l->is_offer_new = true;
        pthread_cond_signal(&l->wake); /* a new event: claim it now, not in a third of a lease */
    }
    pthread_mutex_unlock(&l->mutex);
}

bool lease_holds(struct lease *l, const char *event, uint64_t *epoch)
{
    int64_t now_ms = clock_monotonic_ms();
    pthread_mutex_lock(&l->mutex);
    struct held_lease *h = held_find(l, event);
    bool is_held = h != NULL && now_ms < h->deadline_ms;
    *epoch = is_held ? h->epoch : 0;
    pthread_mutex_unlock(&l->mutex);
    return is_held;
}

void lease_lost(struct lease *l, const char *event, uint64_t epoch)
{
    pthread_mutex_lock(&l->mutex);
    struct held_lease *h = held_find(l, event);
    if (h != NULL && h->epoch == epoch) {
        log_line(LOGLINE_WARN, event, "lease lost: a commit was fenced", epoch);
        held_remove(l, h);
    }
    pthread_mutex_unlock(&l->mutex);
}

void lease_stop(struct lease *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mutex);
    l->is_stopping = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mutex);
    pthread_join(l->thread, NULL);
    if (l->db != NULL && PQstatus(l->db) == CONNECTION_OK) {
        const char *values[] = {l->worker_id};
        run_ok(l, "UPDATE partitions SET owner = NULL, lease_until = NULL WHERE owner = $1", 1,
               values);
        run_ok(l, "DELETE FROM workers WHERE id = $1", 1, values);
    }
    PQfinish(l->db);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->mutex);
    free(l->held);
    free(l->offered);
    free(l);
}

void lease_stats(struct lease *l, struct lease_stats *out)
{
    pthread_mutex_lock(&l->mutex);
    *out = l->stats;
    out->held = l->held_count;
    pthread_mutex_unlock(&l->mutex);
}
