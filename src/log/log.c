/* log.c - positions in a partition (log.h). */
#include "log/log.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

int log_seq_compare(struct log_seq a, struct log_seq b)
{
    if (a.major != b.major)
        return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor)
        return a.minor < b.minor ? -1 : 1;
    return 0;
}

struct log_seq log_seq_before(struct log_seq seq)
{
    if (seq.minor > 0)
        return (struct log_seq){seq.major, seq.minor - 1};
    if (seq.major > 0)
        return (struct log_seq){seq.major - 1, UINT64_MAX};
    return seq;
}

void log_seq_format(struct log_seq seq, char out[LOG_SEQ_TEXT_MAX])
{
    snprintf(out, LOG_SEQ_TEXT_MAX, "%llu-%llu", (unsigned long long)seq.major,
             (unsigned long long)seq.minor);
}

/* Digits only, no sign or space, no overflow: strtoull accepts too much. */
static const char *parse_number(const char *text, uint64_t *out)
{
    uint64_t value = 0;
    const char *p = text;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (value > (UINT64_MAX - digit) / 10)
            return NULL;
        value = value * 10 + digit;
    }
    if (p == text || p - text > 20)
        return NULL;
    *out = value;
    return p;
}

int log_seq_parse(const char *text, struct log_seq *out)
{
    struct log_seq seq;
    const char *p = parse_number(text, &seq.major);
    if (p == NULL || *p != '-')
        return CATRACA_E_INVALID;
    p = parse_number(p + 1, &seq.minor);
    if (p == NULL || *p != '\0')
        return CATRACA_E_INVALID;
    *out = seq;
    return 0;
}

bool log_event_is_valid(const char *event)
{
    return event != NULL && event[0] != '\0' && strnlen(event, CATRACA_ID_MAX + 1) <= CATRACA_ID_MAX;
}

int log_items_check(const struct log_append_item *items, size_t count)
{
    if (items == NULL && count != 0)
        return CATRACA_E_INVALID;
    for (size_t i = 0; i < count; i++) {
        const struct log_append_item *item = &items[i];
        if (!log_event_is_valid(item->event) || item->record_length > CATRACA_COMMAND_ENCODED_MAX ||
            (item->record == NULL && item->record_length != 0))
            return CATRACA_E_INVALID;
        if (item->idempotency_key != NULL &&
            (item->idempotency_scope == NULL || item->idempotency_key[0] == '\0'))
            return CATRACA_E_INVALID;
    }
    return 0;
}
