/*
 * test_tokenizer.c - the SentencePiece BPE tokenizer against Debian's
 * spm_encode (the reference implementation, used as an oracle only) on the
 * Llama 2 and tok512 models, the shared eval texts and odd input; .bin and
 * .model agreement, decode(encode(x)) == x, the streaming detokenizer's
 * UTF-8 handling, malformed files (clear errors, no crash), the CLI, speed,
 * and a replay of the fuzz target over its seeds and mutations.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/testutil.h"
#include "core/io.h"
#include "tokenizer/tok_impl.h"

int vz_fuzz_tokenizer(const uint8_t *data, size_t size);

#define LLAMA_MODEL "llama2-tokenizer/tokenizer.model"
#define LLAMA_BIN "llama2-tokenizer/tokenizer.bin"
#define TOK512_MODEL "stories260K/tok512.model"
#define TOK512_BIN "stories260K/tok512.bin"
#define STORIES "eval/tinystories_valid_head.txt"
#define SHAKES "eval/tinyshakespeare.txt"
#define SEEDS "tests/fuzz/corpus/tokenizer"

#define REQUIRE_SPM()                                                              \
    do {                                                                           \
        if (vz_test_sh(NULL, "command -v spm_encode") != 0) {                      \
            print_message("SKIP: spm_encode not installed (Debian sentencepiece)\n"); \
            skip();                                                                \
        }                                                                          \
    } while (0)

/* ---- helpers ------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len) {
    char *s = NULL;
    uint64_t n = 0;
    if (vz_read_file(path, &s, &n, 1ull << 30) != VZ_OK) fail_msg("%s: %s", path, vz_last_error());
    *len = (size_t)n;
    return s;
}

static void spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static vz_tokenizer *open_tok(const char *path) {
    vz_tokenizer *t = NULL;
    vz_status st = vz_tokenizer_open(&t, path);
    if (st != VZ_OK) fail_msg("%s: %s: %s", path, vz_status_name(st), vz_last_error());
    return t;
}

/* Encodes s; returns the malloc'ed ids and their count in *n. */
static int32_t *encode(const vz_tokenizer *t, const char *s, size_t len, int bos, int32_t *n) {
    int32_t need = 0;
    vz_status st = vz_tokenizer_encode(t, s, len, bos, NULL, 0, &need);
    if (st != VZ_OK && st != VZ_ERR_ARG) fail_msg("encode: %s", vz_last_error());
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(vz_tokenizer_encode(t, s, len, bos, ids, need, n), VZ_OK);
    assert_int_equal(*n, need);
    return ids;
}

/* Ids of s as spm_encode prints them: "1 2 3". */
static char *encode_str(const vz_tokenizer *t, const char *s, size_t len) {
    int32_t n;
    int32_t *ids = encode(t, s, len, 0, &n);
    char *out = malloc((size_t)n * 12 + 1), *w = out;
    assert_non_null(out);
    *w = '\0';
    for (int32_t i = 0; i < n; i++) w += sprintf(w, i ? " %d" : "%d", ids[i]);
    free(ids);
    return out;
}

/* Decodes ids with the streaming detokenizer (then a flush). */
static char *decode(const vz_tokenizer *t, const int32_t *ids, int32_t n) {
    size_t cap = 64, len = 0;
    char *out = malloc(cap), buf[256];
    vz_detok d;
    vz_detok_init(&d, t);
    for (int32_t i = 0; i <= n; i++) {
        int32_t r = i < n ? vz_detok_next(&d, ids[i], buf, sizeof buf) : vz_detok_flush(&d, buf, sizeof buf);
        assert_true(r >= 0);
        while (len + (size_t)r + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + len, buf, (size_t)r);
        len += (size_t)r;
    }
    out[len] = '\0';
    return out;
}

/* Next line of s (split like getline: no trailing empty line), or NULL. */
static const char *next_line(const char **cur, const char *end, size_t *len) {
    if (*cur >= end) return NULL;
    const char *l = *cur, *nl = memchr(l, '\n', (size_t)(end - l));
    *len = (size_t)((nl ? nl : end) - l);
    *cur = nl ? nl + 1 : end;
    return l;
}

