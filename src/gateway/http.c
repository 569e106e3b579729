/*
 * http.c - contract in http.h.
 *
 * Our own epoll loop over http_parser (Debian's libhttp-parser-dev) rather
 * than libmicrohttpd or libh2o; docs/DECISIONS.md has the measurements. In
 * short: every purchase parks until its group commit, so parking must cost
 * nothing (here it is a flag: no syscall, no thread hop), and each loop must
 * be woken once per batch of answers, not once per answer (an eventfd
 * written only when its inbox goes from empty to non-empty). And the layer
 * must be strict where the libraries are not: h2o 2.2 answers malformed
 * requests and long headers with a fixed text/plain 400, MHD with two header
 * blocks. The parsing itself stays the library's: http_parser refuses
 * Transfer-Encoding with Content-Length, invalid lengths and control bytes.
 *
 * Threads: each loop owns its connections; only it touches them. Other
 * threads reach a request through its loop's inbox (http_complete,
 * http_stream_*), under the loop's mutex.
 */
#include "gateway/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/logline.h"
#include "gateway/api_json.h"

#define LOOPS_MAX 64
#define READ_CHUNK_BYTES 65536
#define HEADER_FIELDS_MAX 64
#define QUERY_ARGUMENTS_MAX 16
#define STREAM_BUFFER_MAX 65536
#define STREAM_HEARTBEAT_MS 15000
#define OUTPUT_BYTES_MAX (8u << 20) /* queued, unread by the client; beyond: closed */
#define ACCEPT_BURST 64
#define ADVANCE_ROUNDS_MAX 64 /* requests of one connection per turn, then the others */
#define EVENTS_PER_WAIT 256
#define WAIT_MS_MAX 1000
#define STOP_GRACE_MS 3000
#define ACCESS_PATH_MAX 256 /* bytes of a path an access log line shows */

static_assert(HTTP_REQUEST_ID_MAX == LOGLINE_REQUEST_ID_MAX, "a request id fits a log line whole");

/* ---- deadlines ----------------------------------------------------------------------------- */

struct deadline {
    struct deadline *prev, *next;
    int64_t at_ms;
};

/*
 * Every deadline of one list has the same duration, so appending keeps the
 * list sorted by expiry and arming, disarming and expiring are O(1) (h2o's
 * h2o_timeout_t does the same).
 */
struct deadline_list {
    struct deadline head; /* sentinel of a circular list */
    int64_t duration_ms;
};

static void deadline_list_init(struct deadline_list *list, int64_t duration_ms)
{
    list->head.prev = list->head.next = &list->head;
    list->duration_ms = duration_ms;
}

static bool deadline_is_armed(const struct deadline *d)
{
    return d->next != NULL;
}

