/*
 * fuzz_vz.c - libFuzzer target for the .vz container reader (docs/format.md):
 * parses an image from memory, binds the model, runs every tensor's codec
 * check and decodes its first and last rows. Must never crash, leak or read
 * out of bounds. Each input runs twice: as is (with opts.check), and with
 * the section checksums recomputed so mutations reach the section parsers
 * and the codec checks. Seeds: tests/fuzz/corpus/vz/ (replayed by
 * test_container).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/codec.h"
#include "format/vz_write.h"
#include "core/io.h"
#include "model/model.h"

int vz_fuzz_vz(const uint8_t *data, size_t size);

static void decode_rows(const vz_tensor *t) {
    const vz_codec *c = vz_codec_by_id(t->codec);
    if (!c || vz_tensor_check(t) != VZ_OK || t->cols > (1 << 20)) return;
    float *f = malloc(sizeof(float) * (size_t)t->cols);
    uint8_t *b = malloc(4 * (size_t)t->cols);
    if (f && b) {
        int64_t rows[2] = {0, t->rows - 1};
        for (int k = 0; k < 2; k++) {
            if (c->decode_ref(t, rows[k], rows[k] + 1, b) != VZ_OK) break;
            c->decode_f32(t, rows[k], rows[k] + 1, f);
        }
    }
    free(f);
    free(b);
}

/* Rewrites every in-bounds section checksum and the table checksum. */
static void fix_sums(uint8_t *p, size_t size) {
    if (size < VZ_HEADER_MIN) return;
    uint64_t tab = vz_le64(p + 24), n = vz_le32(p + 32);
    if (n > VZ_MAX_SECTIONS || tab > size || n * VZ_SECTION_ENTRY > size - tab) return;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *e = p + tab + i * VZ_SECTION_ENTRY;
        uint64_t off = vz_le64(e + 8), sz = vz_le64(e + 16), h;
        if (off > size || sz > size - off) continue;
        h = XXH64(p + off, (size_t)sz, 0);
        memcpy(e + 24, &h, 8); /* little-endian host, as everywhere in vramzip */
    }
    uint64_t h = XXH64(p + tab, (size_t)(n * VZ_SECTION_ENTRY), 0);
    memcpy(p + 40, &h, 8);
}

static void run(const uint8_t *data, size_t size, int check) {
    vz_model *m = calloc(1, sizeof *m);
    if (!m) return;
    snprintf(m->path, sizeof m->path, "fuzz.vz");
    vz_model_opts o;
    vz_model_opts_default(&o);
    o.check = check;
    if (vz_read_vz_mem(m, data, size, "fuzz.vz", &o) == VZ_OK) {
        for (int32_t i = 0; i < m->n_tensors; i++) decode_rows(&m->tensors[i]);
        vz_model_bind(m);
    }
    vz_model_close(m);
}

int vz_fuzz_vz(const uint8_t *data, size_t size) {
    run(data, size, 1);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    fix_sums(copy, size);
    run(copy, size, 0);
    free(copy);
    return 0;
}
