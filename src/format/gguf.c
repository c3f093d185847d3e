/*
 * gguf.c - GGUF v2/v3 reader (layout in gguf.h, spec: ggml docs/gguf.md).
 * Counts and lengths are checked against the bytes left before anything is
 * allocated. Llama metadata becomes a vz_config (interleaved RoPE, as
 * llama.cpp's converters store Q/K), ggml tensor names become Hugging Face
 * names with shape (ne1, ne0), and the tokenizer.ggml.* vocabulary becomes
 * the tokenizer. Only F32, F16 and BF16 tensors are supported.
 */
#include "format/gguf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "core/io.h"
#include "format/safetensors.h"
#include "tokenizer/tokenizer.h"

static const uint8_t value_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static const char *ggml_type_name(uint32_t t) {
    static const char *const names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
        "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8",
        "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* Q8_0 and Q4_0: blocks of 32 weights (an f16 scale d, then 32 int8 q, or
 * 16 bytes of 4-bit codes), read as vramzip's q8 / q4 with groups of 32. */
static int ggml_quant(uint32_t t) { return t == VZ_GGML_Q8_0 || t == VZ_GGML_Q4_0; }
static uint64_t ggml_block_bytes(uint32_t t) { return t == VZ_GGML_Q8_0 ? 34 : 18; }

static vz_status read_str(vz_rd *r, const uint8_t **s, uint64_t *len, const char *field) {
    VZ_TRY(vz_rd_u64(r, len, field));
    return vz_rd_bytes(r, s, *len, field);
}

/* Skips one value of type `type`; arrays of arrays are refused. */
static vz_status skip_value(vz_rd *r, uint32_t type, const char *key, vz_gguf_kv *kv) {
    if (type < 13 && value_size[type]) return vz_rd_skip(r, value_size[type], key);
    const uint8_t *s;
    uint64_t len;
    if (type == VZ_GGUF_STRING) return read_str(r, &s, &len, key);
    VZ_FAIL_IF(type != VZ_GGUF_ARRAY || !kv, VZ_ERR_FORMAT, "%s: key %s: unknown value type %u", r->what, key,
               (unsigned)type);
    VZ_TRY(vz_rd_u32(r, &kv->arr_type, key));
    VZ_TRY(vz_rd_u64(r, &kv->arr_n, key));
    kv->val = r->p + r->pos;
    uint32_t et = kv->arr_type;
    VZ_FAIL_IF(et == VZ_GGUF_ARRAY, VZ_ERR_UNSUPPORTED, "%s: key %s: arrays of arrays are not supported", r->what,
               key);
    VZ_FAIL_IF(et >= 13, VZ_ERR_FORMAT, "%s: key %s: unknown array element type %u", r->what, key, (unsigned)et);
    uint64_t left = r->size - r->pos, min = et == VZ_GGUF_STRING ? 8 : value_size[et];
    VZ_FAIL_IF(kv->arr_n > left / min, VZ_ERR_TRUNCATED, "%s: key %s: array count %llu exceeds the %llu bytes left",
               r->what, key, (unsigned long long)kv->arr_n, (unsigned long long)left);
    if (et != VZ_GGUF_STRING) return vz_rd_skip(r, kv->arr_n * min, key);
    for (uint64_t i = 0; i < kv->arr_n; i++) VZ_TRY(read_str(r, &s, &len, key));
    return VZ_OK;
}

static vz_status parse_kv(vz_gguf *g, vz_rd *r) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        vz_gguf_kv *kv = &g->kv[i];
        VZ_TRY(read_str(r, &kv->key, &kv->key_len, "metadata key"));
        char key[96];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key_len < 80 ? kv->key_len : 80), (const char *)kv->key);
        VZ_FAIL_IF(kv->key_len == 0 || kv->key_len > 65535 || memchr(kv->key, 0, kv->key_len), VZ_ERR_FORMAT,
                   "%s: metadata key %llu is empty, too long or has a NUL byte", r->what, (unsigned long long)i);
        VZ_TRY(vz_rd_u32(r, &kv->type, key));
        kv->val = r->p + r->pos;
        VZ_TRY(skip_value(r, kv->type, key, kv));
    }
    return VZ_OK;
}

