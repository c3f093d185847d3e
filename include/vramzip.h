/*
 * vramzip.h - the one public header of libvramzip.
 *
 * vramzip runs Llama-family language models whose weights stay compressed in
 * memory (RAM or VRAM) and are decoded inside the matrix kernels. Lossless
 * codecs give logits bitwise identical to the uncompressed model.
 *
 * Conventions: every fallible call returns vz_status (0 ok, negative error,
 * numbers stable across versions); vz_last_error() then holds a message with
 * the file and field at fault. Handles are opaque; x_open and x_create allocate,
 * x_close and x_free release and accept NULL. The library never exits or aborts on
 * bad input and keeps no global mutable state besides a thread-local message.
 */
#ifndef VRAMZIP_H
#define VRAMZIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VZ_VERSION_STRING "0.1.0"

/* ---- status ------------------------------------------------------------ */

typedef enum vz_status {
    VZ_OK              = 0,
    VZ_ERR_ARG         = -1,  /* bad argument from the caller (flag, option) */
    VZ_ERR_IO          = -2,  /* open, read, write, mmap or rename failed */
    VZ_ERR_NOMEM       = -3,  /* allocation failed or size absurd */
    VZ_ERR_FORMAT      = -4,  /* malformed file: a field is invalid */
    VZ_ERR_TRUNCATED   = -5,  /* file shorter than its own headers say */
    VZ_ERR_UNSUPPORTED = -6,  /* valid but unsupported (dtype, arch, type) */
    VZ_ERR_SHAPE       = -7,  /* tensor shape disagrees with the config */
    VZ_ERR_MAGIC       = -8,  /* not the file type expected */
    VZ_ERR_VERSION     = -9,  /* file version newer than this library */
    VZ_ERR_CHECKSUM    = -10, /* stored checksum does not match the data */
    VZ_ERR_CODEC       = -11, /* unknown codec id or invalid codec params */
    VZ_ERR_CONTEXT     = -12, /* context window is full */
    VZ_ERR_CUDA        = -13, /* CUDA runtime or kernel failure */
    VZ_ERR_MISMATCH    = -14, /* verify: two models' outputs differ */
    VZ_ERR_INTERRUPTED = -15, /* interrupted by a signal; nothing written */
    VZ_ERR_NOT_FOUND   = -16  /* a named file or tensor is missing */
} vz_status;

/* Stable name of a status, e.g. "VZ_ERR_FORMAT". Never NULL. */
const char *vz_status_name(vz_status s);

/* Message of the last failure on this thread ("" if none). The pointer stays
 * valid until the next failing call on the same thread. */
const char *vz_last_error(void);

/* ---- tokenizer --------------------------------------------------------- */

typedef struct vz_tokenizer vz_tokenizer;

/* Opens a SentencePiece tokenizer.model (protobuf), a llama2.c tokenizer.bin
 * or a Hugging Face tokenizer.json with a byte-level BPE (Llama 3, Qwen 2,
 * GPT-2; detected by content). *out is owned by the caller: vz_tokenizer_close. */
vz_status vz_tokenizer_open(vz_tokenizer **out, const char *path);
void vz_tokenizer_close(vz_tokenizer *t);

int32_t vz_tokenizer_vocab_size(const vz_tokenizer *t);
int32_t vz_tokenizer_bos(const vz_tokenizer *t);
int32_t vz_tokenizer_eos(const vz_tokenizer *t);

/* Encodes len bytes of UTF-8 text like SentencePiece's encoder (BPE with
 * byte fallback), or a tokenizer.json's like Hugging Face tokenizers (added
 * tokens in the text are matched). Prepends BOS when add_bos (byte-level:
 * when its post-processor's template has one). Writes at most cap ids; *n_out
 * gets the count needed, so a call with cap too small fails with VZ_ERR_ARG
 * and tells the size to retry with. */
vz_status vz_tokenizer_encode(const vz_tokenizer *t, const char *text, size_t len,
                              int add_bos, int32_t *ids, int32_t cap, int32_t *n_out);

/* The raw piece of a token (U+2581 already turned into a space, byte tokens
 * as "<0xAB>"; byte-level BPE: the bytes it decodes to, possibly part of a
 * UTF-8 character, cut at a NUL byte). Borrowed; valid while t lives. NULL
 * when id is out of range. */
