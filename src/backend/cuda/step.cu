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
    long long *trace; /* vz_step_profile: (5, barriers, CTAs) clock64 of arrival, leave, staged, and (ring) the
                         cycles its consumer warps then waited for weights and computed; NULL: none */
    int nbars;
    int ring_slot, ring_nslot, ring_xbytes; /* the ring step (below): bytes per slot, slots, bytes before them */
    int ring_knob; /* VZ_CUDA_RING_KNOB (timing only, wrong outputs): 1 no attention, 2 no matvec math */
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
    return a.trace ? a.trace + 5 * ((size_t)b * gridDim.x + blockIdx.x) : NULL;
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


/* ---- the ring step (VZ_CUDA_STEP=2; raw bf16, batch 1) ---------------------
 * The persistent step with its weights streamed through shared memory. Each
 * CTA (one per SM) has RING_W consumer warps and one producer warp. The
 * producer's one thread walks the CTA's share of every matvec of the whole
 * step in order (layer by layer: QKV, Wo, gate/up, down; CTA c takes rows
 * [c R / G, (c + 1) R / G) of each tensor) and copies it, a chunk of whole
 * rows at a time, into a ring of slots with the copy engine
 * (cp.async.bulk, completing on the slot's "full" mbarrier). It never waits
 * for a grid barrier, only for a free slot ("empty" mbarrier), so the
 * weights of the next phases are already arriving while the consumers wait
 * at a barrier or run the attention: DRAM stays busy across the hand-offs
 * that cost the kernel chain ~10 us per tinyllama layer.
 * Consumer warp w takes chunks w, w + RING_W, ... of the same walk; a row is
 * summed as mv4.cuh's warp loop sums it (lane l owns groups 32 it + l, fmaf
 * in element order by mv4_fma, then the xor-butterfly), so the bits are the
 * kernel chain's, and with them lossless's (which keeps the chain).
 * The consumers' barriers are named barriers of their RING_W * 32 threads
 * (RING_BAR; attention.cuh's groups use 1 and 2): the producer joins none.
 * Slots: chunk j fills slot j % nslot, use j / nslot, and its consumer
 * waits for the full barrier's phase of that use's parity. A parity wait
 * is right only while the slot's previous use is complete, which holds
 * when nslot >= RING_W: the warp's previous chunk j - RING_W was complete,
 * and the producer fills in order. The same order makes the producer's
 * empty waits right. Every lane of a consumer warp arrives on "empty"
 * (count 32) after its own reads: with one lane arriving after a
 * __syncwarp, racecheck flagged every slot access (session 26).
 * Opt-in: on an H200 it gives the chain's bits but runs at 0.6x the chain
 * (tinyllama raw 762 against 1272 tok/s, llama2-7b 214 against 275). The
 * weights do arrive ahead (its warps wait ~0 for them); the persistent
 * kernel's fixed costs per tinyllama layer (grid barriers 15.7 us, input
 * staging 7.9 us, the attention 8.1 us) exceed the chain's whole layer
 * (35.7 us): bench/results/2026-11-30-session26-h200.md. */
#define RING_W 8
#define RING_BAR 3
#define RING_MAXSLOT 64

static __device__ __forceinline__ void ring_csync() { vz_bar_sync<RING_BAR, RING_W * 32>(); }

static __device__ __forceinline__ void mb_init(uint32_t a, unsigned n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(a), "r"(n) : "memory");
}
static __device__ __forceinline__ void mb_expect_tx(uint32_t a, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(a), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void mb_arrive(uint32_t a) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(a) : "memory");
}
/* Waits for the completion of the phase of parity `parity` of mbarrier a. */
static __device__ __forceinline__ void mb_wait(uint32_t a, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
    } while (!done);
}
/* bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned), completing on mbarrier mb. */
static __device__ __forceinline__ void bulk_g2s(uint32_t dst, const void *src, uint32_t bytes, uint32_t mb) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(mb)
                 : "memory");
}

static __device__ __forceinline__ uint4 lds128(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
    return v;
}

