/*
 * ops.c - CPU operators (see ops.h). The matmul decodes one block of weight
 * rows at a time into a per-thread f32 buffer and dots it with every input
 * vector while it is hot in cache, tiles of rows x inputs at a time
 * (dot_tile, vz_dot's bits); for one input vector (every generated
 * token), a codec with a dot_f32 (raw, lossless, q8, q4) decodes inside the
 * dot instead, with vz_dot's sums, so the weights stream from memory once
 * with no row buffer. RoPE follows llama2.c run.c (f32 cos/sin
 * of pos * theta^(-2i/head_dim)); Hugging Face's rotate_half pairs the same
 * frequencies with elements (i, i + head_dim/2).
 */
#include "backend/cpu/ops.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/cpu_kernels.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc: -ffp-contract=off in the Makefile */
#endif

/* The tail and the fixed tree of vz_dot, after the vector loop has summed
 * 16-element steps into s[0..16): s[k] holds the products of elements
 * k, k + 16, k + 32, ... in that order. */
static inline __attribute__((always_inline)) float dot_finish(float *s, const float *a, const float *b, int64_t i,
                                                              int64_t n) {
    for (int k = 0; i < n; i++, k++) s[k] += a[i] * b[i];
    return vz_dot_tree(s);
}

/* The body of vz_dot for vectors of W f32 lanes (16 / W vectors hold the 16
 * partial sums), compiled once per instruction set below. Each lane does one
 * multiply and one add per step (no FMA: -ffp-contract=off, and the pragma
 * above for clang), and IEEE arithmetic is lane-wise, so every version rounds
 * identically (tests/test_simd.c checks it). */
#define VZ_DOT_BODY(W)                                                                                        \
    typedef float vec __attribute__((vector_size(4 * (W))));                                                  \
    vec acc[16 / (W)];                                                                                        \
    memset(acc, 0, sizeof acc);                                                                               \
    int64_t i = 0;                                                                                            \
    for (; i + 16 <= n; i += 16)                                                                              \
        for (int j = 0; j < 16 / (W); j++) {                                                                  \
            vec va, vb;                                                                                       \
            memcpy(&va, a + i + j * (W), sizeof va);                                                          \
            memcpy(&vb, b + i + j * (W), sizeof vb);                                                          \
            acc[j] += va * vb;                                                                                \
        }                                                                                                     \
    float s[16];                                                                                              \
    memcpy(s, acc, sizeof s);                                                                                 \
    return dot_finish(s, a, b, i, n)

float vz_dot_generic(const float *a, const float *b, int64_t n) { VZ_DOT_BODY(4); }

#if VZ_DOT_X86
__attribute__((target("avx2"))) float vz_dot_avx2(const float *a, const float *b, int64_t n) { VZ_DOT_BODY(8); }
__attribute__((target("avx512f"))) float vz_dot_avx512(const float *a, const float *b, int64_t n) { VZ_DOT_BODY(16); }

typedef float (*vz_dot_fn)(const float *, const float *, int64_t);

/* The body for this CPU, picked on the first call (not an ifunc: resolvers
 * run before sanitizer runtimes start). Racing first calls store the same. */
static vz_dot_fn dot_impl;

/* 2: AVX-512 F, 1: AVX2, 0: neither; what vz_dot and dot_tile pick by. */
static int simd_level(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
}

static vz_dot_fn dot_pick(void) {
    static const vz_dot_fn by_level[3] = {vz_dot_generic, vz_dot_avx2, vz_dot_avx512};
    return by_level[simd_level()];
}

__attribute__((noinline)) float vz_dot(const float *a, const float *b, int64_t n) {
    vz_dot_fn f = __atomic_load_n(&dot_impl, __ATOMIC_RELAXED);
    if (!f) {
        f = dot_pick();
        __atomic_store_n(&dot_impl, f, __ATOMIC_RELAXED);
    }
    return f(a, b, n);
}
#else
__attribute__((noinline)) float vz_dot(const float *a, const float *b, int64_t n) { return vz_dot_generic(a, b, n); }
#endif

