/*
 * test_cuda_archs.c - the Hugging Face and llama.cpp variants beyond Llama 2
 * on the GPU (--device cuda): Qwen 2's q/k/v biases and tied head, rope
 * scaling (llama3 and linear from config.json; llama.cpp's per-pair
 * rope_freqs from a GGUF) and GGUF Q8_0 / Q4_0 tensors (read as q8 / q4),
 * each against the CPU session (whose variants test_hf_archs.c checks
 * against transformers' formulas), through the decode kernels and the GEMM
 * prefill; raw and lossless logits byte-identical on the GPU for the
 * variants a .vz can hold losslessly; an explicit head_dim (q and o wider
 * than the model). Skips without CUDA or a GPU, and the
 * GGUF cases without python3 (tests/hf_to_gguf.py). Run from the
 * repository root (tests/golden, tests/hf_to_gguf.py).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gpu.h"
#include "common/testutil.h"
#include "vramzip.h"

#define LLAMA3_SCALING                                                                                            \
    "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "         \
    "\"original_max_position_embeddings\": 64}"

enum { N = 48 }; /* tokens per comparison: more than a decode batch (8), so an eval of all of them is a prefill */

/* The largest |a - b| over n floats (a NaN in b fails the test), and max |a| into *scale. */
static float max_diff(const float *a, const float *b, int64_t n, float *scale) {
    float d = 0.0f, s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        assert_false(isnan(b[i]));
        s = fabsf(a[i]) > s ? fabsf(a[i]) : s;
        d = fabsf(a[i] - b[i]) > d ? fabsf(a[i] - b[i]) : d;
    }
    *scale = s;
    return d;
}

/* The N tokens of a comparison: BOS, then pseudo-random ids of vocab v. */
static void test_ids(int32_t *toks, int32_t bos, int32_t v) {
    uint64_t rs = 11;
    toks[0] = bos >= 0 ? bos : 1;
    for (int i = 1; i < N; i++) toks[i] = (int32_t)(3 + vz_test_rand(&rs) % (uint64_t)(v - 3));
}

/* All N logits rows of model path on the CPU (KV f32), malloc'ed; *v: its vocab. */
static float *cpu_logits(const char *path, int32_t *v) {
    vz_model *m = NULL;
    if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("%s: %s", path, vz_last_error());
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    int32_t toks[N];
    test_ids(toks, info.bos_id, info.vocab_size);
    float *a = malloc(sizeof(float) * N * (size_t)info.vocab_size);
    assert_non_null(a);
    vz_session *cpu = vz_test_open_session(m, VZ_DEVICE_CPU, VZ_KV_F32, 256);
    assert_int_equal(vz_session_eval(cpu, toks, N, a, 1), VZ_OK);
    vz_session_free(cpu);
    vz_model_close(m);
    *v = info.vocab_size;
    return a;
}

