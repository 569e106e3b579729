/*
 * log_kafka.c - the log on Apache Kafka. Contract and mapping in
 * log_kafka.h and log.h; log_sqlite.c is the reference for results
 * (duplicates, the earlier entry's seq, exclusive reads, sorted partitions).
 *
 * librdkafka speaks the protocol and retries by itself; this file bounds
 * every wait by the options' timeout_ms and turns what librdkafka reports
 * (delivery reports, consumer errors, Admin results) into Catraca's errors.
 */
#include "log/log_kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/logline.h"
#include "core/siphash.h"

#define EVENT_TOPIC_INFIX "event."
/* message.max.bytes, and each topic's max.message.bytes: a bus message (<= BUS_MESSAGE_MAX)
 * and its framing; a record is <= 4 KiB */
#define MESSAGE_BYTES_MAX ((1 << 20) + 65536)
#define FETCH_BYTES_MAX (4 << 20)          /* fetch.max.bytes of one fetch response */
/* fetch.wait.max.ms. Measured with librdkafka 2.0.2 on Kafka 4.1.1: a caught-up consumer gets
 * a new record when its long poll ends, not when the record arrives, so this is the latency a
 * woken worker sees twice (the wake-up topic, then the event's); each idle consumer sends a
 * fetch this often. */
#define FETCH_WAIT_MS 25
#define DRAIN_AFTER_PURGE_MS 1000          /* serving purged messages' reports */
#define POLL_SLICE_MS 20                   /* one rd_kafka_poll while waiting for reports */
#define CREATE_RETRY_PAUSE_MS 100           /* between CreateTopics attempts */
#define ANNOUNCED_MAX 64                   /* events one append announces without repeats */
#define WAYS 4                             /* of the process-wide set-associative tables */
#define INDEX_BITS 17                      /* a delivery's item index (<= 65536 items) */

/* ---- time -------------------------------------------------------------------------------- */

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - monotonic_ms();
    return left < 0 ? 0 : left > 1000000 ? 1000000 : (int)left;
}

/* ---- topic names --------------------------------------------------------------------------- */

static bool is_plain(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int log_kafka_event_topic(const char *prefix, const char *event, char out[LOG_KAFKA_TOPIC_MAX])
{
    size_t event_length = event != NULL ? strnlen(event, CATRACA_ID_MAX + 1) : 0;
    if (prefix == NULL || strlen(prefix) > LOG_KAFKA_PREFIX_MAX || event_length == 0 ||
        event_length > CATRACA_ID_MAX)
        return CATRACA_E_INVALID;
    size_t n = (size_t)snprintf(out, LOG_KAFKA_TOPIC_MAX, "%s" EVENT_TOPIC_INFIX, prefix);
    for (size_t i = 0; i < event_length; i++) {
        char c = event[i];
        if (is_plain(c)) {
            out[n++] = c;
            continue;
        }
        char escape = c == '.' ? 'd' : c == '_' ? 'u' : c == '-' ? '-' : '\0';
        if (escape == '\0') /* Kafka topics allow [A-Za-z0-9._-] only */
            return CATRACA_E_INVALID;
        out[n++] = '-';
        out[n++] = escape;
    }
    out[n] = '\0';
    return 0;
}

int log_kafka_topic_event(const char *prefix, const char *topic, char event[CATRACA_ID_MAX + 1])
{
    size_t prefix_length = strlen(prefix), infix_length = strlen(EVENT_TOPIC_INFIX);
    if (strncmp(topic, prefix, prefix_length) != 0 ||
        strncmp(topic + prefix_length, EVENT_TOPIC_INFIX, infix_length) != 0)
        return CATRACA_E_INVALID;
    const char *p = topic + prefix_length + infix_length;
    size_t n = 0;
    for (; *p != '\0'; p++) {
        if (n == CATRACA_ID_MAX)
            return CATRACA_E_INVALID;
        if (is_plain(*p)) {
            event[n++] = *p;
            continue;
        }
        if (*p != '-')
            return CATRACA_E_INVALID;
        p++;
        char c = *p == 'd' ? '.' : *p == 'u' ? '_' : *p == '-' ? '-' : '\0';
        if (c == '\0')
            return CATRACA_E_INVALID;
        event[n++] = c;
    }
    event[n] = '\0';
    return n > 0 ? 0 : CATRACA_E_INVALID;
}

/* ---- options and clients ------------------------------------------------------------------- */

int log_kafka_options_check(const struct backend_options *options)
{
    if (options == NULL || options->kafka_bootstrap == NULL ||
        options->kafka_bootstrap[0] == '\0' ||
        strlen(options->kafka_bootstrap) >= LOG_KAFKA_BOOTSTRAP_MAX ||
        options->kafka_topic_prefix == NULL ||
        strlen(options->kafka_topic_prefix) > LOG_KAFKA_PREFIX_MAX ||
        options->kafka_replication_factor < 1 || options->kafka_replication_factor > 16 ||
        options->kafka_min_insync_replicas < 1 ||
        options->kafka_min_insync_replicas > options->kafka_replication_factor ||
        options->timeout_ms < 1)
        return CATRACA_E_INVALID;
    for (const char *p = options->kafka_topic_prefix; *p != '\0'; p++)
        if (!is_plain(*p) && *p != '.' && *p != '_' && *p != '-')
            return CATRACA_E_INVALID;
    return 0;
}

static bool conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char error[256];
    if (rd_kafka_conf_set(conf, name, value, error, sizeof(error)) == RD_KAFKA_CONF_OK)
        return true;
    logline(LOGLINE_ERROR, "log_kafka", "librdkafka refused a setting", "name", name, "error",
            error, NULL);
    return false;
}

static bool conf_set_int(rd_kafka_conf_t *conf, const char *name, long long value)
{
    char text[24];
    snprintf(text, sizeof(text), "%lld", value);
    return conf_set(conf, name, text);
}

/* librdkafka's own log lines go through logline (one line each, bounded). */
static void on_librdkafka_log(const rd_kafka_t *client, int level, const char *facility,
                              const char *text)
{
    (void)client;
    /* its errors are mostly "broker down" that it retries by itself: Catraca's own lines say
     * what failed for the caller */
    enum logline_level at = level <= 4 ? LOGLINE_WARN : LOGLINE_INFO;
    logline(at, "librdkafka", text, "facility", facility, NULL);
}

/* Teardowns that outlived their bound and still run (teardown_bounded). */
static atomic_int abandoned_teardowns;

rd_kafka_t *log_kafka_client_new(const struct backend_options *options, bool is_producer,
                                 void (*on_delivery)(rd_kafka_t *client,
                                                     const rd_kafka_message_t *message,
                                                     void *opaque),
                                 void *opaque)
{
    if (atomic_load(&abandoned_teardowns) >= LOG_KAFKA_ABANDONED_TEARDOWNS_MAX) {
        logline(LOGLINE_ERROR, "log_kafka",
                "no new Kafka client while earlier ones are stuck in their teardown", NULL);
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf == NULL)
        return NULL;
    int timeout_ms = options->timeout_ms;
    bool is_set =
        conf_set(conf, "bootstrap.servers", options->kafka_bootstrap) &&
        conf_set(conf, "client.id", "catraca") &&
        /* a consumer's socket time-out must exceed its fetch long poll by a second */
        conf_set_int(conf, "socket.timeout.ms",
                     !is_producer && timeout_ms < FETCH_WAIT_MS + 1000 ? FETCH_WAIT_MS + 1000
                     : timeout_ms < 10                                 ? 10
                                                                       : timeout_ms) &&
        conf_set_int(conf, "socket.connection.setup.timeout.ms",
                     timeout_ms < 1000 ? 1000 : timeout_ms) &&
        conf_set_int(conf, "metadata.max.age.ms", 60000) &&
        /* a topic made a moment ago is unknown to brokers for some ms: ask again soon */
        conf_set_int(conf, "topic.metadata.refresh.fast.interval.ms", 20) &&
        conf_set_int(conf, "reconnect.backoff.ms", 50) &&
        conf_set_int(conf, "reconnect.backoff.max.ms", 1000) &&
        conf_set_int(conf, "message.max.bytes", MESSAGE_BYTES_MAX) &&
        conf_set_int(conf, "receive.message.max.bytes", FETCH_BYTES_MAX + 65536) &&
        conf_set(conf, "log.connection.close", "false");
    if (is_producer)
        is_set = is_set && conf_set(conf, "enable.idempotence", "true") &&
                 conf_set(conf, "acks", "all") &&
                 conf_set_int(conf, "message.timeout.ms", timeout_ms) &&
                 conf_set_int(conf, "request.timeout.ms", timeout_ms) &&
                 conf_set_int(conf, "linger.ms", 1) &&
                 conf_set_int(conf, "queue.buffering.max.messages",
                              LOG_KAFKA_QUEUE_MESSAGES_MAX) &&
                 conf_set_int(conf, "queue.buffering.max.kbytes", LOG_KAFKA_QUEUE_KBYTES_MAX);
    else
        /* No group.id: partitions are started at an exact offset with librdkafka's simple
         * consumer (consume_start). Its assign() would need a group.id and then waits for
         * the group's coordinator before fetching (making __consumer_offsets on first use):
         * reads would depend on a broker that has nothing to do with the event. */
        is_set = is_set && conf_set(conf, "enable.auto.commit", "false") &&
                 conf_set(conf, "auto.commit.enable", "false") &&
                 conf_set(conf, "enable.auto.offset.store", "false") &&
                 conf_set(conf, "auto.offset.reset", "error") &&
                 conf_set(conf, "enable.partition.eof", "false") &&
                 conf_set(conf, "allow.auto.create.topics", "false") &&
                 conf_set_int(conf, "fetch.wait.max.ms", FETCH_WAIT_MS) &&
                 conf_set_int(conf, "fetch.max.bytes", FETCH_BYTES_MAX) &&
                 conf_set_int(conf, "max.partition.fetch.bytes", MESSAGE_BYTES_MAX) &&
                 /* librdkafka 2.0 takes a partition off its fetch list once its queue passes
                  * either threshold and looks again only when the broker thread wakes, up to
                  * a second later (2.1 made that fetch.queue.backoff.ms): a reader of a whole
                  * log with 1000 messages / 1 MiB waited a second every 1 MiB (catraca audit:
                  * 112 k entries in 9 s for 0.35 s of CPU), and so did a worker behind its
                  * log (taking a partition over, or after a burst). Readers are bounded by
                  * bytes alone (librdkafka's largest message count never binds first), many
                  * fetch responses (MESSAGE_BYTES_MAX) deep: one response never stops the
                  * fetching, a reader that keeps up holds little, one that does not holds
                  * at most this much a partition. */
                 conf_set_int(conf, "queued.min.messages", 10000000) &&
                 conf_set_int(conf, "queued.max.messages.kbytes",
                              options->kafka_prefetch_kbytes > 0 ? options->kafka_prefetch_kbytes
                                                                 : LOG_KAFKA_PREFETCH_KBYTES);
    if (!is_set) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_librdkafka_log);
    if (on_delivery != NULL)
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, opaque);
    char error[512];
    rd_kafka_t *client =
        rd_kafka_new(is_producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, error, sizeof(error));
    if (client == NULL) {
        rd_kafka_conf_destroy(conf);
        logline(LOGLINE_ERROR, "log_kafka", "could not make a Kafka client", "error", error, NULL);
    }
    return client;
}

