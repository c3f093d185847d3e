/*
 * test_hf_archs.c - the Hugging Face variants beyond Llama 2: rope_scaling
 * (Llama 3.1+: "llama3"; "linear") and Qwen 2 (q/k/v biases, tied head), on
 * the CPU. Logits of synth checkpoints are checked against
 * tests/ref_forward.py (transformers' forward in Python doubles; plain tiny
 * too, which checks the reference against the engine's validated Llama path);
 * a .vz made from them keeps the variant (a required XCFG section) and gives
 * the same bits; linear factor 1 gives the unscaled bits; kinds the engine
 * cannot run are refused with a message (the GPU: test_cuda_archs.c). The scaled
 * frequencies themselves are checked against transformers' formulas in
 * test_ops.c.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <math.h>

#include "codec/codec.h"
#include "common/testutil.h"
#include "model/model.h"

static char *slurp(const char *path, size_t *len) {
    char *p = vz_test_read_file(path, len);
    if (!p) fail_msg("cannot read %s", path);
    return p;
}

/* A .vz holding what runs its model differently: the file holds the bytes
 * `needle` (its XCFG section) and `inspect` prints `line`. (The GPU runs
 * it: test_cuda_archs.c.) */
static void check_vz_carries(const char *vz, const char *needle, const char *line) {
    size_t vn;
    char *vb = slurp(vz, &vn), *out = NULL;
    assert_non_null(memmem(vb, vn, needle, strlen(needle)));
    free(vb);
    assert_int_equal(vz_test_sh(&out, "%s inspect '%s'", vz_test_cli(), vz), 0);
    assert_non_null(strstr(out, line));
    free(out);
}

/* Greedy logits of a 40-token prompt (positions 0..47) from model into a malloc'd buffer. */
static char *logits(const char *model, const char *dir, const char *tag, size_t *n) {
    char dump[400], *out = NULL;
    snprintf(dump, sizeof dump, "%s/%s.f32", dir, tag);
    int rc = vz_test_sh(&out,
                        "%s run -m '%s' -p 'one two three four five six seven eight nine ten eleven twelve thirteen "
                        "fourteen fifteen sixteen' -n 8 --temp 0 --print-ids --dump-logits '%s'",
                        vz_test_cli(), model, dump);
    if (rc != 0) fail_msg("run %s: %s", model, out);
    free(out);
    char *l = slurp(dump, n);
    assert_non_null(l);
    assert_true(*n > 40 * 4 * 512);
    return l;
}

/* Every position's logits of model (prompt "Once upon a time there was a
 * little dog") against tests/ref_forward.py. The engine sums in f32 (dims
 * 64..172, values O(1)): n u sum|a b| stays below 1e-4 per dot product, so
 * 1e-3 on logits of magnitude ~5 leaves room for two layers; a missing bias
 * or a wrong frequency moves them by 0.1-1. */
static void expect_reference(const char *model, const char *dir) {
    VZ_REQUIRE_SH("command -v python3", "python3 not found (the reference forward)");
    const char *text = "Once upon a time there was a little dog";
    char dump[400], *ids = NULL, *out = NULL, *ref = NULL;
    snprintf(dump, sizeof dump, "%s/ref.f32", dir);
    assert_int_equal(vz_test_sh(&ids, "%s tokenize -m '%s' --bos -- '%s'", vz_test_cli(), model, text), 0);
    assert_int_equal(vz_test_sh(&out, "%s run -m '%s' -p '%s' -n 1 --temp 0 --dump-logits '%s'", vz_test_cli(), model,
                                text, dump),
                     0);
    ids[strcspn(ids, "\n")] = '\0';
    if (vz_test_sh(&ref, "python3 tests/ref_forward.py '%s' %s", model, ids) != 0) fail_msg("ref_forward: %s", ref);
    cJSON *r = cJSON_Parse(ref);
    assert_non_null(r);
    size_t n;
    float *l = (float *)slurp(dump, &n);
    assert_non_null(l);
    const int npos = cJSON_GetArraySize(r), vocab = cJSON_GetArraySize(cJSON_GetArrayItem(r, 0));
    assert_true(npos > 8 && vocab > 0);
    assert_true(n >= (size_t)npos * (size_t)vocab * 4);
    double worst = 0;
    for (int p = 0; p < npos; p++) {
        const cJSON *row = cJSON_GetArrayItem(r, p);
        for (int i = 0; i < vocab; i++) {
            double d = fabs((double)l[(size_t)p * vocab + i] - cJSON_GetArrayItem(row, i)->valuedouble);
            if (d > worst) worst = d;
        }
    }
    print_message("%s: largest logit difference to the reference %.3g\n", model, worst);
    assert_true(worst < 1e-3);
    cJSON_Delete(r);
    free(l), free(ids), free(out), free(ref);
}

