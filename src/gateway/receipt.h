/*
 * receipt.h - a signed receipt and a signed tree head: their fields, the exact
 * bytes that are signed, their JSON, and the Ed25519 key that signs them
 * (read with OpenSSL EVP, signing with libsodium). Shared by the gateway (receipts.h issues them) and `catraca
 * verify` (which checks them), so both sides sign and check the same bytes.
 *
 * Signed bytes are text, one field a line, so that anyone can rebuild them by hand:
 *
 *   receipt:    "catraca-receipt/1\nevent=E\nseq=S\npurchase=P\ntime_ms=T\n"
 *               "request_sha256=H\nentry_sha256=H\nleaf_index=I\ntree_size=N\nroot=H\n"
 *   tree head:  "catraca-tree-head/1\nevent=E\ntree_size=N\nroot=H\n"
 *
 * (hashes in lower-case hex, P as the API writes purchase ids, S as "major-minor").
 * tree_size is leaf_index + 1: the head at acceptance covers the log up to and
 * including the receipt's own entry (the tree follows the log order, which is
 * known only once the entry is in the log).
 */
#ifndef CATRACA_GATEWAY_RECEIPT_H
#define CATRACA_GATEWAY_RECEIPT_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log/log_tree.h"

#define RECEIPT_SIGNATURE_BYTES 64
#define RECEIPT_PUBLIC_KEY_BYTES 32
#define RECEIPT_BASE64_MAX 92 /* 4 * ceil(64 / 3) + NUL */
#define RECEIPT_MESSAGE_MAX 640
#define RECEIPT_JSON_MAX 900
/* A receipt file or answer read by `catraca verify` is at most this long. */
#define RECEIPT_TEXT_MAX 8192

struct receipt {
    struct log_tree_leaf leaf; /* event, seq, time, PURCHASE, purchase id, the two hashes */
    uint64_t leaf_index;
    uint64_t tree_size;
    merkle_hash root;
    uint8_t signature[RECEIPT_SIGNATURE_BYTES];
};

struct tree_head {
    char event[CATRACA_ID_MAX + 1];
    uint64_t tree_size;
    merkle_hash root;
    uint8_t signature[RECEIPT_SIGNATURE_BYTES];
};

/* The bytes a receipt's / a head's signature covers; their length, or -1 when out is small. */
int receipt_message(const struct receipt *receipt, char *out, size_t size);
int tree_head_message(const struct tree_head *head, char *out, size_t size);

/*
 * The private key as signing uses it: libsodium's expanded Ed25519 secret key (the 32-byte
 * seed, then the public key). OpenSSL reads and writes the key (PEM) and checks signatures;
 * libsodium signs, with about 40 % of OpenSSL 3.0's CPU a signature (docs/BENCHMARKS.md,
 * "Receipts"), and Ed25519 is deterministic (RFC 8032), so the signature is the same bytes
 * either way (test_receipt checks it).
 */
struct receipt_signing_key {
    uint8_t secret[64];
};
/* From an Ed25519 private key: 0, or CATRACA_E_INVALID (not one, or libsodium cannot start). */
int receipt_signing_key_from(EVP_PKEY *key, struct receipt_signing_key *out);
/* Overwrites the secret (the compiler may not drop it). */
void receipt_signing_key_clear(struct receipt_signing_key *key);

/* Signs into ->signature with key: 0 or CATRACA_E_INVALID. Any thread (the key is read-only). */
int receipt_sign(struct receipt *receipt, const struct receipt_signing_key *key);
int tree_head_sign(struct tree_head *head, const struct receipt_signing_key *key);
bool receipt_signature_is_valid(const struct receipt *receipt, EVP_PKEY *public_key);
bool tree_head_signature_is_valid(const struct tree_head *head, EVP_PKEY *public_key);

/* The receipt as the JSON object a 202 carries; its length, or -1 when out is small. */
int receipt_format_json(const struct receipt *receipt, char *out, size_t size);
/*
 * Reads a receipt: the object itself, or any JSON object with it under
 * "receipt" (a saved 202 body). 0, or CATRACA_E_CORRUPT with a reason in
 * message. Every field is required and checked for form, never trusted.
 */
int receipt_parse_json(const char *text, size_t length, struct receipt *out, char message[160]);
/* A head's JSON object. */
int tree_head_format_json(const struct tree_head *head, char *out, size_t size);
int tree_head_parse_json(const char *text, size_t length, struct tree_head *out, char message[160]);

/* An inclusion or consistency proof as the /v1/events/{event}/log routes answer it. */
struct receipt_proof {
    uint64_t leaf_index, tree_size; /* inclusion */
    uint64_t first, second;         /* consistency */
    bool has_leaf;
    merkle_hash leaf;
    merkle_hash path[MERKLE_PROOF_MAX];
    size_t count;
};
/* Reads either proof: "path" (an array of at most MERKLE_PROOF_MAX hex hashes) is required;
 * the integers and "leaf" are read when present (absent integers are 0). 0 or CATRACA_E_CORRUPT. */
int receipt_proof_parse_json(const char *text, size_t length, struct receipt_proof *out,
                             char message[160]);

/* Base64 (standard alphabet, padded) of up to 64 bytes, and back (0, or -1). */
void receipt_base64(const uint8_t *bytes, size_t length, char out[RECEIPT_BASE64_MAX]);
int receipt_base64_parse(const char *text, uint8_t *out, size_t length);

/*
 * The Ed25519 private key in PEM file path. When the file does not exist and
 * may_create is set, a new key is generated and linked into place atomically
 * (mode 0600), so that gateways started together on one shared path end up with
 * one key. NULL after a message on stderr.
 */
EVP_PKEY *receipt_key_load(const char *path, bool may_create);
/* The raw public key, and a public-key-only EVP_PKEY from it (NULL when not 32 bytes). */
int receipt_key_public(EVP_PKEY *key, uint8_t out[RECEIPT_PUBLIC_KEY_BYTES]);
EVP_PKEY *receipt_key_from_public(const uint8_t *raw, size_t length);

#endif
