/*
 * spm_write.c - see spm_write.h. Protobuf encoding per the protobuf wire
 * format (varints, length-delimited submessages, fixed32 floats); field
 * numbers from sentencepiece_model.proto. Checked with spm_encode.
 */
#include "tokenizer/spm_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"

typedef struct pbuf {
    uint8_t *p;
    uint64_t len, cap;
    int failed;
} pbuf;

static void pb_put(pbuf *b, const void *src, uint64_t n) {
    if (b->failed) return;
    if (b->cap - b->len < n) {
        uint64_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void pb_varint(pbuf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_put(b, tmp, (uint64_t)n);
}

static void pb_key(pbuf *b, uint32_t field, uint32_t wire) { pb_varint(b, (uint64_t)field << 3 | wire); }

/* int32 fields are sign-extended to 64 bits on the wire, as protobuf does. */
static void pb_int(pbuf *b, uint32_t field, int64_t v) {
    pb_key(b, field, 0);
    pb_varint(b, (uint64_t)v);
}

static void pb_bytes(pbuf *b, uint32_t field, const void *p, uint64_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    pb_put(b, p, n);
}

static void pb_float(pbuf *b, uint32_t field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pb_key(b, field, 5);
    pb_put(b, le, 4);
}

enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_BYTE = 6 };

static void put_piece(pbuf *b, const char *piece, float score, int type) {
    uint8_t tmp[96];
    pbuf sub = {tmp, 0, sizeof tmp, 0};
    size_t n = strlen(piece);
    if (n > 64) n = 64; /* generated pieces are short; never truncates in practice */
    pb_bytes(&sub, 1, piece, n);
    pb_float(&sub, 2, score);
    if (type != T_NORMAL) pb_int(&sub, 3, type);
    pb_bytes(b, 1, sub.p, sub.len);
}

/* ---- the NORMAL pieces: an ordered list with a hash index for dedup ---- */

typedef struct plist {
    char (*s)[24];   /* pieces in rank order */
    uint32_t *index; /* open addressing: 1 + position in s, 0 = empty */
    uint32_t n, limit, cap;
} plist;

static uint32_t str_hash(const char *s) {
    uint32_t h = 2166136261u;
    while (*s) h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}

/* Appends s (< 24 bytes) unless present or the list is full. */
static void pl_add(plist *pl, const char *s) {
    if (pl->n >= pl->limit || strlen(s) >= sizeof pl->s[0]) return;
    uint32_t i = str_hash(s) & (pl->cap - 1);
    for (; pl->index[i]; i = (i + 1) & (pl->cap - 1))
        if (strcmp(pl->s[pl->index[i] - 1], s) == 0) return;
    strcpy(pl->s[pl->n], s);
    pl->index[i] = ++pl->n;
}

#define SP "\xe2\x96\x81" /* U+2581, SentencePiece's whitespace mark */

static const char *const letters = "etaoinsrhldcumfpgwybvkxjqz";
static const char *const punct[] = {".", ",", "'", "\"", "!", "?", "-", ":", ";", "(", ")", SP "\"", SP "("};
static const char *const bigrams[] = {"th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es",
                                      "or", "te", "of", "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng",
                                      "se", "ha", "as", "ou", "io", "le", "ve", "co", "me", "de", "hi", "ri",
                                      "ro", "ic", "ne", "ea", "ra", "ce", "ll", "ly", "om", "ow", "ay", "id"};
static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "is", "was", "he", "for", "it", "with", "as", "his", "on", "be",
    "at", "by", "i", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you",
    "were", "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will",
    "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can",
    "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any",
    "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did",
    "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down",
    "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very",
    "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life",
    "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great",
    "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three", "once",
    "upon", "lily", "girl", "boy", "play", "happy", "friend", "mom", "big", "saw", "wanted", "went",
    "house", "tree", "ball", "dog", "cat", "sun", "water", "look", "help", "thought", "king", "lord", "love"};

/* Letter strings of length len in frequency order, with and without "▁". */
static void add_generated(plist *pl, int len) {
    uint64_t total = 1;
    for (int i = 0; i < len; i++) total *= 26;
    for (uint64_t k = 0; k < total && pl->n < pl->limit; k++) {
        char buf[24] = SP;
        uint64_t v = k;
        for (int i = len - 1; i >= 0; i--, v /= 26) buf[3 + i] = letters[v % 26];
        buf[3 + len] = '\0';
        pl_add(pl, buf);
        pl_add(pl, buf + 3);
    }
}

/* Fills pl in rank order: the most useful pieces first, so a small vocab
 * still covers lowercase English without byte fallback. Every multi-letter
 * piece can be reached by merging two shorter pieces already present. */
