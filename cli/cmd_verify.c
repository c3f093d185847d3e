/*
 * cmd_verify.c - `vramzip verify A [B]`. One model: load with every checksum
 * checked (encoded bytes, and decoded source bytes of lossless tensors) and
 * decode every tensor; exit 1 naming the first corrupt tensor. Two models:
 * evaluate both on the same tokens and report logit errors (max abs, max rel
 * = |a-b| / max(|a|, |b|, 1e-6 * max|a| over the position), KL(A||B), top-1
 * agreement, first divergent position), the first tensor whose decoded
 * weights differ, and the first layer whose OUTPUT differs (residual stream
 * after each attention and MLP block, traced at the first divergent position
 * via vz_session_set_trace); exit 1 if both are lossless and the logits are
 * not bit-identical.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip verify A.vz              check every checksum and decode every tensor\n"
               "       vramzip verify A B [-p TEXT] [-n N] [-z TOK] [-t THREADS] [--device cpu|cuda] [--kv f32|f16|off]\n"
               "                                         compare two models' logits on the same tokens\n\n"
               "Tokens: BOS + TEXT (tokenized by A) if -p is given, else BOS + A's greedy continuation;\n"
               "N positions in all (default 32). Both models are evaluated with the same calls.\n"
               "Reports the first differing weight tensor and, at the first position whose logits differ,\n"
               "the first layer whose attention or MLP output (the residual stream after it) differs.\n"
               "--device cuda runs both models on the GPU; --kv sets the KV cache precision (default f32).\n"
               "Exit 1 on corruption, or when both models are lossless and the logits differ in any bit.\n");
}

static int check_one(const char *path, const vz_model_opts *base) {
    vz_model_opts o = *base;
    o.check = 1;
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, &o);
    if (s != VZ_OK) return cli_fail("verify", s);
    int32_t n = vz_model_n_tensors(m);
    uint64_t params = 0;
    for (int32_t i = 0; i < n && s == VZ_OK; i++) {
        vz_tensor_info ti;
        s = vz_model_tensor_info(m, i, &ti);
        uint64_t e = 1;
        for (int d = 0; d < ti.ndim; d++) e *= (uint64_t)ti.shape[d];
        float *buf = malloc(sizeof(float) * e);
        if (!buf) s = VZ_ERR_NOMEM;
        if (s == VZ_OK) s = vz_model_tensor_decode_f32(m, i, buf);
        free(buf);
        params += e;
    }
    vz_model_close(m);
    if (s != VZ_OK) return cli_fail("verify", s);
    printf("%s: OK: %d tensors (%llu weights): checksums verified, every tensor decodes\n", path, (int)n,
           (unsigned long long)params);
    return 0;
}

static int is_lossless_model(const vz_model *m) {
    for (int32_t i = 0; i < vz_model_n_tensors(m); i++) {
        vz_tensor_info ti;
        int32_t ll = 0;
        const char *name;
        if (vz_model_tensor_info(m, i, &ti) != VZ_OK) return 0;
        for (int32_t k = 0; (name = vz_codec_info(k, NULL, &ll)); k++) { /* "lossless:k4" is lossless */
            const size_t nl = strlen(name);
            if (!strncmp(name, ti.codec_name, nl) && (!ti.codec_name[nl] || ti.codec_name[nl] == ':')) break;
        }
        if (!name || !ll) return 0;
    }
    return 1;
}

/* Layer of a tensor for ordering: embeddings first, then layers, then the rest. */
static int64_t layer_key(const char *name) {
    if (strstr(name, "embed_tokens")) return -1;
    int l;
    if (sscanf(name, "model.layers.%d.", &l) == 1) return l;
    return 1 << 30;
}

static int32_t find_tensor(const vz_model *m, const char *name) {
    for (int32_t i = 0; i < vz_model_n_tensors(m); i++) {
        vz_tensor_info ti;
        if (vz_model_tensor_info(m, i, &ti) == VZ_OK && !strcmp(ti.name, name)) return i;
    }
    return -1;
}

/* Compares tensor ia of a with its namesake in b: 0 same, 1 the decoded values
 * differ, 2 b has no such tensor, 3 the shapes differ. */
