/*
 * bench_util.cuh - what the CUDA bench programs (matvec_bench.cu, handoff_bench.cu,
 * prefill_bench.cu) share: exit-on-error checks for CUDA and vz_status
 * calls (benches are programs, not library code), a deterministic uniform
 * generator for synthetic weights, and a float comparator for medians.
 */
#ifndef VZ_BENCH_UTIL_CUH
#define VZ_BENCH_UTIL_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define VK(x)                                                                                      \
    do {                                                                                           \
        vz_status s_ = (x);                                                                        \
        if (s_ != VZ_OK) {                                                                         \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, vz_last_error());            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift64: uniform in (0, 1), the same sequence on every run. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((rng >> 11) + 0.5) / 9007199254740992.0;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

#endif
