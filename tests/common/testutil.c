/*
 * testutil.c - see testutil.h.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cjson/cJSON.h>

const char *vz_test_models_dir(void) {
    static char dir[1024];
    const char *env = getenv("VZ_MODELS");
    snprintf(dir, sizeof dir, "%s", env && *env ? env : "../shared/models");
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? dir : NULL;
}

const char *vz_test_model_path(char *buf, size_t cap, const char *rel) {
    const char *d = vz_test_models_dir();
    if (!d) return NULL;
    snprintf(buf, cap, "%s/%s", d, rel);
    struct stat st;
    return stat(buf, &st) == 0 ? buf : NULL;
}

const char *vz_test_tmpdir(char *buf, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/vztest.XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf);
}

void vz_test_rmtree(const char *path) {
    if (!path || !*path) return;
    char *out = NULL;
    vz_test_sh(&out, "rm -rf '%s'", path);
    free(out);
}

const char *vz_test_cli(void) {
    static char p[1024];
    const char *b = getenv("BUILD");
    snprintf(p, sizeof p, "%s/vramzip", b && *b ? b : "build");
    return p;
}

int vz_test_sh(char **output, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
    }
    if (buf) buf[len] = '\0';
    int st = pclose(p);
    if (output) *output = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

uint64_t vz_test_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float vz_test_randn(uint64_t *s) {
    double u1 = ((vz_test_rand(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (vz_test_rand(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void vz_test_filter_from_env(void) {
    const char *only = getenv("VZ_TEST_ONLY");
    if (only && *only) cmocka_set_test_filter(only);
}

char *vz_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = '\0';
        if (len) *len = (size_t)n;
    } else {
        free(p), p = NULL;
    }
    fclose(f);
    return p;
}

void vz_test_set_rope_scaling(const char *src, const char *json) { vz_test_set_config(src, "rope_scaling", json); }

void vz_test_set_config(const char *src, const char *key, const char *json) {
    char path[1024];
    size_t n;
    snprintf(path, sizeof path, "%s/config.json", src);
    char *s = vz_test_read_file(path, &n);
    if (!s) fail_msg("cannot read %s", path);
    cJSON *root = cJSON_Parse(s), *v = cJSON_Parse(json);
    if (!root || !v) fail_msg("%s or '%s': not JSON", path, json);
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    cJSON_AddItemToObject(root, key, v);
    char *t = cJSON_Print(root);
    FILE *f = fopen(path, "wb");
    if (!t || !f || fputs(t, f) < 0 || fclose(f) != 0) fail_msg("cannot write %s", path);
    free(t), free(s);
    cJSON_Delete(root);
}
