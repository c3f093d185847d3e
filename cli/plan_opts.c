/*
 * plan_opts.c - the residency flags shared by run, bench and perplexity
 * (issue #5): --residency compressed|decompress-at-load|cache and the
 * stderr line of a CUDA session's plan (vz_session_plan in vramzip.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_residency(const char *cmd, const char *flag, const char *val, vz_residency *out) {
    static const char *const names[] = {"compressed", "decompress-at-load", "cache"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(val, names[i])) return *out = (vz_residency)i, 0;
    fprintf(stderr, "vramzip %s: %s expects compressed, decompress-at-load or cache, got '%s'\n", cmd, flag, val);
    return -1;
}

int cli_device(const char *cmd, const char *flag, const char *val, vz_device *out) {
    if (!strcmp(val, "cpu")) return *out = VZ_DEVICE_CPU, 0;
    if (!strcmp(val, "cuda")) return *out = VZ_DEVICE_CUDA, 0;
    fprintf(stderr, "vramzip %s: %s expects cpu or cuda, got '%s'\n", cmd, flag, val);
    return -1;
}

int cli_kv(const char *cmd, const char *flag, const char *val, int allow_off, vz_kv_mode *out) {
    if (!strcmp(val, "f32")) return *out = VZ_KV_F32, 0;
    if (!strcmp(val, "f16")) return *out = VZ_KV_F16, 0;
    if (allow_off && !strcmp(val, "off")) return *out = VZ_KV_OFF, 0;
    fprintf(stderr, "vramzip %s: %s expects %s, got '%s'\n", cmd, flag, allow_off ? "f32, f16 or off" : "f32 or f16", val);
    return -1;
}

void cli_print_plan(const char *cmd, const vz_model *m, const vz_session_opts *so) {
    static const char *const names[] = {"compressed", "decompress-at-load", "cache"};
    if (so->device != VZ_DEVICE_CUDA) return;
    vz_plan p;
    if (vz_session_plan(m, so, &p) != VZ_OK) return; /* vz_session_create reports the error */
    const double mib = 1048576.0;
    if (p.residency == VZ_RESIDENCY_CACHE) { /* [st] slots of decoded layers, staging from pinned host memory */
        fprintf(stderr,
                "vramzip %s: plan (cache): %d decoded-layer slots for %d layers (%.1f MiB%s), %.1f MiB pinned host, "
                "%.1f MiB staging; total %.1f MiB of %s %.1f MiB%s\n",
                cmd, (int)p.n_resident, (int)p.n_layers, (double)p.resident_bytes / mib,
                p.n_resident < p.n_layers ? "; fewer slots than layers: every layer misses each step" : "",
                (double)p.streamed_bytes / mib, (double)p.stream_buf_bytes / mib, (double)p.total_bytes / mib,
                p.budget_is_free ? "free" : "budget", (double)p.budget / mib, p.fits ? "" : " (does not fit)");
        return;
    }
    fprintf(stderr,
            "vramzip %s: plan (%s): %d/%d layers resident (%.1f MiB), %d streamed (%.1f MiB host, %.1f MiB "
            "buffers); embedding/head/norms %.1f MiB, KV %.1f MiB, scratch %.1f MiB, reserve %.0f MiB; total %.1f "
            "MiB of %s %.1f MiB%s\n",
            cmd, names[p.residency], (int)p.n_resident, (int)p.n_layers, (double)p.resident_bytes / mib,
            (int)p.n_streamed, (double)p.streamed_bytes / mib, (double)p.stream_buf_bytes / mib,
            (double)p.global_bytes / mib, (double)p.kv_bytes / mib, (double)p.scratch_bytes / mib,
            (double)p.reserve_bytes / mib, (double)p.total_bytes / mib, p.budget_is_free ? "free" : "budget",
            (double)p.budget / mib, p.fits ? "" : " (does not fit)");
}
