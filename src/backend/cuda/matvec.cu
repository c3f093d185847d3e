/*
 * matvec.cu - fused decode + matvec on compressed weights: y = W x for a
 * batch of 1..8 inputs, W decoded in registers by the codec's one decoder
 * (decode.cuh). CPU reference: the codec's decode_ref, then a double sum;
 * tolerance and bitwise raw == lossless checks in tests/test_cuda_matvec.c.
 * Bench: $BUILD/bench/matvec_bench (bench/gpu_matvec.sh on a GPU machine).
 *
 * Accumulation order (the same in every kernel, which is what makes raw and
 * lossless bit-identical): a warp owns a row; in iteration it lane l owns
 * code group g = 32*it + l; per (row, input) one f32 accumulator per lane,
 * fmaf over the group's elements in order, groups in order; then an
 * xor-butterfly (16, 8, 4, 2, 1) and lane 0's value.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"

extern "C" {
#include "core/status.h"
}

#define MV_WARPS 4 /* warps per block */
#define MV_SLOTS 2 /* rows per warp (x reuse, loads in flight) */

struct mv_args {
    vz_dview w[3];
    float *y[3];
    const float *x;
    int blk[4]; /* first block of each tensor; blk[ntens] = grid */
    int ntens, batch, epi;
};

vz_dview vz_cuda_view(const vz_cuda_tensor *t); /* cuda_weights.cu */

/* The two stages of the fast decoders (decode.cuh), by path KIND. */
template <int KIND>
static __device__ __forceinline__ void mv_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_load(d, r, it, lane, st);
    else if (KIND == VZ_K_LL3) vz_ll3_load(d, r, it, lane, st);
    else if (KIND == VZ_K_Q8) vz_q8_load(d, r, it, lane, st);
}

template <int KIND>
static __device__ __forceinline__ void mv_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                 float w[32]) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode(st, w);
    else if (KIND == VZ_K_LL3) vz_ll3_decode(d, st, lane, sm, w);
    else if (KIND == VZ_K_Q8) vz_q8_decode(st, w);
}

static __device__ __forceinline__ vz_dview mv_pick(const mv_args &a, int t) {
    return t == 0 ? a.w[0] : t == 1 ? a.w[1] : a.w[2];
}

/* Programmatic dependent launch (Hopper): wait = the previous grid finished
 * and its writes are visible (a no-op without the launch attribute); trigger
 * = the next grid may be scheduled. Before wait a kernel reads only weights. */
static __device__ __forceinline__ void mv_pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
static __device__ __forceinline__ void mv_pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

/* One warp: MV_SLOTS rows (consecutive rows of one tensor, or gate row +
 * up row for SILU_MUL). B: batch bound (compile time); nb: actual batch. */
