/*
 * cpu_kernels.c - vectorised decode loops of the codecs (see cpu_kernels.h).
 * Each kernel has a scalar version (the definition, also the fallback and
 * the tail of every vector loop) and x86 versions written with AVX2 /
 * AVX-512 intrinsics (GCC 12 turns u8 -> u32 vector-extension conversions
 * into scalar code, so they are not used here). Integer -> float conversions
 * are exact and each element gets one f32 multiply, so every version equals
 * the scalar one bit for bit. The lossless code groups: packed3 codes are
 * nibbles; bit planes are spread to bytes with a shuffle and a compare; the
 * lut is applied with pshufb (16-entry quarters blended for k = 5, 6).
 * tests/test_cpu_kernels.c checks every set against the scalar one.
 */
#include "codec/cpu_kernels.h"

#include <string.h>

#include "codec/bits.h"
#include "core/half_rows.h"
#include "core/io.h"

#define AI inline __attribute__((always_inline))

/* Scalar code-group decode (the definition; docs/codecs.md section 1). */
static void ll_groups_generic(uint8_t *h, const uint8_t *codes, size_t n, int k, int layout, const uint8_t *lut) {
    for (size_t g = 0; g < n; g++, codes += 4 * k, h += 32) {
        uint32_t w[8];
        for (int b = 0; b < k; b++) w[b] = vz_le32(codes + 4 * b);
        if (layout == 1) {
            for (int e = 0; e < 24; e++) h[e] = lut[(w[e >> 3] >> 4 * (e & 7)) & 7u];
            for (int m = 0; m < 8; m++)
                h[24 + m] = lut[((w[0] >> (4 * m + 3)) & 1u) | ((w[1] >> (4 * m + 3)) & 1u) << 1 |
                                ((w[2] >> (4 * m + 3)) & 1u) << 2];
            continue;
        }
        for (int e = 0; e < 32; e++) {
            unsigned c = 0;
            for (int b = 0; b < k; b++) c |= ((w[b] >> e) & 1u) << b;
            h[e] = lut[c];
        }
    }
}

static void bf16_planes_generic(float *out, const uint8_t *h, const uint8_t *lo, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 24 | (uint32_t)lo[i] << 16;
        memcpy(out + i, &u, 4);
    }
}

static void f32_planes_generic(float *out, const uint8_t *h, const uint8_t *b2, const uint8_t *b1, const uint8_t *b0,
                               size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 24 | (uint32_t)b2[i] << 16 | (uint32_t)b1[i] << 8 | b0[i];
        memcpy(out + i, &u, 4);
    }
}

static void u16_planes_generic(uint16_t *out, const uint8_t *h, const uint8_t *lo, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = (uint16_t)(h[i] << 8 | lo[i]);
}

static void ll_bf16_generic(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                            const uint8_t *lut) {
    uint8_t h[1024];
    for (size_t i = 0; i < n; i += 1024, codes += 4 * (size_t)k * 32, lo += 1024, out += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        ll_groups_generic(h, codes, (m + 31) / 32, k, layout, lut);
        bf16_planes_generic(out, h, lo, m);
    }
}

/* The group loop of a q8/q4 row around a per-group body BODY(o, q, len, s, z)
 * (q: the group's first byte; q4 groups start at even elements). */
#define QROW(BODY, QSTEP)                                                                                         \
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {                                                     \
        size_t len = n - c0 < group ? n - c0 : group;                                                             \
        BODY(out + c0, q + c0 / (QSTEP), len, vz_f16_to_f32_fast(vz_le16(scales + 2 * gi)), zeros ? zeros[gi] : 8); \
    }

static inline void q8_group_generic(float *out, const int8_t *q, size_t n, float s, int z) {
    (void)z;
    for (size_t i = 0; i < n; i++) out[i] = (float)q[i] * s;
}

static inline void q4_group_generic(float *out, const uint8_t *q, size_t n, float s, int z) {
    for (size_t i = 0; i < n; i++) out[i] = (float)(((q[i / 2] >> 4 * (i & 1)) & 15) - z) * s;
}

