/*
 * sentry.c - contract in sentry.h. No Sentry SDK for C is packaged in Debian
 * (sentry-native is not), so this sender is our own and kept small: the
 * envelope format (develop.sentry.dev/sdk/envelopes), one HTTP/1.1 POST per
 * event over a plain socket or OpenSSL, and nothing else of the SDK
 * (no breadcrumbs, no sessions, no stack traces).
 */
#include "app/sentry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/logline.h"

#define FIELDS_MAX 8
#define KEY_BYTES 32
#define VALUE_BYTES 256
#define DSN_PART_MAX 256
#define ANSWER_HEAD_MAX 8192  /* the status line and headers of Sentry's answer */
#define SPOOL_BYTES_MAX 65536 /* a spooled crash envelope larger than this is not ours */
#define RATE_BURST 10.0
#define RETRY_AFTER_MAX_S 600
#define CRASH_ENVELOPE_MAX 8192

/* One error log line, copied out of the logging thread's hands. */
struct slot {
    int64_t time_ms;
    enum logline_level level;
    char component[KEY_BYTES];
    char message[LOGLINE_VALUE_BYTES_MAX + 1];
    char request_id[LOGLINE_REQUEST_ID_MAX + 1];
    uint32_t field_count;
    char keys[FIELDS_MAX][KEY_BYTES];
    char values[FIELDS_MAX][VALUE_BYTES];
};

struct dsn {
    bool is_https;
    char host[DSN_PART_MAX];
    char port[8];
    char public_key[DSN_PART_MAX];
    char secret_key[DSN_PART_MAX];
    char path[2 * DSN_PART_MAX]; /* <prefix>/api/<project>/envelope/ */
};

struct sentry {
    struct sentry_config config;
    char environment[DSN_PART_MAX], release[DSN_PART_MAX], server_name[DSN_PART_MAX];
    char spool_path[512];
    struct dsn dsn;
    SSL_CTX *tls;
    pthread_t sender;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    struct slot ring[SENTRY_QUEUE_MAX]; /* under mutex */
    uint32_t head, count;
    bool is_stopping;
    int64_t stop_deadline_ms;
    struct sentry_stats stats;
    /* sender thread only */
    double tokens;
    int64_t tokens_at_ms, paused_until_ms;
};

/* ---- small helpers --------------------------------------------------------------------------- */

static void copy_text(char *out, size_t size, const char *text)
{
    snprintf(out, size, "%s", text != NULL ? text : "");
}