static void test_reference_llama(void **state) {
    char dir[256], src[300], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src", dir);
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s'", vz_test_cli(), src), 0);
    free(out);
    expect_reference(src, dir);
    /* head_dim 16, original context 64: every band of the llama3 scaling is used */
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                     "\"original_max_position_embeddings\": 64}");
    expect_reference(src, dir);
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"linear\", \"factor\": 3.0}");
    expect_reference(src, dir);
    vz_test_rmtree(dir);
}

/* A synth checkpoint of shape in a new dir, at dir/src: its logits against
 * the reference; its lossless .vz, at dir/m.vz, gives the same bits. */
static void reference_and_vz(const char *shape, char dir[256], char src[300], char vz[300]) {
    char *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, 256));
    snprintf(src, 300, "%s/src", dir);
    snprintf(vz, 300, "%s/m.vz", dir);
    assert_int_equal(vz_test_sh(&out, "%s synth --shape %s -o '%s'", vz_test_cli(), shape, src), 0);
    free(out);
    expect_reference(src, dir);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless", vz_test_cli(), src, vz), 0);
    free(out);
    size_t n1, n2;
    char *a = logits(src, dir, "src", &n1), *b = logits(vz, dir, "vz", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b);
}

/* Qwen 2: biases and a tied head against the reference; its .vz (lossless)
 * gives the same bits. */
static void test_qwen2(void **state) {
    char dir[256], src[300], vz[300];
    reference_and_vz("tiny-qwen2", dir, src, vz);
    check_vz_carries(vz, "\"qkv_bias\":1", "qwen2, dim 64, 2 layers, vocab 512, tied head, q/k/v biases\n");
    vz_test_rmtree(dir);
}

/* An explicit head_dim (Mistral-Nemo's kind: q and o n_heads * head_dim
 * wide, not dim): against the reference; its .vz (lossless) gives the same
 * bits and says so in inspect (the GPU against the CPU: test_cuda_archs.c). */
static void test_head_dim(void **state) {
    char dir[256], src[300], vz[300], *out = NULL;
    reference_and_vz("tiny-hd", dir, src, vz);
    assert_int_equal(vz_test_sh(&out, "%s inspect '%s'", vz_test_cli(), vz), 0);
    assert_non_null(strstr(out, "mistral, dim 64, 2 layers, vocab 512, head_dim 32\n"));
    free(out);
    /* a head_dim that does not fit the tensors names them */
    vz_test_set_config(src, "head_dim", "16");
    int rc = vz_test_sh(&out, "%s run -m '%s' -p x -n 1 2>&1", vz_test_cli(), src);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "q_proj"));
    free(out);
    vz_test_rmtree(dir);
}

/* llama.cpp's form of the llama3 scaling: a GGUF with rope_freqs.weight
 * (per-pair divisors, tests/hf_to_gguf.py computes them as llama.cpp's
 * converter does) gives the checkpoint's greedy ids and its logits within
 * f32 rounding (the divisors and the blend round differently; q/k rows are
 * permuted); a .vz made from it keeps them (XCFG rope_freqs) bit for bit. */
