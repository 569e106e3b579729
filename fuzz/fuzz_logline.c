/*
 * libFuzzer: arbitrary bytes as a log line's message, a key and values, in both formats. The
 * line always ends in its only newline, holds no other control byte, stays within the buffer,
 * and in JSON format parses (cJSON) as one object whose "msg" is a string.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/logline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input cut at NUL bytes into at most 4 strings: message, key, value, value. */
static size_t split(const uint8_t *data, size_t size, char *copy, const char *parts[4])
{
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t count = 0;
    for (char *at = copy; count < 4 && at <= copy + size; at += strlen(at) + 1)
        parts[count++] = at;
    return count;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * LOGLINE_BYTES_MAX)
        return 0;
    static char copy[2 * LOGLINE_BYTES_MAX + 1], line[LOGLINE_BYTES_MAX + 1];
    const char *parts[4] = {"", "k", "", ""};
    size_t count = split(data, size, copy, parts);
    struct logline_record record = {.time_ms = 1764606573123LL,
                                    .level = LOGLINE_ERROR,
                                    .component = "fuzz",
                                    .message = parts[0],
                                    .request_id = count > 3 ? parts[3] : ""};
    record.fields[0] = count > 1 ? parts[1] : "k";
    record.fields[1] = count > 2 ? parts[2] : "";
    record.fields[2] = "again";
    record.fields[3] = parts[0];
    record.field_count = 2;
    for (int format = 0; format < 2; format++) {
        size_t n = logline_render((enum logline_format)format, &record, line, LOGLINE_BYTES_MAX);
        if (n == 0 || n > LOGLINE_BYTES_MAX || line[n - 1] != '\n')
            abort();
        for (size_t i = 0; i + 1 < n; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                abort();
        line[n] = '\0';
        if (format == LOGLINE_JSON) {
            cJSON *json = cJSON_Parse(line);
            if (json == NULL || !cJSON_IsString(cJSON_GetObjectItem(json, "msg")))
                abort();
            cJSON_Delete(json);
        }
    }
    return 0;
}
