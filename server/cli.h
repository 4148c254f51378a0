/*
 * cli — the subcommands of ml-connector (see CONTRACT.md "Command line").
 * Each returns the process exit status: 0 success, 1 runtime failure,
 * 2 usage or configuration error. argv[0] is the subcommand name.
 */
#ifndef MLC_CLI_H
#define MLC_CLI_H

int cli_serve(int argc, char **argv);
int cli_check_config(int argc, char **argv);
int cli_parse(int argc, char **argv);
int cli_map(int argc, char **argv);
int cli_queue(int argc, char **argv);
/* `dataverse setup|check`: provision / verify the columns and keys the mapping needs (cli_dataverse.c) */
int cli_dataverse(int argc, char **argv);

#endif
