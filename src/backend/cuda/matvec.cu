/*
 * matvec.cu - fused decode + matvec on compressed weights: y = W x for a
 * batch of 1..8 inputs, W decoded in registers by the codec's one decoder
 * (decode.cuh). CPU reference: the codec's decode_ref, then a double sum;
 * tolerance and bitwise raw == lossless checks in tests/test_cuda_matvec.c.
 * Bench: $BUILD/bench/matvec_bench (bench/gpu_ab.sh on a GPU machine).
 *
 * Accumulation order (the same in every kernel, which is what makes raw and
 * lossless bit-identical): a warp owns a row; in iteration it lane l owns
 * code group g = 32*it + l; per (row, input) one f32 accumulator per lane,
 * fmaf over the group's elements in order, groups in order; then an
 * xor-butterfly (16, 8, 4, 2, 1) and lane 0's value. q8/q4: a lane's 32
 * elements have one scale s (the codecs' groups are multiples of 32 or a
 * whole row), so the fmaf chain of a group runs over the codes minus their
 * zero point from 0, and acc = fmaf(s, that sum, acc): one multiply per
 * group instead of one per weight (+3.8% q8, +5.3% q4 tinyllama decode on
 * an H200, bench/results/2026-11-29-session15-h200.md).
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"
#include "backend/cuda/forward.cuh"
#include "backend/cuda/matvec.cuh"
#include "backend/cuda/mv4.cuh"
#include "backend/cuda/trace.cuh"

extern "C" {
#include "core/status.h"
}

#define MV_WARPS 4 /* warps per block */

struct mv_args : mv_set {
    int batch;
    const float *nw; /* v4: RMSNorm weights fused into the x staging (NULL: none) */
    int nws;         /* v4, batch 1: nw copied into shared memory before the PDL wait (mv4_stage_nw) */
    float eps;
    int pre1; /* v4, lossless at batch 1 with nws: one ring step before the PDL wait (MV4_PRE1_COLS_LL) */
#ifdef VZ_CUDA_TRACE
    vz_trace_arg tr;
#endif
};

vz_dview vz_cuda_view(const vz_cuda_tensor *t); /* cuda_weights.cu */

/* The two stages of the fast decoders (decode.cuh), by path KIND. */
template <int KIND>
static __device__ __forceinline__ void mv_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_load(d, r, it, lane, st);
    else if (KIND == VZ_K_LL3) vz_ll3_load(d, r, it, lane, st);
    else if (KIND == VZ_K_LL4) vz_ll4_load_all(d, r, it, lane, st);
    else if (KIND == VZ_K_Q8) vz_q8_load(d, r, it, lane, st);
    else if (KIND == VZ_K_Q4) vz_q4_load(d, r, it, lane, st);
}

/* q8/q4: unscaled (see the accumulation order above); sc: the lane group's scale. */
template <int KIND>
static __device__ __forceinline__ void mv_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                 float w[32], float &sc) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode(st, w);
    else if (KIND == VZ_K_LL3) vz_ll3_decode(d, st, lane, sm, w);
    else if (KIND == VZ_K_LL4) vz_ll4_decode(d, st, lane, sm, w);
    else if (KIND == VZ_K_Q8) vz_q8_decode(st, w, false), sc = vz_q_scale(st);
    else if (KIND == VZ_K_Q4) vz_q4_decode(st, w, false), sc = vz_q_scale(st);
}

/* The v1 and v2 kernels' warp: tensor t of the launch and its MV_SLOTS rows
 * r of views d (consecutive rows of one tensor, or gate row + up row when
 * silu; v1: the second row is real, else a copy of the first), nb = min(B,
 * batch) inputs. False for a warp past the rows: it has waited (warp-
 * uniform), so the grid's completion still implies the previous grid's. */
static __device__ __forceinline__ bool mv_rows(const mv_args &a, int warp, int B, vz_dview d[MV_SLOTS],
                                               int64_t r[MV_SLOTS], int &t, int &nb, bool &silu, bool &v1) {
    t = a.tensor();
    silu = a.epi == VZ_CUDA_EPI_SILU_MUL;
    const int64_t wi = (int64_t)(blockIdx.x - a.blk[t]) * MV_WARPS + warp;
    d[0] = a.pick(t);
    d[1] = silu ? a.pick(1) : d[0];
    r[0] = silu ? wi : wi * 2;
    r[1] = silu ? wi : wi * 2 + 1;
    if (r[0] >= d[0].rows) {
        a.wait();
        return false;
    }
    v1 = r[1] < d[1].rows;
    if (!v1) r[1] = r[0], d[1] = d[0];
    nb = B < a.batch ? B : a.batch;
    return true;
}

/* The v1 and v2 kernels' end: the butterfly, then lane 0 stores the warp's
 * outputs for nb inputs (rows apart) into tensor t's y: silu(gate) * up, or
 * its rows r (the second when v1; epi ADD: added to y). */
template <int B>
static __device__ __forceinline__ void mv_store(const mv_args &a, float acc[MV_SLOTS][B], int64_t rows,
                                                const int64_t r[MV_SLOTS], int t, int nb, bool silu, bool v1,
                                                int lane) {
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
        for (int b = 0; b < B; b++)
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc[s][b] += __shfl_xor_sync(0xffffffffu, acc[s][b], o);
    if (lane != 0) return;
#pragma unroll
    for (int b = 0; b < B; b++) {
        if (b >= nb) break;
        if (silu) {
            float g = acc[0][b];
            a.y[0][(size_t)b * rows + r[0]] = g / (1.0f + expf(-g)) * acc[1][b];
            continue;
        }
        float *y = a.out(t);
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) {
            if (s == 1 && !v1) break;
            size_t i = (size_t)b * rows + r[s];
            y[i] = a.epi == VZ_CUDA_EPI_ADD ? y[i] + acc[s][b] : acc[s][b];
        }
    }
}

/* One warp: MV_SLOTS rows (consecutive rows of one tensor, or gate row +
 * up row for SILU_MUL). B: batch bound (compile time); nb: actual batch. */
template <int KIND, int B>
static __global__ void __launch_bounds__(MV_WARPS * 32) mv_kernel(mv_args a) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    a.trigger_early(); /* PDL (mv_launch): the next kernel may start its weight loads now */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    vz_dview d[MV_SLOTS];
    int64_t r[MV_SLOTS];
    int t, nb;
    bool silu, v1;
    if (!mv_rows(a, warp, B, d, r, t, nb, silu, v1)) return;
    float acc[MV_SLOTS][B];
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
    int nit = (d[0].gpr + 31) / 32;
    int64_t cols = d[0].cols;
    vz_gst cur[MV_SLOTS], nxt[MV_SLOTS];
    bool qs[MV_SLOTS]; /* q8/q4: a lane group's sum times its scale */
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++) qs[s] = d[s].codec == VZ_ID_Q8 || d[s].codec == VZ_ID_Q4;
    if (KIND != VZ_K_GENERIC)
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) mv_load<KIND>(d[s], r[s], 0, lane, cur[s]);
    for (int it = 0; it < nit; it++) {
        float w[MV_SLOTS][32], sc[MV_SLOTS] = {1.0f, 1.0f};
        if (KIND != VZ_K_GENERIC && it + 1 < nit) /* prefetch: next group's bytes in flight during this one's math */
#pragma unroll
            for (int s = 0; s < MV_SLOTS; s++) mv_load<KIND>(d[s], r[s], it + 1, lane, nxt[s]);
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) {
            if (KIND == VZ_K_GENERIC) {
                vz_group_any(d[s], r[s], it, lane, smem[warp], w[s], false);
                if (qs[s]) sc[s] = vz_q_lane_scale(d[s], r[s], it, lane);
            } else {
                mv_decode<KIND>(d[s], cur[s], lane, smem[warp], w[s], sc[s]);
            }
            if (KIND != VZ_K_GENERIC) cur[s] = nxt[s];
        }
        if (it == 0) a.wait(); /* x and y only from here on; weights before */
        int64_t c0 = 32 * (int64_t)(it * 32 + lane);
        if (c0 >= cols) continue;
        int ne = cols - c0 < 32 ? (int)(cols - c0) : 32;
#pragma unroll
        for (int b = 0; b < B; b++) {
            if (b >= nb) break;
            const float *xp = a.x + (size_t)b * cols + c0;
            float xv[32];
            if (KIND != VZ_K_GENERIC) {
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    float4 f = __ldg((const float4 *)xp + q);
                    xv[4 * q] = f.x, xv[4 * q + 1] = f.y, xv[4 * q + 2] = f.z, xv[4 * q + 3] = f.w;
                }
            } else {
#pragma unroll
                for (int e = 0; e < 32; e++) xv[e] = e < ne ? __ldg(xp + e) : 0.0f;
            }
#pragma unroll
            for (int s = 0; s < MV_SLOTS; s++) {
                const bool q = KIND == VZ_K_Q8 || KIND == VZ_K_Q4 || (KIND == VZ_K_GENERIC && qs[s]);
                float g = vz_grp_start(q, acc[s][b]);
#pragma unroll
                for (int e = 0; e < 32; e++)
                    if (KIND != VZ_K_GENERIC || e < ne) g = fmaf(w[s][e], xv[e], g);
                acc[s][b] = vz_grp_end(q, sc[s], g, acc[s][b]);
            }
        }
    }
    mv_store<B>(a, acc, d[0].rows, r, t, nb, silu, v1, lane);
}

