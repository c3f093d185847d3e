/*
 * stream.h - layer streaming and the decoded-layer cache of a CUDA session
 * (issue #5, stream.cu): layers the planner (src/model/plan.c) does not keep
 * resident live in pinned host memory, packed as vz_plan_layer_pack lays
 * them out, and are copied on a copy stream into device slots, ordered
 * against the compute stream by events. With lossless-max transport
 * (model/lmax_pack.h) a lossless layer travels as lossless-max and is decoded
 * into a raw slot on the compute stream. Internal to session_cuda.cu.
 */
#ifndef VZ_BACKEND_CUDA_STREAM_H
#define VZ_BACKEND_CUDA_STREAM_H

#include <cuda_runtime.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "model/model.h"
}

typedef struct vz_stream vz_stream;

/* Streams layers first..n_layers-1 of m through two slots (decoded: packed
 * decoded on the host, for decompress-at-load), or with cache_slots > 0
 * (first = 0) keeps an LRU of that many layers decoded on the GPU, filled
 * through two staging slots. *dev_bytes gets the device bytes allocated. */
vz_status vz_stream_create(vz_stream **out, const vz_model *m, int32_t first, int32_t decoded, int32_t cache_slots,
                           uint64_t *dev_bytes);
void vz_stream_free(vz_stream *sm);

/* 1 when a step can be captured in a CUDA graph: streaming, or the cache
 * once every layer holds a slot (its slots then never change); not a cache
 * with misses, whose slot choice is made on the host at each layer. */
int vz_stream_graphable(const vz_stream *sm);
/* Bytes copied host to device by one forward step (streaming mode). */
uint64_t vz_stream_step_bytes(const vz_stream *sm);
/* Bytes copied host to device by eager (uncaptured) steps so far. */
uint64_t vz_stream_eager_bytes(const vz_stream *sm);

/* Start of a forward step on st: the copy stream forks from st, the first
 * streamed layer's copy starts. */
vz_status vz_stream_begin(vz_stream *sm, cudaStream_t st);
/* Before layer l's kernels on st: *w[i] gets layer l's tensor i (wq wk wv
 * wo w1 w2 w3) in its slot, st waits for its copy (cache: its decode), and
 * layer l+1's copy is issued. Resident layers (l < first): no-op. */
vz_status vz_stream_acquire(vz_stream *sm, int32_t l, vz_cuda_tensor *const w[7], cudaStream_t st);
/* After layer l's kernels on st: its slot may be refilled once st gets here. */
vz_status vz_stream_release(vz_stream *sm, int32_t l, cudaStream_t st);

/* Pinned host-to-device copy bandwidth: median GB/s of 5 copies of 256 MiB. */
vz_status vz_stream_h2d_probe(double *gbs);

#endif