static void deadline_disarm(struct deadline *d)
{
    if (!deadline_is_armed(d))
        return;
    d->prev->next = d->next;
    d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

static void deadline_arm(struct deadline_list *list, struct deadline *d, int64_t now_ms)
{
    deadline_disarm(d);
    d->at_ms = now_ms + list->duration_ms;
    d->prev = list->head.prev;
    d->next = &list->head;
    list->head.prev->next = d;
    list->head.prev = d;
}

/* ---- structures ---------------------------------------------------------------------------- */

enum phase {
    PHASE_IDLE,     /* between requests: the idle deadline */
    PHASE_HEADERS,  /* request line and headers: the header deadline */
    PHASE_BODY,     /* the body: the body deadline */
    PHASE_HANDLING, /* the handler has it: answered, parked or streaming; nothing is read */
};

enum head_part { PART_URL, PART_FIELD, PART_VALUE };

enum deadline_kind { DEADLINE_IDLE, DEADLINE_HEADER, DEADLINE_BODY, DEADLINE_WRITE,
                     DEADLINE_HEARTBEAT, DEADLINE_KINDS };

struct loop;

struct connection {
    struct loop *loop;
    struct connection *prev, *next; /* loop->connections */
    struct connection *ready_next;  /* loop->ready: has more to do without an event */
    struct connection *dead_next;   /* loop->dead: freed after this turn */
    int fd;
    SSL *tls; /* NULL: plain TCP */
    bool is_dead, is_ready, is_closing, is_response_complete;
    enum phase phase;
    enum head_part part;
    enum deadline_kind deadline_kind;
    struct deadline deadline;
    http_parser parser;
    struct http_request *request; /* being read or handled */
    char *out;                    /* bytes to send */
    size_t out_length, out_sent;
    char *leftover; /* bytes after a pipelined request, parsed once it is answered */
    size_t leftover_length;
    int refusal_status; /* set by a parser callback: answered after http_parser_execute */
    const char *refusal_message;
    char client_ip[INET6_ADDRSTRLEN];
};

struct query_argument {
    const char *name, *value;
};

struct http_request {
    struct loop *loop;
    struct connection *connection; /* loop thread only; NULL once answered or abandoned */
    atomic_int references;         /* the connection's, the inbox's, http_retain's */
    const char *method;
    bool is_head, is_http10, is_keep_alive;
    bool is_answered; /* loop thread: responded, parked or streaming */
    /* CORS (http_config.cors_origins): whether any origin is allowed (then every response
     * varies by Origin), and the request's Origin when it is one of them (NULL otherwise). */
    bool is_cors_configured;
    const char *cors_origin;
    bool is_parked; /* loop thread: counted in server->deferred */
    char *path, *query;
    struct {
        const char *name, *value;
    } headers[HEADER_FIELDS_MAX];
    uint32_t header_count;
    struct query_argument arguments[QUERY_ARGUMENTS_MAX];
    uint32_t argument_count;
    char *body;
    size_t body_length, body_capacity;
    void *user_data;
    void (*abandon_hook)(void *context); /* under loop->mutex */
    void *abandon_context;
    char client_ip[INET6_ADDRSTRLEN];
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* set once the headers are read; then constant */
    int64_t started_us;                       /* the request's first byte (monotonic) */
    /* under loop->mutex once parked */
    int status;              /* of the answer, for the access log; 0: none yet */
    uint64_t bytes_answered; /* body bytes (or event bytes of a stream) */
    bool is_completed, is_gone, is_queued, is_stream, is_stream_ended, is_stream_end_sent;
    bool is_response_closing; /* the completed response ends the connection */
    char *response;
    size_t response_length;
    char *stream;
    size_t stream_length;
    /* http_stream_start_parked: the stream's head, for the loop to send before its events */
    char *stream_head;
    size_t stream_head_length;
    struct http_request *queue_next;
    bool is_stream_begun; /* loop thread only: the stream's head is in the connection's output */
    /* the request line and header fields, NUL-terminated in place */
    size_t head_bytes, head_used, head_size;
    char head[];
};

struct loop {
    struct http_server *server;
    pthread_t thread;
    int epoll_fd, wake_fd;
    char listen_tag, wake_tag; /* their addresses tell epoll events apart */
    struct deadline_list deadlines[DEADLINE_KINDS];
    struct connection *connections, *ready, *dead;
    int64_t now_ms;
    bool is_stop_begun;
    int64_t stop_deadline_ms;
    char *read_buffer;
    pthread_mutex_t mutex;
    struct http_request *inbox_head, *inbox_tail;
};

struct http_server {
    struct http_config config;
    SSL_CTX *tls; /* NULL: plain TCP */
    int listen_fd;
    uint16_t port;
    uint32_t loop_count;
    struct loop *loops;
    atomic_bool is_quiesced, is_stopping;
    atomic_uint loop_turn;
    atomic_ulong connections_open, connections_refused, deferred, oversized_bodies,
        malformed_requests, timeouts;
};

static const http_parser_settings parser_settings;

/* ---- requests ------------------------------------------------------------------------------ */

static struct http_request *request_new(struct connection *c)
{
    const struct http_config *config = &c->loop->server->config;
    size_t head_size = (size_t)config->header_bytes_max + 2 * HEADER_FIELDS_MAX + 2;
    struct http_request *r = malloc(sizeof(*r) + head_size);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->loop = c->loop;
    r->connection = c;
    atomic_init(&r->references, 1);
    r->head_size = head_size;
    r->started_us = clock_monotonic_us();
    memcpy(r->client_ip, c->client_ip, sizeof(r->client_ip));
    return r;
}

static void request_release(struct http_request *r)
{
    if (atomic_fetch_sub(&r->references, 1) != 1)
        return;
    free(r->body);
    free(r->response);
    free(r->stream);
    free(r->stream_head);
    free(r->user_data);
    free(r);
}

void http_retain(struct http_request *r)
{
    atomic_fetch_add(&r->references, 1);
}

void http_release(struct http_request *r)
{
    request_release(r);
}

/* ---- request ids --------------------------------------------------------------------------- */

/*
 * A request id sent by the client (X-Request-Id) is kept when it is sane:
 * 1 to HTTP_REQUEST_ID_MAX bytes of [A-Za-z0-9._:-], so that it can be echoed in
 * a header and written in a log line as it is, and cannot pass for another
 * field. Otherwise one is made: 32 lowercase hex digits (128 bits, the shape of
 * a W3C trace id) from a per-thread generator seeded by getrandom(2).
 */
bool http_request_id_is_sane(const char *id)
{
    size_t length = 0;
    for (; id[length] != '\0'; length++) {
        char c = id[length];
        bool is_safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == ':' || c == '-';
        if (!is_safe || length == HTTP_REQUEST_ID_MAX)
            return false;
    }
    return length > 0;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void http_request_id_make(char out[HTTP_REQUEST_ID_MAX + 1])
{
    static _Thread_local uint64_t state;
    static _Thread_local bool is_seeded;
    if (!is_seeded) {
        if (getrandom(&state, sizeof(state), 0) != sizeof(state))
            state = (uint64_t)clock_monotonic_us() ^ (uint64_t)(uintptr_t)&state;
        is_seeded = true;
    }
    static const char hex[] = "0123456789abcdef";
    for (int half = 0; half < 2; half++) {
        uint64_t bits = splitmix64(&state);
        for (int i = 0; i < 16; i++)
            out[half * 16 + i] = hex[(bits >> (4 * i)) & 15];
    }
    out[32] = '\0';
}

/* The client's X-Request-Id when sane, else a new one. */
static void request_id_choose(struct http_request *r)
{
    const char *sent = http_header(r, "X-Request-Id");
    if (sent != NULL && http_request_id_is_sane(sent))
        snprintf(r->request_id, sizeof(r->request_id), "%s", sent);
    else
        http_request_id_make(r->request_id);
}

/* ---- response text ------------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
    }
}

/* RFC 9110's IMF-fixdate of now, formatted once a second per thread. */
static const char *date_now(void)
{
    static _Thread_local char text[40];
    static _Thread_local time_t formatted_at = -1;
    time_t now = time(NULL);
    if (now != formatted_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        formatted_at = now;
    }
    return text;
}

static bool has_header(const char *const *headers, const char *name)
{
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        if (strcasecmp(headers[i], name) == 0)
            return true;
    return false;
}

/* Appends text at *at (the caller sized the buffer); the hot path avoids printf. */
static void put(char **at, const char *text, size_t length)
{
    memcpy(*at, text, length);
    *at += length;
}

static void put_text(char **at, const char *text)
{
    put(at, text, strlen(text));
}

static void put_decimal(char **at, uint64_t value)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    while (n > 0)
        *(*at)++ = digits[--n];
}

/*
 * CORS: the allowed origin is echoed, never "*" (and no credentials are allowed: the API takes
 * bearer tokens, which the page sends itself); the headers a page may read are exposed. Every
 * response varies by Origin once origins are configured, so a cache never hands one origin's
 * answer to another.
 */
#define CORS_HEADERS                                                                               \
    "Access-Control-Allow-Origin: \r\nAccess-Control-Expose-Headers: Retry-After, X-Request-Id, "  \
    "Location\r\nVary: Origin\r\n"

/* Writes r's CORS header lines at `at` (room for CORS_HEADERS and the origin); their length. */
static size_t cors_format(const struct http_request *r, char *at)
{
    char *start = at;
    if (r->cors_origin != NULL) {
        put_text(&at, "Access-Control-Allow-Origin: ");
        put_text(&at, r->cors_origin);
        put_text(&at, "\r\nAccess-Control-Expose-Headers: Retry-After, X-Request-Id, Location\r\n");
    }
    if (r->is_cors_configured)
        put_text(&at, "Vary: Origin\r\n");
    return (size_t)(at - start);
}

/* The request's Origin when it is in the comma-separated list `origins`, else NULL. */
static const char *cors_match(const char *origins, const char *origin)
{
    size_t origin_length = origin ? strlen(origin) : 0;
    for (const char *at = origins; origin_length > 0 && *at != '\0';) {
        size_t length = strcspn(at, ",");
        if (length == origin_length && memcmp(at, origin, length) == 0)
            return origin;
        at += length + (at[length] == ',');
    }
    return NULL;
}

/*
 * The whole response in one buffer (malloc'd; NULL when out of memory). A
 * HEAD request gets the headers only; is_closing adds Connection: close.
 */
static char *response_format(const struct http_request *r, int status, const char *content_type,
                             const char *body, size_t length, const char *const *headers,
                             bool is_closing, size_t *out_length)
{
    size_t extra = 0;
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        extra += strlen(headers[i]) + strlen(headers[i + 1]) + 4;
    if (status == 204) /* RFC 9110 15.3.5: no content, and no Content-Length */
        length = 0;
    /* 16: "X-Request-Id: " and its CRLF. */
    size_t capacity = 256 + HTTP_REQUEST_ID_MAX + 16 + extra +
                      (content_type ? strlen(content_type) : 0) + length +
                      (r->is_cors_configured ? sizeof(CORS_HEADERS) : 0) +
                      (r->cors_origin ? strlen(r->cors_origin) : 0);
    char *text = malloc(capacity);
    if (text == NULL)
        return NULL;
    char *at = text;
    put(&at, "HTTP/1.1 ", 9);
    put_decimal(&at, (uint64_t)status);
    put(&at, " ", 1);
    put_text(&at, reason_phrase(status));
    put(&at, "\r\nDate: ", 8);
    put_text(&at, date_now());
    if (status != 204 && status != 304) { /* RFC 9110 8.6: neither has a length of its own */
        put(&at, "\r\nContent-Length: ", 18);
        put_decimal(&at, length);
    }
    put(&at, "\r\n", 2);
    at += cors_format(r, at);
    if (content_type != NULL) {
        put(&at, "Content-Type: ", 14);
        put_text(&at, content_type);
        put(&at, "\r\n", 2);
    }
    if (r->request_id[0] != '\0') {
        put(&at, "X-Request-Id: ", 14);
        put_text(&at, r->request_id);
        put(&at, "\r\n", 2);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2) {
        put_text(&at, headers[i]);
        put(&at, ": ", 2);
        put_text(&at, headers[i + 1]);
        put(&at, "\r\n", 2);
    }
    if (is_closing && !has_header(headers, "Connection"))
        put(&at, "Connection: close\r\n", 19);
    else if (!is_closing && r->is_http10)
        put(&at, "Connection: keep-alive\r\n", 24);
    put(&at, "\r\n", 2);
    if (!r->is_head && length > 0)
        put(&at, body, length);
    *out_length = (size_t)(at - text);
    return text;
}

/* Whether the connection of r ends after its response (decided before the handler ran). */
static bool request_closes(const struct http_request *r, const char *const *headers)
{
    bool asks_close = false;
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        if (strcasecmp(headers[i], "Connection") == 0 && strcasecmp(headers[i + 1], "close") == 0)
            asks_close = true;
    return asks_close || !r->is_keep_alive || atomic_load(&r->loop->server->is_stopping);
}

/* ---- connections: output ------------------------------------------------------------------- */

static void conn_close(struct connection *c);

/* Appends to the connection's output; false (and the connection closed) beyond the bound. */
static bool out_append(struct connection *c, const char *data, size_t length)
{
    size_t pending = c->out_length - c->out_sent;
    if (pending + length > OUTPUT_BYTES_MAX) {
        conn_close(c);
        return false;
    }
    if (c->out_sent > 0) { /* compact what was sent */
        memmove(c->out, c->out + c->out_sent, pending);
        c->out_length = pending;
        c->out_sent = 0;
    }
    char *out = realloc(c->out, c->out_length + length);
    if (out == NULL) {
        conn_close(c);
        return false;
    }
    memcpy(out + c->out_length, data, length);
    c->out = out;
    c->out_length += length;
    return true;
}

/* Takes ownership of a malloc'd buffer as output (no copy when nothing else is queued). */
static bool out_adopt(struct connection *c, char *data, size_t length)
{
    if (c->out_length == c->out_sent) {
        free(c->out);
        c->out = data;
        c->out_length = length;
        c->out_sent = 0;
        return true;
    }
    bool is_ok = out_append(c, data, length);
    free(data);
    return is_ok;
}

static void conn_arm(struct connection *c, enum deadline_kind kind)
{
    c->deadline_kind = kind;
    deadline_arm(&c->loop->deadlines[kind], &c->deadline, c->loop->now_ms);
}

/*
 * The connection's bytes in and out, through TLS when it has it. Like
 * recv/send: > 0 bytes, 0 closed, -1 with errno (EAGAIN when TLS must wait
 * for the socket either way: the loop is woken for both, edge-triggered).
 */
/* What SSL_read or SSL_write returned (n), as recv/send would say it. */
static ssize_t tls_outcome(struct connection *c, int n)
{
    if (n > 0)
        return n;
    int error = SSL_get_error(c->tls, n);
    if (error == SSL_ERROR_ZERO_RETURN)
        return 0;
    /* Otherwise a failed handshake or a broken record: the connection ends. */
    errno = error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE ? EAGAIN : EPROTO;
    return -1;
}

static int tls_length(size_t size)
{
    return size > INT32_MAX ? INT32_MAX : (int)size;
}

static ssize_t conn_recv(struct connection *c, void *buffer, size_t size)
{
    if (c->tls == NULL)
        return recv(c->fd, buffer, size, 0);
    ERR_clear_error();
    return tls_outcome(c, SSL_read(c->tls, buffer, tls_length(size)));
}

static ssize_t conn_send(struct connection *c, const void *data, size_t length)
{
    if (c->tls == NULL)
        return send(c->fd, data, length, MSG_NOSIGNAL);
    ERR_clear_error();
    return tls_outcome(c, SSL_write(c->tls, data, tls_length(length)));
}

/* Sends what it can; true when everything queued went out. */
static bool conn_flush(struct connection *c)
{
    while (c->out_sent < c->out_length) {
        ssize_t n = conn_send(c, c->out + c->out_sent, c->out_length - c->out_sent);
        if (n > 0) {
            c->out_sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->deadline_kind != DEADLINE_WRITE || !deadline_is_armed(&c->deadline))
                conn_arm(c, DEADLINE_WRITE); /* the client must read within the body deadline */
            return false;
        } else {
            conn_close(c);
            return false;
        }
    }
    free(c->out); /* an idle connection holds no buffer */
    c->out = NULL;
    c->out_length = c->out_sent = 0;
    if (c->deadline_kind == DEADLINE_WRITE)
        deadline_disarm(&c->deadline);
    return true;
}

