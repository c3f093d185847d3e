/*
 * test_cpu_kernels.c - every kernel set of codec/cpu_kernels.c (generic,
 * AVX2, AVX-512: those this CPU runs) against scalar definitions written
 * here from docs/codecs.md, on random inputs, every length 0..70 and long
 * ones (odd lengths, partial groups), NaN/Inf/subnormal scales; and the
 * `lossless` decode_f32 through each set against decode_ref on hand-built
 * blobs of every k (1..8), both code layouts, every dtype, odd row lengths
 * and exception-free / exception-heavy / all-exception rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/cpu_kernels.h"
#include "backend/cpu/ops.h"

static uint8_t rbyte(uint64_t *s) { return (uint8_t)(vz_test_rand(s) >> 24); }

static void fill(uint8_t *p, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = rbyte(s);
}

static void same_bits(const float *got, const float *want, size_t n, const char *set, const char *what, size_t arg) {
    for (size_t i = 0; i < n; i++)
        if (vz_f32_bits(got[i]) != vz_f32_bits(want[i]))
            fail_msg("%s %s (%zu): [%zu] = %08x, want %08x", set, what, arg, i, vz_f32_bits(got[i]),
                     vz_f32_bits(want[i]));
}

/* Code of element e of a group (docs/codecs.md section 1, literally). */
/* Every layout of k-bit codes: 0 (bit planes) for any k, 1 (packed3) for
 * k = 3, 2 (packed4) for k = 4. */
#define FOR_LAYOUTS(k, layout) \
    for (int layout = 0; layout <= 2; layout++) \
        if (layout == 0 || layout == (k) - 2)

static unsigned spec_code(const uint8_t *grp, int k, int layout, int e) {
    unsigned c = 0;
    for (int b = 0; b < k; b++) {
        int bit;
        const uint8_t *w;
        if ((layout == 1 && e < 24) || layout == 2) { w = grp + 4 * (e / 8); bit = 4 * (e % 8) + b; }
        else if (layout == 1) { w = grp + 4 * b; bit = 4 * (e - 24) + 3; }
        else { w = grp + 4 * b; bit = e; }
        c |= (unsigned)((w[bit / 8] >> (bit % 8)) & 1) << b;
    }
    return c;
}

static void set_code(uint8_t *grp, int k, int layout, int e, unsigned code) {
    for (int b = 0; b < k; b++) {
        int bit;
        uint8_t *w;
        if ((layout == 1 && e < 24) || layout == 2) { w = grp + 4 * (e / 8); bit = 4 * (e % 8) + b; }
        else if (layout == 1) { w = grp + 4 * b; bit = 4 * (e - 24) + 3; }
        else { w = grp + 4 * b; bit = e; }
        w[bit / 8] = (uint8_t)((w[bit / 8] & ~(1u << (bit % 8))) | ((code >> b) & 1u) << (bit % 8));
    }
}

#define NMAX 2100

static void check_ll(const vz_cpu_kernels *kn, uint64_t *s) {
    static uint8_t codes[4 * 8 * (NMAX / 32 + 1) + 16], lo[NMAX], h[NMAX + 32], lut[256];
    static float got[NMAX], want[NMAX];
    static const size_t lens[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 1024, 1025, NMAX};
    for (int k = 1; k <= 8; k++)
        FOR_LAYOUTS(k, layout)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                size_t n = lens[li], ng = (n + 31) / 32;
                fill(codes, sizeof codes, s);
                fill(lo, sizeof lo, s);
                fill(lut, sizeof lut, s);
                kn->ll_groups(h, codes, ng, k, layout, lut);
                for (size_t i = 0; i < 32 * ng; i++) {
                    unsigned c = spec_code(codes + 4 * (size_t)k * (i / 32), k, layout, (int)(i % 32));
                    if (h[i] != lut[c]) fail_msg("%s ll_groups k %d layout %d: h[%zu] = %u, want lut[%u] = %u",
                                                 kn->name, k, layout, i, h[i], c, lut[c]);
                }
                for (size_t i = 0; i < n; i++) want[i] = vz_bits_f32((uint32_t)h[i] << 24 | (uint32_t)lo[i] << 16);
                memset(got, 0xa5, sizeof got);
                kn->ll_bf16(got, codes, lo, n, k, layout, lut);
                same_bits(got, want, n, kn->name, "ll_bf16", n);
                if (n < NMAX) assert_int_equal(vz_f32_bits(got[n]), 0xa5a5a5a5u); /* nothing written past n */
            }
}

