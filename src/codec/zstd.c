/*
 * zstd.c - codec 3 `zstd`: the tensor bytes, unchanged (no byte shuffle),
 * compressed by libzstd in chunks of whole rows (~64 KiB of source each) with
 * a u64 offset index, so any row range decodes without the other chunks. A
 * measured reference for what plain general-purpose compression gives.
 * docs/codecs.md section 3 is the normative layout.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec/bits.h"
#include "codec/codec.h"

#define ZS_DEFAULT_LEVEL 3
#define ZS_CHUNK_BYTES 65536

typedef struct zs_geom {
    uint64_t row_bytes, chunk_rows, nchunks, frames;
} zs_geom;

static int zs_geom_init(zs_geom *g, vz_dtype d, int64_t rows, int64_t cols, uint64_t chunk_rows) {
    uint64_t n;
    if (rows < 1 || cols < 1 || !vz_dtype_ok(d) || chunk_rows < 1) return 0;
    if (!vz_mul_ok((uint64_t)rows, (uint64_t)cols, &n) || n > ((uint64_t)1 << 40)) return 0;
    g->row_bytes = (uint64_t)cols * (uint64_t)vz_dtype_size(d);
    if (chunk_rows > (uint64_t)rows || chunk_rows * g->row_bytes > ((uint64_t)1 << 31)) return 0;
    g->chunk_rows = chunk_rows;
    g->nchunks = ((uint64_t)rows + chunk_rows - 1) / chunk_rows;
    g->frames = vz_al16((g->nchunks + 1) * 8);
    return 1;
}

static int zs_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    zs_geom g;
    return zs_geom_init(&g, dtype, rows, cols, 1);
}

static vz_status zs_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                           vz_blob *out) {
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(o && o->code, VZ_ERR_ARG, "zstd: option 'k%d' (code bits) is not used by this codec", (int)o->code);
    VZ_FAIL_IF(o && o->group, VZ_ERR_ARG, "zstd: option 'g%d' (group size) is not used by this codec (only a level N)",
               (int)o->group);
    int level = o && o->level ? o->level : ZS_DEFAULT_LEVEL;
    VZ_FAIL_IF(level < ZSTD_minCLevel() || level > ZSTD_maxCLevel(), VZ_ERR_ARG, "zstd: level %d not in %d..%d", level,
               ZSTD_minCLevel(), ZSTD_maxCLevel());
    zs_geom g;
    VZ_FAIL_IF(!zs_geom_init(&g, dtype, rows, cols, 1), VZ_ERR_ARG, "zstd: bad shape or dtype");
    uint64_t cr = ZS_CHUNK_BYTES / g.row_bytes;
    cr = cr < 1 ? 1 : cr > (uint64_t)rows ? (uint64_t)rows : cr;
    VZ_FAIL_IF(!zs_geom_init(&g, dtype, rows, cols, cr), VZ_ERR_UNSUPPORTED, "zstd: a row of %llu bytes is too long",
               (unsigned long long)g.row_bytes);
    uint64_t total = (uint64_t)rows * g.row_bytes;
    uint64_t cap = g.frames + ZSTD_compressBound(total) + g.nchunks * 64;
    out->params_size = 8;
    out->params = calloc(8, 1);
    out->data = calloc(cap, 1);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    if (!out->params || !out->data || !cc) {
        ZSTD_freeCCtx(cc);
        vz_blob_free(out);
        return VZ_FAIL(VZ_ERR_NOMEM, "zstd: no memory");
    }
    out->params[0] = 1;
    out->params[1] = (uint8_t)(int8_t)level;
    vz_st32(out->params + 4, (uint32_t)cr);
    uint64_t pos = 0;
    for (uint64_t c = 0; c < g.nchunks; c++) {
        uint64_t r0 = c * cr, nr = (uint64_t)rows - r0 < cr ? (uint64_t)rows - r0 : cr;
        vz_st64(out->data + 8 * c, pos);
        size_t z = ZSTD_compressCCtx(cc, out->data + g.frames + pos, cap - g.frames - pos,
                                     (const uint8_t *)src + r0 * g.row_bytes, nr * g.row_bytes, level);
        if (ZSTD_isError(z)) {
            ZSTD_freeCCtx(cc);
            vz_blob_free(out);
            return VZ_FAIL(VZ_ERR_CODEC, "zstd: compress failed: %s", ZSTD_getErrorName(z));
        }
        pos += z;
    }
    vz_st64(out->data + 8 * g.nchunks, pos);
    ZSTD_freeCCtx(cc);
    out->size = g.frames + pos;
    return VZ_OK;
}

static vz_status zs_check(const vz_tensor *t) {
    VZ_FAIL_IF(!t->params || t->params_size != 8, VZ_ERR_CODEC, "tensor %s: zstd params %u bytes, want 8", t->name,
               t->params ? t->params_size : 0);
    const uint8_t *p = t->params;
    VZ_FAIL_IF(p[0] != 1 || p[2] || p[3], VZ_ERR_CODEC, "tensor %s: zstd version %u or reserved bytes invalid", t->name,
               p[0]);
    zs_geom g;
    VZ_FAIL_IF(!zs_geom_init(&g, t->dtype, t->rows, t->cols, vz_le32(p + 4)), VZ_ERR_CODEC,
               "tensor %s: zstd chunk_rows %u invalid for %lldx%lld", t->name, vz_le32(p + 4), (long long)t->rows,
               (long long)t->cols);
    VZ_FAIL_IF(t->size < g.frames, VZ_ERR_FORMAT, "tensor %s: zstd data %llu bytes < index %llu", t->name,
               (unsigned long long)t->size, (unsigned long long)g.frames);
    uint64_t avail = t->size - g.frames;
    VZ_FAIL_IF(vz_le64(t->data) != 0 || vz_le64(t->data + 8 * g.nchunks) != avail, VZ_ERR_FORMAT,
               "tensor %s: zstd index does not span the %llu frame bytes", t->name, (unsigned long long)avail);
    for (uint64_t c = 0; c < g.nchunks; c++) {
        uint64_t a = vz_le64(t->data + 8 * c), b = vz_le64(t->data + 8 * c + 8);
        VZ_FAIL_IF(b < a || b > avail, VZ_ERR_FORMAT, "tensor %s: zstd index[%llu] = %llu not monotone", t->name,
                   (unsigned long long)c + 1, (unsigned long long)b);
        uint64_t r0 = c * g.chunk_rows, nr = (uint64_t)t->rows - r0 < g.chunk_rows ? (uint64_t)t->rows - r0 : g.chunk_rows;
        unsigned long long fs = ZSTD_getFrameContentSize(t->data + g.frames + a, b - a);
        VZ_FAIL_IF(fs != nr * g.row_bytes, VZ_ERR_FORMAT, "tensor %s: zstd frame %llu holds %llu bytes, want %llu",
                   t->name, (unsigned long long)c, fs, (unsigned long long)(nr * g.row_bytes));
    }
    return VZ_OK;
}

/* Rows [r0, r1) as source bytes into out; VZ_ERR_FORMAT if a frame is corrupt. */
static vz_status zs_rows(const vz_tensor *t, int64_t r0, int64_t r1, uint8_t *out) {
    zs_geom g;
    zs_geom_init(&g, t->dtype, t->rows, t->cols, vz_le32(t->params + 4));
    uint8_t *tmp = malloc(g.chunk_rows * g.row_bytes);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    vz_status st = tmp && dc ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "zstd: no memory");
    for (uint64_t c = (uint64_t)r0 / g.chunk_rows; st == VZ_OK && c * g.chunk_rows < (uint64_t)r1; c++) {
        uint64_t c0 = c * g.chunk_rows, nr = (uint64_t)t->rows - c0 < g.chunk_rows ? (uint64_t)t->rows - c0 : g.chunk_rows;
        uint64_t a = vz_le64(t->data + 8 * c), b = vz_le64(t->data + 8 * c + 8);
        size_t z = ZSTD_decompressDCtx(dc, tmp, nr * g.row_bytes, t->data + g.frames + a, b - a);
        if (ZSTD_isError(z) || z != nr * g.row_bytes) {
            st = VZ_FAIL(VZ_ERR_FORMAT, "tensor %s: zstd frame %llu corrupt", t->name, (unsigned long long)c);
            break;
        }
        uint64_t lo = c0 > (uint64_t)r0 ? c0 : (uint64_t)r0, hi = c0 + nr < (uint64_t)r1 ? c0 + nr : (uint64_t)r1;
        memcpy(out + (lo - (uint64_t)r0) * g.row_bytes, tmp + (lo - c0) * g.row_bytes, (hi - lo) * g.row_bytes);
    }
    ZSTD_freeDCtx(dc);
    free(tmp);
    return st;
}