static void test_gguf_rope_freqs(void **state) {
    VZ_REQUIRE_SH("command -v python3", "python3 not found (tests/hf_to_gguf.py)");
    const char *cli = vz_test_cli();
    char dir[256], src[300], gg[300], vz[300], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(gg, sizeof gg, "%s/m.gguf", dir);
    snprintf(vz, sizeof vz, "%s/m.vz", dir);
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s' --tokenizer tests/golden/bpe/llama3/tokenizer.json",
                                cli, src),
                     0);
    free(out);
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                     "\"original_max_position_embeddings\": 64}");
    if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' llama-bpe", src, gg) != 0) fail_msg("hf_to_gguf: %s", out);
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s inspect '%s'", cli, gg), 0);
    assert_non_null(strstr(out, "rope_scaling rope_freqs"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless", cli, gg, vz), 0);
    free(out);
    size_t n1, n2, n3;
    char *a = logits(src, dir, "hf", &n1), *b = logits(gg, dir, "gguf", &n2), *c = logits(vz, dir, "vz", &n3);
    assert_int_equal(n1, n2);
    assert_int_equal(n2, n3);
    assert_memory_equal(b, c, n2);
    const float *fa = (const float *)a, *fb = (const float *)b;
    double worst = 0;
    for (size_t i = 0; i < n1 / 4; i++)
        if (fabs((double)fa[i] - fb[i]) > worst) worst = fabs((double)fa[i] - fb[i]);
    print_message("GGUF rope_freqs against the checkpoint's llama3 scaling: largest logit difference %.3g\n", worst);
    assert_true(worst < 1e-4);
    free(a), free(b), free(c);
    /* a zero divisor is refused at load, naming the tensor */
    if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' llama-bpe --bad-rope-freqs", src, gg) != 0)
        fail_msg("hf_to_gguf: %s", out);
    free(out);
    assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -p hi -n 1", cli, gg), 0);
    assert_non_null(strstr(out, "rope_freqs.weight[7] = 0 is not a positive factor"));
    free(out);
    vz_test_rmtree(dir);
}

/* llama.cpp's Q8_0 and Q4_0 GGUF tensors load as q8 / q4 (group 32,
 * symmetric) with the values llama.cpp dequantizes to, bit for bit
 * (tests/hf_to_gguf.py quantizes with its reference quantizers and writes
 * one tensor's dequantization beside the file); the model runs on the CPU,
 * Q8_0 with the bf16 checkpoint's greedy ids here. */
static void test_gguf_quant(void **state) {
    VZ_REQUIRE_SH("command -v python3", "python3 not found (tests/hf_to_gguf.py)");
    const char *cli = vz_test_cli();
    char dir[256], src[300], *out = NULL, *want_ids = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src", dir);
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s' --tokenizer tests/golden/bpe/llama3/tokenizer.json",
                                cli, src),
                     0);
    free(out);
    assert_int_equal(vz_test_sh(&want_ids, "%s run -m '%s' -p 'Once upon a time' -n 8 --temp 0 --print-ids 2>/dev/null",
                                cli, src),
                     0);
    static const char *const kinds[] = {"q8_0", "q4_0"}, *const codecs[] = {"q8", "q4"};
    for (int q = 0; q < 2; q++) {
        char gg[300], deqp[320], vz[300];
        snprintf(gg, sizeof gg, "%s/%s.gguf", dir, kinds[q]);
        snprintf(deqp, sizeof deqp, "%s.up0.f32", gg);
        snprintf(vz, sizeof vz, "%s/%s.vz", dir, kinds[q]);
        if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' llama-bpe --quant %s", src, gg, kinds[q]) != 0)
            fail_msg("hf_to_gguf: %s", out);
        free(out);
        vz_model *m = NULL;
        if (vz_model_open(&m, gg, NULL) != VZ_OK) fail_msg("%s: %s", gg, vz_last_error());
        const vz_tensor *t = vz_model_find(m, "model.layers.0.mlp.up_proj.weight");
        assert_non_null(t);
        assert_int_equal(t->codec, q ? VZ_CODEC_q4 : VZ_CODEC_q8);
        size_t n;
        char *deq = slurp(deqp, &n);
        assert_int_equal(n, (size_t)t->rows * (size_t)t->cols * 4);
        float *got = malloc(n);
        vz_codec_by_id(t->codec)->decode_f32(t, 0, t->rows, got);
        assert_memory_equal(got, deq, n);
        free(got), free(deq);
        vz_model_close(m);
        assert_int_equal(vz_test_sh(&out, "%s inspect '%s'", cli, gg), 0);
        char needle[64];
        snprintf(needle, sizeof needle, "f32   %s ", codecs[q]);
        assert_non_null(strstr(out, needle));
        free(out);
        size_t n1;
        char *a = logits(gg, dir, "gq", &n1);
        free(a);
        /* re-encoding a lossy source is refused by convert (the GPU runs it: test_cuda_archs.c) */
        assert_int_not_equal(vz_test_sh(&out, "%s convert '%s' -o '%s'", cli, gg, vz), 0);
        assert_non_null(strstr(out, "the source is stored lossy"));
        free(out);
        if (q == 0) {
            assert_int_equal(vz_test_sh(&out, "%s run -m '%s' -p 'Once upon a time' -n 8 --temp 0 --print-ids 2>/dev/null",
                                        cli, gg),
                             0);
            assert_string_equal(out, want_ids);
            free(out);
        }
    }
    free(want_ids);
    vz_test_rmtree(dir);
}

