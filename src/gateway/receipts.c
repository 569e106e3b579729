/* receipts.c - the Merkle tree of each event's log, kept from the log; contract in receipts.h. */
#include "gateway/receipts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Entries read from the log per call while catching up (the reader may return fewer). */
#define READ_CHUNK 512

struct event_tree {
    char event[CATRACA_ID_MAX + 1]; /* "" when the slot is free */
    struct merkle_tree tree;
    struct log_seq *seqs; /* seqs[i]: the log position of leaf i, increasing */
    uint64_t seq_capacity;
    uint64_t last_used;
    /* The last head signed (has_head): a head is signed again only once the log grew, so
     * polling GET /v1/events/{event}/log costs no signature while nothing changes. */
    bool has_head;
    struct tree_head head;
};

struct receipts {
    struct receipts_config config;
    struct receipt_signing_key signing_key; /* of config.key */
    pthread_mutex_t mutex;
    struct catraca_log log;
    bool has_log;
    struct event_tree *trees; /* events_max */
    uint64_t use_clock;
    struct log_entry entries[READ_CHUNK];
};

int receipts_start(const struct receipts_config *config, struct receipts **out)
{
    if (config->key == NULL || config->events_max < 1 || config->leaves_max < 1 ||
        config->open_log == NULL)
        return CATRACA_E_INVALID;
    struct receipts *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CATRACA_E_NOMEM;
    if (receipt_signing_key_from(config->key, &r->signing_key) != 0) {
        free(r);
        return CATRACA_E_INVALID;
    }
    r->trees = calloc(config->events_max, sizeof(*r->trees));
    if (r->trees == NULL) {
        receipt_signing_key_clear(&r->signing_key);
        free(r);
        return CATRACA_E_NOMEM;
    }
    r->config = *config;
    pthread_mutex_init(&r->mutex, NULL);
    *out = r;
    return 0;
}

static void tree_clear(struct event_tree *t)
{
    merkle_tree_free(&t->tree);
    free(t->seqs);
    memset(t, 0, sizeof(*t));
}

void receipts_stop(struct receipts *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < r->config.events_max; i++)
        tree_clear(&r->trees[i]);
    if (r->has_log)
        r->log.ops->close(r->log.context);
    EVP_PKEY_free(r->config.key);
    receipt_signing_key_clear(&r->signing_key);
    pthread_mutex_destroy(&r->mutex);
    free(r->trees);
    free(r);
}

void receipts_public_key(const struct receipts *r, uint8_t out[RECEIPT_PUBLIC_KEY_BYTES])
{
    if (receipt_key_public(r->config.key, out) != 0)
        memset(out, 0, RECEIPT_PUBLIC_KEY_BYTES);
}

/* ---- the cache (under the mutex) --------------------------------------------------------- */

/* The event's tree slot: the cached one, else a free or the least recently used one. */
static struct event_tree *tree_of(struct receipts *r, const char *event)
{
    struct event_tree *victim = &r->trees[0];
    for (uint32_t i = 0; i < r->config.events_max; i++) {
        struct event_tree *t = &r->trees[i];
        if (strcmp(t->event, event) == 0) {
            t->last_used = ++r->use_clock;
            return t;
        }
        if (victim->event[0] != '\0' && (t->event[0] == '\0' || t->last_used < victim->last_used))
            victim = t;
    }
    tree_clear(victim);
    snprintf(victim->event, sizeof(victim->event), "%s", event);
    merkle_tree_init(&victim->tree, r->config.leaves_max);
    victim->last_used = ++r->use_clock;
    return victim;
}

static struct log_seq last_seq(const struct event_tree *t)
{
    return t->tree.size == 0 ? (struct log_seq){0, 0} : t->seqs[t->tree.size - 1];
}

static int add_leaf(struct receipts *r, struct event_tree *t, const struct log_entry *entry)
{
    if (t->tree.size == t->seq_capacity) {
        uint64_t capacity = t->seq_capacity ? 2 * t->seq_capacity : 256;
        struct log_seq *grown = realloc(t->seqs, capacity * sizeof(*grown));
        if (grown == NULL)
            return CATRACA_E_NOMEM;
        t->seqs = grown;
        t->seq_capacity = capacity;
    }
    struct log_tree_leaf leaf;
    log_tree_leaf_of_entry(t->event, entry->seq, entry->time_ms, entry->record,
                           entry->record_length, &leaf);
    merkle_hash hash;
    log_tree_leaf_hash(&leaf, hash);
    int error = merkle_tree_append(&t->tree, hash);
    if (error != 0)
        return error == -1 ? CATRACA_E_TOO_LARGE : CATRACA_E_NOMEM;
    t->seqs[t->tree.size - 1] = entry->seq;
    (void)r;
    return 0;
}

/*
 * Reads the event's log after the last cached leaf: up to and including `until`
 * (has_until), else to its end. Leaves the cache as far as it got on error.
 */
static int catch_up(struct receipts *r, struct event_tree *t, bool has_until, struct log_seq until)
{
    if (!r->has_log) {
        if (r->config.open_log(r->config.context, &r->log) != 0)
            return CATRACA_E_UNAVAILABLE;
        r->has_log = true;
    }
    for (;;) {
        if (has_until && t->tree.size > 0 && log_seq_compare(last_seq(t), until) >= 0)
            return 0;
        size_t count = 0;
        int error =
            r->log.ops->read(r->log.context, t->event, last_seq(t), r->entries, READ_CHUNK, &count);
        if (error != 0)
            return CATRACA_E_UNAVAILABLE;
        for (size_t i = 0; i < count; i++)
            if ((error = add_leaf(r, t, &r->entries[i])) != 0)
                return error;
        if (count == 0)
            return 0; /* the end of the log (for `until`: an entry that is not there) */
    }
}

