/*
 * test_chat.c - chat formats (vz_chat_encode, run --chat). Each format's
 * ids are checked against the text Hugging Face renders from the reference
 * model's template (written out here): byte-level models (chatml on the
 * Qwen 2 fixture, llama3 on the Llama 3 fixture with its header tokens)
 * encode that whole text, special tokens included, to the same ids;
 * SentencePiece models (zephyr, llama2, mistral on synth tiny's built-in
 * tokenizer) get the text between special tokens encoded piece by piece,
 * with <s> / </s> by id; mistral-v3 / v7 equal mistral-common's ids with
 * the tokenizers it ships. Also: detection from template markers, chatml's
 * default system message, the template through convert (.vz CHAT) and GGUF
 * (tokenizer.chat_template), errors, and the CLI.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/testutil.h"
#include "tokenizer/tokenizer.h"
#include "vramzip.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A synth tiny HF directory at dir (tokenizer: tok, or the built-in
 * SentencePiece one) with tokenizer_config.json's chat_template = tmpl
 * (NULL: no file). */
static void make_model(const char *dir, const char *tok, const char *tmpl) {
    char *out = NULL;
    int rc = vz_test_sh(&out, "%s synth --shape tiny -o '%s' --force %s%s%s 2>&1", vz_test_cli(), dir,
                        tok ? "--tokenizer '" : "", tok ? tok : "", tok ? "'" : "");
    if (rc != 0) fail_msg("synth: %s", out);
    free(out);
    if (!tmpl) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "chat_template", tmpl);
    char *txt = cJSON_Print(o), path[1100];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_text(path, txt);
    free(txt);
    cJSON_Delete(o);
}

static vz_model *open_model(const char *path) {
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, NULL);
    if (s != VZ_OK) fail_msg("open %s: %s", path, vz_last_error());
    return m;
}

/* make_model's directory, opened, its template recognised as format. */
static vz_model *model_as(const char *dir, const char *tok, const char *tmpl, const char *format) {
    make_model(dir, tok, tmpl);
    vz_model *m = open_model(dir);
    assert_string_equal(vz_model_chat_format(m), format);
    return m;
}

/* vz_chat_encode into a malloc'ed array (*n ids). */
static int32_t *chat(const vz_model *m, const char *fmt, const vz_chat_msg *msgs, int32_t n, int gen, int32_t *cnt) {
    int32_t need = 0;
    vz_status s = vz_chat_encode(m, fmt, msgs, n, gen, NULL, 0, &need);
    if (need == 0) fail_msg("chat: %s: %s", vz_status_name(s), vz_last_error());
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)need);
    assert_non_null(ids);
    if ((s = vz_chat_encode(m, fmt, msgs, n, gen, ids, need, cnt)) != VZ_OK) fail_msg("chat: %s", vz_last_error());
    assert_int_equal(*cnt, need);
    return ids;
}

/* ids of text (no BOS) appended to want[*n]. */
static void enc(const vz_model *m, const char *text, int32_t *want, int32_t *n) {
    int32_t k = 0;
    assert_int_equal(vz_tokenizer_encode(vz_model_tokenizer(m), text, strlen(text), 0, want + *n, 4096 - *n, &k), VZ_OK);
    *n += k;
}

static void same_ids(const int32_t *got, int32_t ng, const int32_t *want, int32_t nw, const char *what) {
    if (ng == nw && !memcmp(got, want, sizeof(int32_t) * (size_t)nw)) return;
    for (int32_t i = 0; i < ng || i < nw; i++)
        if (i >= ng || i >= nw || got[i] != want[i])
            fail_msg("%s: %d ids, want %d; first difference at %d: %d, want %d", what, (int)ng, (int)nw, (int)i,
                     i < ng ? (int)got[i] : -1, i < nw ? (int)want[i] : -1);
}

static const vz_chat_msg kConv[4] = {{"system", "You are a pirate."},
                                     {"user", "Hello, how are you?"},
                                     {"assistant", " I'm doing great. "},
                                     {"user", "  Show me chat templates!\n"}};

/* A byte-level model: the whole Hugging Face text, special tokens spelled
 * out, encodes to the chat ids. */
