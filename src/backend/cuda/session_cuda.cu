/*
 * session_cuda.cu - a session whose whole forward pass runs on the GPU
 * (cuda.h): weights uploaded in their encoding, the KV cache (f16 or f32)
 * and all activations on the device. One step over B <= 8 tokens is
 * captured once per B as a CUDA graph that reads its position from device
 * memory, so the same graph replays at every position; sampling runs inside
 * the graph, so generation needs no host round trip per token. CPU
 * reference: vz_forward in src/model/forward.c (same layer order).
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
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
} dev_layer;

#define PROF_MAX 1024
/* Decode steps per launch of graph[0]: fewer launches per token. */
#define DECODE_STEPS 8

struct vz_cuda_session {
    vz_config c;
    int32_t n_ctx, kv_f16;
    int32_t decompress; /* [plan] weights decoded at load, held raw */
    int32_t n_res;      /* [st] layers 0..n_res-1 resident; the rest streamed or cached (sm) */
    vz_stream *sm;      /* [st] stream.cu; NULL: every layer resident */
    uint64_t h2d;       /* [st] bytes streamed by graph launches */
    cudaStream_t st;
    dev_layer *L;
    vz_cuda_tensor emb, out; /* out.data == NULL when tied: the head reads emb */
    float *norms;   /* (2 * n_layers + 1, dim) */
    void *kc, *vc;  /* (n_layers, n_ctx, kv_dim) each */
    float *x, *xb, *q, *k, *v, *att, *hb, *logits, *part;
    int32_t *att_cnt; /* attention merge counters (forward.cuh) */
    int32_t *tok, *pos, *step, *out_ids; /* device: (8), (1), (1), (n_ctx) */
    cudaGraphExec_t graph[VZ_CUDA_MAX_BATCH + 1]; /* [B]: one step of B tokens; [0]: DECODE_STEPS steps of 1 */
    vz_sampler_opts gopts;               /* sampler baked into graph[1] and graph[0] */
    uint64_t w_bytes, kv_bytes, scratch_bytes, free0, min_free, total;
    int32_t att_variant;                 /* forward.cuh variants; 0 default */
    int32_t att_chunk;                   /* keys per attention block (forward.cuh) */
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

/* Records an event after the op named tag (profiling runs only, never in a graph). */
static void mark(vz_cuda_session *s, const char *tag) {
    if (!s->prof.on || s->prof.n >= PROF_MAX) return;
    cudaEventRecord(s->prof.ev[s->prof.n], s->st);
    s->prof.tag[s->prof.n++] = tag;
}

#define CU_TRY(call, what)                                                                                   \
    do {                                                                                                     \
        cudaError_t e_ = (call);                                                                             \
        if (e_ != cudaSuccess) return VZ_FAIL(VZ_ERR_CUDA, "cuda session: %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

static double host_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void note_mem(vz_cuda_session *s) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr < s->min_free) s->min_free = fr;
}

/* cudaMalloc of n elements of esize bytes into *p, counted in *acc. */
static vz_status dalloc(void **p, uint64_t n, uint64_t esize, uint64_t *acc, const char *what) {
    uint64_t bytes;
    VZ_FAIL_IF(vz_mul_ovf(n, esize, &bytes), VZ_ERR_NOMEM, "cuda session: %s: size overflows", what);
    CU_TRY(cudaMalloc(p, bytes ? bytes : 1), what);
    CU_TRY(cudaMemset(*p, 0, bytes ? bytes : 1), what);
    *acc += bytes;
    return VZ_OK;
}

/* [plan] t decoded on the host with its codec's decode_ref (lossless: the
 * source bits; lossy: f32) and uploaded as a raw tensor of that dtype. */
static vz_status upload_decoded(vz_cuda_session *s, vz_cuda_tensor *d, const vz_tensor *t) {
    VZ_TRY(vz_tensor_check(t));
    const vz_codec *cd = vz_codec_by_id(t->codec);
    VZ_FAIL_IF(!cd, VZ_ERR_CODEC, "tensor %s: unknown codec %u", t->name, (unsigned)t->codec);
    vz_tensor r = *t;
    r.codec = VZ_CODEC_raw, r.params = NULL, r.params_size = 0, r.has_checksum = 0, r.checksum = 0;
    if (!cd->lossless) r.dtype = VZ_DTYPE_F32;
    uint64_t n;
    VZ_FAIL_IF(vz_mul_ovf((uint64_t)t->rows * (uint64_t)t->cols, (uint64_t)vz_dtype_size(r.dtype), &n) ||
                   n > SIZE_MAX,
               VZ_ERR_NOMEM, "tensor %s: decoded size overflows", t->name);
    void *buf = malloc(n ? (size_t)n : 1);
    VZ_FAIL_IF(!buf, VZ_ERR_NOMEM, "tensor %s: cannot allocate %llu bytes to decode it", t->name,
               (unsigned long long)n);
    vz_status st = cd->decode_ref(t, 0, t->rows, buf);
    r.data = (const uint8_t *)buf, r.size = n;
    if (st == VZ_OK) st = vz_cuda_tensor_upload(d, &r, s->st);
    free(buf);
    return st;
}

/* One tensor in its encoding (never expanded; decoded with decompress),
 * counted in w_bytes. */
static vz_status upload(vz_cuda_session *s, vz_cuda_tensor *d, const vz_tensor *t) {
    if (s->decompress && t->codec != VZ_CODEC_raw) VZ_TRY(upload_decoded(s, d, t));
    else VZ_TRY(vz_cuda_tensor_upload(d, t, s->st));
    s->w_bytes += d->size + (d->lut ? ((uint64_t)1 << d->k) : 0);
    return VZ_OK;
}

static vz_status upload_weights(vz_cuda_session *s, const vz_model *m) {
    const int32_t nl = s->c.n_layers, dim = s->c.dim;
    s->L = (dev_layer *)calloc((size_t)nl, sizeof *s->L);
    VZ_FAIL_IF(!s->L, VZ_ERR_NOMEM, "cuda session: layer table");
    VZ_TRY(upload(s, &s->emb, m->tok_emb));
    if (m->output != m->tok_emb) VZ_TRY(upload(s, &s->out, m->output));
    float *h = (float *)malloc(sizeof(float) * (size_t)dim * (size_t)(2 * nl + 1));
    VZ_FAIL_IF(!h, VZ_ERR_NOMEM, "cuda session: norms");
    for (int32_t l = 0; l < nl; l++) {
        memcpy(h + (size_t)(2 * l) * dim, m->layers[l].attn_norm, sizeof(float) * (size_t)dim);
        memcpy(h + (size_t)(2 * l + 1) * dim, m->layers[l].ffn_norm, sizeof(float) * (size_t)dim);
    }
    memcpy(h + (size_t)(2 * nl) * dim, m->final_norm, sizeof(float) * (size_t)dim);
    vz_status st = dalloc((void **)&s->norms, (uint64_t)dim * (uint64_t)(2 * nl + 1), 4, &s->w_bytes, "norms");
    if (st == VZ_OK && cudaMemcpy(s->norms, h, sizeof(float) * (size_t)dim * (2 * nl + 1), cudaMemcpyHostToDevice))
        st = VZ_FAIL(VZ_ERR_CUDA, "cuda session: norms upload");
    free(h);
    VZ_TRY(st);
    for (int32_t l = 0; l < nl; l++) {
        const vz_layer *ml = &m->layers[l];
        dev_layer *d = &s->L[l];
        const vz_tensor *src[7] = {ml->wq, ml->wk, ml->wv, ml->wo, ml->w1, ml->w2, ml->w3};
        vz_cuda_tensor *dst[7] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w1, &d->w2, &d->w3};
        for (int i = 0; i < 7 && l < s->n_res; i++) VZ_TRY(upload(s, dst[i], src[i]));
        d->attn_norm = s->norms + (size_t)(2 * l) * dim;
        d->ffn_norm = s->norms + (size_t)(2 * l + 1) * dim;
    }
    return VZ_OK;
}

