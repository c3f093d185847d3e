/*
 * step.cu - the persistent decode step (step.h; opt-in, VZ_CUDA_STEP=1):
 * one kernel runs every layer of a batch-1 decode step, one CTA of W warps
 * per SM, the phases of a layer separated by grid barriers. Work of a phase:
 *   matvec phases: warp gw (= warp * gridDim.x + CTA, so every SM gets an
 *     equal share) runs units gw - wbase[t], + stride, ... of tensor t
 *     (step_plan), with mv4.cuh's warp loop: the same lane mapping and
 *     fmaf order as the v4 kernel, so results are the kernel chain's bits;
 *   attention: each CTA holds W / 4 groups of ATT_THREADS threads, each
 *     running attention.cuh's block for the (chunk, head) pairs v = group,
 *     + groups, ... below chunks * heads of the current length.
 * Before each barrier every warp starts its loads for the next matvec
 * phase (mv4_ring::start: weights only), so those bytes are in flight while
 * the slowest CTA finishes. Data written in the kernel is read after a
 * barrier (release add, acquire poll, CTA barrier) through L2 (__ldcg) or
 * plain loads, never the read-only path.
 * The grid is no larger than what fits on the device at once
 * (cudaOccupancyMaxActiveBlocksPerMultiprocessor) and is launched as a
 * cooperative kernel, so every CTA is resident and the barriers cannot
 * deadlock. Measured slower than the chain on the H200 so far, with a
 * per-phase trace of where its time goes: bench/results/
 * 2026-11-28-session5-h200.md. CPU reference: the model's forward
 * (src/model/forward.c), and bitwise the kernel chain
 * (tests/test_cuda_forward.c).
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/mv4.cuh"
#include "backend/cuda/step.h"

/* Warps per CTA, a template argument W of the kernel: 12 (VZ_CUDA_STEP=1)
 * leaves each thread 168 registers; 16 (VZ_CUDA_STEP=16) has 128 and
 * spills more (ptxas -v), and measured slower. Attention groups per CTA:
 * W / 4. */
#define STEP_WARPS_DEFAULT 12
#define STEP_AGROUPS(W) ((W) * 32 / ATT_THREADS)

enum { PH_QKV, PH_WO, PH_GU, PH_DOWN, PH_N };

/* One layer's tensors (wq wk wv wo w1 w3 w2) and norm weights, in device memory. */
struct step_layer {
    vz_dview w[7];
    const float *an, *fn;
};

/* Warps [wbase[t], wbase[t + 1]) of the grid run tensor t's units. */
struct step_plan {
    int ntens, wbase[4];
};

struct step_args {
    const step_layer *L;
    int n_layers, dim, qdim, hidden, S; /* S: attention chunks of n_ctx (the partials' stride) */
    int xs_floats;                      /* shared floats of staged x; attention groups after them */
    float eps;
    float *x, *att, *hb, *qkv[3];
    att_args A; /* kc, vc of layer 0 */
    int64_t kv_layer;
    step_plan P[PH_N];
    unsigned *bar; /* [0]: arrivals at grid barriers, [1]: CTAs done; zero between launches */
    int pf;           /* VZ_CUDA_STEP_PF=1: Wo's units prefetched into L2 while attention runs */
    long long *trace; /* vz_step_profile: (3, barriers, CTAs) clock64 of arrival, leave, staged; NULL: none */
    int nbars;
};

/* All CTAs have arrived at barrier number target / gridDim.x, and their
 * writes before it are visible to every thread of this CTA: the CTA's
 * barrier orders its threads' writes before thread 0's release add, another
 * CTA's thread 0 acquires the count, and its CTA barrier orders its
 * threads' reads after that (the pattern of CUTLASS's generic barrier). */
static __device__ __forceinline__ void step_bar(unsigned *bar, unsigned target, long long *tr) {
    __syncthreads();
    if (threadIdx.x == 0) {
        if (tr) tr[0] = clock64();
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        unsigned v;
        do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
        while (v < target);
        if (tr) tr[1] = clock64(); /* tr: arrival (above), leave */
    }
    __syncthreads();
}

