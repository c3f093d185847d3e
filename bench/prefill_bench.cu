/*
 * prefill_bench.cu - times the prefill GEMMs (src/backend/cuda/gemm.cu) on
 * TinyLlama 1.1B shapes at T tokens (default 512): a plain cuBLAS bf16 GEMM
 * on already-bf16 weights (the reference), path A (decode into the scratch,
 * then cuBLAS; decode and GEMM also timed apart) and path B (decode into
 * shared memory + mma.sync), per codec; then the non-GEMM kernels of one
 * layer (src/backend/cuda/prefill.cu), every variant in the same run: the
 * attention (RoPE + KV store + causal attention), RMSNorm and SwiGLU to
 * bf16. Synthetic trained-like bf16 weights (Gaussian std 0.02, 1% tails
 * x4); weights rotate over copies > 200 MB so each GEMM reads them from
 * DRAM, as a prefill does. Usage: prefill_bench [T] [--no-gemm] (only the
 * non-GEMM kernels) [--overlap] (only a decode beside a layer's kernels:
 * overlap_bench) [--split] (a layer's decodes beside its GEMMs on SMs of their
 * own: split_bench); PF_BENCH_REPS=n times n calls each (for ncu). Prints markdown tables.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/prefill.h"

extern "C" {
#include "codec/codec.h"
#include "core/half.h"
#include "core/tensor.h"
}
#include "bench_util.cuh"

static int reps_env; /* PF_BENCH_REPS: calls per timing instead of each site's count (few launches under ncu) */

/* Median of 7 timings of `reps` back-to-back calls; microseconds per call. */
template <class F> static double time_us(F call, int reps, cudaStream_t st) {
    if (reps_env > 0) reps = reps_env;
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float ms[7];
    for (int i = 0; i < reps; i++) call(i); /* warm-up */
    for (int k = 0; k < 7; k++) {
        CK(cudaEventRecord(a, st));
        for (int i = 0; i < reps; i++) call(i);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[k], a, b));
    }
    qsort(ms, 7, sizeof ms[0], cmp_f);
    cudaEventDestroy(a), cudaEventDestroy(b);
    return ms[3] * 1000.0 / reps;
}

/* nc copies of rows x cols synthetic weights in codec c. */
static vz_cuda_tensor *make_copies(const vz_codec *c, const uint16_t *src, int64_t rows, int64_t cols, int *nc_out) {
    vz_blob blob;
    vz_codec_opts o = {0, 0};
    VK(c->encode(src, VZ_DTYPE_BF16, rows, cols, &o, &blob));
    vz_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%lldx%lld", (long long)rows, (long long)cols);
    t.ndim = 2, t.shape[0] = t.rows = rows, t.shape[1] = t.cols = cols;
    t.dtype = VZ_DTYPE_BF16, t.codec = c->id, t.data = blob.data, t.size = blob.size;
    t.params = blob.params, t.params_size = blob.params_size;
    int nc = (int)((200ull << 20) / blob.size) + 1;
    nc = nc < 2 ? 2 : nc > 64 ? 64 : nc;
    vz_cuda_tensor *W = (vz_cuda_tensor *)calloc((size_t)nc, sizeof *W);
    for (int k = 0; k < nc; k++) VK(vz_cuda_tensor_upload(&W[k], &t, NULL));
    vz_blob_free(&blob);
    *nc_out = nc;
    return W;
}

struct shape { const char *name; int64_t rows, cols; };

/* One layer's activations for the non-GEMM kernels at T tokens (f16 KV
 * cache), zeroed where read (rotations of zeros stay zero: no overflow over
 * reps). o holds T rows of max(dim, hid) bf16. */
struct layer_bufs {
    float *qkv, *x, *w, *gu;
    void *kc, *vc, *o;
};

