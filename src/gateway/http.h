/*
 * http.h - the HTTP/1.1 front door on GNU libmicrohttpd, with every bound
 * explicit: connections (beyond: 503 and close), header bytes (431), body
 * bytes (413), time without progress on a connection (dropped), parked
 * requests (beyond: 503). Errors are API.md's JSON shape.
 *
 * A handler answers at once (http_respond) or parks the request
 * (http_defer) and answers later from ANY thread (http_complete); a parked
 * request stays alive until completed, so every deferral must have a bound
 * in time (the caller's timer). SSE: http_stream_start, then
 * http_stream_push / http_stream_end from any thread.
 */
#ifndef CATRACA_GATEWAY_HTTP_H
#define CATRACA_GATEWAY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_request; /* one request; owned by the server */

typedef void (*http_handler)(void *context, struct http_request *request);

struct http_config {
    const char *host; /* numeric IPv4 address */
    uint16_t port;    /* 0: any free port (see http_port) */
    uint32_t threads;
    uint32_t connections_max;
    uint32_t header_bytes_max;
    uint32_t body_bytes_max;
    uint32_t idle_timeout_s; /* a connection silent this long is closed */
    uint32_t deferred_max;
    http_handler handler;
    void *handler_context;
};

struct http_stats {
    uint64_t connections_open;
    uint64_t connections_refused;
    uint64_t deferred;
    uint64_t oversized_bodies;
};

struct http_server;

int http_start(const struct http_config *config, struct http_server **out);
uint16_t http_port(const struct http_server *server);
/* Stops accepting new connections (open ones are still served). */
void http_quiesce(struct http_server *server);
/* Quiesces, answers whatever is still parked (503, or the end of a stream), waits a
 * bounded time for those answers to leave, stops the threads, frees. */
void http_stop(struct http_server *server);
void http_stats(struct http_server *server, struct http_stats *out);

/* Request accessors (valid until the request is answered). */
const char *http_method(const struct http_request *request);
const char *http_path(const struct http_request *request);
/* A query argument or header value; NULL when absent. */
const char *http_query(const struct http_request *request, const char *name);
const char *http_header(const struct http_request *request, const char *name);
const char *http_body(const struct http_request *request, size_t *length);
const char *http_client_ip(const struct http_request *request);
/*
 * Keeps the request's memory alive past its connection (a parked request
 * registered with another thread must be retained, and released once that
 * thread can no longer reach it). Completing or pushing to a request whose
 * connection closed is a harmless no-op.
 */
void http_retain(struct http_request *request);
void http_release(struct http_request *request);

/* Caller-owned slot for the handler's per-request state (freed by `free` when not NULL). */
void **http_user_data(struct http_request *request);

/*
 * Answers with a body (copied). extra_headers: "Name: value" pairs as a
 * NULL-terminated array of alternating names and values, or NULL.
 */
void http_respond(struct http_request *request, int status, const char *content_type,
                  const char *body, size_t length, const char *const *extra_headers);
void http_respond_json(struct http_request *request, int status, const char *json,
                       const char *const *extra_headers);
/* {"error":{"code","message"}} */
void http_respond_error(struct http_request *request, int status, const char *code,
                        const char *message, const char *const *extra_headers);

/* Parks the request: 0, or -1 when deferred_max are parked (then answer 503 yourself). */
int http_defer(struct http_request *request);
/* Answers a parked request from any thread; only the first completion counts (returns true). */
bool http_complete(struct http_request *request, int status, const char *content_type,
                   const char *body, size_t length, const char *const *extra_headers);

/* Server-Sent Events: answers 200 text/event-stream now; chunks follow. 0 or -1 (limit). */
int http_stream_start(struct http_request *request);
/* Queues "data: <json>\n\n"; false when the stream is over or its buffer (64 KiB) is full. */
bool http_stream_push(struct http_request *request, const char *json);
void http_stream_end(struct http_request *request);

#endif
