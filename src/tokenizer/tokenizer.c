/*
 * tokenizer.c - building a tokenizer from a vocabulary (pieces, scores,
 * types), the piece -> id hash table, the public open/close/accessors, and
 * the llama2.c tokenizer.bin reader (format: karpathy/llama2.c run.c
 * build_tokenizer; ids 0/1/2 = unk/BOS/EOS). GGUF vocabularies arrive
 * through vz_tokenizer_from_vocab. Encoding is in bpe.c, decoding in detok.c,
 * the SentencePiece .model reader in spm_proto.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"
#include "tokenizer/tok_impl.h"

static const char kSpace[] = "\xe2\x96\x81"; /* U+2581, SentencePiece's space */
static const char kDefaultUnkSurface[] = " \xe2\x81\x87 ";

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_lookup(const vz_tokenizer *t, const char *p, size_t n) {
    uint32_t i = (uint32_t)hash_bytes(p, n) & t->slot_mask;
    for (;;) {
        int32_t id = t->slot[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->piece[id], p, n) == 0) return id;
        i = (i + 1) & t->slot_mask;
    }
}

/* Inserts id; returns the id already holding the same piece, or -1. */
static int32_t hash_insert(vz_tokenizer *t, int32_t id) {
    uint32_t i = (uint32_t)hash_bytes(t->piece[id], t->len[id]) & t->slot_mask;
    for (;;) {
        int32_t o = t->slot[i];
        if (o < 0) {
            t->slot[i] = id;
            return -1;
        }
        if (t->len[o] == t->len[id] && memcmp(t->piece[o], t->piece[id], t->len[id]) == 0) return o;
        i = (i + 1) & t->slot_mask;
    }
}

/* Length of s after converting spaces to U+2581 (to_spm) or back. */
static size_t convert(char *dst, const char *s, size_t n, int to_spm) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (to_spm && s[i] == ' ') {
            if (dst) memcpy(dst + o, kSpace, 3);
            o += 3, i += 1;
        } else if (!to_spm && n - i >= 3 && memcmp(s + i, kSpace, 3) == 0) {
            if (dst) dst[o] = ' ';
            o += 1, i += 3;
        } else {
            if (dst) dst[o] = s[i];
            o++, i++;
        }
    }
    return o;
}

static int is_byte_piece(const char *p, size_t n, int *value) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return 0;
    const char *h = strchr(hex, p[3]), *l = strchr(hex, p[4]);
    if (!h || !l || !p[3] || !p[4]) return 0;
    *value = (int)((h - hex) * 16 + (l - hex));
    return 1;
}

void vz_tokenizer_close(vz_tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->len);
    free(t->text);
    free(t->score);
    free(t->type);
    free(t->arena);
    free(t->slot);
    free(t->tlen);
    tok_bbpe_free(t->bb);
    free(t);
}

/* Copies the pieces into one arena, in SentencePiece and display form. */
static vz_status fill_pieces(vz_tokenizer *t, const char *const *pieces, const uint32_t *lens, const tok_spec *s) {
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n; i++) {
        VZ_FAIL_IF(!pieces[i] && lens[i], VZ_ERR_ARG, "%s: piece %d is NULL", s->what, i);
        const char *p = lens[i] ? pieces[i] : "";
        uint64_t a = s->spm_form ? lens[i] : convert(NULL, p, lens[i], 1);
        uint64_t b = s->spm_form ? convert(NULL, p, lens[i], 0) : lens[i];
        total += a + b + 2;
        VZ_FAIL_IF(total > (1ull << 31), VZ_ERR_NOMEM, "%s: pieces take %llu bytes, too many", s->what,
                   (unsigned long long)total);
    }
    t->arena = malloc(total ? total : 1);
    VZ_FAIL_IF(!t->arena, VZ_ERR_NOMEM, "%s: out of memory for %llu bytes of pieces", s->what,
               (unsigned long long)total);
    char *w = t->arena;
    for (int32_t i = 0; i < t->n; i++) {
        const char *p = lens[i] ? pieces[i] : "";
        size_t a, b;
        if (s->spm_form) {
            memcpy(w, p, lens[i]);
            a = lens[i];
        } else {
            a = convert(w, p, lens[i], 1);
        }
        w[a] = '\0';
        t->piece[i] = w;
        t->len[i] = (uint32_t)a;
        w += a + 1;
        b = s->spm_form ? convert(w, p, lens[i], 0) : (memcpy(w, p, lens[i]), lens[i]);
        w[b] = '\0';
        t->text[i] = w;
        w += b + 1;
    }
    return VZ_OK;
}