static vz_status alloc_state(vz_cuda_session *s) {
    const vz_config *c = &s->c;
    const uint64_t B = VZ_CUDA_MAX_BATCH, dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd, hid = (uint64_t)c->hidden_dim;
    uint64_t kvn;
    VZ_FAIL_IF(vz_mul_ovf((uint64_t)c->n_layers * (uint64_t)s->n_ctx, kvd, &kvn), VZ_ERR_NOMEM,
               "cuda session: KV cache size overflows");
    VZ_TRY(dalloc(&s->kc, kvn, s->kv_f16 ? 2 : 4, &s->kv_bytes, "KV cache (keys)"));
    VZ_TRY(dalloc(&s->vc, kvn, s->kv_f16 ? 2 : 4, &s->kv_bytes, "KV cache (values)"));
    uint64_t *a = &s->scratch_bytes;
    VZ_TRY(dalloc((void **)&s->x, B * dim, 4, a, "x"));
    VZ_TRY(dalloc((void **)&s->xb, B * dim, 4, a, "xb"));
    VZ_TRY(dalloc((void **)&s->q, B * qd, 4, a, "q"));
    VZ_TRY(dalloc((void **)&s->k, B * kvd, 4, a, "k"));
    VZ_TRY(dalloc((void **)&s->v, B * kvd, 4, a, "v"));
    VZ_TRY(dalloc((void **)&s->att, B * qd, 4, a, "att"));
    VZ_TRY(dalloc((void **)&s->hb, B * hid, 4, a, "hb"));
    VZ_TRY(dalloc((void **)&s->logits, B * (uint64_t)c->vocab_size, 4, a, "logits"));
    VZ_TRY(dalloc((void **)&s->part, vz_att_part_floats(VZ_CUDA_MAX_BATCH, c->n_heads, c->head_dim, s->n_ctx), 4, a,
                  "attention partials"));
    VZ_TRY(dalloc((void **)&s->att_cnt, vz_att_counters(VZ_CUDA_MAX_BATCH, c->n_heads), 4, a, "attention counters"));
    VZ_TRY(dalloc((void **)&s->tok, B, 4, a, "tokens"));
    VZ_TRY(dalloc((void **)&s->pos, 1, 4, a, "pos"));
    VZ_TRY(dalloc((void **)&s->step, 1, 4, a, "step"));
    VZ_TRY(dalloc((void **)&s->out_ids, (uint64_t)s->n_ctx, 4, a, "sampled ids"));
    return VZ_OK;
}

/* Trace slot (l, block) <- the residual stream of row B-1 (eager runs only:
 * a pageable copy, never captured into a graph). */
static vz_status trace_row(vz_cuda_session *s, int32_t l, int block, const float *x, int32_t B) {
    if (!s->trace) return VZ_OK;
    const size_t dim = (size_t)s->c.dim;
    CU_TRY(cudaMemcpyAsync(s->trace + ((size_t)l * 2 + block) * dim, x + (size_t)(B - 1) * dim,
                           sizeof(float) * dim, cudaMemcpyDeviceToHost, s->st), "trace download");
    return VZ_OK;
}

/* One step over B tokens at *pos: the model, top to bottom, then sampling
 * from the last row. Reads like vz_forward (forward.c); residual adds are
 * the matvecs' ADD epilogue, SwiGLU the gate+up matvec's epilogue. */

