/*
 * synth.c - vz_synth: writes a synthetic Hugging Face checkpoint (config.json,
 * safetensors, tokenizer.model) with real shapes and trained-like weights.
 * Values come from a counter-based generator (splitmix64's finalizer over
 * (seed, tensor, element)), so chunks are generated in parallel and streamed
 * to disk with constant memory. Statistics and their reasons: docs/synth.md.
 */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/half.h"
#include "core/io.h"
#include "model/synth.h"
#include "tokenizer/spm_write.h"
#include "tokenizer/tokenizer.h"

#define GAMMA 0x9e3779b97f4a7c15ull
#define CHUNK ((uint64_t)1 << 21) /* elements per streamed chunk: 8 MB of f32 */
#define DEFAULT_SHARD 5000000000ull

static inline uint64_t fmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- the generator ---------------------------------------------------- */

/* Standard normal from 48 bits (Box-Muller, 24-bit uniforms: |z| <= 5.9). */
static inline float normal_from(uint64_t h) {
    float u1 = ((float)(h >> 40) + 0.5f) * (1.0f / 16777216.0f);
    float u2 = (float)((h >> 16) & 0xffffffu) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

/* Scale turning a normal into a unit-variance Student-t with 8 degrees of
 * freedom: sqrt((nu-2)/chi2_nu), chi2_8 = -2 ln(v1 v2 v3 v4). */
static inline float t8_scale(uint64_t h) {
    float p = 1.0f;
    for (int k = 0; k < 4; k++, h >>= 16) p *= ((float)(h & 0xffffu) + 0.5f) * (1.0f / 65536.0f);
    return sqrtf(6.0f / (-2.0f * logf(p)));
}

static int is_norm(vz_synth_kind k) { return k == VZ_SK_NORM_ATTN || k == VZ_SK_NORM_FFN || k == VZ_SK_NORM_FINAL; }

/* Kinds whose input channels are the residual stream, where trained models
 * show a few outlier features. */
static int has_outliers(vz_synth_kind k) {
    return k == VZ_SK_Q || k == VZ_SK_K || k == VZ_SK_V || k == VZ_SK_GATE || k == VZ_SK_UP;
}

void vz_synth_gen_init(vz_synth_gen *g, const vz_synth_shape *s, const vz_synth_tensor *t, int32_t index,
                       uint64_t seed) {
    static const float gain[] = {[VZ_SK_Q] = 1.3f, [VZ_SK_K] = 1.3f, [VZ_SK_V] = 0.8f, [VZ_SK_O] = 0.9f,
                                 [VZ_SK_GATE] = 1.1f, [VZ_SK_UP] = 0.9f, [VZ_SK_DOWN] = 1.4f, [VZ_SK_HEAD] = 1.0f};
    memset(g, 0, sizeof *g);
    uint64_t sk = fmix64(seed ^ 0x5e7d5e7d5e7d5e7dull);
    g->key = fmix64(sk + (uint64_t)(index + 1) * GAMMA);
    g->outlier_key = fmix64(sk ^ 0x0a7c1e4b6d0f9e35ull);
    g->kind = t->kind;
    g->cols = t->st.ndim == 2 ? t->st.shape[1] : t->st.shape[0];
    float depth = s->n_layers > 1 && t->layer >= 0 ? (float)t->layer / (float)(s->n_layers - 1) : 1.0f;
    switch (t->kind) {
    case VZ_SK_EMBED: g->sigma = 0.02f; break;
    case VZ_SK_NORM_ATTN: g->mean = 0.8f + 0.3f * depth, g->sigma = 0.1f; break;
    case VZ_SK_NORM_FFN: g->mean = 0.7f + 0.4f * depth, g->sigma = 0.1f; break;
    case VZ_SK_NORM_FINAL: g->mean = 1.3f, g->sigma = 0.1f; break;
    case VZ_SK_BIAS: g->sigma = 0.1f; break;
    case VZ_SK_HEAD: g->sigma = gain[t->kind] / sqrtf((float)g->cols); break;
    default: g->sigma = gain[t->kind] / sqrtf((float)g->cols) * (0.9f + 0.2f * depth); break;
    }
}

int vz_synth_is_outlier(const vz_synth_gen *g, int64_t c) {
    if ((uint64_t)c == g->outlier_key % (uint64_t)g->cols) return 1; /* at least one per model */
    return fmix64(g->outlier_key + (uint64_t)(c + 1) * GAMMA) % 1024 < 3;
}

/* Value of element i before the outlier column scale. */
static inline float base_value(const vz_synth_gen *g, uint64_t i) {
    float z = normal_from(fmix64(g->key + (2 * i + 1) * GAMMA));
    if (is_norm(g->kind)) return g->mean * (1.0f + g->sigma * z);
    return g->sigma * z * t8_scale(fmix64(g->key + (2 * i + 2) * GAMMA));
}

float vz_synth_value(const vz_synth_gen *g, uint64_t i) {
    float v = base_value(g, i);
    if (has_outliers(g->kind) && vz_synth_is_outlier(g, (int64_t)(i % (uint64_t)g->cols)))
        v *= VZ_SYNTH_OUTLIER_SCALE;
    return v;
}

/* Elements [e0, e0+n) in dtype dt into out; colscale (cols floats) or NULL. */
static void gen_chunk(const vz_synth_gen *g, const float *colscale, uint64_t e0, uint64_t n, vz_dtype dt,
                      void *out) {
    const int64_t block = 4096;
    int64_t nb = (int64_t)((n + block - 1) / block);
#pragma omp parallel for schedule(dynamic, 8)
    for (int64_t b = 0; b < nb; b++) {
        uint64_t j0 = (uint64_t)b * block, j1 = j0 + block < n ? j0 + block : n;
        uint64_t col = (e0 + j0) % (uint64_t)g->cols;
        for (uint64_t j = j0; j < j1; j++) {
            float v = base_value(g, e0 + j);
            if (colscale) v *= colscale[col];
            if (++col == (uint64_t)g->cols) col = 0;
            if (dt == VZ_DTYPE_BF16) ((uint16_t *)out)[j] = vz_f32_to_bf16(v);
            else if (dt == VZ_DTYPE_F16) ((uint16_t *)out)[j] = vz_f32_to_f16(v);
            else ((float *)out)[j] = v;
        }
    }
}

/* ---- the output directory -------------------------------------------- */

typedef struct synth_job {
    const vz_synth_shape *shape;
    vz_synth_shape own;    /* the shape with a tokenizer.json's BOS and EOS ids */
    const vz_synth_opts *o;
    vz_synth_tensor *t;
    int32_t nt, n_shards, vocab;
    uint8_t *tok;          /* tokenizer.model (or tokenizer.json) bytes, or NULL for none */
    uint64_t tok_size;
    int tok_json;          /* tok is a tokenizer.json (byte-level BPE) */
    void *buf;             /* one chunk */
    float *colscale;       /* dim floats */
    uint64_t done, total;
    char tmp[1100];        /* the temporary directory, "" once renamed or removed */
} synth_job;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rmtree(const char *path) {
    if (path && *path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static vz_status join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    VZ_FAIL_IF(n < 0 || (size_t)n >= cap, VZ_ERR_ARG, "%s/%s: path too long", dir, name);
    return VZ_OK;
}

static vz_status write_file(synth_job *j, const char *name, const void *p, uint64_t n) {
    char path[1200];
    vz_wfile w;
    VZ_TRY(join(path, sizeof path, j->tmp, name));
    VZ_TRY(vz_wfile_open(&w, path));
    vz_status s = vz_wfile_write(&w, p, n);
    if (s == VZ_OK) return vz_wfile_commit(&w);
    vz_wfile_abort(&w);
    return s;
}

static vz_status write_text(synth_job *j, const char *name, char *txt) {
    VZ_FAIL_IF(!txt, VZ_ERR_NOMEM, "%s: out of memory", name);
    size_t n = strlen(txt);
    vz_status s = write_file(j, name, txt, n);
    free(txt);
    return s;
}

static char *synthetic_txt(const synth_job *j) {
    const char *fmt =
        "SYNTHETIC WEIGHTS - NOT A TRAINED MODEL\n\n"
        "Written by `vramzip synth --shape %s --seed %llu --dtype %s` (vramzip %s).\n"
        "The tensors have the exact names and shapes of the real checkpoint, but their\n"
        "values are pseudo-random numbers with trained-like statistics (see vramzip's\n"
        "docs/synth.md). A model loaded from here produces gibberish text. It exists to\n"
        "test file formats, compression ratios and speed.\n";
    size_t cap = strlen(fmt) + 256;
    char *txt = malloc(cap);
    if (txt)
        snprintf(txt, cap, fmt, j->shape->name, (unsigned long long)j->o->seed, vz_dtype_name(j->o->dtype),
                 VZ_VERSION_STRING);
    return txt;
}

static vz_status check_cancel(const synth_job *j) {
    VZ_FAIL_IF(j->o->cancel && *j->o->cancel, VZ_ERR_INTERRUPTED, "synth: interrupted; nothing written");
    return VZ_OK;
}

static vz_status write_tensor(synth_job *j, vz_st_writer *w, int32_t ti) {
    const vz_synth_tensor *t = &j->t[ti];
    vz_synth_gen g;
    vz_synth_gen_init(&g, j->shape, t, ti, j->o->seed);
    const float *cs = NULL;
    if (has_outliers(t->kind)) {
        for (int64_t c = 0; c < g.cols; c++) j->colscale[c] = vz_synth_is_outlier(&g, c) ? VZ_SYNTH_OUTLIER_SCALE : 1;
        cs = j->colscale;
    }
    uint64_t esz = (uint64_t)vz_dtype_size(t->st.dtype);
    for (uint64_t e = 0; e < t->n; e += CHUNK) {
        VZ_TRY(check_cancel(j));
        uint64_t n = t->n - e < CHUNK ? t->n - e : CHUNK;
        gen_chunk(&g, cs, e, n, t->st.dtype, j->buf);
        VZ_TRY(vz_st_writer_write(w, j->buf, n * esz));
        j->done += n * esz;
        if (j->o->progress) j->o->progress(j->o->progress_ud, j->done, j->total, t->st.name);
    }
    return VZ_OK;
}

static void shard_name(const synth_job *j, int32_t k, char *buf, size_t cap) {
    if (j->n_shards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", (int)k + 1, (int)j->n_shards);
}

static vz_status write_shard(synth_job *j, int32_t k) {
    char name[64], path[1200];
    shard_name(j, k, name, sizeof name);
    VZ_TRY(join(path, sizeof path, j->tmp, name));
    vz_st_tensor *list = calloc((size_t)j->nt, sizeof *list);
    VZ_FAIL_IF(!list, VZ_ERR_NOMEM, "%s: out of memory", path);
    int32_t n = 0, first = -1;
    for (int32_t i = 0; i < j->nt; i++)
        if (j->t[i].shard == k) list[n++] = j->t[i].st, first = first < 0 ? i : first;
    vz_st_writer *w = NULL;
    vz_status s = vz_st_writer_open(&w, path, list, n);
    free(list);
    for (int32_t i = first; s == VZ_OK && i < first + n; i++) s = write_tensor(j, w, i);
    if (s != VZ_OK) {
        vz_st_writer_abort(w);
        return s;
    }
    return vz_st_writer_commit(w);
}

static vz_status write_index(synth_job *j) {
    cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)j->total);
    cJSON *map = cJSON_AddObjectToObject(o, "weight_map");
    char name[64];
    for (int32_t i = 0; map && i < j->nt; i++) {
        shard_name(j, j->t[i].shard, name, sizeof name);
        cJSON_AddStringToObject(map, j->t[i].st.name, name);
    }
    char *txt = map ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return write_text(j, "model.safetensors.index.json", txt);
}

/* Tensors go to shards in order; a shard closes before it would pass max. */
static void plan_shards(synth_job *j, uint64_t max) {
    uint64_t cur = 0;
    int32_t k = 0;
    j->total = 0;
    for (int32_t i = 0; i < j->nt; i++) {
        if (cur > 0 && cur + j->t[i].bytes > max) k++, cur = 0;
        j->t[i].shard = k;
        cur += j->t[i].bytes;
        j->total += j->t[i].bytes;
    }
    j->n_shards = k + 1;
}

static vz_status write_all(synth_job *j) {
    VZ_TRY(write_text(j, "SYNTHETIC.txt", synthetic_txt(j)));
    VZ_TRY(write_text(j, "config.json", vz_synth_config_json(j->shape, j->vocab, j->o->dtype)));
    VZ_TRY(write_text(j, "generation_config.json", vz_synth_generation_json(j->shape)));
    if (j->tok) VZ_TRY(write_file(j, j->tok_json ? "tokenizer.json" : "tokenizer.model", j->tok, j->tok_size));
    for (int32_t k = 0; k < j->n_shards; k++) VZ_TRY(write_shard(j, k));
    if (j->n_shards > 1) VZ_TRY(write_index(j));
    return check_cancel(j);
}

static vz_status prepare_tokenizer(synth_job *j) {
    const vz_synth_shape *s = j->shape;
    const char *path = j->o->tokenizer_path;
    j->vocab = s->vocab_size;
    if (!path || !*path) {
        if (!s->builtin_tokenizer) return VZ_OK;
        return vz_spm_build_default(j->vocab, &j->tok, &j->tok_size);
    }
    char *buf = NULL;
    int32_t n = 0;
    VZ_TRY(vz_read_file(path, &buf, &j->tok_size, (uint64_t)64 << 20));
    j->tok = (uint8_t *)buf;
    if (vz_tokenizer_is_json(j->tok, j->tok_size)) { /* a tokenizer.json: byte-level BPE (Llama 3) */
        vz_tokenizer *t = NULL;
        VZ_TRY(vz_tokenizer_from_json(&t, j->tok, j->tok_size, path));
        n = vz_tokenizer_vocab_size(t);
        const int32_t bos = vz_tokenizer_bos(t), eos = vz_tokenizer_eos(t);
        vz_tokenizer_close(t);
        VZ_FAIL_IF(eos < 0, VZ_ERR_FORMAT, "%s: no end-of-text token (<|end_of_text|>, <|endoftext|>, </s>, <eos>, <|im_end|>)",
                   path);
        j->own = *s, j->own.bos_id = bos >= 0 ? bos : eos, j->own.eos_id = eos; /* no BOS: Qwen 2's rule */
        j->shape = &j->own; /* config.json names the tokenizer's own ids */
        j->tok_json = 1;
    } else {
        VZ_TRY(vz_spm_count_pieces(j->tok, j->tok_size, path, &n));
        VZ_FAIL_IF(n < 3, VZ_ERR_FORMAT, "%s: %d pieces; need at least <unk>, <s>, </s>", path, (int)n);
    }
    if (s->vocab_from_tokenizer) j->vocab = n;
    /* a tokenizer.json may have fewer tokens than a padded embedding (Qwen 2: 151665 of 151936) */
    VZ_FAIL_IF(j->tok_json ? n > j->vocab : n != j->vocab, VZ_ERR_SHAPE, "%s: %d tokens, but shape %s has vocab_size %d",
               path, (int)n, s->name, (int)j->vocab);
    return VZ_OK;
}

static vz_status prepare(synth_job *j) {
    const vz_synth_opts *o = j->o;
    j->shape = vz_synth_find(o->shape);
    VZ_FAIL_IF(!j->shape, VZ_ERR_ARG, "synth: unknown shape '%s' (vramzip synth --list)", o->shape ? o->shape : "");
    VZ_FAIL_IF(o->dtype != VZ_DTYPE_BF16 && o->dtype != VZ_DTYPE_F16 && o->dtype != VZ_DTYPE_F32, VZ_ERR_ARG,
               "synth: invalid dtype %d", (int)o->dtype);
    VZ_TRY(prepare_tokenizer(j));
    VZ_TRY(vz_synth_tensors(j->shape, j->vocab, o->dtype, &j->t, &j->nt));
    plan_shards(j, o->max_shard_bytes ? o->max_shard_bytes : DEFAULT_SHARD);
    j->buf = malloc(CHUNK * 4);
    j->colscale = malloc((size_t)j->shape->dim * sizeof(float));
    VZ_FAIL_IF(!j->buf || !j->colscale, VZ_ERR_NOMEM, "synth: out of memory");
    return VZ_OK;
}

/* 0: absent, 1: empty directory, 2: anything else. */
static int target_state(const char *out) {
    struct stat st;
    if (lstat(out, &st) != 0) return errno == ENOENT ? 0 : 2;
    if (!S_ISDIR(st.st_mode)) return 2;
    DIR *d = opendir(out);
    if (!d) return 2;
    int state = 1;
    for (struct dirent *e; state == 1 && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) state = 2;
    closedir(d);
    return state;
}

static vz_status check_target(const char *out, int force) {
    VZ_FAIL_IF(target_state(out) == 2 && !force, VZ_ERR_ARG, "%s: exists and is not empty (--force replaces it)",
               out);
    return VZ_OK;
}

static vz_status make_tmp(synth_job *j, const char *out) {
    snprintf(j->tmp, sizeof j->tmp, "%s.tmp.XXXXXX", out);
    if (!mkdtemp(j->tmp)) {
        int e = errno;
        j->tmp[0] = '\0';
        return VZ_FAIL(VZ_ERR_IO, "%s: cannot create a temporary directory next to it: %s", out, strerror(e));
    }
    chmod(j->tmp, 0755);
    return VZ_OK;
}

/* Renames the finished directory to out; an existing out (force) is moved
 * aside first and removed only once the new one is in place. */
static vz_status install(synth_job *j, const char *out) {
    char old[1100] = "";
    int state = target_state(out);
    VZ_TRY(check_target(out, j->o->force));
    if (state == 1) rmdir(out);
    if (state == 2) {
        snprintf(old, sizeof old, "%s.old.XXXXXX", out);
        VZ_FAIL_IF(!mkdtemp(old) || rmdir(old) != 0, VZ_ERR_IO, "%s: cannot make a name to move it aside: %s", out,
                   strerror(errno));
        VZ_FAIL_IF(rename(out, old) != 0, VZ_ERR_IO, "%s: cannot move it aside: %s", out, strerror(errno));
    }
    if (rename(j->tmp, out) != 0) {
        int e = errno;
        if (old[0]) rename(old, out);
        return VZ_FAIL(VZ_ERR_IO, "%s: cannot rename %s to it: %s", out, j->tmp, strerror(e));
    }
    j->tmp[0] = '\0';
    rmtree(old);
    return VZ_OK;
}

void vz_synth_opts_default(vz_synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->shape = "small";
    o->dtype = VZ_DTYPE_BF16;
}

vz_status vz_synth(const char *out_dir, const vz_synth_opts *o) {
    VZ_FAIL_IF(!out_dir || !*out_dir || !o, VZ_ERR_ARG, "synth: output directory and options are required");
    char out[1024];
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') n--;
    VZ_FAIL_IF(n >= sizeof out - 32, VZ_ERR_ARG, "%s: path too long", out_dir);
    memcpy(out, out_dir, n);
    out[n] = '\0';
    VZ_FAIL_IF(strcmp(out, "/") == 0, VZ_ERR_ARG, "synth: refusing to write to /");

    synth_job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    vz_status s = prepare(&j);
    if (s == VZ_OK) s = check_target(out, o->force);
    if (s == VZ_OK) s = make_tmp(&j, out);
    if (s == VZ_OK) s = write_all(&j);
    if (s == VZ_OK) s = install(&j, out);
    rmtree(j.tmp);
    free(j.t);
    free(j.tok);
    free(j.buf);
    free(j.colscale);
    return s;
}
