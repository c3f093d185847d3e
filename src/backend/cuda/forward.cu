/*
 * forward.cu - the non-matmul kernels of the GPU forward pass (launchers in
 * forward.cuh). CPU references: vz_cpu_rmsnorm / vz_cpu_rope_table /
 * vz_cpu_rope / vz_cpu_softmax in src/backend/cpu/ops.c, vz_sampler and
 * the attention loop of src/model/. Results agree with them to f32 rounding
 * (sums run in a different order); tests/test_cuda_forward.c states the
 * tolerance. Bench: `vramzip bench -m MODEL --device cuda`.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include <cuda_fp16.h>

#include "backend/cuda/forward.cuh"

/* ---- block reductions ------------------------------------------------- */

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum/max; every thread gets the result. red: 32 slots of shared memory. */
static __device__ double block_sum_d(double v, double *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0;
    return warp_sum_d(v);
}

static __device__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -FLT_MAX;
    return warp_max(v);
}

/* ---- RMSNorm (the residual adds are the matvecs' ADD epilogue) ---------- */

static __global__ void k_rmsnorm(const float *x, float *out, const float *w, int32_t dim, float eps) {
    __shared__ double red[32];
    const float *xr = x + (int64_t)blockIdx.x * dim;
    double ss = 0.0; /* double, as the CPU reference: tiny work, order-stable */
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss, red);
    float scale = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[(int64_t)blockIdx.x * dim + i] = w[i] * (xr[i] * scale);
}

void vz_k_rmsnorm(const float *x, float *out, const float *w, int32_t B, int32_t dim, float eps, cudaStream_t st) {
    k_rmsnorm<<<B, 512, 0, st>>>(x, out, w, dim, eps);
}

/* ---- RoPE + KV-cache store -------------------------------------------- */

/* One block per (head, token), one thread per rotated pair; key-head blocks
 * also store their rotated keys and the values at position *d_pos + b. */
static __global__ void k_rope_store(float *q, float *k, const float *v, void *kc, void *vc, const int32_t *d_pos,
                                    int32_t n_heads, int32_t n_kv, int32_t hd, float theta, int32_t interleaved,
                                    int32_t kv_f16) {
    const int head = blockIdx.x, b = blockIdx.y, half = hd / 2, kvd = n_kv * hd, i = threadIdx.x;
    const int32_t pos = *d_pos + b;
    const bool is_q = head < n_heads;
    float *vec = is_q ? q + ((int64_t)b * n_heads + head) * hd : k + (int64_t)b * kvd + (int64_t)(head - n_heads) * hd;
    if (i >= half) return;
    float freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    float val = (float)pos * freq, c = cosf(val), sn = sinf(val);
    int a = interleaved ? 2 * i : i, bb = interleaved ? 2 * i + 1 : i + half;
    float v0 = vec[a], v1 = vec[bb];
    float r0 = v0 * c - v1 * sn, r1 = v0 * sn + v1 * c;
    vec[a] = r0;
    vec[bb] = r1;
    if (is_q) return;
    int64_t off = (int64_t)pos * kvd + (int64_t)(head - n_heads) * hd;
    const float *vb = v + (int64_t)b * kvd + (int64_t)(head - n_heads) * hd;
    if (kv_f16) {
        ((__half *)kc)[off + a] = __float2half_rn(r0);
        ((__half *)kc)[off + bb] = __float2half_rn(r1);
        ((__half *)vc)[off + a] = __float2half_rn(vb[a]);
        ((__half *)vc)[off + bb] = __float2half_rn(vb[bb]);
    } else {
        ((float *)kc)[off + a] = r0;
        ((float *)kc)[off + bb] = r1;
        ((float *)vc)[off + a] = vb[a];
        ((float *)vc)[off + bb] = vb[bb];
    }
}

void vz_k_rope_store(float *q, float *k, const float *v, void *kc, void *vc, const int32_t *d_pos, int32_t B,
                     int32_t n_heads, int32_t n_kv, int32_t hd, float theta, int32_t interleaved, int32_t kv_f16,
                     cudaStream_t st) {
    int threads = ((hd / 2 + 31) / 32) * 32;
    k_rope_store<<<dim3(n_heads + n_kv, B), threads, 0, st>>>(q, k, v, kc, vc, d_pos, n_heads, n_kv, hd, theta,
                                                              interleaved, kv_f16);
}

