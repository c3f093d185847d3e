/*
 * ckpt.c - small checkpoint writers for tests (see ckpt.h). Byte layouts
 * follow the safetensors README and ggml's docs/gguf.md, written out here
 * independently of src/format so reader bugs are not mirrored.
 */
#include "ckpt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "testutil.h"

static void set_ptrs(vz_ckpt_model *m, float *p, int untied) {
    int64_t d = m->dim, h = m->hidden, L = m->layers, hd = m->dim / m->heads, kv = m->kv_heads * hd;
    m->tok = p; p += (int64_t)m->vocab * d;
    m->rms_att = p; p += L * d;
    m->wq = p; p += L * d * d;
    m->wk = p; p += L * kv * d;
    m->wv = p; p += L * kv * d;
    m->wo = p; p += L * d * d;
    m->rms_ffn = p; p += L * d;
    m->w1 = p; p += L * h * d;
    m->w2 = p; p += L * d * h;
    m->w3 = p; p += L * h * d;
    m->rms_final = p; p += d;
    m->wcls = untied ? p : NULL;
}

static size_t n_floats(const vz_ckpt_model *m, int untied) {
    size_t d = (size_t)m->dim, h = (size_t)m->hidden, L = (size_t)m->layers, kv = (size_t)m->kv_heads * d / (size_t)m->heads;
    return (size_t)m->vocab * d * (untied ? 2 : 1) + L * (2 * d + 2 * d * d + 2 * kv * d + 3 * h * d) + d;
}

int vz_ckpt_load_bin(vz_ckpt_model *m, const char *path) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int32_t hdr[7];
    int ok = fread(hdr, 4, 7, f) == 7;
    m->dim = hdr[0], m->hidden = hdr[1], m->layers = hdr[2], m->heads = hdr[3], m->kv_heads = hdr[4];
    m->vocab = hdr[5] < 0 ? -hdr[5] : hdr[5], m->seq = hdr[6];
    size_t n = ok ? n_floats(m, 0) : 0;
    m->owned = ok ? malloc(n * sizeof(float)) : NULL;
    ok = m->owned && fread(m->owned, sizeof(float), n, f) == n;
    fclose(f);
    if (!ok) return -1;
    set_ptrs(m, m->owned, 0);
    return 0;
}

int vz_ckpt_random(vz_ckpt_model *m, int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                   int untied, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->dim = dim, m->hidden = hidden, m->layers = layers, m->heads = heads, m->kv_heads = kv_heads;
    m->vocab = vocab, m->seq = 64;
    size_t n = n_floats(m, untied);
    m->owned = malloc(n * sizeof(float));
    if (!m->owned) return -1;
    for (size_t i = 0; i < n; i++) m->owned[i] = 0.1f * vz_test_randn(&seed);
    set_ptrs(m, m->owned, untied);
    return 0;
}

void vz_ckpt_free(vz_ckpt_model *m) {
    free(m->owned);
    memset(m, 0, sizeof *m);
}

void vz_ckpt_permute_rows(float *out, const float *in, int rows, int cols, int heads) {
    int hd = rows / heads;
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < hd / 2; i++)
                memcpy(out + (size_t)(h * hd + j * (hd / 2) + i) * cols, in + (size_t)(h * hd + 2 * i + j) * cols,
                       (size_t)cols * sizeof(float));
}

