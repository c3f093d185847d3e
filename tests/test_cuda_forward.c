/*
 * test_cuda_forward.c - the GPU forward pass (--device cuda) against the CPU
 * reference session and the published stories260K greedy ids, the device
 * token loop against eval, and bit-identity of lossless vs raw weights on
 * the GPU, decode attention over many splits (each variant vs the CPU; the
 * cluster kernel's head_dim 64 and 128 builds vs the generic variant 3,
 * byte for byte), and on-device top-k / top-p sampling. Skips with a
 * message when built without CUDA or with no GPU.
 * Optional: VZ_TINYLLAMA_RAW and VZ_TINYLLAMA_LOSSLESS (a synthetic
 * tinyllama-1.1b and its lossless .vz, made by bench/gpu_final.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/ckpt.h"
#include "common/gpu.h"
#include "common/testutil.h"
#include "vramzip.h"

#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

/* llama2.c greedy from BOS on stories260K (shared/models/README.md). */
static const int32_t ref_ids[40] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                    426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                    295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352};

#define S260K "stories260K/stories260K.bin"

/* Greedy from BOS, both through the device token loop (one graph replayed
 * per position, argmax on the device) and through eval + host argmax. */
static void test_greedy_stories260k(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    const int32_t vocab = info.vocab_size;
    assert_int_equal(vocab, 512);
    for (int kv = 0; kv < 2; kv++) {
        vz_session *s = vz_test_open_session(m, VZ_DEVICE_CUDA, kv ? VZ_KV_F16 : VZ_KV_F32, 256);
        vz_sampler_opts so = {0.0f, 0, 1.0f, 0};
        int32_t out[40];
        /* 37 = 4 launches of the 8-step graph + 5 single steps, then 3 more from where it stopped */
        assert_int_equal(vz_session_generate(s, 1, 37, &so, out), VZ_OK);
        assert_int_equal(vz_session_generate(s, out[36], 3, &so, out + 37), VZ_OK);
        assert_memory_equal(out, ref_ids, sizeof ref_ids);
        assert_int_equal(vz_session_pos(s), 40);
        vz_session_reset(s);
        float logits[512];
        int32_t tok = 1;
        for (int i = 0; i < 40; i++) {
            assert_int_equal(vz_session_eval(s, &tok, 1, logits, 0), VZ_OK);
            tok = vz_test_argmax(logits, vocab);
            assert_int_equal(tok, ref_ids[i]);
        }
        vz_session_free(s);
    }
    vz_model_close(m);
}

/* GPU logits vs the CPU session over 64 positions (all logits, batched
 * prefill on both). Tolerance: each logit is a chain of ~7 f32 dot products
 * per layer (lengths <= 172) plus softmax sums; the two sides add the same
 * terms in different orders (GPU: 32 lane partials + a shuffle tree; CPU:
 * 16 partials + a fixed tree), so each dot differs by at most ~n*2^-24 of
 * sum|a_i b_i| (~1e-5 relative) and, through 5 residual layers, the logits
 * by at most ~1e-5 of their scale (typical errors grow as sqrt(n), far
 * less): f32 KV allows 1e-5 * max|logit| (measured on an H200: 4e-7).
 * f16 KV: both sides round the same f32 values to f16 (nearest even), but a
 * value that lands on the other side of a rounding boundary moves by one f16
 * ulp (2^-11 relative) on one side only; a few such flips per layer give a
 * few 1e-5 of the scale: allowed 1e-4 * max|logit| (measured: 2.3e-5). */
