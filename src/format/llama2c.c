/*
 * llama2c.c - reader for the legacy ("version 0") llama2.c checkpoint, as
 * written by llama2.c export.py legacy_export and read by run.c: seven int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means an untied classifier stored at the end), then
 * f32 arrays stacked over layers. Tensors point into the mmap (zero copy,
 * codec raw, dtype F32) under their Hugging Face names; freq_cis is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/llama2c.h"

#include "codec/codec.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define L2C_HEADER_BYTES 28

/* Limits far above any real llama2.c model; they keep size arithmetic sane. */
#define L2C_MAX_DIM     (1 << 17)
#define L2C_MAX_HIDDEN  (1 << 19)
#define L2C_MAX_LAYERS  1024
#define L2C_MAX_HEADS   4096
#define L2C_MAX_VOCAB   (1 << 24)
#define L2C_MAX_SEQ     (1 << 24)

typedef struct l2c_header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_header;

static vz_status check_field(const char *path, const char *field, int32_t v, int32_t hi) {
    VZ_FAIL_IF(v < 1 || v > hi, VZ_ERR_FORMAT, "%s: llama2.c header field '%s' = %d is outside [1, %d]", path,
               field, (int)v, (int)hi);
    return VZ_OK;
}

static vz_status read_header(vz_rd *r, l2c_header *h, int32_t *tied) {
    const char *p = r->what;
    VZ_TRY(vz_rd_i32(r, &h->dim, "dim"));
    VZ_TRY(vz_rd_i32(r, &h->hidden_dim, "hidden_dim"));
    VZ_TRY(vz_rd_i32(r, &h->n_layers, "n_layers"));
    VZ_TRY(vz_rd_i32(r, &h->n_heads, "n_heads"));
    VZ_TRY(vz_rd_i32(r, &h->n_kv_heads, "n_kv_heads"));
    VZ_TRY(vz_rd_i32(r, &h->vocab_size, "vocab_size"));
    VZ_TRY(vz_rd_i32(r, &h->seq_len, "seq_len"));
    *tied = h->vocab_size > 0;
    VZ_FAIL_IF(h->vocab_size == INT32_MIN, VZ_ERR_FORMAT, "%s: llama2.c header field 'vocab_size' = %d", p,
               (int)h->vocab_size);
    if (h->vocab_size < 0) h->vocab_size = -h->vocab_size;
    VZ_TRY(check_field(p, "dim", h->dim, L2C_MAX_DIM));
    VZ_TRY(check_field(p, "hidden_dim", h->hidden_dim, L2C_MAX_HIDDEN));
    VZ_TRY(check_field(p, "n_layers", h->n_layers, L2C_MAX_LAYERS));
    VZ_TRY(check_field(p, "n_heads", h->n_heads, L2C_MAX_HEADS));
    VZ_TRY(check_field(p, "n_kv_heads", h->n_kv_heads, L2C_MAX_HEADS));
    VZ_TRY(check_field(p, "vocab_size", h->vocab_size, L2C_MAX_VOCAB));
    VZ_TRY(check_field(p, "seq_len", h->seq_len, L2C_MAX_SEQ));
    VZ_FAIL_IF(h->dim % h->n_heads != 0, VZ_ERR_FORMAT, "%s: llama2.c header: dim %d is not a multiple of n_heads %d",
               p, (int)h->dim, (int)h->n_heads);
    VZ_FAIL_IF(h->n_kv_heads > h->n_heads || h->n_heads % h->n_kv_heads != 0, VZ_ERR_FORMAT,
               "%s: llama2.c header: n_heads %d is not a multiple of n_kv_heads %d", p, (int)h->n_heads,
               (int)h->n_kv_heads);
    VZ_FAIL_IF((h->dim / h->n_heads) % 2 != 0, VZ_ERR_FORMAT, "%s: llama2.c header: head size %d is odd", p,
               (int)(h->dim / h->n_heads));
    return VZ_OK;
}

/* Adds count*elems f32 values to *total (in elements), failing on overflow. */
static vz_status add_elems(uint64_t *total, uint64_t count, uint64_t elems, const char *path) {
    uint64_t n;
    VZ_FAIL_IF(vz_mul_ovf(count, elems, &n) || vz_add_ovf(*total, n, total), VZ_ERR_FORMAT,
               "%s: llama2.c header implies a size that overflows", path);
    return VZ_OK;
}