/* Where CTA c records barrier b (arrive, leave) and the staging after it (vz_step_profile). */
static __device__ __forceinline__ long long *step_tr(const step_args &a, int b) {
    return a.trace ? a.trace + 3 * ((size_t)b * gridDim.x + blockIdx.x) : NULL;
}

/* The last CTA to finish (every CTA is past every barrier) zeroes the counters for the next launch. */
static __device__ __forceinline__ void step_done(unsigned *bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned n;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(n) : "l"(bar + 1) : "memory");
        if (n == gridDim.x - 1) bar[0] = 0, bar[1] = 0; /* kernel completion publishes them */
    }
}

/* The tensor warp gw works on in a phase of plan P, -1: none. */
static __device__ __forceinline__ int step_tensor(const step_plan &P, int gw) {
    if (gw >= P.wbase[P.ntens]) return -1;
    int t = 0;
    while (t + 1 < P.ntens && gw >= P.wbase[t + 1]) t++;
    return t;
}

/* cp.async.bulk.prefetch.L2 of [p, p + bytes) widened to 16-byte bounds
 * (inside the tensor's 256-byte aligned arena slice). */
static __device__ __forceinline__ void l2_prefetch(const void *p, int64_t bytes) {
    const uintptr_t a = (uintptr_t)p & ~(uintptr_t)15;
    const uint32_t n = (uint32_t)(((uintptr_t)p + (uintptr_t)bytes + 15 - a) & ~(uintptr_t)15);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(n) : "memory");
}

/* Warp gw's Wo units of layer l into L2 (lane i: the warp's unit i; rows
 * r and r + 1 lie together in each section): raw rows, lossless low bytes
 * and codes, q8 and q4 codes. Issued before attention, which leaves DRAM
 * idle. */
template <int KIND>
static __device__ __forceinline__ void step_prefetch_wo(const step_args &a, int l, int gw) {
    const step_plan &P = a.P[PH_WO];
    const int lane = threadIdx.x & 31;
    if (!a.pf || gw >= P.wbase[1]) return;
    const vz_dview &d = a.L[l].w[3];
    const int64_t r = 2 * (gw + (int64_t)lane * P.wbase[1]), nr = r + 1 < d.rows ? 2 : 1;
    if (r >= d.rows) return;
    if (KIND == VZ_K_RAW_BF16) l2_prefetch(d.data + r * d.cols * 2, nr * d.cols * 2);
    else if (KIND == VZ_K_LL3) {
        l2_prefetch(d.data + r * d.cols, nr * d.cols);
        l2_prefetch(d.codes + r * d.gpr * d.k, nr * d.gpr * d.k * 4);
    } else if (KIND == VZ_K_Q8) l2_prefetch(d.data + r * d.cols, nr * d.cols);
    else l2_prefetch(d.data + r * d.qstride, nr * d.qstride);
}

/* The attention of layer l: (chunk, head) blocks over the CTAs' groups. */
template <int W>
static __device__ __noinline__ void step_attention(const step_args &a, int l, float *gsm, int *last) {
    const int g = threadIdx.x / ATT_THREADS;
    const vz_tgroup tg = {(int)threadIdx.x % ATT_THREADS, ATT_THREADS, 1 + g};
    att_args A = a.A;
    A.kc += (int64_t)l * a.kv_layer, A.vc += (int64_t)l * a.kv_layer;
    const int len = A.pos[0] + 1, ns = (len + A.chunk - 1) / A.chunk, nv = ns * A.n_heads;
    const int fl = vz_att_block_floats(A.hd, A.kv_f16);
    for (int v = blockIdx.x * STEP_AGROUPS(W) + g; v < nv; v += gridDim.x * STEP_AGROUPS(W))
        att_block(A, tg, v % ns, v / ns, 0, a.S, 1, gsm + g * fl, last + g);
}

/* Matvec phase ph of layer l for warp gw: its first weight loads (they
 * need no activation), then the grid barrier (target: arrivals that mean
 * the inputs are complete; 0: none), the input staged (normed for QKV and
 * gate/up), the matvec. Not inlined: each phase's registers are its own. */
