/*
 * cmd_synth.c - `vramzip synth`: writes a synthetic Hugging Face checkpoint
 * (real shapes, random trained-like weights) through vz_synth. Ctrl-C
 * stops it and leaves nothing behind.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "cancel flag is passed as volatile int *");

static void usage(FILE *f) {
    fprintf(f,
            "usage: vramzip synth --shape NAME -o DIR [--dtype bf16|f16|f32] [--seed S]\n"
            "                     [--tokenizer PATH] [--shard-size SIZE] [--force] [--list]\n\n"
            "Writes a SYNTHETIC Hugging Face checkpoint (config.json, safetensors,\n"
            "tokenizer.model, SYNTHETIC.txt): the real tensor names and shapes with random\n"
            "weights shaped like trained ones. It generates gibberish; it is for testing\n"
            "formats, compression and speed (docs/synth.md).\n\n"
            "  --shape NAME       one of the shapes below\n"
            "  -o, --out DIR      output directory (created atomically)\n"
            "  --dtype T          bf16 (default), f16 or f32\n"
            "  --seed S           random seed (default 0): same seed, same bytes\n"
            "  --tokenizer PATH   copy this SentencePiece tokenizer.model, or a byte-level BPE\n"
            "                     tokenizer.json (Llama 3) (default: a built-in SentencePiece\n"
            "                     one; tiny/small take their vocab from it)\n"
            "  --shard-size SIZE  largest safetensors shard (default 5e9 bytes, as HF)\n"
            "  --force            replace DIR if it exists and is not empty\n"
            "  --list             list the shapes and exit\n\nshapes:\n");
    vz_synth_shape_info si;
    for (int32_t i = 0; vz_synth_shape_get(i, &si) == VZ_OK; i++) {
        double p = (double)si.n_params;
        fprintf(f, "  %-15s %7.2f%s params %8.1f MB bf16  %s\n", si.name, p >= 1e9 ? p / 1e9 : p / 1e6,
                p >= 1e9 ? "B" : "M", p * 2 / 1e6, si.description);
    }
}

static void on_progress(void *ud, uint64_t done, uint64_t total, const char *tensor) {
    cli_progress *p = ud;
    if (p->total == 0) cli_progress_start(p, "synth", total);
    cli_progress_update(p, done, tensor);
}

static int parse_dtype(const char *v, vz_dtype *out) {
    if (!strcmp(v, "bf16")) *out = VZ_DTYPE_BF16;
    else if (!strcmp(v, "f16")) *out = VZ_DTYPE_F16;
    else if (!strcmp(v, "f32")) *out = VZ_DTYPE_F32;
    else return cli_usage_error("synth", "--dtype expects bf16, f16 or f32, got '%s'", v), -1;
    return 0;
}

/* Returns -1 on a bad flag, 1 when the command is done (help, list), 0 to go on. */
static int parse(int argc, char **argv, vz_synth_opts *o, const char **out) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int64_t iv;
        uint64_t sz;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "--list")) return usage(stdout), 1;
        else if (!strcmp(a, "--force")) o->force = 1;
        else if (!(v = cli_value("synth", argc, argv, &i))) return -1;
        else if (!strcmp(a, "--shape")) o->shape = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) *out = v;
        else if (!strcmp(a, "--tokenizer")) o->tokenizer_path = v;
        else if (!strcmp(a, "--dtype")) {
            if (parse_dtype(v, &o->dtype)) return -1;
        } else if (!strcmp(a, "--seed")) {
            if (cli_int("synth", a, v, 0, INT64_MAX, &iv)) return -1;
            o->seed = (uint64_t)iv;
        } else if (!strcmp(a, "--shard-size")) {
            if (cli_size("synth", a, v, &sz)) return -1;
            if (sz < 1) return cli_usage_error("synth", "--shard-size must be positive"), -1;
            o->max_shard_bytes = sz;
        } else
            return cli_usage_error("synth", "unknown option '%s'", a), -1;
    }
    if (!o->shape) return cli_usage_error("synth", "--shape is required"), -1;
    if (!*out) return cli_usage_error("synth", "-o DIR is required"), -1;
    return 0;
}

int cmd_synth(int argc, char **argv) {
    vz_synth_opts o;
    vz_synth_opts_default(&o);
    o.shape = NULL;
    const char *out = NULL;
    int r = parse(argc, argv, &o, &out);
    if (r) return r < 0 ? 2 : 0;
    cli_progress prog;
    memset(&prog, 0, sizeof prog);
    cli_catch_signals();
    o.cancel = (volatile int *)&cli_interrupted;
    o.progress = on_progress;
    o.progress_ud = &prog;
    double t0 = cli_now();
    vz_status s = vz_synth(out, &o);
    if (prog.total) cli_progress_end(&prog);
    if (s != VZ_OK) return cli_fail("synth", s);
    double dt = cli_now() - t0;
    fprintf(stderr, "vramzip synth: wrote %s (%s, %s, seed %llu): %.1f MB of weights in %.1f s (%.0f MB/s)\n", out,
            o.shape, vz_dtype_name(o.dtype), (unsigned long long)o.seed, (double)prog.done / 1e6, dt,
            dt > 0 ? (double)prog.done / 1e6 / dt : 0.0);
    return 0;
}
