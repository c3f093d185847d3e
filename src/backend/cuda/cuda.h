/*
 * cuda.h - the C-callable surface of the CUDA backend (compiled only when
 * nvcc is available; guarded by VZ_HAVE_CUDA in C callers).
 */
#ifndef VZ_BACKEND_CUDA_H
#define VZ_BACKEND_CUDA_H

#include <stdint.h>

#include "vramzip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (0 when no driver or no GPU). */
int vz_cuda_device_count(void);
/* Device name into buf; 0 on success. */
int vz_cuda_device_name(int dev, char *buf, int cap);
/* Its streaming multiprocessors (0 on error). */
int vz_cuda_sm_count(int dev);

/* ---- compressed weights + fused decode/matvec (cuda_weights.cu, matvec.cu;
 * owner: mv) ----------------------------------------------------------------
 * A tensor lives in VRAM in its encoded form (never expanded); the matvec
 * decodes it in registers. All fmaf kernels share one accumulation order
 * (lane l of a warp owns 32-element group 32*it + l of the row, fmaf in
 * element order, then a fixed xor-butterfly), and the tensor-core kernel
 * (tc tensors, matvec_tc.cu) one of its own, so raw and lossless encodings
 * of the same weights uploaded alike give bitwise identical outputs. */
struct vz_tensor;

/* Widest rows of the tensor-core path (its staged x must fit in shared memory). */
#define VZ_CUDA_TC_MAX_COLS 24576
/* The q8 and q4 rows that take the integer dot-product matvec by default
 * (dp below), and the widest it takes (one staged row of x must fit a block);
 * a tensor of VZ_CUDA_DP_MIN_ROWS rows or more takes it at any width. */
#define VZ_CUDA_DP_MIN_COLS 4096
#define VZ_CUDA_DP_MAX_COLS 24576
#define VZ_CUDA_DP_MIN_ROWS 4096

/* vz_cuda_tensor.kind values that C code tests (decode.cuh's VZ_K_*). */
#define VZ_CUDA_KIND_LL3 1     /* lossless bf16 packed3: the fused matvec's fast path */
#define VZ_CUDA_KIND_GENERIC 4 /* any codec through its generic decoder */
#define VZ_CUDA_KIND_LL4 7     /* lossless bf16 packed4, sign-symmetric lut */
#define VZ_CUDA_LL_GPU4 3      /* a VZ_CUDA_KIND_LL4 copy's code layout: packed4 (the file's layout 2) in the GPU
                                  sign order (codec/lossless_tile.h vz_ll4_gpu_word) */
#define VZ_CUDA_RAW_GPU 16     /* a raw bf16 copy of the fast path (resident, streamed or cached): its columns
                                  in the GPU order (vz_cuda_gpu_col); no other codec's layout value */

typedef struct vz_cuda_tensor {
    int64_t rows, cols;
    int32_t dtype;           /* vz_dtype of the source elements */
    int32_t codec;           /* codec id (codecs.def) */
    int32_t kind;            /* kernel path chosen at upload (decode.cuh VZ_K_*: VZ_CUDA_KIND_* below) */
    int32_t k, layout;       /* lossless: code bits, code layout of the device copy (the file's, or
                                VZ_CUDA_LL_GPU4); q4: layout 1 = asymmetric; raw: 0 row-major as the file,
                                or VZ_CUDA_RAW_GPU */
    int32_t bpr;             /* lossless: exception blocks per row (the codec's geometry, vz_lossless_sections) */
    int32_t group;           /* q8, q4: elements per scale */
    uint32_t qdiv;           /* q8, q4 fast kinds: vz_cuda_q_divider's qmul << 5 | qsh (0: generic) */
    uint8_t *data;           /* device: the encoded blob (owned) */
    uint8_t *lut;            /* device: lossless lut, 2^k bytes (owned) */
    uint64_t size;           /* encoded bytes (what a matvec reads) */
    uint64_t off[4];         /* section offsets in data (codec-specific) */
    uint32_t lut_lo, lut_hi; /* lossless k = 3: lut as two words for prmt */
    int32_t tc;              /* matvecs run the tensor-core kernel (matvec_tc.cu): bf16 raw or lossless,
                                rows % 8 == 0, cols % 128 == 0, when VZ_CUDA_MV_TC is set at upload */
    int32_t tiled;           /* lossless with tc: the device copy lists exceptions in GPU tile order */
    int32_t dp;              /* q8, q4 fast path: matvecs sum by integer dot products (mv4.cuh's mv4_dp), set
                                at upload for rows of at least VZ_CUDA_DP_MIN_COLS (VZ_CUDA_MV_DP: any) in a
                                model whose every matrix has that many (vz_cuda_tensor_upload_at's mcols), and
                                for tensors of at least VZ_CUDA_DP_MIN_ROWS rows */
    int32_t owned;           /* data and lut are this tensor's own allocations (vz_cuda_tensor_upload) */
} vz_cuda_tensor;

