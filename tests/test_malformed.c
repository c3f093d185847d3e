/*
 * test_malformed.c - golden errors: a table of broken GGUF files, safetensors
 * files and Hugging Face directories, each derived from a valid tiny model.
 * Every case must fail quickly with the exact vz_status and a message naming
 * the field, both in-process (vz_model_open) and through `vramzip run`
 * (nonzero exit, no signal, stderr naming the file and the field).
 */
#define _GNU_SOURCE /* memmem */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ckpt.h"
#include "common/testutil.h"
#include "format/gguf.h"
#include "model/model.h"

static vz_ckpt_model W;          /* dim 16, hidden 40, 2 layers, 4 heads, 2 kv heads, vocab 24, tied */
static uint8_t *G;               /* a valid GGUF of W */
static size_t GN;
static vz_ckpt_gguf_off GO;

/* ---- mutation helpers ----------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Writes G (patched: value v of n bytes at off when n > 0; cut to len) as dir/m.gguf. */
static void gguf_variant(const char *dir, char *path, size_t off, uint64_t v, int n, size_t len) {
    uint8_t *b = malloc(GN);
    memcpy(b, G, GN);
    if (n > 0) put_le(b + off, v, n);
    snprintf(path, 1100, "%s/m.gguf", dir);
    assert_int_equal(vz_ckpt_write_file(path, b, len ? len : GN), 0);
    free(b);
}

/* Writes G with the first occurrence of `from` replaced by `to` (same length). */
static void gguf_replace(const char *dir, char *path, const char *from, const char *to) {
    uint8_t *b = malloc(GN);
    memcpy(b, G, GN);
    uint8_t *p = memmem(b, GN, from, strlen(from));
    assert_non_null(p);
    memcpy(p, to, strlen(to));
    snprintf(path, 1100, "%s/m.gguf", dir);
    assert_int_equal(vz_ckpt_write_file(path, b, GN), 0);
    free(b);
}

static void hf_valid(const char *dir, char *path) {
    assert_int_equal(vz_ckpt_write_hf(dir, &W, "F32", 1, 1), 0);
    snprintf(path, 1100, "%s", dir);
}

/* A valid HF dir whose config.json has key set to val (NULL: removed). */
static void hf_config_edit(const char *dir, char *path, const char *key, cJSON *val) {
    hf_valid(dir, path);
    char *text = vz_ckpt_hf_config(&W, 1), cfg[1100];
    cJSON *c = cJSON_Parse(text);
    free(text);
    cJSON_DeleteItemFromObjectCaseSensitive(c, key);
    if (val) cJSON_AddItemToObject(c, key, val);
    text = cJSON_Print(c);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    assert_int_equal(vz_ckpt_write_file(cfg, text, strlen(text)), 0);
    free(text);
    cJSON_Delete(c);
}

/* A valid HF dir whose model.safetensors is replaced by header + data. */
static void hf_st_raw(const char *dir, char *path, const char *header, uint64_t data_size) {
    hf_valid(dir, path);
    char st[1100];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    uint8_t *data = calloc(1, data_size + 1);
    assert_int_equal(vz_ckpt_write_st_raw(st, header, data, data_size), 0);
    free(data);
}

/* A valid HF dir with model.safetensors cut to len bytes or its u64 length set. */
static void hf_st_cut(const char *dir, char *path, uint64_t len, int set_header_len, uint64_t header_len) {
    hf_valid(dir, path);
    char st[1100];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    if (set_header_len) {
        FILE *f = fopen(st, "r+b");
        uint8_t le[8];
        put_le(le, header_len, 8);
        assert_int_equal(fwrite(le, 1, 8, f), 8);
        fclose(f);
    }
    if (len) assert_int_equal(truncate(st, (off_t)len), 0);
}

static uint64_t st_size(const char *dir) {
    char st[1100];
    struct stat s;
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    return stat(st, &s) == 0 ? (uint64_t)s.st_size : 0;
}

static void remove_file(const char *dir, const char *name) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(unlink(p), 0);
}

/* ---- the cases ------------------------------------------------------------ */

