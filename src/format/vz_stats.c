/*
 * vz_stats.c - per-tensor statistics for `vramzip inspect` (bits/weight,
 * Shannon entropy of the source exponent field) and whole-tensor f32 decode
 * for `vramzip verify`. Work on any model format through the codec table.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "model/model.h"

static vz_status get_tensor(const vz_model *m, int32_t i, const vz_tensor **t, const vz_codec **c) {
    VZ_FAIL_IF(!m || i < 0 || i >= m->n_tensors, VZ_ERR_ARG, "tensor index %d out of range", (int)i);
    *t = &m->tensors[i];
    *c = vz_codec_by_id((*t)->codec);
    VZ_FAIL_IF(!*c, VZ_ERR_CODEC, "tensor %s: unknown codec id %u", (*t)->name, (unsigned)(*t)->codec);
    return VZ_OK;
}

/* Adds the exponent field of n source elements to hist (256 bins). */
static void exp_hist(const uint8_t *p, uint64_t n, vz_dtype dt, uint64_t *hist) {
    for (uint64_t k = 0; k < n; k++) {
        if (dt == VZ_DTYPE_F32) {
            uint32_t u = (uint32_t)p[4 * k + 2] >> 7 | (uint32_t)(p[4 * k + 3] & 0x7f) << 1;
            hist[u]++;
        } else {
            uint16_t h = (uint16_t)(p[2 * k] | p[2 * k + 1] << 8);
            hist[dt == VZ_DTYPE_BF16 ? (h >> 7) & 0xff : (h >> 10) & 0x1f]++;
        }
    }
}

static vz_status exponent_entropy(const vz_tensor *t, const vz_codec *c, double *out) {
    uint64_t *hist = calloc(256, sizeof *hist);
    uint64_t row_bytes = (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
    int64_t chunk = (int64_t)((8u << 20) / row_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > t->rows) chunk = t->rows;
    uint8_t *buf = malloc((size_t)(row_bytes * (uint64_t)chunk));
    vz_status s = hist && buf ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "tensor %s: out of memory", t->name);
    for (int64_t r0 = 0; s == VZ_OK && r0 < t->rows; r0 += chunk) {
        int64_t r1 = r0 + chunk < t->rows ? r0 + chunk : t->rows;
        s = c->decode_ref(t, r0, r1, buf);
        if (s == VZ_OK) exp_hist(buf, (uint64_t)(r1 - r0) * (uint64_t)t->cols, t->dtype, hist);
    }
    if (s == VZ_OK) {
        double n = (double)t->rows * (double)t->cols, e = 0;
        for (int k = 0; k < 256; k++)
            if (hist[k]) e -= (double)hist[k] / n * log2((double)hist[k] / n);
        *out = e;
    }
    free(hist);
    free(buf);
    return s;
}

vz_status vz_model_tensor_stats(const vz_model *m, int32_t i, vz_tensor_stats *o) {
    const vz_tensor *t;
    const vz_codec *c;
    VZ_TRY(get_tensor(m, i, &t, &c));
    memset(o, 0, sizeof *o);
    o->n_elements = (uint64_t)t->rows * (uint64_t)t->cols;
    o->encoded_bytes = t->size + t->params_size;
    o->bits_per_weight = 8.0 * (double)o->encoded_bytes / (double)o->n_elements;
    o->lossless = c->lossless;
    o->exp_entropy = -1;
    if (c->lossless) VZ_TRY(exponent_entropy(t, c, &o->exp_entropy));
    return VZ_OK;
}

vz_status vz_model_tensor_decode_f32(const vz_model *m, int32_t i, float *out) {
    const vz_tensor *t;
    const vz_codec *c;
    VZ_TRY(get_tensor(m, i, &t, &c));
    VZ_FAIL_IF(!out, VZ_ERR_ARG, "tensor %s: NULL output", t->name);
    c->decode_f32(t, 0, t->rows, out);
    return VZ_OK;
}
