/*
 * tokenizer.h - internal tokenizer API (the public one is in vramzip.h).
 * A tokenizer is a vocabulary of pieces with scores and types, encoded like
 * SentencePiece BPE with byte fallback. It can be built from a
 * SentencePiece .model, a llama2.c tokenizer.bin, or a GGUF vocabulary.
 */
#ifndef VZ_TOKENIZER_TOKENIZER_H
#define VZ_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* SentencePiece piece types. */
enum { VZ_PIECE_NORMAL = 1, VZ_PIECE_UNKNOWN = 2, VZ_PIECE_CONTROL = 3, VZ_PIECE_USER = 4, VZ_PIECE_UNUSED = 5,
       VZ_PIECE_BYTE = 6 };

/* Builds a tokenizer from parallel arrays (copied). pieces are UTF-8 with
 * U+2581 kept as is (SentencePiece/GGUF form) when spm_form is 1, or with
 * spaces (llama2.c form) when 0. types (SentencePiece 1..6) may be NULL:
 * inferred from unk/bos/eos and "<0xXX>" names; scores may be NULL (all 0).
 * Byte fallback is on when some piece is of type BYTE. what names the
 * source in messages. *out owned by the caller (vz_tokenizer_close). */
vz_status vz_tokenizer_from_vocab(vz_tokenizer **out, int32_t n, const char *const *pieces, const uint32_t *lens,
                                  const float *scores, const int32_t *types, int32_t spm_form, int32_t bos,
                                  int32_t eos, int32_t unk, int32_t add_dummy_prefix, const char *what);

/* Parses a SentencePiece ModelProto (tokenizer.model) held in memory;
 * what names it in messages. data is not borrowed past the call. */
vz_status vz_tokenizer_from_spm_model(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what);

/* Parses a llama2.c tokenizer.bin held in memory (int32 max_token_length,
 * then per token: float32 score, int32 length, bytes; to the end of data).
 * BOS = 1, EOS = 2, UNK = 0 as in llama2.c. */
vz_status vz_tokenizer_from_llama2c(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what);

/* Parses a Hugging Face tokenizer.json held in memory: byte-level BPE
 * (Llama 3, Qwen 2, GPT-2; bbpe.c). data is copied (the .vz TJSN section). */
vz_status vz_tokenizer_from_json(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what);

/* Whether data looks like a tokenizer.json: white space, '{', white space,
 * then '"' or '}' (a tokenizer.model or a valid tokenizer.bin never starts so). */
int vz_tokenizer_is_json(const uint8_t *data, size_t size);

/* The id of the token whose piece is exactly piece (e.g. "</s>",
 * "<|im_start|>"), or -1: how chat formats put special tokens in by id. */
int32_t vz_tokenizer_piece_id(const vz_tokenizer *t, const char *piece);

/* The tokenizer.json a byte-level tokenizer was read from (borrowed), or NULL
 * for the other kinds. */
const uint8_t *vz_tokenizer_json(const vz_tokenizer *t, size_t *len);

#endif
