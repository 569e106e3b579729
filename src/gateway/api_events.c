/*
 * api_events.c - the /v1/events routes (list, read, create, change the sale's
 * state) and the answers to event commands once the engine decided them.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/logline.h"
#include "gateway/api_internal.h"

#define EVENTS_PAGE_MAX 4096

/* ---- answers of the engine (responder thread) -------------------------------------------- */

void api_events_answer(struct api *api, struct pending *p)
{
    const struct store_answer *a = &p->answer;
    if (a->result == ENGINE_RESULT_CONFLICT) {
        bool is_invalid =
            a->reason == ENGINE_REASON_INVALID_EVENT || a->reason == ENGINE_REASON_INVALID;
        api_pending_finish_error(
            p, is_invalid ? 400 : 409, is_invalid ? "invalid_request" : "conflict",
            is_invalid ? "the event is not valid"
                       : "an event with this id and another definition exists");
        return;
    }
    struct store_event event;
    if (api->responder_store.ops->get_event(api->responder_store.context, p->event, &event) != 0) {
        api_pending_finish_error(p, 503, "unavailable", "the event could not be read");
        return;
    }
    bool is_created =
        p->command_type == ENGINE_COMMAND_CREATE_EVENT && a->result == ENGINE_RESULT_OK;
    if (a->result == ENGINE_RESULT_OK)
        logline(LOGLINE_INFO, "api", is_created ? "event created" : "sale state changed", "event",
                p->event, "by", p->customer, "state", engine_state_name(event.state), NULL);
    api_pending_finish_cjson(p, is_created ? 201 : 200, api_json_event(&event, 0), NULL);
}

/* ---- routes ------------------------------------------------------------------------------ */

bool api_events_read(struct route_context *c, const char *id, struct store_event *event)
{
    struct thread_handles *h = api_handles_of(c->api);
    if (h == NULL) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return false;
    }
    int error = api_json_is_id(id) ? h->store.ops->get_event(h->store.context, id, event)
                                   : CATRACA_E_NOTFOUND;
    if (error == CATRACA_E_NOTFOUND)
        api_reply_error(c, 404, "not_found", "no such event", NULL);
    else if (error != 0)
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
    return error == 0;
}

static uint64_t pending_count(struct api *api, const struct store_event *event)
{
    struct thread_handles *h = api_handles_of(api);
    uint64_t count = 0;
    if (h != NULL)
        h->log.ops->count_after(h->log.context, event->spec.id, event->offset, &count);
    return count;
}

void api_events_get(struct route_context *c)
{
    struct store_event event;
    if (api_events_read(c, c->segments[2], &event))
        api_reply_cjson(c, 200, api_json_event(&event, pending_count(c->api, &event)), NULL);
}

void api_events_list(struct route_context *c)
{
    struct thread_handles *h = api_handles_of(c->api);
    size_t max =
        c->api->config.events_max < EVENTS_PAGE_MAX ? c->api->config.events_max : EVENTS_PAGE_MAX;
    struct store_event *events = calloc(max, sizeof(*events));
    size_t count = 0;
    if (h == NULL || events == NULL ||
        h->store.ops->list_events(h->store.context, "", events, max, &count) != 0) {
        free(events);
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return;
    }
    cJSON *json = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(json, "events");
    for (size_t i = 0; i < count; i++)
        cJSON_AddItemToArray(list, api_json_event(&events[i], pending_count(c->api, &events[i])));
    free(events);
    api_reply_cjson(c, 200, json, NULL);
}

/* The number of events (partitions) is bounded: a new id beyond it is refused (409). */
static bool has_room_for_event(struct route_context *c, const char *id)
{
    struct thread_handles *h = api_handles_of(c->api);
    uint32_t max = c->api->config.events_max;
    char(*ids)[CATRACA_ID_MAX + 1] = calloc(max, sizeof(*ids));
    size_t count = 0;
    if (h == NULL || ids == NULL || h->log.ops->list_partitions(h->log.context, ids, max, &count)) {
        free(ids);
        api_reply_error(c, 503, "unavailable", "the log is unavailable", NULL);
        return false;
    }
    bool is_known = false;
    for (size_t i = 0; i < count && !is_known; i++)
        is_known = strcmp(ids[i], id) == 0;
    free(ids);
    if (!is_known && count >= max) {
        /* 409, not 503: the log answered; retrying will not help until the limit is raised. */
        char message[API_ERROR_MESSAGE_MAX];
        snprintf(message, sizeof(message),
                 "this gateway holds at most %u events (--max-events); this one was not created",
                 max);
        api_reply_error(c, 409, "conflict", message, NULL);
        return false;
    }
    return true;
}

void api_events_create(struct route_context *c)
{
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_CREATE_EVENT,
                                     .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    if (api_json_parse_event(body, length, &command.u.create_event, message) != 0) {
        api_reply_error(c, 400, "invalid_request", message, NULL);
        return;
    }
    if (!has_room_for_event(c, command.u.create_event.id))
        return;
    RAND_bytes(command.u.create_event.secret, sizeof(command.u.create_event.secret));
    struct pending *p = api_pending_new(c, PENDING_ANSWER);
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->command_type = ENGINE_COMMAND_CREATE_EVENT;
    snprintf(p->event, sizeof(p->event), "%s", command.u.create_event.id);
    snprintf(p->customer, sizeof(p->customer), "%s", c->claims.subject);
    api_pending_submit(c, p, &command, NULL, 0);
}

void api_events_set_state(struct route_context *c)
{
    struct store_event event;
    if (!api_events_read(c, c->segments[2], &event))
        return;
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    struct engine_command command = {.type = ENGINE_COMMAND_SET_STATE, .now_ms = clock_wall_ms()};
    char message[API_ERROR_MESSAGE_MAX];
    if (api_json_parse_state(body, length, &command.u.set_state.state, message) != 0) {
        api_reply_error(c, 400, "invalid_request", message, NULL);
        return;
    }
    struct pending *p = api_pending_new(c, PENDING_ANSWER);
    if (p == NULL) {
        api_reply_error(c, 503, "unavailable", "out of memory", NULL);
        return;
    }
    p->command_type = ENGINE_COMMAND_SET_STATE;
    snprintf(p->event, sizeof(p->event), "%s", event.spec.id);
    snprintf(p->customer, sizeof(p->customer), "%s", c->claims.subject);
    api_pending_submit(c, p, &command, NULL, 0);
}
