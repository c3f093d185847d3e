/*
 * decode.cuh - the device decoders of every codec with a GPU path: ONE per
 * codec (lossless: one per fast code layout, packed3 and packed4, beside
 * its generic one), shared by all kernels that read it (matvec.cu fast and
 * generic kernels, vz_cuda_rows, the prefill decode). A decoder gives the
 * 32 f32 weights of one lane's code group (32 consecutive row elements)
 * and must equal the codec's
 * decode_ref / decode_f32 (src/codec/{raw,lossless,q8,q4}.c, docs/codecs.md)
 * bit for bit; tests/test_cuda_matvec.c checks that through the matvec.
 */
#ifndef VZ_BACKEND_CUDA_DECODE_CUH
#define VZ_BACKEND_CUDA_DECODE_CUH

#include <cuda_fp16.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"

/* The FAST branches return early; the generic loops after them are dead there. */
#pragma nv_diag_suppress 128

/* Loads of weight streams, read once per token: their L2 lines are the
 * first evicted (createpolicy evict_first; the policy travels in the load's
 * memory descriptor, no extra instruction per load), so that what a token
 * reads again (the KV cache, activations, norms) stays in L2 under the
 * stream. Used by the raw, lossless and q8 loads. On an H200 (three runs,
 * bench/results/2026-12-01-session34-h200.md) decode rose 0.15-0.3% (raw),
 * 0.6-0.9% (lossless) and 0-0.6% (q8) on tinyllama and 0.2-0.7% on
 * llama2-7b; q4's data load with it ran 0.3-0.5% slower on tinyllama, so
 * q4 keeps __ldg. The bits do not change. */
static __device__ __forceinline__ uint64_t vz_l2_first() {
    uint64_t p;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

/* The other end: lines a kernel right after reads (the prefill decode's
 * scratch stores, gemm.cu put_group) are the last evicted. */
static __device__ __forceinline__ uint64_t vz_l2_last() {
    uint64_t p;
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(p));
    return p;
}