/* ---- bounded teardown (log_kafka.h) ------------------------------------------------------ */

struct teardown_part {
    rd_kafka_topic_t *handle; /* NULL: none */
    rd_kafka_queue_t *queue;  /* destroyed after the stop; NULL: none */
    bool is_fetching;         /* rd_kafka_consume_stop(handle, 0) first */
    bool is_handle_kept;      /* a seek: the caller starts the partition again on handle */
};

struct teardown {
    pthread_mutex_t mutex;
    pthread_cond_t done; /* on CLOCK_MONOTONIC */
    bool is_done;
    bool is_abandoned;     /* the caller stopped waiting: the thread frees it */
    struct teardown *then; /* abandoned: torn down by the thread after this one (and freed) */
    const char *what;      /* a string literal, for the log lines */
    rd_kafka_t *purged;    /* a producer whose messages are purged first (blocking); NULL: none */
    rd_kafka_t *client;    /* destroyed after the parts; NULL: none */
    size_t count;
    struct teardown_part parts[];
};

void (*_Atomic log_kafka_teardown_stall)(void);

static struct teardown *teardown_new(size_t count, const char *what)
{
    struct teardown *t = calloc(1, sizeof(*t) + count * sizeof(t->parts[0]));
    if (t == NULL)
        return NULL;
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&t->done, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&t->mutex, NULL);
    t->count = count;
    t->what = what;
    return t;
}

static void teardown_free(struct teardown *t)
{
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mutex);
    free(t);
}

/* The librdkafka calls themselves, in order: each may wait without a bound. */
static void teardown_run(struct teardown *t)
{
    void (*stall)(void) = log_kafka_teardown_stall;
    if (stall != NULL)
        stall();
    if (t->purged != NULL) /* waits for every broker thread of it to answer */
        rd_kafka_purge(t->purged, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (size_t i = 0; i < t->count; i++) {
        struct teardown_part *part = &t->parts[i];
        if (part->is_fetching && part->handle != NULL)
            rd_kafka_consume_stop(part->handle, 0);
        if (part->queue != NULL)
            rd_kafka_queue_destroy(part->queue);
        if (part->handle != NULL && !part->is_handle_kept)
            rd_kafka_topic_destroy(part->handle);
    }
    if (t->client != NULL)
        rd_kafka_destroy(t->client);
}

static void *teardown_main(void *argument)
{
    struct teardown *t = argument;
    teardown_run(t);
    pthread_mutex_lock(&t->mutex);
    t->is_done = true;
    bool is_abandoned = t->is_abandoned;
    struct teardown *then = t->then;
    const char *what = t->what;
    pthread_cond_signal(&t->done);
    pthread_mutex_unlock(&t->mutex);
    /* Not abandoned: the caller owns t from here on and may have freed it already. */
    if (!is_abandoned)
        return NULL;
    teardown_free(t);
    if (then != NULL) {
        teardown_run(then);
        teardown_free(then);
    }
    atomic_fetch_sub(&abandoned_teardowns, 1);
    logline(LOGLINE_WARN, "log_kafka", "a teardown that outlived its time-out ended", "what",
            what, NULL);
    return NULL;
}

/*
 * Runs t on a thread of its own and waits for it at most wait_ms: 0 (t is
 * freed), or CATRACA_E_UNAVAILABLE when it outlived that (logged): its
 * thread finishes it and then what then_of(context) returned (called at
 * once, with the thread unable to have finished: what depends on the stuck
 * call goes after it), and frees both. Without a thread it runs here.
 */
static int teardown_bounded(struct teardown *t, int wait_ms,
                            struct teardown *(*then_of)(void *context), void *context)
{
    pthread_attr_t attributes;
    pthread_t thread;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&thread, &attributes, teardown_main, t);
    pthread_attr_destroy(&attributes);
    if (started != 0) {
        teardown_run(t);
        teardown_free(t);
        return 0;
    }
    struct timespec deadline = clock_deadline_after_ms(CLOCK_MONOTONIC, wait_ms); /* t->done's */
    pthread_mutex_lock(&t->mutex);
    while (!t->is_done && pthread_cond_timedwait(&t->done, &t->mutex, &deadline) == 0)
        ;
    if (t->is_done) {
        pthread_mutex_unlock(&t->mutex);
        teardown_free(t);
        return 0;
    }
    t->is_abandoned = true;
    t->then = then_of != NULL ? then_of(context) : NULL;
    const char *what = t->what;
    pthread_mutex_unlock(&t->mutex);
    int abandoned = atomic_fetch_add(&abandoned_teardowns, 1) + 1;
    char wait_text[16], abandoned_text[16];
    snprintf(wait_text, sizeof(wait_text), "%d", wait_ms);
    snprintf(abandoned_text, sizeof(abandoned_text), "%d", abandoned);
    logline(LOGLINE_ERROR, "log_kafka",
            "a librdkafka teardown outlived its time-out; left to finish in the background",
            "what", what, "waited_ms", wait_text, "abandoned", abandoned_text, NULL);
    return CATRACA_E_UNAVAILABLE;
}

int log_kafka_teardown(rd_kafka_t *client, rd_kafka_topic_t *handle, bool is_fetching,
                       int timeout_ms, const char *what)
{
    struct teardown *t = teardown_new(handle != NULL ? 1 : 0, what);
    if (t == NULL) {
        logline(LOGLINE_ERROR, "log_kafka", "no memory to tear a client down: left as it is",
                "what", what, NULL);
        return CATRACA_E_NOMEM;
    }
    if (handle != NULL)
        t->parts[0] = (struct teardown_part){handle, NULL, is_fetching, false};
    t->client = client;
    return teardown_bounded(t, timeout_ms + LOG_KAFKA_TEARDOWN_MARGIN_MS, NULL, NULL);
}

/* ---- process-wide tables ------------------------------------------------------------------- */

/*
 * Topics known to exist (and the offset this process last delivered to), so
 * an append asks the Admin API once per topic. Open addressing over twice
 * LOG_KAFKA_TOPICS_MAX slots; when full it is emptied (topics are asked for
 * again: correct, only slower).
 */
struct known_topic {
    char name[LOG_KAFKA_TOPIC_MAX]; /* "": free */
    int64_t appended_high;          /* this process's last delivered offset + 1, 0: none */
    bool has_entries;               /* seen with a high watermark > 0 (it never goes back) */
};

/* Idempotency keys this process appended: fingerprint of (scope, key) -> the entry. */
struct known_key {
    uint64_t fingerprint[2]; /* {0,0}: free */
    uint64_t request_hash;
    uint64_t purchase_id;
    uint64_t seq_major;
    uint64_t age;
};

/* Purchases this process appended: id -> where. */
struct known_purchase {
    uint64_t purchase_id; /* 0: free */
    uint64_t seq_major;
    uint64_t age;
    char event[CATRACA_ID_MAX + 1];
};

/*
 * Items of a failed append that the brokers may still have written (a stalled
 * broker writes a request it had read before it stopped; the report had timed
 * out): a retry of one is looked up in its topic from floor on (header "p" or
 * "k") before being appended again. A ring of LOG_KAFKA_DOUBTFUL_MAX.
 */
struct doubtful {
    uint64_t purchase_id;    /* 0: none */
    uint64_t fingerprint[2]; /* {0,0}: no key */
    uint64_t request_hash;
    int64_t floor;
    char event[CATRACA_ID_MAX + 1]; /* "": free */
};

static pthread_mutex_t tables_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct doubtful doubtfuls[LOG_KAFKA_DOUBTFUL_MAX];
static size_t doubtful_next;
static struct known_topic *topics;
static size_t topic_count;
static struct known_key *keys;
static struct known_purchase *purchases;
static uint64_t tables_clock;

#define TOPIC_SLOTS (2 * LOG_KAFKA_TOPICS_MAX)
#define KEY_SETS (LOG_KAFKA_KEYS_MAX / WAYS)
#define PURCHASE_SETS (LOG_KAFKA_PURCHASES_MAX / WAYS)

/* Called with tables_mutex held: allocates the tables on first use. */
static bool tables_ready(void)
{
    if (topics == NULL)
        topics = calloc(TOPIC_SLOTS, sizeof(*topics));
    if (keys == NULL)
        keys = calloc(LOG_KAFKA_KEYS_MAX, sizeof(*keys));
    if (purchases == NULL)
        purchases = calloc(LOG_KAFKA_PURCHASES_MAX, sizeof(*purchases));
    return topics != NULL && keys != NULL && purchases != NULL;
}

static uint64_t text_hash(const char *text)
{
    static const uint8_t key[16] = "catraca-topics-0";
    return siphash24(key, text, strlen(text));
}

/* With tables_mutex held: the topic's slot, or the free slot where it would go. */
static struct known_topic *topic_slot(const char *name)
{
    size_t i = (size_t)(text_hash(name) % TOPIC_SLOTS);
    while (topics[i].name[0] != '\0' && strcmp(topics[i].name, name) != 0)
        i = (i + 1) % TOPIC_SLOTS;
    return &topics[i];
}

static bool topic_is_known(const char *name)
{
    pthread_mutex_lock(&tables_mutex);
    bool is_known = tables_ready() && topic_slot(name)->name[0] != '\0';
    pthread_mutex_unlock(&tables_mutex);
    return is_known;
}

/* With tables_mutex held. */
static struct known_topic *topic_remember_locked(const char *name)
{
    if (!tables_ready())
        return NULL;
    struct known_topic *slot = topic_slot(name);
    if (slot->name[0] != '\0')
        return slot;
    if (topic_count >= LOG_KAFKA_TOPICS_MAX) {
        memset(topics, 0, TOPIC_SLOTS * sizeof(*topics));
        topic_count = 0;
        slot = topic_slot(name);
    }
    snprintf(slot->name, sizeof(slot->name), "%s", name);
    topic_count++;
    return slot;
}

static void topic_remember(const char *name)
{
    pthread_mutex_lock(&tables_mutex);
    topic_remember_locked(name);
    pthread_mutex_unlock(&tables_mutex);
}

/* With tables_mutex held. */
static int64_t log_kafka_appended_high_locked(const char *topic)
{
    return tables_ready() ? topic_slot(topic)->appended_high : 0;
}

