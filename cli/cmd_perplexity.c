/*
 * cmd_perplexity.c - `vramzip perplexity -m MODEL -f TEXT [-c CTX]`, following
 * llama.cpp's llama-perplexity: the whole text is tokenized once (BOS first),
 * cut into floor(n_tokens / CTX) chunks of CTX tokens; each chunk is evaluated
 * from an empty context with its first token replaced by BOS, and only its
 * second half is scored: the logits at positions j = CTX/2 .. CTX-2 predict
 * token j+1 (CTX-1-CTX/2 predictions per chunk). PPL = exp(mean NLL); the
 * +/- is ppl * stddev(NLL)/sqrt(count-1), as llama.cpp prints it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/io.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip perplexity -m MODEL -f TEXT [-c CTX] [--kl-base MODEL] [-t N] [--chunks N]\n\n"
               "  -c, --ctx N       tokens per chunk (default 512); the second half of each chunk is scored\n"
               "  --kl-base MODEL   also report mean KL(base || model) and top-1 agreement vs this model\n"
               "  --chunks N        score at most N chunks (default all)\n"
               "  -t, --threads N   CPU threads (default: OpenMP's)\n"
               "  -z, --tokenizer P tokenizer for a llama2.c .bin\n"
               "  --device cpu|cuda where to run (default cpu)\n"
               "  --vram-budget SIZE  cuda: device memory per session (600M, 4G; default: free VRAM)\n"
               "  --residency MODE  cuda: compressed (default), decompress-at-load, cache\n"
               "Prints the running PPL after each chunk and a last line 'PPL = <value> +/- <err>'.\n");
}

typedef struct ppl_args {
    const char *model, *text, *base;
    int32_t ctx, chunks;
    vz_model_opts mo;
    vz_session_opts so;
} ppl_args;

typedef struct ppl_acc {
    double nll, nll2, kl;
    int64_t count, top1;
} ppl_acc;

static int32_t argmax(const float *l, int32_t v) {
    int32_t k = 0;
    for (int32_t i = 1; i < v; i++)
        if (l[i] > l[k]) k = i;
    return k;
}

static double log_sum_exp(const float *l, int32_t v) {
    double mx = l[argmax(l, v)], s = 0;
    for (int32_t i = 0; i < v; i++) s += exp((double)l[i] - mx);
    return mx + log(s);
}

/* KL(p || q) of two logit rows, in nats. */
static double kl_div(const float *p, const float *q, int32_t v) {
    double lp = log_sum_exp(p, v), lq = log_sum_exp(q, v), kl = 0;
    for (int32_t i = 0; i < v; i++) {
        double a = (double)p[i] - lp;
        kl += exp(a) * (a - ((double)q[i] - lq));
    }
    return kl;
}

static vz_status eval_chunk(vz_session *s, const int32_t *toks, int32_t n, int32_t bos, float *logits) {
    int32_t *t = malloc(sizeof(int32_t) * (size_t)n);
    if (!t) return VZ_ERR_NOMEM;
    memcpy(t, toks, sizeof(int32_t) * (size_t)n);
    if (bos >= 0) t[0] = bos;
    vz_session_reset(s);
    vz_status st = vz_session_eval(s, t, n, logits, 1);
    free(t);
    return st;
}

static void score_chunk(const int32_t *toks, int32_t ctx, int32_t v, const float *lm, const float *lb, ppl_acc *a) {
    for (int32_t j = ctx / 2; j < ctx - 1; j++) {
        const float *row = lm + (size_t)j * (size_t)v;
        double nll = log_sum_exp(row, v) - (double)row[toks[j + 1]];
        a->nll += nll;
        a->nll2 += nll * nll;
        a->count++;
        if (lb) {
            const float *brow = lb + (size_t)j * (size_t)v;
            a->kl += kl_div(brow, row, v);
            a->top1 += argmax(brow, v) == argmax(row, v);
        }
    }
}