template <int KIND, int W>
static __device__ __noinline__ void step_matvec(const step_args &a, int ph, int l, int gw, unsigned target, float4 *xs,
                                                vz_rms_smem *nsm, uint32_t *sm) {
    const int lane = threadIdx.x & 31;
    const step_plan &P = a.P[ph];
    const step_layer *L = a.L + l;
    const int t = step_tensor(P, gw);
    const int i0 = ph == PH_QKV ? (t < 0 ? 0 : t) : ph == PH_WO ? 3 : ph == PH_GU ? 4 : 6;
    const bool silu = ph == PH_GU;
    const vz_dview d0 = L->w[i0], d1 = silu ? L->w[5] : d0;
    const int64_t nunit = silu ? d0.rows : (d0.rows + 1) / 2;
    mv4_ring<KIND, 1> ring;
    if (t < 0) ring.start(d0, d1, silu, 0, 1, 0, lane);
    else ring.start(d0, d1, silu, gw - P.wbase[t], P.wbase[t + 1] - P.wbase[t], nunit, lane);
    long long *tr = target ? step_tr(a, (int)(target / gridDim.x) - 1) : NULL;
    if (target) step_bar(a.bar, target, tr);
    const float *x = ph == PH_WO ? a.att : ph == PH_DOWN ? a.hb : a.x;
    const float *nw = ph == PH_QKV ? L->an : ph == PH_GU ? L->fn : NULL;
    const int c4 = (int)(d0.cols >> 2);
    mv4_stage<true, false>(x, nw, a.eps, 1, c4, xs, nsm);
    if (tr && threadIdx.x == 0) tr[2] = clock64();
    float *y = ph == PH_QKV ? a.qkv[t < 0 ? 0 : t] : ph == PH_GU ? a.hb : a.x;
    ring.run(xs, c4, y, ph == PH_WO || ph == PH_DOWN ? VZ_CUDA_EPI_ADD : VZ_CUDA_EPI_NONE, lane, sm);
}

template <int KIND, int W>
static __global__ void __launch_bounds__(W * 32, 1) k_step(const __grid_constant__ step_args a) {
    extern __shared__ float4 xs_[];
    __shared__ __align__(16) uint32_t llsm[KIND == VZ_K_LL3 ? W : 1][VZ_SMEM_WARP3];
    __shared__ vz_rms_smem nsm;
    __shared__ int last[STEP_AGROUPS(W)];
    const int warp = threadIdx.x >> 5, gw = warp * gridDim.x + blockIdx.x;
    uint32_t *sm = llsm[KIND == VZ_K_LL3 ? warp : 0];
    float4 *xs = mv4_align(xs_); /* staged x, then the attention groups */
    unsigned nbar = 0;
    for (int l = 0; l < a.n_layers; l++) {
        /* q, k, v = (Wq, Wk, Wv) norm(x) (layer 0: x is the embedding kernel's) */
        step_matvec<KIND, W>(a, PH_QKV, l, gw, l ? ++nbar * gridDim.x : 0, xs, &nsm, sm);
        /* att = attention(rope(q), rope(k), v), k and v into the caches */
        step_prefetch_wo<KIND>(a, l, gw);
        ++nbar;
        step_bar(a.bar, nbar * gridDim.x, step_tr(a, (int)nbar - 1));
        step_attention<W>(a, l, (float *)xs + a.xs_floats, last);
        /* x += Wo att; hb = silu(W1 norm(x)) * W3 norm(x); x += W2 hb */
        step_matvec<KIND, W>(a, PH_WO, l, gw, ++nbar * gridDim.x, xs, &nsm, sm);
        step_matvec<KIND, W>(a, PH_GU, l, gw, ++nbar * gridDim.x, xs, &nsm, sm);
        step_matvec<KIND, W>(a, PH_DOWN, l, gw, ++nbar * gridDim.x, xs, &nsm, sm);
    }
    step_done(a.bar);
}

typedef void (*step_fn)(step_args);
#define STEP_ROW(W) {k_step<VZ_K_RAW_BF16, W>, k_step<VZ_K_LL3, W>, k_step<VZ_K_Q8, W>, k_step<VZ_K_Q4, W>}
static const step_fn step_fns[2][4] = {STEP_ROW(12), STEP_ROW(16)};

