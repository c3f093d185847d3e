/*
 * test_tokenizer_json.c - byte-level BPE tokenizers from tokenizer.json
 * (src/tokenizer/bbpe.c) against Hugging Face `tokenizers`: the fixtures of
 * tests/golden/bpe/<family>/ (scripts/bpe_fixture.py: a small BPE trained
 * with Llama 3's and Qwen 2's pre-tokenizers, normalizers, special tokens and
 * templates, and the ids `tokenizers` gives for odd strings and for the first
 * 20 000 bytes of the shared evaluation texts) must give the same ids; every
 * text decodes back to itself; broken files fail with a message naming the
 * field. When python3 has `tokenizers`, random texts are compared live too.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/ckpt.h"
#include "common/testutil.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"
#include "vramzip.h"

static const char *const kFamilies[] = {"llama3", "qwen2"};

static char *slurp(const char *path, size_t *len) {
    char *p = vz_test_read_file(path, len);
    if (!p) fail_msg("cannot read %s", path);
    return p;
}

static vz_tokenizer *open_family(const char *fam) {
    char path[256];
    snprintf(path, sizeof path, "tests/golden/bpe/%s/tokenizer.json", fam);
    vz_tokenizer *t = NULL;
    if (vz_tokenizer_open(&t, path) != VZ_OK) fail_msg("%s: %s", path, vz_last_error());
    return t;
}

static cJSON *expected(const char *fam) {
    char path[256];
    snprintf(path, sizeof path, "tests/golden/bpe/%s/expected.json", fam);
    char *s = slurp(path, NULL);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    free(s);
    assert_non_null(j);
    return j;
}

static int32_t *encode(const vz_tokenizer *t, const char *s, size_t len, int32_t *n) {
    int32_t need = 0;
    vz_status st = vz_tokenizer_encode(t, s, len, 1, NULL, 0, &need);
    if (st != VZ_OK && st != VZ_ERR_ARG) fail_msg("encode: %s", vz_last_error());
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(vz_tokenizer_encode(t, s, len, 1, ids, need, n), VZ_OK);
    assert_int_equal(*n, need);
    return ids;
}

static char *decode(const vz_tokenizer *t, const int32_t *ids, int32_t n, size_t *len) {
    size_t cap = 64, o = 0;
    char *out = malloc(cap), buf[1024];
    vz_detok d;
    vz_detok_init(&d, t);
    for (int32_t i = 0; i <= n; i++) {
        int32_t r = i < n ? vz_detok_next(&d, ids[i], buf, sizeof buf) : vz_detok_flush(&d, buf, sizeof buf);
        assert_true(r >= 0);
        while (o + (size_t)r + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + o, buf, (size_t)r);
        o += (size_t)r;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

/* ids equal to the JSON list want; the first difference is reported. */
static void expect_ids(const int32_t *ids, int32_t n, const cJSON *want, const char *what) {
    int32_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, want) {
        if (k >= n || ids[k] != (int32_t)e->valuedouble)
            fail_msg("%s: id %d is %d, tokenizers gives %d", what, k, k < n ? ids[k] : -1, (int32_t)e->valuedouble);
        k++;
    }
    if (k != n) fail_msg("%s: %d ids, tokenizers gives %d", what, n, k);
}

/* A text without special tokens decodes back to itself (after NFC for qwen2:
 * the fixture's cases are NFC already except the decomposed e + U+0301). */
static void expect_roundtrip(const vz_tokenizer *t, const char *s, size_t len, const int32_t *ids, int32_t n,
                             const char *what) {
    if (memmem(s, len, "<|", 2)) return;
    size_t dl;
    char *d = decode(t, ids, n, &dl);
    if (!(dl == len && memcmp(d, s, len) == 0) && !memmem(s, len, "e\xcc\x81", 3))
        fail_msg("%s: decodes to %zu bytes '%.60s', not the %zu of '%.60s'", what, dl, d, len, s);
    free(d);
}

static void test_cases(void **state) {
    for (size_t f = 0; f < sizeof kFamilies / sizeof *kFamilies; f++) {
        vz_tokenizer *t = open_family(kFamilies[f]);
        cJSON *j = expected(kFamilies[f]);
        int k = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
            const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
            char what[96];
            snprintf(what, sizeof what, "%s case %d '%.40s'", kFamilies[f], k++, s);
            int32_t n;
            int32_t *ids = encode(t, s, strlen(s), &n);
            expect_ids(ids, n, cJSON_GetObjectItem(c, "ids"), what);
            expect_roundtrip(t, s, strlen(s), ids, n, what);
            free(ids);
        }
        assert_true(k >= 30);
        cJSON_Delete(j);
        vz_tokenizer_close(t);
    }
}