static void q8_generic(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group) {
    const uint8_t *zeros = NULL;
    QROW(q8_group_generic, 1)
}

static void q4_generic(float *out, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros,
                       size_t group) {
    QROW(q4_group_generic, 2)
}

#if VZ_HALF_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx2,avx512f")))

/* h = lut[c] for 32 codes c < 64: pshufb on the four 16-entry quarters of
 * the lut, blended by code bits 4 and 5 (moved to each byte's top bit). */
static AVX2 AI __m256i lut64(__m256i c, const __m256i t[4], int k) {
    if (k <= 4) return _mm256_shuffle_epi8(t[0], c);
    __m256i b4 = _mm256_slli_epi16(c, 3), b5 = _mm256_slli_epi16(c, 2);
    __m256i lo = _mm256_blendv_epi8(_mm256_shuffle_epi8(t[0], c), _mm256_shuffle_epi8(t[1], c), b4);
    if (k == 5) return lo;
    __m256i hi = _mm256_blendv_epi8(_mm256_shuffle_epi8(t[2], c), _mm256_shuffle_epi8(t[3], c), b4);
    return _mm256_blendv_epi8(lo, hi, b5);
}

/* Codes of one packed3 group: elements 0..23 are the nibbles of w0..w2 in
 * order (bit 3 belongs to elements 24..31); gathering those bits into a
 * fourth word t makes all 32 codes the nibbles of (w0, w1, w2, t). */
static AVX2 AI __m256i packed3_codes(const uint8_t *grp) {
    uint32_t w0 = vz_le32(grp), w1 = vz_le32(grp + 4), w2 = vz_le32(grp + 8);
    uint32_t t = (w0 >> 3 & 0x11111111u) | (w1 >> 3 & 0x11111111u) << 1 | (w2 >> 3 & 0x11111111u) << 2;
    __m128i v = _mm_set_epi32((int)t, (int)w2, (int)w1, (int)w0), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m), seven = _mm_set1_epi8(7);
    __m128i c0 = _mm_and_si128(_mm_unpacklo_epi8(lo, hi), seven), c1 = _mm_and_si128(_mm_unpackhi_epi8(lo, hi), seven);
    return _mm256_set_m128i(c1, c0);
}

/* Codes of one bit-plane group: byte e of the broadcast word b tests bit e. */
static AVX2 AI __m256i planes_codes(const uint8_t *grp, int k) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                            3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bitsel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i acc = _mm256_setzero_si256();
    for (int b = 0; b < k; b++) {
        __m256i x = _mm256_shuffle_epi8(_mm256_set1_epi32((int)vz_le32(grp + 4 * b)), spread);
        x = _mm256_cmpeq_epi8(_mm256_and_si256(x, bitsel), bitsel);
        acc = _mm256_or_si256(acc, _mm256_and_si256(x, _mm256_set1_epi8((char)(1 << b))));
    }
    return acc;
}

static AVX2 void ll_groups_avx2(uint8_t *h, const uint8_t *codes, size_t n, int k, int layout, const uint8_t *lut) {
    if (k > 6) { /* valid but never written by the encoder: codes as bytes, then the lut */
        for (size_t g = 0; g < n; g++, codes += 4 * k, h += 32) {
            uint8_t c[32];
            _mm256_storeu_si256((__m256i *)(void *)c, planes_codes(codes, k));
            for (int e = 0; e < 32; e++) h[e] = lut[c[e]];
        }
        return;
    }
    __m256i t[4];
    for (int q = 0; q < 4; q++) t[q] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(lut + 16 * q)));
    if (layout == 1) {
        for (size_t g = 0; g < n; g++, codes += 12, h += 32)
            _mm256_storeu_si256((__m256i *)(void *)h, _mm256_shuffle_epi8(t[0], packed3_codes(codes)));
        return;
    }
    for (size_t g = 0; g < n; g++, codes += 4 * k, h += 32)
        _mm256_storeu_si256((__m256i *)(void *)h, lut64(planes_codes(codes, k), t, k));
}