#define T1(shape, dtype, off) "{\"w\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" off "}}"

static void c_g_trunc_header(const char *d, char *p) { gguf_variant(d, p, 0, 0, 0, 20); }
static void c_g_trunc_kv(const char *d, char *p) { gguf_variant(d, p, 0, 0, 0, GO.first_tinfo - 5); }
static void c_g_trunc_tinfo(const char *d, char *p) { gguf_variant(d, p, 0, 0, 0, GO.first_tinfo + 10); }
static void c_g_trunc_data(const char *d, char *p) { gguf_variant(d, p, 0, 0, 0, GN - 100); }
static void c_g_version(const char *d, char *p) { gguf_variant(d, p, 4, 4, 4, 0); }
static void c_g_version1(const char *d, char *p) { gguf_variant(d, p, 4, 1, 4, 0); }
static void c_g_n_tensors(const char *d, char *p) { gguf_variant(d, p, GO.n_tensors, 1ull << 60, 8, 0); }
static void c_g_n_kv(const char *d, char *p) { gguf_variant(d, p, GO.n_kv, 1ull << 62, 8, 0); }
static void c_g_strlen(const char *d, char *p) { gguf_variant(d, p, GO.first_key_len, 1ull << 63, 8, 0); }
static void c_g_arrcount(const char *d, char *p) { gguf_variant(d, p, GO.tokens_count, 1ull << 61, 8, 0); }
static void c_g_q4_0(const char *d, char *p) { gguf_variant(d, p, GO.first_type, 2, 4, 0); }
static void c_g_q5_0(const char *d, char *p) { gguf_variant(d, p, GO.first_type, 6, 4, 0); }
static void c_g_q4_k(const char *d, char *p) { gguf_variant(d, p, GO.first_type, 12, 4, 0); }
static void c_g_bad_type(const char *d, char *p) { gguf_variant(d, p, GO.first_type, 1000, 4, 0); }
static void c_g_zero_dim(const char *d, char *p) { gguf_variant(d, p, GO.first_ne0, 0, 8, 0); }
static void c_g_shape(const char *d, char *p) { gguf_variant(d, p, GO.first_ne0, 8, 8, 0); }
static void c_g_missing_key(const char *d, char *p) { gguf_replace(d, p, "llama.block_count", "llama.blocx_count"); }
static void c_g_arch(const char *d, char *p) { /* the value after the key, its type and its length */
    gguf_replace(d, p, "general.architecture", "general.architecture");
    uint8_t *b = malloc(GN);
    memcpy(b, G, GN);
    uint8_t *v = (uint8_t *)memmem(b, GN, "general.architecture", 20) + 20 + 4 + 8;
    assert_memory_equal(v, "llama", 5);
    memcpy(v, "falcn", 5);
    assert_int_equal(vz_ckpt_write_file(p, b, GN), 0);
    free(b);
}
static void c_g_magic(const char *d, char *p) { gguf_replace(d, p, "GGUF", "GGUX"); }

