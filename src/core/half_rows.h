/*
 * half_rows.h - bulk bf16/f16 -> f32 conversion of little-endian element
 * arrays (the raw codec's decode, and any codec that rebuilds 16-bit source
 * elements). Every version returns exactly the bits of vz_bf16_to_f32 /
 * vz_f16_to_f32 in core/half.h, NaN payloads included; the fastest one the
 * CPU supports is picked on the first call.
 */
#ifndef VZ_CORE_HALF_ROWS_H
#define VZ_CORE_HALF_ROWS_H

#include <stddef.h>
#include <stdint.h>

/* out[i] = value of the i-th 16-bit element at src (any alignment), i < n. */
void vz_bf16_rows_to_f32(float *out, const uint8_t *src, size_t n);
void vz_f16_rows_to_f32(float *out, const uint8_t *src, size_t n);

/* The versions the two above pick from (exported for tests/test_simd.c).
 * Call the x86 ones only where __builtin_cpu_supports("avx2") (and
 * vz_cpu_has_f16c() for f16) / ("avx512f") says so. */
#if defined(__x86_64__) && defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define VZ_HALF_X86 1
#include <cpuid.h>
/* F16C present (CPUID.1:ECX); clang has no __builtin_cpu_supports("f16c"). */
static inline int vz_cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
void vz_bf16_rows_to_f32_avx2(float *out, const uint8_t *src, size_t n);
void vz_bf16_rows_to_f32_avx512(float *out, const uint8_t *src, size_t n);
void vz_f16_rows_to_f32_f16c(float *out, const uint8_t *src, size_t n);
#else
#define VZ_HALF_X86 0
#endif
void vz_bf16_rows_to_f32_generic(float *out, const uint8_t *src, size_t n);
void vz_f16_rows_to_f32_generic(float *out, const uint8_t *src, size_t n);

#endif
