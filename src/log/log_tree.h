/*
 * log_tree.h - what a leaf of an event's Merkle tree (merkle.h) says about a
 * log entry, shared by the gateway that issues receipts, `catraca verify` and
 * `catraca audit`, so that all three hash the same bytes.
 *
 * The leaf of the entry at position i of an event's log (its i-th entry, 0-based,
 * in log order) is merkle_leaf_hash() of LOG_TREE_LEAF_BYTES fixed bytes:
 *
 *   "catraca-log-entry/1"          19 bytes, the domain
 *   event length (1 byte), event   padded with zeros to CATRACA_ID_MAX bytes
 *   seq major, seq minor           u64 big-endian each: the entry's place in the log
 *   time_ms                        i64 big-endian: the log's time of the entry
 *   type                           1 byte: the command type (0 when it does not decode)
 *   purchase id                    u64 big-endian (PURCHASE; else 0)
 *   request_sha256                 32 bytes (PURCHASE: log_tree_request_hash; else zeros)
 *   entry_sha256                   32 bytes: SHA-256 of the stored record
 *
 * No customer identity appears in clear: the customer is inside the two hashes.
 * Anyone holding a receipt recomputes its leaf from the receipt's fields;
 * anyone holding the log recomputes every leaf from the entries.
 */
#ifndef CATRACA_LOG_LOG_TREE_H
#define CATRACA_LOG_LOG_TREE_H

#include <stdint.h>

#include "core/limits.h"
#include "log/log.h"
#include "log/merkle.h"

#define LOG_TREE_LEAF_BYTES (19 + 1 + CATRACA_ID_MAX + 8 + 8 + 8 + 1 + 8 + 32 + 32)

struct log_tree_leaf {
    char event[CATRACA_ID_MAX + 1];
    struct log_seq seq;
    int64_t time_ms;
    uint8_t type;
    uint64_t purchase_id;
    merkle_hash request_sha256;
    merkle_hash entry_sha256;
};

/*
 * The request hash a receipt carries: SHA-256 of the text
 * "catraca-request/1\nevent=E\ncustomer=C\ncategory=K\nquantity=Q\n" (the
 * request's key fields: the event in the path, the customer of the token, and
 * the body's category and quantity). A buyer recomputes it from what they sent.
 */
void log_tree_request_hash(const char *event, const char *customer, const char *category,
                           uint32_t quantity, merkle_hash out);
/* The leaf fields of an entry read from event's log (a record that does not decode still has
 * a leaf: type 0, which any check against a receipt or an earlier tree then refuses). */
void log_tree_leaf_of_entry(const char *event, struct log_seq seq, int64_t time_ms,
                            const uint8_t *record, size_t record_length, struct log_tree_leaf *out);
/* merkle_leaf_hash() of the fields' fixed bytes. */
void log_tree_leaf_hash(const struct log_tree_leaf *leaf, merkle_hash out);

/* Lower-case hex of a hash (65 bytes with the NUL), and back: 0, or -1 when not 64 hex digits. */
void log_tree_hex(const merkle_hash hash, char out[2 * MERKLE_HASH_BYTES + 1]);
int log_tree_hex_parse(const char *text, merkle_hash out);

#endif