static vz_status forward(vz_cuda_session *s, int32_t B) {
    const vz_config *c = &s->c;
    const int32_t dim = c->dim, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const size_t kv_layer = (size_t)s->n_ctx * (size_t)nkv * hd * (s->kv_f16 ? 2 : 4);
    cudaStream_t st = s->st;
    if (s->sm) VZ_TRY(vz_stream_begin(s->sm, st)); /* [st] first streamed layer's copy starts */
    VZ_TRY(vz_cuda_rows(s->x, s->tok, B, &s->emb, st));
    mark(s, "embed");
    for (int32_t l = 0; l < c->n_layers; l++) {
        dev_layer *L = &s->L[l];
        vz_cuda_tensor *const lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        if (s->sm) VZ_TRY(vz_stream_acquire(s->sm, l, lw, st)); /* [st] streamed: its slot, copied */
        char *kc = (char *)s->kc + kv_layer * l, *vc = (char *)s->vc + kv_layer * l;
        /* attention: x += Wo attention(rope(Wq xb), rope(Wk xb), Wv xb), xb = norm(x) */
        vz_k_rmsnorm(s->x, s->xb, L->attn_norm, B, dim, c->rms_eps, st);
        mark(s, "rmsnorm");
        const vz_cuda_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_out[3] = {s->q, s->k, s->v};
        VZ_TRY(vz_cuda_matvec_multi(3, qkv, qkv_out, s->xb, B, VZ_CUDA_EPI_NONE, st));
        mark(s, "qkv matvec");
        vz_k_attention(s->att, s->q, s->k, s->v, kc, vc, s->part, s->att_cnt, s->pos, B, nh, nkv, hd, s->n_ctx,
                       s->kv_f16, c->rope_theta, c->rope_interleaved, s->att_chunk, st);
        mark(s, "rope + kv store + attention");
        const vz_cuda_tensor *wo = &L->wo;
        VZ_TRY(vz_cuda_matvec_multi(1, &wo, &s->x, s->att, B, VZ_CUDA_EPI_ADD, st));
        mark(s, "wo matvec + add");
        VZ_TRY(trace_row(s, l, 0, s->x, B));
        /* MLP: x += W2 (silu(W1 xb) * W3 xb), xb = norm(x) */
        vz_k_rmsnorm(s->x, s->xb, L->ffn_norm, B, dim, c->rms_eps, st);
        mark(s, "rmsnorm");
        const vz_cuda_tensor *gu[2] = {&L->w1, &L->w3};
        float *const gu_out[2] = {s->hb, s->hb};
        VZ_TRY(vz_cuda_matvec_multi(2, gu, gu_out, s->xb, B, VZ_CUDA_EPI_SILU_MUL, st));
        mark(s, "gate/up matvec + silu");
        const vz_cuda_tensor *w2 = &L->w2;
        VZ_TRY(vz_cuda_matvec_multi(1, &w2, &s->x, s->hb, B, VZ_CUDA_EPI_ADD, st));
        mark(s, "down matvec + add");
        VZ_TRY(trace_row(s, l, 1, s->x, B));
        if (s->sm) VZ_TRY(vz_stream_release(s->sm, l, st));
    }
    vz_k_rmsnorm(s->x, s->xb, s->norms + (size_t)(2 * c->n_layers) * dim, B, dim, c->rms_eps, st);
    mark(s, "rmsnorm");
    VZ_TRY(vz_cuda_matvec(s->logits, s->xb, B, s->out.data ? &s->out : &s->emb, st));
    mark(s, "head matvec");
    const vz_sampler_opts *o = &s->gopts;
    vz_k_sample(s->logits + (size_t)(B - 1) * c->vocab_size, c->vocab_size, o->temp, o->top_k, o->top_p, o->seed,
                s->tok, s->out_ids, s->step, s->pos, B, s->n_ctx, st);
    mark(s, "sample");
    return VZ_OK;
}

/* graph[B], captured on first use (and again for B = 0, 1 when the sampler
 * changes); graph[0] chains DECODE_STEPS one-token steps, each feeding the
 * next through the sampled token in device memory. */
static vz_status get_graph(vz_cuda_session *s, int32_t B, cudaGraphExec_t *out) {
    if (!s->graph[B]) {
        cudaGraph_t g = NULL;
        CU_TRY(cudaStreamBeginCapture(s->st, cudaStreamCaptureModeThreadLocal), "begin graph capture");
        vz_status fst = VZ_OK;
        for (int k = 0; k < (B ? 1 : DECODE_STEPS) && fst == VZ_OK; k++) fst = forward(s, B ? B : 1);
        cudaError_t ce = cudaStreamEndCapture(s->st, &g);
        if (fst != VZ_OK) {
            if (g) cudaGraphDestroy(g);
            return fst;
        }
        CU_TRY(ce, "end graph capture");
        cudaError_t e = cudaGraphInstantiate(&s->graph[B], g, 0);
        cudaGraphDestroy(g);
        CU_TRY(e, "graph instantiate");
        note_mem(s);
    }
    *out = s->graph[B];
    return VZ_OK;
}

/* [st] Runs graph[B] (B = 0: DECODE_STEPS one-token steps), or the same
 * steps eagerly when the session's layer cache cannot be captured; counts
 * the bytes streamed. */
static vz_status run_steps(vz_cuda_session *s, int32_t B) {
    const int32_t steps = B ? 1 : DECODE_STEPS;
    /* eager: a traced run (its copies go to pageable memory) or a stream mode no graph can hold */
    if (s->trace || (s->sm && !vz_stream_graphable(s->sm))) {
        for (int32_t k = 0; k < steps; k++) VZ_TRY(forward(s, B ? B : 1));
        return VZ_OK;
    }
    cudaGraphExec_t g;
    VZ_TRY(get_graph(s, B, &g));
    CU_TRY(cudaGraphLaunch(g, s->st), "graph launch");
    if (s->sm) s->h2d += (uint64_t)steps * vz_stream_step_bytes(s->sm);
    return VZ_OK;
}

/* ---- prefill: T > VZ_CUDA_MAX_BATCH tokens per step (gemm.h, prefill.h) ----
 * Matmuls as GEMMs on bf16 activations (decode + cuBLAS, or the mma kernel),
 * attention over all T queries at once; chunks of up to PF_CAP tokens. The
 * GEMM inputs are rounded to bf16, so logits differ from the matvec path's
 * (tests/test_cuda_prefill.c derives the tolerance); raw and lossless still
 * give identical bits (same bf16 weights, same GEMM). */
#define PF_CAP VZ_PLAN_PREFILL_CAP       /* model/plan.h: the planner counts these buffers */
#define PF_LR VZ_PLAN_PREFILL_LOGIT_ROWS  /* rows per all-logits head GEMM */

static vz_status finish(vz_cuda_session *s);

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Allocates the prefill buffers (counted in scratch_bytes) on first use;
 * mode -1 afterwards when that is impossible (no cuBLAS: the matvec path). */