static __device__ __forceinline__ uint4 vz_ldw(const uint4 *a) {
    uint4 v;
    asm("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(a), "l"(vz_l2_first()));
    return v;
}

static __device__ __forceinline__ uint32_t vz_ldw(const uint32_t *a) {
    uint32_t v;
    asm("ld.global.nc.L2::cache_hint.u32 %0, [%1], %2;" : "=r"(v) : "l"(a), "l"(vz_l2_first()));
    return v;
}

/* Kernel paths (vz_cuda_tensor.kind). The fast paths need cols % 32 == 0.
 * VZ_K_Q4D, VZ_K_Q8D: a q4 or q8 tensor with dp set (cuda.h), the kernels'
 * own kinds only (matvec.cu): the codec's loads and decode, sums by integer
 * dot products (mv4.cuh). VZ_K_LL4: lossless bf16 packed4 with a
 * sign-symmetric lut (docs/codecs.md), the matvec's own kind (elsewhere
 * the generic decoder). */
enum { VZ_K_RAW_BF16 = 0, VZ_K_LL3 = 1, VZ_K_Q8 = 2, VZ_K_Q4 = 3, VZ_K_GENERIC = 4, VZ_K_Q4D = 5, VZ_K_Q8D = 6,
       VZ_K_LL4 = 7 };
static_assert(VZ_K_LL3 == VZ_CUDA_KIND_LL3 && VZ_K_GENERIC == VZ_CUDA_KIND_GENERIC && VZ_K_LL4 == VZ_CUDA_KIND_LL4,
              "cuda.h's kind values");

/* The kinds that read q8 codes (by fmaf or by dot products), q4 codes, and
 * the dot-product kinds: compile-time tests of a kernel's KIND, and the
 * host's choice of kernel. */
static __host__ __device__ constexpr bool vz_k_q8(int k) { return k == VZ_K_Q8 || k == VZ_K_Q8D; }
static __host__ __device__ constexpr bool vz_k_q4(int k) { return k == VZ_K_Q4 || k == VZ_K_Q4D; }
static __host__ __device__ constexpr bool vz_k_dp(int k) { return k == VZ_K_Q4D || k == VZ_K_Q8D; }
/* The fast lossless kinds (their rings copy the exception index ahead). */
static __host__ __device__ constexpr bool vz_k_ll(int k) { return k == VZ_K_LL3 || k == VZ_K_LL4; }
/* The row of a kernel table over the fmaf kinds (raw, LL3, q8, q4, then LL4). */
static __host__ __device__ constexpr int vz_k_row(int k) { return k == VZ_K_LL4 ? 4 : k; }

/* Codec ids as on disk (docs/codecs.md); codecs.def may not list them all yet. */
enum { VZ_ID_RAW = 0, VZ_ID_LOSSLESS = 1, VZ_ID_Q8 = 4, VZ_ID_Q4 = 5 };

/* Device view of one uploaded tensor, passed by value into kernels. */
struct vz_dview {
    const uint8_t *data;   /* raw elements / lossless low planes / q8 int8 */
    const uint32_t *codes; /* lossless code groups (k words each) */
    const uint32_t *eidx;  /* lossless exception index */
    const uint16_t *exc;   /* lossless exceptions */
    const uint16_t *scales;/* q8/q4 f16 scales */
    const uint8_t *zeros;  /* q4 asymmetric: zero points (NULL: symmetric, z = 8) */
    const uint8_t *lut;    /* lossless lut in device memory */
    int64_t rows, cols, n;
    int32_t dtype, codec, k, layout, gpr, bpr, group, qgpr; /* qgpr: q8/q4 scales per row */
    int32_t qstride;       /* q4: code bytes per row, ceil(cols / 2) */
    uint32_t qdiv;         /* q8/q4 fast paths: qmul << 5 | qsh, scale group of lane group g = g * qmul >> qsh */
    uint32_t lut_lo, lut_hi;
    int32_t tiled;         /* lossless: exceptions in GPU tile order (src/codec/lossless_tile.h) */
};

/* One lane's raw bits of one group, loaded ahead of its decode (fast paths). */
struct vz_gst {
    uint4 v[4];
    uint32_t u[5];
    uint32_t ex; /* lossless: this lane's exception entry e0 + lane, if < e1 (else not used) */
};

/* One lane's decoded group, kept packed until the fmaf (fewer registers):
 * raw/lossless bf16 pairs (element 2i in the low half of p[i]); q8: 32 int8
 * biased by 128 (q ^ 0x80) in p[0..7] and the scale s; q4: the low nibbles
 * of the 16 code bytes in p[0..3], the high nibbles in p[8..11], one per
 * byte, p[4] the f32 bits of 2^23 + z (zero point), and s. vz_pk_elem gives
 * element e as f32, the same value the f32 decoders give: an integer code
 * c (0..255) becomes the f32 2^23 + c by one prmt (byte c under the
 * exponent byte 0x4b), and a subtraction of 2^23 + 128 (q8) or 2^23 + z
 * (q4) gives c - 128 or c - z exactly; the I2F of (float)(int8_t)q runs at
 * a quarter of the FMA rate on sm_90 and bounded the q8 kernel. */
struct vz_pk {
    uint32_t p[16];
    float s;
};

/* Words per lane of the warp's shared scratch (exception patching); the
 * packed3 decoder vz_ll3_decode2 uses 12 (its 8 words of H): a 48-byte
 * stride makes the lanes' 16-byte stores and loads conflict-free. */
#define VZ_SMEM_LANE 16
#define VZ_SMEM_LANE3 12
#define VZ_SMEM_WARP3 (32 * VZ_SMEM_LANE3 + 8) /* vz_ll3_decode2's scratch: the rows, a byte per lane */

static __device__ __forceinline__ float vz_u2f(uint32_t u) { return __uint_as_float(u); }

/* f32 of a source element's bits (dtype 0 f32, 1 f16, 2 bf16); exact. */
static __device__ __forceinline__ float vz_bits_to_f32(uint32_t bits, int dtype) {
    if (dtype == 0) return vz_u2f(bits);
    if (dtype == 1) return __half2float(__ushort_as_half((unsigned short)bits));
    return vz_u2f(bits << 16);
}

/* Index of group it * 32 + lane of row r among the tensor's rows * gpr
 * groups (a lane past the row's last group takes group 0), in 32 bits: the
 * fast kinds require rows * gpr < 2^32 (cuda_weights.cu), so the address
 * of a group's bytes is one wide multiply-add instead of 64-bit products. */
static __device__ __forceinline__ uint32_t vz_glane(const vz_dview &d, int it, int lane) {
    const uint32_t g = (uint32_t)(it * 32 + lane);
    return g < (uint32_t)d.gpr ? g : 0u;
}

static __device__ __forceinline__ uint32_t vz_gidx(const vz_dview &d, int64_t r, int it, int lane) {
    return (uint32_t)r * (uint32_t)d.gpr + vz_glane(d, it, lane);
}

/* ---- lossless ------------------------------------------------------------
 * The codes of a packed3 group as 4 nibble words: the code of element e is
 * nibble e % 8 of s[e / 8] (elements 24..31 gathered from the three bit-3
 * planes). */
static __device__ __forceinline__ void vz_ll_s_packed3(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t s[4]) {
    s[0] = w0 & 0x77777777u, s[1] = w1 & 0x77777777u, s[2] = w2 & 0x77777777u;
    s[3] = ((w0 >> 3) & 0x11111111u) | ((w1 >> 2) & 0x22222222u) | ((w2 >> 1) & 0x44444444u);
}

/* prmt with a selector whose used nibbles (the low 4) have bit 3 clear, as
 * codes 0..7 do: the instruction's sign-replicate bit is then 0 and this
 * equals __byte_perm, which masks the selector with 0x7777 first (one more
 * instruction per call) because it cannot know. */
static __device__ __forceinline__ uint32_t vz_prmt7(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t r;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
    return r;
}

/* H bytes of a packed3 group from its nibble words (3-bit codes): 4 codes
 * per prmt, the lut as prmt source. */
static __device__ __forceinline__ void vz_ll_h_nibbles(const uint32_t s[4], uint32_t lo, uint32_t hi, uint32_t h[8]) {
#pragma unroll
    for (int i = 0; i < 4; i++) h[2 * i] = vz_prmt7(lo, hi, s[i]), h[2 * i + 1] = vz_prmt7(lo, hi, s[i] >> 16);
}

static __device__ __forceinline__ void vz_ll_h_packed3(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t lo,
                                                       uint32_t hi, uint32_t h[8]) {
    uint32_t s[4];
    vz_ll_s_packed3(w0, w1, w2, s);
    vz_ll_h_nibbles(s, lo, hi, h);
}

/* The lut's low word as a per-thread value (its bits unchanged) for a
 * kernel that decodes many groups with one view (the batch-1 v4 rings,
 * mv4.cuh): the word is a kernel argument, so ptxas keeps it in a uniform
 * register, and a prmt takes its first source from a per-thread register
 * only; with registers tight, ptxas copied the word into each of
 * vz_ll_h_nibbles' 8 destinations before the prmt (8 instructions per
 * group). threadIdx.y is 0 in every launch of those kernels (1-D blocks),
 * but ptxas cannot know it, so the word stays in one register (a shuffle
 * or a load of it was folded back into the uniform register). llama2-7b's
 * lossless gate/up then executes 2.3% fewer instructions in the same time
 * under ncu (it waits on latency, not issue); on an H200 decode rose 0.36%
 * on tinyllama and llama2-7b, every bench of it above every one without,
 * the same logits (bench/results/2026-12-02-session42-h200.md). */
static __device__ __forceinline__ void vz_ll3_own_lut(vz_dview &d) { d.lut_lo ^= threadIdx.y; }

/* Nibble j (0..7) of a packed4 code word in the GPU sign order (layout
 * VZ_CUDA_LL_GPU4, codec/lossless_tile.h vz_ll4_gpu_word): bits [2:0] in
 * place, bit 3 in the top bit of byte j (j < 4) or bit 3 of byte j - 4. */
static __device__ __forceinline__ uint32_t vz_ll4_nib(uint32_t w, uint32_t j) {
    return (w >> 4 * j & 7u) | (w >> (j < 4u ? 8u * j + 7u : 8u * j - 29u) & 1u) << 3;
}

/* Code of element e of a group held in scratch words (k words of layout). */
static __device__ __forceinline__ uint32_t vz_ll_code(const uint32_t *w, int k, int layout, int e) {
    if (layout == 2) return (w[e >> 3] >> 4 * (e & 7)) & 15u;
    if (layout == VZ_CUDA_LL_GPU4) return vz_ll4_nib(w[e >> 3], (uint32_t)e & 7u);
    if (layout == 1) {
        if (e < 24) return (w[e >> 3] >> 4 * (e & 7)) & 7u;
        int n = e - 24;
        return ((w[0] >> (4 * n + 3)) & 1u) | ((w[1] >> (4 * n + 3)) & 1u) << 1 | ((w[2] >> (4 * n + 3)) & 1u) << 2;
    }
    uint32_t c = 0;
    for (int b = 0; b < k; b++) c |= ((w[b] >> e) & 1u) << b;
    return c;
}

/* A lane's 8 words of H to its scratch row and back (16-byte accesses). */
static __device__ __forceinline__ void vz_ll_h_store(uint32_t *row, const uint32_t h[8]) {
    *(uint4 *)row = make_uint4(h[0], h[1], h[2], h[3]);
    *(uint4 *)(row + 4) = make_uint4(h[4], h[5], h[6], h[7]);
}

static __device__ __forceinline__ void vz_ll_h_load(const uint32_t *row, uint32_t h[8]) {
    const uint4 a = *(const uint4 *)row, b = *(const uint4 *)(row + 4);
    h[0] = a.x, h[1] = a.y, h[2] = a.z, h[3] = a.w, h[4] = b.x, h[5] = b.y, h[6] = b.z, h[7] = b.w;
}

/* The lane's 32 bf16 of a bf16 lossless group as 16 packed pairs: H
 * bytes h with the low bytes of st.v[0..1] (element 2i in the low half of
 * k.p[i]). */
static __device__ __forceinline__ void vz_ll_pack_bf16(const vz_gst &st, const uint32_t h[8], vz_pk &k) {
    const uint32_t L[8] = {st.v[0].x, st.v[0].y, st.v[0].z, st.v[0].w, st.v[1].x, st.v[1].y, st.v[1].z, st.v[1].w};
#pragma unroll
    for (int j = 0; j < 8; j++) k.p[2 * j] = __byte_perm(L[j], h[j], 0x5140), k.p[2 * j + 1] = __byte_perm(L[j], h[j], 0x7362);
}

/* 16 packed bf16 pairs (element 2i in the low half of p[i]) to 32 f32, exactly. */
static __device__ __forceinline__ void vz_bf16x2_f32(const uint32_t p[16], float w[32]) {
#pragma unroll
    for (int i = 0; i < 16; i++) w[2 * i] = vz_u2f(p[i] << 16), w[2 * i + 1] = vz_u2f(p[i] & 0xffff0000u);
}

/* Patches the exceptions [e0, e1) of the warp's 1024-element block into the
 * lanes' H bytes. Every lane calls it (warp-uniform e0, e1). The lane's
 * scratch row holds H (words 0..7) then its k code words (8..). */
template <bool PACKED3>
static __device__ __forceinline__ void vz_ll_patch(const vz_dview &d, uint32_t *sm, uint32_t e0, uint32_t e1,
                                                   int lane, uint32_t h[8], const uint32_t *cw) {
    uint32_t *mine = sm + lane * VZ_SMEM_LANE;
    vz_ll_h_store(mine, h);
    if (PACKED3) {
        *(uint4 *)(mine + 8) = make_uint4(cw[0], cw[1], cw[2], 0);
    } else {
        for (int b = 0; b < d.k; b++) mine[8 + b] = cw[b];
    }
    __syncwarp();
    for (uint32_t j = e0 + lane; j < e1; j += 32) {
        uint32_t v = __ldg(d.exc + j), off = v & 1023u;
        uint32_t *row = sm + (off >> 5) * VZ_SMEM_LANE;
        uint32_t code = vz_ll_code(row + 8, d.k, PACKED3 ? 1 : d.layout, (int)(off & 31u));
        ((uint8_t *)row)[off & 31u] = (uint8_t)((v >> 10) << d.k | code);
    }
    __syncwarp();
    vz_ll_h_load(mine, h);
    __syncwarp();
}

/* One lane's exceptions of group g of row r, found by scanning its block's
 * (or, tiled, its tile's) entries: no other lane takes part. The slow path
 * of the generic decoder for tiled tensors and of the tensor-core kernel's
 * generic kind. */
static __device__ __noinline__ void vz_ll_lane_patch(const vz_dview &d, int64_t r, int g, uint32_t h[8],
                                                     const uint32_t *cw) {
    if (g >= d.gpr) return;
    size_t ib;
    uint32_t own;
    if (d.tiled) {
        ib = (size_t)(r >> 3) * (size_t)(d.cols >> 7) + (size_t)(g >> 2);
        own = (uint32_t)((r & 7) << 2 | (g & 3));
    } else {
        ib = (size_t)r * d.bpr + (size_t)(g >> 5);
        own = (uint32_t)(g & 31);
    }
    uint32_t e0 = __ldg(d.eidx + ib), e1 = __ldg(d.eidx + ib + 1);
    for (uint32_t j = e0; j < e1; j++) {
        uint32_t v = __ldg(d.exc + j), off = v & 1023u;
        if (off >> 5 != own) continue;
        int e = (int)(off & 31u);
        uint32_t hv = (v >> 10) << d.k | vz_ll_code(cw, d.k, d.layout, e);
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (i == e >> 2) h[i] = (h[i] & ~(0xffu << 8 * (e & 3))) | hv << 8 * (e & 3);
    }
}

/* A thread's exceptions of one packed3 row walked group by group in order
 * (the prefill's fused GEMM, gemm_mma.cuh, where each thread decodes every
 * group of one row): the entries of a row are sorted by (block, element),
 * so one cursor serves the whole row. j: the next entry, v: its value
 * (loaded one entry ahead), bend: the end of the current 1024-column
 * block's entries, bnext: the next block's end (one block ahead), end: the
 * row's end. vz_ll_cursor_init before group 0; vz_ll_cursor_patch for
 * groups 0, 1, 2, ... patches H bytes h of group g from codes cw. */
struct vz_ll_cursor {
    uint32_t j, v, bend, bnext, end;
};

static __device__ __forceinline__ void vz_ll_cursor_init(const vz_dview &d, int64_t r, vz_ll_cursor &c) {
    const uint32_t ib = (uint32_t)r * (uint32_t)d.bpr;
    c.j = __ldg(d.eidx + ib), c.bend = __ldg(d.eidx + ib + 1);
    c.bnext = d.bpr > 1 ? __ldg(d.eidx + ib + 2) : c.bend;
    c.end = __ldg(d.eidx + ib + d.bpr);
    c.v = c.j < c.end ? __ldg(d.exc + c.j) : 0u;
}

static __device__ __forceinline__ void vz_ll_cursor_patch(const vz_dview &d, int64_t r, int g, vz_ll_cursor &c,
                                                          const uint32_t cw[3], uint32_t h[8]) {
    if (g > 0 && (g & 31) == 0) { /* a new block: its end was loaded a block ago */
        c.bend = c.bnext;
        const int nb = (g >> 5) + 2;
        if (nb <= d.bpr) c.bnext = __ldg(d.eidx + (uint32_t)r * (uint32_t)d.bpr + (uint32_t)nb);
    }
    while (c.j < c.bend && ((c.v & 1023u) >> 5) == (uint32_t)(g & 31)) {
        const int e = (int)(c.v & 31u);
        const uint32_t w = e < 8 ? cw[0] : e < 16 ? cw[1] : cw[2], n = (uint32_t)(e & 7) * 4;
        const uint32_t code = e < 24 ? (w >> n) & 7u /* vz_ll_code's packed3, without a dynamic index */
                                     : ((cw[0] >> (n + 3)) & 1u) | ((cw[1] >> (n + 3)) & 1u) << 1 | ((cw[2] >> (n + 3)) & 1u) << 2;
        const uint32_t sh = (uint32_t)(e & 3) * 8, hv = ((c.v >> 10) << 3 | code) << sh, q = (uint32_t)e >> 2;
#pragma unroll
        for (int i = 0; i < 8; i++) { /* selects, not an indexed store: h stays in registers */
            const uint32_t m = q == (uint32_t)i ? 0xffu << sh : 0u;
            h[i] = (h[i] & ~m) | (hv & m);
        }
        c.j++;
        c.v = c.j < c.end ? __ldg(d.exc + c.j) : 0u;
    }
}

/* Fast lossless (bf16, k = 3 packed3, cols % 32 == 0), stage 1: loads. The
 * lane's low bytes and code words (st.v[0..1], st.u[0..2]), then its
 * block's exception range (st.u[3..4]) from the exception index. */
static __device__ __forceinline__ void vz_ll3_load_lc(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    const uint32_t gi = vz_gidx(d, r, it, lane);
    const uint4 *lp = (const uint4 *)d.data + (size_t)gi * 2;
    const uint32_t *cp = d.codes + (size_t)gi * 3;
    st.v[0] = vz_ldw(lp), st.v[1] = vz_ldw(lp + 1);
    st.u[0] = vz_ldw(cp), st.u[1] = vz_ldw(cp + 1), st.u[2] = vz_ldw(cp + 2);
}

static __device__ __forceinline__ void vz_ll3_load_ei(const vz_dview &d, int64_t r, int it, vz_gst &st) {
    const uint32_t ib = (uint32_t)r * (uint32_t)d.bpr + (uint32_t)it;
    st.u[3] = __ldg(d.eidx + ib), st.u[4] = __ldg(d.eidx + ib + 1);
}

static __device__ __forceinline__ void vz_ll3_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    vz_ll3_load_lc(d, r, it, lane, st);
    vz_ll3_load_ei(d, r, it, st);
}