static void test_logits_match_cpu(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    enum { N = 41, V = 512 };
    int32_t toks[N];
    toks[0] = 1;
    memcpy(toks + 1, ref_ids, sizeof ref_ids);
    float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V);
    assert_non_null(a);
    assert_non_null(b);
    setenv("VZ_CUDA_PREFILL", "0", 1); /* the matvec path (f32); the bf16 prefill: test_cuda_prefill.c */
    for (int kv = 0; kv < 2; kv++) {
        vz_kv_mode mode = kv ? VZ_KV_F16 : VZ_KV_F32;
        vz_session *cpu = vz_test_open_session(m, VZ_DEVICE_CPU, mode, 256);
        vz_session *gpu = vz_test_open_session(m, VZ_DEVICE_CUDA, mode, 256);
        assert_int_equal(vz_session_eval(cpu, toks, N, a, 1), VZ_OK);
        assert_int_equal(vz_session_eval(gpu, toks, N, b, 1), VZ_OK);
        float scale = 0.0f, maxd = 0.0f;
        for (int i = 0; i < N * V; i++) {
            assert_false(isnan(b[i]));
            if (fabsf(a[i]) > scale) scale = fabsf(a[i]);
            if (fabsf(a[i] - b[i]) > maxd) maxd = fabsf(a[i] - b[i]);
        }
        const float tol = (kv ? 1e-4f : 1e-5f) * scale;
        print_message("kv %s: max |gpu - cpu| = %.3g over %d logits (max |logit| %.3g, tolerance %.3g)\n",
                      kv ? "f16" : "f32", (double)maxd, N * V, (double)scale, (double)tol);
        assert_true(maxd <= tol);
        /* one token at a time (the decode graph) gives the batched result's logits */
        vz_session_reset(gpu);
        for (int i = 0; i < N; i++) {
            assert_int_equal(vz_session_eval(gpu, toks + i, 1, b, 0), VZ_OK);
            for (int j = 0; j < V; j++) assert_true(fabsf(b[j] - a[i * V + j]) <= tol);
        }
        vz_session_free(cpu);
        vz_session_free(gpu);
    }
    unsetenv("VZ_CUDA_PREFILL");
    free(a);
    free(b);
    vz_model_close(m);
}

/* n ids of a v-token vocabulary: BOS, then 3..v-1 spread by a prime stride. */
static void pseudo_ids(int32_t *toks, int n, int v) {
    toks[0] = 1;
    for (int i = 1; i < n; i++) toks[i] = (int32_t)((i * 7919u + 13u) % (unsigned)(v - 3)) + 3;
}

/* Decode attention over many splits: 300 positions of pseudo-random ids
 * (32 keys per chunk: a 320 context has 10, so later rows merge up to 10
 * partials, more than the merge's 8 unrolled rows, attention.cuh), GPU vs
 * the CPU session under each attention variant (forward.cuh), batched (8
 * rows per step, the f32 matvec path) and one token at a time. f32 KV:
 * tolerance as test_logits_match_cpu (the softmax sums here run over <= 300
 * keys, within the same ~n*2^-24 relative bound as its dots). f16 KV: each
 * of the N x 5 stored K/V rows may differ by one f16 ulp (2^-11 relative)
 * in elements whose GPU and CPU f32 values straddle a rounding boundary;
 * test_logits_match_cpu bounds those flips by 1e-4 of the scale over 41
 * positions, and every later position sees every earlier row's flips, so
 * the bound scales with the rows: 1e-4 x N / 41 of the scale (~7.3e-4 at
 * 300; measured on an H200 at 250 positions: 2.9e-3 / 18.3 = 1.6e-4, both
 * variants). */
static void test_long_context_stories260k(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    enum { N = 300, V = 512, CTX = 320 };
    int32_t toks[N];
    pseudo_ids(toks, N, V);
    float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V);
    assert_non_null(a);
    assert_non_null(b);
    setenv("VZ_CUDA_PREFILL", "0", 1);
    setenv("VZ_CUDA_ATT_CHUNK", "32", 1);
    for (int kv = 0; kv < 2; kv++) {
        vz_kv_mode mode = kv ? VZ_KV_F16 : VZ_KV_F32;
        vz_session *cpu = vz_test_open_session(m, VZ_DEVICE_CPU, mode, CTX);
        assert_int_equal(vz_session_eval(cpu, toks, N, a, 1), VZ_OK);
        float scale = 0.0f;
        for (int i = 0; i < N * V; i++) scale = fmaxf(scale, fabsf(a[i]));
        const float tol = (kv ? 1e-4f * N / 41.0f : 1e-5f) * scale;
        for (int var = 0; var < 2; var++) {
            setenv("VZ_CUDA_ATT", var ? "1" : "0", 1);
            vz_session *gpu = vz_test_open_session(m, VZ_DEVICE_CUDA, mode, CTX);
            for (int i = 0; i < N * V; i++) b[i] = NAN;
            assert_int_equal(vz_session_eval(gpu, toks, N, b, 1), VZ_OK);
            float maxd = 0.0f;
            for (int i = 0; i < N * V; i++) {
                assert_false(isnan(b[i]));
                maxd = fmaxf(maxd, fabsf(a[i] - b[i]));
            }
            vz_session_reset(gpu);
            for (int i = 0; i < N; i++) {
                assert_int_equal(vz_session_eval(gpu, toks + i, 1, b, 0), VZ_OK);
                for (int j = 0; j < V; j++) maxd = fmaxf(maxd, fabsf(b[j] - a[i * V + j]));
            }
            print_message("kv %s, attention %d, %d positions: max |gpu - cpu| = %.3g (tolerance %.3g)\n",
                          kv ? "f16" : "f32", var, N, (double)maxd, (double)tol);
            assert_true(maxd <= tol);
            vz_session_free(gpu);
        }
        vz_session_free(cpu);
    }
    unsetenv("VZ_CUDA_ATT");
    unsetenv("VZ_CUDA_ATT_CHUNK");
    unsetenv("VZ_CUDA_PREFILL");
    free(a);
    free(b);
    vz_model_close(m);
}