static void check_text(const vz_model *m, const char *fmt, const vz_chat_msg *msgs, int32_t n, int gen,
                       const char *hf_text) {
    int32_t cnt = 0, want[4096], nw = 0, bos = vz_tokenizer_bos(vz_model_tokenizer(m));
    int32_t *got = chat(m, fmt, msgs, n, gen, &cnt);
    if (bos >= 0 && strncmp(hf_text, "<|begin_of_text|>", 17) != 0) want[nw++] = bos;
    enc(m, hf_text, want, &nw);
    same_ids(got, cnt, want, nw, hf_text);
    free(got);
}

/* What run -i relies on: the ids of [..., reply] (no header after it) up to
 * its last stop id (the reply's end-of-turn token: stop is that id) are the
 * start of the ids of [..., reply, next user message] with the header. */
static void check_continues(const vz_model *m, const char *fmt, int32_t stop) {
    const vz_chat_msg conv[4] = {{"user", "Hi"}, {"assistant", "Hello! How can I help?"}, {"user", "Tell me more."}};
    int32_t np = 0, nf = 0, j = -1;
    int32_t *p = chat(m, fmt, conv, 2, 0, &np), *f = chat(m, fmt, conv, 3, 1, &nf);
    for (int32_t i = 0; i < np; i++)
        if (p[i] == stop) j = i;
    if (j < 0) fail_msg("%s: no end-of-turn id %d after the reply", fmt ? fmt : "model's", (int)stop);
    assert_true(nf > j);
    if (memcmp(p, f, sizeof(int32_t) * (size_t)(j + 1)) != 0)
        fail_msg("%s: the conversation's ids do not start with those up to the reply's end-of-turn", fmt ? fmt : "model's");
    free(p), free(f);
}

static void test_chatml_qwen(void **state) {
    (void)state;
    char dir[512], tok[600];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    snprintf(tok, sizeof tok, "tests/golden/bpe/qwen2/tokenizer.json");
    /* Qwen 2.5's template names its default system message in a Jinja string ("\n" as two characters) */
    vz_model *m = model_as(dir, tok,
                           "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
                           "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are "
                           "Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
                           "{%- endif %}...",
                           "chatml");
    check_text(m, NULL, kConv + 1, 3, 1,
               "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n I'm doing great. <|im_end|>\n"
               "<|im_start|>user\n  Show me chat templates!\n<|im_end|>\n<|im_start|>assistant\n");
    check_text(m, NULL, kConv, 2, 0,
               "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n");
    check_continues(m, NULL, vz_tokenizer_piece_id(vz_model_tokenizer(m), "<|im_end|>"));
    vz_model_close(m);
    /* a template without a default system message (Qwen 1.5's generic form) adds none */
    make_model(dir, tok,
               "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");
    m = open_model(dir);
    check_text(m, NULL, kConv + 1, 1, 1, "<|im_start|>user\nHello, how are you?<|im_end|>\n<|im_start|>assistant\n");
    vz_model_close(m);
    vz_test_rmtree(dir);
}

/* kConv's turns after its system message, in Llama 3's format, with the generation prompt. */
#define L3_TURNS                                                                                                \
    "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"                                  \
    "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great.<|eot_id|>"                                \
    "<|start_header_id|>user<|end_header_id|>\n\nShow me chat templates!<|eot_id|>"                              \
    "<|start_header_id|>assistant<|end_header_id|>\n\n"

/* The start of Llama 3.1's system message, dated by its template's literal. */
#define L31_SYS                                                                                                 \
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"     \
    "Today Date: 26 Jul 2024\n\n"

/* Today's date as Llama 3.2's template writes it: strftime_now("%d %b %Y"). */
static void today(char out[32]) {
    time_t now = time(NULL);
    struct tm tm;
    assert_non_null(localtime_r(&now, &tm));
    assert_true(strftime(out, 32, "%d %b %Y", &tm) > 0);
}

