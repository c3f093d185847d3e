/*
 * convert.c - vz_convert: opens any model, picks a codec per tensor from a
 * spec (a preset like "q4:g32" or "glob=codec" rules, first match wins,
 * fnmatch over canonical names), encodes, proves every lossless tensor
 * decodes back to the source bytes (memcmp) and streams it into a .vz
 * (docs/format.md) that appears only once complete.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fnmatch.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <xxhash.h>

#include "codec/codec.h"
#include "tokenizer/tokenizer.h"
#include "format/vz_write.h"

#define MAX_RULES 64

typedef struct rule {
    char glob[VZ_NAME_MAX];
    const vz_codec *codec;
    vz_codec_opts opts;
} rule;

typedef struct spec {
    rule r[MAX_RULES];
    int hits[MAX_RULES]; /* tensors each rule matched, to flag rules that match nothing */
    int n;
} spec;

const char *vz_codec_info(int32_t i, const char **doc, int32_t *lossless) {
    const vz_codec *c = vz_codec_at(i);
    if (!c) return NULL;
    if (doc) *doc = c->doc;
    if (lossless) *lossless = c->lossless;
    return c->name;
}

void vz_convert_opts_default(vz_convert_opts *o) {
    memset(o, 0, sizeof *o);
    vz_model_opts_default(&o->model);
}

/* "name[:gN][:kN][:N]" -> codec and options. */
static vz_status parse_codec(const char *tok, rule *r) {
    char buf[128];
    VZ_FAIL_IF(strlen(tok) >= sizeof buf, VZ_ERR_ARG, "codec spec '%s' is too long", tok);
    snprintf(buf, sizeof buf, "%s", tok);
    char *save = NULL, *name = strtok_r(buf, ":", &save);
    VZ_FAIL_IF(!name, VZ_ERR_ARG, "empty codec name in spec '%s'", tok);
    r->codec = vz_codec_by_name(name);
    VZ_FAIL_IF(!r->codec, VZ_ERR_ARG, "unknown codec '%s' (see 'vramzip convert --help' for the list)", name);
    memset(&r->opts, 0, sizeof r->opts);
    for (char *o = strtok_r(NULL, ":", &save); o; o = strtok_r(NULL, ":", &save)) {
        char *end = NULL;
        errno = 0;
        const int pre = o[0] == 'g' || o[0] == 'k';
        long v = strtol(o + pre, &end, 10);
        VZ_FAIL_IF(errno || end == o || *end || (pre && end == o + 1), VZ_ERR_ARG,
                   "codec '%s': option '%s' is not gN (group size), kN (lossless code bits) or N (level)", name, o);
        if (o[0] == 'k') {
            VZ_FAIL_IF(r->codec->id != VZ_CODEC_lossless, VZ_ERR_ARG,
                       "codec '%s': option '%s' (code bits) is for lossless only", name, o);
            VZ_FAIL_IF(v != 3 && v != 4, VZ_ERR_ARG, "codec '%s': code bits %ld not 3 or 4", name, v);
            r->opts.code = (int32_t)v;
        } else if (o[0] == 'g') {
            VZ_FAIL_IF((v < 1 && v != -1) || v > 65536, VZ_ERR_ARG,
                       "codec '%s': group size %ld outside [1, 65536] (or -1: one group per row)", name, v);
            r->opts.group = (int32_t)v;
        } else {
            VZ_FAIL_IF(v < -1000 || v > 1000 || v == 0, VZ_ERR_ARG, "codec '%s': level %ld outside [-1000, 1000]",
                       name, v);
            r->opts.level = (int32_t)v;
        }
    }
    return VZ_OK;
}

