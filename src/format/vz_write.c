/*
 * vz_write.c - writes a .vz container as docs/format.md (version 1) says:
 * header placeholder, 256-byte aligned blobs streamed as tensors arrive,
 * then CONF (cJSON), TOKN, TIDX and the section table; the header is
 * rewritten last and the temporary file renamed into place (vz_wfile).
 */
#define _GNU_SOURCE
#include "format/vz_write.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/io.h"

typedef struct vz_buf {
    uint8_t *p;
    uint64_t n, cap;
    int failed;
} vz_buf;

static void buf_put(vz_buf *b, const void *p, uint64_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        uint64_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_u16(vz_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    buf_put(b, x, 2);
}
static void put_u32(vz_buf *b, uint32_t v) {
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, x, 4);
}
static void put_u64(vz_buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_f32(vz_buf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

typedef struct section {
    char tag[4];
    uint32_t flags;
    uint64_t offset, size, checksum;
} section;

struct vz_writer {
    vz_wfile f;
    vz_buf conf, xcfg, tokn, tjsn, chat, tidx;
    uint32_t n_tensors;
    int has_conf, has_xcfg, has_tokn, has_tjsn, has_chat;
};

vz_status vz_writer_open(vz_writer **out, const char *path) {
    *out = NULL;
    vz_writer *w = calloc(1, sizeof *w);
    VZ_FAIL_IF(!w, VZ_ERR_NOMEM, "%s: out of memory", path);
    vz_status s = vz_wfile_open(&w->f, path);
    if (s == VZ_OK) {
        uint8_t zeros[VZ_HEADER_SIZE] = {0};
        s = vz_wfile_write(&w->f, zeros, sizeof zeros); /* rewritten by finish */
    }
    if (s != VZ_OK) {
        vz_writer_abort(w);
        return s;
    }
    put_u32(&w->tidx, 0); /* n_tensors, patched by finish */
    *out = w;
    return VZ_OK;
}

void vz_writer_abort(vz_writer *w) {
    if (!w) return;
    vz_wfile_abort(&w->f);
    free(w->conf.p);
    free(w->xcfg.p);
    free(w->tokn.p);
    free(w->tjsn.p);
    free(w->chat.p);
    free(w->tidx.p);
    free(w);
}

/* o printed into b (o is deleted). */
static vz_status put_json(vz_writer *w, vz_buf *b, cJSON *o) {
    char *js = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    VZ_FAIL_IF(!js, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    b->n = 0;
    buf_put(b, js, strlen(js));
    free(js);
    VZ_FAIL_IF(b->failed, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    return VZ_OK;
}

/* Config that changes the math and that version 1 readers did not know
 * (rope scaling, q/k/v biases) goes into a required XCFG section, not CONF: a
 * reader that does not know it must refuse the file, not run it without. */
static vz_status set_xcfg(vz_writer *w, const vz_config *c) {
    const vz_rope_scaling *r = &c->rope_scaling;
    w->has_xcfg = 0;
    if (r->type == VZ_ROPE_NONE && !c->qkv_bias) return VZ_OK;
    cJSON *o = cJSON_CreateObject(), *s = NULL;
    if (o && r->type == VZ_ROPE_FACTORS) cJSON_AddNumberToObject(o, "rope_freqs", 1); /* the tensor rope_freqs.weight */
    if (o && (r->type == VZ_ROPE_LINEAR || r->type == VZ_ROPE_LLAMA3) &&
        (s = cJSON_AddObjectToObject(o, "rope_scaling"))) {
        cJSON_AddStringToObject(s, "rope_type", r->type == VZ_ROPE_LLAMA3 ? "llama3" : "linear");
        cJSON_AddNumberToObject(s, "factor", (double)r->factor);
        if (r->type == VZ_ROPE_LLAMA3) {
            cJSON_AddNumberToObject(s, "low_freq_factor", (double)r->low_freq);
            cJSON_AddNumberToObject(s, "high_freq_factor", (double)r->high_freq);
            cJSON_AddNumberToObject(s, "original_max_position_embeddings", (double)r->orig_ctx);
        }
    }
    if (o && c->qkv_bias) cJSON_AddNumberToObject(o, "qkv_bias", 1);
    VZ_TRY(put_json(w, &w->xcfg, o));
    w->has_xcfg = 1;
    return VZ_OK;
}

vz_status vz_writer_set_config(vz_writer *w, const vz_config *c, const char *source_format) {
    VZ_TRY(set_xcfg(w, c));
    cJSON *o = cJSON_CreateObject();
    VZ_FAIL_IF(!o, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    cJSON_AddStringToObject(o, "arch", c->arch);
#define NUM(field) cJSON_AddNumberToObject(o, #field, (double)c->field)
    NUM(dim); NUM(hidden_dim); NUM(n_layers); NUM(n_heads); NUM(n_kv_heads); NUM(head_dim);
    NUM(vocab_size); NUM(max_seq_len); NUM(rms_eps); NUM(rope_theta); NUM(rope_interleaved);
    NUM(tied_embeddings); NUM(bos_id); NUM(eos_id);
#undef NUM
    if (source_format) cJSON_AddStringToObject(o, "source_format", source_format);
    if (c->n_eos > 0) { /* optional: a reader without it stops at eos_id alone */
        cJSON *ids = cJSON_AddArrayToObject(o, "eos_ids");
        for (int32_t i = 0; i < c->n_eos && ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(c->eos_ids[i]));
    }
    VZ_TRY(put_json(w, &w->conf, o));
    w->has_conf = 1;
    return VZ_OK;
}

vz_status vz_writer_set_tokenizer_json(vz_writer *w, const uint8_t *json, size_t len) {
    VZ_FAIL_IF(!json || len == 0, VZ_ERR_ARG, "%s: empty tokenizer.json", w->f.final);
    w->tjsn.n = 0;
    buf_put(&w->tjsn, json, len);
    VZ_FAIL_IF(w->tjsn.failed, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    w->has_tjsn = 1;
    return VZ_OK;
}

vz_status vz_writer_set_chat_template(vz_writer *w, const char *text) {
    VZ_FAIL_IF(!text || !*text, VZ_ERR_ARG, "%s: empty chat template", w->f.final);
    w->chat.n = 0;
    buf_put(&w->chat, text, strlen(text));
    VZ_FAIL_IF(w->chat.failed, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    w->has_chat = 1;
    return VZ_OK;
}

vz_status vz_writer_set_vocab(vz_writer *w, const vz_vocab *v) {
    VZ_FAIL_IF(v->n < 1, VZ_ERR_ARG, "%s: empty vocabulary", w->f.final);
    vz_buf *b = &w->tokn;
    b->n = 0;
    put_u32(b, (uint32_t)v->n);
    put_u32(b, (uint32_t)v->bos);
    put_u32(b, (uint32_t)v->eos);
    put_u32(b, (uint32_t)v->unk);
    put_u32(b, v->flags);
    uint32_t ul = v->unk_surface && v->unk_surface_len <= VZ_TOK_MAX_UNK_SURFACE ? v->unk_surface_len : 0;
    put_u32(b, ul);
    if (ul) buf_put(b, v->unk_surface, ul);
    for (int32_t i = 0; i < v->n; i++) {
        VZ_FAIL_IF(v->lens[i] > VZ_MAX_PIECE, VZ_ERR_ARG, "%s: piece %d is %u bytes long", w->f.final, (int)i,
                   v->lens[i]);
        put_f32(b, v->scores ? v->scores[i] : 0.0f);
        put_u32(b, (uint32_t)(v->types ? v->types[i] : 1));
        put_u32(b, v->lens[i]);
        buf_put(b, v->pieces[i], v->lens[i]);
    }
    VZ_FAIL_IF(b->failed, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    w->has_tokn = 1;
    return VZ_OK;
}

/* Writes a blob at the next aligned offset; returns that offset. */
static vz_status put_blob(vz_writer *w, const void *p, uint64_t n, uint64_t *off) {
    *off = 0;
    if (n == 0) return VZ_OK;
    VZ_TRY(vz_wfile_pad(&w->f, VZ_BLOB_ALIGN));
    *off = w->f.written;
    return vz_wfile_write(&w->f, p, n);
}

vz_status vz_writer_add_tensor(vz_writer *w, const vz_tensor *t, uint64_t src_sum, int32_t has_src_sum) {
    size_t nl = strlen(t->name);
    VZ_FAIL_IF(nl < 1 || nl >= VZ_NAME_MAX, VZ_ERR_ARG, "%s: bad tensor name length %zu", w->f.final, nl);
    VZ_FAIL_IF(t->ndim < 1 || t->ndim > 4, VZ_ERR_ARG, "tensor %s: ndim %d", t->name, (int)t->ndim);
    VZ_FAIL_IF(w->n_tensors >= VZ_MAX_TENSORS, VZ_ERR_ARG, "%s: too many tensors", w->f.final);
    uint64_t poff, doff;
    VZ_TRY(put_blob(w, t->params, t->params_size, &poff));
    VZ_TRY(put_blob(w, t->data, t->size, &doff));
    XXH64_state_t *st = XXH64_createState();
    VZ_FAIL_IF(!st, VZ_ERR_NOMEM, "out of memory");
    XXH64_reset(st, 0);
    if (t->params_size) XXH64_update(st, t->params, t->params_size);
    if (t->size) XXH64_update(st, t->data, (size_t)t->size);
    uint64_t enc_sum = XXH64_digest(st);
    XXH64_freeState(st);

    vz_buf *b = &w->tidx;
    uint32_t esize = (uint32_t)(4 + 2 + nl + 1 + 1 + 2 + 8 * (size_t)t->ndim + 8 + 4 + 8 + 8 + 8 + 8 + 4);
    put_u32(b, esize);
    put_u16(b, (uint16_t)nl);
    buf_put(b, t->name, nl);
    uint8_t nd = (uint8_t)t->ndim, dt = (uint8_t)t->dtype;
    buf_put(b, &nd, 1);
    buf_put(b, &dt, 1);
    put_u16(b, t->codec);
    for (int i = 0; i < t->ndim; i++) put_u64(b, (uint64_t)t->shape[i]);
    put_u64(b, poff);
    put_u32(b, t->params_size);
    put_u64(b, doff);
    put_u64(b, t->size);
    put_u64(b, has_src_sum ? src_sum : 0);
    put_u64(b, enc_sum);
    put_u32(b, has_src_sum ? VZ_TFLAG_SRC_SUM : 0);
    VZ_FAIL_IF(b->failed, VZ_ERR_NOMEM, "%s: out of memory", w->f.final);
    w->n_tensors++;
    return VZ_OK;
}

static vz_status put_section(vz_writer *w, section *s, const char *tag, uint32_t flags, const vz_buf *b) {
    VZ_TRY(vz_wfile_pad(&w->f, 8));
    memcpy(s->tag, tag, 4);
    s->flags = flags;
    s->offset = w->f.written;
    s->size = b->n;
    s->checksum = XXH64(b->p, (size_t)b->n, 0);
    return vz_wfile_write(&w->f, b->p, b->n);
}

static vz_status finish(vz_writer *w) {
    VZ_FAIL_IF(!w->has_conf, VZ_ERR_ARG, "%s: no config set", w->f.final);
    VZ_FAIL_IF(w->n_tensors == 0, VZ_ERR_ARG, "%s: no tensors", w->f.final);
    for (int i = 0; i < 4; i++) w->tidx.p[i] = (uint8_t)(w->n_tensors >> (8 * i));
    section sec[6];
    uint32_t ns = 0;
    VZ_TRY(put_section(w, &sec[ns++], "CONF", VZ_SECT_REQUIRED, &w->conf));
    if (w->has_xcfg) VZ_TRY(put_section(w, &sec[ns++], "XCFG", VZ_SECT_REQUIRED, &w->xcfg));
    if (w->has_tokn) VZ_TRY(put_section(w, &sec[ns++], "TOKN", 0, &w->tokn));
    if (w->has_tjsn) VZ_TRY(put_section(w, &sec[ns++], "TJSN", 0, &w->tjsn));
    if (w->has_chat) VZ_TRY(put_section(w, &sec[ns++], "CHAT", 0, &w->chat));
    VZ_TRY(put_section(w, &sec[ns++], "TIDX", VZ_SECT_REQUIRED, &w->tidx));
    VZ_TRY(vz_wfile_pad(&w->f, 8));
    vz_buf tab = {0};
    for (uint32_t i = 0; i < ns; i++) {
        buf_put(&tab, sec[i].tag, 4);
        put_u32(&tab, sec[i].flags);
        put_u64(&tab, sec[i].offset);
        put_u64(&tab, sec[i].size);
        put_u64(&tab, sec[i].checksum);
    }
    VZ_FAIL_IF(tab.failed, VZ_ERR_NOMEM, "out of memory");
    uint64_t tab_off = w->f.written;
    vz_status s = vz_wfile_write(&w->f, tab.p, tab.n);
    uint64_t tab_sum = XXH64(tab.p, (size_t)tab.n, 0);
    free(tab.p);
    VZ_TRY(s);

    vz_buf h = {0};
    buf_put(&h, "VZIP", 4);
    put_u32(&h, VZ_FILE_VERSION);
    put_u32(&h, VZ_HEADER_SIZE);
    put_u32(&h, 0);
    put_u64(&h, w->f.written);
    put_u64(&h, tab_off);
    put_u32(&h, ns);
    put_u32(&h, 0);
    put_u64(&h, tab_sum);
    while (!h.failed && h.n < VZ_HEADER_SIZE) put_u32(&h, 0);
    VZ_FAIL_IF(h.failed, VZ_ERR_NOMEM, "out of memory");
    int bad = fseeko(w->f.f, 0, SEEK_SET) != 0 || fwrite(h.p, 1, (size_t)h.n, w->f.f) != h.n;
    free(h.p);
    VZ_FAIL_IF(bad, VZ_ERR_IO, "%s: cannot write the header", w->f.final);
    return vz_wfile_commit(&w->f);
}

vz_status vz_writer_finish(vz_writer *w) {
    vz_status s = finish(w);
    vz_writer_abort(w); /* after a commit this only frees */
    return s;
}
