/*
 * gemm.h - prefill matmuls on compressed weights (gemm.cu): Y = X W^T for T
 * tokens at once, W decoded by the codec's one device decoder (decode.cuh).
 * Path A decodes W into a reused bf16 scratch (ahead, on a second stream,
 * where other kernels run between GEMMs; raw bf16 is read in place) and
 * runs cuBLAS bf16 GEMMs
 * (cuBLAS is dlopen'ed on first use: the binary runs without it); path B
 * decodes W tiles straight into shared memory and multiplies them there
 * (wgmma on sm_90a, else mma.sync).
 * Both paths round W and X to bf16 and accumulate in f32, so raw and
 * lossless weights give bitwise identical Y (same bf16 values, same GEMM).
 */
#ifndef VZ_BACKEND_CUDA_GEMM_H
#define VZ_BACKEND_CUDA_GEMM_H

#include <stdint.h>

#include "backend/cuda/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vz_gemm vz_gemm;

/* Path choice of vz_gemm_run: AUTO is the per-shape rule in gemm.cu. */
enum { VZ_GEMM_AUTO = 0, VZ_GEMM_A = 1, VZ_GEMM_B = 2 };

/* A context with a bf16 scratch of scratch_elems elements (path A; larger
 * matrices run in row chunks). VZ_ERR_UNSUPPORTED with a message when
 * libcublas.so.13 cannot be loaded (search: $VZ_CUBLAS, the loader path,
 * /usr/local/cuda/lib64, PyTorch's nvidia wheels): callers then keep the
 * matvec path. stream: the cudaStream_t every call runs on. */
vz_status vz_gemm_create(vz_gemm **out, int64_t scratch_elems, void *stream);
void vz_gemm_free(vz_gemm *g);
/* Device bytes held (scratch + cuBLAS workspace). */
uint64_t vz_gemm_bytes(const vz_gemm *g);

/* The GEMM column order: both operands of a GEMM along its cols columns
 * lie in the GPU column order (cuda.h vz_cuda_gpu_col) when cols % 32 ==
 * 0, else row-major. So the raw bf16 tensors in that order
 * (VZ_CUDA_RAW_GPU: resident, streamed or cached) are multiplied in place,
 * the decoders write the scratch in that order, and the kernels that make
 * a GEMM's input (the prefill's norm, SiLU and attention, prefill.h) write
 * it so; cuBLAS sums the same products in another order than row-major
 * operands would, the same for raw and lossless weights. Column c of a row of cols lies at vz_gemm_col. */
int64_t vz_gemm_col(int64_t cols, int64_t c);

/* y[t*ldy + o_i + r] = sum_c W_i[r,c] x[t*ldx + vz_gemm_col(cols, c)] (add:
 * += ) for t < T, r < W_i rows, where the n (1..3) tensors share cols and
 * o_i is the sum of the rows before tensor i (outputs side by side). x:
 * bf16 (T, ldx) on the device, in the GEMM column order; y f32, row-major.
 * path: VZ_GEMM_*. Stream-ordered on g's stream. */
vz_status vz_gemm_run(vz_gemm *g, int n, const vz_cuda_tensor *const *W, float *y, int64_t ldy, const void *x,
                      int64_t ldx, int32_t T, int32_t add, int32_t path);

/* Bench pieces of path A: decode rows [r0, r0 + nr) of the stacked W into
 * the scratch (in the GEMM column order); then y = scratch x (cuBLAS, same
 * call as path A). And a plain cuBLAS GEMM on a caller's bf16 W (rows,
 * cols): the reference. */
vz_status vz_gemm_decode(vz_gemm *g, int n, const vz_cuda_tensor *const *W, int64_t r0, int64_t nr);
vz_status vz_gemm_scratch_mm(vz_gemm *g, int64_t rows, int64_t cols, float *y, int64_t ldy, const void *x,
                             int64_t ldx, int32_t T, int32_t add);
vz_status vz_gemm_bf16(vz_gemm *g, const void *w, int64_t rows, int64_t cols, float *y, int64_t ldy, const void *x,
                       int64_t ldx, int32_t T, int32_t add);

/* *w: the device address of the stacked W[0..n) (1..3 tensors with the same
 * cols) when every one is raw bf16 and each starts where the one before
 * ends, so the stack is one (sum of rows, cols) bf16 matrix; else NULL.
 * Borrowed from the tensors (valid while they are uploaded). Path A reads
 * such rows in place (when also 256-byte aligned and in the GEMM column
 * order); the plain-cuBLAS prefill reference multiplies them in one call
 * as they lie. VZ_ERR_ARG / VZ_ERR_SHAPE as vz_gemm_run for bad tensors. */
vz_status vz_gemm_raw_stack(int n, const vz_cuda_tensor *const *W, const void **w);

/* Path A (gemm.cu run_a): row chunks of the scratch, each decoded then
 * multiplied by cuBLAS on g's stream; raw bf16 chunks lying contiguous (as
 * vz_gemm_raw_stack decides), in the GEMM column order and 256-byte aligned
 * in device memory are multiplied in place (same call, same bits). Flags (tests, bench;
 * process-wide, default 0): SERIAL: no decode ahead on the second stream
 * (vz_gemm_prefetch is a no-op); COPY: raw chunks copied through the
 * scratch (so SERIAL | COPY is the path of before); HALVES: chunks of half
 * the scratch, chunk c + 1 decoded on the second stream while chunk c
 * multiplies (events order both ways; measured slower on an H200:
 * bench/results/2026-11-28-pfgemm-h200.md). Bits depend on HALVES (other
 * chunks), never on SERIAL or COPY. f < 0 only reads; returns the previous
 * flags. */
enum { VZ_GEMM_SERIAL = 1, VZ_GEMM_COPY = 2, VZ_GEMM_HALVES = 4 };
int vz_gemm_pipe_flags(int f);

/* Decodes the first row chunk of the stacked W ahead, on the second
 * stream, into the scratch once the GEMM that last read it is done; the
 * next vz_gemm_run on the same tensors uses it. Only the weights are read,
 * so it runs under the kernels issued meanwhile (attention, norms, SiLU).
 * No-op with VZ_GEMM_SERIAL. */
vz_status vz_gemm_prefetch(vz_gemm *g, int n, const vz_cuda_tensor *const *W);
/* The decode stream waits for everything issued on g's stream so far (call
 * once a streamed layer's slot is copied: the decodes after it read it). */
vz_status vz_gemm_fork(vz_gemm *g);
/* g's stream waits for every decode issued so far (before a streamed
 * layer's slot is released for its next copy). */
vz_status vz_gemm_join(vz_gemm *g);

/* Path A's decode kernel for fast kinds (raw bf16, lossless k=3, q8, q4
 * with cols % 32 == 0): 2 (default; VZ_CUDA_DEC sets the start value) the
 * ring kernel, 1 the pipelined one before it, 0 one job per warp (always
 * used for the other kinds). Same bits. v < 0 only reads; returns the
 * previous choice. Tests and bench. */
int vz_gemm_decode_variant(int v);

/* Bench: the most blocks of the ring decode kernel's grid (0: no cap, the
 * default; same bits at any value); returns the previous cap, b < 0 only
 * reads. And cuBLAS's SM count target for g's GEMMs (0: the device's). */
int vz_gemm_decode_cap(int b);
vz_status vz_gemm_sm_target(vz_gemm *g, int n);

#ifdef __cplusplus
}
#endif

#endif
