/* Frame quality, measured on a small grey copy of a frame so that it costs a fraction of
 * a millisecond: sharpness (variance of the Laplacian), brightness (mean), contrast
 * (standard deviation) and a frozen picture (the same image for frozen_s seconds). They
 * make a 0-1 score and a `degraded` flag with its reason. The grey copy also serves the
 * camera pipeline's result cache, which compares a frame's copy with the last detected one. */
#ifndef ITSCAM_STREAM_QUALITY_H
#define ITSCAM_STREAM_QUALITY_H

#include "vision/image.h"

#include <stdint.h>

#define IT_QUALITY_W 160   /* the grey copy's width; height keeps the aspect, at most 160 */
#define IT_QUALITY_HMAX 160

typedef struct it_quality_params {
    double frozen_s;        /* 10: a picture unchanged this long is frozen */
    double frozen_diff;     /* 0.5: mean absolute grey difference below which two are the same */
    double dark;            /* 35: mean grey below this is dark */
    double bright;          /* 225: above this is washed out */
    double low_contrast;    /* 12: grey standard deviation below this */
    double blurred;         /* 15: Laplacian variance (on the grey copy) below this */
} it_quality_params;
it_quality_params it_quality_default_params(void);

typedef struct it_quality {
    double score;           /* 0 (useless) .. 1 (good) */
    double sharpness, brightness, contrast;
    int frozen;
    int degraded;
    char reason[64];        /* "dark", "blurred,frozen", ... ("" when not degraded) */
    double ms;              /* what this measurement cost */
    int measured;           /* 0 until the first measurement */
} it_quality;

/* What a camera keeps between measurements (the previous grey copy). Zero it to start. */
typedef struct it_quality_state {
    uint8_t prev[IT_QUALITY_W * IT_QUALITY_HMAX];
    int pw, ph;
    double same_since_ms;   /* when the picture stopped changing, while `unchanged` */
    int unchanged;
    double prev_ms;         /* when prev was measured */
} it_quality_state;

/* Measure img (BGR) at now_ms (any monotonic clock) into *out. */
void it_quality_measure(it_quality_state *st, const it_image *img, double now_ms, const it_quality_params *p,
                        it_quality *out);

/* The grey copy quality measures on, for the result cache: w x h (at most
 * IT_QUALITY_W x IT_QUALITY_HMAX) box averages of img. */
void it_frame_thumb(const it_image *img, uint8_t *out, int *w, int *h);
/* The largest absolute difference between two grey copies of n pixels. */
int it_thumb_maxdiff(const uint8_t *a, const uint8_t *b, int n);

#endif