static void check_planes(const vz_cpu_kernels *kn, uint64_t *s) {
    static uint8_t p[4][NMAX];
    static float got[NMAX], want[NMAX];
    static uint16_t w16[NMAX];
    for (size_t n = 0; n < NMAX; n = n < 70 ? n + 1 : n * 3 + 1) {
        for (int j = 0; j < 4; j++) fill(p[j], n, s);
        kn->bf16_planes(got, p[3], p[0], n);
        for (size_t i = 0; i < n; i++) want[i] = vz_bits_f32((uint32_t)p[3][i] << 24 | (uint32_t)p[0][i] << 16);
        same_bits(got, want, n, kn->name, "bf16_planes", n);
        kn->f32_planes(got, p[3], p[2], p[1], p[0], n);
        for (size_t i = 0; i < n; i++)
            want[i] = vz_bits_f32((uint32_t)p[3][i] << 24 | (uint32_t)p[2][i] << 16 | (uint32_t)p[1][i] << 8 | p[0][i]);
        same_bits(got, want, n, kn->name, "f32_planes", n);
        kn->u16_planes(w16, p[3], p[0], n);
        for (size_t i = 0; i < n; i++) assert_int_equal(w16[i], p[3][i] << 8 | p[0][i]);
    }
}

/* Scales: random f16 bits, so NaNs (signalling too), infinities, zeros and
 * subnormals all occur over the runs. */
static void check_quant(const vz_cpu_kernels *kn, uint64_t *s) {
    static uint8_t q[NMAX], scales[2 * NMAX], zeros[NMAX];
    static float got[NMAX], want[NMAX];
    static const size_t groups[] = {32, 64, 128, 0};
    for (size_t n = 1; n < NMAX; n = n < 70 ? n + 1 : n * 3 + 1)
        for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
            size_t group = groups[gi] ? groups[gi] : n; /* 0: one group per row, any length */
            fill(q, n, s);
            fill(scales, sizeof scales, s);
            for (size_t i = 0; i < NMAX; i++) zeros[i] = rbyte(s) & 15;
            kn->q8(got, (const int8_t *)q, n, scales, group);
            for (size_t i = 0; i < n; i++) want[i] = (float)(int8_t)q[i] * vz_f16_to_f32(vz_le16(scales + 2 * (i / group)));
            same_bits(got, want, n, kn->name, "q8", n);
            for (int asym = 0; asym <= 1; asym++) {
                kn->q4(got, q, n, scales, asym ? zeros : NULL, group);
                for (size_t i = 0; i < n; i++) {
                    int z = asym ? zeros[i / group] : 8;
                    want[i] = (float)(((q[i / 2] >> 4 * (i & 1)) & 15) - z) * vz_f16_to_f32(vz_le16(scales + 2 * (i / group)));
                }
                same_bits(got, want, n, kn->name, asym ? "q4 asym" : "q4", n);
            }
        }
}

/* The dot as vz_dot defines it, scalar: acc[i % 16] += a[i] * x[i] in order. */
static void ref_dot_acc(float *acc, const float *a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) acc[i % 16] += a[i] * x[i];
}

/* Sums are compared bit for bit, except that any NaN equals any NaN: which
 * NaN payload survives an add of two NaNs depends on the operand order the
 * compiler picks (vz_dot's versions differ there too); ordinary values,
 * infinities and signed zeros must match exactly. */
static int same_sum(float a, float b) { return vz_f32_bits(a) == vz_f32_bits(b) || (a != a && b != b); }

static void same_acc(const float *got, const float *want, const char *set, const char *what, size_t n, int k,
                     int layout, size_t nexc) {
    for (int j = 0; j < 16; j++)
        if (!same_sum(got[j], want[j]))
            fail_msg("%s %s n %zu k %d layout %d exceptions %zu: acc[%d] = %08x, want %08x", set, what, n, k, layout,
                     nexc, j, vz_f32_bits(got[j]), vz_f32_bits(want[j]));
}

/* dot_acc, ll_bf16_dot and ll_bf16_dot_rows against the spec: codes by
 * spec_code, exceptions H = (hi << k) | code at chosen offsets (none, a
 * few, every element), then the scalar sum, from random partial sums;
 * every k and layout, odd lengths and partial groups. */
