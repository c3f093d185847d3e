/*
 * bbpe.c - byte-level BPE tokenizers read from a Hugging Face tokenizer.json
 * (Llama 3, Qwen 2, GPT-2 families), encoding as huggingface/tokenizers does:
 *
 *   1. added tokens are cut out of the text first (leftmost, longest);
 *   2. the rest is normalized (none, or NFC by utf8proc);
 *   3. pre-tokenized: each Split stage's regex (PCRE2, Unicode properties)
 *      cuts every piece into its matches and the gaps between them
 *      ("Isolated"), then ByteLevel (optionally with GPT-2's own regex and a
 *      prefix space) maps every byte to its printable character (GPT-2's
 *      bytes_to_unicode);
 *   4. each piece is looked up whole (model.ignore_merges) or merged from its
 *      bytes by merge rank: lowest rank first, leftmost on ties, with a
 *      binary heap (tokenizers' Word::merge_all), so a long piece stays
 *      O(n log n);
 *   5. the post-processor's template may put a BOS first.
 *
 * Decoding maps the characters back to bytes (vz_tokenizer.text then holds
 * bytes, tlen their count). Invalid UTF-8 input cannot match a pattern: a
 * run of invalid bytes is one piece, encoded by its byte tokens, so every
 * input round-trips.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/io.h"
#include "tokenizer/tok_impl.h"

#define BB_MAX_SPLITS 8
#define BB_MAX_ADDED 65536
#define BB_MATCH_LIMIT 1000000 /* PCRE2 backtracking steps per match: a pathological pattern fails, never hangs */

/* GPT-2's pre-tokenizer pattern (ByteLevel with use_regex). */
static const char kGpt2Re[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct tok_bbpe {
    pcre2_code *re[BB_MAX_SPLITS]; /* Split stages, then ByteLevel's own regex if it has one */
    int32_t nre;
    int32_t nfc, prefix_space, ignore_merges;
    uint64_t *mkey;                /* merge table: (a << 32 | b) + 1, 0 empty */
    int32_t *mrank, *mnew;
    uint32_t mmask;
    int32_t byte_tok[256];         /* token of each byte's character */
    uint16_t byte_char[256];       /* bytes_to_unicode */
    int32_t nadded, *added;        /* added token ids by first byte, longest content first (sort_added) */
    int32_t first[256];            /* first index in added[] whose content starts with a byte, -1: none */
    char *text_arena;              /* decoded bytes of every token */
    char *json;                    /* the tokenizer.json bytes (the .vz TJSN section) */
    size_t json_len;
};

/* ---- bytes_to_unicode ------------------------------------------------- */

static void byte_chars(uint16_t map[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        map[b] = (uint16_t)(printable ? b : 256 + n++);
    }
}

static size_t put_cp(char *o, uint32_t c) {
    if (c < 0x80) return o[0] = (char)c, 1;
    o[0] = (char)(0xc0 | c >> 6), o[1] = (char)(0x80 | (c & 0x3f));
    return 2; /* byte characters are < U+0800 */
}

/* ---- merge table ------------------------------------------------------ */

static uint64_t mhash(uint64_t k) {
    k ^= k >> 33, k *= 0xff51afd7ed558ccdull, k ^= k >> 33;
    return k;
}

static int32_t merge_find(const struct tok_bbpe *b, int32_t x, int32_t y, int32_t *nid) {
    uint64_t k = ((uint64_t)(uint32_t)x << 32 | (uint32_t)y) + 1;
    for (uint32_t i = (uint32_t)mhash(k) & b->mmask;; i = (i + 1) & b->mmask) {
        if (b->mkey[i] == 0) return -1;
        if (b->mkey[i] == k) return *nid = b->mnew[i], b->mrank[i];
    }
}

static void merge_put(struct tok_bbpe *b, int32_t x, int32_t y, int32_t rank, int32_t nid) {
    uint64_t k = ((uint64_t)(uint32_t)x << 32 | (uint32_t)y) + 1;
    uint32_t i = (uint32_t)mhash(k) & b->mmask;
    while (b->mkey[i] != 0 && b->mkey[i] != k) i = (i + 1) & b->mmask;
    b->mkey[i] = k, b->mrank[i] = rank, b->mnew[i] = nid; /* a repeated pair takes its last rank, as tokenizers does */
}

/* ---- reading tokenizer.json ------------------------------------------ */

typedef struct bb_load {
    const char *what;
    int32_t n;            /* ids 0..n-1 */
    const char **piece;   /* (n) borrowed from the JSON tree */
    uint32_t *len;
    int32_t *type;
} bb_load;

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jtrue(const cJSON *o, const char *k) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k)); }

