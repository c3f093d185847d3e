/*
 * session.c - placeholder until implemented.
 */
#include <string.h>

#include "model/model.h"

void vz_session_opts_default(vz_session_opts *o) { memset(o, 0, sizeof *o); }
