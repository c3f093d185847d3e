/*
 * ops.h - CPU operators of the forward pass (OpenMP, f32 activations).
 *
 * The matmul is the fused decode+matvec: each weight row is decoded by its
 * codec into a small f32 buffer and immediately dotted with the inputs, so no
 * decompressed copy of a matrix ever exists. All codecs share vz_dot, whose
 * summation order is fixed, so a lossless codec gives bit-identical results
 * to raw weights.
 */
#ifndef VZ_BACKEND_CPU_OPS_H
#define VZ_BACKEND_CPU_OPS_H

#include <stdint.h>

#include "core/tensor.h"

/* Dot product with a fixed summation order (16 partial sums, then a fixed
 * tree). Never inlined into callers, so every path rounds the same way. */
float vz_dot(const float *a, const float *b, int64_t n);

/* y[i*rows + r] = W[r,:] . x[i*cols + :] for i in [0, n); W (rows, cols). */
void vz_cpu_matmul(float *y, const float *x, int32_t n, const vz_tensor *W);

/* Decodes row r of W (e.g. an embedding lookup) to f32. */
void vz_cpu_row(float *out, const vz_tensor *W, int64_t r);

void vz_cpu_rmsnorm(float *o, const float *x, const float *w, int32_t n, float eps);

#endif
