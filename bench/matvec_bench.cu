/*
 * matvec_bench.cu - times the fused decode+matvec (src/backend/cuda/matvec.cu)
 * per codec (raw, lossless, lossless:k4, q8, q4) on TinyLlama 1.1B shapes, one large matrix and
 * Llama 2 7B's q/o, gate/up and down, on synthetic
 * trained-like bf16 weights (Gaussian, std 0.02, 1% tails x4). Bytes read =
 * encoded bytes; GB/s is compared with a device-to-device copy (read+write)
 * measured in the same run. Weights rotate over copies > L2 so DRAM is timed.
 * Kernel variants (vz_cuda_matvec_variant) are timed side by side, single
 * launches and a TinyLlama-layer chain; for raw at batch 1 a row gives each
 * variant's largest error against a double reference in units of
 * 2^-24 sum|w x| (the unit of tests/test_cuda_matvec.c's bounds). Usage: matvec_bench [batch...]
 * (default: 1 8), matvec_bench ncu (see bench_ncu), matvec_bench wide (see bench_wide) or
 * matvec_bench qkv (see bench_qkv). Prints markdown tables. The single matvecs' table runs only
 * the variants, codecs and shapes whose bits are set in MVB_VARS, MVB_CODECS and MVB_SHAPES (bit
 * masks in the tables' order, default all; e.g. MVB_VARS=1 MVB_CODECS=5 MVB_SHAPES=0x1c0: the
 * default kernels, raw and lossless:k4, Llama 2 7B's shapes); q8/q4 are then compared with the
 * first variant run.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "codec/codec.h"
#include "core/half.h"
#include "core/tensor.h"
}
#include "bench_util.cuh"

/* Median over 7 replays of a graph of `reps` launches; microseconds per launch. */
template <class F> static double time_graph(F launch, int reps) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < reps; i++) launch(i, st);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float ms[7];
    CK(cudaGraphLaunch(ge, st));
    for (int k = 0; k < 7; k++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[k], a, b));
    }
    qsort(ms, 7, sizeof ms[0], cmp_f);
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaStreamDestroy(st));
    return ms[3] * 1000.0 / reps;
}

static double copy_gbs(void) {
    size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    double us = time_graph([&](int, cudaStream_t st) { CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st)); }, 5);
    CK(cudaFree(a));
    CK(cudaFree(b));
    return 2.0 * n / us / 1e3;
}

struct shape { const char *name; int64_t rows, cols; };

/* Kernel variants timed side by side (vz_cuda_matvec_variant flags; the
 * tensors are uploaded under each, since TC acts at upload). */
static const int nvar = 4;
static const int var_flags[nvar] = {VZ_CUDA_MV_V4, VZ_CUDA_MV_V4 | VZ_CUDA_MV_PAIRS,
                                    VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC};
static const char *var_name[nvar] = {"v4+pdl (default)", "v4 row pairs", "tc (bf16) / v4, no pdl", "tc+pdl"};

/* Largest |y - ref| / (2^-24 sum|w x|) over the rows of y = W x (batch 1;
 * W: the bf16 weights g_src as rows x cols; ref in double). */
static double err_units(const uint16_t *w, const float *x, const float *y, int64_t rows, int64_t cols) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0, a = 0;
        for (int64_t c = 0; c < cols; c++) {
            const double p = (double)vz_bf16_to_f32(w[r * cols + c]) * x[c];
            s += p, a += fabs(p);
        }
        const double e = a > 0 ? fabs(y[r] - s) / ldexp(a, -24) : (y[r] == 0 ? 0 : INFINITY);
        worst = e > worst ? e : worst;
    }
    return worst;
}

static uint16_t *g_src; /* synthetic bf16 weights, 8192*8192 */

/* Encodes rows x cols of g_src (from element off) with codec c and uploads
 * *nc copies (*nc <= 0: enough for 4x the L2 of l2 bytes, 2..512). */
