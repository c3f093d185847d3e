/*
 * session_cuda.h - internals of a CUDA session, shared by the files that
 * implement it: session_cuda.cu (create, upload, decode step, graphs, eval,
 * generate), session_prefill.cu (prompts of more than VZ_CUDA_MAX_BATCH
 * tokens through GEMMs) and session_profile.cu (VZ_CUDA_PROFILE timings).
 * Not a public header: the API is cuda.h's vz_cuda_session_*.
 */
#ifndef VZ_BACKEND_CUDA_SESSION_CUDA_H
#define VZ_BACKEND_CUDA_SESSION_CUDA_H

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend/cpu/ops.h" /* vz_cpu_rope_freqs: the device rotates at the CPU's frequencies */
#include "codec/codec.h"
#include "core/status.h"
#include "model/model.h"
#include "model/plan.h"
}
#include "backend/cuda/cuda.h"
#include "backend/cuda/forward.cuh"
#include "backend/cuda/gemm.h"
#include "backend/cuda/prefill.h"
#include "backend/cuda/stream.h"

typedef struct dev_layer {
    vz_cuda_tensor wq, wk, wv, wo, w1, w2, w3; /* encoded, as in the model */
    const float *attn_norm, *ffn_norm; /* into norms */
    const float *bqkv;                 /* into norms: [bq | bk | bv] (Qwen 2), else NULL */
} dev_layer;

#define PROF_MAX 1024
/* Decode steps per launch of graph[0]: fewer launches per token. */
#define DECODE_STEPS 8

struct vz_cuda_session {
    vz_config c;
    int32_t n_ctx, kv_f16;
    int32_t n_seq;       /* [batch] KV slots (independent sequences) */
    int32_t cur_slot;    /* [batch] slot of the running single-sequence eval (prefill reads it) */
    uint64_t slot_bytes; /* [batch] bytes of one slot in kc (and in vc) */
    int32_t decompress; /* [plan] weights decoded at load, held raw */
    int32_t n_res;      /* [st] layers 0..n_res-1 resident; the rest streamed or cached (sm) */
    vz_stream *sm;      /* [st] stream.cu; NULL: every layer resident */
    uint64_t h2d;       /* [st] bytes streamed by graph launches */
    cudaStream_t st;
    dev_layer *L;
    vz_cuda_tensor emb, out; /* out.data == NULL when tied: the head reads emb */
    uint8_t *arena;          /* the resident encoded tensors, one allocation (no rounding per tensor) */
    uint64_t arena_bytes, arena_off;
    float *norms;   /* (2 * n_layers + 1, dim), then biases and rope_freq (vz_plan_small_floats) */
    const float *rope_freq; /* into norms: a rope_scaling model's pair frequencies (head_dim / 2), else NULL */
    void *kc, *vc;  /* (n_seq, n_layers, n_ctx, kv_dim) each */
    float *x, *xb, *q, *k, *v, *att, *hb, *logits, *part;
    int32_t *att_cnt; /* attention merge counters (forward.cuh) */
    unsigned long long *keys; /* the head's greedy keys at batch 1 (cuda.h vz_cuda_matvec_head), 0 between steps */
    /* device, per lane (one sequence: lane 0): tok (8), pos (8), slot (8), step (8) in one
     * allocation (lanes), sampled ids (n_seq, n_ctx) */
    int32_t *lanes, *tok, *pos, *slot, *step, *out_ids;
    cudaGraphExec_t graph[VZ_CUDA_MAX_BATCH + 1]; /* [B]: one step of B tokens; [0]: DECODE_STEPS steps of 1 */
    vz_sampler_opts gopts;               /* sampler baked into graph[1] and graph[0] */
    /* [batch] [B][0]: one step of B sequences (a token each); [B][1]: DECODE_STEPS such steps */
    cudaGraphExec_t mgraph[VZ_CUDA_MAX_BATCH + 1][2];
    vz_sample_lanes mopts;               /* [batch] samplers baked into mgraph */
    uint64_t w_bytes, kv_bytes, scratch_bytes, free0, min_free, total;
    int32_t att_variant;                 /* forward.cuh variants; 0 default */
    int32_t att_chunk;                   /* keys per attention block (forward.cuh) */
    int32_t att_linger;                  /* VZ_CUDA_ATT_LINGER: vz_k_attention's linger */
    int32_t att_late;                    /* VZ_CUDA_ATT_LATE: vz_k_attention's late, 0 or 1; -1 by Wo's codec */
    int32_t att_room;                    /* VZ_CUDA_ATT_ROOM: vz_k_attention's room at any batch; -1 by Wo's codec and B */
    float *trace;                        /* host (n_layers, 2, dim) debug trace, or NULL */
    struct {                             /* prefill of > VZ_CUDA_MAX_BATCH tokens (prefill_chunk) */
        int32_t mode;                    /* -1: matvec path (VZ_CUDA_PREFILL=0, no cuBLAS), else VZ_GEMM_* */
        int32_t cap;                     /* tokens per chunk; 0 until the first prefill allocates */
        vz_gemm *g;
        float *x, *big, *logits;         /* (cap, dim), (cap, max(qkv, 2 hidden)), (cap, vocab) or NULL */
        void *h16;                       /* (cap, max(dim, q_dim, hidden)) bf16: GEMM inputs */
        int32_t *tok;                    /* (cap) */
        int32_t prof, nev;               /* VZ_CUDA_PROFILE=1: per-op times of each prefill chunk to stderr */
        cudaEvent_t ev[256];
        const char *tag[256];
    } pf;
    struct {                             /* VZ_CUDA_PROFILE=1: events between ops */
        int on, n;
        cudaEvent_t ev[PROF_MAX];
        const char *tag[PROF_MAX];
    } prof;
};