/* Stage 2: H bytes by prmt, exceptions patched, bf16 pairs to f32 (its
 * own loop: through vz_ll_pack_bf16 and vz_bf16x2_f32 ptxas scheduled the
 * legacy and prefill kernels that call it differently). */
static __device__ __forceinline__ void vz_ll3_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                     float w[32]) {
    uint32_t h[8], cw[3] = {st.u[0], st.u[1], st.u[2]};
    vz_ll_h_packed3(cw[0], cw[1], cw[2], d.lut_lo, d.lut_hi, h);
    if (st.u[4] > st.u[3]) vz_ll_patch<true>(d, sm, st.u[3], st.u[4], lane, h, cw);
    uint32_t L[8] = {st.v[0].x, st.v[0].y, st.v[0].z, st.v[0].w, st.v[1].x, st.v[1].y, st.v[1].z, st.v[1].w};
#pragma unroll
    for (int j = 0; j < 8; j++) {
        uint32_t p0 = __byte_perm(L[j], h[j], 0x5140), p1 = __byte_perm(L[j], h[j], 0x7362);
        w[4 * j] = vz_u2f(p0 << 16), w[4 * j + 1] = vz_u2f(p0 & 0xffff0000u);
        w[4 * j + 2] = vz_u2f(p1 << 16), w[4 * j + 3] = vz_u2f(p1 & 0xffff0000u);
    }
}

