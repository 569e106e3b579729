/*
 * web_assets.h - the web pages compiled into the binary: web/build.mjs bundles
 * web/src and writes the table (build dir, web/web_assets.c); api_pages.c
 * serves it. Nothing is read from disk at run time.
 */
#ifndef CATRACA_GATEWAY_WEB_ASSETS_H
#define CATRACA_GATEWAY_WEB_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

struct web_asset {
    const char *path;         /* "/buyer.html", "/admin.html", "/assets/buyer-1a2b3c4d5e6f.js" */
    const char *content_type; /* with charset for text */
    const char *etag;         /* quoted, from the content: "\"1a2b3c4d5e6f\"" */
    const unsigned char *bytes;
    size_t length;
    const unsigned char *gzip; /* NULL when gzip would not be smaller */
    size_t gzip_length;
    bool is_immutable; /* a fingerprinted name: cached for a year, never revalidated */
};

extern const struct web_asset web_assets[];
extern const size_t web_asset_count;

#endif
