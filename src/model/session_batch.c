/*
 * session_batch.c - [batch] several sequences of one session decoded
 * together (vramzip.h: vz_session_eval_batch, vz_session_generate_batch).
 * A CUDA session runs one batched step for all of them (matvecs once for
 * the n tokens, attention per sequence over its own KV slot, sampling per
 * sequence); so does the CPU backend (vz_forward_seqs: one pass over the
 * weights for the n rows, each output a vz_dot as alone), except without
 * a KV cache (VZ_KV_OFF recomputes each sequence's history: one after
 * another). Either way each sequence's results are bitwise those of the
 * sequence evaluated alone.
 */
#include <stdlib.h>
#include <string.h>

#include "model/session.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

/* Checks n lanes (seqs NULL: 0..n-1) into q[]: distinct sequences of s, each
 * with room for `need` more positions (VZ_ERR_CONTEXT otherwise); pos[] gets
 * their positions. */
static vz_status check_lanes(const vz_session *s, int32_t n, const int32_t *seqs, int32_t need, int32_t *q,
                             int32_t *pos) {
    VZ_FAIL_IF(n < 1 || n > s->n_seq, VZ_ERR_ARG, "batch: %d sequences, the session holds %d (n_seq)", (int)n,
               (int)s->n_seq);
    for (int32_t i = 0; i < n; i++) {
        q[i] = seqs ? seqs[i] : i;
        VZ_FAIL_IF(q[i] < 0 || q[i] >= s->n_seq, VZ_ERR_ARG, "batch: sequence %d outside [0, %d)", (int)q[i],
                   (int)s->n_seq);
        for (int32_t j = 0; j < i; j++)
            VZ_FAIL_IF(q[j] == q[i], VZ_ERR_ARG, "batch: sequence %d appears twice", (int)q[i]);
        pos[i] = vz_session_seq_pos(s, q[i]);
        VZ_FAIL_IF(need > s->n_ctx - pos[i], VZ_ERR_CONTEXT,
                   "context full: sequence %d at position %d has no room for %d tokens (n_ctx %d)", (int)q[i],
                   (int)pos[i], (int)need, (int)s->n_ctx);
    }
    return VZ_OK;
}

static vz_status check_tokens(const vz_session *s, int32_t n, const int32_t *tokens) {
    for (int32_t i = 0; i < n; i++)
        VZ_FAIL_IF(tokens[i] < 0 || tokens[i] >= s->m->cfg.vocab_size, VZ_ERR_ARG,
                   "batch: token %d (sequence index %d) outside vocab %d", (int)tokens[i], (int)i,
                   (int)s->m->cfg.vocab_size);
    return VZ_OK;
}

/* Adds k to the position of each of the n sequences q[]. */
static void advance(vz_session *s, int32_t n, const int32_t *q, int32_t k) {
    for (int32_t i = 0; i < n; i++) {
        if (q[i] == s->cur) s->pos += k;
        else s->seq[q[i]].pos += k;
    }
}

/* [batch] The CPU step of n sequences q[] with a KV cache: token tokens[i]
 * at the next position of sequence q[i], logits (n * vocab, or NULL) as
 * vz_session_eval_seq would give them one by one; positions and histories
 * advance by one. */
static void step_cpu(vz_session *s, int32_t n, const int32_t *q, const int32_t *tokens, float *logits) {
    vz_kv *kvs[VZ_MAX_SEQ] = {0};
    int32_t pos[VZ_MAX_SEQ] = {0};
    for (int32_t i = 0; i < n; i++) {
        kvs[i] = q[i] == s->cur ? &s->kv : &s->seq[q[i]].kv;
        pos[i] = vz_session_seq_pos(s, q[i]);
    }
    vz_forward_seqs(s, kvs, pos, tokens, n, logits);
    for (int32_t i = 0; i < n; i++) (q[i] == s->cur ? s->history : s->seq[q[i]].history)[pos[i]] = tokens[i];
    advance(s, n, q, 1);
}