int64_t log_kafka_appended_high(const char *topic)
{
    pthread_mutex_lock(&tables_mutex);
    int64_t high = tables_ready() ? topic_slot(topic)->appended_high : 0;
    pthread_mutex_unlock(&tables_mutex);
    return high;
}

/* 128 bits of (scope, key): two SipHash-2-4 under different fixed keys (not secrets). */
static void key_fingerprint(const char *scope, const char *key, uint64_t out[2])
{
    static const uint8_t first[16] = "catraca-idem-k-1", second[16] = "catraca-idem-k-2";
    char text[2 * (CATRACA_ID_MAX + 1) + 1];
    int length = snprintf(text, sizeof(text), "%.*s%c%.*s", CATRACA_ID_MAX, scope ? scope : "",
                          '\0', CATRACA_ID_MAX, key);
    out[0] = siphash24(first, text, (size_t)length);
    out[1] = siphash24(second, text, (size_t)length) | 1; /* never {0,0} */
}

/* With tables_mutex held. */
static struct known_key *key_find(const uint64_t fingerprint[2])
{
    struct known_key *set = &keys[(fingerprint[0] % KEY_SETS) * WAYS];
    for (int w = 0; w < WAYS; w++)
        if (set[w].fingerprint[0] == fingerprint[0] && set[w].fingerprint[1] == fingerprint[1])
            return &set[w];
    return NULL;
}

/* With tables_mutex held: a slot for a new entry (the set's oldest goes). */
static struct known_key *key_slot(const uint64_t fingerprint[2])
{
    struct known_key *set = &keys[(fingerprint[0] % KEY_SETS) * WAYS], *oldest = &set[0];
    for (int w = 1; w < WAYS; w++)
        if (set[w].age < oldest->age)
            oldest = &set[w];
    return oldest;
}

static struct known_purchase *purchase_find(uint64_t purchase_id)
{
    struct known_purchase *set = &purchases[(purchase_id % PURCHASE_SETS) * WAYS];
    for (int w = 0; w < WAYS; w++)
        if (set[w].purchase_id == purchase_id)
            return &set[w];
    return NULL;
}

static struct known_purchase *purchase_slot(uint64_t purchase_id)
{
    struct known_purchase *set = &purchases[(purchase_id % PURCHASE_SETS) * WAYS],
                          *oldest = &set[0];
    for (int w = 1; w < WAYS; w++)
        if (set[w].age < oldest->age)
            oldest = &set[w];
    return oldest;
}

/* ---- topic creation ------------------------------------------------------------------------ */

static bool is_topic_created(rd_kafka_resp_err_t error)
{
    return error == RD_KAFKA_RESP_ERR_NO_ERROR || error == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;
}

/*
 * Asks for a topic's metadata until it has a leader (bounded by timeout_ms):
 * this also fills the client's metadata cache, so its first produce to a
 * topic made a moment ago goes out at once instead of after librdkafka's
 * unknown-topic retries (measured: about 1 s on librdkafka 2.0.2).
 */