/* The second half of a group's loads: the block's exception range [e0,
 * e1) and the lane's entry e0 + lane. The entry is loaded unpredicated,
 * from a valid dummy address (the exception index) when the lane has none,
 * so ptxas loads it straight into its slot register (predicated, with 0
 * otherwise, ptxas loaded it into a temporary and copied it ~6
 * instructions later, and a copy waits for its load); vz_ll3_decode2 reads
 * ex only for lanes below e1. mv4_ring issues the first half,
 * vz_ll3_load_lc, before it waits for the index that gives e0, e1. */
static __device__ __forceinline__ void vz_ll3_load_ex(const vz_dview &d, int lane, uint32_t e0, uint32_t e1,
                                                      vz_gst &st) {
    st.u[3] = e0, st.u[4] = e1;
    const uint32_t e = e0 + (uint32_t)lane;
    st.ex = __ldg(e < e1 ? d.exc + e : (const uint16_t *)d.eidx);
}

/* Loads of a group with its first 32 exceptions (the lane's entry e0 +
 * lane) in flight together, e0, e1 by shuffle from ei (lane j holds
 * exc_start[r*bpr + j], j <= bpr) when bpr < 32, so no load waits on
 * another; else loaded (the v2 matvec, matvec.cu). */
static __device__ __forceinline__ void vz_ll3_load2(const vz_dview &d, int64_t r, int it, int lane, uint32_t ei,
                                                    vz_gst &st) {
    vz_gst e;
    if (d.bpr < 32) e.u[3] = __shfl_sync(0xffffffffu, ei, it), e.u[4] = __shfl_sync(0xffffffffu, ei, it + 1);
    else vz_ll3_load_ei(d, r, it, e);
    vz_ll3_load_lc(d, r, it, lane, st);
    vz_ll3_load_ex(d, lane, e.u[3], e.u[4], st);
}

/* The H byte of exception entry v whose group's nibble words are s:
 * (entry >> 10) << 3 | the code of element v & 31. */
static __device__ __forceinline__ uint32_t vz_ll3_hbyte(const uint32_t s[4], uint32_t v) {
    const uint32_t e = v & 31u, sw = e & 16u ? (e & 8u ? s[3] : s[2]) : (e & 8u ? s[1] : s[0]);
    return ((v >> 10) << 3 | (sw >> 4 * (e & 7u) & 7u)) & 0xffu;
}

/* Writes up to 32 exception entries of one block (entry j held by lane j;
 * valid: lane j holds one) into their owners' H bytes in the warp's
 * scratch (sm: a row of VZ_SMEM_LANE3 words per lane, then a byte per
 * lane). The owner of an entry is the lane whose group holds it (offset
 * bits [9:5], also in tile order); the writer takes the owner's four
 * nibble words by shuffle, so it needs no shared-memory read. A lane
 * without an entry writes its own byte past the rows (no branch). Every
 * lane calls it, between a barrier after the owners' stores and one before
 * their reads. */
