/*
 * session.c - the public session API (vramzip.h): a context over a model
 * with its KV cache (f32, f16, or none: VZ_KV_OFF keeps the token history
 * and recomputes the whole sequence with a transient f32 cache on every
 * eval, so it gives bit-identical logits to the f32 cache). Evaluation runs
 * in batches of VZ_BATCH tokens through vz_forward (forward.c).
 */
#include "model/session.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "model/plan.h"
#ifdef VZ_HAVE_CUDA /* [fw] device sessions: src/backend/cuda/session_cuda.cu */
#include "backend/cuda/cuda.h"
#endif

void vz_session_opts_default(vz_session_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv = VZ_KV_F32;
    o->device = VZ_DEVICE_CPU;
}

/* calloc of a*b*esize bytes, NULL on overflow or failure. */
static void *alloc3(uint64_t a, uint64_t b, uint64_t esize) {
    uint64_t n;
    if (vz_mul_ovf(a, b, &n) || vz_mul_ovf(n, esize, &n) || n > SIZE_MAX) return NULL;
    return calloc(1, n ? (size_t)n : 1);
}

vz_status vz_kv_alloc(vz_kv *kv, const vz_config *c, int32_t cap, int32_t f16) {
    memset(kv, 0, sizeof *kv);
    kv->f16 = f16;
    kv->cap = cap;
    kv->n_layers = c->n_layers;
    kv->head_dim = c->head_dim;
    kv->kv_dim = c->n_kv_heads * c->head_dim;
    uint64_t per_layer = (uint64_t)cap * (uint64_t)kv->kv_dim;
    kv->k = alloc3((uint64_t)c->n_layers, per_layer, f16 ? 2 : 4);
    kv->v = alloc3((uint64_t)c->n_layers, per_layer, f16 ? 2 : 4);
    if (!kv->k || !kv->v) {
        vz_kv_free(kv);
        return VZ_FAIL(VZ_ERR_NOMEM, "KV cache: cannot allocate 2 x %d layers x %d positions x %d (%s)",
                       (int)c->n_layers, (int)cap, (int)(c->n_kv_heads * c->head_dim), f16 ? "f16" : "f32");
    }
    return VZ_OK;
}

void vz_kv_free(vz_kv *kv) {
    free(kv->k);
    free(kv->v);
    kv->k = kv->v = NULL;
}

static vz_status check_opts(const vz_session_opts *o) {
    VZ_FAIL_IF(o->n_ctx < 0, VZ_ERR_ARG, "session: n_ctx %d is negative", (int)o->n_ctx);
    VZ_FAIL_IF(o->n_seq < 0 || o->n_seq > VZ_MAX_SEQ, VZ_ERR_ARG, "session: n_seq %d is outside [0, %d]",
               (int)o->n_seq, VZ_MAX_SEQ);
    VZ_FAIL_IF(o->n_threads < 0 || o->n_threads > 4096, VZ_ERR_ARG, "session: n_threads %d is outside [0, 4096]",
               (int)o->n_threads);
    VZ_FAIL_IF(o->kv != VZ_KV_F32 && o->kv != VZ_KV_F16 && o->kv != VZ_KV_OFF, VZ_ERR_ARG,
               "session: unknown KV cache mode %d", (int)o->kv);
#ifndef VZ_HAVE_CUDA
    VZ_FAIL_IF(o->device == VZ_DEVICE_CUDA, VZ_ERR_UNSUPPORTED, "session: device cuda: built without CUDA backend");
#endif
    VZ_FAIL_IF(o->device == VZ_DEVICE_CUDA && o->kv == VZ_KV_OFF, VZ_ERR_UNSUPPORTED,
               "session: device cuda needs a KV cache (f16 or f32), not kv off");
    VZ_FAIL_IF(o->device != VZ_DEVICE_CPU && o->device != VZ_DEVICE_CUDA, VZ_ERR_ARG, "session: unknown device %d",
               (int)o->device);
    /* [plan] residency and the VRAM budget are device settings */
    VZ_FAIL_IF(o->residency < VZ_RESIDENCY_COMPRESSED || o->residency > VZ_RESIDENCY_CACHE, VZ_ERR_ARG,
               "session: unknown residency %d", (int)o->residency);
    VZ_FAIL_IF(o->device == VZ_DEVICE_CPU && (o->vram_budget || o->residency != VZ_RESIDENCY_COMPRESSED), VZ_ERR_ARG,
               "session: a VRAM budget and residency modes apply to device cuda only");
    return VZ_OK;
}

