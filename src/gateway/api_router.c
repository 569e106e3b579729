/*
 * api_router.c - api_handle: one table of routes (redis's command table, h2o's
 * handler per path) says which handler answers, with which role, body and
 * metrics label. The table alone answers 404 (no row has the path) and 405 with
 * `Allow` (rows have the path with other methods), so a new route is one row
 * and never a second hand-kept list. HEAD is served wherever GET is, by the GET
 * handler: the HTTP layer leaves the body out.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "gateway/api_internal.h"

#define PATH_BYTES_MAX 512
#define ALLOW_BYTES_MAX 64

enum route_role {
    ROLE_PUBLIC, /* no token needed */
    ROLE_ANY,    /* any valid token */
    ROLE_ADMIN,  /* a valid token with role admin */
    ROLE_STAFF,  /* ... with role payments or admin */
};

enum route_mode {
    MODE_ALWAYS,
    MODE_DEMO,      /* catraca serve --demo: otherwise the route does not exist (404) */
    MODE_CHALLENGE, /* --challenge on: likewise */
};

enum route_body {
    BODY_NONE, /* a body sent anyway is ignored */
    BODY_JSON, /* a body must come with Content-Type: application/json, else 415 */
};

struct route {
    const char *method;
    /* Segments between slashes: literals, or `{name}`, which matches an id only (API.md:
     * 1-64 of [A-Za-z0-9._-]), so a path never reaches a handler with a truncated or escaped
     * id in it. */
    const char *pattern;
    enum route_role role;
    enum route_mode mode;
    enum route_body body;
    void (*handler)(struct route_context *c);
    enum metrics_route label;
};

/* A row is two lines: {method, pattern, role, mode, body,
                          handler, metrics label}. */
