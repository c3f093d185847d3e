/*
 * stream.cu - layer streaming and the decoded-layer LRU cache (stream.h,
 * issue #5). Streaming: a streamed layer's tensors, in their .vz encoding,
 * are copied as ONE block (vz_plan_layer_pack layout) from pinned host
 * memory into one of two device slots on a copy stream; the compute stream
 * waits for the copy-done event before the layer and records a slot-free
 * event after it, which the copy into that slot two layers later waits
 * for. The matvecs read the same bytes as a resident tensor's, so logits are
 * bitwise those of the resident run. Cache: slots of decoded (raw) layers,
 * filled by copying the encoded layer into a staging slot and decoding it
 * on the GPU with vz_cuda_rows (the codec's device decoder), exact.
 * lossless-max transport (model/lmax_pack.h): a streamed layer of a
 * lossless .vz travels re-encoded as lossless-max and is decoded (lmax.cu)
 * on the compute stream into one raw slot before its matvecs; its copy slot
 * is free once decoded. Raw and lossless matvecs give the same bits.
 * Raw bf16 tensors of the fast path lie in the slots in the GPU column
 * order, as resident ones do (vz_cuda_tensor_describe, cuda.h
 * vz_cuda_gpu_col): a layer packed on the host is imaged in it
 * (vz_cuda_tensor_image), and the cache's decode, which writes rows, is put
 * in it in place (vz_cuda_raw_gpu_order). The lossless-max slot keeps the
 * file's order: its decoder writing the GPU order cost that streaming
 * 7.5%, and a permutation after the decode 4% on an H200
 * (bench/results/2026-12-04-session67-h200.md).
 */
#include <cuda_fp16.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/lmax.h"
#include "backend/cuda/stream.h"

extern "C" {
#include "codec/codec.h"
#include "core/status.h"
#include "model/plan.h"
}

#define NSLOT 2

struct vz_stream {
    int32_t nl, first, decoded, ncache;
    int64_t mcols;          /* the model's dim: its tensors' paths (vz_cuda_tensor_describe) */
    cudaStream_t cp;
    uint8_t *host;          /* pinned: layers first..nl-1 packed */
    uint64_t *host_off;     /* (nl) offset of layer l in host (l >= first) */
    uint64_t *size;         /* (nl) packed bytes of layer l */
    uint64_t (*off)[14];    /* (nl) vz_plan_layer_pack offsets, as streamed */
    uint64_t (*doff)[14];   /* (nl) decoded offsets (cache) */
    vz_cuda_tensor (*desc)[7]; /* (nl) tensors with data relative to slot base 0 (as streamed) */
    vz_cuda_tensor (*ddesc)[7]; /* (nl) cache: decoded raw tensors, relative */
    uint8_t *slot[NSLOT];   /* streaming slots / cache staging slots */
    cudaEvent_t fork, copied[NSLOT], freed[NSLOT];
    int32_t freed_rec[NSLOT]; /* freed[i] recorded since the last begin (captures: only those) */
    int32_t next_staging;
    int32_t *pending;       /* (nl) cache: staging slot holding layer l's copy, or -1 */
    uint8_t **cslot;        /* (ncache) decoded layer slots */
    int32_t *cslot_layer;   /* (ncache) layer held, -1: none */
    uint64_t *cslot_used;   /* (ncache) LRU clock */
    int32_t *layer_cslot;   /* (nl) cache slot of layer l, -1: not cached */
    uint64_t clock, eager_bytes, step_bytes;
    float *tmp;             /* cache: f32 rows of one decode chunk */
    int32_t *ids;           /* cache: 0..maxrows-1 */
    int32_t maxrows;
    int32_t lmax;           /* streamed layers travel as lossless-max blocks */
    vz_lmax_block *lblk;    /* (nl) lmax: layer l's block (decodes into the doff layout) */
    uint8_t *dslot;         /* lmax: the decoded layer */
};

#define CU_CHECK(call, what)                                                                                  \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) return VZ_FAIL(VZ_ERR_CUDA, "layer streaming: %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