/* Lane group g's 64 bytes of a raw bf16 row in shared memory (at a = the
 * row + 64 g) as vz_pk (vz_rawbf_decode2's form). Lane l reads its 16-byte
 * pieces in the order q ^ k, k = (l >> 1) & 3: with 128-byte aligned rows
 * the 8 lanes of each quarter warp then hit 8 distinct bank groups (in
 * order, lanes 2 apart would share one), and two levels of selects put the
 * pieces back in order. */
static __device__ __forceinline__ void ring_ld_raw(uint32_t a, int lane, vz_pk &pk) {
    const int k = (lane >> 1) & 3;
    uint4 r[4], t[4];
#pragma unroll
    for (int q = 0; q < 4; q++) r[q] = lds128(a + 16u * (uint32_t)(q ^ k)); /* r[q] = piece q ^ k */
#pragma unroll
    for (int j = 0; j < 4; j++) t[j] = k & 1 ? r[j ^ 1] : r[j]; /* t[j] = piece j ^ (k & 2) */
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const uint4 w = k & 2 ? t[j ^ 2] : t[j];
        pk.p[4 * j] = w.x, pk.p[4 * j + 1] = w.y, pk.p[4 * j + 2] = w.z, pk.p[4 * j + 3] = w.w;
    }
}

/* Calls f(d0, d1, silu, r, n, rb, t) for every chunk of this CTA in phase
 * ph of layer L (in global memory for the producer, a copy in shared
 * memory for the consumers), in the producer's order: n rows from row r of tensor d0
 * (QKV: tensor t of 3; gate/up: n gate rows of d0 then the same n up rows
 * of d1), rb bytes per row, as many rows (pairs) as fit a slot. */
template <typename F>
static __device__ __forceinline__ void ring_chunks(const step_args &a, const step_layer *L, int ph, F f) {
    const int nt = ph == PH_QKV ? 3 : 1;
    const bool silu = ph == PH_GU;
    for (int t = 0; t < nt; t++) {
        const int i0 = ph == PH_QKV ? t : ph == PH_WO ? 3 : ph == PH_GU ? 4 : 6;
        const vz_dview &d0 = L->w[i0], &d1 = L->w[silu ? 5 : i0];
        const int64_t R = d0.rows, G = gridDim.x, c = blockIdx.x;
        const int r0 = (int)(c * R / G), r1 = (int)((c + 1) * R / G), rb = (int)d0.cols * 2;
        const int k = max(1, a.ring_slot / (silu ? 2 * rb : rb));
        for (int r = r0; r < r1; r += k) f(d0, d1, silu, r, min(k, r1 - r), rb, t);
    }
}

/* The producer: every chunk of the step, in order, into slot j % nslot. */
static __device__ __noinline__ void ring_produce(const step_args &a, uint32_t ring, uint32_t full, uint32_t empty) {
    unsigned j = 0;
    const unsigned ns = (unsigned)a.ring_nslot;
    for (int l = 0; l < a.n_layers; l++)
        for (int ph = 0; ph < PH_N; ph++)
            ring_chunks(a, a.L + l, ph,
                        [&](const vz_dview &d0, const vz_dview &d1, bool silu, int r, int n, int rb, int) {
                const unsigned s = j % ns, u = j / ns;
                if (u) mb_wait(empty + 8 * s, (u - 1) & 1); /* its last chunk's consumer is done with it */
                const uint32_t bytes = (uint32_t)n * (uint32_t)rb, dst = ring + s * (uint32_t)a.ring_slot;
                mb_expect_tx(full + 8 * s, silu ? 2 * bytes : bytes);
                bulk_g2s(dst, d0.data + (size_t)r * rb, bytes, full + 8 * s);
                if (silu) bulk_g2s(dst + bytes, d1.data + (size_t)r * rb, bytes, full + 8 * s);
                j++;
            });
}

/* acc[s] = row s (at shared address row[s]) . staged x, mv4's order: lane
 * groups in order, mv4_fma, then the butterfly (every lane gets the sum). */
