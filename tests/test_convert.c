/*
 * test_convert.c - vz_convert and the convert/inspect/verify/perplexity
 * commands: codec spec rules and globs pick the expected codecs (first match
 * wins, 1-D tensors stay raw), bad specs are refused, a failed or cancelled
 * convert leaves no file, inspect --json parses, verify finds corruption.
 */
#include <cJSON.h>
#include <dirent.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec/codec.h"
#include "common/testutil.h"
#include "common/tiny_vz.h"
#include "model/model.h"

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static vz_status convert(const char *src, const char *out, const char *spec) {
    vz_convert_opts o;
    vz_convert_opts_default(&o);
    o.codec_spec = spec;
    return vz_convert(src, out, &o);
}

static const char *codec_of(const vz_model *m, const char *name) {
    const vz_tensor *t = vz_model_find(m, name);
    assert_non_null(t);
    return vz_codec_by_id(t->codec)->name;
}

static void test_rules_select_codecs(void **state) {
    (void)state;
    const char *need[] = {"q8", "q4", "lossless", "zstd"};
    for (int i = 0; i < 4; i++)
        if (!vz_codec_by_name(need[i])) skip();
    char dir[256], src[512], out[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 3), VZ_OK);
    assert_int_equal(convert(src, out, "*.mlp.*=q8,*.q_proj.*=lossless,*.self_attn.*=q4:g16,"
                                       "model.embed_tokens.weight=zstd:3,*=raw"), VZ_OK);
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    assert_string_equal(codec_of(m, "model.layers.1.mlp.up_proj.weight"), "q8");
    assert_string_equal(codec_of(m, "model.layers.0.mlp.down_proj.weight"), "q8");
    assert_string_equal(codec_of(m, "model.layers.0.self_attn.q_proj.weight"), "lossless"); /* first match */
    assert_string_equal(codec_of(m, "model.layers.1.self_attn.k_proj.weight"), "q4");
    assert_string_equal(codec_of(m, "model.embed_tokens.weight"), "zstd");
    assert_string_equal(codec_of(m, "lm_head.weight"), "raw");
    assert_string_equal(codec_of(m, "model.layers.0.input_layernorm.weight"), "raw"); /* 1-D */
    vz_model_close(m);
    /* a preset applies to every 2-D tensor; no rule matching leaves raw */
    assert_int_equal(convert(src, out, "lossless"), VZ_OK);
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    assert_string_equal(codec_of(m, "lm_head.weight"), "lossless");
    assert_string_equal(codec_of(m, "model.norm.weight"), "raw");
    vz_model_close(m);
    assert_int_equal(convert(src, out, "*.mlp.*=zstd"), VZ_OK);
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    assert_string_equal(codec_of(m, "model.layers.0.mlp.gate_proj.weight"), "zstd");
    assert_string_equal(codec_of(m, "model.layers.0.self_attn.o_proj.weight"), "raw");
    vz_model_close(m);
    /* a module name without ".weight" selects that one tensor */
    assert_int_equal(convert(src, out, "model.layers.0.mlp.gate_proj=q8"), VZ_OK);
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    assert_string_equal(codec_of(m, "model.layers.0.mlp.gate_proj.weight"), "q8");
    assert_string_equal(codec_of(m, "model.layers.1.mlp.gate_proj.weight"), "raw");
    assert_string_equal(codec_of(m, "model.layers.0.mlp.up_proj.weight"), "raw");
    vz_model_close(m);
    /* q8:g-1: one group (one scale) per row */
    assert_int_equal(convert(src, out, "*.mlp.*=q8:g-1"), VZ_OK);
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    const vz_tensor *t = vz_model_find(m, "model.layers.0.mlp.down_proj.weight");
    assert_non_null(t);
    assert_string_equal(vz_codec_by_id(t->codec)->name, "q8");
    assert_int_equal(vz_le32(t->params + 4), t->cols);
    vz_model_close(m);
    vz_test_rmtree(dir);
}