static vz_status parse_spec(const char *text, spec *s) {
    memset(s, 0, sizeof *s);
    if (!text) text = "raw";
    char *copy = strdup(text);
    VZ_FAIL_IF(!copy, VZ_ERR_NOMEM, "out of memory");
    vz_status st = VZ_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && st == VZ_OK; tok = strtok_r(NULL, ",", &save)) {
        if (s->n >= MAX_RULES) {
            st = VZ_FAIL(VZ_ERR_ARG, "codec spec has more than %d rules", MAX_RULES);
            break;
        }
        rule *r = &s->r[s->n];
        char *eq = strchr(tok, '=');
        const char *glob = "*";
        if (eq) {
            *eq = '\0';
            glob = tok;
            tok = eq + 1;
        }
        if (!*glob || strlen(glob) >= sizeof r->glob) {
            st = VZ_FAIL(VZ_ERR_ARG, "codec spec rule %d: empty or too long tensor glob", s->n + 1);
            break;
        }
        snprintf(r->glob, sizeof r->glob, "%s", glob);
        st = parse_codec(tok, r);
        if (st != VZ_OK) vz_error_prefix("codec spec rule %d ('%s=...')", s->n + 1, glob);
        s->n++;
    }
    free(copy);
    if (st == VZ_OK && s->n == 0) st = VZ_FAIL(VZ_ERR_ARG, "empty codec spec '%s'", text);
    return st;
}

vz_status vz_codec_spec_check(const char *text) {
    spec s;
    return parse_spec(text, &s);
}

/* The rule for a tensor (NULL: keep raw). A glob matches the full name or the
 * name without its ".weight" suffix ("model.layers.0.mlp.gate_proj"). */
static const rule *pick(spec *s, const vz_tensor *t) {
    if (t->ndim < 2) return NULL; /* norms and other vectors stay raw */
    char base[VZ_NAME_MAX];
    snprintf(base, sizeof base, "%s", t->name);
    size_t n = strlen(base);
    if (n > 7 && !strcmp(base + n - 7, ".weight")) base[n - 7] = '\0';
    for (int i = 0; i < s->n; i++)
        if (fnmatch(s->r[i].glob, t->name, 0) == 0 || fnmatch(s->r[i].glob, base, 0) == 0)
            return s->hits[i]++, &s->r[i];
    return NULL;
}

static void note(const vz_convert_opts *o, const char *fmt, ...) VZ_PRINTF(2, 3);
static void note(const vz_convert_opts *o, const char *fmt, ...) {
    if (!o->note) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#pragma omp critical(vz_convert_note) /* worker threads (convert_tensors) */
    o->note(o->user, msg);
}

/* Source bytes of t: borrowed for raw, decoded for other lossless codecs. */
static vz_status source_bytes(const vz_tensor *t, uint64_t n, const uint8_t **p, uint8_t **owned) {
    *owned = NULL;
    if (t->codec == VZ_CODEC_raw) {
        *p = t->data;
        return VZ_OK;
    }
    const vz_codec *c = vz_codec_by_id(t->codec);
    VZ_FAIL_IF(!c || !c->lossless, VZ_ERR_UNSUPPORTED,
               "tensor %s: the source is stored lossy (%s); re-encoding it is not supported", t->name,
               c ? c->name : "?");
    *owned = malloc(n ? n : 1);
    VZ_FAIL_IF(!*owned, VZ_ERR_NOMEM, "tensor %s: out of memory", t->name);
    VZ_TRY(c->decode_ref(t, 0, t->rows, *owned));
    *p = *owned;
    return VZ_OK;
}

/* decode_ref of all of enc into back, by row ranges split among the threads
 * when called outside a parallel region (a big tensor: convert_tensors); a
 * failure is decoded again on this thread for its message. */
static vz_status decode_back(const vz_codec *c, const vz_tensor *enc, uint8_t *back) {
    const int64_t rows = enc->rows, step = rows / 64 + 1;
    const uint64_t rb = (uint64_t)enc->cols * (uint64_t)vz_dtype_size(enc->dtype);
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed) if (rows >= 64 && !omp_in_parallel())
    for (int64_t r0 = 0; r0 < rows; r0 += step)
        failed |= c->decode_ref(enc, r0, r0 + step < rows ? r0 + step : rows, back + (uint64_t)r0 * rb) != VZ_OK;
    return failed ? c->decode_ref(enc, 0, rows, back) : VZ_OK;
}

