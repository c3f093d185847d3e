/*
 * cmd_run.c - `vramzip run`: generate text from a model, llama.cpp style.
 * Evaluates the prompt in one batched call, then samples one token at a
 * time, streaming text (or ids with --print-ids) to stdout and a stats
 * line to stderr. --dump-logits writes every evaluated position's logits
 * (little-endian f32) atomically, for comparisons between builds and codecs.
 * [batch] Several prompts (repeated -p, --prompts FILE) run as one batch of
 * sequences: run_batch.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/io.h"
#include "run.h"

static const char *CMD = "run";

static void usage(FILE *f) {
    fprintf(f,
            "usage: vramzip run -m MODEL [options]\n\n"
            "Generates text from a model (HF directory, GGUF, llama2.c .bin or .vz).\n\n"
            "  -m, --model PATH      model to run (required)\n"
            "  -z, --tokenizer PATH  tokenizer (llama2.c .bin models; default: tokenizer.bin\n"
            "                        or tok<vocab>.bin beside the model); for GGUF and .vz it\n"
            "                        replaces the model's own (e.g. a Llama 3 tokenizer.json)\n"
            "  -p, --prompt TEXT     prompt (default: none, start from BOS alone); repeat -p for a\n"
            "                        batch: up to 8 prompts generate together, one sequence each\n"
            "      --prompts FILE    prompts one per line (with any -p: 8 at most, none empty); each\n"
            "                        sequence's output is printed after the batch, labelled [i/N];\n"
            "                        sequence i (from 1) samples with seed S + i - 1\n"
            "  -n, --n-predict N     tokens to generate (default 128; -1: until EOS or full context)\n"
            "      --temp T          temperature (default 0.8; 0: greedy)\n"
            "      --top-k K         keep the K most likely tokens (default 40; 0: off)\n"
            "      --top-p P         nucleus sampling threshold in (0, 1] (default 0.95; 1: off)\n"
            "  -s, --seed S          RNG seed (default: from the clock; printed in the stats)\n"
            "  -c, --ctx-size N      context length (default: the model's maximum)\n"
            "  -t, --threads N       CPU threads (default: all)\n"
            "      --kv f32|f16|off  KV cache precision, or none (recompute; default f32)\n"
            "      --device cpu|cuda where to run (default cpu)\n"
            "      --vram-budget SIZE  cuda: device memory the session may use (600M, 4G; default: free VRAM)\n"
            "      --residency MODE  cuda: compressed (default), decompress-at-load, cache\n"
            "      --chat            each prompt is a user message in the model's chat format (its\n"
            "                        template recognised as zephyr, llama2, mistral, mistral-v3,\n"
            "                        mistral-v7, llama3, llama3.1 or chatml);\n"
            "                        prints only the reply\n"
            "      --chat-template NAME  use that format instead (implies --chat)\n"
            "      --system TEXT     a system message first (implies --chat)\n"
            "  -i, --interactive     chat on standard input: one user message a line (the first may\n"
            "                        be -p), each reply printed as it comes; implies --chat\n"
            "      --print-ids       print generated token ids instead of text\n"
            "      --check           verify every tensor checksum at load (.vz; exit 1 if corrupt)\n"
            "      --dump-logits F   write f32 logits (vocab per position) of every prompt\n"
            "                        token and every printed generated token to F\n"
            "  -h, --help            this help\n");
}

/* Parses the value of the flag at argv[*i]; 1 if the flag is unknown, -1 on a bad value. */
static int parse_flag(run_args *a, int argc, char **argv, int *i) {
    const char *f = argv[*i];
#define IS(s, l) (!strcmp(f, s) || !strcmp(f, l))
#define VAL() const char *v = cli_value(CMD, argc, argv, i); if (!v) return -1
    if (!strcmp(f, "--print-ids")) return a->print_ids = 1, 0;
    if (!strcmp(f, "--check")) return a->check = 1, 0;
    if (!strcmp(f, "--chat")) return a->chat = 1, 0;
    if (IS("-i", "--interactive")) return a->interactive = a->chat = 1, 0;
    if (IS("--chat-template", "--chat-template")) { VAL(); a->chat_format = v, a->chat = 1; return 0; }
    if (IS("--system", "--system")) { VAL(); a->system = v, a->chat = 1; return 0; }
    if (IS("-m", "--model")) { VAL(); a->model = v; return 0; }
    if (IS("-z", "--tokenizer")) { VAL(); a->tokenizer = v; return 0; }
    if (IS("-p", "--prompt")) { VAL(); return run_add_prompt(a, v, "-p"); }
    if (IS("--prompts", "--prompts")) { VAL(); a->prompts_file = v; return 0; }
    if (IS("--dump-logits", "--dump-logits")) { VAL(); a->dump = v; return 0; }
    if (IS("-n", "--n-predict")) { VAL(); return cli_int(CMD, f, v, -1, 1 << 30, &a->n_predict); }
    if (IS("-c", "--ctx-size")) { VAL(); return cli_int(CMD, f, v, 0, 1 << 24, &a->n_ctx); }
    if (IS("-t", "--threads")) { VAL(); return cli_int(CMD, f, v, 0, 4096, &a->threads); }
    if (IS("--top-k", "--top-k")) { VAL(); return cli_int(CMD, f, v, 0, 1 << 30, &a->top_k); }
    if (IS("-s", "--seed")) { VAL(); a->seed_given = 1; return cli_int(CMD, f, v, 0, INT64_MAX, &a->seed); }
    if (IS("--temp", "--temp")) { VAL(); return cli_float(CMD, f, v, 0, 1e4, &a->temp); }
    if (IS("--top-p", "--top-p")) {
        VAL();
        if (cli_float(CMD, f, v, 0, 1, &a->top_p)) return -1;
        if (a->top_p <= 0) return cli_usage_error(CMD, "%s expects a number in (0, 1], got '%s'", f, v), -1;
        return 0;
    }
    if (IS("--kv", "--kv")) { VAL(); return cli_kv(CMD, f, v, 1, &a->kv); }
    if (IS("--vram-budget", "--vram-budget")) { VAL(); return cli_size(CMD, f, v, &a->vram_budget); }
    if (IS("--residency", "--residency")) { VAL(); return cli_residency(CMD, f, v, &a->residency); }
    if (IS("--device", "--device")) { VAL(); return cli_device(CMD, f, v, &a->device); }
#undef IS
#undef VAL
    return 1;
}

