/*
 * synth_shapes.c - shapes of vz_synth: exact config.json values of the
 * Hugging Face checkpoints TinyLlama/TinyLlama-1.1B-Chat-v1.0,
 * meta-llama/Llama-2-7b-hf, mistralai/Mistral-7B-v0.2 (rope_theta 1e6, no
 * sliding window), meta-llama/Meta-Llama-3-8B, meta-llama/Llama-3.2-1B
 * (tied embeddings, llama3 rope scaling), Qwen/Qwen2.5-0.5B (q/k/v
 * biases, tied) and mistralai/Mistral-Nemo-Base-2407 (head_dim 128 of
 * 5120 / 32), plus small demo and test shapes;
 * their tensor lists in LlamaForCausalLM naming and their config.json.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"
#include "model/synth.h"

/* name, description, model_type, architecture; dim, hidden, layers, heads, kv heads, vocab, max_pos;
 * rms_eps, rope_theta; bos, eos; then the flags that differ from a plain untied Llama. */
#define SHAPE(n, d, mt, ar, dm, hid, nl, nh, nkv, voc, mp, eps, th, bos, eos)                                       \
    .name = n, .description = d, .model_type = mt, .architecture = ar, .dim = dm, .hidden_dim = hid, .n_layers = nl,  \
    .n_heads = nh, .n_kv_heads = nkv, .vocab_size = voc, .max_pos = mp, .rms_eps = eps, .rope_theta = th,            \
    .bos_id = bos, .eos_id = eos
