/*
 * cmd_synth.c - `vramzip synth` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_synth(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip synth: not implemented yet\n");
    return 2;
}
