/*
 * matvec_tc.cu - the tensor-core fused decode + matvec for bf16 weights,
 * raw or lossless (vz_cuda_tensor.tc): y = W x for 1..8 inputs, W decoded
 * in registers straight into the bf16 operand of mma.m16n8k16 (PTX ISA,
 * "Matrix fragments for mma.m16n8k16"), so no weight is ever widened to f32
 * and one mma instruction does 128 weights x up to 5 inputs. Raw and
 * lossless feed the mma the same bf16 bits in the same places: their
 * outputs are bitwise equal by construction (tests/test_cuda_matvec.c).
 *
 * x is f32: each input is split exactly into three bf16 pieces
 * x = hi + lo + lo2 (hi = bf16(x), lo = bf16(x - hi), lo2 = x - hi - lo,
 * each step exact: 24 significand bits = 8 + 8 + 8), which become rows
 * 3b, 3b+1, 3b+2 of the A operand (16 rows: up to 5 inputs per launch).
 * Products of bf16 are exact in the f32 accumulator, so the result is an
 * f32-accumulated dot product of the f32 x with the weights; the error
 * bound (tensor-core addition truncates) is in the test.
 *
 * Mapping. A unit is 16 rows (two octets of 8), or for SILU_MUL gate octet
 * + up octet; a block (about 2 per SM) walks its tensor's units with a
 * stride. The columns are cut into steps of 128; warp w of
 * the block takes steps [w S / 8, (w + 1) S / 8) (S = cols / 128). In a
 * step lane 4n + q owns row 8o + n of each octet, columns 128s + 32q ..
 * + 31 (one lossless code group, decoded as in every other kernel), and
 * mma j (0..7) takes its elements 4j .. 4j + 3 at k = 2q, 2q+1, 2q+8, 2q+9.
 * The A fragments (x pieces at the matching columns) are staged once per
 * warp in shared memory and serve all its units. Each warp's partial C of
 * a unit goes to shared memory and
 * the block sums the 8 partials in warp order, then hi + (lo + lo2): a
 * fixed order that depends on the shape only, never on the batch or grid,
 * so an input's result is the same in any batch.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"
#include "backend/cuda/decode.cuh"
#include "backend/cuda/matvec.cuh"

#define TC_WARPS 8
#define TC_NB 5                /* inputs per launch: 3 pieces each in the 16 A rows */
#define TC_XMAX (160 * 1024)   /* bytes of staged A fragments per block */

vz_dview vz_cuda_view(const vz_cuda_tensor *t); /* cuda_weights.cu */

struct tc_args : mv_set {
    int xal; /* x is 16-byte aligned */
};

/* Piece p (0: hi, 1: lo, 2: lo2) of x; each is a bf16 value, and
 * hi + lo + lo2 == x exactly for normal x. */
static __device__ __forceinline__ float tc_piece(float x, int p) {
    float h = __bfloat162float(__float2bfloat16_rn(x));
    if (p == 0) return h;
    float r = x - h, l = __bfloat162float(__float2bfloat16_rn(r));
    return p == 1 ? l : r - l;
}

static __device__ __forceinline__ uint32_t tc_pack(float a, float b) { /* a in the low half; exact */
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *(uint32_t *)&h;
}

