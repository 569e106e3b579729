/*
 * The Merkle tree against RFC 6962's published test vectors and a plainly
 * recursive reference (MTH, PATH and PROOF as the RFC writes them), for every
 * size up to SIZE_MAX_CHECKED, every index and every pair of sizes; and every
 * proof fails once one of its bytes, its index or its sizes change.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log/merkle.h"

#define SIZE_MAX_CHECKED 70

static merkle_hash leaves[SIZE_MAX_CHECKED];

static void hex_to(const char *hex, uint8_t *out)
{
    for (size_t i = 0; i < strlen(hex) / 2; i++) {
        unsigned value = 0;
        sscanf(hex + 2 * i, "%2x", &value);
        out[i] = (uint8_t)value;
    }
}

/* The reference: MTH(D[lo:hi]) exactly as RFC 9162 2.1.1 defines it (recursive on purpose). */
static void reference_root(uint64_t lo, uint64_t hi, merkle_hash out)
{
    if (hi - lo == 1) {
        memcpy(out, leaves[lo], MERKLE_HASH_BYTES);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    merkle_hash left, right;
    reference_root(lo, lo + k, left);
    reference_root(lo + k, hi, right);
    merkle_node_hash(left, right, out);
}

static void reference_path(uint64_t m, uint64_t lo, uint64_t hi, merkle_hash *path, size_t *n)
{
    if (hi - lo <= 1)
        return;
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    if (m < k) {
        reference_path(m, lo, lo + k, path, n);
        reference_root(lo + k, hi, path[(*n)++]);
    } else {
        reference_path(m - k, lo + k, hi, path, n);
        reference_root(lo, lo + k, path[(*n)++]);
    }
}

static void reference_subproof(uint64_t m, uint64_t lo, uint64_t hi, bool b, merkle_hash *path,
                               size_t *n)
{
    if (m == hi - lo) {
        if (!b)
            reference_root(lo, hi, path[(*n)++]);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    if (m <= k) {
        reference_subproof(m, lo, lo + k, b, path, n);
        reference_root(lo + k, hi, path[(*n)++]);
    } else {
        reference_subproof(m - k, lo + k, hi, false, path, n);
        reference_root(lo, lo + k, path[(*n)++]);
    }
}

static void build(struct merkle_tree *tree, uint64_t size)
{
    merkle_tree_init(tree, SIZE_MAX_CHECKED);
    for (uint64_t i = 0; i < size; i++)
        assert_int_equal(merkle_tree_append(tree, leaves[i]), 0);
}

static void test_rfc6962_vectors(void **state)
{
    (void)state;
    static const char *const inputs[] = {"",
                                         "00",
                                         "10",
                                         "2021",
                                         "3031",
                                         "40414243",
                                         "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"};
    static const char *const roots[] = {
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
    struct merkle_tree tree;
    merkle_tree_init(&tree, 8);
    merkle_hash root, expected;
    assert_int_equal(merkle_tree_root(&tree, 0, root), 0);
    hex_to("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", expected);
    assert_memory_equal(root, expected, MERKLE_HASH_BYTES);
    for (int i = 0; i < 8; i++) {
        uint8_t data[16];
        hex_to(inputs[i], data);
        merkle_hash leaf;
        merkle_leaf_hash(data, strlen(inputs[i]) / 2, leaf);
        assert_int_equal(merkle_tree_append(&tree, leaf), 0);
        assert_int_equal(merkle_tree_root(&tree, (uint64_t)i + 1, root), 0);
        hex_to(roots[i], expected);
        assert_memory_equal(root, expected, MERKLE_HASH_BYTES);
    }
    merkle_hash leaf = {0};
    assert_int_equal(merkle_tree_append(&tree, leaf), -1); /* leaves_max */
    assert_int_equal(merkle_tree_root(&tree, 9, root), -1);
    merkle_tree_free(&tree);
}

static void test_inclusion_matches_reference(void **state)
{
    (void)state;
    struct merkle_tree tree;
    build(&tree, SIZE_MAX_CHECKED);
    for (uint64_t size = 1; size <= SIZE_MAX_CHECKED; size++) {
        merkle_hash root, expected_root;
        assert_int_equal(merkle_tree_root(&tree, size, root), 0);
        reference_root(0, size, expected_root);
        assert_memory_equal(root, expected_root, MERKLE_HASH_BYTES);
        for (uint64_t index = 0; index < size; index++) {
            merkle_hash path[MERKLE_PROOF_MAX], expected[MERKLE_PROOF_MAX];
            size_t count = 0, expected_count = 0;
            assert_int_equal(merkle_tree_inclusion(&tree, index, size, path, &count), 0);
            reference_path(index, 0, size, expected, &expected_count);
            assert_int_equal(count, expected_count);
            if (count > 0)
                assert_memory_equal(path, expected, count * MERKLE_HASH_BYTES);
            assert_true(merkle_verify_inclusion(leaves[index], index, size, path, count, root));
            /* Another place, another leaf, a changed byte: each refused. */
            if (size > 1)
                assert_false(merkle_verify_inclusion(leaves[index], (index + 1) % size, size, path,
                                                     count, root));
            assert_false(merkle_verify_inclusion(leaves[(index + 1) % SIZE_MAX_CHECKED], index,
                                                 size, path, count, root));
            if (count > 0) {
                path[count - 1][5] ^= 1;
                assert_false(
                    merkle_verify_inclusion(leaves[index], index, size, path, count, root));
            }
        }
    }
    merkle_hash path[MERKLE_PROOF_MAX];
    size_t count = 0;
    assert_int_equal(merkle_tree_inclusion(&tree, 5, 5, path, &count), -1);
    assert_int_equal(merkle_tree_inclusion(&tree, 0, SIZE_MAX_CHECKED + 1, path, &count), -1);
    merkle_tree_free(&tree);
}

static void test_consistency_matches_reference(void **state)
{
    (void)state;
    struct merkle_tree tree;
    build(&tree, SIZE_MAX_CHECKED);
    for (uint64_t second = 1; second <= SIZE_MAX_CHECKED; second++) {
        merkle_hash second_root;
        reference_root(0, second, second_root);
        for (uint64_t first = 1; first <= second; first++) {
            merkle_hash first_root, path[MERKLE_PROOF_MAX], expected[MERKLE_PROOF_MAX];
            reference_root(0, first, first_root);
            size_t count = 0, expected_count = 0;
            assert_int_equal(merkle_tree_consistency(&tree, first, second, path, &count), 0);
            if (first < second)
                reference_subproof(first, 0, second, true, expected, &expected_count);
            assert_int_equal(count, expected_count);
            if (count > 0)
                assert_memory_equal(path, expected, count * MERKLE_HASH_BYTES);
            assert_true(
                merkle_verify_consistency(first, second, first_root, second_root, path, count));
            /* A different old root (a rewritten prefix) or a changed proof byte: refused. */
            merkle_hash other;
            memcpy(other, first_root, MERKLE_HASH_BYTES);
            other[0] ^= 1;
            assert_false(merkle_verify_consistency(first, second, other, second_root, path, count));
            assert_false(merkle_verify_consistency(first, second, first_root, other, path, count));
            if (count > 0) {
                path[0][31] ^= 1;
                assert_false(
                    merkle_verify_consistency(first, second, first_root, second_root, path, count));
            }
            if (first > 1 && first < second)
                assert_false(merkle_verify_consistency(first - 1, second, first_root, second_root,
                                                       path, count));
        }
    }
    merkle_hash path[MERKLE_PROOF_MAX];
    size_t count = 0;
    assert_int_equal(merkle_tree_consistency(&tree, 0, 3, path, &count), -1);
    assert_int_equal(merkle_tree_consistency(&tree, 4, 3, path, &count), -1);
    merkle_tree_free(&tree);
}

/* A thread that hashes and ends frees its digest context with merkle_thread_release
 * (LeakSanitizer fails the test otherwise), and hashing after a release still works. */
static void *hash_then_release(void *context)
{
    merkle_hash *out = context;
    merkle_sha256("abc", 3, out[0]);
    merkle_thread_release();
    merkle_sha256("abc", 3, out[1]);
    merkle_thread_release();
    return NULL;
}

static void test_thread_release(void **state)
{
    (void)state;
    merkle_hash expected, got[2];
    hex_to("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", expected);
    for (int i = 0; i < 4; i++) {
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, hash_then_release, got), 0);
        assert_int_equal(pthread_join(thread, NULL), 0);
        assert_memory_equal(got[0], expected, MERKLE_HASH_BYTES);
        assert_memory_equal(got[1], expected, MERKLE_HASH_BYTES);
    }
}

int main(void)
{
    for (int i = 0; i < SIZE_MAX_CHECKED; i++) {
        char data[16];
        int length = snprintf(data, sizeof(data), "leaf %d", i);
        merkle_leaf_hash(data, (size_t)length, leaves[i]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6962_vectors),
        cmocka_unit_test(test_inclusion_matches_reference),
        cmocka_unit_test(test_consistency_matches_reference),
        cmocka_unit_test(test_thread_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
