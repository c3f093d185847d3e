/*
 * hf.h - internals of the Hugging Face directory reader (hf.c) exposed for
 * tests and the fuzzer: the config.json parser (transformers' LlamaConfig /
 * MistralConfig fields) over text in memory.
 */
#ifndef VZ_FORMAT_HF_H
#define VZ_FORMAT_HF_H

#include <stddef.h>

#include "model/model.h"

/* Parses config.json text (len bytes; need not be NUL-terminated) into c
 * (zeroed first). Fails with VZ_ERR_FORMAT / VZ_ERR_UNSUPPORTED naming
 * `what` and the field. Does not run vz_config_validate. */
vz_status vz_hf_parse_config(vz_config *c, const char *text, size_t len, const char *what);

/* The "rope_scaling" field of a JSON object (a cJSON *; config.json's, or the
 * .vz XCFG section's) into c->rope_scaling; absent or null: none. */
vz_status vz_hf_rope_scaling(vz_config *c, const void *root, const char *what);

#endif