static const vz_synth_shape shapes[] = {
    {SHAPE("tiny", "test shape: 2 layers, dim 64 (vocab from --tokenizer, else 512)", "llama", "LlamaForCausalLM", 64,
           172, 2, 4, 2, 512, 256, 1e-5, 10000.0, 1, 2),
     .vocab_from_tokenizer = 1, .builtin_tokenizer = 1},
    {SHAPE("small", "CPU demo: 4 layers, dim 256 (vocab from --tokenizer, else 512)", "llama", "LlamaForCausalLM", 256,
           688, 4, 8, 4, 512, 512, 1e-5, 10000.0, 1, 2),
     .vocab_from_tokenizer = 1, .builtin_tokenizer = 1},
    {SHAPE("tinyllama-1.1b", "TinyLlama-1.1B (Llama 2 tokenizer, GQA 32/4)", "llama", "LlamaForCausalLM", 2048, 5632,
           22, 32, 4, 32000, 2048, 1e-5, 10000.0, 1, 2),
     .builtin_tokenizer = 1},
    {SHAPE("llama2-7b", "Llama-2-7B (multi-head attention)", "llama", "LlamaForCausalLM", 4096, 11008, 32, 32, 32,
           32000, 4096, 1e-5, 10000.0, 1, 2),
     .builtin_tokenizer = 1},
    {SHAPE("mistral-7b", "Mistral-7B v0.2 (GQA 32/8, rope_theta 1e6)", "mistral", "MistralForCausalLM", 4096, 14336,
           32, 32, 8, 32000, 32768, 1e-5, 1000000.0, 1, 2),
     .builtin_tokenizer = 1},
    {SHAPE("llama3-8b", "Llama-3-8B (GQA 32/8, vocab 128256; no tokenizer unless --tokenizer)", "llama",
           "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128256, 8192, 1e-5, 500000.0, 128000, 128001)},
    {SHAPE("llama3.2-1b", "Llama-3.2-1B (GQA 32/8, tied head, llama3 rope scaling)", "llama",
           "LlamaForCausalLM", 2048, 8192, 16, 32, 8, 128256, 131072, 1e-5, 500000.0, 128000, 128001),
     .tied = 1, .rope_type = "llama3", .rope_factor = 32.0, .rope_low = 1.0, .rope_high = 4.0, .rope_orig = 8192},
    {SHAPE("qwen2.5-0.5b",
           "Qwen2.5-0.5B (GQA 14/2, q/k/v biases, tied head; no tokenizer unless --tokenizer)",
           "qwen2", "Qwen2ForCausalLM", 896, 4864, 24, 14, 2, 151936, 32768, 1e-6, 1000000.0, 151643, 151643),
     .tied = 1, .qkv_bias = 1},
    {SHAPE("mistral-nemo-12b",
           "Mistral-Nemo-12B (GQA 32/8, head_dim 128 of 5120; vocab 131072, no tokenizer unless "
           "--tokenizer)",
           "mistral", "MistralForCausalLM", 5120, 14336, 40, 32, 8, 131072, 1024000, 1e-5, 1000000.0, 1, 2),
     .head_dim = 128},
    {SHAPE("tiny-qwen2",
           "test shape: tiny with q/k/v biases and a tied head (Qwen2ForCausalLM; vocab from --tokenizer, else 512)",
           "qwen2", "Qwen2ForCausalLM", 64, 172, 2, 4, 2, 512, 256, 1e-6, 1000000.0, 1, 2),
     .vocab_from_tokenizer = 1, .builtin_tokenizer = 1, .tied = 1, .qkv_bias = 1},
    {SHAPE("tiny-hd",
           "test shape: tiny with head_dim 32 over 4 heads, q and o 128 wide (Mistral-Nemo's kind; vocab from "
           "--tokenizer, else 512)",
           "mistral", "MistralForCausalLM", 64, 172, 2, 4, 2, 512, 256, 1e-5, 1000000.0, 1, 2),
     .vocab_from_tokenizer = 1, .builtin_tokenizer = 1, .head_dim = 32},
};
#undef SHAPE

#define N_SHAPES ((int32_t)(sizeof shapes / sizeof shapes[0]))

const vz_synth_shape *vz_synth_find(const char *name) {
    for (int32_t i = 0; name && i < N_SHAPES; i++)
        if (strcmp(shapes[i].name, name) == 0) return &shapes[i];
    return NULL;
}

int32_t vz_synth_n_shapes(void) { return N_SHAPES; }

vz_status vz_synth_shape_get(int32_t i, vz_synth_shape_info *out) {
    VZ_FAIL_IF(i < 0 || i >= N_SHAPES || !out, VZ_ERR_ARG, "synth shape %d out of range [0, %d)", (int)i,
               (int)N_SHAPES);
    const vz_synth_shape *s = &shapes[i];
    memset(out, 0, sizeof *out);
    out->name = s->name;
    out->description = s->description;
    out->arch = s->model_type;
    out->dim = s->dim;
    out->hidden_dim = s->hidden_dim;
    out->n_layers = s->n_layers;
    out->n_heads = s->n_heads;
    out->n_kv_heads = s->n_kv_heads;
    out->vocab_size = s->vocab_size;
    out->max_seq_len = s->max_pos;
    out->n_params = vz_synth_n_params(s, s->vocab_size);
    return VZ_OK;
}

uint64_t vz_synth_n_params(const vz_synth_shape *s, int32_t vocab) {
    uint64_t d = (uint64_t)s->dim, h = (uint64_t)s->hidden_dim, hd = (uint64_t)vz_synth_head_dim(s);
    uint64_t q = hd * (uint64_t)s->n_heads, kv = hd * (uint64_t)s->n_kv_heads;
    uint64_t layer = 2 * d + 2 * q * d + 2 * kv * d + 3 * d * h + (s->qkv_bias ? q + 2 * kv : 0);
    return (s->tied ? 1u : 2u) * (uint64_t)vocab * d + (uint64_t)s->n_layers * layer + d;
}

static void set_tensor(vz_synth_tensor *t, vz_synth_kind kind, int32_t layer, const char *sfx, vz_dtype dt,
                       int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    if (layer >= 0) snprintf(t->st.name, sizeof t->st.name, "model.layers.%d.%s", (int)layer, sfx);
    else snprintf(t->st.name, sizeof t->st.name, "%s", sfx);
    t->st.dtype = dt;
    t->st.ndim = cols > 0 ? 2 : 1;
    t->st.shape[0] = rows;
    t->st.shape[1] = cols > 0 ? cols : 0;
    t->kind = kind;
    t->layer = layer;
    t->n = (uint64_t)rows * (uint64_t)(cols > 0 ? cols : 1);
    t->bytes = t->n * (uint64_t)vz_dtype_size(dt);
}

vz_status vz_synth_tensors(const vz_synth_shape *s, int32_t vocab, vz_dtype dt, vz_synth_tensor **out, int32_t *n) {
    *out = NULL;
    VZ_FAIL_IF(vocab < 1 || vocab > (1 << 24), VZ_ERR_ARG, "synth %s: vocab_size %d out of range", s->name,
               (int)vocab);
    int32_t count = (s->qkv_bias ? 12 : 9) * s->n_layers + 3 - (s->tied != 0), k = 0;
    vz_synth_tensor *t = calloc((size_t)count, sizeof *t);
    VZ_FAIL_IF(!t, VZ_ERR_NOMEM, "synth %s: out of memory", s->name);
    int64_t d = s->dim, h = s->hidden_dim, hd = vz_synth_head_dim(s), q = hd * s->n_heads, kv = hd * s->n_kv_heads;
    set_tensor(&t[k++], VZ_SK_EMBED, -1, "model.embed_tokens.weight", dt, vocab, d);
    for (int32_t l = 0; l < s->n_layers; l++) {
        set_tensor(&t[k++], VZ_SK_NORM_ATTN, l, "input_layernorm.weight", dt, d, 0);
        set_tensor(&t[k++], VZ_SK_Q, l, "self_attn.q_proj.weight", dt, q, d);
        set_tensor(&t[k++], VZ_SK_K, l, "self_attn.k_proj.weight", dt, kv, d);
        set_tensor(&t[k++], VZ_SK_V, l, "self_attn.v_proj.weight", dt, kv, d);
        if (s->qkv_bias) {
            set_tensor(&t[k++], VZ_SK_BIAS, l, "self_attn.q_proj.bias", dt, q, 0);
            set_tensor(&t[k++], VZ_SK_BIAS, l, "self_attn.k_proj.bias", dt, kv, 0);
            set_tensor(&t[k++], VZ_SK_BIAS, l, "self_attn.v_proj.bias", dt, kv, 0);
        }
        set_tensor(&t[k++], VZ_SK_O, l, "self_attn.o_proj.weight", dt, d, q);
        set_tensor(&t[k++], VZ_SK_NORM_FFN, l, "post_attention_layernorm.weight", dt, d, 0);
        set_tensor(&t[k++], VZ_SK_GATE, l, "mlp.gate_proj.weight", dt, h, d);
        set_tensor(&t[k++], VZ_SK_UP, l, "mlp.up_proj.weight", dt, h, d);
        set_tensor(&t[k++], VZ_SK_DOWN, l, "mlp.down_proj.weight", dt, d, h);
    }
    set_tensor(&t[k++], VZ_SK_NORM_FINAL, -1, "model.norm.weight", dt, d, 0);
    if (!s->tied) set_tensor(&t[k++], VZ_SK_HEAD, -1, "lm_head.weight", dt, vocab, d);
    *out = t;
    *n = count;
    return VZ_OK;
}

static const char *torch_dtype(vz_dtype dt) {
    return dt == VZ_DTYPE_F32 ? "float32" : dt == VZ_DTYPE_F16 ? "float16" : "bfloat16";
}

char *vz_synth_config_json(const vz_synth_shape *s, int32_t vocab, vz_dtype dt) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString(s->architecture));
    const int qwen = strcmp(s->model_type, "qwen2") == 0;
    if (!qwen) cJSON_AddFalseToObject(o, "attention_bias");
    cJSON_AddNumberToObject(o, "bos_token_id", s->bos_id);
    cJSON_AddNumberToObject(o, "eos_token_id", s->eos_id);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    if (s->head_dim) cJSON_AddNumberToObject(o, "head_dim", s->head_dim);
    cJSON_AddNumberToObject(o, "hidden_size", s->dim);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "intermediate_size", s->hidden_dim);
    cJSON_AddNumberToObject(o, "max_position_embeddings", s->max_pos);
    cJSON_AddStringToObject(o, "model_type", s->model_type);
    cJSON_AddNumberToObject(o, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", s->n_kv_heads);
    if (strcmp(s->model_type, "llama") == 0) cJSON_AddNumberToObject(o, "pretraining_tp", 1);
    cJSON_AddNumberToObject(o, "rms_norm_eps", s->rms_eps);
    if (s->rope_type) {
        cJSON *r = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddNumberToObject(r, "factor", s->rope_factor);
        cJSON_AddNumberToObject(r, "high_freq_factor", s->rope_high);
        cJSON_AddNumberToObject(r, "low_freq_factor", s->rope_low);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", s->rope_orig);
        cJSON_AddStringToObject(r, "rope_type", s->rope_type);
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    cJSON_AddNumberToObject(o, "rope_theta", s->rope_theta);
    if (strcmp(s->model_type, "mistral") == 0) cJSON_AddNullToObject(o, "sliding_window");
    if (qwen) {
        cJSON_AddNumberToObject(o, "sliding_window", s->max_pos);
        cJSON_AddFalseToObject(o, "use_sliding_window");
        cJSON_AddNumberToObject(o, "max_window_layers", s->n_layers);
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", s->tied != 0);
    cJSON_AddStringToObject(o, "torch_dtype", torch_dtype(dt));
    cJSON_AddStringToObject(o, "transformers_version", "4.40.0");
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddNumberToObject(o, "vocab_size", vocab);
    cJSON_AddStringToObject(o, "_vramzip_synthetic", s->name);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    return txt;
}

char *vz_synth_generation_json(const vz_synth_shape *s) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "bos_token_id", s->bos_id);
    cJSON_AddNumberToObject(o, "eos_token_id", s->eos_id);
    cJSON_AddStringToObject(o, "transformers_version", "4.40.0");
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    return txt;
}