static const vz_tensor *layer_tensor(const vz_layer *L, int i) {
    const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
    return ts[i];
}

/* t as the raw tensor of its decoded dtype (no data). */
static vz_tensor decoded_view(const vz_tensor *t) {
    vz_tensor r = *t;
    r.codec = VZ_CODEC_raw, r.params = NULL, r.params_size = 0, r.dtype = vz_plan_decoded_dtype(t);
    r.size = (uint64_t)t->rows * (uint64_t)t->cols * (uint64_t)vz_dtype_size(r.dtype);
    return r;
}

/* t decoded on the host into dst as desc (a raw tensor of its decoded
 * dtype) holds it: row-major, or through a copy in the GPU column order. */
static vz_status decode_image(const vz_cuda_tensor *desc, const vz_tensor *t, uint8_t *dst) {
    if (desc->layout != VZ_CUDA_RAW_GPU) return vz_codec_by_id(t->codec)->decode_ref(t, 0, t->rows, dst);
    vz_tensor r = decoded_view(t);
    uint8_t *tmp = (uint8_t *)malloc(r.size);
    VZ_FAIL_IF(!tmp, VZ_ERR_NOMEM, "tensor %s: %llu bytes to decode", t->name, (unsigned long long)r.size);
    vz_status st = vz_codec_by_id(t->codec)->decode_ref(t, 0, t->rows, tmp);
    r.data = tmp;
    if (st == VZ_OK) st = vz_cuda_tensor_image(desc, &r, dst);
    free(tmp);
    return st;
}

/* Layer l packed into dst (pinned) as streamed: encoded, or decoded on the host. */
static vz_status pack_layer(vz_stream *sm, const vz_layer *L, int32_t l, uint8_t *dst, const uint8_t *lm) {
    if (sm->lmax) memcpy(dst, lm, sm->size[l]);
    for (int i = 0; i < 7; i++) {
        const vz_tensor *t = layer_tensor(L, i);
        VZ_TRY(vz_tensor_check(t));
        vz_tensor d = sm->decoded || sm->lmax ? decoded_view(t) : *t;
        VZ_TRY(vz_cuda_tensor_describe(&sm->desc[l][i], &d, sm->mcols));
        if (sm->lmax) { /* the decoder writes rows, so its slot keeps the file's order (top) */
            if (sm->desc[l][i].layout == VZ_CUDA_RAW_GPU) sm->desc[l][i].layout = 0;
            continue;
        }
        if (!sm->decoded || t->codec == VZ_CODEC_raw) VZ_TRY(vz_cuda_tensor_image(&sm->desc[l][i], t, dst + sm->off[l][i]));
        else VZ_TRY(decode_image(&sm->desc[l][i], t, dst + sm->off[l][i]));
        if (!sm->decoded && t->codec == VZ_CODEC_lossless)
            memcpy(dst + sm->off[l][7 + i], t->params + 8, (size_t)1 << sm->desc[l][i].k);
        if (sm->ncache) {
            vz_tensor r = decoded_view(t);
            VZ_TRY(vz_cuda_tensor_describe(&sm->ddesc[l][i], &r, sm->mcols));
        }
    }
    return VZ_OK;
}

static vz_status alloc_tables(vz_stream *sm) {
    const size_t nl = (size_t)sm->nl;
    sm->host_off = (uint64_t *)calloc(nl, sizeof(uint64_t));
    sm->size = (uint64_t *)calloc(nl, sizeof(uint64_t));
    sm->off = (uint64_t(*)[14])calloc(nl, sizeof *sm->off);
    sm->doff = (uint64_t(*)[14])calloc(nl, sizeof *sm->doff);
    sm->desc = (vz_cuda_tensor(*)[7])calloc(nl, sizeof *sm->desc);
    sm->ddesc = (vz_cuda_tensor(*)[7])calloc(nl, sizeof *sm->ddesc);
    sm->pending = (int32_t *)malloc(nl * sizeof(int32_t));
    sm->layer_cslot = (int32_t *)malloc(nl * sizeof(int32_t));
    VZ_FAIL_IF(!sm->host_off || !sm->size || !sm->off || !sm->doff || !sm->desc || !sm->ddesc || !sm->pending ||
                   !sm->layer_cslot,
               VZ_ERR_NOMEM, "layer streaming: tables");
    for (size_t l = 0; l < nl; l++) sm->pending[l] = sm->layer_cslot[l] = -1;
    return VZ_OK;
}

