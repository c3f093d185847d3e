/*
 * bpe.c - SentencePiece BPE encoding (google/sentencepiece normalizer.cc with
 * identity normalization, bpe_model.cc Model::SampleEncode without sampling,
 * and sentencepiece_processor.cc byte fallback): spaces become U+2581, a
 * dummy prefix is prepended, invalid UTF-8 bytes become U+FFFD; then adjacent
 * symbols are merged by highest piece score (leftmost on ties) with a binary
 * heap, and pieces not in the vocabulary fall back to <0xXX> byte pieces.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

static const char kSpace[] = "\xe2\x96\x81";
static const char kReplacement[] = "\xef\xbf\xbd";

/* SentencePiece's DecodeUTF8 + IsValidDecodeUTF8. */
size_t tok_utf8_char(const uint8_t *s, size_t n, int *valid) {
    uint32_t c = s[0], cp;
    *valid = 1;
    if (c < 0x80) return 1;
    if (n >= 2 && (c & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) {
        cp = (c & 0x1f) << 6 | (s[1] & 0x3f);
        if (cp >= 0x80) return 2;
    } else if (n >= 3 && (c & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
        cp = (c & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        if (cp >= 0x800 && (cp < 0xd800 || cp >= 0xe000)) return 3;
    } else if (n >= 4 && (c & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
               (s[3] & 0xc0) == 0x80) {
        cp = (c & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
        if (cp >= 0x10000 && cp <= 0x10ffff) return 4;
    }
    *valid = 0;
    return 1;
}

/* Normalizer::Normalize for an identity normalizer; out needs 3 * len + 3
 * bytes. Returns the normalized length. */
static size_t normalize(const vz_tokenizer *t, const uint8_t *in, size_t len, char *out) {
    size_t i = 0, o = 0;
    if (t->remove_extra_ws)
        while (i < len && in[i] == ' ') i++;
    if (i == len) return 0;
    if (t->add_dummy_prefix) memcpy(out, kSpace, 3), o = 3;
    int prev_space = t->remove_extra_ws;
    while (i < len) {
        int valid;
        size_t mb = tok_utf8_char(in + i, len - i, &valid);
        const char *sp = valid ? (const char *)in + i : kReplacement;
        size_t sn = valid ? mb : 3;
        if (prev_space && sn == 1 && sp[0] == ' ') sn = 0;
        if (sn) {
            for (size_t k = 0; k < sn; k++) {
                if (t->escape_ws && sp[k] == ' ') memcpy(out + o, kSpace, 3), o += 3;
                else out[o++] = sp[k];
            }
            prev_space = sp[sn - 1] == ' ';
        }
        i += mb;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws) {
        if (t->escape_ws)
            while (o >= 3 && memcmp(out + o - 3, kSpace, 3) == 0) o -= 3;
        else
            while (o > 0 && out[o - 1] == ' ') o--;
    }
    return o;
}

typedef struct sym {
    int32_t start, len, prev, next;
    int32_t freeze;
} sym;

typedef struct pair {
    float score;
    int32_t left, right, size;
} pair;

typedef struct heap {
    pair *a;
    size_t n, cap;
} heap;

/* SymbolPairComparator: higher score first, then the leftmost. */
static int before(const pair *x, const pair *y) {
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static int heap_push(heap *h, pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 256;
        pair *a = realloc(h->a, cap * sizeof *a);
        if (!a) return -1;
        h->a = a, h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&p, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = p;
    return 0;
}

static pair heap_pop(heap *h) {
    pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->a[c + 1], &h->a[c])) c++;
        if (!before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct bpe_ctx {
    const vz_tokenizer *t;
    const char *s;     /* normalized text */
    sym *sy;
    heap h;
    int32_t *rev;      /* (vocab) left length of the last merge that made an UNUSED piece; NULL if none */
    int prev_unk;      /* the last piece emitted was unknown */
} bpe_ctx;

static int mergeable(const vz_tokenizer *t, int32_t id) {
    if (id < 0) return 0;
    return t->type[id] == VZ_PIECE_NORMAL || t->type[id] == VZ_PIECE_USER || t->type[id] == VZ_PIECE_UNUSED;
}

/* MaybeAddNewSymbolPair. */
static int add_pair(bpe_ctx *c, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || c->sy[l].freeze || c->sy[r].freeze) return 0;
    int32_t size = c->sy[l].len + c->sy[r].len;
    int32_t id = tok_lookup(c->t, c->s + c->sy[l].start, (size_t)size);
    if (!mergeable(c->t, id)) return 0;
    pair p = {c->t->score[id], l, r, size};
    if (c->rev && c->t->type[id] == VZ_PIECE_UNUSED) c->rev[id] = c->sy[l].len;
    return heap_push(&c->h, p);
}

/* Length of the USER_DEFINED piece starting at s (longest), or 0. */
static int32_t user_match(const vz_tokenizer *t, const char *s, size_t n) {
    size_t l = t->max_user_len < n ? t->max_user_len : n;
    for (; l > 0; l--) {
        int32_t id = tok_lookup(t, s, l);
        if (id >= 0 && t->type[id] == VZ_PIECE_USER) return (int32_t)l;
    }
    return 0;
}

/* Splits into characters (user-defined pieces kept whole and frozen). */
static int32_t split(bpe_ctx *c, int32_t n) {
    int32_t k = 0;
    for (int32_t i = 0; i < n; k++) {
        int32_t ml = c->t->max_user_len ? user_match(c->t, c->s + i, (size_t)(n - i)) : 0;
        int32_t freeze = ml > 0;
        if (!ml) {
            ml = "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[(uint8_t)c->s[i] >> 4];
            if (ml > n - i) ml = n - i;
        }
        sym y = {i, ml, k - 1, -1, freeze};
        c->sy[k] = y;
        if (k > 0) c->sy[k - 1].next = k;
        i += ml;
    }
    return k;
}

static int merge_all(bpe_ctx *c, int32_t nsym) {
    for (int32_t k = 0; k + 1 < nsym; k++)
        if (add_pair(c, k, k + 1)) return -1;
    while (c->h.n > 0) {
        pair p = heap_pop(&c->h);
        sym *l = &c->sy[p.left], *r = &c->sy[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) c->sy[r->next].prev = p.left;
        r->len = 0;
        if (add_pair(c, l->prev, p.left) || add_pair(c, p.left, l->next)) return -1;
    }
    return 0;
}

/* Emits the ids of one final piece: its id, or its bytes when unknown;
 * without byte fallback, consecutive unknown pieces merge into one (as
 * SentencePieceProcessor::PopulateSentencePieceText does). */
static void emit_final(const vz_tokenizer *t, const char *s, int32_t len, int32_t *ids, int32_t *count,
                       int *prev_unk) {
    int32_t id = tok_lookup(t, s, (size_t)len);
    if (id < 0) id = t->unk;
    int unk = t->type[id] == VZ_PIECE_UNKNOWN;
    if (unk && t->byte_fallback) {
        for (int32_t i = 0; i < len; i++) ids[(*count)++] = t->byte_id[(uint8_t)s[i]];
    } else if (!(unk && *prev_unk)) {
        ids[(*count)++] = id;
    }
    *prev_unk = unk;
}

/* Resegments a piece made of UNUSED merges back into its parts (iteratively). */
static void emit_piece(bpe_ctx *c, int32_t start, int32_t len, int32_t *stack, int32_t *ids, int32_t *count) {
    if (!c->rev) {
        emit_final(c->t, c->s + start, len, ids, count, &c->prev_unk);
        return;
    }
    int32_t top = 0;
    stack[top++] = start, stack[top++] = len;
    while (top > 0) {
        int32_t ln = stack[--top], st = stack[--top];
        int32_t id = tok_lookup(c->t, c->s + st, (size_t)ln);
        int32_t ll = id >= 0 && c->t->type[id] == VZ_PIECE_UNUSED ? c->rev[id] : 0;
        if (ll <= 0 || ll >= ln) {
            emit_final(c->t, c->s + st, ln, ids, count, &c->prev_unk);
            continue;
        }
        stack[top++] = st + ll, stack[top++] = ln - ll; /* right, popped second */
        stack[top++] = st, stack[top++] = ll;
    }
}

/* Encodes normalized text s[0..n) into ids (room for n ids). */
static vz_status bpe(const vz_tokenizer *t, const char *s, int32_t n, int32_t *ids, int32_t *count) {
    if (n == 0) return VZ_OK;
    bpe_ctx c = {t, s, malloc((size_t)n * sizeof(sym)), {NULL, 0, 0}, NULL, 0};
    int32_t *stack = NULL;
    vz_status st = VZ_OK;
    if (t->has_unused) {
        c.rev = calloc((size_t)t->n, sizeof *c.rev);
        stack = malloc(((size_t)n + 1) * 4 * sizeof *stack);
    }
    if (!c.sy || (t->has_unused && (!c.rev || !stack))) {
        st = VZ_FAIL(VZ_ERR_NOMEM, "encode: out of memory for %d symbols", n);
    } else {
        int32_t nsym = split(&c, n);
        if (merge_all(&c, nsym)) {
            st = VZ_FAIL(VZ_ERR_NOMEM, "encode: out of memory for the merge queue");
        } else {
            for (int32_t k = nsym > 0 ? 0 : -1; k >= 0; k = c.sy[k].next)
                emit_piece(&c, c.sy[k].start, c.sy[k].len, stack, ids, count);
        }
    }
    free(c.sy);
    free(c.h.a);
    free(c.rev);
    free(stack);
    return st;
}

vz_status vz_tokenizer_encode(const vz_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                              int32_t cap, int32_t *n_out) {
    VZ_FAIL_IF(!t || !n_out || (!text && len) || cap < 0 || (!ids && cap > 0), VZ_ERR_ARG,
               "vz_tokenizer_encode: bad argument");
    *n_out = 0;
    VZ_FAIL_IF(len > (1u << 29), VZ_ERR_ARG, "vz_tokenizer_encode: text of %zu bytes is too long (max %u)", len,
               1u << 29);
    if (t->bb) { /* byte-level BPE: BOS only where its template puts one */
        int32_t *v;
        size_t n;
        VZ_TRY(tok_bbpe_encode(t, text, len, add_bos, &v, &n));
        vz_status st = n > INT32_MAX ? VZ_FAIL(VZ_ERR_ARG, "vz_tokenizer_encode: %zu ids", n) : VZ_OK;
        if (st == VZ_OK) {
            *n_out = (int32_t)n;
            if ((int32_t)n > cap) st = VZ_FAIL(VZ_ERR_ARG, "vz_tokenizer_encode: %d ids do not fit in %d", (int32_t)n, cap);
            else if (n > 0) memcpy(ids, v, n * sizeof *ids);
        }
        free(v);
        return st;
    }
    VZ_FAIL_IF(add_bos && t->bos < 0, VZ_ERR_ARG, "vz_tokenizer_encode: the tokenizer has no BOS token");
    char *norm = malloc(3 * len + 4);
    int32_t *tmp = malloc((3 * len + 5) * sizeof *tmp);
    vz_status st = VZ_OK;
    int32_t count = 0;
    if (!norm || !tmp) {
        st = VZ_FAIL(VZ_ERR_NOMEM, "vz_tokenizer_encode: out of memory for %zu bytes of text", len);
    } else {
        int32_t nn = (int32_t)normalize(t, (const uint8_t *)text, len, norm);
        if (add_bos) tmp[count++] = t->bos;
        st = bpe(t, norm, nn, tmp, &count);
    }
    if (st == VZ_OK) {
        *n_out = count;
        if (count > cap) st = VZ_FAIL(VZ_ERR_ARG, "vz_tokenizer_encode: %d ids do not fit in %d", count, cap);
        else if (count > 0) memcpy(ids, tmp, (size_t)count * sizeof *ids);
    }
    free(norm);
    free(tmp);
    return st;
}
