/*
 * gemm.cu - prefill matmuls on compressed weights (gemm.h). Path A: W decoded
 * (decode.cuh, one warp per row and 1024 columns) into a reused bf16
 * scratch, then cublasGemmEx (bf16 x bf16, f32 accumulate, f32 out); the
 * first chunk of the next matrix decodes ahead on a second stream under the
 * non-GEMM kernels between (vz_gemm_prefetch); raw bf16 rows contiguous in
 * VRAM go to cuBLAS in place. Both operands in the GEMM column order
 * (gemm.h). Path B (gemm_mma.cuh): one kernel, producer threads decoding
 * W tiles into a ring of shared-memory stages that warpgroups multiply by
 * wgmma (mma.sync off sm_90a); compiled for sm_90a (Makefile GEMM_ARCH).
 * CPU reference: the codec's decode_ref
 * rounded to bf16, times bf16(x), summed in f32/double (tests/test_cuda_prefill.c
 * states the tolerance). Bench: $BUILD/bench/prefill_bench (on the GPU machine).
 *
 * cuBLAS is loaded with dlopen on first use, never linked: the binary runs on
 * machines without it (vz_gemm_create then fails and sessions keep the
 * matvec path), and the 100+ MB library is never packed or carried.
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/decode.cuh"
#include "backend/cuda/gemm.h"

extern "C" {
#include "core/status.h"
#include "model/plan.h"
}

vz_dview vz_cuda_view(const vz_cuda_tensor *t); /* cuda_weights.cu */

/* ---- cuBLAS, loaded lazily ------------------------------------------------ */

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*destroy_fn)(cublasHandle_t);
typedef cublasStatus_t (*stream_fn)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*wspace_fn)(cublasHandle_t, void *, size_t);
typedef cublasStatus_t (*smtarget_fn)(cublasHandle_t, int);
typedef cublasStatus_t (*gemmex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                    const void *, cudaDataType, int, const void *, cudaDataType, int, const void *,
                                    void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    int tried;
    void *so;
    create_fn create;
    destroy_fn destroy;
    stream_fn set_stream;
    wspace_fn set_wspace;
    gemmex_fn gemm;
    smtarget_fn sm_target; /* optional (vz_gemm_sm_target) */
    char where[256];
} cb;

/* dlopen of libcublas.so.13 from the first place that has it (once per process). */
static vz_status cublas_load(void) {
    if (cb.tried) {
        VZ_FAIL_IF(!cb.gemm, VZ_ERR_UNSUPPORTED, "prefill gemm: libcublas.so.13 not found (set VZ_CUBLAS=path)");
        return VZ_OK;
    }
    cb.tried = 1;
    const char *env = getenv("VZ_CUBLAS");
    const char *cand[] = {env, "libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13",
                          "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcublas.so.13",
                          "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cublas/lib/libcublas.so.13"};
    for (size_t i = 0; i < sizeof cand / sizeof cand[0] && !cb.so; i++)
        if (cand[i] && *cand[i]) {
            cb.so = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
            if (cb.so) strncpy(cb.where, cand[i], sizeof cb.where - 1);
        }
    VZ_FAIL_IF(!cb.so, VZ_ERR_UNSUPPORTED, "prefill gemm: libcublas.so.13 not found (set VZ_CUBLAS=path)");
    cb.create = (create_fn)dlsym(cb.so, "cublasCreate_v2");
    cb.destroy = (destroy_fn)dlsym(cb.so, "cublasDestroy_v2");
    cb.set_stream = (stream_fn)dlsym(cb.so, "cublasSetStream_v2");
    cb.set_wspace = (wspace_fn)dlsym(cb.so, "cublasSetWorkspace_v2");
    cb.gemm = (gemmex_fn)dlsym(cb.so, "cublasGemmEx");
    cb.sm_target = (smtarget_fn)dlsym(cb.so, "cublasSetSmCountTarget");
    if (!cb.create || !cb.destroy || !cb.set_stream || !cb.set_wspace || !cb.gemm) cb.gemm = NULL;
    VZ_FAIL_IF(!cb.gemm, VZ_ERR_UNSUPPORTED, "prefill gemm: %s lacks cublasGemmEx & co", cb.where);
    return VZ_OK;
}

#define GEMM_WSPACE ((size_t)VZ_PLAN_GEMM_WORKSPACE) /* cuBLAS workspace (16 MiB: budgets; NVIDIA suggests 32 on Hopper) */

/* Path A's pipeline: the decode stream ds fills the scratch (one buffer,
 * h = 0; with VZ_GEMM_HALVES two halves, chunk c + 1 decoded into one while
 * cuBLAS multiplies chunk c from the other on st). dec[h]: buffer h decoded
 * (st waits before its GEMM); used[h]: the GEMM that read buffer h finished
 * (ds waits before decoding into it). */
struct vz_gemm {
    cublasHandle_t h;
    cudaStream_t st, ds;
    __nv_bfloat16 *scratch; /* path A: decoded rows */
    int64_t scratch_elems, half_elems;
    void *wspace;
    cudaEvent_t dec[2], used[2], fork, join;
    int next;               /* half the next decode fills */
    struct {                /* vz_gemm_prefetch: chunk 0 of these tensors sits decoded in half h */
        int n, h;
        const uint8_t *data[3];
    } pend;
};

