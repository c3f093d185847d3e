/*
 * cmd_bench.c - `vramzip bench`: speed and memory of one model under several
 * codecs on one device. Per codec: the .vz variant is built with vz_convert
 * (raw runs the source as is), then prefill tok/s over a prompt (on a GPU
 * the median of 5 runs), decode tok/s of the device token loop after a
 * warm-up, weight bytes read per token, achieved GB/s against a device copy
 * bandwidth measured in the same run (on a CPU: the read bandwidth of host
 * memory), peak VRAM, and for lossless codecs
 * whether greedy logits are byte-identical to raw. On a GPU the prefill is
 * also given as % of plain cuBLAS on the same matrices
 * (vz_session_prefill_gemm_ref, timed on the first raw bf16 row). Uses only
 * the public API (vramzip.h).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define CMD "bench"
#define MAX_CODECS 16
#define CHECK_STEPS 32       /* greedy steps whose logits are compared with raw */
#define VOCAB_CAP (1 << 18)  /* larger vocabularies skip the comparison */

typedef struct bench_args {
    const char *model, *codecs, *json, *out_dir;
    int64_t n, prompt_len, ctx, threads;
    vz_device device;
    vz_kv_mode kv;
    uint64_t vram_budget;   /* [plan] */
    vz_residency residency; /* [plan] */
} bench_args;

typedef struct bench_row {
    char codec[64];
    double prefill_tps, decode_tps, ms_tok, gb_tok, gbs, pct;
    double ref_tps; /* plain cuBLAS GEMMs of the prompt on this row's weights (raw bf16 rows), else 0 */
    double pcie_tok, h2d_gbs, h2d_pct; /* [st] bytes streamed per decoded token, GB/s, % of a pinned copy */
    uint64_t weight_bytes;
    vz_session_mem mem;
    int identical; /* -1: not checked (lossy or raw), 0: differs, 1: identical */
    int ok;
} bench_row;

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip bench -m MODEL [--device cuda|cpu] [--codec LIST] [--json FILE] [-n 128]\n"
               "                     [--prompt-len 512] [--kv f16|f32] [--out-dir DIR] [--ctx N] [-t N]\n"
               "  --codec LIST     comma-separated presets (default raw,lossless); each but raw is\n"
               "                   converted to DIR/<codec>.vz (reused when present)\n"
               "  --out-dir DIR    where the .vz variants go (default: a temporary dir, removed)\n"
               "  -n N             decode tokens timed after a 16-token warm-up\n"
               "  --prompt-len N   prefill prompt length (random ids)\n"
               "  --ctx N          context (KV cache) size; default and minimum prompt + n + 64\n"
               "  --kv f16|f32     KV cache precision (default f16 on a GPU, f32 on a CPU, as run)\n"
               "  -t, --threads N  cpu: threads (default: all); the memory read bandwidth that %%bw\n"
               "                   compares with is measured with all of them\n"
               "  --vram-budget SIZE  device memory per session (600M, 4G; default: free VRAM)\n"
               "  --residency MODE compressed (default), decompress-at-load, cache\n");
}

static int parse_args(bench_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->codecs = "raw,lossless";
    a->n = 128;
    a->prompt_len = 512;
    a->device = VZ_DEVICE_CUDA;
    a->kv = (vz_kv_mode)-1; /* f16 on a GPU, f32 on a CPU (as `run`): set below */
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) return usage(stdout), 1;
        if (!(v = cli_value(CMD, argc, argv, &i))) return 2;
        if (!strcmp(f, "-m") || !strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--codec")) a->codecs = v;
        else if (!strcmp(f, "--json")) a->json = v;
        else if (!strcmp(f, "--out-dir")) a->out_dir = v;
        else if (!strcmp(f, "-n")) { if (cli_int(CMD, f, v, 1, 1 << 20, &a->n)) return 2; }
        else if (!strcmp(f, "--prompt-len")) { if (cli_int(CMD, f, v, 1, 1 << 20, &a->prompt_len)) return 2; }
        else if (!strcmp(f, "--ctx")) { if (cli_int(CMD, f, v, 1, 1 << 22, &a->ctx)) return 2; }
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) { if (cli_int(CMD, f, v, 1, 4096, &a->threads)) return 2; }
        else if (!strcmp(f, "--vram-budget")) { if (cli_size(CMD, f, v, &a->vram_budget)) return 2; }
        else if (!strcmp(f, "--residency")) { if (cli_residency(CMD, f, v, &a->residency)) return 2; }
        else if (!strcmp(f, "--device")) { if (cli_device(CMD, f, v, &a->device)) return 2; }
        else if (!strcmp(f, "--kv")) { if (cli_kv(CMD, f, v, 0, &a->kv)) return 2; }
        else return cli_usage_error(CMD, "unknown option '%s'", f);
    }
    if (!a->model) return cli_usage_error(CMD, "-m MODEL is required");
    if (a->kv == (vz_kv_mode)-1) a->kv = a->device == VZ_DEVICE_CPU ? VZ_KV_F32 : VZ_KV_F16;
    if (a->device != VZ_DEVICE_CUDA && (a->vram_budget || a->residency != VZ_RESIDENCY_COMPRESSED))
        return cli_usage_error(CMD, "--vram-budget and --residency need --device cuda");
    if (a->device != VZ_DEVICE_CPU && a->threads) return cli_usage_error(CMD, "-t needs --device cpu");
    return 0;
}

