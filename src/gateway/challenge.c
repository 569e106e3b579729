/* challenge.c - contract in challenge.h. */
#include "gateway/challenge.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "gateway/api_json.h"

#define PAYLOAD_MAX 2048
#define PROBE_MAX 16

static void hex(const uint8_t *in, size_t length, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * length] = '\0';
}

/* hex(SHA-256(salt || number)) */
static void solve_hash(const char *salt, uint64_t number, char out[65])
{
    char text[512];
    int n = snprintf(text, sizeof(text), "%s%llu", salt, (unsigned long long)number);
    uint8_t digest[32];
    EVP_Digest(text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0, digest, NULL, EVP_sha256(),
               NULL);
    hex(digest, 32, out);
}

static void sign(const struct challenge *c, const char *challenge_hex, char out[65])
{
    uint8_t mac[32];
    unsigned int length = 0;
    HMAC(EVP_sha256(), c->key, sizeof(c->key), (const unsigned char *)challenge_hex,
         strlen(challenge_hex), mac, &length);
    hex(mac, 32, out);
}

void challenge_share_key(struct challenge *c, const uint8_t *secret, size_t length)
{
    static const char purpose[] = "catraca challenge signing key v1";
    unsigned int key_length = 0;
    HMAC(EVP_sha256(), secret, (int)length, (const unsigned char *)purpose, sizeof(purpose) - 1,
         c->key, &key_length);
}

int challenge_init(struct challenge *c, uint32_t max_number, int64_t ttl_s, uint32_t replay_max)
{
    memset(c, 0, sizeof(*c));
    if (RAND_bytes(c->key, sizeof(c->key)) != 1)
        return CATRACA_E_IO;
    c->max_number = max_number;
    c->ttl_s = ttl_s;
    uint32_t size = 64;
    while (size < 2 * replay_max)
        size *= 2;
    c->seen = calloc(size, sizeof(*c->seen));
    if (c->seen == NULL)
        return CATRACA_E_NOMEM;
    c->seen_mask = size - 1;
    pthread_mutex_init(&c->mutex, NULL);
    return 0;
}

void challenge_destroy(struct challenge *c)
{
    if (c->seen == NULL)
        return;
    free(c->seen);
    c->seen = NULL;
    pthread_mutex_destroy(&c->mutex);
}

cJSON *challenge_create(struct challenge *c, int64_t now_s)
{
    uint8_t random[12];
    uint32_t number = 0;
    if (RAND_bytes(random, sizeof(random)) != 1 ||
        RAND_bytes((uint8_t *)&number, sizeof(number)) != 1)
        return NULL;
    char salt_hex[25], salt[96], challenge_hex[65], signature[65];
    hex(random, sizeof(random), salt_hex);
    snprintf(salt, sizeof(salt), "%s?expires=%lld", salt_hex, (long long)(now_s + c->ttl_s));
    solve_hash(salt, number % (c->max_number + 1), challenge_hex);
    sign(c, challenge_hex, signature);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "algorithm", "SHA-256");
    cJSON_AddStringToObject(json, "challenge", challenge_hex);
    cJSON_AddNumberToObject(json, "maxnumber", c->max_number);
    cJSON_AddStringToObject(json, "salt", salt);
    cJSON_AddStringToObject(json, "signature", signature);
    return json;
}

/* Remembers a solved challenge until it expires; refuses a second use. */
static int remember(struct challenge *c, const char *challenge_hex, int64_t expires_s,
                    int64_t now_s)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = challenge_hex; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h |= 1;
    pthread_mutex_lock(&c->mutex);
    int error = CHALLENGE_E_BUSY;
    struct challenge_seen *free_slot = NULL;
    for (uint32_t i = 0; i < PROBE_MAX; i++) {
        struct challenge_seen *slot = &c->seen[(h + i) & c->seen_mask];
        if (slot->hash == h && slot->expires_s >= now_s) {
            error = CHALLENGE_E_REPLAYED;
            free_slot = NULL;
            break;
        }
        if (free_slot == NULL && (slot->hash == 0 || slot->expires_s < now_s))
            free_slot = slot; /* empty, or expired: reusable */
    }
    if (free_slot != NULL) {
        *free_slot = (struct challenge_seen){.hash = h, .expires_s = expires_s};
        error = 0;
    }
    pthread_mutex_unlock(&c->mutex);
    return error;
}

static int decode_payload(const char *payload, cJSON **out)
{
    size_t length = strnlen(payload, PAYLOAD_MAX + 1);
    uint8_t decoded[PAYLOAD_MAX];
    if (length == 0 || length > PAYLOAD_MAX || length % 4 != 0)
        return CHALLENGE_E_MALFORMED;
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)payload, (int)length);
    if (n < 0)
        return CHALLENGE_E_MALFORMED;
    while (n > 0 && decoded[n - 1] == '\0')
        n--; /* the decoder counts '=' padding as zero bytes */
    *out = api_json_parse_object((const char *)decoded, (size_t)n); /* the strict reading */
    return *out != NULL ? 0 : CHALLENGE_E_MALFORMED;
}

int challenge_check(struct challenge *c, const char *payload, int64_t now_s, char challenge_hex[65],
                    int64_t *expires_at_s)
{
    cJSON *json = NULL;
    int error = decode_payload(payload, &json);
    const cJSON *algorithm = cJSON_GetObjectItemCaseSensitive(json, "algorithm");
    const cJSON *challenge = cJSON_GetObjectItemCaseSensitive(json, "challenge");
    const cJSON *number = cJSON_GetObjectItemCaseSensitive(json, "number");
    const cJSON *salt = cJSON_GetObjectItemCaseSensitive(json, "salt");
    const cJSON *signature = cJSON_GetObjectItemCaseSensitive(json, "signature");
    if (error == 0 && (!cJSON_IsString(algorithm) || strcmp(algorithm->valuestring, "SHA-256") ||
                       !cJSON_IsString(challenge) || strlen(challenge->valuestring) != 64 ||
                       !cJSON_IsNumber(number) || number->valuedouble < 0 ||
                       number->valuedouble > c->max_number || !cJSON_IsString(salt) ||
                       strlen(salt->valuestring) > 200 || !cJSON_IsString(signature) ||
                       strlen(signature->valuestring) != 64))
        error = CHALLENGE_E_MALFORMED;
    char expected[65];
    if (error == 0) {
        sign(c, challenge->valuestring, expected);
        if (CRYPTO_memcmp(expected, signature->valuestring, 64) != 0)
            error = CHALLENGE_E_SIGNATURE;
    }
    if (error == 0) {
        solve_hash(salt->valuestring, (uint64_t)number->valuedouble, expected);
        if (CRYPTO_memcmp(expected, challenge->valuestring, 64) != 0)
            error = CHALLENGE_E_WRONG;
    }
    const char *expires = error == 0 ? strstr(salt->valuestring, "?expires=") : NULL;
    long long expires_s = expires ? atoll(expires + 9) : 0;
    if (error == 0 && expires_s < now_s)
        error = CHALLENGE_E_EXPIRED;
    if (error == 0) {
        memcpy(challenge_hex, challenge->valuestring, 65);
        *expires_at_s = expires_s;
    }
    cJSON_Delete(json);
    return error;
}

int challenge_verify(struct challenge *c, const char *payload, int64_t now_s)
{
    char challenge_hex[65];
    int64_t expires_s = 0;
    int error = challenge_check(c, payload, now_s, challenge_hex, &expires_s);
    return error != 0 ? error : remember(c, challenge_hex, expires_s, now_s);
}
