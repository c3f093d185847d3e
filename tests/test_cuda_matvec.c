/*
 * test_cuda_matvec.c - the CUDA fused decode+matvec (src/backend/cuda/
 * matvec.cu) against the CPU reference: each codec's encode() produces the
 * tensor, its decode_ref() gives the weights, a double-precision sum gives
 * y (q4 with g32, g128, g64 asymmetric and one scale per row). Also
 * bitwise checks: lossless == raw, generic path == fast path,
 * multi-tensor launches == single ones, every kernel variant and dependent
 * chains (programmatic dependent launch) bitwise equal. Skips without a GPU
 * or CUDA build.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gpu.h"
#include "common/testutil.h"

#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "codec/bits.h"
#include "codec/codec.h"
#include "core/half.h"

#define REQUIRE_GPU()                                                          \
    do {                                                                       \
        if (vz_cuda_device_count() == 0) {                                     \
            print_message("SKIP: no CUDA device (vz_cuda_device_count() == 0)\n"); \
            skip();                                                            \
        }                                                                      \
    } while (0)

/* A trained-like matrix: Student-t (5 dof) times 0.02, as f32 values. */
static float *rand_weights(int64_t n, uint64_t seed) {
    float *w = malloc((size_t)n * sizeof *w);
    assert_non_null(w);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        double chi = 0;
        for (int j = 0; j < 5; j++) { double z = vz_test_randn(&s); chi += z * z; }
        w[i] = (float)(0.02 * vz_test_randn(&s) / sqrt(chi / 5));
    }
    return w;
}

/* Source bytes of dtype d from f32 values (rounded). */
static void *to_dtype(const float *w, int64_t n, vz_dtype d) {
    void *p = malloc((size_t)n * (size_t)vz_dtype_size(d));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) {
        if (d == VZ_DTYPE_F32) ((float *)p)[i] = w[i];
        else if (d == VZ_DTYPE_BF16) ((uint16_t *)p)[i] = vz_f32_to_bf16(w[i]);
        else ((uint16_t *)p)[i] = vz_f32_to_f16(w[i]);
    }
    return p;
}

typedef struct enc {
    vz_blob blob;
    vz_tensor t;
    vz_cuda_tensor d;
    double *w; /* decode_ref weights as doubles */
} enc;

/* e->blob and e->t: src encoded with opts o (group, level; NULL: the
 * codec's defaults), nothing uploaded. */
static const vz_codec *enc_tensor(enc *e, const char *codec, const vz_codec_opts *o, const void *src, vz_dtype d,
                                  int64_t rows, int64_t cols) {
    const vz_codec *c = vz_codec_by_name(codec);
    assert_non_null(c);
    memset(e, 0, sizeof *e);
    vz_codec_opts o0 = {0, 0, 0};
    if (!o) o = &o0;
    assert_int_equal(c->encode(src, d, rows, cols, o, &e->blob), VZ_OK);
    vz_tensor *t = &e->t;
    snprintf(t->name, sizeof t->name, "%s(g%d,l%d,k%d).%lldx%lld", codec, o->group, o->level, o->code, (long long)rows,
             (long long)cols);
    t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
    t->dtype = d, t->codec = c->id, t->data = e->blob.data, t->size = e->blob.size;
    t->params = e->blob.params, t->params_size = e->blob.params_size;
    return c;
}

/* Encodes with opts o (as enc_tensor) and uploads. */
static void enc_make_o(enc *e, const char *codec, const vz_codec_opts *o, const void *src, vz_dtype d, int64_t rows,
                       int64_t cols) {
    const vz_codec *c = enc_tensor(e, codec, o, src, d, rows, cols);
    vz_tensor *t = &e->t;
    assert_int_equal(vz_cuda_tensor_upload(&e->d, t, NULL), VZ_OK);
    int64_t n = rows * cols;
    size_t es = c->lossless ? (size_t)vz_dtype_size(d) : 4;
    uint8_t *raw = malloc((size_t)n * es);
    e->w = malloc((size_t)n * sizeof *e->w);
    assert_true(raw && e->w);
    assert_int_equal(c->decode_ref(t, 0, rows, raw), VZ_OK);
    for (int64_t i = 0; i < n; i++) {
        if (!c->lossless || d == VZ_DTYPE_F32) { float f; memcpy(&f, raw + 4 * i, 4); e->w[i] = f; }
        else {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            e->w[i] = d == VZ_DTYPE_BF16 ? vz_bf16_to_f32(h) : vz_f16_to_f32(h);
        }
    }
    free(raw);
}

static void enc_make(enc *e, const char *codec, const void *src, vz_dtype d, int64_t rows, int64_t cols) {
    enc_make_o(e, codec, NULL, src, d, rows, cols);
}

static void enc_free(enc *e) {
    vz_cuda_tensor_free(&e->d);
    vz_blob_free(&e->blob);
    free(e->w);
}

/* Kernel variants (cuda.h): every one must give the same bits (at batch
 * 1, and at batches 2 and 8 in the wide kernel, v4 runs single rows for
 * the shapes of up to ~3000 rows, with PAIRS row pairs; OCC_ALT runs the
 * other occupancy's kernels: 2 blocks per SM for small raw, lossless and
 * q8 launches, 3 for the others; where v4 would
 * run 2 blocks per SM, raw, q4 and long lossless launches run one block of
 * 16 warps instead, as do batches 2-8: matvec.cu's MV4_WIDE). */
static const int variants[] = {VZ_CUDA_MV_V4, VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, 0,
                               VZ_CUDA_MV_LEGACY | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_LEGACY, VZ_CUDA_MV_NO_PDL,
                               VZ_CUDA_MV_OCC4, VZ_CUDA_MV_V4 | VZ_CUDA_MV_PAIRS, VZ_CUDA_MV_V4 | VZ_CUDA_MV_OCC_ALT};

/* Runs the GPU matvec (output poisoned with NaN first) with every kernel
 * variant, checks they agree bitwise, and returns y on the host. */
static float *gpu_mv(const enc *e, const float *dx, int batch) {
    size_t ny = (size_t)batch * (size_t)e->t.rows;
    float *dy = vz_cuda_alloc(ny * 4), *y = malloc(ny * 4), *yv = malloc(ny * 4);
    assert_true(dy && y && yv);
    int old = vz_cuda_matvec_variant(-1);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        vz_cuda_matvec_variant(variants[v]);
        assert_int_equal(vz_cuda_fill_f32(dy, NAN, ny), VZ_OK);
        if (vz_cuda_matvec(dy, dx, batch, &e->d, NULL) != VZ_OK || vz_cuda_sync() != VZ_OK)
            fail_msg("%s batch %d variant %d: %s", e->t.name, batch, variants[v], vz_last_error());
        assert_int_equal(vz_cuda_copy(v == 0 ? y : yv, dy, ny * 4, 1), VZ_OK);
        if (v > 0 && memcmp(y, yv, ny * 4) != 0)
            fail_msg("%s batch %d: kernel variant %d != default bitwise", e->t.name, batch, variants[v]);
    }
    vz_cuda_matvec_variant(old);
    vz_cuda_release(dy);
    free(yv);
    return y;
}

/* Back-to-back dependent matvecs (y_{i+1} = W_i y_i, no sync between, so
 * programmatic dependent launch overlaps them) equal the same chain run
 * with a sync after each launch, bitwise; raw and lossless chains agree. */
static void test_matvec_chain(void **state) {
    (void)state;
    REQUIRE_GPU();
    const char *codecs[] = {"raw", "lossless"};
    const int64_t n = 2048;
    enc e[2][3], et[2][3]; /* et: uploaded with VZ_CUDA_MV_TC (tensor-core kernel) */
    int old0 = vz_cuda_matvec_variant(-1);
    for (int i = 0; i < 3; i++) {
        float *wf = rand_weights(n * n, 70 + i);
        for (int64_t j = 0; j < n * n; j++) wf[j] *= 2.0f;
        void *src = to_dtype(wf, n * n, VZ_DTYPE_BF16);
        for (int ci = 0; ci < 2; ci++) {
            vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
            enc_make(&e[ci][i], codecs[ci], src, VZ_DTYPE_BF16, n, n);
            vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC);
            enc_make(&et[ci][i], codecs[ci], src, VZ_DTYPE_BF16, n, n);
        }
        free(wf), free(src);
    }
    vz_cuda_matvec_variant(old0);
    float *x = rand_weights(n, 3), *got[2][2];
    float *buf[7];
    int old = vz_cuda_matvec_variant(-1);
    for (int i = 0; i < 7; i++) buf[i] = vz_cuda_alloc(n * 4);
    const int chain_var[6] = {VZ_CUDA_MV_V4, 0, VZ_CUDA_MV_LEGACY, VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC,
                              VZ_CUDA_MV_V4 | VZ_CUDA_MV_PAIRS, VZ_CUDA_MV_V4 | VZ_CUDA_MV_OCC_ALT};
    for (int var = 0; var < (int)(sizeof chain_var / sizeof chain_var[0]); var++)
    for (int ci = 0; ci < 2; ci++)
        for (int synced = 0; synced < 2; synced++) {
            vz_cuda_matvec_variant(chain_var[var]);
            assert_int_equal(vz_cuda_copy(buf[0], x, n * 4, 0), VZ_OK);
            for (int i = 1; i < 7; i++) assert_int_equal(vz_cuda_fill_f32(buf[i], NAN, n), VZ_OK);
            for (int i = 0; i < 6; i++) {
                assert_int_equal(vz_cuda_matvec(buf[i + 1], buf[i], 1, var == 3 ? &et[ci][i % 3].d : &e[ci][i % 3].d, NULL),
                                 VZ_OK);
                if (synced) assert_int_equal(vz_cuda_sync(), VZ_OK);
            }
            assert_int_equal(vz_cuda_sync(), VZ_OK);
            if (var) free(got[ci][synced]);
            got[ci][synced] = malloc(n * 4);
            assert_int_equal(vz_cuda_copy(got[ci][synced], buf[6], n * 4, 1), VZ_OK);
            for (int64_t j = 0; j < n; j++)
                if (!isfinite(got[ci][synced][j])) fail_msg("%s chain: y[%lld] not finite", codecs[ci], (long long)j);
            if (ci == 1 && synced == 1) {
                if (memcmp(got[0][0], got[0][1], n * 4) != 0) fail_msg("raw chain (variant %d): overlapped != synced", var);
                if (memcmp(got[1][0], got[1][1], n * 4) != 0) fail_msg("lossless chain (variant %d): overlapped != synced", var);
                if (memcmp(got[0][0], got[1][0], n * 4) != 0) fail_msg("chain (variant %d): lossless != raw bitwise", var);
            }
        }
    vz_cuda_matvec_variant(old);
    assert_true(et[1][0].d.tc && et[1][0].d.tiled && !e[1][0].d.tc && !e[1][0].d.tiled);
    for (int ci = 0; ci < 2; ci++)
        for (int i = 0; i < 3; i++) enc_free(&e[ci][i]), enc_free(&et[ci][i]);
    for (int i = 0; i < 7; i++) vz_cuda_release(buf[i]);
    for (int ci = 0; ci < 2; ci++) free(got[ci][0]), free(got[ci][1]);
    free(x);
}

