/*
 * q4.c - codec 5 `q4`: int4 weight-only quantization with one f16 scale per
 * group of a row and, optionally, a per-group zero point (asymmetric).
 * value = (float)(q - z) * (float)scale in f32 (exact), z = 8 when symmetric.
 * The encoder picks each group's scale by a small MSE search over clipped
 * ranges. docs/codecs.md section 5 is the normative layout.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/cpu_kernels.h"
#include "core/half_rows.h" /* VZ_HALF_X86 */

#define Q4_DEFAULT_GROUP 32
#define Q4_DEFAULT_VARIANT 2 /* level: 1 symmetric round-to-nearest, 2 symmetric + search, 3 asymmetric + search */
#define Q4_SEARCH 20

typedef struct q4_geom {
    uint64_t stride, gpr, scales, zeros, size;
    uint32_t group;
    int asym;
} q4_geom;

static int q4_geom_init(q4_geom *g, int64_t rows, int64_t cols, uint32_t group, int asym) {
    uint64_t n;
    if (rows < 1 || cols < 1 || group < 1 || group > (1u << 24)) return 0;
    if (group % 32 != 0 && (int64_t)group != cols) return 0;
    if (!vz_mul_ok((uint64_t)rows, (uint64_t)cols, &n) || n > ((uint64_t)1 << 40)) return 0;
    g->group = group;
    g->asym = asym;
    g->stride = ((uint64_t)cols + 1) / 2;
    g->gpr = ((uint64_t)cols + group - 1) / group;
    g->scales = vz_al16((uint64_t)rows * g->stride);
    g->zeros = vz_al16(g->scales + (uint64_t)rows * g->gpr * 2);
    g->size = asym ? g->zeros + (uint64_t)rows * g->gpr : g->scales + (uint64_t)rows * g->gpr * 2;
    return 1;
}

static int q4_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    q4_geom g;
    return vz_dtype_ok(dtype) && q4_geom_init(&g, rows, cols, (uint32_t)cols, 0);
}

/* Nearest grid code for w on the grid (q - z) * s, q in 0..15. */
static inline int q4_code(double w, float s, int z) {
    long q = s != 0 ? (long)vz_rint_small(w / s) + z : z; /* |w / s| < 25: s covers >= 0.62 of the range */
    return q < 0 ? 0 : q > 15 ? 15 : (int)q;
}

/* Adding and removing 1.5 * 2^23 rounds x to an integer in the current
 * rounding mode, as nearbyintf does, for |x| < 2^22. Beyond that the result
 * keeps x's sign and a magnitude of at least 2^22, so q4_sse_n's clamp
 * gives code 0 or 15 as it would with nearbyintf (an exhaustive check over
 * every f32 agreed: bench/results/cpu-convert-2026-11-30.md). Inline and
 * branch-free: nearbyintf is a libm call on baseline x86-64, and a range
 * check here kept the loop from being vectorized. */
static inline float q4_rint(float x) { return (x + 0x1.8p23f) - 0x1.8p23f; }

/* Squared errors e[k] of a group on nc <= Q4_LANES grids (q - z[k]) * s[k]
 * (s[k] the f16 scale h[k])
 * at once; the search only ranks candidates, so it multiplies by 1/s (the
 * stored codes use q4_code's exact division). Each candidate's sum runs in
 * element order, as one candidate alone would, so the errors and the pick
 * are the same bits; the candidates are the vector lanes (GCC -O2
 * vectorizes the inner loop). q4 of synth
 * tinyllama-1.1b on 2 cores: 141 s with one nearbyintf search per
 * candidate, 29 s now with convert's larger window, byte-identical
 * (tests/test_codecs.c test_q4_search checks the picks against a plain
 * reference of the search). */
#define Q4_LANES 8
static inline __attribute__((always_inline)) void q4_sse_n(const float *w, uint64_t n, const uint16_t *h, const int *z,
                                                           int nc, float *e) {
    float ss[Q4_LANES], zz[Q4_LANES], inv[Q4_LANES], acc[Q4_LANES];
    for (int k = 0; k < Q4_LANES; k++) {
        ss[k] = k < nc ? vz_f16_to_f32(h[k]) : 0.0f, zz[k] = k < nc ? (float)z[k] : 0.0f;
        inv[k] = ss[k] != 0 ? 1.0f / ss[k] : 0.0f, acc[k] = 0.0f;
    }
    for (uint64_t i = 0; i < n; i++) {
        const float x = w[i];
        for (int k = 0; k < Q4_LANES; k++) {
            float q = q4_rint(x * inv[k]) + zz[k];
            q = q < 0 ? 0 : q > 15 ? 15 : q;
            const float d = x - (q - zz[k]) * ss[k];
            acc[k] += d * d;
        }
    }
    for (int k = 0; k < nc; k++) e[k] = acc[k];
}