#define LD128(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define LD64(p) _mm_loadl_epi64((const __m128i *)(const void *)(p))

/* 16 bytes of two planes -> 16 words hi << 8 | lo, in element order. */
static AVX2 AI __m256i words16(const uint8_t *h, const uint8_t *lo) {
    __m128i vh = LD128(h), vl = LD128(lo);
    return _mm256_set_m128i(_mm_unpackhi_epi8(vl, vh), _mm_unpacklo_epi8(vl, vh));
}

/* H bytes of one code group (k <= 6). */
static AVX2 AI __m256i group_h(const uint8_t *grp, int k, int layout, const __m256i t[4]) {
    if (layout == 1) return _mm256_shuffle_epi8(t[0], packed3_codes(grp));
    return lut64(planes_codes(grp, k), t, k);
}

static AVX2 AI void store16_avx2(float *out, __m128i h, const uint8_t *lo) {
    __m128i l = LD128(lo);
    __m256i a = _mm256_cvtepu16_epi32(_mm_unpacklo_epi8(l, h)), b = _mm256_cvtepu16_epi32(_mm_unpackhi_epi8(l, h));
    _mm256_storeu_si256((__m256i *)(void *)out, _mm256_slli_epi32(a, 16));
    _mm256_storeu_si256((__m256i *)(void *)(out + 8), _mm256_slli_epi32(b, 16));
}

static AVX512 AI void store16_avx512(float *out, __m128i h, const uint8_t *lo) {
    __m128i l = LD128(lo);
    __m256i w = _mm256_set_m128i(_mm_unpackhi_epi8(l, h), _mm_unpacklo_epi8(l, h));
    _mm512_storeu_si512(out, _mm512_slli_epi32(_mm512_cvtepu16_epi32(w), 16));
}

/* Whole groups fused (codes -> H -> f32 in registers), a partial last group
 * through a small buffer. */
#define LL_BF16_BODY(STORE16)                                                                                     \
    if (k > 6) {                                                                                                  \
        ll_bf16_generic(out, codes, lo, n, k, layout, lut);                                                       \
        return;                                                                                                   \
    }                                                                                                             \
    __m256i t[4];                                                                                                 \
    for (int q = 0; q < 4; q++) t[q] = _mm256_broadcastsi128_si256(LD128(lut + 16 * q));                          \
    size_t g = 0, step = 4 * (size_t)k;                                                                           \
    for (; 32 * g + 32 <= n; g++) {                                                                               \
        __m256i h = group_h(codes + g * step, k, layout, t);                                                      \
        STORE16(out + 32 * g, _mm256_castsi256_si128(h), lo + 32 * g);                                            \
        STORE16(out + 32 * g + 16, _mm256_extracti128_si256(h, 1), lo + 32 * g + 16);                             \
    }                                                                                                             \
    if (32 * g < n) {                                                                                             \
        uint8_t hb[32];                                                                                           \
        _mm256_storeu_si256((__m256i *)(void *)hb, group_h(codes + g * step, k, layout, t));                      \
        bf16_planes_generic(out + 32 * g, hb, lo + 32 * g, n - 32 * g);                                           \
    }

static AVX2 void ll_bf16_avx2(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                              const uint8_t *lut) {
    LL_BF16_BODY(store16_avx2)
}

static AVX512 void ll_bf16_avx512(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                                  const uint8_t *lut) {
    LL_BF16_BODY(store16_avx512)
}

static AVX2 void bf16_planes_avx2(float *out, const uint8_t *h, const uint8_t *lo, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i w = words16(h + i, lo + i);
        _mm256_storeu_si256((__m256i *)(void *)(out + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(w)), 16));
        _mm256_storeu_si256((__m256i *)(void *)(out + i + 8),
                            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(w, 1)), 16));
    }
    bf16_planes_generic(out + i, h + i, lo + i, n - i);
}

