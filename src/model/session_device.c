/*
 * session_device.c - the public session calls that differ by device:
 * vz_session_generate (a token loop: on the GPU it runs inside CUDA graphs
 * with on-device sampling, on the CPU it is eval + vz_sampler per token),
 * vz_session_mem_info (VRAM accounting of a CUDA session) and
 * vz_session_prefill_gemm_ref (bench: plain cuBLAS on the prefill's
 * matrices). Owner: fw; the session itself is session.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/session.h"
#ifdef VZ_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

vz_status vz_session_mem_info(vz_session *s, vz_session_mem *out) {
    VZ_FAIL_IF(!s || !out, VZ_ERR_ARG, "vz_session_mem_info: NULL argument");
    memset(out, 0, sizeof *out);
#ifdef VZ_HAVE_CUDA
    if (s->cuda) return vz_cuda_session_mem(s->cuda, out);
#endif
    return VZ_OK;
}

vz_status vz_session_prefill_gemm_ref(vz_session *s, int32_t n, double *seconds) {
    VZ_FAIL_IF(!s || !seconds || n < 1, VZ_ERR_ARG, "vz_session_prefill_gemm_ref: bad arguments");
    *seconds = 0.0;
#ifdef VZ_HAVE_CUDA
    if (s->cuda) return vz_cuda_session_prefill_ref(s->cuda, n, seconds);
#endif
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "prefill reference: a CUDA session only");
}

static vz_status generate_cpu(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
    const int32_t vocab = s->m->cfg.vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    vz_sampler *smp = NULL;
    vz_status st = logits ? vz_sampler_create(&smp, vocab, so) : VZ_FAIL(VZ_ERR_NOMEM, "generate: logits");
    int32_t tok = first;
    for (int32_t i = 0; st == VZ_OK && i < n; i++) {
        st = vz_session_eval_seq(s, s->cur, &tok, 1, logits, 0);
        if (st == VZ_OK) tok = out[i] = vz_sampler_sample(smp, logits);
    }
    vz_sampler_free(smp);
    free(logits);
    return st;
}

vz_status vz_session_generate(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
    VZ_FAIL_IF(!s || !so || (n > 0 && !out) || n < 0, VZ_ERR_ARG, "vz_session_generate: bad arguments");
    VZ_FAIL_IF(first < 0 || first >= s->m->cfg.vocab_size, VZ_ERR_ARG, "generate: token %d outside vocab %d",
               (int)first, (int)s->m->cfg.vocab_size);
    VZ_FAIL_IF(n > s->n_ctx - vz_session_seq_pos(s, 0), VZ_ERR_CONTEXT,
               "context full: %d tokens at position %d do not fit in n_ctx %d", (int)n,
               (int)vz_session_seq_pos(s, 0), (int)s->n_ctx);
    vz_session_select(s, 0);
    return vz_session_generate_cur(s, first, n, so, out);
}

vz_status vz_session_generate_cur(vz_session *s, int32_t first, int32_t n, const vz_sampler_opts *so, int32_t *out) {
#ifdef VZ_HAVE_CUDA
    if (s->cuda) {
        VZ_TRY(vz_cuda_session_generate(s->cuda, s->cur, first, s->pos, n, so, out));
        s->pos += n;
        return VZ_OK;
    }
#endif
    return generate_cpu(s, first, n, so, out);
}

vz_status vz_device_get_info(vz_device dev, int32_t measure_bw, vz_device_info *out) {
    VZ_FAIL_IF(!out, VZ_ERR_ARG, "vz_device_get_info: NULL argument");
    memset(out, 0, sizeof *out);
    if (dev == VZ_DEVICE_CPU) {
        snprintf(out->name, sizeof out->name, "cpu");
        return VZ_OK;
    }
    VZ_FAIL_IF(dev != VZ_DEVICE_CUDA, VZ_ERR_ARG, "device %d is unknown", (int)dev);
#ifdef VZ_HAVE_CUDA
    return vz_cuda_device_probe(measure_bw, out);
#else
    (void)measure_bw;
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "device cuda: built without CUDA backend");
#endif
}