static void test_bad_specs(void **state) {
    (void)state;
    const char *bad[] = {"", "bogus", "q4:x", "q4:g0", "q4:g", "q4:g-2", "q8:g65537", "=q4", "*=", "*.mlp.*=q8,*=nope",
                         "zstd:0", ",,", "q4:k4", "lossless:k5", "lossless:k", "lossless:k2", "raw:k3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vz_codec_spec_check(bad[i]) != VZ_ERR_ARG) fail_msg("spec '%s' was accepted", bad[i]);
    assert_int_equal(vz_codec_spec_check("raw"), VZ_OK);
    assert_int_equal(vz_codec_spec_check(NULL), VZ_OK);
    assert_int_equal(vz_codec_spec_check("*.mlp.*=raw,model.layers.[0-3].*=raw"), VZ_OK);
    assert_int_equal(vz_codec_spec_check("q8:g-1"), VZ_OK); /* docs/codecs.md: one scale per row */
    assert_int_equal(vz_codec_spec_check("q4:g-1"), VZ_OK);
    assert_int_equal(vz_codec_spec_check("lossless:k4"), VZ_OK); /* packed4 */
    assert_int_equal(vz_codec_spec_check("lossless:k3"), VZ_OK);
}

static void on_progress(void *user, int32_t done, int32_t total, uint64_t bd, uint64_t bt, const char *name) {
    (void)total; (void)bd; (void)bt; (void)name;
    if (done >= 3) *(volatile int *)user = 1;
}

static void test_failed_convert_leaves_nothing(void **state) {
    (void)state;
    char dir[256], src[512], out[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 5), VZ_OK);
    /* an unknown codec in a later rule: refused before anything is written */
    assert_int_equal(convert(src, out, "*.mlp.*=raw,*=nope"), VZ_ERR_ARG);
    assert_int_equal(count_files(dir), 1);
    /* cancelled after three tensors */
    volatile int cancel = 0;
    vz_convert_opts o;
    vz_convert_opts_default(&o);
    o.codec_spec = "raw";
    o.progress = on_progress;
    o.user = (void *)&cancel;
    o.cancel = &cancel;
    assert_int_equal(vz_convert(src, out, &o), VZ_ERR_INTERRUPTED);
    assert_int_equal(count_files(dir), 1);
    /* a write that fails mid-way (in the writer thread): past an 8 KiB file
     * size limit, set in a child (one OpenMP thread there: a runtime's pool
     * does not survive fork) */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        omp_set_num_threads(1);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {8192, 8192};
        setrlimit(RLIMIT_FSIZE, &rl);
        vz_status st = convert(src, out, "raw");
        int ok = st == VZ_ERR_IO && strstr(vz_last_error(), "out.vz") && strstr(vz_last_error(), "write failed");
        if (!ok) fprintf(stderr, "convert past the size limit: %s: %s\n", vz_status_name(st), vz_last_error());
        _exit(ok ? 0 : 1);
    }
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_int_equal(count_files(dir), 1);
    /* fails mid-way: re-encoding a lossy source is refused after the temp file exists */
    if (vz_codec_by_name("q4")) {
        char lossy[512];
        snprintf(lossy, sizeof lossy, "%s/q4.vz", dir);
        assert_int_equal(convert(src, lossy, "*.layers.1.*=q4"), VZ_OK);
        assert_int_equal(convert(lossy, out, "raw"), VZ_ERR_UNSUPPORTED);
        assert_int_equal(count_files(dir), 2);
    }
    /* unwritable destination */
    snprintf(out, sizeof out, "%s/no/such/dir/out.vz", dir);
    assert_int_equal(convert(src, out, "raw"), VZ_ERR_IO);
    vz_test_rmtree(dir);
}

/* Tensors are encoded by several threads: the file must not depend on how many. */
static void test_convert_thread_count_invariant(void **state) {
    (void)state;
    char dir[256], src[512], a[512], b[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(a, sizeof a, "%s/a.vz", dir);
    snprintf(b, sizeof b, "%s/b.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 11), VZ_OK);
    static const char *specs[] = {"lossless", "q4", "*.mlp.*=q8,*.self_attn.*=lossless,*=raw"};
    for (int i = 0; i < 3; i++) {
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        assert_int_equal(convert(src, a, specs[i]), VZ_OK);
        omp_set_num_threads(4);
        assert_int_equal(convert(src, b, specs[i]), VZ_OK);
        omp_set_num_threads(saved);
        assert_int_equal(vz_test_sh(&o, "cmp '%s' '%s'", a, b), 0);
        free(o);
    }
    vz_test_rmtree(dir);
}

static void test_cli_convert_inspect_json(void **state) {
    (void)state;
    char dir[256], src[512], out[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 9), VZ_OK);
    assert_int_equal(vz_test_sh(&o, "%s convert %s -o %s --codec '*=raw,*.mlp.*=nope'", vz_test_cli(), src, out), 2);
    assert_non_null(strstr(o, "nope"));
    free(o);
    assert_int_equal(count_files(dir), 1);
    assert_int_equal(vz_test_sh(&o, "%s convert %s -o %s -q --codec lossless", vz_test_cli(), src, out), 0);
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s inspect %s --json 2>/dev/null", vz_test_cli(), out), 0);
    cJSON *j = cJSON_Parse(o);
    if (!j) fail_msg("inspect --json output does not parse: %.200s", o);
    free(o);
    const cJSON *ts = cJSON_GetObjectItem(j, "tensors"), *tot = cJSON_GetObjectItem(j, "totals");
    assert_true(cJSON_IsArray(ts));
    assert_int_equal(cJSON_GetArraySize(ts), 2 + 9 * TINY_LAYERS + 1);
    double sum = 0;
    for (const cJSON *t = ts->child; t; t = t->next) {
        assert_true(cJSON_IsString(cJSON_GetObjectItem(t, "name")));
        assert_true(cJSON_IsArray(cJSON_GetObjectItem(t, "shape")));
        assert_true(cJSON_IsString(cJSON_GetObjectItem(t, "codec")));
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(t, "bytes")));
        sum += cJSON_GetObjectItem(t, "bytes")->valuedouble;
    }
    const cJSON *emb = ts->child;
    assert_string_equal(cJSON_GetObjectItem(emb, "name")->valuestring, "model.embed_tokens.weight");
    assert_string_equal(cJSON_GetObjectItem(emb, "codec")->valuestring, "lossless");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(emb, "shape")), 2);
    assert_true(cJSON_GetObjectItem(emb, "exp_entropy")->valuedouble > 0);
    assert_true(cJSON_IsObject(tot));
    assert_true(cJSON_GetObjectItem(tot, "bytes")->valuedouble == sum);
    cJSON_Delete(j);
    vz_test_rmtree(dir);
}

