/* jwt_secret.c - contract in jwt_secret.h. */
#include "gateway/jwt_secret.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/*
 * Every example secret the repository prints, or printed: a copy-paste of one of them must not
 * start a server. The short ones are refused by their length already and are kept as a record.
 */
static const char *const examples[] = {
    "change-me",
    "changeme",
    "secret",
    "...",
    "x",
    "s",
    "test-secret-0123456789",
    "bench-secret",
    "bench-secret-key",
    "bench-secret-0123456789abcdefghij",
    "fuzz-secret",
    "not-the-secret",
    "another-key",
    /* The placeholder of deploy/systemd/common.env.example. */
    "replace-with-the-output-of-openssl-rand-base64-48",
};

const char *jwt_secret_weakness(const uint8_t *secret, size_t length)
{
    if (length == 0)
        return "the JWT secret is empty";
    if (length < JWT_SECRET_MIN)
        return "the JWT secret is shorter than 32 bytes";
    if (length > JWT_SECRET_MAX)
        return "the JWT secret is longer than 256 bytes";
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++)
        if (strlen(examples[i]) == length && memcmp(examples[i], secret, length) == 0)
            return "the JWT secret is an example printed in Catraca's documentation, so it is "
                   "public";
    size_t distinct = 0;
    uint8_t seen[256] = {0};
    for (size_t i = 0; i < length; i++)
        if (seen[secret[i]]++ == 0)
            distinct++;
    if (distinct < 8) /* "aaaa...", "0101...": long, but guessed at once */
        return "the JWT secret repeats fewer than 8 distinct bytes";
    return NULL;
}

int jwt_secret_read_file(const char *path, uint8_t *out, size_t *length, char *why, size_t why_size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(why, why_size, "cannot read the JWT secret file %s: %s", path, strerror(errno));
        return -1;
    }
    uint8_t buffer[JWT_SECRET_MAX + 3]; /* + "\r\n" + one byte to notice a longer file */
    size_t n = fread(buffer, 1, sizeof(buffer), file);
    int read_error = ferror(file);
    fclose(file);
    if (read_error) {
        snprintf(why, why_size, "cannot read the JWT secret file %s", path);
        return -1;
    }
    if (n > 0 && buffer[n - 1] == '\n')
        n--;
    if (n > 0 && buffer[n - 1] == '\r')
        n--;
    if (n == 0 || n > JWT_SECRET_MAX) {
        snprintf(why, why_size, "the JWT secret file %s is %s", path,
                 n == 0 ? "empty" : "longer than 256 bytes");
        return -1;
    }
    memcpy(out, buffer, n);
    *length = n;
    return 0;
}
