/*
 * gpu.h - helpers shared by the GPU (and CPU-vs-GPU) tests: whether a GPU is
 * usable (a printed SKIP reason when not), opening a GPU test's model and a
 * session that must open, a synthetic checkpoint and its conversions, the host argmax the CUDA sampler matches, and the
 * logits of random tokens on a session of given options (the budget tests).
 */
#ifndef VZ_TEST_GPU_H
#define VZ_TEST_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "vramzip.h"

/* Number of usable CUDA devices (0 when built without CUDA). */
int vz_test_gpu_count(void);

/* 1 when a GPU is usable, else 0 after printing "SKIP: <why>". */
int vz_test_have_gpu(void);

/* For a GPU test: the model at ../shared/models/<rel>, opened. Skips the
 * test with a printed reason when the model or a GPU is missing; fails it
 * when the model does not open. */
vz_model *vz_test_gpu_model(const char *rel);

/* A session of m on dev with KV mode kv and context n_ctx (n_seq
 * sequences; 0 or 1: one); fails the test when it cannot be created. */
vz_session *vz_test_open_session(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_ctx);
vz_session *vz_test_open_session_n(vz_model *m, vz_device dev, vz_kv_mode kv, int32_t n_ctx, int32_t n_seq);

/* Index of the largest of l[0..n) (lowest index on ties, like the sampler). */
int32_t vz_test_argmax(const float *l, int32_t n);

/* A synthetic checkpoint (vz_synth) of shape and seed in <a new temporary
 * directory>/hf: the directory (removed by vz_test_rmtree) into dir, the
 * checkpoint into src. Fails the test on error. */
void vz_test_synth_dir(char *dir, size_t dcap, char *src, size_t scap, const char *shape, uint64_t seed);

/* vz_convert of src into out with codec spec (tok: a tokenizer path, or
 * NULL); fails the test on error. */
void vz_test_convert(const char *src, const char *tok, const char *spec, const char *out);

/* All logits (nt * vocab floats, malloc'ed) of nt pseudo-random tokens
 * (seed 7) evaluated in one call on a new session of m under o; *mem (may
 * be NULL) gets its VRAM accounting before it is freed. Fails the test when
 * the session cannot be created. */
float *vz_test_session_logits(vz_model *m, const vz_session_opts *o, int32_t nt, vz_session_mem *mem);

/* Greedy from BOS for n steps on two models of the same shape (KV f16,
 * context n_ctx): every step's logits byte-identical (raw vs lossless: the
 * codecs share the matvec's thread mapping), else the test fails naming
 * the step; skips when the second model cannot open a GPU session. */
void vz_test_gpu_bitwise(const char *raw_path, const char *ll_path, int32_t n, int32_t n_ctx);

#endif
