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
 * lossless bf16 also has a decode fused with its exceptions and the dot
 * (ll_bf16_dot*), summing exactly as vz_dot does (backend/cpu/ops.c).
 * tests/test_cpu_kernels.c checks every set against the scalar one.
 */
#include "codec/cpu_kernels.h"

#include <stdint.h>
#include <stdlib.h>
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
        if (layout == 2) { /* packed4: nibble e % 8 of word e / 8 */
            for (int e = 0; e < 32; e++) h[e] = lut[(w[e >> 3] >> 4 * (e & 7)) & 15u];
            continue;
        }
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

/* dot_acc for vectors of W f32 lanes (16 / W vectors hold the 16 partial
 * sums, as in vz_dot's body), compiled once per instruction set. */
#define DOT_ACC_BODY(W)                                                                                        \
    typedef float vec __attribute__((vector_size(4 * (W))));                                                   \
    vec v[16 / (W)];                                                                                           \
    memcpy(v, acc, sizeof v);                                                                                  \
    size_t i = 0;                                                                                              \
    for (; i + 16 <= n; i += 16)                                                                               \
        for (int j = 0; j < 16 / (W); j++) {                                                                   \
            vec va, vb;                                                                                        \
            memcpy(&va, a + i + j * (W), sizeof va);                                                           \
            memcpy(&vb, x + i + j * (W), sizeof vb);                                                           \
            v[j] += va * vb;                                                                                   \
        }                                                                                                      \
    memcpy(acc, v, sizeof v);                                                                                  \
    for (int j = 0; i < n; i++, j++) acc[j] += a[i] * x[i]

static void dot_acc_generic(float *acc, const float *a, const float *x, size_t n) { DOT_ACC_BODY(4); }

/* Exceptions of one block patched into its decoded bf16 values: the f32's
 * top byte is H, and the fast decode put lut[code] there; code_of inverts
 * the lut (its entries are distinct). */
static void ll_patch_bf16(float *o, size_t n, int k, const uint8_t *lut, const uint8_t *exc, size_t nexc) {
    uint8_t code_of[256] = {0}, *top = (uint8_t *)o + (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 0 : 3);
    for (int c = 0; c < (1 << k); c++) code_of[lut[c]] = (uint8_t)c;
    for (size_t x = 0; x < nexc; x++) {
        unsigned v = vz_le16(exc + 2 * x), off = v & 1023u;
        if (off < n) top[4 * off] = (uint8_t)((v >> 10) << k | code_of[top[4 * off]]);
    }
}

/* ll_bf16_dot through a block buffer: the set's ll_bf16, the patch, its dot_acc. */
#define LL_BF16_DOT_BODY(LL_BF16, DOT_ACC)                                                                     \
    float buf[1024];                                                                                           \
    if (n > 1024) n = 1024; /* one block (the contract); keeps buf in bounds */                                \
    LL_BF16(buf, codes, lo, n, k, layout, lut);                                                                \
    ll_patch_bf16(buf, n, k, lut, exc, nexc);                                                                  \
    DOT_ACC(acc, buf, x, n)

static void ll_bf16_dot_generic(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                                const uint8_t *lut, const uint8_t *exc, size_t nexc, const float *x) {
    LL_BF16_DOT_BODY(ll_bf16_generic, dot_acc_generic);
}

/* ll_bf16_dot_rows by one ll_bf16_dot per row. */
#define LL_BF16_DOT_ROWS_BODY(LL_BF16_DOT)                                                                     \
    for (size_t r = 0; r < rows; r++) {                                                                        \
        float acc[16] = {0};                                                                                   \
        uint32_t s = vz_le32(index + 4 * r), e = vz_le32(index + 4 * r + 4);                                   \
        LL_BF16_DOT(acc, codes + r * cstride, lo + r * n, n, k, layout, lut, exc + 2 * (size_t)s, e - s, x);  \
        y[r] = vz_dot_tree(acc);                                                                               \
    }

static void ll_bf16_dot_rows_generic(float *y, size_t rows, const uint8_t *codes, size_t cstride, const uint8_t *lo,
                                     size_t n, int k, int layout, const uint8_t *lut, const uint8_t *index,
                                     const uint8_t *exc, const float *x) {
    LL_BF16_DOT_ROWS_BODY(ll_bf16_dot_generic);
}

/* The fused dots of the portable set: pieces of up to 256 values decoded
 * into a buffer, each summed by dot_acc. Pieces start at multiples of 16 of
 * the row, as dot_acc needs (groups do: see bf16_dot in cpu_kernels.h). */
enum { DOT_PIECE = 256 };

static void bf16_dot_generic(float *acc, const uint8_t *src, size_t n, const float *x) {
    float buf[DOT_PIECE];
    for (size_t c = 0; c < n; c += DOT_PIECE) {
        size_t len = n - c < DOT_PIECE ? n - c : DOT_PIECE;
        vz_bf16_rows_to_f32_generic(buf, src + 2 * c, len);
        dot_acc_generic(acc, buf, x + c, len);
    }
}

#define QDOT_PIECES(GROUP_BODY, QSTEP)                                                                          \
    float buf[DOT_PIECE];                                                                                        \
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {                                                     \
        size_t end = n - c0 < group ? n : c0 + group;                                                            \
        float s = vz_f16_to_f32_fast(vz_le16(scales + 2 * gi));                                                  \
        for (size_t c = c0; c < end; c += DOT_PIECE) {                                                           \
            size_t len = end - c < DOT_PIECE ? end - c : DOT_PIECE;                                              \
            GROUP_BODY(buf, q + c / (QSTEP), len, s, zeros ? zeros[gi] : 8);                                      \
            dot_acc_generic(acc, buf, x + c, len);                                                               \
        }                                                                                                        \
    }

