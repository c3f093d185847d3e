/*
 * handoff_bench.cu - times the hand-off between two dependent kernels, the
 * ~0.5-1 us that each of the decode step's launches waits between its
 * predecessor's last exit and its own wait's return (the trace build's
 * "handoff", src/backend/cuda/trace.cuh). A chain of launches of one kernel,
 * each launched early by programmatic dependent launch, waits for its
 * predecessor either by griddepcontrol.wait (the decode step's way) or by a
 * counter that every predecessor block adds to with release semantics,
 * polled with acquire loads (the flag hand-off a persistent kernel would
 * use); rows add loads in flight before the wait (as the matvecs' rings
 * have), issued at once or late in the predecessor's run, clusters, or one
 * block of 24 warps per SM (as raw's short matvecs run). Each block checks
 * that one of its predecessor's writes is visible ("stale reads" otherwise).
 * Usage: handoff_bench [blocks [MiB...]] (default 264 blocks, 16 and 64 MiB
 * streamed per launch). Prints a markdown table; %globaltimer's step (printed
 * first) was 32 or 256 ns on the H200s tried, so the columns are means over
 * 190 launches (bench/results/2026-12-02-session50-h200.md).
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cuda/matvec.cuh" /* mv_pdl_trigger, mv_pdl_wait: the decode step's own */
#include "bench_util.cuh"

#define HB_THREADS 256 /* per block; HB_WIDE: one block of 24 warps per SM, as raw's QKV and Wo run */
#define HB_WIDE 768
#define HB_ITERS 200
#define HB_SKIP 10 /* launches left out of the means (warm-up) */
#define HB_PRE_MAX 8 /* float4 per thread loaded before the wait (registers for 4 blocks per SM) */

enum { HB_PDL, HB_POLL };

typedef struct {
    uint32_t *cnt; /* blocks of every launch so far that have signalled */
    uint32_t target; /* the count once the predecessor's blocks have all signalled */
    int32_t *data; /* [blocks]: the launch index each block last wrote; [blocks]: a sink */
    int32_t *stale; /* [2]: blocks of launch 1, and of later launches, that saw a predecessor's write missing */
    uint64_t *t_exit, *t_wait; /* [blocks] stamps of this launch */
    const float4 *big;
    size_t nbig; /* float4 in big */
    int it, wait, sleep_ns, pre, pre_delay_ns;
} hb_args;

static __device__ __forceinline__ uint64_t hb_time(void) {
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __device__ __forceinline__ uint32_t hb_ld_acquire(const uint32_t *p) {
    uint32_t v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* One launch of the chain: loads a.pre float4 per thread, waits for its
 * predecessor, checks one of its writes, streams a ragged share of big
 * (blocks read 1/3, 2/3 or all of their share), writes its own launch
 * index, stamps its exit and, when polled, signals. */
template <int T, int PRE_MAX>
static __global__ void __launch_bounds__(T, T == HB_THREADS ? 4 : 2) hb_kernel(hb_args a) {
    mv_pdl_trigger();
    float4 pv[PRE_MAX > 0 ? PRE_MAX : 1];
    if (a.pre_delay_ns) { /* the loads go out this long after the block's entry: late in its predecessor's run */
        const uint64_t t = hb_time() + (uint64_t)a.pre_delay_ns;
        while (hb_time() < t) __nanosleep(64);
    }
    const size_t span = (size_t)HB_THREADS * HB_PRE_MAX; /* a block's pre-wait loads: rotate over 4 launches' worth */
    static_assert(PRE_MAX == 0 || T == HB_THREADS, "pre-wait loads: 256-thread blocks only");
    const float4 *pb = a.big + ((size_t)(a.it % 4) * gridDim.x + blockIdx.x) * span % (a.nbig - span) + threadIdx.x;
#pragma unroll
    for (int i = 0; i < PRE_MAX; i++)
        if (i < a.pre) pv[i] = __ldcs(pb + i * HB_THREADS);
    if (a.it > 0) {
        if (a.wait == HB_PDL) mv_pdl_wait();
        else {
            if (threadIdx.x == 0)
                while (hb_ld_acquire(a.cnt) < a.target)
                    if (a.sleep_ns) __nanosleep(a.sleep_ns);
            __syncthreads();
        }
    }
    if (threadIdx.x == 0) a.t_wait[blockIdx.x] = hb_time();
    if (a.it > 0 && threadIdx.x == 0) { /* it - 1, or it where that block of this launch has already written */
        const int32_t v = ((volatile int32_t *)a.data)[(blockIdx.x * 7 + 3) % gridDim.x];
        if (v != a.it - 1 && v != a.it) atomicAdd(a.stale + (a.it > 1), 1);
    }
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < PRE_MAX; i++)
        if (i < a.pre) acc += (pv[i].x + pv[i].y) + (pv[i].z + pv[i].w);
    const size_t per = a.nbig / gridDim.x, n = per * (1 + blockIdx.x % 3) / 3;
    const float4 *b = a.big + per * blockIdx.x;
    for (size_t i = threadIdx.x; i < n; i += T) acc += b[i].x + b[i].w;
    if (acc == 1.0f) a.data[gridDim.x] = 1; /* never (big is zero); keeps the loads */
    __syncthreads();
    if (threadIdx.x == 0) a.data[blockIdx.x] = a.it, a.t_exit[blockIdx.x] = hb_time();
    if (a.wait == HB_POLL) {
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(a.cnt) : "memory");
        }
    }
}

