/*
 * vz.c - reader placeholder until implemented.
 */
#include "model/model.h"

vz_status vz_read_vz(vz_model *m, const char *path, const vz_model_opts *o) {
    (void)m;
    (void)o;
    return VZ_FAIL(VZ_ERR_UNSUPPORTED, "%s: vz reader not implemented yet", path);
}
