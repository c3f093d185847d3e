/*
 * vz.c - reads a .vz container (docs/format.md, version 1): validates the
 * header, the section table and every section checksum, parses CONF
 * (cJSON), rebuilds the tokenizer from TOKN and maps every tensor of TIDX
 * in place (zero copy, still encoded). With opts->check every tensor's
 * encoded and source checksums are verified too.
 */
#define _GNU_SOURCE
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec/codec.h"
#include "format/hf.h"
#include "format/vz_write.h"
#include "tokenizer/tokenizer.h"

typedef struct vz_sect {
    const uint8_t *p;
    uint64_t size;
    int present;
} vz_sect;

typedef struct vz_file {
    const uint8_t *data;
    uint64_t size;
    const char *what;
    vz_sect conf, xcfg, tokn, tjsn, chat, tidx;
} vz_file;

static vz_status read_header(vz_file *f, uint64_t *tab_off, uint32_t *n_sect, uint64_t *tab_sum) {
    VZ_FAIL_IF(f->size < 4 || memcmp(f->data, "VZIP", 4) != 0, VZ_ERR_MAGIC, "%s: not a .vz file (magic)",
               f->what);
    VZ_FAIL_IF(f->size < VZ_HEADER_MIN, VZ_ERR_TRUNCATED, "%s: %llu bytes, shorter than the header", f->what,
               (unsigned long long)f->size);
    vz_rd r = vz_rd_init(f->data, f->size, f->what);
    uint32_t version, hsize, flags, reserved;
    uint64_t file_size;
    VZ_TRY(vz_rd_skip(&r, 4, "magic"));
    VZ_TRY(vz_rd_u32(&r, &version, "version"));
    VZ_FAIL_IF(version == 0 || version > VZ_FILE_VERSION, VZ_ERR_VERSION,
               "%s: container version %u, this library reads up to %u", f->what, version, VZ_FILE_VERSION);
    VZ_TRY(vz_rd_u32(&r, &hsize, "header_size"));
    VZ_FAIL_IF(hsize < VZ_HEADER_MIN, VZ_ERR_FORMAT, "%s: header_size %u < %u", f->what, hsize, VZ_HEADER_MIN);
    VZ_FAIL_IF(hsize > f->size, VZ_ERR_TRUNCATED, "%s: header_size %u > file size %llu", f->what, hsize,
               (unsigned long long)f->size);
    VZ_TRY(vz_rd_u32(&r, &flags, "flags"));
    VZ_TRY(vz_rd_u64(&r, &file_size, "file_size"));
    VZ_FAIL_IF(file_size != f->size, VZ_ERR_TRUNCATED, "%s: header says %llu bytes, file has %llu (truncated?)",
               f->what, (unsigned long long)file_size, (unsigned long long)f->size);
    VZ_TRY(vz_rd_u64(&r, tab_off, "sections_offset"));
    VZ_TRY(vz_rd_u32(&r, n_sect, "n_sections"));
    VZ_TRY(vz_rd_u32(&r, &reserved, "reserved"));
    VZ_TRY(vz_rd_u64(&r, tab_sum, "sections_checksum"));
    VZ_FAIL_IF(*n_sect < 1 || *n_sect > VZ_MAX_SECTIONS, VZ_ERR_FORMAT, "%s: n_sections %u outside [1, %u]",
               f->what, *n_sect, VZ_MAX_SECTIONS);
    return VZ_OK;
}

/* Checks [off, off+size) lies inside the file, overflow-safe. */
static vz_status in_file(const vz_file *f, uint64_t off, uint64_t size, const char *field, const char *owner) {
    uint64_t end;
    VZ_FAIL_IF(vz_add_ovf(off, size, &end) || end > f->size, VZ_ERR_FORMAT,
               "%s: %s %s: offset %llu + size %llu is past the end of the file (%llu bytes)", f->what, owner,
               field, (unsigned long long)off, (unsigned long long)size, (unsigned long long)f->size);
    return VZ_OK;
}