static int cmp_kv(const void *a, const void *b) {
    const vz_gguf_kv *x = *(const vz_gguf_kv *const *)a, *y = *(const vz_gguf_kv *const *)b;
    uint64_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static vz_status check_dup_keys(const vz_gguf *g) {
    if (g->n_kv < 2) return VZ_OK;
    const vz_gguf_kv **v = malloc(g->n_kv * sizeof *v);
    VZ_FAIL_IF(!v, VZ_ERR_NOMEM, "%s: out of memory", g->what);
    for (uint64_t i = 0; i < g->n_kv; i++) v[i] = &g->kv[i];
    qsort(v, g->n_kv, sizeof *v, cmp_kv);
    const vz_gguf_kv *dup = NULL;
    for (uint64_t i = 1; i < g->n_kv && !dup; i++)
        if (cmp_kv(&v[i - 1], &v[i]) == 0) dup = v[i];
    free(v);
    VZ_FAIL_IF(dup, VZ_ERR_FORMAT, "%s: metadata key %.*s appears twice", g->what, (int)dup->key_len,
               (const char *)dup->key);
    return VZ_OK;
}

/* A metadata integer of any integer type, as int64 (0 if it does not fit). */
static int kv_int(const vz_gguf_kv *kv, int64_t *v) {
    const uint8_t *p = kv->val;
    switch (kv->type) {
    case VZ_GGUF_UINT8: *v = p[0]; return 1;
    case VZ_GGUF_INT8: *v = (int8_t)p[0]; return 1;
    case VZ_GGUF_UINT16: *v = vz_le16(p); return 1;
    case VZ_GGUF_INT16: *v = (int16_t)vz_le16(p); return 1;
    case VZ_GGUF_UINT32: *v = vz_le32(p); return 1;
    case VZ_GGUF_INT32: *v = (int32_t)vz_le32(p); return 1;
    case VZ_GGUF_UINT64: *v = (int64_t)vz_le64(p); return vz_le64(p) <= INT64_MAX;
    case VZ_GGUF_INT64: *v = (int64_t)vz_le64(p); return 1;
    }
    return 0;
}

static vz_status parse_alignment(vz_gguf *g) {
    g->alignment = 32;
    const vz_gguf_kv *kv = vz_gguf_find(g, "general.alignment");
    if (!kv) return VZ_OK;
    int64_t a = 0;
    VZ_FAIL_IF(!kv_int(kv, &a) || a < 1 || a > (1 << 20) || (a & (a - 1)), VZ_ERR_FORMAT,
               "%s: key general.alignment is not a power of two up to 2^20", g->what);
    g->alignment = (uint64_t)a;
    return VZ_OK;
}

static vz_status parse_tinfo(vz_gguf *g, vz_rd *r, vz_gguf_tinfo *t) {
    VZ_TRY(read_str(r, &t->name, &t->name_len, "tensor name"));
    VZ_FAIL_IF(t->name_len == 0 || t->name_len >= VZ_NAME_MAX || memchr(t->name, 0, t->name_len), VZ_ERR_FORMAT,
               "%s: a tensor name is empty, has a NUL byte or is longer than %d", g->what, VZ_NAME_MAX - 1);
    char name[VZ_NAME_MAX];
    snprintf(name, sizeof name, "%.*s", (int)t->name_len, (const char *)t->name);
    VZ_TRY(vz_rd_u32(r, &t->n_dims, name));
    VZ_FAIL_IF(t->n_dims < 1 || t->n_dims > 4, VZ_ERR_FORMAT, "%s: tensor %s: n_dims %u is not in 1..4", g->what,
               name, (unsigned)t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) {
        VZ_TRY(vz_rd_u64(r, &t->ne[d], name));
        VZ_FAIL_IF(t->ne[d] < 1 || t->ne[d] > (1ull << 40), VZ_ERR_FORMAT, "%s: tensor %s: dim %u = %llu is invalid",
                   g->what, name, (unsigned)d, (unsigned long long)t->ne[d]);
    }
    VZ_TRY(vz_rd_u32(r, &t->type, name));
    VZ_TRY(vz_rd_u64(r, &t->offset, name));
    VZ_FAIL_IF(t->type != VZ_GGML_F32 && t->type != VZ_GGML_F16 && t->type != VZ_GGML_BF16 && !ggml_quant(t->type),
               VZ_ERR_UNSUPPORTED, "%s: tensor %s: unsupported tensor type %s (%u)", g->what, name,
               ggml_type_name(t->type), (unsigned)t->type);
    VZ_FAIL_IF(ggml_quant(t->type) && (t->ne[0] % 32 != 0 || t->n_dims != 2), VZ_ERR_FORMAT,
               "%s: tensor %s: type %s needs 2 dimensions, the inner one a multiple of 32 (%llu)", g->what, name,
               ggml_type_name(t->type), (unsigned long long)t->ne[0]);
    return VZ_OK;
}

/* Checks every tensor's data lies in the data section, aligned. */
static vz_status check_data(const vz_gguf *g) {
    uint64_t avail = g->size - g->data_off;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const vz_gguf_tinfo *t = &g->ti[i];
        uint64_t n = t->type == VZ_GGML_F32 ? 4 : 2, end = 0;
        if (ggml_quant(t->type)) n = ggml_block_bytes(t->type); /* per 32 weights of ne[0] */
        for (uint32_t d = 0; d < t->n_dims; d++)
            VZ_FAIL_IF(vz_mul_ovf(n, d == 0 && ggml_quant(t->type) ? t->ne[0] / 32 : t->ne[d], &n), VZ_ERR_FORMAT,
                       "%s: tensor %.*s: size overflows", g->what, (int)t->name_len, (const char *)t->name);
        VZ_FAIL_IF(t->offset % g->alignment, VZ_ERR_FORMAT, "%s: tensor %.*s: offset %llu is not aligned to %llu",
                   g->what, (int)t->name_len, (const char *)t->name, (unsigned long long)t->offset,
                   (unsigned long long)g->alignment);
        VZ_FAIL_IF(vz_add_ovf(t->offset, n, &end) || end > avail, VZ_ERR_TRUNCATED,
                   "%s: tensor %.*s: data [%llu, +%llu) runs past the end of the file (%llu data bytes)", g->what,
                   (int)t->name_len, (const char *)t->name, (unsigned long long)t->offset, (unsigned long long)n,
                   (unsigned long long)avail);
    }
    return VZ_OK;
}

