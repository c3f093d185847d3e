/*
 * attention.cuh - one decode attention block (RoPE + KV cache store +
 * attention over one chunk of keys, the partials merged by the chunk's last
 * block) as a device function of a thread group (one CTA), used by
 * forward.cu's k_attention (variant 3), whose pieces its cluster kernel
 * shares, so both give the same bits. CPU reference: the attention loop of
 * src/model/forward.c (tests/test_cuda_forward.c).
 * Internal to src/backend/cuda.
 */
#ifndef VZ_BACKEND_CUDA_ATTENTION_CUH
#define VZ_BACKEND_CUDA_ATTENTION_CUH

#include <float.h>
#include <stdint.h>

#include <cuda_fp16.h>

#include "backend/cuda/forward.cuh"
#include "backend/cuda/trace.cuh"

/* The threads of a CTA working as one block (tid: this thread's index, nt: their count). */
struct vz_tgroup {
    int tid, nt;
    __device__ __forceinline__ void sync() const { __syncthreads(); }
};

static __device__ __forceinline__ vz_tgroup vz_cta() { return vz_tgroup{(int)threadIdx.x, (int)blockDim.x}; }

/* ---- group reductions -------------------------------------------------- */

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Group-wide sum/max (nt a multiple of 32); every thread gets the result. red: 32 floats of shared memory. */
static __device__ float block_sum(const vz_tgroup &tg, float v, float *red) {
    int lane = tg.tid & 31, w = tg.tid >> 5, nw = (tg.nt + 31) >> 5;
    v = warp_sum(v);
    tg.sync();
    if (lane == 0) red[w] = v;
    tg.sync();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ float block_max(const vz_tgroup &tg, float v, float *red) {
    int lane = tg.tid & 31, w = tg.tid >> 5, nw = (tg.nt + 31) >> 5;
    v = warp_max(v);
    tg.sync();
    if (lane == 0) red[w] = v;
    tg.sync();
    v = lane < nw ? red[lane] : -FLT_MAX;
    return warp_max(v);
}

/* ---- attention: RoPE + KV store + split-context attention, one kernel ---
 * One block per (key chunk s, head h, query b). The block rotates its query,
 * rotates the new keys (positions *d_pos .. *d_pos + b) that fall in its
 * chunk into shared memory (through f16 when the cache is f16, so they read
 * back exactly as stored), and blocks of the last query of each key head
 * also store those rows into the caches; older keys come from the caches
 * (rows below *d_pos, which nobody writes in this launch). Scores with one
 * thread per key (16-byte loads), softmax partials per chunk; the last
 * chunk block of each (h, b) to finish (an atomic count, reset by it)
 * merges the partials in chunk order, so results do not depend on which
 * block is last. A warp-per-key score pass lost (H200, tinyllama-1.1b at
 * 656 positions: 902 us vs 335 us per token over 22 layers) and was deleted. */

#define ATT_THREADS 128
#define ATT_VEC 8

static __device__ __forceinline__ float kv_at(const void *c, int64_t i, int32_t f16) {
    return f16 ? __half2float(((const __half *)c)[i]) : ((const float *)c)[i];
}

/* q . key row kr (head_dim hd) by one thread. */
static __device__ __forceinline__ float dot_row(const float *qs, const void *kr, int hd, int f16) {
    float a = 0.0f;
    if (f16) { /* 8 loads in flight at a time, then the sum in element order */
        const uint4 *p = (const uint4 *)kr;
        for (int c0 = 0; c0 < hd / 8; c0 += 8) {
            uint4 u[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + j < hd / 8) u[j] = p[c0 + j];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + j < hd / 8) {
                    const int c = c0 + j;
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const uint32_t w = i == 0 ? u[j].x : i == 1 ? u[j].y : i == 2 ? u[j].z : u[j].w;
                        const float2 f = __half22float2(*(const __half2 *)&w);
                        a += qs[8 * c + 2 * i] * f.x;
                        a += qs[8 * c + 2 * i + 1] * f.y;
                    }
                }
        }
    } else {
        const float4 *p = (const float4 *)kr;
        for (int c0 = 0; c0 < hd / 4; c0 += 8) {
            float4 u[8];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + j < hd / 4) u[j] = p[c0 + j];
#pragma unroll
            for (int j = 0; j < 8; j++)
                if (c0 + j < hd / 4) {
                    const float4 f = u[j];
                    const int c = c0 + j;
                    a += qs[4 * c] * f.x;
                    a += qs[4 * c + 1] * f.y;
                    a += qs[4 * c + 2] * f.z;
                    a += qs[4 * c + 3] * f.w;
                }
        }
    }
    return a;
}