extern "C" vz_status vz_gemm_create(vz_gemm **out, int64_t scratch_elems, void *stream) {
    VZ_FAIL_IF(!out || scratch_elems < 1, VZ_ERR_ARG, "vz_gemm_create: bad arguments");
    *out = NULL;
    VZ_TRY(cublas_load());
    vz_gemm *g = (vz_gemm *)calloc(1, sizeof *g);
    VZ_FAIL_IF(!g, VZ_ERR_NOMEM, "prefill gemm: out of memory");
    g->st = (cudaStream_t)stream;
    g->scratch_elems = scratch_elems;
    g->half_elems = scratch_elems / 2 / 128 * 128; /* 256-byte aligned halves */
    cudaError_t e = cudaMalloc((void **)&g->scratch, (size_t)scratch_elems * 2);
    if (e == cudaSuccess) e = cudaMalloc(&g->wspace, GEMM_WSPACE);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&g->ds, cudaStreamNonBlocking);
    cudaEvent_t *ev[6] = {&g->dec[0], &g->dec[1], &g->used[0], &g->used[1], &g->fork, &g->join};
    for (int i = 0; i < 6 && e == cudaSuccess; i++) e = cudaEventCreateWithFlags(ev[i], cudaEventDisableTiming);
    if (e != cudaSuccess) {
        vz_gemm_free(g);
        return VZ_FAIL(VZ_ERR_CUDA, "prefill gemm: scratch of %lld bf16: %s", (long long)scratch_elems,
                       cudaGetErrorString(e));
    }
    cublasStatus_t cs = cb.create(&g->h);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cb.set_stream(g->h, g->st);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cb.set_wspace(g->h, g->wspace, GEMM_WSPACE);
    if (cs != CUBLAS_STATUS_SUCCESS) {
        vz_gemm_free(g);
        return VZ_FAIL(VZ_ERR_CUDA, "prefill gemm: cuBLAS init (%s): status %d", cb.where, (int)cs);
    }
    *out = g;
    return VZ_OK;
}

extern "C" void vz_gemm_free(vz_gemm *g) {
    if (!g) return;
    if (g->ds) cudaStreamSynchronize(g->ds);
    cudaEvent_t ev[6] = {g->dec[0], g->dec[1], g->used[0], g->used[1], g->fork, g->join};
    for (int i = 0; i < 6; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    if (g->ds) cudaStreamDestroy(g->ds);
    if (g->h) cb.destroy(g->h);
    cudaFree(g->scratch);
    cudaFree(g->wspace);
    free(g);
}

extern "C" uint64_t vz_gemm_bytes(const vz_gemm *g) {
    return g ? (uint64_t)g->scratch_elems * 2 + GEMM_WSPACE : 0;
}

/* ---- decode of stacked tensors --------------------------------------------- */

struct stack3 {
    vz_dview w[3];
    int64_t r1[3]; /* end row of tensor i in the stack */
    int n, kind;   /* kind: the tensors' common fast path (decode.cuh VZ_K_*), else VZ_K_GENERIC */
    int tiled;     /* every tensor lossless in GPU tile order (k_decode_tile) */
    int l2last;    /* VZ_CUDA_DEC_L2: the ring's scratch stores mark their L2 lines evict_last */
};

static vz_status make_stack(stack3 *s, int n, const vz_cuda_tensor *const *W) {
    VZ_FAIL_IF(n < 1 || n > 3 || !W, VZ_ERR_ARG, "prefill gemm: %d tensors (1..3)", n);
    memset(s, 0, sizeof *s);
    s->n = n;
    int64_t r = 0;
    int any_tiled = 0;
    for (int i = 0; i < n; i++) {
        VZ_FAIL_IF(!W[i] || !W[i]->data, VZ_ERR_ARG, "prefill gemm: tensor %d not uploaded", i);
        VZ_FAIL_IF(W[i]->cols != W[0]->cols, VZ_ERR_SHAPE, "prefill gemm: tensor %d has %lld cols, tensor 0 %lld", i,
                   (long long)W[i]->cols, (long long)W[0]->cols);
        s->w[i] = vz_cuda_view(W[i]);
        s->kind = i == 0 || W[i]->kind == s->kind ? W[i]->kind : VZ_K_GENERIC;
        s->tiled = i == 0 ? W[i]->tiled : s->tiled && W[i]->tiled;
        if (W[i]->tiled) any_tiled = 1;
        r += W[i]->rows;
        s->r1[i] = r;
    }
    if (any_tiled && !s->tiled) s->kind = VZ_K_GENERIC; /* vz_group_any reads either exception order */
    for (int i = n; i < 3; i++) s->w[i] = s->w[0], s->r1[i] = r;
    return VZ_OK;
}

/* The tensor and local row of stacked row r (warp-uniform). */
static __device__ __forceinline__ const vz_dview &stack_row(const stack3 &s, int64_t r, int64_t *lr) {
    if (r < s.r1[0]) return *lr = r, s.w[0];
    if (r < s.r1[1]) return *lr = r - s.r1[0], s.w[1];
    return *lr = r - s.r1[1], s.w[2];
}

/* One lane's 32 weights of 1024-column block it of row r, by the codec's
 * decoder (fast kinds: vector loads; the rest: vz_group_any). Elements past
 * cols are 0. Warp-collective. */
static __device__ __forceinline__ void dec_group(const vz_dview &d, int64_t r, int it, int lane, uint32_t *sm,
                                                 float w[32]) {
    const bool fast = d.cols % 32 == 0;
    if (fast && d.codec == VZ_ID_RAW && d.dtype == 2) vz_raw_group<true>(d, r, it, lane, w);
    else if (fast && d.codec == VZ_ID_LOSSLESS && d.dtype == 2 && d.k == 3 && d.layout == 1 && !d.tiled)
        vz_ll_group<true>(d, r, it, lane, sm, w);
    else if (fast && d.codec == VZ_ID_Q8 && d.group % 32 == 0) vz_q8_group<true>(d, r, it, lane, w);
    else if (fast && d.codec == VZ_ID_Q4 && d.group % 32 == 0) vz_q4_group<true>(d, r, it, lane, w);
    else vz_group_any(d, r, it, lane, sm, w);
    if (32 * (int64_t)(it * 32 + lane) >= d.cols) /* fast loads clamp to group 0 */
#pragma unroll
        for (int e = 0; e < 32; e++) w[e] = 0.0f;
}

/* 32 f32 as 16 bf16 pairs (round to nearest even), element 2i in the low half of p[i]. */
static __device__ __forceinline__ void pack_bf16x32(const float w[32], uint32_t p[16]) {
#pragma unroll
    for (int i = 0; i < 16; i++) {
        __nv_bfloat162 h = __floats2bfloat162_rn(w[2 * i], w[2 * i + 1]);
        p[i] = *(uint32_t *)&h;
    }
}

/* 32 f32 as bf16 (round to nearest even) into dst (16-byte aligned). */
static __device__ __forceinline__ void put_bf16x32(__nv_bfloat16 *dst, const float w[32]) {
    uint32_t p[16];
    pack_bf16x32(w, p);
    uint4 *q = (uint4 *)dst;
#pragma unroll
    for (int i = 0; i < 4; i++) q[i] = make_uint4(p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]);
}