static vz_status fill_types(vz_tokenizer *t, const float *scores, const int32_t *types, const tok_spec *s) {
    for (int32_t i = 0; i < t->n; i++) {
        int v;
        t->score[i] = scores ? scores[i] : 0.0f;
        if (types) {
            VZ_FAIL_IF(types[i] < VZ_PIECE_NORMAL || types[i] > VZ_PIECE_BYTE, VZ_ERR_FORMAT,
                       "%s: piece %d: type %d is not a SentencePiece type (1..6)", s->what, i, types[i]);
            t->type[i] = (uint8_t)types[i];
        } else if (i == s->unk) {
            t->type[i] = VZ_PIECE_UNKNOWN;
        } else if (i == s->bos || i == s->eos) {
            t->type[i] = VZ_PIECE_CONTROL;
        } else {
            t->type[i] = is_byte_piece(t->piece[i], t->len[i], &v) ? VZ_PIECE_BYTE : VZ_PIECE_NORMAL;
        }
        if (t->type[i] == VZ_PIECE_UNUSED) t->has_unused = 1;
        if (t->type[i] == VZ_PIECE_USER && t->len[i] > t->max_user_len) t->max_user_len = t->len[i];
    }
    return VZ_OK;
}

static vz_status build_table(vz_tokenizer *t, const tok_spec *s) {
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)t->n) cap <<= 1;
    t->slot = malloc((size_t)cap * sizeof *t->slot);
    VZ_FAIL_IF(!t->slot, VZ_ERR_NOMEM, "%s: out of memory for the piece table", s->what);
    memset(t->slot, 0xff, (size_t)cap * sizeof *t->slot);
    t->slot_mask = cap - 1;
    for (int32_t i = 0; i < t->n; i++) {
        if (t->len[i] == 0) {
            VZ_FAIL_IF(s->strict, VZ_ERR_FORMAT, "%s: pieces[%d]: empty piece", s->what, i);
            continue;
        }
        int32_t o = hash_insert(t, i);
        VZ_FAIL_IF(o >= 0 && s->strict, VZ_ERR_FORMAT, "%s: pieces[%d] '%s' is already pieces[%d]", s->what, i,
                   t->text[i], o);
    }
    return VZ_OK;
}

/* Resolves unk/bos/eos ids and the byte-fallback table. */
static vz_status resolve_ids(vz_tokenizer *t, const tok_spec *s) {
    t->unk = -1;
    if (s->unk >= 0 && s->unk < t->n && t->type[s->unk] == VZ_PIECE_UNKNOWN) t->unk = s->unk;
    for (int32_t i = 0; i < t->n && t->unk < 0; i++)
        if (t->type[i] == VZ_PIECE_UNKNOWN) t->unk = i;
    VZ_FAIL_IF(t->unk < 0 && !s->byte_level, VZ_ERR_FORMAT, "%s: no piece of type UNKNOWN (unk id %d)", s->what, s->unk);
    VZ_FAIL_IF(s->bos >= t->n || s->bos < -1, VZ_ERR_FORMAT, "%s: bos_id %d outside the vocabulary of %d", s->what,
               s->bos, t->n);
    VZ_FAIL_IF(s->eos >= t->n || s->eos < -1, VZ_ERR_FORMAT, "%s: eos_id %d outside the vocabulary of %d", s->what,
               s->eos, t->n);
    t->bos = s->bos;
    t->eos = s->eos;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = tok_lookup(t, name, 6);
        t->byte_id[b] = id >= 0 ? id : t->unk;
    }
    const char *us = s->unk_surface ? s->unk_surface : kDefaultUnkSurface;
    uint32_t ul = s->unk_surface ? s->unk_surface_len : (uint32_t)strlen(kDefaultUnkSurface);
    if (ul >= sizeof t->unk_surface) us = kDefaultUnkSurface, ul = (uint32_t)strlen(kDefaultUnkSurface);
    memcpy(t->unk_surface, us, ul);
    t->unk_surface_len = ul;
    return VZ_OK;
}