/* Where one block finds key/value rows: rows below pos0 in the layer's
 * caches (row stride kvd, head offset ho), rows from nlo on in shared memory
 * (stride hd). esz: bytes per element. */
struct att_rows {
    const char *kc, *vc, *nk, *nv;
    int64_t kvd, ho;
    int pos0, nlo, hd, esz;
    __device__ __forceinline__ const void *k(int p) const {
        return p < pos0 ? kc + ((int64_t)p * kvd + ho) * esz : nk + (int64_t)(p - nlo) * hd * esz;
    }
    __device__ __forceinline__ const void *v(int p) const {
        return p < pos0 ? vc + ((int64_t)p * kvd + ho) * esz : nv + (int64_t)(p - nlo) * hd * esz;
    }
};

/* a[e] += pj * V row[c * ATT_VEC + e], e < ATT_VEC (one 16-byte load for f16). */
static __device__ __forceinline__ void v_axpy(float a[ATT_VEC], float pj, const void *row, int c, int f16) {
    if (f16) {
        uint4 u = *((const uint4 *)row + c);
        const __half2 *h = (const __half2 *)&u;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(h[i]);
            a[2 * i] += pj * f.x;
            a[2 * i + 1] += pj * f.y;
        }
    } else {
#pragma unroll
        for (int e = 0; e < ATT_VEC; e++) a[e] += pj * kv_at(row, (int64_t)c * ATT_VEC + e, 0);
    }
}

/* Where a block of the cluster kernel (forward.cu) finds the key/value rows
 * k0 .. of its chunk: shared tiles, rows rsz bytes apart. */
struct att_tile {
    const char *kt, *vt;
    int k0, rsz;
    __device__ __forceinline__ const void *k(int p) const { return kt + (p - k0) * rsz; }
    __device__ __forceinline__ const void *v(int p) const { return vt + (p - k0) * rsz; }
};

/* acc[g*hd + e] = sum over keys j = g, g+G, ... of p[j] * V[k0 + j][e]: each
 * thread owns ATT_VEC consecutive elements of a row (one 16-byte load for
 * f16), G groups of keys; loads of successive keys are independent. R:
 * att_rows or att_tile. */
template <typename R>
static __device__ __forceinline__ void v_pass(const vz_tgroup &tg, float *acc, const float *p, const R &rows, int k0,
                                              int n, int hd, int f16) {
    const int cols = hd / ATT_VEC, G = tg.nt / cols, c = tg.tid % cols, g = tg.tid / cols;
    float a[ATT_VEC];
#pragma unroll
    for (int e = 0; e < ATT_VEC; e++) a[e] = 0.0f;
    if (g < G) {
#pragma unroll 4
        for (int j = g; j < n; j += G) {
            const void *row = rows.v(k0 + j);
            float pj = p[j];
            v_axpy(a, pj, row, c, f16);
        }
#pragma unroll
        for (int e = 0; e < ATT_VEC; e++) acc[g * hd + c * ATT_VEC + e] = a[e];
    }
}

/* Scores of the rotated query qs against keys k0 .. k0 + n - 1 (rows from
 * R), their softmax (probabilities into sc; *m the max score, *l the sum of
 * probabilities) and the V sums into acc (v_pass), published to the group.
 * Shared by every kernel of the per-query-head form, so they give the same
 * bits. red: 32 floats. tg: the ATT_THREADS = 128 threads of a CTA (every
 * kernel launches them so), 4 warps. The max and the sum are each a warp
 * butterfly, then after one barrier every thread combines the 4 warps'
 * results from red as block_max and block_sum's second butterfly (over
 * lanes 0..3, -FLT_MAX and zeros elsewhere) would: the max in any order
 * (exact), the sum as (r0 + r2) + (r1 + r3), the butterfly's pairs. So the
 * bits are block_max and block_sum's, with 10 shuffles and 3 barriers
 * fewer per chunk: each thread reads back only the scores it wrote, and
 * the max and the sum use their own slots of red (red[0..3], red[4..7]),
 * last read before the barrier that ends the chunk before. On an H200
 * (bench/results/2026-12-02-session44-h200.md, run 4) tinyllama decode
 * went raw +0.5%, lossless +0.2%, q8 +0.9%, q4 +0.6%, llama2-7b level,
 * logits byte-identical. */
