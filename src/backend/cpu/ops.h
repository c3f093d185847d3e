/*
 * ops.h - CPU operators of the forward pass (OpenMP, f32 activations).
 *
 * The matmul is the fused decode+matvec: each weight row is decoded by its
 * codec into a small f32 buffer and immediately dotted with the inputs (for
 * one input, inside the dot itself: the codec's dot_f32), so no
 * decompressed copy of a matrix ever exists. All codecs share vz_dot, whose
 * summation order is fixed, so a lossless codec gives bit-identical results
 * to raw weights. Every output element is one vz_dot, so results do not
 * depend on the thread count or on how many tokens are batched together.
 */
#ifndef VZ_BACKEND_CPU_OPS_H
#define VZ_BACKEND_CPU_OPS_H

#include <stdint.h>

#include "core/tensor.h"

/* Dot product with a fixed summation order (16 partial sums, then a fixed
 * tree). Never inlined into callers, so every path rounds the same way. */
float vz_dot(const float *a, const float *b, int64_t n);

/* The bodies vz_dot picks from on its first call by the CPU's instruction set;
 * they return the same bits (exported for tests/test_simd.c). Call the x86
 * ones only where __builtin_cpu_supports("avx2" / "avx512f") says so. */
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define VZ_DOT_X86 1
float vz_dot_avx2(const float *a, const float *b, int64_t n);
float vz_dot_avx512(const float *a, const float *b, int64_t n);
#else
#define VZ_DOT_X86 0
#endif
float vz_dot_generic(const float *a, const float *b, int64_t n);

/* Most rows decoded per step of the matmul (the scratch it needs per thread
 * is VZ_ROW_BLOCK * cols floats): several inputs (prefill) take this many,
 * one input with a codec that has no fused dot fewer for long rows, to stay
 * in L1. */
#define VZ_ROW_BLOCK 16

/* y[i*rows + r] = W[r,:] . x[i*cols + :] for i in [0, n); W (rows, cols).
 * Allocates its per-thread decode buffers; uses OpenMP's default threads. */
void vz_cpu_matmul(float *y, const float *x, int32_t n, const vz_tensor *W);

/* The same with caller-owned scratch: n_threads * VZ_ROW_BLOCK * W->cols
 * floats, and at most n_threads threads (n_threads >= 1). */
void vz_cpu_matmul_st(float *y, const float *x, int32_t n, const vz_tensor *W, float *scratch,
                      int32_t n_threads);

/* Decodes row r of W (e.g. an embedding lookup) to f32. */
void vz_cpu_row(float *out, const vz_tensor *W, int64_t r);

/* o = w * x / sqrt(mean(x^2) + eps); o may alias x. */
void vz_cpu_rmsnorm(float *o, const float *x, const float *w, int32_t n, float eps);

/* cs[2i] = cos(pos * f_i), cs[2i+1] = sin(pos * f_i), f_i = theta^(-2i/head_dim),
 * for i in [0, head_dim/2): the rotation of one position, shared by all heads. */
void vz_cpu_rope_table(float *cs, int32_t head_dim, int32_t pos, float theta);

/* Hugging Face rope_scaling (rope_type): none, "linear" (f_i / factor) or
 * "llama3" (Llama 3.1+: low frequencies / factor, high ones kept, a smooth
 * blend between; transformers' _compute_llama3_parameters, in f32); or
 * llama.cpp's per-pair divisors (GGUF tensor rope_freqs.weight, its form of
 * llama3: f_i / factors[i]). */
enum { VZ_ROPE_NONE = 0, VZ_ROPE_LINEAR = 1, VZ_ROPE_LLAMA3 = 2, VZ_ROPE_FACTORS = 3 };
typedef struct vz_rope_scaling {
    int32_t type;                 /* VZ_ROPE_* */
    float factor;                 /* linear, llama3 */
    float low_freq, high_freq;    /* llama3: low_freq_factor, high_freq_factor */
    int32_t orig_ctx;             /* llama3: original_max_position_embeddings */
    const float *factors;         /* factors: head_dim/2 divisors (the model's rope_freqs.weight, bound at load) */
} vz_rope_scaling;

/* freq[i] = f_i of vz_cpu_rope_table, scaled by sc (NULL or VZ_ROPE_NONE: the
 * same floats as vz_cpu_rope_table's), i in [0, head_dim/2). */
void vz_cpu_rope_freqs(float *freq, int32_t head_dim, float theta, const vz_rope_scaling *sc);

/* vz_cpu_rope_table from frequencies: cs[2i] = cos(pos * freq[i]), cs[2i+1] = sin(...). */
void vz_cpu_rope_table_freqs(float *cs, int32_t head_dim, int32_t pos, const float *freq);

/* Rotates each of n_heads heads of x (n_heads * head_dim) by the table cs.
 * interleaved: pairs (2i, 2i+1) (llama2.c, GGUF); else pairs (i, i + head_dim/2)
 * (Hugging Face rotate_half). Pair i uses frequency f_i in both. */
void vz_cpu_rope(float *x, int32_t n_heads, int32_t head_dim, const float *cs, int32_t interleaved);

/* In-place softmax of x[0..n), n >= 1 (max-subtracted, sums in order). */
void vz_cpu_softmax(float *x, int32_t n);

/* h[i] = silu(h[i]) * u[i] (SwiGLU), n elements. */
void vz_cpu_swiglu(float *h, const float *u, int64_t n);

#endif
