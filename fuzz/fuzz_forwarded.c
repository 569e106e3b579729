/*
 * libFuzzer: --trusted-proxy lists and X-Forwarded-For values (gateway/client_address.h) never
 * crash, and the address picked is the peer or an IP address the input contained, never
 * longer than CLIENT_ADDRESS_TEXT_MAX. Input: the trust list, a NUL, the peer, a NUL, then
 * X-Forwarded-For fields separated by newlines.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/client_address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELDS_MAX 8

static int is_address(const char *text)
{
    uint8_t bytes[16];
    return inet_pton(AF_INET, text, bytes) == 1 || inet_pton(AF_INET6, text, bytes) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *list = text;
    const char *peer = list + strlen(list) + 1 <= text + size ? list + strlen(list) + 1 : "";
    const char *rest =
        peer[0] != '\0' && peer + strlen(peer) + 1 <= text + size ? peer + strlen(peer) + 1 : "";
    struct client_address_trust trust;
    char why[160];
    if (client_address_trust_parse(list, &trust, why) == 0) {
        const char *fields[FIELDS_MAX];
        size_t count = 0;
        char *cursor = (char *)rest;
        while (count < FIELDS_MAX && cursor != NULL && *cursor != '\0') {
            fields[count++] = cursor;
            cursor = strchr(cursor, '\n');
            if (cursor != NULL)
                *cursor++ = '\0';
        }
        char out[CLIENT_ADDRESS_TEXT_MAX];
        client_address_pick(&trust, peer, fields, count, out);
        if (strnlen(out, CLIENT_ADDRESS_TEXT_MAX) == CLIENT_ADDRESS_TEXT_MAX)
            abort();
        /* Not the peer as given: then an address, normalised. */
        if (strncmp(out, peer, CLIENT_ADDRESS_TEXT_MAX - 1) != 0 && !is_address(out))
            abort();
    }
    free(text);
    return 0;
}