template <typename R>
static __device__ __forceinline__ void att_chunk(const vz_tgroup &tg, const float *qs, float *sc, float *red,
                                                 float *acc, const R &rows, int k0, int n, int hd, int f16, float *m_,
                                                 float *l_) {
    static_assert(ATT_THREADS == 128, "att_chunk combines 4 warps");
    const float rs = sqrtf((float)hd);
    const int lane = tg.tid & 31, w = tg.tid >> 5;
    for (int j = tg.tid; j < n; j += tg.nt) sc[j] = dot_row(qs, rows.k(k0 + j), hd, f16) / rs;
    float m = -FLT_MAX;
    for (int j = tg.tid; j < n; j += tg.nt) m = fmaxf(m, sc[j]);
    m = warp_max(m);
    if (lane == 0) red[w] = m;
    tg.sync();
    m = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    float l = 0.0f;
    for (int j = tg.tid; j < n; j += tg.nt) {
        float pe = expf(sc[j] - m);
        sc[j] = pe;
        l += pe;
    }
    l = warp_sum(l);
    if (lane == 0) red[4 + w] = l;
    tg.sync(); /* also publishes sc */
    l = (red[4] + red[6]) + (red[5] + red[7]);
    v_pass(tg, acc, sc, rows, k0, n, hd, f16);
    tg.sync();
    *m_ = m, *l_ = l;
}

/* Element e of a chunk's V sum: att_chunk's G = nt * ATT_VEC / hd partial
 * sums, in order. */
static __device__ __forceinline__ float att_vsum(const float *acc, int G, int hd, int e) {
    float a = 0.0f;
    for (int gg = 0; gg < G; gg++) a += acc[gg * hd + e];
    return a;
}

/* RoPE pair i (head_dim hd) at position pos: its element indices a, b and
 * the cosine and sine of its angle. fr: the pairs' frequencies (hd / 2, a
 * rope_scaling model's: vz_cpu_rope_freqs, the CPU's, computed once on the
 * host), or NULL for theta^(-2i/hd) here. */
struct rope_rot {
    int a, b;
    float c, sn;
};

static __device__ __forceinline__ rope_rot rope_at(int i, int pos, int hd, float theta, const float *fr,
                                                   int interleaved) {
    rope_rot t;
    float freq = fr ? fr[i] : 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    float val = (float)pos * freq;
    t.c = cosf(val), t.sn = sinf(val);
    t.a = interleaved ? 2 * i : i, t.b = interleaved ? 2 * i + 1 : i + hd / 2;
    return t;
}

/* (v0, v1) rotated by t into *r0, *r1. */
static __device__ __forceinline__ void rope_apply(const rope_rot &t, float v0, float v1, float *r0, float *r1) {
    *r0 = v0 * t.c - v1 * t.sn, *r1 = v0 * t.sn + v1 * t.c;
}

/* x, plus element e of bias b when the model has biases (b not NULL; Qwen
 * 2): the CPU's projection, then + bias (forward.c add_bias), then RoPE. */
static __device__ __forceinline__ float with_bias(float x, const float *b, int e) { return b ? x + b[e] : x; }

/* Rotated pair i of vec (head_dim hd; bvec: its bias or NULL) at position
 * pos: indices *a, *b, values *r0, *r1. */
static __device__ __forceinline__ void rope_pair(const float *vec, const float *bvec, int i, int pos, int hd, float theta,
                                                 const float *fr, int interleaved, int *a, int *b, float *r0,
                                                 float *r1) {
    const rope_rot t = rope_at(i, pos, hd, theta, fr, interleaved);
    *a = t.a, *b = t.b;
    rope_apply(t, with_bias(vec[t.a], bvec, t.a), with_bias(vec[t.b], bvec, t.b), r0, r1);
}

