/*
 * api_rehearse.c - POST/GET /v1/demo/rehearse (demo mode, role admin): a
 * small `catraca rush` against this same server, so that the console's
 * charts can be watched moving.
 *
 * The rehearsal is this binary again (/proc/self/exe rush --demo ...), a
 * child process started with posix_spawn (safe in a threaded process), with
 * no descriptor of ours beyond 0-2 and the stop signals unblocked. Bounds:
 * one at a time (409 while it runs); buyers 1..20000 at 1..5000 a second;
 * rush's own --max-seconds, and a kill when it overstays that by
 * REHEARSAL_GRACE_S; the console thread reaps it (api_rehearse_reap) and the
 * server kills it when it stops (api_rehearse_stop). The rehearsal creates
 * its own event (rush's definition): an id that exists already is 409.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "gateway/api_internal.h"

#define REHEARSAL_BUYERS_MAX 20000
#define REHEARSAL_RATE_MAX 5000
#define REHEARSAL_BUYERS_DEFAULT 500
#define REHEARSAL_RATE_DEFAULT 100
#define REHEARSAL_SECONDS_MAX 300 /* rush --max-seconds at most */
#define REHEARSAL_GRACE_S 30      /* beyond its --max-seconds: killed */
#define REHEARSAL_STOP_WAIT_MS 3000

extern char **environ;

struct rehearsal {
    pthread_mutex_t mutex;
    bool has_run; /* a rehearsal was started since the server started */
    pid_t pid;    /* > 0 while it runs */
    char event[CATRACA_ID_MAX + 1];
    uint32_t buyers, rate, max_seconds;
    int64_t started_ms;
    bool has_exit_code;
    int exit_code;
};

int api_rehearse_init(struct api *api)
{
    struct rehearsal *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CATRACA_E_NOMEM;
    pthread_mutex_init(&r->mutex, NULL);
    api->rehearsal = r;
    return 0;
}

/* Records how the child ended. Locked. */
static void record_exit_locked(struct rehearsal *r, int wait_status)
{
    r->pid = 0;
    r->has_exit_code = true;
    r->exit_code = WIFEXITED(wait_status)     ? WEXITSTATUS(wait_status)
                   : WIFSIGNALED(wait_status) ? 128 + WTERMSIG(wait_status)
                                              : -1;
    fprintf(stderr, "level=info component=rehearse event=%s msg=\"rehearsal ended\" exit=%d\n",
            r->event, r->exit_code);
}

void api_rehearse_reap(struct api *api, int64_t now_ms)
{
    struct rehearsal *r = api->rehearsal;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mutex);
    if (r->pid > 0) {
        int wait_status = 0;
        if (waitpid(r->pid, &wait_status, WNOHANG) == r->pid)
            record_exit_locked(r, wait_status);
        else if (now_ms - r->started_ms > (int64_t)(r->max_seconds + REHEARSAL_GRACE_S) * 1000)
            kill(r->pid, SIGKILL); /* overstayed: reaped at the next tick */
    }
    pthread_mutex_unlock(&r->mutex);
}

void api_rehearse_stop(struct api *api)
{
    struct rehearsal *r = api->rehearsal;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mutex);
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        int wait_status = 0;
        pid_t done = 0;
        for (int waited = 0; waited < REHEARSAL_STOP_WAIT_MS && done == 0; waited += 10) {
            done = waitpid(r->pid, &wait_status, WNOHANG);
            if (done == 0)
                nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        if (done == 0) {
            kill(r->pid, SIGKILL);
            done = waitpid(r->pid, &wait_status, 0);
        }
        if (done == r->pid)
            record_exit_locked(r, wait_status);
        r->pid = 0;
    }
    pthread_mutex_unlock(&r->mutex);
}

void api_rehearse_free(struct api *api)
{
    if (api->rehearsal == NULL)
        return;
    api_rehearse_stop(api);
    pthread_mutex_destroy(&api->rehearsal->mutex);
    free(api->rehearsal);
    api->rehearsal = NULL;
}