static void test_end_to_end(void **state) {
    char dir[256], src[300], vz[300];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(vz, sizeof vz, "%s/m.vz", dir);
    char *out = NULL;
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s'", vz_test_cli(), src), 0);
    free(out);
    size_t n0, n1, n2, n3;
    char *plain = logits(src, dir, "plain", &n0);
    /* head_dim 16: with an original context of 64, wavelengths above 64 are slowed, 16..64 blended */
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                     "\"original_max_position_embeddings\": 64}");
    char *scaled = logits(src, dir, "scaled", &n1);
    assert_int_equal(n0, n1);
    assert_true(memcmp(plain, scaled, n0) != 0);
    /* the first position is not rotated: its logits are the same */
    assert_memory_equal(plain, scaled, 512 * 4);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless", vz_test_cli(), src, vz), 0);
    free(out);
    char *from_vz = logits(vz, dir, "vz", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(scaled, from_vz, n1);
    /* the scaling travels in a required XCFG section */
    check_vz_carries(vz, "{\"rope_scaling\":{\"rope_type\":\"llama3\"", "vocab 512, rope_scaling llama3 x8\n");
    /* linear with factor 1 is the identity */
    vz_test_set_rope_scaling(src, "{\"rope_type\": \"linear\", \"factor\": 1.0}");
    char *lin1 = logits(src, dir, "lin1", &n3);
    assert_int_equal(n0, n3);
    assert_memory_equal(plain, lin1, n0);
    free(plain), free(scaled), free(from_vz), free(lin1);
    vz_test_rmtree(dir);
}

/* Stop ids: every id of config.json's and generation_config.json's
 * eos_token_id lists ends generation (Llama 3 instruct's <|eot_id|>), from
 * the directory and from its .vz (CONF eos_ids); a broken
 * generation_config.json is named. */