/* A JSON number that is an integer in [0, max). */
static int jid(const cJSON *v, int64_t max, int32_t *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble >= (double)max ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return 0;
    *out = (int32_t)v->valuedouble;
    return 1;
}

static vz_status compile_re(struct tok_bbpe *b, const char *pat, const char *what, const char *field) {
    VZ_FAIL_IF(b->nre >= BB_MAX_SPLITS, VZ_ERR_UNSUPPORTED, "%s: %s: more than %d regex stages", what, field,
               BB_MAX_SPLITS);
    int err;
    PCRE2_SIZE off;
    const uint32_t opts = PCRE2_UTF | PCRE2_UCP;
    b->re[b->nre] = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    if (!b->re[b->nre]) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return VZ_FAIL(VZ_ERR_FORMAT, "%s: %s: regex does not compile at offset %zu: %s", what, field, (size_t)off,
                       (const char *)msg);
    }
    b->nre++;
    return VZ_OK;
}

static vz_status read_split(struct tok_bbpe *b, const cJSON *p, const char *what, int i) {
    char field[64];
    snprintf(field, sizeof field, "pre_tokenizer.pretokenizers[%d]", i);
    const char *beh = jstr(p, "behavior");
    VZ_FAIL_IF(!beh || strcmp(beh, "Isolated") != 0, VZ_ERR_UNSUPPORTED,
               "%s: %s.behavior '%s' is not supported (Isolated only)", what, field, beh ? beh : "(missing)");
    VZ_FAIL_IF(jtrue(p, "invert"), VZ_ERR_UNSUPPORTED, "%s: %s.invert true is not supported", what, field);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
    const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
    VZ_FAIL_IF(!re && !lit, VZ_ERR_FORMAT, "%s: %s.pattern has neither Regex nor String", what, field);
    if (re) return compile_re(b, re, what, field);
    /* a literal: quoted for PCRE2 */
    size_t n = strlen(lit);
    VZ_FAIL_IF(n == 0 || strstr(lit, "\\E"), VZ_ERR_UNSUPPORTED, "%s: %s.pattern.String '%s' is not supported", what,
               field, lit);
    char *q = malloc(n + 5);
    VZ_FAIL_IF(!q, VZ_ERR_NOMEM, "%s: out of memory", what);
    snprintf(q, n + 5, "\\Q%s\\E", lit);
    vz_status st = compile_re(b, q, what, field);
    free(q);
    return st;
}

static vz_status read_byte_level(struct tok_bbpe *b, const cJSON *p, const char *what, int allow_regex) {
    b->prefix_space = jtrue(p, "add_prefix_space");
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
    if (!ur || cJSON_IsTrue(ur)) {
        VZ_FAIL_IF(!allow_regex, VZ_ERR_UNSUPPORTED, "%s: pre_tokenizer: ByteLevel use_regex after a Split", what);
        return compile_re(b, kGpt2Re, what, "pre_tokenizer.use_regex");
    }
    return VZ_OK;
}

static vz_status read_pre(struct tok_bbpe *b, const cJSON *root, const char *what) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *ty = jstr(p, "type");
    VZ_FAIL_IF(!ty, VZ_ERR_UNSUPPORTED,
               "%s: pre_tokenizer missing: not a byte-level BPE tokenizer (use tokenizer.model for SentencePiece "
               "models)",
               what);
    if (!strcmp(ty, "ByteLevel")) return read_byte_level(b, p, what, 1);
    VZ_FAIL_IF(strcmp(ty, "Sequence") != 0, VZ_ERR_UNSUPPORTED,
               "%s: pre_tokenizer.type '%s' is not supported (ByteLevel, or a Sequence of Split then ByteLevel)", what,
               ty);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
    int n = cJSON_GetArraySize(list), i = 0;
    VZ_FAIL_IF(!cJSON_IsArray(list) || n < 1, VZ_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers: not a list", what);
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const char *t = jstr(e, "type");
        if (t && !strcmp(t, "Split") && i < n - 1) {
            VZ_TRY(read_split(b, e, what, i));
        } else if (t && !strcmp(t, "ByteLevel") && i == n - 1) {
            VZ_TRY(read_byte_level(b, e, what, b->nre == 0));
        } else {
            return VZ_FAIL(VZ_ERR_UNSUPPORTED,
                           "%s: pre_tokenizer.pretokenizers[%d].type '%s' is not supported here (Split stages, then "
                           "ByteLevel last)",
                           what, i, t ? t : "(missing)");
        }
        i++;
    }
    return VZ_OK;
}

