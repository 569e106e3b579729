/*
 * sentry.h - errors and crashes to Sentry (--sentry-dsn), in Sentry's
 * envelope format, POSTed to the DSN's envelope endpoint
 * (<scheme>://<host>[:port][/path]/api/<project>/envelope/) with an
 * X-Sentry-Auth header (sentry_version=7, sentry_key, sentry_client).
 *
 * Debian ships no Sentry SDK for C (sentry-native is not packaged), so this is
 * a small sender of our own: plain sockets for http:// DSNs, OpenSSL (already
 * linked for --tls-cert) for https://, cJSON for the JSON.
 *
 * What is sent:
 * - every log line at level error or fatal (core/logline.h hook): an event with
 *   event_id, timestamp, level, release, environment, server_name, platform,
 *   the line's message, its component and fields, and the request id as the
 *   tag request_id when the line had one;
 * - a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT): an event of
 *   level fatal with an exception named after the signal, tagged with the
 *   crashing thread's request id. The handler cannot send it: after a crash the
 *   heap and every lock are suspect, and TLS is not async-signal-safe. It writes
 *   the envelope, assembled from parts built at start with async-signal-safe
 *   calls only (clock_gettime, open, write, close), to the spool file, and the
 *   next start of the process (systemd restarts it at once) sends it first.
 *
 * Bounds: a queue of SENTRY_QUEUE_MAX events (full: the event is dropped and
 * counted, the logging thread never waits for the network); one sender thread;
 * at most events_per_minute events sent (token bucket, burst 10); a 429 from
 * Sentry pauses sending for its Retry-After (at most 10 minutes); every
 * connection and exchange has a timeout_ms deadline.
 */
#ifndef CATRACA_APP_SENTRY_H
#define CATRACA_APP_SENTRY_H

#include <stdbool.h>
#include <stdint.h>

#define SENTRY_QUEUE_MAX 64

struct sentry_config {
    const char *dsn;            /* http(s)://public_key[:secret]@host[:port][/path]/project_id */
    const char *environment;    /* "production" */
    const char *release;        /* "catraca@0.1.0" */
    const char *server_name;    /* host name, and which command runs */
    const char *spool_path;     /* the crash report file */
    uint32_t events_per_minute; /* 0: 60 */
    uint32_t timeout_ms;        /* per exchange with Sentry; 0: 5000 */
    bool is_json_log;           /* the crash handler's own log line: JSON or logfmt */
};

struct sentry_stats {
    uint64_t sent, dropped_full, dropped_rate, failed;
};

struct sentry;

/*
 * Parses the DSN (CATRACA_E_INVALID with a log line when it is not one),
 * queues a crash report left in the spool by an earlier run, starts the
 * sender, hooks error and fatal log lines and installs the fatal signal
 * handlers. Call before other threads start.
 */
int sentry_start(const struct sentry_config *config, struct sentry **out);
/* Unhooks, sends what is queued within about timeout_ms, stops the sender, frees. */
void sentry_stop(struct sentry *sentry);
void sentry_stats(struct sentry *sentry, struct sentry_stats *out);

#endif