extern "C" int64_t vz_gemm_col(int64_t cols, int64_t c) { return vz_gemm_pos(cols, c); }

/* Lane group g's 16 bf16 pairs p into row dst of cols (% 32 == 0) columns
 * in the GEMM column order: 4 stores of 16 bytes, n lane groups apart (n:
 * the groups of its 1024-column block), so a warp's 32 groups of a block
 * go out as 4 runs of 16 n contiguous bytes. */
static __device__ __forceinline__ void put_group(__nv_bfloat16 *dst, int64_t cols, int64_t g, const uint32_t p[16],
                                                 int last = 0) {
    const int64_t b = g >> 5 << 10, n = vz_gpu_groups(cols, b);
    uint4 *q = (uint4 *)(dst + b) + (g & 31);
    if (last) { /* the GEMM right after reads these lines (dec_l2_now) */
        const uint64_t pol = vz_l2_last();
#pragma unroll
        for (int i = 0; i < 4; i++)
            asm volatile("st.global.L2::cache_hint.v4.u32 [%0], {%1, %2, %3, %4}, %5;" ::"l"(q + i * n), "r"(p[4 * i]),
                         "r"(p[4 * i + 1]), "r"(p[4 * i + 2]), "r"(p[4 * i + 3]), "l"(pol)
                         : "memory");
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) q[i * n] = make_uint4(p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]);
}

#define DEC_WARPS 8

/* The fast kinds' loads of 1024-column block it of row lr of d into st (vz_*_load). */
template <int KIND>
static __device__ __forceinline__ void dec_load(const vz_dview &d, int64_t lr, int it, int lane, vz_gst &st) {
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_load(d, lr, it, lane, st);
    else if (KIND == VZ_K_LL3) vz_ll3_load(d, lr, it, lane, st);
    else if (KIND == VZ_K_LL4) vz_ll4_load(d, lr, it, lane, st);
    else if (KIND == VZ_K_Q8) vz_q8_load(d, lr, it, lane, st);
    else vz_q4_load(d, lr, it, lane, st);
}

/* Rows [r0, r0 + nr) of the stack into out (nr, cols) bf16; one warp per
 * (row, 1024-column block). */
static __global__ void __launch_bounds__(DEC_WARPS * 32) k_decode(stack3 s, int64_t r0, int64_t nr, __nv_bfloat16 *out) {
    __shared__ __align__(16) uint32_t smem[DEC_WARPS][32 * VZ_SMEM_LANE];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nit = (s.w[0].gpr + 31) / 32;
    const int64_t job = (int64_t)blockIdx.x * DEC_WARPS + warp, i = job / nit;
    const int it = (int)(job % nit);
    if (i >= nr) return;
    int64_t lr;
    const vz_dview &d = stack_row(s, r0 + i, &lr);
    float w[32];
    dec_group(d, lr, it, lane, smem[warp], w);
    const int64_t cols = d.cols, c0 = 32 * (int64_t)(it * 32 + lane);
    if (c0 >= cols) return;
    if (cols % 32 == 0) { /* the GEMM column order */
        uint32_t p[16];
        pack_bf16x32(w, p);
        put_group(out + i * cols, cols, c0 >> 5, p);
        return;
    }
    __nv_bfloat16 *dst = out + i * cols + c0;
    if (cols % 8 == 0 && c0 + 32 <= cols) {
        put_bf16x32(dst, w);
    } else {
        for (int e = 0; e < 32 && c0 + e < cols; e++) dst[e] = __float2bfloat16_rn(w[e]);
    }
}

/* Fast kinds (cols % 32 == 0), decode variant 1 (the default before
 * k_decode_ring): a grid of dec_bps blocks per SM whose warps walk
 * the (row, 1024-column block) jobs with the next job's loads in flight
 * while the current one is decoded and stored (vz_*_load / vz_*_decode). */
template <int KIND>
static __global__ void __launch_bounds__(DEC_WARPS * 32) k_decode_pipe(stack3 s, int64_t r0, int64_t nr,
                                                                       __nv_bfloat16 *out) {
    __shared__ __align__(16) uint32_t smem[DEC_WARPS][32 * VZ_SMEM_LANE];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nit = (s.w[0].gpr + 31) / 32;
    const int64_t nw = (int64_t)gridDim.x * DEC_WARPS, jobs = nr * nit, cols = s.w[0].cols;
    int64_t j = (int64_t)blockIdx.x * DEC_WARPS + warp;
    if (j >= jobs) return;
    vz_gst cur, nxt;
    int64_t lr, nlr = 0;
    const vz_dview *d = &stack_row(s, r0 + j / nit, &lr), *nd = d;
    dec_load<KIND>(*d, lr, (int)(j % nit), lane, cur);
    for (; j < jobs; j += nw) {
        const int64_t jn = j + nw;
        if (jn < jobs) {
            nd = &stack_row(s, r0 + jn / nit, &nlr);
            dec_load<KIND>(*nd, nlr, (int)(jn % nit), lane, nxt);
        }
        float w[32];
        if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode(cur, w);
        else if (KIND == VZ_K_LL3) vz_ll3_decode(*d, cur, lane, smem[warp], w);
        else if (KIND == VZ_K_Q8) vz_q8_decode(cur, w);
        else vz_q4_decode(cur, w);
        const int64_t g = (int64_t)((int)(j % nit) * 32 + lane);
        if (32 * g < cols) {
            uint32_t p[16];
            pack_bf16x32(w, p);
            put_group(out + (j / nit) * cols, cols, g, p);
        }
        cur = nxt, d = nd;
    }
}