static vz_status read_normalizer(struct tok_bbpe *b, const cJSON *root, const char *what) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!nm || cJSON_IsNull(nm)) return VZ_OK;
    const char *ty = jstr(nm, "type");
    VZ_FAIL_IF(!ty || strcmp(ty, "NFC") != 0, VZ_ERR_UNSUPPORTED,
               "%s: normalizer.type '%s' is not supported (none or NFC)", what, ty ? ty : "(missing)");
    b->nfc = 1;
    return VZ_OK;
}

/* model.vocab into l. Ids are dense: each below the number of entries of
 * model.vocab and added_tokens together (so a small file cannot ask for a
 * huge table); n grows to cover them. */
static vz_status read_vocab(bb_load *l, const cJSON *vocab, const cJSON *added) {
    const int64_t max = (int64_t)cJSON_GetArraySize(vocab) + cJSON_GetArraySize(added);
    VZ_FAIL_IF(max > VZ_TOK_MAX_VOCAB, VZ_ERR_FORMAT, "%s: %lld tokens, more than %d", l->what, (long long)max,
               VZ_TOK_MAX_VOCAB);
    int32_t n = 0, id;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        VZ_FAIL_IF(!jid(e, max, &id), VZ_ERR_FORMAT,
                   "%s: model.vocab['%s']: id is not an integer in [0, %lld) (the number of tokens)", l->what,
                   e->string, (long long)max);
        if (id >= n) n = id + 1;
    }
    int k = 0;
    cJSON_ArrayForEach(e, added) {
        VZ_FAIL_IF(!jid(cJSON_GetObjectItemCaseSensitive(e, "id"), max, &id) || !jstr(e, "content"), VZ_ERR_FORMAT,
                   "%s: added_tokens[%d]: needs an integer id in [0, %lld) (the number of tokens) and a content string",
                   l->what, k, (long long)max);
        if (id >= n) n = id + 1;
        k++;
    }
    VZ_FAIL_IF(n == 0, VZ_ERR_FORMAT, "%s: model.vocab is empty", l->what);
    l->n = n;
    l->piece = calloc((size_t)n, sizeof *l->piece);
    l->len = calloc((size_t)n, sizeof *l->len);
    l->type = calloc((size_t)n, sizeof *l->type);
    VZ_FAIL_IF(!l->piece || !l->len || !l->type, VZ_ERR_NOMEM, "%s: out of memory for %d tokens", l->what, n);
    cJSON_ArrayForEach(e, vocab) {
        id = 0;
        jid(e, max, &id);
        VZ_FAIL_IF(l->piece[id], VZ_ERR_FORMAT, "%s: model.vocab: id %d is given to '%s' and '%s'", l->what, id,
                   l->piece[id], e->string);
        VZ_FAIL_IF(!e->string[0], VZ_ERR_FORMAT, "%s: model.vocab: empty token (id %d)", l->what, id);
        l->piece[id] = e->string, l->len[id] = (uint32_t)strlen(e->string), l->type[id] = VZ_PIECE_NORMAL;
    }
    return VZ_OK;
}

/* added_tokens over the vocabulary: special ones are CONTROL (silent when
 * decoded), others USER; an added token may repeat its vocabulary entry. */
