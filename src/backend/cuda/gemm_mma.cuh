/*
 * gemm_mma.cuh - path B of gemm.cu (included there, after the decoders): one
 * block computes 64 stacked weight rows x 128 tokens; per 1024-column block
 * its 8 warps decode the 64 rows (dec_group, the codec's decoder) into
 * shared memory as bf16, then stream 32-column slices of x (bf16) through
 * shared memory into mma.sync m16n8k16 (bf16 in, f32 accumulate), each warp
 * a 32 x 32 tile. No scratch matrix. Same bf16 values as path A.
 */
#define MB_M 64
#define MB_N 128
#define MB_KB 1024
#define MB_BK 32
#define MB_WS (MB_KB + 8) /* sW row stride: 16-byte shift per row, ldmatrix conflict-free */
#define MB_XS (MB_BK + 8)
#define MB_SMEM ((size_t)(MB_M * MB_WS + MB_N * MB_XS) * 2)

static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const __nv_bfloat16 *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* x rows [n0, n0 + 128), columns [k, k + 32) into sX (zeros outside); x in
 * the GEMM column order (gemm.h), which keeps runs of 8 columns from 8-aligned ones. */
static __device__ __forceinline__ void mb_load_x(__nv_bfloat16 *sX, const __nv_bfloat16 *x, int64_t ldx, int n0,
                                                 int T, int64_t k, int64_t cols, bool vec) {
    for (int c = threadIdx.x; c < MB_N * 4; c += blockDim.x) {
        const int row = c >> 2, q = c & 3, t = n0 + row;
        const int64_t kk = k + 8 * q;
        __nv_bfloat16 *dst = sX + row * MB_XS + 8 * q;
        if (vec && t < T && kk + 8 <= cols) {
            *(uint4 *)dst = __ldg((const uint4 *)(x + (int64_t)t * ldx + vz_gemm_pos(cols, kk)));
        } else {
            for (int e = 0; e < 8; e++)
                dst[e] = t < T && kk + e < cols ? x[(int64_t)t * ldx + vz_gemm_pos(cols, kk + e)] : __float2bfloat16_rn(0.0f);
        }
    }
}

static __global__ void __launch_bounds__(256) k_mma(stack3 s, float *y, int64_t ldy, const __nv_bfloat16 *x,
                                                    int64_t ldx, int32_t T, int32_t add) {
    extern __shared__ __align__(16) __nv_bfloat16 mb_sm[];
    __shared__ __align__(16) uint32_t dsm[8][32 * VZ_SMEM_LANE];
    __nv_bfloat16 *sW = mb_sm, *sX = mb_sm + MB_M * MB_WS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wm = warp & 1, wn = warp >> 1;
    const int64_t m0 = (int64_t)blockIdx.x * MB_M, R = s.r1[2], cols = s.w[0].cols;
    const int n0 = blockIdx.y * MB_N;
    const bool vec = ldx % 8 == 0 && ((uintptr_t)x & 15) == 0;
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    for (int64_t kb = 0; kb < cols; kb += MB_KB) {
        __syncthreads(); /* the previous block's sW reads are done */
        for (int rr = warp; rr < MB_M; rr += 8) {
            float w[32];
            if (m0 + rr < R) {
                int64_t lr;
                const vz_dview &d = stack_row(s, m0 + rr, &lr);
                dec_group(d, lr, (int)(kb / MB_KB), lane, dsm[warp], w);
            } else {
#pragma unroll
                for (int e = 0; e < 32; e++) w[e] = 0.0f;
            }
            put_bf16x32(sW + rr * MB_WS + 32 * lane, w);
        }
        const int kmax = (int)((cols - kb < MB_KB ? cols - kb : MB_KB) + MB_BK - 1) / MB_BK * MB_BK;
        for (int k0 = 0; k0 < kmax; k0 += MB_BK) {
            __syncthreads(); /* sW written / the previous slice consumed */
            mb_load_x(sX, x, ldx, n0, T, kb + k0, cols, vec);
            __syncthreads();
#pragma unroll
            for (int ks = 0; ks < MB_BK; ks += 16) {
                uint32_t a[2][4], b[2][4];
#pragma unroll
                for (int i = 0; i < 2; i++)
                    ldsm_x4(a[i], sW + (wm * 32 + i * 16 + (lane & 15)) * MB_WS + k0 + ks + (lane >> 4) * 8);
#pragma unroll
                for (int j = 0; j < 2; j++)
                    ldsm_x4(b[j], sX + (wn * 32 + j * 16 + (lane & 7) + ((lane >> 4) << 3)) * MB_XS + ks +
                                      ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) mma_bf16(acc[i][j], a[i], b[j >> 1][2 * (j & 1)], b[j >> 1][2 * (j & 1) + 1]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t r = m0 + wm * 32 + i * 16 + (lane >> 2) + (e >> 1) * 8;
                const int t = n0 + wn * 32 + j * 8 + (lane & 3) * 2 + (e & 1);
                if (r >= R || t >= T) continue;
                float *p = y + (int64_t)t * ldy + r;
                *p = add ? *p + acc[i][j][e] : acc[i][j][e];
            }
}

static vz_status run_b(vz_gemm *g, const stack3 &s, float *y, int64_t ldy, const __nv_bfloat16 *x, int64_t ldx,
                       int32_t T, int32_t add) {
    static int attr_set;
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_mma, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)MB_SMEM);
        VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "prefill mma: %zu bytes of shared memory: %s", MB_SMEM,
                   cudaGetErrorString(e));
        attr_set = 1;
    }
    const int64_t gx = (s.r1[2] + MB_M - 1) / MB_M;
    VZ_FAIL_IF(gx > INT32_MAX || T > 65535 * MB_N, VZ_ERR_SHAPE, "prefill mma: grid too large");
    k_mma<<<dim3((unsigned)gx, (unsigned)((T + MB_N - 1) / MB_N)), 256, MB_SMEM, g->st>>>(s, y, ldy, x, ldx, T, add);
    cudaError_t e = cudaGetLastError();
    VZ_FAIL_IF(e != cudaSuccess, VZ_ERR_CUDA, "prefill mma launch: %s", cudaGetErrorString(e));
    return VZ_OK;
}
