/*
 * safetensors.c - safetensors parser (see safetensors.h; format from the
 * huggingface/safetensors README). Only F32, F16 and BF16 tensors of 1 to 4
 * positive dimensions are accepted; offsets are checked against the buffer
 * and against shape * element size, names must be unique.
 */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "core/io.h"

#define ST_MAX_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

/* A JSON number that is a whole value in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d) return 0;
    *v = (uint64_t)d;
    return 1;
}

static vz_status parse_dtype(const cJSON *j, vz_dtype *d, const char *what, const char *name) {
    VZ_FAIL_IF(!cJSON_IsString(j), VZ_ERR_FORMAT, "%s: tensor %s: field 'dtype' is missing or not a string", what,
               name);
    const char *s = j->valuestring;
    if (!strcmp(s, "F32")) *d = VZ_DTYPE_F32;
    else if (!strcmp(s, "F16")) *d = VZ_DTYPE_F16;
    else if (!strcmp(s, "BF16")) *d = VZ_DTYPE_BF16;
    else return VZ_FAIL(VZ_ERR_UNSUPPORTED, "%s: tensor %s: unsupported dtype '%.32s'", what, name, s);
    return VZ_OK;
}

static vz_status parse_shape(const cJSON *j, vz_tensor *t, const char *what) {
    VZ_FAIL_IF(!cJSON_IsArray(j), VZ_ERR_FORMAT, "%s: tensor %s: field 'shape' is missing or not an array", what,
               t->name);
    int n = cJSON_GetArraySize(j);
    VZ_FAIL_IF(n < 1 || n > 4, VZ_ERR_UNSUPPORTED, "%s: tensor %s: field 'shape' has %d dims (1 to 4 supported)",
               what, t->name, n);
    int64_t shape[4];
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        uint64_t v = 0;
        VZ_FAIL_IF(!json_uint(e, &v) || v < 1, VZ_ERR_FORMAT,
                   "%s: tensor %s: field 'shape' dim %d is not a positive integer", what, t->name, i);
        shape[i++] = (int64_t)v;
    }
    VZ_FAIL_IF(vz_tensor_set_shape(t, n, shape) != 0, VZ_ERR_FORMAT, "%s: tensor %s: field 'shape' is too large",
               what, t->name);
    return VZ_OK;
}

static vz_status parse_offsets(const cJSON *j, vz_tensor *t, const uint8_t *buf, uint64_t buf_size,
                               const char *what) {
    uint64_t b = 0, e = 0, need = 0;
    VZ_FAIL_IF(!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2 || !json_uint(j->child, &b) ||
                   !json_uint(j->child->next, &e),
               VZ_ERR_FORMAT, "%s: tensor %s: field 'data_offsets' is not [begin, end]", what, t->name);
    VZ_FAIL_IF(b > e, VZ_ERR_FORMAT, "%s: tensor %s: field 'data_offsets' begin %llu > end %llu", what, t->name,
               (unsigned long long)b, (unsigned long long)e);
    VZ_FAIL_IF(e > buf_size, VZ_ERR_TRUNCATED, "%s: tensor %s: field 'data_offsets' end %llu > data size %llu",
               what, t->name, (unsigned long long)e, (unsigned long long)buf_size);
    VZ_FAIL_IF(vz_mul_ovf((uint64_t)t->rows * (uint64_t)t->cols, (uint64_t)vz_dtype_size(t->dtype), &need),
               VZ_ERR_FORMAT, "%s: tensor %s: field 'shape' overflows", what, t->name);
    VZ_FAIL_IF(e - b != need, VZ_ERR_FORMAT,
               "%s: tensor %s: field 'data_offsets' spans %llu bytes, shape and dtype need %llu", what, t->name,
               (unsigned long long)(e - b), (unsigned long long)need);
    t->data = buf + b;
    t->size = need;
    return VZ_OK;
}

static vz_status parse_entry(const cJSON *j, vz_tensor *t, const uint8_t *buf, uint64_t buf_size,
                             const char *what) {
    memset(t, 0, sizeof *t);
    size_t len = strlen(j->string);
    VZ_FAIL_IF(len == 0 || len >= VZ_NAME_MAX, VZ_ERR_FORMAT, "%s: tensor name '%.40s' is empty or longer than %d",
               what, j->string, VZ_NAME_MAX - 1);
    memcpy(t->name, j->string, len + 1);
    VZ_FAIL_IF(!cJSON_IsObject(j), VZ_ERR_FORMAT, "%s: tensor %s: entry is not an object", what, t->name);
    VZ_TRY(parse_dtype(cJSON_GetObjectItemCaseSensitive(j, "dtype"), &t->dtype, what, t->name));
    VZ_TRY(parse_shape(cJSON_GetObjectItemCaseSensitive(j, "shape"), t, what));
    VZ_TRY(parse_offsets(cJSON_GetObjectItemCaseSensitive(j, "data_offsets"), t, buf, buf_size, what));
    t->codec = VZ_CODEC_raw;
    return VZ_OK;
}

static vz_status parse_json(vz_st_file *out, const cJSON *root, const uint8_t *buf, uint64_t buf_size,
                            const char *what) {
    VZ_FAIL_IF(!cJSON_IsObject(root), VZ_ERR_FORMAT, "%s: header JSON is not an object", what);
    int32_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") != 0) n++;
    }
    out->tensors = calloc(n ? (size_t)n : 1, sizeof *out->tensors);
    VZ_FAIL_IF(!out->tensors, VZ_ERR_NOMEM, "%s: out of memory for %d tensors", what, (int)n);
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            VZ_FAIL_IF(!cJSON_IsObject(e), VZ_ERR_FORMAT, "%s: field '__metadata__' is not an object", what);
            continue;
        }
        VZ_TRY(parse_entry(e, &out->tensors[out->n], buf, buf_size, what));
        out->n++;
    }
    const char *dup = vz_tensors_find_dup(out->tensors, out->n);
    VZ_FAIL_IF(dup, VZ_ERR_FORMAT, "%s: tensor %s is listed twice", what, dup);
    return VZ_OK;
}

vz_status vz_st_parse(vz_st_file *out, const uint8_t *p, uint64_t size, const char *what) {
    memset(out, 0, sizeof *out);
    VZ_FAIL_IF(size < 8, VZ_ERR_TRUNCATED, "%s: field 'header length': file is %llu bytes", what,
               (unsigned long long)size);
    uint64_t n = vz_le64(p);
    VZ_FAIL_IF(n > VZ_ST_MAX_HEADER, VZ_ERR_FORMAT, "%s: field 'header length' %llu exceeds %llu", what,
               (unsigned long long)n, (unsigned long long)VZ_ST_MAX_HEADER);
    VZ_FAIL_IF(n > size - 8, VZ_ERR_TRUNCATED, "%s: field 'header length' %llu > file size %llu - 8", what,
               (unsigned long long)n, (unsigned long long)size);
    char *json = malloc((size_t)n + 1); /* cJSON wants a terminated string; the mmap has none */
    VZ_FAIL_IF(!json, VZ_ERR_NOMEM, "%s: out of memory for the header", what);
    memcpy(json, p + 8, (size_t)n);
    json[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, 0);
    vz_status s;
    if (!root) {
        s = VZ_FAIL(VZ_ERR_FORMAT, "%s: header is not valid JSON (error near byte %lld)", what,
                    end ? (long long)(end - json) + 8 : -1LL);
    } else {
        s = parse_json(out, root, p + 8 + n, size - 8 - n, what);
    }
    cJSON_Delete(root);
    free(json);
    if (s != VZ_OK) vz_st_free(out);
    return s;
}

void vz_st_free(vz_st_file *f) {
    if (!f) return;
    free(f->tensors);
    f->tensors = NULL;
    f->n = 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const vz_tensor *const *)a)->name, (*(const vz_tensor *const *)b)->name);
}

const char *vz_tensors_find_dup(const vz_tensor *t, int32_t n) {
    if (n < 2) return NULL;
    const vz_tensor **v = malloc((size_t)n * sizeof *v);
    if (!v) return NULL;
    for (int32_t i = 0; i < n; i++) v[i] = &t[i];
    qsort(v, (size_t)n, sizeof *v, cmp_name);
    const char *dup = NULL;
    for (int32_t i = 1; i < n && !dup; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) dup = v[i]->name;
    free(v);
    return dup;
}
