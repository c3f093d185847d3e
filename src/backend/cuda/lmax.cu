/*
 * lmax.cu - GPU decoder of lossless-max blocks (lmax.h; docs/codecs.md
 * section 2): one thread per rANS chunk (a few rows), decoding its exponents
 * with tables in shared memory built from the block's per-tensor table and
 * merging the raw sign/mantissa plane into the source bits (bf16: 8 elements,
 * one 16-byte store at a time). One launch decodes a whole block (a layer),
 * so all its chunks run at once; its time is the longest chunk's chain of
 * dependent symbol steps (a w2 row of TinyLlama: 5632), at about one warp per
 * scheduler: 1.18 ms per TinyLlama layer on an H200, slower than copying the
 * fixed-rate layer (bench/results/2026-11-28-lmax-stream-h200.md, which also
 * lists the variants measured and deleted: stream words loaded ahead through
 * registers, 16-byte raw loads, small tables, maximal shared carveout; none
 * faster). Exact: tests/test_cuda_lmax.c compares it
 * byte for byte with decode_ref (src/codec/lossless_max.c), outputs poisoned.
 * Timed end to end by `vramzip bench` with VZ_STREAM_CODEC=lossless-max.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/lmax.h"

#define LM_L (1u << 23)
#define LM_MAX_SCALE 15

/* One rANS symbol (docs/codecs.md section 2): the exponent field. fb[slot]
 * = freq << 16 | (slot - start), ex[slot] = lo + symbol. */
static __device__ __forceinline__ uint32_t lm_next(uint32_t &x, const uint8_t *&p, const uint8_t *end,
                                                   const uint32_t *fb, const uint8_t *ex, uint32_t mask, int S) {
    const uint32_t slot = x & mask, e = fb[slot], s = ex[slot];
    x = (e >> 16) * (x >> S) + (e & 0xffffu);
    if (x < LM_L) {
        x = x << 8 | (p < end ? (uint32_t)*p++ : 0u);
        if (x < LM_L) x = x << 8 | (p < end ? (uint32_t)*p++ : 0u);
    }
    return s;
}

/* Raw bits (sign << m | mantissa) of element i, LSB-first plane of rb-bit fields. */
static __device__ __forceinline__ uint32_t lm_raw(const uint8_t *plane, uint64_t i, int rb) {
    if (rb == 8) return plane[i];
    const uint64_t bit = i * (uint64_t)rb;
    const int sh = (int)(bit % 8), nb = (sh + rb + 7) / 8;
    uint64_t v = 0;
    for (int k = 0; k < nb; k++) v |= (uint64_t)plane[bit / 8 + (uint64_t)k] << 8 * k;
    return (uint32_t)(v >> sh) & ((1u << rb) - 1);
}

static __device__ __forceinline__ uint32_t lm_join(int dtype, uint32_t e, uint32_t r) {
    if (dtype == VZ_DTYPE_F32) return (r >> 23) << 31 | e << 23 | (r & 0x7fffffu);
    const int m = dtype == VZ_DTYPE_F16 ? 10 : 7;
    return (r >> m) << 15 | e << m | (r & ((1u << m) - 1));
}

static __device__ __forceinline__ void lm_store(uint8_t *out, int dtype, uint64_t i, uint32_t bits) {
    if (dtype == VZ_DTYPE_F32) ((uint32_t *)out)[i] = bits;
    else ((uint16_t *)out)[i] = (uint16_t)bits;
}