static void test_llama3(void **state) {
    (void)state;
    char dir[512], tok[600];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    /* the fixture plus Llama 3's header tokens, as added tokens */
    size_t len = 0;
    char *txt = vz_test_read_file("tests/golden/bpe/llama3/tokenizer.json", &len);
    assert_non_null(txt);
    cJSON *root = cJSON_Parse(txt), *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    free(txt);
    int maxid = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, added) if (cJSON_GetObjectItem(e, "id")->valueint > maxid) maxid = cJSON_GetObjectItem(e, "id")->valueint;
    const char *hdr[2] = {"<|start_header_id|>", "<|end_header_id|>"};
    for (int k = 0; k < 2; k++) {
        cJSON *t = cJSON_Duplicate(cJSON_GetArrayItem(added, 0), 1);
        cJSON_ReplaceItemInObject(t, "id", cJSON_CreateNumber(maxid + 1 + k));
        cJSON_ReplaceItemInObject(t, "content", cJSON_CreateString(hdr[k]));
        cJSON_AddItemToArray(added, t);
    }
    snprintf(tok, sizeof tok, "%s/llama3-tokenizer.json", dir);
    txt = cJSON_Print(root);
    write_text(tok, txt);
    free(txt);
    cJSON_Delete(root);
    char mdir[600];
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    vz_model *m = model_as(mdir, tok,
                           "{% set loop_messages = messages %}... '<|start_header_id|>' + message['role'] + "
                           "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' ...",
                           "llama3");
    check_text(m, NULL, kConv, 4, 1,
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a pirate.<|eot_id|>" L3_TURNS);
    check_continues(m, NULL, vz_tokenizer_piece_id(vz_model_tokenizer(m), "<|eot_id|>"));
    vz_model_close(m);
    /* Llama 3.1's template: the system message always, dated by its literal date_string */
    m = model_as(mdir, tok, "{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n"
                            "{%- endif %} ... '<|start_header_id|>system<|end_header_id|>\\n\\n' ... "
                            "\"Cutting Knowledge Date: December 2023\\n\" ...",
                 "llama3.1");
    check_text(m, NULL, kConv, 4, 1,
               L31_SYS "You are a pirate.<|eot_id|>" L3_TURNS);
    check_text(m, NULL, kConv + 1, 1, 1, /* no system message: the dated one, empty */
               L31_SYS "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n");
    check_text(m, NULL, kConv, 1, 0,
               L31_SYS "You are a pirate.<|eot_id|>");
    check_continues(m, NULL, vz_tokenizer_piece_id(vz_model_tokenizer(m), "<|eot_id|>"));
    vz_model_close(m);
    /* Llama 3.2's: today's date where the template calls strftime_now (the day read before and after, in case
     * midnight passes between) */
    m = model_as(mdir, tok, "{%- if strftime_now is defined %}\n {%- set date_string = strftime_now(\"%d %b %Y\") %}\n"
                            "{%- else %}\n {%- set date_string = \"26 Jul 2024\" %}{%- endif %} <|start_header_id|> "
                            "Cutting Knowledge Date: December 2023",
                 "llama3.1");
    const vz_chat_msg hi = {"user", "Hi"};
    char day[2][32];
    int32_t cnt = 0;
    today(day[0]);
    int32_t *got = chat(m, NULL, &hi, 1, 0, &cnt);
    today(day[1]);
    for (int k = strcmp(day[0], day[1]) ? 0 : 1; k < 2; k++) {
        char want[256];
        int32_t w[4096], nw = 0;
        snprintf(want, sizeof want,
                 "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                 "2023\nToday Date: %s\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
                 day[k]);
        enc(m, want, w, &nw);
        if (k == 0 && (cnt != nw || memcmp(got, w, sizeof(int32_t) * (size_t)nw))) continue; /* the later day */
        same_ids(got, cnt, w, nw, want);
        break;
    }
    free(got);
    /* chatml needs <|im_start|>, which this vocabulary lacks */
    int32_t n = 0;
    assert_int_equal(vz_chat_encode(m, "chatml", kConv, 2, 1, NULL, 0, &n), VZ_ERR_UNSUPPORTED);
    assert_non_null(strstr(vz_last_error(), "<|im_start|>"));
    vz_model_close(m);
    vz_test_rmtree(dir);
}

/* SentencePiece formats: [pieces] of text, B = BOS, E = EOS. */
typedef struct seg {
    int id; /* 1: BOS, 2: EOS, 0: text */
    const char *text;
} seg;

static void check_segs(const vz_model *m, const char *fmt, const vz_chat_msg *msgs, int32_t n, int gen,
                       const seg *s, int ns) {
    const vz_tokenizer *t = vz_model_tokenizer(m);
    int32_t cnt = 0, want[4096], nw = 0;
    int32_t *got = chat(m, fmt, msgs, n, gen, &cnt);
    for (int i = 0; i < ns; i++) {
        if (s[i].id == 1) want[nw++] = vz_tokenizer_bos(t);
        else if (s[i].id == 2) want[nw++] = vz_tokenizer_eos(t);
        else enc(m, s[i].text, want, &nw);
    }
    same_ids(got, cnt, want, nw, fmt);
    free(got);
}

