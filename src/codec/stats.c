/*
 * stats.c - see stats.h. Field positions follow docs/codecs.md: H is the top
 * byte of the element; the exponent is bits 14..7 (bf16), 14..10 (f16) or
 * 30..23 (f32).
 */
#include "codec/stats.h"

#include <math.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/lossless_tile.h"

void vz_stats_hbyte_hist(const void *src, vz_dtype d, uint64_t n, uint64_t hist[256]) {
    const uint8_t *s = src;
    int w = vz_dtype_size(d);
    for (uint64_t i = 0; i < n; i++) hist[s[i * (uint64_t)w + (uint64_t)w - 1]]++;
}

void vz_stats_exp_hist(const void *src, vz_dtype d, uint64_t n, uint64_t hist[256]) {
    const uint8_t *s = src;
    for (uint64_t i = 0; i < n; i++) {
        if (d == VZ_DTYPE_F32) hist[(vz_le32(s + 4 * i) >> 23) & 0xffu]++;
        else if (d == VZ_DTYPE_BF16) hist[(vz_le16(s + 2 * i) >> 7) & 0xffu]++;
        else hist[(vz_le16(s + 2 * i) >> 10) & 0x1fu]++;
    }
}

double vz_stats_entropy(const uint64_t *hist, int nbins) {
    double tot = 0, e = 0;
    for (int i = 0; i < nbins; i++) tot += (double)hist[i];
    for (int i = 0; i < nbins; i++)
        if (hist[i]) e -= (double)hist[i] / tot * log2((double)hist[i] / tot);
    return e;
}

int vz_stats_raw_bits(vz_dtype d) { return d == VZ_DTYPE_F32 ? 24 : d == VZ_DTYPE_F16 ? 11 : 8; }

vz_status vz_stats_lossless_info(const vz_tensor *t, int *k, uint64_t *exceptions) {
    VZ_FAIL_IF(t->codec != VZ_CODEC_lossless, VZ_ERR_CODEC, "tensor %s: not a lossless tensor", t->name);
    VZ_TRY(vz_tensor_check(t));
    *k = t->params[1];
    vz_lossless_sections sec; /* the codec's own geometry (lossless.c) */
    VZ_FAIL_IF(!vz_lossless_sections_of(t, &sec), VZ_ERR_FORMAT, "tensor %s: lossless shape or code bits (%d) invalid",
               t->name, *k);
    *exceptions = vz_le32(t->data + sec.index + 4 * ((uint64_t)t->rows * sec.bpr));
    return VZ_OK;
}
