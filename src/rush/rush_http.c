/*
 * rush_http.c - a keep-alive HTTP/1.1 client connection over a non-blocking
 * socket (see rush_http.h).
 *
 * One request at a time per connection, so an answer is always the answer to
 * the request in c->out: no pipelining bookkeeping. The socket stays registered
 * for EPOLLIN, edge-triggered, while open (an idle connection the server closes
 * shows up as a read of 0 bytes); EPOLLOUT is armed only while connecting or
 * when a write could not finish, so a request costs one write and one read.
 * Edge-triggered because level-triggered epoll re-polls every socket it
 * reported at the next epoll_wait(): measured against `wrk` on GET /healthz
 * (bench/rush_vs_wrk.sh) that cost a third of the throughput on 2 cores.
 */
#include "rush/rush_http.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

/* Large enough for many answers at once; the program has one thread. */
static char read_buffer[64 * 1024];

int rush_http_resolve(const char *host, const char *port, struct rush_server_address *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    int error = getaddrinfo(host, port, &hints, &found);
    if (error != 0 || found == NULL) {
        fprintf(stderr, "catraca rush: cannot resolve %s:%s: %s\n", host, port,
                gai_strerror(error));
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->address, found->ai_addr, found->ai_addrlen);
    out->length = found->ai_addrlen;
    snprintf(out->host_header, sizeof(out->host_header), "%s:%s", host, port);
    freeaddrinfo(found);
    return 0;
}

/* Everything but the two buffers is zeroed, the owner's bookkeeping included (rush_http.h). */
static_assert(offsetof(struct rush_connection, kind) < offsetof(struct rush_connection, out) &&
                  offsetof(struct rush_connection, buyer) < offsetof(struct rush_connection, out),
              "rush_connection_init() must zero the owner's bookkeeping");

void rush_connection_init(struct rush_connection *c, uint32_t index)
{
    memset(c, 0, offsetof(struct rush_connection, out));
    c->fd = -1;
    c->index = index;
    c->state = RUSH_CONNECTION_CLOSED;
}

static void epoll_update(struct rush_connection *c, int epoll_fd, int operation, bool wants_write)
{
    c->is_write_armed = wants_write;
    if (epoll_fd < 0)
        return;
    struct epoll_event event = {.events = EPOLLIN | EPOLLET | (wants_write ? EPOLLOUT : 0u),
                                .data.u32 = c->index};
    epoll_ctl(epoll_fd, operation, c->fd, &event);
}

