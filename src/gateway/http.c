/*
 * http.c - contract in http.h.
 *
 * libmicrohttpd rather than libh2o: MHD's suspend/resume can be driven from
 * any thread, which is exactly what long-polls, SSE and group-committed
 * answers need, and its thread pool, connection limits and time-outs are
 * options rather than code. The gateway's API layer (api.c) only sees this
 * header, so the server library stays replaceable.
 */
#include "gateway/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/api_json.h"

#define STREAM_BUFFER_MAX 65536
/* MHD refuses silently beyond its own limit: keep some room to answer 503 ourselves. */
#define CONNECTION_SLACK 64

static void request_release(struct http_request *r);

struct http_server {
    struct http_config config;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_ulong connections_open;
    atomic_ulong connections_refused;
    atomic_ulong deferred;
    atomic_ulong oversized_bodies;
    /* Parked requests, so that stopping can answer them: MHD refuses to stop with
     * connections suspended. */
    pthread_mutex_t parked_mutex;
    struct http_request *parked;
    bool is_quiesced; /* the stopping thread only */
};

struct http_request {
    struct http_server *server;
    struct MHD_Connection *connection;
    const char *method;
    const char *path;
    char *body;
    size_t body_length, body_capacity;
    bool is_body_too_large;
    bool is_answered; /* a response was queued or is pending */
    void *user_data;
    atomic_int references; /* the connection's, and a stream response's */

    pthread_mutex_t mutex; /* guards what other threads touch: */
    bool is_deferred;      /* counted in server->deferred */
    bool is_completed;     /* first http_complete won */
    struct MHD_Response *pending;
    int pending_status;
    bool is_stream, is_stream_ended, is_stream_suspended;
    bool is_closed; /* the connection is gone: never touch it again */
    struct http_request *parked_prev, *parked_next; /* under server->parked_mutex */
    bool is_parked;
    char *stream;
    size_t stream_length;
};

void http_retain(struct http_request *r)
{
    atomic_fetch_add(&r->references, 1);
}

void http_release(struct http_request *r)
{
    request_release(r);
}

static void request_release(struct http_request *r)
{
    if (atomic_fetch_sub(&r->references, 1) != 1)
        return;
    free(r->body);
    free(r->stream);
    free(r->user_data);
    pthread_mutex_destroy(&r->mutex);
    free(r);
}

/* ---- responses --------------------------------------------------------------------------- */

static struct MHD_Response *make_response(const char *content_type, const char *body, size_t length,
                                          const char *const *headers)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (response == NULL)
        return NULL;
    if (content_type != NULL)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        MHD_add_response_header(response, headers[i], headers[i + 1]);
    return response;
}

void http_respond(struct http_request *r, int status, const char *content_type, const char *body,
                  size_t length, const char *const *extra_headers)
{
    if (r->is_answered)
        return;
    r->is_answered = true;
    struct MHD_Response *response = make_response(content_type, body, length, extra_headers);
    if (response == NULL)
        return;
    MHD_queue_response(r->connection, (unsigned int)status, response);
    MHD_destroy_response(response);
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
    free(json);
}

static void park(struct http_request *r)
{
    struct http_server *s = r->server;
    pthread_mutex_lock(&s->parked_mutex);
    r->parked_prev = NULL;
    r->parked_next = s->parked;
    if (s->parked != NULL)
        s->parked->parked_prev = r;
    s->parked = r;
    r->is_parked = true;
    pthread_mutex_unlock(&s->parked_mutex);
}

static void unpark(struct http_request *r)
{
    struct http_server *s = r->server;
    pthread_mutex_lock(&s->parked_mutex);
    if (r->is_parked) {
        if (r->parked_prev != NULL)
            r->parked_prev->parked_next = r->parked_next;
        else
            s->parked = r->parked_next;
        if (r->parked_next != NULL)
            r->parked_next->parked_prev = r->parked_prev;
        r->is_parked = false;
    }
    pthread_mutex_unlock(&s->parked_mutex);
}

int http_defer(struct http_request *r)
{
    struct http_server *s = r->server;
    if (atomic_fetch_add(&s->deferred, 1) >= s->config.deferred_max) {
        atomic_fetch_sub(&s->deferred, 1);
        return -1;
    }
    r->is_deferred = true;
    r->is_answered = true;
    park(r);
    MHD_suspend_connection(r->connection);
    return 0;
}

bool http_complete(struct http_request *r, int status, const char *content_type, const char *body,
                   size_t length, const char *const *extra_headers)
{
    pthread_mutex_lock(&r->mutex);
    bool is_first = !r->is_completed && !r->is_closed;
    if (is_first) {
        r->is_completed = true;
        r->pending = make_response(content_type, body, length, extra_headers);
        r->pending_status = status;
        /* Under the lock: on_completed cannot close the connection meanwhile. */
        MHD_resume_connection(r->connection);
    }
    pthread_mutex_unlock(&r->mutex);
    return is_first;
}

/* ---- server-sent events ------------------------------------------------------------------ */