template <int KIND, int B>
static __global__ void __launch_bounds__(MV_WARPS * 32) mv_kernel(mv_args a) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    mv_pdl_trigger(); /* PDL (mv_launch): the next kernel may start its weight loads now */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t = 0;
    while (t + 1 < a.ntens && (int)blockIdx.x >= a.blk[t + 1]) t++;
    bool silu = a.epi == VZ_CUDA_EPI_SILU_MUL;
    int64_t wi = (int64_t)(blockIdx.x - a.blk[t]) * MV_WARPS + warp;
    vz_dview d[MV_SLOTS];
    int64_t r[MV_SLOTS];
    d[0] = mv_pick(a, t);
    d[1] = silu ? mv_pick(a, 1) : d[0];
    r[0] = silu ? wi : wi * 2;
    r[1] = silu ? wi : wi * 2 + 1;
    if (r[0] >= d[0].rows) { /* warp-uniform; waits, so completion implies the previous grid's */
        mv_pdl_wait();
        return;
    }
    bool v1 = r[1] < d[1].rows;
    if (!v1) r[1] = r[0], d[1] = d[0];
    int nb = B < a.batch ? B : a.batch;
    float acc[MV_SLOTS][B];
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
    int nit = (d[0].gpr + 31) / 32;
    int64_t cols = d[0].cols;
    vz_gst cur[MV_SLOTS], nxt[MV_SLOTS];
    if (KIND != VZ_K_GENERIC)
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) mv_load<KIND>(d[s], r[s], 0, lane, cur[s]);
    for (int it = 0; it < nit; it++) {
        float w[MV_SLOTS][32];
        if (KIND != VZ_K_GENERIC && it + 1 < nit) /* prefetch: next group's bytes in flight during this one's math */
#pragma unroll
            for (int s = 0; s < MV_SLOTS; s++) mv_load<KIND>(d[s], r[s], it + 1, lane, nxt[s]);
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) {
            if (KIND == VZ_K_GENERIC) vz_group_any(d[s], r[s], it, lane, smem[warp], w[s]);
            else mv_decode<KIND>(d[s], cur[s], lane, smem[warp], w[s]);
            if (KIND != VZ_K_GENERIC) cur[s] = nxt[s];
        }
        if (it == 0) mv_pdl_wait(); /* x and y only from here on; weights before */
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
            for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
                for (int e = 0; e < 32; e++)
                    if (KIND != VZ_K_GENERIC || e < ne) acc[s][b] = fmaf(w[s][e], xv[e], acc[s][b]);
        }
    }
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
            a.y[0][(size_t)b * d[0].rows + r[0]] = g / (1.0f + expf(-g)) * acc[1][b];
            continue;
        }
        float *y = t == 0 ? a.y[0] : t == 1 ? a.y[1] : a.y[2];
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) {
            if (s == 1 && !v1) break;
            size_t i = (size_t)b * d[0].rows + r[s];
            y[i] = a.epi == VZ_CUDA_EPI_ADD ? y[i] + acc[s][b] : acc[s][b];
        }
    }
}

/* ---- v2: packed decode, deeper prefetch, programmatic dependent launch ----
 * Stage order per warp: loads of groups 0 and 1 issued, group 0 decoded (all
 * of it reads only weights, which no kernel writes), THEN griddepcontrol.wait
 * (the previous kernel's outputs, x and y, are complete and visible), then
 * per iteration: fmaf with the decoded group, issue loads of group it + 2,
 * decode group it + 1. With the PDL launch attribute the pre-wait part
 * overlaps the previous kernel; without it, wait is a no-op. The fmaf order
 * is the one above, so results equal mv_kernel's bitwise. */

template <int KIND>
static __device__ __forceinline__ void mv2_load(const vz_dview &d, int64_t r, int it, int lane, uint32_t ei,
                                                vz_gst &st) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_load(d, r, it, lane, st);
    else if (KIND == VZ_K_LL3) vz_ll3_load2(d, r, it, lane, ei, st);
    else vz_q8_load(d, r, it, lane, st);
}

template <int KIND>
static __device__ __forceinline__ void mv2_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                  vz_pk &k) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode2(st, k);
    else if (KIND == VZ_K_LL3) vz_ll3_decode2(d, st, lane, sm, k);
    else vz_q8_decode2(st, k);
}

template <int KIND, int B, int MINB>
static __global__ void __launch_bounds__(MV_WARPS * 32, MINB) mv2_kernel(mv_args a) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    mv_pdl_trigger(); /* the next kernel may start its weight loads now */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int t = 0;
    while (t + 1 < a.ntens && (int)blockIdx.x >= a.blk[t + 1]) t++;
    bool silu = a.epi == VZ_CUDA_EPI_SILU_MUL;
    int64_t wi = (int64_t)(blockIdx.x - a.blk[t]) * MV_WARPS + warp;
    vz_dview d[MV_SLOTS];
    int64_t r[MV_SLOTS];
    d[0] = mv_pick(a, t);
    d[1] = silu ? mv_pick(a, 1) : d[0];
    r[0] = silu ? wi : wi * 2;
    r[1] = silu ? wi : wi * 2 + 1;
    if (r[0] >= d[0].rows) { /* warp-uniform; still waits, so completion implies the previous grid's */
        mv_pdl_wait();
        return;
    }
    bool v1 = r[1] < d[1].rows;
    if (!v1) r[1] = r[0], d[1] = d[0];
    int nb = B < a.batch ? B : a.batch;
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
    mv_pdl_wait();
    float acc[MV_SLOTS][B];