/* Fast kinds (cols % 32 == 0), decode variant 2, the default:
 * DEC_RING_BLOCKS blocks of DEC_WARPS warps per SM, warp w walking the jobs
 * w, w + nw, ... (nw: the grid's warps) with a ring of DEC_RING_D(KIND)
 * slots in registers: the loads of its next D - 1 jobs are in flight while
 * it decodes and stores one, a slot refilled right after its decode. A
 * lossless job's first 32 exception entries (vz_gst::ex) are loaded one job
 * ahead of its decode, once its exception range has come with the slot's
 * loads, so the patch (vz_ll3_decode2, the matvecs' one) waits on no load.
 * Raw and lossless store their decoders' packed bf16 pairs as they are
 * (vz_*_decode2: the bits of k_decode_pipe's f32 round trip, NaN payloads
 * kept too), q8 and q4 their f32 values rounded to bf16; a warp's 2 KiB go
 * out as 4 stores of 512 contiguous bytes (put_group: the GEMM column
 * order; in row-major order they went through a transpose in shared memory
 * to store so, put_run until session 66). On an H200
 * (bench/results/2026-11-30-session22-h200.md, run 3), us per decode of
 * tinyllama's gate+up (11264 x 2048) against k_decode_pipe: lossless 34.7
 * -> 25.0, q8 28.9 -> 22.1, q4 28.1 -> 19.8; the 512-token prefill of
 * tinyllama lossless 103.6k -> 133.9k tok/s, q8 113.9k -> 129.2k, q4
 * 118.2k -> 146.0k, llama2-7b lossless 17.0k -> 19.9k. The same ring with
 * each lane storing its own 64 bytes (16-byte stores at a 64-byte lane
 * stride) was no faster than k_decode_pipe (lossless 33.5, q4 36.3 us), and
 * 3 blocks per SM (80 registers: lossless and q8 spill) no faster than 2.
 * jobs <= 2^30 (decode_rows), so j + D * nw stays in an int. */
#define DEC_RING_BLOCKS 2
#define DEC_RING_D(KIND) ((KIND) == VZ_K_RAW_BF16 ? 3 : 4)

/* The loads of job j (stacked row r0 + j / nit, 1024-column block j % nit) into st. */
template <int KIND>
static __device__ __forceinline__ void dec_fetch(const stack3 &s, int64_t r0, int j, int nit, int lane, vz_gst &st) {
    int64_t lr;
    const vz_dview &d = stack_row(s, r0 + j / nit, &lr);
    dec_load<KIND>(d, lr, j % nit, lane, st);
}

/* Lossless: job j's exception entry e0 + lane (if below e1) into st.ex, its range already in st.u[3..4]. */
static __device__ __forceinline__ void dec_fetch_ex(const stack3 &s, int64_t r0, int j, int nit, int lane, vz_gst &st) {
    int64_t lr;
    const vz_dview &d = stack_row(s, r0 + j / nit, &lr);
    const uint32_t e = st.u[3] + (uint32_t)lane;
    st.ex = e < st.u[4] ? __ldg(d.exc + e) : 0u;
}

/* Job j decoded from st and stored into out (rows of cols). */
template <int KIND>
static __device__ __forceinline__ void dec_put(const stack3 &s, int64_t r0, int j, int nit, int lane, const vz_gst &st,
                                               uint32_t *sm, __nv_bfloat16 *out) {
    const int64_t cols = s.w[0].cols, g = 32 * (int64_t)(j % nit) + lane;
    vz_pk k; /* the 16 bf16 pairs */
    if (KIND == VZ_K_RAW_BF16) vz_rawbf_decode2(st, k);
    else if (KIND == VZ_K_LL3) {
        int64_t lr;
        vz_ll3_decode2(stack_row(s, r0 + j / nit, &lr), st, lane, sm, k);
    } else if (KIND == VZ_K_LL4) {
        int64_t lr;
        vz_ll4_decode2(stack_row(s, r0 + j / nit, &lr), st, lane, sm, k);
    } else {
        float w[32];
        if (KIND == VZ_K_Q8) vz_q8_decode(st, w);
        else vz_q4_decode(st, w);
        pack_bf16x32(w, k.p);
    }
    if (32 * g < cols) put_group(out + (int64_t)(j / nit) * cols, cols, g, k.p, s.l2last);
}

template <int KIND>
static __global__ void __launch_bounds__(DEC_WARPS * 32, DEC_RING_BLOCKS) k_decode_ring(stack3 s, int64_t r0, int32_t nr,
                                                                                        __nv_bfloat16 *out) {
    enum { D = DEC_RING_D(KIND) };
    __shared__ __align__(16) uint32_t smem[vz_k_ll(KIND) ? DEC_WARPS : 1][VZ_SMEM_WARP3];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    uint32_t *sm = smem[vz_k_ll(KIND) ? warp : 0];
    const int nit = (int)((s.w[0].gpr + 31) / 32), nw = (int)gridDim.x * DEC_WARPS, jobs = nr * nit;
    const int j0 = (int)blockIdx.x * DEC_WARPS + warp;
    if (j0 >= jobs) return; /* warp-uniform, as every test on a job index below */
    vz_gst st[D];
#pragma unroll
    for (int k = 0; k < D; k++)
        if (j0 + k * nw < jobs) dec_fetch<KIND>(s, r0, j0 + k * nw, nit, lane, st[k]);
    if (vz_k_ll(KIND)) dec_fetch_ex(s, r0, j0, nit, lane, st[0]);
    for (int jb = j0; jb < jobs; jb += D * nw) {
#pragma unroll
        for (int k = 0; k < D; k++) {
            const int j = jb + k * nw;
            if (j >= jobs) break;
            if (vz_k_ll(KIND) && j + nw < jobs) dec_fetch_ex(s, r0, j + nw, nit, lane, st[(k + 1) % D]);
            dec_put<KIND>(s, r0, j, nit, lane, st[k], sm, out);
            if (j + D * nw < jobs) dec_fetch<KIND>(s, r0, j + D * nw, nit, lane, st[k]);
        }
    }
}