/* Number of f32 values the body must hold, in file order. */
static vz_status body_elems(const l2c_header *h, int32_t tied, const char *path, uint64_t *out) {
    uint64_t d = (uint64_t)h->dim, hid = (uint64_t)h->hidden_dim, L = (uint64_t)h->n_layers;
    uint64_t kv = (uint64_t)(h->dim / h->n_heads) * (uint64_t)h->n_kv_heads, t = 0;
    VZ_TRY(add_elems(&t, (uint64_t)h->vocab_size, d, path));        /* token_embedding */
    VZ_TRY(add_elems(&t, L, d, path));                               /* rms_att */
    VZ_TRY(add_elems(&t, L, d * d, path));                           /* wq */
    VZ_TRY(add_elems(&t, L, kv * d, path));                          /* wk */
    VZ_TRY(add_elems(&t, L, kv * d, path));                          /* wv */
    VZ_TRY(add_elems(&t, L, d * d, path));                           /* wo */
    VZ_TRY(add_elems(&t, L, d, path));                               /* rms_ffn */
    VZ_TRY(add_elems(&t, 3 * L, hid * d, path));                     /* w1, w2, w3 */
    VZ_TRY(add_elems(&t, 1, d, path));                               /* rms_final */
    VZ_TRY(add_elems(&t, (uint64_t)h->seq_len, d / (uint64_t)h->n_heads, path)); /* freq_cis real+imag */
    if (!tied) VZ_TRY(add_elems(&t, (uint64_t)h->vocab_size, d, path));          /* wcls */
    *out = t;
    return VZ_OK;
}

/* Cursor over the body: hands out consecutive f32 tensors. */
typedef struct l2c_cursor {
    vz_model *m;
    vz_rd rd;
} l2c_cursor;

static vz_status take(l2c_cursor *c, const char *name, int32_t ndim, int64_t d0, int64_t d1) {
    vz_model *m = c->m;
    vz_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int64_t shape[2] = {d0, d1};
    VZ_FAIL_IF(vz_tensor_set_shape(t, ndim, shape) != 0, VZ_ERR_FORMAT, "%s: tensor %s: invalid shape", m->path,
               name);
    t->dtype = VZ_DTYPE_F32;
    t->codec = VZ_CODEC_raw;
    t->size = (uint64_t)t->rows * (uint64_t)t->cols * 4u;
    VZ_TRY(vz_rd_bytes(&c->rd, &t->data, t->size, name));
    m->n_tensors++;
    return VZ_OK;
}

