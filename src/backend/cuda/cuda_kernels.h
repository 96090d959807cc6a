/* The CUDA backend's own kernels (cuda_kernels.cu) as C-callable launchers. Every launcher
 * enqueues on `stream`, never synchronizes, never allocates, and returns the launch status
 * (cudaGetLastError after the launch: configuration errors, not faults of the kernel, which
 * surface at the next synchronization). A zero-sized launch is a successful no-op.
 * Pointers are device memory unless said otherwise. Float kernels take `type`: IT_CU_F32
 * (float) or IT_CU_F16 (IEEE half); they compute in float whatever they store. */
#ifndef ITSCAM_CUDA_KERNELS_H
#define ITSCAM_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { IT_CU_F32 = 0, IT_CU_F16 = 1 };

/* cudaSuccess when the current device can run this build's kernels (a GPU older than
 * CMAKE_CUDA_ARCHITECTURES gives cudaErrorNoKernelImageForDevice or similar). */
cudaError_t it_cu_check_image(void);
enum { IT_CU_ADD = 0, IT_CU_SUB = 1, IT_CU_MUL = 2, IT_CU_DIV = 3 };

#define IT_CU_MAX_DIMS 8

/* y = a op b with ONNX (numpy) broadcasting, prepared on the host: dims are the output
 * dims (outermost first, already merged where both inputs stay contiguous), sa/sb the
 * element strides of a and b along each of them (0 where that input is broadcast). */
typedef struct it_cu_binary {
    int op;                          /* IT_CU_ADD ... */
    int ndim;                        /* 1..IT_CU_MAX_DIMS */
    int64_t dims[IT_CU_MAX_DIMS];
    int64_t sa[IT_CU_MAX_DIMS], sb[IT_CU_MAX_DIMS];
    int64_t max_a, max_b;            /* elements of a and b (picks 32-bit indexing) */
} it_cu_binary;
/* a, b and y may each be fp32 or fp16 (ta, tb, ty): a 4-D fp16 feature map times an fp32
 * scalar, for instance. */
cudaError_t it_cu_binary_launch(const it_cu_binary *p, int ta, int tb, int ty, const void *a, const void *b, void *y,
                                int64_t n, cudaStream_t stream);

/* y = 1 / (1 + exp(-x)), computed as the ref kernel does (split by sign). */
cudaError_t it_cu_sigmoid(int type, const void *x, void *y, int64_t n, cudaStream_t stream);

/* The Conv epilogue, in place on NCHW y of n elements: y += bias[c] (bias fp32, NULL for
 * none) with c = (i / inner) % channels, then y = y / (1 + exp(-y)) when silu. */
cudaError_t it_cu_bias_act(int type, void *y, const float *bias, int64_t channels, int64_t inner, int64_t n, int silu,
                           cudaStream_t stream);

/* Element type conversion between IT_CU_F32 and IT_CU_F16 (round to nearest even). */
cudaError_t it_cu_cast(int from, int to, const void *x, void *y, int64_t n, cudaStream_t stream);

/* 2-D max pooling over planes = N*C planes of ih x iw; padded positions never win, NaN
 * propagates (as the ref kernel). */
typedef struct it_cu_pool {
    int64_t planes, ih, iw, oh, ow;
    int64_t kh, kw, sh, sw, dh, dw, ph, pw;
} it_cu_pool;
cudaError_t it_cu_maxpool(const it_cu_pool *p, int type, const void *x, void *y, cudaStream_t stream);

/* dst (contiguous, dims) gathers src with per-dimension element strides (possibly 0 or
 * negative; src already points at the first element read): Transpose and Slice. */
typedef struct it_cu_strided {
    int ndim;                        /* 1..IT_CU_MAX_DIMS */
    int64_t dims[IT_CU_MAX_DIMS];
    int64_t stride[IT_CU_MAX_DIMS];
    int64_t src_span;                /* elements of the source buffer (picks 32-bit indexing) */
} it_cu_strided;
cudaError_t it_cu_strided_copy(const it_cu_strided *p, size_t elem_size, const void *src, void *dst, int64_t n,
                               cudaStream_t stream);

/* Nearest-neighbour Resize as a gather: the source index along axis d of output
 * coordinate o is table[off[d] + o] (tables built on the host with the ref's arithmetic). */
typedef struct it_cu_gather {
    int ndim;
    int64_t dims[IT_CU_MAX_DIMS];    /* output dims */
    int64_t stride[IT_CU_MAX_DIMS];  /* source element strides */
    int64_t off[IT_CU_MAX_DIMS];     /* where each axis's table starts in `table` */
} it_cu_gather;
cudaError_t it_cu_gather_axes(const it_cu_gather *p, size_t elem_size, const int64_t *table, const void *src,
                              void *dst, int64_t n, cudaStream_t stream);

/* Softmax over the middle axis of (outer, len, inner) blocks, max-subtracted. */
cudaError_t it_cu_softmax(int type, const void *x, void *y, int64_t outer, int64_t len, int64_t inner,
                          cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
