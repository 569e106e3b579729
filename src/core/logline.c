/* logline.c - contract in logline.h. */
#include "core/logline.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"

static_assert(LOGLINE_BYTES_MAX <= PIPE_BUF, "a line must leave in one atomic write");
static_assert(LOGLINE_VALUE_BYTES_MAX * 6 + 64 < LOGLINE_BYTES_MAX,
              "one escaped value of the largest size must fit a line");

/* Room kept at the end of every line for the truncation mark, the closing brace and '\n'. */
#define TAIL_RESERVE 24

static struct {
    enum logline_format format;
    int fd;
    void (*hook)(void *context, const struct logline_record *record);
    void *hook_context;
    enum logline_level hook_min_level;
} settings = {.format = LOGLINE_LOGFMT, .fd = 2};

static _Thread_local char current_request_id[LOGLINE_REQUEST_ID_MAX + 1];

int logline_format_parse(const char *text, enum logline_format *out)
{
    if (strcmp(text, "logfmt") == 0)
        *out = LOGLINE_LOGFMT;
    else if (strcmp(text, "json") == 0)
        *out = LOGLINE_JSON;
    else
        return -1;
    return 0;
}

const char *logline_level_name(enum logline_level level)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "fatal"};
    return (unsigned)level < sizeof(names) / sizeof(names[0]) ? names[level] : "error";
}

void logline_configure(enum logline_format format, int fd)
{
    settings.format = format;
    settings.fd = fd;
}

void logline_set_hook(void (*hook)(void *context, const struct logline_record *record),
                      void *context, enum logline_level min_level)
{
    settings.hook = hook;
    settings.hook_context = context;
    settings.hook_min_level = min_level;
}

void logline_set_request_id(const char *id)
{
    size_t length = id != NULL ? strnlen(id, LOGLINE_REQUEST_ID_MAX) : 0;
    memcpy(current_request_id, id != NULL ? id : "", length);
    current_request_id[length] = '\0';
}

const char *logline_request_id(void)
{
    return current_request_id;
}

/* ---- rendering ----------------------------------------------------------------------------- */

/* A bounded output: `limit` is where the body must stop (the tail reserve lies beyond it). */
struct writer {
    char *out;
    size_t length, limit;
};

static bool put(struct writer *w, const char *text, size_t length)
{
    if (w->length + length > w->limit)
        return false;
    memcpy(w->out + w->length, text, length);
    w->length += length;
    return true;
}

static bool put_text(struct writer *w, const char *text)
{
    return put(w, text, strlen(text));
}