/* Uploads t (already passed vz_tensor_check or does so here) in its encoded
 * form: d gets owned device copies; the host buffers stay borrowed and may
 * be freed on return. VZ_ERR_UNSUPPORTED for codecs with no GPU decoder.
 * A tiled tensor's copy has its exception list in GPU tile order, a
 * VZ_CUDA_KIND_LL4 tensor's its code words in the GPU sign order
 * (vz_cuda_tensor_image). */
vz_status vz_cuda_tensor_upload(vz_cuda_tensor *d, const struct vz_tensor *t, void *stream);
/* As vz_cuda_tensor_upload, for a tensor of a model whose narrowest matrix
 * has mcols columns (its dim; 0: the tensor alone, as above), which the
 * path may depend on (dp below), and into dev (vz_plan_tensor_bytes(t)
 * bytes of the caller's, model/plan.h; e.g. one allocation for a whole
 * model: no allocator rounding per tensor; d does not own it), or with dev
 * NULL into allocations of d's own. */
vz_status vz_cuda_tensor_upload_at(vz_cuda_tensor *d, const struct vz_tensor *t, int64_t mcols, uint8_t *dev,
                                   void *stream);
/* [st] d described as vz_cuda_tensor_upload_at would (mcols alike), without
 * device memory (d->data, d->lut NULL: the caller points them into its own
 * buffer, which must then hold the bytes vz_cuda_tensor_image gives, e.g.
 * raw bf16 in the GPU column order: the layer streaming and cache of
 * stream.cu). */
vz_status vz_cuda_tensor_describe(vz_cuda_tensor *d, const struct vz_tensor *t, int64_t mcols);
/* The device bytes of t as d (from vz_cuda_tensor_describe or an upload)
 * holds them into dst (d->size bytes, host): t's blob, tiled: in GPU tile
 * order, VZ_CUDA_LL_GPU4: in the GPU sign order, VZ_CUDA_RAW_GPU: in the
 * GPU column order. */
vz_status vz_cuda_tensor_image(const vz_cuda_tensor *d, const struct vz_tensor *t, uint8_t *dst);
/* Puts d's device bytes, raw bf16 rows in the file's order (a decode into
 * d->data), into the GPU column order in place, asynchronously on stream,
 * when d->layout is VZ_CUDA_RAW_GPU; else nothing. */
vz_status vz_cuda_raw_gpu_order(const vz_cuda_tensor *d, void *stream);
/* Frees d's device memory; zeroed d and NULL are fine. */
void vz_cuda_tensor_free(vz_cuda_tensor *d);
/* The GPU column order of a bf16 row of cols columns (cols % 32 == 0):
 * where column c lies. Each 1024-column block keeps its place; in a block
 * of n 32-column lane groups (32, or the rest of the row), the 8 columns
 * 8j .. 8j + 7 of group l lie at 8 (j n + l). A warp step of the fmaf
 * kernels (lane l: group l, as 4 loads of 16 bytes) then reads 4 runs of
 * 16 n contiguous bytes instead of 4 loads that each touch 32 lanes' lines:
 * the same values in the same lanes, so the same bits, with a quarter of
 * the L1 wavefronts. Raw bf16 tensors of the fast path are kept in it,
 * resident, streamed or decoded into the layer cache (VZ_CUDA_RAW_GPU,
 * unless VZ_CUDA_MV_ROWMAJOR or tc at upload or description; not the
 * lossless-max stream's decoded slot, stream.cu), and
 * the prefill GEMMs' operands of such widths are laid out in it (gemm.h). */