/* ---- attention: one block per (key chunk, head, query), then a combine --
 * Scores with one thread per key (a whole key row through 16-byte loads).
 * Variants live in att_variants; a warp-per-key score pass lost (H200,
 * tinyllama-1.1b at 656 positions: 902 us vs 335 us per token over 22
 * layers, eager) and was deleted. */

#define ATT_THREADS 128

static __device__ __forceinline__ float kv_at(const void *c, int64_t i, int32_t f16) {
    return f16 ? __half2float(((const __half *)c)[i]) : ((const float *)c)[i];
}

/* q . key row at element base (head_dim hd) by one thread. */
static __device__ __forceinline__ float dot_row(const float *qs, const void *kc, int64_t base, int hd, int f16) {
    float a = 0.0f;
    if (f16 && (hd & 7) == 0) {
        const uint4 *p = (const uint4 *)((const __half *)kc + base);
        for (int c = 0; c < hd / 8; c++) {
            uint4 u = p[c];
            const __half2 *h = (const __half2 *)&u;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float2 f = __half22float2(h[i]);
                a += qs[8 * c + 2 * i] * f.x;
                a += qs[8 * c + 2 * i + 1] * f.y;
            }
        }
    } else if (!f16 && (hd & 3) == 0) {
        const float4 *p = (const float4 *)((const float *)kc + base);
        for (int c = 0; c < hd / 4; c++) {
            float4 f = p[c];
            a += qs[4 * c] * f.x;
            a += qs[4 * c + 1] * f.y;
            a += qs[4 * c + 2] * f.z;
            a += qs[4 * c + 3] * f.w;
        }
    } else {
        for (int d = 0; d < hd; d++) a += qs[d] * kv_at(kc, base + d, f16);
    }
    return a;
}

/* acc[g*hd + e] = sum over keys j = g, g+G, ... of p[j] * V[j][e]: each
 * thread owns ATT_VEC consecutive elements of a row (one 16-byte load for
 * f16 when hd % 8 == 0; else element by element, same grouping), G groups
 * of keys; loads of successive keys are independent, so they overlap. */
#define ATT_VEC 8
static __device__ void v_pass(float *acc, const float *p, const void *vc, int64_t base, int kvd, int n, int hd,
                              int f16) {
    const int cols = hd / ATT_VEC, G = blockDim.x / cols, c = threadIdx.x % cols, g = threadIdx.x / cols;
    float a[ATT_VEC];
#pragma unroll
    for (int e = 0; e < ATT_VEC; e++) a[e] = 0.0f;
    if (g < G) {
        const bool vec = f16 && (hd % ATT_VEC) == 0;
#pragma unroll 4
        for (int j = g; j < n; j += G) {
            int64_t at = base + (int64_t)j * kvd + (int64_t)c * ATT_VEC;
            float pj = p[j];
            if (vec) {
                uint4 u = *(const uint4 *)((const __half *)vc + at);
                const __half2 *h = (const __half2 *)&u;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 f = __half22float2(h[i]);
                    a[2 * i] += pj * f.x;
                    a[2 * i + 1] += pj * f.y;
                }
            } else {
#pragma unroll
                for (int e = 0; e < ATT_VEC; e++) a[e] += pj * kv_at(vc, at + e, f16);
            }
        }
#pragma unroll
        for (int e = 0; e < ATT_VEC; e++) acc[g * hd + c * ATT_VEC + e] = a[e];
    }
}

size_t vz_att_part_floats(int32_t B, int32_t n_heads, int32_t hd, int32_t n_ctx) {
    size_t S = ((size_t)n_ctx + VZ_ATT_CHUNK - 1) / VZ_ATT_CHUNK;
    return (size_t)B * n_heads * S * (size_t)(hd + 2);
}

/* Each block: scores of its chunk, softmax partials (max m, sum l,
 * unnormalised o) written to part for the combine. */
