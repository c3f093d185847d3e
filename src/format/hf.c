/*
 * hf.c - Hugging Face checkpoint directory reader: config.json (transformers'
 * LlamaConfig / MistralConfig / Qwen2Config fields, rope_scaling),
 * model.safetensors or a sharded model.safetensors.index.json (weight_map ->
 * shard files), and an optional tokenizer.model, else tokenizer.json
 * (byte-level BPE). Tensor names are already canonical; tensors stay in the
 * mmaps (codec raw). HF checkpoints use rotate-half RoPE (rope_interleaved 0).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/hf.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define HF_MAX_JSON (64ull << 20)

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static vz_status join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    VZ_FAIL_IF(n < 0 || (size_t)n >= cap, VZ_ERR_ARG, "%s/%s: path too long", dir, name);
    return VZ_OK;
}

/* Reads an integer field into *out; a missing field gives def unless required. */
static vz_status cfg_int(const cJSON *root, const char *key, int required, int64_t def, int64_t lo, int32_t *out,
                         const char *what) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        VZ_FAIL_IF(required, VZ_ERR_FORMAT, "%s: field '%s' is missing", what, key);
        *out = (int32_t)def;
        return VZ_OK;
    }
    if (cJSON_IsArray(j) && cJSON_GetArraySize(j) > 0) j = j->child; /* eos_token_id: [2, 32000] */
    double d = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    VZ_FAIL_IF(!(d >= (double)lo && d <= 2147483647.0) || d != floor(d), VZ_ERR_FORMAT,
               "%s: field '%s' is not an integer >= %lld", what, key, (long long)lo);
    *out = (int32_t)d;
    return VZ_OK;
}

/* Every id of an "eos_token_id" list (Llama 3.1 instruct: [128001, 128008,
 * 128009]) as stop ids; a single id too. */
static vz_status cfg_eos_list(vz_config *c, const cJSON *root, const char *what) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id"), *e;
    if (!j || cJSON_IsNull(j)) return VZ_OK;
    if (!cJSON_IsArray(j)) {
        int32_t id = -1;
        VZ_TRY(cfg_int(root, "eos_token_id", 0, -1, 0, &id, what));
        vz_config_add_eos(c, id);
        return VZ_OK;
    }
    cJSON_ArrayForEach(e, j) {
        VZ_FAIL_IF(!cJSON_IsNumber(e) || !(e->valuedouble >= 0 && e->valuedouble <= 2147483647.0) ||
                       e->valuedouble != floor(e->valuedouble),
                   VZ_ERR_FORMAT, "%s: field 'eos_token_id' has an entry that is not an integer >= 0", what);
        vz_config_add_eos(c, (int32_t)e->valuedouble);
    }
    return VZ_OK;
}

static vz_status cfg_float(const cJSON *root, const char *key, int required, double def, float *out,
                           const char *what) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j || cJSON_IsNull(j)) {
        VZ_FAIL_IF(required, VZ_ERR_FORMAT, "%s: field '%s' is missing", what, key);
        *out = (float)def;
        return VZ_OK;
    }
    VZ_FAIL_IF(!cJSON_IsNumber(j) || !isfinite(j->valuedouble), VZ_ERR_FORMAT, "%s: field '%s' is not a number",
               what, key);
    *out = (float)j->valuedouble;
    return VZ_OK;
}

static vz_status cfg_arch(vz_config *c, const cJSON *root, const char *what) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    VZ_FAIL_IF(!cJSON_IsArray(a) || !cJSON_IsString(a->child), VZ_ERR_FORMAT,
               "%s: field 'architectures' is missing or not a list of strings", what);
    const char *s = a->child->valuestring;
    if (!strcmp(s, "LlamaForCausalLM")) snprintf(c->arch, sizeof c->arch, "llama");
    else if (!strcmp(s, "MistralForCausalLM")) snprintf(c->arch, sizeof c->arch, "mistral");
    else if (!strcmp(s, "Qwen2ForCausalLM")) snprintf(c->arch, sizeof c->arch, "qwen2"), c->qkv_bias = 1;
    else return VZ_FAIL(VZ_ERR_UNSUPPORTED, "%s: field 'architectures' = '%.64s' is not supported "
                        "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", what, s);
    return VZ_OK;
}