/* The GPU logits of n tokens of a v-token vocabulary (kv: f16 KV, else
 * f32), evaluated in one call into out[0 .. n*v) (8 tokens per step under
 * the callers' VZ_CUDA_PREFILL=0) and again one at a time into
 * out[n*v .. 2*n*v) (the decode graph), every one written (poisoned with
 * NaN before). */
static void gpu_logits_twice(vz_model *m, int kv, const int32_t *toks, int n, int v, float *out) {
    vz_session *s = vz_test_open_session(m, VZ_DEVICE_CUDA, kv ? VZ_KV_F16 : VZ_KV_F32, 256);
    for (int i = 0; i < 2 * n * v; i++) out[i] = NAN;
    assert_int_equal(vz_session_eval(s, toks, n, out, 1), VZ_OK);
    vz_session_reset(s);
    for (int i = 0; i < n; i++) assert_int_equal(vz_session_eval(s, toks + i, 1, out + (size_t)(n + i) * v, 0), VZ_OK);
    vz_session_free(s);
    for (int i = 0; i < 2 * n * v; i++) assert_false(isnan(out[i]));
}

/* The default attention (variant 0: the chunk blocks of a head merge in a
 * thread block cluster) gives the bits of variant 3 (the same blocks
 * merging through global memory), byte for
 * byte: 250 positions of a 256 context at 32 keys per block (up to 8
 * chunks), f32 and f16 KV, 8 tokens per step and one at a time, with
 * clusters of 8 blocks (one chunk each), 3 and 2 (several chunks per block,
 * the cached rows of the later ones fetched after the PDL wait), 3 with
 * the blocks other than rank 0 waiting for it (VZ_CUDA_ATT_LINGER=1), and
 * 8 with the next launch let in only after each block's staging
 * (VZ_CUDA_ATT_LATE=1), and 8 with blocks padded to 2/7 and to half of an
 * SM's shared memory (VZ_CUDA_ATT_ROOM=1, =2 with the late trigger: the
 * one-at-a-time steps). A cluster launch that fails falls back to variant
 * 3 with the same bits, so each configuration must also have launched in
 * clusters (the padded ones with padded blocks). */
