/* Helpers for tests that compare tensors with the reference files in ../shared. */
#ifndef ITSCAM_CHECK_DATA_H
#define ITSCAM_CHECK_DATA_H

#include "check.h"
#include "core/core.h"

#include <math.h>

/* A float32 file from ../shared holding exactly `expect` values (it_free it), or NULL
 * when it is absent or has another size (said on stderr). */
static inline float *read_f32(const char *rel, size_t expect) {
    char buf[1024];
    const char *p = shared_path(buf, sizeof buf, rel);
    if (!p) return NULL;
    uint8_t *data;
    size_t len;
    if (it_read_file(p, &data, &len, (size_t)1 << 30) != ITSCAM_OK) return NULL;
    if (len != expect * 4) {
        fprintf(stderr, "%s: %zu bytes, expected %zu\n", p, len, expect * 4);
        it_free(data);
        return NULL;
    }
    return (float *)data;
}

/* ||a - b|| / ||b||: b is the reference. */
static inline double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Two detection results are the same: equal counts and classes, scores within 1e-4 and
 * boxes within 0.05 px (batched and single runs differ only in float summation order). */
static inline int same_result(const itscam_result *a, const itscam_result *b) {
    if (a->count != b->count || a->width != b->width || a->height != b->height) return 0;
    for (int i = 0; i < a->count; i++) {
        if (a->dets[i].class_id != b->dets[i].class_id || fabsf(a->dets[i].score - b->dets[i].score) > 1e-4f) return 0;
        for (int k = 0; k < 4; k++)
            if (fabsf(a->dets[i].box[k] - b->dets[i].box[k]) > 0.05f) return 0;
    }
    return 1;
}

#endif
