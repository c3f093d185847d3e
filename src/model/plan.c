/*
 * plan.c - the VRAM residency planner (plan.h, vz_session_plan in
 * vramzip.h): device bytes of a CUDA session part by part, mirroring the
 * allocations of src/backend/cuda/session_cuda.cu (upload_weights,
 * alloc_state), the choice of resident and streamed layers under a budget,
 * and a refusal that names the bytes needed and what would fit instead.
 */
#include "model/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "model/lmax_pack.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#define MIB (1024.0 * 1024.0)

uint64_t vz_plan_dev_round(uint64_t n) {
    const uint64_t big = (uint64_t)2 << 20;
    if (n >= ((uint64_t)1 << 20)) return n > UINT64_MAX - big ? UINT64_MAX : (n + big - 1) / big * big;
    return (n + 511) / 512 * 512;
}

uint64_t vz_plan_kv_bytes(const vz_config *c, int32_t n_ctx, int32_t n_seq, int32_t kv_f16) {
    uint64_t one = (uint64_t)c->n_layers * (uint64_t)n_ctx * (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim *
                   (kv_f16 ? 2u : 4u);
    return 2 * vz_plan_dev_round(one * (uint64_t)(n_seq > 1 ? n_seq : 1));
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

uint64_t vz_plan_gemm_scratch_elems(const vz_config *c) {
    const uint64_t dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim, hid = (uint64_t)c->hidden_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd;
    const uint64_t sc = max_u64(max_u64((qd + 2 * kvd) * dim, qd * dim), 2 * hid * dim); /* QKV, Wo, gate + up */
    return sc < (uint64_t)VZ_PLAN_GEMM_SCRATCH ? sc : (uint64_t)VZ_PLAN_GEMM_SCRATCH;
}

uint64_t vz_plan_prefill_bytes(const vz_config *c, int32_t n_ctx) {
    const uint64_t dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim, hid = (uint64_t)c->hidden_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd;
    const uint64_t cap = (uint64_t)n_ctx < VZ_PLAN_PREFILL_CAP ? (uint64_t)n_ctx : VZ_PLAN_PREFILL_CAP;
    const uint64_t lr = cap < VZ_PLAN_PREFILL_LOGIT_ROWS ? cap : VZ_PLAN_PREFILL_LOGIT_ROWS;
    const uint64_t sc = vz_plan_gemm_scratch_elems(c);
    const uint64_t sizes[] = {sc * 2, VZ_PLAN_GEMM_WORKSPACE, cap * dim * 4, cap * max_u64(qd + 2 * kvd, 2 * hid) * 4,
                              cap * max_u64(max_u64(dim, qd), hid) * 2, cap * 4, lr * (uint64_t)c->vocab_size * 4};
    uint64_t sum = VZ_PLAN_CUBLAS;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) sum += vz_plan_dev_round(sizes[i]);
    return sum;
}

uint64_t vz_plan_scratch_bytes(const vz_config *c, int32_t n_ctx, int32_t n_seq) {
    const uint64_t B = VZ_PLAN_BATCH, dim = (uint64_t)c->dim, hd = (uint64_t)c->head_dim;
    const uint64_t qd = (uint64_t)c->n_heads * hd, kvd = (uint64_t)c->n_kv_heads * hd;
    const uint64_t chunks = ((uint64_t)n_ctx + 31) / 32; /* VZ_ATT_CHUNK_MIN */
    const uint64_t sizes[] = {B * dim * 4, B * dim * 4, B * qd * 4, B * kvd * 4, B * kvd * 4, B * qd * 4,
                              B * (uint64_t)c->hidden_dim * 4, B * (uint64_t)c->vocab_size * 4,
                              B * (uint64_t)c->n_heads * chunks * (hd + 2) * 4, B * (uint64_t)c->n_heads * 4,
                              4 * B * 4, (uint64_t)(n_seq > 1 ? n_seq : 1) * (uint64_t)n_ctx * 4};
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) sum += vz_plan_dev_round(sizes[i]);
    return sum + vz_plan_prefill_bytes(c, n_ctx);
}