const char *vz_tokenizer_piece(const vz_tokenizer *t, int32_t id);

/* Streaming detokenizer: feeds ids, emits whole UTF-8 characters only
 * (byte-fallback tokens are reassembled). */
typedef struct vz_detok {
    const vz_tokenizer *tok;
    int32_t prev;          /* previous id; -1 at start of text */
    uint8_t pending[8];    /* bytes of an incomplete UTF-8 sequence */
    int32_t n_pending;
} vz_detok;

void vz_detok_init(vz_detok *d, const vz_tokenizer *t);
/* Writes the text for id into buf (NUL-terminated, at most cap bytes incl.
 * NUL) and returns its length, or a negative vz_status. */
int32_t vz_detok_next(vz_detok *d, int32_t id, char *buf, int32_t cap);
/* Flushes pending bytes (invalid sequences become U+FFFD). */
int32_t vz_detok_flush(vz_detok *d, char *buf, int32_t cap);

/* ---- model ------------------------------------------------------------- */

typedef struct vz_model vz_model;

typedef struct vz_model_opts {
    const char *tokenizer_path; /* tokenizer for formats that lack one (llama2.c .bin); NULL: auto */
    int32_t check;              /* 1: verify every tensor checksum at load (.vz) */
} vz_model_opts;

void vz_model_opts_default(vz_model_opts *o);

/* Opens a model: a Hugging Face directory (config.json + safetensors), a GGUF
 * file, a llama2.c .bin or a vramzip .vz, detected by content. Weights are
 * memory-mapped and stay in their stored encoding. *out owned by the caller. */
vz_status vz_model_open(vz_model **out, const char *path, const vz_model_opts *opts);
void vz_model_close(vz_model *m);

typedef struct vz_model_info {
    char format[16];       /* "hf", "gguf", "llama2c", "vz" */
    char arch[32];         /* "llama", "mistral", ... */
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim;
    int32_t vocab_size, max_seq_len;
    float rms_eps, rope_theta;
    int32_t rope_interleaved;  /* 1: adjacent pairs (llama2.c, GGUF); 0: rotate-half (HF) */
    int32_t tied_embeddings;
    int32_t bos_id, eos_id;
    int32_t n_eos;             /* ids that end generation: eos_ids[0..n_eos), eos_id among them (0: none) */
    int32_t eos_ids[8];
    char rope_scaling[16];     /* Hugging Face rope_scaling.rope_type: "llama3", "linear"; "rope_freqs" (GGUF's
                                * per-pair divisors); "" for none */
    float rope_factor;         /* its factor (0 for none) */
    int32_t qkv_bias;          /* 1: q/k/v projections have biases (Qwen 2) */
    uint64_t n_params;         /* weight elements */
    uint64_t weight_bytes;     /* bytes of weights as held (encoded) */
} vz_model_info;

vz_status vz_model_get_info(const vz_model *m, vz_model_info *out);

/* The model's tokenizer (borrowed; NULL if the model has none). */
const vz_tokenizer *vz_model_tokenizer(const vz_model *m);

typedef enum vz_dtype {
    VZ_DTYPE_F32  = 0,
    VZ_DTYPE_F16  = 1,
    VZ_DTYPE_BF16 = 2
} vz_dtype;

const char *vz_dtype_name(vz_dtype d); /* "f32", "f16", "bf16" */

typedef struct vz_tensor_info {
    const char *name;       /* canonical (Hugging Face) name; borrowed */
    int32_t ndim;
    int64_t shape[4];       /* outermost first: a Linear weight is (out, in) */
    vz_dtype dtype;         /* source element type */
    uint16_t codec_id;
    const char *codec_name; /* borrowed, static: the codec, or the spec of its layout ("lossless:k4") */
    uint64_t bytes;         /* encoded bytes */
} vz_tensor_info;

int32_t vz_model_n_tensors(const vz_model *m);
vz_status vz_model_tensor_info(const vz_model *m, int32_t i, vz_tensor_info *out);

/* ---- session: a context (KV cache) over a model ------------------------ */

typedef struct vz_session vz_session;

typedef enum vz_kv_mode {
    VZ_KV_F32 = 0,
    VZ_KV_F16 = 1,
    VZ_KV_OFF = 2  /* no cache: every step recomputes the whole sequence */
} vz_kv_mode;

