/*
 * gemm_mma.cuh - path B of gemm.cu (included there, after the decoders): Y =
 * X W^T with W decoded tile by tile into shared memory, no scratch matrix.
 *
 * A block computes FB_M stacked weight rows x FB_N tokens, in steps of FB_G
 * 32-column lane groups (group g of a row: columns 32 g .. 32 g + 31 of the
 * file's order; x holds them at their GEMM column positions, gemm.h). A
 * ring of FB_S stages holds each step's x tile, W tile (bf16) and W's
 * packed3 staging (low bytes, code words). FB_P producer threads, one per
 * weight row and one per token row, copy step j + FB_S - 1's x and W bytes
 * by cp.async (raw bf16 straight into the W tile), decode step j's packed3
 * W into the bf16 tile (the codec's decoder, decode.cuh; other codecs and
 * shapes by their generic decoders, synchronously) and hand the stage over
 * by a named barrier. Two warpgroups multiply it and hand it back: on
 * sm_90a by wgmma (64 tokens x 128 rows each, operands read from shared
 * memory by descriptor, one step in flight), elsewhere by mma.sync
 * m16n8k16 (8 warps of 64 tokens x 32 rows); bf16 in, f32 accumulate. The
 * tiles lie in no-swizzle core matrices (8 rows x 16 bytes, 128 contiguous
 * bytes), k-major: the rows' 16 bytes of one 8-column slice kc side by
 * side, slice after slice. Raw and lossless weights put the same bf16
 * values into the same tile, so they give the same y, bit for bit.
 */
#define FB_M 128 /* weight rows per block: one producer thread each */
#define FB_N 128 /* tokens per block */
#define FB_P FB_M
#define FB_THREADS (FB_P + 256)
#define FB_G 2  /* lane groups (32 columns) per step */
#define FB_S 4  /* ring stages; named barriers 1..FB_S (full), FB_S+1..2 FB_S (empty) */
#define FB_KC (4 * FB_G) /* 8-column slices per step */
#define FB_XB (FB_KC * FB_N * 16) /* bytes of a stage's x tile */
#define FB_WB (FB_KC * FB_M * 16) /* W tile */
#define FB_LB (FB_M * 32 * FB_G)  /* packed3 low bytes: a row's groups side by side */
#define FB_CB (FB_M * 12 * FB_G)  /* packed3 code words: 12 bytes a group */
#define FB_STAGE (FB_XB + FB_WB + FB_LB + FB_CB)
#define FB_SMEM ((size_t)FB_S * FB_STAGE)
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FB_WGMMA 1
#else
#define FB_WGMMA 0
#endif

enum { FB_RAW = 0, FB_LL3 = 1, FB_ANY = 2 };

static __device__ __forceinline__ uint32_t fb_sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(fb_sa(p)));
}

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 16 bytes (n = 16) or 16 zero bytes (n = 0) into shared memory. */
static __device__ __forceinline__ void fb_cp16(void *dst, const void *src, uint32_t n) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(fb_sa(dst)), "l"(src), "r"(n) : "memory");
}

static __device__ __forceinline__ void fb_cp4(void *dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(fb_sa(dst)), "l"(src) : "memory");
}

static __device__ __forceinline__ void fb_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
static __device__ __forceinline__ void fb_wait(void) { asm volatile("cp.async.wait_group %0;" ::"n"(FB_S - 2) : "memory"); }

/* Producers arrive, MMA warps sync (full); the other way round (empty). */
static __device__ __forceinline__ void fb_arrive(int id) {
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "n"(FB_THREADS) : "memory");
}
static __device__ __forceinline__ void fb_sync(int id) {
    asm volatile("bar.sync %0, %1;" ::"r"(id), "n"(FB_THREADS) : "memory");
}

static __device__ __forceinline__ char *fb_x(char *sm, int j) { return sm + (size_t)(j % FB_S) * FB_STAGE; }
static __device__ __forceinline__ char *fb_w(char *sm, int j) { return fb_x(sm, j) + FB_XB; }
static __device__ __forceinline__ uint8_t *fb_l(char *sm, int j) { return (uint8_t *)fb_w(sm, j) + FB_WB; }
static __device__ __forceinline__ uint8_t *fb_c(char *sm, int j) { return fb_l(sm, j) + FB_LB; }
/* Byte offset of row r's 16 bytes of slice kc in a tile of n rows. */
static __device__ __forceinline__ uint32_t fb_at(int r, int kc, int n) { return (uint32_t)((kc * n + r) * 16); }

