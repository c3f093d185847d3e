/*
 * model.h - the in-memory model every reader fills and every backend runs:
 * a Llama-family config, the weight tensors (still encoded), shortcuts to
 * each layer's tensors, and the tokenizer. Readers live in src/format/.
 */
#ifndef VZ_MODEL_MODEL_H
#define VZ_MODEL_MODEL_H

#include <stdint.h>

#include "backend/cpu/ops.h"
#include "core/io.h"
#include "core/tensor.h"
#include "vramzip.h"

#define VZ_MAX_EOS 8 /* stop ids a model may name (config.json, generation_config.json, GGUF eot/eom) */

typedef struct vz_config {
    char arch[32];          /* "llama", "mistral", "qwen2" */
    int32_t dim;            /* hidden_size */
    int32_t hidden_dim;     /* intermediate_size */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;       /* dim / n_heads */
    int32_t vocab_size;
    int32_t max_seq_len;    /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    int32_t rope_interleaved; /* 1: rotate pairs (2i, 2i+1) as llama2.c/GGUF; 0: (i, i+hd/2) as HF */
    vz_rope_scaling rope_scaling; /* HF rope_scaling (Llama 3.1+: llama3); type VZ_ROPE_NONE for most */
    int32_t qkv_bias;         /* q/k/v projections have biases (Qwen 2) */
    int32_t tied_embeddings;  /* output head shares the token embedding */
    int32_t bos_id, eos_id;
    int32_t n_eos;            /* stop ids: eos_ids[0..n_eos) (eos_id first; Llama 3 instruct adds <|eot_id|>) */
    int32_t eos_ids[VZ_MAX_EOS];
} vz_config;

/* Adds a stop id to c->eos_ids (negative, repeated or past VZ_MAX_EOS: ignored). */
void vz_config_add_eos(vz_config *c, int32_t id);
/* Every id that ends generation: eos_id, then eos_ids, without repeats. */
void vz_config_stop_ids(const vz_config *c, int32_t ids[VZ_MAX_EOS], int32_t *n);

/* Checks a config for sane, consistent values; names `what` (file) in errors. */
vz_status vz_config_validate(const vz_config *c, const char *what);

typedef struct vz_layer {
    const vz_tensor *wq;        /* (n_heads*head_dim, dim) */
    const vz_tensor *wk;        /* (n_kv_heads*head_dim, dim) */
    const vz_tensor *wv;        /* (n_kv_heads*head_dim, dim) */
    const vz_tensor *wo;        /* (dim, n_heads*head_dim) */
    const vz_tensor *w1;        /* gate_proj (hidden_dim, dim) */
    const vz_tensor *w2;        /* down_proj (dim, hidden_dim) */
    const vz_tensor *w3;        /* up_proj (hidden_dim, dim) */
    const float *attn_norm;     /* (dim) f32, owned by the model */
    const float *ffn_norm;      /* (dim) */
    const float *bq, *bk, *bv;  /* qkv_bias: (n_heads*head_dim), (n_kv_heads*head_dim) x 2 f32; else NULL */
} vz_layer;

#define VZ_MAX_MAPS 64

struct vz_model {
    vz_config cfg;
    char format[16];            /* "hf", "gguf", "llama2c", "vz" */
    char path[1024];

    vz_tensor *tensors;         /* all tensors, owned array (data borrowed from maps/owned) */
    int32_t n_tensors;

    const vz_tensor *tok_emb;   /* (vocab_size, dim) */
    const vz_tensor *output;    /* (vocab_size, dim); == tok_emb when tied */
    const float *final_norm;    /* (dim) */
    vz_layer *layers;           /* n_layers */

    float *norms;               /* owned f32 storage for all norm vectors */
    vz_tokenizer *tok;          /* owned; may be NULL */

    vz_map maps[VZ_MAX_MAPS];   /* backing mappings, closed with the model */
    int32_t n_maps;
    void *owned[VZ_MAX_MAPS];   /* other owned buffers, freed with the model */
    int32_t n_owned;
    const char *chat_template;  /* the checkpoint's Jinja chat template (owned), or NULL: model/chat.c */
};

/* Canonical tensor names (Hugging Face LlamaForCausalLM). Readers of other
 * formats rename their tensors to these. layer < 0 for global tensors. */
#define VZ_NAME_TOK_EMB    "model.embed_tokens.weight"
#define VZ_NAME_FINAL_NORM "model.norm.weight"
#define VZ_NAME_OUTPUT     "lm_head.weight"
#define VZ_NAME_ROPE_FREQS "rope_freqs.weight" /* llama.cpp's rope scaling divisors (VZ_ROPE_FACTORS) */
/* per layer: model.layers.%d.<suffix> */
#define VZ_SFX_ATTN_NORM   "input_layernorm.weight"
#define VZ_SFX_FFN_NORM    "post_attention_layernorm.weight"
#define VZ_SFX_WQ          "self_attn.q_proj.weight"
#define VZ_SFX_WK          "self_attn.k_proj.weight"
#define VZ_SFX_WV          "self_attn.v_proj.weight"
#define VZ_SFX_WO          "self_attn.o_proj.weight"
#define VZ_SFX_W1          "mlp.gate_proj.weight"
#define VZ_SFX_W2          "mlp.down_proj.weight"
#define VZ_SFX_W3          "mlp.up_proj.weight"
#define VZ_SFX_BQ          "self_attn.q_proj.bias"
#define VZ_SFX_BK          "self_attn.k_proj.bias"
#define VZ_SFX_BV          "self_attn.v_proj.bias"

const vz_tensor *vz_model_find(const vz_model *m, const char *name);

/* After a reader has filled cfg and tensors: checks every expected tensor
 * exists with the shape the config implies, runs each tensor's codec check,
 * decodes the norms to f32 and fills tok_emb/output/final_norm/layers. */
vz_status vz_model_bind(vz_model *m);

#define VZ_MAX_CHAT_TEMPLATE (1 << 20) /* bytes: real ones are 1-10 KB */

/* Registers a mapping/buffer to be released with the model. */
vz_status vz_model_add_map(vz_model *m, vz_map **out);
vz_status vz_model_own(vz_model *m, void *p);

/* Keeps a copy of the n bytes at s (NUL-terminated) as m->chat_template
 * (tokenizer_config.json's chat_template, GGUF tokenizer.chat_template, the
 * .vz CHAT section); what names the source in messages. */
vz_status vz_model_set_chat_template(vz_model *m, const char *s, size_t n, const char *what);

/* Readers (src/format/). Each fills m (already zeroed) or fails with a
 * message naming the file and field; vz_model_open then calls bind. */
vz_status vz_read_llama2c(vz_model *m, const char *path, const vz_model_opts *o);
vz_status vz_read_gguf(vz_model *m, const char *path, const vz_model_opts *o);
vz_status vz_read_hf(vz_model *m, const char *dir, const vz_model_opts *o);
vz_status vz_read_vz(vz_model *m, const char *path, const vz_model_opts *o);

#endif