/* rope_scaling: null, {"rope_type": "linear", "factor"} or Llama 3.1's
 * {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"} ("type" in older files); other kinds
 * (dynamic, yarn, longrope) are refused. */
vz_status vz_hf_rope_scaling(vz_config *c, const void *root, const char *what) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive((const cJSON *)root, "rope_scaling");
    if (!j || cJSON_IsNull(j)) return VZ_OK;
    VZ_FAIL_IF(!cJSON_IsObject(j), VZ_ERR_FORMAT, "%s: field 'rope_scaling' is not an object", what);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(j, "type");
    VZ_FAIL_IF(!cJSON_IsString(t), VZ_ERR_FORMAT, "%s: field 'rope_scaling.rope_type' is missing", what);
    vz_rope_scaling *r = &c->rope_scaling;
    if (!strcmp(t->valuestring, "default")) return VZ_OK;
    if (!strcmp(t->valuestring, "linear")) r->type = VZ_ROPE_LINEAR;
    else if (!strcmp(t->valuestring, "llama3")) r->type = VZ_ROPE_LLAMA3;
    else return VZ_FAIL(VZ_ERR_UNSUPPORTED,
                        "%s: field 'rope_scaling.rope_type' = '%.32s' is not supported (linear, llama3)", what,
                        t->valuestring);
    VZ_TRY(cfg_float(j, "factor", 1, 0, &r->factor, what));
    VZ_FAIL_IF(!(r->factor >= 1), VZ_ERR_FORMAT, "%s: field 'rope_scaling.factor' %g is below 1", what,
               (double)r->factor);
    if (r->type == VZ_ROPE_LLAMA3) {
        VZ_TRY(cfg_float(j, "low_freq_factor", 1, 0, &r->low_freq, what));
        VZ_TRY(cfg_float(j, "high_freq_factor", 1, 0, &r->high_freq, what));
        VZ_TRY(cfg_int(j, "original_max_position_embeddings", 1, 0, 1, &r->orig_ctx, what));
        VZ_FAIL_IF(!(r->low_freq > 0 && r->high_freq > r->low_freq), VZ_ERR_FORMAT,
                   "%s: fields 'rope_scaling.low_freq_factor' %g and 'high_freq_factor' %g: need 0 < low < high", what,
                   (double)r->low_freq, (double)r->high_freq);
    }
    return VZ_OK;
}

/* Options that would change the math; refused rather than silently ignored. */
static vz_status cfg_unsupported(const cJSON *root, const char *what) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    VZ_FAIL_IF(j && (!cJSON_IsString(j) || strcmp(j->valuestring, "silu") != 0), VZ_ERR_UNSUPPORTED,
               "%s: field 'hidden_act' must be \"silu\"", what);
    static const char *const bias[] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++) {
        j = cJSON_GetObjectItemCaseSensitive(root, bias[i]);
        VZ_FAIL_IF(cJSON_IsTrue(j), VZ_ERR_UNSUPPORTED, "%s: field '%s' = true is not supported", what, bias[i]);
    }
    return VZ_OK;
}

