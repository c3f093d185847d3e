/*
 * cuda_weights.cu - uploads a vz_tensor to VRAM in its encoded form (the
 * data blob as is, never expanded) with its section offsets precomputed from
 * docs/codecs.md (lossless: low planes, codes, exception index, exceptions;
 * q8: int8 values, f16 scales; q4: nibbles, f16 scales, zero points), and picks the matvec path (decode.cuh). Also
 * the small runtime helpers of cuda.h used by C tests and the bench.
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"

extern "C" {
#include "codec/codec.h"
#include "codec/lossless_tile.h"
#include "core/status.h"
#include "core/tensor.h"
}

static uint64_t al16(uint64_t x) { return (x + 15) & ~(uint64_t)15; }

/* vz_cuda_q_divider (cuda.h): the smallest shift whose ceil(2^sh / div)
 * has error e = qmul * div - 2^sh with (gpr - 1) * e < 2^sh, which makes
 * the floor exact (g / div's fraction is at most (div - 1) / div, the error
 * adds g * e / (div 2^sh)), with g * qmul in 32 bits and qmul in 27. None
 * only past gpr ~ 2^16. */
extern "C" int vz_cuda_q_divider(int64_t cols, int32_t group, uint32_t *qdiv) {
    const uint64_t gpr = ((uint64_t)cols + 31) / 32, div = group > 0 ? (uint64_t)group / 32 : 0;
    *qdiv = 0;
    if (div == 0 || cols < 1) return 0;
    for (uint32_t sh = 0; sh < 32; sh++) {
        const uint64_t p = (uint64_t)1 << sh, m = (p + div - 1) / div, e = m * div - p;
        if ((gpr - 1) * e < p && (gpr - 1) * m <= UINT32_MAX && m < ((uint64_t)1 << 27)) {
            *qdiv = (uint32_t)m << 5 | sh;
            return 1;
        }
    }
    return 0;
}

