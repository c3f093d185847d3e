/*
 * safetensors_write.h - streaming writer for the safetensors format
 * (huggingface/safetensors docs: u64 LE header length, JSON header with
 * {"dtype","shape","data_offsets"} per tensor and "__metadata__", then the
 * tensor bytes back to back). Data is streamed in order, so a file of any size
 * is written with constant memory; the file appears under its name on commit.
 */
#ifndef VZ_FORMAT_SAFETENSORS_WRITE_H
#define VZ_FORMAT_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

typedef struct vz_st_tensor {
    char name[VZ_NAME_MAX];
    vz_dtype dtype;
    int32_t ndim;
    int64_t shape[4]; /* outermost first, like torch */
} vz_st_tensor;

/* "BF16", "F16", "F32" (the safetensors dtype names). */
const char *vz_st_dtype_name(vz_dtype d);

/* Bytes of a tensor's data (product of dims * element size); 0 when a dim
 * is invalid or the product overflows. */
uint64_t vz_st_tensor_bytes(const vz_st_tensor *t);

/* The header JSON for n tensors stored back to back in array order, padded
 * with spaces so that 8 + length is a multiple of 8 (data 8-byte aligned).
 * *json is malloc'ed (caller frees); *data_size gets the total data bytes. */
vz_status vz_st_header(const vz_st_tensor *t, int32_t n, char **json, uint64_t *json_len, uint64_t *data_size);

typedef struct vz_st_writer vz_st_writer;

/* Creates path (through a temporary file in the same directory) and writes
 * the header for the n tensors (copied). Then call vz_st_writer_write with
 * exactly the data bytes of every tensor, in order, in chunks of any size. */
vz_status vz_st_writer_open(vz_st_writer **out, const char *path, const vz_st_tensor *t, int32_t n);
vz_status vz_st_writer_write(vz_st_writer *w, const void *p, uint64_t n);
/* Checks that all data was written, flushes and renames the file into place.
 * Frees w whatever the outcome (the temporary file is removed on failure). */
vz_status vz_st_writer_commit(vz_st_writer *w);
/* Removes the temporary file and frees w (NULL is fine). */
void vz_st_writer_abort(vz_st_writer *w);

#endif