static vz_status pf_setup(vz_cuda_session *s, int32_t all_logits) {
    const vz_config *c = &s->c;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t hid = c->hidden_dim, cap = s->n_ctx < PF_CAP ? s->n_ctx : PF_CAP;
    uint64_t *a = &s->scratch_bytes;
    if (!s->pf.cap) {
        int64_t sc = max64(max64((qd + 2 * kvd) * dim, qd * dim), hid * dim); /* one matrix (or QKV) at a time */
        if (sc > VZ_PLAN_GEMM_SCRATCH) sc = VZ_PLAN_GEMM_SCRATCH;                /* or row chunks of it */
        if (vz_gemm_create(&s->pf.g, sc, s->st) != VZ_OK) {
            s->pf.mode = -1;
            return VZ_OK;
        }
        s->scratch_bytes += vz_gemm_bytes(s->pf.g);
        VZ_TRY(dalloc((void **)&s->pf.x, (uint64_t)(cap * dim), 4, a, "prefill x"));
        VZ_TRY(dalloc((void **)&s->pf.big, (uint64_t)(cap * max64(qd + 2 * kvd, 2 * hid)), 4, a, "prefill qkv/gate-up"));
        VZ_TRY(dalloc(&s->pf.h16, (uint64_t)(cap * max64(max64(dim, qd), hid)), 2, a, "prefill bf16 inputs"));
        VZ_TRY(dalloc((void **)&s->pf.tok, (uint64_t)cap, 4, a, "prefill tokens"));
        s->pf.cap = (int32_t)cap;
        const char *pe = getenv("VZ_CUDA_PROFILE");
        if (pe && *pe == '1') {
            s->pf.prof = 1;
            for (int i = 0; i < 256 && s->pf.prof; i++)
                if (cudaEventCreate(&s->pf.ev[i]) != cudaSuccess) s->pf.prof = 0;
        }
    }
    if (all_logits && !s->pf.logits)
        VZ_TRY(dalloc((void **)&s->pf.logits, (uint64_t)(cap < PF_LR ? cap : PF_LR) * (uint64_t)c->vocab_size, 4, a,
                      "prefill logits"));
    CU_TRY(cudaDeviceSynchronize(), "prefill buffers"); /* dalloc's memsets run on the legacy stream */
    return VZ_OK;
}

/* Prefill profile: an event after each op (prof.ev reused), summed by tag after the chunk. */
static void pf_mark(vz_cuda_session *s, const char *tag) {
    if (!s->pf.prof || s->pf.nev >= 256) return;
    cudaEventRecord(s->pf.ev[s->pf.nev], s->st);
    s->pf.tag[s->pf.nev++] = tag;
}

static void pf_report(vz_cuda_session *s, int32_t T) {
    if (!s->pf.prof || s->pf.nev < 2) return;
    const char *names[12];
    double ms[12] = {0}, tot = 0.0;
    int nt = 0;
    for (int i = 1; i < s->pf.nev; i++) {
        float e = 0.0f;
        cudaEventElapsedTime(&e, s->pf.ev[i - 1], s->pf.ev[i]);
        int k = 0;
        while (k < nt && strcmp(names[k], s->pf.tag[i]) != 0) k++;
        if (k == nt && nt < 12) names[nt++] = s->pf.tag[i];
        if (k < 12) ms[k] += e, tot += e;
    }
    fprintf(stderr, "prefill profile (%d tokens, eager, event after each op): %.3f ms, %.0f tok/s\n", (int)T, tot,
            1e3 * T / (tot > 0 ? tot : 1));
    for (int k = 0; k < nt; k++) fprintf(stderr, "  %-16s %8.3f ms  %5.1f%%\n", names[k], ms[k], 100.0 * ms[k] / tot);
    s->pf.nev = 0;
}

/* T (<= cap) tokens at pos0, the model top to bottom as forward(); logits:
 * NULL, all T rows (all_logits) or the last row. */