/* Where chunk i (columns 8 i .. 8 i + 7) of lane group g lies along a row of
 * cols columns in the GEMM column order (cols % 32 == 0), or in the file's
 * order (gpu = 0). */
static __device__ __forceinline__ int fb_col(int64_t cols, int g, int i, bool gpu) {
    if (!gpu) return 32 * g + 8 * i;
    const int64_t b = (int64_t)(g >> 5) << 10;
    return (int)(b + ((g & 31) + i * vz_gpu_groups(cols, b)) * 8);
}

/* Row `row`'s 32 bf16 of group gi (16 packed pairs q) into the W tile at slices 4 gi .. 4 gi + 3. */
static __device__ __forceinline__ void fb_put_w(char *tile, int row, int gi, const uint32_t q[16]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
        *(uint4 *)(tile + fb_at(row, 4 * gi + i, FB_M)) = make_uint4(q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]);
}

/* Group g of row lr of d by the codec's generic (per-thread) decoder, as
 * bf16 into row `row` of the W tile at slices 4 gi .. 4 gi + 3: every codec
 * and shape the ring does not copy or decode itself. Out of line, so its
 * registers and stack stay out of the fast kinds' loop. */
static __device__ __noinline__ void fb_generic(const vz_dview &d, int64_t lr, int g, char *tile, int row, int gi) {
    float w[32];
    uint32_t q[16];
    const int it = g >> 5, ln = g & 31;
    const bool fast = d.cols % 32 == 0;
    if (d.codec == VZ_ID_LOSSLESS) vz_ll_group<false>(d, lr, it, ln, nullptr, w, true);
    else if (fast && d.codec == VZ_ID_Q8 && d.group % 32 == 0) vz_q8_group<true>(d, lr, it, ln, w);
    else if (fast && d.codec == VZ_ID_Q4 && d.group % 32 == 0) vz_q4_group<true>(d, lr, it, ln, w);
    else vz_group_any(d, lr, it, ln, nullptr, w);
    pack_bf16x32(w, q);
    fb_put_w(tile, row, gi, q);
}