int vz_ckpt_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int vz_ckpt_write_st_raw(const char *path, const char *header, const void *data, uint64_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t n = strlen(header);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(n >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, n, f) == n && (size == 0 || fwrite(data, 1, size, f) == size);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int64_t st_elems(const vz_ckpt_st *e) {
    int64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= e->shape[d];
    return n;
}

/* Converts an entry's values to its dtype; returns malloc'ed bytes. */
static uint8_t *st_bytes(const vz_ckpt_st *e, uint64_t *size) {
    if (!e->f32) {
        *size = e->raw_size;
        uint8_t *p = malloc(e->raw_size + 1);
        if (p && e->raw_size) memcpy(p, e->raw, e->raw_size);
        return p;
    }
    int64_t n = st_elems(e);
    int es = strcmp(e->dtype, "F32") == 0 ? 4 : 2;
    *size = (uint64_t)n * (uint64_t)es;
    uint8_t *p = malloc(*size + 1);
    for (int64_t i = 0; p && i < n; i++) {
        uint16_t h = strcmp(e->dtype, "F16") == 0 ? vz_f32_to_f16(e->f32[i]) : vz_f32_to_bf16(e->f32[i]);
        if (es == 4) memcpy(p + 4 * i, &e->f32[i], 4);
        else memcpy(p + 2 * i, &h, 2);
    }
    return p;
}

int vz_ckpt_write_st(const char *path, const vz_ckpt_st *e, int n) {
    uint8_t **bytes = calloc((size_t)n + 1, sizeof *bytes);
    uint64_t *sizes = calloc((size_t)n + 1, sizeof *sizes), total = 0;
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    for (int i = 0; i < n; i++) {
        bytes[i] = st_bytes(&e[i], &sizes[i]);
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name);
        cJSON_AddStringToObject(t, "dtype", e[i].dtype);
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e[i].shape[d]));
        cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)total));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(total + sizes[i])));
        total += sizes[i];
    }
    char *hdr = cJSON_PrintUnformatted(root);
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8; /* pad with spaces, as the reference writer does */
    char *h2 = malloc(padded + 1);
    memcpy(h2, hdr, hl);
    memset(h2 + hl, ' ', padded - hl);
    h2[padded] = '\0';
    uint8_t *data = malloc(total + 1);
    for (int i = 0, o = 0; i < n; o += (int)sizes[i], i++) memcpy(data + o, bytes[i], sizes[i]);
    int rc = vz_ckpt_write_st_raw(path, h2, data, total);
    for (int i = 0; i < n; i++) free(bytes[i]);
    free(bytes), free(sizes), free(data), free(h2), free(hdr);
    cJSON_Delete(root);
    return rc;
}

static void add_entry(vz_ckpt_st *e, int *n, const char *dtype, const float *f, int64_t r, int64_t c, const char *fmt,
                      int layer) {
    vz_ckpt_st *x = &e[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, fmt, layer);
    x->dtype = dtype;
    x->f32 = f;
    x->ndim = c ? 2 : 1;
    x->shape[0] = r;
    x->shape[1] = c;
}

