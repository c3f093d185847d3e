/*
 * mv4.cuh - the v4 matvec's warp loop (x staged once per block in shared
 * memory, a ring of weight loads in flight), used by the v4 kernels of
 * matvec.cu at every batch: lane l of a warp owns code group 32*it + l of
 * a row, fmaf in element order, groups in order, then the xor-butterfly
 * (matvec.cu).
 * Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_MV4_CUH
#define VZ_BACKEND_CUDA_MV4_CUH

#include <float.h>

#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"
#include "backend/cuda/matvec.cuh"

#define MV_SLOTS 2 /* rows per warp unit (x reuse, loads in flight); the v4 ring may run one (NS) */
#define MV4_IX_WORDS (2 * MV_SLOTS * 32) /* lossless: a warp's copies of two units' exception index rows (mv4_ring) */

/* The two stages of the fast decoders (decode.cuh) by path KIND: loads of
 * group it of row r (lossless: ei = the row's exception index entry, see
 * vz_ll3_load2), then the decode into packed form. */
template <int KIND>
static __device__ __forceinline__ void mv2_load(const vz_dview &d, int64_t r, int it, int lane, uint32_t ei,
                                                vz_gst &st) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_load(d, r, it, lane, st);
    else if (KIND == VZ_K_LL3) vz_ll3_load2(d, r, it, lane, ei, st);
    else if (KIND == VZ_K_LL4) vz_ll4_load_all(d, r, it, lane, st);
    else if (vz_k_q8(KIND)) vz_q8_load(d, r, it, lane, st);
    else vz_q4_load(d, r, it, lane, st); /* VZ_K_Q4, VZ_K_Q4D */
}

template <int KIND>
static __device__ __forceinline__ void mv2_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                  vz_pk &k) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode2(st, k);
    else if (KIND == VZ_K_LL3) vz_ll3_decode2(d, st, lane, sm, k);
    else if (KIND == VZ_K_LL4) vz_ll4_decode2(d, st, lane, sm, k);
    else if (vz_k_q8(KIND)) vz_q8_decode2(st, k);
    else vz_q4_decode2(st, k);
}

/* Rows of unit u (NS rows): NS = 2, a row pair (2u, 2u + 1; the last unit
 * of an odd count repeats its row), or gate row + up row u (silu); NS = 1
 * (never silu), row u. */
template <int NS>
static __device__ __forceinline__ void mv4_rows(int rows, bool silu, int u, int r[NS]) {
    if constexpr (NS == 1) {
        r[0] = u;
    } else {
        r[0] = silu ? u : 2 * u;
        r[1] = silu || 2 * u + 1 < rows ? r[0] + !silu : r[0];
    }
}

/* Steps in flight per warp (the ring depth): the compressed kinds read few
 * bytes per step, so more steps must be in flight to cover DRAM latency.
 * One-row units (NS = 1) keep the bytes in flight of a pair: twice the
 * steps. MINB = 3 (3 blocks per SM, 80 registers): half of it. MINB = 1
 * (one block of 16 warps per SM, matvec.cu's MV4_WIDE: batches 2-8, and
 * batch 1 of MV4_WIDE1_KINDS): half of it from batch 3 on. No batch-1
 * kernel spills (ptxas -v; at 3 blocks per SM thanks to mv4_ring's LATE),
 * nor does any MINB = 1 kernel but q4's at batch 2 (8 bytes); at full depth
 * 11 of those of batch 3-8 spilled 12-64 bytes, as the 2-blocks kernels of
 * batch 2-8 still do. On an H200 the half depth gave batch 4 +0.8%
 * (tinyllama raw) to +5.4% (llama2-7b raw) and lost 1.0-5.7% at batch 2
 * (bench/results/2026-11-30-session21-h200.md); q8 and q4 follow raw and
 * lossless there, not measured. q4 by integer dot products (VZ_K_Q4D)
 * issues fewer instructions per step, so more loads must be in flight: its
 * row pairs at batch 1 keep one step more than q4's (session 34's form of
 * it: llama2-7b q4 decode 527.6 -> 554.3 tok/s on an H200, ptxas: no spill;
 * bench/results/2026-12-01-session34-h200.md, run 7); q8's (VZ_K_Q8D) keep
 * q8's depth (one step more: -2% there; its pair kernels at 126 registers). */
template <int KIND, int B, int NS, int MINB = 2> struct mv4_depth {
    enum { D2 = KIND == VZ_K_RAW_BF16 ? (B <= 5 ? 2 : 1) : vz_k_ll(KIND) ? (B <= 4 ? 2 : 1)
                : vz_k_q8(KIND) ? (B == 1 ? 3 : 2)
                : KIND == VZ_K_Q4D && B == 1 && NS == 2 ? 5 : (B == 1 ? 4 : 2),
           D1 = NS == 1 ? 2 * D2 : D2,
           D = MINB == 3 || (MINB == 1 && B > 2) ? (D1 + 1) / 2 : D1 };
};