/* ---- v2: packed decode, deeper prefetch, programmatic dependent launch ----
 * Stage order per warp: loads of groups 0 and 1 issued, group 0 decoded (all
 * of it reads only weights, which no kernel writes), THEN griddepcontrol.wait
 * (the previous kernel's outputs, x and y, are complete and visible), then
 * per iteration: fmaf with the decoded group, issue loads of group it + 2,
 * decode group it + 1. With the PDL launch attribute the pre-wait part
 * overlaps the previous kernel; without it, wait is a no-op. The fmaf order
 * is the one above, so results equal mv_kernel's bitwise. */

template <int KIND, int B, int MINB>
static __global__ void __launch_bounds__(MV_WARPS * 32, MINB) mv2_kernel(mv_args a) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    a.trigger_early(); /* the next kernel may start its weight loads now */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    vz_dview d[MV_SLOTS];
    int64_t r[MV_SLOTS];
    int t, nb;
    bool silu, v1;
    if (!mv_rows(a, warp, B, d, r, t, nb, silu, v1)) return;
    int nit = (d[0].gpr + 31) / 32;
    int64_t cols = d[0].cols;
    uint32_t ei[MV_SLOTS] = {0, 0};
    if (KIND == VZ_K_LL3 && d[0].bpr < 32)
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++)
            ei[s] = lane <= d[s].bpr ? __ldg(d[s].eidx + (size_t)r[s] * d[s].bpr + lane) : 0u;
    vz_gst cur[MV_SLOTS], nxt[MV_SLOTS];
    vz_pk pk[MV_SLOTS];
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++) mv2_load<KIND>(d[s], r[s], 0, lane, ei[s], cur[s]);
    if (nit > 1)
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) mv2_load<KIND>(d[s], r[s], 1, lane, ei[s], nxt[s]);
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++) mv2_decode<KIND>(d[s], cur[s], lane, smem[warp], pk[s]);
    a.wait();
    float acc[MV_SLOTS][B];
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
    for (int it = 0; it < nit; it++) {
        int64_t c0 = 32 * (int64_t)(it * 32 + lane);
        if (c0 < cols) {
            constexpr bool QS = KIND == VZ_K_Q8 || KIND == VZ_K_Q4; /* a lane group's sum times its scale */
#pragma unroll
            for (int b = 0; b < B; b++) {
                if (b >= nb) break;
                const float4 *xp = (const float4 *)(a.x + (size_t)b * cols + c0);
                float g[MV_SLOTS];
#pragma unroll
                for (int s = 0; s < MV_SLOTS; s++) g[s] = vz_grp_start(QS, acc[s][b]);
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    float4 f = __ldg(xp + q);
                    float xv[4] = {f.x, f.y, f.z, f.w};
#pragma unroll
                    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
                        for (int e = 0; e < 4; e++) g[s] = fmaf(vz_pk_elem<KIND>(pk[s], 4 * q + e), xv[e], g[s]);
                }
#pragma unroll
                for (int s = 0; s < MV_SLOTS; s++) acc[s][b] = vz_grp_end(QS, pk[s].s, g[s], acc[s][b]);
            }
        }
        if (it + 1 < nit) {
#pragma unroll
            for (int s = 0; s < MV_SLOTS; s++) cur[s] = nxt[s];
            if (it + 2 < nit)
#pragma unroll
                for (int s = 0; s < MV_SLOTS; s++) mv2_load<KIND>(d[s], r[s], it + 2, lane, ei[s], nxt[s]);
#pragma unroll
            for (int s = 0; s < MV_SLOTS; s++) mv2_decode<KIND>(d[s], cur[s], lane, smem[warp], pk[s]);
        }
    }
    mv_store<B>(a, acc, d[0].rows, r, t, nb, silu, v1, lane);
}

/* ---- v4: x staged once per block in shared memory -------------------------
 * The per-lane x loads of mv_kernel (8 float4 per group at a 128-byte lane
 * stride: 32 L1 wavefronts each) made it L1/TEX-bound (ncu: L1 92%, DRAM
 * 29%; bench/results/2026-11-28-matvec-v3-h200.md). Here a block of
 * MV4_WARPS warps copies batch x cols of x into shared memory once, float4 j
 * of group g at j ^ (g & 7): the 8 lanes of a quarter-warp read 8 distinct
 * 16-byte bank groups, so a lane's float4 read is conflict-free. Each warp
 * then runs one flattened stream of (row unit, group) steps over the units
 * w, w + W, w + 2W, ... of its tensor (a unit: a row pair, or gate row + up
 * row, or at batch 1 a single row when the launch has few rows: NS = 1,
 * mv4_plan; w: the warp's index among the tensor's W warps, MV4_DEAL), the
 * weights of the next D steps (mv4_depth) in flight during this step's
 * math, also across units. Lossless: the row's exception index (lane j:
 * block j) is loaded one unit ahead, so no load waits on another. Lane
 * mapping and fmaf order are mv_kernel's: results are bitwise equal. */
#define MV4_WARPS 8
#define MV4_XMAX (96 * 1024) /* bytes of staged x in a block of 8 warps (2 blocks per SM) */
#define MV4_WIDE_WARPS 16       /* MV4_WIDE: warps of the one block per SM */
#define MV4_XMAX_WIDE (192 * 1024) /* bytes of staged x in such a block; a larger batch * cols is split
                                    * (below) or runs mv_kernel/mv2 (so lossless rows here have < 32
                                    * exception blocks, as mv4_ring needs) */
/* MV4_WIDE: a batch of 2-8 whose x fits MV4_XMAX_WIDE (batch * cols * 4
 * bytes) runs the v4 kernel as one block of 16 warps per SM: the same 128
 * registers per thread and warps per SM as two blocks of 8, but each SM
 * stages x once, and x of more than MV4_XMAX fits. ptxas spills nothing in
 * these kernels but q4's at batch 2 (8 bytes), where the 2-blocks kernels
 * of batch 2-8 spill 8-64 bytes in 12 of 28 (mv4_depth). MV4_BATCH_SPLIT: a
 * larger x runs as ceil(batch / bc) v4 launches of equal rows (at most bc =
 * MV4_XMAX_WIDE / (cols * 4)) when bc >= 2, each reading the weights again.
 * A row's sums are the same at any batch and in any block (the v4 kernel's
 * order), so the bits are too. On an H200 (bench/results/
 * 2026-11-30-session21-h200.md, tok/s in all, the 2-blocks kernel split by
 * MV4_XMAX -> the wide one): tinyllama raw at 8 sequences 2546 -> 2898,
 * lossless 2484 -> 2987; llama2-7b raw at 8 524 -> 754 (its x of 4096
 * columns had run as two launches of 4, its down as four of 2), lossless
 * 508 -> 754; every batch of 2-8 of raw, lossless, q8 and q4 gained (+4% to
 * +48%). VZ_CUDA_MV_WIDE (bench knob, same bits): 0 never (the 2-blocks
 * kernel, split by MV4_XMAX), 1 only for x above MV4_XMAX, 2 (default)
 * every batch of 2-8.
 * MV4_WIDE1_KINDS: the kinds (bit 1 << kind) whose batch-1 launches run the
 * wide kernel too, where the 2-blocks kernel would (x within MV4_XMAX, not
 * the 3-blocks launches of mv4_plan); lossless only from MV4_WIDE1_STEPS_LL
 * row steps per warp (of a 2-blocks wave) on. On an H200 (same file, runs
 * 5-7) raw decode gained 1.2% (tinyllama) and 2.4% (llama2-7b: 271.7 ->
 * 278.3 tok/s), q4 3.3% (tinyllama); lossless gained 1.3% on llama2-7b
 * (every launch: 7-23 steps) but lost 2.2% on tinyllama with its down (5
 * steps) and lm_head (30) wide, 0.2% with only its lm_head; q8 did not
 * change, so it keeps two blocks. By integer dot products (VZ_K_Q4D,
 * VZ_K_Q8D) both run wide: llama2-7b q8 decode 464 -> 476 tok/s with it,
 * q4 575 -> 595 (bench/results/2026-12-01-session35-h200.md, run 5).
 * VZ_CUDA_MV_WIDE1 (bench knob, same bits): the mask (0: none).
 * MV4_WIDE3: raw's 3-blocks launches (mv4_plan: batch 1, at most
 * MV4_OCC3_STEPS_RAW row steps per warp, tinyllama's QKV and Wo) run as one
 * block of 24 warps per SM instead of three blocks of 8: the same 80
 * registers and warps per SM, x staged once per SM instead of three times.
 * On an H200 (bench/results/2026-11-30-session22-h200.md, run 1) tinyllama
 * raw decode went 1265.6 -> 1272.8 tok/s (+0.6%, two benches each), q4
 * (whose 3-blocks launches are none) did not change, lossless lost 5%
 * (1208.8 -> 1148.7) and q8 1.3%, so only raw takes it; llama2-7b (no such
 * launch) did not change. VZ_CUDA_MV_WIDE3=0 (bench knob, same bits): off. */
