/*
 * forward.cu - the non-matmul kernels of the GPU forward pass (launchers in
 * forward.cuh). CPU references: vz_cpu_rmsnorm / vz_cpu_rope_table /
 * vz_cpu_rope / vz_cpu_softmax in src/backend/cpu/ops.c, vz_sampler and
 * the attention loop of src/model/. Results agree with them to f32 rounding
 * (sums run in a different order); tests/test_cuda_forward.c states the
 * tolerance. Bench: `vramzip bench -m MODEL --device cuda`.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/forward.cuh"
#include "backend/cuda/matvec.cuh"

/* ---- programmatic dependent launch (PDL) --------------------------------
 * Every kernel here is launched with programmatic stream serialization
 * (vz_launch_pdl, matvec.cuh, with the carveout of a decode step of `batch`
 * rows; errors surface at the caller's next check) and opens with
 * vz_pdl_enter: it lets the next kernel (whose weight loads need nothing of
 * ours) launch at once, then waits until the kernel before (a matvec) has
 * completed and its writes are visible, so completion of any kernel implies
 * completion of all before it. Nothing is read or written before the wait;
 * the next kernel can only launch once all our blocks are resident, so a
 * waiting chain never starves the kernel it waits for. */

/* ---- RMSNorm (the residual adds are the matvecs' ADD epilogue) ---------- */

static __global__ void k_rmsnorm(const float *x, float *out, const float *w, int32_t dim, float eps) {
    __shared__ vz_rms_smem nsm;
    const double inv_dim = 1.0 / (double)dim;
    vz_pdl_enter();
    const float *xr = x + (int64_t)blockIdx.x * dim;
    /* the norm's one order (matvec.cuh), as the matvec's fused norm computes it */
    const auto at4 = [xr, dim](int q) {
        const int i = 4 * q;
        return make_float4(xr[i], i + 1 < dim ? xr[i + 1] : 0.0f, i + 2 < dim ? xr[i + 2] : 0.0f,
                           i + 3 < dim ? xr[i + 3] : 0.0f);
    };
    if (threadIdx.x < VZ_RMS_THREADS) vz_rms_publish(vz_rms_part(at4, threadIdx.x, (dim + 3) / 4), 0, &nsm);
    __syncthreads();
    const float scale = vz_rms_scale(&nsm, 0, inv_dim, eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[(int64_t)blockIdx.x * dim + i] = w[i] * (xr[i] * scale);
}

void vz_k_rmsnorm(const float *x, float *out, const float *w, int32_t B, int32_t dim, float eps, cudaStream_t st) {
    vz_launch_pdl(k_rmsnorm, dim3(B), dim3(512), 0, st, B, 0, x, out, w, dim, eps);
}

/* ---- attention: RoPE + KV store + split-context attention, one kernel ---
 * One block per (key chunk s, head h, query b): att_block (attention.cuh). */

size_t vz_att_part_floats(int32_t B, int32_t n_heads, int32_t hd, int32_t n_ctx) {
    size_t S = ((size_t)n_ctx + VZ_ATT_CHUNK_MIN - 1) / VZ_ATT_CHUNK_MIN;
    return (size_t)B * n_heads * S * (size_t)(hd + 2);
}

static __global__ void __launch_bounds__(ATT_THREADS) k_attention(att_args A) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int last;
    vz_pdl_enter();
    att_block(A, vz_cta(), blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.z, sm, &last);
}

/* ---- attention, the merge in a cluster (variant 0, the default) ---------
 * att_block's blocks and sums, with the chunk blocks of one (head, query) in
 * one thread block cluster of cs = gridDim.x blocks: block r takes chunks r,
 * r + cs, ... (one each up to cs * chunk keys), writes each chunk's partial
 * row (m, l, acc) into rank 0's shared memory (st.async onto rank 0's
 * mbarrier, below), and once they have all landed rank 0 merges them in
 * chunk order by att_combine's sums. So the
 * bits are those of variant 3 (att_block, whose partials go through global
 * memory and an atomic count, two L2 round trips more). Each chunk's cached
 * K/V rows are copied into shared tiles (cp.async, rows att_kv_row bytes
 * apart), new rows written beside them; the first chunk's copy is issued
 * before the PDL wait. That is safe because the QKV matvec before this
 * kernel triggers late (vz_cuda_matvec_multi_norm): when this kernel
 * starts, every kernel before the QKV matvec has completed, among them
 * those that wrote d_pos and the cached rows below it. */

static __host__ __device__ __forceinline__ int att_cl_part(int S, int hd) { return (S * (hd + 2) + 3) & ~3; }
/* Bytes of one K or V row in a shared tile (this kernel's and variant 1's):
 * 16 bytes of padding put the 16-byte loads of 8 consecutive rows (a
 * quarter warp) in distinct banks. */
static __host__ __device__ __forceinline__ int att_kv_row(int hd, int esz) { return hd * esz + 16; }

/* The cluster barrier in halves (PTX barrier.cluster; the wait acquires). */
static __device__ __forceinline__ void cl_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory"); }
static __device__ __forceinline__ void cl_wait() { asm volatile("barrier.cluster.wait.acquire;" ::: "memory"); }

/* Rank 0's barrier for the partial rows: an mbarrier in its shared memory
 * with one arrival, rank 0's own, which adds the bytes it expects. The
 * other blocks write their rows into rank 0's shared memory by st.async,
 * each store completing its bytes on that barrier, and exit; rank 0 waits
 * on the barrier alone. Until session 45 every block wrote its rows by
 * plain remote stores and arrived on a second cluster barrier with release
 * semantics, which waits until the block's earlier stores (its rows, and
 * for the block with the new rows its KV-cache stores to global memory)
 * are performed: a clock64 probe of tinyllama's attention on an H200 put
 * that arrive at ~900-990 cycles and rank 0's wait for it at ~840-950, of
 * ~5600 after the PDL wait. With st.async, tinyllama decode went raw
 * +1.2-1.3%, lossless +0.7-0.9%, q8 +0.2-0.7%, q4 +0.4% and llama2-7b
 * +0.6-0.7%, the logits byte-identical
 * (bench/results/2026-12-02-session45-h200.md). The
 * mbarrier is initialised before the cluster's first barrier, whose wait
 * every writer passes before its first st.async (fence.mbarrier_init
 * orders the init before that barrier). */
static __device__ __forceinline__ uint32_t sm_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
static __device__ __forceinline__ void mbar_init(uint64_t *bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n\tfence.mbarrier_init.release.cluster;" ::"r"(sm_addr(bar))
                 : "memory");
}
static __device__ __forceinline__ void mbar_expect(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sm_addr(bar)), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void mbar_wait0(uint64_t *bar) { /* until phase 0 completes */
    uint32_t done;
    do
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n\t"
                     "selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(sm_addr(bar))
                     : "memory");
    while (!done);
}
/* Cluster address of *p (this block's shared memory) in block rank. */
static __device__ __forceinline__ uint32_t cl_map(const void *p, uint32_t rank) {
    uint32_t a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(sm_addr(p)), "r"(rank));
    return a;
}
static __device__ __forceinline__ void st_async(uint32_t a, float v, uint32_t bar) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(a),
                 "r"(__float_as_uint(v)), "r"(bar) : "memory");
}
static __device__ __forceinline__ void st_async2(uint32_t a, float v0, float v1, uint32_t bar) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.b32 [%0], {%1, %2}, [%3];" ::"r"(a),
                 "r"(__float_as_uint(v0)), "r"(__float_as_uint(v1)), "r"(bar) : "memory");
}

