/*
 * tensor.h - a weight tensor as the engine holds it: a name, a shape, the
 * source element type, and an encoded blob (borrowed from an mmap or owned
 * by the model) that one codec of src/codec/codecs.def can decode.
 */
#ifndef VZ_CORE_TENSOR_H
#define VZ_CORE_TENSOR_H

#include <stdint.h>

#include "vramzip.h"

#define VZ_NAME_MAX 128

typedef struct vz_tensor {
    char name[VZ_NAME_MAX];       /* canonical Hugging Face name, e.g. model.layers.0.mlp.up_proj.weight */
    int32_t ndim;
    int64_t shape[4];             /* outermost first; a Linear weight is (out, in) */
    int64_t rows, cols;           /* 2-D view: cols = innermost dim, rows = product of the others */
    vz_dtype dtype;               /* source element type (what lossless decode reproduces) */
    uint16_t codec;               /* codec id (codecs.def); VZ_CODEC_RAW = stored as dtype */
    const uint8_t *data;          /* encoded bytes; borrowed */
    uint64_t size;                /* encoded byte count */
    const uint8_t *params;        /* codec parameter block; borrowed; may be NULL */
    uint32_t params_size;
    uint64_t checksum;            /* xxh64 of the source bytes (0 if has_checksum == 0) */
    int32_t has_checksum;
} vz_tensor;

static inline int vz_dtype_size(vz_dtype d) { return d == VZ_DTYPE_F32 ? 4 : 2; }

/* Fills rows/cols from shape; returns 0, or -1 when ndim or a dim is invalid
 * (ndim outside 1..4, a dim < 1, or a product over 2^40 elements). */
int vz_tensor_set_shape(vz_tensor *t, int32_t ndim, const int64_t *shape);

#endif
