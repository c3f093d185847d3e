/*
 * forward.cuh - launchers of the non-matmul kernels of the GPU forward pass
 * (forward.cu): RMSNorm, attention (RoPE + KV cache store + split-context
 * attention + merge in one kernel) for up to VZ_CUDA_MAX_BATCH queries,
 * argmax and top-k/top-p sampling. All are launched with programmatic
 * dependent launch (PDL), so they overlap the matvec before them. Every launcher reads the first
 * position from device memory (d_pos), so a captured CUDA graph replays at
 * any position. CPU references: src/backend/cpu/ops.c and src/model/.
 */
#ifndef VZ_BACKEND_CUDA_FORWARD_CUH
#define VZ_BACKEND_CUDA_FORWARD_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#define VZ_CUDA_MAX_BATCH 8
/* Keys per attention block (chunk, a runtime choice in [MIN, MAX]; out of
 * range: the variant's default). Variants 0 and 3: a context of n keys runs
 * in ceil(n / chunk) chunks per (query, head), their partials merged in
 * chunk order (128: one chunk per block of variant 0's 8-block cluster up
 * to 1024 keys; on an H200 at 512-640 positions 128 keys in clusters of 8
 * beat 64 keys in clusters of 8 or 16: bench/results/2026-11-29-session8-h200.md;
 * a build allowing 256 keys ran tinyllama 984 against 826 us per token at
 * 256: -session16-h200.md).
 * Variant 1: a fixed number of splits per (query, kv head), each of at least
 * chunk keys (KV_CHUNK_DEFAULT) and more at long contexts. */
#define VZ_ATT_CHUNK 128
#define VZ_ATT_CHUNK_MIN 32
#define VZ_ATT_CHUNK_DEFAULT 128
#define VZ_ATT_KV_CHUNK_DEFAULT 32

/* out[b] = w * x[b] / rms(x[b]) for b < B. */
void vz_k_rmsnorm(const float *x, float *out, const float *w, int32_t B, int32_t dim, float eps, cudaStream_t st);

/* Causal attention of one layer: out (B, n_heads*hd) for queries q at
 * positions *d_pos + b, with RoPE applied here to q and to the new keys k,
 * at theta^(-2i/hd) or, for a rope_scaling model, at freq[i] (device, hd/2
 * floats: vz_cpu_rope_freqs), after adding Qwen 2's biases (bias: device
 * [bq | bk | bv], n_heads*hd + 2 n_kv*hd floats, or NULL) to q, k and v as
 * they are read, which are stored with the values v into the layer's caches at those
 * positions (f16 when kv_f16, else f32; layout (n_ctx, n_kv*hd)); q, k, v
 * stay unrotated. part: scratch of vz_att_part_floats() floats; cnt:
 * vz_att_counters() ints, zeroed once (each launch leaves them zero). n_ctx
 * fixes the grid (so graphs are position independent). One kernel.
 * [batch] The caches kc, vc hold KV slots slot_bytes apart; one sequence
 * (multi 0) uses slot d_slot[0]. multi 1: row b is the one new token of its
 * own sequence, at position d_pos[b] in slot d_slot[b]; each row's result
 * is bitwise that of a B = 1 launch for its sequence alone. */
size_t vz_att_part_floats(int32_t B, int32_t n_heads, int32_t hd, int32_t n_ctx);
size_t vz_att_counters(int32_t B, int32_t n_heads);
typedef struct vz_att_seqs {
    const int32_t *d_pos, *d_slot; /* device: (B) when multi, else [0] */
    int64_t slot_bytes;            /* bytes from one KV slot to the next in kc (and vc) */
    int32_t multi;
} vz_att_seqs;
/* Trace builds (make CUDA_TRACE=1) only, a no-op in others: a launch of one
 * warp that triggers, waits (PDL) and stamps, so the trace shows when the
 * launch before it completes as a dependent's wait sees it; labelled
 * "probe after <after>". VZ_CUDA_TRACE_PROBE (session_cuda.cu) places it. */