/* 0: parsed; 1: --help printed; 2: usage error (already reported). */
static int parse_args(run_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->n_predict = 128;
    a->temp = 0.8;
    a->top_k = 40;
    a->top_p = 0.95;
    a->kv = VZ_KV_F32;
    a->device = VZ_DEVICE_CPU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout), 1;
        int r = parse_flag(a, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
    }
    if (!a->model) return cli_usage_error(CMD, "-m MODEL is required");
    if (a->prompts_file && run_read_prompts(a)) return 2;
    if (a->n_prompts > 1 && a->dump) return cli_usage_error(CMD, "--dump-logits takes a single prompt");
    if (a->chat && !a->interactive && a->n_prompts == 0)
        return cli_usage_error(CMD, "--chat needs a prompt (-p): the user's message (or -i to chat on stdin)");
    if (a->interactive && (a->n_prompts > 1 || a->dump))
        return cli_usage_error(CMD, "-i takes one conversation: at most one -p, no --dump-logits");
    a->prompt = a->n_prompts == 1 ? a->prompts[0] : NULL;
    if (a->device != VZ_DEVICE_CUDA && (a->vram_budget || a->residency != VZ_RESIDENCY_COMPRESSED))
        return cli_usage_error(CMD, "--vram-budget and --residency need --device cuda");
    if (!a->seed_given) a->seed = (int64_t)(((uint64_t)time(NULL) * 1000003u) ^ (uint64_t)getpid());
    return 0;
}

/* --chat: [system,] user prompt in the chat format, with the assistant's header. */
static int chat_prompt_ids(const run_args *a, const char *prompt, const vz_model *m, int32_t **ids, int32_t *n) {
    vz_chat_msg msgs[2];
    int32_t k = 0;
    if (a->system) msgs[k++] = (vz_chat_msg){"system", a->system};
    msgs[k++] = (vz_chat_msg){"user", prompt ? prompt : ""};
    return run_chat_ids(a, m, msgs, k, 1, ids, n);
}

int run_prompt_ids(const run_args *a, const char *prompt, const vz_model *m, const vz_model_info *info, int32_t **ids,
                   int32_t *n) {
    const vz_tokenizer *tok = vz_model_tokenizer(m);
    *ids = NULL;
    if (a->chat) return chat_prompt_ids(a, prompt, m, ids, n);
    if (!prompt || !*prompt) {
        if (info->bos_id < 0) return fprintf(stderr, "vramzip run: model has no BOS token; give a prompt\n"), 1;
        *ids = malloc(sizeof(int32_t));
        if (!*ids) return fprintf(stderr, "vramzip run: out of memory\n"), 1;
        (*ids)[0] = info->bos_id;
        *n = 1;
        return 0;
    }
    if (!tok)
        return fprintf(stderr, "vramzip run: model %s has no tokenizer; pass -z TOKENIZER for a text prompt "
                               "(or omit -p to start from BOS)\n", a->model), 1;
    size_t len = strlen(prompt);
    int32_t need = 0, cap = (int32_t)(len + 8 < (1u << 30) ? len + 8 : (1u << 30));
    *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (!*ids) return fprintf(stderr, "vramzip run: out of memory\n"), 1;
    vz_status s = vz_tokenizer_encode(tok, prompt, len, 1, *ids, cap, &need);
    if (s != VZ_OK) return free(*ids), *ids = NULL, cli_fail(CMD, s);
    *n = need;
    return 0;
}

