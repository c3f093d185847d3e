/*
 * test_plan.c - the VRAM residency planner (src/model/plan.c, issue #5) on
 * the CPU: plans of the synth shapes TinyLlama-1.1B at 600 MiB and
 * Llama-2-7B at 4 GiB for raw, lossless, q8 and q4 byte counts, the
 * refusal advice checked by replanning what it suggests, vz_session_plan
 * on stories260K as .bin, q8 .vz and lossless .vz (compressed and
 * decompress-at-load), the CLI flags' errors, and the prefill GEMM
 * scratch of the synth shapes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "common/testutil.h"
#include "model/plan.h"

#define MIB ((uint64_t)1 << 20)
/* Lossless bf16 weights take about 11 of 16 bits (exponent coding); an
 * assumption of these synthetic plans only, real files are measured. */
#define LOSSLESS_NUM 11
#define LOSSLESS_DEN 16

typedef struct synth_plan {
    vz_config c;
    uint64_t layers[128];
    vz_plan_in in;
} synth_plan;

/* codec_id: VZ_CODEC_raw (bf16), lossless (raw * 11/16), q8, q4. */
static void synth_setup(synth_plan *sp, const char *shape, int codec_id, int32_t n_ctx, int32_t kv_f16,
                        uint64_t budget, int32_t stream_ok) {
    memset(sp, 0, sizeof *sp);
    vz_synth_shape_info si;
    int found = 0;
    for (int32_t i = 0; i < vz_synth_n_shapes(); i++)
        if (vz_synth_shape_get(i, &si) == VZ_OK && !strcmp(si.name, shape)) {
            found = 1;
            break;
        }
    assert_true(found);
    vz_config *c = &sp->c;
    c->dim = si.dim, c->hidden_dim = si.hidden_dim, c->n_layers = si.n_layers, c->n_heads = si.n_heads;
    c->n_kv_heads = si.n_kv_heads, c->head_dim = si.dim / si.n_heads, c->vocab_size = si.vocab_size;
    c->max_seq_len = si.max_seq_len;
    assert_true(c->n_layers <= 128);
    uint64_t lb, gb;
    vz_plan_shape_bytes(c, codec_id == VZ_CODEC_lossless ? VZ_CODEC_raw : codec_id, VZ_DTYPE_BF16, 1, &lb, &gb);
    if (codec_id == VZ_CODEC_lossless) lb = lb * LOSSLESS_NUM / LOSSLESS_DEN, gb = gb * LOSSLESS_NUM / LOSSLESS_DEN;
    for (int32_t l = 0; l < c->n_layers; l++) sp->layers[l] = lb;
    sp->in.c = c, sp->in.n_ctx = n_ctx, sp->in.kv_f16 = kv_f16, sp->in.layer_bytes = sp->layers;
    sp->in.global_bytes = gb, sp->in.budget = budget, sp->in.stream_ok = stream_ok;
}

/* Invariants of every plan, and maximality of the resident prefix. */
static void check_plan(const vz_plan_in *in, const vz_plan *p) {
    uint64_t all = 0, lmax = 0;
    for (int32_t l = 0; l < in->c->n_layers; l++) {
        all += in->layer_bytes[l];
        if (in->layer_bytes[l] > lmax) lmax = in->layer_bytes[l];
    }
    assert_int_equal(p->n_resident + p->n_streamed, in->c->n_layers);
    assert_true(p->resident_bytes + p->streamed_bytes == all);
    const uint64_t fixed = p->global_bytes + p->kv_bytes + p->scratch_bytes + p->reserve_bytes;
    assert_true(p->total_bytes == fixed + p->resident_bytes + p->stream_buf_bytes);
    assert_true(p->full_bytes == fixed + all);
    assert_true(p->min_bytes == fixed + 2 * lmax);
    assert_true(p->stream_buf_bytes == (p->n_streamed ? 2 * lmax : 0));
    assert_true(p->kv_bytes >= 2 * (uint64_t)in->c->n_layers * (uint64_t)in->n_ctx * (uint64_t)in->c->n_kv_heads *
                                   (uint64_t)in->c->head_dim * (in->kv_f16 ? 2u : 4u));
    if (!in->budget) {
        assert_true(p->fits && p->n_streamed == 0);
        return;
    }
    assert_int_equal(p->fits, p->total_bytes <= in->budget);
    if (p->fits && p->n_streamed > 0) { /* one more resident layer would not fit */
        uint64_t more = fixed + p->resident_bytes + lmax + (p->n_streamed > 1 ? 2 * lmax : 0);
        assert_true(more > in->budget);
    }
    if (!p->fits) {
        char need[64];
        snprintf(need, sizeof need, "needs %.0f MiB", (double)p->total_bytes / (double)MIB);
        assert_non_null(strstr(p->advice, need));
        assert_int_equal(p->n_streamed, in->stream_ok ? in->c->n_layers : 0);
    } else {
        assert_string_equal(p->advice, "");
    }
}