/* cp.async of cached K/V rows k0 .. k0 + n - 1 of kv head kvh into the tiles. */
static __device__ __forceinline__ void att_cl_fetch(const char *kc, const char *vc, char *kt, char *vt, int rsz, int k0,
                                                    int n, int64_t kvd, int kvh, int hd, int esz) {
    const int per = hd * esz / 16;
    for (int idx = threadIdx.x; idx < n * per; idx += blockDim.x) {
        const int r = idx / per, c = idx % per;
        const int64_t src = ((int64_t)(k0 + r) * kvd + (int64_t)kvh * hd) * esz + c * 16;
        __pipeline_memcpy_async(kt + r * rsz + c * 16, kc + src, 16);
        __pipeline_memcpy_async(vt + r * rsz + c * 16, vc + src, 16);
    }
    __pipeline_commit();
}

/* The PDL wait, then the rotated query (row b, the qi-th token of its
 * sequence, head h) into qs and the new key/value rows nlo .. nlo + nnew - 1
 * of kv head kvh into the tiles (rows from k0, rsz bytes apart) and, when
 * store, the caches: att_rope_q and att_new_rows with the same arithmetic,
 * but with the angles of a thread's first pairs computed before the wait
 * and their global loads (q, k, v) issued together after it: one memory
 * round trip where those took two, on the path of the cluster's slowest
 * block (the one with the new rows). With rank 0's merge taking its max
 * without a block reduction, tinyllama's raw decode went from 1121 to 1128
 * tok/s on an H200; llama2-7b's did not move: there the loads after the
 * wait still take ~1.4 us (3.4 us in the block with the new rows), queued
 * behind the block's own 64 KiB K/V copy (phases timed with %globaltimer:
 * bench/results/2026-11-29-session12-h200.md). hd <= 2 * ATT_THREADS. */
static __device__ __forceinline__ void att_cl_stage(const att_args &A, const vz_tgroup &tg, int h, int b, int kvh,
                                                    char *kc, char *vc, float *qs, char *kt, char *vt, int k0, int rsz,
                                                    int nlo, int nnew, int pos0, int qi, int row0, bool store,
                                                    unsigned long long *tw) {
    const int hd = A.hd, half = hd / 2, t = tg.tid;
    const bool hq = t < half, hk = t < nnew * half;
    rope_rot rq = {0, 0, 0.0f, 0.0f}, rk = rq;
    att_new_item it = {0, 0, 0};
    if (hq) rq = rope_at(t, pos0 + qi, hd, A.theta, A.freq, A.interleaved);
    if (hk) it = att_new_at(A, kvh, nlo, pos0, row0, t), rk = rope_at(t % half, it.p, hd, A.theta, A.freq, A.interleaved);
    mv_pdl_wait();
#ifdef VZ_CUDA_TRACE
    if (tw) *tw = vz_gtime(); /* the trace's wait return (tw: NULL in other builds) */
#endif
    const float *q = A.q + ((int64_t)b * A.n_heads + h) * hd;
    const float *bq = att_bias_q(A, h), *bk = att_bias_k(A, kvh), *bv = att_bias_v(A, kvh);
    float q0 = 0.0f, q1 = 0.0f, k0v = 0.0f, k1v = 0.0f, v0 = 0.0f, v1 = 0.0f;
    if (hq) q0 = with_bias(q[rq.a], bq, rq.a), q1 = with_bias(q[rq.b], bq, rq.b);
    if (hk)
        k0v = with_bias(A.k[it.src + rk.a], bk, rk.a), k1v = with_bias(A.k[it.src + rk.b], bk, rk.b),
        v0 = with_bias(A.v[it.src + rk.a], bv, rk.a), v1 = with_bias(A.v[it.src + rk.b], bv, rk.b);
    if (hq) {
        float r0, r1;
        rope_apply(rq, q0, q1, &r0, &r1);
        qs[rq.a] = r0, qs[rq.b] = r1;
    }
    if (hk) att_new_put(it, rk, k0v, k1v, v0, v1, kc, vc, kt, vt, k0, rsz, A.kv_f16, store);
    att_new_rows(A, tg, kvh, kc, vc, kt, vt, k0, rsz, nlo, nnew, pos0, row0, store, tg.nt); /* items past the first nt */
}

/* A0 is __grid_constant__: read in place from the parameter bank, never
 * written (A is the copy whose hd and kv_f16 become constants). ptxas then
 * builds every instantiation with 110-130 fewer instructions (set-up in
 * uniform registers and the moves out of them), registers unchanged: on
 * an H200 tinyllama decode +0.7% raw and lossless, +1.1-1.2% q8 and q4,
 * llama2-7b +0.2-0.4%, logits byte-identical (tinyllama KV f16 and f32,
 * llama2-7b; bench/results/2026-11-30-session28-h200.md, run 9). */
