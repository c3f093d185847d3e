/*
 * fuzz_llama2c.c - libFuzzer target for the llama2.c checkpoint reader:
 * parses the input as a whole llama2.c .bin from memory (header checks,
 * exact size, tensor layout) and binds the model when it parsed. Must never
 * crash, hang or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "format/llama2c.h"

int vz_fuzz_llama2c(const uint8_t *data, size_t size) {
    vz_model *m = calloc(1, sizeof *m);
    if (!m) return 0;
    snprintf(m->path, sizeof m->path, "fuzz.bin");
    /* the size must match the header exactly, so a model that parses holds its norms: bind is bounded by size */
    if (vz_llama2c_load(m, data, size, "fuzz.bin") == VZ_OK) (void)vz_model_bind(m);
    vz_model_close(m);
    return 0;
}
