/*
 * hf_cast.c - writes a llama2.c .bin (legacy v0, f32) as a Hugging Face
 * directory (config.json + model.safetensors) in bf16, f16 or f32, so the
 * codec numbers of bench/cpu_numbers.sh can be taken on stories260K in the
 * dtype real checkpoints ship in. Uses the test checkpoint writer
 * (tests/common/ckpt.c); copy the tokenizer.model in yourself.
 *   hf_cast MODEL.bin OUT_DIR bf16|f16|f32   (built by bench/cpu_numbers.sh)
 */
#include <stdio.h>
#include <string.h>

#include "common/ckpt.h"

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "bf16") && strcmp(argv[3], "f16") && strcmp(argv[3], "f32"))) {
        fprintf(stderr, "usage: hf_cast MODEL.bin OUT_DIR bf16|f16|f32\n");
        return 2;
    }
    const char *dt = !strcmp(argv[3], "bf16") ? "BF16" : !strcmp(argv[3], "f16") ? "F16" : "F32";
    vz_ckpt_model m;
    if (vz_ckpt_load_bin(&m, argv[1]) != 0) {
        fprintf(stderr, "hf_cast: cannot load %s as a llama2.c .bin\n", argv[1]);
        return 1;
    }
    int rc = vz_ckpt_write_hf(argv[2], &m, dt, 1, m.wcls == NULL);
    vz_ckpt_free(&m);
    if (rc != 0) {
        fprintf(stderr, "hf_cast: cannot write %s\n", argv[2]);
        return 1;
    }
    printf("hf_cast: wrote %s (%s)\n", argv[2], argv[3]);
    return 0;
}
