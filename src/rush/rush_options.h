/*
 * rush_options.h - the command line of `catraca rush`, parsed and bounded.
 */
#ifndef CATRACA_RUSH_OPTIONS_H
#define CATRACA_RUSH_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/limits.h"
#include "gateway/jwt_secret.h"

#define RUSH_BUYERS_MAX (1u << 24)
#define RUSH_CONNECTIONS_MAX 20000u
#define RUSH_SECRET_MAX 255

struct rush_options {
    char url[256];
    char host[128]; /* from the URL: a name or an address */
    char port[8];   /* from the URL, "80" when absent */
    bool is_demo;
    char jwt_secret[RUSH_SECRET_MAX + 1];
    char jwt_secret_file[512];
    uint8_t secret[JWT_SECRET_MAX]; /* from one of the two, checked; secret_length 0: --demo */
    size_t secret_length;
    uint32_t buyers;
    uint32_t tickets;
    uint32_t categories;
    uint32_t connections;
    double rate_per_s; /* purchases per second; 0: as fast as possible */
    double confirm_fraction;
    double cancel_fraction;
    uint32_t pay_delay_ms_min;
    uint32_t pay_delay_ms_max;
    uint32_t hold_seconds;
    uint32_t per_customer_limit;
    char line_policy[16]; /* the event's: "unbounded", "bounded", or "" for the server's default */
    uint32_t max_seconds;
    char event[CATRACA_ID_MAX + 1];
    uint64_t seed;
    char json_path[512];
    bool is_healthz_only;
    uint32_t healthz_seconds;
};

/*
 * Fills options from argv[0..argc) (argv[0] is "rush"). Returns 0, 1 when --help
 * was printed to stdout, or -1 after a message on stderr (a usage error).
 */
int rush_options_parse(struct rush_options *options, int argc, char **argv);
void rush_options_print_help(FILE *out);

#endif
