/*
 * test_batch.c - [batch] several sequences in one session
 * (vz_session_eval_batch, vz_session_generate_batch): every sequence's
 * logits and sampled ids are memcmp-equal to the sequence run alone, for B
 * = 1, 3, 8 sequences with prompts of different lengths (1 token, short,
 * longer than the 8-token decode batch, so the GPU prefill path runs), on
 * the GPU (stories260K and a synth "tiny" bf16 model, raw and lossless .vz
 * byte-identical in the batch) and on the CPU (stories260K; synth tiny as
 * raw, lossless, q8 and q4: one weight pass for all the sequences' rows,
 * raw and lossless byte-identical); argument errors; the planner
 * counting B KV caches and refusing with advice; `vramzip run` with several
 * prompts. GPU tests skip with a message without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gpu.h"
#include "common/testutil.h"
#include "vramzip.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#define S260K "stories260K/stories260K.bin"
#define TOK512 "stories260K/tok512.bin"
#define N_CTX 128
#define NS 12 /* batched decode steps compared */
#define NG 20 /* generated tokens compared: 2 chained 8-step launches + 4 single steps */

/* Prompt lengths of sequences 0..7: BOS alone, short, > 8 tokens (prefill). */
static const int32_t plen[VZ_MAX_SEQ] = {1, 5, 12, 3, 40, 9, 2, 23};

/* The prompt of sequence i: BOS (1) then pseudo-random ids. */
static void prompt_of(int32_t i, int32_t vocab, int32_t *toks) {
    uint64_t rng = 1000 + (uint64_t)i;
    toks[0] = 1;
    for (int32_t k = 1; k < plen[i]; k++) toks[k] = (int32_t)(vz_test_rand(&rng) % (uint64_t)vocab);
}

/* Prefills every prompt but its last token into sequence seqs[b] (prompt of
 * sequence seqs[b]); last[b] gets that token. */
static void prefill(vz_session *s, int32_t B, const int32_t *seqs, int32_t vocab, int32_t *last) {
    int32_t toks[64];
    for (int32_t b = 0; b < B; b++) {
        prompt_of(seqs[b], vocab, toks);
        assert_int_equal(vz_session_eval_seq(s, seqs[b], toks, plen[seqs[b]] - 1, NULL, 0), VZ_OK);
        assert_int_equal(vz_session_seq_pos(s, seqs[b]), plen[seqs[b]] - 1);
        last[b] = toks[plen[seqs[b]] - 1];
    }
}

static int32_t vocab_of(vz_model *m) {
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    return info.vocab_size;
}

/* NS greedy steps of sequence i alone (a one-sequence session): logits (NS, vocab). */
static void steps_alone(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t i, float *logits) {
    const int32_t V = vocab_of(m);
    vz_session *s = vz_test_open_session(m, dev, kv, N_CTX);
    int32_t toks[64];
    prompt_of(i, V, toks);
    assert_int_equal(vz_session_eval(s, toks, plen[i] - 1, NULL, 0), VZ_OK);
    int32_t tok = toks[plen[i] - 1];
    for (int32_t t = 0; t < NS; t++) {
        assert_int_equal(vz_session_eval(s, &tok, 1, logits + (size_t)t * V, 0), VZ_OK);
        tok = vz_test_argmax(logits + (size_t)t * V, V);
    }
    vz_session_free(s);
}

/* The same NS steps for sequences seqs[0..B) of an n_seq session, batched:
 * logits (NS, B, vocab). */
static void steps_batched(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_seq, int32_t B, const int32_t *seqs,
                          float *logits) {
    const int32_t V = vocab_of(m);
    vz_session *s = vz_test_open_session_n(m, dev, kv, N_CTX, n_seq);
    assert_int_equal(vz_session_n_seq(s), n_seq);
    int32_t tok[VZ_MAX_SEQ];
    prefill(s, B, seqs, V, tok);
    for (int32_t t = 0; t < NS; t++) {
        float *l = logits + (size_t)t * B * V;
        for (size_t k = 0; k < (size_t)B * V; k++) l[k] = -12345.0f; /* poison */
        assert_int_equal(vz_session_eval_batch(s, B, seqs, tok, l), VZ_OK);
        for (int32_t b = 0; b < B; b++) tok[b] = vz_test_argmax(l + (size_t)b * V, V);
    }
    for (int32_t b = 0; b < B; b++) assert_int_equal(vz_session_seq_pos(s, seqs[b]), plen[seqs[b]] - 1 + NS);
    vz_session_free(s);
}

