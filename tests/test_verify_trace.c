/*
 * test_verify_trace.c - the forward pass's debug trace (vz_session_set_trace:
 * the residual stream after each layer's attention and MLP block at the last
 * evaluated position) and `vramzip verify A B` naming the first layer block
 * whose output differs: a tiny model against copies where one layer's MLP or
 * attention weights are q8 (convert rules), and a lossless copy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/testutil.h"
#include "common/tiny_vz.h"
#include "model/model.h"

#define N_TOK 9
static const int32_t TOKENS[N_TOK] = {1, 4, 30, 7, 7, 12, 2, 19, 25};
#define TRACE_N (TINY_LAYERS * 2 * TINY_DIM)

static vz_session *new_session(vz_model *m, vz_kv_mode kv) {
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_threads = 2;
    so.kv = kv;
    vz_session *s = NULL;
    if (vz_session_create(&s, m, &so) != VZ_OK) fail_msg("session: %s", vz_last_error());
    return s;
}

/* The trace is the model's own state: its last MLP residual, normed and put
 * through the classifier, is the logits; it does not depend on batching or
 * the KV mode, and tracing leaves the logits bit-identical. */
static void test_trace_api(void **state) {
    (void)state;
    char dir[256], path[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.vz", dir);
    assert_int_equal(tiny_vz_write(path, VZ_DTYPE_BF16, 4), VZ_OK);
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_OK);
    float plain[TINY_VOCAB], traced[TINY_VOCAB], steps[TINY_VOCAB], t1[TRACE_N], t2[TRACE_N], t3[TRACE_N];
    vz_session *s = new_session(m, VZ_KV_F32);
    assert_int_equal(vz_session_eval(s, TOKENS, N_TOK, plain, 0), VZ_OK);
    vz_session_reset(s);
    assert_int_equal(vz_session_set_trace(s, t1), VZ_OK);
    assert_int_equal(vz_session_eval(s, TOKENS, N_TOK, traced, 0), VZ_OK);
    assert_memory_equal(plain, traced, sizeof plain);
    vz_session_free(s);
    /* token by token, and with no KV cache: the same trace */
    s = new_session(m, VZ_KV_F32);
    assert_int_equal(vz_session_set_trace(s, t2), VZ_OK);
    for (int i = 0; i < N_TOK; i++) assert_int_equal(vz_session_eval(s, &TOKENS[i], 1, steps, 0), VZ_OK);
    assert_memory_equal(t1, t2, sizeof t1);
    assert_memory_equal(plain, steps, sizeof plain);
    vz_session_free(s);
    s = new_session(m, VZ_KV_OFF);
    assert_int_equal(vz_session_set_trace(s, t3), VZ_OK);
    assert_int_equal(vz_session_eval(s, TOKENS, N_TOK - 1, NULL, 0), VZ_OK);
    assert_memory_not_equal(t1, t3, sizeof t1); /* position N_TOK - 2 */
    assert_int_equal(vz_session_eval(s, &TOKENS[N_TOK - 1], 1, NULL, 0), VZ_OK);
    assert_memory_equal(t1, t3, sizeof t1);
    /* untraced evals leave the buffer alone */
    assert_int_equal(vz_session_set_trace(s, NULL), VZ_OK);
    vz_session_reset(s);
    assert_int_equal(vz_session_eval(s, TOKENS, 3, NULL, 0), VZ_OK);
    assert_memory_equal(t1, t3, sizeof t1);
    vz_session_free(s);
    /* logits = rmsnorm(last MLP residual) . output^T (f64 here: close, not bitwise) */
    const float *x = t1 + (size_t)(2 * TINY_LAYERS - 1) * TINY_DIM;
    double ss = 0;
    for (int k = 0; k < TINY_DIM; k++) ss += (double)x[k] * x[k];
    double inv = 1.0 / sqrt(ss / TINY_DIM + (double)m->cfg.rms_eps);
    float *w = malloc(sizeof(float) * TINY_VOCAB * TINY_DIM);
    int32_t oi = -1;
    for (int32_t i = 0; i < vz_model_n_tensors(m); i++)
        if (&m->tensors[i] == m->output) oi = i;
    assert_int_equal(vz_model_tensor_decode_f32(m, oi, w), VZ_OK);
    for (int v = 0; v < TINY_VOCAB; v++) {
        double l = 0;
        for (int k = 0; k < TINY_DIM; k++) l += (double)x[k] * inv * m->final_norm[k] * w[v * TINY_DIM + k];
        if (fabs(l - plain[v]) > 1e-4 * (1 + fabs(l))) fail_msg("logit %d: %g from the trace, %g evaluated", v, l,
                                                               (double)plain[v]);
    }
    free(w);
    vz_model_close(m);
    vz_test_rmtree(dir);
}

/* verify names the block whose weights were quantized; a lossless copy has none. */
static void test_verify_names_layer(void **state) {
    (void)state;
    static const struct { const char *spec, *layer, *weight; } cases[] = {
        {"model.layers.1.mlp.*=q8,*=raw", "first differing output: layer 1 mlp", "model.layers.1.mlp.gate_proj"},
        {"model.layers.0.mlp.down_proj=q8", "first differing output: layer 0 mlp", "model.layers.0.mlp.down_proj"},
        {"model.layers.1.self_attn.v_proj=q8", "first differing output: layer 1 attention",
         "model.layers.1.self_attn.v_proj"},
        {"lossless", "every layer's attention and MLP output is bit-identical", "every tensor decodes to the same"},
    };
    char dir[256], a[512], b[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(a, sizeof a, "%s/a.vz", dir);
    snprintf(b, sizeof b, "%s/b.vz", dir);
    assert_int_equal(tiny_vz_write(a, VZ_DTYPE_BF16, 8), VZ_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(vz_test_sh(&o, "%s convert %s -o %s -q --codec '%s' 2>&1", vz_test_cli(), a, b, cases[i].spec),
                         0);
        free(o);
        int rc = vz_test_sh(&o, "%s verify %s %s -n 6 -t 2 2>&1", vz_test_cli(), a, b);
        if (rc != 0 || !strstr(o, cases[i].layer) || !strstr(o, cases[i].weight))
            fail_msg("%s: rc %d:\n%s", cases[i].spec, rc, o);
        free(o);
    }
    vz_test_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_api),
        cmocka_unit_test(test_verify_names_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