enum { DMAX = 1024, DROWS = 3 };
static void check_ll_dot(const vz_cpu_kernels *kn, uint64_t *s) {
    static uint8_t codes[DROWS][4 * 8 * DMAX / 32], lo[DROWS * DMAX], lut[256], exc[2 * DROWS * DMAX], idx[4 * (DROWS + 1)];
    static float v[DROWS][DMAX], x[DMAX];
    static const size_t lens[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 96, 100, 255, 256, 688, 1000, 1023, DMAX};
    static const unsigned dens[] = {0, 9, 256}; /* exceptions per 256 elements */
    for (int k = 1; k <= 8; k++)
        FOR_LAYOUTS(k, layout)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
                for (size_t di = 0; di < sizeof dens / sizeof *dens; di++) {
                    size_t n = lens[li], ne = 0;
                    uint8_t used[256] = {0};
                    for (int c = 0; c < (1 << k);) { /* distinct lut (check's guarantee) */
                        uint8_t b = rbyte(s) & (k < 7 ? 0xbf : 0xff); /* k < 7: |values| < 2, sums finite */
                        if (!used[b]) used[b] = 1, lut[c++] = b;
                    }
                    fill(lut + (1 << k), 256 - (1u << k), s); /* unused entries: any value */
                    fill(lo, sizeof lo, s);
                    for (size_t i = 0; i < n; i++) x[i] = vz_test_randn(s);
                    for (int r = 0; r < DROWS; r++) {
                        fill(codes[r], sizeof codes[r], s);
                        vz_st32(idx + 4 * r, (uint32_t)ne);
                        for (size_t i = 0; i < n; i++) {
                            unsigned c = spec_code(codes[r] + 4 * (size_t)k * (i / 32), k, layout, (int)(i % 32));
                            unsigned h = lut[c];
                            if (k >= 2 && (vz_test_rand(s) & 255) < dens[di]) {
                                unsigned hi = (unsigned)vz_test_rand(s) % (256u >> k);
                                if (k < 7) hi &= ~(1u << (6 - k)); /* H bit 6 clear */
                                vz_st16(exc + 2 * ne++, (uint16_t)(hi << 10 | i));
                                h = (hi << k | c) & 255u;
                            }
                            v[r][i] = vz_bits_f32(h << 24 | (uint32_t)lo[r * DMAX + i] << 16);
                        }
                    }
                    vz_st32(idx + 4 * DROWS, (uint32_t)ne);
                    float want[DROWS][16], got[16], acc0[16], y[DROWS];
                    for (int j = 0; j < 16; j++) acc0[j] = vz_test_randn(s);
                    for (int r = 0; r < DROWS; r++) {
                        memcpy(want[r], acc0, sizeof acc0);
                        ref_dot_acc(want[r], v[r], x, n);
                        for (int j = 0; k < 7 && j < 16; j++)
                            if (want[r][j] != want[r][j]) fail_msg("k %d: NaN sum", k); /* the checks must bite */
                        memcpy(got, acc0, sizeof got);
                        kn->dot_acc(got, v[r], x, n);
                        same_acc(got, want[r], kn->name, "dot_acc", n, k, layout, 0);
                        uint32_t e0 = vz_le32(idx + 4 * r), e1 = vz_le32(idx + 4 * r + 4);
                        memcpy(got, acc0, sizeof got);
                        kn->ll_bf16_dot(got, codes[r], lo + r * DMAX, n, k, layout, lut, exc + 2 * e0, e1 - e0, x);
                        same_acc(got, want[r], kn->name, "ll_bf16_dot", n, k, layout, e1 - e0);
                    }
                    if (n == 0) continue;
                    /* rows: lows packed at stride n, codes at stride 4 k gpr */
                    size_t gs = 4 * (size_t)k * ((n + 31) / 32);
                    static uint8_t pc[DROWS * sizeof codes[0]], pl[DROWS * DMAX];
                    for (int r = 0; r < DROWS; r++) {
                        memcpy(pc + r * gs, codes[r], gs);
                        memcpy(pl + r * n, lo + r * DMAX, n);
                    }
                    memset(y, 0x5a, sizeof y);
                    kn->ll_bf16_dot_rows(y, DROWS, pc, gs, pl, n, k, layout, lut, idx, exc, x);
                    for (int r = 0; r < DROWS; r++) {
                        float w[16] = {0};
                        ref_dot_acc(w, v[r], x, n);
                        float wy = vz_dot_tree(w);
                        if (!same_sum(y[r], wy))
                            fail_msg("%s ll_bf16_dot_rows n %zu k %d layout %d: y[%d] = %08x, want %08x", kn->name, n, k,
                                     layout, r, vz_f32_bits(y[r]), vz_f32_bits(wy));
                    }
                }
}

