/*
 * prefill.cu - the non-matmul kernels of the GPU prefill (prefill.h):
 * RMSNorm and SwiGLU writing bf16 GEMM inputs (in the GEMM column order,
 * gemm.h, as the attention's output is), and causal attention over T
 * query positions at once: a RoPE + KV store kernel, then flash-attention
 * on tensor cores (f16 mma.sync, K/V tiles double-buffered by cp.async;
 * head_dim 32, 64, 128) or an f32 kernel (other head sizes). Same formulas
 * as forward.cu's decode kernels (RoPE angles, score / sqrt(hd), keys read
 * back from the cache as stored). All launched with programmatic stream
 * serialization (pf_launch). CPU references in prefill.h; tests:
 * tests/test_cuda_prefill.c; timings: bench/prefill_bench.cu.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "backend/cuda/matvec.cuh" /* vz_launch_pdl, vz_pdl_enter */
#include "backend/cuda/prefill.h"

static __device__ __forceinline__ float pf_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float pf_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static int aligned(const void *p, uintptr_t n) { return ((uintptr_t)p & (n - 1)) == 0; }

/* Every kernel here is launched with programmatic stream serialization
 * (pf_launch) and opens with vz_pdl_enter (matvec.cuh): the next kernel
 * may launch once all our blocks run, and nothing is read or written
 * before the kernel before has completed and its writes are visible
 * (forward.cu's rule), so each launch overlaps the tail of the kernel
 * before it (cuBLAS's GEMMs included) instead of following it. On an H200
 * (bench/results/2026-11-30-session23-h200.md, run 3), tinyllama's
 * 512-token prefill: raw 189-192k -> 205-210k tok/s, lossless 143k -> 151k,
 * q8 137-140k -> 153k, q4 153-155k -> 162k; in isolation (prefill_bench)
 * attention 19.8 -> 18.8 us, RMSNorm 3.8 -> 3.6, SwiGLU 9.3 -> 8.2.
 * VZ_CUDA_PF_PDL=0 (bench): plain launches. */
template <typename... P, typename... A>
static void pf_launch(void (*f)(P...), dim3 grid, dim3 block, size_t shm, cudaStream_t st, A... args) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("VZ_CUDA_PF_PDL");
        on = !(e && *e == '0');
    }
    if (on) vz_launch_pdl(f, grid, block, shm, st, 0, 0, args...);
    else f<<<grid, block, shm, st>>>(((P)args)...);
}

/* ---- RMSNorm and SwiGLU to bf16 ------------------------------------------
 * Generic kernels (any shape) and vectorized ones (rows in float4s, 4 or 8
 * bf16 per store) with the same arithmetic: the same double sum of squares
 * (as the CPU reference and k_rmsnorm; only its order differs) and the same
 * f32 roundings, so the two agree but for that order. */

static __global__ void k_pf_rmsnorm(const float *x, __nv_bfloat16 *out, const float *w, int32_t dim, float eps) {
    vz_pdl_enter();
    __shared__ double red[32];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    double ss = 0.0; /* double, as the CPU reference and k_rmsnorm */
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.0;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) ss += red[i];
    const float scale = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        out[(int64_t)blockIdx.x * dim + vz_gemm_pos(dim, i)] = __float2bfloat16_rn(w[i] * (xr[i] * scale));
}

static __device__ __forceinline__ uint32_t pf_bf2(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

#define PF_RW 4 /* rows (one per warp) per block */

/* The RMSNorm kernels' sum of squares of a thread's NV float4s in double
 * (x, y and z, w in two sums, then added), then over its warp by an xor
 * butterfly: every lane gets the warp's sum. */
template <int NV> static __device__ __forceinline__ double pf_sumsq_warp(const float4 (&v)[NV]) {
    double s0 = 0.0, s1 = 0.0;
#pragma unroll
    for (int k = 0; k < NV; k++) {
        s0 += (double)v[k].x * v[k].x + (double)v[k].y * v[k].y;
        s1 += (double)v[k].z * v[k].z + (double)v[k].w * v[k].w;
    }
    double ss = s0 + s1;
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    return ss;
}

/* dim % 4 == 0, dim <= 128 NV: one warp per row, the row in registers
 * (NV float4s per lane; w too when NV <= 16), no barrier. */
template <int NV>
static __global__ void __launch_bounds__(PF_RW * 32) k_pf_rmsnorm_w(const float *__restrict__ x, __nv_bfloat16 *__restrict__ out,
                                                                    const float *__restrict__ w, int32_t T, int32_t dim,
                                                                    float eps) {
    vz_pdl_enter();
    constexpr int WN = NV <= 16 ? NV : 1; /* w preloaded */
    const int row = blockIdx.x * PF_RW + (threadIdx.x >> 5), lane = threadIdx.x & 31, n4 = dim >> 2;
    if (row >= T) return; /* warp-uniform */
    const float4 *xr = (const float4 *)(x + (int64_t)row * dim), *wr = (const float4 *)w, z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 v[NV], wv[WN];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = lane + 32 * k;
        v[k] = i < n4 ? xr[i] : z;
        if (NV <= 16) wv[k % WN] = i < n4 ? wr[i] : z;
    }
    const double ss = pf_sumsq_warp<NV>(v);
    const float scale = (float)(1.0 / sqrt(ss / dim + eps));
    uint2 *o = (uint2 *)(out + (int64_t)row * dim);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = lane + 32 * k;
        if (i >= n4) break;
        const float4 ww = NV <= 16 ? wv[k % WN] : wr[i];
        o[vz_gemm_pos(dim, 4 * i) >> 2] = make_uint2(pf_bf2(ww.x * (v[k].x * scale), ww.y * (v[k].y * scale)),
                          pf_bf2(ww.z * (v[k].z * scale), ww.w * (v[k].w * scale)));
    }
}

