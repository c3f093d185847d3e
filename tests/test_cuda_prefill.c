/*
 * test_cuda_prefill.c - the GPU prefill (T > 8 tokens per eval): the GEMMs
 * of src/backend/cuda/gemm.cu (path A: decode + cuBLAS, path B: decode into
 * shared memory + mma.sync) against a CPU double-sum reference for every
 * codec with a GPU decoder, prefill logits against the CPU session, and raw
 * vs lossless logits byte-identical over a long prompt and the generation
 * after it, the prefill attention kernels (tensor-core and f32) against
 * a double-precision CPU causal attention, and RMSNorm / SwiGLU to bf16
 * against the same formulas on the host. Skips without CUDA, a GPU or cuBLAS. Optional: VZ_TINYLLAMA_RAW /
 * VZ_TINYLLAMA_LOSSLESS (bench/gpu_final.sh) for a 512-token prompt.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gpu.h"
#include "common/testutil.h"
#include "vramzip.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cpu/ops.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/prefill.h"
#include "codec/codec.h"
#include "core/half.h"
#include "core/tensor.h"
#include "model/plan.h"
#endif

#define S260K "stories260K/stories260K.bin"

#ifdef VZ_HAVE_CUDA
/* f32 of element i of a decode_ref output (lossless/raw: source dtype; lossy: f32). */
static float ref_elem(const void *buf, int64_t i, vz_dtype dt, int lossless) {
    if (!lossless || dt == VZ_DTYPE_F32) return ((const float *)buf)[i];
    uint16_t h = ((const uint16_t *)buf)[i];
    return dt == VZ_DTYPE_BF16 ? vz_bf16_to_f32(h) : vz_f16_to_f32(h);
}

/* One GEMM case: n tensors (rows[i] x cols) of codec/dtype, T tokens, both
 * paths, add = 0 and 1, y poisoned with NaN (add = 0) or preset (add = 1).
 * Reference: bf16(decode_ref) . bf16(x) in double. Both sides multiply the
 * same bf16 values (products exact in f32) and add them in f32 in different
 * orders, so |gpu - ref| <= gamma_K * sum_c |w x| with gamma_K = K u / (1 - K u),
 * u = 2^-24 (plus the preset y's one rounding when add). raw/lossless: out
 * gets path A's y of add = 0 for a bitwise comparison across codecs. */
static int32_t gemm_group; /* q8 / q4 group of gemm_case's tensors; 0: the codec's default */
static float *gemm_outb;   /* when set, gemm_case leaves path B's y of add = 0 there */

