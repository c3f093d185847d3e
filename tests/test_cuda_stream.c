/*
 * test_cuda_stream.c - layer streaming and the layer cache on the GPU
 * (issue #5, src/backend/cuda/stream.cu): logits of NT prompt tokens (B = 8
 * graphs) and the ids of NG greedy generated tokens (the captured
 * multi-step decode graph) are byte-identical (memcmp) to the fully resident
 * run of the same file, with 1, several and all layers streamed, under
 * decompress-at-load streaming and under the cache with 1 and all slots
 * (all: once every layer is cached, the decode steps run as graphs);
 * through the public API a budget of the all-streamed minimum runs within
 * it (peak VRAM by cudaMemGetInfo). With VZ_STREAM_CODEC=lossless-max the
 * streamed layers of a lossless .vz travel re-encoded as lossless-max and
 * are decoded on the GPU (lmax.cu): logits and ids still byte-identical, and
 * fewer bytes streamed than the fixed-rate transport (so the path ran).
 * Models: stories260K (lossless, q8 .vz,
 * f32 .bin) and synth "small" (bf16: raw, lossless and lossless:k4). Skips
 * without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gpu.h"
#include "common/testutil.h"
#include "vramzip.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "codec/codec.h"
#include "model/model.h"
#endif

#define NT 24
#define NG 20

#ifdef VZ_HAVE_CUDA
static int all_layers_lossless(const vz_model *m) {
    for (int32_t l = 0; l < m->cfg.n_layers; l++) {
        const vz_layer *L = &m->layers[l];
        const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
        for (int i = 0; i < 7; i++)
            if (ts[i]->codec != VZ_CODEC_lossless) return 0;
    }
    return 1;
}

/* NT prompt logits then NG greedy ids, into out (NT*vocab + NG floats). */
static uint64_t run_internal(vz_model *m, int32_t residency, int32_t n_res, float *out) {
    const int32_t vocab = m->cfg.vocab_size;
    vz_cuda_session *s = NULL;
    vz_status st = vz_cuda_session_create_plan(&s, m, 64, 1, 1, residency, n_res);
    if (st != VZ_OK) print_message("create: %s\n", vz_last_error());
    assert_int_equal(st, VZ_OK);
    for (size_t i = 0; i < (size_t)NT * vocab + NG; i++) out[i] = -12345.0f; /* poison */
    int32_t toks[NT];
    uint64_t rng = 11;
    for (int i = 0; i < NT; i++) toks[i] = (int32_t)(vz_test_rand(&rng) % (uint64_t)vocab);
    assert_int_equal(vz_cuda_session_eval(s, 0, toks, NT, 0, out, 1), VZ_OK);
    vz_sampler_opts g = {0.0f, 0, 1.0f, 0};
    int32_t ids[NG];
    assert_int_equal(vz_cuda_session_generate(s, 0, toks[NT - 1], NT, NG, &g, ids), VZ_OK);
    for (int i = 0; i < NG; i++) out[(size_t)NT * vocab + i] = (float)ids[i];
    vz_session_mem mem;
    assert_int_equal(vz_cuda_session_mem(s, &mem), VZ_OK);
    print_message("  residency %d, %d resident: weights %llu B, streamed %llu B so far\n", (int)residency,
                  (int)n_res, (unsigned long long)mem.weights, (unsigned long long)mem.h2d);
    if (residency != 2 && n_res == m->cfg.n_layers) assert_true(mem.h2d == 0);
    else assert_true(mem.h2d > 0);
    vz_cuda_session_free(s);
    return mem.h2d;
}

