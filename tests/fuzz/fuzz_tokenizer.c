/*
 * fuzz_tokenizer.c - fuzz target for the tokenizer readers: the bytes are
 * parsed as a SentencePiece tokenizer.model, as a llama2.c tokenizer.bin and
 * as a tokenizer.json (byte-level BPE);
 * a tokenizer that loads then encodes a fixed odd string and the input's own
 * tail, and streams the ids back through the detokenizer, whose output must
 * always be valid UTF-8. Must never crash; traps on an invariant broken.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

int vz_fuzz_tokenizer(const uint8_t *data, size_t size);

static int valid_utf8(const uint8_t *s, int32_t n) {
    for (int32_t i = 0; i < n;) {
        uint8_t c = s[i];
        int l = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (l == 0 || i + l > n) return 0;
        for (int k = 1; k < l; k++)
            if ((s[i + k] & 0xc0) != 0x80) return 0;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) || (c == 0xf0 && s[i + 1] < 0x90) ||
            (c == 0xf4 && s[i + 1] > 0x8f))
            return 0;
        i += l;
    }
    return 1;
}

static void roundtrip(const vz_tokenizer *t, const char *text, size_t len) {
    int32_t ids[512], n = 0;
    if (vz_tokenizer_encode(t, text, len, 1, ids, 512, &n) != VZ_OK) return;
    vz_detok d;
    vz_detok_init(&d, t);
    char buf[256];
    for (int32_t i = 0; i <= n; i++) {
        if (ids[i < n ? i : 0] < 0 || ids[i < n ? i : 0] >= vz_tokenizer_vocab_size(t)) __builtin_trap();
        int32_t r = i < n ? vz_detok_next(&d, ids[i], buf, sizeof buf) : vz_detok_flush(&d, buf, sizeof buf);
        if (r >= 0 && !valid_utf8((const uint8_t *)buf, r)) __builtin_trap();
    }
}

static void exercise(const vz_tokenizer *t, const uint8_t *data, size_t size) {
    static const char odd[] = "  Hello w\xc3\xb6rld\t\xf0\x9f\x98\x80 \xe6\x97\xa5 \xff\xc3  x ";
    roundtrip(t, odd, sizeof odd - 1);
    size_t tail = size < 64 ? size : 64;
    roundtrip(t, (const char *)data + size - tail, tail);
    for (int32_t id = -1; id <= vz_tokenizer_vocab_size(t); id++) (void)vz_tokenizer_piece(t, id);
}

int vz_fuzz_tokenizer(const uint8_t *data, size_t size) {
    vz_tokenizer *t = NULL;
    if (vz_tokenizer_from_spm_model(&t, data, size, "fuzz.model") == VZ_OK) {
        exercise(t, data, size);
        vz_tokenizer_close(t);
    }
    if (vz_tokenizer_from_llama2c(&t, data, size, "fuzz.bin") == VZ_OK) {
        exercise(t, data, size);
        vz_tokenizer_close(t);
    }
    if (size > 0 && data[0] == '{' && vz_tokenizer_from_json(&t, data, size, "fuzz.json") == VZ_OK) {
        exercise(t, data, size);
        vz_tokenizer_close(t);
    }
    return 0;
}