/* Replans what the advice suggests: -c N fits and N + 1 does not; the
 * suggested budget fits. Returns N (0 when no context was suggested). */
static int32_t check_advice(const vz_plan_in *in, const vz_plan *p) {
    vz_plan q;
    vz_plan_in t = *in;
    const char *b = strstr(p->advice, "--vram-budget ");
    assert_non_null(b);
    t.budget = (uint64_t)strtoull(b + 14, NULL, 10) * MIB;
    vz_plan_make(&t, &q);
    assert_true(q.fits);
    const char *c = strstr(p->advice, "-c ");
    if (!c) {
        assert_non_null(strstr(p->advice, "no smaller context"));
        return 0;
    }
    int32_t n = (int32_t)strtol(c + 3, NULL, 10);
    assert_true(n >= 16 && n < in->n_ctx);
    t = *in;
    t.n_ctx = n;
    vz_plan_make(&t, &q);
    assert_true(q.fits);
    t.n_ctx = n + 1;
    vz_plan_make(&t, &q);
    assert_false(q.fits);
    return n;
}

static void test_tinyllama_600m(void **state) {
    (void)state;
    const int codecs[] = {VZ_CODEC_raw, VZ_CODEC_lossless, VZ_CODEC_q8, VZ_CODEC_q4};
    for (int i = 0; i < 4; i++) {
        synth_plan sp;
        vz_plan p;
        synth_setup(&sp, "tinyllama-1.1b", codecs[i], 2048, 1, 600 * MIB, 1);
        vz_plan_make(&sp.in, &p);
        check_plan(&sp.in, &p);
        if (codecs[i] == VZ_CODEC_raw) { /* all 22 layers streamed still need ~652 MiB (46 of them the GEMM scratch) */
            print_message("raw at 600 MiB: %s\n", p.advice);
            assert_false(p.fits);
            assert_non_null(strstr(p.advice, "--codec q8"));
            sp.in.budget = 680 * MIB;
            vz_plan_make(&sp.in, &p);
        }
        assert_true(p.fits);         /* streaming makes every compressed encoding fit (raw: 680 MiB) */
        assert_true(p.n_streamed > 0); /* but none fits fully resident */
        sp.in.stream_ok = 0;
        vz_plan_make(&sp.in, &p);
        check_plan(&sp.in, &p);
        assert_false(p.fits);
        check_advice(&sp.in, &p);
        if (codecs[i] == VZ_CODEC_raw) assert_non_null(strstr(p.advice, "--codec q4"));
        if (codecs[i] == VZ_CODEC_q4) assert_null(strstr(p.advice, "--codec")); /* nothing smaller to offer */
    }
}