/* Every streaming / cache configuration of path vs its resident run. */
static void same_as_resident(const char *path, const vz_model_opts *mo) {
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, mo), VZ_OK);
    const int32_t nl = m->cfg.n_layers;
    const size_t n = (size_t)NT * (size_t)m->cfg.vocab_size + NG;
    float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
    assert_true(ref && got);
    run_internal(m, VZ_RESIDENCY_COMPRESSED, nl, ref);
    /* {residency, resident layers}: 1 streamed, several, all; decoded streaming; cache 1 slot, all slots */
    const int32_t cfg[][2] = {{0, nl - 1}, {0, nl > 2 ? nl - 3 : 1}, {0, 0}, {1, 0}, {2, 1}, {2, nl}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        run_internal(m, cfg[i][0], cfg[i][1], got);
        int diff = memcmp(ref, got, sizeof(float) * n) != 0;
        print_message("%s: residency %d, %d of %d layers resident: logits and ids %s\n", path, (int)cfg[i][0],
                      (int)cfg[i][1], (int)nl, diff ? "DIFFER" : "identical");
        assert_false(diff);
    }
    /* lossless-max transport, 1 and all layers streamed */
    const int all_lossless = all_layers_lossless(m);
    for (int k = 0; k < 2; k++) {
        const int32_t nres = k ? 0 : nl - 1;
        unsetenv("VZ_STREAM_CODEC");
        const uint64_t fixed = run_internal(m, VZ_RESIDENCY_COMPRESSED, nres, got);
        setenv("VZ_STREAM_CODEC", "lossless-max", 1);
        const uint64_t lmax = run_internal(m, VZ_RESIDENCY_COMPRESSED, nres, got);
        unsetenv("VZ_STREAM_CODEC");
        int diff = memcmp(ref, got, sizeof(float) * n) != 0;
        print_message("%s: lossless-max transport, %d of %d layers resident: logits and ids %s, streamed %llu B "
                      "(fixed-rate %llu B)\n", path, (int)nres, (int)nl, diff ? "DIFFER" : "identical",
                      (unsigned long long)lmax, (unsigned long long)fixed);
        assert_false(diff);
        if (all_lossless) assert_true(lmax < fixed); /* the lossless-max path ran */
        else assert_true(lmax == fixed);
    }
    free(ref);
    free(got);
    vz_model_close(m);
}
#endif

static void test_stream_stories260k(void **state) {
    (void)state;
    char bin[512], tok[512];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    char dir[256], out[600];
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = tok;
    same_as_resident(bin, &mo);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const char *specs[] = {"lossless", "q8"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, sizeof out, "%s/%s.vz", dir, specs[i]);
        vz_test_convert(bin, tok, specs[i], out);
        same_as_resident(out, NULL);
    }
    vz_test_rmtree(dir);
#endif
}

static void test_stream_synth_small(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    char dir[256], src[512], out[600];
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "small", 5);
    same_as_resident(src, NULL);
    snprintf(out, sizeof out, "%s/lossless.vz", dir);
    vz_test_convert(src, NULL, "lossless", out);
    same_as_resident(out, NULL);
    snprintf(out, sizeof out, "%s/lossless_k4.vz", dir); /* streamed in the GPU sign order */
    vz_test_convert(src, NULL, "lossless:k4", out);
    same_as_resident(out, NULL);
    vz_test_rmtree(dir);
    const char *big = getenv("VZ_STREAM_MODEL"); /* e.g. a synth tinyllama-1.1b (device rounds) */
    if (big && *big) same_as_resident(big, NULL);
#endif
}

/* Public API: a budget of the all-streamed minimum streams every layer,
 * stays within the budget and gives the resident logits; one byte less is
 * refused; the cache mode at its minimum likewise. */
static void test_stream_budget(void **state) {
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
    vz_model_info info;
    vz_model_get_info(m, &info);
    float *ref = NULL;
    for (int r = 0; r < 3; r++) {
        vz_session_opts o;
        vz_session_opts_default(&o);
        o.device = VZ_DEVICE_CUDA, o.kv = VZ_KV_F16, o.n_ctx = 64;
        o.residency = r == 2 ? VZ_RESIDENCY_CACHE : VZ_RESIDENCY_COMPRESSED;
        vz_plan p;
        assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
        if (r > 0) o.vram_budget = p.min_bytes;
        assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
        assert_true(p.fits);
        if (r > 0) assert_true(p.n_streamed == (r == 2 ? p.n_layers - 1 : p.n_layers));
        vz_session_mem mem;
        float *l = vz_test_session_logits(m, &o, NT, &mem);
        print_message("budget %llu B (plan %llu): peak %llu B, streamed %llu B\n", (unsigned long long)o.vram_budget,
                      (unsigned long long)p.total_bytes, (unsigned long long)mem.peak, (unsigned long long)mem.h2d);
        if (r > 0) assert_true(mem.peak <= o.vram_budget && mem.h2d > 0);
        if (!ref) ref = l;
        else {
            assert_memory_equal(ref, l, sizeof(float) * NT * (size_t)info.vocab_size);
            free(l);
        }
        if (r > 0) {
            o.vram_budget = p.min_bytes - 1;
            vz_session *s = NULL;
            assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_NOMEM);
            assert_non_null(strstr(vz_last_error(), "needs"));
            assert_null(s);
        }
    }
    free(ref);
    vz_model_close(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_stories260k),
        cmocka_unit_test(test_stream_synth_small),
        cmocka_unit_test(test_stream_budget),
    };
    vz_test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