static vz_status cfg_fields(vz_config *c, const cJSON *root, const char *what) {
    VZ_TRY(cfg_arch(c, root, what));
    VZ_TRY(cfg_unsupported(root, what));
    VZ_TRY(cfg_int(root, "hidden_size", 1, 0, 1, &c->dim, what));
    VZ_TRY(cfg_int(root, "intermediate_size", 1, 0, 1, &c->hidden_dim, what));
    VZ_TRY(cfg_int(root, "num_hidden_layers", 1, 0, 1, &c->n_layers, what));
    VZ_TRY(cfg_int(root, "num_attention_heads", 1, 0, 1, &c->n_heads, what));
    VZ_TRY(cfg_int(root, "num_key_value_heads", 0, c->n_heads, 1, &c->n_kv_heads, what));
    VZ_TRY(cfg_int(root, "vocab_size", 1, 0, 1, &c->vocab_size, what));
    VZ_TRY(cfg_int(root, "max_position_embeddings", 1, 0, 1, &c->max_seq_len, what));
    VZ_TRY(cfg_int(root, "bos_token_id", 0, -1, 0, &c->bos_id, what));
    VZ_TRY(cfg_int(root, "eos_token_id", 0, -1, 0, &c->eos_id, what));
    VZ_TRY(cfg_eos_list(c, root, what));
    VZ_TRY(cfg_float(root, "rms_norm_eps", 1, 0, &c->rms_eps, what));
    VZ_TRY(cfg_float(root, "rope_theta", 0, 10000.0, &c->rope_theta, what));
    /* head_dim: hidden_size / num_attention_heads unless given (Mistral-Nemo: 128 of 5120 / 32; q and o
     * are then n_heads * head_dim wide) */
    const cJSON *hdj = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    VZ_FAIL_IF((!hdj || cJSON_IsNull(hdj)) && c->dim % c->n_heads != 0, VZ_ERR_FORMAT,
               "%s: field 'hidden_size' %d is not a multiple of num_attention_heads %d (and no head_dim)", what, c->dim,
               c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (hdj && !cJSON_IsNull(hdj)) VZ_TRY(cfg_int(root, "head_dim", 1, 0, 1, &c->head_dim, what));
    /* Mistral's sliding window equals full attention up to its length: cap the context there
     * (Qwen 2 names whether it uses one: use_sliding_window, false in its releases). */
    int32_t win = 0;
    VZ_TRY(cfg_int(root, "sliding_window", 0, 0, 1, &win, what));
    const cJSON *usw = cJSON_GetObjectItemCaseSensitive(root, "use_sliding_window");
    if (cJSON_IsFalse(usw)) win = 0;
    if (win > 0 && win < c->max_seq_len) c->max_seq_len = win;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(root, "tie_word_embeddings");
    VZ_FAIL_IF(tie && !cJSON_IsBool(tie), VZ_ERR_FORMAT, "%s: field 'tie_word_embeddings' is not a boolean", what);
    c->tied_embeddings = cJSON_IsTrue(tie);
    c->rope_interleaved = 0;
    return vz_hf_rope_scaling(c, root, what);
}

vz_status vz_hf_parse_config(vz_config *c, const char *text, size_t len, const char *what) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(text, len);
    VZ_FAIL_IF(!root, VZ_ERR_FORMAT, "%s: not valid JSON", what);
    vz_status s = cJSON_IsObject(root) ? cfg_fields(c, root, what)
                                       : VZ_FAIL(VZ_ERR_FORMAT, "%s: top level is not an object", what);
    cJSON_Delete(root);
    return s;
}

/* Maps one safetensors file and appends its tensors to m. */
static vz_status add_shard(vz_model *m, const char *path, vz_st_file *st) {
    memset(st, 0, sizeof *st);
    vz_map *map = NULL;
    VZ_TRY(vz_model_add_map(m, &map));
    VZ_TRY(vz_map_open(map, path));
    VZ_TRY(vz_st_parse(st, map->data, map->size, path));
    vz_tensor *t = realloc(m->tensors, ((size_t)m->n_tensors + (size_t)st->n + 1) * sizeof *t);
    if (!t) {
        vz_st_free(st);
        return VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", path);
    }
    m->tensors = t;
    memcpy(t + m->n_tensors, st->tensors, (size_t)st->n * sizeof *t);
    m->n_tensors += st->n;
    return VZ_OK;
}