static uint64_t al256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Device bytes of a rows x cols tensor under codec id (see plan.h). */
static uint64_t shape_tensor_bytes(int codec_id, vz_dtype dt, uint64_t rows, uint64_t cols, int arena) {
    const uint64_t n = rows * cols;
    uint64_t b = n * (uint64_t)vz_dtype_size(dt);
    if (codec_id == VZ_CODEC_q8) b = ((n + 15) & ~(uint64_t)15) + rows * ((cols + 127) / 128) * 2;
    if (codec_id == VZ_CODEC_q4) b = ((rows * ((cols + 1) / 2) + 15) & ~(uint64_t)15) + rows * ((cols + 31) / 32) * 2;
    return arena ? al256(b) : vz_plan_dev_round(b);
}

uint64_t vz_plan_small_floats(const vz_config *c) {
    const uint64_t nl = (uint64_t)c->n_layers, hd = (uint64_t)c->head_dim;
    const uint64_t qkv = ((uint64_t)c->n_heads + 2 * (uint64_t)c->n_kv_heads) * hd;
    return (uint64_t)c->dim * (2 * nl + 1) + (c->qkv_bias ? nl * qkv : 0) +
           (c->rope_scaling.type != VZ_ROPE_NONE ? hd / 2 : 0);
}

void vz_plan_shape_bytes(const vz_config *c, int codec_id, vz_dtype dt, int arena, uint64_t *layer,
                         uint64_t *global) {
    const uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden_dim;
    const uint64_t qd = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    const uint64_t kvd = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    *layer = shape_tensor_bytes(codec_id, dt, qd, d, arena) + 2 * shape_tensor_bytes(codec_id, dt, kvd, d, arena) +
             shape_tensor_bytes(codec_id, dt, d, qd, arena) + 2 * shape_tensor_bytes(codec_id, dt, h, d, arena) +
             shape_tensor_bytes(codec_id, dt, d, h, arena);
    uint64_t emb = shape_tensor_bytes(codec_id, dt, (uint64_t)c->vocab_size, d, arena);
    *global = emb * (c->tied_embeddings ? 1 : 2) + vz_plan_dev_round(vz_plan_small_floats(c) * 4) +
              (arena ? VZ_PLAN_ARENA_SLACK : 0);
}

static uint64_t stream_of(const vz_plan_in *in, int32_t l) {
    return in->stream_bytes ? in->stream_bytes[l] : in->layer_bytes[l];
}

static uint64_t decoded_of(const vz_plan_in *in, int32_t l) { return in->decoded_bytes ? in->decoded_bytes[l] : 0; }

/* residency cache (plan.h): as many decoded-layer slots as fit beside two
 * staging slots and the decode temporaries. */
static void plan_cache(const vz_plan_in *in, vz_plan *p, uint64_t fixed) {
    const vz_config *c = in->c;
    const int32_t nl = c->n_layers;
    uint64_t maxd = 0, maxs = 0, str = 0;
    for (int32_t l = 0; l < nl; l++) {
        if (in->layer_bytes[l] > maxd) maxd = in->layer_bytes[l];
        if (stream_of(in, l) > maxs) maxs = stream_of(in, l);
        str += stream_of(in, l);
    }
    int32_t rows = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    if (c->n_heads * c->head_dim > rows) rows = c->n_heads * c->head_dim;
    const uint64_t buf = 2 * maxs + vz_plan_dev_round(VZ_PLAN_DECODE_TMP) + vz_plan_dev_round((uint64_t)rows * 4);
    int64_t k = nl;
    if (in->budget) {
        k = in->budget > fixed + buf && maxd ? (int64_t)((in->budget - fixed - buf) / maxd) : 0;
        if (k > nl) k = nl;
    }
    p->full_bytes = fixed + buf + (uint64_t)nl * maxd;
    p->min_bytes = fixed + buf + maxd;
    p->n_resident = (int32_t)(k > 0 ? k : 1), p->n_streamed = nl - p->n_resident;
    p->resident_bytes = (uint64_t)p->n_resident * maxd, p->streamed_bytes = str, p->stream_buf_bytes = buf;
    p->total_bytes = fixed + p->resident_bytes + buf;
    p->fits = in->budget == 0 || p->total_bytes <= in->budget;
}