/* bf16_dot_rows, q8_dot_rows and q4_dot_rows against the definition: each
 * row's values by the scalar formulas, summed by ref_dot_acc from zero and
 * the tree; 1..5 rows (whatever blocking a set does), every length 0..70
 * and long ones, every group form. finite: bf16 high bytes and f16 scales
 * with exponent bit 6 (bf16) / 4 (f16) clear, so no value is NaN or
 * infinite and no sum overflows (and a NaN sum fails); otherwise any bits. */
enum { FROWS = 5 };
static void check_fused_dots(const vz_cpu_kernels *kn, uint64_t *s) {
    static uint8_t q[2 * FROWS * NMAX], scales[2 * FROWS * NMAX], zeros[FROWS * NMAX];
    static float v[NMAX], x[NMAX];
    static const size_t groups[] = {32, 64, 128, 0};
    for (int finite = 0; finite <= 1; finite++)
        for (size_t n = 0; n < NMAX; n = n < 70 ? n + 1 : n * 3 + 1)
            for (size_t rows = 1; rows <= FROWS; rows += 2) {
                for (size_t i = 0; i < n; i++) x[i] = vz_test_randn(s);
                fill(q, sizeof q, s);
                fill(scales, sizeof scales, s);
                for (size_t i = 0; i < sizeof zeros; i++) zeros[i] = rbyte(s) & 15;
                if (finite) {
                    for (size_t i = 1; i < 2 * rows * n; i += 2) q[i] &= 0xbf;       /* bf16: |v| < 2 */
                    for (size_t i = 1; i < sizeof scales; i += 2) scales[i] &= 0xaf; /* f16: |s| < 2 */
                }
                float y[FROWS], want;
#define WANT(r, VALUE)                                                                                          \
    do {                                                                                                         \
        float acc[16] = {0};                                                                                     \
        for (size_t i = 0; i < n; i++) v[i] = (VALUE);                                                           \
        ref_dot_acc(acc, v, x, n);                                                                               \
        want = vz_dot_tree(acc);                                                                                 \
        if (finite && want != want) fail_msg("finite data: NaN sum"); /* the checks must bite */                 \
    } while (0)
#define SAME(what, r)                                                                                           \
    if (!same_sum(y[r], want))                                                                                   \
    fail_msg("%s %s n %zu group %zu rows %zu: y[%zu] = %08x, want %08x", kn->name, what, n, group, rows, r,        \
             vz_f32_bits(y[r]), vz_f32_bits(want))
                size_t group = 0;
                memset(y, 0x5a, sizeof y);
                if (2 * rows * n <= sizeof q) kn->bf16_dot_rows(y, rows, q, n, x);
                for (size_t r = 0; r < rows && 2 * rows * n <= sizeof q; r++) {
                    WANT(r, vz_bits_f32((uint32_t)vz_le16(q + 2 * (n * r + i)) << 16));
                    SAME("bf16_dot_rows", r);
                }
                for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
                    group = groups[gi] ? groups[gi] : n ? n : 1; /* 0: one group per row, any length */
                    size_t gpr = (n + group - 1) / group, qs = (n + 1) / 2;
                    memset(y, 0x5a, sizeof y);
                    kn->q8_dot_rows(y, rows, (const int8_t *)q, scales, n, group, x);
                    for (size_t r = 0; r < rows; r++) {
                        WANT(r, (float)(int8_t)q[n * r + i] * vz_f16_to_f32(vz_le16(scales + 2 * (gpr * r + i / group))));
                        SAME("q8_dot_rows", r);
                    }
                    for (int asym = 0; asym <= 1; asym++) {
                        memset(y, 0x5a, sizeof y);
                        kn->q4_dot_rows(y, rows, q, scales, asym ? zeros : NULL, n, group, x);
                        for (size_t r = 0; r < rows; r++) {
                            WANT(r, (float)(((q[qs * r + i / 2] >> 4 * (i & 1)) & 15) -
                                            (asym ? zeros[gpr * r + i / group] : 8)) *
                                        vz_f16_to_f32(vz_le16(scales + 2 * (gpr * r + i / group))));
                            SAME(asym ? "q4_dot_rows asym" : "q4_dot_rows", r);
                        }
                    }
                }
#undef WANT
#undef SAME
            }
}