/* Chooses (scale bits, zero) of one group; variant as Q4_DEFAULT_VARIANT:
 * the candidates in search order, their errors, the first smallest. */
static inline __attribute__((always_inline)) void q4_fit(const float *w, uint64_t n, int variant, uint16_t *sh,
                                                         int *zp) {
    float mn = w[0], mx = w[0], m = w[0];
    for (uint64_t i = 1; i < n; i++) {
        /* fminf / fmaxf without the libm calls: no NaN gets here, and the
         * sign of a zero extreme changes neither level 3's scale nor its zero */
        mn = w[i] < mn ? w[i] : mn;
        mx = w[i] > mx ? w[i] : mx;
        if (fabsf(w[i]) > fabsf(m)) m = w[i];
    }
    uint16_t hs[2 * Q4_SEARCH];
    float e[2 * Q4_SEARCH];
    int zs[2 * Q4_SEARCH], nc = 0;
    for (int j = 0; j < (variant == 1 ? 1 : variant == 2 ? 2 * Q4_SEARCH : Q4_SEARCH); j++) {
        double f = 1.0 - 0.02 * (j / (variant == 3 ? 1 : 2));
        int z = 8;
        uint16_t h;
        if (variant == 3) {
            double lo = fmin(mn, 0) * f, hi = fmax(mx, 0) * f;
            h = vz_f16_ceil((hi - lo) / 15.0);
            float sc = vz_f16_to_f32(h);
            z = sc > 0 ? (int)lrint(-lo / sc) : 0;
            z = z < 0 ? 0 : z > 15 ? 15 : z;
        } else { /* the extreme value maps to code 0 (-8) or, odd j, to 15 (+7); s < 0 flips the grid */
            h = vz_f16_ceil(fabs((double)m) * f / (j & 1 ? 7.0 : 8.0));
            if ((m > 0) == !(j & 1)) h |= 0x8000u;
        }
        if ((h & 0x7fffu) >= 0x7c00u) continue;
        hs[nc] = h, zs[nc] = z, nc++;
    }
    for (int k0 = 0; k0 < nc; k0 += Q4_LANES)
        q4_sse_n(w, n, hs + k0, zs + k0, nc - k0 < Q4_LANES ? nc - k0 : Q4_LANES, e + k0);
    double best = INFINITY;
    *sh = 0;
    *zp = 8;
    for (int k = 0; k < nc; k++)
        if ((double)e[k] < best) best = e[k], *sh = hs[k], *zp = zs[k];
}

static uint32_t q4_group_opt(const vz_codec_opts *o, int64_t cols) {
    if (!o || o->group == 0) return Q4_DEFAULT_GROUP;
    return o->group < 0 ? (uint32_t)cols : (uint32_t)o->group;
}

/* Quantizes row r: per group the searched scale (and zero), then codes. */
static inline __attribute__((always_inline)) void q4_row(const void *src, vz_dtype dtype, uint64_t r, uint64_t cols,
                                                         const q4_geom *g, int variant, float *buf, uint8_t *data) {
    for (uint64_t gi = 0; gi < g->gpr; gi++) {
        uint64_t c0 = gi * g->group, n = cols - c0 < g->group ? cols - c0 : g->group;
        for (uint64_t i = 0; i < n; i++) buf[i] = vz_elem_f32(src, dtype, r * cols + c0 + i);
        uint16_t sh;
        int z;
        q4_fit(buf, n, variant, &sh, &z);
        vz_st16(data + g->scales + 2 * (r * g->gpr + gi), sh);
        if (g->asym) data[g->zeros + r * g->gpr + gi] = (uint8_t)z;
        float s = vz_f16_to_f32(sh);
        for (uint64_t i = 0; i < n; i++)
            data[r * g->stride + (c0 + i) / 2] |= (uint8_t)(q4_code(buf[i], s, z) << 4 * ((c0 + i) & 1));
    }
}

