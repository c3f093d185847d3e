/*
 * lmax.h - GPU decoder of lossless-max blocks (lmax.cu): a block packed by
 * vz_lmax_encode (src/model/lmax_pack.h) in device memory is decoded into
 * the source bits of each tensor (raw tensors) in a destination buffer.
 * CPU reference: vz_lmax_decode_ref (lmax_pack.c). C-callable.
 */
#ifndef VZ_BACKEND_CUDA_LMAX_H
#define VZ_BACKEND_CUDA_LMAX_H

#ifdef __cplusplus
extern "C" {
#endif

#include "core/status.h"
#include "model/lmax_pack.h"

/* Allows the decoder its shared tables (up to scale 15); once, outside graph capture. */
vz_status vz_lmax_prepare(void);
/* Decodes every tensor of b from src (the packed block, device) into dst +
 * b->t[i].out (device, 16-byte aligned), asynchronously on stream
 * (cudaStream_t or NULL). */
vz_status vz_lmax_decode(const vz_lmax_block *b, const uint8_t *src, uint8_t *dst, void *stream);

#ifdef __cplusplus
}
#endif

#endif