/* The producers: thread p owns weight row m0 + p and token row n0 + p of every stage. */
static __device__ __forceinline__ void fb_produce(const stack3 &s, char *sm, const __nv_bfloat16 *x,
                                                  int64_t ldx, int32_t T, int64_t m0, int n0, int ng, int diag) {
    const int nk = (ng + FB_G - 1) / FB_G, p = threadIdx.x;
    const int64_t R = s.r1[2], cols = s.w[0].cols, r = m0 + p;
    const bool rv = r < R, xv = cols % 32 == 0 && ldx % 8 == 0 && ((uintptr_t)x & 15) == 0;
    const int t = n0 + p;
    int64_t lr = 0;
    const vz_dview &d = stack_row(s, rv ? r : 0, &lr);
    const bool fast = d.cols % 32 == 0;
    const int kind = fast && d.codec == VZ_ID_RAW && d.dtype == 2                                               ? FB_RAW
                     : fast && d.codec == VZ_ID_LOSSLESS && d.dtype == 2 && d.k == 3 && d.layout == 1 && !d.tiled ? FB_LL3
                                                                                                                 : FB_ANY;
    vz_ll_cursor cur = {0, 0, 0, 0, 0};
    if (rv && kind == FB_LL3) vz_ll_cursor_init(d, lr, cur);

    /* step j's copies: lane groups FB_G j .. of weight row p and the matching x columns of token row p */
    auto issue = [&](int j) {
        char *sx = fb_x(sm, j), *sw = fb_w(sm, j);
#pragma unroll
        for (int gi = 0; gi < FB_G; gi++) {
            const int g = FB_G * j + gi;
            if (g >= ng) break;
            if (xv) {
                const __nv_bfloat16 *src = x + (int64_t)(t < T ? t : 0) * ldx;
#pragma unroll
                for (int i = 0; i < 4; i++)
                    fb_cp16(sx + fb_at(p, 4 * gi + i, FB_N), src + fb_col(cols, g, i, true), t < T ? 16u : 0u);
            }
            if (!rv) continue;
            const uint32_t gx = (uint32_t)lr * (uint32_t)d.gpr + (uint32_t)g;
            if (kind == FB_RAW) {
#pragma unroll
                for (int i = 0; i < 4; i++)
                    fb_cp16(sw + fb_at(p, 4 * gi + i, FB_M),
                            (const __nv_bfloat16 *)d.data + (size_t)lr * (size_t)d.cols +
                                fb_col(d.cols, g, i, d.layout == VZ_CUDA_RAW_GPU),
                            16u);
            } else if (kind == FB_LL3) {
                uint8_t *dl = fb_l(sm, j) + p * 32 * FB_G + 32 * gi, *dc = fb_c(sm, j) + p * 12 * FB_G + 12 * gi;
                const uint4 *lp = (const uint4 *)d.data + (size_t)gx * 2;
                fb_cp16(dl, lp, 16u);
                fb_cp16(dl + 16, lp + 1, 16u);
#pragma unroll
                for (int i = 0; i < 3; i++) fb_cp4(dc + 4 * i, d.codes + (size_t)gx * 3 + i);
            }
        }
    };

    auto decode = [&](int j) {
        char *sx = fb_x(sm, j), *sw = fb_w(sm, j);
#pragma unroll
        for (int gi = 0; gi < FB_G; gi++) {
            const int g = FB_G * j + gi;
            if (!xv || g >= ng) { /* x's 32 columns of group g, zero past cols or T (or past the last group) */
                __align__(16) __nv_bfloat16 v[32];
                for (int e = 0; e < 32; e++) {
                    const int64_t c = 32 * (int64_t)g + e;
                    v[e] = t < T && c < cols ? x[(int64_t)t * ldx + vz_gemm_pos(cols, c)] : __float2bfloat16_rn(0.0f);
                }
#pragma unroll
                for (int i = 0; i < 4; i++) *(uint4 *)(sx + fb_at(p, 4 * gi + i, FB_N)) = *(const uint4 *)(v + 8 * i);
            }
            if (g >= ng) { /* past the last group: zeros, as x's */
#pragma unroll
                for (int i = 0; i < 4; i++) *(uint4 *)(sw + fb_at(p, 4 * gi + i, FB_M)) = make_uint4(0, 0, 0, 0);
                continue;
            }
            if (!rv || kind == FB_RAW) continue; /* rows past R: never stored */
            if (kind == FB_LL3) {
                const uint8_t *l = fb_l(sm, j) + p * 32 * FB_G + 32 * gi, *c = fb_c(sm, j) + p * 12 * FB_G + 12 * gi;
                vz_gst st; /* the group's low bytes where vz_ll_pack_bf16 takes them */
                st.v[0] = *(const uint4 *)l, st.v[1] = *(const uint4 *)(l + 16);
                const uint32_t cw[3] = {*(const uint32_t *)c, *(const uint32_t *)(c + 4), *(const uint32_t *)(c + 8)};
                uint32_t h[8];
                vz_pk k;
                vz_ll_h_packed3(cw[0], cw[1], cw[2], d.lut_lo, d.lut_hi, h);
                vz_ll_cursor_patch(d, lr, g, cur, cw, h);
                vz_ll_pack_bf16(st, h, k);
                fb_put_w(sw, p, gi, k.p);
            } else {
                fb_generic(d, lr, g, sw, p, gi);
            }
        }
    };

    for (int j = 0; j < FB_S - 1; j++) {
        if (j < nk && diag != 2) issue(j);
        fb_commit();
    }
    for (int j = 0; j < nk; j++) {
        fb_wait(); /* this thread's copies of step j have landed */
        if (diag != 2) decode(j);
        /* the tiles were written through the generic proxy; wgmma reads them through the async one */
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        fb_arrive(1 + j % FB_S);
        const int jn = j + FB_S - 1; /* refills the stage of step j - 1 */
        if (jn < nk) {
            if (jn >= FB_S) fb_sync(1 + FB_S + jn % FB_S);
            if (diag != 2) issue(jn);
        }
        fb_commit();
    }
}

