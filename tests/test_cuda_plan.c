/*
 * test_cuda_plan.c - residency on the GPU (issue #5): decompress-at-load
 * gives logits bit-identical to the compressed-resident run (stories260K
 * as lossless and q8 .vz, a synth "tiny" bf16 model as lossless .vz), a
 * session under a VRAM budget stays within its plan, and a budget below
 * the all-streamed minimum is refused before allocating (one byte below
 * the resident plan now streams), and freed sessions give their VRAM back.
 * Skips without CUDA or a GPU.
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

#define NT 24

/* All logits of NT tokens on a cuda session of m (malloc'ed); *mem its VRAM. */
static float *cuda_logits(vz_model *m, vz_residency r, uint64_t budget, vz_session_mem *mem) {
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F16, o.n_ctx = 64, o.residency = r, o.vram_budget = budget;
    return vz_test_session_logits(m, &o, NT, mem);
}

/* Compressed vs decompress-at-load logits of the .vz at path: identical. */
static void same_logits(const char *path) {
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
    vz_model_info info;
    vz_model_get_info(m, &info);
    vz_session_mem ma, mb;
    float *a = cuda_logits(m, VZ_RESIDENCY_COMPRESSED, 0, &ma);
    float *b = cuda_logits(m, VZ_RESIDENCY_DECOMPRESS, 0, &mb);
    int diff = memcmp(a, b, sizeof(float) * (size_t)NT * (size_t)info.vocab_size) != 0;
    print_message("%s: compressed weights %llu B, decompressed %llu B, logits %s\n", path,
                  (unsigned long long)ma.weights, (unsigned long long)mb.weights, diff ? "DIFFER" : "identical");
    assert_false(diff);
    free(a);
    free(b);
    vz_model_close(m);
}

static void test_decompress_stories260k(void **state) {
    (void)state;
    char bin[512], tok[512], dir[256], out[600];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    if (!vz_test_have_gpu()) skip();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const char *specs[] = {"lossless", "q8"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, sizeof out, "%s/%s.vz", dir, specs[i]);
        vz_test_convert(bin, tok, specs[i], out);
        same_logits(out);
    }
    vz_test_rmtree(dir);
}

static void test_decompress_synth_bf16(void **state) {
    (void)state;
    char dir[256], src[512], out[600];
    if (!vz_test_have_gpu()) skip();
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "tiny", 3);
    snprintf(out, sizeof out, "%s/lossless.vz", dir);
    vz_test_convert(src, NULL, "lossless", out);
    same_logits(out);
    vz_test_rmtree(dir);
}

/* Under a budget of exactly the plan: runs, within it; one byte less: refused. */
static void test_budget(void **state) {
    (void)state;
    char bin[512], tok[512];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    if (!vz_test_have_gpu()) skip();
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = tok;
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, bin, &mo), VZ_OK);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F16, o.n_ctx = 64;
    vz_plan p;
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK); /* budget: the free VRAM */
    assert_true(p.budget_is_free && p.fits && p.n_streamed == 0);
    vz_session_mem mem;
    float *l = cuda_logits(m, VZ_RESIDENCY_COMPRESSED, p.total_bytes, &mem);
    print_message("plan %llu B (weights %llu, KV %llu, scratch %llu); session weights %llu, KV %llu, scratch %llu, "
                  "peak %llu\n", (unsigned long long)p.total_bytes,
                  (unsigned long long)(p.global_bytes + p.resident_bytes), (unsigned long long)p.kv_bytes,
                  (unsigned long long)p.scratch_bytes, (unsigned long long)mem.weights, (unsigned long long)mem.kv,
                  (unsigned long long)mem.scratch, (unsigned long long)mem.peak);
    assert_true(mem.weights <= p.global_bytes + p.resident_bytes && mem.kv <= p.kv_bytes &&
                mem.scratch <= p.scratch_bytes);
    assert_true(mem.peak <= p.total_bytes);
    free(l);
    o.vram_budget = p.total_bytes - 1; /* [st] one byte less: layers stream (test_cuda_stream) */
    vz_plan ps;
    assert_int_equal(vz_session_plan(m, &o, &ps), VZ_OK);
    assert_true(ps.fits && ps.n_streamed > 0 && ps.total_bytes <= o.vram_budget);
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_OK);
    vz_session_free(s);
    s = NULL;
    o.vram_budget = ps.min_bytes - 1; /* below the all-streamed minimum: refused before allocating */
    assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_NOMEM);
    assert_non_null(strstr(vz_last_error(), "needs"));
    assert_null(s);
    o.vram_budget = 0, o.residency = VZ_RESIDENCY_CACHE; /* [st] now available (test_cuda_stream) */
    assert_int_equal(vz_session_create(&s, m, &o), VZ_OK);
    vz_session_free(s);
    vz_model_close(m);
}

#ifdef VZ_HAVE_CUDA
/* One session of the model at path: a GEMM prefill of NT tokens (all
 * logits), 8 generated tokens (the decode graphs), freed. */
static void session_cycle(const char *path) {
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F16, o.n_ctx = 64;
    float *l = vz_test_session_logits(m, &o, NT, NULL);
    free(l);
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_OK);
    vz_sampler_opts so;
    vz_sampler_opts_default(&so);
    so.temp = 0.0f;
    int32_t out[8];
    assert_int_equal(vz_session_generate(s, 1, 8, &so, out), VZ_OK);
    vz_session_free(s);
    vz_model_close(m);
}
#endif

/* Sessions give their VRAM back: after a first round of sessions (raw,
 * lossless, q4 of a synth "small" model, 6.3 MB of bf16; the first round
 * loads kernels and libraries for good), three more rounds leave the free
 * VRAM within 4 MiB (the driver's rounding) of what it was: one leaked
 * weight arena (1.7-6.3 MB) or prefill scratch per round would not be. */
static void test_sessions_free_vram(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    char dir[256], src[512], ll[600], q4[600];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "small", 5);
    snprintf(ll, sizeof ll, "%s/lossless.vz", dir);
    snprintf(q4, sizeof q4, "%s/q4.vz", dir);
    vz_test_convert(src, NULL, "lossless", ll);
    vz_test_convert(src, NULL, "q4", q4);
    const char *paths[3] = {src, ll, q4};
    uint64_t f0 = 0, f = 0, tot = 0;
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 3; i++) session_cycle(paths[i]);
        assert_int_equal(vz_cuda_mem_free(&f, &tot), VZ_OK);
        if (round == 0) f0 = f;
        print_message("round %d: %.1f MiB free (%+.1f MiB from round 0)\n", round, f / 1048576.0,
                      ((double)f - (double)f0) / 1048576.0);
    }
    assert_true(f + ((uint64_t)4 << 20) >= f0);
    vz_test_rmtree(dir);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decompress_stories260k),
        cmocka_unit_test(test_decompress_synth_bf16),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_sessions_free_vram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