/* One row into acc (also the x86 versions' partial last 16). */
static void q8_dot_generic(float *acc, const int8_t *q, size_t n, const uint8_t *scales, size_t group,
                           const float *x) {
    const uint8_t *zeros = NULL;
    QDOT_PIECES(q8_group_generic, 1)
}

static void q4_dot_generic(float *acc, const uint8_t *q, size_t n, const uint8_t *scales, const uint8_t *zeros,
                           size_t group, const float *x) {
    QDOT_PIECES(q4_group_generic, 2)
}

static void bf16_dot_rows_generic(float *y, size_t rows, const uint8_t *src, size_t n, const float *x) {
    for (size_t r = 0; r < rows; r++) {
        float acc[16] = {0};
        bf16_dot_generic(acc, src + 2 * n * r, n, x);
        y[r] = vz_dot_tree(acc);
    }
}

static void q8_dot_rows_generic(float *y, size_t rows, const int8_t *q, const uint8_t *scales, size_t n, size_t group,
                                const float *x) {
    const size_t gpr = (n + group - 1) / group;
    for (size_t r = 0; r < rows; r++) {
        float acc[16] = {0};
        q8_dot_generic(acc, q + n * r, n, scales + 2 * gpr * r, group, x);
        y[r] = vz_dot_tree(acc);
    }
}

static void q4_dot_rows_generic(float *y, size_t rows, const uint8_t *q, const uint8_t *scales, const uint8_t *zeros,
                                size_t n, size_t group, const float *x) {
    const size_t gpr = (n + group - 1) / group;
    for (size_t r = 0; r < rows; r++) {
        float acc[16] = {0};
        q4_dot_generic(acc, q + (n + 1) / 2 * r, n, scales + 2 * gpr * r, zeros ? zeros + gpr * r : NULL, group, x);
        y[r] = vz_dot_tree(acc);
    }
}

#if VZ_HALF_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define AVX512 __attribute__((target("avx2,avx512f")))
#define AVX512H __attribute__((target("avx2,f16c,avx512f")))

/* Software prefetch of the weight streams of the fused dots, pf_w weights
 * ahead of their loads (one prefetch per 64-byte line; it never faults, so
 * it may run past a tensor's end). The decode loops issue more instructions
 * per byte than a copy, so the out-of-order window reaches fewer loads ahead:
 * on a 2-core Xeon VM (AVX-512 VBMI, 13.4 GB/s read with one thread), synth
 * tinyllama-1.1b at one thread ran raw 5.6 -> 6.9 tok/s, lossless 4.3 ->
 * 7.5, q8 4.9 -> 11.1, q4 5.1 -> 9.4 with 4096 weights ahead; the bits do not
 * change (bench/results/cpu-2026-12-05-prefetch.md). VZ_CPU_PREFETCH: the
 * distance in weights (0: off), read when the kernel set is first picked. */
static size_t pf_w = 4096;

static AI size_t pf_dist(void) { return __atomic_load_n(&pf_w, __ATOMIC_RELAXED); }

static AI void pf(const void *p, size_t ahead) { _mm_prefetch((const char *)((uintptr_t)p + ahead), _MM_HINT_T0); }

/* Lines [p + ahead, p + ahead + bytes). */
static AI void pf_span(const void *p, size_t ahead, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) pf(p, ahead + o);
}

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