#define MV4_WIDE1_KINDS (1 << VZ_K_RAW_BF16 | 1 << VZ_K_LL3 | 1 << VZ_K_Q4 | 1 << VZ_K_Q4D | 1 << VZ_K_Q8D)
#define MV4_WIDE3_WARPS 24
#define MV4_WIDE1_STEPS_LL 7
#define MV4_OCC3_STEPS 6    /* lossless at batch 1: 3 blocks per SM up to this many steps per warp (mv4_plan) */
#define MV4_OCC3_STEPS_LL_PLAIN 4 /* lossless launches without SiLU: the same */
#define MV4_OCC3_STEPS_Q8 2 /* q8: the same (q4: never) */
#define MV4_OCC3_STEPS_RAW 2 /* raw: the same */
/* MV4_PRE1_COLS_LL: a lossless launch at batch 1 with a fused norm whose
 * norm weights sit in shared memory (nws) and of at most this many columns
 * loads one ring step per warp before its PDL wait, the rest once x is
 * staged (mv4_ring::fill), where the other launches load all D first. Fewer
 * loads in flight when the wait returns let x's staging through sooner. On
 * an H200 (bench/results/2026-12-02-session48-h200.md, run 5) tinyllama's
 * lossless decode (2048 columns: QKV, single rows at 3 blocks per SM with a
 * ring 2 steps deep, and the head; gate/up's pairs at 3 blocks have a ring
 * 1 step deep, so none is held back there) went 1408.3 -> 1418.9 tok/s
 * (+0.76%, every bench above every bench without), llama2-7b's (4096) lost
 * 0.3% with it (its QKV, gate/up and head each ended 0.2-0.6 us later,
 * traced in bench/results/2026-12-02-session49-h200.md); raw, q8 and q4
 * lost 2.8-4.6% with one step before the wait in a knob build (session 48,
 * run 2), so only lossless takes it. The same bits. VZ_CUDA_MV_PRE1_COLS
 * (bench): the bound, -1 never. */
#define MV4_PRE1_COLS_LL 2048

/* MV4_DEAL: warp w of block b is its tensor's warp w * nblk + b (nblk: the
 * tensor's blocks), so the warps that get one unit more, or the only units
 * of a launch of fewer units than warps, are spread over every SM; else
 * (the other kinds) warp b * WARPS + w, so a block reads consecutive rows.
 * On an H200 (bench/results/2026-12-01-session38-h200.md, run 8), spread
 * for every kind: tinyllama decode raw +1.1%, lossless -0.7%, q8 -4.6%, q4
 * -3.0%; llama2-7b raw +0.9%, lossless +1.0%, q8 -1.4%, q4 -2.0%. So only
 * raw deals them so: tinyllama raw +0.6%, the other kinds' kernels
 * unchanged (run 9). Lossless packed3's wide batch-1 kernels (MINB 1: all
 * of llama2-7b's launches, tinyllama's gate/up and head) deal them too:
 * llama2-7b lossless decode 340.2-340.4 -> 342.4-342.9 tok/s (+0.7%) and
 * 344.6-344.8 -> 348.3-348.7 (+1.1%) in two runs, tinyllama level; k4's
 * the same way +0.1% (not taken; bench/results/2026-12-04-session61-
 * h200.md, runs 2 and 3). Same bits either way (a row's sums are one
 * warp's). */
#define MV4_DEAL(KIND, B, MINB) ((KIND) == VZ_K_RAW_BF16 || ((KIND) == VZ_K_LL3 && (B) == 1 && (MINB) == 1))

/* MINB: the blocks of MV4_WARPS warps per SM the kernel is sized for (its
 * registers and ring depth, mv4_depth); a block of more warps (MV4_WIDE,
 * MV4_WIDE3) runs alone on its SM, with the registers of MINB blocks of 8.
 * KEYS: the output head's greedy keys too (mv4_ring::run), compiled only
 * for the head's launches (mv4_keys), so no other kernel carries them. */
template <int KIND, int B, int NS, int MINB = 2, int WARPS = MV4_WARPS, bool KEYS = false>
static __global__ void __launch_bounds__(WARPS * 32, WARPS == MV4_WARPS ? MINB : 1) mv4_kernel(mv_args a) {
    extern __shared__ float4 xs_[]; /* x at mv4_align(xs_) */
    __shared__ __align__(16) uint32_t smem[vz_k_ll(KIND) ? WARPS : 1][VZ_SMEM_WARP3];
    __shared__ uint32_t ixs[vz_k_ll(KIND) ? WARPS : 1][vz_k_ll(KIND) ? MV4_IX_WORDS : 1];
    __shared__ float ysm[B == 1 ? WARPS : 1][MV_SLOTS]; /* mv4_ring's YS */
    __shared__ vz_rms_smem nsm;
#ifdef VZ_CUDA_TRACE
    const unsigned long long tr_t0 = vz_gtime();
#endif
    a.trigger_early(); /* PDL: the next kernel may start its weight loads now */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t = a.tensor();
    const bool silu = a.epi == VZ_CUDA_EPI_SILU_MUL;
    const vz_dview d0 = a.pick(t), d1 = silu ? a.pick(1) : d0;
    const int64_t nunit = silu || NS == 1 ? d0.rows : (d0.rows + 1) / 2;
    const int64_t nwarp = (int64_t)(a.blk[t + 1] - a.blk[t]) * WARPS; /* tensor t's warps deal its units */
    const int c4 = (int)(d0.cols >> 2); /* B == a.batch: mv4_plan picks the kernel of the batch */
    mv4_ring<KIND, B, NS, MINB> ring;
    const int64_t nblk = a.blk[t + 1] - a.blk[t], b = blockIdx.x - a.blk[t];
    const bool pre1 = vz_k_ll(KIND) && B == 1 && a.pre1; /* MV4_PRE1_COLS_LL */
    int u0 = (int)(MV4_DEAL(KIND, B, MINB) ? warp * nblk + b : b * WARPS + warp);
    if constexpr (MV4_UNI(KIND, B, MINB) >= 1) u0 = __shfl_sync(0xffffffffu, u0, 0); /* warp-uniform to ptxas (mv4.cuh) */
    ring.start(d0, d1, silu, u0, nwarp, nunit, lane,
               ixs[vz_k_ll(KIND) ? warp : 0], ysm[B == 1 ? warp : 0], pre1 ? 1 : (int)ring.D);
    float4 *xs = mv4_align(xs_), *nws = a.nws ? xs + (size_t)B * c4 : NULL;
    if (nws) mv4_stage_nw(a.nw, c4, nws);
    a.wait(); /* x and y only from here on; weights before */
#ifdef VZ_CUDA_TRACE
    const unsigned long long tr_tw = vz_gtime();
#endif
    constexpr bool DP = vz_k_dp(KIND);
    mv4_stage<DP>(a.x, a.nw, a.eps, B, c4, xs, &nsm, nws);
    if constexpr (DP) mv4_digits<KIND>(B, c4, xs);
    /* The held-back steps. One `pre` (1 or D) given to start and to fill(lane, pre, D) says the
     * count once, but changed one predicate's computation in the eight batch-1 lossless kernels
     * and ran tinyllama's lossless decode 0.5% slower on an H200 (bench/results/
     * 2026-12-02-session50-h200.md), so the count stays written twice. */
    if (pre1) ring.fill(lane, 1, ring.D);
#ifdef VZ_CUDA_TRACE
    const unsigned long long tr_tx = vz_gtime();
#endif
    ring.template run<KEYS>(xs, c4, a.out(t), a.epi, lane, smem[vz_k_ll(KIND) ? warp : 0], a.keys);
#ifdef VZ_CUDA_TRACE
    if (lane == 0) vz_trace_put(a.tr, tr_t0, tr_tw, blockIdx.x << 8 | warp, blockIdx.x * WARPS + warp, tr_tx);
#endif
}

typedef void (*mv_fn)(mv_args);

/* MV4_FIT: a wide batch-1 launch of row pairs or gate/up rows of one
 * tensor, raw or lossless packed4, with more units than the SMs' 16 warps
 * take at once, runs blocks of MV4_FIT_WARPS (14) warps instead where that
 * takes no more rounds of units (the units of its busiest warps): the
 * round the 16 warps cannot fill leaves an SM's last units to a few warps.
 * llama2-7b's gate/up takes it (11008 units: 6 rounds either way; 5.2 per
 * warp at 16 warps, 6.0 at 14), no other launch of llama2-7b or
 * tinyllama-1.1b. On an H200 (bench/results/2026-12-04-session61-h200.md,
 * run 3): llama2-7b decode raw 295.8-296.8 -> 298.8-299.2 tok/s (+0.9%),
 * lossless:k4 364.1-364.7 -> 365.9-366.1 (+0.4%), the same bits. Not
 * taken: lossless packed3 (-0.7% with it), 15 warps where that keeps the
 * rounds (tinyllama's gate/up, 3 rounds: raw -1.5%), 14 where it adds a
 * round (tinyllama's gate/up, 4 rounds: raw -3%, run 2), and 12 warps for
 * every k4 launch (-7.7%, run 1). VZ_CUDA_MV_FIT=0 (bench knob): off. */