static void gemm_case(const char *codec, vz_dtype dt, int n, const int64_t *rows, int64_t cols, int32_t T,
                      int arena, float *out) {
    const vz_codec *c = vz_codec_by_name(codec);
    assert_non_null(c);
    int64_t R = 0;
    for (int i = 0; i < n; i++) R += rows[i];
    uint64_t rs = 12345;
    vz_cuda_tensor W[3];
    const vz_cuda_tensor *Wp[3];
    uint8_t *ab = NULL; /* arena: the tensors side by side in one allocation, as a session uploads them */
    if (arena) {
        ab = vz_cuda_alloc((size_t)(4 * R * cols + 4096));
        assert_non_null(ab);
    }
    uint64_t aoff = 0;
    float *wref = malloc(sizeof(float) * (size_t)(R * cols)), *x = malloc(sizeof(float) * (size_t)(T * cols));
    uint16_t *xh = malloc(2 * (size_t)(T * cols));
    assert_true(wref && x && xh);
    for (int i = 0, r0 = 0; i < n; r0 += (int)rows[i], i++) {
        const int64_t ne = rows[i] * cols;
        void *src = malloc(4 * (size_t)ne), *dec = malloc(4 * (size_t)ne);
        assert_true(src && dec);
        for (int64_t e = 0; e < ne; e++) {
            float v = 0.02f * vz_test_randn(&rs);
            if (dt == VZ_DTYPE_F32) ((float *)src)[e] = v;
            else ((uint16_t *)src)[e] = vz_f32_to_bf16(v); /* bf16 sources only here (f16: same decoders) */
        }
        vz_blob b;
        vz_codec_opts o = {gemm_group, 0, 0};
        assert_int_equal(c->encode(src, dt, rows[i], cols, &o, &b), VZ_OK);
        vz_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "w%d", i);
        t.ndim = 2, t.shape[0] = t.rows = rows[i], t.shape[1] = t.cols = cols;
        t.dtype = dt, t.codec = c->id, t.data = b.data, t.size = b.size, t.params = b.params, t.params_size = b.params_size;
        if (arena) {
            assert_int_equal(vz_cuda_tensor_upload_at(&W[i], &t, 0, ab + aoff, NULL), VZ_OK);
            aoff += vz_plan_tensor_bytes(&t);
        } else assert_int_equal(vz_cuda_tensor_upload(&W[i], &t, NULL), VZ_OK);
        Wp[i] = &W[i];
        assert_int_equal(c->decode_ref(&t, 0, rows[i], dec), VZ_OK);
        for (int64_t e = 0; e < ne; e++)
            wref[(int64_t)r0 * cols + e] = vz_bf16_to_f32(vz_f32_to_bf16(ref_elem(dec, e, dt, c->lossless)));
        vz_blob_free(&b);
        free(src), free(dec);
    }
    for (int64_t t = 0; t < T; t++) /* x goes to the GPU in the GEMM column order (gemm.h) */
        for (int64_t k = 0; k < cols; k++) {
            const uint16_t h = vz_f32_to_bf16(vz_test_randn(&rs));
            xh[t * cols + vz_gemm_col(cols, k)] = h;
            x[t * cols + k] = vz_bf16_to_f32(h);
        }
    const int64_t ny = (int64_t)T * R;
    float *y0 = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    assert_true(y0 && y);
    for (int64_t e = 0; e < ny; e++) y0[e] = vz_test_randn(&rs);
    void *dx = vz_cuda_alloc(2 * (size_t)(T * cols));
    float *dy = vz_cuda_alloc(sizeof(float) * (size_t)ny);
    assert_true(dx && dy);
    assert_int_equal(vz_cuda_copy(dx, xh, 2 * (size_t)(T * cols), 0), VZ_OK);
    vz_gemm *g = NULL;
    /* a scratch of 7 rows: path A runs several row chunks */
    assert_int_equal(vz_gemm_create(&g, 7 * cols, NULL), VZ_OK);
    const double gamma = (double)cols * 0x1p-24 / (1.0 - (double)cols * 0x1p-24);
    double worst = 0.0;
    float *ya0 = malloc(sizeof(float) * (size_t)ny);
    assert_non_null(ya0);
    const int old_dec = vz_gemm_decode_variant(-1), old_pipe = vz_gemm_pipe_flags(-1);
    /* pv 0, 1, 7: path A with decode kernel 0, 2 (the default), 1 (same bits); 2: path B; 3: A serial, raw
     * copied through the decoder (the path of before: same bits); 4: A with chunk 0 prefetched (same
     * bits); 5, 6: A in chunks of half the scratch, overlapped and serial + copied (same bits as each
     * other); 8: decode kernel 1, raw copied through it too (same bits); 9: the ring decoder's grid capped
     * at one block (vz_gemm_decode_cap; a chunk of 7 rows is 14 jobs, 2 blocks uncapped), raw copied
     * through it (same bits) */
    static const int pipe[10] = {0, 0, 0, VZ_GEMM_SERIAL | VZ_GEMM_COPY, 0, VZ_GEMM_HALVES,
                                 VZ_GEMM_HALVES | VZ_GEMM_SERIAL | VZ_GEMM_COPY, 0, VZ_GEMM_SERIAL | VZ_GEMM_COPY,
                                 VZ_GEMM_SERIAL | VZ_GEMM_COPY};
    static const int dec[10] = {0, 2, 2, 2, 2, 2, 2, 1, 1, 2};
    float *yh = malloc(sizeof(float) * (size_t)ny);
    assert_non_null(yh);
    for (int pv = 0; pv < 10; pv++)
        for (int add = 0; add < 2; add++) {
            const int path = pv == 2 ? VZ_GEMM_B : VZ_GEMM_A;
            vz_gemm_decode_variant(dec[pv]);
            vz_gemm_pipe_flags(pipe[pv]);
            vz_gemm_decode_cap(pv == 9 ? 1 : 0);
            if (add) assert_int_equal(vz_cuda_copy(dy, y0, sizeof(float) * (size_t)ny, 0), VZ_OK);
            else assert_int_equal(vz_cuda_fill_f32(dy, NAN, (size_t)ny), VZ_OK);
            if (pv == 4) assert_int_equal(vz_gemm_prefetch(g, n, Wp), VZ_OK);
            assert_int_equal(vz_gemm_run(g, n, Wp, dy, R, dx, cols, T, add, path), VZ_OK);
            assert_int_equal(vz_cuda_sync(), VZ_OK);
            assert_int_equal(vz_cuda_copy(y, dy, sizeof(float) * (size_t)ny, 1), VZ_OK);
            vz_gemm_decode_variant(old_dec);
            vz_gemm_pipe_flags(old_pipe);
            vz_gemm_decode_cap(0);
            if (pv == 0 && !add) memcpy(ya0, y, sizeof(float) * (size_t)ny);
            if (pv != 0 && pv != 2 && pv != 5 && pv != 6 && !add && memcmp(ya0, y, sizeof(float) * (size_t)ny) != 0)
                fail_msg("%s: path A variant %d differs bitwise from variant 0", codec, pv);
            if (pv == 5 && !add) memcpy(yh, y, sizeof(float) * (size_t)ny);
            if (pv == 6 && !add && memcmp(yh, y, sizeof(float) * (size_t)ny) != 0)
                fail_msg("%s: path A in halves, serial differs bitwise from overlapped", codec);
            if (pv == 1 && !add && out) memcpy(out, y, sizeof(float) * (size_t)ny);
            if (pv == 2 && !add && gemm_outb) memcpy(gemm_outb, y, sizeof(float) * (size_t)ny);
            for (int32_t t = 0; t < T; t++)
                for (int64_t r = 0; r < R; r++) {
                    double s = 0.0, sa = 0.0;
                    for (int64_t k = 0; k < cols; k++) {
                        double p = (double)wref[r * cols + k] * x[(int64_t)t * cols + k];
                        s += p, sa += fabs(p);
                    }
                    double base = add ? (double)y0[(int64_t)t * R + r] : 0.0, got = y[(int64_t)t * R + r];
                    double tol = gamma * sa + (add ? 0x1p-24 * fabs(base + s) * 2 : 0.0) + 1e-30;
                    if (!(fabs(got - (base + s)) <= tol))
                        fail_msg("%s path %c add %d: y[%d, %lld] = %.9g, ref %.9g (tol %.3g)", codec, 'A' + path - 1, add,
                                 (int)t, (long long)r, got, base + s, tol);
                    if (fabs(got - (base + s)) / tol > worst) worst = fabs(got - (base + s)) / tol;
                }
        }
    print_message("%s %s %dx(%lld..)x%lld, T %d%s: paths A (three decoders, serial, copied, prefetched, capped grid: same bits; "
                  "halves overlapped = serial) and B within %.2f of the f32 summation bound\n", codec, dt == VZ_DTYPE_F32 ? "f32" : "bf16", n,
                  (long long)rows[0], (long long)cols, (int)T, arena ? ", one allocation" : "", worst);
    free(ya0), free(yh);
    vz_gemm_free(g);
    for (int i = 0; i < n; i++) vz_cuda_tensor_free(&W[i]);
    vz_cuda_release(ab);
    vz_cuda_release(dx);
    vz_cuda_release(dy);
    free(wref), free(x), free(xh), free(y0), free(y);
}