/* q4_row compiled for the baseline and, on x86, for AVX2, where the
 * search's 8 candidates are one 256-bit vector instead of two SSE halves:
 * the same operations lane by lane (no FMA: -ffp-contract=off), so the
 * same bytes. The AVX2 one runs when the CPU kernel set (cpu_kernels.h) is
 * not the generic one, so vz_cpu_kernels_force picks either (test_codecs
 * compares them). q4 of synth tinyllama-1.1b on 2 cores (AVX-512 EPYC):
 * 28.7 s -> 20.0 s, byte-identical; 16 candidates per AVX-512 vector were
 * no faster there (20.4 s). */
typedef void (*q4_row_fn)(const void *, vz_dtype, uint64_t, uint64_t, const q4_geom *, int, float *, uint8_t *);
static void q4_row_base(const void *src, vz_dtype dtype, uint64_t r, uint64_t cols, const q4_geom *g, int variant,
                        float *buf, uint8_t *data) {
    q4_row(src, dtype, r, cols, g, variant, buf, data);
}
#if VZ_HALF_X86
static __attribute__((target("avx2"))) void q4_row_avx2(const void *src, vz_dtype dtype, uint64_t r, uint64_t cols,
                                                        const q4_geom *g, int variant, float *buf, uint8_t *data) {
    q4_row(src, dtype, r, cols, g, variant, buf, data);
}
#endif

static q4_row_fn q4_row_pick(void) {
#if VZ_HALF_X86
    if (vz_cpu_kernels_get() != vz_cpu_kernels_at(0)) return q4_row_avx2; /* every x86 set beyond 0 has AVX2 */
#endif
    return q4_row_base;
}

/* Column of row r's first element that is not finite or beyond 65504 * 7
 * in magnitude, or -1. */
static int64_t q4_row_bad(const void *src, vz_dtype dtype, uint64_t r, uint64_t cols) {
    for (uint64_t c = 0; c < cols; c++) {
        const float w = vz_elem_f32(src, dtype, r * cols + c);
        if (!isfinite(w) || fabsf(w) > 65504.0f * 7) return (int64_t)c;
    }
    return -1;
}

static vz_status q4_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                           vz_blob *out) {
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(o && o->code, VZ_ERR_ARG, "q4: option 'k%d' (code bits) is not used by this codec", (int)o->code);
    VZ_FAIL_IF(o && o->level && (o->level < 1 || o->level > 3), VZ_ERR_ARG,
               "q4: level %d not 1 (round to nearest), 2 (searched scale) or 3 (asymmetric)", o->level);
    int variant = o && o->level ? o->level : Q4_DEFAULT_VARIANT;
    uint32_t group = q4_group_opt(o, cols);
    q4_geom g;
    VZ_FAIL_IF(!vz_dtype_ok(dtype) || !q4_geom_init(&g, rows, cols, group, variant == 3), VZ_ERR_ARG,
               "q4: group %u invalid for %lldx%lld (a multiple of 32, or the row length)", group, (long long)rows,
               (long long)cols);
    /* every element finite and within an f16 scale's reach (|w| / 7 at
     * most: beyond 65504 * 7 none fits), rows checked in parallel; the
     * error names the first bad element in row-major order */
    const int par = (uint64_t)rows * (uint64_t)cols >= 65536;
    int64_t bad = rows;
#pragma omp parallel for schedule(static) reduction(min : bad) if (par)
    for (int64_t r = 0; r < rows; r++)
        if (q4_row_bad(src, dtype, (uint64_t)r, (uint64_t)cols) >= 0 && r < bad) bad = r;
    if (bad < rows) {
        const uint64_t c = (uint64_t)q4_row_bad(src, dtype, (uint64_t)bad, (uint64_t)cols);
        const float w = vz_elem_f32(src, dtype, (uint64_t)bad * (uint64_t)cols + c);
        VZ_FAIL_IF(!isfinite(w), VZ_ERR_ARG, "q4: element (%llu, %llu) is not finite", (unsigned long long)bad,
                   (unsigned long long)c);
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "q4: element (%llu, %llu) = %g too large for an f16 scale",
                       (unsigned long long)bad, (unsigned long long)c, w);
    }
    out->params_size = 8;
    out->params = calloc(8, 1);
    out->data = calloc(g.size, 1);
    out->size = g.size;
    if (!out->params || !out->data) { vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "q4: no memory"); }
    out->params[0] = 1;
    out->params[1] = (uint8_t)g.asym;
    vz_st32(out->params + 4, group);
    int nomem = 0;
    const q4_row_fn row = q4_row_pick();