int64_t vz_cuda_gpu_col(int64_t cols, int64_t c);
/* The q8/q4 fast paths' scale group of lane group g (decode.cuh vz_qgroup):
 * *qdiv = qmul << 5 | qsh with g * qmul >> qsh == g / (group / 32) for every
 * g < ceil(cols / 32), in 32 bits; 0 where no such pair exists (the tensor
 * takes the generic path). Host only, no device needed. */
int vz_cuda_q_divider(int64_t cols, int32_t group, uint32_t *qdiv);

/* Epilogues of the fused matvec. */
enum {
    VZ_CUDA_EPI_NONE = 0,    /* y = W x */
    VZ_CUDA_EPI_ADD = 1,     /* y = y + W x (residual) */
    VZ_CUDA_EPI_SILU_MUL = 2 /* two tensors (gate, up): y0 = silu(Wg x) * (Wu x) */
};

/* d_y[b*rows + r] = sum_c W[r,c] * d_x[b*cols + c], b < batch (1..8), f32
 * in/out with f32 accumulation; asynchronous on stream (cudaStream_t or
 * NULL). d_x and d_y are device pointers; d_x 16-byte aligned for the fast
 * paths (any alignment works). */
vz_status vz_cuda_matvec(float *d_y, const float *d_x, int batch, const vz_cuda_tensor *W, void *stream);

/* n (1..3) tensors with the same cols sharing one input in ONE launch
 * (QKV, gate+up). epi: VZ_CUDA_EPI_*; for SILU_MUL n == 2, W[0] and W[1]
 * have the same rows and only d_y[0] is written. Results are bitwise equal
 * to n separate vz_cuda_matvec calls (then the epilogue in f32). */
vz_status vz_cuda_matvec_multi(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x, int batch,
                               int epi, void *stream);

/* vz_cuda_matvec_multi of RMSNorm(x): x_n[b, c] = nw[c] * (x[b, c] * s_b),
 * s_b = 1 / sqrt(mean(x[b]^2) + eps), bitwise as vz_k_rmsnorm (forward.cu)
 * writes it. Fused into the v4 kernel's staging of x (no launch, no xb
 * round trip) when that kernel runs; otherwise the norm is written into d_xb
 * (batch * cols floats) first. Results equal norm-then-matvec bitwise.
 * late: the kernel lets the next one launch (PDL) only after its own wait,
 * so that one may read what every kernel before this matvec wrote before
 * waiting itself (the decode attention after QKV: forward.cuh). */
vz_status vz_cuda_matvec_multi_norm(int n, const vz_cuda_tensor *const *W, float *const *d_y, const float *d_x,
                                    int batch, int epi, const float *nw, float eps, float *d_xb, int late,
                                    void *stream);

/* The output head: vz_cuda_matvec_multi_norm of one tensor, epilogue
 * NONE. At batch 1, where the v4 kernel runs row pairs (*keyed = 1; else 0,
 * keys untouched), it also leaves the greedy pick in keys: each warp puts
 * the largest vz_greedy_key(v, r) (matvec.cuh) of its rows r (logits v)
 * into one of VZ_GREEDY_SLOTS slots, VZ_GREEDY_STRIDE apart, by atomicMax,
 * so the largest slot is the largest logit at the lowest row, as a scan
 * with strict > in row order picks it; 0: no logit above -inf. keys hold
 * 0 before the launch; the decode step's sampler (vz_k_sample) reads and
 * zeroes them. */
#define VZ_GREEDY_SLOTS 32
#define VZ_GREEDY_STRIDE 16 /* 128 bytes: a slot per cache line, so the warps' atomics spread over L2 */
vz_status vz_cuda_matvec_head(const vz_cuda_tensor *W, float *d_y, const float *d_x, int batch, const float *nw,
                              float eps, float *d_xb, unsigned long long *keys, int *keyed, void *stream);