/* clang-format off */
static const struct route routes[] = {
    {"GET",    "/",                                ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_pages_buyer,                    METRICS_ROUTE_HOME},
    {"GET",    "/e/{event}",                       ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_pages_buyer,                    METRICS_ROUTE_HOME},
    {"GET",    "/admin",                           ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_pages_admin,                    METRICS_ROUTE_HOME},
    {"GET",    "/assets/{asset}",                  ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_pages_asset,                    METRICS_ROUTE_HOME},
    {"GET",    "/favicon.ico",                     ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_pages_favicon,                  METRICS_ROUTE_HOME},
    {"GET",    "/healthz",                         ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_ops_healthz,                    METRICS_ROUTE_HEALTH},
    {"GET",    "/readyz",                          ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_ops_readyz,                     METRICS_ROUTE_HEALTH},
    {"GET",    "/metrics",                         ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_ops_metrics,                    METRICS_ROUTE_METRICS},
    {"GET",    "/v1/challenge",                    ROLE_PUBLIC, MODE_CHALLENGE, BODY_NONE,
               api_ops_challenge,                  METRICS_ROUTE_OTHER},
    {"POST",   "/v1/demo/token",                   ROLE_PUBLIC, MODE_DEMO,      BODY_JSON,
               api_ops_demo_token,                 METRICS_ROUTE_DEMO},
    {"GET",    "/v1/events",                       ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_events_list,                    METRICS_ROUTE_EVENTS},
    {"POST",   "/v1/events",                       ROLE_ADMIN,  MODE_ALWAYS,    BODY_JSON,
               api_events_create,                  METRICS_ROUTE_EVENTS},
    {"GET",    "/v1/events/{event}",               ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_events_get,                     METRICS_ROUTE_EVENT},
    {"POST",   "/v1/events/{event}/state",         ROLE_ADMIN,  MODE_ALWAYS,    BODY_JSON,
               api_events_set_state,               METRICS_ROUTE_EVENT_STATE},
    {"POST",   "/v1/events/{event}/purchases",     ROLE_ANY,    MODE_ALWAYS,    BODY_JSON,
               api_purchases_create,               METRICS_ROUTE_PURCHASE_CREATE},
    {"GET",    "/.well-known/catraca-receipt-key", ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_log_public_key,                 METRICS_ROUTE_OTHER},
    {"GET",    "/v1/events/{event}/log",           ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_log_head,                       METRICS_ROUTE_OTHER},
    {"GET",    "/v1/events/{event}/log/inclusion", ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_log_inclusion,                  METRICS_ROUTE_OTHER},
    {"GET",    "/v1/events/{event}/log/consistency", ROLE_PUBLIC, MODE_ALWAYS,  BODY_NONE,
               api_log_consistency,                METRICS_ROUTE_OTHER},
    {"GET",    "/v1/events/{event}/refunds",       ROLE_STAFF,  MODE_ALWAYS,    BODY_NONE,
               api_purchases_refunds,              METRICS_ROUTE_EVENT},
    {"GET",    "/v1/purchases/{purchase}",         ROLE_ANY,    MODE_ALWAYS,    BODY_NONE,
               api_purchases_get,                  METRICS_ROUTE_PURCHASE},
    {"DELETE", "/v1/purchases/{purchase}",         ROLE_ANY,    MODE_ALWAYS,    BODY_NONE,
               api_purchases_cancel,               METRICS_ROUTE_PURCHASE_CANCEL},
    {"GET",    "/v1/purchases/{purchase}/events",  ROLE_ANY,    MODE_ALWAYS,    BODY_NONE,
               api_purchases_stream,               METRICS_ROUTE_PURCHASE_EVENTS},
    {"POST",   "/v1/purchases/{purchase}/confirm", ROLE_STAFF,  MODE_ALWAYS,    BODY_JSON,
               api_purchases_confirm,              METRICS_ROUTE_PURCHASE_CONFIRM},
    /* what the pages read (api_console.c) */
    {"GET",    "/v1/config",                       ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_console_config,                 METRICS_ROUTE_CONFIG},
    {"GET",    "/v1/events/{event}/stream",        ROLE_PUBLIC, MODE_ALWAYS,    BODY_NONE,
               api_console_event_stream,           METRICS_ROUTE_EVENT_STREAM},
    {"GET",    "/v1/events/{event}/decisions",     ROLE_ADMIN,  MODE_ALWAYS,    BODY_NONE,
               api_console_decisions,              METRICS_ROUTE_EVENT_DECISIONS},
    {"GET",    "/v1/stats",                        ROLE_ADMIN,  MODE_ALWAYS,    BODY_NONE,
               api_console_stats,                  METRICS_ROUTE_STATS},
    {"GET",    "/v1/stats/stream",                 ROLE_ADMIN,  MODE_ALWAYS,    BODY_NONE,
               api_console_stats_stream,           METRICS_ROUTE_STATS},
    {"POST",   "/v1/demo/rehearse",                ROLE_ADMIN,  MODE_DEMO,      BODY_JSON,
               api_rehearse_start,                 METRICS_ROUTE_REHEARSE},
    {"GET",    "/v1/demo/rehearse",                ROLE_ADMIN,  MODE_DEMO,      BODY_NONE,
               api_rehearse_status,                METRICS_ROUTE_REHEARSE},
};
/* clang-format on */

#define ROUTE_COUNT (sizeof(routes) / sizeof(routes[0]))

/* ---- authentication ---------------------------------------------------------------------- */

/* Verifies the bearer token into c->claims; answers 401 itself and returns false when it is not
 * valid. */