#pragma omp parallel reduction(| : nomem) if (par)
    {
        float *buf = malloc(sizeof(float) * group);
        nomem = !buf;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            if (buf) row(src, dtype, (uint64_t)r, (uint64_t)cols, &g, variant, buf, out->data);
        free(buf);
    }
    if (nomem) { vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "q4: no memory"); }
    return VZ_OK;
}

static vz_status q4_check(const vz_tensor *t) {
    VZ_FAIL_IF(!t->params || t->params_size != 8, VZ_ERR_CODEC, "tensor %s: q4 params %u bytes, want 8", t->name,
               t->params ? t->params_size : 0);
    const uint8_t *p = t->params;
    VZ_FAIL_IF(p[0] != 1 || p[1] > 1 || p[2] || p[3], VZ_ERR_CODEC, "tensor %s: q4 version %u / flags %u invalid",
               t->name, p[0], p[1]);
    q4_geom g;
    uint32_t group = vz_le32(p + 4);
    VZ_FAIL_IF(!vz_dtype_ok(t->dtype) || !q4_geom_init(&g, t->rows, t->cols, group, p[1]), VZ_ERR_CODEC,
               "tensor %s: q4 group %u invalid for %lldx%lld", t->name, group, (long long)t->rows, (long long)t->cols);
    VZ_FAIL_IF(t->size != g.size, VZ_ERR_FORMAT, "tensor %s: q4 data %llu bytes, shape needs %llu", t->name,
               (unsigned long long)t->size, (unsigned long long)g.size);
    for (uint64_t i = 0; g.asym && i < (uint64_t)t->rows * g.gpr; i++)
        VZ_FAIL_IF(t->data[g.zeros + i] > 15, VZ_ERR_FORMAT, "tensor %s: q4 zero point %llu = %u > 15", t->name,
                   (unsigned long long)i, t->data[g.zeros + i]);
    return VZ_OK;
}

static vz_status q4_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    VZ_TRY(q4_check(t));
    VZ_FAIL_IF(r0 < 0 || r1 > t->rows || r0 > r1, VZ_ERR_ARG, "tensor %s: rows [%lld, %lld)", t->name, (long long)r0,
               (long long)r1);
    q4_geom g;
    q4_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4), t->params[1]);
    float *o = out;
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        for (uint64_t c = 0; c < cols; c++) {
            uint64_t gi = r * g.gpr + c / g.group;
            float s = vz_f16_to_f32(vz_le16(t->data + g.scales + 2 * gi));
            int z = g.asym ? t->data[g.zeros + gi] : 8;
            int q = (t->data[r * g.stride + c / 2] >> 4 * (c & 1)) & 15;
            o[(r - (uint64_t)r0) * cols + c] = (float)(q - z) * s;
        }
    return VZ_OK;
}

static void q4_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    q4_geom g;
    q4_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4), t->params[1]);
    const vz_cpu_kernels *kn = vz_cpu_kernels_get();
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        kn->q4(out + (r - (uint64_t)r0) * cols, t->data + r * g.stride, (size_t)cols, t->data + g.scales + 2 * r * g.gpr,
               g.asym ? t->data + g.zeros + r * g.gpr : NULL, g.group);
}

/* The matvec's dot: the rows through the kernel set's q4_dot_rows. */
static void q4_dot_f32(const vz_tensor *t, int64_t r0, int64_t r1, const float *x, float *y) {
    q4_geom g;
    q4_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4), t->params[1]);
    uint64_t r = (uint64_t)r0;
    vz_cpu_kernels_get()->q4_dot_rows(y, (size_t)(r1 - r0), t->data + r * g.stride, t->data + g.scales + 2 * r * g.gpr,
                                      g.asym ? t->data + g.zeros + r * g.gpr : NULL, (size_t)t->cols, g.group, x);
}

const vz_codec vz_codec_q4 = {
    .name = "q4",
    .id = VZ_CODEC_q4,
    .lossless = 0,
    .doc = "int4 symmetric, f16 scale per group of 32 with MSE-searched clipping (q4:g64, q4:g128)",
    .supports = q4_supports,
    .encode = q4_encode,
    .check = q4_check,
    .decode_ref = q4_decode_ref,
    .decode_f32 = q4_decode_f32,
    .dot_f32 = q4_dot_f32,
};