template <int NS>
static __device__ __forceinline__ void ring_dot(const uint32_t row[NS], int gpr, uint32_t xa0, int c4, int lane,
                                                float acc[NS][1]) {
#pragma unroll
    for (int s = 0; s < NS; s++) acc[s][0] = 0.0f;
    for (int g = lane; g < ((gpr + 31) & ~31); g += 32)
        if (g < gpr) {
            vz_pk pk[NS];
#pragma unroll
            for (int s = 0; s < NS; s++) ring_ld_raw(row[s] + 64u * (uint32_t)g, lane, pk[s]);
            mv4_fma<VZ_K_RAW_BF16, 1, NS>(pk, xa0 + 128u * (uint32_t)g, c4, acc);
        }
#pragma unroll
    for (int s = 0; s < NS; s++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[s][0] += __shfl_xor_sync(0xffffffffu, acc[s][0], o);
}

/* x (c4 float4, written in this kernel: read through L2) into xs as
 * mv4_stage lays it out, times RMSNorm with weights nw unless NULL: the
 * same arithmetic as mv4_stage<true, true>. Consumer threads only. */
static __device__ __noinline__ void ring_stage(const float *x, const float *nw, float eps, int c4, float4 *xs,
                                               vz_rms_smem *nsm) {
    for (int j = threadIdx.x; j < c4; j += RING_W * 32) xs[mv4_swz(j)] = __ldcg((const float4 *)x + j);
    ring_csync();
    if (!nw) return;
    const auto at = [xs](int, int i) { return ((const float *)xs)[4 * mv4_swz(i >> 2) + (i & 3)]; };
    vz_rms_scales<RING_BAR, RING_W * 32>(at, 1, c4 * 4, eps, nsm);
    const float sc = nsm->sc[0];
    for (int j = threadIdx.x; j < c4; j += RING_W * 32) {
        const float4 w = __ldg((const float4 *)nw + j), v = xs[mv4_swz(j)];
        xs[mv4_swz(j)] = make_float4(w.x * (v.x * sc), w.y * (v.y * sc), w.z * (v.z * sc), w.w * (v.w * sc));
    }
    ring_csync();
}

/* Grid barrier of the consumer threads (step_bar's pattern, its trace). */
static __device__ __forceinline__ void ring_gbar(unsigned *bar, unsigned target, long long *tr) {
    ring_csync();
    if (threadIdx.x == 0) {
        if (tr) tr[0] = clock64();
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
        unsigned v;
        do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
        while (v < target);
        if (tr) tr[1] = clock64();
    }
    ring_csync();
}

/* Consumer warp `warp`'s chunks of phase ph of layer l (j: the walk's
 * index of the phase's first chunk); returns the index after the phase. */
static __device__ __noinline__ unsigned ring_phase(const step_args &a, const step_layer *L, int ph, unsigned j,
                                                   uint32_t ring, uint32_t full, uint32_t empty, uint32_t xs0, int c4,
                                                   long long *tr) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (tr && threadIdx.x == 0) tr[2] = clock64(); /* staged */
    long long wc = 0, mc = 0;
    const unsigned ns = (unsigned)a.ring_nslot;
    const uint32_t xa0 = xs0 + 16u * (uint32_t)(lane & 7);
    ring_chunks(a, L, ph, [&](const vz_dview &d0, const vz_dview &, bool silu, int r, int n, int rb, int t) {
        if (j % RING_W == (unsigned)warp) {
            const unsigned s = j % ns;
            const long long c0 = tr ? clock64() : 0;
            mb_wait(full + 8 * s, (j / ns) & 1);
            const long long c1 = tr ? clock64() : 0;
            if (tr) wc += c1 - c0;
            const uint32_t base = ring + s * (uint32_t)a.ring_slot;
            const int gpr = d0.gpr;
            float *y = ph == PH_QKV ? a.qkv[t] : ph == PH_GU ? a.hb : a.x;
            const bool add = ph == PH_WO || ph == PH_DOWN;
            int i = (a.ring_knob & 2) ? n : 0;
            for (; silu ? i < n : i + 1 < n; i++) { /* pairs: (gate i, up i), or rows i, i + 1 */
                const uint32_t row[2] = {base + (uint32_t)(i * rb), base + (uint32_t)((silu ? n + i : i + 1) * rb)};
                float acc[2][1];
                ring_dot<2>(row, gpr, xa0, c4, lane, acc);
                if (lane == 0) {
                    if (silu) {
                        const float g = acc[0][0];
                        y[r + i] = g / (1.0f + expf(-g)) * acc[1][0];
                    } else {
                        y[r + i] = add ? __ldcg(y + r + i) + acc[0][0] : acc[0][0];
                        y[r + i + 1] = add ? __ldcg(y + r + i + 1) + acc[1][0] : acc[1][0];
                    }
                }
                if (!silu) i++;
            }
            if (!silu && i < n) { /* an odd count's last row */
                const uint32_t row[1] = {base + (uint32_t)(i * rb)};
                float acc[1][1];
                ring_dot<1>(row, gpr, xa0, c4, lane, acc);
                if (lane == 0) y[r + i] = add ? __ldcg(y + r + i) + acc[0][0] : acc[0][0];
            }
            mb_arrive(empty + 8 * s); /* every lane, after its own reads (the barrier counts 32) */
            if (tr) mc += clock64() - c1;
        }
        j++;
    });
    if (tr && lane == 0) {
        atomicAdd((unsigned long long *)tr + 3, (unsigned long long)wc);
        atomicAdd((unsigned long long *)tr + 4, (unsigned long long)mc);
    }
    return j;
}

