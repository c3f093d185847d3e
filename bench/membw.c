/*
 * membw.c - a rough memory bandwidth estimate (GB/s) for judging CPU decode
 * speed: token generation reads every weight byte once, so
 * tok/s <= bandwidth / weight_bytes. Times a read-only sum and memcpy over a
 * buffer far larger than the caches, best of several runs, 1 and N threads.
 *   cc -O2 -fopenmp bench/membw.c -o membw && ./membw [MiB]
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sums the buffer as 64-bit integers (cheap enough to stay memory bound)
 * with nt threads; returns seconds. */
static double read_pass(const uint64_t *w, size_t n, int nt, uint64_t *sink) {
    double t0 = now();
    uint64_t total = 0;
#pragma omp parallel for reduction(+ : total) num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) total += w[i];
    *sink += total;
    return now() - t0;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 512;
    if (mib < 64) mib = 64;
    size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
    uint64_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) return fprintf(stderr, "membw: cannot allocate 2 x %zu MiB\n", mib), 1;
    for (size_t i = 0; i < n; i++) a[i] = i, b[i] = 0;
    uint64_t sink = 0;
    int maxt = omp_get_max_threads();
    for (int nt = 1; nt <= maxt; nt = nt == maxt ? maxt + 1 : (nt * 2 > maxt ? maxt : nt * 2)) {
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t = read_pass(a, n, nt, &sink);
            if (t < best) best = t;
        }
        printf("read   %2d thread(s): %6.2f GB/s\n", nt, (double)n * sizeof *a / best / 1e9);
    }
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        memcpy(b, a, n * sizeof *a);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("memcpy  1 thread:    %6.2f GB/s (read + write)\n", 2.0 * (double)n * sizeof *a / best / 1e9);
    printf("(checksum %llu)\n", (unsigned long long)(sink + b[n / 2]));
    free(a);
    free(b);
    return 0;
}
