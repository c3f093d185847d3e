/*
 * tokenizer.c - placeholder until implemented.
 */
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

vz_status vz_tokenizer_open(vz_tokenizer **out, const char *path) {
    *out = NULL;
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "%s: tokenizer not implemented yet", path);
}
void vz_tokenizer_close(vz_tokenizer *t) { (void)t; }