static void test_kernel_sets(void **state) {
    (void)state;
    int ran = 0;
    for (int i = 0; i < vz_cpu_kernels_count(); i++) {
        if (!vz_cpu_kernels_supported(i)) continue;
        const vz_cpu_kernels *kn = vz_cpu_kernels_at(i);
        uint64_t s = 1000 + (uint64_t)i;
        for (int rep = 0; rep < 3; rep++) {
            check_ll(kn, &s);
            check_planes(kn, &s);
            check_quant(kn, &s);
        }
        check_ll_dot(kn, &s);
        check_fused_dots(kn, &s);
        ran++;
    }
    assert_true(ran >= 1);
    printf("kernel sets run: %d of %d\n", ran, vz_cpu_kernels_count());
}

/* A valid `lossless` blob built from the spec with a chosen k and layout:
 * each element's H is a lut entry, or with probability exc/256 (k >= 2) a
 * value outside the lut (an exception). Returns the source bytes. */
static uint8_t *ll_blob(vz_dtype d, int64_t rows, int64_t cols, int k, int layout, unsigned exc, int finite,
                        uint64_t *s, vz_blob *b) {
    uint64_t w = (uint64_t)vz_dtype_size(d), n = (uint64_t)(rows * cols), gpr = ((uint64_t)cols + 31) / 32;
    uint64_t bpr = ((uint64_t)cols + 1023) / 1024, codes = vz_al16(n * (w - 1));
    uint64_t index = vz_al16(codes + (uint64_t)rows * gpr * (uint64_t)k * 4), xs = vz_al16(index + 4 * ((uint64_t)rows * bpr + 1));
    uint8_t *src = malloc(n * w), is_lut[256] = {0}, lut[256];
    int code_of[256];
    b->params_size = 8u + (1u << k);
    b->params = calloc(b->params_size, 1);
    b->data = calloc(xs + 2 * n, 1);
    assert_true(src && b->params && b->data);
    b->params[0] = 1, b->params[1] = (uint8_t)k, b->params[2] = (uint8_t)layout;
    for (int i = 0; i < (1 << k);) { /* distinct random lut */
        uint8_t v = rbyte(s);
        if (is_lut[v] || (finite && k < 7 && (v & 0x40))) continue;
        is_lut[v] = 1, code_of[v] = i, lut[i] = v, b->params[8 + i++] = v;
    }
    uint64_t e = 0;
    for (uint64_t r = 0; r < (uint64_t)rows; r++)
        for (uint64_t c = 0; c < (uint64_t)cols; c++) {
            uint64_t i = r * (uint64_t)cols + c;
            uint8_t h = lut[vz_test_rand(s) % (1u << k)];
            if (k >= 2 && k < 8 && (vz_test_rand(s) & 255) < exc)
                do h = rbyte(s) & (finite ? 0xbf : 0xff); while (is_lut[h]);
            fill(src + i * w, w - 1, s);
            src[i * w + w - 1] = h;
            for (uint64_t j = 0; j + 1 < w; j++) b->data[j * n + i] = src[i * w + j];
            if (c % 1024 == 0) vz_st32(b->data + index + 4 * (r * bpr + c / 1024), (uint32_t)e);
            unsigned code = is_lut[h] ? (unsigned)code_of[h] : h & ((1u << k) - 1);
            if (!is_lut[h]) vz_st16(b->data + xs + 2 * e++, (uint16_t)((h >> k) << 10 | (c % 1024)));
            set_code(b->data + codes + (r * gpr + c / 32) * 4 * (uint64_t)k, k, layout, (int)(c % 32), code);
        }
    vz_st32(b->data + index + 4 * ((uint64_t)rows * bpr), (uint32_t)e);
    b->size = xs + 2 * e;
    return src;
}

/* finite: H bytes with bit 6 clear (k < 7), so no element is NaN or
 * infinite and no sum overflows: then the fused dot_f32 is also checked. */
