/*
 * lossless_max.h - the layout of a `lossless-max` tensor (codec 2,
 * lossless_max.c; docs/codecs.md section 2) for decoders outside the codec
 * file: the GPU decoder of streamed layers (src/backend/cuda/lmax.cu) reads
 * the chunk index, raw plane and streams of the data blob with these figures.
 */
#ifndef VZ_CODEC_LOSSLESS_MAX_H
#define VZ_CODEC_LOSSLESS_MAX_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

typedef struct vz_lmax_layout {
    uint64_t chunk_rows, nchunks; /* rows per rANS stream, streams */
    uint64_t raw, streams;        /* byte offsets in the data blob of the raw plane and the streams */
    int32_t scale, lo, nsym;      /* frequencies sum to 2^scale; symbols lo .. lo+nsym-1 */
    int32_t ebits, rbits;         /* exponent bits, raw (sign + mantissa) bits */
    uint16_t freq[256], start[256]; /* of symbol lo + s; start: cumulative */
} vz_lmax_layout;

/* Validates t (a lossless-max tensor: the codec's check) and fills *out. */
vz_status vz_lossless_max_layout(const vz_tensor *t, vz_lmax_layout *out);

#endif