static void wait_for_leader(rd_kafka_t *client, const char *name, int timeout_ms, bool is_once)
{
    rd_kafka_topic_t *topic = rd_kafka_topic_new(client, name, NULL);
    if (topic == NULL)
        return;
    int64_t deadline = monotonic_ms() + timeout_ms;
    for (;;) {
        const struct rd_kafka_metadata *metadata = NULL;
        bool has_leader = false;
        if (rd_kafka_metadata(client, 0, topic, &metadata, remaining_ms(deadline) + 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            has_leader = metadata->topic_cnt == 1 &&
                         metadata->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                         metadata->topics[0].partition_cnt >= 1 &&
                         metadata->topics[0].partitions[0].leader >= 0;
            rd_kafka_metadata_destroy(metadata);
        }
        if (has_leader || is_once || remaining_ms(deadline) < CREATE_RETRY_PAUSE_MS / 10)
            break;
        struct timespec pause = {0, (CREATE_RETRY_PAUSE_MS / 10) * 1000000L};
        nanosleep(&pause, NULL);
    }
    rd_kafka_topic_destroy(topic);
}

/* One CreateTopics request (the topics made or already there are remembered). */
static int create_topics_once(rd_kafka_t *client, rd_kafka_NewTopic_t **wanted, size_t wanted_count,
                              int timeout_ms)
{
    char error_text[256];
    rd_kafka_AdminOptions_t *admin = rd_kafka_AdminOptions_new(client, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *queue = rd_kafka_queue_new(client);
    int result = CATRACA_E_UNAVAILABLE;
    if (admin != NULL && queue != NULL &&
        rd_kafka_AdminOptions_set_request_timeout(admin, timeout_ms, error_text,
                                                  sizeof(error_text)) == 0 &&
        rd_kafka_AdminOptions_set_operation_timeout(admin, timeout_ms, error_text,
                                                    sizeof(error_text)) == 0) {
        rd_kafka_CreateTopics(client, wanted, wanted_count, admin, queue);
        /* the request's time-out, then a margin for the result to come back */
        rd_kafka_event_t *event = rd_kafka_queue_poll(queue, timeout_ms + 500);
        const rd_kafka_CreateTopics_result_t *created =
            event != NULL ? rd_kafka_event_CreateTopics_result(event) : NULL;
        if (created != NULL && rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            size_t n = 0;
            const rd_kafka_topic_result_t **each = rd_kafka_CreateTopics_result_topics(created, &n);
            result = 0;
            for (size_t i = 0; i < n; i++) {
                rd_kafka_resp_err_t error = rd_kafka_topic_result_error(each[i]);
                if (is_topic_created(error)) {
                    wait_for_leader(client, rd_kafka_topic_result_name(each[i]), timeout_ms,
                                    false);
                    topic_remember(rd_kafka_topic_result_name(each[i]));
                    continue;
                }
                const char *why = rd_kafka_topic_result_error_string(each[i]);
                logline(LOGLINE_WARN, "log_kafka", "could not create a topic", "topic",
                        rd_kafka_topic_result_name(each[i]), "error",
                        why ? why : rd_kafka_err2str(error), NULL);
                result = CATRACA_E_UNAVAILABLE;
            }
        } else {
            logline(LOGLINE_WARN, "log_kafka", "topic creation failed", "error",
                    event != NULL ? rd_kafka_event_error_string(event) : "timed out", NULL);
        }
        if (event != NULL)
            rd_kafka_event_destroy(event);
    }
    if (queue != NULL)
        rd_kafka_queue_destroy(queue);
    if (admin != NULL)
        rd_kafka_AdminOptions_destroy(admin);
    return result;
}

int log_kafka_ensure_topics(rd_kafka_t *client, const struct backend_options *options,
                            const char *const *names, size_t count)
{
    rd_kafka_NewTopic_t **wanted = calloc(count > 0 ? count : 1, sizeof(*wanted));
    if (wanted == NULL)
        return CATRACA_E_NOMEM;
    size_t wanted_count = 0;
    char error_text[256], replicas[8], message_bytes[16];
    snprintf(replicas, sizeof(replicas), "%d", options->kafka_min_insync_replicas);
    snprintf(message_bytes, sizeof(message_bytes), "%d", MESSAGE_BYTES_MAX);
    for (size_t i = 0; i < count; i++) {
        bool is_repeat = false;
        for (size_t j = 0; j < i && !is_repeat; j++)
            is_repeat = strcmp(names[i], names[j]) == 0;
        if (is_repeat || topic_is_known(names[i]))
            continue;
        rd_kafka_NewTopic_t *topic = rd_kafka_NewTopic_new(
            names[i], 1, options->kafka_replication_factor, error_text, sizeof(error_text));
        if (topic == NULL)
            break;
        wanted[wanted_count++] = topic;
        if (rd_kafka_NewTopic_set_config(topic, "min.insync.replicas", replicas) != 0 ||
            rd_kafka_NewTopic_set_config(topic, "max.message.bytes", message_bytes) != 0)
            break;
    }
    /* Retried within timeout_ms: right after a broker comes back, the first request on a
     * reconnecting client can fail at once ("timed out in queue"). */
    int64_t deadline = monotonic_ms() + options->timeout_ms;
    int result = 0;
    while (wanted_count > 0) {
        result = create_topics_once(client, wanted, wanted_count, remaining_ms(deadline) + 1);
        if (result == 0 || remaining_ms(deadline) < CREATE_RETRY_PAUSE_MS)
            break;
        struct timespec pause = {0, CREATE_RETRY_PAUSE_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    rd_kafka_NewTopic_destroy_array(wanted, wanted_count);
    free(wanted);
    return result;
}

/* ---- the handle ---------------------------------------------------------------------------- */

struct delivery {
    int64_t offset;
    rd_kafka_resp_err_t error;
    bool is_done;
    int64_t floor; /* the topic's appended_high before the call: the item's offset is >= it */
};

struct assigned {
    char event[CATRACA_ID_MAX + 1];
    char topic[LOG_KAFKA_TOPIC_MAX];
    rd_kafka_topic_t *handle;
    rd_kafka_queue_t *queue; /* the partition's own queue, fetched into from next_offset */
    int64_t next_offset;     /* the offset the queue delivers next */
    uint64_t last_used;
    int64_t heard_at_ms;     /* the leader's last sign of life: entries fetched, or a query */
};

struct log_kafka {
    struct backend_options options; /* strings point at the copies below */
    char bootstrap[LOG_KAFKA_BOOTSTRAP_MAX];
    char prefix[LOG_KAFKA_PREFIX_MAX + 1];
    size_t read_max;
    rd_kafka_t *producer; /* NULL: made on the next append */
    rd_kafka_t *consumer; /* NULL: made on the next read */
    rd_kafka_t *querier;  /* NULL: made on the next watermark query (log_kafka_query_watermarks) */
    /* append(): one delivery per item, grown to the largest call */
    struct delivery *deliveries;
    size_t deliveries_capacity;
    uint64_t generation; /* of the current append: late reports of older calls are ignored */
    size_t pending;      /* deliveries of this call not reported yet */
    char (*item_topics)[LOG_KAFKA_TOPIC_MAX];
    /* read() */
    struct assigned *assigned;
    size_t assigned_count;
    uint64_t read_clock;
    uint8_t *records; /* read_max * CATRACA_COMMAND_ENCODED_MAX */
    rd_kafka_message_t **messages;
    /* of the last read's entries: headers "p" and "k" (0 when absent), for doubtful_scan */
    uint64_t *entry_purchases;
    uint64_t (*entry_keys)[2];
    struct log_entry *scan_entries;
};

/* A delivery report (on the appending thread, inside rd_kafka_poll). */
static void on_delivery(rd_kafka_t *client, const rd_kafka_message_t *message, void *opaque)
{
    (void)client;
    struct log_kafka *log = opaque;
    uintptr_t tag = (uintptr_t)message->_private;
    if (log == NULL || tag == 0)
        return; /* fire-and-forget (sys.appended) */
    uint64_t generation = (uint64_t)tag >> INDEX_BITS;
    size_t index = (size_t)(tag & ((1u << INDEX_BITS) - 1)) - 1;
    if (generation != (log->generation & (UINTPTR_MAX >> INDEX_BITS)) ||
        index >= log->deliveries_capacity || log->deliveries[index].is_done)
        return;
    /* Produced unassigned (RD_KAFKA_PARTITION_UA): a topic just made may show no partition
     * yet on some broker, and an unassigned message waits for one where a message for
     * partition 0 would fail at once. One partition is the mapping: a topic made by hand
     * with more is refused here, not silently spread. */
    rd_kafka_resp_err_t error = message->err;
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR && message->partition != 0) {
        logline(LOGLINE_ERROR, "log_kafka", "an event topic has more than one partition",
                "topic", rd_kafka_topic_name(message->rkt), NULL);
        error = RD_KAFKA_RESP_ERR__INVALID_ARG;
    }
    log->deliveries[index] =
        (struct delivery){message->offset, error, true, log->deliveries[index].floor};
    log->pending--;
}


static int items_check(const struct log_append_item *items, size_t count)
{
    if (count > LOG_KAFKA_APPEND_ITEMS_MAX)
        return CATRACA_E_INVALID;
    return log_items_check(items, count); /* log.h: what every adapter refuses */
}

static int grow_append(struct log_kafka *log, size_t count)
{
    if (count <= log->deliveries_capacity)
        return 0;
    struct delivery *deliveries = realloc(log->deliveries, count * sizeof(*deliveries));
    if (deliveries == NULL)
        return CATRACA_E_NOMEM;
    log->deliveries = deliveries;
    char(*item_topics)[LOG_KAFKA_TOPIC_MAX] = realloc(log->item_topics, count * sizeof(*item_topics));
    if (item_topics == NULL)
        return CATRACA_E_NOMEM;
    log->item_topics = item_topics;
    log->deliveries_capacity = count;
    return 0;
}

static void be64(uint64_t value, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--, value >>= 8)
        out[i] = (uint8_t)value;
}

static uint64_t from_be64(const uint8_t in[8])
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | in[i];
    return value;
}

/*
 * Before producing: items whose key or purchase id this process already
 * appended are answered from the tables; a key or purchase id repeated
 * within the call makes the later item a duplicate of the earlier one
 * (resolved after delivery: deliveries[i].offset = -2 - earlier index).
 */
static void answer_known(struct log_kafka *log, struct log_append_item *items, size_t count)
{
    pthread_mutex_lock(&tables_mutex);
    bool is_ready = tables_ready();
    for (size_t i = 0; i < count; i++) {
        struct log_append_item *item = &items[i];
        log->deliveries[i] = (struct delivery){-1, RD_KAFKA_RESP_ERR_NO_ERROR, false,
                                               log_kafka_appended_high_locked(log->item_topics[i])};
        item->result = LOG_APPENDED;
        item->existing_purchase_id = item->purchase_id;
        if (!is_ready)
            continue;
        if (item->idempotency_key != NULL) {
            uint64_t fingerprint[2];
            key_fingerprint(item->idempotency_scope, item->idempotency_key, fingerprint);
            struct known_key *known = key_find(fingerprint);
            if (known != NULL) {
                item->result = known->request_hash == item->request_hash
                                   ? LOG_DUPLICATE
                                   : LOG_DUPLICATE_MISMATCH;
                item->seq = (struct log_seq){known->seq_major, 0};
                item->existing_purchase_id = known->purchase_id;
                log->deliveries[i].is_done = true;
                continue;
            }
        }
        if (item->purchase_id != 0) {
            struct known_purchase *known = purchase_find(item->purchase_id);
            if (known != NULL) {
                item->result = LOG_DUPLICATE;
                item->seq = (struct log_seq){known->seq_major, 0};
                log->deliveries[i].is_done = true;
                continue;
            }
        }
        for (size_t j = 0; j < i; j++) { /* the same key or purchase earlier in this call */
            const struct log_append_item *earlier = &items[j];
            if (earlier->result != LOG_APPENDED)
                continue;
            bool is_same_key = item->idempotency_key != NULL && earlier->idempotency_key != NULL &&
                               strcmp(item->idempotency_key, earlier->idempotency_key) == 0 &&
                               strcmp(item->idempotency_scope ? item->idempotency_scope : "",
                                      earlier->idempotency_scope ? earlier->idempotency_scope
                                                                 : "") == 0;
            bool is_same_purchase = item->purchase_id != 0 &&
                                    earlier->purchase_id == item->purchase_id;
            if (!is_same_key && !is_same_purchase)
                continue;
            item->result = is_same_key && earlier->request_hash != item->request_hash
                               ? LOG_DUPLICATE_MISMATCH
                               : LOG_DUPLICATE;
            item->existing_purchase_id = earlier->purchase_id;
            log->deliveries[i] = (struct delivery){-2 - (int64_t)j, 0, true, 0};
            break;
        }
    }
    pthread_mutex_unlock(&tables_mutex);
}

static bool is_delivered(const struct delivery *d)
{
    return d->is_done && d->error == RD_KAFKA_RESP_ERR_NO_ERROR && d->offset >= 0;
}

/* With tables_mutex held: the item of a failed call may be in the log after all. */
static void doubtful_add(const struct log_append_item *item, int64_t floor)
{
    if (item->purchase_id == 0 && item->idempotency_key == NULL)
        return; /* nothing a retry could be recognised by */
    struct doubtful *d = &doubtfuls[doubtful_next++ % LOG_KAFKA_DOUBTFUL_MAX];
    *d = (struct doubtful){.purchase_id = item->purchase_id,
                           .request_hash = item->request_hash,
                           .floor = floor};
    if (item->idempotency_key != NULL)
        key_fingerprint(item->idempotency_scope, item->idempotency_key, d->fingerprint);
    snprintf(d->event, sizeof(d->event), "%s", item->event);
}

/*
 * After the reports: seqs, the in-call duplicates, and the tables, for the
 * delivered items; the others (of a failed call) become doubtful.
 */
static void record_delivered(struct log_kafka *log, struct log_append_item *items, size_t count)
{
    pthread_mutex_lock(&tables_mutex);
    bool is_ready = tables_ready();
    for (size_t i = 0; i < count; i++) {
        struct log_append_item *item = &items[i];
        const struct delivery *d = &log->deliveries[i];
        if (item->result != LOG_APPENDED) {
            if (d->offset <= -2)
                item->seq = items[(size_t)(-2 - d->offset)].seq;
            continue;
        }
        if (!is_delivered(d)) {
            doubtful_add(item, d->floor);
            continue;
        }
        item->seq = (struct log_seq){(uint64_t)d->offset + 1, 0};
        if (!is_ready)
            continue;
        struct known_topic *topic = topic_remember_locked(log->item_topics[i]);
        if (topic != NULL && d->offset + 1 > topic->appended_high)
            topic->appended_high = d->offset + 1;
        if (item->idempotency_key != NULL) {
            uint64_t fingerprint[2];
            key_fingerprint(item->idempotency_scope, item->idempotency_key, fingerprint);
            struct known_key *slot = key_slot(fingerprint);
            *slot = (struct known_key){{fingerprint[0], fingerprint[1]}, item->request_hash,
                                       item->purchase_id, item->seq.major, ++tables_clock};
        }
        if (item->purchase_id != 0) {
            struct known_purchase *slot = purchase_slot(item->purchase_id);
            *slot = (struct known_purchase){item->purchase_id, item->seq.major, ++tables_clock, ""};
            snprintf(slot->event, sizeof(slot->event), "%s", item->event);
        }
    }
    pthread_mutex_unlock(&tables_mutex);
}

static int kafka_read(void *context, const char *event, struct log_seq after,
                      struct log_entry *entries, size_t max, size_t *count);

/* With tables_mutex held: the doubtful entry item is a retry of, or NULL. */
static struct doubtful *doubtful_find(const struct log_append_item *item)
{
    uint64_t fingerprint[2] = {0, 0};
    if (item->idempotency_key != NULL)
        key_fingerprint(item->idempotency_scope, item->idempotency_key, fingerprint);
    for (size_t i = 0; i < LOG_KAFKA_DOUBTFUL_MAX; i++) {
        struct doubtful *d = &doubtfuls[i];
        if (d->event[0] == '\0')
            continue;
        if ((fingerprint[1] != 0 && d->fingerprint[0] == fingerprint[0] &&
             d->fingerprint[1] == fingerprint[1]) ||
            (item->purchase_id != 0 && d->purchase_id == item->purchase_id))
            return d;
    }
    return NULL;
}

/*
 * Looks for a doubtful item in its topic, from its floor to the end: 0 with
 * *seq its place ({0,0}: not there), or an error (the brokers are down).
 */
static int doubtful_scan(struct log_kafka *log, const struct doubtful *d, struct log_seq *seq)
{
    struct log_entry *entries = log->scan_entries;
    struct log_seq after = {(uint64_t)d->floor, 0};
    *seq = (struct log_seq){0, 0};
    for (size_t scanned = 0; scanned < LOG_KAFKA_SCAN_MAX;) {
        size_t count = 0;
        int error = kafka_read(log, d->event, after, entries, log->read_max, &count);
        if (error != 0 || count == 0)
            return error;
        for (size_t i = 0; i < count; i++) {
            bool is_same_key = d->fingerprint[1] != 0 &&
                               log->entry_keys[i][0] == d->fingerprint[0] &&
                               log->entry_keys[i][1] == d->fingerprint[1];
            if (is_same_key || (d->purchase_id != 0 && log->entry_purchases[i] == d->purchase_id)) {
                *seq = entries[i].seq;
                return 0;
            }
        }
        after = entries[count - 1].seq;
        scanned += count;
    }
    return 0;
}

/*
 * Items that retry a doubtful one: found in the log, they are duplicates of
 * it (and the tables learn it); not found, they are appended (the doubt is
 * dropped: a new failure makes a new one). 0, or UNAVAILABLE.
 */
static int resolve_doubtful(struct log_kafka *log, struct log_append_item *items, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct log_append_item *item = &items[i];
        if (item->result != LOG_APPENDED)
            continue;
        pthread_mutex_lock(&tables_mutex);
        struct doubtful *found = doubtful_find(item);
        struct doubtful doubt = found != NULL ? *found : (struct doubtful){0};
        pthread_mutex_unlock(&tables_mutex);
        if (found == NULL)
            continue;
        struct log_seq seq;
        int error = doubtful_scan(log, &doubt, &seq);
        if (error != 0)
            return error;
        pthread_mutex_lock(&tables_mutex);
        if (memcmp(found, &doubt, sizeof(doubt)) == 0)
            found->event[0] = '\0';
        if (seq.major != 0 && tables_ready()) {
            if (doubt.fingerprint[1] != 0) {
                struct known_key *slot = key_slot(doubt.fingerprint);
                *slot = (struct known_key){{doubt.fingerprint[0], doubt.fingerprint[1]},
                                           doubt.request_hash, doubt.purchase_id, seq.major,
                                           ++tables_clock};
            }
            if (doubt.purchase_id != 0) {
                struct known_purchase *slot = purchase_slot(doubt.purchase_id);
                *slot = (struct known_purchase){doubt.purchase_id, seq.major, ++tables_clock, ""};
                snprintf(slot->event, sizeof(slot->event), "%s", doubt.event);
            }
        }
        pthread_mutex_unlock(&tables_mutex);
        if (seq.major == 0)
            continue;
        bool is_same_key = doubt.fingerprint[1] != 0 && item->idempotency_key != NULL;
        item->result = is_same_key && doubt.request_hash != item->request_hash
                           ? LOG_DUPLICATE_MISMATCH
                           : LOG_DUPLICATE;
        item->seq = seq;
        item->existing_purchase_id = doubt.purchase_id;
        log->deliveries[i].is_done = true;
    }
    return 0;
}

