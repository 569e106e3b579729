/*
 * audit_tree.h - the Merkle tree part of `catraca audit --data DIR [--receipt FILE]...`:
 * rebuilds each event's tree from the log (log_tree.h leaves, exactly as the
 * gateway does), prints every event's size and root (to compare with a head
 * the server published), and checks each receipt given against it: the
 * receipt's signature under the data directory's key (DIR/receipt-key.pem, or
 * --receipt-key), its leaf at its index, and the root of the log up to it. An
 * entry changed, deleted, inserted or reordered before a receipt's place is
 * then named, as is a forged receipt. A signed tree head saved from
 * GET /v1/events/{event}/log (`--head FILE`) is checked the same way: the log's
 * tree at its size must have its root.
 */
#ifndef CATRACA_APP_AUDIT_TREE_H
#define CATRACA_APP_AUDIT_TREE_H

struct audit_tree_files {
    char **receipts; /* receipt files (a receipt, or a saved 202 body) */
    int receipt_count;
    char **heads; /* tree heads saved from GET /v1/events/{event}/log */
    int head_count;
};

/* 0 clean, 1 a receipt or head does not match the log, 2 cannot read. */
int audit_tree_run(const char *data, const char *key_path, const struct audit_tree_files *files);

#endif
