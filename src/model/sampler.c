/*
 * sampler.c - token sampling (vz_sampler_* in vramzip.h): greedy argmax
 * (lowest id on ties) at temp 0; otherwise top-k on the raw logits, then
 * softmax at the temperature, then top-p (nucleus: the smallest set of
 * most likely tokens whose probability reaches top_p, as llama2.c
 * sample_topp), drawn with a seeded xorshift64* generator so a seed always
 * gives the same tokens.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

typedef struct vz_cand {
    float logit;
    int32_t id;
    float p;
} vz_cand;

struct vz_sampler {
    vz_sampler_opts o;
    int32_t vocab;
    uint64_t state;   /* xorshift64*, never 0 */
    vz_cand *cand;    /* (vocab) */
};

void vz_sampler_opts_default(vz_sampler_opts *o) {
    o->temp = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->seed = 0;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) with 24 random bits. */
static float rng_f32(vz_sampler *s) {
    s->state ^= s->state >> 12;
    s->state ^= s->state << 25;
    s->state ^= s->state >> 27;
    return (float)((s->state * 0x2545f4914f6cdd1dull) >> 40) * (1.0f / 16777216.0f);
}

vz_status vz_sampler_create(vz_sampler **out, int32_t vocab_size, const vz_sampler_opts *o) {
    VZ_FAIL_IF(!out || !o, VZ_ERR_ARG, "vz_sampler_create: NULL argument");
    *out = NULL;
    VZ_FAIL_IF(vocab_size < 1, VZ_ERR_ARG, "sampler: vocab_size %d < 1", (int)vocab_size);
    VZ_FAIL_IF(!(o->temp >= 0.0f) || isinf(o->temp), VZ_ERR_ARG, "sampler: temp %g is not a finite number >= 0",
               (double)o->temp);
    VZ_FAIL_IF(o->top_k < 0, VZ_ERR_ARG, "sampler: top_k %d is negative", (int)o->top_k);
    VZ_FAIL_IF(!(o->top_p > 0.0f && o->top_p <= 1.0f), VZ_ERR_ARG, "sampler: top_p %g is outside (0, 1]",
               (double)o->top_p);
    vz_sampler *s = calloc(1, sizeof *s);
    if (s) s->cand = malloc(sizeof *s->cand * (size_t)vocab_size);
    if (!s || !s->cand) {
        free(s);
        return VZ_FAIL(VZ_ERR_NOMEM, "sampler: out of memory (vocab %d)", (int)vocab_size);
    }
    s->o = *o;
    s->vocab = vocab_size;
    s->state = splitmix64(o->seed);
    if (s->state == 0) s->state = 0x9e3779b97f4a7c15ull;
    *out = s;
    return VZ_OK;
}

void vz_sampler_free(vz_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s);
}

/* NaN logits never win: they count as -inf. */
static inline float clean(float x) { return isnan(x) ? -INFINITY : x; }

static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    float bv = clean(logits[0]);
    for (int32_t i = 1; i < n; i++)
        if (clean(logits[i]) > bv) bv = clean(logits[i]), best = i;
    return best;
}

/* a ranks before b: higher logit, then lower id. */
static inline int before(const vz_cand *a, const vz_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb) {
    const vz_cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* Min-heap (worst on top) sift-down over h[0..n). */
static void heap_down(vz_cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && before(&h[w], &h[l])) w = l;
        if (r < n && before(&h[w], &h[r])) w = r;
        if (w == i) return;
        vz_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The k best candidates, sorted best first, in c[0..k). */
static int32_t select_top_k(vz_cand *c, const float *logits, int32_t vocab, int32_t k) {
    for (int32_t i = 0; i < k; i++) c[i] = (vz_cand){clean(logits[i]), i, 0};
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_down(c, k, i);
    for (int32_t i = k; i < vocab; i++) {
        vz_cand x = {clean(logits[i]), i, 0};
        if (before(&x, &c[0])) {
            c[0] = x;
            heap_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
    return k;
}

/* Probabilities of c[0..n) at temperature temp (sum 1); returns n, or 0 when
 * every logit is -inf. */
static int32_t softmax_cands(vz_cand *c, int32_t n, float temp) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    if (max == -INFINITY) return 0;
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) sum += c[i].p = expf((c[i].logit - max) / temp);
    for (int32_t i = 0; i < n; i++) c[i].p /= sum;
    return n;
}

int32_t vz_sampler_sample(vz_sampler *s, const float *logits) {
    const int32_t V = s->vocab;
    const float temp = s->o.temp, top_p = s->o.top_p;
    if (temp == 0.0f) return argmax(logits, V);
    vz_cand *c = s->cand;
    int32_t n = V;
    if (s->o.top_k > 0 && s->o.top_k < V) {
        n = select_top_k(c, logits, V, s->o.top_k);
    } else {
        for (int32_t i = 0; i < V; i++) c[i] = (vz_cand){clean(logits[i]), i, 0};
    }
    if (softmax_cands(c, n, temp) == 0) return argmax(logits, V);
    float total = 1.0f;
    if (top_p < 1.0f) {
        if (n == V) { /* only tokens with p >= (1 - top_p)/(n - 1) can be in the nucleus (llama2.c) */
            const float cutoff = V > 1 ? (1.0f - top_p) / (float)(V - 1) : 0.0f;
            int32_t m = 0;
            for (int32_t i = 0; i < V; i++)
                if (c[i].p >= cutoff) c[m++] = c[i];
            if (m == 0) return argmax(logits, V);
            n = m;
            qsort(c, (size_t)n, sizeof *c, cmp_cand);
        }
        float cum = 0.0f;
        int32_t last = n - 1;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= top_p) {
                last = i;
                break;
            }
        }
        n = last + 1;
        total = cum;
    }
    float r = rng_f32(s) * total, cum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