/* [prefill] vz_dot of nr rows w (stride cols) with nx inputs x (stride
 * cols), into y[i * ystride + r], TR x TI dots at a time: each 16-column
 * step loads the TR row vectors and the TI input vectors once for all
 * TR * TI products. Every dot keeps its own 16 partial sums, fed the
 * products of vz_dot's body in its order, then dot_finish's tail and tree:
 * each output is vz_dot's bits. Rows and inputs left over from whole tiles
 * go through vz_dot itself. */
#define VZ_DOT_TILE_BODY(W, TR, TI)                                                                           \
    typedef float vec __attribute__((vector_size(4 * (W))));                                                  \
    enum { V = 16 / (W) };                                                                                    \
    int64_t r = 0;                                                                                            \
    for (; r + (TR) <= nr; r += (TR)) {                                                                       \
        int64_t i = 0;                                                                                        \
        for (; i + (TI) <= nx; i += (TI)) {                                                                   \
            vec acc[TR][TI][V];                                                                               \
            memset(acc, 0, sizeof acc);                                                                       \
            int64_t c = 0;                                                                                    \
            for (; c + 16 <= cols; c += 16)                                                                   \
                _Pragma("GCC unroll 16") for (int j = 0; j < V; j++) {                                        \
                    vec wv[TR], xv[TI];                                                                       \
                    _Pragma("GCC unroll 16") for (int a = 0; a < (TR); a++)                                   \
                        memcpy(&wv[a], w + (r + a) * cols + c + j * (W), sizeof(vec));                       \
                    _Pragma("GCC unroll 16") for (int b = 0; b < (TI); b++)                                   \
                        memcpy(&xv[b], x + (i + b) * cols + c + j * (W), sizeof(vec));                       \
                    _Pragma("GCC unroll 16") for (int a = 0; a < (TR); a++)                                   \
                        _Pragma("GCC unroll 16") for (int b = 0; b < (TI); b++) acc[a][b][j] += wv[a] * xv[b]; \
                }                                                                                             \
            for (int a = 0; a < (TR); a++)                                                                    \
                for (int b = 0; b < (TI); b++) {                                                              \
                    float sum[16];                                                                            \
                    memcpy(sum, acc[a][b], sizeof sum);                                                       \
                    y[(i + b) * ystride + r + a] = dot_finish(sum, w + (r + a) * cols, x + (i + b) * cols, c, cols); \
                }                                                                                             \
        }                                                                                                     \
        for (; i < nx; i++)                                                                                   \
            for (int a = 0; a < (TR); a++) y[i * ystride + r + a] = vz_dot(w + (r + a) * cols, x + i * cols, cols); \
    }                                                                                                         \
    for (; r < nr; r++)                                                                                       \
        for (int64_t i = 0; i < nx; i++) y[i * ystride + r] = vz_dot(w + r * cols, x + i * cols, cols)

typedef void (*vz_dot_tile_fn)(float *y, int64_t ystride, const float *w, int64_t nr, const float *x, int64_t nx,
                               int64_t cols);

static void dot_tile_generic(float *y, int64_t ystride, const float *w, int64_t nr, const float *x, int64_t nx,
                             int64_t cols) {
    VZ_DOT_TILE_BODY(4, 1, 2);
}

#if VZ_DOT_X86
__attribute__((target("avx2"))) static void dot_tile_avx2(float *y, int64_t ystride, const float *w, int64_t nr,
                                                         const float *x, int64_t nx, int64_t cols) {
    VZ_DOT_TILE_BODY(8, 2, 2);
}
__attribute__((target("avx512f"))) static void dot_tile_avx512(float *y, int64_t ystride, const float *w, int64_t nr,
                                                              const float *x, int64_t nx, int64_t cols) {
    VZ_DOT_TILE_BODY(16, 4, 4);
}
#endif

