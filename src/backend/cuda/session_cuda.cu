/*
 * session_cuda.cu - a session whose whole forward pass runs on the GPU
 * (cuda.h): weights uploaded in their encoding, the KV cache (f16 or f32)
 * and all activations on the device. One step over B <= 8 tokens is
 * captured once per B as a CUDA graph that reads its position from device
 * memory, so the same graph replays at every position; sampling runs inside
 * the graph, so generation needs no host round trip per token. CPU
 * reference: vz_forward in src/model/forward.c (same layer order).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/session_cuda.h"

/* Records an event after the op named tag (profiling runs only, never in a graph). */
void vz_cs_mark(vz_cuda_session *s, const char *tag) {
    if (!s->prof.on || s->prof.n >= PROF_MAX) return;
    cudaEventRecord(s->prof.ev[s->prof.n], s->st);
    s->prof.tag[s->prof.n++] = tag;
}

double vz_cs_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void note_mem(vz_cuda_session *s) {
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr < s->min_free) s->min_free = fr;
}

/* cudaMalloc of n elements of esize bytes into *p, counted in *acc. */
vz_status vz_cs_dalloc(void **p, uint64_t n, uint64_t esize, uint64_t *acc, const char *what) {
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
    if (st == VZ_OK) st = vz_cuda_tensor_upload_at(d, &r, s->c.dim, NULL, s->st);
    free(buf);
    return st;
}

/* One tensor in its encoding (never expanded; decoded with decompress),
 * counted in w_bytes. */
static vz_status upload(vz_cuda_session *s, vz_cuda_tensor *d, const vz_tensor *t) {
    if (s->decompress && t->codec != VZ_CODEC_raw) {
        VZ_TRY(upload_decoded(s, d, t));
    } else if (s->arena) {
        const uint64_t b = vz_plan_tensor_bytes(t);
        VZ_FAIL_IF(s->arena_off + b > s->arena_bytes, VZ_ERR_ARG, "cuda session: tensor %s past the weight arena", t->name);
        VZ_TRY(vz_cuda_tensor_upload_at(d, t, s->c.dim, s->arena + s->arena_off, s->st));
        s->arena_off += b;
    } else {
        VZ_TRY(vz_cuda_tensor_upload_at(d, t, s->c.dim, NULL, s->st));
    }
    s->w_bytes += d->size + (d->lut ? ((uint64_t)1 << d->k) : 0);
    return VZ_OK;
}

/* Layer tensors in arena order: wq wk wv side by side and w1 w3 side by
 * side, each slice 256-byte aligned (vz_plan_tensor_bytes), so the
 * prefill's stacked QKV and gate/up GEMMs read raw bf16 weights in place
 * (gemm.cu checks the pointers). dst may be NULL (sizes only). */
static void layer_tensors(const vz_layer *ml, dev_layer *d, const vz_tensor *src[7], vz_cuda_tensor *dst[7]) {
    const vz_tensor *const ts[7] = {ml->wq, ml->wk, ml->wv, ml->wo, ml->w1, ml->w3, ml->w2};
    for (int i = 0; i < 7; i++) src[i] = ts[i];
    if (!d) return;
    vz_cuda_tensor *const ds[7] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w1, &d->w3, &d->w2};
    for (int i = 0; i < 7; i++) dst[i] = ds[i];
}

