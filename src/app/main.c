/*
 * main.c - the catraca command: `catraca serve` (embedded mode: HTTP, log,
 * worker and store in one process on one SQLite file), --version, --help.
 */
#include <assert.h>
#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/audit.h"
#include "app/audit_tree.h"
#include "app/verify.h"
#include "app/config.h"
#include "app/sentry.h"
#include "app/service.h"
#include "app/token.h"
#include "core/error.h"
#include "core/logline.h"
#include "gateway/api.h"
#include "gateway/http.h"
#include "log/log_sqlite.h"
#include "rush/rush.h"
#include "store/store_sqlite.h"
#include "worker/worker.h"

#ifndef CATRACA_VERSION
#define CATRACA_VERSION "0.1.0"
#endif

static void stop_signals(sigset_t *out)
{
    sigemptyset(out);
    sigaddset(out, SIGTERM);
    sigaddset(out, SIGINT);
}

/*
 * A handler would run on whichever thread the kernel picks, and a pause() on
 * the main thread would then sleep on: blocked everywhere, the signals wait
 * for sigwait() instead.
 */
void service_block_stop_signals(void)
{
    sigset_t stop;
    stop_signals(&stop);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void service_wait_for_stop(void)
{
    sigset_t stop;
    stop_signals(&stop);
    int signal_number = 0;
    while (sigwait(&stop, &signal_number) != 0)
        continue;
}

static void audit_help(void)
{
    printf("usage: catraca audit --data DIR [--receipt FILE]... [--head FILE]... [options]\n"
           "       catraca audit (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO "
           "[options]\n\n"
           "Replays every event's log and compares every stored decision; rebuilds each log's\n"
           "Merkle tree and checks saved receipts and signed tree heads against it.\n\n"
           "  --%-28s %s\n  --%-28s %s\n",
           "receipt FILE", "a receipt, or the 202 body that carried it (repeatable)", "head FILE",
           "a signed tree head from GET /v1/events/{event}/log (repeatable)");
    config_print_options(stdout, CMD_AUDIT);
}

/* `--receipt FILE` and `--head FILE` (repeatable) are audit's own: taken out before the
 * options of the table. 0 when all agree, 1 on a difference, 2 when it could not check. */
static int audit_main(int argc, char **argv)
{
    struct audit_tree_files files = {.receipts = calloc((size_t)argc, sizeof(char *)),
                                     .heads = calloc((size_t)argc, sizeof(char *))};
    char **rest = calloc((size_t)argc, sizeof(char *));
    int result = 2;
    if (files.receipts == NULL || files.heads == NULL || rest == NULL)
        goto done;
    int rest_count = 0;
    for (int i = 0; i < argc; i++) {
        if (i >= 2 && (strcmp(argv[i], "--receipt") == 0 || strcmp(argv[i], "--head") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "catraca audit: %s needs a FILE\n", argv[i]);
                goto done;
            }
            if (argv[i][2] == 'r')
                files.receipts[files.receipt_count++] = argv[++i];
            else
                files.heads[files.head_count++] = argv[++i];
            continue;
        }
        if (i >= 2 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            audit_help();
            result = 0;
            goto done;
        }
        rest[rest_count++] = argv[i];
    }
    struct config config;
    int parsed = config_parse(&config, rest_count, rest, 2, CMD_AUDIT, "audit");
    if (parsed != 0) {
        result = parsed > 0 ? 0 : 2;
        goto done;
    }
    if (config.redis[0] != '\0' || config.kafka[0] != '\0' || config.postgres[0] != '\0') {
        /* A distributed sale: exactly one log (--redis or --kafka) and its store. */
        if (distributed_check_backend(&config, "audit") != 0)
            goto done;
        if (config.postgres[0] == '\0') {
            fprintf(stderr, "catraca audit: --postgres is required with --redis or --kafka\n");
            goto done;
        }
        if (files.receipt_count > 0 || files.head_count > 0) {
            fprintf(stderr, "catraca audit: --receipt and --head are checked against --data "
                            "(the embedded mode) only\n");
            goto done;
        }
        struct backend_options backend = distributed_backend_options(&config);
        result = audit_distributed_run(&backend, config.postgres, (uint32_t)config.purchases_max,
                                       (uint32_t)config.customers_max);
        goto done;
    }
    int replayed =
        audit_run(config.data, (uint32_t)config.purchases_max, (uint32_t)config.customers_max);
    int tree = audit_tree_run(config.data, config.receipt_key, &files);
    result = replayed == 2 || tree == 2 ? 2 : replayed > tree ? replayed : tree;
done:
    free(files.receipts);
    free(files.heads);
    free(rest);
    return result;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: catraca serve [options]   start the embedded service\n"
                 "       catraca gateway (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO "
                 "[options]\n"
                 "                                 the HTTP API of the distributed mode\n"
                 "       catraca worker (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO "
                 "[options]\n"
                 "                                 decides the partitions it holds leases for\n"
                 "       catraca migrate --postgres CONNINFO\n"
                 "                                 applies the database schema migrations\n"
                 "       catraca audit --data DIR [--receipt FILE]... [--head FILE]...\n"
                 "       catraca audit (--redis URL | --kafka BOOTSTRAP) --postgres CONNINFO\n"
                 "                                 replay every event's log, compare every "
                 "stored decision,\n"
                 "                                 rebuild its Merkle tree, check receipts "
                 "against it\n"
                 "       catraca verify RECEIPT_FILE --url URL\n"
                 "                                 check a purchase receipt against the "
                 "published log\n"
                 "       catraca token --subject ID --role ROLE [--lifetime 1h]\n"
                 "                                 mint a JWT with CATRACA_JWT_SECRET or "
                 "--jwt-secret-file\n"
                 "       catraca rush --url URL (--demo | --jwt-secret-file F) [options]\n"
                 "                                 rehearse an on-sale against a server\n"
                 "       catraca --version\n"
                 "       catraca COMMAND --help    the options COMMAND reads: variable, default, "
                 "bound\n");
}

