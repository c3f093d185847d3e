/*
 * forward.c - the Llama forward pass on the CPU over a batch of tokens,
 * following llama2.c run.c forward() (RMSNorm, GQA attention with RoPE,
 * SwiGLU MLP, residuals; f32 activations) and Hugging Face LlamaForCausalLM
 * for rotate-half RoPE. Weights stay encoded: every matmul decodes rows on
 * the fly through the codec table (vz_cpu_matmul_st).
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "core/half.h"
#include "core/half_rows.h"
#include "model/session.h"

/* Row of head kvh at position t of layer l's keys or values, as f32 (f16
 * entries are decoded into tmp by the bulk conversion: F16C where the CPU
 * has it, the values of vz_f16_to_f32 either way). */
static inline const float *kv_row(const vz_kv *kv, const void *base, int32_t l, int32_t t, int32_t kvh,
                                  float *tmp) {
    size_t off = ((size_t)l * (size_t)kv->cap + (size_t)t) * (size_t)kv->kv_dim + (size_t)kvh * kv->head_dim;
    if (!kv->f16) return (const float *)base + off;
    vz_f16_rows_to_f32(tmp, (const uint8_t *)((const uint16_t *)base + off), (size_t)kv->head_dim);
    return tmp;
}

/* q . k over one head: 4 partial sums in a fixed order. Inlined (unlike
 * vz_dot, which must round identically for every codec's weights): heads
 * are short and this runs for every cached position. */
static inline float head_dot(const float *q, const float *k, int32_t hd) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int32_t d = 0;
    for (; d + 4 <= hd; d += 4) {
        a0 += q[d] * k[d];
        a1 += q[d + 1] * k[d + 1];
        a2 += q[d + 2] * k[d + 2];
        a3 += q[d + 3] * k[d + 3];
    }
    for (; d < hd; d++) a0 += q[d] * k[d];
    return (a0 + a1) + (a2 + a3);
}

/* o[d] += w * v[d], d < n: 16 elements at a time (GCC vector extensions:
 * SSE on baseline x86-64), each element's multiply and add as the scalar
 * loop's, so the sums over t come out the same. */
static inline void add_scaled(float *o, float w, const float *v, int32_t n) {
    typedef float f32x16 __attribute__((vector_size(64)));
    int32_t d = 0;
    for (; d + 16 <= n; d += 16) {
        f32x16 a, b;
        memcpy(&a, o + d, sizeof a);
        memcpy(&b, v + d, sizeof b);
        a += w * b;
        memcpy(o + d, &a, sizeof a);
    }
    for (; d < n; d++) o[d] += w * v[d];
}

/* Appends this batch's keys and values (n, kv_dim) at positions pos0.. of layer l. */
static void kv_store(vz_kv *kv, int32_t l, int32_t pos0, int32_t n, const float *k, const float *v) {
    size_t off = ((size_t)l * (size_t)kv->cap + (size_t)pos0) * (size_t)kv->kv_dim;
    size_t cnt = (size_t)n * (size_t)kv->kv_dim;
    if (!kv->f16) {
        memcpy((float *)kv->k + off, k, cnt * sizeof(float));
        memcpy((float *)kv->v + off, v, cnt * sizeof(float));
        return;
    }
    uint16_t *kh = (uint16_t *)kv->k + off, *vh = (uint16_t *)kv->v + off;
    for (size_t i = 0; i < cnt; i++) {
        kh[i] = vz_f32_to_f16(k[i]);
        vh[i] = vz_f32_to_f16(v[i]);
    }
}

/* Where row i of a forward batch keeps its keys and values, and its
 * position: one sequence's consecutive tokens (kv, pos0 + i), or [batch]
 * one token of each of several sequences (kvs[i], pos[i]). */
typedef struct fwd_rows {
    vz_kv *kv;
    vz_kv *const *kvs;
    int32_t pos0;
    const int32_t *pos;
} fwd_rows;

static inline vz_kv *row_kv(const fwd_rows *r, int32_t i) { return r->kvs ? r->kvs[i] : r->kv; }
static inline int32_t row_pos(const fwd_rows *r, int32_t i) { return r->pos ? r->pos[i] : r->pos0 + i; }