static int have_cublas(void) {
    vz_gemm *g = NULL;
    if (vz_gemm_create(&g, 1, NULL) != VZ_OK) {
        print_message("SKIP: %s\n", vz_last_error());
        return 0;
    }
    vz_gemm_free(g);
    return 1;
}
#endif

/* Every codec with a GPU decoder, fast shapes (cols % 32 == 0, two 1024-column
 * blocks, 3 stacked tensors) and generic ones (cols 172); raw and lossless
 * of the same weights give identical bits. */
static void test_gemm_codecs(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    if (!have_cublas()) skip();
    const int64_t rows3[3] = {96, 40, 40}, rows1[1] = {70};
    const int32_t T = 37;
    float *ya = malloc(sizeof(float) * 176 * T), *yb = malloc(sizeof(float) * 176 * T);
    assert_true(ya && yb);
    float *yc = malloc(sizeof(float) * 176 * T);
    assert_non_null(yc);
    float *yba = malloc(sizeof(float) * 300 * 300), *ybb = malloc(sizeof(float) * 300 * 300);
    assert_true(yba && ybb);
    gemm_outb = yba;
    gemm_case("raw", VZ_DTYPE_BF16, 3, rows3, 1056, T, 0, ya);
    gemm_case("raw", VZ_DTYPE_BF16, 3, rows3, 1056, T, 1, yc); /* contiguous: aligned chunks read in place */
    gemm_outb = ybb;
    gemm_case("lossless", VZ_DTYPE_BF16, 3, rows3, 1056, T, 0, yb);
    gemm_outb = NULL;
    assert_memory_equal(ya, yb, sizeof(float) * 176 * T);
    assert_memory_equal(ya, yc, sizeof(float) * 176 * T);
    assert_memory_equal(yba, ybb, sizeof(float) * 176 * T); /* path B: the same bits too */
    free(yc);
    /* path B over several row and token tiles and two 1024-column blocks, raw == lossless bitwise */
    const int64_t rows260[1] = {260};
    gemm_outb = yba;
    gemm_case("raw", VZ_DTYPE_BF16, 1, rows260, 2048, 130, 0, NULL);
    gemm_outb = ybb;
    gemm_case("lossless", VZ_DTYPE_BF16, 1, rows260, 2048, 130, 0, NULL);
    gemm_outb = NULL;
    assert_memory_equal(yba, ybb, sizeof(float) * 260 * 130);
    free(yba), free(ybb);
    gemm_case("q8", VZ_DTYPE_BF16, 3, rows3, 1056, T, 0, NULL);
    gemm_case("q4", VZ_DTYPE_BF16, 3, rows3, 1056, T, 0, NULL);
    gemm_group = 32; /* GGUF Q8_0 / Q4_0 load as these */
    gemm_case("q8", VZ_DTYPE_F32, 3, rows3, 1056, T, 0, NULL);
    gemm_case("q4", VZ_DTYPE_F32, 3, rows3, 1056, T, 0, NULL);
    gemm_group = 0;
    gemm_case("raw", VZ_DTYPE_F32, 1, rows1, 172, T, 0, ya);
    gemm_case("lossless", VZ_DTYPE_F32, 1, rows1, 172, T, 0, yb);
    assert_memory_equal(ya, yb, sizeof(float) * 70 * T);
    gemm_case("q8", VZ_DTYPE_F32, 1, rows1, 172, T, 0, NULL);
    gemm_case("q4", VZ_DTYPE_F32, 1, rows1, 172, T, 0, NULL);
    gemm_case("raw", VZ_DTYPE_BF16, 1, rows1, 2048, 300, 1, NULL); /* 3 token tiles of path B */
    free(ya), free(yb);
#endif
}

#ifdef VZ_HAVE_CUDA
/* RoPE of pair i at pos as forward.cu / prefill.cu (f32 powf, cosf, sinf). */
static void rope_ref(float *v, int i, int pos, int hd, float theta, const float *fr, int inter) {
    float freq = fr ? fr[i] : 1.0f / powf(theta, (float)(2 * i) / (float)hd), val = (float)pos * freq, c = cosf(val),
          sn = sinf(val);
    int a = inter ? 2 * i : i, b = inter ? 2 * i + 1 : i + hd / 2;
    float v0 = v[a], v1 = v[b];
    v[a] = v0 * c - v1 * sn, v[b] = v0 * sn + v1 * c;
}