static int tensor_differs(const vz_model *a, const vz_model *b, int32_t ia, double *maxd) {
    vz_tensor_info ta, tb;
    vz_model_tensor_info(a, ia, &ta);
    int32_t ib = find_tensor(b, ta.name);
    *maxd = INFINITY;
    if (ib < 0) return 2;
    vz_model_tensor_info(b, ib, &tb);
    uint64_t n = 1;
    for (int d = 0; d < ta.ndim; d++) n *= (uint64_t)ta.shape[d];
    if (ta.ndim != tb.ndim || memcmp(ta.shape, tb.shape, sizeof(int64_t) * (size_t)ta.ndim) != 0) return 3;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    int diff = 1;
    if (x && y && vz_model_tensor_decode_f32(a, ia, x) == VZ_OK && vz_model_tensor_decode_f32(b, ib, y) == VZ_OK) {
        diff = memcmp(x, y, sizeof(float) * n) != 0;
        *maxd = 0;
        for (uint64_t k = 0; k < n; k++) {
            double d = fabs((double)x[k] - (double)y[k]);
            if (d > *maxd || d != d) *maxd = d;
        }
    }
    free(x);
    free(y);
    return diff;
}

static void first_differing_tensor(const vz_model *a, const vz_model *b) {
    int32_t n = vz_model_n_tensors(a), best = -1, why = 0;
    int64_t best_key = 0;
    double best_d = 0;
    for (int32_t i = 0; i < n; i++) {
        vz_tensor_info ti;
        double d;
        vz_model_tensor_info(a, i, &ti);
        int64_t key = layer_key(ti.name);
        if (best >= 0 && key >= best_key) continue;
        int r = tensor_differs(a, b, i, &d);
        if (r) best = i, best_key = key, best_d = d, why = r;
    }
    if (best < 0) {
        printf("weights: every tensor decodes to the same f32 values\n");
        return;
    }
    vz_tensor_info ti;
    vz_model_tensor_info(a, best, &ti);
    if (why == 1)
        printf("weights: first differing tensor %s (codec %s in A; max |diff| %.6g)\n", ti.name, ti.codec_name, best_d);
    else
        printf("weights: first differing tensor %s (%s)\n", ti.name, why == 2 ? "missing in B" : "shapes differ");
}

typedef struct cmp {
    double max_abs, max_rel, kl_sum, kl_max;
    int32_t n, top1_agree, first_bits, first_top1;
} cmp;

static int32_t argmax(const float *l, int32_t v) {
    int32_t k = 0;
    for (int32_t i = 1; i < v; i++)
        if (l[i] > l[k]) k = i;
    return k;
}

/* log-softmax of v logits in double. */
static void log_softmax(const float *l, int32_t v, double *out) {
    double mx = l[argmax(l, v)], sum = 0;
    for (int32_t i = 0; i < v; i++) sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    for (int32_t i = 0; i < v; i++) out[i] = (double)l[i] - lse;
}

static void compare_pos(const float *a, const float *b, int32_t v, double *la, double *lb, cmp *c, int32_t pos) {
    double amax = 0, kl = 0;
    for (int32_t i = 0; i < v; i++) amax = fmax(amax, fabs((double)a[i]));
    for (int32_t i = 0; i < v; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double den = fmax(fmax(fabs((double)a[i]), fabs((double)b[i])), 1e-6 * amax);
        c->max_abs = fmax(c->max_abs, d);
        if (den > 0) c->max_rel = fmax(c->max_rel, d / den);
    }
    log_softmax(a, v, la);
    log_softmax(b, v, lb);
    for (int32_t i = 0; i < v; i++) kl += exp(la[i]) * (la[i] - lb[i]);
    c->kl_sum += kl;
    c->kl_max = fmax(c->kl_max, kl);
    int same = argmax(a, v) == argmax(b, v);
    c->top1_agree += same;
    if (c->first_bits < 0 && memcmp(a, b, sizeof(float) * (size_t)v) != 0) c->first_bits = pos;
    if (c->first_top1 < 0 && !same) c->first_top1 = pos;
    c->n++;
}

/* BOS + prompt (tokenized by a), or BOS + a's greedy continuation. */
static vz_status pick_tokens(vz_model *a, const vz_session_opts *so, const char *prompt, int32_t n, int32_t *toks,
                             int32_t *n_out) {
    const vz_tokenizer *tok = vz_model_tokenizer(a);
    vz_model_info info;
    vz_model_get_info(a, &info);
    if (prompt) {
        if (!tok) return VZ_ERR_NOT_FOUND;
        int32_t cap = (int32_t)strlen(prompt) + 8, got = 0;
        int32_t *all = malloc(sizeof(int32_t) * (size_t)cap);
        vz_status st = all ? vz_tokenizer_encode(tok, prompt, strlen(prompt), 1, all, cap, &got) : VZ_ERR_NOMEM;
        *n_out = got < n ? got : n;
        if (st == VZ_OK) memcpy(toks, all, sizeof(int32_t) * (size_t)*n_out);
        free(all);
        return st;
    }
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, a, so);
    float *l = malloc(sizeof(float) * (size_t)info.vocab_size);
    if (st == VZ_OK && !l) st = VZ_ERR_NOMEM;
    toks[0] = info.bos_id >= 0 ? info.bos_id : 0;
    for (int32_t i = 0; st == VZ_OK && i + 1 < n; i++) {
        st = vz_session_eval(s, &toks[i], 1, l, 0);
        if (st == VZ_OK) toks[i + 1] = argmax(l, info.vocab_size);
    }
    *n_out = n;
    free(l);
    vz_session_free(s);
    return st;
}