static __global__ void k_att_chunk(const float *q, const void *kc, const void *vc, float *part, const int32_t *d_pos,
                                   int32_t n_heads, int32_t n_kv, int32_t hd, int32_t kv_f16) {
    extern __shared__ float sm[];
    float *qs = sm, *sc = sm + hd, *red = sc + VZ_ATT_CHUNK, *acc = red + 32; /* acc: ATT_THREADS * ATT_VEC */
    const int s = blockIdx.x, h = blockIdx.y, b = blockIdx.z, S = gridDim.x;
    const int len = *d_pos + b + 1, k0 = s * VZ_ATT_CHUNK;
    if (k0 >= len) return; /* whole block: no barrier is skipped by some threads only */
    const int n = min(VZ_ATT_CHUNK, len - k0), kvd = n_kv * hd, kvh = h / (n_heads / n_kv);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[((int64_t)b * n_heads + h) * hd + d];
    __syncthreads();
    const float rs = sqrtf((float)hd);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        sc[j] = dot_row(qs, kc, (int64_t)(k0 + j) * kvd + (int64_t)kvh * hd, hd, kv_f16) / rs;
    __syncthreads();
    float m = -FLT_MAX;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, sc[j]);
    m = block_max(m, red);
    float l = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float p = expf(sc[j] - m);
        sc[j] = p;
        l += p;
    }
    l = block_sum(l, red); /* its barriers also publish sc */
    v_pass(acc, sc, vc, (int64_t)k0 * kvd + (int64_t)kvh * hd, kvd, n, hd, kv_f16);
    __syncthreads();
    const int G = blockDim.x * ATT_VEC / hd;
    float *po = part + (((int64_t)b * n_heads + h) * S + s) * (hd + 2);
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float a = 0.0f;
        for (int gg = 0; gg < G; gg++) a += acc[gg * hd + e];
        po[2 + e] = a;
    }
    if (threadIdx.x == 0) {
        po[0] = m;
        po[1] = l;
    }
}

static __global__ void k_att_combine(float *out, const float *part, const int32_t *d_pos, int32_t n_heads,
                                     int32_t hd, int32_t S) {
    const int h = blockIdx.x, b = blockIdx.y;
    const int len = *d_pos + b + 1, ns = (len + VZ_ATT_CHUNK - 1) / VZ_ATT_CHUNK;
    const float *p = part + ((int64_t)b * n_heads + h) * S * (hd + 2);
    float M = -FLT_MAX;
    for (int s = 0; s < ns; s++) M = fmaxf(M, p[(int64_t)s * (hd + 2)]);
    float L = 0.0f;
    for (int s = 0; s < ns; s++) L += p[(int64_t)s * (hd + 2) + 1] * expf(p[(int64_t)s * (hd + 2)] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < ns; s++) o += p[(int64_t)s * (hd + 2) + 2 + d] * expf(p[(int64_t)s * (hd + 2)] - M);
        out[((int64_t)b * n_heads + h) * hd + d] = o / L;
    }
}

typedef void (*att_fn)(const float *, const void *, const void *, float *, const int32_t *, int32_t, int32_t,
                       int32_t, int32_t);
static const struct {
    const char *name;
    att_fn fn;
} att_variants[] = {{"key-per-thread", k_att_chunk}};

int vz_att_n_variants(void) { return (int)(sizeof att_variants / sizeof att_variants[0]); }
const char *vz_att_variant_name(int v) { return v >= 0 && v < vz_att_n_variants() ? att_variants[v].name : NULL; }

void vz_k_attention(float *out, const float *q, const void *kc, const void *vc, float *part, const int32_t *d_pos,
                    int32_t B, int32_t n_heads, int32_t n_kv, int32_t hd, int32_t n_ctx, int32_t kv_f16,
                    int32_t variant, cudaStream_t st) {
    int S = (n_ctx + VZ_ATT_CHUNK - 1) / VZ_ATT_CHUNK;
    size_t shm = sizeof(float) * ((size_t)hd + VZ_ATT_CHUNK + 32 + ATT_THREADS * ATT_VEC);
    att_fn fn = att_variants[variant >= 0 && variant < vz_att_n_variants() ? variant : 0].fn;
    fn<<<dim3(S, n_heads, B), ATT_THREADS, shm, st>>>(q, kc, vc, part, d_pos, n_heads, n_kv, hd, kv_f16);
    k_att_combine<<<dim3(n_heads, B), hd < 1024 ? hd : 1024, 0, st>>>(out, part, d_pos, n_heads, hd, S);
}

/* ---- sampling ---------------------------------------------------------- */

#define SAMPLE_THREADS 1024

/* Order-preserving unsigned key of a float (NaN sorts above +Inf; callers
 * never see NaN logits from a finite model). */
