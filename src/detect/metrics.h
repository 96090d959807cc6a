/* Box mAP50 and mAP50-95 over a set of images, computed exactly as Ultralytics' validator. */
#ifndef ITSCAM_DETECT_METRICS_H
#define ITSCAM_DETECT_METRICS_H

#include "itscam/itscam.h"
#include <stdint.h>

#define IT_MAP_NTHR 10  /* IoU thresholds 0.50:0.05:0.95 */

/* Double precision throughout, as numpy does, so that results agree with the Python
 * scorer to the last few digits rather than to float rounding. */
typedef struct it_map_pred {
    int class_id;
    double score;
    double box[4];  /* x1, y1, x2, y2 in pixels */
} it_map_pred;

typedef struct it_map_label {
    int class_id;
    double box[4];  /* x1, y1, x2, y2 in pixels */
} it_map_label;

typedef struct it_map_class {
    int class_id;
    int64_t labels, preds;
    double ap[IT_MAP_NTHR];  /* ap[0] is AP50; the mean of all ten is AP50-95 */
    double ap50, ap50_95;
    double precision, recall;  /* at the best mean-F1 confidence */
} it_map_class;

typedef struct it_map_result {
    double map50, map50_95;
    /* Ultralytics' "P" and "R": class means at the confidence that maximises the
     * smoothed mean F1 over a 1000-point confidence grid. */
    double precision, recall, best_conf;
    int64_t images, labels, preds;
    int classes;              /* classes with at least one label */
    it_map_class *per_class;  /* `classes` entries, by class id; owned by the result */
} it_map_result;

typedef struct it_map_acc {
    /* Every prediction in insertion order (images in order, detections in order): the
     * confidence sort is stable over this order, as numpy's argsort(kind="stable"). */
    int *pred_cls;
    double *pred_conf;
    uint16_t *pred_tp;  /* bit t: a true positive at threshold t */
    int64_t npred, pred_cap;
    int *label_cls;
    int64_t nlabel, label_cap;
    int64_t images;
} it_map_acc;

void it_map_acc_init(it_map_acc *a);
/* Match one image's predictions against its labels and record the outcome. Either
 * count may be 0. */
itscam_status it_map_acc_add(it_map_acc *a, const it_map_pred *preds, int npred, const it_map_label *labels,
                             int nlabel);
/* Compute the metrics over everything added so far; free `out` with it_map_result_free. */
itscam_status it_map_acc_compute(const it_map_acc *a, it_map_result *out);
void it_map_acc_free(it_map_acc *a);

/* Read a YOLO label file (`class cx cy w h` per line, normalised) for an image of
 * width x height pixels into *out (it_free) as pixel xyxy boxes, computed as the scorer
 * does. A missing or empty file gives *n = 0 and *out = NULL. Lines must hold exactly five
 * numbers (segment labels are rejected, naming the file and line). */
itscam_status it_map_read_labels(const char *path, int width, int height, it_map_label **out, int *n);
void it_map_result_free(it_map_result *r);

#endif