static vz_status upload_weights(vz_cuda_session *s, const vz_model *m) {
    const int32_t nl = s->c.n_layers, dim = s->c.dim;
    s->L = (dev_layer *)calloc((size_t)nl, sizeof *s->L);
    VZ_FAIL_IF(!s->L, VZ_ERR_NOMEM, "cuda session: layer table");
    if (!s->decompress) { /* every resident encoded tensor in one allocation */
        uint64_t b = vz_plan_tensor_bytes(m->tok_emb) + (m->output != m->tok_emb ? vz_plan_tensor_bytes(m->output) : 0);
        for (int32_t l = 0; l < s->n_res; l++) {
            const vz_tensor *src[7];
            layer_tensors(&m->layers[l], NULL, src, NULL);
            for (int i = 0; i < 7; i++) b += vz_plan_tensor_bytes(src[i]);
        }
        cudaError_t e = cudaMalloc((void **)&s->arena, b);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda session: %.1f MiB for the weights: %s", (double)b / (1 << 20),
                   cudaGetErrorString(e));
        s->arena_bytes = b;
    }
    VZ_TRY(upload(s, &s->emb, m->tok_emb));
    if (m->output != m->tok_emb) VZ_TRY(upload(s, &s->out, m->output));
    /* the small f32 vectors (vz_plan_small_floats): norms, then biases, then the rope frequencies */
    const vz_config *c = &s->c;
    const size_t nsmall = (size_t)vz_plan_small_floats(c), norms = (size_t)dim * (size_t)(2 * nl + 1);
    const size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    const size_t qkv = qd + 2 * kvd, bias0 = norms, freq0 = norms + (c->qkv_bias ? (size_t)nl * qkv : 0);
    float *h = (float *)malloc(sizeof(float) * nsmall);
    VZ_FAIL_IF(!h, VZ_ERR_NOMEM, "cuda session: norms");
    for (int32_t l = 0; l < nl; l++) {
        const vz_layer *ml = &m->layers[l];
        memcpy(h + (size_t)(2 * l) * dim, ml->attn_norm, sizeof(float) * (size_t)dim);
        memcpy(h + (size_t)(2 * l + 1) * dim, ml->ffn_norm, sizeof(float) * (size_t)dim);
        if (!c->qkv_bias) continue;
        float *b = h + bias0 + (size_t)l * qkv;
        memcpy(b, ml->bq, sizeof(float) * qd);
        memcpy(b + qd, ml->bk, sizeof(float) * kvd);
        memcpy(b + qd + kvd, ml->bv, sizeof(float) * kvd);
    }
    memcpy(h + (size_t)(2 * nl) * dim, m->final_norm, sizeof(float) * (size_t)dim);
    if (c->rope_scaling.type != VZ_ROPE_NONE) vz_cpu_rope_freqs(h + freq0, c->head_dim, c->rope_theta, &c->rope_scaling);
    vz_status st = vz_cs_dalloc((void **)&s->norms, nsmall, 4, &s->w_bytes, "norms");
    if (st == VZ_OK && cudaMemcpy(s->norms, h, sizeof(float) * nsmall, cudaMemcpyHostToDevice))
        st = VZ_FAIL(VZ_ERR_CUDA, "cuda session: norms upload");
    free(h);
    VZ_TRY(st);
    s->rope_freq = c->rope_scaling.type != VZ_ROPE_NONE ? s->norms + freq0 : NULL;
    for (int32_t l = 0; l < nl; l++) {
        dev_layer *d = &s->L[l];
        const vz_tensor *src[7];
        vz_cuda_tensor *dst[7];
        layer_tensors(&m->layers[l], d, src, dst);
        for (int i = 0; i < 7 && l < s->n_res; i++) VZ_TRY(upload(s, dst[i], src[i]));
        d->attn_norm = s->norms + (size_t)(2 * l) * dim;
        d->ffn_norm = s->norms + (size_t)(2 * l + 1) * dim;
        d->bqkv = c->qkv_bias ? s->norms + bias0 + (size_t)l * qkv : NULL;
    }
    return VZ_OK;
}

static vz_status alloc_state(vz_cuda_session *s) {
    const vz_config *c = &s->c;
    const uint64_t B = VZ_CUDA_MAX_BATCH, dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd, hid = (uint64_t)c->hidden_dim;
    uint64_t kvn;
    VZ_FAIL_IF(vz_mul_ovf((uint64_t)c->n_layers * (uint64_t)s->n_ctx, kvd, &kvn) ||
                   vz_mul_ovf(kvn, (uint64_t)(s->kv_f16 ? 2 : 4), &s->slot_bytes) ||
                   vz_mul_ovf(kvn, (uint64_t)s->n_seq, &kvn),
               VZ_ERR_NOMEM, "cuda session: KV cache size overflows (%d sequences)", (int)s->n_seq);
    VZ_TRY(vz_cs_dalloc(&s->kc, kvn, s->kv_f16 ? 2 : 4, &s->kv_bytes, "KV cache (keys)"));
    VZ_TRY(vz_cs_dalloc(&s->vc, kvn, s->kv_f16 ? 2 : 4, &s->kv_bytes, "KV cache (values)"));
    uint64_t *a = &s->scratch_bytes;
    VZ_TRY(vz_cs_dalloc((void **)&s->x, B * dim, 4, a, "x"));
    VZ_TRY(vz_cs_dalloc((void **)&s->xb, B * dim, 4, a, "xb"));
    VZ_TRY(vz_cs_dalloc((void **)&s->q, B * qd, 4, a, "q"));
    VZ_TRY(vz_cs_dalloc((void **)&s->k, B * kvd, 4, a, "k"));
    VZ_TRY(vz_cs_dalloc((void **)&s->v, B * kvd, 4, a, "v"));
    VZ_TRY(vz_cs_dalloc((void **)&s->att, B * qd, 4, a, "att"));
    VZ_TRY(vz_cs_dalloc((void **)&s->hb, B * hid, 4, a, "hb"));
    VZ_TRY(vz_cs_dalloc((void **)&s->logits, B * (uint64_t)c->vocab_size, 4, a, "logits"));
    VZ_TRY(vz_cs_dalloc((void **)&s->part, vz_att_part_floats(VZ_CUDA_MAX_BATCH, c->n_heads, c->head_dim, s->n_ctx), 4, a,
                  "attention partials"));
    VZ_TRY(vz_cs_dalloc((void **)&s->att_cnt, vz_att_counters(VZ_CUDA_MAX_BATCH, c->n_heads), 4, a, "attention counters"));
    VZ_TRY(vz_cs_dalloc((void **)&s->keys, VZ_GREEDY_SLOTS * VZ_GREEDY_STRIDE, 8, a, "greedy keys"));
    VZ_TRY(vz_cs_dalloc((void **)&s->lanes, 4 * B, 4, a, "tokens, positions, slots, steps"));
    s->tok = s->lanes, s->pos = s->lanes + B, s->slot = s->lanes + 2 * B, s->step = s->lanes + 3 * B;
    VZ_TRY(vz_cs_dalloc((void **)&s->out_ids, (uint64_t)s->n_seq * (uint64_t)s->n_ctx, 4, a, "sampled ids"));
    return VZ_OK;
}