static double rms_diff(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* The RMS of n rows of v logits about each row's mean: what the logits say. */
static double rms_signal(const float *a, int64_t n, int64_t v) {
    double s = 0.0;
    for (int64_t r = 0; r < n; r++) {
        double m = 0.0;
        for (int64_t j = 0; j < v; j++) m += a[r * v + j];
        m /= (double)v;
        for (int64_t j = 0; j < v; j++) s += (a[r * v + j] - m) * (a[r * v + j] - m);
    }
    return sqrt(s / (double)(n * v));
}

enum { PREFILL_NONE, PREFILL_BOUND, PREFILL_VS_PLAIN, PREFILL_VS_SIGNAL };

/* All N logits rows of model path on the GPU against the CPU session (KV
 * f32, BOS then pseudo-random ids):
 *  - the decode kernels (VZ_CUDA_PREFILL=0: f32 matvecs, 8 tokens a step),
 *    then one token at a time: within 1e-5 of max|logit|, the bound that
 *    test_cuda_forward.c's test_logits_match_cpu derives for f32 sums in
 *    two orders over dims 64..172 (the shapes here: synth tiny, dim 64,
 *    hidden 172, 2 layers). A missing bias or an unscaled frequency moves
 *    logits by 0.1-1 (test_hf_archs.c).
 *  - the GEMM prefill (bf16 inputs to the GEMMs; its kernels are checked
 *    one by one in test_cuda_prefill.c, the rope kernel with scaled
 *    frequencies and biases too), for the wiring: PREFILL_BOUND within
 *    2^-6 of max|logit|, test_cuda_prefill.c's test_prefill_vs_cpu bound
 *    (derived there for stories260K's trained weights); PREFILL_VS_PLAIN,
 *    for a rope scaling: the RMS distance to the CPU's logits at most a
 *    quarter of the distance between the CPU's logits with and without the
 *    scaling (plain: the same weights unscaled). On these random weights
 *    the bf16 rounding moves the largest logits by up to 2.4% of their
 *    scale (H200, session 72), past the stories260K bound, while a prefill
 *    that ignored the scaling would sit as far from the CPU as plain does.
 *    PREFILL_VS_SIGNAL, for an explicit head_dim (no model without it has
 *    these tensors): the RMS distance at most a tenth of the RMS of the
 *    CPU's logits about their row means. The bf16 rounding of these random
 *    weights' GEMM inputs moved tiny-hd's largest logits by 1.9% of their
 *    scale (0.111 of 5.82), past the stories260K bound, at an RMS of 0.0162,
 *    1/83 of that spread (1.34; H200, session 75; tiny-qwen2's: 1/151);
 *    a GEMM, rope or attention reading q, k, v or the attention's output
 *    at the model's width instead of n_heads x head_dim moves them by
 *    the order of the spread itself. */
static void expect_gpu_matches_cpu(const char *path, const char *plain, int prefill, const char *what) {
    vz_model *m = NULL;
    if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("%s: %s", path, vz_last_error());
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    int32_t V = info.vocab_size, V0 = 0, toks[N];
    test_ids(toks, info.bos_id, V);
    float *a = cpu_logits(path, &V0), *b = malloc(sizeof(float) * N * (size_t)V);
    float *a0 = prefill == PREFILL_VS_PLAIN ? cpu_logits(plain, &V0) : NULL;
    assert_non_null(b);
    assert_int_equal(V0, V);
    float scale = 0.0f;
    for (int pass = 0; pass < (prefill == PREFILL_NONE ? 1 : 2); pass++) {
        if (pass == 0) setenv("VZ_CUDA_PREFILL", "0", 1);
        vz_session *gpu = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F32, 256);
        unsetenv("VZ_CUDA_PREFILL");
        for (int64_t i = 0; i < (int64_t)N * V; i++) b[i] = NAN;
        assert_int_equal(vz_session_eval(gpu, toks, N, b, 1), VZ_OK);
        const float d = max_diff(a, b, (int64_t)N * V, &scale);
        const double r = rms_diff(a, b, (int64_t)N * V);
        if (pass == 0 || prefill == PREFILL_BOUND) {
            const float tol = (pass == 0 ? 1e-5f : 0x1p-6f) * scale;
            print_message("%s, %s: max |gpu - cpu| = %.3g (rms %.3g) over %d x %d logits (max |logit| %.3g, "
                          "tolerance %.3g)\n",
                          what, pass == 0 ? "decode kernels" : "GEMM prefill", (double)d, r, N, (int)V, (double)scale,
                          (double)tol);
            if (!(d <= tol)) fail_msg("%s: the GPU's logits are off the CPU's", what);
        } else if (prefill == PREFILL_VS_SIGNAL) {
            const double sig = rms_signal(a, N, V);
            print_message("%s, GEMM prefill: rms |gpu - cpu| = %.3g (max %.3g, max |logit| %.3g); rms of the cpu's "
                          "logits about their row means = %.3g, a tenth of it allowed\n",
                          what, r, (double)d, (double)scale, sig);
            if (!(10.0 * r <= sig)) fail_msg("%s: the GPU prefill's logits are not near the CPU's", what);
        } else {
            const double r0 = rms_diff(a, a0, (int64_t)N * V);
            print_message("%s, GEMM prefill: rms |gpu - cpu| = %.3g (max %.3g, max |logit| %.3g); rms |cpu without "
                          "the scaling - cpu| = %.3g, a quarter of it allowed\n",
                          what, r, (double)d, (double)scale, r0);
            if (!(4.0 * r <= r0)) fail_msg("%s: the GPU prefill's logits are not near the CPU's", what);
        }
        if (pass == 0) { /* one token per step: the decode graph */
            const float tol = 1e-5f * scale;
            vz_session_reset(gpu);
            for (int i = 0; i < N; i++) {
                assert_int_equal(vz_session_eval(gpu, toks + i, 1, b, 0), VZ_OK);
                for (int j = 0; j < V; j++)
                    if (!(fabsf(b[j] - a[(size_t)i * V + j]) <= tol))
                        fail_msg("%s: step %d logit %d: gpu %g, cpu %g", what, i, j, b[j], a[(size_t)i * V + j]);
            }
        }
        vz_session_free(gpu);
    }
    free(a), free(b), free(a0);
    vz_model_close(m);
}

