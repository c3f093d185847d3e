/*
 * matvec.cuh - what the two fused matvec families share: programmatic
 * dependent launch (PDL) on the device and at launch, the tensors of one
 * launch (mv_set), and the tensor-core family's entry point (matvec_tc.cu),
 * dispatched from matvec.cu.
 * Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_MATVEC_CUH
#define VZ_BACKEND_CUDA_MATVEC_CUH

#include <cuda_runtime.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"

extern "C" {
#include "core/status.h"
}

/* Programmatic dependent launch (Hopper): wait = the previous grid finished
 * and its writes are visible (a no-op without the launch attribute); trigger
 * = the next grid may be scheduled. Before wait a kernel reads only weights. */
static __device__ __forceinline__ void mv_pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
static __device__ __forceinline__ void mv_pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
/* The opening of a kernel that reads nothing before the previous grid is
 * done (forward.cu's and prefill.cu's): let the next grid launch once all
 * our blocks run, then wait for the previous one. */
static __device__ __forceinline__ void vz_pdl_enter() {
    mv_pdl_trigger();
    mv_pdl_wait();
}

/* RMSNorm's scale 1 / sqrt(mean(x^2) + eps) of a row of dim floats, in
 * the norm's one order, so that every kernel that computes it gives the
 * same bits (vz_k_rmsnorm, the fused norm of the v4 matvec):
 * - VZ_RMS_THREADS parts: part p (thread p of the block) sums in double,
 *   by fma, the elements of the row's float4s q = p, p + 256, ..., each
 *   float4's four in order (a last partial float4 padded with zeros, which
 *   add nothing): vz_rms_part;
 * - an xor-butterfly over each warp's 32 parts (vz_rms_publish);
 * - the 8 warps' sums as ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)),
 *   then (float)rsqrt(S * (1 / dim) + eps) in double (vz_rms_scale).
 * A part thread sums the float4s it copied itself, so the sums need no
 * barrier before them, and every thread that normalizes computes the scale
 * from the 8 warp sums itself: one barrier between the copy of x and its
 * normalized form, where the order before (a part per warp over the
 * elements 32w + l + 256j, then one thread's scale) took three. On an H200
 * (bench/results/2026-12-02-session44-h200.md) a one-block probe timed
 * that form's norm at ~1400 cycles after the copy of a 2048-float x and
 * this one at ~900; tinyllama decode went raw +1.6%, lossless +0.9%, q8
 * +0.2%, q4 +1.2%, llama2-7b +0.6-0.7%. Its logits there were byte for byte
 * those of the form before: a double sum in another order rounds to the
 * same float scale but in rare cases, so that is not promised. */
#define VZ_RMS_THREADS 256
struct vz_rms_smem {
    double part[8 * (VZ_RMS_THREADS / 32)]; /* [row][warp] */
};

/* Part p of a row of c4 float4s (float4 q = at4(q)). */
template <typename F4>
static __device__ __forceinline__ double vz_rms_part(F4 at4, int p, int c4) {
    double ss = 0.0;
#pragma unroll 4
    for (int q = p; q < c4; q += VZ_RMS_THREADS) {
        const float4 v = at4(q);
        ss = fma((double)v.x, (double)v.x, ss);
        ss = fma((double)v.y, (double)v.y, ss);
        ss = fma((double)v.z, (double)v.z, ss);
        ss = fma((double)v.w, (double)v.w, ss);
    }
    return ss;
}

/* The warp's sum of its 32 parts of row b into m->part[8 b + warp] (lane 0). */
static __device__ __forceinline__ void vz_rms_publish(double ss, int b, vz_rms_smem *m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) m->part[8 * b + (threadIdx.x >> 5)] = ss;
}

/* The scale of row b from its 8 warp sums (after the barrier that follows
 * vz_rms_publish); inv_dim = 1.0 / dim. */
static __device__ __forceinline__ float vz_rms_scale(const vz_rms_smem *m, int b, double inv_dim, float eps) {
    const double *s = m->part + 8 * b;
    const double S = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    return (float)rsqrt(fma(S, inv_dim, (double)eps));
}

/* Order-preserving unsigned key of a float (NaN sorts above +Inf; the
 * sampler never sees NaN logits from a finite model). */
