/*
 * signer.h - Ed25519 signing of receipts on threads of their own.
 *
 * A signature costs about as much CPU as the rest of a purchase's accept path (~34 µs
 * on the benchmark machine). Signed on the appender thread, the next group
 * commit would wait for every signature of the last one; here the appender
 * hands each receipt over and goes on, and `threads` signers sign in parallel
 * with the next commit's fsync and with each other.
 *
 * A job carries an opaque payload (the answer being built) copied inline; its
 * `done` runs on a signer thread with the signed receipt. Bounds: at most
 * queue_max jobs wait; signer_submit() answers CATRACA_E_FULL beyond (the
 * caller then signs inline: nothing is refused for it).
 */
#ifndef CATRACA_GATEWAY_SIGNER_H
#define CATRACA_GATEWAY_SIGNER_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/receipt.h"

#define SIGNER_PAYLOAD_MAX 512
#define SIGNER_THREADS_MAX 8

struct signer_config {
    const struct receipt_signing_key *key; /* borrowed: outlives the signer */
    uint32_t threads;   /* 1..SIGNER_THREADS_MAX */
    uint32_t queue_max; /* >= 1 */
    /* done(payload, receipt, error): error 0 when signed. On a signer thread. */
    void (*done)(void *payload, const struct receipt *receipt, int error);
    /* Around the done calls of one batch a thread took (both or neither). */
    void (*before_batch)(void);
    void (*after_batch)(void);
};

struct signer;

int signer_start(const struct signer_config *config, struct signer **out);
/* Queues receipt with payload (payload_length <= SIGNER_PAYLOAD_MAX, copied). 0,
 * CATRACA_E_FULL, CATRACA_E_UNAVAILABLE (stopping). Any thread. */
int signer_submit(struct signer *signer, const struct receipt *receipt, const void *payload,
                  size_t payload_length);
/* Waits, at most timeout_ms, until nothing is queued or being signed: 0 or CATRACA_E_TIMEOUT. */
int signer_drain(struct signer *signer, uint32_t timeout_ms);
/* Signs and answers what is queued, joins the threads, frees. */
void signer_stop(struct signer *signer);

#endif
