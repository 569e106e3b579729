/* jwt.c - contract in jwt.h. */
#include "gateway/jwt.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gateway/api_json.h"

/* base64url without padding -> bytes, through OpenSSL's standard decoder. */
static int base64url_decode(const char *in, size_t length, uint8_t *out, size_t out_size)
{
    char standard[JWT_TOKEN_MAX + 4];
    if (length % 4 == 1 || length + 4 > sizeof(standard))
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < length; i++) {
        char c = in[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return -1;
        standard[n++] = c;
    }
    size_t padding = (4 - n % 4) % 4;
    for (size_t i = 0; i < padding; i++)
        standard[n++] = '=';
    if (n / 4 * 3 > out_size)
        return -1;
    int decoded = EVP_DecodeBlock(out, (const unsigned char *)standard, (int)n);
    return decoded < 0 ? -1 : decoded - (int)padding;
}

static size_t base64url_encode(const uint8_t *in, size_t length, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)length);
    size_t size = 0;
    for (int i = 0; i < n; i++) {
        char c = out[i];
        if (c == '=')
            break;
        out[size++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[size] = '\0';
    return size;
}

static cJSON *decode_json(const char *part, size_t length)
{
    uint8_t text[JWT_TOKEN_MAX];
    int n = base64url_decode(part, length, text, sizeof(text) - 1);
    if (n < 0)
        return NULL;
    return api_json_parse_object((const char *)text, (size_t)n);
}

static int check_header(const char *part, size_t length)
{
    cJSON *header = decode_json(part, length);
    if (header == NULL)
        return JWT_E_MALFORMED;
    const cJSON *alg = NULL, *typ = NULL;
    int error = 0;
    if (!api_json_member(header, "alg", &alg) || !api_json_member(header, "typ", &typ))
        error = JWT_E_MALFORMED;
    else if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
        error = JWT_E_ALGORITHM;
    else if (typ != NULL && (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0))
        error = JWT_E_MALFORMED;
    cJSON_Delete(header);
    return error;
}

/*
 * HMAC-SHA256 through one EVP_MAC_CTX per thread, keyed on each call. HMAC()
 * is EVP_Q_mac in OpenSSL 3: it fetches the algorithm and builds a context
 * every time, which callgrind put at a fifth of a purchase's instructions.
 * The context lives as long as its thread (one per HTTP loop). false on error.
 */
static bool hmac_sha256(const uint8_t *key, size_t key_length, const void *data, size_t length,
                        uint8_t out[32])
{
    static _Thread_local EVP_MAC_CTX *context;
    if (context == NULL) {
        EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
        context = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
        EVP_MAC_free(mac); /* the context keeps its own reference */
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        if (context != NULL && EVP_MAC_CTX_set_params(context, params) != 1) {
            EVP_MAC_CTX_free(context);
            context = NULL;
        }
        if (context == NULL)
            return false;
    }
    size_t written = 0;
    return EVP_MAC_init(context, key, key_length, NULL) == 1 &&
           EVP_MAC_update(context, data, length) == 1 &&
           EVP_MAC_final(context, out, &written, 32) == 1 && written == 32;
}

static int check_signature(const uint8_t *secret, size_t secret_length, const char *token,
                           size_t signed_length, const char *signature, size_t signature_length)
{
    uint8_t expected[32], given[64];
    size_t expected_length = sizeof(expected);
    if (!hmac_sha256(secret, secret_length, token, signed_length, expected))
        return JWT_E_SIGNATURE;
    int n = base64url_decode(signature, signature_length, given, sizeof(given));
    if (n != (int)expected_length || CRYPTO_memcmp(expected, given, expected_length) != 0)
        return JWT_E_SIGNATURE;
    return 0;
}

static int parse_role(const cJSON *claims)
{
    const cJSON *role = NULL;
    if (!api_json_member(claims, "role", &role))
        return -1;
    if (role == NULL)
        return JWT_ROLE_BUYER;
    if (!cJSON_IsString(role))
        return -1;
    static const char *const names[] = {"buyer", "payments", "admin"};
    for (int i = 0; i < 3; i++)
        if (strcmp(role->valuestring, names[i]) == 0)
            return i;
    return -1;
}

/* exp and nbf: a number of seconds a double holds exactly, so expires_s never overflows. */
static bool is_numeric_date(const cJSON *item)
{
    const double limit = (double)(INT64_C(1) << 53);
    return cJSON_IsNumber(item) && item->valuedouble >= -limit && item->valuedouble <= limit;
}

static int check_claims(const char *part, size_t length, int64_t now_s, struct jwt_claims *out)
{
    cJSON *claims = decode_json(part, length);
    if (claims == NULL)
        return JWT_E_MALFORMED;
    const cJSON *sub = NULL, *exp = NULL, *nbf = NULL;
    bool is_unique = api_json_member(claims, "sub", &sub) && api_json_member(claims, "exp", &exp) &&
                     api_json_member(claims, "nbf", &nbf);
    int role = parse_role(claims);
    int error = 0;
    if (!is_unique || !cJSON_IsString(sub) || !api_json_is_id(sub->valuestring) ||
        !is_numeric_date(exp) || role < 0 || (nbf != NULL && !is_numeric_date(nbf)))
        error = JWT_E_CLAIMS;
    else if (exp->valuedouble <= (double)now_s || (nbf != NULL && nbf->valuedouble > (double)now_s))
        error = JWT_E_EXPIRED;
    if (error == 0) {
        snprintf(out->subject, sizeof(out->subject), "%s", sub->valuestring);
        out->role = role;
        out->expires_s = (int64_t)exp->valuedouble;
    }
    cJSON_Delete(claims);
    return error;
}

int jwt_verify(const uint8_t *secret, size_t secret_length, const char *token, int64_t now_s,
               struct jwt_claims *out)
{
    size_t length = strnlen(token, JWT_TOKEN_MAX + 1);
    if (length > JWT_TOKEN_MAX)
        return JWT_E_MALFORMED;
    const char *dot1 = memchr(token, '.', length);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', length - (size_t)(dot1 + 1 - token)) : NULL;
    if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', length - (size_t)(dot2 + 1 - token)))
        return JWT_E_MALFORMED;
    int error = check_header(token, (size_t)(dot1 - token));
    if (error == 0)
        error = check_signature(secret, secret_length, token, (size_t)(dot2 - token), dot2 + 1,
                                length - (size_t)(dot2 + 1 - token));
    if (error == 0)
        error = check_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), now_s, out);
    return error;
}

