/*
 * cuda.h - the C-callable surface of the CUDA backend (compiled only when
 * nvcc is available; guarded by VZ_HAVE_CUDA in C callers).
 */
#ifndef VZ_BACKEND_CUDA_H
#define VZ_BACKEND_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (0 when no driver or no GPU). */
int vz_cuda_device_count(void);
/* Device name into buf; 0 on success. */
int vz_cuda_device_name(int dev, char *buf, int cap);

#ifdef __cplusplus
}
#endif

#endif