#pragma unroll
    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
        for (int b = 0; b < B; b++) acc[s][b] = 0.0f;
    for (int it = 0; it < nit; it++) {
        int64_t c0 = 32 * (int64_t)(it * 32 + lane);
        if (c0 < cols) {
#pragma unroll
            for (int b = 0; b < B; b++) {
                if (b >= nb) break;
                const float4 *xp = (const float4 *)(a.x + (size_t)b * cols + c0);
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    float4 f = __ldg(xp + q);
                    float xv[4] = {f.x, f.y, f.z, f.w};
#pragma unroll
                    for (int s = 0; s < MV_SLOTS; s++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            acc[s][b] = fmaf(vz_pk_elem<KIND>(pk[s], 4 * q + e), xv[e], acc[s][b]);
                }
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
            a.y[0][(size_t)b * d[0].rows + r[0]] = g / (1.0f + expf(-g)) * acc[1][b];
            continue;
        }
        float *y = t == 0 ? a.y[0] : t == 1 ? a.y[1] : a.y[2];
#pragma unroll
        for (int s = 0; s < MV_SLOTS; s++) {
            if (s == 1 && !v1) break;
            size_t i = (size_t)b * d[0].rows + r[s];
            y[i] = a.epi == VZ_CUDA_EPI_ADD ? y[i] + acc[s][b] : acc[s][b];
        }
    }
}

typedef void (*mv_fn)(mv_args);

/* Kernel table: [kind][batch-1]; the generic kind runs every batch with B = 8. */
#define MV_ROW(K) {mv_kernel<K, 1>, mv_kernel<K, 2>, mv_kernel<K, 3>, mv_kernel<K, 4>, \
                   mv_kernel<K, 5>, mv_kernel<K, 6>, mv_kernel<K, 7>, mv_kernel<K, 8>}
static const mv_fn mv_table[3][8] = {MV_ROW(VZ_K_RAW_BF16), MV_ROW(VZ_K_LL3), MV_ROW(VZ_K_Q8)};
#define MV2_ROW(K) {mv2_kernel<K, 1, 1>, mv2_kernel<K, 2, 1>, mv2_kernel<K, 3, 1>, mv2_kernel<K, 4, 1>, \
                    mv2_kernel<K, 5, 1>, mv2_kernel<K, 6, 1>, mv2_kernel<K, 7, 1>, mv2_kernel<K, 8, 1>}
static const mv_fn mv2_table[3][8] = {MV2_ROW(VZ_K_RAW_BF16), MV2_ROW(VZ_K_LL3), MV2_ROW(VZ_K_Q8)};
/* batch 1 with a register cap of 4 blocks per SM */
static const mv_fn mv2_occ[3] = {mv2_kernel<VZ_K_RAW_BF16, 1, 4>, mv2_kernel<VZ_K_LL3, 1, 4>,
                                 mv2_kernel<VZ_K_Q8, 1, 4>};

/* VZ_CUDA_MV_* flags (vz_cuda_matvec_variant). Default: the first kernel, plain launch - measured
 * best or equal for lossless (bench/results/2026-11-28-matvec-v2-h200.md, -v3-h200.md: it is
 * L1/TEX-throughput bound, so a cp.async pipeline of the weights (v3) lost and was deleted). */
static int mv_variant = VZ_CUDA_MV_LEGACY | VZ_CUDA_MV_NO_PDL;

extern "C" int vz_cuda_matvec_variant(int flags) {
    int old = mv_variant;
    if (flags >= 0) mv_variant = flags & 7;
    return old;
}

/* Fast kinds run mv2_kernel, launched with programmatic stream serialization
 * (PDL) unless VZ_CUDA_MV_NO_PDL; a runtime that refuses the attribute gets a
 * plain launch. */
static cudaError_t mv_launch(mv_fn f, bool fast, unsigned blocks, cudaStream_t st, const mv_args &a) {
    if (!fast || (mv_variant & VZ_CUDA_MV_NO_PDL)) {
        f<<<blocks, MV_WARPS * 32, 0, st>>>(a);
        return cudaGetLastError();
    }
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(blocks), cfg.blockDim = dim3(MV_WARPS * 32), cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, f, a);
    if (e == cudaErrorNotSupported || e == cudaErrorInvalidValue) {
        cudaGetLastError();
        f<<<blocks, MV_WARPS * 32, 0, st>>>(a);
        return cudaGetLastError();
    }
    return e != cudaSuccess ? e : cudaGetLastError();
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

