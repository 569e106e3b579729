/* config.c - contract in config.h. */
#include "app/config.h"

#include "gateway/client_address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_BYTES_MAX 65536 /* a --config file; beyond: refused */
#define CONFIG_LINE_BYTES_MAX 1024

/* One row of the option table, for the loops that do not care about the type. */
struct option_row {
    const char *option, *env;
    unsigned commands;
    bool is_integer;
    int64_t min, max;
};

static const struct option_row rows[CONFIG_OPTION_COUNT] = {
#define CONFIG_INTEGER_ROW(field, option, env, def, min, max, commands, help)                      \
    [CONFIG_OPTION_##field] = {option, env, commands, true, min, max},
    CONFIG_INTEGERS(CONFIG_INTEGER_ROW)
#undef CONFIG_INTEGER_ROW
#define CONFIG_STRING_ROW(field, option, env, def, commands, help)                                 \
    [CONFIG_OPTION_##field] = {option, env, commands, false, 0, 0},
        CONFIG_STRINGS(CONFIG_STRING_ROW)
#undef CONFIG_STRING_ROW
};

/* The storage of option `id` in c: an int64_t or a char[256]. */
static void *field_of(struct config *c, enum config_option id)
{
    switch (id) {
#define CONFIG_INTEGER_CASE(field, option, env, def, min, max, commands, help)                     \
    case CONFIG_OPTION_##field:                                                                    \
        return &c->field;
        CONFIG_INTEGERS(CONFIG_INTEGER_CASE)
#undef CONFIG_INTEGER_CASE
#define CONFIG_STRING_CASE(field, option, env, def, commands, help)                                \
    case CONFIG_OPTION_##field:                                                                    \
        return c->field;
        CONFIG_STRINGS(CONFIG_STRING_CASE)
#undef CONFIG_STRING_CASE
    case CONFIG_OPTION_COUNT:
        break;
    }
    return NULL;
}

/*
 * Sets option id from text, remembering the source; `where` names the origin in a message
 * ("--threads", "CATRACA_THREADS", "app.conf:3: CATRACA_THREADS"). 0 or -1 after a message.
 */
static int set_value(struct config *c, enum config_option id, const char *text,
                     enum config_source source, const char *where)
{
    const struct option_row *row = &rows[id];
    if (row->is_integer) {
        char *end = NULL;
        errno = 0;
        long long value = strtoll(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || value < row->min || value > row->max) {
            fprintf(stderr, "catraca: %s must be an integer from %lld to %lld (got \"%s\")\n",
                    where, (long long)row->min, (long long)row->max, text);
            return -1;
        }
        *(int64_t *)field_of(c, id) = value;
    } else {
        if (strlen(text) >= 256) {
            fprintf(stderr, "catraca: %s is longer than 255 bytes\n", where);
            return -1;
        }
        strcpy(field_of(c, id), text);
    }
    c->sources[id] = (uint8_t)source;
    return 0;
}

/*
 * Old names still read as flags, variables and --config keys, each for the option that replaced
 * it: deployments and scripts written for them keep working. The new name wins over the old one
 * from the same source.
 */
static const struct option_alias {
    const char *option, *env;
    enum config_option id;
} aliases[] = {
    {"redis-timeout-ms", "CATRACA_REDIS_TIMEOUT_MS", CONFIG_OPTION_log_timeout_ms},
};
#define ALIAS_COUNT (sizeof(aliases) / sizeof(aliases[0]))

static int find_by_option(const char *option)
{
    for (int i = 0; i < CONFIG_OPTION_COUNT; i++)
        if (strcmp(rows[i].option, option) == 0)
            return i;
    for (size_t i = 0; i < ALIAS_COUNT; i++)
        if (strcmp(aliases[i].option, option) == 0)
            return (int)aliases[i].id;
    return -1;
}

static int find_by_env(const char *env)
{
    for (int i = 0; i < CONFIG_OPTION_COUNT; i++)
        if (strcmp(rows[i].env, env) == 0)
            return i;
    for (size_t i = 0; i < ALIAS_COUNT; i++)
        if (strcmp(aliases[i].env, env) == 0)
            return (int)aliases[i].id;
    return -1;
}

void config_set_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
#define CONFIG_DEFAULT_INTEGER(field, option, env, def, min, max, commands, help) c->field = def;
    CONFIG_INTEGERS(CONFIG_DEFAULT_INTEGER)
#undef CONFIG_DEFAULT_INTEGER
#define CONFIG_DEFAULT_STRING(field, option, env, def, commands, help) strcpy(c->field, def);
    CONFIG_STRINGS(CONFIG_DEFAULT_STRING)
#undef CONFIG_DEFAULT_STRING
}

/* ---- the --config file ---------------------------------------------------------------------- */

/* Removes one pair of matching quotes around value, as systemd's EnvironmentFile= does. */
static char *unquote(char *value)
{
    size_t length = strlen(value);
    if (length >= 2 && (value[0] == '"' || value[0] == '\'') && value[length - 1] == value[0]) {
        value[length - 1] = '\0';
        return value + 1;
    }
    return value;
}

/* One line of the file (no newline, NUL-terminated in place); 0 or -1 after a message. */
static int apply_file_line(struct config *c, char *line, const char *path, int number,
                           unsigned command, bool seen[CONFIG_OPTION_COUNT])
{
    size_t length = strlen(line);
    if (length > 0 && line[length - 1] == '\r')
        line[--length] = '\0';
    char *start = line + strspn(line, " \t");
    if (*start == '\0' || *start == '#')
        return 0;
    char *equals = strchr(start, '=');
    if (equals == NULL) {
        fprintf(stderr, "catraca: %s:%d: expected KEY=VALUE, KEY a CATRACA_* variable\n", path,
                number);
        return -1;
    }
    *equals = '\0';
    int id = find_by_env(start);
    if (id < 0) {
        fprintf(stderr,
                "catraca: %s:%d: unknown key \"%.64s\" (the keys are the CATRACA_* "
                "variables of catraca COMMAND --help)\n",
                path, number, start);
        return -1;
    }
    if (seen[id]) {
        fprintf(stderr, "catraca: %s:%d: %s is given twice%s\n", path, number, rows[id].env,
                strcmp(start, rows[id].env) != 0 ? " (once under its old name)" : "");
        return -1;
    }
    seen[id] = true;
    if ((rows[id].commands & command) == 0)
        return 0; /* another command's setting: one file may serve them all */
    char where[CONFIG_LINE_BYTES_MAX + 64];
    snprintf(where, sizeof(where), "%s:%d: %s", path, number, start);
    return set_value(c, (enum config_option)id, unquote(equals + 1), CONFIG_FROM_FILE, where);
}

int config_apply_text(struct config *c, char *text, const char *path, unsigned command)
{
    bool seen[CONFIG_OPTION_COUNT] = {false};
    int number = 0, result = 0;
    for (char *line = text; result == 0 && line != NULL && *line != '\0';) {
        char *newline = strchr(line, '\n');
        if (newline != NULL)
            *newline = '\0';
        number++;
        if (strlen(line) > CONFIG_LINE_BYTES_MAX) {
            fprintf(stderr, "catraca: %s:%d: longer than %d bytes\n", path, number,
                    CONFIG_LINE_BYTES_MAX);
            result = -1;
        } else {
            result = apply_file_line(c, line, path, number, command, seen);
        }
        line = newline ? newline + 1 : NULL;
    }
    return result;
}

static int apply_file(struct config *c, const char *path, unsigned command)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "catraca: cannot read --config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *text = malloc(CONFIG_FILE_BYTES_MAX + 1);
    size_t size = text ? fread(text, 1, CONFIG_FILE_BYTES_MAX + 1, file) : 0;
    bool is_read_error = text == NULL || ferror(file);
    fclose(file);
    if (is_read_error || size > CONFIG_FILE_BYTES_MAX || memchr(text, '\0', size) != NULL) {
        fprintf(stderr, "catraca: --config %s: %s\n", path,
                is_read_error ? "cannot be read"
                : size > CONFIG_FILE_BYTES_MAX
                    ? "larger than 64 KiB"
                    : "holds a NUL byte (not a text file of KEY=VALUE lines)");
        free(text);
        return -1;
    }
    text[size] = '\0';
    int result = config_apply_text(c, text, path, command);
    free(text);
    return result;
}

