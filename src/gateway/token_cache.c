/* token_cache.c - contract in token_cache.h. */
#include "gateway/token_cache.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/siphash.h"

struct token_cache_slot {
    uint64_t hash[2]; /* {0, 0}: empty */
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
    if (RAND_bytes(&cache->keys[0][0], sizeof(cache->keys)) != 1) {
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

static struct token_cache_slot *slot_of(struct token_cache *cache,
                                        const struct token_cache_key *key)
{
    return &cache->slots[key->hash[0] % cache->slots_max];
}

bool token_cache_find(struct token_cache *cache, const char *token, int64_t now_s,
                      struct jwt_claims *claims, struct token_cache_key *key)
{
    size_t length = strnlen(token, TOKEN_CACHE_TOKEN_MAX + 1);
    key->is_cacheable = length > 0 && length <= TOKEN_CACHE_TOKEN_MAX;
    if (!key->is_cacheable)
        return false;
    key->hash[0] = siphash24(cache->keys[0], token, length);
    key->hash[1] = siphash24(cache->keys[1], token, length) | 1; /* never the empty mark */
    struct token_cache_slot *slot = slot_of(cache, key);
    bool is_hit = slot->hash[0] == key->hash[0] && slot->hash[1] == key->hash[1] &&
                  slot->claims.expires_s > now_s;
    if (is_hit)
        *claims = slot->claims;
    return is_hit;
}

void token_cache_add(struct token_cache *cache, const struct token_cache_key *key,
                     const struct jwt_claims *claims)
{
    if (!key->is_cacheable)
        return;
    assert(key->hash[1] != 0);
    struct token_cache_slot *slot = slot_of(cache, key);
    slot->hash[0] = key->hash[0];
    slot->hash[1] = key->hash[1];
    slot->claims = *claims;
}