/* The error bound of the path W took, in units of 2^-24 * sum|w*x|.
 * fmaf kernels: L = 32 * ceil(cols / 1024) fmaf in one lane's chain plus 5
 * butterfly adds, each rounding at most 2^-24 relative to a partial sum
 * bounded by sum|w*x| (first-order): L + 8. q8/q4 (matvec.cu: a lane's
 * group of 32 summed over the codes from 0, then acc = fmaf(scale, sum,
 * acc)): a group's 32 fmaf err relative to its own part of sum|w*x| (the
 * scale multiplies exactly inside the fmaf), so all groups together at most
 * 32 units; the G = ceil(cols / 1024) folds into acc and the 5 butterfly
 * adds one unit each: 32 + G + 8. Tensor-core kernel (tc): x =
 * hi + lo + lo2 exactly and bf16 products are exact, so only additions err:
 * one mma adds 16 products to the accumulator aligned to the largest
 * magnitude with truncation (the behaviour measured for NVIDIA tensor cores
 * by Fasi et al., "Numerical behavior of NVIDIA tensor cores", 2021), at
 * most 17 truncations of 2^-23 plus a truncating normalization, so 36 units
 * per mma; a warp chains N = 8 * ceil(cols / 1024) mma, then 7 f32 adds
 * join the 8 warps and 2 the pieces: 37 N + 12 (the 37 covers the lo, lo2
 * chains, 2^-8 and 2^-16 smaller). q8 and q4 by integer dot products
 * (dp, mv4.cuh): see err_dp. */
static double err_units(const enc *e) {
    int64_t cols = e->t.cols;
    if (e->d.tc) return 37.0 * 8 * (double)((cols / 128 + 7) / 8) + 12;
    if (e->d.codec == VZ_CODEC_q8 || e->d.codec == VZ_CODEC_q4) return 32.0 + (double)((cols + 1023) / 1024) + 8;
    return 32.0 * (double)((cols + 1023) / 1024) + 8;
}

static double worst_tc = 0; /* largest |y - ref| / (2^-24 sum|w*x|) seen on the tc path */

/* The bound of a dp tensor's output (mv4.cuh, q8 and q4 by integer dot products)
 * over row w of cols weights and input x: each x is rounded to a multiple of
 * 2^(e-22), where max |x| over its 32-element group is in [2^(e-1), 2^e),
 * so by at most 2^-22 max|x| of the group (m below; e >= -100 keeps it at
 * least 2^-123): that adds sum over groups of 2^-22 m sum|w| of the group
 * (a first term) and makes the products sum|w x'| <= sum|w| (|x| + 2^-22 m)
 * (A). The group's sum over codes and digits is exact in integers; it
 * becomes f32 in two roundings ((float)t and the fmaf with 2^16 a2), each
 * at most 2^-24 relative to |t| or the group's part of A (|d0 + 2^8 d1| <=
 * |X| while d2 == 0, and <= 32896 <= 1.008 |X| otherwise, so |t| <= 1.008
 * times that part): under 3 units. Then, as in the fmaf kernels, the
 * scale multiplies exactly inside the fmaf that joins the group into a
 * lane's acc (G = ceil(cols / 1024) per lane, one rounding each) and the 5
 * butterfly adds one each: first term + (3 + G + 8) 2^-24 A. */
static double err_dp(const double *w, const float *x, int64_t cols) {
    double xr = 0, A = 0;
    for (int64_t g = 0; g < cols; g += 32) {
        double m = 0, aw = 0, ax = 0;
        for (int64_t c = g; c < g + 32 && c < cols; c++) m = fmax(m, fabs((double)x[c]));
        m = fmax(m, ldexp(1.0, -101));
        for (int64_t c = g; c < g + 32 && c < cols; c++)
            aw += fabs(w[c]), ax += fabs(w[c]) * (fabs((double)x[c]) + ldexp(m, -22));
        xr += ldexp(m, -22) * aw, A += ax;
    }
    return xr + (3.0 + (double)((cols + 1023) / 1024) + 8) * ldexp(A, -24);
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The dot-product kernels' output bits (mv4.cuh: mv4_digits, then mv4_dp
 * in the kernels' group and butterfly order), computed here from the blob
 * as docs/codecs.md lays it out: per 32-element group of x, e with its max
 * |x| in [2^(e-1), 2^e) (e >= -100), X = rint(x 2^(22-e)) and its balanced
 * digits (bytes of X + 0x808080, each less 128); the exact sums t = sum q
 * (d0 + 2^8 d1), a2 = sum q d2 over the signed codes q (code less zero
 * point); f = fmaf(2^16, a2, (float)t); lane g % 32's acc = fmaf(s, f,
 * acc), s = the group's scale times 2^(e-22) in f32, over its groups in
 * order; then acc += the acc of lane ^ o for o = 16 ... 1, lane 0's. A
 * group with a non-finite x gives NaN. */
static float dp_model(const enc *e, int64_t r, const float *x) {
    const int64_t rows = e->t.rows, cols = e->t.cols, qg = e->d.group, sgpr = (cols + qg - 1) / qg;
    const int q4 = e->d.codec == VZ_CODEC_q4;
    const uint8_t *p = e->blob.data;
    const uint64_t stride = q4 ? (uint64_t)(cols + 1) / 2 : (uint64_t)cols, scales = vz_al16((uint64_t)rows * stride),
                   zeros = vz_al16(scales + (uint64_t)rows * sgpr * 2);
    float acc[32] = {0};
    for (int64_t g = 0; g < cols / 32; g++) {
        const float *xg = x + 32 * g;
        float mx = 0;
        int fin = 1;
        for (int j = 0; j < 32; j++)
            if (!isfinite(xg[j])) fin = 0;
            else mx = fmaxf(mx, fabsf(xg[j]));
        const uint32_t mb = f32_bits(mx);
        const int ex = (int)(mb >> 23) - 126 < -100 ? -100 : (int)(mb >> 23) - 126;
        const int64_t gi = r * sgpr + 32 * g / qg;
        int64_t t = 0, a2 = 0;
        for (int j = 0; j < 32 && fin; j++) {
            const int64_t c = 32 * g + j, X = (int64_t)nearbyint(ldexp((double)xg[j], 22 - ex)), y = X + 0x808080;
            const int64_t d0 = (y & 255) - 128, d1 = (y >> 8 & 255) - 128, d2 = (y >> 16 & 255) - 128;
            const int64_t q = q4 ? (int64_t)(p[r * stride + c / 2] >> 4 * (c & 1) & 15) - (e->d.layout == 1 ? p[zeros + gi] : 8)
                                 : (int64_t)(int8_t)p[r * stride + c];
            t += q * (d0 + 256 * d1), a2 += q * d2;
        }
        uint16_t h;
        memcpy(&h, p + scales + 2 * gi, 2);
        const float sc = fin ? ldexpf(1.0f, ex - 22) : NAN, ss = vz_f16_to_f32(h) * sc;
        acc[g % 32] = fmaf(ss, fmaf(65536.0f, (float)a2, (float)t), acc[g % 32]);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float n[32];
        for (int l = 0; l < 32; l++) n[l] = acc[l] + acc[l ^ o];
        memcpy(acc, n, sizeof acc);
    }
    return acc[0];
}

/* |y - ref| <= err_units * 2^-24 * sum|w*x| for every output (dp: err_dp),
 * and a dp tensor's outputs bitwise equal to dp_model's. */