static __device__ __forceinline__ void vz_ll3_scatter(uint32_t *sm, const uint32_t s[4], uint32_t ex, bool valid,
                                                      int lane) {
    const uint32_t o = (ex & 1023u) >> 5;
    const uint32_t t[4] = {__shfl_sync(0xffffffffu, s[0], o), __shfl_sync(0xffffffffu, s[1], o),
                           __shfl_sync(0xffffffffu, s[2], o), __shfl_sync(0xffffffffu, s[3], o)};
    uint8_t *dst = valid ? (uint8_t *)(sm + o * VZ_SMEM_LANE3) + (ex & 31u)
                         : (uint8_t *)(sm + 32 * VZ_SMEM_LANE3) + lane;
    *dst = (uint8_t)vz_ll3_hbyte(t, ex);
}

/* Stage 2 of vz_ll3_load2: H by prmt, exceptions patched through the
 * warp's scratch (VZ_SMEM_WARP3 words), packed bf16. Each lane stores its
 * H; after a warp barrier the block's entries are scattered into their
 * owners' H (vz_ll3_scatter: the first 32 from st.ex, the rest, rare,
 * loaded 32 at a time in a warp-uniform loop); after a second barrier each
 * lane reads its H back (the next call's first barrier orders this read
 * before any lane writes into another lane's row). The writer's shuffles
 * do not wait on the first barrier, so the patch is one shared-memory
 * round trip fewer than a writer reading its owner's codes from the
 * scratch (llama2-7b lossless decode on an H200: 250.5 -> 274.2 tok/s,
 * bench/results/2026-11-29-session15-h200.md). Left out in a timing build
 * the patch is worth 15% of llama2-7b's lossless decode (its rare loop 6%,
 * the entry loads 4%, the owner's code shuffles nothing measurable), more
 * than the fmaf (4%); patching a pair's rows together, two
 * entries per lane, the loop without shuffles or out of line, and the
 * patch overlapped with the previous step's fmaf were all slower (bench/
 * results/2026-11-30-session32-h200.md). */
static __device__ __forceinline__ void vz_ll3_decode2(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                      vz_pk &k) {
    uint32_t h[8], s[4];
    vz_ll_s_packed3(st.u[0], st.u[1], st.u[2], s);
    vz_ll_h_nibbles(s, d.lut_lo, d.lut_hi, h);
    const uint32_t e0 = st.u[3], e1 = st.u[4];
    uint32_t *mine = sm + lane * VZ_SMEM_LANE3;
    vz_ll_h_store(mine, h);
    __syncwarp();
    vz_ll3_scatter(sm, s, st.ex, e0 + (uint32_t)lane < e1, lane);
    if (e1 > e0 + 32u) /* warp-uniform, rare */
        for (uint32_t j = e0 + 32u; j < e1; j += 32u) {
            const bool valid = j + (uint32_t)lane < e1;
            vz_ll3_scatter(sm, s, valid ? __ldg(d.exc + j + lane) : 0u, valid, lane);
        }
    __syncwarp();
    vz_ll_h_load(mine, h);
    vz_ll_pack_bf16(st, h, k);
}

/* Fast lossless packed4 (VZ_K_LL4: bf16, k = 4, layout 2 uploaded in the
 * GPU sign order VZ_CUDA_LL_GPU4, lut[c + 8] = lut[c] ^ 0x80, cols % 32 ==
 * 0). Loads: the lane's low bytes (st.v[0..1]) and its 4 code words as one
 * 16-byte load (st.v[2]); vz_ll4_load adds its block's exception range
 * (st.u[3..4]), which the v4 ring reads from its copy of the index
 * instead; the lane's entry e0 + lane (st.ex) comes by vz_ll3_load_ex, one
 * step ahead in the rings (vz_ll4_load_all: at once, after the range, for
 * the kernels without a ring). */
static __device__ __forceinline__ void vz_ll4_load_lc(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    const uint32_t gi = vz_gidx(d, r, it, lane);
    const uint4 *lp = (const uint4 *)d.data + (size_t)gi * 2;
    st.v[0] = vz_ldw(lp), st.v[1] = vz_ldw(lp + 1);
    st.v[2] = vz_ldw((const uint4 *)d.codes + gi);
}

static __device__ __forceinline__ void vz_ll4_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    vz_ll4_load_lc(d, r, it, lane, st);
    vz_ll3_load_ei(d, r, it, st);
}

static __device__ __forceinline__ void vz_ll4_load_all(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    vz_ll4_load(d, r, it, lane, st);
    vz_ll3_load_ex(d, lane, st.u[3], st.u[4], st);
}

/* H bytes of a packed4 group (code words in the GPU sign order): per 4
 * codes one prmt of their low 3 bits through lut[0..7], and their bit 3,
 * the top bits of c's bytes (codes 0..3) or of c << 4's (codes 4..7), xored
 * into the sign (one lop3). In the file's order bit 3 sits in the code's
 * own nibble, and a prmt per 4 codes spread it to the byte tops first (its
 * sign-replicate selectors copy a byte's top bit): 9 instructions per code
 * word where this takes 7. */
static __device__ __forceinline__ void vz_ll4_h(const vz_dview &d, const uint4 &cw, uint32_t h[8]) {
    const uint32_t c[4] = {cw.x, cw.y, cw.z, cw.w};
#pragma unroll
    for (int w = 0; w < 4; w++) {
        const uint32_t s7 = c[w] & 0x77777777u;
        h[2 * w] = vz_prmt7(d.lut_lo, d.lut_hi, s7) ^ (c[w] & 0x80808080u);
        h[2 * w + 1] = vz_prmt7(d.lut_lo, d.lut_hi, s7 >> 16) ^ ((c[w] << 4) & 0x80808080u);
    }
}

/* The H byte of exception entry v, from the owner's code words cw. */
static __device__ __forceinline__ uint32_t vz_ll4_hbyte(const uint4 &cw, uint32_t v) {
    const uint32_t e = v & 31u, w = e & 16u ? (e & 8u ? cw.w : cw.z) : (e & 8u ? cw.y : cw.x);
    return ((v >> 10) << 4 | vz_ll4_nib(w, e & 7u)) & 0xffu;
}

/* The patch of a packed4 group whose block has exceptions (warp-uniform;
 * every lane calls it; ~0.03% of synthetic weights are exceptions, so
 * about a quarter of tinyllama's blocks hold one, few hold two). One
 * entry (lane 0 holds it, st.ex): its owner lane alone stores its H to
 * its scratch row, writes the byte and reads the row back. A byte insert
 * by prmt in registers (a selected selector for each of the 8 words, as
 * no register can be indexed) ran tinyllama's lossless:k4 decode 0.75%
 * and llama2-7b's 0.4% slower on an H200 (bench/results/2026-12-03-
 * session52-h200.md, run 7). More entries: H and code words through the
 * lanes' scratch rows (VZ_SMEM_LANE3 words: 8 of H, 4 of codes), each
 * entry written into its owner's H byte by the lane holding it (beyond 32
 * entries, loaded 32 at a time). */
