/*
 * model.c - opening a model (format detection), binding tensors to layers
 * with shape checks, and the public model queries.
 */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/codec.h"
#include "tokenizer/tokenizer.h"

void vz_model_opts_default(vz_model_opts *o) { memset(o, 0, sizeof *o); }

vz_status vz_config_validate(const vz_config *c, const char *what) {
#define CHECK_RANGE(field, lo, hi)                                                                    \
    VZ_FAIL_IF(c->field < (lo) || c->field > (hi), VZ_ERR_FORMAT, "%s: field '%s' = %lld is outside [%lld, %lld]", \
               what, #field, (long long)c->field, (long long)(lo), (long long)(hi))
    CHECK_RANGE(dim, 1, 1 << 17);
    CHECK_RANGE(hidden_dim, 1, 1 << 19);
    CHECK_RANGE(n_layers, 1, 1024);
    CHECK_RANGE(n_heads, 1, 4096);
    CHECK_RANGE(n_kv_heads, 1, 4096);
    CHECK_RANGE(head_dim, 2, 4096);
    CHECK_RANGE(vocab_size, 1, 1 << 24);
    CHECK_RANGE(max_seq_len, 1, 1 << 24);
#undef CHECK_RANGE
    VZ_FAIL_IF(c->n_heads % c->n_kv_heads != 0, VZ_ERR_FORMAT,
               "%s: n_heads %d is not a multiple of n_kv_heads %d", what, c->n_heads, c->n_kv_heads);
    VZ_FAIL_IF(c->head_dim % 2 != 0, VZ_ERR_FORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", what, c->head_dim);
    VZ_FAIL_IF(!(c->rms_eps > 0 && c->rms_eps < 1), VZ_ERR_FORMAT, "%s: rms_norm_eps %g is not in (0, 1)", what,
               (double)c->rms_eps);
    VZ_FAIL_IF(!(c->rope_theta > 0 && c->rope_theta < 1e12f), VZ_ERR_FORMAT, "%s: rope_theta %g is not positive",
               what, (double)c->rope_theta);
    const vz_rope_scaling *r = &c->rope_scaling;
    VZ_FAIL_IF(r->type < VZ_ROPE_NONE || r->type > VZ_ROPE_FACTORS, VZ_ERR_FORMAT, "%s: rope scaling type %d", what,
               r->type);
    VZ_FAIL_IF((r->type == VZ_ROPE_LINEAR || r->type == VZ_ROPE_LLAMA3) && !(r->factor >= 1 && r->factor <= 1e6f),
               VZ_ERR_FORMAT,
               "%s: rope_scaling.factor %g is not in [1, 1e6]", what, (double)r->factor);
    VZ_FAIL_IF(r->type == VZ_ROPE_LLAMA3 && !(r->low_freq > 0 && r->high_freq > r->low_freq && r->high_freq < 1e6f &&
                                              r->orig_ctx >= 1 && r->orig_ctx <= (1 << 24)),
               VZ_ERR_FORMAT,
               "%s: rope_scaling llama3 needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and "
               "original_max_position_embeddings (%d) >= 1",
               what, (double)r->low_freq, (double)r->high_freq, r->orig_ctx);
    VZ_FAIL_IF(c->qkv_bias < 0 || c->qkv_bias > 1, VZ_ERR_FORMAT, "%s: qkv_bias %d is not 0 or 1", what, c->qkv_bias);
    VZ_FAIL_IF(c->bos_id < -1 || c->bos_id >= c->vocab_size, VZ_ERR_FORMAT, "%s: bos id %d outside vocab %d", what,
               c->bos_id, c->vocab_size);
    VZ_FAIL_IF(c->eos_id < -1 || c->eos_id >= c->vocab_size, VZ_ERR_FORMAT, "%s: eos id %d outside vocab %d", what,
               c->eos_id, c->vocab_size);
    VZ_FAIL_IF(c->n_eos < 0 || c->n_eos > VZ_MAX_EOS, VZ_ERR_FORMAT, "%s: %d stop ids (max %d)", what, c->n_eos,
               VZ_MAX_EOS);
    for (int32_t i = 0; i < c->n_eos; i++)
        VZ_FAIL_IF(c->eos_ids[i] < 0 || c->eos_ids[i] >= c->vocab_size, VZ_ERR_FORMAT,
                   "%s: stop id %d outside vocab %d", what, c->eos_ids[i], c->vocab_size);
    return VZ_OK;
}

_Static_assert(sizeof(((vz_model_info *)0)->eos_ids) == VZ_MAX_EOS * sizeof(int32_t), "vz_model_info.eos_ids");

void vz_config_add_eos(vz_config *c, int32_t id) {
    if (id < 0) return;
    for (int32_t i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return;
    if (c->n_eos < VZ_MAX_EOS) c->eos_ids[c->n_eos++] = id;
}

void vz_config_stop_ids(const vz_config *c, int32_t ids[VZ_MAX_EOS], int32_t *n) {
    vz_config t = *c;
    t.n_eos = 0;
    vz_config_add_eos(&t, c->eos_id); /* eos_id first, then the others */
    for (int32_t i = 0; i < c->n_eos; i++) vz_config_add_eos(&t, c->eos_ids[i]);
    memcpy(ids, t.eos_ids, sizeof t.eos_ids);
    *n = t.n_eos;
}

const vz_tensor *vz_model_find(const vz_model *m, const char *name) {
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

vz_status vz_model_add_map(vz_model *m, vz_map **out) {
    VZ_FAIL_IF(m->n_maps >= VZ_MAX_MAPS, VZ_ERR_UNSUPPORTED, "%s: more than %d files", m->path, VZ_MAX_MAPS);
    *out = &m->maps[m->n_maps++];
    memset(*out, 0, sizeof **out);
    return VZ_OK;
}

vz_status vz_model_set_chat_template(vz_model *m, const char *s, size_t n, const char *what) {
    VZ_FAIL_IF(n > VZ_MAX_CHAT_TEMPLATE, VZ_ERR_FORMAT, "%s: chat template of %zu bytes, more than %d", what, n,
               VZ_MAX_CHAT_TEMPLATE);
    VZ_FAIL_IF(memchr(s, 0, n), VZ_ERR_FORMAT, "%s: chat template holds a NUL byte", what);
    char *c = malloc(n + 1);
    VZ_FAIL_IF(!c, VZ_ERR_NOMEM, "%s: out of memory for the chat template", what);
    memcpy(c, s, n);
    c[n] = 0;
    VZ_TRY(vz_model_own(m, c));
    m->chat_template = c;
    return VZ_OK;
}

vz_status vz_model_own(vz_model *m, void *p) {
    if (!p) return VZ_OK;
    if (m->n_owned >= VZ_MAX_MAPS) {
        free(p);
        return VZ_FAIL(VZ_ERR_UNSUPPORTED, "%s: too many owned buffers", m->path);
    }
    m->owned[m->n_owned++] = p;
    return VZ_OK;
}

/* Finds a tensor and checks its shape is exactly (rows, cols) or (n) when cols == 0. */
static vz_status need(const vz_model *m, const vz_tensor **out, const char *name, int64_t rows, int64_t cols) {
    const vz_tensor *t = vz_model_find(m, name);
    VZ_FAIL_IF(!t, VZ_ERR_NOT_FOUND, "%s: tensor %s is missing", m->path, name);
    if (cols == 0) {
        VZ_FAIL_IF(t->rows * t->cols != rows, VZ_ERR_SHAPE, "%s: tensor %s has %lld elements, config implies %lld",
                   m->path, name, (long long)(t->rows * t->cols), (long long)rows);
    } else {
        VZ_FAIL_IF(t->ndim != 2 || t->rows != rows || t->cols != cols, VZ_ERR_SHAPE,
                   "%s: tensor %s has shape (%lld, %lld), config implies (%lld, %lld)", m->path, name,
                   (long long)t->rows, (long long)t->cols, (long long)rows, (long long)cols);
    }
    *out = t;
    return VZ_OK;
}

static vz_status norm_f32(vz_model *m, float *dst, const char *name, int64_t n) {
    const vz_tensor *t = NULL;
    VZ_TRY(need(m, &t, name, n, 0));
    VZ_TRY(vz_tensor_check(t));
    vz_codec_by_id(t->codec)->decode_f32(t, 0, t->rows, dst);
    return VZ_OK;
}

vz_status vz_model_bind(vz_model *m) {
    const vz_config *c = &m->cfg;
    VZ_TRY(vz_config_validate(c, m->path));
    for (int32_t i = 0; i < m->n_tensors; i++) {
        vz_status s = vz_tensor_check(&m->tensors[i]);
        if (s != VZ_OK) {
            vz_error_prefix("%s", m->path);
            return s;
        }
    }
    int64_t dim = c->dim, hd = c->head_dim, q = (int64_t)c->n_heads * hd, kv = (int64_t)c->n_kv_heads * hd;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->norms = malloc(sizeof(float) * ((size_t)dim * (size_t)(2 * c->n_layers + 1) +
                                       (c->qkv_bias ? (size_t)(q + 2 * kv) * (size_t)c->n_layers : 0)));
    VZ_FAIL_IF(!m->layers || !m->norms, VZ_ERR_NOMEM, "%s: out of memory", m->path);
    VZ_TRY(need(m, &m->tok_emb, VZ_NAME_TOK_EMB, c->vocab_size, dim));
    if (c->tied_embeddings && !vz_model_find(m, VZ_NAME_OUTPUT)) {
        m->output = m->tok_emb;
    } else {
        VZ_TRY(need(m, &m->output, VZ_NAME_OUTPUT, c->vocab_size, dim));
    }
    float *nb = m->norms;
    if (c->rope_scaling.type == VZ_ROPE_FACTORS) { /* llama.cpp's rope_freqs: positive finite divisors */
        float *f = malloc(sizeof(float) * (size_t)(hd / 2));
        VZ_TRY(vz_model_own(m, f));
        VZ_FAIL_IF(!f, VZ_ERR_NOMEM, "%s: out of memory", m->path);
        VZ_TRY(norm_f32(m, f, VZ_NAME_ROPE_FREQS, hd / 2));
        for (int64_t i = 0; i < hd / 2; i++)
            VZ_FAIL_IF(!(f[i] > 0 && f[i] < 1e6f), VZ_ERR_FORMAT, "%s: tensor %s[%lld] = %g is not a positive factor",
                       m->path, VZ_NAME_ROPE_FREQS, (long long)i, (double)f[i]);
        m->cfg.rope_scaling.factors = f;
    }
    VZ_TRY(norm_f32(m, nb, VZ_NAME_FINAL_NORM, dim));
    m->final_norm = nb;
    nb += dim;
    char name[VZ_NAME_MAX];
    for (int32_t l = 0; l < c->n_layers; l++) {
        vz_layer *L = &m->layers[l];
#define LAYER_T(field, sfx, r, cc)                                       \
    snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, sfx);     \
    VZ_TRY(need(m, &L->field, name, r, cc))
        LAYER_T(wq, VZ_SFX_WQ, q, dim);
        LAYER_T(wk, VZ_SFX_WK, kv, dim);
        LAYER_T(wv, VZ_SFX_WV, kv, dim);
        LAYER_T(wo, VZ_SFX_WO, dim, q);
        LAYER_T(w1, VZ_SFX_W1, c->hidden_dim, dim);
        LAYER_T(w2, VZ_SFX_W2, dim, c->hidden_dim);
        LAYER_T(w3, VZ_SFX_W3, c->hidden_dim, dim);
#undef LAYER_T
        snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, VZ_SFX_ATTN_NORM);
        VZ_TRY(norm_f32(m, nb, name, dim));
        L->attn_norm = nb;
        nb += dim;
        snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, VZ_SFX_FFN_NORM);
        VZ_TRY(norm_f32(m, nb, name, dim));
        L->ffn_norm = nb;
        nb += dim;
        if (!c->qkv_bias) continue;
        const float **bias[3] = {&L->bq, &L->bk, &L->bv};
        const char *sfx[3] = {VZ_SFX_BQ, VZ_SFX_BK, VZ_SFX_BV};
        for (int b = 0; b < 3; b++) {
            const int64_t nbias = b ? kv : q;
            snprintf(name, sizeof name, "model.layers.%d.%s", (int)l, sfx[b]);
            VZ_TRY(norm_f32(m, nb, name, nbias));
            *bias[b] = nb;
            nb += nbias;
        }
    }
    return VZ_OK;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The smallest llama2.c file a valid header allows (28-byte header + 32 f32:
 * dim 2, every other size 1); anything shorter without a GGUF/VZIP magic is
 * no model at all, and is named so rather than parsed as a llama2.c header. */
#define VZ_MIN_LLAMA2C_BYTES 156

/* Picks the reader of a file by its magic; llama2.c (no magic) otherwise. */
static vz_status read_file_model(vz_model *m, const char *path, const vz_model_opts *opts) {
    uint8_t magic[4] = {0};
    FILE *f = fopen(path, "rb");
    VZ_FAIL_IF(!f, VZ_ERR_NOT_FOUND, "%s: cannot open model", path);
    size_t got = fread(magic, 1, 4, f);
    int end = fseek(f, 0, SEEK_END);
    long size = end == 0 ? ftell(f) : -1;
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) return vz_read_gguf(m, path, opts);
    if (got == 4 && memcmp(magic, "VZIP", 4) == 0) return vz_read_vz(m, path, opts);
    VZ_FAIL_IF(size >= 0 && size < VZ_MIN_LLAMA2C_BYTES, VZ_ERR_FORMAT,
               "%s: file too small to be a model (%ld bytes): not GGUF, .vz or llama2.c", path, size);
    return vz_read_llama2c(m, path, opts);
}

/* opts->tokenizer_path for a GGUF or .vz model: it replaces the model's own
 * tokenizer (a GGUF with a byte-level "gpt2" vocabulary, e.g. Llama 3, has
 * none here: give its tokenizer.json). HF and llama2.c readers take it
 * themselves. Its ids must fit the vocabulary. */
static vz_status override_tokenizer(vz_model *m, const vz_model_opts *opts) {
    if (!opts->tokenizer_path || !*opts->tokenizer_path || strcmp(m->format, "hf") == 0 ||
        strcmp(m->format, "llama2c") == 0)
        return VZ_OK;
    vz_tokenizer *t = NULL;
    VZ_TRY(vz_tokenizer_open(&t, opts->tokenizer_path));
    if (vz_tokenizer_vocab_size(t) > m->cfg.vocab_size) {
        int32_t n = vz_tokenizer_vocab_size(t);
        vz_tokenizer_close(t);
        return VZ_FAIL(VZ_ERR_SHAPE, "%s: %d tokens, more than the vocab_size %d of %s", opts->tokenizer_path, n,
                       m->cfg.vocab_size, m->path);
    }
    vz_tokenizer_close(m->tok);
    m->tok = t;
    if (vz_tokenizer_bos(t) >= 0) m->cfg.bos_id = vz_tokenizer_bos(t);
    if (vz_tokenizer_eos(t) >= 0) m->cfg.eos_id = vz_tokenizer_eos(t);
    return VZ_OK;
}

vz_status vz_model_open(vz_model **out, const char *path, const vz_model_opts *opts) {
    VZ_FAIL_IF(!out, VZ_ERR_ARG, "vz_model_open: NULL output pointer");
    *out = NULL;
    vz_model_opts def;
    if (!opts) {
        vz_model_opts_default(&def);
        opts = &def;
    }
    VZ_FAIL_IF(!path || !*path, VZ_ERR_ARG, "no model path given");
    vz_model *m = calloc(1, sizeof *m);
    VZ_FAIL_IF(!m, VZ_ERR_NOMEM, "out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    vz_status s;
    if (is_dir(path)) s = vz_read_hf(m, path, opts);
    else s = read_file_model(m, path, opts);
    if (s == VZ_OK) s = override_tokenizer(m, opts);
    if (s == VZ_OK) s = vz_model_bind(m);
    if (s != VZ_OK) {
        vz_model_close(m);
        return s;
    }
    *out = m;
    return VZ_OK;
}

void vz_model_close(vz_model *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n_maps; i++) vz_map_close(&m->maps[i]);
    for (int32_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    vz_tokenizer_close(m->tok);
    free(m->tensors);
    free(m->layers);
    free(m->norms);
    free(m);
}

vz_status vz_model_get_info(const vz_model *m, vz_model_info *o) {
    VZ_FAIL_IF(!m || !o, VZ_ERR_ARG, "vz_model_get_info: NULL argument");
    memset(o, 0, sizeof *o);
    const vz_config *c = &m->cfg;
    snprintf(o->format, sizeof o->format, "%s", m->format);
    snprintf(o->arch, sizeof o->arch, "%s", c->arch);
    o->dim = c->dim;
    o->hidden_dim = c->hidden_dim;
    o->n_layers = c->n_layers;
    o->n_heads = c->n_heads;
    o->n_kv_heads = c->n_kv_heads;
    o->head_dim = c->head_dim;
    o->vocab_size = c->vocab_size;
    o->max_seq_len = c->max_seq_len;
    o->rms_eps = c->rms_eps;
    o->rope_theta = c->rope_theta;
    o->rope_interleaved = c->rope_interleaved;
    o->tied_embeddings = c->tied_embeddings;
    o->bos_id = c->bos_id;
    o->eos_id = c->eos_id;
    vz_config_stop_ids(c, o->eos_ids, &o->n_eos);
    const int32_t rt = c->rope_scaling.type;
    snprintf(o->rope_scaling, sizeof o->rope_scaling, "%s",
             rt == VZ_ROPE_LLAMA3 ? "llama3" : rt == VZ_ROPE_LINEAR ? "linear" : rt == VZ_ROPE_FACTORS ? "rope_freqs" : "");
    o->rope_factor = rt == VZ_ROPE_LLAMA3 || rt == VZ_ROPE_LINEAR ? c->rope_scaling.factor : 0.0f;
    o->qkv_bias = c->qkv_bias;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        o->n_params += (uint64_t)(m->tensors[i].rows * m->tensors[i].cols);
        o->weight_bytes += m->tensors[i].size;
    }
    return VZ_OK;
}

const vz_tokenizer *vz_model_tokenizer(const vz_model *m) { return m ? m->tok : NULL; }

int32_t vz_model_n_tensors(const vz_model *m) { return m ? m->n_tensors : 0; }

vz_status vz_model_tensor_info(const vz_model *m, int32_t i, vz_tensor_info *o) {
    VZ_FAIL_IF(!m || i < 0 || i >= m->n_tensors, VZ_ERR_ARG, "tensor index %d out of range", (int)i);
    const vz_tensor *t = &m->tensors[i];
    const vz_codec *c = vz_codec_by_id(t->codec);
    o->name = t->name;
    o->ndim = t->ndim;
    memcpy(o->shape, t->shape, sizeof o->shape);
    o->dtype = t->dtype;
    o->codec_id = t->codec;
    o->codec_name = !c ? "?" : c->spec ? c->spec(t) : c->name; /* the spec that writes it */
    o->bytes = t->size;
    return VZ_OK;
}