static vz_status read_sections(vz_file *f) {
    uint64_t tab_off, tab_sum, tab_size;
    uint32_t n;
    VZ_TRY(read_header(f, &tab_off, &n, &tab_sum));
    tab_size = (uint64_t)n * VZ_SECTION_ENTRY;
    VZ_TRY(in_file(f, tab_off, tab_size, "table", "section"));
    VZ_FAIL_IF(XXH64(f->data + tab_off, (size_t)tab_size, 0) != tab_sum, VZ_ERR_CHECKSUM,
               "%s: section table checksum mismatch", f->what);
    vz_rd r = vz_rd_init(f->data + tab_off, tab_size, f->what);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *tag;
        uint32_t flags;
        uint64_t off, size, sum;
        VZ_TRY(vz_rd_bytes(&r, &tag, 4, "section tag"));
        VZ_TRY(vz_rd_u32(&r, &flags, "section flags"));
        VZ_TRY(vz_rd_u64(&r, &off, "section offset"));
        VZ_TRY(vz_rd_u64(&r, &size, "section size"));
        VZ_TRY(vz_rd_u64(&r, &sum, "section checksum"));
        char name[5] = {0};
        for (int k = 0; k < 4; k++) name[k] = (tag[k] >= 32 && tag[k] < 127) ? (char)tag[k] : '?';
        VZ_TRY(in_file(f, off, size, name, "section"));
        vz_sect *s = !memcmp(tag, "CONF", 4) ? &f->conf : !memcmp(tag, "XCFG", 4) ? &f->xcfg
                   : !memcmp(tag, "TOKN", 4) ? &f->tokn
                   : !memcmp(tag, "TJSN", 4) ? &f->tjsn : !memcmp(tag, "CHAT", 4) ? &f->chat
                   : !memcmp(tag, "TIDX", 4) ? &f->tidx : NULL;
        if (!s) {
            VZ_FAIL_IF(flags & VZ_SECT_REQUIRED, VZ_ERR_UNSUPPORTED,
                       "%s: required section '%s' is unknown to this version", f->what, name);
            continue;
        }
        VZ_FAIL_IF(s->present, VZ_ERR_FORMAT, "%s: section %s appears twice", f->what, name);
        VZ_FAIL_IF(XXH64(f->data + off, (size_t)size, 0) != sum, VZ_ERR_CHECKSUM,
                   "%s: section %s checksum mismatch", f->what, name);
        s->p = f->data + off;
        s->size = size;
        s->present = 1;
    }
    VZ_FAIL_IF(!f->conf.present, VZ_ERR_FORMAT, "%s: no CONF section", f->what);
    VZ_FAIL_IF(!f->tidx.present, VZ_ERR_FORMAT, "%s: no TIDX section", f->what);
    VZ_FAIL_IF(f->tokn.present && f->tjsn.present, VZ_ERR_FORMAT, "%s: both a TOKN and a TJSN tokenizer", f->what);
    return VZ_OK;
}

static vz_status json_int(const cJSON *o, const char *key, const char *what, int32_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    VZ_FAIL_IF(!cJSON_IsNumber(v), VZ_ERR_FORMAT, "%s: config key '%s' is missing or not a number", what, key);
    double d = v->valuedouble;
    VZ_FAIL_IF(!(d >= -2147483648.0 && d <= 2147483647.0) || d != (double)(int32_t)d, VZ_ERR_FORMAT,
               "%s: config key '%s' = %g is not an i32", what, key, d);
    *out = (int32_t)d;
    return VZ_OK;
}

static vz_status json_float(const cJSON *o, const char *key, const char *what, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    VZ_FAIL_IF(!cJSON_IsNumber(v), VZ_ERR_FORMAT, "%s: config key '%s' is missing or not a number", what, key);
    *out = (float)v->valuedouble;
    return VZ_OK;
}