static void check_ref(const enc *e, const float *x, const float *y, int batch) {
    int64_t rows = e->t.rows, cols = e->t.cols;
    const double units = err_units(e);
    for (int b = 0; b < batch; b++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0, a = 0;
            for (int64_t c = 0; c < cols; c++) {
                double p = e->w[r * cols + c] * (double)x[b * cols + c];
                s += p, a += fabs(p);
            }
            double got = y[b * rows + r];
            double tol = (e->d.dp ? err_dp(e->w + r * cols, x + b * cols, cols) : units * ldexp(a, -24)) + 1e-38;
            if (e->d.tc && a > 0 && fabs(got - s) / ldexp(a, -24) > worst_tc) worst_tc = fabs(got - s) / ldexp(a, -24);
            if (!(fabs(got - s) <= tol))
                fail_msg("%s batch %d: y[%d][%lld] = %.9g, reference %.9g (tol %.3g, %s path)", e->t.name, batch, b,
                         (long long)r, got, s, tol, e->d.tc ? "tc" : e->d.dp ? "dp" : "fmaf");
            const float m = e->d.dp ? dp_model(e, r, x + b * cols) : 0.0f;
            if (e->d.dp && memcmp(&m, y + b * rows + r, 4) != 0)
                fail_msg("%s batch %d: y[%d][%lld] = %.9g, dp_model %.9g (bits %08x, %08x)", e->t.name, batch, b,
                         (long long)r, got, (double)m, f32_bits(y[b * rows + r]), f32_bits(m));
        }
}

static float *upload_x(const float *x, size_t n, int misalign) {
    float *dx = vz_cuda_alloc((n + 4) * 4);
    assert_non_null(dx);
    assert_int_equal(vz_cuda_copy(dx + misalign, x, n * 4, 0), VZ_OK);
    return dx;
}

/* TinyLlama shapes, then odd ones: v4 with one unit's second row missing
 * (odd rows), a partly idle last group iteration (gpr 33), 4 exception
 * blocks per row, batch 8 x 4096 beyond v4's staged x (fallback kernel);
 * then generic-only shapes (cols % 32 != 0). */
static const int64_t shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {3, 32}, {33, 64},
                                    {9, 1056},    {101, 4096}, {1, 1},       {7, 33},      {64, 172}, {5, 1025}};
static const int batches[] = {1, 2, 8};

/* Codecs under test: raw and lossless (packed3, then packed4: k4) first,
 * each lossless one bitwise equal to raw, then the lossy ones with their
 * options: q4 default (g32, searched), g128, asymmetric g64, one scale per
 * row (group = cols: rows shorter than a group, generic path when cols %
 * 32 != 0). */
#define NLOSSLESS 3
static const struct { const char *name; vz_codec_opts o; } codecs_t[] = {
    {"raw", {0, 0, 0}}, {"lossless", {0, 0, 0}}, {"lossless", {0, 0, 4}}, {"q8", {0, 0, 0}}, {"q4", {0, 0, 0}},
    {"q4", {128, 1, 0}}, {"q4", {64, 3, 0}}, {"q4", {-1, 2, 0}}};
#define NCODEC ((int)(sizeof codecs_t / sizeof codecs_t[0]))

/* Every codec on bf16 (and raw/lossless on f16, f32 for the small shapes):
 * GPU vs reference; lossless vs raw bitwise; generic path vs fast bitwise.
 * Then the tensor-core kernel where the shape fits it, and the q8 and q4
 * codecs uploaded with VZ_CUDA_MV_DP: the integer dot-product kernel on
 * every q8 and q4 tensor of the fast path (by default only rows of
 * VZ_CUDA_DP_MIN_COLS or more, here 101 x 4096, and tensors of
 * VZ_CUDA_DP_MIN_ROWS rows or more, here 5632 x 2048, take it), within err_dp,
 * the same bits at every batch and variant, x 16-byte aligned or not. */
static void test_matvec_codecs(void **state) {
    (void)state;
    REQUIRE_GPU();
    int old = vz_cuda_matvec_variant(-1);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1], n = rows * cols;
        float *wf = rand_weights(n, 1000 + si);
        for (int64_t i = 1234; i < n; i += 4099) wf[i] = i % 3 ? 0.0f : -1e-20f; /* exceptions of k = 3 and 4 */
        for (int mode = 0; mode < 3; mode++) { /* default kernels; tensor-core kernel where the shape fits; dp on all q8, q4 */
        const int tc = mode == 1, dpall = mode == 2;
        if (tc && (rows % 8 || cols % 128)) continue;
        vz_cuda_matvec_variant(tc ? VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC : dpall ? VZ_CUDA_MV_V4 | VZ_CUDA_MV_DP : VZ_CUDA_MV_V4);
        for (int d = 0; d < 3; d++) {
            if (dpall && d > 0) continue;
            vz_dtype dt = d == 0 ? VZ_DTYPE_BF16 : d == 1 ? VZ_DTYPE_F16 : VZ_DTYPE_F32;
            if (dt != VZ_DTYPE_BF16 && n > 256 * 2048) continue;
            void *src = to_dtype(wf, n, dt);
            enc e[NCODEC];
            int have[NCODEC] = {0};
            for (int ci = 0; ci < NCODEC; ci++) {
                const vz_codec *c = vz_codec_by_name(codecs_t[ci].name);
                if (!c || (ci >= NLOSSLESS && dt != VZ_DTYPE_BF16) || !c->supports(dt, rows, cols)) continue;
                if (dpall && strcmp(codecs_t[ci].name, "q4") != 0 && strcmp(codecs_t[ci].name, "q8") != 0) continue;
                enc_make_o(&e[ci], codecs_t[ci].name, &codecs_t[ci].o, src, dt, rows, cols);
                have[ci] = 1;
                const int fastq = (e[ci].d.codec == VZ_CODEC_q4 || e[ci].d.codec == VZ_CODEC_q8) && cols % 32 == 0 &&
                                  e[ci].d.group % 32 == 0;
                if (e[ci].d.dp != (fastq && (dpall || cols >= VZ_CUDA_DP_MIN_COLS || rows >= VZ_CUDA_DP_MIN_ROWS)))
                    fail_msg("%s %lldx%lld: dp %d", e[ci].t.name, (long long)rows, (long long)cols, e[ci].d.dp);
                if (ci >= 1 && ci < NLOSSLESS) { /* the fast lossless kinds where they apply, else generic */
                    const int want = dt != VZ_DTYPE_BF16 || cols % 32 ? VZ_CUDA_KIND_GENERIC
                                     : ci == 1                        ? VZ_CUDA_KIND_LL3
                                                                      : VZ_CUDA_KIND_LL4;
                    if (e[ci].d.kind != want)
                        fail_msg("lossless %d %s %lldx%lld: kind %d, want %d", ci, vz_dtype_name(dt), (long long)rows,
                                 (long long)cols, e[ci].d.kind, want);
                }
            }
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                int batch = batches[bi];
                float *x = rand_weights((int64_t)batch * cols, 7 + bi);
                for (int64_t i = 0; i < batch * cols; i++) x[i] *= 50.0f;
                float *dx = upload_x(x, (size_t)batch * cols, 0), *dxu = upload_x(x, (size_t)batch * cols, 1);
                float *yr = NULL;
                for (int ci = 0; ci < NCODEC; ci++) {
                    if (!have[ci]) continue;
                    float *y = gpu_mv(&e[ci], dx, batch), *yg = gpu_mv(&e[ci], dxu + 1, batch);
                    check_ref(&e[ci], x, y, batch);
                    for (int b = 1; b < batch && b < 3; b++) { /* an input's result does not depend on the batch */
                        float *y1 = gpu_mv(&e[ci], dx + b * cols, 1);
                        if (memcmp(y1, y + b * rows, (size_t)rows * 4) != 0)
                            fail_msg("%s batch %d: input %d != the same input alone", e[ci].t.name, batch, b);
                        free(y1);
                    }
                    size_t ny = (size_t)batch * rows * 4;
                    if (memcmp(y, yg, ny) != 0) fail_msg("%s batch %d: generic path != fast path", e[ci].t.name, batch);
                    if (ci == 0) yr = y;
                    else if (ci < NLOSSLESS && memcmp(y, yr, ny) != 0)
                        fail_msg("%s batch %d: lossless != raw bitwise", e[ci].t.name, batch);
                    if (y != yr) free(y);
                    free(yg);
                }
                free(yr);
                vz_cuda_release(dx);
                vz_cuda_release(dxu);
                free(x);
            }
            for (int ci = 0; ci < NCODEC; ci++)
                if (have[ci]) enc_free(&e[ci]);
            free(src);
        }
        }
        free(wf);
    }
    vz_cuda_matvec_variant(old);
    print_message("tc path: largest |y - ref| = %.1f x 2^-24 sum|w*x|\n", worst_tc);
}

/* The dp flags at upload (cuda.h) choose the kernel: a q4 or q8 tensor of
 * 4096 columns takes the integer dot-product kernel by default and the fmaf
 * one with VZ_CUDA_MV_NO_DP, one of 2048 columns the reverse with VZ_CUDA_MV_DP;
 * their outputs differ somewhere (the kernels round differently; equal
 * outputs would mean the flag chose nothing), each within its bound. (The
 * fused norm, SiLU and multi-tensor launches of dp tensors: test_matvec_norm
 * and test_matvec_multi, whose q4 rows of 4096 and more columns take it.) */