static layer_bufs layer_alloc(int T, int nh, int nkv, int hd, int dim, int hid) {
    layer_bufs b;
    const size_t ld = (size_t)nh * hd + 2 * (size_t)nkv * hd;
    CK(cudaMalloc(&b.qkv, 4 * (size_t)T * ld));
    CK(cudaMalloc(&b.kc, 2 * (size_t)T * nkv * hd));
    CK(cudaMalloc(&b.vc, 2 * (size_t)T * nkv * hd));
    CK(cudaMalloc(&b.o, 2 * (size_t)T * (dim > hid ? dim : hid)));
    CK(cudaMalloc(&b.x, 4 * (size_t)T * dim));
    CK(cudaMalloc(&b.w, 4 * (size_t)dim));
    CK(cudaMalloc(&b.gu, 4 * (size_t)T * 2 * hid));
    CK(cudaMemset(b.qkv, 0, 4 * (size_t)T * ld));
    CK(cudaMemset(b.x, 0, 4 * (size_t)T * dim));
    CK(cudaMemset(b.w, 0, 4 * (size_t)dim));
    CK(cudaMemset(b.gu, 0, 4 * (size_t)T * 2 * hid));
    return b;
}

static void layer_free(layer_bufs &b) {
    void *p[7] = {b.qkv, b.kc, b.vc, b.o, b.x, b.w, b.gu};
    for (int k = 0; k < 7; k++) CK(cudaFree(p[k]));
}

/* --overlap: does a lossless gate/up decode (TinyLlama, 11264 x 2048) on a
 * second stream overlap the kernels between two FFN GEMMs of a layer (the
 * RMSNorm, the QKV GEMM, attention, the Wo GEMM, the RMSNorm; raw bf16
 * weights in place)? Each alone, then both (the decode forked at the
 * start, joined at the end), with the decode stream at the same and at a
 * lower priority than the main one. Session 78 (H100): 86.2 us apart, 87.5
 * at once, 83.7 with the main stream at the higher priority: the decode
 * takes the SMs the layer's kernels leave it, it does not run beside them
 * (bench/results/2026-12-05-session78-h100.md). The process exits after. */