#define MV4_FIT_WARPS 14
static bool mv4_fit(int64_t units, int64_t sms) {
    const int64_t r16 = (units + sms * MV4_WIDE_WARPS - 1) / (sms * MV4_WIDE_WARPS);
    return r16 >= 2 && (units + sms * MV4_FIT_WARPS - 1) / (sms * MV4_FIT_WARPS) == r16;
}

/* The bytes of x a wide block (MV4_WIDE) can stage on this device:
 * MV4_XMAX_WIDE, or less where the device's opt-in maximum per block
 * cannot hold that with the wide kernel's static shared memory (lossless
 * scratch, norm sums) and MV4_XPAD (an A100: 163 KiB per block). */
static size_t mv4_xmax_wide(void) {
    static size_t cap = 0;
    if (cap == 0) {
        int dev = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 0, cudaGetLastError();
        const size_t stat = (size_t)MV4_WIDE_WARPS * (VZ_SMEM_WARP3 + MV4_IX_WORDS + MV_SLOTS) * 4 + sizeof(vz_rms_smem) + 64;
        const size_t room = (size_t)optin > stat + MV4_XPAD ? (size_t)optin - stat - MV4_XPAD : 0;
        cap = room < MV4_XMAX_WIDE ? (room > 0 ? room : 1) : MV4_XMAX_WIDE;
    }
    return cap;
}

/* Kernel tables: [vz_k_row(kind)][batch-1]; the generic kind runs every batch with B = 8. */
#define MV_ROW(K) {mv_kernel<K, 1>, mv_kernel<K, 2>, mv_kernel<K, 3>, mv_kernel<K, 4>, \
                   mv_kernel<K, 5>, mv_kernel<K, 6>, mv_kernel<K, 7>, mv_kernel<K, 8>}
static const mv_fn mv_table[5][8] = {MV_ROW(VZ_K_RAW_BF16), MV_ROW(VZ_K_LL3), MV_ROW(VZ_K_Q8), MV_ROW(VZ_K_Q4),
                                     MV_ROW(VZ_K_LL4)};
#define MV2_ROW(K) {mv2_kernel<K, 1, 1>, mv2_kernel<K, 2, 1>, mv2_kernel<K, 3, 1>, mv2_kernel<K, 4, 1>, \
                    mv2_kernel<K, 5, 1>, mv2_kernel<K, 6, 1>, mv2_kernel<K, 7, 1>, mv2_kernel<K, 8, 1>}
static const mv_fn mv2_table[5][8] = {MV2_ROW(VZ_K_RAW_BF16), MV2_ROW(VZ_K_LL3), MV2_ROW(VZ_K_Q8), MV2_ROW(VZ_K_Q4),
                                      MV2_ROW(VZ_K_LL4)};
/* batch 1 with a register cap of 4 blocks per SM */
static const mv_fn mv2_occ[5] = {mv2_kernel<VZ_K_RAW_BF16, 1, 4>, mv2_kernel<VZ_K_LL3, 1, 4>,
                                 mv2_kernel<VZ_K_Q8, 1, 4>, mv2_kernel<VZ_K_Q4, 1, 4>, mv2_kernel<VZ_K_LL4, 1, 4>};
#define MV4_ROW(K) {mv4_kernel<K, 1, 2>, mv4_kernel<K, 2, 2>, mv4_kernel<K, 3, 2>, mv4_kernel<K, 4, 2>, \
                    mv4_kernel<K, 5, 2>, mv4_kernel<K, 6, 2>, mv4_kernel<K, 7, 2>, mv4_kernel<K, 8, 2>}
static const mv_fn mv4_table[5][8] = {MV4_ROW(VZ_K_RAW_BF16), MV4_ROW(VZ_K_LL3), MV4_ROW(VZ_K_Q8), MV4_ROW(VZ_K_Q4),
                                      MV4_ROW(VZ_K_LL4)};
/* batch 1, one row per unit */
static const mv_fn mv4_row1[5] = {mv4_kernel<VZ_K_RAW_BF16, 1, 1>, mv4_kernel<VZ_K_LL3, 1, 1>,
                                  mv4_kernel<VZ_K_Q8, 1, 1>, mv4_kernel<VZ_K_Q4, 1, 1>, mv4_kernel<VZ_K_LL4, 1, 1>};
/* MV4_WIDE, batch 2..8, NS rows per unit: [kind][batch - 2]; one row per unit
 * where pairs would leave warps idle (mv4_plan) */
#define MV4_WIDE_ROW(K, NS) {mv4_kernel<K, 2, NS, 1, MV4_WIDE_WARPS>, mv4_kernel<K, 3, NS, 1, MV4_WIDE_WARPS>, \
                             mv4_kernel<K, 4, NS, 1, MV4_WIDE_WARPS>, mv4_kernel<K, 5, NS, 1, MV4_WIDE_WARPS>, \
                             mv4_kernel<K, 6, NS, 1, MV4_WIDE_WARPS>, mv4_kernel<K, 7, NS, 1, MV4_WIDE_WARPS>, \
                             mv4_kernel<K, 8, NS, 1, MV4_WIDE_WARPS>}
static const mv_fn mv4_wide[5][7] = {MV4_WIDE_ROW(VZ_K_RAW_BF16, 2), MV4_WIDE_ROW(VZ_K_LL3, 2),
                                     MV4_WIDE_ROW(VZ_K_Q8, 2), MV4_WIDE_ROW(VZ_K_Q4, 2), MV4_WIDE_ROW(VZ_K_LL4, 2)};
static const mv_fn mv4_wide_row1[5][7] = {MV4_WIDE_ROW(VZ_K_RAW_BF16, 1), MV4_WIDE_ROW(VZ_K_LL3, 1),
                                          MV4_WIDE_ROW(VZ_K_Q8, 1), MV4_WIDE_ROW(VZ_K_Q4, 1), MV4_WIDE_ROW(VZ_K_LL4, 1)};
/* MV4_WIDE1_KINDS, batch 1: [pairs][kind] */
static const mv_fn mv4_wide1[2][5] = {
    {mv4_kernel<VZ_K_RAW_BF16, 1, 1, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_LL3, 1, 1, 1, MV4_WIDE_WARPS>,
     mv4_kernel<VZ_K_Q8, 1, 1, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_Q4, 1, 1, 1, MV4_WIDE_WARPS>,
     mv4_kernel<VZ_K_LL4, 1, 1, 1, MV4_WIDE_WARPS>},
    {mv4_kernel<VZ_K_RAW_BF16, 1, 2, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_LL3, 1, 2, 1, MV4_WIDE_WARPS>,
     mv4_kernel<VZ_K_Q8, 1, 2, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_Q4, 1, 2, 1, MV4_WIDE_WARPS>,
     mv4_kernel<VZ_K_LL4, 1, 2, 1, MV4_WIDE_WARPS>}};
/* MV4_FIT, batch 1: [packed4] */
static const mv_fn mv4_fit1[2] = {mv4_kernel<VZ_K_RAW_BF16, 1, 2, 1, MV4_FIT_WARPS>,
                                  mv4_kernel<VZ_K_LL4, 1, 2, 1, MV4_FIT_WARPS>};
/* q4 and q8 by integer dot products (VZ_K_Q4D, VZ_K_Q8D: mv4_dp), [q8] then
 * as the kernels above (3 blocks per SM: never): [batch - 1], one row per
 * unit at batch 1, MV4_WIDE [batch - 2], MV4_WIDE1 [pairs]. */
static const mv_fn mv4d_table[2][8] = {MV4_ROW(VZ_K_Q4D), MV4_ROW(VZ_K_Q8D)};
static const mv_fn mv4d_row1[2] = {mv4_kernel<VZ_K_Q4D, 1, 1>, mv4_kernel<VZ_K_Q8D, 1, 1>};
static const mv_fn mv4d_wide[2][7] = {MV4_WIDE_ROW(VZ_K_Q4D, 2), MV4_WIDE_ROW(VZ_K_Q8D, 2)};
static const mv_fn mv4d_wide1[2][2] = {
    {mv4_kernel<VZ_K_Q4D, 1, 1, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_Q4D, 1, 2, 1, MV4_WIDE_WARPS>},
    {mv4_kernel<VZ_K_Q8D, 1, 1, 1, MV4_WIDE_WARPS>, mv4_kernel<VZ_K_Q8D, 1, 2, 1, MV4_WIDE_WARPS>}};
/* The output head with greedy keys (vz_cuda_matvec_head), batch 1, row
 * pairs: [wide][kind] as mv4_table and mv4_wide1, then the dot-product
 * kinds [wide][q8]. The head is a launch of many rows, so it runs one of
 * these where no key is asked for too; smaller heads (stories260K's 512
 * rows: single rows, 3 blocks per SM) take no keys. */
#define MV4_KEYS_ROW(K, W, M) mv4_kernel<K, 1, 2, M, W, true>
static const mv_fn mv4_keys[2][5] = {
    {MV4_KEYS_ROW(VZ_K_RAW_BF16, MV4_WARPS, 2), MV4_KEYS_ROW(VZ_K_LL3, MV4_WARPS, 2), MV4_KEYS_ROW(VZ_K_Q8, MV4_WARPS, 2),
     MV4_KEYS_ROW(VZ_K_Q4, MV4_WARPS, 2), MV4_KEYS_ROW(VZ_K_LL4, MV4_WARPS, 2)},
    {MV4_KEYS_ROW(VZ_K_RAW_BF16, MV4_WIDE_WARPS, 1), MV4_KEYS_ROW(VZ_K_LL3, MV4_WIDE_WARPS, 1),
     MV4_KEYS_ROW(VZ_K_Q8, MV4_WIDE_WARPS, 1), MV4_KEYS_ROW(VZ_K_Q4, MV4_WIDE_WARPS, 1),
     MV4_KEYS_ROW(VZ_K_LL4, MV4_WIDE_WARPS, 1)}};
