/* audit_tree.c - the log's Merkle trees against saved receipts; contract in audit_tree.h. */
#include "app/audit_tree.h"
#include "app/service.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/receipt.h"
#include "log/log_sqlite.h"

#define READ_BATCH 4096
#define EVENTS_MAX 4096

struct event_tree {
    char event[CATRACA_ID_MAX + 1];
    struct merkle_tree tree;
    struct log_seq *seqs;
};

/* The leaf hashes of entries[from, to): three SHA-256 each (the record, a PURCHASE's request,
 * the leaf), independent of one another. */
struct leaf_hashing {
    const char *event;
    const struct log_entry *entries;
    merkle_hash *hashes;
    size_t from, to;
};

static void *hash_leaves(void *context)
{
    const struct leaf_hashing *h = context;
    for (size_t i = h->from; i < h->to; i++) {
        const struct log_entry *e = &h->entries[i];
        struct log_tree_leaf leaf;
        log_tree_leaf_of_entry(h->event, e->seq, e->time_ms, e->record, e->record_length, &leaf);
        log_tree_leaf_hash(&leaf, h->hashes[i]);
    }
    return NULL;
}

/* Builds the tree of event from its log. 0, or -1 after a message. The leaves of each read are
 * hashed on two threads (the calling one and one more): three of the four SHA-256 of an entry,
 * most of a tree's cost, partly on the second core; the tree's own node hashes follow in order
 * on the calling thread. hashes: READ_BATCH of them. */
static int build(struct catraca_log *log, struct event_tree *t, struct log_entry *entries,
                 merkle_hash *hashes)
{
    merkle_tree_init(&t->tree, UINT64_C(1) << 40);
    size_t capacity = 0;
    struct log_seq after = {0, 0};
    for (;;) {
        size_t count = 0;
        if (log->ops->read(log->context, t->event, after, entries, READ_BATCH, &count) != 0) {
            fprintf(stderr, "catraca audit: cannot read the log of %s\n", t->event);
            return -1;
        }
        if (count == 0)
            return 0;
        /* The helper takes two thirds: the calling thread also reads the log and hashes the
         * nodes (a read and a digest an entry, about as long as a third of the leaves). */
        size_t split = count * 2 / 3;
        struct leaf_hashing halves[2] = {
            {t->event, entries, hashes, 0, split},
            {t->event, entries, hashes, split, count},
        };
        pthread_t helper;
        bool is_helped = count >= 64 && pthread_create(&helper, NULL, hash_leaves, &halves[0]) == 0;
        if (!is_helped)
            hash_leaves(&halves[0]);
        hash_leaves(&halves[1]);
        if (is_helped)
            pthread_join(helper, NULL);
        for (size_t i = 0; i < count; i++) {
            if (t->tree.size == capacity) {
                capacity = capacity ? 2 * capacity : 1024;
                struct log_seq *grown = realloc(t->seqs, capacity * sizeof(*grown));
                if (grown == NULL)
                    return -1;
                t->seqs = grown;
            }
            if (merkle_tree_append(&t->tree, hashes[i]) != 0)
                return -1;
            t->seqs[t->tree.size - 1] = entries[i].seq;
        }
        after = entries[count - 1].seq;
    }
}

/* The text of a receipt or head file (at most RECEIPT_TEXT_MAX + 1 bytes, so one too long
 * fails to parse); NULL when it cannot be read or allocated. Free it. */
static char *read_small_file(const char *file, size_t *length)
{
    char *text = malloc(RECEIPT_TEXT_MAX + 1);
    FILE *f = fopen(file, "rb");
    *length = f != NULL && text != NULL ? fread(text, 1, RECEIPT_TEXT_MAX + 1, f) : 0;
    if (f != NULL)
        fclose(f);
    return text;
}

static const struct event_tree *tree_of(const struct event_tree *trees, size_t tree_count,
                                        const char *event)
{
    for (size_t i = 0; i < tree_count; i++)
        if (strcmp(trees[i].event, event) == 0)
            return &trees[i];
    return NULL;
}

/* 0 when the receipt matches the log, 1 (named) when it does not. */
static int check_receipt(const char *file, const struct event_tree *trees, size_t tree_count,
                         EVP_PKEY *key)
{
    char message[160];
    size_t length;
    char *text = read_small_file(file, &length);
    struct receipt r;
    int parsed = text != NULL ? receipt_parse_json(text, length, &r, message) : -1;
    free(text);
    if (parsed != 0) {
        printf("receipt %s: DIFFERENCE: not a readable receipt\n", file);
        return 1;
    }
    char seq[LOG_SEQ_TEXT_MAX];
    log_seq_format(r.leaf.seq, seq);
    const char *problem = NULL;
    const struct event_tree *t = tree_of(trees, tree_count, r.leaf.event);
    merkle_hash leaf, root;
    log_tree_leaf_hash(&r.leaf, leaf);
    if (!receipt_signature_is_valid(&r, key))
        problem = "its signature does not match (forged or altered receipt)";
    else if (t == NULL || r.tree_size > t->tree.size)
        problem = "the log is shorter than the receipt's tree (entries deleted)";
    else if (log_seq_compare(t->seqs[r.leaf_index], r.leaf.seq) != 0)
        problem = "another entry is at the receipt's place (entries deleted, inserted or "
                  "reordered before it)";
    else if (memcmp(merkle_tree_leaf(&t->tree, r.leaf_index), leaf, MERKLE_HASH_BYTES) != 0)
        problem = "the entry at the receipt's place is not this purchase (changed)";
    else if (merkle_tree_root(&t->tree, r.tree_size, root) != 0 ||
             memcmp(root, r.root, MERKLE_HASH_BYTES) != 0)
        problem = "the log before the purchase is not the one the receipt signed (an earlier "
                  "entry was changed or reordered)";
    if (problem != NULL) {
        printf("receipt %s (event %s, seq %s): DIFFERENCE: %s\n", file, r.leaf.event, seq, problem);
        return 1;
    }
    printf("receipt %s (event %s, seq %s): matches the log\n", file, r.leaf.event, seq);
    return 0;
}

