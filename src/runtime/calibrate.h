/* Calibration: run a model step by step on the ref kernels over sample inputs and measure
 * the range of every float activation, for the int8 tables that `itscam calibrate` writes. */
#ifndef ITSCAM_CALIBRATE_H
#define ITSCAM_CALIBRATE_H

#include "graph/calib.h"

typedef enum it_calib_method {
    IT_CALIB_MINMAX = 0,      /* the extremes seen: nothing is ever clipped */
    IT_CALIB_PERCENTILE = 1,  /* [100-p, p] percentiles: rare outliers are clipped so
                                 that they do not stretch the int8 step for everything */
} it_calib_method;

typedef struct it_calib_collector it_calib_collector;

/* Plan the graph for one [1,3,h,w] float input (g must have one input) and get ready to
 * collect. `percentile` (e.g. 99.99) is used by IT_CALIB_PERCENTILE only. */
itscam_status it_calib_collect_begin(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                     it_calib_collector **out);
/* Run the model on one input of 3*h*w floats and fold every float value's range in. */
itscam_status it_calib_collect_add(it_calib_collector *c, const float *input);
/* Number of inputs added so far. */
int it_calib_collect_count(const it_calib_collector *c);
/* Build the table: one range per float activation (the graph input included), named by
 * graph value name. `model` is recorded as given (informative). Needs one input added. */
itscam_status it_calib_collect_end(it_calib_collector *c, const char *model, it_calib **out);
void it_calib_collect_free(it_calib_collector *c);

#endif