static __device__ __forceinline__ void tc_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* Loads of step s of row r (this lane's group 4s + q). Lossless: e0, e1 of
 * tile (r / 8, s) by shuffle from win (lane j: index entry of step s0 + j),
 * and the tile's exception entry e0 + lane. Warp-collective. */
template <int KIND>
static __device__ __forceinline__ void tc_fetch(const vz_dview &d, int64_t r, int s, int q, int lane, uint32_t win,
                                                int s0, vz_gst &st) {
    const size_t g = 4 * (size_t)s + q;
    if (KIND == VZ_K_RAW_BF16) {
        const uint4 *p = (const uint4 *)(d.data + ((size_t)r * d.cols + 32 * g) * 2);
        st.v[0] = __ldg(p), st.v[1] = __ldg(p + 1), st.v[2] = __ldg(p + 2), st.v[3] = __ldg(p + 3);
    } else if (KIND == VZ_K_LL3) {
        const uint4 *lp = (const uint4 *)(d.data + (size_t)r * d.cols + 32 * g);
        const uint32_t *cp = d.codes + ((size_t)r * d.gpr + g) * 3;
        st.v[0] = __ldg(lp), st.v[1] = __ldg(lp + 1);
        st.u[0] = __ldg(cp), st.u[1] = __ldg(cp + 1), st.u[2] = __ldg(cp + 2);
        st.u[3] = __shfl_sync(0xffffffffu, win, s - s0), st.u[4] = __shfl_sync(0xffffffffu, win, s - s0 + 1);
        st.ex = st.u[3] + lane < st.u[4] ? __ldg(d.exc + st.u[3] + lane) : 0u;
    }
}

/* Group g of row r, any bf16 raw/lossless layout, by this lane alone (the
 * slow path of mixed or non-packed3 tensors; one copy in the binary). */
static __device__ __noinline__ void tc_decode_any(const vz_dview &d, int64_t r, int g, uint32_t *sm, uint32_t b[16]) {
    float w[32];
    if (d.codec == VZ_ID_LOSSLESS) vz_ll_group<false>(d, r, g >> 5, g & 31, sm, w, true);
    else vz_raw_group<false>(d, r, g >> 5, g & 31, w);
#pragma unroll
    for (int i = 0; i < 16; i++) b[i] = tc_pack(w[2 * i], w[2 * i + 1]);
}

/* This lane's 32 weights of step s as 16 bf16 pairs (element 2i low). */
template <int KIND>
static __device__ __forceinline__ void tc_decode(const vz_dview &d, int64_t r, int s, int q, const vz_gst &st,
                                                 int lane, uint32_t *sm, uint32_t b[16]) {
    if (KIND == VZ_K_RAW_BF16) {
#pragma unroll
        for (int i = 0; i < 4; i++) b[4 * i] = st.v[i].x, b[4 * i + 1] = st.v[i].y, b[4 * i + 2] = st.v[i].z, b[4 * i + 3] = st.v[i].w;
    } else if (KIND == VZ_K_LL3) {
        vz_pk k;
        vz_ll3_decode2(d, st, lane, sm, k);
#pragma unroll
        for (int i = 0; i < 16; i++) b[i] = k.p[i];
    } else {
        tc_decode_any(d, r, 4 * s + q, sm, b);
    }
}

/* A fragments of this warp's slices: entry (slice jl, e) of E per slice;
 * e < NLO: lane e's a0/a2 pair (A row e / 4), else lane e - NLO's a1/a3
 * (row 8 + (e - NLO) / 4). Row m is piece m % 3 of input m / 3. One float4
 * of x per (slice, input, q) gives its three pieces; 4 loads in flight. */
template <int NB>
static __device__ __forceinline__ void tc_stage(const tc_args &a, int64_t cols, int s0, int s1, int lane, uint2 *fr) {
    enum { NLO = 4 * (3 * NB < 8 ? 3 * NB : 8), NHI = 4 * (3 * NB > 8 ? 3 * NB - 8 : 0), E = NLO + NHI };
    const int n = (s1 - s0) * 8 * NB * 4;
    for (int i0 = lane; i0 < n; i0 += 4 * 32) {
        float4 v[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int i = i0 + 32 * k, jl = i / (NB * 4), b = (i / 4) % NB, q = i & 3, j = 8 * s0 + jl;
            const float *xp = a.x + (size_t)b * cols + 128 * (size_t)(j >> 3) + 32 * q + 4 * (j & 7);
            if (i < n) v[k] = a.xal ? __ldg((const float4 *)xp) : make_float4(__ldg(xp), __ldg(xp + 1), __ldg(xp + 2), __ldg(xp + 3));
        }
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int i = i0 + 32 * k, jl = i / (NB * 4), b = (i / 4) % NB, q = i & 3;
            if (i >= n) break;
#pragma unroll
            for (int p = 0; p < 3; p++) {
                const int m = 3 * b + p, e = m < 8 ? 4 * m + q : NLO + 4 * (m - 8) + q;
                fr[jl * E + e] = make_uint2(tc_pack(tc_piece(v[k].x, p), tc_piece(v[k].y, p)),
                                            tc_pack(tc_piece(v[k].z, p), tc_piece(v[k].w, p)));
            }
        }
    }
}