static int st_has(const vz_st_file *st, const char *name) {
    for (int32_t i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name)) return 1;
    return 0;
}

/* Loads shard `file` and checks every weight_map entry naming it is present. */
static vz_status load_shard(vz_model *m, const char *dir, const cJSON *wmap, const char *file, const char *ipath) {
    VZ_FAIL_IF(!*file || file[0] == '.' || strchr(file, '/'), VZ_ERR_FORMAT,
               "%s: field 'weight_map' names shard '%.64s' outside the directory", ipath, file);
    char path[1200];
    VZ_TRY(join(path, sizeof path, dir, file));
    vz_st_file st;
    vz_status s = add_shard(m, path, &st);
    const cJSON *e;
    cJSON_ArrayForEach(e, wmap) {
        if (s != VZ_OK) break;
        if (strcmp(e->valuestring, file) == 0 && !st_has(&st, e->string))
            s = VZ_FAIL(VZ_ERR_NOT_FOUND, "%s: field 'weight_map' puts tensor %.128s in %s, which lacks it", ipath,
                        e->string, file);
    }
    vz_st_free(&st);
    return s;
}

static vz_status load_index(vz_model *m, const char *dir, const cJSON *root, const char *ipath) {
    const cJSON *wmap = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    VZ_FAIL_IF(!cJSON_IsObject(wmap) || !wmap->child, VZ_ERR_FORMAT,
               "%s: field 'weight_map' is missing, empty or not an object", ipath);
    const cJSON *e;
    cJSON_ArrayForEach(e, wmap) {
        VZ_FAIL_IF(!cJSON_IsString(e), VZ_ERR_FORMAT, "%s: field 'weight_map' entry %.128s is not a file name",
                   ipath, e->string);
    }
    const char *shards[VZ_MAX_MAPS]; /* each shard once, at its first mention */
    int n = 0;
    cJSON_ArrayForEach(e, wmap) {
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = !strcmp(shards[i], e->valuestring);
        if (seen) continue;
        VZ_FAIL_IF(n == VZ_MAX_MAPS, VZ_ERR_UNSUPPORTED, "%s: field 'weight_map' names more than %d shards", ipath,
                   VZ_MAX_MAPS);
        shards[n++] = e->valuestring;
        VZ_TRY(load_shard(m, dir, wmap, e->valuestring, ipath));
    }
    return VZ_OK;
}

static vz_status load_weights(vz_model *m, const char *dir) {
    char path[1200];
    VZ_TRY(join(path, sizeof path, dir, "model.safetensors.index.json"));
    if (!file_exists(path)) {
        VZ_TRY(join(path, sizeof path, dir, "model.safetensors"));
        vz_st_file st;
        VZ_TRY(add_shard(m, path, &st));
        vz_st_free(&st);
        return VZ_OK;
    }
    char *text = NULL;
    uint64_t len = 0;
    VZ_TRY(vz_read_file(path, &text, &len, HF_MAX_JSON));
    cJSON *root = cJSON_ParseWithLength(text, (size_t)len);
    vz_status s = root ? load_index(m, dir, root, path) : VZ_FAIL(VZ_ERR_FORMAT, "%s: not valid JSON", path);
    cJSON_Delete(root);
    free(text);
    return s;
}

static vz_status load_tokenizer(vz_model *m, const char *dir, const vz_model_opts *o) {
    char path[1200];
    if (o && o->tokenizer_path) {
        snprintf(path, sizeof path, "%s", o->tokenizer_path);
    } else {
        /* SentencePiece first: Llama 2 and Mistral ship both, and their
         * tokenizer.json is not byte-level; Llama 3 and Qwen 2 ship only the json. */
        VZ_TRY(join(path, sizeof path, dir, "tokenizer.model"));
        if (!file_exists(path)) VZ_TRY(join(path, sizeof path, dir, "tokenizer.json"));
        if (!file_exists(path)) return VZ_OK; /* a model without a tokenizer is still usable by ids */
    }
    VZ_TRY(vz_tokenizer_open(&m->tok, path));
    if (m->cfg.bos_id < 0) m->cfg.bos_id = vz_tokenizer_bos(m->tok);
    if (m->cfg.eos_id < 0) m->cfg.eos_id = vz_tokenizer_eos(m->tok);
    return VZ_OK;
}