/* Trace slot (l, block) <- the residual stream of row B-1 (eager runs only:
 * a pageable copy, never captured into a graph). */
vz_status vz_cs_trace_row(vz_cuda_session *s, int32_t l, int block, const float *x, int32_t B) {
    if (!s->trace) return VZ_OK;
    const size_t dim = (size_t)s->c.dim;
    CU_TRY(cudaMemcpyAsync(s->trace + ((size_t)l * 2 + block) * dim, x + (size_t)(B - 1) * dim,
                           sizeof(float) * dim, cudaMemcpyDeviceToHost, s->st), "trace download");
    return VZ_OK;
}

/* Sampler settings of one sequence as the graphs bake them (greedy: all zero but top_p). */
static vz_sampler_opts norm_opts(const vz_sampler_opts *so) {
    vz_sampler_opts o;
    memset(&o, 0, sizeof o);
    o.top_p = 1.0f;
    if (so->temp > 0.0f) o = *so;
    return o;
}

/* Trace builds (trace.cuh): a probe launch (vz_k_probe) after the launch
 * named by c where VZ_CUDA_TRACE_PROBE lists it: the QKV matvec (q), Wo
 * (w), down (d), the sampler (s), the embedding lookup (e). */
static void trace_probe(char c, cudaStream_t st) {
#ifdef VZ_CUDA_TRACE
    const char *pr = getenv("VZ_CUDA_TRACE_PROBE");
    if (pr && strchr(pr, c)) vz_k_probe(c, st);
#else
    (void)c, (void)st;
#endif
}

/* The output head and sampling of a step over B tokens: logits of every
 * row, then a pick from the last row (multi: from every row). At B == 1
 * the head also leaves the greedy pick in s->keys where its kernel can
 * (vz_cuda_matvec_head), and the sampler takes it from there instead of
 * scanning the logits. */
static vz_status head_and_sample(vz_cuda_session *s, int32_t B, int32_t multi) {
    const vz_config *c = &s->c;
    cudaStream_t st = s->st;
    const vz_cuda_tensor *head = s->out.data ? &s->out : &s->emb;
    const float *nw = s->norms + (size_t)(2 * c->n_layers) * c->dim;
    static int keys_on = -1; /* bench knob VZ_CUDA_HEAD_KEYS=0: the sampler scans the logits (same picks) */
    if (keys_on < 0) keys_on = !(getenv("VZ_CUDA_HEAD_KEYS") && *getenv("VZ_CUDA_HEAD_KEYS") == '0');
    int keyed = 0;
    if (keys_on && B == 1)
        VZ_TRY(vz_cuda_matvec_head(head, s->logits, s->x, B, nw, c->rms_eps, s->xb, s->keys, &keyed, st));
    else
        VZ_TRY(vz_cuda_matvec_multi_norm(1, &head, &s->logits, s->x, B, VZ_CUDA_EPI_NONE, nw, c->rms_eps, s->xb, 0, st));
    unsigned long long *keys = keyed ? s->keys : NULL;
    vz_cs_mark(s, "rmsnorm + head matvec");
    if (multi) {
        vz_k_sample(s->logits, keys, B, c->vocab_size, &s->mopts, s->tok, s->out_ids, s->step, s->pos, 1, s->n_ctx, st);
    } else {
        vz_sample_lanes one;
        memset(&one, 0, sizeof one);
        one.temp[0] = s->gopts.temp, one.top_k[0] = s->gopts.top_k, one.top_p[0] = s->gopts.top_p;
        one.seed[0] = s->gopts.seed;
        vz_k_sample(s->logits + (size_t)(B - 1) * c->vocab_size, keys, 1, c->vocab_size, &one, s->tok, s->out_ids, s->step,
                    s->pos, B, s->n_ctx, st);
    }
    vz_cs_mark(s, "sample");
    trace_probe('s', st);
    return VZ_OK;
}