/* Compares our ids with spm_encode's, line by line, for every line of input. */
static void check_against_spm(const char *model, const char *input, int min_lines) {
    char *ref = NULL;
    int rc = vz_test_sh(&ref, "spm_encode --model='%s' --output_format=id < '%s' 2>/dev/null", model, input);
    assert_int_equal(rc, 0);
    vz_tokenizer *t = open_tok(model);
    size_t n_in;
    char *in = slurp(input, &n_in);
    const char *ci = in, *cr = ref, *li, *lr;
    size_t ni, nr = 0;
    int lines = 0;
    while ((li = next_line(&ci, in + n_in, &ni))) {
        lr = next_line(&cr, ref + strlen(ref), &nr);
        if (!lr) fail_msg("%s: spm_encode printed fewer lines than the input (%d)", model, lines);
        char *got = encode_str(t, li, ni);
        if (strlen(got) != nr || memcmp(got, lr, nr) != 0)
            fail_msg("%s line %d '%.*s':\n  spm_encode: %.*s\n  vramzip:    %s", model, lines + 1, (int)ni, li,
                     (int)nr, lr, got);
        free(got);
        lines++;
    }
    assert_true(lines >= min_lines);
    free(in);
    free(ref);
    vz_tokenizer_close(t);
}

/* First 300 lines of a shared eval text into dir/head.txt. */
static void head300(const char *src, const char *dir, char *out, size_t cap) {
    snprintf(out, cap, "%s/head.txt", dir);
    assert_int_equal(vz_test_sh(NULL, "head -n 300 '%s' > '%s'", src, out), 0);
}

static const char *const kOdd[] = {
    "Hello world",
    " one leading space",
    "   three leading spaces",
    "multiple   spaces  inside",
    "tab\tseparated\tand a trailing tab\t",
    "trailing spaces   ",
    " ",
    "   ",
    "caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 \xc3\x91" "and\xc3\xba e\xcc\x81",
    "emoji \xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd done",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe4\xb8\xad\xe6\x96\x87 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
    "\xff",
    "lone \xff invalid byte",
    "cut \xc3 short",
    "surrogate \xed\xa0\x80 and above max \xf4\x90\x80\x80 overlong \xc0\xaf",
    "",
    "literal \xe2\x96\x81 U+2581",
    "<s> </s> <unk> <0x41> markup",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "1234567890 3.14159 2,718",
    "control \x01\x02\x7f chars\r",
    "Mixed CASE, punctuation!? (parens) [brackets] {braces} -- em\xe2\x80\x94" "dash",
};