static void test_eval_texts(void **state) {
    char p[512];
    VZ_REQUIRE_MODEL(p, "eval/tinystories_valid_head.txt");
    for (size_t f = 0; f < sizeof kFamilies / sizeof *kFamilies; f++) {
        vz_tokenizer *t = open_family(kFamilies[f]);
        cJSON *j = expected(kFamilies[f]);
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "files")) {
            char rel[128], what[160];
            snprintf(rel, sizeof rel, "eval/%s", cJSON_GetObjectItem(c, "file")->valuestring);
            VZ_REQUIRE_MODEL(p, rel);
            size_t len, want = (size_t)cJSON_GetObjectItem(c, "bytes")->valuedouble;
            char *s = slurp(p, &len);
            assert_non_null(s);
            assert_true(len >= want);
            snprintf(what, sizeof what, "%s %s (%zu bytes)", kFamilies[f], rel, want);
            int32_t n;
            int32_t *ids = encode(t, s, want, &n);
            expect_ids(ids, n, cJSON_GetObjectItem(c, "ids"), what);
            assert_true(n > 2000);
            expect_roundtrip(t, s, want, ids, n, what);
            free(ids);
            free(s);
        }
        cJSON_Delete(j);
        vz_tokenizer_close(t);
    }
}

static void test_api(void **state) {
    vz_tokenizer *t = open_family("llama3");
    assert_int_equal(vz_tokenizer_vocab_size(t), 2004);
    assert_int_equal(vz_tokenizer_bos(t), 2000); /* the template's special token */
    assert_int_equal(vz_tokenizer_eos(t), 2001); /* <|end_of_text|> */
    assert_string_equal(vz_tokenizer_piece(t, 2000), "<|begin_of_text|>");
    assert_string_equal(vz_tokenizer_piece(t, 220), " "); /* "Ġ" decodes to a space */
    size_t jl = 0;
    assert_non_null(vz_tokenizer_json(t, &jl));
    assert_true(jl > 10000);
    /* special tokens are silent when decoded; text around them is kept */
    const char *s = "a<|eot_id|>b";
    int32_t n;
    int32_t *ids = encode(t, s, strlen(s), &n);
    assert_int_equal(ids[0], 2000);
    assert_int_equal(ids[2], 2003);
    size_t dl;
    char *d = decode(t, ids, n, &dl);
    assert_string_equal(d, "ab");
    free(d), free(ids);
    vz_tokenizer_close(t);
    t = open_family("qwen2");
    assert_int_equal(vz_tokenizer_bos(t), -1); /* no BOS in its template: add_bos adds nothing */
    assert_int_equal(vz_tokenizer_eos(t), 2000);
    ids = encode(t, "hi", 2, &n);
    assert_int_equal(n, 1);
    free(ids);
    vz_tokenizer_close(t);
}

/* Invalid UTF-8 and every byte value are encoded by byte tokens and decode
 * back (the detokenizer turns the invalid bytes into U+FFFD, so compare the
 * token bytes themselves). */
static void test_bytes(void **state) {
    vz_tokenizer *t = open_family("llama3");
    char s[512];
    for (int i = 0; i < 512; i++) s[i] = (char)(i * 7 + (i >> 3));
    int32_t n;
    int32_t *ids = encode(t, s, sizeof s, &n);
    size_t o = 0;
    char back[512];
    for (int32_t i = 1; i < n; i++) {
        const char *p = vz_tokenizer_piece(t, ids[i]);
        size_t l = strlen(p) ? strlen(p) : 1; /* byte 0's token */
        assert_true(o + l <= sizeof back);
        memcpy(back + o, p, l), o += l;
    }
    assert_int_equal(o, sizeof s);
    assert_memory_equal(back, s, sizeof s);
    free(ids);
    /* a long run of one letter: the merge heap stays fast */
    size_t big = 1 << 20;
    char *x = malloc(big);
    memset(x, 'a', big);
    ids = encode(t, x, big, &n);
    assert_true(n > 1);
    size_t dl;
    char *d = decode(t, ids, n, &dl);
    assert_int_equal(dl, big);
    assert_memory_equal(d, x, big);
    free(d), free(ids), free(x);
    vz_tokenizer_close(t);
}

/* s (malloc'd, freed here) with its first 'from' replaced by 'to' (malloc'd). */
static char *edit_text(char *s, const char *from, const char *to) {
    char *at = strstr(s, from);
    if (!at) fail_msg("fixture has no '%s'", from);
    size_t fl = strlen(from), tl = strlen(to), n = strlen(s);
    char *e = malloc(n - fl + tl + 1);
    memcpy(e, s, (size_t)(at - s));
    memcpy(e + (at - s), to, tl);
    memcpy(e + (at - s) + tl, at + fl, n - (size_t)(at - s) - fl + 1);
    free(s);
    return e;
}