static vz_status pf_chunk(vz_cuda_session *s, const int32_t *tokens, int32_t T, int32_t pos0, float *logits,
                          int32_t all_logits) {
    const vz_config *c = &s->c;
    const int32_t dim = c->dim, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, hid = c->hidden_dim;
    const int64_t qd = (int64_t)nh * hd, ldqkv = qd + 2 * (int64_t)nkv * hd;
    const size_t kv_layer = (size_t)s->n_ctx * (size_t)nkv * hd * (s->kv_f16 ? 2 : 4);
    const int32_t mode = s->pf.mode;
    cudaStream_t st = s->st;
    vz_gemm *g = s->pf.g;
    CU_TRY(cudaMemcpyAsync(s->pf.tok, tokens, sizeof(int32_t) * (size_t)T, cudaMemcpyHostToDevice, st), "tokens");
    s->pf.nev = 0;
    pf_mark(s, "start");
    if (s->sm) VZ_TRY(vz_stream_begin(s->sm, st)); /* [st] streamed layers: once per chunk */
    VZ_TRY(vz_cuda_rows(s->pf.x, s->pf.tok, T, &s->emb, st));
    pf_mark(s, "embed");
    for (int32_t l = 0; l < c->n_layers; l++) {
        dev_layer *L = &s->L[l];
        vz_cuda_tensor *const lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        if (s->sm) VZ_TRY(vz_stream_acquire(s->sm, l, lw, st));
        char *kc = (char *)s->kc + kv_layer * l, *vc = (char *)s->vc + kv_layer * l;
        vz_pf_rmsnorm_bf16(s->pf.x, s->pf.h16, L->attn_norm, T, dim, c->rms_eps, st);
        pf_mark(s, "rmsnorm");
        const vz_cuda_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        VZ_TRY(vz_gemm_run(g, 3, qkv, s->pf.big, ldqkv, s->pf.h16, dim, T, 0, mode));
        pf_mark(s, "qkv gemm");
        vz_pf_attention(s->pf.h16, s->pf.big, ldqkv, kc, vc, pos0, T, nh, nkv, hd, s->kv_f16, c->rope_theta,
                        c->rope_interleaved, st);
        pf_mark(s, "attention");
        const vz_cuda_tensor *wo = &L->wo, *gu[2] = {&L->w1, &L->w3}, *w2 = &L->w2;
        VZ_TRY(vz_gemm_run(g, 1, &wo, s->pf.x, dim, s->pf.h16, qd, T, 1, mode));
        pf_mark(s, "wo gemm");
        VZ_TRY(trace_row(s, l, 0, s->pf.x, T));
        vz_pf_rmsnorm_bf16(s->pf.x, s->pf.h16, L->ffn_norm, T, dim, c->rms_eps, st);
        pf_mark(s, "rmsnorm");
        VZ_TRY(vz_gemm_run(g, 2, gu, s->pf.big, 2 * (int64_t)hid, s->pf.h16, dim, T, 0, mode));
        pf_mark(s, "gate/up gemm");
        vz_pf_silu_mul_bf16(s->pf.big, s->pf.h16, T, hid, st);
        pf_mark(s, "silu*mul");
        VZ_TRY(vz_gemm_run(g, 1, &w2, s->pf.x, dim, s->pf.h16, hid, T, 1, mode));
        pf_mark(s, "down gemm");
        VZ_TRY(trace_row(s, l, 1, s->pf.x, T));
        if (s->sm) VZ_TRY(vz_stream_release(s->sm, l, st));
    }
    const float *fnorm = s->norms + (size_t)(2 * c->n_layers) * dim;
    const vz_cuda_tensor *head = s->out.data ? &s->out : &s->emb;
    const size_t vocab = (size_t)c->vocab_size;
    if (logits && all_logits) {
        vz_pf_rmsnorm_bf16(s->pf.x, s->pf.h16, fnorm, T, dim, c->rms_eps, st);
        for (int32_t r0 = 0; r0 < T; r0 += PF_LR) { /* the head in blocks of rows: a bounded logits buffer */
            const int32_t nr = T - r0 < PF_LR ? T - r0 : PF_LR;
            const char *xr = (const char *)s->pf.h16 + (size_t)r0 * dim * 2; /* bf16 rows */
            VZ_TRY(vz_gemm_run(g, 1, &head, s->pf.logits, (int64_t)vocab, xr, dim, nr, 0, mode));
            CU_TRY(cudaMemcpyAsync(logits + (size_t)r0 * vocab, s->pf.logits, sizeof(float) * vocab * (size_t)nr,
                                   cudaMemcpyDeviceToHost, st), "logits download");
            CU_TRY(cudaStreamSynchronize(st), "logits download"); /* pageable: the next block reuses the buffer */
        }
    } else if (logits) { /* the last row only: the decode step's f32 norm + matvec */
        vz_k_rmsnorm(s->pf.x + (size_t)(T - 1) * dim, s->xb, fnorm, 1, dim, c->rms_eps, st);
        VZ_TRY(vz_cuda_matvec(s->logits, s->xb, 1, head, st));
        CU_TRY(cudaMemcpyAsync(logits, s->logits, sizeof(float) * vocab, cudaMemcpyDeviceToHost, st),
               "logits download");
    }
    pf_mark(s, "head");
    /* tokens and logits are pageable: each chunk waits before the next reuses pf.tok */
    CU_TRY(cudaStreamSynchronize(st), "prefill");
    pf_report(s, T);
    return VZ_OK;
}

/* eval of n > VZ_CUDA_MAX_BATCH tokens; *done = 0 when the matvec path must run. */
static vz_status pf_eval(vz_cuda_session *s, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                         int32_t all_logits, int *done) {
    *done = 0;
    if (s->pf.mode < 0) return VZ_OK;
    VZ_TRY(pf_setup(s, logits && all_logits));
    if (s->pf.mode < 0) return VZ_OK;
    const size_t vocab = (size_t)s->c.vocab_size;
    for (int32_t t0 = 0; t0 < n; t0 += s->pf.cap) {
        const int32_t T = n - t0 < s->pf.cap ? n - t0 : s->pf.cap;
        float *lo = !logits ? NULL : all_logits ? logits + (size_t)t0 * vocab : t0 + T == n ? logits : NULL;
        VZ_TRY(pf_chunk(s, tokens + t0, T, pos + t0, lo, all_logits));
    }
    *done = 1;
    return finish(s);
}