/* Codes of one packed4 group: the nibbles of its 16 bytes in order. */
static AVX2 AI __m256i packed4_codes(const uint8_t *grp) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)grp), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
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
    if (layout == 2) {
        for (size_t g = 0; g < n; g++, codes += 16, h += 32)
            _mm256_storeu_si256((__m256i *)(void *)h, _mm256_shuffle_epi8(t[0], packed4_codes(codes)));
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
    if (layout == 2) return _mm256_shuffle_epi8(t[0], packed4_codes(grp));
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

static AVX2 void dot_acc_avx2(float *acc, const float *a, const float *x, size_t n) { DOT_ACC_BODY(8); }
static AVX512 void dot_acc_avx512(float *acc, const float *a, const float *x, size_t n) { DOT_ACC_BODY(16); }

static AVX2 void ll_bf16_dot_avx2(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                                  const uint8_t *lut, const uint8_t *exc, size_t nexc, const float *x) {
    /* bf16: a low byte and k code bits a weight */
    pf_span(lo, pf_dist(), n), pf_span(codes, pf_dist() * (size_t)k / 8, n * (size_t)k / 8);
    LL_BF16_DOT_BODY(ll_bf16_avx2, dot_acc_avx2);
}

static AVX512 void ll_bf16_dot_avx512(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, int k,
                                      int layout, const uint8_t *lut, const uint8_t *exc, size_t nexc,
                                      const float *x) {
    pf_span(lo, pf_dist(), n), pf_span(codes, pf_dist() * (size_t)k / 8, n * (size_t)k / 8);
    LL_BF16_DOT_BODY(ll_bf16_avx512, dot_acc_avx512);
}

static AVX2 void ll_bf16_dot_rows_avx2(float *y, size_t rows, const uint8_t *codes, size_t cstride, const uint8_t *lo,
                                       size_t n, int k, int layout, const uint8_t *lut, const uint8_t *index,
                                       const uint8_t *exc, const float *x) {
    LL_BF16_DOT_ROWS_BODY(ll_bf16_dot_avx2);
}

static AVX512 void ll_bf16_dot_rows_avx512(float *y, size_t rows, const uint8_t *codes, size_t cstride,
                                           const uint8_t *lo, size_t n, int k, int layout, const uint8_t *lut,
                                           const uint8_t *index, const uint8_t *exc, const float *x) {
    LL_BF16_DOT_ROWS_BODY(ll_bf16_dot_avx512);
}

/* vz_dot_tree in registers: the same additions of the same operands. */
static AVX512 AI float tree_zmm(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

/* The fused dots in registers, one row at a time. 16 values at a time are
 * decoded exactly as the decoders above decode them, multiplied by x and
 * added into the row's 16 partial sums (one AVX-512 vector, two of AVX2):
 * dot_acc's operations on the same operands. A row's last partial 16 goes
 * through the portable dot, from lane 0, as a group of its own with the
 * same scale and zero point (only a row's last group can have one). Rows
 * interleaved two or four at a time (sharing the loads of x, hiding the
 * adds' latency) ran 2x slower on synth tinyllama-1.1b (AVX-512 EPYC): the
 * weights are best read as one stream. */
static AVX2 AI void madd16_avx2(__m256 *a, __m256 v0, __m256 v1, const float *x) {
    a[0] = _mm256_add_ps(a[0], _mm256_mul_ps(v0, _mm256_loadu_ps(x)));
    a[1] = _mm256_add_ps(a[1], _mm256_mul_ps(v1, _mm256_loadu_ps(x + 8)));
}

static AVX512 AI __m512 madd16_avx512(__m512 a, __m512 v, const float *x) {
    return _mm512_add_ps(a, _mm512_mul_ps(v, _mm512_loadu_ps(x)));
}

/* The partial sums of one row through the portable dot FN(acc, ...): out
 * of the registers and back. */
#define TAIL_AVX2(A, FN, ...)                                                                                    \
    do {                                                                                                         \
        float t_[16];                                                                                            \
        _mm256_storeu_ps(t_, (A)[0]), _mm256_storeu_ps(t_ + 8, (A)[1]);                                          \
        FN(t_, __VA_ARGS__);                                                                                     \
        (A)[0] = _mm256_loadu_ps(t_), (A)[1] = _mm256_loadu_ps(t_ + 8);                                          \
    } while (0)

#define TAIL_AVX512(A, FN, ...)                                                                                  \
    do {                                                                                                         \
        float t_[16];                                                                                            \
        _mm512_storeu_ps(t_, (A));                                                                               \
        FN(t_, __VA_ARGS__);                                                                                     \
        (A) = _mm512_loadu_ps(t_);                                                                               \
    } while (0)

static AVX2 AI float tree_avx2(const __m256 *a) {
    float t[16];
    _mm256_storeu_ps(t, a[0]);
    _mm256_storeu_ps(t + 8, a[1]);
    return vz_dot_tree(t);
}

/* The group loop of one q8 / q4 row: SETUP per group (s: its scale, z: its
 * zero point), STEP(i) adds elements i .. i + 15, TAIL the partial 16 from i. */
#define ROW_GROUPS(SETUP, STEP, TAIL)                                                                           \
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {                                                     \
        size_t end = n - c0 < group ? n : c0 + group, i = c0;                                                    \
        const float s = vz_f16_to_f32_fast(vz_le16(sc + 2 * gi));                                                \
        const int z = zr ? zr[gi] : 8;                                                                           \
        (void)z;                                                                                                 \
        SETUP;                                                                                                   \
        for (; i + 16 <= end; i += 16) STEP(i);                                                                  \
        if (i < end) TAIL;                                                                                       \
    }

static AVX2 AI __m256 bf16x8_avx2(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(LD128(p)), 16));
}

static AVX2 void bf16_dot_rows_avx2(float *y, size_t rows, const uint8_t *src, size_t n, const float *x) {
    const size_t pw = pf_dist();
    for (size_t r = 0; r < rows; r++, src += 2 * n) {
        __m256 a[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            if (!(i & 16)) pf(src + 2 * i, 2 * pw);
            madd16_avx2(a, bf16x8_avx2(src + 2 * i), bf16x8_avx2(src + 2 * i + 16), x + i);
        }
        if (i < n) TAIL_AVX2(a, bf16_dot_generic, src + 2 * i, n - i, x + i);
        y[r] = tree_avx2(a);
    }
}

static AVX512 void bf16_dot_rows_avx512(float *y, size_t rows, const uint8_t *src, size_t n, const float *x) {
    const size_t pw = pf_dist();
    for (size_t r = 0; r < rows; r++, src += 2 * n) {
        __m512 a = _mm512_setzero_ps();
        size_t i = 0;
        for (; i + 16 <= n; i += 16) {
            if (!(i & 16)) pf(src + 2 * i, 2 * pw);
            __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * i));
            a = madd16_avx512(a, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)), x + i);
        }
        if (i < n) TAIL_AVX512(a, bf16_dot_generic, src + 2 * i, n - i, x + i);
        y[r] = tree_zmm(a);
    }
}

/* Row r of q8 / q4: its codes qr, its scales sc and zero points zr. */
#define Q8_ROW_PTRS                                                                                             \
    const int8_t *qr = q + n * r;                                                                                \
    const uint8_t *sc = scales + 2 * gpr * r, *zr = NULL
#define Q4_ROW_PTRS                                                                                             \
    const uint8_t *qr = q + (n + 1) / 2 * r, *sc = scales + 2 * gpr * r, *zr = zeros ? zeros + gpr * r : NULL

