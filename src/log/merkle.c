/* merkle.c - RFC 9162 Merkle tree; contract in merkle.h. No recursion: every walk is a loop. */
#include "log/merkle.h"

#include <assert.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* Fetched once: EVP_sha256() would look the implementation up on every digest. */
static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* One digest context a thread, made on first use and reset for every digest: a tree append
 * hashes about twice, a root or a proof dozens of times, and a context's allocation cost as
 * much as hashing 64 bytes. Threads that live as long as the process keep theirs; one that
 * ends first frees it with merkle_thread_release. */
static _Thread_local EVP_MD_CTX *thread_context;
/* The thread's context has had SHA-256 set once: later digests re-initialise it with
 * EVP_DigestInit_ex2(context, NULL, NULL), the same digest, without the type and engine
 * look-ups of EVP_DigestInit_ex (a third of a digest's instructions on short inputs). */
static _Thread_local bool is_thread_context_set;

/* SHA-256 of the prefix byte (when prefix >= 0) then the parts. */
static void digest(int prefix, const void *a, size_t a_length, const void *b, size_t b_length,
                   merkle_hash out)
{
    pthread_once(&sha256_once, sha256_fetch);
    if (thread_context == NULL)
        thread_context = EVP_MD_CTX_new();
    EVP_MD_CTX *context = thread_context;
    unsigned int length = 0;
    uint8_t byte = (uint8_t)prefix;
    int is_ok = context != NULL && sha256_md != NULL &&
                EVP_DigestInit_ex2(context, is_thread_context_set ? NULL : sha256_md, NULL) == 1 &&
                (prefix < 0 || EVP_DigestUpdate(context, &byte, 1) == 1) &&
                EVP_DigestUpdate(context, a, a_length) == 1 &&
                (b_length == 0 || EVP_DigestUpdate(context, b, b_length) == 1) &&
                EVP_DigestFinal_ex(context, out, &length) == 1;
    /* SHA-256 fails only without memory or a provider: nothing can be promised then. */
    if (!is_ok || length != MERKLE_HASH_BYTES)
        abort();
    is_thread_context_set = true;
}

void merkle_thread_release(void)
{
    EVP_MD_CTX_free(thread_context);
    thread_context = NULL;
    is_thread_context_set = false;
}

void merkle_leaf_hash(const void *data, size_t length, merkle_hash out)
{
    digest(0x00, data, length, NULL, 0, out);
}

void merkle_node_hash(const merkle_hash left, const merkle_hash right, merkle_hash out)
{
    digest(0x01, left, MERKLE_HASH_BYTES, right, MERKLE_HASH_BYTES, out);
}

void merkle_sha256(const void *data, size_t length, merkle_hash out)
{
    digest(-1, data, length, NULL, 0, out);
}

void merkle_empty_root(merkle_hash out)
{
    digest(-1, "", 0, NULL, 0, out);
}

/* ---- the tree ---------------------------------------------------------------------------- */

void merkle_tree_init(struct merkle_tree *tree, uint64_t leaves_max)
{
    assert(leaves_max >= 1);
    memset(tree, 0, sizeof(*tree));
    tree->leaves_max = leaves_max;
}

void merkle_tree_free(struct merkle_tree *tree)
{
    for (int l = 0; l < MERKLE_LEVELS_MAX; l++)
        free(tree->levels[l]);
    memset(tree, 0, sizeof(*tree));
}

/* Room for `count` hashes at level l. */
static int reserve(struct merkle_tree *tree, int level, uint64_t count)
{
    if (count <= tree->capacities[level])
        return 0;
    uint64_t capacity = tree->capacities[level] ? tree->capacities[level] * 2 : 64;
    while (capacity < count)
        capacity *= 2;
    merkle_hash *grown = realloc(tree->levels[level], capacity * sizeof(merkle_hash));
    if (grown == NULL)
        return -2;
    tree->levels[level] = grown;
    tree->capacities[level] = capacity;
    return 0;
}

int merkle_tree_append(struct merkle_tree *tree, const merkle_hash leaf)
{
    if (tree->size >= tree->leaves_max)
        return -1;
    uint64_t size = tree->size + 1;
    /* Level l gains a hash whenever size becomes a multiple of 2^l: reserve them all first,
     * so that a failure leaves the tree as it was. */
    for (int l = 0; l < MERKLE_LEVELS_MAX && (size & ((UINT64_C(1) << l) - 1)) == 0; l++)
        if (reserve(tree, l, size >> l) != 0)
            return -2;
    memcpy(tree->levels[0][tree->size], leaf, MERKLE_HASH_BYTES);
    for (int l = 1; l < MERKLE_LEVELS_MAX && (size & ((UINT64_C(1) << l) - 1)) == 0; l++) {
        uint64_t index = (size >> l) - 1;
        merkle_node_hash(tree->levels[l - 1][2 * index], tree->levels[l - 1][2 * index + 1],
                         tree->levels[l][index]);
    }
    tree->size = size;
    return 0;
}

const uint8_t *merkle_tree_leaf(const struct merkle_tree *tree, uint64_t index)
{
    assert(index < tree->size);
    return tree->levels[0][index];
}

/* The largest power of two strictly below n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
    assert(n >= 2);
    uint64_t k = UINT64_C(1) << (63 - __builtin_clzll(n - 1));
    assert(k < n && 2 * k >= n);
    return k;
}

/*
 * MTH(D[start:end]) for the ranges the RFC's recursions produce: start is a
 * multiple of the largest power of two below end - start, so the range splits
 * into aligned perfect subtrees of decreasing size, folded from the right.
 */
