/* log_tree.c - the leaf bytes of a log entry; contract in log_tree.h. */
#include "log/log_tree.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "core/codec.h"

static const char leaf_domain[] = "catraca-log-entry/1";
static_assert(sizeof(leaf_domain) - 1 == 19, "the leaf layout in log_tree.h counts 19 bytes");

/* Appends the NUL-terminated text (at most CATRACA_ID_MAX bytes: it is an id). */
static char *put_text(char *at, const char *text)
{
    size_t length = strnlen(text, CATRACA_ID_MAX);
    memcpy(at, text, length);
    return at + length;
}

/*
 * The request text built by hand, byte for byte what
 * snprintf("catraca-request/1\nevent=%s\ncustomer=%s\ncategory=%s\nquantity=%u\n") wrote (ids
 * are at most CATRACA_ID_MAX bytes): the formatting cost as much as the digest (catraca audit
 * rebuilds the tree of a million entries).
 */
void log_tree_request_hash(const char *event, const char *customer, const char *category,
                           uint32_t quantity, merkle_hash out)
{
    static const char head[] = "catraca-request/1\nevent=", customer_tag[] = "\ncustomer=",
                      category_tag[] = "\ncategory=", quantity_tag[] = "\nquantity=";
    char text[64 + 4 * (CATRACA_ID_MAX + 1) + 16];
    char *at = text;
    memcpy(at, head, sizeof(head) - 1);
    at = put_text(at + sizeof(head) - 1, event);
    memcpy(at, customer_tag, sizeof(customer_tag) - 1);
    at = put_text(at + sizeof(customer_tag) - 1, customer);
    memcpy(at, category_tag, sizeof(category_tag) - 1);
    at = put_text(at + sizeof(category_tag) - 1, category);
    memcpy(at, quantity_tag, sizeof(quantity_tag) - 1);
    at += sizeof(quantity_tag) - 1;
    char digits[10];
    int digit_count = 0;
    do {
        digits[digit_count++] = (char)('0' + quantity % 10);
        quantity /= 10;
    } while (quantity > 0);
    while (digit_count > 0)
        *at++ = digits[--digit_count];
    *at++ = '\n';
    assert((size_t)(at - text) <= sizeof(text));
    merkle_sha256(text, (size_t)(at - text), out);
}

void log_tree_leaf_of_entry(const char *event, struct log_seq seq, int64_t time_ms,
                            const uint8_t *record, size_t record_length, struct log_tree_leaf *out)
{
    memset(out, 0, sizeof(*out));
    size_t event_length = strnlen(event, sizeof(out->event) - 1); /* snprintf's cut, not its cost */
    memcpy(out->event, event, event_length);
    out->seq = seq;
    out->time_ms = time_ms;
    merkle_sha256(record, record_length, out->entry_sha256);
    /* Only the type and a PURCHASE's fields are read: the light decoder (a whole command is
     * 3.7 KB to zero for each entry of a tree rebuilt from a million). */
    struct engine_command command;
    if (codec_command_decode_fields(record, record_length, &command) != 0)
        return;
    out->type = command.type;
    if (command.type == ENGINE_COMMAND_PURCHASE) {
        out->purchase_id = command.u.purchase.purchase_id;
        log_tree_request_hash(event, command.u.purchase.customer, command.u.purchase.category,
                              command.u.purchase.quantity, out->request_sha256);
    }
}

static uint8_t *put_u64(uint8_t *at, uint64_t value)
{
    for (int i = 7; i >= 0; i--)
        *at++ = (uint8_t)(value >> (8 * i));
    return at;
}

void log_tree_leaf_hash(const struct log_tree_leaf *leaf, merkle_hash out)
{
    uint8_t bytes[LOG_TREE_LEAF_BYTES] = {0};
    uint8_t *at = bytes;
    memcpy(at, leaf_domain, sizeof(leaf_domain) - 1);
    at += sizeof(leaf_domain) - 1;
    size_t event_length = strnlen(leaf->event, CATRACA_ID_MAX);
    *at++ = (uint8_t)event_length;
    memcpy(at, leaf->event, event_length);
    at += CATRACA_ID_MAX;
    at = put_u64(at, leaf->seq.major);
    at = put_u64(at, leaf->seq.minor);
    at = put_u64(at, (uint64_t)leaf->time_ms);
    *at++ = leaf->type;
    at = put_u64(at, leaf->purchase_id);
    memcpy(at, leaf->request_sha256, MERKLE_HASH_BYTES);
    at += MERKLE_HASH_BYTES;
    memcpy(at, leaf->entry_sha256, MERKLE_HASH_BYTES);
    at += MERKLE_HASH_BYTES;
    assert(at == bytes + sizeof(bytes));
    merkle_leaf_hash(bytes, sizeof(bytes), out);
}

void log_tree_hex(const merkle_hash hash, char out[2 * MERKLE_HASH_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < MERKLE_HASH_BYTES; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[2 * MERKLE_HASH_BYTES] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int log_tree_hex_parse(const char *text, merkle_hash out)
{
    if (text == NULL || strlen(text) != 2 * MERKLE_HASH_BYTES)
        return -1;
    for (int i = 0; i < MERKLE_HASH_BYTES; i++) {
        int high = hex_digit(text[2 * i]), low = hex_digit(text[2 * i + 1]);
        if (high < 0 || low < 0)
            return -1;
        out[i] = (uint8_t)(high << 4 | low);
    }
    return 0;
}
