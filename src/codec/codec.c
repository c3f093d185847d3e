/*
 * codec.c - the codec registry built from codecs.def.
 */
#include "codec/codec.h"

#include <stdlib.h>
#include <string.h>

#define VZ_CODEC(id, ident, name) extern const vz_codec vz_codec_##ident;
#include "codec/codecs.def"
#undef VZ_CODEC

static const vz_codec *const table[] = {
#define VZ_CODEC(id, ident, name) &vz_codec_##ident,
#include "codec/codecs.def"
#undef VZ_CODEC
};

void vz_blob_free(vz_blob *b) {
    if (!b) return;
    free(b->params);
    free(b->data);
    memset(b, 0, sizeof *b);
}

int vz_codec_count(void) { return (int)(sizeof table / sizeof table[0]); }

const vz_codec *vz_codec_at(int i) { return i >= 0 && i < vz_codec_count() ? table[i] : NULL; }

const vz_codec *vz_codec_by_id(uint16_t id) {
    for (int i = 0; i < vz_codec_count(); i++)
        if (table[i]->id == id) return table[i];
    return NULL;
}

const vz_codec *vz_codec_by_name(const char *name) {
    for (int i = 0; i < vz_codec_count(); i++)
        if (strcmp(table[i]->name, name) == 0) return table[i];
    return NULL;
}

vz_status vz_tensor_check(const vz_tensor *t) {
    const vz_codec *c = vz_codec_by_id(t->codec);
    VZ_FAIL_IF(!c, VZ_ERR_CODEC, "tensor %s: unknown codec id %u", t->name, (unsigned)t->codec);
    return c->check(t);
}