int rush_connection_open(struct rush_connection *c, const struct rush_server_address *server,
                         int epoll_fd)
{
    c->fd = socket(server->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(c->fd, (const struct sockaddr *)&server->address, server->length);
    if (rc != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = rc == 0 ? RUSH_CONNECTION_IDLE : RUSH_CONNECTION_CONNECTING;
    epoll_update(c, epoll_fd, EPOLL_CTL_ADD, rc != 0);
    return 0;
}

void rush_connection_close(struct rush_connection *c, int epoll_fd)
{
    if (c->fd >= 0) {
        if (epoll_fd >= 0)
            epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = RUSH_CONNECTION_CLOSED;
    c->is_write_armed = false;
}

int rush_connection_format(struct rush_connection *c, const struct rush_server_address *server,
                           const char *method, const char *path, const char *token,
                           const char *header_name, const char *header_value, const char *body)
{
    size_t body_length = body ? strlen(body) : 0;
    int n = snprintf(c->out, sizeof(c->out),
                     "%s %s HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s%s%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, server->host_header, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "", header_name ? header_name : "",
                     header_name ? ": " : "", header_name ? header_value : "",
                     header_name ? "\r\n" : "", body ? "Content-Type: application/json\r\n" : "",
                     body_length, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof(c->out))
        return -1;
    c->out_length = (uint32_t)n;
    return 0;
}

int rush_connection_set_request(struct rush_connection *c, const char *bytes, uint32_t length)
{
    if (length > sizeof(c->out))
        return -1;
    memcpy(c->out, bytes, length);
    c->out_length = length;
    return 0;
}

/* ---- the answer, through http_parser's callbacks ------------------------------------------ */

static int on_header_field(http_parser *parser, const char *at, size_t length)
{
    struct rush_connection *c = parser->data;
    if (c->was_header_value) { /* a new header begins */
        c->was_header_value = false;
        c->header_name_length = 0;
    }
    for (size_t i = 0; i < length && c->header_name_length < sizeof(c->header_name) - 1; i++)
        c->header_name[c->header_name_length++] = at[i];
    c->header_name[c->header_name_length] = '\0';
    return 0;
}

static int on_header_value(http_parser *parser, const char *at, size_t length)
{
    struct rush_connection *c = parser->data;
    if (!c->was_header_value) { /* the value of the name just read begins */
        c->was_header_value = true;
        c->is_retry_after_header = strcasecmp(c->header_name, "Retry-After") == 0;
    }
    if (!c->is_retry_after_header)
        return 0;
    for (size_t i = 0; i < length && at[i] >= '0' && at[i] <= '9' && c->retry_after_s < 3600; i++)
        c->retry_after_s = c->retry_after_s * 10 + (uint32_t)(at[i] - '0');
    return 0;
}

static int on_headers_complete(http_parser *parser)
{
    struct rush_connection *c = parser->data;
    c->status = (int)parser->status_code;
    return 0;
}

static int on_body(http_parser *parser, const char *at, size_t length)
{
    struct rush_connection *c = parser->data;
    if (length > RUSH_BODY_MAX - c->body_length) {
        c->is_malformed = true;
        return 1; /* stops the parser: the answer is larger than any rush expects */
    }
    memcpy(c->body + c->body_length, at, length);
    c->body_length += (uint32_t)length;
    return 0;
}

static int on_message_complete(http_parser *parser)
{
    struct rush_connection *c = parser->data;
    c->is_complete = true;
    c->body[c->body_length] = '\0';
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void answer_reset(struct rush_connection *c)
{
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->is_complete = false;
    c->is_malformed = false;
    c->status = 0;
    c->retry_after_s = 0;
    c->header_name_length = 0;
    c->header_name[0] = '\0';
    c->was_header_value = false;
    c->is_retry_after_header = false;
    c->body_length = 0;
    c->body[0] = '\0';
}

/* ---- writing and reading ------------------------------------------------------------------ */

static enum rush_io fail(struct rush_connection *c, int epoll_fd)
{
    rush_connection_close(c, epoll_fd);
    return RUSH_IO_ERROR;
}

static enum rush_io write_pending(struct rush_connection *c, int epoll_fd)
{
    while (c->out_sent < c->out_length) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_length - c->out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_sent += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->is_write_armed)
                epoll_update(c, epoll_fd, EPOLL_CTL_MOD, true);
            return RUSH_IO_NOTHING;
        }
        return fail(c, epoll_fd);
    }
    if (c->is_write_armed)
        epoll_update(c, epoll_fd, EPOLL_CTL_MOD, false);
    return RUSH_IO_NOTHING;
}

enum rush_io rush_connection_send(struct rush_connection *c, int epoll_fd)
{
    if (c->state != RUSH_CONNECTION_IDLE || c->out_length == 0)
        return fail(c, epoll_fd);
    answer_reset(c);
    c->out_sent = 0;
    c->state = RUSH_CONNECTION_BUSY;
    return write_pending(c, epoll_fd);
}

/* After a complete answer: IDLE, or CLOSED when the server will close. */
static enum rush_io finish_answer(struct rush_connection *c, int epoll_fd)
{
    c->state = RUSH_CONNECTION_IDLE;
    if (!http_should_keep_alive(&c->parser))
        rush_connection_close(c, epoll_fd);
    return RUSH_IO_RESPONSE;
}

/* End of stream or reset (n <= 0), or bytes nobody asked for on an idle connection. */
static enum rush_io read_closed(struct rush_connection *c, int epoll_fd, ssize_t n)
{
    if (n == 0 && c->state == RUSH_CONNECTION_BUSY) {
        http_parser_execute(&c->parser, &settings, NULL, 0); /* EOF may end an answer */
        if (c->is_complete && !c->is_malformed) {
            rush_connection_close(c, epoll_fd);
            return RUSH_IO_RESPONSE;
        }
    }
    return fail(c, epoll_fd);
}

/*
 * Edge-triggered: drains what the socket holds (one recv() unless the buffer filled up), so
 * the next bytes to arrive raise a new edge. One request at a time means nothing arrives
 * after a complete answer until the next request is sent.
 */
static enum rush_io read_available(struct rush_connection *c, int epoll_fd)
{
    for (;;) {
        ssize_t n = recv(c->fd, read_buffer, sizeof(read_buffer), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return RUSH_IO_NOTHING;
        if (n <= 0 || c->state != RUSH_CONNECTION_BUSY)
            return read_closed(c, epoll_fd, n);
        size_t parsed = http_parser_execute(&c->parser, &settings, read_buffer, (size_t)n);
        if (c->is_malformed || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || parsed != (size_t)n)
            return fail(c, epoll_fd);
        if (c->is_complete)
            return finish_answer(c, epoll_fd);
        if ((size_t)n < sizeof(read_buffer))
            return RUSH_IO_NOTHING;
    }
}

static enum rush_io finish_connect(struct rush_connection *c, int epoll_fd)
{
    int error = 0;
    socklen_t length = sizeof(error);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0)
        return fail(c, epoll_fd);
    c->state = RUSH_CONNECTION_IDLE;
    epoll_update(c, epoll_fd, EPOLL_CTL_MOD, false);
    return RUSH_IO_CONNECTED;
}

enum rush_io rush_connection_on_event(struct rush_connection *c, int epoll_fd, uint32_t events)
{
    if (c->state == RUSH_CONNECTION_CLOSED)
        return RUSH_IO_NOTHING; /* a stale event for a socket closed earlier in this batch */
    if (c->state == RUSH_CONNECTION_CONNECTING)
        return (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) ? finish_connect(c, epoll_fd)
                                                           : RUSH_IO_NOTHING;
    if (events & EPOLLIN)
        return read_available(c, epoll_fd); /* reads before errors: an answer may precede a close */
    if (events & (EPOLLERR | EPOLLHUP))
        return fail(c, epoll_fd);
    if ((events & EPOLLOUT) && c->state == RUSH_CONNECTION_BUSY)
        return write_pending(c, epoll_fd);
    return RUSH_IO_NOTHING;
}

enum rush_io rush_connection_roundtrip(struct rush_connection *c,
                                       const struct rush_server_address *server, int timeout_ms)
{
    if (c->state == RUSH_CONNECTION_CLOSED && rush_connection_open(c, server, -1) != 0)
        return RUSH_IO_ERROR;
    bool is_sent = false;
    int64_t deadline_ms = clock_monotonic_ms() + timeout_ms;
    while (clock_monotonic_ms() < deadline_ms) {
        if (!is_sent && c->state == RUSH_CONNECTION_IDLE) {
            if (rush_connection_send(c, -1) != RUSH_IO_NOTHING)
                return RUSH_IO_ERROR;
            is_sent = true;
        }
        struct pollfd p = {.fd = c->fd,
                           .events = (short)(POLLIN | (c->is_write_armed ? POLLOUT : 0))};
        if (poll(&p, 1, 10) <= 0)
            continue;
        uint32_t events =
            ((p.revents & POLLIN) ? EPOLLIN : 0u) | ((p.revents & POLLOUT) ? EPOLLOUT : 0u) |
            ((p.revents & POLLERR) ? EPOLLERR : 0u) | ((p.revents & POLLHUP) ? EPOLLHUP : 0u);
        enum rush_io io = rush_connection_on_event(c, -1, events);
        if (io == RUSH_IO_RESPONSE || io == RUSH_IO_ERROR)
            return io;
    }
    rush_connection_close(c, -1);
    return RUSH_IO_ERROR;
}
