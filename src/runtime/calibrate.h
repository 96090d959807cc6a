/* Calibration: run a model over sample inputs and measure the range of every float
 * activation, for the int8 tables that `itscam calibrate` writes. Either a host backend
 * (the cpu backend, fp32) runs the whole plan once per input with every activation kept
 * alive, or the ref kernels run it one step at a time; both record the same values. */
#ifndef ITSCAM_CALIBRATE_H
#define ITSCAM_CALIBRATE_H

#include "backend/backend.h"
#include "graph/calib.h"

typedef enum it_calib_method {
    IT_CALIB_MINMAX = 0,      /* the extremes seen: nothing is ever clipped */
    IT_CALIB_PERCENTILE = 1,  /* [100-p, p] percentiles: rare outliers are clipped so
                                 that they do not stretch the int8 step for everything */
} it_calib_method;

typedef struct it_calib_collector it_calib_collector;

/* A backend run keeps every activation alive at once (yolo11n at 640 on the cpu backend:
 * 281 MiB, activations and their blocked-layout copies); above this it is refused. */
#define IT_CALIB_MAX_BYTES ((size_t)2 << 30)

/* How to run the model while collecting. */
typedef struct it_calib_exec {
    const it_backend *backend; /* a host backend (run in fp32); NULL: the ref kernels, one step
                                  at a time, holding only what the normal plan holds */
    int threads;               /* backend threads; 0: its default (the cpu backend's: physical cores) */
    size_t max_bytes;          /* refuse (ITSCAM_ERR_NOMEM, saying how much) a backend run that
                                  would hold more; 0: IT_CALIB_MAX_BYTES */
} it_calib_exec;

/* Plan the graph for one [1,3,h,w] float input (g must have one input) and get ready to
 * collect. `percentile` (e.g. 99.99) is used by IT_CALIB_PERCENTILE only. ex NULL: the
 * ref kernels. A backend that cannot compile the plan, or that would need more memory
 * than allowed, fails here; the caller may then fall back to ex NULL. */
itscam_status it_calib_collect_begin_with(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                          const it_calib_exec *ex, it_calib_collector **out);
/* The same on the ref kernels. */
itscam_status it_calib_collect_begin(const it_graph *g, int h, int w, it_calib_method method, double percentile,
                                     it_calib_collector **out);
/* "ref" or the backend's name. */
const char *it_calib_collect_backend(const it_calib_collector *c);
/* Bytes the collector holds for activations (and the backend's working memory). */
size_t it_calib_collect_memory(const it_calib_collector *c);
/* Run the model on one input of 3*h*w floats and fold every float value's range in. */
itscam_status it_calib_collect_add(it_calib_collector *c, const float *input);
/* Number of inputs added so far. */
int it_calib_collect_count(const it_calib_collector *c);
/* Build the table: one range per float activation (the graph input included), named by
 * graph value name. `model` is recorded as given (informative). Needs one input added. */
itscam_status it_calib_collect_end(it_calib_collector *c, const char *model, it_calib **out);
void it_calib_collect_free(it_calib_collector *c);

#endif