extern "C" vz_status vz_cuda_mem_free(uint64_t *free_bytes, uint64_t *total_bytes) {
    VZ_FAIL_IF(!free_bytes || !total_bytes, VZ_ERR_ARG, "vz_cuda_mem_free: NULL argument");
    *free_bytes = *total_bytes = 0;
    VZ_FAIL_IF(vz_cuda_device_count() < 1, VZ_ERR_CUDA, "device cuda: no CUDA device found");
    size_t fr = 0, tot = 0;
    CU_TRY(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    *free_bytes = fr, *total_bytes = tot;
    return VZ_OK;
}

extern "C" vz_status vz_cuda_session_create(vz_cuda_session **out, const vz_model *m, int32_t n_ctx,
                                            int32_t kv_f16) {
    return vz_cuda_session_create_ex(out, m, n_ctx, kv_f16, 0);
}

extern "C" vz_status vz_cuda_session_create_ex(vz_cuda_session **out, const vz_model *m, int32_t n_ctx,
                                               int32_t kv_f16, int32_t decompress) {
    return vz_cuda_session_create_plan(out, m, n_ctx, kv_f16, decompress ? VZ_RESIDENCY_DECOMPRESS : 0,
                                       m ? m->cfg.n_layers : 0);
}

/* [st] Streamed layers or the decoded-layer cache (stream.cu), after the resident ones. */
static vz_status setup_stream(vz_cuda_session *s, const vz_model *m, int32_t residency, int32_t n_resident) {
    if (residency != VZ_RESIDENCY_CACHE && s->n_res >= s->c.n_layers) return VZ_OK;
    uint64_t dev = 0;
    VZ_TRY(vz_stream_create(&s->sm, m, residency == VZ_RESIDENCY_CACHE ? 0 : s->n_res,
                            residency == VZ_RESIDENCY_DECOMPRESS, residency == VZ_RESIDENCY_CACHE ? n_resident : 0,
                            &dev));
    s->w_bytes += dev;
    return VZ_OK;
}

extern "C" vz_status vz_cuda_session_create_plan(vz_cuda_session **out, const vz_model *m, int32_t n_ctx,
                                                 int32_t kv_f16, int32_t residency, int32_t n_resident) {
    VZ_FAIL_IF(!out || !m || n_ctx < 1, VZ_ERR_ARG, "vz_cuda_session_create: bad arguments");
    *out = NULL;
    VZ_FAIL_IF(vz_cuda_device_count() < 1, VZ_ERR_CUDA, "device cuda: no CUDA device found");
    VZ_FAIL_IF(m->cfg.head_dim > 128 || m->cfg.head_dim % 8 != 0, VZ_ERR_UNSUPPORTED,
               "device cuda: head_dim %d is not a multiple of 8 in [8, 128]", (int)m->cfg.head_dim);
    VZ_FAIL_IF(n_resident < (residency == VZ_RESIDENCY_CACHE) || n_resident > m->cfg.n_layers, VZ_ERR_ARG,
               "vz_cuda_session_create: %d resident layers of %d", (int)n_resident, (int)m->cfg.n_layers);
    vz_cuda_session *s = (vz_cuda_session *)calloc(1, sizeof *s);
    VZ_FAIL_IF(!s, VZ_ERR_NOMEM, "cuda session: out of memory");
    s->c = m->cfg;
    s->n_ctx = n_ctx;
    s->kv_f16 = kv_f16 ? 1 : 0;
    s->decompress = residency == VZ_RESIDENCY_DECOMPRESS;
    s->n_res = residency == VZ_RESIDENCY_CACHE ? 0 : n_resident;
    s->gopts.temp = 0.0f;
    s->gopts.top_p = 1.0f;
    size_t fr = 0, tot = 0;
    vz_status st = VZ_OK;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) st = VZ_FAIL(VZ_ERR_CUDA, "device cuda: cudaMemGetInfo failed");
    s->free0 = s->min_free = fr;
    s->total = tot;
    if (st == VZ_OK && cudaStreamCreateWithFlags(&s->st, cudaStreamNonBlocking) != cudaSuccess)
        st = VZ_FAIL(VZ_ERR_CUDA, "cuda session: stream create failed");
    if (st == VZ_OK) st = upload_weights(s, m);
    if (st == VZ_OK) st = alloc_state(s);
    if (st == VZ_OK) st = setup_stream(s, m, residency, n_resident);
    /* cudaMemset on the legacy stream is asynchronous and s->st does not wait for it */
    if (st == VZ_OK && cudaDeviceSynchronize() != cudaSuccess)
        st = VZ_FAIL(VZ_ERR_CUDA, "cuda session: %s", cudaGetErrorString(cudaGetLastError()));
    if (st != VZ_OK) {
        vz_cuda_session_free(s);
        return st;
    }
    note_mem(s);
    const char *mv = getenv("VZ_CUDA_MV"); /* bench: matvec variant flags (cuda.h), process-wide */
    if (mv && *mv >= '0' && *mv <= '9') vz_cuda_matvec_variant(atoi(mv));
    const char *pe = getenv("VZ_CUDA_PREFILL"); /* 0: matvec path (the old one), A / B: force a GEMM path */
    s->pf.mode = !pe || !*pe ? VZ_GEMM_AUTO : *pe == '0' ? -1 : *pe == 'A' ? VZ_GEMM_A : *pe == 'B' ? VZ_GEMM_B
                                                                                                  : VZ_GEMM_AUTO;
    const char *ch = getenv("VZ_CUDA_ATT_CHUNK"); /* bench: keys per attention block */
    s->att_chunk = ch && atoi(ch) >= VZ_ATT_CHUNK_MIN && atoi(ch) <= VZ_ATT_CHUNK ? atoi(ch) : VZ_ATT_CHUNK_DEFAULT;
    *out = s;
    return VZ_OK;
}

extern "C" void vz_cuda_session_free(vz_cuda_session *s) {
    if (!s) return;
    if (s->st) cudaStreamSynchronize(s->st);
    for (int b = 0; b <= VZ_CUDA_MAX_BATCH; b++)
        if (s->graph[b]) cudaGraphExecDestroy(s->graph[b]);
    vz_stream_free(s->sm);
    if (s->L) {
        for (int32_t l = 0; l < s->n_res; l++) { /* streamed layers point into stream slots */
            dev_layer *d = &s->L[l];
            vz_cuda_tensor *w[7] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w1, &d->w2, &d->w3};
            for (int i = 0; i < 7; i++) vz_cuda_tensor_free(w[i]);
        }
        free(s->L);
    }
    vz_gemm_free(s->pf.g);
    for (int i = 0; i < 256 && s->pf.prof; i++) cudaEventDestroy(s->pf.ev[i]);
    void *pfb[] = {s->pf.x, s->pf.big, s->pf.logits, s->pf.h16, s->pf.tok};
    for (size_t i = 0; i < sizeof pfb / sizeof pfb[0]; i++) cudaFree(pfb[i]);
    vz_cuda_tensor_free(&s->emb);
    vz_cuda_tensor_free(&s->out);
    void *bufs[] = {s->norms, s->kc, s->vc, s->x, s->xb, s->q, s->k, s->v, s->att, s->hb, s->logits, s->part, s->att_cnt, s->tok, s->pos, s->step, s->out_ids};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    if (s->st) cudaStreamDestroy(s->st);
    free(s);
}

static vz_status finish(vz_cuda_session *s) {
    CU_TRY(cudaStreamSynchronize(s->st), "forward pass");
    CU_TRY(cudaGetLastError(), "kernel launch");
    note_mem(s);
    return VZ_OK;
}