static __global__ void __launch_bounds__((RING_W + 1) * 32, 1) k_ring(const __grid_constant__ step_args a) {
    extern __shared__ __align__(16) unsigned char rsm[];
    __shared__ __align__(8) unsigned long long mb[2 * RING_MAXSLOT];
    __shared__ vz_rms_smem nsm;
    __shared__ int last[STEP_AGROUPS(RING_W)];
    __shared__ step_layer Ls[2]; /* the consumers' copy of layer l's descriptors: Ls[l & 1] */
    float4 *xs = mv4_align((float4 *)rsm); /* staged x, or the attention groups */
    const uint32_t sm0 = (uint32_t)__cvta_generic_to_shared(rsm);
    const uint32_t ring = (sm0 + (uint32_t)a.ring_xbytes + 127u) & ~127u;
    const uint32_t full = (uint32_t)__cvta_generic_to_shared(mb), empty = full + 8u * RING_MAXSLOT;
    if (threadIdx.x == 0) {
        for (int s = 0; s < a.ring_nslot; s++) mb_init(full + 8 * s, 1), mb_init(empty + 8 * s, 32);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x >= RING_W * 32) { /* the producer warp */
        if (threadIdx.x == RING_W * 32) ring_produce(a, ring, full, empty);
        return;
    }
    const uint32_t xs0 = (uint32_t)__cvta_generic_to_shared(xs);
    unsigned j = 0, nbar = 0;
    long long *tr = NULL; /* the trace of the last barrier */
    const auto gbar = [&]() {
        tr = step_tr(a, (int)nbar);
        ring_gbar(a.bar, ++nbar * gridDim.x, tr);
    };
    for (int l = 0; l < a.n_layers; l++) {
        /* Layer l's descriptors into shared memory before the barrier (read after it, by the barrier's
         * CTA sync; Ls[l & 1] was last read in layer l - 2): after a grid barrier's acquire, each read
         * from global memory was a round trip on the path of every phase. */
        step_layer *L = Ls + (l & 1);
        for (int i = threadIdx.x; i < (int)(sizeof(step_layer) / 4); i += RING_W * 32)
            ((uint32_t *)L)[i] = __ldg((const uint32_t *)(a.L + l) + i);
        if (l) gbar();
        else ring_csync();
        ring_stage(a.x, L->an, a.eps, a.dim / 4, xs, &nsm);
        j = ring_phase(a, L, PH_QKV, j, ring, full, empty, xs0, a.dim / 4, tr);
        gbar();
        if (!(a.ring_knob & 1)) step_attention<RING_W>(a, l, (float *)xs, last);
        gbar();
        ring_stage(a.att, NULL, a.eps, a.qdim / 4, xs, &nsm);
        j = ring_phase(a, L, PH_WO, j, ring, full, empty, xs0, a.qdim / 4, tr);
        gbar();
        ring_stage(a.x, L->fn, a.eps, a.dim / 4, xs, &nsm);
        j = ring_phase(a, L, PH_GU, j, ring, full, empty, xs0, a.dim / 4, tr);
        gbar();
        ring_stage(a.hb, NULL, a.eps, a.hidden / 4, xs, &nsm);
        j = ring_phase(a, L, PH_DOWN, j, ring, full, empty, xs0, a.hidden / 4, tr);
    }
    ring_csync(); /* step_done for the consumer threads */
    if (threadIdx.x == 0) {
        unsigned n;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(n) : "l"(a.bar + 1) : "memory");
        if (n == gridDim.x - 1) a.bar[0] = 0, a.bar[1] = 0;
    }
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
    bool ring; /* k_ring, else k_step */
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