#define PF_NB 128 /* threads per row of k_pf_rmsnorm_b */

/* dim % 4 == 0, 2048 < dim <= 4 PF_NB NV: a block of PF_NB threads per
 * row, each with NV float4s of the row and of w loaded at once; the double
 * sums of squares meet through shared memory in warp order. A warp per row
 * holds 32 float4s of a 4096-wide row and loads w after the sum: 10.3 us
 * (1227 GB/s) for 512 rows of 4096 on an H200, this kernel 4.3 us (2942
 * GB/s), llama2-7b's raw prefill +1-10%; at 2048 the warp per row (w held in
 * registers) is as fast, 3.6 against 3.7 us, and keeps those rows
 * (bench/results/2026-12-05-session77-h100.md, runs 3 and 4). */
template <int NV>
static __global__ void __launch_bounds__(PF_NB) k_pf_rmsnorm_b(const float *__restrict__ x, __nv_bfloat16 *__restrict__ out,
                                                              const float *__restrict__ w, int32_t dim, float eps) {
    vz_pdl_enter();
    __shared__ double red[PF_NB / 32];
    const int lane = threadIdx.x & 31, n4 = dim >> 2;
    const float4 *xr = (const float4 *)(x + (int64_t)blockIdx.x * dim), *wr = (const float4 *)w;
    const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 v[NV], wv[NV];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = threadIdx.x + PF_NB * k;
        v[k] = i < n4 ? xr[i] : z;
        wv[k] = i < n4 ? wr[i] : z;
    }
    double ss = pf_sumsq_warp<NV>(v);
    if (lane == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = red[0];
#pragma unroll
    for (int i = 1; i < PF_NB / 32; i++) ss += red[i];
    const float scale = (float)(1.0 / sqrt(ss / dim + eps));
    uint2 *o = (uint2 *)(out + (int64_t)blockIdx.x * dim);
#pragma unroll
    for (int k = 0; k < NV; k++) {
        const int i = threadIdx.x + PF_NB * k;
        if (i >= n4) break;
        o[vz_gemm_pos(dim, 4 * i) >> 2] = make_uint2(pf_bf2(wv[k].x * (v[k].x * scale), wv[k].y * (v[k].y * scale)),
                                                     pf_bf2(wv[k].z * (v[k].z * scale), wv[k].w * (v[k].w * scale)));
    }
}

static int pf_norm_var; /* vz_pf_norm_variant */

int vz_pf_norm_variant(int v) {
    int old = pf_norm_var;
    if (v >= 0) pf_norm_var = v;
    return old;
}

void vz_pf_rmsnorm_bf16(const float *x, void *out, const float *w, int32_t T, int32_t dim, float eps, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    const int vec = dim % 4 == 0 && aligned(x, 16) && aligned(w, 16) && aligned(out, 8);
    const unsigned nb = (unsigned)((T + PF_RW - 1) / PF_RW);
    if (pf_norm_var == 0 && vec && dim > 4 * PF_NB * 4 && dim <= 4 * PF_NB * 16) {
        const int n4 = dim / 4;
        if (n4 <= 8 * PF_NB) pf_launch(k_pf_rmsnorm_b<8>, T, PF_NB, 0, st, x, (__nv_bfloat16 *)out, w, dim, eps);
        else pf_launch(k_pf_rmsnorm_b<16>, T, PF_NB, 0, st, x, (__nv_bfloat16 *)out, w, dim, eps);
    } else if ((pf_norm_var == 0 || pf_norm_var == 2) && vec && dim <= 128 * 16)
        pf_launch(k_pf_rmsnorm_w<16>, nb, PF_RW * 32, 0, st, x, (__nv_bfloat16 *)out, w, T, dim, eps);
    else if ((pf_norm_var == 0 || pf_norm_var == 2) && vec && dim <= 128 * 32)
        pf_launch(k_pf_rmsnorm_w<32>, nb, PF_RW * 32, 0, st, x, (__nv_bfloat16 *)out, w, T, dim, eps);
    else
        pf_launch(k_pf_rmsnorm, T, 256, 0, st, x, (__nv_bfloat16 *)out, w, dim, eps);
}