/* Kernel variant flags (bench, tests, VZ_CUDA_MV; default V4). TC, read at
 * upload, sets tc on the tensors it fits (see vz_cuda_tensor): they always
 * run the tensor-core kernel (faster at batch 2-8, slower at batch 1 for
 * lossless: bench/results/2026-11-28-matvec-tc-h200.md); the flags below
 * choose among the fmaf kernels. V4 runs the kernel
 * with x staged in shared memory (batch * cols * 4 <= 96 KiB, else the
 * others run); LEGACY runs the first kernel (f32 decode, one-group
 * prefetch), else v2; NO_PDL launches without programmatic dependent
 * launch; OCC4 caps batch-1 registers of v2 for 4 blocks per SM. At
 * batch 1, and at batches of 2-8 in the wide kernel, a v4 warp runs one
 * row at a time when the launch has few rows (matvec.cu mv4_plan; row pairs
 * otherwise, gate + up rows with silu); PAIRS runs pairs there too (the v4
 * kernel before session 9 at batch 1, before session 65 at 2-8). At batch
 * 1 the v4 grid has 2 blocks per SM, or 3 for lossless and q8 launches of
 * few steps per warp (mv4_plan); OCC_ALT swaps the two.
 * The old default is LEGACY | NO_PDL (3). All variants give bitwise equal
 * results. DP and NO_DP act at upload, like TC: q8 and q4 tensors (fast path) of
 * any width up to VZ_CUDA_DP_MAX_COLS, or none, take the integer
 * dot-product kernel (dp above), which every variant then runs; its sums
 * differ from the fmaf kernels' within a derived bound
 * (tests/test_cuda_matvec.c), and a dp tensor gives the same bits at
 * every batch and variant. ROWMAJOR acts at upload too: raw bf16 tensors
 * keep the file's row-major order instead of the GPU column order
 * (vz_cuda_gpu_col; the same bits, the timing of the order before). flags
 * < 0 only reads; returns the previous flags. */
enum { VZ_CUDA_MV_LEGACY = 1, VZ_CUDA_MV_NO_PDL = 2, VZ_CUDA_MV_OCC4 = 4, VZ_CUDA_MV_V4 = 8, VZ_CUDA_MV_TC = 16,
       VZ_CUDA_MV_PAIRS = 32, VZ_CUDA_MV_OCC_ALT = 64, VZ_CUDA_MV_DP = 128, VZ_CUDA_MV_NO_DP = 256,
       VZ_CUDA_MV_ROWMAJOR = 512 };
int vz_cuda_matvec_variant(int flags);

/* out[i*cols + c] = W[ids[i], c] as f32 for i < n (embedding lookup); d_ids
 * on the device, ids outside [0, rows) give rows of NaN. */
vz_status vz_cuda_rows(float *d_out, const int32_t *d_ids, int n, const vz_cuda_tensor *W, void *stream);
/* The same for the B (1..8) tokens of a decode step, in its launch form:
 * programmatic dependent launch, so the step's first matvec (PDL) may
 * start its weight loads while this waits for the sampler that wrote
 * d_ids, and the step's shared-memory carveout (matvec.cuh). */
vz_status vz_cuda_rows_step(float *d_out, const int32_t *d_ids, int B, const vz_cuda_tensor *W, void *stream);

/* The decode attention's launches so far in this process (for tests): in
 * thread block clusters (variant 0; a launch that cannot have its clusters
 * runs variant 3, with the same bits), and of those, launches whose blocks
 * ask for more shared memory than they need (their room, forward.cuh). */
void vz_cuda_att_launches(uint64_t *cluster, uint64_t *padded);

/* Small runtime helpers so C tests and tools need no CUDA headers. */
void *vz_cuda_alloc(size_t bytes);   /* device memory or NULL */
void vz_cuda_release(void *p);
/* kind: 0 host->device, 1 device->host, 2 device->device; synchronous (the data has landed on return). */
vz_status vz_cuda_copy(void *dst, const void *src, size_t bytes, int kind);
vz_status vz_cuda_fill_f32(float *d, float v, size_t n); /* synchronous */
vz_status vz_cuda_sync(void);

/* ---- device session (session_cuda.cu; owner: fw) -------------------------
 * The whole forward pass on the GPU: weights uploaded in their encoding, KV
 * cache on the device, decode steps replayed from CUDA graphs. Called by
 * src/model/session.c for VZ_DEVICE_CUDA; positions are kept by the caller. */
