/*
 * fault_proxy.c - contract in fault_proxy.h. One thread, poll(2) over the
 * listening socket, a wake pipe and both ends of every connection. A mode
 * change is a generation number: fault_proxy_set_mode() waits until the
 * thread has applied it, so a test that sets STALL and then sends knows the
 * proxy already stalls.
 */
#include "fault_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_CHUNK 65536

struct connection {
    int client;
    int server;
};

struct fault_proxy {
    int listener;
    int wake[2];
    int port;
    struct sockaddr_in upstream;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t applied_changed;
    enum fault_proxy_mode mode; /* requested; under mutex */
    uint64_t requested, applied; /* generations; under mutex */
    bool is_stopping;            /* under mutex */
    atomic_uint_fast64_t cuts;
    struct connection connections[FAULT_PROXY_CONNECTIONS_MAX];
    size_t connection_count; /* the thread's only */
    uint8_t chunk[RELAY_CHUNK];
};

static void connection_close(struct fault_proxy *proxy, struct connection *c, bool is_fault)
{
    if (c->client < 0)
        return;
    /* RST rather than FIN where possible: a cut connection, not a polite close. */
    struct linger hard = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->client, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
    close(c->client);
    close(c->server);
    c->client = c->server = -1;
    if (is_fault)
        atomic_fetch_add(&proxy->cuts, 1);
}

static void close_all(struct fault_proxy *proxy, bool is_fault)
{
    for (size_t i = 0; i < proxy->connection_count; i++)
        connection_close(proxy, &proxy->connections[i], is_fault);
}

static void compact(struct fault_proxy *proxy)
{
    size_t kept = 0;
    for (size_t i = 0; i < proxy->connection_count; i++)
        if (proxy->connections[i].client >= 0)
            proxy->connections[kept++] = proxy->connections[i];
    proxy->connection_count = kept;
}

/* Writes all of data within FAULT_PROXY_WRITE_TIMEOUT_MS; false when it could not. */
static bool send_all(int fd, const uint8_t *data, size_t length)
{
    while (length > 0) {
        struct pollfd ready = {.fd = fd, .events = POLLOUT};
        if (poll(&ready, 1, FAULT_PROXY_WRITE_TIMEOUT_MS) <= 0)
            return false;
        ssize_t sent = send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (sent <= 0)
            return false;
        data += sent;
        length -= (size_t)sent;
    }
    return true;
}

static void accept_one(struct fault_proxy *proxy, enum fault_proxy_mode mode)
{
    int client = accept(proxy->listener, NULL, NULL);
    if (client < 0)
        return;
    struct connection c = {.client = client, .server = -1};
    if (mode == FAULT_PROXY_DOWN || proxy->connection_count == FAULT_PROXY_CONNECTIONS_MAX) {
        c.server = socket(AF_INET, SOCK_STREAM, 0); /* connection_close closes both */
        connection_close(proxy, &c, mode == FAULT_PROXY_DOWN);
        return;
    }
    c.server = socket(AF_INET, SOCK_STREAM, 0);
    if (c.server < 0 ||
        connect(c.server, (const struct sockaddr *)&proxy->upstream, sizeof(proxy->upstream)) != 0) {
        connection_close(proxy, &c, false);
        return;
    }
    proxy->connections[proxy->connection_count++] = c;
}