static void test_cli_verify(void **state) {
    (void)state;
    char dir[256], src[512], out[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 13), VZ_OK);
    assert_int_equal(convert(src, out, "lossless"), VZ_OK);
    assert_int_equal(vz_test_sh(&o, "%s verify %s", vz_test_cli(), out), 0);
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s verify %s %s -n 12", vz_test_cli(), src, out), 0);
    assert_non_null(strstr(o, "bit-identical"));
    free(o);
    assert_int_equal(convert(src, out, "lossless:k4"), VZ_OK); /* packed4 is lossless too */
    assert_int_equal(vz_test_sh(&o, "%s verify %s %s -n 12", vz_test_cli(), src, out), 0);
    assert_non_null(strstr(o, "bit-identical"));
    free(o);
    { /* two lossless:k4 models of other weights: their logits must not differ, so verify fails */
        char src2[600], out2[600];
        snprintf(src2, sizeof src2, "%s/src2.vz", dir);
        snprintf(out2, sizeof out2, "%s/out2.vz", dir);
        assert_int_equal(tiny_vz_write(src2, VZ_DTYPE_BF16, 14), VZ_OK);
        assert_int_equal(convert(src2, out2, "lossless:k4"), VZ_OK);
        assert_int_equal(vz_test_sh(&o, "%s verify %s %s -n 12", vz_test_cli(), out, out2), 1);
        assert_non_null(strstr(o, "VZ_ERR_MISMATCH"));
        free(o);
    }
    assert_int_equal(vz_test_sh(&o, "%s verify tests/golden/bad_checksum.vz", vz_test_cli()), 1);
    assert_non_null(strstr(o, "model.embed_tokens.weight"));
    free(o);
    /* run --check verifies every tensor checksum at load */
    assert_int_equal(vz_test_sh(&o, "%s run -m tests/golden/bad_checksum.vz --check -n 1", vz_test_cli()), 1);
    assert_non_null(strstr(o, "VZ_ERR_CHECKSUM"));
    assert_non_null(strstr(o, "model.embed_tokens.weight"));
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s run -m %s --check -n 2 --temp 0", vz_test_cli(), out), 0);
    free(o);
    if (vz_codec_by_name("q8")) {
        assert_int_equal(convert(src, out, "*.mlp.*=q8"), VZ_OK);
        assert_int_equal(vz_test_sh(&o, "%s verify %s %s -n 12", vz_test_cli(), src, out), 0);
        assert_non_null(strstr(o, "model.layers.0.mlp.gate_proj.weight")); /* first differing tensor */
        assert_non_null(strstr(o, "KL"));
        free(o);
    }
    vz_test_rmtree(dir);
}

/* PPL value from the last line "PPL = x +/- e" of the output. */
static double ppl_of(const char *out) {
    const char *p = strstr(out, "PPL = ");
    assert_non_null(p);
    return atof(p + 6);
}