template <int HD, int F16, int LATE, int EXT>
static __global__ void __launch_bounds__(ATT_THREADS) k_attention_cl(const __grid_constant__ att_args A0, int32_t S) {
    extern __shared__ __align__(16) float sm[];
    att_args A = A0;
    if (HD) A.hd = HD, A.kv_f16 = F16; /* constants from here on (every function below is inlined) */
    if (!EXT) A.freq = NULL, A.bias = NULL; /* so is a plain Llama's RoPE (att_cl_kernel) */
    namespace cg = cooperative_groups;
    const cg::cluster_group cl = cg::this_cluster();
#ifdef VZ_CUDA_TRACE
    const unsigned long long tr_t0 = vz_gtime();
    unsigned long long tr_tw = tr_t0;
#define ATT_TRACE_PUT()                                                                                        \
    (threadIdx.x == 0                                                                                          \
         ? vz_trace_put(A.tr, tr_t0, tr_tw, blockIdx.x | blockIdx.y << 8, blockIdx.x + blockIdx.y * gridDim.x) \
         : (void)0)
#define ATT_TRACE_TW (&tr_tw)
#else
#define ATT_TRACE_PUT() ((void)0)
#define ATT_TRACE_TW NULL
#endif
    __shared__ uint64_t pbar; /* rank 0's: the other blocks' partial rows */
    if (!LATE) mv_pdl_trigger(); /* LATE: after the staging (att_cl_kernel) */
    if (threadIdx.x == 0 && cl.block_rank() == 0) mbar_init(&pbar);
    cl_arrive_relaxed(); /* phase 1: this block has started (its shared memory may be written once phase 1 is done) */
    const vz_tgroup tg = vz_cta();
    const int hd = A.hd, f16 = A.kv_f16, esz = f16 ? 2 : 4, rsz = att_kv_row(hd, esz), pw = hd + 2;
    const int r = (int)cl.block_rank(), cs = (int)cl.num_blocks(), h = blockIdx.y, b = blockIdx.z;
    const int grp = A.n_heads / A.n_kv, kvh = h / grp, C = A.chunk;
    const int64_t kvd = (int64_t)A.n_kv * hd;
    float *qs = sm, *sc = qs + hd, *red = sc + VZ_ATT_CHUNK, *acc = red + 32, *part = acc + ATT_THREADS * ATT_VEC;
    char *kt = (char *)(part + att_cl_part(S, hd)), *vt = kt + (size_t)C * rsz;
    const att_seq Q = att_seq_of(A, b, (int)gridDim.z); /* d_pos is final here (above) */
    const int qi = Q.qi, pos0 = Q.pos0, len = Q.len, ns = (len + C - 1) / C;
    char *kc = Q.kc, *vc = Q.vc;
    if (r >= ns) { /* no chunk: out of the way at once (the rank 0 blocks wait for the QKV matvec) */
        if (ns > 1) cl_wait();
        if (ns > 1 && A.linger) cl_arrive_relaxed(), cl_wait(); /* phase 2: rank 0 has every row */
        return;
    }
    const bool store = Q.last && h % grp == 0;
    {
        const int k0 = r * C, n = min(C, len - k0), nlo = max(k0, pos0);
        att_cl_fetch(kc, vc, kt, vt, rsz, k0, min(n, nlo - k0), kvd, kvh, hd, esz);
        att_cl_stage(A, tg, h, b, kvh, kc, vc, qs, kt, vt, k0, rsz, nlo, k0 + n - nlo, pos0, qi, Q.lane, store,
                     ATT_TRACE_TW);
    }
    if (LATE) mv_pdl_trigger();
    const uint32_t po = cl_map(part, 0), pb = cl_map(&pbar, 0); /* rank 0's partial rows and barrier */
    for (int s = r; s < ns; s += cs) {
        const int k0 = s * C, n = min(C, len - k0), nlo = max(k0, pos0);
        /* att_chunk ended with a barrier after its last tile read */
        if (s != r) {
            att_cl_fetch(kc, vc, kt, vt, rsz, k0, min(n, nlo - k0), kvd, kvh, hd, esz);
            att_new_rows(A, tg, kvh, kc, vc, kt, vt, k0, rsz, nlo, k0 + n - nlo, pos0, Q.lane, store);
        }
        __pipeline_wait_prior(0);
        tg.sync(); /* tiles and qs */
        float m, l;
        att_chunk(tg, qs, sc, red, acc, att_tile{kt, vt, k0, rsz}, k0, n, hd, f16, &m, &l);
        const int G = ATT_THREADS * ATT_VEC / hd; /* a constant where hd is: att_vsum's loads unrolled */
        if (ns > 1 && s == r) cl_wait(); /* phase 1 (long done): rank 0 has started */
        for (int e = tg.tid; e < hd; e += tg.nt) {
            const float a = att_vsum(acc, G, hd, e);
            if (ns == 1) A.out[((int64_t)b * A.n_heads + h) * hd + e] = a / l; /* = the merge of one chunk */
            else if (r == 0) part[s * pw + 2 + e] = a;
            else st_async(po + 4 * (s * pw + 2 + e), a, pb);
        }
        if (ns > 1 && tg.tid == 0) {
            if (r == 0) part[s * pw] = m, part[s * pw + 1] = l;
            else st_async2(po + 4 * s * pw, m, l, pb);
        }
    }
    /* A.linger (VZ_CUDA_ATT_LINGER=1, bench): the others stay until rank 0
     * has their rows, as they did before; that made tinyllama's raw decode
     * 1.5% slower than exiting at once and moved the other codecs by at
     * most 0.4%. The same kernel without this path (ptxas gave it 40
     * registers, this one 48) ran tinyllama's lossless decode 0.3-0.5%
     * slower than before the change, this one 0.7-0.9% faster; why was not
     * traced (the results file above). */
    if (ns > 1 && r != 0 && A.linger) cl_arrive_relaxed(), cl_wait(); /* phase 2 */
    if (ns == 1 || r != 0) return ATT_TRACE_PUT(); /* rank 0's barrier counts the bytes of every st.async */
    if (tg.tid == 0) mbar_expect(&pbar, 4u * (uint32_t)pw * (uint32_t)(ns - (ns + cs - 1) / cs));
    tg.sync(); /* rank 0's own rows */
    mbar_wait0(&pbar); /* the others' rows */
    if (A.linger) cl_arrive_relaxed(); /* phase 2: the others may exit */
    const float M = att_rows_max(part, ns, pw); /* every thread: no barrier */
    float L = 0.0f, o = 0.0f;
    att_merge_rows(part, ns, pw, M, hd, tg.tid, &L, &o);
    if (tg.tid < hd) A.out[((int64_t)b * A.n_heads + h) * hd + tg.tid] = o / L;
    if (A.linger) cl_wait(); /* phase 2 (done: every block has arrived) */
    ATT_TRACE_PUT();
}
#undef ATT_TRACE_PUT
#undef ATT_TRACE_TW

/* Cluster size for S chunks and n_cl = n_heads * B clusters: the size cs
 * <= min(cap, S) with the fewest rounds, ceil(n_cl / fit) * ceil(S / cs)
 * (a block takes every cs-th chunk), ties to the larger; 0 when no size
 * fits. fit: 7/8 of the clusters that cudaOccupancyMaxActiveClusters says
 * fit at once. In the graph this kernel is placed while the QKV matvec's
 * last blocks still hold SMs, and the next kernel (PDL) launches only once
 * every block is resident, so a launch that needs every cluster slot waits
 * for the slowest SM. On an H200, llama2-7b (32 clusters, 83 KiB of shared
 * memory per block) fits 30 clusters of 8, 32 of 7 and 39 of 6 at once: its
 * raw decode ran 240.5 tok/s with 8, 240.5 with 7 (exactly full), 254.0
 * with 6 or 5; tinyllama (46 KiB) fits 62 of 8 and keeps 8
 * (bench/results/2026-11-29-session12-h200.md). The cap is 8 blocks (2 at
 * 8 sequences, below); VZ_CUDA_ATT_CLUSTER (bench, 1..16; above 8 a
 * non-portable size, which Hopper has) sets it. Clusters of 16 were slower
 * than 8 at every chunk size (tinyllama at 512-640 positions, chunk 64: 1022
 * vs 968 us per token), also when their blocks without a chunk exit. At 8
 * sequences (256 clusters for tinyllama) the cap is 2: on an H200 at
 * 512-640 positions its batched decode ran +0.6% (raw) and +1.1%
 * (lossless:k4, q8) with it, while a cap of 2 lost 3.7-12% at 2 and 4
 * sequences and 4 held level or lost (bench/results/2026-12-04-session65-
 * h200.md, run 4); which blocks take which chunks changes no bit
 * (test_attention_cluster_stories260k). The choice is kept for the last
 * (cap, S, n_cl, shared memory, kernel). */
typedef void (*att_cl_fn)(const att_args, int32_t);