/* Picked on the first call, as vz_dot's body. */
static vz_dot_tile_fn dot_tile_impl;

static void dot_tile(float *y, int64_t ystride, const float *w, int64_t nr, const float *x, int64_t nx, int64_t cols) {
    vz_dot_tile_fn f = __atomic_load_n(&dot_tile_impl, __ATOMIC_RELAXED);
    if (!f) {
        f = dot_tile_generic;
#if VZ_DOT_X86
        static const vz_dot_tile_fn by_level[3] = {dot_tile_generic, dot_tile_avx2, dot_tile_avx512};
        f = by_level[simd_level()];
#endif
        __atomic_store_n(&dot_tile_impl, f, __ATOMIC_RELAXED);
    }
    f(y, ystride, w, nr, x, nx, cols);
}

/* Rows decoded per step for one input vector by a codec without dot_f32
 * (lossless-max, zstd): up to VZ_ROW_BLOCK, fewer when rows are long, so
 * the decoded block stays in L1 while it is dotted; the codecs amortise
 * their per-call setup over the block. */
static int64_t row_block(int64_t cols) {
    int64_t b = (int64_t)(24 * 1024 / sizeof(float)) / cols;
    return b < 1 ? 1 : b > VZ_ROW_BLOCK ? VZ_ROW_BLOCK : b;
}

/* Raw f32 rows need no decode: dot them where they lie (same values, same
 * vz_dot, so the same bits as through decode_f32). */
static int rows_in_place(const vz_tensor *W) {
    return W->codec == VZ_CODEC_raw && W->dtype == VZ_DTYPE_F32 && ((uintptr_t)W->data & 3u) == 0;
}

void vz_cpu_matmul_st(float *y, const float *x, int32_t n, const vz_tensor *W, float *scratch,
                      int32_t n_threads) {
    const vz_codec *codec = vz_codec_by_id(W->codec);
    /* several inputs (prefill): blocks of VZ_ROW_BLOCK rows (up to ~350 KB
     * of f32, in L2), so each input is read from cache once per 16 rows */
    const int64_t rows = W->rows, cols = W->cols;
    const int64_t blk = n > 1 ? VZ_ROW_BLOCK : row_block(cols);
    const int64_t nblk = (rows + blk - 1) / blk;
    const int direct = rows_in_place(W);
    /* Under ~65K multiply-adds (a few us with the SIMD dot) waking the team
     * costs more than it saves, and far more when other processes hold the
     * cores (synth small, 2 cores: 2 threads +24% tok/s over 1 << 18). */
    int nt = rows * cols * (int64_t)n < (1 << 16) ? 1 : (n_threads > 0 ? n_threads : 1);
    if (n == 1 && !direct && codec->dot_f32) { /* decode fused into the dot: one call per thread */
#pragma omp parallel num_threads(nt)
        {
            int64_t t = omp_get_thread_num(), m = omp_get_num_threads();
            int64_t r0 = rows * t / m, r1 = rows * (t + 1) / m;
            if (r0 < r1) codec->dot_f32(W, r0, r1, x, y + r0);
        }
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        float *buf = scratch + (size_t)omp_get_thread_num() * VZ_ROW_BLOCK * (size_t)cols;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t r0 = b * blk, r1 = r0 + blk < rows ? r0 + blk : rows;
            const float *w = buf;
            if (direct)
                w = (const float *)W->data + r0 * cols;
            else
                codec->decode_f32(W, r0, r1, buf);
            dot_tile(y + r0, rows, w, r1 - r0, x, n, cols);
        }
    }
}