static vz_status parse_all(vz_gguf *g, vz_rd *r) {
    const uint8_t *magic;
    VZ_TRY(vz_rd_bytes(r, &magic, 4, "magic"));
    VZ_FAIL_IF(memcmp(magic, "GGUF", 4) != 0, VZ_ERR_MAGIC, "%s: field 'magic' is not GGUF", g->what);
    VZ_TRY(vz_rd_u32(r, &g->version, "version"));
    VZ_FAIL_IF(g->version > 3, VZ_ERR_VERSION, "%s: field 'version' %u is newer than 3", g->what, g->version);
    VZ_FAIL_IF(g->version < 2, VZ_ERR_UNSUPPORTED, "%s: field 'version' %u (GGUF v1) is not supported", g->what,
               g->version);
    VZ_TRY(vz_rd_u64(r, &g->n_tensors, "n_tensors"));
    VZ_TRY(vz_rd_u64(r, &g->n_kv, "n_kv"));
    uint64_t left = r->size - r->pos;
    /* smallest entries: a kv is 8+1+4+1 bytes, a tensor info 8+1+4+8+4+8 */
    VZ_FAIL_IF(g->n_kv > left / 14, VZ_ERR_FORMAT, "%s: field 'n_kv' %llu cannot fit in %llu bytes", g->what,
               (unsigned long long)g->n_kv, (unsigned long long)left);
    VZ_FAIL_IF(g->n_tensors > left / 33, VZ_ERR_FORMAT, "%s: field 'n_tensors' %llu cannot fit in %llu bytes",
               g->what, (unsigned long long)g->n_tensors, (unsigned long long)left);
    VZ_FAIL_IF(g->n_tensors > (1u << 20), VZ_ERR_UNSUPPORTED, "%s: field 'n_tensors' %llu exceeds 2^20", g->what,
               (unsigned long long)g->n_tensors);
    g->kv = calloc(g->n_kv + 1, sizeof *g->kv);
    g->ti = calloc(g->n_tensors + 1, sizeof *g->ti);
    VZ_FAIL_IF(!g->kv || !g->ti, VZ_ERR_NOMEM, "%s: out of memory", g->what);
    VZ_TRY(parse_kv(g, r));
    VZ_TRY(check_dup_keys(g));
    VZ_TRY(parse_alignment(g));
    for (uint64_t i = 0; i < g->n_tensors; i++) VZ_TRY(parse_tinfo(g, r, &g->ti[i]));
    VZ_TRY(vz_rd_align(r, g->alignment, "tensor data alignment padding"));
    g->data_off = r->pos;
    return check_data(g);
}

vz_status vz_gguf_parse(vz_gguf *g, const uint8_t *p, uint64_t size, const char *what) {
    memset(g, 0, sizeof *g);
    g->p = p;
    g->size = size;
    g->what = what;
    vz_rd r = vz_rd_init(p, size, what);
    vz_status s = parse_all(g, &r);
    if (s != VZ_OK) vz_gguf_free(g);
    return s;
}

void vz_gguf_free(vz_gguf *g) {
    if (!g) return;
    free(g->kv);
    free(g->ti);
    g->kv = NULL;
    g->ti = NULL;
}

const vz_gguf_kv *vz_gguf_find(const vz_gguf *g, const char *key) {
    size_t n = strlen(key);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key_len == n && memcmp(g->kv[i].key, key, n) == 0) return &g->kv[i];
    return NULL;
}

/* ---- metadata -> config ------------------------------------------------ */

static vz_status meta_int(const vz_gguf *g, const char *key, int required, int64_t def, int64_t lo, int32_t *out) {
    const vz_gguf_kv *kv = vz_gguf_find(g, key);
    if (!kv) {
        VZ_FAIL_IF(required, VZ_ERR_FORMAT, "%s: key %s is missing", g->what, key);
        *out = (int32_t)def;
        return VZ_OK;
    }
    int64_t v = 0;
    VZ_FAIL_IF(!kv_int(kv, &v) || v < lo || v > INT32_MAX, VZ_ERR_FORMAT,
               "%s: key %s is not an integer in [%lld, 2^31)", g->what, key, (long long)lo);
    *out = (int32_t)v;
    return VZ_OK;
}

static vz_status meta_float(const vz_gguf *g, const char *key, int required, float def, float *out) {
    const vz_gguf_kv *kv = vz_gguf_find(g, key);
    if (!kv) {
        VZ_FAIL_IF(required, VZ_ERR_FORMAT, "%s: key %s is missing", g->what, key);
        *out = def;
        return VZ_OK;
    }
    if (kv->type == VZ_GGUF_FLOAT32) {
        memcpy(out, kv->val, 4); /* the buffer is little-endian, as is every supported host */
    } else if (kv->type == VZ_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
    } else {
        return VZ_FAIL(VZ_ERR_FORMAT, "%s: key %s is not a float", g->what, key);
    }
    return VZ_OK;
}