static vz_status tok_create_in(vz_tokenizer *t, const char *const *pieces, const uint32_t *lens, const float *scores,
                               const int32_t *types, const tok_spec *s) {
    size_t n = (size_t)t->n;
    t->piece = calloc(n, sizeof *t->piece);
    t->len = calloc(n, sizeof *t->len);
    t->text = calloc(n, sizeof *t->text);
    t->score = calloc(n, sizeof *t->score);
    t->type = calloc(n, sizeof *t->type);
    VZ_FAIL_IF(!t->piece || !t->len || !t->text || !t->score || !t->type, VZ_ERR_NOMEM,
               "%s: out of memory for %d pieces", s->what, t->n);
    VZ_TRY(fill_pieces(t, pieces, lens, s));
    VZ_TRY(fill_types(t, scores, types, s));
    VZ_TRY(build_table(t, s));
    return resolve_ids(t, s);
}

vz_status tok_create(vz_tokenizer **out, int32_t n, const char *const *pieces, const uint32_t *lens,
                     const float *scores, const int32_t *types, const tok_spec *s) {
    *out = NULL;
    VZ_FAIL_IF(n <= 0, VZ_ERR_FORMAT, "%s: vocabulary size %d: no pieces", s->what, n);
    VZ_FAIL_IF(n > VZ_TOK_MAX_VOCAB, VZ_ERR_FORMAT, "%s: vocabulary size %d is absurd (max %d)", s->what, n,
               VZ_TOK_MAX_VOCAB);
    VZ_FAIL_IF(!pieces || !lens, VZ_ERR_ARG, "%s: no piece arrays", s->what);
    vz_tokenizer *t = calloc(1, sizeof *t);
    VZ_FAIL_IF(!t, VZ_ERR_NOMEM, "%s: out of memory", s->what);
    t->n = n;
    t->add_dummy_prefix = s->add_dummy_prefix != 0;
    t->remove_extra_ws = s->remove_extra_ws != 0;
    t->escape_ws = s->escape_ws != 0;
    t->byte_fallback = s->byte_fallback != 0;
    vz_status st = tok_create_in(t, pieces, lens, scores, types, s);
    if (st != VZ_OK) {
        vz_tokenizer_close(t);
        return st;
    }
    *out = t;
    return VZ_OK;
}

vz_status vz_tokenizer_from_vocab(vz_tokenizer **out, int32_t n, const char *const *pieces, const uint32_t *lens,
                                  const float *scores, const int32_t *types, int32_t spm_form, int32_t bos,
                                  int32_t eos, int32_t unk, int32_t add_dummy_prefix, const char *what) {
    tok_spec s = {bos, eos, unk, add_dummy_prefix, 0, 1, 0, spm_form, 0, NULL, 0, what ? what : "vocab", 0};
    VZ_TRY(tok_create(out, n, pieces, lens, scores, types, &s));
    for (int32_t i = 0; i < n; i++)
        if ((*out)->type[i] == VZ_PIECE_BYTE) (*out)->byte_fallback = 1;
    return VZ_OK;
}

/* Counts the entries of a tokenizer.bin body (each checked against the file). */
static vz_status llama2c_count(vz_rd *r, int32_t max_len, int32_t *n) {
    int32_t longest = 0;
    *n = 0;
    while (r->pos < r->size) {
        float score;
        int32_t len;
        VZ_TRY(vz_rd_f32(r, &score, "score"));
        VZ_TRY(vz_rd_i32(r, &len, "length"));
        VZ_FAIL_IF(len < 0 || len > max_len, VZ_ERR_FORMAT,
                   "%s: token %d: length %d outside [0, max_token_length %d] (offset %llu)", r->what, *n, len,
                   max_len, (unsigned long long)r->pos - 4);
        VZ_TRY(vz_rd_skip(r, (uint64_t)len, "token bytes"));
        VZ_FAIL_IF(++*n > VZ_TOK_MAX_VOCAB, VZ_ERR_FORMAT, "%s: more than %d tokens", r->what, VZ_TOK_MAX_VOCAB);
        if (len > longest) longest = len;
    }
    /* llama2.c's exporter writes the exact maximum; less means a cut file. */
    VZ_FAIL_IF(*n > 0 && longest != max_len, VZ_ERR_FORMAT,
               "%s: max_token_length %d but the longest of the %d tokens has %d bytes (truncated file?)", r->what,
               max_len, *n, longest);
    return VZ_OK;
}