/* Batched steps of B sequences (seqs NULL: 0..B-1) vs each alone: memcmp. */
static void check_steps(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_seq, int32_t B, const int32_t *seqs) {
    const int32_t V = vocab_of(m);
    int32_t id[VZ_MAX_SEQ];
    for (int32_t b = 0; b < B; b++) id[b] = seqs ? seqs[b] : b;
    float *bat = malloc(sizeof(float) * NS * (size_t)B * V), *one = malloc(sizeof(float) * NS * (size_t)V);
    assert_non_null(bat);
    assert_non_null(one);
    steps_batched(m, dev, kv, n_seq, B, id, bat);
    for (int32_t b = 0; b < B; b++) {
        steps_alone(m, dev, kv, id[b], one);
        for (int32_t t = 0; t < NS; t++)
            if (memcmp(bat + ((size_t)t * B + b) * V, one + (size_t)t * V, sizeof(float) * V) != 0)
                fail_msg("B %d: sequence %d (prompt %d tokens) differs from alone at step %d", (int)B, (int)id[b],
                         (int)plen[id[b]], (int)t);
    }
    print_message("%s kv %s: %d of %d sequences batched: logits of %d steps memcmp-equal to each alone\n",
                  dev == VZ_DEVICE_CUDA ? "cuda" : "cpu", kv == VZ_KV_F16 ? "f16" : kv == VZ_KV_F32 ? "f32" : "off",
                  (int)B, (int)n_seq, NS);
    free(bat);
    free(one);
}

/* Sampler of sequence i: greedy, top-k, top-p and both, each its own seed. */
static vz_sampler_opts sampler_of(int32_t i) {
    vz_sampler_opts o = {i % 4 == 0 ? 0.0f : 0.9f, i % 2 ? 20 : 0, i % 4 >= 2 ? 0.9f : 1.0f, 100 + (uint64_t)i};
    return o;
}

/* generate_batch of sequences 0..B-1 vs vz_session_generate of each alone: memcmp of the ids. */
static void check_generate(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t B) {
    const int32_t V = vocab_of(m);
    int32_t seqs[VZ_MAX_SEQ] = {0}, first[VZ_MAX_SEQ] = {0}, out[VZ_MAX_SEQ * NG], one[NG];
    vz_sampler_opts so[VZ_MAX_SEQ];
    for (int32_t b = 0; b < B; b++) seqs[b] = b, so[b] = sampler_of(b);
    vz_session *s = vz_test_open_session_n(m, dev, kv, N_CTX, B);
    prefill(s, B, seqs, V, first);
    for (int32_t k = 0; k < B * NG; k++) out[k] = -1;
    assert_int_equal(vz_session_generate_batch(s, B, NULL, first, NG, so, out), VZ_OK);
    vz_session_free(s);
    for (int32_t b = 0; b < B; b++) {
        s = vz_test_open_session(m, dev, kv, N_CTX);
        int32_t toks[64];
        prompt_of(b, V, toks);
        assert_int_equal(vz_session_eval(s, toks, plen[b] - 1, NULL, 0), VZ_OK);
        assert_int_equal(vz_session_generate(s, toks[plen[b] - 1], NG, &so[b], one), VZ_OK);
        vz_session_free(s);
        if (memcmp(out + (size_t)b * NG, one, sizeof one) != 0)
            fail_msg("B %d: sequence %d: generated ids differ from the sequence alone", (int)B, (int)b);
    }
    print_message("%s: generate_batch of %d sequences: %d ids each equal to each alone\n",
                  dev == VZ_DEVICE_CUDA ? "cuda" : "cpu", (int)B, NG);
}

static vz_model *open_s260k(void) {
    char bin[512], tok[512];
    if (!vz_test_model_path(bin, sizeof bin, S260K) || !vz_test_model_path(tok, sizeof tok, TOK512)) return NULL;
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = tok;
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, bin, &mo), VZ_OK);
    return m;
}

#define REQUIRE_S260K(m)                                                                             \
    vz_model *m = open_s260k();                                                                      \
    if (!m) {                                                                                        \
        print_message("SKIP: ../shared/models/%s not found (set VZ_MODELS)\n", S260K);                \
        skip();                                                                                      \
    }

/* ---- GPU ---------------------------------------------------------------- */

