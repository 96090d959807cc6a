/* Linear assignment with a cost limit: the matching step of ByteTrack. */
#ifndef ITSCAM_TRACK_ASSIGN_H
#define ITSCAM_TRACK_ASSIGN_H

#include "core/core.h"

/* Scratch memory for it_assign, kept between calls so that a tracker reaches a high-water
 * mark and then allocates nothing per frame. Zero-initialise; free with it_assign_ws_free. */
typedef struct it_assign_ws {
    double *dbl;
    size_t dbl_cap;
    int *ints;
    size_t int_cap;
} it_assign_ws;

void it_assign_ws_free(it_assign_ws *w);

/* The assignment that lap.lapjv(cost, extend_cost=True, cost_limit=limit) finds, the one
 * Ultralytics' matching.linear_assignment uses: a partial matching of the n rows to the m
 * columns of `cost` (row-major, n x m) that minimises the sum of (cost - limit) over the
 * matched pairs. lapjv gets there by extending the matrix with dummy rows and columns at
 * limit/2; here the matrix is split into the connected parts of its "cost < limit" graph
 * and each part is solved exactly with the Hungarian method (Jonker-Volgenant shortest
 * augmenting paths), which is the same optimum and much faster on the sparse matrices of
 * tracking. A pair costing more than limit is never matched; a pair costing exactly limit
 * is a tie in lapjv's extended problem and is left unmatched here; NaN costs never match.
 * Among equally good matchings the one chosen may differ from lapjv's.
 * On return row_match[i] is the column matched to row i or -1, and col_match[j] the row
 * matched to column j or -1 (either may be NULL). Returns ITSCAM_OK, or
 * ITSCAM_ERR_INVALID_ARG / ITSCAM_ERR_NOMEM with a message. Not thread-safe on one ws. */
itscam_status it_assign(it_assign_ws *w, const float *cost, int n, int m, double limit, int *row_match,
                        int *col_match);

#endif
