/*
 * test_container.c - the .vz container (docs/format.md): write/read round
 * trips, every lossless codec of the table through vz_convert (decode_ref
 * bytes and logits bit-identical to the source), the golden files of
 * tests/golden (good ones load, bad ones fail with their named status) and
 * the fuzz seeds replayed. VZ_GOLDEN_WRITE=1 regenerates tests/golden.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/codec.h"
#include "common/testutil.h"
#include "core/io.h"
#include "common/tiny_vz.h"
#include "format/vz_write.h"
#include "model/model.h"

#define GOLDEN_SEED 20240601u

int vz_fuzz_vz(const uint8_t *data, size_t size);

static const char *golden_dir(void) {
    const char *e = getenv("VZ_GOLDEN_DIR");
    return e && *e ? e : "tests/golden";
}

/* Asserts every tensor of the model at path equals the tiny model's bytes. */
static void assert_tiny_tensors(const char *path, vz_dtype dt, uint64_t seed) {
    vz_model_opts o;
    vz_model_opts_default(&o);
    o.check = 1;
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, &o);
    if (s != VZ_OK) fail_msg("%s: %s: %s", path, vz_status_name(s), vz_last_error());
    assert_string_equal(m->format, "vz");
    assert_int_equal(m->cfg.dim, TINY_DIM);
    assert_int_equal(m->cfg.n_kv_heads, TINY_KV_HEADS);
    assert_int_equal(m->cfg.rope_interleaved, 0);
    assert_non_null(m->tok);
    assert_int_equal(vz_tokenizer_vocab_size(m->tok), TINY_VOCAB);
    assert_int_equal(vz_tokenizer_bos(m->tok), 1);
    assert_int_equal(m->n_tensors, 2 + 9 * TINY_LAYERS + 1);
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const vz_tensor *t = &m->tensors[i];
        const vz_codec *c = vz_codec_by_id(t->codec);
        assert_non_null(c);
        assert_int_equal(t->dtype, dt);
        if (!c->lossless) continue;
        uint64_t n;
        uint8_t *want = tiny_vz_tensor_bytes(t->name, dt, seed, &n);
        assert_non_null(want);
        uint8_t *got = malloc(n);
        assert_int_equal(c->decode_ref(t, 0, t->rows, got), VZ_OK);
        if (memcmp(got, want, n) != 0) fail_msg("%s: tensor %s (%s) differs from the source", path, t->name, c->name);
        free(got);
        free(want);
    }
    vz_model_close(m);
}

static void test_write_read_roundtrip(void **state) {
    (void)state;
    char dir[256], path[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const vz_dtype dts[] = {VZ_DTYPE_BF16, VZ_DTYPE_F16, VZ_DTYPE_F32};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/tiny_%d.vz", dir, k);
        assert_int_equal(tiny_vz_write(path, dts[k], 7 + k), VZ_OK);
        assert_tiny_tensors(path, dts[k], 7 + k);
    }
    vz_test_rmtree(dir);
}

/* Logits of the first n tokens of a fixed sequence (all positions). */
static float *logits_of(const char *path, const int32_t *toks, int32_t n, int32_t *vocab) {
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, NULL);
    if (s != VZ_OK) fail_msg("%s: %s: %s", path, vz_status_name(s), vz_last_error());
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_threads = 1;
    vz_session *ss = NULL;
    assert_int_equal(vz_session_create(&ss, m, &so), VZ_OK);
    *vocab = m->cfg.vocab_size;
    float *l = malloc(sizeof(float) * (size_t)n * (size_t)*vocab);
    assert_int_equal(vz_session_eval(ss, toks, n, l, 1), VZ_OK);
    vz_session_free(ss);
    vz_model_close(m);
    return l;
}

