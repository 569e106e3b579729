/*
 * redis_xrange.c - XRANGE replies decoded from RESP2 bytes (see redis_xrange.h).
 */
#include "log/redis_xrange.h"

#include <string.h>

#include "core/error.h"

int redis_text_u64(const char *text, size_t length, uint64_t *out)
{
    uint64_t value = 0;
    if (length == 0 || length > 20)
        return CATRACA_E_CORRUPT;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9')
            return CATRACA_E_CORRUPT;
        uint64_t digit = (uint64_t)(text[i] - '0');
        /* 19 digits never overflow: only a 20-digit number is checked (a division a digit) */
        if (length == 20 && value > (UINT64_MAX - digit) / 10)
            return CATRACA_E_CORRUPT;
        value = value * 10 + digit;
    }
    *out = value;
    return 0;
}

int redis_text_i64(const char *text, size_t length, int64_t *out)
{
    bool is_negative = length > 0 && text[0] == '-';
    uint64_t magnitude = 0;
    size_t skip = is_negative ? 1 : 0;
    if (redis_text_u64(text + skip, length - skip, &magnitude) != 0 ||
        magnitude > (uint64_t)INT64_MAX + (is_negative ? 1 : 0))
        return CATRACA_E_CORRUPT;
    if (!is_negative)
        *out = (int64_t)magnitude;
    else
        *out = magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    return 0;
}

int redis_text_seq(const char *text, size_t length, struct log_seq *out)
{
    const char *dash = memchr(text, '-', length);
    if (dash == NULL)
        return CATRACA_E_CORRUPT;
    size_t major_length = (size_t)(dash - text);
    struct log_seq seq;
    if (redis_text_u64(text, major_length, &seq.major) != 0 ||
        redis_text_u64(dash + 1, length - major_length - 1, &seq.minor) != 0)
        return CATRACA_E_CORRUPT;
    *out = seq;
    return 0;
}

void redis_xrange_begin(struct redis_xrange *x, struct log_entry *entries, uint8_t *records,
                        size_t max)
{
    *x = (struct redis_xrange){.entries = entries, .records = records, .max = max, .expected = -1};
}

bool redis_xrange_is_done(const struct redis_xrange *x)
{
    return x->is_error || (x->expected >= 0 && x->count == (size_t)x->expected);
}

/* What a step found: a whole item, too few bytes yet, or bytes that are not the reply. */
enum step { STEP_OK, STEP_MORE, STEP_CORRUPT };

struct cursor {
    const char *at;
    const char *end;
};

/* "<kind><integer>\r\n": the integer, optionally negative, of at most 18 digits (a length or
 * a count: no header of an XRANGE reply needs more, and 18 digits cannot overflow). Digits are
 * read here rather than by redis_text_i64: eleven headers an entry, a third of the decoding. */
static enum step take_header(struct cursor *c, char kind, int64_t *value)
{
    const char *p = c->at;
    if (p == c->end)
        return STEP_MORE;
    if (*p != kind)
        return STEP_CORRUPT;
    /* One digit: six of an entry's eleven headers ("*2", "*8" and each field name's "$1"). */
    if (c->end - p >= 4 && (unsigned char)(p[1] - '0') < 10 && p[2] == '\r' && p[3] == '\n') {
        *value = p[1] - '0';
        c->at = p + 4;
        return STEP_OK;
    }
    p++;
    bool is_negative = p < c->end && *p == '-';
    if (is_negative)
        p++;
    const char *digits = p;
    int64_t v = 0;
    while (p < c->end && (unsigned char)(*p - '0') < 10) {
        if (p - digits == 18)
            return STEP_CORRUPT;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p < c->end && *p != '\r')
        return STEP_CORRUPT;
    if (c->end - p < 2)
        return STEP_MORE;
    if (p == digits || p[1] != '\n')
        return STEP_CORRUPT;
    *value = is_negative ? -v : v;
    c->at = p + 2;
    return STEP_OK;
}

/* "$<length>\r\n<bytes>\r\n": the bytes (a nil, $-1, is not a value XRANGE sends). */
static enum step take_bulk(struct cursor *c, const char **text, size_t *length)
{
    int64_t n;
    enum step s = take_header(c, '$', &n);
    if (s != STEP_OK)
        return s;
    if (n < 0 || n > REDIS_XRANGE_VALUE_BYTES_MAX)
        return STEP_CORRUPT;
    if (c->end - c->at < n + 2)
        return STEP_MORE;
    if (c->at[n] != '\r' || c->at[n + 1] != '\n')
        return STEP_CORRUPT;
    *text = c->at;
    *length = (size_t)n;
    c->at += n + 2;
    return STEP_OK;
}