static void range_root(const struct merkle_tree *tree, uint64_t start, uint64_t end,
                       merkle_hash out)
{
    assert(start < end && end <= tree->size);
    const uint8_t *pieces[MERKLE_LEVELS_MAX];
    int count = 0;
    uint64_t position = start;
    while (position < end) {
        int level = 0;
        while (level + 1 < MERKLE_LEVELS_MAX && (position & ((UINT64_C(2) << level) - 1)) == 0 &&
               position + (UINT64_C(2) << level) <= end)
            level++;
        pieces[count++] = tree->levels[level][position >> level];
        position += UINT64_C(1) << level;
    }
    merkle_hash folded;
    memcpy(folded, pieces[count - 1], MERKLE_HASH_BYTES);
    for (int i = count - 2; i >= 0; i--)
        merkle_node_hash(pieces[i], folded, folded);
    memcpy(out, folded, MERKLE_HASH_BYTES);
}

int merkle_tree_root(const struct merkle_tree *tree, uint64_t size, merkle_hash out)
{
    if (size > tree->size)
        return -1;
    if (size == 0)
        merkle_empty_root(out);
    else
        range_root(tree, 0, size, out);
    return 0;
}

/* Reverses path[0..count) in place: the walks collect top-down, proofs list bottom-up. */
static void reverse(merkle_hash *path, size_t count)
{
    for (size_t i = 0; i < count / 2; i++) {
        merkle_hash swap;
        memcpy(swap, path[i], MERKLE_HASH_BYTES);
        memcpy(path[i], path[count - 1 - i], MERKLE_HASH_BYTES);
        memcpy(path[count - 1 - i], swap, MERKLE_HASH_BYTES);
    }
}

int merkle_tree_inclusion(const struct merkle_tree *tree, uint64_t index, uint64_t size,
                          merkle_hash path[MERKLE_PROOF_MAX], size_t *count)
{
    if (index >= size || size > tree->size)
        return -1;
    /* PATH(m, D[lo:hi]): the sibling subtree at each split, top-down. */
    uint64_t lo = 0, hi = size;
    size_t n = 0;
    while (hi - lo > 1) {
        uint64_t k = split_point(hi - lo);
        assert(n < MERKLE_PROOF_MAX);
        if (index - lo < k) {
            range_root(tree, lo + k, hi, path[n++]);
            hi = lo + k;
        } else {
            range_root(tree, lo, lo + k, path[n++]);
            lo += k;
        }
    }
    reverse(path, n);
    *count = n;
    return 0;
}

int merkle_tree_consistency(const struct merkle_tree *tree, uint64_t first, uint64_t second,
                            merkle_hash path[MERKLE_PROOF_MAX], size_t *count)
{
    if (first == 0 || first > second || second > tree->size)
        return -1;
    /* SUBPROOF(m, D[lo:hi], b), top-down; PROOF(m, D[n]) starts with b = true. */
    uint64_t lo = 0, hi = second;
    bool is_whole_first = true;
    size_t n = 0;
    for (;;) {
        assert(n < MERKLE_PROOF_MAX);
        if (first - lo == hi - lo) {
            if (!is_whole_first)
                range_root(tree, lo, hi, path[n++]);
            break;
        }
        uint64_t k = split_point(hi - lo);
        if (first - lo <= k) {
            range_root(tree, lo + k, hi, path[n++]);
            hi = lo + k;
        } else {
            range_root(tree, lo, lo + k, path[n++]);
            lo += k;
            is_whole_first = false;
        }
    }
    reverse(path, n);
    *count = n;
    return 0;
}

/* ---- verifiers (RFC 9162 2.1.3.2 and 2.1.4.2, step by step) ------------------------------ */

bool merkle_verify_inclusion(const merkle_hash leaf, uint64_t index, uint64_t size,
                             const merkle_hash *path, size_t count, const merkle_hash root)
{
    if (index >= size)
        return false;
    uint64_t fn = index, sn = size - 1;
    merkle_hash r;
    memcpy(r, leaf, MERKLE_HASH_BYTES);
    for (size_t i = 0; i < count; i++) {
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(path[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, MERKLE_HASH_BYTES) == 0;
}

bool merkle_verify_consistency(uint64_t first, uint64_t second, const merkle_hash first_root,
                               const merkle_hash second_root, const merkle_hash *path, size_t count)
{
    if (first == 0 || first > second)
        return false;
    if (first == second)
        return count == 0 && memcmp(first_root, second_root, MERKLE_HASH_BYTES) == 0;
    if (count == 0)
        return false;
    /* Step 2: when first is a power of two, the first root starts the path. */
    bool is_power_of_two = (first & (first - 1)) == 0;
    size_t start = 0;
    merkle_hash fr, sr;
    if (is_power_of_two) {
        memcpy(fr, first_root, MERKLE_HASH_BYTES);
    } else {
        memcpy(fr, path[0], MERKLE_HASH_BYTES);
        start = 1;
    }
    memcpy(sr, fr, MERKLE_HASH_BYTES);
    uint64_t fn = first - 1, sn = second - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    for (size_t i = start; i < count; i++) {
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(path[i], fr, fr);
            merkle_node_hash(path[i], sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, first_root, MERKLE_HASH_BYTES) == 0 &&
           memcmp(sr, second_root, MERKLE_HASH_BYTES) == 0;
}
