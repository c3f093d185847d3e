/*
 * cmd_inspect.c - `vramzip inspect FILE [--json]`: one line per tensor (name,
 * shape, source dtype, codec, encoded bytes, bits/weight, Shannon entropy of
 * the source exponent field, '-' for lossy codecs) and totals with the ratio
 * against bf16 (2 bytes per weight). Works on every model format.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip inspect MODEL [--json] [-z TOKENIZER]\n\n"
               "Lists every tensor: shape, source dtype, codec, encoded bytes, bits per weight\n"
               "and the Shannon entropy (bits) of the exponent field of the source elements\n"
               "('-' for lossy codecs). Totals compare with bf16 (2 bytes per weight).\n"
               "  --json   one JSON object: {model, tensors: [{name, shape, dtype, codec, bytes,\n"
               "           bits_per_weight, exp_entropy}], totals}\n");
}

typedef struct totals {
    uint64_t params, bytes;
    double ent_sum; /* sum of entropy * elements over tensors with a value */
    uint64_t ent_params;
} totals;

static void shape_str(const vz_tensor_info *ti, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < ti->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? "x" : "", (long long)ti->shape[d]);
}

static cJSON *json_tensor(const vz_tensor_info *ti, const vz_tensor_stats *st) {
    cJSON *o = cJSON_CreateObject(), *sh = cJSON_AddArrayToObject(o, "shape");
    cJSON_AddStringToObject(o, "name", ti->name);
    for (int d = 0; d < ti->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ti->shape[d]));
    cJSON_AddStringToObject(o, "dtype", vz_dtype_name(ti->dtype));
    cJSON_AddStringToObject(o, "codec", ti->codec_name);
    cJSON_AddNumberToObject(o, "bytes", (double)st->encoded_bytes);
    cJSON_AddNumberToObject(o, "params", (double)st->n_elements);
    cJSON_AddNumberToObject(o, "bits_per_weight", st->bits_per_weight);
    if (st->exp_entropy >= 0) cJSON_AddNumberToObject(o, "exp_entropy", st->exp_entropy);
    else cJSON_AddNullToObject(o, "exp_entropy");
    return o;
}

static int inspect(vz_model *m, const char *path, int json) {
    vz_model_info info;
    vz_model_get_info(m, &info);
    cJSON *root = json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (json) {
        cJSON_AddStringToObject(root, "model", path);
        cJSON_AddStringToObject(root, "format", info.format);
        cJSON_AddStringToObject(root, "arch", info.arch);
        if (info.rope_scaling[0]) cJSON_AddStringToObject(root, "rope_scaling", info.rope_scaling);
        cJSON_AddBoolToObject(root, "qkv_bias", info.qkv_bias != 0);
        cJSON_AddNumberToObject(root, "head_dim", info.head_dim);
        const char *ct = vz_model_chat_template(m), *cf = vz_model_chat_format(m);
        if (ct) cJSON_AddStringToObject(root, "chat_format", cf ? cf : "unrecognised");
        arr = cJSON_AddArrayToObject(root, "tensors");
    } else {
        printf("%s: format %s, %s, dim %d, %d layers, vocab %d%s", path, info.format, info.arch, info.dim,
               info.n_layers, info.vocab_size, info.tied_embeddings ? ", tied head" : "");
        if (info.rope_factor > 0) printf(", rope_scaling %s x%g", info.rope_scaling, (double)info.rope_factor);
        else if (info.rope_scaling[0]) printf(", rope_scaling %s", info.rope_scaling);
        printf("%s", info.qkv_bias ? ", q/k/v biases" : "");
        if ((int64_t)info.head_dim * info.n_heads != info.dim) printf(", head_dim %d", info.head_dim);
        const char *ct = vz_model_chat_template(m), *cf = vz_model_chat_format(m);
        if (ct) printf(", chat template (%s)", cf ? cf : "not a built-in format: name one with run --chat-template");
        printf("\n");
        printf("%-48s %-14s %-5s %-13s %12s %7s %7s\n", "tensor", "shape", "dtype", "codec", "bytes", "bits/w",
               "exp.H");
    }
    totals t = {0};
    for (int32_t i = 0; i < vz_model_n_tensors(m); i++) {
        vz_tensor_info ti;
        vz_tensor_stats st;
        vz_status s = vz_model_tensor_info(m, i, &ti);
        if (s == VZ_OK) s = vz_model_tensor_stats(m, i, &st);
        if (s != VZ_OK) {
            cJSON_Delete(root);
            return cli_fail("inspect", s);
        }
        t.params += st.n_elements;
        t.bytes += st.encoded_bytes;
        if (st.exp_entropy >= 0) {
            t.ent_sum += st.exp_entropy * (double)st.n_elements;
            t.ent_params += st.n_elements;
        }
        if (json) {
            cJSON_AddItemToArray(arr, json_tensor(&ti, &st));
            continue;
        }
        char shape[64], ent[16] = "-";
        shape_str(&ti, shape, sizeof shape);
        if (st.exp_entropy >= 0) snprintf(ent, sizeof ent, "%.3f", st.exp_entropy);
        printf("%-48s %-14s %-5s %-13s %12llu %7.3f %7s\n", ti.name, shape, vz_dtype_name(ti.dtype), ti.codec_name,
               (unsigned long long)st.encoded_bytes, st.bits_per_weight, ent);
    }
    double bpw = t.params ? 8.0 * (double)t.bytes / (double)t.params : 0;
    double ratio = t.bytes ? 2.0 * (double)t.params / (double)t.bytes : 0;
    if (json) {
        cJSON *tot = cJSON_AddObjectToObject(root, "totals");
        cJSON_AddNumberToObject(tot, "tensors", vz_model_n_tensors(m));
        cJSON_AddNumberToObject(tot, "params", (double)t.params);
        cJSON_AddNumberToObject(tot, "bytes", (double)t.bytes);
        cJSON_AddNumberToObject(tot, "bf16_bytes", 2.0 * (double)t.params);
        cJSON_AddNumberToObject(tot, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(tot, "ratio_vs_bf16", ratio);
        char *s = cJSON_Print(root);
        if (s) puts(s);
        free(s);
        cJSON_Delete(root);
        return 0;
    }
    printf("total: %d tensors, %llu weights, %llu bytes, %.3f bits/weight, %.3fx vs bf16 (%llu bytes)",
           vz_model_n_tensors(m), (unsigned long long)t.params, (unsigned long long)t.bytes, bpw, ratio,
           (unsigned long long)(2 * t.params));
    if (t.ent_params)
        printf(", mean exponent entropy %.3f bits (over %llu weights of lossless tensors)", t.ent_sum / (double)t.ent_params,
               (unsigned long long)t.ent_params);
    printf("\n");
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "-z") || !strcmp(a, "--tokenizer")) {
            if (!(mo.tokenizer_path = cli_value("inspect", argc, argv, &i))) return 2;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("inspect", "unknown option '%s'", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_usage_error("inspect", "more than one model ('%s', '%s')", path, a);
        }
    }
    if (!path) return cli_usage_error("inspect", "no model given");
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, path, &mo);
    if (s != VZ_OK) return cli_fail("inspect", s);
    int rc = inspect(m, path, json);
    vz_model_close(m);
    return rc;
}