static __device__ __forceinline__ uint32_t fkey(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Largest key K with weight(keys >= K) >= target, where weight is a count
 * (w == NULL) or the sum of w over keys >= floor. 32 block-wide passes. */
static __device__ uint32_t select_key(const float *l, int32_t vocab, float inv_t, float mx, uint32_t floor_key,
                                      float target, int by_weight, float *red) {
    uint32_t K = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t c = K | (1u << bit);
        float cnt = 0.0f;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            uint32_t k = fkey(l[i]);
            if (k >= c && k >= floor_key) cnt += by_weight ? expf((l[i] - mx) * inv_t) : 1.0f;
        }
        if (block_sum(cnt, red) >= target) K = c;
    }
    return K;
}

static __global__ void k_sample(const float *l, int32_t vocab, float temp, int32_t top_k, float top_p, uint64_t seed,
                                int32_t *d_tok, int32_t *d_out, int32_t *d_step, int32_t *d_pos, int32_t adv,
                                int32_t out_cap) {
    __shared__ float red[32];
    __shared__ float bv[32];
    __shared__ int32_t bi[32];
    __shared__ float scan[SAMPLE_THREADS];
    float best = -INFINITY;
    int32_t idx = INT32_MAX;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        if (l[i] > best) best = l[i], idx = i; /* ascending i: strict > keeps the lowest id */
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int32_t oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > best || (ov == best && oi < idx)) best = ov, idx = oi;
    }
    if ((threadIdx.x & 31) == 0) bv[threadIdx.x >> 5] = best, bi[threadIdx.x >> 5] = idx;
    __syncthreads();
    best = bv[0], idx = bi[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++)
        if (bv[w] > best || (bv[w] == best && bi[w] < idx)) best = bv[w], idx = bi[w];
    int32_t tok = idx == INT32_MAX ? 0 : idx;
    if (temp > 0.0f && idx != INT32_MAX) {
        const float inv_t = 1.0f / temp;
        uint32_t kk = top_k > 0 && top_k < vocab ? select_key(l, vocab, inv_t, best, 0, (float)top_k, 0, red) : 0;
        if (top_p < 1.0f) {
            float z = 0.0f;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x)
                if (fkey(l[i]) >= kk) z += expf((l[i] - best) * inv_t);
            z = block_sum(z, red);
            uint32_t kp = select_key(l, vocab, inv_t, best, kk, top_p * z, 1, red);
            kk = kp > kk ? kp : kk;
        }
        /* candidates: keys >= kk; pick by inverse CDF in id order */
        int per = (vocab + blockDim.x - 1) / blockDim.x, i0 = threadIdx.x * per, i1 = min(vocab, i0 + per);
        float mine = 0.0f;
        for (int i = i0; i < i1; i++)
            if (fkey(l[i]) >= kk) mine += expf((l[i] - best) * inv_t);
        scan[threadIdx.x] = mine;
        __syncthreads();
        if (threadIdx.x == 0) {
            float tot = 0.0f;
            for (int t = 0; t < (int)blockDim.x; t++) tot += scan[t];
            uint64_t r = splitmix64(seed ^ splitmix64((uint64_t)*d_step));
            float u = (float)(r >> 40) * (1.0f / 16777216.0f) * tot, run = 0.0f;
            int t = 0;
            while (t < (int)blockDim.x - 1 && run + scan[t] <= u) run += scan[t++];
            int32_t pick = -1;
            for (int i = t * per; i < min(vocab, (t + 1) * per); i++)
                if (fkey(l[i]) >= kk) {
                    pick = i;
                    run += expf((l[i] - best) * inv_t);
                    if (run > u) break;
                }
            scan[0] = __int_as_float(pick >= 0 ? pick : tok);
        }
        __syncthreads();
        tok = __float_as_int(scan[0]);
    }
    if (threadIdx.x == 0) {
        int32_t step = *d_step;
        d_tok[0] = tok;
        if (step < out_cap) d_out[step] = tok;
        *d_step = step + 1;
        *d_pos += adv;
    }
}

void vz_k_sample(const float *logits, int32_t vocab, float temp, int32_t top_k, float top_p, uint64_t seed,
                 int32_t *d_tok, int32_t *d_out, int32_t *d_step, int32_t *d_pos, int32_t adv, int32_t out_cap,
                 cudaStream_t st) {
    k_sample<<<1, SAMPLE_THREADS, 0, st>>>(logits, vocab, temp, top_k, top_p, seed, d_tok, d_out, d_step, d_pos, adv,
                                           out_cap);
}

static __global__ void k_advance(int32_t *d_pos, int32_t adv) { *d_pos += adv; }

void vz_k_advance(int32_t *d_pos, int32_t adv, cudaStream_t st) { k_advance<<<1, 1, 0, st>>>(d_pos, adv); }