/* silu(g) u as the matvec's SILU_MUL epilogue */
static __device__ __forceinline__ float pf_silu(float g, float u) { return g / (1.0f + expf(-g)) * u; }

static __global__ void k_pf_silu_mul(const float *gu, __nv_bfloat16 *out, int32_t T, int32_t hid) {
    vz_pdl_enter();
    const int64_t n = (int64_t)T * hid;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / hid, j = i % hid;
        out[t * hid + vz_gemm_pos(hid, j)] = __float2bfloat16_rn(pf_silu(gu[t * 2 * hid + j], gu[t * 2 * hid + hid + j]));
    }
}

/* hid % 8 == 0: thread v makes out[8v .. 8v + 8) from two float4s of gate and two of up. */
static __global__ void k_pf_silu_mul8(const float *__restrict__ gu, __nv_bfloat16 *__restrict__ out, int32_t n8, int32_t h8) {
    vz_pdl_enter();
    const int v = blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= n8) return;
    const int t = v / h8, j = (v - t * h8) * 8;
    const float4 *g = (const float4 *)(gu + (int64_t)t * 16 * h8 + j), *u = g + 2 * h8; /* up: hid = 8 h8 floats on */
    const float4 g0 = g[0], g1 = g[1], u0 = u[0], u1 = u[1];
    *(uint4 *)(out + (int64_t)t * 8 * h8 + vz_gemm_pos(8 * h8, j)) = make_uint4(pf_bf2(pf_silu(g0.x, u0.x), pf_silu(g0.y, u0.y)),
                                   pf_bf2(pf_silu(g0.z, u0.z), pf_silu(g0.w, u0.w)),
                                   pf_bf2(pf_silu(g1.x, u1.x), pf_silu(g1.y, u1.y)),
                                   pf_bf2(pf_silu(g1.z, u1.z), pf_silu(g1.w, u1.w)));
}

void vz_pf_silu_mul_bf16(const float *gu, void *out, int32_t T, int32_t hid, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    const int64_t n = (int64_t)T * hid;
    if (pf_norm_var != 1 && hid % 8 == 0 && n / 8 < INT32_MAX - 256 && aligned(gu, 16) && aligned(out, 16)) {
        const int32_t n8 = (int32_t)(n / 8);
        pf_launch(k_pf_silu_mul8, (n8 + 255) / 256, 256, 0, st, gu, (__nv_bfloat16 *)out, n8, hid / 8);
        return;
    }
    const int64_t b = (n + 255) / 256;
    pf_launch(k_pf_silu_mul, (unsigned)(b < 8192 ? b : 8192), 256, 0, st, gu, (__nv_bfloat16 *)out, T, hid);
}

/* ---- attention: RoPE + KV store ------------------------------------------ */

static __device__ __forceinline__ void pf_put(void *dst, int64_t i, float v, int f16) {
    if (f16) ((__half *)dst)[i] = __float2half_rn(v);
    else ((float *)dst)[i] = v;
}

/* Element indices of RoPE pair i in a head of hd (forward.cu's rope_pair). */
static __device__ __forceinline__ void pf_pair(int i, int hd, int interleaved, int *a, int *b) {
    *a = interleaved ? 2 * i : i, *b = interleaved ? 2 * i + 1 : i + hd / 2;
}

#define PF_RB 256 /* threads per token */
#define PF_RU 5   /* pairs per thread per round (tinyllama: 36 heads x 32 pairs in one round) */

/* One block per token: its cos/sin (forward.cu's rope_pair: f32 powf, or
 * freq[i] when given, cosf, sinf) computed once into shared memory for every
 * head, while each thread loads its pairs (+ bias, Qwen 2's, when given: the
 * row's [q | k | v] order); then q rotated in place, k rotated and stored, v
 * stored. */