/* ---- connections: life cycle --------------------------------------------------------------- */

static void request_unpark(struct http_request *r)
{
    if (!r->is_parked)
        return;
    r->is_parked = false;
    atomic_fetch_sub(&r->loop->server->deferred, 1);
}

/*
 * --access-log: one line per answered request (or one the client left before
 * its answer: status 499, as nginx writes it). The path is shown without its
 * query string, which may carry what is nobody's business, and cut at
 * ACCESS_PATH_MAX bytes; never a header (tokens travel in Authorization).
 */
static void access_log(const struct http_request *r, int status, uint64_t bytes)
{
    char path[ACCESS_PATH_MAX + 1] = "-", status_text[8], bytes_text[24], duration_text[24];
    if (r->path != NULL && r->path[0] != '\0')
        snprintf(path, sizeof(path), "%.*s", (int)strcspn(r->path, "?"), r->path);
    snprintf(status_text, sizeof(status_text), "%d", status);
    snprintf(bytes_text, sizeof(bytes_text), "%llu", (unsigned long long)bytes);
    int64_t duration_us = clock_monotonic_us() - r->started_us;
    snprintf(duration_text, sizeof(duration_text), "%lld.%03lld", (long long)(duration_us / 1000),
             (long long)(duration_us % 1000));
    char previous[LOGLINE_REQUEST_ID_MAX + 1];
    snprintf(previous, sizeof(previous), "%s", logline_request_id());
    logline_set_request_id(r->request_id);
    logline(LOGLINE_INFO, "access", "request", "method", r->method ? r->method : "-", "path", path,
            "status", status_text, "bytes", bytes_text, "duration_ms", duration_text, "client",
            r->client_ip, NULL);
    logline_set_request_id(previous);
}

/* The connection lets go of its request: later completions of it are no-ops. */
static void conn_detach_request(struct connection *c, bool is_abandoned)
{
    struct http_request *r = c->request;
    if (r == NULL)
        return;
    c->request = NULL;
    struct loop *loop = c->loop;
    pthread_mutex_lock(&loop->mutex);
    int status = r->status != 0 ? r->status : is_abandoned && r->is_answered ? 499 : 0;
    uint64_t bytes = r->bytes_answered;
    bool was_waiting = r->is_answered && !r->is_completed && !r->is_stream_end_sent;
    void (*hook)(void *) = is_abandoned && was_waiting ? r->abandon_hook : NULL;
    r->abandon_hook = NULL; /* disarmed: its context now belongs to this thread's call */
    r->is_gone = true;
    pthread_mutex_unlock(&loop->mutex);
    r->connection = NULL;
    if (status != 0 && loop->server->config.is_access_log)
        access_log(r, status, bytes);
    request_unpark(r);
    if (hook != NULL)
        hook(r->abandon_context);
    request_release(r);
}

static void conn_close(struct connection *c)
{
    if (c->is_dead)
        return;
    c->is_dead = true;
    conn_detach_request(c, true);
    if (c->tls != NULL) {
        SSL_shutdown(c->tls); /* one close_notify, best effort: never waits */
        SSL_free(c->tls);
        c->tls = NULL;
    }
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    deadline_disarm(&c->deadline);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->loop->connections = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->out);
    free(c->leftover);
    c->out = c->leftover = NULL;
    c->dead_next = c->loop->dead;
    c->loop->dead = c;
    atomic_fetch_sub(&c->loop->server->connections_open, 1);
}

/* Answers a request this layer refuses, then closes: framing is not trusted after it. */
static void conn_refuse(struct connection *c, int status, const char *message)
{
    struct http_server *s = c->loop->server;
    if (status == 413)
        atomic_fetch_add(&s->oversized_bodies, 1);
    else if (status != 408 && status != 503)
        atomic_fetch_add(&s->malformed_requests, 1);
    const char *code = status == 413   ? "payload_too_large"
                       : status == 503 ? "unavailable"
                                       : "invalid_request";
    char *json = api_json_error(code, message);
    struct http_request probe = {.is_keep_alive = false};
    /* A request that got this far has an id, or gets one now: the client and the log can
     * name even a refused request. */
    if (c->request != NULL && c->request->request_id[0] == '\0') {
        /* Refused before the headers were complete: what arrived of them is terminated in
         * place (the arena keeps room for one more NUL) and may hold the client's id. */
        struct http_request *r = c->request;
        r->head[r->head_used] = '\0';
        request_id_choose(r);
    }
    if (c->request != NULL) {
        memcpy(probe.request_id, c->request->request_id, sizeof(probe.request_id));
        c->request->status = status;
        c->request->bytes_answered = json ? strlen(json) : 0;
    } else {
        http_request_id_make(probe.request_id);
    }
    size_t length = 0;
    char *text = json ? response_format(&probe, status, "application/json", json, strlen(json),
                                        NULL, true, &length)
                      : NULL;
    free(json);
    conn_detach_request(c, false);
    c->phase = PHASE_HANDLING;
    c->is_closing = true;
    c->is_response_complete = true;
    deadline_disarm(&c->deadline);
    if (text == NULL || !out_adopt(c, text, length))
        conn_close(c);
}

/* ---- connections: parsing ------------------------------------------------------------------ */

static struct connection *conn_of(http_parser *p)
{
    return p->data;
}

static int refuse_in_callback(struct connection *c, int status, const char *message)
{
    if (c->refusal_status == 0) {
        c->refusal_status = status;
        c->refusal_message = message;
    }
    return -1;
}

static int on_message_begin(http_parser *p)
{
    struct connection *c = conn_of(p);
    c->request = request_new(c);
    if (c->request == NULL)
        return refuse_in_callback(c, 503, "out of memory; retry shortly");
    c->phase = PHASE_HEADERS;
    c->part = PART_URL;
    conn_arm(c, DEADLINE_HEADER);
    return 0;
}

/* The request line and header fields, counted against the bound and kept in the arena. */
static int head_append(struct connection *c, const char *at, size_t length, int status)
{
    struct http_request *r = c->request;
    r->head_bytes += length;
    if (r->head_bytes > c->loop->server->config.header_bytes_max)
        return refuse_in_callback(c, status,
                                  status == 414 ? "the request target is too long"
                                                : "the request headers are too large");
    memcpy(r->head + r->head_used, at, length);
    r->head_used += length;
    return 0;
}

static void head_end_part(struct http_request *r)
{
    r->head[r->head_used++] = '\0';
}

static int on_url(http_parser *p, const char *at, size_t length)
{
    return head_append(conn_of(p), at, length, 414);
}

