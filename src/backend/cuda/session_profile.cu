/*
 * session_profile.cu - VZ_CUDA_PROFILE=1 (vramzip bench): times one decode
 * step op by op (eager, an event after each op), the captured graphs, and
 * the graph under each matvec variant and attention chunk size (all give
 * the same bits; attention variant 2 skips attention), printed to stderr.
 * Nothing here runs in normal use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/session_cuda.h"
#include "backend/cuda/trace.cuh"

/* Destroys every captured graph (they are re-captured on next use). */
static void drop_graphs(vz_cuda_session *s) {
    cudaStreamSynchronize(s->st);
    for (int b = 0; b <= VZ_CUDA_MAX_BATCH; b++)
        if (s->graph[b]) {
            cudaGraphExecDestroy(s->graph[b]);
            s->graph[b] = NULL;
        }
}

/* Sets the step's position to pos on s->st: a plain cudaMemcpy from
 * pageable memory runs on the legacy stream and may return before its DMA
 * lands, and s->st (non-blocking) would not wait for it. */
static void put_pos(vz_cuda_session *s, int32_t pos) {
    cudaMemcpyAsync(s->pos, &pos, sizeof pos, cudaMemcpyHostToDevice, s->st);
}

/* us/token of the DECODE_STEPS graph, re-captured, 4 launches back to back
 * after 4 of warm-up (-1 when capture fails). */
static float time_decode_graph(vz_cuda_session *s, int32_t pos) {
    drop_graphs(s);
    cudaGraphExec_t g;
    if (vz_cs_get_graph(s, 0, &g) != VZ_OK) return -1.0f;
    float ms = 0.0f;
    for (int rep = 0; rep < 2; rep++) { /* first pass: warm-up */
        put_pos(s, pos);
        cudaEventRecord(s->prof.ev[0], s->st);
        for (int i = 0; i < 4; i++) cudaGraphLaunch(g, s->st);
        cudaEventRecord(s->prof.ev[1], s->st);
        cudaStreamSynchronize(s->st);
    }
    cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
    return 1e3f * ms / (4 * DECODE_STEPS);
}

/* The DECODE_STEPS graph back to back with the kernel chain, then under
 * each matvec variant (cuda.h; all bitwise equal) and each attention chunk
 * size; restores all. */
static void profile_mv_variants(vz_cuda_session *s, int32_t pos) {
    fprintf(stderr, "profile (graph of %d steps, kernel chain): %.1f us/token\n", DECODE_STEPS,
            time_decode_graph(s, pos));
    static const int vars[] = {VZ_CUDA_MV_LEGACY | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_LEGACY, VZ_CUDA_MV_NO_PDL, 0,
                               VZ_CUDA_MV_OCC4, VZ_CUDA_MV_V4 | VZ_CUDA_MV_NO_PDL, VZ_CUDA_MV_V4,
                               VZ_CUDA_MV_V4 | VZ_CUDA_MV_OCC_ALT};
    static const char *names[] = {"legacy", "legacy+pdl", "v2", "v2+pdl", "v2+pdl+occ4", "v4", "v4+pdl",
                                  "v4+pdl, other occupancy"};
    const int old = vz_cuda_matvec_variant(-1);
    for (int v = 0; v < (int)(sizeof vars / sizeof vars[0]); v++) {
        vz_cuda_matvec_variant(vars[v]);
        float us = time_decode_graph(s, pos);
        fprintf(stderr, "profile (graph of %d steps, matvec %s%s): %.1f us/token\n", DECODE_STEPS, names[v],
                vars[v] == old ? ", default" : "", us);
    }
    vz_cuda_matvec_variant(old);
    const int32_t chunk0 = s->att_chunk, var0 = s->att_variant;
    for (int v = 0; v < vz_att_n_variants(); v++)
        for (int32_t c = VZ_ATT_CHUNK_MIN; c <= VZ_ATT_CHUNK; c *= 2) {
            s->att_variant = v, s->att_chunk = c;
            fprintf(stderr, "profile (graph of %d steps, attention %s, chunk %d): %.1f us/token\n", DECODE_STEPS,
                    vz_att_variant_name(v), (int)c, time_decode_graph(s, pos));
        }
    s->att_chunk = chunk0, s->att_variant = var0;
    drop_graphs(s);
}

#ifdef VZ_CUDA_TRACE
/* The DECODE_STEPS graph re-captured with tracing on (trace.cuh): two
 * replays of warm-up, then one whose records are reported. */