/* The cluster kernel for head_dim hd and the cache type: hd 64 and 128
 * (every Llama-family shape so far) compiled with both as constants, any
 * other hd generic (*id: the kernel's index, below ATT_CL_KERNELS, which
 * att_cl_launch's per-kernel tables count). The arithmetic is the same,
 * so are the bits (test_attention_headdims: == variant 3, whose
 * kernel stays generic); what goes are runtime divisions (the copy loop's
 * row / piece split, v_pass's lanes, the chunk count), loop bounds and
 * predicates: ncu counted 20% of the generic kernel's instructions in its
 * copy loop alone, and it used 128 registers where these use 48. On an
 * H200 (bench/results/2026-11-30-session27-h200.md, run 8) tinyllama
 * lossless decode went 1205 -> 1241 tok/s, q8 1463 -> 1510, q4 1556 ->
 * 1645, raw 1274 -> 1271; llama2-7b raw 278.4 -> 279.7, lossless 277.0 ->
 * 278.8; every logit byte-identical. */
/* Each also with LATE set (ids 5-9): the PDL trigger after the staging.
 * And each with EXT set (ids 10-19), for a model with rope scaling or q/k/v
 * biases (att_args freq, bias), while the others compile both out: read at
 * run time by every launch, they cost tinyllama's decode 0.3-1.4% (raw
 * to q4) and put 8 more registers on the head_dim 128 builds (H200,
 * bench/results/2026-12-05-session72-h200.md). */
enum { ATT_CL_KERNELS = 20 };
static att_cl_fn att_cl_kernel(int hd, int f16, int late, int ext, int *id) {
#define ATT_CL_SET(L, E)                                                                                        \
    k_attention_cl<0, 0, L, E>, k_attention_cl<64, 0, L, E>, k_attention_cl<64, 1, L, E>,                        \
        k_attention_cl<128, 0, L, E>, k_attention_cl<128, 1, L, E>
    static const att_cl_fn k[ATT_CL_KERNELS] = {ATT_CL_SET(0, 0), ATT_CL_SET(1, 0), ATT_CL_SET(0, 1), ATT_CL_SET(1, 1)};
#undef ATT_CL_SET
    *id = (hd == 64 ? 1 + (f16 != 0) : hd == 128 ? 3 + (f16 != 0) : 0) + (late ? 5 : 0) + (ext ? 10 : 0);
    return k[*id];
}

static int att_cl_size(att_cl_fn kern, int id, cudaLaunchConfig_t *cfg, cudaLaunchAttribute *cl_at, int cap, int S,
                       int n_heads, int B) {
    static int memos[ATT_CL_KERNELS][6]; /* per kernel: its key (below) and size; shm 0 never matches */
    int *memo = memos[id];
    const int n_cl = n_heads * B, key[5] = {cap, S, n_cl, (int)cfg->dynamicSmemBytes, id};
    if (memcmp(memo, key, sizeof key) == 0) return memo[5];
    int best = 0;
    long bestc = 0;
    for (int cs = cap < S ? cap : S; cs >= 1; cs--) {
        cfg->gridDim = dim3(cs, n_heads, B);
        cl_at->val.clusterDim.x = cs, cl_at->val.clusterDim.y = 1, cl_at->val.clusterDim.z = 1;
        int nc = 0;
        if (cudaOccupancyMaxActiveClusters(&nc, kern, cfg) != cudaSuccess || nc < 1) {
            cudaGetLastError(); /* a size no GPC can hold */
            continue;
        }
        const int fit = nc - nc / 8; /* a round: 7/8 of what fits in an idle GPU (below) */
        const long c = (long)((n_cl + fit - 1) / fit) * ((S + cs - 1) / cs);
        if (best == 0 || c < bestc) best = cs, bestc = c;
    }
    memcpy(memo, key, sizeof key), memo[5] = best;
    return best;
}

/* The shared memory a cluster block of the kernel's shm asks for under room
 * (forward.cuh VZ_ATT_ROOM_*): a share of what an SM has at the decode step's
 * carveout (vz_decode_smem), less what the system reserves per block
 * (vz_block_resv_smem); shm where the kernel needs more, for VZ_ATT_ROOM_OWN
 * and where the driver picks the carveout. The attention's blocks go where
 * there is room at their launch, beside the QKV matvec's last blocks and (PDL)
 * Wo's first: on an H200, tinyllama's 192 working blocks (45 KiB each) sat on
 * 82-116 of the 132 SMs, up to 4 on one, and a block sharing its SM with 3
 * others took ~25% longer than one alone (traced). Padded blocks spread
 * (bench/results/2026-12-02-session47-h200.md). With 2/7 (55 KiB, 3 per SM:
 * 112 -> 115 SMs) tinyllama's q4 decode ran 1.2% faster in a sweep (a plateau
 * from 49 to 61 KiB a block; raw and lossless level) and 0.9% as committed.
 * With half less 4 KiB (93 KiB, at most 2 per SM: 82 -> 114 SMs) q8's ran 2.1%
 * (sweep) and 1.0-1.9% faster, with its late trigger (att_late_for; level
 * without); 4 KiB less gave +0.4%, and at 4 KiB more a block no longer fits
 * twice on an SM (q8 -11%). */
static size_t att_room(size_t shm, int room, int B) {
    const size_t sm = vz_decode_smem(B), resv = vz_block_resv_smem();
    if (sm == 0 || (room != VZ_ATT_ROOM_THIRD && room != VZ_ATT_ROOM_HALF)) return shm;
    const size_t want = room == VZ_ATT_ROOM_THIRD ? sm * 2 / 7 : sm / 2 - 4096;
    return want > shm + resv ? want - resv : shm;
}

/* Launches variant 0 in clusters of att_cl_size blocks. Returns the size
 * launched; 0: none (then variant 3 runs). The launch asks for the decode
 * step's carveout (vz_carveout_attr) and the cluster scheduling policy
 * "load balancing" (a runtime that refuses them gets the launch without
 * the policy, then without both): on an H200 the policy made every
 * tinyllama decode 0.8-1.8% faster (raw 1213 -> 1228 tok/s; llama2-7b
 * +0.1-0.3%), where no preference and "spread" timed the same; the bits do
 * not change (bench/results/2026-11-29-session19-h200.md). VZ_CUDA_ATT_CSP
 * (bench): 0 no preference, 1 spread, 2 load balancing. */
static uint64_t att_cl_launched[2]; /* vz_cuda_att_launches */

void vz_cuda_att_launches(uint64_t *cluster, uint64_t *padded) {
    *cluster = att_cl_launched[0], *padded = att_cl_launched[1];
}