/* Section offsets and path of a tensor that passed its codec's check. */
static vz_status wt_layout(vz_cuda_tensor *d, const vz_tensor *t) {
    uint64_t n = (uint64_t)t->rows * (uint64_t)t->cols;
    /* fast kinds: whole code groups, and group indices in 32 bits (decode.cuh vz_gidx) */
    bool a32 = t->cols % 32 == 0 && n / 32 <= UINT32_MAX && t->rows <= INT32_MAX;
    if (t->codec == VZ_ID_RAW) {
        d->kind = t->dtype == VZ_DTYPE_BF16 && a32 ? VZ_K_RAW_BF16 : VZ_K_GENERIC;
        return VZ_OK;
    }
    if (t->codec == VZ_ID_LOSSLESS) {
        d->k = t->params[1], d->layout = t->params[2];
        vz_lossless_sections sec; /* the codec's own geometry (lossless.c) */
        VZ_FAIL_IF(!vz_lossless_sections_of(t, &sec), VZ_ERR_FORMAT, "tensor %s: lossless shape or code bits (%d) invalid",
                   t->name, d->k);
        d->off[0] = 0, d->off[1] = sec.codes, d->off[2] = sec.index, d->off[3] = sec.exc, d->bpr = (int32_t)sec.bpr;
        VZ_FAIL_IF(d->off[3] > t->size, VZ_ERR_FORMAT, "tensor %s: lossless data %llu bytes < sections %llu", t->name,
                   (unsigned long long)t->size, (unsigned long long)d->off[3]);
        uint8_t lut[8] = {0};
        memcpy(lut, t->params + 8, d->k == 3 || d->k == 4 ? 8 : 0);
        memcpy(&d->lut_lo, lut, 4);
        memcpy(&d->lut_hi, lut + 4, 4);
        bool sym = d->k == 4 && d->layout == 2; /* packed4: VZ_K_LL4 needs lut[c + 8] = lut[c] ^ 0x80 */
        for (int c = 0; sym && c < 8; c++) sym = t->params[8 + c + 8] == (t->params[8 + c] ^ 0x80);
        d->kind = t->dtype != VZ_DTYPE_BF16 || !a32              ? VZ_K_GENERIC
                  : d->k == 3 && d->layout == 1                  ? VZ_K_LL3
                  : sym                                          ? VZ_K_LL4
                                                                 : VZ_K_GENERIC;
        if (d->kind == VZ_K_LL4) d->layout = VZ_CUDA_LL_GPU4; /* its copy: wt_gpu4, vz_cuda_tensor_image */
        return VZ_OK;
    }
    if (t->codec == VZ_ID_Q8) {
        VZ_FAIL_IF(t->params_size != 8, VZ_ERR_CODEC, "tensor %s: q8 params %u bytes", t->name, t->params_size);
        memcpy(&d->group, t->params + 4, 4);
        VZ_FAIL_IF(d->group < 1, VZ_ERR_CODEC, "tensor %s: q8 group %d", t->name, d->group);
        d->off[1] = al16(n);
        d->kind = a32 && d->group % 32 == 0 && vz_cuda_q_divider(t->cols, d->group, &d->qdiv) ? VZ_K_Q8
                                                                                               : VZ_K_GENERIC;
        return VZ_OK;
    }
    if (t->codec == VZ_ID_Q4) { /* codes, scales, zero points (asymmetric) */
        VZ_FAIL_IF(t->params_size != 8, VZ_ERR_CODEC, "tensor %s: q4 params %u bytes", t->name, t->params_size);
        memcpy(&d->group, t->params + 4, 4);
        VZ_FAIL_IF(d->group < 1, VZ_ERR_CODEC, "tensor %s: q4 group %d", t->name, d->group);
        d->layout = t->params[1] & 1; /* 1: asymmetric */
        uint64_t qgpr = ((uint64_t)t->cols + (uint64_t)d->group - 1) / (uint64_t)d->group;
        d->off[1] = al16((uint64_t)t->rows * (((uint64_t)t->cols + 1) / 2));
        d->off[2] = al16(d->off[1] + (uint64_t)t->rows * qgpr * 2);
        VZ_FAIL_IF((d->layout ? d->off[2] + (uint64_t)t->rows * qgpr : d->off[1] + (uint64_t)t->rows * qgpr * 2) > t->size,
                   VZ_ERR_FORMAT, "tensor %s: q4 data %llu bytes < sections", t->name, (unsigned long long)t->size);
        d->kind = a32 && d->group % 32 == 0 && vz_cuda_q_divider(t->cols, d->group, &d->qdiv) ? VZ_K_Q4
                                                                                               : VZ_K_GENERIC;
        return VZ_OK;
    }
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "tensor %s: codec %u has no CUDA decoder", t->name, (unsigned)t->codec);
}

/* The tensor-core path (matvec_tc.cu), when VZ_CUDA_MV_TC is set at upload:
 * bf16 raw or lossless (any k), rows in octets, cols in steps of 128, a
 * staged x row that fits; the same answer for a raw tensor and the lossless
 * one of the same shape, so both run the same kernel arithmetic. Lossless
 * k = 3 packed3 is then tiled. */
static void wt_tc(vz_cuda_tensor *d) {
    d->tc = d->dtype == VZ_DTYPE_BF16 && (d->codec == VZ_ID_RAW || d->codec == VZ_ID_LOSSLESS) && d->rows % 8 == 0 &&
            d->cols % 128 == 0 && d->cols <= VZ_CUDA_TC_MAX_COLS && (vz_cuda_matvec_variant(-1) & VZ_CUDA_MV_TC);
    d->tiled = d->tc && d->kind == VZ_K_LL3;
}