static void test_cuda_batch_stories260k(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
    REQUIRE_S260K(m);
    static const int32_t Bs[3] = {1, 3, 8};
    for (int i = 0; i < 3; i++) check_steps(m, VZ_DEVICE_CUDA, VZ_KV_F16, Bs[i], Bs[i], NULL);
    check_steps(m, VZ_DEVICE_CUDA, VZ_KV_F32, 3, 3, NULL);
    check_steps(m, VZ_DEVICE_CUDA, VZ_KV_F16, 8, 3, (const int32_t[]){6, 1, 4}); /* a subset, out of order */
    for (int i = 0; i < 3; i++) check_generate(m, VZ_DEVICE_CUDA, VZ_KV_F16, Bs[i]);
    vz_model_close(m);
}

/* A synth "tiny" bf16 model as raw and lossless .vz: batched logits equal
 * each alone, and raw and lossless batched logits are byte-identical. */
static void test_cuda_batch_tiny_raw_lossless(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
    char dir[512], src[600], path[2][640];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "tiny", 5);
    const char *spec[2] = {"raw", "lossless"};
    vz_model *m[2];
    float *l[2];
    for (int k = 0; k < 2; k++) {
        snprintf(path[k], sizeof path[k], "%s/%s.vz", dir, spec[k]);
        vz_test_convert(src, NULL, spec[k], path[k]);
        assert_int_equal(vz_model_open(&m[k], path[k], NULL), VZ_OK);
        check_steps(m[k], VZ_DEVICE_CUDA, VZ_KV_F16, 8, 8, NULL);
        l[k] = malloc(sizeof(float) * NS * 8 * (size_t)vocab_of(m[k]));
        assert_non_null(l[k]);
        steps_batched(m[k], VZ_DEVICE_CUDA, VZ_KV_F16, 8, 8, (const int32_t[]){0, 1, 2, 3, 4, 5, 6, 7}, l[k]);
    }
    assert_memory_equal(l[0], l[1], sizeof(float) * NS * 8 * (size_t)vocab_of(m[0]));
    print_message("synth tiny: 8 sequences batched, raw and lossless logits byte-identical\n");
    check_generate(m[1], VZ_DEVICE_CUDA, VZ_KV_F16, 8);
    for (int k = 0; k < 2; k++) {
        free(l[k]);
        vz_model_close(m[k]);
    }
    vz_test_rmtree(dir);
}

/* A synth "tiny" model as q4 and as q8 .vz with every tensor of the fast
 * path on the integer dot-product kernel (VZ_CUDA_MV_DP at upload; by default models
 * of dim 4096 or more and tensors of 4096 rows or more, none here): batched logits
 * and generated ids equal each alone, and the logits differ from the fmaf
 * kernels' (VZ_CUDA_MV_NO_DP), so the dot-product kernels ran. By default
 * its session keeps the fmaf kernels (dim 64), even where its tensors'
 * widths would take the dot products (VZ_CUDA_DP_COLS=32,24576): the
 * logits of the no-dp run, bitwise. */
static void test_cuda_batch_tiny_q_dp(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    char dir[512], src[600], path[640];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "tiny", 6);
    for (int ci = 0; ci < 2; ci++) {
        const char *codec = ci ? "q8" : "q4";
        snprintf(path, sizeof path, "%s/%s.vz", dir, codec);
        vz_test_convert(src, NULL, codec, path);
        vz_model *m = NULL;
        assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
        const int32_t V = vocab_of(m), seqs[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        const size_t nl = (size_t)NS * 8 * (size_t)V;
        float *l[3] = {malloc(sizeof(float) * nl), malloc(sizeof(float) * nl), malloc(sizeof(float) * nl)};
        assert_true(l[0] && l[1] && l[2]);
        const int old = vz_cuda_matvec_variant(-1);
        const char *cols0 = getenv("VZ_CUDA_DP_COLS");
        char *cols = cols0 ? strdup(cols0) : NULL;
        for (int k = 0; k < 3; k++) { /* dp on every fast tensor; none; the default (acts at upload: session open) */
            vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | (k == 0 ? VZ_CUDA_MV_DP : k == 1 ? VZ_CUDA_MV_NO_DP : 0));
            if (k == 2) setenv("VZ_CUDA_DP_COLS", "32,24576", 1);
            if (k == 0) {
                check_steps(m, VZ_DEVICE_CUDA, VZ_KV_F16, 8, 8, NULL);
                check_generate(m, VZ_DEVICE_CUDA, VZ_KV_F16, 8);
            }
            steps_batched(m, VZ_DEVICE_CUDA, VZ_KV_F16, 8, 8, seqs, l[k]);
        }
        if (cols) setenv("VZ_CUDA_DP_COLS", cols, 1);
        else unsetenv("VZ_CUDA_DP_COLS");
        free(cols);
        vz_cuda_matvec_variant(old);
        if (memcmp(l[0], l[1], sizeof(float) * nl) == 0)
            fail_msg("%s with and without the dot-product kernels: the same logits (the flag chose nothing)", codec);
        if (memcmp(l[2], l[1], sizeof(float) * nl) != 0)
            fail_msg("%s of dim 64, default kernels: logits differ from the fmaf kernels' (the session's dim rule)", codec);
        print_message("synth tiny %s, dot-product kernels: 8 sequences batched equal each alone; logits differ from the "
                      "fmaf kernels'; by default (dim 64) the fmaf kernels' logits\n", codec);
        free(l[0]), free(l[1]), free(l[2]);
        vz_model_close(m);
    }
    vz_test_rmtree(dir);
