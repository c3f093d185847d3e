/*
 * session_prefill.cu - a CUDA session's prefill: prompts of more than
 * VZ_CUDA_MAX_BATCH tokens run as GEMMs (gemm.h: decode into a bf16 scratch
 * + cuBLAS, or the mma path) with attention over all T queries at once
 * (prefill.h), in chunks whose buffers the planner counts (model/plan.h).
 * Each GEMM's weights are decoded ahead on gemm.cu's decode stream (Wo under
 * the attention, gate/up under the norm, down under SiLU, the next layer's
 * QKV under the down GEMM) where the layer is resident; a streamed layer's
 * decodes start after its slot copy (vz_gemm_fork) and end before its
 * release (vz_gemm_join). Streamed layers are fetched once per chunk. CPU
 * reference: vz_forward.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/session_cuda.h"

/* Chunks of up to PF_CAP tokens. The GEMM inputs are rounded to bf16, so logits differ from the matvec path's
 * (tests/test_cuda_prefill.c derives the tolerance); raw and lossless still
 * give identical bits (same bf16 weights, same GEMM). */
#define PF_CAP VZ_PLAN_PREFILL_CAP       /* model/plan.h: the planner counts these buffers */
#define PF_LR VZ_PLAN_PREFILL_LOGIT_ROWS  /* rows per all-logits head GEMM */

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Allocates the prefill buffers (counted in scratch_bytes) on first use;
 * mode -1 afterwards when that is impossible (no cuBLAS: the matvec path). */
