/*
 * libFuzzer: what `catraca verify` reads from a file or a server (a receipt, a tree head, a
 * proof) never crashes, and what is accepted round-trips: a parsed receipt or head formats
 * back to JSON that parses to the same fields, and a receipt accepted under a key the fuzzer
 * cannot know is never reported as validly signed.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/receipt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *key;
static struct receipt_signing_key signing_key; /* of key */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (key == NULL) {
        key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        assert(key != NULL && receipt_signing_key_from(key, &signing_key) == 0);
    }
    const char *text = (const char *)data;
    char message[160], json[RECEIPT_JSON_MAX];
    struct receipt receipt, again;
    if (receipt_parse_json(text, size, &receipt, message) == 0) {
        int length = receipt_format_json(&receipt, json, sizeof(json));
        assert(length > 0);
        assert(receipt_parse_json(json, (size_t)length, &again, message) == 0);
        assert(memcmp(&receipt, &again, sizeof(receipt)) == 0);
        assert(!receipt_signature_is_valid(&receipt, key));
        assert(receipt_sign(&receipt, &signing_key) == 0 && receipt_signature_is_valid(&receipt, key));
    }
    struct tree_head head, head_again;
    if (tree_head_parse_json(text, size, &head, message) == 0) {
        int length = tree_head_format_json(&head, json, sizeof(json));
        assert(length > 0);
        assert(tree_head_parse_json(json, (size_t)length, &head_again, message) == 0);
        assert(memcmp(&head, &head_again, sizeof(head)) == 0);
    }
    struct receipt_proof proof;
    if (receipt_proof_parse_json(text, size, &proof, message) == 0)
        assert(proof.count <= MERKLE_PROOF_MAX);
    return 0;
}