/* Sum of the warps' partials of A row m, output column n (warp order). */
static __device__ __forceinline__ float tc_row(const float (*red)[2][16][8], int o, int m, int n) {
    float v = red[0][o][m][n];
#pragma unroll
    for (int w = 1; w < TC_WARPS; w++) v += red[w][o][m][n];
    return v;
}

static __device__ __forceinline__ float tc_total(const float (*red)[2][16][8], int o, int b, int n) {
    return tc_row(red, o, 3 * b, n) + (tc_row(red, o, 3 * b + 1, n) + tc_row(red, o, 3 * b + 2, n));
}

/* Rows of unit u: octet 0 at ro[0], octet 1 at ro[1] (SILU_MUL: the gate
 * and up rows of one octet). */
static __device__ __forceinline__ void tc_rows(bool silu, int64_t u, int64_t ro[2]) {
    ro[0] = silu ? 8 * u : 16 * u;
    ro[1] = silu ? 8 * u : 16 * u + 8;
}

/* Lossless: lane j gets the index entry of tile (unit's octet, s0 + j). */
template <int KIND>
static __device__ __forceinline__ void tc_window(const vz_dview d[2], const int64_t ro[2], bool two, int S, int s0,
                                                 int s1, int lane, uint32_t win[2]) {
    if (KIND != VZ_K_LL3) return;
#pragma unroll
    for (int o = 0; o < 2; o++)
        win[o] = (o == 0 || two) && lane <= s1 - s0 ? __ldg(d[o].eidx + (size_t)(ro[o] >> 3) * S + s0 + lane) : 0u;
}

/* Where a warp's weight stream stands: the next step to fetch is column
 * step s of unit u (octet rows r, second octet present: two), with the
 * unit's exception window win (lossless). */
struct tc_stream {
    int64_t u, r[2];
    int s;
    bool two;
    uint32_t win[2];
};

/* Fetches f's step into slot (both octets), then moves f to the next step:
 * the next column step, or step s0 of the block's next unit and its window. */
template <int KIND>
static __device__ __forceinline__ void tc_next(const vz_dview d[2], tc_stream &f, bool silu, int64_t rows,
                                               int64_t nunit, int64_t stride, int S, int s0, int s1, int lane,
                                               vz_gst slot[2]) {
#pragma unroll
    for (int o = 0; o < 2; o++)
        if (o == 0 || f.two) tc_fetch<KIND>(d[o], f.r[o] + (lane >> 2), f.s, lane & 3, lane, f.win[o], s0, slot[o]);
    if (++f.s == s1) {
        f.s = s0, f.u += stride;
        tc_rows(silu, f.u, f.r);
        f.two = silu || f.r[1] < rows;
        if (f.u < nunit) tc_window<KIND>(d, f.r, f.two, S, s0, s1, lane, f.win);
    }
}

/* A block owns units blockIdx - blk[t] + k * (its tensor's block count);
 * its warps keep their column steps, so the A fragments are staged once.
 * The weights of the next step (across units) are in flight during each
 * step's math: slot 0 is consumed, slot 1 moves to slot 0, slot 1 refills. */
