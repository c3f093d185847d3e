/*
 * cmd_convert.c - `vramzip convert` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_convert(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip convert: not implemented yet\n");
    return 2;
}
