/*
 * testutil.h - helpers shared by the cmocka tests: where the shared test
 * models are, temporary directories, and running the CLI.
 */
#ifndef VZ_TESTUTIL_H
#define VZ_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Directory of the shared test models ($VZ_MODELS, else ../shared/models
 * relative to the repo root), or NULL when absent. */
const char *vz_test_models_dir(void);

/* Path of a file under the models dir in buf; NULL (and a printed skip
 * reason) when the models dir or the file is absent. */
const char *vz_test_model_path(char *buf, size_t cap, const char *rel);

/* Skips the current cmocka test with a message if the models are absent. */
#define VZ_REQUIRE_MODEL(buf, rel)                                                  \
    do {                                                                            \
        if (!vz_test_model_path((buf), sizeof(buf), (rel))) {                       \
            print_message("SKIP: ../shared/models/%s not found (set VZ_MODELS)\n", (rel)); \
            skip();                                                                 \
        }                                                                           \
    } while (0)

/* Skips the current cmocka test with why when the shell command check fails
 * (e.g. "command -v python3": an optional oracle is missing). */
#define VZ_REQUIRE_SH(check, why)                                                   \
    do {                                                                            \
        if (vz_test_sh(NULL, "%s", (check)) != 0) {                                 \
            print_message("SKIP: %s\n", (why));                                     \
            skip();                                                                 \
        }                                                                           \
    } while (0)

/* A fresh temporary directory (removed by vz_test_rmtree); path in buf. */
const char *vz_test_tmpdir(char *buf, size_t cap);
void vz_test_rmtree(const char *path);

/* The bytes of a file, NUL-terminated (malloc'ed, caller frees; *len gets
 * their count when len is not NULL), or NULL when it cannot be read. */
char *vz_test_read_file(const char *path, size_t *len);

/* Path of the built CLI ($BUILD/vramzip). */
const char *vz_test_cli(void);

/* Runs a shell command, capturing stdout+stderr (malloc'ed, NUL-terminated,
 * caller frees) and returning the exit status (-1 if it did not exit). */
int vz_test_sh(char **output, const char *fmt, ...);

/* VZ_TEST_ONLY=PATTERN (cmocka's * and ? wildcards), when set: only the
 * matching tests of the binary run (e.g. one slow GPU test under
 * compute-sanitizer). Call before cmocka_run_group_tests. */
void vz_test_filter_from_env(void);

/* The checkpoint directory src's config.json with key (added if absent),
 * or "rope_scaling", set to json (any JSON value); fails the test on error. */
void vz_test_set_config(const char *src, const char *key, const char *json);
void vz_test_set_rope_scaling(const char *src, const char *json);

/* Deterministic pseudo-random numbers for tests. */
uint64_t vz_test_rand(uint64_t *state);
float vz_test_randn(uint64_t *state);

#endif
