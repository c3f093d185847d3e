/*
 * batch_bench.c - [batch] decode speed of B sequences generated together
 * (vz_session_generate_batch) on a CUDA session, for each model given (e.g.
 * raw and lossless .vz of one checkpoint) and each B: every sequence is
 * prefilled with its own random prompt, then a warm-up and a timed greedy
 * generation; aggregate tok/s (all sequences) and per-sequence tok/s. Checks
 * (greedy ids) that sequence 0 generates the same ids at every B, and that
 * every model after the first generates the first model's ids (lossless:
 * identical). Usage:
 *   batch_bench [--seqs 1,2,4,8] [-n 128] [--prompt-len 512] [--ctx 2048] MODEL...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vramzip.h"

#define WARM 16

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct bench_cfg {
    int32_t seqs[VZ_MAX_SEQ], n_b, n, prompt_len, ctx;
} bench_cfg;

/* One model at B sequences: times into *tps (aggregate), ids (B, n) into out. */
static int run_b(vz_model *m, const bench_cfg *c, int32_t B, double *tps, double *pf_tps, int32_t *out,
                 uint64_t *kv) {
    vz_model_info info;
    vz_model_get_info(m, &info);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F16, o.n_ctx = c->ctx, o.n_seq = B;
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, m, &o);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)c->prompt_len), first[VZ_MAX_SEQ];
    int32_t *warm = malloc(sizeof(int32_t) * WARM * VZ_MAX_SEQ);
    vz_sampler_opts so[VZ_MAX_SEQ];
    double t0 = now();
    for (int32_t b = 0; st == VZ_OK && b < B; b++) {
        uint64_t r = 12345 + (uint64_t)b; /* sequence b's prompt, the same at every B */
        for (int32_t i = 0; i < c->prompt_len; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            prompt[i] = (int32_t)((r >> 33) % (uint64_t)info.vocab_size);
        }
        st = vz_session_eval_seq(s, b, prompt, c->prompt_len - 1, NULL, 0);
        first[b] = prompt[c->prompt_len - 1];
        so[b] = (vz_sampler_opts){0.0f, 0, 1.0f, (uint64_t)b};
    }
    *pf_tps = (double)B * (c->prompt_len - 1) / (now() - t0);
    if (st == VZ_OK) st = vz_session_generate_batch(s, B, NULL, first, WARM, so, warm);
    for (int32_t b = 0; b < B; b++) first[b] = warm[b * WARM + WARM - 1];
    t0 = now();
    if (st == VZ_OK) st = vz_session_generate_batch(s, B, NULL, first, c->n, so, out);
    double t = now() - t0;
    *tps = (double)B * c->n / t;
    vz_session_mem mem;
    if (st == VZ_OK) st = vz_session_mem_info(s, &mem);
    *kv = st == VZ_OK ? mem.kv : 0;
    if (st != VZ_OK) fprintf(stderr, "batch_bench: B %d: %s: %s\n", (int)B, vz_status_name(st), vz_last_error());
    free(prompt);
    free(warm);
    vz_session_free(s);
    return st == VZ_OK ? 0 : 1;
}

static int parse(bench_cfg *c, int argc, char **argv, int *first_model) {
    memset(c, 0, sizeof *c);
    c->n = 128, c->prompt_len = 512, c->ctx = 2048;
    const int32_t def[4] = {1, 2, 4, 8};
    memcpy(c->seqs, def, sizeof def), c->n_b = 4;
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-n")) c->n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt-len")) c->prompt_len = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ctx")) c->ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seqs")) {
            c->n_b = 0;
            for (char *p = argv[i + 1]; *p && c->n_b < VZ_MAX_SEQ; p += *p == ',')
                c->seqs[c->n_b++] = (int32_t)strtol(p, &p, 10);
        } else return fprintf(stderr, "batch_bench: unknown option %s\n", argv[i]), 1;
    }
    *first_model = i;
    for (int k = 0; k < c->n_b; k++)
        if (c->seqs[k] < 1 || c->seqs[k] > VZ_MAX_SEQ) return fprintf(stderr, "batch_bench: bad --seqs\n"), 1;
    if (i >= argc || c->n < 1 || c->prompt_len < 2 || c->prompt_len + WARM + c->n > c->ctx)
        return fprintf(stderr, "usage: batch_bench [--seqs 1,2,4,8] [-n N] [--prompt-len N] [--ctx N] MODEL...\n"), 1;
    return 0;
}

int main(int argc, char **argv) {
    bench_cfg c;
    int mi, rc = 0;
    if (parse(&c, argc, argv, &mi)) return 2;
    int32_t *ids = calloc((size_t)(argc - mi) * (size_t)c.n_b * VZ_MAX_SEQ * (size_t)c.n, sizeof(int32_t));
    if (!ids) return 1;
    printf("| model | B | aggregate tok/s | per-sequence tok/s | vs B=%d | prefill tok/s | KV MiB | seq 0 = B=%d | = first model |\n",
           (int)c.seqs[0], (int)c.seqs[0]);
    printf("|---|---:|---:|---:|---:|---:|---:|---|---|\n");
    for (int k = mi; k < argc; k++) {
        vz_model *m = NULL;
        vz_status st = vz_model_open(&m, argv[k], NULL);
        if (st != VZ_OK) {
            fprintf(stderr, "batch_bench: %s: %s\n", argv[k], vz_last_error());
            rc = 1;
            continue;
        }
        double base = 0.0;
        for (int bi = 0; bi < c.n_b; bi++) {
            const int32_t B = c.seqs[bi];
            int32_t *out = ids + (((size_t)(k - mi) * c.n_b + bi) * VZ_MAX_SEQ) * c.n;
            double tps = 0.0, pf = 0.0;
            uint64_t kv = 0;
            if (run_b(m, &c, B, &tps, &pf, out, &kv)) {
                rc = 1;
                continue;
            }
            if (bi == 0) base = tps;
            const int32_t *out0 = ids + ((size_t)(k - mi) * c.n_b * VZ_MAX_SEQ) * c.n; /* this model, first B */
            const int32_t *ref = ids + ((size_t)bi * VZ_MAX_SEQ) * c.n;              /* first model, this B */
            int same0 = memcmp(out, out0, sizeof(int32_t) * (size_t)c.n) == 0;
            int same_m = memcmp(out, ref, sizeof(int32_t) * (size_t)B * c.n) == 0;
            printf("| %s | %d | %.1f | %.1f | %.2fx | %.0f | %.1f | %s | %s |\n", argv[k], (int)B, tps, tps / B,
                   base > 0 ? tps / base : 0.0, pf, (double)kv / 1048576.0, same0 ? "yes" : "NO",
                   k == mi ? "-" : same_m ? "yes" : "NO");
            fflush(stdout);
            if (!same0 || (k > mi && !same_m)) rc = 3;
        }
        vz_model_close(m);
    }
    free(ids);
    return rc;
}