static void test_llama2_7b_4g(void **state) {
    (void)state;
    synth_plan sp;
    vz_plan p;
    synth_setup(&sp, "llama2-7b", VZ_CODEC_raw, 4096, 1, 4096 * MIB, 1);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_true(p.fits && p.n_resident >= 1 && p.n_streamed > 0);
    assert_true(p.kv_bytes == 2 * 1024 * MIB); /* 32 layers x 4096 x 4096 x f16, keys and values */
    sp.in.stream_ok = 0;
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_false(p.fits);
    assert_int_equal(check_advice(&sp.in, &p), 0); /* 12.6 GiB of bf16: no context fits */
    /* q4 resident: the weights fit, the 4096-token KV cache does not; a shorter one does */
    synth_setup(&sp, "llama2-7b", VZ_CODEC_q4, 4096, 1, 4096 * MIB, 0);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_false(p.fits);
    int32_t n = check_advice(&sp.in, &p);
    print_message("q4 llama2-7b in 4 GiB: advice %d positions\n", (int)n);
    assert_true(n > 32 && n < 4096); /* 3.4 GiB of q4 weights, prefill buffers and cuBLAS leave about 600 positions */
    /* f32 KV (1 MiB a position) of 3n / 4 positions does not fit, f16 (half of it) does; 2n: neither */
    synth_setup(&sp, "llama2-7b", VZ_CODEC_q4, 3 * n / 4, 0, 4096 * MIB, 0);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_false(p.fits);
    assert_non_null(strstr(p.advice, "--kv f16"));
    synth_setup(&sp, "llama2-7b", VZ_CODEC_q4, 2 * n, 0, 4096 * MIB, 0);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_false(p.fits);
    assert_null(strstr(p.advice, "--kv f16"));
}

/* Below even the all-streamed minimum: refuse, say what the minimum is. */
static void test_refusal(void **state) {
    (void)state;
    synth_plan sp;
    vz_plan p;
    synth_setup(&sp, "tinyllama-1.1b", VZ_CODEC_raw, 2048, 1, 300 * MIB, 1);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
    assert_false(p.fits);
    assert_true(p.total_bytes == p.min_bytes);
    check_advice(&sp.in, &p);
    assert_non_null(strstr(p.advice, "--codec q4"));
    assert_non_null(strstr(p.advice, "but the budget is 300 MiB"));
    /* no budget: everything resident */
    synth_setup(&sp, "tinyllama-1.1b", VZ_CODEC_raw, 2048, 1, 0, 1);
    vz_plan_make(&sp.in, &p);
    check_plan(&sp.in, &p);
}

/* vz_session_plan of m with budget 0 on the CPU: all resident; figures. */
static void model_plan(vz_model *m, vz_residency r, vz_plan *p) {
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.residency = r;
    o.n_ctx = 64;
    assert_int_equal(vz_session_plan(m, &o, p), VZ_OK);
    assert_true(p->fits && p->n_streamed == 0 && p->n_resident == m->cfg.n_layers && p->budget == 0);
}

static void expect_shape(vz_model *m, const vz_plan *p, int codec_id, vz_dtype dt, int arena) {
    uint64_t lb, gb;
    vz_plan_shape_bytes(&m->cfg, codec_id, dt, arena, &lb, &gb);
    assert_true(p->resident_bytes == lb * (uint64_t)m->cfg.n_layers);
    assert_true(p->global_bytes == gb);
}

static void test_stories260k_files(void **state) {
    (void)state;
    char bin[512], tok[512], dir[256], out[600];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = tok;
    vz_model *m = NULL;
    vz_plan p;
    assert_int_equal(vz_model_open(&m, bin, &mo), VZ_OK);
    model_plan(m, VZ_RESIDENCY_COMPRESSED, &p);
    expect_shape(m, &p, VZ_CODEC_raw, VZ_DTYPE_F32, 1);
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.vram_budget = 100 * MIB;
    vz_session *s = NULL;
    assert_int_equal(vz_session_create(&s, m, &o), VZ_ERR_ARG); /* a budget needs device cuda */
    o.vram_budget = MIB; /* far too small: refusal with advice, not an error */
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    assert_false(p.fits);
    assert_non_null(strstr(p.advice, "--vram-budget"));
    o.vram_budget = 0;
    o.residency = (vz_residency)7;
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_ERR_ARG);
    vz_model_close(m);
    const char *specs[] = {"q8", "lossless"};
    for (int i = 0; i < 2; i++) {
        vz_convert_opts co;
        vz_convert_opts_default(&co);
        co.codec_spec = specs[i];
        co.model.tokenizer_path = tok;
        snprintf(out, sizeof out, "%s/%s.vz", dir, specs[i]);
        assert_int_equal(vz_convert(bin, out, &co), VZ_OK);
        assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
        model_plan(m, VZ_RESIDENCY_COMPRESSED, &p);
        if (i == 0) expect_shape(m, &p, VZ_CODEC_q8, VZ_DTYPE_F32, 1);
        else assert_true(p.resident_bytes > 0);
        model_plan(m, VZ_RESIDENCY_DECOMPRESS, &p); /* lossy: f32, lossless: the source f32 */
        expect_shape(m, &p, VZ_CODEC_raw, VZ_DTYPE_F32, 0);
        vz_model_close(m);
    }
    vz_test_rmtree(dir);
}

