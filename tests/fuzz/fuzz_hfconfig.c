/*
 * fuzz_hfconfig.c - libFuzzer target for the Hugging Face config.json
 * parser (hf.c, through cJSON): parses the input as config text from memory
 * and validates the config when it parsed. Must never crash, hang or leak.
 */
#include <stdint.h>
#include <stdio.h>

#include "format/hf.h"

int vz_fuzz_hfconfig(const uint8_t *data, size_t size) {
    vz_config c;
    if (vz_hf_parse_config(&c, (const char *)data, size, "fuzz/config.json") == VZ_OK)
        (void)vz_config_validate(&c, "fuzz/config.json");
    return 0;
}
