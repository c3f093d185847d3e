/*
 * vz_write.h - the .vz container writer (docs/format.md). Tensors are
 * streamed to a temporary file as they are added (blobs 256-byte aligned);
 * vz_writer_finish appends the CONF/TOKN/TIDX sections and the section
 * table, rewrites the header and renames the file into place. Also the
 * format constants shared with the reader (vz.c).
 */
#ifndef VZ_FORMAT_VZ_WRITE_H
#define VZ_FORMAT_VZ_WRITE_H

#include <stdint.h>

#include "model/model.h"

#define VZ_FILE_VERSION 1u
#define VZ_HEADER_SIZE 64u
#define VZ_HEADER_MIN 48u
#define VZ_BLOB_ALIGN 256u
#define VZ_SECTION_ENTRY 32u
#define VZ_MAX_SECTIONS 1024u
#define VZ_MAX_TENSORS (1u << 20)
#define VZ_MAX_PIECE 4096u
#define VZ_SECT_REQUIRED 1u
#define VZ_TFLAG_SRC_SUM 1u
#define VZ_TOK_DUMMY_PREFIX 1u
#define VZ_TOK_SPM_FORM 2u
#define VZ_TOK_REMOVE_EXTRA_WS 4u
#define VZ_TOK_NO_ESCAPE_WS 8u
#define VZ_TOK_BYTE_FALLBACK 16u
#define VZ_TOK_MAX_UNK_SURFACE 63u

/* A tokenizer vocabulary as stored in the TOKN section (all borrowed). */
typedef struct vz_vocab {
    int32_t n;
    const char *const *pieces;
    const uint32_t *lens;
    const float *scores;
    const int32_t *types;
    int32_t bos, eos, unk;
    uint32_t flags; /* VZ_TOK_* */
    const char *unk_surface; /* decoded text of the unknown piece */
    uint32_t unk_surface_len;
    int32_t *owned_types; /* freed by vz_vocab_free */
} vz_vocab;

/* vz_vocab.c: exports a tokenizer's vocabulary (pointers borrowed from t,
 * types copied) and re-applies the stored normalization flags to a tokenizer
 * built by vz_tokenizer_from_vocab. */
vz_status vz_vocab_from_tokenizer(vz_vocab *v, const vz_tokenizer *t);
void vz_vocab_free(vz_vocab *v);
void vz_vocab_apply(vz_tokenizer *t, uint32_t flags, const char *unk_surface, uint32_t unk_surface_len);

typedef struct vz_writer vz_writer;

/* Creates the temporary output next to path. *out owned: finish or abort. */
vz_status vz_writer_open(vz_writer **out, const char *path);

/* Config to store (copied); source_format is informative ("llama2c"...). */
vz_status vz_writer_set_config(vz_writer *w, const vz_config *c, const char *source_format);

/* A byte-level BPE tokenizer's tokenizer.json to store (copied into the TJSN
 * section now; a model has TOKN or TJSN, not both). */
vz_status vz_writer_set_tokenizer_json(vz_writer *w, const uint8_t *json, size_t len);

/* Vocabulary to store (copied into the TOKN section now). */
vz_status vz_writer_set_vocab(vz_writer *w, const vz_vocab *v);

/* The checkpoint's chat template (UTF-8 text, copied) for the optional CHAT
 * section: readers without it skip it. */
vz_status vz_writer_set_chat_template(vz_writer *w, const char *text);

/* Appends one tensor: name, shape, source dtype, codec id, encoded params
 * and data (written now), and the XXH64 of the source bytes (has_src_sum). */
vz_status vz_writer_add_tensor(vz_writer *w, const vz_tensor *t, uint64_t src_sum, int32_t has_src_sum);

/* Writes the metadata and renames the file into place; frees w. */
vz_status vz_writer_finish(vz_writer *w);

/* Removes the temporary file and frees w (NULL is fine). */
void vz_writer_abort(vz_writer *w);

/* Reader side (vz.c): fills m (zeroed, m->path set) from a .vz image of size
 * bytes at data, borrowed for m's lifetime; `what` names it in errors. The
 * file reader vz_read_vz maps the file and calls this. */
vz_status vz_read_vz_mem(vz_model *m, const uint8_t *data, uint64_t size, const char *what, const vz_model_opts *o);

/* XXH64 of the source bytes of t, decoded with its codec's decode_ref (t
 * must have passed its codec check; the codec must be lossless). */
vz_status vz_tensor_source_hash(const vz_tensor *t, uint64_t *out);

#endif