/* Converts src with every lossless codec; checks bytes and logits. */
static void lossless_codecs_match(const char *src, const char *dir, const char *tok, const int32_t *toks, int32_t n,
                                  void (*check_bytes)(const char *, const char *)) {
    int32_t vocab;
    float *ref = logits_of(src, toks, n, &vocab);
    for (int i = 0; i < vz_codec_count(); i++) {
        const vz_codec *c = vz_codec_at(i);
        if (!c->lossless) continue;
        char out[512];
        snprintf(out, sizeof out, "%s/conv_%s.vz", dir, c->name);
        vz_convert_opts o;
        vz_convert_opts_default(&o);
        o.codec_spec = c->name;
        o.model.tokenizer_path = tok;
        vz_status s = vz_convert(src, out, &o);
        if (s != VZ_OK) fail_msg("convert %s with %s: %s: %s", src, c->name, vz_status_name(s), vz_last_error());
        if (check_bytes) check_bytes(out, c->name);
        int32_t v2;
        float *got = logits_of(out, toks, n, &v2);
        assert_int_equal(v2, vocab);
        if (memcmp(ref, got, sizeof(float) * (size_t)n * (size_t)vocab) != 0)
            fail_msg("codec %s: logits differ from the source %s", c->name, src);
        print_message("codec %-14s logits bit-identical (%d positions)\n", c->name, (int)n);
        free(got);
    }
    free(ref);
}

static void tiny_bytes_check(const char *out, const char *codec) {
    (void)codec;
    assert_tiny_tensors(out, VZ_DTYPE_BF16, 11);
}

