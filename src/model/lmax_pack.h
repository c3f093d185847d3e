/*
 * lmax_pack.h - lossless-max transport of streamed layers (issue #5): a
 * streamed layer of a lossless .vz may travel over PCIe re-encoded as
 * `lossless-max` (docs/codecs.md section 2, ~8% fewer bytes than the
 * fixed-rate `lossless`) and be decoded on the GPU (src/backend/cuda/lmax.cu)
 * into raw tensors of the source dtype before its matvecs. This file picks
 * the transport, encodes tensors on the host and lays them out in one block
 * per group (a layer); pure C, no CUDA.
 */
#ifndef VZ_MODEL_LMAX_PACK_H
#define VZ_MODEL_LMAX_PACK_H

#include <stdint.h>

#include "model/model.h"

#define VZ_LMAX_MAXT 8         /* tensors per block */
#define VZ_LMAX_TAB 1024       /* table section of a tensor: u32 (start << 16 | freq) of 256 symbols */
#define VZ_LMAX_CTA_CHUNKS 64  /* rANS chunks per CUDA block (one thread each, lmax.cu) */

/* One tensor of a block: where its parts are and its geometry. */
typedef struct vz_lmax_tensor {
    uint64_t data, tab, out;   /* offsets: its lossless-max blob and table in the block, its decoded bits in
                                  the destination */
    uint64_t n, cols;          /* elements, columns */
    uint64_t chunk_rows, nchunks, raw, streams; /* docs/codecs.md section 2; raw, streams: offsets in the blob */
    int32_t dtype, scale, lo, nsym, rbits;
    int32_t nblk;              /* CUDA blocks: ceil(nchunks / VZ_LMAX_CTA_CHUNKS) */
} vz_lmax_tensor;

typedef struct vz_lmax_block {
    int32_t nt, max_scale;     /* tensors; the largest scale (shared table size) */
    vz_lmax_tensor t[VZ_LMAX_MAXT];
    uint64_t size;             /* bytes of the packed block */
} vz_lmax_block;

/* *on = 1 when the streamed layers of a session of m with residency r
 * travel as lossless-max: residency compressed, every layer tensor coded
 * `lossless`, and VZ_STREAM_CODEC (lossless | lossless-max, unset: the
 * measured default, VZ_LMAX_DEFAULT) asks for it. VZ_ERR_ARG for another
 * VZ_STREAM_CODEC value. */
vz_status vz_lmax_transport(const vz_model *m, vz_residency r, int32_t *on);

/* Encodes ngroups groups of nt tensors (ts[g * nt + i], any lossless codec;
 * `lossless-max` ones are taken as they are) as lossless-max, in parallel,
 * and packs group g into data[g] (malloc'ed, owned by the caller, blocks[g]
 * describes it): each tensor's blob then its table, VZ_PLAN_ALIGN-aligned.
 * out_off[g * nt + i]: where tensor i's decoded bits go in group g's
 * destination. what names the job in the progress line printed to stderr
 * when encoding takes over a second. On failure nothing is returned. */
vz_status vz_lmax_encode(const vz_tensor *const *ts, int32_t ngroups, int32_t nt, const uint64_t *out_off,
                         vz_lmax_block *blocks, uint8_t **data, const char *what);

/* CPU reference of the GPU decoder (lmax.cu): decodes every tensor of block
 * b (packed at data) into dst + b->t[i].out, reading only what the kernel
 * reads (blob index, streams, raw plane, table section). */
void vz_lmax_decode_ref(const vz_lmax_block *b, const uint8_t *data, uint8_t *dst);

#endif