static __device__ __forceinline__ void put_kv(void *dst, int64_t i, float v, int f16) {
    if (f16) ((__half *)dst)[i] = __float2half_rn(v);
    else ((float *)dst)[i] = v;
}

struct att_args {
    float *out;
    const float *q, *k, *v;
    char *kc, *vc; /* one layer's caches */
    float *part;
    int32_t *cnt; /* (B, n_heads) chunk counters, zero between launches */
    const int32_t *pos, *slot; /* [batch] vz_att_seqs */
    int64_t slot_bytes;
    int32_t multi;
    int32_t n_heads, n_kv, hd, kv_f16, interleaved;
    float theta;
    const float *freq; /* rope_scaling: the pairs' frequencies (rope_at), else NULL */
    const float *bias; /* Qwen 2: [bq | bk | bv] (att_bias_*), added to q, k, v as they are read; else NULL */
    int32_t chunk; /* keys per block, VZ_ATT_CHUNK_MIN..VZ_ATT_CHUNK */
    int32_t linger; /* cluster kernel: blocks other than rank 0 exit only once rank 0 has their rows */
#ifdef VZ_CUDA_TRACE
    vz_trace_arg tr;
#endif
};

/* The sequence of batch row b of nz. multi: row b is token 0 of its own
 * sequence (lane b); else token qi = b of one sequence (lane 0). pos0: the
 * sequence's first new position; len: the keys row b sees; kc, vc: the
 * sequence's cache slot; last: row b is the sequence's last query, whose
 * blocks store the new K/V rows into the cache. */
struct att_seq {
    int lane, qi, pos0, len;
    char *kc, *vc;
    bool last;
};

static __device__ __forceinline__ att_seq att_seq_of(const att_args &A, int b, int nz) {
    att_seq q;
    q.lane = A.multi ? b : 0, q.qi = A.multi ? 0 : b;
    q.pos0 = A.pos[q.lane], q.len = q.pos0 + q.qi + 1;
    q.kc = A.kc + (int64_t)A.slot[q.lane] * A.slot_bytes, q.vc = A.vc + (int64_t)A.slot[q.lane] * A.slot_bytes;
    q.last = A.multi || b == nz - 1;
    return q;
}

/* The biases of query head h and of kv head kvh's keys and values (NULL
 * when the model has none). */
static __device__ __forceinline__ const float *att_bias_q(const att_args &A, int h) {
    return A.bias ? A.bias + h * A.hd : NULL;
}
static __device__ __forceinline__ const float *att_bias_k(const att_args &A, int kvh) {
    return A.bias ? A.bias + (A.n_heads + kvh) * A.hd : NULL;
}
static __device__ __forceinline__ const float *att_bias_v(const att_args &A, int kvh) {
    return A.bias ? A.bias + (A.n_heads + A.n_kv + kvh) * A.hd : NULL;
}

/* Rotated query of head h (row b, at position pos) into qs. */
static __device__ __forceinline__ void att_rope_q(const att_args &A, const vz_tgroup &tg, int h, int b, int pos,
                                                  float *qs) {
    const int hd = A.hd;
    for (int i = tg.tid; i < hd / 2; i += tg.nt) {
        int a, bb;
        float r0, r1;
        rope_pair(A.q + ((int64_t)b * A.n_heads + h) * hd, att_bias_q(A, h), i, pos, hd, A.theta, A.freq, A.interleaved,
                  &a, &bb, &r0, &r1);
        qs[a] = r0, qs[bb] = r1;
    }
}

/* Item idx of the new rows nlo .. of kv head kvh: pair idx % (hd / 2) of
 * row nlo + idx / (hd / 2). Its position p, the offsets of its key/value
 * row in k, v (src; the sequence's first new row, position pos0, is row0)
 * and in the caches (dst). */
struct att_new_item {
    int p;
    int64_t src, dst;
};

static __device__ __forceinline__ att_new_item att_new_at(const att_args &A, int kvh, int nlo, int pos0, int row0, int idx) {
    const int hd = A.hd, kvd = A.n_kv * hd;
    att_new_item t;
    t.p = nlo + idx / (hd / 2);
    t.src = (int64_t)(row0 + t.p - pos0) * kvd + (int64_t)kvh * hd, t.dst = (int64_t)t.p * kvd + (int64_t)kvh * hd;
    return t;
}