/* The JWT secret: the configured one (checked by config_parse), or in demo mode a random one,
 * never shown (secrets are never logged; the demo hands out tokens itself). */
int service_choose_secret(const struct config *config, uint8_t *secret, size_t *length)
{
    if (!config->is_demo) {
        assert(config->secret_length >= JWT_SECRET_MIN);
        *length = config->secret_length;
        memcpy(secret, config->secret, *length);
        return 0;
    }
    static const char hex[] = "0123456789abcdef";
    uint8_t random[24];
    if (RAND_bytes(random, sizeof(random)) != 1) {
        logline(LOGLINE_ERROR, "main", "demo mode: no random secret (OpenSSL's RAND_bytes failed)",
                NULL);
        return -1;
    }
    for (size_t i = 0; i < sizeof(random); i++) {
        secret[2 * i] = (uint8_t)hex[random[i] >> 4];
        secret[2 * i + 1] = (uint8_t)hex[random[i] & 15];
    }
    *length = 2 * sizeof(random);
    logline(LOGLINE_INFO, "main",
            "demo mode: tokens are signed with a random secret for this run (POST /v1/demo/token)",
            NULL);
    return 0;
}

void service_warn_public_demo(const struct config *config)
{
    if (config->is_demo_public)
        logline(LOGLINE_WARN, "main",
                "demo mode on a non-loopback address (--demo-public): anyone who reaches it can "
                "mint admin tokens and change every event",
                "listen", config->listen, NULL);
}

void sqlite_paths_of(const char *data, struct sqlite_paths *out)
{
    snprintf(out->log, sizeof(out->log), "%s/catraca.db", data);
    snprintf(out->store, sizeof(out->store), "%s/store.db", data);
}