/* Chunk c of tensor d: its elements [i0, i1) into out. */
static __device__ void lm_chunk(const vz_lmax_tensor &d, const uint8_t *blob, uint8_t *out, uint64_t c,
                                const uint32_t *fb, const uint8_t *ex) {
    const uint64_t *idx = (const uint64_t *)blob; /* 16-aligned: the blob is 256-aligned in the block */
    const uint8_t *p = blob + d.streams + idx[c], *end = blob + d.streams + idx[c + 1], *plane = blob + d.raw;
    uint32_t x = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    p += 4;
    const uint32_t mask = (1u << d.scale) - 1;
    const int S = d.scale, dt = d.dtype;
    uint64_t i = c * d.chunk_rows * d.cols;
    const uint64_t i1 = i + d.chunk_rows * d.cols < d.n ? i + d.chunk_rows * d.cols : d.n;
    if (dt == VZ_DTYPE_BF16) {
        for (; i < i1 && (i & 7); i++)
            lm_store(out, dt, i, lm_join(dt, lm_next(x, p, end, fb, ex, mask, S), plane[i]));
        for (; i + 8 <= i1; i += 8) { /* 8 raw bytes in, 8 bf16 out */
            const uint2 rw = *(const uint2 *)(plane + i);
            uint32_t w[4];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const uint32_t r = ((k < 4 ? rw.x : rw.y) >> 8 * (k & 3)) & 0xffu;
                const uint32_t h = (r >> 7) << 15 | lm_next(x, p, end, fb, ex, mask, S) << 7 | (r & 0x7fu);
                if (k & 1) w[k >> 1] |= h << 16;
                else w[k >> 1] = h;
            }
            *(uint4 *)(out + 2 * i) = make_uint4(w[0], w[1], w[2], w[3]);
        }
    }
    for (; i < i1; i++) lm_store(out, dt, i, lm_join(dt, lm_next(x, p, end, fb, ex, mask, S), lm_raw(plane, i, d.rbits)));
}

static __global__ void lmax_kernel(vz_lmax_block b, const uint8_t *src, uint8_t *dst) {
    extern __shared__ uint32_t lm_smem[];
    int t = 0, blk = (int)blockIdx.x;
    while (t < b.nt - 1 && blk >= b.t[t].nblk) blk -= b.t[t].nblk, t++;
    const vz_lmax_tensor d = b.t[t];
    uint32_t *fb = lm_smem;
    uint8_t *ex = (uint8_t *)(lm_smem + ((size_t)1 << d.scale));
    const uint32_t *tab = (const uint32_t *)(src + d.tab);
    for (int s = 0; s < d.nsym; s++) {
        const uint32_t v = tab[s], f = v & 0xffffu, st = v >> 16;
        for (uint32_t j = threadIdx.x; j < f; j += blockDim.x) {
            fb[st + j] = f << 16 | j;
            ex[st + j] = (uint8_t)(d.lo + s);
        }
    }
    __syncthreads();
    const uint64_t c = (uint64_t)blk * VZ_LMAX_CTA_CHUNKS + threadIdx.x;
    if (c < d.nchunks) lm_chunk(d, src + d.data, dst + d.out, c, fb, ex);
}

static size_t smem_bytes(int scale) { return ((size_t)1 << scale) * 5; }

extern "C" vz_status vz_lmax_prepare(void) {
    cudaError_t e = cudaFuncSetAttribute(lmax_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem_bytes(LM_MAX_SCALE));
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "lossless-max decoder: shared memory: %s", cudaGetErrorString(e));
    return VZ_OK;
}

extern "C" vz_status vz_lmax_decode(const vz_lmax_block *b, const uint8_t *src, uint8_t *dst, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    VZ_FAIL_IF(b->nt < 1 || b->nt > VZ_LMAX_MAXT || b->max_scale > LM_MAX_SCALE, VZ_ERR_ARG,
               "lossless-max decoder: %d tensors, scale %d", (int)b->nt, (int)b->max_scale);
    int64_t nblk = 0;
    for (int32_t i = 0; i < b->nt; i++) {
        VZ_FAIL_IF((b->t[i].out | b->t[i].data | b->t[i].tab) % 16 || b->t[i].scale > b->max_scale ||
                       b->t[i].nblk < 1,
                   VZ_ERR_ARG, "lossless-max decoder: tensor %d misaligned or malformed", (int)i);
        nblk += b->t[i].nblk;
    }
    VZ_FAIL_IF(nblk > INT32_MAX, VZ_ERR_UNSUPPORTED, "lossless-max decoder: %lld blocks", (long long)nblk);
    lmax_kernel<<<(unsigned)nblk, VZ_LMAX_CTA_CHUNKS, smem_bytes(b->max_scale), st>>>(*b, src, dst);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "lossless-max decoder: launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}
