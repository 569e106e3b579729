/*
 * token_cache.h - bearer tokens already verified, remembered until they
 * expire, so a buyer's requests after the first cost a hash and a compare
 * instead of an HMAC and two JSON parses (the HMAC was a fifth of a
 * purchase's instructions).
 *
 * A fixed table of slots_max entries (about 100 bytes each), sized at init
 * and never grown; a new token takes the slot its hash names (the previous
 * one is forgotten and will simply be verified again). A slot keeps a 128-bit
 * keyed hash of the token (two SipHash-2-4 with random keys), not the token:
 * handing one caller another's claims would take a 128-bit collision under
 * keys the caller never sees. Tokens longer than TOKEN_CACHE_TOKEN_MAX are
 * not cached. One table per thread: no locks.
 */
#ifndef CATRACA_GATEWAY_TOKEN_CACHE_H
#define CATRACA_GATEWAY_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/jwt.h"

#define TOKEN_CACHE_TOKEN_MAX JWT_TOKEN_MAX

struct token_cache_slot;

/* A token's 128-bit keyed hash: computed once by token_cache_find, reused by token_cache_add. */
struct token_cache_key {
    uint64_t hash[2];
    bool is_cacheable; /* false: empty or longer than TOKEN_CACHE_TOKEN_MAX */
};

struct token_cache {
    struct token_cache_slot *slots;
    uint32_t slots_max;
    uint8_t keys[2][16]; /* SipHash keys, random per table: slots cannot be aimed at */
};

/* 0, or CATRACA_E_NOMEM / CATRACA_E_INVALID (slots_max 0). */
int token_cache_init(struct token_cache *cache, uint32_t slots_max);
void token_cache_destroy(struct token_cache *cache);

/* True, with *claims, when exactly this token was verified and expires after now_s; *key is
 * set either way, for token_cache_add. */
bool token_cache_find(struct token_cache *cache, const char *token, int64_t now_s,
                      struct jwt_claims *claims, struct token_cache_key *key);
/* Remembers the token of *key, which jwt_verify accepted, with its claims. */
void token_cache_add(struct token_cache *cache, const struct token_cache_key *key,
                     const struct jwt_claims *claims);

#endif
