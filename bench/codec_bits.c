/*
 * codec_bits.c - codec x tensor set table: bits/weight, encode MB/s and
 * decode_f32 MB/s (source bytes per second, one thread, 4 rows per call as
 * the CPU matvec does), plus per-codec detail: lossless k and exception
 * rate, lossless-max vs the exponent entropy bound, lossy relative RMS error
 * of the weights and of a matvec output. Sets: stories260K (f32, and cast to
 * bf16/f16 with RNE) and synthetic trained-like bf16 TinyLlama-shaped matrices.
 *   make bench BUILD=... && $BUILD/bench/codec_bits [--small] [--stories PATH] [--only SET]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/bits.h"
#include "codec/codec.h"
#include "codec/stats.h"

typedef struct mat { int64_t rows, cols; uint8_t *src; } mat;
typedef struct set { char name[32]; vz_dtype dtype; int n; mat m[40]; } set;
typedef struct variant { const char *label, *codec; vz_codec_opts o; } variant;

static const variant VARIANTS[] = { /* o: {group, level, code} */
    {"lossless", "lossless", {0, 0, 0}},        {"lossless:k4", "lossless", {0, 0, 4}},
    {"lossless-max", "lossless-max", {0, 0, 0}}, {"zstd:3", "zstd", {0, 3, 0}},
    {"zstd:19", "zstd", {0, 19, 0}},             {"q8:g128", "q8", {128, 0, 0}},
    {"q8:g32", "q8", {32, 0, 0}},                {"q4 default", "q4", {0, 0, 0}},
    {"q4:g128 sym-rtn", "q4", {128, 1, 0}},      {"q4:g128 sym-mse", "q4", {128, 2, 0}},
    {"q4:g128 asym-mse", "q4", {128, 3, 0}},     {"q4:g64 sym-rtn", "q4", {64, 1, 0}},
    {"q4:g64 sym-mse", "q4", {64, 2, 0}},        {"q4:g64 asym-mse", "q4", {64, 3, 0}},
    {"q4:g32 sym-rtn", "q4", {32, 1, 0}},        {"q4:g32 sym-mse", "q4", {32, 2, 0}},
    {"q4:g32 asym-mse", "q4", {32, 3, 0}},
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x1234567;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return ((rng >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

static void add_mat(set *s, int64_t rows, int64_t cols, const float *v) {
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    mat *m = &s->m[s->n++];
    m->rows = rows; m->cols = cols;
    m->src = malloc(n * 4);
    for (uint64_t i = 0; i < n; i++) {
        if (s->dtype == VZ_DTYPE_F32) vz_st32(m->src + 4 * i, vz_f32_bits(v[i]));
        else vz_st16(m->src + 2 * i, s->dtype == VZ_DTYPE_BF16 ? vz_f32_to_bf16(v[i]) : vz_f32_to_f16(v[i]));
    }
}

/* stories260K matrices (llama2.c v0 layout, see ../shared/models/README.md). */
static int load_stories(const char *path, set *s, vz_dtype d, const char *name) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    float *all = malloc(264128 * 4);
    int ok = fseek(fp, 28, SEEK_SET) == 0 && fread(all, 4, 264128, fp) == 264128;
    fclose(fp);
    if (!ok) { free(all); return 0; }
    snprintf(s->name, sizeof s->name, "%s", name);
    s->dtype = d;
    s->n = 0;
    /* (rows, cols, count, skip after): emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3 */
    static const int64_t lay[][3] = {{512, 64, 1}, {0, 320, 0}, {64, 64, 5}, {32, 64, 5}, {32, 64, 5}, {64, 64, 5},
                                     {0, 320, 0}, {172, 64, 5}, {64, 172, 5}, {172, 64, 5}};
    const float *p = all;
    for (size_t k = 0; k < sizeof lay / sizeof lay[0]; k++) {
        if (!lay[k][0]) { p += lay[k][1]; continue; }
        for (int j = 0; j < lay[k][2]; j++, p += lay[k][0] * lay[k][1]) add_mat(s, lay[k][0], lay[k][1], p);
    }
    free(all);
    return 1;
}

/* Trained-like bf16: Student-t (nu = 5) with std 0.02..0.05 per matrix and
 * log-normal row and column scales, in TinyLlama's shapes. */
static void make_synth(set *s, int small) {
    static const int64_t shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}};
    snprintf(s->name, sizeof s->name, "synth-bf16");
    s->dtype = VZ_DTYPE_BF16;
    s->n = 0;
    for (int k = 0; k < 4; k++) {
        int64_t rows = small ? shapes[k][0] / 8 : shapes[k][0], cols = shapes[k][1];
        float *v = malloc(sizeof(float) * (size_t)(rows * cols)), *cs = malloc(sizeof(float) * (size_t)cols);
        double std = 0.02 + 0.01 * k;
        for (int64_t c = 0; c < cols; c++) cs[c] = (float)exp(0.2 * nrand());
        for (int64_t r = 0; r < rows; r++) {
            double rs = exp(0.3 * nrand());
            for (int64_t c = 0; c < cols; c++) {
                double chi = 0;
                for (int j = 0; j < 5; j++) { double g = nrand(); chi += g * g; }
                v[r * cols + c] = (float)(nrand() / sqrt(chi / 5) * sqrt(3.0 / 5.0) * std * rs * cs[c]);
            }
        }
        add_mat(s, rows, cols, v);
        free(v); free(cs);
    }
}

