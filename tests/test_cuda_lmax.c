/*
 * test_cuda_lmax.c - lossless-max transport blocks (src/model/lmax_pack.c)
 * and their GPU decoder (src/backend/cuda/lmax.cu): the CPU reference
 * decode of a block gives the source bits of every tensor, and the GPU
 * decode equals the CPU reference byte for byte over the whole destination
 * (both poisoned first, so padding must stay untouched too). Cases: bf16,
 * f16, f32; shapes from 1x1 to TinyLlama rows, odd columns, chunks that do
 * not start on 8 elements; Gaussian weights, random bit patterns (NaN
 * payloads, Inf, subnormals, -0), edge exponents only, a single exponent;
 * the real tensors of stories260K (f32) and synth "small" (bf16, lossless
 * .vz); with VZ_LMAX_MODEL, layers of that model too (GPU decode timed).
 * The GPU part skips without a GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/gpu.h"
#include "common/testutil.h"
#include "codec/codec.h"
#include "model/lmax_pack.h"
#include "model/model.h"
#include "vramzip.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "backend/cuda/lmax.h"
#endif

#ifdef VZ_HAVE_CUDA
static double vz_test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

enum { GAUSS, BITS, EDGE, ONE_EXP };

typedef struct tcase {
    vz_dtype dt;
    int64_t rows, cols;
    int mode;
} tcase;

static uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* Source bits of case c into a new raw tensor (data malloc'ed). */
static vz_tensor make_tensor(const tcase *c, uint64_t seed) {
    vz_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "case.%lldx%lld.%d", (long long)c->rows, (long long)c->cols, c->mode);
    int64_t shape[2] = {c->rows, c->cols};
    assert_int_equal(vz_tensor_set_shape(&t, 2, shape), 0);
    t.dtype = c->dt, t.codec = VZ_CODEC_raw;
    const uint64_t n = (uint64_t)c->rows * (uint64_t)c->cols, es = (uint64_t)vz_dtype_size(c->dt);
    uint8_t *d = malloc(n * es);
    assert_non_null(d);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t r = (uint32_t)vz_test_rand(&seed), v;
        float g = vz_test_randn(&seed) * 0.02f;
        if (c->mode == BITS) v = r; /* every pattern: NaN payloads, Inf, subnormals, -0 */
        else if (c->mode == EDGE) v = (r & 1) ? (r | 0x7f800000u) : (r & 0x807fffffu); /* exponent max or 0 */
        else if (c->mode == ONE_EXP) v = (r & 0x807fffffu) | 0x3f000000u;
        else memcpy(&v, &g, 4);
        if (c->dt == VZ_DTYPE_F32) memcpy(d + 4 * i, &v, 4);
        else {
            float f;
            memcpy(&f, &v, 4);
            uint16_t h = c->dt == VZ_DTYPE_BF16 ? (uint16_t)(v >> 16) : (uint16_t)(r & 0xffffu);
            if (c->dt == VZ_DTYPE_BF16 && c->mode == GAUSS) h = bf16_of(f);
            if (c->dt == VZ_DTYPE_F16 && c->mode == EDGE) h = (r & 2) ? (uint16_t)(h | 0x7c00u) : (uint16_t)(h & 0x83ffu);
            if (c->dt == VZ_DTYPE_F16 && c->mode == ONE_EXP) h = (uint16_t)((h & 0x83ffu) | 0x3800u);
            if (c->dt == VZ_DTYPE_F16 && c->mode == GAUSS) h = (uint16_t)((h & 0x83ffu) | (0x2000u + (r >> 20 & 3) * 0x400u));
            memcpy(d + 2 * i, &h, 2);
        }
    }
    t.data = d, t.size = n * es;
    return t;
}

/* Encodes nt tensors as one block; checks the CPU reference against the
 * source bits and (with a GPU) the GPU decode against the reference. */