template <int HDT> /* head_dim if > 0 (index arithmetic by shifts), else hd */
static __global__ void __launch_bounds__(PF_RB) k_pf_rope_store(float *qkv, int64_t ld, void *kc, void *vc, int32_t pos0,
                                                                int32_t n_heads, int32_t n_kv, int32_t hd_, int32_t f16,
                                                                float theta, const float *freq, int32_t interleaved,
                                                                const float *bias) {
    vz_pdl_enter();
    extern __shared__ float pf_cs[]; /* cos of pairs 0..hd/2-1, then sin */
    const int hd = HDT > 0 ? HDT : hd_, t = blockIdx.x, p = pos0 + t, half = hd / 2, qd = n_heads * hd, kvd = n_kv * hd;
    const int np = (n_heads + n_kv) * half;
    float *row = qkv + (int64_t)t * ld;
    for (int r0 = 0; r0 < np; r0 += PF_RU * PF_RB) {
        float x0[PF_RU], x1[PF_RU], y0[PF_RU], y1[PF_RU];
#pragma unroll
        for (int u = 0; u < PF_RU; u++) {
            const int idx = r0 + u * PF_RB + threadIdx.x, h = idx / half, i = idx - h * half;
            if (idx >= np) continue;
            int a, b;
            pf_pair(i, hd, interleaved, &a, &b);
            const int off = h < n_heads ? h * hd : qd + (h - n_heads) * hd;
            const float *e = row + off;
            x0[u] = e[a], x1[u] = e[b];
            if (h >= n_heads) y0[u] = e[kvd + a], y1[u] = e[kvd + b];
            if (bias) {
                const float *eb = bias + off;
                x0[u] += eb[a], x1[u] += eb[b];
                if (h >= n_heads) y0[u] += eb[kvd + a], y1[u] += eb[kvd + b];
            }
        }
        if (r0 == 0) {
            for (int i = threadIdx.x; i < half; i += PF_RB) {
                const float f = freq ? freq[i] : 1.0f / powf(theta, (float)(2 * i) / (float)hd), val = (float)p * f;
                pf_cs[i] = cosf(val), pf_cs[half + i] = sinf(val);
            }
            __syncthreads();
        }
#pragma unroll
        for (int u = 0; u < PF_RU; u++) {
            const int idx = r0 + u * PF_RB + threadIdx.x, h = idx / half, i = idx - h * half;
            if (idx >= np) continue;
            int a, b;
            pf_pair(i, hd, interleaved, &a, &b);
            const float c = pf_cs[i], sn = pf_cs[half + i], r0v = x0[u] * c - x1[u] * sn, r1v = x0[u] * sn + x1[u] * c;
            if (h < n_heads) {
                row[h * hd + a] = r0v, row[h * hd + b] = r1v;
                continue;
            }
            const int64_t dst = (int64_t)p * kvd + (int64_t)(h - n_heads) * hd;
            pf_put(kc, dst + a, r0v, f16), pf_put(kc, dst + b, r1v, f16);
            pf_put(vc, dst + a, y0[u], f16), pf_put(vc, dst + b, y1[u], f16);
        }
    }
}

/* ---- attention: f32 kernel (any head_dim <= 128) -------------------------- */
#define PF_QW 4                /* queries per warp */
#define PF_WARPS 8
#define PF_Q (PF_QW * PF_WARPS) /* queries per block */
#define PF_KT 32               /* keys per tile (one per lane) */

static __device__ __forceinline__ float pf_kv(const void *c, int64_t i, int f16) {
    return f16 ? __half2float(((const __half *)c)[i]) : ((const float *)c)[i];
}

struct pf_args {
    __nv_bfloat16 *out;
    const float *qkv;
    const void *kc, *vc;
    int64_t ld;
    int32_t pos0, T, n_heads, n_kv, hd, f16;
};

/* Block (query tile, head): each warp owns PF_QW queries; per 32-key tile
 * lane j scores key j, then an online softmax update and o += p V with lane
 * d owning output dims d, d + 32, ... */
static __global__ void __launch_bounds__(PF_WARPS * 32) k_pf_attn(pf_args A) {
    vz_pdl_enter();
    extern __shared__ float pf_sm[];
    const int hd = A.hd, hs = hd + 1, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int h = blockIdx.y, kvh = h / (A.n_heads / A.n_kv), q0 = blockIdx.x * PF_Q, kvd = A.n_kv * hd;
    float *sK = pf_sm, *sV = sK + PF_KT * hs, *sQ = sV + PF_KT * hs;
    for (int idx = threadIdx.x; idx < PF_Q * hd; idx += blockDim.x) {
        const int qi = idx / hd, d = idx % hd, t = q0 + qi;
        sQ[idx] = t < A.T ? A.qkv[(int64_t)t * A.ld + (int64_t)h * hd + d] : 0.0f;
    }
    const int nkeys = A.pos0 + min(q0 + PF_Q, A.T);
    const float rs = sqrtf((float)hd);
    float m[PF_QW], l[PF_QW], o[PF_QW][4];
#pragma unroll
    for (int i = 0; i < PF_QW; i++) {
        m[i] = -FLT_MAX, l[i] = 0.0f;
#pragma unroll
        for (int dd = 0; dd < 4; dd++) o[i][dd] = 0.0f;
    }
    for (int j0 = 0; j0 < nkeys; j0 += PF_KT) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < PF_KT * hd; idx += blockDim.x) {
            const int j = idx / hd, d = idx % hd;
            const int64_t src = (int64_t)(j0 + j) * kvd + (int64_t)kvh * hd + d;
            sK[j * hs + d] = j0 + j < nkeys ? pf_kv(A.kc, src, A.f16) : 0.0f;
            sV[j * hs + d] = j0 + j < nkeys ? pf_kv(A.vc, src, A.f16) : 0.0f;
        }
        __syncthreads();
        float s[PF_QW];
#pragma unroll
        for (int i = 0; i < PF_QW; i++) s[i] = 0.0f;
        const float *kr = sK + lane * hs, *qw = sQ + warp * PF_QW * hd;
        for (int d = 0; d < hd; d++) {
            const float kv = kr[d];
#pragma unroll
            for (int i = 0; i < PF_QW; i++) s[i] += qw[i * hd + d] * kv;
        }