typedef enum vz_device {
    VZ_DEVICE_CPU  = 0,
    VZ_DEVICE_CUDA = 1
} vz_device;

/* [plan] How a CUDA session holds the weights (docs: vz_session_plan). */
typedef enum vz_residency {
    VZ_RESIDENCY_COMPRESSED = 0, /* in their encoding, decoded inside the matvec (default) */
    VZ_RESIDENCY_DECOMPRESS = 1, /* decoded once at load (lossless: source dtype, lossy: f32), held raw */
    VZ_RESIDENCY_CACHE      = 2  /* LRU of layers decoded on the GPU, filled from pinned host memory */
} vz_residency;

/* [batch] Most sequences one session holds (and decodes together). */
#define VZ_MAX_SEQ 8

typedef struct vz_session_opts {
    int32_t n_ctx;      /* context length (of each sequence); 0: the model's maximum */
    vz_kv_mode kv;
    int32_t n_threads;  /* CPU threads; 0: OpenMP's default */
    vz_device device;
    uint64_t vram_budget;   /* [plan] CUDA: device bytes the session may use; 0: the free VRAM */
    vz_residency residency; /* [plan] CUDA only */
    int32_t n_seq;          /* [batch] independent sequences, each with its own KV cache (n_ctx
                               positions) and position: 1..VZ_MAX_SEQ; 0: 1 */
} vz_session_opts;

void vz_session_opts_default(vz_session_opts *o);

/* Creates a session; the model must outlive it. */
vz_status vz_session_create(vz_session **out, vz_model *m, const vz_session_opts *opts);
void vz_session_free(vz_session *s);

/* Evaluates n tokens at the next n positions. logits: NULL, or room for
 * n*vocab floats (all_logits=1) or vocab floats (last position only).
 * Fails with VZ_ERR_CONTEXT, leaving the session unchanged, when the
 * tokens do not fit in the context. */
vz_status vz_session_eval(vz_session *s, const int32_t *tokens, int32_t n,
                          float *logits, int32_t all_logits);

/* Memory a device session holds (bytes). weights: the encoded weights as
 * resident; kv: the KV cache; scratch: activations, attention partials and
 * logits; peak: device memory in use by the process, measured with
 * cudaMemGetInfo, at most, above what was in use before the session was
 * created; device_total: the card's memory. All 0 for a CPU session. */
typedef struct vz_session_mem {
    uint64_t weights, kv, scratch, peak, device_total;
    uint64_t h2d; /* [st] bytes copied host to device by layer streaming / the layer cache so far */
} vz_session_mem;

vz_status vz_session_mem_info(vz_session *s, vz_session_mem *out);

/* The target of a GPU prefill (bench): *seconds that plain cuBLAS bf16
 * GEMMs take on the same matrices for a prompt of n tokens, with no decode,
 * attention or norms (one cublasGemmEx per layer op, raw bf16 weights).
 * VZ_ERR_UNSUPPORTED for CPU sessions and weights not resident raw bf16. */
vz_status vz_session_prefill_gemm_ref(vz_session *s, int32_t n, double *seconds);

/* [plan] Residency plan of a CUDA session: which layers stay resident in
 * VRAM and which would stream from pinned host memory each token (two
 * device buffers of the largest streamed layer), with the bytes of each
 * part. Device byte figures include the CUDA allocator's rounding (2 MiB
 * for allocations of 1 MiB or more); the CUDA context itself is outside. */
typedef struct vz_plan {
    vz_residency residency;
    int32_t n_layers, n_resident, n_streamed;
    uint64_t budget;           /* bytes planned for: opts.vram_budget, else free VRAM (0: unknown) */
    int32_t budget_is_free;    /* 1: budget is the free VRAM measured now */
    uint64_t global_bytes;     /* embedding, head and norms: always resident */
    uint64_t resident_bytes;   /* weights of the resident layers */
    uint64_t streamed_bytes;   /* weights of the streamed layers (pinned host memory) */
    uint64_t stream_buf_bytes; /* two device buffers of the largest streamed layer */
    uint64_t kv_bytes, scratch_bytes;
    uint64_t reserve_bytes;    /* margin for CUDA graphs and workspace */
    uint64_t total_bytes;      /* device bytes this plan needs */
    uint64_t full_bytes;       /* device bytes with every layer resident */
    uint64_t min_bytes;        /* device bytes with every layer streamed: the least any plan needs */
    int32_t fits;              /* 1: total_bytes <= budget (or no budget known) */
    char advice[1024];         /* when !fits: the bytes needed and what would fit instead */
} vz_plan;

