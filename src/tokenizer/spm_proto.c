/*
 * spm_proto.c - reads a SentencePiece tokenizer.model: a protobuf ModelProto
 * (google/sentencepiece src/sentencepiece_model.proto) parsed with a small
 * bounds-checked wire-format reader, no protobuf library. Fields used:
 * pieces (1: piece 1, score 2, type 3); trainer_spec (2: model_type 3,
 * treat_whitespace_as_suffix 24, byte_fallback 35, unk_id 40, unk_surface 44,
 * bos_piece 46, eos_piece 47); normalizer_spec (3: name 1,
 * precompiled_charsmap 2, add_dummy_prefix 3, remove_extra_whitespaces 4,
 * escape_whitespaces 5).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct pb {
    const uint8_t *p;
    size_t size, pos;
    const char *what; /* file name */
    const char *msg;  /* message being read, for errors */
} pb;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static vz_status pb_varint(pb *b, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        VZ_FAIL_IF(b->pos >= b->size, VZ_ERR_TRUNCATED, "%s: %s: varint runs past the end at offset %zu", b->what,
                   b->msg, b->pos);
        uint8_t c = b->p[b->pos++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return VZ_OK;
    }
    return VZ_FAIL(VZ_ERR_FORMAT, "%s: %s: varint longer than 10 bytes at offset %zu", b->what, b->msg, b->pos);
}

static vz_status pb_key(pb *b, uint32_t *field, uint32_t *wire) {
    uint64_t k;
    VZ_TRY(pb_varint(b, &k));
    *field = (uint32_t)(k >> 3);
    *wire = (uint32_t)(k & 7);
    VZ_FAIL_IF(*field == 0 || (k >> 3) > 0x1fffffff, VZ_ERR_FORMAT, "%s: %s: invalid field number %llu at offset %zu",
               b->what, b->msg, (unsigned long long)(k >> 3), b->pos);
    return VZ_OK;
}

/* Reads the value of a field with wire type wire into v (varint, fixed) or
 * (p, n) (length-delimited), checked against the buffer. */
static vz_status pb_value(pb *b, uint32_t field, uint32_t wire, uint64_t *v, const uint8_t **p, size_t *n) {
    size_t left = b->size - b->pos;
    switch (wire) {
    case WT_VARINT: return pb_varint(b, v);
    case WT_I64:
    case WT_I32: {
        size_t w = wire == WT_I64 ? 8 : 4;
        VZ_FAIL_IF(left < w, VZ_ERR_TRUNCATED, "%s: %s field %u: %zu-byte value past the end", b->what, b->msg,
                   field, w);
        *v = 0;
        for (size_t i = 0; i < w; i++) *v |= (uint64_t)b->p[b->pos + i] << (8 * i);
        b->pos += w;
        return VZ_OK;
    }
    case WT_LEN:
        VZ_TRY(pb_varint(b, v));
        VZ_FAIL_IF(*v > b->size - b->pos, VZ_ERR_TRUNCATED,
                   "%s: %s field %u: length %llu exceeds the %zu bytes left (offset %zu)", b->what, b->msg, field,
                   (unsigned long long)*v, b->size - b->pos, b->pos);
        *p = b->p + b->pos;
        *n = (size_t)*v;
        b->pos += *n;
        return VZ_OK;
    default:
        return VZ_FAIL(VZ_ERR_FORMAT, "%s: %s field %u: unsupported wire type %u", b->what, b->msg, field, wire);
    }
}

/* One field as read: number f, wire type w, value v (varint, fixed) or
 * (s, sn) (length-delimited). */
typedef struct pb_field {
    uint32_t f, w;
    uint64_t v;
    const uint8_t *s;
    size_t sn;
} pb_field;

static vz_status pb_next(pb *b, pb_field *x) {
    x->v = 0, x->s = NULL, x->sn = 0;
    VZ_TRY(pb_key(b, &x->f, &x->w));
    return pb_value(b, x->f, x->w, &x->v, &x->s, &x->sn);
}

static vz_status pb_expect(const pb *b, const pb_field *x, uint32_t want, const char *name) {
    VZ_FAIL_IF(x->w != want, VZ_ERR_FORMAT, "%s: %s.%s (field %u): wire type %u, expected %u", b->what, b->msg, name,
               x->f, x->w, want);
    return VZ_OK;
}

static float f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct spm_piece {
    const char *s;
    uint32_t len;
    float score;
    int32_t type;
} spm_piece;