vz_status vz_session_eval_batch(vz_session *s, int32_t n, const int32_t *seqs, const int32_t *tokens, float *logits) {
    VZ_FAIL_IF(!s || !tokens, VZ_ERR_ARG, "vz_session_eval_batch: NULL argument");
    int32_t q[VZ_MAX_SEQ], pos[VZ_MAX_SEQ];
    VZ_TRY(check_lanes(s, n, seqs, 1, q, pos));
    VZ_TRY(check_tokens(s, n, tokens));
#ifdef VZ_HAVE_CUDA
    if (s->cuda) {
        VZ_TRY(vz_cuda_session_step_batch(s->cuda, n, q, tokens, pos, logits));
        advance(s, n, q, 1);
        return VZ_OK;
    }
#endif
    if (s->kv_mode != VZ_KV_OFF) {
        step_cpu(s, n, q, tokens, logits);
        return VZ_OK;
    }
    const size_t vocab = (size_t)s->m->cfg.vocab_size;
    for (int32_t i = 0; i < n; i++)
        VZ_TRY(vz_session_eval_seq(s, q[i], &tokens[i], 1, logits ? logits + (size_t)i * vocab : NULL, 0));
    return VZ_OK;
}

/* vz_session_generate_batch on the CPU with a KV cache: one step_cpu per
 * token for all n sequences, each sampled by its own sampler (so[i], its
 * own seed), as generate_cpu samples one sequence. */
static vz_status generate_batch_cpu(vz_session *s, int32_t n, const int32_t *q, const int32_t *first, int32_t n_tok,
                                    const vz_sampler_opts *so, int32_t *out) {
    const size_t vocab = (size_t)s->m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * vocab * (size_t)n);
    vz_sampler *smp[VZ_MAX_SEQ] = {0};
    int32_t tok[VZ_MAX_SEQ];
    vz_status st = logits ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "generate: logits of %d sequences", (int)n);
    for (int32_t i = 0; st == VZ_OK && i < n; i++) st = vz_sampler_create(&smp[i], (int32_t)vocab, &so[i]);
    memcpy(tok, first, sizeof(int32_t) * (size_t)n);
    for (int32_t k = 0; st == VZ_OK && k < n_tok; k++) {
        step_cpu(s, n, q, tok, logits);
        for (int32_t i = 0; i < n; i++)
            tok[i] = out[(size_t)i * (size_t)n_tok + (size_t)k] = vz_sampler_sample(smp[i], logits + (size_t)i * vocab);
    }
    for (int32_t i = 0; i < n; i++) vz_sampler_free(smp[i]);
    free(logits);
    return st;
}

vz_status vz_session_generate_batch(vz_session *s, int32_t n, const int32_t *seqs, const int32_t *first,
                                    int32_t n_tok, const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !first || !so || n_tok < 0 || (n_tok > 0 && !out), VZ_ERR_ARG,
               "vz_session_generate_batch: bad arguments");
    int32_t q[VZ_MAX_SEQ], pos[VZ_MAX_SEQ];
    VZ_TRY(check_lanes(s, n, seqs, n_tok, q, pos));
    VZ_TRY(check_tokens(s, n, first));
    if (n_tok == 0) return VZ_OK;
#ifdef VZ_HAVE_CUDA
    if (s->cuda) {
        VZ_TRY(vz_cuda_session_generate_batch(s->cuda, n, q, first, pos, n_tok, so, out));
        advance(s, n, q, n_tok);
        return VZ_OK;
    }
#endif
    if (s->kv_mode != VZ_KV_OFF) return generate_batch_cpu(s, n, q, first, n_tok, so, out);
    for (int32_t i = 0; i < n; i++) {
        vz_session_select(s, q[i]);
        VZ_TRY(vz_session_generate_cur(s, first[i], n_tok, &so[i], out + (size_t)i * (size_t)n_tok));
    }
    return VZ_OK;
}