static vz_status parse_conf_obj(vz_config *c, const cJSON *o, const char *what) {
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(o, "arch");
    VZ_FAIL_IF(!cJSON_IsString(arch) || strlen(arch->valuestring) >= sizeof c->arch, VZ_ERR_FORMAT,
               "%s: config key 'arch' is missing or too long", what);
    snprintf(c->arch, sizeof c->arch, "%s", arch->valuestring);
#define INT(field) VZ_TRY(json_int(o, #field, what, &c->field))
    INT(dim); INT(hidden_dim); INT(n_layers); INT(n_heads); INT(n_kv_heads); INT(head_dim);
    INT(vocab_size); INT(max_seq_len); INT(rope_interleaved); INT(tied_embeddings); INT(bos_id); INT(eos_id);
#undef INT
    VZ_TRY(json_float(o, "rms_eps", what, &c->rms_eps));
    VZ_TRY(json_float(o, "rope_theta", what, &c->rope_theta));
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "eos_ids"), *e;
    VZ_FAIL_IF(ids && (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > VZ_MAX_EOS), VZ_ERR_FORMAT,
               "%s: config key 'eos_ids' is not a list of at most %d ids", what, VZ_MAX_EOS);
    cJSON_ArrayForEach(e, ids) {
        VZ_FAIL_IF(!cJSON_IsNumber(e) || e->valuedouble != (double)(int32_t)e->valuedouble, VZ_ERR_FORMAT,
                   "%s: config key 'eos_ids' has an entry that is not an integer", what);
        c->eos_ids[c->n_eos++] = (int32_t)e->valuedouble;
    }
    VZ_FAIL_IF(c->rope_interleaved < 0 || c->rope_interleaved > 1 || c->tied_embeddings < 0 ||
                   c->tied_embeddings > 1, VZ_ERR_FORMAT, "%s: config flags must be 0 or 1", what);
    VZ_FAIL_IF(c->head_dim * (int64_t)c->n_heads <= 0, VZ_ERR_FORMAT, "%s: bad head_dim", what);
    return vz_config_validate(c, what);
}

static vz_status parse_conf(vz_model *m, const vz_file *f) {
    VZ_FAIL_IF(f->conf.size > 65536, VZ_ERR_FORMAT, "%s: CONF section is %llu bytes (max 64 KiB)", f->what,
               (unsigned long long)f->conf.size);
    cJSON *o = cJSON_ParseWithLength((const char *)f->conf.p, (size_t)f->conf.size);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return VZ_FAIL(VZ_ERR_FORMAT, "%s: CONF section is not a JSON object", f->what);
    }
    vz_status s = parse_conf_obj(&m->cfg, o, f->what);
    cJSON_Delete(o);
    return s;
}

static vz_status parse_tokn(vz_model *m, const vz_file *f) {
    vz_rd r = vz_rd_init(f->tokn.p, f->tokn.size, f->what);
    uint32_t n, flags;
    int32_t bos, eos, unk;
    VZ_TRY(vz_rd_u32(&r, &n, "TOKN n_vocab"));
    VZ_TRY(vz_rd_i32(&r, &bos, "TOKN bos"));
    VZ_TRY(vz_rd_i32(&r, &eos, "TOKN eos"));
    VZ_TRY(vz_rd_i32(&r, &unk, "TOKN unk"));
    VZ_TRY(vz_rd_u32(&r, &flags, "TOKN flags"));
    uint32_t ul;
    const uint8_t *us = NULL;
    VZ_TRY(vz_rd_u32(&r, &ul, "TOKN unk_surface_len"));
    VZ_FAIL_IF(ul > VZ_TOK_MAX_UNK_SURFACE, VZ_ERR_FORMAT, "%s: TOKN unk_surface_len %u > %u", f->what, ul,
               VZ_TOK_MAX_UNK_SURFACE);
    VZ_TRY(vz_rd_bytes(&r, &us, ul, "TOKN unk_surface"));
    VZ_FAIL_IF(n < 1 || n != (uint32_t)m->cfg.vocab_size, VZ_ERR_FORMAT,
               "%s: TOKN n_vocab %u differs from config vocab_size %d", f->what, n, m->cfg.vocab_size);
    VZ_FAIL_IF((uint64_t)n * 12 > f->tokn.size, VZ_ERR_TRUNCATED, "%s: TOKN too small for %u pieces", f->what, n);
    const char **pieces = calloc(n, sizeof *pieces);
    uint32_t *lens = calloc(n, sizeof *lens);
    float *scores = calloc(n, sizeof *scores);
    int32_t *types = calloc(n, sizeof *types);
    vz_status s = (pieces && lens && scores && types) ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", f->what);
    for (uint32_t i = 0; s == VZ_OK && i < n; i++) {
        const uint8_t *p = NULL;
        if ((s = vz_rd_f32(&r, &scores[i], "TOKN score")) != VZ_OK) break;
        if ((s = vz_rd_i32(&r, &types[i], "TOKN type")) != VZ_OK) break;
        if ((s = vz_rd_u32(&r, &lens[i], "TOKN piece length")) != VZ_OK) break;
        if (lens[i] > VZ_MAX_PIECE) {
            s = VZ_FAIL(VZ_ERR_FORMAT, "%s: TOKN piece %u is %u bytes long", f->what, i, lens[i]);
            break;
        }
        if ((s = vz_rd_bytes(&r, &p, lens[i], "TOKN piece")) != VZ_OK) break;
        pieces[i] = (const char *)p;
    }
    if (s == VZ_OK)
        s = vz_tokenizer_from_vocab(&m->tok, (int32_t)n, pieces, lens, scores, types,
                                    (flags & VZ_TOK_SPM_FORM) != 0, bos, eos, unk,
                                    (flags & VZ_TOK_DUMMY_PREFIX) != 0, f->what);
    if (s == VZ_OK) vz_vocab_apply(m->tok, flags, (const char *)us, ul);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    return s;
}