/* One attention case: T new tokens at pos0 over a cache whose rows < pos0
 * are random, both kernels (vz_pf_attention_variant 0: flash-attention on
 * tensor cores, 1: f32); scaled: with Llama 3.1's rope scaling (the
 * frequency table vz_cpu_rope_freqs makes: factor 8, low/high 1/4, original
 * context 64, so every band is used) and Qwen 2's q/k/v biases (random,
 * added before the rotation). Reference in
 * double from the rotated q and the cache as stored (f16 or f32).
 * Tolerances, relative to max|v|: the f32 kernel rounds only its output to
 * bf16 (2^-9 of |o| <= max|v|): 2^-8. The tensor-core kernel also rounds q,
 * P (and an f32 cache's k, v) to f16 (2^-11 each); a score moves by <=
 * 2^-11 sum|q k| / sqrt(hd) (~5 for unit Gaussians at hd 64, so ~2.5e-3),
 * which moves the softmax weights by that relative amount (the f32 factor
 * log2(e) / sqrt(hd), exp2f and 1 / l add ~2^-22): 2^-7 in all. New
 * cache rows: the reference's rotated k (host cosf/sinf may differ by an
 * ulp from the device's) within 2^-10. */
static void attention_case(int32_t hd, int32_t f16, int32_t inter, int32_t pos0, int32_t T, int scaled) {
    const int32_t nh = 4, nkv = 2, n_ctx = pos0 + T + 23, qd = nh * hd, kvd = nkv * hd;
    const int64_t ld = qd + 2 * kvd + 8;
    const float theta = 10000.0f;
    uint64_t rs = 5 + (uint64_t)hd + 2 * (uint64_t)f16;
    float fr[64], bias[4 * 128 + 2 * 2 * 128] = {0}, *dfr = NULL, *dbias = NULL;
    if (scaled) {
        const vz_rope_scaling sc = {VZ_ROPE_LLAMA3, 8.0f, 1.0f, 4.0f, 64, NULL};
        vz_cpu_rope_freqs(fr, hd, theta, &sc);
        for (int i = 0; i < qd + 2 * kvd; i++) bias[i] = vz_test_randn(&rs);
        dfr = vz_cuda_alloc(sizeof(float) * (size_t)(hd / 2)), dbias = vz_cuda_alloc(sizeof(float) * (size_t)(qd + 2 * kvd));
        assert_true(dfr && dbias);
        assert_int_equal(vz_cuda_copy(dfr, fr, sizeof(float) * (size_t)(hd / 2), 0), VZ_OK);
        assert_int_equal(vz_cuda_copy(dbias, bias, sizeof(float) * (size_t)(qd + 2 * kvd), 0), VZ_OK);
    }
    const float *rfr = scaled ? fr : NULL;
    const size_t esz = f16 ? 2 : 4, ncache = (size_t)n_ctx * kvd;
    float *qkv = malloc(sizeof(float) * (size_t)(T * ld)), *kf = calloc(ncache, 4), *vf = calloc(ncache, 4);
    uint8_t *kc = calloc(ncache, esz), *vc = calloc(ncache, esz), *kback = malloc(ncache * esz);
    uint16_t *out = malloc(2 * (size_t)T * qd);
    assert_true(qkv && kf && vf && kc && vc && kback && out);
    for (int64_t i = 0; i < T * ld; i++) qkv[i] = vz_test_randn(&rs);
    /* kf/vf: the cache as the kernels read it (f16-rounded when f16) */
    for (size_t i = 0; i < (size_t)pos0 * kvd; i++) {
        float k = vz_test_randn(&rs), v = vz_test_randn(&rs);
        if (f16) {
            ((uint16_t *)kc)[i] = vz_f32_to_f16(k), ((uint16_t *)vc)[i] = vz_f32_to_f16(v);
            k = vz_f16_to_f32(((uint16_t *)kc)[i]), v = vz_f16_to_f32(((uint16_t *)vc)[i]);
        } else {
            ((float *)kc)[i] = k, ((float *)vc)[i] = v;
        }
        kf[i] = k, vf[i] = v;
    }
    float *q = malloc(sizeof(float) * (size_t)T * qd), vmax = 0.0f;
    assert_non_null(q);
    for (int32_t t = 0; t < T; t++) {
        const float *row = qkv + t * ld;
        for (int e = 0; e < qd; e++) q[(size_t)t * qd + e] = row[e] + bias[e]; /* + 0 when not scaled: exact */
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) rope_ref(q + (size_t)t * qd + h * hd, i, pos0 + t, hd, theta, rfr, inter);
        float k[256];
        for (int e = 0; e < kvd; e++) k[e] = row[qd + e] + bias[qd + e];
        for (int h = 0; h < nkv; h++)
            for (int i = 0; i < hd / 2; i++) rope_ref(k + h * hd, i, pos0 + t, hd, theta, rfr, inter);
        for (int e = 0; e < kvd; e++) {
            const size_t i = (size_t)(pos0 + t) * kvd + e;
            const float v = row[qd + kvd + e] + bias[qd + kvd + e];
            kf[i] = f16 ? vz_f16_to_f32(vz_f32_to_f16(k[e])) : k[e];
            vf[i] = f16 ? vz_f16_to_f32(vz_f32_to_f16(v)) : v;
        }
    }
    for (size_t i = 0; i < (size_t)(pos0 + T) * kvd; i++) vmax = fabsf(vf[i]) > vmax ? fabsf(vf[i]) : vmax;
    float *dq = vz_cuda_alloc(sizeof(float) * (size_t)(T * ld));
    void *dk = vz_cuda_alloc(ncache * esz), *dv = vz_cuda_alloc(ncache * esz), *dout = vz_cuda_alloc(2 * (size_t)T * qd);
    assert_true(dq && dk && dv && dout);
    double *sc = malloc(sizeof(double) * (size_t)(pos0 + T));
    assert_non_null(sc);
    static const char *const vname[2] = {"tensor-core", "f32"};
    for (int var = 0; var < 2; var++) {
        assert_int_equal(vz_cuda_copy(dq, qkv, sizeof(float) * (size_t)(T * ld), 0), VZ_OK);
        assert_int_equal(vz_cuda_copy(dk, kc, ncache * esz, 0), VZ_OK);
        assert_int_equal(vz_cuda_copy(dv, vc, ncache * esz, 0), VZ_OK);
        memset(out, 0xff, 2 * (size_t)T * qd); /* NaN */
        assert_int_equal(vz_cuda_copy(dout, out, 2 * (size_t)T * qd, 0), VZ_OK);
        int old = vz_pf_attention_variant(var);
        vz_pf_attention(dout, dq, ld, dk, dv, pos0, T, nh, nkv, hd, f16, theta, dfr, inter, dbias, NULL);
        vz_pf_attention_variant(old);
        assert_int_equal(vz_cuda_sync(), VZ_OK);
        assert_int_equal(vz_cuda_copy(out, dout, 2 * (size_t)T * qd, 1), VZ_OK);
        assert_int_equal(vz_cuda_copy(kback, dk, ncache * esz, 1), VZ_OK);
        for (size_t i = (size_t)pos0 * kvd; i < (size_t)(pos0 + T) * kvd; i++) {
            float g = f16 ? vz_f16_to_f32(((uint16_t *)kback)[i]) : ((float *)kback)[i];
            if (!(fabsf(g - kf[i]) <= 0x1p-10f * (1.0f + fabsf(kf[i])))) fail_msg("cache k[%zu] = %g, ref %g", i, g, kf[i]);
        }
        const double tol = (var != 1 ? 0x1p-7 : 0x1p-8) * vmax;
        double worst = 0.0;
        for (int32_t t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const int kh = h / (nh / nkv), len = pos0 + t + 1;
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j < len; j++) {
                    double d = 0.0;
                    for (int e = 0; e < hd; e++) d += (double)q[(size_t)t * qd + h * hd + e] * kf[(size_t)j * kvd + kh * hd + e];
                    sc[j] = d / sqrt((double)hd);
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int j = 0; j < len; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < hd; e++) {
                    double o = 0.0;
                    for (int j = 0; j < len; j++) o += sc[j] * vf[(size_t)j * kvd + kh * hd + e];
                    o /= sum;
                    const double g = vz_bf16_to_f32(out[(size_t)t * qd + (size_t)vz_gemm_col(qd, h * hd + e)]), err = fabs(g - o);
                    if (!(err <= tol)) fail_msg("attention %s hd %d: out[%d, %d, %d] = %g, ref %g (tol %.3g)",
                                                vname[var], hd, t, h, e, g, o, tol);
                    worst = err > worst ? err : worst;
                }
            }
        print_message("attention %-11s hd %3d kv %s rope %-11s pos0 %3d T %3d%s: max |gpu - ref| = %.3g (tol %.3g)\n",
                      vname[var], hd, f16 ? "f16" : "f32", inter ? "interleaved" : "halves", pos0, T,
                      scaled ? " llama3-scaled, biases" : "", worst, tol);
    }
    vz_cuda_release(dq), vz_cuda_release(dk), vz_cuda_release(dv), vz_cuda_release(dout);
    if (scaled) vz_cuda_release(dfr), vz_cuda_release(dbias);
    free(qkv), free(kf), free(vf), free(kc), free(vc), free(kback), free(out), free(q), free(sc);
}
#endif

