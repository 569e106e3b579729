/*
 * rush_options.c - one table of options: name, kind, bounds, default, help.
 * Every number is checked against its bounds here, so the rest of rush can
 * size its arrays from the options without further checks.
 */
#include "rush/rush_options.h"

#include "gateway/jwt_secret.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum option_kind { KIND_FLAG, KIND_UINT, KIND_FRACTION, KIND_RATE, KIND_TEXT, KIND_DELAY };

struct option_spec {
    const char *name;
    enum option_kind kind;
    size_t offset; /* of the field in struct rush_options */
    size_t size;   /* KIND_TEXT: the field's size */
    uint64_t min, max;
    const char *help;
};

#define FIELD(name) offsetof(struct rush_options, name)

static const struct option_spec specs[] = {
    {"--url", KIND_TEXT, FIELD(url), 256, 0, 0, "the server, http://host:port (required)"},
    {"--demo", KIND_FLAG, FIELD(is_demo), 0, 0, 0,
     "take tokens from POST /v1/demo/token (one extra request a buyer)"},
    {"--jwt-secret", KIND_TEXT, FIELD(jwt_secret), RUSH_SECRET_MAX + 1, 0, 0,
     "mint HS256 tokens locally with the server's secret (the fast path; visible in ps)"},
    {"--jwt-secret-file", KIND_TEXT, FIELD(jwt_secret_file), 512, 0, 0,
     "the same, the secret read from FILE (one trailing newline ignored)"},
    {"--buyers", KIND_UINT, FIELD(buyers), 0, 1, RUSH_BUYERS_MAX,
     "buyers, customers b0..b<N-1>, each buying 1 ticket (default 1000)"},
    {"--tickets", KIND_UINT, FIELD(tickets), 0, 1, CATRACA_CAPACITY_MAX,
     "tickets of the event, split over the categories (default 100)"},
    {"--categories", KIND_UINT, FIELD(categories), 0, 1, CATRACA_CATEGORIES_MAX,
     "categories; buyer N asks for category N mod this (default 2)"},
    {"--connections", KIND_UINT, FIELD(connections), 0, 1, RUSH_CONNECTIONS_MAX,
     "keep-alive connections = requests in flight at most (default 512)"},
    {"--rate", KIND_RATE, FIELD(rate_per_s), 0, 0, 10000000,
     "purchases per second, on a fixed schedule; 0 = an opening bell (default 0)"},
    {"--confirm", KIND_FRACTION, FIELD(confirm_fraction), 0, 0, 0,
     "fraction of holds paid for, as the payments role (default 0.6)"},
    {"--cancel", KIND_FRACTION, FIELD(cancel_fraction), 0, 0, 0,
     "fraction of holds released by their buyer; the rest expire (default 0.1)"},
    {"--pay-delay-ms", KIND_DELAY, FIELD(pay_delay_ms_min), 0, 0, 3600000,
     "MIN-MAX: time from seeing a hold to paying or cancelling (default 500-3000)"},
    {"--hold-seconds", KIND_UINT, FIELD(hold_seconds), 0, CATRACA_HOLD_MS_MIN / 1000,
     CATRACA_HOLD_MS_MAX / 1000, "the event's hold_seconds (default 10)"},
    {"--limit", KIND_UINT, FIELD(per_customer_limit), 0, 1, CATRACA_QUANTITY_MAX,
     "the event's per_customer_limit (default 4)"},
    {"--line-policy", KIND_TEXT, FIELD(line_policy), 16, 0, 0,
     "the event's line_policy, unbounded or bounded (default: the server's)"},
    {"--max-seconds", KIND_UINT, FIELD(max_seconds), 0, 1, 86400,
     "stop following purchases after this long (default 300)"},
    {"--event", KIND_TEXT, FIELD(event), CATRACA_ID_MAX + 1, 0, 0,
     "event id to create (default rush-<seed>)"},
    {"--seed", KIND_UINT, FIELD(seed), 0, 0, UINT32_MAX,
     "seed of every random choice (default: from the clock, printed)"},
    {"--json", KIND_TEXT, FIELD(json_path), 512, 0, 0, "also write the report as JSON to FILE"},
    {"--healthz-only", KIND_FLAG, FIELD(is_healthz_only), 0, 0, 0,
     "only hammer GET /healthz on every connection and report req/s"},
    {"--seconds", KIND_UINT, FIELD(healthz_seconds), 0, 1, 3600,
     "--healthz-only: how long (default 5)"},
};

#define SPEC_COUNT (sizeof(specs) / sizeof(specs[0]))