static int att_cl_launch(const att_args &A, int S, int B, int n_heads, int late, int room, cudaStream_t st) {
    int id;
    const att_cl_fn kern = att_cl_kernel(A.hd, A.kv_f16, late, A.freq || A.bias, &id);
    static int bigs[ATT_CL_KERNELS]; /* per kernel: 0 not asked yet; sizes above 8 allowed: 1, not: 2 */
    int &big = bigs[id];
    if (!big) {
        big = cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess ? 1 : 2;
        cudaGetLastError();
    }
    const char *e = getenv("VZ_CUDA_ATT_CLUSTER");
    int cap = e && atoi(e) >= 1 && atoi(e) <= 16 ? atoi(e) : B >= 8 ? 2 : 8;
    if (cap > 8 && big != 1) cap = 8;
    const char *pe = getenv("VZ_CUDA_ATT_CSP");
    const cudaClusterSchedulingPolicy pol = pe && *pe == '0' ? cudaClusterSchedulingPolicyDefault
                                            : pe && *pe == '1' ? cudaClusterSchedulingPolicySpread
                                                               : cudaClusterSchedulingPolicyLoadBalancing;
    const int esz = A.kv_f16 ? 2 : 4;
    const size_t shm = sizeof(float) * ((size_t)A.hd + VZ_ATT_CHUNK + 32 + ATT_THREADS * ATT_VEC + att_cl_part(S, A.hd)) +
                       2 * (size_t)A.chunk * att_kv_row(A.hd, esz);
    const size_t ask = att_room(shm, room, B);
    static size_t shm_maxs[ATT_CL_KERNELS]; /* 0: not raised yet (the default, 48 KiB) */
    size_t &shm_max = shm_maxs[id]; /* raised only, so graphs captured before keep theirs */
    if (ask > (shm_max ? shm_max : 48 * 1024)) {
        if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)ask) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        shm_max = ask;
    }
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.blockDim = dim3(ATT_THREADS), cfg.dynamicSmemBytes = shm, cfg.stream = st;
    cudaLaunchAttribute at[4];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = 2;
    const int cs = att_cl_size(kern, id, &cfg, &at[0], cap, S, n_heads, B);
    cudaError_t err = cs > 0 ? cudaSuccess : cudaErrorInvalidConfiguration;
    if (cs > 0) {
        cfg.gridDim = dim3(cs, n_heads, B), cfg.dynamicSmemBytes = ask; /* cs: chosen for shm */
        at[0].val.clusterDim.x = cs, at[0].val.clusterDim.y = 1, at[0].val.clusterDim.z = 1;
        const unsigned nc = vz_carveout_attr(at, 2, B, 0); /* at[2]: the decode step's carveout, if any */
        unsigned n = nc;
        if (pol != cudaClusterSchedulingPolicyDefault) {
            at[n].id = cudaLaunchAttributeClusterSchedulingPolicyPreference;
            at[n].val.clusterSchedulingPolicyPreference = pol;
            n++;
        }
        /* every attribute; then, for a runtime that refuses one, without the
         * policy; then without the carveout too */
        const unsigned tries[3] = {n, nc, 2};
        for (int i = 0; i < 3; i++) {
            if (i > 0 && tries[i] == tries[i - 1]) continue;
            cfg.numAttrs = tries[i];
            err = cudaLaunchKernelEx(&cfg, kern, A, (int32_t)S);
            if (err == cudaSuccess) {
                att_cl_launched[0]++, att_cl_launched[1] += ask > shm;
                return cs;
            }
            cudaGetLastError();
        }
    }
    static int told;
    if (!told++)
        fprintf(stderr, "vramzip: cuda attention: no cluster of up to %d blocks (%s); merging through global memory\n", cap,
                cudaGetErrorString(err));
    return 0;
}

/* ---- attention by kv head (variant 1, opt-in: VZ_CUDA_ATT=1) ------------
 * One block per (split s, kv head g, query b) serves all grp = n_heads / n_kv
 * query heads of g, so each K/V row is read once per token and layer (the
 * per-query-head kernel above reads it grp times). The grid has S splits,
 * fixed by n_ctx at capture; keys per split come from the row's length on
 * the device (att_kv_chunk: ceil(len / S) rounded up to 8, at least the
 * `chunk` argument), so every split works at any position and a row's result
 * depends on its own length only (batched rows stay bitwise equal to a run
 * alone). The split's K and V rows are first copied into shared tiles with
 * independent 16-byte loads (one memory round trip; reading them key by key
 * from global memory serialized a round trip per key and lost to variant 0:
 * H200, tinyllama at 640 positions, 1279 vs 1185 us per token; the tiled
 * form passed memcheck/racecheck and test_batch but is not yet timed, so it
 * is not the default: bench/results/2026-11-28-decattn-h200.md); scores, one thread
 * per (head, key), use dot_row; softmax per head by one warp; the V pass as
 * v_pass over (head, 8 columns) units; the last split block of (g, b)
 * merges the partials of its grp heads in split order. */

#define ATT_KV_THREADS 256
#define ATT_KV_SPLITS 32

static __host__ __device__ __forceinline__ int att_kv_chunk(int len, int S, int cmin) {
    int c = ((len + S - 1) / S + 7) & ~7;
    cmin = (cmin + 7) & ~7; /* a multiple of 8 keeps the shared-memory rows 16-byte aligned */
    return c < cmin ? cmin : c;
}

/* Splits of the grid for a context of n_ctx keys: 32, fewer when n_ctx is
 * short (at least cmin keys each), more when it is long (at most 256 each). */
static int att_kv_splits(int32_t n_ctx, int32_t cmin) {
    int S = (n_ctx + 255) / 256;
    if (S < ATT_KV_SPLITS) S = ATT_KV_SPLITS;
    int smax = (n_ctx + cmin - 1) / cmin;
    return S < smax ? S : smax;
}

/* Shared memory of k_attention_kv: qs (grp*hd floats), sc (grp*cmax), acc
 * (max(threads, grp*hd/8) * 8), the K and V tiles (cmax rows each), merge
 * weights (grp*S), m and l per head (2*grp). */
static size_t att_kv_shm(int grp, int hd, int cmax, int S, int esz) {
    size_t units = (size_t)grp * hd / ATT_VEC;
    if (units < ATT_KV_THREADS) units = ATT_KV_THREADS;
    return sizeof(float) * ((size_t)grp * hd + (size_t)grp * cmax + units * ATT_VEC + (size_t)grp * S + 2 * (size_t)grp) +
           2 * (size_t)cmax * att_kv_row(hd, esz);
}

/* Rotated queries of kv head g (row b, the qi-th token of its sequence) into
 * qs (grp, hd); keys and values k0 .. k0+n-1 of kv head g into the tiles kt,
 * vt (row stride rsz): rows below pos0 copied from the caches (all loads
 * independent, one round trip), new rows (from nlo on; the sequence's first
 * is row0 of k, v) rotated here (through f16 when the cache is f16, so they
 * read back exactly as stored) and stored into the caches when store. */
