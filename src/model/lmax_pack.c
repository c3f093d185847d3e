/*
 * lmax_pack.c - lossless-max transport of streamed layers (lmax_pack.h):
 * the transport choice, and host encoding of tensors into packed blocks
 * that the GPU decoder (src/backend/cuda/lmax.cu) reads. Encoding uses the
 * codec's own encoder (src/codec/lossless_max.c) and its layout
 * (vz_lossless_max_layout), so a block's blobs are valid .vz blobs.
 */
#include "model/lmax_pack.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/lossless_max.h"
#include "model/plan.h"

/* Fixed-rate transport unless VZ_STREAM_CODEC=lossless-max. Measured on an H200 (TinyLlama, bench/results/
 * 2026-11-28-lmax-stream-h200.md): lossless-max moves 6.3% fewer bytes per layer, but its decoded slot costs a
 * resident layer (per token: 1.9% fewer bytes at 600 MiB, 0.5% more at 1 GiB) and its GPU decode (1.18 ms per
 * layer) is slower than the copy it saves: 12% (600 MiB) and 17% (1 GiB) fewer tokens/s. */
#define VZ_LMAX_DEFAULT 0

vz_status vz_lmax_transport(const vz_model *m, vz_residency r, int32_t *on) {
    *on = 0;
    const char *e = getenv("VZ_STREAM_CODEC");
    int want = VZ_LMAX_DEFAULT;
    if (e && *e) {
        VZ_FAIL_IF(strcmp(e, "lossless") && strcmp(e, "lossless-max"), VZ_ERR_ARG,
                   "VZ_STREAM_CODEC=%s: want lossless or lossless-max", e);
        want = !strcmp(e, "lossless-max");
    }
    if (!want || r != VZ_RESIDENCY_COMPRESSED) return VZ_OK;
    for (int32_t l = 0; l < m->cfg.n_layers; l++) {
        const vz_layer *L = &m->layers[l];
        const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
        for (int i = 0; i < 7; i++)
            if (ts[i]->codec != VZ_CODEC_lossless) return VZ_OK;
    }
    *on = 1;
    return VZ_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* t as a lossless-max blob in *b (t's own when it is one: params/data borrowed, *own = 0). */
static vz_status encode_one(const vz_tensor *t, vz_blob *b, int *own) {
    memset(b, 0, sizeof *b);
    *own = 0;
    VZ_TRY(vz_tensor_check(t));
    if (t->codec == VZ_CODEC_lossless_max) {
        b->params = (uint8_t *)t->params, b->params_size = t->params_size;
        b->data = (uint8_t *)t->data, b->size = t->size;
        return VZ_OK;
    }
    const vz_codec *cd = vz_codec_by_id(t->codec), *lm = vz_codec_by_id(VZ_CODEC_lossless_max);
    VZ_FAIL_IF(!cd->lossless, VZ_ERR_UNSUPPORTED, "tensor %s: codec %s is lossy: no lossless-max transport",
               t->name, cd->name);
    const uint64_t n = (uint64_t)t->rows * (uint64_t)t->cols;
    void *src = malloc(n * (uint64_t)vz_dtype_size(t->dtype));
    VZ_FAIL_IF(!src, VZ_ERR_NOMEM, "tensor %s: no memory to re-encode it", t->name);
    vz_status st = cd->decode_ref(t, 0, t->rows, src);
    if (st == VZ_OK) st = lm->encode(src, t->dtype, t->rows, t->cols, NULL, b);
    free(src);
    VZ_TRY(st);
    *own = 1;
    uint8_t *d = realloc(b->data, b->size ? b->size : 1); /* the encoder's buffer is its worst case */
    if (d) b->data = d;
    return VZ_OK;
}

/* Fills d (offsets data, tab given) from the layout of blob b of t, and its table into tab. */
static vz_status describe(const vz_tensor *t, const vz_blob *b, vz_lmax_tensor *d, uint8_t *tab) {
    vz_tensor e = *t;
    e.codec = VZ_CODEC_lossless_max, e.data = b->data, e.size = b->size, e.params = b->params;
    e.params_size = b->params_size;
    vz_lmax_layout lay;
    VZ_TRY(vz_lossless_max_layout(&e, &lay));
    d->n = (uint64_t)t->rows * (uint64_t)t->cols, d->cols = (uint64_t)t->cols;
    d->chunk_rows = lay.chunk_rows, d->nchunks = lay.nchunks, d->raw = lay.raw, d->streams = lay.streams;
    d->dtype = (int32_t)t->dtype, d->scale = lay.scale, d->lo = lay.lo, d->nsym = lay.nsym, d->rbits = lay.rbits;
    d->nblk = (int32_t)((lay.nchunks + VZ_LMAX_CTA_CHUNKS - 1) / VZ_LMAX_CTA_CHUNKS);
    memset(tab, 0, VZ_LMAX_TAB);
    for (int s = 0; s < lay.nsym; s++) {
        uint32_t v = (uint32_t)lay.start[s] << 16 | lay.freq[s];
        memcpy(tab + 4 * s, &v, 4); /* little-endian hosts only, as the CUDA backend */
    }
    return VZ_OK;
}

static uint64_t al(uint64_t x) { return (x + VZ_PLAN_ALIGN - 1) / VZ_PLAN_ALIGN * VZ_PLAN_ALIGN; }

/* Group g's block from its blobs: layout, then copy. */
static vz_status pack_group(const vz_tensor *const *ts, int32_t nt, const uint64_t *out_off, const vz_blob *bl,
                            vz_lmax_block *blk, uint8_t **data) {
    memset(blk, 0, sizeof *blk);
    blk->nt = nt;
    uint64_t o = 0;
    for (int32_t i = 0; i < nt; i++) {
        blk->t[i].data = o, blk->t[i].tab = al(o + bl[i].size), blk->t[i].out = out_off[i];
        o = al(blk->t[i].tab + VZ_LMAX_TAB);
    }
    blk->size = o;
    *data = calloc(o ? o : 1, 1);
    VZ_FAIL_IF(!*data, VZ_ERR_NOMEM, "lossless-max transport: no memory for a %llu-byte block",
               (unsigned long long)o);
    for (int32_t i = 0; i < nt; i++) {
        memcpy(*data + blk->t[i].data, bl[i].data, bl[i].size);
        vz_status st = describe(ts[i], &bl[i], &blk->t[i], *data + blk->t[i].tab);
        if (st != VZ_OK) {
            free(*data), *data = NULL;
            return st;
        }
        if (blk->t[i].scale > blk->max_scale) blk->max_scale = blk->t[i].scale;
    }
    return VZ_OK;
}

/* Encodes the n tensors into bl[] in parallel; own[j]: bl[j] is owned. */
static vz_status encode_all(const vz_tensor *const *ts, int64_t n, vz_blob *bl, int *own, const char *what) {
    vz_status first = VZ_OK;
    int64_t bad = -1, done = 0;
    const double t0 = now_s();
    int shown = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t j = 0; j < n; j++) {
        vz_status st = encode_one(ts[j], &bl[j], &own[j]);
        int64_t d;
#pragma omp atomic capture
        d = ++done;
#pragma omp critical(vz_lmax_progress)
        {
            if (st != VZ_OK && bad < 0) bad = j, first = st;
            if (now_s() - t0 > 1.0 || (shown && d == n)) {
                fprintf(stderr, "\r%s: encoding lossless-max %lld/%lld tensors (%.1f s)%s", what, (long long)d,
                        (long long)n, now_s() - t0, d == n ? "\n" : "");
                shown = 1;
            }
        }
    }
    if (bad >= 0)
        return VZ_FAIL(first, "tensor %s: lossless-max encode failed (%s)", ts[bad]->name, vz_status_name(first));
    return VZ_OK;
}

vz_status vz_lmax_encode(const vz_tensor *const *ts, int32_t ngroups, int32_t nt, const uint64_t *out_off,
                         vz_lmax_block *blocks, uint8_t **data, const char *what) {
    VZ_FAIL_IF(ngroups < 0 || nt < 1 || nt > VZ_LMAX_MAXT, VZ_ERR_ARG, "lossless-max transport: %d groups of %d",
               (int)ngroups, (int)nt);
    const int64_t n = (int64_t)ngroups * nt;
    for (int32_t g = 0; g < ngroups; g++) data[g] = NULL;
    vz_blob *bl = calloc((size_t)n + 1, sizeof *bl);
    int *own = calloc((size_t)n + 1, sizeof *own);
    vz_status st = bl && own ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "lossless-max transport: tables");
    if (st == VZ_OK) st = encode_all(ts, n, bl, own, what);
    for (int32_t g = 0; st == VZ_OK && g < ngroups; g++)
        st = pack_group(ts + (int64_t)g * nt, nt, out_off + (int64_t)g * nt, bl + (int64_t)g * nt, &blocks[g],
                        &data[g]);
    for (int64_t j = 0; bl && own && j < n; j++)
        if (own[j]) vz_blob_free(&bl[j]);
    free(bl), free(own);
    if (st != VZ_OK)
        for (int32_t g = 0; g < ngroups; g++) free(data[g]), data[g] = NULL;
    return st;
}