static void producer_drop(struct log_kafka *log)
{
    if (log->producer == NULL)
        return;
    /* not waiting for the broker threads' purges (rd_kafka_purge would, without a bound):
     * the drain serves what they report in time, the destroy drops the rest */
    rd_kafka_purge(log->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                      RD_KAFKA_PURGE_F_NON_BLOCKING);
    rd_kafka_flush(log->producer, DRAIN_AFTER_PURGE_MS);
    log_kafka_teardown(log->producer, NULL, false, log->options.timeout_ms,
                       "destroying a log handle's producer");
    log->producer = NULL;
}

/* A producer whose purge outlived its bound (teardown_bounded's then_of): destroyed after it,
 * and the handle makes a new one on its next append. */
static struct teardown *producer_give_up(void *context)
{
    struct log_kafka *log = context;
    struct teardown *t = teardown_new(0, "destroying a log handle's stuck producer");
    if (t != NULL)
        t->client = log->producer;
    else
        logline(LOGLINE_ERROR, "log_kafka", "no memory to destroy a producer: left as it is",
                NULL);
    log->producer = NULL;
    return t;
}

static int producer_ready(struct log_kafka *log)
{
    if (log->producer == NULL)
        log->producer = log_kafka_client_new(&log->options, true, on_delivery, log);
    return log->producer != NULL ? 0 : CATRACA_E_UNAVAILABLE;
}

/* Produces one item; waits (bounded) while the producer's queue is full. */
static int produce_item(struct log_kafka *log, const struct log_append_item *item, size_t index,
                        int64_t deadline)
{
    uint8_t time_bytes[8], purchase_bytes[8], key_bytes[16];
    be64((uint64_t)item->time_ms, time_bytes);
    be64(item->purchase_id, purchase_bytes);
    ssize_t purchase_size = item->purchase_id != 0 ? 8 : 0, key_size = 0; /* 0: header empty */
    if (item->idempotency_key != NULL) {
        uint64_t fingerprint[2];
        key_fingerprint(item->idempotency_scope, item->idempotency_key, fingerprint);
        key_size = 16;
        be64(fingerprint[0], key_bytes);
        be64(fingerprint[1], key_bytes + 8);
    }
    uintptr_t tag = ((uintptr_t)(log->generation & (UINTPTR_MAX >> INDEX_BITS)) << INDEX_BITS) |
                    (uintptr_t)(index + 1);
    for (;;) {
        rd_kafka_resp_err_t error = rd_kafka_producev(
            log->producer, RD_KAFKA_V_TOPIC(log->item_topics[index]), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE((void *)item->record, item->record_length),
            RD_KAFKA_V_HEADER("t", time_bytes, 8),
            RD_KAFKA_V_HEADER("p", purchase_bytes, purchase_size),
            RD_KAFKA_V_HEADER("k", key_bytes, key_size),
            RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_END);
        if (error == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (error != RD_KAFKA_RESP_ERR__QUEUE_FULL || remaining_ms(deadline) == 0) {
            logline(LOGLINE_WARN, "log_kafka", "could not produce", "error",
                    rd_kafka_err2str(error), NULL);
            return CATRACA_E_UNAVAILABLE;
        }
        rd_kafka_poll(log->producer, POLL_SLICE_MS);
    }
}

/*
 * Tells workers which events got entries (bus.h's wait_appended): at most
 * once, not awaited. A message is the event id, a NUL, and the event's new
 * end (its last offset + 1, 8 bytes big-endian): bus_kafka.c notes that end
 * for this process's reads (log_kafka_note_end), so a worker woken by it
 * waits for the fetch instead of finding its cached watermark stale.
 */
static void announce_one(rd_kafka_t *producer, const char *topic, const char *event, uint64_t end)
{
    uint8_t message[CATRACA_ID_MAX + 1 + 8];
    size_t length = strlen(event);
    memcpy(message, event, length);
    message[length++] = '\0';
    be64(end, message + length);
    length += 8;
    rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(message, length),
                      RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
}

/*
 * The process's announcer: one thread and producer that every append of the
 * process hands its events' new ends to. An announcement is a produce
 * request (and a fetch by every worker) of its own, which the broker pays
 * for like an append's: measured on 2026-12-02, half of a gateway's produce
 * requests were announcements (docs/BENCHMARKS.md). The announcer sends the
 * first one after a quiet moment at once and then at most one batch every
 * LOG_KAFKA_ANNOUNCE_SPACING_MS, in which each event appears once, with its
 * latest end: a worker that sleeps learns of new entries at most that much
 * later; a busy one reads without waiting for announcements anyway.
 *
 * It serves the first (bootstrap, prefix) that uses it; a log of another
 * cluster or prefix in the same process (tests only) announces by itself as
 * before. Started on first use, stopped with the last log handle that could
 * use it (log_kafka_open / kafka_close).
 */

struct announcement {
    char event[CATRACA_ID_MAX + 1];
    uint64_t end;
};

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_t thread;
    bool is_started;
    bool is_stopping;    /* a closer is waiting for the thread to end (the only one that does) */
    unsigned generation; /* of the running thread; moved on when a closer gives up on it */
    unsigned users;      /* open log handles */
    int timeout_ms;      /* the running thread's (its last flush) */
    char bootstrap[LOG_KAFKA_BOOTSTRAP_MAX];
    char prefix[LOG_KAFKA_PREFIX_MAX + 1];
    struct announcement pending[ANNOUNCED_MAX];
    size_t pending_count;
} announcer = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* What one announcer thread works with, its own copy: a closer that gave up on it (see
 * announcer_release) lets the next thread start while this one still ends. */
struct announcer_run {
    unsigned generation;
    struct backend_options options;
    char bootstrap[LOG_KAFKA_BOOTSTRAP_MAX];
    char prefix[LOG_KAFKA_PREFIX_MAX + 1];
};

static void *announcer_main(void *argument)
{
    struct announcer_run *run = argument;
    char topic[LOG_KAFKA_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "%ssys.appended", run->prefix);
    rd_kafka_t *producer = NULL;
    struct announcement taken[ANNOUNCED_MAX];
    pthread_mutex_lock(&announcer.mutex);
    for (;;) {
        while (announcer.generation == run->generation && announcer.pending_count == 0 &&
               !announcer.is_stopping)
            pthread_cond_wait(&announcer.wake, &announcer.mutex);
        /* stopping with nothing left to send, or given up on (what is pending is the next
         * thread's) */
        if (announcer.generation != run->generation || announcer.pending_count == 0)
            break;
        size_t count = announcer.pending_count;
        memcpy(taken, announcer.pending, count * sizeof(taken[0]));
        announcer.pending_count = 0;
        pthread_mutex_unlock(&announcer.mutex);
        if (producer == NULL) /* the topic exists: the append that handed these in made it */
            producer = log_kafka_client_new(&run->options, true, NULL, NULL);
        if (producer != NULL) {
            for (size_t i = 0; i < count; i++)
                announce_one(producer, topic, taken[i].event, taken[i].end);
            rd_kafka_poll(producer, 0);
            char fatal[256];
            if (rd_kafka_fatal_error(producer, fatal, sizeof(fatal)) !=
                RD_KAFKA_RESP_ERR_NO_ERROR) { /* an idempotent producer can fail for good */
                logline(LOGLINE_WARN, "log_kafka", "the announcer's producer failed; a new one",
                        "error", fatal, NULL);
                rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                     RD_KAFKA_PURGE_F_NON_BLOCKING);
                rd_kafka_flush(producer, DRAIN_AFTER_PURGE_MS);
                log_kafka_teardown(producer, NULL, false, run->options.timeout_ms,
                                   "destroying the announcer's failed producer");
                producer = NULL;
            }
        }
        /* the spacing: what comes in meanwhile goes out together */
        struct timespec pause = {0, LOG_KAFKA_ANNOUNCE_SPACING_MS * 1000000L};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&announcer.mutex);
    }
    pthread_mutex_unlock(&announcer.mutex);
    if (producer != NULL) {
        /* bounded: announcements still queued go out, or are dropped (they are hints) */
        rd_kafka_flush(producer, run->options.timeout_ms);
        rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT |
                                     RD_KAFKA_PURGE_F_NON_BLOCKING);
        rd_kafka_flush(producer, DRAIN_AFTER_PURGE_MS);
        rd_kafka_destroy(producer); /* bounded by announcer_release's wait */
    }
    free(run);
    return NULL;
}

/* With announcer.mutex held: the event's latest end goes into the next batch. False: the
 * announcer cannot take it (another cluster or prefix, full, or no thread). */
static bool announcer_take_locked(const struct log_kafka *log, const char *event, uint64_t end)
{
    if (announcer.is_stopping) /* the last user is closing */
        return false;
    if (!announcer.is_started) {
        struct announcer_run *run = calloc(1, sizeof(*run));
        if (run == NULL)
            return false;
        run->generation = announcer.generation + 1;
        run->options = log->options;
        snprintf(run->bootstrap, sizeof(run->bootstrap), "%s", log->bootstrap);
        snprintf(run->prefix, sizeof(run->prefix), "%s", log->prefix);
        run->options.kafka_bootstrap = run->bootstrap;
        run->options.kafka_topic_prefix = run->prefix;
        if (pthread_create(&announcer.thread, NULL, announcer_main, run) != 0) {
            free(run);
            return false;
        }
        announcer.generation++;
        announcer.is_started = true;
        announcer.timeout_ms = log->options.timeout_ms;
        snprintf(announcer.bootstrap, sizeof(announcer.bootstrap), "%s", log->bootstrap);
        snprintf(announcer.prefix, sizeof(announcer.prefix), "%s", log->prefix);
    }
    if (strcmp(announcer.bootstrap, log->bootstrap) != 0 ||
        strcmp(announcer.prefix, log->prefix) != 0)
        return false;
    for (size_t i = 0; i < announcer.pending_count; i++) {
        if (strcmp(announcer.pending[i].event, event) == 0) {
            if (end > announcer.pending[i].end)
                announcer.pending[i].end = end;
            return true;
        }
    }
    if (announcer.pending_count == ANNOUNCED_MAX)
        return false;
    struct announcement *a = &announcer.pending[announcer.pending_count++];
    snprintf(a->event, sizeof(a->event), "%s", event);
    a->end = end;
    return true;
}

