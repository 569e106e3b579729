/*
 * rush_http.h - one HTTP/1.1 keep-alive client connection: a non-blocking
 * socket, one request at a time (no pipelining), the answer parsed
 * incrementally by http_parser into fixed buffers.
 *
 * The caller owns struct rush_connection (rush allocates an array of them once)
 * and the epoll instance; each connection is registered with its index as the
 * epoll data. Nothing here allocates after rush_connection_init().
 */
#ifndef CATRACA_RUSH_HTTP_H
#define CATRACA_RUSH_HTTP_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RUSH_REQUEST_MAX 3072 /* request line, headers and body */
#define RUSH_BODY_MAX 8192    /* a larger answer body is a protocol error */

enum rush_connection_state {
    RUSH_CONNECTION_CLOSED = 0,
    RUSH_CONNECTION_CONNECTING,
    RUSH_CONNECTION_IDLE, /* connected, no request outstanding */
    RUSH_CONNECTION_BUSY, /* a request written (or being written), its answer not complete */
};

/* What a readiness event on a connection amounted to. */
enum rush_io {
    RUSH_IO_NOTHING = 0, /* more bytes are needed */
    RUSH_IO_CONNECTED,   /* CONNECTING -> IDLE */
    RUSH_IO_RESPONSE,    /* the answer is complete in status/body; the connection is IDLE,
                            or CLOSED when the server asked to close */
    RUSH_IO_ERROR,       /* reset, refused, closed mid-answer or malformed: now CLOSED */
};

struct rush_server_address {
    struct sockaddr_storage address;
    socklen_t length;
    char host_header[160]; /* host:port as sent in Host: */
};

struct rush_connection {
    int fd;
    uint32_t index;
    uint8_t state; /* enum rush_connection_state */
    bool is_write_armed;
    bool is_complete;
    bool is_malformed;
    http_parser parser;
    /*
     * The owner's bookkeeping: what was asked, for whom, since when. Zeroed by
     * rush_connection_init() like everything before `out`, so the owner can let
     * kind 0 mean "no request outstanding" on a connection never used yet.
     */
    uint32_t buyer;
    uint8_t kind;
    bool is_long_poll;
    int64_t sent_us;
    uint32_t out_length;
    uint32_t out_sent;
    char out[RUSH_REQUEST_MAX];
    /* The answer. */
    int status;
    uint32_t retry_after_s; /* Retry-After in seconds, 0 when absent */
    char header_name[16];   /* the header being read, truncated: only short names matter */
    uint8_t header_name_length;
    bool was_header_value;      /* the last header callback was a value */
    bool is_retry_after_header; /* the value being read is Retry-After's */
    uint32_t body_length;
    char body[RUSH_BODY_MAX + 1]; /* NUL-terminated */
};

/* Resolves host:port once (blocking getaddrinfo). 0, or -1 after a message on stderr. */
int rush_http_resolve(const char *host, const char *port, struct rush_server_address *out);

void rush_connection_init(struct rush_connection *c, uint32_t index);
/*
 * Starts a non-blocking connect and registers the socket with epoll_fd (or none
 * when epoll_fd < 0). 0 (state CONNECTING, or IDLE when it connected at once), or
 * -1 (state CLOSED).
 */
int rush_connection_open(struct rush_connection *c, const struct rush_server_address *server,
                         int epoll_fd);
void rush_connection_close(struct rush_connection *c, int epoll_fd);

/*
 * Writes a request into c->out: method, path, Host, optional bearer token,
 * optional one extra header, optional JSON body. A body always goes with
 * Content-Type: application/json (the server answers 415 without it), and
 * every request has a Content-Length. Returns 0, or -1 when it does not fit
 * RUSH_REQUEST_MAX (nothing to send).
 */
int rush_connection_format(struct rush_connection *c, const struct rush_server_address *server,
                           const char *method, const char *path, const char *token,
                           const char *header_name, const char *header_value, const char *body);
/* Installs ready-made request bytes (the healthz loop reuses one request). */
int rush_connection_set_request(struct rush_connection *c, const char *bytes, uint32_t length);
/*
 * Sends c->out. Pre-condition: state IDLE. Returns RUSH_IO_NOTHING (BUSY now) or
 * RUSH_IO_ERROR (CLOSED now).
 */
enum rush_io rush_connection_send(struct rush_connection *c, int epoll_fd);
/* Handles epoll events for c (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). */
enum rush_io rush_connection_on_event(struct rush_connection *c, int epoll_fd, uint32_t events);
/*
 * Blocking round trip for set-up and tear-down: connects when CLOSED, sends
 * c->out, waits up to timeout_ms for the whole answer. RUSH_IO_RESPONSE or
 * RUSH_IO_ERROR. The connection must not be registered with an epoll instance.
 */
enum rush_io rush_connection_roundtrip(struct rush_connection *c,
                                       const struct rush_server_address *server, int timeout_ms);

#endif