static __device__ __forceinline__ void vz_ll4_patch(const vz_dview &d, uint32_t *sm, const vz_gst &st, int lane,
                                                    uint32_t h[8]) {
    const uint32_t e0 = st.u[3], e1 = st.u[4];
    uint32_t *mine = sm + lane * VZ_SMEM_LANE3;
    if (e1 == e0 + 1u) { /* the owner alone, through its own row: no warp barrier */
        const uint32_t v = __shfl_sync(0xffffffffu, st.ex, 0);
        if ((v & 1023u) >> 5 == (uint32_t)lane) {
            vz_ll_h_store(mine, h);
            ((uint8_t *)mine)[v & 31u] = (uint8_t)vz_ll4_hbyte(st.v[2], v);
            vz_ll_h_load(mine, h);
        }
        return;
    }
    vz_ll_h_store(mine, h);
    *(uint4 *)(mine + 8) = st.v[2];
    __syncwarp();
    for (uint32_t j = e0; j < e1; j += 32u) {
        const uint32_t x = j + (uint32_t)lane;
        if (x < e1) {
            const uint32_t v = j == e0 ? st.ex : __ldg(d.exc + x);
            const uint32_t *row = sm + ((v & 1023u) >> 5) * VZ_SMEM_LANE3;
            ((uint8_t *)row)[v & 31u] = (uint8_t)vz_ll4_hbyte(*(const uint4 *)(row + 8), v);
        }
    }
    __syncwarp();
    vz_ll_h_load(mine, h);
    __syncwarp();
}

/* Stage 2: H, the patch where the block has exceptions, packed bf16. */
static __device__ __forceinline__ void vz_ll4_decode2(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                      vz_pk &k) {
    uint32_t h[8];
    vz_ll4_h(d, st.v[2], h);
    if (st.u[4] > st.u[3]) vz_ll4_patch(d, sm, st, lane, h);
    vz_ll_pack_bf16(st, h, k);
}

/* The same to f32 (the legacy matvecs). */
static __device__ __forceinline__ void vz_ll4_decode(const vz_dview &d, const vz_gst &st, int lane, uint32_t *sm,
                                                     float w[32]) {
    vz_pk k;
    vz_ll4_decode2(d, st, lane, sm, k);
    vz_bf16x2_f32(k.p, w);
}

/* The generic half of the codecs' group decoders (vz_*_group<false>): w[e]
 * = at(c, e) for element c = 32 g + e of the lane's group g = 32 it + lane,
 * 0 past the row (g >= gpr or c >= cols). */
template <typename F>
static __device__ __forceinline__ void vz_group_each(const vz_dview &d, int it, int lane, float w[32], F at) {
    const int g = it * 32 + lane;
    const bool gv = g < d.gpr;
#pragma unroll
    for (int e = 0; e < 32; e++) {
        const int64_t c = 32 * (int64_t)g + e;
        w[e] = gv && c < d.cols ? at(c, e) : 0.0f;
    }
}

/* The lossless decoder. FAST: bf16, k = 3 packed3, cols % 32 == 0 (vector
 * loads, prmt); else any dtype/k/layout/cols, elements past cols give 0.
 * Group g of row r; lanes with g >= gpr still call it (warp barriers).
 * Generic with lanewise (or a tiled tensor): the lane scans its own
 * exceptions, no warp barrier, so any lane may decode any group. */
template <bool FAST>
static __device__ __forceinline__ void vz_ll_group(const vz_dview &d, int64_t r, int it, int lane, uint32_t *sm,
                                                   float w[32], bool lanewise = false) {
    int g = it * 32 + lane;
    bool gv = g < d.gpr;
    uint32_t cw[8] = {0, 0, 0, 0, 0, 0, 0, 0}, h[8];
    const uint32_t *cp = d.codes + ((size_t)r * d.gpr + (gv ? g : 0)) * (size_t)d.k;
    uint32_t e0 = __ldg(d.eidx + (size_t)r * d.bpr + it), e1 = __ldg(d.eidx + (size_t)r * d.bpr + it + 1);
    if (FAST) {
        vz_gst st;
        vz_ll3_load(d, r, it, lane, st);
        vz_ll3_decode(d, st, lane, sm, w);
        return;
    }
    if (gv)
        for (int b = 0; b < d.k; b++) cw[b] = __ldg(cp + b);
    if (d.layout == 1) {
        vz_ll_h_packed3(cw[0], cw[1], cw[2], d.lut_lo, d.lut_hi, h);
    } else {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            uint32_t v = 0;
            for (int i = 0; i < 4; i++) v |= (uint32_t)__ldg(d.lut + vz_ll_code(cw, d.k, d.layout, 4 * j + i)) << 8 * i;
            h[j] = v;
        }
    }
    if (d.tiled || lanewise) vz_ll_lane_patch(d, r, g, h, cw);
    else if (e1 > e0) vz_ll_patch<false>(d, sm, e0, e1, lane, h, cw);
    const int wb = d.dtype == 0 ? 4 : 2;
    vz_group_each(d, it, lane, w, [&](int64_t c, int e) {
        const size_t i = (size_t)r * d.cols + c;
        uint32_t bits = (h[e >> 2] >> 8 * (e & 3)) & 0xffu;
        for (int j = wb - 2; j >= 0; j--) bits = bits << 8 | d.data[(size_t)j * d.n + i];
        return vz_bits_to_f32(bits, d.dtype);
    });
}

/* ---- raw ------------------------------------------------------------------
 * Fast: bf16, cols % 32 == 0; 64 bytes per lane, row-major (the file's
 * order) or, VZ_CUDA_RAW_GPU, in the GPU column order (cuda.h
 * vz_cuda_gpu_col): the lane's 4 chunks of 16 bytes n chunks apart, n the
 * lane groups of its 1024-column block, so each load of a warp reads 16 n
 * contiguous bytes. */

/* The lane groups n of the GPU column order's block at column b (% 1024 == 0) of a row of cols (% 32 == 0). */
static __host__ __device__ __forceinline__ int64_t vz_gpu_groups(int64_t cols, int64_t b) {
    return cols - b >= 1024 ? 32 : (cols - b) >> 5;
}

/* Where column c of a row of cols (% 32 == 0) columns lies in the GPU column order. */
static __host__ __device__ __forceinline__ int64_t vz_gpu_col(int64_t cols, int64_t c) {
    const int64_t b = c & ~(int64_t)1023, n = vz_gpu_groups(cols, b);
    return b + (((c >> 3) & 3) * n + ((c >> 5) & 31)) * 8 + (c & 7);
}

/* The prefill GEMMs' column order (gemm.h): the GPU column order for rows of cols % 32 == 0, else row-major. */
static __host__ __device__ __forceinline__ int64_t vz_gemm_pos(int64_t cols, int64_t c) {
    return cols % 32 == 0 ? vz_gpu_col(cols, c) : c;
}