/* x staged for the warps of a block: nb rows of c4 float4 (x, or with nw
 * RMSNorm(x) as vz_k_rmsnorm computes it: w[c] * (x[c] * scale)), float4 j
 * of group g at j ^ (g & 7), so the 8 lanes of a quarter-warp read 8
 * distinct 16-byte bank groups. x comes by cp.async, each thread's copies
 * in flight at once: loaded into registers and stored, a thread waited one
 * L2 round trip per float4 it staged (ncu, llama2-7b lossless down: 15% of
 * the kernel's stall samples on that store). All threads of the block (at
 * least 8 warps) call it; it ends with __syncthreads. x is read-only for
 * the kernel's life.
 *
 * With nw, threads 0..VZ_RMS_THREADS - 1 copy x (thread t the float4s t,
 * t + 256, ... of each row), so each sums its own copies into its part of
 * the norm (matvec.cuh, the norm's one order) without a barrier, and after
 * the one barrier that publishes the warps' sums computes the scale and
 * normalizes those float4s; a second barrier publishes them. The sums read
 * the staged copy: all its loads are in flight at once, where a sum over
 * x in global memory waited one L2 load per step (with the batched
 * attention loads, +5-8% decode on an H200 when that changed). */
static __device__ __forceinline__ int mv4_swz(int j) { return j ^ ((j >> 3) & 7); }

/* nws: the norm weights in shared memory (batch 1; NULL: read from global
 * memory after the norm), copied there by mv4_stage_nw before
 * the PDL wait: the read of nw after the norm was an L2 or DRAM round trip
 * on the path of every normed matvec. Thread t < VZ_RMS_THREADS copies (and
 * mv4_stage reads back) float4 t, t + 256, ... With the norm's sum spread
 * over 8 warps, about 1 us less per normed matvec on an H200: tinyllama raw
 * decode 1128 -> 1190 tok/s, llama2-7b 254.8 -> 267.1, the compressed
 * codecs +3.8-6.7% (bench/results/2026-11-29-session13-h200.md). */
static __device__ __forceinline__ void mv4_stage_nw(const float *nw, int c4, float4 *nws) {
    if (threadIdx.x < VZ_RMS_THREADS)
        for (int j = threadIdx.x; j < c4; j += VZ_RMS_THREADS) __pipeline_memcpy_async(nws + j, (const float4 *)nw + j, 16);
    __pipeline_commit();
}

template <bool ANYX = false> /* x may be only 4-byte aligned (the dot-product kernels) */
static __device__ __forceinline__ void mv4_stage(const float *x, const float *nw, float eps, int nb, int c4,
                                                 float4 *xs, vz_rms_smem *nsm, const float4 *nws = NULL) {
    const int t = threadIdx.x, nt = nw ? VZ_RMS_THREADS : (int)blockDim.x; /* the copying threads */
    if (t < nt) {
        if (ANYX && ((uintptr_t)x & 15u))
            for (int b = 0; b < nb; b++)
                for (int j = t; j < c4; j += nt)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        __pipeline_memcpy_async((float *)(xs + b * c4 + mv4_swz(j)) + e, x + ((size_t)b * c4 + j) * 4 + e, 4);
        else
            for (int b = 0; b < nb; b++)
                for (int j = t; j < c4; j += nt)
                    __pipeline_memcpy_async(xs + b * c4 + mv4_swz(j), (const float4 *)x + (size_t)b * c4 + j, 16);
    }
    __pipeline_commit();
    const double inv_dim = 1.0 / (double)(4 * c4);
    __pipeline_wait_prior(0); /* also nws's copies (mv4_stage_nw): this thread's own copies are visible to it */
    if (!nw) {
        __syncthreads();
        return;
    }
    if (t < VZ_RMS_THREADS)
        for (int b = 0; b < nb; b++)
            vz_rms_publish(vz_rms_part([xs, b, c4](int q) { return xs[b * c4 + mv4_swz(q)]; }, t, c4), b, nsm);
    __syncthreads();
    if (t < VZ_RMS_THREADS)
        for (int b = 0; b < nb; b++) {
            const float sc = vz_rms_scale(nsm, b, inv_dim, eps);
            for (int j = t; j < c4; j += VZ_RMS_THREADS) {
                const float4 w = nws ? nws[j] : __ldg((const float4 *)nw + j), v = xs[b * c4 + mv4_swz(j)];
                xs[b * c4 + mv4_swz(j)] =
                    make_float4(w.x * (v.x * sc), w.y * (v.y * sc), w.z * (v.z * sc), w.w * (v.w * sc));
            }
        }
    __syncthreads();
}

/* The first 128-byte aligned float4 at or after p (16-byte aligned) in
 * shared memory: where the kernels stage x (mv4_fma's xor addressing needs
 * 128-byte aligned rows). They ask for MV4_XPAD more bytes. */
#define MV4_XPAD 112
static __device__ __forceinline__ float4 *mv4_align(float4 *p) {
    return p + ((0u - (uint32_t)__cvta_generic_to_shared(p)) & 127u) / 16u;
}

/* The 16-byte T (float4, or uint4 for mv4_dp's digits) at shared-memory byte address a. */
template <typename T> static __device__ __forceinline__ T mv4_lds4(uint32_t a) {
    return *(const T *)__cvta_shared_to_generic(a);
}

/* A ring's view of a tensor, held by value (from kernel parameters). An
 * identity, kept because ptxas schedules the v4 kernels better with it:
 * built with d[s] read directly, they ran tinyllama raw decode 0.9%, q8
 * 1.6% and q4 2.2% slower and llama2-7b lossless 1.8% slower on an H200,
 * with the same arithmetic (bench/results/2026-11-30-session28-h200.md,
 * run 3). */