/* Moves what one end has to the other, as the mode says. */
static void relay(struct fault_proxy *proxy, struct connection *c, bool is_from_client,
                  enum fault_proxy_mode mode)
{
    int from = is_from_client ? c->client : c->server, to = is_from_client ? c->server : c->client;
    ssize_t got = recv(from, proxy->chunk, sizeof(proxy->chunk), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (got <= 0) {
        connection_close(proxy, c, false);
        return;
    }
    if ((is_from_client && mode == FAULT_PROXY_CUT_REQUEST) ||
        (!is_from_client && mode == FAULT_PROXY_CUT_REPLY)) {
        connection_close(proxy, c, true);
        return;
    }
    if (!send_all(to, proxy->chunk, (size_t)got))
        connection_close(proxy, c, false);
}

/* What a mode change does at once to the open connections. */
static void apply_mode(struct fault_proxy *proxy, enum fault_proxy_mode from,
                       enum fault_proxy_mode to)
{
    if (to == FAULT_PROXY_DOWN)
        close_all(proxy, true);
    else if (from == FAULT_PROXY_STALL && to != FAULT_PROXY_STALL)
        close_all(proxy, true); /* what they held must never reach the server late */
    compact(proxy);
}

static void *proxy_main(void *argument)
{
    struct fault_proxy *proxy = argument;
    enum fault_proxy_mode applied_mode = FAULT_PROXY_RELAY;
    struct pollfd fds[2 + 2 * FAULT_PROXY_CONNECTIONS_MAX];
    for (;;) {
        pthread_mutex_lock(&proxy->mutex);
        enum fault_proxy_mode mode = proxy->mode;
        bool is_stopping = proxy->is_stopping;
        uint64_t generation = proxy->requested;
        pthread_mutex_unlock(&proxy->mutex);
        if (is_stopping)
            break;
        if (mode != applied_mode)
            apply_mode(proxy, applied_mode, mode);
        applied_mode = mode;
        pthread_mutex_lock(&proxy->mutex);
        proxy->applied = generation;
        pthread_cond_broadcast(&proxy->applied_changed);
        pthread_mutex_unlock(&proxy->mutex);

        fds[0] = (struct pollfd){.fd = proxy->wake[0], .events = POLLIN};
        fds[1] = (struct pollfd){.fd = proxy->listener, .events = POLLIN};
        size_t polled = 2;
        size_t watched = mode == FAULT_PROXY_STALL ? 0 : proxy->connection_count;
        for (size_t i = 0; i < watched; i++) {
            fds[polled++] = (struct pollfd){.fd = proxy->connections[i].client, .events = POLLIN};
            fds[polled++] = (struct pollfd){.fd = proxy->connections[i].server, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)polled, -1) < 0)
            continue;
        if (fds[0].revents != 0) {
            char drain[64];
            while (read(proxy->wake[0], drain, sizeof(drain)) > 0) {
            }
            continue; /* a mode change or a stop: apply it before relaying anything */
        }
        for (size_t i = 0; i < watched; i++) {
            struct connection *c = &proxy->connections[i];
            if (c->client >= 0 && fds[2 + 2 * i].revents != 0)
                relay(proxy, c, true, mode);
            if (c->client >= 0 && fds[3 + 2 * i].revents != 0)
                relay(proxy, c, false, mode);
        }
        compact(proxy);
        if (fds[1].revents != 0)
            accept_one(proxy, mode);
    }
    close_all(proxy, false);
    return NULL;
}

static void wake(struct fault_proxy *proxy)
{
    char byte = 1;
    ssize_t ignored = write(proxy->wake[1], &byte, 1); /* a full pipe already wakes it */
    (void)ignored;
}

int fault_proxy_start(const char *upstream_host, int upstream_port, int listen_port,
                      struct fault_proxy **out)
{
    struct fault_proxy *proxy = calloc(1, sizeof(*proxy));
    if (proxy == NULL)
        return -1;
    proxy->upstream = (struct sockaddr_in){.sin_family = AF_INET,
                                           .sin_port = htons((uint16_t)upstream_port)};
    if (inet_pton(AF_INET, upstream_host, &proxy->upstream.sin_addr) != 1) {
        free(proxy);
        errno = EINVAL;
        return -1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)listen_port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    int reuse = 1;
    proxy->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (proxy->listener < 0 || pipe(proxy->wake) != 0) {
        free(proxy);
        return -1;
    }
    fcntl(proxy->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(proxy->wake[1], F_SETFL, O_NONBLOCK);
    setsockopt(proxy->listener, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
    if (bind(proxy->listener, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        listen(proxy->listener, 64) != 0 ||
        getsockname(proxy->listener, (struct sockaddr *)&address, &length) != 0) {
        close(proxy->listener);
        close(proxy->wake[0]);
        close(proxy->wake[1]);
        free(proxy);
        return -1;
    }
    proxy->port = ntohs(address.sin_port);
    pthread_mutex_init(&proxy->mutex, NULL);
    pthread_cond_init(&proxy->applied_changed, NULL);
    if (pthread_create(&proxy->thread, NULL, proxy_main, proxy) != 0) {
        close(proxy->listener);
        close(proxy->wake[0]);
        close(proxy->wake[1]);
        free(proxy);
        return -1;
    }
    *out = proxy;
    return 0;
}

int fault_proxy_port(const struct fault_proxy *proxy)
{
    return proxy->port;
}

void fault_proxy_set_mode(struct fault_proxy *proxy, enum fault_proxy_mode mode)
{
    pthread_mutex_lock(&proxy->mutex);
    proxy->mode = mode;
    uint64_t generation = ++proxy->requested;
    wake(proxy);
    while (proxy->applied < generation)
        pthread_cond_wait(&proxy->applied_changed, &proxy->mutex);
    pthread_mutex_unlock(&proxy->mutex);
}

uint64_t fault_proxy_cuts(struct fault_proxy *proxy)
{
    return atomic_load(&proxy->cuts);
}

void fault_proxy_stop(struct fault_proxy *proxy)
{
    if (proxy == NULL)
        return;
    pthread_mutex_lock(&proxy->mutex);
    proxy->is_stopping = true;
    wake(proxy);
    pthread_mutex_unlock(&proxy->mutex);
    pthread_join(proxy->thread, NULL);
    close(proxy->listener);
    close(proxy->wake[0]);
    close(proxy->wake[1]);
    pthread_mutex_destroy(&proxy->mutex);
    pthread_cond_destroy(&proxy->applied_changed);
    free(proxy);
}