static vz_status parse_piece(const char *what, const uint8_t *p, size_t n, spm_piece *out) {
    pb b = {p, n, 0, what, "pieces"};
    out->s = NULL, out->len = 0, out->score = 0.0f, out->type = VZ_PIECE_NORMAL;
    while (b.pos < b.size) {
        pb_field x;
        VZ_TRY(pb_next(&b, &x));
        if (x.f == 1) {
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "piece"));
            VZ_FAIL_IF(x.sn > 65535, VZ_ERR_FORMAT, "%s: pieces.piece: length %zu is absurd", what, x.sn);
            out->s = (const char *)x.s, out->len = (uint32_t)x.sn;
        } else if (x.f == 2) {
            VZ_TRY(pb_expect(&b, &x, WT_I32, "score"));
            out->score = f32_bits((uint32_t)x.v);
        } else if (x.f == 3) {
            VZ_TRY(pb_expect(&b, &x, WT_VARINT, "type"));
            out->type = (int32_t)(uint32_t)x.v;
        }
    }
    return VZ_OK;
}

/* The TrainerSpec and NormalizerSpec fields we use, with proto defaults. */
typedef struct spm_spec {
    int32_t model_type, byte_fallback, ws_suffix, unk, bos, eos;
    const char *unk_surface;
    uint32_t unk_surface_len;
    const char *bos_piece, *eos_piece;
    uint32_t bos_len, eos_len;
    int32_t add_dummy_prefix, remove_extra_ws, escape_ws;
    char name[32];
    size_t charsmap_len;
} spm_spec;

static vz_status parse_trainer(const char *what, const uint8_t *p, size_t n, spm_spec *sp) {
    pb b = {p, n, 0, what, "trainer_spec"};
    while (b.pos < b.size) {
        pb_field x;
        VZ_TRY(pb_next(&b, &x));
        int32_t iv = (int32_t)(uint32_t)x.v;
        switch (x.f) {
        case 3: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "model_type")); sp->model_type = iv; break;
        case 24: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "treat_whitespace_as_suffix")); sp->ws_suffix = x.v != 0; break;
        case 35: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "byte_fallback")); sp->byte_fallback = x.v != 0; break;
        case 40: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "unk_id")); sp->unk = iv; break;
        case 44:
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "unk_surface"));
            sp->unk_surface = (const char *)x.s, sp->unk_surface_len = (uint32_t)(x.sn < 64 ? x.sn : 64);
            break;
        case 46:
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "bos_piece"));
            sp->bos_piece = (const char *)x.s, sp->bos_len = (uint32_t)(x.sn < 65536 ? x.sn : 65536);
            break;
        case 47:
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "eos_piece"));
            sp->eos_piece = (const char *)x.s, sp->eos_len = (uint32_t)(x.sn < 65536 ? x.sn : 65536);
            break;
        default: break;
        }
    }
    return VZ_OK;
}

static vz_status parse_normalizer(const char *what, const uint8_t *p, size_t n, spm_spec *sp) {
    pb b = {p, n, 0, what, "normalizer_spec"};
    while (b.pos < b.size) {
        pb_field x;
        VZ_TRY(pb_next(&b, &x));
        switch (x.f) {
        case 1:
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "name"));
            x.sn = x.sn < sizeof sp->name - 1 ? x.sn : sizeof sp->name - 1;
            memcpy(sp->name, x.s, x.sn);
            sp->name[x.sn] = '\0';
            break;
        case 2: VZ_TRY(pb_expect(&b, &x, WT_LEN, "precompiled_charsmap")); sp->charsmap_len = x.sn; break;
        case 3: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "add_dummy_prefix")); sp->add_dummy_prefix = x.v != 0; break;
        case 4: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "remove_extra_whitespaces")); sp->remove_extra_ws = x.v != 0; break;
        case 5: VZ_TRY(pb_expect(&b, &x, WT_VARINT, "escape_whitespaces")); sp->escape_ws = x.v != 0; break;
        default: break;
        }
    }
    return VZ_OK;
}