#endif
}

/* A budget that holds one sequence's KV cache but not eight: refused, advice names the sequences. */
static void test_cuda_batch_budget(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
    REQUIRE_S260K(m);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F32, o.n_ctx = 512, o.n_seq = 1;
    vz_plan p1, p8;
    assert_int_equal(vz_session_plan(m, &o, &p1), VZ_OK);
    o.n_seq = 8;
    assert_int_equal(vz_session_plan(m, &o, &p8), VZ_OK);
    o.vram_budget = p1.total_bytes;
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_NOMEM);
    assert_null(s);
    print_message("refused: %s\n", vz_last_error());
    assert_non_null(strstr(vz_last_error(), "for 8 sequences"));
    o.vram_budget = p8.total_bytes; /* exactly the plan: runs, within it */
    assert_int_equal(vz_session_create(&s, m, &o), VZ_OK);
    int32_t first[8] = {1, 1, 1, 1, 1, 1, 1, 1}, out[8 * 4];
    vz_sampler_opts so[8];
    for (int i = 0; i < 8; i++) so[i] = sampler_of(i);
    assert_int_equal(vz_session_generate_batch(s, 8, NULL, first, 4, so, out), VZ_OK);
    vz_session_mem mem;
    assert_int_equal(vz_session_mem_info(s, &mem), VZ_OK);
    assert_true(mem.kv <= p8.kv_bytes && mem.scratch <= p8.scratch_bytes && mem.peak <= p8.total_bytes);
    vz_session_free(s);
    vz_model_close(m);
}

/* ---- CPU ---------------------------------------------------------------- */

static void test_cpu_batch(void **state) {
    (void)state;
    REQUIRE_S260K(m);
    check_steps(m, VZ_DEVICE_CPU, VZ_KV_F32, 3, 3, NULL);
    check_steps(m, VZ_DEVICE_CPU, VZ_KV_OFF, 8, 3, (const int32_t[]){7, 0, 5});
    check_steps(m, VZ_DEVICE_CPU, VZ_KV_F16, 8, 8, NULL);
    check_generate(m, VZ_DEVICE_CPU, VZ_KV_F32, 3);
    vz_model_close(m);
}

/* A synth "tiny" bf16 model as raw, lossless, q8 and q4 .vz on the CPU:
 * the batched step (one weight pass, the tile dots) equals each sequence
 * alone (the fused codec dots), kv f32 and f16; raw and lossless batched
 * logits byte-identical; generate_batch equal to each alone. */
static void test_cpu_batch_tiny_codecs(void **state) {
    (void)state;
    char dir[512], src[600], path[640];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "tiny", 7);
    const char *spec[4] = {"raw", "lossless", "q8", "q4"};
    float *l[2] = {NULL, NULL};
    size_t nl = 0;
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s.vz", dir, spec[k]);
        vz_test_convert(src, NULL, spec[k], path);
        vz_model *m = NULL;
        assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
        check_steps(m, VZ_DEVICE_CPU, VZ_KV_F32, 8, 8, NULL);
        check_steps(m, VZ_DEVICE_CPU, VZ_KV_F16, 8, 5, (const int32_t[]){6, 1, 4, 0, 3});
        check_generate(m, VZ_DEVICE_CPU, VZ_KV_F32, 8);
        if (k < 2) {
            nl = (size_t)NS * 8 * (size_t)vocab_of(m);
            l[k] = malloc(sizeof(float) * nl);
            assert_non_null(l[k]);
            steps_batched(m, VZ_DEVICE_CPU, VZ_KV_F32, 8, 8, (const int32_t[]){0, 1, 2, 3, 4, 5, 6, 7}, l[k]);
        }
        vz_model_close(m);
    }
    assert_memory_equal(l[0], l[1], sizeof(float) * nl);
    print_message("synth tiny on the CPU: 8 sequences batched, raw and lossless logits byte-identical\n");
    free(l[0]), free(l[1]);
    vz_test_rmtree(dir);
}