/* Device slots, events and (cache) the decoded slots and decode buffers. */
static vz_status alloc_device(vz_stream *sm, const vz_model *m, uint64_t slot_bytes, uint64_t cache_bytes,
                              uint64_t *dev) {
    CU_CHECK(cudaStreamCreateWithFlags(&sm->cp, cudaStreamNonBlocking), "copy stream");
    CU_CHECK(cudaEventCreateWithFlags(&sm->fork, cudaEventDisableTiming), "event");
    for (int i = 0; i < NSLOT; i++) {
        CU_CHECK(cudaMalloc((void **)&sm->slot[i], slot_bytes ? slot_bytes : 1), "slot");
        CU_CHECK(cudaEventCreateWithFlags(&sm->copied[i], cudaEventDisableTiming), "event");
        CU_CHECK(cudaEventCreateWithFlags(&sm->freed[i], cudaEventDisableTiming), "event");
        *dev += slot_bytes;
    }
    if (!sm->ncache) return VZ_OK;
    sm->cslot = (uint8_t **)calloc((size_t)sm->ncache, sizeof(uint8_t *));
    sm->cslot_layer = (int32_t *)malloc(sizeof(int32_t) * (size_t)sm->ncache);
    sm->cslot_used = (uint64_t *)calloc((size_t)sm->ncache, sizeof(uint64_t));
    VZ_FAIL_IF(!sm->cslot || !sm->cslot_layer || !sm->cslot_used, VZ_ERR_NOMEM, "layer cache: tables");
    for (int32_t i = 0; i < sm->ncache; i++) {
        sm->cslot_layer[i] = -1;
        CU_CHECK(cudaMalloc((void **)&sm->cslot[i], cache_bytes ? cache_bytes : 1), "cache slot");
        *dev += cache_bytes;
    }
    const vz_config *c = &m->cfg;
    sm->maxrows = c->hidden_dim > c->dim ? c->hidden_dim : c->dim;
    if (c->n_heads * c->head_dim > sm->maxrows) sm->maxrows = c->n_heads * c->head_dim;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)sm->maxrows);
    VZ_FAIL_IF(!ids, VZ_ERR_NOMEM, "layer cache: ids");
    for (int32_t i = 0; i < sm->maxrows; i++) ids[i] = i;
    cudaError_t e = cudaMalloc((void **)&sm->ids, sizeof(int32_t) * (size_t)sm->maxrows);
    if (e == cudaSuccess) e = cudaMemcpy(sm->ids, ids, sizeof(int32_t) * (size_t)sm->maxrows, cudaMemcpyHostToDevice);
    free(ids);
    CU_CHECK(e, "cache ids");
    CU_CHECK(cudaMalloc((void **)&sm->tmp, VZ_PLAN_DECODE_TMP), "decode buffer");
    *dev += VZ_PLAN_DECODE_TMP + sizeof(int32_t) * (uint64_t)sm->maxrows;
    return VZ_OK;
}

/* lmax: layers first.. as lossless-max blocks into (*blk)[l] (nl, malloc'ed),
 * decoding into the doff layout; sm->lmax stays 0 (fixed-rate transport) if
 * a block is larger than the layer's fixed-rate pack, the slot planned. */
