/* verify.c - `catraca verify`; contract in verify.h. HTTP(S) through libcurl. */
#include "app/verify.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/receipt.h"

#define ANSWER_BYTES_MAX (64 * 1024) /* a proof is a few kilobytes; more is refused */
#define TIMEOUT_S 15

struct answer {
    char text[ANSWER_BYTES_MAX + 1];
    size_t length;
    bool is_too_long;
};

static size_t collect(char *data, size_t size, size_t count, void *context)
{
    struct answer *a = context;
    size_t bytes = size * count;
    if (a->length + bytes > ANSWER_BYTES_MAX) {
        a->is_too_long = true;
        return 0; /* aborts the transfer */
    }
    memcpy(a->text + a->length, data, bytes);
    a->length += bytes;
    a->text[a->length] = '\0';
    return bytes;
}

/* GET base + path into a; 0 on a 200, the status of another answer, or -1 when there was none
 * (a message on stderr for both). */
static int get(const char *base, const char *path, struct answer *a)
{
    char url[2048];
    if (snprintf(url, sizeof(url), "%s%s", base, path) >= (int)sizeof(url)) {
        fprintf(stderr, "catraca verify: URL too long\n");
        return -1;
    }
    a->length = 0;
    a->is_too_long = false;
    a->text[0] = '\0';
    CURL *curl = curl_easy_init();
    if (curl == NULL)
        return -1;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)TIMEOUT_S);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (code != CURLE_OK) {
        fprintf(stderr, "catraca verify: GET %s: %s\n", url,
                a->is_too_long ? "answer too long" : curl_easy_strerror(code));
        return -1;
    }
    if (status != 200) {
        fprintf(stderr, "catraca verify: GET %s: HTTP %ld %.300s\n", url, status, a->text);
        return status > 0 && status < 1000 ? (int)status : -1;
    }
    return 0;
}

static int fail(const char *what)
{
    printf("FAIL: %s\n", what);
    return 1;
}

static int read_file(const char *path, char *out, size_t size, size_t *length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        perror(path);
        return -1;
    }
    *length = fread(out, 1, size, file);
    bool is_whole = feof(file) && !ferror(file);
    fclose(file);
    if (!is_whole) {
        fprintf(stderr, "catraca verify: %s: unreadable or longer than %zu bytes\n", path,
                size - 1);
        return -1;
    }
    return 0;
}

static EVP_PKEY *public_key_of(const char *base64)
{
    uint8_t raw[RECEIPT_PUBLIC_KEY_BYTES];
    if (base64 == NULL || receipt_base64_parse(base64, raw, sizeof(raw)) != 0)
        return NULL;
    return receipt_key_from_public(raw, sizeof(raw));
}

/* The server's key, from the well-known path: NULL after a message. */
static EVP_PKEY *fetch_public_key(const char *url, struct answer *a)
{
    if (get(url, "/.well-known/catraca-receipt-key", a) != 0)
        return NULL;
    cJSON *json = cJSON_ParseWithLength(a->text, a->length);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(json, "public_key");
    EVP_PKEY *public_key = cJSON_IsString(key) ? public_key_of(key->valuestring) : NULL;
    cJSON_Delete(json);
    if (public_key == NULL)
        fprintf(stderr, "catraca verify: the server's public key is unreadable\n");
    return public_key;
}

struct verification {
    const char *url;
    struct receipt receipt;
    EVP_PKEY *public_key;
    struct answer answer;
    struct receipt_proof proof;
    struct tree_head head;
};

/* Step 2: the receipt's leaf in the tree it signed. 0, 1 (failed) or 2 (network). */
static int check_inclusion(struct verification *v)
{
    const struct receipt *r = &v->receipt;
    char seq[LOG_SEQ_TEXT_MAX], path[512], message[160];
    log_seq_format(r->leaf.seq, seq);
    snprintf(path, sizeof(path), "/v1/events/%s/log/inclusion?seq=%s&tree_size=%" PRIu64,
             r->leaf.event, seq, r->tree_size);
    int status = get(v->url, path, &v->answer);
    if (status == 404 || status == 400) /* no such entry, or a log shorter than the receipt's */
        return fail("the published log has no entry at the receipt's seq (or no tree of its "
                    "size): the purchase was removed, or entries before it were");
    if (status != 0)
        return 2;
    if (receipt_proof_parse_json(v->answer.text, v->answer.length, &v->proof, message) != 0) {
        fprintf(stderr, "catraca verify: inclusion proof: %s\n", message);
        return 2;
    }
    merkle_hash leaf;
    log_tree_leaf_hash(&r->leaf, leaf);
    if (v->proof.leaf_index != r->leaf_index)
        return fail("the purchase is no longer at its place in the log: entries before it "
                    "were removed or inserted");
    if (!v->proof.has_leaf || memcmp(v->proof.leaf, leaf, MERKLE_HASH_BYTES) != 0)
        return fail("the log's entry at the receipt's seq is not this purchase (changed)");
    if (!merkle_verify_inclusion(leaf, r->leaf_index, r->tree_size,
                                 (const merkle_hash *)v->proof.path, v->proof.count, r->root))
        return fail("the log up to this purchase is not the one the receipt signed: an entry "
                    "before it was changed, inserted, removed or reordered");
    printf("ok: purchase %s is entry %" PRIu64 " (seq %s) of the log of %" PRIu64
           " entries the receipt signed\n",
           seq, r->leaf_index, seq, r->tree_size);
    return 0;
}