static vz_cuda_tensor *make_copies(const vz_codec *c, int64_t rows, int64_t cols, int64_t off, int *nc_io, int l2,
                                   double *bits, int code = 0) {
    vz_blob blob;
    vz_codec_opts o = {0, 0, code}; /* code: lossless code bits (4: lossless:k4) */
    VK(c->encode(g_src + off, VZ_DTYPE_BF16, rows, cols, &o, &blob));
    vz_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%lldx%lld", (long long)rows, (long long)cols);
    t.ndim = 2, t.shape[0] = t.rows = rows, t.shape[1] = t.cols = cols;
    t.dtype = VZ_DTYPE_BF16, t.codec = c->id, t.data = blob.data, t.size = blob.size;
    t.params = blob.params, t.params_size = blob.params_size;
    int nc = *nc_io;
    if (nc <= 0) {
        nc = (int)((4ull * l2 + blob.size - 1) / blob.size);
        nc = nc < 2 ? 2 : nc > 512 ? 512 : nc;
        *nc_io = nc;
    }
    vz_cuda_tensor *W = (vz_cuda_tensor *)calloc((size_t)nc, sizeof *W);
    for (int k = 0; k < nc; k++) VK(vz_cuda_tensor_upload(&W[k], &t, NULL));
    if (bits) *bits = 8.0 * blob.size / ((double)rows * cols);
    vz_blob_free(&blob);
    return W;
}

