/*
 * challenge.h - ALTCHA-compatible proof of work (https://altcha.org): the
 * server signs a challenge = SHA-256(salt + secret number); the client finds
 * the number by brute force (up to maxnumber tries) and sends back base64 of
 * {"algorithm","challenge","number","salt","signature"}. The salt carries
 * "?expires=<unix seconds>". Each solution is accepted once: solved
 * challenges are remembered until they expire, in a table of fixed size.
 */
#ifndef CATRACA_GATEWAY_CHALLENGE_H
#define CATRACA_GATEWAY_CHALLENGE_H

#include <pthread.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum challenge_error {
    CHALLENGE_E_MALFORMED = -1, /* not base64 JSON of the expected fields */
    CHALLENGE_E_SIGNATURE = -2, /* not a challenge this server signed */
    CHALLENGE_E_WRONG = -3,     /* the number does not solve it */
    CHALLENGE_E_EXPIRED = -4,
    CHALLENGE_E_REPLAYED = -5, /* solved before */
    CHALLENGE_E_BUSY = -6,     /* the replay table is full of live entries: retry later */
};

struct challenge_seen {
    uint64_t hash;
    int64_t expires_s;
};

struct challenge {
    uint8_t key[32];
    uint32_t max_number;
    int64_t ttl_s;
    pthread_mutex_t mutex;
    struct challenge_seen *seen;
    uint32_t seen_mask;
};

int challenge_init(struct challenge *challenge, uint32_t max_number, int64_t ttl_s,
                   uint32_t replay_max);
/*
 * Derives the signing key from a secret every gateway shares (the JWT secret),
 * so a challenge issued by one gateway verifies on any other. Without it the
 * key is random per process. The replay set is per process (challenge_verify)
 * unless the caller keeps its own (challenge_check).
 */
void challenge_share_key(struct challenge *challenge, const uint8_t *secret, size_t length);
void challenge_destroy(struct challenge *challenge);
/* A new challenge as the JSON object GET /v1/challenge answers (caller deletes). */
cJSON *challenge_create(struct challenge *challenge, int64_t now_s);
/* 0, or a negative enum challenge_error. Thread-safe. */
int challenge_verify(struct challenge *challenge, const char *payload_base64, int64_t now_s);
/*
 * challenge_verify without the replay set: 0 with the challenge's 64 hex digits (NUL-ended)
 * and its expiry (unix seconds), or a negative enum challenge_error (never _REPLAYED or
 * _BUSY). For a replay set kept elsewhere (gateway/limits_redis.h: shared by gateways).
 */
int challenge_check(struct challenge *challenge, const char *payload_base64, int64_t now_s,
                    char challenge_hex[65], int64_t *expires_at_s);

#endif