static void test_matvec_dp_choice(void **state) {
    (void)state;
    REQUIRE_GPU();
    int old = vz_cuda_matvec_variant(-1);
    static const int64_t colsv[2] = {4096, 2048};
    for (int ic = 0; ic < 4; ic++) {
        const int i = ic & 1;
        const char *codec = ic < 2 ? "q4" : "q8";
        const int64_t rows = 256, cols = colsv[i], n = rows * cols;
        float *wf = rand_weights(n, 40 + i), *x = rand_weights(cols, 41 + i);
        for (int64_t j = 0; j < cols; j++) x[j] *= 30.0f;
        void *src = to_dtype(wf, n, VZ_DTYPE_BF16);
        enc e[2]; /* e[0]: default upload; e[1]: the other kernel */
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
        enc_make(&e[0], codec, src, VZ_DTYPE_BF16, rows, cols);
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | (i == 0 ? VZ_CUDA_MV_NO_DP : VZ_CUDA_MV_DP));
        enc_make(&e[1], codec, src, VZ_DTYPE_BF16, rows, cols);
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
        assert_int_equal(e[0].d.dp, i == 0);
        assert_int_equal(e[1].d.dp, i != 0);
        float *dx = upload_x(x, (size_t)cols, 0), *y[2];
        for (int k = 0; k < 2; k++) {
            y[k] = gpu_mv(&e[k], dx, 1);
            check_ref(&e[k], x, y[k], 1);
        }
        int differ = 0;
        for (int64_t r = 0; r < rows; r++) differ += y[0][r] != y[1][r];
        if (!differ)
            fail_msg("%s, %lld columns: dp and fmaf kernels gave the same %lld outputs", codec, (long long)cols, (long long)rows);
        print_message("%s %lldx%lld: dp and fmaf kernels differ in %d of %lld outputs, both within their bounds\n", codec,
                      (long long)rows, (long long)cols, differ, (long long)rows);
        vz_cuda_release(dx);
        free(y[0]), free(y[1]), free(wf), free(x), free(src);
        enc_free(&e[0]), enc_free(&e[1]);
    }
    vz_cuda_matvec_variant(old);
}

/* Lossless blocks with more than 64 exceptions (v2's staged first 32 plus
 * its slow loop) and rows of more than 32 exception blocks (bpr >= 32: the
 * exception index loaded, not shuffled): every variant == raw bitwise and
 * the reference holds. The third shape runs the v4 kernel with 88 KiB of x
 * per block: with the lossless scratch, two blocks per SM need more than
 * the decode step's shared memory at batch 1 (vz_decode_carveout raises it
 * for that launch); at batch 2 (176 KiB of x) it runs the wide v4 kernel
 * (MV4_WIDE). */
static void test_matvec_dense_exceptions(void **state) {
    (void)state;
    REQUIRE_GPU();
    for (int shp = 0; shp < 3; shp++) { /* fmaf path; tc path (tiled exceptions, > 32 per tile); v4, wide x */
    const int64_t rows = shp ? 16 : 5, cols = shp == 0 ? 33 * 1024 : shp == 1 ? 24 * 1024 : 22 * 1024, n = rows * cols;
    float *wf = rand_weights(n, 4242);
    for (int64_t i = 0; i < n; i++) /* rows 1, 3: every 3rd element of blocks 0..1 far outside the lut */
        if ((i / cols) % 2 == 1 && i % cols < 2048 && i % 3 == 0) wf[i] = ldexpf(i % 2 ? 1.5f : -1.25f, -60 + (int)(i % 50));
    void *src = to_dtype(wf, n, VZ_DTYPE_BF16);
    enc e[2];
    int old = vz_cuda_matvec_variant(shp == 1 ? VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC : VZ_CUDA_MV_V4);
    enc_make(&e[0], "raw", src, VZ_DTYPE_BF16, rows, cols);
    enc_make(&e[1], "lossless", src, VZ_DTYPE_BF16, rows, cols);
    vz_cuda_matvec_variant(old);
    for (int batch = 1; batch <= 2; batch++) {
        float *x = rand_weights((int64_t)batch * cols, 99 + batch);
        float *dx = upload_x(x, (size_t)batch * cols, 0);
        float *yr = gpu_mv(&e[0], dx, batch), *yl = gpu_mv(&e[1], dx, batch);
        check_ref(&e[1], x, yl, batch);
        if (memcmp(yr, yl, (size_t)batch * rows * 4) != 0) fail_msg("dense exceptions batch %d: lossless != raw", batch);
        free(yr), free(yl), free(x);
        vz_cuda_release(dx);
    }
    assert_int_equal(e[1].d.tc, shp == 1);
    enc_free(&e[0]), enc_free(&e[1]);
    free(src), free(wf);
    }
}

/* A gate + up launch's output h equals silu(g) * u of the separate
 * matvecs' g and u within 2^-20 relative (device vs host expf). */
static void check_silu(const float *h, const float *g, const float *u, size_t n, const char *what) {
    for (size_t j = 0; j < n; j++) {
        const float want = g[j] / (1.0f + expf(-g[j])) * u[j];
        if (!(fabsf(h[j] - want) <= ldexpf(fabsf(want), -20) + 1e-38f))
            fail_msg("silu*mul %zu (%s): %.9g, want %.9g", j, what, h[j], want);
    }
}

/* QKV-style and gate+up launches equal separate matvecs (bitwise; the SiLU
 * epilogue within 2^-20 relative: device vs host expf). At 4096 columns a
 * batch of 8 does not fit the 2-blocks v4 kernel's staged x and runs the
 * wide one (MV4_WIDE); at 11008 it fits neither and runs as two wide
 * launches of 4 rows (MV4_BATCH_SPLIT); gpu_mv also compares both with the
 * other kernels. */
static void test_matvec_multi(void **state) {
    (void)state;
    REQUIRE_GPU();
    const char *codecs[] = {"raw", "lossless", "q4"};
    const int64_t rws[3] = {320, 64, 64};
    static const int64_t colsv[] = {2048, 4096, 11008};
    for (int iv = 0; iv < 3; iv++) {
    const int64_t cols = colsv[iv];
    const int mvar[5] = {VZ_CUDA_MV_V4, VZ_CUDA_MV_LEGACY | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC,
                         VZ_CUDA_MV_V4 | VZ_CUDA_MV_PAIRS, VZ_CUDA_MV_V4 | VZ_CUDA_MV_OCC_ALT};
    int old = vz_cuda_matvec_variant(-1);
    for (int vi = 0; vi < (int)(sizeof mvar / sizeof mvar[0]); vi++)
    for (int ci = 0; ci < 3; ci++)
        for (int batch = 1; batch <= 8; batch += 7) {
            enc e[3];
            float *dy[3], *ys[3];
            vz_cuda_matvec_variant(mvar[vi]); /* TC acts at upload */
            for (int i = 0; i < 3; i++) {
                float *wf = rand_weights(rws[i] * cols, 50 + i);
                void *src = to_dtype(wf, rws[i] * cols, VZ_DTYPE_BF16);
                enc_make(&e[i], codecs[ci], src, VZ_DTYPE_BF16, rws[i], cols);
                free(wf), free(src);
            }
            float *x = rand_weights(batch * cols, 99);
            float *dx = upload_x(x, (size_t)batch * cols, 0);
            for (int i = 0; i < 3; i++) {
                ys[i] = gpu_mv(&e[i], dx, batch);
                dy[i] = vz_cuda_alloc((size_t)batch * rws[i] * 4);
                assert_int_equal(vz_cuda_fill_f32(dy[i], NAN, (size_t)batch * rws[i]), VZ_OK);
            }
            const vz_cuda_tensor *W[3] = {&e[0].d, &e[1].d, &e[2].d};
            vz_cuda_matvec_variant(mvar[vi]);
            assert_int_equal(vz_cuda_matvec_multi(3, W, dy, dx, batch, VZ_CUDA_EPI_NONE, NULL), VZ_OK);
            for (int i = 0; i < 3; i++) {
                size_t ny = (size_t)batch * rws[i];
                float *y = malloc(ny * 4);
                assert_int_equal(vz_cuda_copy(y, dy[i], ny * 4, 1), VZ_OK);
                if (memcmp(y, ys[i], ny * 4) != 0) fail_msg("multi tensor %d (%s, variant %d) != single", i, codecs[ci], mvar[vi]);
                /* residual: y = y + W x on top of the result just read */
                assert_int_equal(vz_cuda_matvec_multi(1, &W[i], &dy[i], dx, batch, VZ_CUDA_EPI_ADD, NULL), VZ_OK);
                float *y2 = malloc(ny * 4);
                assert_int_equal(vz_cuda_copy(y2, dy[i], ny * 4, 1), VZ_OK);
                for (size_t j = 0; j < ny; j++)
                    if (y2[j] != y[j] + ys[i][j]) fail_msg("residual add %zu: %g != %g", j, y2[j], y[j] + ys[i][j]);
                free(y), free(y2);
            }
            assert_int_equal(vz_cuda_fill_f32(dy[1], NAN, (size_t)batch * rws[1]), VZ_OK);
            const vz_cuda_tensor *GU[2] = {&e[1].d, &e[2].d};
            float *dgu[2] = {dy[1], dy[2]};
            assert_int_equal(vz_cuda_matvec_multi(2, GU, dgu, dx, batch, VZ_CUDA_EPI_SILU_MUL, NULL), VZ_OK);
            size_t ny = (size_t)batch * rws[1];
            float *y = malloc(ny * 4);
            assert_int_equal(vz_cuda_copy(y, dy[1], ny * 4, 1), VZ_OK);
            char what[64];
            snprintf(what, sizeof what, "%s, variant %d", codecs[ci], mvar[vi]);
            check_silu(y, ys[1], ys[2], ny, what);
            free(y);
            for (int i = 0; i < 3; i++) enc_free(&e[i]), vz_cuda_release(dy[i]), free(ys[i]);
            vz_cuda_release(dx);
            free(x);
            vz_cuda_matvec_variant(old);
        }
    }
}

