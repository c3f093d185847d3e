/*
 * gpu.c - helpers shared by the GPU tests (gpu.h).
 */
#include "gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

int vz_test_gpu_count(void) {
#ifdef VZ_HAVE_CUDA
    return vz_cuda_device_count();
#else
    return 0;
#endif
}

int vz_test_have_gpu(void) {
#ifdef VZ_HAVE_CUDA
    if (vz_cuda_device_count() > 0) return 1;
    print_message("SKIP: no CUDA device visible (run on the GPU machine, e.g. bench/gpu_final.sh)\n");
#else
    print_message("SKIP: built without CUDA (make CUDA=1)\n");
#endif
    return 0;
}

vz_model *vz_test_gpu_model(const char *rel) {
    char path[1024];
    VZ_REQUIRE_MODEL(path, rel);
    if (!vz_test_have_gpu()) skip();
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
    return m;
}

vz_session *vz_test_open_session_n(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_ctx, int32_t n_seq) {
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = dev, o.kv = kv, o.n_ctx = n_ctx, o.n_seq = n_seq;
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, m, &o);
    if (st != VZ_OK) print_message("session: %s: %s\n", vz_status_name(st), vz_last_error());
    assert_int_equal(st, VZ_OK);
    return s;
}

vz_session *vz_test_open_session(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_ctx) {
    return vz_test_open_session_n(m, dev, kv, n_ctx, 1);
}

void vz_test_synth_dir(char *dir, size_t dcap, char *src, size_t scap, const char *shape, uint64_t seed) {
    assert_non_null(vz_test_tmpdir(dir, dcap));
    snprintf(src, scap, "%s/hf", dir);
    vz_synth_opts so;
    vz_synth_opts_default(&so);
    so.shape = shape, so.seed = seed;
    assert_int_equal(vz_synth(src, &so), VZ_OK);
}

void vz_test_convert(const char *src, const char *tok, const char *spec, const char *out) {
    vz_convert_opts co;
    vz_convert_opts_default(&co);
    co.codec_spec = spec;
    co.model.tokenizer_path = tok;
    assert_int_equal(vz_convert(src, out, &co), VZ_OK);
}

int32_t vz_test_argmax(const float *l, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

float *vz_test_session_logits(vz_model *m, const vz_session_opts *o, int32_t nt, vz_session_mem *mem) {
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, m, o);
    if (st != VZ_OK) print_message("session: %s: %s\n", vz_status_name(st), vz_last_error());
    assert_int_equal(st, VZ_OK);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)nt);
    float *l = malloc(sizeof(float) * (size_t)nt * (size_t)info.vocab_size);
    assert_non_null(toks);
    assert_non_null(l);
    uint64_t rng = 7;
    for (int32_t i = 0; i < nt; i++) toks[i] = (int32_t)(vz_test_rand(&rng) % (uint64_t)info.vocab_size);
    assert_int_equal(vz_session_eval(s, toks, nt, l, 1), VZ_OK);
    if (mem) assert_int_equal(vz_session_mem_info(s, mem), VZ_OK);
    free(toks);
    vz_session_free(s);
    return l;
}

void vz_test_gpu_bitwise(const char *raw_path, const char *ll_path, int32_t n, int32_t n_ctx) {
    vz_model *mr = NULL, *ml = NULL;
    assert_int_equal(vz_model_open(&mr, raw_path, NULL), VZ_OK);
    assert_int_equal(vz_model_open(&ml, ll_path, NULL), VZ_OK);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.device = VZ_DEVICE_CUDA;
    o.kv = VZ_KV_F16;
    o.n_ctx = n_ctx;
    vz_session *sr = NULL, *sl = NULL;
    assert_int_equal(vz_session_create(&sr, mr, &o), VZ_OK);
    vz_status st = vz_session_create(&sl, ml, &o);
    if (st == VZ_ERR_UNSUPPORTED) {
        print_message("SKIP: lossless weights on the GPU: %s\n", vz_last_error());
        vz_session_free(sr);
        vz_model_close(mr);
        vz_model_close(ml);
        skip();
    }
    assert_int_equal(st, VZ_OK);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(mr, &info), VZ_OK);
    float *a = malloc(sizeof(float) * (size_t)info.vocab_size), *b = malloc(sizeof(float) * (size_t)info.vocab_size);
    assert_non_null(a);
    assert_non_null(b);
    int32_t tok = info.bos_id >= 0 ? info.bos_id : 1;
    for (int32_t i = 0; i < n; i++) {
        assert_int_equal(vz_session_eval(sr, &tok, 1, a, 0), VZ_OK);
        assert_int_equal(vz_session_eval(sl, &tok, 1, b, 0), VZ_OK);
        if (memcmp(a, b, sizeof(float) * (size_t)info.vocab_size) != 0) fail_msg("logits differ at step %d", i);
        tok = vz_test_argmax(a, info.vocab_size);
    }
    print_message("%d steps: logits byte-identical raw vs lossless\n", n);
    free(a);
    free(b);
    vz_session_free(sr);
    vz_session_free(sl);
    vz_model_close(mr);
    vz_model_close(ml);
}