/* The ring step's grid (one CTA per SM), shared memory and slots: staged x
 * (or the attention groups) first, then as many slots as fit the SM's
 * opt-in shared memory. A slot holds the longest row, or a gate row and
 * its up row, and at least 16 KiB. */
static vz_status ring_size(vz_step *s, const vz_step_desc *d, const vz_cuda_tensor *const *w) {
    int dev = 0, sms = 0, optin = 0, per = 0;
    cudaFuncAttributes fa;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaFuncGetAttributes(&fa, s->fn);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "cuda ring step: %s", cudaGetErrorString(e));
    }
    const int qd = d->n_heads * d->head_dim;
    int xf = d->dim > qd ? d->dim : qd;
    xf = xf > d->hidden ? xf : d->hidden;
    const int att = STEP_AGROUPS(RING_W) * vz_att_block_floats(d->head_dim, d->kv_f16);
    const int xb = MV4_XPAD + 4 * (xf > att ? xf : att);
    int64_t rb = 2 * w[4]->cols * 2; /* a gate row and its up row */
    for (int i = 0; i < 7; i++) rb = 2 * w[i]->cols > rb ? 2 * w[i]->cols : rb;
    const int64_t slot = ((rb > 16384 ? rb : 16384) + 1023) & ~(int64_t)1023;
    const int64_t avail = (int64_t)optin - (int64_t)fa.sharedSizeBytes - xb - 128;
    int64_t ns = avail / slot;
    ns = ns > RING_MAXSLOT ? RING_MAXSLOT : ns;
    VZ_FAIL_IF(ns < RING_W, VZ_ERR_UNSUPPORTED,
               "cuda ring step: %d bytes of shared memory hold %lld slots of %lld bytes (it needs %d)", optin,
               (long long)ns, (long long)slot, RING_W);
    s->a.ring_slot = (int)slot, s->a.ring_nslot = (int)ns, s->a.ring_xbytes = xb;
    const char *kn = getenv("VZ_CUDA_RING_KNOB");
    s->a.ring_knob = kn ? atoi(kn) & 3 : 0;
    s->smem = (size_t)xb + 128 + (size_t)(ns * slot);
    e = cudaFuncSetAttribute(s->fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)s->smem);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, s->fn, s->warps * 32, s->smem);
    if (e != cudaSuccess || per < 1) {
        cudaGetLastError();
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "cuda ring step: %zu bytes of shared memory: %s", s->smem,
                       e != cudaSuccess ? cudaGetErrorString(e) : "no CTA fits an SM");
    }
    s->grid = (unsigned)sms;
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
    s->ring = d->ring != 0;
    s->warps = s->ring ? RING_W + 1 : d->warps == 16 ? 16 : STEP_WARPS_DEFAULT;
    s->fn = s->ring ? k_ring : step_fns[s->warps == 16][w[0]->kind];
    if (s->ring && w[0]->kind != VZ_K_RAW_BF16) {
        free(s);
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "cuda ring step: raw bf16 layers only (kind %d)", (int)w[0]->kind);
    }
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
    vz_status st = s->ring ? ring_size(s, d, w) : size_grid(s, d);
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