/* A string value as (pointer, length); 0 when absent or not a string. */
static int meta_str(const vz_gguf *g, const char *key, const char **s, int *len) {
    const vz_gguf_kv *kv = vz_gguf_find(g, key);
    if (!kv || kv->type != VZ_GGUF_STRING) return 0;
    uint64_t n = vz_le64(kv->val);
    *s = (const char *)kv->val + 8;
    *len = n > 255 ? 255 : (int)n;
    return 1;
}

static int meta_str_is(const vz_gguf *g, const char *key, const char *want) {
    const char *s;
    int n;
    return meta_str(g, key, &s, &n) && (size_t)n == strlen(want) && memcmp(s, want, (size_t)n) == 0;
}

static vz_status load_config(vz_config *c, const vz_gguf *g) {
    const char *a = NULL;
    int alen = 0;
    VZ_FAIL_IF(!meta_str(g, "general.architecture", &a, &alen), VZ_ERR_FORMAT,
               "%s: key general.architecture is missing or not a string", g->what);
    const int qwen2 = alen == 5 && !memcmp(a, "qwen2", 5);
    VZ_FAIL_IF(!((alen == 5 && !memcmp(a, "llama", 5)) || (alen == 7 && !memcmp(a, "mistral", 7)) || qwen2),
               VZ_ERR_UNSUPPORTED, "%s: key general.architecture = '%.*s' is not supported (llama, mistral, qwen2)",
               g->what, alen, a);
    snprintf(c->arch, sizeof c->arch, "%.*s", alen, a);
    char k[96];
#define KEY(sfx) (snprintf(k, sizeof k, "%s.%s", c->arch, sfx), k)
    VZ_TRY(meta_int(g, KEY("embedding_length"), 1, 0, 1, &c->dim));
    VZ_TRY(meta_int(g, KEY("feed_forward_length"), 1, 0, 1, &c->hidden_dim));
    VZ_TRY(meta_int(g, KEY("block_count"), 1, 0, 1, &c->n_layers));
    VZ_TRY(meta_int(g, KEY("context_length"), 1, 0, 1, &c->max_seq_len));
    VZ_TRY(meta_int(g, KEY("attention.head_count"), 1, 0, 1, &c->n_heads));
    VZ_TRY(meta_int(g, KEY("attention.head_count_kv"), 0, c->n_heads, 1, &c->n_kv_heads));
    VZ_TRY(meta_float(g, KEY("attention.layer_norm_rms_epsilon"), 1, 0, &c->rms_eps));
    VZ_TRY(meta_float(g, KEY("rope.freq_base"), 0, 10000.0f, &c->rope_theta));
    /* head_dim: embedding_length / head_count unless key_length says (llama.cpp writes it for an explicit
     * head_dim, as Mistral-Nemo's); value_length must agree */
    const int kl = vz_gguf_find(g, KEY("attention.key_length")) != NULL;
    VZ_FAIL_IF(!kl && c->dim % c->n_heads != 0, VZ_ERR_FORMAT, "%s: key %s.embedding_length %d is not a multiple of "
               "head_count %d (and no attention.key_length)", g->what, c->arch, c->dim, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    VZ_TRY(meta_int(g, KEY("attention.key_length"), 0, c->head_dim, 1, &c->head_dim));
    int32_t vl = 0;
    VZ_TRY(meta_int(g, KEY("attention.value_length"), 0, c->head_dim, 1, &vl));
    VZ_FAIL_IF(vl != c->head_dim, VZ_ERR_UNSUPPORTED, "%s: key %s %d differs from attention.key_length %d", g->what,
               k, vl, c->head_dim);
    int32_t rd = 0;
    VZ_TRY(meta_int(g, KEY("rope.dimension_count"), 0, c->head_dim, 1, &rd));
    VZ_FAIL_IF(rd != c->head_dim, VZ_ERR_UNSUPPORTED, "%s: key %s: partial rotary (%d of %d) is not supported",
               g->what, k, rd, c->head_dim);
    const char *st;
    int stlen;
    VZ_FAIL_IF(meta_str(g, KEY("rope.scaling.type"), &st, &stlen) && !(stlen == 4 && !memcmp(st, "none", 4)),
               VZ_ERR_UNSUPPORTED, "%s: key %s = '%.*s' is not supported", g->what, k, stlen, st);
    const vz_gguf_kv *tok = vz_gguf_find(g, "tokenizer.ggml.tokens");
    VZ_FAIL_IF(tok && (tok->type != VZ_GGUF_ARRAY || tok->arr_type != VZ_GGUF_STRING || tok->arr_n > INT32_MAX),
               VZ_ERR_FORMAT, "%s: key tokenizer.ggml.tokens is not an array of strings", g->what);
    VZ_TRY(meta_int(g, KEY("vocab_size"), 0, tok ? (int64_t)tok->arr_n : 0, 1, &c->vocab_size));
#undef KEY
    VZ_TRY(meta_int(g, "tokenizer.ggml.bos_token_id", 0, -1, 0, &c->bos_id));
    VZ_TRY(meta_int(g, "tokenizer.ggml.eos_token_id", 0, -1, 0, &c->eos_id));
    /* besides eos (which vz_config_stop_ids puts first): llama.cpp's end of turn and end of message */
    static const char *const kStops[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
    for (int i = 0; i < 2; i++) {
        int32_t id = -1;
        VZ_TRY(meta_int(g, kStops[i], 0, -1, 0, &id));
        vz_config_add_eos(c, id);
    }
    /* llama.cpp permutes llama's q/k rows for adjacent-pair RoPE; qwen2 keeps
     * Hugging Face's rows and rotate-half (its NEOX rope type), and has q/k/v biases. */
    c->rope_interleaved = !qwen2;
    c->qkv_bias = qwen2;
    return VZ_OK;
}

/* ---- tensors ------------------------------------------------------------ */

/* ggml names (llama.cpp's LLM_TENSOR_NAMES) -> Hugging Face names. */
static const char *const global_names[][2] = {
    {"token_embd.weight", VZ_NAME_TOK_EMB}, {"output_norm.weight", VZ_NAME_FINAL_NORM},
    {"output.weight", VZ_NAME_OUTPUT}};
static const char *const layer_names[][2] = {
    {"attn_norm.weight", VZ_SFX_ATTN_NORM}, {"attn_q.weight", VZ_SFX_WQ},   {"attn_k.weight", VZ_SFX_WK},
    {"attn_v.weight", VZ_SFX_WV},           {"attn_output.weight", VZ_SFX_WO}, {"ffn_norm.weight", VZ_SFX_FFN_NORM},
    {"ffn_gate.weight", VZ_SFX_W1},         {"ffn_down.weight", VZ_SFX_W2}, {"ffn_up.weight", VZ_SFX_W3},
    {"attn_q.bias", VZ_SFX_BQ},             {"attn_k.bias", VZ_SFX_BK},     {"attn_v.bias", VZ_SFX_BV}};

/* Writes the canonical name of a ggml tensor name (NUL-terminated, short). */
static void canonical_name(char *out, const char *name) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(name, global_names[i][0])) {
            snprintf(out, VZ_NAME_MAX, "%s", global_names[i][1]);
            return;
        }
    snprintf(out, VZ_NAME_MAX, "%s", name); /* unknown names are kept */
    if (strncmp(name, "blk.", 4) != 0) return;
    const char *p = name + 4;
    int layer = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7) layer = layer * 10 + (*p++ - '0'), digits++;
    if (digits == 0 || *p != '.') return;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (!strcmp(p + 1, layer_names[i][0])) {
            snprintf(out, VZ_NAME_MAX, "model.layers.%d.%s", layer, layer_names[i][1]);
            return;
        }
}

