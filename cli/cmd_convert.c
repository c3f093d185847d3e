/*
 * cmd_convert.c - `vramzip convert SRC -o OUT.vz [--codec SPEC] [-z TOK]`:
 * compresses any readable model into a .vz container (docs/format.md) with
 * vz_convert. Bad specs exit 2 before anything is written; SIGINT leaves no
 * partial file (the library writes to a temporary file renamed at the end).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip convert SRC -o OUT.vz [--codec SPEC] [-z TOKENIZER]\n\n"
               "SRC: a Hugging Face directory, a GGUF file, a llama2.c .bin or a .vz file.\n"
               "  -o, --output PATH   the .vz file to write (written atomically)\n"
               "  -c, --codec SPEC    a preset, or comma-separated glob=codec rules over tensor\n"
               "                      names (fnmatch, first match wins; unmatched tensors stay raw):\n"
               "                        --codec lossless\n"
               "                        --codec q4:g32            (gN: group size, N: level)\n"
               "                        --codec lossless:k4       (kN: lossless code bits, 3 or 4)\n"
               "                        --codec '*.mlp.*=q8,*.self_attn.*=lossless,*=raw'\n"
               "                      A glob matches the name with or without '.weight'; a rule\n"
               "                      matching no tensor gets a note. 1-D tensors (norms) always\n"
               "                      stay raw. Default: raw.\n"
               "  -z, --tokenizer P   tokenizer for a llama2.c .bin (tokenizer.bin / .model)\n"
               "  -q, --quiet         no notes\n\ncodecs:\n");
    const char *doc;
    int32_t lossless;
    for (int32_t i = 0; vz_codec_info(i, &doc, &lossless); i++)
        fprintf(f, "  %-14s %-8s %s\n", vz_codec_info(i, NULL, NULL), lossless ? "lossless" : "lossy", doc);
}

typedef struct conv_ui {
    cli_progress bar;
    int started, quiet;
} conv_ui;

static void on_progress(void *user, int32_t done, int32_t total, uint64_t bytes_done, uint64_t bytes_total,
                        const char *tensor) {
    conv_ui *ui = user;
    if (!ui->started) {
        cli_progress_start(&ui->bar, "convert", bytes_total);
        ui->started = 1;
    }
    char item[160];
    snprintf(item, sizeof item, "%d/%d %s", (int)done, (int)total, tensor);
    cli_progress_update(&ui->bar, bytes_done, item);
}

static void on_note(void *user, const char *msg) {
    conv_ui *ui = user;
    if (!ui->quiet) fprintf(stderr, "%snote: %s\n", ui->bar.enabled ? "\n" : "", msg);
}

int cmd_convert(int argc, char **argv) {
    const char *src = NULL, *out = NULL, *v;
    vz_convert_opts o;
    vz_convert_opts_default(&o);
    conv_ui ui = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = cli_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--codec")) {
            if (!(o.codec_spec = cli_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer")) {
            if (!(v = cli_value("convert", argc, argv, &i))) return 2;
            o.model.tokenizer_path = v;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            ui.quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("convert", "unknown option '%s'", a);
        } else if (!src) {
            src = a;
        } else {
            return cli_usage_error("convert", "more than one source model ('%s', '%s')", src, a);
        }
    }
    if (!src) return cli_usage_error("convert", "no source model given");
    if (!out) return cli_usage_error("convert", "no output given (-o OUT.vz)");
    vz_status s = vz_codec_spec_check(o.codec_spec);
    if (s != VZ_OK) return cli_usage_error("convert", "bad --codec: %s", vz_last_error());
    cli_catch_signals();
    o.progress = on_progress;
    o.note = on_note;
    o.user = &ui;
    o.cancel = (volatile int *)&cli_interrupted;
    double t0 = cli_now();
    s = vz_convert(src, out, &o);
    if (ui.started) cli_progress_end(&ui.bar);
    if (s != VZ_OK) return cli_fail("convert", s);
    if (!ui.quiet)
        fprintf(stderr, "wrote %s (%.1f MB of source weights in %.2f s)\n", out, (double)ui.bar.total / 1e6,
                cli_now() - t0);
    return 0;
}