/* Whether the decode attention lets the launch after it (Wo's matvec)
 * start only once its own staging is done (vz_k_attention's late) rather
 * than at its entry: for a q8 Wo, and a lossless:k4 (packed4) one at
 * batch 1 (the batch it was timed at). Wo's blocks then stream their
 * first weights beside the attention's score and V passes instead of
 * beside its loads. On an H200 (tinyllama, decode at 512-640 positions,
 * each setting for every layer, three benches each) the later start made
 * q8 1.7-1.9% faster, raw 1.8% and lossless 0.9% slower, q4 level;
 * llama2-7b's q8 and raw level (bench/results/2026-12-02-session46-
 * h200.md). lossless:k4, timed later with the same knob: +0.6-1.3%
 * on tinyllama, +0.35% on llama2-7b, while packed3 lost 1.1% (tinyllama,
 * level on llama2-7b) and raw 2.1% and 0.3% (bench/results/2026-12-04-
 * session62-h200.md, runs 6-7); as this rule, against the knob's 0, +0.9%
 * and +0.2% (five and three benches, bench/results/2026-12-04-session63-
 * h200.md). At batches of 2, 4 and 8 (tinyllama) the late trigger gave k4
 * -0.7%, 0 and +0.1%, raw and packed3 -0.5% to 0 (bench/results/2026-12-
 * 04-session64-h200.md, run 1), so they keep the early one. The logits do
 * not change. */
static int32_t att_late_for(const vz_cuda_tensor *wo, int B) {
    return wo->codec == VZ_CODEC_q8 || (B == 1 && wo->kind == VZ_CUDA_KIND_LL4);
}

/* The shared memory each decode attention block asks for at batch B
 * (vz_k_attention's room), so that its blocks spread over more SMs: at
 * batch 1 for a q8 or lossless:k4 Wo half an SM's (with the late trigger),
 * for a q4 Wo 2/7, else its own. On an H200 (tinyllama, decode at 512-640 positions,
 * three benches each) q8 ran 1.0-1.9% faster and q4 0.9%, raw and
 * lossless level (with either room in a sweep); llama2-7b's q8 level (its
 * blocks already take 81 KiB) (bench/results/2026-12-02-session47-
 * h200.md). lossless:k4, five benches each: half +1.5% on tinyllama (2/7
 * -0.7%), llama2-7b level; packed3 and raw lost 2.6% and 1.2% with half
 * (bench/results/2026-12-04-session63-h200.md). Batches of 2-8 keep their
 * own: at 2, 4 and 8 sequences (tinyllama) half a room cost raw, packed3
 * and k4 3.2-8.7%, 2/7 from +0.2% to -3.0% (bench/results/2026-12-04-
 * session64-h200.md, run 1). The logits do not change. */
static int32_t att_room_for(const vz_cuda_tensor *wo, int B) {
    return B > 1                                                      ? VZ_ATT_ROOM_OWN
           : wo->codec == VZ_CODEC_q8 || wo->kind == VZ_CUDA_KIND_LL4 ? VZ_ATT_ROOM_HALF
           : wo->codec == VZ_CODEC_q4                                 ? VZ_ATT_ROOM_THIRD
                                                                      : VZ_ATT_ROOM_OWN;
}

/* One step over B tokens at pos[0] of slot[0] (multi: [batch] token b of
 * sequence slot[b] at pos[b]): the model, top to bottom, then sampling from
 * the last row (multi: from every row). Reads like vz_forward (forward.c);
 * residual adds are the matvecs' ADD epilogue, SwiGLU the gate+up matvec's
 * epilogue. */