static __device__ void att_kv_stage(const att_args &A, char *kc, char *vc, float *qs, char *kt, char *vt, int rsz,
                                    int k0, int n, int pos0, int nlo, int qi, int row0, bool store) {
    const int g = blockIdx.y, b = blockIdx.z, hd = A.hd, half = hd / 2, kvd = A.n_kv * hd;
    const int grp = A.n_heads / A.n_kv, f16 = A.kv_f16, esz = f16 ? 2 : 4, per = hd * esz / 16;
    const int nold = min(nlo, k0 + n) - k0; /* rows below pos0 (all n of an old chunk) */
    for (int idx = threadIdx.x; idx < nold * per; idx += blockDim.x) {
        const int r = idx / per, c = idx % per;
        const int64_t src = ((int64_t)(k0 + r) * kvd + (int64_t)g * hd) * esz + c * 16;
        *(uint4 *)(kt + r * rsz + c * 16) = *(const uint4 *)(kc + src);
        *(uint4 *)(vt + r * rsz + c * 16) = *(const uint4 *)(vc + src);
    }
    for (int idx = threadIdx.x; idx < grp * half; idx += blockDim.x) {
        const int hh = idx / half, i = idx % half;
        int a, bb;
        float r0, r1;
        rope_pair(A.q + ((int64_t)b * A.n_heads + g * grp + hh) * hd, att_bias_q(A, g * grp + hh), i, pos0 + qi, hd,
                  A.theta, A.freq, A.interleaved, &a, &bb, &r0, &r1);
        qs[hh * hd + a] = r0, qs[hh * hd + bb] = r1;
    }
    const int nnew = k0 + n - nlo;
    for (int idx = threadIdx.x; idx < nnew * half; idx += blockDim.x) {
        const int r = idx / half, i = idx % half, p = nlo + r, bn = row0 + p - pos0;
        const int64_t src = (int64_t)bn * kvd + (int64_t)g * hd, dst = (int64_t)p * kvd + (int64_t)g * hd;
        int a, bb;
        float r0, r1;
        rope_pair(A.k + src, att_bias_k(A, g), i, p, hd, A.theta, A.freq, A.interleaved, &a, &bb, &r0, &r1);
        const float *bv = att_bias_v(A, g);
        float v0 = with_bias(A.v[src + a], bv, a), v1 = with_bias(A.v[src + bb], bv, bb);
        char *kr = kt + (p - k0) * rsz, *vr = vt + (p - k0) * rsz;
        put_kv(kr, a, r0, f16), put_kv(kr, bb, r1, f16);
        put_kv(vr, a, v0, f16), put_kv(vr, bb, v1, f16);
        if (store) {
            put_kv(kc, dst + a, r0, f16), put_kv(kc, dst + bb, r1, f16);
            put_kv(vc, dst + a, v0, f16), put_kv(vc, dst + bb, v1, f16);
        }
    }
    __syncthreads();
}

/* Softmax of each head's n scores in place (sc rows cmax apart, one warp per
 * head): probabilities exp(s - m), and m, l (their sum) into ml[2h], ml[2h+1]. */
static __device__ void att_kv_softmax(float *sc, float *ml, int grp, int n, int cmax) {
    const int ln = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int hh = threadIdx.x >> 5; hh < grp; hh += nw) {
        float *r = sc + hh * cmax, m = -FLT_MAX, l = 0.0f;
        for (int j = ln; j < n; j += 32) m = fmaxf(m, r[j]);
        m = warp_max(m);
        for (int j = ln; j < n; j += 32) {
            float pe = expf(r[j] - m);
            r[j] = pe;
            l += pe;
        }
        l = warp_sum(l);
        if (ln == 0) ml[2 * hh] = m, ml[2 * hh + 1] = l;
    }
    __syncthreads();
}

/* acc[(gg*grp + h)*hd + e] = sum over keys j = gg, gg+G, ... of p_h[j] * vt[j][e]
 * (v_pass for grp heads: a unit is (head, ATT_VEC columns)); returns G. */
static __device__ int att_kv_vpass(float *acc, const float *sc, const char *vt, int rsz, int n, int grp, int cmax,
                                   int hd, int f16) {
    const int cols = hd / ATT_VEC, U = grp * cols, G = U < (int)blockDim.x ? (int)blockDim.x / U : 1;
    for (int w = threadIdx.x; w < U * G; w += blockDim.x) {
        const int u = w % U, gg = w / U, hh = u / cols, c = u % cols;
        const float *p = sc + hh * cmax;
        float a[ATT_VEC];
#pragma unroll
        for (int e = 0; e < ATT_VEC; e++) a[e] = 0.0f;
#pragma unroll 4
        for (int j = gg; j < n; j += G) {
            const void *row = vt + j * rsz;
            float pj = p[j];
            v_axpy(a, pj, row, c, f16);
        }
#pragma unroll
        for (int e = 0; e < ATT_VEC; e++) acc[(gg * grp + hh) * hd + c * ATT_VEC + e] = a[e];
    }
    __syncthreads();
    return G;
}

/* The last split block of (g, b): out of its grp heads from the ns partials
 * of each (pb: head hh's split s at (hh*S + s)*(hd+2)), in split order. */
static __device__ void att_kv_merge(const att_args &A, const float *pb, float *wts, float *ml, int grp, int S, int ns) {
    const int hd = A.hd, ln = threadIdx.x & 31, nw = blockDim.x >> 5, ps = hd + 2;
    for (int hh = threadIdx.x >> 5; hh < grp; hh += nw) {
        const float *ph = pb + (int64_t)hh * S * ps;
        float M = -FLT_MAX, L = 0.0f;
        for (int s = ln; s < ns; s += 32) M = fmaxf(M, __ldcg(ph + (int64_t)s * ps));
        M = warp_max(M);
        for (int s = ln; s < ns; s += 32) {
            float w = expf(__ldcg(ph + (int64_t)s * ps) - M);
            wts[hh * S + s] = w;
            L += __ldcg(ph + (int64_t)s * ps + 1) * w;
        }
        L = warp_sum(L);
        if (ln == 0) ml[2 * hh + 1] = L;
    }
    __syncthreads();
    float *out = A.out + ((int64_t)blockIdx.z * A.n_heads + (int64_t)blockIdx.y * grp) * hd;
    for (int o = threadIdx.x; o < grp * hd; o += blockDim.x) {
        const int hh = o / hd, e = o % hd;
        const float *ph = pb + (int64_t)hh * S * ps + 2 + e;
        float a = 0.0f;
#pragma unroll 8
        for (int s = 0; s < ns; s++) a += __ldcg(ph + (int64_t)s * ps) * wts[hh * S + s];
        out[o] = a / ml[2 * hh + 1];
    }
}

