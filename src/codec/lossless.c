/*
 * lossless.c - codec 1 `lossless`: the element's high byte H is replaced by
 * a k-bit code through a per-tensor lut, the low bytes are stored raw in
 * planes, and H values outside the lut are exceptions listed by position
 * with a per-1024-element-block index. Implements docs/codecs.md section 1
 * exactly (params, section order, bit-plane, packed3 and packed4 code
 * layouts).
 */
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/cpu_kernels.h"
#include "codec/lossless_tile.h"
#include "core/half_rows.h"

/* Byte offsets of the data sections of one tensor. */
typedef struct ll_geom {
    uint64_t n, gpr, bpr, codes, index, exc, nidx;
    int w, k;
} ll_geom;

static int ll_geom_init(ll_geom *g, vz_dtype d, int64_t rows, int64_t cols, int k) {
    if (rows < 1 || cols < 1 || k < 1 || k > 8 || !vz_dtype_ok(d)) return 0;
    uint64_t r = (uint64_t)rows, c = (uint64_t)cols;
    g->w = vz_dtype_size(d);
    g->k = k;
    g->gpr = (c + 31) / 32;
    g->bpr = (c + 1023) / 1024;
    if (!vz_mul_ok(r, c, &g->n) || g->n > ((uint64_t)1 << 40)) return 0;
    g->codes = vz_al16(g->n * (uint64_t)(g->w - 1));
    g->index = vz_al16(g->codes + r * g->gpr * (uint64_t)k * 4);
    g->nidx = r * g->bpr + 1;
    g->exc = vz_al16(g->index + g->nidx * 4);
    return 1;
}

/* Code of element e (0..31) of a group of k words (docs/codecs.md). */
static inline unsigned ll_code(const uint8_t *grp, int k, int layout, int e) {
    if (layout == 2) return (vz_le32(grp + 4 * (e / 8)) >> 4 * (e % 8)) & 15u;
    if (layout == 1) {
        if (e < 24) return (vz_le32(grp + 4 * (e / 8)) >> 4 * (e % 8)) & 7u;
        unsigned n = (unsigned)e - 24, c = 0;
        for (int b = 0; b < 3; b++) c |= ((vz_le32(grp + 4 * b) >> (4 * n + 3)) & 1u) << b;
        return c;
    }
    unsigned c = 0;
    for (int b = 0; b < k; b++) c |= ((vz_le32(grp + 4 * b) >> e) & 1u) << b;
    return c;
}

/* Sets code (k bits) of element e (0..31) into a group's k words wd
 * (ll_code's inverse; the words are stored little-endian). */
static inline void ll_word_code(uint32_t wd[8], int k, int layout, int e, unsigned code) {
    if (layout == 2 || (layout == 1 && e < 24)) {
        wd[e / 8] |= (uint32_t)code << 4 * (e % 8);
        return;
    }
    for (int b = 0; b < k; b++)
        wd[b] |= (uint32_t)((code >> b) & 1u) << (layout == 1 ? 4 * (e - 24) + 3 : e);
}

int vz_lossless_sections_of(const vz_tensor *t, vz_lossless_sections *s) {
    ll_geom g;
    if (!t || !t->params || t->params_size < 2 || !ll_geom_init(&g, t->dtype, t->rows, t->cols, t->params[1])) return 0;
    s->codes = g.codes, s->code_bytes = (uint64_t)t->rows * g.gpr * (uint64_t)g.k * 4;
    s->index = g.index, s->exc = g.exc, s->bpr = g.bpr;
    return 1;
}

static int ll_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    ll_geom g;
    return ll_geom_init(&g, dtype, rows, cols, 3);
}

/* order[0..n) = the values 0..n-1 by count, descending, ties by smaller value. */
static void ll_by_count(const uint64_t *count, int n, uint8_t *order) {
    for (int i = 0; i < n; i++) order[i] = (uint8_t)i;
    for (int i = 1; i < n; i++) { /* insertion sort: stable, so ties keep value order */
        uint8_t v = order[i];
        int j = i;
        while (j > 0 && count[order[j - 1]] < count[v]) { order[j] = order[j - 1]; j--; }
        order[j] = v;
    }
}

