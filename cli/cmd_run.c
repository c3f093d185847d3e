/*
 * cmd_run.c - `vramzip run` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip run: not implemented yet\n");
    return 2;
}