static vz_status pf_setup(vz_cuda_session *s, int32_t all_logits) {
    const vz_config *c = &s->c;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t hid = c->hidden_dim, cap = s->n_ctx < PF_CAP ? s->n_ctx : PF_CAP;
    uint64_t *a = &s->scratch_bytes;
    if (!s->pf.cap) {
        /* one stacked op at a time, or row chunks of it */
        if (vz_gemm_create(&s->pf.g, (int64_t)vz_plan_gemm_scratch_elems(c), s->st) != VZ_OK) {
            s->pf.mode = -1;
            return VZ_OK;
        }
        s->scratch_bytes += vz_gemm_bytes(s->pf.g);
        VZ_TRY(vz_cs_dalloc((void **)&s->pf.x, (uint64_t)(cap * dim), 4, a, "prefill x"));
        VZ_TRY(vz_cs_dalloc((void **)&s->pf.big, (uint64_t)(cap * max64(qd + 2 * kvd, 2 * hid)), 4, a, "prefill qkv/gate-up"));
        VZ_TRY(vz_cs_dalloc(&s->pf.h16, (uint64_t)(cap * max64(max64(dim, qd), hid)), 2, a, "prefill bf16 inputs"));
        VZ_TRY(vz_cs_dalloc((void **)&s->pf.tok, (uint64_t)cap, 4, a, "prefill tokens"));
        s->pf.cap = (int32_t)cap;
        const char *pe = getenv("VZ_CUDA_PROFILE");
        if (pe && *pe == '1') {
            s->pf.prof = 1;
            for (int i = 0; i < 256 && s->pf.prof; i++)
                if (cudaEventCreate(&s->pf.ev[i]) != cudaSuccess) s->pf.prof = 0;
        }
    }
    if (all_logits && !s->pf.logits)
        VZ_TRY(vz_cs_dalloc((void **)&s->pf.logits, (uint64_t)(cap < PF_LR ? cap : PF_LR) * (uint64_t)c->vocab_size, 4, a,
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

/* [st] Layer l's tensors live in a streaming / cache slot (acquired per chunk). */
static int pf_streamed(const vz_cuda_session *s, int32_t l) { return s->sm && l >= s->n_res; }

/* T (<= cap) tokens at pos0, the model top to bottom as forward(); logits:
 * NULL, all T rows (all_logits) or the last row. */
static vz_status pf_chunk(vz_cuda_session *s, const int32_t *tokens, int32_t T, int32_t pos0, float *logits,
                          int32_t all_logits) {
    const vz_config *c = &s->c;
    const int32_t dim = c->dim, nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim, hid = c->hidden_dim;
    const int64_t qd = (int64_t)nh * hd, ldqkv = qd + 2 * (int64_t)nkv * hd;
    const size_t kv_layer = vz_cs_kv_layer_bytes(s);
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
        const int streamed = pf_streamed(s, l);
        if (streamed) {
            VZ_TRY(vz_stream_acquire(s->sm, l, lw, st));
            VZ_TRY(vz_gemm_fork(g)); /* [st] the decode stream reads the slot only once it is copied */
        }
        const size_t slot = (size_t)s->cur_slot * s->slot_bytes; /* [batch] the sequence's KV slot */
        char *kc = (char *)s->kc + slot + kv_layer * l, *vc = (char *)s->vc + slot + kv_layer * l;
        const vz_cuda_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *wo = &L->wo, *gu[2] = {&L->w1, &L->w3}, *w2 = &L->w2;
        vz_pf_rmsnorm_bf16(s->pf.x, s->pf.h16, L->attn_norm, T, dim, c->rms_eps, st);
        pf_mark(s, "rmsnorm");
        VZ_TRY(vz_gemm_run(g, 3, qkv, s->pf.big, ldqkv, s->pf.h16, dim, T, 0, mode));
        pf_mark(s, "qkv gemm");
        if (mode != VZ_GEMM_B) VZ_TRY(vz_gemm_prefetch(g, 1, &wo)); /* decoded under the attention */
        vz_pf_attention(s->pf.h16, s->pf.big, ldqkv, kc, vc, pos0, T, nh, nkv, hd, s->kv_f16, c->rope_theta,
                        s->rope_freq, c->rope_interleaved, L->bqkv, st);
        pf_mark(s, "attention");
        VZ_TRY(vz_gemm_run(g, 1, &wo, s->pf.x, dim, s->pf.h16, qd, T, 1, mode));
        pf_mark(s, "wo gemm");
        if (mode != VZ_GEMM_B) VZ_TRY(vz_gemm_prefetch(g, 2, gu)); /* under the norm */
        VZ_TRY(vz_cs_trace_row(s, l, 0, s->pf.x, T));
        vz_pf_rmsnorm_bf16(s->pf.x, s->pf.h16, L->ffn_norm, T, dim, c->rms_eps, st);
        pf_mark(s, "rmsnorm");
        VZ_TRY(vz_gemm_run(g, 2, gu, s->pf.big, 2 * (int64_t)hid, s->pf.h16, dim, T, 0, mode));
        pf_mark(s, "gate/up gemm");
        if (mode != VZ_GEMM_B) VZ_TRY(vz_gemm_prefetch(g, 1, &w2)); /* under SiLU */
        vz_pf_silu_mul_bf16(s->pf.big, s->pf.h16, T, hid, st);
        pf_mark(s, "silu*mul");
        VZ_TRY(vz_gemm_run(g, 1, &w2, s->pf.x, dim, s->pf.h16, hid, T, 1, mode));
        pf_mark(s, "down gemm");
        VZ_TRY(vz_cs_trace_row(s, l, 1, s->pf.x, T));
        if (streamed) { /* its last decode done before the slot is refilled */
            VZ_TRY(vz_gemm_join(g));
            VZ_TRY(vz_stream_release(s->sm, l, st));
        }
        if (mode != VZ_GEMM_B && l + 1 < c->n_layers && !pf_streamed(s, l + 1)) { /* next QKV under this down GEMM */
            const vz_cuda_tensor *nq[3] = {&s->L[l + 1].wq, &s->L[l + 1].wk, &s->L[l + 1].wv};
            VZ_TRY(vz_gemm_prefetch(g, 3, nq));
        }
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

vz_status vz_cs_prefill_eval(vz_cuda_session *s, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
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
    return vz_cs_finish(s);
}

void vz_cs_prefill_free(vz_cuda_session *s) {
    vz_gemm_free(s->pf.g);
    for (int i = 0; i < 256 && s->pf.prof; i++) cudaEventDestroy(s->pf.ev[i]);
    void *pfb[] = {s->pf.x, s->pf.big, s->pf.logits, s->pf.h16, s->pf.tok};
    for (size_t i = 0; i < sizeof pfb / sizeof pfb[0]; i++) cudaFree(pfb[i]);
}

/* Raw bf16 in device memory: the reference multiplies it as it lies (a
 * timing: the same GEMMs on the same bytes as the prefill's in-place ones). */
static int ref_ok(const vz_cuda_tensor *t) { return t->codec == VZ_CODEC_raw && t->dtype == VZ_DTYPE_BF16; }

/* One cublasGemmEx over the stacked t[0..n) when they lie contiguous (vz_gemm_raw_stack), else one per tensor. */
static vz_status ref_gemm(vz_gemm *g, int n, const vz_cuda_tensor *const *t, float *y, int64_t ldy, const void *x,
                          int64_t ldx, int32_t T) {
    const void *w;
    VZ_TRY(vz_gemm_raw_stack(n, t, &w));
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += t[i]->rows;
    if (w) return vz_gemm_bf16(g, w, rows, t[0]->cols, y, ldy, x, ldx, T, 0);
    for (int i = 0, r = 0; i < n; r += (int)t[i]->rows, i++)
        VZ_TRY(vz_gemm_bf16(g, t[i]->data, t[i]->rows, t[i]->cols, y + r, ldy, x, ldx, T, 0));
    return VZ_OK;
}

/* The prefill's GEMM sequence for one chunk of T tokens on the raw weights (inputs: whatever h16 holds). */
static vz_status ref_chunk(vz_cuda_session *s, int32_t T) {
    const vz_config *c = &s->c;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, hid = c->hidden_dim;
    const int64_t ldqkv = qd + 2 * (int64_t)c->n_kv_heads * c->head_dim;
    for (int32_t l = 0; l < c->n_layers; l++) {
        const dev_layer *L = &s->L[l];
        const vz_cuda_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *wo = &L->wo, *gu[2] = {&L->w1, &L->w3}, *w2 = &L->w2;
        VZ_TRY(ref_gemm(s->pf.g, 3, qkv, s->pf.big, ldqkv, s->pf.h16, dim, T));
        VZ_TRY(ref_gemm(s->pf.g, 1, &wo, s->pf.x, dim, s->pf.h16, qd, T));
        VZ_TRY(ref_gemm(s->pf.g, 2, gu, s->pf.big, 2 * hid, s->pf.h16, dim, T));
        VZ_TRY(ref_gemm(s->pf.g, 1, &w2, s->pf.x, dim, s->pf.h16, hid, T));
    }
    return VZ_OK;
}

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

extern "C" vz_status vz_cuda_session_prefill_ref(vz_cuda_session *s, int32_t n, double *seconds) {
    VZ_FAIL_IF(!s || !seconds || n < 1, VZ_ERR_ARG, "vz_cuda_session_prefill_ref: bad arguments");
    *seconds = 0.0;
    VZ_FAIL_IF(s->sm || s->n_res < s->c.n_layers, VZ_ERR_UNSUPPORTED, "prefill reference: streamed layers");
    for (int32_t l = 0; l < s->c.n_layers; l++) {
        const dev_layer *L = &s->L[l];
        VZ_FAIL_IF(!ref_ok(&L->wq) || !ref_ok(&L->wk) || !ref_ok(&L->wv) || !ref_ok(&L->wo) || !ref_ok(&L->w1) ||
                       !ref_ok(&L->w2) || !ref_ok(&L->w3),
                   VZ_ERR_UNSUPPORTED, "prefill reference: layer %d is not raw bf16", (int)l);
    }
    if (s->pf.mode >= 0) VZ_TRY(pf_setup(s, 0));
    VZ_FAIL_IF(s->pf.mode < 0 || !s->pf.g, VZ_ERR_UNSUPPORTED, "prefill reference: no GEMM path (cuBLAS)");
    cudaEvent_t e0, e1;
    CU_TRY(cudaEventCreate(&e0), "event");
    if (cudaEventCreate(&e1) != cudaSuccess) {
        cudaEventDestroy(e0);
        return VZ_FAIL(VZ_ERR_CUDA, "prefill reference: event");
    }
    double t[6];
    vz_status st = VZ_OK;
    for (int k = 0; k < 6 && st == VZ_OK; k++) { /* run 0: warm-up */
        cudaEventRecord(e0, s->st);
        for (int32_t t0 = 0; t0 < n && st == VZ_OK; t0 += s->pf.cap) st = ref_chunk(s, n - t0 < s->pf.cap ? n - t0 : s->pf.cap);
        cudaEventRecord(e1, s->st);
        float ms = 0.0f;
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
            st = VZ_FAIL(VZ_ERR_CUDA, "prefill reference: timing");
        t[k] = 1e-3 * ms;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    VZ_TRY(st);
    qsort(t + 1, 5, sizeof t[0], cmp_dbl);
    *seconds = t[3];
    return VZ_OK;
}
