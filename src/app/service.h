/*
 * service.h - what the service commands share (serve, gateway, worker):
 * turning the configuration into the API's and HTTP server's settings, the
 * JWT secret, and waiting for SIGTERM/SIGINT.
 */
#ifndef CATRACA_APP_SERVICE_H
#define CATRACA_APP_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/config.h"
#include "gateway/api.h"
#include "gateway/http.h"
#include "log/backend.h"
#include "worker/worker.h"

/* The configured JWT secret, or in demo mode a random one never shown; secret holds
 * JWT_SECRET_MAX bytes. */
int service_choose_secret(const struct config *config, uint8_t *secret, size_t *length);
/* With --demo-public: the warning at start, a log line. */
void service_warn_public_demo(const struct config *config);
void service_api_config(const struct config *config, const struct api_backend *backend,
                        const uint8_t *secret, size_t secret_length, struct api_config *out);
void service_http_config(const struct config *config, const char *host, uint16_t port,
                         http_handler handler, void *context, struct http_config *out);
/* The worker's settings from the configuration; the caller adds log, store, ownership. */
void service_worker_config(const struct config *config,
                           void (*on_commit)(void *context, const struct worker_commit *commit),
                           void *context, struct worker_config *out);
/*
 * Blocks SIGTERM and SIGINT in the calling thread and the threads it starts
 * afterwards, and ignores SIGPIPE: call before starting any thread.
 */
void service_block_stop_signals(void);
/* "listening on <scheme>://<host>:<port>", the start line's message. */
void service_listening_message(const struct config *config, const char *host, uint16_t port,
                               char *out, size_t size);
/* Returns once SIGTERM or SIGINT arrived (service_block_stop_signals first). */
void service_wait_for_stop(void);

/*
 * The embedded mode's files in a data directory: the log (catraca.db) and the
 * store derived from it (store.db). Two files, so that the appender's and the
 * worker's commits never wait for each other's write lock. A data directory
 * from before the split has no store.db: the worker rebuilds it from the log.
 */
struct sqlite_paths {
    char log[512];
    char store[512];
};
void sqlite_paths_of(const char *data, struct sqlite_paths *out);

/* The distributed mode's commands (distributed.c). */
/* The log's and bus's options (--redis or --kafka and their settings); they point into config. */
struct backend_options distributed_backend_options(const struct config *config);
/* Exactly one log named, and its settings valid: 0, or -1 after a log line saying why (the
 * command exits 2). command names the command in that line. */
int distributed_check_backend(const struct config *config, const char *command);
int gateway_run(const struct config *config);
int worker_run(const struct config *config);
int migrate_run(const struct config *config);

#endif
