/*
 * pg_copy.c - PostgreSQL's binary COPY tuples as struct store_decision (see pg_copy.h).
 */
#include "store/pg_copy.h"

#include <endian.h>
#include <string.h>

#include "core/error.h"
#include "store/store_rows.h"

static const uint8_t copy_signature[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};

/* The bytes left after the cursor; every read checks them first. */
struct cursor {
    uint8_t *at;
    size_t left;
};

static bool take_u32(struct cursor *c, uint32_t *out)
{
    if (c->left < 4)
        return false;
    *out = (uint32_t)c->at[0] << 24 | (uint32_t)c->at[1] << 16 | (uint32_t)c->at[2] << 8 |
           (uint32_t)c->at[3];
    c->at += 4;
    c->left -= 4;
    return true;
}

static bool take_u16(struct cursor *c, uint16_t *out)
{
    if (c->left < 2)
        return false;
    *out = (uint16_t)(c->at[0] << 8 | c->at[1]);
    c->at += 2;
    c->left -= 2;
    return true;
}

/* A big-endian two's complement integer of 8, 4 or 2 bytes, or a boolean's 1; 0 otherwise
 * (and for NULL), as store_pg.c's binary_int. */
static int64_t integer_of(const uint8_t *b, int32_t length)
{
    switch (length) {
    case 8: {
        uint64_t v;
        memcpy(&v, b, sizeof(v));
        return (int64_t)be64toh(v);
    }
    case 4: {
        uint32_t v;
        memcpy(&v, b, sizeof(v));
        return (int32_t)be32toh(v);
    }
    case 2: {
        uint16_t v;
        memcpy(&v, b, sizeof(v));
        return (int16_t)be16toh(v);
    }
    case 1:
        return b[0];
    default:
        return 0;
    }
}

/* One field: its bytes (NULL for SQL NULL) and length (-1 for NULL). The field's 4-byte length
 * sits just before the bytes, which lets a text be moved over it and ended in place. */
struct field {
    uint8_t *bytes;
    int32_t length;
};

static bool take_field(struct cursor *c, struct field *out)
{
    uint32_t length;
    if (!take_u32(c, &length))
        return false;
    if (length == UINT32_MAX) {
        *out = (struct field){NULL, -1};
        return true;
    }
    if (length > INT32_MAX || length > c->left)
        return false;
    *out = (struct field){c->at, (int32_t)length};
    c->at += length;
    c->left -= length;
    return true;
}

/* A text field as a C string: its bytes moved 4 back (over its own length, already read) and
 * a NUL after them, which still lies inside the field's original span. "" for NULL. A NUL
 * inside the bytes (PostgreSQL's text holds none) ends the string early: a different text,
 * which the audit then reports as differing. */
static const char *text_of(struct field *f)
{
    if (f->length < 0)
        return "";
    char *text = (char *)f->bytes - 4;
    memmove(text, f->bytes, (size_t)f->length);
    text[f->length] = '\0';
    return text;
}

static bool take_header(struct cursor *c)
{
    uint32_t flags, extension;
    if (c->left < sizeof(copy_signature) ||
        memcmp(c->at, copy_signature, sizeof(copy_signature)) != 0)
        return false;
    c->at += sizeof(copy_signature);
    c->left -= sizeof(copy_signature);
    /* Bit 16: an OID column in every tuple, which the query never asks for. Bits 17-31 are
     * critical by the format's rule; 0-15 are not. */
    if (!take_u32(c, &flags) || (flags & 0xffff0000u) != 0 || !take_u32(c, &extension) ||
        extension > c->left)
        return false;
    c->at += extension;
    c->left -= extension;
    return true;
}

int pg_copy_decisions(struct pg_copy_decoder *decoder, uint8_t *message, size_t length,
                      int (*visit)(void *context, const struct store_decision *row), void *context)
{
    struct cursor c = {message, length};
    if (!decoder->is_header_read) {
        if (!take_header(&c))
            return CATRACA_E_CORRUPT;
        decoder->is_header_read = true;
    }
    while (c.left > 0) {
        uint16_t count;
        if (decoder->is_ended || !take_u16(&c, &count))
            return CATRACA_E_CORRUPT;
        if (count == UINT16_MAX) {
            decoder->is_ended = true;
            continue;
        }
        if (count != PG_COPY_DECISION_FIELDS)
            return CATRACA_E_CORRUPT;
        struct field f[PG_COPY_DECISION_FIELDS];
        for (int i = 0; i < PG_COPY_DECISION_FIELDS; i++)
            if (!take_field(&c, &f[i]))
                return CATRACA_E_CORRUPT;
        struct store_decision row = {.purchase_id = (uint64_t)integer_of(f[0].bytes, f[0].length),
                                     .customer = text_of(&f[1]),
                                     .category = text_of(&f[2]),
                                     .quantity = (uint32_t)integer_of(f[3].bytes, f[3].length),
                                     .seq = {(uint64_t)integer_of(f[4].bytes, f[4].length),
                                             (uint64_t)integer_of(f[5].bytes, f[5].length)},
                                     .status = (uint8_t)integer_of(f[6].bytes, f[6].length),
                                     .reason = (uint8_t)integer_of(f[7].bytes, f[7].length),
                                     .hold_expires_at_ms = integer_of(f[8].bytes, f[8].length),
                                     .is_refund_due = integer_of(f[10].bytes, f[10].length) != 0};
        /* bytea in binary: the bytes themselves. */
        row.ticket_count =
            f[9].length < 0
                ? 0
                : store_tickets_decode_codes(f[9].bytes, (size_t)f[9].length, row.ticket_codes);
        decoder->rows++;
        int stop = visit(context, &row);
        if (stop != 0)
            return stop;
    }
    return 0;
}