/* matvec.cu's MV4_FIT: a wide batch-1 launch of raw or packed4 weights
 * whose units 14 warps per block take in as many rounds as 16 runs blocks
 * of 14. 84 * SMs rows of 2048 columns are such a launch alone (42 * SMs
 * row pairs: 3 rounds either way) and as gate + up (84 * SMs units: 6), so
 * here every row's output is that kernel's: equal to the other kernel
 * variants' (gpu_mv, the legacy ones outside mv4_plan) bitwise and to the
 * reference within its bound, k4 equal to raw bitwise, gate + up to the
 * single launches' silu(g) * u. */
static void test_matvec_fit(void **state) {
    (void)state;
    REQUIRE_GPU();
    const int sms = vz_cuda_sm_count(0);
    assert_true(sms > 0);
    const int64_t rows = 84 * (int64_t)sms, cols = 2048;
    static const vz_codec_opts k4 = {0, 0, 4};
    float *x = rand_weights(cols, 7);
    float *dx = upload_x(x, (size_t)cols, 0);
    float *yr[2] = {NULL, NULL};
    for (int ci = 0; ci < 2; ci++) {
        enc e[2];
        float *y[2];
        for (int i = 0; i < 2; i++) {
            float *wf = rand_weights(rows * cols, 60 + i);
            void *src = to_dtype(wf, rows * cols, VZ_DTYPE_BF16);
            enc_make_o(&e[i], ci ? "lossless" : "raw", ci ? &k4 : NULL, src, VZ_DTYPE_BF16, rows, cols);
            free(wf), free(src);
            y[i] = gpu_mv(&e[i], dx, 1);
            check_ref(&e[i], x, y[i], 1);
        }
        if (ci == 0) yr[0] = y[0], yr[1] = y[1];
        else
            for (int i = 0; i < 2; i++)
                if (memcmp(y[i], yr[i], (size_t)rows * 4) != 0) fail_msg("fit: k4 tensor %d != raw bitwise", i);
        float *dg = vz_cuda_alloc((size_t)rows * 4), *du = vz_cuda_alloc((size_t)rows * 4);
        assert_true(dg && du);
        assert_int_equal(vz_cuda_fill_f32(dg, NAN, (size_t)rows), VZ_OK);
        const vz_cuda_tensor *GU[2] = {&e[0].d, &e[1].d};
        float *dgu[2] = {dg, du};
        assert_int_equal(vz_cuda_matvec_multi(2, GU, dgu, dx, 1, VZ_CUDA_EPI_SILU_MUL, NULL), VZ_OK);
        float *h = malloc((size_t)rows * 4);
        assert_non_null(h);
        assert_int_equal(vz_cuda_copy(h, dg, (size_t)rows * 4, 1), VZ_OK);
        check_silu(h, y[0], y[1], (size_t)rows, ci ? "fit, k4" : "fit, raw");
        free(h);
        vz_cuda_release(dg), vz_cuda_release(du);
        for (int i = 0; i < 2; i++) enc_free(&e[i]);
        if (ci) free(y[0]), free(y[1]);
    }
    free(yr[0]), free(yr[1]);
    vz_cuda_release(dx);
    free(x);
}

static const int64_t gpu_order_shapes[][2] = {{64, 2048}, {9, 1056}, {33, 64}, {5, 5632}, {3, 32}, {7, 4096 + 96}};

/* The GPU column order on the host (no GPU needed): a description
 * (vz_cuda_tensor_describe, as the layer streamer and cache make them)
 * puts raw bf16 of the fast path in it as an upload does, and not with
 * VZ_CUDA_MV_ROWMAJOR, nor raw f16 or a width that is not a multiple of 32;
 * vz_cuda_gpu_col is a permutation of each row (every 1024-column block,
 * partial last blocks included), and vz_cuda_tensor_image moves column c
 * of each row there (the file's bytes where the layout is 0). */
static void test_raw_gpu_image(void **state) {
    (void)state;
    for (size_t si = 0; si <= sizeof gpu_order_shapes / sizeof gpu_order_shapes[0]; si++) {
        const int last = si == sizeof gpu_order_shapes / sizeof gpu_order_shapes[0]; /* 688: not a multiple of 32 */
        const int64_t rows = last ? 3 : gpu_order_shapes[si][0], cols = last ? 688 : gpu_order_shapes[si][1], n = rows * cols;
        float *wf = rand_weights(n, 91 + si);
        void *src = to_dtype(wf, n, VZ_DTYPE_BF16), *src16 = to_dtype(wf, n, VZ_DTYPE_F16);
        enc e, h;
        enc_tensor(&e, "raw", NULL, src, VZ_DTYPE_BF16, rows, cols);
        enc_tensor(&h, "raw", NULL, src16, VZ_DTYPE_F16, rows, cols);
        vz_cuda_tensor d, dm, dh;
        const int old = vz_cuda_matvec_variant(VZ_CUDA_MV_V4);
        assert_int_equal(vz_cuda_tensor_describe(&d, &e.t, 0), VZ_OK);
        assert_int_equal(vz_cuda_tensor_describe(&dh, &h.t, 0), VZ_OK);
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | VZ_CUDA_MV_ROWMAJOR);
        assert_int_equal(vz_cuda_tensor_describe(&dm, &e.t, 0), VZ_OK);
        vz_cuda_matvec_variant(old);
        assert_int_equal(d.layout, last ? 0 : VZ_CUDA_RAW_GPU);
        assert_int_equal(dm.layout, 0);
        assert_int_equal(dh.layout, 0);
        uint16_t *img = malloc((size_t)n * 2);
        char *seen = calloc((size_t)cols, 1);
        assert_true(img && seen);
        if (!last)
            for (int64_t c = 0; c < cols; c++) { /* a permutation of each row's columns */
                const int64_t p = vz_cuda_gpu_col(cols, c);
                if (p < 0 || p >= cols || seen[p]++) fail_msg("%lld cols: gpu col of %lld = %lld", (long long)cols, (long long)c, (long long)p);
            }
        memset(img, 0xff, (size_t)n * 2); /* poison */
        assert_int_equal(vz_cuda_tensor_image(&d, &e.t, (uint8_t *)img), VZ_OK);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                if (img[r * cols + (last ? c : vz_cuda_gpu_col(cols, c))] != ((const uint16_t *)src)[r * cols + c])
                    fail_msg("%lldx%lld image: [%lld, %lld] misplaced", (long long)rows, (long long)cols, (long long)r, (long long)c);
        memset(img, 0xff, (size_t)n * 2);
        assert_int_equal(vz_cuda_tensor_image(&dm, &e.t, (uint8_t *)img), VZ_OK);
        assert_memory_equal(img, src, (size_t)n * 2);
        free(img), free(seen);
        vz_blob_free(&e.blob), vz_blob_free(&h.blob);
        free(src), free(src16), free(wf);
    }
}

/* Raw bf16 of the fast path lies in VRAM in the GPU column order
 * (VZ_CUDA_RAW_GPU, cuda.h): the device bytes equal vz_cuda_tensor_image's
 * (test_raw_gpu_image: column c of each row at vz_cuda_gpu_col); with
 * VZ_CUDA_MV_ROWMAJOR at upload the bytes are the file's. Both give the
 * same bits at batches 1, 2 and 8 under every kernel variant (gpu_mv), and
 * the same rows (vz_cuda_rows). */
