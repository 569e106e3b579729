/*
 * libFuzzer target for pg_copy_decisions: the audit decodes whatever a PostgreSQL server sends
 * in a binary COPY. Any bytes, split into messages at any point, must be refused or decoded
 * within bounds: every text a row gives is a C string inside the message, every ticket count
 * within CATRACA_QUANTITY_MAX.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_copy.h"

static int check_row(void *context, const struct store_decision *row)
{
    (void)context;
    if (strlen(row->customer) > (size_t)1 << 30 || strlen(row->category) > (size_t)1 << 30 ||
        row->ticket_count > CATRACA_QUANTITY_MAX)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte says where the second message starts (0: one message). */
    if (size == 0)
        return 0;
    size_t split = data[0] < size ? data[0] : 0;
    data++;
    size--;
    struct pg_copy_decoder decoder = {0};
    size_t parts[2][2] = {{0, split ? split : size}, {split ? split : size, size}};
    for (int i = 0; i < 2; i++) {
        size_t length = parts[i][1] - parts[i][0];
        if (i == 1 && length == 0)
            break;
        /* A message of its own: the decoder writes in it, and ASan sees its bounds. */
        uint8_t *message = malloc(length ? length : 1);
        if (message == NULL)
            return 0;
        memcpy(message, data + parts[i][0], length);
        int result = pg_copy_decisions(&decoder, message, length, check_row, NULL);
        free(message);
        if (result != 0)
            break;
    }
    return 0;
}
