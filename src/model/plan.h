/*
 * plan.h - the VRAM residency planner of CUDA sessions (issue #5): device
 * bytes of each part of a session (weights per layer, KV cache, scratch as
 * session_cuda.cu allocates them) and the choice of resident vs streamed
 * layers under a budget, with advice when nothing fits. Pure C, no CUDA:
 * the public entry is vz_session_plan (vramzip.h).
 */
#ifndef VZ_MODEL_PLAN_H
#define VZ_MODEL_PLAN_H

#include <stdint.h>

#include "model/model.h"

#define VZ_PLAN_BATCH 8                       /* VZ_CUDA_MAX_BATCH of forward.cuh */
#define VZ_PLAN_RESERVE ((uint64_t)16 << 20)  /* CUDA graphs, allocator slack (measured: < 10 MiB) */
/* Runtime memory outside the session's own allocations once a prefill has
 * loaded cuBLAS (its handle and kernels) and the decode graphs exist:
 * measured 64.7 MiB (stories260K) to 72 MiB (tinyllama-1.1b) on an H200
 * with CUDA 13.0 / cuBLAS 13.1 (bench/results/2026-11-28-final-h200.md);
 * with VZ_PLAN_RESERVE it is planned as 80 MiB. */
#define VZ_PLAN_CUBLAS ((uint64_t)64 << 20)
/* Prefill (session_cuda.cu pf_*): tokens per chunk, rows per all-logits
 * head GEMM, cuBLAS workspace (gemm.cu). Sessions of every residency use
 * the same values, so their prefill logits are the same bits. */
#define VZ_PLAN_PREFILL_CAP 512
#define VZ_PLAN_PREFILL_LOGIT_ROWS 64
#define VZ_PLAN_GEMM_WORKSPACE ((uint64_t)16 << 20)
/* The prefill GEMM scratch: the largest stacked op (QKV, gate + up), at
 * most this many bf16 elements; larger ones run in row chunks of it (the
 * chunks set the cuBLAS calls, so the same in every residency). 16 Mi
 * (one matrix) before session 22: on an H200 twice that made the 512-token
 * prefill of tinyllama 4-7% faster (its gate + up one GEMM instead of two)
 * and of llama2-7b raw 27.7k -> 39.2k tok/s, lossless 19.9k -> 26.4k
 * (bench/results/2026-11-30-session22-h200.md, run 5). 32 Mi -> 64 Mi in
 * session 24, so that no single matrix of a 7-8B shape is split:
 * mistral-7b's down (56 Mi) ran as GEMMs of 3510 and 586 rows, and its raw
 * prefill took 25.6k tok/s against 39.6-41.0k as one GEMM (each chunk's
 * GEMM fills its own waves of tiles, about two where one GEMM needs one:
 * a reading of the tile counts, not profiled); llama2-7b raw 39.5k ->
 * 41-42k, lossless 26.7k -> 27.5-28.3k; 64 MB more on those shapes;
 * tinyllama's largest op is 23 Mi (bench/results/2026-11-30-session24-h200.md). */
#define VZ_PLAN_GEMM_SCRATCH ((int64_t)64 << 20)
#define VZ_PLAN_DECODE_TMP ((uint64_t)4 << 20) /* residency cache: f32 rows of one decode chunk */
#define VZ_PLAN_ALIGN 256                     /* sections of a packed layer */
#define VZ_PLAN_ARENA_SLACK ((uint64_t)2 << 20) /* the weight arena's allocation rounding */

/* Device bytes of tensor t held resident in its encoding inside the weight
 * arena (one allocation for all such tensors: vz_cuda_tensor_upload_at): its
 * blob from offset 0 and, lossless, its code lut from offset
 * roundup(size, 256), each rounded up to 256 bytes. */
uint64_t vz_plan_tensor_bytes(const vz_tensor *t);

/* Device footprint of one cudaMalloc of n bytes: rounded up to 2 MiB from
 * 1 MiB on, else to 512 bytes. */
uint64_t vz_plan_dev_round(uint64_t n);

/* f32 vectors the device keeps beside the weights, in one allocation: the
 * RMSNorm weights (2 n_layers + 1 rows of dim), q/k/v biases (Qwen 2:
 * n_layers rows of q_dim + 2 kv_dim) and a rope_scaling model's pair
 * frequencies (head_dim / 2). */
