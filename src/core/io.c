/*
 * io.c - mmap, bounds-checked reads and atomic writes (see io.h).
 */
#define _GNU_SOURCE
#include "core/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

vz_status vz_map_open(vz_map *m, const char *path) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VZ_FAIL_IF(fd < 0, errno == ENOENT ? VZ_ERR_NOT_FOUND : VZ_ERR_IO, "%s: cannot open: %s", path,
               strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return VZ_FAIL(VZ_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return VZ_FAIL(VZ_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
        m->data = p;
    }
    close(fd);
    return VZ_OK;
}

void vz_map_close(vz_map *m) {
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

vz_rd vz_rd_init(const void *p, uint64_t size, const char *what) {
    vz_rd r = {(const uint8_t *)p, size, 0, what ? what : "?"};
    return r;
}

static vz_status need(vz_rd *r, uint64_t n, const char *field) {
    if (r->pos > r->size || n > r->size - r->pos)
        return VZ_FAIL(VZ_ERR_TRUNCATED, "%s: field '%s' at offset %llu: need %llu bytes, %llu left", r->what,
                       field, (unsigned long long)r->pos, (unsigned long long)n,
                       (unsigned long long)(r->pos <= r->size ? r->size - r->pos : 0));
    return VZ_OK;
}

vz_status vz_rd_u8(vz_rd *r, uint8_t *v, const char *field) {
    VZ_TRY(need(r, 1, field));
    *v = r->p[r->pos++];
    return VZ_OK;
}

vz_status vz_rd_u16(vz_rd *r, uint16_t *v, const char *field) {
    VZ_TRY(need(r, 2, field));
    *v = vz_le16(r->p + r->pos);
    r->pos += 2;
    return VZ_OK;
}

vz_status vz_rd_u32(vz_rd *r, uint32_t *v, const char *field) {
    VZ_TRY(need(r, 4, field));
    *v = vz_le32(r->p + r->pos);
    r->pos += 4;
    return VZ_OK;
}

vz_status vz_rd_i32(vz_rd *r, int32_t *v, const char *field) {
    uint32_t u;
    VZ_TRY(vz_rd_u32(r, &u, field));
    memcpy(v, &u, 4);
    return VZ_OK;
}

vz_status vz_rd_u64(vz_rd *r, uint64_t *v, const char *field) {
    VZ_TRY(need(r, 8, field));
    *v = vz_le64(r->p + r->pos);
    r->pos += 8;
    return VZ_OK;
}

vz_status vz_rd_f32(vz_rd *r, float *v, const char *field) {
    uint32_t u;
    VZ_TRY(vz_rd_u32(r, &u, field));
    memcpy(v, &u, 4);
    return VZ_OK;
}

vz_status vz_rd_bytes(vz_rd *r, const uint8_t **p, uint64_t n, const char *field) {
    VZ_TRY(need(r, n, field));
    *p = r->p + r->pos;
    r->pos += n;
    return VZ_OK;
}

vz_status vz_rd_skip(vz_rd *r, uint64_t n, const char *field) {
    VZ_TRY(need(r, n, field));
    r->pos += n;
    return VZ_OK;
}

vz_status vz_rd_align(vz_rd *r, uint64_t alignment, const char *field) {
    if (alignment <= 1) return VZ_OK;
    uint64_t pad = (alignment - r->pos % alignment) % alignment;
    return vz_rd_skip(r, pad, field);
}

vz_status vz_read_file(const char *path, char **out, uint64_t *size, uint64_t max_size) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    VZ_FAIL_IF(!f, errno == ENOENT ? VZ_ERR_NOT_FOUND : VZ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return VZ_FAIL(VZ_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        fclose(f);
        return VZ_FAIL(VZ_ERR_FORMAT, "%s: size %llu exceeds the limit of %llu bytes", path,
                       (unsigned long long)st.st_size, (unsigned long long)max_size);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return VZ_FAIL(VZ_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (n != (size_t)st.st_size) {
        free(buf);
        return VZ_FAIL(VZ_ERR_IO, "%s: short read", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (size) *size = n;
    return VZ_OK;
}

vz_status vz_wfile_open(vz_wfile *w, const char *final_path) {
    memset(w, 0, sizeof *w);
    VZ_FAIL_IF(strlen(final_path) >= sizeof w->final, VZ_ERR_ARG, "%s: path too long", final_path);
    snprintf(w->final, sizeof w->final, "%s", final_path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.XXXXXX", final_path);
    int fd = mkstemp(w->tmp);
    VZ_FAIL_IF(fd < 0, VZ_ERR_IO, "%s: cannot create temporary file: %s", final_path, strerror(errno));
    fchmod(fd, 0644);
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        unlink(w->tmp);
        return VZ_FAIL(VZ_ERR_IO, "%s: fdopen failed", final_path);
    }
    return VZ_OK;
}

vz_status vz_wfile_write(vz_wfile *w, const void *p, uint64_t n) {
    if (n == 0) return VZ_OK;
    VZ_FAIL_IF(!w->f, VZ_ERR_ARG, "%s: writer is not open", w->final);
    VZ_FAIL_IF(fwrite(p, 1, (size_t)n, w->f) != (size_t)n, VZ_ERR_IO, "%s: write failed: %s", w->final,
               strerror(errno));
    w->written += n;
    return VZ_OK;
}

vz_status vz_wfile_pad(vz_wfile *w, uint64_t alignment) {
    static const uint8_t zeros[4096];
    if (alignment <= 1) return VZ_OK;
    uint64_t pad = (alignment - w->written % alignment) % alignment;
    while (pad > 0) {
        uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
        VZ_TRY(vz_wfile_write(w, zeros, k));
        pad -= k;
    }
    return VZ_OK;
}

vz_status vz_wfile_commit(vz_wfile *w) {
    VZ_FAIL_IF(!w->f, VZ_ERR_ARG, "%s: writer is not open", w->final);
    int bad = fflush(w->f) != 0 || fsync(fileno(w->f)) != 0;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad) {
        unlink(w->tmp);
        return VZ_FAIL(VZ_ERR_IO, "%s: write failed: %s", w->final, strerror(errno));
    }
    if (rename(w->tmp, w->final) != 0) {
        int e = errno;
        unlink(w->tmp);
        return VZ_FAIL(VZ_ERR_IO, "%s: rename failed: %s", w->final, strerror(e));
    }
    w->tmp[0] = '\0';
    return VZ_OK;
}

void vz_wfile_abort(vz_wfile *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    w->f = NULL;
    if (w->tmp[0]) unlink(w->tmp);
    w->tmp[0] = '\0';
}