static void test_stop_ids(void **state) {
    const char *cli = vz_test_cli();
    char dir[256], src[300], vz[300], path[400], *out = NULL, *a = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(vz, sizeof vz, "%s/m.vz", dir);
    snprintf(path, sizeof path, "%s/generation_config.json", src);
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s'", cli, src), 0);
    free(out);
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s' -p 'Once upon' -n 6 --temp 0 --print-ids 2>/dev/null", cli, src), 0);
    int g0 = -1, g1 = -1, g2 = -1;
    assert_int_equal(sscanf(a, "%d %d %d", &g0, &g1, &g2), 3);
    assert_true(g0 != g2 && g1 != g2 && g0 != 2 && g1 != 2 && g2 != 2); /* synth tiny: eos 2 */
    free(a);
    /* the third generated id in generation_config's list: two ids come out */
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"bos_token_id\": 1, \"eos_token_id\": [2, %d]}\n", g2);
    fclose(f);
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s' -p 'Once upon' -n 6 --temp 0 --print-ids 2>/dev/null", cli, src), 0);
    char want[64];
    snprintf(want, sizeof want, "%d %d\n", g0, g1);
    assert_string_equal(a, want);
    free(a);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless", cli, src, vz), 0);
    free(out);
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s' -p 'Once upon' -n 6 --temp 0 --print-ids 2>/dev/null", cli, vz), 0);
    assert_string_equal(a, want);
    free(a);
    /* the first generated id in config.json's list: nothing comes out */
    remove(path);
    char cfg[64];
    snprintf(cfg, sizeof cfg, "[2, %d]", g0);
    cJSON *v = cJSON_Parse(cfg);
    size_t n;
    snprintf(path, sizeof path, "%s/config.json", src);
    char *s = slurp(path, &n);
    cJSON *root = cJSON_Parse(s);
    cJSON_ReplaceItemInObjectCaseSensitive(root, "eos_token_id", v);
    char *t = cJSON_Print(root);
    f = fopen(path, "w");
    fputs(t, f);
    fclose(f);
    free(t), free(s);
    cJSON_Delete(root);
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s' -p 'Once upon' -n 6 --temp 0 --print-ids 2>/dev/null", cli, src), 0);
    assert_string_equal(a, "\n");
    free(a);
    snprintf(path, sizeof path, "%s/generation_config.json", src);
    f = fopen(path, "w");
    fputs("{\"eos_token_id\": [2, ", f);
    fclose(f);
    assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -p hi -n 2", cli, src), 0);
    assert_non_null(strstr(out, "generation_config.json: not a JSON object"));
    free(out);
    vz_test_rmtree(dir);
}

static void expect_refused(const char *dir, const char *json, const char *needle) {
    char src[300], *out = NULL;
    snprintf(src, sizeof src, "%s/src", dir);
    vz_test_set_rope_scaling(src, json);
    int rc = vz_test_sh(&out, "%s run -m '%s' -p hi -n 2", vz_test_cli(), src);
    if (rc == 0 || !strstr(out, needle) || !strstr(out, "config.json"))
        fail_msg("rope_scaling %s: exit %d, output '%s' (wanted '%s')", json, rc, out, needle);
    free(out);
}

static void test_refused(void **state) {
    char dir[256], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s/src'", vz_test_cli(), dir), 0);
    free(out);
    expect_refused(dir, "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "'yarn' is not supported");
    expect_refused(dir, "{\"rope_type\": \"dynamic\", \"factor\": 2.0}", "'dynamic' is not supported");
    expect_refused(dir, "{\"factor\": 2.0}", "rope_type' is missing");
    expect_refused(dir, "{\"rope_type\": \"linear\", \"factor\": 0.5}", "below 1");
    expect_refused(dir, "{\"rope_type\": \"llama3\", \"factor\": 8.0}", "'low_freq_factor' is missing");
    expect_refused(dir,
                   "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 1.0, "
                   "\"original_max_position_embeddings\": 64}",
                   "need 0 < low < high");
    expect_refused(dir, "3", "not an object");
    vz_test_rmtree(dir);
}

int main(void) {
    vz_test_filter_from_env();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_llama), cmocka_unit_test(test_qwen2),
                                       cmocka_unit_test(test_head_dim),        cmocka_unit_test(test_gguf_rope_freqs),
                                       cmocka_unit_test(test_stop_ids),
                                       cmocka_unit_test(test_gguf_quant),
                                       cmocka_unit_test(test_end_to_end), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
