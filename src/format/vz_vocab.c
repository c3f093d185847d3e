/*
 * vz_vocab.c - moves a tokenizer's vocabulary and normalization flags in and
 * out of the .vz TOKN section (docs/format.md section 4). It reads the
 * private tokenizer layout (tokenizer/tok_impl.h) because the section must
 * round-trip every field the encoder uses, not only what the public API shows.
 */
#include <stdlib.h>
#include <string.h>

#include "format/vz_write.h"
#include "tokenizer/tok_impl.h"

vz_status vz_vocab_from_tokenizer(vz_vocab *v, const vz_tokenizer *t) {
    memset(v, 0, sizeof *v);
    VZ_FAIL_IF(!t || t->n < 1, VZ_ERR_ARG, "tokenizer has no pieces");
    VZ_FAIL_IF(t->bb, VZ_ERR_ARG, "a byte-level BPE tokenizer is stored as its tokenizer.json (TJSN), not TOKN");
    v->owned_types = malloc((size_t)t->n * sizeof *v->owned_types);
    VZ_FAIL_IF(!v->owned_types, VZ_ERR_NOMEM, "out of memory for %d pieces", t->n);
    for (int32_t i = 0; i < t->n; i++) v->owned_types[i] = t->type[i];
    v->n = t->n;
    v->pieces = t->piece;
    v->lens = t->len;
    v->scores = t->score;
    v->types = v->owned_types;
    v->bos = t->bos;
    v->eos = t->eos;
    v->unk = t->unk;
    v->flags = VZ_TOK_SPM_FORM | (t->add_dummy_prefix ? VZ_TOK_DUMMY_PREFIX : 0) |
               (t->remove_extra_ws ? VZ_TOK_REMOVE_EXTRA_WS : 0) | (t->escape_ws ? 0 : VZ_TOK_NO_ESCAPE_WS) |
               (t->byte_fallback ? VZ_TOK_BYTE_FALLBACK : 0);
    v->unk_surface = t->unk_surface;
    v->unk_surface_len = t->unk_surface_len;
    return VZ_OK;
}

void vz_vocab_free(vz_vocab *v) {
    if (!v) return;
    free(v->owned_types);
    memset(v, 0, sizeof *v);
}

void vz_vocab_apply(vz_tokenizer *t, uint32_t flags, const char *unk_surface, uint32_t unk_surface_len) {
    t->add_dummy_prefix = (flags & VZ_TOK_DUMMY_PREFIX) != 0;
    t->remove_extra_ws = (flags & VZ_TOK_REMOVE_EXTRA_WS) != 0;
    t->escape_ws = (flags & VZ_TOK_NO_ESCAPE_WS) == 0;
    t->byte_fallback = (flags & VZ_TOK_BYTE_FALLBACK) != 0;
    if (unk_surface_len > 0 && unk_surface_len < sizeof t->unk_surface) {
        memcpy(t->unk_surface, unk_surface, unk_surface_len);
        t->unk_surface_len = unk_surface_len;
    }
}
