/*
 * test_ops.c - the CPU operators (src/backend/cpu/ops.c) against double
 * precision references: the fused decode+matmul for raw f32/f16/bf16
 * weights, RMSNorm, both RoPE conventions, softmax and SwiGLU; and the
 * determinism the engine relies on (threads and batching never change bits).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"

#include "backend/cpu/ops.h"
#include "codec/codec.h"
#include "core/half.h"

#define U32 (1.0 / 16777216.0) /* unit roundoff of f32, 2^-24 */

/* A raw (rows, cols) tensor of dtype with Gaussian values; *vals gets the
 * exact f32 value of every stored element. Caller frees t->data and *vals. */
static void make_tensor(vz_tensor *t, vz_dtype dt, int64_t rows, int64_t cols, uint64_t *rng, float **vals) {
    memset(t, 0, sizeof *t);
    int64_t shape[2] = {rows, cols};
    assert_int_equal(vz_tensor_set_shape(t, 2, shape), 0);
    t->dtype = dt;
    t->codec = VZ_CODEC_raw;
    size_t n = (size_t)(rows * cols), es = (size_t)vz_dtype_size(dt);
    uint8_t *d = malloc(n * es);
    float *v = malloc(n * sizeof(float));
    assert_non_null(d);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        float x = vz_test_randn(rng);
        if (dt == VZ_DTYPE_F32) {
            memcpy(d + 4 * i, &x, 4);
            v[i] = x;
        } else {
            uint16_t h = dt == VZ_DTYPE_F16 ? vz_f32_to_f16(x) : vz_f32_to_bf16(x);
            memcpy(d + 2 * i, &h, 2);
            v[i] = dt == VZ_DTYPE_F16 ? vz_f16_to_f32(h) : vz_bf16_to_f32(h);
        }
    }
    t->data = d;
    t->size = n * es;
    *vals = v;
}

/* vz_dot sums 16 lanes of ceil(cols/16) products each, then a 4-level tree:
 * every product passes through at most ceil(cols/16) + 4 additions plus its
 * own rounding, so |error| <= (ceil(cols/16) + 5) * u * sum |w x| (first
 * order; the +1 covers the second-order term at these sizes). */
static void check_matmul(vz_dtype dt) {
    uint64_t rng = 42 + (uint64_t)dt;
    const int64_t rows = 37, cols = 133;
    const int32_t n = 3;
    vz_tensor W;
    float *wv = NULL;
    make_tensor(&W, dt, rows, cols, &rng, &wv);
    assert_int_equal(vz_tensor_check(&W), VZ_OK);
    float x[3 * 133], y[3 * 37], y1[37], yt[3 * 37];
    for (int i = 0; i < n * cols; i++) x[i] = vz_test_randn(&rng);
    vz_cpu_matmul(y, x, n, &W);
    const double bound_k = (double)((cols + 15) / 16 + 6) * U32;
    for (int32_t i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < cols; k++) {
                ref += (double)wv[r * cols + k] * x[i * cols + k];
                mag += fabs((double)wv[r * cols + k] * x[i * cols + k]);
            }
            double err = fabs((double)y[i * rows + r] - ref);
            if (err > bound_k * mag) fail_msg("%s row %lld input %d: err %g > bound %g", vz_dtype_name(dt),
                                              (long long)r, (int)i, err, bound_k * mag);
        }
    /* batching and threads never change the bits */
    float *scratch = malloc(sizeof(float) * 4 * VZ_ROW_BLOCK * (size_t)cols);
    assert_non_null(scratch);
    for (int32_t i = 0; i < n; i++) {
        vz_cpu_matmul_st(y1, x + i * cols, 1, &W, scratch, 1);
        assert_memory_equal(y1, y + i * rows, sizeof y1);
    }
    vz_cpu_matmul_st(yt, x, n, &W, scratch, 4);
    assert_memory_equal(yt, y, sizeof yt);
    free(scratch);
    free((void *)W.data);
    free(wv);
}

static void test_matmul_f32(void **st) { (void)st; check_matmul(VZ_DTYPE_F32); }
static void test_matmul_f16(void **st) { (void)st; check_matmul(VZ_DTYPE_F16); }
static void test_matmul_bf16(void **st) { (void)st; check_matmul(VZ_DTYPE_BF16); }

