/*
 * detok.c - streaming detokenizer: piece text with U+2581 turned into
 * spaces, the dummy-prefix space dropped from the first piece of a text (as
 * SentencePiece's decoder and llama2.c's decode after BOS do), control pieces
 * silent, byte pieces reassembled into UTF-8. Every byte goes through a UTF-8
 * validator, so the output is always valid UTF-8: an incomplete sequence
 * waits in vz_detok.pending; an invalid one becomes U+FFFD. A byte-level
 * BPE token (tokenizer.json) gives its bytes; its special tokens are silent.
 */
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct out {
    char *buf;
    int32_t cap, n, overflow;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->overflow || (size_t)(o->cap - 1 - o->n) < n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->buf + o->n, s, n);
    o->n += (int32_t)n;
}

/* Bytes a sequence with lead byte c takes (0: c cannot start one). */
static int seq_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

/* Whether b may follow the pending bytes (RFC 3629 ranges: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
static int continues(const vz_detok *d, uint8_t b) {
    if ((b & 0xc0) != 0x80) return 0;
    if (d->n_pending != 1) return 1;
    switch (d->pending[0]) {
    case 0xe0: return b >= 0xa0;
    case 0xed: return b <= 0x9f;
    case 0xf0: return b >= 0x90;
    case 0xf4: return b <= 0x8f;
    default: return 1;
    }
}

static void feed(vz_detok *d, out *o, uint8_t b) {
    if (d->n_pending > 0) {
        if (continues(d, b)) {
            d->pending[d->n_pending++] = b;
            if (d->n_pending == seq_len(d->pending[0])) {
                put(o, (const char *)d->pending, (size_t)d->n_pending);
                d->n_pending = 0;
            }
            return;
        }
        put(o, "\xef\xbf\xbd", 3); /* the pending sequence was cut short */
        d->n_pending = 0;
    }
    int l = seq_len(b);
    if (l == 1) put(o, (const char *)&b, 1);
    else if (l == 0) put(o, "\xef\xbf\xbd", 3);
    else d->pending[d->n_pending++] = b;
}

void vz_detok_init(vz_detok *d, const vz_tokenizer *t) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->prev = -1;
}

static int32_t finish(vz_detok *d, const vz_detok *saved, out *o) {
    if (o->overflow) {
        *d = *saved;
        return VZ_FAIL(VZ_ERR_ARG, "vz_detok: output needs more than %d bytes", o->cap);
    }
    o->buf[o->n] = '\0';
    return o->n;
}

int32_t vz_detok_next(vz_detok *d, int32_t id, char *buf, int32_t cap) {
    if (!d || !d->tok || !buf || cap <= 0) return VZ_FAIL(VZ_ERR_ARG, "vz_detok_next: bad argument");
    const vz_tokenizer *t = d->tok;
    if (id < 0 || id >= t->n) return VZ_FAIL(VZ_ERR_ARG, "vz_detok_next: id %d outside [0, %d)", id, t->n);
    if (d->n_pending < 0 || d->n_pending > 3) d->n_pending = 0;
    vz_detok saved = *d;
    out o = {buf, cap, 0, 0};
    int at_start = d->prev < 0 || d->prev >= t->n || t->type[d->prev] == VZ_PIECE_CONTROL;
    const char *s = t->text[id];
    size_t n = t->tlen ? t->tlen[id] : strlen(s);
    if (t->tlen) /* byte-level BPE: the token's bytes; special tokens silent */
        n = t->type[id] == VZ_PIECE_CONTROL ? 0 : n;
    else switch (t->type[id]) {
    case VZ_PIECE_CONTROL: n = 0; break;
    case VZ_PIECE_BYTE: {
        int32_t b = 0;
        while (b < 256 && t->byte_id[b] != id) b++;
        if (b < 256) feed(d, &o, (uint8_t)b);
        n = 0;
        break;
    }
    case VZ_PIECE_UNKNOWN: s = t->unk_surface, n = t->unk_surface_len; break;
    default:
        if (at_start && (t->add_dummy_prefix || t->remove_extra_ws) && n > 0 && s[0] == ' ') s++, n--;
        break;
    }
    for (size_t i = 0; i < n; i++) feed(d, &o, (uint8_t)s[i]);
    d->prev = id;
    return finish(d, &saved, &o);
}

int32_t vz_detok_flush(vz_detok *d, char *buf, int32_t cap) {
    if (!d || !buf || cap <= 0) return VZ_FAIL(VZ_ERR_ARG, "vz_detok_flush: bad argument");
    vz_detok saved = *d;
    out o = {buf, cap, 0, 0};
    if (d->n_pending != 0) put(&o, "\xef\xbf\xbd", 3);
    d->n_pending = 0;
    return finish(d, &saved, &o);
}
