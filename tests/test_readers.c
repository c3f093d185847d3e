/*
 * test_readers.c - the GGUF and Hugging Face (safetensors) readers on real
 * and written-here checkpoints: config values, canonical names, shapes and
 * every tensor's bytes against stories260K.bin (llama2.c layout, f32), with
 * HF's rotate-half permutation of Q/K rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ckpt.h"
#include "common/testutil.h"
#include "core/half.h"
#include "model/model.h"

/* Expected stored bytes of f32 values in dtype. */
static uint8_t *to_dtype(const float *f, size_t n, vz_dtype dt) {
    uint8_t *p = malloc(n * 4 + 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = dt == VZ_DTYPE_F16 ? vz_f32_to_f16(f[i]) : vz_f32_to_bf16(f[i]);
        if (dt == VZ_DTYPE_F32) memcpy(p + 4 * i, &f[i], 4);
        else memcpy(p + 2 * i, &h, 2);
    }
    return p;
}

static void expect_tensor(const vz_model *m, const char *name, const float *f, int64_t rows, int64_t cols,
                          vz_dtype dt) {
    const vz_tensor *t = vz_model_find(m, name);
    if (!t) fail_msg("tensor %s missing", name);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->codec, 0);
    assert_int_equal(t->ndim, cols ? 2 : 1);
    assert_int_equal(t->shape[0], rows);
    if (cols) assert_int_equal(t->shape[1], cols);
    size_t n = (size_t)(rows * (cols ? cols : 1));
    assert_int_equal(t->size, n * (size_t)vz_dtype_size(dt));
    uint8_t *want = to_dtype(f, n, dt);
    if (memcmp(t->data, want, t->size) != 0) fail_msg("tensor %s: bytes differ", name);
    free(want);
}

/* Checks every tensor of m against llama2.c weights w; permute: HF Q/K order. */
static void expect_weights(const vz_model *m, const vz_ckpt_model *w, vz_dtype dt, int permute) {
    int64_t d = w->dim, h = w->hidden, kv = w->kv_heads * (d / w->heads);
    char name[128];
    float *pq = malloc(sizeof(float) * (size_t)(d * d));
    expect_tensor(m, VZ_NAME_TOK_EMB, w->tok, w->vocab, d, dt);
    expect_tensor(m, VZ_NAME_FINAL_NORM, w->rms_final, d, 0, dt);
    for (int l = 0; l < w->layers; l++) {
#define EXPECT(sfx, ptr, r, c) (snprintf(name, sizeof name, "model.layers.%d.%s", l, sfx), expect_tensor(m, name, ptr, r, c, dt))
        const float *q = w->wq + l * d * d, *k = w->wk + l * kv * d;
        if (permute) vz_ckpt_permute_rows(pq, q, (int)d, (int)d, w->heads);
        EXPECT(VZ_SFX_WQ, permute ? pq : q, d, d);
        if (permute) vz_ckpt_permute_rows(pq, k, (int)kv, (int)d, w->kv_heads);
        EXPECT(VZ_SFX_WK, permute ? pq : k, kv, d);
        EXPECT(VZ_SFX_WV, w->wv + l * kv * d, kv, d);
        EXPECT(VZ_SFX_WO, w->wo + l * d * d, d, d);
        EXPECT(VZ_SFX_W1, w->w1 + l * h * d, h, d);
        EXPECT(VZ_SFX_W2, w->w2 + l * d * h, d, h);
        EXPECT(VZ_SFX_W3, w->w3 + l * h * d, h, d);
        EXPECT(VZ_SFX_ATTN_NORM, w->rms_att + l * d, d, 0);
        EXPECT(VZ_SFX_FFN_NORM, w->rms_ffn + l * d, d, 0);
#undef EXPECT
    }
    free(pq);
}