static AVX2 void q8_dot_rows_avx2(float *y, size_t rows, const int8_t *q, const uint8_t *scales, size_t n, size_t group,
                                  const float *x) {
    const size_t pw = pf_dist();
    const size_t gpr = (n + group - 1) / group;
    for (size_t r = 0; r < rows; r++) {
        Q8_ROW_PTRS;
        __m256 a[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, vs;
#define STEP(i)                                                                                                 \
    do {                                                                                                         \
        if (!((i) & 48)) pf(qr + (i), pw);                                                                     \
        madd16_avx2(a, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(LD64(qr + (i)))), vs),              \
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(LD64(qr + (i) + 8))), vs), x + (i));   \
    } while (0)
        ROW_GROUPS(vs = _mm256_set1_ps(s), STEP, TAIL_AVX2(a, q8_dot_generic, qr + i, end - i, sc + 2 * gi, end - i, x + i))
#undef STEP
        y[r] = tree_avx2(a);
    }
}

static AVX512 void q8_dot_rows_avx512(float *y, size_t rows, const int8_t *q, const uint8_t *scales, size_t n,
                                      size_t group, const float *x) {
    const size_t pw = pf_dist();
    const size_t gpr = (n + group - 1) / group;
    for (size_t r = 0; r < rows; r++) {
        Q8_ROW_PTRS;
        __m512 a = _mm512_setzero_ps(), vs;
#define STEP(i)                                                                                                 \
    do {                                                                                                         \
        if (!((i) & 48)) pf(qr + (i), pw);                                                                     \
        a = madd16_avx512(a, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(LD128(qr + (i)))), vs), x + (i)); \
    } while (0)
        ROW_GROUPS(vs = _mm512_set1_ps(s), STEP, TAIL_AVX512(a, q8_dot_generic, qr + i, end - i, sc + 2 * gi, end - i, x + i))
#undef STEP
        y[r] = tree_zmm(a);
    }
}

#define Q4_TAIL_ARGS qr + i / 2, end - i, sc + 2 * gi, zr ? zr + gi : NULL, end - i, x + i

/* R rows of q4 with AVX2, each 8 codes broadcast from their 4 bytes and
 * shifted per lane (code j to lane j: no shuffle; vpermps would need two
 * 8-entry tables and a blend), then (q - z) * s as q4_dot_generic has it;
 * R chains of adds, the codes prefetched pw bytes ahead. With the avx2 set
 * forced on the Xeon VM (synth tinyllama-1.1b, 1 thread): 6.1 -> 7.1 tok/s
 * against one row at a time unpacking by pshufb (cpu-2026-12-05-q4.md). */
static AVX2 AI void q4_rows_avx2(float *y, const int R, const uint8_t *q, const uint8_t *scales, const uint8_t *zeros,
                                 size_t n, size_t group, const float *x) {
    const size_t pw = pf_dist(), gpr = (n + group - 1) / group, qs = (n + 1) / 2;
    const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), m = _mm256_set1_epi32(15);
    __m256 a[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()}, {_mm256_setzero_ps(), _mm256_setzero_ps()}}, vs[2];
    __m256i vz[2];
#define Q4V8(p, k)                                                                                              \
    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(                                                           \
                      _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)vz_le32(p)), sh), m), vz[k])),   \
                  vs[k])
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {
        size_t end = n - c0 < group ? n : c0 + group, i = c0;
        _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
            vs[k] = _mm256_set1_ps(vz_f16_to_f32_fast(vz_le16(scales + 2 * (gpr * k + gi))));
            vz[k] = _mm256_set1_epi32(zeros ? zeros[gpr * k + gi] : 8);
        }
        for (; i + 16 <= end; i += 16) {
            _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
                const uint8_t *qr = q + qs * k + i / 2;
                if (!(i & 112)) pf(qr, pw);
                madd16_avx2(a[k], Q4V8(qr, k), Q4V8(qr + 4, k), x + i);
            }
        }
        if (i < end)
            _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
                const uint8_t *qr = q + qs * k, *sc = scales + 2 * gpr * k, *zr = zeros ? zeros + gpr * k : NULL;
                TAIL_AVX2(a[k], q4_dot_generic, Q4_TAIL_ARGS);
            }
    }
#undef Q4V8
    _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) y[k] = tree_avx2(a[k]);
}

static AVX2 void q4_dot_rows_avx2(float *y, size_t rows, const uint8_t *q, const uint8_t *scales, const uint8_t *zeros,
                                  size_t n, size_t group, const float *x) {
    const size_t gpr = (n + group - 1) / group, qs = (n + 1) / 2;
    for (size_t r = 0; r < rows; r += 2) {
        const uint8_t *zr = zeros ? zeros + gpr * r : NULL;
        if (r + 2 <= rows) q4_rows_avx2(y + r, 2, q + qs * r, scales + 2 * gpr * r, zr, n, group, x);
        else q4_rows_avx2(y + r, 1, q + qs * r, scales + 2 * gpr * r, zr, n, group, x);
    }
}

