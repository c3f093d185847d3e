/*
 * lossless_tile.h - the GPU orders of a `lossless` tensor (lossless_tile.c,
 * docs/cuda.md): the device copy of a tensor read by the tensor-core matvec
 * lists its exceptions per tile of 8 rows x 128 columns; that of a packed4
 * tensor of the fast kind keeps the codes' bit 3 in other nibbles.
 */
#ifndef VZ_CODEC_LOSSLESS_TILE_H
#define VZ_CODEC_LOSSLESS_TILE_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* Byte offsets in a lossless tensor's blob of its code words (code_bytes
 * of them), exception index and exceptions (docs/codecs.md), and its
 * exception blocks per row (bpr: the index holds rows * bpr + 1 entries). */
typedef struct vz_lossless_sections {
    uint64_t codes, code_bytes, index, exc, bpr;
} vz_lossless_sections;

/* s = t's sections, from the codec's own geometry (lossless.c); 0 when t's
 * shape, dtype or code bits (params[1]) are invalid. */
int vz_lossless_sections_of(const vz_tensor *t, vz_lossless_sections *s);

/* 1 when t is lossless with rows % 8 == 0 and cols % 128 == 0. */
int vz_lossless_tile_ok(const vz_tensor *t);

/* dst (t->size bytes) = t's blob with the exception index and list in tile
 * order: index[o * (cols/128) + s] = first entry of tile (o, s) (rows 8o..,
 * columns 128s..), rows/8 * cols/128 + 1 u32 (the rest of the on-disk index
 * section is zero); an entry keeps its high bits, its offset becomes
 * (4 * (r - 8o) + (c - 128s) / 32) * 32 + c % 32, sorted within the tile.
 * t must pass vz_tensor_check (checked here). */
vz_status vz_lossless_tile_order(const vz_tensor *t, uint8_t *dst);

#ifdef __CUDACC__
#define VZ_LL4_HD __host__ __device__ /* also the upload's kernel (cuda_weights.cu) */
#else
#define VZ_LL4_HD
#endif

/* Bit 3 of code j (0..7) of a packed4 code word in the GPU sign order: the
 * top bit of byte j (codes 0..3) or bit 3 of byte j - 4 (codes 4..7), so
 * that w & 0x80808080 and (w << 4) & 0x80808080 are the sign bits of the
 * H bytes of codes 0..3 and 4..7. Bits [2:0] stay in nibble j. */
static inline VZ_LL4_HD unsigned vz_ll4_gpu_slot(unsigned j) { return j < 4 ? 8 * j + 7 : 8 * (j - 4) + 3; }

/* A packed4 code word (layout 2) in the GPU sign order. */
static inline VZ_LL4_HD uint32_t vz_ll4_gpu_word(uint32_t w) {
    uint32_t o = w & 0x77777777u;
    for (unsigned j = 0; j < 8; j++) o |= (w >> (4 * j + 3) & 1u) << vz_ll4_gpu_slot(j);
    return o;
}

/* 1 when t is lossless packed4 (k = 4, layout 2). */
int vz_lossless_gpu4_ok(const vz_tensor *t);

/* Where t's code words lie: *off, the byte offset of the codes section in
 * its blob, and *nw, their count (t: vz_lossless_gpu4_ok; vz_lossless_sections_of;
 * 0 and 0 where that refuses t). */
void vz_lossless_gpu4_words(const vz_tensor *t, uint64_t *off, uint64_t *nw);

/* dst (t->size bytes) = t's blob with every code word in the GPU sign order
 * (vz_ll4_gpu_word); the rest copied unchanged. t must pass vz_tensor_check
 * (checked here). */
vz_status vz_lossless_gpu4_order(const vz_tensor *t, uint8_t *dst);

#endif