static void test_attention_cluster_stories260k(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    enum { N = 250, V = 512, NC = 7 };
    static const char *const cl[NC] = {"16", "3", "2", "3", "16", "16", "16"}; /* [3] linger, [4] late, [5-6] room */
    static const char *const how[NC] = {"", "", "", " (linger)", " (late)", " (room 2/7)", " (late, room 1/2)"};
    int32_t toks[N];
    pseudo_ids(toks, N, V);
    float *ref = malloc(sizeof(float) * 2 * N * V), *got = malloc(sizeof(float) * 2 * N * V);
    assert_true(ref && got);
    setenv("VZ_CUDA_PREFILL", "0", 1);
    setenv("VZ_CUDA_ATT_CHUNK", "32", 1);
    for (int kv = 0; kv < 2; kv++)
        for (int c = -1; c < NC; c++) { /* -1: variant 3, the reference */
            setenv("VZ_CUDA_ATT", c < 0 ? "3" : "0", 1);
            if (c >= 0) setenv("VZ_CUDA_ATT_CLUSTER", cl[c], 1);
            if (c == 3) setenv("VZ_CUDA_ATT_LINGER", "1", 1);
            if (c == 4 || c == 6) setenv("VZ_CUDA_ATT_LATE", "1", 1);
            if (c >= 5) setenv("VZ_CUDA_ATT_ROOM", c == 5 ? "1" : "2", 1);
            uint64_t cl0 = 0, pad0 = 0, cl1 = 0, pad1 = 0;
#ifdef VZ_HAVE_CUDA
            vz_cuda_att_launches(&cl0, &pad0);
#endif
            gpu_logits_twice(m, kv, toks, N, V, c < 0 ? ref : got);
#ifdef VZ_HAVE_CUDA
            vz_cuda_att_launches(&cl1, &pad1);
#endif
            unsetenv("VZ_CUDA_ATT_LINGER"), unsetenv("VZ_CUDA_ATT_LATE"), unsetenv("VZ_CUDA_ATT_ROOM");
            if (c < 0) continue;
            print_message("kv %s, cluster cap %s%s: %llu cluster launches, %llu with padded blocks\n",
                          kv ? "f16" : "f32", cl[c], how[c], (unsigned long long)(cl1 - cl0),
                          (unsigned long long)(pad1 - pad0));
            assert_true(cl1 > cl0);
            assert_true(c >= 5 ? pad1 > pad0 : pad1 == pad0);
            print_message("kv %s, cluster cap %s%s: %d x 2 steps of logits byte-identical to variant 3: %s\n",
                          kv ? "f16" : "f32", cl[c], how[c], N,
                          memcmp(ref, got, sizeof(float) * 2 * N * V) ? "no" : "yes");
            assert_memory_equal(ref, got, sizeof(float) * 2 * N * V);
        }
    unsetenv("VZ_CUDA_ATT");
    unsetenv("VZ_CUDA_ATT_CLUSTER");
    unsetenv("VZ_CUDA_ATT_CHUNK");
    unsetenv("VZ_CUDA_PREFILL");
    free(ref);
    free(got);
    vz_model_close(m);
}

/* The cluster attention kernel is compiled apart for head_dim 64 and 128
 * (constants instead of runtime sizes, forward.cu att_cl_kernel) and stays
 * generic otherwise; variant 3 (att_block) is generic always. Random bf16
 * models with those head dims (4 query heads over 2 kv heads, 2 layers),
 * 100 positions in chunks of 32 keys (a 4-block merge), batched and one
 * token at a time: variant 0's logits byte-identical to variant 3's, KV
 * f32 and f16. */
static void test_attention_headdims(void **state) {
    (void)state;
    char tok[1024], dir[512], hf[700];
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.model");
    if (!vz_test_have_gpu()) skip();
    enum { N = 100, V = 512 };
    int32_t toks[N];
    pseudo_ids(toks, N, V);
    float *ref = malloc(sizeof(float) * 2 * N * V), *got = malloc(sizeof(float) * 2 * N * V);
    assert_true(ref && got);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    setenv("VZ_CUDA_PREFILL", "0", 1);
    setenv("VZ_CUDA_ATT_CHUNK", "32", 1);
    for (int hd = 64; hd <= 128; hd *= 2) {
        vz_ckpt_model w;
        assert_int_equal(vz_ckpt_random(&w, 4 * hd, 8 * hd, 2, 4, 2, V, 0, 40 + (uint64_t)hd), 0);
        w.seq = 256; /* max_position_embeddings: the sessions' context */
        snprintf(hf, sizeof hf, "%s/hd%d", dir, hd);
        assert_int_equal(mkdir(hf, 0755), 0);
        assert_int_equal(vz_ckpt_write_hf(hf, &w, "BF16", 1, w.wcls == NULL), 0);
        vz_ckpt_free(&w);
        char *o = NULL;
        assert_int_equal(vz_test_sh(&o, "cp '%s' '%s/tokenizer.model'", tok, hf), 0);
        free(o);
        vz_model *m = NULL;
        assert_int_equal(vz_model_open(&m, hf, NULL), VZ_OK);
        for (int kv = 0; kv < 2; kv++) {
            for (int v = 3; v >= 0; v -= 3) { /* variant 3 first: the reference */
                setenv("VZ_CUDA_ATT", v ? "3" : "0", 1);
                gpu_logits_twice(m, kv, toks, N, V, v ? ref : got);
            }
            print_message("head_dim %d, kv %s: cluster kernel byte-identical to variant 3: %s\n", hd,
                          kv ? "f16" : "f32", memcmp(ref, got, sizeof(float) * 2 * N * V) ? "no" : "yes");
            assert_memory_equal(ref, got, sizeof(float) * 2 * N * V);
        }
        vz_model_close(m);
    }
    unsetenv("VZ_CUDA_ATT");
    unsetenv("VZ_CUDA_ATT_CHUNK");
    unsetenv("VZ_CUDA_PREFILL");
    vz_test_rmtree(dir);
    free(ref);
    free(got);
}

