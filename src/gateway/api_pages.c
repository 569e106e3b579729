/*
 * api_pages.c - the buyer's page (`/`, `/e/{event}`), the organizer's console
 * (`/admin`) and their assets (`/assets/{name}`), served from the table that
 * web/build.mjs compiles into the binary (web_assets.h). The same in embedded
 * and distributed mode: the pages only call the public API.
 *
 * Every answer carries a strict Content-Security-Policy (nothing from another
 * origin, no inline script or style), nosniff and no-referrer. Fingerprinted
 * assets are cached for a year; the HTML is revalidated (ETag, 304) so a new
 * binary's pages are picked up at once. gzip is sent when the client accepts it.
 */
#include <stdio.h>
#include <string.h>

#include "gateway/api_internal.h"
#include "gateway/page_headers.h"
#include "gateway/web_assets.h"

#define ASSET_PATH_MAX 96

/* frame-ancestors 'none': the buyer's page is a top-level page (a token is handed over by a
 * link's fragment or by postMessage from the window that opened it, docs/API.md). */
static const char content_security_policy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

static const struct web_asset *find_asset(const char *path)
{
    for (size_t i = 0; i < web_asset_count; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}

/* A demo on a public address (--demo-public) says so on its pages and in a header. */
static bool is_public_demo(const struct route_context *c)
{
    return c->api->config.is_demo_public;
}

static void serve(struct route_context *c, const struct web_asset *asset)
{
    const char *cache = asset->is_immutable ? "public, max-age=31536000, immutable" : "no-cache";
    bool is_gzip = asset->gzip != NULL && page_accepts_gzip(http_header(c->request, "Accept-Encoding"));
    const char *headers[] = {"Cache-Control", cache,
                             "ETag", asset->etag,
                             "Vary", "Accept-Encoding",
                             "Content-Security-Policy", content_security_policy,
                             "X-Content-Type-Options", "nosniff",
                             "Referrer-Policy", "no-referrer",
                             is_gzip ? "Content-Encoding" : NULL, "gzip",
                             NULL, NULL, NULL};
    if (is_public_demo(c)) { /* after Content-Encoding, or in its place */
        size_t at = is_gzip ? 14 : 12;
        headers[at] = "X-Catraca-Demo-Public";
        headers[at + 1] = "true";
    }
    if (page_is_not_modified(http_header(c->request, "If-None-Match"), asset->etag)) {
        api_reply(c, 304, NULL, NULL, 0, headers);
        return;
    }
    const unsigned char *bytes = is_gzip ? asset->gzip : asset->bytes;
    size_t length = is_gzip ? asset->gzip_length : asset->length;
    api_reply(c, 200, asset->content_type, (const char *)bytes, length, headers);
}

static void serve_path(struct route_context *c, const char *path)
{
    const struct web_asset *asset = find_asset(path);
    if (asset == NULL)
        api_reply_error(c, 404, "not_found", "no such path", NULL);
    else
        serve(c, asset);
}

void api_pages_buyer(struct route_context *c)
{
    serve_path(c, is_public_demo(c) ? "/buyer-public-demo.html" : "/buyer.html");
}

void api_pages_admin(struct route_context *c)
{
    serve_path(c, is_public_demo(c) ? "/admin-public-demo.html" : "/admin.html");
}

void api_pages_favicon(struct route_context *c)
{
    serve_path(c, "/favicon.svg");
}

/* /assets/{name}: the router matched name as an id ([A-Za-z0-9._-], at most 64). */
void api_pages_asset(struct route_context *c)
{
    char path[ASSET_PATH_MAX];
    snprintf(path, sizeof(path), "/assets/%s", c->segments[1]);
    serve_path(c, path);
}