/* Encodes one tensor and proves it decodes (lossless: to the source bytes). */
static vz_status encode_one(const vz_tensor *t, const uint8_t *src, uint64_t n, const rule *r,
                            const vz_convert_opts *o, vz_blob *b, vz_tensor *enc) {
    const vz_codec *c = r ? r->codec : vz_codec_by_id(VZ_CODEC_raw);
    if (!c->supports(t->dtype, t->rows, t->cols)) {
        note(o, "tensor %s: codec %s does not take %s (%lld, %lld); kept raw", t->name, c->name,
             vz_dtype_name(t->dtype), (long long)t->rows, (long long)t->cols);
        c = vz_codec_by_id(VZ_CODEC_raw);
    }
    /* the rule's options belong to its codec, not to the raw fallback (codecs refuse options they ignore) */
    VZ_TRY(c->encode(src, t->dtype, t->rows, t->cols, r && c == r->codec ? &r->opts : &(vz_codec_opts){0}, b));
    *enc = *t;
    enc->codec = c->id;
    enc->params = b->params;
    enc->params_size = b->params_size;
    enc->data = b->data;
    enc->size = b->size;
    VZ_TRY(c->check(enc));
    if (!c->lossless) return VZ_OK;
    uint8_t *back = malloc(n ? n : 1);
    VZ_FAIL_IF(!back, VZ_ERR_NOMEM, "tensor %s: out of memory", t->name);
    vz_status s = decode_back(c, enc, back);
    if (s == VZ_OK && memcmp(back, src, n) != 0)
        s = VZ_FAIL(VZ_ERR_MISMATCH, "tensor %s: codec %s does not decode back to the source bytes; not written",
                    t->name, c->name);
    free(back);
    return s;
}

/* One tensor's encoding, made by a worker thread, written by the caller. */
typedef struct job {
    const vz_tensor *t;
    const rule *r;
    uint64_t n, hash;
    uint8_t *owned;
    vz_blob b;
    vz_tensor enc;
    vz_status s;
} job;

static void job_run(job *j, const vz_convert_opts *o) {
    if (o->cancel && *o->cancel) { /* the caller reports it; no need to encode */
        j->s = VZ_ERR_INTERRUPTED;
        return;
    }
    const uint8_t *src = NULL;
    j->s = source_bytes(j->t, j->n, &src, &j->owned);
    if (j->s == VZ_OK) j->s = encode_one(j->t, src, j->n, j->r, o, &j->b, &j->enc);
    if (j->s == VZ_OK) j->hash = XXH64(src, (size_t)j->n, 0);
}

static void job_free(job *j) {
    vz_blob_free(&j->b);
    free(j->owned);
    memset(j, 0, sizeof *j);
}

/* Tensors are encoded (and proven to decode) by the threads a window at a
 * time, then written in index order (by a writer thread, while the next
 * window encodes: write_window), so the file does not depend on the
 * thread count. A window holds up to WINDOW_PER_THREAD tensors per thread
 * and WINDOW_BYTES of source (at least one tensor). Its big tensors (at
 * least 1 / (2 * threads) of the window's bytes) come first, one at a time,
 * each split by rows among all the threads inside its codec (q4, q8 and
 * lossless encode rows in parallel; decode_back) and would otherwise keep
 * one thread busy long after the others are done (llama3-8b's 1 GiB
 * embedding and output head). The rest run one tensor per thread, largest
 * first, so a thread that drew a small tensor takes the next one instead of
 * waiting for the largest: a layer's tensors differ 8-fold in size. A
 * failing tensor is encoded again on this thread for its message (the
 * error text is thread-local; encoders are deterministic). */
#define WINDOW_PER_THREAD 4
#define WINDOW_BYTES ((uint64_t)2 << 30)

