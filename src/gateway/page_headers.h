/*
 * page_headers.h - the two request headers the pages read (api_pages.c):
 * Accept-Encoding (is gzip welcome?) and If-None-Match (is the copy the
 * client holds the current one?). Pure functions over a header value, with
 * a fuzz target (fuzz/fuzz_page_headers.c).
 */
#ifndef CATRACA_GATEWAY_PAGE_HEADERS_H
#define CATRACA_GATEWAY_PAGE_HEADERS_H

#include <stdbool.h>

/* True when value (NULL: no header) lists gzip or `*` without q=0 (RFC 9110 12.5.3). */
bool page_accepts_gzip(const char *value);

/* True when value (NULL: no header) is `*` or lists etag, a quoted strong ETag (RFC 9110
 * 13.1.2; a weak W/"x" matches too, the weak comparison that If-None-Match uses). */
bool page_is_not_modified(const char *value, const char *etag);

#endif