/* Bytes of weights one decode step reads: every tensor but the embedding
 * table, of which one row is read (unless it is also the output head). */
static uint64_t bytes_per_token(const vz_model *m, const vz_model_info *info) {
    uint64_t sum = 0;
    for (int32_t i = 0; i < vz_model_n_tensors(m); i++) {
        vz_tensor_info t;
        if (vz_model_tensor_info(m, i, &t) != VZ_OK) continue;
        if (!info->tied_embeddings && !strcmp(t.name, "model.embed_tokens.weight"))
            sum += t.bytes / (uint64_t)(t.shape[0] > 0 ? t.shape[0] : 1);
        else sum += t.bytes;
    }
    return sum;
}

/* Greedy logits of CHECK_STEPS steps from BOS (eval + host argmax). */
static vz_status greedy_logits(vz_session *s, const vz_model_info *info, float *out) {
    int32_t tok = info->bos_id >= 0 ? info->bos_id : 1;
    vz_session_reset(s);
    for (int i = 0; i < CHECK_STEPS; i++) {
        float *l = out + (size_t)i * (size_t)info->vocab_size;
        vz_status st = vz_session_eval(s, &tok, 1, l, 0);
        if (st != VZ_OK) return st;
        tok = 0;
        for (int32_t j = 1; j < info->vocab_size; j++)
            if (l[j] > l[tok]) tok = j;
    }
    return VZ_OK;
}

#define PREFILL_RUNS 5

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Times prefill and decode of one model file; fills row. ref: raw's greedy
 * logits (NULL for the raw row itself, which fills check instead). */