static vz_status alloc_buffers(vz_session *s) {
    const vz_config *c = &s->m->cfg;
    const uint64_t B = VZ_BATCH, dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd, hid = (uint64_t)c->hidden_dim;
    uint64_t max_cols = dim > qd ? dim : qd;
    if (hid > max_cols) max_cols = hid;
    s->att_stride = (int64_t)s->n_ctx + (int64_t)hd;
    s->history = alloc3((uint64_t)s->n_ctx, 1, sizeof(int32_t));
    s->x = alloc3(B, dim, 4);
    s->xb = alloc3(B, dim, 4);
    s->q = alloc3(B, qd, 4);
    s->k = alloc3(B, kvd, 4);
    s->v = alloc3(B, kvd, 4);
    s->att = alloc3(B, qd, 4);
    s->hb = alloc3(B, hid, 4);
    s->hb2 = alloc3(B, hid, 4);
    s->rope = alloc3(B, hd, 4);
    s->rope_freq = alloc3(1, hd, 4);
    s->mm_scratch = alloc3((uint64_t)s->n_threads * VZ_ROW_BLOCK, max_cols, 4);
    s->att_scratch = alloc3((uint64_t)s->n_threads, (uint64_t)s->att_stride, 4);
    VZ_FAIL_IF(!s->history || !s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
                   !s->rope || !s->rope_freq || !s->mm_scratch || !s->att_scratch,
               VZ_ERR_NOMEM, "session: cannot allocate activation buffers (n_ctx %d, %d threads)", (int)s->n_ctx,
               (int)s->n_threads);
    if (s->kv_mode != VZ_KV_OFF) VZ_TRY(vz_kv_alloc(&s->kv, c, s->n_ctx, s->kv_mode == VZ_KV_F16));
    for (int32_t q = 1; q < s->n_seq; q++) { /* [batch] the other sequences' state */
        s->seq[q].history = alloc3((uint64_t)s->n_ctx, 1, sizeof(int32_t));
        VZ_FAIL_IF(!s->seq[q].history, VZ_ERR_NOMEM, "session: cannot allocate sequence %d", (int)q);
        if (s->kv_mode != VZ_KV_OFF) VZ_TRY(vz_kv_alloc(&s->seq[q].kv, c, s->n_ctx, s->kv_mode == VZ_KV_F16));
    }
    return VZ_OK;
}

void vz_session_select(vz_session *s, int32_t q) {
    if (q == s->cur) return;
    s->seq[s->cur] = (vz_seq_state){s->pos, s->history, s->kv};
    s->pos = s->seq[q].pos, s->history = s->seq[q].history, s->kv = s->seq[q].kv;
    s->cur = q;
}

#ifdef VZ_HAVE_CUDA
/* [plan] Plans the device session (plan.c) and refuses, before allocating
 * anything, a plan that does not fit; [st] layers past the resident prefix
 * stream from pinned host memory (or pass through the layer cache). */
static vz_status cuda_create(vz_session *s, const vz_session_opts *opts) {
    vz_session_opts o = *opts;
    o.n_ctx = s->n_ctx;
    vz_plan p;
    VZ_TRY(vz_plan_session(s->m, &o, 1, &p));
    if (!p.fits) return VZ_FAIL(VZ_ERR_NOMEM, "device cuda: %s", p.advice);
    return vz_cuda_session_create_plan(&s->cuda, s->m, s->n_ctx, s->n_seq, opts->kv == VZ_KV_F16,
                                       (int32_t)opts->residency, p.n_resident);
}
#endif

vz_status vz_session_create(vz_session **out, vz_model *m, const vz_session_opts *opts) {
    VZ_FAIL_IF(!out || !m, VZ_ERR_ARG, "vz_session_create: NULL argument");
    *out = NULL;
    vz_session_opts def;
    if (!opts) {
        vz_session_opts_default(&def);
        opts = &def;
    }
    VZ_TRY(check_opts(opts));
    VZ_FAIL_IF(opts->n_ctx > m->cfg.max_seq_len, VZ_ERR_ARG,
               "session: n_ctx %d exceeds the model's context length %d (max_position_embeddings, or the "
               "sliding window)", (int)opts->n_ctx, (int)m->cfg.max_seq_len);
    vz_session *s = calloc(1, sizeof *s);
    VZ_FAIL_IF(!s, VZ_ERR_NOMEM, "session: out of memory");
    s->m = m;
    s->kv_mode = opts->kv;
    s->n_ctx = opts->n_ctx > 0 ? opts->n_ctx : m->cfg.max_seq_len;
    s->n_seq = opts->n_seq > 0 ? opts->n_seq : 1;
    s->n_threads = opts->n_threads > 0 ? opts->n_threads : omp_get_max_threads();
    if (s->n_threads < 1) s->n_threads = 1;
#ifdef VZ_HAVE_CUDA /* [fw] a device session keeps no host activations */
    vz_status st = opts->device == VZ_DEVICE_CUDA ? cuda_create(s, opts) : alloc_buffers(s);
#else
    vz_status st = alloc_buffers(s);
#endif
    if (st != VZ_OK) {
        vz_session_free(s);
        return st;
    }
    *out = s;
    return VZ_OK;
}

