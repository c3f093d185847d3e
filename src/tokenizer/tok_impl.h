/*
 * tok_impl.h - private layout of vz_tokenizer, shared by the files of
 * src/tokenizer/ only: the builder (tokenizer.c), the SentencePiece .model
 * reader (spm_proto.c), the encoder (bpe.c), the detokenizer (detok.c) and
 * the byte-level BPE of tokenizer.json (bbpe.c).
 * Pieces are kept in SentencePiece form (U+2581 for a space) for encoding and
 * in display form (plain spaces) for vz_tokenizer_piece and decoding; a
 * byte-level tokenizer keeps its vocabulary strings as pieces and the bytes
 * they decode to as text (tlen bytes: they may hold a NUL).
 */
#ifndef VZ_TOKENIZER_TOK_IMPL_H
#define VZ_TOKENIZER_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define VZ_TOK_MAX_VOCAB (1 << 24)

/* How text is normalized and ids are assigned; a subset of SentencePiece's
 * TrainerSpec and NormalizerSpec (identity normalization only). */
typedef struct tok_spec {
    int32_t bos, eos, unk;           /* -1: none */
    int32_t add_dummy_prefix;        /* prepend U+2581 to non-empty text */
    int32_t remove_extra_ws;         /* drop leading/trailing/repeated spaces */
    int32_t escape_ws;               /* spaces become U+2581 */
    int32_t byte_fallback;           /* unknown characters become <0xXX> pieces */
    int32_t spm_form;                /* pieces use U+2581 (1) or spaces (0) */
    int32_t strict;                  /* SentencePiece checks: no empty or duplicate piece */
    const char *unk_surface;         /* decoded text of the unknown piece */
    uint32_t unk_surface_len;
    const char *what;                /* file name for messages */
    int32_t byte_level;              /* tokenizer.json byte-level BPE: no UNKNOWN piece */
} tok_spec;

struct tok_bbpe; /* bbpe.c */

struct vz_tokenizer {
    int32_t n;
    const char **piece;   /* (n) SentencePiece form, NUL-terminated, in arena */
    uint32_t *len;        /* (n) byte length of piece */
    const char **text;    /* (n) display form: U+2581 -> ' ' */
    float *score;         /* (n) */
    uint8_t *type;        /* (n) VZ_PIECE_* */
    char *arena;
    int32_t *slot;        /* open-addressing table of ids, -1 empty */
    uint32_t slot_mask;
    int32_t bos, eos, unk;
    int32_t add_dummy_prefix, remove_extra_ws, escape_ws, byte_fallback;
    int32_t has_unused;   /* some piece is UNUSED: resegment after merging */
    uint32_t max_user_len;/* longest USER_DEFINED piece (0: none) */
    int32_t byte_id[256]; /* id of "<0xXX>", or unk */
    char unk_surface[64];
    uint32_t unk_surface_len;
    struct tok_bbpe *bb;  /* byte-level BPE (bbpe.c), else NULL */
    uint32_t *tlen;       /* (n) byte-level: bytes of text[i] */
};

/* Builds a tokenizer from parallel arrays (copied). types may be NULL
 * (inferred: unk, bos/eos -> CONTROL, "<0xXX>" -> BYTE, else NORMAL); scores
 * may be NULL (all 0). */
vz_status tok_create(vz_tokenizer **out, int32_t n, const char *const *pieces, const uint32_t *lens,
                     const float *scores, const int32_t *types, const tok_spec *spec);

/* Id of the piece (SentencePiece form) p[0..n), or -1. */
int32_t tok_lookup(const vz_tokenizer *t, const char *p, size_t n);

/* Byte length of the UTF-8 character at s (1..4), SentencePiece's rule:
 * valid characters only, anything else counts as one invalid byte (0 returned
 * in *valid). */
size_t tok_utf8_char(const uint8_t *s, size_t n, int *valid);

/* Byte-level BPE (bbpe.c): the ids of text (BOS first when add_bos and the
 * template has one) into *ids (malloc'd, *n of them); the state's free; the
 * tokenizer.json bytes it was read from. */
vz_status tok_bbpe_encode(const vz_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                          size_t *n);
void tok_bbpe_free(struct tok_bbpe *b);
const uint8_t *tok_bbpe_json(const vz_tokenizer *t, size_t *len);

#endif
