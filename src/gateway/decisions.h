/*
 * decisions.h - the last decisions of each event, newest first, for the
 * organizer's console (GET /v1/events/{event}/decisions): every purchase row
 * a committed batch created or changed (its first decision, a promotion from
 * the line, an expiry, a confirmation, a release).
 *
 * Bounded: one ring of DECISIONS_PER_EVENT entries per event, allocated when
 * the event's first decision arrives, for at most events_max events (about
 * 40 KB an event); beyond, an event's decisions are not kept. Fed by
 * api_on_commit on the committing thread (the worker's, or the gateway's
 * commit listener), which it must not hold up: one mutex, a copy per row.
 *
 * A row of a purchase created in an earlier batch carries its decision only
 * (store.h: has_arrival false): its entry has has_facts false, and the reader
 * completes customer, category, quantity and seq (decisions_complete, then
 * the store).
 */
#ifndef CATRACA_GATEWAY_DECISIONS_H
#define CATRACA_GATEWAY_DECISIONS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "worker/worker.h"

#define DECISIONS_PER_EVENT 200

struct decision {
    uint64_t purchase_id;
    bool has_facts; /* customer, category, quantity and seq are known */
    char customer[CATRACA_ID_MAX + 1];
    char category[CATRACA_ID_MAX + 1];
    uint32_t quantity;
    struct log_seq seq;
    uint8_t status; /* enum engine_status */
    uint8_t reason; /* enum engine_reason */
    int64_t at_ms;  /* the deciding command's time, from the log */
};

struct decision_ring;

struct decisions {
    pthread_mutex_t mutex;
    struct decision_ring **rings;
    uint32_t ring_count, rings_max;
};

/* 0, or CATRACA_E_NOMEM. */
int decisions_init(struct decisions *decisions, uint32_t events_max);
void decisions_destroy(struct decisions *decisions);
void decisions_record(struct decisions *decisions, const struct worker_commit *commit);
/* The event's last decisions, newest first: up to max into out; returns how many. */
size_t decisions_recent(struct decisions *decisions, const char *event, struct decision *out,
                        size_t max);
/* Completes the entries of out without facts from an entry of out about the same purchase
 * that has them. Returns how many still lack them. */
size_t decisions_complete(struct decision *out, size_t count);

#endif