/* ---- environment and arguments -------------------------------------------------------------- */

static int apply_environment(struct config *c, unsigned command)
{
    for (size_t i = 0; i < ALIAS_COUNT; i++) { /* first: the new names override them */
        const char *value = getenv(aliases[i].env);
        if ((rows[aliases[i].id].commands & command) != 0 && value != NULL &&
            set_value(c, aliases[i].id, value, CONFIG_FROM_ENVIRONMENT, aliases[i].env) != 0)
            return -1;
    }
    for (int i = 0; i < CONFIG_OPTION_COUNT; i++) {
        const char *value = getenv(rows[i].env);
        if ((rows[i].commands & command) != 0 && value != NULL &&
            set_value(c, (enum config_option)i, value, CONFIG_FROM_ENVIRONMENT, rows[i].env) != 0)
            return -1;
    }
    return 0;
}

/* Switches that may stand alone: "--demo" means "--demo on". */
static bool is_switch(const char *name)
{
    return strcmp(name, "demo") == 0 || strcmp(name, "challenge") == 0 ||
           strcmp(name, "demo-public") == 0 || strcmp(name, "access-log") == 0;
}

/*
 * Walks argv from `first`: for each "--name[=value]" or "--name value" calls visit (which
 * returns 0 to go on, else stops the walk with that result). --help is reported as name "help".
 */