/* Single matvecs: one row per (shape, codec, batch), one column per variant. */
static void bench_single(double cgbs, int l2, const int *batches, int nbatch, float *dx, float *dy, const float *hx) {
    const shape shapes[] = {{"q/o 2048x2048", 2048, 2048}, {"k/v 256x2048", 256, 2048},
                            {"gate/up 5632x2048", 5632, 2048}, {"down 2048x5632", 2048, 5632},
                            {"lm_head 32000x2048", 32000, 2048}, {"big 8192x8192", 8192, 8192},
                            {"l7 q/o 4096x4096", 4096, 4096}, {"l7 gate/up 11008x4096", 11008, 4096},
                            {"l7 down 4096x11008", 4096, 11008}};
    /* lossless:k4 = lossless with code bits 4 (packed4); MVB_VARS, MVB_CODECS, MVB_SHAPES: bit masks
     * of the variants, codecs and shapes to run (default all) */
    /* vs_raw: a lossless row, judged bitwise against raw's output under the same variant; the
     * others against their own first variant run */
    const struct { const char *label, *codec; int code; bool vs_raw; } codecs[] = {
        {"raw", "raw", 0, true}, {"lossless", "lossless", 0, true}, {"lossless:k4", "lossless", 4, true},
        {"q8", "q8", 0, false}, {"q4", "q4", 0, false}};
    const int ncodec = sizeof codecs / sizeof codecs[0];
    const auto mask = [](const char *k) { return getenv(k) && *getenv(k) ? (unsigned)strtoul(getenv(k), NULL, 0) : ~0u; };
    const unsigned vm = mask("MVB_VARS") & ((1u << nvar) - 1), vmask = vm ? vm : (1u << nvar) - 1;
    const unsigned cmask = mask("MVB_CODECS"), smask = mask("MVB_SHAPES");
    printf("\nsingle matvec, us per launch (speedup vs raw with the same variant); GB/s of the best; "
           "exact = lossless bitwise equal to raw under each variant, q8/q4 to their old default\n\n| shape | codec | B | bits/w |");
    for (int v = 0; v < nvar; v++) printf(" %s |", var_name[v]);
    printf(" best GB/s (%% copy) | exact |\n|---|---|---|---|");
    for (int v = 0; v < nvar; v++) printf("---|");
    printf("---|---|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        if (!(smask >> si & 1u)) continue;
        const shape &S = shapes[si];
        double t_raw[8][nvar] = {{0}};
        float *y_ref = (float *)malloc((size_t)8 * nvar * 8 * S.rows * 4), *y = (float *)malloc(8 * S.rows * 4);
        for (int ci = 0; ci < ncodec; ci++) {
            const vz_codec *c = vz_codec_by_name(codecs[ci].codec);
            const bool is_raw = ci == 0, vs_raw = codecs[ci].vs_raw;
            if (!c || !(cmask >> ci & 1u)) continue;
            double bits = 0, t[8][nvar] = {{0}}, err[8][nvar];
            bool exact[8];
            for (int v = 0; v < nvar; v++) {
                if (!(vmask >> v & 1u)) {
                    for (int bi = 0; bi < nbatch; bi++) t[bi][v] = NAN, err[bi][v] = -1;
                    continue;
                }
                int nc = 0;
                vz_cuda_matvec_variant(var_flags[v]);
                vz_cuda_tensor *W = make_copies(c, S.rows, S.cols, 0, &nc, l2, &bits, codecs[ci].code);
                for (int bi = 0; bi < nbatch; bi++) {
                    int B = batches[bi];
                    CK(cudaMemset(dy, 0xff, (size_t)B * S.rows * 4));
                    VK(vz_cuda_matvec(dy, dx, B, &W[0], NULL));
                    CK(cudaDeviceSynchronize());
                    /* references: raw's run of the same variant (lossless), the old default (q8, q4) */
                    const size_t ny = (size_t)B * S.rows;
                    float *yr = vs_raw ? y_ref + ((size_t)bi * nvar + v) * 8 * S.rows : y_ref + (size_t)bi * nvar * 8 * S.rows;
                    bool ref = is_raw || (!vs_raw && v == __builtin_ctz(vmask));
                    CK(cudaMemcpy(ref ? yr : y, dy, ny * 4, cudaMemcpyDeviceToHost));
                    if (v == __builtin_ctz(vmask)) exact[bi] = true;
                    if (!ref && memcmp(y, yr, ny * 4) != 0) exact[bi] = false;
                    err[bi][v] = is_raw && B == 1 ? err_units(g_src, hx, yr, S.rows, S.cols) : -1;
                    int reps = nc < 200 ? 200 : nc;
                    t[bi][v] = time_graph([&](int i, cudaStream_t st) { VK(vz_cuda_matvec(dy, dx, B, &W[i % nc], st)); }, reps);
                    if (is_raw) t_raw[bi][v] = t[bi][v];
                }
                for (int k = 0; k < nc; k++) vz_cuda_tensor_free(&W[k]);
                free(W);
            }
            double bytes = bits / 8 * S.rows * S.cols;
            for (int bi = 0; bi < nbatch; bi++) {
                printf("| %s | %s | %d | %.2f |", S.name, codecs[ci].label, batches[bi], bits);
                double best = 1e30;
                for (int v = 0; v < nvar; v++) {
                    if (!(vmask >> v & 1u)) {
                        printf(" - |");
                        continue;
                    }
                    best = t[bi][v] < best ? t[bi][v] : best;
                    if (t_raw[bi][v] > 0) printf(" %.2f (%.2fx) |", t[bi][v], t_raw[bi][v] / t[bi][v]);
                    else printf(" %.2f |", t[bi][v]); /* raw not run (MVB_CODECS) */
                }
                double gbs = bytes / best / 1e3;
                /* lossless rows compare with raw's output, so only where raw ran */
                const bool judged = is_raw || !vs_raw || (cmask & 1u);
                printf(" %.0f (%.0f%%) | %s |\n", gbs, 100 * gbs / cgbs, !judged ? "-" : exact[bi] ? "yes" : "NO");
                if (err[bi][0] >= 0) { /* raw, batch 1: each variant's error against the double reference */
                    printf("| %s | raw err, 2^-24 sum\\|wx\\| | %d | |", S.name, batches[bi]);
                    for (int v = 0; v < nvar; v++) {
                        if (err[bi][v] < 0) printf(" - |");
                        else printf(" %.1f |", err[bi][v]);
                    }
                    printf(" | |\n");
                }
            }
            fflush(stdout);
            vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
        }
        free(y_ref), free(y);
    }
}