/* Pass 1: counts the pieces and reads the two specs. */
static vz_status scan_model(const char *what, const uint8_t *data, size_t size, spm_spec *sp, int32_t *n) {
    pb b = {data, size, 0, what, "ModelProto"};
    *n = 0;
    while (b.pos < b.size) {
        pb_field x;
        VZ_TRY(pb_next(&b, &x));
        if (x.f == 1) {
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "pieces"));
            VZ_FAIL_IF(++*n > VZ_TOK_MAX_VOCAB, VZ_ERR_FORMAT, "%s: more than %d pieces", what, VZ_TOK_MAX_VOCAB);
        } else if (x.f == 2) {
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "trainer_spec"));
            VZ_TRY(parse_trainer(what, x.s, x.sn, sp));
        } else if (x.f == 3) {
            VZ_TRY(pb_expect(&b, &x, WT_LEN, "normalizer_spec"));
            VZ_TRY(parse_normalizer(what, x.s, x.sn, sp));
        }
    }
    return VZ_OK;
}

/* Pass 2: fills the piece arrays. */
static vz_status read_pieces(const char *what, const uint8_t *data, size_t size, int32_t n, const char **pieces,
                             uint32_t *lens, float *scores, int32_t *types) {
    pb b = {data, size, 0, what, "ModelProto"};
    int32_t i = 0;
    while (b.pos < b.size && i < n) {
        pb_field x;
        VZ_TRY(pb_next(&b, &x));
        if (x.f != 1) continue;
        spm_piece pc;
        VZ_TRY(parse_piece(what, x.s, x.sn, &pc));
        VZ_FAIL_IF(!pc.s || pc.len == 0, VZ_ERR_FORMAT, "%s: pieces[%d].piece is missing or empty", what, i);
        pieces[i] = pc.s, lens[i] = pc.len, scores[i] = pc.score, types[i] = pc.type;
        i++;
    }
    return VZ_OK;
}

static vz_status check_spec(const char *what, const spm_spec *sp, int32_t n) {
    VZ_FAIL_IF(n == 0, VZ_ERR_FORMAT, "%s: vocabulary size 0: no pieces (field 1) in the ModelProto", what);
    VZ_FAIL_IF(sp->model_type != 2, VZ_ERR_UNSUPPORTED,
               "%s: trainer_spec.model_type = %d: only BPE (2) is supported", what, sp->model_type);
    VZ_FAIL_IF(sp->ws_suffix, VZ_ERR_UNSUPPORTED, "%s: trainer_spec.treat_whitespace_as_suffix is not supported",
               what);
    VZ_FAIL_IF(sp->charsmap_len > 0, VZ_ERR_UNSUPPORTED,
               "%s: normalizer_spec '%s' has a precompiled_charsmap (%zu bytes): only identity normalization is "
               "supported",
               what, sp->name, sp->charsmap_len);
    return VZ_OK;
}

/* Id of the CONTROL piece p, or -1: SentencePieceProcessor::bos_id() looks
 * BOS and EOS up by trainer_spec.bos_piece / eos_piece. */
static int32_t control_id(int32_t n, const char **pieces, const uint32_t *lens, const int32_t *types, const char *p,
                          uint32_t len) {
    for (int32_t i = 0; i < n; i++)
        if (lens[i] == len && types[i] == VZ_PIECE_CONTROL && memcmp(pieces[i], p, len) == 0) return i;
    return -1;
}

vz_status vz_tokenizer_from_spm_model(vz_tokenizer **out, const uint8_t *data, size_t size, const char *what) {
    *out = NULL;
    /* proto defaults: model_type UNIGRAM, bos_piece "<s>", eos_piece "</s>" */
    spm_spec sp = {1, 0, 0, 0, 1, 2, NULL, 0, "<s>", "</s>", 3, 4, 1, 1, 1, "", 0};
    int32_t n;
    VZ_TRY(scan_model(what, data, size, &sp, &n));
    VZ_TRY(check_spec(what, &sp, n));
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    uint32_t *lens = malloc((size_t)n * sizeof *lens);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    vz_status st = VZ_OK;
    if (!pieces || !lens || !scores || !types) {
        st = VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory for %d pieces", what, n);
    } else {
        st = read_pieces(what, data, size, n, pieces, lens, scores, types);
        sp.bos = control_id(n, pieces, lens, types, sp.bos_piece, sp.bos_len);
        sp.eos = control_id(n, pieces, lens, types, sp.eos_piece, sp.eos_len);
        tok_spec s = {sp.bos, sp.eos, sp.unk, sp.add_dummy_prefix, sp.remove_extra_ws, sp.escape_ws,
                      sp.byte_fallback, 1, 1, sp.unk_surface, sp.unk_surface_len, what, 0};
        if (st == VZ_OK) st = tok_create(out, n, pieces, lens, scores, types, &s);
    }
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return st;
}