static const mv_fn mv4d_keys[2][2] = {{MV4_KEYS_ROW(VZ_K_Q4D, MV4_WARPS, 2), MV4_KEYS_ROW(VZ_K_Q8D, MV4_WARPS, 2)},
                                      {MV4_KEYS_ROW(VZ_K_Q4D, MV4_WIDE_WARPS, 1), MV4_KEYS_ROW(VZ_K_Q8D, MV4_WIDE_WARPS, 1)}};
/* MV4_WIDE3, raw at batch 1: [pairs] */
static const mv_fn mv4_wide3[2] = {mv4_kernel<VZ_K_RAW_BF16, 1, 1, 3, MV4_WIDE3_WARPS>,
                                   mv4_kernel<VZ_K_RAW_BF16, 1, 2, 3, MV4_WIDE3_WARPS>};
/* batch 1 at 3 blocks per SM (80 registers, half the ring depth): [pairs][kind] */
static const mv_fn mv4_occ3[2][5] = {
    {mv4_kernel<VZ_K_RAW_BF16, 1, 1, 3>, mv4_kernel<VZ_K_LL3, 1, 1, 3>, mv4_kernel<VZ_K_Q8, 1, 1, 3>,
     mv4_kernel<VZ_K_Q4, 1, 1, 3>, mv4_kernel<VZ_K_LL4, 1, 1, 3>},
    {mv4_kernel<VZ_K_RAW_BF16, 1, 2, 3>, mv4_kernel<VZ_K_LL3, 1, 2, 3>, mv4_kernel<VZ_K_Q8, 1, 2, 3>,
     mv4_kernel<VZ_K_Q4, 1, 2, 3>, mv4_kernel<VZ_K_LL4, 1, 2, 3>}};

/* VZ_CUDA_MV_* flags (vz_cuda_matvec_variant). Before v4 the default was LEGACY | NO_PDL (measured
 * best for lossless, bench/results/2026-11-28-matvec-v2-h200.md, -v3-h200.md); v4 results:
 * bench/results/2026-11-28-matvec-v4-h200.md. */
static int mv_variant = VZ_CUDA_MV_V4;

extern "C" int vz_cuda_matvec_variant(int flags) {
    int old = mv_variant;
    if (flags >= 0) mv_variant = flags & 1023;
    return old;
}

/* The shared memory per SM that a carveout of pct percent gives: the
 * driver rounds pct * most / 100 up to the next size the SM supports
 * (sm_90, most = 228 KiB: the sizes below); on other devices the bytes
 * asked (a lower bound). */
static int64_t carveout_bytes(int pct, int most) {
    static const int kib90[] = {0, 8, 16, 32, 64, 100, 132, 164, 196, 228};
    const int64_t ask = (int64_t)most * pct / 100;
    if (most == 228 * 1024)
        for (int i = 0; i < 10; i++)
            if ((int64_t)kib90[i] * 1024 >= ask) return (int64_t)kib90[i] * 1024;
    return ask;
}

/* The decode steps' carveout percents and the shared memory per SM they
 * give ([batch > 1]), found once. */
static int decode_pct[2] = {-2, -2};
static int64_t decode_cap[2];

static void decode_split(void) {
    if (decode_pct[0] != -2) return;
    int dev = 0, most = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
        most = 0, cudaGetLastError();
    for (int i = 0; i < 2; i++) {
        int pct;
        const char *e = getenv(i ? "VZ_CUDA_CARVEOUT_BATCH" : "VZ_CUDA_CARVEOUT");
        if (e && *e) pct = atoi(e) < 0 ? -1 : atoi(e) > 100 ? 100 : atoi(e);
        else if (most > 0) /* the smallest percent above VZ_DECODE_SMEM_BELOW_KIB (matvec.cuh) */
            pct = (int)((int64_t)VZ_DECODE_SMEM_BELOW_KIB * 1024 * 100 / most) + 1;
        else pct = -1;
        decode_pct[i] = pct > 100 ? 100 : pct;
        decode_cap[i] = decode_pct[i] >= 0 ? carveout_bytes(decode_pct[i], most) : 0;
    }
}

int vz_decode_carveout(int batch, size_t sm_bytes) {
    decode_split();
    const int i = batch > 1;
    if (decode_pct[i] < 0) return -1;
    return (int64_t)sm_bytes > decode_cap[i] ? 100 : decode_pct[i];
}

size_t vz_block_resv_smem(void) {
    static int resv = -1;
    if (resv < 0) {
        int dev = 0, r = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&r, cudaDevAttrReservedSharedMemoryPerBlock, dev) != cudaSuccess)
            r = 1024, cudaGetLastError();
        resv = r;
    }
    return (size_t)resv;
}

size_t vz_decode_smem(int batch) {
    decode_split();
    return decode_pct[batch > 1] < 0 ? 0 : (size_t)decode_cap[batch > 1];
}

/* Fast kinds are launched with programmatic stream serialization (PDL)
 * unless VZ_CUDA_MV_NO_PDL. */
static cudaError_t mv_launch(mv_fn f, bool fast, unsigned blocks, int threads, size_t smem, cudaStream_t st,
                             const mv_args &a, size_t sm_bytes = 0) {
    return mv_launch_pdl(f, fast && !(mv_variant & VZ_CUDA_MV_NO_PDL), blocks, threads, smem, st, a.batch, sm_bytes, a);
}

/* v4 grid: 2 blocks per SM (the kernel's launch bounds; 3 below, 1 of 16
 * warps for MV4_WIDE and MV4_WIDE1, 1 of 24 for MV4_WIDE3), one wave, shared
 * by the tensors in proportion to their units (at least one block each, no
 * more than one warp per unit); the warps of a tensor deal its units round
 * robin, so no SM gets a second block's work while another idles (with
 * whole blocks of ceil(units / (2 x SMs x 8)) units per warp, the 5632
 * gate/up units of tinyllama made 235 blocks: 103 SMs ran two, 29 one).
 * Which warp runs a unit changes no bit. A unit is a row pair, or gate row +
 * up row (silu); at batch 1 a single row when pairs would leave a quarter of
 * the wave's warps idle (rows <= 1.5 x warps; VZ_CUDA_MV_PAIRS: never;
 * VZ_CUDA_MV_ROW1_MAX: a bench knob for the bound). With pairs tinyllama's
 * Wo and down (2048 rows) ran 1024 warps, one block per SM, each a pair of 2
 * or 6 steps with little to overlap; single rows fill both blocks of every
 * SM with the same sums per row. On an H200
 * (bench/results/2026-11-29-session9-h200.md) single rows for its QKV, Wo
 * and down gave +3% (raw) to +6% (q8, q4) decode, but llama2-7b's Wo and
 * down (4096 rows: pairs fill the wave) lost 2% (raw) and 4% (lossless) with
 * them, as they lose x's reuse across the pair. Batches of 2-8 in the wide
 * kernel (MV4_WIDE, fmaf kinds, mv4_wide_row1) take the same rule: with
 * pairs tinyllama's QKV, Wo and down (2560, 2048, 2048 rows) kept 1280 and
 * 1024 of the 2112 warps busy while a warp's step grows with the batch
 * (its Wo at 8 sequences: 10.2 us as pairs, 7.9 as single rows; down 24.9
 * and 18.9). On an H200 (bench/results/2026-12-04-session65-h200.md, run
 * 2) tinyllama's batched decode at 4 and 8 sequences rose 5.5-8.0% (raw,
 * lossless, lossless:k4) and 3.7-5.1% (q8, q4); at 2 raw held level and the
 * others gained 0.8-7.5%; the same ids, and the same bits as pairs
 * (tests/test_cuda_matvec.c runs every batch under VZ_CUDA_MV_PAIRS too).
 * llama2-7b's launches all have over 3168 rows, so they keep pairs. The
 * dot-product kinds keep pairs at every batch but 1. Lossless (and q8) at batch 1
 * run 3 blocks per SM (mv4_occ3: 80 registers, half the ring depth) when
 * their warps have few steps each (MV4_OCC3_STEPS: at most 6 row steps of
 * 1024 columns per warp of a 2-block wave; q8: MV4_OCC3_STEPS_Q8, below):
 * short streams wait on their first loads and decode chains more than on
 * DRAM, so more warps help. On an H200 tinyllama's lossless decode went from
 * 899 to 967 tok/s (QKV, Wo, down and gate/up: 1-5 steps per warp, gate/up
 * counted by its gate rows, as the loop below counts a SiLU launch's one
 * tensor; with gate/up back at 2 blocks: 955; lm_head at 30 steps gains
 * nothing more; ncu confirms gate/up's 3 blocks: bench/results/
 * 2026-11-29-session13-h200.md), while llama2-7b lost with long streams
 * (all launches: 190 vs 201.5; its Wo at 7 steps: 200.3), which need the
 * deeper ring; raw, q8 and q4 lost 7%, 4% and 2% on tinyllama with 3 blocks
 * (bench/results/2026-11-29-session10-h200.md). Per kind, for short launches
 * only (session 11): q8 gains 1% with its QKV and Wo (2 and 1 steps per
 * warp) at 3 blocks (MV4_OCC3_STEPS_Q8); raw lost 6% and q4 4% with them,
 * and raw 14%, q4 8%, q8 2% at a bound of 6. Since the 3-blocks kernels no
 * longer spill (mv4_ring's LATE, session 16) raw gains 1.5% with them
 * (MV4_OCC3_STEPS_RAW), q4 still loses 1%, and a bound of 6 still loses
 * 4-7% for raw, q8 and q4. Lossless launches without SiLU take a bound of
 * their own (MV4_OCC3_STEPS_LL_PLAIN, session 17): tinyllama's down (5 steps
 * per warp, single rows) at 2 blocks, its QKV and Wo (2 and 1) still at 3,
 * gave lossless decode +1.4% (1161 -> 1177 tok/s on an H200); QKV at 2
 * blocks too lost that again (bench/results/2026-11-29-session17-h200.md).
 * VZ_CUDA_MV_OCC_ALT swaps the choice; VZ_CUDA_MV_OCC3_STEPS is a bench knob
 * for the bounds (one number: lossless's, both; four: raw,ll,q8,q4; five:
 * raw,ll,q8,q4,ll without SiLU; -1 never).
 * wide0: mv_multi allows a wider block (x fits it): at batch 2-8 that is
 * MV4_WIDE; at batch 1 this picks MV4_WIDE1 for the launches that would run
 * 2 blocks per SM, MV4_WIDE3 for raw's 3-blocks ones.
 * Sets a.blk; returns the block count, the kernel, its static shared
 * memory per block (with what the system reserves) and the blocks per SM
 * it is sized for. */