/* Every attention kernel, head_dim 64, 128 and 32 (tensor cores) and 8 (the
 * f32 kernel runs for both variants), f16 and f32 caches, a chunk after a
 * filled cache (pos0 37: partial query and key tiles) and a first chunk of
 * 300 tokens (5 query tiles, up to 5 key tiles through both buffers). */
static void test_attention(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    attention_case(64, 1, 0, 37, 100, 0);
    attention_case(64, 0, 1, 37, 100, 0);
    attention_case(128, 1, 1, 37, 100, 0);
    attention_case(128, 0, 0, 37, 100, 0);
    attention_case(32, 1, 1, 37, 100, 0);
    attention_case(8, 1, 0, 37, 100, 0);
    attention_case(64, 1, 0, 0, 300, 0);
    attention_case(64, 1, 0, 37, 100, 1);
    attention_case(128, 0, 1, 37, 100, 1);
    attention_case(16, 1, 0, 0, 300, 1);
    attention_case(64, 1, 1, 5, 600, 0); /* 10 key tiles: 5 through each group's two stages */
#endif
}

#ifdef VZ_HAVE_CUDA
/* n bf16 GPU outputs against host references ref (f32 before rounding):
 * every one within one bf16 ulp of bf16(ref), at least 99% equal to it. */
static void check_bf16(const char *what, int var, int32_t T, int32_t n, const uint16_t *got, const float *ref) {
    int64_t exact = 0, tot = (int64_t)T * n;
    for (int64_t i = 0; i < tot; i++) {
        const float r = vz_bf16_to_f32(vz_f32_to_bf16(ref[i])), g = vz_bf16_to_f32(got[i]);
        if (g == r) {
            exact++;
            continue;
        }
        if (!(fabsf(g - r) <= 0x1p-7f * fabsf(r)))
            fail_msg("%s %d, variant %d: [%lld] = %g, ref %g", what, (int)n, var, (long long)i, g, r);
    }
    if (exact < tot - tot / 100)
        fail_msg("%s %d, variant %d: only %lld of %lld equal", what, (int)n, var, (long long)exact, (long long)tot);
    print_message("%-7s %5d x %d, variant %d: %lld of %lld bf16 equal to the reference, the rest 1 ulp\n", what, (int)n, (int)T,
                  var, (long long)exact, (long long)tot);
}