vz_status vz_cs_forward(vz_cuda_session *s, int32_t B, int32_t multi) {
    const vz_config *c = &s->c;
    const int32_t nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    const size_t kv_layer = vz_cs_kv_layer_bytes(s);
    const vz_att_seqs sq = {s->pos, s->slot, (int64_t)s->slot_bytes, multi};
    cudaStream_t st = s->st;
    if (s->sm) VZ_TRY(vz_stream_begin(s->sm, st)); /* [st] first streamed layer's copy starts */
    VZ_TRY(vz_cuda_rows_step(s->x, s->tok, B, &s->emb, st));
    vz_cs_mark(s, "embed");
    trace_probe('e', st);
    for (int32_t l = 0; l < c->n_layers; l++) {
        dev_layer *L = &s->L[l];
        vz_cuda_tensor *const lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        if (s->sm) VZ_TRY(vz_stream_acquire(s->sm, l, lw, st)); /* [st] streamed: its slot, copied */
        char *kc = (char *)s->kc + kv_layer * l, *vc = (char *)s->vc + kv_layer * l;
        /* attention: x += Wo attention(rope(Wq xb), rope(Wk xb), Wv xb), xb = norm(x) */
        const vz_cuda_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_out[3] = {s->q, s->k, s->v};
        VZ_TRY(vz_cuda_matvec_multi_norm(3, qkv, qkv_out, s->x, B, VZ_CUDA_EPI_NONE, L->attn_norm, c->rms_eps, s->xb,
                                         1, st)); /* late: the attention reads the caches before its wait */
        vz_cs_mark(s, "rmsnorm + qkv matvec");
        trace_probe('q', st);
        vz_k_attention(s->att, s->q, s->k, s->v, kc, vc, s->part, s->att_cnt, &sq, B, nh, nkv, hd, s->n_ctx,
                       s->kv_f16, c->rope_theta, s->rope_freq, c->rope_interleaved, L->bqkv, s->att_chunk,
                       s->att_variant, s->att_linger,
                       s->att_late >= 0 ? s->att_late : att_late_for(&L->wo, B),
                       s->att_room >= 0 ? s->att_room : att_room_for(&L->wo, B), st);
        vz_cs_mark(s, "rope + kv store + attention");
        const vz_cuda_tensor *wo = &L->wo;
        VZ_TRY(vz_cuda_matvec_multi(1, &wo, &s->x, s->att, B, VZ_CUDA_EPI_ADD, st));
        vz_cs_mark(s, "wo matvec + add");
        trace_probe('w', st);
        VZ_TRY(vz_cs_trace_row(s, l, 0, s->x, B));
        /* MLP: x += W2 (silu(W1 xb) * W3 xb), xb = norm(x) */
        const vz_cuda_tensor *gu[2] = {&L->w1, &L->w3};
        float *const gu_out[2] = {s->hb, s->hb};
        VZ_TRY(vz_cuda_matvec_multi_norm(2, gu, gu_out, s->x, B, VZ_CUDA_EPI_SILU_MUL, L->ffn_norm, c->rms_eps, s->xb, 0,
                                         st));
        vz_cs_mark(s, "rmsnorm + gate/up matvec + silu");
        const vz_cuda_tensor *w2 = &L->w2;
        VZ_TRY(vz_cuda_matvec_multi(1, &w2, &s->x, s->hb, B, VZ_CUDA_EPI_ADD, st));
        vz_cs_mark(s, "down matvec + add");
        trace_probe('d', st);
        VZ_TRY(vz_cs_trace_row(s, l, 1, s->x, B));
        if (s->sm) VZ_TRY(vz_stream_release(s->sm, l, st));
    }
    return head_and_sample(s, B, multi);
}

/* Captures `steps` decode steps of B tokens (multi: of B sequences) into *out. */
static vz_status capture(vz_cuda_session *s, int32_t B, int32_t multi, int32_t steps, cudaGraphExec_t *out) {
    cudaGraph_t g = NULL;
    CU_TRY(cudaStreamBeginCapture(s->st, cudaStreamCaptureModeThreadLocal), "begin graph capture");
    vz_status fst = VZ_OK;
    for (int k = 0; k < steps && fst == VZ_OK; k++) fst = vz_cs_forward(s, B, multi);
    cudaError_t ce = cudaStreamEndCapture(s->st, &g);
    if (fst != VZ_OK) {
        if (g) cudaGraphDestroy(g);
        return fst;
    }
    CU_TRY(ce, "end graph capture");
    cudaError_t e = cudaGraphInstantiate(out, g, 0);
    cudaGraphDestroy(g);
    CU_TRY(e, "graph instantiate");
    note_mem(s);
    return VZ_OK;
}

/* graph[B], captured on first use (and again for B = 0, 1 when the sampler
 * changes); graph[0] chains DECODE_STEPS one-token steps, each feeding the
 * next through the sampled token in device memory. */
vz_status vz_cs_get_graph(vz_cuda_session *s, int32_t B, cudaGraphExec_t *out) {
    if (!s->graph[B]) VZ_TRY(capture(s, B ? B : 1, 0, B ? 1 : DECODE_STEPS, &s->graph[B]));
    *out = s->graph[B];
    return VZ_OK;
}

/* [st] Runs graph[B] (B = 0: DECODE_STEPS one-token steps; [batch] multi:
 * mgraph[B][chain], DECODE_STEPS steps of B sequences when chain), or the
 * same steps eagerly when the session's layer cache cannot be captured;
 * counts the bytes streamed. */
static vz_status run_steps_m(vz_cuda_session *s, int32_t B, int32_t multi, int32_t chain) {
    const int32_t steps = (multi ? chain : !B) ? DECODE_STEPS : 1, Bs = B ? B : 1;
    /* eager: a traced run (its copies go to pageable memory) or a stream mode no graph can hold */
    if (s->trace || (s->sm && !vz_stream_graphable(s->sm))) {
        for (int32_t k = 0; k < steps; k++) VZ_TRY(vz_cs_forward(s, Bs, multi));
        return VZ_OK;
    }
    cudaGraphExec_t g;
    if (!multi) VZ_TRY(vz_cs_get_graph(s, B, &g));
    else {
        if (!s->mgraph[B][chain]) VZ_TRY(capture(s, B, 1, steps, &s->mgraph[B][chain]));
        g = s->mgraph[B][chain];
    }
    CU_TRY(cudaGraphLaunch(g, s->st), "graph launch");
    if (s->sm) s->h2d += (uint64_t)steps * vz_stream_step_bytes(s->sm);
    return VZ_OK;
}

