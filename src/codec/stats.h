/*
 * stats.h - statistics of weight tensors that explain codec sizes (used by
 * `vramzip inspect` and bench/codec_bits.c): histograms of the high byte H
 * (what `lossless` codes) and of the exponent field (what `lossless-max`
 * entropy codes), their Shannon entropies, and a `lossless` blob's k and
 * exception count.
 */
#ifndef VZ_CODEC_STATS_H
#define VZ_CODEC_STATS_H

#include <stdint.h>

#include "core/tensor.h"

/* Adds the high byte (top 8 bits) of each of n elements of dtype d to hist. */
void vz_stats_hbyte_hist(const void *src, vz_dtype d, uint64_t n, uint64_t hist[256]);

/* Adds the exponent field (8 bits for bf16/f32, 5 for f16) to hist. */
void vz_stats_exp_hist(const void *src, vz_dtype d, uint64_t n, uint64_t hist[256]);

/* Shannon entropy in bits per sample of a histogram of nbins counts (0 if empty). */
double vz_stats_entropy(const uint64_t *hist, int nbins);

/* Bits per element stored raw by lossless-max besides the exponent:
 * sign + mantissa (8 bf16, 11 f16, 24 f32). */
int vz_stats_raw_bits(vz_dtype d);

/* k and exception count of a checked `lossless` tensor (VZ_ERR_CODEC if t
 * is not one, or its check fails). */
vz_status vz_stats_lossless_info(const vz_tensor *t, int *k, uint64_t *exceptions);

#endif