/* XCFG: {"rope_scaling": {...} as in config.json, or "rope_freqs": 1, and/or "qkv_bias": 1}. */
static vz_status parse_xcfg(vz_model *m, const vz_file *f) {
    VZ_FAIL_IF(f->xcfg.size > 4096, VZ_ERR_FORMAT, "%s: XCFG section is %llu bytes (max 4 KiB)", f->what,
               (unsigned long long)f->xcfg.size);
    cJSON *o = cJSON_ParseWithLength((const char *)f->xcfg.p, (size_t)f->xcfg.size);
    char what[300];
    snprintf(what, sizeof what, "%s: XCFG", f->what);
    vz_status s = cJSON_IsObject(o) ? vz_hf_rope_scaling(&m->cfg, o, what)
                                    : VZ_FAIL(VZ_ERR_FORMAT, "%s: XCFG section is not a JSON object", f->what);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "qkv_bias");
    if (s == VZ_OK && b) s = json_int(o, "qkv_bias", what, &m->cfg.qkv_bias);
    int32_t rf = 0; /* rope_freqs: 1, the divisors are the tensor rope_freqs.weight */
    if (s == VZ_OK && cJSON_GetObjectItemCaseSensitive(o, "rope_freqs")) s = json_int(o, "rope_freqs", what, &rf);
    if (s == VZ_OK && rf) {
        if (m->cfg.rope_scaling.type != VZ_ROPE_NONE || rf != 1)
            s = VZ_FAIL(VZ_ERR_FORMAT, "%s: rope_freqs %d with a rope_scaling", what, rf);
        else
            m->cfg.rope_scaling.type = VZ_ROPE_FACTORS;
    }
    cJSON_Delete(o);
    VZ_TRY(s);
    VZ_FAIL_IF(m->cfg.rope_scaling.type == VZ_ROPE_NONE && !m->cfg.qkv_bias, VZ_ERR_FORMAT,
               "%s: XCFG section names nothing", f->what);
    return vz_config_validate(&m->cfg, f->what);
}