static __device__ __forceinline__ void vz_rawbf_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    if (d.layout == VZ_CUDA_RAW_GPU) { /* a lane past the row's last group reads its block's first */
        const uint32_t gpr = (uint32_t)d.gpr;
        uint32_t b = (uint32_t)it * 32u;
        if (b >= gpr) b = 0;
        const uint32_t n = gpr - b < 32u ? gpr - b : 32u, l = (uint32_t)lane < n ? (uint32_t)lane : 0u;
        const uint4 *p = (const uint4 *)d.data + (size_t)((uint32_t)r * gpr + b) * 4 + l;
        st.v[0] = vz_ldw(p), st.v[1] = vz_ldw(p + n), st.v[2] = vz_ldw(p + 2 * n), st.v[3] = vz_ldw(p + 3 * n);
        return;
    }
    const uint4 *p = (const uint4 *)d.data + (size_t)vz_gidx(d, r, it, lane) * 4;
    st.v[0] = vz_ldw(p), st.v[1] = vz_ldw(p + 1), st.v[2] = vz_ldw(p + 2), st.v[3] = vz_ldw(p + 3);
}

static __device__ __forceinline__ void vz_rawbf_decode2(const vz_gst &st, vz_pk &k) {
#pragma unroll
    for (int j = 0; j < 4; j++) k.p[4 * j] = st.v[j].x, k.p[4 * j + 1] = st.v[j].y, k.p[4 * j + 2] = st.v[j].z, k.p[4 * j + 3] = st.v[j].w;
}

static __device__ __forceinline__ void vz_rawbf_decode(const vz_gst &st, float w[32]) {
    vz_pk k;
    vz_rawbf_decode2(st, k);
    vz_bf16x2_f32(k.p, w);
}

template <bool FAST>
static __device__ __forceinline__ void vz_raw_group(const vz_dview &d, int64_t r, int it, int lane, float w[32]) {
    if (FAST) {
        vz_gst st;
        vz_rawbf_load(d, r, it, lane, st);
        vz_rawbf_decode(st, w);
        return;
    }
    vz_group_each(d, it, lane, w, [&](int64_t c, int) {
        const size_t i = (size_t)r * d.cols + (d.layout == VZ_CUDA_RAW_GPU ? vz_gpu_col(d.cols, c) : c);
        return d.dtype == 0 ? __ldg((const float *)d.data + i)
                            : vz_bits_to_f32(__ldg((const unsigned short *)d.data + i), d.dtype);
    });
}

/* Scale group of lane group g (32 elements; group % 32 == 0): g / (group
 * / 32) as one multiply and shift, exact for every g < gpr. qmul and qsh
 * come from vz_cuda_q_divider; a tensor without them takes the generic
 * path. The division this replaces (compiled in for groups that are not a
 * power of two times 32, and predicated rather than branched over for a
 * pair's second row) issued about 20 instructions per fetch of the v4
 * rings. */
static __device__ __forceinline__ uint32_t vz_qgroup(const vz_dview &d, int g) {
    return (uint32_t)g * (d.qdiv >> 5) >> (d.qdiv & 31u);
}

/* ---- q8: value = (float)q * (float)scale (src/codec/q8.c) -----------------
 * Fast: cols % 32 == 0 and group % 32 == 0, so one scale per lane group. */
static __device__ __forceinline__ void vz_q8_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    const uint32_t g = vz_glane(d, it, lane), gi = (uint32_t)r * (uint32_t)d.gpr + g;
    const uint4 *p = (const uint4 *)d.data + (size_t)gi * 2;
    st.v[0] = vz_ldw(p), st.v[1] = vz_ldw(p + 1);
    st.u[0] = __ldg(d.scales + ((uint32_t)r * (uint32_t)d.qgpr + vz_qgroup(d, (int)g)));
}

/* The index of the scale (and q4 zero point) of element c of row r of a
 * q8/q4 tensor, and the scale at index i as f32 (the generic paths). */
static __device__ __forceinline__ size_t vz_q_sidx(const vz_dview &d, int64_t r, int64_t c) {
    return (size_t)r * d.qgpr + c / d.group;
}

static __device__ __forceinline__ float vz_q_scale_i(const vz_dview &d, size_t i) {
    return __half2float(__ushort_as_half(__ldg(d.scales + i)));
}

static __device__ __forceinline__ float vz_q_scale_at(const vz_dview &d, int64_t r, int64_t c) {
    return vz_q_scale_i(d, vz_q_sidx(d, r, c));
}

/* The scale of a q8/q4 lane group loaded by vz_q8_load / vz_q4_load. */
static __device__ __forceinline__ float vz_q_scale(const vz_gst &st) {
    return __half2float(__ushort_as_half((unsigned short)st.u[0]));
}

/* scaled = false: the codes minus their zero point (the matvecs multiply
 * the lane group's sum by the scale once, vz_q_scale). */
static __device__ __forceinline__ void vz_q8_decode(const vz_gst &st, float w[32], bool scaled = true) {
    const float s = scaled ? vz_q_scale(st) : 1.0f;
    uint32_t q[8] = {st.v[0].x, st.v[0].y, st.v[0].z, st.v[0].w, st.v[1].x, st.v[1].y, st.v[1].z, st.v[1].w};
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) w[4 * j + i] = (float)(int8_t)(q[j] >> 8 * i) * s;
}

static __device__ __forceinline__ void vz_q8_decode2(const vz_gst &st, vz_pk &k) {
    k.s = vz_q_scale(st);
#pragma unroll
    for (int j = 0; j < 2; j++) {
        const uint32_t w[4] = {st.v[j].x, st.v[j].y, st.v[j].z, st.v[j].w};
#pragma unroll
        for (int i = 0; i < 4; i++) k.p[4 * j + i] = w[i] ^ 0x80808080u;
    }
}

/* q4 code minus zero point as f32, exactly: (2^23 + q) - (2^23 + z), from
 * q23 = the f32 2^23 + q and zb = the f32 bits of 2^23 + z (an or or a prmt
 * and one add instead of a cvt). Every q4 decoder ends here. */
static __device__ __forceinline__ float vz_q4_val(float q23, uint32_t zb) { return q23 - vz_u2f(zb); }

/* The f32 bits of 2^23 + z of a zero point z (0..255): one or, no cvt. */
static __device__ __forceinline__ uint32_t vz_q4_zb(uint32_t z) { return 0x4b000000u | z; }

/* The f32 2^23 + q of a q4 code q (0..15). */
static __device__ __forceinline__ float vz_q4_f23(uint32_t q) { return vz_u2f(0x4b000000u | q); }

