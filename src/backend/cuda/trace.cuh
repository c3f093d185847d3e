/*
 * trace.cuh - a timeline of the decode step's kernels, in a diagnostic
 * build only (make CUDA_TRACE=1, i.e. nvcc -DVZ_CUDA_TRACE; in a normal
 * build nothing here is compiled into a kernel). Each warp of a v4 matvec
 * or of the embedding lookup, each decode attention block with a chunk
 * (variant 0) and each sampler block append one record: %globaltimer at
 * entry, after the PDL wait (the attention's before its staging of q and
 * the new rows), after the staging of x (v4 matvec) and at exit, and its
 * SM, with the sequence number its launch got from
 * vz_trace_next (kernel arguments, so a captured graph's launches keep
 * theirs). Each record has its own slot, VZ_TRACE_SLOTS per launch. Until
 * session 38 a warp took its slot by an atomicAdd on one counter after its
 * exit stamp; the next launch's wait then returned 1.4-3.4 us after the
 * last stamp of a launch of ~3000 warps (QKV, Wo, down), 0.5-1.0 us with
 * the slots (bench/results/2026-12-01-session38-h200.md, run 1): the
 * atomics, not the kernels, made those hand-offs look long.
 * vz_trace_report (trace.cu) groups one replay's records by launch and
 * prints where the step's time goes (session_profile.cu,
 * VZ_CUDA_PROFILE=1); it also writes every record for a closer look
 * (VZ_CUDA_TRACE_DUMP). Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_TRACE_CUH
#define VZ_BACKEND_CUDA_TRACE_CUH

#include <stdint.h>
#include <stdio.h>

struct vz_trace_rec {
    unsigned long long t0, tw, tx, te; /* entry, after the PDL wait, after the input's staging (else tw), exit (ns) */
    uint32_t seq, who, sm;             /* launch; block << 8 | warp; the SM it ran on */
};

struct vz_trace_arg {
    vz_trace_rec *rec; /* NULL: not tracing */
    unsigned cap;      /* records at rec; launch seq's slot i is record seq * VZ_TRACE_SLOTS + i */
    int seq;
};

#define VZ_TRACE_SLOTS 4096 /* records per launch: its warps (matvec, lookup) or blocks (attention, sampler) */

/* Host. The next launch's argument, with what it is for the report: kind
 * 'm' (matvec of ntens tensors of rows x cols, epilogue epi), 'a'
 * (attention), 's' (the sampler), 'e' (the embedding lookup) or 'p'
 * (vz_k_probe after the launch named by the letter rows); outside trace
 * builds none (rec NULL). vz_trace_start allocates room for cap records
 * (cap / VZ_TRACE_SLOTS launches) and turns tracing on (0: done);
 * vz_trace_reset forgets the records (before the replay to report);
 * vz_trace_report fetches them once, prints the report to f and, when dump
 * is not NULL, writes them there atomically, one line each (0: done);
 * vz_trace_stop frees. */
#ifdef VZ_CUDA_TRACE
vz_trace_arg vz_trace_next(char kind, long long rows, long long cols, int ntens, int epi);
#else
static inline vz_trace_arg vz_trace_next(char, long long, long long, int, int) { return vz_trace_arg{NULL, 0, 0}; }
#endif
int vz_trace_start(unsigned cap);
void vz_trace_reset(void);
int vz_trace_report(FILE *f, const char *dump);
void vz_trace_stop(void);

#ifdef VZ_CUDA_TRACE
static __device__ __forceinline__ unsigned long long vz_gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* The record of slot (0 .. VZ_TRACE_SLOTS - 1, distinct within a launch;
 * others are dropped) with the exit stamp now; tx: after the staging of
 * the input (0: none, tw). */
static __device__ __forceinline__ void vz_trace_put(const vz_trace_arg &a, unsigned long long t0, unsigned long long tw,
                                                    uint32_t who, unsigned slot, unsigned long long tx = 0) {
    if (!a.rec) return;
    const unsigned long long te = vz_gtime();
    uint32_t sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    const size_t i = (size_t)a.seq * VZ_TRACE_SLOTS + slot;
    if (slot < VZ_TRACE_SLOTS && i < a.cap) a.rec[i] = vz_trace_rec{t0, tw, tx ? tx : tw, te, (uint32_t)a.seq, who, sm};
}
#endif

/* A stamp for a later vz_trace_put: the time in trace builds; in other
 * builds 0, and vz_trace_put does nothing (so a kernel needs no #ifdef). */
static __device__ __forceinline__ unsigned long long vz_trace_now() {
#ifdef VZ_CUDA_TRACE
    return vz_gtime();
#else
    return 0;
#endif
}
#ifndef VZ_CUDA_TRACE
static __device__ __forceinline__ void vz_trace_put(const vz_trace_arg &, unsigned long long, unsigned long long,
                                                    uint32_t, unsigned, unsigned long long = 0) {}
#endif

#endif
