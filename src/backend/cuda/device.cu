/*
 * device.cu - CUDA device discovery. The CUDA backend's kernels live beside
 * this file, one .cu per op family; C code reaches them only through
 * backend/cuda/cuda.h and only when built with VZ_HAVE_CUDA.
 */
#include <cuda_runtime.h>
#include <stdio.h>

#include "backend/cuda/cuda.h"

extern "C" int vz_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int vz_cuda_sm_count(int dev) {
    int n = 0;
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int vz_cuda_device_name(int dev, char *buf, int cap) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) return -1;
    snprintf(buf, (size_t)cap, "%s", p.name);
    return 0;
}