static int overlap_bench(int T, const uint16_t *src, void *dx, float *dy, cudaStream_t st0, const cudaDeviceProp *p) {
    int lo, hi;
    CK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    cudaStream_t sm, sd, shi;
    CK(cudaStreamCreateWithFlags(&sm, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&sd, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithPriority(&shi, cudaStreamNonBlocking, hi));
    vz_gemm *gm = NULL, *gh = NULL, *gd = NULL;
    VK(vz_gemm_create(&gm, 2560 * 2048, sm));
    VK(vz_gemm_create(&gh, 2560 * 2048, shi));
    VK(vz_gemm_create(&gd, 11264 * 2048, sd));
    int nq, no, ng;
    vz_cuda_tensor *Wq = make_copies(vz_codec_by_name("raw"), src, 2560, 2048, &nq);
    vz_cuda_tensor *Wo = make_copies(vz_codec_by_name("raw"), src, 2048, 2048, &no);
    vz_cuda_tensor *Wg = make_copies(vz_codec_by_name("lossless"), src, 11264, 2048, &ng);
    const int nh = 32, nkv = 4, hd = 64, ld = nh * hd + 2 * nkv * hd, dim = 2048;
    layer_bufs b = layer_alloc(T, nh, nkv, hd, dim, 5632);
    float *qkv = b.qkv, *x = b.x, *w = b.w;
    void *kc = b.kc, *vc = b.vc, *o = b.o;
    cudaEvent_t ef, ej;
    CK(cudaEventCreateWithFlags(&ef, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&ej, cudaEventDisableTiming));
    auto layer = [&](int i, vz_gemm *g, cudaStream_t s) { /* between gate/up GEMMs */
        const vz_cuda_tensor *q[1] = {&Wq[i % nq]}, *wo[1] = {&Wo[i % no]};
        vz_pf_rmsnorm_bf16(x, o, w, T, dim, 1e-5f, s);
        VK(vz_gemm_run(g, 1, q, qkv, ld, dx, dim, T, 0, VZ_GEMM_A));
        vz_pf_attention(o, qkv, ld, kc, vc, 0, T, nh, nkv, hd, 1, 10000.0f, NULL, 0, NULL, s);
        VK(vz_gemm_run(g, 1, wo, dy, dim, o, dim, T, 1, VZ_GEMM_A));
        vz_pf_rmsnorm_bf16(x, o, w, T, dim, 1e-5f, s);
    };
    auto dec = [&](int i) {
        const vz_cuda_tensor *gu[1] = {&Wg[i % ng]};
        VK(vz_gemm_decode(gd, 1, gu, 0, 11264));
    };
    auto both = [&](int i, vz_gemm *g, cudaStream_t s) {
        CK(cudaEventRecord(ef, st0));
        CK(cudaStreamWaitEvent(sd, ef, 0));
        CK(cudaStreamWaitEvent(s, ef, 0));
        dec(i);
        layer(i, g, s);
        CK(cudaEventRecord(ej, sd));
        CK(cudaStreamWaitEvent(st0, ej, 0));
        CK(cudaEventRecord(ef, s));
        CK(cudaStreamWaitEvent(st0, ef, 0));
    };
    auto on = [&](cudaStream_t s, auto f) { /* f on stream s, timed on st0 */
        return time_us([&](int i) {
            CK(cudaEventRecord(ef, st0));
            CK(cudaStreamWaitEvent(s, ef, 0));
            f(i);
            CK(cudaEventRecord(ej, s));
            CK(cudaStreamWaitEvent(st0, ej, 0));
        }, 20, st0);
    };
    const double ta = on(sm, [&](int i) { layer(i, gm, sm); }), td = on(sd, dec);
    const double tb = time_us([&](int i) { both(i, gm, sm); }, 20, st0);
    const double tah = on(shi, [&](int i) { layer(i, gh, shi); });
    const double tbh = time_us([&](int i) { both(i, gh, shi); }, 20, st0);
    printf("%s, T = %d: TinyLlama layer kernels between two gate/up GEMMs (norm, QKV GEMM, attention, Wo GEMM, norm; raw) "
           "and a lossless gate/up decode (11264 x 2048) on a second stream, us per layer\n\n",
           p->name, T);
    printf("| main stream priority | layer kernels alone | decode alone | sum | both at once | saved |\n|---|---|---|---|---|---|\n");
    printf("| same as the decode's | %.1f | %.1f | %.1f | %.1f | %.1f |\n", ta, td, ta + td, tb, ta + td - tb);
    printf("| higher (%d) | %.1f | %.1f | %.1f | %.1f | %.1f |\n", hi, tah, td, tah + td, tbh, tah + td - tbh);
    CK(cudaStreamSynchronize(st0));
    return 0;
}

/* --split: can a lossless layer's decodes run beside its GEMMs on SMs of
 * their own? TinyLlama's four matrices of a layer (QKV, o, gate+up, down),
 * 4 layers per timed call. serial: each decoded into the scratch, then
 * multiplied (path A without decode ahead); split: two scratches on two
 * streams, matrix m + 1 decoding on one while m multiplies on the other
 * (GEMM m + 1 after GEMM m, as a layer's data orders them), the decode's
 * grid capped at C blocks (vz_gemm_decode_cap, 0: none) and cuBLAS told to
 * plan for S SMs (cublasSetSmCountTarget, 0: the device's). raw: the same
 * GEMMs on raw bf16 in place, the cost of S to a codec with nothing to
 * decode; bits: whether each raw GEMM's output under S equals the
 * default's. Session 80 (H100): serial 146.0 us, split 136.7 uncapped, and
 * every cap slower (the decode alone: 61.4 us uncapped, 99.5 at 64 blocks,
 * 180 at 32), bits the same at every S
 * (bench/results/2026-12-05-session80-h100.md). The process exits after. */
static int split_bench(int T, const uint16_t *src, void *dx, float *dy, cudaStream_t st0, const cudaDeviceProp *p) {
    const int sms = p->multiProcessorCount, L = 4;
    cudaStream_t sa, sb;
    CK(cudaStreamCreateWithFlags(&sa, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&sb, cudaStreamNonBlocking));
    vz_gemm *ga = NULL, *gb = NULL;
    VK(vz_gemm_create(&ga, 11264 * 2048, sa));
    VK(vz_gemm_create(&gb, 11264 * 2048, sb));
    const shape ms[4] = {{"qkv", 2560, 2048}, {"o", 2048, 2048}, {"gate+up", 11264, 2048}, {"down", 2048, 5632}};
    vz_cuda_tensor *ll[4], *rw[4];
    int nl[4], nr[4];
    for (int m = 0; m < 4; m++) {
        ll[m] = make_copies(vz_codec_by_name("lossless"), src, ms[m].rows, ms[m].cols, &nl[m]);
        rw[m] = make_copies(vz_codec_by_name("raw"), src, ms[m].rows, ms[m].cols, &nr[m]);
    }
    cudaEvent_t ef, ea, eb, eg;
    CK(cudaEventCreateWithFlags(&ef, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&ea, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&eb, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&eg, cudaEventDisableTiming));
    auto fork = [&]() {
        CK(cudaEventRecord(ef, st0));
        CK(cudaStreamWaitEvent(sa, ef, 0));
        CK(cudaStreamWaitEvent(sb, ef, 0));
    };
    auto join = [&]() {
        CK(cudaEventRecord(ea, sa));
        CK(cudaEventRecord(eb, sb));
        CK(cudaStreamWaitEvent(st0, ea, 0));
        CK(cudaStreamWaitEvent(st0, eb, 0));
    };
    auto serial = [&](int i) {
        fork();
        for (int l = 0; l < L; l++)
            for (int m = 0; m < 4; m++) {
                const vz_cuda_tensor *one[1] = {&ll[m][(i * L + l) % nl[m]]};
                VK(vz_gemm_decode(ga, 1, one, 0, ms[m].rows));
                VK(vz_gemm_scratch_mm(ga, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols, T, 0));
            }
        join();
    };
    auto split = [&](int i) { /* matrix k on stream k & 1: its decode waits only for that stream's last GEMM */
        fork();
        for (int l = 0, k = 0; l < L; l++)
            for (int m = 0; m < 4; m++, k++) {
                vz_gemm *g = k & 1 ? gb : ga;
                cudaStream_t s = k & 1 ? sb : sa;
                const vz_cuda_tensor *one[1] = {&ll[m][(i * L + l) % nl[m]]};
                VK(vz_gemm_decode(g, 1, one, 0, ms[m].rows));
                if (k) CK(cudaStreamWaitEvent(s, eg, 0));
                VK(vz_gemm_scratch_mm(g, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols, T, 0));
                CK(cudaEventRecord(eg, s));
            }
        join();
    };
    auto raw = [&](int i) {
        fork();
        for (int l = 0; l < L; l++)
            for (int m = 0; m < 4; m++)
                VK(vz_gemm_bf16(ga, rw[m][(i * L + l) % nr[m]].data, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols,
                                T, 0));
        join();
    };
    auto dec_only = [&](int i) {
        fork();
        for (int l = 0; l < L; l++)
            for (int m = 0; m < 4; m++) {
                const vz_cuda_tensor *one[1] = {&ll[m][(i * L + l) % nl[m]]};
                VK(vz_gemm_decode(ga, 1, one, 0, ms[m].rows));
            }
        join();
    };
    auto gemm_only = [&](int) {
        fork();
        for (int l = 0; l < L; l++)
            for (int m = 0; m < 4; m++)
                VK(vz_gemm_scratch_mm(ga, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols, T, 0));
        join();
    };
    /* reference bits of each raw GEMM at the default target */
    float *yref[4], *yh = (float *)malloc(4 * (size_t)T * 11264);
    for (int m = 0; m < 4; m++) {
        yref[m] = (float *)malloc(4 * (size_t)T * ms[m].rows);
        VK(vz_gemm_bf16(ga, rw[m][0].data, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols, T, 0));
        CK(cudaStreamSynchronize(sa));
        CK(cudaMemcpy(yref[m], dy, 4 * (size_t)T * ms[m].rows, cudaMemcpyDeviceToHost));
    }
    printf("%s, %d SMs, T = %d: a TinyLlama layer's 4 GEMMs (qkv, o, gate+up, down), us per layer (%d layers per call); "
           "C = decode grid cap (blocks), S = cuBLAS SM count target; serial and raw at S given; bits: raw GEMM outputs "
           "under S equal to the default's\n\n", p->name, sms, T, L);
    printf("| C | S | lossless serial | decode alone | GEMM alone (scratch) | lossless split | raw GEMMs | bits |\n"
           "|---|---|---|---|---|---|---|---|\n");
    const int cfg[][2] = {{0, 0}, {16, 0}, {16, sms - 8}, {16, sms - 16}, {32, 0}, {32, sms - 16}, {32, sms - 32},
                          {48, sms - 24}, {48, sms - 48}, {64, sms - 32}, {96, sms - 48}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        const int C = cfg[c][0], S = cfg[c][1];
        VK(vz_gemm_sm_target(ga, S));
        VK(vz_gemm_sm_target(gb, S));
        bool same = true;
        for (int m = 0; m < 4; m++) {
            VK(vz_gemm_bf16(ga, rw[m][0].data, ms[m].rows, ms[m].cols, dy, ms[m].rows, dx, ms[m].cols, T, 0));
            CK(cudaStreamSynchronize(sa));
            CK(cudaMemcpy(yh, dy, 4 * (size_t)T * ms[m].rows, cudaMemcpyDeviceToHost));
            if (memcmp(yh, yref[m], 4 * (size_t)T * ms[m].rows)) same = false;
        }
        vz_gemm_decode_cap(0);
        const double tser = time_us(serial, 5, st0) / L, traw = time_us(raw, 5, st0) / L;
        const double tgo = time_us(gemm_only, 5, st0) / L;
        vz_gemm_decode_cap(C);
        const double tdo = time_us(dec_only, 5, st0) / L, tsp = time_us(split, 5, st0) / L;
        vz_gemm_decode_cap(0);
        printf("| %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n", C, S, tser, tdo, tgo, tsp, traw, same ? "same" : "DIFFER");
        fflush(stdout);
    }
    CK(cudaStreamSynchronize(st0));
    return 0;
}

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 512, gemms = !(argc > 2 && !strcmp(argv[2], "--no-gemm"));
    const int overlap = argc > 2 && !strcmp(argv[2], "--overlap"), splitm = argc > 2 && !strcmp(argv[2], "--split");
    const shape shapes[] = {{"qkv 2560x2048", 2560, 2048}, {"o 2048x2048", 2048, 2048},
                            {"gate+up 11264x2048", 11264, 2048}, {"down 2048x5632", 2048, 5632},
                            {"head 32000x2048", 32000, 2048}};
    const char *codecs[] = {"raw", "lossless", "q8", "q4"};
    const int dec0 = vz_gemm_decode_variant(-1); /* the default decoder (VZ_CUDA_DEC), timed as session/total */
    reps_env = getenv("PF_BENCH_REPS") ? atoi(getenv("PF_BENCH_REPS")) : 0;
    const int dec_only = getenv("PF_BENCH_DEC_ONLY") && *getenv("PF_BENCH_DEC_ONLY") == '1';
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    vz_gemm *g = NULL, *gs = NULL, *g2 = NULL;
    VK(vz_gemm_create(&g, 32000 * 2048, st));
    VK(vz_gemm_create(&gs, 11264 * 2048, st)); /* a TinyLlama session's scratch (its gate + up) */
    VK(vz_gemm_create(&g2, 2 * 11264 * 2048, st)); /* twice that (not planned) */
    const int64_t maxe = 32000 * 2048; /* the largest shape */
    uint16_t *src = (uint16_t *)malloc(2 * (size_t)maxe);
    for (int64_t i = 0; gemms && i < maxe; i++) {
        double z = sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()) * 0.02;
        src[i] = vz_f32_to_bf16((float)(urand() < 0.01 ? 4 * z : z));
    }
    uint16_t *xh = (uint16_t *)malloc(2 * (size_t)T * 5632);
    for (int64_t i = 0; i < (int64_t)T * 5632; i++) xh[i] = vz_f32_to_bf16((float)(urand() * 2 - 1));
    void *dx;
    float *dy;
    CK(cudaMalloc(&dx, 2 * (size_t)T * 5632));
    CK(cudaMalloc(&dy, 4 * (size_t)T * 32000));
    CK(cudaMemcpy(dx, xh, 2 * (size_t)T * 5632, cudaMemcpyHostToDevice));
    CK(cudaDeviceSynchronize()); /* a pageable copy may return before its DMA lands; st would not wait */
    if (overlap) return overlap_bench(T, src, dx, dy, st, &p);
    if (splitm) return split_bench(T, src, dx, dy, st, &p);
    printf("%s, %d SMs; T = %d tokens; us per GEMM (TFLOP/s); %% = of the cuBLAS bf16 reference's TFLOP/s\n\n", p.name,
           p.multiProcessorCount, T);
    printf("session scratch (%d bf16): before = decode, then GEMM per chunk of the scratch (VZ_GEMM_SERIAL|COPY); after = "
           "the same, raw bf16 in place (default; decode ahead across ops needs a session); halves = chunks of half the "
           "scratch, chunk c+1 decoded during GEMM c (VZ_GEMM_HALVES); 2x = default with twice the scratch\n\n",
           11264 * 2048);
    printf("| shape | cuBLAS bf16 | codec | A: decode (one job per warp) | A: decode (pipe) | A: decode (ring) | A: GEMM | A: total | A %% | B: mma | B %% "
           "| faster | session before | %% | session after | %% | halves | %% | 2x scratch | %% |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t si = 0; gemms && si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape &S = shapes[si];
        const double fl = 2.0 * S.rows * S.cols * T;
        double t_ref = 0.0;
        for (int ci = 0; ci < 4; ci++) {
            const vz_codec *c = vz_codec_by_name(codecs[ci]);
            if (!c) continue;
            int nc;
            vz_cuda_tensor *W = make_copies(c, src, S.rows, S.cols, &nc);
            if (ci == 0) /* raw bf16 data is the plain bf16 matrix */
                t_ref = time_us([&](int i) { VK(vz_gemm_bf16(g, W[i % nc].data, S.rows, S.cols, dy, S.rows, dx, S.cols, T, 0)); },
                                20, st);
            const vz_cuda_tensor *one[1];
            vz_gemm_decode_variant(0);
            double td0 = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_decode(g, 1, one, 0, S.rows)); }, 20, st);
            vz_gemm_decode_variant(2);
            double td2 = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_decode(g, 1, one, 0, S.rows)); }, 20, st);
            vz_gemm_decode_variant(1);
            double td = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_decode(g, 1, one, 0, S.rows)); }, 20, st);
            vz_gemm_decode_variant(dec0);
            if (dec_only) { /* PF_BENCH_DEC_ONLY: the decoders only */
                printf("| %s | | %s | %.1f | %.1f | %.1f | | | | | | | | | | | | | | |\n", S.name, codecs[ci], td0, td, td2);
                fflush(stdout);
                for (int k = 0; k < nc; k++) vz_cuda_tensor_free(&W[k]);
                free(W);
                continue;
            }
            double tg = time_us([&](int) { VK(vz_gemm_scratch_mm(g, S.rows, S.cols, dy, S.rows, dx, S.cols, T, 0)); }, 20, st);
            double ta = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_run(g, 1, one, dy, S.rows, dx, S.cols, T, 0, VZ_GEMM_A)); },
                                20, st);
            double tb = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_run(g, 1, one, dy, S.rows, dx, S.cols, T, 0, VZ_GEMM_B)); },
                                20, st);
            double tsess[4];
            const int fl_sess[4] = {VZ_GEMM_SERIAL | VZ_GEMM_COPY, 0, VZ_GEMM_HALVES, 0};
            for (int k = 0; k < 4; k++) {
                const int old = vz_gemm_pipe_flags(fl_sess[k]);
                vz_gemm *gk = k == 3 ? g2 : gs;
                tsess[k] = time_us([&](int i) { one[0] = &W[i % nc]; VK(vz_gemm_run(gk, 1, one, dy, S.rows, dx, S.cols, T, 0, VZ_GEMM_A)); },
                                   20, st);
                vz_gemm_pipe_flags(old);
            }
            printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f (%.0f) | %.0f%% | %.1f (%.0f) | %.0f%% | %s | %.1f | %.0f%% | %.1f | "
                   "%.0f%% | %.1f | %.0f%% | %.1f | %.0f%% |\n", S.name, ci == 0 ? "" : "", codecs[ci], td0, td, td2, tg, ta, fl / ta / 1e6, 100.0 * t_ref / ta, tb,
                   fl / tb / 1e6, 100.0 * t_ref / tb, ta <= tb ? "A" : "B", tsess[0], 100.0 * t_ref / tsess[0], tsess[1],
                   100.0 * t_ref / tsess[1], tsess[2], 100.0 * t_ref / tsess[2], tsess[3], 100.0 * t_ref / tsess[3]);
            if (ci == 0)
                printf("| %s | %.1f (%.0f) | (reference) | | | | | | | | | | | | | | | | | |\n", S.name, t_ref, fl / t_ref / 1e6);
            fflush(stdout);
            for (int k = 0; k < nc; k++) vz_cuda_tensor_free(&W[k]);
            free(W);
        }
    }
    /* one layer's non-GEMM kernels, TinyLlama (32 heads, 4 KV heads, head_dim 64) and Llama 2 7B (32, 32, 128),
     * f16 cache, positions 0..T-1 */
    const struct { const char *name; int nh, nkv, hd, dim, hid, layers; } ls[2] = {{"tinyllama", 32, 4, 64, 2048, 5632, 22},
                                                                                 {"llama2-7b", 32, 32, 128, 4096, 11008, 32}};
    for (int si = 0; si < 2; si++) {
        const int nh = ls[si].nh, nkv = ls[si].nkv, hd = ls[si].hd, ld = nh * hd + 2 * nkv * hd, dim = ls[si].dim,
                  hid = ls[si].hid, nl = ls[si].layers;
        layer_bufs b = layer_alloc(T, nh, nkv, hd, dim, hid);
        float *qkv = b.qkv, *x = b.x, *w = b.w, *gu = b.gu;
        void *kc = b.kc, *vc = b.vc, *o = b.o;
        const double fl = 4.0 * nh * hd * (double)T * (T + 1) / 2; /* QK^T and PV, causal */
        printf("\nnon-GEMM kernels of one layer, T = %d (%s: %d heads, %d KV heads, hd %d, f16 KV; dim %d, hidden %d); "
               "every variant in this run:\n\n", T, ls[si].name, nh, nkv, hd, dim, hid);
        printf("| kernel | variant | us | per %d-layer chunk, ms | note |\n|---|---|---|---|---|\n", nl);
        const int av[3] = {0, 1, 2};
        const char *an[3] = {"0: flash, tensor cores, key tiles over 2 x 4 warps, a cp.async pipeline each", "1: f32 CUDA cores",
                             "2: the RoPE + KV store kernel alone"};
        for (int k = 0; k < 3; k++) {
            vz_pf_attention_variant(av[k]);
            double us = time_us([&](int) { vz_pf_attention(o, qkv, ld, kc, vc, 0, T, nh, nkv, hd, 1, 10000.0f, NULL, 0, NULL, st); },
                                20, st);
            printf("| attention (RoPE + KV store + causal) | %s | %.1f | %.3f | %.1f TFLOP/s |\n", an[k], us, nl * us / 1e3,
                   fl / us / 1e6);
        }
        vz_pf_attention_variant(0);
        const int nv[3] = {1, 2, 0};
        for (int k = 0; k < 3; k++) {
            const int v = nv[k];
            vz_pf_norm_variant(v);
            double un = time_us([&](int) { vz_pf_rmsnorm_bf16(x, o, w, T, dim, 1e-5f, st); }, 20, st);
            double us = time_us([&](int) { vz_pf_silu_mul_bf16(gu, o, T, hid, st); }, 20, st);
            const char *vn = v == 1   ? "1: generic"
                             : v == 2 ? "2: vectorized, rmsnorm a warp per row (silu 8 per thread)"
                                      : "0: the default (rmsnorm a block per row above dim 2048)";
            printf("| rmsnorm to bf16 (x2 per layer) | %s | %.1f | %.3f | %.0f GB/s |\n", vn, un, 2 * nl * un / 1e3,
                   T * dim * 6.0 / un / 1e3);
            printf("| silu*up to bf16 | %s | %.1f | %.3f | %.0f GB/s |\n", vn, us, nl * us / 1e3, T * hid * 10.0 / us / 1e3);
        }
        vz_pf_norm_variant(0);
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(st));
        layer_free(b);
    }
    vz_gemm_free(g);
    vz_gemm_free(gs);
    vz_gemm_free(g2);
    return 0;
}
