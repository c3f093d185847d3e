/*
 * safetensors_write.c - see safetensors_write.h. The header is built with
 * cJSON in tensor order after {"__metadata__":{"format":"pt"}} and padded
 * with spaces, as the reference Rust/Python writers do, so every reader that
 * checks "offsets contiguous and covering the whole buffer" accepts it.
 */
#include "format/safetensors_write.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"

struct vz_st_writer {
    vz_wfile f;
    uint64_t data_size; /* bytes of data the header declares */
    uint64_t written;   /* data bytes written so far */
};

const char *vz_st_dtype_name(vz_dtype d) {
    switch (d) {
    case VZ_DTYPE_F32: return "F32";
    case VZ_DTYPE_F16: return "F16";
    case VZ_DTYPE_BF16: return "BF16";
    }
    return "?";
}

uint64_t vz_st_tensor_bytes(const vz_st_tensor *t) {
    if (t->ndim < 1 || t->ndim > 4) return 0;
    uint64_t n = (uint64_t)vz_dtype_size(t->dtype);
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] < 1 || vz_mul_ovf(n, (uint64_t)t->shape[i], &n)) return 0;
    return n;
}

static cJSON *tensor_json(const vz_st_tensor *t, uint64_t begin, uint64_t end) {
    cJSON *o = cJSON_CreateObject();
    cJSON *shape = cJSON_CreateArray();
    cJSON *offs = cJSON_CreateArray();
    if (!o || !shape || !offs) {
        cJSON_Delete(o);
        cJSON_Delete(shape);
        cJSON_Delete(offs);
        return NULL;
    }
    cJSON_AddItemToObject(o, "dtype", cJSON_CreateString(vz_st_dtype_name(t->dtype)));
    for (int32_t i = 0; i < t->ndim; i++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
    cJSON_AddItemToObject(o, "shape", shape);
    /* offsets stay below 2^53, so doubles print them exactly */
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)begin));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)end));
    cJSON_AddItemToObject(o, "data_offsets", offs);
    return o;
}

static vz_status build_json(const vz_st_tensor *t, int32_t n, cJSON *root, uint64_t *data_size) {
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    VZ_FAIL_IF(!meta || !cJSON_AddStringToObject(meta, "format", "pt"), VZ_ERR_NOMEM, "safetensors header");
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t b = vz_st_tensor_bytes(&t[i]), end;
        VZ_FAIL_IF(b == 0, VZ_ERR_SHAPE, "tensor %s: invalid shape", t[i].name);
        VZ_FAIL_IF(!t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0, VZ_ERR_ARG, "tensor %d: invalid name '%s'",
                   (int)i, t[i].name);
        VZ_FAIL_IF(cJSON_GetObjectItemCaseSensitive(root, t[i].name), VZ_ERR_ARG, "tensor %s: duplicate name",
                   t[i].name);
        VZ_FAIL_IF(vz_add_ovf(off, b, &end) || end > (1ull << 53), VZ_ERR_NOMEM, "tensor %s: data too large",
                   t[i].name);
        cJSON *o = tensor_json(&t[i], off, end);
        VZ_FAIL_IF(!o, VZ_ERR_NOMEM, "safetensors header");
        cJSON_AddItemToObject(root, t[i].name, o);
        off = end;
    }
    *data_size = off;
    return VZ_OK;
}

vz_status vz_st_header(const vz_st_tensor *t, int32_t n, char **json, uint64_t *json_len, uint64_t *data_size) {
    *json = NULL;
    VZ_FAIL_IF(n < 0 || (n > 0 && !t), VZ_ERR_ARG, "safetensors header: bad tensor list");
    cJSON *root = cJSON_CreateObject();
    VZ_FAIL_IF(!root, VZ_ERR_NOMEM, "safetensors header");
    vz_status s = build_json(t, n, root, data_size);
    char *txt = s == VZ_OK ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (s != VZ_OK) return s;
    VZ_FAIL_IF(!txt, VZ_ERR_NOMEM, "safetensors header");
    size_t len = strlen(txt), padded = len + (8 - (8 + len) % 8) % 8;
    char *out = realloc(txt, padded + 1);
    if (!out) {
        free(txt);
        return VZ_FAIL(VZ_ERR_NOMEM, "safetensors header");
    }
    memset(out + len, ' ', padded - len);
    out[padded] = '\0';
    *json = out;
    *json_len = padded;
    return VZ_OK;
}

vz_status vz_st_writer_open(vz_st_writer **out, const char *path, const vz_st_tensor *t, int32_t n) {
    *out = NULL;
    char *json = NULL;
    uint64_t len = 0, data = 0;
    vz_status s = vz_st_header(t, n, &json, &len, &data);
    if (s != VZ_OK) {
        vz_error_prefix("%s", path);
        return s;
    }
    vz_st_writer *w = calloc(1, sizeof *w);
    if (!w) {
        free(json);
        return VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", path);
    }
    w->data_size = data;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(len >> (8 * i));
    s = vz_wfile_open(&w->f, path);
    if (s == VZ_OK) s = vz_wfile_write(&w->f, le, 8);
    if (s == VZ_OK) s = vz_wfile_write(&w->f, json, len);
    free(json);
    if (s != VZ_OK) {
        vz_st_writer_abort(w);
        return s;
    }
    *out = w;
    return VZ_OK;
}

vz_status vz_st_writer_write(vz_st_writer *w, const void *p, uint64_t n) {
    VZ_FAIL_IF(n > w->data_size - w->written, VZ_ERR_ARG, "%s: %llu data bytes more than the header declares",
               w->f.final, (unsigned long long)(w->written + n - w->data_size));
    VZ_TRY(vz_wfile_write(&w->f, p, n));
    w->written += n;
    return VZ_OK;
}

vz_status vz_st_writer_commit(vz_st_writer *w) {
    VZ_FAIL_IF(!w, VZ_ERR_ARG, "safetensors writer is NULL");
    if (w->written != w->data_size) {
        vz_status s = VZ_FAIL(VZ_ERR_ARG, "%s: %llu of %llu data bytes written", w->f.final,
                              (unsigned long long)w->written, (unsigned long long)w->data_size);
        vz_st_writer_abort(w);
        return s;
    }
    vz_status s = vz_wfile_commit(&w->f);
    vz_wfile_abort(&w->f);
    free(w);
    return s;
}

void vz_st_writer_abort(vz_st_writer *w) {
    if (!w) return;
    vz_wfile_abort(&w->f);
    free(w);
}
