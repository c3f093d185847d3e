/*
 * trace.cuh - a timeline of the decode step's kernels, in a diagnostic
 * build only (make CUDA_TRACE=1, i.e. nvcc -DVZ_CUDA_TRACE; in a normal
 * build nothing here is compiled into a kernel). Each warp of a v4 matvec
 * and each decode attention block with a chunk (variant 0) append one
 * record: %globaltimer at entry, after the PDL wait (the attention's too
 * before its staging of q and the new rows; until session 37 after it),
 * and at exit, with the sequence number its launch got from vz_trace_next
 * (kernel arguments, so a captured graph's launches keep theirs).
 * vz_trace_report (trace.cu) groups one replay's records by launch and
 * prints where the step's time goes (session_profile.cu,
 * VZ_CUDA_PROFILE=1). Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_TRACE_CUH
#define VZ_BACKEND_CUDA_TRACE_CUH

#include <stdint.h>
#include <stdio.h>

struct vz_trace_rec {
    unsigned long long t0, tw, te; /* entry, after the PDL wait, exit (ns) */
    uint32_t seq, who;             /* launch; block << 8 | warp */
};

struct vz_trace_arg {
    vz_trace_rec *rec; /* NULL: not tracing */
    unsigned *n, cap;
    int seq;
};

/* Host. The next launch's argument, with what it is for the report: kind
 * 'm' (matvec of ntens tensors of rows x cols, epilogue epi), 'a'
 * (attention) or 'p' (vz_k_probe after the launch named by the letter
 * rows). vz_trace_start allocates room for cap records and turns
 * tracing on (0: done); vz_trace_reset forgets the records (before the
 * replay to report); vz_trace_stop frees. */
vz_trace_arg vz_trace_next(char kind, long long rows, long long cols, int ntens, int epi);
int vz_trace_start(unsigned cap);
void vz_trace_reset(void);
void vz_trace_report(FILE *f);
void vz_trace_stop(void);

#ifdef VZ_CUDA_TRACE
static __device__ __forceinline__ unsigned long long vz_gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __device__ __forceinline__ void vz_trace_put(const vz_trace_arg &a, unsigned long long t0, unsigned long long tw,
                                                    uint32_t who) {
    if (!a.rec) return;
    const unsigned long long te = vz_gtime();
    const unsigned i = atomicAdd(a.n, 1u);
    if (i < a.cap) a.rec[i] = vz_trace_rec{t0, tw, te, (uint32_t)a.seq, who};
}
#endif

#endif