static vz_status read_added(bb_load *l, struct tok_bbpe *b, const cJSON *added, int nfc) {
    int k = 0, n = cJSON_GetArraySize(added);
    VZ_FAIL_IF(n > BB_MAX_ADDED, VZ_ERR_FORMAT, "%s: %d added_tokens, more than %d", l->what, n, BB_MAX_ADDED);
    b->added = malloc((size_t)(n ? n : 1) * sizeof *b->added);
    VZ_FAIL_IF(!b->added, VZ_ERR_NOMEM, "%s: out of memory", l->what);
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        int32_t id = 0;
        jid(cJSON_GetObjectItemCaseSensitive(e, "id"), VZ_TOK_MAX_VOCAB, &id); /* checked by read_vocab */
        const char *c = jstr(e, "content");
        VZ_FAIL_IF(!c[0], VZ_ERR_FORMAT, "%s: added_tokens[%d]: empty content", l->what, k);
        VZ_FAIL_IF(jtrue(e, "lstrip") || jtrue(e, "rstrip") || jtrue(e, "single_word"), VZ_ERR_UNSUPPORTED,
                   "%s: added_tokens[%d] '%s': lstrip, rstrip and single_word are not supported", l->what, k, c);
        VZ_FAIL_IF(nfc && jtrue(e, "normalized"), VZ_ERR_UNSUPPORTED,
                   "%s: added_tokens[%d] '%s': normalized added tokens with a normalizer are not supported", l->what, k,
                   c);
        VZ_FAIL_IF(l->piece[id] && (l->len[id] != strlen(c) || memcmp(l->piece[id], c, l->len[id]) != 0),
                   VZ_ERR_FORMAT, "%s: added_tokens[%d] '%s': id %d is already '%s'", l->what, k, c, id, l->piece[id]);
        const int in_vocab = l->piece[id] != NULL; /* a plain added token repeating its entry stays NORMAL */
        l->piece[id] = c, l->len[id] = (uint32_t)strlen(c);
        l->type[id] = jtrue(e, "special") ? VZ_PIECE_CONTROL : in_vocab ? VZ_PIECE_NORMAL : VZ_PIECE_USER;
        b->added[b->nadded++] = id;
        k++;
    }
    return VZ_OK;
}

/* model.merges ("a b" strings or [a, b] pairs) into b's table. */
static vz_status read_merges(bb_load *l, struct tok_bbpe *b, const vz_tokenizer *t, const cJSON *merges) {
    int n = cJSON_GetArraySize(merges);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n + 2) cap <<= 1;
    b->mkey = calloc(cap, sizeof *b->mkey);
    b->mrank = malloc(cap * sizeof *b->mrank);
    b->mnew = malloc(cap * sizeof *b->mnew);
    VZ_FAIL_IF(!b->mkey || !b->mrank || !b->mnew, VZ_ERR_NOMEM, "%s: out of memory for %d merges", l->what, n);
    b->mmask = cap - 1;
    char *buf = NULL;
    size_t bcap = 0;
    vz_status st = VZ_OK;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *x = NULL, *y = NULL;
        size_t xn = 0, yn = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) x = e->valuestring, xn = (size_t)(sp - x), y = sp + 1, yn = strlen(y);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            x = e->child->valuestring, xn = strlen(x), y = e->child->next->valuestring, yn = strlen(y);
        }
        if (!x || !xn || !yn) {
            st = VZ_FAIL(VZ_ERR_FORMAT, "%s: model.merges[%d]: not \"a b\" nor [\"a\", \"b\"]", l->what, i);
            break;
        }
        if (xn + yn + 1 > bcap) {
            bcap = 2 * (xn + yn + 1);
            char *nb = realloc(buf, bcap);
            if (!nb) {
                st = VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", l->what);
                break;
            }
            buf = nb;
        }
        memcpy(buf, x, xn), memcpy(buf + xn, y, yn);
        int32_t a = tok_lookup(t, x, xn), c = tok_lookup(t, y, yn), m = tok_lookup(t, buf, xn + yn);
        if (a < 0 || c < 0 || m < 0) {
            st = VZ_FAIL(VZ_ERR_FORMAT, "%s: model.merges[%d] '%.*s' '%.*s': %s is not in model.vocab", l->what, i,
                         (int)xn, x, (int)yn, y, a < 0 ? "the first" : c < 0 ? "the second" : "their join");
            break;
        }
        merge_put(b, a, c, i, m);
        i++;
    }
    free(buf);
    return st;
}

/* The post-processor's template: a SpecialToken before $A is the BOS. */
static vz_status read_post(const cJSON *p, const vz_tokenizer *t, int32_t *bos, const char *what) {
    const char *ty = jstr(p, "type");
    if (!ty) return VZ_OK;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "processors")) VZ_TRY(read_post(e, t, bos, what));
        return VZ_OK;
    }
    if (!strcmp(ty, "ByteLevel")) return VZ_OK;
    VZ_FAIL_IF(strcmp(ty, "TemplateProcessing") != 0, VZ_ERR_UNSUPPORTED,
               "%s: post_processor.type '%s' is not supported (ByteLevel, TemplateProcessing)", what, ty);
    const cJSON *e;
    int seen_a = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "single")) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
            seen_a = 1;
            continue;
        }
        const char *name = jstr(sp, "id");
        VZ_FAIL_IF(!name || seen_a || *bos >= 0, VZ_ERR_UNSUPPORTED,
                   "%s: post_processor.single: only one special token before $A is supported", what);
        *bos = tok_lookup(t, name, strlen(name));
        VZ_FAIL_IF(*bos < 0, VZ_ERR_FORMAT, "%s: post_processor.single: '%s' is not a token", what, name);
    }
    return VZ_OK;
}