/* The smallest step of %globaltimer seen by one thread over 20000 reads, and the span they took
 * (ns): the resolution of every stamp here. */
static __global__ void hb_tick(uint64_t *out) {
    uint64_t prev = hb_time(), t0 = prev, step = UINT64_MAX;
    for (int i = 0; i < 20000; i++) {
        const uint64_t t = hb_time();
        if (t != prev && t - prev < step) step = t - prev;
        prev = t;
    }
    out[0] = step, out[1] = prev - t0;
}

typedef struct {
    const char *name;
    int wait, sleep_ns, cluster, pre, pdl0; /* pdl0: launch 0, right after memsets, with the PDL attribute too */
    int pre_delay_ns; /* the pre-wait loads this long after the block's entry */
    int wide; /* blocks of HB_WIDE threads, one per SM (the blocks argument is ignored) */
} hb_mode;

static const hb_mode modes[] = {
    {"PDL wait", HB_PDL, 0, 1, 0, 0, 0, 0},
    {"PDL wait, launch 0 after the memsets with PDL too", HB_PDL, 0, 1, 0, 1, 0, 0},
    {"counter, acquire poll", HB_POLL, 0, 1, 0, 0, 0, 0},
    {"counter, poll + nanosleep 32", HB_POLL, 32, 1, 0, 0, 0, 0},
    {"counter, poll + nanosleep 100", HB_POLL, 100, 1, 0, 0, 0, 0},
    {"PDL wait, one block of 24 warps per SM", HB_PDL, 0, 1, 0, 0, 0, 1},
    {"counter + nanosleep 32, one block of 24 warps per SM", HB_POLL, 32, 1, 0, 0, 0, 1},
    {"PDL wait, clusters of 2", HB_PDL, 0, 2, 0, 0, 0, 0},
    {"PDL wait, clusters of 8", HB_PDL, 0, 8, 0, 0, 0, 0},
    {"PDL wait, 8 KiB loaded per block before it", HB_PDL, 0, 1, 2, 0, 0, 0},
    {"PDL wait, 16 KiB loaded per block before it", HB_PDL, 0, 1, 4, 0, 0, 0},
    {"PDL wait, 32 KiB loaded per block before it", HB_PDL, 0, 1, 8, 0, 0, 0},
    {"counter + nanosleep 32, 32 KiB before it", HB_POLL, 32, 1, 8, 0, 0, 0},
    {"PDL wait, 32 KiB loaded 1.5 us after entry", HB_PDL, 0, 1, 8, 0, 1500, 0},
    {"PDL wait, 32 KiB loaded 2.5 us after entry", HB_PDL, 0, 1, 8, 0, 2500, 0},
    {"PDL wait, 32 KiB loaded 8 us after entry", HB_PDL, 0, 1, 8, 0, 8000, 0},
};

static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double mean(const double *v, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += v[i];
    return s / n;
}

