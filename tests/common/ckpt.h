/*
 * ckpt.h - test helpers that write small model checkpoints: Hugging Face
 * directories (config.json + safetensors, optionally sharded) and GGUF files,
 * from llama2.c-layout f32 weights (stories260K.bin or random tiny models).
 * Writers are independent of the readers under test (own byte layout code).
 */
#ifndef VZ_TEST_CKPT_H
#define VZ_TEST_CKPT_H

#include <stddef.h>
#include <stdint.h>

/* Weights in llama2.c order; pointers into `owned` (one buffer). */
typedef struct vz_ckpt_model {
    int32_t dim, hidden, layers, heads, kv_heads, vocab, seq;
    float *tok, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final;
    float *wcls;  /* untied classifier (vocab, dim) or NULL */
    float *owned;
} vz_ckpt_model;

/* Loads a llama2.c .bin (legacy v0, f32); 0 on success. */
int vz_ckpt_load_bin(vz_ckpt_model *m, const char *path);
/* A random model with the given sizes (untied when untied != 0). */
int vz_ckpt_random(vz_ckpt_model *m, int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                   int untied, uint64_t seed);
void vz_ckpt_free(vz_ckpt_model *m);

/* HF's permute for rotate-half RoPE: rows of each head reordered from
 * interleaved pairs to halves; in (rows, cols) f32 -> out. */
void vz_ckpt_permute_rows(float *out, const float *in, int rows, int cols, int heads);

/* One safetensors entry. dtype "F32", "F16" or "BF16" (data converted from
 * f32) or any other string with raw bytes (data/size as given). */
typedef struct vz_ckpt_st {
    char name[128];
    const char *dtype;
    int ndim;
    int64_t shape[4];
    const float *f32;      /* source values (converted to dtype) */
    const void *raw;       /* or raw bytes when f32 is NULL */
    uint64_t raw_size;
} vz_ckpt_st;

/* Writes a safetensors file; 0 on success. */
int vz_ckpt_write_st(const char *path, const vz_ckpt_st *e, int n);
/* Writes u64 len + header text + data (for malformed cases). */
int vz_ckpt_write_st_raw(const char *path, const char *header, const void *data, uint64_t size);
int vz_ckpt_write_file(const char *path, const void *p, size_t n);

/* The HF tensor list of a model (Q/K permuted), in `dtype`; tied omits lm_head. */
int vz_ckpt_hf_entries(const vz_ckpt_model *m, const char *dtype, vz_ckpt_st **out, int *n, float **scratch);
/* config.json text for m (malloc'ed); tied sets tie_word_embeddings. */
char *vz_ckpt_hf_config(const vz_ckpt_model *m, int tied);
/* config.json of a MistralForCausalLM (model_type mistral, head_dim, and
 * sliding_window: > 0 as given, else null) for m (malloc'ed). */
char *vz_ckpt_hf_config_mistral(const vz_ckpt_model *m, int tied, int sliding_window);
/* A whole HF directory: config.json + model.safetensors (shards == 1) or
 * shards files + model.safetensors.index.json. 0 on success. */
int vz_ckpt_write_hf(const char *dir, const vz_ckpt_model *m, const char *dtype, int shards, int tied);

/* Byte offsets of fields inside a built GGUF (for corrupting tests). */
typedef struct vz_ckpt_gguf_off {
    uint64_t n_tensors, n_kv, first_key_len, tokens_count, tokens_first_len, first_tinfo, first_type,
             first_ne0, data_start;
} vz_ckpt_gguf_off;

/* Builds a GGUF v3 of m (f32 tensors, llama metadata, a vocabulary of
 * `vocab` pieces when with_vocab). *out malloc'ed. 0 on success. */
int vz_ckpt_build_gguf(const vz_ckpt_model *m, int with_vocab, uint8_t **out, size_t *size, vz_ckpt_gguf_off *off);
/* The same with every 2-D tensor stored as ggml type wtype (0 F32, 1 F16,
 * 30 BF16; norms stay F32) and the given GGUF version (2 or 3: same layout). */
int vz_ckpt_build_gguf_ex(const vz_ckpt_model *m, int with_vocab, uint32_t wtype, uint32_t version, uint8_t **out,
                          size_t *size, vz_ckpt_gguf_off *off);

#endif