const char *jwt_strerror(int error)
{
    switch (error) {
    case 0:
        return "valid";
    case JWT_E_MALFORMED:
        return "malformed token";
    case JWT_E_ALGORITHM:
        return "only HS256 tokens are accepted";
    case JWT_E_SIGNATURE:
        return "bad signature";
    case JWT_E_EXPIRED:
        return "token expired or not yet valid";
    default:
        return "token claims missing or invalid (sub, exp, role)";
    }
}

int jwt_sign(const uint8_t *secret, size_t secret_length, const char *subject, const char *role,
             int64_t expires_s, char *out, size_t out_size)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char claims[256];
    int claims_length =
        snprintf(claims, sizeof(claims), "{\"sub\":\"%s\",\"role\":\"%s\",\"exp\":%lld}", subject,
                 role, (long long)expires_s);
    if (claims_length < 0 || (size_t)claims_length >= sizeof(claims) || out_size < 1024)
        return -1;
    size_t n = base64url_encode((const uint8_t *)header, sizeof(header) - 1, out);
    out[n++] = '.';
    n += base64url_encode((const uint8_t *)claims, (size_t)claims_length, out + n);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), secret, (int)secret_length, (const unsigned char *)out, n, mac, &mac_length);
    out[n++] = '.';
    n += base64url_encode(mac, mac_length, out + n);
    return (int)n;
}