static bool authenticate(struct route_context *c)
{
    struct api *api = c->api;
    const char *header = http_header(c->request, "Authorization");
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0) {
        api_reply_error(c, 401, "unauthorized", "missing bearer token", NULL);
        return false;
    }
    int64_t now_s = clock_wall_ms() / 1000;
    struct thread_handles *h = api_handles_of(api);
    struct token_cache_key key = {.is_cacheable = false};
    if (h != NULL && token_cache_find(&h->tokens, header + 7, now_s, &c->claims, &key))
        return true;
    int error = jwt_verify(api->config.jwt_secret, api->config.jwt_secret_length, header + 7,
                           now_s, &c->claims);
    if (error == 0 && h != NULL)
        token_cache_add(&h->tokens, &key, &c->claims);
    if (error != 0) {
        metrics_count(&api->metrics, METRICS_AUTH_FAILURES);
        api_reply_error(c, 401, "unauthorized", jwt_strerror(error), NULL);
        return false;
    }
    return true;
}

static bool is_role_enough(enum route_role needed, int role)
{
    switch (needed) {
    case ROLE_PUBLIC:
    case ROLE_ANY:
        return true;
    case ROLE_ADMIN:
        return role == JWT_ROLE_ADMIN;
    case ROLE_STAFF:
        return role == JWT_ROLE_PAYMENTS || role == JWT_ROLE_ADMIN;
    }
    return false;
}

/* ---- matching ---------------------------------------------------------------------------- */

/* Splits the path into at most API_SEGMENTS_MAX segments; false when there are more. */
static bool split_path(const char *path, char *buffer, size_t size, struct route_context *c)
{
    snprintf(buffer, size, "%s", path);
    c->segment_count = 0;
    for (char *save = NULL, *s = strtok_r(buffer, "/", &save); s != NULL;
         s = strtok_r(NULL, "/", &save)) {
        if (c->segment_count == API_SEGMENTS_MAX)
            return false;
        c->segments[c->segment_count++] = s;
    }
    return true;
}

static bool is_mode_on(const struct api *api, enum route_mode mode)
{
    return mode == MODE_ALWAYS || (mode == MODE_DEMO && api->config.is_demo) ||
           (mode == MODE_CHALLENGE && api->config.is_challenge_on);
}

/* True when c's segments are the pattern's: literals equal, `{...}` an id. */
static bool is_path_of(const struct route *route, const struct route_context *c)
{
    const char *s = route->pattern;
    size_t i = 0;
    for (;;) {
        while (*s == '/')
            s++;
        if (*s == '\0')
            return i == c->segment_count;
        size_t length = strcspn(s, "/");
        if (i == c->segment_count)
            return false;
        const char *segment = c->segments[i++];
        bool is_match = s[0] == '{' ? api_json_is_id(segment)
                                    : strlen(segment) == length && memcmp(segment, s, length) == 0;
        if (!is_match)
            return false;
        s += length;
    }
}

static bool is_method_of(const struct route *route, const char *method)
{
    return strcmp(route->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route->method, "GET") == 0);
}

/*
 * The row for c's path and method, or NULL; then `allow` lists the methods the path has
 * ("GET, HEAD, POST"), empty when no row has the path.
 */
static const struct route *find_route(const struct route_context *c, const char *method,
                                      char allow[ALLOW_BYTES_MAX])
{
    allow[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        const struct route *route = &routes[i];
        if (!is_mode_on(c->api, route->mode) || !is_path_of(route, c))
            continue;
        if (is_method_of(route, method))
            return route;
        bool is_get = strcmp(route->method, "GET") == 0;
        int n = snprintf(allow + used, ALLOW_BYTES_MAX - used, "%s%s%s", used ? ", " : "",
                         route->method, is_get ? ", HEAD" : "");
        assert(n > 0 && used + (size_t)n < ALLOW_BYTES_MAX);
        used += (size_t)n;
    }
    return NULL;
}

/* application/json in any case, alone or with parameters ("; charset=utf-8"): RFC 9110 8.3.1. */
static bool is_json_media_type(const char *value)
{
    static const char json[] = "application/json";
    if (value == NULL)
        return false;
    value += strspn(value, " \t");
    if (strncasecmp(value, json, sizeof(json) - 1) != 0)
        return false;
    const char *rest = value + sizeof(json) - 1;
    rest += strspn(rest, " \t");
    return *rest == '\0' || *rest == ';';
}

