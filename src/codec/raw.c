/*
 * raw.c - codec 0: elements stored as their source dtype (f32, f16, bf16),
 * row-major, little-endian, no params. The reference for every other codec.
 */
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "codec/cpu_kernels.h"
#include "core/half_rows.h"

static int raw_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    (void)dtype; (void)rows; (void)cols;
    return 1;
}

static vz_status raw_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols,
                            const vz_codec_opts *o, vz_blob *out) {
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(o && o->code, VZ_ERR_ARG, "raw: option 'k%d' (code bits) is not used by this codec", (int)o->code);
    VZ_FAIL_IF(o && o->group, VZ_ERR_ARG, "raw: option 'g%d' (group size) is not used by this codec", (int)o->group);
    VZ_FAIL_IF(o && o->level, VZ_ERR_ARG, "raw: option '%d' (level) is not used by this codec", (int)o->level);
    uint64_t n = (uint64_t)rows * (uint64_t)cols * (uint64_t)vz_dtype_size(dtype);
    out->data = malloc(n ? n : 1);
    VZ_FAIL_IF(!out->data, VZ_ERR_NOMEM, "raw: cannot allocate %llu bytes", (unsigned long long)n);
    memcpy(out->data, src, n);
    out->size = n;
    return VZ_OK;
}

static vz_status raw_check(const vz_tensor *t) {
    uint64_t n = (uint64_t)t->rows * (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
    VZ_FAIL_IF(t->size != n, VZ_ERR_FORMAT, "tensor %s: raw %s data is %llu bytes, shape needs %llu", t->name,
               vz_dtype_name(t->dtype), (unsigned long long)t->size, (unsigned long long)n);
    return VZ_OK;
}

static vz_status raw_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    size_t es = (size_t)vz_dtype_size(t->dtype);
    memcpy(out, t->data + (size_t)r0 * (size_t)t->cols * es, (size_t)(r1 - r0) * (size_t)t->cols * es);
    return VZ_OK;
}

static void raw_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    size_t n = (size_t)(r1 - r0) * (size_t)t->cols;
    size_t off = (size_t)r0 * (size_t)t->cols;
    switch (t->dtype) {
    case VZ_DTYPE_F32:
        memcpy(out, t->data + off * 4, n * 4);
        break;
    case VZ_DTYPE_BF16:
        vz_bf16_rows_to_f32(out, t->data + off * 2, n);
        break;
    case VZ_DTYPE_F16:
        vz_f16_rows_to_f32(out, t->data + off * 2, n);
        break;
    }
}

/* The matvec's dot: bf16 rows stream through the kernel set's
 * bf16_dot_rows; f16 and f32 rows (f32 only when misaligned: the matvec
 * dots aligned ones in place) are converted 1024 elements at a time and
 * summed by dot_acc. */
static void raw_dot_f32(const vz_tensor *t, int64_t r0, int64_t r1, const float *x, float *y) {
    const vz_cpu_kernels *kn = vz_cpu_kernels_get();
    const size_t cols = (size_t)t->cols, es = (size_t)vz_dtype_size(t->dtype);
    if (t->dtype == VZ_DTYPE_BF16) {
        kn->bf16_dot_rows(y, (size_t)(r1 - r0), t->data + (size_t)r0 * cols * 2, cols, x);
        return;
    }
    float buf[1024];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = t->data + (size_t)r * cols * es;
        float acc[16] = {0};
        for (size_t c = 0; c < cols; c += 1024) {
            size_t len = cols - c < 1024 ? cols - c : 1024;
            if (t->dtype == VZ_DTYPE_F16)
                vz_f16_rows_to_f32(buf, row + 2 * c, len);
            else
                memcpy(buf, row + 4 * c, 4 * len);
            kn->dot_acc(acc, buf, x + c, len);
        }
        y[r - r0] = vz_dot_tree(acc);
    }
}

const vz_codec vz_codec_raw = {
    .name = "raw",
    .id = VZ_CODEC_raw,
    .lossless = 1,
    .doc = "stored as the source dtype (f32, f16, bf16); no compression",
    .supports = raw_supports,
    .encode = raw_encode,
    .check = raw_check,
    .decode_ref = raw_decode_ref,
    .decode_f32 = raw_decode_f32,
    .dot_f32 = raw_dot_f32,
};
