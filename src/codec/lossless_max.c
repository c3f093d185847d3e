/*
 * lossless_max.c - codec 2 `lossless-max`: the exponent field (8 bits for
 * bf16/f32, 5 for f16) is entropy coded with rANS (32-bit state, byte-wise
 * renormalization, as in ryg_rans), the sign+mantissa bits are stored raw
 * as a fixed-width bit plane. Chunks of whole rows have their own rANS
 * stream and a u64 offset, so a row range decodes alone. For storage and
 * PCIe streaming. docs/codecs.md section 2 is the normative layout.
 */
#include <stdlib.h>
#include <string.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/lossless_max.h"

#define LM_CHUNK_ELEMS 4096
#define LM_RANS_L (1u << 23)

typedef struct lm_geom {
    uint64_t n, chunk_rows, nchunks, raw, streams;
    int ebits, rbits, scale, lo, nsym;
    uint16_t freq[256], start[256];
} lm_geom;

static void lm_fields(vz_dtype d, int *ebits, int *rbits) {
    *ebits = d == VZ_DTYPE_F16 ? 5 : 8;
    *rbits = d == VZ_DTYPE_F32 ? 24 : d == VZ_DTYPE_F16 ? 11 : 8;
}

static int lm_geom_init(lm_geom *g, vz_dtype d, int64_t rows, int64_t cols, uint64_t chunk_rows) {
    if (rows < 1 || cols < 1 || !vz_dtype_ok(d) || chunk_rows < 1 || chunk_rows > (uint64_t)rows) return 0;
    if (!vz_mul_ok((uint64_t)rows, (uint64_t)cols, &g->n) || g->n > ((uint64_t)1 << 40)) return 0;
    lm_fields(d, &g->ebits, &g->rbits);
    g->chunk_rows = chunk_rows;
    g->nchunks = ((uint64_t)rows + chunk_rows - 1) / chunk_rows;
    g->raw = vz_al16((g->nchunks + 1) * 8);
    g->streams = vz_al16(g->raw + (g->n * (uint64_t)g->rbits + 7) / 8);
    return 1;
}

/* Splits element i into (exponent symbol, raw sign+mantissa bits). */
static inline void lm_split(const uint8_t *s, vz_dtype d, uint64_t i, unsigned *sym, uint32_t *raw) {
    if (d == VZ_DTYPE_F32) {
        uint32_t u = vz_le32(s + 4 * i);
        *sym = (u >> 23) & 0xffu;
        *raw = (u >> 31) << 23 | (u & 0x7fffffu);
    } else {
        uint16_t h = vz_le16(s + 2 * i);
        int m = d == VZ_DTYPE_F16 ? 10 : 7;
        *sym = (h & 0x7fffu) >> m;
        *raw = (uint32_t)(h >> 15) << m | (h & ((1u << m) - 1));
    }
}

static inline uint32_t lm_join(vz_dtype d, unsigned sym, uint32_t raw) {
    if (d == VZ_DTYPE_F32) return (raw >> 23) << 31 | (uint32_t)sym << 23 | (raw & 0x7fffffu);
    int m = d == VZ_DTYPE_F16 ? 10 : 7;
    return (raw >> m) << 15 | (uint32_t)sym << m | (raw & ((1u << m) - 1));
}

static int lm_supports(vz_dtype dtype, int64_t rows, int64_t cols) {
    lm_geom g;
    return lm_geom_init(&g, dtype, rows, cols, 1);
}

