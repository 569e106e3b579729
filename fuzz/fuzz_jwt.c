/* libFuzzer: JWT verification of arbitrary tokens never crashes and never accepts a forgery. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t secret[] = "fuzz-secret";
    char token[JWT_TOKEN_MAX + 2];
    size_t n = size < sizeof(token) - 1 ? size : sizeof(token) - 1;
    memcpy(token, data, n);
    token[n] = '\0';
    struct jwt_claims claims;
    int error = jwt_verify(secret, sizeof(secret) - 1, token, 1700000000, &claims);
    /* A fuzzer cannot forge HMAC-SHA256: an accepted token must be one we could sign. */
    if (error == 0) {
        char again[2048];
        static const char *const roles[] = {"buyer", "payments", "admin"};
        if (jwt_sign(secret, sizeof(secret) - 1, claims.subject, roles[claims.role],
                     claims.expires_s, again, sizeof(again)) < 0)
            abort();
    }
    return 0;
}