/* Causal grouped-query attention of the batch's queries (n, n_heads*head_dim)
 * over the cached positions 0..row_pos(i) of each row's cache; query head h
 * reads KV head h / group. Each (token, head) is computed by one thread in a
 * fixed order, so results do not depend on threads or batching. */
static void attention(vz_session *s, const fwd_rows *r, int32_t l, int32_t n) {
    const vz_config *c = &s->m->cfg;
    const int32_t hd = c->head_dim, nh = c->n_heads, group = c->n_heads / c->n_kv_heads;
    const float norm = sqrtf((float)hd);
    int64_t span = 0; /* cached positions read, over all rows */
    for (int32_t i = 0; i < n; i++) span += row_pos(r, i) + 1;
    const int64_t work = span * nh * hd;
    const int nt = work < (1 << 18) ? 1 : s->n_threads; /* as vz_cpu_matmul_st */
#pragma omp parallel for collapse(2) schedule(static) num_threads(nt)
    for (int32_t i = 0; i < n; i++) {
        for (int32_t h = 0; h < nh; h++) {
            float *score = s->att_scratch + (size_t)omp_get_thread_num() * (size_t)s->att_stride; /* (len) */
            float *tmp = score + s->n_ctx;                                                          /* (hd) */
            const float *q = s->q + ((size_t)i * nh + h) * hd;
            float *o = s->att + ((size_t)i * nh + h) * hd;
            const vz_kv *kv = row_kv(r, i);
            const int32_t kvh = h / group, len = row_pos(r, i) + 1;
            for (int32_t t = 0; t < len; t++) score[t] = head_dot(q, kv_row(kv, kv->k, l, t, kvh, tmp), hd) / norm;
            vz_cpu_softmax(score, len);
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int32_t t = 0; t < len; t++) add_scaled(o, score[t], kv_row(kv, kv->v, l, t, kvh, tmp), hd);
        }
    }
}

/* Debug hook (vz_session_set_trace): copies the residual stream of the batch's
 * last row into slot (layer, block) of the trace; the last batch of an eval
 * writes last, so the trace ends up holding the last evaluated position. */
static inline void trace_row(const vz_session *s, int32_t l, int32_t block, const float *x, int32_t n) {
    if (!s->trace) return;
    const size_t dim = (size_t)s->m->cfg.dim;
    memcpy(s->trace + ((size_t)l * 2 + (size_t)block) * dim, x + (size_t)(n - 1) * dim, dim * sizeof(float));
}

static void add_bias(float *x, const float *b, int32_t n) {
    for (int32_t i = 0; i < n; i++) x[i] += b[i];
}