static vz_status tokenize_file(const vz_model *m, const char *path, int32_t **toks, int32_t *n) {
    const vz_tokenizer *tok = vz_model_tokenizer(m);
    if (!tok) return VZ_FAIL(VZ_ERR_NOT_FOUND, "the model has no tokenizer (give one with -z)");
    char *text = NULL;
    uint64_t len = 0;
    VZ_TRY(vz_read_file(path, &text, &len, (uint64_t)1 << 30)); /* regular files up to 1 GiB */
    int32_t cap = (int32_t)len + 8;
    *toks = malloc(sizeof(int32_t) * (size_t)cap);
    vz_status s = *toks ? vz_tokenizer_encode(tok, text, (size_t)len, 1, *toks, cap, n)
                        : VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", path);
    free(text);
    return s;
}

static void print_result(const ppl_acc *a, const ppl_args *pa) {
    double mean = a->nll / (double)a->count, ppl = exp(mean), var = a->nll2 / (double)a->count - mean * mean;
    double err = a->count > 1 && var > 0 ? ppl * sqrt(var / (double)(a->count - 1)) : 0;
    printf("\n%lld tokens scored\n", (long long)a->count);
    if (pa->base)
        printf("KL(base || model) mean = %.6f nats, top-1 agreement = %.4f%%\n", a->kl / (double)a->count,
               100.0 * (double)a->top1 / (double)a->count);
    printf("PPL = %.4f +/- %.5f\n", ppl, err);
}

static int run(vz_model *m, vz_model *base, const ppl_args *pa, const int32_t *toks, int32_t n) {
    vz_model_info info;
    vz_model_get_info(m, &info);
    int32_t v = info.vocab_size, ctx = pa->ctx, n_chunk = n / ctx;
    if (pa->chunks > 0 && pa->chunks < n_chunk) n_chunk = pa->chunks;
    if (n_chunk < 1) return cli_usage_error("perplexity", "the text has %d tokens, fewer than one chunk (-c %d)", n, ctx);
    vz_session_opts so = pa->so;
    so.n_ctx = ctx;
    cli_print_plan("perplexity", m, &so);
    vz_session *s = NULL, *sb = NULL;
    float *lm = malloc(sizeof(float) * (size_t)ctx * (size_t)v);
    float *lb = base ? malloc(sizeof(float) * (size_t)ctx * (size_t)v) : NULL;
    vz_status st = lm && (!base || lb) ? vz_session_create(&s, m, &so) : VZ_ERR_NOMEM;
    if (st == VZ_OK && base) st = vz_session_create(&sb, base, &so);
    ppl_acc a = {0};
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d, scoring positions %d..%d of each\n", n, n_chunk, ctx,
            ctx / 2, ctx - 2);
    for (int32_t c = 0; st == VZ_OK && c < n_chunk && !cli_interrupted; c++) {
        const int32_t *ct = toks + (size_t)c * (size_t)ctx;
        st = eval_chunk(s, ct, ctx, info.bos_id, lm);
        if (st == VZ_OK && base) st = eval_chunk(sb, ct, ctx, info.bos_id, lb);
        if (st != VZ_OK) break;
        score_chunk(ct, ctx, v, lm, lb, &a);
        printf("[%d]%.4f,", (int)c + 1, exp(a.nll / (double)a.count));
        fflush(stdout);
    }
    vz_session_free(s);
    vz_session_free(sb);
    free(lm);
    free(lb);
    if (st != VZ_OK) return cli_fail("perplexity", st);
    if (cli_interrupted) fprintf(stderr, "\ninterrupted; result over the chunks done so far\n");
    print_result(&a, pa);
    return 0;
}