/* The synthetic tinyllama-1.1b of VZ_TINYLLAMA_RAW, opened; skips the test
 * without it or without a GPU. */
static vz_model *tinyllama_raw_or_skip(void) {
    const char *raw = getenv("VZ_TINYLLAMA_RAW");
    if (!raw) {
        print_message("SKIP: set VZ_TINYLLAMA_RAW (bench/gpu_final.sh does)\n");
        skip();
    }
    if (!vz_test_have_gpu()) skip();
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, raw, NULL), VZ_OK);
    return m;
}

/* tinyllama-1.1b shapes (hd 64, 8 query heads per kv head, 16 chunks of a
 * 2048 context): after a 600-token prompt, 16 greedy steps one token at a
 * time under attention variant 0 (per query head) and 1 (by kv head), and
 * variant 0 with 32 keys per chunk instead of 128 (19-20 partials per head:
 * several chunks per block of a cluster of 8). They differ only in the
 * order of the softmax and merge sums (a few f32 ulps of each attention
 * output), so their logits agree to far better than 1e-4 of their scale.
 * Variant 3 at 32 keys per chunk (the blocks merging through global memory,
 * more than one shared-memory batch of att_combine's 15 rows of hd + 2)
 * gives the logits of variant 0 at 32 keys byte for byte. */
static void test_attention_variants_tinyllama(void **state) {
    (void)state;
    enum { P = 600, STEPS = 16, NS = 4 };
    vz_model *m = tinyllama_raw_or_skip();
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    const int32_t V = info.vocab_size;
    static const char *const var[NS] = {"0", "1", "0", "3"}, *const chunk[NS] = {NULL, NULL, "32", "32"};
    vz_session *s[NS];
    for (int i = 0; i < NS; i++) {
        setenv("VZ_CUDA_ATT", var[i], 1);
        if (chunk[i]) setenv("VZ_CUDA_ATT_CHUNK", chunk[i], 1);
        s[i] = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F16, 2048);
        unsetenv("VZ_CUDA_ATT_CHUNK");
    }
    unsetenv("VZ_CUDA_ATT");
    int32_t *toks = malloc(sizeof(int32_t) * P);
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    float *c = malloc(sizeof(float) * (size_t)V); /* variant 0 at 32 keys */
    assert_true(toks && a && b && c);
    for (int i = 0; i < P; i++) toks[i] = (int32_t)((i * 2654435761u) % (uint32_t)(V - 3)) + 3;
    assert_int_equal(vz_session_eval(s[0], toks, P, a, 0), VZ_OK);
    for (int i = 1; i < NS; i++) assert_int_equal(vz_session_eval(s[i], toks, P, b, 0), VZ_OK);
    int32_t tok = vz_test_argmax(a, V);
    float maxd[NS] = {0.0f}, scale = 0.0f;
    for (int t = 0; t < STEPS; t++) {
        assert_int_equal(vz_session_eval(s[0], &tok, 1, a, 0), VZ_OK);
        for (int i = 1; i < NS; i++) {
            for (int j = 0; j < V; j++) b[j] = NAN;
            assert_int_equal(vz_session_eval(s[i], &tok, 1, b, 0), VZ_OK);
            for (int j = 0; j < V; j++) {
                assert_false(isnan(a[j]) || isnan(b[j]));
                scale = fmaxf(scale, fabsf(a[j]));
                maxd[i] = fmaxf(maxd[i], fabsf(a[j] - b[j]));
            }
            if (i == 2) memcpy(c, b, sizeof(float) * (size_t)V);
            if (i == 3) assert_memory_equal(c, b, sizeof(float) * (size_t)V);
        }
        tok = vz_test_argmax(a, V);
    }
    for (int i = 1; i < NS; i++) {
        print_message("attention 0 vs %s%s%s at %d..%d: max |d| = %.3g (max |logit| %.3g)\n", var[i],
                      chunk[i] ? ", keys per block " : "", chunk[i] ? chunk[i] : "", P, P + STEPS, (double)maxd[i],
                      (double)scale);
        assert_true(maxd[i] <= 1e-4f * scale);
    }
    free(toks);
    free(a);
    free(b);
    free(c);
    for (int i = 0; i < NS; i++) vz_session_free(s[i]);
    vz_model_close(m);
}