static void trace_decode_graph(vz_cuda_session *s, int32_t pos) {
    if (vz_trace_start(1u << 23) != 0) {
        fprintf(stderr, "trace: no device memory\n");
        return;
    }
    drop_graphs(s);
    cudaGraphExec_t g;
    if (vz_cs_get_graph(s, 0, &g) == VZ_OK) {
        for (int rep = 0; rep < 3; rep++) {
            if (rep == 2) vz_trace_reset();
            put_pos(s, pos);
            cudaGraphLaunch(g, s->st);
            cudaStreamSynchronize(s->st);
        }
        const char *dump = getenv("VZ_CUDA_TRACE_DUMP"); /* every record of the replay, for a closer look */
        if (dump && !*dump) dump = NULL;
        if (vz_trace_report(stderr, dump) != 0 && dump) fprintf(stderr, "trace: cannot write %s\n", dump);
    }
    drop_graphs(s);
    vz_trace_stop();
}
#endif

/* VZ_CUDA_PROFILE=1: one decode step at position pos (a free slot), run
 * eagerly with an event after every op, 20 times per attention variant;
 * prints microseconds per token by op to stderr, then the graph's time. */
void vz_cs_profile(vz_cuda_session *s, int32_t pos) {
    enum { NT = 16, REPS = 20, WARM = 3 };
    const char *names[NT];
    double us[NT];
    int nt = 0;
    for (int i = 0; i < PROF_MAX; i++)
        if (cudaEventCreate(&s->prof.ev[i]) != cudaSuccess) return;
    const int32_t var0 = s->att_variant;
    for (int v = 0; v < vz_att_n_variants(); v++) {
        s->att_variant = v;
        memset(us, 0, sizeof us);
        for (int rep = 0; rep < REPS; rep++) {
            put_pos(s, pos);
            s->prof.on = 1, s->prof.n = 0;
            vz_cs_mark(s, "start");
            vz_cs_forward(s, 1, 0);
            s->prof.on = 0;
            if (cudaStreamSynchronize(s->st) != cudaSuccess || rep < WARM) continue;
            for (int i = 1; i < s->prof.n; i++) {
                float ms = 0.0f;
                cudaEventElapsedTime(&ms, s->prof.ev[i - 1], s->prof.ev[i]);
                int k = 0;
                while (k < nt && strcmp(names[k], s->prof.tag[i]) != 0) k++;
                if (k == nt && nt < NT) names[nt++] = s->prof.tag[i];
                if (k < NT) us[k] += 1e3 * ms / (REPS - WARM);
            }
        }
        double tot = 0.0;
        for (int k = 0; k < nt; k++) tot += us[k];
        fprintf(stderr, "profile (eager, attention %s): %.1f us/token\n", vz_att_variant_name(v), tot);
        for (int k = 0; k < nt; k++)
            fprintf(stderr, "  %-24s %8.1f us  %5.1f%%\n", names[k], us[k], 100.0 * us[k] / (tot > 0 ? tot : 1));
    }
    s->att_variant = var0;
    cudaGraphExec_t g;
    if (vz_cs_get_graph(s, 1, &g) == VZ_OK) {
        float ms = 0.0f;
        put_pos(s, pos);
        cudaEventRecord(s->prof.ev[0], s->st);
        for (int i = 0; i < 20; i++) {
            put_pos(s, pos);
            cudaGraphLaunch(g, s->st);
        }
        cudaEventRecord(s->prof.ev[1], s->st);
        cudaStreamSynchronize(s->st);
        cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
        fprintf(stderr, "profile (graph replay, synced each token): %.1f us/token\n", 1e3 * ms / 20);
        for (int b = 1; b >= 0; b--) { /* back to back: one-step graph, then the DECODE_STEPS graph */
            cudaGraphExec_t gb;
            if (vz_cs_get_graph(s, b, &gb) != VZ_OK) break;
            int launches = b ? 16 : 2, toks = b ? 16 : 2 * DECODE_STEPS;
            put_pos(s, pos);
            double t0 = vz_cs_now();
            cudaEventRecord(s->prof.ev[0], s->st);
            for (int i = 0; i < launches; i++) cudaGraphLaunch(gb, s->st);
            cudaEventRecord(s->prof.ev[1], s->st);
            cudaStreamSynchronize(s->st);
            double th = vz_cs_now() - t0;
            cudaEventElapsedTime(&ms, s->prof.ev[0], s->prof.ev[1]);
            fprintf(stderr, "profile (graph of %d step(s), back to back): %.1f us/token GPU, %.1f us/token host\n",
                    b ? 1 : DECODE_STEPS, 1e3 * ms / toks, 1e6 * th / toks);
        }
    }
#ifdef VZ_CUDA_TRACE
    trace_decode_graph(s, pos);
#endif
    profile_mv_variants(s, pos);
    for (int i = 0; i < PROF_MAX; i++) cudaEventDestroy(s->prof.ev[i]);
}