static int start_worker(const struct config *config, const struct sqlite_paths *paths,
                        struct api *api, struct worker **out)
{
    struct worker_config worker;
    service_worker_config(config, api_on_commit, api, &worker);
    bool is_full = strcmp(config->sync, "full") == 0;
    struct log_sqlite_options options = {
        .is_synchronous_full = is_full, .busy_timeout_ms = 5000, .read_max = worker.batch_max};
    int error = log_sqlite_open(paths->log, &options, &worker.log);
    /*
     * The worker's store commits need no fsync of their own: the store is a
     * deterministic function of the log, which is fsync'd (appends and TICKs), so
     * a store commit lost to a power cut is decided again, identically, on restart.
     */
    if (error == 0)
        error = store_sqlite_open(paths->store, false, 5000, &worker.store);
    if (error == 0)
        error = worker_start(&worker, out);
    return error;
}

/* Embedded mode's backend: SQLite handles on the log's and the store's files. */
struct sqlite_backend {
    const struct sqlite_paths *paths;
    bool is_synchronous_full;
};

static int sqlite_open_log(void *context, bool is_appender, struct catraca_log *out)
{
    (void)is_appender;
    const struct sqlite_backend *backend = context;
    struct log_sqlite_options options = {.is_synchronous_full = backend->is_synchronous_full,
                                         .busy_timeout_ms = 5000,
                                         .read_max = 1};
    return log_sqlite_open(backend->paths->log, &options, out);
}

static int sqlite_open_log_reader(void *context, struct catraca_log *out)
{
    const struct sqlite_backend *backend = context;
    struct log_sqlite_options options = {.is_synchronous_full = backend->is_synchronous_full,
                                         .busy_timeout_ms = 5000,
                                         .read_max = API_LOG_TREE_READ_MAX};
    return log_sqlite_open(backend->paths->log, &options, out);
}

static int sqlite_open_store(void *context, struct catraca_store *out)
{
    const struct sqlite_backend *backend = context;
    return store_sqlite_open(backend->paths->store, backend->is_synchronous_full, 5000, out);
}

static int serve(const struct config *config)
{
    char host[64];
    struct sqlite_paths paths;
    uint16_t port = 0;
    uint8_t secret[JWT_SECRET_MAX];
    size_t secret_length = 0;
    service_warn_public_demo(config);
    if (config_split_listen(config->listen, host, &port) != 0 ||
        service_choose_secret(config, secret, &secret_length) != 0)
        return 2;
    if (mkdir(config->data, 0755) != 0 && errno != EEXIST) {
        logline(LOGLINE_ERROR, "main", "cannot create the data directory", "path", config->data,
                "error", strerror(errno), NULL);
        return 1;
    }
    sqlite_paths_of(config->data, &paths);
    struct sqlite_backend backend = {.paths = &paths,
                                     .is_synchronous_full = strcmp(config->sync, "full") == 0};
    struct api_backend api_backend = {.open_log = sqlite_open_log,
                                      .open_store = sqlite_open_store,
                                      .open_log_reader = sqlite_open_log_reader,
                                      .context = &backend};
    struct api_config api_config;
    service_api_config(config, &api_backend, secret, secret_length, &api_config);
    api_config.listen_host = host;
    if (api_config.append_threads == 0) /* SQLite has one writer: more would only queue */
        api_config.append_threads = 1;
    /* The worker runs in this process and hands every commit to the API: reads of recently
     * decided purchases can be answered from memory (a gateway's feed is a lossy pub/sub). */
    api_config.recent_purchases_max = 32768;
    struct api *api = NULL;
    struct worker *worker = NULL;
    struct http_server *http = NULL;
    service_block_stop_signals(); /* before the first thread */
    int error = api_start(&api_config, &api);
    if (error != 0) {
        logline(LOGLINE_ERROR, "main", "the purchase API could not start", "error",
                catraca_strerror(error), NULL);
        return 1;
    }
    error = start_worker(config, &paths, api, &worker);
    if (error != 0) {
        logline(LOGLINE_ERROR, "main", "the worker could not start", "error",
                catraca_strerror(error), NULL);
        return 1;
    }
    api_set_worker(api, worker);
    struct http_config http_config;
    service_http_config(config, host, port, api_handle, api, &http_config);
    if (http_start(&http_config, &http) != 0) {
        logline(LOGLINE_ERROR, "main", "the HTTP server could not start", "listen",
                config->listen, NULL);
        return 1;
    }
    api_set_http(api, http);
    char message[160];
    service_listening_message(config, host, http_port(http), message, sizeof(message));
    logline(LOGLINE_INFO, "main", message, "data", paths.log, "demo",
            config->is_demo ? "on" : "off", "version", CATRACA_VERSION, NULL);
    service_wait_for_stop();
    logline(LOGLINE_INFO, "main", "stopping: no new connections, finishing what is in flight",
            NULL);
    http_quiesce(http); /* no new connections */
    api_drain(api);     /* answer what is queued and parked, refuse the rest */
    http_stop(http);
    /* The worker stops before the API is freed: its last commits (expiries, say) still call
     * api_on_commit. The appender, stopped with the API, must not wake it any more. */
    api_set_worker(api, NULL);
    worker_stop(worker); /* finishes the commit in flight */
    api_stop(api);
    logline(LOGLINE_INFO, "main", "stopped", NULL);
    return 0;
}