static void check_ll_blob(vz_dtype d, int64_t rows, int64_t cols, int k, int layout, unsigned exc, int finite,
                          uint64_t *s) {
    const vz_codec *c = vz_codec_by_name("lossless");
    vz_blob b;
    uint8_t *src = ll_blob(d, rows, cols, k, layout, exc, finite, s, &b);
    vz_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "blob.k%d.l%d", k, layout);
    t.ndim = 2, t.shape[0] = t.rows = rows, t.shape[1] = t.cols = cols;
    t.dtype = d, t.codec = c->id, t.data = b.data, t.size = b.size, t.params = b.params, t.params_size = b.params_size;
    if (c->check(&t) != VZ_OK) fail_msg("k %d layout %d %lldx%lld: check: %s", k, layout, (long long)rows, (long long)cols, vz_last_error());
    uint64_t n = (uint64_t)(rows * cols), w = (uint64_t)vz_dtype_size(d);
    uint8_t *ref = malloc(n * w);
    float *want = malloc(n * 4), *got = malloc(n * 4), *x = malloc((size_t)cols * 4);
    for (int64_t i = 0; i < cols; i++) x[i] = vz_test_randn(s);
    assert_int_equal(c->decode_ref(&t, 0, rows, ref), VZ_OK);
    assert_memory_equal(ref, src, n * w); /* the blob is what the spec says */
    for (uint64_t i = 0; i < n; i++) want[i] = vz_elem_f32(ref, d, i);
    for (int i = 0; i < vz_cpu_kernels_count(); i++) {
        if (!vz_cpu_kernels_supported(i)) continue;
        vz_cpu_kernels_force(i);
        memset(got, 0x5a, n * 4);
        c->decode_f32(&t, 0, rows, got);
        same_bits(got, want, n, vz_cpu_kernels_at(i)->name, "lossless decode_f32 k", (size_t)k);
        if (rows > 1) { /* a row range on its own */
            memset(got, 0x5a, n * 4);
            c->decode_f32(&t, 1, rows, got);
            same_bits(got, want + cols, n - (uint64_t)cols, vz_cpu_kernels_at(i)->name, "lossless rows 1.. k", (size_t)k);
        }
        /* the fused dot: vz_dot of each decode_ref row, bit for bit (rows 0.. and 1..) */
        for (int64_t r0 = 0; finite && r0 < 2 && r0 < rows; r0++) {
            memset(got, 0x5a, (size_t)rows * 4);
            c->dot_f32(&t, r0, rows, x, got);
            for (int64_t r = r0; r < rows; r++) {
                float wd = vz_dot(want + r * cols, x, cols);
                if (k < 7 && wd != wd) fail_msg("finite blob k %d: NaN sum", k); /* the check must bite */
                if (!same_sum(got[r - r0], wd))
                    fail_msg("%s lossless dot_f32 %s k %d layout %d %lldx%lld rows %lld..: row %lld = %08x, want %08x",
                             vz_cpu_kernels_at(i)->name, vz_dtype_name(d), k, layout, (long long)rows, (long long)cols,
                             (long long)r0, (long long)r, vz_f32_bits(got[r - r0]), vz_f32_bits(wd));
            }
        }
    }
    vz_cpu_kernels_force(-1);
    free(ref), free(want), free(got), free(src), free(x);
    vz_blob_free(&b);
}

static void test_lossless_blobs(void **state) {
    (void)state;
    static const vz_dtype dts[3] = {VZ_DTYPE_BF16, VZ_DTYPE_F16, VZ_DTYPE_F32};
    static const int64_t shapes[][2] = {{3, 1}, {2, 31}, {2, 33}, {3, 100}, {2, 1023}, {2, 1025}, {2, 2100}};
    static const unsigned excs[] = {0, 8, 256};
    uint64_t s = 77;
    for (int di = 0; di < 3; di++)
        for (int k = 1; k <= 8; k++)
            FOR_LAYOUTS(k, layout)
                for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
                    for (size_t ei = 0; ei < sizeof excs / sizeof *excs; ei++)
                        for (int finite = 0; finite <= 1; finite++)
                            check_ll_blob(dts[di], shapes[si][0], shapes[si][1], k, layout, excs[ei], finite, &s);
}

