/*
 * trace.cu - the host side of trace.cuh (diagnostic builds, -DVZ_CUDA_TRACE;
 * empty otherwise): launch sequence numbers with what each launch is, and
 * the report of one graph replay's records.
 */
#ifdef VZ_CUDA_TRACE
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/trace.cuh"

extern "C" {
#include "core/io.h"
}

struct tr_meta {
    char label[48];
};

static vz_trace_rec *g_rec;
static unsigned g_cap;
static tr_meta *g_meta;
static int g_seq, g_meta_cap;

vz_trace_arg vz_trace_next(char kind, long long rows, long long cols, int ntens, int epi) {
    vz_trace_arg a = {g_rec, g_cap, g_seq};
    if (!g_rec) return a;
    if (g_seq >= g_meta_cap) {
        const int nc = g_meta_cap ? 2 * g_meta_cap : 4096;
        tr_meta *m = (tr_meta *)realloc(g_meta, (size_t)nc * sizeof *m);
        if (!m) return vz_trace_arg{NULL, 0, 0};
        g_meta = m, g_meta_cap = nc;
    }
    tr_meta &m = g_meta[g_seq++];
    if (kind == 'a') snprintf(m.label, sizeof m.label, "attention");
    else if (kind == 'p') snprintf(m.label, sizeof m.label, "probe after %c", (char)rows);
    else if (kind == 's') snprintf(m.label, sizeof m.label, "sampler");
    else if (kind == 'e') snprintf(m.label, sizeof m.label, "embedding lookup");
    else snprintf(m.label, sizeof m.label, "matvec %dx %lldx%lld epi %d", ntens, rows, cols, epi);
    return a;
}

int vz_trace_start(unsigned cap) {
    if (g_rec) return 0;
    if (cudaMalloc(&g_rec, (size_t)cap * sizeof *g_rec) != cudaSuccess) return g_rec = NULL, -1;
    g_cap = cap, g_seq = 0;
    vz_trace_reset();
    return 0;
}

void vz_trace_reset(void) {
    if (g_rec) cudaMemset(g_rec, 0, (size_t)g_cap * sizeof *g_rec), cudaDeviceSynchronize(); /* t0 = 0: no record */
}

/* The replay's records, packed (slot order within a launch), in a new
 * array of *n (NULL: no memory, or the copy failed). */
static vz_trace_rec *tr_fetch(unsigned *n) {
    cudaDeviceSynchronize();
    vz_trace_rec *r = (vz_trace_rec *)malloc((size_t)g_cap * sizeof *r);
    if (!r || cudaMemcpy(r, g_rec, (size_t)g_cap * sizeof *r, cudaMemcpyDeviceToHost) != cudaSuccess) {
        free(r);
        return NULL;
    }
    *n = 0;
    for (unsigned i = 0; i < g_cap; i++)
        if (r[i].t0 && (int)r[i].seq < g_seq) r[(*n)++] = r[i];
    return r;
}

/* One line per record, times in ns from the earliest entry: launch seq,
 * its label, block << 8 | warp, SM, entry, wait return, staged, exit.
 * Written atomically (core/io.h): a failed dump leaves no file. */
static int tr_dump(const vz_trace_rec *r, unsigned n, const char *path) {
    vz_wfile w;
    memset(&w, 0, sizeof w);
    if (vz_wfile_open(&w, path) != VZ_OK) return -1;
    unsigned long long t = ~0ull;
    for (unsigned i = 0; i < n; i++) t = r[i].t0 < t ? r[i].t0 : t;
    fprintf(w.f, "seq\tlabel\twho\tsm\tt0\ttw\ttx\tte\n");
    for (unsigned i = 0; i < n; i++)
        fprintf(w.f, "%u\t%s\t%u\t%u\t%llu\t%llu\t%llu\t%llu\n", r[i].seq, g_meta[r[i].seq].label, r[i].who, r[i].sm,
                r[i].t0 - t, r[i].tw - t, r[i].tx - t, r[i].te - t);
    if (ferror(w.f)) {
        vz_wfile_abort(&w);
        return -1;
    }
    return vz_wfile_commit(&w) == VZ_OK ? 0 : -1;
}

void vz_trace_stop(void) {
    if (g_rec) cudaFree(g_rec);
    g_rec = NULL, g_cap = 0;
}

struct tr_launch {
    unsigned long long t0, tw0, tw1, te0, te1; /* first entry, first and last wait return, first and last exit */
    int seq, nrec;
};