static vz_status llama2c_read(vz_rd *r, int32_t n, const char **pieces, uint32_t *lens, float *scores) {
    for (int32_t i = 0; i < n; i++) {
        int32_t len;
        const uint8_t *p;
        VZ_TRY(vz_rd_f32(r, &scores[i], "score"));
        VZ_TRY(vz_rd_i32(r, &len, "length"));
        VZ_TRY(vz_rd_bytes(r, &p, (uint64_t)len, "token bytes"));
        pieces[i] = (const char *)p;
        lens[i] = (uint32_t)len;
    }
    return VZ_OK;
}

vz_status vz_tokenizer_from_llama2c(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what) {
    *out = NULL;
    vz_rd r = vz_rd_init(data, size, what);
    int32_t max_len, n;
    VZ_TRY(vz_rd_i32(&r, &max_len, "max_token_length"));
    VZ_FAIL_IF(max_len <= 0 || max_len > 65535, VZ_ERR_FORMAT, "%s: max_token_length %d outside [1, 65535]", what,
               max_len);
    VZ_TRY(llama2c_count(&r, max_len, &n));
    VZ_FAIL_IF(n == 0, VZ_ERR_FORMAT, "%s: vocabulary size 0: no tokens after max_token_length", what);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    uint32_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = malloc((size_t)n * sizeof *scores);
    vz_status st = VZ_OK;
    if (!pieces || !lens || !scores) {
        st = VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory for %d tokens", what, n);
    } else {
        r.pos = 4;
        st = llama2c_read(&r, n, pieces, lens, scores);
        tok_spec s = {n > 1 ? 1 : -1, n > 2 ? 2 : -1, 0, 1, 0, 1, 0, 0, 0, NULL, 0, what, 0};
        if (st == VZ_OK) st = tok_create(out, n, pieces, lens, scores, NULL, &s);
        if (st == VZ_OK)
            for (int32_t i = 0; i < n; i++)
                if ((*out)->type[i] == VZ_PIECE_BYTE) (*out)->byte_fallback = 1;
    }
    free(pieces);
    free(lens);
    free(scores);
    return st;
}

static size_t skip_ws(const uint8_t *d, size_t i, size_t n) {
    while (i < n && (d[i] == ' ' || d[i] == '\n' || d[i] == '\r' || d[i] == '\t')) i++;
    return i;
}

int vz_tokenizer_is_json(const uint8_t *data, size_t size) {
    size_t i = skip_ws(data, 0, size);
    if (i >= size || data[i] != '{') return 0;
    i = skip_ws(data, i + 1, size);
    return i < size && (data[i] == '"' || data[i] == '}');
}

vz_status vz_tokenizer_open(vz_tokenizer **out, const char *path) {
    VZ_FAIL_IF(!out || !path, VZ_ERR_ARG, "vz_tokenizer_open: NULL argument");
    *out = NULL;
    vz_map m;
    VZ_TRY(vz_map_open(&m, path));
    vz_status st;
    if (m.size < 4) {
        st = VZ_FAIL(VZ_ERR_MAGIC, "%s: %llu bytes: too small for a tokenizer.model or tokenizer.bin", path,
                     (unsigned long long)m.size);
    } else {
        /* A tokenizer.bin starts with a small int32. A valid ModelProto never
         * does: bytes 2-3 being zero would put a field number 0 in its first
         * message. Nor does either start with '{' then white space or '"'. */
        uint32_t v = vz_le32(m.data);
        if (vz_tokenizer_is_json(m.data, m.size)) st = vz_tokenizer_from_json(out, m.data, m.size, path);
        else if (v < 65536) st = vz_tokenizer_from_llama2c(out, m.data, m.size, path);
        else st = vz_tokenizer_from_spm_model(out, m.data, m.size, path);
    }
    vz_map_close(&m);
    return st;
}

int32_t vz_tokenizer_vocab_size(const vz_tokenizer *t) { return t ? t->n : 0; }
int32_t vz_tokenizer_piece_id(const vz_tokenizer *t, const char *piece) {
    return t && piece ? tok_lookup(t, piece, strlen(piece)) : -1;
}
int32_t vz_tokenizer_bos(const vz_tokenizer *t) { return t ? t->bos : -1; }
int32_t vz_tokenizer_eos(const vz_tokenizer *t) { return t ? t->eos : -1; }

const uint8_t *vz_tokenizer_json(const vz_tokenizer *t, size_t *len) { return tok_bbpe_json(t, len); }

const char *vz_tokenizer_piece(const vz_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n) return NULL;
    return t->text[id];
}
