/*
 * step.h - the persistent decode step (step.cu): all transformer layers of
 * one batch-1 decode step in ONE kernel launch. Each CTA stays resident for
 * the whole step; the phases of a layer (RMSNorm + QKV matvec, attention,
 * Wo + residual, RMSNorm + gate/up + SiLU, down + residual) are separated by
 * grid barriers, and before each barrier every warp already issues the
 * weight loads of its part of the next phase (weights depend on nothing),
 * meant to keep the memory system busy across phase boundaries, where a
 * chain of ~5 kernels per layer pays each kernel's ramp and drain.
 * Matvecs run mv4.cuh's warp loop and attention attention.cuh's block, so
 * the step gives the same bits as the kernel chain (tests/test_cuda_forward.c
 * compares them with memcmp). Opt-in (VZ_CUDA_STEP=1): measured slower than
 * the chain on the H200 so far (bench/results/2026-11-28-session5-h200.md).
 * VZ_CUDA_STEP=2, the ring step (raw bf16 only): the same phases with each
 * CTA's weights streamed by the copy engine into a ring of shared-memory
 * slots, across the barriers; also slower (step.cu, bench/results/
 * 2026-11-30-session26-h200.md).
 * Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_STEP_H
#define VZ_BACKEND_CUDA_STEP_H

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "core/status.h"
}

/* What one step reads and writes: the session's buffers (device), the
 * model's shape. Position and KV slot come from d_pos[0], d_slot[0]. */
typedef struct vz_step_desc {
    int32_t n_layers, dim, hidden, n_heads, n_kv, head_dim, n_ctx, kv_f16, interleaved, chunk;
    int32_t warps; /* per CTA: 16, else 12 (step.cu) */
    int32_t pf;    /* 1: Wo prefetched into L2 during attention (step.cu) */
    int32_t ring;  /* 1: the ring step (weights streamed through shared memory; raw bf16 only), step.cu */
    float eps, theta;
    float *x, *q, *k, *v, *att, *hb, *part;
    int32_t *cnt;                /* attention merge counters (forward.cuh) */
    const int32_t *d_pos, *d_slot;
    void *kc, *vc;               /* layer 0's caches; layer l at + l * kv_layer bytes */
    uint64_t kv_layer, slot_bytes;
} vz_step_desc;

typedef struct vz_step vz_step;

/* The step for desc and the layers' tensors w[7 * l + i] in the order wq wk
 * wv wo w1 w3 w2, norms[2 * l] (attention) and [2 * l + 1] (MLP).
 * VZ_ERR_UNSUPPORTED when the layers do not fit it (a tensor without a fast
 * decoder, mixed codecs, a tensor-core or tiled tensor, rows too wide for
 * shared memory): the caller keeps the kernel chain. *bytes: device memory
 * it allocated. */
vz_status vz_step_create(vz_step **out, const vz_step_desc *desc, const vz_cuda_tensor *const *w,
                         const float *const *norms, uint64_t *bytes);
/* [st] The layers of one decode step of one token (x: its embedding in, the
 * last layer's output out). */
vz_status vz_step_run(vz_step *s, cudaStream_t st);
void vz_step_free(vz_step *s);
/* 1 when s is the ring step (desc.ring). */
int vz_step_is_ring(const vz_step *s);
/* [st] VZ_CUDA_PROFILE: one launch with a clock64 trace of every CTA's
 * barriers; prints to f per phase the mean barrier wait, input staging and
 * work per layer (synchronizes st). */
void vz_step_profile(vz_step *s, cudaStream_t st, FILE *f);

#endif