/* A Q8_0 or Q4_0 tensor as a q8 / q4 blob (group 32, symmetric) at dst
 * (16-byte aligned): data, then params (8 bytes) at the next 16 bytes. The values are llama.cpp's exactly: q * d,
 * and (code - 8) * d, products exact in f32 either way; Q4_0 keeps the low
 * nibbles of a block for weights 0-15 and the high ones for 16-31, q4 the
 * weights 2i and 2i+1 in byte i. Returns the bytes written. */
static uint64_t quant_blob(const vz_gguf_tinfo *ti, const uint8_t *src, vz_tensor *t, uint8_t *dst) {
    const uint64_t rows = (uint64_t)t->rows, cols = (uint64_t)t->cols, gpr = cols / 32, q8 = ti->type == VZ_GGML_Q8_0;
    const uint64_t codes = q8 ? rows * cols : rows * cols / 2, scales = vz_al16(codes);
    uint8_t *d = dst, *p = dst + vz_al16(scales + 2 * rows * gpr);
    p[0] = 1, p[1] = p[2] = p[3] = 0;
    vz_st32(p + 4, 32);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t b = 0; b < gpr; b++) {
            const uint8_t *blk = src + (r * gpr + b) * ggml_block_bytes(ti->type);
            memcpy(d + scales + 2 * (r * gpr + b), blk, 2); /* the f16 scale, little-endian both */
            if (q8) {
                memcpy(d + r * cols + 32 * b, blk + 2, 32);
            } else {
                uint8_t *o = d + (r * cols + 32 * b) / 2;
                for (int i = 0; i < 16; i++) {
                    const int e0 = 2 * i, e1 = 2 * i + 1; /* q4's weights in byte i */
                    const uint8_t c0 = e0 < 16 ? blk[2 + e0] & 15 : blk[2 + e0 - 16] >> 4;
                    const uint8_t c1 = e1 < 16 ? blk[2 + e1] & 15 : blk[2 + e1 - 16] >> 4;
                    o[i] = (uint8_t)(c0 | c1 << 4);
                }
            }
        }
    memset(d + codes, 0, scales - codes);
    t->codec = q8 ? VZ_CODEC_q8 : VZ_CODEC_q4;
    t->dtype = VZ_DTYPE_F32; /* what llama.cpp dequantizes to */
    t->params = p, t->params_size = 8;
    t->data = d, t->size = scales + 2 * rows * gpr;
    return vz_al16(t->size) + 8;
}