/* TJSN: a tokenizer.json (byte-level BPE) whose ids fit the config's vocabulary. */
static vz_status parse_tjsn(vz_model *m, const vz_file *f) {
    char what[300];
    snprintf(what, sizeof what, "%s: TJSN", f->what);
    VZ_TRY(vz_tokenizer_from_json(&m->tok, f->tjsn.p, (size_t)f->tjsn.size, what));
    VZ_FAIL_IF(vz_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size, VZ_ERR_FORMAT,
               "%s: TJSN tokenizer has %d tokens, more than config vocab_size %d", f->what,
               vz_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
    return VZ_OK;
}

/* Reads one index entry into t (data pointers into the file). */
static vz_status parse_entry(const vz_file *f, vz_rd *r, vz_tensor *t, uint64_t *enc_sum) {
    uint32_t esize;
    uint16_t nl, codec;
    uint8_t nd, dt;
    const uint8_t *name;
    uint64_t start = r->pos, poff, doff, dsize, src_sum, end;
    uint32_t psize, flags;
    VZ_TRY(vz_rd_u32(r, &esize, "tensor entry_size"));
    VZ_FAIL_IF(vz_add_ovf(start, esize, &end) || end > r->size, VZ_ERR_FORMAT, "%s: tensor entry size %u overruns TIDX",
               f->what, esize);
    VZ_TRY(vz_rd_u16(r, &nl, "tensor name_len"));
    VZ_FAIL_IF(nl < 1 || nl >= VZ_NAME_MAX, VZ_ERR_FORMAT, "%s: tensor name length %u", f->what, nl);
    VZ_TRY(vz_rd_bytes(r, &name, nl, "tensor name"));
    VZ_FAIL_IF(memchr(name, 0, nl) != NULL, VZ_ERR_FORMAT, "%s: tensor name holds a NUL", f->what);
    memcpy(t->name, name, nl);
    t->name[nl] = '\0';
    VZ_TRY(vz_rd_bytes(r, &name, 1, "tensor ndim"));
    nd = name[0];
    VZ_TRY(vz_rd_bytes(r, &name, 1, "tensor dtype"));
    dt = name[0];
    VZ_TRY(vz_rd_u16(r, &codec, "tensor codec"));
    VZ_FAIL_IF(nd < 1 || nd > 4, VZ_ERR_FORMAT, "%s: tensor %s: ndim %u", f->what, t->name, nd);
    VZ_FAIL_IF(dt > VZ_DTYPE_BF16, VZ_ERR_FORMAT, "%s: tensor %s: dtype %u", f->what, t->name, dt);
    int64_t shape[4];
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        VZ_TRY(vz_rd_u64(r, &d, "tensor shape"));
        shape[i] = d > (uint64_t)1 << 40 ? -1 : (int64_t)d;
    }
    VZ_FAIL_IF(vz_tensor_set_shape(t, nd, shape) != 0, VZ_ERR_FORMAT, "%s: tensor %s: invalid shape", f->what,
               t->name);
    t->dtype = (vz_dtype)dt;
    t->codec = codec;
    VZ_TRY(vz_rd_u64(r, &poff, "tensor params_offset"));
    VZ_TRY(vz_rd_u32(r, &psize, "tensor params_size"));
    VZ_TRY(vz_rd_u64(r, &doff, "tensor data_offset"));
    VZ_TRY(vz_rd_u64(r, &dsize, "tensor data_size"));
    VZ_TRY(vz_rd_u64(r, &src_sum, "tensor source_checksum"));
    VZ_TRY(vz_rd_u64(r, enc_sum, "tensor encoded_checksum"));
    VZ_TRY(vz_rd_u32(r, &flags, "tensor flags"));
    VZ_FAIL_IF(r->pos > end, VZ_ERR_FORMAT, "%s: tensor %s: entry_size %u too small", f->what, t->name, esize);
    r->pos = end; /* skip fields added by later versions */
    VZ_TRY(in_file(f, poff, psize, "params", t->name));
    VZ_TRY(in_file(f, doff, dsize, "data", t->name));
    t->params = psize ? f->data + poff : NULL;
    t->params_size = psize;
    t->data = f->data + doff;
    t->size = dsize;
    t->checksum = src_sum;
    t->has_checksum = (flags & VZ_TFLAG_SRC_SUM) != 0;
    VZ_FAIL_IF(!vz_codec_by_id(codec), VZ_ERR_CODEC, "%s: tensor %s: unknown codec id %u", f->what, t->name, codec);
    return VZ_OK;
}

vz_status vz_tensor_source_hash(const vz_tensor *t, uint64_t *out) {
    const vz_codec *c = vz_codec_by_id(t->codec);
    VZ_FAIL_IF(!c || !c->lossless, VZ_ERR_ARG, "tensor %s: codec is not lossless", t->name);
    uint64_t row_bytes = (uint64_t)t->cols * (uint64_t)vz_dtype_size(t->dtype);
    int64_t chunk = (int64_t)((16u << 20) / row_bytes);
    if (chunk < 1) chunk = 1;
    if (chunk > t->rows) chunk = t->rows;
    uint8_t *buf = malloc((size_t)(row_bytes * (uint64_t)chunk));
    XXH64_state_t *st = XXH64_createState();
    vz_status s = buf && st ? VZ_OK : VZ_FAIL(VZ_ERR_NOMEM, "tensor %s: out of memory", t->name);
    if (st) XXH64_reset(st, 0);
    for (int64_t r0 = 0; s == VZ_OK && r0 < t->rows; r0 += chunk) {
        int64_t r1 = r0 + chunk < t->rows ? r0 + chunk : t->rows;
        s = c->decode_ref(t, r0, r1, buf);
        if (s == VZ_OK) XXH64_update(st, buf, (size_t)(row_bytes * (uint64_t)(r1 - r0)));
    }
    if (s == VZ_OK) *out = XXH64_digest(st);
    free(buf);
    XXH64_freeState(st);
    return s;
}