/* The length of the valid UTF-8 sequence starting at text (at most `left` bytes), or 0. */
static size_t utf8_sequence(const unsigned char *text, size_t left)
{
    unsigned char c = text[0];
    size_t length = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (length == 0 || length > left)
        return 0;
    for (size_t i = 1; i < length; i++)
        if ((text[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong three- and four-byte forms, surrogates, and beyond U+10FFFF. */
    if ((c == 0xe0 && text[1] < 0xa0) || (c == 0xed && text[1] >= 0xa0) ||
        (c == 0xf0 && text[1] < 0x90) || (c == 0xf4 && text[1] >= 0x90))
        return 0;
    return length;
}

static bool is_bare_logfmt(const char *value, size_t length)
{
    if (length == 0)
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
            return false;
    }
    return true;
}

/* value (cut at LOGLINE_VALUE_BYTES_MAX) as a quoted, escaped string; false when it does not fit.
 */
static bool put_quoted(struct writer *w, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    size_t length = strnlen(value, LOGLINE_VALUE_BYTES_MAX + 1);
    bool is_cut = length > LOGLINE_VALUE_BYTES_MAX;
    if (is_cut)
        length = LOGLINE_VALUE_BYTES_MAX;
    const unsigned char *text = (const unsigned char *)value;
    bool is_ok = put(w, "\"", 1);
    for (size_t i = 0; is_ok && i < length; i++) {
        unsigned char c = text[i];
        if (c == '"' || c == '\\') {
            char escaped[2] = {'\\', (char)c};
            is_ok = put(w, escaped, 2);
        } else if (c == '\n') {
            is_ok = put(w, "\\n", 2);
        } else if (c == '\t') {
            is_ok = put(w, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            is_ok = put(w, escaped, 6);
        } else if (c < 0x80) {
            is_ok = put(w, (const char *)&text[i], 1);
        } else {
            size_t sequence = utf8_sequence(text + i, length - i);
            if (sequence == 0) {
                is_ok = put(w, "\\ufffd", 6);
            } else {
                is_ok = put(w, (const char *)&text[i], sequence);
                i += sequence - 1;
            }
        }
    }
    if (is_ok && is_cut)
        is_ok = put(w, "...", 3);
    return is_ok && put(w, "\"", 1);
}

/* A key is ours, but is still kept to [A-Za-z0-9_.] so that it can never break a line. */
static bool put_key(struct writer *w, const char *key)
{
    for (size_t i = 0; key[i] != '\0' && i < 64; i++) {
        char c = key[i];
        bool is_safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '.';
        if (!put(w, is_safe ? &c : "_", 1))
            return false;
    }
    return true;
}

/* One field, whole or not at all (the writer is rewound when it does not fit). */
static bool put_field(struct writer *w, enum logline_format format, bool is_first, const char *key,
                      const char *value)
{
    size_t mark = w->length;
    if (value == NULL)
        value = "";
    bool is_ok;
    if (format == LOGLINE_JSON) {
        is_ok = put(w, is_first ? "{\"" : ",\"", 2) && put_key(w, key) && put(w, "\":", 2) &&
                put_quoted(w, value);
    } else {
        size_t length = strlen(value);
        is_ok = (is_first || put(w, " ", 1)) && put_key(w, key) && put(w, "=", 1) &&
                (is_bare_logfmt(value, length) && length <= LOGLINE_VALUE_BYTES_MAX
                     ? put(w, value, length)
                     : put_quoted(w, value));
    }
    if (!is_ok)
        w->length = mark;
    return is_ok;
}

/* "2026-12-01T16:29:33.123Z" */
static void format_time(int64_t time_ms, char out[32])
{
    time_t seconds = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = (int)(time_ms % 1000);
    out[n] = '.';
    out[n + 1] = (char)('0' + ms / 100);
    out[n + 2] = (char)('0' + ms / 10 % 10);
    out[n + 3] = (char)('0' + ms % 10);
    out[n + 4] = 'Z';
    out[n + 5] = '\0';
}

size_t logline_render(enum logline_format format, const struct logline_record *record, char *out,
                      size_t size)
{
    assert(size >= 2);
    char time_text[32];
    format_time(record->time_ms, time_text);
    struct writer w = {.out = out, .limit = size > TAIL_RESERVE ? size - TAIL_RESERVE : 0};
    bool is_whole = put_field(&w, format, true, "time", time_text) &&
                    put_field(&w, format, false, "level", logline_level_name(record->level)) &&
                    put_field(&w, format, false, "component", record->component) &&
                    put_field(&w, format, false, "msg", record->message);
    if (is_whole && record->request_id != NULL && record->request_id[0] != '\0')
        is_whole = put_field(&w, format, false, "request_id", record->request_id);
    for (size_t i = 0; is_whole && i < record->field_count; i++)
        is_whole = put_field(&w, format, false, record->fields[2 * i], record->fields[2 * i + 1]);
    /* The tail reserve is always there: the line ends well formed whatever came before. */
    w.limit = size - 1;
    if (!is_whole)
        put_text(&w, format == LOGLINE_JSON
                         ? (w.length == 0 ? "{\"truncated\":true" : ",\"truncated\":true")
                         : (w.length == 0 ? "truncated=true" : " truncated=true"));
    if (format == LOGLINE_JSON)
        put(&w, "}", 1);
    out[w.length++] = '\n';
    return w.length;
}

/* ---- writing ------------------------------------------------------------------------------- */

static void write_all(int fd, const char *text, size_t length)
{
    while (length > 0) {
        ssize_t n = write(fd, text, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stderr is gone: nothing else to tell it */
        text += n;
        length -= (size_t)n;
    }
}

void logline_va(enum logline_level level, const char *component, const char *message, va_list pairs)
{
    struct logline_record record = {.time_ms = clock_wall_ms(),
                                    .level = level,
                                    .component = component ? component : "",
                                    .message = message ? message : "",
                                    .request_id = current_request_id};
    bool is_dropped = false;
    for (const char *key = va_arg(pairs, const char *); key != NULL;
         key = va_arg(pairs, const char *)) {
        const char *value = va_arg(pairs, const char *);
        if (record.field_count == LOGLINE_FIELDS_MAX) {
            is_dropped = true;
            continue;
        }
        record.fields[2 * record.field_count] = key;
        record.fields[2 * record.field_count + 1] = value;
        record.field_count++;
    }
    if (is_dropped && record.field_count > 0) { /* say so in place of the last one */
        record.fields[2 * record.field_count - 2] = "truncated";
        record.fields[2 * record.field_count - 1] = "true";
    }
    char line[LOGLINE_BYTES_MAX];
    size_t length = logline_render(settings.format, &record, line, sizeof(line));
    write_all(settings.fd, line, length);
    if (settings.hook != NULL && level >= settings.hook_min_level)
        settings.hook(settings.hook_context, &record);
}

void logline(enum logline_level level, const char *component, const char *message, ...)
{
    va_list pairs;
    va_start(pairs, message);
    logline_va(level, component, message, pairs);
    va_end(pairs);
}
