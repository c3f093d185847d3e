/*
 * test_fuzz_replay.c - replays every saved fuzz input: each file of
 * tests/fuzz/corpus/<surface>/ goes through vz_fuzz_<surface> (linked in from
 * tests/fuzz/fuzz_<surface>.c), so seeds and fixed crashes run in the normal
 * test command, under SAN=1 too. Targets are weak references: a surface whose
 * target is not written yet is skipped; a corpus without a table entry fails.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/testutil.h"
#include "core/io.h"

#define CORPUS "tests/fuzz/corpus"

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

#define SURFACES(X) X(safetensors) X(gguf) X(tokenizer) X(vz) X(codecs) X(llama2c) X(hfconfig)
#define DECL(s) int vz_fuzz_##s(const uint8_t *data, size_t size) __attribute__((weak));
SURFACES(DECL)
#undef DECL

typedef struct surface {
    const char *name;
    fuzz_fn fn;
} surface;

#define ENTRY(s) {#s, vz_fuzz_##s},
static surface surfaces[] = {SURFACES(ENTRY)};
#undef ENTRY
#define N_SURFACES (sizeof surfaces / sizeof surfaces[0])

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_replay(void **state) {
    const surface *s = *state;
    char dir[512];
    snprintf(dir, sizeof dir, CORPUS "/%s", s->name);
    if (!s->fn || !is_dir(dir)) {
        print_message("SKIP: %s: %s\n", s->name, s->fn ? "no corpus directory" : "vz_fuzz function not linked");
        skip();
    }
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *buf = NULL;
        uint64_t size = 0;
        if (vz_read_file(path, &buf, &size, 64ull << 20) != VZ_OK) fail_msg("%s: %s", path, vz_last_error());
        s->fn((const uint8_t *)buf, (size_t)size); /* a crash, leak (SAN=1) or hang fails the binary */
        free(buf);
        n++;
    }
    closedir(d);
    print_message("%s: replayed %d inputs\n", s->name, n);
    assert_true(n > 0);
}

/* Every corpus directory must have a replay entry, or its inputs would never run. */
static void test_every_corpus_has_a_target(void **state) {
    (void)state;
    DIR *d = opendir(CORPUS);
    if (!d) {
        print_message("SKIP: " CORPUS " not found (run from the repository root)\n");
        skip();
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[600];
        snprintf(path, sizeof path, CORPUS "/%s", e->d_name);
        if (e->d_name[0] == '.' || !is_dir(path)) continue;
        int found = 0;
        for (size_t i = 0; i < N_SURFACES; i++) found |= !strcmp(surfaces[i].name, e->d_name);
        if (!found) fail_msg("corpus %s has no entry in test_fuzz_replay.c's SURFACES", e->d_name);
    }
    closedir(d);
}

int main(void) {
    struct CMUnitTest tests[N_SURFACES + 1];
    for (size_t i = 0; i < N_SURFACES; i++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_replay, &surfaces[i]);
        t.name = surfaces[i].name;
        tests[i] = t;
    }
    struct CMUnitTest all = cmocka_unit_test(test_every_corpus_has_a_target);
    tests[N_SURFACES] = all;
    return _cmocka_run_group_tests("test_fuzz_replay", tests, N_SURFACES + 1, NULL, NULL);
}
