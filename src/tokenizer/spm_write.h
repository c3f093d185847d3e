/*
 * spm_write.h - writes a SentencePiece ModelProto (sentencepiece_model.proto:
 * pieces = field 1, trainer_spec = 2, normalizer_spec = 3) for the built-in
 * tokenizer of synthetic checkpoints, and checks the framing of a given
 * tokenizer.model. The layout copies Llama 2's tokenizer.model: BPE,
 * byte_fallback, identity normalizer with add_dummy_prefix.
 */
#ifndef VZ_TOKENIZER_SPM_WRITE_H
#define VZ_TOKENIZER_SPM_WRITE_H

#include <stdint.h>

#include "core/status.h"

#define VZ_SPM_MIN_VOCAB 300     /* specials + 256 bytes + letters and punctuation */
#define VZ_SPM_MAX_VOCAB 262144

/* Builds the built-in BPE model with exactly vocab_size pieces: <unk>, <s>,
 * </s>, <0x00>..<0xFF>, then NORMAL pieces ("▁", letters, punctuation,
 * bigrams, prefixes of common English words, then generated letter strings)
 * with descending scores. Deterministic. *out is malloc'ed (caller frees). */
vz_status vz_spm_build_default(int32_t vocab_size, uint8_t **out, uint64_t *size);

/* Walks the top-level protobuf fields of a serialized ModelProto (what names
 * the file in errors) and counts its pieces. Fails with VZ_ERR_FORMAT on
 * malformed framing or when there are no pieces. */
vz_status vz_spm_count_pieces(const uint8_t *p, uint64_t size, const char *what, int32_t *n_pieces);

#endif