/* Bad arguments fail before anything is evaluated, naming the problem. */
static void test_batch_errors(void **state) {
    (void)state;
    REQUIRE_S260K(m);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.n_ctx = 16, o.n_seq = VZ_MAX_SEQ + 1;
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "n_seq"));
    o.n_seq = -1;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_ARG);
    o.n_seq = 3;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_OK);
    int32_t tok[4] = {1, 1, 1, 1}, out[4 * 20];
    float *l = malloc(sizeof(float) * 4 * 512);
    assert_non_null(l);
    vz_sampler_opts so[4];
    for (int i = 0; i < 4; i++) so[i] = sampler_of(i);
    assert_int_equal(vz_session_eval_seq(s, 3, tok, 1, l, 0), VZ_ERR_ARG);
    assert_int_equal(vz_session_eval_seq(s, -1, tok, 1, l, 0), VZ_ERR_ARG);
    assert_int_equal(vz_session_eval_batch(s, 4, NULL, tok, l), VZ_ERR_ARG); /* more than n_seq */
    assert_int_equal(vz_session_eval_batch(s, 0, NULL, tok, l), VZ_ERR_ARG);
    assert_int_equal(vz_session_eval_batch(s, 2, (const int32_t[]){1, 1}, tok, l), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "twice"));
    assert_int_equal(vz_session_eval_batch(s, 2, (const int32_t[]){0, 3}, tok, l), VZ_ERR_ARG);
    assert_int_equal(vz_session_eval_batch(s, 2, NULL, (const int32_t[]){1, 512}, l), VZ_ERR_ARG);
    for (int i = 0; i < 3; i++) assert_int_equal(vz_session_seq_pos(s, i), 0); /* nothing ran */
    /* sequence 2 nearly full: the batch fails as a whole, every position unchanged */
    int32_t fill[15];
    for (int i = 0; i < 15; i++) fill[i] = 1;
    assert_int_equal(vz_session_eval_seq(s, 2, fill, 15, NULL, 0), VZ_OK);
    assert_int_equal(vz_session_generate_batch(s, 3, NULL, tok, 2, so, out), VZ_ERR_CONTEXT);
    assert_non_null(strstr(vz_last_error(), "sequence 2"));
    assert_int_equal(vz_session_eval_batch(s, 3, NULL, tok, l), VZ_OK); /* one more fits */
    assert_int_equal(vz_session_eval_batch(s, 3, NULL, tok, l), VZ_ERR_CONTEXT);
    assert_int_equal(vz_session_seq_pos(s, 0), 1);
    assert_int_equal(vz_session_seq_pos(s, 1), 1);
    assert_int_equal(vz_session_seq_pos(s, 2), 16);
    assert_int_equal(vz_session_pos(s), 1); /* sequence 0 */
    assert_int_equal(vz_session_seq_pos(s, 3), 0);
    assert_int_equal(vz_session_generate_batch(s, 2, NULL, tok, 3, so, out), VZ_OK);
    assert_int_equal(vz_session_seq_pos(s, 1), 4);
    vz_session_reset(s);
    for (int i = 0; i < 3; i++) assert_int_equal(vz_session_seq_pos(s, i), 0);
    free(l);
    vz_session_free(s);
    vz_model_close(m);
}