uint64_t vz_plan_small_floats(const vz_config *c);

/* KV cache (keys + values, as two allocations, each n_seq slots of n_ctx
 * positions: [batch]) and scratch (activations of VZ_PLAN_BATCH tokens,
 * logits, attention partials, lane state, sampled ids of n_seq sequences)
 * of session_cuda.cu. n_seq 0 counts as 1. */
uint64_t vz_plan_kv_bytes(const vz_config *c, int32_t n_ctx, int32_t n_seq, int32_t kv_f16);
uint64_t vz_plan_scratch_bytes(const vz_config *c, int32_t n_ctx, int32_t n_seq);
/* bf16 elements of the prefill GEMM scratch (VZ_PLAN_GEMM_SCRATCH): the
 * largest stacked op, at most that; session_prefill.cu allocates this. */
uint64_t vz_plan_gemm_scratch_elems(const vz_config *c);
/* Prefill buffers (GEMM scratch of the largest stacked op, cuBLAS workspace,
 * activations of one chunk, head rows) as session_cuda.cu's pf_setup
 * allocates them, plus cuBLAS's own memory; counted in vz_plan_scratch_bytes. */
uint64_t vz_plan_prefill_bytes(const vz_config *c, int32_t n_ctx);

/* Device bytes by shape alone when every 2-D tensor is encoded with codec
 * id (raw in dtype, q8 group 128, q4 group 32 symmetric; the defaults of
 * `vramzip convert`): *layer per layer, *global embedding + head + norms.
 * arena: held as the compressed residency holds them (one allocation in
 * 256-byte slices), else each tensor its own allocation (decompress-at-load). */
void vz_plan_shape_bytes(const vz_config *c, int codec_id, vz_dtype dtype, int arena, uint64_t *layer,
                         uint64_t *global);

/* Layout of one layer's 7 tensors (wq wk wv wo w1 w2 w3) packed into one
 * device buffer, each section VZ_PLAN_ALIGN-aligned: off[i] the data of
 * tensor i, off[7 + i] its lossless code lut (else unused). decoded: each
 * tensor as a raw tensor of its decoded dtype (vz_plan_decoded_dtype), no
 * luts. Returns the packed bytes (the streaming and cache slots of
 * src/backend/cuda/stream.cu use exactly this layout). */
uint64_t vz_plan_layer_pack(const vz_layer *L, int decoded, uint64_t off[14]);
/* dtype of t decoded: the source dtype for raw and lossless codecs, f32 for lossy ones. */
vz_dtype vz_plan_decoded_dtype(const vz_tensor *t);

typedef struct vz_plan_in {
    const vz_config *c;
    int32_t n_ctx, kv_f16;
    int32_t n_seq;               /* [batch] sequences (KV slots); 0: 1 */
    const uint64_t *layer_bytes; /* c->n_layers device bytes, as resident */
    const uint64_t *stream_bytes; /* c->n_layers bytes of a streamed layer's slot; NULL: layer_bytes */
    const uint64_t *decoded_bytes; /* lossless-max transport (lmax_pack.h): c->n_layers bytes of the one
                                      decoded slot a streamed layer is decoded into; NULL: none */
    uint64_t global_bytes;       /* embedding + head + norms */
    uint64_t budget;             /* 0: none (everything resident) */
    int32_t budget_is_free;      /* for the advice: budget is the free VRAM */
    int32_t stream_ok;           /* 0: every layer must be resident */
    vz_residency residency;
} vz_plan_in;

/* Fills *out (never fails): the most layers resident (a prefix) that fit,
 * the rest streamed when stream_ok (two slots of the largest stream_bytes,
 * plus one of the largest decoded_bytes of a streamed layer when given);
 * fits = 0 with advice otherwise.
 * residency cache: n_resident is the number of decoded-layer cache slots
 * (layer_bytes: decoded, all slots of the largest), stream_buf_bytes two
 * staging slots of the largest stream_bytes plus the decode temporaries;
 * every layer passes through the cache, n_streamed = layers without a slot. */
void vz_plan_make(const vz_plan_in *in, vz_plan *out);

/* vz_session_plan with streaming allowed or not. */
vz_status vz_plan_session(const vz_model *m, const vz_session_opts *opts, int32_t stream_ok, vz_plan *out);

#endif
