/* Letterboxing to the model input exactly as Ultralytics + OpenCV 4.6 do (INTER_LINEAR, pad 114). */
#ifndef ITSCAM_VISION_LETTERBOX_H
#define ITSCAM_VISION_LETTERBOX_H

#include "core/core.h"

typedef struct it_letterbox {
    float scale;      /* r = min(dst_h/h, dst_w/w) */
    int pad_x, pad_y; /* left and top padding in destination pixels */
    int new_w, new_h; /* size of the resized image inside the padding */
} it_letterbox;

/* Geometry only: what it_letterbox_to_tensor would use for a w x h source. */
itscam_status it_letterbox_geometry(int w, int h, int dst_w, int dst_h, it_letterbox *info);

/* Bytes of scratch it_letterbox_to_tensor needs for these sizes (0 on bad sizes). */
size_t it_letterbox_scratch_bytes(int w, int h, int dst_w, int dst_h);

/* Resize 8-bit BGR (or RGB when src_is_rgb) pixels, `stride` bytes per row, into a
 * dst_w x dst_h letterbox and write it as float RGB planes scaled by 1/255 (NCHW, 3 planes
 * of dst_h*dst_w). Bit-exact with cv2.resize(INTER_LINEAR) + copyMakeBorder(114) + /255.
 * scratch (scratch_len >= it_letterbox_scratch_bytes) avoids any allocation. */
itscam_status it_letterbox_to_tensor(const uint8_t *src, int w, int h, int stride, int src_is_rgb, int dst_w,
                                     int dst_h, float *dst_nchw, uint8_t *scratch, size_t scratch_len,
                                     it_letterbox *info);

/* cv::resize(INTER_LINEAR) of 3-channel 8-bit pixels, bit-exact with OpenCV 4.6 on x86-64.
 * scratch must hold it_resize_scratch_bytes(dw, dh) bytes. */
size_t it_resize_scratch_bytes(int dw, int dh);
itscam_status it_resize_linear_c3(const uint8_t *src, int sw, int sh, int sstride, uint8_t *dst, int dw, int dh,
                                  int dstride, uint8_t *scratch, size_t scratch_len);

#endif
