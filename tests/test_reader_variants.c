/*
 * test_reader_variants.c - reader cases beyond F32 Llama: GGUF files whose
 * weights are F16 or BF16 (norms F32, as llama.cpp's converter writes them)
 * and a GGUF v2 file, each loading with the right dtypes and giving logits
 * bit-identical to an F32 GGUF of the same weights rounded to that dtype
 * (the reference); and a MistralForCausalLM directory with sliding_window
 * (arch "mistral", context capped at the window, logits equal to the Llama
 * directory of the same weights, positions past the window refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/ckpt.h"
#include "common/testutil.h"
#include "core/half.h"
#include "model/model.h"

#define N_TOK 12
static const int32_t TOKENS[N_TOK] = {1, 5, 9, 3, 17, 22, 8, 8, 0, 29, 13, 2};

/* Logits of every position of TOKENS (N_TOK * vocab floats, malloc'ed). */
static float *logits_of(vz_model *m) {
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_threads = 2;
    vz_session *s = NULL;
    if (vz_session_create(&s, m, &so) != VZ_OK) fail_msg("session: %s", vz_last_error());
    float *l = malloc(sizeof(float) * N_TOK * (size_t)m->cfg.vocab_size);
    assert_non_null(l);
    if (vz_session_eval(s, TOKENS, N_TOK, l, 1) != VZ_OK) fail_msg("eval: %s", vz_last_error());
    vz_session_free(s);
    return l;
}

static vz_model *open_gguf(const char *dir, const char *name, const vz_ckpt_model *w, uint32_t type,
                           uint32_t version) {
    uint8_t *buf;
    size_t n;
    vz_ckpt_gguf_off off;
    char path[1100];
    assert_int_equal(vz_ckpt_build_gguf_ex(w, 1, type, version, &buf, &n, &off), 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(vz_ckpt_write_file(path, buf, n), 0);
    free(buf);
    vz_model *m = NULL;
    if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("%s: %s", name, vz_last_error());
    return m;
}

/* Rounds every 2-D weight of w (not the norms) through dtype dt, in place. */
static void round_weights(vz_ckpt_model *w, vz_dtype dt) {
    int64_t d = w->dim, h = w->hidden, L = w->layers, kv = w->kv_heads * (d / w->heads);
    struct { float *p; int64_t n; } arr[] = {
        {w->tok, w->vocab * d}, {w->wq, L * d * d}, {w->wk, L * kv * d}, {w->wv, L * kv * d},
        {w->wo, L * d * d},     {w->w1, L * h * d}, {w->w2, L * d * h},  {w->w3, L * h * d},
        {w->wcls, w->wcls ? w->vocab * d : 0},
    };
    for (size_t a = 0; a < sizeof arr / sizeof arr[0]; a++)
        for (int64_t i = 0; i < arr[a].n; i++)
            arr[a].p[i] = dt == VZ_DTYPE_F16 ? vz_f16_to_f32(vz_f32_to_f16(arr[a].p[i]))
                                             : vz_bf16_to_f32(vz_f32_to_bf16(arr[a].p[i]));
}

static void test_gguf_f16_bf16_logits(void **state) {
    (void)state;
    static const struct { uint32_t ggml; vz_dtype dt; } cases[] = {{1, VZ_DTYPE_F16}, {30, VZ_DTYPE_BF16}};
    char dir[1024];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    for (int untied = 0; untied < 2; untied++)
        for (size_t k = 0; k < 2; k++) {
            vz_ckpt_model w;
            assert_int_equal(vz_ckpt_random(&w, 16, 40, 2, 4, 2, 32, untied, 11 + (uint64_t)untied), 0);
            vz_model *h = open_gguf(dir, "half.gguf", &w, cases[k].ggml, 3);
            assert_int_equal(h->layers[1].w2->dtype, cases[k].dt);
            assert_int_equal(h->tok_emb->dtype, cases[k].dt);
            assert_int_equal(vz_model_find(h, "model.layers.0.input_layernorm.weight")->dtype, VZ_DTYPE_F32);
            assert_int_equal(h->layers[0].wq->size, 16 * 16 * 2);
            /* the stored halves are the rounded source values */
            const uint16_t *q = (const void *)h->layers[0].wq->data;
            for (int i = 0; i < 16 * 16; i++)
                assert_int_equal(q[i], cases[k].dt == VZ_DTYPE_F16 ? vz_f32_to_f16(w.wq[i]) : vz_f32_to_bf16(w.wq[i]));
            float *lh = logits_of(h);
            vz_model *raw = open_gguf(dir, "f32.gguf", &w, 0, 3); /* unrounded: must differ */
            float *lraw = logits_of(raw);
            round_weights(&w, cases[k].dt);
            vz_model *ref = open_gguf(dir, "ref.gguf", &w, 0, 3);
            float *lref = logits_of(ref);
            size_t bytes = sizeof(float) * N_TOK * 32;
            if (memcmp(lh, lref, bytes) != 0) fail_msg("%s: logits differ from the rounded F32 reference",
                                                       vz_dtype_name(cases[k].dt));
            assert_memory_not_equal(lh, lraw, bytes);
            free(lh), free(lraw), free(lref);
            vz_model_close(h), vz_model_close(raw), vz_model_close(ref);
            vz_ckpt_free(&w);
        }
    vz_test_rmtree(dir);
}

static void test_gguf_v2(void **state) {
    (void)state;
    char dir[1024];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_random(&w, 16, 40, 2, 4, 1, 32, 1, 5), 0);
    vz_model *v2 = open_gguf(dir, "v2.gguf", &w, 0, 2), *v3 = open_gguf(dir, "v3.gguf", &w, 0, 3);
    assert_string_equal(v2->format, "gguf");
    assert_int_equal(v2->n_tensors, v3->n_tensors);
    assert_int_equal(v2->cfg.n_kv_heads, 1);
    assert_non_null(v2->tok);
    float *a = logits_of(v2), *b = logits_of(v3);
    assert_memory_equal(a, b, sizeof(float) * N_TOK * 32);
    free(a), free(b);
    vz_model_close(v2), vz_model_close(v3);
    /* v2 with F16 weights too */
    vz_model *h2 = open_gguf(dir, "v2h.gguf", &w, 1, 2);
    assert_int_equal(h2->layers[0].w1->dtype, VZ_DTYPE_F16);
    vz_model_close(h2);
    /* version 1 (u32 counts) and 4 are not this layout */
    uint8_t *buf;
    size_t n;
    vz_ckpt_gguf_off off;
    char path[1100];
    for (uint32_t v = 1; v <= 4; v += 3) {
        assert_int_equal(vz_ckpt_build_gguf_ex(&w, 1, 0, v, &buf, &n, &off), 0);
        snprintf(path, sizeof path, "%s/v%u.gguf", dir, v);
        assert_int_equal(vz_ckpt_write_file(path, buf, n), 0);
        free(buf);
        vz_model *m = NULL;
        vz_status s = vz_model_open(&m, path, NULL);
        if (s == VZ_OK) fail_msg("GGUF version %u opened", v);
        assert_null(m);
    }
    vz_ckpt_free(&w);
    vz_test_rmtree(dir);
}