static vz_status lmax_encode(vz_stream *sm, const vz_model *m, uint8_t ***blk) {
    const int32_t ng = sm->nl - sm->first;
    const vz_tensor **ts = (const vz_tensor **)malloc(sizeof(vz_tensor *) * 7 * (size_t)ng);
    uint64_t *oo = (uint64_t *)malloc(sizeof(uint64_t) * 7 * (size_t)ng);
    *blk = (uint8_t **)calloc((size_t)sm->nl, sizeof(uint8_t *));
    sm->lblk = (vz_lmax_block *)calloc((size_t)sm->nl, sizeof(vz_lmax_block));
    vz_status st = ts && oo && *blk && sm->lblk ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "layer streaming: lmax tables");
    for (int32_t l = sm->first; st == VZ_OK && l < sm->nl; l++)
        for (int i = 0; i < 7; i++) {
            ts[7 * (l - sm->first) + i] = layer_tensor(&m->layers[l], i);
            oo[7 * (l - sm->first) + i] = sm->doff[l][i];
        }
    if (st == VZ_OK) st = vz_lmax_encode(ts, ng, 7, oo, sm->lblk + sm->first, *blk + sm->first, "layer streaming");
    free(ts), free(oo);
    int fits = 1;
    for (int32_t l = sm->first; st == VZ_OK && l < sm->nl; l++) fits &= sm->lblk[l].size <= sm->size[l];
    for (int32_t l = sm->first; st == VZ_OK && fits && l < sm->nl; l++) sm->size[l] = sm->lblk[l].size;
    sm->lmax = st == VZ_OK && fits;
    return st;
}

vz_status vz_stream_create(vz_stream **out, const vz_model *m, int32_t first, int32_t decoded,
                                        int32_t cache_slots, uint64_t *dev_bytes) {
    *out = NULL;
    *dev_bytes = 0;
    VZ_FAIL_IF(first < 0 || first >= m->cfg.n_layers || cache_slots < 0 || (cache_slots && (first || decoded)),
               VZ_ERR_ARG, "layer streaming: first %d, cache %d", (int)first, (int)cache_slots);
    vz_stream *sm = (vz_stream *)calloc(1, sizeof *sm);
    VZ_FAIL_IF(!sm, VZ_ERR_NOMEM, "layer streaming: out of memory");
    sm->nl = m->cfg.n_layers, sm->first = first, sm->decoded = decoded, sm->ncache = cache_slots;
    sm->mcols = m->cfg.dim;
    vz_status st = alloc_tables(sm);
    int32_t lm = 0;
    if (st == VZ_OK && !decoded && !cache_slots) st = vz_lmax_transport(m, VZ_RESIDENCY_COMPRESSED, &lm);
    uint64_t total = 0, slot = 0, cbytes = 0;
    for (int32_t l = first; st == VZ_OK && l < sm->nl; l++) {
        sm->size[l] = vz_plan_layer_pack(&m->layers[l], decoded, sm->off[l]);
        uint64_t d = vz_plan_layer_pack(&m->layers[l], 1, sm->doff[l]);
        cbytes = d > cbytes ? d : cbytes;
    }
    uint8_t **blk = NULL;
    if (st == VZ_OK && lm) st = lmax_encode(sm, m, &blk);
    for (int32_t l = first; st == VZ_OK && l < sm->nl; l++) {
        sm->host_off[l] = total;
        total += sm->size[l];
        slot = sm->size[l] > slot ? sm->size[l] : slot;
    }
    sm->step_bytes = cache_slots ? 0 : total;
    if (st == VZ_OK && cudaHostAlloc((void **)&sm->host, total ? total : 1, cudaHostAllocDefault) != cudaSuccess)
        st = VZ_FAIL(VZ_ERR_NOMEM, "layer streaming: cannot pin %llu bytes of host memory",
                     (unsigned long long)total);
    for (int32_t l = first; st == VZ_OK && l < sm->nl; l++)
        st = pack_layer(sm, &m->layers[l], l, sm->host + sm->host_off[l], blk ? blk[l] : NULL);
    for (int32_t l = 0; blk && l < sm->nl; l++) free(blk[l]);
    free(blk);
    if (st == VZ_OK) st = alloc_device(sm, m, slot, cbytes, dev_bytes);
    if (st == VZ_OK && sm->lmax) st = vz_lmax_prepare();
    if (st == VZ_OK && sm->lmax && cudaMalloc((void **)&sm->dslot, cbytes) != cudaSuccess)
        st = VZ_FAIL(VZ_ERR_CUDA, "layer streaming: decoded slot of %llu bytes", (unsigned long long)cbytes);
    if (st == VZ_OK && sm->lmax) *dev_bytes += cbytes;
    if (st != VZ_OK) {
        vz_stream_free(sm);
        return st;
    }
    *out = sm;
    return VZ_OK;
}

