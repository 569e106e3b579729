/*
 * jwt.h - HS256 JSON Web Tokens: verification (OpenSSL HMAC, constant-time
 * compare; cJSON for the claims) and signing for demo tokens.
 * Only "alg":"HS256" is accepted; "exp" is required; "sub" must be an id.
 * The header and the claims are read by api_json_parse_object: a NUL or control character
 * in any of their strings, or text after the object, makes the token malformed.
 */
#ifndef CATRACA_GATEWAY_JWT_H
#define CATRACA_GATEWAY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"

#define JWT_TOKEN_MAX 4096

enum jwt_role { JWT_ROLE_BUYER = 0, JWT_ROLE_PAYMENTS = 1, JWT_ROLE_ADMIN = 2 };

enum jwt_error {
    JWT_E_MALFORMED = -1, /* not three base64url parts of strict JSON, or too long */
    JWT_E_ALGORITHM = -2, /* alg is not HS256 */
    JWT_E_SIGNATURE = -3,
    JWT_E_EXPIRED = -4, /* exp <= now, or nbf > now */
    JWT_E_CLAIMS = -5,  /* exp missing, sub missing or not an id, unknown role, a claim given
                           twice, exp or nbf beyond +-2^53 s */
};

struct jwt_claims {
    char subject[CATRACA_ID_MAX + 1];
    int role; /* enum jwt_role */
    int64_t expires_s;
};

int jwt_verify(const uint8_t *secret, size_t secret_length, const char *token, int64_t now_s,
               struct jwt_claims *out);
const char *jwt_strerror(int error);
/* Writes a token; returns its length, or -1 when out_size is too small. */
int jwt_sign(const uint8_t *secret, size_t secret_length, const char *subject, const char *role,
             int64_t expires_s, char *out, size_t out_size);

#endif
