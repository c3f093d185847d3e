/*
 * tiny_vz.c - see tiny_vz.h. Weights are N(0, 0.3^2) (norms around 1) from
 * the test RNG seeded per tensor name, rounded to the dtype; a few exact
 * zeros and a subnormal are planted so codecs meet edge cases.
 */
#include "tiny_vz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "format/vz_write.h"
#include "testutil.h"
#include <xxhash.h>

typedef struct tiny_t {
    char name[VZ_NAME_MAX];
    int32_t ndim;
    int64_t shape[2];
} tiny_t;

static int tiny_list(tiny_t *t) {
    int n = 0;
    const int64_t d = TINY_DIM, h = TINY_HIDDEN, q = TINY_DIM, kv = TINY_DIM / TINY_HEADS * TINY_KV_HEADS;
#define ADD(nm, nd, a, b) (snprintf(t[n].name, VZ_NAME_MAX, "%s", nm), t[n].ndim = nd, t[n].shape[0] = a, \
                           t[n].shape[1] = b, n++)
    ADD("model.embed_tokens.weight", 2, TINY_VOCAB, d);
    char nm[VZ_NAME_MAX];
    const struct { const char *sfx; int64_t r, c; } L[] = {
        {"input_layernorm.weight", d, 0},  {"self_attn.q_proj.weight", q, d}, {"self_attn.k_proj.weight", kv, d},
        {"self_attn.v_proj.weight", kv, d}, {"self_attn.o_proj.weight", d, q}, {"post_attention_layernorm.weight", d, 0},
        {"mlp.gate_proj.weight", h, d},    {"mlp.down_proj.weight", d, h},    {"mlp.up_proj.weight", h, d},
    };
    for (int l = 0; l < TINY_LAYERS; l++)
        for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, L[k].sfx);
            ADD(nm, L[k].c ? 2 : 1, L[k].r, L[k].c ? L[k].c : 1);
        }
    ADD("model.norm.weight", 1, d, 1);
    ADD("lm_head.weight", 2, TINY_VOCAB, d);
#undef ADD
    return n;
}

static uint64_t name_seed(const char *name, uint64_t seed) {
    uint64_t h = seed ^ 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

/* Approximately N(0, 1) without libm (sum of 4 uniforms), so the bytes are
 * identical on every platform and the golden files stay reproducible. */
static float tiny_randn(uint64_t *st) {
    float s = 0;
    for (int k = 0; k < 4; k++) s += (float)(vz_test_rand(st) >> 40) * (1.0f / 16777216.0f);
    return (s - 2.0f) * 1.7320508f;
}

static uint8_t *gen(const tiny_t *t, vz_dtype dt, uint64_t seed, uint64_t *size) {
    uint64_t n = (uint64_t)t->shape[0] * (uint64_t)(t->ndim == 2 ? t->shape[1] : 1), es = dt == VZ_DTYPE_F32 ? 4 : 2;
    uint8_t *p = malloc(n * es);
    if (!p) return NULL;
    uint64_t st = name_seed(t->name, seed);
    for (uint64_t i = 0; i < n; i++) {
        float v = t->ndim == 1 ? 1.0f + 0.1f * tiny_randn(&st) : 0.3f * tiny_randn(&st);
        if (t->ndim == 2 && i % 97 == 5) v = 0.0f;
        if (t->ndim == 2 && i == 7) v = 1e-40f; /* f32 subnormal; bf16 keeps it, f16 flushes */
        if (dt == VZ_DTYPE_F32) memcpy(p + 4 * i, &v, 4);
        else {
            uint16_t hv = dt == VZ_DTYPE_BF16 ? vz_f32_to_bf16(v) : vz_f32_to_f16(v);
            p[2 * i] = (uint8_t)hv;
            p[2 * i + 1] = (uint8_t)(hv >> 8);
        }
    }
    *size = n * es;
    return p;
}

uint8_t *tiny_vz_tensor_bytes(const char *name, vz_dtype dtype, uint64_t seed, uint64_t *size) {
    tiny_t t[64];
    int n = tiny_list(t);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return gen(&t[i], dtype, seed, size);
    return NULL;
}

static vz_status set_vocab(vz_writer *w) {
    static const char *base[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "\xe2\x96\x81" "the", "\xe2\x96\x81" "a"};
    const char *pieces[TINY_VOCAB];
    char letters[26][2];
    uint32_t lens[TINY_VOCAB];
    float scores[TINY_VOCAB];
    int32_t types[TINY_VOCAB];
    for (int i = 0; i < TINY_VOCAB; i++) {
        if (i < 6) pieces[i] = base[i];
        else {
            letters[i - 6][0] = (char)('a' + i - 6);
            letters[i - 6][1] = '\0';
            pieces[i] = letters[i - 6];
        }
        lens[i] = (uint32_t)strlen(pieces[i]);
        scores[i] = i < 3 ? 0.0f : -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : 1;
    }
    vz_vocab v = {TINY_VOCAB, pieces, lens, scores, types, 1, 2, 0,
                  VZ_TOK_SPM_FORM | VZ_TOK_DUMMY_PREFIX, NULL, 0, NULL};
    return vz_writer_set_vocab(w, &v);
}

static vz_status write_all(vz_writer *w, vz_dtype dtype, uint64_t seed) {
    vz_config c = {.arch = "llama", .dim = TINY_DIM, .hidden_dim = TINY_HIDDEN, .n_layers = TINY_LAYERS,
                   .n_heads = TINY_HEADS, .n_kv_heads = TINY_KV_HEADS, .head_dim = TINY_DIM / TINY_HEADS,
                   .vocab_size = TINY_VOCAB, .max_seq_len = TINY_SEQ, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
                   .rope_interleaved = 0, .tied_embeddings = 0, .bos_id = 1, .eos_id = 2};
    VZ_TRY(vz_writer_set_config(w, &c, "test"));
    VZ_TRY(set_vocab(w));
    tiny_t t[64];
    int n = tiny_list(t);
    for (int i = 0; i < n; i++) {
        uint64_t size;
        uint8_t *p = gen(&t[i], dtype, seed, &size);
        VZ_FAIL_IF(!p, VZ_ERR_NOMEM, "out of memory");
        vz_tensor vt;
        memset(&vt, 0, sizeof vt);
        memcpy(vt.name, t[i].name, sizeof vt.name);
        vz_tensor_set_shape(&vt, t[i].ndim, t[i].shape);
        vt.dtype = dtype;
        vt.codec = 0;
        vt.data = p;
        vt.size = size;
        vz_status s = vz_writer_add_tensor(w, &vt, XXH64(p, size, 0), 1);
        free(p);
        VZ_TRY(s);
    }
    return VZ_OK;
}

vz_status tiny_vz_write(const char *path, vz_dtype dtype, uint64_t seed) {
    vz_writer *w;
    VZ_TRY(vz_writer_open(&w, path));
    vz_status s = write_all(w, dtype, seed);
    if (s != VZ_OK) {
        vz_writer_abort(w);
        return s;
    }
    return vz_writer_finish(w);
}