/* ---- routes ------------------------------------------------------------------------------ */

static cJSON *state_json(struct rehearsal *r)
{
    cJSON *json = cJSON_CreateObject();
    pthread_mutex_lock(&r->mutex);
    cJSON_AddBoolToObject(json, "running", r->pid > 0);
    if (r->has_run) {
        char at[32];
        api_json_time_format(r->started_ms, at);
        cJSON_AddStringToObject(json, "event", r->event);
        cJSON_AddNumberToObject(json, "buyers", r->buyers);
        cJSON_AddNumberToObject(json, "rate", r->rate);
        cJSON_AddStringToObject(json, "started_at", at);
    } else {
        cJSON_AddNullToObject(json, "event");
        cJSON_AddNullToObject(json, "buyers");
        cJSON_AddNullToObject(json, "rate");
        cJSON_AddNullToObject(json, "started_at");
    }
    if (r->has_exit_code)
        cJSON_AddNumberToObject(json, "exit_code", r->exit_code);
    else
        cJSON_AddNullToObject(json, "exit_code");
    pthread_mutex_unlock(&r->mutex);
    return json;
}

void api_rehearse_status(struct route_context *c)
{
    api_reply_cjson(c, 200, state_json(c->api->rehearsal), NULL);
}

/* A whole number member in [1, max], or the default when absent; false when it is not. */
static bool read_count(const cJSON *root, const char *name, uint32_t max, uint32_t fallback,
                       uint32_t *out)
{
    const cJSON *item = NULL;
    if (!api_json_member(root, name, &item))
        return false;
    if (item == NULL) {
        *out = fallback;
        return true;
    }
    double value = cJSON_IsNumber(item) ? item->valuedouble : -1;
    if (!(value >= 1 && value <= max) || value != (double)(uint32_t)value)
        return false;
    *out = (uint32_t)value;
    return true;
}

/* The request's rehearsal: event (an id), buyers, rate. False after answering 400. */
static bool read_request(struct route_context *c, char event[CATRACA_ID_MAX + 1], uint32_t *buyers,
                         uint32_t *rate)
{
    size_t length = 0;
    const char *body = http_body(c->request, &length);
    cJSON *root = api_json_parse_object(body, length);
    const cJSON *id = NULL;
    bool is_ok =
        root != NULL && api_json_member(root, "event", &id) &&
        (id == NULL || (cJSON_IsString(id) && api_json_is_id(id->valuestring))) &&
        read_count(root, "buyers", REHEARSAL_BUYERS_MAX, REHEARSAL_BUYERS_DEFAULT, buyers) &&
        read_count(root, "rate", REHEARSAL_RATE_MAX, REHEARSAL_RATE_DEFAULT, rate);
    if (is_ok && id != NULL)
        snprintf(event, CATRACA_ID_MAX + 1, "%s", id->valuestring);
    else if (is_ok) /* a new id each second: the console follows the one the answer names */
        snprintf(event, CATRACA_ID_MAX + 1, "rehearsal-%lld", (long long)(clock_wall_ms() / 1000));
    cJSON_Delete(root);
    if (!is_ok)
        api_reply_error(c, 400, "invalid_request",
                        "event must be an id (or absent), buyers a whole number from 1 to 20000, "
                        "rate from 1 to 5000",
                        NULL);
    return is_ok;
}