int vz_ckpt_hf_entries(const vz_ckpt_model *m, const char *dtype, vz_ckpt_st **out, int *n, float **scratch) {
    int64_t d = m->dim, h = m->hidden, hd = d / m->heads, kv = m->kv_heads * hd;
    vz_ckpt_st *e = calloc((size_t)(9 * m->layers + 4), sizeof *e);
    float *perm = malloc(sizeof(float) * (size_t)(m->layers * (d * d + kv * d)));
    if (!e || !perm) return -1;
    *n = 0;
    add_entry(e, n, dtype, m->tok, m->vocab, d, "model.embed_tokens.weight", 0);
    for (int l = 0; l < m->layers; l++) {
        float *pq = perm + (size_t)l * (size_t)(d * d + kv * d), *pk = pq + d * d;
        vz_ckpt_permute_rows(pq, m->wq + l * d * d, (int)d, (int)d, m->heads);
        vz_ckpt_permute_rows(pk, m->wk + l * kv * d, (int)kv, (int)d, m->kv_heads);
        add_entry(e, n, dtype, m->rms_att + l * d, d, 0, "model.layers.%d.input_layernorm.weight", l);
        add_entry(e, n, dtype, pq, d, d, "model.layers.%d.self_attn.q_proj.weight", l);
        add_entry(e, n, dtype, pk, kv, d, "model.layers.%d.self_attn.k_proj.weight", l);
        add_entry(e, n, dtype, m->wv + l * kv * d, kv, d, "model.layers.%d.self_attn.v_proj.weight", l);
        add_entry(e, n, dtype, m->wo + l * d * d, d, d, "model.layers.%d.self_attn.o_proj.weight", l);
        add_entry(e, n, dtype, m->rms_ffn + l * d, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        add_entry(e, n, dtype, m->w1 + l * h * d, h, d, "model.layers.%d.mlp.gate_proj.weight", l);
        add_entry(e, n, dtype, m->w2 + l * d * h, d, h, "model.layers.%d.mlp.down_proj.weight", l);
        add_entry(e, n, dtype, m->w3 + l * h * d, h, d, "model.layers.%d.mlp.up_proj.weight", l);
    }
    add_entry(e, n, dtype, m->rms_final, d, 0, "model.norm.weight", 0);
    if (m->wcls) add_entry(e, n, dtype, m->wcls, m->vocab, d, "lm_head.weight", 0);
    *out = e;
    *scratch = perm;
    return 0;
}

char *vz_ckpt_hf_config(const vz_ckpt_model *m, int tied) {
    cJSON *c = cJSON_CreateObject();
    cJSON *a = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "hidden_size", m->dim);
    cJSON_AddNumberToObject(c, "intermediate_size", m->hidden);
    cJSON_AddNumberToObject(c, "num_hidden_layers", m->layers);
    cJSON_AddNumberToObject(c, "num_attention_heads", m->heads);
    cJSON_AddNumberToObject(c, "num_key_value_heads", m->kv_heads);
    cJSON_AddNumberToObject(c, "vocab_size", m->vocab);
    cJSON_AddNumberToObject(c, "max_position_embeddings", m->seq);
    cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-5);
    cJSON_AddNumberToObject(c, "rope_theta", 10000.0);
    cJSON_AddNumberToObject(c, "bos_token_id", 1);
    cJSON_AddNumberToObject(c, "eos_token_id", 2);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddStringToObject(c, "torch_dtype", "float32");
    cJSON_AddBoolToObject(c, "tie_word_embeddings", tied);
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

char *vz_ckpt_hf_config_mistral(const vz_ckpt_model *m, int tied, int sliding_window) {
    char *base = vz_ckpt_hf_config(m, tied);
    cJSON *c = cJSON_Parse(base);
    free(base);
    if (!c) return NULL;
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString("MistralForCausalLM"));
    cJSON_ReplaceItemInObject(c, "architectures", a);
    cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("mistral"));
    cJSON_AddNumberToObject(c, "head_dim", m->dim / m->heads);
    if (sliding_window > 0) cJSON_AddNumberToObject(c, "sliding_window", sliding_window);
    else cJSON_AddNullToObject(c, "sliding_window");
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

static int write_index(const char *dir, const vz_ckpt_st *e, int n, int shards) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddObjectToObject(cJSON_AddObjectToObject(root, "metadata"), "total_size");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    char file[64], path[1200];
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", i * shards / n + 1, shards);
        cJSON_AddStringToObject(wm, e[i].name, file);
    }
    char *s = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int rc = vz_ckpt_write_file(path, s, strlen(s));
    free(s);
    cJSON_Delete(root);
    return rc;
}

int vz_ckpt_write_hf(const char *dir, const vz_ckpt_model *m, const char *dtype, int shards, int tied) {
    vz_ckpt_st *e = NULL;
    float *scratch = NULL;
    int n = 0;
    vz_ckpt_model mm = *m;
    if (tied) mm.wcls = NULL;
    if (vz_ckpt_hf_entries(&mm, dtype, &e, &n, &scratch) != 0) return -1;
    char path[1200];
    char *cfg = vz_ckpt_hf_config(&mm, tied);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = vz_ckpt_write_file(path, cfg, strlen(cfg));
    free(cfg);
    if (shards <= 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc |= vz_ckpt_write_st(path, e, n);
    } else {
        for (int s = 0; s < shards; s++) { /* shard s holds entries [s*n/shards, (s+1)*n/shards) */
            int b = (s * n + shards - 1) / shards, en = ((s + 1) * n + shards - 1) / shards;
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, shards);
            rc |= vz_ckpt_write_st(path, e + b, en - b);
        }
        rc |= write_index(dir, e, n, shards);
    }
    free(e);
    free(scratch);
    return rc;
}

