/*
 * What one receipt costs, piece by piece, on this machine: an Ed25519 signature (libsodium, as
 * receipts are signed; beside it the same signature from OpenSSL EVP, which signed them until
 * 2026-12-02, timed in the same runs), a leaf hash of a log entry, appending it to an event's tree, the root at its size
 * (the receipt's head), and an inclusion and a consistency proof for a million-entry log.
 * Median of RUNS runs of each; ends with a JSON line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/receipt.h"

#define RUNS 5
#define LEAVES 1000000

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values)
{
    qsort(values, RUNS, sizeof(*values), by_value);
    return values[RUNS / 2];
}

int main(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    struct receipt_signing_key signing_key;
    if (key == NULL || receipt_signing_key_from(key, &signing_key) != 0)
        return 1;
    struct receipt receipt = {.leaf = {.event = "bench", .type = 2, .purchase_id = 42},
                              .leaf_index = 1234,
                              .tree_size = 1235};
    double sign_us[RUNS], openssl_sign_us[RUNS], leaf_us[RUNS], append_us[RUNS], root_us[RUNS], inclusion_us[RUNS],
        consistency_us[RUNS];
    uint8_t record[80] = {2, 1, 2, 3};
    struct merkle_tree tree;
    for (int run = 0; run < RUNS; run++) {
        int n = 2000;
        double start = now_s();
        for (int i = 0; i < n; i++) {
            receipt.leaf.seq.major = (uint64_t)i;
            if (receipt_sign(&receipt, &signing_key) != 0)
                return 1;
        }
        sign_us[run] = (now_s() - start) * 1e6 / n;
        char message[RECEIPT_MESSAGE_MAX];
        start = now_s();
        for (int i = 0; i < n; i++) {
            receipt.leaf.seq.major = (uint64_t)i;
            int length = receipt_message(&receipt, message, sizeof(message));
            EVP_MD_CTX *context = EVP_MD_CTX_new();
            size_t signature_length = RECEIPT_SIGNATURE_BYTES;
            if (length < 0 || context == NULL ||
                EVP_DigestSignInit(context, NULL, NULL, NULL, key) != 1 ||
                EVP_DigestSign(context, receipt.signature, &signature_length,
                               (const uint8_t *)message, (size_t)length) != 1)
                return 1;
            EVP_MD_CTX_free(context);
        }
        openssl_sign_us[run] = (now_s() - start) * 1e6 / n;
        merkle_tree_init(&tree, LEAVES);
        double leaf_total = 0, append_total = 0;
        for (uint64_t i = 0; i < LEAVES; i++) {
            struct log_tree_leaf leaf;
            merkle_hash hash;
            double t0 = now_s();
            log_tree_leaf_of_entry("bench", (struct log_seq){i + 1, 0}, 1, record, sizeof(record),
                                   &leaf);
            log_tree_leaf_hash(&leaf, hash);
            double t1 = now_s();
            if (merkle_tree_append(&tree, hash) != 0)
                return 1;
            leaf_total += t1 - t0;
            append_total += now_s() - t1;
        }
        leaf_us[run] = leaf_total * 1e6 / LEAVES;
        append_us[run] = append_total * 1e6 / LEAVES;
        merkle_hash root, path[MERKLE_PROOF_MAX];
        size_t count;
        start = now_s();
        for (uint64_t size = LEAVES - 10000; size < LEAVES; size++)
            merkle_tree_root(&tree, size, root);
        root_us[run] = (now_s() - start) * 1e6 / 10000;
        start = now_s();
        for (uint64_t i = 0; i < 10000; i++)
            merkle_tree_inclusion(&tree, i * 97, LEAVES, path, &count);
        inclusion_us[run] = (now_s() - start) * 1e6 / 10000;
        start = now_s();
        for (uint64_t i = 1; i <= 10000; i++)
            merkle_tree_consistency(&tree, i * 97, LEAVES, path, &count);
        consistency_us[run] = (now_s() - start) * 1e6 / 10000;
        merkle_tree_free(&tree);
    }
    double sign = median(sign_us), openssl_sign = median(openssl_sign_us), leaf = median(leaf_us), append = median(append_us),
           root = median(root_us), inclusion = median(inclusion_us),
           consistency = median(consistency_us);
    printf("receipt costs, medians of %d runs (a log of %d entries)\n", RUNS, LEAVES);
    printf("  %-44s %8.2f us\n", "Ed25519 signature (libsodium, as signed)", sign);
    printf("  %-44s %8.2f us\n", "the same signature from OpenSSL EVP", openssl_sign);
    printf("  %-44s %8.2f us\n", "leaf of a log entry (2 SHA-256)", leaf);
    printf("  %-44s %8.2f us\n", "append to the tree (amortised)", append);
    printf("  %-44s %8.2f us\n", "root at a size (a receipt's head)", root);
    printf("  %-44s %8.2f us\n", "inclusion proof", inclusion);
    printf("  %-44s %8.2f us\n", "consistency proof", consistency);
    printf("{\"bench\": \"receipt_costs\", \"sign_us\": %.2f, \"openssl_sign_us\": %.2f, \"leaf_us\": %.2f, \"append_us\": "
           "%.2f, \"root_us\": %.2f, \"inclusion_us\": %.2f, \"consistency_us\": %.2f, "
           "\"runs\": %d, \"leaves\": %d}\n",
           sign, openssl_sign, leaf, append, root, inclusion, consistency, RUNS, LEAVES);
    receipt_signing_key_clear(&signing_key);
    EVP_PKEY_free(key);
    return 0;
}
