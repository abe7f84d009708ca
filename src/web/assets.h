/*
 * assets.h - the console's files (web/ of the repository), compiled into
 * the binary by scripts/embed-web.pl at build time (build/gen/
 * web_assets.c). Nothing is read from disk at run time.
 */
#ifndef WHARF_WEB_ASSETS_H
#define WHARF_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;               /* "/index.html", "/js/app.js" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

/* Static tables of the generated file, sorted by path. */
extern const struct web_asset web_assets[];
extern const size_t web_nassets;
extern const size_t web_total_bytes;

#endif