static void set_defaults(struct rush_options *o)
{
    memset(o, 0, sizeof(*o));
    o->buyers = 1000;
    o->tickets = 100;
    o->categories = 2;
    o->connections = 512;
    o->confirm_fraction = 0.6;
    o->cancel_fraction = 0.1;
    o->pay_delay_ms_min = 500;
    o->pay_delay_ms_max = 3000;
    o->hold_seconds = 10;
    o->per_customer_limit = 4;
    o->max_seconds = 300;
    o->healthz_seconds = 5;
    o->seed = ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16)) % 1000000000u;
}

void rush_options_print_help(FILE *out)
{
    fprintf(out, "usage: catraca rush --url http://HOST:PORT (--demo | --jwt-secret-file F) "
                 "[options]\n"
                 "       catraca rush --url http://HOST:PORT --healthz-only [--seconds N]\n\n"
                 "Rehearses an on-sale: creates an event, sends every buyer's purchase, follows\n"
                 "each to its final status (paying, cancelling or letting holds expire), then\n"
                 "reports times, latencies and outcomes and checks the answers: no oversell,\n"
                 "arrival order kept, every purchase decided. Exit 0: every check passed;\n"
                 "1: a check failed; 2: usage error; 3: the rehearsal could not run.\n\n"
                 "Accept latency runs to the 202 from each purchase's scheduled send at --rate\n"
                 "(so time rush spends behind its schedule counts: no coordinated omission;\n"
                 "\"send lag\" says how far behind it was), or from its first send in an opening\n"
                 "bell. Decision latency runs from the 202 to the first status not queued.\n\n");
    for (size_t i = 0; i < SPEC_COUNT; i++) {
        const char *value = specs[i].kind == KIND_FLAG ? "" : " V";
        fprintf(out, "  %s%-*s %s\n", specs[i].name, (int)(16 - strlen(specs[i].name)), value,
                specs[i].help);
    }
}

static int fail(const char *name, const char *value, const char *why)
{
    fprintf(stderr, "catraca rush: %s %s: %s (see catraca rush --help)\n", name, value, why);
    return -1;
}

static int parse_uint(const struct option_spec *spec, const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (text[0] == '-' || end == text || *end != '\0' || errno != 0)
        return fail(spec->name, text, "not a whole number");
    if (value < spec->min || value > spec->max) {
        char bounds[64];
        snprintf(bounds, sizeof(bounds), "must be in %llu..%llu", (unsigned long long)spec->min,
                 (unsigned long long)spec->max);
        return fail(spec->name, text, bounds);
    }
    *out = value;
    return 0;
}

static int parse_double(const struct option_spec *spec, const char *text, double max, double *out)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(value >= 0.0 && value <= max))
        return fail(spec->name, text, max == 1.0 ? "must be a number in 0..1" : "out of range");
    *out = value;
    return 0;
}

/* "A-B" or "A" (milliseconds) into the two consecutive fields at spec->offset. */
static int parse_delay(const struct option_spec *spec, const char *text, struct rush_options *o)
{
    char low[32], *dash = strchr(text, '-');
    size_t low_length = dash ? (size_t)(dash - text) : strlen(text);
    if (low_length == 0 || low_length >= sizeof(low))
        return fail(spec->name, text, "must be MIN-MAX milliseconds");
    memcpy(low, text, low_length);
    low[low_length] = '\0';
    uint64_t a = 0, b = 0;
    if (parse_uint(spec, low, &a) != 0 || parse_uint(spec, dash ? dash + 1 : low, &b) != 0)
        return -1;
    if (a > b)
        return fail(spec->name, text, "MIN is above MAX");
    o->pay_delay_ms_min = (uint32_t)a;
    o->pay_delay_ms_max = (uint32_t)b;
    return 0;
}

static int apply(const struct option_spec *spec, const char *value, struct rush_options *o)
{
    char *field = (char *)o + spec->offset;
    uint64_t number = 0;
    switch (spec->kind) {
    case KIND_FLAG:
        *(bool *)field = true;
        return 0;
    case KIND_UINT:
        if (parse_uint(spec, value, &number) != 0)
            return -1;
        if (spec->offset == FIELD(seed))
            *(uint64_t *)field = number;
        else
            *(uint32_t *)field = (uint32_t)number;
        return 0;
    case KIND_FRACTION:
        return parse_double(spec, value, 1.0, (double *)field);
    case KIND_RATE:
        return parse_double(spec, value, (double)spec->max, (double *)field);
    case KIND_DELAY:
        return parse_delay(spec, value, o);
    default:
        if (strlen(value) >= spec->size)
            return fail(spec->name, value, "too long");
        memcpy(field, value, strlen(value) + 1);
        return 0;
    }
}