static void test_sentencepiece_formats(void **state) {
    (void)state;
    char dir[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    /* TinyLlama-1.1B-Chat's template (zephyr) */
    vz_model *m = model_as(dir, NULL,
                           "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
                           "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}"
                           "...<|assistant|>...",
                           "zephyr");
    const seg zephyr[] = {{1, 0}, {0, "<|system|>\nYou are a pirate."}, {2, 0},
                          {0, "\n<|user|>\nHello, how are you?"}, {2, 0}, {0, "\n<|assistant|>\n I'm doing great. "}, {2, 0},
                          {0, "\n<|user|>\n  Show me chat templates!\n"}, {2, 0}, {0, "\n<|assistant|>\n"}};
    check_segs(m, NULL, kConv, 4, 1, zephyr, 10);
    /* Llama-2-chat: <<SYS>> in the first [INST]; contents stripped (the answer then spaced); <s> before each
     * later [INST] */
    const seg llama2[] = {{1, 0},
                          {0, "[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\nHello, how are you? [/INST] I'm doing great. "},
                          {2, 0}, {1, 0}, {0, "[INST] Show me chat templates! [/INST]"}};
    check_segs(m, "llama2", kConv, 4, 1, llama2, 5);
    const seg llama2_nosys[] = {{1, 0}, {0, "[INST] Hello, how are you? [/INST]"}};
    check_segs(m, "llama2", kConv + 1, 1, 1, llama2_nosys, 2);
    /* Mistral-7B-Instruct: contents as they are, the answer encoded on its own; BOS once */
    const seg mistral[] = {{1, 0}, {0, "[INST] Hello, how are you? [/INST]"}, {0, " I'm doing great. "}, {2, 0},
                           {0, "[INST]   Show me chat templates!\n [/INST]"}};
    check_segs(m, "mistral", kConv + 1, 3, 1, mistral, 5);
    const seg mistral_sys[] = {{1, 0}, {0, "[INST] You are a pirate.\n\nHello, how are you? [/INST]"}};
    check_segs(m, "mistral", kConv, 2, 1, mistral_sys, 2);
    for (int k = 0; k < 3; k++) /* the formats' replies end with </s> */
        check_continues(m, k == 0 ? "zephyr" : k == 1 ? "llama2" : "mistral", vz_tokenizer_eos(vz_model_tokenizer(m)));
    /* errors: an unknown format, roles out of turn, a short buffer, an unknown role */
    int32_t ids[8], n = 0;
    assert_int_equal(vz_chat_encode(m, "vicuna", kConv, 2, 1, ids, 8, &n), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "vicuna"));
    const vz_chat_msg two_users[2] = {{"user", "a"}, {"user", "b"}};
    assert_int_equal(vz_chat_encode(m, "llama2", two_users, 2, 1, ids, 8, &n), VZ_ERR_ARG);
    assert_int_equal(vz_chat_encode(m, NULL, kConv, 4, 1, ids, 8, &n), VZ_ERR_ARG);
    assert_true(n > 8); /* the count needed */
    const vz_chat_msg bad[1] = {{"tool", "x"}};
    assert_int_equal(vz_chat_encode(m, NULL, bad, 1, 1, ids, 8, &n), VZ_ERR_ARG);
    vz_model_close(m);
    /* a list of named templates: "default" is taken; a malformed one names the file */
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    write_text(cfg, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"[INST] <<SYS>>\"}, "
                    "{\"name\": \"default\", \"template\": \"<|im_start|>\"}]}");
    m = open_model(dir);
    assert_string_equal(vz_model_chat_format(m), "chatml");
    vz_model_close(m);
    /* Mistral-7B-Instruct-v0.1's template (a space before [/INST]) is mistral; mistral-v3 needs [INST] as a token */
    write_text(cfg, "{\"chat_template\": \"{{ bos_token }}{% for message in messages %}... {{ '[INST] ' + "
                    "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                    "{{ message['content'] + eos_token}}\"}");
    m = open_model(dir);
    assert_string_equal(vz_model_chat_format(m), "mistral");
    assert_int_equal(vz_chat_encode(m, "mistral-v3", kConv, 2, 1, ids, 8, &n), VZ_ERR_UNSUPPORTED);
    assert_non_null(strstr(vz_last_error(), "'[INST]'"));
    vz_model_close(m);
    write_text(cfg, "{\"chat_template\": 5}");
    assert_int_equal(vz_model_open(&m, dir, NULL), VZ_ERR_FORMAT);
    assert_non_null(strstr(vz_last_error(), "tokenizer_config.json"));
    /* no template: the format must be named */
    make_model(dir, NULL, NULL);
    m = open_model(dir);
    assert_null(vz_model_chat_template(m));
    assert_int_equal(vz_chat_encode(m, NULL, kConv, 2, 1, ids, 8, &n), VZ_ERR_UNSUPPORTED);
    assert_non_null(strstr(vz_last_error(), "zephyr"));
    vz_model_close(m);
    vz_test_rmtree(dir);
}

