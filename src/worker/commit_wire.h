/*
 * commit_wire.h - a committed batch's changes as one binary message: how a
 * worker tells gateways in other processes what changed (distributed mode,
 * published on the bus, log/bus.h), so they complete long-polls, SSE
 * streams and parked confirms without reading the store.
 *
 * Format v2, little-endian (wire.h): version byte, event, purchase count
 * (u32), purchase rows, answer count (u32), answers. The event row is not
 * carried: gateways read events from the store. A message is advisory
 * (the bus may drop it); parked requests fall back to the store on time-out.
 */
#ifndef CATRACA_WORKER_COMMIT_WIRE_H
#define CATRACA_WORKER_COMMIT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "worker/worker.h"

/* 2: purchase rows carry is_refund_due, payment_ref, ahead and the line facts (store.h) */
#define COMMIT_WIRE_VERSION 2
/* Largest encoding of one purchase row and one answer (ids at their longest). */
#define COMMIT_WIRE_PURCHASE_MAX                                                                   \
    (8 + 1 + 3 * (1 + CATRACA_ID_MAX) + 4 + 16 + 8 + 1 + 1 + 8 + 4 + 1 + 1 + CATRACA_ID_MAX + 29 + \
     1 + 8 * CATRACA_QUANTITY_MAX + 8)
#define COMMIT_WIRE_ANSWER_MAX (1 + CATRACA_ID_MAX + 16 + 8 + 4)

/* Bytes enough for commit's encoding. */
size_t commit_wire_size_max(const struct worker_commit *commit);
/* 0, or CATRACA_E_NOSPACE / CATRACA_E_INVALID (a string too long). */
int commit_wire_encode(const struct worker_commit *commit, uint8_t *buffer, size_t capacity,
                       size_t *length);
/*
 * Decodes a message and calls visit with it (pointers valid during the call).
 * 0, CATRACA_E_VERSION, CATRACA_E_TRUNCATED, CATRACA_E_CORRUPT or
 * CATRACA_E_NOMEM; visit is not called on error. Never reads past length.
 */
int commit_wire_decode(const uint8_t *message, size_t length,
                       void (*visit)(void *context, const struct worker_commit *commit),
                       void *context);

#endif