#pragma unroll
        for (int i = 0; i < PF_QW; i++) {
            const int P = A.pos0 + q0 + warp * PF_QW + i, j = j0 + lane; /* this query's position */
            const bool ok = j <= P;
            const float sc = ok ? s[i] / rs : -FLT_MAX, mt = pf_warp_max(sc);
            if (j0 > P) continue; /* warp-uniform: the whole tile is masked */
            const float mn = fmaxf(m[i], mt), corr = expf(m[i] - mn), p = ok ? expf(sc - mn) : 0.0f;
            l[i] = l[i] * corr + pf_warp_sum(p);
            m[i] = mn;
#pragma unroll
            for (int dd = 0; dd < 4; dd++) o[i][dd] *= corr;
            for (int jj = 0; jj < PF_KT; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
                for (int dd = 0; dd < 4; dd++)
                    if (lane + 32 * dd < hd) o[i][dd] += pj * sV[jj * hs + lane + 32 * dd];
            }
        }
    }
    const int64_t qd = (int64_t)A.n_heads * hd;
#pragma unroll
    for (int i = 0; i < PF_QW; i++) {
        const int t = q0 + warp * PF_QW + i;
        if (t >= A.T) continue;
#pragma unroll
        for (int dd = 0; dd < 4; dd++)
            if (lane + 32 * dd < hd)
                A.out[(int64_t)t * qd + vz_gemm_pos(qd, (int64_t)h * hd + lane + 32 * dd)] = __float2bfloat16_rn(o[i][dd] / l[i]);
    }
}

/* ---- attention on tensor cores (head_dim 32, 64, 128) ---------------------
 * Flash-attention-2 style: block (64 queries, head), 8 warps: two groups of
 * 4 warps of 16 queries, group g taking key tiles g, g + 2, ...; per 64-key
 * tile S = Q K^T by mma.sync m16n8k16 (f16 in, f32 accumulate),
 * online softmax in f32 on the accumulator fragments (base 2: the scores
 * scaled by log2(e) / sqrt(hd), exp2f), P rounded to f16 and O += P V by
 * mma with V through ldmatrix.trans. Each group double-buffers its own K/V
 * tiles: an f16 cache by cp.async (the group's next tile in flight during
 * this one's math), an f32 cache loaded and rounded to f16. The longest
 * query tiles (the most keys) are launched first; the two groups' (m, l,
 * o) merge at the end.
 * Q and P go through f16 (K and V are f16 already
 * with an f16 cache), so the output moves by ~2^-11 of max|v| against the
 * f32 kernel (tests/test_cuda_prefill.c: test_attention). */
#define FA_Q 64 /* queries per block: 4 warps x 16, twice */
#define FA_K 64 /* keys per tile */

static __device__ __forceinline__ void pa_ldsm(uint32_t r[4], const __half *p, bool trans) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    if (trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
}

static __device__ __forceinline__ void pa_mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t pa_pack(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* 16 bytes global -> shared, bypassing L1; bytes 0 fills zeros (src unread). */
static __device__ __forceinline__ void fa_cp16(void *dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((uint32_t)__cvta_generic_to_shared(dst)), "l"(src),
                 "r"(bytes)
                 : "memory");
}
static __device__ __forceinline__ void fa_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> static __device__ __forceinline__ void fa_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* Cache rows [j0, j0 + FA_K) of kv head kvh into sK, sV (row stride HD + 8
 * halves) by NT threads (this one: tid); rows >= n are zeros. F16: cp.async,
 * pending until fa_wait. */
template <int HD, int F16, int NT>
static __device__ __forceinline__ void fa_stage(__half *sK, __half *sV, const pf_args &A, int kvh, int j0, int n,
                                                int tid) {
    constexpr int C = HD / 8, N = FA_K * C / NT; /* 8-element chunks per row; per thread */
    const int64_t kvd = (int64_t)A.n_kv * HD;
#pragma unroll
    for (int k = 0; k < N; k++) {
        const int idx = tid + k * NT, r = idx / C, c = (idx % C) * 8;
        const bool ok = j0 + r < n;
        const int64_t g = (int64_t)(ok ? j0 + r : 0) * kvd + (int64_t)kvh * HD + c;
        __half *dk = sK + r * (HD + 8) + c, *dv = sV + r * (HD + 8) + c;
        if (F16) {
            fa_cp16(dk, (const __half *)A.kc + g, ok ? 16 : 0);
            fa_cp16(dv, (const __half *)A.vc + g, ok ? 16 : 0);
        } else {
            float4 k0 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), k1 = k0, v0 = k0, v1 = k0;
            if (ok) {
                const float4 *kp = (const float4 *)((const float *)A.kc + g), *vp = (const float4 *)((const float *)A.vc + g);
                k0 = kp[0], k1 = kp[1], v0 = vp[0], v1 = vp[1];
            }
            *(uint4 *)dk = make_uint4(pa_pack(k0.x, k0.y), pa_pack(k0.z, k0.w), pa_pack(k1.x, k1.y), pa_pack(k1.z, k1.w));
            *(uint4 *)dv = make_uint4(pa_pack(v0.x, v0.y), pa_pack(v0.z, v0.w), pa_pack(v1.x, v1.y), pa_pack(v1.z, v1.w));
        }
    }
}

