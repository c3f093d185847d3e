/*
 * run_chat.c - `vramzip run -i`: a conversation on standard input, one
 * user message per line, each answered in the model's chat format
 * (vz_chat_encode) as it comes. The KV cache is kept across turns: after a
 * reply, only what the format puts after the reply's end-of-turn token is
 * evaluated (from that token on: a reply the model ended has sampled it
 * but not evaluated it, one cut at -n never had it), so earlier turns are
 * never run again. That suffix is read off the whole conversation's ids:
 * the format cuts text at special tokens, so the ids before the reply's
 * end-of-turn token are those of the conversation up to it. A format that
 * rewrites earlier turns (mistral-v3 moves the system message into the
 * newest user message) has the conversation evaluated from the start.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run.h"

static const char *CMD = "run";

typedef struct conv {
    vz_chat_msg msgs[2 * 4096 + 1];
    int32_t n;
} conv;

static int conv_add(conv *c, const char *role, const char *text) {
    if (c->n == (int32_t)(sizeof c->msgs / sizeof c->msgs[0]))
        return fprintf(stderr, "vramzip run: the conversation is too long (%d messages)\n", (int)c->n), 1;
    char *t = strdup(text);
    if (!t) return fprintf(stderr, "vramzip run: out of memory\n"), 1;
    c->msgs[c->n++] = (vz_chat_msg){role, t};
    return 0;
}

int run_chat_ids(const run_args *a, const vz_model *m, const vz_chat_msg *msgs, int32_t n, int gen, int32_t **ids,
                 int32_t *cnt) {
    int32_t need = 0;
    vz_status s = vz_chat_encode(m, a->chat_format, msgs, n, gen, NULL, 0, &need);
    if (need == 0) return cli_fail(CMD, s);
    *ids = malloc(sizeof(int32_t) * (size_t)need);
    if (!*ids) return fprintf(stderr, "vramzip run: out of memory\n"), 1;
    if ((s = vz_chat_encode(m, a->chat_format, msgs, n, gen, *ids, need, cnt)) != VZ_OK) {
        free(*ids), *ids = NULL;
        return cli_fail(CMD, s);
    }
    return 0;
}

/* The ids to evaluate for the newest user message: all of them on the first
 * turn, else the conversation's ids from the last reply's end-of-turn token
 * (the last stop id in the ids up to that reply). *from gets the index; it
 * is 0 and *restart 1 when the ids before that token changed. */
static int turn_ids(const run_args *a, const vz_model *m, const vz_model_info *info, const conv *c, int first,
                    int32_t **ids, int32_t *cnt, int32_t *from, int *restart) {
    *from = 0, *restart = 0;
    if (run_chat_ids(a, m, c->msgs, c->n, 1, ids, cnt)) return 1;
    if (first) return 0;
    int32_t *prev = NULL, np = 0, j = -1;
    if (run_chat_ids(a, m, c->msgs, c->n - 1, 0, &prev, &np)) return free(*ids), 1;
    for (int32_t i = np - 1; i >= 0 && j < 0; i--)
        if (run_is_stop(info, prev[i])) j = i;
    int same = j >= 0 && j < *cnt && !memcmp(prev, *ids, sizeof(int32_t) * (size_t)(j + 1));
    free(prev);
    if (j < 0)
        return free(*ids), fprintf(stderr, "vramzip run: this chat format ends a reply with no stop token of the model; "
                                           "-i cannot continue the conversation\n"), 1;
    if (same) *from = j;
    else *restart = 1;
    return 0;
}

/* Samples the reply after logits, streaming it (its ids with --print-ids),
 * until a stop id, n_predict tokens or a full context; its text is appended
 * to *text (the assistant message of the next turns). */