/* The llama3 fixture's text with the first 'from' replaced by 'to' (malloc'd). */
static char *edit_fixture(const char *from, const char *to) {
    return edit_text(slurp("tests/golden/bpe/llama3/tokenizer.json", NULL), from, to);
}

/* The fixture with one edit must fail with a message naming needle. */
static void expect_bad(const char *from, const char *to, const char *needle) {
    char *e = edit_fixture(from, to);
    vz_tokenizer *t = NULL;
    vz_status st = vz_tokenizer_from_json(&t, (const uint8_t *)e, strlen(e), "bad.json");
    if (st == VZ_OK) fail_msg("'%s' -> '%s' loaded", from, to);
    assert_null(t);
    if (!strstr(vz_last_error(), needle) || !strstr(vz_last_error(), "bad.json"))
        fail_msg("'%s' -> '%s': error '%s' lacks '%s'", from, to, vz_last_error(), needle);
    free(e);
}

/* Without its first merge (Ġ t), " t" is still one token where the whole
 * piece is in the vocabulary and model.ignore_merges is set (Llama 3), and
 * two bytes where it is not. */
static void test_ignore_merges(void **state) {
    static const char kFirst[] = "\"merges\": [\n      [\n        \"\xc4\xa0\",\n        \"t\"\n      ],";
    for (int ign = 0; ign < 2; ign++) {
        char *e = edit_fixture(kFirst, "\"merges\": [");
        if (!ign) e = edit_text(e, "\"ignore_merges\": true", "\"ignore_merges\": false");
        vz_tokenizer *t = NULL;
        if (vz_tokenizer_from_json(&t, (const uint8_t *)e, strlen(e), "edited.json") != VZ_OK)
            fail_msg("%s", vz_last_error());
        int32_t n;
        int32_t *ids = encode(t, " t", 2, &n);
        assert_int_equal(n, ign ? 2 : 3);
        assert_int_equal(ids[1], ign ? 256 : 220); /* Ġt, else Ġ t */
        free(ids);
        ids = encode(t, " the", 4, &n);
        assert_int_equal(n, ign ? 2 : 3); /* Ġthe whole, else Ġ + "the" (he, then t he) */
        free(ids), free(e);
        vz_tokenizer_close(t);
    }
}

/* A pattern that backtracks without end fails the encode; it does not hang. */
static void test_regex_limit(void **state) {
    char *e = edit_fixture("(?i:'s|", "(?:(?:a|a)+)+b|(?i:'s|");
    vz_tokenizer *t = NULL;
    if (vz_tokenizer_from_json(&t, (const uint8_t *)e, strlen(e), "slow.json") != VZ_OK) fail_msg("%s", vz_last_error());
    char text[64];
    memset(text, 'a', sizeof text);
    int32_t ids[256], n;
    assert_int_equal(vz_tokenizer_encode(t, text, sizeof text, 1, ids, 256, &n), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "regex"));
    assert_int_equal(vz_tokenizer_encode(t, "hello", 5, 1, ids, 256, &n), VZ_OK);
    vz_tokenizer_close(t);
    free(e);
}

static void test_bad_files(void **state) {
    expect_bad("\"type\": \"BPE\"", "\"type\": \"Unigram\"", "model.type");
    expect_bad("\"Isolated\"", "\"Removed\"", "behavior");
    expect_bad("\"normalizer\": null", "\"normalizer\": {\"type\": \"NFKC\"}", "normalizer.type");
    expect_bad("\"vocab\": {", "\"vocab\": {\"zzz\": 5, ", "id 5");
    expect_bad("\"vocab\": {", "\"vocab\": {\"zzz\": -1, ", "model.vocab['zzz']");
    expect_bad("\"vocab\": {", "\"vocab\": {\"zzz\": 99999999, ", "model.vocab['zzz']");
    expect_bad("\"vocab\": {", "\"vocab\": {\"zzz\": 2010, ", "the number of tokens");
    /* an added token repeating a vocabulary entry, <|eot_id|> moved up: id 2003 is a hole */
    {
        char *g = edit_text(edit_fixture("\"id\": 2003", "\"id\": 2004"), "\"added_tokens\": [",
                            "\"added_tokens\": [{\"id\": 65, \"content\": \"b\"}, ");
        vz_tokenizer *t = NULL;
        assert_int_not_equal(vz_tokenizer_from_json(&t, (const uint8_t *)g, strlen(g), "hole.json"), VZ_OK);
        assert_non_null(strstr(vz_last_error(), "no token has id 2003"));
        free(g);
    }
    expect_bad("\"merges\": [", "\"merges\": [\"q\", ", "model.merges[0]");
    expect_bad("\"merges\": [", "\"merges\": [[\"xyzzy\", \"a\"], ", "model.merges[0]");
    expect_bad("(?i:", "(?i:(", "regex does not compile");
    expect_bad("\"byte_fallback\": false", "\"byte_fallback\": true", "byte_fallback");
    expect_bad("\"lstrip\": false", "\"lstrip\": true", "added_tokens[0]");
    expect_bad("\"id\": 2001", "\"id\": 7", "added_tokens[1]");
    expect_bad("\"pre_tokenizer\": {", "\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"x\": {", "Metaspace");
    expect_bad("\"model\": {", "\"model\": 3, \"y\": {", "no 'model' object");
    vz_tokenizer *t = NULL;
    assert_int_not_equal(vz_tokenizer_from_json(&t, (const uint8_t *)"{\"model\": {", 11, "cut.json"), VZ_OK);
    assert_non_null(strstr(vz_last_error(), "cut.json"));
    /* a fixture cut at many points never loads and never crashes */
    size_t n;
    char *s = slurp("tests/golden/bpe/llama3/tokenizer.json", &n);
    for (size_t cut = 0; cut < n; cut += n / 97 + 1) {
        assert_int_not_equal(vz_tokenizer_from_json(&t, (const uint8_t *)s, cut, "cut.json"), VZ_OK);
        assert_null(t);
    }
    free(s);
}