/* Q rows [q0, q0 + FA_Q) of head h (rotated, f32) into sQ as f16 by NT
 * threads, all loads issued first; rows >= T are zeros. */
template <int HD, int NT>
static __device__ __forceinline__ void fa_load_q(__half *sQ, const pf_args &A, int q0, int h) {
    constexpr int NQ = FA_Q * HD / 2 / NT;
    float2 qv[NQ];
#pragma unroll
    for (int k = 0; k < NQ; k++) {
        const int idx = threadIdx.x + k * NT, r = idx / (HD / 2), c = (idx % (HD / 2)) * 2, t = q0 + r;
        qv[k] = t < A.T ? *(const float2 *)(A.qkv + (int64_t)t * A.ld + (int64_t)h * HD + c) : make_float2(0.0f, 0.0f);
    }
#pragma unroll
    for (int k = 0; k < NQ; k++) {
        const int idx = threadIdx.x + k * NT, r = idx / (HD / 2), c = (idx % (HD / 2)) * 2;
        *(uint32_t *)(sQ + r * (HD + 8) + c) = pa_pack(qv[k].x, qv[k].y);
    }
}

/* One 64-key tile for a warp's 16 rows (this lane: rows P0 and P0 + 8): S,
 * the causal mask (MASK: the tile reaches past the warp's first row), online
 * softmax, O += P V. m: row maxima of the raw scores; p = exp2(s sl2 - m sl2)
 * (one FFMA). A row with no key yet (m = -inf: only in a split's first
 * tile) keeps m = -inf, l = 0, o = 0. */
template <int HD, bool MASK>
static __device__ __forceinline__ void fa_tile(const __half *sK, const __half *sV, const uint32_t qa[HD / 16][4],
                                               float o[HD / 8][4], float m[2], float l[2], int j0, int P0, float sl2,
                                               int lane) {
    constexpr int SS = HD + 8;
    float sc[FA_K / 8][4];
#pragma unroll
    for (int nt = 0; nt < FA_K / 8; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++)
#pragma unroll
        for (int jp = 0; jp < FA_K / 16; jp++) {
            uint32_t b[4];
            pa_ldsm(b, sK + (jp * 16 + (lane & 7) + ((lane >> 4) << 3)) * SS + ks * 16 + ((lane >> 3) & 1) * 8, false);
            pa_mma(sc[2 * jp], qa[ks], b[0], b[1]);
            pa_mma(sc[2 * jp + 1], qa[ks], b[2], b[3]);
        }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < FA_K / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (MASK && j0 + nt * 8 + (lane & 3) * 2 + (e & 1) > P0 + (e >> 1) * 8) sc[nt][e] = -INFINITY;
            mx[e >> 1] = fmaxf(mx[e >> 1], sc[nt][e]);
        }
    float corr[2], ms[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        const float mn = fmaxf(m[i], mx[i]);
        corr[i] = mn == -INFINITY ? 1.0f : exp2f((m[i] - mn) * sl2);
        ms[i] = mn == -INFINITY ? 0.0f : mn * sl2;
        m[i] = mn;
        l[i] *= corr[i];
    }
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] *= corr[e >> 1];
#pragma unroll
    for (int nt = 0; nt < FA_K / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float p = exp2f(fmaf(sc[nt][e], sl2, -ms[e >> 1]));
            sc[nt][e] = p;
            l[e >> 1] += p;
        }
#pragma unroll
    for (int kk = 0; kk < FA_K / 16; kk++) {
        const uint32_t pa[4] = {pa_pack(sc[2 * kk][0], sc[2 * kk][1]), pa_pack(sc[2 * kk][2], sc[2 * kk][3]),
                                pa_pack(sc[2 * kk + 1][0], sc[2 * kk + 1][1]), pa_pack(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < HD / 16; dp++) {
            uint32_t b[4];
            pa_ldsm(b, sV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * SS + dp * 16 + (lane >> 4) * 8, true);
            pa_mma(o[2 * dp], pa, b[0], b[1]);
            pa_mma(o[2 * dp + 1], pa, b[2], b[3]);
        }
    }
}

/* The tile at j0 for warp rows starting at position pw (this lane: P0), if any of them reaches it. */
template <int HD>
static __device__ __forceinline__ void fa_tile_at(const __half *sK, const __half *sV, const uint32_t qa[HD / 16][4],
                                                  float o[HD / 8][4], float m[2], float l[2], int j0, int pw, int P0,
                                                  float sl2, int lane) {
    if (j0 > pw + 15) return; /* warp-uniform */
    if (j0 + FA_K - 1 > pw) fa_tile<HD, true>(sK, sV, qa, o, m, l, j0, P0, sl2, lane);
    else fa_tile<HD, false>(sK, sV, qa, o, m, l, j0, P0, sl2, lane);
}