static void random_hex32(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t bytes[16];
    if (getrandom(bytes, sizeof(bytes), 0) != sizeof(bytes)) {
        uint64_t t = (uint64_t)clock_monotonic_us() ^ (uint64_t)clock_wall_ms() << 20;
        for (size_t i = 0; i < sizeof(bytes); i++)
            bytes[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
    }
    for (size_t i = 0; i < 16; i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[32] = '\0';
}

/*
 * "2026-12-01T16:29:33.123Z" from epoch milliseconds with arithmetic only (no
 * gmtime, no locale): safe in a signal handler. Days to a civil date after
 * Howard Hinnant's days_from_civil inverse. Writes 24 bytes, no NUL.
 */
static void rfc3339_ms(int64_t time_ms, char out[24])
{
    int64_t seconds = time_ms / 1000, days = seconds / 86400, rest = seconds % 86400;
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    int64_t parts[] = {year, month, day, rest / 3600, rest / 60 % 60, rest % 60, time_ms % 1000};
    static const int widths[] = {4, 2, 2, 2, 2, 2, 3};
    static const char after[] = "--T::.Z";
    size_t at = 0;
    for (int p = 0; p < 7; p++) {
        for (int w = widths[p] - 1; w >= 0; w--) {
            int64_t divisor = 1;
            for (int i = 0; i < w; i++)
                divisor *= 10;
            out[at++] = (char)('0' + parts[p] / divisor % 10);
        }
        out[at++] = after[p];
    }
}

/* ---- the DSN --------------------------------------------------------------------------------- */

/* <scheme>://<public>[:<secret>]@<host>[:<port>][/<prefix>]/<project>; false when not one. */
static bool dsn_parse(const char *text, struct dsn *out)
{
    memset(out, 0, sizeof(*out));
    const char *rest;
    if (strncmp(text, "https://", 8) == 0) {
        out->is_https = true;
        rest = text + 8;
    } else if (strncmp(text, "http://", 7) == 0) {
        rest = text + 7;
    } else {
        return false;
    }
    const char *at = strchr(rest, '@'), *slash = at ? strchr(at, '/') : NULL;
    const char *last_slash = strrchr(rest, '/');
    if (at == NULL || slash == NULL || last_slash == NULL || last_slash < slash)
        return false;
    size_t user_length = (size_t)(at - rest);
    const char *colon = memchr(rest, ':', user_length);
    size_t public_length = colon ? (size_t)(colon - rest) : user_length;
    if (public_length == 0 || public_length >= DSN_PART_MAX || user_length >= DSN_PART_MAX)
        return false;
    memcpy(out->public_key, rest, public_length);
    if (colon != NULL)
        memcpy(out->secret_key, colon + 1, user_length - public_length - 1);
    const char *host = at + 1;
    size_t authority = (size_t)(slash - host);
    const char *port = NULL;
    if (host[0] == '[') { /* [IPv6] */
        const char *close = memchr(host, ']', authority);
        if (close == NULL)
            return false;
        port = close + 1 < slash && close[1] == ':' ? close + 2 : NULL;
        snprintf(out->host, sizeof(out->host), "%.*s", (int)(close - host - 1), host + 1);
    } else {
        const char *port_colon = memchr(host, ':', authority);
        port = port_colon ? port_colon + 1 : NULL;
        size_t host_length = port_colon ? (size_t)(port_colon - host) : authority;
        if (host_length == 0 || host_length >= DSN_PART_MAX)
            return false;
        snprintf(out->host, sizeof(out->host), "%.*s", (int)host_length, host);
    }
    if (port != NULL) {
        size_t port_length = (size_t)(slash - port);
        if (port_length == 0 || port_length >= sizeof(out->port) ||
            strspn(port, "0123456789") < port_length)
            return false;
        snprintf(out->port, sizeof(out->port), "%.*s", (int)port_length, port);
    } else {
        copy_text(out->port, sizeof(out->port), out->is_https ? "443" : "80");
    }
    const char *project = last_slash + 1;
    if (project[0] == '\0' || strspn(project, "0123456789") != strlen(project))
        return false;
    int n = snprintf(out->path, sizeof(out->path), "%.*s/api/%s/envelope/",
                     (int)(last_slash - slash), slash, project);
    return n > 0 && (size_t)n < sizeof(out->path);
}

/* ---- one POST -------------------------------------------------------------------------------- */

struct exchange {
    int fd;
    SSL *tls;
    int64_t deadline_ms;
};

static int remaining_ms(const struct exchange *x)
{
    int64_t left = x->deadline_ms - clock_monotonic_ms();
    return left > 0 ? (int)left : 0;
}

static bool wait_fd(const struct exchange *x, short events)
{
    struct pollfd fd = {.fd = x->fd, .events = events};
    return poll(&fd, 1, remaining_ms(x)) == 1;
}

/* A non-blocking socket connected within the deadline, or -1. */
static int connect_within(const struct dsn *dsn, struct exchange *x)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *info = NULL;
    if (getaddrinfo(dsn->host, dsn->port, &hints, &info) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = info; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        x->fd = fd;
        int error = 0;
        socklen_t length = sizeof(error);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || !wait_fd(x, POLLOUT) ||
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(info);
    x->fd = fd;
    return fd;
}

static bool send_all(struct exchange *x, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t n;
        if (x->tls != NULL) {
            int written = SSL_write(x->tls, data, length > INT32_MAX ? INT32_MAX : (int)length);
            n = written;
            if (written <= 0) {
                int error = SSL_get_error(x->tls, written);
                if ((error == SSL_ERROR_WANT_WRITE && wait_fd(x, POLLOUT)) ||
                    (error == SSL_ERROR_WANT_READ && wait_fd(x, POLLIN)))
                    continue;
                return false;
            }
        } else {
            n = send(x->fd, data, length, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(x, POLLOUT))
                continue;
            if (n <= 0)
                return false;
        }
        data += n;
        length -= (size_t)n;
    }
    return true;
}

/* Reads at most size - 1 bytes, until the end of the headers; false on error or deadline. */
static bool read_head(struct exchange *x, char *out, size_t size)
{
    size_t used = 0;
    while (used + 1 < size) {
        ssize_t n;
        if (x->tls != NULL) {
            int got = SSL_read(x->tls, out + used, (int)(size - 1 - used));
            n = got;
            if (got <= 0) {
                int error = SSL_get_error(x->tls, got);
                if ((error == SSL_ERROR_WANT_READ && wait_fd(x, POLLIN)) ||
                    (error == SSL_ERROR_WANT_WRITE && wait_fd(x, POLLOUT)))
                    continue;
                break;
            }
        } else {
            n = recv(x->fd, out + used, size - 1 - used, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(x, POLLIN))
                continue;
            if (n <= 0)
                break;
        }
        used += (size_t)n;
        out[used] = '\0';
        if (strstr(out, "\r\n\r\n") != NULL)
            return true;
    }
    out[used] = '\0';
    return used > 0 && strstr(out, "\r\n") != NULL;
}

static bool tls_begin(struct sentry *s, struct exchange *x)
{
    x->tls = SSL_new(s->tls);
    if (x->tls == NULL || SSL_set_fd(x->tls, x->fd) != 1 ||
        SSL_set_tlsext_host_name(x->tls, s->dsn.host) != 1 ||
        SSL_set1_host(x->tls, s->dsn.host) != 1)
        return false;
    SSL_set_verify(x->tls, SSL_VERIFY_PEER, NULL);
    for (;;) {
        int n = SSL_connect(x->tls);
        if (n == 1)
            return true;
        int error = SSL_get_error(x->tls, n);
        if (!((error == SSL_ERROR_WANT_READ && wait_fd(x, POLLIN)) ||
              (error == SSL_ERROR_WANT_WRITE && wait_fd(x, POLLOUT))))
            return false;
    }
}

/*
 * POSTs one envelope. Returns the HTTP status, or 0 when nothing answered;
 * *retry_after_s is the Retry-After of a 429 (or 60 when it has none).
 */
static int post_envelope(struct sentry *s, const char *body, size_t length, int *retry_after_s)
{
    struct exchange x = {.fd = -1, .deadline_ms = clock_monotonic_ms() + s->config.timeout_ms};
    *retry_after_s = 0;
    int status = 0;
    char head[ANSWER_HEAD_MAX];
    char auth[3 * DSN_PART_MAX];
    if (s->dsn.secret_key[0] != '\0')
        snprintf(auth, sizeof(auth), ", sentry_secret=%s", s->dsn.secret_key);
    else
        auth[0] = '\0';
    const char *version = strchr(s->release, '@') ? strchr(s->release, '@') + 1 : s->release;
    int head_length = snprintf(
        head, sizeof(head),
        "POST %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: catraca/%s\r\n"
        "Content-Type: application/x-sentry-envelope\r\n"
        "X-Sentry-Auth: Sentry sentry_version=7, sentry_client=catraca/%s, sentry_key=%s%s\r\n"
        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
        s->dsn.path, s->dsn.host, strcmp(s->dsn.port, s->dsn.is_https ? "443" : "80") ? ":" : "",
        strcmp(s->dsn.port, s->dsn.is_https ? "443" : "80") ? s->dsn.port : "", version, version,
        s->dsn.public_key, auth, length);
    bool is_ok = head_length > 0 && (size_t)head_length < sizeof(head) &&
                 connect_within(&s->dsn, &x) >= 0 && (!s->dsn.is_https || tls_begin(s, &x)) &&
                 send_all(&x, head, (size_t)head_length) && send_all(&x, body, length) &&
                 read_head(&x, head, sizeof(head));
    if (is_ok && sscanf(head, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    if (status == 429) {
        const char *retry = strcasestr(head, "\r\nRetry-After:");
        *retry_after_s = retry != NULL ? atoi(retry + 14) : 60;
        if (*retry_after_s <= 0 || *retry_after_s > RETRY_AFTER_MAX_S)
            *retry_after_s = *retry_after_s <= 0 ? 60 : RETRY_AFTER_MAX_S;
    }
    if (x.tls != NULL) {
        SSL_shutdown(x.tls);
        SSL_free(x.tls);
    }
    if (x.fd >= 0)
        close(x.fd);
    return status;
}

/* ---- events ---------------------------------------------------------------------------------- */

/* The envelope of one error line: envelope header, item header, the event. malloc'd. */
static char *envelope_of(const struct sentry *s, const struct slot *slot, size_t *length)
{
    char event_id[33], time_text[25];
    random_hex32(event_id);
    rfc3339_ms(slot->time_ms, time_text);
    time_text[24] = '\0';
    cJSON *event = cJSON_CreateObject(), *tags = cJSON_CreateObject(),
          *extra = cJSON_CreateObject(), *message = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "event_id", event_id);
    cJSON_AddStringToObject(event, "timestamp", time_text);
    cJSON_AddStringToObject(event, "platform", "c");
    cJSON_AddStringToObject(event, "level", logline_level_name(slot->level));
    cJSON_AddStringToObject(event, "logger", slot->component);
    cJSON_AddStringToObject(event, "release", s->release);
    cJSON_AddStringToObject(event, "environment", s->environment);
    cJSON_AddStringToObject(event, "server_name", s->server_name);
    cJSON_AddStringToObject(message, "formatted", slot->message);
    cJSON_AddItemToObject(event, "message", message);
    cJSON_AddStringToObject(tags, "component", slot->component);
    if (slot->request_id[0] != '\0')
        cJSON_AddStringToObject(tags, "request_id", slot->request_id);
    cJSON_AddItemToObject(event, "tags", tags);
    for (uint32_t i = 0; i < slot->field_count; i++)
        if (cJSON_GetObjectItemCaseSensitive(extra, slot->keys[i]) == NULL)
            cJSON_AddStringToObject(extra, slot->keys[i], slot->values[i]);
    cJSON_AddItemToObject(event, "extra", extra);
    char *payload = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (payload == NULL)
        return NULL;
    char sent_at[25];
    rfc3339_ms(clock_wall_ms(), sent_at);
    sent_at[24] = '\0';
    size_t payload_length = strlen(payload), capacity = payload_length + 256;
    char *envelope = malloc(capacity);
    int n = envelope == NULL ? -1
                             : snprintf(envelope, capacity,
                                        "{\"event_id\":\"%s\",\"sent_at\":\"%s\"}\n"
                                        "{\"type\":\"event\",\"length\":%zu,"
                                        "\"content_type\":\"application/json\"}\n%s\n",
                                        event_id, sent_at, payload_length, payload);
    free(payload);
    if (n < 0 || (size_t)n >= capacity) {
        free(envelope);
        return NULL;
    }
    *length = (size_t)n;
    return envelope;
}

/* Sending is allowed now (token bucket of events_per_minute, and no 429 pause running). */
static bool rate_allows(struct sentry *s)
{
    int64_t now_ms = clock_monotonic_ms();
    if (now_ms < s->paused_until_ms)
        return false;
    s->tokens += (double)(now_ms - s->tokens_at_ms) * s->config.events_per_minute / 60000.0;
    s->tokens_at_ms = now_ms;
    if (s->tokens > RATE_BURST)
        s->tokens = RATE_BURST;
    if (s->tokens < 1.0)
        return false;
    s->tokens -= 1.0;
    return true;
}

/* Sends one envelope and counts the outcome; returns the HTTP status (0: no answer). */
static int send_counted(struct sentry *s, const char *envelope, size_t length)
{
    int retry_after_s = 0;
    int status = post_envelope(s, envelope, length, &retry_after_s);
    if (status == 429)
        s->paused_until_ms = clock_monotonic_ms() + (int64_t)retry_after_s * 1000;
    pthread_mutex_lock(&s->mutex);
    if (status >= 200 && status < 300)
        s->stats.sent++;
    else
        s->stats.failed++;
    pthread_mutex_unlock(&s->mutex);
    if (status < 200 || status >= 300) {
        char status_text[16];
        snprintf(status_text, sizeof(status_text), "%d", status);
        /* warn: below the hook's level, so a failing Sentry never feeds itself */
        logline(LOGLINE_WARN, "sentry", "an event was not accepted", "status", status_text, "host",
                s->dsn.host, NULL);
    }
    return status;
}

/* A crash report an earlier run left: sent first, removed once Sentry answered it. */
static void send_spooled(struct sentry *s)
{
    int fd = open(s->spool_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char *envelope = malloc(SPOOL_BYTES_MAX);
    ssize_t length = envelope ? read(fd, envelope, SPOOL_BYTES_MAX) : -1;
    close(fd);
    if (length > 0 && length < SPOOL_BYTES_MAX) {
        int status = send_counted(s, envelope, (size_t)length);
        if (status != 0 && status != 429 && status < 500) /* answered: never sent twice */
            unlink(s->spool_path);
        else
            logline(LOGLINE_WARN, "sentry", "the spooled crash report waits for the next start",
                    "path", s->spool_path, NULL);
    } else {
        unlink(s->spool_path); /* empty or not ours */
    }
    free(envelope);
}

static void *sender_main(void *argument)
{
    struct sentry *s = argument;
    send_spooled(s);
    struct slot *slot = malloc(sizeof(*slot));
    for (;;) {
        pthread_mutex_lock(&s->mutex);
        while (s->count == 0 && !s->is_stopping)
            pthread_cond_wait(&s->wake, &s->mutex);
        bool is_over =
            s->count == 0 || (s->is_stopping && clock_monotonic_ms() > s->stop_deadline_ms);
        if (!is_over && slot != NULL)
            *slot = s->ring[s->head];
        if (!is_over) {
            s->head = (s->head + 1) % SENTRY_QUEUE_MAX;
            s->count--;
        }
        pthread_mutex_unlock(&s->mutex);
        if (is_over)
            break;
        if (slot == NULL)
            continue;
        if (!rate_allows(s)) {
            pthread_mutex_lock(&s->mutex);
            s->stats.dropped_rate++;
            pthread_mutex_unlock(&s->mutex);
            continue;
        }
        size_t length = 0;
        char *envelope = envelope_of(s, slot, &length);
        if (envelope != NULL)
            send_counted(s, envelope, length);
        free(envelope);
    }
    free(slot);
    return NULL;
}

/* logline's hook, on the logging thread: copy and go (the queue is bounded, full drops). */
static void on_error_line(void *context, const struct logline_record *record)
{
    struct sentry *s = context;
    pthread_mutex_lock(&s->mutex);
    if (s->count == SENTRY_QUEUE_MAX || s->is_stopping) {
        s->stats.dropped_full++;
        pthread_mutex_unlock(&s->mutex);
        return;
    }
    struct slot *slot = &s->ring[(s->head + s->count) % SENTRY_QUEUE_MAX];
    slot->time_ms = record->time_ms;
    slot->level = record->level;
    copy_text(slot->component, sizeof(slot->component), record->component);
    copy_text(slot->message, sizeof(slot->message), record->message);
    copy_text(slot->request_id, sizeof(slot->request_id), record->request_id);
    slot->field_count = 0;
    for (size_t i = 0; i < record->field_count && slot->field_count < FIELDS_MAX; i++) {
        copy_text(slot->keys[slot->field_count], KEY_BYTES, record->fields[2 * i]);
        copy_text(slot->values[slot->field_count], VALUE_BYTES, record->fields[2 * i + 1]);
        slot->field_count++;
    }
    s->count++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
}

/* ---- fatal signals --------------------------------------------------------------------------- */

/*
 * Built at start, assembled by the handler with stores and write(2) only:
 *   crash_head  {"event_id":"<id>"}\n{"type":"event","length":
 *   (payload length)}\n
 *   crash_begin {"event_id":"<id>","timestamp":"
 *   (RFC 3339 time)","platform":"c","level":"fatal",... "exception":{"values":[{"type":"
 *   (signal name)","value":"(description)","mechanism":{"type":"signalhandler","handled":false}}]},
 *   "tags":{"request_id":"(id)"}}\n
 */
static struct {
    char spool_path[512];
    char head[128];
    char begin[128];
    char middle[3 * 1024];
    bool is_json_log;
    atomic_flag is_handling;
    char buffer[CRASH_ENVELOPE_MAX];
    char line[1024];
} crash;

static const struct {
    int number;
    const char *name, *description;
} fatal_signals[] = {
    {SIGSEGV, "SIGSEGV", "segmentation fault"},
    {SIGBUS, "SIGBUS", "bus error"},
    {SIGILL, "SIGILL", "illegal instruction"},
    {SIGFPE, "SIGFPE", "arithmetic exception"},
    {SIGABRT, "SIGABRT", "aborted"},
};

struct crash_writer {
    char *out;
    size_t length, size;
};

static void crash_put(struct crash_writer *w, const char *text)
{
    for (; *text != '\0' && w->length < w->size; text++)
        w->out[w->length++] = *text;
}

/* The crashing thread's request id, kept to the characters a sane id has. */
static void crash_put_request_id(struct crash_writer *w)
{
    const char *id = logline_request_id();
    for (int i = 0; id[i] != '\0' && i < LOGLINE_REQUEST_ID_MAX && w->length < w->size; i++) {
        char c = id[i];
        bool is_safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == ':' || c == '-';
        w->out[w->length++] = is_safe ? c : '_';
    }
}

static void crash_put_decimal(struct crash_writer *w, size_t value)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0 && n < 24);
    while (n > 0 && w->length < w->size)
        w->out[w->length++] = digits[--n];
}

static void crash_write_file(const char *path, const char *data, size_t length)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n <= 0)
            break;
        data += n;
        length -= (size_t)n;
    }
    close(fd);
}

