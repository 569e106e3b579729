/*
 * pg_copy.h - the audit's rows from PostgreSQL's binary COPY format: what
 * `COPY (SELECT <the decision columns>) TO STDOUT (FORMAT binary)` sends, one
 * CopyData message at a time (as PQgetCopyData hands them over), decoded into
 * struct store_decision without libpq building a result of eleven values a row.
 *
 * The format (PostgreSQL's "Binary Format" of COPY): a header (the 11-byte
 * signature "PGCOPY\n\377\r\n\0", a 32-bit flags word, a 32-bit extension length
 * and that many bytes) before the first tuple; each tuple a 16-bit field count
 * and per field a 32-bit length (-1: NULL) and that many bytes, in the type's
 * binary send format; a field count of -1 ends the data. All integers
 * big-endian. PostgreSQL sends the header with the first tuple and one tuple a
 * message; a message holding part of a tuple, or anything after the end, is
 * refused (CATRACA_E_CORRUPT), never guessed at.
 *
 * The columns, in order: id bigint, customer text, category text, quantity
 * integer, seq_major bigint, seq_minor bigint, status smallint, reason
 * smallint, hold_expires_at_ms bigint, tickets bytea (NULL: none), and a
 * boolean (a refund is due). An integer column of another width than 2, 4 or 8
 * bytes (or a boolean of other than 1) reads as 0, as store_pg.c's result
 * reader does; a NULL text reads as "".
 */
#ifndef CATRACA_STORE_PG_COPY_H
#define CATRACA_STORE_PG_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define PG_COPY_DECISION_FIELDS 11

struct pg_copy_decoder {
    bool is_header_read; /* the header came (it precedes the first tuple) */
    bool is_ended;       /* the end marker came: any byte after it is refused */
    uint64_t rows;       /* tuples decoded */
};

/*
 * Decodes one CopyData message: the header if it is the first, then whole tuples, calling
 * visit once per tuple with a row valid during the call. The texts are ended with a NUL byte
 * in place (each moved over its own length field), so message is written to: the caller's
 * buffer, not needed afterwards. Returns 0, visit's non-zero result (decoding stops there),
 * or CATRACA_E_CORRUPT for bytes that are not the format above.
 */
int pg_copy_decisions(struct pg_copy_decoder *decoder, uint8_t *message, size_t length,
                      int (*visit)(void *context, const struct store_decision *row), void *context);

#endif
