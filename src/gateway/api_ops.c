/*
 * api_ops.c - the routes for operators and newcomers: liveness, readiness,
 * Prometheus metrics, the home page, and the demo-only and challenge-only
 * routes.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"
#include "gateway/api_internal.h"

/* Demo mode only: a token for any customer and role, so a sale can be tried without an IdP. */
void api_ops_demo_token(struct route_context *c)
{
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    /* The same strict reading as every other body: one object, no control characters, no
     * member twice. */
    cJSON *root = api_json_parse_object(body, length);
    const cJSON *customer = NULL, *role = NULL;
    bool is_read = root != NULL && api_json_member(root, "customer", &customer) &&
                   api_json_member(root, "role", &role);
    const char *role_name = cJSON_IsString(role) ? role->valuestring : "buyer";
    bool is_role_ok = strcmp(role_name, "buyer") == 0 || strcmp(role_name, "payments") == 0 ||
                      strcmp(role_name, "admin") == 0;
    if (!is_read || !cJSON_IsString(customer) || !api_json_is_id(customer->valuestring) || !is_role_ok ||
        (role != NULL && !cJSON_IsString(role))) {
        cJSON_Delete(root);
        api_reply_error(c, 400, "invalid_request",
                        "customer must be an id and role buyer, payments or admin", NULL);
        return;
    }
    char token[2048];
    int n =
        jwt_sign(c->api->config.jwt_secret, c->api->config.jwt_secret_length, customer->valuestring,
                 role_name, clock_wall_ms() / 1000 + 24 * 3600, token, sizeof(token));
    cJSON_Delete(root);
    if (n < 0) {
        api_reply_error(c, 503, "unavailable", "token could not be signed", NULL);
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "token", token);
    api_reply_cjson(c, 200, json, NULL);
}

/* Ready when the store and the log both answer a read. */
void api_ops_readyz(struct route_context *c)
{
    struct thread_handles *h = api_handles_of(c->api);
    struct store_event event;
    int error =
        h == NULL ? CATRACA_E_UNAVAILABLE : h->store.ops->get_event(h->store.context, "-", &event);
    struct log_seq seq;
    if (error == CATRACA_E_NOTFOUND)
        error = h->log.ops->last_seq(h->log.context, "-", &seq);
    if (error != 0)
        api_reply_error(c, 503, "unavailable", "the log or the store does not answer", NULL);
    else
        api_reply_json(c, 200, "{\"status\":\"ready\"}", NULL);
}

void api_ops_metrics(struct route_context *c)
{
    struct api *api = c->api;
    struct appender_stats appender;
    struct worker_stats worker = {0};
    struct http_stats http = {0};
    appender_stats(api->appender, &appender);
    struct worker *worker_now = atomic_load(&api->worker);
    struct http_server *http_now = atomic_load(&api->http);
    struct worker_lag *lags = calloc(api->config.events_max, sizeof(*lags));
    size_t lag_count = 0;
    if (worker_now != NULL)
        worker_stats(worker_now, &worker);
    if (worker_now != NULL && lags != NULL)
        lag_count = worker_lags(worker_now, lags, api->config.events_max);
    if (http_now != NULL)
        http_stats(http_now, &http);
    struct thread_handles *h = api_handles_of(api);
    struct store_event *events = calloc(api->config.events_max, sizeof(*events));
    size_t count = 0;
    if (h != NULL && events != NULL)
        h->store.ops->list_events(h->store.context, "", events, api->config.events_max, &count);
    char *text = metrics_render(&api->metrics, &appender, &worker, lags, lag_count, &http,
                                waiters_count(&api->waiters), events, count);
    free(events);
    free(lags);
    if (text == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    api_reply(c, 200, "text/plain; version=0.0.4", text, strlen(text), NULL);
    free(text);
}

static const char home_page[] =
    "<!doctype html><meta charset=utf-8><title>Catraca</title>"
    "<style>body{font:16px/1.5 system-ui;max-width:46em;margin:2em auto;padding:0 1em}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto}</style>"
    "<h1>Catraca</h1><p>The ticket on-sale engine is running. Try a sale from a terminal "
    "(demo mode):</p><pre>"
    "ADMIN=$(curl -s -XPOST localhost:8080/v1/demo/token -H 'Content-Type: application/json' "
    "-d '{\"customer\":\"ops\",\"role\":\"admin\"}' | sed "
    "'s/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')\n"
    "curl -s -XPOST localhost:8080/v1/events -H \"Authorization: Bearer $ADMIN\" "
    "-H 'Content-Type: application/json' -d '{\"id\":\"demo\",\"name\":\"Demo night\","
    "\"hold_seconds\":120,\"categories\":[{\"id\":\"pista\",\"capacity\":100,"
    "\"price_cents\":5000}]}'\n"
    "curl -s -XPOST localhost:8080/v1/events/demo/purchases -H \"Authorization: Bearer $ADMIN\" "
    "-H 'Content-Type: application/json' -d '{\"category\":\"pista\",\"quantity\":2}'</pre>"
    "<p>Then <code>GET /v1/purchases/{id}?wait=30</code>, <code>GET /v1/events/demo</code>, "
    "<code>/metrics</code>. The contract is API.md; openapi.yaml in the repository.</p>";

/* Shown first on the page of a demo listening on a public address (--demo-public). */
static const char public_demo_warning[] =
    "<p id=public-demo-warning style=\"background:#fee;border:2px solid #c00;padding:1em\">"
    "<strong>Public demo.</strong> This server runs in demo mode on a public address: anyone "
    "can mint admin tokens here and change every event. Never use it for a real sale.</p>";

/*
 * The home page. A demo on a public address says so in the page and in the header
 * X-Catraca-Demo-Public: true (pages of their own read it with a HEAD / or GET /).
 */
void api_ops_home(struct route_context *c)
{
    if (!c->api->config.is_demo_public) {
        api_reply(c, 200, "text/html; charset=utf-8", home_page, sizeof(home_page) - 1, NULL);
        return;
    }
    static const char *const headers[] = {"X-Catraca-Demo-Public", "true", NULL};
    char page[sizeof(home_page) + sizeof(public_demo_warning)];
    static const char heading[] = "<h1>Catraca</h1>";
    const char *split = strstr(home_page, heading) + sizeof(heading) - 1;
    int n = snprintf(page, sizeof(page), "%.*s%s%s", (int)(split - home_page), home_page,
                     public_demo_warning, split);
    api_reply(c, 200, "text/html; charset=utf-8", page, (size_t)n, headers);
}

void api_ops_healthz(struct route_context *c)
{
    api_reply_json(c, 200, "{\"status\":\"ok\"}", NULL);
}

/* With --challenge on: an ALTCHA challenge for the next purchase's X-Challenge. */
void api_ops_challenge(struct route_context *c)
{
    cJSON *json = challenge_create(&c->api->challenge, clock_wall_ms() / 1000);
    if (json == NULL)
        api_reply_error(c, 503, "unavailable", "no randomness for a challenge", NULL);
    else
        api_reply_cjson(c, 200, json, NULL);
}
