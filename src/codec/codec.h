/*
 * codec.h - the codec table. A codec turns a row-major (rows, cols) tensor of
 * one source dtype into a (params, data) pair and back. Each codec is one .c
 * file exporting a const vz_codec and one line in codecs.def; its id is
 * written to disk and is never renumbered or reused. Tests, fuzzers,
 * `inspect` and `bench` iterate the table, so a new codec needs no other edit.
 *
 * Every codec must decode any row range [r0, r1) without touching other
 * rows' data beyond a small index (the matvec decodes row by row).
 */
#ifndef VZ_CODEC_CODEC_H
#define VZ_CODEC_CODEC_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

enum {
#define VZ_CODEC(id, ident, name) VZ_CODEC_##ident = id,
#include "codec/codecs.def"
#undef VZ_CODEC
};

/* Encoder options, parsed from a spec like "q4:g32", "zstd:19" or "lossless:k4". */
typedef struct vz_codec_opts {
    int32_t group; /* quantization group size; 0: codec default */
    int32_t level; /* compression level; 0: codec default */
    int32_t code;  /* lossless code bits (3, or 4: packed4); 0: codec default */
} vz_codec_opts;

/* Output of an encoder: two malloc'ed buffers owned by the caller. */
typedef struct vz_blob {
    uint8_t *params;
    uint32_t params_size;
    uint8_t *data;
    uint64_t size;
} vz_blob;

void vz_blob_free(vz_blob *b);

typedef struct vz_codec {
    const char *name;  /* on the command line and in inspect */
    uint16_t id;       /* on disk: never renumber or reuse */
    uint8_t lossless;  /* 1: decode_ref reproduces the source bits exactly */
    const char *doc;   /* one line for `vramzip convert --help` */

    /* 1 if this codec can encode that dtype/shape (else convert keeps raw). */
    int (*supports)(vz_dtype dtype, int64_t rows, int64_t cols);

    /* Encodes rows*cols elements of dtype at src (row-major, little-endian). */
    vz_status (*encode)(const void *src, vz_dtype dtype, int64_t rows, int64_t cols, const vz_codec_opts *o,
                        vz_blob *out);

    /* Validates t->params/t->data against t's shape and dtype (untrusted
     * input). Called before any decode of a tensor loaded from a file. */
    vz_status (*check)(const vz_tensor *t);

    /* Reference decoder (the spec): rows [r0, r1). Lossless codecs write the
     * source element bits (vz_dtype_size bytes each); lossy codecs write f32. */
    vz_status (*decode_ref)(const vz_tensor *t, int64_t r0, int64_t r1, void *out);

    /* Fast decode of rows [r0, r1) to f32 for the fused matvec; must equal the
     * f32 value of decode_ref bit for bit. t has passed check(). */
    void (*decode_f32)(const vz_tensor *t, int64_t r0, int64_t r1, float *out);

    /* Optional (NULL: the matvec decodes with decode_f32, then vz_dot):
     * y[r - r0] = vz_dot(row r as decode_f32 gives it, x, cols) bit for bit,
     * for rows [r0, r1), without an f32 row buffer. t has passed check(). */
    void (*dot_f32)(const vz_tensor *t, int64_t r0, int64_t r1, const float *x, float *y);

    /* Optional (NULL: name): the spec that writes t (`convert --codec`),
     * where t's params pick a form that name alone does not. t may be
     * unchecked. */
    const char *(*spec)(const vz_tensor *t);
} vz_codec;

const vz_codec *vz_codec_by_id(uint16_t id);     /* NULL if unknown */
const vz_codec *vz_codec_by_name(const char *name);
int vz_codec_count(void);
const vz_codec *vz_codec_at(int i);              /* table order */

/* Looks up t's codec and runs its check: VZ_ERR_CODEC for an unknown id. */
vz_status vz_tensor_check(const vz_tensor *t);

#endif