static int parse_args(int argc, char **argv, ppl_args *pa) {
    int64_t iv;
    const char *v;
    for (int i = 1; i < argc; i++) {
        const char *x = argv[i];
        if (!strcmp(x, "-h") || !strcmp(x, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(x, "-m") || !strcmp(x, "--model")) {
            if (!(pa->model = cli_value("perplexity", argc, argv, &i))) return 2;
        } else if (!strcmp(x, "-f") || !strcmp(x, "--file")) {
            if (!(pa->text = cli_value("perplexity", argc, argv, &i))) return 2;
        } else if (!strcmp(x, "--kl-base")) {
            if (!(pa->base = cli_value("perplexity", argc, argv, &i))) return 2;
        } else if (!strcmp(x, "-z") || !strcmp(x, "--tokenizer")) {
            if (!(pa->mo.tokenizer_path = cli_value("perplexity", argc, argv, &i))) return 2;
        } else if (!strcmp(x, "-c") || !strcmp(x, "--ctx")) {
            if (!(v = cli_value("perplexity", argc, argv, &i)) || cli_int("perplexity", x, v, 4, 1 << 20, &iv)) return 2;
            pa->ctx = (int32_t)iv;
        } else if (!strcmp(x, "--device")) { /* [plan] */
            if (!(v = cli_value("perplexity", argc, argv, &i)) || cli_device("perplexity", x, v, &pa->so.device))
                return 2;
        } else if (!strcmp(x, "--vram-budget")) {
            if (!(v = cli_value("perplexity", argc, argv, &i))) return 2;
            if (cli_size("perplexity", x, v, &pa->so.vram_budget)) return 2;
        } else if (!strcmp(x, "--residency")) {
            if (!(v = cli_value("perplexity", argc, argv, &i))) return 2;
            if (cli_residency("perplexity", x, v, &pa->so.residency)) return 2;
        } else if (!strcmp(x, "--chunks")) {
            if (!(v = cli_value("perplexity", argc, argv, &i)) || cli_int("perplexity", x, v, 1, 1 << 30, &iv)) return 2;
            pa->chunks = (int32_t)iv;
        } else if (!strcmp(x, "-t") || !strcmp(x, "--threads")) {
            if (!(v = cli_value("perplexity", argc, argv, &i)) || cli_int("perplexity", x, v, 0, 1024, &iv)) return 2;
            pa->so.n_threads = (int32_t)iv;
        } else {
            return cli_usage_error("perplexity", "unexpected argument '%s'", x);
        }
    }
    if (!pa->model || !pa->text) return cli_usage_error("perplexity", "need -m MODEL and -f TEXT");
    const vz_session_opts *so = &pa->so;
    if (so->device != VZ_DEVICE_CUDA && (so->vram_budget || so->residency != VZ_RESIDENCY_COMPRESSED))
        return cli_usage_error("perplexity", "--vram-budget and --residency need --device cuda");
    return -1;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_args pa = {.ctx = 512};
    vz_model_opts_default(&pa.mo);
    vz_session_opts_default(&pa.so);
    int rc = parse_args(argc, argv, &pa);
    if (rc >= 0) return rc;
    vz_model *m = NULL, *base = NULL;
    int32_t *toks = NULL, n = 0;
    vz_status s = vz_model_open(&m, pa.model, &pa.mo);
    if (s == VZ_OK && pa.base) s = vz_model_open(&base, pa.base, &pa.mo);
    if (s != VZ_OK) {
        vz_model_close(m);
        return cli_fail("perplexity", s);
    }
    vz_model_info info, ib;
    vz_model_get_info(m, &info);
    if (base) vz_model_get_info(base, &ib);
    if (pa.ctx > info.max_seq_len || (base && pa.ctx > ib.max_seq_len))
        rc = cli_usage_error("perplexity", "-c %d exceeds the model's context of %d", pa.ctx, info.max_seq_len);
    else if (base && ib.vocab_size != info.vocab_size)
        rc = cli_usage_error("perplexity", "--kl-base vocab %d differs from the model's %d", ib.vocab_size,
                             info.vocab_size);
    else if ((s = tokenize_file(m, pa.text, &toks, &n)) != VZ_OK)
        rc = cli_fail("perplexity", s);
    else {
        cli_catch_signals();
        rc = run(m, base, &pa, toks, n);
    }
    free(toks);
    vz_model_close(m);
    vz_model_close(base);
    return rc;
}
