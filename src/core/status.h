/*
 * status.h - error reporting inside the library.
 *
 * A failing function records a message (with the source file and line) in a
 * thread-local buffer and returns a negative vz_status; callers propagate it
 * with VZ_TRY. The public side is vz_status_name() and vz_last_error().
 */
#ifndef VZ_CORE_STATUS_H
#define VZ_CORE_STATUS_H

#include "vramzip.h"

#if defined(__GNUC__)
#define VZ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VZ_PRINTF(a, b)
#endif

/* Records a formatted message for status s and returns s. */
vz_status vz_fail_at(const char *file, int line, vz_status s, const char *fmt, ...) VZ_PRINTF(4, 5);

/* Prepends "context: " to the current message (for callers adding a file name). */
void vz_error_prefix(const char *fmt, ...) VZ_PRINTF(1, 2);

void vz_error_clear(void);

/* Sets the current message to msg as it is (a message carried over from
 * another thread, whose own message is thread-local). */
void vz_error_set(const char *msg);

#define VZ_FAIL(s, ...) vz_fail_at(__FILE__, __LINE__, (s), __VA_ARGS__)

#define VZ_FAIL_IF(cond, s, ...)                       \
    do {                                               \
        if (cond) return VZ_FAIL((s), __VA_ARGS__);    \
    } while (0)

#define VZ_TRY(expr)                                   \
    do {                                               \
        vz_status vz_try_s_ = (expr);                  \
        if (vz_try_s_ != VZ_OK) return vz_try_s_;      \
    } while (0)

#endif