void vz_stream_free(vz_stream *sm) {
    if (!sm) return;
    if (sm->cp) cudaStreamSynchronize(sm->cp);
    for (int i = 0; i < NSLOT; i++) {
        cudaFree(sm->slot[i]);
        if (sm->copied[i]) cudaEventDestroy(sm->copied[i]);
        if (sm->freed[i]) cudaEventDestroy(sm->freed[i]);
    }
    for (int32_t i = 0; sm->cslot && i < sm->ncache; i++) cudaFree(sm->cslot[i]);
    cudaFree(sm->tmp);
    cudaFree(sm->ids);
    cudaFree(sm->dslot);
    if (sm->fork) cudaEventDestroy(sm->fork);
    if (sm->cp) cudaStreamDestroy(sm->cp);
    cudaFreeHost(sm->host);
    free(sm->host_off), free(sm->size), free(sm->off), free(sm->doff), free(sm->desc), free(sm->ddesc);
    free(sm->pending), free(sm->layer_cslot), free(sm->cslot), free(sm->cslot_layer), free(sm->cslot_used);
    free(sm->lblk);
    free(sm);
}

/* Cache: every layer holds a slot, so no step misses (a slot is taken from
 * a layer only on a miss): each acquire gives the same slots, no copy. */
static int all_cached(const vz_stream *sm) {
    for (int32_t l = 0; l < sm->nl; l++)
        if (sm->layer_cslot[l] < 0) return 0;
    return 1;
}

int vz_stream_graphable(const vz_stream *sm) { return sm->ncache == 0 || all_cached(sm); }
uint64_t vz_stream_step_bytes(const vz_stream *sm) { return sm->step_bytes; }
uint64_t vz_stream_eager_bytes(const vz_stream *sm) { return sm->eager_bytes; }

static int capturing(cudaStream_t st) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    return cudaStreamIsCapturing(st, &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone;
}

/* Copies layer l into slot i on the copy stream, after the compute that last read slot i. */
static vz_status issue_copy(vz_stream *sm, int32_t l, int i, cudaStream_t st) {
    if (sm->freed_rec[i]) CU_CHECK(cudaStreamWaitEvent(sm->cp, sm->freed[i], 0), "wait slot free");
    CU_CHECK(cudaMemcpyAsync(sm->slot[i], sm->host + sm->host_off[l], sm->size[l], cudaMemcpyHostToDevice, sm->cp),
             "layer copy");
    CU_CHECK(cudaEventRecord(sm->copied[i], sm->cp), "record copy done");
    if (!capturing(st)) sm->eager_bytes += sm->size[l];
    return VZ_OK;
}

/* Cache: issues layer l's copy into the next staging slot unless cached or pending. */
static vz_status prefetch(vz_stream *sm, int32_t l, cudaStream_t st) {
    if (l >= sm->nl || sm->layer_cslot[l] >= 0 || sm->pending[l] >= 0) return VZ_OK;
    int i = sm->next_staging;
    sm->next_staging = (i + 1) % NSLOT;
    for (int32_t k = 0; k < sm->nl; k++)
        if (sm->pending[k] == i) sm->pending[k] = -1; /* a stale prefetch (its layer got cached meanwhile) */
    VZ_TRY(issue_copy(sm, l, i, st));
    sm->pending[l] = i;
    return VZ_OK;
}

