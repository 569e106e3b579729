/* config.c - contract in config.h. */
#include "app/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int set_integer(int64_t *field, const char *name, const char *text, int64_t min, int64_t max)
{
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "catraca: --%s must be an integer from %lld to %lld (got \"%s\")\n", name,
                (long long)min, (long long)max, text);
        return -1;
    }
    *field = value;
    return 0;
}

static int set_string(char *field, const char *name, const char *text)
{
    if (strlen(text) >= 256) {
        fprintf(stderr, "catraca: --%s is longer than 255 bytes\n", name);
        return -1;
    }
    strcpy(field, text);
    return 0;
}

/* Applies one option by name; 1 when the name is unknown. */
static int set_option(struct config *c, const char *name, const char *value)
{
#define CONFIG_SET_INTEGER(field, option, env, def, min, max, help)                                \
    if (strcmp(name, option) == 0)                                                                 \
        return set_integer(&c->field, option, value, min, max);
    CONFIG_INTEGERS(CONFIG_SET_INTEGER)
#undef CONFIG_SET_INTEGER
#define CONFIG_SET_STRING(field, option, env, def, help)                                           \
    if (strcmp(name, option) == 0)                                                                 \
        return set_string(c->field, option, value);
    CONFIG_STRINGS(CONFIG_SET_STRING)
#undef CONFIG_SET_STRING
    return 1;
}

static void set_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
#define CONFIG_DEFAULT_INTEGER(field, option, env, def, min, max, help) c->field = def;
    CONFIG_INTEGERS(CONFIG_DEFAULT_INTEGER)
#undef CONFIG_DEFAULT_INTEGER
#define CONFIG_DEFAULT_STRING(field, option, env, def, help) strcpy(c->field, def);
    CONFIG_STRINGS(CONFIG_DEFAULT_STRING)
#undef CONFIG_DEFAULT_STRING
}

static int apply_environment(struct config *c)
{
    const char *value;
#define CONFIG_ENV_INTEGER(field, option, env, def, min, max, help)                                \
    if ((value = getenv(env)) != NULL && set_integer(&c->field, option, value, min, max) != 0)     \
        return -1;
    CONFIG_INTEGERS(CONFIG_ENV_INTEGER)
#undef CONFIG_ENV_INTEGER
#define CONFIG_ENV_STRING(field, option, env, def, help)                                           \
    if ((value = getenv(env)) != NULL && set_string(c->field, option, value) != 0)                 \
        return -1;
    CONFIG_STRINGS(CONFIG_ENV_STRING)
#undef CONFIG_ENV_STRING
    return 0;
}

static int check_switch(const char *name, const char *value, bool *out)
{
    if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0) {
        *out = strcmp(value, "on") == 0;
        return 0;
    }
    fprintf(stderr, "catraca: --%s must be on or off (got \"%s\")\n", name, value);
    return -1;
}

static int apply_arguments(struct config *c, int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(stdout, first > 1 ? argv[first - 1] : "serve");
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "catraca: unexpected argument \"%s\" (see --help)\n", arg);
            return -1;
        }
        char name[64];
        const char *value = NULL, *equals = strchr(arg, '=');
        size_t length = equals ? (size_t)(equals - arg - 2) : strlen(arg + 2);
        if (length >= sizeof(name)) {
            fprintf(stderr, "catraca: unknown option %s (see --help)\n", arg);
            return -1;
        }
        memcpy(name, arg + 2, length);
        name[length] = '\0';
        if (equals)
            value = equals + 1;
        else if ((strcmp(name, "demo") == 0 || strcmp(name, "challenge") == 0) &&
                 (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            value = "on";
        else if (i + 1 < argc)
            value = argv[++i];
        if (value == NULL) {
            fprintf(stderr, "catraca: --%s needs a value\n", name);
            return -1;
        }
        int result = set_option(c, name, value);
        if (result == 1)
            fprintf(stderr, "catraca: unknown option --%s (see --help)\n", name);
        if (result != 0)
            return -1;
    }
    return 0;
}

int config_parse(struct config *c, int argc, char **argv, int first)
{
    set_defaults(c);
    if (apply_environment(c) != 0)
        return -1;
    int result = apply_arguments(c, argc, argv, first);
    if (result != 0)
        return result;
    if (check_switch("demo", c->demo, &c->is_demo) != 0 ||
        check_switch("challenge", c->challenge, &c->is_challenge_on) != 0 ||
        check_switch("receipts", c->receipts, &c->is_receipts_on) != 0)
        return -1;
    if (c->receipt_key[0] == '\0' &&
        snprintf(c->receipt_key, sizeof(c->receipt_key), "%.200s/receipt-key.pem", c->data) >=
            (int)sizeof(c->receipt_key))
        return -1;
    if (strcmp(c->sync, "full") != 0 && strcmp(c->sync, "normal") != 0) {
        fprintf(stderr, "catraca: --sync must be full or normal\n");
        return -1;
    }
    if (!c->is_demo && c->jwt_secret[0] == '\0') {
        fprintf(stderr, "catraca: --jwt-secret (or CATRACA_JWT_SECRET) is required without "
                        "--demo\n");
        return -1;
    }
    return 0;
}

void config_print_help(FILE *out, const char *command)
{
    fprintf(out,
            "usage: catraca %s [options]   (every option also from its environment variable;\n"
            "       the options of every command are listed: each command reads those it "
            "needs)\n\n",
            command);
#define CONFIG_HELP_STRING(field, option, env, def, help)                                          \
    fprintf(out, "  --%-26s %-34s %s (default \"%s\")\n", option " S", env, help, def);
    CONFIG_STRINGS(CONFIG_HELP_STRING)
#undef CONFIG_HELP_STRING
#define CONFIG_HELP_INTEGER(field, option, env, def, min, max, help)                               \
    fprintf(out, "  --%-26s %-34s %s (default %lld, %lld..%lld)\n", option " N", env, help,        \
            (long long)(def), (long long)(min), (long long)(max));
    CONFIG_INTEGERS(CONFIG_HELP_INTEGER)
#undef CONFIG_HELP_INTEGER
}