void vz_session_free(vz_session *s) {
    if (!s) return;
#ifdef VZ_HAVE_CUDA /* [fw] */
    vz_cuda_session_free(s->cuda);
#endif
    vz_kv_free(&s->kv);
    free(s->history);
    for (int32_t q = 0; q < s->n_seq; q++) /* [batch] the parked sequences */
        if (q != s->cur) {
            vz_kv_free(&s->seq[q].kv);
            free(s->seq[q].history);
        }
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->rope);
    free(s->rope_freq);
    free(s->mm_scratch);
    free(s->att_scratch);
    free(s);
}

/* Runs positions [p0, p1) (tokens[k] at position p0 + k) in batches. Logits:
 * with all, of every position >= first_out, packed from logits[0]; else only
 * of position p1 - 1. */
static void run_range(vz_session *s, vz_kv *kv, const int32_t *tokens, int32_t p0, int32_t p1, int32_t first_out,
                      float *logits, int32_t all) {
    const size_t vocab = (size_t)s->m->cfg.vocab_size;
    for (int32_t b0 = p0; b0 < p1; b0 += VZ_BATCH) {
        int32_t n = p1 - b0 < VZ_BATCH ? p1 - b0 : VZ_BATCH, lo = n;
        float *dst = logits;
        if (logits && all && b0 + n > first_out) {
            lo = first_out > b0 ? first_out - b0 : 0;
            dst = logits + (size_t)(b0 + lo - first_out) * vocab;
        } else if (logits && !all && b0 + n == p1) {
            lo = n - 1;
        }
        vz_forward(s, kv, tokens + (b0 - p0), n, b0, dst, lo);
    }
}

vz_status vz_session_eval(vz_session *s, const int32_t *tokens, int32_t n, float *logits, int32_t all_logits) {
    return vz_session_eval_seq(s, 0, tokens, n, logits, all_logits);
}

vz_status vz_session_eval_seq(vz_session *s, int32_t seq, const int32_t *tokens, int32_t n, float *logits,
                              int32_t all_logits) {
    VZ_FAIL_IF(!s || n < 0 || (n > 0 && !tokens), VZ_ERR_ARG, "vz_session_eval: bad arguments (n = %d)", (int)n);
    VZ_FAIL_IF(seq < 0 || seq >= s->n_seq, VZ_ERR_ARG, "eval: sequence %d outside [0, %d)", (int)seq, (int)s->n_seq);
    vz_session_select(s, seq);
    const int32_t vocab = s->m->cfg.vocab_size;
    for (int32_t i = 0; i < n; i++)
        VZ_FAIL_IF(tokens[i] < 0 || tokens[i] >= vocab, VZ_ERR_ARG, "eval: token %d (index %d) outside vocab %d",
                   (int)tokens[i], (int)i, (int)vocab);
    VZ_FAIL_IF(n > s->n_ctx - s->pos, VZ_ERR_CONTEXT,
               "context full: %d tokens at position %d do not fit in n_ctx %d", (int)n, (int)s->pos, (int)s->n_ctx);
    if (n == 0) return VZ_OK;
#ifdef VZ_HAVE_CUDA /* [fw] */
    if (s->cuda) {
        VZ_TRY(vz_cuda_session_eval(s->cuda, s->cur, tokens, n, s->pos, logits, all_logits));
        s->pos += n;
        return VZ_OK;
    }
#endif
    if (s->kv_mode != VZ_KV_OFF) {
        run_range(s, &s->kv, tokens, s->pos, s->pos + n, s->pos, logits, all_logits);
    } else {
        vz_kv tmp;
        VZ_TRY(vz_kv_alloc(&tmp, &s->m->cfg, s->pos + n, 0));
        memcpy(s->history + s->pos, tokens, sizeof(int32_t) * (size_t)n);
        run_range(s, &tmp, s->history, 0, s->pos + n, s->pos, logits, all_logits);
        vz_kv_free(&tmp);
    }
    memcpy(s->history + s->pos, tokens, sizeof(int32_t) * (size_t)n);
    s->pos += n;
    return VZ_OK;
}

int32_t vz_session_pos(const vz_session *s) { return vz_session_seq_pos(s, 0); }

int32_t vz_session_seq_pos(const vz_session *s, int32_t seq) {
    if (!s || seq < 0 || seq >= s->n_seq) return 0;
    return seq == s->cur ? s->pos : s->seq[seq].pos;
}

int32_t vz_session_n_seq(const vz_session *s) { return s ? s->n_seq : 0; }

int32_t vz_session_n_ctx(const vz_session *s) { return s ? s->n_ctx : 0; }

void vz_session_reset(vz_session *s) {
    if (!s) return;
    s->pos = 0;
    for (int32_t q = 0; q < VZ_MAX_SEQ; q++) s->seq[q].pos = 0;
}

/* ---- debug trace (vz_session_set_trace): CPU and CUDA sessions ---- */

vz_status vz_session_set_trace(vz_session *s, float *buf) {
    VZ_FAIL_IF(!s, VZ_ERR_ARG, "vz_session_set_trace: NULL session");
#ifdef VZ_HAVE_CUDA
    if (s->cuda) vz_cuda_session_set_trace(s->cuda, buf);
#endif
    s->trace = buf;
    return VZ_OK;
}
