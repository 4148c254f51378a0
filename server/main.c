/*
 * ml-connector — entry point: dispatch to a subcommand (server/cli.h).
 */
#include <stdio.h>
#include <string.h>

#include "server/cli.h"

#ifndef MLC_VERSION
#define MLC_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  ml-connector serve        -c FILE          run the gateway (HTTP ingest + delivery)\n"
          "  ml-connector check-config -c FILE          validate; print the effective config, secrets masked\n"
          "  ml-connector parse  FILE.xml...            print the IDocs in the files as JSON\n"
          "  ml-connector map    -c FILE  FILE.xml...   print the Dataverse operations they would become\n"
          "  ml-connector queue  -c FILE  stats|list|show|replay ...\n"
          "  ml-connector dataverse setup|check -c FILE  create / verify the columns and keys the mapping needs\n"
          "  ml-connector version | --help\n"
          "-c may also come from the environment variable MLC_CONFIG.\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"serve", cli_serve}, {"check-config", cli_check_config}, {"parse", cli_parse},
        {"map", cli_map},     {"queue", cli_queue},   {"dataverse", cli_dataverse},
    };
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("ml-connector %s\n", MLC_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ml-connector: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
