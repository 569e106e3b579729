/*
 * logline.h - one line per event on stderr, for every process and module
 * (not the engine: it never logs, it answers).
 *
 * A line carries an RFC 3339 UTC timestamp with milliseconds, a level, the
 * component that wrote it, a message, the request id of the request that
 * caused it (when the calling thread has one, see logline_set_request_id),
 * then the caller's key/value fields, in one of two formats:
 *
 *   logfmt: time=2026-12-01T16:29:33.123Z level=warn component=log_redis msg="..." k=v
 *   json:   {"time":"...","level":"warn","component":"log_redis","msg":"...","k":"v"}
 *
 * Guarantees:
 * - Bounded: a line is at most LOGLINE_BYTES_MAX bytes, newline included; a
 *   value is cut at LOGLINE_VALUE_BYTES_MAX bytes (then ends in "..."), and
 *   fields that no longer fit are dropped and the line says truncated=true.
 * - Escaped: a value can never start a new line or a new field. logfmt quotes
 *   a value holding a space, '=', '"', '\' or anything outside printable
 *   ASCII; both formats write control characters as \u00XX and bytes that are
 *   not UTF-8 as \ufffd, so the JSON form is always valid JSON.
 * - Thread-safe without a lock: each line is formatted on the caller's stack
 *   and leaves in ONE write(2) (LOGLINE_BYTES_MAX <= PIPE_BUF, so lines of
 *   several threads never interleave on a pipe or an O_APPEND file).
 * - Secrets: this module cannot know what a secret is. Callers never pass a
 *   token, a secret, a password or a full connection string as a value.
 */
#ifndef CATRACA_CORE_LOGLINE_H
#define CATRACA_CORE_LOGLINE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOGLINE_BYTES_MAX 4096
#define LOGLINE_VALUE_BYTES_MAX 512
#define LOGLINE_REQUEST_ID_MAX 64
#define LOGLINE_FIELDS_MAX 16 /* key/value pairs a line takes; more are dropped (truncated) */

enum logline_level { LOGLINE_DEBUG, LOGLINE_INFO, LOGLINE_WARN, LOGLINE_ERROR, LOGLINE_FATAL };
enum logline_format { LOGLINE_LOGFMT, LOGLINE_JSON };

/* One line before formatting; what a hook receives (valid during the call only). */
struct logline_record {
    int64_t time_ms; /* wall clock, ms since the epoch */
    enum logline_level level;
    const char *component;
    const char *message;
    const char *request_id;                     /* "" when none */
    const char *fields[2 * LOGLINE_FIELDS_MAX]; /* key, value, key, value ... */
    size_t field_count;                         /* pairs */
};

/* "logfmt" or "json" -> *out: 0, or -1 for anything else. */
int logline_format_parse(const char *text, enum logline_format *out);
const char *logline_level_name(enum logline_level level);

/*
 * Process-wide settings; call before starting threads. Defaults: logfmt on fd 2.
 * The hook (NULL: none) is called on the logging thread, after the line was
 * written, for each line at min_level or above; it must not block (Sentry's
 * sender copies the record into its bounded queue) and must not log at
 * min_level or above itself.
 */
void logline_configure(enum logline_format format, int fd);
void logline_set_hook(void (*hook)(void *context, const struct logline_record *record),
                      void *context, enum logline_level min_level);

/*
 * The calling thread's current request id, added to each line it writes
 * until cleared (NULL or ""). Copied (at most LOGLINE_REQUEST_ID_MAX bytes).
 */
void logline_set_request_id(const char *id);
const char *logline_request_id(void);

/*
 * Writes one line. The variadic part is key/value pairs of strings ended by
 * NULL: logline(LOGLINE_WARN, "store_pg", "commit failed", "event", id, NULL).
 * A NULL value is written as an empty string.
 */
void logline(enum logline_level level, const char *component, const char *message, ...);
void logline_va(enum logline_level level, const char *component, const char *message,
                va_list pairs);

/*
 * Formats a record as one line into out (size >= 2), newline included; returns
 * its length (< size). What logline() writes; exposed for tests.
 */
size_t logline_render(enum logline_format format, const struct logline_record *record, char *out,
                      size_t size);

#endif
