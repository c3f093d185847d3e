/*
 * test_simd.c - the vectorised CPU kernels give the bits of their scalar
 * definitions: every instruction-set body of vz_dot (generic, AVX2,
 * AVX-512) against a scalar reference of the same summation order, every
 * bulk bf16/f16 -> f32 version (core/half_rows.c) and the raw codec's decode
 * over all 65536 inputs against core/half.h,
 * and the matmul's in-place path for raw f32 against the decoding path.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"

#include "backend/cpu/ops.h"
#include "codec/codec.h"
#include "core/half.h"
#include "core/half_rows.h"

/* vz_dot's order written out one rounding at a time: 16 partial sums of
 * elements k, k+16, ..., then halves 8, 4, 2, 1. */
static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s[16] = {0};
    for (int64_t i = 0; i < n; i++) {
        float p = a[i] * b[i];
        s[i % 16] = s[i % 16] + p;
    }
    for (int k = 0; k < 8; k++) s[k] = s[k] + s[k + 8];
    for (int k = 0; k < 4; k++) s[k] = s[k] + s[k + 4];
    s[0] = s[0] + s[2];
    s[1] = s[1] + s[3];
    return s[0] + s[1];
}

/* Values spanning many magnitudes (and some subnormals) so that any change
 * of order or an FMA would change the rounding. */
static float wild(uint64_t *rng) {
    float x = vz_test_randn(rng);
    int e = (int)(vz_test_rand(rng) % 40) - 20;
    if (vz_test_rand(rng) % 97 == 0) e = -140; /* subnormal */
    return ldexpf(x, e);
}

static void assert_same_bits(float a, float b, int64_t n, const char *what) {
    if (memcmp(&a, &b, 4) != 0) fail_msg("%s differs at n=%lld: %a vs %a", what, (long long)n, a, b);
}

static void test_dot_bodies_agree(void **state) {
    (void)state;
    uint64_t rng = 7;
    enum { MAXN = 4099 };
    float *a = malloc(sizeof(float) * (MAXN + 1)), *b = malloc(sizeof(float) * (MAXN + 1));
    assert_non_null(a);
    assert_non_null(b);
    int have_avx2 = 0, have_avx512 = 0;
#if VZ_DOT_X86
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2");
    have_avx512 = __builtin_cpu_supports("avx512f");
#endif
    if (!have_avx2) printf("note: no AVX2 on this CPU; only the generic vz_dot body is checked\n");
    int64_t sizes[] = {0, 1, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 688, 1000, 2048, 4099};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        for (int rep = 0; rep < 20; rep++) {
            for (int64_t i = 0; i < n + 1; i++) a[i] = wild(&rng), b[i] = wild(&rng);
            for (int off = 0; off < 2; off++) { /* aligned and misaligned by one float */
                float ref = dot_scalar(a + off, b, n);
                assert_same_bits(vz_dot_generic(a + off, b, n), ref, n, "vz_dot_generic");
                assert_same_bits(vz_dot(a + off, b, n), ref, n, "vz_dot");
#if VZ_DOT_X86
                if (have_avx2) assert_same_bits(vz_dot_avx2(a + off, b, n), ref, n, "vz_dot_avx2");
                if (have_avx512) assert_same_bits(vz_dot_avx512(a + off, b, n), ref, n, "vz_dot_avx512");
#endif
            }
        }
    }
    free(a);
    free(b);
}

/* A raw (1, n) tensor over data. */
static vz_tensor raw_row(vz_dtype dt, const void *data, int64_t n) {
    vz_tensor t;
    memset(&t, 0, sizeof t);
    int64_t shape[2] = {1, n};
    assert_int_equal(vz_tensor_set_shape(&t, 2, shape), 0);
    t.dtype = dt;
    t.codec = VZ_CODEC_raw;
    t.data = data;
    t.size = (uint64_t)n * (uint64_t)vz_dtype_size(dt);
    return t;
}

typedef void (*half_fn)(float *, const uint8_t *, size_t);

/* Converts all 65536 halves with fn, aligned and shifted by one element (so
 * the scalar tails meet other values), and compares with the scalar bits. */
static void check_half_fn(vz_dtype dt, half_fn fn, const char *what, const uint8_t *src, float *out) {
    enum { N = 65536 };
    for (int shift = 0; shift < 2; shift++) {
        fn(out, src + 2 * shift, N - shift);
        for (int32_t i = 0; i < N - shift; i++) {
            uint16_t h = (uint16_t)(i + shift);
            float want = dt == VZ_DTYPE_BF16 ? vz_bf16_to_f32(h) : vz_f16_to_f32(h);
            if (memcmp(&want, &out[i], 4) != 0)
                fail_msg("%s 0x%04x: got %08x, want %08x", what, h, vz_f32_bits(out[i]), vz_f32_bits(want));
        }
    }
}

/* The raw codec's decode_f32 as a half_fn over a (1, n) tensor. */
static vz_dtype raw_dt;
static void raw_decode(float *out, const uint8_t *src, size_t n) {
    vz_tensor t = raw_row(raw_dt, src, (int64_t)n);
    assert_int_equal(vz_tensor_check(&t), VZ_OK);
    vz_codec_by_id(VZ_CODEC_raw)->decode_f32(&t, 0, 1, out);
}

