/*
 * fault_proxy.h - a TCP relay on a loopback port in front of a real server
 * (Redis, a Kafka broker, PostgreSQL), for tests that cut connections on
 * demand. Clients connect to fault_proxy_port(); each connection gets a
 * connection of its own to the server, and bytes are relayed both ways by one
 * thread until a fault is set.
 *
 * The faults (fault_proxy_set_mode) act on every connection, open or new,
 * until the mode is set back to FAULT_PROXY_RELAY:
 *   - CUT_REQUEST: a connection is closed when the client sends something;
 *     what it sent never reaches the server.
 *   - CUT_REPLY: what the client sends reaches the server; the connection is
 *     closed as soon as the server answers, before the answer is relayed (the
 *     "dropped reply" of a network log: the server did it, the client cannot
 *     know).
 *   - STALL: nothing is relayed either way and connections stay open (a
 *     paused server or a partition): the client's own time-out must fire.
 *     Setting RELAY again closes the stalled connections, dropping what they
 *     held, so the server never sees a request after its client gave up.
 *   - DOWN: every connection is closed now, and new ones as soon as they are
 *     accepted (a server that is gone).
 *
 * Kafka: clients connect to the addresses brokers advertise, so a broker
 * behind the proxy must advertise the proxy's port: choose two free ports,
 * start the broker listening on one and advertising the other, and the proxy
 * listening on the other (listen_port) in front of the first.
 *
 * Bounds: FAULT_PROXY_CONNECTIONS_MAX connections at once (more are closed on
 * accept); a write that cannot proceed for FAULT_PROXY_WRITE_TIMEOUT_MS cuts
 * its connection. Test code only.
 */
#ifndef CATRACA_TESTS_LOG_FAULT_PROXY_H
#define CATRACA_TESTS_LOG_FAULT_PROXY_H

#include <stdint.h>

#define FAULT_PROXY_CONNECTIONS_MAX 64
#define FAULT_PROXY_WRITE_TIMEOUT_MS 5000

enum fault_proxy_mode {
    FAULT_PROXY_RELAY = 0,
    FAULT_PROXY_CUT_REQUEST,
    FAULT_PROXY_CUT_REPLY,
    FAULT_PROXY_STALL,
    FAULT_PROXY_DOWN,
};

struct fault_proxy;

/*
 * Listens on 127.0.0.1:listen_port (0: a free port) and relays to
 * upstream_host:upstream_port (numeric IPv4). 0, or -1 with errno set.
 */
int fault_proxy_start(const char *upstream_host, int upstream_port, int listen_port,
                      struct fault_proxy **out);
int fault_proxy_port(const struct fault_proxy *proxy);
/* Takes effect before it returns: every connection already follows the new mode. */
void fault_proxy_set_mode(struct fault_proxy *proxy, enum fault_proxy_mode mode);
/* Connections closed by a fault since the start (tests check a fault did fire). */
uint64_t fault_proxy_cuts(struct fault_proxy *proxy);
/* Stops the thread and closes everything. */
void fault_proxy_stop(struct fault_proxy *proxy);

#endif