/* A synth tiny checkpoint of shape (with the byte-level Llama 3 tokenizer
 * when bpe, as tests/hf_to_gguf.py needs) in dir/src. */
static void synth(const char *dir, const char *shape, int bpe, char *src, size_t cap) {
    char *out = NULL;
    snprintf(src, cap, "%s/src", dir);
    if (vz_test_sh(&out, "%s synth --shape %s -o '%s'%s", vz_test_cli(), shape, src,
                   bpe ? " --tokenizer tests/golden/bpe/llama3/tokenizer.json" : "") != 0)
        fail_msg("synth %s: %s", shape, out);
    free(out);
}

/* The checkpoint src against the CPU under each decode attention variant
 * (forward.cuh: 0 the default, 1 by kv head, 3 merging through global
 * memory; each reads q, k, v in its own code), then its lossless .vz
 * against it bit for bit. */
static void check_hf(const char *dir, const char *src, const char *plain, int prefill, const char *what) {
    char vz[400], *out = NULL, name[160];
    for (int v = 0; v < 4; v++) {
        if (v == 2) continue; /* a timing knob: no attention at all */
        char env[8];
        snprintf(env, sizeof env, "%d", v);
        setenv("VZ_CUDA_ATT", env, 1);
        snprintf(name, sizeof name, "%s, attention variant %d", what, v);
        expect_gpu_matches_cpu(src, plain, v == 0 ? prefill : PREFILL_NONE, name); /* the prefill has no variants */
    }
    unsetenv("VZ_CUDA_ATT");
    snprintf(vz, sizeof vz, "%s/ll.vz", dir);
    if (vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless -q", vz_test_cli(), src, vz) != 0)
        fail_msg("convert: %s", out);
    free(out);
    vz_test_gpu_bitwise(src, vz, 64, 256);
}

/* check_hf of a synth shape as it comes (prefill: the GEMM prefill's test). */
static void check_shape(const char *shape, int prefill, const char *what) {
    if (!vz_test_have_gpu()) skip();
    char dir[256], src[300];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    synth(dir, shape, 0, src, sizeof src);
    check_hf(dir, src, NULL, prefill, what);
    vz_test_rmtree(dir);
}

static void test_qwen2_biases(void **state) {
    (void)state;
    check_shape("tiny-qwen2", PREFILL_BOUND, "qwen2 (q/k/v biases, tied head)");
}

static void test_rope_scaling(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
    char dir[256], src[300], plain[300], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    synth(dir, "tiny", 0, src, sizeof src);
    snprintf(plain, sizeof plain, "%s/plain", dir); /* the same weights (seed 0), unscaled */
    if (vz_test_sh(&out, "%s synth --shape tiny -o '%s'", vz_test_cli(), plain) != 0) fail_msg("synth: %s", out);
    free(out);
    /* head_dim 16, original context 64: every band of the llama3 scaling is used */
    vz_test_set_rope_scaling(src, LLAMA3_SCALING);
    check_hf(dir, src, plain, PREFILL_VS_PLAIN, "rope_scaling llama3 x8");
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"linear\", \"factor\": 3.0}");
    expect_gpu_matches_cpu(src, plain, PREFILL_VS_PLAIN, "rope_scaling linear x3");
    vz_test_rmtree(dir);
}

