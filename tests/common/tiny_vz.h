/*
 * tiny_vz.h - a tiny self-made Llama model (2 layers, dim 16, GQA 4/2 heads,
 * vocab 32 with a SentencePiece-style vocabulary) written straight into a
 * .vz file with the container writer, for container/convert tests, the
 * golden files and the fuzz seeds. Deterministic for a given seed.
 */
#ifndef VZ_TEST_TINY_VZ_H
#define VZ_TEST_TINY_VZ_H

#include <stdint.h>

#include "vramzip.h"

#define TINY_DIM 16
#define TINY_HIDDEN 40
#define TINY_LAYERS 2
#define TINY_HEADS 4
#define TINY_KV_HEADS 2
#define TINY_VOCAB 32
#define TINY_SEQ 64

/* Writes the tiny model (weights of dtype, codec raw) to path. */
vz_status tiny_vz_write(const char *path, vz_dtype dtype, uint64_t seed);

/* The source bytes tiny_vz_write stores for tensor `name` (malloc'ed, caller
 * frees; *size in bytes), or NULL for an unknown name. */
uint8_t *tiny_vz_tensor_bytes(const char *name, vz_dtype dtype, uint64_t seed, uint64_t *size);

#endif