/* Bytes of t's source elements. */
static uint64_t tensor_nbytes(const vz_tensor *t) {
    return (uint64_t)t->rows * (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
}

static int cmp_job_size(const void *a, const void *b) { /* larger n first, then index order */
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    return x->n != y->n ? (x->n < y->n ? 1 : -1) : (x->t > y->t) - (x->t < y->t);
}

/* One window of jobs: tensors [i0, i0 + k), in index order. */
typedef struct window {
    job *jobs;
    int k;
    int32_t i0;
} window;

static void window_free(window *win) {
    for (int j = 0; j < win->k; j++) job_free(&win->jobs[j]);
    win->k = 0;
}

/* A window's encoded tensors are written, in order, by a writer thread
 * while the threads encode the next window: the writes (the kernel copying
 * them into the page cache) took 16-22% of a q8 or lossless conversion
 * (perf) while every encoder waited. Synth tinyllama with one encoder
 * thread on 2 cores: lossless 13.2-13.7 -> 11.7-12.0 s, q8 5.1 -> 4.6-4.9 s;
 * with two encoder threads the writer has no core to itself and the times
 * are the same (bench/results/cpu-convert-2026-11-30.md). Two windows are
 * in memory at once. The writer's error message is thread-local, so it is
 * kept in err for the caller. */
typedef struct writer_ctx {
    vz_writer *w;
    const vz_model *m;
    const vz_convert_opts *o;
    const window *win;
    uint64_t done, total;
    vz_status s;
    char err[1024];
} writer_ctx;

static int write_window(void *p) {
    writer_ctx *c = p;
    const window *win = c->win;
    c->s = VZ_OK;
    for (int j = 0; j < win->k && c->s == VZ_OK; j++) {
        const job *jb = &win->jobs[j];
        if (c->o->cancel && *c->o->cancel) { /* per tensor: an interrupt stops within one write */
            c->s = VZ_FAIL(VZ_ERR_INTERRUPTED, "convert interrupted; nothing written");
            break;
        }
        c->s = vz_writer_add_tensor(c->w, &jb->enc, jb->hash, 1);
        c->done += jb->n;
        if (c->s == VZ_OK && c->o->progress)
            c->o->progress(c->o->user, win->i0 + j + 1, c->m->n_tensors, c->done, c->total, jb->t->name);
    }
    if (c->s != VZ_OK) snprintf(c->err, sizeof c->err, "%s", vz_last_error());
    return 0;
}

/* Waits for the writer (if *writing) and frees its window; returns its
 * status, its message made this thread's when it failed and `report`. */
static vz_status join_writer(thrd_t *th, int *writing, writer_ctx *c, window *win, int report) {
    if (!*writing) return VZ_OK;
    thrd_join(*th, NULL);
    *writing = 0;
    window_free(win);
    if (c->s != VZ_OK && report) vz_error_set(c->err);
    return c->s;
}

/* Encodes the window's jobs (big ones first, each with all the threads;
 * then the rest, one per thread) and checks them in index order. */
static vz_status encode_window(window *win, job **order, int nt, uint64_t bytes, const vz_convert_opts *o) {
    const int k = win->k;
    for (int j = 0; j < k; j++) order[j] = &win->jobs[j];
    qsort(order, (size_t)k, sizeof *order, cmp_job_size);
    int big = 0;
    while (big < k && order[big]->n * 2 * (uint64_t)nt >= bytes) job_run(order[big++], o);
    const int nw = k - big < nt ? k - big : nt;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nw > 1 ? nw : 1) if (nw > 1)
    for (int j = big; j < k; j++) job_run(order[j], o);
    for (int j = 0; j < k; j++) {
        job *jb = &win->jobs[j];
        VZ_FAIL_IF(o->cancel && *o->cancel, VZ_ERR_INTERRUPTED, "convert interrupted; nothing written");
        if (jb->s == VZ_OK) continue;
        job redo = {.t = jb->t, .r = jb->r, .n = jb->n};
        job_run(&redo, o);
        vz_status s = redo.s != VZ_OK ? redo.s : jb->s; /* the message is this thread's when redo failed */
        job_free(&redo);
        if (s != VZ_ERR_MISMATCH) vz_error_prefix("tensor %s", jb->t->name);
        return s;
    }
    return VZ_OK;
}