static void c_s_tiny(const char *d, char *p) { hf_st_cut(d, p, 5, 0, 0); }
static void c_s_huge_len(const char *d, char *p) { hf_st_cut(d, p, 0, 1, 1ull << 40); }
static void c_s_len_past(const char *d, char *p) { hf_valid(d, p), hf_st_cut(d, p, 0, 1, st_size(d)); }
static void c_s_trunc_json(const char *d, char *p) { hf_st_cut(d, p, 100, 0, 0); }
static void c_s_trunc_data(const char *d, char *p) { hf_valid(d, p), hf_st_cut(d, p, st_size(d) - 10, 0, 0); }
static void c_s_bad_json(const char *d, char *p) { hf_st_raw(d, p, "{\"w\": {\"dtype\": \"F32\", [1, 2", 64); }
static void c_s_not_obj(const char *d, char *p) { hf_st_raw(d, p, "[1, 2, 3]", 0); }
static void c_s_past_end(const char *d, char *p) { hf_st_raw(d, p, T1("[4,4]", "F32", "[0,1000]"), 64); }
static void c_s_mismatch(const char *d, char *p) { hf_st_raw(d, p, T1("[4,4]", "F32", "[0,60]"), 64); }
static void c_s_reversed(const char *d, char *p) { hf_st_raw(d, p, T1("[4,4]", "F32", "[64,0]"), 64); }
static void c_s_no_offsets(const char *d, char *p) { hf_st_raw(d, p, T1("[4,4]", "F32", "[0]"), 64); }
static void c_s_zero_dim(const char *d, char *p) { hf_st_raw(d, p, T1("[0,4]", "F32", "[0,0]"), 64); }
static void c_s_neg_dim(const char *d, char *p) { hf_st_raw(d, p, T1("[-4,4]", "F32", "[0,64]"), 64); }
static void c_s_frac_dim(const char *d, char *p) { hf_st_raw(d, p, T1("[4.5,4]", "F32", "[0,72]"), 72); }
static void c_s_scalar(const char *d, char *p) { hf_st_raw(d, p, T1("[]", "F32", "[0,4]"), 4); }
static void c_s_5d(const char *d, char *p) { hf_st_raw(d, p, T1("[1,1,1,1,2]", "F32", "[0,8]"), 8); }
static void c_s_f64(const char *d, char *p) { hf_st_raw(d, p, T1("[4]", "F64", "[0,32]"), 32); }
static void c_s_i8(const char *d, char *p) { hf_st_raw(d, p, T1("[4]", "I8", "[0,4]"), 4); }
static void c_s_f8(const char *d, char *p) { hf_st_raw(d, p, T1("[4]", "F8_E4M3", "[0,4]"), 4); }
static void c_s_dup(const char *d, char *p) {
    hf_st_raw(d, p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
}

static void c_h_no_config(const char *d, char *p) { hf_valid(d, p), remove_file(d, "config.json"); }
static void c_h_no_weights(const char *d, char *p) { hf_valid(d, p), remove_file(d, "model.safetensors"); }
static void c_h_no_field(const char *d, char *p) { hf_config_edit(d, p, "hidden_size", NULL); }
static void c_h_no_eps(const char *d, char *p) { hf_config_edit(d, p, "rms_norm_eps", NULL); }
static void c_h_str_field(const char *d, char *p) { hf_config_edit(d, p, "hidden_size", cJSON_CreateString("16")); }
static void c_h_neg_field(const char *d, char *p) { hf_config_edit(d, p, "num_hidden_layers", cJSON_CreateNumber(-2)); }
static void c_h_heads(const char *d, char *p) { hf_config_edit(d, p, "num_attention_heads", cJSON_CreateNumber(3)); }
static void c_h_shape(const char *d, char *p) { hf_config_edit(d, p, "intermediate_size", cJSON_CreateNumber(48)); }
static void c_h_vocab(const char *d, char *p) { hf_config_edit(d, p, "vocab_size", cJSON_CreateNumber(25)); }
static void c_h_kv(const char *d, char *p) { hf_config_edit(d, p, "num_key_value_heads", cJSON_CreateNumber(4)); }
static void c_h_arch(const char *d, char *p) {
    const char *a[] = {"GPT2LMHeadModel"};
    hf_config_edit(d, p, "architectures", cJSON_CreateStringArray(a, 1));
}
static void c_h_rope_scaling(const char *d, char *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "rope_type", "yarn");
    cJSON_AddNumberToObject(o, "factor", 4.0);
    hf_config_edit(d, p, "rope_scaling", o);
}
static void c_h_rope_scaling_empty(const char *d, char *p) {
    hf_config_edit(d, p, "rope_scaling", cJSON_CreateObject());
}
static void c_h_bad_json(const char *d, char *p) {
    hf_valid(d, p);
    char c[1100];
    snprintf(c, sizeof c, "%s/config.json", d);
    assert_int_equal(vz_ckpt_write_file(c, "{\"hidden_size\": ", 16), 0);
}
static void c_h_missing_tensor(const char *d, char *p) {
    hf_valid(d, p);
    vz_ckpt_st *e;
    float *scratch;
    int n;
    char st[1100];
    assert_int_equal(vz_ckpt_hf_entries(&W, "F32", &e, &n, &scratch), 0);
    snprintf(st, sizeof st, "%s/model.safetensors", d);
    assert_int_equal(vz_ckpt_write_st(st, e, n - 1), 0); /* drops model.norm.weight */
    free(e), free(scratch);
}
static void c_h_index_shard(const char *d, char *p) {
    assert_int_equal(vz_ckpt_write_hf(d, &W, "F32", 2, 1), 0);
    snprintf(p, 1100, "%s", d);
    remove_file(d, "model-00002-of-00002.safetensors");
}
static void c_h_index_escape(const char *d, char *p) {
    assert_int_equal(vz_ckpt_write_hf(d, &W, "F32", 1, 1), 0);
    snprintf(p, 1100, "%s", d);
    const char *idx = "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}";
    char f[1100];
    snprintf(f, sizeof f, "%s/model.safetensors.index.json", d);
    assert_int_equal(vz_ckpt_write_file(f, idx, strlen(idx)), 0);
}
static void c_h_index_json(const char *d, char *p) {
    assert_int_equal(vz_ckpt_write_hf(d, &W, "F32", 2, 1), 0);
    snprintf(p, 1100, "%s", d);
    char f[1100];
    snprintf(f, sizeof f, "%s/model.safetensors.index.json", d);
    assert_int_equal(vz_ckpt_write_file(f, "{\"weight_map\": [", 16), 0);
}

