/*
 * lossless_tile.c - the GPU orders of a `lossless` tensor: the GPU sign order
 * of packed4 code words (at the end, lossless_tile.h), and the tile order of
 * the exception list (docs/cuda.md). The tensor-core matvec
 * (src/backend/cuda/matvec_tc.cu) has a warp decode a tile of 8 rows x 128
 * columns per step, lane 4n + q owning the 32 elements of row 8o + n,
 * columns 128s + 32q ..; the on-disk list is per (row, 1024-column block).
 * This re-orders the same entries by tile, each entry's offset rewritten to
 * (owner lane) * 32 + element, so the kernel patches them exactly as the
 * per-block decoders do. Same entry count, same bytes: the device blob keeps
 * the tensor's size. The low planes and codes are copied unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/lossless_tile.h"

int vz_lossless_tile_ok(const vz_tensor *t) {
    return t && t->codec == VZ_CODEC_lossless && t->rows > 0 && t->cols > 0 && t->rows % 8 == 0 &&
           t->cols % 128 == 0;
}

vz_status vz_lossless_tile_order(const vz_tensor *t, uint8_t *dst) {
    VZ_FAIL_IF(!vz_lossless_tile_ok(t) || !dst, VZ_ERR_ARG, "tensor %s: lossless tile order needs rows %% 8 == 0 and "
               "cols %% 128 == 0", t ? t->name : "(null)");
    VZ_TRY(vz_tensor_check(t));
    vz_lossless_sections sec;
    VZ_FAIL_IF(!vz_lossless_sections_of(t, &sec), VZ_ERR_FORMAT, "tensor %s: lossless bad shape", t->name);
    const uint64_t rows = (uint64_t)t->rows, cols = (uint64_t)t->cols;
    const uint64_t bpr = sec.bpr, steps = cols / 128;
    const uint64_t index = sec.index, exc = sec.exc, ntile = rows / 8 * steps;
    const uint8_t *src = t->data;
    uint32_t *start = calloc(ntile + 1, sizeof *start);
    VZ_FAIL_IF(!start, VZ_ERR_NOMEM, "tensor %s: tile order index (%llu tiles)", t->name, (unsigned long long)ntile);
    /* entries per tile, then their start (prefix sum) */
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t b = 0; b < bpr; b++) {
            uint32_t e0 = vz_le32(src + index + 4 * (r * bpr + b)), e1 = vz_le32(src + index + 4 * (r * bpr + b + 1));
            for (uint32_t x = e0; x < e1; x++) {
                uint64_t c = 1024 * b + (vz_le16(src + exc + 2 * (uint64_t)x) & 1023u);
                start[(r / 8) * steps + c / 128 + 1]++;
            }
        }
    for (uint64_t i = 0; i < ntile; i++) start[i + 1] += start[i];
    memcpy(dst, src, index);
    memset(dst + index, 0, exc - index);
    for (uint64_t i = 0; i <= ntile; i++) vz_st32(dst + index + 4 * i, start[i]);
    /* rows ascending, columns ascending within a row: each tile's entries
     * come out sorted by their new offset (4n + q) * 32 + e */
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t b = 0; b < bpr; b++) {
            uint32_t e0 = vz_le32(src + index + 4 * (r * bpr + b)), e1 = vz_le32(src + index + 4 * (r * bpr + b + 1));
            for (uint32_t x = e0; x < e1; x++) {
                unsigned v = vz_le16(src + exc + 2 * (uint64_t)x);
                uint64_t c = 1024 * b + (v & 1023u), tile = (r / 8) * steps + c / 128;
                unsigned off = (unsigned)((4 * (r % 8) + (c % 128) / 32) * 32 + c % 32);
                vz_st16(dst + exc + 2 * (uint64_t)start[tile]++, (uint16_t)((v & ~1023u) | off));
            }
        }
    free(start);
    return VZ_OK;
}

int vz_lossless_gpu4_ok(const vz_tensor *t) {
    return t && t->codec == VZ_CODEC_lossless && t->params && t->params_size >= 3 && t->params[1] == 4 &&
           t->params[2] == 2;
}

void vz_lossless_gpu4_words(const vz_tensor *t, uint64_t *off, uint64_t *nw) {
    vz_lossless_sections sec = {0, 0, 0, 0, 0};
    vz_lossless_sections_of(t, &sec);
    *off = sec.codes, *nw = sec.code_bytes / 4;
}

vz_status vz_lossless_gpu4_order(const vz_tensor *t, uint8_t *dst) {
    VZ_FAIL_IF(!vz_lossless_gpu4_ok(t) || !dst, VZ_ERR_ARG, "tensor %s: the GPU sign order needs lossless packed4",
               t ? t->name : "(null)");
    VZ_TRY(vz_tensor_check(t));
    uint64_t codes, nw;
    vz_lossless_gpu4_words(t, &codes, &nw);
    const uint64_t end = codes + 4 * nw; /* the sections around the codes as they are */
    memcpy(dst, t->data, codes);
    memcpy(dst + end, t->data + end, t->size - end);
    const int64_t n = (int64_t)nw;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (int64_t i = 0; i < n; i++)
        vz_st32(dst + codes + 4 * (uint64_t)i, vz_ll4_gpu_word(vz_le32(t->data + codes + 4 * (uint64_t)i)));
    return VZ_OK;
}