/* Greedy reply of up to n ids after logits, as run -i samples it (a stop id
 * ends it unevaluated); returns its length. */
static int32_t greedy_reply(vz_session *s, const vz_model_info *info, float *logits, int32_t n, int32_t *out) {
    int32_t k = 0;
    for (; k < n; k++) {
        int32_t id = 0, stop = 0;
        for (int32_t v = 1; v < info->vocab_size; v++)
            if (logits[v] > logits[id]) id = v;
        for (int32_t e = 0; e < info->n_eos; e++) stop |= id == info->eos_ids[e];
        if (stop) break;
        out[k] = id;
        assert_int_equal(vz_session_eval(s, &id, 1, logits, 0), VZ_OK);
    }
    return k;
}

/* run -i's second reply, computed here: the first turn, its reply, then the
 * conversation's ids from the reply's end-of-turn token in the same session;
 * and the same from scratch in one prefill (the KV cache carried over gives
 * the same ids). */
static int32_t second_reply(const vz_model *m, int32_t n, int32_t *r2) {
    vz_model_info info;
    assert_int_equal(vz_model_get_info((vz_model *)m, &info), VZ_OK);
    float *logits = malloc(sizeof(float) * (size_t)info.vocab_size);
    assert_non_null(logits);
    vz_session *s = NULL, *t = NULL;
    assert_int_equal(vz_session_create(&s, (vz_model *)m, NULL), VZ_OK);
    vz_chat_msg conv[3] = {{"user", "Hi"}, {"assistant", ""}, {"user", "How are you?"}};
    int32_t n1 = 0, np = 0, nf = 0, r1[64], j = -1;
    int32_t *ids1 = chat(m, NULL, conv, 1, 1, &n1);
    assert_int_equal(vz_session_eval(s, ids1, n1, logits, 0), VZ_OK);
    int32_t k1 = greedy_reply(s, &info, logits, n, r1);
    char text[4096] = "";
    for (int32_t i = 0; i < k1; i++) snprintf(text + strlen(text), sizeof text - strlen(text), "%s",
                                              vz_tokenizer_piece(vz_model_tokenizer(m), r1[i]));
    conv[1].content = text;
    int32_t *p = chat(m, NULL, conv, 2, 0, &np), *f = chat(m, NULL, conv, 3, 1, &nf);
    for (int32_t i = 0; i < np; i++)
        for (int32_t e = 0; e < info.n_eos; e++)
            if (p[i] == info.eos_ids[e]) j = i;
    assert_true(j >= 0);
    assert_int_equal(vz_session_eval(s, f + j, nf - j, logits, 0), VZ_OK);
    int32_t k2 = greedy_reply(s, &info, logits, n, r2);
    /* from scratch: ids1, the reply, the rest, in one eval */
    int32_t all[4096], na = 0, again[64];
    memcpy(all, ids1, sizeof(int32_t) * (size_t)n1), na = n1;
    memcpy(all + na, r1, sizeof(int32_t) * (size_t)k1), na += k1;
    memcpy(all + na, f + j, sizeof(int32_t) * (size_t)(nf - j)), na += nf - j;
    assert_int_equal(vz_session_create(&t, (vz_model *)m, NULL), VZ_OK);
    assert_int_equal(vz_session_eval(t, all, na, logits, 0), VZ_OK);
    assert_int_equal(greedy_reply(t, &info, logits, n, again), k2);
    assert_memory_equal(again, r2, sizeof(int32_t) * (size_t)k2);
    vz_session_free(s), vz_session_free(t);
    free(ids1), free(p), free(f), free(logits);
    return k2;
}

/* The ids mistral-common (tests/mistral_ref.py) gives msgs[0..n) with the
 * tokenizer of version ver, parsed into want (*nw ids). */