int vz_step_is_ring(const vz_step *s) { return s && s->ring; }

void vz_step_profile(vz_step *s, cudaStream_t st, FILE *f) {
    const size_t n = 5 * (size_t)s->a.nbars * s->grid;
    long long *d = NULL, *h = (long long *)calloc(n, sizeof *h);
    int dev = 0, khz = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
    if (!h || khz <= 0 || cudaMalloc((void **)&d, n * sizeof *d) != cudaSuccess ||
        cudaMemset(d, 0, n * sizeof *d) != cudaSuccess) {
        free(h);
        return;
    }
    s->a.trace = d;
    vz_status rs = vz_step_run(s, st);
    s->a.trace = NULL;
    if (rs == VZ_OK && cudaStreamSynchronize(st) == cudaSuccess &&
        cudaMemcpy(h, d, n * sizeof *d, cudaMemcpyDeviceToHost) == cudaSuccess) {
        /* per phase (the barrier before it: its index b = 5 l + phase - 1), mean over layers and CTAs */
        double wait[5] = {0}, stage[5] = {0}, run[5] = {0}, spread[5] = {0}, dwait[5] = {0}, dmath[5] = {0};
        int cnt[5] = {0}, cr[5] = {0};
        const double us = 1e3 / khz;
        for (int b = 0; b < s->a.nbars; b++) {
            const int ph = (b + 1) % 5;
            long long lo = 0, hi = 0;
            for (unsigned c = 0; c < s->grid; c++) {
                const long long *t = h + 5 * ((size_t)b * s->grid + c);
                wait[ph] += (double)(t[1] - t[0]) * us;
                if (ph != 1) stage[ph] += (double)(t[2] - t[1]) * us;
                dwait[ph] += (double)t[3] * us / RING_W, dmath[ph] += (double)t[4] * us / RING_W;
                if (b + 1 < s->a.nbars) { /* this phase's work: from its staging to the next barrier's arrival */
                    const long long *u = h + 5 * ((size_t)(b + 1) * s->grid + c);
                    run[ph] += (double)(u[0] - (ph != 1 ? t[2] : t[1])) * us;
                    lo = c == 0 || u[0] - t[1] < lo ? u[0] - t[1] : lo;
                    hi = c == 0 || u[0] - t[1] > hi ? u[0] - t[1] : hi;
                }
            }
            cnt[ph] += (int)s->grid;
            if (b + 1 < s->a.nbars) spread[ph] += (double)(hi - lo) * us, cr[ph]++;
        }
        fprintf(f, "profile (%s step, one launch, us per layer, mean over CTAs; %d warps per CTA):\n",
                s->ring ? "ring" : "persistent", s->warps);
        fprintf(f, "  %-16s %10s %10s %10s %14s%s\n", "phase", "barrier", "staging", "work", "work max-min",
                s->ring ? "  weight wait, math (means over warps)" : "");
        for (int ph = 0; ph < 5; ph++)
            if (cnt[ph]) {
                fprintf(f, "  %-16s %10.2f %10.2f %10.2f %14.2f", step_phase_names[ph], wait[ph] / cnt[ph],
                        stage[ph] / cnt[ph], cr[ph] ? run[ph] / (cr[ph] * (double)s->grid) : 0.0,
                        cr[ph] ? spread[ph] / cr[ph] : 0.0);
                if (s->ring) fprintf(f, " %10.2f %10.2f", dwait[ph] / cnt[ph], dmath[ph] / cnt[ph]);
                fputc('\n', f);
            }
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
