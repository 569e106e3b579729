/* receipt.c - receipts and tree heads: bytes, JSON, Ed25519; contract in receipt.h. */
#include "gateway/receipt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "gateway/api_json.h"

#define HEX_TEXT (2 * MERKLE_HASH_BYTES + 1)
/* JSON numbers are doubles: integers above 2^53 would not survive a round trip. */
#define JSON_INTEGER_MAX 9007199254740992.0

int receipt_message(const struct receipt *r, char *out, size_t size)
{
    char seq[LOG_SEQ_TEXT_MAX], purchase[API_PURCHASE_ID_TEXT], request[HEX_TEXT], entry[HEX_TEXT],
        root[HEX_TEXT];
    log_seq_format(r->leaf.seq, seq);
    api_json_purchase_id_format(r->leaf.purchase_id, purchase);
    log_tree_hex(r->leaf.request_sha256, request);
    log_tree_hex(r->leaf.entry_sha256, entry);
    log_tree_hex(r->root, root);
    int n = snprintf(out, size,
                     "catraca-receipt/1\nevent=%s\nseq=%s\npurchase=%s\ntime_ms=%" PRId64
                     "\nrequest_sha256=%s\nentry_sha256=%s\nleaf_index=%" PRIu64
                     "\ntree_size=%" PRIu64 "\nroot=%s\n",
                     r->leaf.event, seq, purchase, r->leaf.time_ms, request, entry, r->leaf_index,
                     r->tree_size, root);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int tree_head_message(const struct tree_head *h, char *out, size_t size)
{
    char root[HEX_TEXT];
    log_tree_hex(h->root, root);
    int n = snprintf(out, size, "catraca-tree-head/1\nevent=%s\ntree_size=%" PRIu64 "\nroot=%s\n",
                     h->event, h->tree_size, root);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* ---- Ed25519 ----------------------------------------------------------------------------- */

_Static_assert(sizeof(((struct receipt_signing_key *)0)->secret) == crypto_sign_SECRETKEYBYTES,
               "receipt_signing_key holds libsodium's Ed25519 secret key");
_Static_assert(RECEIPT_SIGNATURE_BYTES == crypto_sign_BYTES, "an Ed25519 signature");

int receipt_signing_key_from(EVP_PKEY *key, struct receipt_signing_key *out)
{
    uint8_t seed[crypto_sign_SEEDBYTES], public_key[crypto_sign_PUBLICKEYBYTES];
    size_t length = sizeof(seed);
    /* sodium_init is safe to call more than once and from any thread; <0 is failure only. */
    int is_ok = sodium_init() >= 0 && key != NULL && EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 &&
                EVP_PKEY_get_raw_private_key(key, seed, &length) == 1 && length == sizeof(seed) &&
                crypto_sign_seed_keypair(public_key, out->secret, seed) == 0;
    sodium_memzero(seed, sizeof(seed));
    if (!is_ok)
        sodium_memzero(out->secret, sizeof(out->secret));
    return is_ok ? 0 : CATRACA_E_INVALID;
}

void receipt_signing_key_clear(struct receipt_signing_key *key)
{
    sodium_memzero(key->secret, sizeof(key->secret));
}

static int sign(const char *message, size_t length, const struct receipt_signing_key *key,
                uint8_t signature[RECEIPT_SIGNATURE_BYTES])
{
    /* Ed25519 signs the message itself (RFC 8032, PureEdDSA), as OpenSSL's EVP_DigestSign does. */
    return crypto_sign_detached(signature, NULL, (const uint8_t *)message, length, key->secret) == 0
               ? 0
               : CATRACA_E_INVALID;
}

static bool signature_is_valid(const char *message, size_t length, EVP_PKEY *key,
                               const uint8_t signature[RECEIPT_SIGNATURE_BYTES])
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    bool is_valid = context != NULL && EVP_DigestVerifyInit(context, NULL, NULL, NULL, key) == 1 &&
                    EVP_DigestVerify(context, signature, RECEIPT_SIGNATURE_BYTES,
                                     (const uint8_t *)message, length) == 1;
    EVP_MD_CTX_free(context);
    return is_valid;
}

int receipt_sign(struct receipt *receipt, const struct receipt_signing_key *key)
{
    char message[RECEIPT_MESSAGE_MAX];
    int length = receipt_message(receipt, message, sizeof(message));
    return length < 0 ? CATRACA_E_INVALID : sign(message, (size_t)length, key, receipt->signature);
}

int tree_head_sign(struct tree_head *head, const struct receipt_signing_key *key)
{
    char message[RECEIPT_MESSAGE_MAX];
    int length = tree_head_message(head, message, sizeof(message));
    return length < 0 ? CATRACA_E_INVALID : sign(message, (size_t)length, key, head->signature);
}

bool receipt_signature_is_valid(const struct receipt *receipt, EVP_PKEY *public_key)
{
    char message[RECEIPT_MESSAGE_MAX];
    int length = receipt_message(receipt, message, sizeof(message));
    return length >= 0 &&
           signature_is_valid(message, (size_t)length, public_key, receipt->signature);
}

bool tree_head_signature_is_valid(const struct tree_head *head, EVP_PKEY *public_key)
{
    char message[RECEIPT_MESSAGE_MAX];
    int length = tree_head_message(head, message, sizeof(message));
    return length >= 0 && signature_is_valid(message, (size_t)length, public_key, head->signature);
}

/* ---- base64 ------------------------------------------------------------------------------ */

void receipt_base64(const uint8_t *bytes, size_t length, char out[RECEIPT_BASE64_MAX])
{
    if (length > RECEIPT_SIGNATURE_BYTES)
        length = RECEIPT_SIGNATURE_BYTES;
    EVP_EncodeBlock((unsigned char *)out, bytes, (int)length);
}

int receipt_base64_parse(const char *text, uint8_t *out, size_t length)
{
    size_t text_length = strlen(text);
    size_t expected = 4 * ((length + 2) / 3);
    if (length > RECEIPT_SIGNATURE_BYTES || text_length != expected)
        return -1;
    for (size_t i = 0; i < text_length; i++) {
        char c = text[i];
        bool is_padding = c == '=' && i >= text_length - 2;
        if (!is_padding && !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                             (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return -1;
        if (i + 1 < text_length && text[i] == '=' && text[i + 1] != '=')
            return -1;
    }
    uint8_t decoded[RECEIPT_BASE64_MAX];
    /* EVP_DecodeBlock counts the padding as zero bytes: only the first `length` matter, and
     * exactly (expected / 4 * 3 - length) '=' must pad. */
    if (EVP_DecodeBlock(decoded, (const unsigned char *)text, (int)text_length) !=
        (int)(expected / 4 * 3))
        return -1;
    size_t padding = expected / 4 * 3 - length;
    if ((padding > 0 && text[text_length - 1] != '=') ||
        (padding > 1 && text[text_length - 2] != '=') ||
        (padding < 2 && text[text_length - 2] == '=') ||
        (padding < 1 && text[text_length - 1] == '='))
        return -1;
    memcpy(out, decoded, length);
    return 0;
}

/* ---- JSON -------------------------------------------------------------------------------- */

int receipt_format_json(const struct receipt *r, char *out, size_t size)
{
    char seq[LOG_SEQ_TEXT_MAX], purchase[API_PURCHASE_ID_TEXT], request[HEX_TEXT], entry[HEX_TEXT],
        root[HEX_TEXT], signature[RECEIPT_BASE64_MAX];
    log_seq_format(r->leaf.seq, seq);
    api_json_purchase_id_format(r->leaf.purchase_id, purchase);
    log_tree_hex(r->leaf.request_sha256, request);
    log_tree_hex(r->leaf.entry_sha256, entry);
    log_tree_hex(r->root, root);
    receipt_base64(r->signature, RECEIPT_SIGNATURE_BYTES, signature);
    int n = snprintf(out, size,
                     "{\"version\":1,\"event\":\"%s\",\"seq\":\"%s\",\"purchase\":\"%s\","
                     "\"time_ms\":%" PRId64 ",\"request_sha256\":\"%s\",\"entry_sha256\":\"%s\","
                     "\"leaf_index\":%" PRIu64 ",\"tree_size\":%" PRIu64
                     ",\"root\":\"%s\",\"signature\":\"%s\"}",
                     r->leaf.event, seq, purchase, r->leaf.time_ms, request, entry, r->leaf_index,
                     r->tree_size, root, signature);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

int tree_head_format_json(const struct tree_head *h, char *out, size_t size)
{
    char root[HEX_TEXT], signature[RECEIPT_BASE64_MAX];
    log_tree_hex(h->root, root);
    receipt_base64(h->signature, RECEIPT_SIGNATURE_BYTES, signature);
    int n = snprintf(out, size,
                     "{\"event\":\"%s\",\"tree_size\":%" PRIu64
                     ",\"root\":\"%s\",\"signature\":\"%s\"}",
                     h->event, h->tree_size, root, signature);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

static const char *string_field(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* A non-negative integer field (JSON numbers are doubles: at most 2^53). */
static bool integer_field(const cJSON *object, const char *name, uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
        item->valuedouble > JSON_INTEGER_MAX || item->valuedouble != floor(item->valuedouble))
        return false;
    *out = (uint64_t)item->valuedouble;
    return true;
}

static int refuse(char message[160], const char *why)
{
    snprintf(message, 160, "%s", why);
    return CATRACA_E_CORRUPT;
}

/* The object at the top, or under "receipt"/"head" in a saved answer. */
static const cJSON *object_of(const cJSON *json, const char *wrapper)
{
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(json, wrapper);
    return cJSON_IsObject(inner) ? inner : json;
}

static int parse_receipt_object(const cJSON *o, struct receipt *out, char message[160])
{
    memset(out, 0, sizeof(*out));
    uint64_t version = 0, time_ms = 0;
    const char *event = string_field(o, "event"), *seq = string_field(o, "seq"),
               *purchase = string_field(o, "purchase"), *signature = string_field(o, "signature");
    if (!integer_field(o, "version", &version) || version != 1)
        return refuse(message, "version: 1 expected");
    if (event == NULL || !api_json_is_id(event))
        return refuse(message, "event: an id expected");
    snprintf(out->leaf.event, sizeof(out->leaf.event), "%s", event);
    if (seq == NULL || log_seq_parse(seq, &out->leaf.seq) != 0)
        return refuse(message, "seq: \"major-minor\" expected");
    if (purchase == NULL || api_json_purchase_id_parse(purchase, &out->leaf.purchase_id) != 0)
        return refuse(message, "purchase: a purchase id expected");
    if (!integer_field(o, "time_ms", &time_ms))
        return refuse(message, "time_ms: a non-negative integer expected");
    out->leaf.time_ms = (int64_t)time_ms;
    out->leaf.type = ENGINE_COMMAND_PURCHASE;
    if (log_tree_hex_parse(string_field(o, "request_sha256"), out->leaf.request_sha256) != 0 ||
        log_tree_hex_parse(string_field(o, "entry_sha256"), out->leaf.entry_sha256) != 0 ||
        log_tree_hex_parse(string_field(o, "root"), out->root) != 0)
        return refuse(message, "request_sha256, entry_sha256, root: 64 hex digits expected");
    if (!integer_field(o, "leaf_index", &out->leaf_index) ||
        !integer_field(o, "tree_size", &out->tree_size) || out->tree_size != out->leaf_index + 1)
        return refuse(message, "leaf_index, tree_size: integers with tree_size = leaf_index + 1");
    if (signature == NULL ||
        receipt_base64_parse(signature, out->signature, RECEIPT_SIGNATURE_BYTES) != 0)
        return refuse(message, "signature: base64 of 64 bytes expected");
    return 0;
}

int receipt_parse_json(const char *text, size_t length, struct receipt *out, char message[160])
{
    if (length > RECEIPT_TEXT_MAX)
        return refuse(message, "longer than a receipt can be");
    cJSON *json = cJSON_ParseWithLength(text, length);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        return refuse(message, "not a JSON object");
    }
    int error = parse_receipt_object(object_of(json, "receipt"), out, message);
    cJSON_Delete(json);
    return error;
}

int tree_head_parse_json(const char *text, size_t length, struct tree_head *out, char message[160])
{
    memset(out, 0, sizeof(*out));
    if (length > RECEIPT_TEXT_MAX)
        return refuse(message, "longer than a tree head can be");
    cJSON *json = cJSON_ParseWithLength(text, length);
    const cJSON *o = object_of(json, "head");
    const char *event = string_field(o, "event"), *signature = string_field(o, "signature");
    int error = 0;
    if (!cJSON_IsObject(json) || event == NULL || !api_json_is_id(event))
        error = refuse(message, "event: an id expected");
    else if (!integer_field(o, "tree_size", &out->tree_size) ||
             log_tree_hex_parse(string_field(o, "root"), out->root) != 0)
        error = refuse(message, "tree_size and root expected");
    else if (signature == NULL ||
             receipt_base64_parse(signature, out->signature, RECEIPT_SIGNATURE_BYTES) != 0)
        error = refuse(message, "signature: base64 of 64 bytes expected");
    else
        snprintf(out->event, sizeof(out->event), "%s", event);
    cJSON_Delete(json);
    return error;
}

int receipt_proof_parse_json(const char *text, size_t length, struct receipt_proof *out,
                             char message[160])
{
    memset(out, 0, sizeof(*out));
    if (length > RECEIPT_TEXT_MAX)
        return refuse(message, "longer than a proof can be");
    cJSON *json = cJSON_ParseWithLength(text, length);
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(json, "path");
    int error = 0;
    if (!cJSON_IsObject(json) || !cJSON_IsArray(path) ||
        cJSON_GetArraySize(path) > MERKLE_PROOF_MAX) {
        error = refuse(message, "path: an array of at most 65 hashes expected");
    } else {
        const cJSON *item = NULL;
        cJSON_ArrayForEach(item, path)
        {
            if (!cJSON_IsString(item) ||
                log_tree_hex_parse(item->valuestring, out->path[out->count]) != 0) {
                error = refuse(message, "path: 64 hex digits per hash expected");
                break;
            }
            out->count++;
        }
        static const char *const names[] = {"leaf_index", "tree_size", "first", "second"};
        uint64_t *fields[] = {&out->leaf_index, &out->tree_size, &out->first, &out->second};
        for (size_t i = 0; error == 0 && i < 4; i++)
            if (cJSON_GetObjectItemCaseSensitive(json, names[i]) != NULL &&
                !integer_field(json, names[i], fields[i]))
                error = refuse(message, "leaf_index, tree_size, first, second: integers expected");
        const char *leaf = string_field(json, "leaf");
        if (error == 0 && leaf != NULL) {
            if (log_tree_hex_parse(leaf, out->leaf) != 0)
                error = refuse(message, "leaf: 64 hex digits expected");
            out->has_leaf = true;
        }
    }
    cJSON_Delete(json);
    return error;
}

/* ---- the key ----------------------------------------------------------------------------- */

/* Writes a new key to a private temporary file beside path, then links it into place: a
 * concurrent creator's key wins if it was linked first (then ours is dropped). */
static int create_key(const char *path)
{
    char directory[1024];
    snprintf(directory, sizeof(directory), "%s", path);
    char *slash = strrchr(directory, '/');
    if (slash != NULL && slash != directory) {
        *slash = '\0';
        mkdir(directory, 0700); /* one level, as the data directory is made; EEXIST is fine */
    }
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (key == NULL) {
        fprintf(stderr, "catraca: cannot generate an Ed25519 key\n");
        return -1;
    }
    char temporary[1024];
    snprintf(temporary, sizeof(temporary), "%s.%ld.tmp", path, (long)getpid());
    int fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0600);
    FILE *file = fd >= 0 ? fdopen(fd, "w") : NULL;
    bool is_written = file != NULL &&
                      PEM_write_PrivateKey(file, key, NULL, NULL, 0, NULL, NULL) == 1 &&
                      fflush(file) == 0 && fsync(fileno(file)) == 0;
    if (file != NULL)
        fclose(file);
    else if (fd >= 0)
        close(fd);
    EVP_PKEY_free(key);
    int linked = is_written ? link(temporary, path) : -1;
    int link_errno = errno;
    unlink(temporary);
    if (!is_written || (linked != 0 && link_errno != EEXIST)) {
        fprintf(stderr, "catraca: cannot write the receipt key %s: %s\n", path,
                strerror(is_written ? link_errno : errno));
        return -1;
    }
    return 0;
}

EVP_PKEY *receipt_key_load(const char *path, bool may_create)
{
    struct stat status;
    if (stat(path, &status) != 0 && errno == ENOENT && may_create && create_key(path) != 0)
        return NULL;
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        fprintf(stderr, "catraca: cannot read the receipt key %s: %s\n", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) {
        fprintf(stderr,
                "catraca: %s is not an Ed25519 private key in PEM "
                "(openssl genpkey -algorithm ed25519 makes one)\n",
                path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

int receipt_key_public(EVP_PKEY *key, uint8_t out[RECEIPT_PUBLIC_KEY_BYTES])
{
    size_t length = RECEIPT_PUBLIC_KEY_BYTES;
    return EVP_PKEY_get_raw_public_key(key, out, &length) == 1 && length == RECEIPT_PUBLIC_KEY_BYTES
               ? 0
               : CATRACA_E_INVALID;
}

EVP_PKEY *receipt_key_from_public(const uint8_t *raw, size_t length)
{
    if (length != RECEIPT_PUBLIC_KEY_BYTES)
        return NULL;
    return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, length);
}
