/*
 * run_batch.c - [batch] `vramzip run` with several prompts (repeated -p,
 * --prompts FILE): one session of N sequences; each prompt is prefilled
 * into its own sequence, then all N generate together
 * (vz_session_generate_batch: on a GPU one batched decode step per token),
 * each with its own seed (S + i). Outputs are printed after the batch, one
 * block per sequence labelled [i/N], cut at EOS; a stats line to stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/io.h"
#include "run.h"

static const char *CMD = "run";

int run_add_prompt(run_args *a, const char *p, const char *what) {
    if (!*p) return cli_usage_error(CMD, "%s: empty prompt (omit -p to start from BOS alone)", what), -1;
    if (a->n_prompts >= VZ_MAX_SEQ)
        return cli_usage_error(CMD, "%s: more than %d prompts (-p and --prompts together)", what, VZ_MAX_SEQ), -1;
    a->prompts[a->n_prompts++] = p;
    return 0;
}

int run_read_prompts(run_args *a) {
    uint64_t size = 0;
    vz_status s = vz_read_file(a->prompts_file, &a->prompts_buf, &size, (uint64_t)1 << 26);
    if (s != VZ_OK) return cli_fail(CMD, s);
    char *p = a->prompts_buf, *end = p + size;
    if (size > 0 && end[-1] == '\n') *--end = '\0'; /* a final newline ends the last line, not an empty one */
    if (size > 0 && end > p && end[-1] == '\r') *--end = '\0';
    if (p == end) return cli_usage_error(CMD, "--prompts %s: no prompts in the file", a->prompts_file), 1;
    for (int line = 1; p <= end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        *nl = '\0';
        if (nl > p && nl[-1] == '\r') nl[-1] = '\0';
        char what[64];
        snprintf(what, sizeof what, "--prompts line %d", line);
        if (run_add_prompt(a, p, what)) return 1;
        p = nl + 1;
    }
    return 0;
}

/* Per-sequence state of the batch. */
typedef struct seq_out {
    int32_t *prompt, n_prompt; /* ids, BOS first */
    int32_t *gen, n_gen, cap;  /* sampled ids, cut at EOS */
    int done;                  /* EOS seen */
} seq_out;

static void print_seq(const run_args *a, const vz_tokenizer *tok, const seq_out *q, int32_t i, int32_t n) {
    printf("[%d/%d] ", (int)i + 1, (int)n);
    if (a->print_ids || !tok) {
        for (int32_t k = 0; k < q->n_gen; k++) printf(k ? " %d" : "%d", (int)q->gen[k]);
    } else {
        vz_detok dt;
        vz_detok_init(&dt, tok);
        char buf[256];
        for (int32_t k = a->chat ? q->n_prompt : 0; k < q->n_prompt + q->n_gen; k++) { /* --chat: the reply alone */
            int32_t id = k < q->n_prompt ? q->prompt[k] : q->gen[k - q->n_prompt];
            int32_t len = vz_detok_next(&dt, id, buf, (int32_t)sizeof buf);
            if (len > 0) fwrite(buf, 1, (size_t)len, stdout);
        }
        int32_t len = vz_detok_flush(&dt, buf, (int32_t)sizeof buf);
        if (len > 0) fwrite(buf, 1, (size_t)len, stdout);
    }
    printf("\n");
}

/* Generates into q[] until n_predict tokens each (n_predict < 0: until
 * every sequence saw EOS or the context is full). */
static vz_status generate_all(const run_args *a, vz_session *s, seq_out *q, int32_t n, int32_t *first,
                              const vz_model_info *info) {
    const int32_t n_ctx = vz_session_n_ctx(s);
    int32_t seqs[VZ_MAX_SEQ], fst[VZ_MAX_SEQ], *out = NULL;
    vz_sampler_opts so[VZ_MAX_SEQ];
    vz_status st = VZ_OK;
    for (;;) {
        int32_t na = 0, room = n_ctx;
        for (int32_t i = 0; i < n; i++) {
            if (q[i].done || q[i].n_gen >= q[i].cap) continue;
            so[na] = run_sampler_opts(a, (uint64_t)i);
            seqs[na] = i, fst[na++] = first[i];
            if (n_ctx - vz_session_seq_pos(s, i) < room) room = n_ctx - vz_session_seq_pos(s, i);
        }
        int32_t k = a->n_predict >= 0 ? (int32_t)a->n_predict : 256; /* -1: chunks, finished sequences leave */
        if (room < k) k = room;
        if (na == 0 || k <= 0 || cli_interrupted) break;
        free(out);
        out = malloc(sizeof(int32_t) * (size_t)na * (size_t)k);
        if (!out) return VZ_ERR_NOMEM;
        if ((st = vz_session_generate_batch(s, na, seqs, fst, k, so, out)) != VZ_OK) break;
        for (int32_t j = 0; j < na; j++) {
            seq_out *o = &q[seqs[j]];
            for (int32_t t = 0; t < k && !o->done && o->n_gen < o->cap; t++) {
                if (run_is_stop(info, out[(size_t)j * k + t])) o->done = 1;
                else o->gen[o->n_gen++] = out[(size_t)j * k + t];
            }
            first[seqs[j]] = out[(size_t)j * k + k - 1];
        }
        if (a->n_predict >= 0) break;
        if (room == k) {
            fprintf(stderr, "vramzip run: context full (%d tokens); stopping\n", (int)n_ctx);
            break;
        }
    }
    free(out);
    return st;
}