static void announce_appended(struct log_kafka *log, const struct log_append_item *items,
                              size_t count)
{
    char topic[LOG_KAFKA_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "%ssys.appended", log->prefix);
    const char *announced[ANNOUNCED_MAX];
    size_t announced_count = 0;
    bool is_direct = false;
    pthread_mutex_lock(&announcer.mutex);
    for (size_t i = count; i-- > 0;) { /* from the end: an event's last item has its end */
        if (items[i].result != LOG_APPENDED)
            continue;
        bool is_repeat = false;
        for (size_t j = 0; j < announced_count && !is_repeat; j++)
            is_repeat = strcmp(announced[j], items[i].event) == 0;
        if (is_repeat)
            continue;
        if (announced_count < ANNOUNCED_MAX) /* past it an event may be announced twice */
            announced[announced_count++] = items[i].event;
        /* seq.major is offset + 1: the end */
        if (!announcer_take_locked(log, items[i].event, items[i].seq.major)) {
            announce_one(log->producer, topic, items[i].event, items[i].seq.major);
            is_direct = true;
        }
    }
    pthread_cond_broadcast(&announcer.wake);
    pthread_mutex_unlock(&announcer.mutex);
    if (is_direct)
        rd_kafka_poll(log->producer, 0);
}

static void announcer_use(void)
{
    pthread_mutex_lock(&announcer.mutex);
    announcer.users++;
    pthread_mutex_unlock(&announcer.mutex);
}

/*
 * The last user stops the thread (after it sends what it holds, bounded) and
 * waits for it, bounded too: the thread's last flush (its timeout_ms), the
 * drain after the purge, and LOG_KAFKA_TEARDOWN_MARGIN_MS. A thread that
 * outlives that is given up on (logged): it ends by itself, and the next
 * append starts another. A handle closed while another closer waits does
 * not wait (one join per thread).
 */
static void announcer_release(void)
{
    pthread_mutex_lock(&announcer.mutex);
    bool is_last = --announcer.users == 0 && announcer.is_started && !announcer.is_stopping;
    pthread_t thread = announcer.thread;
    int wait_ms = announcer.timeout_ms + DRAIN_AFTER_PURGE_MS + LOG_KAFKA_TEARDOWN_MARGIN_MS;
    if (is_last) {
        announcer.is_stopping = true;
        pthread_cond_broadcast(&announcer.wake);
    }
    pthread_mutex_unlock(&announcer.mutex);
    if (!is_last)
        return;
    struct timespec deadline = clock_deadline_after_ms(CLOCK_REALTIME, wait_ms);
    int joined = pthread_timedjoin_np(thread, NULL, &deadline);
    if (joined != 0) {
        pthread_detach(thread);
        char wait_text[16];
        snprintf(wait_text, sizeof(wait_text), "%d", wait_ms);
        logline(LOGLINE_ERROR, "log_kafka",
                "the sys.appended announcer did not stop in time; left to end by itself",
                "waited_ms", wait_text, NULL);
    }
    pthread_mutex_lock(&announcer.mutex);
    if (joined != 0)
        announcer.generation++; /* it sends nothing more */
    announcer.is_started = false;
    announcer.is_stopping = false;
    announcer.pending_count = 0;
    pthread_cond_broadcast(&announcer.wake);
    pthread_mutex_unlock(&announcer.mutex);
}

int log_kafka_note_end(const char *prefix, const char *event, int64_t end)
{
    char topic[LOG_KAFKA_TOPIC_MAX];
    int error = log_kafka_event_topic(prefix, event, topic);
    if (error != 0)
        return error;
    pthread_mutex_lock(&tables_mutex);
    struct known_topic *slot = topic_remember_locked(topic);
    if (slot != NULL && end > slot->appended_high)
        slot->appended_high = end;
    pthread_mutex_unlock(&tables_mutex);
    return 0;
}