static vz_status convert_tensors(vz_writer *w, const vz_model *m, spec *sp, const vz_convert_opts *o) {
    const int nt = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1, cap = WINDOW_PER_THREAD * nt;
    job *jobs = calloc(2 * (size_t)cap, sizeof *jobs);
    job **order = calloc((size_t)cap, sizeof *order);
    if (!jobs || !order) {
        free(jobs), free(order);
        return VZ_FAIL(VZ_ERR_NOMEM, "convert: out of memory");
    }
    window win[2] = {{.jobs = jobs}, {.jobs = jobs + cap}};
    writer_ctx wc = {.w = w, .m = m, .o = o};
    for (int32_t i = 0; i < m->n_tensors; i++) wc.total += tensor_nbytes(&m->tensors[i]);
    thrd_t th;
    int cur = 0, writing = 0;
    vz_status s = VZ_OK;
    for (int32_t i0 = 0; i0 < m->n_tensors;) {
        if (o->cancel && *o->cancel) {
            s = VZ_FAIL(VZ_ERR_INTERRUPTED, "convert interrupted; nothing written");
            break;
        }
        window *wn = &win[cur];
        uint64_t bytes = 0;
        wn->i0 = i0, wn->k = 0;
        while (wn->k < cap && i0 + wn->k < m->n_tensors) {
            const vz_tensor *t = &m->tensors[i0 + wn->k];
            const uint64_t n = tensor_nbytes(t);
            if (wn->k > 0 && bytes + n > WINDOW_BYTES) break;
            wn->jobs[wn->k++] = (job){.t = t, .r = pick(sp, t), .n = n};
            bytes += n;
        }
        s = encode_window(wn, order, nt, bytes, o);
        if (s != VZ_OK) break;
        s = join_writer(&th, &writing, &wc, &win[cur ^ 1], 1); /* the window before is written */
        if (s != VZ_OK) break;
        i0 += wn->k;
        wc.win = wn;
        if (thrd_create(&th, write_window, &wc) == thrd_success) {
            writing = 1;
        } else { /* no thread: write it here */
            write_window(&wc);
            window_free(wn);
            if ((s = wc.s) != VZ_OK) break;
        }
        cur ^= 1;
    }
    /* the last window's writer; an earlier error keeps its own message */
    const vz_status ws = join_writer(&th, &writing, &wc, &win[cur ^ 1], s == VZ_OK);
    if (s == VZ_OK) s = ws;
    window_free(&win[0]);
    window_free(&win[1]);
    free(jobs), free(order);
    return s;
}

static vz_status convert_model(vz_writer *w, const vz_model *m, spec *sp, const vz_convert_opts *o) {
    VZ_TRY(vz_writer_set_config(w, &m->cfg, m->format));
    size_t jl = 0;
    const uint8_t *json = m->tok ? vz_tokenizer_json(m->tok, &jl) : NULL;
    if (json) {
        VZ_TRY(vz_writer_set_tokenizer_json(w, json, jl));
    } else if (m->tok) {
        vz_vocab v;
        VZ_TRY(vz_vocab_from_tokenizer(&v, m->tok));
        vz_status s = vz_writer_set_vocab(w, &v);
        vz_vocab_free(&v);
        VZ_TRY(s);
    }
    if (m->chat_template && *m->chat_template) VZ_TRY(vz_writer_set_chat_template(w, m->chat_template));
    VZ_TRY(convert_tensors(w, m, sp, o));
    VZ_FAIL_IF(o->cancel && *o->cancel, VZ_ERR_INTERRUPTED, "convert interrupted; nothing written");
    for (int i = 0; i < sp->n; i++)
        if (!sp->hits[i]) note(o, "codec rule '%s' matched no 2-D tensor", sp->r[i].glob);
    return VZ_OK;
}

vz_status vz_convert(const char *src_path, const char *out_path, const vz_convert_opts *opts) {
    vz_convert_opts def;
    if (!opts) {
        vz_convert_opts_default(&def);
        opts = &def;
    }
    VZ_FAIL_IF(!src_path || !out_path, VZ_ERR_ARG, "vz_convert: NULL path");
    spec *sp = malloc(sizeof *sp);
    VZ_FAIL_IF(!sp, VZ_ERR_NOMEM, "out of memory");
    vz_status s = parse_spec(opts->codec_spec, sp);
    vz_model *m = NULL;
    if (s == VZ_OK) s = vz_model_open(&m, src_path, &opts->model);
    vz_writer *w = NULL;
    if (s == VZ_OK) s = vz_writer_open(&w, out_path);
    if (s == VZ_OK) s = convert_model(w, m, sp, opts);
    if (s == VZ_OK) {
        s = vz_writer_finish(w);
        w = NULL;
    }
    vz_writer_abort(w);
    vz_model_close(m);
    free(sp);
    return s;
}