static __global__ void __launch_bounds__(ATT_KV_THREADS) k_attention_kv(att_args A, int32_t cmax) {
    extern __shared__ __align__(16) float sm[];
    __shared__ int last;
    vz_pdl_enter();
    const int hd = A.hd, f16 = A.kv_f16, esz = f16 ? 2 : 4, grp = A.n_heads / A.n_kv;
    const int s = blockIdx.x, g = blockIdx.y, b = blockIdx.z, S = gridDim.x;
    const att_seq Q = att_seq_of(A, b, (int)gridDim.z);
    const int qi = Q.qi, pos0 = Q.pos0, len = Q.len, C = att_kv_chunk(len, S, A.chunk), k0 = s * C;
    if (k0 >= len) return; /* whole block */
    const int n = min(C, len - k0), nlo = max(k0, pos0), ns = (len + C - 1) / C;
    const int units = max(ATT_KV_THREADS, grp * hd / ATT_VEC), rsz = att_kv_row(hd, esz);
    float *qs = sm, *sc = qs + grp * hd, *acc = sc + grp * cmax;
    char *kt = (char *)(acc + units * ATT_VEC), *vt = kt + (size_t)cmax * rsz;
    float *wts = (float *)(vt + (size_t)cmax * rsz), *ml = wts + grp * S;
    char *kc = Q.kc, *vc = Q.vc;
    att_kv_stage(A, kc, vc, qs, kt, vt, rsz, k0, n, pos0, nlo, qi, Q.lane, Q.last);
    const float rs = sqrtf((float)hd);
    for (int idx = threadIdx.x; idx < grp * n; idx += blockDim.x) {
        const int hh = idx / n, j = idx % n;
        sc[hh * cmax + j] = dot_row(qs + hh * hd, kt + j * rsz, hd, f16) / rs;
    }
    __syncthreads();
    att_kv_softmax(sc, ml, grp, n, cmax);
    const int G = att_kv_vpass(acc, sc, vt, rsz, n, grp, cmax, hd, f16);
    float *pb = A.part + ((int64_t)b * A.n_heads + (int64_t)g * grp) * S * (hd + 2);
    for (int o = threadIdx.x; o < grp * hd; o += blockDim.x) {
        const int hh = o / hd, e = o % hd;
        float a = 0.0f;
        for (int gg = 0; gg < G; gg++) a += acc[(gg * grp + hh) * hd + e];
        if (ns == 1) A.out[((int64_t)b * A.n_heads + g * grp + hh) * hd + e] = a / ml[2 * hh + 1];
        else pb[((int64_t)hh * S + s) * (hd + 2) + 2 + e] = a;
    }
    if (ns == 1) return;
    for (int hh = threadIdx.x; hh < grp; hh += blockDim.x)
        pb[((int64_t)hh * S + s) * (hd + 2)] = ml[2 * hh], pb[((int64_t)hh * S + s) * (hd + 2) + 1] = ml[2 * hh + 1];
    __threadfence();
    __syncthreads();
    int32_t *cnt = A.cnt + (int64_t)b * A.n_heads + g * grp;
    if (threadIdx.x == 0) last = atomicAdd(cnt, 1) == ns - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (threadIdx.x == 0) *cnt = 0; /* every other block of (g, b) has counted */
    att_kv_merge(A, pb, wts, ml, grp, S, ns);
}

#ifdef VZ_CUDA_TRACE
static __global__ void k_probe(vz_trace_arg tr) {
    const unsigned long long t0 = vz_gtime();
    vz_pdl_enter();
    const unsigned long long tw = vz_gtime();
    if (threadIdx.x == 0) vz_trace_put(tr, t0, tw, blockIdx.x, blockIdx.x);
}
void vz_k_probe(char after, cudaStream_t st) {
    vz_launch_pdl(k_probe, dim3(1), dim3(32), 0, st, 1, 0, vz_trace_next('p', after, 0, 0, 0));
}
#else
void vz_k_probe(char after, cudaStream_t st) { (void)after, (void)st; }
#endif

int vz_att_n_variants(void) { return 4; }
const char *vz_att_variant_name(int v) {
    static const char *names[] = {"per query head, cluster merge", "by kv head, adaptive splits",
                                  "none (timing only)", "per query head, merge through global memory"};
    return v >= 0 && v < 4 ? names[v] : NULL;
}

size_t vz_att_counters(int32_t B, int32_t n_heads) { return (size_t)B * (size_t)n_heads; }

void vz_k_attention(float *out, const float *q, const float *k, const float *v, void *kc, void *vc, float *part,
                    int32_t *cnt, const vz_att_seqs *sq, int32_t B, int32_t n_heads, int32_t n_kv, int32_t hd,
                    int32_t n_ctx, int32_t kv_f16, float theta, const float *freq, int32_t interleaved,
                    const float *bias, int32_t chunk, int32_t variant, int32_t linger, int32_t late, int32_t room,
                    cudaStream_t st) {
    if (variant == 2) return;
    if (chunk < VZ_ATT_CHUNK_MIN || chunk > VZ_ATT_CHUNK) chunk = variant == 1 ? VZ_ATT_KV_CHUNK_DEFAULT : VZ_ATT_CHUNK_DEFAULT;
    att_args A = {out, q, k, v, (char *)kc, (char *)vc, part, cnt, sq->d_pos, sq->d_slot, sq->slot_bytes, sq->multi,
                  n_heads, n_kv, hd, kv_f16, interleaved, theta, freq, bias, chunk, linger};
    const int esz = kv_f16 ? 2 : 4, S2 = att_kv_splits(n_ctx, chunk), cmax = att_kv_chunk(n_ctx, S2, chunk);
    const size_t shm2 = att_kv_shm(n_heads / n_kv, hd, cmax, S2, esz);
    if (variant == 1 && (shm2 <= 48 * 1024 || cudaFuncSetAttribute(k_attention_kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                                   (int)shm2) == cudaSuccess)) {
        vz_launch_pdl(k_attention_kv, dim3(S2, n_kv, B), dim3(ATT_KV_THREADS), shm2, st, B, 0, A, cmax);
        return;
    }
    int S = (n_ctx + chunk - 1) / chunk;
#ifdef VZ_CUDA_TRACE
    A.tr = vz_trace_next('a', n_heads, n_ctx, B, 0);
#endif
    if (variant == 0 && att_cl_launch(A, S, B, n_heads, late, room, st) > 0) return;
    const size_t shm = sizeof(float) * (size_t)vz_att_block_floats(hd, kv_f16);
    vz_launch_pdl(k_attention, dim3(S, n_heads, B), dim3(ATT_THREADS), shm, st, B, 0, A);
}

/* ---- sampling ---------------------------------------------------------- */

#define SAMPLE_THREADS 1024

static __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Largest key K with weight(keys >= K) >= target, where weight is a count
 * (w == NULL) or the sum of w over keys >= floor. 32 block-wide passes. */
static __device__ uint32_t select_key(const float *l, int32_t vocab, float inv_t, float mx, uint32_t floor_key,
                                      float target, int by_weight, float *red) {
    uint32_t K = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t c = K | (1u << bit);
        float cnt = 0.0f;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            uint32_t k = vz_fkey(l[i]);
            if (k >= c && k >= floor_key) cnt += by_weight ? expf((l[i] - mx) * inv_t) : 1.0f;
        }
        if (block_sum(vz_cta(), cnt, red) >= target) K = c;
    }
    return K;
}

/* The largest of lane's greedy keys, in every thread of the block's first
 * warp (thread t reads slot t), which zeroes them for the next step's head
 * (it runs after this grid completes). */
static __device__ __forceinline__ unsigned long long keys_take(unsigned long long *keys, int lane) {
    unsigned long long *kp = keys + ((int64_t)lane * VZ_GREEDY_SLOTS + threadIdx.x) * VZ_GREEDY_STRIDE;
    unsigned long long k = __ldcg(kp);
    *kp = 0ull;
    for (int o = 16; o > 0; o >>= 1) {
        const unsigned long long ok = __shfl_xor_sync(0xffffffffu, k, o);
        k = ok > k ? ok : k;
    }
    return k;
}