static AVX512 void q4_dot_rows_avx512(float *y, size_t rows, const uint8_t *q, const uint8_t *scales,
                                      const uint8_t *zeros, size_t n, size_t group, const float *x) {
    const size_t pw = pf_dist();
    const size_t gpr = (n + group - 1) / group;
    for (size_t r = 0; r < rows; r++) {
        Q4_ROW_PTRS;
        __m512 a = _mm512_setzero_ps(), vs;
        __m512i vz;
#define STEP(i)                                                                                                 \
    do {                                                                                                         \
        if (!((i) & 112)) pf(qr + (i) / 2, pw / 2);                                                            \
        __m512i c = _mm512_sub_epi32(_mm512_cvtepu8_epi32(nibbles16(qr + (i) / 2)), vz);                         \
        a = madd16_avx512(a, _mm512_mul_ps(_mm512_cvtepi32_ps(c), vs), x + (i));                                 \
    } while (0)
        ROW_GROUPS((vs = _mm512_set1_ps(s), vz = _mm512_set1_epi32(z)), STEP, TAIL_AVX512(a, q4_dot_generic, Q4_TAIL_ARGS))
#undef STEP
        y[r] = tree_zmm(a);
    }
}

#define VBMI __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512vbmi")))

/* One f16 scale with vcvtph2ps. It quiets a signalling NaN where the
 * scalar conversion keeps it, but every scale is then multiplied, which
 * quiets it in the scalar definition too, so the products are the same. */
static __attribute__((target("f16c"))) AI float scale_f16c(const uint8_t *p) {
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

/* q4_dot_rows with AVX-512 F and F16C (the avx512 and avx512vbmi sets) for
 * groups of a multiple of 32 (other groups by q4_dot_rows_avx512): each
 * group's 16 values in a table, as q4_vbmi makes it (a symmetric group's: a
 * constant, q - 8 as f32, times its scale), looked up by vpermps. vpermps
 * reads an index's low four bits only, so each 16 codes need no unpacking:
 * their 8 bytes broadcast to the eight qwords, qword m shifted right by 4 m
 * holds code m in its low dword and code m + 8 in its high one. The 16 lanes
 * then carry elements 0, 8, 1, 9, ..., 7, 15 of the chunk: x is read in that
 * order (xp, made once a call) and the lanes are put back in order before
 * the tail and the sum, so every lane adds the same products in the same
 * order as q4_dot_generic (the same bits). That leaves four instructions per
 * 16 weights, and the lanes' chain of adds (one per 16 weights, 4 cycles
 * each) the bound: R rows at once (two: as many instructions as the chains
 * hide) give R chains. Each row's codes are prefetched pw bytes (2 pw
 * weights) ahead. On the 2-core Xeon VM (synth tinyllama-1.1b, 1 thread):
 * 9.4 -> 10.5 tok/s for the broadcast codes (unpacked by vpmultishiftqb
 * before, seven shuffles per 32 weights), -> 11.0 in pairs, -> 12.0 with the
 * farther prefetch (four rows: 12.0); with the avx512 set forced on the same
 * VM, 6.2 (q4_dot_rows_avx512) -> 12.6; the same logits
 * (bench/results/cpu-2026-12-05-q4.md). */
static AVX512H AI void q4_rows_bcast(float *y, const int R, const uint8_t *q, const uint8_t *scales,
                                      const uint8_t *zeros, size_t n, size_t group, const float *x, const float *xp) {
    const size_t pw = pf_dist(), gpr = (n + group - 1) / group, qs = (n + 1) / 2;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i sh = _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i unmix = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m512 sym = _mm512_cvtepi32_ps(_mm512_sub_epi32(iota, _mm512_set1_epi32(8))); /* q - 8, symmetric groups */
    __m512 a[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}, tab[2];
    int tail = 0;
#define CODES16(p) _mm512_srlv_epi64(_mm512_set1_epi64((long long)vz_le64(p)), sh)
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {
        size_t end = n - c0 < group ? n : c0 + group, i = c0;
        _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
            const uint8_t *zr = zeros ? zeros + gpr * k : NULL;
            tab[k] = _mm512_mul_ps(zr ? _mm512_cvtepi32_ps(_mm512_sub_epi32(iota, _mm512_set1_epi32(zr[gi]))) : sym,
                                   _mm512_set1_ps(scale_f16c(scales + 2 * (gpr * k + gi))));
        }
        for (; i + 32 <= end; i += 32) {
            _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
                const uint8_t *qr = q + qs * k + i / 2;
                if (!(i & 112)) pf(qr, pw);
                a[k] = madd16_avx512(a[k], _mm512_permutexvar_ps(CODES16(qr), tab[k]), xp + i);
                a[k] = madd16_avx512(a[k], _mm512_permutexvar_ps(CODES16(qr + 8), tab[k]), xp + i + 16);
            }
        }
        if (i < end) { /* only the last group has one */
            _Pragma("GCC unroll 2") for (int k = 0; k < R; k++) {
                const uint8_t *qr = q + qs * k, *sc = scales + 2 * gpr * k, *zr = zeros ? zeros + gpr * k : NULL;
                a[k] = _mm512_permutexvar_ps(unmix, a[k]);
                TAIL_AVX512(a[k], q4_dot_generic, Q4_TAIL_ARGS);
            }
            tail = 1;
        }
    }
#undef CODES16
    _Pragma("GCC unroll 2") for (int k = 0; k < R; k++)
        y[k] = tree_zmm(tail ? a[k] : _mm512_permutexvar_ps(unmix, a[k]));
}