static void test_lossless_codecs_tiny_bf16(void **state) {
    (void)state;
    char dir[256], src[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.vz", dir);
    assert_int_equal(tiny_vz_write(src, VZ_DTYPE_BF16, 11), VZ_OK);
    const int32_t toks[] = {1, 4, 9, 17, 3, 30, 6, 2, 12, 5};
    lossless_codecs_match(src, dir, NULL, toks, 10, tiny_bytes_check);
    vz_test_rmtree(dir);
}

static void test_lossless_codecs_stories260k(void **state) {
    (void)state;
    char bin[512], tok[512], dir[256];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const int32_t toks[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    lossless_codecs_match(bin, dir, tok, toks, 16, NULL);
    /* the embedded tokenizer encodes like the original */
    vz_model *a = NULL, *b = NULL;
    vz_model_opts o;
    vz_model_opts_default(&o);
    o.tokenizer_path = tok;
    char out[512];
    snprintf(out, sizeof out, "%s/conv_raw.vz", dir);
    assert_int_equal(vz_model_open(&a, bin, &o), VZ_OK);
    assert_int_equal(vz_model_open(&b, out, NULL), VZ_OK);
    assert_int_equal(b->cfg.rope_interleaved, a->cfg.rope_interleaved);
    const char *text = "Once upon a time, there was a little girl named Lily. Zyx 123!";
    int32_t ia[256], ib[256], na = 0, nb = 0;
    assert_int_equal(vz_tokenizer_encode(a->tok, text, strlen(text), 1, ia, 256, &na), VZ_OK);
    assert_int_equal(vz_tokenizer_encode(b->tok, text, strlen(text), 1, ib, 256, &nb), VZ_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, sizeof(int32_t) * (size_t)na);
    vz_model_close(a);
    vz_model_close(b);
    vz_test_rmtree(dir);
}

/* Hugging Face checkpoints (synth tiny, bf16 and f16): every lossless codec
 * gives logits bit-identical to the safetensors source. */
static void test_lossless_codecs_hf_synth(void **state) {
    (void)state;
    const vz_dtype dts[] = {VZ_DTYPE_BF16, VZ_DTYPE_F16};
    const int32_t toks[] = {1, 7, 300, 42, 99, 5, 211, 64, 3, 480};
    for (int k = 0; k < 2; k++) {
        char dir[256], src[512];
        assert_non_null(vz_test_tmpdir(dir, sizeof dir));
        snprintf(src, sizeof src, "%s/hf", dir);
        vz_synth_opts so;
        vz_synth_opts_default(&so);
        so.shape = "tiny";
        so.dtype = dts[k];
        so.seed = 5;
        assert_int_equal(vz_synth(src, &so), VZ_OK);
        print_message("synth tiny %s:\n", vz_dtype_name(dts[k]));
        lossless_codecs_match(src, dir, NULL, toks, 10, NULL);
        vz_test_rmtree(dir);
    }
}

/* GGUF source (stories260K.gguf, f32): lossless .vz logits bit-identical. */
static void test_lossless_codecs_gguf(void **state) {
    (void)state;
    char gguf[512], dir[256];
    VZ_REQUIRE_MODEL(gguf, "stories260K/stories260K.gguf");
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const int32_t toks[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
    lossless_codecs_match(gguf, dir, NULL, toks, 12, NULL);
    vz_test_rmtree(dir);
}

/* ---- golden files ------------------------------------------------------ */

typedef struct golden_bad {
    const char *file;
    vz_status want;
    int check; /* open with vz_model_opts.check */
} golden_bad;

static const golden_bad bad_files[] = {
    {"bad_magic.vz", VZ_ERR_MAGIC, 0},         {"bad_version.vz", VZ_ERR_VERSION, 0},
    {"bad_checksum.vz", VZ_ERR_CHECKSUM, 1},   {"bad_index_checksum.vz", VZ_ERR_CHECKSUM, 0},
    {"bad_truncated.vz", VZ_ERR_TRUNCATED, 0}, {"bad_offset.vz", VZ_ERR_FORMAT, 0},
    {"bad_codec.vz", VZ_ERR_CODEC, 0},
};

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Offset of the TIDX section entry in the section table. */
static uint64_t tidx_entry(const uint8_t *f) {
    uint64_t tab = le(f + 24, 8), n = le(f + 32, 4);
    for (uint64_t i = 0; i < n; i++)
        if (!memcmp(f + tab + 32 * i, "TIDX", 4)) return tab + 32 * i;
    return 0;
}

/* Offset of field k of the first tensor entry: 0 codec, 1 data_offset. */
static uint64_t first_tensor_field(const uint8_t *f, int k) {
    uint64_t e = le(f + tidx_entry(f) + 8, 8) + 4, nl = le(f + e + 4, 2), nd = f[e + 6 + nl];
    uint64_t codec = e + 6 + nl + 2;
    return k == 0 ? codec : codec + 2 + 8 * nd + 8 + 4;
}

/* Recomputes the TIDX checksum and the section table checksum. */
static void rehash(uint8_t *f) {
    uint64_t se = tidx_entry(f);
    put_le(f + se + 24, XXH64(f + le(f + se + 8, 8), le(f + se + 16, 8), 0), 8);
    put_le(f + 40, XXH64(f + le(f + 24, 8), 32 * le(f + 32, 4), 0), 8);
}

static vz_status put_file(const char *dir, const char *name, const uint8_t *p, uint64_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    VZ_FAIL_IF(!f, VZ_ERR_IO, "%s: cannot write", path);
    int bad = fwrite(p, 1, n, f) != n;
    bad |= fclose(f) != 0;
    VZ_FAIL_IF(bad, VZ_ERR_IO, "%s: write failed", path);
    return VZ_OK;
}

static vz_status golden_write_bad(const char *dir, const uint8_t *good, uint64_t n) {
    uint8_t *f = malloc(n);
    VZ_FAIL_IF(!f, VZ_ERR_NOMEM, "out of memory");
#define FRESH() memcpy(f, good, n)
    FRESH(); f[0] = 'X';
    VZ_TRY(put_file(dir, "bad_magic.vz", f, n));
    FRESH(); put_le(f + 4, 2, 4);
    VZ_TRY(put_file(dir, "bad_version.vz", f, n));
    FRESH(); f[le(f + first_tensor_field(f, 1), 8) + 3] ^= 0x40;
    VZ_TRY(put_file(dir, "bad_checksum.vz", f, n));
    FRESH(); f[first_tensor_field(f, 0)] ^= 1;
    VZ_TRY(put_file(dir, "bad_index_checksum.vz", f, n));
    FRESH();
    VZ_TRY(put_file(dir, "bad_truncated.vz", f, le(f + first_tensor_field(f, 1), 8) + 100));
    FRESH(); put_le(f + first_tensor_field(f, 1), n - 8, 8); rehash(f);
    VZ_TRY(put_file(dir, "bad_offset.vz", f, n));
    FRESH(); put_le(f + first_tensor_field(f, 0), 999, 2); rehash(f);
    VZ_TRY(put_file(dir, "bad_codec.vz", f, n));
#undef FRESH
    free(f);
    return VZ_OK;
}

static vz_status golden_write(const char *dir) {
    char raw[512], out[512];
    snprintf(raw, sizeof raw, "%s/good_raw_bf16.vz", dir);
    VZ_TRY(tiny_vz_write(raw, VZ_DTYPE_BF16, GOLDEN_SEED));
    snprintf(out, sizeof out, "%s/good_raw_f32.vz", dir);
    VZ_TRY(tiny_vz_write(out, VZ_DTYPE_F32, GOLDEN_SEED));
    for (int i = 0; i < vz_codec_count(); i++) {
        const vz_codec *c = vz_codec_at(i);
        if (c->id == VZ_CODEC_raw) continue;
        snprintf(out, sizeof out, "%s/good_%s_bf16.vz", dir, c->name);
        vz_convert_opts o;
        vz_convert_opts_default(&o);
        o.codec_spec = c->name;
        VZ_TRY(vz_convert(raw, out, &o));
    }
    char *good;
    uint64_t n;
    VZ_TRY(vz_read_file(raw, &good, &n, 1 << 24));
    vz_status s = golden_write_bad(dir, (const uint8_t *)good, n);
    free(good);
    printf("golden files written to %s\n", dir);
    return s;
}

static void test_golden_good(void **state) {
    (void)state;
    DIR *d = opendir(golden_dir());
    if (!d) fail_msg("%s: no golden directory (run from the repository root)", golden_dir());
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "good_", 5) != 0 || l < 4 || strcmp(e->d_name + l - 3, ".vz") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", golden_dir(), e->d_name);
        assert_tiny_tensors(path, strstr(e->d_name, "_f32") ? VZ_DTYPE_F32 : VZ_DTYPE_BF16, GOLDEN_SEED);
        n++;
    }
    closedir(d);
    assert_true(n >= 2);
    print_message("%d golden good files load and decode to the source bytes\n", n);
}

/* ---- forward compatibility (docs/format.md sections 1, 2, 3, 5) ----------- */

/* Appends bytes (8-aligned) to the file image; returns their offset. */
static uint64_t grow(uint8_t **f, uint64_t *n, const void *p, uint64_t k) {
    uint64_t off = (*n + 7) & ~(uint64_t)7;
    *f = realloc(*f, off + k);
    assert_non_null(*f);
    memset(*f + *n, 0, off - *n);
    memcpy(*f + off, p, k);
    *n = off + k;
    return off;
}

/* Moves the section table to the end with section `tag` (flags, bytes) added or
 * replaced, then fixes the header (file_size, table offset/count/checksum). */
static void put_section(uint8_t **f, uint64_t *n, const char *tag, uint32_t flags, const void *p, uint64_t k) {
    uint64_t off = grow(f, n, p, k), nsec = le(*f + 32, 4), tab = le(*f + 24, 8);
    uint8_t t[32 * 8] = {0};
    assert_true(nsec < 8);
    memcpy(t, *f + tab, 32 * nsec);
    uint64_t i = 0;
    while (i < nsec && memcmp(t + 32 * i, tag, 4)) i++;
    if (i == nsec) nsec++;
    memcpy(t + 32 * i, tag, 4);
    put_le(t + 32 * i + 4, flags, 4);
    put_le(t + 32 * i + 8, off, 8);
    put_le(t + 32 * i + 16, k, 8);
    put_le(t + 32 * i + 24, XXH64(*f + off, k, 0), 8);
    tab = grow(f, n, t, 32 * nsec);
    put_le(*f + 16, *n, 8);
    put_le(*f + 24, tab, 8);
    put_le(*f + 32, nsec, 4);
    put_le(*f + 40, XXH64(*f + tab, 32 * nsec, 0), 8);
}

/* A copy of the TIDX section with 5 unknown bytes appended to every entry. */
static uint8_t *grown_tidx(const uint8_t *f, uint64_t *k) {
    uint64_t se = tidx_entry(f), off = le(f + se + 8, 8), size = le(f + se + 16, 8), nt = le(f + off, 4);
    uint8_t *t = malloc(size + 5 * nt), *q = t + 4;
    memcpy(t, f + off, 4);
    for (uint64_t i = 0, e = off + 4; i < nt; i++) {
        uint64_t es = le(f + e, 4);
        memcpy(q, f + e, es);
        put_le(q, es + 5, 4);
        memset(q + es, 0xA5, 5);
        q += es + 5, e += es;
    }
    *k = (uint64_t)(q - t);
    return t;
}

static vz_status open_image(const char *dir, const uint8_t *f, uint64_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/grown.vz", dir);
    VZ_TRY(put_file(dir, "grown.vz", f, n));
    vz_model_opts o;
    vz_model_opts_default(&o);
    o.check = 1;
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, &o);
    vz_model_close(m);
    if (s == VZ_OK) assert_tiny_tensors(path, VZ_DTYPE_BF16, GOLDEN_SEED);
    return s;
}