static int on_header_field(http_parser *p, const char *at, size_t length)
{
    struct connection *c = conn_of(p);
    struct http_request *r = c->request;
    if (c->part != PART_FIELD) {
        head_end_part(r);
        if (c->part == PART_URL)
            r->path = r->head;
        if (r->header_count == HEADER_FIELDS_MAX)
            return refuse_in_callback(c, 431, "too many header fields");
        r->headers[r->header_count].name = r->head + r->head_used;
        r->headers[r->header_count++].value = "";
        c->part = PART_FIELD;
    }
    return head_append(c, at, length, 431);
}

static int on_header_value(http_parser *p, const char *at, size_t length)
{
    struct connection *c = conn_of(p);
    struct http_request *r = c->request;
    if (c->part != PART_VALUE) {
        head_end_part(r);
        r->headers[r->header_count - 1].value = r->head + r->head_used;
        c->part = PART_VALUE;
    }
    return head_append(c, at, length, 431);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte that the escape "%XY" at `at` stands for, or -1 when XY are not two hex digits. */
static int escape_value(const char *at)
{
    int high = hex_value(at[1]), low = high < 0 ? -1 : hex_value(at[2]);
    return low < 0 ? -1 : high * 16 + low;
}

static bool is_control(int c)
{
    return c < 0x20 || c == 0x7f;
}

/* Decodes a query component in place; false when it holds a control character or a bad escape. */
static bool query_decode(char *text)
{
    char *out = text;
    for (const char *in = text; *in != '\0'; in++) {
        int c = (unsigned char)*in;
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            c = escape_value(in);
            in += 2;
        }
        if (c < 0 || is_control(c))
            return false;
        *out++ = (char)c;
    }
    *out = '\0';
    return true;
}

/*
 * The path is kept as sent (never decoded: an id cannot hold '%', so an
 * escaped one is simply no id, and %2F never becomes a separator), but an
 * escape that would decode to a NUL or a control character is refused, and
 * so is a '%' without two hex digits. The whole target must be visible ASCII
 * (RFC 3986): http_parser lets a raw tab, form feed or byte above 0x7F through.
 */
static bool path_is_clean(const char *path)
{
    for (const char *at = path; *at != '\0'; at++)
        if ((unsigned char)*at <= 0x20 || (unsigned char)*at >= 0x7f)
            return false;
    for (const char *at = path; *at != '\0' && *at != '?'; at++) {
        if (*at != '%')
            continue;
        int c = escape_value(at);
        if (c < 0 || is_control(c))
            return false;
        at += 2;
    }
    return true;
}

/* Splits "a=1&b=2" into decoded arguments; false when one is refused. */
static bool query_parse(struct http_request *r)
{
    char *save = NULL;
    for (char *pair = strtok_r(r->query, "&", &save); pair != NULL;
         pair = strtok_r(NULL, "&", &save)) {
        if (r->argument_count == QUERY_ARGUMENTS_MAX)
            return false;
        char *equals = strchr(pair, '=');
        if (equals != NULL)
            *equals = '\0';
        /* No '=': the value is the empty string at the pair's end (in the arena: decoding
         * writes its terminator, which a string literal would not take). */
        char *value = equals != NULL ? equals + 1 : pair + strlen(pair);
        if (!query_decode(pair) || !query_decode(value))
            return false;
        r->arguments[r->argument_count].name = pair;
        r->arguments[r->argument_count++].value = value;
    }
    return true;
}