vz_sampler_opts run_sampler_opts(const run_args *a, uint64_t seq) {
    return (vz_sampler_opts){.temp = (float)a->temp, .top_k = (int32_t)a->top_k, .top_p = (float)a->top_p,
                             .seed = (uint64_t)a->seed + seq};
}

int run_is_stop(const vz_model_info *info, int32_t id) {
    for (int32_t k = 0; k < info->n_eos; k++)
        if (id == info->eos_ids[k]) return 1;
    return 0;
}

/* Generation state shared by the loop helpers. */
typedef struct run_ctx {
    const run_args *a;
    vz_session *sess;
    vz_sampler *smp;
    const vz_tokenizer *tok;
    vz_detok dt;
    vz_wfile dump;
    int dumping;
    const vz_model_info *info; /* its stop ids */
    int32_t vocab;
    float *logits;
    int32_t n_gen;
    double t_prompt, t_gen;
} run_ctx;

static void emit(run_ctx *c, int32_t id) {
    if (c->a->print_ids) {
        printf(c->n_gen ? " %d" : "%d", (int)id);
    } else if (c->tok) {
        char buf[256];
        int32_t len = vz_detok_next(&c->dt, id, buf, (int32_t)sizeof buf);
        if (len > 0) fwrite(buf, 1, (size_t)len, stdout);
    }
    fflush(stdout);
}

/* The sampling loop after the prompt: returns a CLI exit code. */
static int generate(run_ctx *c) {
    const int64_t n_predict = c->a->n_predict;
    double t0 = cli_now();
    int rc = 0;
    for (int64_t g = 0; n_predict < 0 || g < n_predict; g++) {
        if (cli_interrupted) { rc = 130; break; }
        int32_t id = vz_sampler_sample(c->smp, c->logits);
        if (run_is_stop(c->info, id)) break;
        emit(c, id);
        c->n_gen++;
        if (!c->dumping && n_predict >= 0 && g + 1 == n_predict) break; /* its logits are not needed */
        if (vz_session_pos(c->sess) >= vz_session_n_ctx(c->sess)) {
            fprintf(stderr, "\nvramzip run: context full (%d tokens); stopping\n", (int)vz_session_n_ctx(c->sess));
            break;
        }
        vz_status s = vz_session_eval(c->sess, &id, 1, c->logits, 0);
        if (s == VZ_OK && c->dumping) s = vz_wfile_write(&c->dump, c->logits, sizeof(float) * (size_t)c->vocab);
        if (s != VZ_OK) { rc = cli_fail(CMD, s); break; }
    }
    c->t_gen = cli_now() - t0;
    if (!c->a->print_ids && c->tok) {
        char buf[64];
        int32_t len = vz_detok_flush(&c->dt, buf, (int32_t)sizeof buf);
        if (len > 0) fwrite(buf, 1, (size_t)len, stdout);
    }
    printf("\n");
    fflush(stdout);
    return rc;
}

/* Evaluates the prompt (all positions' logits when dumping) and echoes it as text. */
static int eval_prompt(run_ctx *c, const int32_t *ids, int32_t n) {
    if (n > vz_session_n_ctx(c->sess))
        return fprintf(stderr, "vramzip run: prompt has %d tokens, context holds %d (use -c)\n", (int)n,
                       (int)vz_session_n_ctx(c->sess)), 1;
    float *all = c->dumping ? malloc(sizeof(float) * (size_t)n * (size_t)c->vocab) : NULL;
    if (c->dumping && !all) return fprintf(stderr, "vramzip run: out of memory for %d x %d logits\n", n, c->vocab), 1;
    double t0 = cli_now();
    vz_status s = vz_session_eval(c->sess, ids, n, all ? all : c->logits, all != NULL);
    c->t_prompt = cli_now() - t0;
    if (s == VZ_OK && all) {
        memcpy(c->logits, all + (size_t)(n - 1) * c->vocab, sizeof(float) * (size_t)c->vocab);
        s = vz_wfile_write(&c->dump, all, sizeof(float) * (size_t)n * (size_t)c->vocab);
    }
    free(all);
    if (s != VZ_OK) return cli_fail(CMD, s);
    if (!c->a->print_ids && c->tok && !c->a->chat) /* --chat prints only the reply */
        for (int32_t i = 0; i < n; i++) emit(c, ids[i]);
    return 0;
}

