/*
 * bits.h - small helpers shared by the codec files: overflow-checked size
 * arithmetic, 16-byte section alignment (docs/codecs.md "Conventions"),
 * little-endian stores, an inline lrint for small values, a fast
 * branch-free f16 -> f32 that equals vz_f16_to_f32 bit for bit, and the
 * element <-> f32 conversion per dtype.
 */
#ifndef VZ_CODEC_BITS_H
#define VZ_CODEC_BITS_H

#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "core/io.h"
#include "core/tensor.h"

/* a*b and a+b with overflow detection: return 0 on overflow. */
static inline int vz_mul_ok(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline int vz_add_ok(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }

/* lrint's value as a double for |x| < 2^51 in the default rounding mode
 * (to nearest, ties to even), inline: adding and removing 1.5 * 2^52
 * leaves x rounded to an integer (lrint is a libm call on baseline x86-64;
 * the q8 and q4 encoders round every element). */
static inline double vz_rint_small(double x) { return (x + 0x1.8p52) - 0x1.8p52; }

/* Rounds up to a multiple of 16; 0 on overflow (callers bound x far below). */
static inline uint64_t vz_al16(uint64_t x) { return x > UINT64_MAX - 15 ? 0 : (x + 15) & ~(uint64_t)15; }

static inline void vz_st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void vz_st32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static inline void vz_st64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* f16 -> f32 without branches on the value (NaN payloads, subnormals, zeros
 * and infinities included); equal to vz_f16_to_f32 for all 65536 inputs. */
static inline float vz_f16_to_f32_fast(uint16_t h) {
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t e = o & 0x0f800000u;
    o += (uint32_t)(127 - 15) << 23;
    o += e == 0x0f800000u ? (uint32_t)(128 - 16) << 23 : 0;
    float sub = vz_bits_f32(o + (1u << 23)) - vz_bits_f32(113u << 23); /* exact for subnormals */
    uint32_t r = e == 0 ? vz_f32_bits(sub) : o;
    return vz_bits_f32(r | (uint32_t)(h & 0x8000u) << 16);
}

/* Element i of a source array of dtype d as f32 (exact). */
static inline float vz_elem_f32(const void *src, vz_dtype d, uint64_t i) {
    const uint8_t *p = (const uint8_t *)src;
    if (d == VZ_DTYPE_F32) return vz_bits_f32(vz_le32(p + 4 * i));
    uint16_t h = vz_le16(p + 2 * i);
    return d == VZ_DTYPE_BF16 ? vz_bf16_to_f32(h) : vz_f16_to_f32(h);
}

/* The smallest f16 >= x (x >= 0, finite): a quantization scale that never
 * rounds below the value it must cover. Returns 0x7c00 (inf) when too large. */
static inline uint16_t vz_f16_ceil(double x) {
    uint16_t h = vz_f32_to_f16((float)x);
    while (h < 0x7c00u && (double)vz_f16_to_f32(h) < x) h++;
    return h;
}

static inline int vz_dtype_ok(vz_dtype d) { return d == VZ_DTYPE_F32 || d == VZ_DTYPE_F16 || d == VZ_DTYPE_BF16; }

#endif