/* A matrix big enough that the matmul really runs multi-threaded. */
static void test_matmul_threads_bitwise(void **st) {
    (void)st;
    uint64_t rng = 7;
    vz_tensor W;
    float *wv = NULL;
    make_tensor(&W, VZ_DTYPE_BF16, 301, 257, &rng, &wv);
    float *x = malloc(sizeof(float) * 5 * 257), *a = malloc(sizeof(float) * 5 * 301), *b = malloc(sizeof(float) * 5 * 301);
    float *scratch = malloc(sizeof(float) * 3 * VZ_ROW_BLOCK * 257);
    assert_true(x && a && b && scratch);
    for (int i = 0; i < 5 * 257; i++) x[i] = vz_test_randn(&rng);
    vz_cpu_matmul_st(a, x, 5, &W, scratch, 1);
    vz_cpu_matmul_st(b, x, 5, &W, scratch, 3);
    assert_memory_equal(a, b, sizeof(float) * 5 * 301);
    free(x), free(a), free(b), free(scratch), free((void *)W.data), free(wv);
}

/* The scale is computed in double and applied in two f32 multiplies: about 3u relative. */
static void test_rmsnorm(void **st) {
    (void)st;
    uint64_t rng = 3;
    float x[70], w[70], o[70];
    for (int i = 0; i < 70; i++) x[i] = 3 * vz_test_randn(&rng), w[i] = vz_test_randn(&rng);
    vz_cpu_rmsnorm(o, x, w, 70, 1e-5f);
    double ss = 0;
    for (int i = 0; i < 70; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / 70 + (double)1e-5f);
    for (int i = 0; i < 70; i++) {
        double ref = (double)w[i] * x[i] * scale;
        assert_true(fabs(o[i] - ref) <= 4 * U32 * fabs(ref));
    }
    vz_cpu_rmsnorm(x, x, w, 70, 1e-5f); /* in place */
    assert_memory_equal(x, o, sizeof o);
}

/* The rotation table against double cos/sin of pos * theta^(-2i/hd). The
 * f32 powf/cosf/sinf and the f32 product pos*freq cost a few ulps of the
 * angle (pos * freq <= 13 here, so ~1e-6 absolute). */
static void test_rope_table(void **st) {
    (void)st;
    const int hd = 16, pos = 13;
    float cs[16];
    vz_cpu_rope_table(cs, hd, pos, 10000.0f);
    for (int i = 0; i < hd / 2; i++) {
        double ang = pos * pow(10000.0, -2.0 * i / hd);
        assert_true(fabs(cs[2 * i] - cos(ang)) < 4e-6);
        assert_true(fabs(cs[2 * i + 1] - sin(ang)) < 4e-6);
    }
    vz_cpu_rope_table(cs, hd, 0, 10000.0f);
    for (int i = 0; i < hd / 2; i++) assert_true(cs[2 * i] == 1.0f && cs[2 * i + 1] == 0.0f);
}

/* rope_scaling frequencies against transformers' formulas written out in
 * double (_compute_llama3_parameters, _compute_linear_scaling_rope_parameters):
 * Llama 3.1/3.2's llama3 scaling at head_dim 64 and 128, and linear. No
 * wavelength lies near a band edge here, so f32 and double take the same
 * branch and agree to a few ulps. Unscaled: the same floats as the table's. */