/* Rotated key pair (k0, k1) and value pair (v0, v1) of item it (rotation
 * t) into nk/nv (row p at (p - rb) * rsz bytes), through f16 when the cache
 * is f16 so they read back exactly as stored, and into the slot's caches
 * kc, vc when store. */
static __device__ __forceinline__ void att_new_put(const att_new_item &it, const rope_rot &t, float k0, float k1, float v0,
                                                   float v1, char *kc, char *vc, char *nk, char *nv, int rb, int rsz,
                                                   int f16, bool store) {
    float r0, r1;
    rope_apply(t, k0, k1, &r0, &r1);
    char *kr = nk + (int64_t)(it.p - rb) * rsz, *vr = nv + (int64_t)(it.p - rb) * rsz;
    put_kv(kr, t.a, r0, f16), put_kv(kr, t.b, r1, f16);
    put_kv(vr, t.a, v0, f16), put_kv(vr, t.b, v1, f16);
    if (store) {
        put_kv(kc, it.dst + t.a, r0, f16), put_kv(kc, it.dst + t.b, r1, f16);
        put_kv(vc, it.dst + t.a, v0, f16), put_kv(vc, it.dst + t.b, v1, f16);
    }
}

/* The new key rows nlo .. nlo + nnew - 1 of kv head kvh (rotated) and value
 * rows into nk/nv and the caches (att_new_put), items from skip on. */
static __device__ __forceinline__ void att_new_rows(const att_args &A, const vz_tgroup &tg, int kvh, char *kc, char *vc,
                                                    char *nk, char *nv, int rb, int rsz, int nlo, int nnew, int pos0,
                                                    int row0, bool store, int skip = 0) {
    const int half = A.hd / 2;
    const float *bk = att_bias_k(A, kvh), *bv = att_bias_v(A, kvh);
    for (int idx = skip + tg.tid; idx < nnew * half; idx += tg.nt) {
        const att_new_item it = att_new_at(A, kvh, nlo, pos0, row0, idx);
        const rope_rot t = rope_at(idx % half, it.p, A.hd, A.theta, A.freq, A.interleaved);
        att_new_put(it, t, with_bias(A.k[it.src + t.a], bk, t.a), with_bias(A.k[it.src + t.b], bk, t.b),
                    with_bias(A.v[it.src + t.a], bv, t.a), with_bias(A.v[it.src + t.b], bv, t.b), kc, vc, nk, nv, rb,
                    rsz, A.kv_f16, store);
    }
}

/* Rotated query (row b, the qi-th token of its sequence) into qs; new key
 * rows and value rows of this chunk into nk/nv (rows hd apart), and into
 * the slot's caches kc, vc when this block owns the store (last: the
 * sequence's last query). */
static __device__ void att_stage(const att_args &A, const vz_tgroup &tg, int h, int b, char *kc, char *vc, float *qs,
                                 char *nk, char *nv, int k0, int n, int pos0, int nlo, int qi, int row0, bool last) {
    const int grp = A.n_heads / A.n_kv;
    att_rope_q(A, tg, h, b, pos0 + qi, qs);
    att_new_rows(A, tg, h / grp, kc, vc, nk, nv, nlo, A.hd * (A.kv_f16 ? 2 : 4), nlo, k0 + n - nlo, pos0, row0,
                 last && h % grp == 0);
    tg.sync();
}

/* Rows of partials are merged ATT_MERGE_UNROLL at a time: their loads first
 * (rows past nb load row 0 again, so no load waits on a branch), then the exps, then the
 * sums, where a loop over a run-time count waited on each load and exp in turn. The same
 * operations in the same order: the same bits (H200: tinyllama raw decode +0.3%, the other
 * codecs and llama2-7b level; bench/results/2026-12-02-session46-h200.md). nb >= 1. */
#define ATT_MERGE_UNROLL 8

/* The largest m of nb partial rows of st (pw floats: m, l, acc); exact in
 * any order, and row 0 counted again changes nothing. */