/* A checkpoint with a tokenizer.json (synth --tokenizer): its config names
 * the tokenizer's BOS and EOS, `tokenize` and `run` use it from the directory
 * and from a .vz made by convert (the TJSN section keeps the json), and the
 * lossless .vz generates the same ids as its source. */
static void test_model(void **state) {
    const char *cli = vz_test_cli();
    char dir[256];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    char *out = NULL, *a = NULL, *b = NULL;
    assert_int_equal(vz_test_sh(&out, "%s synth --shape tiny -o '%s/src' --tokenizer tests/golden/bpe/llama3/tokenizer.json",
                                cli, dir),
                     0);
    free(out);
    assert_int_equal(vz_test_sh(&out, "grep -c '\"bos_token_id\":.2000' '%s/src/config.json'", dir), 0);
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s/src' -o '%s/m.vz' --codec lossless", cli, dir, dir), 0);
    free(out);
    const char *text = "Once upon a time<|eot_id|> there";
    assert_int_equal(vz_test_sh(&a, "%s tokenize -m '%s/src' --bos -- '%s'", cli, dir, text), 0);
    assert_int_equal(vz_test_sh(&b, "%s tokenize -m '%s/m.vz' --bos -- '%s'", cli, dir, text), 0);
    assert_string_equal(a, b);
    vz_tokenizer *t = open_family("llama3");
    int32_t n;
    int32_t *ids = encode(t, text, strlen(text), &n);
    char want[512], *w = want;
    for (int32_t i = 0; i < n; i++) w += sprintf(w, i ? " %d" : "%d", ids[i]);
    sprintf(w, "\n");
    assert_string_equal(a, want);
    free(ids), free(a), free(b);
    vz_tokenizer_close(t);
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s/src' -p 'Once upon' -n 24 --temp 0 --print-ids 2>/dev/null", cli, dir), 0);
    assert_int_equal(vz_test_sh(&b, "%s run -m '%s/m.vz' -p 'Once upon' -n 24 --temp 0 --print-ids 2>/dev/null", cli, dir), 0);
    assert_true(strlen(a) > 24);
    assert_string_equal(a, b);
    free(a), free(b);
    /* and as text: no error, something printed */
    assert_int_equal(vz_test_sh(&a, "%s run -m '%s/m.vz' -p 'Once upon' -n 8 --temp 0 2>/dev/null", cli, dir), 0);
    assert_true(strncmp(a, "Once upon", 9) == 0 && strlen(a) > 10);
    free(a);
    vz_test_rmtree(dir);
}

/* A GGUF whose vocabulary the reader does not take (here: none) runs with a
 * tokenizer.json given by -z, as a Llama 3 GGUF ("gpt2" vocabulary) would;
 * one larger than the model's vocabulary is refused. */
/* A GGUF of a random model of this vocabulary, without a tokenizer, at path. */
static void write_gguf(const char *path, int vocab) {
    vz_ckpt_model cm;
    assert_int_equal(vz_ckpt_random(&cm, 16, 32, 1, 2, 1, vocab, 1, 7), 0);
    uint8_t *buf = NULL;
    size_t n = 0;
    vz_ckpt_gguf_off off;
    assert_int_equal(vz_ckpt_build_gguf(&cm, 0, &buf, &n, &off), 0);
    assert_int_equal(vz_ckpt_write_file(path, buf, n), 0);
    free(buf);
    vz_ckpt_free(&cm);
}