static vz_status mv4_plan(mv_args &a, const vz_cuda_tensor *const *W, int kind, int batch, int silu, bool wide0,
                          unsigned *blocks, mv_fn *f, size_t *blk_smem, int *per_sm, int *warps) {
    static int sms = 0;
    /* opt-in above 48 KiB done: [kind][batch - 1], 8: mv4_row1, 9 + pairs: mv4_occ3, 9 + batch: mv4_wide,
     * 18 + pairs: mv4_wide1, 20 + pairs: mv4_wide3, 22 + wide: mv4_keys, 24: mv4_fit1, 23 + batch: mv4_wide_row1 */
    static bool big_smem[8][32]; /* [VZ_K_Q4D], [VZ_K_Q8D], [VZ_K_LL4] too */
    static size_t stat_smem[8][32]; /* the kernel's static shared memory (+ the system's), known once big_smem is set */
    if (sms == 0) {
        int dev = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        VZ_FAIL_IF(e != cudaSuccess || sms < 1, VZ_ERR_CUDA, "cuda matvec: SM count: %s", cudaGetErrorString(e));
    }
    static int64_t row1_max = -2; /* the most rows of a launch that runs single rows; -1: the rule's */
    /* [kind], then [4] lossless without SiLU: 3 blocks per SM up to this many steps per warp; -1: never */
    static int64_t occ3_steps[5] = {MV4_OCC3_STEPS_RAW, MV4_OCC3_STEPS, MV4_OCC3_STEPS_Q8, -1, MV4_OCC3_STEPS_LL_PLAIN};
    if (row1_max == -2) { /* bench knobs (same bits); VZ_CUDA_MV_OCC3_STEPS: above */
        const char *e = getenv("VZ_CUDA_MV_ROW1_MAX"), *o = getenv("VZ_CUDA_MV_OCC3_STEPS");
        row1_max = e && *e >= '0' && *e <= '9' ? atoll(e) : -1;
        long long b[5];
        const int nb = o ? sscanf(o, "%lld,%lld,%lld,%lld,%lld", &b[0], &b[1], &b[2], &b[3], &b[4]) : 0;
        if (nb == 4) b[4] = b[1]; /* one bound for all lossless launches */
        if (nb == 1) occ3_steps[VZ_K_LL3] = occ3_steps[4] = b[0];
        else if (nb >= 4)
            for (int k = 0; k < 5; k++) occ3_steps[k] = b[k];
    }
    int64_t steps = 0, rows = 0; /* steps: row steps (1024 columns) per warp of a 2-block wave */
    for (int i = 0; i < a.ntens; i++) steps += W[i]->rows * ((W[i]->cols + 1023) / 1024), rows += W[i]->rows;
    steps /= 2 * sms * MV4_WARPS;
    static int wide1 = -1, wide3 = -1, fit_on = -1; /* bench knobs VZ_CUDA_MV_WIDE1 (MV4_WIDE1_KINDS), _WIDE3, _FIT */
    if (wide1 < 0) {
        const char *e1 = getenv("VZ_CUDA_MV_WIDE1"), *e3 = getenv("VZ_CUDA_MV_WIDE3"), *ef = getenv("VZ_CUDA_MV_FIT");
        wide1 = e1 && *e1 ? (int)strtol(e1, NULL, 0) & 127 : MV4_WIDE1_KINDS;
        wide3 = !(e3 && *e3 == '0');
        fit_on = !(ef && *ef == '0');
    }
    const bool alt = (mv_variant & VZ_CUDA_MV_OCC_ALT) != 0, dp = vz_k_dp(kind);
    /* packed4 lossless takes packed3's shapes: every other setting tried, and a ring a step shorter or
     * longer, was level or slower (bench/results/2026-12-03-session53-h200.md) */
    const int kp = kind == VZ_K_LL4 ? VZ_K_LL3 : kind;
    const bool occ3 = batch == 1 && !dp && (steps <= occ3_steps[kp == VZ_K_LL3 && !silu ? 4 : kp]) != alt;
    const bool wide = wide0 && !occ3 &&
                      (batch > 1 || ((wide1 >> kp & 1) && (kp != VZ_K_LL3 || steps >= MV4_WIDE1_STEPS_LL)));
    const bool occ3w = wide0 && occ3 && wide3 && kind == VZ_K_RAW_BF16; /* MV4_WIDE3 */
    const int64_t per = wide || occ3w ? 1 : occ3 ? 3 : 2; /* blocks per SM */
    int64_t wpb = occ3w ? MV4_WIDE3_WARPS : wide ? MV4_WIDE_WARPS : MV4_WARPS;
    const bool one = (batch == 1 || (wide && !dp)) && !silu && !(mv_variant & VZ_CUDA_MV_PAIRS) &&
                     rows <= (row1_max >= 0 ? row1_max : 3 * per * sms * wpb / 2);
    const bool fit = fit_on && wide && batch == 1 && !one && a.ntens == 1 && !a.keys &&
                     (kind == VZ_K_RAW_BF16 || kind == VZ_K_LL4) &&
                     mv4_fit(silu ? W[0]->rows : (W[0]->rows + 1) / 2, sms);
    if (fit) wpb = MV4_FIT_WARPS;
    int64_t units[3], total = 0;
    for (int i = 0; i < a.ntens; i++) total += units[i] = silu || one ? W[i]->rows : (W[i]->rows + 1) / 2;
    int64_t nblk = 0;
    for (int i = 0; i < a.ntens; i++) {
        a.blk[i] = (int)nblk;
        const int64_t most = (units[i] + wpb - 1) / wpb, share = units[i] * per * sms / total;
        nblk += share < 1 ? 1 : share < most ? share : most;
    }
    for (int i = a.ntens; i < 4; i++) a.blk[i] = (int)nblk;
    *blocks = (unsigned)nblk;
    const int d8 = kind == VZ_K_Q8D;
    if (dp)
        *f = wide ? (batch == 1 ? mv4d_wide1[d8][!one] : mv4d_wide[d8][batch - 2]) : one ? mv4d_row1[d8] : mv4d_table[d8][batch - 1];
    else
        *f = wide ? (batch == 1 ? mv4_wide1[!one][vz_k_row(kind)]
                                : one ? mv4_wide_row1[vz_k_row(kind)][batch - 2] : mv4_wide[vz_k_row(kind)][batch - 2])
             : occ3w ? mv4_wide3[!one] : occ3 ? mv4_occ3[!one][vz_k_row(kind)] : one ? mv4_row1[vz_k_row(kind)]
                                                                         : mv4_table[vz_k_row(kind)][batch - 1];
    int ki = wide ? (batch == 1 ? 18 + !one : one ? 23 + batch : 9 + batch) : occ3w ? 20 + !one : occ3 ? 9 + !one
                                                                                   : one ? 8 : batch - 1;
    if (fit) *f = mv4_fit1[kind == VZ_K_LL4], ki = 24;
    if (a.keys) { /* the head's keys: its kernel (pairs at batch 1, 2 blocks per SM or wide) with KEYS */
        if (batch == 1 && !one && !occ3 && !occ3w)
            *f = dp ? mv4d_keys[wide][d8] : mv4_keys[wide][vz_k_row(kind)], ki = 22 + wide;
        else
            a.keys = NULL;
    }
    if (!big_smem[kind][ki]) { /* static (lossless scratch) + dynamic may pass 48 KiB below 48 KiB of x */
        cudaError_t e = cudaFuncSetAttribute(*f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (wide ? mv4_xmax_wide() : MV4_XMAX) + MV4_XPAD);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec: shared memory limit: %s", cudaGetErrorString(e));
        cudaFuncAttributes fa;
        e = cudaFuncGetAttributes(&fa, *f);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec: kernel attributes: %s", cudaGetErrorString(e));
        stat_smem[kind][ki] = fa.sharedSizeBytes + vz_block_resv_smem();
        big_smem[kind][ki] = true;
    }
    *blk_smem = stat_smem[kind][ki], *per_sm = (int)per, *warps = (int)wpb;
    return VZ_OK;
}

