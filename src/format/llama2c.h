/*
 * llama2c.h - the llama2.c ("version 0") checkpoint parser over a memory
 * buffer (an mmap or a fuzzer's input); vz_read_llama2c (model.h) maps the
 * file, calls it, then looks for a tokenizer beside the file.
 */
#ifndef VZ_FORMAT_LLAMA2C_H
#define VZ_FORMAT_LLAMA2C_H

#include <stdint.h>

#include "model/model.h"

/* Fills m (zeroed) from the llama2.c file held at data: config and the
 * canonical f32 tensors (borrowed from data, which must outlive m). The
 * header is checked and the size must be exactly what it implies. No
 * tokenizer; does not call vz_model_bind. `path` names the input in errors. */
vz_status vz_llama2c_load(vz_model *m, const uint8_t *data, uint64_t size, const char *path);

#endif