/* [st] Streamed slots sized by stream_bytes (the packed layer), not the
 * resident per-tensor figure: the resident prefix is the largest that fits. */
static void test_stream_slots(void **state) {
    (void)state;
    synth_plan sp;
    vz_plan p;
    uint64_t sb[128];
    synth_setup(&sp, "tinyllama-1.1b", VZ_CODEC_raw, 2048, 1, 0, 1);
    for (int32_t l = 0; l < sp.c.n_layers; l++) sb[l] = sp.layers[l] / 3; /* a denser streamed encoding */
    sp.in.stream_bytes = sb;
    vz_plan_make(&sp.in, &p);
    const uint64_t fixed = p.global_bytes + p.kv_bytes + p.scratch_bytes + p.reserve_bytes;
    assert_true(p.fits && p.n_streamed == 0 && p.min_bytes == fixed + 2 * sb[0]);
    for (int32_t k = 0; k < sp.c.n_layers; k += 7) { /* a budget of exactly k resident layers + 2 slots */
        sp.in.budget = fixed + (uint64_t)k * sp.layers[0] + 2 * sb[0];
        vz_plan_make(&sp.in, &p);
        assert_true(p.fits);
        assert_int_equal(p.n_resident, k);
        assert_true(p.stream_buf_bytes == 2 * sb[0] && p.total_bytes == sp.in.budget);
        assert_true(p.streamed_bytes == (uint64_t)(sp.c.n_layers - k) * sb[0]);
        sp.in.budget--; /* one byte less: one layer fewer */
        vz_plan_make(&sp.in, &p);
        assert_true(k == 0 ? !p.fits : p.fits && p.n_resident == k - 1);
    }
}

/* [st] residency cache: as many decoded slots as fit beside two staging
 * slots of the encoded layer and the decode buffers; refusal below one slot. */
static void test_cache_plan(void **state) {
    (void)state;
    synth_plan sp;
    vz_plan p;
    uint64_t sb[128];
    synth_setup(&sp, "tinyllama-1.1b", VZ_CODEC_raw, 2048, 1, 700 * MIB, 1);
    for (int32_t l = 0; l < sp.c.n_layers; l++) sb[l] = sp.layers[l] * LOSSLESS_NUM / LOSSLESS_DEN;
    sp.in.stream_bytes = sb;
    sp.in.residency = VZ_RESIDENCY_CACHE;
    vz_plan_make(&sp.in, &p);
    const uint64_t fixed = p.global_bytes + p.kv_bytes + p.scratch_bytes + p.reserve_bytes;
    const uint64_t buf = 2 * sb[0] + vz_plan_dev_round(VZ_PLAN_DECODE_TMP) + vz_plan_dev_round(5632 * 4);
    assert_true(p.stream_buf_bytes == buf);
    assert_true(p.min_bytes == fixed + buf + sp.layers[0]);
    uint64_t k = (700 * MIB - fixed - buf) / sp.layers[0];
    assert_true(k >= 1 && k < 22);
    assert_true(p.fits && p.n_resident == (int32_t)k && p.n_streamed == 22 - (int32_t)k);
    assert_true(p.total_bytes == fixed + buf + k * sp.layers[0] && p.total_bytes <= 700 * MIB);
    sp.in.budget = p.min_bytes - 1;
    vz_plan_make(&sp.in, &p);
    assert_false(p.fits);
    assert_non_null(strstr(p.advice, "needs"));
    sp.in.budget = 0; /* no budget: a slot per layer */
    vz_plan_make(&sp.in, &p);
    assert_true(p.fits && p.n_resident == 22 && p.n_streamed == 0);
}