typedef struct mcase {
    const char *name;
    void (*make)(const char *dir, char *path);
    vz_status want;
    const char *field;   /* must appear in vz_last_error() and in the CLI's stderr */
    int parse_only;      /* 1: not a GGUF to vz_model_open (wrong magic): check vz_gguf_parse */
} mcase;

static const mcase cases[] = {
    {"gguf truncated in header", c_g_trunc_header, VZ_ERR_TRUNCATED, "n_kv", 0},
    {"gguf truncated in kv", c_g_trunc_kv, VZ_ERR_TRUNCATED, "tokenizer.ggml.unknown_token_id", 0},
    {"gguf truncated in tensor infos", c_g_trunc_tinfo, VZ_ERR_TRUNCATED, "tensor name", 0},
    {"gguf truncated in data", c_g_trunc_data, VZ_ERR_TRUNCATED, "past the end", 0},
    {"gguf version 4", c_g_version, VZ_ERR_VERSION, "version", 0},
    {"gguf version 1", c_g_version1, VZ_ERR_UNSUPPORTED, "version", 0},
    {"gguf absurd n_tensors", c_g_n_tensors, VZ_ERR_FORMAT, "n_tensors", 0},
    {"gguf absurd n_kv", c_g_n_kv, VZ_ERR_FORMAT, "n_kv", 0},
    {"gguf absurd string length", c_g_strlen, VZ_ERR_TRUNCATED, "metadata key", 0},
    {"gguf absurd array count", c_g_arrcount, VZ_ERR_TRUNCATED, "tokenizer.ggml.tokens", 0},
    {"gguf Q4_0 tensor of width 16", c_g_q4_0, VZ_ERR_FORMAT,
     "token_embd.weight: type Q4_0 needs 2 dimensions, the inner one a multiple of 32 (16)", 0},
    {"gguf Q5_0 tensor", c_g_q5_0, VZ_ERR_UNSUPPORTED, "token_embd.weight: unsupported tensor type Q5_0 (6)", 0},
    {"gguf Q4_K tensor", c_g_q4_k, VZ_ERR_UNSUPPORTED, "unsupported tensor type Q4_K (12)", 0},
    {"gguf unknown tensor type", c_g_bad_type, VZ_ERR_UNSUPPORTED, "unknown (1000)", 0},
    {"gguf zero dim", c_g_zero_dim, VZ_ERR_FORMAT, "token_embd.weight: dim 0", 0},
    {"gguf shape vs config", c_g_shape, VZ_ERR_SHAPE, "model.embed_tokens.weight", 0},
    {"gguf missing key", c_g_missing_key, VZ_ERR_FORMAT, "llama.block_count is missing", 0},
    {"gguf other architecture", c_g_arch, VZ_ERR_UNSUPPORTED, "general.architecture", 0},
    {"gguf wrong magic", c_g_magic, VZ_ERR_MAGIC, "magic", 1},
    {"safetensors 5 bytes", c_s_tiny, VZ_ERR_TRUNCATED, "header length", 0},
    {"safetensors huge header length", c_s_huge_len, VZ_ERR_FORMAT, "header length", 0},
    {"safetensors header length past file", c_s_len_past, VZ_ERR_TRUNCATED, "header length", 0},
    {"safetensors truncated in json", c_s_trunc_json, VZ_ERR_TRUNCATED, "header length", 0},
    {"safetensors truncated in data", c_s_trunc_data, VZ_ERR_TRUNCATED, "data_offsets", 0},
    {"safetensors invalid json", c_s_bad_json, VZ_ERR_FORMAT, "not valid JSON", 0},
    {"safetensors json not an object", c_s_not_obj, VZ_ERR_FORMAT, "not an object", 0},
    {"safetensors offsets past end", c_s_past_end, VZ_ERR_TRUNCATED, "data_offsets", 0},
    {"safetensors offsets length mismatch", c_s_mismatch, VZ_ERR_FORMAT, "data_offsets", 0},
    {"safetensors begin > end", c_s_reversed, VZ_ERR_FORMAT, "data_offsets", 0},
    {"safetensors one offset", c_s_no_offsets, VZ_ERR_FORMAT, "data_offsets", 0},
    {"safetensors zero dim", c_s_zero_dim, VZ_ERR_FORMAT, "shape", 0},
    {"safetensors negative dim", c_s_neg_dim, VZ_ERR_FORMAT, "shape", 0},
    {"safetensors fractional dim", c_s_frac_dim, VZ_ERR_FORMAT, "shape", 0},
    {"safetensors scalar", c_s_scalar, VZ_ERR_UNSUPPORTED, "shape", 0},
    {"safetensors 5-d", c_s_5d, VZ_ERR_UNSUPPORTED, "shape", 0},
    {"safetensors F64", c_s_f64, VZ_ERR_UNSUPPORTED, "tensor w: unsupported dtype 'F64'", 0},
    {"safetensors I8", c_s_i8, VZ_ERR_UNSUPPORTED, "unsupported dtype 'I8'", 0},
    {"safetensors F8_E4M3", c_s_f8, VZ_ERR_UNSUPPORTED, "unsupported dtype 'F8_E4M3'", 0},
    {"safetensors duplicate name", c_s_dup, VZ_ERR_FORMAT, "tensor w is listed twice", 0},
    {"hf missing config.json", c_h_no_config, VZ_ERR_NOT_FOUND, "config.json", 0},
    {"hf missing weights", c_h_no_weights, VZ_ERR_NOT_FOUND, "model.safetensors", 0},
    {"hf missing hidden_size", c_h_no_field, VZ_ERR_FORMAT, "field 'hidden_size' is missing", 0},
    {"hf missing rms_norm_eps", c_h_no_eps, VZ_ERR_FORMAT, "field 'rms_norm_eps' is missing", 0},
    {"hf hidden_size is a string", c_h_str_field, VZ_ERR_FORMAT, "field 'hidden_size'", 0},
    {"hf negative layers", c_h_neg_field, VZ_ERR_FORMAT, "field 'num_hidden_layers'", 0},
    {"hf heads do not divide", c_h_heads, VZ_ERR_FORMAT, "field 'hidden_size' 16 is not a multiple", 0},
    {"hf intermediate_size vs tensors", c_h_shape, VZ_ERR_SHAPE, "mlp.gate_proj.weight", 0},
    {"hf vocab_size vs tensors", c_h_vocab, VZ_ERR_SHAPE, "model.embed_tokens.weight", 0},
    {"hf kv heads vs tensors", c_h_kv, VZ_ERR_SHAPE, "self_attn.k_proj.weight", 0},
    {"hf other architecture", c_h_arch, VZ_ERR_UNSUPPORTED, "field 'architectures'", 0},
    {"hf rope_scaling", c_h_rope_scaling, VZ_ERR_UNSUPPORTED, "field 'rope_scaling.rope_type' = 'yarn'", 0},
    {"hf rope_scaling {}", c_h_rope_scaling_empty, VZ_ERR_FORMAT, "field 'rope_scaling.rope_type' is missing", 0},
    {"hf config invalid json", c_h_bad_json, VZ_ERR_FORMAT, "config.json: not valid JSON", 0},
    {"hf missing tensor", c_h_missing_tensor, VZ_ERR_NOT_FOUND, "model.norm.weight is missing", 0},
    {"hf index names missing shard", c_h_index_shard, VZ_ERR_NOT_FOUND, "model-00002-of-00002.safetensors", 0},
    {"hf index shard outside dir", c_h_index_escape, VZ_ERR_FORMAT, "outside the directory", 0},
    {"hf index invalid json", c_h_index_json, VZ_ERR_FORMAT, "index.json: not valid JSON", 0},
};

