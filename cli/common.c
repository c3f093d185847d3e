/*
 * common.c - flag parsing, errors, signals and the progress bar shared by
 * the subcommands.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted = 0;

static void on_signal(int sig) {
    (void)sig;
    cli_interrupted = 1;
}

void cli_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "vramzip %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'vramzip %s --help')\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, vz_status s) {
    fprintf(stderr, "vramzip %s: error %s: %s\n", cmd, vz_status_name(s), vz_last_error());
    return 1;
}

int cli_int(const char *cmd, const char *flag, const char *val, int64_t lo, int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end != '\0' || v < lo || v > hi) {
        cli_usage_error(cmd, "%s expects an integer in [%lld, %lld], got '%s'", flag, (long long)lo,
                        (long long)hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *cmd, const char *flag, const char *val, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end != '\0' || !(v >= lo && v <= hi)) {
        cli_usage_error(cmd, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_size(const char *cmd, const char *flag, const char *val, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    double mul = 1;
    if (!errno && end != val) {
        char u = (char)toupper((unsigned char)*end);
        if (u == 'K') mul = 1024.0;
        else if (u == 'M') mul = 1024.0 * 1024;
        else if (u == 'G') mul = 1024.0 * 1024 * 1024;
        else if (u == 'T') mul = 1024.0 * 1024 * 1024 * 1024;
        if (mul > 1) {
            end++;
            if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0) end += strlen(end);
        } else if (strcasecmp(end, "B") == 0) {
            end++;
        }
    }
    if (errno || end == val || *end != '\0' || !(v >= 0) || v * mul > 1.8e19) {
        cli_usage_error(cmd, "%s expects a size like 600M or 4G, got '%s'", flag, val);
        return -1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *label, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->t0 = p->last = cli_now();
    const char *env = getenv("VZ_PROGRESS");
    p->enabled = env ? atoi(env) != 0 : isatty(2);
}

void cli_progress_update(cli_progress *p, uint64_t done, const char *item) {
    p->done = done;
    if (!p->enabled) return;
    double now = cli_now();
    if (now - p->last < 0.1 && done < p->total) return;
    p->last = now;
    double el = now - p->t0, frac = p->total ? (double)done / (double)p->total : 1.0;
    double rate = el > 0 ? (double)done / el / 1e6 : 0;
    double eta = frac > 0 ? el / frac - el : 0;
    int w = 30, fill = (int)(frac * w);
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = '\0';
    fprintf(stderr, "\r%s [%s] %5.1f%% %7.1f MB/s eta %4.0fs %-40.40s", p->label, bar, 100 * frac, rate,
            eta, item ? item : "");
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (!p->enabled) return;
    cli_progress_update(p, p->total, "done");
    fprintf(stderr, "\n");
}
