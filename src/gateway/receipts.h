/*
 * receipts.h - each event's log as a Merkle tree (log_tree.h leaves, merkle.h
 * tree), the receipt of every accepted purchase, and the signed heads and
 * proofs the /v1/events/{event}/log routes publish.
 *
 * Where the tree lives: nowhere but in the log. The tree of an event is a pure
 * function of its log's entries in log order, so this module keeps a cache of
 * it in memory and brings it up to date by reading the log (its own read
 * handle) whenever it needs a later entry. In the embedded mode that is the
 * SQLite log; in the distributed mode the event's partition of the network
 * log (a Redis stream, a Kafka topic), which every gateway reads alike: two
 * gateways appending to one event agree on the tree because both follow the
 * partition's order, which the log fixes at append (Redis at XADD). An entry's place
 * is known only after its append, so a receipt's head is the tree of the log up
 * to and including its own entry (tree_size = leaf_index + 1): entries that a
 * concurrent append put later are not in it, and nothing before it can change
 * without changing its root. See docs/DESIGN.md.
 *
 * Bounds: at most events_max trees are cached (the least recently used one is
 * dropped and rebuilt from the log when asked again), each of at most
 * leaves_max entries (about 80 bytes of memory an entry). Beyond leaves_max an
 * event gets no more receipts (receipts_issue answers CATRACA_E_TOO_LARGE) and
 * its proofs stop at that size.
 *
 * Threads: every function may be called from any thread; one mutex guards the
 * cache and the read handle. Signing happens outside it.
 */
#ifndef CATRACA_GATEWAY_RECEIPTS_H
#define CATRACA_GATEWAY_RECEIPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/receipt.h"
#include "log/log.h"

struct receipts_config {
    EVP_PKEY *key; /* an Ed25519 private key, taken over once started: freed by receipts_stop */
    uint32_t events_max;
    uint64_t leaves_max;
    /* Opens the read handle (a log handle of the caller's backend), on first need. */
    int (*open_log)(void *context, struct catraca_log *out);
    void *context;
};

struct receipts;

int receipts_start(const struct receipts_config *config, struct receipts **out);
void receipts_stop(struct receipts *receipts);
void receipts_public_key(const struct receipts *receipts, uint8_t out[RECEIPT_PUBLIC_KEY_BYTES]);

/*
 * The signed receipt of a PURCHASE just appended: item is the appended entry
 * (event, record, time, seq), customer/category/quantity the request. 0, or
 * CATRACA_E_UNAVAILABLE (the log cannot be read), CATRACA_E_CORRUPT (the entry
 * read back is not the one appended), CATRACA_E_TOO_LARGE (leaves_max).
 */
int receipts_issue(struct receipts *receipts, const struct log_append_item *item,
                   struct receipt *out);
/* receipts_issue without the signature (for gateway/signer.h), and the key that signs
 * (valid until receipts_stop). */
int receipts_place(struct receipts *receipts, const struct log_append_item *item,
                   struct receipt *out);
const struct receipt_signing_key *receipts_signing_key(const struct receipts *receipts);

/* The event's current head, signed. A log without entries has size 0. */
int receipts_head(struct receipts *receipts, const char *event, struct tree_head *out);

struct receipts_inclusion {
    uint64_t leaf_index;
    struct log_seq seq;
    uint64_t tree_size;
    merkle_hash leaf;
    merkle_hash path[MERKLE_PROOF_MAX];
    size_t count;
};
/*
 * The proof that the entry at seq (has_seq) or with leaf hash `leaf` (else) is in
 * the tree of tree_size leaves (0: the current size). 0, CATRACA_E_NOTFOUND (no
 * such entry), CATRACA_E_INVALID (size out of range, or the entry is past it).
 */
int receipts_inclusion(struct receipts *receipts, const char *event, bool has_seq,
                       struct log_seq seq, const merkle_hash leaf, uint64_t tree_size,
                       struct receipts_inclusion *out);
/* The proof that the first `first` entries are a prefix of the first `second` (0: current
 * size; *second_used says which). 0, or CATRACA_E_INVALID (sizes out of range). */
int receipts_consistency(struct receipts *receipts, const char *event, uint64_t first,
                         uint64_t second, uint64_t *second_used, merkle_hash path[MERKLE_PROOF_MAX],
                         size_t *count);

#endif
