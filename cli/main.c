/*
 * main.c - the vramzip command line: dispatches to one subcommand per file
 * (cli/cmd_*.c), each using only the public API in vramzip.h.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_cmd;

static const cli_cmd commands[] = {
    {"run", cmd_run, "generate text from a model (HF dir, GGUF, llama2.c .bin or .vz)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"synth", cmd_synth, "write a synthetic Hugging Face checkpoint with real model shapes"},
    {"convert", cmd_convert, "compress a model into a .vz file"},
    {"inspect", cmd_inspect, "list tensors, codecs and bits per weight of a model"},
    {"verify", cmd_verify, "check a .vz file, or compare two models' logits"},
    {"perplexity", cmd_perplexity, "perplexity of a model over a text file"},
    {"bench", cmd_bench, "prefill/decode speed, bandwidth and VRAM per codec on a device"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip <command> [options]   (vramzip <command> --help for details)\n\n"
               "vramzip %s: LLM inference with weights kept compressed in memory.\n\ncommands:\n",
            VZ_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vramzip %s\n", VZ_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vramzip: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