static AVX512H void q4_dot_rows_bcast(float *y, size_t rows, const uint8_t *q, const uint8_t *scales,
                                       const uint8_t *zeros, size_t n, size_t group, const float *x) {
    float xbuf[4096];
    float *xp = group % 32 ? NULL : n <= 4096 ? xbuf : malloc(sizeof(float) * n);
    if (!xp) {
        q4_dot_rows_avx512(y, rows, q, scales, zeros, n, group, x);
        return;
    }
    const __m512i mix = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (size_t i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(xp + i, _mm512_permutexvar_ps(mix, _mm512_loadu_ps(x + i)));
    const size_t gpr = (n + group - 1) / group, qs = (n + 1) / 2;
    size_t r = 0;
    for (; r < rows; r += 2) {
        const uint8_t *zr = zeros ? zeros + gpr * r : NULL;
        if (r + 2 <= rows) q4_rows_bcast(y + r, 2, q + qs * r, scales + 2 * gpr * r, zr, n, group, x, xp);
        else q4_rows_bcast(y + r, 1, q + qs * r, scales + 2 * gpr * r, zr, n, group, x, xp);
    }
    if (xp != xbuf) free(xp);
}

static VBMI void q8_vbmi(float *out, const int8_t *q, size_t n, const uint8_t *scales, size_t group) {
    for (size_t c0 = 0, gi = 0; c0 < n; c0 += group, gi++) {
        size_t len = n - c0 < group ? n - c0 : group;
        q8_group_avx512(out + c0, q + c0, len, scale_f16c(scales + 2 * gi), 0);
    }
}

/* The 32 codes of one packed3 group with AVX-512 VBMI: the group's four
 * words (t as in packed3_codes) zero-extended to qwords, vpmultishiftqb
 * takes nibble i of each to byte i. */
static VBMI AI __m256i packed3_codes_vbmi(const uint8_t *grp) {
    const __m256i ctrl = _mm256_set1_epi64x(0x1c1814100c080400ll), seven = _mm256_set1_epi8(7);
    uint32_t w0 = vz_le32(grp), w1 = vz_le32(grp + 4), w2 = vz_le32(grp + 8);
    uint32_t tw = (w0 >> 3 & 0x11111111u) | (w1 >> 3 & 0x11111111u) << 1 | (w2 >> 3 & 0x11111111u) << 2;
    __m128i v = _mm_insert_epi32(_mm_maskz_loadu_epi8(0x0fff, grp), (int)tw, 3);
    return _mm256_and_si256(_mm256_multishift_epi64_epi8(ctrl, _mm256_cvtepu32_epi64(v)), seven);
}

/* vpermb indexes placing the 32 low bytes (bytes 0..31 of the source) and
 * 32 H bytes (bytes 32..63) into the top two bytes of 32 f32, with the
 * mask vbmi_top2 zeroing the two low bytes. */
static const uint8_t vbmi_perm[128] = {
#define P4(i, o) 0, 0, (i) + (o), 32 + (i) + (o)
#define P16(o) P4(0, o), P4(1, o), P4(2, o), P4(3, o), P4(4, o), P4(5, o), P4(6, o), P4(7, o), P4(8, o), P4(9, o), \
               P4(10, o), P4(11, o), P4(12, o), P4(13, o), P4(14, o), P4(15, o)
    P16(0), P16(16)
#undef P16
#undef P4
};
#define vbmi_top2 ((__mmask64)0xccccccccccccccccull)

/* packed3 with AVX-512 VBMI: codes by packed3_codes_vbmi, the lut by
 * pshufb, then the 32 H bytes and 32 low bytes placed into 32 f32 by two
 * masked byte permutes. Other layouts: ll_bf16_avx512. */
static VBMI void ll_bf16_vbmi(float *out, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                              const uint8_t *lut) {
    if (layout != 1) {
        ll_bf16_avx512(out, codes, lo, n, k, layout, lut);
        return;
    }
    const __m512i idx0 = _mm512_loadu_si512(vbmi_perm), idx1 = _mm512_loadu_si512(vbmi_perm + 64);
    __m256i t[4];
    for (int q = 0; q < 4; q++) t[q] = _mm256_broadcastsi128_si256(LD128(lut + 16 * q));
    size_t g = 0;
    for (; 32 * g + 32 <= n; g++) {
        __m256i h = _mm256_shuffle_epi8(t[0], packed3_codes_vbmi(codes + 12 * g));
        __m512i lh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(lo + 32 * g))), h, 1);
        _mm512_storeu_si512(out + 32 * g, _mm512_maskz_permutexvar_epi8(vbmi_top2, idx0, lh));
        _mm512_storeu_si512(out + 32 * g + 16, _mm512_maskz_permutexvar_epi8(vbmi_top2, idx1, lh));
    }
    if (32 * g < n) {
        uint8_t hb[32];
        _mm256_storeu_si256((__m256i *)(void *)hb, group_h(codes + 12 * g, k, layout, t));
        bf16_planes_generic(out + 32 * g, hb, lo + 32 * g, n - 32 * g);
    }
}

/* H of one group with its exceptions: lut[code], or (hi << k) | code where
 * hib[e] = hi << k (bit 0 clear) marks an exception; hib[e] = 1 otherwise. */
static VBMI AI __m256i packed3_h_vbmi(__m256i c, __m256i t0, const uint8_t *hib) {
    __m256i e = _mm256_loadu_si256((const __m256i *)(const void *)hib);
    return _mm256_mask_blend_epi8(_mm256_testn_epi8_mask(e, _mm256_set1_epi8(1)), _mm256_shuffle_epi8(t0, c),
                                  _mm256_or_si256(c, e));
}

/* The 64 codes of two consecutive packed3 groups (24 bytes), all in
 * vector registers: the six words go to qwords 0-2 and 4-6, the words t
 * (packed3_codes) are made in qwords 3 and 7 by per-qword shifts and masks
 * and an OR of the three qwords below, then vpmultishiftqb as above. */