static int on_headers_complete(http_parser *p)
{
    struct connection *c = conn_of(p);
    struct http_request *r = c->request;
    const struct http_config *config = &c->loop->server->config;
    head_end_part(r);
    if (c->part == PART_URL)
        r->path = r->head;
    request_id_choose(r);
    r->method = http_method_str((enum http_method)p->method);
    r->is_head = p->method == HTTP_HEAD;
    r->is_http10 = p->http_minor == 0;
    if (p->http_major != 1)
        return refuse_in_callback(c, 505, "only HTTP/1.0 and HTTP/1.1 are served");
    if (r->path[0] != '/')
        return refuse_in_callback(c, 400, "the request target must be an absolute path");
    if (!path_is_clean(r->path))
        return refuse_in_callback(c, 400, "the path holds a control character or a bad escape");
    char *question = strchr(r->path, '?');
    if (question != NULL) {
        *question = '\0';
        r->query = question + 1;
        if (!query_parse(r))
            return refuse_in_callback(c, 400, "the query string is malformed");
    }
    uint32_t hosts = 0;
    const char *expect = NULL;
    for (uint32_t i = 0; i < r->header_count; i++) {
        if (strcasecmp(r->headers[i].name, "Host") == 0)
            hosts++;
        else if (strcasecmp(r->headers[i].name, "Expect") == 0)
            expect = r->headers[i].value;
    }
    if (config->cors_origins != NULL && config->cors_origins[0] != '\0') {
        r->is_cors_configured = true;
        r->cors_origin = cors_match(config->cors_origins, http_header(r, "Origin"));
    }
    if (!r->is_http10 && hosts != 1)
        return refuse_in_callback(c, 400, "an HTTP/1.1 request needs exactly one Host header");
    if (hosts > 1)
        return refuse_in_callback(c, 400, "more than one Host header");
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > config->body_bytes_max)
        return refuse_in_callback(c, 413, "the request body is too large");
    if (expect != NULL && strcasecmp(expect, "100-continue") != 0)
        return refuse_in_callback(c, 417, "only Expect: 100-continue is understood");
    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length);
    if (expect != NULL && has_body && !r->is_http10) {
        static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (conn_send(c, go_on, sizeof(go_on) - 1) != sizeof(go_on) - 1)
            return refuse_in_callback(c, 400, "the connection failed");
    }
    c->phase = PHASE_BODY;
    conn_arm(c, DEADLINE_BODY);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t length)
{
    struct connection *c = conn_of(p);
    struct http_request *r = c->request;
    if (r->body_length + length > c->loop->server->config.body_bytes_max)
        return refuse_in_callback(c, 413, "the request body is too large");
    if (r->body_length + length + 1 > r->body_capacity) {
        size_t capacity = r->body_capacity ? r->body_capacity : 1024;
        while (capacity < r->body_length + length + 1)
            capacity *= 2;
        char *body = realloc(r->body, capacity);
        if (body == NULL)
            return refuse_in_callback(c, 503, "out of memory; retry shortly");
        r->body = body;
        r->body_capacity = capacity;
    }
    memcpy(r->body + r->body_length, at, length);
    r->body_length += length;
    r->body[r->body_length] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_parser_pause(p, 1); /* one request at a time: answers go out in order */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void http_respond_internal_error(struct http_request *r);

/* Hands a complete request to the handler. */
static void conn_dispatch(struct connection *c)
{
    struct http_request *r = c->request;
    struct http_server *s = c->loop->server;
    deadline_disarm(&c->deadline);
    c->phase = PHASE_HANDLING;
    c->is_response_complete = false;
    r->is_keep_alive = http_should_keep_alive(&c->parser) != 0;
    logline_set_request_id(r->request_id); /* on every line the handler writes */
    s->config.handler(s->config.handler_context, r);
    if (!r->is_answered)
        http_respond_internal_error(r);
    logline_set_request_id(NULL);
}

/* Parses bytes; anything after a complete request waits in c->leftover. */
static void conn_feed(struct connection *c, const char *data, size_t length)
{
    size_t parsed = http_parser_execute(&c->parser, &parser_settings, data, length);
    enum http_errno error = HTTP_PARSER_ERRNO(&c->parser);
    if (c->refusal_status != 0) {
        conn_refuse(c, c->refusal_status, c->refusal_message);
        return;
    }
    if (error == HPE_UNEXPECTED_CONTENT_LENGTH) {
        conn_refuse(c, 400, "Transfer-Encoding and Content-Length together are refused");
        return;
    }
    if (error != HPE_OK && error != HPE_PAUSED) {
        char message[128];
        snprintf(message, sizeof(message), "malformed request: %s", http_errno_description(error));
        conn_refuse(c, error == HPE_INVALID_METHOD ? 501 : 400, message);
        return;
    }
    if (error == HPE_OK && c->parser.upgrade) {
        conn_refuse(c, 400, "protocol upgrades are not served");
        return;
    }
    if (error == HPE_OK)
        return; /* wants more bytes */
    if (parsed < length) {
        c->leftover = malloc(length - parsed);
        if (c->leftover == NULL) {
            conn_close(c);
            return;
        }
        memcpy(c->leftover, data + parsed, length - parsed);
        c->leftover_length = length - parsed;
    }
    conn_dispatch(c);
}

/* After a response went out: the next request, or the end of the connection. */
static void conn_response_done(struct connection *c)
{
    conn_detach_request(c, false);
    c->is_response_complete = false;
    if (c->is_closing || atomic_load(&c->loop->server->is_stopping)) {
        conn_close(c);
        return;
    }
    c->phase = PHASE_IDLE;
    conn_arm(c, DEADLINE_IDLE);
    http_parser_pause(&c->parser, 0);
}

static void conn_mark_ready(struct connection *c)
{
    if (c->is_ready || c->is_dead)
        return;
    c->is_ready = true;
    c->ready_next = c->loop->ready;
    c->loop->ready = c;
}

/* Drives a connection as far as it goes without blocking: write, finish, read, parse. */
static void conn_advance(struct connection *c)
{
    for (int round = 0; !c->is_dead; round++) {
        if (c->out_sent < c->out_length && !conn_flush(c))
            return; /* blocked (EPOLLOUT resumes it) or closed */
        if (c->phase == PHASE_HANDLING) {
            if (!c->is_response_complete) {
                if (c->request != NULL && c->request->is_stream_begun)
                    conn_arm(c, DEADLINE_HEARTBEAT);
                return; /* parked or streaming: the inbox resumes it */
            }
            conn_response_done(c);
            continue;
        }
        if (round >= ADVANCE_ROUNDS_MAX) {
            conn_mark_ready(c);
            return;
        }
        if (c->leftover_length > 0) {
            char *data = c->leftover;
            size_t length = c->leftover_length;
            c->leftover = NULL;
            c->leftover_length = 0;
            conn_feed(c, data, length);
            free(data);
            continue;
        }
        ssize_t n = conn_recv(c, c->loop->read_buffer, READ_CHUNK_BYTES);
        if (n > 0) {
            conn_feed(c, c->loop->read_buffer, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            conn_close(c); /* the client closed, perhaps mid-request: nothing to answer */
        }
    }
}

/* ---- answering ----------------------------------------------------------------------------- */

void http_respond(struct http_request *r, int status, const char *content_type, const char *body,
                  size_t length, const char *const *extra_headers)
{
    struct connection *c = r->connection;
    if (r->is_answered || c == NULL)
        return;
    r->is_answered = true;
    bool is_closing = request_closes(r, extra_headers);
    size_t text_length = 0;
    char *text = response_format(r, status, content_type, body, length, extra_headers, is_closing,
                                 &text_length);
    if (text == NULL) {
        conn_close(c);
        return;
    }
    c->is_closing = c->is_closing || is_closing;
    c->is_response_complete = true;
    /* No lock: an unparked request is this thread's alone (only a parked one is completed
     * from other threads, under the loop's mutex). */
    r->status = status;
    r->bytes_answered = length;
    out_adopt(c, text, text_length); /* conn_advance sends it once the handler returns */
}

void http_respond_json(struct http_request *r, int status, const char *json,
                       const char *const *extra_headers)
{
    http_respond(r, status, "application/json", json, strlen(json), extra_headers);
}

void http_respond_error(struct http_request *r, int status, const char *code, const char *message,
                        const char *const *extra_headers)
{
    char *json = api_json_error(code, message);
    if (json != NULL)
        http_respond_json(r, status, json, extra_headers);
    else if (r->connection != NULL)
        conn_close(r->connection);
    free(json);
}

static void http_respond_internal_error(struct http_request *r)
{
    http_respond_error(r, 500, "unavailable", "the request was not answered", NULL);
}

int http_defer(struct http_request *r)
{
    struct http_server *s = r->loop->server;
    if (atomic_fetch_add(&s->deferred, 1) >= s->config.deferred_max) {
        atomic_fetch_sub(&s->deferred, 1);
        return -1;
    }
    r->is_parked = true;
    r->is_answered = true;
    return 0;
}

void http_on_abandon(struct http_request *r, void (*hook)(void *context), void *context)
{
    pthread_mutex_lock(&r->loop->mutex);
    r->abandon_hook = hook;
    r->abandon_context = context;
    pthread_mutex_unlock(&r->loop->mutex);
}

bool http_abandon_cancel(struct http_request *r)
{
    pthread_mutex_lock(&r->loop->mutex);
    bool was_armed = r->abandon_hook != NULL;
    r->abandon_hook = NULL;
    pthread_mutex_unlock(&r->loop->mutex);
    return was_armed;
}

/* Queues r for its loop (under loop->mutex); the loop is woken when its inbox was empty. */
static bool inbox_push_locked(struct loop *loop, struct http_request *r)
{
    if (r->is_queued)
        return false;
    r->is_queued = true;
    atomic_fetch_add(&r->references, 1);
    r->queue_next = NULL;
    bool was_empty = loop->inbox_head == NULL;
    if (was_empty)
        loop->inbox_head = r;
    else
        loop->inbox_tail->queue_next = r;
    loop->inbox_tail = r;
    return was_empty;
}

static void loop_wake(struct loop *loop)
{
    uint64_t one = 1;
    ssize_t n = write(loop->wake_fd, &one, sizeof(one));
    (void)n; /* the counter is saturated only if the loop is already due to wake */
}

/* This thread's deferred wake-ups (http_defer_wakeups): the loops owed one, each once. */
static _Thread_local struct {
    uint32_t depth;
    uint32_t count;
    struct loop *loops[LOOPS_MAX];
} deferred_wakeups;

/* Wakes loop now, or at the flush when this thread defers its wake-ups. */
static void loop_wake_or_defer(struct loop *loop)
{
    if (deferred_wakeups.depth == 0) {
        loop_wake(loop);
        return;
    }
    for (uint32_t i = 0; i < deferred_wakeups.count; i++)
        if (deferred_wakeups.loops[i] == loop)
            return;
    if (deferred_wakeups.count == LOOPS_MAX) { /* loops of several servers: wake this one now */
        loop_wake(loop);
        return;
    }
    deferred_wakeups.loops[deferred_wakeups.count++] = loop;
}

void http_defer_wakeups(void)
{
    deferred_wakeups.depth++;
}

void http_flush_wakeups(void)
{
    assert(deferred_wakeups.depth > 0);
    if (--deferred_wakeups.depth > 0)
        return;
    for (uint32_t i = 0; i < deferred_wakeups.count; i++)
        loop_wake(deferred_wakeups.loops[i]);
    deferred_wakeups.count = 0;
}

bool http_complete(struct http_request *r, int status, const char *content_type, const char *body,
                   size_t length, const char *const *extra_headers)
{
    bool is_closing = request_closes(r, extra_headers);
    size_t text_length = 0;
    char *text = response_format(r, status, content_type, body, length, extra_headers, is_closing,
                                 &text_length);
    struct loop *loop = r->loop;
    pthread_mutex_lock(&loop->mutex);
    bool is_first = !r->is_completed && !r->is_gone && !r->is_stream && text != NULL;
    bool must_wake = false;
    if (is_first) {
        r->is_completed = true;
        r->status = status;
        r->bytes_answered = length;
        r->is_response_closing = is_closing;
        r->response = text;
        r->response_length = text_length;
        must_wake = inbox_push_locked(loop, r);
    }
    pthread_mutex_unlock(&loop->mutex);
    if (!is_first)
        free(text);
    if (must_wake)
        loop_wake_or_defer(loop);
    return is_first;
}

/* ---- server-sent events -------------------------------------------------------------------- */

/* The head of r's SSE answer; its length, or 0 when it does not fit. */
static size_t stream_head_format(struct http_request *r, char *head, size_t size)
{
    char cors[sizeof(CORS_HEADERS) + HTTP_ORIGIN_BYTES_MAX] = "";
    if (r->cors_origin == NULL || strlen(r->cors_origin) <= HTTP_ORIGIN_BYTES_MAX)
        cors[cors_format(r, cors)] = '\0';
    int n = snprintf(head, size,
                     "HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nX-Request-Id: %s\r\n%s%s\r\n",
                     date_now(), r->request_id, cors,
                     r->is_head     ? "Content-Length: 0\r\n"
                     : r->is_http10 ? "Connection: close\r\n"
                                    : "Transfer-Encoding: chunked\r\n");
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

#define STREAM_HEAD_MAX (256 + HTTP_REQUEST_ID_MAX + sizeof(CORS_HEADERS) + HTTP_ORIGIN_BYTES_MAX)

/* Under loop->mutex: r is a stream from now on (a HEAD's is over with its head). */
static void stream_mark_started_locked(struct http_request *r)
{
    r->is_stream = true;
    r->status = 200;
    if (r->is_head)
        r->is_stream_ended = r->is_stream_end_sent = true;
}

/* Loop thread: the stream's head is in c's output. */
static void stream_begun(struct connection *c, struct http_request *r)
{
    r->is_stream_begun = true;
    if (r->is_http10)
        c->is_closing = true;
    if (r->is_head)
        c->is_response_complete = true;
}

int http_stream_start(struct http_request *r)
{
    struct connection *c = r->connection;
    if (c == NULL || http_defer(r) != 0)
        return -1;
    char head[STREAM_HEAD_MAX];
    size_t length = stream_head_format(r, head, sizeof(head));
    pthread_mutex_lock(&r->loop->mutex);
    stream_mark_started_locked(r);
    pthread_mutex_unlock(&r->loop->mutex);
    stream_begun(c, r);
    out_append(c, head, length);
    return 0;
}

int http_stream_start_parked(struct http_request *r)
{
    char *head = malloc(STREAM_HEAD_MAX);
    size_t length = head != NULL ? stream_head_format(r, head, STREAM_HEAD_MAX) : 0;
    struct loop *loop = r->loop;
    pthread_mutex_lock(&loop->mutex);
    bool is_started = length > 0 && !r->is_completed && !r->is_gone && !r->is_stream;
    bool must_wake = false;
    if (is_started) {
        stream_mark_started_locked(r);
        r->stream_head = head;
        r->stream_head_length = length;
        must_wake = inbox_push_locked(loop, r);
    }
    pthread_mutex_unlock(&loop->mutex);
    if (!is_started)
        free(head);
    if (must_wake)
        loop_wake_or_defer(loop);
    return is_started ? 0 : -1;
}

/* Appends one framed event (or a comment) to r's stream buffer; under loop->mutex. */
static bool stream_append_locked(struct http_request *r, const char *prefix, const char *text)
{
    size_t text_length = strlen(text), prefix_length = strlen(prefix);
    size_t payload = prefix_length + text_length + 2;
    size_t need = payload + 16 + 4; /* chunk size line and CRLF */
    if (r->is_gone || r->is_stream_ended || r->is_head ||
        r->stream_length + need > STREAM_BUFFER_MAX)
        return false;
    if (r->stream == NULL) {
        r->stream = malloc(STREAM_BUFFER_MAX);
        if (r->stream == NULL)
            return false;
    }
    char *at = r->stream + r->stream_length;
    size_t used = 0;
    if (!r->is_http10)
        used += (size_t)snprintf(at, need, "%zx\r\n", payload);
    memcpy(at + used, prefix, prefix_length);
    memcpy(at + used + prefix_length, text, text_length);
    memcpy(at + used + prefix_length + text_length, "\n\n", 2);
    used += payload;
    if (!r->is_http10) {
        memcpy(at + used, "\r\n", 2);
        used += 2;
    }
    r->stream_length += used;
    r->bytes_answered += payload;
    return true;
}

bool http_stream_push(struct http_request *r, const char *json)
{
    struct loop *loop = r->loop;
    pthread_mutex_lock(&loop->mutex);
    bool is_ok = r->is_stream && stream_append_locked(r, "data: ", json);
    bool must_wake = is_ok && inbox_push_locked(loop, r);
    pthread_mutex_unlock(&loop->mutex);
    if (must_wake)
        loop_wake_or_defer(loop);
    return is_ok;
}

void http_stream_end(struct http_request *r)
{
    struct loop *loop = r->loop;
    pthread_mutex_lock(&loop->mutex);
    bool must_wake = false;
    if (r->is_stream && !r->is_stream_ended && !r->is_gone) {
        r->is_stream_ended = true;
        must_wake = inbox_push_locked(loop, r);
    }
    pthread_mutex_unlock(&loop->mutex);
    if (must_wake)
        loop_wake_or_defer(loop);
}

/* Loop thread: moves what other threads left for r into its connection. */
static void inbox_deliver(struct http_request *r)
{
    struct loop *loop = r->loop;
    pthread_mutex_lock(&loop->mutex);
    r->is_queued = false;
    char *response = r->response, *stream = NULL, *head = r->stream_head;
    size_t response_length = r->response_length, stream_length = r->stream_length;
    size_t head_length = r->stream_head_length;
    r->response = NULL;
    r->stream_head = NULL;
    if (stream_length > 0) {
        stream = malloc(stream_length);
        if (stream != NULL)
            memcpy(stream, r->stream, stream_length);
        r->stream_length = 0;
    }
    bool is_response_closing = r->is_response_closing;
    bool is_end = r->is_stream_ended && !r->is_stream_end_sent;
    if (is_end)
        r->is_stream_end_sent = true;
    pthread_mutex_unlock(&loop->mutex);
    struct connection *c = r->connection;
    if (c == NULL || c->is_dead) {
        free(response);
        free(stream);
        free(head);
        return;
    }
    bool is_ok = true;
    if (head != NULL) { /* http_stream_start_parked: nothing was answered before it */
        stream_begun(c, r);
        is_ok = out_adopt(c, head, head_length);
    }
    if (response != NULL) {
        c->is_closing = c->is_closing || is_response_closing;
        c->is_response_complete = true;
        is_ok = out_adopt(c, response, response_length);
    }
    if (is_ok && stream != NULL)
        is_ok = out_append(c, stream, stream_length);
    free(stream);
    if (is_ok && is_end) {
        if (!r->is_http10)
            is_ok = out_append(c, "0\r\n\r\n", 5);
        c->is_response_complete = true;
    }
    if (is_ok)
        conn_advance(c);
}

static void inbox_drain(struct loop *loop)
{
    uint64_t count;
    ssize_t n = read(loop->wake_fd, &count, sizeof(count));
    (void)n;
    pthread_mutex_lock(&loop->mutex);
    struct http_request *r = loop->inbox_head;
    loop->inbox_head = loop->inbox_tail = NULL;
    pthread_mutex_unlock(&loop->mutex);
    while (r != NULL) {
        struct http_request *next = r->queue_next;
        inbox_deliver(r);
        request_release(r); /* the inbox's reference */
        r = next;
    }
}

/* ---- accessors ----------------------------------------------------------------------------- */

const char *http_method(const struct http_request *r)
{
    return r->method;
}

const char *http_path(const struct http_request *r)
{
    return r->path;
}

const char *http_query(const struct http_request *r, const char *name)
{
    for (uint32_t i = 0; i < r->argument_count; i++)
        if (strcmp(r->arguments[i].name, name) == 0)
            return r->arguments[i].value;
    return NULL;
}

const char *http_header(const struct http_request *r, const char *name)
{
    for (uint32_t i = 0; i < r->header_count; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

const char *http_header_nth(const struct http_request *r, const char *name, uint32_t n)
{
    for (uint32_t i = 0; i < r->header_count; i++)
        if (strcasecmp(r->headers[i].name, name) == 0 && n-- == 0)
            return r->headers[i].value;
    return NULL;
}

const char *http_cors_origin(const struct http_request *r)
{
    return r->cors_origin;
}

const char *http_body(const struct http_request *r, size_t *length)
{
    *length = r->body_length;
    return r->body ? r->body : "";
}

const char *http_client_ip(const struct http_request *r)
{
    return r->client_ip;
}

const char *http_request_id(const struct http_request *r)
{
    return r->request_id;
}

void **http_user_data(struct http_request *r)
{
    return &r->user_data;
}

/* ---- the event loop ------------------------------------------------------------------------ */

static void refuse_connection(int fd)
{
    static const char answer[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Retry-After: 1\r\nConnection: close\r\nContent-Length: 80\r\n\r\n"
        "{\"error\":{\"code\":\"unavailable\",\"message\":\"too many connections; retry shortly\"}}";
    static_assert(sizeof("{\"error\":{\"code\":\"unavailable\",\"message\":\"too many "
                         "connections; retry shortly\"}}") -
                          1 ==
                      80,
                  "Content-Length of the refusal");
    ssize_t n = send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n; /* best effort: the connection is refused either way */
    close(fd);
}

static void loop_accept(struct loop *loop)
{
    struct http_server *s = loop->server;
    for (int i = 0; i < ACCEPT_BURST && !atomic_load(&s->is_quiesced); i++) {
        struct sockaddr_storage address;
        socklen_t address_length = sizeof(address);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&address, &address_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN: another loop took it, or none left */
        if (atomic_fetch_add(&s->connections_open, 1) >= s->config.connections_max) {
            atomic_fetch_sub(&s->connections_open, 1);
            atomic_fetch_add(&s->connections_refused, 1);
            refuse_connection(fd);
            continue;
        }
        struct connection *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            atomic_fetch_sub(&s->connections_open, 1);
            refuse_connection(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->loop = loop;
        c->fd = fd;
        if (s->tls != NULL) {
            c->tls = SSL_new(s->tls);
            if (c->tls == NULL || SSL_set_fd(c->tls, fd) != 1) {
                SSL_free(c->tls);
                free(c);
                close(fd);
                atomic_fetch_sub(&s->connections_open, 1);
                continue;
            }
            SSL_set_accept_state(c->tls); /* the handshake runs inside the first reads */
        }
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        if (address.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&address)->sin_addr, c->client_ip,
                      sizeof(c->client_ip));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&address)->sin6_addr, c->client_ip,
                      sizeof(c->client_ip));
        c->next = loop->connections;
        if (c->next != NULL)
            c->next->prev = c;
        loop->connections = c;
        struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                    .data.ptr = c};
        if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) != 0) {
            conn_close(c);
            continue;
        }
        c->phase = PHASE_IDLE;
        conn_arm(c, DEADLINE_HEADER); /* a new connection must start a request in time */
        conn_advance(c);
    }
}

static void loop_on_event(struct loop *loop, struct connection *c, uint32_t events)
{
    (void)loop;
    if (c->is_dead)
        return;
    bool is_hangup = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (c->phase == PHASE_HANDLING && !c->is_response_complete && is_hangup) {
        conn_close(c); /* the client left a parked request or a stream */
        return;
    }
    conn_advance(c);
    /* The same event may have carried the request and the client's departure. */
    if (!c->is_dead && is_hangup && c->phase == PHASE_HANDLING && !c->is_response_complete)
        conn_close(c);
}

static void stream_heartbeat(struct connection *c)
{
    struct http_request *r = c->request;
    if (r == NULL)
        return;
    pthread_mutex_lock(&c->loop->mutex);
    bool is_ok = stream_append_locked(r, ": ", "keep-alive");
    bool must_deliver = is_ok && !r->is_queued;
    if (must_deliver) {
        r->is_queued = true;
        atomic_fetch_add(&r->references, 1);
    }
    pthread_mutex_unlock(&c->loop->mutex);
    if (must_deliver) {
        inbox_deliver(r);
        request_release(r);
    } else {
        conn_arm(c, DEADLINE_HEARTBEAT);
    }
}

static void loop_expire(struct loop *loop)
{
    struct http_server *s = loop->server;
    for (int kind = 0; kind < DEADLINE_KINDS; kind++) {
        struct deadline_list *list = &loop->deadlines[kind];
        while (list->head.next != &list->head && list->head.next->at_ms <= loop->now_ms) {
            struct deadline *d = list->head.next;
            struct connection *c =
                (struct connection *)((char *)d - offsetof(struct connection, deadline));
            deadline_disarm(d);
            if (kind == DEADLINE_HEARTBEAT) {
                stream_heartbeat(c);
            } else if (kind == DEADLINE_HEADER && c->phase == PHASE_HEADERS) {
                atomic_fetch_add(&s->timeouts, 1);
                conn_refuse(c, 408, "the request headers did not arrive in time");
                conn_advance(c);
            } else if (kind == DEADLINE_BODY && c->phase == PHASE_BODY) {
                atomic_fetch_add(&s->timeouts, 1);
                conn_refuse(c, 408, "the request body did not arrive in time");
                conn_advance(c);
            } else {
                if (kind != DEADLINE_IDLE)
                    atomic_fetch_add(&s->timeouts, 1);
                conn_close(c); /* idle, silent from the start, or not reading its answer */
            }
        }
    }
}

static int loop_wait_ms(const struct loop *loop)
{
    if (loop->ready != NULL)
        return 0;
    int64_t wait = WAIT_MS_MAX;
    for (int kind = 0; kind < DEADLINE_KINDS; kind++) {
        const struct deadline_list *list = &loop->deadlines[kind];
        if (list->head.next != &list->head && list->head.next->at_ms - loop->now_ms < wait)
            wait = list->head.next->at_ms - loop->now_ms;
    }
    return wait < 0 ? 0 : (int)wait;
}

/*
 * Stopping: parked requests get 503 and streams end (the API layer answered
 * what it could before), idle connections close, answers in flight finish
 * within STOP_GRACE_MS.
 */
static void loop_stop_step(struct loop *loop)
{
    static const char stopping[] =
        "{\"error\":{\"code\":\"unavailable\",\"message\":\"the server is stopping\"}}";
    if (!loop->is_stop_begun) {
        loop->is_stop_begun = true;
        loop->stop_deadline_ms = loop->now_ms + STOP_GRACE_MS;
        for (struct connection *c = loop->connections, *next; c != NULL; c = next) {
            next = c->next;
            struct http_request *r = c->request;
            if (c->phase != PHASE_HANDLING) {
                conn_close(c);
            } else if (r != NULL && r->is_parked && !c->is_response_complete) {
                c->is_closing = true;
                /* Whichever it is, even if another thread makes it a stream meanwhile
                 * (http_stream_start_parked): a completion is refused to a stream, and a
                 * completed request cannot become one. */
                http_complete(r, 503, "application/json", stopping, sizeof(stopping) - 1, NULL);
                http_stream_end(r);
            } else {
                c->is_closing = true;
            }
        }
    }
    if (loop->now_ms >= loop->stop_deadline_ms)
        while (loop->connections != NULL)
            conn_close(loop->connections);
}

static void *loop_main(void *argument)
{
    struct loop *loop = argument;
    struct http_server *s = loop->server;
    struct epoll_event events[EVENTS_PER_WAIT];
    for (;;) {
        loop->now_ms = clock_monotonic_ms();
        if (atomic_load(&s->is_stopping)) {
            loop_stop_step(loop);
            if (loop->connections == NULL)
                break;
        }
        int n = epoll_wait(loop->epoll_fd, events, EVENTS_PER_WAIT, loop_wait_ms(loop));
        loop->now_ms = clock_monotonic_ms();
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &loop->listen_tag)
                loop_accept(loop);
            else if (tag == &loop->wake_tag)
                inbox_drain(loop);
            else
                loop_on_event(loop, tag, events[i].events);
        }
        struct connection *ready = loop->ready;
        loop->ready = NULL;
        for (struct connection *c = ready, *next; c != NULL; c = next) {
            next = c->ready_next;
            c->is_ready = false;
            conn_advance(c);
        }
        loop_expire(loop);
        while (loop->dead != NULL) {
            struct connection *c = loop->dead;
            loop->dead = c->dead_next;
            free(c);
        }
    }
    inbox_drain(loop); /* completions that raced the stop: their connections are gone */
    while (loop->dead != NULL) {
        struct connection *c = loop->dead;
        loop->dead = c->dead_next;
        free(c);
    }
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int listen_on(const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *info = NULL;
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    if (getaddrinfo(host, service, &hints, &info) != 0) {
        logline(LOGLINE_ERROR, "http", "the listen address is not a numeric IP address", "host",
                host, NULL);
        return -1;
    }
    int fd = socket(info->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, info->ai_addr, info->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        char port_text[8];
        snprintf(port_text, sizeof(port_text), "%u", port);
        logline(LOGLINE_ERROR, "http", "cannot listen", "host", host, "port", port_text, "error",
                strerror(errno), NULL);
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(info);
    return fd;
}

static int loop_init(struct loop *loop, struct http_server *s)
{
    loop->server = s;
    const struct http_config *config = &s->config;
    deadline_list_init(&loop->deadlines[DEADLINE_IDLE], config->idle_timeout_ms);
    deadline_list_init(&loop->deadlines[DEADLINE_HEADER], config->header_timeout_ms);
    deadline_list_init(&loop->deadlines[DEADLINE_BODY], config->body_timeout_ms);
    deadline_list_init(&loop->deadlines[DEADLINE_WRITE], config->body_timeout_ms);
    deadline_list_init(&loop->deadlines[DEADLINE_HEARTBEAT], STREAM_HEARTBEAT_MS);
    pthread_mutex_init(&loop->mutex, NULL);
    loop->read_buffer = malloc(READ_CHUNK_BYTES);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->read_buffer == NULL || loop->epoll_fd < 0 || loop->wake_fd < 0)
        return -1;
    struct epoll_event wake = {.events = EPOLLIN, .data.ptr = &loop->wake_tag};
    /* EPOLLEXCLUSIVE: one loop wakes for a new connection, not all of them. */
    struct epoll_event listen = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &loop->listen_tag};
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake_fd, &wake) != 0 ||
        epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &listen) != 0)
        return -1;
    return 0;
}

