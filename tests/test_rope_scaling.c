/*
 * test_rope_scaling.c - Hugging Face rope_scaling (Llama 3.1+: "llama3";
 * "linear") end to end on the CPU: a synth tiny checkpoint given a scaling in
 * config.json generates other logits than without it; linear factor 1 gives
 * the unscaled bits; a .vz made from it keeps the scaling (a required ROPE
 * section) and gives its logits bit for bit; kinds it cannot run, and the
 * CUDA device, are refused with a message. The frequencies themselves are
 * checked against transformers' formulas in test_ops.c.
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

#include "common/testutil.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

/* dir/src's config.json with "rope_scaling" set to json (any JSON value). */
static void set_scaling(const char *dir, const char *json) {
    char path[400];
    size_t n;
    snprintf(path, sizeof path, "%s/src/config.json", dir);
    char *s = slurp(path, &n);
    assert_non_null(s);
    cJSON *root = cJSON_Parse(s), *v = cJSON_Parse(json);
    assert_non_null(root);
    assert_non_null(v);
    cJSON_ReplaceItemInObjectCaseSensitive(root, "rope_scaling", v);
    char *t = cJSON_Print(root);
    FILE *f = fopen(path, "wb");
    fputs(t, f);
    fclose(f);
    free(t), free(s);
    cJSON_Delete(root);
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
    set_scaling(dir, "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
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
    /* the scaling travels in a required ROPE section */
    size_t vn;
    char *vb = slurp(vz, &vn);
    assert_non_null(memmem(vb, vn, "{\"rope_scaling\":{\"rope_type\":\"llama3\"", 37));
    free(vb);
    /* the CUDA device refuses it rather than run plain RoPE */
    int rc = vz_test_sh(&out, "%s run -m '%s' -p hi -n 2 --device cuda", vz_test_cli(), vz);
    assert_int_not_equal(rc, 0);
    if (!strstr(out, "without CUDA")) assert_non_null(strstr(out, "rope_scaling"));
    free(out);
    /* linear with factor 1 is the identity */
    set_scaling(dir, "{\"rope_type\": \"linear\", \"factor\": 1.0}");
    char *lin1 = logits(src, dir, "lin1", &n3);
    assert_int_equal(n0, n3);
    assert_memory_equal(plain, lin1, n0);
    free(plain), free(scaled), free(from_vz), free(lin1);
    vz_test_rmtree(dir);
}

static void expect_refused(const char *dir, const char *json, const char *needle) {
    char src[300], *out = NULL;
    snprintf(src, sizeof src, "%s/src", dir);
    set_scaling(dir, json);
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_end_to_end), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