/* One row: HB_ITERS launches of mode m in one stream, stamps copied back. */
static void run_mode(const hb_mode *m, int blocks, int sms, size_t nbig, const float4 *big, uint32_t *cnt, int32_t *data,
                     int32_t *stale, uint64_t *t_exit, uint64_t *t_wait, cudaStream_t st, bool print) {
    if (m->wide) blocks = sms;
    CK(cudaMemsetAsync(cnt, 0, 4, st)); /* in the launches' stream: a non-blocking one does not wait for stream 0 */
    CK(cudaMemsetAsync(stale, 0, 8, st));
    CK(cudaMemsetAsync(data, 0xff, (size_t)(blocks + 1) * 4, st));
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    at[1].id = cudaLaunchAttributeClusterDimension;
    at[1].val.clusterDim.x = (unsigned)m->cluster, at[1].val.clusterDim.y = 1, at[1].val.clusterDim.z = 1;
    cudaLaunchConfig_t cf = {};
    cf.gridDim = dim3((unsigned)blocks), cf.blockDim = dim3(m->wide ? HB_WIDE : HB_THREADS), cf.stream = st;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, st));
    for (int it = 0; it < HB_ITERS; it++) {
        hb_args a = {cnt,       (uint32_t)(it * blocks), data, stale, t_exit + (size_t)it * blocks,
                     t_wait + (size_t)it * blocks, big, nbig, it, m->wait, m->sleep_ns, m->pre, m->pre_delay_ns};
        const int pdl = it > 0 || m->pdl0; /* launch 0 follows the memsets */
        cf.attrs = pdl ? at : at + 1, cf.numAttrs = pdl + (m->cluster > 1);
        if (m->wide) CK(cudaLaunchKernelEx(&cf, hb_kernel<HB_WIDE, 0>, a));
        else CK(cudaLaunchKernelEx(&cf, hb_kernel<HB_THREADS, HB_PRE_MAX>, a));
    }
    CK(cudaEventRecord(e1, st));
    CK(cudaStreamSynchronize(st));
    float ms = 0.0f;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    const size_t n = (size_t)HB_ITERS * blocks;
    uint64_t *hx = (uint64_t *)malloc(n * 8), *hw = (uint64_t *)malloc(n * 8);
    int32_t hs[2] = {0, 0};
    if (!hx || !hw) fprintf(stderr, "handoff_bench: out of host memory\n"), exit(1);
    CK(cudaMemcpy(hx, t_exit, n * 8, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hw, t_wait, n * 8, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hs, stale, 8, cudaMemcpyDeviceToHost));
    double first[HB_ITERS], last[HB_ITERS], work[HB_ITERS];
    int k = 0;
    for (int it = HB_SKIP; it < HB_ITERS; it++, k++) {
        uint64_t pe = 0, ee = 0, w0 = UINT64_MAX, w1 = 0;
        for (int b = 0; b < blocks; b++) {
            const uint64_t x0 = hx[(size_t)(it - 1) * blocks + b], x1 = hx[(size_t)it * blocks + b],
                           w = hw[(size_t)it * blocks + b];
            pe = x0 > pe ? x0 : pe, ee = x1 > ee ? x1 : ee;
            w0 = w < w0 ? w : w0, w1 = w > w1 ? w : w1;
        }
        first[k] = ((double)w0 - (double)pe) / 1e3, last[k] = ((double)w1 - (double)pe) / 1e3;
        work[k] = ((double)ee - (double)w0) / 1e3;
    }
    if (print)
        printf("| %s | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %d / %d |\n", m->name, blocks,
               (double)nbig * 16 / 1048576.0, ms * 1e3 / HB_ITERS, mean(first, k), mean(last, k), mean(work, k), hs[0],
               hs[1]);
    free(hx), free(hw);
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

int main(int argc, char **argv) {
    const int blocks = argc > 1 ? atoi(argv[1]) : 264;
    if (blocks < 8 || blocks % 8 || blocks > 65536) {
        fprintf(stderr, "handoff_bench: blocks must be a multiple of 8 in [8, 65536] (clusters of 8), got %s\n", argv[1]);
        return 1;
    }
    double mib[8] = {16, 64};
    int nm = 2;
    if (argc > 2) {
        nm = argc - 2 < 8 ? argc - 2 : 8;
        for (int i = 0; i < nm; i++) mib[i] = atof(argv[2 + i]);
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    uint64_t *tick, ht[2];
    CK(cudaMalloc(&tick, 16));
    hb_tick<<<1, 1>>>(tick);
    CK(cudaMemcpy(ht, tick, 16, cudaMemcpyDeviceToHost));
    printf("device: %s, %d SMs; %d launches per row, the first %d left out of the means; %%globaltimer steps by "
           "%llu ns here (20000 reads in %llu ns)\n\n",
           prop.name, prop.multiProcessorCount, HB_ITERS, HB_SKIP, (unsigned long long)ht[0], (unsigned long long)ht[1]);
    printf("| wait | blocks | MiB read per launch | launch to launch (us) | hand-off, first block (us) | "
           "hand-off, last block (us) | work (us) | stale reads (launch 1 / later) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    uint32_t *cnt;
    int32_t *data, *stale;
    uint64_t *t_exit, *t_wait;
    CK(cudaMalloc(&cnt, 4));
    const int nmax = blocks > prop.multiProcessorCount ? blocks : prop.multiProcessorCount; /* the wide rows: one per SM */
    CK(cudaMalloc(&data, (size_t)(nmax + 1) * 4));
    CK(cudaMalloc(&stale, 8));
    CK(cudaMalloc(&t_exit, (size_t)HB_ITERS * nmax * 8));
    CK(cudaMalloc(&t_wait, (size_t)HB_ITERS * nmax * 8));
    for (int i = 0; i < nm; i++) {
        const size_t nbig = (size_t)(mib[i] * 1048576.0 / 16);
        if (nbig < (size_t)blocks * 3 || nbig <= (size_t)HB_THREADS * HB_PRE_MAX) {
            fprintf(stderr, "handoff_bench: %g MiB is too small for %d blocks\n", mib[i], blocks);
            return 1;
        }
        float4 *big;
        CK(cudaMalloc(&big, nbig * 16));
        CK(cudaMemsetAsync(big, 0, nbig * 16, st));
        /* the first row, unprinted, for half a second: on a fresh machine the first rows once ran
         * with hand-offs of ~2 us, the same kernel 0.65 us a minute later */
        for (const double t0 = wall_s(); wall_s() - t0 < 0.5;)
            run_mode(&modes[0], blocks, prop.multiProcessorCount, nbig, big, cnt, data, stale, t_exit, t_wait, st, false);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
            run_mode(&modes[m], blocks, prop.multiProcessorCount, nbig, big, cnt, data, stale, t_exit, t_wait, st, true);
        CK(cudaFree(big));
    }
    return 0;
}