/* One block per lane (vz_k_sample). */
static __global__ void k_sample(const float *logits, unsigned long long *keys, int32_t vocab, vz_sample_lanes P,
                                int32_t *d_tok, int32_t *d_out, int32_t *d_step, int32_t *d_pos, int32_t adv,
                                int32_t out_cap, vz_trace_arg tr) {
    __shared__ float red[32];
    __shared__ float bv[32];
    __shared__ int32_t bi[32];
    __shared__ float scan[SAMPLE_THREADS];
    const unsigned long long tr_t0 = vz_trace_now();
    vz_pdl_enter();
    const unsigned long long tr_tw = vz_trace_now();
    const int lane = blockIdx.x;
    const float *l = logits + (int64_t)lane * vocab;
    const float temp = P.temp[lane], top_p = P.top_p[lane];
    const int32_t top_k = P.top_k[lane];
    const uint64_t seed = P.seed[lane];
    /* Greedy from the keys: one warp, the slots, step and position loaded
     * together (one L2 round trip, where the pick and then the step took
     * two); the other warps leave. On an H200 tinyllama decode +0.06% (raw)
     * to +0.26% (q4), the same picks (bench/results/2026-12-02-session43-
     * h200.md, run 5). */
    if (keys && !(temp > 0.0f)) {
        if (threadIdx.x >= 32) return;
        int32_t step = 0, pos = 0;
        if (threadIdx.x == 0) step = d_step[lane], pos = d_pos[lane];
        const unsigned long long k = keys_take(keys, lane);
        if (threadIdx.x == 0) {
            const int32_t tok = k ? vz_greedy_row(k) : 0;
            d_tok[lane] = tok;
            if (step < out_cap) d_out[(int64_t)lane * out_cap + step] = tok;
            d_step[lane] = step + 1;
            d_pos[lane] = pos + adv;
            vz_trace_put(tr, tr_t0, tr_tw, blockIdx.x, blockIdx.x);
        }
        return;
    }
    float best = -INFINITY;
    int32_t idx = INT32_MAX;
    if (keys) { /* the head's keys: the same pick, read from 32 slots instead of the vocab's logits */
        __shared__ unsigned long long kb;
        if (threadIdx.x < 32) {
            const unsigned long long k = keys_take(keys, lane);
            if (threadIdx.x == 0) kb = k;
        }
        __syncthreads();
        if (kb) best = vz_greedy_logit(kb), idx = vz_greedy_row(kb);
    } else if ((vocab & 3) == 0 && ((uintptr_t)l & 15) == 0) { /* ascending i per thread: strict > keeps the lowest id */
        const float4 *l4 = (const float4 *)l;
#pragma unroll 4
        for (int i = threadIdx.x; i < vocab / 4; i += blockDim.x) {
            const float4 f = l4[i];
            if (f.x > best) best = f.x, idx = 4 * i;
            if (f.y > best) best = f.y, idx = 4 * i + 1;
            if (f.z > best) best = f.z, idx = 4 * i + 2;
            if (f.w > best) best = f.w, idx = 4 * i + 3;
        }
    } else {
        for (int i = threadIdx.x; i < vocab; i += blockDim.x)
            if (l[i] > best) best = l[i], idx = i;
    }
    if (!keys) {
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
            if (ov > best || (ov == best && oi < idx)) best = ov, idx = oi;
        }
        if ((threadIdx.x & 31) == 0) bv[threadIdx.x >> 5] = best, bi[threadIdx.x >> 5] = idx;
        __syncthreads();
        best = bv[0], idx = bi[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (bv[w] > best || (bv[w] == best && bi[w] < idx)) best = bv[w], idx = bi[w];
    }
    int32_t tok = idx == INT32_MAX ? 0 : idx;
    if (temp > 0.0f && idx != INT32_MAX) {
        const float inv_t = 1.0f / temp;
        uint32_t kk = top_k > 0 && top_k < vocab ? select_key(l, vocab, inv_t, best, 0, (float)top_k, 0, red) : 0;
        if (top_p < 1.0f) {
            float z = 0.0f;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x)
                if (vz_fkey(l[i]) >= kk) z += expf((l[i] - best) * inv_t);
            z = block_sum(vz_cta(), z, red);
            uint32_t kp = select_key(l, vocab, inv_t, best, kk, top_p * z, 1, red);
            kk = kp > kk ? kp : kk;
        }
        /* candidates: keys >= kk; pick by inverse CDF in id order */
        int per = (vocab + blockDim.x - 1) / blockDim.x, i0 = threadIdx.x * per, i1 = min(vocab, i0 + per);
        float mine = 0.0f;
        for (int i = i0; i < i1; i++)
            if (vz_fkey(l[i]) >= kk) mine += expf((l[i] - best) * inv_t);
        scan[threadIdx.x] = mine;
        __syncthreads();
        if (threadIdx.x == 0) {
            float tot = 0.0f;
            for (int t = 0; t < (int)blockDim.x; t++) tot += scan[t];
            uint64_t r = splitmix64(seed ^ splitmix64((uint64_t)d_step[lane]));
            float u = (float)(r >> 40) * (1.0f / 16777216.0f) * tot, run = 0.0f;
            int t = 0;
            while (t < (int)blockDim.x - 1 && run + scan[t] <= u) run += scan[t++];
            int32_t pick = -1;
            for (int i = t * per; i < min(vocab, (t + 1) * per); i++)
                if (vz_fkey(l[i]) >= kk) {
                    pick = i;
                    run += expf((l[i] - best) * inv_t);
                    if (run > u) break;
                }
            scan[0] = __int_as_float(pick >= 0 ? pick : tok);
        }
        __syncthreads();
        tok = __float_as_int(scan[0]);
    }
    if (threadIdx.x == 0) {
        int32_t step = d_step[lane];
        d_tok[lane] = tok;
        if (step < out_cap) d_out[(int64_t)lane * out_cap + step] = tok;
        d_step[lane] = step + 1;
        d_pos[lane] += adv;
        vz_trace_put(tr, tr_t0, tr_tw, blockIdx.x, blockIdx.x);
    }
}

void vz_k_sample(const float *logits, unsigned long long *keys, int32_t lanes, int32_t vocab, const vz_sample_lanes *p,
                 int32_t *d_tok, int32_t *d_out, int32_t *d_step, int32_t *d_pos, int32_t adv, int32_t out_cap,
                 cudaStream_t st) {
    vz_launch_pdl(k_sample, dim3(lanes), dim3(SAMPLE_THREADS), 0, st, lanes, 0, logits, keys, vocab, *p, d_tok, d_out,
                  d_step, d_pos, adv, out_cap, vz_trace_next('s', lanes, vocab, 1, 0));
}

static __global__ void k_advance(int32_t *d_pos, int32_t adv) {
    mv_pdl_wait();
    *d_pos += adv;
}

void vz_k_advance(int32_t *d_pos, int32_t adv, cudaStream_t st) {
    vz_launch_pdl(k_advance, dim3(1), dim3(1), 0, st, 1, 0, d_pos, adv); /* ends a batch-1 step too: its carveout */
}