static void mistral_ref(const char *dir, const char *ver, const vz_chat_msg *msgs, int32_t n, int32_t *want,
                        int32_t *nw) {
    cJSON *a = cJSON_CreateArray();
    for (int32_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", msgs[i].role);
        cJSON_AddStringToObject(o, "content", msgs[i].content);
        cJSON_AddItemToArray(a, o);
    }
    char *txt = cJSON_Print(a), path[600], *out = NULL;
    snprintf(path, sizeof path, "%s/conv.json", dir);
    write_text(path, txt);
    free(txt);
    cJSON_Delete(a);
    if (vz_test_sh(&out, "python3 tests/mistral_ref.py %s '%s' 2>/dev/null", ver, path) != 0)
        fail_msg("mistral_ref.py: %s", out);
    *nw = 0;
    for (char *w = out, *end;; w = end) {
        long v = strtol(w, &end, 10);
        if (end == w) break;
        want[(*nw)++] = (int32_t)v;
    }
    free(out);
}

/* dir/tokenizer.json made from mistral-common's Mistral-Nemo-2407 Tekken
 * file (tests/tekken_ref.py), its path malloc'ed; NULL (said) when
 * mistral-common ships no tekken files. */
static char *tekken_json(const char *dir) {
    char *out = NULL, path[600];
    int have = vz_test_sh(&out, "python3 tests/tekken_ref.py --have 2>/dev/null") == 0;
    free(out);
    if (!have) return print_message("mistral-common ships no tekken files: nemo skipped\n"), NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (vz_test_sh(&out, "python3 tests/tekken_ref.py --json 240718 '%s'", path) != 0) fail_msg("tekken_ref.py: %s", out);
    free(out);
    char *p = strdup(path);
    assert_non_null(p);
    return p;
}

/* mistral (Mistral-7B-Instruct-v0.1), mistral-v3 (v0.3; Mistral-Nemo-2407
 * on its Tekken tokenizer.json) and mistral-v7 (Mistral-Large-2411) against
 * mistral-common with the tokenizers it ships:
 * v1's [INST] as text, answers encoded on their own; v3's [INST] / [/INST]
 * (and [SYSTEM_PROMPT]) as control tokens, v3's system message in the last
 * user message, answers with their trailing spaces cut; and run -i, which
 * evaluates a v3 conversation with a system message from the start each
 * turn (the message moves), with the replies of the whole conversation in a
 * new session. */