static void check_block(const vz_tensor *const *ts, int32_t nt, const char *label) {
    uint64_t out[VZ_LMAX_MAXT], o = 0;
    for (int32_t i = 0; i < nt; i++) {
        out[i] = o;
        o += ((uint64_t)ts[i]->rows * (uint64_t)ts[i]->cols * (uint64_t)vz_dtype_size(ts[i]->dtype) + 255) / 256 * 256;
    }
    vz_lmax_block b;
    uint8_t *data = NULL;
    assert_int_equal(vz_lmax_encode(ts, 1, nt, out, &b, &data, "test"), VZ_OK);
    uint8_t *ref = malloc(o), *src = NULL;
    assert_non_null(ref);
    memset(ref, 0xA5, o);
    vz_lmax_decode_ref(&b, data, ref);
    for (int32_t i = 0; i < nt; i++) {
        const vz_tensor *t = ts[i];
        uint64_t bytes = (uint64_t)t->rows * (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
        src = malloc(bytes);
        assert_non_null(src);
        assert_int_equal(vz_codec_by_id(t->codec)->decode_ref(t, 0, t->rows, src), VZ_OK);
        if (memcmp(ref + out[i], src, bytes)) fail_msg("%s: CPU reference of %s differs from its source", label, t->name);
        free(src);
    }
#ifdef VZ_HAVE_CUDA
    if (vz_cuda_device_count() > 0) {
        uint8_t *dsrc = vz_cuda_alloc(b.size), *ddst = vz_cuda_alloc(o), *got = malloc(o);
        assert_true(dsrc && ddst && got);
        memset(got, 0xA5, o);
        assert_int_equal(vz_cuda_copy(ddst, got, o, 0), VZ_OK); /* poison */
        assert_int_equal(vz_cuda_copy(dsrc, data, b.size, 0), VZ_OK);
        assert_int_equal(vz_lmax_prepare(), VZ_OK);
        assert_int_equal(vz_lmax_decode(&b, dsrc, ddst, NULL), VZ_OK);
        assert_int_equal(vz_cuda_sync(), VZ_OK);
        assert_int_equal(vz_cuda_copy(got, ddst, o, 1), VZ_OK);
        if (memcmp(got, ref, o)) fail_msg("%s: GPU decode differs from the CPU reference", label);
        if (b.size >= ((uint64_t)1 << 20)) { /* time large blocks: 5 decodes after the checked one */
            double t0 = vz_test_now();
            for (int r = 0; r < 5; r++) assert_int_equal(vz_lmax_decode(&b, dsrc, ddst, NULL), VZ_OK);
            assert_int_equal(vz_cuda_sync(), VZ_OK);
            double us = (vz_test_now() - t0) / 5 * 1e6;
            print_message("%s: GPU decode %.1f us per block (%.1f GB/s of decoded bytes)\n", label, us,
                          (double)o / us / 1e3);
        }
        vz_cuda_release(dsrc), vz_cuda_release(ddst), free(got);
    }
#endif
    uint64_t n = 0;
    for (int32_t i = 0; i < nt; i++) n += (uint64_t)ts[i]->rows * (uint64_t)ts[i]->cols;
    print_message("%s: %d tensors, %llu elements, block %llu B (%.3f bits/weight): identical\n", label, (int)nt,
                  (unsigned long long)n, (unsigned long long)b.size, 8.0 * (double)b.size / (double)n);
    free(ref), free(data);
}

static void test_lmax_synthetic(void **state) {
    (void)state;
    const tcase cs[] = {
        {VZ_DTYPE_BF16, 1, 1, GAUSS},      {VZ_DTYPE_BF16, 1, 7, BITS},        {VZ_DTYPE_BF16, 3, 7, GAUSS},
        {VZ_DTYPE_BF16, 17, 33, BITS},     {VZ_DTYPE_BF16, 1000, 3, GAUSS},    {VZ_DTYPE_BF16, 129, 37, EDGE},
        {VZ_DTYPE_BF16, 64, 2048, GAUSS},  {VZ_DTYPE_BF16, 3, 5632, GAUSS},    {VZ_DTYPE_BF16, 40, 100, ONE_EXP},
        {VZ_DTYPE_F16, 17, 33, BITS},      {VZ_DTYPE_F16, 64, 129, GAUSS},     {VZ_DTYPE_F16, 9, 5, EDGE},
        {VZ_DTYPE_F16, 30, 64, ONE_EXP},   {VZ_DTYPE_F32, 17, 33, BITS},       {VZ_DTYPE_F32, 48, 288, GAUSS},
        {VZ_DTYPE_F32, 5, 3, EDGE},        {VZ_DTYPE_F32, 20, 20, ONE_EXP},    {VZ_DTYPE_BF16, 4097, 1, BITS},
    };
    const int nc = (int)(sizeof cs / sizeof cs[0]);
    vz_tensor ts[sizeof cs / sizeof cs[0]];
    for (int i = 0; i < nc; i++) ts[i] = make_tensor(&cs[i], 100 + (uint64_t)i);
    char label[64];
    for (int i = 0; i < nc; i++) { /* one tensor per block */
        const vz_tensor *one = &ts[i];
        snprintf(label, sizeof label, "case %d", i);
        check_block(&one, 1, label);
    }
    for (int i = 0; i + 7 <= nc; i += 6) { /* seven per block: blocks of CUDA threads map to tensors */
        const vz_tensor *seven[7];
        for (int k = 0; k < 7; k++) seven[k] = &ts[i + k];
        snprintf(label, sizeof label, "cases %d..%d", i, i + 6);
        check_block(seven, 7, label);
    }
    for (int i = 0; i < nc; i++) free((void *)ts[i].data);
}

/* Layer 0 and the last layer of a model, as a streamed layer would be. */
static void check_model(const char *path, const vz_model_opts *mo) {
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, mo), VZ_OK);
    for (int32_t l = 0; l < m->cfg.n_layers; l += m->cfg.n_layers > 1 ? m->cfg.n_layers - 1 : 1) {
        const vz_layer *L = &m->layers[l];
        const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
        char label[600];
        snprintf(label, sizeof label, "%s layer %d", path, (int)l);
        check_block(ts, 7, label);
    }
    vz_model_close(m);
}

static void test_lmax_models(void **state) {
    (void)state;
    char bin[512], tok[512], dir[256], src[512], out[600];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = tok;
    check_model(bin, &mo);
    vz_test_synth_dir(dir, sizeof dir, src, sizeof src, "small", 3);
    snprintf(out, sizeof out, "%s/lossless.vz", dir);
    vz_test_convert(src, NULL, "lossless", out);
    check_model(out, NULL);
    vz_test_rmtree(dir);
    const char *big = getenv("VZ_LMAX_MODEL"); /* e.g. a synth tinyllama-1.1b lossless .vz (device rounds) */
    if (big && *big) check_model(big, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lmax_synthetic),
        cmocka_unit_test(test_lmax_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
