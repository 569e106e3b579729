/* client_address.c - contract in client_address.h. */
#include "gateway/client_address.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* An address (no prefix) into bytes/family; IPv4-mapped IPv6 becomes IPv4. false if not one. */
static bool parse_address(const char *text, size_t length, struct client_address_network *out)
{
    char buffer[CLIENT_ADDRESS_TEXT_MAX];
    if (length == 0 || length >= sizeof(buffer))
        return false;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buffer, out->bytes) == 1) {
        out->family = 4;
        out->prefix_bits = 32;
        return true;
    }
    if (inet_pton(AF_INET6, buffer, out->bytes) != 1)
        return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->bytes, mapped, sizeof(mapped)) == 0) {
        memmove(out->bytes, out->bytes + 12, 4);
        memset(out->bytes + 4, 0, 12);
        out->family = 4;
        out->prefix_bits = 32;
        return true;
    }
    out->family = 6;
    out->prefix_bits = 128;
    return true;
}

static bool contains(const struct client_address_network *network,
                     const struct client_address_network *address)
{
    if (network->family != address->family)
        return false;
    uint32_t whole = network->prefix_bits / 8, rest = network->prefix_bits % 8;
    if (memcmp(network->bytes, address->bytes, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (network->bytes[whole] & mask) == (address->bytes[whole] & mask);
}

static bool is_trusted(const struct client_address_trust *trust,
                       const struct client_address_network *address)
{
    for (uint32_t i = 0; i < trust->count; i++)
        if (contains(&trust->networks[i], address))
            return true;
    return false;
}

int client_address_trust_parse(const char *list, struct client_address_trust *out, char error[160])
{
    memset(out, 0, sizeof(*out));
    const char *p = list;
    while (*p != '\0') {
        p += strspn(p, ", \t");
        size_t length = strcspn(p, ", \t");
        if (length == 0)
            break;
        const char *slash = memchr(p, '/', length);
        size_t address_length = slash ? (size_t)(slash - p) : length;
        struct client_address_network network;
        if (!parse_address(p, address_length, &network)) {
            snprintf(error, 160, "--trusted-proxy: \"%.*s\" is not an IP address or CIDR",
                     length > 64 ? 64 : (int)length, p);
            return -1;
        }
        if (slash != NULL) {
            size_t digits = length - address_length - 1;
            unsigned bits = 0;
            bool is_number = digits >= 1 && digits <= 3;
            for (size_t i = 0; is_number && i < digits; i++) {
                is_number = slash[1 + i] >= '0' && slash[1 + i] <= '9';
                bits = bits * 10 + (unsigned)(slash[1 + i] - '0');
            }
            unsigned bits_max = network.family == 4 ? 32 : 128;
            if (!is_number || bits > bits_max) {
                snprintf(error, 160, "--trusted-proxy: \"%.*s\" has a bad prefix length",
                         length > 64 ? 64 : (int)length, p);
                return -1;
            }
            network.prefix_bits = (uint8_t)bits;
        }
        if (out->count == CLIENT_ADDRESS_TRUST_MAX) {
            snprintf(error, 160, "--trusted-proxy: more than %d entries", CLIENT_ADDRESS_TRUST_MAX);
            return -1;
        }
        out->networks[out->count++] = network;
        p += length;
    }
    return 0;
}

bool client_address_is_trusted(const struct client_address_trust *trust, const char *text)
{
    struct client_address_network address;
    return text != NULL && parse_address(text, strlen(text), &address) &&
           is_trusted(trust, &address);
}

static void format(const struct client_address_network *address, char out[CLIENT_ADDRESS_TEXT_MAX])
{
    if (inet_ntop(address->family == 4 ? AF_INET : AF_INET6, address->bytes, out,
                  CLIENT_ADDRESS_TEXT_MAX) == NULL)
        out[0] = '\0';
}

void client_address_pick(const struct client_address_trust *trust, const char *peer,
                         const char *const *forwarded, size_t count,
                         char out[CLIENT_ADDRESS_TEXT_MAX])
{
    snprintf(out, CLIENT_ADDRESS_TEXT_MAX, "%s", peer);
    struct client_address_network hop;
    if (trust->count == 0 || !parse_address(peer, strlen(peer), &hop) || !is_trusted(trust, &hop))
        return;
    format(&hop, out);
    uint32_t walked = 0;
    for (size_t h = count; h-- > 0;) {
        const char *value = forwarded[h];
        size_t end = strlen(value);
        while (end > 0) {
            size_t start = end;
            while (start > 0 && value[start - 1] != ',')
                start--;
            size_t first = start, last = end;
            while (first < last && (value[first] == ' ' || value[first] == '\t'))
                first++;
            while (last > first && (value[last - 1] == ' ' || value[last - 1] == '\t'))
                last--;
            end = start > 0 ? start - 1 : 0;
            if (first == last)
                continue; /* an empty element ("a,,b"): nothing said */
            if (++walked > CLIENT_ADDRESS_HOPS_MAX ||
                !parse_address(value + first, last - first, &hop))
                return; /* out holds the nearest trusted hop */
            format(&hop, out);
            if (!is_trusted(trust, &hop))
                return;
        }
    }
}
