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

/* RMSNorm's scales 1 / sqrt(mean(x^2) + eps) of nb <= 8 rows of dim floats
 * (element i of row b = at(b, i)), summed in double in the norm's one
 * order, so that every kernel that computes it gives the same bits
 * (vz_k_rmsnorm, the fused norm of the v4 matvec, the persistent step):
 * VZ_RMS_PARTS parts, part w over the elements 32w + l + 256j (lane l's in
 * order of j, then an xor-butterfly over the lanes), added in order of w.
 * Warps 0..7 of the block compute the parts at once (one warp's sum was a
 * chain of dim / 32 dependent double adds on the path of every normed
 * matvec), thread b then the scale of row b into m->sc[b]. All threads of
 * a block of at least 8 warps call it; it ends with __syncthreads. */
#define VZ_RMS_PARTS 8
struct vz_rms_smem {
    double part[8 * VZ_RMS_PARTS];
    float sc[8];
};

template <typename F>
static __device__ __forceinline__ void vz_rms_scales(F at, int nb, int dim, float eps, vz_rms_smem *m) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (warp < VZ_RMS_PARTS)
        for (int b = 0; b < nb; b++) {
            double ss = 0.0;
            for (int i = 32 * warp + lane; i < dim; i += 32 * VZ_RMS_PARTS) {
                const float v = at(b, i);
                ss += (double)v * v;
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
            if (lane == 0) m->part[b * VZ_RMS_PARTS + warp] = ss;
        }
    __syncthreads();
    if ((int)threadIdx.x < nb) {
        const double *p = m->part + threadIdx.x * VZ_RMS_PARTS;
        double ss = p[0];
#pragma unroll
        for (int w = 1; w < VZ_RMS_PARTS; w++) ss += p[w];
        m->sc[threadIdx.x] = (float)(1.0 / sqrt(ss / dim + eps));
    }
    __syncthreads();
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
    /* w[t] by constant indices only (a dynamic index would copy w to local memory). */
    __device__ __forceinline__ vz_dview pick(int t) const { return t == 0 ? w[0] : t == 1 ? w[1] : w[2]; }
};

/* The shared memory carveout (percent of an SM's largest) that every PDL
 * launch of a decode step of `batch` rows asks for, or -1 (the driver's
 * choice; batch > 1). One carveout for the whole step: a launch whose
 * preferred L1/shared split differs from the one before cannot put blocks
 * on an SM until that SM has drained and changed it. 164 KiB of shared
 * memory (72% on an H100/H200) leaves the matvecs 92 KiB of L1 for their
 * loads in flight and fits three tinyllama attention blocks. On an H200 it
 * made tinyllama's decode 0.2-2.0% faster (raw 1228 -> 1253 tok/s) and
 * llama2-7b's no slower; every other size tried (0-228 KiB) was slower on
 * one model or both (bench/results/2026-11-29-session19-h200.md). Batches
 * of 2-8 keep the driver's choice: a batch-8 matvec of 4096 columns stages
 * 96 KiB of x per block. Not yet handled: at batch 1 a v4 launch that
 * needs more than 82 KiB per block (x of more than ~21 000 columns, ~17 800
 * for lossless with its 12 KiB of scratch; Qwen2-7B's lossless down
 * matvec, 18 944) may run one block per SM instead of two; the models timed
 * so far have none. VZ_CUDA_CARVEOUT (bench): a percent, or -1 for the
 * driver's choice. matvec.cu. */
int vz_decode_carveout(int batch);

/* f<<<blocks, threads, smem, st>>>(a), with programmatic stream
 * serialization when pdl (and the decode step's carveout,
 * vz_decode_carveout); a runtime that refuses the attributes gets a plain
 * launch. */
template <typename A>
static cudaError_t mv_launch_pdl(void (*f)(A), bool pdl, unsigned blocks, int threads, size_t smem, cudaStream_t st,
                                 int batch, const A &a) {
    if (!pdl) {
        f<<<blocks, threads, smem, st>>>(a);
        return cudaGetLastError();
    }
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = dim3(blocks), cfg.blockDim = dim3(threads), cfg.dynamicSmemBytes = smem, cfg.stream = st;
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 1;
    const int carve = vz_decode_carveout(batch);
    if (carve >= 0) {
        at[1].id = cudaLaunchAttributePreferredSharedMemoryCarveout;
        at[1].val.sharedMemCarveout = (unsigned)carve;
        cfg.numAttrs = 2;
    }
    cudaError_t e = cudaLaunchKernelEx(&cfg, f, a);
    if ((e == cudaErrorNotSupported || e == cudaErrorInvalidValue) && cfg.numAttrs > 1) { /* without the carveout */
        cudaGetLastError();
        cfg.numAttrs = 1;
        e = cudaLaunchKernelEx(&cfg, f, a);
    }
    if (e == cudaErrorNotSupported || e == cudaErrorInvalidValue) {
        cudaGetLastError();
        f<<<blocks, threads, smem, st>>>(a);
        return cudaGetLastError();
    }
    return e != cudaSuccess ? e : cudaGetLastError();
}

/* The tensor-core matvec (matvec_tc.cu) of n tensors that all have tc set;
 * arguments as vz_cuda_matvec_multi (checked by the caller). */
vz_status vz_cuda_mv_tc(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x, int batch, int epi,
                        bool pdl, bool late, cudaStream_t st);

#endif