extern "C" vz_status vz_cuda_matvec_multi(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x,
                                          int batch, int epi, void *stream) {
    VZ_TRY(mv_check_args(n, W, d_y, d_x, batch, epi));
    mv_args a;
    a.ntens = epi == VZ_CUDA_EPI_SILU_MUL ? 1 : n;
    a.batch = batch, a.epi = epi, a.x = d_x;
    int kind = W[0]->kind, per_warp = epi == VZ_CUDA_EPI_SILU_MUL ? 1 : MV_SLOTS;
    int64_t blocks = 0;
    for (int i = 0; i < 3; i++) {
        a.w[i] = vz_cuda_view(W[i < n ? i : 0]);
        a.y[i] = d_y[i < n ? i : 0];
        if (W[i < n ? i : 0]->kind != kind) kind = VZ_K_GENERIC;
    }
    if (((uintptr_t)d_x & 15) != 0) kind = VZ_K_GENERIC;
    for (int i = 0; i < a.ntens; i++) {
        a.blk[i] = (int)blocks;
        blocks += (W[i]->rows + MV_WARPS * per_warp - 1) / (MV_WARPS * per_warp);
    }
    VZ_FAIL_IF(blocks > INT32_MAX / 2, VZ_ERR_SHAPE, "cuda matvec: %lld blocks", (long long)blocks);
    for (int i = a.ntens; i < 4; i++) a.blk[i] = (int)blocks;
    bool legacy = kind == VZ_K_GENERIC || (mv_variant & VZ_CUDA_MV_LEGACY);
    mv_fn f = kind == VZ_K_GENERIC ? mv_kernel<VZ_K_GENERIC, 8>
              : legacy             ? mv_table[kind][batch - 1]
              : batch == 1 && (mv_variant & VZ_CUDA_MV_OCC4) ? mv2_occ[kind]
                                   : mv2_table[kind][batch - 1];
    cudaError_t e = mv_launch(f, kind != VZ_K_GENERIC, (unsigned)blocks, (cudaStream_t)stream, a);
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec launch (%lldx%lld, batch %d): %s", (long long)W[0]->rows,
               (long long)W[0]->cols, batch, cudaGetErrorString(e));
    return VZ_OK;
}

extern "C" vz_status vz_cuda_matvec(float *d_y, const float *d_x, int batch, const vz_cuda_tensor *W, void *stream) {
    return vz_cuda_matvec_multi(1, &W, &d_y, d_x, batch, VZ_CUDA_EPI_NONE, stream);
}

/* One warp per output row: the same group decoder, then a plain store. */
static __global__ void __launch_bounds__(MV_WARPS * 32) mv_rows_kernel(float *out, const int32_t *ids, int n,
                                                                        vz_dview d) {
    __shared__ __align__(16) uint32_t smem[MV_WARPS][32 * VZ_SMEM_LANE];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int i = blockIdx.x * MV_WARPS + warp;
    if (i >= n) return;
    int64_t r = ids[i];
    bool ok = r >= 0 && r < d.rows;
    int nit = (d.gpr + 31) / 32;
    for (int it = 0; it < nit; it++) {
        float w[32];
        vz_group_any(d, ok ? r : 0, it, lane, smem[warp], w);
        int64_t c0 = 32 * (int64_t)(it * 32 + lane);
#pragma unroll
        for (int e = 0; e < 32; e++)
            if (c0 + e < d.cols) out[(size_t)i * d.cols + c0 + e] = ok ? w[e] : __int_as_float(0x7fc00000);
    }
}

extern "C" vz_status vz_cuda_rows(float *d_out, const int32_t *d_ids, int n, const vz_cuda_tensor *W, void *stream) {
    VZ_FAIL_IF(!W || !W->data || !d_out || !d_ids || n < 0, VZ_ERR_ARG, "cuda rows: bad arguments");
    if (n == 0) return VZ_OK;
    mv_rows_kernel<<<(unsigned)((n + MV_WARPS - 1) / MV_WARPS), MV_WARPS * 32, 0, (cudaStream_t)stream>>>(
        d_out, d_ids, n, vz_cuda_view(W));
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda rows launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}
