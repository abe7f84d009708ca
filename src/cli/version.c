/*
 * version.c (cli) - `wharf version [--deps|--sbom]`: the version and, with
 * --deps, every linked library's version as that library reports it at run
 * time; with --sbom, the software bill of materials as CycloneDX JSON with
 * every loaded file's SHA-256 (security/sbom.h, R10).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "security/sbom.h"

static int version_sbom(void)
{
    struct error err = {0};
    json_t *bom = sbom_json(&err);
    char *text = bom ? json_dumps(bom, JSON_INDENT(2)) : NULL;
    json_decref(bom);
    if (text == NULL)
        return cli_fail("cannot make the bill of materials: %s",
                        err.msg[0] ? err.msg : "out of memory");
    puts(text);
    free(text);
    return EXIT_OK;
}

static int version_run(int argc, char **argv)
{
    static const char *const opts[] = { "--deps", "--sbom", NULL };
    struct cli_args a;
    int p = cli_parse(&cmd_version, argc, argv, opts, &a);
    if (p != 0)
        return p > 0 ? EXIT_OK : EXIT_USAGE;
    if (a.flags[0] && a.flags[1])
        return cli_usage(&cmd_version, "--deps or --sbom, not both");
    if (a.flags[1])
        return version_sbom();
    printf("wharf %s\n", WHARF_VERSION);
    if (a.flags[0])
        sbom_print_text(stdout);
    return EXIT_OK;
}

const struct cli_cmd cmd_version = {
    "version", "print the version (--deps: every linked library's; --sbom: "
    "a CycloneDX bill of materials)",
    "wharf version [--deps | --sbom]\n",
    version_run,
};
