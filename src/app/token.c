/* token.c - contract in token.h. */
#include "app/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/config.h"
#include "gateway/api_json.h"
#include "gateway/jwt.h"

#define TOKEN_ARGUMENTS_MAX 64

long long token_parse_lifetime(const char *text)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || text[0] == '-' || text[0] == '+')
        return -1;
    long long unit = 1;
    if (*end != '\0') {
        const char *units = "smhd";
        const long long seconds[] = {1, 60, 3600, 86400};
        const char *found = strchr(units, *end);
        if (found == NULL || end[1] != '\0')
            return -1;
        unit = seconds[found - units];
    }
    if (value < 1 || value > TOKEN_LIFETIME_S_MAX / unit)
        return -1;
    return value * unit;
}

static void token_help(void)
{
    printf("usage: catraca token --subject ID [--role buyer|payments|admin] [--lifetime 1h]\n\n"
           "Prints an HS256 JWT that catraca serve and catraca gateway accept: \"sub\" the\n"
           "subject (the customer id, 1-64 of [A-Za-z0-9._-]), \"role\", \"exp\" now + lifetime.\n"
           "The secret is the servers': CATRACA_JWT_SECRET, --jwt-secret-file or --config.\n\n"
           "  --%-28s %s\n  --%-28s %s\n  --%-28s %s",
           "subject ID", "the token's subject (required)", "role R",
           "buyer (default), payments or admin", "lifetime T",
           "seconds, or with a unit: 90s, 15m, 12h, 30d (default 1h, at most 366d)\n");
    config_print_options(stdout, CMD_TOKEN);
}

int token_main(int argc, char **argv)
{
    const char *subject = NULL, *role = "buyer", *lifetime = "1h";
    char *rest[TOKEN_ARGUMENTS_MAX];
    int rest_count = 0;
    for (int i = 0; i < argc; i++) {
        const char **target = strcmp(argv[i], "--subject") == 0    ? &subject
                              : strcmp(argv[i], "--role") == 0     ? &role
                              : strcmp(argv[i], "--lifetime") == 0 ? &lifetime
                                                                   : NULL;
        if (target != NULL && i + 1 < argc) {
            *target = argv[++i];
            continue;
        }
        if (i >= 2 && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            token_help();
            return 0;
        }
        if (target != NULL || rest_count == TOKEN_ARGUMENTS_MAX) {
            fprintf(stderr, "catraca token: %s\n",
                    target ? "an option needs a value" : "too many arguments");
            return 2;
        }
        rest[rest_count++] = argv[i];
    }
    struct config config;
    if (config_parse(&config, rest_count, rest, 2, CMD_TOKEN, "token") != 0)
        return 2;
    long long lifetime_s = token_parse_lifetime(lifetime);
    bool is_role =
        strcmp(role, "buyer") == 0 || strcmp(role, "payments") == 0 || strcmp(role, "admin") == 0;
    if (subject == NULL || !api_json_is_id(subject) || !is_role || lifetime_s < 0) {
        fprintf(stderr, "catraca token: %s (see catraca token --help)\n",
                subject == NULL            ? "--subject ID is required"
                : !api_json_is_id(subject) ? "--subject must be 1-64 of [A-Za-z0-9._-]"
                : !is_role                 ? "--role must be buyer, payments or admin"
                                           : "--lifetime must be 1s to 366d (3600, 15m, 12h, 30d)");
        return 2;
    }
    char token[JWT_TOKEN_MAX];
    int n = jwt_sign(config.secret, config.secret_length, subject, role,
                     (int64_t)time(NULL) + lifetime_s, token, sizeof(token));
    if (n < 0) {
        fprintf(stderr, "catraca token: the token could not be signed\n");
        return 1;
    }
    printf("%s\n", token);
    return 0;
}
