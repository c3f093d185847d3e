/*
 * synth.h - internals of vz_synth (synthetic checkpoints): the shape table
 * with exact Hugging Face config values, the tensor list in
 * LlamaForCausalLM naming, and the counter-based weight generator (any
 * element computable alone from (seed, tensor index, element index)).
 */
#ifndef VZ_MODEL_SYNTH_H
#define VZ_MODEL_SYNTH_H

#include <stdint.h>

#include "format/safetensors_write.h"

typedef struct vz_synth_shape {
    const char *name, *description;
    const char *model_type, *architecture; /* "llama", "LlamaForCausalLM" */
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_pos;
    double rms_eps, rope_theta;
    int32_t bos_id, eos_id;
    int32_t vocab_from_tokenizer; /* 1: a given tokenizer sets the vocab (demo shapes) */
    int32_t builtin_tokenizer;    /* 1: write the built-in tokenizer.model when none given */
    int32_t tied;                 /* tie_word_embeddings: no lm_head.weight */
    const char *rope_type;        /* rope_scaling.rope_type ("llama3"), NULL: rope_scaling null */
    double rope_factor, rope_low, rope_high; /* rope_scaling: factor, low_freq_factor, high_freq_factor */
    int32_t rope_orig;            /* rope_scaling.original_max_position_embeddings */
    int32_t qkv_bias;             /* q/k/v_proj.bias tensors (Qwen 2) */
    int32_t head_dim;             /* config.json head_dim; 0: dim / n_heads, not written */
} vz_synth_shape;

/* The shape's head_dim (dim / n_heads unless it names one). */
static inline int32_t vz_synth_head_dim(const vz_synth_shape *s) {
    return s->head_dim ? s->head_dim : s->dim / s->n_heads;
}

const vz_synth_shape *vz_synth_find(const char *name); /* NULL if unknown */

typedef enum vz_synth_kind {
    VZ_SK_EMBED, VZ_SK_NORM_ATTN, VZ_SK_NORM_FFN, VZ_SK_NORM_FINAL, VZ_SK_Q, VZ_SK_K, VZ_SK_V, VZ_SK_O,
    VZ_SK_GATE, VZ_SK_UP, VZ_SK_DOWN, VZ_SK_HEAD, VZ_SK_BIAS
} vz_synth_kind;

typedef struct vz_synth_tensor {
    vz_st_tensor st;
    vz_synth_kind kind;
    int32_t layer;   /* -1 for global tensors */
    uint64_t n;      /* elements */
    uint64_t bytes;
    int32_t shard;   /* 0-based shard file */
} vz_synth_tensor;

/* The shape's tensors in model order (malloc'ed array, caller frees). */
vz_status vz_synth_tensors(const vz_synth_shape *s, int32_t vocab, vz_dtype dt, vz_synth_tensor **out, int32_t *n);

/* Weight elements of a shape with the given vocab. */
uint64_t vz_synth_n_params(const vz_synth_shape *s, int32_t vocab);

/* config.json / generation_config.json text (malloc'ed) or NULL on OOM. */
char *vz_synth_config_json(const vz_synth_shape *s, int32_t vocab, vz_dtype dt);
char *vz_synth_generation_json(const vz_synth_shape *s);

/* Generator of one tensor's values. */
typedef struct vz_synth_gen {
    uint64_t key;          /* from (seed, tensor index) */
    uint64_t outlier_key;  /* from seed only: outlier channels are shared by all layers */
    vz_synth_kind kind;
    int64_t cols;
    float sigma;           /* weights: standard deviation; norms: relative spread */
    float mean;            /* norms: mean */
} vz_synth_gen;

void vz_synth_gen_init(vz_synth_gen *g, const vz_synth_shape *s, const vz_synth_tensor *t, int32_t index,
                       uint64_t seed);
float vz_synth_value(const vz_synth_gen *g, uint64_t i);
/* 1 if input channel c is an outlier channel (weight columns scaled up). */
int vz_synth_is_outlier(const vz_synth_gen *g, int64_t c);

#define VZ_SYNTH_OUTLIER_SCALE 4.0f

#endif