static vz_status eval_all(vz_model *m, const vz_session_opts *so, const int32_t *toks, int32_t n, float *logits) {
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, m, so);
    if (st == VZ_OK) st = vz_session_eval(s, toks, n, logits, 1);
    vz_session_free(s);
    return st;
}

/* The traced residual streams (n_layers, 2, dim) of m at the last of toks[0..n). */
static vz_status trace_at(vz_model *m, const vz_session_opts *so, const int32_t *toks, int32_t n, float *tr) {
    vz_session *s = NULL;
    vz_status st = vz_session_create(&s, m, so);
    if (st == VZ_OK) st = vz_session_set_trace(s, tr);
    if (st == VZ_OK) st = vz_session_eval(s, toks, n, NULL, 0);
    vz_session_free(s);
    return st;
}

static double max_abs_diff(const float *x, const float *y, int32_t n) {
    double m = 0;
    for (int32_t k = 0; k < n; k++) {
        double d = fabs((double)x[k] - (double)y[k]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* Reports the first layer block (in evaluation order) whose output at
 * position pos differs in any bit; for lossy pairs also each layer's max
 * |diff| after its MLP. Both models must have the same dim and n_layers. */
static vz_status first_differing_layer(vz_model *a, vz_model *b, const vz_session_opts *so, const int32_t *toks,
                                       int32_t pos, int lossless) {
    vz_model_info ia, ib;
    vz_model_get_info(a, &ia);
    vz_model_get_info(b, &ib);
    if (ia.dim != ib.dim || ia.n_layers != ib.n_layers) {
        printf("layer outputs: not compared (dim/n_layers differ)\n");
        return VZ_OK;
    }
    const int32_t dim = ia.dim, nl = ia.n_layers;
    const size_t tn = 2 * (size_t)nl * (size_t)dim;
    float *ta = malloc(sizeof(float) * tn), *tb = malloc(sizeof(float) * tn);
    vz_status st = ta && tb ? VZ_OK : VZ_ERR_NOMEM;
    if (st == VZ_OK) st = trace_at(a, so, toks, pos + 1, ta);
    if (st == VZ_OK) st = trace_at(b, so, toks, pos + 1, tb);
    int32_t first = -1;
    for (int32_t k = 0; st == VZ_OK && k < 2 * nl && first < 0; k++)
        if (memcmp(ta + (size_t)k * dim, tb + (size_t)k * dim, sizeof(float) * (size_t)dim) != 0) first = k;
    if (st == VZ_OK && first < 0)
        printf("layer outputs at position %d: every layer's attention and MLP output is bit-identical\n", (int)pos);
    else if (st == VZ_OK)
        printf("layer outputs at position %d: first differing output: layer %d %s (residual after the block; "
               "max |diff| %.6g)\n", (int)pos, (int)(first / 2), first % 2 ? "mlp" : "attention",
               max_abs_diff(ta + (size_t)first * dim, tb + (size_t)first * dim, dim));
    if (st == VZ_OK && first >= 0 && !lossless) {
        printf("layer outputs at position %d: max |diff| after each layer:", (int)pos);
        for (int32_t l = 0; l < nl; l++)
            printf(" %d:%.3g", (int)l,
                   max_abs_diff(ta + (size_t)(2 * l + 1) * dim, tb + (size_t)(2 * l + 1) * dim, dim));
        printf("\n");
    }
    free(ta), free(tb);
    return st;
}

typedef struct verify_args {
    const char *a, *b, *prompt;
    int32_t n;
    vz_model_opts mo;
    vz_session_opts so;
} verify_args;

static int report(const cmp *c, int lossless, int identical) {
    printf("logits over %d positions: max abs err %.6g, max rel err %.6g\n", (int)c->n, c->max_abs, c->max_rel);
    printf("KL(A||B) mean %.6g max %.6g nats; top-1 agreement %d/%d (%.2f%%)\n", c->kl_sum / c->n, c->kl_max,
           (int)c->top1_agree, (int)c->n, 100.0 * c->top1_agree / c->n);
    if (identical) printf("logits bit-identical at every position\n");
    else printf("first divergent position: %d (bits), %d (top-1; -1 = none)\n", (int)c->first_bits,
                (int)c->first_top1);
    if (lossless && !identical) {
        fprintf(stderr, "vramzip verify: error VZ_ERR_MISMATCH: both models are lossless but their logits "
                        "differ (first at position %d)\n", (int)c->first_bits);
        return 1;
    }
    return 0;
}

static int compare_models(vz_model *a, vz_model *b, const verify_args *va) {
    vz_model_info ia, ib;
    vz_model_get_info(a, &ia);
    vz_model_get_info(b, &ib);
    if (ia.vocab_size != ib.vocab_size)
        return cli_usage_error("verify", "vocab sizes differ (%d vs %d)", ia.vocab_size, ib.vocab_size);
    int32_t n = va->n, v = ia.vocab_size;
    if (n > ia.max_seq_len) n = ia.max_seq_len;
    if (n > ib.max_seq_len) n = ib.max_seq_len;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)n);
    float *la = malloc(sizeof(float) * (size_t)n * (size_t)v), *lb = malloc(sizeof(float) * (size_t)n * (size_t)v);
    double *wa = malloc(sizeof(double) * (size_t)v), *wb = malloc(sizeof(double) * (size_t)v);
    vz_status s = toks && la && lb && wa && wb ? VZ_OK : VZ_ERR_NOMEM;
    if (s == VZ_OK) s = pick_tokens(a, &va->so, va->prompt, n, toks, &n);
    if (s == VZ_OK) s = eval_all(a, &va->so, toks, n, la);
    if (s == VZ_OK) s = eval_all(b, &va->so, toks, n, lb);
    int rc = s == VZ_OK ? 0 : cli_fail("verify", s);
    if (s == VZ_OK) {
        cmp c = {.first_bits = -1, .first_top1 = -1};
        for (int32_t p = 0; p < n; p++)
            compare_pos(la + (size_t)p * v, lb + (size_t)p * v, v, wa, wb, &c, p);
        int identical = memcmp(la, lb, sizeof(float) * (size_t)n * (size_t)v) == 0;
        int lossless = is_lossless_model(a) && is_lossless_model(b);
        first_differing_tensor(a, b);
        s = first_differing_layer(a, b, &va->so, toks, c.first_bits >= 0 ? c.first_bits : n - 1, lossless);
        rc = s == VZ_OK ? report(&c, lossless, identical) : cli_fail("verify", s);
    }
    free(toks), free(la), free(lb), free(wa), free(wb);
    return rc;
}

static int parse_args(int argc, char **argv, verify_args *va) {
    int64_t iv;
    const char *v;
    for (int i = 1; i < argc; i++) {
        const char *x = argv[i];
        if (!strcmp(x, "-h") || !strcmp(x, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(x, "-p") || !strcmp(x, "--prompt")) {
            if (!(va->prompt = cli_value("verify", argc, argv, &i))) return 2;
        } else if (!strcmp(x, "-n")) {
            if (!(v = cli_value("verify", argc, argv, &i)) || cli_int("verify", x, v, 1, 1 << 20, &iv)) return 2;
            va->n = (int32_t)iv;
        } else if (!strcmp(x, "-t") || !strcmp(x, "--threads")) {
            if (!(v = cli_value("verify", argc, argv, &i)) || cli_int("verify", x, v, 0, 1024, &iv)) return 2;
            va->so.n_threads = (int32_t)iv;
        } else if (!strcmp(x, "--device")) {
            if (!(v = cli_value("verify", argc, argv, &i)) || cli_device("verify", x, v, &va->so.device)) return 2;
        } else if (!strcmp(x, "--kv")) {
            if (!(v = cli_value("verify", argc, argv, &i)) || cli_kv("verify", x, v, 1, &va->so.kv)) return 2;
        } else if (!strcmp(x, "-z") || !strcmp(x, "--tokenizer")) {
            if (!(va->mo.tokenizer_path = cli_value("verify", argc, argv, &i))) return 2;
        } else if (x[0] == '-' && x[1]) {
            return cli_usage_error("verify", "unknown option '%s'", x);
        } else if (!va->a) {
            va->a = x;
        } else if (!va->b) {
            va->b = x;
        } else {
            return cli_usage_error("verify", "at most two models");
        }
    }
    if (!va->a) return cli_usage_error("verify", "no model given");
    return -1;
}

int cmd_verify(int argc, char **argv) {
    verify_args va = {.n = 32};
    vz_model_opts_default(&va.mo);
    vz_session_opts_default(&va.so);
    int rc = parse_args(argc, argv, &va);
    if (rc >= 0) return rc;
    if (!va.b) return check_one(va.a, &va.mo);
    vz_model *a = NULL, *b = NULL;
    vz_status s = vz_model_open(&a, va.a, &va.mo);
    if (s == VZ_OK) s = vz_model_open(&b, va.b, &va.mo);
    rc = s == VZ_OK ? compare_models(a, b, &va) : cli_fail("verify", s);
    vz_model_close(a);
    vz_model_close(b);
    return rc;
}
