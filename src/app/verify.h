/*
 * verify.h - `catraca verify RECEIPT_FILE --url URL [--public-key BASE64]`: a
 * buyer's check of a receipt against the published log, with O(log n) data:
 *
 *   1. the receipt is signed by the server's key (the key at
 *      /.well-known/catraca-receipt-key, or the one given with --public-key,
 *      which a buyer saved when buying: a server cannot then swap keys);
 *   2. its leaf, rebuilt from the receipt's own fields, is at leaf_index in the
 *      log's tree of tree_size entries whose root the receipt signed (inclusion
 *      proof): the purchase sits at its seq, after exactly the entries it
 *      followed then;
 *   3. the log's current signed head extends that tree (consistency proof): no
 *      entry before the purchase was inserted, deleted, changed or reordered
 *      since.
 *
 * Exit 0 when all hold, 1 when one fails (named on stdout), 2 on a usage or
 * network error.
 */
#ifndef CATRACA_APP_VERIFY_H
#define CATRACA_APP_VERIFY_H

int verify_main(int argc, char **argv);

#endif
