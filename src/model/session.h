/*
 * session.h - internals of a CPU session: the KV cache, the activation
 * buffers of one batch of tokens, and the forward pass over that batch
 * (forward.c). The public API is vz_session_* in vramzip.h (session.c).
 */
#ifndef VZ_MODEL_SESSION_H
#define VZ_MODEL_SESSION_H

#include <stdint.h>

#include "model/model.h"

/* Key/value cache of every layer: k and v are (n_layers, cap, kv_dim),
 * elements f32 or f16 (IEEE half, round to nearest even on store). */
typedef struct vz_kv {
    int32_t f16;
    int32_t cap;        /* positions held */
    int32_t n_layers, kv_dim, head_dim;
    void *k, *v;
} vz_kv;

vz_status vz_kv_alloc(vz_kv *kv, const vz_config *c, int32_t cap, int32_t f16);
void vz_kv_free(vz_kv *kv);

/* Tokens evaluated per forward call: weight rows are decoded once per batch. */
#define VZ_BATCH 64

/* [batch] The state of one sequence: position, history and KV cache. */
typedef struct vz_seq_state {
    int32_t pos;
    int32_t *history;
    vz_kv kv;
} vz_seq_state;

struct vz_session {
    vz_model *m;
    vz_kv_mode kv_mode;
    int32_t n_ctx;
    int32_t n_threads;
    /* the current sequence (cur) */
    int32_t pos;          /* tokens evaluated so far */
    int32_t *history;     /* (n_ctx) tokens; kept for VZ_KV_OFF, which recomputes */
    vz_kv kv;             /* the cache; unallocated for VZ_KV_OFF and on a device session */
    /* [batch] n_seq sequences: the current one lives in pos/history/kv above,
     * the others are parked in seq[] (seq[cur] is stale); vz_session_select */
    int32_t n_seq, cur;
    vz_seq_state seq[VZ_MAX_SEQ];

    /* activations of one batch, one row per token */
    float *x;             /* (VZ_BATCH, dim) residual stream */
    float *xb;            /* (VZ_BATCH, dim) normed input / projection output */
    float *q;             /* (VZ_BATCH, n_heads * head_dim) */
    float *k, *v;         /* (VZ_BATCH, n_kv_heads * head_dim) this batch's keys, values */
    float *att;           /* (VZ_BATCH, n_heads * head_dim) attention output */
    float *hb, *hb2;      /* (VZ_BATCH, hidden_dim) gate, up */
    float *rope;          /* (VZ_BATCH, head_dim) cos/sin pairs per position */
    float *rope_freq;     /* (head_dim / 2) frequencies under rope_scaling */
    float *mm_scratch;    /* (n_threads, VZ_ROW_BLOCK, max cols) matmul row buffers */
    float *att_scratch;   /* (n_threads, att_stride) scores (n_ctx) + one f16-decoded row (head_dim) */
    int64_t att_stride;
    struct vz_cuda_session *cuda; /* [fw] the device session when device == cuda, else NULL */
    float *trace;         /* [gaps] borrowed (n_layers, 2, dim) debug buffer, or NULL: vz_session_set_trace */
};

/* Runs the model over n <= VZ_BATCH tokens at positions pos0.., appending
 * their keys/values to kv (which must have room for pos0 + n). Writes the
 * logits of batch rows [lo, n) to logits ((n - lo) * vocab floats); lo == n
 * computes none. Tokens must be valid ids. */
void vz_forward(vz_session *s, vz_kv *kv, const int32_t *tokens, int32_t n, int32_t pos0, float *logits, int32_t lo);

/* [batch] One token of each of n <= VZ_BATCH sequences: token i at position
 * pos[i] of the cache kvs[i] (distinct caches, each with room for it). The
 * weight matmuls run once for all n rows; every row's results are bitwise
 * those of vz_forward of that token alone. logits: NULL or n * vocab. */
void vz_forward_seqs(vz_session *s, vz_kv *const *kvs, const int32_t *pos, const int32_t *tokens, int32_t n,
                     float *logits);

/* [batch] Makes sequence q (in [0, n_seq), checked by the caller) current. */
void vz_session_select(vz_session *s, int32_t q);
/* [batch] vz_session_generate on the current sequence (arguments checked). */
vz_status vz_session_generate_cur(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out);

#endif