typedef struct added_key {
    uint32_t first, len;
    int32_t id;
} added_key;

/* By first byte, then longest first (the leftmost-longest match), then id. */
static int cmp_added(const void *x, const void *y) {
    const added_key *a = x, *b = y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static vz_status sort_added(const vz_tokenizer *t, struct tok_bbpe *b, const char *what) {
    added_key *k = malloc((size_t)(b->nadded ? b->nadded : 1) * sizeof *k);
    VZ_FAIL_IF(!k, VZ_ERR_NOMEM, "%s: out of memory", what);
    for (int32_t i = 0; i < b->nadded; i++)
        k[i] = (added_key){(uint8_t)t->piece[b->added[i]][0], t->len[b->added[i]], b->added[i]};
    qsort(k, (size_t)b->nadded, sizeof *k, cmp_added);
    for (int c = 0; c < 256; c++) b->first[c] = -1;
    for (int32_t i = b->nadded - 1; i >= 0; i--) b->added[i] = k[i].id, b->first[k[i].first] = i;
    free(k);
    return VZ_OK;
}

/* Display text: the bytes each token decodes to. */
static vz_status decode_texts(vz_tokenizer *t, struct tok_bbpe *b, const char *what) {
    int32_t inv[0x200];
    memset(inv, 0xff, sizeof inv);
    for (int c = 0; c < 256; c++) inv[b->byte_char[c]] = c;
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n; i++) total += t->len[i] + 1;
    b->text_arena = malloc(total);
    t->tlen = calloc((size_t)t->n, sizeof *t->tlen);
    VZ_FAIL_IF(!b->text_arena || !t->tlen, VZ_ERR_NOMEM, "%s: out of memory", what);
    char *w = b->text_arena;
    for (int32_t i = 0; i < t->n; i++) {
        const uint8_t *p = (const uint8_t *)t->piece[i];
        uint32_t o = 0;
        if (t->type[i] != VZ_PIECE_NORMAL) {
            memcpy(w, p, t->len[i]), o = t->len[i];
        } else {
            for (uint32_t k = 0; k < t->len[i];) {
                int valid;
                size_t m = tok_utf8_char(p + k, t->len[i] - k, &valid);
                uint32_t cp = m == 1 ? p[k] : m == 2 ? (uint32_t)(p[k] & 0x1f) << 6 | (p[k + 1] & 0x3f) : 0x200;
                VZ_FAIL_IF(!valid || cp >= 0x200 || inv[cp] < 0, VZ_ERR_FORMAT,
                           "%s: model.vocab: token %d '%s' has a character that is not a byte-level byte", what, i,
                           t->piece[i]);
                w[o++] = (char)inv[cp];
                k += (uint32_t)m;
            }
        }
        w[o] = '\0';
        t->text[i] = w, t->tlen[i] = o;
        w += o + 1;
    }
    return VZ_OK;
}

