/*
 * cpu_kernels.h - the vectorised inner loops of the codecs' decode_f32 (the
 * CPU fused matvec's decode): lossless code groups -> high bytes, byte
 * planes -> f32, q8 and q4 dequantization. Each kernel set exists as a
 * portable version and x86 AVX2 / AVX-512 versions; the fastest the CPU
 * supports is picked on the first call (as core/half_rows.c). Every version
 * gives exactly the bits of the scalar definitions written beside each
 * function below, which are those of the codecs' decode_ref (docs/codecs.md).
 */
#ifndef VZ_CODEC_CPU_KERNELS_H
#define VZ_CODEC_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vz_cpu_kernels {
    const char *name; /* "generic", "avx2", "avx512" */

    /* lossless: n whole 32-element code groups of k words each (layout 0 bit
     * planes, k = 1..8; layout 1 packed3, k = 3; docs/codecs.md section 1) at
     * codes -> h[32 * g + e] = lut[code of element e of group g]. lut has 256
     * entries (unused ones any value); codes is read for exactly 4 * k * n
     * bytes. */
    void (*ll_groups)(uint8_t *h, const uint8_t *codes, size_t n, int k, int layout, const uint8_t *lut);

    /* lossless bf16 without its exceptions, fused: n elements (any n >= 0)
     * whose codes are the ceil(n / 32) groups at codes (as ll_groups) ->
     * out[i] = bits(lut[code i] << 24 | lo[i] << 16). */
    void (*ll_bf16)(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                    const uint8_t *lut);

    /* bf16 from its two byte planes: out[i] = bits(h[i] << 24 | lo[i] << 16). */
    void (*bf16_planes)(float *out, const uint8_t *h, const uint8_t *lo, size_t n);

    /* f32 from four byte planes: out[i] = bits(h << 24 | b2 << 16 | b1 << 8 | b0). */
    void (*f32_planes)(float *out, const uint8_t *h, const uint8_t *b2, const uint8_t *b1, const uint8_t *b0,
                       size_t n);

    /* f16 words from two byte planes: out[i] = h[i] << 8 | lo[i]. */
    void (*u16_planes)(uint16_t *out, const uint8_t *h, const uint8_t *lo, size_t n);

    /* q8, one row of n elements in groups of `group` (the last may be
     * partial): out[i] = (float)(int8_t)q[i] * f16(scales[i / group]), the
     * scales f16 little-endian. */
    void (*q8)(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group);

    /* q4, one row: element i is nibble i & 1 (low first) of byte q[i / 2];
     * out[i] = (float)(nibble - z) * f16(scales[i / group]) with z =
     * zeros[i / group], or 8 when zeros is NULL. group is even or >= n. */
    void (*q4)(float *out, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros, size_t group);

    /* The products of a decoded row piece and x, summed in vz_dot's order
     * into its 16 partial sums: acc[i % 16] += a[i] * x[i] for i = 0, 1, ..
     * n - 1 in turn (one multiply, one add; the piece starts at a multiple
     * of 16 of the row). */
    void (*dot_acc)(float *acc, const float *a, const float *x, size_t n);

    /* lossless bf16 decode fused with the dot: the n elements (n <= 1024:
     * one exception block) that ll_bf16 decodes, the nexc exceptions at exc
     * patched in (u16 entries as in the file: offsets strictly increasing
     * and < n, as check guarantees; lut entries distinct), then as dot_acc:
     * acc[i % 16] += v[i] * x[i] in order. */
    void (*ll_bf16_dot)(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                        const uint8_t *lut, const uint8_t *exc, size_t nexc, const float *x);

    /* ll_bf16_dot over rows of one block each (n <= 1024), whole dots:
     * row r has its code groups at codes + r * cstride, its low bytes at
     * lo + r * n and its exceptions at entries [index32[r], index32[r + 1])
     * of exc (index: u32 little-endian, as the file's exception index);
     * y[r] = vz_dot_tree of its 16 partial sums. */
    void (*ll_bf16_dot_rows)(float *y, size_t rows, const uint8_t *codes, size_t cstride, const uint8_t *lo, size_t n,
                             int k, int layout, const uint8_t *lut, const uint8_t *index, const uint8_t *exc,
                             const float *x);

    /* Decode fused with the dot over whole rows of n elements (any n):
     * y[r] = vz_dot_tree of the 16 sums acc[i % 16] += v[i] * x[i], from
     * zero, i = 0 .. n - 1 in turn, over row r's decoded values v: vz_dot of
     * the decoded row, bit for bit. bf16_dot_rows: row r is the n bf16
     * words (little-endian) at src + 2 n r. q8_dot_rows / q4_dot_rows: the
     * values q8 / q4 define above, row r at q + n r (q4: q + ceil(n / 2) r),
     * its gpr = ceil(n / group) scales at scales + 2 gpr r (q4's zero
     * points, if any, at zeros + gpr r); group a multiple of 16, or >= n.
     * The x86 versions keep the sums in registers: the weights stream from
     * memory once, with no row buffer. */
    void (*bf16_dot_rows)(float *y, size_t rows, const uint8_t *src, size_t n, const float *x);
    void (*q8_dot_rows)(float *y, size_t rows, const int8_t *q, const uint8_t *scales, size_t n, size_t group,
                        const float *x);
    void (*q4_dot_rows)(float *y, size_t rows, const uint8_t *q, const uint8_t *scales, const uint8_t *zeros, size_t n,
                        size_t group, const float *x);
} vz_cpu_kernels;

/* The fixed tree of vz_dot over its 16 partial sums (after dot_acc): halves
 * 8, 4, 2, 1. The one copy, used by vz_dot and the fused codec dots. */
static inline float vz_dot_tree(float *s) {
    for (int k = 0; k < 8; k++) s[k] += s[k + 8];
    for (int k = 0; k < 4; k++) s[k] += s[k + 4];
    s[0] += s[2];
    s[1] += s[3];
    return s[0] + s[1];
}

/* The set for this CPU (picked once; the pointer stays valid forever). */
const vz_cpu_kernels *vz_cpu_kernels_get(void);

/* All sets built in, and whether this CPU can run set i (tests). */
int vz_cpu_kernels_count(void);
const vz_cpu_kernels *vz_cpu_kernels_at(int i);
int vz_cpu_kernels_supported(int i);

/* Makes vz_cpu_kernels_get return set i (a supported one) from now on, so
 * tests can run the codecs' decode_f32 through each set; -1 restores the
 * automatic choice. Not for use while other threads decode. */
void vz_cpu_kernels_force(int i);

#endif
