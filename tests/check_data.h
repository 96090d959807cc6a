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

#endif
