/*
 * Receipts: the signed text is exactly what receipt.h documents, JSON round-trips, a change
 * of any field breaks the signature, and the parsers refuse what is malformed. The signer
 * answers every job, signed, before it stops. libsodium's signatures are OpenSSL's, byte for
 * byte, so a verifier sees no change of signing library.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/engine.h"
#include "gateway/receipt.h"
#include "gateway/signer.h"

static EVP_PKEY *key;
static struct receipt_signing_key signing_key; /* of key */

static struct receipt sample(void)
{
    struct receipt r = {.leaf = {.event = "ev1",
                                 .seq = {4, 0},
                                 .time_ms = 1796142883419,
                                 .type = ENGINE_COMMAND_PURCHASE,
                                 .purchase_id = 0x1234567890ULL},
                        .leaf_index = 3,
                        .tree_size = 4};
    memset(r.leaf.request_sha256, 0xab, MERKLE_HASH_BYTES);
    memset(r.leaf.entry_sha256, 0x01, MERKLE_HASH_BYTES);
    memset(r.root, 0xfe, MERKLE_HASH_BYTES);
    return r;
}

static void test_message_is_the_documented_text(void **state)
{
    (void)state;
    struct receipt r = sample();
    char message[RECEIPT_MESSAGE_MAX];
    int length = receipt_message(&r, message, sizeof(message));
    assert_true(length > 0);
    assert_non_null(strstr(message, "catraca-receipt/1\nevent=ev1\nseq=4-0\npurchase=p_"));
    assert_non_null(strstr(message, "\ntime_ms=1796142883419\nrequest_sha256=abab"));
    assert_non_null(strstr(message, "\nleaf_index=3\ntree_size=4\nroot=fefe"));
    assert_int_equal(message[length - 1], '\n');
    assert_int_equal(receipt_message(&r, message, 10), -1);
}

static void test_signed_json_round_trips_and_any_change_breaks_it(void **state)
{
    (void)state;
    struct receipt r = sample(), parsed;
    assert_int_equal(receipt_sign(&r, &signing_key), 0);
    assert_true(receipt_signature_is_valid(&r, key));
    char json[RECEIPT_JSON_MAX], message[160];
    int length = receipt_format_json(&r, json, sizeof(json));
    assert_true(length > 0);
    assert_int_equal(receipt_parse_json(json, (size_t)length, &parsed, message), 0);
    assert_memory_equal(&parsed, &r, sizeof(r));
    char wrapped[RECEIPT_JSON_MAX + 64];
    snprintf(wrapped, sizeof(wrapped), "{\"id\":\"x\",\"receipt\":%s}", json);
    assert_int_equal(receipt_parse_json(wrapped, strlen(wrapped), &parsed, message), 0);
    assert_true(receipt_signature_is_valid(&parsed, key));
    struct receipt changed = r;
    changed.leaf_index = 2;
    changed.tree_size = 3;
    assert_false(receipt_signature_is_valid(&changed, key));
    changed = r;
    changed.leaf.seq.minor = 1;
    assert_false(receipt_signature_is_valid(&changed, key));
    changed = r;
    changed.root[31] ^= 1;
    assert_false(receipt_signature_is_valid(&changed, key));
    changed = r;
    changed.signature[0] ^= 1;
    assert_false(receipt_signature_is_valid(&changed, key));
}

static void test_parsers_refuse_the_malformed(void **state)
{
    (void)state;
    struct receipt r = sample(), parsed;
    receipt_sign(&r, &signing_key);
    char json[RECEIPT_JSON_MAX], message[160], bad[RECEIPT_JSON_MAX + 64];
    receipt_format_json(&r, json, sizeof(json));
    static const char *const swaps[][2] = {
        {"\"version\":1", "\"version\":2"},         {"\"seq\":\"4-0\"", "\"seq\":\"4\""},
        {"\"leaf_index\":3", "\"leaf_index\":1.5"}, {"\"tree_size\":4", "\"tree_size\":5"},
        {"\"event\":\"ev1\"", "\"event\":\"e v\""}, {"\"purchase\":\"p_", "\"purchase\":\"q_"},
        {"\"root\":\"fe", "\"root\":\"zz"},         {"\"signature\":\"", "\"signature\":\"!"}};
    for (size_t i = 0; i < sizeof(swaps) / sizeof(swaps[0]); i++) {
        const char *at = strstr(json, swaps[i][0]);
        assert_non_null(at);
        snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - json), json, swaps[i][1],
                 at + strlen(swaps[i][0]));
        assert_int_equal(receipt_parse_json(bad, strlen(bad), &parsed, message), -7);
    }
    assert_int_equal(receipt_parse_json("[]", 2, &parsed, message), -7);
    uint8_t bytes[64];
    assert_int_equal(receipt_base64_parse("AAAA", bytes, 3), 0);
    assert_int_equal(receipt_base64_parse("AA==", bytes, 1), 0);
    assert_int_equal(receipt_base64_parse("AAA=", bytes, 1), -1);
    assert_int_equal(receipt_base64_parse("A=A=", bytes, 2), -1);
    struct receipt_proof proof;
    const char *proof_text = "{\"first\":1,\"second\":2,\"path\":[\"" /* 64 hex */
                             "00000000000000000000000000000000"
                             "00000000000000000000000000000000\"]}";
    assert_int_equal(receipt_proof_parse_json(proof_text, strlen(proof_text), &proof, message), 0);
    assert_int_equal(proof.count, 1);
    assert_int_equal(proof.second, 2);
    assert_int_equal(receipt_proof_parse_json("{\"path\":[1]}", 12, &proof, message), -7);
}