/* The planner counts n_seq KV caches and names them when it refuses. */
static void test_batch_plan(void **state) {
    (void)state;
    REQUIRE_S260K(m);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F32, o.n_ctx = 512; /* planning needs no GPU with a budget */
    vz_plan p[9];
    for (int n = 1; n <= 8; n++) {
        o.n_seq = n, o.vram_budget = (uint64_t)1 << 40;
        assert_int_equal(vz_session_plan(m, &o, &p[n]), VZ_OK);
    }
    const uint64_t one = 2 * (uint64_t)5 * 512 * 32 * 4; /* stories260K: 5 layers, kv_dim 32 (4 KV heads x 8) */
    for (int n = 1; n <= 8; n++) {
        assert_true(p[n].kv_bytes >= (uint64_t)n * one);
        assert_true(p[n].kv_bytes <= (uint64_t)n * one + ((uint64_t)4 << 20)); /* rounding: 2 MiB per allocation */
        if (n > 1) assert_true(p[n].kv_bytes >= p[n - 1].kv_bytes && p[n].total_bytes >= p[n - 1].total_bytes);
        assert_true(p[n].fits);
    }
    o.n_seq = 8, o.vram_budget = p[3].total_bytes;
    vz_plan q;
    assert_int_equal(vz_session_plan(m, &o, &q), VZ_OK);
    assert_false(q.fits);
    print_message("advice: %s\n", q.advice);
    assert_non_null(strstr(q.advice, "for 8 sequences"));
    assert_non_null(strstr(q.advice, "; 3 sequences at once"));
    o.n_seq = 9;
    assert_int_equal(vz_session_plan(m, &o, &q), VZ_ERR_ARG);
    vz_model_close(m);
}

/* `vramzip run` with several prompts: each sequence labelled, equal to the prompt run alone (greedy). */
static void test_batch_cli(void **state) {
    (void)state;
    char bin[512], tok[512], dir[512];
    VZ_REQUIRE_MODEL(bin, S260K);
    VZ_REQUIRE_MODEL(tok, TOK512);
    char cmd[2048], *out = NULL, *one = NULL;
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -z '%s' --temp 0 -n 16", vz_test_cli(), bin, tok);
    int rc = vz_test_sh(&out, "%s -p 'Once upon' -p 'The cat' -p 'Lily' 2>/dev/null", cmd);
    assert_int_equal(rc, 0);
    const char *prompts[3] = {"Once upon", "The cat", "Lily"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(vz_test_sh(&one, "%s -p '%s' 2>/dev/null", cmd, prompts[i]), 0);
        char want[1024];
        one[strcspn(one, "\n")] = '\0';
        snprintf(want, sizeof want, "[%d/3] %s\n", i + 1, one);
        if (!strstr(out, want)) fail_msg("missing '%s' in:\n%s", want, out);
        free(one);
    }
    free(out);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    FILE *f;
    char pf[600];
    snprintf(pf, sizeof pf, "%s/prompts.txt", dir);
    assert_non_null(f = fopen(pf, "w"));
    fputs("Once upon\nThe cat\n", f);
    fclose(f);
    assert_int_equal(vz_test_sh(&out, "%s --prompts '%s' -p Lily --print-ids 2>&1", cmd, pf), 0);
    assert_non_null(strstr(out, "[3/3] "));
    assert_non_null(strstr(out, "3 sequences"));
    free(out);
    /* errors: 9 prompts, an empty one, an empty line, an empty file, --dump-logits with several */
    const char *bad[] = {"-p a -p b -p c -p d -p e -p f -p g -p h -p i", "-p a -p ''", "--prompts '%s/empty_line.txt'",
                         "--prompts '%s/empty.txt'", "-p a -p b --dump-logits '%s/d.bin'"};
    const char *why[] = {"more than 8 prompts", "empty prompt", "line 2: empty prompt", "no prompts", "single prompt"};
    snprintf(pf, sizeof pf, "%s/empty_line.txt", dir);
    assert_non_null(f = fopen(pf, "w"));
    fputs("a\n\nb\n", f);
    fclose(f);
    snprintf(pf, sizeof pf, "%s/empty.txt", dir);
    assert_non_null(f = fopen(pf, "w"));
    fclose(f);
    for (int i = 0; i < 5; i++) {
        char args[512];
        snprintf(args, sizeof args, bad[i], dir);
        rc = vz_test_sh(&out, "%s %s", cmd, args);
        if (rc == 0 || !strstr(out, why[i])) fail_msg("'%s': rc %d, output:\n%s", args, rc, out);
        assert_int_equal(rc, 2);
        free(out);
    }
    assert_int_equal(vz_test_sh(&out, "'%s' run --help", vz_test_cli()), 0);
    assert_non_null(strstr(out, "--prompts FILE"));
    free(out);
    vz_test_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_batch),
        cmocka_unit_test(test_cpu_batch_tiny_codecs),
        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_batch_plan),
        cmocka_unit_test(test_batch_cli),
        cmocka_unit_test(test_cuda_batch_stories260k),
        cmocka_unit_test(test_cuda_batch_tiny_raw_lossless),
        cmocka_unit_test(test_cuda_batch_tiny_q_dp),
        cmocka_unit_test(test_cuda_batch_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