/* Normalizes counts to frequencies summing to 2^scale, each used symbol >= 1. */
static void lm_normalize(const uint64_t *cnt, int nsym, uint64_t n, int scale, uint16_t *freq) {
    int64_t m = (int64_t)1 << scale, sum = 0;
    for (int s = 0; s < nsym; s++) {
        freq[s] = 0;
        if (!cnt[s]) continue;
        uint64_t f = (cnt[s] * (uint64_t)m + n / 2) / n;
        freq[s] = (uint16_t)(f < 1 ? 1 : f);
        sum += freq[s];
    }
    while (sum != m) { /* move the difference onto the largest frequencies */
        int big = 0;
        for (int s = 1; s < nsym; s++) if (freq[s] > freq[big]) big = s;
        int64_t d = m - sum;
        if (d < 0 && freq[big] + d < 1) d = 1 - (int64_t)freq[big];
        freq[big] = (uint16_t)(freq[big] + d);
        sum += d;
    }
}

/* Writes the rANS stream of elements [i0, i1) ending at *end; returns its start. */
static uint8_t *lm_rans_chunk(const uint8_t *src, vz_dtype d, uint64_t i0, uint64_t i1, const lm_geom *g,
                              uint8_t *end) {
    uint32_t x = LM_RANS_L;
    uint8_t *p = end;
    for (uint64_t i = i1; i-- > i0;) {
        unsigned sym;
        uint32_t raw;
        lm_split(src, d, i, &sym, &raw);
        uint32_t f = g->freq[sym - (unsigned)g->lo], st = g->start[sym - (unsigned)g->lo];
        uint32_t xmax = ((LM_RANS_L >> g->scale) << 8) * f;
        while (x >= xmax) { *--p = (uint8_t)x; x >>= 8; }
        x = ((x / f) << g->scale) + (x % f) + st;
    }
    p -= 4;
    vz_st32(p, x);
    return p;
}

static uint64_t lm_params(const lm_geom *g, uint8_t *p) {
    uint64_t k = 12;
    if (p) {
        memset(p, 0, 12);
        p[0] = 1; p[1] = (uint8_t)g->scale; p[2] = (uint8_t)g->lo;
        vz_st16(p + 4, (uint16_t)g->nsym);
        vz_st32(p + 8, (uint32_t)g->chunk_rows);
    }
    for (int s = 0; s < g->nsym; s++)
        for (uint32_t v = g->freq[s];; v >>= 7) {
            if (p) p[k] = (uint8_t)((v & 127u) | (v > 127 ? 128u : 0));
            k++;
            if (v <= 127) break;
        }
    return k;
}

