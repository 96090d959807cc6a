/* The CUDA backend (cuDNN convolutions, cuBLAS matrix products, own kernels for the rest):
 * what it exposes beyond its it_backend table (plan.h). Only compiled when nvcc and cuDNN
 * are found (ITSCAM_HAVE_CUDA); every function here is safe to call on a machine without
 * a GPU, where they fail with ITSCAM_ERR_NOT_FOUND (or return a launch error). */
#ifndef ITSCAM_CUDA_BACKEND_H
#define ITSCAM_CUDA_BACKEND_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

/* cuda_kernels.cu includes this header for the kernel declarations at the end only:
 * the library's C headers stay out of nvcc's C++. */
#ifndef __CUDACC__
#include "backend/backend.h"

extern const it_backend it_backend_cuda;

/* 1 when the last CUDA backend failure on the calling thread was an out-of-memory
 * (cudaErrorMemoryAllocation, CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED),
 * 0 after any other failure. Thread-safe (thread-local); meaningful right after a
 * compile or run of the backend returned an error. */
int it_cuda_last_error_is_oom(void);

/* "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB (78.5 free), driver 13.0, runtime 13.0, cuDNN
 * 9.19.0" for the device the backend uses (ITSCAM_CUDA_DEVICE, else 0). Truncates to n
 * bytes (always NUL-terminated when n > 0). ITSCAM_ERR_NOT_FOUND without a usable GPU
 * (buf then says why). Thread-safe. */
itscam_status it_cuda_describe(char *buf, size_t n);

/* Device memory: bytes the backend holds (activation arenas, workspaces, weights, over
 * every program and device), and the free and total memory of the backend's device.
 * Any pointer may be NULL. ITSCAM_ERR_NOT_FOUND without a GPU (used is still set). */
itscam_status it_cuda_mem_info(size_t *used_by_itscam, size_t *free_bytes, size_t *total_bytes);

/* 1 when step i of a compiled cuda program runs on the device, 0 when it runs its ref
 * kernel on the host (for tests and `itscam bench`). */
int it_cuda_step_native(const void *prog, int i);
#endif /* !__CUDACC__ */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pre- and post-processing kernels (not wired into the detector yet) ---------------- */

/* One 8-bit frame with 3 interleaved channels in device memory. */
typedef struct it_cuda_frame {
    const uint8_t *pixels;
    int width, height;
    int stride;          /* bytes per row, >= 3 * width */
    int is_rgb;          /* 0: BGR (OpenCV's order), 1: RGB */
} it_cuda_frame;

/* Where a frame landed in its letterbox (vision/letterbox.h's it_letterbox). */
typedef struct it_cuda_letterbox_info {
    float scale;
    int pad_x, pad_y;
    int new_w, new_h;    /* 0 for a frame with bad sizes, which is written as all padding */
} it_cuda_letterbox_info;

/* Letterbox n frames of any sizes into dst, an [n, 3, dst_h, dst_w] RGB tensor scaled by
 * 1/255 (fp32, or fp16 when out_half), in one launch: the geometry of Ultralytics'
 * LetterBox, cv::resize(INTER_LINEAR) in OpenCV 4.6's fixed-point arithmetic (the same
 * as it_letterbox_to_tensor, bit for bit as far as IEEE float math goes), padding 114.
 * frames (n entries) and info (n entries, or NULL) are device memory. Enqueued on
 * stream; returns the launch status. */
cudaError_t it_cuda_letterbox_batch(const it_cuda_frame *frames, int n, int dst_w, int dst_h, int out_half, void *dst,
                                    it_cuda_letterbox_info *info, cudaStream_t stream);

/* A candidate box of the YOLO head in letterboxed pixels. */
typedef struct it_cuda_candidate {
    float x1, y1, x2, y2;
    float score;
    int cls;
    int anchor;
} it_cuda_candidate;

/* For a head [n, 4 + nc, anchors] (fp32, or fp16 when head_half; cx, cy, w, h then class
 * scores, channel-major per image): per anchor the best class (first maximum) and its
 * score into best_score / best_cls ([n * anchors] each, either may be NULL), and each
 * anchor whose best score is > conf appended to its image's list, cand[i * cap ...],
 * through an atomic counter count[i] (zeroed by this call). The lists are in no
 * particular order (sort by score, then anchor, on the host as it_decode_yolo does);
 * count[i] may exceed cap, in which case only cap candidates were written. */
cudaError_t it_cuda_decode_boxes(const void *head, int head_half, int n, int nc, int anchors, float conf,
                                 float *best_score, int *best_cls, it_cuda_candidate *cand, int cap, int *count,
                                 cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