static void test_gguf_with_json(void **state) {
    char dir[256], path[300], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    write_gguf(path, 2004);
    const char *text = "Once upon a time<|eot_id|>";
    vz_tokenizer *t = open_family("llama3");
    int32_t ni;
    int32_t *ids = encode(t, text, strlen(text), &ni);
    char want[512], *w = want;
    for (int32_t i = 0; i < ni; i++) w += sprintf(w, i ? " %d" : "%d", ids[i]);
    free(ids);
    vz_tokenizer_close(t);
    assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -p 'x' -n 1", vz_test_cli(), path), 0);
    assert_non_null(strstr(out, "no tokenizer"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s run -m '%s' -z tests/golden/bpe/llama3/tokenizer.json -p '%s' -n 1 2>&1 >/dev/null",
                                vz_test_cli(), path, text),
                     0);
    char stat[64];
    snprintf(stat, sizeof stat, "prompt %d tok", ni);
    if (!strstr(out, stat)) fail_msg("wanted '%s' (ids %s) in '%s'", stat, want, out);
    free(out);
    write_gguf(path, 1000);
    assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -z tests/golden/bpe/llama3/tokenizer.json -p x -n 1",
                                    vz_test_cli(), path),
                         0);
    assert_non_null(strstr(out, "2004 tokens, more than the vocab_size 1000"));
    free(out);
    vz_test_rmtree(dir);
}

/* A GGUF with a byte-level ("gpt2") vocabulary, written by tests/hf_to_gguf.py
 * as llama.cpp's converter would from a synth checkpoint with a fixture
 * tokenizer: Llama 3's (llama arch, pre llama-bpe) and Qwen 2's (qwen2
 * arch: q/k/v biases, rows not permuted, pre qwen2), and tiny-hd's explicit
 * head_dim (attention.key_length / value_length). Its tokenizer encodes as
 * the tokenizer.json does, and a .vz made from the GGUF too; greedy ids are
 * the checkpoint's; qwen2 logits are its bits (same rows, same order),
 * llama's within f32 rounding (the permuted q/k rows sum in another order);
 * an unknown pre-tokenizer loads without a tokenizer. */