static vz_status bb_build(vz_tokenizer **out, const cJSON *root, struct tok_bbpe *b, const char *what) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    VZ_FAIL_IF(!cJSON_IsObject(model), VZ_ERR_FORMAT, "%s: no 'model' object (not a tokenizer.json?)", what);
    const char *ty = jstr(model, "type");
    VZ_FAIL_IF(ty && strcmp(ty, "BPE") != 0, VZ_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE only)",
               what, ty);
    VZ_FAIL_IF(jtrue(model, "byte_fallback"), VZ_ERR_UNSUPPORTED,
               "%s: model.byte_fallback: a SentencePiece-style BPE; use its tokenizer.model", what);
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    VZ_FAIL_IF(dr && !cJSON_IsNull(dr), VZ_ERR_UNSUPPORTED, "%s: model.dropout is not supported", what);
    const char *csp = jstr(model, "continuing_subword_prefix"), *ews = jstr(model, "end_of_word_suffix");
    VZ_FAIL_IF((csp && csp[0]) || (ews && ews[0]), VZ_ERR_UNSUPPORTED,
               "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported", what);
    b->ignore_merges = jtrue(model, "ignore_merges");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"),
                *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    VZ_FAIL_IF(!cJSON_IsObject(vocab), VZ_ERR_FORMAT, "%s: model.vocab is not an object", what);
    VZ_FAIL_IF(!cJSON_IsArray(merges), VZ_ERR_FORMAT, "%s: model.merges is not a list", what);
    VZ_FAIL_IF(added && !cJSON_IsArray(added) && !cJSON_IsNull(added), VZ_ERR_FORMAT, "%s: added_tokens is not a list",
               what);
    VZ_TRY(read_normalizer(b, root, what));
    VZ_TRY(read_pre(b, root, what));

    bb_load l = {what, 0, NULL, NULL, NULL};
    vz_status st = read_vocab(&l, vocab, added);
    if (st == VZ_OK) st = read_added(&l, b, added, b->nfc);
    for (int32_t i = 0; st == VZ_OK && i < l.n; i++)
        if (!l.piece[i]) st = VZ_FAIL(VZ_ERR_FORMAT, "%s: no token has id %d (of %d)", what, i, l.n);
    if (st == VZ_OK) {
        tok_spec s = {.bos = -1, .eos = -1, .unk = -1, .spm_form = 1, .strict = 1, .what = what, .byte_level = 1};
        st = tok_create(out, l.n, l.piece, l.len, NULL, l.type, &s);
    }
    free(l.piece), free(l.len), free(l.type);
    VZ_TRY(st);
    vz_tokenizer *t = *out;
    t->bb = b;
    VZ_TRY(read_merges(&l, b, t, merges));
    byte_chars(b->byte_char);
    for (int c = 0; c < 256; c++) {
        char s[2];
        size_t n = put_cp(s, b->byte_char[c]);
        b->byte_tok[c] = tok_lookup(t, s, n);
        VZ_FAIL_IF(b->byte_tok[c] < 0 || t->type[b->byte_tok[c]] != VZ_PIECE_NORMAL, VZ_ERR_FORMAT,
                   "%s: model.vocab has no token for byte 0x%02x (not a byte-level vocabulary)", what, c);
    }
    int32_t bos = -1;
    VZ_TRY(read_post(cJSON_GetObjectItemCaseSensitive(root, "post_processor"), t, &bos, what));
    t->bos = bos;
    static const char *const kEos[] = {"<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|im_end|>"};
    for (size_t k = 0; k < sizeof kEos / sizeof *kEos && t->eos < 0; k++)
        t->eos = tok_lookup(t, kEos[k], strlen(kEos[k]));
    VZ_TRY(sort_added(t, b, what));
    return decode_texts(t, b, what);
}

void tok_bbpe_free(struct tok_bbpe *b) {
    if (!b) return;
    for (int32_t i = 0; i < b->nre; i++) pcre2_code_free(b->re[i]);
    free(b->mkey), free(b->mrank), free(b->mnew), free(b->added), free(b->text_arena), free(b->json);
    free(b);
}

vz_status vz_tokenizer_from_json(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what) {
    *out = NULL;
    VZ_FAIL_IF(size > ((size_t)1 << 30), VZ_ERR_FORMAT, "%s: %zu bytes, too large for a tokenizer.json", what, size);
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    VZ_FAIL_IF(!root, VZ_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", what,
               (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - (const char *)data : 0));
    struct tok_bbpe *b = calloc(1, sizeof *b);
    vz_status st = b ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", what);
    if (st == VZ_OK) {
        b->json = malloc(size);
        st = b->json ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", what);
    }
    if (st == VZ_OK) {
        memcpy(b->json, data, size), b->json_len = size;
        st = bb_build(out, root, b, what);
    }
    cJSON_Delete(root);
    if (st != VZ_OK) {
        if (*out && (*out)->bb == b) b = NULL; /* freed with the tokenizer */
        vz_tokenizer_close(*out);
        *out = NULL;
        tok_bbpe_free(b);
    }
    return st;
}

const uint8_t *tok_bbpe_json(const vz_tokenizer *t, size_t *len) {
    if (!t || !t->bb) return NULL;
    *len = t->bb->json_len;
    return (const uint8_t *)t->bb->json;
}

/* ---- encoding --------------------------------------------------------- */

typedef struct ids {
    int32_t *v;
    size_t n, cap;
} ids;

static vz_status push(ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t c = o->cap ? 2 * o->cap : 256;
        int32_t *nv = realloc(o->v, c * sizeof *nv);
        VZ_FAIL_IF(!nv, VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory for %zu ids", c);
        o->v = nv, o->cap = c;
    }
    o->v[o->n++] = id;
    return VZ_OK;
}