static vz_status bench_one(const bench_args *a, const char *path, const vz_device_info *dev, bench_row *row,
                           float *check, const float *ref) {
    vz_model *m = NULL;
    vz_session *s = NULL;
    vz_status st = vz_model_open(&m, path, NULL);
    vz_model_info info;
    if (st == VZ_OK) st = vz_model_get_info(m, &info);
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.device = a->device;
    so.kv = a->kv;
    so.n_threads = (int32_t)a->threads;
    /* prompt, 16 warm-up and n timed tokens, room for VZ_CUDA_PROFILE's extra steps */
    so.n_ctx = (int32_t)(a->prompt_len + a->n + 64 > CHECK_STEPS ? a->prompt_len + a->n + 64 : CHECK_STEPS);
    if (a->ctx > so.n_ctx) so.n_ctx = (int32_t)a->ctx;
    so.vram_budget = a->vram_budget;
    so.residency = a->residency;
    if (st == VZ_OK) cli_print_plan(CMD, m, &so);
    if (st == VZ_OK) st = vz_session_create(&s, m, &so);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(a->prompt_len + a->n + 16));
    if (st == VZ_OK && !prompt) st = VZ_ERR_NOMEM;
    if (st == VZ_OK) {
        uint64_t r = 0x9e3779b97f4a7c15ull;
        for (int64_t i = 0; i < a->prompt_len; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            prompt[i] = (int32_t)((r >> 33) % (uint64_t)info.vocab_size);
        }
        /* greedy logits from BOS (compared with raw's); also the warm-up that captures the graphs */
        int fits = info.vocab_size <= VOCAB_CAP;
        st = fits ? greedy_logits(s, &info, check) : vz_session_eval(s, prompt, 8, NULL, 0);
        if (st == VZ_OK && ref && fits)
            row->identical = !memcmp(check, ref, sizeof(float) * CHECK_STEPS * (size_t)info.vocab_size);
    }
    if (st == VZ_OK) { /* one untimed prefill first: it allocates the prefill buffers, loads cuBLAS */
        vz_session_reset(s);
        st = vz_session_eval(s, prompt, (int32_t)a->prompt_len, NULL, 0);
    }
    /* the median of PREFILL_RUNS timed prefills on a GPU (one takes a few ms; single runs moved by +-2%),
     * one on a CPU (seconds) */
    double tp[PREFILL_RUNS];
    const int runs = a->device == VZ_DEVICE_CUDA ? PREFILL_RUNS : 1;
    for (int k = 0; k < runs && st == VZ_OK; k++) {
        vz_session_reset(s);
        double t0 = cli_now();
        st = vz_session_eval(s, prompt, (int32_t)a->prompt_len, NULL, 0);
        tp[k] = cli_now() - t0;
    }
    if (st == VZ_OK) {
        qsort(tp, (size_t)runs, sizeof tp[0], cmp_dbl);
        row->prefill_tps = (double)a->prompt_len / tp[runs / 2];
    }
    double ref_s = 0.0; /* unsupported (CPU, not raw bf16): no reference from this row */
    if (st == VZ_OK && a->device == VZ_DEVICE_CUDA && vz_session_prefill_gemm_ref(s, (int32_t)a->prompt_len, &ref_s) == VZ_OK &&
        ref_s > 0.0)
        row->ref_tps = (double)a->prompt_len / ref_s;
    vz_sampler_opts greedy = {0.0f, 0, 1.0f, 0};
    if (st == VZ_OK) st = vz_session_generate(s, prompt[0], 16, &greedy, prompt + a->prompt_len); /* warm-up */
    /* VZ_CUDA_PROFILE=1 profiles inside a generate of >= 64 tokens: kept out of the timed one */
    char *prof = getenv("VZ_CUDA_PROFILE");
    int profile = prof && *prof == '1';
    if (profile) unsetenv("VZ_CUDA_PROFILE");
    vz_session_mem m0;
    memset(&m0, 0, sizeof m0);
    if (st == VZ_OK) st = vz_session_mem_info(s, &m0);
    if (st == VZ_OK) {
        double t0 = cli_now();
        st = vz_session_generate(s, prompt[a->prompt_len + 15], (int32_t)a->n, &greedy, prompt + a->prompt_len);
        double dt = cli_now() - t0;
        row->decode_tps = (double)a->n / dt;
        row->ms_tok = 1e3 * dt / (double)a->n;
    }
    if (st == VZ_OK) st = vz_session_mem_info(s, &row->mem);
    if (st == VZ_OK) { /* [st] host-to-device bytes of the timed decode only */
        row->pcie_tok = (double)(row->mem.h2d - m0.h2d) / (double)a->n;
        row->h2d_gbs = row->pcie_tok * row->decode_tps / 1e9;
        row->h2d_pct = dev->h2d_gbs > 0 ? 100.0 * row->h2d_gbs / dev->h2d_gbs : 0.0;
    }
    if (profile) setenv("VZ_CUDA_PROFILE", "1", 1);
    if (st == VZ_OK && profile && a->n >= 64) { /* untimed; the session prints to stderr */
        fprintf(stderr, "profile: %s\n", path);
        st = vz_session_generate(s, prompt[a->prompt_len], 64, &greedy, prompt + a->prompt_len);
    }
    if (st == VZ_OK) st = vz_session_mem_info(s, &row->mem);
    if (st == VZ_OK) {
        row->weight_bytes = info.weight_bytes;
        row->gb_tok = (double)bytes_per_token(m, &info) / 1e9;
        row->gbs = row->gb_tok * row->decode_tps;
        row->pct = dev->copy_gbs > 0 ? 100.0 * row->gbs / dev->copy_gbs : 0.0;
        row->ok = 1;
    }
    free(prompt);
    vz_session_free(s);
    vz_model_close(m);
    return st;
}

/* 1 if the preset's codec (name before ':') is lossless. */
static int codec_lossless(const char *spec) {
    size_t k = strcspn(spec, ":");
    const char *name;
    int32_t ll = 0;
    for (int32_t i = 0; (name = vz_codec_info(i, NULL, &ll)) != NULL; i++)
        if (strlen(name) == k && !strncmp(name, spec, k)) return ll;
    return 0;
}

