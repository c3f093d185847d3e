/*
 * cmd_tokenize.c - `vramzip tokenize` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip tokenize: not implemented yet\n");
    return 2;
}