typedef struct sym {
    int32_t id, prev, next;
} sym;

typedef struct cand {
    int32_t rank, pos, nid;
} cand;

static int cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c], i = c;
    }
    if (*n) h[i] = last;
    return top;
}

typedef struct work {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    char *s;     /* a piece in byte-level characters */
    size_t scap;
    sym *sy;
    cand *h;
    size_t cap;  /* of sy and h (h holds at most 2 n candidates) */
} work;

static vz_status grow(work *w, size_t n) {
    if (2 * n + 2 > w->scap) {
        size_t c = 4 * n + 64;
        char *s = realloc(w->s, c);
        VZ_FAIL_IF(!s, VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory");
        w->s = s, w->scap = c;
    }
    if (n > w->cap) {
        size_t c = 2 * n + 64;
        sym *sy = realloc(w->sy, c * sizeof *sy);
        if (sy) w->sy = sy;
        cand *h = realloc(w->h, 2 * c * sizeof *h);
        if (h) w->h = h;
        VZ_FAIL_IF(!sy || !h, VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory");
        w->cap = c;
    }
    return VZ_OK;
}

static void try_pair(const struct tok_bbpe *b, const sym *sy, int32_t pos, cand *h, size_t *nh) {
    int32_t nx = sy[pos].next, nid;
    if (nx < 0) return;
    int32_t r = merge_find(b, sy[pos].id, sy[nx].id, &nid);
    if (r >= 0) heap_push(h, nh, (cand){r, pos, nid});
}

/* One pre-tokenized piece p[0..n) (bytes) into ids. */
static vz_status encode_piece(const vz_tokenizer *t, const uint8_t *p, size_t n, work *w, ids *o) {
    const struct tok_bbpe *b = t->bb;
    if (n == 0) return VZ_OK;
    VZ_TRY(grow(w, n));
    if (b->ignore_merges) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += put_cp(w->s + k, b->byte_char[p[i]]);
        int32_t id = tok_lookup(t, w->s, k);
        if (id >= 0 && t->type[id] == VZ_PIECE_NORMAL) return push(o, id);
    }
    sym *sy = w->sy;
    size_t nh = 0;
    for (size_t i = 0; i < n; i++)
        sy[i] = (sym){b->byte_tok[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    for (size_t i = 0; i + 1 < n; i++) try_pair(b, sy, (int32_t)i, w->h, &nh);
    while (nh > 0) {
        cand c = heap_pop(w->h, &nh);
        int32_t nx = sy[c.pos].next, nid;
        if (sy[c.pos].id < 0 || nx < 0 || merge_find(b, sy[c.pos].id, sy[nx].id, &nid) != c.rank || nid != c.nid)
            continue; /* stale: a symbol of it was merged away */
        sy[c.pos].id = c.nid;
        sy[nx].id = -1;
        sy[c.pos].next = sy[nx].next;
        if (sy[nx].next >= 0) sy[sy[nx].next].prev = c.pos;
        if (sy[c.pos].prev >= 0) try_pair(b, sy, sy[c.pos].prev, w->h, &nh);
        try_pair(b, sy, c.pos, w->h, &nh);
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next) VZ_TRY(push(o, sy[i].id));
    return VZ_OK;
}

/* Pre-tokenizes s[0..n) from regex stage k on, encoding the final pieces. */
static vz_status split_from(const vz_tokenizer *t, int32_t k, const uint8_t *s, size_t n, work *w, ids *o) {
    const struct tok_bbpe *b = t->bb;
    if (n == 0) return VZ_OK;
    if (k == b->nre) return encode_piece(t, s, n, w, o);
    size_t at = 0, gap = 0;
    while (at < n) {
        int rc = pcre2_match(b->re[k], (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, w->md, w->mc); /* split_valid */
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return VZ_FAIL(VZ_ERR_ARG, "vz_tokenizer_encode: pre-tokenizer regex %d: %s", k, (const char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        const size_t m0 = ov[0], m1 = ov[1]; /* the stages below reuse the match data */
        if (m1 == m0) { /* an empty match: step one character on */
            if (m0 >= n) break;
            int valid;
            at = m0 + tok_utf8_char(s + m0, n - m0, &valid);
            continue;
        }
        VZ_TRY(split_from(t, k + 1, s + gap, m0 - gap, w, o));
        VZ_TRY(split_from(t, k + 1, s + m0, m1 - m0, w, o));
        gap = at = m1;
    }
    return split_from(t, k + 1, s + gap, n - gap, w, o);
}

/* s[0..n) into the regex stages: its valid UTF-8 runs pre-tokenized (checked
 * here once, so PCRE2 matches with PCRE2_NO_UTF_CHECK); a run of invalid
 * bytes, which no pattern could match, is one piece of byte tokens. (PCRE2's
 * invalid-UTF mode did this itself, but scanned to the end of the valid
 * fragment on every match: 1.9 MB of text took 6 minutes.) */
static vz_status split_valid(const vz_tokenizer *t, const uint8_t *s, size_t n, work *w, ids *o) {
    for (size_t i = 0; i < n;) {
        size_t j = i, k;
        int valid = 1;
        while (j < n) {
            size_t m = tok_utf8_char(s + j, n - j, &valid);
            if (!valid) break;
            j += m;
        }
        VZ_TRY(split_from(t, 0, s + i, j - i, w, o));
        for (k = j; k < n;) {
            size_t m = tok_utf8_char(s + k, n - k, &valid);
            if (valid) break;
            k += m;
        }
        VZ_TRY(encode_piece(t, s + j, k - j, w, o));
        i = k;
    }
    return VZ_OK;
}

/* Normal text (no added token in it): normalized, prefixed, pre-tokenized, encoded. */
static vz_status encode_text(const vz_tokenizer *t, const uint8_t *s, size_t n, work *w, ids *o) {
    const struct tok_bbpe *b = t->bb;
    if (n == 0) return VZ_OK;
    uint8_t *norm = NULL;
    if (b->nfc) {
        int valid = 1;
        for (size_t i = 0; i < n && valid;) i += tok_utf8_char(s + i, n - i, &valid);
        if (valid) { /* invalid UTF-8 is left as is */
            utf8proc_uint8_t *d = NULL;
            utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            VZ_FAIL_IF(r < 0, VZ_ERR_ARG, "vz_tokenizer_encode: NFC: %s", utf8proc_errmsg(r));
            norm = d, s = d, n = (size_t)r;
        }
    }
    vz_status st = VZ_OK;
    if (b->prefix_space && s[0] != ' ') {
        uint8_t *q = malloc(n + 1);
        st = q ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory");
        if (q) {
            q[0] = ' ', memcpy(q + 1, s, n);
            free(norm);
            norm = q, s = q, n++;
        }
    }
    if (st == VZ_OK) st = split_valid(t, s, n, w, o);
    free(norm);
    return st;
}

/* The added token at s[0..n), longest first, or -1. */
static int32_t added_at(const vz_tokenizer *t, const uint8_t *s, size_t n) {
    const struct tok_bbpe *b = t->bb;
    for (int32_t i = b->first[s[0]]; i >= 0 && i < b->nadded; i++) {
        int32_t id = b->added[i];
        if ((uint8_t)t->piece[id][0] != s[0]) break;
        if (t->len[id] <= n && memcmp(t->piece[id], s, t->len[id]) == 0) return id;
    }
    return -1;
}

vz_status tok_bbpe_encode(const vz_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **out,
                          size_t *n_out) {
    const uint8_t *s = (const uint8_t *)text;
    ids o = {NULL, 0, 0};
    work w = {pcre2_match_data_create(4, NULL), pcre2_match_context_create(NULL), NULL, 0, NULL, NULL, 0};
    vz_status st = w.md && w.mc ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory");
    if (w.mc) pcre2_set_match_limit(w.mc, BB_MATCH_LIMIT);
    if (st == VZ_OK && add_bos && t->bos >= 0) st = push(&o, t->bos);
    size_t seg = 0;
    for (size_t i = 0; st == VZ_OK && i < len;) {
        int32_t id = t->bb->first[s[i]] >= 0 ? added_at(t, s + i, len - i) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        st = encode_text(t, s + seg, i - seg, &w, &o);
        if (st == VZ_OK) st = push(&o, id);
        i += t->len[id], seg = i;
    }
    if (st == VZ_OK) st = encode_text(t, s + seg, len - seg, &w, &o);
    pcre2_match_data_free(w.md);
    pcre2_match_context_free(w.mc);
    free(w.s), free(w.sy), free(w.h);
    if (st != VZ_OK) free(o.v), o.v = NULL, o.n = 0;
    *out = o.v, *n_out = o.n;
    return st;
}
