/*
 * run.h - `vramzip run`'s arguments and the pieces shared by cmd_run.c
 * (one prompt, streamed) and run_batch.c ([batch] several prompts
 * generated together, one sequence each).
 */
#ifndef VZ_CLI_RUN_H
#define VZ_CLI_RUN_H

#include <stdint.h>

#include "vramzip.h"

typedef struct run_args {
    const char *model, *tokenizer, *prompt, *dump;
    const char *prompts[VZ_MAX_SEQ]; /* [batch] the -p values, then the --prompts lines */
    int32_t n_prompts;
    const char *prompts_file;        /* [batch] --prompts */
    char *prompts_buf;               /* [batch] the file's text (owned; prompts point into it) */
    int64_t n_predict, n_ctx, threads;
    int64_t seed;
    int seed_given, print_ids, check;
    double temp, top_p;
    int64_t top_k;
    vz_kv_mode kv;
    vz_device device;
    uint64_t vram_budget;   /* [plan] */
    vz_residency residency; /* [plan] */
    int chat;                        /* --chat: each prompt is a user message in the model's chat format */
    int interactive;                 /* -i: a conversation on stdin (run_chat.c) */
    const char *chat_format, *system; /* --chat-template NAME (else the model's), --system TEXT */
} run_args;

/* Appends prompt p (from `what`: "-p" or "--prompts FILE line N"); 0, or -1
 * after an error naming it (empty, or more than VZ_MAX_SEQ prompts). */
int run_add_prompt(run_args *a, const char *p, const char *what);
/* Reads a->prompts_file, one prompt per line (a final newline is fine),
 * appending each; 0, or 1 after printing the error. */
int run_read_prompts(run_args *a);

/* The sampler of --temp, --top-k, --top-p and --seed; sequence seq of a
 * batch samples with seed + seq. */
vz_sampler_opts run_sampler_opts(const run_args *a, uint64_t seq);

/* Whether id is one of the model's stop ids (info->eos_ids). */
int run_is_stop(const vz_model_info *info, int32_t id);

/* The ids of prompt (BOS first; NULL: BOS alone) in a malloc'ed array; a
 * CLI exit code (0 ok). With --chat: the conversation [system,] user prompt
 * in the chat format, ending with the assistant's header. */
int run_prompt_ids(const run_args *a, const char *prompt, const vz_model *m, const vz_model_info *info, int32_t **ids,
                   int32_t *n);

/* The ids of msgs[0..n) in the chat format (a->chat_format, else the
 * model's), with the assistant's header when gen, in a malloc'ed array; a
 * CLI exit code. */
int run_chat_ids(const run_args *a, const vz_model *m, const vz_chat_msg *msgs, int32_t n, int gen, int32_t **ids,
                 int32_t *cnt);

/* -i: a conversation on standard input, one user message a line (the
 * first may be -p), each answered in the chat format with one session; a
 * CLI exit code. */
int run_chat(const run_args *a, vz_model *m, const vz_session_opts *so);

/* Generates from every prompt of a together (one session of n_prompts
 * sequences) and prints each sequence's output labelled; a CLI exit code. */
int run_batch(const run_args *a, vz_model *m);

#endif