static vz_status lm_encode(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                           vz_blob *out) {
    memset(out, 0, sizeof *out);
    /* no options: refuse them rather than ignore them (the codec picks its own table and chunks) */
    VZ_FAIL_IF(o && o->code, VZ_ERR_ARG, "lossless-max: option 'k%d' (code bits) is not used by this codec", (int)o->code);
    VZ_FAIL_IF(o && o->group, VZ_ERR_ARG, "lossless-max: option 'g%d' (group size) is not used by this codec",
               (int)o->group);
    VZ_FAIL_IF(o && o->level, VZ_ERR_ARG, "lossless-max: option '%d' (level) is not used by this codec",
               (int)o->level);
    lm_geom g;
    uint64_t cr = LM_CHUNK_ELEMS / (uint64_t)(cols > 0 ? cols : 1);
    cr = cr < 1 ? 1 : cr > (uint64_t)rows ? (uint64_t)rows : cr;
    VZ_FAIL_IF(!lm_geom_init(&g, dtype, rows, cols, cr), VZ_ERR_ARG, "lossless-max: bad shape or dtype");
    uint64_t cnt[256] = {0};
    for (uint64_t i = 0; i < g.n; i++) {
        unsigned sym; uint32_t raw;
        lm_split(src, dtype, i, &sym, &raw);
        cnt[sym]++;
    }
    int lo = 0, hi = 255;
    while (!cnt[lo]) lo++;
    while (!cnt[hi]) hi--;
    g.lo = lo; g.nsym = hi - lo + 1;
    g.scale = g.n < 4096 ? 12 : 14;
    lm_normalize(cnt + lo, g.nsym, g.n, g.scale, g.freq);
    for (int s = 0, a = 0; s < g.nsym; s++) { g.start[s] = (uint16_t)a; a += g.freq[s]; }
    /* worst case per element: 4 bytes of renormalization; plus a state per chunk */
    uint64_t cap = g.streams + g.n * 4 + g.nchunks * 8 + 16;
    out->params_size = (uint32_t)lm_params(&g, NULL);
    out->params = malloc(out->params_size);
    out->data = calloc(cap, 1);
    uint8_t *tmp = malloc(cr * (uint64_t)cols * 4 + 16);
    if (!out->params || !out->data || !tmp) { free(tmp); vz_blob_free(out); return VZ_FAIL(VZ_ERR_NOMEM, "lossless-max: no memory"); }
    lm_params(&g, out->params);
    for (uint64_t i = 0; i < g.n; i++) {
        unsigned sym; uint32_t raw;
        lm_split(src, dtype, i, &sym, &raw);
        for (int b = 0; b < g.rbits; b++) /* LSB-first bit plane */
            out->data[g.raw + (i * (uint64_t)g.rbits + (uint64_t)b) / 8] |= (uint8_t)(((raw >> b) & 1u) << ((i * (uint64_t)g.rbits + (uint64_t)b) % 8));
    }
    uint64_t pos = 0, tcap = cr * (uint64_t)cols * 4 + 16;
    for (uint64_t c = 0; c < g.nchunks; c++) {
        uint64_t i0 = c * cr * (uint64_t)cols, i1 = i0 + cr * (uint64_t)cols < g.n ? i0 + cr * (uint64_t)cols : g.n;
        uint8_t *b = lm_rans_chunk(src, dtype, i0, i1, &g, tmp + tcap);
        uint64_t len = (uint64_t)(tmp + tcap - b);
        vz_st64(out->data + 8 * c, pos);
        memcpy(out->data + g.streams + pos, b, len);
        pos += len;
    }
    vz_st64(out->data + 8 * g.nchunks, pos);
    out->size = g.streams + pos;
    free(tmp);
    return VZ_OK;
}

/* Parses and validates the params into g (frequencies, starts). */
static vz_status lm_read_params(const vz_tensor *t, lm_geom *g) {
    const uint8_t *p = t->params;
    VZ_FAIL_IF(!p || t->params_size < 12, VZ_ERR_CODEC, "tensor %s: lossless-max params too short", t->name);
    VZ_FAIL_IF(p[0] != 1 || p[3] || vz_le16(p + 6), VZ_ERR_CODEC, "tensor %s: lossless-max version %u or reserved invalid", t->name, p[0]);
    VZ_FAIL_IF(!lm_geom_init(g, t->dtype, t->rows, t->cols, vz_le32(p + 8)), VZ_ERR_CODEC,
               "tensor %s: lossless-max chunk_rows %u invalid", t->name, vz_le32(p + 8));
    g->scale = p[1]; g->lo = p[2]; g->nsym = vz_le16(p + 4);
    VZ_FAIL_IF(g->scale < 10 || g->scale > 15, VZ_ERR_CODEC, "tensor %s: lossless-max scale_bits %d", t->name, g->scale);
    VZ_FAIL_IF(g->nsym < 1 || g->lo + g->nsym > (1 << g->ebits), VZ_ERR_CODEC,
               "tensor %s: lossless-max symbols %d..%d outside the exponent range", t->name, g->lo, g->lo + g->nsym - 1);
    uint64_t k = 12, sum = 0;
    for (int s = 0; s < g->nsym; s++) {
        uint32_t v = 0;
        for (int sh = 0;; sh += 7) {
            VZ_FAIL_IF(k >= t->params_size || sh > 14, VZ_ERR_CODEC, "tensor %s: lossless-max freq[%d] truncated", t->name, s);
            uint8_t b = p[k++];
            v |= (uint32_t)(b & 127u) << sh;
            if (!(b & 128u)) break;
        }
        VZ_FAIL_IF(v > (1u << g->scale), VZ_ERR_CODEC, "tensor %s: lossless-max freq[%d] = %u", t->name, s, v);
        g->start[s] = (uint16_t)sum;
        g->freq[s] = (uint16_t)v;
        sum += v;
        VZ_FAIL_IF(sum > (1u << g->scale), VZ_ERR_CODEC, "tensor %s: lossless-max frequencies exceed 2^%d", t->name, g->scale);
    }
    VZ_FAIL_IF(sum != (1u << g->scale) || k != t->params_size, VZ_ERR_CODEC,
               "tensor %s: lossless-max frequencies sum to %llu (want 2^%d) or params have %u trailing bytes", t->name,
               (unsigned long long)sum, g->scale, (unsigned)(t->params_size - k));
    return VZ_OK;
}