static vz_status run_steps(vz_cuda_session *s, int32_t B) { return run_steps_m(s, B, 0, 0); }

/* [batch] Uploads the lane state: tokens tok[0..ntok), positions and slots
 * of nl lanes, steps 0. Pageable source: staged when cudaMemcpyAsync returns. */
static vz_status put_lanes(vz_cuda_session *s, const int32_t *tok, int32_t ntok, const int32_t *pos,
                           const int32_t *slot, int32_t nl) {
    int32_t h[4 * VZ_CUDA_MAX_BATCH];
    memset(h, 0, sizeof h);
    memcpy(h, tok, sizeof(int32_t) * (size_t)ntok);
    memcpy(h + VZ_CUDA_MAX_BATCH, pos, sizeof(int32_t) * (size_t)nl);
    memcpy(h + 2 * VZ_CUDA_MAX_BATCH, slot, sizeof(int32_t) * (size_t)nl);
    CU_TRY(cudaMemcpyAsync(s->lanes, h, sizeof h, cudaMemcpyHostToDevice, s->st), "lane upload");
    return VZ_OK;
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
                                                 int32_t n_seq, int32_t kv_f16, int32_t residency,
                                                 int32_t n_resident) {
    VZ_FAIL_IF(!out || !m || n_ctx < 1, VZ_ERR_ARG, "vz_cuda_session_create_plan: bad arguments");
    VZ_FAIL_IF(n_seq < 1 || n_seq > VZ_CUDA_MAX_BATCH, VZ_ERR_ARG, "cuda session: %d sequences outside [1, %d]",
               (int)n_seq, VZ_CUDA_MAX_BATCH);
    *out = NULL;
    VZ_FAIL_IF(vz_cuda_device_count() < 1, VZ_ERR_CUDA, "device cuda: no CUDA device found");
    VZ_FAIL_IF(m->cfg.head_dim > 128 || m->cfg.head_dim % 8 != 0, VZ_ERR_UNSUPPORTED,
               "device cuda: head_dim %d is not a multiple of 8 in [8, 128]", (int)m->cfg.head_dim);
    VZ_FAIL_IF(n_resident < (residency == VZ_RESIDENCY_CACHE) || n_resident > m->cfg.n_layers, VZ_ERR_ARG,
               "vz_cuda_session_create_plan: %d resident layers of %d", (int)n_resident, (int)m->cfg.n_layers);
    vz_cuda_session *s = (vz_cuda_session *)calloc(1, sizeof *s);
    VZ_FAIL_IF(!s, VZ_ERR_NOMEM, "cuda session: out of memory");
    s->c = m->cfg;
    s->n_ctx = n_ctx;
    s->n_seq = n_seq;
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
    const char *mv = getenv("VZ_CUDA_MV"); /* bench: matvec variant flags (cuda.h), process-wide; TC acts at upload */
    if (mv && *mv >= '0' && *mv <= '9') vz_cuda_matvec_variant(atoi(mv));
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
    const char *pe = getenv("VZ_CUDA_PREFILL"); /* 0: matvec path (the old one), A / B: force a GEMM path */
    s->pf.mode = !pe || !*pe ? VZ_GEMM_AUTO : *pe == '0' ? -1 : *pe == 'A' ? VZ_GEMM_A : *pe == 'B' ? VZ_GEMM_B
                                                                                                  : VZ_GEMM_AUTO;
    const char *gp = getenv("VZ_CUDA_GEMM_PIPE"); /* bench, tests: gemm.h VZ_GEMM_* flags, process-wide (3: the path before) */
    vz_gemm_pipe_flags(gp && *gp >= '0' && *gp <= '9' ? atoi(gp) : 0);
    const char *pn = getenv("VZ_CUDA_PF_NORM"); /* bench: prefill RMSNorm / SwiGLU kernels (prefill.h), process-wide */
    if (pn && *pn >= '0' && *pn <= '2' && !pn[1]) vz_pf_norm_variant(*pn - '0');
    const char *ch = getenv("VZ_CUDA_ATT_CHUNK"); /* bench: keys per attention block */
    s->att_chunk = ch && atoi(ch) >= VZ_ATT_CHUNK_MIN && atoi(ch) <= VZ_ATT_CHUNK ? atoi(ch) : 0; /* 0: the variant's */
    const char *av = getenv("VZ_CUDA_ATT"); /* bench: attention variant (forward.cuh; 2 is wrong by design) */
    s->att_variant = av && atoi(av) > 0 && atoi(av) < vz_att_n_variants() ? atoi(av) : 0;
    const char *al = getenv("VZ_CUDA_ATT_LINGER"); /* bench: 1 as before session 45 (forward.cu, k_attention_cl) */
    s->att_linger = al && *al == '1';
    const char *ae = getenv("VZ_CUDA_ATT_LATE"); /* bench: 0 or 1 for every layer (else att_late_for) */
    s->att_late = ae && (*ae == '0' || *ae == '1') ? *ae - '0' : -1;
    const char *ar = getenv("VZ_CUDA_ATT_ROOM"); /* bench: 0, 1 or 2 for every layer (else att_room_for) */
    s->att_room = ar && *ar >= '0' && *ar <= '2' && !ar[1] ? *ar - '0' : -1;
    *out = s;
    return VZ_OK;
}