/* The model file for codec c: the source for raw, else DIR/<c>.vz (converted if absent). */
static vz_status variant(const bench_args *a, const char *dir, const char *c, char *path, size_t cap) {
    if (!strcmp(c, "raw")) return snprintf(path, cap, "%s", a->model), VZ_OK;
    snprintf(path, cap, "%s/%s.vz", dir, c);
    for (char *p = path + strlen(dir) + 1; *p; p++)
        if (*p == ':' || *p == '/') *p = '_';
    struct stat sb;
    if (stat(path, &sb) == 0) return VZ_OK;
    fprintf(stderr, "bench: converting %s -> %s\n", a->model, path);
    vz_convert_opts co;
    vz_convert_opts_default(&co);
    co.codec_spec = c;
    return vz_convert(a->model, path, &co);
}

static void print_row(const bench_row *r, double ref_tps) {
    char pc[16] = "-";
    if (ref_tps > 0) snprintf(pc, sizeof pc, "%.1f%%", 100.0 * r->prefill_tps / ref_tps);
    printf("%-12s %9.1f %11.1f %8s %11.1f %8.3f %8.3f %8.1f %6.1f%% %9.1f %9.1f %10.1f %9.1f %7.1f %6.1f%%  %s\n",
           r->codec, (double)r->weight_bytes / 1e6, r->prefill_tps, pc, r->decode_tps, r->ms_tok, r->gb_tok, r->gbs,
           r->pct, (double)r->mem.weights / 1e6, (double)r->mem.kv / 1e6, (double)r->mem.peak / 1e6,
           r->pcie_tok / 1e6, r->h2d_gbs, r->h2d_pct, r->identical < 0 ? "-" : r->identical ? "yes" : "NO");
}