static vz_status lm_check(const vz_tensor *t) {
    lm_geom g;
    VZ_TRY(lm_read_params(t, &g));
    VZ_FAIL_IF(t->size < g.streams, VZ_ERR_FORMAT, "tensor %s: lossless-max data %llu bytes < %llu before the streams",
               t->name, (unsigned long long)t->size, (unsigned long long)g.streams);
    uint64_t avail = t->size - g.streams;
    VZ_FAIL_IF(vz_le64(t->data) != 0 || vz_le64(t->data + 8 * g.nchunks) != avail, VZ_ERR_FORMAT,
               "tensor %s: lossless-max index does not span the %llu stream bytes", t->name, (unsigned long long)avail);
    for (uint64_t c = 0; c < g.nchunks; c++) {
        uint64_t a = vz_le64(t->data + 8 * c), b = vz_le64(t->data + 8 * c + 8);
        VZ_FAIL_IF(b < a + 4 || b > avail, VZ_ERR_FORMAT, "tensor %s: lossless-max index[%llu] = %llu invalid", t->name,
                   (unsigned long long)c + 1, (unsigned long long)b);
    }
    return VZ_OK;
}

vz_status vz_lossless_max_layout(const vz_tensor *t, vz_lmax_layout *out) {
    lm_geom g;
    memset(&g, 0, sizeof g);
    VZ_FAIL_IF(t->codec != VZ_CODEC_lossless_max, VZ_ERR_ARG, "tensor %s: codec %u is not lossless-max", t->name,
               (unsigned)t->codec);
    VZ_TRY(lm_check(t));
    VZ_TRY(lm_read_params(t, &g));
    memset(out, 0, sizeof *out);
    out->chunk_rows = g.chunk_rows, out->nchunks = g.nchunks, out->raw = g.raw, out->streams = g.streams;
    out->scale = g.scale, out->lo = g.lo, out->nsym = g.nsym, out->ebits = g.ebits, out->rbits = g.rbits;
    memcpy(out->freq, g.freq, sizeof out->freq);
    memcpy(out->start, g.start, sizeof out->start);
    return VZ_OK;
}

static inline uint32_t lm_raw_bits(const uint8_t *plane, uint64_t i, int rbits) {
    if (rbits == 8) return plane[i];
    uint64_t bit = i * (uint64_t)rbits, v = 0;
    int nbytes = (int)(bit % 8 + (uint64_t)rbits + 7) / 8; /* only bytes holding this element's bits */
    for (int k = 0; k < nbytes; k++) v |= (uint64_t)plane[bit / 8 + (uint64_t)k] << 8 * k;
    return (uint32_t)(v >> bit % 8) & ((1u << rbits) - 1);
}

/* Decodes elements of rows [r0, r1) as source bit patterns (u32 each) into
 * emit(i - r0*cols, bits). Reads stay inside each chunk's stream. */