/* http://host[:port][/] into host and port. */
static int split_url(struct rush_options *o)
{
    const char *rest = o->url;
    if (strncmp(rest, "http://", 7) != 0)
        return fail("--url", o->url, "must start with http:// (https is not supported)");
    rest += 7;
    size_t length = strcspn(rest, "/");
    if (rest[length] != '\0' && strcmp(rest + length, "/") != 0)
        return fail("--url", o->url, "must have no path: the API lives at /v1");
    const char *colon = memchr(rest, ':', length);
    size_t host_length = colon ? (size_t)(colon - rest) : length;
    size_t port_length = colon ? length - host_length - 1 : 0;
    if (host_length == 0 || host_length >= sizeof(o->host) || port_length >= sizeof(o->port) ||
        (colon && port_length == 0) || strspn(colon ? colon + 1 : "", "0123456789") < port_length)
        return fail("--url", o->url, "must be http://HOST:PORT");
    memcpy(o->host, rest, host_length);
    o->host[host_length] = '\0';
    if (colon) {
        memcpy(o->port, colon + 1, port_length);
        o->port[port_length] = '\0';
    } else {
        strcpy(o->port, "80");
    }
    return 0;
}

static const struct option_spec *find_spec(const char *name, size_t length)
{
    for (size_t i = 0; i < SPEC_COUNT; i++)
        if (strlen(specs[i].name) == length && strncmp(specs[i].name, name, length) == 0)
            return &specs[i];
    return NULL;
}

/* The secret from --jwt-secret or --jwt-secret-file (not both), refused when the servers would
 * refuse it: a token minted with it could never be accepted. */
static int load_secret(struct rush_options *o)
{
    bool has_text = o->jwt_secret[0] != '\0', has_file = o->jwt_secret_file[0] != '\0';
    if (has_text && has_file)
        return fail("--jwt-secret/--jwt-secret-file", "", "give one of the two");
    if (has_file) {
        char why[600];
        if (jwt_secret_read_file(o->jwt_secret_file, o->secret, &o->secret_length, why,
                                 sizeof(why)) != 0)
            return fail("--jwt-secret-file", "", why);
    } else if (has_text) {
        o->secret_length = strlen(o->jwt_secret);
        memcpy(o->secret, o->jwt_secret, o->secret_length);
    } else {
        return 0;
    }
    const char *weakness = jwt_secret_weakness(o->secret, o->secret_length);
    if (weakness != NULL)
        return fail("--jwt-secret", "", weakness); /* never echo the secret */
    return 0;
}

/* The rules between options, once every option is read. */
static int check_together(struct rush_options *o)
{
    if (o->url[0] == '\0')
        return fail("--url", "", "is required");
    if (split_url(o) != 0)
        return -1;
    if (o->is_healthz_only)
        return 0;
    if (load_secret(o) != 0)
        return -1;
    if (o->is_demo == (o->secret_length != 0))
        return fail("--demo/--jwt-secret[-file]", "", "give exactly one of them");
    if (o->confirm_fraction + o->cancel_fraction > 1.0 + 1e-9)
        return fail("--confirm + --cancel", "", "must not exceed 1");
    if (o->tickets < o->categories)
        return fail("--tickets", "", "must be at least --categories");
    if ((uint64_t)o->tickets > (uint64_t)o->categories * CATRACA_CAPACITY_MAX)
        return fail("--tickets", "", "is above what the categories can hold");
    if (o->line_policy[0] != '\0' && strcmp(o->line_policy, "unbounded") != 0 &&
        strcmp(o->line_policy, "bounded") != 0)
        return fail("--line-policy", o->line_policy, "must be unbounded or bounded");
    if (o->event[0] == '\0')
        snprintf(o->event, sizeof(o->event), "rush-%llu", (unsigned long long)o->seed);
    if (strspn(o->event, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
        strlen(o->event))
        return fail("--event", o->event, "must be 1-64 characters [A-Za-z0-9._-]");
    return 0;
}

int rush_options_parse(struct rush_options *o, int argc, char **argv)
{
    set_defaults(o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            rush_options_print_help(stdout);
            return 1;
        }
        const char *equals = strchr(arg, '=');
        size_t name_length = equals ? (size_t)(equals - arg) : strlen(arg);
        const struct option_spec *spec = find_spec(arg, name_length);
        if (spec == NULL)
            return fail(arg, "", "unknown option");
        const char *value = equals ? equals + 1 : NULL;
        if (spec->kind == KIND_FLAG && value != NULL)
            return fail(spec->name, value, "takes no value");
        if (spec->kind != KIND_FLAG && value == NULL) {
            if (i + 1 >= argc)
                return fail(spec->name, "", "needs a value");
            value = argv[++i];
        }
        if (apply(spec, value, o) != 0)
            return -1;
    }
    return check_together(o);
}