/* 0 when the signed head is the log's tree at its size, 1 (named) when not. */
static int check_head(const char *file, const struct event_tree *trees, size_t tree_count,
                      EVP_PKEY *key)
{
    char message[160];
    size_t length;
    char *text = read_small_file(file, &length);
    struct tree_head head;
    int parsed = text != NULL ? tree_head_parse_json(text, length, &head, message) : -1;
    free(text);
    if (parsed != 0) {
        printf("head %s: DIFFERENCE: not a readable tree head\n", file);
        return 1;
    }
    const struct event_tree *t = tree_of(trees, tree_count, head.event);
    uint64_t size = t != NULL ? t->tree.size : 0;
    merkle_hash root;
    if (t != NULL && head.tree_size <= size)
        merkle_tree_root(&t->tree, head.tree_size, root);
    else
        merkle_empty_root(root);
    const char *problem = NULL;
    if (!tree_head_signature_is_valid(&head, key))
        problem = "its signature does not match (forged or altered head)";
    else if (head.tree_size > size)
        problem = "the log is shorter than the head (entries deleted)";
    else if (memcmp(root, head.root, MERKLE_HASH_BYTES) != 0)
        problem = "the log's first entries are not the ones the head signed (changed, deleted, "
                  "inserted or reordered)";
    if (problem != NULL) {
        printf("head %s (event %s, %" PRIu64 " entries): DIFFERENCE: %s\n", file, head.event,
               head.tree_size, problem);
        return 1;
    }
    printf("head %s (event %s, %" PRIu64 " entries): matches the log\n", file, head.event,
           head.tree_size);
    return 0;
}

int audit_tree_run(const char *data, const char *key_path, const struct audit_tree_files *files)
{
    int count = files->receipt_count + files->head_count;
    struct sqlite_paths paths;
    sqlite_paths_of(data, &paths);
    struct log_sqlite_options options = {
        .is_synchronous_full = false, .busy_timeout_ms = 5000, .read_max = READ_BATCH};
    struct catraca_log log;
    struct log_entry *entries = calloc(READ_BATCH, sizeof(*entries));
    merkle_hash *hashes = calloc(READ_BATCH, sizeof(*hashes));
    char(*events)[CATRACA_ID_MAX + 1] = calloc(EVENTS_MAX, sizeof(*events));
    struct event_tree *trees = calloc(EVENTS_MAX, sizeof(*trees));
    size_t event_count = 0;
    int result = 2;
    if (entries == NULL || hashes == NULL || events == NULL || trees == NULL ||
        log_sqlite_open(paths.log, &options, &log) != 0) {
        fprintf(stderr, "catraca audit: cannot open %s\n", paths.log);
        goto done;
    }
    EVP_PKEY *key = count > 0 ? receipt_key_load(key_path, false) : NULL;
    if ((count > 0 && key == NULL) ||
        log.ops->list_partitions(log.context, events, EVENTS_MAX, &event_count) != 0)
        goto done_log;
    result = 0;
    for (size_t i = 0; i < event_count && result == 0; i++) {
        snprintf(trees[i].event, sizeof(trees[i].event), "%s", events[i]);
        if (build(&log, &trees[i], entries, hashes) != 0) {
            result = 2;
            break;
        }
        merkle_hash root;
        char hex[2 * MERKLE_HASH_BYTES + 1];
        merkle_tree_root(&trees[i].tree, trees[i].tree.size, root);
        log_tree_hex(root, hex);
        printf("event %s: log tree of %" PRIu64 " entries, root %s\n", events[i],
               trees[i].tree.size, hex);
    }
    int differences = 0;
    for (int i = 0; result == 0 && i < files->receipt_count; i++)
        differences += check_receipt(files->receipts[i], trees, event_count, key);
    for (int i = 0; result == 0 && i < files->head_count; i++)
        differences += check_head(files->heads[i], trees, event_count, key);
    if (result == 0 && count > 0)
        printf("audit: %d receipts and heads checked against the log: %s\n", count,
               differences == 0 ? "CLEAN" : "DIFFERENCES FOUND");
    if (result == 0 && differences > 0)
        result = 1;
    EVP_PKEY_free(key);
done_log:
    log.ops->close(log.context);
done:
    for (size_t i = 0; trees != NULL && i < event_count; i++) {
        merkle_tree_free(&trees[i].tree);
        free(trees[i].seqs);
    }
    free(trees);
    free(events);
    free(entries);
    free(hashes);
    return result;
}