/* The fast kinds' kernels by kind (decode.cuh VZ_K_*). */
typedef void (*dec_fn)(stack3, int64_t, int32_t, __nv_bfloat16 *);
static const dec_fn dec_ring[5] = {k_decode_ring<VZ_K_RAW_BF16>, k_decode_ring<VZ_K_LL3>, k_decode_ring<VZ_K_Q8>,
                                   k_decode_ring<VZ_K_Q4>, k_decode_ring<VZ_K_LL4>}; /* [vz_k_row(kind)] */
typedef void (*dec_pipe_fn)(stack3, int64_t, int64_t, __nv_bfloat16 *);
static const dec_pipe_fn dec_pipe[4] = {k_decode_pipe<VZ_K_RAW_BF16>, k_decode_pipe<VZ_K_LL3>, k_decode_pipe<VZ_K_Q8>,
                                        k_decode_pipe<VZ_K_Q4>};

/* Tiled lossless tensors (GPU tile order, codec/lossless_tile.h): one warp
 * per tile of 8 rows x 128 columns, lane 4n + q decoding row n's group q
 * as the tensor-core matvec does (loads, then vz_ll3_decode2 with the
 * tile's exceptions), 16 bf16 pairs stored as they come. r0, nr and the
 * tensors' rows are multiples of 8. */
static __global__ void __launch_bounds__(DEC_WARPS * 32) k_decode_tile(stack3 s, int64_t r0, int64_t nr,
                                                                       __nv_bfloat16 *out) {
    __shared__ __align__(16) uint32_t smem[DEC_WARPS][32 * VZ_SMEM_LANE];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n = lane >> 2, q = lane & 3;
    const int S = (int)(s.w[0].cols >> 7);
    const int64_t job = (int64_t)blockIdx.x * DEC_WARPS + warp, oct = job / S;
    const int st = (int)(job % S);
    if (oct >= nr / 8) return; /* warp-uniform */
    int64_t lr;
    const vz_dview &d = stack_row(s, r0 + 8 * oct, &lr);
    const size_t tile = (size_t)(lr >> 3) * S + st, g = 4 * (size_t)st + q, r = (size_t)lr + n;
    vz_gst x;
    const uint4 *lp = (const uint4 *)(d.data + r * d.cols + 32 * g);
    const uint32_t *cp = d.codes + (r * d.gpr + g) * 3;
    x.v[0] = __ldg(lp), x.v[1] = __ldg(lp + 1);
    x.u[0] = __ldg(cp), x.u[1] = __ldg(cp + 1), x.u[2] = __ldg(cp + 2);
    x.u[3] = __ldg(d.eidx + tile), x.u[4] = __ldg(d.eidx + tile + 1);
    x.ex = x.u[3] + lane < x.u[4] ? __ldg(d.exc + x.u[3] + lane) : 0u;
    vz_pk k;
    vz_ll3_decode2(d, x, lane, smem[warp], k);
    put_group(out + (size_t)(8 * oct + n) * d.cols, d.cols, (int64_t)g, k.p);
}

static int dec_variant = -1; /* vz_gemm_decode_variant; -1: not set yet (VZ_CUDA_DEC, else 2) */
static int n_sms;
static int dec_bps = 4; /* k_decode_pipe blocks per SM (64 registers, 8 warps: up to 4 fit; 4 measured fastest) */

/* The decode variant in force: the one set, else VZ_CUDA_DEC (bench knob: 0 k_decode, 1 k_decode_pipe,
 * 2 k_decode_ring; the same bits), else 2. */
static int dec_variant_now(void) {
    if (dec_variant < 0) {
        const char *e = getenv("VZ_CUDA_DEC");
        dec_variant = e && *e >= '0' && *e <= '2' && !e[1] ? *e - '0' : 2;
    }
    return dec_variant;
}

extern "C" int vz_gemm_decode_variant(int v) {
    int old = dec_variant_now();
    if (v >= 0) dec_variant = v;
    return old;
}

/* The decode ring's scratch stores carry an L2 evict_last policy (the
 * compressed loads carry evict_first), so the lines the GEMM reads next are
 * the last the L2 evicts. 512-token prefill, lossless, pairs of rounds:
 * tinyllama +2.0, +2.4% (H100), +3.5, +0.9, -0.9, +0.5% (H200), and +0.4% on
 * the mean of five more on an H100; llama2-7b +0.5, 0.0 (H100), 0.0, -1.5,
 * +1.6, +2.3% (H200; its chunks are 2-4 times the L2); each within a
 * round's noise; decode level; the same bits
 * (bench/results/2026-12-05-session77-h100.md, runs 2-4, 6-7). Smaller chunks
 * that fit the L2, a persisting L2 window on the scratch and discarding a
 * chunk's lines after its GEMM all lost there. VZ_CUDA_DEC_L2=0 (bench):
 * plain stores. */
static int dec_l2 = -1;

static int dec_l2_now(void) {
    if (dec_l2 < 0) {
        const char *e = getenv("VZ_CUDA_DEC_L2");
        dec_l2 = !(e && *e == '0' && !e[1]);
    }
    return dec_l2;
}

static int dec_cap; /* vz_gemm_decode_cap */

extern "C" int vz_gemm_decode_cap(int blocks) {
    const int old = dec_cap;
    if (blocks >= 0) dec_cap = blocks;
    return old;
}

extern "C" vz_status vz_gemm_sm_target(vz_gemm *g, int n) {
    VZ_FAIL_IF(!g || n < 0, VZ_ERR_ARG, "vz_gemm_sm_target: bad arguments");
    VZ_FAIL_IF(!cb.sm_target, VZ_ERR_UNSUPPORTED, "prefill gemm: %s lacks cublasSetSmCountTarget", cb.where);
    cublasStatus_t cs = cb.sm_target(g->h, n);
    VZ_FAIL_IF(cs != CUBLAS_STATUS_SUCCESS, VZ_ERR_CUDA, "prefill gemm: cublasSetSmCountTarget(%d): status %d", n, (int)cs);
    return VZ_OK;
}