static void expect_config(const vz_model *m, const vz_ckpt_model *w, int interleaved, int tied) {
    const vz_config *c = &m->cfg;
    assert_string_equal(c->arch, "llama");
    assert_int_equal(c->dim, w->dim);
    assert_int_equal(c->hidden_dim, w->hidden);
    assert_int_equal(c->n_layers, w->layers);
    assert_int_equal(c->n_heads, w->heads);
    assert_int_equal(c->n_kv_heads, w->kv_heads);
    assert_int_equal(c->head_dim, w->dim / w->heads);
    assert_int_equal(c->vocab_size, w->vocab);
    assert_true(c->rms_eps == 1e-5f);
    assert_true(c->rope_theta == 10000.0f);
    assert_int_equal(c->rope_interleaved, interleaved);
    assert_int_equal(c->tied_embeddings, tied);
    assert_int_equal(c->bos_id, 1);
    assert_int_equal(c->eos_id, 2);
}

static void test_gguf_stories260k(void **state) {
    (void)state;
    char gpath[1024], bpath[1024];
    VZ_REQUIRE_MODEL(gpath, "stories260K/stories260K.gguf");
    VZ_REQUIRE_MODEL(bpath, "stories260K/stories260K.bin");
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_load_bin(&w, bpath), 0);
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, gpath, NULL);
    if (s != VZ_OK) fail_msg("open: %s", vz_last_error());
    assert_string_equal(m->format, "gguf");
    expect_config(m, &w, 1, 0); /* output.weight is stored, so not tied */
    assert_int_equal(m->cfg.max_seq_len, 2048);
    assert_int_equal(m->n_tensors, 48);
    expect_weights(m, &w, VZ_DTYPE_F32, 0);
    expect_tensor(m, VZ_NAME_OUTPUT, w.tok, w.vocab, w.dim, VZ_DTYPE_F32);
    assert_ptr_equal(m->output, vz_model_find(m, VZ_NAME_OUTPUT));
    assert_non_null(m->tok);
    assert_int_equal(vz_tokenizer_vocab_size(m->tok), 512);
    assert_int_equal(vz_tokenizer_bos(m->tok), 1);
    assert_string_equal(vz_tokenizer_piece(m->tok, 259), " t"); /* first merge in tok512.bin */
    vz_model_close(m);
    vz_ckpt_free(&w);
}

/* A random tiny model through the test GGUF writer, with and without vocab. */
static void test_gguf_tiny(void **state) {
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        int untied = variant & 1, vocab = variant >> 1;
        vz_ckpt_model w;
        assert_int_equal(vz_ckpt_random(&w, 16, 40, 2, 4, 2, 24, untied, 7 + (uint64_t)variant), 0);
        uint8_t *buf;
        size_t n;
        vz_ckpt_gguf_off off;
        assert_int_equal(vz_ckpt_build_gguf(&w, vocab, &buf, &n, &off), 0);
        char dir[1024], path[1100];
        assert_non_null(vz_test_tmpdir(dir, sizeof dir));
        snprintf(path, sizeof path, "%s/tiny.gguf", dir);
        assert_int_equal(vz_ckpt_write_file(path, buf, n), 0);
        vz_model *m = NULL;
        if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("variant %d: %s", variant, vz_last_error());
        assert_int_equal(m->cfg.vocab_size, 24);
        assert_int_equal(m->cfg.tied_embeddings, !untied);
        assert_int_equal(m->cfg.rope_interleaved, 1);
        expect_weights(m, &w, VZ_DTYPE_F32, 0);
        if (untied) expect_tensor(m, VZ_NAME_OUTPUT, w.wcls, w.vocab, w.dim, VZ_DTYPE_F32);
        else assert_ptr_equal(m->output, m->tok_emb);
        assert_true(vocab ? m->tok != NULL : m->tok == NULL);
        vz_model_close(m);
        vz_test_rmtree(dir);
        free(buf);
        vz_ckpt_free(&w);
    }
}

