/*
 * http.h - the HTTP/1.1 front door: one epoll event loop per thread, with
 * every bound explicit: connections (beyond: 503 and close), header bytes
 * (431, or 414 for the request line), body bytes (413), a total deadline for
 * the headers and another for the body (then dropped), an idle deadline
 * between keep-alive requests, a deadline on a write the client does not
 * read, parked requests (beyond: 503). Framing follows RFC 9112: a malformed
 * request, Transfer-Encoding with Content-Length, an invalid Content-Length
 * or an HTTP/1.1 request without one Host get one 400 and the connection is
 * closed. Every error the layer sends itself is API.md's JSON shape. HEAD is
 * answered like GET without the body.
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

#define HTTP_ORIGIN_BYTES_MAX 253 /* the longest origin --cors-origin accepts */

typedef void (*http_handler)(void *context, struct http_request *request);

struct http_config {
    const char *host; /* numeric IPv4 or IPv6 address */
    uint16_t port;    /* 0: any free port (see http_port) */
    uint32_t threads; /* event loops */
    uint32_t connections_max;
    uint32_t header_bytes_max; /* request line + header fields */
    uint32_t body_bytes_max;
    uint32_t header_timeout_ms; /* from a request's first byte to the end of its headers */
    uint32_t body_timeout_ms;   /* from the end of the headers to the end of the body; also
                                   how long a response may wait for the client to read */
    uint32_t idle_timeout_ms;   /* between keep-alive requests */
    uint32_t deferred_max;
    /* TLS (OpenSSL, TLS 1.2 and 1.3, ALPN "http/1.1") when both are set: PEM files. */
    const char *tls_cert_path;
    const char *tls_key_path;
    /* CORS: the exact origins (comma-separated, no spaces) whose pages may call; NULL or "": none.
     * A request whose Origin is listed gets Access-Control-Allow-Origin with that origin (never
     * "*") on its response; once any is listed every response says Vary: Origin. Preflights are
     * the handler's (it sees the match through http_cors_origin). */
    const char *cors_origins;
    http_handler handler;
    void *handler_context;
    bool is_access_log; /* one info line per answered request (component "access") */
};

struct http_stats {
    uint64_t connections_open;
    uint64_t connections_refused;
    uint64_t deferred;
    uint64_t oversized_bodies;
    uint64_t malformed_requests; /* answered 400/414/431 by this layer */
    uint64_t timeouts;           /* connections dropped at a deadline */
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
/* The request's Origin when http_config.cors_origins lists it, else NULL. */
const char *http_cors_origin(const struct http_request *request);
const char *http_client_ip(const struct http_request *request);
/* The n-th (from 0) field named name, in arrival order; NULL past the last. For a header that
 * may repeat as a list (X-Forwarded-For). */
const char *http_header_nth(const struct http_request *request, const char *name, uint32_t n);

/*
 * Every request has an id, answered in an X-Request-Id header on every
 * response this layer sends for it (the handler's, and its own refusals), and
 * set as the logging thread's request id (core/logline.h) while the handler
 * runs. It is the client's X-Request-Id when sane (http_request_id_is_sane),
 * else a new one. Valid, and constant, from any thread while the request is
 * retained.
 */
#define HTTP_REQUEST_ID_MAX 64
const char *http_request_id(const struct http_request *request);
/* 1..HTTP_REQUEST_ID_MAX bytes of [A-Za-z0-9._:-]. */
bool http_request_id_is_sane(const char *id);
/* 32 random lowercase hex digits (a new id). */
void http_request_id_make(char out[HTTP_REQUEST_ID_MAX + 1]);
/*
 * Keeps the request's memory alive past its connection (a parked request
 * registered with another thread must be retained, and released once that
 * thread can no longer reach it). Completing or pushing to a request whose
 * connection closed is a harmless no-op.
 */
void http_retain(struct http_request *request);
void http_release(struct http_request *request);

/*
 * Called once, on the request's event-loop thread, when its connection goes
 * away before a parked request was answered or a stream ended (the client
 * left): the caller lets go of whatever waits for it. Set after parking, from
 * any thread. Whoever disarms the hook owns whatever `context` holds: the
 * hook itself when it runs, or the caller of http_abandon_cancel when that
 * returns true (false: the hook has run or is running).
 */
void http_on_abandon(struct http_request *request, void (*hook)(void *context), void *context);
bool http_abandon_cancel(struct http_request *request);

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

/*
 * Between http_defer_wakeups() and http_flush_wakeups() on one thread,
 * completions made by that thread (http_complete, http_stream_*) wake no
 * event loop; the flush wakes each loop that received one, once. A group
 * commit's answers are bracketed so: each loop wakes once per commit and
 * answers its whole share of it. Pairs may nest; only the outermost flushes.
 */
void http_defer_wakeups(void);
void http_flush_wakeups(void);

/* Server-Sent Events: answers 200 text/event-stream now; events follow; a comment line
 * every 15 s keeps proxies from cutting an idle stream. 0 or -1 (limit). */
int http_stream_start(struct http_request *request);
/* The same from ANY thread, for a request parked with http_defer and not answered: its head
 * goes out with the stream's first events. 0, or -1 when it was answered or its client left
 * (then nothing was sent: finish it as any parked request). */
int http_stream_start_parked(struct http_request *request);
/* Queues "data: <json>\n\n"; false when the stream is over or its buffer (64 KiB) is full. */
bool http_stream_push(struct http_request *request, const char *json);
void http_stream_end(struct http_request *request);

#endif