/* The integer dot-product path (mv4.cuh's mv4_dp) for q8 and q4 tensors of
 * the fast path whose rows have at least VZ_CUDA_DP_MIN_COLS columns (any with
 * VZ_CUDA_MV_DP at upload, none with VZ_CUDA_MV_NO_DP; the bench knob
 * VZ_CUDA_DP_COLS=lo,hi: lo to hi columns) and at most VZ_CUDA_DP_MAX_COLS
 * (a staged x row must fit a block), in a model whose narrowest matrix
 * (mcols, its dim; 0: a tensor alone) has at least VZ_CUDA_DP_MIN_COLS
 * columns too. By widths, so the tensors of one launch (equal cols) agree.
 * Short rows stay on the fmaf kernel: a launch pays the conversion of x to
 * digits before its first sum, which tinyllama's launches (1-6 row steps
 * per warp) do not earn back. The model's rule: on an H200 llama2-7b
 * (dim 4096) q4 decode ran 494 -> 590 tok/s with it, q8 452 -> 472, while
 * tinyllama (dim 2048) ran q4 4% slower with it on its down matvec alone
 * (5632 columns, the width rule alone) and q4 2%, q8 6% slower with it on
 * all its matrices (bench/results/2026-12-01-session35-h200.md).
 * Tensors of VZ_CUDA_DP_MIN_ROWS rows or more take it at any width: in
 * tinyllama gate, up and the head, 10-30 row steps per warp. The tensors of
 * one launch still agree: gate and up have equal rows, and wq (dim rows)
 * reaches the row bound only where dim reaches the width bound, which puts
 * wk and wv on it too. On an H200 tinyllama q4 decode rose 3.7-4.1%, q8 0.5-0.9%;
 * down joining them cost 4.6% (q4) and 0.9% (q8), QKV and Wo 8-9%
 * (bench/results/2026-12-04-session68-h200.md). With the conversion in
 * fewer instructions (session 69) down still cost 2.1% (q4) and 0.1% (q8),
 * every matrix 1.8% and 0.1% (-session69-h200.md). */
static void wt_dp(vz_cuda_tensor *d, int64_t mcols) {
    /* bench knobs: VZ_CUDA_DP_COLS=lo,hi[,any]: the widths (any = 1: in a model of any dim); VZ_CUDA_DP_ROWS=lo[,hi]:
     * the rows, at any width (lo = 0: none) */
    long long lo = VZ_CUDA_DP_MIN_COLS, hi = VZ_CUDA_DP_MAX_COLS, any = 0, rlo = VZ_CUDA_DP_MIN_ROWS, rhi = 1LL << 40;
    const char *e = getenv("VZ_CUDA_DP_COLS"), *er = getenv("VZ_CUDA_DP_ROWS");
    if (e && (sscanf(e, "%lld,%lld,%lld", &lo, &hi, &any) < 2 || lo < 0))
        lo = VZ_CUDA_DP_MIN_COLS, hi = VZ_CUDA_DP_MAX_COLS, any = 0;
    if (er && (sscanf(er, "%lld,%lld", &rlo, &rhi) < 1 || rlo < 0)) rlo = VZ_CUDA_DP_MIN_ROWS, rhi = 1LL << 40;
    const int v = vz_cuda_matvec_variant(-1);
    d->dp = (d->kind == VZ_K_Q4 || d->kind == VZ_K_Q8) && d->cols <= VZ_CUDA_DP_MAX_COLS &&
            !(v & VZ_CUDA_MV_NO_DP) &&
            ((d->cols >= lo && d->cols <= hi && (mcols == 0 || mcols >= VZ_CUDA_DP_MIN_COLS || any)) ||
             (v & VZ_CUDA_MV_DP) || (rlo > 0 && d->rows >= rlo && d->rows <= rhi));
}

extern "C" int64_t vz_cuda_gpu_col(int64_t cols, int64_t c) { return vz_gpu_col(cols, c); }