struct vz_step {
    step_args a;
    step_fn fn;
    int warps;
    unsigned grid;
    size_t smem;
    step_layer *d_L;
    unsigned *d_bar;
};

vz_dview vz_cuda_view(const vz_cuda_tensor *t); /* cuda_weights.cu */

/* Warps per tensor in proportion to its units (at most one warp per unit,
 * at least one per tensor), nw warps in all. */
static void plan_phase(step_plan *P, int n, const int64_t units[3], int nw) {
    int64_t tot = 0;
    for (int t = 0; t < n; t++) tot += units[t];
    int w[3], sum = 0, big = 0;
    for (int t = 0; t < n; t++) {
        int64_t k = (int64_t)nw * units[t] / tot;
        k = k < 1 ? 1 : k > units[t] ? units[t] : k;
        w[t] = (int)k, sum += w[t];
        if (w[t] > w[big]) big = t;
    }
    if (sum > nw) w[big] -= sum - nw;
    P->ntens = n, P->wbase[0] = 0;
    for (int t = 0; t < n; t++) P->wbase[t + 1] = P->wbase[t] + w[t];
    for (int t = n; t < 3; t++) P->wbase[t + 1] = P->wbase[t];
}

/* Every tensor of every layer has the kind of w[0], a fast one, and the model's shape. */
static vz_status check_layers(const vz_step_desc *d, const vz_cuda_tensor *const *w) {
    const int64_t qd = (int64_t)d->n_heads * d->head_dim, kvd = (int64_t)d->n_kv * d->head_dim;
    const int64_t rows[7] = {qd, kvd, kvd, d->dim, d->hidden, d->hidden, d->dim};
    const int64_t cols[7] = {d->dim, d->dim, d->dim, qd, d->dim, d->dim, d->hidden};
    const int kind = w[0]->kind;
    VZ_FAIL_IF(kind < VZ_K_RAW_BF16 || kind >= VZ_K_GENERIC, VZ_ERR_UNSUPPORTED, "cuda step: no fast decoder");
    for (int32_t l = 0; l < d->n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const vz_cuda_tensor *t = w[7 * l + i];
            VZ_FAIL_IF(!t->data || t->kind != kind || t->tc || t->tiled, VZ_ERR_UNSUPPORTED,
                       "cuda step: layer %d tensor %d: kind %d (layer 0: %d), tc %d", (int)l, i, (int)t->kind, kind,
                       (int)t->tc);
            VZ_FAIL_IF(kind == VZ_K_LL3 && vz_cuda_view(t).bpr >= 32, VZ_ERR_UNSUPPORTED,
                       "cuda step: layer %d tensor %d: %lld columns (the ring takes lossless rows of < 32 blocks)",
                       (int)l, i, (long long)t->cols);
            VZ_FAIL_IF(t->rows != rows[i] || t->cols != cols[i], VZ_ERR_SHAPE,
                       "cuda step: layer %d tensor %d is %lldx%lld, the model needs %lldx%lld", (int)l, i,
                       (long long)t->rows, (long long)t->cols, (long long)rows[i], (long long)cols[i]);
        }
    return VZ_OK;
}

/* Grid, shared memory and plans of s for kernel s->fn. */
static vz_status size_grid(vz_step *s, const vz_step_desc *d) {
    int dev = 0, sms = 0, per = 0;
    const int qd = d->n_heads * d->head_dim;
    int xf = d->dim > qd ? d->dim : qd;
    xf = xf > d->hidden ? xf : d->hidden;
    s->a.xs_floats = (xf + 3) & ~3;
    s->smem = MV4_XPAD + sizeof(float) * ((size_t)s->a.xs_floats +
                                          (size_t)STEP_AGROUPS(s->warps) * vz_att_block_floats(d->head_dim, d->kv_f16));
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(s->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s->smem);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, s->fn, s->warps * 32, s->smem);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "cuda step: %zu bytes of shared memory: %s", s->smem, cudaGetErrorString(e));
    }
    VZ_FAIL_IF(per < 1, VZ_ERR_UNSUPPORTED, "cuda step: no CTA fits an SM");
    s->grid = (unsigned)sms; /* one CTA per SM: the plans spread warps over SMs */
    const int nw = (int)s->grid * s->warps, kvu = (d->n_kv * d->head_dim + 1) / 2;
    const int64_t qkv[3] = {(qd + 1) / 2, kvu, kvu}, wo[1] = {(d->dim + 1) / 2}, gu[1] = {d->hidden};
    plan_phase(&s->a.P[PH_QKV], 3, qkv, nw);
    plan_phase(&s->a.P[PH_WO], 1, wo, nw);
    plan_phase(&s->a.P[PH_GU], 1, gu, nw);
    plan_phase(&s->a.P[PH_DOWN], 1, wo, nw);
    return VZ_OK;
}