static int walk_arguments(int argc, char **argv, int first, const char *command_name,
                          int (*visit)(void *context, const char *name, const char *value),
                          void *context)
{
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            int result = visit(context, "help", "");
            if (result != 0)
                return result;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "catraca %s: unexpected argument \"%s\" (see catraca %s --help)\n",
                    command_name, arg, command_name);
            return -1;
        }
        char name[64];
        const char *value = NULL, *equals = strchr(arg, '=');
        size_t length = equals ? (size_t)(equals - arg - 2) : strlen(arg + 2);
        if (length >= sizeof(name)) {
            fprintf(stderr, "catraca %s: unknown option %s (see catraca %s --help)\n", command_name,
                    arg, command_name);
            return -1;
        }
        memcpy(name, arg + 2, length);
        name[length] = '\0';
        if (equals)
            value = equals + 1;
        else if (is_switch(name) && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0))
            value = "on";
        else if (i + 1 < argc)
            value = argv[++i];
        if (value == NULL) {
            fprintf(stderr, "catraca %s: --%s needs a value\n", command_name, name);
            return -1;
        }
        int result = visit(context, name, value);
        if (result != 0)
            return result;
    }
    return 0;
}

struct argument_walk {
    struct config *config;
    unsigned command;
    const char *command_name;
    const char *config_path; /* the first pass finds --config */
    bool is_help;
};

static int find_config_path(void *context, const char *name, const char *value)
{
    struct argument_walk *walk = context;
    if (strcmp(name, "help") == 0)
        walk->is_help = true;
    else if (strcmp(name, "config") == 0)
        walk->config_path = value;
    return 0;
}

static int apply_argument(void *context, const char *name, const char *value)
{
    struct argument_walk *walk = context;
    if (strcmp(name, "help") == 0 || strcmp(name, "config") == 0)
        return 0;
    int id = find_by_option(name);
    if (id < 0) {
        fprintf(stderr, "catraca %s: unknown option --%s (see catraca %s --help)\n",
                walk->command_name, name, walk->command_name);
        return -1;
    }
    if ((rows[id].commands & walk->command) == 0) {
        fprintf(stderr,
                "catraca %s: --%s is not an option of this command (see catraca %s "
                "--help)\n",
                walk->command_name, name, walk->command_name);
        return -1;
    }
    char where[80];
    snprintf(where, sizeof(where), "--%s", name);
    return set_value(walk->config, (enum config_option)id, value, CONFIG_FROM_FLAG, where);
}

/* ---- the rules between options ----------------------------------------------------------------
 */

static int check_switch(const char *name, const char *value, bool *out)
{
    if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0) {
        *out = strcmp(value, "on") == 0;
        return 0;
    }
    fprintf(stderr, "catraca: --%s must be on or off (got \"%s\")\n", name, value);
    return -1;
}

/* "host:port" or "[ipv6]:port" -> parts; 0 or -1 with a message. */
int config_split_listen(const char *listen, char host[64], uint16_t *port)
{
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long value = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || (size_t)(colon - listen) >= 64 || end == colon + 1 || *end != '\0' ||
        value < 0 || value > 65535) {
        fprintf(stderr, "catraca: --listen must be host:port (got \"%s\")\n", listen);
        return -1;
    }
    const char *start = listen;
    size_t length = (size_t)(colon - listen);
    if (length >= 2 && listen[0] == '[' && listen[length - 1] == ']') { /* [IPv6]:port */
        start++;
        length -= 2;
    }
    memcpy(host, start, length);
    host[length] = '\0';
    *port = (uint16_t)value;
    return 0;
}

/* Whether the listen address is loopback: 127.0.0.0/8, ::1, or ::ffff:127.x.y.z. */
static bool is_loopback_listen(const char *listen)
{
    char host[64];
    uint16_t port = 0;
    if (config_split_listen(listen, host, &port) != 0)
        return false;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) != 1)
        return false;
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return IN6_IS_ADDR_LOOPBACK(&v6) ||
           (memcmp(v6.s6_addr, v4_mapped, sizeof(v4_mapped)) == 0 && v6.s6_addr[12] == 127);
}