/* Scalar decode of tensor d of a block (docs/codecs.md section 2), chunk by chunk. */
static void decode_tensor_ref(const vz_lmax_tensor *d, const uint8_t *data, uint8_t *dst) {
    const uint8_t *blob = data + d->data, *tab = data + d->tab, *plane = blob + d->raw;
    uint32_t fs[256];
    for (int s = 0; s < d->nsym; s++) fs[s] = vz_le32(tab + 4 * s);
    const int m = d->dtype == VZ_DTYPE_F32 ? 23 : d->dtype == VZ_DTYPE_F16 ? 10 : 7;
    const uint32_t mask = (1u << d->scale) - 1;
    for (uint64_t c = 0; c < d->nchunks; c++) {
        const uint8_t *p = blob + d->streams + vz_le64(blob + 8 * c), *end = blob + d->streams + vz_le64(blob + 8 * c + 8);
        uint32_t x = vz_le32(p);
        p += 4;
        uint64_t i0 = c * d->chunk_rows * d->cols, i1 = i0 + d->chunk_rows * d->cols < d->n ? i0 + d->chunk_rows * d->cols : d->n;
        for (uint64_t i = i0; i < i1; i++) {
            uint32_t slot = x & mask;
            int s = 0;
            /* the last symbol starting at or below slot (a zero-frequency one shares the next one's start) */
            while (s + 1 < d->nsym && (fs[s + 1] >> 16) <= slot) s++;
            x = (fs[s] & 0xffffu) * (x >> d->scale) + slot - (fs[s] >> 16);
            for (int k = 0; k < 2 && x < (1u << 23); k++) x = x << 8 | (p < end ? *p++ : 0u);
            uint64_t bit = i * (uint64_t)d->rbits, v = 0;
            for (int k = 0; k < (int)(bit % 8 + (uint64_t)d->rbits + 7) / 8; k++) v |= (uint64_t)plane[bit / 8 + k] << 8 * k;
            uint32_t r = (uint32_t)(v >> bit % 8) & ((1u << d->rbits) - 1), e = (uint32_t)(d->lo + s);
            uint32_t bits = d->dtype == VZ_DTYPE_F32 ? (r >> 23) << 31 | e << 23 | (r & 0x7fffffu)
                                                     : (r >> m) << 15 | e << m | (r & ((1u << m) - 1));
            if (d->dtype == VZ_DTYPE_F32) vz_st32(dst + d->out + 4 * i, bits);
            else vz_st16(dst + d->out + 2 * i, (uint16_t)bits);
        }
    }
}

void vz_lmax_decode_ref(const vz_lmax_block *b, const uint8_t *data, uint8_t *dst) {
    for (int32_t i = 0; i < b->nt; i++) decode_tensor_ref(&b->t[i], data, dst);
}
