/*
 * libFuzzer: the pages' header readers (page_headers.c) never crash and never say yes without
 * a reason: gzip is accepted only when the value names gzip or `*`, and a copy is "not
 * modified" only when the value holds the ETag or `*`. The input is the header value; its first
 * byte picks the ETag from a few quoted ones.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/page_headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool contains_case(const char *haystack, const char *needle)
{
    for (size_t n = strlen(needle); *haystack != '\0'; haystack++)
        if (strncasecmp(haystack, needle, n) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const etags[] = {"\"1a2b3c4d5e6f\"", "\"x\"", "\"\""};
    if (size == 0)
        return 0;
    const char *etag = etags[data[0] % 3];
    char *value = malloc(size);
    if (value == NULL)
        return 0;
    memcpy(value, data + 1, size - 1);
    value[size - 1] = '\0'; /* a header value ends at its first NUL, as http.c hands it over */
    if (page_accepts_gzip(value) && !contains_case(value, "gzip") && strchr(value, '*') == NULL)
        abort();
    if (page_is_not_modified(value, etag) && strstr(value, etag) == NULL && strchr(value, '*') == NULL)
        abort();
    free(value);
    return 0;
}
