/*
 * redis_xrange.h - an XRANGE reply decoded straight from the bytes Redis sends (RESP2), into
 * read()'s entries, without hiredis building (or even visiting) a reply object per value:
 * hiredis' reader and the callbacks that decoded below it were 2.7 k of the 3.0 k instructions
 * an entry of reading a stream back (callgrind, `catraca audit --redis`).
 *
 * The reply is [[id, [name, value, ...]], ...] (or an error line). Each entry must have a
 * "major-minor" id (log_seq_parse's rules), one-byte field names, bulk-string values, an 'r'
 * field (the record, at most CATRACA_COMMAND_ENCODED_MAX bytes) and a 't' field (a decimal
 * int64); other fields ('i', 'p') are skipped. Anything else is CATRACA_E_CORRUPT, as is a
 * value longer than REDIS_XRANGE_VALUE_BYTES_MAX, an entry of more than REDIS_XRANGE_FIELDS_MAX
 * names and values (log_redis.c appends four fields: the record and three numbers) or more
 * entries than were asked for.
 *
 * The decoder is fed the reply in pieces as they arrive and takes whole items only (the top
 * header, then one entry at a time): what it leaves unused must be fed again, with more bytes
 * after it.
 */
#ifndef CATRACA_LOG_REDIS_XRANGE_H
#define CATRACA_LOG_REDIS_XRANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "log/log.h"

#define REDIS_XRANGE_VALUE_BYTES_MAX (CATRACA_COMMAND_ENCODED_MAX + 1024) /* one bulk string */
#define REDIS_XRANGE_FIELDS_MAX 16 /* field names and values of an entry: 8 fields */
/* The most RESP bytes an entry that passes those bounds takes (each header is at most 24
 * bytes): a buffer of this many always holds the next whole item. */
#define REDIS_XRANGE_ENTRY_BYTES_MAX                                                               \
    ((REDIS_XRANGE_FIELDS_MAX + 1) * (REDIS_XRANGE_VALUE_BYTES_MAX + 32) + 64)
#define REDIS_XRANGE_ERROR_TEXT 200

struct redis_xrange {
    struct log_entry *entries; /* out: max of them */
    uint8_t *records;          /* max * CATRACA_COMMAND_ENCODED_MAX bytes: the records, packed */
    size_t records_used;       /* bytes of records written */
    size_t max;
    int64_t expected; /* entries in the reply; -1 until its header is decoded */
    size_t count;     /* entries decoded */
    bool is_error;    /* the reply was an error line, in error_text */
    char error_text[REDIS_XRANGE_ERROR_TEXT + 1];
};

void redis_xrange_begin(struct redis_xrange *x, struct log_entry *entries, uint8_t *records,
                        size_t max);
/* Decodes the whole items at the start of in[0, length): 0 with *used their bytes (0 when the
 * first is not complete yet), or CATRACA_E_CORRUPT. */
int redis_xrange_feed(struct redis_xrange *x, const char *in, size_t length, size_t *used);
/* The whole reply was decoded (its entries, or its error line). */
bool redis_xrange_is_done(const struct redis_xrange *x);

/* Decimal digits only (no sign, space or '+'), at most UINT64_MAX: 0 or CATRACA_E_CORRUPT. */
int redis_text_u64(const char *text, size_t length, uint64_t *out);
/* The same with an optional leading '-', within int64_t. */
int redis_text_i64(const char *text, size_t length, int64_t *out);
/* "major-minor", each 1 to 20 digits and at most UINT64_MAX (log_seq_parse's rules). */
int redis_text_seq(const char *text, size_t length, struct log_seq *out);

#endif
