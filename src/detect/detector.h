/* The detector's internal batch entry, for the scheduler: one inference over a mix of
 * images (letterboxed here) and ready input tensors, each item postprocessed with its own
 * parameters through the same code as itscam_detect_batch_params (one postprocess path). */
#ifndef ITSCAM_DETECT_DETECTOR_H
#define ITSCAM_DETECT_DETECTOR_H

#include "itscam/itscam.h"

#include <stdint.h>

/* Largest batch one call runs (itscam_detect_batch refuses more). */
#define IT_DETECT_MAX_BATCH 256

typedef struct it_detect_item {
    /* input: exactly one of img and tensor */
    const itscam_image *img;              /* letterboxed to the model's input size */
    const float *tensor;                  /* [1,3,tensor_h,tensor_w] float NCHW, already letterboxed */
    int tensor_h, tensor_w;
    const itscam_detector_params *params; /* NULL: the detector's own */
    int want_dets;                        /* decode detections into res */
    int want_raw;                         /* copy this item's slice of output 0 into raw */
    /* output (zeroed by it_detect_run; the caller owns res.dets and raw) */
    itscam_result res;
    float *raw;                           /* it_malloc'd, [1, dims 1..] of output 0 */
    int64_t raw_dims[8];
    int raw_ndim;
} it_detect_item;

/* The input height and width an item is run at (the model's for images). */
void it_detect_item_size(const itscam_detector *d, const it_detect_item *it, int *h, int *w);

/* Run n items (1..IT_DETECT_MAX_BATCH, all of the same it_detect_item_size) as one batch
 * (one by one on a static-batch model). Tensor items have a letterbox of identity: their
 * boxes are in input pixels. Timings per item: ms_preprocess and ms_inference are the
 * batch's divided by n. On error every item's outputs are freed and zeroed and the status
 * returned (message in itscam_last_error()). Not thread-safe for one detector. */
itscam_status it_detect_run(itscam_detector *d, it_detect_item *items, int n);

#endif
