/*
 * version.c (cli) - `wharf version [--deps]`: the version and, with
 * --deps, the versions of every linked library, read from the libraries
 * at run time (a software bill of materials, R10).
 */
#include <gnu/libc-version.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <zlib.h>

#include "cli/cli.h"

static int version_run(int argc, char **argv)
{
    static const char *const opts[] = { "--deps", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_version, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    printf("wharf %s\n", WHARF_VERSION);
    if (!a.flags[0])
        return EXIT_OK;
    printf("openssl %s\n", OpenSSL_version(OPENSSL_FULL_VERSION_STRING));
    printf("sqlite %s\n", sqlite3_libversion());
    printf("jansson %s\n", jansson_version_str());
    printf("zlib %s\n", zlibVersion());
    printf("glibc %s\n", gnu_get_libc_version());
    return EXIT_OK;
}

const struct cli_cmd cmd_version = {
    "version", "print the version (--deps: and every linked library's)",
    "wharf version [--deps]\n",
    version_run,
};