/* Fills the part figures and the layer split of in into *p (no advice). */
static void plan_split(const vz_plan_in *in, vz_plan *p) {
    const int32_t nl = in->c->n_layers;
    memset(p, 0, sizeof *p);
    p->residency = in->residency;
    p->n_layers = nl;
    p->budget = in->budget;
    p->budget_is_free = in->budget_is_free;
    p->global_bytes = in->global_bytes;
    p->kv_bytes = vz_plan_kv_bytes(in->c, in->n_ctx, in->n_seq, in->kv_f16);
    p->scratch_bytes = vz_plan_scratch_bytes(in->c, in->n_ctx, in->n_seq);
    p->reserve_bytes = VZ_PLAN_RESERVE;
    const uint64_t fixed = p->global_bytes + p->kv_bytes + p->scratch_bytes + p->reserve_bytes;
    if (in->residency == VZ_RESIDENCY_CACHE) {
        plan_cache(in, p, fixed);
        return;
    }
    uint64_t all = 0, maxs = 0, maxd = 0;
    for (int32_t l = 0; l < nl; l++) {
        all += in->layer_bytes[l];
        if (stream_of(in, l) > maxs) maxs = stream_of(in, l);
        if (decoded_of(in, l) > maxd) maxd = decoded_of(in, l);
    }
    p->full_bytes = fixed + all;
    p->min_bytes = fixed + 2 * maxs + maxd;
    /* k resident layers (a prefix), the rest streamed through two buffers */
    int32_t k = nl;
    uint64_t res = all, str = 0, smax = 0, dmax = 0, tot = p->full_bytes;
    if (in->stream_ok && in->budget && p->full_bytes > in->budget) {
        for (k = nl - 1; k >= 0; k--) {
            res = str = smax = dmax = 0;
            for (int32_t l = 0; l < nl; l++) {
                if (l < k) res += in->layer_bytes[l];
                else str += stream_of(in, l), smax = stream_of(in, l) > smax ? stream_of(in, l) : smax;
                if (l >= k && decoded_of(in, l) > dmax) dmax = decoded_of(in, l);
            }
            tot = fixed + res + 2 * smax + dmax;
            if (tot <= in->budget) break;
        }
        if (k < 0) k = 0; /* nothing fits: report the all-streamed minimum */
    }
    p->n_resident = k, p->n_streamed = nl - k;
    p->resident_bytes = res, p->streamed_bytes = str, p->stream_buf_bytes = 2 * smax + dmax;
    p->total_bytes = tot;
    p->fits = in->budget == 0 || tot <= in->budget;
}

/* Largest context < in->n_ctx (at least 16) under which in fits; 0: none. */
static int32_t fitting_ctx(const vz_plan_in *in) {
    vz_plan_in t = *in;
    vz_plan p;
    int32_t lo = 16, hi = in->n_ctx - 1, best = 0;
    while (lo <= hi) {
        int32_t mid = lo + (hi - lo) / 2;
        t.n_ctx = mid;
        plan_split(&t, &p);
        if (p.fits) best = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    return best;
}

/* Appends "; converting to <name> ..." when that codec would shrink the weights. */
static void advise_codec(const vz_plan_in *in, const vz_plan *cur, int codec_id, const char *name, char *buf,
                         size_t cap) {
    uint64_t lb, gb, cur_w = cur->global_bytes;
    for (int32_t l = 0; l < in->c->n_layers; l++) cur_w += in->layer_bytes[l];
    vz_plan_shape_bytes(in->c, codec_id, VZ_DTYPE_BF16, 1, &lb, &gb);
    uint64_t w = gb + lb * (uint64_t)in->c->n_layers;
    if (w >= cur_w) return;
    uint64_t *layers = malloc(sizeof(uint64_t) * (size_t)in->c->n_layers);
    if (!layers) return;
    for (int32_t l = 0; l < in->c->n_layers; l++) layers[l] = lb;
    vz_plan_in t = *in;
    t.layer_bytes = layers, t.stream_bytes = NULL, t.global_bytes = gb, t.residency = VZ_RESIDENCY_COMPRESSED;
    vz_plan p;
    plan_split(&t, &p);
    free(layers);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "; `vramzip convert --codec %s` (weights %.0f MiB) would need %.0f MiB%s", name,
             (double)w / MIB, (double)p.total_bytes / MIB, p.fits ? " and fit" : ", still too much");
}

/* [batch] Appends "; N sequences" (the most below in->n_seq that fit), if any. */
static void advise_seqs(const vz_plan_in *in, char *buf, size_t cap) {
    vz_plan_in t = *in;
    vz_plan p;
    for (t.n_seq = in->n_seq - 1; t.n_seq >= 1; t.n_seq--) {
        plan_split(&t, &p);
        if (p.fits) break;
    }
    size_t n = strlen(buf);
    if (t.n_seq >= 1) snprintf(buf + n, cap - n, "; %d sequence%s at once", (int)t.n_seq, t.n_seq > 1 ? "s" : "");
}

