/*
 * json_oracle.h - what a strict JSON reading must never have let through, judged on the raw
 * bytes independently of api_json.c: a NUL byte anywhere, or an escape of a control character
 * (\u0000-\u001F, \u007F, \b \f \n \r \t). Bytes outside strings are not told apart from bytes
 * inside (an escape outside a string is not JSON anyway).
 */
#ifndef CATRACA_FUZZ_JSON_ORACLE_H
#define CATRACA_FUZZ_JSON_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline bool json_oracle_has_control(const uint8_t *data, size_t size)
{
    if (memchr(data, 0, size) != NULL)
        return true;
    size_t backslashes = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\\') {
            backslashes++;
            continue;
        }
        bool is_escape = backslashes % 2 == 1;
        backslashes = 0;
        if (!is_escape)
            continue;
        if (strchr("bfnrt", data[i]) != NULL)
            return true;
        if (data[i] == 'u' && i + 4 < size && data[i + 1] == '0' && data[i + 2] == '0') {
            char high = data[i + 3], low = (char)(data[i + 4] | 0x20); /* hex in either case */
            if (high == '0' || high == '1' || (high == '7' && low == 'f'))
                return true;
        }
    }
    return false;
}

#endif