static int kafka_append(void *context, struct log_append_item *items, size_t count)
{
    struct log_kafka *log = context;
    int error = items_check(items, count);
    if (error == 0)
        error = grow_append(log, count);
    if (error != 0 || count == 0)
        return error;
    for (size_t i = 0; i < count; i++)
        if (log_kafka_event_topic(log->prefix, items[i].event, log->item_topics[i]) != 0)
            return CATRACA_E_INVALID;
    error = producer_ready(log);
    if (error != 0)
        return error;
    log->generation++;
    log->pending = 0;
    answer_known(log, items, count);
    error = resolve_doubtful(log, items, count);
    if (error != 0)
        return error;

    const char *names[65];
    size_t name_count = 0;
    char appended_topic[LOG_KAFKA_TOPIC_MAX];
    snprintf(appended_topic, sizeof(appended_topic), "%ssys.appended", log->prefix);
    names[name_count++] = appended_topic;
    for (size_t i = 0; i < count && error == 0; i++) {
        if (items[i].result != LOG_APPENDED || topic_is_known(log->item_topics[i]))
            continue;
        names[name_count++] = log->item_topics[i];
        if (name_count == 65) {
            error = log_kafka_ensure_topics(log->producer, &log->options, names, name_count);
            name_count = 0;
        }
    }
    if (error == 0 && name_count > 0)
        error = log_kafka_ensure_topics(log->producer, &log->options, names, name_count);
    if (error != 0)
        return error;

    /* message.timeout.ms fails an undelivered message at timeout_ms; the margin lets that
     * report arrive before this call gives up on it */
    int64_t deadline = monotonic_ms() + log->options.timeout_ms + 1000;
    for (size_t i = 0; i < count && error == 0; i++) {
        if (items[i].result != LOG_APPENDED)
            continue;
        error = produce_item(log, &items[i], i, deadline);
        if (error == 0)
            log->pending++;
    }
    /* rd_kafka_flush, not rd_kafka_poll: it sends what is queued at once, ignoring linger.ms
     * (which only batches the items produced just above), and serves the reports as poll
     * does. It also waits for this producer's earlier announcements (fire-and-forget, in
     * flight beside these items). */
    while (log->pending > 0 && remaining_ms(deadline) > 0)
        rd_kafka_flush(log->producer, remaining_ms(deadline) < POLL_SLICE_MS
                                          ? remaining_ms(deadline)
                                          : POLL_SLICE_MS);
    if (log->pending > 0) {
        /* Not reported in time: purge them, so this client sends nothing of the failed call
         * later (a broker may still write a request it had read: they become doubtful). The
         * purge waits for the broker threads, bounded (teardown_bounded): one that outlives
         * it takes the producer with it (producer_give_up), and a new one is made next call. */
        struct teardown *t = teardown_new(0, "purging an append's undelivered messages");
        if (t != NULL) {
            t->purged = log->producer;
            if (teardown_bounded(t, log->options.timeout_ms + LOG_KAFKA_TEARDOWN_MARGIN_MS,
                                 producer_give_up, log) != 0) {
                log->generation++; /* no report of this call is looked for any more */
                record_delivered(log, items, count);
                return CATRACA_E_UNAVAILABLE;
            }
        }
        int64_t drain = monotonic_ms() + DRAIN_AFTER_PURGE_MS;
        while (log->pending > 0 && remaining_ms(drain) > 0)
            rd_kafka_poll(log->producer, POLL_SLICE_MS);
        error = CATRACA_E_UNAVAILABLE;
    }
    for (size_t i = 0; i < count && error == 0; i++) {
        const struct delivery *d = &log->deliveries[i];
        if (items[i].result != LOG_APPENDED)
            continue;
        if (!d->is_done || d->error != RD_KAFKA_RESP_ERR_NO_ERROR || d->offset < 0) {
            logline(LOGLINE_WARN, "log_kafka", "an append was not acknowledged", "topic",
                    log->item_topics[i], "error",
                    d->is_done ? rd_kafka_err2str(d->error) : "no delivery report", NULL);
            error = CATRACA_E_UNAVAILABLE;
        }
    }
    char fatal[256];
    if (rd_kafka_fatal_error(log->producer, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        logline(LOGLINE_ERROR, "log_kafka", "the producer failed for good; making a new one",
                "error", fatal, NULL);
        producer_drop(log);
        return CATRACA_E_UNAVAILABLE;
    }
    record_delivered(log, items, count); /* on failure too: what was delivered is in the log */
    if (error != 0) {
        log->generation++; /* reports still to come belong to no call */
        return error;
    }
    announce_appended(log, items, count);
    return 0;
}

/* ---- reads --------------------------------------------------------------------------------- */

static int consumer_ready(struct log_kafka *log)
{
    if (log->consumer == NULL)
        log->consumer = log_kafka_client_new(&log->options, false, NULL, log);
    return log->consumer != NULL ? 0 : CATRACA_E_UNAVAILABLE;
}

/* ---- bounded watermark queries (log_kafka.h) -------------------------------------------- */

struct watermark_call {
    pthread_mutex_t mutex;
    pthread_cond_t done;
    bool is_done;
    bool is_abandoned; /* the caller gave up: the thread frees the call and its client */
    rd_kafka_t *client;
    char topic[LOG_KAFKA_TOPIC_MAX];
    int timeout_ms;
    int64_t low, high;
    rd_kafka_resp_err_t result;
};

static atomic_int abandoned_queries;

static void watermark_call_free(struct watermark_call *call)
{
    pthread_cond_destroy(&call->done);
    pthread_mutex_destroy(&call->mutex);
    free(call);
}

static void *watermark_call_main(void *argument)
{
    struct watermark_call *call = argument;
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t result = rd_kafka_query_watermark_offsets(call->client, call->topic, 0,
                                                                  &low, &high, call->timeout_ms);
    pthread_mutex_lock(&call->mutex);
    call->low = low;
    call->high = high;
    call->result = result;
    call->is_done = true;
    bool is_abandoned = call->is_abandoned;
    pthread_cond_signal(&call->done);
    pthread_mutex_unlock(&call->mutex);
    /* Not abandoned: the caller owns the call from here on and may have freed it already. */
    if (is_abandoned) {
        rd_kafka_destroy(call->client);
        watermark_call_free(call);
        atomic_fetch_sub(&abandoned_queries, 1);
    }
    return NULL;
}

int log_kafka_query_watermarks(const struct backend_options *options, rd_kafka_t **querier,
                               const char *topic, int timeout_ms, int64_t *low, int64_t *high)
{
    if (atomic_load(&abandoned_queries) >= LOG_KAFKA_ABANDONED_QUERIES_MAX)
        return CATRACA_E_UNAVAILABLE;
    if (*querier == NULL)
        *querier = log_kafka_client_new(options, false, NULL, NULL);
    struct watermark_call *call = *querier != NULL ? calloc(1, sizeof(*call)) : NULL;
    if (call == NULL)
        return CATRACA_E_UNAVAILABLE;
    pthread_mutex_init(&call->mutex, NULL);
    pthread_cond_init(&call->done, NULL);
    call->client = *querier;
    snprintf(call->topic, sizeof(call->topic), "%s", topic);
    call->timeout_ms = timeout_ms;
    pthread_attr_t attributes;
    pthread_t thread;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int started = pthread_create(&thread, &attributes, watermark_call_main, call);
    pthread_attr_destroy(&attributes);
    if (started != 0) {
        watermark_call_free(call);
        return CATRACA_E_UNAVAILABLE;
    }
    /* librdkafka's own time-out plus a margin for its reply to arrive. */
    struct timespec deadline = clock_deadline_after_ms(CLOCK_REALTIME, (int64_t)timeout_ms + 500);
    pthread_mutex_lock(&call->mutex);
    while (!call->is_done &&
           pthread_cond_timedwait(&call->done, &call->mutex, &deadline) == 0)
        ;
    if (!call->is_done) {
        call->is_abandoned = true;
        atomic_fetch_add(&abandoned_queries, 1);
        pthread_mutex_unlock(&call->mutex);
        *querier = NULL; /* the call destroys it when librdkafka lets go */
        logline(LOGLINE_WARN, "log_kafka", "a watermark query outlived its time-out", "topic",
                topic, NULL);
        return CATRACA_E_UNAVAILABLE;
    }
    pthread_mutex_unlock(&call->mutex);
    rd_kafka_resp_err_t result = call->result;
    *low = call->low;
    *high = call->high;
    watermark_call_free(call);
    if (result == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    if (result == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        result == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || result == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
        return CATRACA_E_NOTFOUND;
    return CATRACA_E_UNAVAILABLE;
}

/*
 * The partition's watermarks from its leader (one round trip, bounded):
 * 0; CATRACA_E_NOTFOUND for a topic that does not exist; else UNAVAILABLE.
 */
static int query_watermarks(struct log_kafka *log, const char *topic, int64_t *low, int64_t *high)
{
    int error = consumer_ready(log);
    if (error != 0)
        return error;
    for (int attempt = 0;; attempt++) {
        error = log_kafka_query_watermarks(&log->options, &log->querier, topic,
                                           log->options.timeout_ms, low, high);
        if (error != CATRACA_E_NOTFOUND || attempt == 1)
            return error;
        /* The querier may remember the topic as missing from before it was made (by any
         * process): ask the brokers about it once, then again. */
        wait_for_leader(log->querier != NULL ? log->querier : log->consumer, topic,
                        log->options.timeout_ms, true);
    }
}

/*
 * The consumer and every partition it fetches, as one teardown (the handle
 * keeps none of them: the next read makes a new consumer). Also what a
 * stuck partition stop leaves (teardown_bounded's then_of): these go after
 * it. NULL when there is nothing to tear down, or no memory (then they are
 * left as they are, logged).
 */
static struct teardown *consumer_teardown(void *context)
{
    struct log_kafka *log = context;
    if (log->consumer == NULL && log->assigned_count == 0)
        return NULL;
    struct teardown *t = teardown_new(log->assigned_count, "closing a log handle's consumer");
    if (t == NULL) {
        logline(LOGLINE_ERROR, "log_kafka", "no memory to close a consumer: left as it is", NULL);
    } else {
        for (size_t i = 0; i < log->assigned_count; i++) {
            const struct assigned *a = &log->assigned[i];
            t->parts[i] = (struct teardown_part){a->handle, a->queue, a->queue != NULL, false};
        }
        t->client = log->consumer;
    }
    log->assigned_count = 0;
    log->consumer = NULL;
    return t;
}

/* The wait for a partition's fetch to stop: far beyond what it takes (milliseconds). */
static int stop_wait_ms(const struct log_kafka *log)
{
    return log->options.timeout_ms + LOG_KAFKA_TEARDOWN_MARGIN_MS;
}

/*
 * Fetching of a's partition from offset on, onto a new queue (the old one, with whatever it
 * held from before, goes). A stop that outlives stop_wait_ms gives the consumer up
 * (consumer_teardown): CATRACA_E_UNAVAILABLE, and nothing is assigned any more.
 */
static int start_fetching(struct log_kafka *log, struct assigned *a, int64_t offset)
{
    if (a->queue != NULL) {
        struct teardown *t = teardown_new(1, "stopping a partition's fetch (a seek)");
        if (t == NULL)
            return CATRACA_E_NOMEM;
        t->parts[0] = (struct teardown_part){a->handle, a->queue, true, true};
        a->queue = NULL;
        int error = teardown_bounded(t, stop_wait_ms(log), consumer_teardown, log);
        if (error != 0)
            return error;
    }
    a->queue = rd_kafka_queue_new(log->consumer);
    if (a->queue == NULL || rd_kafka_consume_start_queue(a->handle, 0, offset, a->queue) != 0) {
        logline(LOGLINE_WARN, "log_kafka", "could not start fetching a partition", "topic",
                a->topic, "error", rd_kafka_err2str(rd_kafka_last_error()), NULL);
        return CATRACA_E_UNAVAILABLE;
    }
    a->next_offset = offset;
    a->heard_at_ms = monotonic_ms();
    return 0;
}

/* Stops and forgets a's partition (bounded as start_fetching's stop: 0, or the consumer is
 * given up and CATRACA_E_UNAVAILABLE). */
static int unassign(struct log_kafka *log, struct assigned *a)
{
    struct assigned gone = *a;
    *a = log->assigned[--log->assigned_count];
    if (gone.handle == NULL && gone.queue == NULL)
        return 0;
    struct teardown *t = teardown_new(1, "stopping a partition's fetch");
    if (t == NULL)
        return CATRACA_E_NOMEM;
    t->parts[0] = (struct teardown_part){gone.handle, gone.queue, gone.queue != NULL, false};
    return teardown_bounded(t, stop_wait_ms(log), consumer_teardown, log);
}

static struct assigned *assigned_find(struct log_kafka *log, const char *event)
{
    for (size_t i = 0; i < log->assigned_count; i++)
        if (strcmp(log->assigned[i].event, event) == 0)
            return &log->assigned[i];
    return NULL;
}

/* Starts the partition at offset (the least recently read one goes first when full). */
static int assign(struct log_kafka *log, const char *event, const char *topic, int64_t offset,
                  struct assigned **out)
{
    if (log->assigned_count == LOG_KAFKA_READ_PARTITIONS_MAX) {
        struct assigned *oldest = &log->assigned[0];
        for (size_t i = 1; i < log->assigned_count; i++)
            if (log->assigned[i].last_used < oldest->last_used)
                oldest = &log->assigned[i];
        int error = unassign(log, oldest);
        if (error != 0)
            return error;
    }
    struct assigned *a = &log->assigned[log->assigned_count];
    *a = (struct assigned){0};
    snprintf(a->event, sizeof(a->event), "%s", event);
    snprintf(a->topic, sizeof(a->topic), "%s", topic);
    a->handle = rd_kafka_topic_new(log->consumer, topic, NULL);
    if (a->handle == NULL)
        return CATRACA_E_UNAVAILABLE;
    log->assigned_count++;
    int error = start_fetching(log, a, offset); /* a new partition: nothing to stop */
    if (error != 0) {
        unassign(log, a);
        return error;
    }
    *out = a;
    return 0;
}

/* What take() reads from an entry's headers: the last of each name, as
 * rd_kafka_header_get_last would find it. */
struct entry_headers {
    const uint8_t *time, *purchase, *key; /* NULL: absent */
    size_t time_size, purchase_size, key_size;
};

/*
 * One walk over the message's headers (rd_kafka_header_get_all by index) instead of a
 * rd_kafka_header_get_last look-up by name for each of "t", "p" and "k", which compared every
 * header's name again each time (strcmp): 7 % of reading a topic back. Names of more than one
 * byte are none of these.
 */
static void entry_headers_of(const rd_kafka_message_t *message, struct entry_headers *out)
{
    *out = (struct entry_headers){0};
    rd_kafka_headers_t *headers = NULL;
    if (rd_kafka_message_headers(message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    const char *name;
    const void *value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         i++) {
        if (name[0] == '\0' || name[1] != '\0')
            continue;
        if (name[0] == 't') {
            out->time = value;
            out->time_size = size;
        } else if (name[0] == 'p') {
            out->purchase = value;
            out->purchase_size = size;
        } else if (name[0] == 'k') {
            out->key = value;
            out->key_size = size;
        }
    }
}

/*
 * Takes up to max messages off the queue (waiting up to wait_ms for the
 * first) into entries. Stale messages (before next_offset, left from before a
 * seek) are skipped.
 */
static int take(struct log_kafka *log, struct assigned *a, struct log_entry *entries, size_t max,
                int wait_ms, size_t *count)
{
    ssize_t n = rd_kafka_consume_batch_queue(a->queue, 0, log->messages, max);
    if (n == 0 && wait_ms > 0) {
        rd_kafka_message_t *first = rd_kafka_consume_queue(a->queue, wait_ms);
        if (first != NULL) {
            log->messages[0] = first;
            n = 1 + rd_kafka_consume_batch_queue(a->queue, 0, log->messages + 1, max - 1);
        }
    }
    int error = 0;
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *message = log->messages[i];
        if (error == 0 && message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (message->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
                message->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
                logline(LOGLINE_ERROR, "log_kafka", "entries to read are gone (retention?)",
                        "topic", a->topic, "error", rd_kafka_message_errstr(message), NULL);
                error = CATRACA_E_CORRUPT;
            }
        } else if (error == 0 && message->offset >= a->next_offset) {
            struct entry_headers h;
            entry_headers_of(message, &h);
            bool has_time = h.time != NULL && h.time_size == 8;
            int64_t time_ms = has_time ? (int64_t)from_be64(h.time) : 0;
            if (message->len > CATRACA_COMMAND_ENCODED_MAX || !has_time) {
                error = CATRACA_E_CORRUPT;
            } else {
                /* Packed after the entries already taken (take() may run twice for one
                 * read): only the pages the records fill are touched. */
                const struct log_entry *last = *count > 0 ? &entries[*count - 1] : NULL;
                uint8_t *record = last != NULL ? (uint8_t *)last->record + last->record_length
                                               : log->records;
                if (message->len > 0)
                    memcpy(record, message->payload, message->len);
                entries[*count] = (struct log_entry){{(uint64_t)message->offset + 1, 0}, time_ms,
                                                     record, message->len};
                log->entry_purchases[*count] =
                    h.purchase != NULL && h.purchase_size == 8 ? from_be64(h.purchase) : 0;
                uint64_t *key = log->entry_keys[*count];
                key[0] = key[1] = 0;
                if (h.key != NULL && h.key_size == 16) {
                    key[0] = from_be64(h.key);
                    key[1] = from_be64(h.key + 8);
                }
                (*count)++;
                a->next_offset = message->offset + 1;
            }
        }
        rd_kafka_message_destroy(message);
    }
    return error;
}

static int kafka_read(void *context, const char *event, struct log_seq after,
                      struct log_entry *entries, size_t max, size_t *count)
{
    struct log_kafka *log = context;
    char topic[LOG_KAFKA_TOPIC_MAX];
    *count = 0;
    if (log_kafka_event_topic(log->prefix, event, topic) != 0 || after.major > INT64_MAX)
        return CATRACA_E_INVALID;
    if (max > log->read_max)
        max = log->read_max;
    if (max == 0)
        return 0;
    int64_t start = (int64_t)after.major; /* seq {o + 1, 0} > after exactly when o >= after.major */
    int error = consumer_ready(log);
    if (error != 0)
        return error;
    struct assigned *a = assigned_find(log, event);
    int64_t low = RD_KAFKA_OFFSET_INVALID, high = RD_KAFKA_OFFSET_INVALID;
    if (a == NULL) {
        error = query_watermarks(log, topic, &low, &high);
        if (error == CATRACA_E_NOTFOUND)
            return 0; /* no topic yet: an empty event */
        if (error != 0)
            return error;
        if (start < low)
            return CATRACA_E_CORRUPT; /* retention deleted entries not yet read */
        error = assign(log, event, topic, start, &a);
        if (error != 0)
            return error;
    } else if (a->next_offset != start) {
        error = start_fetching(log, a, start);
        if (error != 0)
            return error;
    }
    a->last_used = ++log->read_clock;
    error = take(log, a, entries, max, 0, count);
    if (*count > 0)
        a->heard_at_ms = monotonic_ms();
    if (error != 0 || *count > 0)
        return error;
    if (high == RD_KAFKA_OFFSET_INVALID &&
        monotonic_ms() - a->heard_at_ms >= LOG_KAFKA_READ_LIVENESS_MS) {
        /* Quiet for a while: is the leader still there? (LOG_KAFKA_READ_LIVENESS_MS) */
        error = query_watermarks(log, topic, &low, &high);
        if (error != 0 && error != CATRACA_E_NOTFOUND)
            return CATRACA_E_UNAVAILABLE;
        a->heard_at_ms = monotonic_ms();
    }
    /* Nothing queued. Caught up (by what the fetches and this process's appends say)? */
    int64_t cached_low = 0, cached_high = RD_KAFKA_OFFSET_INVALID;
    rd_kafka_get_watermark_offsets(log->consumer, topic, 0, &cached_low, &cached_high);
    int64_t appended_high = log_kafka_appended_high(topic);
    if (cached_high < high)
        cached_high = high;
    if (cached_high < appended_high)
        cached_high = appended_high;
    if (cached_high <= start)
        return 0;
    /* Entries are there: wait (bounded) for the fetch to bring them. */
    error = take(log, a, entries, max, log->options.timeout_ms, count);
    if (*count > 0)
        a->heard_at_ms = monotonic_ms();
    if (error == 0 && *count == 0)
        error = CATRACA_E_UNAVAILABLE;
    return error;
}

static int kafka_find_purchase(void *context, uint64_t purchase_id,
                               char event[CATRACA_ID_MAX + 1], struct log_seq *seq)
{
    (void)context;
    int error = CATRACA_E_NOTFOUND;
    pthread_mutex_lock(&tables_mutex);
    struct known_purchase *known =
        purchase_id != 0 && tables_ready() ? purchase_find(purchase_id) : NULL;
    if (known != NULL) {
        snprintf(event, CATRACA_ID_MAX + 1, "%s", known->event);
        *seq = (struct log_seq){known->seq_major, 0};
        error = 0;
    }
    pthread_mutex_unlock(&tables_mutex);
    return error;
}

/* The end of the event's log: 0 when it has no topic. */
static int high_watermark(struct log_kafka *log, const char *event, int64_t *high)
{
    char topic[LOG_KAFKA_TOPIC_MAX];
    int64_t low = 0;
    *high = 0;
    if (log_kafka_event_topic(log->prefix, event, topic) != 0)
        return CATRACA_E_INVALID;
    int error = query_watermarks(log, topic, &low, high);
    if (error == CATRACA_E_NOTFOUND) {
        *high = 0;
        return 0;
    }
    return error;
}

static int kafka_count_after(void *context, const char *event, struct log_seq after,
                             uint64_t *count)
{
    int64_t high = 0;
    int error = high_watermark(context, event, &high);
    if (error == 0)
        *count = (uint64_t)high > after.major ? (uint64_t)high - after.major : 0;
    return error;
}

static int kafka_last_seq(void *context, const char *event, struct log_seq *seq)
{
    int64_t high = 0;
    int error = high_watermark(context, event, &high);
    if (error == 0)
        *seq = (struct log_seq){(uint64_t)high, 0}; /* offset high - 1 is seq high; {0,0} empty */
    return error;
}

/* Keeps the max smallest ids, sorted (log_sqlite.c lists partitions in id order). */
static void keep_smallest(char (*events)[CATRACA_ID_MAX + 1], size_t max, size_t *count,
                          const char *event)
{
    size_t at = *count;
    while (at > 0 && strcmp(events[at - 1], event) > 0)
        at--;
    if (at >= max)
        return;
    size_t moved = *count < max ? *count - at : max - 1 - at;
    memmove(events[at + 1], events[at], moved * sizeof(events[0]));
    snprintf(events[at], CATRACA_ID_MAX + 1, "%s", event);
    if (*count < max)
        (*count)++;
}

static int kafka_list_partitions(void *context, char (*events)[CATRACA_ID_MAX + 1], size_t max,
                                 size_t *count)
{
    struct log_kafka *log = context;
    *count = 0;
    int error = consumer_ready(log);
    if (error != 0)
        return error;
    const struct rd_kafka_metadata *metadata = NULL;
    if (rd_kafka_metadata(log->consumer, 1, NULL, &metadata, log->options.timeout_ms) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return CATRACA_E_UNAVAILABLE;
    char event[CATRACA_ID_MAX + 1];
    for (int i = 0; i < metadata->topic_cnt && error == 0; i++) {
        const struct rd_kafka_metadata_topic *topic = &metadata->topics[i];
        if (topic->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
            log_kafka_topic_event(log->prefix, topic->topic, event) != 0)
            continue;
        /* Only events with entries: a topic made by an append that then failed has none.
         * Asked of the leader once per topic, until it has some. */
        pthread_mutex_lock(&tables_mutex);
        struct known_topic *known = topic_remember_locked(topic->topic);
        bool has_entries = known != NULL && (known->has_entries || known->appended_high > 0);
        pthread_mutex_unlock(&tables_mutex);
        if (!has_entries) {
            int64_t low = 0, high = 0;
            error = query_watermarks(log, topic->topic, &low, &high);
            if (error == CATRACA_E_NOTFOUND)
                error = 0;
            has_entries = error == 0 && high > 0;
            if (has_entries) {
                pthread_mutex_lock(&tables_mutex);
                known = topic_remember_locked(topic->topic);
                if (known != NULL)
                    known->has_entries = true;
                pthread_mutex_unlock(&tables_mutex);
            }
        }
        if (has_entries)
            keep_smallest(events, max, count, event);
    }
    rd_kafka_metadata_destroy(metadata);
    if (error != 0)
        *count = 0;
    return error;
}

static void kafka_close(void *context)
{
    struct log_kafka *log = context;
    if (log == NULL)
        return;
    announcer_release();
    producer_drop(log);
    struct teardown *consumer = consumer_teardown(log);
    if (consumer != NULL)
        teardown_bounded(consumer, stop_wait_ms(log), NULL, NULL);
    if (log->querier != NULL)
        log_kafka_teardown(log->querier, NULL, false, log->options.timeout_ms,
                           "destroying a log handle's watermark client");
    free(log->deliveries);
    free(log->item_topics);
    free(log->assigned);
    free(log->records);
    free(log->messages);
    free(log->entry_purchases);
    free(log->entry_keys);
    free(log->scan_entries);
    free(log);
}

static const struct log_ops kafka_ops = {
    .flags = LOG_FLAG_KEYS_IN_PURCHASE_IDS, /* log.h: keys are checked in this process only */
    .append = kafka_append,
    .read = kafka_read,
    .find_purchase = kafka_find_purchase,
    .count_after = kafka_count_after,
    .last_seq = kafka_last_seq,
    .list_partitions = kafka_list_partitions,
    .close = kafka_close,
};

int log_kafka_open(const struct backend_options *options, size_t read_max, bool is_appender,
                   struct catraca_log *out)
{
    (void)is_appender;
    if (out == NULL || read_max == 0 || read_max > LOG_KAFKA_APPEND_ITEMS_MAX ||
        log_kafka_options_check(options) != 0)
        return CATRACA_E_INVALID;
    struct log_kafka *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return CATRACA_E_NOMEM;
    announcer_use(); /* kafka_close releases it */
    log->options = *options;
    snprintf(log->bootstrap, sizeof(log->bootstrap), "%s", options->kafka_bootstrap);
    snprintf(log->prefix, sizeof(log->prefix), "%s", options->kafka_topic_prefix);
    log->options.kafka_bootstrap = log->bootstrap;
    log->options.kafka_topic_prefix = log->prefix;
    log->options.redis_url = NULL;
    log->read_max = read_max;
    log->records = malloc(read_max * CATRACA_COMMAND_ENCODED_MAX);
    log->messages = calloc(read_max, sizeof(*log->messages));
    log->assigned = calloc(LOG_KAFKA_READ_PARTITIONS_MAX, sizeof(*log->assigned));
    log->entry_purchases = calloc(read_max, sizeof(*log->entry_purchases));
    log->entry_keys = calloc(read_max, sizeof(*log->entry_keys));
    log->scan_entries = calloc(read_max, sizeof(*log->scan_entries));
    if (log->records == NULL || log->messages == NULL || log->assigned == NULL ||
        log->entry_purchases == NULL || log->entry_keys == NULL || log->scan_entries == NULL) {
        kafka_close(log);
        return CATRACA_E_NOMEM;
    }
    *out = (struct catraca_log){&kafka_ops, log};
    return 0;
}