/* Output rows of a warp: o / l as bf16 (l summed over the lane quad first). */
template <int HD>
static __device__ __forceinline__ void fa_store(const pf_args &A, const float o[HD / 8][4], const float l[2], int q0w, int h,
                                                int lane) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int t = q0w + (lane >> 2) + i * 8;
        if (t >= A.T) continue;
        const int64_t qd = (int64_t)A.n_heads * HD;
        __nv_bfloat16 *dst = A.out + (int64_t)t * qd;
        const float r = 1.0f / l[i]; /* one division per row; o r is within 2 f32 ulp of o / l */
#pragma unroll
        for (int nt = 0; nt < HD / 8; nt++) /* a pair of one 8-column run: adjacent in the GEMM column order */
            *(uint32_t *)(dst + vz_gemm_pos(qd, (int64_t)h * HD + nt * 8 + (lane & 3) * 2)) =
                pf_bf2(o[nt][2 * i] * r, o[nt][2 * i + 1] * r);
    }
}

static __device__ __forceinline__ void fa_quad_sum(float l[2]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
}

/* Shared memory, rows of HD + 8 halves (conflict-free ldmatrix): Q (64
 * rows), then each group's two stages of a K and a V tile. HD 64: 83 KB. */
template <int HD> static constexpr size_t fa_smem(void) { return sizeof(__half) * (size_t)(FA_Q + 8 * FA_K) * (HD + 8); }

/* Named barrier id for the 128 threads of one group of 4 warps. */
static __device__ __forceinline__ void fa_bar(int id) { asm volatile("bar.sync %0, 128;" ::"r"(id) : "memory"); }

/* Group g (warps 4g .. 4g + 3) takes key tiles g, g + 2, ... (half the
 * sequential tiles of the longest query tile, twice the warps in flight),
 * each group with its own pipeline: its tiles double-buffered in its own
 * half of the stages, staged by its own 128 threads, waited for at its own
 * named barrier (1 + g), so a group never waits for the other's tile. The
 * groups meet once at the end, group 1's (m, l, o) merging into group 0's
 * through shared memory. Blocks are (head, query tile), the longest query
 * tiles first over all heads, so a second wave (llama2-7b: one block of
 * hd 128 per SM) holds the short ones. Session 78 (H100, prefill_bench, one
 * 512-token layer with its RoPE kernel, this design beside the kernel
 * before in one run): tinyllama 19.2 -> 18.1 us, llama2-7b 42.1 -> 34.1 us;
 * 1024 tokens 45.6 -> 33.9 and 99.3 -> 84.2. The kernel before had its 8
 * warps stage both groups' tiles and meet at two block barriers per step.
 * This kernel in later runs: 18.9-19.0 and 35.8-36.0 us
 * (bench/results/2026-12-05-session78-h100.md). */