/* Step 3: today's signed head extends the receipt's tree. */
static int check_consistency(struct verification *v)
{
    const struct receipt *r = &v->receipt;
    char path[512], message[160];
    snprintf(path, sizeof(path), "/v1/events/%s/log", r->leaf.event);
    if (get(v->url, path, &v->answer) != 0)
        return 2;
    if (tree_head_parse_json(v->answer.text, v->answer.length, &v->head, message) != 0) {
        fprintf(stderr, "catraca verify: tree head: %s\n", message);
        return 2;
    }
    if (strcmp(v->head.event, r->leaf.event) != 0 ||
        !tree_head_signature_is_valid(&v->head, v->public_key))
        return fail("the log's current head is not signed by the receipt's key");
    if (v->head.tree_size < r->tree_size)
        return fail("the log is now shorter than when the receipt was issued: entries were "
                    "removed");
    snprintf(path, sizeof(path), "/v1/events/%s/log/consistency?first=%" PRIu64 "&second=%" PRIu64,
             r->leaf.event, r->tree_size, v->head.tree_size);
    if (get(v->url, path, &v->answer) != 0)
        return 2;
    if (receipt_proof_parse_json(v->answer.text, v->answer.length, &v->proof, message) != 0) {
        fprintf(stderr, "catraca verify: consistency proof: %s\n", message);
        return 2;
    }
    if (!merkle_verify_consistency(r->tree_size, v->head.tree_size, r->root, v->head.root,
                                   (const merkle_hash *)v->proof.path, v->proof.count))
        return fail("today's log does not extend the log the receipt signed: history was "
                    "rewritten");
    char root[2 * MERKLE_HASH_BYTES + 1];
    log_tree_hex(v->head.root, root);
    printf("ok: today's signed log (%" PRIu64 " entries, root %s) extends it: nothing before "
           "the purchase was inserted, removed, changed or reordered\n",
           v->head.tree_size, root);
    return 0;
}

static int usage(FILE *out)
{
    fprintf(out, "usage: catraca verify RECEIPT_FILE --url URL [--public-key BASE64]\n"
                 "  RECEIPT_FILE  the receipt, or the whole 202 body that carried it\n"
                 "  --url         the server, e.g. http://127.0.0.1:8080\n"
                 "  --public-key  the key to trust (saved when buying); default: the "
                 "server's /.well-known/catraca-receipt-key\n");
    return out == stdout ? 0 : 2;
}

int verify_main(int argc, char **argv)
{
    const char *file = NULL, *url = NULL, *pinned = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--public-key") == 0 && i + 1 < argc)
            pinned = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        else if (argv[i][0] != '-' && file == NULL)
            file = argv[i];
        else
            return usage(stderr);
    }
    if (file == NULL || url == NULL)
        return usage(stderr);
    struct verification *v = calloc(1, sizeof(*v));
    char *text = malloc(RECEIPT_TEXT_MAX + 1);
    size_t length = 0;
    char message[160];
    int result = 2;
    if (v == NULL || text == NULL || read_file(file, text, RECEIPT_TEXT_MAX + 1, &length) != 0)
        goto done;
    v->url = url;
    if (receipt_parse_json(text, length, &v->receipt, message) != 0) {
        printf("FAIL: %s is not a receipt: %s\n", file, message);
        result = 1;
        goto done;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    v->public_key = pinned != NULL ? public_key_of(pinned) : fetch_public_key(url, &v->answer);
    if (v->public_key == NULL) {
        if (pinned != NULL)
            fprintf(stderr, "catraca verify: --public-key: base64 of 32 bytes expected\n");
        goto done_curl;
    }
    if (!receipt_signature_is_valid(&v->receipt, v->public_key)) {
        result = fail("the receipt's signature does not match its content and the server's "
                      "key: it is forged or altered");
        goto done_curl;
    }
    printf("ok: the receipt is signed by the server's key\n");
    result = check_inclusion(v);
    if (result == 0)
        result = check_consistency(v);
    if (result == 0)
        printf("VERIFIED\n");
done_curl:
    EVP_PKEY_free(v->public_key);
    curl_global_cleanup();
done:
    free(text);
    free(v);
    return result;
}