static void forward_rows(vz_session *s, const fwd_rows *r, const int32_t *tokens, int32_t n, float *logits,
                         int32_t lo) {
    const vz_model *m = s->m;
    const vz_config *c = &m->cfg;
    const int32_t dim = c->dim, hd = c->head_dim, hid = c->hidden_dim;
    const int32_t nt = s->n_threads;
    float *x = s->x, *xb = s->xb, *mm = s->mm_scratch;

    /* token embeddings -> x (n, dim); rotations for each position (rope_scaling: from scaled frequencies) */
    float *freq = c->rope_scaling.type != VZ_ROPE_NONE ? s->rope_freq : NULL;
    if (freq) vz_cpu_rope_freqs(freq, hd, c->rope_theta, &c->rope_scaling);
    for (int32_t i = 0; i < n; i++) {
        vz_cpu_row(x + (size_t)i * dim, m->tok_emb, tokens[i]);
        if (freq) vz_cpu_rope_table_freqs(s->rope + (size_t)i * hd, hd, row_pos(r, i), freq);
        else vz_cpu_rope_table(s->rope + (size_t)i * hd, hd, row_pos(r, i), c->rope_theta);
    }

    for (int32_t l = 0; l < c->n_layers; l++) {
        const vz_layer *L = &m->layers[l];

        /* attention: xb = rmsnorm(x); q, k, v = xb Wq^T, xb Wk^T, xb Wv^T */
        for (int32_t i = 0; i < n; i++)
            vz_cpu_rmsnorm(xb + (size_t)i * dim, x + (size_t)i * dim, L->attn_norm, dim, c->rms_eps);
        vz_cpu_matmul_st(s->q, xb, n, L->wq, mm, nt); /* (n, n_heads*hd) */
        vz_cpu_matmul_st(s->k, xb, n, L->wk, mm, nt); /* (n, n_kv_heads*hd) */
        vz_cpu_matmul_st(s->v, xb, n, L->wv, mm, nt); /* (n, n_kv_heads*hd) */
        if (L->bq) /* Qwen 2: q, k, v += their biases */
            for (int32_t i = 0; i < n; i++) {
                add_bias(s->q + (size_t)i * c->n_heads * hd, L->bq, c->n_heads * hd);
                add_bias(s->k + (size_t)i * c->n_kv_heads * hd, L->bk, c->n_kv_heads * hd);
                add_bias(s->v + (size_t)i * c->n_kv_heads * hd, L->bv, c->n_kv_heads * hd);
            }

        /* RoPE on queries and keys, then keys/values into the cache */
        for (int32_t i = 0; i < n; i++) {
            const float *cs = s->rope + (size_t)i * hd;
            vz_cpu_rope(s->q + (size_t)i * c->n_heads * hd, c->n_heads, hd, cs, c->rope_interleaved);
            vz_cpu_rope(s->k + (size_t)i * c->n_kv_heads * hd, c->n_kv_heads, hd, cs, c->rope_interleaved);
        }
        if (!r->kvs) {
            kv_store(r->kv, l, r->pos0, n, s->k, s->v);
        } else {
            const size_t kvd = (size_t)c->n_kv_heads * hd;
            for (int32_t i = 0; i < n; i++) kv_store(r->kvs[i], l, r->pos[i], 1, s->k + i * kvd, s->v + i * kvd);
        }

        /* att = softmax(q k^T / sqrt(hd)) v; x += att Wo^T */
        attention(s, r, l, n);
        vz_cpu_matmul_st(xb, s->att, n, L->wo, mm, nt); /* (n, dim) */
        for (size_t k = 0; k < (size_t)n * dim; k++) x[k] += xb[k];
        trace_row(s, l, 0, x, n);

        /* MLP: x += (silu(xb W1^T) * (xb W3^T)) W2^T with xb = rmsnorm(x) */
        for (int32_t i = 0; i < n; i++)
            vz_cpu_rmsnorm(xb + (size_t)i * dim, x + (size_t)i * dim, L->ffn_norm, dim, c->rms_eps);
        vz_cpu_matmul_st(s->hb, xb, n, L->w1, mm, nt);  /* gate (n, hidden) */
        vz_cpu_matmul_st(s->hb2, xb, n, L->w3, mm, nt); /* up (n, hidden) */
        vz_cpu_swiglu(s->hb, s->hb2, (int64_t)n * hid);
        vz_cpu_matmul_st(xb, s->hb, n, L->w2, mm, nt); /* down (n, dim) */
        for (size_t k = 0; k < (size_t)n * dim; k++) x[k] += xb[k];
        trace_row(s, l, 1, x, n);
    }

    /* final norm and classifier, only for the rows whose logits are wanted */
    if (lo >= n) return;
    for (int32_t i = lo; i < n; i++)
        vz_cpu_rmsnorm(xb + (size_t)i * dim, x + (size_t)i * dim, m->final_norm, dim, c->rms_eps);
    vz_cpu_matmul_st(logits, xb + (size_t)lo * dim, n - lo, m->output, mm, nt); /* (n - lo, vocab) */
}

void vz_forward(vz_session *s, vz_kv *kv, const int32_t *tokens, int32_t n, int32_t pos0, float *logits,
                int32_t lo) {
    const fwd_rows r = {kv, NULL, pos0, NULL};
    forward_rows(s, &r, tokens, n, logits, lo);
}

void vz_forward_seqs(vz_session *s, vz_kv *const *kvs, const int32_t *pos, const int32_t *tokens, int32_t n,
                     float *logits) {
    const fwd_rows r = {NULL, kvs, 0, pos};
    forward_rows(s, &r, tokens, n, logits, logits ? 0 : n);
}
