/*
 * test_cuda_verify.c - `vramzip verify --device cuda` and the CUDA session's
 * trace hook (vz_session_set_trace), plus raw vs lossless bit-identity on
 * the GPU for stories260K cast to bf16 (the dtype real checkpoints ship in,
 * where the fast lossless kernel runs). On a machine without a GPU the CLI
 * must refuse --device cuda with a clear error; the rest skips.
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

#define S260K "stories260K/stories260K.bin"

/* stories260K as a bf16 HF directory, and its raw, lossless and q8 .vz, in dir. */
static void make_bf16_models(const char *bin, const char *dir) {
    char hf[700], tok[1024], out[700];
    vz_ckpt_model m;
    assert_int_equal(vz_ckpt_load_bin(&m, bin), 0);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    assert_int_equal(mkdir(hf, 0755), 0);
    assert_int_equal(vz_ckpt_write_hf(hf, &m, "BF16", 1, m.wcls == NULL), 0);
    vz_ckpt_free(&m);
    assert_non_null(vz_test_model_path(tok, sizeof tok, "stories260K/tok512.model"));
    char *o = NULL;
    assert_int_equal(vz_test_sh(&o, "cp '%s' '%s/tokenizer.model'", tok, hf), 0);
    free(o);
    static const char *codecs[] = {"raw", "lossless", "q8"};
    for (int i = 0; i < 3; i++) {
        vz_convert_opts co;
        vz_convert_opts_default(&co);
        co.codec_spec = codecs[i];
        snprintf(out, sizeof out, "%s/%s.vz", dir, codecs[i]);
        assert_int_equal(vz_convert(hf, out, &co), VZ_OK);
    }
}

/* Greedy decode of n steps on the GPU: every step's logits memcmp-equal
 * between the raw bf16 and the lossless model (and the HF source itself). */
static void test_bf16_lossless_bitexact(void **state) {
    (void)state;
    char bin[1024], dir[512], p[3][700];
    VZ_REQUIRE_MODEL(bin, S260K);
    if (!vz_test_have_gpu()) skip();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    make_bf16_models(bin, dir);
    snprintf(p[0], sizeof p[0], "%s/hf", dir);
    snprintf(p[1], sizeof p[1], "%s/raw.vz", dir);
    snprintf(p[2], sizeof p[2], "%s/lossless.vz", dir);
    vz_model *m[3];
    vz_session *s[3];
    for (int i = 0; i < 3; i++) {
        m[i] = NULL;
        assert_int_equal(vz_model_open(&m[i], p[i], NULL), VZ_OK);
        s[i] = vz_test_open_session(m[i], VZ_DEVICE_CUDA, VZ_KV_F32, 512);
    }
    enum { V = 512, N = 256 };
    float *l[3];
    for (int i = 0; i < 3; i++) assert_non_null(l[i] = malloc(sizeof(float) * V));
    int32_t tok = 1;
    for (int step = 0; step < N; step++) {
        for (int i = 0; i < 3; i++) assert_int_equal(vz_session_eval(s[i], &tok, 1, l[i], 0), VZ_OK);
        if (memcmp(l[0], l[1], sizeof(float) * V) || memcmp(l[0], l[2], sizeof(float) * V))
            fail_msg("bf16 stories260K: logits differ at step %d", step);
        int32_t b = 0;
        for (int j = 1; j < V; j++)
            if (l[0][j] > l[0][b]) b = j;
        tok = b;
    }
    print_message("%d greedy steps: HF bf16, raw .vz and lossless .vz logits byte-identical on the GPU\n", N);
    for (int i = 0; i < 3; i++) {
        free(l[i]);
        vz_session_free(s[i]);
        vz_model_close(m[i]);
    }
    vz_test_rmtree(dir);
}

/* Max |a - b| over n floats and max |a| (NaN in b counts as a failure). */
static void diff_stats(const float *a, const float *b, size_t n, float *maxd, float *scale) {
    *maxd = 0, *scale = 0;
    for (size_t i = 0; i < n; i++) {
        assert_false(isnan(b[i]));
        if (fabsf(a[i]) > *scale) *scale = fabsf(a[i]);
        if (fabsf(a[i] - b[i]) > *maxd) *maxd = fabsf(a[i] - b[i]);
    }
}

