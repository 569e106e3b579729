/*
 * page_headers.c - Accept-Encoding and If-None-Match, read without copying: a
 * header value is a list of comma-separated members, each scanned once.
 */
#include "gateway/page_headers.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The q parameter of one member [at, end): 1 when absent, 0 when it is 0 (or 0.0...). */
static bool is_refused(const char *at, const char *end)
{
    for (const char *semicolon = memchr(at, ';', (size_t)(end - at)); semicolon != NULL;
         semicolon = memchr(semicolon + 1, ';', (size_t)(end - semicolon - 1))) {
        const char *p = semicolon + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            /* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
            if (p >= end || *p != '0')
                return false;
            for (p++; p < end && (*p == '.' || *p == '0'); p++)
                ;
            return p == end || *p == ' ' || *p == '\t' || *p == ';';
        }
        if (semicolon + 1 >= end)
            break;
    }
    return false;
}

bool page_accepts_gzip(const char *value)
{
    while (value != NULL && *value != '\0') {
        value += strspn(value, " \t,");
        const char *end = value + strcspn(value, ",");
        size_t token = strcspn(value, " \t;,");
        bool is_gzip = (token == 4 && strncasecmp(value, "gzip", 4) == 0) ||
                       (token == 1 && value[0] == '*');
        if (is_gzip && !is_refused(value, end))
            return true;
        value = end;
    }
    return false;
}

bool page_is_not_modified(const char *value, const char *etag)
{
    if (value == NULL)
        return false;
    size_t length = strlen(etag);
    while (*value != '\0') {
        value += strspn(value, " \t,");
        if (*value == '*')
            return true;
        if (strncmp(value, "W/", 2) == 0)
            value += 2;
        size_t member = strcspn(value, ", \t");
        if (member == length && memcmp(value, etag, length) == 0)
            return true;
        value += member;
    }
    return false;
}
