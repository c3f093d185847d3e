/*
 * fuzz_codecs.c - libFuzzer target for the codec decoders (docs/codecs.md).
 * Input: [mode|codec, dtype, rows, cols lo, cols hi, ...]. Decode mode: u16
 * params size, params, data; runs check() and, only if it passes, both
 * decoders and the fused dot (must never crash). Round-trip mode (bit 7 of
 * byte 0): the rest is source elements; encode -> check -> decode must
 * reproduce them (lossless), and the codec's dot_f32 must equal vz_dot of
 * its decode_f32 rows bit for bit (any NaN equal to any NaN).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops.h"
#include "codec/bits.h"
#include "codec/codec.h"

/* x for the dots: small distinct values. */
static float *fz_x(int64_t cols) {
    float *x = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; x && i < cols; i++) x[i] = (float)(i % 7) * 0.25f - 0.75f;
    return x;
}

static void fz_decode(vz_tensor *t, const vz_codec *c, const uint8_t *p, size_t size) {
    if (size < 2) return;
    uint32_t ps = vz_le16(p);
    p += 2; size -= 2;
    if (ps > size) ps = (uint32_t)size;
    t->params = ps ? p : NULL;
    t->params_size = ps;
    t->data = p + ps;
    t->size = size - ps;
    if (c->check(t) != VZ_OK) return;
    size_t n = (size_t)t->rows * (size_t)t->cols;
    void *out = malloc(n * 4);
    if (!out) return;
    c->decode_ref(t, 0, t->rows, out);
    c->decode_f32(t, 0, t->rows, out);
    if (t->rows > 1) c->decode_f32(t, t->rows - 1, t->rows, out);
    float *x = fz_x(t->cols);
    if (x && c->dot_f32) {
        c->dot_f32(t, 0, t->rows, x, out);
        if (t->rows > 1) c->dot_f32(t, t->rows - 1, t->rows, x, out);
    }
    free(x);
    free(out);
}

static void fz_roundtrip(vz_tensor *t, const vz_codec *c, const uint8_t *p, size_t size) {
    if (size < 1) return;
    vz_codec_opts o = {(int32_t)(32 << (p[0] & 3)), p[0] >> 4, (p[0] & 4) ? 4 : 0};
    if (p[0] & 8) o.group = 0;
    p++; size--;
    size_t es = (size_t)vz_dtype_size(t->dtype), rowb = (size_t)t->cols * es;
    if ((size_t)t->rows * rowb > size) t->rows = (int64_t)(size / rowb);
    if (t->rows < 1 || !c->supports(t->dtype, t->rows, t->cols)) return;
    if (strcmp(c->name, "zstd") == 0) o.level = 1 + o.level % 5;
    if (c->lossless) o.group = 0; /* options they do not take are refused */
    if (c->lossless && strcmp(c->name, "zstd") != 0) o.level = 0;
    if (strcmp(c->name, "lossless") != 0) o.code = 0; /* lossless: k4 (packed4) when set */
    vz_blob b;
    if (c->encode(p, t->dtype, t->rows, t->cols, &o, &b) != VZ_OK) {
        if (c->lossless) __builtin_trap(); /* a lossless codec takes any bits */
        return;
    }
    t->params = b.params; t->params_size = b.params_size; t->data = b.data; t->size = b.size;
    size_t n = (size_t)t->rows * (size_t)t->cols;
    uint8_t *ref = malloc(n * 4);
    float *f = malloc(n * 4);
    if (c->check(t) != VZ_OK || !ref || !f || c->decode_ref(t, 0, t->rows, ref) != VZ_OK) __builtin_trap();
    c->decode_f32(t, 0, t->rows, f);
    for (size_t i = 0; i < n; i++) {
        float want = c->lossless ? vz_elem_f32(ref, t->dtype, i) : ((float *)ref)[i];
        if (vz_f32_bits(want) != vz_f32_bits(f[i])) __builtin_trap();
    }
    if (c->lossless && memcmp(ref, p, n * es) != 0) __builtin_trap();
    float *x = fz_x(t->cols), y[8];
    if (x && c->dot_f32) {
        c->dot_f32(t, 0, t->rows, x, y); /* rows <= 8 */
        for (int64_t r = 0; r < t->rows; r++) {
            float want = vz_dot(f + r * t->cols, x, t->cols);
            if (vz_f32_bits(want) != vz_f32_bits(y[r]) && !(want != want && y[r] != y[r])) __builtin_trap();
        }
    }
    free(x);
    free(ref); free(f);
    vz_blob_free(&b);
}

int vz_fuzz_codecs(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    const vz_codec *c = vz_codec_at((data[0] & 0x7f) % vz_codec_count());
    vz_tensor t;
    memset(&t, 0, sizeof t);
    strcpy(t.name, "fuzz");
    t.dtype = (vz_dtype)(data[1] % 3);
    t.rows = 1 + data[2] % 8;
    t.cols = 1 + (int64_t)(vz_le16(data + 3) % 1100);
    t.ndim = 2; t.shape[0] = t.rows; t.shape[1] = t.cols;
    t.codec = c->id;
    if (data[0] & 0x80) fz_roundtrip(&t, c, data + 5, size - 5);
    else fz_decode(&t, c, data + 5, size - 5);
    return 0;
}