void vz_cpu_matmul(float *y, const float *x, int32_t n, const vz_tensor *W) {
    int32_t nt = omp_get_max_threads();
    float *scratch = malloc(sizeof(float) * (size_t)nt * VZ_ROW_BLOCK * (size_t)W->cols);
    if (!scratch) { /* no room for even the row buffers: mark the result invalid */
        for (int64_t k = 0; k < (int64_t)n * W->rows; k++) y[k] = NAN;
        return;
    }
    vz_cpu_matmul_st(y, x, n, W, scratch, nt);
    free(scratch);
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

void vz_cpu_rope_table(float *cs, int32_t head_dim, int32_t pos, float theta) {
    for (int32_t i = 0; i < head_dim / 2; i++) {
        float freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        float val = (float)pos * freq;
        cs[2 * i] = cosf(val);
        cs[2 * i + 1] = sinf(val);
    }
}

void vz_cpu_rope_freqs(float *freq, int32_t head_dim, float theta, const vz_rope_scaling *sc) {
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int32_t i = 0; i < head_dim / 2; i++) {
        float f = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        if (sc && sc->type == VZ_ROPE_LINEAR) {
            f = f / sc->factor;
        } else if (sc && sc->type == VZ_ROPE_FACTORS) {
            f = f / sc->factors[i];
        } else if (sc && sc->type == VZ_ROPE_LLAMA3) {
            /* transformers: wavelen = 2 pi / f; above old_ctx / low_freq_factor: f / factor; below
             * old_ctx / high_freq_factor: f; between: (1 - s) f / factor + s f,
             * s = (old_ctx / wavelen - low) / (high - low) */
            const float old = (float)sc->orig_ctx, wl = two_pi / f;
            const float lo_wl = old / sc->low_freq, hi_wl = old / sc->high_freq;
            const float g = wl > lo_wl ? f / sc->factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                const float s = (old / wl - sc->low_freq) / (sc->high_freq - sc->low_freq);
                f = (1.0f - s) * g / sc->factor + s * g;
            } else {
                f = g;
            }
        }
        freq[i] = f;
    }
}

void vz_cpu_rope_table_freqs(float *cs, int32_t head_dim, int32_t pos, const float *freq) {
    for (int32_t i = 0; i < head_dim / 2; i++) {
        float val = (float)pos * freq[i];
        cs[2 * i] = cosf(val);
        cs[2 * i + 1] = sinf(val);
    }
}

void vz_cpu_rope(float *x, int32_t n_heads, int32_t head_dim, const float *cs, int32_t interleaved) {
    const int32_t half = head_dim / 2;
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int32_t i = 0; i < half; i++) {
            int32_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
            float c = cs[2 * i], s = cs[2 * i + 1], v0 = v[a], v1 = v[b];
            v[a] = v0 * c - v1 * s;
            v[b] = v0 * s + v1 * c;
        }
    }
}

/* The max and the division are written for 8 lanes at a time: both give the
 * same bits in any order (a max is exact; each quotient is one rounding).
 * The exponentials are summed strictly in order. */
void vz_cpu_softmax(float *x, int32_t n) {
    typedef float vec8 __attribute__((vector_size(32)));
    typedef int32_t mask8 __attribute__((vector_size(32)));
    float max = x[0];
    int32_t i = 0;
    if (n >= 8) {
        vec8 m;
        memcpy(&m, x, sizeof m);
        for (i = 8; i + 8 <= n; i += 8) {
            vec8 v;
            memcpy(&v, x + i, sizeof v);
            mask8 gt = v > m;
            m = (vec8)((gt & (mask8)v) | (~gt & (mask8)m));
        }
        for (int k = 0; k < 8; k++)
            if (m[k] > max) max = m[k];
    }
    for (; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (i = 0; i + 8 <= n; i += 8) {
        vec8 v;
        memcpy(&v, x + i, sizeof v);
        v /= sum;
        memcpy(x + i, &v, sizeof v);
    }
    for (; i < n; i++) x[i] /= sum;
}

void vz_cpu_swiglu(float *h, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = h[i];
        h[i] = g * (1.0f / (1.0f + expf(-g))) * u[i];
    }
}