extern "C" vz_status vz_cuda_session_eval(vz_cuda_session *s, const int32_t *tokens, int32_t n, int32_t pos,
                                          float *logits, int32_t all_logits) {
    VZ_FAIL_IF(!s || n < 0 || pos < 0 || pos + n > s->n_ctx, VZ_ERR_ARG, "cuda eval: bad arguments");
    const size_t vocab = (size_t)s->c.vocab_size;
    if (n > VZ_CUDA_MAX_BATCH) {
        int done;
        VZ_TRY(pf_eval(s, tokens, n, pos, logits, all_logits, &done));
        if (done) return VZ_OK;
    }
    /* pageable sources: cudaMemcpyAsync has staged them when it returns */
    CU_TRY(cudaMemcpyAsync(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice, s->st), "position upload");
    for (int32_t b0 = 0; b0 < n; b0 += VZ_CUDA_MAX_BATCH) {
        int32_t B = n - b0 < VZ_CUDA_MAX_BATCH ? n - b0 : VZ_CUDA_MAX_BATCH;
        CU_TRY(cudaMemcpyAsync(s->tok, tokens + b0, sizeof(int32_t) * (size_t)B, cudaMemcpyHostToDevice, s->st),
               "token upload");
        VZ_TRY(run_steps(s, B));
        if (logits && all_logits)
            CU_TRY(cudaMemcpyAsync(logits + (size_t)b0 * vocab, s->logits, sizeof(float) * vocab * (size_t)B,
                                   cudaMemcpyDeviceToHost, s->st), "logits download");
        else if (logits && b0 + B == n)
            CU_TRY(cudaMemcpyAsync(logits, s->logits + (size_t)(B - 1) * vocab, sizeof(float) * vocab,
                                   cudaMemcpyDeviceToHost, s->st), "logits download");
    }
    return finish(s);
}

/* Destroys every captured graph (they are re-captured on next use). */
static void drop_graphs(vz_cuda_session *s) {
    cudaStreamSynchronize(s->st);
    for (int b = 0; b <= VZ_CUDA_MAX_BATCH; b++)
        if (s->graph[b]) {
            cudaGraphExecDestroy(s->graph[b]);
            s->graph[b] = NULL;
        }
}

/* us/token of the DECODE_STEPS graph, re-captured, 4 launches back to back
 * after 4 of warm-up (-1 when capture fails). */
static float time_decode_graph(vz_cuda_session *s, int32_t pos) {
    drop_graphs(s);
    cudaGraphExec_t g;
    if (get_graph(s, 0, &g) != VZ_OK) return -1.0f;
    float ms = 0.0f;
    for (int rep = 0; rep < 2; rep++) { /* first pass: warm-up */
        cudaMemcpy(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice);
        cudaEventRecord(s->prof.ev[0], s->st);
        for (int i = 0; i < 4; i++) cudaGraphLaunch(g, s->st);
        cudaEventRecord(s->prof.ev[1], s->st);
        cudaStreamSynchronize(s->st);
    }
    cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
    return 1e3f * ms / (4 * DECODE_STEPS);
}

/* The DECODE_STEPS graph back to back under each matvec variant (cuda.h;
 * all bitwise equal) and each attention chunk size; restores both. */
static void profile_mv_variants(vz_cuda_session *s, int32_t pos) {
    static const int vars[] = {VZ_CUDA_MV_LEGACY | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_LEGACY, VZ_CUDA_MV_NO_PDL, 0,
                               VZ_CUDA_MV_OCC4, VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_V4};
    static const char *names[] = {"legacy", "legacy+pdl", "v2", "v2+pdl", "v2+pdl+occ4", "v4", "v4+pdl"};
    const int old = vz_cuda_matvec_variant(-1);
    for (int v = 0; v < (int)(sizeof vars / sizeof vars[0]); v++) {
        vz_cuda_matvec_variant(vars[v]);
        float us = time_decode_graph(s, pos);
        fprintf(stderr, "profile (graph of %d steps, matvec %s%s): %.1f us/token\n", DECODE_STEPS, names[v],
                vars[v] == old ? ", default" : "", us);
    }
    vz_cuda_matvec_variant(old);
    const int32_t chunk0 = s->att_chunk;
    for (int32_t c = VZ_ATT_CHUNK_MIN; c <= VZ_ATT_CHUNK; c *= 2) {
        s->att_chunk = c;
        fprintf(stderr, "profile (graph of %d steps, attention chunk %d%s): %.1f us/token\n", DECODE_STEPS, (int)c,
                c == chunk0 ? ", default" : "", time_decode_graph(s, pos));
    }
    s->att_chunk = chunk0;
    drop_graphs(s);
}

/* VZ_CUDA_PROFILE=1: one decode step at position pos (a free slot), run
 * eagerly with an event after every op, 20 times per attention variant;
 * prints microseconds per token by op to stderr, then the graph's time. */
static void profile(vz_cuda_session *s, int32_t pos) {
    enum { NT = 16, REPS = 20, WARM = 3 };
    const char *names[NT];
    double us[NT];
    int nt = 0;
    for (int i = 0; i < PROF_MAX; i++)
        if (cudaEventCreate(&s->prof.ev[i]) != cudaSuccess) return;
    for (int v = 0; v < vz_att_n_variants(); v++) {
        s->att_variant = v;
        memset(us, 0, sizeof us);
        for (int rep = 0; rep < REPS; rep++) {
            cudaMemcpy(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice);
            s->prof.on = 1, s->prof.n = 0;
            mark(s, "start");
            forward(s, 1);
            s->prof.on = 0;
            if (cudaStreamSynchronize(s->st) != cudaSuccess || rep < WARM) continue;
            for (int i = 1; i < s->prof.n; i++) {
                float ms = 0.0f;
                cudaEventElapsedTime(&ms, s->prof.ev[i - 1], s->prof.ev[i]);
                int k = 0;
                while (k < nt && strcmp(names[k], s->prof.tag[i]) != 0) k++;
                if (k == nt && nt < NT) names[nt++] = s->prof.tag[i];
                if (k < NT) us[k] += 1e3 * ms / (REPS - WARM);
            }
        }
        double tot = 0.0;
        for (int k = 0; k < nt; k++) tot += us[k];
        fprintf(stderr, "profile (eager, attention %s): %.1f us/token\n", vz_att_variant_name(v), tot);
        for (int k = 0; k < nt; k++)
            fprintf(stderr, "  %-24s %8.1f us  %5.1f%%\n", names[k], us[k], 100.0 * us[k] / (tot > 0 ? tot : 1));
    }
    s->att_variant = 0;
    cudaGraphExec_t g;
    if (get_graph(s, 1, &g) == VZ_OK) {
        float ms = 0.0f;
        cudaMemcpy(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice);
        cudaEventRecord(s->prof.ev[0], s->st);
        for (int i = 0; i < 20; i++) {
            cudaMemcpyAsync(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice, s->st);
            cudaGraphLaunch(g, s->st);
        }
        cudaEventRecord(s->prof.ev[1], s->st);
        cudaStreamSynchronize(s->st);
        cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
        fprintf(stderr, "profile (graph replay, synced each token): %.1f us/token\n", 1e3 * ms / 20);
        for (int b = 1; b >= 0; b--) { /* back to back: one-step graph, then the DECODE_STEPS graph */
            cudaGraphExec_t gb;
            if (get_graph(s, b, &gb) != VZ_OK) break;
            int launches = b ? 16 : 2, toks = b ? 16 : 2 * DECODE_STEPS;
            cudaMemcpy(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice);
            double t0 = host_now();
            cudaEventRecord(s->prof.ev[0], s->st);
            for (int i = 0; i < launches; i++) cudaGraphLaunch(gb, s->st);
            cudaEventRecord(s->prof.ev[1], s->st);
            cudaStreamSynchronize(s->st);
            double th = host_now() - t0;
            cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
            fprintf(stderr, "profile (graph of %d step(s), back to back): %.1f us/token GPU, %.1f us/token host\n",
                    b ? 1 : DECODE_STEPS, 1e3 * ms / toks, 1e6 * th / toks);
        }
    }
    profile_mv_variants(s, pos);
    for (int i = 0; i < PROF_MAX; i++) cudaEventDestroy(s->prof.ev[i]);
}