vz_status vz_stream_begin(vz_stream *sm, cudaStream_t st) {
    if (sm->ncache && all_cached(sm)) return VZ_OK; /* nothing to copy: no fork (a graph may be capturing) */
    CU_CHECK(cudaEventRecord(sm->fork, st), "record fork");
    CU_CHECK(cudaStreamWaitEvent(sm->cp, sm->fork, 0), "copy stream fork");
    if (sm->ncache) return prefetch(sm, 0, st); /* eager: freed events of earlier steps stay valid */
    for (int i = 0; i < NSLOT; i++) sm->freed_rec[i] = 0; /* the fork orders every earlier use */
    return issue_copy(sm, sm->first, 0, st);
}

/* f32 rows of a bf16/f16-sourced lossless tensor back to their source bits (exact). */
static __global__ void narrow_kernel(uint16_t *out, const float *in, size_t n, int is_bf16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = is_bf16 ? (uint16_t)(__float_as_uint(in[i]) >> 16) : __half_as_ushort(__float2half_rn(in[i]));
}

/* Decodes tensor src (in a staging slot) into dst, a raw tensor of its decoded dtype. */
static vz_status decode_tensor(vz_stream *sm, const vz_cuda_tensor *src, const vz_cuda_tensor *dst, cudaStream_t st) {
    if (src->codec == VZ_CODEC_raw) { /* the staged copy is already in dst's order (the same description) */
        VZ_FAIL_IF(src->layout != dst->layout, VZ_ERR_ARG, "layer cache: raw %lldx%lld: layout %d to %d",
                   (long long)src->rows, (long long)src->cols, (int)src->layout, (int)dst->layout);
        CU_CHECK(cudaMemcpyAsync(dst->data, src->data, src->size, cudaMemcpyDeviceToDevice, st), "raw copy");
        return VZ_OK;
    }
    VZ_FAIL_IF(src->rows > sm->maxrows, VZ_ERR_SHAPE, "layer cache: %lld rows > %d", (long long)src->rows,
               (int)sm->maxrows);
    if (dst->dtype == VZ_DTYPE_F32) return vz_cuda_rows((float *)dst->data, sm->ids, (int)src->rows, src, st);
    int64_t chunk = (int64_t)(VZ_PLAN_DECODE_TMP / 4) / src->cols;
    if (chunk > sm->maxrows) chunk = sm->maxrows;
    VZ_FAIL_IF(chunk < 1, VZ_ERR_UNSUPPORTED, "layer cache: rows of %lld columns exceed the decode buffer",
               (long long)src->cols);
    for (int64_t r = 0; r < src->rows; r += chunk) {
        int n = (int)(src->rows - r < chunk ? src->rows - r : chunk);
        VZ_TRY(vz_cuda_rows(sm->tmp, sm->ids + r, n, src, st)); /* ids[r + i] = r + i */
        size_t cnt = (size_t)n * (size_t)src->cols;
        narrow_kernel<<<(unsigned)((cnt + 255) / 256 < 4096 ? (cnt + 255) / 256 : 4096), 256, 0, st>>>(
            (uint16_t *)dst->data + r * src->cols, sm->tmp, cnt, dst->dtype == VZ_DTYPE_BF16);
        CU_CHECK(cudaGetLastError(), "narrow launch");
    }
    return vz_cuda_raw_gpu_order(dst, st);
}

/* Cache: a slot for layer l (free, else least recently used), decoded from its staging copy. */
static vz_status cache_fill(vz_stream *sm, int32_t l, cudaStream_t st) {
    int32_t v = 0;
    for (int32_t i = 1; i < sm->ncache; i++)
        if (sm->cslot_layer[v] >= 0 && (sm->cslot_layer[i] < 0 || sm->cslot_used[i] < sm->cslot_used[v])) v = i;
    if (sm->cslot_layer[v] >= 0) sm->layer_cslot[sm->cslot_layer[v]] = -1;
    VZ_TRY(prefetch(sm, l, st)); /* not prefetched: copy now */
    int i = sm->pending[l];
    sm->pending[l] = -1;
    CU_CHECK(cudaStreamWaitEvent(st, sm->copied[i], 0), "wait copy");
    for (int k = 0; k < 7; k++) {
        vz_cuda_tensor src = sm->desc[l][k], dst = sm->ddesc[l][k];
        src.data = sm->slot[i] + sm->off[l][k];
        src.lut = src.codec == VZ_CODEC_lossless ? sm->slot[i] + sm->off[l][7 + k] : NULL;
        dst.data = sm->cslot[v] + sm->doff[l][k];
        VZ_TRY(decode_tensor(sm, &src, &dst, st));
    }
    CU_CHECK(cudaEventRecord(sm->freed[i], st), "record staging free");
    sm->freed_rec[i] = 1;
    sm->cslot_layer[v] = l, sm->layer_cslot[l] = v;
    return VZ_OK;
}