/* Picks k (2..6, preferring 3 within 0.5%) and the lut from the H histogram. */
static int ll_choose(const uint64_t hist[256], const ll_geom *g3, int64_t rows, int64_t cols, vz_dtype d,
                     uint8_t order[256]) {
    ll_by_count(hist, 256, order);
    uint64_t best = UINT64_MAX, size3 = 0;
    int bestk = 3;
    for (int k = 2; k <= 6; k++) {
        ll_geom g;
        ll_geom_init(&g, d, rows, cols, k);
        uint64_t covered = 0;
        for (int i = 0; i < (1 << k); i++) covered += hist[order[i]];
        uint64_t size = 8 + ((uint64_t)1 << k) + g.exc + 2 * (g3->n - covered); /* params + data */
        if (k == 3) size3 = size;
        if (size < best) { best = size; bestk = k; }
    }
    return size3 * 1000 <= best * 1005 ? 3 : bestk;
}

/* The packed4 lut (docs/codecs.md): the 8 magnitudes H & 0x7f of largest
 * count over both signs (ties by smaller value), then the same with the
 * sign bit set, so lut[c + 8] = lut[c] ^ 0x80. */
static void ll_choose4(const uint64_t hist[256], uint8_t order[256]) {
    uint64_t both[128];
    uint8_t m[128];
    for (int i = 0; i < 128; i++) both[i] = hist[i] + hist[i | 0x80];
    ll_by_count(both, 128, m);
    for (int i = 0; i < 8; i++) order[i] = m[i], order[i + 8] = (uint8_t)(m[i] | 0x80);
}

static vz_status ll_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                           vz_blob *out) {
    memset(out, 0, sizeof *out);
    /* only kN (code bits: 3, the default, or 4 for packed4): refuse others rather than ignore them */
    VZ_FAIL_IF(o && o->code && o->code != 3 && o->code != 4, VZ_ERR_ARG,
               "lossless: option 'k%d' (code bits) is not 3 or 4", (int)o->code);
    VZ_FAIL_IF(o && o->group, VZ_ERR_ARG, "lossless: option 'g%d' (group size) is not used by this codec",
               (int)o->group);
    VZ_FAIL_IF(o && o->level, VZ_ERR_ARG, "lossless: option '%d' (level) is not used by this codec", (int)o->level);
    ll_geom g;
    VZ_FAIL_IF(!ll_geom_init(&g, dtype, rows, cols, 3), VZ_ERR_ARG, "lossless: bad shape %lldx%lld or dtype",
               (long long)rows, (long long)cols);
    const uint8_t *s = src;
    uint64_t hist[256] = {0};
    const int par = g.n >= 65536; /* threads split the rows: the bytes do not depend on how */
#pragma omp parallel if (par)
    {
        uint64_t h[256] = {0};
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < rows; r++)
            for (uint64_t i = (uint64_t)r * (uint64_t)cols; i < (uint64_t)(r + 1) * (uint64_t)cols; i++)
                h[s[i * g.w + g.w - 1]]++;
#pragma omp critical(vz_ll_hist)
        for (int i = 0; i < 256; i++) hist[i] += h[i];
    }
    uint8_t order[256];
    const int p4 = o && o->code == 4;
    int k = p4 ? 4 : ll_choose(hist, &g, rows, cols, dtype, order), layout = p4 ? 2 : k == 3;
    if (p4) ll_choose4(hist, order);
    ll_geom_init(&g, dtype, rows, cols, k);
    int code_of[256];
    for (int i = 0; i < 256; i++) code_of[i] = -1;
    uint64_t nexc = g.n;
    for (int i = 0; i < (1 << k); i++) { code_of[order[i]] = i; nexc -= hist[order[i]]; }
    VZ_FAIL_IF(nexc > UINT32_MAX, VZ_ERR_UNSUPPORTED, "lossless: %llu exceptions exceed the u32 index",
               (unsigned long long)nexc);
    out->params_size = 8 + (1u << k);
    out->params = calloc(out->params_size, 1);
    out->size = g.exc + 2 * nexc;
    out->data = calloc(out->size, 1);
    if (!out->params || !out->data) { vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "lossless: no memory"); }
    out->params[0] = 1;
    out->params[1] = (uint8_t)k;
    out->params[2] = (uint8_t)layout;
    for (int i = 0; i < (1 << k); i++) out->params[8 + i] = order[i];
    /* each row's first exception: the rows before it, counted in parallel */
    uint64_t *e0 = malloc(sizeof *e0 * ((size_t)rows + 1));
    if (!e0) { vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "lossless: no memory"); }