/*
 * A CORS preflight from a listed origin (--cors-origin; the HTTP layer adds the origin and
 * Vary). The methods are the path's own, from the table; the headers are every request header
 * the API reads. No token is asked: browsers send none on a preflight. Other OPTIONS requests
 * get the table's 405 with Allow, as before CORS existed.
 */
static void answer_preflight(struct route_context *c, const char *allow)
{
    static const char request_headers[] =
        "Authorization, Content-Type, Idempotency-Key, X-Challenge, X-Request-Id";
    char methods[ALLOW_BYTES_MAX + 16];
    snprintf(methods, sizeof(methods), "%s, OPTIONS", allow);
    const char *headers[] = {"Allow",
                             methods,
                             "Access-Control-Allow-Methods",
                             methods,
                             "Access-Control-Allow-Headers",
                             request_headers,
                             "Access-Control-Max-Age",
                             "600",
                             NULL};
    api_reply(c, 204, NULL, "", 0, headers);
}

/* ---- the entry point --------------------------------------------------------------------- */

void api_handle(void *context, struct http_request *request)
{
    struct api *api = context;
    struct route_context c = {.api = api,
                              .request = request,
                              .route = METRICS_ROUTE_OTHER,
                              .started_us = clock_monotonic_us()};
    if (atomic_load(&api->is_draining)) {
        static const char *const headers[] = {"Connection", "close", "Retry-After", "1", NULL};
        api_reply_error(&c, 503, "unavailable", "the server is stopping; retry shortly", headers);
        return;
    }
    char buffer[PATH_BYTES_MAX];
    const char *path = http_path(request);
    if (strlen(path) >= sizeof(buffer) || !split_path(path, buffer, sizeof(buffer), &c)) {
        api_reply_error(&c, 404, "not_found", "no such path", NULL);
        return;
    }
    char allow[ALLOW_BYTES_MAX];
    const struct route *route = find_route(&c, http_method(request), allow);
    if (route == NULL && allow[0] != '\0' && strcmp(http_method(request), "OPTIONS") == 0 &&
        http_cors_origin(request) != NULL) {
        answer_preflight(&c, allow);
        return;
    }
    if (route == NULL && allow[0] == '\0') {
        api_reply_error(&c, 404, "not_found", "no such path", NULL);
        return;
    }
    if (route == NULL) {
        const char *headers[] = {"Allow", allow, NULL};
        api_reply_error(&c, 405, "invalid_request", "method not allowed on this path; see Allow",
                        headers);
        return;
    }
    c.route = route->label;
    if (route->role != ROLE_PUBLIC && !authenticate(&c))
        return;
    if (!is_role_enough(route->role, c.claims.role)) {
        api_reply_error(&c, 403, "forbidden", "this token's role may not do that", NULL);
        return;
    }
    size_t body_length = 0;
    http_body(request, &body_length);
    if (route->body == BODY_JSON && body_length > 0 &&
        !is_json_media_type(http_header(request, "Content-Type"))) {
        api_reply_error(&c, 415, "unsupported_media_type",
                        "the body must be JSON, sent with Content-Type: application/json", NULL);
        return;
    }
    route->handler(&c);
}

bool api_router_validate(void)
{
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        const struct route *a = &routes[i];
        bool is_known_method = strcmp(a->method, "GET") == 0 || strcmp(a->method, "POST") == 0 ||
                               strcmp(a->method, "DELETE") == 0;
        if (!is_known_method || a->pattern[0] != '/' || a->handler == NULL ||
            a->label >= METRICS_ROUTE_COUNT)
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(routes[j].method, a->method) == 0 &&
                strcmp(routes[j].pattern, a->pattern) == 0)
                return false; /* the second row would never answer */
    }
    return true;
}
