/*
 * client_address.h - which address a request came from, for the per-IP rate
 * limit, when proxies (a load balancer terminating TLS) stand in front.
 *
 * Only a peer in the trusted list (--trusted-proxy: addresses and CIDR
 * networks) is believed about its own client, through X-Forwarded-For. The
 * hops are read from the right (the nearest proxy's entry is last, RFC 7239
 * section 5.2's order for the older header too; several X-Forwarded-For
 * fields count as one list, in order): the client is the rightmost hop that
 * is not trusted. Everything left of it was written by that client and is
 * never believed. An entry that is not an IP address stops the walk at the
 * nearest trusted hop; when every hop is trusted the leftmost is the client.
 * With an empty list the TCP peer is the client, whatever the headers say.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, a dual-stack socket's view of
 * an IPv4 peer) are read as the IPv4 address. Pure: no I/O, no allocation.
 * Bounds: CLIENT_ADDRESS_TRUST_MAX networks; CLIENT_ADDRESS_HOPS_MAX hops are
 * walked (beyond, the nearest trusted hop reached is the answer).
 */
#ifndef CATRACA_GATEWAY_CLIENT_ADDRESS_H
#define CATRACA_GATEWAY_CLIENT_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLIENT_ADDRESS_TRUST_MAX 32
#define CLIENT_ADDRESS_HOPS_MAX 64
#define CLIENT_ADDRESS_TEXT_MAX 46 /* INET6_ADDRSTRLEN */

struct client_address_network {
    uint8_t bytes[16]; /* IPv4 in the first 4 */
    uint8_t family;    /* 4 or 6 */
    uint8_t prefix_bits;
};

struct client_address_trust {
    uint32_t count;
    struct client_address_network networks[CLIENT_ADDRESS_TRUST_MAX];
};

/*
 * Reads "10.0.0.0/8, 127.0.0.1 ::1 fd00::/8" (commas and/or spaces between
 * entries; an address alone is a /32 or /128). 0, or -1 with the reason in
 * error (room for 160 bytes). "" is an empty list.
 */
int client_address_trust_parse(const char *list, struct client_address_trust *out, char error[160]);
/* True when text is an IP address inside one of the trusted networks. */
bool client_address_is_trusted(const struct client_address_trust *trust, const char *text);
/*
 * The client's address in out (normalised text): peer, or a hop of the
 * X-Forwarded-For values (forwarded[0..count), in the order they arrived)
 * as the contract above says.
 */
void client_address_pick(const struct client_address_trust *trust, const char *peer,
                         const char *const *forwarded, size_t count,
                         char out[CLIENT_ADDRESS_TEXT_MAX]);

#endif
