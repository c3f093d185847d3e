/*
 * cli.h - shared pieces of the vramzip subcommands: the command table's
 * entry points and strict flag-value parsing (a bad value is an error that
 * names the flag, never a silent default).
 */
#ifndef VZ_CLI_H
#define VZ_CLI_H

#include <stdint.h>
#include <signal.h>

#include "vramzip.h"

int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Prints "vramzip <cmd>: message" to stderr; returns 2 (usage) for chaining. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* Prints "vramzip <cmd>: <status name>: <vz_last_error()>" and returns 1. */
int cli_fail(const char *cmd, vz_status s);

/* Strict parsers: return 0 on success, print an error naming the flag and
 * return -1 otherwise. */
int cli_int(const char *cmd, const char *flag, const char *val, int64_t lo, int64_t hi, int64_t *out);
int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out);
/* Sizes like 600M, 4G, 1.5GiB, 123456 (bytes). */
int cli_size(const char *cmd, const char *flag, const char *val, uint64_t *out);

/* [plan] --residency compressed|decompress-at-load|cache (cli_int's
 * convention), and the plan of a CUDA session on stderr (nothing for cpu). */
int cli_residency(const char *cmd, const char *flag, const char *val, vz_residency *out);
void cli_print_plan(const char *cmd, const vz_model *m, const vz_session_opts *so);
/* --device cpu|cuda and --kv f32|f16[|off] (cli_int's convention). */
int cli_device(const char *cmd, const char *flag, const char *val, vz_device *out);
int cli_kv(const char *cmd, const char *flag, const char *val, int allow_off, vz_kv_mode *out);

/* Value of the flag at argv[*i] (advancing *i), or NULL after printing an
 * error when it is missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);

/* Set by SIGINT/SIGTERM once cli_catch_signals() ran; long jobs poll it and
 * clean up (no partial output files). */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_signals(void);

/* Progress bar on stderr (only when stderr is a terminal or VZ_PROGRESS=1). */
typedef struct cli_progress {
    const char *label;
    uint64_t total, done;
    double t0, last;
    int enabled;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label, uint64_t total);
void cli_progress_update(cli_progress *p, uint64_t done, const char *item);
void cli_progress_end(cli_progress *p);

double cli_now(void); /* monotonic seconds */

#endif
