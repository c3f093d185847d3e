/*
 * test_input_errors.c - inputs that must be refused with a named status
 * rather than misread or silently accepted: an empty or tiny file given as a
 * model (VZ_ERR_FORMAT "file too small to be a model", not a llama2.c header
 * error), and codec options a codec does not use (`lossless:g32`, `raw:3`,
 * `q8:2`), refused by encode with VZ_ERR_ARG naming the option, so that
 * `vramzip convert` fails and leaves no output file.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codec/codec.h"
#include "common/ckpt.h"
#include "common/testutil.h"
#include "common/tiny_vz.h"

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_tiny_file_is_not_a_model(void **state) {
    (void)state;
    char dir[256], path[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.bin", dir);
    static const uint8_t junk[155] = {1, 2, 3};
    static const size_t sizes[] = {0, 1, 3, 4, 27, 28, 155};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(vz_ckpt_write_file(path, junk, sizes[i]), 0);
        vz_model *m = NULL;
        assert_int_equal(vz_model_open(&m, path, NULL), VZ_ERR_FORMAT);
        assert_null(m);
        char want[64];
        snprintf(want, sizeof want, "(%zu bytes): not GGUF, .vz or llama2.c", sizes[i]);
        if (!strstr(vz_last_error(), "file too small to be a model") || !strstr(vz_last_error(), want))
            fail_msg("%zu bytes: %s", sizes[i], vz_last_error());
    }
    /* 156 bytes can hold a llama2.c header: the llama2.c reader answers (here: dim 0) */
    static const uint8_t zeros[156];
    assert_int_equal(vz_ckpt_write_file(path, zeros, sizeof zeros), 0);
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, path, NULL), VZ_ERR_FORMAT);
    assert_non_null(strstr(vz_last_error(), "'dim'"));
    /* the CLI reports it too */
    char *o = NULL;
    assert_int_equal(vz_ckpt_write_file(path, junk, 0), 0);
    assert_int_not_equal(vz_test_sh(&o, "%s inspect %s 2>&1", vz_test_cli(), path), 0);
    if (!strstr(o, "file too small to be a model (0 bytes)")) fail_msg("inspect says: %s", o);
    free(o);
    vz_test_rmtree(dir);
}

/* Each codec refuses the options it does not use, naming the option. */
static void test_encode_refuses_unused_options(void **state) {
    (void)state;
    static const struct {
        const char *codec;
        vz_codec_opts o;
        const char *names;
    } cases[] = {
        {"lossless", {32, 0, 0}, "'g32'"}, {"lossless", {0, 3, 0}, "'3'"}, {"raw", {0, 3, 0}, "'3'"},
        {"raw", {64, 0, 0}, "'g64'"},      {"q8", {0, 2, 0}, "'2'"},        {"q4", {0, 0, 4}, "'k4'"},
    };
    float v[4 * 64];
    for (int i = 0; i < 4 * 64; i++) v[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const vz_codec *c = vz_codec_by_name(cases[i].codec);
        assert_non_null(c);
        vz_blob b;
        assert_int_equal(c->encode(v, VZ_DTYPE_F32, 4, 64, &cases[i].o, &b), VZ_ERR_ARG);
        if (!strstr(vz_last_error(), cases[i].names) || !strstr(vz_last_error(), "not used"))
            fail_msg("%s: %s", cases[i].codec, vz_last_error());
        vz_blob_free(&b);
        vz_codec_opts none = {0, 0, 0};
        assert_int_equal(c->encode(v, VZ_DTYPE_F32, 4, 64, &none, &b), VZ_OK);
        vz_blob_free(&b);
    }
    vz_codec_opts g64 = {64, 0, 0}; /* q8 does use a group size */
    vz_blob b;
    assert_int_equal(vz_codec_by_name("q8")->encode(v, VZ_DTYPE_F32, 4, 64, &g64, &b), VZ_OK);
    vz_blob_free(&b);
}

static void test_convert_cli_unused_option(void **state) {
    (void)state;
    char dir[256], src[512], out[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 5), VZ_OK);
    static const char *const bad[] = {"lossless:g32", "raw:3", "q8:2", "*.mlp.*=lossless:7,*=raw"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = vz_test_sh(&o, "%s convert %s -o %s -q --codec '%s' 2>&1", vz_test_cli(), src, out, bad[i]);
        if (rc == 0 || !strstr(o, "VZ_ERR_ARG") || !strstr(o, "not used")) fail_msg("%s: rc %d: %s", bad[i], rc, o);
        free(o);
        assert_false(exists(out));
    }
    /* the raw fallback of a codec that does not take a tensor gets none of its options */
    assert_int_equal(vz_test_sh(&o, "%s convert %s -o %s -q --codec q8:g32 2>&1", vz_test_cli(), src, out), 0);
    free(o);
    assert_true(exists(out));
    vz_test_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_file_is_not_a_model),
        cmocka_unit_test(test_encode_refuses_unused_options),
        cmocka_unit_test(test_convert_cli_unused_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