#pragma omp parallel for schedule(static) if (par)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t n = 0;
        for (uint64_t i = (uint64_t)r * (uint64_t)cols; i < (uint64_t)(r + 1) * (uint64_t)cols; i++)
            n += code_of[s[i * g.w + g.w - 1]] < 0;
        e0[r + 1] = n;
    }
    e0[0] = 0;
    for (int64_t r = 0; r < rows; r++) e0[r + 1] += e0[r];
    uint8_t *d = out->data;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t rr = 0; rr < rows; rr++) {
        const uint64_t r = (uint64_t)rr;
        uint64_t e = e0[r];
        for (uint64_t c0 = 0; c0 < (uint64_t)cols; c0 += 32) { /* one code group: its k words built, then stored */
            const uint64_t n = (uint64_t)cols - c0 < 32 ? (uint64_t)cols - c0 : 32;
            uint32_t wd[8] = {0};
            for (uint64_t c = c0; c < c0 + n; c++) {
                const uint64_t i = r * (uint64_t)cols + c;
                for (int j = 0; j < g.w - 1; j++) d[(uint64_t)j * g.n + i] = s[i * g.w + j];
                const uint8_t h = s[i * g.w + g.w - 1];
                const unsigned code = code_of[h] >= 0 ? (unsigned)code_of[h] : h & ((1u << k) - 1);
                if (c % 1024 == 0) vz_st32(d + g.index + 4 * (r * g.bpr + c / 1024), (uint32_t)e);
                if (code_of[h] < 0) vz_st16(d + g.exc + 2 * e++, (uint16_t)((h >> k) << 10 | (c % 1024)));
                ll_word_code(wd, k, layout, (int)(c - c0), code);
            }
            uint8_t *grp = d + g.codes + (r * g.gpr + c0 / 32) * 4 * (uint64_t)k;
            for (int b = 0; b < k; b++) vz_st32(grp + 4 * b, wd[b]);
        }
    }
    vz_st32(d + g.index + 4 * (g.nidx - 1), (uint32_t)e0[rows]);
    free(e0);
    return VZ_OK;
}

static vz_status ll_check_params(const vz_tensor *t, ll_geom *g, int *layout) {
    VZ_FAIL_IF(!t->params || t->params_size < 8, VZ_ERR_CODEC, "tensor %s: lossless params missing", t->name);
    const uint8_t *p = t->params;
    int k = p[1];
    VZ_FAIL_IF(p[0] != 1, VZ_ERR_CODEC, "tensor %s: lossless version %u", t->name, p[0]);
    VZ_FAIL_IF(k < 1 || k > 8, VZ_ERR_CODEC, "tensor %s: lossless k = %d not in 1..8", t->name, k);
    VZ_FAIL_IF(p[2] > 2 || (p[2] == 1 && k != 3) || (p[2] == 2 && k != 4), VZ_ERR_CODEC,
               "tensor %s: lossless layout %u with k = %d",
               t->name, p[2], k);
    VZ_FAIL_IF(p[3] || vz_le32(p + 4), VZ_ERR_CODEC, "tensor %s: lossless reserved params not 0", t->name);
    VZ_FAIL_IF(t->params_size != 8u + (1u << k), VZ_ERR_CODEC, "tensor %s: lossless params %u bytes, k = %d needs %u",
               t->name, t->params_size, k, 8u + (1u << k));
    uint8_t seen[256] = {0};
    for (int i = 0; i < (1 << k); i++) {
        VZ_FAIL_IF(seen[p[8 + i]]++, VZ_ERR_CODEC, "tensor %s: lossless lut[%d] = %u repeated", t->name, i, p[8 + i]);
    }
    VZ_FAIL_IF(!ll_geom_init(g, t->dtype, t->rows, t->cols, k), VZ_ERR_FORMAT, "tensor %s: lossless bad shape",
               t->name);
    *layout = p[2];
    return VZ_OK;
}

