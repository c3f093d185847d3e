/*
 * half.h - bit-exact conversions between f32 and the 16-bit float formats.
 * bf16 -> f32 and f16 -> f32 are exact; f32 -> bf16/f16 round to nearest even
 * and keep NaNs NaN (quieted) and infinities infinite.
 */
#ifndef VZ_CORE_HALF_H
#define VZ_CORE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float vz_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t vz_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float vz_bf16_to_f32(uint16_t h) { return vz_bits_f32((uint32_t)h << 16); }

static inline uint16_t vz_f32_to_bf16(float f) {
    uint32_t u = vz_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN: keep, quiet */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float vz_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return vz_bits_f32(sign | 0x7f800000u | man << 13);
    if (exp == 0) {
        if (man == 0) return vz_bits_f32(sign);
        float v = (float)man * (1.0f / 16777216.0f); /* man * 2^-24, exact */
        return sign ? -v : v;
    }
    return vz_bits_f32(sign | (exp + 112) << 23 | man << 13);
}

static inline uint16_t vz_f32_to_f16(float f) {
    uint32_t u = vz_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) { /* subnormal or zero in f16 */
        float v = vz_bits_f32(a) * 16777216.0f; /* scale by 2^24, rounds to nearest even in the cast below */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

#endif