/* Plans a session of m under opts without allocating anything (opts NULL:
 * defaults). Returns VZ_OK with fits = 0 and advice when nothing fits. On a
 * CUDA session with vram_budget 0 it measures the free VRAM. Streamed
 * layers live in pinned host memory (in their .vz encoding) and are copied
 * into two device slots each step, overlapped with compute; the logits are
 * bitwise those of the resident run. Residency cache: n_resident decoded
 * layer slots (an LRU; with fewer slots than layers every step misses). */
vz_status vz_session_plan(const vz_model *m, const vz_session_opts *opts, vz_plan *out);

struct vz_sampler_opts; /* below */

/* A device, for reports: name, memory, and (measure_bw) the measured
 * bandwidth of a large device-to-device copy in (read + write) bytes per
 * second / 1e9. VZ_DEVICE_CUDA describes GPU 0; VZ_ERR_UNSUPPORTED when
 * built without CUDA, VZ_ERR_CUDA when no GPU is usable. VZ_DEVICE_CPU:
 * the CPU's model name and thread count, physical memory, and in copy_gbs
 * the read bandwidth of all threads over 1 GiB of host memory (what token
 * generation is bound by: it reads every weight once). */
typedef struct vz_device_info {
    char name[128];
    uint64_t total_bytes;
    double copy_gbs;
    double h2d_gbs; /* [st] with measure_bw: pinned host-to-device copy, GB/s (median of 5 x 256 MiB) */
} vz_device_info;

vz_status vz_device_get_info(vz_device dev, int32_t measure_bw, vz_device_info *out);

/* Evaluates `first` at the next position, then samples a token, evaluates
 * it, and so on: out gets n sampled ids (the last one not yet evaluated);
 * the position advances by n. On a CUDA session the whole loop runs on the
 * device (no host round trip per token); the caller checks out for EOS.
 * Fails with VZ_ERR_CONTEXT when n positions do not fit. */
vz_status vz_session_generate(vz_session *s, int32_t first, int32_t n, const struct vz_sampler_opts *so,
                              int32_t *out);

/* Debug hook (used by `vramzip verify`): while buf is set, every eval writes
 * the residual stream of its last position after each layer's attention
 * block and after its MLP block into buf: n_layers * 2 * dim floats,
 * laid out (layer, {0 attention, 1 MLP}, dim). buf is borrowed and must
 * outlive its use; NULL turns tracing off. Logits are unchanged. A CUDA
 * session runs traced evals eagerly (the kernels of its graphs, in the same
 * order, plus one device-to-host copy per block). */
vz_status vz_session_set_trace(vz_session *s, float *buf);

int32_t vz_session_pos(const vz_session *s);   /* tokens evaluated so far (sequence 0) */
int32_t vz_session_n_ctx(const vz_session *s);
void vz_session_reset(vz_session *s);          /* every sequence back to position 0 */

/* ---- [batch] several sequences in one session ---------------------------
 * A session of opts.n_seq sequences holds one KV cache and position per
 * sequence; vz_session_eval and vz_session_generate act on sequence 0.
 * Batched calls take n distinct sequence indices seqs[0..n) (NULL: 0..n-1)
 * and check every argument before evaluating anything. A batched step runs
 * the weight matvecs once for all n tokens and attention per sequence (on
 * the CPU without a KV cache, VZ_KV_OFF, the sequences run one after
 * another); every result is bitwise the one of that sequence evaluated
 * alone. */

int32_t vz_session_n_seq(const vz_session *s);
/* Position of sequence seq (0 when s is NULL or seq out of range). */
int32_t vz_session_seq_pos(const vz_session *s, int32_t seq);

/* vz_session_eval on sequence seq (its own cache and position): prompts are
 * prefilled one sequence at a time through this call. */