/* D += A B^T over one step on the warpgroup's tensor cores: FB_KC / 2 = 4
 * wgmma m64n128k16, A 64 x 16 (tokens x k) and B 128 x 16 (weight rows x k)
 * each, both K-major in shared memory (descriptors da[kk], db[kk]), D f32 64
 * x 128 in 64 registers per thread; fenced before and committed after, all
 * in one asm statement: between separate ones ptxas sees the accumulators
 * used and injects a fence of its own (C7519). */
#define FB_WGMMA_OP(A, B)                                                                                             \
    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"                                                         \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
    A ", " B ", p, 1, 1, 0, 0;\n"
static __device__ __forceinline__ void fb_wgmma(float (&d)[64], const uint64_t da[4], const uint64_t db[4]) {
    static_assert(FB_KC == 8, "fb_wgmma issues 4 k16 steps");
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\nwgmma.fence.sync.aligned;\n" FB_WGMMA_OP("%64", "%68")
                     FB_WGMMA_OP("%65", "%69") FB_WGMMA_OP("%66", "%70") FB_WGMMA_OP("%67", "%71")
                 "wgmma.commit_group.sync.aligned;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da[0]), "l"(da[1]), "l"(da[2]), "l"(da[3]), "l"(db[0]), "l"(db[1]), "l"(db[2]), "l"(db[3]));
}

