/*
 * cmd_perplexity.c - `vramzip perplexity` (placeholder until implemented).
 */
#include <stdio.h>

#include "cli.h"

int cmd_perplexity(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vramzip perplexity: not implemented yet\n");
    return 2;
}