/* Starts rush against this server; the child's pid, or -1. */
static pid_t spawn_rush(const struct api *api, const char *event, uint32_t buyers, uint32_t rate,
                        uint32_t max_seconds)
{
    struct http_server *http = atomic_load(&((struct api *)api)->http);
    const char *host = api->config.listen_host;
    if (http == NULL || host == NULL)
        return -1;
    /* An unspecified address is reached on loopback. */
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
        host = "127.0.0.1";
    char url[128], buyers_text[16], rate_text[16], seconds_text[16], tickets_text[16];
    snprintf(url, sizeof(url), "http://%s:%u", host, http_port(http));
    snprintf(buyers_text, sizeof(buyers_text), "%u", buyers);
    snprintf(rate_text, sizeof(rate_text), "%u", rate);
    snprintf(seconds_text, sizeof(seconds_text), "%u", max_seconds);
    /* Fewer tickets than buyers: some wait in line, some are turned away, holds come back (and
     * at least one a category: rush splits them over 2). */
    snprintf(tickets_text, sizeof(tickets_text), "%u", buyers * 3 / 4 > 2 ? buyers * 3 / 4 : 2);
    char *argv[] = {"catraca",     "rush",
                    "--url",       url,
                    "--demo",      "--event",
                    (char *)event, "--buyers",
                    buyers_text,   "--rate",
                    rate_text,     "--tickets",
                    tickets_text,  "--connections",
                    "64",          "--max-seconds",
                    seconds_text,  NULL};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    /* Nothing of ours in the child (the store's and the log's connections, sockets), and no
     * report on our stdout; its stderr (a line or two) joins the server's. */
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attributes, &none); /* the server blocks SIGTERM: it must not */
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    int error = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, environ);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    return error == 0 ? pid : -1;
}

void api_rehearse_start(struct route_context *c)
{
    struct api *api = c->api;
    struct rehearsal *r = api->rehearsal;
    char event[CATRACA_ID_MAX + 1];
    uint32_t buyers = 0, rate = 0;
    if (!read_request(c, event, &buyers, &rate))
        return;
    const char *host = api->config.listen_host;
    if (host == NULL || api->config.is_tls || strchr(host, ':') != NULL) {
        /* rush speaks plain HTTP and takes an IPv4 address or a name */
        api_reply_error(c, 503, "unavailable", "a rehearsal needs a plain-HTTP IPv4 listener",
                        NULL);
        return;
    }
    struct thread_handles *h = api_handles_of(api);
    struct store_event existing;
    int read = h == NULL ? CATRACA_E_UNAVAILABLE
                         : h->store.ops->get_event(h->store.context, event, &existing);
    if (read == 0) {
        api_reply_error(c, 409, "conflict",
                        "that event exists: a rehearsal creates its own event; choose a new id",
                        NULL);
        return;
    }
    if (read != CATRACA_E_NOTFOUND) {
        api_reply_error(c, 503, "unavailable", "the store is unavailable", NULL);
        return;
    }
    uint32_t seconds = buyers / rate + 60;
    if (seconds > REHEARSAL_SECONDS_MAX)
        seconds = REHEARSAL_SECONDS_MAX;
    pthread_mutex_lock(&r->mutex);
    if (r->pid > 0) {
        pthread_mutex_unlock(&r->mutex);
        api_reply_error(c, 409, "conflict", "a rehearsal is running; one at a time", NULL);
        return;
    }
    pid_t pid = spawn_rush(api, event, buyers, rate, seconds);
    if (pid > 0) {
        r->has_run = true;
        r->pid = pid;
        r->buyers = buyers;
        r->rate = rate;
        r->max_seconds = seconds;
        r->started_ms = clock_wall_ms();
        r->has_exit_code = false;
        snprintf(r->event, sizeof(r->event), "%s", event);
        fprintf(stderr,
                "level=info component=rehearse event=%s by=%s msg=\"rehearsal started\" "
                "buyers=%u rate=%u pid=%d\n",
                event, c->claims.subject, buyers, rate, (int)pid);
    }
    pthread_mutex_unlock(&r->mutex);
    if (pid <= 0) {
        api_reply_error(c, 503, "unavailable", "the rehearsal could not be started", NULL);
        return;
    }
    api_reply_cjson(c, 202, state_json(r), NULL);
}