/* Keeps the compiler from moving the accumulators across the wgmma fences and waits. */
static __device__ __forceinline__ void fb_fence_acc(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* A no-swizzle K-major descriptor of a tile of n rows at p: leading byte
 * offset n * 16 (the next 8-column slice), stride 128 (the next 8 rows). */
static __device__ __forceinline__ uint64_t fb_desc(const char *p, int n) {
    return (uint64_t)((fb_sa(p) >> 4) & 0x3fffu) | (uint64_t)((n * 16) >> 4) << 16 | (uint64_t)(128 >> 4) << 32;
}

/* y[t, r] (+)= v for the pair of rows r, r + 1 (each only below R). */
static __device__ __forceinline__ void fb_put(float *y, int64_t ldy, int t, int64_t r, int64_t R, int32_t add, float v0,
                                              float v1) {
    float *p = y + (int64_t)t * ldy + r;
    if (r < R) p[0] = add ? p[0] + v0 : v0;
    if (r + 1 < R) p[1] = add ? p[1] + v1 : v1;
}

static __global__ void __launch_bounds__(FB_THREADS, 1) k_mma(const __grid_constant__ stack3 s, float *y, int64_t ldy,
                                                               const __nv_bfloat16 *x, int64_t ldx, int32_t T,
                                                               int32_t add, int32_t diag) {
    extern __shared__ __align__(128) char fb_sm[];
    const int64_t m0 = (int64_t)blockIdx.y * FB_M, R = s.r1[2];
    const int n0 = blockIdx.x * FB_N, ng = (int)((s.w[0].cols + 31) / 32), nk = (ng + FB_G - 1) / FB_G;
    /* the role as a value the compiler knows to be warp-uniform (a shuffle's): wgmma in a
     * path it takes for divergent gets serialized (ptxas C7520) */
    const int role = __shfl_sync(0xffffffffu, (int)threadIdx.x / FB_P, 0);
    if (role == 0) {
        fb_produce(s, fb_sm, x, ldx, T, m0, n0, ng, diag);
        return;
    }
    const int c = threadIdx.x - FB_P, warp = c >> 5, lane = c & 31;
#if FB_WGMMA
    const int wg = role - 1; /* tokens 64 wg .. 64 wg + 63 */
    float acc[64];
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = 0.0f;
    for (int j = 0; j < nk; j++) {
        fb_sync(1 + j % FB_S);
        const char *sx = fb_x(fb_sm, j) + wg * 64 * 16, *sw = fb_w(fb_sm, j);
        uint64_t da[FB_KC / 2], db[FB_KC / 2];
#pragma unroll
        for (int kk = 0; kk < FB_KC / 2; kk++)
            da[kk] = fb_desc(sx + kk * 2 * FB_N * 16, FB_N), db[kk] = fb_desc(sw + kk * 2 * FB_M * 16, FB_M);
        fb_fence_acc(acc);
        if (diag != 1) fb_wgmma(acc, da, db);
        asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory"); /* step j - 1's are done */
        fb_fence_acc(acc);
        if (j >= 1 && j - 1 + FB_S < nk) fb_arrive(1 + FB_S + (j - 1) % FB_S);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    /* D fragment: row (token) 16 w + lane / 4 (+ 8), column (weight row) 8 i + 2 (lane % 4) (+ 1) */
    const int tw = n0 + wg * 64 + (warp & 3) * 16 + (lane >> 2);
#pragma unroll
    for (int i = 0; i < 16; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int t = tw + 8 * h;
            if (t < T) fb_put(y, ldy, t, m0 + 8 * i + 2 * (lane & 3), R, add, acc[4 * i + 2 * h], acc[4 * i + 2 * h + 1]);
        }
#else
    const int wm = warp & 1, wn = warp >> 1; /* tokens 64 wm .., rows 32 wn .. */
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int q = 0; q < 4; q++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][q][e] = 0.0f;
    for (int j = 0; j < nk; j++) {
        fb_sync(1 + j % FB_S);
        const char *sx = fb_x(fb_sm, j), *sw = fb_w(fb_sm, j);
#pragma unroll
        for (int kk = 0; kk < FB_KC / 2; kk++) {
            uint32_t a[4][4], b[2][4];
#pragma unroll
            for (int i = 0; i < 4; i++) ldsm_x4(a[i], sx + fb_at(wm * 64 + i * 16 + (lane & 15), 2 * kk + (lane >> 4), FB_N));
#pragma unroll
            for (int h = 0; h < 2; h++)
                ldsm_x4(b[h], sw + fb_at(wn * 32 + h * 16 + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1), FB_M));
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int q = 0; q < 4; q++) mma_bf16(acc[i][q], a[i], b[q >> 1][2 * (q & 1)], b[q >> 1][2 * (q & 1) + 1]);
        }
        if (j + FB_S < nk) fb_arrive(1 + FB_S + j % FB_S);
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int q = 0; q < 4; q++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int t = n0 + wm * 64 + i * 16 + (lane >> 2) + h * 8;
                if (t < T) fb_put(y, ldy, t, m0 + wn * 32 + q * 8 + (lane & 3) * 2, R, add, acc[i][q][2 * h], acc[i][q][2 * h + 1]);
            }
#endif
}

/* VZ_CUDA_FB_DIAG (a timing knob; its y is wrong): 1 the MMA warps skip their MMAs, 2 the producers
 * skip their copies and decodes; the hand-offs stay. */
static int fb_env(const char *name, int def) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : def;
}

static vz_status run_b(vz_gemm *g, const stack3 &s, float *y, int64_t ldy, const __nv_bfloat16 *x, int64_t ldx,
                       int32_t T, int32_t add) {
    static int attr_set;
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FB_SMEM);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "prefill mma: %zu bytes of shared memory: %s", FB_SMEM,
                   cudaGetErrorString(e));
        attr_set = 1;
    }
    const int64_t gy = (s.r1[2] + FB_M - 1) / FB_M, cols = s.w[0].cols;
    static int diag = -1;
    if (diag < 0) diag = fb_env("VZ_CUDA_FB_DIAG", 0);
    VZ_FAIL_IF(gy > 65535 || T > INT32_MAX - FB_N || cols > INT32_MAX / 2, VZ_ERR_SHAPE,
               "prefill mma: grid too large (%lld row tiles, %lld columns)", (long long)gy, (long long)cols);
    k_mma<<<dim3((unsigned)((T + FB_N - 1) / FB_N), (unsigned)gy), FB_THREADS, FB_SMEM, g->st>>>(s, y, ldy, x, ldx, T,
                                                                                                 add, diag);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "prefill mma launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}