static __device__ __forceinline__ float att_rows_max(const float *st, int nb, int pw) {
    float m[ATT_MERGE_UNROLL], M = -FLT_MAX;
#pragma unroll
    for (int s = 0; s < ATT_MERGE_UNROLL; s++) m[s] = st[(s < nb ? s : 0) * pw];
#pragma unroll
    for (int s = 0; s < ATT_MERGE_UNROLL; s++) M = fmaxf(M, m[s]);
    for (int s = ATT_MERGE_UNROLL; s < nb; s++) M = fmaxf(M, st[s * pw]);
    return M;
}

/* One partial row (m, l, element p) of a merge: w = exp(m - M), then *L +=
 * l * w and, where elem, *o += p * w; a row not taken (row false: past nb)
 * changes neither. */
static __device__ __forceinline__ void att_merge_one(float m, float l, float p, float M, bool row, bool elem, float *L,
                                                     float *o) {
    const float w = expf(m - M), nL = *L + l * w, no = *o + p * w;
    *L = row ? nL : *L;
    *o = row && elem ? no : *o;
}

/* Adds nb partial rows of st (pw floats: m, l, acc) to *L and, element tid < hd, to *o, in row
 * order, each weighted by exp(m - M); shared by both merges (att_combine, forward.cu's cluster
 * kernel): the same bits. The rows past the unrolled ones keep their branch: with att_merge_one
 * there ptxas gave 40 registers, not 48, and decode ran 0.5-1.5% slower (H200, session 47). */
static __device__ __forceinline__ void att_merge_rows(const float *st, int nb, int pw, float M, int hd, int tid,
                                                      float *L, float *o) {
    const int e = tid < hd ? tid : 0;
    float m[ATT_MERGE_UNROLL], l[ATT_MERGE_UNROLL], p[ATT_MERGE_UNROLL];
#pragma unroll
    for (int s = 0; s < ATT_MERGE_UNROLL; s++) {
        const float *row = st + (s < nb ? s : 0) * pw;
        m[s] = row[0], l[s] = row[1], p[s] = row[2 + e];
    }
#pragma unroll
    for (int s = 0; s < ATT_MERGE_UNROLL; s++) att_merge_one(m[s], l[s], p[s], M, s < nb, tid < hd, L, o);
    for (int s = ATT_MERGE_UNROLL; s < nb; s++) {
        const float w = expf(st[s * pw] - M);
        *L += st[s * pw + 1] * w;
        if (tid < hd) *o += st[s * pw + 2 + tid] * w;
    }
}

/* The last chunk block of (h, b): merges the ns partials (rows of hd + 2
 * floats: m, l, acc) in chunk order. They are staged through shared memory
 * st (nst floats), as many whole rows at a time as fit, with every load of
 * a batch in flight at once (one L2 round trip per batch, where a loop over
 * chunks waits on each). Then every thread sums in chunk order as before
 * (M: a max, exact in any order), so the bits do not change. hd <= tg.nt
 * (session_cuda.cu: hd <= 128 = ATT_THREADS). */
static __device__ void att_combine(const att_args &A, const vz_tgroup &tg, int h, int b, const float *p, int ns, float *st,
                                   int nst, float *red) {
    const int hd = A.hd, pw = hd + 2, rows = nst / pw;
    const int n0 = min(ns, rows) * pw; /* the first batch; the partials' m come with it */
    float t[8], M = -FLT_MAX;
    for (int i0 = 0; i0 < n0; i0 += 8 * tg.nt) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * tg.nt + tg.tid < n0) t[k] = __ldcg(p + i0 + k * tg.nt + tg.tid);
        for (int s = rows + tg.tid; i0 == 0 && s < ns; s += tg.nt) M = fmaxf(M, __ldcg(p + (int64_t)s * pw));
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (i0 + k * tg.nt + tg.tid < n0) st[i0 + k * tg.nt + tg.tid] = t[k];
    }
    tg.sync(); /* st holds the first batch */
    for (int s = tg.tid; s < min(ns, rows); s += tg.nt) M = fmaxf(M, st[s * pw]);
    M = block_max(tg, M, red);
    float L = 0.0f, o = 0.0f;
    for (int s0 = 0; s0 < ns; s0 += rows) {
        const int nb = min(rows, ns - s0);
        if (s0 > 0) { /* the next batch */
            tg.sync();
            for (int i0 = 0; i0 < nb * pw; i0 += 8 * tg.nt) {
#pragma unroll
                for (int k = 0; k < 8; k++)
                    if (i0 + k * tg.nt + tg.tid < nb * pw) t[k] = __ldcg(p + (int64_t)s0 * pw + i0 + k * tg.nt + tg.tid);
#pragma unroll
                for (int k = 0; k < 8; k++)
                    if (i0 + k * tg.nt + tg.tid < nb * pw) st[i0 + k * tg.nt + tg.tid] = t[k];
            }
            tg.sync();
        }
        att_merge_rows(st, nb, pw, M, hd, tg.tid, &L, &o);
    }
    if (tg.tid < hd) A.out[((int64_t)b * A.n_heads + h) * hd + tg.tid] = o / L;
}