static vz_status upload_layers(vz_step *s, const vz_step_desc *d, const vz_cuda_tensor *const *w,
                               const float *const *norms, uint64_t *bytes) {
    const size_t n = (size_t)d->n_layers;
    step_layer *h = (step_layer *)calloc(n, sizeof *h);
    VZ_FAIL_IF(!h, VZ_ERR_NOMEM, "cuda step: out of memory");
    for (size_t l = 0; l < n; l++) {
        for (int i = 0; i < 7; i++) h[l].w[i] = vz_cuda_view(w[7 * l + i]);
        h[l].an = norms[2 * l], h[l].fn = norms[2 * l + 1];
    }
    cudaError_t e = cudaMalloc((void **)&s->d_L, n * sizeof *h);
    if (e == cudaSuccess) e = cudaMemcpy(s->d_L, h, n * sizeof *h, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->d_bar, 2 * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(s->d_bar, 0, 2 * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    free(h);
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda step: layer table: %s", cudaGetErrorString(e));
    *bytes = n * sizeof *h + 2 * sizeof(unsigned);
    return VZ_OK;
}

vz_status vz_step_create(vz_step **out, const vz_step_desc *d, const vz_cuda_tensor *const *w,
                         const float *const *norms, uint64_t *bytes) {
    VZ_FAIL_IF(!out || !d || !w || !norms || !bytes || d->n_layers < 1, VZ_ERR_ARG, "vz_step_create: bad arguments");
    *out = NULL, *bytes = 0;
    VZ_FAIL_IF(d->dim % 4 || d->hidden % 4 || d->head_dim % 8 || d->head_dim > 128, VZ_ERR_UNSUPPORTED,
               "cuda step: dim %d, hidden %d, head_dim %d", (int)d->dim, (int)d->hidden, (int)d->head_dim);
    VZ_TRY(check_layers(d, w));
    vz_step *s = (vz_step *)calloc(1, sizeof *s);
    VZ_FAIL_IF(!s, VZ_ERR_NOMEM, "cuda step: out of memory");
    s->warps = d->warps == 16 ? 16 : STEP_WARPS_DEFAULT;
    s->fn = step_fns[s->warps == 16][w[0]->kind];
    int chunk = d->chunk;
    if (chunk < VZ_ATT_CHUNK_MIN || chunk > VZ_ATT_CHUNK) chunk = VZ_ATT_CHUNK_DEFAULT; /* as vz_k_attention */
    step_args *a = &s->a;
    a->n_layers = d->n_layers, a->dim = d->dim, a->qdim = d->n_heads * d->head_dim, a->hidden = d->hidden;
    a->S = (d->n_ctx + chunk - 1) / chunk, a->eps = d->eps;
    a->x = d->x, a->att = d->att, a->hb = d->hb, a->qkv[0] = d->q, a->qkv[1] = d->k, a->qkv[2] = d->v;
    a->A = att_args{d->att, d->q, d->k, d->v, (char *)d->kc, (char *)d->vc, d->part, d->cnt, d->d_pos, d->d_slot,
                    (int64_t)d->slot_bytes, 0, d->n_heads, d->n_kv, d->head_dim, d->kv_f16, d->interleaved,
                    d->theta, chunk};
    a->kv_layer = (int64_t)d->kv_layer;
    a->nbars = 5 * d->n_layers - 1, a->pf = d->pf;
    vz_status st = size_grid(s, d);
    if (st == VZ_OK) st = upload_layers(s, d, w, norms, bytes);
    if (st != VZ_OK) {
        vz_step_free(s);
        return st;
    }
    a->L = s->d_L, a->bar = s->d_bar;
    *out = s;
    return VZ_OK;
}

vz_status vz_step_run(vz_step *s, cudaStream_t st) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(s->grid), cfg.blockDim = dim3(s->warps * 32), cfg.dynamicSmemBytes = s->smem, cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeCooperative;
    at[0].val.cooperative = 1;
    cfg.attrs = at, cfg.numAttrs = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, s->fn, s->a);
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda step launch (%u CTAs, %zu bytes shared): %s", s->grid, s->smem,
               cudaGetErrorString(e));
    return VZ_OK;
}