/* `matvec_bench wide`: batch-1 matvecs of wide x, whose v4 blocks need
 * much shared memory: CodeLlama-34B's down (22016 columns; lossless needs
 * more than the decode step's 196 KiB for two blocks per SM, so
 * vz_decode_carveout asks for the largest carveout), Qwen2-7B's (18944;
 * fits) and llama2-7b's (11008), rows cut to what g_src holds. Raw and
 * lossless, us per launch and GB/s; run under VZ_CUDA_CARVEOUT=-1 for the
 * driver's choice. */
static void bench_wide(double cgbs, int l2, float *dx, float *dy) {
    const shape shapes[] = {{"down 3040x22016", 3040, 22016}, {"down 3500x18944", 3500, 18944},
                            {"down 4096x11008", 4096, 11008}};
    const char *codecs[] = {"raw", "lossless"};
    printf("\nwide x, batch 1, v4: us per launch, GB/s (%% copy)\n\n| shape | codec | bits/w | us | GB/s |\n|---|---|---|---|---|\n");
    for (const shape &S : shapes)
        for (const char *cn : codecs) {
            const vz_codec *c = vz_codec_by_name(cn);
            double bits = 0;
            int nc = 0;
            vz_cuda_tensor *W = make_copies(c, S.rows, S.cols, 0, &nc, l2, &bits);
            VK(vz_cuda_matvec(dy, dx, 1, &W[0], NULL));
            CK(cudaDeviceSynchronize());
            const int reps = nc < 200 ? 200 : nc;
            const double us = time_graph([&](int i, cudaStream_t st) { VK(vz_cuda_matvec(dy, dx, 1, &W[i % nc], st)); }, reps);
            const double gbs = bits / 8 * S.rows * S.cols / us / 1e3;
            printf("| %s | %s | %.2f | %.2f | %.0f (%.0f%%) |\n", S.name, cn, bits, us, gbs, 100 * gbs / cgbs);
            fflush(stdout);
            for (int k = 0; k < nc; k++) vz_cuda_tensor_free(&W[k]);
            free(W);
        }
}

/* A TinyLlama-shaped chain: per layer QKV (one launch), O, gate+up with
 * SiLU*mul, down; each input is the previous output. 22 layers per graph over
 * NL distinct weight copies (> 4x L2), h reset from h0 at the graph's start. */