/* A golden file grown the ways docs/format.md allows still loads: longer
 * header, unknown header flags, unknown optional section, unknown CONF key,
 * longer tensor entries; an unknown required section fails. */
static void test_forward_compat(void **state) {
    (void)state;
    char dir[256], path[512];
    snprintf(path, sizeof path, "%s/good_lossless_bf16.vz", golden_dir());
    char *good;
    uint64_t n0;
    assert_int_equal(vz_read_file(path, &good, &n0, 1 << 24), VZ_OK);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    uint8_t *f = malloc(n0);
    uint64_t n = n0;
    memcpy(f, good, n0);
    put_le(f + 8, 128, 4);         /* header_size 128: bytes 48..127 are zero padding */
    put_le(f + 12, 0x80000000u, 4); /* unknown header flag */
    assert_int_equal(open_image(dir, f, n), VZ_OK);
    put_section(&f, &n, "XTRA", 0, "future", 6);
    assert_int_equal(open_image(dir, f, n), VZ_OK);
    uint64_t ce = le(f + 24, 8);
    while (memcmp(f + ce, "CONF", 4)) ce += 32;
    uint64_t coff = le(f + ce + 8, 8), csz = le(f + ce + 16, 8);
    char *conf = malloc(csz + 32);
    memcpy(conf, f + coff, csz);
    assert_true(conf[csz - 1] == '}');
    csz += (uint64_t)sprintf(conf + csz - 1, ",\"future_key\":[1]}") - 1;
    put_section(&f, &n, "CONF", 1, conf, csz);
    assert_int_equal(open_image(dir, f, n), VZ_OK);
    uint64_t tk;
    uint8_t *tidx = grown_tidx(f, &tk);
    put_section(&f, &n, "TIDX", 1, tidx, tk);
    assert_int_equal(open_image(dir, f, n), VZ_OK);
    put_section(&f, &n, "NEWR", 1, "x", 1);
    assert_int_equal(open_image(dir, f, n), VZ_ERR_UNSUPPORTED);
    print_message("grown golden file loads; unknown required section: %s\n", vz_last_error());
    free(tidx);
    free(conf);
    free(f);
    free(good);
    vz_test_rmtree(dir);
}