static void print_stats(const run_ctx *c, int32_t n_prompt, const vz_model_info *info) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double pt = c->t_prompt > 0 ? n_prompt / c->t_prompt : 0, gt = c->t_gen > 0 ? c->n_gen / c->t_gen : 0;
    fprintf(stderr,
            "vramzip run: prompt %d tok %.2f tok/s | generated %d tok %.2f tok/s | weights %llu bytes | "
            "peak RSS %.1f MiB | seed %llu\n",
            (int)n_prompt, pt, (int)c->n_gen, gt, (unsigned long long)info->weight_bytes,
            (double)ru.ru_maxrss / 1024.0, (unsigned long long)c->a->seed);
    vz_session_mem mem; /* [fw] VRAM accounting of a device session */
    if (c->a->device == VZ_DEVICE_CUDA && vz_session_mem_info(c->sess, &mem) == VZ_OK)
        fprintf(stderr, "vramzip run: VRAM weights %.1f MiB | KV cache %.1f MiB | scratch %.1f MiB | peak %.1f MiB\n",
                (double)mem.weights / 1048576.0, (double)mem.kv / 1048576.0, (double)mem.scratch / 1048576.0,
                (double)mem.peak / 1048576.0);
}

static int run_model(const run_args *a, vz_model *m) {
    vz_model_info info;
    vz_status s = vz_model_get_info(m, &info);
    if (s != VZ_OK) return cli_fail(CMD, s);
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.tok = vz_model_tokenizer(m);
    c.vocab = info.vocab_size;
    c.info = &info;
    vz_session_opts so;
    vz_session_opts_default(&so);
    so.n_ctx = (int32_t)a->n_ctx;
    so.n_threads = (int32_t)a->threads;
    so.kv = a->kv;
    so.device = a->device;
    so.vram_budget = a->vram_budget;
    so.residency = a->residency;
    cli_print_plan(CMD, m, &so);
    if (a->interactive) return run_chat(a, m, &so);
    const vz_sampler_opts po = run_sampler_opts(a, 0);
    int32_t *ids = NULL, n_ids = 0;
    int rc = run_prompt_ids(a, a->prompt, m, &info, &ids, &n_ids);
    if (rc) return rc;
    c.logits = malloc(sizeof(float) * (size_t)c.vocab);
    if (!c.logits) rc = (fprintf(stderr, "vramzip run: out of memory\n"), 1);
    if (!rc && (s = vz_session_create(&c.sess, m, &so)) != VZ_OK) rc = cli_fail(CMD, s);
    if (!rc && (s = vz_sampler_create(&c.smp, c.vocab, &po)) != VZ_OK) rc = cli_fail(CMD, s);
    if (!rc && a->dump && (s = vz_wfile_open(&c.dump, a->dump)) != VZ_OK) rc = cli_fail(CMD, s);
    c.dumping = !rc && a->dump;
    if (c.tok) vz_detok_init(&c.dt, c.tok);
    if (!rc) rc = eval_prompt(&c, ids, n_ids);
    if (!rc) rc = generate(&c);
    if (c.dumping && !rc && (s = vz_wfile_commit(&c.dump)) != VZ_OK) rc = cli_fail(CMD, s);
    if (c.dumping && rc) vz_wfile_abort(&c.dump);
    if (!rc || rc == 130) print_stats(&c, n_ids, &info);
    vz_sampler_free(c.smp);
    vz_session_free(c.sess);
    free(c.logits);
    free(ids);
    return rc;
}

int cmd_run(int argc, char **argv) {
    run_args a;
    int r = parse_args(&a, argc, argv);
    if (r) {
        free(a.prompts_buf);
        return r == 1 ? 0 : r;
    }
    cli_catch_signals();
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    mo.tokenizer_path = a.tokenizer;
    mo.check = a.check;
    vz_model *m = NULL;
    vz_status s = vz_model_open(&m, a.model, &mo);
    int rc = s != VZ_OK ? cli_fail(CMD, s) : a.n_prompts > 1 ? run_batch(&a, m) : run_model(&a, m);
    vz_model_close(m);
    free(a.prompts_buf);
    return rc;
}