/* One stacked per-layer array: n_layers tensors named model.layers.N.<sfx>. */
static vz_status take_stack(l2c_cursor *c, const char *sfx, int32_t ndim, int64_t d0, int64_t d1) {
    char name[VZ_NAME_MAX];
    for (int32_t l = 0; l < c->m->cfg.n_layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, sfx);
        VZ_TRY(take(c, name, ndim, d0, d1));
    }
    return VZ_OK;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The tokenizer: opts path (-z), else tokenizer.bin or tok<vocab>.bin beside
 * the model (llama2.c's names), else none. An auto-found file that this
 * build cannot read yet (VZ_ERR_UNSUPPORTED) is ignored; other errors fail. */
static vz_status open_tokenizer(vz_model *m, const char *path, const vz_model_opts *o) {
    char cand[2][1100];
    int n_cand = 0;
    if (o && o->tokenizer_path && *o->tokenizer_path) {
        VZ_TRY(vz_tokenizer_open(&m->tok, o->tokenizer_path));
    } else {
        const char *slash = strrchr(path, '/');
        int dlen = slash ? (int)(slash - path + 1) : 0;
        snprintf(cand[n_cand++], sizeof cand[0], "%.*stokenizer.bin", dlen, path);
        snprintf(cand[n_cand++], sizeof cand[0], "%.*stok%d.bin", dlen, path, (int)m->cfg.vocab_size);
        for (int i = 0; i < n_cand && !m->tok; i++) {
            if (!file_exists(cand[i])) continue;
            vz_status s = vz_tokenizer_open(&m->tok, cand[i]);
            if (s == VZ_ERR_UNSUPPORTED) {
                m->tok = NULL;
                vz_error_clear();
                continue;
            }
            VZ_TRY(s);
        }
    }
    if (!m->tok) return VZ_OK;
    int32_t tv = vz_tokenizer_vocab_size(m->tok);
    VZ_FAIL_IF(tv != m->cfg.vocab_size, VZ_ERR_SHAPE, "%s: tokenizer has %d tokens, model vocab_size is %d", path,
               (int)tv, (int)m->cfg.vocab_size);
    return VZ_OK;
}

static void fill_config(vz_config *c, const l2c_header *h, int32_t tied) {
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = h->dim;
    c->hidden_dim = h->hidden_dim;
    c->n_layers = h->n_layers;
    c->n_heads = h->n_heads;
    c->n_kv_heads = h->n_kv_heads;
    c->head_dim = h->dim / h->n_heads;
    c->vocab_size = h->vocab_size;
    c->max_seq_len = h->seq_len;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_interleaved = 1;
    c->tied_embeddings = tied;
    c->bos_id = 1;
    c->eos_id = 2;
}

vz_status vz_llama2c_load(vz_model *m, const uint8_t *data, uint64_t size, const char *path) {
    snprintf(m->format, sizeof m->format, "llama2c");
    l2c_cursor c = {.m = m, .rd = vz_rd_init(data, size, path)};
    l2c_header h;
    int32_t tied = 0;
    VZ_TRY(read_header(&c.rd, &h, &tied));
    uint64_t elems = 0, want = 0;
    VZ_TRY(body_elems(&h, tied, path, &elems));
    VZ_FAIL_IF(vz_mul_ovf(elems, 4, &want) || vz_add_ovf(want, L2C_HEADER_BYTES, &want), VZ_ERR_FORMAT,
               "%s: llama2.c header implies a size that overflows", path);
    VZ_FAIL_IF(size < want, VZ_ERR_TRUNCATED, "%s: llama2.c file is %llu bytes, header implies %llu", path,
               (unsigned long long)size, (unsigned long long)want);
    VZ_FAIL_IF(size > want, VZ_ERR_FORMAT,
               "%s: llama2.c file is %llu bytes, header implies %llu (%s classifier; trailing data?)", path,
               (unsigned long long)size, (unsigned long long)want, tied ? "shared" : "separate");
    fill_config(&m->cfg, &h, tied);

    int32_t n_t = 2 + 9 * h.n_layers + (tied ? 0 : 1);
    m->tensors = calloc((size_t)n_t, sizeof *m->tensors);
    VZ_FAIL_IF(!m->tensors, VZ_ERR_NOMEM, "%s: cannot allocate %d tensors", path, (int)n_t);
    int64_t d = h.dim, kv = (int64_t)m->cfg.head_dim * h.n_kv_heads, hid = h.hidden_dim;
    VZ_TRY(take(&c, VZ_NAME_TOK_EMB, 2, h.vocab_size, d));
    VZ_TRY(take_stack(&c, VZ_SFX_ATTN_NORM, 1, d, 0));
    VZ_TRY(take_stack(&c, VZ_SFX_WQ, 2, d, d));
    VZ_TRY(take_stack(&c, VZ_SFX_WK, 2, kv, d));
    VZ_TRY(take_stack(&c, VZ_SFX_WV, 2, kv, d));
    VZ_TRY(take_stack(&c, VZ_SFX_WO, 2, d, d));
    VZ_TRY(take_stack(&c, VZ_SFX_FFN_NORM, 1, d, 0));
    VZ_TRY(take_stack(&c, VZ_SFX_W1, 2, hid, d));
    VZ_TRY(take_stack(&c, VZ_SFX_W2, 2, d, hid));
    VZ_TRY(take_stack(&c, VZ_SFX_W3, 2, hid, d));
    VZ_TRY(take(&c, VZ_NAME_FINAL_NORM, 1, d, 0));
    VZ_TRY(vz_rd_skip(&c.rd, (uint64_t)h.seq_len * (uint64_t)m->cfg.head_dim * 4u, "freq_cis"));
    if (!tied) VZ_TRY(take(&c, VZ_NAME_OUTPUT, 2, h.vocab_size, d));
    return VZ_OK;
}

vz_status vz_read_llama2c(vz_model *m, const char *path, const vz_model_opts *o) {
    vz_map *map = NULL;
    VZ_TRY(vz_model_add_map(m, &map));
    VZ_TRY(vz_map_open(map, path));
    VZ_TRY(vz_llama2c_load(m, map->data, map->size, path));
    return open_tokenizer(m, path, o);
}
