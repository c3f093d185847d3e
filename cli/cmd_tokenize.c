/*
 * cmd_tokenize.c - `vramzip tokenize`: prints the token ids of a text,
 * space-separated, like `spm_encode --output_format=id` (no BOS unless
 * --bos). --lines encodes each input line on its own and prints one line of
 * ids per input line, as spm_encode does for multi-line input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *kCmd = "tokenize";

static void usage(FILE *f) {
    fprintf(f, "usage: vramzip tokenize -m PATH [--bos] [--lines] [-f FILE] [-- TEXT...]\n\n"
               "Prints the token ids of TEXT (else of FILE, else of standard input).\n"
               "  -m, --model PATH  tokenizer.model, tokenizer.bin, tokenizer.json, or a model\n"
               "                    with a tokenizer\n"
               "  --bos             prepend the BOS id\n"
               "  --lines           encode each line separately, one line of ids per line\n"
               "  -f, --file FILE   read the text from FILE\n");
}

typedef struct opts {
    const char *model, *file;
    int bos, lines;
    char *text; /* joined TEXT arguments, or NULL */
} opts;

static char *join_args(int argc, char **argv, int from) {
    size_t n = 1;
    for (int i = from; i < argc; i++) n += strlen(argv[i]) + 1;
    char *s = malloc(n), *w = s;
    if (!s) return NULL;
    for (int i = from; i < argc; i++) w += sprintf(w, "%s%s", i > from ? " " : "", argv[i]);
    *w = '\0';
    return s;
}

/* Returns -1 on success, else the exit code. */
static int parse(int argc, char **argv, opts *o) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(o->model = cli_value(kCmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(o->file = cli_value(kCmd, argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--bos")) {
            o->bos = 1;
        } else if (!strcmp(a, "--lines")) {
            o->lines = 1;
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(kCmd, "unknown flag '%s'", a);
        } else {
            break;
        }
    }
    if (!o->model) return cli_usage_error(kCmd, "-m PATH is required");
    if (i < argc && o->file) return cli_usage_error(kCmd, "give either -f FILE or TEXT, not both");
    if (i < argc && !(o->text = join_args(argc, argv, i))) return cli_usage_error(kCmd, "out of memory");
    return -1;
}

static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    while (s) {
        n += fread(s + n, 1, cap - n, f);
        if (n < cap) break;
        char *g = realloc(s, cap *= 2);
        if (!g) free(s);
        s = g;
    }
    if (s && ferror(f)) {
        free(s);
        return NULL;
    }
    *len = n;
    return s;
}

static int print_ids(const vz_tokenizer *t, const char *s, size_t len, int bos) {
    int32_t n = 0, cap = (int32_t)(len < (1u << 28) ? 2 * len + 16 : (1u << 29));
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return cli_usage_error(kCmd, "out of memory");
    vz_status st = vz_tokenizer_encode(t, s, len, bos, ids, cap, &n);
    if (st != VZ_OK) {
        free(ids);
        return cli_fail(kCmd, st);
    }
    for (int32_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
    free(ids);
    return 0;
}

static int encode_text(const vz_tokenizer *t, const char *s, size_t len, const opts *o) {
    if (!o->lines) return print_ids(t, s, len, o->bos);
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(s + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - s) : len;
        int rc = print_ids(t, s + start, end - start, o->bos);
        if (rc) return rc;
        start = end + 1;
    }
    return 0;
}

/* A tokenizer file, else the tokenizer of a model; *m is set for the latter. */
static int open_tokenizer(const char *path, vz_tokenizer **tok, vz_model **m, const vz_tokenizer **t) {
    vz_status st = vz_tokenizer_open(tok, path);
    if (st == VZ_OK) {
        *t = *tok;
        return 0;
    }
    char first[512];
    snprintf(first, sizeof first, "%s", vz_last_error());
    if (st == VZ_ERR_NOT_FOUND) return cli_fail(kCmd, st); /* a directory may be a model */
    vz_model_opts mo;
    vz_model_opts_default(&mo);
    if (vz_model_open(m, path, &mo) != VZ_OK) {
        fprintf(stderr, "vramzip %s: error: %s: not a tokenizer (%s) nor a model (%s)\n", kCmd, path, first,
                vz_last_error());
        return 1;
    }
    *t = vz_model_tokenizer(*m);
    if (!*t) {
        fprintf(stderr, "vramzip %s: error: %s: the model has no tokenizer\n", kCmd, path);
        return 1;
    }
    return 0;
}

/* The text to encode: TEXT, FILE or standard input (malloc'ed into *text). */
static int load_text(const opts *o, char **text, size_t *len) {
    if (o->text) {
        *text = o->text;
        *len = strlen(o->text);
        return 0;
    }
    FILE *f = o->file ? fopen(o->file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "vramzip %s: error: %s: cannot open\n", kCmd, o->file);
        return 1;
    }
    *text = read_stream(f, len);
    if (o->file) fclose(f);
    if (!*text) {
        fprintf(stderr, "vramzip %s: error: %s: cannot read\n", kCmd, o->file ? o->file : "standard input");
        return 1;
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    vz_tokenizer *tok = NULL;
    vz_model *m = NULL;
    const vz_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0;
    rc = open_tokenizer(o.model, &tok, &m, &t);
    if (!rc) rc = load_text(&o, &text, &len);
    if (!rc) rc = encode_text(t, text, len, &o);
    if (!rc && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "vramzip %s: error: writing standard output failed\n", kCmd);
        rc = 1;
    }
    if (text != o.text) free(text);
    free(o.text);
    vz_tokenizer_close(tok);
    vz_model_close(m);
    return rc;
}