static AVX2 void f32_planes_avx2(float *out, const uint8_t *h, const uint8_t *b2, const uint8_t *b1,
                                 const uint8_t *b0, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v3 = LD128(h + i), v2 = LD128(b2 + i), v1 = LD128(b1 + i), v0 = LD128(b0 + i);
        __m128i lw[2] = {_mm_unpacklo_epi8(v0, v1), _mm_unpackhi_epi8(v0, v1)};
        __m128i hw[2] = {_mm_unpacklo_epi8(v2, v3), _mm_unpackhi_epi8(v2, v3)};
        for (int j = 0; j < 2; j++) {
            __m256i d = _mm256_set_m128i(_mm_unpackhi_epi16(lw[j], hw[j]), _mm_unpacklo_epi16(lw[j], hw[j]));
            _mm256_storeu_si256((__m256i *)(void *)(out + i + 8 * j), d);
        }
    }
    f32_planes_generic(out + i, h + i, b2 + i, b1 + i, b0 + i, n - i);
}

static AVX2 void u16_planes_avx2(uint16_t *out, const uint8_t *h, const uint8_t *lo, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(void *)(out + i), words16(h + i, lo + i));
    u16_planes_generic(out + i, h + i, lo + i, n - i);
}

static AVX2 AI void q8_group_avx2(float *out, const int8_t *q, size_t n, float s, int z) {
    __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(LD64(q + i))), vs));
    q8_group_generic(out + i, q + i, n - i, s, z);
}

static AVX2 void q8_avx2(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group) {
    const uint8_t *zeros = NULL;
    QROW(q8_group_avx2, 1)
}

/* 8 bytes -> their 16 nibbles as bytes, low nibble first. */
static AVX2 AI __m128i nibbles16(const uint8_t *q) {
    __m128i x = LD64(q), m = _mm_set1_epi8(0x0f);
    return _mm_unpacklo_epi8(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));
}

static AVX2 AI void q4_group_avx2(float *out, const uint8_t *q, size_t n, float s, int z) {
    __m256 vs = _mm256_set1_ps(s);
    __m256i vz = _mm256_set1_epi32(z);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i nb = nibbles16(q + i / 2);
        __m256i a = _mm256_sub_epi32(_mm256_cvtepu8_epi32(nb), vz);
        __m256i b = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(nb, 8)), vz);
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(a), vs));
        _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(b), vs));
    }
    q4_group_generic(out + i, q + i / 2, n - i, s, z);
}

static AVX2 void q4_avx2(float *out, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros,
                         size_t group) {
    QROW(q4_group_avx2, 2)
}

static AVX512 void bf16_planes_avx512(float *out, const uint8_t *h, const uint8_t *lo, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_si512(out + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(words16(h + i, lo + i)), 16));
    bf16_planes_generic(out + i, h + i, lo + i, n - i);
}

static AVX512 AI void q8_group_avx512(float *out, const int8_t *q, size_t n, float s, int z) {
    __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(LD128(q + i))), vs));
    q8_group_generic(out + i, q + i, n - i, s, z);
}

static AVX512 void q8_avx512(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group) {
    const uint8_t *zeros = NULL;
    QROW(q8_group_avx512, 1)
}

static AVX512 AI void q4_group_avx512(float *out, const uint8_t *q, size_t n, float s, int z) {
    __m512 vs = _mm512_set1_ps(s);
    __m512i vz = _mm512_set1_epi32(z);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_sub_epi32(_mm512_cvtepu8_epi32(nibbles16(q + i / 2)), vz);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(v), vs));
    }
    q4_group_generic(out + i, q + i / 2, n - i, s, z);
}

static AVX512 void q4_avx512(float *out, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros,
                             size_t group) {
    QROW(q4_group_avx512, 2)
}

#define VBMI __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vbmi")))

/* One f16 scale with vcvtph2ps. It quiets a signalling NaN where the
 * scalar conversion keeps it, but every scale is then multiplied, which
 * quiets it in the scalar definition too, so the products are the same. */
static VBMI AI float scale_f16c(const uint8_t *p) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(vz_le16(p))));
}