static ssize_t stream_reader(void *cls, uint64_t position, char *buffer, size_t max)
{
    struct http_request *r = cls;
    (void)position;
    pthread_mutex_lock(&r->mutex);
    ssize_t result = 0;
    if (r->stream_length > 0) {
        size_t n = r->stream_length < max ? r->stream_length : max;
        memcpy(buffer, r->stream, n);
        memmove(r->stream, r->stream + n, r->stream_length - n);
        r->stream_length -= n;
        result = (ssize_t)n;
    } else if (r->is_stream_ended) {
        result = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing to send: sleep until a push resumes the connection. */
        r->is_stream_suspended = true;
        MHD_suspend_connection(r->connection);
    }
    pthread_mutex_unlock(&r->mutex);
    return result;
}

static void stream_free(void *cls)
{
    request_release(cls);
}

int http_stream_start(struct http_request *r)
{
    struct http_server *s = r->server;
    if (atomic_fetch_add(&s->deferred, 1) >= s->config.deferred_max) {
        atomic_fetch_sub(&s->deferred, 1);
        return -1;
    }
    r->is_deferred = true;
    r->stream = malloc(STREAM_BUFFER_MAX);
    if (r->stream == NULL) {
        atomic_fetch_sub(&s->deferred, 1);
        r->is_deferred = false;
        return -1;
    }
    r->is_stream = true;
    park(r);
    atomic_fetch_add(&r->references, 1);
    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, stream_free);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    r->is_answered = true;
    MHD_queue_response(r->connection, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return 0;
}

bool http_stream_push(struct http_request *r, const char *json)
{
    size_t length = strlen(json);
    pthread_mutex_lock(&r->mutex);
    bool is_ok = !r->is_stream_ended && r->stream_length + length + 8 <= STREAM_BUFFER_MAX;
    bool was_suspended = false;
    if (is_ok) {
        memcpy(r->stream + r->stream_length, "data: ", 6);
        memcpy(r->stream + r->stream_length + 6, json, length);
        memcpy(r->stream + r->stream_length + 6 + length, "\n\n", 2);
        r->stream_length += length + 8;
        was_suspended = r->is_stream_suspended;
        r->is_stream_suspended = false;
    }
    if (was_suspended && !r->is_closed)
        MHD_resume_connection(r->connection);
    pthread_mutex_unlock(&r->mutex);
    return is_ok;
}

void http_stream_end(struct http_request *r)
{
    pthread_mutex_lock(&r->mutex);
    r->is_stream_ended = true;
    if (r->is_stream_suspended && !r->is_closed)
        MHD_resume_connection(r->connection);
    r->is_stream_suspended = false;
    pthread_mutex_unlock(&r->mutex);
}

/* ---- accessors --------------------------------------------------------------------------- */

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
    return MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(const struct http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

const char *http_body(const struct http_request *r, size_t *length)
{
    *length = r->body_length;
    return r->body ? r->body : "";
}

const char *http_client_ip(const struct http_request *r)
{
    static _Thread_local char text[INET6_ADDRSTRLEN];
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    text[0] = '\0';
    if (info != NULL && info->client_addr != NULL && info->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)info->client_addr)->sin_addr, text,
                  sizeof(text));
    else if (info != NULL && info->client_addr != NULL)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)info->client_addr)->sin6_addr, text,
                  sizeof(text));
    return text;
}

void **http_user_data(struct http_request *r)
{
    return &r->user_data;
}

/* ---- MHD callbacks ----------------------------------------------------------------------- */

static enum MHD_Result sum_header_bytes(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* Checks that can answer before the body is read; true when answered. */
static bool refuse_early(struct http_request *r, const char *url)
{
    struct http_server *s = r->server;
    if (atomic_load(&s->connections_open) > s->config.connections_max) {
        atomic_fetch_add(&s->connections_refused, 1);
        static const char *const close_headers[] = {"Connection", "close", "Retry-After", "1",
                                                    NULL};
        http_respond_error(r, 503, "unavailable", "too many connections; retry shortly",
                           close_headers);
        return true;
    }
    size_t header_bytes = strlen(url) + strlen(r->method) + 12;
    MHD_get_connection_values(r->connection, MHD_HEADER_KIND, sum_header_bytes, &header_bytes);
    if (header_bytes > s->config.header_bytes_max) {
        http_respond_error(r, 431, "invalid_request", "request headers are too large", NULL);
        return true;
    }
    const char *length =
        MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length != NULL && strtoull(length, NULL, 10) > s->config.body_bytes_max) {
        atomic_fetch_add(&s->oversized_bodies, 1);
        static const char *const close_headers[] = {"Connection", "close", NULL};
        http_respond_error(r, 413, "payload_too_large", "request body is too large", close_headers);
        return true;
    }
    return false;
}

