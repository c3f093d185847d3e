/*
 * gguf.h - GGUF v2/v3 parser over a memory buffer (an mmap or a fuzzer's
 * input), following ggml's docs/gguf.md: magic "GGUF", u32 version, u64
 * n_tensors, u64 n_kv, the key/value metadata, the tensor infos, then the
 * tensor data at the next multiple of general.alignment (default 32).
 */
#ifndef VZ_FORMAT_GGUF_H
#define VZ_FORMAT_GGUF_H

#include <stdint.h>

#include "model/model.h"

enum {
    VZ_GGUF_UINT8 = 0, VZ_GGUF_INT8 = 1, VZ_GGUF_UINT16 = 2, VZ_GGUF_INT16 = 3, VZ_GGUF_UINT32 = 4,
    VZ_GGUF_INT32 = 5, VZ_GGUF_FLOAT32 = 6, VZ_GGUF_BOOL = 7, VZ_GGUF_STRING = 8, VZ_GGUF_ARRAY = 9,
    VZ_GGUF_UINT64 = 10, VZ_GGUF_INT64 = 11, VZ_GGUF_FLOAT64 = 12
};

enum { VZ_GGML_F32 = 0, VZ_GGML_F16 = 1, VZ_GGML_Q4_0 = 2, VZ_GGML_Q8_0 = 8, VZ_GGML_BF16 = 30 };

typedef struct vz_gguf_kv {
    const uint8_t *key;     /* not NUL-terminated */
    uint64_t key_len;
    uint32_t type;
    const uint8_t *val;     /* the value; for arrays the first element */
    uint32_t arr_type;      /* arrays only */
    uint64_t arr_n;
} vz_gguf_kv;

typedef struct vz_gguf_tinfo {
    const uint8_t *name;
    uint64_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];         /* ne[0] innermost */
    uint32_t type;          /* ggml type */
    uint64_t offset;        /* from the start of the data section */
} vz_gguf_tinfo;

typedef struct vz_gguf {
    uint32_t version;
    uint64_t n_kv, n_tensors;
    vz_gguf_kv *kv;         /* owned */
    vz_gguf_tinfo *ti;      /* owned */
    uint64_t alignment;
    uint64_t data_off;      /* start of the data section */
    const uint8_t *p;       /* borrowed file bytes */
    uint64_t size;
    const char *what;
} vz_gguf;

/* Parses and validates the whole layout (every tensor's data lies inside
 * the buffer). Frees everything itself on failure. */
vz_status vz_gguf_parse(vz_gguf *g, const uint8_t *p, uint64_t size, const char *what);
void vz_gguf_free(vz_gguf *g);

/* The entry for key, or NULL. */
const vz_gguf_kv *vz_gguf_find(const vz_gguf *g, const char *key);

/* Fills m (zeroed) from a GGUF held at p: config, canonical tensors (data
 * borrowed from p) and the tokenizer. Does not call vz_model_bind. */
vz_status vz_gguf_load(vz_model *m, const uint8_t *p, uint64_t size, const char *what);

#endif