static vz_status decode_rows(const stack3 &s0, int64_t r0, int64_t nr, __nv_bfloat16 *out, cudaStream_t cs) {
    stack3 s = s0;
    s.l2last = dec_l2_now();
    const int64_t nit = (s.w[0].gpr + 31) / 32, jobs = nr * nit;
    const int64_t blocks = (jobs + DEC_WARPS - 1) / DEC_WARPS;
    VZ_FAIL_IF(blocks > INT32_MAX, VZ_ERR_SHAPE, "prefill decode: %lld blocks", (long long)blocks);
    if (!n_sms) {
        if ((n_sms = vz_cuda_sm_count(0)) == 0) n_sms = 132;
        const char *e = getenv("VZ_CUDA_DEC_BPS"); /* bench: blocks per SM of k_decode_pipe (1..4; same bits) */
        if (e && *e >= '1' && *e <= '4') dec_bps = *e - '0';
    }
    const unsigned pb = (unsigned)(blocks < dec_bps * n_sms ? blocks : dec_bps * n_sms);
    if (s.tiled && r0 % 8 == 0 && nr % 8 == 0) {
        const int64_t tiles = nr / 8 * (s.w[0].cols / 128);
        VZ_FAIL_IF(tiles / DEC_WARPS + 1 > INT32_MAX, VZ_ERR_SHAPE, "prefill decode: %lld tiles", (long long)tiles);
        k_decode_tile<<<(unsigned)((tiles + DEC_WARPS - 1) / DEC_WARPS), DEC_WARPS * 32, 0, cs>>>(s, r0, nr, out);
    } else if (s.tiled) /* k_decode_pipe and k_decode_ring read per-row exception blocks */
        k_decode<<<(unsigned)blocks, DEC_WARPS * 32, 0, cs>>>(s, r0, nr, out);
    else if (dec_variant_now() == 2 && ((s.kind >= VZ_K_RAW_BF16 && s.kind <= VZ_K_Q4) || s.kind == VZ_K_LL4)) {
        VZ_FAIL_IF(jobs > INT32_MAX / 2, VZ_ERR_SHAPE, "prefill decode: %lld jobs", (long long)jobs); /* j + D nw */
        const int64_t rb = (jobs + DEC_WARPS - 1) / DEC_WARPS;
        unsigned g = (unsigned)(rb < DEC_RING_BLOCKS * n_sms ? rb : DEC_RING_BLOCKS * n_sms);
        if (dec_cap > 0 && g > (unsigned)dec_cap) g = (unsigned)dec_cap;
        dec_ring[vz_k_row(s.kind)]<<<g, DEC_WARPS * 32, 0, cs>>>(s, r0, (int32_t)nr, out);
    } else if (dec_variant == 1 && s.kind >= VZ_K_RAW_BF16 && s.kind <= VZ_K_Q4)
        dec_pipe[s.kind]<<<pb, DEC_WARPS * 32, 0, cs>>>(s, r0, nr, out);
    else
        k_decode<<<(unsigned)blocks, DEC_WARPS * 32, 0, cs>>>(s, r0, nr, out);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "prefill decode launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}

/* y (T, ldy) (+)= x (T, ldx) w^T, w (rows, cols) bf16 row-major: in cuBLAS's
 * column-major terms Y^T (rows x T, ld ldy) = op_T(w) (rows x cols) X^T. */
static vz_status cublas_mm(vz_gemm *g, const void *w, int64_t rows, int64_t cols, float *y, int64_t ldy,
                           const void *x, int64_t ldx, int32_t T, int32_t add) {
    VZ_FAIL_IF(rows > INT32_MAX || cols > INT32_MAX || ldy > INT32_MAX || ldx > INT32_MAX, VZ_ERR_SHAPE,
               "prefill gemm: %lldx%lld too large for cuBLAS", (long long)rows, (long long)cols);
    const float one = 1.0f, beta = add ? 1.0f : 0.0f;
    cublasStatus_t cs = cb.gemm(g->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, T, (int)cols, &one, w, CUDA_R_16BF,
                                (int)cols, x, CUDA_R_16BF, (int)ldx, &beta, y, CUDA_R_32F, (int)ldy,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    VZ_FAIL_IF(cs != CUBLAS_STATUS_SUCCESS, VZ_ERR_CUDA, "prefill gemm: cublasGemmEx %lldx%lldx%d: status %d",
               (long long)rows, (long long)cols, (int)T, (int)cs);
    return VZ_OK;
}

extern "C" vz_status vz_gemm_decode(vz_gemm *g, int n, const vz_cuda_tensor *const *W, int64_t r0, int64_t nr) {
    VZ_FAIL_IF(!g, VZ_ERR_ARG, "vz_gemm_decode: NULL context");
    stack3 s;
    VZ_TRY(make_stack(&s, n, W));
    VZ_FAIL_IF(r0 < 0 || nr < 1 || r0 + nr > s.r1[2] || nr * s.w[0].cols > g->scratch_elems, VZ_ERR_ARG,
               "vz_gemm_decode: rows [%lld, +%lld) do not fit", (long long)r0, (long long)nr);
    return decode_rows(s, r0, nr, g->scratch, g->st);
}

extern "C" vz_status vz_gemm_scratch_mm(vz_gemm *g, int64_t rows, int64_t cols, float *y, int64_t ldy, const void *x,
                                        int64_t ldx, int32_t T, int32_t add) {
    VZ_FAIL_IF(!g || rows * cols > g->scratch_elems, VZ_ERR_ARG, "vz_gemm_scratch_mm: bad arguments");
    return cublas_mm(g, g->scratch, rows, cols, y, ldy, x, ldx, T, add);
}

extern "C" vz_status vz_gemm_bf16(vz_gemm *g, const void *w, int64_t rows, int64_t cols, float *y, int64_t ldy,
                                  const void *x, int64_t ldx, int32_t T, int32_t add) {
    VZ_FAIL_IF(!g || !w || !y || !x, VZ_ERR_ARG, "vz_gemm_bf16: NULL argument");
    return cublas_mm(g, w, rows, cols, y, ldy, x, ldx, T, add);
}

/* ---- path A: decode ahead of the GEMM, raw bf16 read in place ------------- */

static int pipe_flags; /* vz_gemm_pipe_flags */

extern "C" int vz_gemm_pipe_flags(int f) {
    int old = pipe_flags;
    if (f >= 0) pipe_flags = f & (VZ_GEMM_SERIAL | VZ_GEMM_COPY | VZ_GEMM_HALVES);
    return old;
}

/* How a stack of cols columns runs: row chunks of the whole scratch (one
 * buffer), or with VZ_GEMM_HALVES (when a half holds a row) chunks of a
 * half, two buffers. Either way a chunk is a multiple of 64 rows when it
 * can be, so chunk k's output, from y + k * chunk floats, stays 16-byte
 * aligned for cuBLAS: Mistral-Nemo's 13107-row chunks ran its prefill at
 * 16% of cuBLAS. By shape, scratch size and flags only, never by codec or
 * residency, so raw and lossless issue the same cuBLAS calls. */
struct plan_a {
    int64_t chunk;
    int halves, serial;
};

static plan_a plan_for(const vz_gemm *g, int64_t cols) {
    plan_a p;
    p.halves = (pipe_flags & VZ_GEMM_HALVES) && g->half_elems >= cols;
    p.serial = (pipe_flags & VZ_GEMM_SERIAL) != 0;
    p.chunk = (p.halves ? g->half_elems : g->scratch_elems) / cols;
    if (p.chunk >= 64) p.chunk = p.chunk / 64 * 64;
    return p;
}

static __nv_bfloat16 *buf_ptr(const vz_gemm *g, const plan_a &p, int h) {
    return p.halves ? g->scratch + (int64_t)h * g->half_elems : g->scratch;
}

/* Raw bf16 rows [r0, r0 + nr) of the stack where they lie in device memory,
 * when they are one contiguous run (the weight arena puts wq wk wv and
 * w1 w3 side by side) and, with ordered, in the GEMM column order; else
 * NULL. */
static const void *stack_rows(const stack3 &s, int64_t r0, int64_t nr, bool ordered) {
    const int64_t cols = s.w[0].cols;
    const uint8_t *p = NULL, *end = NULL;
    int64_t lo = 0;
    for (int i = 0; i < s.n; lo = s.r1[i], i++) {
        const vz_dview &d = s.w[i];
        if (s.r1[i] <= r0 || lo >= r0 + nr) continue; /* outside the chunk */
        if (d.codec != VZ_ID_RAW || d.dtype != 2) return NULL;
        if (ordered && (d.layout == VZ_CUDA_RAW_GPU) != (cols % 32 == 0)) return NULL;
        const uint8_t *a = d.data + (r0 > lo ? r0 - lo : 0) * cols * 2;
        if (p && a != end) return NULL;
        if (!p) p = a;
        end = d.data + (s.r1[i] - lo) * cols * 2;
    }
    return p;
}

extern "C" vz_status vz_gemm_raw_stack(int n, const vz_cuda_tensor *const *W, const void **w) {
    VZ_FAIL_IF(!w, VZ_ERR_ARG, "vz_gemm_raw_stack: NULL argument");
    *w = NULL;
    stack3 s;
    VZ_TRY(make_stack(&s, n, W));
    *w = stack_rows(s, 0, s.r1[2], false);
    return VZ_OK;
}

/* stack_rows when path A may read the rows in place: the run is in the
 * GEMM column order and 256-byte aligned (as the scratch is) and
 * VZ_GEMM_COPY is off; else NULL: the rows are copied through the scratch. */
static const void *direct_rows(const stack3 &s, int64_t r0, int64_t nr) {
    if (pipe_flags & VZ_GEMM_COPY) return NULL;
    const void *p = stack_rows(s, r0, nr, true);
    return ((uintptr_t)p & 255) == 0 ? p : NULL;
}

/* Chunk [r0, r0 + nr) made ready for its GEMM: read in place (direct_rows),
 * else decoded into the next buffer, on ds after the GEMM that last read it
 * (on_ds), else on st. *w: what the GEMM reads; *half: the buffer, or -1
 * when the rows are read in place. */
static vz_status issue(vz_gemm *g, const plan_a &p, const stack3 &s, int64_t r0, int64_t nr, int on_ds, int *half,
                       const void **w) {
    *half = -1;
    *w = direct_rows(s, r0, nr);
    if (*w) return VZ_OK;
    const int h = p.halves ? g->next : 0;
    g->next ^= 1;
    if (on_ds && cudaStreamWaitEvent(g->ds, g->used[h], 0) != cudaSuccess)
        return VZ_FAIL(VZ_ERR_CUDA, "prefill gemm: decode wait");
    VZ_TRY(decode_rows(s, r0, nr, buf_ptr(g, p, h), on_ds ? g->ds : g->st));
    if (on_ds && cudaEventRecord(g->dec[h], g->ds) != cudaSuccess)
        return VZ_FAIL(VZ_ERR_CUDA, "prefill gemm: decode event");
    *half = h, *w = buf_ptr(g, p, h);
    return VZ_OK;
}

static int pend_matches(const vz_gemm *g, const stack3 &s) {
    if (g->pend.n != s.n) return 0;
    for (int i = 0; i < s.n; i++)
        if (g->pend.data[i] != s.w[i].data) return 0;
    return 1;
}

static vz_status st_wait(vz_gemm *g, cudaEvent_t e) {
    cudaError_t r = cudaStreamWaitEvent(g->st, e, 0);
    VZ_FAIL_IF(r != cudaSuccess, VZ_ERR_CUDA, "prefill gemm: wait for decode: %s", cudaGetErrorString(r));
    return VZ_OK;
}

/* Path A: row chunks of the scratch, each decoded then multiplied (raw bf16
 * chunks in place, no decode); chunk 0 may come decoded from
 * vz_gemm_prefetch; HALVES: chunk c + 1 decodes on ds while chunk c
 * multiplies on st. */
static vz_status run_a(vz_gemm *g, const stack3 &s, float *y, int64_t ldy, const void *x, int64_t ldx, int32_t T,
                       int32_t add) {
    const plan_a p = plan_for(g, s.w[0].cols);
    const int64_t R = s.r1[2], cols = s.w[0].cols, chunk = p.chunk;
    VZ_FAIL_IF(chunk < 1, VZ_ERR_ARG, "prefill gemm: scratch holds no row of %lld cols", (long long)cols);
    const int ahead = p.halves && !p.serial; /* the next chunk decodes during this one's GEMM */
    int h, h_ds = 0; /* h_ds: chunk decoded on ds, not yet waited for */
    const void *w;   /* what this chunk's GEMM reads (issue) */
    if (g->pend.n) VZ_TRY(st_wait(g, g->dec[g->pend.h])); /* prefetched: used now, or done before it is overwritten */
    if (g->pend.n && pend_matches(g, s)) h = g->pend.h, w = buf_ptr(g, p, h);
    else VZ_TRY(issue(g, p, s, 0, R < chunk ? R : chunk, 0, &h, &w));
    g->pend.n = 0;
    for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        const int64_t nr = R - r0 < chunk ? R - r0 : chunk, r1 = r0 + chunk, nn = R - r1 < chunk ? R - r1 : chunk;
        int hn = -1;
        const void *wn = NULL;
        if (ahead && r1 < R) VZ_TRY(issue(g, p, s, r1, nn, 1, &hn, &wn));
        if (h >= 0 && h_ds) VZ_TRY(st_wait(g, g->dec[h]));
        VZ_TRY(cublas_mm(g, w, nr, cols, y + r0, ldy, x, ldx, T, add));
        if (h >= 0 && cudaEventRecord(g->used[h], g->st) != cudaSuccess)
            return VZ_FAIL(VZ_ERR_CUDA, "prefill gemm: GEMM event");
        if (!ahead && r1 < R) VZ_TRY(issue(g, p, s, r1, nn, 0, &hn, &wn));
        h = hn, w = wn, h_ds = ahead;
    }
    return VZ_OK;
}

extern "C" vz_status vz_gemm_prefetch(vz_gemm *g, int n, const vz_cuda_tensor *const *W) {
    VZ_FAIL_IF(!g, VZ_ERR_ARG, "vz_gemm_prefetch: NULL context");
    stack3 s;
    VZ_TRY(make_stack(&s, n, W));
    const plan_a p = plan_for(g, s.w[0].cols);
    if (p.serial || p.chunk < 1) return VZ_OK; /* vz_gemm_run decodes (or reports) it */
    if (g->pend.n) VZ_TRY(st_wait(g, g->dec[g->pend.h])); /* an unused prefetch: its buffer may be reused */
    g->pend.n = 0;
    int h;
    const void *w;
    VZ_TRY(issue(g, p, s, 0, s.r1[2] < p.chunk ? s.r1[2] : p.chunk, 1, &h, &w));
    if (h < 0) return VZ_OK;
    g->pend.n = n, g->pend.h = h;
    for (int i = 0; i < n; i++) g->pend.data[i] = s.w[i].data;
    return VZ_OK;
}

/* Stream to waits for everything issued on stream from so far (event e
 * recorded on from); what names the step in the error. */
static vz_status cross_wait(cudaStream_t to, cudaStream_t from, cudaEvent_t e, const char *what) {
    cudaError_t r = cudaEventRecord(e, from);
    if (r == cudaSuccess) r = cudaStreamWaitEvent(to, e, 0);
    VZ_FAIL_IF(r != cudaSuccess, VZ_ERR_CUDA, "prefill gemm: %s: %s", what, cudaGetErrorString(r));
    return VZ_OK;
}

extern "C" vz_status vz_gemm_fork(vz_gemm *g) {
    VZ_FAIL_IF(!g, VZ_ERR_ARG, "vz_gemm_fork: NULL context");
    return cross_wait(g->ds, g->st, g->fork, "fork");
}

extern "C" vz_status vz_gemm_join(vz_gemm *g) {
    VZ_FAIL_IF(!g, VZ_ERR_ARG, "vz_gemm_join: NULL context");
    return cross_wait(g->st, g->ds, g->join, "join");
}

#include "backend/cuda/gemm_mma.cuh"

/* The per-shape rule: measured on an H200 at T = 512 for every TinyLlama
 * shape and codec (bench/results/2026-11-28-prefill-h200.md), path A wins
 * everywhere (48-58% of cuBLAS; B 6-15%), and again on an H100 with path
 * B's pipelined wgmma kernel (bench/results/2026-12-05-session79-h100.md:
 * A 54-104%, B 8-18%), so A for all shapes. By shape only, never by
 * codec, so raw and lossless always run the same path. */
static int pick_path(int64_t rows, int64_t cols, int32_t T) {
    (void)rows, (void)cols, (void)T;
    return VZ_GEMM_A;
}

extern "C" vz_status vz_gemm_run(vz_gemm *g, int n, const vz_cuda_tensor *const *W, float *y, int64_t ldy,
                                 const void *x, int64_t ldx, int32_t T, int32_t add, int32_t path) {
    VZ_FAIL_IF(!g || !y || !x || T < 1, VZ_ERR_ARG, "vz_gemm_run: bad arguments");
    stack3 s;
    VZ_TRY(make_stack(&s, n, W));
    VZ_FAIL_IF(ldy < s.r1[2] || ldx < s.w[0].cols, VZ_ERR_ARG, "vz_gemm_run: ldy %lld < rows or ldx %lld < cols",
               (long long)ldy, (long long)ldx);
    if (path == VZ_GEMM_AUTO) path = pick_path(s.r1[2], s.w[0].cols, T);
    if (path == VZ_GEMM_B) return run_b(g, s, y, ldy, (const __nv_bfloat16 *)x, ldx, T, add);
    return run_a(g, s, y, ldy, x, ldx, T, add);
}