static vz_status mv_check_args(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x, int batch,
                               int epi) {
    VZ_FAIL_IF(n < 1 || n > 3 || !W || !d_y || !d_x, VZ_ERR_ARG, "cuda matvec: %d tensors (1..3), NULL pointer", n);
    VZ_FAIL_IF(batch < 1 || batch > 8, VZ_ERR_ARG, "cuda matvec: batch %d not in 1..8", batch);
    VZ_FAIL_IF(epi < 0 || epi > VZ_CUDA_EPI_SILU_MUL, VZ_ERR_ARG, "cuda matvec: epilogue %d", epi);
    VZ_FAIL_IF(epi == VZ_CUDA_EPI_SILU_MUL && (n != 2 || W[0]->rows != W[1]->rows), VZ_ERR_ARG,
               "cuda matvec: silu*mul needs two tensors of equal rows");
    for (int i = 0; i < n; i++) {
        VZ_FAIL_IF(!W[i] || !W[i]->data || !d_y[i], VZ_ERR_ARG, "cuda matvec: tensor %d not uploaded or no output", i);
        VZ_FAIL_IF(W[i]->cols != W[0]->cols, VZ_ERR_SHAPE, "cuda matvec: tensor %d has %lld cols, tensor 0 %lld", i,
                   (long long)W[i]->cols, (long long)W[0]->cols);
        VZ_FAIL_IF(W[i]->rows > ((int64_t)1 << 36), VZ_ERR_SHAPE, "cuda matvec: %lld rows", (long long)W[i]->rows);
    }
    return VZ_OK;
}

/* vz_cuda_matvec_multi, with nw: of RMSNorm(x) (fused into v4's x staging,
 * else vz_k_rmsnorm into xb first); keys: vz_cuda_matvec_head's (epi NONE,
 * one tensor, batch 1), *keyed = 1 where a KEYS kernel wrote them. */
static vz_status mv_multi(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x, int batch, int epi,
                          const float *nw, float eps, float *d_xb, int late, cudaStream_t stream,
                          unsigned long long *keys = NULL, int *keyed = NULL) {
    if (keyed) *keyed = 0;
    VZ_TRY(mv_check_args(n, W, d_y, d_x, batch, epi));
    bool tc = true;
    for (int i = 0; i < n; i++) tc = tc && W[i]->tc;
    const auto kind_of = [](const vz_cuda_tensor *w) { return w->dp ? (w->kind == VZ_K_Q8 ? VZ_K_Q8D : VZ_K_Q4D) : w->kind; };
    int kind = kind_of(W[0]);
    for (int i = 0; i < 3; i++) {
        const vz_cuda_tensor *w = W[i < n ? i : 0];
        if (kind_of(w) != kind || w->tiled) kind = VZ_K_GENERIC; /* tiled: vz_group_any */
    }
    /* dp tensors run the v4 dot-product kernels at every batch and variant
     * (their sums are not the fmaf kernels'), which stage any x (mv4_stage) */
    const bool dp = vz_k_dp(kind);
    if (((uintptr_t)d_x & 15) != 0 && !dp) kind = VZ_K_GENERIC;
    const bool v4k = !tc && kind != VZ_K_GENERIC && (dp || (mv_variant & VZ_CUDA_MV_V4)); /* the v4 kernel's kinds */
    const size_t xrow = (size_t)W[0]->cols * 4;                                      /* bytes of one row of x */
    static int wide_mode = -1; /* VZ_CUDA_MV_WIDE (MV4_WIDE) */
    if (wide_mode < 0)
        wide_mode = getenv("VZ_CUDA_MV_WIDE") && *getenv("VZ_CUDA_MV_WIDE") ? atoi(getenv("VZ_CUDA_MV_WIDE")) : 2;
    const size_t xcap = wide_mode && mv4_xmax_wide() > MV4_XMAX ? mv4_xmax_wide() : MV4_XMAX;
    const int bc = (int)(xcap / xrow);
    if (v4k && bc >= (dp ? 1 : 2) && batch > bc) { /* x too large to stage: v4 launches of at most bc rows (MV4_BATCH_SPLIT) */
        const int nch = (batch + bc - 1) / bc, per = (batch + nch - 1) / nch;
        for (int b0 = 0; b0 < batch; b0 += per) {
            float *yc[3];
            for (int i = 0; i < n; i++) yc[i] = d_y[i] + (size_t)b0 * (size_t)W[i]->rows;
            VZ_TRY(mv_multi(n, W, yc, d_x + (size_t)b0 * W[0]->cols, batch - b0 < per ? batch - b0 : per, epi, nw,
                            eps, d_xb ? d_xb + (size_t)b0 * W[0]->cols : NULL, late, stream));
        }
        return VZ_OK;
    }
    /* wide: a batch's launch runs MV4_WIDE; at batch 1, mv4_plan may run a
     * wider block (MV4_WIDE1, MV4_WIDE3) where x fits both sizes */
    const bool wide = v4k && wide_mode &&
                      (batch > 1 ? (wide_mode == 2 || (size_t)batch * xrow > MV4_XMAX) &&
                                       (size_t)batch * xrow <= mv4_xmax_wide()
                                 : xrow <= MV4_XMAX && xrow <= mv4_xmax_wide());
    const bool v4 = v4k && ((size_t)batch * xrow <= MV4_XMAX || wide);
    VZ_FAIL_IF(dp && !v4, VZ_ERR_SHAPE, "cuda matvec: %lld columns too wide for the dot-product kernel",
               (long long)W[0]->cols); /* wt_dp keeps cols <= VZ_CUDA_DP_MAX_COLS */
    /* the norm on its own, then the plain matvec of its output (dp: where
     * the variant asks for no v4, as the fmaf kernels' norm runs then) */
    if (nw && (!v4 || (dp && !(mv_variant & VZ_CUDA_MV_V4)))) {
        VZ_FAIL_IF(!d_xb, VZ_ERR_ARG, "cuda matvec: fused norm needs a scratch buffer");
        vz_k_rmsnorm(d_x, d_xb, nw, batch, (int32_t)W[0]->cols, eps, stream);
        d_x = d_xb, nw = NULL;
    }
    if (tc) return vz_cuda_mv_tc(n, W, d_y, d_x, batch, epi, !(mv_variant & VZ_CUDA_MV_NO_PDL), late != 0, stream);
    mv_args a;
    memset(&a, 0, sizeof a);
    a.ntens = epi == VZ_CUDA_EPI_SILU_MUL ? 1 : n;
    a.batch = batch, a.epi = epi, a.x = d_x, a.nw = nw, a.eps = eps, a.late = late != 0;
    if (v4 && epi == VZ_CUDA_EPI_NONE && n == 1 && batch == 1) a.keys = keys; /* mv4_plan may clear it */
    int per_warp = epi == VZ_CUDA_EPI_SILU_MUL ? 1 : MV_SLOTS;
    int64_t blocks = 0;
    for (int i = 0; i < 3; i++) {
        a.w[i] = vz_cuda_view(W[i < n ? i : 0]);
        a.y[i] = d_y[i < n ? i : 0];
    }
    bool silu = epi == VZ_CUDA_EPI_SILU_MUL;
    if (v4) {
        unsigned nblk = 0;
        mv_fn f = NULL;
        size_t blk_smem = 0;
        int per = 0, warps = 0;
        VZ_TRY(mv4_plan(a, W, kind, batch, silu, wide, &nblk, &f, &blk_smem, &per, &warps));
        static int nws_on = -1; /* bench knob VZ_CUDA_NWS=0: the norm weights read after the norm (same bits) */
        if (nws_on < 0) nws_on = !(getenv("VZ_CUDA_NWS") && *getenv("VZ_CUDA_NWS") == '0');
        a.nws = nws_on && nw && batch == 1 && 2 * (size_t)W[0]->cols * 4 <= MV4_XMAX; /* the copy fits too */
        static int64_t pre1_cols = -2; /* bench knob VZ_CUDA_MV_PRE1_COLS (-1: never) */
        if (pre1_cols == -2) {
            const char *e = getenv("VZ_CUDA_MV_PRE1_COLS");
            pre1_cols = e && *e ? atoll(e) : MV4_PRE1_COLS_LL;
        }
        a.pre1 = vz_k_ll(kind) && a.nws && W[0]->cols <= pre1_cols; /* nws implies batch 1 */
        const size_t smem = (size_t)(batch + a.nws) * (size_t)W[0]->cols * 4 + MV4_XPAD;
#ifdef VZ_CUDA_TRACE
        a.tr = vz_trace_next('m', W[0]->rows, W[0]->cols, n, epi);
#endif
        /* the shared memory per SM of the planned blocks per SM (vz_decode_carveout) */
        const size_t sm_bytes = (size_t)per * (smem + blk_smem);
        cudaError_t e = mv_launch(f, true, nblk, warps * 32, smem, (cudaStream_t)stream, a, sm_bytes);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec v4 launch (%lldx%lld, batch %d): %s",
                   (long long)W[0]->rows, (long long)W[0]->cols, batch, cudaGetErrorString(e));
        if (keyed) *keyed = a.keys != NULL;
        return VZ_OK;
    }
    for (int i = 0; i < a.ntens; i++) {
        a.blk[i] = (int)blocks;
        blocks += (W[i]->rows + MV_WARPS * per_warp - 1) / (MV_WARPS * per_warp);
    }
    VZ_FAIL_IF(blocks > INT32_MAX / 2, VZ_ERR_SHAPE, "cuda matvec: %lld blocks", (long long)blocks);
    for (int i = a.ntens; i < 4; i++) a.blk[i] = (int)blocks;
    bool legacy = kind == VZ_K_GENERIC || (mv_variant & VZ_CUDA_MV_LEGACY);
    mv_fn f = kind == VZ_K_GENERIC ? mv_kernel<VZ_K_GENERIC, 8>
              : legacy             ? mv_table[vz_k_row(kind)][batch - 1]
              : batch == 1 && (mv_variant & VZ_CUDA_MV_OCC4) ? mv2_occ[vz_k_row(kind)]
                                   : mv2_table[vz_k_row(kind)][batch - 1];
    cudaError_t e = mv_launch(f, kind != VZ_K_GENERIC, (unsigned)blocks, MV_WARPS * 32, 0, (cudaStream_t)stream, a);
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec launch (%lldx%lld, batch %d): %s", (long long)W[0]->rows,
               (long long)W[0]->cols, batch, cudaGetErrorString(e));
    return VZ_OK;
}