static void test_raw_gpu_order(void **state) {
    (void)state;
    REQUIRE_GPU();
    const int64_t(*shp)[2] = gpu_order_shapes;
    for (size_t si = 0; si < sizeof gpu_order_shapes / sizeof gpu_order_shapes[0]; si++) {
        const int64_t rows = shp[si][0], cols = shp[si][1], n = rows * cols;
        float *wf = rand_weights(n, 77 + si);
        void *src = to_dtype(wf, n, VZ_DTYPE_BF16);
        enc e, m;
        enc_make(&e, "raw", src, VZ_DTYPE_BF16, rows, cols);
        const int old = vz_cuda_matvec_variant(-1);
        vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | VZ_CUDA_MV_ROWMAJOR);
        enc_make(&m, "raw", src, VZ_DTYPE_BF16, rows, cols);
        vz_cuda_matvec_variant(old);
        assert_int_equal(e.d.layout, VZ_CUDA_RAW_GPU);
        assert_int_equal(m.d.layout, 0);
        uint16_t *dev = malloc((size_t)n * 2), *img = malloc((size_t)n * 2);
        assert_true(dev && img);
        assert_int_equal(vz_cuda_tensor_image(&e.d, &e.t, (uint8_t *)img), VZ_OK);
        assert_int_equal(vz_cuda_copy(dev, e.d.data, (size_t)n * 2, 1), VZ_OK);
        assert_memory_equal(dev, img, (size_t)n * 2);
        assert_int_equal(vz_cuda_copy(dev, m.d.data, (size_t)n * 2, 1), VZ_OK);
        assert_memory_equal(dev, src, (size_t)n * 2);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            const int batch = batches[bi];
            float *x = rand_weights((int64_t)batch * cols, 3 + bi);
            float *dx = upload_x(x, (size_t)batch * cols, 0);
            float *y = gpu_mv(&e, dx, batch), *ym = gpu_mv(&m, dx, batch);
            check_ref(&e, x, y, batch);
            if (memcmp(y, ym, (size_t)batch * rows * 4) != 0)
                fail_msg("%lldx%lld batch %d: GPU column order != row-major bitwise", (long long)rows, (long long)cols, batch);
            free(y), free(ym), free(x);
            vz_cuda_release(dx);
        }
        int32_t ids[2] = {0, (int32_t)rows - 1}, *dids = vz_cuda_alloc(sizeof ids);
        float *d = vz_cuda_alloc((size_t)(2 * cols * 4)), *o = malloc((size_t)(2 * cols * 4)), *om = malloc((size_t)(2 * cols * 4));
        assert_true(dids && d && o && om);
        assert_int_equal(vz_cuda_copy(dids, ids, sizeof ids, 0), VZ_OK);
        assert_int_equal(vz_cuda_rows(d, dids, 2, &e.d, NULL), VZ_OK);
        assert_int_equal(vz_cuda_copy(o, d, (size_t)(2 * cols * 4), 1), VZ_OK);
        assert_int_equal(vz_cuda_rows(d, dids, 2, &m.d, NULL), VZ_OK);
        assert_int_equal(vz_cuda_copy(om, d, (size_t)(2 * cols * 4), 1), VZ_OK);
        for (int i = 0; i < 2; i++)
            for (int64_t c = 0; c < cols; c++)
                if (o[i * cols + c] != (float)e.w[ids[i] * cols + c] || om[i * cols + c] != o[i * cols + c])
                    fail_msg("%lldx%lld rows: row %d col %lld", (long long)rows, (long long)cols, ids[i], (long long)c);
        vz_cuda_release(dids), vz_cuda_release(d), free(o), free(om);
        free(dev), free(img);
        enc_free(&e), enc_free(&m);
        free(src), free(wf);
    }
}

/* Row gather (embedding) equals decode_ref exactly; bad ids give NaN rows.
 * Both launch forms: vz_cuda_rows and a decode step's vz_cuda_rows_step
 * (PDL, the step's carveout), each into an output poisoned first. */
static void test_rows(void **state) {
    (void)state;
    REQUIRE_GPU();
    const char *codecs[] = {"raw", "lossless", "q8", "q4", "lossless"}; /* the last: packed4 (k4) */
    const vz_codec_opts k4 = {0, 0, 4};
    for (int shp = 0; shp < 3; shp++) { /* 100x1100; 104x2048: tc, lossless tiled; 100x1056: raw in the GPU order */
    const int64_t rows = shp == 1 ? 104 : 100, cols = shp == 1 ? 2048 : shp ? 1056 : 1100;
    float *wf = rand_weights(rows * cols, 5);
    for (int64_t i = 0; i < rows * cols; i += 37) wf[i] = ldexpf(i % 2 ? 1.0f : -1.0f, -24 + (int)(i % 30)); /* exceptions */
    void *src = to_dtype(wf, rows * cols, VZ_DTYPE_BF16);
    int32_t ids[5] = {0, 99, 42, -1, (int32_t)rows};
    int32_t *dids = vz_cuda_alloc(sizeof ids);
    assert_int_equal(vz_cuda_copy(dids, ids, sizeof ids, 0), VZ_OK);
    for (int ci = 0; ci < 5; ci++) {
        if (!vz_codec_by_name(codecs[ci])) continue;
        enc e;
        int old = vz_cuda_matvec_variant(shp == 1 ? VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC : VZ_CUDA_MV_V4);
        enc_make_o(&e, codecs[ci], ci == 4 ? &k4 : NULL, src, VZ_DTYPE_BF16, rows, cols);
        vz_cuda_matvec_variant(old);
        if (ci == 0) assert_int_equal(e.d.layout, shp == 2 ? VZ_CUDA_RAW_GPU : 0);
        if (ci == 1) assert_int_equal(e.d.tiled, shp == 1);
        if (ci == 4) assert_int_equal(e.d.kind, shp ? VZ_CUDA_KIND_LL4 : VZ_CUDA_KIND_GENERIC);
        float *d = vz_cuda_alloc(5 * cols * 4), *o = malloc(5 * cols * 4);
        for (int step = 0; step < 2; step++) {
            for (int64_t i = 0; i < 5 * cols; i++) o[i] = 1234.5f; /* poison */
            assert_int_equal(vz_cuda_copy(d, o, 5 * cols * 4, 0), VZ_OK);
            assert_int_equal(step ? vz_cuda_rows_step(d, dids, 5, &e.d, NULL) : vz_cuda_rows(d, dids, 5, &e.d, NULL), VZ_OK);
            assert_int_equal(vz_cuda_copy(o, d, 5 * cols * 4, 1), VZ_OK);
            for (int i = 0; i < 5; i++)
                for (int64_t c = 0; c < cols; c++) {
                    float got = o[i * cols + c];
                    if (i >= 3) { if (!isnan(got)) fail_msg("%s: row id %d not NaN", codecs[ci], ids[i]); continue; }
                    if (got != (float)e.w[ids[i] * cols + c])
                        fail_msg("%s (%s): row %d col %lld: %g != %g", codecs[ci], step ? "step" : "plain", ids[i],
                                 (long long)c, got, e.w[ids[i] * cols + c]);
                }
        }
        assert_int_equal(vz_cuda_rows_step(d, dids, 0, &e.d, NULL), VZ_ERR_ARG);
        assert_int_equal(vz_cuda_rows_step(d, dids, 9, &e.d, NULL), VZ_ERR_ARG);
        vz_cuda_release(d), free(o), enc_free(&e);
    }
    vz_cuda_release(dids);
    free(src), free(wf);
    }
}

/* Exact sums: weights and inputs whose every partial sum is an f32 integer
 * (in units of the smallest term), so any correct kernel gives the exact
 * value: a wrong operand mapping, piece split or dropped element shows as a
 * difference. Cases: dense small-integer weights with 11-bit x (hi + lo
 * pieces); sparse +-1 weights with 18-bit x (all three pieces); power-of-two
 * weights over 8 exponents (16 H values: lossless exceptions) with 8-bit x. Every batch
 * 1..8 on the tc path, and the fmaf path as a control. */
static void test_matvec_exact(void **state) {
    (void)state;
    REQUIRE_GPU();
    const struct { int64_t rows, cols; int kind, xbits; } cases[] = {
        {64, 2048, 0, 11}, {24, 5632, 1, 17}, {16, 256, 2, 8}, {8, 128, 0, 11}, {40, 1024, 1, 17}};
    int old = vz_cuda_matvec_variant(-1);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int notc = 0; notc < 2; notc++) {
            const int64_t rows = cases[ci].rows, cols = cases[ci].cols, n = rows * cols;
            uint64_t seed = 500 + ci;
            float *wf = malloc((size_t)n * 4), *x = malloc((size_t)8 * cols * 4);
            for (int64_t i = 0; i < n; i++) {
                uint64_t r = vz_test_rand(&seed);
                float sg = r & 1 ? -1.0f : 1.0f;
                if (cases[ci].kind == 0) wf[i] = (float)((int)(r >> 8) % 5 - 2);
                else if (cases[ci].kind == 1) wf[i] = (r >> 8) % 64 == 0 ? sg : 0.0f;
                else wf[i] = (r >> 8) % 3 == 0 ? 0.0f : sg * ldexpf(1.0f, (int)((r >> 12) % 8) - 6);
            }
            for (int64_t i = 0; i < 8 * cols; i++) { /* integers below 2^xbits, times 2^-9 */
                uint64_t r = vz_test_rand(&seed);
                x[i] = ldexpf((float)(int64_t)(r % ((uint64_t)1 << cases[ci].xbits)) * (r & (1u << 31) ? -1 : 1), -9);
            }
            void *src = to_dtype(wf, n, VZ_DTYPE_BF16);
            vz_cuda_matvec_variant(notc ? VZ_CUDA_MV_V4 : (VZ_CUDA_MV_V4 | VZ_CUDA_MV_TC));
            enc e[2];
            enc_make(&e[0], "raw", src, VZ_DTYPE_BF16, rows, cols);
            enc_make(&e[1], "lossless", src, VZ_DTYPE_BF16, rows, cols);
            assert_int_equal(e[0].d.tc, !notc);
            assert_int_equal(e[1].d.tc, !notc);
            float *dx = upload_x(x, (size_t)8 * cols, 0);
            for (int batch = 1; batch <= 8; batch++)
                for (int k = 0; k < 2; k++) {
                    float *y = gpu_mv(&e[k], dx, batch);
                    for (int b = 0; b < batch; b++)
                        for (int64_t r = 0; r < rows; r++) {
                            double sum = 0;
                            for (int64_t c = 0; c < cols; c++) sum += (double)wf[r * cols + c] * x[b * cols + c];
                            if ((double)(float)sum != sum) fail_msg("case %zu: sum %.17g not exact in f32", ci, sum);
                            if (y[b * rows + r] != (float)sum)
                                fail_msg("case %zu (%s, %s) batch %d: y[%d][%lld] = %.9g, exact %.9g", ci, e[k].t.name,
                                         notc ? "fmaf" : "tc", batch, b, (long long)r, y[b * rows + r], sum);
                        }
                    free(y);
                }
            vz_cuda_release(dx);
            enc_free(&e[0]), enc_free(&e[1]);
            free(src), free(wf), free(x);
        }
    vz_cuda_matvec_variant(old);
}