/* Release the stores of this thread's group and count them (thread 0 after
 * a group barrier, the CUTLASS semaphore pattern); acquire the others'. */
static __device__ __forceinline__ int att_count(int32_t *cnt) {
    int32_t old;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(cnt) : "memory");
    return old;
}

/* Attention block (s, h, b) of a grid of S x n_heads x nz blocks, run by
 * the thread group tg (ATT_THREADS threads) in shared memory sm
 * (vz_att_block_floats floats); last: an int of shared memory. The
 * k_attention kernel runs one per CTA. */
static __device__ void att_block(const att_args &A, const vz_tgroup &tg, int s, int h, int b, int S, int nz, float *sm,
                                 int *last) {
    const int hd = A.hd, f16 = A.kv_f16, esz = f16 ? 2 : 4;
    float *qs = sm, *sc = sm + hd, *red = sc + VZ_ATT_CHUNK, *acc = red + 32; /* acc: ATT_THREADS * ATT_VEC */
    char *nk = (char *)(acc + ATT_THREADS * ATT_VEC), *nv = nk + (size_t)VZ_CUDA_MAX_BATCH * hd * esz;
    const att_seq Q = att_seq_of(A, b, nz);
    const int C = A.chunk, pos0 = Q.pos0, k0 = s * C;
    if (k0 >= Q.len) return; /* the whole group: no barrier is skipped by some threads only */
    const int n = min(C, Q.len - k0), nlo = max(k0, pos0), kvd = A.n_kv * hd;
    att_stage(A, tg, h, b, Q.kc, Q.vc, qs, nk, nv, k0, n, pos0, nlo, Q.qi, Q.lane, Q.last);
    const att_rows R = {Q.kc, Q.vc, nk, nv, kvd, (int64_t)(h / (A.n_heads / A.n_kv)) * hd, pos0, nlo, hd, esz};
    float m, l;
    att_chunk(tg, qs, sc, red, acc, R, k0, n, hd, f16, &m, &l);
    const int G = ATT_THREADS * ATT_VEC / hd, ns = (Q.len + C - 1) / C;
    float *po = A.part + (((int64_t)b * A.n_heads + h) * S + s) * (hd + 2);
    for (int e = tg.tid; e < hd; e += tg.nt) {
        const float a = att_vsum(acc, G, hd, e);
        if (ns == 1) A.out[((int64_t)b * A.n_heads + h) * hd + e] = a / l; /* = the merge of one chunk */
        else po[2 + e] = a;
    }
    if (ns == 1) return;
    if (tg.tid == 0) po[0] = m, po[1] = l;
    tg.sync();
    int32_t *cnt = A.cnt + (int64_t)b * A.n_heads + h;
    if (tg.tid == 0) *last = att_count(cnt) == ns - 1;
    tg.sync(); /* orders the group's partial loads after thread 0's acquire */
    if (!*last) return;
    if (tg.tid == 0) *cnt = 0; /* every other block of (h, b) has counted */
    att_combine(A, tg, h, b, A.part + ((int64_t)b * A.n_heads + h) * S * (hd + 2), ns, acc, ATT_THREADS * ATT_VEC, red);
}

/* Floats of att_block's shared memory (the new K/V rows as floats' worth of bytes, rounded up). */
static __host__ __device__ __forceinline__ int vz_att_block_floats(int hd, int kv_f16) {
    return hd + VZ_ATT_CHUNK + 32 + ATT_THREADS * ATT_VEC + (2 * VZ_CUDA_MAX_BATCH * hd * (kv_f16 ? 2 : 4) + 3) / 4;
}

#endif