/* The f32 2^23 + byte b (0..3, compile-time) of w: bytes 0x00 0x00 0x4b of
 * the constant under byte b of w (the constant first, so that it is held in
 * a register and the selector is prmt's immediate). */
static __device__ __forceinline__ float vz_byte_f32(uint32_t w, int b) {
    return vz_u2f(__byte_perm(0x4b000000u, w, 0x3000u | (uint32_t)(4 + b)));
}

/* A lane group's fmaf chain in every matvec (matvec.cu's accumulation
 * order): it starts from vz_grp_start(q, acc) and ends with acc =
 * vz_grp_end(q, scale, chain, acc). q (q8/q4): the chain sums the codes
 * minus their zero point from 0 and is multiplied by the group's one scale
 * as it joins acc; else it runs on acc itself. */
static __device__ __forceinline__ float vz_grp_start(bool q, float acc) { return q ? 0.0f : acc; }
static __device__ __forceinline__ float vz_grp_end(bool q, float scale, float chain, float acc) {
    return q ? fmaf(scale, chain, acc) : chain;
}

/* Element e (compile-time) of a packed group as f32; KIND is the path.
 * q8/q4: the code minus its zero point, unscaled (the matvecs multiply the
 * lane group's sum by k.s once). */
template <int KIND>
static __device__ __forceinline__ float vz_pk_elem(const vz_pk &k, int e) {
    if (KIND == VZ_K_Q8) return vz_byte_f32(k.p[e >> 2], e & 3) - 8388736.0f; /* 2^23 + 128 */
    if (KIND == VZ_K_Q4) return vz_q4_val(vz_byte_f32(k.p[(e & 1) * 8 + (e >> 3)], (e & 7) >> 1), k.p[4]);
    return vz_u2f(e & 1 ? k.p[e >> 1] & 0xffff0000u : k.p[e >> 1] << 16);
}

template <bool FAST>
static __device__ __forceinline__ void vz_q8_group(const vz_dview &d, int64_t r, int it, int lane, float w[32],
                                                   bool scaled = true) {
    if (FAST) {
        vz_gst st;
        vz_q8_load(d, r, it, lane, st);
        vz_q8_decode(st, w, scaled);
        return;
    }
    vz_group_each(d, it, lane, w, [&](int64_t c, int) {
        const float s = scaled ? vz_q_scale_at(d, r, c) : 1.0f;
        return (float)(int8_t)__ldg(d.data + (size_t)r * d.cols + c) * s;
    });
}

/* ---- q4: value = (float)(q - z) * (float)scale (src/codec/q4.c) -----------
 * Element c of row r: nibble (c & 1) of byte r * qstride + c / 2 (low first);
 * z = 8 (symmetric) or the group's zero point. (q - z) * scale is exact in
 * f32, so this equals decode_ref bit for bit. Fast: cols % 32 == 0 and
 * group % 32 == 0: a lane's group is one aligned uint4 and one scale. */
static __device__ __forceinline__ void vz_q4_load(const vz_dview &d, int64_t r, int it, int lane, vz_gst &st) {
    const uint32_t g = vz_glane(d, it, lane), gi = (uint32_t)r * (uint32_t)d.gpr + g;
    const uint32_t si = (uint32_t)r * (uint32_t)d.qgpr + vz_qgroup(d, (int)g); /* scale and zero point */
    st.v[0] = __ldg((const uint4 *)d.data + gi); /* qstride = cols / 2: row r's group g at 16 gi bytes */
    st.u[0] = __ldg(d.scales + si);
    st.u[1] = d.zeros ? __ldg(d.zeros + si) : 8u;
}

static __device__ __forceinline__ void vz_q4_decode(const vz_gst &st, float w[32], bool scaled = true) {
    const float s = scaled ? vz_q_scale(st) : 1.0f;
    uint32_t q[4] = {st.v[0].x, st.v[0].y, st.v[0].z, st.v[0].w}, zb = vz_q4_zb(st.u[1]);
#pragma unroll
    for (int e = 0; e < 32; e++) w[e] = vz_q4_val(vz_q4_f23((q[e >> 3] >> 4 * (e & 7)) & 15u), zb) * s;
}

static __device__ __forceinline__ void vz_q4_decode2(const vz_gst &st, vz_pk &k) {
    k.s = vz_q_scale(st);
    const uint32_t w[4] = {st.v[0].x, st.v[0].y, st.v[0].z, st.v[0].w};
#pragma unroll
    for (int i = 0; i < 4; i++) k.p[i] = w[i] & 0x0f0f0f0fu, k.p[8 + i] = (w[i] >> 4) & 0x0f0f0f0fu;
    k.p[4] = vz_q4_zb(st.u[1]);
}

template <bool FAST>
static __device__ __forceinline__ void vz_q4_group(const vz_dview &d, int64_t r, int it, int lane, float w[32],
                                                   bool scaled = true) {
    if (FAST) {
        vz_gst st;
        vz_q4_load(d, r, it, lane, st);
        vz_q4_decode(st, w, scaled);
        return;
    }
    vz_group_each(d, it, lane, w, [&](int64_t c, int) {
        const size_t gi = vz_q_sidx(d, r, c);
        const float s = scaled ? vz_q_scale_i(d, gi) : 1.0f;
        const uint32_t q = (__ldg(d.data + (size_t)r * d.qstride + c / 2) >> 4 * (c & 1)) & 15u;
        const uint32_t z = d.zeros ? __ldg(d.zeros + gi) : 8u;
        return vz_q4_val(vz_q4_f23(q), vz_q4_zb(z)) * s;
    });
}

/* The scale of lane group it * 32 + lane of row r of a q8/q4 tensor (one
 * per group of 32 elements: the codecs' groups are multiples of 32 or a
 * whole row); 0 past the row. */
static __device__ __forceinline__ float vz_q_lane_scale(const vz_dview &d, int64_t r, int it, int lane) {
    const int64_t c = 32 * (int64_t)(it * 32 + lane);
    return c < d.cols ? vz_q_scale_at(d, r, c) : 0.0f;
}

/* Dispatch by codec for the generic (any shape) path. scaled = false:
 * q8/q4 codes minus their zero point (vz_q_lane_scale gives the scale). */
static __device__ __forceinline__ void vz_group_any(const vz_dview &d, int64_t r, int it, int lane, uint32_t *sm,
                                                    float w[32], bool scaled = true) {
    if (d.codec == VZ_ID_LOSSLESS) vz_ll_group<false>(d, r, it, lane, sm, w);
    else if (d.codec == VZ_ID_Q8) vz_q8_group<false>(d, r, it, lane, w, scaled);
    else if (d.codec == VZ_ID_Q4) vz_q4_group<false>(d, r, it, lane, w, scaled);
    else vz_raw_group<false>(d, r, it, lane, w);
}

#endif