vz_status vz_stream_acquire(vz_stream *sm, int32_t l, vz_cuda_tensor *const w[7], cudaStream_t st) {
    if (l < sm->first) return VZ_OK;
    if (sm->ncache) {
        if (sm->layer_cslot[l] < 0) VZ_TRY(cache_fill(sm, l, st));
        int32_t v = sm->layer_cslot[l];
        sm->cslot_used[v] = ++sm->clock;
        for (int k = 0; k < 7; k++) {
            *w[k] = sm->ddesc[l][k];
            w[k]->data = sm->cslot[v] + sm->doff[l][k];
        }
        return prefetch(sm, l + 1, st);
    }
    const int i = (l - sm->first) % NSLOT;
    if (l + 1 < sm->nl) VZ_TRY(issue_copy(sm, l + 1, (l + 1 - sm->first) % NSLOT, st));
    CU_CHECK(cudaStreamWaitEvent(st, sm->copied[i], 0), "wait copy");
    if (sm->lmax) { /* decoded into the raw slot; the copy slot is free again */
        VZ_TRY(vz_lmax_decode(&sm->lblk[l], sm->slot[i], sm->dslot, st));
        CU_CHECK(cudaEventRecord(sm->freed[i], st), "record slot free");
        sm->freed_rec[i] = 1;
        for (int k = 0; k < 7; k++) {
            *w[k] = sm->desc[l][k];
            w[k]->data = sm->dslot + sm->doff[l][k], w[k]->lut = NULL;
        }
        return VZ_OK;
    }
    for (int k = 0; k < 7; k++) {
        *w[k] = sm->desc[l][k];
        w[k]->data = sm->slot[i] + sm->off[l][k];
        w[k]->lut = w[k]->codec == VZ_CODEC_lossless ? sm->slot[i] + sm->off[l][7 + k] : NULL;
    }
    return VZ_OK;
}

vz_status vz_stream_release(vz_stream *sm, int32_t l, cudaStream_t st) {
    if (l < sm->first || sm->ncache || sm->lmax) return VZ_OK; /* cache, lmax: slots reused in order on st */
    const int i = (l - sm->first) % NSLOT;
    CU_CHECK(cudaEventRecord(sm->freed[i], st), "record slot free");
    sm->freed_rec[i] = 1;
    return VZ_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

vz_status vz_stream_h2d_probe(double *gbs) {
    const size_t bytes = (size_t)256 << 20;
    void *h = NULL, *d = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double v[5];
    *gbs = 0.0;
    cudaError_t e = cudaHostAlloc(&h, bytes, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc(&d, bytes);
    if (e == cudaSuccess) memset(h, 0x5a, bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = -1; e == cudaSuccess && i < 5; i++) { /* one warm-up copy */
        float ms = 0.0f;
        e = cudaEventRecord(e0);
        if (e == cudaSuccess) e = cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, 0);
        if (e == cudaSuccess) e = cudaEventRecord(e1);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 0) v[i] = ms > 0.0f ? (double)bytes / (ms * 1e-3) / 1e9 : 0.0;
    }
    cudaFreeHost(h);
    cudaFree(d);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    CU_CHECK(e, "pinned copy probe (256 MiB)");
    qsort(v, 5, sizeof v[0], cmp_double);
    *gbs = v[2];
    return VZ_OK;
}
