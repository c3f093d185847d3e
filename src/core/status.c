/*
 * status.c - status names and the thread-local error message.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char vz_errmsg[1024];

const char *vz_status_name(vz_status s) {
    switch (s) {
    case VZ_OK: return "VZ_OK";
    case VZ_ERR_ARG: return "VZ_ERR_ARG";
    case VZ_ERR_IO: return "VZ_ERR_IO";
    case VZ_ERR_NOMEM: return "VZ_ERR_NOMEM";
    case VZ_ERR_FORMAT: return "VZ_ERR_FORMAT";
    case VZ_ERR_TRUNCATED: return "VZ_ERR_TRUNCATED";
    case VZ_ERR_UNSUPPORTED: return "VZ_ERR_UNSUPPORTED";
    case VZ_ERR_SHAPE: return "VZ_ERR_SHAPE";
    case VZ_ERR_MAGIC: return "VZ_ERR_MAGIC";
    case VZ_ERR_VERSION: return "VZ_ERR_VERSION";
    case VZ_ERR_CHECKSUM: return "VZ_ERR_CHECKSUM";
    case VZ_ERR_CODEC: return "VZ_ERR_CODEC";
    case VZ_ERR_CONTEXT: return "VZ_ERR_CONTEXT";
    case VZ_ERR_CUDA: return "VZ_ERR_CUDA";
    case VZ_ERR_MISMATCH: return "VZ_ERR_MISMATCH";
    case VZ_ERR_INTERRUPTED: return "VZ_ERR_INTERRUPTED";
    case VZ_ERR_NOT_FOUND: return "VZ_ERR_NOT_FOUND";
    }
    return "VZ_ERR_UNKNOWN";
}

const char *vz_last_error(void) { return vz_errmsg; }

void vz_error_clear(void) { vz_errmsg[0] = '\0'; }

void vz_error_set(const char *msg) { snprintf(vz_errmsg, sizeof vz_errmsg, "%s", msg); }

vz_status vz_fail_at(const char *file, int line, vz_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(vz_errmsg, sizeof vz_errmsg, "%s [%s:%d]", msg, base ? base + 1 : file, line);
    return s;
}

void vz_error_prefix(const char *fmt, ...) {
    char pre[256], old[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, vz_errmsg, sizeof old);
    snprintf(vz_errmsg, sizeof vz_errmsg, "%s: %s", pre, old);
}