#define NL 8
static void bench_chain(void) {
    const char *codecs[] = {"raw", "lossless", "q8", "q4"};
    const int64_t D = 2048, F = 5632, KV = 256;
    float *h, *h0, *q, *k, *v, *o, *act, *gu2;
    CK(cudaMalloc(&h, D * 4)); CK(cudaMalloc(&h0, D * 4)); CK(cudaMalloc(&q, D * 4)); CK(cudaMalloc(&k, KV * 4));
    CK(cudaMalloc(&v, KV * 4)); CK(cudaMalloc(&o, D * 4)); CK(cudaMalloc(&act, F * 4)); CK(cudaMalloc(&gu2, F * 4));
    float hx[2048];
    for (int i = 0; i < D; i++) hx[i] = (float)(urand() - 0.5) * 4;
    CK(cudaMemcpy(h0, hx, D * 4, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize()); /* a pageable copy may return before its DMA lands; st would not wait */
    double t_raw[nvar];
    float *y_ref = (float *)malloc((size_t)(nvar + 1) * D * 4), *y = (float *)malloc(D * 4);
    printf("\nchain: 22 TinyLlama layers per graph (QKV, O, gate+up silu, down = 4 launches/layer, each input the "
           "previous output), %d distinct weight copies; us per layer (speedup vs raw, same variant); exact: lossless == raw, q8/q4 == own legacy\n\n| codec |", NL);
    for (int vi = 0; vi < nvar; vi++) printf(" %s |", var_name[vi]);
    printf(" exact |\n|---|");
    for (int vi = 0; vi < nvar; vi++) printf("---|");
    printf("---|\n");
    for (int ci = 0; ci < 4; ci++) {
        const vz_codec *c = vz_codec_by_name(codecs[ci]);
        printf("| %s |", codecs[ci]);
        bool exact = true;
        for (int vi = 0; vi < nvar; vi++) {
            vz_cuda_matvec_variant(var_flags[vi]);
            int nl = NL;
            vz_cuda_tensor *Wq = make_copies(c, D, D, 0, &nl, 0, NULL), *Wk = make_copies(c, KV, D, 1 << 22, &nl, 0, NULL);
            vz_cuda_tensor *Wv = make_copies(c, KV, D, 2 << 22, &nl, 0, NULL), *Wo = make_copies(c, D, D, 3 << 22, &nl, 0, NULL);
            vz_cuda_tensor *Wg = make_copies(c, F, D, 4 << 22, &nl, 0, NULL), *Wu = make_copies(c, F, D, 7 << 22, &nl, 0, NULL);
            vz_cuda_tensor *Wd = make_copies(c, D, F, 10 << 22, &nl, 0, NULL);
            auto layers = [&](int, cudaStream_t st) {
                CK(cudaMemcpyAsync(h, h0, D * 4, cudaMemcpyDeviceToDevice, st));
                for (int l = 0; l < 22; l++) {
                    int i = l % NL;
                    const vz_cuda_tensor *qkv[3] = {&Wq[i], &Wk[i], &Wv[i]}, *gu[2] = {&Wg[i], &Wu[i]};
                    float *qkv_out[3] = {q, k, v}, *gu_out[2] = {act, gu2};
                    VK(vz_cuda_matvec_multi(3, qkv, qkv_out, h, 1, VZ_CUDA_EPI_NONE, st));
                    VK(vz_cuda_matvec(o, q, 1, &Wo[i], st));
                    VK(vz_cuda_matvec_multi(2, gu, gu_out, o, 1, VZ_CUDA_EPI_SILU_MUL, st));
                    VK(vz_cuda_matvec(h, act, 1, &Wd[i], st));
                }
            };
            layers(0, NULL);
            CK(cudaDeviceSynchronize());
            /* lossless vs raw of the same variant; q8, q4 vs their old-default run */
            float *yr = ci <= 1 ? y_ref + (size_t)vi * D : y_ref + (size_t)nvar * D;
            bool ref = ci == 0 || (ci >= 2 && vi == 0);
            CK(cudaMemcpy(ref ? yr : y, h, D * 4, cudaMemcpyDeviceToHost));
            if (!ref && memcmp(y, yr, D * 4) != 0) exact = false;
            double us = time_graph(layers, 1) / 22;
            if (ci == 0) t_raw[vi] = us;
            printf(" %.2f (%.2fx) |", us, t_raw[vi] / us);
            fflush(stdout);
            vz_cuda_tensor *all[7] = {Wq, Wk, Wv, Wo, Wg, Wu, Wd};
            for (int j = 0; j < 7; j++) {
                for (int l = 0; l < NL; l++) vz_cuda_tensor_free(&all[j][l]);
                free(all[j]);
            }
        }
        printf(" %s |\n", exact ? "yes" : "NO");
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
    }
    free(y_ref), free(y);
    cudaFree(h), cudaFree(h0), cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o), cudaFree(act), cudaFree(gu2);
}

/* `matvec_bench qkv`: what a QKV fused into the attention launch would
 * cost in its matvec alone, on TinyLlama's shapes at batch 1. Fused per
 * query head, each head's cluster computes its 64 q rows and its kv head's
 * 64 k and 64 v rows, so 8 heads per kv head repeat the k/v rows: 2048 q +
 * 2048 k + 2048 v rows instead of 2048 + 256 + 256 (the repeats could come
 * from L2). One launch of the three tensors each time (vz_cuda_matvec_multi,
 * as the decode step's QKV); "DRAM": copies rotate over > 4x L2; "L2": one
 * copy, read again each launch. The fused form would spare the attention's
 * launch hand-off (2.25 us per layer on an H200: bench/results/
 * 2026-11-29-session18-h200.md), so it pays only if the repeated rows cost
 * less than that. */