vz_status vz_session_eval_seq(vz_session *s, int32_t seq, const int32_t *tokens, int32_t n, float *logits,
                              int32_t all_logits);

/* One decode step of n sequences: tokens[i] at the next position of
 * sequence seqs[i]. logits: NULL or n * vocab floats, row i bitwise that of
 * vz_session_eval_seq(s, seqs[i], &tokens[i], 1, row, 0). VZ_ERR_CONTEXT,
 * leaving every sequence unchanged, when one is full. */
vz_status vz_session_eval_batch(vz_session *s, int32_t n, const int32_t *seqs, const int32_t *tokens, float *logits);

/* vz_session_generate for n sequences together: sequence seqs[i] is fed
 * first[i], then samples n_tok tokens with so[i] (its own seed) into
 * out[i * n_tok ..]; row i is bitwise vz_session_generate on that sequence
 * alone (with the same backend). Every position advances by n_tok. */
vz_status vz_session_generate_batch(vz_session *s, int32_t n, const int32_t *seqs, const int32_t *first,
                                    int32_t n_tok, const struct vz_sampler_opts *so, int32_t *out);

/* ---- chat formats ------------------------------------------------------ */

/* One message of a conversation; role is "system", "user" or "assistant". */
typedef struct vz_chat_msg {
    const char *role;
    const char *content;
} vz_chat_msg;

/* The built-in chat formats by index, NULL past the last: "zephyr"
 * (TinyLlama chat), "llama2", "mistral" (v0.1/v0.2), "llama3", "chatml"
 * (Qwen 2 / 2.5), "llama3.1" (3.1-3.3: llama3 with its dated system
 * message), "mistral-v3" (v0.3: [INST] control tokens, the system message
 * in the last user message), "mistral-v7" (Large-2411: a [SYSTEM_PROMPT]
 * first). They are written in C, following each reference model's Jinja
 * template as Hugging Face renders it (mistral-v3 and -v7 as mistral-common,
 * Mistral's reference encoder, gives them); no Jinja is evaluated. */
const char *vz_chat_format_name(int32_t i);

/* The Jinja chat template the checkpoint carries (HF tokenizer_config.json,
 * GGUF tokenizer.chat_template, .vz CHAT section; kept by convert), or
 * NULL; and the built-in format it is recognised as by its markers, or NULL. */
const char *vz_model_chat_template(const vz_model *m);
const char *vz_model_chat_format(const vz_model *m);

/* The token ids of a conversation in a chat format (format NULL: the
 * model's own, VZ_ERR_UNSUPPORTED naming the formats when it has none),
 * with the assistant's header last when add_assistant (the generation
 * prompt). Special tokens go in by id; a model with a BOS token starts with
 * it. *n_out gets the count; VZ_ERR_ARG when it exceeds cap (ids untouched). */
vz_status vz_chat_encode(const vz_model *m, const char *format, const vz_chat_msg *msgs, int32_t n,
                         int32_t add_assistant, int32_t *ids, int32_t cap, int32_t *n_out);

/* ---- sampler ----------------------------------------------------------- */

typedef struct vz_sampler_opts {
    float temp;      /* 0: greedy (argmax, lowest id on ties) */
    int32_t top_k;   /* 0: off */
    float top_p;     /* 1: off */
    uint64_t seed;
} vz_sampler_opts;

void vz_sampler_opts_default(vz_sampler_opts *o);

typedef struct vz_sampler vz_sampler;
vz_status vz_sampler_create(vz_sampler **out, int32_t vocab_size, const vz_sampler_opts *o);
void vz_sampler_free(vz_sampler *s);
/* Picks a token from logits (vocab floats, not modified). */
int32_t vz_sampler_sample(vz_sampler *s, const float *logits);

/* ---- codecs, convert, tensor statistics (docs/format.md) ---------------- */

/* Name of the i-th codec of the table (NULL past the end); *doc gets a one
 * line description and *lossless 1 for lossless codecs (both may be NULL). */
const char *vz_codec_info(int32_t i, const char **doc, int32_t *lossless);