static vz_status ll_check(const vz_tensor *t) {
    ll_geom g;
    int layout;
    VZ_TRY(ll_check_params(t, &g, &layout));
    VZ_FAIL_IF(t->size < g.exc, VZ_ERR_FORMAT, "tensor %s: lossless data %llu bytes < %llu before the exceptions",
               t->name, (unsigned long long)t->size, (unsigned long long)g.exc);
    const uint8_t *idx = t->data + g.index, *exc = t->data + g.exc;
    VZ_FAIL_IF(vz_le32(idx) != 0, VZ_ERR_FORMAT, "tensor %s: lossless exception index does not start at 0", t->name);
    uint64_t total = vz_le32(idx + 4 * (g.nidx - 1));
    VZ_FAIL_IF(t->size != g.exc + 2 * total, VZ_ERR_FORMAT, "tensor %s: lossless data %llu bytes, %llu exceptions need %llu",
               t->name, (unsigned long long)t->size, (unsigned long long)total, (unsigned long long)(g.exc + 2 * total));
    VZ_FAIL_IF(total && g.k < 2, VZ_ERR_CODEC, "tensor %s: lossless k = 1 with exceptions", t->name);
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t b = 0; b + 1 < g.nidx; b++) {
        uint32_t s = vz_le32(idx + 4 * b), e = vz_le32(idx + 4 * b + 4);
        VZ_FAIL_IF(e < s || e > total, VZ_ERR_FORMAT, "tensor %s: lossless exception index[%llu] = %u not monotone",
                   t->name, (unsigned long long)b + 1, e);
        uint64_t blk = b % g.bpr, len = cols - blk * 1024 < 1024 ? cols - blk * 1024 : 1024;
        int prev = -1;
        for (uint32_t x = s; x < e; x++) {
            unsigned v = vz_le16(exc + 2 * (uint64_t)x), off = v & 1023u;
            VZ_FAIL_IF((int)off <= prev || off >= len || (v >> 10) >= (256u >> g.k), VZ_ERR_FORMAT,
                       "tensor %s: lossless exception %u (0x%04x) invalid in block %llu", t->name, x, v,
                       (unsigned long long)b);
            prev = (int)off;
        }
    }
    return VZ_OK;
}

/* H bytes of elements [c0, c0+len) of row r (c0 % 1024 == 0), exceptions patched. */
static void ll_block_ref(const vz_tensor *t, const ll_geom *g, int layout, uint64_t r, uint64_t c0, uint64_t len,
                         uint8_t *hb) {
    const uint8_t *d = t->data, *lut = t->params + 8;
    for (uint64_t c = c0; c < c0 + len; c++)
        hb[c - c0] = lut[ll_code(d + g->codes + (r * g->gpr + c / 32) * 4 * (uint64_t)g->k, g->k, layout, (int)(c % 32))];
    uint64_t b = r * g->bpr + c0 / 1024;
    uint32_t s = vz_le32(d + g->index + 4 * b), e = vz_le32(d + g->index + 4 * b + 4);
    for (uint32_t x = s; x < e; x++) {
        unsigned v = vz_le16(d + g->exc + 2 * (uint64_t)x), off = v & 1023u;
        if (off >= len) continue; /* unreachable after check */
        unsigned code = ll_code(d + g->codes + (r * g->gpr + (c0 + off) / 32) * 4 * (uint64_t)g->k, g->k, layout,
                                (int)((c0 + off) % 32));
        hb[off] = (uint8_t)((v >> 10) << g->k | code);
    }
}