static void test_rope_freqs(void **st) {
    (void)st;
    const vz_rope_scaling l3 = {VZ_ROPE_LLAMA3, 32.0f, 1.0f, 4.0f, 8192, NULL},
                          lin = {VZ_ROPE_LINEAR, 4.0f, 0, 0, 0, NULL};
    const int hds[] = {64, 128};
    for (int h = 0; h < 2; h++) {
        const int hd = hds[h];
        float f[64], g[64], cs[128], cs2[128];
        int kept = 0, scaled = 0, blended = 0;
        vz_cpu_rope_freqs(f, hd, 500000.0f, &l3);
        vz_cpu_rope_freqs(g, hd, 500000.0f, &lin);
        for (int i = 0; i < hd / 2; i++) {
            double inv = 1.0 / pow(500000.0, 2.0 * i / hd), wl = 2 * M_PI / inv, want = inv;
            if (wl > 8192.0) want = inv / 32, scaled++;
            else if (wl < 2048.0) kept++;
            else {
                double s = (8192.0 / wl - 1.0) / (4.0 - 1.0);
                want = (1 - s) * inv / 32 + s * inv, blended++;
            }
            if (fabs(f[i] - want) > 1e-6 * want) fail_msg("hd %d pair %d: llama3 %.9g, want %.9g", hd, i, f[i], want);
            if (fabs(g[i] - inv / 4) > 1e-6 * inv) fail_msg("hd %d pair %d: linear %.9g, want %.9g", hd, i, g[i], inv / 4);
        }
        assert_true(kept > 0 && scaled > 0 && blended > 0); /* every band is exercised */
        vz_cpu_rope_freqs(f, hd, 500000.0f, NULL);
        vz_cpu_rope_table_freqs(cs, hd, 1234, f);
        vz_cpu_rope_table(cs2, hd, 1234, 500000.0f);
        assert_memory_equal(cs, cs2, sizeof(float) * (size_t)hd);
    }
}

/* Hugging Face checkpoints permute q/k rows so that rotate-half pairs
 * (i, i+hd/2) hold what llama2.c keeps in (2i, 2i+1): permuted index
 * j*hd/2 + i holds original 2i + j. Rotating the permuted vector must give
 * the permutation of the interleaved result, bit for bit. */
static void test_rope_conventions(void **st) {
    (void)st;
    enum { NH = 3, HD = 8 };
    uint64_t rng = 5;
    float a[NH * HD], b[NH * HD], cs[HD];
    for (int i = 0; i < NH * HD; i++) a[i] = vz_test_randn(&rng);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < HD / 2; i++)
            for (int j = 0; j < 2; j++) b[h * HD + j * HD / 2 + i] = a[h * HD + 2 * i + j];
    vz_cpu_rope_table(cs, HD, 37, 10000.0f);
    float a0 = a[2], a1 = a[3];
    vz_cpu_rope(a, NH, HD, cs, 1);
    vz_cpu_rope(b, NH, HD, cs, 0);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < HD / 2; i++)
            for (int j = 0; j < 2; j++) assert_true(b[h * HD + j * HD / 2 + i] == a[h * HD + 2 * i + j]);
    /* pair 1 of head 0 rotated by its angle (checks it is a rotation, not a no-op) */
    assert_true(fabs(a[2] - (a0 * cs[2] - a1 * cs[3])) < 1e-6 && fabs(a[3] - (a0 * cs[3] + a1 * cs[2])) < 1e-6);
    assert_true(cs[3] != 0.0f);
}

static void test_softmax(void **st) {
    (void)st;
    float x[5] = {1000.0f, 999.0f, -3.0f, 0.5f, 1000.0f};
    double ref[5], sum = 0;
    for (int i = 0; i < 5; i++) sum += ref[i] = exp((double)x[i] - 1000.0);
    vz_cpu_softmax(x, 5);
    double tot = 0;
    for (int i = 0; i < 5; i++) {
        assert_true(fabs(x[i] - ref[i] / sum) <= 1e-6 * (ref[i] / sum) + 1e-30);
        tot += x[i];
    }
    assert_true(fabs(tot - 1.0) < 1e-6);
    assert_true(x[0] == x[4]);
    float one[1] = {-5.0f};
    vz_cpu_softmax(one, 1);
    assert_true(one[0] == 1.0f);
}

static void test_swiglu(void **st) {
    (void)st;
    float h[4] = {-2.0f, 0.0f, 1.5f, 30.0f}, u[4] = {0.5f, 7.0f, -1.0f, 2.0f};
    double ref[4];
    for (int i = 0; i < 4; i++) ref[i] = h[i] / (1.0 + exp(-(double)h[i])) * u[i];
    vz_cpu_swiglu(h, u, 4);
    for (int i = 0; i < 4; i++) assert_true(fabs(h[i] - ref[i]) <= 8 * U32 * fabs(ref[i]));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_f32),     cmocka_unit_test(test_matmul_f16),
        cmocka_unit_test(test_matmul_bf16),    cmocka_unit_test(test_matmul_threads_bitwise),
        cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rope_conventions), cmocka_unit_test(test_rope_freqs), cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_swiglu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
