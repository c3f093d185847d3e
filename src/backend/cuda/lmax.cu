/*
 * lmax.cu - GPU decoder of lossless-max blocks (lmax.h; docs/codecs.md
 * section 2): one thread per rANS chunk (a few rows), decoding its exponents
 * with tables in shared memory built from the block's per-tensor table and
 * merging the raw sign/mantissa plane into the source bits (bf16: 8 elements,
 * one 16-byte store at a time). One launch decodes a whole block (a layer),
 * so all its chunks run at once; its time is the longest chunk's chain of
 * dependent symbol steps. Variants (a {name, kernel} table; the test checks
 * every one, then times them on real layers): stream bytes loaded one at a
 * time or through a register queue of 4- or 16-byte words loaded ahead, raw
 * bytes 8 or 16 at a time, one 5-byte table entry per slot or a 1-byte slot
 * table + per-symbol table, shared-memory carveout default or maximal.
 * Exact: tests/test_cuda_lmax.c compares each variant byte for byte with the
 * CPU reference vz_lmax_decode_ref, outputs poisoned.
 * Timed end to end by `vramzip bench` with VZ_STREAM_CODEC=lossless-max.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/lmax.h"

#define LM_L (1u << 23)
#define LM_MAX_SCALE 15

enum { LM_CARVE = 1, LM_WIDE = 2, LM_SMALL = 4, LM_DIRECT = 8, LM_NV = 16 };

/* A chunk's stream bytes. DIRECT: one byte load per byte. Else a register
 * queue of aligned units (4 bytes, WIDE: 16) loaded one unit ahead of use,
 * so a renormalization rarely waits on memory. Bytes past the stream's end
 * read as 0, as in the spec; units past it are not loaded (the unit holding
 * the last byte lies inside the block). */
typedef struct lm_rd {
    const uint8_t *p, *end;  /* DIRECT */
    const uint8_t *wp, *we;  /* next unit to load; units from we on are past the end */
    uint4 cur, nxt;          /* current unit, the next one */
    uint32_t buf;            /* bytes of the current word not yet read, low first */
    int32_t nb, wi;          /* bytes left in buf; WIDE: next word of cur */
    int64_t left;            /* stream bytes left */
} lm_rd;