static void on_fatal_signal(int number)
{
    if (atomic_flag_test_and_set(&crash.is_handling))
        return; /* another thread crashed first: SA_RESETHAND left the default for this one */
    const char *name = "SIGNAL", *description = "fatal signal";
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        if (fatal_signals[i].number == number) {
            name = fatal_signals[i].name;
            description = fatal_signals[i].description;
        }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char time_text[25] = {0};
    rfc3339_ms((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000, time_text);
    /* The payload first, at an offset, to learn its length; then the heads before it. */
    enum { PAYLOAD_AT = 256 };
    struct crash_writer payload = {.out = crash.buffer + PAYLOAD_AT,
                                   .size = sizeof(crash.buffer) - PAYLOAD_AT - 1};
    crash_put(&payload, crash.begin);
    crash_put(&payload, time_text);
    crash_put(&payload, crash.middle);
    crash_put(&payload, name);
    crash_put(&payload, "\",\"value\":\"");
    crash_put(&payload, description);
    crash_put(&payload, "\",\"mechanism\":{\"type\":\"signalhandler\",\"handled\":false}}]},"
                        "\"tags\":{\"signal\":\"");
    crash_put(&payload, name);
    if (logline_request_id()[0] != '\0') {
        crash_put(&payload, "\",\"request_id\":\"");
        crash_put_request_id(&payload);
    }
    crash_put(&payload, "\"}}");
    char head_text[PAYLOAD_AT];
    struct crash_writer head = {.out = head_text, .size = sizeof(head_text)};
    crash_put(&head, crash.head);
    crash_put_decimal(&head, payload.length);
    crash_put(&head, "}\n");
    /* Move the head right before the payload; the envelope ends with a newline. */
    char *start = crash.buffer + PAYLOAD_AT - head.length;
    for (size_t i = 0; i < head.length; i++)
        start[i] = head_text[i];
    crash.buffer[PAYLOAD_AT + payload.length] = '\n';
    crash_write_file(crash.spool_path, start, head.length + payload.length + 1);
    /* One line on stderr, in the configured format, with the same calls only. */
    struct crash_writer line = {.out = crash.line, .size = sizeof(crash.line) - 1};
    crash_put(&line, crash.is_json_log ? "{\"time\":\"" : "time=");
    crash_put(&line, time_text);
    crash_put(&line, crash.is_json_log
                         ? "\",\"level\":\"fatal\",\"component\":\"sentry\",\"msg\":\"fatal "
                           "signal: crash report spooled for Sentry\",\"signal\":\""
                         : " level=fatal component=sentry msg=\"fatal signal: crash report "
                           "spooled for Sentry\" signal=");
    crash_put(&line, name);
    crash_put(&line, crash.is_json_log ? "\"}\n" : "\n");
    ssize_t written = write(2, crash.line, line.length);
    (void)written;
    raise(number); /* SA_RESETHAND: the default action now, a core dump where allowed */
}

/* The fixed parts of the crash envelope, JSON-escaped by cJSON now, while that is allowed. */
static int crash_prepare(const struct sentry *s)
{
    char event_id[33];
    random_hex32(event_id);
    copy_text(crash.spool_path, sizeof(crash.spool_path), s->spool_path);
    crash.is_json_log = s->config.is_json_log;
    snprintf(crash.head, sizeof(crash.head),
             "{\"event_id\":\"%s\"}\n{\"type\":\"event\",\"content_type\":\"application/json\","
             "\"length\":",
             event_id);
    snprintf(crash.begin, sizeof(crash.begin), "{\"event_id\":\"%s\",\"timestamp\":\"", event_id);
    cJSON *release = cJSON_CreateString(s->release),
          *environment = cJSON_CreateString(s->environment),
          *server = cJSON_CreateString(s->server_name);
    char *r = cJSON_PrintUnformatted(release), *e = cJSON_PrintUnformatted(environment),
         *n = cJSON_PrintUnformatted(server);
    int length = r && e && n ? snprintf(crash.middle, sizeof(crash.middle),
                                        "\",\"platform\":\"c\",\"level\":\"fatal\",\"logger\":"
                                        "\"signal\",\"release\":%s,\"environment\":%s,"
                                        "\"server_name\":%s,\"message\":{\"formatted\":\"fatal "
                                        "signal\"},\"exception\":{\"values\":[{\"type\":\"",
                                        r, e, n)
                             : -1;
    free(r);
    free(e);
    free(n);
    cJSON_Delete(release);
    cJSON_Delete(environment);
    cJSON_Delete(server);
    return length > 0 && (size_t)length < sizeof(crash.middle) ? 0 : CATRACA_E_TOO_LARGE;
}

static void crash_install(void)
{
    static char alternate_stack[64 * 1024]; /* the main thread's: a stack overflow still reports */
    stack_t stack = {.ss_sp = alternate_stack, .ss_size = sizeof(alternate_stack)};
    sigaltstack(&stack, NULL);
    struct sigaction action = {.sa_handler = on_fatal_signal,
                               .sa_flags = SA_RESETHAND | SA_ONSTACK | SA_NODEFER};
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        sigaction(fatal_signals[i].number, &action, NULL);
}

static void crash_uninstall(void)
{
    for (size_t i = 0; i < sizeof(fatal_signals) / sizeof(fatal_signals[0]); i++)
        signal(fatal_signals[i].number, SIG_DFL);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

int sentry_start(const struct sentry_config *config, struct sentry **out)
{
    struct sentry *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CATRACA_E_NOMEM;
    s->config = *config;
    if (!dsn_parse(config->dsn, &s->dsn)) {
        /* The DSN holds a key: it is not repeated in the line. */
        logline(LOGLINE_ERROR, "sentry",
                "--sentry-dsn is not a DSN (http(s)://key@host[:port][/path]/project)", NULL);
        free(s);
        return CATRACA_E_INVALID;
    }
    copy_text(s->environment, sizeof(s->environment), config->environment);
    copy_text(s->release, sizeof(s->release), config->release);
    copy_text(s->server_name, sizeof(s->server_name), config->server_name);
    copy_text(s->spool_path, sizeof(s->spool_path), config->spool_path);
    s->config.environment = s->environment;
    s->config.release = s->release;
    s->config.server_name = s->server_name;
    s->config.spool_path = s->spool_path;
    s->config.dsn = NULL; /* parsed; not kept as text */
    if (s->config.events_per_minute == 0)
        s->config.events_per_minute = 60;
    if (s->config.timeout_ms == 0)
        s->config.timeout_ms = 5000;
    s->tokens = RATE_BURST;
    s->tokens_at_ms = clock_monotonic_ms();
    if (s->dsn.is_https) {
        s->tls = SSL_CTX_new(TLS_client_method());
        if (s->tls == NULL || SSL_CTX_set_default_verify_paths(s->tls) != 1 ||
            SSL_CTX_set_min_proto_version(s->tls, TLS1_2_VERSION) != 1) {
            SSL_CTX_free(s->tls);
            free(s);
            return CATRACA_E_NOMEM;
        }
    }
    if (crash_prepare(s) != 0) {
        SSL_CTX_free(s->tls);
        free(s);
        return CATRACA_E_TOO_LARGE;
    }
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->wake, NULL);
    /* The sender takes no asynchronous signal: SIGTERM and SIGINT are for the thread that
     * waits for them (service_wait_for_stop), whenever sentry_start runs. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    int created = pthread_create(&s->sender, NULL, sender_main, s);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (created != 0) {
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mutex);
        SSL_CTX_free(s->tls);
        free(s);
        return CATRACA_E_NOMEM;
    }
    logline_set_hook(on_error_line, s, LOGLINE_ERROR);
    crash_install();
    logline(LOGLINE_INFO, "sentry", "errors and crashes go to Sentry", "host", s->dsn.host,
            "environment", s->environment, "release", s->release, NULL);
    *out = s;
    return 0;
}

void sentry_stop(struct sentry *s)
{
    if (s == NULL)
        return;
    crash_uninstall();
    logline_set_hook(NULL, NULL, LOGLINE_FATAL);
    pthread_mutex_lock(&s->mutex);
    s->is_stopping = true;
    s->stop_deadline_ms = clock_monotonic_ms() + s->config.timeout_ms;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
    pthread_join(s->sender, NULL);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mutex);
    SSL_CTX_free(s->tls);
    free(s);
}

void sentry_stats(struct sentry *s, struct sentry_stats *out)
{
    pthread_mutex_lock(&s->mutex);
    *out = s->stats;
    pthread_mutex_unlock(&s->mutex);
}