static vz_status ll_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    ll_geom g;
    int layout;
    VZ_TRY(ll_check_params(t, &g, &layout));
    VZ_FAIL_IF(r0 < 0 || r1 > t->rows || r0 > r1, VZ_ERR_ARG, "tensor %s: rows [%lld, %lld)", t->name, (long long)r0,
               (long long)r1);
    uint8_t hb[1024], *o = out;
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        for (uint64_t c0 = 0; c0 < cols; c0 += 1024) {
            uint64_t len = cols - c0 < 1024 ? cols - c0 : 1024;
            ll_block_ref(t, &g, layout, r, c0, len, hb);
            for (uint64_t c = c0; c < c0 + len; c++) {
                uint64_t i = r * cols + c, oi = (r - (uint64_t)r0) * cols + c;
                for (int j = 0; j < g.w - 1; j++) o[oi * g.w + j] = t->data[(uint64_t)j * g.n + i];
                o[oi * g.w + g.w - 1] = hb[c - c0];
            }
        }
    return VZ_OK;
}

/* Exceptions of block b of a row: H = (entry >> 10) << k | code, the code
 * recovered from the lut value the fast path put there (lut entries are
 * distinct, so code_of inverts the lut). One version patches H bytes, one
 * the top byte of decoded f32 values (bf16: the f32's top byte is H). */
static void ll_patch_h(const uint8_t *d, const ll_geom *g, uint64_t b, uint64_t len, const uint8_t *code_of,
                       uint8_t *hb) {
    uint32_t s = vz_le32(d + g->index + 4 * b), e = vz_le32(d + g->index + 4 * b + 4);
    for (uint32_t x = s; x < e; x++) {
        unsigned v = vz_le16(d + g->exc + 2 * (uint64_t)x), off = v & 1023u;
        if (off < len) hb[off] = (uint8_t)((v >> 10) << g->k | code_of[hb[off]]); /* off < len after check */
    }
}

static void ll_patch_f32(const uint8_t *d, const ll_geom *g, uint64_t b, uint64_t len, const uint8_t *code_of,
                         float *o) {
    uint32_t s = vz_le32(d + g->index + 4 * b), e = vz_le32(d + g->index + 4 * b + 4);
    uint8_t *top = (uint8_t *)o + (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 0 : 3); /* the f32's top byte */
    for (uint32_t x = s; x < e; x++) {
        unsigned v = vz_le16(d + g->exc + 2 * (uint64_t)x), off = v & 1023u;
        if (off < len) top[4 * off] = (uint8_t)((v >> 10) << g->k | code_of[top[4 * off]]); /* off < len after check */
    }
}

/* The fast path's per-tensor state: geometry, lut (256 entries, unused
 * ones 0) and its inverse. */
typedef struct ll_fast {
    ll_geom g;
    int k, layout;
    uint8_t lut[256], code_of[256];
} ll_fast;

static void ll_fast_init(ll_fast *f, const vz_tensor *t) {
    const uint8_t *p = t->params;
    f->k = p[1], f->layout = p[2];
    ll_geom_init(&f->g, t->dtype, t->rows, t->cols, f->k);
    memset(f->lut, 0, sizeof f->lut);
    memset(f->code_of, 0, sizeof f->code_of);
    memcpy(f->lut, p + 8, (size_t)1 << f->k);
    for (int c = 0; c < (1 << f->k); c++) f->code_of[f->lut[c]] = (uint8_t)c;
}

/* Elements [c0, c0 + len) (one exception block) of row r to f32: bf16 by
 * the fused kernel, then patched; f16 and f32 through H bytes, patched,
 * then merged with their low byte planes. */
static void ll_block_f32(const vz_tensor *t, const ll_fast *f, const vz_cpu_kernels *kn, uint64_t r, uint64_t c0,
                         uint64_t len, float *o) {
    const uint8_t *d = t->data;
    const ll_geom *g = &f->g;
    uint64_t cols = (uint64_t)t->cols, b = r * g->bpr + c0 / 1024;
    const uint8_t *grp = d + g->codes + (r * g->gpr + c0 / 32) * 4 * (uint64_t)f->k, *lo = d + r * cols + c0;
    uint8_t hb[1024];
    uint16_t hw[1024];
    if (t->dtype == VZ_DTYPE_BF16) {
        kn->ll_bf16(o, grp, lo, (size_t)len, f->k, f->layout, f->lut);
        ll_patch_f32(d, g, b, len, f->code_of, o);
        return;
    }
    kn->ll_groups(hb, grp, (size_t)(len + 31) / 32, f->k, f->layout, f->lut);
    ll_patch_h(d, g, b, len, f->code_of, hb);
    if (t->dtype == VZ_DTYPE_F16) {
        kn->u16_planes(hw, hb, lo, (size_t)len);
        vz_f16_rows_to_f32(o, (const uint8_t *)hw, (size_t)len);
    } else {
        kn->f32_planes(o, hb, lo + 2 * g->n, lo + g->n, lo, (size_t)len);
    }
}

