/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader: parses the input as a
 * whole GGUF file from memory (metadata, tensor infos, tokenizer) and binds
 * the model when it parsed. Must never crash, hang or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "format/gguf.h"

int vz_fuzz_gguf(const uint8_t *data, size_t size) {
    vz_model *m = calloc(1, sizeof *m);
    if (!m) return 0;
    snprintf(m->path, sizeof m->path, "fuzz.gguf");
    if (vz_gguf_load(m, data, size, "fuzz.gguf") == VZ_OK) {
        const vz_config *c = &m->cfg;
        /* bind allocates the norms (dim * (2 layers + 1) floats); a model that
         * could bind stores them, so skip configs the input is too small to hold */
        if (c->dim > 0 && c->n_layers > 0 && (uint64_t)c->dim * (2 * (uint64_t)c->n_layers + 1) * 2 <= size)
            (void)vz_model_bind(m);
    }
    vz_model_close(m);
    return 0;
}