/* One entry into x->entries[x->count], written only once it is whole and valid. */
static enum step take_entry(struct redis_xrange *x, struct cursor *c)
{
    int64_t n;
    enum step s = take_header(c, '*', &n);
    if (s != STEP_OK)
        return s;
    if (n != 2)
        return STEP_CORRUPT;
    const char *id, *record = NULL, *time_text = NULL;
    size_t id_length, record_length = 0, time_length = 0;
    if ((s = take_bulk(c, &id, &id_length)) != STEP_OK)
        return s;
    int64_t fields;
    if ((s = take_header(c, '*', &fields)) != STEP_OK)
        return s;
    if (fields < 0 || fields % 2 != 0 || fields > REDIS_XRANGE_FIELDS_MAX)
        return STEP_CORRUPT;
    for (int64_t f = 0; f < fields; f += 2) {
        const char *name, *value;
        size_t name_length, value_length;
        if ((s = take_bulk(c, &name, &name_length)) != STEP_OK ||
            (s = take_bulk(c, &value, &value_length)) != STEP_OK)
            return s;
        if (name_length != 1)
            return STEP_CORRUPT;
        if (name[0] == 'r') {
            record = value;
            record_length = value_length;
        } else if (name[0] == 't') {
            time_text = value;
            time_length = value_length;
        }
    }
    /* Whole: now checked and written (a later field of the same name wins, as before). */
    struct log_entry *e = &x->entries[x->count];
    /* Packed one after the other: only the pages the records fill are touched (a slot of
     * CATRACA_COMMAND_ENCODED_MAX each touched a page an entry, 16 MB for a read of 4096). */
    uint8_t *copy = x->records + x->records_used;
    if (record == NULL || time_text == NULL || record_length > CATRACA_COMMAND_ENCODED_MAX ||
        redis_text_seq(id, id_length, &e->seq) != 0 ||
        redis_text_i64(time_text, time_length, &e->time_ms) != 0)
        return STEP_CORRUPT;
    if (record_length > 0)
        memcpy(copy, record, record_length);
    e->record = copy;
    e->record_length = record_length;
    x->records_used += record_length;
    x->count++;
    return STEP_OK;
}

/* "-<text>\r\n": kept (cut to REDIS_XRANGE_ERROR_TEXT) for the caller's log line. */
static enum step take_error(struct redis_xrange *x, struct cursor *c)
{
    const char *line = c->at + 1;
    const char *end = memchr(line, '\r', (size_t)(c->end - line));
    if (end == NULL || c->end - end < 2)
        return c->end - line > REDIS_XRANGE_ENTRY_BYTES_MAX ? STEP_CORRUPT : STEP_MORE;
    if (end[1] != '\n')
        return STEP_CORRUPT;
    size_t length = (size_t)(end - line);
    if (length > REDIS_XRANGE_ERROR_TEXT)
        length = REDIS_XRANGE_ERROR_TEXT;
    memcpy(x->error_text, line, length);
    x->error_text[length] = '\0';
    x->is_error = true;
    c->at = end + 2;
    return STEP_OK;
}

int redis_xrange_feed(struct redis_xrange *x, const char *in, size_t length, size_t *used)
{
    struct cursor c = {in, in + length};
    *used = 0;
    while (!redis_xrange_is_done(x)) {
        struct cursor item = c;
        enum step s;
        if (x->expected < 0 && item.at < item.end && item.at[0] == '-') {
            s = take_error(x, &item);
        } else if (x->expected < 0) {
            int64_t n;
            s = take_header(&item, '*', &n);
            if (s == STEP_OK && (n < 0 || (uint64_t)n > x->max))
                s = STEP_CORRUPT;
            if (s == STEP_OK)
                x->expected = n;
        } else {
            s = take_entry(x, &item);
        }
        if (s == STEP_CORRUPT)
            return CATRACA_E_CORRUPT;
        if (s == STEP_MORE)
            break;
        c = item;
    }
    *used = (size_t)(c.at - in);
    return 0;
}
