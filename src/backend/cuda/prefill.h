/*
 * prefill.h - the non-matmul kernels of the GPU prefill (prefill.cu): T
 * tokens at once, activations handed to the GEMMs (gemm.h) as bf16. CPU
 * references: vz_cpu_rmsnorm, vz_cpu_rope, the attention loop of
 * src/model/forward.c; tests/test_cuda_prefill.c.
 */
#ifndef VZ_BACKEND_CUDA_PREFILL_H
#define VZ_BACKEND_CUDA_PREFILL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* stream: a cudaStream_t (NULL: the legacy stream); every launch is asynchronous on it.
 * The bf16 outputs are GEMM inputs: a row of W columns lies in the GEMM
 * column order (gemm.h), column j at out[t*W + vz_gemm_col(W, j)]. */

/* out[t] = bf16(w * x[t] / rms(x[t])) for t < T (rows of dim floats). */
void vz_pf_rmsnorm_bf16(const float *x, void *out, const float *w, int32_t T, int32_t dim, float eps, void *stream);

/* out[t*hid + (j)] = bf16(silu(gu[t*2hid + j]) * gu[t*2hid + hid + j]), (j) the GEMM column order's. */
void vz_pf_silu_mul_bf16(const float *gu, void *out, int32_t T, int32_t hid, void *stream);

/* Causal attention of T new tokens at positions pos0..pos0+T-1 of one layer.
 * qkv: (T, ld) f32 rows [q (n_heads*hd) | k (n_kv*hd) | v (n_kv*hd)],
 * unrotated; q is rotated in place. bias (device, a row's length in the same
 * order; Qwen 2) is added to each row first when not NULL; RoPE at
 * theta^(-2i/hd) or, when freq (device, hd/2 floats) is given, at freq[i]. RoPE'd keys and values are stored into
 * the layer's caches (f16 when kv_f16, else f32; (n_ctx, n_kv*hd)) at those
 * positions, then every query attends to cache rows 0..its position (f32
 * scores, softmax and sums). out: (T, n_heads*hd) bf16 in the GEMM column order. Two kernels. */
void vz_pf_attention(void *out, float *qkv, int64_t ld, void *kc, void *vc, int32_t pos0, int32_t T, int32_t n_heads,
                     int32_t n_kv, int32_t hd, int32_t kv_f16, float theta, const float *freq, int32_t interleaved,
                     const float *bias, void *stream);

/* Attention kernel choice: 0 (default) flash-attention on tensor cores (f16
 * mma; head_dim 32, 64 or 128; else the f32 kernel), 1 the f32 kernel
 * always, 2 the RoPE + KV store kernel alone (no attention: prefill_bench
 * times it so). v < 0 only reads; returns the previous choice. Tests and bench. */
int vz_pf_attention_variant(int v);

/* RMSNorm and SwiGLU kernel choice: 0 (default) the vectorized kernels where
 * the shape allows (RMSNorm: dim % 4 == 0, a warp per row up to 2048, a
 * block of 128 threads per row above, up to 8192; SwiGLU: hid % 8
 * == 0, 8 outputs per thread), 1 the generic kernels always, 2 as 0 with
 * RMSNorm a warp per row up to 4096 (the default before session 77).
 * Same arithmetic; returns the previous choice. Tests and bench. */
int vz_pf_norm_variant(int v);

#ifdef __cplusplus
}
#endif

#endif