/* Ed25519 is deterministic (RFC 8032): what libsodium signs must equal what OpenSSL's EVP
 * signs with the same key, for receipts and heads, over many messages. */
static void test_signatures_are_openssl_s_byte_for_byte(void **state)
{
    (void)state;
    for (int i = 0; i < 64; i++) {
        struct receipt r = sample();
        r.leaf.purchase_id += (uint64_t)i * 7919;
        r.leaf_index = (uint64_t)i;
        r.tree_size = r.leaf_index + 1;
        r.root[i % MERKLE_HASH_BYTES] ^= (uint8_t)i;
        assert_int_equal(receipt_sign(&r, &signing_key), 0);
        char message[RECEIPT_MESSAGE_MAX];
        int length = receipt_message(&r, message, sizeof(message));
        assert_true(length > 0);
        uint8_t expected[RECEIPT_SIGNATURE_BYTES];
        size_t expected_length = sizeof(expected);
        EVP_MD_CTX *context = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(context, NULL, NULL, NULL, key), 1);
        assert_int_equal(EVP_DigestSign(context, expected, &expected_length,
                                        (const uint8_t *)message, (size_t)length),
                         1);
        EVP_MD_CTX_free(context);
        assert_memory_equal(r.signature, expected, sizeof(expected));
    }
    struct tree_head head = {.event = "ev1", .tree_size = 9};
    memset(head.root, 0x5a, MERKLE_HASH_BYTES);
    assert_int_equal(tree_head_sign(&head, &signing_key), 0);
    assert_true(tree_head_signature_is_valid(&head, key));
    head.tree_size = 10;
    assert_false(tree_head_signature_is_valid(&head, key));
}

static void test_signing_key_needs_an_ed25519_private_key(void **state)
{
    (void)state;
    struct receipt_signing_key out;
    assert_int_equal(receipt_signing_key_from(NULL, &out), -1);
    uint8_t raw[RECEIPT_PUBLIC_KEY_BYTES];
    assert_int_equal(receipt_key_public(key, raw), 0);
    EVP_PKEY *public_only = receipt_key_from_public(raw, sizeof(raw));
    assert_non_null(public_only);
    assert_int_equal(receipt_signing_key_from(public_only, &out), -1);
    EVP_PKEY_free(public_only);
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(other);
    assert_int_equal(receipt_signing_key_from(other, &out), -1);
    EVP_PKEY_free(other);
}

static int answered;
static void on_signed(void *payload, const struct receipt *receipt, int error)
{
    assert_int_equal(error, 0);
    assert_true(receipt_signature_is_valid(receipt, key));
    assert_int_equal(*(int *)payload, (int)receipt->leaf_index);
    __atomic_add_fetch(&answered, 1, __ATOMIC_SEQ_CST);
}

static void test_signer_answers_every_job_before_stopping(void **state)
{
    (void)state;
    struct signer_config config = {.key = &signing_key, .threads = 2, .queue_max = 8, .done = on_signed};
    struct signer *signer = NULL;
    assert_int_equal(signer_start(&config, &signer), 0);
    int submitted = 0, full = 0;
    for (int i = 0; i < 200; i++) {
        struct receipt r = sample();
        r.leaf_index = (uint64_t)i;
        r.tree_size = r.leaf_index + 1;
        int error = signer_submit(signer, &r, &i, sizeof(i));
        if (error == 0)
            submitted++;
        else
            full += error == -11; /* CATRACA_E_FULL: the queue bound holds */
    }
    assert_int_equal(submitted + full, 200);
    assert_int_equal(signer_drain(signer, 10000), 0);
    assert_int_equal(__atomic_load_n(&answered, __ATOMIC_SEQ_CST), submitted);
    signer_stop(signer);
}

int main(void)
{
    key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL || receipt_signing_key_from(key, &signing_key) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_is_the_documented_text),
        cmocka_unit_test(test_signed_json_round_trips_and_any_change_breaks_it),
        cmocka_unit_test(test_parsers_refuse_the_malformed),
        cmocka_unit_test(test_signatures_are_openssl_s_byte_for_byte),
        cmocka_unit_test(test_signing_key_needs_an_ed25519_private_key),
        cmocka_unit_test(test_signer_answers_every_job_before_stopping),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    EVP_PKEY_free(key);
    return failed;
}
