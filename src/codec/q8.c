/*
 * q8.c - codec 4 `q8`: int8 weight-only quantization, symmetric, one f16
 * scale per group of `group` consecutive elements of a row (the last group
 * of a row may be partial). value = (float)q * (float)scale in f32, exact, so
 * every decoder (reference, CPU, GPU) gives the same bits. docs/codecs.md
 * section 4 is the normative layout.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/cpu_kernels.h"

#define Q8_DEFAULT_GROUP 128

typedef struct q8_geom {
    uint64_t n, gpr, scales, size;
    uint32_t group;
} q8_geom;

/* group: a multiple of 32 (a GPU lane's 32-element slice has one scale) or
 * exactly cols (one scale per row). */
static int q8_geom_init(q8_geom *g, int64_t rows, int64_t cols, uint32_t group) {
    if (rows < 1 || cols < 1 || group < 1 || group > (1u << 24)) return 0;
    if (group % 32 != 0 && (int64_t)group != cols) return 0;
    g->group = group;
    g->gpr = ((uint64_t)cols + group - 1) / group;
    if (!vz_mul_ok((uint64_t)rows, (uint64_t)cols, &g->n) || g->n > ((uint64_t)1 << 40)) return 0;
    g->scales = vz_al16(g->n);
    g->size = g->scales + (uint64_t)rows * g->gpr * 2;
    return 1;
}

static int q8_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    q8_geom g;
    return vz_dtype_ok(dtype) && q8_geom_init(&g, rows, cols, (uint32_t)cols);
}

static uint32_t q8_group_opt(const vz_codec_opts *o, int64_t cols) {
    if (!o || o->group == 0) return Q8_DEFAULT_GROUP;
    return o->group < 0 ? (uint32_t)cols : (uint32_t)o->group;
}

/* Quantizes row r into data. Returns 0, or 1 at the first group that fails:
 * *bad_c is then the column of its non-finite element, or -1 when its |w|
 * maximum *amax_out needs a scale beyond f16. */
static int q8_row(const void *src, vz_dtype dtype, uint64_t r, uint64_t cols, const q8_geom *g, uint8_t *data,
                  int64_t *bad_c, double *amax_out) {
    for (uint64_t gi = 0; gi < g->gpr; gi++) {
        uint64_t c0 = gi * g->group, c1 = c0 + g->group < cols ? c0 + g->group : cols;
        double amax = 0;
        for (uint64_t c = c0; c < c1; c++) {
            float w = vz_elem_f32(src, dtype, r * cols + c);
            if (!isfinite(w)) return *bad_c = (int64_t)c, 1;
            const double a = fabs((double)w);
            amax = a > amax ? a : amax; /* fmax without the libm call (no NaN here) */
        }
        uint16_t sh = vz_f16_ceil(amax / 127.0);
        if (sh >= 0x7c00u) return *bad_c = -1, *amax_out = amax, 1;
        double s = vz_f16_to_f32(sh);
        vz_st16(data + g->scales + 2 * (r * g->gpr + gi), sh);
        for (uint64_t c = c0; c < c1; c++) {
            double w = vz_elem_f32(src, dtype, r * cols + c);
            long q = s > 0 ? (long)vz_rint_small(w / s) : 0; /* |w / s| <= 127: the scale covers the maximum */
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            data[r * cols + c] = (uint8_t)(int8_t)q;
        }
    }
    return 0;
}

/* Rows are independent, so threads split them (the bytes do not depend on
 * how); an error names the first failing row, as a serial pass would. */
static vz_status q8_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                           vz_blob *out) {
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(o && o->code, VZ_ERR_ARG, "q8: option 'k%d' (code bits) is not used by this codec", (int)o->code);
    VZ_FAIL_IF(o && o->level, VZ_ERR_ARG, "q8: option '%d' (level) is not used by this codec (only gN)",
               (int)o->level);
    q8_geom g;
    uint32_t group = q8_group_opt(o, cols);
    VZ_FAIL_IF(!vz_dtype_ok(dtype) || !q8_geom_init(&g, rows, cols, group), VZ_ERR_ARG,
               "q8: group %u invalid for %lldx%lld (a multiple of 32, or the row length)", group, (long long)rows,
               (long long)cols);
    out->params_size = 8;
    out->params = calloc(8, 1);
    out->size = g.size;
    out->data = calloc(g.size, 1);
    if (!out->params || !out->data) { vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "q8: no memory"); }
    out->params[0] = 1;
    vz_st32(out->params + 4, group);
    int64_t bad = rows;
