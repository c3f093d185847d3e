/*
 * matvec_bench.cu - times the fused decode+matvec (src/backend/cuda/matvec.cu)
 * per codec on TinyLlama 1.1B shapes and one large matrix, on synthetic
 * trained-like bf16 weights (Gaussian, std 0.02, 1% tails x4). Bytes read =
 * encoded bytes; GB/s is compared with a device-to-device copy (read+write)
 * measured in the same run. Weights rotate over copies > L2 so DRAM is timed.
 * Usage: matvec_bench [batch...]   (default: 1 8). Prints a markdown table.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "codec/codec.h"
#include "core/half.h"
#include "core/tensor.h"
}

#define CK(x)                                                                           \
    do {                                                                                \
        cudaError_t e_ = (x);                                                           \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)
#define VK(x)                                                                           \
    do {                                                                                \
        vz_status s_ = (x);                                                             \
        if (s_ != VZ_OK) {                                                              \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, vz_last_error());  \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((rng >> 11) + 0.5) / 9007199254740992.0;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Median over 7 replays of a graph of `reps` launches; microseconds per launch. */
template <class F> static double time_graph(F launch, int reps) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < reps; i++) launch(i, st);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float ms[7];
    CK(cudaGraphLaunch(ge, st));
    for (int k = 0; k < 7; k++) {
        CK(cudaEventRecord(a, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms[k], a, b));
    }
    qsort(ms, 7, sizeof ms[0], cmp_f);
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaStreamDestroy(st));
    return ms[3] * 1000.0 / reps;
}

static double copy_gbs(void) {
    size_t n = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, n));
    CK(cudaMalloc(&b, n));
    CK(cudaMemset(a, 1, n));
    double us = time_graph([&](int, cudaStream_t st) { CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st)); }, 5);
    CK(cudaFree(a));
    CK(cudaFree(b));
    return 2.0 * n / us / 1e3;
}

struct shape { const char *name; int64_t rows, cols; };

int main(int argc, char **argv) {
    int batches[8] = {1, 8}, nbatch = 2;
    if (argc > 1) {
        nbatch = 0;
        for (int i = 1; i < argc && nbatch < 8; i++) batches[nbatch++] = atoi(argv[i]);
    }
    char card[256] = "?";
    vz_cuda_device_name(0, card, sizeof card);
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    double cgbs = copy_gbs();
    printf("card: %s, L2 %d MB, D2D copy %.0f GB/s (read+write)\n", card, l2 >> 20, cgbs);
    const shape shapes[] = {{"q/o 2048x2048", 2048, 2048}, {"k/v 256x2048", 256, 2048},
                            {"gate/up 5632x2048", 5632, 2048}, {"down 2048x5632", 2048, 5632},
                            {"lm_head 32000x2048", 32000, 2048}, {"big 8192x8192", 8192, 8192}};
    int64_t maxn = 8192 * 8192;
    uint16_t *src = (uint16_t *)malloc((size_t)maxn * 2);
    for (int64_t i = 0; i < maxn; i++) {
        double z = sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()) * 0.02;
        if (urand() < 0.01) z *= 4;
        src[i] = vz_f32_to_bf16((float)z);
    }
    const char *codecs[] = {"raw", "lossless", "q8"};
    float *dx, *dy;
    CK(cudaMalloc(&dx, 8 * 8192 * 4));
    CK(cudaMalloc(&dy, 8 * 32000 * 4));
    float *hx = (float *)malloc(8 * 8192 * 4);
    for (int i = 0; i < 8 * 8192; i++) hx[i] = (float)(urand() - 0.5);
    CK(cudaMemcpy(dx, hx, 8 * 8192 * 4, cudaMemcpyHostToDevice));
    printf("\n| shape | codec | batch | bits/w | us | GB/s | %% of copy | speedup vs raw | bit-exact vs raw |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape &S = shapes[si];
        double t_raw[8] = {0};
        float *y_raw = (float *)malloc(8 * S.rows * 4), *y = (float *)malloc(8 * S.rows * 4);
        for (int ci = 0; ci < 3; ci++) {
            const vz_codec *c = vz_codec_by_name(codecs[ci]);
            if (!c) continue;
            vz_blob blob;
            vz_codec_opts o = {0, 0};
            VK(c->encode(src, VZ_DTYPE_BF16, S.rows, S.cols, &o, &blob));
            vz_tensor t;
            memset(&t, 0, sizeof t);
            snprintf(t.name, sizeof t.name, "%s", S.name);
            t.ndim = 2, t.shape[0] = t.rows = S.rows, t.shape[1] = t.cols = S.cols;
            t.dtype = VZ_DTYPE_BF16, t.codec = c->id, t.data = blob.data, t.size = blob.size;
            t.params = blob.params, t.params_size = blob.params_size;
            int nc = (int)((4ull * l2 + blob.size - 1) / blob.size);
            nc = nc < 2 ? 2 : nc > 512 ? 512 : nc;
            vz_cuda_tensor *W = (vz_cuda_tensor *)calloc((size_t)nc, sizeof *W);
            for (int k = 0; k < nc; k++) VK(vz_cuda_tensor_upload(&W[k], &t, NULL));
            double bits = 8.0 * blob.size / ((double)S.rows * S.cols);
            for (int bi = 0; bi < nbatch; bi++) {
                int B = batches[bi];
                VK(vz_cuda_matvec(dy, dx, B, &W[0], NULL));
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(ci == 0 ? y_raw : y, dy, (size_t)B * S.rows * 4, cudaMemcpyDeviceToHost));
                const char *exact = ci == 0 ? "-" : !c->lossless ? "n/a (lossy)"
                                    : memcmp(y, y_raw, (size_t)B * S.rows * 4) == 0 ? "yes" : "NO";
                int reps = nc < 200 ? 200 : nc;
                double us = time_graph([&](int i, cudaStream_t st) { VK(vz_cuda_matvec(dy, dx, B, &W[i % nc], st)); }, reps);
                if (ci == 0) t_raw[bi] = us;
                double gbs = blob.size / us / 1e3;
                printf("| %s | %s | %d | %.2f | %.2f | %.0f | %.0f%% | %.2fx | %s |\n", S.name, codecs[ci], B, bits, us,
                       gbs, 100 * gbs / cgbs, t_raw[bi] / us, exact);
                fflush(stdout);
            }
            for (int k = 0; k < nc; k++) vz_cuda_tensor_free(&W[k]);
            free(W);
            vz_blob_free(&blob);
        }
        free(y_raw), free(y);
    }
    CK(cudaGetLastError());
    free(src), free(hx);
    return 0;
}