static __device__ __forceinline__ uint32_t lm_word(uint4 v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

template <int V> static __device__ __forceinline__ uint4 lm_ld(const lm_rd &r) {
    if (V & LM_WIDE) return r.wp < r.we ? *(const uint4 *)r.wp : make_uint4(0, 0, 0, 0);
    return make_uint4(r.wp < r.we ? *(const uint32_t *)r.wp : 0u, 0, 0, 0);
}

template <int V> static __device__ __forceinline__ void lm_rd_init(lm_rd &r, const uint8_t *p, const uint8_t *end) {
    r.p = p, r.end = end, r.left = end - p;
    if (V & LM_DIRECT) return;
    const uintptr_t u = V & LM_WIDE ? 16 : 4, a = (uintptr_t)p, off = a & (u - 1);
    r.wp = (const uint8_t *)(a - off);
    r.we = (const uint8_t *)(((uintptr_t)end + u - 1) & ~(u - 1));
    r.cur = lm_ld<V>(r);
    r.wp += u;
    r.nxt = lm_ld<V>(r);
    r.wp += u;
    r.buf = lm_word(r.cur, (int)(off / 4)) >> 8 * (off % 4), r.nb = 4 - (int32_t)(off % 4), r.wi = (int32_t)(off / 4) + 1;
}

template <int V> static __device__ __forceinline__ uint32_t lm_rd_byte(lm_rd &r) {
    if (V & LM_DIRECT) return r.p < r.end ? (uint32_t)*r.p++ : 0u;
    if (r.nb == 0) {
        if (!(V & LM_WIDE)) {
            r.buf = r.nxt.x;
            r.nxt = lm_ld<V>(r);
            r.wp += 4;
        } else {
            if (r.wi == 4) {
                r.cur = r.nxt, r.wi = 0;
                r.nxt = lm_ld<V>(r);
                r.wp += 16;
            }
            r.buf = lm_word(r.cur, r.wi++);
        }
        r.nb = 4;
    }
    const uint32_t b = r.left > 0 ? (r.buf & 0xffu) : 0u;
    r.buf >>= 8, r.nb--, r.left--;
    return b;
}

/* One rANS symbol (docs/codecs.md section 2); returns the exponent field.
 * Big tables: tb[slot] = freq << 16 | (slot - start), ex[slot] = lo + s.
 * SMALL: ex[slot] = s, tb[s] = start << 16 | freq. */
template <int V>
static __device__ __forceinline__ uint32_t lm_next(uint32_t &x, lm_rd &r, const uint32_t *tb, const uint8_t *ex,
                                                   uint32_t mask, int S, int lo) {
    const uint32_t slot = x & mask;
    uint32_t s;
    if (V & LM_SMALL) {
        s = ex[slot];
        const uint32_t v = tb[s];
        x = (v & 0xffffu) * (x >> S) + slot - (v >> 16);
        s += (uint32_t)lo;
    } else {
        const uint32_t e = tb[slot];
        s = ex[slot];
        x = (e >> 16) * (x >> S) + (e & 0xffffu);
    }
    if (x < LM_L) {
        x = x << 8 | lm_rd_byte<V>(r);
        if (x < LM_L) x = x << 8 | lm_rd_byte<V>(r);
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

/* G raw bytes at plane + i (G-aligned), or zeros. */
template <int G> static __device__ __forceinline__ uint4 lm_raw_group(const uint8_t *plane, uint64_t i, bool ok) {
    if (!ok) return make_uint4(0, 0, 0, 0);
    if (G == 16) return *(const uint4 *)(plane + i);
    const uint2 v = *(const uint2 *)(plane + i);
    return make_uint4(v.x, v.y, 0, 0);
}

/* Chunk c of tensor d: its elements into out. */
template <int V>
static __device__ void lm_chunk(const vz_lmax_tensor &d, const uint8_t *blob, uint8_t *out, uint64_t c,
                                const uint32_t *tb, const uint8_t *ex) {
    constexpr int G = V & LM_WIDE ? 16 : 8; /* bf16 elements per raw load */
    const uint64_t *idx = (const uint64_t *)blob; /* 16-aligned: the blob is 256-aligned in the block */
    const uint8_t *plane = blob + d.raw;
    lm_rd rd;
    lm_rd_init<V>(rd, blob + d.streams + idx[c], blob + d.streams + idx[c + 1]);
    uint32_t x = lm_rd_byte<V>(rd);
    for (int k = 1; k < 4; k++) x |= lm_rd_byte<V>(rd) << 8 * k;
    const uint32_t mask = (1u << d.scale) - 1;
    const int S = d.scale, dt = d.dtype, lo = d.lo;
    uint64_t i = c * d.chunk_rows * d.cols;
    const uint64_t i1 = i + d.chunk_rows * d.cols < d.n ? i + d.chunk_rows * d.cols : d.n;
    if (dt == VZ_DTYPE_BF16) {
        for (; i < i1 && (i & (G - 1)); i++)
            lm_store(out, dt, i, lm_join(dt, lm_next<V>(x, rd, tb, ex, mask, S, lo), plane[i]));
        uint4 rw = lm_raw_group<G>(plane, i, i + G <= i1);
        for (; i + G <= i1; i += G) { /* G raw bytes in (loaded one group ahead), G bf16 out */
            const uint4 rn = lm_raw_group<G>(plane, i + G, i + 2 * G <= i1);
            uint32_t w[G / 2];
#pragma unroll
            for (int k = 0; k < G; k++) {
                const uint32_t r = (lm_word(rw, k / 4) >> 8 * (k & 3)) & 0xffu;
                const uint32_t h = (r >> 7) << 15 | lm_next<V>(x, rd, tb, ex, mask, S, lo) << 7 | (r & 0x7fu);
                if (k & 1) w[k >> 1] |= h << 16;
                else w[k >> 1] = h;
            }
#pragma unroll
            for (int q = 0; q < G / 8; q++) *(uint4 *)(out + 2 * i + 16 * q) = make_uint4(w[4 * q], w[4 * q + 1], w[4 * q + 2], w[4 * q + 3]);
            rw = rn;
        }
    }
    for (; i < i1; i++)
        lm_store(out, dt, i, lm_join(dt, lm_next<V>(x, rd, tb, ex, mask, S, lo), lm_raw(plane, i, d.rbits)));
}

template <int V> static __global__ void lmax_kernel(vz_lmax_block b, const uint8_t *src, uint8_t *dst) {
    extern __shared__ uint32_t lm_smem[];
    int t = 0, blk = (int)blockIdx.x;
    while (t < b.nt - 1 && blk >= b.t[t].nblk) blk -= b.t[t].nblk, t++;
    const vz_lmax_tensor d = b.t[t];
    const uint32_t *tab = (const uint32_t *)(src + d.tab);
    uint32_t *tb = lm_smem;
    uint8_t *ex = (uint8_t *)(lm_smem + (V & LM_SMALL ? 256 : (size_t)1 << d.scale));
    for (int s = 0; s < d.nsym; s++) {
        const uint32_t v = tab[s], f = v & 0xffffu, st = v >> 16;
        if ((V & LM_SMALL) && threadIdx.x == 0) tb[s] = v;
        for (uint32_t j = threadIdx.x; j < f; j += blockDim.x) {
            if (!(V & LM_SMALL)) tb[st + j] = f << 16 | j;
            ex[st + j] = (uint8_t)(V & LM_SMALL ? s : d.lo + s);
        }
    }
    __syncthreads();
    const uint64_t c = (uint64_t)blk * VZ_LMAX_CTA_CHUNKS + threadIdx.x;
    if (c < d.nchunks) lm_chunk<V>(d, src + d.data, dst + d.out, c, tb, ex);
}

typedef void (*lm_kernel_fn)(vz_lmax_block, const uint8_t *, uint8_t *);
static const lm_kernel_fn lm_kernels[LM_NV] = {
    lmax_kernel<0>, lmax_kernel<1>,  lmax_kernel<2>,  lmax_kernel<3>,  lmax_kernel<4>,  lmax_kernel<5>,
    lmax_kernel<6>, lmax_kernel<7>,  lmax_kernel<8>,  lmax_kernel<9>,  lmax_kernel<10>, lmax_kernel<11>,
    lmax_kernel<12>, lmax_kernel<13>, lmax_kernel<14>, lmax_kernel<15>,
};
static int lm_variant = VZ_LMAX_V_DEFAULT;

static size_t smem_bytes(int v, int scale) { return v & LM_SMALL ? 1024 + ((size_t)1 << scale) : ((size_t)1 << scale) * 5; }

extern "C" int vz_lmax_variant(int v) {
    const int old = lm_variant;
    if (v >= 0 && v < LM_NV) lm_variant = v;
    return old;
}

extern "C" vz_status vz_lmax_prepare(void) {
    const char *e = getenv("VZ_LMAX_V"); /* bench: force a variant */
    if (e && *e >= '0' && *e <= '9') vz_lmax_variant(atoi(e));
    cudaError_t ce = cudaSuccess;
    for (int v = 0; v < LM_NV && ce == cudaSuccess; v++) {
        ce = cudaFuncSetAttribute(lm_kernels[v], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)smem_bytes(v, LM_MAX_SCALE));
        if (ce == cudaSuccess)
            ce = cudaFuncSetAttribute(lm_kernels[v], cudaFuncAttributePreferredSharedMemoryCarveout,
                                      v & LM_CARVE ? cudaSharedmemCarveoutMaxShared : cudaSharedmemCarveoutDefault);
    }
    VZ_FAIL_IF(ce != cudaSuccess, VZ_ERR_CUDA, "lossless-max decoder: shared memory: %s", cudaGetErrorString(ce));
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
    lm_kernels[lm_variant]<<<(unsigned)nblk, VZ_LMAX_CTA_CHUNKS, smem_bytes(lm_variant, b->max_scale), st>>>(*b, src,
                                                                                                             dst);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "lossless-max decoder: launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}