/* tinyllama-1.1b shapes, 8 tokens per step (VZ_CUDA_PREFILL=0): the
 * default attention (variant 0, clusters) gives the logits of variant 3
 * (global-memory merge) byte for byte over a 200-token prompt, at 32 keys
 * per chunk (several chunks per block) and at the default 128. With hd 64
 * a step's 8 new K/V rows are 256 rotation items for 128 threads, so the
 * cluster kernel's first pass over the new rows (att_cl_stage: angles
 * before the PDL wait, loads issued together) and its loop over the rest
 * both run; variant 3 rotates all of them in one loop. */
static void test_attention_cluster_wide_tinyllama(void **state) {
    (void)state;
    enum { N = 200 };
    vz_model *m = tinyllama_raw_or_skip();
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    const size_t V = (size_t)info.vocab_size;
    int32_t toks[N];
    pseudo_ids(toks, N, (int32_t)V);
    float *ref = malloc(sizeof(float) * N * V), *got = malloc(sizeof(float) * N * V);
    assert_true(ref && got);
    setenv("VZ_CUDA_PREFILL", "0", 1);
    static const char *const chunk[2] = {"32", "128"};
    for (int c = 0; c < 2; c++) {
        setenv("VZ_CUDA_ATT_CHUNK", chunk[c], 1);
        for (int v = 0; v < 2; v++) { /* 0: variant 3, the reference; 1: variant 0 */
            setenv("VZ_CUDA_ATT", v ? "0" : "3", 1);
            vz_session *s = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F16, 2048);
            float *out = v ? got : ref;
            for (size_t i = 0; i < N * V; i++) out[i] = NAN;
            assert_int_equal(vz_session_eval(s, toks, N, out, 1), VZ_OK);
            vz_session_free(s);
            for (size_t i = 0; i < N * V; i++) assert_false(isnan(out[i]));
        }
        print_message("tinyllama, 8 tokens per step, %s keys per chunk: logits of %d tokens of variant 0 byte-identical to "
                      "variant 3: %s\n",
                      chunk[c], N, memcmp(ref, got, sizeof(float) * N * V) ? "no" : "yes");
        assert_memory_equal(ref, got, sizeof(float) * N * V);
    }
    unsetenv("VZ_CUDA_ATT");
    unsetenv("VZ_CUDA_ATT_CHUNK");
    unsetenv("VZ_CUDA_PREFILL");
    free(ref);
    free(got);
    vz_model_close(m);
}

/* Lossless packed3 (the default) and packed4 (lossless:k4) of the f32
 * stories260K: the generic decoders. */
static void test_lossless_bitexact_stories260k(void **state) {
    (void)state;
    char path[1024], dir[512], raw[600], ll[600], ll4[600];
    VZ_REQUIRE_MODEL(path, S260K);
    if (!vz_test_have_gpu()) skip();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(raw, sizeof raw, "%s/raw.vz", dir);
    snprintf(ll, sizeof ll, "%s/ll.vz", dir);
    snprintf(ll4, sizeof ll4, "%s/ll4.vz", dir);
    vz_test_convert(path, NULL, "raw", raw);
    vz_test_convert(path, NULL, "lossless", ll);
    vz_test_convert(path, NULL, "lossless:k4", ll4);
    vz_test_gpu_bitwise(raw, ll, 200, 256);
    vz_test_gpu_bitwise(raw, ll4, 200, 256);
    vz_test_rmtree(dir);
}