void vz_plan_make(const vz_plan_in *in, vz_plan *out) {
    plan_split(in, out);
    if (out->fits) return;
    char *a = out->advice, seqs[48] = "";
    const size_t cap = sizeof out->advice;
    if (in->n_seq > 1) snprintf(seqs, sizeof seqs, " for %d sequences", (int)in->n_seq);
    snprintf(a, cap,
             "needs %.0f MiB of VRAM (weights %.0f resident + %.0f always-resident embedding/head/norms%s, KV "
             "cache %.0f%s, scratch %.0f, reserve %.0f) but %s is %.0f MiB; would fit: ",
             (double)out->total_bytes / MIB, (double)(out->resident_bytes + out->stream_buf_bytes) / MIB,
             (double)out->global_bytes / MIB, out->n_streamed ? " incl. 2 stream buffers" : "",
             (double)out->kv_bytes / MIB, seqs, (double)out->scratch_bytes / MIB, (double)out->reserve_bytes / MIB,
             in->budget_is_free ? "the free VRAM" : "the budget", (double)in->budget / MIB);
    int32_t nc = fitting_ctx(in);
    size_t n = strlen(a);
    if (nc > 0) snprintf(a + n, cap - n, "a context of -c %d", (int)nc);
    else snprintf(a + n, cap - n, "no smaller context");
    if (in->n_seq > 1) advise_seqs(in, a, cap);
    if (!in->kv_f16) {
        vz_plan_in t = *in;
        vz_plan p;
        t.kv_f16 = 1;
        plan_split(&t, &p);
        n = strlen(a);
        if (p.fits) snprintf(a + n, cap - n, "; --kv f16 (KV cache %.0f MiB)", (double)p.kv_bytes / MIB);
    }
    advise_codec(in, out, VZ_CODEC_q8, "q8", a, cap);
    advise_codec(in, out, VZ_CODEC_q4, "q4", a, cap);
    n = strlen(a);
    snprintf(a + n, cap - n, "; or a budget of --vram-budget %.0fM", (double)out->total_bytes / MIB + 1.0);
}

vz_dtype vz_plan_decoded_dtype(const vz_tensor *t) {
    const vz_codec *cd = vz_codec_by_id(t->codec);
    return t->codec == VZ_CODEC_raw || (cd && cd->lossless) ? t->dtype : VZ_DTYPE_F32;
}

static uint64_t al(uint64_t x) { return (x + VZ_PLAN_ALIGN - 1) / VZ_PLAN_ALIGN * VZ_PLAN_ALIGN; }

uint64_t vz_plan_layer_pack(const vz_layer *L, int decoded, uint64_t off[14]) {
    const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
    uint64_t o = 0;
    for (int i = 0; i < 7; i++) {
        const vz_tensor *t = ts[i];
        off[i] = o;
        if (decoded) o = al(o + (uint64_t)t->rows * (uint64_t)t->cols * vz_dtype_size(vz_plan_decoded_dtype(t)));
        else o = al(o + t->size);
        off[7 + i] = o;
        if (!decoded && t->codec == VZ_CODEC_lossless && t->params && t->params_size >= 2 && t->params[1] < 32)
            o = al(o + ((uint64_t)1 << t->params[1]));
    }
    return o;
}

uint64_t vz_plan_tensor_bytes(const vz_tensor *t) {
    uint64_t b = al256(t->size);
    if (t->codec == VZ_CODEC_lossless && t->params && t->params_size >= 2 && t->params[1] < 32)
        b += al256((uint64_t)1 << t->params[1]); /* the code lut */
    return b;
}

/* Device bytes of tensor t as the session would hold it: decompress-at-load
 * allocates each tensor; otherwise the resident encoded tensors share one
 * allocation in 256-byte slices (vz_plan_tensor_bytes; the allocation's one
 * rounding is VZ_PLAN_ARENA_SLACK in the global bytes). */
static uint64_t tensor_dev_bytes(const vz_tensor *t, vz_residency r) {
    const uint64_t n = (uint64_t)t->rows * (uint64_t)t->cols;
    if (r == VZ_RESIDENCY_DECOMPRESS)
        return vz_plan_dev_round(t->codec == VZ_CODEC_raw ? t->size : n * (uint64_t)vz_dtype_size(vz_plan_decoded_dtype(t)));
    return vz_plan_tensor_bytes(t);
}