static void loop_destroy(struct loop *loop)
{
    if (loop->epoll_fd >= 0)
        close(loop->epoll_fd);
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    free(loop->read_buffer);
    pthread_mutex_destroy(&loop->mutex);
}

/* ALPN: HTTP/1.1 is all this server speaks; a client offering only h2 goes on without ALPN. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_length,
                       const unsigned char *in, unsigned int in_length, void *context)
{
    (void)ssl;
    (void)context;
    for (unsigned int i = 0; i < in_length && i + 1 + in[i] <= in_length; i += 1u + in[i]) {
        if (in[i] == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *out_length = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* The TLS context of --tls-cert and --tls-key; NULL with a message when they do not load. */
static SSL_CTX *tls_context_new(const struct http_config *config)
{
    SSL_CTX *tls = SSL_CTX_new(TLS_server_method());
    if (tls == NULL || SSL_CTX_set_min_proto_version(tls, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(tls, config->tls_cert_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(tls, config->tls_key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(tls) != 1) {
        char reason[256] = "out of memory";
        unsigned long error = ERR_get_error();
        if (error != 0)
            ERR_error_string_n(error, reason, sizeof(reason));
        logline(LOGLINE_ERROR, "http", "the TLS certificate and key do not load", "certificate",
                config->tls_cert_path, "key", config->tls_key_path, "error", reason, NULL);
        SSL_CTX_free(tls);
        return NULL;
    }
    SSL_CTX_set_mode(tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS); /* idle connections keep no buffers */
    SSL_CTX_set_alpn_select_cb(tls, select_alpn, NULL);
    return tls;
}

int http_start(const struct http_config *config, struct http_server **out)
{
    if (config->threads < 1 || config->threads > LOOPS_MAX)
        return -1;
    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->config = *config;
    bool has_cert = config->tls_cert_path != NULL && config->tls_cert_path[0] != '\0';
    bool has_key = config->tls_key_path != NULL && config->tls_key_path[0] != '\0';
    if (has_cert != has_key) {
        logline(LOGLINE_ERROR, "http", "--tls-cert and --tls-key go together", NULL);
        free(s);
        return -1;
    }
    bool wants_tls = has_cert && has_key;
    if (wants_tls && (s->tls = tls_context_new(config)) == NULL) {
        free(s);
        return -1;
    }
    s->listen_fd = listen_on(config->host, config->port);
    if (s->listen_fd < 0) {
        SSL_CTX_free(s->tls);
        free(s);
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof(bound);
    getsockname(s->listen_fd, (struct sockaddr *)&bound, &bound_length);
    s->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
    s->loops = calloc(config->threads, sizeof(*s->loops));
    if (s->loops == NULL)
        goto err_close_listener;
    for (uint32_t i = 0; i < config->threads; i++) {
        s->loops[i].epoll_fd = s->loops[i].wake_fd = -1;
        if (loop_init(&s->loops[i], s) != 0 ||
            pthread_create(&s->loops[i].thread, NULL, loop_main, &s->loops[i]) != 0) {
            loop_destroy(&s->loops[i]);
            logline(LOGLINE_ERROR, "http", "cannot start an HTTP event loop", NULL);
            atomic_store(&s->is_stopping, true);
            for (uint32_t j = 0; j < i; j++) {
                loop_wake(&s->loops[j]);
                pthread_join(s->loops[j].thread, NULL);
                loop_destroy(&s->loops[j]);
            }
            free(s->loops);
            goto err_close_listener;
        }
        s->loop_count++;
    }
    *out = s;
    return 0;

err_close_listener:
    close(s->listen_fd);
    SSL_CTX_free(s->tls);
    free(s);
    return -1;
}

uint16_t http_port(const struct http_server *s)
{
    return s->port;
}

void http_quiesce(struct http_server *s)
{
    if (atomic_exchange(&s->is_quiesced, true))
        return;
    for (uint32_t i = 0; i < s->loop_count; i++)
        epoll_ctl(s->loops[i].epoll_fd, EPOLL_CTL_DEL, s->listen_fd, NULL);
}

/*
 * A stopped server's loops stay allocated (reachable from here, so not a
 * leak): the API layer may still complete a request it retained, and that
 * completion locks the loop's mutex to find the request gone.
 */
static struct http_server *stopped_servers[4];

void http_stop(struct http_server *s)
{
    http_quiesce(s);
    atomic_store(&s->is_stopping, true);
    for (uint32_t i = 0; i < s->loop_count; i++)
        loop_wake(&s->loops[i]);
    for (uint32_t i = 0; i < s->loop_count; i++) {
        pthread_join(s->loops[i].thread, NULL);
        close(s->loops[i].epoll_fd);
        close(s->loops[i].wake_fd);
        s->loops[i].epoll_fd = s->loops[i].wake_fd = -1;
    }
    close(s->listen_fd);
    for (size_t i = 0; i < sizeof(stopped_servers) / sizeof(stopped_servers[0]); i++) {
        if (stopped_servers[i] == NULL) {
            stopped_servers[i] = s;
            return;
        }
    }
    /* More servers than slots were stopped (tests): this one is simply not tracked. */
}

void http_stats(struct http_server *s, struct http_stats *out)
{
    out->connections_open = atomic_load(&s->connections_open);
    out->connections_refused = atomic_load(&s->connections_refused);
    out->deferred = atomic_load(&s->deferred);
    out->oversized_bodies = atomic_load(&s->oversized_bodies);
    out->malformed_requests = atomic_load(&s->malformed_requests);
    out->timeouts = atomic_load(&s->timeouts);
}

#ifdef CATRACA_FUZZ
/* ---- libFuzzer driver (fuzz/fuzz_http.c) --------------------------------------------------- */

/*
 * Feeds bytes to one connection that has no socket, cut at `split` into two
 * reads, and answers every request it completes, as a loop would: the parser
 * callbacks, the bounds, path and query checks and pipelining all run as in
 * the service. Contracts checked: a handled request has an absolute path
 * holding no control byte, no NUL in its decoded query, a body within bound.
 */
static void fuzz_handler(void *context, struct http_request *r)
{
    (void)context;
    size_t length = 0;
    const char *body = http_body(r, &length);
    assert(length <= r->loop->server->config.body_bytes_max);
    assert(body[length] == '\0');
    assert(r->path[0] == '/');
    for (const char *at = r->path; *at != '\0'; at++)
        assert((unsigned char)*at > 0x20 && *at != 0x7f);
    for (uint32_t i = 0; i < r->argument_count; i++)
        for (const char *at = r->arguments[i].value; *at != '\0'; at++)
            assert((unsigned char)*at >= 0x20 && *at != 0x7f);
    (void)http_header(r, "Host");
    (void)http_query(r, "wait");
    http_respond_json(r, 200, "{}", NULL);
}

int http_fuzz_one(const uint8_t *data, size_t size);

int http_fuzz_one(const uint8_t *data, size_t size)
{
    static struct http_server server;
    static struct loop loop;
    server.config = (struct http_config){.threads = 1, .connections_max = 1,
                                         .header_bytes_max = 1024, .body_bytes_max = 2048,
                                         .header_timeout_ms = 1000, .body_timeout_ms = 1000,
                                         .idle_timeout_ms = 1000, .deferred_max = 1,
                                         .handler = fuzz_handler};
    loop.server = &server;
    for (int kind = 0; kind < DEADLINE_KINDS; kind++)
        deadline_list_init(&loop.deadlines[kind], 1000);
    pthread_mutex_init(&loop.mutex, NULL);
    struct connection *c = calloc(1, sizeof(*c));
    assert(c != NULL);
    c->loop = &loop;
    c->fd = -1; /* a 100 Continue "fails": refused, as a broken connection would be */
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    loop.connections = c;
    atomic_store(&server.connections_open, 1);
    size_t split = size > 0 ? data[0] % (size + 1) : 0;
    const char *parts[2] = {(const char *)data, (const char *)data + split};
    size_t lengths[2] = {split, size - split};
    for (int part = 0; part < 2 && !c->is_dead; part++) {
        if (lengths[part] > 0 && c->phase != PHASE_HANDLING)
            conn_feed(c, parts[part], lengths[part]);
        /* What conn_advance does after each answer, without a socket to write to. */
        for (int round = 0; round < 4096 && !c->is_dead && c->phase == PHASE_HANDLING; round++) {
            assert(c->is_response_complete && c->out_length > 0);
            c->out_sent = c->out_length;
            conn_flush(c);
            conn_response_done(c);
            if (c->is_dead || c->leftover_length == 0)
                break;
            char *rest = c->leftover;
            size_t rest_length = c->leftover_length;
            c->leftover = NULL;
            c->leftover_length = 0;
            conn_feed(c, rest, rest_length);
            free(rest);
        }
    }
    if (!c->is_dead) {
        c->fd = -1;
        conn_close(c); /* close(-1) fails harmlessly */
    }
    loop.dead = NULL;
    free(c);
    pthread_mutex_destroy(&loop.mutex);
    return 0;
}
#endif