/* ---- GGUF builder --------------------------------------------------------- */

typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, le, 4);
}
static void put_u64(gbuf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_str(gbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_u32(gbuf *b, const char *k, uint32_t v) { put_str(b, k), put_u32(b, 4), put_u32(b, v); }
static void kv_f32(gbuf *b, const char *k, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_str(b, k), put_u32(b, 6), put_u32(b, u);
}
static void kv_str(gbuf *b, const char *k, const char *v) { put_str(b, k), put_u32(b, 8), put_str(b, v); }

static int gguf_vocab(gbuf *b, const vz_ckpt_model *m, vz_ckpt_gguf_off *off) {
    kv_str(b, "tokenizer.ggml.model", "llama");
    put_str(b, "tokenizer.ggml.tokens"), put_u32(b, 9), put_u32(b, 8);
    off->tokens_count = b->n;
    put_u64(b, (uint64_t)m->vocab);
    off->tokens_first_len = b->n;
    char piece[32];
    for (int i = 0; i < m->vocab; i++) {
        if (i < 3) snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else snprintf(piece, sizeof piece, "\xe2\x96\x81t%d", i);
        put_str(b, piece);
    }
    put_str(b, "tokenizer.ggml.scores"), put_u32(b, 9), put_u32(b, 6), put_u64(b, (uint64_t)m->vocab);
    for (int i = 0; i < m->vocab; i++) {
        float s = -(float)i;
        put(b, &s, 4);
    }
    put_str(b, "tokenizer.ggml.token_type"), put_u32(b, 9), put_u32(b, 5), put_u64(b, (uint64_t)m->vocab);
    for (int i = 0; i < m->vocab; i++) put_u32(b, i == 0 ? 2 : i < 3 ? 3 : 1);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(b, "tokenizer.ggml.unknown_token_id", 0);
    return 7;
}

typedef struct gtensor {
    char name[64];
    const float *f;
    uint64_t ne0, ne1; /* ne1 = 0 for 1-D */
} gtensor;

static int gguf_tensor_list(const vz_ckpt_model *m, gtensor *t) {
    int64_t d = m->dim, h = m->hidden, kv = m->kv_heads * (d / m->heads);
    int n = 0;
#define T(nm, ptr, a, bb) (snprintf(t[n].name, sizeof t[n].name, "%s", nm), t[n].f = (ptr), t[n].ne0 = (a), t[n++].ne1 = (bb))
    T("token_embd.weight", m->tok, d, m->vocab);
    T("output_norm.weight", m->rms_final, d, 0);
    if (m->wcls) T("output.weight", m->wcls, d, m->vocab);
    char nm[64];
    for (int l = 0; l < m->layers; l++) {
#define L(sfx, ptr, a, bb) (snprintf(nm, sizeof nm, "blk.%d.%s", l, sfx), T(nm, ptr, a, bb))
        L("attn_q.weight", m->wq + l * d * d, d, d);
        L("attn_k.weight", m->wk + l * kv * d, d, kv);
        L("attn_v.weight", m->wv + l * kv * d, d, kv);
        L("attn_output.weight", m->wo + l * d * d, d, d);
        L("attn_norm.weight", m->rms_att + l * d, d, 0);
        L("ffn_gate.weight", m->w1 + l * h * d, d, h);
        L("ffn_down.weight", m->w2 + l * d * h, h, d);
        L("ffn_up.weight", m->w3 + l * h * d, d, h);
        L("ffn_norm.weight", m->rms_ffn + l * d, d, 0);
#undef L
    }
#undef T
    return n;
}

/* Bytes of one stored element of ggml type `type` (F32 0, F16 1, BF16 30). */
static size_t ggml_esize(uint32_t type) { return type == 0 ? 4 : 2; }

/* Appends n values of f in ggml type `type`. */
static void put_values(gbuf *b, const float *f, size_t n, uint32_t type) {
    if (type == 0) {
        put(b, f, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = type == 1 ? vz_f32_to_f16(f[i]) : vz_f32_to_bf16(f[i]);
        uint8_t le[2] = {(uint8_t)h, (uint8_t)(h >> 8)};
        put(b, le, 2);
    }
}

int vz_ckpt_build_gguf(const vz_ckpt_model *m, int with_vocab, uint8_t **out, size_t *size, vz_ckpt_gguf_off *off) {
    return vz_ckpt_build_gguf_ex(m, with_vocab, 0, 3, out, size, off);
}

int vz_ckpt_build_gguf_ex(const vz_ckpt_model *m, int with_vocab, uint32_t wtype, uint32_t version, uint8_t **out,
                          size_t *size, vz_ckpt_gguf_off *off) {
    gbuf b = {0};
    memset(off, 0, sizeof *off);
    gtensor *t = calloc((size_t)(9 * m->layers + 3), sizeof *t);
    int nt = gguf_tensor_list(m, t);
    put(&b, "GGUF", 4), put_u32(&b, version);
    off->n_tensors = b.n, put_u64(&b, (uint64_t)nt);
    off->n_kv = b.n, put_u64(&b, 0); /* patched below */
    off->first_key_len = b.n;
    int nkv = 10;
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.context_length", (uint32_t)m->seq);
    kv_u32(&b, "llama.embedding_length", (uint32_t)m->dim);
    kv_u32(&b, "llama.feed_forward_length", (uint32_t)m->hidden);
    kv_u32(&b, "llama.block_count", (uint32_t)m->layers);
    kv_u32(&b, "llama.attention.head_count", (uint32_t)m->heads);
    kv_u32(&b, "llama.attention.head_count_kv", (uint32_t)m->kv_heads);
    kv_f32(&b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_u32(&b, "llama.rope.dimension_count", (uint32_t)(m->dim / m->heads));
    kv_u32(&b, "general.alignment", 32);
    if (with_vocab) nkv += gguf_vocab(&b, m, off);
    else kv_u32(&b, "llama.vocab_size", (uint32_t)m->vocab), nkv++;
    for (int i = 0; i < 8; i++) b.p[off->n_kv + i] = (uint8_t)((uint64_t)nkv >> (8 * i));
    off->first_tinfo = b.n;
    uint64_t o = 0;
    for (int i = 0; i < nt; i++) {
        put_str(&b, t[i].name);
        put_u32(&b, t[i].ne1 ? 2 : 1);
        if (i == 0) off->first_ne0 = b.n;
        put_u64(&b, t[i].ne0);
        if (t[i].ne1) put_u64(&b, t[i].ne1);
        if (i == 0) off->first_type = b.n;
        uint32_t type = t[i].ne1 ? wtype : 0; /* norms stay F32, as llama.cpp's converter keeps them */
        put_u32(&b, type);
        put_u64(&b, o);
        o += (t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1) * ggml_esize(type) + 31) / 32 * 32;
    }
    static const uint8_t zero[32];
    put(&b, zero, (32 - b.n % 32) % 32);
    off->data_start = b.n;
    for (int i = 0; i < nt; i++) {
        uint32_t type = t[i].ne1 ? wtype : 0;
        size_t bytes = t[i].ne0 * (t[i].ne1 ? t[i].ne1 : 1) * ggml_esize(type);
        put_values(&b, t[i].f, bytes / ggml_esize(type), type);
        put(&b, zero, (32 - bytes % 32) % 32);
    }
    free(t);
    *out = b.p;
    *size = b.n;
    return 0;
}