vz_status vz_session_plan(const vz_model *m, const vz_session_opts *opts, vz_plan *out) {
    return vz_plan_session(m, opts, 1, out);
}

vz_status vz_plan_session(const vz_model *m, const vz_session_opts *opts, int32_t stream_ok, vz_plan *out) {
    VZ_FAIL_IF(!m || !out, VZ_ERR_ARG, "vz_session_plan: NULL argument");
    memset(out, 0, sizeof *out);
    vz_session_opts def;
    if (!opts) {
        vz_session_opts_default(&def);
        opts = &def;
    }
    VZ_FAIL_IF(opts->residency < VZ_RESIDENCY_COMPRESSED || opts->residency > VZ_RESIDENCY_CACHE, VZ_ERR_ARG,
               "session: unknown residency %d", (int)opts->residency);
    VZ_FAIL_IF(opts->n_ctx < 0 || opts->n_ctx > m->cfg.max_seq_len, VZ_ERR_ARG,
               "session: n_ctx %d outside [0, %d]", (int)opts->n_ctx, (int)m->cfg.max_seq_len);
    VZ_FAIL_IF(opts->n_seq < 0 || opts->n_seq > VZ_MAX_SEQ, VZ_ERR_ARG, "session: n_seq %d outside [0, %d]",
               (int)opts->n_seq, VZ_MAX_SEQ);
    const vz_config *c = &m->cfg;
    int32_t lmax = 0;
    VZ_TRY(vz_lmax_transport(m, opts->residency, &lmax));
    uint64_t *layers = calloc(3 * (size_t)c->n_layers, sizeof(uint64_t)), *stream = layers + c->n_layers;
    uint64_t *decoded = stream + c->n_layers;
    VZ_FAIL_IF(!layers, VZ_ERR_NOMEM, "plan: out of memory");
    const vz_residency held = opts->residency == VZ_RESIDENCY_CACHE ? VZ_RESIDENCY_COMPRESSED : opts->residency;
    uint64_t off[14];
    for (int32_t l = 0; l < c->n_layers; l++) {
        const vz_layer *L = &m->layers[l];
        const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
        for (int i = 0; i < 7; i++) layers[l] += tensor_dev_bytes(ts[i], held);
        /* a streamed layer travels as stored (decompress-at-load: decoded) in one slot */
        stream[l] = vz_plan_dev_round(vz_plan_layer_pack(L, opts->residency == VZ_RESIDENCY_DECOMPRESS, off));
        if (opts->residency == VZ_RESIDENCY_CACHE) layers[l] = vz_plan_dev_round(vz_plan_layer_pack(L, 1, off));
        /* lossless-max transport: its blocks are at most the fixed-rate pack (stream.cu checks), plus a
         * decoded slot */
        if (lmax) decoded[l] = vz_plan_dev_round(vz_plan_layer_pack(L, 1, off));
    }
    vz_plan_in in;
    memset(&in, 0, sizeof in);
    in.c = c;
    in.n_ctx = opts->n_ctx > 0 ? opts->n_ctx : c->max_seq_len;
    in.kv_f16 = opts->kv == VZ_KV_F16;
    in.n_seq = opts->n_seq > 1 ? opts->n_seq : 1;
    in.layer_bytes = layers;
    in.stream_bytes = stream;
    in.decoded_bytes = lmax ? decoded : NULL;
    in.global_bytes = tensor_dev_bytes(m->tok_emb, held) +
                      (m->output != m->tok_emb ? tensor_dev_bytes(m->output, held) : 0) +
                      vz_plan_dev_round(vz_plan_small_floats(c) * 4) +
                      (held == VZ_RESIDENCY_DECOMPRESS ? 0 : VZ_PLAN_ARENA_SLACK);
    in.budget = opts->vram_budget;
    in.stream_ok = stream_ok;
    in.residency = opts->residency;
#ifdef VZ_HAVE_CUDA
    uint64_t fr = 0, tot = 0;
    if (!in.budget && opts->device == VZ_DEVICE_CUDA && vz_cuda_mem_free(&fr, &tot) == VZ_OK)
        in.budget = fr, in.budget_is_free = 1;
#endif
    vz_plan_make(&in, out);
    free(layers);
    return VZ_OK;
}