static void fill_normal(plist *pl) {
    char one[2] = {0, 0}, buf[24];
    pl_add(pl, SP);
    for (int i = 0; letters[i]; i++) one[0] = letters[i], pl_add(pl, one);
    for (size_t i = 0; i < sizeof punct / sizeof punct[0]; i++) pl_add(pl, punct[i]);
    for (int i = 0; i < 26; i++) one[0] = (char)('A' + i), pl_add(pl, one);
    for (int i = 0; i < 10; i++) one[0] = (char)('0' + i), pl_add(pl, one);
    for (size_t i = 0; i < sizeof bigrams / sizeof bigrams[0]; i++) pl_add(pl, bigrams[i]);
    for (int i = 0; i < 26; i++) {
        snprintf(buf, sizeof buf, SP "%c", 'A' + i);
        pl_add(pl, buf);
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        for (size_t k = 1; k <= strlen(words[w]); k++) {
            snprintf(buf, sizeof buf, SP "%.*s", (int)k, words[w]);
            pl_add(pl, buf);
        }
    for (int len = 2; len <= 4 && pl->n < pl->limit; len++) add_generated(pl, len);
}

static void put_header_pieces(pbuf *b) {
    char name[8];
    put_piece(b, "<unk>", 0.0f, T_UNKNOWN);
    put_piece(b, "<s>", 0.0f, T_CONTROL);
    put_piece(b, "</s>", 0.0f, T_CONTROL);
    for (int i = 0; i < 256; i++) {
        snprintf(name, sizeof name, "<0x%02X>", i);
        put_piece(b, name, 0.0f, T_BYTE);
    }
}

static void put_specs(pbuf *b, int32_t vocab_size) {
    uint8_t tmp[256];
    pbuf t = {tmp, 0, sizeof tmp, 0};
    pb_bytes(&t, 2, "vramzip-synthetic", 17); /* model_prefix */
    pb_int(&t, 3, 2);                         /* model_type = BPE */
    pb_int(&t, 4, vocab_size);
    pb_int(&t, 35, 1);                        /* byte_fallback */
    pb_int(&t, 40, 0);                        /* unk_id */
    pb_int(&t, 41, 1);                        /* bos_id */
    pb_int(&t, 42, 2);                        /* eos_id */
    pb_int(&t, 43, -1);                       /* pad_id: none */
    pb_bytes(b, 2, t.p, t.len);
    pbuf n = {tmp, 0, sizeof tmp, 0};
    pb_bytes(&n, 1, "identity", 8);
    pb_bytes(&n, 2, "", 0);                   /* no precompiled charsmap */
    pb_int(&n, 3, 1);                         /* add_dummy_prefix */
    pb_int(&n, 4, 0);                         /* remove_extra_whitespaces: off, as Llama */
    pb_bytes(b, 3, n.p, n.len);
}

vz_status vz_spm_build_default(int32_t vocab_size, uint8_t **out, uint64_t *size) {
    *out = NULL;
    VZ_FAIL_IF(vocab_size < VZ_SPM_MIN_VOCAB || vocab_size > VZ_SPM_MAX_VOCAB, VZ_ERR_ARG,
               "built-in tokenizer: vocab_size %d outside [%d, %d]", (int)vocab_size, VZ_SPM_MIN_VOCAB,
               VZ_SPM_MAX_VOCAB);
    plist pl = {0};
    pl.limit = (uint32_t)vocab_size - 259;
    pl.cap = 1;
    while (pl.cap < 2 * pl.limit) pl.cap *= 2;
    pl.s = malloc((size_t)pl.limit * sizeof pl.s[0]);
    pl.index = calloc(pl.cap, sizeof pl.index[0]);
    pbuf b = {0};
    if (pl.s && pl.index) {
        fill_normal(&pl);
        put_header_pieces(&b);
        for (uint32_t i = 0; i < pl.n; i++) put_piece(&b, pl.s[i], -(float)i, T_NORMAL);
        put_specs(&b, vocab_size);
    }
    int ok = pl.s && pl.index && !b.failed && pl.n == pl.limit;
    free(pl.s);
    free(pl.index);
    if (!ok) {
        free(b.p);
        return VZ_FAIL(VZ_ERR_NOMEM, "built-in tokenizer: cannot build %d pieces", (int)vocab_size);
    }
    *out = b.p;
    *size = b.len;
    return VZ_OK;
}

static vz_status rd_varint(vz_rd *r, uint64_t *v, const char *field) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t c;
        VZ_TRY(vz_rd_u8(r, &c, field));
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return VZ_OK;
    }
    return VZ_FAIL(VZ_ERR_FORMAT, "%s: %s: varint longer than 10 bytes at byte %llu", r->what, field,
                   (unsigned long long)r->pos);
}

vz_status vz_spm_count_pieces(const uint8_t *p, uint64_t size, const char *what, int32_t *n_pieces) {
    vz_rd r = vz_rd_init(p, size, what);
    int64_t n = 0;
    while (r.pos < r.size) {
        uint64_t key, v;
        VZ_TRY(rd_varint(&r, &key, "field key"));
        uint32_t wire = (uint32_t)(key & 7);
        VZ_FAIL_IF(key >> 3 == 0, VZ_ERR_FORMAT, "%s: field number 0 at byte %llu", what,
                   (unsigned long long)r.pos);
        if (wire == 0) VZ_TRY(rd_varint(&r, &v, "varint field"));
        else if (wire == 1) VZ_TRY(vz_rd_skip(&r, 8, "fixed64 field"));
        else if (wire == 5) VZ_TRY(vz_rd_skip(&r, 4, "fixed32 field"));
        else if (wire == 2) {
            VZ_TRY(rd_varint(&r, &v, "length"));
            VZ_TRY(vz_rd_skip(&r, v, key >> 3 == 1 ? "piece" : "submessage"));
            if (key >> 3 == 1) n++;
        } else
            return VZ_FAIL(VZ_ERR_FORMAT, "%s: unsupported wire type %u at byte %llu", what, wire,
                           (unsigned long long)r.pos);
        VZ_FAIL_IF(n > VZ_SPM_MAX_VOCAB, VZ_ERR_FORMAT, "%s: more than %d pieces", what, VZ_SPM_MAX_VOCAB);
    }
    VZ_FAIL_IF(n == 0, VZ_ERR_FORMAT, "%s: no pieces: not a SentencePiece model", what);
    *n_pieces = (int32_t)n;
    return VZ_OK;
}