/* Every codec's dot_f32 through every kernel set against vz_dot of its
 * decode_f32 rows, bit for bit (rows 0.. and 1..): raw bf16 / f16 / f32,
 * q8 and q4 in each group form (q4 also asymmetric), on random normal
 * weights of odd shapes. */
static void check_codec_dot(const char *codec, vz_dtype d, int64_t rows, int64_t cols, vz_codec_opts o, uint64_t *s) {
    const vz_codec *c = vz_codec_by_name(codec);
    uint64_t n = (uint64_t)(rows * cols), es = (uint64_t)vz_dtype_size(d);
    uint8_t *src = malloc(n * es);
    float *dec = malloc(n * 4), *x = malloc((size_t)cols * 4), *y = malloc((size_t)rows * 4);
    for (uint64_t i = 0; i < n; i++) {
        float w = vz_test_randn(s) * 0.05f;
        if (d == VZ_DTYPE_F32) memcpy(src + 4 * i, &w, 4);
        else vz_st16(src + 2 * i, d == VZ_DTYPE_BF16 ? vz_f32_to_bf16(w) : vz_f32_to_f16(w));
    }
    for (int64_t i = 0; i < cols; i++) x[i] = vz_test_randn(s);
    vz_blob b;
    if (c->encode(src, d, rows, cols, &o, &b) != VZ_OK) fail_msg("%s %lldx%lld: encode: %s", codec, (long long)rows, (long long)cols, vz_last_error());
    vz_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "dot.%s", codec);
    t.ndim = 2, t.shape[0] = t.rows = rows, t.shape[1] = t.cols = cols;
    t.dtype = d, t.codec = c->id, t.data = b.data, t.size = b.size, t.params = b.params, t.params_size = b.params_size;
    assert_int_equal(c->check(&t), VZ_OK);
    assert_non_null(c->dot_f32);
    for (int i = 0; i < vz_cpu_kernels_count(); i++) {
        if (!vz_cpu_kernels_supported(i)) continue;
        vz_cpu_kernels_force(i);
        c->decode_f32(&t, 0, rows, dec);
        for (int64_t r0 = 0; r0 < 2 && r0 < rows; r0++) {
            memset(y, 0x5a, (size_t)rows * 4);
            c->dot_f32(&t, r0, rows, x, y);
            for (int64_t r = r0; r < rows; r++) {
                float want = vz_dot(dec + r * cols, x, cols);
                if (want != want) fail_msg("%s: NaN sum", codec); /* finite weights: the check must bite */
                if (vz_f32_bits(y[r - r0]) != vz_f32_bits(want))
                    fail_msg("%s %s %s g%d l%d %lldx%lld rows %lld..: row %lld = %08x, want %08x", vz_cpu_kernels_at(i)->name,
                             codec, vz_dtype_name(d), o.group, o.level, (long long)rows, (long long)cols, (long long)r0,
                             (long long)r, vz_f32_bits(y[r - r0]), vz_f32_bits(want));
            }
        }
    }
    vz_cpu_kernels_force(-1);
    vz_blob_free(&b);
    free(src), free(dec), free(x), free(y);
}

static void test_codec_dots(void **state) {
    (void)state;
    static const int64_t shapes[][2] = {{3, 1},    {2, 31},   {3, 33},   {5, 100},
                                        {2, 1023}, {6, 2048}, {3, 2100}, {2, 4113}}; /* > 4096: x on the heap */
    static const vz_dtype dts[3] = {VZ_DTYPE_BF16, VZ_DTYPE_F16, VZ_DTYPE_F32};
    uint64_t s = 91;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        for (int di = 0; di < 3; di++) check_codec_dot("raw", dts[di], rows, cols, (vz_codec_opts){0, 0, 0}, &s);
        static const int32_t groups[] = {32, 128, -1}; /* -1: one group per row */
        for (size_t gi = 0; gi < 3; gi++) {
            check_codec_dot("q8", VZ_DTYPE_BF16, rows, cols, (vz_codec_opts){groups[gi], 0, 0}, &s);
            for (int level = 1; level <= 3; level += 2) /* symmetric, asymmetric */
                check_codec_dot("q4", VZ_DTYPE_BF16, rows, cols, (vz_codec_opts){groups[gi], level, 0}, &s);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_sets),
        cmocka_unit_test(test_lossless_blobs),
        cmocka_unit_test(test_codec_dots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