static __device__ __forceinline__ uint32_t vz_fkey(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Greedy key of logit v at row r: vz_fkey(v) (both zeros as +0, so equal
 * logits tie) over the complement of r, so that the largest key is the
 * largest logit at its lowest row, what the sampler's scan (strict > in
 * row order) picks; 0 (never a key) for NaN and -inf, which that scan
 * never picks either. */
static __device__ __forceinline__ unsigned long long vz_greedy_key(float v, uint32_t r) {
    if (!(v > -INFINITY)) return 0ull;
    return (unsigned long long)vz_fkey(v == 0.0f ? 0.0f : v) << 32 | (uint32_t)~r;
}

/* The row and the logit of a greedy key k != 0: vz_greedy_key's inverse
 * (the logit's -0 comes back as +0). */
static __device__ __forceinline__ int32_t vz_greedy_row(unsigned long long k) { return (int32_t)~(uint32_t)k; }
static __device__ __forceinline__ float vz_greedy_logit(unsigned long long k) {
    const uint32_t u = (uint32_t)(k >> 32);
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

/* The tensors of one multi-matvec launch, as both families take them: up
 * to 3 tensors of equal cols side by side (unused slots repeat tensor 0),
 * blk[t] the first block of tensor t (blk[ntens] = the grid), y[t] its
 * output, x the input rows. Each family's argument struct extends it. */
struct mv_set {
    vz_dview w[3];
    float *y[3];
    const float *x;
    int blk[4];
    int ntens, epi;
    unsigned long long *keys; /* the KEYS kernels' greedy keys (vz_cuda_matvec_head) */
    int late; /* PDL trigger after the wait (trigger_early, wait below) */
    /* The tensor this block works on. */
    __device__ __forceinline__ int tensor() const {
        int t = 0;
        while (t + 1 < ntens && (int)blockIdx.x >= blk[t + 1]) t++;
        return t;
    }
    /* PDL: trigger_early() first thing, wait() before x or y is touched.
     * Early, the next grid launches at once and overlaps this one's weight
     * loads. With late the trigger follows the wait: when the next grid
     * launches, this grid has passed its wait, so every grid before it has
     * completed, and the next grid may read their outputs (not this one's)
     * before its own wait (the decode attention reads positions and cached
     * K/V rows: forward.cu). A block that exits without either triggers. */
    __device__ __forceinline__ void trigger_early() const {
        if (!late) mv_pdl_trigger();
    }
    __device__ __forceinline__ void wait() const {
        mv_pdl_wait();
        if (late) mv_pdl_trigger();
    }
    /* w[t] and y[t] by constant indices only (a dynamic index would copy w to local memory). */
    __device__ __forceinline__ vz_dview pick(int t) const { return t == 0 ? w[0] : t == 1 ? w[1] : w[2]; }
    __device__ __forceinline__ float *out(int t) const { return t == 0 ? y[0] : t == 1 ? y[1] : y[2]; }
};

/* The shared memory carveout (percent of an SM's largest) that every PDL
 * launch of a decode step of `batch` rows asks for, or -1 (the driver's
 * choice). One carveout for the whole step: a launch whose preferred
 * L1/shared split differs from the one before cannot put blocks on an SM
 * until that SM has drained and changed it. The step's split is 196 KiB of
 * shared memory per SM (60 KiB of L1 left on an H100/H200). The driver
 * rounds a percent up to the next size the SM supports (sm_90: 0, 8, 16,
 * 32, 64, 100, 132, 164, 196, 228 KiB), so the percent asked is the
 * smallest above the size below, VZ_DECODE_SMEM_BELOW_KIB: 72 on an
 * H100/H200. (Session 19 took its 72% for 164 KiB; a lossless matvec that
 * needs 176 KiB per SM keeps two blocks per SM under it, and 85% timed
 * within 0.5%: bench/results/2026-11-30-session20-h200.md.)
 * On an H200 this made tinyllama's decode 0.2-2.0% faster (raw 1228 -> 1253
 * tok/s) and llama2-7b's no slower; 132, 164 and 228 KiB were slower on one
 * model or both (session 19's sweep: bench/results/2026-11-29-session19-h200.md,
 * whose 44/58/72/86-100% gave these sizes). Batched steps (2-8 rows) take
 * the same: against the driver's choice, tinyllama and llama2-7b decode
 * 0.5% slower to 3.3% faster at 2, 4 and 8 sequences (llama2-7b lossless at
 * 2: 394.0 -> 406.9 tok/s), 228 KiB lost up to 5%.
 * sm_bytes: the shared memory per SM that the launch needs for the blocks
 * per SM it was sized for (0: any); a launch needing more than its step's
 * split (a v4 matvec of more than 98 KiB per block at 2 blocks per SM:
 * lossless x of more than ~21 500 columns, with its 12.8 KiB of scratch;
 * raw x at batch 1 stays below, MV4_XMAX) gets the largest carveout
 * instead, so that it keeps its two blocks per SM (on an H200 a lossless
 * 3040x22016 matvec then ran 56.5 instead of 73.6 us).
 * VZ_CUDA_CARVEOUT, VZ_CUDA_CARVEOUT_BATCH (bench knobs, batch 1 and
 * 2-8): a percent, or -1 for the driver's choice. matvec.cu. */
#define VZ_DECODE_SMEM_BELOW_KIB 164 /* the sm_90 size below the decode step's 196 KiB */
int vz_decode_carveout(int batch, size_t sm_bytes);
/* The shared memory per SM that a decode step of `batch` rows has at its
 * carveout (196 KiB on an H100/H200); 0 where the driver chooses. */
size_t vz_decode_smem(int batch);
/* The shared memory the system reserves per block (cudaDevAttrReserved-
 * SharedMemoryPerBlock, read once; 1 KiB, as on sm_80..sm_90, where the
 * query fails): a block takes its own plus this. */
size_t vz_block_resv_smem(void);

/* Appends the carveout attribute of vz_decode_carveout(batch, sm_bytes) to
 * at[0..n) unless that is the driver's choice or batch < 1 (not a decode
 * step: prefill.cu); returns the new count. */
static inline unsigned vz_carveout_attr(cudaLaunchAttribute *at, unsigned n, int batch, size_t sm_bytes) {
    if (batch < 1) return n;
    const int carve = vz_decode_carveout(batch, sm_bytes);
    if (carve < 0) return n;
    at[n].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
    at[n].val.sharedMemCarveout = (unsigned)carve;
    return n + 1;
}

/* f<<<grid, block, shm, st>>>(args...) with programmatic stream
 * serialization and the carveout of a decode step of `batch` rows
 * (vz_carveout_attr; none for batch 0); a runtime that refuses the
 * carveout gets the launch without it, one that refuses PDL a plain launch
 * (the kernels' wait is then a no-op). Returns the launch's error and leaves it pending (as a
 * <<<>>> launch does), so a caller that ignores the result still sees it
 * at its next check. */
template <typename... P, typename... A>
static cudaError_t vz_launch_pdl(void (*f)(P...), dim3 grid, dim3 block, size_t shm, cudaStream_t st, int batch,
                                 size_t sm_bytes, A... args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = shm, cfg.stream = st;
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = vz_carveout_attr(at, 1, batch, sm_bytes);
    cudaError_t e = cudaLaunchKernelEx(&cfg, f, ((P)args)...);
    if ((e == cudaErrorNotSupported || e == cudaErrorInvalidValue) && cfg.numAttrs > 1) { /* without the carveout */
        cudaGetLastError();
        cfg.numAttrs = 1;
        e = cudaLaunchKernelEx(&cfg, f, ((P)args)...);
    }
    if (e == cudaErrorNotSupported || e == cudaErrorInvalidValue) {
        cudaGetLastError();
        f<<<grid, block, shm, st>>>(((P)args)...);
    }
    return e != cudaSuccess && e != cudaErrorNotSupported && e != cudaErrorInvalidValue ? e : cudaPeekAtLastError();
}

/* f<<<blocks, threads, smem, st>>>(a): vz_launch_pdl when pdl, else plain;
 * returns the launch's error and clears it. */
template <typename A>
static cudaError_t mv_launch_pdl(void (*f)(A), bool pdl, unsigned blocks, int threads, size_t smem, cudaStream_t st,
                                 int batch, size_t sm_bytes, const A &a) {
    if (pdl) vz_launch_pdl(f, dim3(blocks), dim3(threads), smem, st, batch, sm_bytes, a);
    else f<<<blocks, threads, smem, st>>>(a);
    return cudaGetLastError();
}

/* The tensor-core matvec (matvec_tc.cu) of n tensors that all have tc set;
 * arguments as vz_cuda_matvec_multi (checked by the caller). */
vz_status vz_cuda_mv_tc(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x, int batch, int epi,
                        bool pdl, bool late, cudaStream_t st);

#endif