/* Fast decode for the matvec, per block of 1024 elements of a row. */
static void ll_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    const vz_cpu_kernels *kn = vz_cpu_kernels_get();
    ll_fast f;
    ll_fast_init(&f, t);
    uint64_t cols = (uint64_t)t->cols;
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++)
        for (uint64_t c0 = 0; c0 < cols; c0 += 1024)
            ll_block_f32(t, &f, kn, r, c0, cols - c0 < 1024 ? cols - c0 : 1024, out + (r - (uint64_t)r0) * cols + c0);
}

/* The matvec's dot without a row buffer: bf16 blocks go through the fused
 * decode + exceptions + dot kernel; f16 and f32 blocks are decoded into a
 * block buffer and summed by dot_acc. Either way the 16 partial sums and
 * the tree are vz_dot's, so y is bit for bit vz_dot of decode_f32's row. */
static void ll_dot_f32(const vz_tensor *t, int64_t r0, int64_t r1, const float *x, float *y) {
    const vz_cpu_kernels *kn = vz_cpu_kernels_get();
    ll_fast f;
    ll_fast_init(&f, t);
    const uint8_t *d = t->data;
    const ll_geom *g = &f.g;
    uint64_t cols = (uint64_t)t->cols;
    float buf[1024];
    if (t->dtype == VZ_DTYPE_BF16 && cols <= 1024) { /* one block a row: rows in one kernel call */
        uint64_t cs = g->gpr * 4 * (uint64_t)f.k;
        kn->ll_bf16_dot_rows(y, (size_t)(r1 - r0), d + g->codes + (uint64_t)r0 * cs, (size_t)cs, d + (uint64_t)r0 * cols,
                             (size_t)cols, f.k, f.layout, f.lut, d + g->index + 4 * (uint64_t)r0, d + g->exc, x);
        return;
    }
    for (uint64_t r = (uint64_t)r0; r < (uint64_t)r1; r++) {
        float acc[16] = {0};
        for (uint64_t c0 = 0; c0 < cols; c0 += 1024) {
            uint64_t len = cols - c0 < 1024 ? cols - c0 : 1024;
            if (t->dtype != VZ_DTYPE_BF16) {
                ll_block_f32(t, &f, kn, r, c0, len, buf);
                kn->dot_acc(acc, buf, x + c0, (size_t)len);
                continue;
            }
            const uint8_t *idx = d + g->index + 4 * (r * g->bpr + c0 / 1024);
            uint32_t s = vz_le32(idx), e = vz_le32(idx + 4);
            kn->ll_bf16_dot(acc, d + g->codes + (r * g->gpr + c0 / 32) * 4 * (uint64_t)f.k, d + r * cols + c0,
                            (size_t)len, f.k, f.layout, f.lut, d + g->exc + 2 * (uint64_t)s, e - s, x + c0);
        }
        y[r - (uint64_t)r0] = vz_dot_tree(acc);
    }
}

/* Layout 2 (packed4) is written by "lossless:k4" (docs/codecs.md). */
static const char *ll_spec(const vz_tensor *t) {
    return t->params && t->params_size > 2 && t->params[2] == 2 ? "lossless:k4" : "lossless";
}

const vz_codec vz_codec_lossless = {
    .name = "lossless",
    .id = VZ_CODEC_lossless,
    .lossless = 1,
    .doc = "bit-exact; high byte as a k-bit code + exceptions, low bytes raw (~11.3 bits/weight on bf16)",
    .supports = ll_supports,
    .encode = ll_encode,
    .check = ll_check,
    .decode_ref = ll_decode_ref,
    .decode_f32 = ll_decode_f32,
    .dot_f32 = ll_dot_f32,
    .spec = ll_spec,
};