static vz_status load_tensors(vz_model *m, const vz_gguf *g) {
    m->tensors = calloc(g->n_tensors + 1, sizeof *m->tensors);
    VZ_FAIL_IF(!m->tensors, VZ_ERR_NOMEM, "%s: out of memory", g->what);
    uint64_t qbytes = 0; /* one owned arena for the q8 / q4 blobs of Q8_0 / Q4_0 tensors */
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (ggml_quant(g->ti[i].type)) {
            const uint64_t n = g->ti[i].ne[0] * g->ti[i].ne[1], q8 = g->ti[i].type == VZ_GGML_Q8_0;
            qbytes += vz_al16(vz_al16(vz_al16(q8 ? n : n / 2) + n / 16) + 8); /* quant_blob's bytes, aligned */
        }
    uint8_t *arena = qbytes ? malloc(qbytes) : NULL;
    VZ_FAIL_IF(qbytes && !arena, VZ_ERR_NOMEM, "%s: out of memory for %llu bytes of quantized tensors", g->what,
               (unsigned long long)qbytes);
    VZ_TRY(vz_model_own(m, arena));
    uint64_t qoff = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const vz_gguf_tinfo *ti = &g->ti[i];
        vz_tensor *t = &m->tensors[m->n_tensors++];
        char raw[VZ_NAME_MAX];
        snprintf(raw, sizeof raw, "%.*s", (int)ti->name_len, (const char *)ti->name);
        /* llama.cpp's Llama 3.1+ files carry their rope scaling as per-pair divisors (bound by vz_model_bind) */
        if (!strcmp(raw, VZ_NAME_ROPE_FREQS)) m->cfg.rope_scaling.type = VZ_ROPE_FACTORS;
        canonical_name(t->name, raw);
        int64_t shape[4];
        for (uint32_t d = 0; d < ti->n_dims; d++) shape[d] = (int64_t)ti->ne[ti->n_dims - 1 - d];
        VZ_FAIL_IF(vz_tensor_set_shape(t, (int32_t)ti->n_dims, shape) != 0, VZ_ERR_FORMAT,
                   "%s: tensor %s: shape is too large", g->what, raw);
        if (ggml_quant(ti->type)) {
            qoff += vz_al16(quant_blob(ti, g->p + g->data_off + ti->offset, t, arena + qoff));
            continue;
        }
        t->dtype = ti->type == VZ_GGML_F32 ? VZ_DTYPE_F32 : ti->type == VZ_GGML_F16 ? VZ_DTYPE_F16 : VZ_DTYPE_BF16;
        t->codec = VZ_CODEC_raw;
        t->data = g->p + g->data_off + ti->offset;
        t->size = (uint64_t)t->rows * (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
    }
    const char *dup = vz_tensors_find_dup(m->tensors, m->n_tensors);
    VZ_FAIL_IF(dup, VZ_ERR_FORMAT, "%s: tensor %s appears twice", g->what, dup);
    m->cfg.tied_embeddings = vz_model_find(m, VZ_NAME_OUTPUT) == NULL;
    if (m->cfg.vocab_size == 0) { /* no vocabulary in the file: take it from the embedding */
        const vz_tensor *e = vz_model_find(m, VZ_NAME_TOK_EMB);
        VZ_FAIL_IF(!e || e->ndim != 2 || e->rows > INT32_MAX, VZ_ERR_FORMAT,
                   "%s: no tokenizer.ggml.tokens and no usable token_embd.weight to size the vocabulary", g->what);
        m->cfg.vocab_size = (int32_t)e->rows;
    }
    return VZ_OK;
}

/* ---- tokenizer ---------------------------------------------------------- */

/* Copies a numeric array of n 4-byte elements of type `type`; NULL if absent. */
static vz_status meta_array4(const vz_gguf *g, const char *key, uint32_t type, uint64_t n, void **out) {
    *out = NULL;
    const vz_gguf_kv *kv = vz_gguf_find(g, key);
    if (!kv) return VZ_OK;
    VZ_FAIL_IF(kv->type != VZ_GGUF_ARRAY || kv->arr_type != type || kv->arr_n != n, VZ_ERR_FORMAT,
               "%s: key %s is not an array of %llu %s", g->what, key, (unsigned long long)n,
               type == VZ_GGUF_FLOAT32 ? "float32" : "int32");
    *out = malloc(n * 4 + 4);
    VZ_FAIL_IF(!*out, VZ_ERR_NOMEM, "%s: out of memory for %s", g->what, key);
    memcpy(*out, kv->val, n * 4);
    return VZ_OK;
}

