/*
 * tensor.c - shape bookkeeping for vz_tensor.
 */
#include "core/tensor.h"

#include <string.h>

const char *vz_dtype_name(vz_dtype d) {
    switch (d) {
    case VZ_DTYPE_F32: return "f32";
    case VZ_DTYPE_F16: return "f16";
    case VZ_DTYPE_BF16: return "bf16";
    }
    return "?";
}

int vz_tensor_set_shape(vz_tensor *t, int32_t ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > 4) return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40)) return -1;
        if (__builtin_mul_overflow(n, shape[i], &n) || n > ((int64_t)1 << 40)) return -1;
    }
    t->ndim = ndim;
    memset(t->shape, 0, sizeof t->shape);
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->cols = shape[ndim - 1];
    t->rows = n / t->cols;
    return 0;
}