/* q4 with VBMI: 16 bytes -> 32 nibble bytes by one vpmultishiftqb. */
static VBMI AI void q4_group_vbmi(float *out, const uint8_t *q, size_t n, float s, int z) {
    const __m256i ctrl = _mm256_set1_epi64x(0x1c1814100c080400ll), m = _mm256_set1_epi8(0x0f);
    __m512 vs = _mm512_set1_ps(s);
    __m512i vz = _mm512_set1_epi32(z);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c = _mm256_and_si256(_mm256_multishift_epi64_epi8(ctrl, _mm256_cvtepu32_epi64(LD128(q + i / 2))), m);
        __m512i a = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(c)), vz);
        __m512i b = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(c, 1)), vz);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(a), vs));
        _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(b), vs));
    }
    q4_group_avx512(out + i, q + i / 2, n - i, s, z);
}

/* Groups of a multiple of 32: the group's 16 values (q - z) * s are made
 * once (each as the scalar definition computes it) and looked up with
 * vpermps; other groups (one group of any length per row) as q4_group_vbmi. */
static VBMI void q4_vbmi(float *out, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros,
                         size_t group) {
    if (group % 32) {
        for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {
            size_t len = n - c0 < group ? n - c0 : group;
            q4_group_vbmi(out + c0, q + c0 / 2, len, scale_f16c(scales + 2 * gi), zeros ? zeros[gi] : 8);
        }
        return;
    }
    const __m256i ctrl = _mm256_set1_epi64x(0x1c1814100c080400ll), m = _mm256_set1_epi8(0x0f);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t c = 0, gi = 0; c < n; gi++) {
        float s = scale_f16c(scales + 2 * gi);
        int z = zeros ? zeros[gi] : 8;
        __m512 tab = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(iota, _mm512_set1_epi32(z))), _mm512_set1_ps(s));
        size_t end = n - c < group ? n : c + group;
        for (; c + 32 <= end; c += 32) {
            __m256i cc = _mm256_and_si256(_mm256_multishift_epi64_epi8(ctrl, _mm256_cvtepu32_epi64(LD128(q + c / 2))), m);
            _mm512_storeu_ps(out + c, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(cc)), tab));
            _mm512_storeu_ps(out + c + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(cc, 1)), tab));
        }
        q4_group_generic(out + c, q + c / 2, end - c, s, z);
        c = end;
    }
}

static VBMI void q8_vbmi(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group) {
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {
        size_t len = n - c0 < group ? n - c0 : group;
        q8_group_avx512(out + c0, q + c0, len, scale_f16c(scales + 2 * gi), 0);
    }
}

/* packed3 with AVX-512 VBMI: the group's four words (t as in packed3_codes)
 * zero-extended to qwords, vpmultishiftqb takes nibble i of each to byte
 * i; the 32 H bytes and 32 low bytes are then placed into the top two
 * bytes of 32 f32 by two masked byte permutes. Other layouts: ll_bf16_avx512. */