static void write_odd(const char *dir, char *path, size_t cap) {
    snprintf(path, cap, "%s/odd.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < sizeof kOdd / sizeof kOdd[0]; i++) fprintf(f, "%s\n", kOdd[i]);
    fclose(f);
}

/* ---- against spm_encode --------------------------------------------------- */

static void eval_vs_spm(const char *model_rel) {
    char model[1024], text[1024], dir[1024], head[1100];
    VZ_REQUIRE_MODEL(model, model_rel);
    REQUIRE_SPM();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const char *texts[] = {STORIES, SHAKES};
    for (int i = 0; i < 2; i++) {
        VZ_REQUIRE_MODEL(text, texts[i]);
        head300(text, dir, head, sizeof head);
        check_against_spm(model, head, 300);
    }
    vz_test_rmtree(dir);
}

static void test_spm_llama2_eval(void **state) { eval_vs_spm(LLAMA_MODEL); }
static void test_spm_tok512_eval(void **state) { eval_vs_spm(TOK512_MODEL); }

static void test_spm_odd_inputs(void **state) {
    char m1[1024], m2[1024], dir[1024], odd[1100];
    VZ_REQUIRE_MODEL(m1, LLAMA_MODEL);
    VZ_REQUIRE_MODEL(m2, TOK512_MODEL);
    REQUIRE_SPM();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    write_odd(dir, odd, sizeof odd);
    check_against_spm(m1, odd, (int)(sizeof kOdd / sizeof kOdd[0]));
    check_against_spm(m2, odd, (int)(sizeof kOdd / sizeof kOdd[0]));
    vz_test_rmtree(dir);
}

/* The seed models (crafted here with a protobuf writer, 260-300 pieces) have
 * USER_DEFINED and UNUSED pieces, both whitespace settings, and no byte
 * fallback: paths the shared models do not reach. */
static void test_spm_seed_models(void **state) {
    REQUIRE_SPM();
    char dir[1024], path[1100];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/in.txt", dir);
    const char *text = "ab abc  ba\n<x>ab c\n\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 x\nbab\n  ab  \nabcabcab<x>x\n"
                       "\xe2\x96\x81\xe2\x96\x81" "ab\n\n";
    spit(path, text, strlen(text));
    check_against_spm(SEEDS "/tiny_bpe.model", path, 8);
    check_against_spm(SEEDS "/tiny_bpe_ws.model", path, 8);
    /* Without byte fallback, a run of unknown characters is one <unk>. */
    text = "a xyz b\nxy\xc3\xa9" "a\n\xff\xfe\n";
    spit(path, text, strlen(text));
    check_against_spm(SEEDS "/tiny_nobf.model", path, 3);
    vz_test_rmtree(dir);
}

/* ---- API behaviour --------------------------------------------------------- */

static void test_basic_api(void **state) {
    char path[1024];
    VZ_REQUIRE_MODEL(path, LLAMA_MODEL);
    vz_tokenizer *t = open_tok(path);
    assert_int_equal(vz_tokenizer_vocab_size(t), 32000);
    assert_int_equal(vz_tokenizer_bos(t), 1);
    assert_int_equal(vz_tokenizer_eos(t), 2);
    assert_string_equal(vz_tokenizer_piece(t, 3), "<0x00>");
    assert_string_equal(vz_tokenizer_piece(t, 15043), " Hello");
    assert_null(vz_tokenizer_piece(t, 32000));
    assert_null(vz_tokenizer_piece(t, -1));
    int32_t ids[4], n = -1;
    assert_int_equal(vz_tokenizer_encode(t, "", 0, 0, ids, 4, &n), VZ_OK);
    assert_int_equal(n, 0);
    assert_int_equal(vz_tokenizer_encode(t, "", 0, 1, ids, 4, &n), VZ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    /* Too small a buffer: VZ_ERR_ARG and the size needed. */
    assert_int_equal(vz_tokenizer_encode(t, "Hello world", 11, 1, ids, 2, &n), VZ_ERR_ARG);
    assert_int_equal(n, 3);
    assert_int_equal(vz_tokenizer_encode(t, "Hello world", 11, 1, ids, 3, &n), VZ_OK);
    assert_int_equal(ids[1], 15043);
    assert_int_equal(ids[2], 3186);
    vz_tokenizer_close(t);
    vz_tokenizer_close(NULL);
}

/* tokenizer.bin gives the .model's ids on ordinary text (tok512.model also
 * removes extra whitespace, which llama2.c does not: those lines are skipped). */
static void bin_vs_model(const char *model_rel, const char *bin_rel, int skip_extra_ws) {
    char mp[1024], bp[1024], tp[1024];
    VZ_REQUIRE_MODEL(mp, model_rel);
    VZ_REQUIRE_MODEL(bp, bin_rel);
    VZ_REQUIRE_MODEL(tp, STORIES);
    vz_tokenizer *a = open_tok(mp), *b = open_tok(bp);
    assert_int_equal(vz_tokenizer_vocab_size(a), vz_tokenizer_vocab_size(b));
    size_t n;
    char *text = slurp(tp, &n);
    const char *cur = text, *l;
    size_t ln;
    int compared = 0;
    for (int i = 0; i < 300 && (l = next_line(&cur, text + n, &ln)); i++) {
        if (skip_extra_ws && ln > 0 && (l[0] == ' ' || l[ln - 1] == ' ' || memmem(l, ln, "  ", 2))) continue;
        char *x = encode_str(a, l, ln), *y = encode_str(b, l, ln);
        if (strcmp(x, y) != 0) fail_msg("line %d '%.*s':\n  .model: %s\n  .bin:   %s", i + 1, (int)ln, l, x, y);
        free(x);
        free(y);
        compared++;
    }
    assert_true(compared >= 200);
    free(text);
    vz_tokenizer_close(a);
    vz_tokenizer_close(b);
}

static void test_bin_matches_model_llama2(void **state) { bin_vs_model(LLAMA_MODEL, LLAMA_BIN, 0); }
static void test_bin_matches_model_tok512(void **state) { bin_vs_model(TOK512_MODEL, TOK512_BIN, 1); }

/* A GGUF-style vocabulary (U+2581 pieces with SentencePiece types) and a
 * llama2.c-style one (spaces, no types) encode like the .model. */
static void test_from_vocab(void **state) {
    char mp[1024];
    VZ_REQUIRE_MODEL(mp, TOK512_MODEL);
    vz_tokenizer *a = open_tok(mp);
    int32_t n = a->n;
    const char **pieces = malloc((size_t)n * sizeof *pieces), **texts = malloc((size_t)n * sizeof *texts);
    uint32_t *lens = malloc((size_t)n * sizeof *lens), *tlens = malloc((size_t)n * sizeof *tlens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    for (int32_t i = 0; i < n; i++) {
        pieces[i] = a->piece[i], lens[i] = a->len[i], types[i] = a->type[i];
        texts[i] = vz_tokenizer_piece(a, i), tlens[i] = (uint32_t)strlen(texts[i]);
    }
    vz_tokenizer *g = NULL, *l = NULL;
    assert_int_equal(vz_tokenizer_from_vocab(&g, n, pieces, lens, a->score, types, 1, 1, 2, 0, 1, "gguf"), VZ_OK);
    assert_int_equal(vz_tokenizer_from_vocab(&l, n, texts, tlens, a->score, NULL, 0, 1, 2, 0, 1, "l2c"), VZ_OK);
    assert_int_equal(l->type[1], VZ_PIECE_CONTROL);
    assert_int_equal(l->type[3], VZ_PIECE_BYTE);
    assert_int_equal(l->type[300], VZ_PIECE_NORMAL);
    const char *s = "Once upon a time, Lily saw a big red ball. \xc3\xa9\xf0\x9f\x98\x80 \xe6\x97\xa5";
    char *x = encode_str(a, s, strlen(s)), *y = encode_str(g, s, strlen(s)), *z = encode_str(l, s, strlen(s));
    assert_string_equal(x, y);
    assert_string_equal(x, z);
    assert_string_equal(vz_tokenizer_piece(g, 259), vz_tokenizer_piece(a, 259));
    int32_t bad_types[3] = {2, 3, 9};
    vz_tokenizer *bad = NULL;
    assert_int_equal(vz_tokenizer_from_vocab(&bad, 3, pieces, lens, NULL, bad_types, 1, 1, 2, 0, 1, "v.gguf"),
                     VZ_ERR_FORMAT);
    assert_non_null(strstr(vz_last_error(), "v.gguf"));
    assert_int_equal(vz_tokenizer_from_vocab(&bad, 0, pieces, lens, NULL, NULL, 1, 1, 2, 0, 1, "v.gguf"),
                     VZ_ERR_FORMAT);
    assert_null(bad);
    free(x), free(y), free(z);
    free(pieces), free(texts), free(lens), free(tlens), free(types);
    vz_tokenizer_close(a), vz_tokenizer_close(g), vz_tokenizer_close(l);
}

static void roundtrip(const vz_tokenizer *t, const char *s, size_t len) {
    int32_t n;
    int32_t *ids = encode(t, s, len, 1, &n);
    char *back = decode(t, ids, n);
    if (strlen(back) != len || memcmp(back, s, len) != 0) fail_msg("round trip of '%.*s' gave '%s'", (int)len, s, back);
    free(back);
    free(ids);
}

static void test_roundtrip(void **state) {
    char mp[1024], bp[1024], tp[1024];
    VZ_REQUIRE_MODEL(mp, LLAMA_MODEL);
    VZ_REQUIRE_MODEL(bp, TOK512_BIN);
    VZ_REQUIRE_MODEL(tp, STORIES);
    vz_tokenizer *ts[2] = {open_tok(mp), open_tok(bp)};
    size_t n;
    char *text = slurp(tp, &n);
    for (int k = 0; k < 2; k++) {
        const char *cur = text, *l;
        size_t ln;
        for (int i = 0; i < 300 && (l = next_line(&cur, text + n, &ln)); i++) roundtrip(ts[k], l, ln);
        roundtrip(ts[k], text, 20000); /* many lines at once */
        for (size_t i = 0; i < sizeof kOdd / sizeof kOdd[0]; i++) {
            const char *s = kOdd[i];
            size_t sl = strlen(s), pos = 0;
            int valid = 1;
            while (pos < sl && valid) pos += tok_utf8_char((const uint8_t *)s + pos, sl - pos, &valid);
            if (valid && !strstr(s, "\xe2\x96\x81")) roundtrip(ts[k], s, sl);
        }
    }
    free(text);
    vz_tokenizer_close(ts[0]);
    vz_tokenizer_close(ts[1]);
}

/* Feeds ids one by one; checks each step's output. */
static void expect_stream(const vz_tokenizer *t, const int32_t *ids, int n, const char *const *want,
                          const char *flush) {
    vz_detok d;
    char buf[64];
    vz_detok_init(&d, t);
    for (int i = 0; i < n; i++) {
        int32_t r = vz_detok_next(&d, ids[i], buf, sizeof buf);
        assert_int_equal(r, (int32_t)strlen(want[i]));
        assert_string_equal(buf, want[i]);
    }
    assert_int_equal(vz_detok_flush(&d, buf, sizeof buf), (int32_t)strlen(flush));
    assert_string_equal(buf, flush);
}

static void test_detok_stream(void **state) {
    char mp[1024];
    VZ_REQUIRE_MODEL(mp, LLAMA_MODEL);
    vz_tokenizer *t = open_tok(mp);
    int32_t n;
    int32_t *ids = encode(t, "\xf0\x9f\x98\x80 hi", 7, 1, &n);
    /* BOS, "▁", then the emoji's 4 byte pieces, then "▁hi". */
    assert_int_equal(n, 7);
    assert_int_equal(ids[2], 3 + 0xf0);
    const char *want[] = {"", "", "", "", "", "\xf0\x9f\x98\x80", " hi"};
    expect_stream(t, ids, 7, want, "");
    /* A sequence cut short by an ASCII byte, a lone continuation byte, an
     * invalid lead byte, and a sequence left open at the end. */
    int32_t bad[] = {3 + 0xf0, 3 + 0x9f, 3 + 'A', 3 + 0x80, 3 + 0xc0, 3 + 0xe6, 3 + 0x97};
    const char *want_bad[] = {"", "", "\xef\xbf\xbd" "A", "\xef\xbf\xbd", "\xef\xbf\xbd", "", ""};
    expect_stream(t, bad, 7, want_bad, "\xef\xbf\xbd");
    /* Surrogate halves are not let through. */
    int32_t sur[] = {3 + 0xed, 3 + 0xa0, 3 + 0x80};
    const char *want_sur[] = {"", "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd"};
    expect_stream(t, sur, 3, want_sur, "");
    /* The first piece loses its dummy-prefix space, later ones keep it. */
    int32_t words[] = {15043, 3186, 2, 1, 15043};
    const char *want_words[] = {"Hello", " world", "", "", "Hello"};
    expect_stream(t, words, 5, want_words, "");
    /* Too small a buffer fails without losing state. */
    vz_detok d;
    char small[4];
    vz_detok_init(&d, t);
    assert_int_equal(vz_detok_next(&d, 3 + 0xf0, small, sizeof small), 0);
    assert_int_equal(vz_detok_next(&d, 3186, small, sizeof small), VZ_ERR_ARG);
    assert_int_equal(d.n_pending, 1);
    assert_int_equal(vz_detok_next(&d, 32000, small, sizeof small), VZ_ERR_ARG);
    free(ids);
    vz_tokenizer_close(t);
}

/* ---- malformed files ------------------------------------------------------ */

static void expect_open_fails(const char *path, const char *needle) {
    vz_tokenizer *t = (vz_tokenizer *)1;
    vz_status st = vz_tokenizer_open(&t, path);
    if (st == VZ_OK) fail_msg("%s: opened although malformed", path);
    assert_null(t);
    assert_true(st == VZ_ERR_FORMAT || st == VZ_ERR_TRUNCATED || st == VZ_ERR_MAGIC || st == VZ_ERR_UNSUPPORTED);
    if (!strstr(vz_last_error(), path)) fail_msg("error does not name %s: %s", path, vz_last_error());
    if (needle && !strstr(vz_last_error(), needle)) fail_msg("error lacks '%s': %s", needle, vz_last_error());
}

/* Number of whole tokenizer.bin entries in data[0..cut) if cut falls
 * between two entries, else -1. */
static int32_t bin_entries_before(const char *data, size_t n, size_t cut) {
    size_t pos = 4;
    int32_t k = 0;
    while (pos < cut && pos + 8 <= n) {
        int32_t len;
        memcpy(&len, data + pos + 4, 4);
        pos += 8 + (size_t)len;
        k++;
    }
    return pos == cut ? k : -1;
}

static void test_truncated_files(void **state) {
    char mp[1024], bp[1024], dir[1024], path[1100];
    VZ_REQUIRE_MODEL(mp, TOK512_MODEL);
    VZ_REQUIRE_MODEL(bp, TOK512_BIN);
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const char *src[2] = {mp, bp};
    for (int k = 0; k < 2; k++) {
        size_t n;
        char *data = slurp(src[k], &n);
        size_t cuts[] = {0, 1, 3, 4, 5, 7, 13, 100, 1001, n / 2, n - 20, n - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            snprintf(path, sizeof path, "%s/cut%d_%zu", dir, k, cuts[i]);
            spit(path, data, cuts[i]);
            int32_t entries = k == 1 ? bin_entries_before(data, n, cuts[i]) : -1;
            vz_tokenizer *t = NULL;
            if (entries > 0 && vz_tokenizer_open(&t, path) == VZ_OK) {
                /* A tokenizer.bin has no count: a cut between entries after
                 * the longest token is a shorter, valid vocabulary, which the
                 * model readers reject against the config's vocab_size. */
                assert_int_equal(vz_tokenizer_vocab_size(t), entries);
                vz_tokenizer_close(t);
                continue;
            }
            expect_open_fails(path, NULL);
        }
        free(data);
    }
    vz_test_rmtree(dir);
}

static void test_bad_bin(void **state) {
    char dir[1024], path[1100];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    struct {
        int32_t w[3];
        size_t n;
        const char *needle;
    } cases[] = {
        {{8, 0, 0x7fffffff}, 12, "length 2147483647"},
        {{8, 0, -5}, 12, "length -5"},
        {{8, 0, 9}, 12, "max_token_length 8"},
        {{8, 0, 4}, 12, "token bytes"},
        {{0, 0, 0}, 12, "max_token_length"},
        {{27, 0, 0}, 4, "vocabulary size 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad%zu.bin", dir, i);
        spit(path, cases[i].w, cases[i].n);
        expect_open_fails(path, cases[i].needle);
    }
    vz_test_rmtree(dir);
}

/* Tiny protobuf writer for crafted .model files. */
static size_t pb_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static size_t pb_bytes(uint8_t *p, uint32_t field, const void *s, size_t len) {
    size_t n = pb_varint(p, field << 3 | 2);
    n += pb_varint(p + n, len);
    memcpy(p + n, s, len);
    return n + len;
}

static size_t pb_int(uint8_t *p, uint32_t field, uint64_t v) {
    size_t n = pb_varint(p, field << 3);
    return n + pb_varint(p + n, v);
}

/* Crafted ModelProto number kind (see test_bad_model) into buf; its length. */
static size_t bad_model(int kind, uint8_t *buf) {
    uint8_t trainer[16], unk[32], a[32], sub[32];
    size_t nt = pb_int(trainer, 3, 2);                /* model_type = BPE */
    size_t nu = pb_bytes(unk, 1, "<unk>", 5);
    nu += pb_int(unk + nu, 3, 2);                     /* type = UNKNOWN */
    size_t na = pb_bytes(a, 1, "a", 1), n = 0;
    /* A prefix field (unknown, skipped) so the file does not start like a .bin. */
    n += pb_bytes(buf + n, 9, "zzzzzzz", 7);
    switch (kind) {
    case 0: break;                                               /* no pieces */
    case 1: n += pb_varint(buf + n, 1 << 3 | 2), n += pb_varint(buf + n, 1ull << 40); break; /* huge length */
    case 2: n += pb_bytes(buf + n, 2, sub, pb_int(sub, 3, 1)); break;                        /* UNIGRAM */
    case 3: n += pb_bytes(buf + n, 3, sub, pb_bytes(sub, 2, "xyz", 3)); break;               /* charsmap */
    case 4: n += pb_int(buf + n, 2, 5); break;                                  /* spec as a varint */
    case 5: na += pb_int(a + na, 3, 9); break;                                  /* type 9 */
    case 6: memset(buf + n, 0xff, 12), n += 12; break;                          /* endless varint */
    case 7: nu = 0; break;                                                      /* no <unk> */
    }
    if (nu) n += pb_bytes(buf + n, 1, unk, nu);
    if (kind != 6) n += pb_bytes(buf + n, 1, a, na);
    if (kind != 2 && kind != 4 && kind != 6) n += pb_bytes(buf + n, 2, trainer, nt);
    if (kind == 0) n = pb_bytes(buf, 2, trainer, nt);
    return n;
}

static void test_bad_model(void **state) {
    static const char *const needle[] = {"vocabulary size 0", "length", "model_type = 1", "precompiled_charsmap",
                                         "wire type", "type 9", "varint", "UNKNOWN"};
    char dir[1024], path[1100];
    uint8_t buf[256];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    for (int k = 0; k < 8; k++) {
        snprintf(path, sizeof path, "%s/bad%d.model", dir, k);
        spit(path, buf, bad_model(k, buf));
        expect_open_fails(path, needle[k]);
    }
    /* The same framing with a valid tail opens: the failures above are the fields'. */
    size_t n = bad_model(7, buf);
    uint8_t unk[32], *w = buf + n;
    size_t nu = pb_bytes(unk, 1, "<unk>", 5);
    nu += pb_int(unk + nu, 3, 2);
    w += pb_bytes(w, 1, unk, nu);
    snprintf(path, sizeof path, "%s/good.model", dir);
    spit(path, buf, (size_t)(w - buf));
    vz_tokenizer *t = open_tok(path);
    assert_int_equal(vz_tokenizer_bos(t), -1); /* no "<s>" piece */
    assert_int_equal(vz_tokenizer_vocab_size(t), 2);
    char *ids = encode_str(t, "ab", 2);
    assert_string_equal(ids, "1 0 1"); /* "a" is id 0, <unk> id 1: "\xe2\x96\x81" and "b" are unknown */
    free(ids);
    vz_tokenizer_close(t);
    snprintf(path, sizeof path, "%s/missing.model", dir);
    assert_int_equal(vz_tokenizer_open(&t, path), VZ_ERR_NOT_FOUND);
    vz_test_rmtree(dir);
}

/* ---- CLI ------------------------------------------------------------------ */

static void test_cli(void **state) {
    char mp[1024], tp[1024], dir[1024], head[1100], *out = NULL, *ref = NULL;
    VZ_REQUIRE_MODEL(mp, LLAMA_MODEL);
    VZ_REQUIRE_MODEL(tp, SHAKES);
    REQUIRE_SPM();
    const char *cli = vz_test_cli();
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    head300(tp, dir, head, sizeof head);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -m '%s' --lines -f '%s'", cli, mp, head), 0);
    assert_int_equal(vz_test_sh(&ref, "spm_encode --model='%s' --output_format=id < '%s' 2>/dev/null", mp, head), 0);
    assert_string_equal(out, ref);
    free(out), free(ref);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -m '%s' --bos -- Hello world", cli, mp), 0);
    assert_string_equal(out, "1 15043 3186\n");
    free(out);
    assert_int_equal(vz_test_sh(&out, "printf 'Hello\\nworld\\n' | %s tokenize -m '%s' --lines", cli, mp), 0);
    assert_string_equal(out, "15043\n3186\n");
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s tokenize --help", cli), 0);
    assert_non_null(strstr(out, "usage: vramzip tokenize"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -m '%s' --frobnicate", cli, mp), 2);
    assert_non_null(strstr(out, "--frobnicate"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -- hi", cli), 2);
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -m '%s/nope.model' -- hi", cli, dir), 1);
    assert_non_null(strstr(out, "nope.model"));
    free(out);
    assert_int_equal(vz_test_sh(&out, "%s tokenize -m '%s' -f '%s/nope.txt'", cli, mp, dir), 1);
    assert_non_null(strstr(out, "nope.txt"));
    free(out);
    vz_test_rmtree(dir);
}

/* ---- speed and fuzz replay ------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_encode_speed(void **state) {
    char mp[1024], tp[1024];
    VZ_REQUIRE_MODEL(mp, LLAMA_MODEL);
    VZ_REQUIRE_MODEL(tp, STORIES);
    vz_tokenizer *t = open_tok(mp);
    size_t n;
    char *text = slurp(tp, &n);
    int32_t count, *ids = malloc((n + 2) * sizeof *ids);
    assert_non_null(ids);
    double t0 = now_s();
    assert_int_equal(vz_tokenizer_encode(t, text, n, 1, ids, (int32_t)n + 2, &count), VZ_OK);
    double dt = now_s() - t0;
    print_message("encoded %zu bytes into %d tokens in %.3f s\n", n, count, dt);
    assert_true((size_t)count > n / 8 && (size_t)count < n / 2);
    assert_true(dt < 5.0);
    free(ids);
    free(text);
    vz_tokenizer_close(t);
}

static void fuzz_file(const char *path, uint64_t *rng, int mutations) {
    size_t n;
    char *data = slurp(path, &n);
    vz_fuzz_tokenizer((const uint8_t *)data, n);
    uint8_t *m = malloc(n + 1);
    for (int i = 0; i < mutations; i++) {
        memcpy(m, data, n);
        size_t len = n;
        int k = (int)(vz_test_rand(rng) % 4);
        if (k == 0 && n) len = vz_test_rand(rng) % n;
        for (int j = 0; j < 1 + k * 2 && n; j++) m[vz_test_rand(rng) % n] = (uint8_t)vz_test_rand(rng);
        vz_fuzz_tokenizer(m, len);
    }
    free(m);
    free(data);
}

static void test_fuzz_replay(void **state) {
    static const char *seeds[] = {"tiny_bpe.model", "tiny_bpe_ws.model", "tiny_nobf.model", "tiny.bin",
                                  "truncated.model", "bad_len.bin"};
    uint64_t rng = 42;
    char path[512];
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        snprintf(path, sizeof path, SEEDS "/%s", seeds[i]);
        fuzz_file(path, &rng, 300);
    }
    char mp[1024];
    if (vz_test_model_path(mp, sizeof mp, TOK512_MODEL)) fuzz_file(mp, &rng, 100);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_api),
        cmocka_unit_test(test_spm_llama2_eval),
        cmocka_unit_test(test_spm_tok512_eval),
        cmocka_unit_test(test_spm_odd_inputs),
        cmocka_unit_test(test_spm_seed_models),
        cmocka_unit_test(test_bin_matches_model_llama2),
        cmocka_unit_test(test_bin_matches_model_tok512),
        cmocka_unit_test(test_from_vocab),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_detok_stream),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_bad_bin),
        cmocka_unit_test(test_bad_model),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_encode_speed),
        cmocka_unit_test(test_fuzz_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