/*
 * One origin as a browser sends it in `Origin`: http or https, a host, an optional port, no
 * path, no trailing slash. "*" and "null" are refused: an origin is trusted by name.
 */
static bool is_origin(const char *origin, size_t length)
{
    size_t scheme = strncmp(origin, "https://", 8) == 0  ? 8
                    : strncmp(origin, "http://", 7) == 0 ? 7
                                                         : 0;
    if (scheme == 0 || length <= scheme || length > 253)
        return false;
    for (size_t i = scheme; i < length; i++) {
        char ch = origin[i];
        bool is_allowed = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                          ch == '.' || ch == ':' || ch == '[' || ch == ']';
        if (!is_allowed)
            return false; /* upper case, a path, a query, a space, "*" */
    }
    return origin[length - 1] != ':' && origin[length - 1] != '.';
}

static int check_cors_origins(const char *list)
{
    for (const char *at = list; *at != '\0';) {
        size_t length = strcspn(at, ",");
        if (!is_origin(at, length)) {
            fprintf(stderr,
                    "catraca: --cors-origin must list exact origins, comma-separated, as browsers "
                    "send them (https://shop.example, http://localhost:3000: lower case, no path, "
                    "no \"*\"); got \"%.*s\"\n",
                    (int)length, at);
            return -1;
        }
        at += length + (at[length] == ',');
    }
    return 0;
}

/* An http(s) URL with {id} in it, and nothing a page would have to escape: the buyer page puts
 * it in an address bar, never in markup. */
static bool is_payment_url(const char *url)
{
    bool is_http = strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0;
    for (const char *at = url; *at != '\0'; at++)
        if (*at <= ' ' || *at == '"' || *at == '<' || *at == '>' || *at == '\\' || *at == 127)
            return false;
    return is_http && strstr(url, "{id}") != NULL;
}

/* The secret of a command that reads one; 0 or -1 after a message. */
static int choose_secret(struct config *c, const char *command_name)
{
    /* An empty value (CATRACA_JWT_SECRET= in an env file) gives nothing. */
    uint8_t flag_source = c->jwt_secret[0] ? c->sources[CONFIG_OPTION_jwt_secret] : 0;
    uint8_t file_source = c->jwt_secret_file[0] ? c->sources[CONFIG_OPTION_jwt_secret_file] : 0;
    bool is_given = flag_source != CONFIG_FROM_DEFAULT || file_source != CONFIG_FROM_DEFAULT;
    if (c->is_demo) {
        if (is_given) {
            fprintf(stderr,
                    "catraca %s: demo mode makes its own random JWT secret and refuses "
                    "a supplied one (--jwt-secret, --jwt-secret-file, CATRACA_JWT_SECRET"
                    "[_FILE]): a real secret in a demo hands out real admin tokens\n",
                    command_name);
            return -1;
        }
        return 0;
    }
    if (!is_given) {
        fprintf(stderr,
                "catraca %s: a JWT secret is required (CATRACA_JWT_SECRET or "
                "--jwt-secret-file FILE; " JWT_SECRET_ADVICE ")\n",
                command_name);
        return -1;
    }
    if (flag_source == file_source) {
        fprintf(stderr,
                "catraca %s: give the JWT secret once: --jwt-secret or "
                "--jwt-secret-file, not both\n",
                command_name);
        return -1;
    }
    if (file_source > flag_source) {
        char why[512];
        if (jwt_secret_read_file(c->jwt_secret_file, c->secret, &c->secret_length, why,
                                 sizeof(why)) != 0) {
            fprintf(stderr, "catraca %s: %s\n", command_name, why);
            return -1;
        }
    } else {
        c->secret_length = strlen(c->jwt_secret);
        memcpy(c->secret, c->jwt_secret, c->secret_length);
    }
    const char *weakness = jwt_secret_weakness(c->secret, c->secret_length);
    if (weakness != NULL) {
        fprintf(stderr,
                "catraca %s: %s; anyone who guesses it mints admin tokens. " JWT_SECRET_ADVICE "\n",
                command_name, weakness);
        return -1;
    }
    return 0;
}