/* The index of the leaf at seq, or -1. */
static int64_t index_of_seq(const struct event_tree *t, struct log_seq seq)
{
    uint64_t lo = 0, hi = t->tree.size;
    while (lo < hi) {
        uint64_t middle = lo + (hi - lo) / 2;
        int order = log_seq_compare(t->seqs[middle], seq);
        if (order == 0)
            return (int64_t)middle;
        if (order < 0)
            lo = middle + 1;
        else
            hi = middle;
    }
    return -1;
}

/* The index of the first leaf with this hash, or -1: a scan (a leaf hash is looked up only by
 * an auditor holding no seq; 1 M leaves take a few milliseconds). */
static int64_t index_of_leaf(const struct event_tree *t, const merkle_hash leaf)
{
    for (uint64_t i = 0; i < t->tree.size; i++)
        if (memcmp(merkle_tree_leaf(&t->tree, i), leaf, MERKLE_HASH_BYTES) == 0)
            return (int64_t)i;
    return -1;
}

/* ---- the contract ------------------------------------------------------------------------ */

const struct receipt_signing_key *receipts_signing_key(const struct receipts *r)
{
    return &r->signing_key;
}

int receipts_issue(struct receipts *r, const struct log_append_item *item, struct receipt *out)
{
    int error = receipts_place(r, item, out);
    return error == 0 ? receipt_sign(out, &r->signing_key) : error;
}

int receipts_place(struct receipts *r, const struct log_append_item *item, struct receipt *out)
{
    memset(out, 0, sizeof(*out));
    log_tree_leaf_of_entry(item->event, item->seq, item->time_ms, item->record, item->record_length,
                           &out->leaf);
    merkle_hash expected;
    log_tree_leaf_hash(&out->leaf, expected);
    pthread_mutex_lock(&r->mutex);
    struct event_tree *t = tree_of(r, item->event);
    int error = catch_up(r, t, true, item->seq);
    int64_t index = error == 0 ? index_of_seq(t, item->seq) : -1;
    if (error == 0 && (index < 0 || memcmp(merkle_tree_leaf(&t->tree, (uint64_t)index), expected,
                                           MERKLE_HASH_BYTES) != 0))
        error = CATRACA_E_CORRUPT;
    if (error == 0) {
        out->leaf_index = (uint64_t)index;
        out->tree_size = out->leaf_index + 1;
        merkle_tree_root(&t->tree, out->tree_size, out->root);
    }
    pthread_mutex_unlock(&r->mutex);
    return error;
}

int receipts_head(struct receipts *r, const char *event, struct tree_head *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->event, sizeof(out->event), "%s", event);
    pthread_mutex_lock(&r->mutex);
    struct event_tree *t = tree_of(r, event);
    int error = catch_up(r, t, false, (struct log_seq){0, 0});
    if (error == CATRACA_E_TOO_LARGE)
        error = 0; /* the head stops at leaves_max */
    bool is_cached = error == 0 && t->has_head && t->head.tree_size == t->tree.size;
    if (is_cached) {
        *out = t->head;
    } else if (error == 0) {
        out->tree_size = t->tree.size;
        merkle_tree_root(&t->tree, out->tree_size, out->root);
    }
    pthread_mutex_unlock(&r->mutex);
    if (error != 0 || is_cached)
        return error;
    error = tree_head_sign(out, &r->signing_key);
    pthread_mutex_lock(&r->mutex);
    /* The slot may hold another event by now (evicted meanwhile): only its own head goes in. */
    if (error == 0 && strcmp(t->event, event) == 0 && out->tree_size <= t->tree.size) {
        t->head = *out;
        t->has_head = true;
    }
    pthread_mutex_unlock(&r->mutex);
    return error;
}

int receipts_inclusion(struct receipts *r, const char *event, bool has_seq, struct log_seq seq,
                       const merkle_hash leaf, uint64_t tree_size, struct receipts_inclusion *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&r->mutex);
    struct event_tree *t = tree_of(r, event);
    int error = catch_up(r, t, false, (struct log_seq){0, 0});
    if (error == CATRACA_E_TOO_LARGE)
        error = 0;
    int64_t index = -1;
    if (error == 0) {
        index = has_seq ? index_of_seq(t, seq) : index_of_leaf(t, leaf);
        out->tree_size = tree_size == 0 ? t->tree.size : tree_size;
        if (index < 0)
            error = CATRACA_E_NOTFOUND;
        else if (merkle_tree_inclusion(&t->tree, (uint64_t)index, out->tree_size, out->path,
                                       &out->count) != 0)
            error = CATRACA_E_INVALID;
    }
    if (error == 0) {
        out->leaf_index = (uint64_t)index;
        out->seq = t->seqs[index];
        memcpy(out->leaf, merkle_tree_leaf(&t->tree, (uint64_t)index), MERKLE_HASH_BYTES);
    }
    pthread_mutex_unlock(&r->mutex);
    return error;
}

int receipts_consistency(struct receipts *r, const char *event, uint64_t first, uint64_t second,
                         uint64_t *second_used, merkle_hash path[MERKLE_PROOF_MAX], size_t *count)
{
    pthread_mutex_lock(&r->mutex);
    struct event_tree *t = tree_of(r, event);
    int error = catch_up(r, t, false, (struct log_seq){0, 0});
    if (error == CATRACA_E_TOO_LARGE)
        error = 0;
    *second_used = second == 0 ? t->tree.size : second;
    *count = 0;
    if (error == 0 && merkle_tree_consistency(&t->tree, first, *second_used, path, count) != 0)
        error = CATRACA_E_INVALID;
    pthread_mutex_unlock(&r->mutex);
    return error;
}
