/*
 * session_device.c - the public session calls that differ by device:
 * vz_session_generate (a token loop: on the GPU it runs inside CUDA graphs
 * with on-device sampling, on the CPU it is eval + vz_sampler per token),
 * vz_session_mem_info (VRAM accounting of a CUDA session) and
 * vz_session_prefill_gemm_ref (bench: plain cuBLAS on the prefill's
 * matrices), and vz_device_get_info (for the CPU: its name, memory and
 * read bandwidth). Owner: fw; the session itself is session.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/session.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

vz_status vz_session_mem_info(vz_session *s, vz_session_mem *out) {
    VZ_FAIL_IF(!s || !out, VZ_ERR_ARG, "vz_session_mem_info: NULL argument");
    memset(out, 0, sizeof *out);
#ifdef VZ_HAVE_CUDA
    if (s->cuda) return vz_cuda_session_mem(s->cuda, out);
#endif
    return VZ_OK;
}

vz_status vz_session_prefill_gemm_ref(vz_session *s, int32_t n, double *seconds) {
    VZ_FAIL_IF(!s || !seconds || n < 1, VZ_ERR_ARG, "vz_session_prefill_gemm_ref: bad arguments");
    *seconds = 0.0;
#ifdef VZ_HAVE_CUDA
    if (s->cuda) return vz_cuda_session_prefill_ref(s->cuda, n, seconds);
#endif
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "prefill reference: a CUDA session only");
}

static vz_status generate_cpu(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
    const int32_t vocab = s->m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    vz_sampler *smp = NULL;
    vz_status st = logits ? vz_sampler_create(&smp, vocab, so) : VZ_FAIL(VZ_ERR_NOMEM, "generate: logits");
    int32_t tok = first;
    for (int32_t i = 0; st == VZ_OK && i < n; i++) {
        st = vz_session_eval_seq(s, s->cur, &tok, 1, logits, 0);
        if (st == VZ_OK) tok = out[i] = vz_sampler_sample(smp, logits);
    }
    vz_sampler_free(smp);
    free(logits);
    return st;
}

vz_status vz_session_generate(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !so || (n > 0 && !out) || n < 0, VZ_ERR_ARG, "vz_session_generate: bad arguments");
    VZ_FAIL_IF(first < 0 || first >= s->m->cfg.vocab_size, VZ_ERR_ARG, "generate: token %d outside vocab %d",
               (int)first, (int)s->m->cfg.vocab_size);
    VZ_FAIL_IF(n > s->n_ctx - vz_session_seq_pos(s, 0), VZ_ERR_CONTEXT,
               "context full: %d tokens at position %d do not fit in n_ctx %d", (int)n,
               (int)vz_session_seq_pos(s, 0), (int)s->n_ctx);
    vz_session_select(s, 0);
    return vz_session_generate_cur(s, first, n, so, out);
}

vz_status vz_session_generate_cur(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
#ifdef VZ_HAVE_CUDA
    if (s->cuda) {
        VZ_TRY(vz_cuda_session_generate(s->cuda, s->cur, first, s->pos, n, so, out));
        s->pos += n;
        return VZ_OK;
    }
#endif
    return generate_cpu(s, first, n, so, out);
}

/* Host memory read bandwidth, GB/s: the best of 3 passes of all OpenMP
 * threads summing a 1 GiB buffer (256 MiB if that is not to be had), far
 * beyond the caches; 0 when not even that can be allocated. Token
 * generation reads every weight once, so this is the CPU's roofline. */
static uint64_t read_sink; /* the sums go here (atomically), so the reads are not optimised away */

static double host_read_gbs(void) {
    typedef uint64_t u64x2 __attribute__((vector_size(16))); /* baseline x86-64 width: four sums in flight */
    size_t bytes = (size_t)1 << 30;
    u64x2 *buf = malloc(bytes);
    if (!buf) buf = malloc(bytes >>= 2);
    if (!buf) return 0.0;
    const int64_t n = (int64_t)(bytes / sizeof *buf) / 4;
#pragma omp parallel for schedule(static) /* first touch by the threads that read it */
    for (int64_t i = 0; i < 4 * n; i++) buf[i] = (u64x2){0} + (uint64_t)i;
    double best = 0.0;
    for (int pass = 0; pass < 3; pass++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
        {
            u64x2 a = {0}, b = {0}, c = {0}, d = {0};
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++) {
                a += buf[4 * i], b += buf[4 * i + 1], c += buf[4 * i + 2], d += buf[4 * i + 3];
            }
            u64x2 e = a + b + c + d;
            total += e[0] + e[1];
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (dt > 0 && (double)bytes / dt / 1e9 > best) best = (double)bytes / dt / 1e9;
        __atomic_fetch_add(&read_sink, total, __ATOMIC_RELAXED);
    }
    free(buf);
    return best;
}

/* The CPU as a device: its model name (/proc/cpuinfo) and thread count,
 * physical memory, and with measure_bw the read bandwidth in copy_gbs. */
static void cpu_probe(int32_t measure_bw, vz_device_info *out) {
    char model[96] = "cpu", line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !c) continue;
        c += 1 + strspn(c + 1, " \t");
        c[strcspn(c, "\n")] = 0;
        if (*c) snprintf(model, sizeof model, "%s", c);
        break;
    }
    if (f) fclose(f);
    snprintf(out->name, sizeof out->name, "%s (%d threads)", model, omp_get_max_threads());
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    out->total_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    if (measure_bw) out->copy_gbs = host_read_gbs();
}

vz_status vz_device_get_info(vz_device dev, int32_t measure_bw, vz_device_info *out) {
    VZ_FAIL_IF(!out, VZ_ERR_ARG, "vz_device_get_info: NULL argument");
    memset(out, 0, sizeof *out);
    if (dev == VZ_DEVICE_CPU) {
        cpu_probe(measure_bw, out);
        return VZ_OK;
    }
    VZ_FAIL_IF(dev != VZ_DEVICE_CUDA, VZ_ERR_ARG, "device %d is unknown", (int)dev);
#ifdef VZ_HAVE_CUDA
    return vz_cuda_device_probe(measure_bw, out);
#else
    (void)measure_bw;
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "device cuda: built without CUDA backend");
#endif
}