static int reply(const run_args *a, vz_session *s, vz_sampler *smp, const vz_tokenizer *tok,
                 const vz_model_info *info, float *logits, char **text, size_t *tn) {
    vz_detok dt;
    vz_detok_init(&dt, tok);
    char buf[256];
    int rc = 0;
    for (int64_t g = 0; a->n_predict < 0 || g < a->n_predict; g++) {
        if (cli_interrupted) { rc = 130; break; }
        int32_t id = vz_sampler_sample(smp, logits);
        if (run_is_stop(info, id)) break;
        int32_t len = vz_detok_next(&dt, id, buf, (int32_t)sizeof buf);
        if (a->print_ids) printf(g ? " %d" : "%d", (int)id);
        if (len > 0) {
            if (!a->print_ids) fwrite(buf, 1, (size_t)len, stdout);
            char *t = realloc(*text, *tn + (size_t)len + 1);
            if (!t) { rc = (fprintf(stderr, "\nvramzip run: out of memory\n"), 1); break; }
            memcpy(t + *tn, buf, (size_t)len);
            *tn += (size_t)len, t[*tn] = 0, *text = t;
        }
        fflush(stdout);
        if (vz_session_pos(s) >= vz_session_n_ctx(s)) {
            fprintf(stderr, "\nvramzip run: context full (%d tokens)\n", (int)vz_session_n_ctx(s));
            rc = 1;
            break;
        }
        vz_status st = vz_session_eval(s, &id, 1, logits, 0);
        if (st != VZ_OK) { rc = cli_fail(CMD, st); break; }
    }
    int32_t len = vz_detok_flush(&dt, buf, (int32_t)sizeof buf);
    if (len > 0 && !a->print_ids) fwrite(buf, 1, (size_t)len, stdout);
    printf("\n");
    fflush(stdout);
    return rc;
}

int run_chat(const run_args *a, vz_model *m, const vz_session_opts *so) {
    vz_model_info info;
    vz_status st = vz_model_get_info(m, &info);
    if (st != VZ_OK) return cli_fail(CMD, st);
    const vz_tokenizer *tok = vz_model_tokenizer(m);
    if (!tok) return fprintf(stderr, "vramzip run: -i needs a tokenizer (-z)\n"), 1;
    const vz_sampler_opts po = run_sampler_opts(a, 0);
    vz_session *s = NULL;
    vz_sampler *smp = NULL;
    float *logits = malloc(sizeof(float) * (size_t)info.vocab_size);
    conv *c = calloc(1, sizeof *c);
    int rc = !logits || !c ? (fprintf(stderr, "vramzip run: out of memory\n"), 1) : 0;
    if (!rc && (st = vz_session_create(&s, m, so)) != VZ_OK) rc = cli_fail(CMD, st);
    if (!rc && (st = vz_sampler_create(&smp, info.vocab_size, &po)) != VZ_OK) rc = cli_fail(CMD, st);
    if (!rc && a->system) rc = conv_add(c, "system", a->system);
    char *line = NULL;
    size_t cap = 0;
    int told = 0;
    for (int turn = 0; !rc && !cli_interrupted; turn++) {
        const char *msg = turn == 0 && a->prompt ? a->prompt : NULL;
        if (!msg) {
            ssize_t len = getline(&line, &cap, stdin);
            if (len < 0) break; /* end of input: the conversation is over */
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) { turn--; continue; }
            msg = line;
        }
        int32_t *ids = NULL, n = 0, from = 0;
        int restart = 0;
        if ((rc = conv_add(c, "user", msg)) || (rc = turn_ids(a, m, &info, c, turn == 0, &ids, &n, &from, &restart)))
            break;
        if (restart) {
            if (!told++)
                fprintf(stderr, "vramzip run: this chat format rewrites earlier turns; each turn is evaluated from "
                                "the start of the conversation\n");
            vz_session_reset(s);
        }
        if (n - from > vz_session_n_ctx(s) - vz_session_pos(s)) {
            rc = (fprintf(stderr, "vramzip run: context full (%d tokens; use -c)\n", (int)vz_session_n_ctx(s)), 1);
        } else if ((st = vz_session_eval(s, ids + from, n - from, logits, 0)) != VZ_OK) {
            rc = cli_fail(CMD, st);
        }
        free(ids);
        char *text = NULL;
        size_t tn = 0;
        if (!rc) rc = reply(a, s, smp, tok, &info, logits, &text, &tn);
        if (!rc) rc = conv_add(c, "assistant", text ? text : "");
        free(text);
    }
    free(line);
    for (int32_t i = 0; c && i < c->n; i++) free((char *)c->msgs[i].content);
    free(c);
    vz_sampler_free(smp);
    vz_session_free(s);
    free(logits);
    return rc;
}
