/*
 * libFuzzer: the --config file reader (config_apply_text) and the secret-file reader's checks
 * on arbitrary bytes. The first byte picks the command whose options apply. Whatever the text,
 * it returns 0 or -1, never reads past the text, and every value it keeps fits its field: a
 * string is NUL-terminated within 256 bytes, an integer within its bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "gateway/jwt_secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 70000)
        return 0;
    unsigned command = 1u << (data[0] % 6);
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0'; /* the reader refuses a NUL inside a file before this point */
    static struct config config;
    config_set_defaults(&config);
    int result = config_apply_text(&config, text, "fuzz.conf", command);
    if (result != 0 && result != -1)
        abort();
#define FUZZ_CHECK_INTEGER(field, option, env, def, min, max, commands, help)                      \
    if (config.field < (min) || config.field > (max))                                              \
        abort();
    CONFIG_INTEGERS(FUZZ_CHECK_INTEGER)
#undef FUZZ_CHECK_INTEGER
#define FUZZ_CHECK_STRING(field, option, env, def, commands, help)                                 \
    if (memchr(config.field, '\0', sizeof(config.field)) == NULL)                                  \
        abort();
    CONFIG_STRINGS(FUZZ_CHECK_STRING)
#undef FUZZ_CHECK_STRING
    const char *weakness = jwt_secret_weakness(data, size);
    if (size < JWT_SECRET_MIN && weakness == NULL)
        abort();
    free(text);
    return 0;
}
