/*
 * cmd_inspect.c - `vramzip inspect` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip inspect: not implemented yet\n");
    return 2;
}