void vz_k_probe(char after, cudaStream_t st);
void vz_k_attention(float *out, const float *q, const float *k, const float *v, void *kc, void *vc, float *part,
                    int32_t *cnt, const vz_att_seqs *sq, int32_t B, int32_t n_heads, int32_t n_kv, int32_t hd,
                    int32_t n_ctx, int32_t kv_f16, float theta, const float *freq, int32_t interleaved,
                    const float *bias, int32_t chunk, int32_t variant, int32_t linger, int32_t late, int32_t room,
                    cudaStream_t st);
/* The attention variants (VZ_CUDA_ATT), timed by the session profiler: 0
 * (default) one block per (chunk, query head, query), the chunk blocks of a
 * (head, query) in one thread block cluster that merges their partials in
 * shared memory (at most 8 blocks, each taking every cs-th chunk; the size
 * with the fewest rounds of clusters, so a large model's clusters fit at
 * once; VZ_CUDA_ATT_CLUSTER sets the cap); 1 one block per (split, kv
 * head, query) for all query heads of the kv head (slower than 0 in its
 * first form, the tiled form not yet timed: see forward.cu); 2 launches
 * nothing (a timing knob only: its results are wrong); 3 variant 0's
 * blocks merging through global memory (part, cnt), the same bits as 0.
 * The QKV matvec before variant 0 must be launched late
 * (vz_cuda_matvec_multi_norm). Variant 1 falls back to 0, and 0 to 3, when
 * its shared memory (or cluster) cannot be had. Name NULL past the end.
 * late (variant 0): its blocks let the next launch in (PDL) only after
 * their staging, not at entry (session_cuda.cu att_late_for); the bits do
 * not change.
 * room (variant 0, VZ_ATT_ROOM_*): the shared memory each block asks for
 * at least, so that fewer blocks share an SM and the cluster scheduler
 * spreads them over more SMs (session_cuda.cu att_room_for); the cluster
 * size is still chosen for the kernel's own need, and the bits do not
 * change. */
enum {
    VZ_ATT_ROOM_OWN = 0,   /* what the kernel needs */
    VZ_ATT_ROOM_THIRD = 1, /* 2/7 of an SM's: at most 3 blocks per SM */
    VZ_ATT_ROOM_HALF = 2   /* half an SM's less 4 KiB: 2 per SM, 1 beside another kernel's block of over 8 KiB */
};
int vz_att_n_variants(void);
const char *vz_att_variant_name(int v);

/* Sampler settings of each lane (one block per lane, below). */
typedef struct vz_sample_lanes {
    float temp[VZ_CUDA_MAX_BATCH];
    int32_t top_k[VZ_CUDA_MAX_BATCH];
    float top_p[VZ_CUDA_MAX_BATCH];
    uint64_t seed[VZ_CUDA_MAX_BATCH];
} vz_sample_lanes;

/* Picks the next token of each of `lanes` sequences from its logits (lane
 * b: logits + b * vocab): argmax when temp <= 0 (lowest id on ties), else
 * top-k / top-p sampling at temperature temp with a counter-based RNG (seed,
 * d_step[b]). Writes the id to d_tok[b] (the next step's input) and
 * d_out[b * out_cap + d_step[b]], increments d_step[b] and advances d_pos[b]
 * by adv (the tokens just evaluated). Lanes are independent: lane b's pick
 * is bitwise that of a one-lane launch with its logits and settings.
 * keys (NULL: none): the head's greedy keys of these logits (cuda.h
 * vz_cuda_matvec_head; lane b's slots from b * VZ_GREEDY_SLOTS), which give
 * the argmax (and the max, for sampling) without a scan; zeroed here. */
void vz_k_sample(const float *logits, unsigned long long *keys, int32_t lanes, int32_t vocab, const vz_sample_lanes *p,
                 int32_t *d_tok, int32_t *d_out, int32_t *d_step, int32_t *d_pos, int32_t adv, int32_t out_cap,
                 cudaStream_t st);

/* *d_pos += adv (the end of a step that samples nothing). */
void vz_k_advance(int32_t *d_pos, int32_t adv, cudaStream_t st);

#endif