static vz_status zs_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    VZ_TRY(zs_check(t));
    VZ_FAIL_IF(r0 < 0 || r1 > t->rows || r0 > r1, VZ_ERR_ARG, "tensor %s: rows [%lld, %lld)", t->name, (long long)r0,
               (long long)r1);
    return zs_rows(t, r0, r1, out);
}

/* Decodes into the tail of out (f32 needs 2x the room of bf16/f16), then
 * widens front to back; a corrupt frame gives NaN rows. */
static void zs_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    uint64_t n = (uint64_t)(r1 - r0) * (uint64_t)t->cols;
    int es = vz_dtype_size(t->dtype);
    uint8_t *raw = (uint8_t *)out + n * (4 - (uint64_t)es);
    if (zs_rows(t, r0, r1, raw) != VZ_OK) {
        for (uint64_t i = 0; i < n; i++) out[i] = NAN;
        return;
    }
    if (t->dtype == VZ_DTYPE_F32) return;
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h = vz_le16(raw + 2 * i);
        out[i] = t->dtype == VZ_DTYPE_BF16 ? vz_bf16_to_f32(h) : vz_f16_to_f32_fast(h);
    }
}

const vz_codec vz_codec_zstd = {
    .name = "zstd",
    .id = VZ_CODEC_zstd,
    .lossless = 1,
    .doc = "bit-exact; plain zstd of the tensor bytes per ~64 KiB chunk of rows (zstd:3 default, zstd:19)",
    .supports = zs_supports,
    .encode = zs_encode,
    .check = zs_check,
    .decode_ref = zs_decode_ref,
    .decode_f32 = zs_decode_f32,
};