/* The normalized rows xb (batch x cols) of x under the norm weights nw,
 * each element within 2^-21 of w * (x * s) with s = 1 / sqrt(mean(x^2) +
 * 1e-5) from a double sum on the CPU (the GPU sums in its own order). */
static void expect_norm(const float *x, const float *nw, const float *xb, int batch, int64_t cols) {
    for (int b = 0; b < batch; b++) {
        double ss = 0;
        for (int64_t c = 0; c < cols; c++) ss += (double)x[b * cols + c] * x[b * cols + c];
        const float sc = (float)(1.0 / sqrt(ss / (double)cols + 1e-5));
        for (int64_t c = 0; c < cols; c++) {
            const float want = nw[c] * (x[b * cols + c] * sc), g = xb[b * cols + c];
            if (!(fabsf(g - want) <= ldexpf(fabsf(want), -21)))
                fail_msg("cols %lld batch %d: norm x[%d][%lld] = %.9g, want %.9g", (long long)cols, batch, b,
                         (long long)c, g, want);
        }
    }
}

/* RMSNorm fused into the matvec (vz_cuda_matvec_multi_norm): the v4 kernel
 * (norm in its x staging) equals the unfused path (norm kernel into xb,
 * then the legacy kernel, bitwise equal to v4) bitwise, for QKV, SiLU and
 * residual-add launches at batch 1, 3, 8 and for raw, lossless and q4; the
 * unfused xb matches a CPU norm; at 8 x 4096 the fused path is the wide
 * v4 kernel (MV4_WIDE). q4 at 4096 columns runs the integer dot-product
 * kernel on both paths (fused norm, and after the norm kernel). */
static void test_matvec_norm(void **state) {
    (void)state;
    REQUIRE_GPU();
    const char *codecs[] = {"raw", "lossless", "q4"};
    const int64_t shp[2][2] = {{320, 2048}, {64, 4096}};
    int old = vz_cuda_matvec_variant(-1);
    for (int si = 0; si < 2; si++)
        for (int ci = 0; ci < 3; ci++) {
            const int64_t rows = shp[si][0], cols = shp[si][1];
            enc e[2];
            for (int i = 0; i < 2; i++) {
                float *wf = rand_weights(rows * cols, 80 + i);
                void *src = to_dtype(wf, rows * cols, VZ_DTYPE_BF16);
                enc_make(&e[i], codecs[ci], src, VZ_DTYPE_BF16, rows, cols);
                free(wf), free(src);
            }
            float *x = rand_weights(8 * cols, 11), *nw = rand_weights(cols, 12);
            for (int64_t i = 0; i < 8 * cols; i++) x[i] *= 40.0f;
            for (int64_t i = 0; i < cols; i++) nw[i] = 1.0f + 10.0f * nw[i];
            float *dx = upload_x(x, (size_t)8 * cols, 0), *dnw = upload_x(nw, (size_t)cols, 0);
            float *dxb = vz_cuda_alloc((size_t)8 * cols * 4), *dy[2][2];
            for (int batch = 1; batch <= 8; batch += batch == 1 ? 2 : 5)
                for (int epi = 0; epi < 3; epi++) {
                    const int nt = epi == VZ_CUDA_EPI_SILU_MUL ? 2 : epi == VZ_CUDA_EPI_ADD ? 1 : 2;
                    const vz_cuda_tensor *W[2] = {&e[0].d, &e[1].d};
                    size_t ny = (size_t)batch * rows;
                    float *got[2];
                    for (int path = 0; path < 2; path++) { /* 0: fused (v4), 1: norm kernel + legacy, late trigger */
                        vz_cuda_matvec_variant(path ? VZ_CUDA_MV_LEGACY : VZ_CUDA_MV_V4);
                        for (int i = 0; i < 2; i++) {
                            dy[path][i] = vz_cuda_alloc(ny * 4);
                            assert_int_equal(vz_cuda_fill_f32(dy[path][i], epi == VZ_CUDA_EPI_ADD ? 0.5f : NAN, ny), VZ_OK);
                        }
                        assert_int_equal(vz_cuda_fill_f32(dxb, NAN, (size_t)8 * cols), VZ_OK);
                        if (vz_cuda_matvec_multi_norm(nt, W, dy[path], dx, batch, epi, dnw, 1e-5f, dxb, path, NULL) != VZ_OK ||
                            vz_cuda_sync() != VZ_OK)
                            fail_msg("norm matvec: %s", vz_last_error());
                        got[path] = malloc(ny * 4);
                        assert_int_equal(vz_cuda_copy(got[path], dy[path][0], ny * 4, 1), VZ_OK);
                        if (path == 1) { /* the unfused norm */
                            float *xb = malloc((size_t)batch * cols * 4);
                            assert_int_equal(vz_cuda_copy(xb, dxb, (size_t)batch * cols * 4, 1), VZ_OK);
                            expect_norm(x, nw, xb, batch, cols);
                            free(xb);
                        }
                    }
                    if (memcmp(got[0], got[1], ny * 4) != 0)
                        fail_msg("%s %lldx%lld batch %d epi %d: fused norm != norm kernel + matvec", codecs[ci],
                                 (long long)rows, (long long)cols, batch, epi);
                    for (int path = 0; path < 2; path++) {
                        free(got[path]);
                        for (int i = 0; i < 2; i++) vz_cuda_release(dy[path][i]);
                    }
                }
            vz_cuda_release(dx), vz_cuda_release(dnw), vz_cuda_release(dxb);
            free(x), free(nw);
            enc_free(&e[0]), enc_free(&e[1]);
        }
    vz_cuda_matvec_variant(old);
}

/* The norm kernel (vz_k_rmsnorm, behind a LEGACY launch's norm) at widths
 * whose last float4 is partial (the norm's one order pads it with zeros,
 * matvec.cuh) and at 2048: every normalized element within 2^-21 of a CPU
 * norm from a double sum, at batch 1 and 3, and batch 3's first row equal
 * to batch 1's row bitwise (a row's norm does not depend on the batch). */
static void test_rmsnorm_dims(void **state) {
    (void)state;
    REQUIRE_GPU();
    const int64_t dims[3] = {70, 1001, 2048}, rows = 8;
    int old = vz_cuda_matvec_variant(-1);
    vz_cuda_matvec_variant(VZ_CUDA_MV_LEGACY);
    for (int di = 0; di < 3; di++) {
        const int64_t cols = dims[di];
        float *wf = rand_weights(rows * cols, 90 + di);
        void *src = to_dtype(wf, rows * cols, VZ_DTYPE_BF16);
        enc e;
        enc_make(&e, "raw", src, VZ_DTYPE_BF16, rows, cols);
        float *x = rand_weights(3 * cols, 13 + di), *nw = rand_weights(cols, 17 + di);
        for (int64_t i = 0; i < 3 * cols; i++) x[i] *= 40.0f;
        for (int64_t i = 0; i < cols; i++) nw[i] = 1.0f + 10.0f * nw[i];
        float *dx = upload_x(x, (size_t)3 * cols, 0), *dnw = upload_x(nw, (size_t)cols, 0);
        float *dxb = vz_cuda_alloc((size_t)3 * cols * 4), *dy = vz_cuda_alloc((size_t)3 * rows * 4);
        float *xb[2] = {malloc((size_t)3 * cols * 4), malloc((size_t)3 * cols * 4)};
        for (int pass = 0; pass < 2; pass++) {
            const int batch = pass ? 3 : 1;
            const vz_cuda_tensor *W = &e.d;
            assert_int_equal(vz_cuda_fill_f32(dxb, NAN, (size_t)3 * cols), VZ_OK);
            if (vz_cuda_matvec_multi_norm(1, &W, &dy, dx, batch, VZ_CUDA_EPI_NONE, dnw, 1e-5f, dxb, 0, NULL) != VZ_OK ||
                vz_cuda_sync() != VZ_OK)
                fail_msg("norm matvec: %s", vz_last_error());
            assert_int_equal(vz_cuda_copy(xb[pass], dxb, (size_t)batch * cols * 4, 1), VZ_OK);
            expect_norm(x, nw, xb[pass], batch, cols);
        }
        if (memcmp(xb[0], xb[1], (size_t)cols * 4) != 0) fail_msg("dim %lld: batch 3's first row != batch 1's", (long long)cols);
        free(xb[0]), free(xb[1]);
        vz_cuda_release(dx), vz_cuda_release(dnw), vz_cuda_release(dxb), vz_cuda_release(dy);
        free(x), free(nw), free(wf), free(src);
        enc_free(&e);
    }
    vz_cuda_matvec_variant(old);
}

