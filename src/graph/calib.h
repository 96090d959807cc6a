/* Calibration tables for int8: the range of every activation that an int8 convolution
 * reads, measured on the user's images by `itscam calibrate`, stored as JSON. */
#ifndef ITSCAM_CALIB_H
#define ITSCAM_CALIB_H

#include "graph/graph.h"

typedef struct it_calib {
    char *model;             /* file name of the model it was measured on (informative) */
    char *method;            /* "minmax", "percentile" */
    int n;
    char **names;            /* value names */
    float *lo, *hi;          /* range per value */
} it_calib;

/* JSON: {"model":..., "method":..., "images":N, "ranges":{"name":[lo,hi], ...}} */
itscam_status it_calib_load(const char *path, it_calib **out);
itscam_status it_calib_save(const it_calib *c, const char *path, int images);
void it_calib_free(it_calib *c);
/* Range of value `name`; 0 when found, -1 when the table has none. */
int it_calib_range(const it_calib *c, const char *name, float *lo, float *hi);

#endif