static void body_append(struct http_request *r, const char *data, size_t size)
{
    if (r->is_body_too_large || r->body_length + size > r->server->config.body_bytes_max) {
        r->is_body_too_large = true;
        return;
    }
    if (r->body_length + size + 1 > r->body_capacity) {
        size_t capacity = r->body_capacity ? r->body_capacity : 1024;
        while (capacity < r->body_length + size + 1)
            capacity *= 2;
        char *body = realloc(r->body, capacity);
        if (body == NULL) {
            r->is_body_too_large = true;
            return;
        }
        r->body = body;
        r->body_capacity = capacity;
    }
    memcpy(r->body + r->body_length, data, size);
    r->body_length += size;
    r->body[r->body_length] = '\0';
}

/* Queues a response completed from another thread, on the connection's own thread. */
static void flush_pending(struct http_request *r)
{
    pthread_mutex_lock(&r->mutex);
    struct MHD_Response *response = r->pending;
    int status = r->pending_status;
    r->pending = NULL;
    pthread_mutex_unlock(&r->mutex);
    if (response != NULL) {
        MHD_queue_response(r->connection, (unsigned int)status, response);
        MHD_destroy_response(response);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    (void)version;
    struct http_request *r = *con_cls;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->server = s;
        r->connection = connection;
        r->method = method;
        r->path = url;
        atomic_init(&r->references, 1);
        pthread_mutex_init(&r->mutex, NULL);
        *con_cls = r;
        refuse_early(r, url);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        body_append(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->is_deferred && !r->is_stream) {
        flush_pending(r);
        return MHD_YES;
    }
    if (r->is_answered)
        return MHD_YES;
    if (r->is_body_too_large) {
        atomic_fetch_add(&s->oversized_bodies, 1);
        http_respond_error(r, 413, "payload_too_large", "request body is too large", NULL);
        return MHD_YES;
    }
    s->config.handler(s->config.handler_context, r);
    if (!r->is_answered)
        http_respond_error(r, 500, "unavailable", "no answer", NULL);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    struct http_server *s = cls;
    struct http_request *r = *con_cls;
    (void)connection;
    (void)code;
    if (r == NULL)
        return;
    if (r->is_deferred)
        atomic_fetch_sub(&s->deferred, 1);
    unpark(r);
    pthread_mutex_lock(&r->mutex);
    if (r->pending != NULL)
        MHD_destroy_response(r->pending);
    r->pending = NULL;
    r->is_stream_ended = true;
    r->is_closed = true;
    pthread_mutex_unlock(&r->mutex);
    *con_cls = NULL;
    request_release(r);
}

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    (void)connection;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->connections_open, 1);
    else
        atomic_fetch_sub(&s->connections_open, 1);
}

/* ---- life cycle -------------------------------------------------------------------------- */

int http_start(const struct http_config *config, struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->config = *config;
    pthread_mutex_init(&s->parked_mutex, NULL);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(config->port)};
    if (inet_pton(AF_INET, config->host, &address.sin_addr) != 1) {
        fprintf(stderr, "catraca: listen address \"%s\" is not an IPv4 address\n", config->host);
        free(s);
        return -1;
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    s->daemon = MHD_start_daemon(
        flags, config->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &address,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)config->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)(config->connections_max + CONNECTION_SLACK), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)config->idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)config->header_bytes_max + 8192, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned int)1, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, s, MHD_OPTION_END);
    if (s->daemon == NULL) {
        fprintf(stderr, "catraca: cannot listen on %s:%u\n", config->host, config->port);
        free(s);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : config->port;
    *out = s;
    return 0;
}

uint16_t http_port(const struct http_server *server)
{
    return server->port;
}

/* Answers every request still parked (503, or the end of a stream). */
static void answer_parked(struct http_server *s)
{
    static const char body[] = "{\"error\":{\"code\":\"unavailable\",\"message\":"
                               "\"the server is stopping; retry shortly\"}}";
    pthread_mutex_lock(&s->parked_mutex);
    for (struct http_request *r = s->parked; r != NULL; r = r->parked_next) {
        if (r->is_stream)
            http_stream_end(r);
        else
            http_complete(r, 503, "application/json", body, sizeof(body) - 1, NULL);
    }
    pthread_mutex_unlock(&s->parked_mutex);
}

void http_quiesce(struct http_server *server)
{
    if (!server->is_quiesced)
        MHD_quiesce_daemon(server->daemon);
    server->is_quiesced = true;
}

void http_stop(struct http_server *server)
{
    if (server == NULL)
        return;
    http_quiesce(server);
    /* Bounded: the loops need a moment to send what was resumed before MHD may stop. */
    for (int i = 0; i < 200 && atomic_load(&server->deferred) > 0; i++) {
        answer_parked(server);
        struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    MHD_stop_daemon(server->daemon);
    pthread_mutex_destroy(&server->parked_mutex);
    free(server);
}

void http_stats(struct http_server *s, struct http_stats *out)
{
    out->connections_open = atomic_load(&s->connections_open);
    out->connections_refused = atomic_load(&s->connections_refused);
    out->deferred = atomic_load(&s->deferred);
    out->oversized_bodies = atomic_load(&s->oversized_bodies);
}
