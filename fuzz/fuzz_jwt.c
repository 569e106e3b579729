/*
 * libFuzzer: JWT verification never crashes and never accepts a forgery. The input is tried
 * three ways: as a token; as the claims, and as the header, of a token signed with the secret
 * (an issuer's own words, the only way past the signature to the claims). What is accepted
 * holds no NUL nor control character (json_oracle.h) and names a customer by an id.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/api_json.h"
#include "gateway/jwt.h"
#include "json_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t secret[] = "fuzz-secret";
#define NOW_S 1700000000
#define PART_MAX 1500 /* two parts of 1500 bytes in base64 stay under JWT_TOKEN_MAX */

static size_t base64url(const uint8_t *in, size_t length, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)length);
    size_t size = 0;
    for (int i = 0; i < n && out[i] != '='; i++)
        out[size++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[size] = '\0';
    return size;
}

static int verify_signed(const uint8_t *header, size_t header_length, const uint8_t *claims,
                         size_t claims_length, struct jwt_claims *out)
{
    static char token[JWT_TOKEN_MAX + 1];
    size_t n = base64url(header, header_length, token);
    token[n++] = '.';
    n += base64url(claims, claims_length, token + n);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), secret, sizeof(secret) - 1, (const unsigned char *)token, n, mac,
         &mac_length);
    token[n++] = '.';
    base64url(mac, mac_length, token + n);
    return jwt_verify(secret, sizeof(secret) - 1, token, NOW_S, out);
}

static void check_accepted(const struct jwt_claims *claims)
{
    static const char *const roles[] = {"buyer", "payments", "admin"};
    char again[2048];
    if (!api_json_is_id(claims->subject) || claims->role < 0 || claims->role > 2 ||
        claims->expires_s <= NOW_S)
        abort();
    if (jwt_sign(secret, sizeof(secret) - 1, claims->subject, roles[claims->role],
                 claims->expires_s, again, sizeof(again)) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    static const char claims_text[] = "{\"sub\":\"c42\",\"exp\":1800000000}";
    char token[JWT_TOKEN_MAX + 2];
    size_t n = size < sizeof(token) - 1 ? size : sizeof(token) - 1;
    memcpy(token, data, n);
    token[n] = '\0';
    struct jwt_claims claims;
    /* A fuzzer cannot forge HMAC-SHA256: an accepted token must be one we could sign. */
    if (jwt_verify(secret, sizeof(secret) - 1, token, NOW_S, &claims) == 0)
        check_accepted(&claims);
    if (size > PART_MAX)
        return 0;
    bool has_control = json_oracle_has_control(data, size);
    if (verify_signed((const uint8_t *)header, sizeof(header) - 1, data, size, &claims) == 0) {
        if (has_control)
            abort();
        check_accepted(&claims);
    }
    if (verify_signed(data, size, (const uint8_t *)claims_text, sizeof(claims_text) - 1, &claims) ==
        0) {
        if (has_control || strcmp(claims.subject, "c42") != 0)
            abort();
        check_accepted(&claims);
    }
    return 0;
}