static void lm_decode_rows(const vz_tensor *t, const lm_geom *g, const uint8_t *slot2sym, int64_t r0, int64_t r1,
                           void (*emit)(void *, uint64_t, uint32_t), void *ctx) {
    uint64_t cols = (uint64_t)t->cols, first = (uint64_t)r0 * cols, last = (uint64_t)r1 * cols;
    uint32_t mask = (1u << g->scale) - 1;
    for (uint64_t c = (uint64_t)r0 / g->chunk_rows; c < g->nchunks && c * g->chunk_rows < (uint64_t)r1; c++) {
        const uint8_t *p = t->data + g->streams + vz_le64(t->data + 8 * c);
        const uint8_t *end = t->data + g->streams + vz_le64(t->data + 8 * c + 8);
        uint32_t x = vz_le32(p);
        p += 4;
        uint64_t i0 = c * g->chunk_rows * cols, i1 = i0 + g->chunk_rows * cols < last ? i0 + g->chunk_rows * cols : last;
        for (uint64_t i = i0; i < i1; i++) {
            uint32_t slot = x & mask;
            unsigned s = slot2sym[slot];
            x = g->freq[s] * (x >> g->scale) + slot - g->start[s];
            for (int k = 0; k < 2 && x < LM_RANS_L; k++) x = x << 8 | (p < end ? *p++ : 0);
            if (i >= first) emit(ctx, i - first, lm_join(t->dtype, s + (unsigned)g->lo, lm_raw_bits(t->data + g->raw, i, g->rbits)));
        }
    }
}

static void lm_slots(const lm_geom *g, uint8_t *slot2sym) {
    for (int s = 0; s < g->nsym; s++) memset(slot2sym + g->start[s], s, g->freq[s]);
}

static void lm_emit_bytes(void *ctx, uint64_t i, uint32_t bits) {
    const vz_tensor *t = ((const vz_tensor **)ctx)[0];
    uint8_t *o = ((uint8_t **)ctx)[1];
    if (t->dtype == VZ_DTYPE_F32) vz_st32(o + 4 * i, bits);
    else vz_st16(o + 2 * i, (uint16_t)bits);
}

static vz_status lm_decode_ref(const vz_tensor *t, int64_t r0, int64_t r1, void *out) {
    lm_geom g;
    VZ_TRY(lm_check(t));
    VZ_TRY(lm_read_params(t, &g));
    VZ_FAIL_IF(r0 < 0 || r1 > t->rows || r0 > r1, VZ_ERR_ARG, "tensor %s: rows [%lld, %lld)", t->name, (long long)r0,
               (long long)r1);
    uint8_t slot2sym[1 << 15];
    lm_slots(&g, slot2sym);
    void *ctx[2] = {(void *)t, out};
    lm_decode_rows(t, &g, slot2sym, r0, r1, lm_emit_bytes, ctx);
    return VZ_OK;
}

static void lm_emit_f32(void *ctx, uint64_t i, uint32_t bits) {
    const vz_tensor *t = ((const vz_tensor **)ctx)[0];
    float *o = ((float **)ctx)[1];
    o[i] = t->dtype == VZ_DTYPE_F32 ? vz_bits_f32(bits)
           : t->dtype == VZ_DTYPE_BF16 ? vz_bf16_to_f32((uint16_t)bits) : vz_f16_to_f32_fast((uint16_t)bits);
}

static void lm_decode_f32(const vz_tensor *t, int64_t r0, int64_t r1, float *out) {
    lm_geom g;
    if (lm_read_params(t, &g) != VZ_OK) return; /* unreachable after check */
    uint8_t slot2sym[1 << 15];
    lm_slots(&g, slot2sym);
    void *ctx[2] = {(void *)t, out};
    lm_decode_rows(t, &g, slot2sym, r0, r1, lm_emit_f32, ctx);
}

const vz_codec vz_codec_lossless_max = {
    .name = "lossless-max",
    .id = VZ_CODEC_lossless_max,
    .lossless = 1,
    .doc = "bit-exact; rANS-coded exponents + raw sign/mantissa (smallest; for storage and streaming)",
    .supports = lm_supports,
    .encode = lm_encode,
    .check = lm_check,
    .decode_ref = lm_decode_ref,
    .decode_f32 = lm_decode_f32,
};