static void bench_qkv(int l2, float *dx, float *dy) {
    const int64_t D = 2048, KV = 256;
    const char *codecs[] = {"raw", "lossless", "q8", "q4"};
    printf("\nQKV at batch 1, us per launch: plain (2048 + 256 + 256 rows) against per-head repeats (2048 + 2048 + 2048 "
           "rows); DRAM: copies rotate; L2: one copy\n\n| codec | plain, DRAM | repeats, DRAM | repeats, k/v in L2 "
           "(q DRAM) | plain, L2 | repeats, L2 | repeats in L2 - plain, DRAM |\n|---|---|---|---|---|---|---|\n");
    for (const char *cn : codecs) {
        const vz_codec *c = vz_codec_by_name(cn);
        int nq = 0;
        vz_cuda_tensor *Wq = make_copies(c, D, D, 0, &nq, l2, NULL);
        int nk = nq;
        vz_cuda_tensor *Wk = make_copies(c, KV, D, 1 << 22, &nk, l2, NULL), *Wv = make_copies(c, KV, D, 2 << 22, &nk, l2, NULL);
        vz_cuda_tensor *Rk = make_copies(c, D, D, 1 << 22, &nk, l2, NULL), *Rv = make_copies(c, D, D, 3 << 22, &nk, l2, NULL);
        float *out[3] = {dy, dy + D, dy + 2 * D};
        auto qkv = [&](const vz_cuda_tensor *q, const vz_cuda_tensor *k, const vz_cuda_tensor *v, cudaStream_t st) {
            const vz_cuda_tensor *w[3] = {q, k, v};
            VK(vz_cuda_matvec_multi(3, w, out, dx, 1, VZ_CUDA_EPI_NONE, st));
        };
        const int reps = nq < 200 ? 200 : nq;
        double t[5];
        t[0] = time_graph([&](int i, cudaStream_t st) { qkv(&Wq[i % nq], &Wk[i % nq], &Wv[i % nq], st); }, reps);
        t[1] = time_graph([&](int i, cudaStream_t st) { qkv(&Wq[i % nq], &Rk[i % nq], &Rv[i % nq], st); }, reps);
        t[2] = time_graph([&](int i, cudaStream_t st) { qkv(&Wq[i % nq], &Rk[0], &Rv[0], st); }, reps);
        t[3] = time_graph([&](int, cudaStream_t st) { qkv(&Wq[0], &Wk[0], &Wv[0], st); }, reps);
        t[4] = time_graph([&](int, cudaStream_t st) { qkv(&Wq[0], &Rk[0], &Rv[0], st); }, reps);
        printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %+.2f |\n", cn, t[0], t[1], t[2], t[3], t[4], t[2] - t[0]);
        fflush(stdout);
        vz_cuda_tensor *all[5] = {Wq, Wk, Wv, Rk, Rv};
        for (int j = 0; j < 5; j++) {
            for (int k = 0; k < nq; k++) vz_cuda_tensor_free(&all[j][k]);
            free(all[j]);
        }
    }
}

/* `matvec_bench ncu [l7]`: one launch each, nothing timed (for ncu -k regex):
 * TinyLlama gate+up (2 x 5632x2048, SiLU epilogue) lossless and raw on the
 * tensor-core kernel and v4, q8, q4 and lossless:k4 on v4; then down
 * (2048x5632, one row per warp at batch 1) lossless, raw, q8, q4 and
 * lossless:k4 on v4. l7: the same on llama2-7b's gate+up and down, without
 * the tensor-core runs. */