static void test_gguf_bpe(void **state) {
    VZ_REQUIRE_SH("command -v python3", "python3 not found (tests/hf_to_gguf.py)");
    static const char *const fam[3][3] = {
        {"llama3", "tiny", "llama-bpe"}, {"qwen2", "tiny-qwen2", "qwen2"}, {"llama3", "tiny-hd", "llama-bpe"}};
    static const char *const texts[] = {"Once upon a time<|eot_id|> there were 12345 cats",
                                        "caf\xc3\xa9 cafe\xcc\x81 <|im_start|>user\n  hi\t!", "It's 3.14159, we'll see"};
    const char *cli = vz_test_cli();
    char dir[256], *out = NULL, *a = NULL, *b = NULL, *c = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    for (int f = 0; f < 3; f++) {
        char src[300], gg[300], vz[300];
        snprintf(src, sizeof src, "%s/%s", dir, fam[f][1]);
        snprintf(gg, sizeof gg, "%s/%s.gguf", dir, fam[f][1]);
        snprintf(vz, sizeof vz, "%s/%s.vz", dir, fam[f][1]);
        assert_int_equal(vz_test_sh(&out, "%s synth --shape %s -o '%s' --tokenizer tests/golden/bpe/%s/tokenizer.json",
                                    cli, fam[f][1], src, fam[f][0]),
                         0);
        free(out);
        if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' %s", src, gg, fam[f][2]) != 0)
            fail_msg("hf_to_gguf: %s", out);
        free(out);
        assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec q8", cli, gg, vz), 0);
        free(out);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            assert_int_equal(vz_test_sh(&a, "%s tokenize -m '%s' --bos -- '%s'", cli, src, texts[i]), 0);
            assert_int_equal(vz_test_sh(&b, "%s tokenize -m '%s' --bos -- '%s'", cli, gg, texts[i]), 0);
            assert_int_equal(vz_test_sh(&c, "%s tokenize -m '%s' --bos -- '%s'", cli, vz, texts[i]), 0);
            assert_true(strlen(a) > 10);
            assert_string_equal(a, b);
            assert_string_equal(a, c);
            free(a), free(b), free(c);
        }
        char la[320], lb[320];
        snprintf(la, sizeof la, "%s/a.f32", dir);
        snprintf(lb, sizeof lb, "%s/b.f32", dir);
        assert_int_equal(vz_test_sh(&a, "%s run -m '%s' -p 'Once upon a time there was' -n 12 --temp 0 --print-ids "
                                        "--dump-logits '%s' 2>/dev/null", cli, src, la),
                         0);
        assert_int_equal(vz_test_sh(&b, "%s run -m '%s' -p 'Once upon a time there was' -n 12 --temp 0 --print-ids "
                                        "--dump-logits '%s' 2>/dev/null", cli, gg, lb),
                         0);
        assert_string_equal(a, b);
        free(a), free(b);
        size_t na, nb;
        float *xa = (float *)slurp(la, &na), *xb = (float *)slurp(lb, &nb);
        assert_int_equal(na, nb);
        if (f == 1) assert_memory_equal(xa, xb, na);
        if (f == 2) { /* a value_length other than key_length is refused by name */
            if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' %s --value-length 16", src, gg, fam[f][2]))
                fail_msg("hf_to_gguf: %s", out);
            free(out);
            assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -p x -n 1 2>&1", cli, gg), 0);
            assert_non_null(strstr(out, "attention.value_length 16 differs from attention.key_length 32"));
            free(out);
        }
        for (size_t i = 0; i < na / 4; i++)
            if (fabsf(xa[i] - xb[i]) > 1e-4f) fail_msg("%s logit %zu: %g against %g", fam[f][1], i, xa[i], xb[i]);
        free(xa), free(xb);
    }
    /* a pre-tokenizer this reader does not know: no tokenizer, and -z still serves */
    char gg[300];
    snprintf(gg, sizeof gg, "%s/other.gguf", dir);
    assert_int_equal(vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s/tiny' '%s' smaug-bpe", dir, gg), 0);
    free(out);
    assert_int_not_equal(vz_test_sh(&out, "%s run -m '%s' -p x -n 1", cli, gg), 0);
    assert_non_null(strstr(out, "no tokenizer"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s run -m '%s' -z tests/golden/bpe/llama3/tokenizer.json -p x -n 1", cli, gg), 0);
    free(out);
    vz_test_rmtree(dir);
}

/* N_TEXTS random texts of up to 39 pieces of bits (seeded), malloc'ed, and
 * the same as a JSON array of strings in path (the oracles' input). */
enum { N_TEXTS = 200 };
static char **random_texts(const char *const *bits, size_t nb, uint64_t seed, const char *path) {
    cJSON *arr = cJSON_CreateArray();
    char **texts = calloc(N_TEXTS, sizeof *texts);
    assert_non_null(texts);
    for (int i = 0; i < N_TEXTS; i++) {
        char buf[1024];
        size_t o = 0;
        int parts = (int)(vz_test_rand(&seed) % 40);
        for (int k = 0; k < parts; k++) {
            const char *b = bits[vz_test_rand(&seed) % nb];
            memcpy(buf + o, b, strlen(b)), o += strlen(b);
        }
        buf[o] = '\0';
        texts[i] = strdup(buf);
        cJSON_AddItemToArray(arr, cJSON_CreateString(buf));
    }
    char *js = cJSON_PrintUnformatted(arr);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(js, f);
    fclose(f);
    free(js);
    cJSON_Delete(arr);
    return texts;
}

static void free_texts(char **texts) {
    for (int i = 0; i < N_TEXTS; i++) free(texts[i]);
    free(texts);
}

/* t's ids of each of the N_TEXTS texts equal to the oracle's (json: an
 * array of id arrays, in the texts' order); label names the tokenizer. */
static void expect_texts(const vz_tokenizer *t, char **texts, const char *json, const char *label) {
    cJSON *want = cJSON_Parse(json);
    assert_non_null(want);
    int i = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, want) {
        assert_true(i < N_TEXTS);
        char what[96];
        snprintf(what, sizeof what, "%s random text %d '%.40s'", label, i, texts[i]);
        int32_t n;
        int32_t *ids = encode(t, texts[i], strlen(texts[i]), &n);
        expect_ids(ids, n, w, what);
        free(ids);
        i++;
    }
    assert_int_equal(i, N_TEXTS);
    cJSON_Delete(want);
}

/* ids[0..n) equal to the oracle's space-separated list, and no more. */
static void expect_id_list(const int32_t *ids, int32_t n, const char *list, const char *what) {
    const char *w = list;
    for (int32_t i = 0; i < n; i++) {
        char *end;
        long v = strtol(w, &end, 10);
        if (end == w || v != ids[i]) fail_msg("%s: id %d is %d, the oracle gives %.20s", what, i, ids[i], w);
        w = end;
    }
    while (*w == ' ' || *w == '\n') w++;
    if (*w) fail_msg("%s: %d ids, the oracle gives more: %.20s", what, n, w);
}

/* Random texts (letters of several scripts, digits, spaces, apostrophes,
 * special tokens) against the live oracle, when python3 has tokenizers. */
static void test_live_oracle(void **state) {
    VZ_REQUIRE_SH("python3 -c 'import tokenizers' 2>/dev/null", "python3 tokenizers not installed (pip install tokenizers)");
    static const char *const kBits[] = {"a", "Z", "é", "e\xcc\x81", "ß", "ǅ", "漢", "字", "😀", "1", "23", "٣", " ", "  ",
                                        "\t", "\n", "\r\n", "'s", "'LL", "'", "!", ".", ",", "-", "_", "\xc2\xa0",
                                        "\xe2\x80\x83", "<|im_start|>", "<|begin_of_text|>", "<|eot_id|>", "the", " the",
                                        "Once", " upon", "\xcc\x81", "\xef\xbf\xbd"};
    char dir[256], path[300];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/texts.json", dir);
    char **texts = random_texts(kBits, sizeof kBits / sizeof *kBits, 12345, path);
    /* the two fixtures, and llama3's with another pre-tokenizer: two Split
     * stages; GPT-2's form (ByteLevel alone, its own regex, a prefix space) */
    static const char *const kPre[] = {
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}+| ?[a-m]+\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+|\\\\p{L}+\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
        "\"trim_offsets\": true, \"use_regex\": false}]}",
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}"};
    const char *const files[] = {"tests/golden/bpe/llama3/tokenizer.json", "tests/golden/bpe/qwen2/tokenizer.json",
                                 "split2.json", "gpt2.json"};
    for (int v = 0; v < 2; v++) {
        char *src = slurp(files[0], NULL), fp[320];
        cJSON *root = cJSON_Parse(src), *pre = cJSON_Parse(kPre[v]);
        assert_non_null(root);
        assert_non_null(pre);
        cJSON_ReplaceItemInObjectCaseSensitive(root, "pre_tokenizer", pre);
        char *e = cJSON_Print(root);
        snprintf(fp, sizeof fp, "%s/%s", dir, files[2 + v]);
        FILE *ef = fopen(fp, "w");
        fputs(e, ef);
        fclose(ef);
        free(e), free(src);
        cJSON_Delete(root);
    }
    for (size_t fam = 0; fam < 4; fam++) {
        char *out = NULL, fp[320];
        if (fam < 2) snprintf(fp, sizeof fp, "%s", files[fam]);
        else snprintf(fp, sizeof fp, "%s/%s", dir, files[fam]);
        int rc = vz_test_sh(&out,
                            "python3 -c 'import json,sys; from tokenizers import Tokenizer; "
                            "t=Tokenizer.from_file(sys.argv[1]); "
                            "print(json.dumps([t.encode(s).ids for s in json.load(open(sys.argv[2]))]))' "
                            "'%s' '%s'",
                            fp, path);
        if (rc != 0) fail_msg("oracle on %s: %s", fp, out);
        vz_tokenizer *t = NULL;
        if (vz_tokenizer_open(&t, fp) != VZ_OK) fail_msg("%s: %s", fp, vz_last_error());
        expect_texts(t, texts, out, files[fam]);
        vz_tokenizer_close(t);
        free(out);
    }
    free_texts(texts);
    vz_test_rmtree(dir);
}