static VBMI AI __m512i packed3_codes2_vbmi(const uint8_t *grp) {
    const __m512i place = _mm512_setr_epi32(0, 0, 1, 0, 2, 0, 0, 0, 3, 0, 4, 0, 5, 0, 0, 0);
    const __m512i sh = _mm512_setr_epi64(3, 2, 1, 0, 3, 2, 1, 0);
    const __m512i bit3 = _mm512_setr_epi64(0x11111111, 0x22222222, 0x44444444, 0, 0x11111111, 0x22222222, 0x44444444, 0);
    const __m512i ctrl = _mm512_set1_epi64(0x1c1814100c080400ll), seven = _mm512_set1_epi8(7);
    __m512i v = _mm512_maskz_permutexvar_epi32(0x1515, place, _mm512_zextsi256_si512(_mm256_maskz_loadu_epi8(0xffffff, grp)));
    __m512i s = _mm512_and_si512(_mm512_srlv_epi64(v, sh), bit3);
    __m512i a = _mm512_maskz_permutex_epi64(0x88, s, 0x00), b = _mm512_maskz_permutex_epi64(0x88, s, 0x40);
    __m512i c = _mm512_maskz_permutex_epi64(0x88, s, 0x80);
    v = _mm512_or_si512(_mm512_ternarylogic_epi64(v, a, b, 0xfe), c);
    return _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, v), seven);
}

/* vpermt2b indexes for two groups: f32 j (0..63) takes low byte j of the
 * first source and H byte j of the second (index bit 6). */
static const uint8_t vbmi_perm2[256] = {
#define P4(i) 0, 0, (i), 64 + (i)
#define P16(o) P4(o + 0), P4(o + 1), P4(o + 2), P4(o + 3), P4(o + 4), P4(o + 5), P4(o + 6), P4(o + 7), P4(o + 8), \
               P4(o + 9), P4(o + 10), P4(o + 11), P4(o + 12), P4(o + 13), P4(o + 14), P4(o + 15)
    P16(0), P16(16), P16(32), P16(48)
#undef P16
#undef P4
};

/* hib[e] = hi << k for an exception at e of the block, else 1: exceptions
 * need k >= 2 (check), so bit 0 tells the others apart (no bit mask). */
static VBMI AI void ll_hib_vbmi(uint8_t *hib, size_t n, int k, const uint8_t *exc, size_t nexc) {
    for (size_t i = 0; i < n; i += 64) _mm512_storeu_si512(hib + i, _mm512_set1_epi8(1)); /* hib: 1024 bytes */
    for (size_t j = 0; j < nexc; j++) {
        unsigned v = vz_le16(exc + 2 * j);
        hib[v & 1023u] = (uint8_t)((v >> 10) << k);
    }
}

/* The whole groups of one packed3 block (n <= 1024, hib made), added into
 * the partial sums va in vz_dot's order; *gdone = the groups done. Each
 * group's H is lut[code] patched in register by a masked blend; its 32
 * f32 are multiplied by x and added with no row buffer. */
static VBMI AI __m512 ll_groups_dot_vbmi(__m512 va, const uint8_t *codes, const uint8_t *lo, size_t n,
                                         const uint8_t *lut, const uint8_t *hib, const float *x, size_t *gdone) {
    const size_t pw = pf_dist();
    const __m512i t0w = _mm512_broadcast_i32x4(LD128(lut)), one = _mm512_set1_epi8(1);
    const __m512i p0 = _mm512_loadu_si512(vbmi_perm2), p1 = _mm512_loadu_si512(vbmi_perm2 + 64),
                  p2 = _mm512_loadu_si512(vbmi_perm2 + 128), p3 = _mm512_loadu_si512(vbmi_perm2 + 192);
    size_t g = 0;
    for (; 32 * g + 64 <= n; g += 2) { /* two groups a step: a line of low bytes, 24 bytes of codes */
        pf(lo + 32 * g, pw);
        if (!(g & 2)) pf(codes + 12 * g, pw * 3 / 8);
        __m512i c = packed3_codes2_vbmi(codes + 12 * g), e = _mm512_loadu_si512(hib + 32 * g);
        __m512i h = _mm512_mask_blend_epi8(_mm512_testn_epi8_mask(e, one), _mm512_shuffle_epi8(t0w, c), _mm512_or_si512(c, e));
        __m512i l = _mm512_loadu_si512(lo + 32 * g);
        __m512 a0 = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(vbmi_top2, l, p0, h));
        __m512 a1 = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(vbmi_top2, l, p1, h));
        __m512 a2 = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(vbmi_top2, l, p2, h));
        __m512 a3 = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi8(vbmi_top2, l, p3, h));
        va = _mm512_add_ps(va, _mm512_mul_ps(a0, _mm512_loadu_ps(x + 32 * g)));
        va = _mm512_add_ps(va, _mm512_mul_ps(a1, _mm512_loadu_ps(x + 32 * g + 16)));
        va = _mm512_add_ps(va, _mm512_mul_ps(a2, _mm512_loadu_ps(x + 32 * g + 32)));
        va = _mm512_add_ps(va, _mm512_mul_ps(a3, _mm512_loadu_ps(x + 32 * g + 48)));
    }
    if (32 * g + 32 <= n) { /* one group left */
        __m256i h = packed3_h_vbmi(packed3_codes_vbmi(codes + 12 * g), _mm512_castsi512_si256(t0w), hib + 32 * g);
        __m512i lh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(lo + 32 * g))), h, 1);
        __m512 a0 = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi8(vbmi_top2, _mm512_loadu_si512(vbmi_perm), lh));
        __m512 a1 = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi8(vbmi_top2, _mm512_loadu_si512(vbmi_perm + 64), lh));
        va = _mm512_add_ps(va, _mm512_mul_ps(a0, _mm512_loadu_ps(x + 32 * g)));
        va = _mm512_add_ps(va, _mm512_mul_ps(a1, _mm512_loadu_ps(x + 32 * g + 16)));
        g++;
    }
    *gdone = g;
    return va;
}