/* An explicit head_dim (Mistral-Nemo's kind): q and o are n_heads *
 * head_dim = 128 wide in a model of width 64, so every buffer, matvec and
 * attention kernel sized by the width instead of by the heads reads or
 * writes the wrong span. */
static void test_head_dim(void **state) {
    (void)state;
    check_shape("tiny-hd", PREFILL_VS_SIGNAL, "head_dim 32 x 4 heads, width 64");
}

/* GGUF files from tests/hf_to_gguf.py: llama with rope_freqs (the llama3
 * scaling as per-pair divisors; its prefill against the unscaled
 * checkpoint as above), Q8_0 and Q4_0 llama, Q8_0 qwen2 (the decode
 * kernels; the prefill's q8 / q4 GEMMs at group 32 are test_cuda_prefill.c's
 * test_gemm_codecs). */
static void test_gguf(void **state) {
    (void)state;
    VZ_REQUIRE_SH("command -v python3", "python3 not found (tests/hf_to_gguf.py)");
    if (!vz_test_have_gpu()) skip();
    static const struct {
        const char *shape, *quant, *scaling, *what;
    } cases[] = {
        {"tiny", NULL, LLAMA3_SCALING, "GGUF rope_freqs (llama3 x8)"},
        {"tiny", "q8_0", NULL, "GGUF Q8_0"},
        {"tiny", "q4_0", NULL, "GGUF Q4_0"},
        {"tiny-qwen2", "q8_0", NULL, "GGUF qwen2 Q8_0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[256], src[300], gg[320], plain[300], *out = NULL;
        assert_non_null(vz_test_tmpdir(dir, sizeof dir));
        synth(dir, cases[i].shape, 1, src, sizeof src);
        snprintf(plain, sizeof plain, "%s/src", dir);
        if (cases[i].scaling) { /* plain: the same weights, unscaled, as the checkpoint it came from */
            snprintf(plain, sizeof plain, "%s/plain", dir);
            if (vz_test_sh(&out, "%s synth --shape tiny -o '%s' --tokenizer tests/golden/bpe/llama3/tokenizer.json",
                           vz_test_cli(), plain) != 0)
                fail_msg("synth: %s", out);
            free(out);
            vz_test_set_rope_scaling(src, cases[i].scaling);
        }
        snprintf(gg, sizeof gg, "%s/m.gguf", dir);
        if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' %s%s%s", src, gg,
                       strcmp(cases[i].shape, "tiny") ? "qwen2" : "llama-bpe", cases[i].quant ? " --quant " : "",
                       cases[i].quant ? cases[i].quant : "") != 0)
            fail_msg("hf_to_gguf: %s", out);
        free(out);
        expect_gpu_matches_cpu(gg, plain, cases[i].scaling ? PREFILL_VS_PLAIN : PREFILL_NONE, cases[i].what);
        vz_test_rmtree(dir);
    }
}

int main(void) {
    vz_test_filter_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen2_biases),
        cmocka_unit_test(test_rope_scaling),
        cmocka_unit_test(test_head_dim),
        cmocka_unit_test(test_gguf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