void service_api_config(const struct config *config, const struct api_backend *backend,
                        const uint8_t *secret, size_t secret_length, struct api_config *out)
{
    *out = (struct api_config){
        .backend = *backend,
        .jwt_secret = secret,
        .jwt_secret_length = secret_length,
        .is_demo = config->is_demo,
        .is_demo_public = config->is_demo_public,
        .waiters_max = (uint32_t)config->waiters_max,
        .queue_max = (uint32_t)config->queue_max,
        .append_batch_max = (uint32_t)config->append_batch_max,
        .append_threads = (uint32_t)config->append_threads,
        .rate_customer_per_s = (double)config->rate_customer,
        .rate_customer_burst = (double)config->rate_customer_burst,
        .rate_ip_per_s = (double)config->rate_ip,
        .rate_ip_burst = (double)config->rate_ip_burst,
        .rate_keys_max = (uint32_t)config->rate_table_max,
        .events_max = (uint32_t)config->events_max,
        .threads = (uint32_t)config->threads,
        .is_challenge_on = config->is_challenge_on,
        .challenge_max_number = (uint32_t)config->challenge_max_number,
        .challenge_ttl_s = config->challenge_ttl_s,
        .challenge_replay_max = (uint32_t)config->challenge_replay_max,
        .receipt_key_path = config->is_receipts_on ? config->receipt_key : NULL,
        .may_create_receipt_key = true,
        /* Log entries per event: a purchase, its confirm or cancel, and the clock's ticks. */
        .receipt_leaves_max = 2 * (uint64_t)config->purchases_max,
        .payment_url = config->payment_url[0] != '\0' ? config->payment_url : NULL,
        .version = CATRACA_VERSION,
        .is_tls = config->tls_cert[0] != '\0',
    };
    char unused[160]; /* config_parse checked the list */
    (void)client_address_trust_parse(config->trusted_proxy, &out->trusted_proxies, unused);
}

void service_worker_config(const struct config *config,
                           void (*on_commit)(void *context, const struct worker_commit *commit),
                           void *context, struct worker_config *out)
{
    *out = (struct worker_config){
        .engine = {.purchases_max = (uint32_t)config->purchases_max,
                   .customers_max = (uint32_t)config->customers_max},
        .batch_max = (uint32_t)config->worker_batch_max,
        .snapshot_every = (uint32_t)config->snapshot_every,
        .partitions_max = (uint32_t)config->events_max,
        .idle_poll_ms = 100,
        .on_commit = on_commit,
        .on_commit_context = context,
    };
}

/* "listening on http://127.0.0.1:8080": tests and people find the port in it. */
void service_listening_message(const struct config *config, const char *host, uint16_t port,
                               char *out, size_t size)
{
    bool is_ipv6 = strchr(host, ':') != NULL;
    snprintf(out, size, "listening on %s://%s%s%s:%u", config->tls_cert[0] ? "https" : "http",
             is_ipv6 ? "[" : "", host, is_ipv6 ? "]" : "", port);
}