#pragma omp parallel for schedule(static) reduction(min : bad) if (g.n >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        int64_t c;
        double amax;
        if (q8_row(src, dtype, (uint64_t)r, (uint64_t)cols, &g, out->data, &c, &amax) && r < bad) bad = r;
    }
    if (bad == rows) return VZ_OK;
    int64_t c = -1;
    double amax = 0;
    q8_row(src, dtype, (uint64_t)bad, (uint64_t)cols, &g, out->data, &c, &amax);
    vz_blob_free(out);
    if (c >= 0)
        return VZ_FAIL(VZ_ERR_ARG, "q8: element (%llu, %llu) is not finite", (unsigned long long)bad,
                       (unsigned long long)c);
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "q8: row %llu: |w| up to %g needs a scale beyond f16", (unsigned long long)bad,
                   amax);
}

static vz_status q8_check(const vz_tensor *t) {
    VZ_FAIL_IF(!t->params || t->params_size != 8, VZ_ERR_CODEC, "tensor %s: q8 params %u bytes, want 8", t->name,
               t->params ? t->params_size : 0);
    const uint8_t *p = t->params;
    VZ_FAIL_IF(p[0] != 1 || p[1] || p[2] || p[3], VZ_ERR_CODEC, "tensor %s: q8 version %u or reserved bytes not 0",
               t->name, p[0]);
    q8_geom g;
    uint32_t group = vz_le32(p + 4);
    VZ_FAIL_IF(!vz_dtype_ok(t->dtype) || !q8_geom_init(&g, t->rows, t->cols, group), VZ_ERR_CODEC,
               "tensor %s: q8 group %u invalid for %lldx%lld", t->name, group, (long long)t->rows, (long long)t->cols);
    VZ_FAIL_IF(t->size != g.size, VZ_ERR_FORMAT, "tensor %s: q8 data %llu bytes, shape needs %llu", t->name,
               (unsigned long long)t->size, (unsigned long long)g.size);
    return VZ_OK;
}

static vz_status q8_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    VZ_TRY(q8_check(t));
    VZ_FAIL_IF(r0 < 0 || r1 > t->rows || r0 > r1, VZ_ERR_ARG, "tensor %s: rows [%lld, %lld)", t->name, (long long)r0,
               (long long)r1);
    q8_geom g;
    q8_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4));
    float *o = out;
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        for (uint64_t c = 0; c < cols; c++) {
            float s = vz_f16_to_f32(vz_le16(t->data + g.scales + 2 * (r * g.gpr + c / g.group)));
            int8_t q = (int8_t)t->data[r * cols + c];
            o[(r - (uint64_t)r0) * cols + c] = (float)q * s;
        }
    return VZ_OK;
}

static void q8_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    q8_geom g;
    q8_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4));
    const vz_cpu_kernels *kn = vz_cpu_kernels_get();
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        kn->q8(out + (r - (uint64_t)r0) * cols, (const int8_t *)(t->data + r * cols), (size_t)cols,
               t->data + g.scales + 2 * r * g.gpr, g.group);
}

/* The matvec's dot: the rows through the kernel set's q8_dot_rows. */
static void q8_dot_f32(const vz_tensor *t, int64_t r0, int64_t r1, const float *x, float *y) {
    q8_geom g;
    q8_geom_init(&g, t->rows, t->cols, vz_le32(t->params + 4));
    uint64_t cols = (uint64_t)t->cols, r = (uint64_t)r0;
    vz_cpu_kernels_get()->q8_dot_rows(y, (size_t)(r1 - r0), (const int8_t *)(t->data + r * cols),
                                      t->data + g.scales + 2 * r * g.gpr, (size_t)cols, g.group, x);
}

const vz_codec vz_codec_q8 = {
    .name = "q8",
    .id = VZ_CODEC_q8,
    .lossless = 0,
    .doc = "int8 symmetric, f16 scale per group (q8:g128 default; g32..g256, g-1 = per row)",
    .supports = q8_supports,
    .encode = q8_encode,
    .check = q8_check,
    .decode_ref = q8_decode_ref,
    .decode_f32 = q8_decode_f32,
    .dot_f32 = q8_dot_f32,
};