static void hf_roundtrip(const vz_ckpt_model *w, const char *dtype, vz_dtype dt, int shards, int tied) {
    char dir[1024];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    assert_int_equal(vz_ckpt_write_hf(dir, w, dtype, shards, tied), 0);
    vz_model *m = NULL;
    if (vz_model_open(&m, dir, NULL) != VZ_OK) fail_msg("%s shards=%d: %s", dtype, shards, vz_last_error());
    assert_string_equal(m->format, "hf");
    expect_config(m, w, 0, tied);
    assert_int_equal(m->cfg.max_seq_len, w->seq);
    expect_weights(m, w, dt, 1);
    assert_int_equal(m->n_tensors, 9 * w->layers + 2 + !tied);
    if (tied) {
        assert_null(vz_model_find(m, VZ_NAME_OUTPUT));
        assert_ptr_equal(m->output, m->tok_emb);
    } else {
        expect_tensor(m, VZ_NAME_OUTPUT, w->wcls, w->vocab, w->dim, dt);
    }
    assert_null(m->tok); /* no tokenizer.model in the directory */
    assert_int_equal(m->n_maps, shards);
    vz_model_close(m);
    vz_test_rmtree(dir);
}

static void test_hf_stories260k_dtypes(void **state) {
    (void)state;
    char bpath[1024];
    VZ_REQUIRE_MODEL(bpath, "stories260K/stories260K.bin");
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_load_bin(&w, bpath), 0);
    hf_roundtrip(&w, "F32", VZ_DTYPE_F32, 1, 1);
    hf_roundtrip(&w, "F16", VZ_DTYPE_F16, 1, 1);
    hf_roundtrip(&w, "BF16", VZ_DTYPE_BF16, 1, 1);
    hf_roundtrip(&w, "BF16", VZ_DTYPE_BF16, 3, 1);
    vz_ckpt_free(&w);
}

static void test_hf_tiny_sharded_untied(void **state) {
    (void)state;
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_random(&w, 16, 40, 3, 4, 1, 30, 1, 99), 0);
    hf_roundtrip(&w, "F32", VZ_DTYPE_F32, 1, 0);
    hf_roundtrip(&w, "BF16", VZ_DTYPE_BF16, 4, 0);
    hf_roundtrip(&w, "F16", VZ_DTYPE_F16, 2, 1);
    vz_ckpt_free(&w);
}

/* The HF reader leaves Q/K in rotate-half order: they equal the GGUF's rows permuted. */
static void test_hf_gguf_same_weights(void **state) {
    (void)state;
    char gpath[1024], bpath[1024], dir[1024];
    VZ_REQUIRE_MODEL(gpath, "stories260K/stories260K.gguf");
    VZ_REQUIRE_MODEL(bpath, "stories260K/stories260K.bin");
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_load_bin(&w, bpath), 0);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    assert_int_equal(vz_ckpt_write_hf(dir, &w, "F32", 1, 1), 0);
    vz_model *g = NULL, *h = NULL;
    assert_int_equal(vz_model_open(&g, gpath, NULL), VZ_OK);
    assert_int_equal(vz_model_open(&h, dir, NULL), VZ_OK);
    float *perm = malloc(64 * 64 * sizeof(float));
    for (int l = 0; l < 5; l++) {
        const vz_layer *a = &g->layers[l], *b = &h->layers[l];
        assert_memory_equal(a->wv->data, b->wv->data, a->wv->size);
        assert_memory_equal(a->w2->data, b->w2->data, a->w2->size);
        assert_memory_equal(a->attn_norm, b->attn_norm, 64 * sizeof(float));
        vz_ckpt_permute_rows(perm, (const float *)(const void *)a->wq->data, 64, 64, 8);
        assert_memory_equal(perm, b->wq->data, a->wq->size);
        assert_memory_not_equal(a->wq->data, b->wq->data, a->wq->size);
    }
    free(perm);
    vz_model_close(g);
    vz_model_close(h);
    vz_test_rmtree(dir);
    vz_ckpt_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_stories260k),
        cmocka_unit_test(test_gguf_tiny),
        cmocka_unit_test(test_hf_stories260k_dtypes),
        cmocka_unit_test(test_hf_tiny_sharded_untied),
        cmocka_unit_test(test_hf_gguf_same_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