static vz_status build_tokenizer(vz_model *m, const vz_gguf *g, const vz_gguf_kv *tok) {
    uint64_t n = tok->arr_n;
    const char **pieces = calloc(n + 1, sizeof *pieces);
    uint32_t *lens = calloc(n + 1, sizeof *lens);
    float *scores = NULL;
    int32_t *types = NULL;
    vz_status s = pieces && lens ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory for the vocabulary", g->what);
    vz_rd r = vz_rd_init(tok->val, g->size - (uint64_t)(tok->val - g->p), g->what);
    for (uint64_t i = 0; i < n && s == VZ_OK; i++) { /* bounds were checked by the parser */
        uint64_t len = 0;
        const uint8_t *p = NULL;
        s = read_str(&r, &p, &len, "tokenizer.ggml.tokens");
        if (s == VZ_OK && len > UINT32_MAX) s = VZ_FAIL(VZ_ERR_FORMAT, "%s: token %llu is too long", g->what,
                                                        (unsigned long long)i);
        pieces[i] = (const char *)p;
        lens[i] = (uint32_t)len;
    }
    if (s == VZ_OK) s = meta_array4(g, "tokenizer.ggml.scores", VZ_GGUF_FLOAT32, n, (void **)&scores);
    if (s == VZ_OK) s = meta_array4(g, "tokenizer.ggml.token_type", VZ_GGUF_INT32, n, (void **)&types);
    if (s == VZ_OK && !scores && !(scores = calloc(n + 1, sizeof *scores)))
        s = VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory for the scores", g->what);
    int32_t unk = 0;
    if (s == VZ_OK) s = meta_int(g, "tokenizer.ggml.unknown_token_id", 0, 0, 0, &unk);
    const vz_gguf_kv *sp = vz_gguf_find(g, "tokenizer.ggml.add_space_prefix");
    int32_t dummy = sp && sp->type == VZ_GGUF_BOOL ? sp->val[0] != 0 : 1;
    if (s == VZ_OK)
        s = vz_tokenizer_from_vocab(&m->tok, (int32_t)n, pieces, lens, scores, types, 1, m->cfg.bos_id,
                                    m->cfg.eos_id, unk, dummy, g->what);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return s;
}

/* ---- byte-level ("gpt2") vocabularies ---------------------------------- */

#define GGUF_MAX_TOKEN 4096 /* bytes of one vocabulary token (a byte-level token is far shorter) */

/* llama.cpp's tokenizer.ggml.pre names -> the pre-tokenizer regex, NFC and
 * ignore_merges of the Hugging Face tokenizer.json of that family. */
static const struct {
    const char *pre, *regex;
    int nfc, ignore_merges;
} kBpePre[] = {
    {"llama-bpe",
     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     0, 1},
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 1, 0},
    {"gpt-2", NULL, 0, 0}, /* ByteLevel's own regex */
};

/* The GGUF vocabulary as the tokenizer.json of its family (a cJSON tree). */
static cJSON *bpe_json(const vz_gguf *g, const vz_gguf_kv *tok, const int32_t *types, int k, const vz_model *m) {
    cJSON *root = cJSON_CreateObject(), *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *model = cJSON_AddObjectToObject(root, "model"), *vocab = NULL, *merges = NULL;
    if (model) {
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddBoolToObject(model, "ignore_merges", kBpePre[k].ignore_merges);
        vocab = cJSON_AddObjectToObject(model, "vocab");
        merges = cJSON_AddArrayToObject(model, "merges");
    }
    if (kBpePre[k].nfc) cJSON_AddItemToObject(root, "normalizer", cJSON_Parse("{\"type\": \"NFC\"}"));
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    if (pre && kBpePre[k].regex) {
        cJSON_AddStringToObject(pre, "type", "Sequence");
        cJSON *list = cJSON_AddArrayToObject(pre, "pretokenizers"), *sp = cJSON_CreateObject();
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(sp, "type", "Split");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(sp, "pattern"), "Regex", kBpePre[k].regex);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddFalseToObject(bl, "use_regex");
        cJSON_AddItemToArray(list, sp), cJSON_AddItemToArray(list, bl);
    } else if (pre) {
        cJSON_AddStringToObject(pre, "type", "ByteLevel");
    }
    const vz_gguf_kv *ab = vz_gguf_find(g, "tokenizer.ggml.add_bos_token");
    char buf[GGUF_MAX_TOKEN + 1];
    vz_rd r = vz_rd_init(tok->val, g->size - (uint64_t)(tok->val - g->p), g->what);
    for (uint64_t i = 0; i < tok->arr_n && vocab; i++) { /* bounds were checked by the parser */
        uint64_t len = 0;
        const uint8_t *p = NULL;
        if (read_str(&r, &p, &len, "tokenizer.ggml.tokens") != VZ_OK || len == 0 || len > GGUF_MAX_TOKEN) break;
        memcpy(buf, p, len), buf[len] = '\0';
        if (memchr(buf, 0, len)) break;
        cJSON_AddNumberToObject(vocab, buf, (double)i);
        const int32_t ty = types ? types[i] : 1;
        if (ty == 3 || ty == 4) { /* llama.cpp's CONTROL and USER_DEFINED: added tokens */
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", (double)i);
            cJSON_AddStringToObject(e, "content", buf);
            cJSON_AddBoolToObject(e, "special", ty == 3);
            cJSON_AddItemToArray(added, e);
        }
        if ((int64_t)i == m->cfg.bos_id && ab && ab->type == VZ_GGUF_BOOL && ab->val[0]) {
            cJSON *pp = cJSON_AddObjectToObject(root, "post_processor"), *single = cJSON_AddArrayToObject(pp, "single");
            cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
            cJSON *st = cJSON_CreateObject(), *sq = cJSON_CreateObject();
            cJSON_AddStringToObject(cJSON_AddObjectToObject(st, "SpecialToken"), "id", buf);
            cJSON_AddStringToObject(cJSON_AddObjectToObject(sq, "Sequence"), "id", "A");
            cJSON_AddItemToArray(single, st), cJSON_AddItemToArray(single, sq);
        }
    }
    const vz_gguf_kv *mg = vz_gguf_find(g, "tokenizer.ggml.merges");
    if (mg && mg->type == VZ_GGUF_ARRAY && mg->arr_type == VZ_GGUF_STRING && merges) {
        vz_rd q = vz_rd_init(mg->val, g->size - (uint64_t)(mg->val - g->p), g->what);
        for (uint64_t i = 0; i < mg->arr_n; i++) {
            uint64_t len = 0;
            const uint8_t *p = NULL;
            if (read_str(&q, &p, &len, "tokenizer.ggml.merges") != VZ_OK || len > 2 * GGUF_MAX_TOKEN) break;
            char *s = malloc(len + 1);
            if (!s) break;
            memcpy(s, p, len), s[len] = '\0';
            cJSON_AddItemToArray(merges, cJSON_CreateString(s));
            free(s);
        }
    }
    return root;
}