/* RMSNorm (T rows of dim) and SwiGLU (T rows of hid) to bf16, every kernel
 * variant (vz_pf_norm_variant: 0 vectorized where the shape allows, RMSNorm a
 * block per row above dim 2048; 1 generic; 2 RMSNorm a warp per row), outputs
 * NaN-poisoned. Reference: the same formulas on the host
 * (double sum of squares, scale = (float)(1 / sqrt(ss / dim + eps)),
 * bf16(w (x scale)); bf16(g / (1 + expf(-g)) u)). The device adds the
 * squares in another order (the float scale may move by an ulp) and its
 * expf may differ from the host's by 2 ulp, so the f32 values before
 * rounding differ by a few f32 ulp at most: the bf16 results are equal or
 * adjacent (one bf16 ulp, <= 2^-7 |ref|), and nearly always equal. */
static void norm_silu_case(int32_t T, int32_t dim, int32_t hid) {
    const float eps = 1e-5f;
    uint64_t rs = 11 + (uint64_t)dim + 3 * (uint64_t)hid;
    const int32_t nmax = dim > hid ? dim : hid;
    float *x = malloc(sizeof(float) * (size_t)T * dim), *w = malloc(sizeof(float) * (size_t)dim);
    float *gu = malloc(sizeof(float) * (size_t)T * 2 * hid), *ref = malloc(sizeof(float) * (size_t)T * nmax);
    uint16_t *got = malloc(2 * (size_t)T * nmax);
    assert_true(x && w && gu && ref && got);
    for (int64_t i = 0; i < (int64_t)T * dim; i++) x[i] = vz_test_randn(&rs);
    for (int32_t i = 0; i < dim; i++) w[i] = vz_test_randn(&rs);
    for (int64_t i = 0; i < (int64_t)T * 2 * hid; i++) gu[i] = 3.0f * vz_test_randn(&rs);
    float *dx = vz_cuda_alloc(sizeof(float) * (size_t)T * dim), *dw = vz_cuda_alloc(sizeof(float) * (size_t)dim);
    float *dgu = vz_cuda_alloc(sizeof(float) * (size_t)T * 2 * hid);
    void *dout = vz_cuda_alloc(2 * (size_t)T * nmax);
    assert_true(dx && dw && dgu && dout);
    assert_int_equal(vz_cuda_copy(dx, x, sizeof(float) * (size_t)T * dim, 0), VZ_OK);
    assert_int_equal(vz_cuda_copy(dw, w, sizeof(float) * (size_t)dim, 0), VZ_OK);
    assert_int_equal(vz_cuda_copy(dgu, gu, sizeof(float) * (size_t)T * 2 * hid, 0), VZ_OK);
    for (int var = 0; var < 3; var++) {
        const int old = vz_pf_norm_variant(var);
        memset(got, 0xff, 2 * (size_t)T * nmax); /* NaN */
        assert_int_equal(vz_cuda_copy(dout, got, 2 * (size_t)T * nmax, 0), VZ_OK);
        vz_pf_rmsnorm_bf16(dx, dout, dw, T, dim, eps, NULL);
        assert_int_equal(vz_cuda_sync(), VZ_OK);
        assert_int_equal(vz_cuda_copy(got, dout, 2 * (size_t)T * dim, 1), VZ_OK);
        for (int32_t t = 0; t < T; t++) {
            const float *xr = x + (size_t)t * dim;
            double ss = 0.0;
            for (int32_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
            const float scale = (float)(1.0 / sqrt(ss / dim + eps));
            for (int32_t i = 0; i < dim; i++) /* the output is in the GEMM column order (prefill.h) */
                ref[(size_t)t * dim + (size_t)vz_gemm_col(dim, i)] = w[i] * (xr[i] * scale);
        }
        check_bf16("rmsnorm", var, T, dim, got, ref);
        memset(got, 0xff, 2 * (size_t)T * nmax);
        assert_int_equal(vz_cuda_copy(dout, got, 2 * (size_t)T * nmax, 0), VZ_OK);
        vz_pf_silu_mul_bf16(dgu, dout, T, hid, NULL);
        assert_int_equal(vz_cuda_sync(), VZ_OK);
        vz_pf_norm_variant(old);
        assert_int_equal(vz_cuda_copy(got, dout, 2 * (size_t)T * hid, 1), VZ_OK);
        for (int32_t t = 0; t < T; t++)
            for (int32_t j = 0; j < hid; j++) {
                const float g = gu[(size_t)t * 2 * hid + j], u = gu[(size_t)t * 2 * hid + hid + j];
                ref[(size_t)t * hid + (size_t)vz_gemm_col(hid, j)] = g / (1.0f + expf(-g)) * u;
            }
        check_bf16("silu", var, T, hid, got, ref);
    }
    vz_cuda_release(dx), vz_cuda_release(dw), vz_cuda_release(dgu), vz_cuda_release(dout);
    free(x), free(w), free(gu), free(ref), free(got);
}
#endif

/* TinyLlama's shapes (2048, 5632), small ones, the largest row a warp
 * takes (4096), Mistral-Nemo's 5120 and the largest a block takes (8192, a
 * block's 16 float4s per thread; 8188 and 5000: the last ones partial),
 * and shapes only the generic kernels take (dim 102; hid 100, 172). */
static void test_norm_silu(void **state) {
    (void)state;
    if (!vz_test_have_gpu()) skip();
#ifdef VZ_HAVE_CUDA
    norm_silu_case(37, 2048, 5632);
    norm_silu_case(37, 64, 64);
    norm_silu_case(5, 4096, 100);
    norm_silu_case(4, 5120, 8);
    norm_silu_case(3, 8192, 8);
    norm_silu_case(3, 8188, 8);
    norm_silu_case(9, 102, 172);
    norm_silu_case(3, 5000, 8);
#endif
}

/* Prefill logits (one eval of N tokens, all logits) vs the CPU session, per
 * GEMM path (VZ_CUDA_PREFILL=A / B, read at session create) and KV mode.
 * Tolerance: each GEMM rounds its two inputs to bf16 (relative 2^-9 each;
 * stories260K's weights are f32), so every product is off by at most 2^-8
 * relative and every dot by at most 2^-8 sum |a_i w_i| (the f32 summation's
 * ~n 2^-24 is negligible beside it). As for the f32 test in
 * test_cuda_forward.c, the logits then move by about that fraction of their
 * scale; we allow 4x that, 2^-6 max|logit|, for cancellation (sum |a w| above
 * |sum a w|) and growth through the 5 residual layers. Typical errors are
 * random-walk sums, far below the bound. */
static void test_prefill_vs_cpu(void **state) {
    (void)state;
    vz_model *m = vz_test_gpu_model(S260K);
    enum { N = 150, V = 512 };
    int32_t toks[N];
    uint64_t rs = 7;
    toks[0] = 1;
    for (int i = 1; i < N; i++) toks[i] = (int32_t)(vz_test_rand(&rs) % V);
    float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V), *l1 = malloc(sizeof(float) * V);
    assert_true(a && b && l1);
    const char *modes[2] = {"A", "B"};
    for (int kv = 0; kv < 2; kv++) {
        vz_kv_mode mode = kv ? VZ_KV_F16 : VZ_KV_F32;
        vz_session *cpu = vz_test_open_session(m, VZ_DEVICE_CPU, mode, 256);
        assert_int_equal(vz_session_eval(cpu, toks, N, a, 1), VZ_OK);
        float scale = 0.0f;
        for (int i = 0; i < N * V; i++) scale = fabsf(a[i]) > scale ? fabsf(a[i]) : scale;
        for (int p = 0; p < 2; p++) {
            setenv("VZ_CUDA_PREFILL", modes[p], 1);
            vz_session *gpu = vz_test_open_session(m, VZ_DEVICE_CUDA, mode, 256);
            unsetenv("VZ_CUDA_PREFILL");
            for (int i = 0; i < N * V; i++) b[i] = NAN;
            assert_int_equal(vz_session_eval(gpu, toks, N, b, 1), VZ_OK);
            float maxd = 0.0f;
            for (int i = 0; i < N * V; i++) {
                assert_false(isnan(b[i]));
                maxd = fabsf(a[i] - b[i]) > maxd ? fabsf(a[i] - b[i]) : maxd;
            }
            const float tol = 0x1p-6f * scale;
            print_message("path %s, kv %s: max |prefill - cpu| = %.3g over %d logits (max |logit| %.3g, tol %.3g)\n",
                          modes[p], kv ? "f16" : "f32", (double)maxd, N * V, (double)scale, (double)tol);
            assert_true(maxd <= tol);
            /* the last-row-only eval (f32 head matvec) and decode steps reading the prefilled KV cache */
            vz_session_reset(gpu);
            assert_int_equal(vz_session_eval(gpu, toks, N - 1, l1, 0), VZ_OK);
            for (int j = 0; j < V; j++) assert_true(fabsf(l1[j] - a[(N - 2) * V + j]) <= tol);
            assert_int_equal(vz_session_eval(gpu, toks + N - 1, 1, l1, 0), VZ_OK);
            for (int j = 0; j < V; j++) assert_true(fabsf(l1[j] - a[(N - 1) * V + j]) <= tol);
            vz_session_free(gpu);
        }
        vz_session_free(cpu);
    }
    free(a), free(b), free(l1);
    vz_model_close(m);
}