/* The partial last group g of a block (32 g < n < 32 g + 32) through a
 * small buffer, into acc as dot_acc. */
static VBMI AI void ll_tail_dot_vbmi(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, size_t g,
                                     const uint8_t *lut, const uint8_t *hib, const float *x) {
    uint8_t hb[32];
    float f[32];
    __m256i t0 = _mm256_broadcastsi128_si256(LD128(lut));
    _mm256_storeu_si256((__m256i *)(void *)hb, packed3_h_vbmi(packed3_codes_vbmi(codes + 12 * g), t0, hib + 32 * g));
    bf16_planes_generic(f, hb, lo + 32 * g, n - 32 * g);
    dot_acc_avx512(acc, f, x + 32 * g, n - 32 * g);
}

/* packed3: the helpers above; other layouts through ll_bf16_dot_avx512. */
static VBMI void ll_bf16_dot_vbmi(float *acc, const uint8_t *codes, const uint8_t *lo, size_t n, int k, int layout,
                                  const uint8_t *lut, const uint8_t *exc, size_t nexc, const float *x) {
    if (layout != 1 || n > 1024) {
        ll_bf16_dot_avx512(acc, codes, lo, n, k, layout, lut, exc, nexc, x);
        return;
    }
    uint8_t hib[1024];
    size_t g;
    ll_hib_vbmi(hib, n, k, exc, nexc);
    _mm512_storeu_ps(acc, ll_groups_dot_vbmi(_mm512_loadu_ps(acc), codes, lo, n, lut, hib, x, &g));
    if (32 * g < n) ll_tail_dot_vbmi(acc, codes, lo, n, g, lut, hib, x);
}

/* Rows of one block each, the per-row state (constants, frame) set up once. */
static VBMI void ll_bf16_dot_rows_vbmi(float *y, size_t rows, const uint8_t *codes, size_t cstride, const uint8_t *lo,
                                       size_t n, int k, int layout, const uint8_t *lut, const uint8_t *index,
                                       const uint8_t *exc, const float *x) {
    if (layout != 1 || n > 1024) {
        LL_BF16_DOT_ROWS_BODY(ll_bf16_dot_avx512);
        return;
    }
    uint8_t hib[1024];
    for (size_t r = 0; r < rows; r++, codes += cstride, lo += n) {
        uint32_t s = vz_le32(index + 4 * r), e = vz_le32(index + 4 * r + 4);
        size_t g;
        ll_hib_vbmi(hib, n, k, exc + 2 * (size_t)s, e - s);
        __m512 va = ll_groups_dot_vbmi(_mm512_setzero_ps(), codes, lo, n, lut, hib, x, &g);
        if (32 * g == n) {
            y[r] = tree_zmm(va);
            continue;
        }
        float acc[16];
        _mm512_storeu_ps(acc, va);
        ll_tail_dot_vbmi(acc, codes, lo, n, g, lut, hib, x);
        y[r] = vz_dot_tree(acc);
    }
}
#endif

static const vz_cpu_kernels sets[] = {
    {"generic", ll_groups_generic, ll_bf16_generic, bf16_planes_generic, f32_planes_generic, u16_planes_generic, q8_generic,
     q4_generic, dot_acc_generic, ll_bf16_dot_generic, ll_bf16_dot_rows_generic, bf16_dot_rows_generic,
     q8_dot_rows_generic, q4_dot_rows_generic},
#if VZ_HALF_X86
    {"avx2", ll_groups_avx2, ll_bf16_avx2, bf16_planes_avx2, f32_planes_avx2, u16_planes_avx2, q8_avx2, q4_avx2,
     dot_acc_avx2, ll_bf16_dot_avx2, ll_bf16_dot_rows_avx2, bf16_dot_rows_avx2, q8_dot_rows_avx2, q4_dot_rows_avx2},
    {"avx512", ll_groups_avx2, ll_bf16_avx512, bf16_planes_avx512, f32_planes_avx2, u16_planes_avx2, q8_avx512, q4_avx512,
     dot_acc_avx512, ll_bf16_dot_avx512, ll_bf16_dot_rows_avx512, bf16_dot_rows_avx512, q8_dot_rows_avx512,
     q4_dot_rows_bcast},
    {"avx512vbmi", ll_groups_avx2, ll_bf16_vbmi, bf16_planes_avx512, f32_planes_avx2, u16_planes_avx2, q8_vbmi,
     q4_vbmi, dot_acc_avx512, ll_bf16_dot_vbmi, ll_bf16_dot_rows_vbmi, bf16_dot_rows_avx512, q8_dot_rows_avx512,
     q4_dot_rows_bcast},
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
    if (i == 2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") && vz_cpu_has_f16c();
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
#if VZ_HALF_X86
    const char *e = getenv("VZ_CPU_PREFETCH");
    if (e && *e >= '0' && *e <= '9')
        __atomic_store_n(&pf_w, (size_t)strtoul(e, NULL, 10) & ~(size_t)63, __ATOMIC_RELAXED); /* whole lines */
#endif
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
