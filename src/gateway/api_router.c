/*
 * api_router.c - api_handle: which handler answers a request, after the token
 * and the role it needs.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "gateway/api_internal.h"

/* ---- authentication ---------------------------------------------------------------------- */

/* Verifies the bearer token; answers 401 itself and returns false when it is not valid. */
static bool authenticate(struct route_context *c)
{
    struct api *api = c->api;
    const char *header = http_header(c->request, "Authorization");
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0) {
        api_reply_error(c, 401, "unauthorized", "missing bearer token", NULL);
        return false;
    }
    int error = jwt_verify(api->config.jwt_secret, api->config.jwt_secret_length, header + 7,
                           clock_wall_ms() / 1000, &c->claims);
    if (error != 0) {
        metrics_count(&api->metrics, METRICS_AUTH_FAILURES);
        api_reply_error(c, 401, "unauthorized", jwt_strerror(error), NULL);
        return false;
    }
    return true;
}

bool api_require_role(struct route_context *c, int role_a, int role_b)
{
    if (c->claims.role == role_a || c->claims.role == role_b)
        return true;
    api_reply_error(c, 403, "forbidden", "this token's role may not do that", NULL);
    return false;
}

/* ---- routing ----------------------------------------------------------------------------- */

/* Splits the path into at most 6 segments; false when there are more. */
static bool split_path(const char *path, char *buffer, size_t size, struct route_context *c)
{
    snprintf(buffer, size, "%s", path);
    c->segment_count = 0;
    for (char *save = NULL, *s = strtok_r(buffer, "/", &save); s != NULL;
         s = strtok_r(NULL, "/", &save)) {
        if (c->segment_count == 6)
            return false;
        c->segments[c->segment_count++] = s;
    }
    return true;
}

static bool is(const struct route_context *c, size_t count, const char *a, const char *b,
               const char *d)
{
    if (c->segment_count != count)
        return false;
    const char *want[] = {a, b, NULL, d};
    for (size_t i = 0; i < count && i < 4; i++)
        if (want[i] != NULL && strcmp(c->segments[i], want[i]) != 0)
            return false;
    return true;
}

/* Routes needing no token. True when handled. */
static bool route_public(struct route_context *c, const char *method)
{
    bool is_get = strcmp(method, "GET") == 0;
    if (is_get && c->segment_count == 0) {
        c->route = METRICS_ROUTE_HOME;
        api_ops_home(c);
        return true;
    }
    if (is_get && is(c, 1, "healthz", NULL, NULL)) {
        c->route = METRICS_ROUTE_HEALTH;
        api_ops_healthz(c);
    } else if (is_get && is(c, 1, "readyz", NULL, NULL)) {
        c->route = METRICS_ROUTE_HEALTH;
        api_ops_readyz(c);
    } else if (is_get && is(c, 1, "metrics", NULL, NULL)) {
        c->route = METRICS_ROUTE_METRICS;
        api_ops_metrics(c);
    } else if (is_get && is(c, 2, "v1", "events", NULL)) {
        c->route = METRICS_ROUTE_EVENTS;
        api_events_list(c);
    } else if (is_get && c->segment_count == 3 && is(c, 3, "v1", "events", NULL)) {
        c->route = METRICS_ROUTE_EVENT;
        api_events_get(c);
    } else if (is_get && is(c, 2, "v1", "challenge", NULL) && c->api->config.is_challenge_on) {
        c->route = METRICS_ROUTE_OTHER;
        api_ops_challenge(c);
    } else if (strcmp(method, "POST") == 0 && is(c, 3, "v1", "demo", NULL) &&
               strcmp(c->segments[2], "token") == 0 && c->api->config.is_demo) {
        c->route = METRICS_ROUTE_DEMO;
        api_ops_demo_token(c);
    } else {
        return false;
    }
    return true;
}

/* 405 for a known path with another method, else 404. */
static void route_unknown(struct route_context *c)
{
    bool is_known = is(c, 2, "v1", "events", NULL) || is(c, 3, "v1", "events", NULL) ||
                    is(c, 4, "v1", "events", "state") || is(c, 4, "v1", "events", "purchases") ||
                    is(c, 3, "v1", "purchases", NULL) || is(c, 4, "v1", "purchases", "events") ||
                    is(c, 4, "v1", "purchases", "confirm");
    c->route = METRICS_ROUTE_OTHER;
    if (is_known)
        api_reply_error(c, 405, "invalid_request", "method not allowed on this path", NULL);
    else
        api_reply_error(c, 404, "not_found", "no such path", NULL);
}

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
    char buffer[512];
    const char *path = http_path(request), *method = http_method(request);
    if (strlen(path) >= sizeof(buffer) || !split_path(path, buffer, sizeof(buffer), &c)) {
        api_reply_error(&c, 404, "not_found", "no such path", NULL);
        return;
    }
    if (route_public(&c, method))
        return;
    bool is_post = strcmp(method, "POST") == 0, is_get = strcmp(method, "GET") == 0;
    bool is_delete = strcmp(method, "DELETE") == 0;
    struct {
        bool matches;
        enum metrics_route route;
    } routes[] = {
        {is_post && is(&c, 2, "v1", "events", NULL), METRICS_ROUTE_EVENTS},
        {is_post && is(&c, 4, "v1", "events", "state"), METRICS_ROUTE_EVENT_STATE},
        {is_post && is(&c, 4, "v1", "events", "purchases"), METRICS_ROUTE_PURCHASE_CREATE},
        {is_get && is(&c, 3, "v1", "purchases", NULL), METRICS_ROUTE_PURCHASE},
        {is_get && is(&c, 4, "v1", "purchases", "events"), METRICS_ROUTE_PURCHASE_EVENTS},
        {is_delete && is(&c, 3, "v1", "purchases", NULL), METRICS_ROUTE_PURCHASE_CANCEL},
        {is_post && is(&c, 4, "v1", "purchases", "confirm"), METRICS_ROUTE_PURCHASE_CONFIRM},
    };
    size_t which = 0, count = sizeof(routes) / sizeof(routes[0]);
    while (which < count && !routes[which].matches)
        which++;
    if (which == count) {
        route_unknown(&c);
        return;
    }
    c.route = routes[which].route;
    if (!authenticate(&c))
        return;
    switch (which) {
    case 0:
        api_events_create(&c);
        break;
    case 1:
        api_events_set_state(&c);
        break;
    case 2:
        api_purchases_create(&c);
        break;
    case 3:
        api_purchases_get(&c);
        break;
    case 4:
        api_purchases_stream(&c);
        break;
    case 5:
        api_purchases_cancel(&c);
        break;
    default:
        api_purchases_confirm(&c);
        break;
    }
}