static void bench_ncu(float *dx, float *dy, bool l7) {
    const int64_t H = l7 ? 11008 : 5632, D = l7 ? 4096 : 2048; /* l7: llama2-7b's shapes */
    struct run { const char *codec; int flags; bool gu; int code = 0; };
    const run runs[] = {
        {"lossless", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, true}, {"lossless", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL | VZ_CUDA_MV_TC, true},
        {"raw", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, true},      {"raw", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL | VZ_CUDA_MV_TC, true},
        {"q8", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, true},       {"q4", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, true},
        {"lossless", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, false}, {"raw", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, false},
        {"q8", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, false},      {"q4", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, false},
        {"lossless", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, true, 4}, {"lossless", VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, false, 4}};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        const auto &r = runs[i];
        if (l7 && (r.flags & VZ_CUDA_MV_TC)) continue;
        int nc = 1;
        vz_cuda_matvec_variant(r.flags); /* TC acts at upload */
        const vz_codec *c = vz_codec_by_name(r.codec);
        printf("ncu launch: %s%s %s %lldx%lld\n", r.codec, r.code == 4 ? ":k4" : "", r.gu ? "gate/up 2x silu" : "down",
               (long long)(r.gu ? H : D), (long long)(r.gu ? D : H));
        if (r.gu) {
            vz_cuda_tensor *G = make_copies(c, H, D, 0, &nc, 0, NULL, r.code),
                           *U = make_copies(c, H, D, 1 << 24, &nc, 0, NULL, r.code);
            const vz_cuda_tensor *gu[2] = {&G[0], &U[0]};
            float *out[2] = {dy, dy};
            VK(vz_cuda_matvec_multi(2, gu, out, dx, 1, VZ_CUDA_EPI_SILU_MUL, NULL));
            CK(cudaDeviceSynchronize());
            vz_cuda_tensor_free(&G[0]), vz_cuda_tensor_free(&U[0]);
            free(G), free(U);
        } else {
            vz_cuda_tensor *W = make_copies(c, D, H, 0, &nc, 0, NULL, r.code);
            VK(vz_cuda_matvec(dy, dx, 1, &W[0], NULL));
            CK(cudaDeviceSynchronize());
            vz_cuda_tensor_free(&W[0]);
            free(W);
        }
    }
}

int main(int argc, char **argv) {
    int batches[8] = {1, 8}, nbatch = 2;
    bool ncu = argc > 1 && strcmp(argv[1], "ncu") == 0, wide = argc > 1 && strcmp(argv[1], "wide") == 0;
    bool qkv = argc > 1 && strcmp(argv[1], "qkv") == 0;
    if (argc > 1 && !ncu && !wide && !qkv) {
        nbatch = 0;
        for (int i = 1; i < argc && nbatch < 8; i++) batches[nbatch++] = atoi(argv[i]);
    }
    char card[256] = "?";
    vz_cuda_device_name(0, card, sizeof card);
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    double ggbs = copy_gbs();
    vz_device_info dev;
    VK(vz_cuda_device_probe(1, &dev)); /* cudaMemcpy, as `vramzip bench` reports it: the % reference */
    double cgbs = dev.copy_gbs;
    printf("card: %s, L2 %d MB, D2D copy %.0f GB/s (read+write; cudaMemcpy median of 10, the %% reference), "
           "%.0f GB/s as graph memcpy nodes\n", card, l2 >> 20, cgbs, ggbs);
    int64_t maxn = 8192 * 8192;
    g_src = (uint16_t *)malloc((size_t)maxn * 2);
    for (int64_t i = 0; i < maxn; i++) {
        double z = sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()) * 0.02;
        if (urand() < 0.01) z *= 4;
        g_src[i] = vz_f32_to_bf16((float)z);
    }
    float *dx, *dy;
    CK(cudaMalloc(&dx, 8 * 8192 * 4));
    CK(cudaMalloc(&dy, 8 * 32000 * 4));
    float *hx = (float *)malloc(8 * 8192 * 4);
    for (int i = 0; i < 8 * 8192; i++) hx[i] = (float)(urand() - 0.5);
    CK(cudaMemcpy(dx, hx, 8 * 8192 * 4, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize());
    if (ncu) {
        bench_ncu(dx, dy, argc > 2 && strcmp(argv[2], "l7") == 0);
        return 0;
    }
    if (wide) {
        bench_wide(cgbs, l2, dx, dy);
        return 0;
    }
    if (qkv) {
        bench_qkv(l2, dx, dy);
        return 0;
    }
    bench_chain();
    bench_single(cgbs, l2, batches, nbatch, dx, dy, hx);
    CK(cudaGetLastError());
    free(g_src), free(hx);
    return 0;
}