extern "C" vz_status vz_cuda_tensor_image(const vz_cuda_tensor *d, const vz_tensor *t, uint8_t *dst) {
    VZ_FAIL_IF(!d || !t || !t->data || !dst || d->size != t->size, VZ_ERR_ARG, "cuda tensor image: bad arguments");
    if (d->tiled) return vz_lossless_tile_order(t, dst);
    if (d->codec == VZ_ID_LOSSLESS && d->layout == VZ_CUDA_LL_GPU4) return vz_lossless_gpu4_order(t, dst);
    if (d->codec == VZ_ID_RAW && d->layout == VZ_CUDA_RAW_GPU) { /* 8 columns (16 bytes) at a time */
        const uint64_t row = (uint64_t)t->cols * 2;
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t c = 0; c < t->cols; c += 8)
                memcpy(dst + r * row + 2 * vz_gpu_col(t->cols, c), t->data + r * row + 2 * c, 16);
        return VZ_OK;
    }
    memcpy(dst, t->data, t->size);
    return VZ_OK;
}

/* A VZ_CUDA_RAW_GPU tensor, uploaded row-major, put in the GPU column order
 * in place: one warp per 1024-column block of a row (gpr lane groups per
 * row), its loads all done (__syncwarp) before its stores. */
static __global__ void raw_gpu_kernel(uint4 *w, int64_t rows, int32_t gpr) {
    const int lane = threadIdx.x & 31, nb = (gpr + 31) / 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; i < rows * nb; i += warps) {
        const int b = (int)(i % nb) * 32, n = gpr - b < 32 ? gpr - b : 32;
        uint4 *p = w + ((i / nb) * gpr + b) * 4, v[4];
        if (lane < n)
            for (int j = 0; j < 4; j++) v[j] = p[4 * lane + j];
        __syncwarp();
        if (lane < n)
            for (int j = 0; j < 4; j++) p[j * n + lane] = v[j];
        __syncwarp();
    }
}

static cudaError_t raw_gpu_order(const vz_cuda_tensor *d, cudaStream_t st) {
    if (d->codec != VZ_ID_RAW || d->layout != VZ_CUDA_RAW_GPU) return cudaSuccess;
    const int64_t warps = d->rows * ((d->cols / 32 + 31) / 32), nb = (warps + 7) / 8;
    raw_gpu_kernel<<<(unsigned)(nb < 4096 ? nb : 4096), 256, 0, st>>>((uint4 *)d->data, d->rows,
                                                                     (int32_t)(d->cols / 32));
    return cudaGetLastError();
}

extern "C" vz_status vz_cuda_raw_gpu_order(const vz_cuda_tensor *d, void *stream) {
    const cudaError_t e = raw_gpu_order(d, (cudaStream_t)stream);
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "raw %lldx%lld: the GPU column order: %s", (long long)d->rows,
               (long long)d->cols, cudaGetErrorString(e));
    return VZ_OK;
}

static __global__ void gpu4_kernel(uint32_t *w, uint64_t n) {
    for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        w[i] = vz_ll4_gpu_word(w[i]);
}

/* A VZ_CUDA_LL_GPU4 tensor's code words, uploaded as t holds them, put in
 * the GPU sign order in place, on st, after the upload's copy. The image
 * built on the host (one thread, a copy of the blob) made a llama2-7b
 * lossless:k4 bench take 18 s instead of 2 on an H200 (bench/results/
 * 2026-12-03-session54-h200.md). */
static cudaError_t wt_gpu4(const vz_cuda_tensor *d, const vz_tensor *t, cudaStream_t st) {
    uint64_t off, nw;
    vz_lossless_gpu4_words(t, &off, &nw);
    if (nw == 0) return cudaSuccess;
    const uint64_t nb = (nw + 255) / 256;
    gpu4_kernel<<<(unsigned)(nb < 4096 ? nb : 4096), 256, 0, st>>>((uint32_t *)(d->data + off), nw);
    return cudaGetLastError();
}