typedef struct acc { double src, enc, t_enc, t_dec, t_all, se, ss, ye, yy, ent, exc; int k; } acc;

/* Weight and matvec-output errors of a decoded matrix f against the source. */
static void lossy_err(const mat *m, vz_dtype d, const float *f, acc *a) {
    enum { NX = 8 };
    double *x = malloc(sizeof(double) * (size_t)m->cols * NX);
    uint64_t keep = rng;
    rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)m->rows * 31 ^ (uint64_t)m->cols; /* same inputs for every codec */
    for (int64_t c = 0; c < m->cols * NX; c++) x[c] = nrand();
    rng = keep;
    for (int64_t r = 0; r < m->rows; r++) {
        double y[NX] = {0}, yq[NX] = {0};
        for (int64_t c = 0; c < m->cols; c++) {
            double w = vz_elem_f32(m->src, d, (uint64_t)(r * m->cols + c)), q = f[r * m->cols + c];
            a->se += (w - q) * (w - q); a->ss += w * w;
            for (int j = 0; j < NX; j++) { y[j] += w * x[j * m->cols + c]; yq[j] += q * x[j * m->cols + c]; }
        }
        for (int j = 0; j < NX; j++) { a->ye += (y[j] - yq[j]) * (y[j] - yq[j]); a->yy += y[j] * y[j]; }
    }
    free(x);
}