static void check_half_decode(vz_dtype dt) {
    enum { N = 65536 };
    uint8_t *src = malloc(2 * N);
    float *out = malloc(sizeof(float) * N);
    assert_non_null(src);
    assert_non_null(out);
    for (int32_t h = 0; h < N; h++) {
        uint16_t v = (uint16_t)h;
        memcpy(src + 2 * h, &v, 2);
    }
    int bf = dt == VZ_DTYPE_BF16;
    raw_dt = dt;
    check_half_fn(dt, raw_decode, "raw decode_f32", src, out);
    check_half_fn(dt, bf ? vz_bf16_rows_to_f32 : vz_f16_rows_to_f32, "dispatched", src, out);
    check_half_fn(dt, bf ? vz_bf16_rows_to_f32_generic : vz_f16_rows_to_f32_generic, "generic", src, out);
#if VZ_HALF_X86
    __builtin_cpu_init();
    if (bf && __builtin_cpu_supports("avx2")) check_half_fn(dt, vz_bf16_rows_to_f32_avx2, "avx2", src, out);
    if (bf && __builtin_cpu_supports("avx512f")) check_half_fn(dt, vz_bf16_rows_to_f32_avx512, "avx512", src, out);
    if (!bf && __builtin_cpu_supports("avx2") && vz_cpu_has_f16c())
        check_half_fn(dt, vz_f16_rows_to_f32_f16c, "f16c", src, out);
#endif
    free(src);
    free(out);
}

static void test_raw_bf16_decode_exhaustive(void **state) { (void)state; check_half_decode(VZ_DTYPE_BF16); }
static void test_raw_f16_decode_exhaustive(void **state) { (void)state; check_half_decode(VZ_DTYPE_F16); }

/* Raw f32 weights are dotted in place when 4-byte aligned and decoded
 * (copied) otherwise; bf16 weights with the same values are decoded, or
 * for one input streamed through bf16_dot_rows. All must give the same
 * bits, for row lengths around the L1 row-block boundary too, one input
 * (every generated token) or several (prefill: rows x inputs in tiles, 37
 * rows and 7 inputs leaving partial tiles). */
static void test_matmul_paths_agree(void **state) {
    (void)state;
    uint64_t rng = 99;
    int64_t colss[] = {64, 256, 1531, 6200};
    int32_t ns[] = {1, 2, 7};
    for (size_t k = 0; k < 4 * 3; k++) { /* every cols x n */
        const int64_t rows = 37, cols = colss[k / 3];
        const int32_t n = ns[k % 3], nt = 2;
        size_t cnt = (size_t)(rows * cols);
        uint16_t *wb = malloc(2 * cnt);
        uint8_t *wf = malloc(4 * cnt + 4); /* + 4: room for the misaligned copy */
        float *x = malloc(sizeof(float) * (size_t)n * (size_t)cols);
        float *scratch = malloc(sizeof(float) * (size_t)nt * VZ_ROW_BLOCK * (size_t)cols);
        float *y[3];
        for (int k = 0; k < 3; k++) y[k] = malloc(sizeof(float) * (size_t)n * (size_t)rows);
        assert_true(wb && wf && x && scratch && y[0] && y[1] && y[2]);
        for (size_t i = 0; i < cnt; i++) {
            wb[i] = vz_f32_to_bf16(vz_test_randn(&rng));
            float f = vz_bf16_to_f32(wb[i]);
            memcpy(wf + 4 * i, &f, 4);
        }
        for (int64_t i = 0; i < (int64_t)n * cols; i++) x[i] = vz_test_randn(&rng);
        int64_t shape[2] = {rows, cols};
        vz_tensor tb, tf, tm;
        memset(&tb, 0, sizeof tb);
        assert_int_equal(vz_tensor_set_shape(&tb, 2, shape), 0);
        tb.codec = VZ_CODEC_raw;
        tf = tm = tb;
        tb.dtype = VZ_DTYPE_BF16, tb.data = (const uint8_t *)wb, tb.size = 2 * cnt;
        tf.dtype = VZ_DTYPE_F32, tf.data = wf, tf.size = 4 * cnt;
        vz_cpu_matmul_st(y[0], x, n, &tb, scratch, nt);
        vz_cpu_matmul_st(y[1], x, n, &tf, scratch, nt);
        memmove(wf + 1, wf, 4 * cnt); /* misaligned: goes through decode_f32 */
        tm.dtype = VZ_DTYPE_F32, tm.data = wf + 1, tm.size = 4 * cnt;
        vz_cpu_matmul_st(y[2], x, n, &tm, scratch, nt);
        assert_memory_equal(y[0], y[1], sizeof(float) * (size_t)n * (size_t)rows);
        assert_memory_equal(y[0], y[2], sizeof(float) * (size_t)n * (size_t)rows);
        for (int32_t i = 0; i < n; i++) /* and each output is one vz_dot of a whole row */
            for (int64_t r = 0; r < rows; r++) {
                float w[6200];
                memcpy(w, wf + 1 + 4 * (size_t)(r * cols), 4 * (size_t)cols);
                assert_same_bits(y[0][(int64_t)i * rows + r], vz_dot(w, x + (int64_t)i * cols, cols), cols,
                                 "matmul row");
            }
        free(wb), free(wf), free(x), free(scratch);
        for (int k = 0; k < 3; k++) free(y[k]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_bodies_agree),
        cmocka_unit_test(test_raw_bf16_decode_exhaustive),
        cmocka_unit_test(test_raw_f16_decode_exhaustive),
        cmocka_unit_test(test_matmul_paths_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