extern "C" void vz_cuda_session_free(vz_cuda_session *s) {
    if (!s) return;
    if (s->st) cudaStreamSynchronize(s->st);
    for (int b = 0; b <= VZ_CUDA_MAX_BATCH; b++) {
        if (s->graph[b]) cudaGraphExecDestroy(s->graph[b]);
        for (int k = 0; k < 2; k++)
            if (s->mgraph[b][k]) cudaGraphExecDestroy(s->mgraph[b][k]);
    }
    vz_stream_free(s->sm);
    if (s->L) {
        for (int32_t l = 0; l < s->n_res; l++) { /* streamed layers point into stream slots */
            dev_layer *d = &s->L[l];
            vz_cuda_tensor *w[7] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w1, &d->w2, &d->w3};
            for (int i = 0; i < 7; i++) vz_cuda_tensor_free(w[i]);
        }
        free(s->L);
    }
    vz_cs_prefill_free(s);
    vz_cuda_tensor_free(&s->emb);
    vz_cuda_tensor_free(&s->out);
    cudaFree(s->arena);
    void *bufs[] = {s->norms, s->kc, s->vc, s->x, s->xb, s->q, s->k, s->v, s->att, s->hb, s->logits, s->part, s->att_cnt, s->keys, s->lanes, s->out_ids};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    if (s->st) cudaStreamDestroy(s->st);
    free(s);
}

vz_status vz_cs_finish(vz_cuda_session *s) {
    CU_TRY(cudaStreamSynchronize(s->st), "forward pass");
    CU_TRY(cudaGetLastError(), "kernel launch");
    note_mem(s);
    return VZ_OK;
}

extern "C" vz_status vz_cuda_session_eval(vz_cuda_session *s, int32_t seq, const int32_t *tokens, int32_t n,
                                          int32_t pos, float *logits, int32_t all_logits) {
    VZ_FAIL_IF(!s || n < 0 || pos < 0 || pos + n > s->n_ctx || seq < 0 || seq >= s->n_seq, VZ_ERR_ARG,
               "cuda eval: bad arguments");
    const size_t vocab = (size_t)s->c.vocab_size;
    s->cur_slot = seq;
    if (n > VZ_CUDA_MAX_BATCH) {
        int done;
        VZ_TRY(vz_cs_prefill_eval(s, tokens, n, pos, logits, all_logits, &done));
        if (done) return VZ_OK;
    }
    if (n > 0) VZ_TRY(put_lanes(s, tokens, n < VZ_CUDA_MAX_BATCH ? n : VZ_CUDA_MAX_BATCH, &pos, &seq, 1));
    for (int32_t b0 = 0; b0 < n; b0 += VZ_CUDA_MAX_BATCH) {
        int32_t B = n - b0 < VZ_CUDA_MAX_BATCH ? n - b0 : VZ_CUDA_MAX_BATCH;
        if (b0 > 0) /* pageable source: cudaMemcpyAsync has staged it when it returns */
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
    return vz_cs_finish(s);
}

extern "C" vz_status vz_cuda_session_generate(vz_cuda_session *s, int32_t seq, int32_t first, int32_t pos, int32_t n,
                                              const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !so || !out || n < 0 || pos < 0 || pos + n > s->n_ctx || seq < 0 || seq >= s->n_seq, VZ_ERR_ARG,
               "cuda generate: bad arguments");
    if (n == 0) return VZ_OK;
    const vz_sampler_opts o = norm_opts(so);
    /* field by field: memcmp would read the struct's padding and recapture every call */
    if (o.temp != s->gopts.temp || o.top_k != s->gopts.top_k || o.top_p != s->gopts.top_p || o.seed != s->gopts.seed)
        for (int b = 0; b < 2; b++)
            if (s->graph[b]) {
                cudaGraphExecDestroy(s->graph[b]);
                s->graph[b] = NULL;
            }
    s->gopts = o;
    VZ_TRY(put_lanes(s, &first, 1, &pos, &seq, 1));
    int32_t i = 0;
    for (; i + DECODE_STEPS <= n; i += DECODE_STEPS) VZ_TRY(run_steps(s, 0));
    for (; i < n; i++) VZ_TRY(run_steps(s, 1));
    CU_TRY(cudaMemcpyAsync(out, s->out_ids, sizeof(int32_t) * (size_t)n, cudaMemcpyDeviceToHost, s->st),
           "token download");
    VZ_TRY(vz_cs_finish(s));
    const char *pe = getenv("VZ_CUDA_PROFILE");
    if (pe && *pe == '1' && n >= 64 && pos + n + 4 * DECODE_STEPS + 1 < s->n_ctx && (!s->sm || vz_stream_graphable(s->sm)))
        vz_cs_profile(s, pos + n);
    return VZ_OK;
}