static void test_mistral_common(void **state) {
    (void)state;
    VZ_REQUIRE_SH("python3 -c 'import mistral_common.tokens.tokenizers.mistral, sentencepiece' 2>/dev/null",
                  "python3 mistral_common not installed (pip install 'mistral_common[sentencepiece]')");
    static const struct {
        const char *ver, *fmt, *tmpl;
    } kV[4] = {
        {"v1", "mistral",
         "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
         "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
         "eos_token}}"},
        {"v3", "mistral-v3",
         "{%- if loop.last and system_message is defined %}\n {{- \"[INST] \" + system_message + \"\\n\\n\" + "
         "message[\"content\"] + \"[/INST]\" }}\n{%- else %}\n {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}"
         "{%- elif message[\"role\"] == \"assistant\" %}\n {{- \" \" + message[\"content\"]|trim + eos_token}}"},
        {"v7", "mistral-v7",
         "{%- elif message['role'] == 'system' %}{{- '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}"
         "{%- if message['role'] == 'user' %}{{- '[INST] ' + message['content'] + '[/INST]' }}"},
        /* Mistral-Nemo-Instruct-2407: the v3 format on its Tekken tokenizer.json (tests/tekken_ref.py) */
        {"nemo", "mistral-v3",
         "{%- if loop.last and system_message is defined %}\n {{- \"[INST]\" + system_message + \"\\n\\n\" + "
         "message[\"content\"] + \"[/INST]\" }}\n{%- else %}\n {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}"
         "{%- elif message[\"role\"] == \"assistant\" %}\n {{- message[\"content\"] + eos_token}}"},
    };
    const vz_chat_msg multi[5] = {{"user", "Hi"}, {"assistant", "Hello! "}, {"user", "One more."},
                                  {"assistant", "Sure."}, {"user", "Bye"}};
    const vz_chat_msg sys_multi[4] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"},
                                      {"user", "One more."}};
    char dir[512];
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    for (int v = 0; v < 4; v++) {
        char *tok = NULL;
        if (!strcmp(kV[v].ver, "nemo")) { /* a tokenizer.json, as its Hugging Face repository has */
            if (!(tok = tekken_json(dir))) continue;
        } else if (vz_test_sh(&tok, "python3 tests/mistral_ref.py --path %s 2>/dev/null", kV[v].ver) != 0) {
            fail_msg("mistral_ref.py --path: %s", tok);
        }
        tok[strcspn(tok, "\n")] = 0;
        char mdir[600];
        snprintf(mdir, sizeof mdir, "%s/%s", dir, kV[v].ver);
        vz_model *m = model_as(mdir, tok, kV[v].tmpl, kV[v].fmt);
        free(tok);
        const struct {
            const vz_chat_msg *msgs;
            int32_t n;
        } convs[] = {{kConv + 1, 1}, {kConv, 2}, {kConv, 4}, {kConv + 1, 3}, {multi, 5}, {sys_multi, 4}};
        for (size_t k = 0; k < sizeof convs / sizeof *convs; k++) {
            int32_t want[4096], nw = 0, cnt = 0;
            mistral_ref(dir, kV[v].ver, convs[k].msgs, convs[k].n, want, &nw);
            assert_true(nw > 3);
            int32_t *got = chat(m, NULL, convs[k].msgs, convs[k].n, 1, &cnt);
            char what[64];
            snprintf(what, sizeof what, "%s, conversation %d", kV[v].fmt, (int)k);
            same_ids(got, cnt, want, nw, what);
            free(got);
        }
        vz_model_close(m);
    }
    /* run -i: v3 moves the system message into each new user message, so each turn starts over (told once);
     * its replies are those of the whole conversation evaluated in a new session */
    char *out = NULL, mdir[600];
    snprintf(mdir, sizeof mdir, "%s/v3", dir);
    int rc = vz_test_sh(&out, "printf 'How are you?\\nAnd then?\\n' | %s run -m '%s' -i --system 'Be brief.' -p Hi "
                              "-n 3 --temp 0 --print-ids 2>'%s/err'", vz_test_cli(), mdir, dir);
    if (rc != 0) fail_msg("run -i: rc %d: %s", rc, out);
    char errp[700], *err = NULL;
    snprintf(errp, sizeof errp, "cat '%s/err'", dir);
    assert_int_equal(vz_test_sh(&err, "%s", errp), 0);
    const char *note = strstr(err, "rewrites earlier turns");
    if (!note) fail_msg("run -i said: %s", err);
    assert_null(strstr(note + 1, "rewrites earlier turns"));
    free(err);
    vz_model *m = open_model(mdir);
    vz_model_info info;
    assert_int_equal(vz_model_get_info(m, &info), VZ_OK);
    float *logits = malloc(sizeof(float) * (size_t)info.vocab_size);
    assert_non_null(logits);
    vz_chat_msg conv[6] = {{"system", "Be brief."}, {"user", "Hi"},         {"assistant", ""},
                           {"user", "How are you?"}, {"assistant", ""}, {"user", "And then?"}};
    char text[3][512] = {"", "", ""};
    const char *line = out;
    for (int t = 0; t < 3; t++) {
        int32_t cnt = 0, r[8], k;
        int32_t *ids = chat(m, NULL, conv, 2 + 2 * t, 1, &cnt);
        vz_session *s = NULL;
        assert_int_equal(vz_session_create(&s, m, NULL), VZ_OK);
        assert_int_equal(vz_session_eval(s, ids, cnt, logits, 0), VZ_OK);
        k = greedy_reply(s, &info, logits, 3, r);
        vz_session_free(s);
        free(ids);
        char want[128] = "";
        vz_detok dt;
        vz_detok_init(&dt, vz_model_tokenizer(m));
        for (int32_t i = 0; i < k; i++) {
            snprintf(want + strlen(want), sizeof want - strlen(want), i ? " %d" : "%d", (int)r[i]);
            char buf[64];
            int32_t len = vz_detok_next(&dt, r[i], buf, (int32_t)sizeof buf);
            if (len > 0) strncat(text[t], buf, (size_t)len);
        }
        size_t n = strcspn(line, "\n");
        if (strlen(want) != n || strncmp(line, want, n))
            fail_msg("run -i reply %d: '%.*s', want '%s'", t, (int)n, line, want);
        line += n + (line[n] == '\n');
        if (t < 2) conv[2 + 2 * t].content = text[t]; /* as run -i keeps it: the text of whole characters */
    }
    free(logits);
    vz_model_close(m);
    free(out);
    vz_test_rmtree(dir);
}

/* The template travels: convert keeps it (.vz CHAT), llama.cpp-style GGUF
 * carries it; the CLI uses it and prints only the reply. */
