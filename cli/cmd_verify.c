/*
 * cmd_verify.c - `vramzip verify` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_verify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip verify: not implemented yet\n");
    return 2;
}