template <int KIND, int NB>
static __global__ void __launch_bounds__(TC_WARPS * 32, 2) tc_kernel(tc_args a) {
    enum { NLO = 4 * (3 * NB < 8 ? 3 * NB : 8), NHI = 4 * (3 * NB > 8 ? 3 * NB - 8 : 0), E = NLO + NHI };
    extern __shared__ uint2 fr[];
    __shared__ __align__(16) uint32_t xsm[KIND == VZ_K_RAW_BF16 ? 1 : TC_WARPS][32 * VZ_SMEM_LANE];
    __shared__ float red[TC_WARPS][2][16][8];
    a.trigger_early(); /* the next kernel may start its weight loads now */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n = lane >> 2, q = lane & 3;
    const int t = a.tensor();
    const bool silu = a.epi == VZ_CUDA_EPI_SILU_MUL;
    vz_dview d[2];
    d[0] = a.pick(t);
    d[1] = silu ? a.pick(1) : d[0];
    const int64_t rows = d[0].rows, cols = d[0].cols, nunit = silu ? rows / 8 : (rows + 15) / 16;
    const int64_t stride = a.blk[t + 1] - a.blk[t];
    const int S = (int)(cols >> 7), s0 = warp * S / TC_WARPS, s1 = (warp + 1) * S / TC_WARPS;
    const int span = 8 * ((S + TC_WARPS - 1) / TC_WARPS) * E; /* entries per warp in fr */
    int64_t u = (int64_t)blockIdx.x - a.blk[t], ro[2];
    tc_rows(silu, u, ro);
    bool two = silu || ro[1] < rows; /* block-uniform */
    tc_stream f = {u, {ro[0], ro[1]}, s0, two, {0u, 0u}};
    vz_gst st[2][2];
    if (s1 > s0) { /* the first two steps of the stream */
        tc_window<KIND>(d, f.r, f.two, S, s0, s1, lane, f.win);
#pragma unroll
        for (int k = 0; k < 2; k++)
            if (f.u < nunit) tc_next<KIND>(d, f, silu, rows, nunit, stride, S, s0, s1, lane, st[k]);
    }
    a.wait(); /* x and y only from here on; weights before */
    uint2 *myfr = fr + (size_t)warp * span;
    tc_stage<NB>(a, cols, s0, s1, lane, myfr);
    __syncwarp();
    for (; u < nunit; u += stride) {
        float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        for (int s = s0; s < s1; s++) {
            const uint2 *xf = myfr + (size_t)(s - s0) * 8 * E;
#pragma unroll
            for (int o = 0; o < 2; o++) { /* one octet's 16 bf16 pairs live at a time */
                if (o == 1 && !two) break;
                uint32_t b[16];
                tc_decode<KIND>(d[o], ro[o] + n, s, q, st[0][o], lane, xsm[KIND == VZ_K_RAW_BF16 ? 0 : warp], b);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const uint2 lo = lane < NLO ? xf[j * E + lane] : make_uint2(0u, 0u);
                    const uint2 hi = NHI > 0 && lane < NHI ? xf[j * E + NLO + lane] : make_uint2(0u, 0u);
                    tc_mma(c[o], lo.x, hi.x, lo.y, hi.y, b[2 * j], b[2 * j + 1]);
                }
            }
            st[0][0] = st[1][0], st[0][1] = st[1][1];
            if (f.u < nunit) tc_next<KIND>(d, f, silu, rows, nunit, stride, S, s0, s1, lane, st[1]); /* refill slot 1 */
        }
#pragma unroll
        for (int o = 0; o < 2; o++) { /* C fragment: c0, c1 at (row n, cols 2q, 2q+1), c2, c3 at row n + 8 */
            red[warp][o][n][2 * q] = c[o][0], red[warp][o][n][2 * q + 1] = c[o][1];
            red[warp][o][n + 8][2 * q] = c[o][2], red[warp][o][n + 8][2 * q + 1] = c[o][3];
        }
        __syncthreads();
        const int i = threadIdx.x;
        if (silu && i < NB * 8) {
            const int b = i >> 3, nn = i & 7;
            const float g = tc_total(red, 0, b, nn), up = tc_total(red, 1, b, nn);
            a.y[0][(size_t)b * rows + ro[0] + nn] = g / (1.0f + expf(-g)) * up;
        } else if (!silu && i < NB * 16) {
            const int b = i >> 4, o = (i >> 3) & 1, nn = i & 7;
            if (o == 0 || two) {
                float *y = a.out(t) + (size_t)b * rows + ro[o] + nn;
                const float v = tc_total(red, o, b, nn);
                *y = a.epi == VZ_CUDA_EPI_ADD ? *y + v : v;
            }
        }
        __syncthreads(); /* red is rewritten by the next unit */
        tc_rows(silu, u + stride, ro);
        two = silu || ro[1] < rows;
    }
}