/* In-process: the exact status and a message naming the field. */
static void check_inprocess(const mcase *c, const char *path) {
    vz_status s;
    vz_model *m = NULL;
    if (c->parse_only) {
        uint8_t *b = NULL;
        uint64_t n = 0;
        assert_int_equal(vz_read_file(path, (char **)&b, &n, 1ull << 30), VZ_OK);
        vz_gguf g;
        s = vz_gguf_parse(&g, b, n, path);
        free(b);
    } else {
        s = vz_model_open(&m, path, NULL);
    }
    if (s != c->want)
        fail_msg("%s: got %s, want %s (%s)", c->name, vz_status_name(s), vz_status_name(c->want), vz_last_error());
    assert_null(m);
    if (!strstr(vz_last_error(), c->field))
        fail_msg("%s: message \"%s\" does not name \"%s\"", c->name, vz_last_error(), c->field);
}

/* Through the CLI: fails cleanly and names the file and the field. */
static void check_cli(const mcase *c, const char *path) {
    char *out = NULL;
    int rc = vz_test_sh(&out, "timeout 20 %s run -m '%s' -n 1 -p hi </dev/null", vz_test_cli(), path);
    assert_non_null(out);
    if (rc <= 0 || rc >= 124 || strstr(out, "Sanitizer"))
        fail_msg("%s: CLI exit %d (want a clean failure): %s", c->name, rc, out);
    if (!strstr(out, "not implemented") && !c->parse_only) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        if (!strstr(out, c->field) || !strstr(out, base))
            fail_msg("%s: CLI output does not name \"%s\" and \"%s\": %s", c->name, c->field, base, out);
    }
    free(out);
}