extern "C" vz_status vz_cuda_session_generate(vz_cuda_session *s, int32_t first, int32_t pos, int32_t n,
                                              const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !so || !out || n < 0 || pos < 0 || pos + n > s->n_ctx, VZ_ERR_ARG,
               "cuda generate: bad arguments");
    if (n == 0) return VZ_OK;
    vz_sampler_opts o;
    memset(&o, 0, sizeof o);
    o.top_p = 1.0f;
    if (so->temp > 0.0f) o = *so;
    /* field by field: memcmp would read the struct's padding and recapture every call */
    if (o.temp != s->gopts.temp || o.top_k != s->gopts.top_k || o.top_p != s->gopts.top_p || o.seed != s->gopts.seed)
        for (int b = 0; b < 2; b++)
            if (s->graph[b]) {
                cudaGraphExecDestroy(s->graph[b]);
                s->graph[b] = NULL;
            }
    s->gopts = o;
    const int32_t zero = 0;
    CU_TRY(cudaMemcpyAsync(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice, s->st), "position upload");
    CU_TRY(cudaMemcpyAsync(s->step, &zero, sizeof zero, cudaMemcpyHostToDevice, s->st), "step upload");
    CU_TRY(cudaMemcpyAsync(s->tok, &first, sizeof first, cudaMemcpyHostToDevice, s->st), "token upload");
    int32_t i = 0;
    for (; i + DECODE_STEPS <= n; i += DECODE_STEPS) VZ_TRY(run_steps(s, 0));
    for (; i < n; i++) VZ_TRY(run_steps(s, 1));
    CU_TRY(cudaMemcpyAsync(out, s->out_ids, sizeof(int32_t) * (size_t)n, cudaMemcpyDeviceToHost, s->st),
           "token download");
    VZ_TRY(finish(s));
    const char *pe = getenv("VZ_CUDA_PROFILE");
    if (pe && *pe == '1' && n >= 64 && pos + n + 4 * DECODE_STEPS + 1 < s->n_ctx && (!s->sm || vz_stream_graphable(s->sm)))
        profile(s, pos + n);
    return VZ_OK;
}

extern "C" void vz_cuda_session_set_trace(vz_cuda_session *s, float *buf) {
    if (s) s->trace = buf;
}

extern "C" vz_status vz_cuda_session_mem(vz_cuda_session *s, vz_session_mem *out) {
    VZ_FAIL_IF(!s || !out, VZ_ERR_ARG, "vz_cuda_session_mem: NULL argument");
    note_mem(s);
    out->weights = s->w_bytes;
    out->kv = s->kv_bytes;
    out->scratch = s->scratch_bytes;
    out->peak = s->free0 > s->min_free ? s->free0 - s->min_free : 0;
    out->device_total = s->total;
    out->h2d = s->h2d + (s->sm ? vz_stream_eager_bytes(s->sm) : 0);
    return VZ_OK;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

extern "C" vz_status vz_cuda_device_probe(int32_t measure_bw, vz_device_info *out) {
    VZ_FAIL_IF(!out, VZ_ERR_ARG, "vz_cuda_device_probe: NULL argument");
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(vz_cuda_device_count() < 1, VZ_ERR_CUDA, "device cuda: no CUDA device found");
    VZ_FAIL_IF(vz_cuda_device_name(0, out->name, (int)sizeof out->name) != 0, VZ_ERR_CUDA, "device name");
    size_t fr = 0, tot = 0;
    CU_TRY(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
    out->total_bytes = tot;
    if (!measure_bw) return VZ_OK;
    VZ_TRY(vz_stream_h2d_probe(&out->h2d_gbs)); /* [st] pinned host-to-device copy */
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    float ms[10];
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemset(a, 0x5a, bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = -2; e == cudaSuccess && i < 10; i++) { /* two warm-up copies */
        e = cudaEventRecord(e0);
        if (e == cudaSuccess) e = cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        if (e == cudaSuccess) e = cudaEventRecord(e1);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess && i >= 0) e = cudaEventElapsedTime(&ms[i], e0, e1);
    }
    cudaFree(a);
    cudaFree(b);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    CU_TRY(e, "bandwidth probe (2 x 1 GiB)");
    qsort(ms, 10, sizeof ms[0], cmp_float);
    float med = 0.5f * (ms[4] + ms[5]);
    out->copy_gbs = med > 0.0f ? 2.0 * (double)bytes / (med * 1e-3) / 1e9 : 0.0;
    return VZ_OK;
}