/* Prefills every prompt but its last token into its sequence; first[i] gets that token. */
static int prefill(vz_session *s, seq_out *q, int32_t n, int32_t *first) {
    for (int32_t i = 0; i < n; i++) {
        if (q[i].n_prompt > vz_session_n_ctx(s))
            return fprintf(stderr, "vramzip run: prompt %d has %d tokens, context holds %d (use -c)\n", (int)i + 1,
                           (int)q[i].n_prompt, (int)vz_session_n_ctx(s)), 1;
        vz_status st = vz_session_eval_seq(s, i, q[i].prompt, q[i].n_prompt - 1, NULL, 0);
        if (st != VZ_OK) return cli_fail(CMD, st);
        first[i] = q[i].prompt[q[i].n_prompt - 1];
    }
    return 0;
}

int run_batch(const run_args *a, vz_model *m) {
    vz_model_info info;
    vz_status st = vz_model_get_info(m, &info);
    if (st != VZ_OK) return cli_fail(CMD, st);
    const int32_t n = a->n_prompts;
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_ctx = (int32_t)a->n_ctx, so.n_threads = (int32_t)a->threads, so.kv = a->kv, so.device = a->device;
    so.vram_budget = a->vram_budget, so.residency = a->residency, so.n_seq = n;
    cli_print_plan(CMD, m, &so);
    seq_out q[VZ_MAX_SEQ];
    memset(q, 0, sizeof q);
    int32_t first[VZ_MAX_SEQ];
    vz_session *s = NULL;
    int rc = 0;
    for (int32_t i = 0; i < n && !rc; i++) rc = run_prompt_ids(a, a->prompts[i], m, &info, &q[i].prompt, &q[i].n_prompt);
    if (!rc && (st = vz_session_create(&s, m, &so)) != VZ_OK) rc = cli_fail(CMD, st);
    int32_t n_ctx = s ? vz_session_n_ctx(s) : 0, n_prompt = 0, n_gen = 0;
    for (int32_t i = 0; i < n && !rc; i++) {
        q[i].cap = a->n_predict >= 0 && a->n_predict < n_ctx ? (int32_t)a->n_predict : n_ctx;
        q[i].gen = malloc(sizeof(int32_t) * (size_t)(q[i].cap > 0 ? q[i].cap : 1));
        if (!q[i].gen) rc = (fprintf(stderr, "vramzip run: out of memory\n"), 1);
        n_prompt += q[i].n_prompt;
    }
    double t0 = cli_now(), t1 = t0, t2 = t0;
    if (!rc) rc = prefill(s, q, n, first);
    t1 = cli_now();
    if (!rc && (st = generate_all(a, s, q, n, first, &info)) != VZ_OK) rc = cli_fail(CMD, st);
    t2 = cli_now();
    if (!rc && cli_interrupted) rc = 130;
    for (int32_t i = 0; i < n && (!rc || rc == 130); i++) {
        print_seq(a, vz_model_tokenizer(m), &q[i], i, n);
        n_gen += q[i].n_gen;
    }
    fflush(stdout);
    if (!rc || rc == 130)
        fprintf(stderr,
                "vramzip run: %d sequences | prompts %d tok %.2f tok/s | generated %d tok %.2f tok/s (all "
                "sequences), %.2f tok/s per sequence | seed %llu (sequence i: seed + i - 1)\n",
                (int)n, (int)n_prompt, t1 > t0 ? n_prompt / (t1 - t0) : 0.0, (int)n_gen,
                t2 > t1 ? n_gen / (t2 - t1) : 0.0, t2 > t1 ? (double)n_gen / n / (t2 - t1) : 0.0,
                (unsigned long long)a->seed);
    for (int32_t i = 0; i < n; i++) {
        free(q[i].prompt);
        free(q[i].gen);
    }
    vz_session_free(s);
    return rc;
}