/* Logits of a prefill of np tokens (all rows) and of ng greedy 1-token
 * steps after it: byte-identical for raw and lossless weights. */
static void compare_prefill_bitwise(const char *raw_path, const char *ll_path, int32_t np, int32_t ng, int32_t n_ctx) {
    vz_model *mr = NULL, *ml = NULL;
    assert_int_equal(vz_model_open(&mr, raw_path, NULL), VZ_OK);
    assert_int_equal(vz_model_open(&ml, ll_path, NULL), VZ_OK);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(mr, &info), VZ_OK);
    const size_t V = (size_t)info.vocab_size;
    vz_session *sr = vz_test_open_session(mr, VZ_DEVICE_CUDA, VZ_KV_F16, n_ctx);
    vz_session *sl = vz_test_open_session(ml, VZ_DEVICE_CUDA, VZ_KV_F16, n_ctx);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)np);
    float *a = malloc(sizeof(float) * V * (size_t)np), *b = malloc(sizeof(float) * V * (size_t)np);
    assert_true(toks && a && b);
    uint64_t rs = 99;
    toks[0] = info.bos_id >= 0 ? info.bos_id : 1;
    for (int32_t i = 1; i < np; i++) toks[i] = (int32_t)(vz_test_rand(&rs) % V);
    assert_int_equal(vz_session_eval(sr, toks, np, a, 1), VZ_OK);
    assert_int_equal(vz_session_eval(sl, toks, np, b, 1), VZ_OK);
    if (memcmp(a, b, sizeof(float) * V * (size_t)np) != 0) fail_msg("prefill logits differ raw vs lossless");
    int32_t tok = 0;
    for (size_t j = 1; j < V; j++) tok = a[(size_t)(np - 1) * V + j] > a[(size_t)(np - 1) * V + tok] ? (int32_t)j : tok;
    for (int32_t i = 0; i < ng; i++) {
        assert_int_equal(vz_session_eval(sr, &tok, 1, a, 0), VZ_OK);
        assert_int_equal(vz_session_eval(sl, &tok, 1, b, 0), VZ_OK);
        if (memcmp(a, b, sizeof(float) * V) != 0) fail_msg("logits differ at step %d after the prefill", i);
        int32_t nt = 0;
        for (size_t j = 1; j < V; j++) nt = a[j] > a[nt] ? (int32_t)j : nt;
        tok = nt;
    }
    print_message("prefill of %d tokens + %d steps: logits byte-identical raw vs lossless\n", np, ng);
    free(toks), free(a), free(b);
    vz_session_free(sr);
    vz_session_free(sl);
    vz_model_close(mr);
    vz_model_close(ml);
}