/* [st] The packed layer layout on a real file, and vz_session_plan with a
 * budget of the all-streamed minimum: slots of the packed layer. */
static void test_pack_real(void **state) {
    (void)state;
    char bin[512], tok[512], dir[256], out[600];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    assert_non_null(vz_test_tmpdir(dir, sizeof dir));
    vz_convert_opts co;
    vz_convert_opts_default(&co);
    co.codec_spec = "lossless";
    co.model.tokenizer_path = tok;
    snprintf(out, sizeof out, "%s/lossless.vz", dir);
    assert_int_equal(vz_convert(bin, out, &co), VZ_OK);
    vz_model *m = NULL;
    assert_int_equal(vz_model_open(&m, out, NULL), VZ_OK);
    uint64_t off[14], doff[14];
    const vz_layer *L = &m->layers[0];
    const vz_tensor *ts[7] = {L->wq, L->wk, L->wv, L->wo, L->w1, L->w2, L->w3};
    uint64_t n = vz_plan_layer_pack(L, 0, off), nd = vz_plan_layer_pack(L, 1, doff);
    for (int i = 0; i < 7; i++) {
        assert_true(off[i] % VZ_PLAN_ALIGN == 0 && off[7 + i] % VZ_PLAN_ALIGN == 0);
        assert_true(off[i] + ts[i]->size <= off[7 + i]);
        assert_true(ts[i]->codec == VZ_CODEC_lossless && ts[i]->params_size >= 2);
        assert_true(off[7 + i] + ((uint64_t)1 << ts[i]->params[1]) <= (i < 6 ? off[i + 1] : n)); /* the lut */
        assert_true(doff[i] + (uint64_t)ts[i]->rows * ts[i]->cols * 4 <= (i < 6 ? doff[i + 1] : nd)); /* f32 source */
    }
    vz_session_opts o;
    vz_session_opts_default(&o);
    o.n_ctx = 64;
    vz_plan p;
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    o.vram_budget = p.min_bytes;
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    assert_true(p.fits && p.n_streamed == m->cfg.n_layers);
    assert_true(p.stream_buf_bytes == 2 * vz_plan_dev_round(n));
    /* [lmax] lossless-max transport: the two slots (its blocks are at most the fixed-rate pack) plus the
     * decoded slot; the same budget now streams nothing (refused); a bad VZ_STREAM_CODEC is an error */
    const uint64_t min_fixed = p.min_bytes;
    setenv("VZ_STREAM_CODEC", "lossless-max", 1);
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    assert_false(p.fits);
    o.vram_budget = min_fixed + vz_plan_dev_round(nd);
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    assert_true(p.fits && p.n_streamed == m->cfg.n_layers && p.min_bytes == o.vram_budget);
    assert_true(p.stream_buf_bytes == 2 * vz_plan_dev_round(n) + vz_plan_dev_round(nd));
    o.residency = VZ_RESIDENCY_DECOMPRESS; /* the transport applies to compressed residency only */
    o.vram_budget = 0;
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    o.vram_budget = p.min_bytes; /* every layer streamed, decoded */
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_OK);
    assert_true(p.fits && p.n_streamed == m->cfg.n_layers);
    assert_true(p.stream_buf_bytes == 2 * vz_plan_dev_round(nd));
    o.residency = VZ_RESIDENCY_COMPRESSED;
    setenv("VZ_STREAM_CODEC", "zstd", 1);
    assert_int_equal(vz_session_plan(m, &o, &p), VZ_ERR_ARG);
    assert_non_null(strstr(vz_last_error(), "VZ_STREAM_CODEC"));
    unsetenv("VZ_STREAM_CODEC");
    vz_model_close(m);
    vz_test_rmtree(dir);
}