static void test_cli_perplexity(void **state) {
    (void)state;
    char dir[256], src[512], out[512], txt[512], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    snprintf(out, sizeof out, "%s/out.vz", dir);
    snprintf(txt, sizeof txt, "%s/text.txt", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 17), VZ_OK);
    assert_int_equal(convert(src, out, "lossless"), VZ_OK);
    FILE *f = fopen(txt, "w");
    for (int i = 0; i < 40; i++) fprintf(f, "the cat sat on a mat and the dog ran far away ");
    fclose(f);
    assert_int_equal(vz_test_sh(&o, "%s perplexity -m %s -f %s -c 32 --chunks 3 -t 1", vz_test_cli(), src, txt), 0);
    double p1 = ppl_of(o);
    assert_non_null(strstr(o, "[3]"));
    assert_null(strstr(o, "[4]"));
    assert_non_null(strstr(o, "45 tokens scored")); /* 3 chunks x (32 - 1 - 16) */
    free(o);
    assert_true(p1 > 1.0 && p1 < 1e6);
    assert_int_equal(vz_test_sh(&o, "%s perplexity -m %s -f %s -c 32 --chunks 3 -t 1 --kl-base %s", vz_test_cli(),
                                out, txt, src), 0);
    assert_true(ppl_of(o) == p1); /* lossless: same logits, same printed PPL */
    assert_non_null(strstr(o, "mean = 0.000000 nats, top-1 agreement = 100.0000%"));
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s perplexity -m %s -f %s -c 4096", vz_test_cli(), src, txt), 2);
    free(o);
    /* a missing text file or a directory: a clear error, exit 1 */
    assert_int_equal(vz_test_sh(&o, "%s perplexity -m %s -f %s/none.txt -c 32", vz_test_cli(), src, dir), 1);
    assert_non_null(strstr(o, "none.txt: cannot open"));
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s perplexity -m %s -f %s -c 32", vz_test_cli(), src, dir), 1);
    assert_non_null(strstr(o, "not a regular file"));
    free(o);
    vz_test_rmtree(dir);
}

/* Contents of a file (malloc'ed), its size in *n. */
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_true(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* The product's promise on the CPU's fused lossless matvec (decode +
 * exceptions + dot in one pass when one token is evaluated): greedy logits
 * of the synth small model (rows of 256 and 688, ~3% exceptions) converted
 * to `lossless` are byte-identical to raw's, after a prompt and through
 * 40 generated tokens, at 1 and 2 threads. */
static void test_lossless_logits_equal_raw(void **state) {
    (void)state;
    char dir[256], *o = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    assert_int_equal(vz_test_sh(&o, "%s synth --shape small -o %s/src", vz_test_cli(), dir), 0);
    free(o);
    static const char *codecs[] = {"raw", "lossless", "lossless:k4"};
    for (int c = 0; c < 3; c++) {
        assert_int_equal(vz_test_sh(&o, "%s convert %s/src -o %s/%s.vz -q --codec %s", vz_test_cli(), dir, dir,
                                    codecs[c], codecs[c]), 0);
        free(o);
        for (int t = 1; t <= 2; t++) {
            assert_int_equal(vz_test_sh(&o, "%s run -m %s/%s.vz -p 'Once upon a time' -n 40 -t %d --temp 0 --print-ids "
                                        "--dump-logits %s/%s.t%d.logits", vz_test_cli(), dir, codecs[c], t, dir,
                                        codecs[c], t), 0);
            free(o);
        }
    }
    for (int c = 1; c < 3; c++)
        for (int t = 1; t <= 2; t++) {
            char a[600], b[600];
            size_t na, nb;
            snprintf(a, sizeof a, "%s/raw.t%d.logits", dir, t);
            snprintf(b, sizeof b, "%s/%s.t%d.logits", dir, codecs[c], t);
            char *la = slurp(a, &na), *lb = slurp(b, &nb);
            assert_true(na > 40 * 512 * sizeof(float)); /* the prompt's last and 40 generated positions at least */
            assert_int_equal(na, nb);
            assert_memory_equal(la, lb, na);
            free(la), free(lb);
        }
    /* inspect names the layout by the spec that writes it */
    assert_int_equal(vz_test_sh(&o, "%s inspect %s/lossless:k4.vz", vz_test_cli(), dir), 0);
    assert_non_null(strstr(o, "model.layers.0.mlp.down_proj.weight"));
    assert_non_null(strstr(o, "lossless:k4"));
    free(o);
    assert_int_equal(vz_test_sh(&o, "%s inspect %s/lossless.vz", vz_test_cli(), dir), 0);
    assert_null(strstr(o, "lossless:k4"));
    free(o);
    vz_test_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_select_codecs),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_failed_convert_leaves_nothing),
        cmocka_unit_test(test_convert_thread_count_invariant),
        cmocka_unit_test(test_cli_convert_inspect_json),
        cmocka_unit_test(test_cli_verify),
        cmocka_unit_test(test_cli_perplexity),
        cmocka_unit_test(test_lossless_logits_equal_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