static int check_together(struct config *c, unsigned command, const char *command_name)
{
    if (check_switch("demo", c->demo, &c->is_demo) != 0 ||
        check_switch("demo-public", c->demo_public, &c->is_demo_public) != 0 ||
        check_switch("challenge", c->challenge, &c->is_challenge_on) != 0 ||
        check_switch("access-log", c->access_log, &c->is_access_log) != 0 ||
        check_switch("receipts", c->receipts, &c->is_receipts_on) != 0)
        return -1;
    /* The gateway reads no --data: its default key is under the default data directory. */
    if (c->receipt_key[0] == '\0' &&
        snprintf(c->receipt_key, sizeof(c->receipt_key), "%.200s/receipt-key.pem", c->data) >=
            (int)sizeof(c->receipt_key))
        return -1;
    if (strcmp(c->log_format, "logfmt") != 0 && strcmp(c->log_format, "json") != 0) {
        fprintf(stderr, "catraca %s: --log-format must be logfmt or json\n", command_name);
        return -1;
    }
    struct client_address_trust trust;
    char why[160];
    if (client_address_trust_parse(c->trusted_proxy, &trust, why) != 0) {
        fprintf(stderr, "catraca: %s\n", why);
        return -1;
    }
    if (strcmp(c->sync, "full") != 0 && strcmp(c->sync, "normal") != 0) {
        fprintf(stderr, "catraca: --sync must be full or normal\n");
        return -1;
    }
    if (c->payment_url[0] != '\0' && !is_payment_url(c->payment_url)) {
        fprintf(stderr,
                "catraca: --payment-url must be an http:// or https:// URL holding {id} "
                "(got \"%s\")\n",
                c->payment_url);
        return -1;
    }
    if (check_cors_origins(c->cors_origin) != 0)
        return -1;
    /* Checked here, with the other mistakes of the command line, so that the commands' own
     * config_split_listen() calls (after the log lines are set up) cannot fail. */
    char host[64];
    uint16_t port = 0;
    if ((command & CMD_LISTENERS) != 0 && config_split_listen(c->listen, host, &port) != 0)
        return -1;
    if (c->is_demo_public && !c->is_demo) {
        fprintf(stderr, "catraca %s: --demo-public only applies with --demo\n", command_name);
        return -1;
    }
    if (c->is_demo && !c->is_demo_public && !is_loopback_listen(c->listen)) {
        fprintf(stderr,
                "catraca %s: demo mode hands admin tokens to anyone who can reach it, "
                "so it listens on loopback only (--listen 127.0.0.1:PORT); to expose a "
                "demo on purpose add --demo-public\n",
                command_name);
        return -1;
    }
    if ((command & CMD_SECRET_READERS) != 0)
        return choose_secret(c, command_name);
    return 0;
}

int config_parse(struct config *c, int argc, char **argv, int first, unsigned command,
                 const char *command_name)
{
    config_set_defaults(c);
    struct argument_walk walk = {.config = c, .command = command, .command_name = command_name};
    int result = walk_arguments(argc, argv, first, command_name, find_config_path, &walk);
    if (result != 0)
        return -1;
    if (walk.is_help) {
        config_print_help(stdout, command, command_name);
        return 1;
    }
    if (walk.config_path != NULL && apply_file(c, walk.config_path, command) != 0)
        return -1;
    if (apply_environment(c, command) != 0 ||
        walk_arguments(argc, argv, first, command_name, apply_argument, &walk) != 0)
        return -1;
    return check_together(c, command, command_name);
}

void config_print_help(FILE *out, unsigned command, const char *command_name)
{
    fprintf(out, "usage: catraca %s [options]\n\n", command_name);
    config_print_options(out, command);
}

void config_print_options(FILE *out, unsigned command)
{
    fprintf(out,
            "Each option is also read from its environment variable, and from a --config FILE\n"
            "of VARIABLE=VALUE lines; a flag overrides the variable, which overrides the file.\n\n"
            "  --%-28s %-34s %s\n",
            "config FILE", "", "KEY=VALUE lines, KEY a variable below; # comments");
#define CONFIG_HELP_STRING(field, option, env, def, commands, help)                                \
    if ((commands)&command)                                                                        \
        fprintf(out, "  --%-28s %-34s %s (default \"%s\")\n", option " S", env, help, def);
    CONFIG_STRINGS(CONFIG_HELP_STRING)
#undef CONFIG_HELP_STRING
#define CONFIG_HELP_INTEGER(field, option, env, def, min, max, commands, help)                     \
    if ((commands)&command)                                                                        \
        fprintf(out, "  --%-28s %-34s %s (default %lld, %lld..%lld)\n", option " N", env, help,    \
                (long long)(def), (long long)(min), (long long)(max));
    CONFIG_INTEGERS(CONFIG_HELP_INTEGER)
#undef CONFIG_HELP_INTEGER
}