/* The path choices after wt_layout, the same for an upload and a
 * description (a streamed or cached copy, stream.cu): the tensor-core
 * kernel, the dot products, and for raw bf16 of the fast path (not tc) the
 * GPU column order (cuda.h vz_cuda_gpu_col) unless VZ_CUDA_MV_ROWMAJOR. */
static void wt_path(vz_cuda_tensor *d, int64_t mcols) {
    wt_tc(d);
    wt_dp(d, mcols);
    if (d->kind == VZ_K_RAW_BF16 && !d->tc && !(vz_cuda_matvec_variant(-1) & VZ_CUDA_MV_ROWMAJOR))
        d->layout = VZ_CUDA_RAW_GPU;
}

static uint64_t al256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Upload into dev (vz_plan_tensor_bytes(t) bytes: the blob, then the lut at
 * al256(size)), or with dev NULL into allocations of d's own. */
extern "C" vz_status vz_cuda_tensor_upload_at(vz_cuda_tensor *d, const vz_tensor *t, int64_t mcols, uint8_t *dev,
                                              void *stream) {
    memset(d, 0, sizeof *d);
    VZ_FAIL_IF(!t || !t->data || t->size == 0, VZ_ERR_ARG, "cuda upload: no tensor data");
    VZ_TRY(vz_tensor_check(t));
    VZ_FAIL_IF(t->rows >= ((int64_t)1 << 36) || t->cols >= ((int64_t)1 << 30), VZ_ERR_SHAPE,
               "tensor %s: %lldx%lld too large for the CUDA matvec", t->name, (long long)t->rows, (long long)t->cols);
    d->rows = t->rows, d->cols = t->cols, d->dtype = t->dtype, d->codec = t->codec, d->size = t->size;
    VZ_TRY(wt_layout(d, t));
    wt_path(d, mcols);
    uint8_t *img = NULL; /* tiled: the device image, built on the host */
    if (d->tiled) {
        img = (uint8_t *)malloc(t->size);
        VZ_FAIL_IF(!img, VZ_ERR_NOMEM, "tensor %s: %llu bytes for the tile order", t->name, (unsigned long long)t->size);
        vz_status s = vz_lossless_tile_order(t, img);
        if (s != VZ_OK) {
            free(img);
            return s;
        }
    }
    cudaStream_t st = (cudaStream_t)stream;
    d->owned = dev == NULL;
    cudaError_t e = cudaSuccess;
    if (dev) d->data = dev;
    else e = cudaMalloc((void **)&d->data, t->size);
    if (e == cudaSuccess) e = cudaMemcpyAsync(d->data, img ? img : t->data, t->size, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess && d->codec == VZ_ID_LOSSLESS && d->layout == VZ_CUDA_LL_GPU4) e = wt_gpu4(d, t, st);
    if (e == cudaSuccess) e = raw_gpu_order(d, st);
    if (e == cudaSuccess && t->codec == VZ_ID_LOSSLESS) {
        size_t nl = (size_t)1 << d->k;
        if (dev) d->lut = dev + al256(t->size);
        else e = cudaMalloc((void **)&d->lut, nl);
        if (e == cudaSuccess) e = cudaMemcpyAsync(d->lut, t->params + 8, nl, cudaMemcpyHostToDevice, st);
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(st); /* host buffers may go away on return */
    free(img);
    if (e != cudaSuccess) {
        vz_cuda_tensor_free(d);
        return VZ_FAIL(VZ_ERR_CUDA, "tensor %s: upload of %llu bytes: %s", t->name, (unsigned long long)t->size,
                       cudaGetErrorString(e));
    }
    return VZ_OK;
}

extern "C" vz_status vz_cuda_tensor_upload(vz_cuda_tensor *d, const vz_tensor *t, void *stream) {
    return vz_cuda_tensor_upload_at(d, t, 0, NULL, stream);
}

/* [st] Fills d's shape, codec and path as vz_cuda_tensor_upload would, with
 * no device memory: the caller points d->data (and d->lut) at a buffer of
 * its own (layer streaming, stream.cu). t's data is not read. */
extern "C" vz_status vz_cuda_tensor_describe(vz_cuda_tensor *d, const vz_tensor *t, int64_t mcols) {
    memset(d, 0, sizeof *d);
    VZ_FAIL_IF(!t, VZ_ERR_ARG, "cuda describe: no tensor");
    d->rows = t->rows, d->cols = t->cols, d->dtype = t->dtype, d->codec = t->codec, d->size = t->size;
    VZ_TRY(wt_layout(d, t));
    wt_path(d, mcols);
    return VZ_OK;
}

extern "C" void vz_cuda_tensor_free(vz_cuda_tensor *d) {
    if (!d) return;
    if (d->owned) {
        cudaFree(d->data);
        cudaFree(d->lut);
    }
    memset(d, 0, sizeof *d);
}

/* The kernels' by-value view of an uploaded tensor. */
vz_dview vz_cuda_view(const vz_cuda_tensor *t) {
    vz_dview v;
    memset(&v, 0, sizeof v);
    v.data = t->data;
    v.rows = t->rows, v.cols = t->cols, v.n = t->rows * t->cols;
    v.dtype = t->dtype, v.codec = t->codec, v.k = t->k, v.layout = t->layout;
    v.gpr = (int32_t)((t->cols + 31) / 32);
    v.bpr = t->bpr;
    v.lut = t->lut, v.lut_lo = t->lut_lo, v.lut_hi = t->lut_hi;
    v.tiled = t->tiled;
    if (t->codec == VZ_ID_LOSSLESS) {
        v.codes = (const uint32_t *)(t->data + t->off[1]);
        v.eidx = (const uint32_t *)(t->data + t->off[2]);
        v.exc = (const uint16_t *)(t->data + t->off[3]);
    } else if (t->codec == VZ_ID_Q8 || t->codec == VZ_ID_Q4) {
        v.group = t->group;
        v.qgpr = (int32_t)((t->cols + t->group - 1) / t->group);
        v.scales = (const uint16_t *)(t->data + t->off[1]);
        v.qstride = (int32_t)((t->cols + 1) / 2);
        v.zeros = t->codec == VZ_ID_Q4 && t->layout ? t->data + t->off[2] : NULL;
        v.qdiv = t->qdiv;
    }
    return v;
}

extern "C" void *vz_cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

extern "C" void vz_cuda_release(void *p) { cudaFree(p); }

extern "C" vz_status vz_cuda_copy(void *dst, const void *src, size_t bytes, int kind) {
    static const cudaMemcpyKind k[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice};
    VZ_FAIL_IF(kind < 0 || kind > 2, VZ_ERR_ARG, "cuda copy: kind %d", kind);
    cudaError_t e = cudaMemcpy(dst, src, bytes, k[kind]);
    /* from pageable memory, or device to device, cudaMemcpy may return before the data lands, and
     * work on a non-blocking stream would not wait for it: done on return, as cuda.h says */
    if (e == cudaSuccess && kind != 1) e = cudaDeviceSynchronize();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda copy of %zu bytes: %s", bytes, cudaGetErrorString(e));
    return VZ_OK;
}

static __global__ void fill_kernel(float *d, float v, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) d[i] = v;
}

extern "C" vz_status vz_cuda_fill_f32(float *d, float v, size_t n) {
    if (n == 0) return VZ_OK;
    fill_kernel<<<(unsigned)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096), 256>>>(d, v, n);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda fill: %s", cudaGetErrorString(e));
    return VZ_OK;
}

extern "C" vz_status vz_cuda_sync(void) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e == cudaSuccess) e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda sync: %s", cudaGetErrorString(e));
    return VZ_OK;
}