/* The optional JSON object dir/name (path gets its path): *root NULL when
 * the file is absent; a file that is not a JSON object fails, naming it. */
static vz_status optional_json(const char *dir, const char *name, char *path, size_t cap, cJSON **root) {
    *root = NULL;
    VZ_TRY(join(path, cap, dir, name));
    if (!file_exists(path)) return VZ_OK;
    char *text = NULL;
    uint64_t len = 0;
    VZ_TRY(vz_read_file(path, &text, &len, HF_MAX_JSON));
    *root = cJSON_ParseWithLength(text, (size_t)len);
    free(text);
    if (cJSON_IsObject(*root)) return VZ_OK;
    cJSON_Delete(*root);
    *root = NULL;
    return VZ_FAIL(VZ_ERR_FORMAT, "%s: not a JSON object", path);
}

/* generation_config.json's eos_token_id (what transformers' generate stops
 * at: Llama 3 instruct's <|eot_id|>) joins the stop ids; the file is optional. */
static vz_status load_generation_config(vz_model *m, const char *dir) {
    char path[1200];
    cJSON *root = NULL;
    VZ_TRY(optional_json(dir, "generation_config.json", path, sizeof path, &root));
    vz_status s = root ? cfg_eos_list(&m->cfg, root, path) : VZ_OK;
    cJSON_Delete(root);
    return s;
}

/* tokenizer_config.json's chat_template (optional): a string, or a list of
 * {"name", "template"} of which "default" (else the first) is taken. */
static vz_status load_chat_template(vz_model *m, const char *dir) {
    char path[1200];
    cJSON *root = NULL;
    VZ_TRY(optional_json(dir, "tokenizer_config.json", path, sizeof path, &root));
    vz_status s = VZ_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsArray(t)) {
        const cJSON *e, *pick = NULL;
        cJSON_ArrayForEach(e, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (!pick || (cJSON_IsString(name) && !strcmp(name->valuestring, "default"))) pick = e;
        }
        t = pick ? cJSON_GetObjectItemCaseSensitive(pick, "template") : NULL;
        if (!cJSON_IsString(t)) s = VZ_FAIL(VZ_ERR_FORMAT, "%s: chat_template: a list without a template string", path);
    } else if (t && !cJSON_IsString(t) && !cJSON_IsNull(t)) {
        s = VZ_FAIL(VZ_ERR_FORMAT, "%s: chat_template is neither a string nor a list", path);
    }
    if (s == VZ_OK && cJSON_IsString(t)) s = vz_model_set_chat_template(m, t->valuestring, strlen(t->valuestring), path);
    cJSON_Delete(root);
    return s;
}

vz_status vz_read_hf(vz_model *m, const char *dir, const vz_model_opts *o) {
    snprintf(m->format, sizeof m->format, "hf");
    char path[1200];
    VZ_TRY(join(path, sizeof path, dir, "config.json"));
    char *text = NULL;
    uint64_t len = 0;
    VZ_TRY(vz_read_file(path, &text, &len, HF_MAX_JSON));
    vz_status s = vz_hf_parse_config(&m->cfg, text, (size_t)len, path);
    free(text);
    VZ_TRY(s);
    VZ_TRY(load_weights(m, dir));
    VZ_TRY(load_generation_config(m, dir));
    VZ_TRY(load_chat_template(m, dir));
    const char *dup = vz_tensors_find_dup(m->tensors, m->n_tensors);
    VZ_FAIL_IF(dup, VZ_ERR_FORMAT, "%s: tensor %s appears in two shards", dir, dup);
    return load_tokenizer(m, dir, o);
}
