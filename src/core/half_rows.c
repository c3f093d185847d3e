/*
 * half_rows.c - bulk bf16/f16 -> f32 (see half_rows.h). bf16 is a 16-bit
 * shift, written with GCC/clang vector extensions and compiled for baseline
 * x86-64, AVX2 and AVX-512. f16 uses the F16C instruction where present
 * (exact for every finite, infinite and subnormal input; it quiets signalling
 * NaNs, so blocks holding a NaN take the scalar path), else a branch-free
 * vector version of vz_f16_to_f32.
 */
#include "core/half_rows.h"

#include <string.h>

#include "core/half.h"

#if VZ_HALF_X86
#include <immintrin.h>
#endif

typedef uint16_t vz_u16x16 __attribute__((vector_size(32)));
typedef uint32_t vz_u32x16 __attribute__((vector_size(64)));
typedef int32_t vz_i32x16 __attribute__((vector_size(64)));
typedef float vz_f32x16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) void bf16_body(float *out, const uint8_t *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vz_u16x16 h;
        memcpy(&h, src + 2 * i, sizeof h);
        vz_u32x16 u = __builtin_convertvector(h, vz_u32x16) << 16;
        memcpy(out + i, &u, sizeof u);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = vz_bf16_to_f32(h);
    }
}

void vz_bf16_rows_to_f32_generic(float *out, const uint8_t *src, size_t n) { bf16_body(out, src, n); }

/* f16 -> f32 without branches: move exponent and mantissa into place and
 * rebias; infinities and NaNs get the f32 maximum exponent; zeros and
 * subnormals are rebuilt as (2^-14 + man * 2^-24) - 2^-14, which is exact. */
void vz_f16_rows_to_f32_generic(float *out, const uint8_t *src, size_t n) {
    const vz_u32x16 exp_mask = (vz_u32x16){0} + (0x7c00u << 13);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vz_u16x16 h;
        memcpy(&h, src + 2 * i, sizeof h);
        vz_u32x16 x = __builtin_convertvector(h, vz_u32x16);
        vz_u32x16 sign = (x & 0x8000u) << 16, o = (x & 0x7fffu) << 13, e = o & exp_mask;
        o += (127u - 15u) << 23;
        o += (vz_u32x16)(e == exp_mask) & ((128u - 16u) << 23);
        vz_i32x16 sub = e == 0;
        vz_f32x16 f = (vz_f32x16)(o + (1u << 23)) - 6.103515625e-05f; /* 2^-14 */
        o = ((vz_u32x16)sub & (vz_u32x16)f) | (~(vz_u32x16)sub & o);
        o |= sign;
        memcpy(out + i, &o, sizeof o);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = vz_f16_to_f32(h);
    }
}

#if VZ_HALF_X86
__attribute__((target("avx2"))) void vz_bf16_rows_to_f32_avx2(float *out, const uint8_t *src, size_t n) {
    bf16_body(out, src, n);
}
__attribute__((target("avx512f"))) void vz_bf16_rows_to_f32_avx512(float *out, const uint8_t *src, size_t n) {
    bf16_body(out, src, n);
}

__attribute__((target("avx2,f16c"))) void vz_f16_rows_to_f32_f16c(float *out, const uint8_t *src, size_t n) {
    const __m256i abs_mask = _mm256_set1_epi16(0x7fff), inf = _mm256_set1_epi16(0x7c00);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * i));
        __m256i nan = _mm256_cmpgt_epi16(_mm256_and_si256(h, abs_mask), inf); /* |h| > inf, signed 16-bit */
        if (_mm256_movemask_epi8(nan)) {
            vz_f16_rows_to_f32_generic(out + i, src + 2 * i, 16);
            continue;
        }
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(out + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    }
    vz_f16_rows_to_f32_generic(out + i, src + 2 * i, n - i);
}

typedef void (*vz_half_fn)(float *, const uint8_t *, size_t);

/* The versions for this CPU, picked on the first call (not ifuncs: resolvers
 * run before sanitizer runtimes start). Racing first calls store the same. */
static vz_half_fn bf16_impl, f16_impl;

static vz_half_fn pick_bf16(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return vz_bf16_rows_to_f32_avx512;
    if (__builtin_cpu_supports("avx2")) return vz_bf16_rows_to_f32_avx2;
    return vz_bf16_rows_to_f32_generic;
}

static vz_half_fn pick_f16(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && vz_cpu_has_f16c()) return vz_f16_rows_to_f32_f16c;
    return vz_f16_rows_to_f32_generic;
}

void vz_bf16_rows_to_f32(float *out, const uint8_t *src, size_t n) {
    vz_half_fn f = __atomic_load_n(&bf16_impl, __ATOMIC_RELAXED);
    if (!f) {
        f = pick_bf16();
        __atomic_store_n(&bf16_impl, f, __ATOMIC_RELAXED);
    }
    f(out, src, n);
}

void vz_f16_rows_to_f32(float *out, const uint8_t *src, size_t n) {
    vz_half_fn f = __atomic_load_n(&f16_impl, __ATOMIC_RELAXED);
    if (!f) {
        f = pick_f16();
        __atomic_store_n(&f16_impl, f, __ATOMIC_RELAXED);
    }
    f(out, src, n);
}
#else
void vz_bf16_rows_to_f32(float *out, const uint8_t *src, size_t n) { bf16_body(out, src, n); }
void vz_f16_rows_to_f32(float *out, const uint8_t *src, size_t n) { vz_f16_rows_to_f32_generic(out, src, n); }
#endif