static void test_cli_flags(void **state) {
    (void)state;
    char bin[512], tok[512];
    VZ_REQUIRE_MODEL(bin, "stories260K/stories260K.bin");
    VZ_REQUIRE_MODEL(tok, "stories260K/tok512.bin");
    const char *bad[] = {"run -n 1 --device cuda --vram-budget 12Q", "run -n 1 --device cuda --residency fast",
                         "run -n 1 --vram-budget 600M", "perplexity -f /dev/null --residency cache"};
    const char *why[] = {"expects a size", "expects compressed, decompress-at-load or cache", "need --device cuda",
                         "need --device cuda"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *o = NULL;
        int rc = vz_test_sh(&o, "%s %s -m %s -z %s 2>&1", vz_test_cli(), bad[i], bin, tok);
        if (rc != 2 || !o || !strstr(o, why[i])) print_message("'%s': rc %d: %s\n", bad[i], rc, o ? o : "");
        assert_int_equal(rc, 2);
        assert_non_null(o);
        assert_non_null(strstr(o, why[i]));
        free(o);
    }
    const char *bench_bad[] = {"--device cpu --residency decompress-at-load", "--vram-budget x1"};
    for (size_t i = 0; i < 2; i++) {
        char *o = NULL;
        assert_int_equal(vz_test_sh(&o, "%s bench -m %s %s 2>&1", vz_test_cli(), bin, bench_bad[i]), 2);
        free(o);
    }
}

/* The prefill GEMM scratch (vz_plan_gemm_scratch_elems): the largest
 * stacked op, capped at VZ_PLAN_GEMM_SCRATCH. A matrix larger than the
 * scratch runs as row-chunk GEMMs, each filling its own waves of tiles:
 * on an H200 mistral-7b's down split into 3510 + 586 rows halved its
 * prefill (bench/results/2026-11-30-session24-h200.md). So for every 7-8B
 * synth shape no single matrix may be split, and tinyllama's stacked ops
 * are one GEMM each. */
static void test_gemm_scratch(void **state) {
    (void)state;
    static const char *shapes[] = {"tinyllama-1.1b", "llama2-7b", "mistral-7b", "llama3-8b"};
    for (int i = 0; i < 4; i++) {
        synth_plan sp;
        synth_setup(&sp, shapes[i], VZ_CODEC_raw, 2048, 1, 0, 1);
        const vz_config *c = &sp.c;
        const uint64_t dim = (uint64_t)c->dim, hid = (uint64_t)c->hidden_dim;
        const uint64_t qd = (uint64_t)c->n_heads * (uint64_t)c->head_dim, kvd = (uint64_t)c->n_kv_heads * c->head_dim;
        const uint64_t single = hid * dim > qd * dim ? hid * dim : qd * dim; /* down, gate, up; wq, wo */
        const uint64_t stacked = 2 * hid * dim > (qd + 2 * kvd) * dim ? 2 * hid * dim : (qd + 2 * kvd) * dim;
        const uint64_t sc = vz_plan_gemm_scratch_elems(c);
        assert_true(sc <= (uint64_t)VZ_PLAN_GEMM_SCRATCH);
        assert_true(sc == (stacked < (uint64_t)VZ_PLAN_GEMM_SCRATCH ? stacked : (uint64_t)VZ_PLAN_GEMM_SCRATCH));
        if (sc < single) fail_msg("%s: a %llu-element matrix does not fit the %llu-element GEMM scratch", shapes[i],
                                  (unsigned long long)single, (unsigned long long)sc);
        if (i == 0) assert_true(sc == stacked); /* tinyllama: gate + up one GEMM */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tinyllama_600m),  cmocka_unit_test(test_llama2_7b_4g),
        cmocka_unit_test(test_refusal),         cmocka_unit_test(test_stories260k_files),
        cmocka_unit_test(test_cli_flags),       cmocka_unit_test(test_stream_slots),
        cmocka_unit_test(test_cache_plan),      cmocka_unit_test(test_pack_real),
        cmocka_unit_test(test_gemm_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