static void test_malformed_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[1024], path[1100];
        assert_non_null(vz_test_tmpdir(dir, sizeof dir));
        cases[i].make(dir, path);
        check_inprocess(&cases[i], path);
        check_cli(&cases[i], path);
        vz_test_rmtree(dir);
    }
}

/* The fixtures themselves load, so every failure above comes from the one defect. */
static void test_fixtures_valid(void **state) {
    (void)state;
    char dir[1024], path[1100];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    gguf_variant(dir, path, 0, 0, 0, 0);
    vz_model *m = NULL;
    if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("gguf fixture: %s", vz_last_error());
    vz_model_close(m);
    remove_file(dir, "m.gguf");
    hf_valid(dir, path);
    if (vz_model_open(&m, path, NULL) != VZ_OK) fail_msg("hf fixture: %s", vz_last_error());
    vz_model_close(m);
    vz_test_rmtree(dir);
}

static int setup(void **state) {
    (void)state;
    if (vz_ckpt_random(&W, 16, 40, 2, 4, 2, 24, 0, 1234) != 0) return -1;
    return vz_ckpt_build_gguf(&W, 1, &G, &GN, &GO);
}

static int teardown(void **state) {
    (void)state;
    free(G);
    vz_ckpt_free(&W);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_valid),
        cmocka_unit_test(test_malformed_cases),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