extern "C" vz_status vz_cuda_matvec_multi(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x,
                                          int batch, int epi, void *stream) {
    return mv_multi(n, W, d_y, d_x, batch, epi, NULL, 0.0f, NULL, 0, (cudaStream_t)stream);
}

extern "C" vz_status vz_cuda_matvec_multi_norm(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x,
                                               int batch, int epi, const float *nw, float eps, float *d_xb,
                                               int late, void *stream) {
    VZ_FAIL_IF(!nw || !d_xb, VZ_ERR_ARG, "cuda matvec: norm weights and scratch needed");
    return mv_multi(n, W, d_y, d_x, batch, epi, nw, eps, d_xb, late, (cudaStream_t)stream);
}

extern "C" vz_status vz_cuda_matvec_head(const vz_cuda_tensor *W, float *d_y, const float *d_x, int batch,
                                        const float *nw, float eps, float *d_xb, unsigned long long *keys, int *keyed,
                                        void *stream) {
    VZ_FAIL_IF(!nw || !d_xb || !keys || !keyed, VZ_ERR_ARG, "cuda head matvec: norm weights, scratch and keys needed");
    return mv_multi(1, &W, &d_y, d_x, batch, VZ_CUDA_EPI_NONE, nw, eps, d_xb, 0, (cudaStream_t)stream, keys, keyed);
}

extern "C" vz_status vz_cuda_matvec(float *d_y, const float *d_x, int batch, const vz_cuda_tensor *W, void *stream) {
    return vz_cuda_matvec_multi(1, &W, &d_y, d_x, batch, VZ_CUDA_EPI_NONE, stream);
}

/* One warp per output row: the same group decoder, then a plain store.
 * KIND (decode.cuh) other than VZ_K_GENERIC: the fast decoder, both groups
 * of a lane's loads in flight at once (the next one's issued before this
 * one's decode), and float4 stores (16-byte aligned out, cols % 32 == 0:
 * rows_launch). With the generic path's 32 loads and 32 scalar stores per
 * group, a decode step's lookup of one tinyllama row took 10.5 us after its
 * wait on an H200, 1.5 us with this: tinyllama decode raw +1.9%, lossless
 * +3.1%, q8 +3.4%, q4 +3.2%, the same logits (bench/results/
 * 2026-12-01-session38-h200.md, run 5). The PDL trigger and wait
 * come first (no-ops in a plain launch): in a decode step
 * (vz_cuda_rows_step) the sampler before it wrote ids, and the QKV matvec
 * after it may start its weight loads at once. */
template <int KIND>
static __global__ void __launch_bounds__(MV_WARPS * 32) mv_rows_kernel(float *out, const int32_t *ids, int n,
                                                                        vz_dview d, vz_trace_arg tr) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    const unsigned long long tr_t0 = vz_trace_now();
    vz_pdl_enter();
    const unsigned long long tr_tw = vz_trace_now();
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int i = blockIdx.x * MV_WARPS + warp;
    if (i >= n) return;
    int64_t r = ids[i];
    bool ok = r >= 0 && r < d.rows;
    int nit = (d.gpr + 31) / 32;
    vz_gst cur, nxt;
    if (KIND != VZ_K_GENERIC) mv_load<KIND>(d, ok ? r : 0, 0, lane, cur);
    for (int it = 0; it < nit; it++) {
        float w[32];
        int64_t c0 = 32 * (int64_t)(it * 32 + lane);
        if (KIND == VZ_K_GENERIC) {
            vz_group_any(d, ok ? r : 0, it, lane, smem[warp], w);
#pragma unroll
            for (int e = 0; e < 32; e++)
                if (c0 + e < d.cols) out[(size_t)i * d.cols + c0 + e] = ok ? w[e] : __int_as_float(0x7fc00000);
            continue;
        }
        if (it + 1 < nit) mv_load<KIND>(d, ok ? r : 0, it + 1, lane, nxt);
        float sc = 1.0f;
        mv_decode<KIND>(d, cur, lane, smem[warp], w, sc);
        if (vz_k_q8(KIND) || vz_k_q4(KIND)) /* the codes times 1, then the scale: vz_q*_decode's bits */
#pragma unroll
            for (int e = 0; e < 32; e++) w[e] *= sc;
        if (it + 1 < nit) cur = nxt;
        if (c0 < d.cols) {
            float4 *o = (float4 *)(out + (size_t)i * d.cols + c0);
            const float nan = __int_as_float(0x7fc00000);
#pragma unroll
            for (int q = 0; q < 8; q++)
                o[q] = ok ? make_float4(w[4 * q], w[4 * q + 1], w[4 * q + 2], w[4 * q + 3])
                          : make_float4(nan, nan, nan, nan);
        }
    }
    if (lane == 0) vz_trace_put(tr, tr_t0, tr_tw, blockIdx.x << 8 | warp, blockIdx.x * MV_WARPS + warp);
}

/* step: 0 a plain launch, else vz_launch_pdl with the carveout of a decode step of that batch. */
static vz_status rows_launch(float *d_out, const int32_t *d_ids, int n, const vz_cuda_tensor *W, int step,
                             void *stream) {
    VZ_FAIL_IF(!W || !W->data || !d_out || !d_ids || n < 0, VZ_ERR_ARG, "cuda rows: bad arguments");
    if (n == 0) return VZ_OK;
    const unsigned blocks = (unsigned)((n + MV_WARPS - 1) / MV_WARPS);
    const int kind = W->tiled || ((uintptr_t)d_out & 15) || (W->kind > VZ_K_GENERIC && W->kind != VZ_K_LL4)
                         ? VZ_K_GENERIC
                         : W->kind;
    static void (*const kern[5])(float *, const int32_t *, int, vz_dview, vz_trace_arg) = {
        mv_rows_kernel<VZ_K_RAW_BF16>, mv_rows_kernel<VZ_K_LL3>, mv_rows_kernel<VZ_K_Q8>, mv_rows_kernel<VZ_K_Q4>,
        mv_rows_kernel<VZ_K_LL4>}; /* [vz_k_row(kind)]; the generic kind's below */
    void (*const f)(float *, const int32_t *, int, vz_dview, vz_trace_arg) =
        kind == VZ_K_GENERIC ? mv_rows_kernel<VZ_K_GENERIC> : kern[vz_k_row(kind)];
    const vz_trace_arg tr = vz_trace_next('e', n, W->cols, 1, 0);
    if (step) vz_launch_pdl(f, dim3(blocks), dim3(MV_WARPS * 32), 0, (cudaStream_t)stream, step, 0, d_out, d_ids, n,
                            vz_cuda_view(W), tr);
    else f<<<blocks, MV_WARPS * 32, 0, (cudaStream_t)stream>>>(d_out, d_ids, n, vz_cuda_view(W), tr);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda rows launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}

extern "C" vz_status vz_cuda_rows(float *d_out, const int32_t *d_ids, int n, const vz_cuda_tensor *W, void *stream) {
    return rows_launch(d_out, d_ids, n, W, 0, stream);
}

extern "C" vz_status vz_cuda_rows_step(float *d_out, const int32_t *d_ids, int B, const vz_cuda_tensor *W,
                                       void *stream) {
    VZ_FAIL_IF(B < 1 || B > 8, VZ_ERR_ARG, "cuda rows: decode step of %d rows (1..8)", B);
    return rows_launch(d_out, d_ids, B, W, B, stream);
}