static int by_t0(const void *a, const void *b) {
    const tr_launch *x = (const tr_launch *)a, *y = (const tr_launch *)b;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

/* Per launch (sorted by first entry): rel = its first wait return minus the
 * previous launch's last exit (the hand-off), post = its last exit minus its
 * first wait return (its work once its input is there), early = its first
 * wait return minus its first entry, spread = last exit minus first exit
 * (its tail). Means per label, then the first launches one by one. */
int vz_trace_report(FILE *f, const char *dump) {
    if (!g_rec) return 0;
    if ((size_t)g_seq * VZ_TRACE_SLOTS > g_cap)
        fprintf(f, "trace: %d launches, records of the first %u kept\n", g_seq, g_cap / VZ_TRACE_SLOTS);
    unsigned n = 0;
    vz_trace_rec *r = tr_fetch(&n);
    tr_launch *L = (tr_launch *)calloc((size_t)g_seq + 1, sizeof *L);
    if (!r || !L) {
        fprintf(f, "trace: no memory or copy failed\n");
        free(r), free(L);
        return -1;
    }
    const int dumped = dump ? tr_dump(r, n, dump) : 0;
    unsigned long long gran = ~0ull;
    for (unsigned i = 0; i < n; i++) {
        tr_launch &l = L[r[i].seq];
        if (l.nrec++ == 0) l.t0 = r[i].t0, l.tw0 = l.tw1 = r[i].tw, l.te0 = l.te1 = r[i].te, l.seq = (int)r[i].seq;
        l.t0 = r[i].t0 < l.t0 ? r[i].t0 : l.t0;
        l.tw0 = r[i].tw < l.tw0 ? r[i].tw : l.tw0, l.tw1 = r[i].tw > l.tw1 ? r[i].tw : l.tw1;
        l.te0 = r[i].te < l.te0 ? r[i].te : l.te0, l.te1 = r[i].te > l.te1 ? r[i].te : l.te1;
        if (i > 0 && r[i].te != r[i - 1].te) {
            const unsigned long long d = r[i].te > r[i - 1].te ? r[i].te - r[i - 1].te : r[i - 1].te - r[i].te;
            gran = d < gran ? d : gran;
        }
    }
    int m = 0;
    for (int s = 0; s < g_seq; s++)
        if (L[s].nrec) L[m++] = L[s];
    qsort(L, (size_t)m, sizeof *L, by_t0);
    fprintf(f, "trace: %u records, %d launches, span %.1f us, smallest step between exit stamps %llu ns\n", n, m,
            m ? (L[m - 1].te1 - L[0].t0) / 1e3 : 0.0, gran);
    struct agg {
        const char *label;
        int cnt;
        double rel, post, early, spread, relmax;
    } A[64];
    int na = 0;
    double srel = 0, spost = 0;
    for (int i = 1; i < m; i++) {
        const char *lb = g_meta[L[i].seq].label;
        int k = 0;
        while (k < na && strcmp(A[k].label, lb) != 0) k++;
        if (k == na) {
            if (na == 64) continue;
            A[na++] = agg{lb, 0, 0, 0, 0, 0, -1e30};
        }
        const double rel = ((double)L[i].tw0 - (double)L[i - 1].te1) / 1e3, post = (L[i].te1 - L[i].tw0) / 1e3;
        A[k].cnt++, A[k].rel += rel, A[k].post += post, A[k].early += (L[i].tw0 - L[i].t0) / 1e3;
        A[k].spread += (L[i].te1 - L[i].te0) / 1e3, A[k].relmax = rel > A[k].relmax ? rel : A[k].relmax;
        srel += rel, spost += post;
    }
    fprintf(f, "trace: launches 2..%d: sum of hand-offs %.1f us, sum of work after the wait %.1f us\n", m, srel, spost);
    fprintf(f, "| launch | count | hand-off us | longest hand-off us | after wait us | started early us | tail us |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n");
    for (int k = 0; k < na; k++)
        fprintf(f, "| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", A[k].label, A[k].cnt, A[k].rel / A[k].cnt,
                A[k].relmax, A[k].post / A[k].cnt, A[k].early / A[k].cnt, A[k].spread / A[k].cnt);
    fprintf(f, "trace: the first launches, us from the first entry (entry, first/last wait return, first/last exit)\n");
    for (int i = 0; i < m && i < 12; i++)
        fprintf(f, "  %-34s %8.2f %8.2f %8.2f %8.2f %8.2f\n", g_meta[L[i].seq].label, (L[i].t0 - L[0].t0) / 1e3,
                (L[i].tw0 - L[0].t0) / 1e3, (L[i].tw1 - L[0].t0) / 1e3, (L[i].te0 - L[0].t0) / 1e3,
                (L[i].te1 - L[0].t0) / 1e3);
    free(r), free(L);
    return dumped;
}
#endif