template <int HD, int F16>
static __global__ void __launch_bounds__(256, HD == 128 ? 1 : 2) k_pf_fa(pf_args A) {
    vz_pdl_enter();
    extern __shared__ __align__(16) unsigned char fa_sm[];
    constexpr int SS = HD + 8, TILE = FA_K * SS, NO = HD / 2 + 4; /* floats per lane to merge */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wq = warp & 3, grp = warp >> 2, gt = threadIdx.x & 127;
    const int h = blockIdx.x, q0 = (gridDim.y - 1 - blockIdx.y) * FA_Q; /* longest first */
    __half *sQ = (__half *)fa_sm, *sKV = sQ + FA_Q * SS, *sG = sKV + 4 * grp * TILE; /* group's stages: K V K V */
    const int kvh = h / (A.n_heads / A.n_kv), nkeys = A.pos0 + min(q0 + FA_Q, A.T), ntiles = (nkeys + FA_K - 1) / FA_K;
    const int ng = (ntiles - grp + 1) / 2; /* tiles grp, grp + 2, ... (group 0 has one at least) */
    if (ng > 0) {
        fa_stage<HD, F16, 128>(sG, sG + TILE, A, kvh, grp * FA_K, nkeys, gt);
        fa_commit();
    }
    fa_load_q<HD, 256>(sQ, A, q0, h);
    __syncthreads();
    uint32_t qa[HD / 16][4];
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) pa_ldsm(qa[ks], sQ + (wq * 16 + (lane & 15)) * SS + ks * 16 + (lane >> 4) * 8, false);
    const float sl2 = 1.4426950408889634f / sqrtf((float)HD); /* log2(e) / sqrt(hd) */
    const int pw = A.pos0 + q0 + wq * 16, P0 = pw + (lane >> 2);
    const bool live = q0 + wq * 16 < A.T;
    float o[HD / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    for (int i = 0; i < ng; i++) {
        const __half *sK = sG + 2 * (i & 1) * TILE;
        if (i + 1 < ng) { /* the next tile into the other stage, freed by the barrier closing tile i - 1 */
            __half *d = sG + 2 * ((i + 1) & 1) * TILE;
            fa_stage<HD, F16, 128>(d, d + TILE, A, kvh, (grp + 2 * (i + 1)) * FA_K, nkeys, gt);
            fa_commit();
            fa_wait<1>();
        } else {
            fa_wait<0>();
        }
        fa_bar(1 + grp);
        if (live) fa_tile_at<HD>(sK, sK + TILE, qa, o, m, l, (grp + 2 * i) * FA_K, pw, P0, sl2, lane);
        if (i + 2 < ng) fa_bar(1 + grp); /* tile i + 2 reuses this stage */
    }
    fa_quad_sum(l);
    __syncthreads(); /* both groups are done with their stages */
    /* [wq][value][lane] in group 1's own stages: where it lay over group 0's (as before this kernel),
     * racecheck reported WAR hazards against group 0's ldmatrix reads across the barrier above (one
     * decoded: a block whose group 1 had no key tile); this way it reports none */
    float *red = (float *)(sKV + 4 * TILE) + (size_t)wq * NO * 32 + lane;
    if (grp == 1) {
        red[0] = m[0], red[32] = m[1], red[64] = l[0], red[96] = l[1];
#pragma unroll
        for (int nt = 0; nt < HD / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[(4 + nt * 4 + e) * 32] = o[nt][e];
    }
    __syncthreads();
    if (grp == 1 || !live) return;
    float f0[2], f1[2];
#pragma unroll
    for (int i = 0; i < 2; i++) { /* group 0 saw key 0: m[i] finite; group 1's m may be -inf (factor 0) */
        const float m1 = red[32 * i], mn = fmaxf(m[i], m1);
        f0[i] = exp2f((m[i] - mn) * sl2), f1[i] = exp2f((m1 - mn) * sl2);
        l[i] = l[i] * f0[i] + red[(2 + i) * 32] * f1[i];
    }
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[nt][e] = o[nt][e] * f0[e >> 1] + red[(4 + nt * 4 + e) * 32] * f1[e >> 1];
    fa_store<HD>(A, o, l, q0 + wq * 16, h, lane);
}

template <int HD> static void fa_launch(const pf_args &A, cudaStream_t st) {
    static int attr_set;
    constexpr size_t sm = fa_smem<HD>();
    if (!attr_set) {
        cudaFuncSetAttribute(k_pf_fa<HD, 0>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
        cudaFuncSetAttribute(k_pf_fa<HD, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
        attr_set = 1;
    }
    const dim3 grid(A.n_heads, (A.T + FA_Q - 1) / FA_Q);
    pf_launch(A.f16 ? k_pf_fa<HD, 1> : k_pf_fa<HD, 0>, grid, 256, sm, st, A);
}

static int pf_att_variant; /* vz_pf_attention_variant */

int vz_pf_attention_variant(int v) {
    int old = pf_att_variant;
    if (v >= 0) pf_att_variant = v;
    return old;
}

void vz_pf_attention(void *out, float *qkv, int64_t ld, void *kc, void *vc, int32_t pos0, int32_t T, int32_t n_heads,
                     int32_t n_kv, int32_t hd, int32_t kv_f16, float theta, const float *freq, int32_t interleaved,
                     const float *bias, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    pf_args A = {(__nv_bfloat16 *)out, qkv, kc, vc, ld, pos0, T, n_heads, n_kv, hd, kv_f16};
    const int tc = (hd == 32 || hd == 64 || hd == 128) && ld % 2 == 0 && aligned(qkv, 8) && aligned(kc, 16) &&
                   aligned(vc, 16) && aligned(out, 4);
    const size_t rs = sizeof(float) * (size_t)hd;
    void (*rope)(float *, int64_t, void *, void *, int32_t, int32_t, int32_t, int32_t, int32_t, float, const float *,
                 int32_t, const float *) =
        hd == 64 ? k_pf_rope_store<64> : hd == 128 ? k_pf_rope_store<128> : k_pf_rope_store<0>;
    pf_launch(rope, T, PF_RB, rs, st, qkv, ld, kc, vc, pos0, n_heads, n_kv, hd, kv_f16, theta, freq, interleaved, bias);
    if (pf_att_variant == 2) return; /* bench (prefill_bench): the RoPE + KV store kernel alone */
    if (pf_att_variant == 0 && tc) {
        if (hd == 64) fa_launch<64>(A, st);
        else if (hd == 128) fa_launch<128>(A, st);
        else fa_launch<32>(A, st);
        return;
    }
    const size_t shm = sizeof(float) * ((size_t)2 * PF_KT * (hd + 1) + (size_t)PF_Q * hd);
    static int attr_set;
    if (!attr_set) { /* hd <= 128: at most 66 KB */
        cudaFuncSetAttribute(k_pf_attn, cudaFuncAttributeMaxDynamicSharedMemorySize, 72 * 1024);
        attr_set = 1;
    }
    pf_launch(k_pf_attn, dim3((T + PF_Q - 1) / PF_Q, n_heads), PF_WARPS * 32, shm, st, A);
}