static VBMI void ll_bf16_vbmi(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                              const uint8_t *lut) {
    if (layout != 1) {
        ll_bf16_avx512(out, codes, lo, n, k, layout, lut);
        return;
    }
    static const uint8_t perm[128] = {
#define P4(i, o) 0, 0, (i) + (o), 32 + (i) + (o)
#define P16(o) P4(0, o), P4(1, o), P4(2, o), P4(3, o), P4(4, o), P4(5, o), P4(6, o), P4(7, o), P4(8, o), P4(9, o), \
               P4(10, o), P4(11, o), P4(12, o), P4(13, o), P4(14, o), P4(15, o)
        P16(0), P16(16)
#undef P16
#undef P4
    };
    const __m512i idx0 = _mm512_loadu_si512(perm), idx1 = _mm512_loadu_si512(perm + 64);
    const __mmask64 top2 = 0xccccccccccccccccull;
    const __m256i ctrl = _mm256_set1_epi64x(0x1c1814100c080400ll), seven = _mm256_set1_epi8(7);
    __m256i t[4];
    for (int q = 0; q < 4; q++) t[q] = _mm256_broadcastsi128_si256(LD128(lut + 16 * q));
    size_t g = 0;
    for (; 32 * g + 32 <= n; g++) {
        const uint8_t *grp = codes + 12 * g;
        uint32_t w0 = vz_le32(grp), w1 = vz_le32(grp + 4), w2 = vz_le32(grp + 8);
        uint32_t tw = (w0 >> 3 & 0x11111111u) | (w1 >> 3 & 0x11111111u) << 1 | (w2 >> 3 & 0x11111111u) << 2;
        __m128i v = _mm_insert_epi32(_mm_maskz_loadu_epi8(0x0fff, grp), (int)tw, 3);
        __m256i c = _mm256_and_si256(_mm256_multishift_epi64_epi8(ctrl, _mm256_cvtepu32_epi64(v)), seven);
        __m256i h = _mm256_shuffle_epi8(t[0], c);
        __m512i lh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(lo + 32 * g))), h, 1);
        _mm512_storeu_si512(out + 32 * g, _mm512_maskz_permutexvar_epi8(top2, idx0, lh));
        _mm512_storeu_si512(out + 32 * g + 16, _mm512_maskz_permutexvar_epi8(top2, idx1, lh));
    }
    if (32 * g < n) {
        uint8_t hb[32];
        _mm256_storeu_si256((__m256i *)(void *)hb, group_h(codes + 12 * g, k, layout, t));
        bf16_planes_generic(out + 32 * g, hb, lo + 32 * g, n - 32 * g);
    }
}
#endif

static const vz_cpu_kernels sets[] = {
    {"generic", ll_groups_generic, ll_bf16_generic, bf16_planes_generic, f32_planes_generic, u16_planes_generic, q8_generic,
     q4_generic},
#if VZ_HALF_X86
    {"avx2", ll_groups_avx2, ll_bf16_avx2, bf16_planes_avx2, f32_planes_avx2, u16_planes_avx2, q8_avx2, q4_avx2},
    {"avx512", ll_groups_avx2, ll_bf16_avx512, bf16_planes_avx512, f32_planes_avx2, u16_planes_avx2, q8_avx512, q4_avx512},
    {"avx512vbmi", ll_groups_avx2, ll_bf16_vbmi, bf16_planes_avx512, f32_planes_avx2, u16_planes_avx2, q8_vbmi,
     q4_vbmi},
#endif
};

#define NSETS ((int)(sizeof sets / sizeof sets[0]))

int vz_cpu_kernels_count(void) { return NSETS; }

const vz_cpu_kernels *vz_cpu_kernels_at(int i) { return i >= 0 && i < NSETS ? &sets[i] : NULL; }

int vz_cpu_kernels_supported(int i) {
    if (i == 0) return 1;
#if VZ_HALF_X86
    __builtin_cpu_init();
    if (i == 1) return __builtin_cpu_supports("avx2");
    if (i == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f");
    if (i == 3)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512vbmi") && vz_cpu_has_f16c();
#endif
    return 0;
}

/* Picked on the first call (not an ifunc: resolvers run before sanitizer
 * runtimes start). Racing first calls store the same pointer. */
static const vz_cpu_kernels *impl;

static const vz_cpu_kernels *pick(void) {
    for (int i = NSETS - 1; i > 0; i--)
        if (vz_cpu_kernels_supported(i)) return &sets[i];
    return &sets[0];
}

const vz_cpu_kernels *vz_cpu_kernels_get(void) {
    const vz_cpu_kernels *k = __atomic_load_n(&impl, __ATOMIC_RELAXED);
    if (!k) {
        k = pick();
        __atomic_store_n(&impl, k, __ATOMIC_RELAXED);
    }
    return k;
}

void vz_cpu_kernels_force(int i) {
    const vz_cpu_kernels *k = i >= 0 && i < NSETS && vz_cpu_kernels_supported(i) ? &sets[i] : NULL;
    __atomic_store_n(&impl, k, __ATOMIC_RELAXED);
}
