/*
 * lossless_tile.h - the GPU tile order of a `lossless` tensor (lossless_tile.c,
 * docs/codecs.md "GPU tile order"): the device copy of a tensor read by the
 * tensor-core matvec lists its exceptions per tile of 8 rows x 128 columns.
 */
#ifndef VZ_CODEC_LOSSLESS_TILE_H
#define VZ_CODEC_LOSSLESS_TILE_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* 1 when t is lossless with rows % 8 == 0 and cols % 128 == 0. */
int vz_lossless_tile_ok(const vz_tensor *t);

/* dst (t->size bytes) = t's blob with the exception index and list in tile
 * order: index[o * (cols/128) + s] = first entry of tile (o, s) (rows 8o..,
 * columns 128s..), rows/8 * cols/128 + 1 u32 (the rest of the on-disk index
 * section is zero); an entry keeps its high bits, its offset becomes
 * (4 * (r - 8o) + (c - 128s) / 32) * 32 + c % 32, sorted within the tile.
 * t must pass vz_tensor_check (checked here). */
vz_status vz_lossless_tile_order(const vz_tensor *t, uint8_t *dst);

#endif