/* The output head's greedy keys (vz_cuda_matvec_head): its logits equal
 * the plain matvec's bitwise, and where it reports keys the largest slot
 * names the pick of a scan of those logits with strict > in row order (the
 * lowest row among equal maxima) and carries that logit's bits. Rows repeat
 * one of 97 random rows in a scattered order, so every maximum is shared by
 * several rows (also for q8 and q4: equal rows get equal codes). Every
 * codec, q8 and q4 on the fmaf kernels (VZ_CUDA_MV_NO_DP: rows of 4096 or
 * more take the dot products by default) and on the dot-product kernels, at 320, 4100 and 32000
 * rows (single rows or 3 blocks per SM: no keys; row pairs at 2 blocks per
 * SM or wide: keys, always at 32000). Keys start at 0, as the sampler leaves
 * them; at batch 3, and without the v4 kernel (LEGACY, which dp tensors
 * ignore), there are none and they stay 0. */
static void test_head_keys(void **state) {
    (void)state;
    REQUIRE_GPU();
    const char *codecs[] = {"raw", "lossless", "q8", "q4", "q8", "q4"}; /* the last two: dp */
    const int64_t rows_of[] = {320, 4100, 32000}, cols = 2048;
    enum { NK = VZ_GREEDY_SLOTS * VZ_GREEDY_STRIDE };
    float *x = rand_weights(3 * cols, 21), *nw = rand_weights(cols, 22);
    for (int64_t i = 0; i < cols; i++) nw[i] = 1.0f + 10.0f * nw[i];
    float *dx = upload_x(x, (size_t)3 * cols, 0), *dnw = upload_x(nw, (size_t)cols, 0);
    float *dxb = vz_cuda_alloc((size_t)3 * cols * 4);
    unsigned long long *dk = vz_cuda_alloc(NK * 8), *keys = malloc(NK * 8);
    assert_true(dxb && dk && keys);
    int old = vz_cuda_matvec_variant(-1), checked = 0;
    for (size_t ri = 0; ri < sizeof rows_of / sizeof rows_of[0]; ri++)
        for (int ci = 0; ci < 6; ci++) {
            const int64_t rows = rows_of[ri];
            float *base = rand_weights(97 * cols, 23 + ri), *wf = malloc((size_t)(rows * cols) * 4);
            assert_non_null(wf);
            for (int64_t r = 0; r < rows; r++)
                memcpy(wf + r * cols, base + ((r * 7919 + 13) % 97) * cols, (size_t)cols * 4);
            void *src = to_dtype(wf, rows * cols, VZ_DTYPE_BF16);
            enc e;
            vz_cuda_matvec_variant(VZ_CUDA_MV_V4 | (ci >= 4 ? VZ_CUDA_MV_DP : ci >= 2 ? VZ_CUDA_MV_NO_DP : 0));
            enc_make(&e, codecs[ci], src, VZ_DTYPE_BF16, rows, cols);
            assert_int_equal(e.d.dp, ci >= 4);
            free(base), free(wf), free(src);
            float *dy = vz_cuda_alloc((size_t)3 * rows * 4), *dy0 = vz_cuda_alloc((size_t)3 * rows * 4);
            float *y = malloc((size_t)3 * rows * 4), *y0 = malloc((size_t)3 * rows * 4);
            assert_true(dy && dy0 && y && y0);
            const vz_cuda_tensor *W = &e.d;
            for (int batch = 1; batch <= 3; batch += 2)
                for (int legacy = 0; legacy < 2; legacy++) {
                    const size_t ny = (size_t)batch * rows;
                    vz_cuda_matvec_variant(legacy ? VZ_CUDA_MV_LEGACY : VZ_CUDA_MV_V4);
                    assert_int_equal(vz_cuda_fill_f32(dy, NAN, ny), VZ_OK);
                    assert_int_equal(vz_cuda_fill_f32(dy0, NAN, ny), VZ_OK);
                    assert_int_equal(vz_cuda_fill_f32((float *)dk, 0.0f, 2 * NK), VZ_OK);
                    int keyed = -1;
                    if (vz_cuda_matvec_head(W, dy, dx, batch, dnw, 1e-5f, dxb, dk, &keyed, NULL) != VZ_OK ||
                        vz_cuda_matvec_multi_norm(1, &W, &dy0, dx, batch, VZ_CUDA_EPI_NONE, dnw, 1e-5f, dxb, 0, NULL) !=
                            VZ_OK ||
                        vz_cuda_sync() != VZ_OK)
                        fail_msg("head matvec: %s", vz_last_error());
                    assert_true(keyed == 0 || keyed == 1);
                    if ((legacy && ci < 4) || batch > 1) assert_int_equal(keyed, 0); /* dp: v4 in every variant */
                    if (!legacy && batch == 1 && rows == 32000) assert_int_equal(keyed, 1);
                    assert_int_equal(vz_cuda_copy(y, dy, ny * 4, 1), VZ_OK);
                    assert_int_equal(vz_cuda_copy(y0, dy0, ny * 4, 1), VZ_OK);
                    assert_int_equal(vz_cuda_copy(keys, dk, NK * 8, 1), VZ_OK);
                    if (memcmp(y, y0, ny * 4) != 0)
                        fail_msg("%s batch %d: head logits != plain matvec's", e.t.name, batch);
                    unsigned long long k = 0;
                    int outside = 0; /* nonzero words off the slots */
                    for (int i = 0; i < NK; i++) {
                        if (i % VZ_GREEDY_STRIDE) outside += keys[i] != 0;
                        else if (keys[i] > k) k = keys[i];
                    }
                    assert_int_equal(outside, 0);
                    if (!keyed) {
                        assert_true(k == 0);
                        continue;
                    }
                    const int64_t want = vz_test_argmax(y, (int32_t)rows); /* the scan the sampler did */
                    int64_t ties = 0;
                    for (int64_t r = 0; r < rows; r++) ties += y[r] == y[want];
                    const uint32_t hi = (uint32_t)(k >> 32), lo = (uint32_t)k;
                    uint32_t bits;
                    memcpy(&bits, &y[want], 4);
                    const uint32_t wk = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
                    if (ties < 2 || (int64_t)~lo != want || hi != wk)
                        fail_msg("%s: key %#llx, want row %lld of logit %.9g (%lld ties)", e.t.name, k, (long long)want,
                                 y[want], (long long)ties);
                    checked++;
                }
            vz_cuda_release(dy), vz_cuda_release(dy0);
            free(y), free(y0);
            enc_free(&e);
        }
    vz_cuda_matvec_variant(old);
    vz_cuda_release(dx), vz_cuda_release(dnw), vz_cuda_release(dxb), vz_cuda_release(dk);
    free(x), free(nw), free(keys);
    print_message("head keys: %d picks, each among tied maxima, equal to the scan's\n", checked);
    assert_true(checked >= 6); /* every codec's 32000 rows at least */
}

/* The q8/q4 scale index (vz_cuda_q_divider, host only): for model widths
 * and odd ones, every group that is a multiple of 32 (a sample of them for
 * wide rows, and group = cols), g * qmul >> qsh equals g / (group / 32) for
 * every lane group g of the row, without overflowing 32 bits; and a pair
 * exists for all of them. No GPU needed. */
static void test_q_divider(void **state) {
    (void)state;
    static const int64_t cols[] = {32,   64,   96,   160,  1056, 2048,  2080,  4096,  5632,
                                   8192, 11008, 14336, 18944, 28672, 32000, 49152, 65504};
    int checked = 0;
    for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
        const int64_t c = cols[ci], gpr = (c + 31) / 32;
        for (int64_t k = 1; k <= gpr + 3; k += k < 64 ? 1 : 37) {
            for (int pass = 0; pass < 2; pass++) {
                const int32_t group = pass ? (int32_t)(gpr * 32) : (int32_t)(32 * k);
                uint32_t qd = 1;
                assert_int_equal(vz_cuda_q_divider(c, group, &qd), 1);
                const uint64_t m = qd >> 5, sh = qd & 31u, div = (uint64_t)group / 32;
                for (uint64_t g = 0; g < (uint64_t)gpr; g++) {
                    assert_true(g * m <= UINT32_MAX);
                    if ((g * m) >> sh != g / div) fail_msg("cols %lld group %d: g %llu", (long long)c, group, (unsigned long long)g);
                }
                checked++;
            }
        }
    }
    uint32_t qd = 7;
    assert_int_equal(vz_cuda_q_divider(64, 0, &qd), 0); /* no group: none, and 0 */
    assert_int_equal(qd, 0u);
    assert_int_equal(vz_cuda_q_divider(64, 16, &qd), 0);
    print_message("q divider: %d (cols, group) pairs exact over every lane group\n", checked);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q_divider),
        cmocka_unit_test(test_raw_gpu_image),
        cmocka_unit_test(test_matvec_codecs),
        cmocka_unit_test(test_matvec_dp_choice),
        cmocka_unit_test(test_matvec_exact),
        cmocka_unit_test(test_matvec_dense_exceptions),
        cmocka_unit_test(test_matvec_multi),
        cmocka_unit_test(test_matvec_fit),
        cmocka_unit_test(test_matvec_norm),
        cmocka_unit_test(test_rmsnorm_dims),
        cmocka_unit_test(test_head_keys),
        cmocka_unit_test(test_matvec_chain),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_raw_gpu_order),
    };
    vz_test_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

static void test_no_cuda(void **state) {
    (void)state;
    print_message("SKIP: built without CUDA (make CUDA=1)\n");
    skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_no_cuda)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