/* Decode steps (one token per eval): the GPU trace equals the CPU trace
 * within the logits' tolerance (test_cuda_forward.c derives it: the same f32
 * terms summed in different orders, ~1e-5 of the scale through 5 layers),
 * and tracing does not change the GPU logits (an eager run of the graph's
 * kernels: memcmp). A prompt of 20 tokens in one eval takes the prefill
 * path (bf16 GEMM inputs): its trace is complete and within the prefill
 * tolerance of tests/test_cuda_prefill.c, 2^-6 of the scale. */
static void test_trace_matches_cpu(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    const size_t tn = 2 * (size_t)info.n_layers * (size_t)info.dim, V = (size_t)info.vocab_size;
    enum { N = 20 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = i ? 3 + (17 * i) % 400 : 1;
    float *tc = malloc(sizeof(float) * tn), *tg = malloc(sizeof(float) * tn);
    float *l0 = malloc(sizeof(float) * V), *l1 = malloc(sizeof(float) * V);
    assert_true(tc && tg && l0 && l1);
    vz_session *c = vz_test_open_session(m, VZ_DEVICE_CPU, VZ_KV_F32, 64);
    vz_session *g = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F32, 64);
    for (int i = 0; i < N; i++) assert_int_equal(vz_session_eval(g, toks + i, 1, l0, 0), VZ_OK); /* graphs */
    vz_session_reset(g);
    for (size_t i = 0; i < tn; i++) tg[i] = NAN; /* poisoned: an unwritten slot fails */
    assert_int_equal(vz_session_set_trace(c, tc), VZ_OK);
    assert_int_equal(vz_session_set_trace(g, tg), VZ_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(vz_session_eval(c, toks + i, 1, NULL, 0), VZ_OK);
        assert_int_equal(vz_session_eval(g, toks + i, 1, l1, 0), VZ_OK); /* traced: eager */
    }
    assert_memory_equal(l0, l1, sizeof(float) * V);
    float maxd, scale;
    diff_stats(tc, tg, tn, &maxd, &scale);
    print_message("decode trace: max |gpu - cpu| %.3g (max |x| %.3g, tolerance %.3g)\n", (double)maxd,
                  (double)scale, 1e-5 * scale);
    assert_true(maxd <= 1e-5f * scale);
    vz_session_reset(g);
    for (size_t i = 0; i < tn; i++) tg[i] = NAN;
    assert_int_equal(vz_session_eval(g, toks, N, NULL, 0), VZ_OK);
    diff_stats(tc, tg, tn, &maxd, &scale);
    print_message("prefill trace: max |gpu - cpu| %.3g (tolerance %.3g)\n", (double)maxd, scale / 64.0);
    assert_true(maxd <= scale / 64.0f);
    vz_session_free(c);
    vz_session_free(g);
    vz_model_close(m);
    free(tc), free(tg), free(l0), free(l1);
}

/* The CLI: a lossless pair is reported bit-identical (exit 0); a q8 model
 * differs first at layer 0's attention output (every matrix is q8). With no
 * GPU, --device cuda fails with a message naming cuda (exit != 0). */
static void test_verify_cli(void **state) {
    (void)state;
    char bin[1024], dir[512];
    VZ_REQUIRE_MODEL(bin, S260K);
    char *o = NULL;
    if (vz_test_gpu_count() <= 0) {
        int rc = vz_test_sh(&o, "'%s' verify '%s' '%s' --device cuda -n 4", vz_test_cli(), bin, bin);
        print_message("no GPU: exit %d: %s", rc, o);
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(o, "cuda"));
        free(o);
        return;
    }
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    make_bf16_models(bin, dir);
    int rc = vz_test_sh(&o, "'%s' verify '%s/raw.vz' '%s/lossless.vz' --device cuda -n 24", vz_test_cli(), dir, dir);
    print_message("%s", o);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o, "logits bit-identical at every position"));
    assert_non_null(strstr(o, "every layer's attention and MLP output is bit-identical"));
    free(o);
    rc = vz_test_sh(&o, "'%s' verify '%s/raw.vz' '%s/q8.vz' --device cuda -n 24", vz_test_cli(), dir, dir);
    print_message("%s", o);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(o, "first differing output: layer 0 attention"));
    free(o);
    vz_test_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_lossless_bitexact),
        cmocka_unit_test(test_trace_matches_cpu),
        cmocka_unit_test(test_verify_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
