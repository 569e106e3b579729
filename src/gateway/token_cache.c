/* token_cache.c - contract in token_cache.h. */
#include "gateway/token_cache.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/siphash.h"

struct token_cache_slot {
    uint16_t length; /* 0: empty */
    char token[TOKEN_CACHE_TOKEN_MAX];
    struct jwt_claims claims;
};

int token_cache_init(struct token_cache *cache, uint32_t slots_max)
{
    memset(cache, 0, sizeof(*cache));
    if (slots_max == 0)
        return CATRACA_E_INVALID;
    cache->slots = calloc(slots_max, sizeof(*cache->slots));
    if (cache->slots == NULL)
        return CATRACA_E_NOMEM;
    cache->slots_max = slots_max;
    if (RAND_bytes(cache->key, sizeof(cache->key)) != 1) {
        free(cache->slots);
        cache->slots = NULL;
        return CATRACA_E_IO;
    }
    return 0;
}

void token_cache_destroy(struct token_cache *cache)
{
    free(cache->slots);
    cache->slots = NULL;
}

static struct token_cache_slot *slot_of(struct token_cache *cache, const char *token,
                                        size_t length)
{
    uint64_t hash = siphash24(cache->key, token, length);
    return &cache->slots[hash % cache->slots_max];
}

bool token_cache_find(struct token_cache *cache, const char *token, int64_t now_s,
                      struct jwt_claims *claims)
{
    size_t length = strlen(token);
    if (length == 0 || length > TOKEN_CACHE_TOKEN_MAX)
        return false;
    struct token_cache_slot *slot = slot_of(cache, token, length);
    bool is_hit = slot->length == length && memcmp(slot->token, token, length) == 0 &&
                  slot->claims.expires_s > now_s;
    if (is_hit)
        *claims = slot->claims;
    if (is_hit)
        cache->hits++;
    else
        cache->misses++;
    return is_hit;
}

void token_cache_add(struct token_cache *cache, const char *token, const struct jwt_claims *claims)
{
    size_t length = strlen(token);
    if (length == 0 || length > TOKEN_CACHE_TOKEN_MAX)
        return;
    struct token_cache_slot *slot = slot_of(cache, token, length);
    memcpy(slot->token, token, length);
    slot->length = (uint16_t)length;
    slot->claims = *claims;
    assert(slot->length == length);
}
