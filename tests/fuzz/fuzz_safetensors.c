/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors parser: the
 * input is one whole .safetensors file held in memory. Must never crash,
 * hang or leak; every tensor it accepts must lie inside the input.
 */
#include <stdint.h>
#include <stdlib.h>

#include "format/safetensors.h"

int vz_fuzz_safetensors(const uint8_t *data, size_t size) {
    vz_st_file f;
    if (vz_st_parse(&f, data, size, "fuzz.safetensors") == VZ_OK) {
        for (int32_t i = 0; i < f.n; i++) {
            const vz_tensor *t = &f.tensors[i];
            if (t->data < data || t->size > size || t->data + t->size > data + size) abort();
        }
        vz_st_free(&f);
    }
    return 0;
}