static vz_status check_sums(const vz_file *f, const vz_tensor *t, uint64_t enc_sum) {
    XXH64_state_t *st = XXH64_createState();
    VZ_FAIL_IF(!st, VZ_ERR_NOMEM, "out of memory");
    XXH64_reset(st, 0);
    if (t->params_size) XXH64_update(st, t->params, t->params_size);
    if (t->size) XXH64_update(st, t->data, (size_t)t->size);
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    VZ_FAIL_IF(h != enc_sum, VZ_ERR_CHECKSUM, "%s: tensor %s: encoded bytes checksum mismatch", f->what, t->name);
    const vz_codec *c = vz_codec_by_id(t->codec);
    if (!c->lossless || !t->has_checksum) return VZ_OK;
    VZ_TRY(c->check(t));
    VZ_TRY(vz_tensor_source_hash(t, &h));
    VZ_FAIL_IF(h != t->checksum, VZ_ERR_CHECKSUM, "%s: tensor %s: decoded source checksum mismatch", f->what,
               t->name);
    return VZ_OK;
}

static vz_status parse_tidx(vz_model *m, const vz_file *f, int check) {
    vz_rd r = vz_rd_init(f->tidx.p, f->tidx.size, f->what);
    uint32_t n;
    VZ_TRY(vz_rd_u32(&r, &n, "TIDX n_tensors"));
    VZ_FAIL_IF(n < 1 || n > VZ_MAX_TENSORS, VZ_ERR_FORMAT, "%s: n_tensors %u outside [1, %u]", f->what, n,
               VZ_MAX_TENSORS);
    VZ_FAIL_IF((uint64_t)n * 60 > f->tidx.size, VZ_ERR_TRUNCATED, "%s: TIDX too small for %u tensors", f->what, n);
    m->tensors = calloc(n, sizeof *m->tensors);
    VZ_FAIL_IF(!m->tensors, VZ_ERR_NOMEM, "%s: out of memory", f->what);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t enc_sum;
        vz_tensor *t = &m->tensors[i];
        VZ_TRY(parse_entry(f, &r, t, &enc_sum));
        m->n_tensors = (int32_t)i + 1;
        VZ_FAIL_IF(vz_model_find(m, t->name) != t, VZ_ERR_FORMAT, "%s: tensor %s appears twice", f->what, t->name);
        if (check) VZ_TRY(check_sums(f, t, enc_sum));
    }
    return VZ_OK;
}

vz_status vz_read_vz_mem(vz_model *m, const uint8_t *data, uint64_t size, const char *what, const vz_model_opts *o) {
    vz_file f = {.data = data, .size = size, .what = what};
    VZ_TRY(read_sections(&f));
    snprintf(m->format, sizeof m->format, "vz");
    VZ_TRY(parse_conf(m, &f));
    if (f.xcfg.present) VZ_TRY(parse_xcfg(m, &f));
    if (f.tokn.present) VZ_TRY(parse_tokn(m, &f));
    if (f.tjsn.present) VZ_TRY(parse_tjsn(m, &f));
    if (f.chat.present) { /* the checkpoint's chat template, as UTF-8 text */
        char w[300];
        snprintf(w, sizeof w, "%s: CHAT", f.what);
        VZ_TRY(vz_model_set_chat_template(m, (const char *)f.chat.p, (size_t)f.chat.size, w));
    }
    return parse_tidx(m, &f, o && o->check);
}

vz_status vz_read_vz(vz_model *m, const char *path, const vz_model_opts *o) {
    vz_map *map;
    VZ_TRY(vz_model_add_map(m, &map));
    VZ_TRY(vz_map_open(map, path));
    return vz_read_vz_mem(m, map->data, map->size, path, o);
}