/* Both evaluation texts whole (1.9 MB) against the live oracle: the ids are
 * equal, and the encode takes well under a second (a PCRE2 mode that
 * rescanned the text on every match once made this 6 minutes). */
static void test_live_oracle_eval(void **state) {
    char p1[512], p2[512];
    VZ_REQUIRE_MODEL(p1, "eval/tinystories_valid_head.txt");
    VZ_REQUIRE_MODEL(p2, "eval/tinyshakespeare.txt");
    VZ_REQUIRE_SH("python3 -c 'import tokenizers' 2>/dev/null", "python3 tokenizers not installed (pip install tokenizers)");
    for (size_t f = 0; f < sizeof kFamilies / sizeof *kFamilies; f++) {
        char *out = NULL;
        int rc = vz_test_sh(&out,
                            "python3 -c 'import sys; from tokenizers import Tokenizer; "
                            "t=Tokenizer.from_file(sys.argv[1]); s=open(sys.argv[2]).read()+open(sys.argv[3]).read(); "
                            "print(\" \".join(map(str, t.encode(s, add_special_tokens=False).ids)))' "
                            "tests/golden/bpe/%s/tokenizer.json '%s' '%s'",
                            kFamilies[f], p1, p2);
        if (rc != 0) fail_msg("oracle: %s", out);
        size_t n1, n2;
        char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
        char *s = malloc(n1 + n2 + 1);
        memcpy(s, a, n1), memcpy(s + n1, b, n2), s[n1 + n2] = '\0';
        vz_tokenizer *t = open_family(kFamilies[f]);
        int32_t need = 0, n;
        vz_tokenizer_encode(t, s, n1 + n2, 0, NULL, 0, &need);
        int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
        assert_int_equal(vz_tokenizer_encode(t, s, n1 + n2, 0, ids, need, &n), VZ_OK);
        expect_id_list(ids, n, out, kFamilies[f]);
        print_message("%s: %d ids of %zu bytes equal to tokenizers'\n", kFamilies[f], n, n1 + n2);
        free(ids), free(s), free(a), free(b), free(out);
        vz_tokenizer_close(t);
    }
}

