/*
 * ops.c - CPU operators (see ops.h). The matmul decodes one block of weight
 * rows at a time into a per-thread f32 buffer and dots it with every input
 * vector while it is hot in cache.
 */
#include "backend/cpu/ops.h"

#include <math.h>
#include <stdlib.h>

#include "codec/codec.h"

__attribute__((noinline)) float vz_dot(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[i + k] * b[i + k];
    for (int k = 0; i < n; i++, k++) acc[k] += a[i] * b[i];
    for (int w = 8; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) acc[k] += acc[k + w];
    return acc[0];
}

/* Rows decoded per step: enough to amortize the codec call, small enough
 * that the block stays in L1/L2 while every input vector passes over it. */
#define VZ_ROW_BLOCK 4

void vz_cpu_matmul(float *y, const float *x, int32_t n, const vz_tensor *W) {
    const vz_codec *codec = vz_codec_by_id(W->codec);
    const int64_t rows = W->rows, cols = W->cols;
    const int64_t nblk = (rows + VZ_ROW_BLOCK - 1) / VZ_ROW_BLOCK;
#pragma omp parallel
    {
        float *buf = malloc(sizeof(float) * (size_t)cols * VZ_ROW_BLOCK);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t r0 = b * VZ_ROW_BLOCK, r1 = r0 + VZ_ROW_BLOCK < rows ? r0 + VZ_ROW_BLOCK : rows;
            if (!buf) { for (int64_t r = r0; r < r1; r++) for (int32_t i = 0; i < n; i++) y[(int64_t)i * rows + r] = NAN; continue; }
            codec->decode_f32(W, r0, r1, buf);
            for (int64_t r = r0; r < r1; r++)
                for (int32_t i = 0; i < n; i++)
                    y[(int64_t)i * rows + r] = vz_dot(buf + (r - r0) * cols, x + (int64_t)i * cols, cols);
        }
        free(buf);
    }
}

void vz_cpu_row(float *out, const vz_tensor *W, int64_t r) {
    vz_codec_by_id(W->codec)->decode_f32(W, r, r + 1, out);
}

void vz_cpu_rmsnorm(float *o, const float *x, const float *w, int32_t n, float eps) {
    double ss = 0; /* double: the norm is tiny work and this keeps it order-stable */
    for (int32_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int32_t i = 0; i < n; i++) o[i] = w[i] * (x[i] * scale);
}