/* A "gpt2" vocabulary of a pre-tokenizer named in kBpePre: built as its
 * tokenizer.json and read by vz_tokenizer_from_json (so a .vz keeps it as
 * TJSN); other pre-tokenizers load without a tokenizer (-z gives one). */
static vz_status build_bpe_tokenizer(vz_model *m, const vz_gguf *g, const vz_gguf_kv *tok) {
    int k = -1;
    for (int i = 0; i < (int)(sizeof kBpePre / sizeof kBpePre[0]); i++)
        if (meta_str_is(g, "tokenizer.ggml.pre", kBpePre[i].pre)) k = i;
    if (k < 0) return VZ_OK;
    int32_t *types = NULL;
    VZ_TRY(meta_array4(g, "tokenizer.ggml.token_type", VZ_GGUF_INT32, tok->arr_n, (void **)&types));
    cJSON *root = bpe_json(g, tok, types, k, m);
    free(types);
    char *js = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    VZ_FAIL_IF(!js, VZ_ERR_NOMEM, "%s: out of memory for the tokenizer", g->what);
    char what[300];
    snprintf(what, sizeof what, "%s: tokenizer.ggml (gpt2, pre %s)", g->what, kBpePre[k].pre);
    vz_status s = vz_tokenizer_from_json(&m->tok, (const uint8_t *)js, strlen(js), what);
    free(js);
    return s;
}

static vz_status load_tokenizer(vz_model *m, const vz_gguf *g) {
    const vz_gguf_kv *tok = vz_gguf_find(g, "tokenizer.ggml.tokens");
    /* SentencePiece ("llama") and byte-level ("gpt2") vocabularies; others load without a tokenizer. */
    const int spm = meta_str_is(g, "tokenizer.ggml.model", "llama");
    const int bpe = meta_str_is(g, "tokenizer.ggml.model", "gpt2");
    if (!tok || (!spm && !bpe)) return VZ_OK;
    VZ_FAIL_IF((int64_t)tok->arr_n != m->cfg.vocab_size, VZ_ERR_SHAPE,
               "%s: key tokenizer.ggml.tokens has %llu entries, vocab_size is %d", g->what,
               (unsigned long long)tok->arr_n, m->cfg.vocab_size);
    return spm ? build_tokenizer(m, g, tok) : build_bpe_tokenizer(m, g, tok);
}

/* tokenizer.chat_template (optional): the Jinja template llama.cpp's
 * converter copies from tokenizer_config.json (vz_gguf_parse has bounded
 * the string by the file). */
static vz_status load_chat_template(vz_model *m, const vz_gguf *g) {
    const vz_gguf_kv *kv = vz_gguf_find(g, "tokenizer.chat_template");
    if (!kv) return VZ_OK;
    VZ_FAIL_IF(kv->type != VZ_GGUF_STRING, VZ_ERR_FORMAT, "%s: key tokenizer.chat_template is not a string", g->what);
    char what[300];
    snprintf(what, sizeof what, "%s: tokenizer.chat_template", g->what);
    return vz_model_set_chat_template(m, (const char *)kv->val + 8, (size_t)vz_le64(kv->val), what);
}

vz_status vz_gguf_load(vz_model *m, const uint8_t *p, uint64_t size, const char *what) {
    snprintf(m->format, sizeof m->format, "gguf");
    vz_gguf g;
    VZ_TRY(vz_gguf_parse(&g, p, size, what));
    vz_status s = load_config(&m->cfg, &g);
    if (s == VZ_OK) s = load_tensors(m, &g);
    if (s == VZ_OK) s = load_tokenizer(m, &g);
    if (s == VZ_OK) s = load_chat_template(m, &g);
    vz_gguf_free(&g);
    return s;
}

vz_status vz_read_gguf(vz_model *m, const char *path, const vz_model_opts *o) {
    (void)o;
    vz_map *map = NULL;
    VZ_TRY(vz_model_add_map(m, &map));
    VZ_TRY(vz_map_open(map, path));
    return vz_gguf_load(m, map->data, map->size, path);
}