void service_http_config(const struct config *config, const char *host, uint16_t port,
                         http_handler handler, void *context, struct http_config *out)
{
    *out = (struct http_config){
        .host = host,
        .port = port,
        .threads = (uint32_t)config->threads,
        .connections_max = (uint32_t)config->connections_max,
        .header_bytes_max = (uint32_t)config->header_bytes_max,
        .body_bytes_max = (uint32_t)config->body_bytes_max,
        .header_timeout_ms = (uint32_t)config->header_timeout_ms,
        .body_timeout_ms = (uint32_t)config->body_timeout_ms,
        .idle_timeout_ms = (uint32_t)config->idle_timeout_ms,
        .tls_cert_path = config->tls_cert,
        .tls_key_path = config->tls_key,
        .cors_origins = config->cors_origin,
        .deferred_max = (uint32_t)(config->waiters_max + config->queue_max),
        .handler = handler,
        .handler_context = context,
        .is_access_log = config->is_access_log,
    };
}

void service_sentry_spool_path(const struct config *config, const char *command, char *out,
                               size_t size);

/* Log lines in the configured format (and errors to Sentry), then the command itself. */
static int run_service(const struct config *config, const char *command,
                       int (*run)(const struct config *config))
{
    enum logline_format format = LOGLINE_LOGFMT;
    logline_format_parse(config->log_format, &format); /* checked by config_parse */
    logline_configure(format, 2);
    struct sentry *sentry = NULL;
    if (config->sentry_dsn[0] != '\0') {
        char host[128] = "catraca", release[64], spool[512];
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        snprintf(release, sizeof(release), "catraca@%s", CATRACA_VERSION);
        service_sentry_spool_path(config, command, spool, sizeof(spool));
        struct sentry_config sentry_config = {.dsn = config->sentry_dsn,
                                              .environment = config->sentry_environment,
                                              .release = release,
                                              .server_name = host,
                                              .spool_path = spool,
                                              .is_json_log = format == LOGLINE_JSON};
        int error = sentry_start(&sentry_config, &sentry);
        if (error != 0) { /* a DSN that does not parse said so already; say it for the rest */
            if (error != CATRACA_E_INVALID)
                logline(LOGLINE_ERROR, "main", "the Sentry reporter could not start", "error",
                        catraca_strerror(error), NULL);
            return 2;
        }
    }
    int code = run(config);
    sentry_stop(sentry);
    return code;
}

/*
 * Where a crash report waits for the next start: --sentry-spool, else in the
 * data directory (serve), else /var/tmp, one file per command and listen
 * address (so two instances on one machine never share one).
 */
void service_sentry_spool_path(const struct config *config, const char *command, char *out,
                               size_t size)
{
    if (config->sentry_spool[0] != '\0') {
        snprintf(out, size, "%s", config->sentry_spool);
        return;
    }
    if (strcmp(command, "serve") == 0) {
        snprintf(out, size, "%s/sentry-crash.envelope", config->data);
        return;
    }
    char listen[sizeof(config->listen)];
    memcpy(listen, config->listen, sizeof(listen));
    for (char *c = listen; *c != '\0'; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || *c == '.'))
            *c = '_';
    snprintf(out, size, "/var/tmp/catraca-%s-%s.sentry-envelope", command, listen);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("catraca %s\n", CATRACA_VERSION);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "rush") == 0)
        return rush_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return token_main(argc, argv);
    if (strcmp(argv[1], "verify") == 0)
        return verify_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "audit") == 0)
        return audit_main(argc, argv);
    static const struct {
        const char *name;
        unsigned bit;
        int (*run)(const struct config *config);
    } commands[] = {{"serve", CMD_SERVE, serve},
                    {"gateway", CMD_GATEWAY, gateway_run},
                    {"worker", CMD_WORKER, worker_run},
                    {"migrate", CMD_MIGRATE, migrate_run}};
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        struct config config;
        int result = config_parse(&config, argc, argv, 2, commands[i].bit, commands[i].name);
        if (result != 0)
            return result > 0 ? 0 : 2;
        return run_service(&config, commands[i].name, commands[i].run);
    }
    fprintf(stderr, "catraca: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
