/*
 * io.h - memory-mapped files, bounds-checked little-endian reads, and atomic
 * writes (temporary file + rename, so a crash or interrupt never leaves a
 * partial output under the final name).
 */
#ifndef VZ_CORE_IO_H
#define VZ_CORE_IO_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* A read-only mapping of a whole file. */
typedef struct vz_map {
    const uint8_t *data;
    uint64_t size;
    char path[1024];
} vz_map;

vz_status vz_map_open(vz_map *m, const char *path);
void vz_map_close(vz_map *m); /* safe on a zeroed or closed map */

/* Cursor over untrusted bytes. Every read checks the bounds and names the
 * file (what) and the field in its error. */
typedef struct vz_rd {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *what; /* file name (or other label) for messages */
} vz_rd;

vz_rd vz_rd_init(const void *p, uint64_t size, const char *what);
vz_status vz_rd_u8(vz_rd *r, uint8_t *v, const char *field);
vz_status vz_rd_u16(vz_rd *r, uint16_t *v, const char *field);
vz_status vz_rd_u32(vz_rd *r, uint32_t *v, const char *field);
vz_status vz_rd_i32(vz_rd *r, int32_t *v, const char *field);
vz_status vz_rd_u64(vz_rd *r, uint64_t *v, const char *field);
vz_status vz_rd_f32(vz_rd *r, float *v, const char *field);
/* Borrows n bytes at the cursor (no copy) and advances. */
vz_status vz_rd_bytes(vz_rd *r, const uint8_t **p, uint64_t n, const char *field);
vz_status vz_rd_skip(vz_rd *r, uint64_t n, const char *field);
vz_status vz_rd_align(vz_rd *r, uint64_t alignment, const char *field);

/* Plain little-endian loads from memory already bounds-checked. */
static inline uint16_t vz_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t vz_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t vz_le64(const uint8_t *p) {
    return (uint64_t)vz_le32(p) | (uint64_t)vz_le32(p + 4) << 32;
}

/* Overflow-checked size arithmetic: 0 on success, 1 on overflow. */
static inline int vz_mul_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int vz_add_ovf(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }

/* Reads a whole (small) file into a NUL-terminated malloc'ed buffer. */
vz_status vz_read_file(const char *path, char **out, uint64_t *size, uint64_t max_size);

/* Atomic writer: data goes to "<final>.tmp.XXXXXX" in the same directory and
 * is renamed over <final> by vz_wfile_commit; vz_wfile_abort removes it. */
typedef struct vz_wfile {
    FILE *f;
    uint64_t written;
    char tmp[1100];
    char final[1024];
} vz_wfile;

vz_status vz_wfile_open(vz_wfile *w, const char *final_path);
vz_status vz_wfile_write(vz_wfile *w, const void *p, uint64_t n);
vz_status vz_wfile_pad(vz_wfile *w, uint64_t alignment); /* zero bytes up to alignment */
vz_status vz_wfile_commit(vz_wfile *w);
void vz_wfile_abort(vz_wfile *w); /* safe after commit or on a zeroed writer */

#endif
