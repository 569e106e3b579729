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
#include "log/merkle.h"

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

static void hash_leaves(const struct leaf_hashing *h)
{
    for (size_t i = h->from; i < h->to; i++) {
        const struct log_entry *e = &h->entries[i];
        struct log_tree_leaf leaf;
        log_tree_leaf_of_entry(h->event, e->seq, e->time_ms, e->record, e->record_length, &leaf);
        log_tree_leaf_hash(&leaf, h->hashes[i]);
    }
}

/* The helper thread of one batch: its leaves, then its digest context freed (the thread ends). */
static void *hash_leaves_apart(void *context)
{
    hash_leaves(context);
    merkle_thread_release();
    return NULL;
}

/* One read of the log, its records copied out of the handle's buffer (valid only until the
 * handle's next read) so that the next read can run while these are hashed. */
struct tree_batch {
    struct log_entry entries[READ_BATCH];
    uint8_t *records; /* READ_BATCH * CATRACA_COMMAND_ENCODED_MAX bytes, touched as used */
    merkle_hash hashes[READ_BATCH];
    size_t count;
};

/* The entries after `after` into b (records copied). 0, or -1 after a message. */
static int read_batch(struct catraca_log *log, const char *event, struct log_seq after,
                      struct log_entry *entries, struct tree_batch *b)
{
    size_t count = 0, used = 0;
    if (log->ops->read(log->context, event, after, entries, READ_BATCH, &count) != 0) {
        fprintf(stderr, "catraca audit: cannot read the log of %s\n", event);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        size_t length =
            entries[i].record_length <= CATRACA_COMMAND_ENCODED_MAX ? entries[i].record_length : 0;
        if (length > 0)
            memcpy(b->records + used, entries[i].record, length);
        b->entries[i] = entries[i];
        b->entries[i].record = b->records + used;
        b->entries[i].record_length = length;
        used += length;
    }
    b->count = count;
    return 0;
}

/*
 * Builds the tree of event from its log. 0, or -1 after a message. Three of an entry's four
 * SHA-256 (its leaf) are independent of the others: while a helper thread hashes most leaves
 * of one read, the calling thread reads the next (SQLite, about as long as a third of the
 * leaves' hashing) and hashes the rest; then it adds the leaves in order (the node hashes). Two
 * batches alternate. entries: READ_BATCH of them (the handle's read() output).
 */
static int build(struct catraca_log *log, struct event_tree *t, struct log_entry *entries)
{
    merkle_tree_init(&t->tree, UINT64_C(1) << 40);
    struct tree_batch *batches = calloc(2, sizeof(*batches));
    int result = batches != NULL ? 0 : -1;
    for (int i = 0; result == 0 && i < 2; i++) {
        batches[i].records = malloc((size_t)READ_BATCH * CATRACA_COMMAND_ENCODED_MAX);
        if (batches[i].records == NULL)
            result = -1;
    }
    size_t capacity = 0;
    if (result == 0)
        result = read_batch(log, t->event, (struct log_seq){0, 0}, entries, &batches[0]);
    for (size_t turn = 0; result == 0 && batches[turn % 2].count > 0; turn++) {
        struct tree_batch *b = &batches[turn % 2], *next = &batches[(turn + 1) % 2];
        size_t count = b->count;
        /* The helper's share: what the calling thread's read leaves (a read is about a third
         * of the leaves' hashing time, from perf record with SHA-NI: an estimate). */
        size_t split = count * 3 / 10;
        struct leaf_hashing parts[2] = {
            {t->event, b->entries, b->hashes, 0, split},
            {t->event, b->entries, b->hashes, split, count},
        };
        pthread_t helper;
        bool is_helped =
            count >= 64 && pthread_create(&helper, NULL, hash_leaves_apart, &parts[1]) == 0;
        result = read_batch(log, t->event, b->entries[count - 1].seq, entries, next);
        hash_leaves(&parts[0]);
        if (is_helped)
            pthread_join(helper, NULL);
        else
            hash_leaves(&parts[1]);
        for (size_t i = 0; result == 0 && i < count; i++) {
            if (t->tree.size == capacity) {
                capacity = capacity ? 2 * capacity : 1024;
                struct log_seq *grown = realloc(t->seqs, capacity * sizeof(*grown));
                if (grown == NULL) {
                    result = -1;
                    break;
                }
                t->seqs = grown;
            }
            if (merkle_tree_append(&t->tree, b->hashes[i]) != 0)
                result = -1;
            else
                t->seqs[t->tree.size - 1] = b->entries[i].seq;
        }
    }
    for (int i = 0; batches != NULL && i < 2; i++)
        free(batches[i].records);
    free(batches);
    return result;
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
    char(*events)[CATRACA_ID_MAX + 1] = calloc(EVENTS_MAX, sizeof(*events));
    struct event_tree *trees = calloc(EVENTS_MAX, sizeof(*trees));
    size_t event_count = 0;
    int result = 2;
    if (entries == NULL || events == NULL || trees == NULL ||
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
        if (build(&log, &trees[i], entries) != 0) {
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
    return result;
}
