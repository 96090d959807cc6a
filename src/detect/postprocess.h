/* YOLO head decoding: confidence filter, NMS, mapping back to image pixels; class names. */
#ifndef ITSCAM_DETECT_POSTPROCESS_H
#define ITSCAM_DETECT_POSTPROCESS_H

#include "core/core.h"
#include "vision/letterbox.h"

/* Ultralytics' limits: candidates kept for NMS, and the per-class box offset. */
#define IT_MAX_NMS 30000
#define IT_MAX_WH 7680.0

/* Working memory sized once for a head of n_anchors anchors, reused every frame. Its size
 * does not depend on max_det (1..ITSCAM_MAX_DET_LIMIT), which only caps the boxes kept:
 * pass the largest any caller may ask for. */
typedef struct it_det_scratch {
    int cap;          /* anchors (or end2end rows) it was sized for */
    int max_det;
    int *idx, *tmp;   /* candidate anchors and a merge-sort buffer */
    float *score;     /* per candidate */
    int *cls;
    float *box;       /* x1,y1,x2,y2 per candidate, letterboxed pixels */
    uint8_t *dead;    /* suppressed flags */
} it_det_scratch;

itscam_status it_det_scratch_init(it_det_scratch *s, int n_anchors, int max_det);
void it_det_scratch_free(it_det_scratch *s);

/* head: [n_ch = 4+nc, n_anchors] channel-major (head[c*A + a]); cx,cy,w,h in letterboxed
 * pixels then class scores. Keeps best score > p->conf (and class in p->classes when given),
 * NMS (class-aware unless p->agnostic_nms) in the order of the reference (score descending),
 * at most p->max_det boxes, mapped through lb to img_w x img_h pixels and clipped.
 * out holds at least min(p->max_det, scratch max_det) entries; class_name is set to "". */
itscam_status it_decode_yolo(const float *head, int n_ch, int n_anchors, const itscam_detector_params *p,
                             const it_letterbox *lb, int img_w, int img_h, it_det_scratch *scratch,
                             itscam_detection *out, int *n_out);

/* NMS-free head [n, 6]: x1,y1,x2,y2,score,class in letterboxed pixels. Keeps score > conf
 * and filtered classes, in the given order, at most max_det, mapped back and clipped. */
itscam_status it_decode_end2end(const float *head, int n, const itscam_detector_params *p, const it_letterbox *lb,
                                int img_w, int img_h, itscam_detection *out, int *n_out);


#endif
