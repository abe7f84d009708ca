/*
 * main.c - the wharf command: finds the verb and hands over to it.
 * Each verb lives in src/cli/; they call the same subsystem functions the
 * REST API calls, so the CLI and the API cannot drift apart.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_cmd *const COMMANDS[] = {
    &cmd_init, &cmd_serve, &cmd_status, &cmd_flow, &cmd_send, &cmd_message, &cmd_key,
    &cmd_version,
    &cmd_audit,
    &cmd_user, &cmd_token,
    &cmd_api, &cmd_oidc, &cmd_connector,
    &cmd_partner, &cmd_cert,
    &cmd_backup, &cmd_restore,
    &cmd_alert, &cmd_incident, &cmd_notify,
    &cmd_doctor, &cmd_inventory, &cmd_cluster,
};
#define NCOMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: wharf COMMAND [options]\n\n"
               "Wharf moves business documents between your systems and your "
               "trading partners.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", COMMANDS[i]->name, COMMANDS[i]->summary);
    fprintf(f, "\n`wharf COMMAND --help` shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version.run(argc - 1, argv + 1);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], COMMANDS[i]->name) == 0)
            return COMMANDS[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "wharf: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
