/*
 * libfuzzer_main.c - the libFuzzer entry point for one target; the build
 * defines VZ_FUZZ_FN as that target's vz_fuzz_<surface> function.
 */
#include <stddef.h>
#include <stdint.h>

int VZ_FUZZ_FN(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return VZ_FUZZ_FN(data, size); }
