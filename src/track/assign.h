/* Linear assignment (minimum-cost bipartite matching), exact: the one solver behind
 * ByteTrack's matching and the MOT metrics' per-frame and identity matchings. */
#ifndef ITSCAM_TRACK_ASSIGN_H
#define ITSCAM_TRACK_ASSIGN_H

#include "core/core.h"

/* Largest side of a matrix a caller should hand over when the whole matrix may be one
 * connected part (the MOT metrics bound their frames and identity problems by it). */
#define IT_ASSIGN_MAX_SIDE 4096
/* Largest connected part solved densely: R x M doubles of scratch and O(R^2 M) time. A
 * larger one is refused with ITSCAM_ERR_INVALID_ARG rather than allocated. */
#define IT_ASSIGN_MAX_CELLS ((size_t)IT_ASSIGN_MAX_SIDE * IT_ASSIGN_MAX_SIDE)

/* Scratch memory for it_assign, kept between calls so that a tracker reaches a high-water
 * mark and then allocates nothing per frame. Zero-initialise; free with it_assign_ws_free
 * (harmless on a zeroed or freed one). One ws per thread. */
typedef struct it_assign_ws {
    double *dbl;
    size_t dbl_cap;
    int *ints;
    size_t int_cap;
} it_assign_ws;

void it_assign_ws_free(it_assign_ws *w);

/* A partial matching of the n rows to the m columns of `cost` (row-major, n x m). A pair
 * may be matched only when its cost is finite and below `limit`; NaN and infinite costs
 * mark forbidden pairs.
 *
 * - limit finite: the matching minimises the sum of (cost - limit) over its pairs. That is
 *   the matching lap.lapjv(cost, extend_cost=True, cost_limit=limit) finds, the one
 *   Ultralytics' matching.linear_assignment (ByteTrack) uses; a pair costing exactly
 *   limit is a tie there and is left unmatched here. Keep limit of the order of the costs
 *   (cost - limit is taken in double precision).
 * - limit = INFINITY: the limit of the above as limit grows: the matching with the most
 *   pairs and, among those, the least total cost; scipy's linear_sum_assignment with
 *   forbidden pairs the way py-motmetrics and TrackEval use it (forbidden pairs priced
 *   above any assignment of allowed ones, then dropped). On a matrix with no forbidden
 *   pair that is the full min(n, m) assignment.
 *
 * The matrix is split into the connected parts of its allowed pairs and each part solved
 * exactly with the Hungarian method (Jonker-Volgenant shortest augmenting paths), which is
 * much faster on the sparse matrices of tracking. Among equally good matchings the one
 * chosen is deterministic but unspecified.
 *
 * On return row_match[i] is the column matched to row i or -1, col_match[j] the row
 * matched to column j or -1, *total the sum of the matched costs (each may be NULL).
 * Returns ITSCAM_OK; ITSCAM_ERR_INVALID_ARG for bad sizes, a NaN limit, a connected part
 * over IT_ASSIGN_MAX_CELLS or costs so large that the arithmetic overflows;
 * ITSCAM_ERR_NOMEM. The detail is in itscam_last_error(). Thread-safe on distinct ws. */
itscam_status it_assign(it_assign_ws *w, const double *cost, int n, int m, double limit, int *row_match,
                        int *col_match, double *total);

#endif