static int run_one(const set *s, const variant *v, acc *a) {
    const vz_codec *c = vz_codec_by_name(v->codec);
    memset(a, 0, sizeof *a);
    for (int i = 0; i < s->n; i++) {
        const mat *m = &s->m[i];
        uint64_t n = (uint64_t)(m->rows * m->cols), es = (uint64_t)vz_dtype_size(s->dtype);
        vz_blob b;
        double t0 = now();
        if (c->encode(m->src, s->dtype, m->rows, m->cols, &v->o, &b) != VZ_OK) {
            fprintf(stderr, "%s %s: %s\n", s->name, v->label, vz_last_error());
            return 0;
        }
        a->t_enc += now() - t0;
        vz_tensor t = {.rows = m->rows, .cols = m->cols, .dtype = s->dtype, .codec = c->id, .data = b.data,
                       .size = b.size, .params = b.params, .params_size = b.params_size};
        if (vz_tensor_check(&t) != VZ_OK) { fprintf(stderr, "check: %s\n", vz_last_error()); return 0; }
        float *f = malloc(n * 4);
        t0 = now();
        for (int64_t r = 0; r < m->rows; r += 4) c->decode_f32(&t, r, r + 4 < m->rows ? r + 4 : m->rows, f + r * m->cols);
        a->t_dec += now() - t0;
        t0 = now();
        c->decode_f32(&t, 0, m->rows, f);
        a->t_all += now() - t0;
        a->src += (double)(n * es);
        a->enc += (double)(b.size + b.params_size);
        if (c->lossless) {
            for (uint64_t j = 0; j < n; j++)
                if (vz_f32_bits(f[j]) != vz_f32_bits(vz_elem_f32(m->src, s->dtype, j))) { fprintf(stderr, "%s: MISMATCH\n", v->label); return 0; }
        } else {
            lossy_err(m, s->dtype, f, a);
        }
        uint64_t h[256] = {0}, nexc;
        vz_stats_exp_hist(m->src, s->dtype, n, h);
        a->ent += (vz_stats_entropy(h, 256) + vz_stats_raw_bits(s->dtype)) * (double)n;
        if (c->id == VZ_CODEC_lossless && vz_stats_lossless_info(&t, &a->k, &nexc) == VZ_OK) a->exc += (double)nexc;
        free(f);
        vz_blob_free(&b);
    }
    return 1;
}

static void print_row(const set *s, const variant *v, const acc *a) {
    double n = a->src / vz_dtype_size(s->dtype);
    char extra[96] = "";
    const vz_codec *c = vz_codec_by_name(v->codec);
    if (c->id == VZ_CODEC_lossless) snprintf(extra, sizeof extra, "k=%d (last), exceptions %.3f%%", a->k, 100 * a->exc / n);
    else if (c->id == VZ_CODEC_lossless_max) snprintf(extra, sizeof extra, "entropy bound %.3f (+%.3f)", a->ent / n, 8 * a->enc / n - a->ent / n);
    else if (!c->lossless) snprintf(extra, sizeof extra, "rel RMS err w %.4f, matvec %.4f", sqrt(a->se / a->ss), sqrt(a->ye / a->yy));
    printf("| %-12s | %-17s | %7.3f | %-36s | %8.1f | %8.1f | %8.1f |\n", s->name, v->label, 8 * a->enc / n, extra,
           a->src / a->t_enc / 1e6, a->src / a->t_dec / 1e6, a->src / a->t_all / 1e6);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *stories = "../shared/models/stories260K/stories260K.bin", *only = NULL, *vonly = NULL;
    int small = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small")) small = 1;
        else if (!strcmp(argv[i], "--stories") && i + 1 < argc) stories = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--codec") && i + 1 < argc) vonly = argv[++i];
        else { fprintf(stderr, "usage: %s [--small] [--stories PATH] [--only SET] [--codec LABEL-PREFIX]\n", argv[0]); return 2; }
    }
    static set sets[4];
    int ns = 0;
    static const vz_dtype ds[3] = {VZ_DTYPE_BF16, VZ_DTYPE_F16, VZ_DTYPE_F32};
    static const char *dn[3] = {"stories-bf16", "stories-f16", "stories-f32"};
    for (int j = 0; j < 3; j++)
        if ((!only || strstr(dn[j], only)) && load_stories(stories, &sets[ns], ds[j], dn[j])) ns++;
    if (!only || strstr("synth-bf16", only)) make_synth(&sets[ns++], small);
    printf("| set          | codec             | bits/w  | detail                               | enc MB/s | dec MB/s | dec-all  |\n");
    printf("|--------------|-------------------|---------|--------------------------------------|----------|----------|----------|\n");
    for (int i = 0; i < ns; i++)
        for (size_t v = 0; v < sizeof VARIANTS / sizeof VARIANTS[0]; v++) {
            acc a;
            if (vonly && strncmp(VARIANTS[v].label, vonly, strlen(vonly))) continue;
            if (run_one(&sets[i], &VARIANTS[v], &a)) print_row(&sets[i], &VARIANTS[v], &a);
        }
    return 0;
}