/* All logits of a prefill of np tokens of path on a session made with
 * VZ_CUDA_GEMM_PIPE = pipe (NULL: unset; the flags are read at create). */
static float *prefill_logits(const char *path, const char *pipe, int32_t np, int32_t n_ctx, size_t *V) {
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    *V = (size_t)info.vocab_size;
    if (pipe) setenv("VZ_CUDA_GEMM_PIPE", pipe, 1);
    vz_session *s = vz_test_open_session(m, VZ_DEVICE_CUDA, VZ_KV_F16, n_ctx);
    unsetenv("VZ_CUDA_GEMM_PIPE");
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)np);
    float *a = malloc(sizeof(float) * *V * (size_t)np);
    assert_true(toks && a);
    uint64_t rs = 99;
    toks[0] = info.bos_id >= 0 ? info.bos_id : 1;
    for (int32_t i = 1; i < np; i++) toks[i] = (int32_t)(vz_test_rand(&rs) % *V);
    for (size_t i = 0; i < *V * (size_t)np; i++) a[i] = NAN;
    assert_int_equal(vz_session_eval(s, toks, np, a, 1), VZ_OK);
    free(toks);
    vz_session_free(s);
    vz_model_close(m);
    return a;
}

/* The prefill's GEMMs with the weights decoded ahead on the second stream
 * and raw bf16 read in place (pipe a) against the same chunks decoded
 * serially through the scratch (pipe b, VZ_CUDA_GEMM_PIPE): byte-identical
 * logits. */
static void compare_pipe(const char *path, const char *pa, const char *pb, int32_t np, int32_t n_ctx) {
    size_t V;
    float *a = prefill_logits(path, pa, np, n_ctx, &V), *b = prefill_logits(path, pb, np, n_ctx, &V);
    if (memcmp(a, b, sizeof(float) * V * (size_t)np) != 0)
        fail_msg("%s: prefill with VZ_CUDA_GEMM_PIPE=%s differs from %s", path, pa ? pa : "0", pb);
    print_message("%s: prefill of %d tokens, VZ_CUDA_GEMM_PIPE=%s vs %s: logits byte-identical\n", path, (int)np,
                  pa ? pa : "0", pb);
    free(a), free(b);
}

static void test_prefill_bitexact_stories260k(void **state) {
    (void)state;
    char path[1024], dir[512], raw[600], ll[600];
    VZ_REQUIRE_MODEL(path, S260K);
    if (!vz_test_have_gpu()) skip();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(raw, sizeof raw, "%s/raw.vz", dir);
    snprintf(ll, sizeof ll, "%s/ll.vz", dir);
    vz_test_convert(path, NULL, "raw", raw);
    vz_test_convert(path, NULL, "lossless", ll);
    compare_prefill_bitwise(raw, ll, 200, 40, 256);
    setenv("VZ_CUDA_PREFILL", "B", 1); /* the fused GEMM (path B): raw == lossless too */
    compare_prefill_bitwise(raw, ll, 200, 40, 256);
    unsetenv("VZ_CUDA_PREFILL");
    compare_pipe(ll, NULL, "3", 200, 256); /* decode ahead vs serial */
    compare_pipe(ll, "4", "7", 200, 256);  /* halves: overlapped vs serial */
    vz_test_rmtree(dir);
}

static void test_prefill_bitexact_tinyllama(void **state) {
    (void)state;
    const char *raw = getenv("VZ_TINYLLAMA_RAW"), *ll = getenv("VZ_TINYLLAMA_LOSSLESS");
    if (!raw || !ll) {
        print_message("SKIP: set VZ_TINYLLAMA_RAW and VZ_TINYLLAMA_LOSSLESS (bench/gpu_final.sh does)\n");
        skip();
    }
    if (!vz_test_have_gpu()) skip();
    compare_prefill_bitwise(raw, ll, 512, 32, 640);
    setenv("VZ_CUDA_PREFILL", "B", 1);
    compare_prefill_bitwise(raw, ll, 512, 32, 640);
    unsetenv("VZ_CUDA_PREFILL");
    compare_pipe(raw, NULL, "3", 512, 640); /* raw bf16 GEMMs read the weights in place */
    compare_pipe(ll, NULL, "3", 512, 640);
    compare_pipe(ll, "4", "7", 512, 640);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_codecs),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_norm_silu),
        cmocka_unit_test(test_prefill_vs_cpu),
        cmocka_unit_test(test_prefill_bitexact_stories260k),
        cmocka_unit_test(test_prefill_bitexact_tinyllama),
    };
    vz_test_filter_from_env(); /* e.g. VZ_TEST_ONLY=*tinyllama (bench/gpu_final.sh) */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