static __device__ __forceinline__ const vz_dview &mv4_dv(const vz_dview &v) { return v; }

/* acc[s][b] += the 32 weights of pk[s] . x row b of the lane's group, fmaf
 * in element order (q8/q4: from 0 over the codes minus their zero point,
 * then acc = fmaf(scale, that sum, acc), matvec.cu). xa: the shared-memory
 * byte address of the lane's group in row 0 plus 16 * sw (float4 q of group
 * g lies at 8g + (q ^ sw) (mv4_swz) and 8g + (q ^ sw) == (8g + sw) ^ q), so
 * float4 q of row b is at (xa + 16 * b * c4) ^ 16q: one xor per load, given
 * 128-byte aligned rows (mv4_align; c4 % 8 == 0). The x loads are issued
 * before the math (for B <= 2 all 8 float4 of each row), no branch between
 * them, so they overlap. */
template <int KIND, int B, int NS>
static __device__ __forceinline__ void mv4_fma(const vz_pk pk[NS], uint32_t xa, int c4, float acc0[NS][B]) {
    constexpr bool QS = KIND == VZ_K_Q8 || KIND == VZ_K_Q4; /* q8/q4: the group's sum, then times its scale */
    float acc[NS][B];
#pragma unroll
    for (int s = 0; s < NS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[s][b] = vz_grp_start(QS, acc0[s][b]);
    constexpr int QA = B <= 2 ? 8 : 1; /* float4 of each row loaded ahead */
#pragma unroll
    for (int q0 = 0; q0 < 8; q0 += QA) {
        float4 xv[QA][B];
#pragma unroll
        for (int q = 0; q < QA; q++)
#pragma unroll
            for (int b = 0; b < B; b++) xv[q][b] = mv4_lds4<float4>((xa + 16u * (uint32_t)(b * c4)) ^ (16u * (q0 + q)));
#pragma unroll
        for (int q = 0; q < QA; q++) {
            float wv[NS][4];
#pragma unroll
            for (int s = 0; s < NS; s++)
#pragma unroll
                for (int e = 0; e < 4; e++) wv[s][e] = vz_pk_elem<KIND>(pk[s], 4 * (q0 + q) + e);
#pragma unroll
            for (int b = 0; b < B; b++) {
                const float4 f = xv[q][b];
#pragma unroll
                for (int s = 0; s < NS; s++) {
                    acc[s][b] = fmaf(wv[s][0], f.x, acc[s][b]);
                    acc[s][b] = fmaf(wv[s][1], f.y, acc[s][b]);
                    acc[s][b] = fmaf(wv[s][2], f.z, acc[s][b]);
                    acc[s][b] = fmaf(wv[s][3], f.w, acc[s][b]);
                }
            }
        }
    }
#pragma unroll
    for (int s = 0; s < NS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc0[s][b] = vz_grp_end(QS, pk[s].s, acc[s][b], acc0[s][b]);
}

/* ---- q4 and q8 by integer dot products (VZ_K_Q4D, VZ_K_Q8D: dp tensors,
 * cuda.h) ----------------------------------------------------------------
 * x in fixed point per 32-element group: with max |x| < 2^e over the group
 * (e >= -100), X = rint(x 2^(22-e)), |X| <= 2^22, as three s8 digits,
 * X = d0 + 2^8 d1 + 2^16 d2 (bytes 0-2 of (X + 0x808080) ^ 0x808080).
 * Code word q (0..7) of a q4 group as vz_q4_decode2 packs it is p[q / 2]
 * (q even: the codes of elements 8(q / 2) + 0, 2, 4, 6) or p[8 + q / 2]
 * (q odd: elements 8(q / 2) + 1, 3, 5, 7), one code per byte; of a q8
 * group (vz_q8_decode2) p[q], elements 4q .. 4q + 3, each code biased by
 * 128 (so z = 128 below: the signed code is c - 128). After the
 * staging (and its norm) mv4_digits rewrites each group's 8 float4 in
 * place as 8 uint4: uint4 2k + h holds digit k of the four elements of
 * code words 4h .. 4h + 3 (word q & 3 for code word q); uint4 6 holds
 * {2^(e-22) as f32 (NaN if an x of the group is not finite), M01 = the
 * sum of d0 + 2^8 d1 over the group, D2 = the sum of d2, 0}; uint4 7 is
 * not read. One thread per group and input: no block-wide pass (a max over
 * the whole row cost a barrier and a second pass in session 34's first
 * form, which lost 5-12%). A group's sum over its codes q and zero point z
 * (q4: 8, or the asymmetric group's; q8: 128) is then, exactly in s32,
 * t = 2^8 sum q d1 + sum q d0 - z M01 and a2 = sum q d2 - z D2 (dp4a of
 * unsigned codes and signed digits; |t| < 2^29), joined as
 * f = fmaf(2^16, a2, (float)t) and acc = fmaf(scale 2^(e-22), f, acc)
 * (the product exact barring f32 subnormals), in the fmaf kernels' group
 * and butterfly order, so a row's bits do not depend on the batch or the
 * kernel variant. Per code: three quarters of a dp4a instead of a prmt, an
 * fadd and an fmaf. Error bound: tests/test_cuda_matvec.c (err_dp). */
static __device__ __forceinline__ int vz_dp4a_us(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* dp4a of four signed bytes by four signed bytes. */
static __device__ __forceinline__ int vz_dp4a_ss(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* max(a, b), NaN if either is NaN (max.NaN, sm_80 and later). */
static __device__ __forceinline__ float vz_fmax_nan(float a, float b) {
    float d;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(d) : "f"(a), "f"(b));
    return d;
}

/* Rewrites the nb staged rows of xs (c4 float4 each, mv4_stage) as digits,
 * one thread per group and input. (Four lanes per group, each converting
 * eight elements and joining the group's max and sums by shuffles, ran
 * llama2-7b q4 decode 4% slower on an H200: 571 against 595 tok/s,
 * bench/results/2026-12-01-session35-h200.md.) All threads of the block
 * call it; it ends with __syncthreads.
 *
 * Its instructions are the cost: each block converts the whole x, a thread
 * a group, so tinyllama's down (176 groups) keeps 5.5 warps of each block
 * busy, the other warps waiting at the barrier. Per group: max.NaN of |x|
 * (one instruction per element; NaN or infinity leave it above FLT_MAX,
 * so it also tests that the group is finite); X + 0x808080 as the f32 bits
 * of fmaf(x, 2^(22-e), 1.5 2^23) less 0x4b400000 - 0x808080 (|x 2^(22-e)|
 * < 2^22 and the product exact, so the sum lies in (2^23, 2^24], where the
 * f32 spacing is 1 and rounding to nearest even gives 1.5 2^23 + rint(X)
 * as __float2int_rn would; the conversion instruction runs at a quarter of
 * the rate); each three digit words from four elements in 7 prmt; M01 and
 * D2 as dp4a of the digit words with ones. Session 68's form (a float max,
 * a finite test, fmul, cvt.rni and the sums element by element) issued 472
 * instructions per group (sm_90 SASS of the q4 single-row kernel), this
 * one 275; the same digits and sums (tests/test_cuda_matvec.c checks the
 * kernels' bits against its dp_model). On an H200 tinyllama q4 decode
 * 1949 -> 1981 tok/s, q8 level; its down on these kernels still lost 2.1%
 * (q4), 0.1% (q8), where it had lost 4.6% and 0.9%
 * (bench/results/2026-12-04-session69-h200.md). */
template <int KIND>
static __device__ __forceinline__ void mv4_digits(int nb, int c4, float4 *xs) {
    const int gpr = c4 >> 3;
    for (int i = threadIdx.x; i < nb * gpr; i += blockDim.x) {
        const int b = nb == 1 ? 0 : i / gpr, g = i - b * gpr;
        float4 *row = xs + b * c4;
        uint4 *out = (uint4 *)row;
        float v[32];
#pragma unroll
        for (int q = 0; q < 8; q++) {
            const float4 f = row[mv4_swz(8 * g + q)];
            v[4 * q] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
        }
        float m[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 32; j++) m[j & 3] = vz_fmax_nan(m[j & 3], fabsf(v[j]));
        const float mx = vz_fmax_nan(vz_fmax_nan(m[0], m[1]), vz_fmax_nan(m[2], m[3]));
        if (!(mx <= FLT_MAX)) { /* a NaN or an infinity: digits 0, scale NaN */
#pragma unroll
            for (int j = 0; j < 6; j++) out[mv4_swz(8 * g + j)] = make_uint4(0u, 0u, 0u, 0u);
            out[mv4_swz(8 * g + 6)] = make_uint4(0x7fc00000u, 0u, 0u, 0u);
            continue;
        }
        int e = (int)(__float_as_uint(mx) >> 23) - 126; /* mx < 2^e */
        e = e < -100 ? -100 : e;
        const float mul = __uint_as_float((uint32_t)(149 - e) << 23); /* 2^(22 - e) */
        uint32_t y[32]; /* X + 0x808080: digit k is byte k less 128 */
#pragma unroll
        for (int j = 0; j < 32; j++) y[j] = __float_as_uint(fmaf(v[j], mul, 12582912.0f)) - (0x4b400000u - 0x808080u);
        uint32_t w[3][8]; /* w[k][q]: digit k of code word q's four elements */
        int t1 = 0, t0 = 0, d2 = 0;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            /* the element of byte c: e0 + ec c */
            const int e0 = KIND == VZ_K_Q8D ? 4 * q : 8 * (q >> 1) + (q & 1), ec = KIND == VZ_K_Q8D ? 1 : 2;
            const uint32_t a = y[e0], bb = y[e0 + ec], c = y[e0 + 2 * ec], d = y[e0 + 3 * ec];
            const uint32_t lo = __byte_perm(a, bb, 0x5140), hi = __byte_perm(c, d, 0x5140); /* bytes 0, 1 */
            w[0][q] = __byte_perm(lo, hi, 0x5410) ^ 0x80808080u;
            w[1][q] = __byte_perm(lo, hi, 0x7632) ^ 0x80808080u;
            w[2][q] = __byte_perm(__byte_perm(a, bb, 0x0062), __byte_perm(c, d, 0x6200), 0x7610) ^ 0x80808080u;
            t1 = vz_dp4a_ss(w[1][q], 0x01010101u, t1), t0 = vz_dp4a_ss(w[0][q], 0x01010101u, t0);
            d2 = vz_dp4a_ss(w[2][q], 0x01010101u, d2);
        }
#pragma unroll
        for (int k = 0; k < 3; k++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                out[mv4_swz(8 * g + 2 * k + h)] = make_uint4(w[k][4 * h], w[k][4 * h + 1], w[k][4 * h + 2], w[k][4 * h + 3]);
        out[mv4_swz(8 * g + 6)] = make_uint4((uint32_t)(105 + e) << 23, (uint32_t)(256 * t1 + t0), (uint32_t)d2, 0u);
    }
    __syncthreads();
}

/* Code word q of a q4 or q8 pk (above), word i of a uint4 (q, i compile-time). */
template <int KIND> static __device__ __forceinline__ uint32_t mv4_qword(const vz_pk &k, int q) {
    return KIND == VZ_K_Q8D ? k.p[q] : q & 1 ? k.p[8 + (q >> 1)] : k.p[q >> 1];
}
static __device__ __forceinline__ uint32_t mv4_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* mv4_fma for VZ_K_Q4D and VZ_K_Q8D: x as mv4_digits left it, the same addressing. */
template <int KIND, int B, int NS>
static __device__ __forceinline__ void mv4_dp(const vz_pk pk[NS], uint32_t xa, int c4, float acc0[NS][B]) {
#pragma unroll
    for (int b = 0; b < B; b++) {
        const uint32_t xb = xa + 16u * (uint32_t)(b * c4);
        uint4 u[7];
#pragma unroll
        for (int j = 0; j < 7; j++) u[j] = mv4_lds4<uint4>(xb ^ (16u * j));
#pragma unroll
        for (int s = 0; s < NS; s++) {
            int t = 0, a2 = 0;
#pragma unroll
            for (int k = 1; k >= 0; k--) { /* digit 1, then digit 0 on 2^8 times its sum */
                if (k == 0) t *= 256;
#pragma unroll
                for (int q = 0; q < 8; q++) t = vz_dp4a_us(mv4_qword<KIND>(pk[s], q), mv4_word(u[2 * k + (q >> 2)], q & 3), t);
            }
#pragma unroll
            for (int q = 0; q < 8; q++) a2 = vz_dp4a_us(mv4_qword<KIND>(pk[s], q), mv4_word(u[4 + (q >> 2)], q & 3), a2);
            /* the zero point's terms last: with -M01, -D2 (q8: times 128) stored
             * in the meta word and t, a2 started from them, q4 ran 0.2-0.7%
             * slower on an H200 (llama2-7b, mistral-7b), q8 0.1-0.3% faster
             * (bench/results/2026-12-01-session36-h200.md) */
            const int z = KIND == VZ_K_Q8D ? 128 : (int)(pk[s].p[4] & 255u);
            t -= z * (int)u[6].y, a2 -= z * (int)u[6].z;
            const float f = fmaf(65536.0f, (float)a2, (float)t);
            acc0[s][b] = fmaf(pk[s].s * __uint_as_float(u[6].x), f, acc0[s][b]);
        }
    }
}

/* A step's math: integer dot products (vz_k_dp kinds) or fmaf. */
template <int KIND, int B, int NS>
static __device__ __forceinline__ void mv4_math(const vz_pk pk[NS], uint32_t xa, int c4, float acc[NS][B]) {
    if constexpr (vz_k_dp(KIND)) mv4_dp<KIND, B, NS>(pk, xa, c4, acc);
    else mv4_fma<KIND, B, NS>(pk, xa, c4, acc);
}

/* MV4_UNI(KIND, B, MINB): 1, the kind's warps take their first unit by a shuffle
 * (mv4_kernel), so that ptxas, which takes a shuffle's result as
 * warp-uniform, treats the ring's counters (u, it, uf, itf) as uniform: its
 * branches on them lose their convergence barriers (BSSY/BSYNC); 2, also
 * the fmaf block split on a uniform test (the whole row step inside the
 * row) ahead of the per-lane one. The same bits. On an H200, decode
 * (bench/results/2026-12-03-session60-h200.md), tinyllama / llama2-7b:
 * - 1 for every kind: raw +0.3% / -0.1%, lossless (packed3) -6.0% / +1.7%,
 *   k4 -0.8% / +0.4%, q8 -0.8% / -0.4%, q4 +0.4% / -0.4%;
 * - 2 for every kind (k4's exception branch by a vote too): raw -0.2% /
 *   level, lossless +1.3% / +1.6%, k4 -0.2% / level (its gate/up 424 -> 413
 *   instructions per pair step, the same duration under ncu), q8 -1.1% /
 *   -2.0%, q4 -2.3% / -6.2%.
 * So at batch 1 (the batches were not timed with it) raw takes 1, lossless
 * packed3 2, and k4 1 in its wide kernels (MINB 1: llama2-7b's launches,
 * tinyllama's head), the others neither. In later runs: lossless +1.0% /
 * +1.4%, raw +0.3% / -0.1%; k4 level / +0.4% (run 3). */
#define MV4_UNI(KIND, B, MINB) \
    ((B) > 1 ? 0 : (KIND) == VZ_K_LL3 ? 2 : (KIND) == VZ_K_RAW_BF16 || ((KIND) == VZ_K_LL4 && (MINB) == 1) ? 1 : 0)

/* One warp's stream of (unit, group iteration) steps over the units u0,
 * u0 + us, ... below uend of one tensor (d[1]: the up tensor when silu),
 * the weights of the next D steps in flight during this step's math (LATE:
 * D - 1, the step's slot refilled after it), also across units. start()
 * issues the first D steps' loads (pre of them, fill() the rest) and
 * touches only weights (so it may run before x is ready); run() consumes
 * them. Lossless: a unit's exception index rows (lane j: block j) are
 * copied one unit ahead into the warp's shared memory (ix). */
template <int KIND, int B, int NS = MV_SLOTS, int MINB = 2> struct mv4_ring {
    /* YA: ADD's y read as a unit starts (B > 1 spills). LATE (the 3-blocks
     * kernels, 80 registers): a slot is refilled after its step's fmaf, not
     * before, so its loads' registers are not live at once with the decoded
     * group's: those kernels then spill nothing (lossless's pair kernel
     * spilled 16 bytes, q8's 32, raw's 8). On an H200 tinyllama lossless
     * decode 1125 -> 1161 tok/s, q8 1417 -> 1433, and raw gains 1.5% from 3
     * blocks for its short launches, which lost 6% when they spilled
     * (MV4_OCC3_STEPS_RAW, matvec.cu; bench/results/2026-11-29-session16-h200.md).
     * The 2-blocks kernels keep the early refill: llama2-7b lossless lost
     * 2.5% without it. ROT (q8 and q4 at batch 1 with the early refill):
     * D + 1 slots in rotation, step s in slot s % (D + 1), its refill (step
     * s + D) into the slot that step s - 1 has just freed. With D slots the
     * refill overwrote the slot being decoded, and ptxas copied its words
     * first (q4's hot loop: 12 register copies per pair step; without them
     * q4 and q8 issue about 0.5 fewer instructions per weight, static
     * count). Registers 104 -> 107 (q4 pairs), 114 -> 128 (q8 pairs), fewer
     * for single rows, no spill. On an H200 llama2-7b decode q4 437.7 ->
     * 462.1 tok/s, q8 389.9 -> 408.4, tinyllama q4 +0.8%, q8 -0.6%, the
     * same bits. Raw lost 1.2% (tinyllama) and 0.9% (llama2-7b) with it,
     * though its slot copies (32 per pair step) went; lossless spills 208
     * bytes with it (bench/results/2026-11-30-session29-h200.md, run 8).
     * With e0, e1 read from ix at the decode instead of held in the slot,
     * lossless fits it (121 registers) and loses every register copy, yet
     * ran tinyllama 0.6% slower and llama2-7b 0.3% faster (bench/results/
     * 2026-11-30-session31-h200.md, run 7), so it keeps D slots. */
    enum { D = mv4_depth<KIND, B, NS, MINB>::D, YA = B == 1, YS = YA && (KIND == VZ_K_RAW_BF16 || vz_k_ll(KIND) || KIND == VZ_K_Q8D),
           LATE = MINB == 3,
           ROT = (vz_k_q8(KIND) || vz_k_q4(KIND)) && B == 1 && !LATE,
           SLOTS = ROT ? D + 1 : D };
    vz_dview d[NS];
    int rows, u, uf, uend, us; /* u, it: the step consumed next; uf, itf: fetched next (rows < 2^31) */
    int it, itf, nit;
    bool silu;
    uint32_t *ix; /* lossless: the warp's copies of two units' exception index rows (MV4_IX_WORDS) */
    uint32_t ixa; /* lossless at batch 1: ix as a shared-space address (fetch) */
    int pb;       /* the half of ix that holds unit uf's */
    vz_gst st[SLOTS][NS];
    float ya[NS][B]; /* YA without YS: lane 0's y of unit u (epi ADD) */
    float *ys;       /* YS: lane 0's copy of it in the warp's shared memory (NS floats) */

    __device__ __forceinline__ void next(int &uu, int &ii) const {
        if (++ii == nit) ii = 0, uu += us;
    }

    /* Lossless: cp.async of unit uu's exception index rows into half h of
     * ix (lane j: block j's start, j <= bpr), committed. */
    __device__ __forceinline__ void copy_ix(int uu, int h, int lane) {
        if (uu < uend) {
            int r[NS];
            mv4_rows<NS>(rows, silu, uu, r);
#pragma unroll
            for (int s = 0; s < NS; s++) {
                const vz_dview &v = mv4_dv(d[s]);
                if (lane <= v.bpr)
                    __pipeline_memcpy_async(ix + (h * NS + s) * 32 + lane, v.eidx + ((uint32_t)r[s] * (uint32_t)v.bpr + lane), 4);
            }
        }
        __pipeline_commit();
    }

    /* Loads of step (uf, itf) into ring slot k, then advances (uf, itf).
     * Lossless: as a unit's first step is fetched, its index rows (copied
     * one unit ahead) are waited for, and the next unit's copy is issued
     * into the other half (the warp barrier orders the previous unit's
     * reads of that half before it); each step reads its e0, e1 there.
     * The copy holds no register. Loaded one unit ahead into a register
     * (and e0, e1 by shuffle from it), the index was copied by ptxas into
     * its home register ~60 instructions after its load, so each unit's
     * first step waited a DRAM round trip for it. On an H200 llama2-7b
     * lossless decode 280.0 -> 309.6 tok/s, tinyllama 1251 -> 1292, the
     * same bits (bench/results/2026-11-30-session31-h200.md, run 1). The
     * group's own loads go before that wait, so a launch's first fetch
     * (a whole tinyllama launch is one or two units per warp) does not
     * wait for the index to issue them: llama2-7b lossless +1.3%,
     * tinyllama +0.5% (run 4). */
    __device__ __forceinline__ void fetch(int k, int lane) {
        int r[NS];
        mv4_rows<NS>(rows, silu, uf, r);
        if constexpr (vz_k_ll(KIND)) {
#pragma unroll
            for (int s = 0; s < NS; s++)
                if constexpr (KIND == VZ_K_LL3) vz_ll3_load_lc(mv4_dv(d[s]), r[s], itf, lane, st[k][s]);
                else vz_ll4_load_lc(mv4_dv(d[s]), r[s], itf, lane, st[k][s]);
            if (itf == 0) {
                __pipeline_wait_prior(0);
                __syncwarp();
                copy_ix(uf + us, pb ^ 1, lane);
            }
#pragma unroll
            for (int s = 0; s < NS; s++) {
                /* Batch 1 reads the copy at ixa, a 32-bit shared-space address
                 * taken by a shuffle in start(), which ptxas holds in a register.
                 * Through ix, a generic pointer, it rederived the address from
                 * the CTA's shared-memory window (S2UR SR_CgaCtaId and its
                 * arithmetic) at every step, being short of registers: the
                 * llama2-7b k4 pair loop 1507 -> 1477 instructions, no spill. On an
                 * H200 tinyllama decode lossless +0.6%, lossless:k4 +0.5%,
                 * llama2-7b level, the same bits (bench/results/2026-12-03-
                 * session56-h200.md, run 5). The batches keep ix (k4's batch-4
                 * kernels spilled 8 bytes with ixa). */
                const uint32_t *e = B == 1 ? (const uint32_t *)__cvta_shared_to_generic(ixa + 4u * (uint32_t)((pb * NS + s) * 32 + itf))
                                           : ix + (pb * NS + s) * 32 + itf;
                vz_ll3_load_ex(mv4_dv(d[s]), lane, e[0], e[1], st[k][s]);
            }
        } else {
#pragma unroll
            for (int s = 0; s < NS; s++) mv2_load<KIND>(mv4_dv(d[s]), r[s], itf, lane, 0u, st[k][s]);
        }
        next(uf, itf);
        if (vz_k_ll(KIND) && itf == 0) pb ^= 1;
    }

    __device__ __forceinline__ void start(const vz_dview &d0, const vz_dview &d1, bool silu_, int u0, int us_, int uend_,
                                          int lane, uint32_t *ix_, float *ys_, int pre = D) {
        d[0] = d0, d[NS - 1] = NS == 1 ? d0 : d1, silu = silu_, rows = (int)mv4_dv(d0).rows, us = us_, uend = uend_;
        if constexpr (vz_k_ll(KIND) && B == 1) /* batches: not timed with it, left as they were */
#pragma unroll
            for (int s = 0; s < NS; s++) vz_ll3_own_lut(d[s]);
        nit = (mv4_dv(d0).gpr + 31) / 32, u = uf = u0, it = itf = 0, ix = ix_, pb = 0, ys = ys_;
        if constexpr (B == 1 && vz_k_ll(KIND)) ixa = __shfl_sync(0xffffffffu, (uint32_t)__cvta_generic_to_shared(ix_), 0);
        if (vz_k_ll(KIND) && mv4_dv(d[0]).bpr >= 32) __trap(); /* callers keep cols <= 31 * 1024 (MV4_IX_WORDS) */
        if (vz_k_ll(KIND)) copy_ix(u, 0, lane); /* the first unit's exception index */
        fill(lane, 0, pre);
    }

    /* Fetches the steps of slots [lo, hi): start() those below its pre,
     * the kernel the rest once x is staged (matvec.cu MV4_PRE1_COLS_LL). */
    __device__ __forceinline__ void fill(int lane, int lo, int hi) {
#pragma unroll
        for (int k = 0; k < D; k++)
            if (uf < uend && k >= lo && k < hi) fetch(k, lane);
    }

    /* YA, epi ADD: lane 0 loads y of unit u's rows as the unit starts, so
     * the load is in flight during its steps instead of after the butterfly
     * (no other warp writes those rows; the sum is the same). On an H200 it
     * made the matvec-only chain of matvec_bench 2% slower but the decode
     * step 2% faster (tinyllama; llama2-7b raw 7%): bench/results/
     * 2026-11-29-session8-h200.md. YS (raw, lossless, q8 dp): by cp.async into
     * the warp's shared memory, waited for as the unit is stored. As a
     * register load it sat in every step's code, predicated off in the
     * launches without ADD, and ncu put 5-7% of llama2-7b lossless gate/up's
     * and down's stall samples on it (long scoreboard). On an H200 tinyllama
     * raw decode +2.8%, lossless +0.2%, llama2-7b lossless +1.3%, raw
     * +0.3%; q4 lost 2.2-2.8% with it and q8 up to 0.6%, so they keep the
     * register (bench/results/2026-11-30-session31-h200.md, run 4). q8's
     * dot-product kernels take YS: llama2-7b q8 decode +0.5%, mistral-7b
     * +0.1%; q4's lost 0.1-0.6% with it (bench/results/2026-12-01-
     * session36-h200.md, runs 2 and 6). */
    __device__ __forceinline__ void load_y(const float *y, int epi, int lane) {
        if (!YA || epi != VZ_CUDA_EPI_ADD || silu || lane != 0) return;
        int r[NS];
        mv4_rows<NS>(rows, silu, u, r);
        if constexpr (YS) {
#pragma unroll
            for (int s = 0; s < NS; s++) __pipeline_memcpy_async(ys + s, y + r[s], 4);
            __pipeline_commit();
            return;
        }
#pragma unroll
        for (int s = 0; s < NS; s++)
#pragma unroll
            for (int b = 0; b < B; b++) ya[s][b] = y[(size_t)b * rows + r[s]];
    }

    /* Butterfly; lane 0 stores unit u's outputs into y (rows apart per
     * input): silu(gate) * up, or the unit's rows (epi ADD: added); acc
     * zeroed. KEYS: lane 0 also keeps the largest greedy key of each input's
     * rows so far in kb (vz_greedy_key). */
    template <bool KEYS>
    __device__ __forceinline__ void store(float *y, int epi, int lane, float acc[NS][B],
                                          unsigned long long kb[B]) const {
#pragma unroll
        for (int s = 0; s < NS; s++)
#pragma unroll
            for (int b = 0; b < B; b++) {
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) acc[s][b] += __shfl_xor_sync(0xffffffffu, acc[s][b], o);
            }
        int r[NS];
        mv4_rows<NS>(rows, silu, u, r);
        if (YS && epi == VZ_CUDA_EPI_ADD && !silu && lane == 0) __pipeline_wait_prior(0); /* load_y's copy */
#pragma unroll
        for (int b = 0; b < B; b++) {
            if (lane != 0) break;
            if (NS == 2 && silu) {
                float g = acc[0][b];
                y[(size_t)b * rows + r[0]] = g / (1.0f + expf(-g)) * acc[NS - 1][b];
                continue;
            }
#pragma unroll
            for (int s = 0; s < NS; s++) {
                if (s == 1 && r[s] == r[0]) break; /* an odd count's last pair */
                size_t i = (size_t)b * rows + r[s];
                y[i] = epi != VZ_CUDA_EPI_ADD ? acc[s][b] : (YS ? ys[s] : YA ? ya[s][b] : y[i]) + acc[s][b];
                if constexpr (KEYS) {
                    const unsigned long long k = vz_greedy_key(acc[s][b], (uint32_t)r[s]);
                    kb[b] = k > kb[b] ? k : kb[b];
                }
            }
        }
#pragma unroll
        for (int s = 0; s < NS; s++)
#pragma unroll
            for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
    }

    /* Consumes every step: xs as mv4_stage left it (B inputs of c4
     * float4; the caller's batch is B), outputs to y; sm: the warp's
     * lossless scratch. KEYS (vz_cuda_matvec_head): then lane 0 puts the
     * largest greedy key of its rows of input b into slot (first unit) % 32
     * of keys' row b by one atomicMax; slots lie VZ_GREEDY_STRIDE apart, a
     * cache line each. */
    template <bool KEYS = false>
    __device__ __forceinline__ void run(const float4 *xs, int c4, float *y, int epi, int lane, uint32_t *sm,
                                        unsigned long long *keys = NULL) {
        const int u0 = u;
        unsigned long long kb[B];
#pragma unroll
        for (int b = 0; b < B; b++) kb[b] = 0ull;
        float acc[NS][B];
#pragma unroll
        for (int s = 0; s < NS; s++)
#pragma unroll
            for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
        const uint32_t xs0 = (uint32_t)__cvta_generic_to_shared(xs);
        if (xs0 & 127u) __trap(); /* not from mv4_align: the xor addressing would be wrong */
        const uint32_t xa0 = xs0 + 16u * (lane & 7); /* mv4_fma's xa of group 0 (mv4_swz: sw = lane & 7) */
        while (u < uend) { /* warp-uniform; one pass = SLOTS steps, ring slot k compile-time */
#pragma unroll
            for (int k = 0; k < SLOTS; k++) {
                if (u >= uend) break;
                if (it == 0) load_y(y, epi, lane);
                vz_pk pk[NS];
#pragma unroll
                for (int s = 0; s < NS; s++) mv2_decode<KIND>(mv4_dv(d[s]), st[k][s], lane, sm, pk[s]);
                if (!LATE && uf < uend) fetch((k + D) % SLOTS, lane); /* step + D (k itself when SLOTS = D) */
                const int g = it * 32 + lane;
                if (MV4_UNI(KIND, B, MINB) >= 2 && (it + 1) * 32 <= mv4_dv(d[0]).gpr) { /* every lane's group in the row */
                    mv4_math<KIND, B, NS>(pk, xa0 + 128u * (uint32_t)g, c4, acc);
                } else if (g < mv4_dv(d[0]).gpr) {
                    mv4_math<KIND, B, NS>(pk, xa0 + 128u * (uint32_t)g, c4, acc);
                }
                if (LATE && uf < uend) fetch(k, lane);
                if (it + 1 == nit) store<KEYS>(y, epi, lane, acc, kb);
                next(u, it);
            }
        }
        if constexpr (KEYS)
#pragma unroll
            for (int b = 0; b < B; b++)
                if (lane == 0 && kb[b])
                    atomicMax(keys + ((size_t)b * VZ_GREEDY_SLOTS + (u0 & (VZ_GREEDY_SLOTS - 1))) * VZ_GREEDY_STRIDE,
                              kb[b]);
    }
};

#endif