struct vz_model;
typedef struct vz_cuda_session vz_cuda_session;

void vz_cuda_session_free(vz_cuda_session *s);

/* Evaluates n valid tokens of sequence seq (its KV slot, [batch]) at
 * positions pos..pos+n-1 (caller checked n_ctx). logits: NULL, n*vocab
 * (all) or vocab (last) floats. */
vz_status vz_cuda_session_eval(vz_cuda_session *s, int32_t seq, const int32_t *tokens, int32_t n, int32_t pos,
                               float *logits, int32_t all_logits);

/* Feeds `first` at pos of sequence seq, then n-1 sampled tokens after it,
 * sampling on the device with no host round trip per token; out gets the n
 * sampled ids. */
vz_status vz_cuda_session_generate(vz_cuda_session *s, int32_t seq, int32_t first, int32_t pos, int32_t n,
                                   const vz_sampler_opts *so, int32_t *out);

/* [batch] One decode step of B distinct sequences seqs[b] together: token
 * tokens[b] at position pos[b] of each; logits NULL or (B, vocab). Row b is
 * bitwise the logits of that token evaluated alone (eval, n = 1). */
vz_status vz_cuda_session_step_batch(vz_cuda_session *s, int32_t B, const int32_t *seqs, const int32_t *tokens,
                                     const int32_t *pos, float *logits);

/* [batch] vz_cuda_session_generate for B distinct sequences at once (one
 * batched step per token, sampler so[b] for sequence seqs[b]); out gets
 * (B, n) ids, row b bitwise those of sequence seqs[b] generated alone. */
vz_status vz_cuda_session_generate_batch(vz_cuda_session *s, int32_t B, const int32_t *seqs, const int32_t *first,
                                         const int32_t *pos, int32_t n, const vz_sampler_opts *so, int32_t *out);

/* Uploads m's weights in their encoding and allocates n_seq (1..8) KV
 * cache slots of n_ctx positions (f16 or f32), under a plan
 * (vz_session_plan): residency a vz_residency
 * (decompress-at-load: every tensor decoded on the host once, lossless to its
 * source dtype, lossy to f32, and uploaded raw); layers n_resident.. stream
 * from pinned host memory each step (residency cache: n_resident
 * decoded-layer cache slots). */
vz_status vz_cuda_session_create_plan(vz_cuda_session **out, const struct vz_model *m, int32_t n_ctx, int32_t n_seq,
                                      int32_t kv_f16, int32_t residency, int32_t n_resident);

/* [plan] Free and total memory of GPU 0 (cudaMemGetInfo). */
vz_status vz_cuda_mem_free(uint64_t *free_bytes, uint64_t *total_bytes);

/* Debug trace (vz_session_set_trace): with buf (host, n_layers * 2 * dim
 * floats) set, eval runs eagerly (no graph) and copies the residual stream
 * of its last row after each attention and MLP block into buf; NULL stops. */
void vz_cuda_session_set_trace(vz_cuda_session *s, float *buf);

/* VRAM held by the session (see vz_session_mem in vramzip.h). */
vz_status vz_cuda_session_mem(vz_cuda_session *s, vz_session_mem *out);

/* Seconds plain cuBLAS takes for the prefill GEMMs of n tokens (chunks of
 * VZ_PLAN_PREFILL_CAP) on this session's raw bf16 weights: per layer one
 * cublasGemmEx per op (QKV, Wo, gate/up, down; stacked when contiguous), no
 * decode, attention or norms; median of 5 timed runs after one warm-up.
 * VZ_ERR_UNSUPPORTED unless every layer is resident raw bf16 and cuBLAS loads. */
vz_status vz_cuda_session_prefill_ref(vz_cuda_session *s, int32_t n, double *seconds);

/* GPU 0's name and memory; with measure_bw, the median of 10 timed 1 GiB
 * device-to-device copies as (read + write) GB/s (else 0). */
vz_status vz_cuda_device_probe(int32_t measure_bw, vz_device_info *out);

#ifdef __cplusplus
}
#endif

#endif