typedef struct vz_convert_opts {
    /* A preset "raw", "lossless", "q4:g32", "zstd:19" (codec[:gN group][:N
     * level]) or comma-separated glob=codec rules over tensor names, first
     * match wins ("*.mlp.*=q8,*=raw"); a tensor no rule matches stays raw, as
     * do 1-D tensors. NULL: "raw". */
    const char *codec_spec;
    vz_model_opts model;  /* how to open the source */
    /* Called after each tensor (may be NULL): tensors done/total, source
     * bytes done/total, the tensor's name. */
    void (*progress)(void *user, int32_t done, int32_t total, uint64_t bytes_done, uint64_t bytes_total,
                     const char *tensor);
    void (*note)(void *user, const char *msg); /* e.g. a codec fell back to raw; may be NULL */
    void *user;
    volatile int *cancel; /* polled between tensors: nonzero stops with VZ_ERR_INTERRUPTED */
} vz_convert_opts;

void vz_convert_opts_default(vz_convert_opts *o);

/* Converts any model vz_model_open reads into a .vz file at out_path.
 * Every tensor of a lossless codec is decoded and compared with the source
 * bytes before it is written; the file appears under out_path only when
 * complete (temporary file + rename), never after a failure or cancel. */
vz_status vz_convert(const char *src_path, const char *out_path, const vz_convert_opts *o);

/* Checks a codec spec without converting: VZ_ERR_ARG naming the bad part. */
vz_status vz_codec_spec_check(const char *spec);

typedef struct vz_tensor_stats {
    uint64_t n_elements;
    uint64_t encoded_bytes;   /* params + data */
    double bits_per_weight;   /* 8 * encoded_bytes / n_elements */
    double exp_entropy;       /* Shannon entropy (bits) of the exponent field of
                                 the source elements; < 0 when unknown (lossy codec) */
    int32_t lossless;
} vz_tensor_stats;

/* Statistics of tensor i; decodes it (lossless codecs) for exp_entropy. */
vz_status vz_model_tensor_stats(const vz_model *m, int32_t i, vz_tensor_stats *out);

/* Decodes tensor i to rows*cols f32 values at out (caller-owned). */
vz_status vz_model_tensor_decode_f32(const vz_model *m, int32_t i, float *out);

/* ---- synth ------------------------------------------------------------- */

/* Synthetic Hugging Face checkpoints: real model shapes, random weights with
 * trained-like statistics (docs/synth.md). They produce gibberish text and
 * exist to test formats, compression ratios and speed. */

typedef struct vz_synth_shape_info {
    const char *name;        /* "tinyllama-1.1b", ...; static */
    const char *description; /* static */
    const char *arch;        /* "llama", "mistral"; static */
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len;
    uint64_t n_params;       /* weight elements with the default vocab */
} vz_synth_shape_info;

int32_t vz_synth_n_shapes(void);
/* Fills *out for shape i in [0, vz_synth_n_shapes()); VZ_ERR_ARG otherwise. */
vz_status vz_synth_shape_get(int32_t i, vz_synth_shape_info *out);

typedef struct vz_synth_opts {
    const char *shape;          /* a shape name (required) */
    vz_dtype dtype;             /* default VZ_DTYPE_BF16 */
    uint64_t seed;              /* default 0; same seed, same bytes */
    const char *tokenizer_path; /* tokenizer.model or tokenizer.json to copy; NULL: built-in one (none for llama3-8b) */
    uint64_t max_shard_bytes;   /* 0: 5e9 (Hugging Face's default); bigger checkpoints are sharded */
    int32_t force;              /* 1: replace an existing non-empty out_dir */
    volatile int *cancel;       /* optional; nonzero stops with VZ_ERR_INTERRUPTED */
    void (*progress)(void *ud, uint64_t done_bytes, uint64_t total_bytes, const char *tensor);
    void *progress_ud;
} vz_synth_opts;

void vz_synth_opts_default(vz_synth_opts *o);

/* Writes a checkpoint directory (config.json, generation_config.json,
 * model.safetensors or shards + model.safetensors.index.json, tokenizer.model,
 * SYNTHETIC.txt). Memory stays bounded (tens of MB) for any shape. The
 * directory is built as out_dir.tmp.XXXXXX and renamed at the end, so on
 * failure or cancel nothing is left behind. Refuses a non-empty out_dir
 * unless o->force. */
vz_status vz_synth(const char *out_dir, const vz_synth_opts *o);

#ifdef __cplusplus
}
#endif

#endif /* VRAMZIP_H */