static void test_golden_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", golden_dir(), bad_files[i].file);
        vz_model_opts o;
        vz_model_opts_default(&o);
        o.check = bad_files[i].check;
        /* the .vz reader itself: vz_model_open would try llama2.c on a bad magic */
        vz_model *m = calloc(1, sizeof *m);
        snprintf(m->path, sizeof m->path, "%s", path);
        vz_status s = vz_read_vz(m, path, &o);
        if (s == VZ_OK) s = vz_model_bind(m);
        vz_model_close(m);
        if (s != bad_files[i].want)
            fail_msg("%s: got %s (%s), want %s", path, vz_status_name(s), vz_last_error(),
                     vz_status_name(bad_files[i].want));
        if (bad_files[i].want != VZ_ERR_MAGIC) { /* the others are also refused by vz_model_open */
            assert_int_equal(vz_model_open(&m, path, &o), bad_files[i].want);
            assert_null(m);
        }
        if (bad_files[i].want == VZ_ERR_CODEC || bad_files[i].want == VZ_ERR_FORMAT)
            assert_non_null(strstr(vz_last_error(), "model.embed_tokens.weight")); /* names the tensor */
    }
}

static void test_fuzz_seeds(void **state) {
    (void)state;
    const char *dirs[] = {"tests/fuzz/corpus/vz", golden_dir()};
    int n = 0;
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        if (!d) continue;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char path[512], *buf;
            uint64_t size;
            snprintf(path, sizeof path, "%s/%s", dirs[k], e->d_name);
            if (vz_read_file(path, &buf, &size, 1 << 24) != VZ_OK) continue;
            vz_fuzz_vz((const uint8_t *)buf, size);
            free(buf);
            n++;
        }
        closedir(d);
    }
    assert_true(n > 0);
}

int main(void) {
    if (getenv("VZ_GOLDEN_WRITE")) return golden_write(golden_dir()) == VZ_OK ? 0 : 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read_roundtrip),
        cmocka_unit_test(test_lossless_codecs_tiny_bf16),
        cmocka_unit_test(test_lossless_codecs_stories260k),
        cmocka_unit_test(test_lossless_codecs_hf_synth),
        cmocka_unit_test(test_lossless_codecs_gguf),
        cmocka_unit_test(test_golden_good),
        cmocka_unit_test(test_golden_errors),
        cmocka_unit_test(test_forward_compat),
        cmocka_unit_test(test_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