static int write_json(const char *file, const vz_device_info *dev, const bench_args *a, const bench_row *rows,
                      int n, double ref_tps) {
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "rows");
    cJSON_AddStringToObject(root, "model", a->model);
    cJSON_AddStringToObject(root, "device", dev->name);
    /* a GPU's roofline is a device copy's bandwidth, a CPU's the read bandwidth of host memory */
    const int cpu = a->device == VZ_DEVICE_CPU;
    cJSON_AddNumberToObject(root, cpu ? "memory_read_gbs" : "copy_gbs", dev->copy_gbs);
    if (cpu) cJSON_AddNumberToObject(root, "threads", (double)a->threads);
    cJSON_AddNumberToObject(root, "pinned_h2d_gbs", dev->h2d_gbs);
    static const char *const res[] = {"compressed", "decompress-at-load", "cache"};
    cJSON_AddNumberToObject(root, "vram_budget", (double)a->vram_budget);
    cJSON_AddStringToObject(root, "residency", res[a->residency]);
    cJSON_AddNumberToObject(root, "prompt_len", (double)a->prompt_len);
    cJSON_AddNumberToObject(root, "n_decode", (double)a->n);
    if (ref_tps > 0) cJSON_AddNumberToObject(root, "prefill_cublas_ref_tok_s", ref_tps);
    cJSON_AddNumberToObject(root, "ctx", (double)(a->ctx > a->prompt_len + a->n + 64 ? a->ctx : a->prompt_len + a->n + 64));
    for (int i = 0; i < n; i++) {
        const bench_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "codec", r->codec);
        cJSON_AddBoolToObject(o, "ok", r->ok);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)r->weight_bytes);
        cJSON_AddNumberToObject(o, "prefill_tok_s", r->prefill_tps);
        if (ref_tps > 0) cJSON_AddNumberToObject(o, "prefill_pct_of_cublas", 100.0 * r->prefill_tps / ref_tps);
        cJSON_AddNumberToObject(o, "decode_tok_s", r->decode_tps);
        cJSON_AddNumberToObject(o, "ms_per_token", r->ms_tok);
        cJSON_AddNumberToObject(o, "gb_read_per_token", r->gb_tok);
        cJSON_AddNumberToObject(o, "achieved_gbs", r->gbs);
        cJSON_AddNumberToObject(o, cpu ? "pct_of_read_bw" : "pct_of_copy_bw", r->pct);
        cJSON_AddNumberToObject(o, "vram_weights", (double)r->mem.weights);
        cJSON_AddNumberToObject(o, "vram_kv", (double)r->mem.kv);
        cJSON_AddNumberToObject(o, "vram_scratch", (double)r->mem.scratch);
        cJSON_AddNumberToObject(o, "vram_peak", (double)r->mem.peak);
        cJSON_AddNumberToObject(o, "pcie_bytes_per_token", r->pcie_tok);
        cJSON_AddNumberToObject(o, "h2d_gbs", r->h2d_gbs);
        cJSON_AddNumberToObject(o, "pct_of_pinned_h2d", r->h2d_pct);
        if (r->identical >= 0) cJSON_AddBoolToObject(o, "bit_identical_vs_raw", r->identical);
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_Print(root);
    FILE *f = txt ? fopen(file, "w") : NULL;
    int rc = f && fputs(txt, f) >= 0 && fclose(f) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "vramzip bench: cannot write %s\n", file);
    free(txt);
    cJSON_Delete(root);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    bench_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    vz_device_info dev;
    vz_status st = vz_device_get_info(a.device, 1, &dev);
    if (st != VZ_OK) return cli_fail(CMD, st);
    char tmp[512] = "";
    const char *dir = a.out_dir;
    if (!dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/vzbench.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(tmp)) return fprintf(stderr, "vramzip bench: cannot create %s\n", tmp), 1;
        dir = tmp;
    } else mkdir(dir, 0755);
    if (a.device == VZ_DEVICE_CPU)
        printf("device: %s, %.1f GiB, memory read %.1f GB/s (all threads; %%bw is of this)\n", dev.name,
               (double)dev.total_bytes / (1u << 30), dev.copy_gbs);
    else
        printf("device: %s, %.1f GiB, device-to-device copy %.0f GB/s (read + write), pinned host-to-device %.1f GB/s\n",
               dev.name, (double)dev.total_bytes / (1u << 30), dev.copy_gbs, dev.h2d_gbs);
    if (a.vram_budget || a.residency != VZ_RESIDENCY_COMPRESSED)
        printf("vram budget: %.0f MiB, residency %s\n", (double)a.vram_budget / 1048576.0,
               a.residency == VZ_RESIDENCY_CACHE ? "cache" : a.residency ? "decompress-at-load" : "compressed");
    printf("model: %s, prompt %lld tokens, decode %lld tokens (batch 1), KV %s, context %lld\n", a.model,
           (long long)a.prompt_len, (long long)a.n, a.kv == VZ_KV_F16 ? "f16" : "f32",
           (long long)(a.ctx > a.prompt_len + a.n + 64 ? a.ctx : a.prompt_len + a.n + 64));
    printf("%-12s %9s %11s %8s %11s %8s %8s %8s %7s %9s %9s %10s %9s %7s %7s  %s\n", "codec", "weightsMB", "prefill t/s",
           "%cuBLAS", "decode t/s", "ms/tok", "GB/tok", "GB/s", "%bw", "vramW MB", "KV MB", "peak MB", "PCIe MB/t", "H2D GB/s",
           "%pin", "bit-identical");
    bench_row rows[MAX_CODECS];
    float *ref = malloc(sizeof(float) * CHECK_STEPS * VOCAB_CAP), *chk = malloc(sizeof(float) * CHECK_STEPS * VOCAB_CAP);
    int n = 0, have_ref = 0, fails = 0;
    double ref_tps = 0.0; /* plain cuBLAS on the prompt's GEMMs (the first raw bf16 row measures it) */
    char list[1024], path[1024];
    snprintf(list, sizeof list, "%s", a.codecs);
    for (char *c = strtok(list, ","); c && n < MAX_CODECS && ref && chk; c = strtok(NULL, ","), n++) {
        bench_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        snprintf(r->codec, sizeof r->codec, "%s", c);
        int is_raw = !strcmp(c, "raw");
        int lossless = codec_lossless(c);
        r->identical = -1;
        st = variant(&a, dir, c, path, sizeof path);
        if (st == VZ_OK)
            st = bench_one(&a, path, &dev, r, is_raw ? ref : chk, (!is_raw && lossless && have_ref) ? ref : NULL);
        if (st == VZ_OK && is_raw) have_ref = 1;
        if (st != VZ_OK) {
            fprintf(stderr, "vramzip bench: %s: %s: %s\n", c, vz_status_name(st), vz_last_error());
            fails++;
            continue;
        }
        if (ref_tps <= 0.0 && r->ref_tps > 0.0) {
            ref_tps = r->ref_tps;
            printf("prefill reference: plain cuBLAS bf16 GEMMs of the same matrices (no decode, attention, norms): "
                   "%.3f ms for %lld tokens = %.0f tok/s\n", 1e3 * (double)a.prompt_len / ref_tps, (long long)a.prompt_len,
                   ref_tps);
        }
        print_row(r, ref_tps);
        fflush(stdout);
        if (r->identical == 0) fails++;
    }
    free(ref);
    free(chk);
    if (a.json && write_json(a.json, &dev, &a, rows, n, ref_tps)) fails++;
    if (tmp[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "vramzip bench: could not remove %s\n", tmp);
    }
    return fails ? 1 : 0;
}