#define CU_TRY(call, what)                                                                                   \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) return VZ_FAIL(VZ_ERR_CUDA, "cuda session: %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

/* Bytes of one layer's keys (or values) in one KV slot: n_ctx rows of n_kv * head_dim. */
static inline uint64_t vz_cs_kv_layer_bytes(const vz_cuda_session *s) {
    return (uint64_t)s->n_ctx * (uint64_t)s->c.n_kv_heads * (uint64_t)s->c.head_dim * (s->kv_f16 ? 2u : 4u);
}

/* session_cuda.cu */
void vz_cs_mark(vz_cuda_session *s, const char *tag); /* profiling event after an op */
double vz_cs_now(void);                               /* monotonic seconds */
/* cudaMalloc (zeroed) of n elements of esize bytes into *p, counted in *acc. */
vz_status vz_cs_dalloc(void **p, uint64_t n, uint64_t esize, uint64_t *acc, const char *what);
/* Trace slot (l, block) <- row B-1 of the device rows x (eager runs only). */
vz_status vz_cs_trace_row(vz_cuda_session *s, int32_t l, int block, const float *x, int32_t B);
/* One decode step of B <= 8 tokens: of one sequence (multi 0), or [batch]
 * one token of each of B sequences (multi 1, lane b: slot[b] at pos[b]). */
vz_status vz_cs_forward(vz_cuda_session *s, int32_t B, int32_t multi);
vz_status vz_cs_get_graph(vz_cuda_session *s, int32_t B, cudaGraphExec_t *out);
vz_status vz_cs_finish(vz_cuda_session *s); /* stream sync, launch errors, VRAM low-water mark */

/* session_prefill.cu: eval of n > VZ_CUDA_MAX_BATCH tokens; *done = 0 when
 * the matvec path must run instead (no cuBLAS, or VZ_CUDA_PREFILL=0). */
vz_status vz_cs_prefill_eval(vz_cuda_session *s, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                             int32_t all_logits, int *done);
void vz_cs_prefill_free(vz_cuda_session *s);

/* session_profile.cu: VZ_CUDA_PROFILE=1 timings of the decode step at a free position. */
void vz_cs_profile(vz_cuda_session *s, int32_t pos);

#endif