static vz_model *open_hf(const char *dir, const vz_ckpt_model *w, int window) {
    assert_int_equal(vz_ckpt_write_hf(dir, w, "BF16", 1, 0), 0);
    if (window >= 0) {
        char path[1100], *cfg = vz_ckpt_hf_config_mistral(w, 0, window);
        assert_non_null(cfg);
        snprintf(path, sizeof path, "%s/config.json", dir);
        assert_int_equal(vz_ckpt_write_file(path, cfg, strlen(cfg)), 0);
        free(cfg);
    }
    vz_model *m = NULL;
    if (vz_model_open(&m, dir, NULL) != VZ_OK) fail_msg("%s: %s", dir, vz_last_error());
    return m;
}

static void test_hf_mistral_sliding_window(void **state) {
    (void)state;
    char dl[1024], dm[1024], dn[1024];
    assert_non_null(vz_test_tmpdir(dl, sizeof dl));
    assert_non_null(vz_test_tmpdir(dm, sizeof dm));
    assert_non_null(vz_test_tmpdir(dn, sizeof dn));
    vz_ckpt_model w;
    assert_int_equal(vz_ckpt_random(&w, 16, 40, 2, 4, 2, 32, 1, 21), 0); /* seq 64 */
    vz_model *llama = open_hf(dl, &w, -1), *mis = open_hf(dm, &w, 16), *nowin = open_hf(dn, &w, 0);
    assert_string_equal(llama->cfg.arch, "llama");
    assert_string_equal(mis->cfg.arch, "mistral");
    assert_string_equal(nowin->cfg.arch, "mistral");
    assert_int_equal(mis->cfg.max_seq_len, 16);   /* capped at the window */
    assert_int_equal(nowin->cfg.max_seq_len, 64); /* sliding_window null: full context */
    assert_int_equal(mis->cfg.rope_interleaved, 0);
    float *a = logits_of(llama), *b = logits_of(mis), *c = logits_of(nowin);
    assert_memory_equal(a, b, sizeof(float) * N_TOK * 32);
    assert_memory_equal(a, c, sizeof(float) * N_TOK * 32);
    free(a), free(b), free(c);
    /* a context past the window is refused, and so are positions beyond it */
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_ctx = 17;
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, mis, &so), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "sliding window"));
    so.n_ctx = 0;
    assert_int_equal(vz_session_create(&s, mis, &so), VZ_OK);
    assert_int_equal(vz_session_n_ctx(s), 16);
    int32_t toks[17] = {1};
    assert_int_equal(vz_session_eval(s, toks, 17, NULL, 0), VZ_ERR_CONTEXT);
    assert_int_equal(vz_session_eval(s, toks, 16, NULL, 0), VZ_OK);
    vz_session_free(s);
    vz_model_close(llama), vz_model_close(mis), vz_model_close(nowin);
    vz_ckpt_free(&w);
    vz_test_rmtree(dl), vz_test_rmtree(dm), vz_test_rmtree(dn);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_f16_bf16_logits),
        cmocka_unit_test(test_gguf_v2),
        cmocka_unit_test(test_hf_mistral_sliding_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