/* lossless:k4 of a bf16 synth "small" (dim 256): the packed4 kernels,
 * whose copy holds the code words in the GPU sign order. */
static void test_lossless_k4_bitexact_synth(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
    char dir[256], src[512], raw[600], ll4[600];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "small", 3);
    snprintf(raw, sizeof raw, "%s/raw.vz", dir);
    snprintf(ll4, sizeof ll4, "%s/ll4.vz", dir);
    vz_test_convert(src, NULL, "raw", raw);
    vz_test_convert(src, NULL, "lossless:k4", ll4);
    vz_test_gpu_bitwise(raw, ll4, 200, 256);
    vz_test_rmtree(dir);
}

static void test_lossless_bitexact_tinyllama(void **state) {
    (void)state;
    const char *raw = getenv("VZ_TINYLLAMA_RAW"), *ll = getenv("VZ_TINYLLAMA_LOSSLESS");
    if (!raw || !ll) {
        print_message("SKIP: set VZ_TINYLLAMA_RAW and VZ_TINYLLAMA_LOSSLESS (bench/gpu_final.sh does)\n");
        skip();
    }
    if (!vz_test_have_gpu()) skip();
    vz_test_gpu_bitwise(raw, ll, 256, 512);
}

/* On-device sampling (the sampler inside the decode graph), seed-fixed:
 * top_k = 1 and a tiny top_p at temperature 1 leave only the argmax, so
 * both give the greedy ids; top_k = 5 at temperature 1.5 gives the same
 * tokens for the same seed, and each token is among the 5 largest logits
 * of its position (checked against eval over the sampled sequence). */
static void test_sampling_stories260k(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    enum { N = 40, V = 512, K = 5 };
    setenv("VZ_CUDA_PREFILL", "0", 1); /* the eval below gives the logits the sampler saw (f32 matvec path) */
    vz_session *s = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F16, 256);
    unsetenv("VZ_CUDA_PREFILL");
    int32_t out[N], again[N], seq[N];
    const vz_sampler_opts only_top[2] = {{1.0f, 1, 1.0f, 7}, {1.0f, 0, 1e-6f, 7}};
    for (int i = 0; i < 2; i++) {
        vz_session_reset(s);
        assert_int_equal(vz_session_generate(s, 1, N, &only_top[i], out), VZ_OK);
        assert_memory_equal(out, ref_ids, sizeof ref_ids);
    }
    const vz_sampler_opts topk = {1.5f, K, 1.0f, 12345};
    vz_session_reset(s);
    assert_int_equal(vz_session_generate(s, 1, N, &topk, out), VZ_OK);
    vz_session_reset(s);
    assert_int_equal(vz_session_generate(s, 1, N, &topk, again), VZ_OK);
    assert_memory_equal(out, again, sizeof out);
    assert_memory_not_equal(out, ref_ids, sizeof out); /* temperature 1.5 over 40 steps: not all argmax */
    seq[0] = 1;
    memcpy(seq + 1, out, sizeof(int32_t) * (N - 1));
    float *l = malloc(sizeof(float) * N * V);
    assert_non_null(l);
    vz_session_reset(s);
    assert_int_equal(vz_session_eval(s, seq, N, l, 1), VZ_OK);
    for (int i = 0; i < N; i++) {
        assert_true(out[i] >= 0 && out[i] < V);
        int above = 0;
        for (int j = 0; j < V; j++) above += l[i * V + j] > l[i * V + out[i]];
        if (above >= K) fail_msg("step %d: token %d has %d larger logits (top_k %d)", i, out[i], above, K);
    }
    free(l);
    vz_session_free(s);
    vz_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_stories260k),
        cmocka_unit_test(test_logits_match_cpu),
        cmocka_unit_test(test_lossless_bitexact_stories260k),
        cmocka_unit_test(test_lossless_k4_bitexact_synth),
        cmocka_unit_test(test_lossless_bitexact_tinyllama),
        cmocka_unit_test(test_long_context_stories260k),
        cmocka_unit_test(test_attention_cluster_stories260k),
        cmocka_unit_test(test_attention_headdims),
        cmocka_unit_test(test_attention_variants_tinyllama),
        cmocka_unit_test(test_attention_cluster_wide_tinyllama),
        cmocka_unit_test(test_sampling_stories260k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
