/*
 * merkle.h - an append-only Merkle tree as Certificate Transparency v2 defines
 * it (RFC 9162 section 2.1): leaf hash SHA-256(0x00 || data), node hash
 * SHA-256(0x01 || left || right), the root of n leaves MTH(D[n]) splitting at
 * the largest power of two below n, inclusion proofs (2.1.3) and consistency
 * proofs (2.1.4), and the verifiers a client runs on them.
 *
 * Pure: no I/O and no clock. It lives beside the log, not in core/, because it
 * hashes with OpenSSL's SHA-256 (core/ includes libc only).
 *
 * struct merkle_tree keeps every perfect subtree's hash (level l holds the
 * roots of the aligned runs of 2^l leaves): about 2 hashes (64 bytes) a leaf.
 * Any root or proof of a size <= the tree's size then costs O(log n) hashes,
 * with no leaf read again. The tree grows by doubling its arrays, up to
 * leaves_max leaves (a bound the owner chooses); it is used by one thread at a
 * time (the owner locks).
 */
#ifndef CATRACA_LOG_MERKLE_H
#define CATRACA_LOG_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_BYTES 32
#define MERKLE_LEVELS_MAX 64
/* A proof holds at most one hash per level, plus the first root of a consistency proof. */
#define MERKLE_PROOF_MAX (MERKLE_LEVELS_MAX + 1)

typedef uint8_t merkle_hash[MERKLE_HASH_BYTES];

/* SHA-256(0x00 || data). */
void merkle_leaf_hash(const void *data, size_t length, merkle_hash out);
/* SHA-256(0x01 || left || right). */
void merkle_node_hash(const merkle_hash left, const merkle_hash right, merkle_hash out);
/* SHA-256(data): the plain digest, for what goes into a leaf. */
void merkle_sha256(const void *data, size_t length, merkle_hash out);
/* The root of the empty tree: SHA-256 of the empty string (RFC 9162 2.1.1). */
void merkle_empty_root(merkle_hash out);

/* Frees the calling thread's digest context (made by its first digest). A thread that hashes
 * and then ends before the process calls it last; the process's long-lived threads need not. */
void merkle_thread_release(void);

struct merkle_tree {
    uint64_t size;       /* leaves appended */
    uint64_t leaves_max; /* bound: merkle_tree_append refuses beyond it */
    merkle_hash *levels[MERKLE_LEVELS_MAX];
    uint64_t capacities[MERKLE_LEVELS_MAX]; /* hashes allocated per level */
};

/* An empty tree that will hold at most leaves_max (>= 1) leaves. Allocates nothing yet. */
void merkle_tree_init(struct merkle_tree *tree, uint64_t leaves_max);
void merkle_tree_free(struct merkle_tree *tree);
/* Appends a leaf hash (already merkle_leaf_hash'ed). 0, -1 at leaves_max, -2 out of memory. */
int merkle_tree_append(struct merkle_tree *tree, const merkle_hash leaf);
/* The leaf hash at index < size. */
const uint8_t *merkle_tree_leaf(const struct merkle_tree *tree, uint64_t index);
/* MTH of the first `size` leaves, size <= tree->size. 0, or -1 when size is too large. */
int merkle_tree_root(const struct merkle_tree *tree, uint64_t size, merkle_hash out);
/*
 * The inclusion proof of leaf `index` in the tree of the first `size` leaves
 * (RFC 9162 2.1.3.1, leaf's sibling first): *count hashes into path. 0, or -1
 * unless index < size <= tree->size.
 */
int merkle_tree_inclusion(const struct merkle_tree *tree, uint64_t index, uint64_t size,
                          merkle_hash path[MERKLE_PROOF_MAX], size_t *count);
/*
 * The consistency proof between the first `first` and the first `second` leaves
 * (RFC 9162 2.1.4.1): empty when first == second. 0, or -1 unless
 * 0 < first <= second <= tree->size.
 */
int merkle_tree_consistency(const struct merkle_tree *tree, uint64_t first, uint64_t second,
                            merkle_hash path[MERKLE_PROOF_MAX], size_t *count);

/* RFC 9162 2.1.3.2: true when `leaf` at `index` and path give `root` for a tree of size. */
bool merkle_verify_inclusion(const merkle_hash leaf, uint64_t index, uint64_t size,
                             const merkle_hash *path, size_t count, const merkle_hash root);
/*
 * RFC 9162 2.1.4.2: true when the tree of `first` leaves with first_root is a
 * prefix of the tree of `second` leaves with second_root. first == second
 * needs an empty path and equal roots.
 */
bool merkle_verify_consistency(uint64_t first, uint64_t second, const merkle_hash first_root,
                               const merkle_hash second_root, const merkle_hash *path,
                               size_t count);

#endif