/* Phases of a layer as the trace sees them: the barrier before each. */
static const char *const step_phase_names[5] = {"QKV matvec", "attention", "Wo matvec", "gate/up matvec", "down matvec"};

void vz_step_profile(vz_step *s, cudaStream_t st, FILE *f) {
    const size_t n = 3 * (size_t)s->a.nbars * s->grid;
    long long *d = NULL, *h = (long long *)calloc(n, sizeof *h);
    int dev = 0, khz = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
    if (!h || khz <= 0 || cudaMalloc((void **)&d, n * sizeof *d) != cudaSuccess) {
        free(h);
        return;
    }
    s->a.trace = d;
    vz_status rs = vz_step_run(s, st);
    s->a.trace = NULL;
    if (rs == VZ_OK && cudaStreamSynchronize(st) == cudaSuccess &&
        cudaMemcpy(h, d, n * sizeof *d, cudaMemcpyDeviceToHost) == cudaSuccess) {
        /* per phase (the barrier before it: its index b = 5 l + phase - 1), mean over layers and CTAs */
        double wait[5] = {0}, stage[5] = {0}, run[5] = {0}, spread[5] = {0};
        int cnt[5] = {0}, cr[5] = {0};
        const double us = 1e3 / khz;
        for (int b = 0; b < s->a.nbars; b++) {
            const int ph = (b + 1) % 5;
            long long lo = 0, hi = 0;
            for (unsigned c = 0; c < s->grid; c++) {
                const long long *t = h + 3 * ((size_t)b * s->grid + c);
                wait[ph] += (double)(t[1] - t[0]) * us;
                if (ph != 1) stage[ph] += (double)(t[2] - t[1]) * us;
                if (b + 1 < s->a.nbars) { /* this phase's work: from its staging to the next barrier's arrival */
                    const long long *u = h + 3 * ((size_t)(b + 1) * s->grid + c);
                    run[ph] += (double)(u[0] - (ph != 1 ? t[2] : t[1])) * us;
                    lo = c == 0 || u[0] - t[1] < lo ? u[0] - t[1] : lo;
                    hi = c == 0 || u[0] - t[1] > hi ? u[0] - t[1] : hi;
                }
            }
            cnt[ph] += (int)s->grid;
            if (b + 1 < s->a.nbars) spread[ph] += (double)(hi - lo) * us, cr[ph]++;
        }
        fprintf(f, "profile (persistent step, one launch, us per layer, mean over CTAs; %d warps per CTA):\n", s->warps);
        fprintf(f, "  %-16s %10s %10s %10s %14s\n", "phase", "barrier", "staging", "work", "work max-min");
        for (int ph = 0; ph < 5; ph++)
            if (cnt[ph])
                fprintf(f, "  %-16s %10.2f %10.2f %10.2f %14.2f\n", step_phase_names[ph], wait[ph] / cnt[ph],
                        stage[ph] / cnt[ph], cr[ph] ? run[ph] / (cr[ph] * (double)s->grid) : 0.0,
                        cr[ph] ? spread[ph] / cr[ph] : 0.0);
    }
    cudaFree(d);
    free(h);
}

void vz_step_free(vz_step *s) {
    if (!s) return;
    cudaFree(s->d_L);
    cudaFree(s->d_bar);
    free(s);
}