typedef void (*tc_fn)(tc_args);
#define TC_ROW(K) {tc_kernel<K, 1>, tc_kernel<K, 2>, tc_kernel<K, 3>, tc_kernel<K, 4>, tc_kernel<K, 5>}
static const tc_fn tc_table[3][TC_NB] = {TC_ROW(VZ_K_RAW_BF16), TC_ROW(VZ_K_LL3), TC_ROW(VZ_K_GENERIC)};

/* Staged bytes per block for nb inputs. */
static size_t tc_smem(int64_t cols, int nb) {
    const int nlo = 4 * (3 * nb < 8 ? 3 * nb : 8), nhi = 4 * (3 * nb > 8 ? 3 * nb - 8 : 0);
    const int64_t S = cols / 128;
    return (size_t)TC_WARPS * 8 * (size_t)((S + TC_WARPS - 1) / TC_WARPS) * (size_t)(nlo + nhi) * 8;
}

vz_status vz_cuda_mv_tc(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x,
                                   int batch, int epi, bool pdl, bool late, cudaStream_t st) {
    static bool big_smem[3][TC_NB];
    const bool silu = epi == VZ_CUDA_EPI_SILU_MUL;
    const int64_t cols = W[0]->cols;
    tc_args a;
    memset(&a, 0, sizeof a);
    a.ntens = silu ? 1 : n, a.epi = epi, a.late = late;
    int kind = W[0]->kind;
    for (int i = 0; i < 3; i++) {
        const vz_cuda_tensor *w = W[i < n ? i : 0];
        a.w[i] = vz_cuda_view(w);
        if (w->kind != kind) kind = VZ_K_GENERIC;
    }
    const int ki = kind == VZ_K_RAW_BF16 ? 0 : kind == VZ_K_LL3 ? 1 : 2;
    static int sms = 0;
    if (sms == 0 && (sms = vz_cuda_sm_count(0)) == 0) sms = 132;
    int64_t units[3], total = 0, blocks = 0;
    for (int i = 0; i < a.ntens; i++) total += units[i] = silu ? W[i]->rows / 8 : (W[i]->rows + 15) / 16;
    for (int i = 0; i < a.ntens; i++) { /* about 2 blocks per SM, each tensor its share (at least 1) */
        int64_t nb = (units[i] * 2 * sms + total - 1) / total;
        a.blk[i] = (int)blocks;
        blocks += nb < 1 ? 1 : nb > units[i] ? units[i] : nb;
    }
    for (int i = a.ntens; i < 4; i++) a.blk[i] = (int)blocks;
    int chunk = TC_NB;
    while (chunk > 1 && tc_smem(cols, chunk) > TC_XMAX) chunk--;
    VZ_FAIL_IF(tc_smem(cols, 1) > TC_XMAX, VZ_ERR_SHAPE, "cuda matvec tc: %lld cols", (long long)cols);
    for (int b0 = 0; b0 < batch; b0 += chunk) {
        const int nb = batch - b0 < chunk ? batch - b0 : chunk;
        a.x = d_x + (size_t)b0 * cols;
        a.xal = ((uintptr_t)a.x & 15) == 0;
        for (int i = 0; i < 3; i++) a.y[i] = d_y[i < n ? i : 0] + (size_t)b0 * W[i < n ? i : 0]->rows;
        tc_fn f = tc_table[ki][nb - 1];
        if (!big_smem[ki][nb - 1]) {
            cudaError_t e = cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, TC_XMAX);
            VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec tc: shared memory limit: %s", cudaGetErrorString(e));
            big_smem[ki][nb - 1] = true;
        }
        cudaError_t e = mv_launch_pdl(f, pdl, (unsigned)blocks, TC_WARPS * 32, tc_smem(cols, nb), st, batch, 0, a);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "cuda matvec tc launch (%lldx%lld, batch %d): %s",
                   (long long)W[0]->rows, (long long)cols, nb, cudaGetErrorString(e));
    }
    return VZ_OK;
}
