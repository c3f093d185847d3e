/*
 * safetensors.h - parser for one Hugging Face safetensors file held in
 * memory (an mmap or a fuzzer's buffer). Format (huggingface/safetensors
 * README): u64 LE header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the byte buffer that the offsets index. Everything is validated.
 */
#ifndef VZ_FORMAT_SAFETENSORS_H
#define VZ_FORMAT_SAFETENSORS_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* Largest header accepted (the reference implementation uses 100 MB). */
#define VZ_ST_MAX_HEADER (100ull << 20)

typedef struct vz_st_file {
    vz_tensor *tensors;      /* n owned entries; data points into the caller's buffer */
    int32_t n;
} vz_st_file;

/* Parses size bytes at p (borrowed; must outlive the tensors). what names the
 * file in errors. Tensors get codec raw, dtype, shape and data/size. On
 * failure nothing is left allocated. */
vz_status vz_st_parse(vz_st_file *out, const uint8_t *p, uint64_t size, const char *what);
void vz_st_free(vz_st_file *f);

/* Returns the first name that occurs twice among n tensors, or NULL. */
const char *vz_tensors_find_dup(const vz_tensor *t, int32_t n);

#endif