static void test_template_travels_and_cli(void **state) {
    (void)state;
    char dir[512], vz[600], *out = NULL;
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    const char *tmpl = "{{ '<|user|>\\n' }} ... <|assistant|>";
    make_model(dir, NULL, tmpl);
    snprintf(vz, sizeof vz, "%s/m.vz", dir);
    assert_int_equal(vz_test_sh(&out, "%s convert '%s' -o '%s' --codec lossless -q 2>&1", vz_test_cli(), dir, vz), 0);
    free(out);
    vz_model *a = open_model(dir), *b = open_model(vz);
    assert_string_equal(vz_model_chat_template(b), tmpl);
    int32_t na = 0, nb = 0;
    int32_t *ia = chat(a, NULL, kConv, 2, 1, &na), *ib = chat(b, NULL, kConv, 2, 1, &nb);
    same_ids(ib, nb, ia, na, ".vz");
    free(ia), free(ib);
    vz_model_close(a), vz_model_close(b);
    /* run --chat: the reply alone, BOS-started ids; errors name what is missing */
    int rc = vz_test_sh(&out, "%s run -m '%s' --chat --system 'Be brief.' -p 'Hi' -n 3 --temp 0 --print-ids 2>&1",
                        vz_test_cli(), vz);
    if (rc != 0) fail_msg("run --chat: %s", out);
    free(out);
    rc = vz_test_sh(&out, "%s run -m '%s' --chat -n 3 2>&1", vz_test_cli(), vz);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--chat needs a prompt"));
    free(out);
    /* -i: a reply a line per message (the empty line skipped), the first message from -p */
    rc = vz_test_sh(&out, "printf 'How are you?\\n\\nAnd then?\\n' | %s run -m '%s' -i -p 'Hi' -n 3 --temp 0 --print-ids "
                          "2>/dev/null", vz_test_cli(), vz);
    if (rc != 0) fail_msg("run -i: rc %d: %s", rc, out);
    int lines = 0;
    for (const char *q = out; *q; q++) lines += *q == '\n';
    assert_int_equal(lines, 3);
    free(out);
    /* the second reply is the one of the conversation carried on in one session, and from scratch */
    rc = vz_test_sh(&out, "printf 'How are you?\\n' | %s run -m '%s' -i -p 'Hi' -n 5 --temp 0 --print-ids 2>/dev/null",
                    vz_test_cli(), vz);
    assert_int_equal(rc, 0);
    a = open_model(vz);
    int32_t r2[64], k2 = second_reply(a, 5, r2);
    vz_model_close(a);
    char want[512] = "";
    for (int32_t i = 0; i < k2; i++) snprintf(want + strlen(want), sizeof want - strlen(want), i ? " %d" : "%d", (int)r2[i]);
    const char *second = strchr(out, '\n');
    assert_non_null(second);
    if (strncmp(second + 1, want, strlen(want)) != 0 || second[1 + strlen(want)] != '\n')
        fail_msg("run -i second reply '%s', want '%s'", second + 1, want);
    free(out);
    rc = vz_test_sh(&out, "%s run -m '%s' --chat-template nope -p hi -n 3 2>&1", vz_test_cli(), vz);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "'nope' is unknown"));
    free(out);
    vz_test_rmtree(dir);
    /* GGUF: tokenizer.chat_template, as llama.cpp's converter writes it */
    if (vz_test_sh(NULL, "command -v python3 >/dev/null") != 0) {
        print_message("note: python3 not found; the GGUF part is skipped\n");
        return;
    }
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    make_model(dir, "tests/golden/bpe/qwen2/tokenizer.json", "<|im_start|>{{ message }}");
    char gg[600];
    snprintf(gg, sizeof gg, "%s/m.gguf", dir);
    if (vz_test_sh(&out, "python3 tests/hf_to_gguf.py '%s' '%s' qwen2 2>&1", dir, gg) != 0) fail_msg("hf_to_gguf: %s", out);
    free(out);
    a = open_model(gg);
    assert_string_equal(vz_model_chat_template(a), "<|im_start|>{{ message }}");
    assert_string_equal(vz_model_chat_format(a), "chatml");
    vz_model_close(a);
    vz_test_rmtree(dir);
}

int main(void) {
    vz_test_filter_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml_qwen),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_sentencepiece_formats),
        cmocka_unit_test(test_mistral_common),
        cmocka_unit_test(test_template_travels_and_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