/* Mistral's Tekken vocabularies (Mistral-Nemo-2407; Pixtral-12B-2409 and
 * Mistral-Small-3), whose Hugging Face repositories ship them as a
 * tokenizer.json: tests/tekken_ref.py converts mistral-common's tekken
 * files as transformers does, and the ids of random texts (mixed case and
 * scripts, combining marks, digit runs, line breaks after punctuation: the
 * parts of Tekken's pattern) and of both evaluation texts must equal
 * mistral-common's own encoder's. Skips without python3's mistral_common. */
static void test_tekken(void **state) {
    VZ_REQUIRE_SH("python3 tests/tekken_ref.py --have 2>/dev/null",
                  "python3 mistral_common (with its tekken files) not installed (pip install mistral_common)");
    static const char *const kBits[] = {"a", "Z", "Hello", "WORLD", "camelCase", "ABCdef", "é", "E\xcc\x81", "ß",
                                        "ǅ", "漢字", "テキスト", "😀", "1", "2025", "٣", " ", "   ", "\t", "\n", "\r\n",
                                        "\n\n", "'s", "'", "!", ".", "/", "?!/\n", ",", "-", "_", "\xc2\xa0",
                                        "\xe2\x80\x83", "the", " the", " Once", " upon", "\xcc\x81", "\xef\xbf\xbd",
                                        "[INST", "<s"};
    static const char *const kVersions[] = {"240718", "240911"};
    char dir[256], path[300], eval1[512], eval2[512];
    int have_eval = vz_test_model_path(eval1, sizeof eval1, "eval/tinystories_valid_head.txt") &&
                    vz_test_model_path(eval2, sizeof eval2, "eval/tinyshakespeare.txt");
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/texts.json", dir);
    char **texts = random_texts(kBits, sizeof kBits / sizeof *kBits, 777, path);
    for (size_t v = 0; v < sizeof kVersions / sizeof *kVersions; v++) {
        char js[320], *out = NULL;
        snprintf(js, sizeof js, "%s/tekken_%s.json", dir, kVersions[v]);
        if (vz_test_sh(&out, "python3 tests/tekken_ref.py --json %s '%s'", kVersions[v], js) != 0)
            fail_msg("tekken_ref.py --json %s: %s", kVersions[v], out);
        free(out);
        vz_tokenizer *t = NULL;
        if (vz_tokenizer_open(&t, js) != VZ_OK) fail_msg("%s: %s", js, vz_last_error());
        assert_int_equal(vz_tokenizer_vocab_size(t), 131072);
        if (vz_test_sh(&out, "python3 tests/tekken_ref.py %s '%s'", kVersions[v], path) != 0)
            fail_msg("tekken_ref.py %s: %s", kVersions[v], out);
        char label[32];
        snprintf(label, sizeof label, "tekken %s", kVersions[v]);
        expect_texts(t, texts, out, label);
        free(out);
        for (int e = 0; e < 2 && have_eval; e++) {
            const char *ep = e ? eval2 : eval1;
            if (vz_test_sh(&out, "python3 tests/tekken_ref.py %s '%s'", kVersions[v], ep) != 0)
                fail_msg("tekken_ref.py %s: %s", kVersions[v], out);
            size_t len;
            char *s = slurp(ep, &len);
            int32_t n;
            int32_t *ids = encode(t, s, len, &n);
            char what[600];
            snprintf(what, sizeof what, "%s, %s", label, ep);
            expect_id_list(ids, n, out, what);
            print_message("tekken %s: %s, %d ids equal to mistral-common's\n", kVersions[v], ep, n);
            free(ids), free(s), free(out);
        }
        vz_tokenizer_close(t);
    }
    if (!have_eval) print_message("tekken: %s\n", "evaluation texts not found (../shared/models); random texts only");
    free_texts(texts);
    vz_test_rmtree(dir);
}

int main(void) {
    vz_test_filter_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),     cmocka_unit_test(test_eval_texts), cmocka_unit_test(test_api),
        cmocka_unit_test(test_bytes),     cmocka_unit_test(test_bad_files),  cmocka_unit_test(test_ignore_merges),
        cmocka_unit_test(test_regex_limit), cmocka_unit_test(test_model), cmocka_unit_test(test_gguf_with_json),
        cmocka_unit_test(test_gguf_bpe),
        cmocka_unit_test(test_live_oracle), cmocka_unit_test(test_live_oracle_eval), cmocka_unit_test(test_tekken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