/* [batch] B lanes: distinct slots in [0, n_seq), each with room for n more positions. */
static vz_status check_lanes(const vz_cuda_session *s, int32_t B, const int32_t *seqs, const int32_t *pos,
                             int32_t n) {
    VZ_FAIL_IF(B < 1 || B > s->n_seq || !seqs || !pos || n < 0, VZ_ERR_ARG,
               "cuda batch: %d sequences of a session of %d", (int)B, (int)s->n_seq);
    for (int32_t b = 0; b < B; b++) {
        VZ_FAIL_IF(seqs[b] < 0 || seqs[b] >= s->n_seq, VZ_ERR_ARG, "cuda batch: sequence %d outside [0, %d)",
                   (int)seqs[b], (int)s->n_seq);
        VZ_FAIL_IF(pos[b] < 0 || pos[b] + n > s->n_ctx, VZ_ERR_ARG, "cuda batch: sequence %d at %d + %d > n_ctx %d",
                   (int)seqs[b], (int)pos[b], (int)n, (int)s->n_ctx);
        for (int32_t c = 0; c < b; c++)
            VZ_FAIL_IF(seqs[c] == seqs[b], VZ_ERR_ARG, "cuda batch: sequence %d given twice", (int)seqs[b]);
    }
    return VZ_OK;
}

extern "C" vz_status vz_cuda_session_step_batch(vz_cuda_session *s, int32_t B, const int32_t *seqs,
                                                const int32_t *tokens, const int32_t *pos, float *logits) {
    VZ_FAIL_IF(!s || !tokens, VZ_ERR_ARG, "cuda batch step: NULL argument");
    VZ_TRY(check_lanes(s, B, seqs, pos, 1));
    VZ_TRY(put_lanes(s, tokens, B, pos, seqs, B));
    VZ_TRY(run_steps_m(s, B, 1, 0));
    if (logits)
        CU_TRY(cudaMemcpyAsync(logits, s->logits, sizeof(float) * (size_t)s->c.vocab_size * (size_t)B,
                               cudaMemcpyDeviceToHost, s->st), "logits download");
    return vz_cs_finish(s);
}

extern "C" vz_status vz_cuda_session_generate_batch(vz_cuda_session *s, int32_t B, const int32_t *seqs,
                                                    const int32_t *first, const int32_t *pos, int32_t n,
                                                    const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !first || !so || (n > 0 && !out), VZ_ERR_ARG, "cuda batch generate: NULL argument");
    VZ_TRY(check_lanes(s, B, seqs, pos, n));
    if (n == 0) return VZ_OK;
    vz_sample_lanes p;
    memset(&p, 0, sizeof p); /* no padding: 3 x 32 bytes, then 8-byte seeds */
    for (int32_t b = 0; b < B; b++) {
        const vz_sampler_opts o = norm_opts(&so[b]);
        p.temp[b] = o.temp, p.top_k[b] = o.top_k, p.top_p[b] = o.top_p, p.seed[b] = o.seed;
    }
    if (memcmp(&p, &s->mopts, sizeof p) != 0)
        for (int b = 0; b <= VZ_CUDA_MAX_BATCH; b++)
            for (int k = 0; k < 2; k++)
                if (s->mgraph[b][k]) {
                    cudaGraphExecDestroy(s->mgraph[b][k]);
                    s->mgraph[b][k] = NULL;
                }
    s->mopts = p;
    VZ_TRY(put_lanes(s, first, B, pos, seqs, B));
    int32_t i = 0;
    for (; i + DECODE_STEPS <= n; i += DECODE_STEPS) VZ_TRY(run_steps_m(s, B, 1, 1));
    for (; i < n; i++) VZ_TRY(run_steps_m(s, B, 1, 0));
    CU_TRY(cudaMemcpy2DAsync(out, sizeof(int32_t) * (size_t)n, s->out_ids, sizeof(int32_t) * (size_t)s->n_ctx,
                             sizeof(int32_t) * (size_t)n, (size_t)B, cudaMemcpyDeviceToHost, s->st),
           "token download");
    return vz_cs_finish(s);
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
